//! SPEC §17 with an unmodified PouchDB: the `pouchdb` npm package (installed by `cargo xtask ci` into
//! `tests/couch-node/node_modules`, git-ignored) in Node, driven by `tests/couch-node/pouchdb.test.mjs`,
//! against `outpost serve` with an access token sent as HTTP Basic, as a PouchDB app sends it. Both
//! ways, one-shot and live, conflicts made on both sides and resolved on one, a refused document
//! reported denied while the rest replicates, and checkpoints that survive a restart of the server.
//! PouchDB's winner of every document is Outpost's.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

#[path = "common/served.rs"]
mod served;
use served::Served;

/// The harness and its packages.
fn harness() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/couch-node");
    if dir.join("node_modules/pouchdb/package.json").exists() && which("node") {
        return Some(dir);
    }
    let why = "PouchDB is not installed (tests/couch-node/node_modules; `cargo xtask ci` runs npm ci there) or \
               node is missing";
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}: under CI=true this test must run");
    eprintln!("skipping the PouchDB tests: {why}");
    None
}

fn which(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn outpost(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_outpost")).args(args).current_dir(dir).output().expect("outpost runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "outpost {}: {text}{}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    text
}

/// A server with one database (`field`) whose table `orders` is open to CouchDB clients, and a
/// write token for the app.
struct Site {
    dir: tempfile::TempDir,
    config: PathBuf,
    secret: String,
}

impl Site {
    fn new() -> Site {
        Site::with(|_| String::new())
    }

    /// A site whose config gets what `extra` returns for its root (e.g. a `[cors]` table).
    fn with(extra: impl FnOnce(&Path) -> String) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("d")).unwrap();
        outpost(root, &["db", "create", "d/field.outpost"]);
        outpost(root, &["table", "create", "d/field.outpost", "orders", "--couch"]);
        let block =
            outpost(root, &["token", "new", "--name", "app", "--role", "field=write", "--secret-file", "app.token"]);
        let secret = std::fs::read_to_string(root.join("app.token")).unwrap().trim().to_owned();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = root.join("serve.toml");
        let extra = extra(root);
        std::fs::write(&config, format!("listen = \"127.0.0.1:{port}\"\ndata = \"d\"\n{block}\n{extra}")).unwrap();
        Site { dir, config, secret }
    }

    /// A second site whose config takes this one's token, so that one secret works on both (what
    /// `outpost sync` between them sends).
    fn twin(&self) -> Site {
        let config = std::fs::read_to_string(&self.config).unwrap();
        let block = &config[config.find("[[tokens]]").expect("a token block")..];
        let (secret, block) = (self.secret.clone(), block.to_owned());
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("d")).unwrap();
        outpost(root, &["db", "create", "d/field.outpost"]);
        outpost(root, &["table", "create", "d/field.outpost", "orders", "--couch"]);
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = root.join("serve.toml");
        std::fs::write(&config, format!("listen = \"127.0.0.1:{port}\"\ndata = \"d\"\n{block}")).unwrap();
        Site { dir, config, secret }
    }

    fn serve(&self) -> Served {
        Served::start(self.dir.path(), &self.config, &[])
    }

    /// `outpost sync --both A B` between two servers' `field`, with this site's token.
    fn sync(&self, a: &str, b: &str) {
        let out = Command::new(env!("CARGO_BIN_EXE_outpost"))
            .args(["sync", "--both", &format!("{a}/dbs/field"), &format!("{b}/dbs/field")])
            .current_dir(self.dir.path())
            .env("OUTPOST_TOKEN", &self.secret)
            .output()
            .expect("outpost sync runs");
        assert!(out.status.success(), "outpost sync: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// Run one phase of the harness; its JSON report. When the harness pauses (`READY_FOR_RESTART`, or
/// `STEP_n`), `between` runs with that line, and then the harness goes on. `env` adds variables.
fn phase(
    harness: &Path,
    url: &str,
    site: &Site,
    name: &str,
    env: &[(&str, String)],
    between: Option<&mut dyn FnMut(&str)>,
) -> Value {
    let signal = site.dir.path().join(format!("{name}.go"));
    let mut child = Command::new("node")
        .arg("pouchdb.test.mjs")
        .current_dir(harness)
        .env("PHASE", name)
        .env("OUTPOST_COUCH", format!("{url}/couch/field"))
        .env("OUTPOST_TOKEN", &site.secret)
        .env("OUTPOST_DB", "orders")
        .env("RESUME_SIGNAL", &signal)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node starts");
    let mut between = between;
    let mut report = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let line = line.trim();
        let go = match line.strip_prefix("STEP_") {
            Some(n) => Some(format!("{}.{n}", signal.display())),
            None if line == "READY_FOR_RESTART" => Some(signal.display().to_string()),
            None => None,
        };
        if let Some(go) = go {
            if let Some(f) = between.as_mut() {
                f(line);
            }
            std::fs::write(go, "go").unwrap();
        } else if line.starts_with('{') {
            report = Some(line.to_owned());
        }
    }
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    let report: Value = serde_json::from_str(report.as_deref().unwrap_or("null")).unwrap();
    assert!(status.success() && report["ok"] == true, "PouchDB phase {name} failed: {report}\n{err}");
    report
}

/// An HTTP request to the server with the site's token: status and JSON body.
fn call(site: &Site, method: reqwest::Method, url: &str, body: Option<Value>) -> (u16, Value) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut request = reqwest::Client::new().request(method, url).bearer_auth(&site.secret);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
    })
}

