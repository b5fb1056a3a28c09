//! Hostile clients against a real `outpost serve` on a loopback socket (SPEC §13, §14): half-sent
//! requests and idle connections are closed, a connection flood waits without harming served
//! connections, long-polls are capped globally and per token, and the protocol inputs that once
//! poisoned a database are refused. Each test ends with the server answering `/health`, and the
//! database passing `outpost db check`. Every loop is bounded; every process is stopped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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

/// `GET /health` on a fresh connection answers 200 within a second.
fn healthy(server: &Served) -> bool {
    let started = Instant::now();
    let Ok(mut stream) = TcpStream::connect(server.addr()) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let request = format!("GET /health HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", server.addr());
    let mut reply = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut reply).is_ok()
        && reply.starts_with("HTTP/1.1 200")
        && started.elapsed() <= Duration::from_secs(1)
}

/// Create the database `field` with a request on a fresh connection.
fn create_field(server: &Served) {
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    let request =
        format!("PUT /dbs/field HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", server.addr());
    stream.write_all(request.as_bytes()).unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 201"), "{reply}");
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

/// Create the database `field` with an empty table `t`.
async fn field_with_table(http: &reqwest::Client, server: &Served) {
    assert_eq!(http.put(url(server, "/dbs/field")).send().await.unwrap().status(), 201);
    assert_eq!(http.put(url(server, "/dbs/field/tables/t")).json(&json!({})).send().await.unwrap().status(), 201);
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap()
}

#[test]
fn half_sent_requests_and_idle_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path(), "[limits]\nheader_read_timeout_secs = 1\n");
    create_field(&server);
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
    server.stop();
    db_check(dir.path());
}

#[test]
fn a_connection_flood_waits_without_harming_served_connections() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path(), "[limits]\nmax_connections = 20\nheader_read_timeout_secs = 2\n");
    create_field(&server);
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
    server.stop();
    db_check(dir.path());
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
    let mut server = serve(dir.path(), &config);
    let http = http();
    let create = http.put(url(&server, "/dbs/field")).bearer_auth(&secrets[0]).send().await.unwrap();
    assert_eq!(create.status(), 201);
    let health = HealthWatch::start(&server);
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
    health.finish();
    assert!(healthy(&server));
    server.stop();
    db_check(dir.path());
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
    field_with_table(&http, &server).await;
    let put = |body: Value| http.post(url(&server, "/dbs/field/revs/put")).json(&body).send();
    let health = HealthWatch::start(&server);

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
    health.finish();
    assert!(healthy(&server));
    server.stop();
    db_check(dir.path());
}

/// `GET /health` polled on fresh connections every 50 ms on a thread of its own, from `start` until
/// `finish`, which fails the test unless every poll was answered 200 within a second.
struct HealthWatch {
    done: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Result<Duration, String>>,
}

