//! `outpost serve` end to end: a real server process on a free loopback port, driven by the same
//! binary through `http://` locators, then stopped with SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A running `outpost serve`; killed when dropped so no test leaves a process behind.
struct Server {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_outpost"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(dir.path().join("data"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("outpost serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        Server { child, url, _dir: dir }
    }

    fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn outpost(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_outpost")).args(args).env_remove("OUTPOST_LOG").output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

fn ok(args: &[&str]) -> String {
    let (code, out, err) = outpost(args);
    assert_eq!(code, 0, "outpost {}\n{out}\n{err}", args.join(" "));
    out
}

#[test]
fn records_are_written_and_read_through_a_server() {
    let server = Server::start();
    let db = format!("{}/dbs/field", server.url);
    ok(&["db", "create", &db]);
    ok(&["table", "create", &db, "people"]);
    let put: serde_json::Value = serde_json::from_str(&ok(&["put", &db, "people", "ann", "age=41", "--json"])).unwrap();
    let rev = put["rev"].as_str().unwrap().to_owned();
    let got: serde_json::Value = serde_json::from_str(&ok(&["get", &db, "people", "ann", "--json"])).unwrap();
    assert_eq!(got["rev"], rev.as_str());
    assert_eq!(got["attributes"]["age"], serde_json::json!({"int": "41"}));
    // A stale rev over HTTP is the same conflict (exit 4) as on a file.
    ok(&["put", &db, "people", "ann", "--rev", &rev, "age=42"]);
    let (code, _, err) = outpost(&["put", &db, "people", "ann", "--rev", &rev, "age=43"]);
    assert_eq!(code, 4, "{err}");
    let info: serde_json::Value = serde_json::from_str(&ok(&["db", "info", &db, "--json"])).unwrap();
    assert_eq!(info["update_seq"], 3);
    // Missing databases are not found (exit 3); maintenance needs a local file.
    assert_eq!(outpost(&["db", "info", &format!("{}/dbs/nope", server.url)]).0, 3);
    assert_eq!(outpost(&["db", "check", &db]).0, 5);
    assert!(server.stop().success(), "SIGTERM stops the server cleanly");
}

#[test]
fn serving_beyond_loopback_without_tokens_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (code, _, err) = outpost(&["serve", "--listen", "0.0.0.0:0", "--data", data.to_str().unwrap()]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("loopback"), "{err}");
}
