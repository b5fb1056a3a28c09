//! Hostile clients against a real `outpost serve` on a loopback socket (SPEC §13, §14): half-sent
//! requests and idle connections are closed, a connection flood waits without harming served
//! connections, long-polls are capped globally and per token, and the protocol inputs that once
//! poisoned a database are refused. Each test ends with the server answering `/health`, and the
//! database passing `outpost db check`. Every loop is bounded; every process is stopped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[path = "common/served.rs"]
mod served;
use served::Served;

/// The longest any bounded wait here may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(30);

/// `outpost serve --config` on a free loopback port in `dir`, with `config` after its `listen` and
/// `data` lines.
fn serve(dir: &Path, config: &str) -> Served {
    let path = dir.join("outpost.toml");
    std::fs::write(&path, format!("listen = \"127.0.0.1:0\"\ndata = \"data\"\n{config}")).unwrap();
    Served::start(dir, &path, &[])
}

/// `http://host:port{path}`.
fn url(server: &Served, path: &str) -> String {
    format!("{}{path}", server.url)
}

/// `GET /health` on a fresh connection answers 200.
fn healthy(server: &Served) -> bool {
    let Ok(mut stream) = TcpStream::connect(server.addr()) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET /health HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", server.addr());
    let mut reply = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut reply).is_ok()
        && reply.starts_with("HTTP/1.1 200")
}

/// Whether the server has closed `stream` (a read sees the end, or the connection reset).
fn closed(stream: &mut TcpStream) -> bool {
    let _ = stream.set_nonblocking(true);
    let mut byte = [0u8; 1024];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}