impl HealthWatch {
    fn start(server: &Served) -> Self {
        let (done, addr) = (Arc::new(AtomicBool::new(false)), server.addr().to_owned());
        let stop = done.clone();
        let thread = std::thread::spawn(move || {
            let mut slowest = Duration::ZERO;
            let mut polls = 0;
            while !stop.load(Ordering::SeqCst) || polls == 0 {
                let started = Instant::now();
                let answer = (|| {
                    let mut stream = TcpStream::connect(&addr).ok()?;
                    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
                    let request = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
                    stream.write_all(request.as_bytes()).ok()?;
                    let mut reply = String::new();
                    stream.read_to_string(&mut reply).ok()?;
                    Some(reply)
                })();
                let took = started.elapsed();
                match answer {
                    Some(reply) if reply.starts_with("HTTP/1.1 200") && took <= Duration::from_secs(1) => {}
                    other => return Err(format!("poll {polls}: /health gave {other:?} after {took:?}")),
                }
                slowest = slowest.max(took);
                polls += 1;
                if polls > 20 * 600 {
                    return Err("the watched work did not end in ten minutes".into());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(slowest)
        });
        HealthWatch { done, thread }
    }

    /// Stop polling; the slowest answer.
    fn finish(self) -> Duration {
        self.done.store(true, Ordering::SeqCst);
        self.thread.join().expect("the health thread").unwrap_or_else(|e| panic!("{e}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_while_huge_replication_requests_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path(), "");
    let http = http();
    field_with_table(&http, &server).await;
    // 10,000 records of about 1 KiB: a revs/get of all of them is as large as one request may ask.
    let text = "x".repeat(1000);
    let mut wanted = Vec::new();
    for batch in 0..4 {
        let ops: Vec<Value> = (0..2500)
            .map(|i| {
                json!({"op": "put", "table": "t", "id": format!("r{batch}-{i}"),
                "attributes": {"text": {"string": text}, "n": {"int": i.to_string()}}})
            })
            .collect();
        let reply = http.post(url(&server, "/dbs/field/bulk")).json(&json!({"ops": ops})).send().await.unwrap();
        assert_eq!(reply.status(), 200);
        let results: Value = reply.json().await.unwrap();
        for r in results["results"].as_array().unwrap() {
            wanted.push(json!({"table": "t", "id": r["id"], "revs": [r["rev"]]}));
        }
    }
    assert_eq!(wanted.len(), 10_000);
    let reply = http.post(url(&server, "/dbs/field/revs/get")).json(&wanted).send().await.unwrap();
    let revisions: Value = json!({"revisions": reply.json::<Value>().await.unwrap()});
    let revisions = Arc::new(revisions);
    for copy in 0..3 {
        assert_eq!(http.put(url(&server, &format!("/dbs/copy{copy}"))).send().await.unwrap().status(), 201);
    }
    let wanted = Arc::new(wanted);
    let health = HealthWatch::start(&server);
    // Six readers at once, each asking for everything three times, and three writers each storing
    // all of it (11 MiB of bodies, every one hashed) into a database of its own: more heavy requests
    // than the server has async workers.
    let writers: Vec<_> = (0..3)
        .map(|copy| {
            let (http, revisions, at) =
                (http.clone(), revisions.clone(), url(&server, &format!("/dbs/copy{copy}/revs/put")));
            tokio::spawn(async move {
                let reply = http.post(&at).json(&*revisions).send().await.unwrap();
                assert_eq!(reply.status(), 200);
                let put: Value = reply.json().await.unwrap();
                assert_eq!(put["written"], 10_000, "{put}");
            })
        })
        .collect();
    let readers: Vec<_> = (0..6)
        .map(|_| {
            let (http, wanted, at) = (http.clone(), wanted.clone(), url(&server, "/dbs/field/revs/get"));
            tokio::spawn(async move {
                for _ in 0..3 {
                    let reply = http.post(&at).json(&*wanted).send().await.unwrap();
                    assert_eq!(reply.status(), 200);
                    let got: Vec<Value> = reply.json().await.unwrap();
                    assert_eq!(got.len(), 10_000);
                }
            })
        })
        .collect();
    for task in readers.into_iter().chain(writers) {
        task.await.unwrap();
    }
    let slowest = health.finish();
    eprintln!("slowest /health answer during the revs/gets: {slowest:?}");
    assert!(healthy(&server));
    server.stop();
    db_check(dir.path());
}

/// The server process's peak resident memory (VmHWM), in bytes.
fn peak_memory(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc/PID/status");
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_16_mib_bodies_stays_within_the_upload_budget() {
    const BUDGET: usize = 64 << 20;
    const LIMIT: usize = 16 << 20;
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path(), &format!("[limits]\nmax_upload_bytes = {BUDGET}\n"));
    let http = http();
    field_with_table(&http, &server).await;
    let before = peak_memory(server.pid());
    let health = HealthWatch::start(&server);
    // Sixteen clients at once, 256 MiB in all: bodies of exactly the request limit (valid JSON that
    // stores nothing), one byte over it, and over it without a declared length.
    let body = |size: usize| {
        let (head, tail) = ("{\"revisions\": [", "]}");
        format!("{head}{}{tail}", " ".repeat(size - head.len() - tail.len())).into_bytes()
    };
    let (at_limit, over) = (body(LIMIT), body(LIMIT + 1));
    let clients: Vec<_> = (0..16)
        .map(|i| {
            let http = http.clone();
            let at = url(&server, "/dbs/field/revs/put");
            let (kind, payload) = match i % 4 {
                0 | 1 => ("at the limit", reqwest::Body::from(at_limit.clone())),
                2 => ("one byte over", reqwest::Body::from(over.clone())),
                _ => {
                    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
                        over.chunks(1 << 20).map(|c| Ok(c.to_vec())).collect();
                    ("over, chunked", reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
                }
            };
            tokio::spawn(async move {
                let reply = http.post(at).header("content-type", "application/json").body(payload).send().await;
                (kind, reply.map(|r| r.status().as_u16()).map_err(|e| e.to_string()))
            })
        })
        .collect();
    let mut stored = 0;
    for client in clients {
        let (kind, status) = client.await.unwrap();
        match (kind, status) {
            ("at the limit", Ok(200)) => stored += 1,
            // Waited longer than the server waits for room in the budget.
            (_, Ok(503)) => {}
            ("one byte over" | "over, chunked", Ok(413)) => {}
            // The server may answer 413 and close before the whole body is sent.
            ("one byte over" | "over, chunked", Err(_)) => {}
            other => panic!("unexpected answer: {other:?}"),
        }
    }
    let slowest = health.finish();
    assert!(stored > 0, "bodies at the limit are served");
    // The bodies read at once never exceed the budget: a body is held about twice while it is
    // collected, so the peak stays near twice the budget, far below the 16 bodies (512 MiB held).
    let peak = peak_memory(server.pid());
    eprintln!("slowest /health: {slowest:?}; peak memory {} MiB (before {} MiB)", peak >> 20, before >> 20);
    assert!(peak < before + 2 * BUDGET as u64 + (48 << 20), "peak memory {} MiB", peak >> 20);
    // Nothing was stored, and the server serves normal requests.
    let info: Value = http.get(url(&server, "/dbs/field")).send().await.unwrap().json().await.unwrap();
    assert_eq!(info["update_seq"], 1, "only the table definition: {info}");
    assert!(healthy(&server));
    server.stop();
    db_check(dir.path());
}

/// The CouchDB routes' bodies take room in the upload budget too: while one upload holds all of it
/// (it declared the largest body and sends it slowly), another couch request with a body waits for
/// room and is turned away with 503; once the first is gone, the same request is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn couch_bodies_take_room_in_the_upload_budget() {
    const LIMIT: usize = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path(), &format!("[limits]\nmax_request_bytes = {LIMIT}\nmax_upload_bytes = {LIMIT}\n"));
    let http = http();
    assert_eq!(http.put(url(&server, "/dbs/field")).send().await.unwrap().status(), 201);
    assert_eq!(http.put(url(&server, "/couch/field/t")).send().await.unwrap().status(), 201);
    let mut held = TcpStream::connect(server.addr()).unwrap();
    let head = format!(
        "POST /couch/field/t/_bulk_docs HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {LIMIT}\r\n\r\n{{\"docs\": [",
        server.addr()
    );
    held.write_all(head.as_bytes()).unwrap();
    let diff = || async {
        let reply = http.post(url(&server, "/couch/field/t/_revs_diff")).json(&json!({"x": ["1-abc"]})).send().await;
        reply.unwrap().status().as_u16()
    };
    // The held upload takes its room as soon as the server has read its head; a request that came
    // first is served, so ask again until one is turned away (each wait is the server's patience).
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let status = diff().await;
        statuses.push(status);
        if status != 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(statuses.last(), Some(&503), "a couch body waits for room in the budget: {statuses:?}");
    drop(held);
    let mut served = 0;
    for _ in 0..100 {
        if diff().await == 200 {
            served += 1;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(served, 1, "the room comes back when the held upload is gone");
    assert!(healthy(&server));
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_bodies_name_no_files_or_os_texts() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path(), "");
    let http = http();
    assert_eq!(http.put(url(&server, "/dbs/field")).send().await.unwrap().status(), 201);
    // A data directory damaged behind the server's back: a file that is no database, a directory
    // where a database file should be.
    let data = dir.path().join("data");
    std::fs::write(data.join("junk.outpost"), b"not a database at all, just some bytes").unwrap();
    std::fs::create_dir(data.join("hollow.outpost")).unwrap();
    let data_path = data.canonicalize().unwrap().display().to_string();
    for db in ["junk", "hollow"] {
        for (method, path) in
            [("GET", format!("/dbs/{db}")), ("GET", format!("/dbs/{db}/changes")), ("PUT", format!("/dbs/{db}"))]
        {
            let request = http.request(method.parse().unwrap(), url(&server, &path));
            let reply = request.send().await.unwrap();
            let status = reply.status().as_u16();
            let body = reply.text().await.unwrap();
            assert!(status >= 400, "{method} {path}: {status} {body}");
            let error: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{method} {path}: {e}: {body}"));
            assert!(error["error"].is_string() && error["message"].is_string(), "{body}");
            for secret in [data_path.as_str(), "/tmp", ".outpost", "os error", "sqlite"] {
                assert!(!body.contains(secret), "{method} {path} ({status}) shows {secret:?}: {body}");
            }
        }
    }
    // The log has the detail for the operator.
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(log.contains("junk.outpost"), "the log names the damaged file");
    assert!(healthy(&server));
    server.stop();
    db_check(dir.path());
}

/// Open descriptors of process `pid` on files that were deleted.
fn deleted_files_held(pid: u32) -> Vec<String> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return vec![] };
    fds.flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .map(|target| target.display().to_string())
        .filter(|target| target.ends_with("(deleted)"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_database_ends_the_streams_polls_and_jobs_that_hold_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path(), "");
    let http = http();
    field_with_table(&http, &server).await;
    // An event stream, a long-poll waiting for the next write, and a continuous job reading it.
    let mut events = http.get(url(&server, "/dbs/field/changes?feed=sse&since=0")).send().await.unwrap();
    assert_eq!(events.status(), 200);
    let first = events.chunk().await.unwrap().expect("the table's event");
    assert!(String::from_utf8_lossy(&first).contains("event: change"), "{first:?}");
    let poll = tokio::spawn({
        let request = http.get(url(&server, "/dbs/field/changes?feed=longpoll&since=1&timeout=60000"));
        async move { request.send().await.unwrap().status().as_u16() }
    });
    let job: Value = http
        .post(url(&server, "/replicate"))
        .json(&json!({"source": "field", "target": "copy", "continuous": true, "create_target": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job_url = url(&server, &format!("/replicate/jobs/{}", job["id"].as_str().unwrap()));
    // The job has copied what there is (and waits for more).
    let started = Instant::now();
    while http.get(url(&server, "/dbs/copy")).send().await.unwrap().status() != 200
        || http.get(url(&server, "/dbs/copy")).send().await.unwrap().json::<Value>().await.unwrap()["update_seq"] != 1
    {
        assert!(started.elapsed() < PATIENCE, "the job never copied the table");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    assert_eq!(http.delete(url(&server, "/dbs/field")).send().await.unwrap().status(), 200);
    // The long-poll answers that the database is gone, the stream ends with an error event, the job
    // fails; none of them waits for its timeout.
    let status = tokio::time::timeout(PATIENCE, poll).await.expect("the long-poll ends").unwrap();
    assert_eq!(status, 404);
    let mut rest = String::new();
    while let Some(chunk) = tokio::time::timeout(PATIENCE, events.chunk()).await.expect("the stream ends").unwrap() {
        rest.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(rest.contains("event: error") && rest.contains("not_found"), "{rest}");
    let started = Instant::now();
    loop {
        let job: Value = http.get(&job_url).send().await.unwrap().json().await.unwrap();
        if job["state"] != "running" {
            assert_eq!(job["state"], "failed", "{job}");
            assert_eq!(job["error"]["error"], "not_found", "{job}");
            break;
        }
        assert!(started.elapsed() < PATIENCE, "the job still runs: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nobody holds the unlinked file any more, and the name is free for a new database.
    let started = Instant::now();
    while !deleted_files_held(server.pid()).is_empty() {
        assert!(started.elapsed() < PATIENCE, "still open: {:?}", deleted_files_held(server.pid()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(http.put(url(&server, "/dbs/field")).send().await.unwrap().status(), 201);
    let info: Value = http.get(url(&server, "/dbs/field")).send().await.unwrap().json().await.unwrap();
    assert_eq!(info["update_seq"], 0, "a new database: {info}");
    assert!(healthy(&server));
    server.stop();
    db_check(dir.path());
}
