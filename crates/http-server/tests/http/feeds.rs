//! Long-poll, wait and server-sent events: answered by writes (content asserted, never time), the
//! event stream read over a real socket with a raw HTTP/1.1 client, and graceful shutdown ending
//! open feeds. Every test is bounded by a timeout so that none can hang.

use std::future::Future;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request};
use futures_util::StreamExt;
use outpost_api::{Attributes, PutRecord, Value as V};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

use crate::support::{unchained, Server};

const BOUND: Duration = Duration::from_secs(20);

async fn bounded<T>(what: &str, test: impl Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, test).await.unwrap_or_else(|_| panic!("{what} did not finish within {BOUND:?}"))
}

/// Lets a spawned request reach its wait before the test writes (ordering only; nothing asserts time).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(200)).await;
}

fn put(id: &str, n: i64) -> PutRecord {
    PutRecord { id: Some(id.into()), attributes: Attributes::new().with("n", V::Int(n)), ..Default::default() }
}

#[tokio::test]
async fn a_long_poll_is_answered_by_the_next_write() {
    bounded("the long-poll", async {
        let server = Server::with_table().await;
        let since = server.update_seq("a").await;
        let poll = server.call(Method::GET, &format!("/dbs/a/changes?feed=longpoll&since={since}&timeout=10000"));
        let poll = tokio::spawn(poll.send());
        settle().await;
        server.db("a").await.put_record("t", put("r", 1)).await.expect("write through another handle");
        let page = poll.await.expect("poll task").expect_status(200);
        assert_eq!(page["changes"].as_array().unwrap().len(), 1, "{page}");
        assert_eq!(page["changes"][0]["id"], "r");
        assert_eq!(page["changes"][0]["seq"], since + 1);
        assert_eq!(page["last_seq"], since + 1);
    })
    .await;
}

#[tokio::test]
async fn a_filtered_long_poll_waits_for_a_matching_write() {
    bounded("the filtered long-poll", async {
        let server = Server::with_table().await;
        server.call(Method::PUT, "/dbs/a/tables/u").send().await.expect_status(201);
        let since = server.update_seq("a").await;
        let uri = format!("/dbs/a/changes?feed=longpoll&since={since}&tables=u&timeout=10000");
        let poll = tokio::spawn(server.call(Method::GET, &uri).send());
        settle().await;
        let db = server.db("a").await;
        db.put_record("t", put("other", 1)).await.expect("write to t");
        settle().await;
        db.put_record("u", put("wanted", 2)).await.expect("write to u");
        let page = poll.await.expect("poll task").expect_status(200);
        let ids: Vec<&str> = page["changes"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["wanted"], "{page}");
    })
    .await;
}

#[tokio::test]
async fn a_long_poll_without_writes_answers_an_empty_page() {
    bounded("the idle long-poll", async {
        let server = Server::with_table().await;
        let page = server.get("/dbs/a/changes?feed=longpoll&since=1&timeout=1").await.expect_status(200);
        assert_eq!(unchained(page), json!({"changes": [], "last_seq": 1, "pending": 0}));
        // With changes there already, it answers at once.
        let page = server.get("/dbs/a/changes?feed=longpoll&since=0&timeout=10000").await.expect_status(200);
        assert_eq!(page["changes"][0]["id"], "t");
    })
    .await;
}

#[tokio::test]
async fn wait_is_answered_by_the_next_write() {
    bounded("the wait", async {
        let server = Server::with_table().await;
        let wait = tokio::spawn(server.call(Method::GET, "/dbs/a/wait?since=1&timeout=10000").send());
        settle().await;
        server.db("a").await.put_record("t", put("r", 1)).await.expect("write");
        assert_eq!(wait.await.expect("wait task").expect_status(200), json!({"update_seq": 2}));
    })
    .await;
}

/// One server-sent event.
#[derive(Debug)]
struct Event {
    id: u64,
    event: String,
    data: Value,
}

/// Take the complete events out of `text`, skipping comment-only blocks (heartbeats).
fn take_events(text: &mut String) -> Vec<Event> {
    let mut events = Vec::new();
    while let Some(end) = text.find("\n\n") {
        let block: String = text.drain(..end + 2).collect();
        let (mut id, mut event, mut data) = (None, String::new(), String::new());
        for line in block.lines() {
            match line.split_once(':') {
                Some(("id", v)) => id = Some(v.trim().parse().expect("numeric id")),
                Some(("event", v)) => event = v.trim().to_owned(),
                Some(("data", v)) => data.push_str(v.trim()),
                _ => {}
            }
        }
        if let Some(id) = id {
            events.push(Event { id, event, data: serde_json::from_str(&data).expect("JSON data") });
        }
    }
    events
}

/// A raw HTTP/1.1 client for one chunked response.
struct RawResponse {
    reader: BufReader<TcpStream>,
    text: String,
}

impl RawResponse {
    async fn get(addr: std::net::SocketAddr, target: &str) -> (Self, String) {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).await.expect("head");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push_str(&line);
        }
        (RawResponse { reader, text: String::new() }, head.to_ascii_lowercase())
    }

    async fn chunk(&mut self) -> Option<String> {
        let mut size = String::new();
        self.reader.read_line(&mut size).await.expect("chunk size");
        let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
        if size == 0 {
            return None;
        }
        let mut chunk = vec![0; size + 2];
        self.reader.read_exact(&mut chunk).await.expect("chunk");
        Some(String::from_utf8(chunk[..size].to_vec()).expect("UTF-8"))
    }

    async fn events(&mut self, count: usize) -> Vec<Event> {
        let mut events = Vec::new();
        while events.len() < count {
            let chunk = self.chunk().await.expect("the stream goes on");
            self.text.push_str(&chunk);
            events.extend(take_events(&mut self.text));
        }
        events
    }

    /// Read to the end of the chunked body (the server ended the stream).
    async fn finish(&mut self) {
        while self.chunk().await.is_some() {}
    }
}

