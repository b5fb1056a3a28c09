//! SPEC §14 end to end, over real sockets: `outpost serve --config` with TLS (a CA made at run time
//! by `outpost cert new`) and tokens (`outpost token new`); `outpost sync` between two such servers
//! with a read token on the source and a write token on the target, and refused with a read-only one;
//! a server-run continuous job between them through `[[peers]]`, surviving a restart of either
//! server; `quicksync pull` over HTTPS with a token; the start-up refusals; and no secret in any log.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[path = "common/served.rs"]
mod served;
use served::Served;

/// How long a wait for replication may take before the test fails (bounded loops only).
const PATIENCE: Duration = Duration::from_secs(60);

/// `outpost ARGS` in `dir` with extra environment variables: exit code, stdout, stderr. The log goes
/// to stderr at debug level, so that secret checks read everything the process could log.
fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args(args)
        .current_dir(dir)
        .env("OUTPOST_LOG", "debug")
        .env_remove("OUTPOST_TOKEN")
        .env_remove("OUTPOST_CA_FILE")
        .envs(env.iter().copied())
        .output()
        .expect("the outpost binary runs");
    let text = |b: Vec<u8>| String::from_utf8(b).expect("utf-8 output");
    (out.status.code().unwrap_or(-1), text(out.stdout), text(out.stderr))
}

/// Everything a test ran printed, to check that no secret is in it.
#[derive(Default)]
struct Logs(Vec<String>);

impl Logs {
    fn run(&mut self, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        let (code, out, err) = run(dir, args, env);
        self.0.push(format!("$ outpost {}\n{out}\n{err}", args.join(" ")));
        (code, out, err)
    }

    fn ok(&mut self, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
        let (code, out, err) = self.run(dir, args, env);
        assert_eq!(code, 0, "outpost {}\nstdout: {out}\nstderr: {err}", args.join(" "));
        out
    }

    /// No secret appears anywhere in what was printed or logged (the token files aside).
    fn assert_free_of(&self, secrets: &[String], servers: &[&Served]) {
        let mut texts = self.0.clone();
        texts.extend(servers.iter().map(|s| std::fs::read_to_string(&s.log).unwrap_or_default()));
        for secret in secrets {
            for text in &texts {
                assert!(!text.contains(secret.as_str()), "a secret was printed or logged:\n{text}");
            }
        }
    }
}

/// A port that was free a moment ago (for a server that must come back on the same address).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A temp dir with a private CA (`tls/`) and the token files asked for; the secrets, by name.
struct Site {
    dir: tempfile::TempDir,
    logs: Logs,
    blocks: std::collections::HashMap<String, String>,
}

impl Site {
    fn new(tokens: &[(&str, &[&str])]) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let mut site = Site { dir, logs: Logs::default(), blocks: Default::default() };
        let root = site.dir.path().to_owned();
        site.logs.ok(&root, &["cert", "new", "--out", "tls", "--host", "localhost", "--host", "127.0.0.1"], &[]);
        for (name, roles) in tokens {
            let file = format!("{name}.token");
            let mut args = vec!["token", "new", "--name", name, "--secret-file", &file];
            for role in *roles {
                args.extend(["--role", role]);
            }
            let block = site.logs.ok(&root, &args, &[]);
            site.blocks.insert((*name).to_owned(), block);
        }
        site
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn secret(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(&format!("{name}.token"))).unwrap().trim().to_owned()
    }

    /// Write config `name` listening on `port`, serving `data`, with TLS and the tokens named.
    fn config(&self, name: &str, port: u16, data: &str, tokens: &[&str], extra: &str) -> PathBuf {
        let mut text = format!(
            "listen = \"127.0.0.1:{port}\"\ndata = \"{data}\"\n{extra}\n[tls]\ncert = \"tls/cert.pem\"\nkey = \"tls/key.pem\"\n"
        );
        for token in tokens {
            text.push('\n');
            text.push_str(&self.blocks[*token]);
        }
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn ca(&self) -> String {
        self.path("tls/ca.pem").display().to_string()
    }

    /// `outpost ARGS` with the CA trusted and the token of `token` (if any).
    fn outpost(&mut self, args: &[&str], token: Option<&str>) -> (i32, String, String) {
        let ca = self.ca();
        let secret = token.map(|t| self.secret(t));
        let mut env = vec![("OUTPOST_CA_FILE", ca.as_str())];
        if let Some(secret) = &secret {
            env.push(("OUTPOST_TOKEN", secret.as_str()));
        }
        let root = self.dir.path().to_owned();
        self.logs.run(&root, args, &env)
    }

    fn ok(&mut self, args: &[&str], token: Option<&str>) -> String {
        let (code, out, err) = self.outpost(args, token);
        assert_eq!(code, 0, "outpost {}\nstdout: {out}\nstderr: {err}", args.join(" "));
        out
    }

    fn secrets(&self) -> Vec<String> {
        self.blocks.keys().map(|name| self.secret(name)).collect()
    }
}