/// Outpost's winner of every record of `orders`, deleted ones included (from the changes feed).
fn outpost_winners(url: &str, secret: &str) -> std::collections::HashMap<String, String> {
    let url = format!("{url}/dbs/field/changes?since=0&limit=10000&tables=orders");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let page: Value = runtime.block_on(async {
        reqwest::Client::new().get(url).bearer_auth(secret).send().await.unwrap().json().await.unwrap()
    });
    page["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter(|c| c["table"] == "orders")
        .map(|c| (c["id"].as_str().unwrap().to_owned(), c["rev"].as_str().unwrap().to_owned()))
        .collect()
}

#[test]
fn pouchdb_replicates_and_syncs_with_outpost() {
    let Some(harness) = harness() else { return };
    let site = Site::new();
    let mut served = site.serve();
    // The port is the config's: a restarted server answers at the same URL.
    let url = served.url.clone();

    // One-shot both ways: every document's winner is the same on both sides.
    let report = phase(&harness, &url, &site, "push-pull", &[], None);
    let ours = outpost_winners(&url, &site.secret);
    let theirs = report["winners"].as_object().expect("winners");
    assert!(!theirs.is_empty());
    for (id, rev) in theirs {
        assert_eq!(ours.get(id).map(String::as_str), rev.as_str(), "the winner of {id}");
    }
    assert_eq!(report["push"]["doc_write_failures"], 0);

    // Conflicts made on two PouchDBs, resolved on one.
    let report = phase(&harness, &url, &site, "conflicts", &[], None);
    let id = format!("{}-conflict", report["tag"].as_str().unwrap());
    let resolved = report["resolved_rev"].as_str().map(str::to_owned);
    assert_eq!(outpost_winners(&url, &site.secret).get(&id), resolved.as_ref(), "{report}");

    // A document Outpost cannot store is denied; the rest replicates.
    let report = phase(&harness, &url, &site, "denied", &[], None);
    assert_eq!(report["push"]["doc_write_failures"], 1, "{report}");
    assert_eq!(report["denied"][0]["name"], "forbidden", "{report}");

    // Live sync between two PouchDBs through Outpost.
    phase(&harness, &url, &site, "live", &[], None);

    // Checkpoints outlive the server: the second replication starts where the first ended.
    let mut restart = |_: &str| {
        served.stop();
        served = site.serve();
    };
    let report = phase(&harness, &url, &site, "resume", &[], Some(&mut restart));
    assert_eq!(report["second_start_since"], report["first_last_seq"], "{report}");
    assert_eq!(report["second"]["docs_written"], 5, "{report}");

    // The token went over Basic auth on every request; it is in no log.
    served.stop();
    let log = std::fs::read_to_string(&served.log).unwrap_or_default();
    assert!(!log.contains(&site.secret), "the token was logged");
}

/// A record as its server holds it: winner, conflicts and plain body (`None` when there is none).
fn record(site: &Site, url: &str, id: &str) -> Option<(String, Vec<String>, Value)> {
    let (status, r) = call(
        site,
        reqwest::Method::GET,
        &format!("{url}/dbs/field/tables/orders/records/{id}?format=plain&conflicts=true"),
        None,
    );
    if status != 200 {
        return None;
    }
    let mut conflicts: Vec<String> = r["conflicts"]
        .as_array()
        .map(|c| c.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    conflicts.sort();
    Some((r["rev"].as_str().unwrap().to_owned(), conflicts, r["attributes"].clone()))
}

/// Two Outpost servers, a PouchDB on each, writes on all four — each PouchDB's own documents, a
/// document both edit, a native record on each server — with the servers synced between the
/// PouchDBs' replications: the two PouchDBs and the two servers end with the same documents, the
/// same winners and the same conflicts; and the second server still refuses a native revision
/// whose body was tampered with.
#[test]
fn two_pouchdbs_and_two_outposts_converge() {
    let Some(harness) = harness() else { return };
    let a = Site::new();
    let b = a.twin();
    let (mut served_a, mut served_b) = (a.serve(), b.serve());
    let (url_a, url_b) = (served_a.url.clone(), served_b.url.clone());
    let mut step = |line: &str| {
        if line == "STEP_1" {
            for (url, id) in [(&url_a, "a-native"), (&url_b, "b-native")] {
                let body = Some(serde_json::json!({"attributes": {"written": "natively", "on": id}}));
                let put = format!("{url}/dbs/field/tables/orders/records/{id}?format=plain");
                assert_eq!(call(&a, reqwest::Method::PUT, &put, body).0, 200);
            }
        }
        a.sync(&url_a, &url_b);
    };
    let env = [("OUTPOST_COUCH_2", format!("{url_b}/couch/field")), ("OUTPOST_TOKEN_2", b.secret.clone())];
    let report = phase(&harness, &url_a, &a, "four", &env, Some(&mut step));
    let docs = report["docs"].as_object().expect("the PouchDBs' documents");
    assert!(docs.contains_key("a-native") && docs.contains_key("b-native"), "{report}");
    let shared = docs.iter().find(|(id, _)| id.ends_with("-shared")).expect("the shared document").1;
    assert_eq!(shared["conflicts"].as_array().map(Vec::len), Some(1), "both edits kept: {shared}");
    for (id, doc) in docs {
        let theirs: Vec<String> = serde_json::from_value(doc["conflicts"].clone()).unwrap();
        for (site, url) in [(&a, &url_a), (&b, &url_b)] {
            let (rev, conflicts, _) = record(site, url, id).unwrap_or_else(|| panic!("{id} is not on {url}"));
            assert_eq!((rev.as_str(), &conflicts), (doc["rev"].as_str().unwrap(), &theirs), "{id} on {url}");
        }
    }

    // A native revision whose body was changed on the way is refused, as ever.
    let (_, native) = call(
        &a,
        reqwest::Method::POST,
        &format!("{url_a}/dbs/field/revs/get"),
        Some(serde_json::json!([
            {"table": "orders", "id": "a-native", "revs": [record(&a, &url_a, "a-native").unwrap().0]}
        ])),
    );
    let mut tampered = native[0].clone();
    tampered["attributes"]["on"] = serde_json::json!({"string": "somewhere else"});
    let put = serde_json::json!({"revisions": [tampered]});
    let (status, refusal) = call(&b, reqwest::Method::POST, &format!("{url_b}/dbs/field/revs/put"), Some(put));
    assert_eq!((status, refusal["error"].as_str()), (422, Some("corrupt")), "{refusal}");
    served_a.stop();
    served_b.stop();
}

/// A static file server (`python3 -m http.server`) on a loopback port, stopped when dropped: the
/// origin a browser page comes from.
struct StaticFiles {
    child: std::process::Child,
    port: u16,
}

impl StaticFiles {
    fn start(dir: &Path) -> StaticFiles {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string()])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 serves the page");
        // Bounded: until it accepts connections.
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        StaticFiles { child, port }
    }
}

