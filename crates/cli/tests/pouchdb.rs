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
        std::fs::write(&config, format!("listen = \"127.0.0.1:{port}\"\ndata = \"d\"\n{block}")).unwrap();
        Site { dir, config, secret }
    }

    fn serve(&self) -> Served {
        Served::start(self.dir.path(), &self.config, &[])
    }
}

/// Run one phase of the harness; its JSON report. `between` runs when the harness prints
/// `READY_FOR_RESTART`, and then the harness goes on.
fn phase(harness: &Path, url: &str, site: &Site, name: &str, between: Option<&mut dyn FnMut()>) -> Value {
    let signal = site.dir.path().join(format!("{name}.go"));
    let mut child = Command::new("node")
        .arg("pouchdb.test.mjs")
        .current_dir(harness)
        .env("PHASE", name)
        .env("OUTPOST_COUCH", format!("{url}/couch/field"))
        .env("OUTPOST_TOKEN", &site.secret)
        .env("OUTPOST_DB", "orders")
        .env("RESUME_SIGNAL", &signal)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node starts");
    let mut between = between;
    let mut report = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line.trim() == "READY_FOR_RESTART" {
            if let Some(f) = between.as_mut() {
                f();
            }
            std::fs::write(&signal, "go").unwrap();
        } else if line.starts_with('{') {
            report = Some(line);
        }
    }
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    let report: Value = serde_json::from_str(report.as_deref().unwrap_or("null")).unwrap();
    assert!(status.success() && report["ok"] == true, "PouchDB phase {name} failed: {report}\n{err}");
    report
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
    let report = phase(&harness, &url, &site, "push-pull", None);
    let ours = outpost_winners(&url, &site.secret);
    let theirs = report["winners"].as_object().expect("winners");
    assert!(!theirs.is_empty());
    for (id, rev) in theirs {
        assert_eq!(ours.get(id).map(String::as_str), rev.as_str(), "the winner of {id}");
    }
    assert_eq!(report["push"]["doc_write_failures"], 0);

    // Conflicts made on two PouchDBs, resolved on one.
    let report = phase(&harness, &url, &site, "conflicts", None);
    let id = format!("{}-conflict", report["tag"].as_str().unwrap());
    let resolved = report["resolved_rev"].as_str().map(str::to_owned);
    assert_eq!(outpost_winners(&url, &site.secret).get(&id), resolved.as_ref(), "{report}");

    // A document Outpost cannot store is denied; the rest replicates.
    let report = phase(&harness, &url, &site, "denied", None);
    assert_eq!(report["push"]["doc_write_failures"], 1, "{report}");
    assert_eq!(report["denied"][0]["name"], "forbidden", "{report}");

    // Live sync between two PouchDBs through Outpost.
    phase(&harness, &url, &site, "live", None);

    // Checkpoints outlive the server: the second replication starts where the first ended.
    let mut restart = || {
        served.stop();
        served = site.serve();
    };
    let report = phase(&harness, &url, &site, "resume", Some(&mut restart));
    assert_eq!(report["second_start_since"], report["first_last_seq"], "{report}");
    assert_eq!(report["second"]["docs_written"], 5, "{report}");

    // The token went over Basic auth on every request; it is in no log.
    served.stop();
    let log = std::fs::read_to_string(&served.log).unwrap_or_default();
    assert!(!log.contains(&site.secret), "the token was logged");
}
