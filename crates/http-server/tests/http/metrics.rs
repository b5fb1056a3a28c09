//! `GET /metrics` (SPEC §18) over a real socket, with tokens: every family §18 names is there and
//! parses as the OpenMetrics text format, requests are counted under route templates (never raw
//! paths), the open connection and long-poll are seen, a running job's progress and each database's
//! figures match what the API answers, and a token sees the figures of its databases only.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use outpost_server::Role;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::Server;

const BOUND: Duration = Duration::from_secs(60);

async fn bounded<T>(what: &str, test: impl Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, test).await.unwrap_or_else(|_| panic!("{what} did not finish within {BOUND:?}"))
}

/// One request on a connection of its own, read to its end: the status and the body.
async fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    if !body.is_empty() {
        head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    stream.write_all(format!("{head}\r\n{body}").as_bytes()).await.expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status");
    (status, body.to_owned())
}

/// A sample of the text format: its labels and value.
#[derive(Debug)]
struct Sample {
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The OpenMetrics text parsed: each family's declared type, and the samples by metric name. Panics
/// on a line that is not the format (the test's point: a scraper must read it).
fn parse(text: &str) -> (BTreeMap<String, String>, BTreeMap<String, Vec<Sample>>) {
    let (mut types, mut samples) = (BTreeMap::new(), BTreeMap::<String, Vec<Sample>>::new());
    assert!(text.ends_with("# EOF\n"), "the text ends with # EOF: {text}");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name type");
            types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with('#') {
            assert!(line.starts_with("# HELP ") || line.starts_with("# UNIT ") || line == "# EOF", "{line}");
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample: series value");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("a number in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.strip_suffix('}').expect("labels end with }")),
            None => (series, ""),
        };
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "a metric name: {name:?}");
        let mut parsed = BTreeMap::new();
        // Label values here hold no `",` (route templates, names and numbers).
        for pair in labels.split("\",").filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once("=\"").unwrap_or_else(|| panic!("a label in {line:?}"));
            parsed.insert(key.to_owned(), value.trim_end_matches('"').to_owned());
        }
        samples.entry(name.to_owned()).or_default().push(Sample { labels: parsed, value });
    }
    (types, samples)
}

/// The value of `name`'s sample whose labels include `want`.
fn value(samples: &BTreeMap<String, Vec<Sample>>, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    samples
        .get(name)?
        .iter()
        .find(|s| want.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v)))
        .map(|s| s.value)
}