#[tokio::test]
async fn an_event_stream_follows_writes_in_seq_order() {
    bounded("the event stream", async {
        let server = Server::with_table().await;
        for i in 0..3 {
            server.put("a", "t", &format!("r{i}"), i).await;
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(outpost_server::serve(listener, server.state.clone(), async {
            let _ = stopped.await;
        }));

        let (mut response, head) = RawResponse::get(addr, "/dbs/a/changes?feed=sse&since=1").await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(head.contains("content-type: text/event-stream"), "{head}");
        assert!(head.contains("transfer-encoding: chunked"), "{head}");
        let db = server.db("a").await;
        let writer = tokio::spawn(async move {
            for i in 3..8 {
                db.put_record("t", put(&format!("r{i}"), i)).await.expect("write");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let events = response.events(8).await;
        writer.await.expect("writer");
        let seqs: Vec<u64> = events.iter().map(|e| e.id).collect();
        assert_eq!(seqs, (2..=9).collect::<Vec<u64>>(), "in seq order, no gap");
        for e in &events {
            assert_eq!(e.event, "change");
            assert_eq!(e.data["seq"], e.id);
            assert_eq!(e.data["id"], format!("r{}", e.id - 2));
            assert_eq!(e.data["table"], "t");
        }

        // Shutdown ends the open stream, and serve returns.
        stop.send(()).expect("server running");
        response.finish().await;
        serving.await.expect("serve task").expect("serve");
    })
    .await;
}

#[tokio::test]
async fn an_event_stream_resumes_after_last_event_id() {
    bounded("the resumed event stream", async {
        let server = Server::with_table().await;
        for i in 0..4 {
            server.put("a", "t", &format!("r{i}"), i).await;
        }
        let request = Request::get("/dbs/a/changes?feed=sse&since=0&limit=1")
            .header("last-event-id", "3")
            .body(Body::empty())
            .expect("request");
        let response = server.app.clone().oneshot(request).await.expect("infallible");
        assert_eq!(response.status(), 200);
        let mut body = response.into_body().into_data_stream();
        let (mut text, mut events) = (String::new(), Vec::new());
        while events.len() < 2 {
            let chunk = body.next().await.expect("the stream goes on").expect("chunk");
            text.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
            events.extend(take_events(&mut text));
        }
        assert_eq!(events.iter().map(|e| e.id).collect::<Vec<_>>(), [4, 5]);
        assert_eq!(events[0].data["id"], "r2");
    })
    .await;
}

/// Serve `server` on a real socket, send `GET path` (a feed that waits), begin a graceful shutdown
/// once the request is waiting, and return the JSON body it is answered with (200), after the server
/// has stopped.
async fn answer_at_shutdown(server: &Server, path: &str) -> Value {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(outpost_server::serve(listener, server.state.clone(), async {
        let _ = stopped.await;
    }));
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    settle().await;
    stop.send(()).expect("server running");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.expect("reply");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let body = serde_json::from_str(reply.split("\r\n\r\n").nth(1).expect("body")).expect("JSON");
    serving.await.expect("serve task").expect("serve");
    body
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_long_poll_finish() {
    bounded("the shutdown", async {
        let server = Server::with_table().await;
        let body = answer_at_shutdown(&server, "/dbs/a/changes?feed=longpoll&since=1&timeout=300000").await;
        assert_eq!(unchained(body), json!({"changes": [], "last_seq": 1, "pending": 0}));
    })
    .await;
}

/// A CouchDB client's long-poll (`/couch/{db}/{table}/_changes?feed=longpoll`, which may wait a
/// minute) is answered when the server begins to shut down, as the native feeds are.
#[tokio::test]
async fn shutdown_answers_a_waiting_couch_long_poll() {
    bounded("the shutdown", async {
        let server = Server::with_table().await;
        let new = outpost_api::NewTable { name: "c".into(), couch: true, ..Default::default() };
        server.db("a").await.create_table(new).await.expect("a table open to CouchDB clients");
        let body = answer_at_shutdown(&server, "/couch/a/c/_changes?feed=longpoll&since=now&timeout=60000").await;
        assert_eq!(body["results"], json!([]), "{body}");
    })
    .await;
}

// Paused time: the runtime jumps to the next timer when idle, so the 15 s heartbeat comes at once.
#[tokio::test(start_paused = true)]
async fn an_idle_event_stream_sends_heartbeats() {
    bounded("the heartbeat", async {
        let server = Server::with_table().await;
        let request = Request::get("/dbs/a/changes?feed=sse&since=1").body(Body::empty()).expect("request");
        let response = server.app.clone().oneshot(request).await.expect("infallible");
        let mut body = response.into_body().into_data_stream();
        let chunk = body.next().await.expect("a heartbeat").expect("chunk");
        assert_eq!(std::str::from_utf8(&chunk).expect("UTF-8"), ": heartbeat\n\n");
        // A write after the heartbeat still arrives as the next event.
        server.db("a").await.put_record("t", put("r", 1)).await.expect("write");
        let mut text = String::new();
        let events = loop {
            text.push_str(std::str::from_utf8(&body.next().await.expect("event").expect("chunk")).expect("UTF-8"));
            let events = take_events(&mut text);
            if !events.is_empty() {
                break events;
            }
        };
        assert_eq!((events[0].id, &events[0].data["id"]), (2, &json!("r")));
    })
    .await;
}