/// Wait (bounded) until every stream is closed by the server, checking `/health` meanwhile when asked
/// (not while a flood holds every connection slot: new connections then wait their turn).
fn all_closed(server: &Served, streams: &mut [TcpStream], what: &str, health: bool) {
    let started = Instant::now();
    let mut open: Vec<usize> = (0..streams.len()).collect();
    while !open.is_empty() {
        assert!(started.elapsed() < PATIENCE, "{what}: {} connections still open", open.len());
        assert!(!health || healthy(server), "{what}: /health answers meanwhile");
        open.retain(|&i| !closed(&mut streams[i]));
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn db_check(dir: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args(["db", "check", "data/field.outpost"])
        .current_dir(dir)
        .env_remove("OUTPOST_LOG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "db check: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap()
}

#[test]
fn half_sent_requests_and_idle_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), "[limits]\nheader_read_timeout_secs = 1\n");
    // Slowloris: half a request line and some headers, then nothing.
    let mut slow: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = TcpStream::connect(server.addr()).unwrap();
            s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").unwrap();
            s
        })
        .collect();
    all_closed(&server, &mut slow, "half-sent requests", true);
    // An idle keep-alive connection after a served request.
    let mut idle = TcpStream::connect(server.addr()).unwrap();
    idle.write_all(format!("GET /health HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr()).as_bytes()).unwrap();
    let mut head = [0u8; 12];
    idle.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    all_closed(&server, &mut [idle], "an idle keep-alive connection", true);
    assert!(healthy(&server));
}

#[test]
fn a_connection_flood_waits_without_harming_served_connections() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), "[limits]\nmax_connections = 20\nheader_read_timeout_secs = 2\n");
    // A client already served keeps its connection.
    let mut served = TcpStream::connect(server.addr()).unwrap();
    let ask = format!("GET /health HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr());
    let answer = |stream: &mut TcpStream| {
        stream.write_all(ask.as_bytes()).unwrap();
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let mut buf = [0u8; 512];
        let n = stream.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert!(answer(&mut served).starts_with("HTTP/1.1 200"));
    // 100 connections that send nothing: 19 take the remaining slots, the rest wait in the backlog.
    let mut flood: Vec<TcpStream> = (0..100).filter_map(|_| TcpStream::connect(server.addr()).ok()).collect();
    assert!(flood.len() >= 50, "the backlog holds the flood ({})", flood.len());
    assert!(answer(&mut served).starts_with("HTTP/1.1 200"), "the served connection is unharmed");
    // The header timeout frees slots; the waiting ones are taken in turn and closed too.
    all_closed(&server, &mut flood, "the flood", false);
    assert!(healthy(&server), "new connections are served again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polls_are_capped_globally_and_per_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut secrets = Vec::new();
    let mut blocks = String::new();
    for name in ["a", "b", "c"] {
        let out = Command::new(env!("CARGO_BIN_EXE_outpost"))
            .args(["token", "new", "--name", name, "--role", "*=admin", "--json"])
            .output()
            .unwrap();
        let made: Value = serde_json::from_slice(&out.stdout).unwrap();
        secrets.push(made["token"].as_str().unwrap().to_owned());
        blocks.push_str(made["toml"].as_str().unwrap());
    }
    let config = format!("[limits]\nmax_feeds = 3\nmax_feeds_per_token = 2\n{blocks}");
    let server = serve(dir.path(), &config);
    let http = http();
    let create = http.put(url(&server, "/dbs/field")).bearer_auth(&secrets[0]).send().await.unwrap();
    assert_eq!(create.status(), 201);
    let poll = |secret: &str, ms: u64| {
        let request = http
            .get(url(&server, &format!("/dbs/field/changes?feed=longpoll&since=0&timeout={ms}")))
            .bearer_auth(secret.to_owned());
        async move { request.send().await.unwrap().status().as_u16() }
    };
    // Two of a's, one of b's: the server's three slots are held for a while. A probe below holds a
    // slot for a moment too, so a held poll that meets it retries (bounded) until it is in.
    let held: Vec<_> = [0, 0, 1]
        .into_iter()
        .map(|who| {
            let poll = poll(&secrets[who], 10_000);
            let retry = poll_again(&http, &server, &secrets[who]);
            tokio::spawn(async move {
                let first = poll.await;
                if first != 503 {
                    return first;
                }
                retry.await
            })
        })
        .collect();
    // Until they are all open, a probe may still find a slot: wait (bounded) for the cap to show.
    let started = Instant::now();
    loop {
        if poll(&secrets[2], 1).await == 503 {
            break;
        }
        assert!(started.elapsed() < PATIENCE, "the global cap never showed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(poll(&secrets[0], 1).await, 503, "a's own cap (and the server's)");
    // A normal page is no feed: always served.
    let page = http.get(url(&server, "/dbs/field/changes")).bearer_auth(&secrets[2]).send().await.unwrap();
    assert_eq!(page.status(), 200);
    for poll in held {
        assert_eq!(poll.await.unwrap(), 200, "the held polls end normally");
    }
    assert_eq!(poll(&secrets[2], 1).await, 200, "slots are given back");
    assert_eq!(poll(&secrets[0], 1).await, 200);
    assert!(healthy(&server));
}

/// A long-poll of 10 s with `secret`, tried again (bounded) while the server answers 503.
fn poll_again(http: &reqwest::Client, server: &Served, secret: &str) -> impl std::future::Future<Output = u16> {
    let request =
        http.get(url(server, "/dbs/field/changes?feed=longpoll&since=0&timeout=10000")).bearer_auth(secret.to_owned());
    async move {
        for _ in 0..200 {
            let status = request.try_clone().expect("no body").send().await.unwrap().status().as_u16();
            if status != 503 {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        503
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inputs_that_poisoned_a_database_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path(), "");
    let http = http();
    assert_eq!(http.put(url(&server, "/dbs/field")).send().await.unwrap().status(), 201);
    assert_eq!(http.put(url(&server, "/dbs/field/tables/t")).json(&json!({})).send().await.unwrap().status(), 201);
    let put = |body: Value| http.post(url(&server, "/dbs/field/revs/put")).json(&body).send();

    // An ancestry naming a generation near u64::MAX.
    let near = format!("{}-{}", u64::MAX - 1, "0".repeat(32));
    let top = format!("{}-{}", u64::MAX, "1".repeat(32));
    let body = json!({"revisions": [{"table": "t", "id": "x", "rev": top, "deleted": false,
        "attributes": {}, "ancestry": [near]}]});
    let reply = put(body).await.unwrap();
    assert_eq!(reply.status(), 400, "{}", reply.text().await.unwrap());

    // A 3 MiB table description.
    let big = json!({"description": "d".repeat(3 << 20)});
    let reply = http.put(url(&server, "/dbs/field/tables/big")).json(&big).send().await.unwrap();
    assert_eq!(reply.status(), 413);

    // A revs/get of 60,000 copies of one key: answered once.
    let write = json!({"attributes": {"n": {"int": "1"}}});
    let written: Value = http
        .put(url(&server, "/dbs/field/tables/t/records/r"))
        .json(&write)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let copies: Vec<Value> = (0..60_000).map(|_| json!({"table": "t", "id": "r", "revs": [written["rev"]]})).collect();
    let reply = http.post(url(&server, "/dbs/field/revs/get")).json(&copies).send().await.unwrap();
    assert_eq!(reply.status(), 200);
    let answered: Vec<Value> = reply.json().await.unwrap();
    assert_eq!(answered.len(), 1, "one revision, not 60,000");

    // The changes feed still answers for every reader, and a seq past i64::MAX is refused.
    let feed = http.get(url(&server, "/dbs/field/changes?since=0")).send().await.unwrap();
    assert_eq!(feed.status(), 200);
    let past = http.get(url(&server, "/dbs/field/changes?since=9223372036854775808")).send().await.unwrap();
    assert_eq!(past.status(), 400);
    assert!(healthy(&server));
    server.stop();
    db_check(dir.path());
}
