//! A scripted HTTP/1.1 server on 127.0.0.1:0 for the unit tests: it answers each connection with
//! the next scripted reply and records what it was asked. It stops when dropped.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// One scripted answer.
#[derive(Clone, Debug)]
pub(crate) enum Reply {
    /// A status with a body (JSON or not) and extra headers.
    Status { status: u16, body: String, headers: Vec<(String, String)> },
    /// Read the request and never answer (until the server is dropped).
    Hang,
}

impl Reply {
    /// A status with a JSON body.
    pub(crate) fn json(status: u16, body: serde_json::Value) -> Self {
        Reply::Status { status, body: body.to_string(), headers: vec![] }
    }
    /// A status with a body that is not ours.
    pub(crate) fn text(status: u16, body: &str) -> Self {
        Reply::Status { status, body: body.to_owned(), headers: vec![] }
    }
}

/// A request as the server saw it.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    /// `METHOD /request-target`, exactly as sent.
    pub(crate) line: String,
    /// The body.
    pub(crate) body: String,
    /// The request head (request line and headers), lowercased.
    pub(crate) head: String,
}

/// The running fake server.
pub(crate) struct FakeServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl FakeServer {
    /// Serve `script`, one reply per connection in order; past its end, 500s.
    pub(crate) async fn start(script: Vec<Reply>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let addr = listener.local_addr().expect("a local address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(serve(listener, script, seen.clone()));
        FakeServer { addr, seen, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far, in arrival order.
    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("not poisoned").clone()
    }

    /// The request lines so far.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.seen().into_iter().map(|s| s.line).collect()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        // Dropping the accept loop drops the listener and, with its JoinSet, every connection.
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, script: Vec<Reply>, seen: Arc<Mutex<Vec<Seen>>>) {
    let mut connections = JoinSet::new();
    let mut next = 0;
    loop {
        let Ok((stream, _)) = listener.accept().await else { return };
        let reply = script.get(next).cloned().unwrap_or_else(|| Reply::text(500, "script exhausted"));
        next += 1;
        connections.spawn(answer(stream, reply, seen.clone()));
    }
}

async fn answer(mut stream: TcpStream, reply: Reply, seen: Arc<Mutex<Vec<Seen>>>) {
    let Some(request) = read_request(&mut stream).await else { return };
    seen.lock().expect("not poisoned").push(request);
    let (status, body, headers) = match reply {
        Reply::Status { status, body, headers } => (status, body, headers),
        Reply::Hang => return std::future::pending().await,
    };
    let mut head = format!("HTTP/1.1 {status} Scripted\r\ncontent-length: {}\r\nconnection: close\r\n", body.len());
    if body.starts_with(['{', '[']) {
        head.push_str("content-type: application/json\r\n");
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Read one request: head up to the blank line, then `content-length` bytes of body.
async fn read_request(stream: &mut TcpStream) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = head.lines().next()?.rsplit_once(' ')?.0.to_owned();
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
    Some(Seen { line, body, head: head.to_ascii_lowercase() })
}