impl Drop for StaticFiles {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Chromium, from the image (Debian's `chromium`, which `cargo xtask ci` installs when missing).
fn chromium() -> Option<String> {
    for candidate in ["chromium", "chromium-browser"] {
        if which(candidate) {
            return Some(candidate.to_owned());
        }
    }
    assert!(std::env::var("CI").as_deref() != Ok("true"), "chromium is missing: under CI=true this test must run");
    eprintln!("skipping the Chromium test: chromium is missing (apt-get install chromium)");
    None
}

/// The example page of docs/COUCHDB.md, an unmodified PouchDB app, in headless Chromium: served from
/// another origin, it syncs live with Outpost through CORS with the token as Basic credentials in the
/// URL, pulls a document the server holds and pushes its own, which Outpost keeps under the
/// browser's revision id.
#[test]
fn the_example_page_syncs_live_from_chromium() {
    let Some(harness) = harness() else { return };
    let Some(chromium) = chromium() else { return };
    let page_dir = tempfile::tempdir().unwrap();
    std::fs::copy(harness.join("browser/index.html"), page_dir.path().join("index.html")).unwrap();
    std::fs::copy(harness.join("node_modules/pouchdb/dist/pouchdb.min.js"), page_dir.path().join("pouchdb.min.js"))
        .unwrap();
    let files = StaticFiles::start(page_dir.path());
    let origin = format!("http://127.0.0.1:{}", files.port);
    let site = Site::with(|_| format!("[cors]\norigins = [\"{origin}\"]\n"));
    let mut served = site.serve();
    let url = served.url.clone();
    let seed = Some(serde_json::json!({"attributes": {"text": "from the server"}}));
    let (status, _) =
        call(&site, reqwest::Method::PUT, &format!("{url}/dbs/field/tables/orders/records/seed?format=plain"), seed);
    assert_eq!(status, 200);

    let host = url.trim_start_matches("http://");
    let remote = format!("http://outpost:{}@{host}/couch/field/orders", site.secret);
    let page = format!("{origin}/index.html?run=chromium&remote={}", encode(&remote));
    let out = Command::new("node")
        .arg("browser.mjs")
        .current_dir(&harness)
        .env("PAGE_URL", &page)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node runs the browser");
    let text = String::from_utf8_lossy(&out.stdout);
    let result: Value = serde_json::from_str(text.lines().last().unwrap_or("null")).unwrap_or(Value::Null);
    assert!(
        out.status.success() && result["ok"] == true,
        "the page: {result}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(result["seed"]["text"], "from the server");
    assert_eq!(result["server_rev"], result["note_rev"], "the browser's revision id, kept");
    let (status, note) = call(
        &site,
        reqwest::Method::GET,
        &format!("{url}/dbs/field/tables/orders/records/note-chromium?format=plain"),
        None,
    );
    assert_eq!((status, &note["rev"]), (200, &result["note_rev"]), "{note}");
    assert_eq!(note["attributes"]["n"].to_string(), "1.25");
    served.stop();
}

/// Percent-encoding for a query parameter's value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