/// An HTTPS client trusting the site's CA.
fn client(site: &Site) -> reqwest::Client {
    let pem = std::fs::read(site.path("tls/ca.pem")).unwrap();
    reqwest::Client::builder().add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap()).build().unwrap()
}

async fn update_seq(http: &reqwest::Client, url: &str, secret: &str) -> u64 {
    let info: Value = http.get(url).bearer_auth(secret).send().await.unwrap().json().await.unwrap();
    info["update_seq"].as_u64().unwrap_or_else(|| panic!("no update_seq in {info}"))
}

/// Wait until `record` of table `orders` is readable at `db_url` with `secret`.
async fn wait_for_record(http: &reqwest::Client, db_url: &str, secret: &str, record: &str) {
    let started = Instant::now();
    loop {
        let url = format!("{db_url}/tables/orders/records/{record}");
        if let Ok(reply) = http.get(&url).bearer_auth(secret).send().await {
            if reply.status().is_success() {
                return;
            }
        }
        assert!(started.elapsed() < PATIENCE, "{record} did not reach {db_url}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn a_server_refuses_to_be_exposed_without_tokens_or_tls() {
    let mut site = Site::new(&[("ops", &["*=admin"])]);
    let root = site.dir.path().to_owned();
    let (code, _, err) = site.logs.run(&root, &["serve", "--listen", "0.0.0.0:0", "--data", "d"], &[]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("without access tokens") && err.contains("outpost token new"), "{err}");

    let plain = site.path("plain.toml");
    std::fs::write(&plain, format!("listen = \"0.0.0.0:0\"\ndata = \"d\"\n{}", site.blocks["ops"])).unwrap();
    let (code, _, err) = site.logs.run(&root, &["serve", "--config", plain.to_str().unwrap()], &[]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("refusing to serve plain HTTP") && err.contains("[tls]"), "{err}");

    let allowed = site.path("allowed.toml");
    std::fs::write(
        &allowed,
        format!("listen = \"0.0.0.0:0\"\ndata = \"d\"\nallow_plain_http = true\n{}", site.blocks["ops"]),
    )
    .unwrap();
    let mut served = Served::start(&root, &allowed, &[]);
    assert!(served.url.starts_with("http://0.0.0.0:"), "{}", served.url);
    served.stop();
    let log = std::fs::read_to_string(&served.log).unwrap();
    assert!(log.contains("plain HTTP") && log.contains("not encrypted"), "warned: {log}");

    let bad = site.path("bad.toml");
    std::fs::write(&bad, "listen = \"127.0.0.1:0\"\ntokenz = []\n").unwrap();
    let (code, _, err) = site.logs.run(&root, &["serve", "--config", bad.to_str().unwrap()], &[]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("tokenz"), "the unknown key is named: {err}");
    site.logs.assert_free_of(&site.secrets(), &[&served]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_https_servers_replicate_with_tokens_by_cli_and_by_job() {
    let mut site = Site::new(&[
        ("ops", &["*=admin"]),
        ("reader", &["field=read"]),
        ("writer", &["field=write"]),
        ("viewer", &["field=read"]),
    ]);
    let http = client(&site);
    let (port_a, port_b) = (free_port(), free_port());
    let config_a = site.config("a.toml", port_a, "data-a", &["ops", "reader"], "");
    let peer = format!(
        "[[peers]]\nurl = \"https://localhost:{port_a}\"\ntoken_file = \"reader.token\"\nca_file = \"tls/ca.pem\"\n"
    );
    // `[[peers]]` before `[tls]`: the config writer puts extra text first.
    let config_b = site.config("b.toml", port_b, "data-b", &["ops", "writer", "viewer"], &peer);
    let root = site.dir.path().to_owned();
    let mut a = Served::start(&root, &config_a, &[]);
    let mut b = Served::start(&root, &config_b, &[]);
    assert!(a.url.starts_with("https://"), "{}", a.url);
    let url_a = format!("https://localhost:{port_a}/dbs/field");
    let url_b = format!("https://localhost:{port_b}/dbs/field");

    // A holds the data; B has an empty database of the same name.
    site.ok(&["db", "create", &url_a], Some("ops"));
    site.ok(&["db", "create", &url_b], Some("ops"));
    site.ok(&["table", "create", &url_a, "orders"], Some("ops"));
    for i in 0..5 {
        site.ok(&["put", &url_a, "orders", &format!("o-{i}"), &format!("qty={i}")], Some("ops"));
    }

    // Without a token, or without the CA: clear refusals.
    let (code, _, err) = site.outpost(&["get", &url_a, "orders", "o-1"], None);
    assert_eq!(code, 9, "{err}");
    assert!(err.contains("needs an access token") && err.contains("OUTPOST_TOKEN"), "{err}");
    let root_dir = site.dir.path().to_owned();
    let secret = site.secret("reader");
    let (code, _, err) = site.logs.run(&root_dir, &["get", &url_a, "orders", "o-1"], &[("OUTPOST_TOKEN", &secret)]);
    assert_eq!(code, 11, "an untrusted certificate is refused: {err}");
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    // The sync of the issue: a read token on the source, a write token on the target.
    let reader = site.path("reader.token").display().to_string();
    let writer = site.path("writer.token").display().to_string();
    let viewer = site.path("viewer.token").display().to_string();
    let before = update_seq(&http, &url_b, &site.secret("ops")).await;
    let (code, _, err) =
        site.outpost(&["sync", &url_a, &url_b, "--source-token-file", &reader, "--target-token-file", &viewer], None);
    assert_eq!(code, 10, "a read-only token on the target is forbidden: {err}");
    assert!(
        err.contains("forbidden") && err.contains("\"viewer\" has read on database \"field\"; this needs write"),
        "{err}"
    );
    assert_eq!(update_seq(&http, &url_b, &site.secret("ops")).await, before, "nothing was written");

    let out = site
        .ok(&["sync", &url_a, &url_b, "--source-token-file", &reader, "--target-token-file", &writer, "--json"], None);
    let report: Value = serde_json::from_str(&out).unwrap();
    let written = report[0]["revisions_written"].as_u64().or(report["revisions_written"].as_u64());
    assert!(written.is_some_and(|n| n >= 6), "{report}");
    wait_for_record(&http, &url_b, &site.secret("viewer"), "o-4").await;

    // A server-run continuous job on B pulling from A through [[peers]], with A's reader token.
    let ops = site.secret("ops");
    let job: Value = http
        .post(format!("https://localhost:{port_b}/replicate"))
        .bearer_auth(&ops)
        .json(&json!({"source": url_a, "target": "field", "continuous": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(job["state"], "running", "{job}");
    // Not a peer: refused before any connection.
    let refused = http
        .post(format!("https://localhost:{port_b}/replicate"))
        .bearer_auth(&ops)
        .json(&json!({"source": "https://127.0.0.1:22/dbs/x", "target": "field"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let body: Value = refused.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("not a configured peer"), "{body}");

    site.ok(&["put", &url_a, "orders", "live-1", "qty=1"], Some("ops"));
    wait_for_record(&http, &url_b, &ops, "live-1").await;

    // A restarts on the same address: the job retries and goes on.
    a.stop();
    a = Served::start(&root, &config_a, &[]);
    site.ok(&["put", &url_a, "orders", "live-2", "qty=2"], Some("ops"));
    wait_for_record(&http, &url_b, &ops, "live-2").await;

    // B restarts: the job is resumed from its jobs file.
    b.stop();
    b = Served::start(&root, &config_b, &[]);
    site.ok(&["put", &url_a, "orders", "live-3", "qty=3"], Some("ops"));
    wait_for_record(&http, &url_b, &ops, "live-3").await;

    // No credential in the job listing or the jobs file.
    let listing =
        http.get(format!("https://localhost:{port_b}/replicate/jobs")).bearer_auth(&ops).send().await.unwrap();
    let listing = listing.text().await.unwrap();
    assert!(listing.contains("\"running\""), "{listing}");
    let jobs_file = std::fs::read_to_string(site.path("data-b/replication-jobs.json")).unwrap();
    for secret in site.secrets() {
        assert!(!listing.contains(&secret) && !jobs_file.contains(&secret));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| std::fs::metadata(site.path(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("data-b"), 0o700);
        assert_eq!(mode("data-b/field.outpost"), 0o600);
        assert_eq!(mode("data-b/replication-jobs.json"), 0o600);
        assert_eq!(mode("reader.token"), 0o600);
        assert_eq!(mode("tls/key.pem"), 0o600);
    }
    a.stop();
    b.stop();
    site.logs.assert_free_of(&site.secrets(), &[&a, &b]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quicksync_pulls_over_https_with_a_token() {
    let mut site = Site::new(&[("ops", &["*=admin"]), ("reader", &["field=read"])]);
    let http = client(&site);
    let port = free_port();
    let config = site.config("a.toml", port, "data", &["ops", "reader"], "");
    let root = site.dir.path().to_owned();
    let mut served = Served::start(&root, &config, &["--publish-every", "1", "--publish-interval", "1"]);
    let url = format!("https://localhost:{port}/dbs/field");
    site.ok(&["db", "create", &url], Some("ops"));
    site.ok(&["table", "create", &url, "orders"], Some("ops"));
    for i in 0..3 {
        site.ok(&["put", &url, "orders", &format!("o-{i}"), "qty=1"], Some("ops"));
    }
    // Wait for the publisher to list the last write.
    let want = update_seq(&http, &url, &site.secret("ops")).await;
    let started = Instant::now();
    loop {
        let manifest =
            http.get(format!("{url}/quicksync/manifest.csv")).bearer_auth(site.secret("reader")).send().await;
        let text = match manifest {
            Ok(reply) if reply.status().is_success() => reply.text().await.unwrap(),
            _ => String::new(),
        };
        if text.lines().skip(1).any(|row| row.split(',').nth(3).and_then(|s| s.parse::<u64>().ok()) == Some(want)) {
            break;
        }
        assert!(started.elapsed() < PATIENCE, "the publisher did not publish seq {want}: {text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let quicksync = format!("{url}/quicksync/");
    let (code, _, err) = site.outpost(&["quicksync", "pull", &quicksync, "nobody.outpost"], None);
    assert_eq!(code, 9, "no token: {err}");
    let out = site.ok(&["quicksync", "pull", &quicksync, "tablet.outpost", "--json"], Some("reader"));
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["quicksync"]["end_seq"].as_u64(), Some(want), "{report}");
    let got = site.ok(&["get", "tablet.outpost", "orders", "o-2", "--json"], None);
    assert!(got.contains("\"o-2\""), "{got}");
    served.stop();
    site.logs.assert_free_of(&site.secrets(), &[&served]);
}

/// The README's "Serving on a network" block, run as written (its port moved to a free one) in a fresh
/// directory with this build's `outpost` first on the PATH.
#[test]
fn the_readme_section_runs_as_written() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let start = readme.find("<!-- serving-on-a-network").expect("the README marks the section");
    let block = &readme[start..];
    let block = &block[block.find("```sh\n").expect("a sh block") + 6..];
    let script = &block[..block.find("\n```").expect("the block ends")];
    let port = free_port().to_string();
    // If a command fails, the server the script started in the background goes with it.
    let script = format!("trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n{}\n", script.replace("7443", &port));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("readme.sh"), &script).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_outpost")).parent().unwrap().to_owned();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "readme.sh"])
        .current_dir(dir.path())
        .env("PATH", path)
        .env_remove("OUTPOST_TOKEN")
        .env_remove("OUTPOST_CA_FILE")
        .env_remove("OUTPOST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "the README's commands failed\n--- script\n{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert!(stdout.contains("outpost listening on https://0.0.0.0:"), "{stdout}");
    assert!(stdout.contains("o-1") && stdout.contains("qty"), "the synced record is read back: {stdout}");
    for token in ["ops.token", "tablet.token"] {
        let secret = std::fs::read_to_string(dir.path().join(token)).unwrap();
        assert!(!stdout.contains(secret.trim()) && !stderr.contains(secret.trim()), "no secret printed");
    }
}
