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
        Self::start_with(&[])
    }

    /// A server over `data/` in a fresh temp dir, with `extra` arguments.
    fn start_with(extra: &[&std::ffi::OsStr]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_outpost"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(dir.path().join("data"))
            .args(extra)
            .env_remove("OUTPOST_QUICKSYNC")
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

/// `GET path` over HTTP/1.1 with extra request headers: the status line, the head and the body.
fn http_get(base: &str, path: &str, headers: &[&str]) -> (String, String, Vec<u8>) {
    use std::io::{Read, Write};
    let addr = base.strip_prefix("http://").expect("an http:// URL");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    headers.iter().for_each(|h| request.push_str(&format!("{h}\r\n")));
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).expect("read");
    let end = reply.windows(4).position(|w| w == b"\r\n\r\n").expect("a head");
    let head = String::from_utf8(reply[..end].to_vec()).expect("ASCII head").to_ascii_lowercase();
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, head, reply[end + 4..].to_vec())
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
    assert!(err.contains("without access tokens") && err.contains("127.0.0.1"), "{err}");
}

#[test]
fn quicksync_files_are_served_from_the_data_directory_by_default() {
    let server = Server::start();
    let root = server._dir.path().join("data/quicksync");
    assert!(root.is_dir(), "serve --data DIR creates DIR/quicksync");
    ok(&["db", "create", &format!("{}/dbs/field", server.url)]);
    std::fs::create_dir_all(root.join("field")).unwrap();
    std::fs::write(root.join("field/manifest.csv"), "kind,db_uuid\n").unwrap();
    std::fs::write(root.join("field/snap.oqs"), b"0123456789abcdefghij").unwrap();
    let (status, head, body) = http_get(&server.url, "/dbs/field/quicksync/manifest.csv", &[]);
    assert!(status.contains(" 200 "), "{head}");
    assert!(head.contains("content-type: text/csv"), "{head}");
    assert_eq!(body, b"kind,db_uuid\n");
    let (status, head, body) = http_get(&server.url, "/dbs/field/quicksync/snap.oqs", &["Range: bytes=10-"]);
    assert!(status.contains(" 206 "), "{head}");
    assert!(head.contains("content-range: bytes 10-19/20"), "{head}");
    assert_eq!(body, b"abcdefghij");
    assert!(server.stop().success());
}

#[test]
fn the_quicksync_flag_names_another_root() {
    let elsewhere = tempfile::tempdir().unwrap();
    let root = elsewhere.path().join("published");
    let server = Server::start_with(&["--quicksync".as_ref(), root.as_os_str()]);
    assert!(root.is_dir(), "--quicksync DIR is created");
    assert!(!server._dir.path().join("data/quicksync").exists(), "no default beside the data then");
    ok(&["db", "create", &format!("{}/dbs/field", server.url)]);
    std::fs::create_dir_all(root.join("field")).unwrap();
    std::fs::write(root.join("field/manifest.csv"), "kind\n").unwrap();
    let (status, head, body) = http_get(&server.url, "/dbs/field/quicksync/manifest.csv", &[]);
    assert!(status.contains(" 200 "), "{head}");
    assert_eq!(body, b"kind\n");
    let (status, head, _) = http_get(&server.url, "/dbs/field/quicksync/..%2Fmanifest.csv", &[]);
    assert!(status.contains(" 400 "), "{head}");
    assert!(server.stop().success());
}

/// The server compacts the tables that set keep_bodies on its schedule, and `outpost db compact` of a
/// server's URL compacts there.
#[test]
fn a_server_compacts_tables_that_keep_few_bodies_on_its_schedule() {
    let server = Server::start_with(&["--compact-every".as_ref(), "1".as_ref()]);
    let db = format!("{}/dbs/field", server.url);
    ok(&["db", "create", &db]);
    ok(&["table", "create", &db, "notes", "--keep-bodies", "1"]);
    let mut revs: Vec<String> = Vec::new();
    for round in 0..5 {
        let text = format!("round={round}");
        let mut args = vec!["put", db.as_str(), "notes", "n", "--json", text.as_str()];
        if let Some(rev) = revs.last() {
            args.extend(["--rev", rev.as_str()]);
        }
        let put: serde_json::Value = serde_json::from_str(&ok(&args)).unwrap();
        revs.push(put["rev"].as_str().unwrap().to_owned());
    }
    // Generations 1-3 lie more than one below the leaf (5): the schedule drops their bodies.
    let body_of = |rev: &str| outpost(&["get", &db, "notes", "n", "--rev", rev]).0;
    let mut rounds = 0;
    while body_of(&revs[2]) != 3 {
        rounds += 1;
        assert!(rounds < 600, "the scheduled compaction never ran");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!((body_of(&revs[0]), body_of(&revs[3]), body_of(&revs[4])), (3, 0, 0), "generation 4 is kept");
    let report: serde_json::Value =
        serde_json::from_str(&ok(&["db", "compact", &db, "--keep-bodies", "0", "--json"])).unwrap();
    assert_eq!((report["records"].as_u64(), report["bodies_dropped"].as_u64()), (Some(1), Some(1)), "{report}");
    assert_eq!(body_of(&revs[3]), 3);
    let (code, _, err) = outpost(&["db", "compact", &db, "--vacuum"]);
    assert_eq!(code, 5, "{err}");
    assert!(server.stop().success());
}
