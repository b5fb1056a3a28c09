//! A server over SQLite in a temp dir, and a small request builder over `oneshot`.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use outpost_api::{Database, Limits};
use outpost_server::{router, Access, AppState, Jobs, NewToken, Role, JOBS_FILE};
use outpost_sqlite::SqliteDatabases;
use serde_json::{json, Value};
use tower::ServiceExt;

/// A router over a fresh data directory.
pub struct Server {
    pub app: Router,
    pub state: AppState,
    pub dir: tempfile::TempDir,
}

impl Server {
    pub fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    pub fn with_limits(limits: Limits) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let dbs = SqliteDatabases::new(dir.path(), limits).expect("data dir");
        let state = AppState::new(Arc::new(dbs), limits);
        Server { app: router(state.clone()), state, dir }
    }

    /// A router over a fresh data directory that requires tokens: `(name, roles)` each, answered with
    /// their secrets in the same order.
    pub fn with_tokens(tokens: &[(&str, &[(&str, Role)])]) -> (Self, Vec<String>) {
        let made: Vec<NewToken> = tokens
            .iter()
            .map(|(name, roles)| {
                let roles = roles.iter().map(|(db, role)| ((*db).to_owned(), *role)).collect();
                NewToken::generate(name, roles).expect("token")
            })
            .collect();
        let configs: Vec<_> = made.iter().map(|t| t.config.clone()).collect();
        let access = Access::open().with_tokens(&configs).expect("valid tokens");
        (Self::with_access(access), made.into_iter().map(|t| t.secret).collect())
    }

    /// A router over a fresh data directory with `access`.
    pub fn with_access(access: Access) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let limits = Limits::default();
        let dbs = SqliteDatabases::new(dir.path(), limits).expect("data dir");
        let state = AppState::new(Arc::new(dbs), limits).with_access(access);
        Server { app: router(state.clone()), state, dir }
    }

    /// A router over a fresh data directory whose continuous replication jobs are listed in its
    /// jobs file (see [`Server::jobs_file`]).
    pub fn with_jobs_file() -> Self {
        Self::persisted(tempfile::tempdir().expect("temp dir"))
    }

    /// A router over the data directory `dir` (as [`Server::with_jobs_file`]); the jobs its jobs file
    /// lists are not resumed (`serve` does that; `state.jobs.resume` in-process).
    pub fn persisted(dir: tempfile::TempDir) -> Self {
        let limits = Limits::default();
        let dbs = SqliteDatabases::new(dir.path(), limits).expect("data dir");
        let jobs = Jobs::persisted(dir.path().join(JOBS_FILE)).expect("no jobs file yet");
        let state = AppState::new(Arc::new(dbs), limits).with_jobs(jobs);
        Server { app: router(state.clone()), state, dir }
    }

    /// A router over a fresh data directory that serves the quicksync files under `DIR/quicksync`
    /// (see [`Server::publish`]), with database `a`.
    pub async fn with_quicksync() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let limits = Limits::default();
        let dbs = SqliteDatabases::new(dir.path(), limits).expect("data dir");
        let state = AppState::new(Arc::new(dbs), limits).with_quicksync(dir.path().join("quicksync"));
        let server = Server { app: router(state.clone()), state, dir };
        server.call(Method::PUT, "/dbs/a").send().await.expect_status(201);
        server
    }

    /// The quicksync root of [`Server::with_quicksync`].
    pub fn quicksync_root(&self) -> PathBuf {
        self.state.quicksync.clone().expect("a server with_quicksync")
    }

    /// Write `bytes` as the file `relative` under the quicksync root (`db/name` for a published file),
    /// as a publisher would.
    pub fn publish(&self, relative: &str, bytes: &[u8]) {
        let path = self.quicksync_root().join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("directory");
        std::fs::write(path, bytes).expect("write");
    }

    /// The ids of the jobs the jobs file lists (none when there is no file).
    pub fn jobs_file(&self) -> Vec<String> {
        let Ok(text) = std::fs::read_to_string(self.dir.path().join(JOBS_FILE)) else { return Vec::new() };
        let file: Value = serde_json::from_str(&text).expect("the jobs file is JSON");
        assert_eq!(file["version"], 1, "{file}");
        file["jobs"].as_array().expect("jobs").iter().map(|j| j["id"].as_str().expect("id").to_owned()).collect()
    }

    /// A server with database `a` holding table `t`.
    pub async fn with_table() -> Self {
        let server = Self::new();
        server.call(Method::PUT, "/dbs/a").send().await.expect_status(201);
        server.call(Method::PUT, "/dbs/a/tables/t").send().await.expect_status(201);
        server
    }

    /// Another handle on a database: writes through it bypass HTTP.
    pub async fn db(&self, name: &str) -> Arc<dyn Database> {
        self.state.dbs.open(name).await.expect("open")
    }

    pub fn call(&self, method: Method, uri: &str) -> Call {
        Call { app: self.app.clone(), request: Request::builder().method(method).uri(uri), body: Body::empty() }
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.call(Method::GET, uri).send().await
    }

    /// The names of the files in the data directory.
    pub fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path())
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with("-wal") && !n.ends_with("-shm"))
            .collect();
        names.sort();
        names
    }

    pub async fn update_seq(&self, db: &str) -> u64 {
        self.get(&format!("/dbs/{db}")).await.expect_status(200)["update_seq"].as_u64().expect("update_seq")
    }

    /// Write a record with typed attributes `{"n": {"int": n}}`; returns its rev.
    pub async fn put(&self, db: &str, table: &str, id: &str, n: i64) -> String {
        let reply = self
            .call(Method::PUT, &format!("/dbs/{db}/tables/{table}/records/{id}"))
            .json(json!({"attributes": {"n": {"int": n.to_string()}}}))
            .send()
            .await;
        reply.expect_status(200)["rev"].as_str().expect("rev").to_owned()
    }
}