#[tokio::test]
async fn metrics_over_a_socket_hold_every_family_and_only_what_the_token_may_see() {
    bounded("the metrics test", async {
        let (server, secrets) =
            Server::with_tokens(&[("ops", &[("*", Role::Admin)]), ("a-reader", &[("a", Role::Read)])]);
        let (ops, reader) = (secrets[0].as_str(), secrets[1].as_str());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(outpost_server::serve(listener, server.state.clone(), async {
            let _ = stopped.await;
        }));

        for db in ["a", "b"] {
            assert_eq!(request(addr, "PUT", &format!("/dbs/{db}"), Some(ops), None).await.0, 201);
            assert_eq!(request(addr, "PUT", &format!("/dbs/{db}/tables/t"), Some(ops), None).await.0, 201);
        }
        for i in 0..3 {
            let body = json!({"attributes": {"n": {"int": i.to_string()}}});
            let (status, _) =
                request(addr, "PUT", &format!("/dbs/a/tables/t/records/r{i}"), Some(ops), Some(body)).await;
            assert_eq!(status, 200);
        }
        assert_eq!(request(addr, "GET", "/dbs/a", None, None).await.0, 401);
        assert_eq!(request(addr, "GET", "/no/such/route-x1", Some(ops), None).await.0, 404);
        // Scraping needs a token, like every route but the open ones.
        assert_eq!(request(addr, "GET", "/metrics", None, None).await.0, 401);

        // A continuous job a → c, and its first pass written.
        let job = json!({"source": "a", "target": "c", "create_target": true, "continuous": true});
        let (status, body) = request(addr, "POST", "/replicate", Some(ops), Some(job)).await;
        assert_eq!(status, 202, "{body}");
        let id = serde_json::from_str::<Value>(&body).expect("a job")["id"].as_str().expect("id").to_owned();
        loop {
            let (_, body) = request(addr, "GET", &format!("/replicate/jobs/{id}"), Some(ops), None).await;
            let job: Value = serde_json::from_str(&body).expect("a job");
            if job["progress"]["revisions_written"].as_u64() >= Some(4) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A long-poll held open while scraping.
        let token = ops.to_owned();
        let poll = tokio::spawn(async move {
            request(addr, "GET", "/dbs/b/changes?feed=longpoll&since=1&timeout=60000", Some(&token), None).await
        });
        // Scraped until the poll is seen waiting (it is once its request reached the handler).
        let (text, types, samples) = loop {
            let (status, text) = request(addr, "GET", "/metrics", Some(ops), None).await;
            assert_eq!(status, 200, "{text}");
            let (types, samples) = parse(&text);
            if value(&samples, "outpost_feeds_open", &[]) == Some(1.0) {
                break (text, types, samples);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let families = [
            ("outpost_http_requests", "counter"),
            ("outpost_http_request_duration_seconds", "histogram"),
            ("outpost_http_connections_open", "gauge"),
            ("outpost_feeds_open", "gauge"),
            ("outpost_replication_jobs", "gauge"),
            ("outpost_replication_job_revisions_written", "counter"),
            ("outpost_replication_job_source_seq", "gauge"),
            ("outpost_database_update_seq", "gauge"),
            ("outpost_database_records", "gauge"),
            ("outpost_database_size_bytes", "gauge"),
            ("outpost_databases_unreadable", "gauge"),
        ];
        for (family, kind) in families {
            assert_eq!(types.get(family).map(String::as_str), Some(kind), "{family} in {text}");
        }
        let requests = "outpost_http_requests_total";
        let record = [("route", "/dbs/{db}/tables/{table}/records/{id}"), ("method", "PUT"), ("status", "200")];
        assert_eq!(value(&samples, requests, &record), Some(3.0), "{text}");
        let refused = [("route", "/dbs/{db}"), ("method", "GET"), ("status", "401")];
        assert_eq!(value(&samples, requests, &refused), Some(1.0), "{text}");
        assert_eq!(value(&samples, requests, &[("route", "unmatched"), ("status", "404")]), Some(1.0), "{text}");
        assert!(!text.contains("route-x1"), "a raw path is never a label: {text}");
        let latency = [("route", "/dbs/{db}/tables/{table}/records/{id}"), ("method", "PUT")];
        assert_eq!(value(&samples, "outpost_http_request_duration_seconds_count", &latency), Some(3.0));
        assert!(value(&samples, "outpost_http_connections_open", &[]) >= Some(2.0), "the scrape and the poll");
        assert_eq!(value(&samples, "outpost_databases_unreadable", &[]), Some(0.0));
        assert_eq!(value(&samples, "outpost_replication_jobs", &[("state", "running")]), Some(1.0));
        let forward = [("job", id.as_str()), ("direction", "forward")];
        assert_eq!(value(&samples, "outpost_replication_job_revisions_written_total", &forward), Some(4.0), "{text}");
        for db in ["a", "b", "c"] {
            let info = server.db(db).await.info().await.expect("info");
            let at = [("db", db)];
            assert_eq!(value(&samples, "outpost_database_update_seq", &at), Some(info.update_seq as f64), "{db}");
            assert_eq!(value(&samples, "outpost_database_records", &at), Some(info.record_count as f64), "{db}");
            assert!(value(&samples, "outpost_database_size_bytes", &at) > Some(0.0), "{db}: {text}");
        }

        // A token for database a sees a's figures only, and not the job (whose ends it does not hold).
        let (status, text) = request(addr, "GET", "/metrics", Some(reader), None).await;
        assert_eq!(status, 200, "{text}");
        let (_, samples) = parse(&text);
        let dbs: Vec<&str> = samples["outpost_database_update_seq"].iter().map(|s| s.labels["db"].as_str()).collect();
        assert_eq!(dbs, ["a"], "{text}");
        assert_eq!(value(&samples, "outpost_replication_jobs", &[("state", "running")]), Some(0.0), "{text}");
        assert!(!text.contains(&id), "{text}");

        let (status, _) = request(addr, "DELETE", &format!("/replicate/jobs/{id}"), Some(ops), None).await;
        assert_eq!(status, 200);
        let body = json!({"attributes": {"n": {"int": "1"}}});
        assert_eq!(request(addr, "PUT", "/dbs/b/tables/t/records/x", Some(ops), Some(body)).await.0, 200);
        assert_eq!(poll.await.expect("the long-poll").0, 200);
        let _ = stop.send(());
        serving.await.expect("the server task").expect("served");
    })
    .await;
}