pub struct Call {
    app: Router,
    request: axum::http::request::Builder,
    body: Body,
}

impl Call {
    /// Send `secret` as a Bearer token.
    pub fn token(self, secret: &str) -> Self {
        self.header("authorization", &format!("Bearer {secret}"))
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.request = self.request.header(name, value);
        self
    }

    pub fn json(mut self, json: Value) -> Self {
        self.request = self.request.header("content-type", "application/json");
        self.body = Body::from(serde_json::to_vec(&json).expect("json"));
        self
    }

    /// A body sent as JSON (`Content-Type: application/json`), whatever it holds.
    pub fn body(self, body: impl Into<Bytes>) -> Self {
        self.header("content-type", "application/json").raw_body(body)
    }

    /// A body with no content type (add one with [`Call::header`]).
    pub fn raw_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = Body::from(body.into());
        self
    }

    pub async fn send(self) -> Reply {
        let request = self.request.body(self.body).expect("request");
        let response = self.app.oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
        Reply { status, headers, body }
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// The JSON body, after checking the status.
    #[track_caller]
    pub fn expect_status(&self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", String::from_utf8_lossy(&self.body));
        self.json()
    }

    /// Check an error reply: status, JSON content type, and the body's kind.
    #[track_caller]
    pub fn expect_error(&self, status: u16, kind: &str) -> Value {
        let body = self.expect_status(status);
        assert_eq!(body["error"], kind, "{body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
        let content_type = self.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(content_type.starts_with("application/json"), "{content_type}");
        body
    }
}

/// A changes page without its `last_chain` (checked to be a chain hash), for comparing whole pages.
pub fn unchained(mut page: Value) -> Value {
    let chain = page.as_object_mut().and_then(|o| o.remove("last_chain"));
    let hex = chain.as_ref().and_then(Value::as_str).unwrap_or_default();
    assert!(hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()), "last_chain in a page: {chain:?}");
    page
}
