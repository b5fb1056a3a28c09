//! Server-run replication jobs end to end (`POST /replicate`, SPEC §11): real `outpost-server`s on
//! loopback ports over SQLite data directories, talked to over HTTP. A job pulls from and pushes to
//! another server's URL; a job whose peer is away keeps retrying until cancelled; a continuous job
//! survives a restart of its server on the same data directory and goes on following writes.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use outpost_api::Limits;
use outpost_server::{AppState, Jobs, PeerConfig, Peers, JOBS_FILE};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// An `outpost-server` on 127.0.0.1 (a free port) over the SQLite databases and jobs file of a
/// directory, until [`Running::stop`].
struct Running {
    base: String,
    stop: oneshot::Sender<()>,
    serving: JoinHandle<std::io::Result<()>>,
    http: reqwest::Client,
}

impl Running {
    /// A server whose jobs may reach itself by URL, and no other server.
    async fn start(dir: &Path) -> Running {
        Self::start_with_peers(dir, &[]).await
    }

    /// A server whose jobs may reach itself and the servers at `peers` (base URLs), by URL (SPEC §14:
    /// a job reaches only configured peers).
    async fn start_with_peers(dir: &Path, peers: &[&str]) -> Running {
        let limits = Limits::default();
        let dbs = outpost_sqlite::SqliteDatabases::new(dir, limits).expect("the data directory");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("the server's address");
        let own = format!("http://{addr}");
        let peers: Vec<PeerConfig> = std::iter::once(own.as_str())
            .chain(peers.iter().copied())
            .map(|url| PeerConfig { url: url.to_owned(), token_file: None, ca_file: None })
            .collect();
        let peers = Peers::new(&peers).expect("peer URLs");
        let jobs = Jobs::persisted(dir.join(JOBS_FILE)).expect("the jobs file").with_peers(peers);
        let state = AppState::new(Arc::new(dbs), limits).with_jobs(jobs);
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = tokio::spawn(outpost_server::serve(listener, state, async {
            let _ = stopped.await;
        }));
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("an HTTP client");
        Running { base: format!("http://{addr}"), stop, serving, http }
    }

    /// Shut down gracefully and wait until the server has stopped (its jobs too).
    async fn stop(self) {
        let _ = self.stop.send(());
        let stopped = tokio::time::timeout(Duration::from_secs(60), self.serving).await;
        stopped.expect("the server stops").expect("the server task").expect("the server ran");
    }

    /// `http://127.0.0.1:PORT/dbs/NAME`.
    fn db_url(&self, name: &str) -> String {
        format!("{}/dbs/{name}", self.base)
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let json = response.json().await.unwrap_or_else(|e| panic!("{method} {path}: not JSON: {e}"));
        (status, json)
    }

    /// The JSON answer, after checking the status.
    async fn expect(&self, method: Method, path: &str, body: Option<Value>, status: u16) -> Value {
        let (got, json) = self.call(method.clone(), path, body).await;
        assert_eq!(got, status, "{method} {path}: {json}");
        json
    }

    async fn replicate(&self, body: Value, status: u16) -> Value {
        self.expect(Method::POST, "/replicate", Some(body), status).await
    }

    /// Database `db` with table `t`.
    async fn create(&self, db: &str) {
        self.expect(Method::PUT, &format!("/dbs/{db}"), None, 201).await;
        self.expect(Method::PUT, &format!("/dbs/{db}/tables/t"), None, 201).await;
    }

    async fn put(&self, db: &str, id: &str, n: i64) {
        let body = json!({"attributes": {"n": {"int": n.to_string()}}});
        self.expect(Method::PUT, &format!("/dbs/{db}/tables/t/records/{id}"), Some(body), 200).await;
    }

    /// Poll until record `id` is in `db` (a bounded number of times; nothing asserts timing).
    async fn eventually_has(&self, db: &str, id: &str) {
        let path = format!("/dbs/{db}/tables/t/records/{id}");
        for _ in 0..400 {
            if self.call(Method::GET, &path, None).await.0 == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{id} never reached {db} on {}", self.base);
    }

    async fn record_count(&self, db: &str) -> u64 {
        self.expect(Method::GET, &format!("/dbs/{db}"), None, 200).await["record_count"].as_u64().expect("count")
    }
}

/// The ids of the jobs listed in the jobs file of `dir`.
fn jobs_file(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join(JOBS_FILE)).expect("the jobs file exists");
    let file: Value = serde_json::from_str(&text).expect("the jobs file is JSON");
    file["jobs"].as_array().expect("jobs").iter().map(|j| j["id"].as_str().expect("id").to_owned()).collect()
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("replicate-jobs-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a temp dir")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_pulls_from_and_pushes_to_another_server() {
    let (east_dir, west_dir) = (temp_dir(), temp_dir());
    let east = Running::start(east_dir.path()).await;
    let west = Running::start_with_peers(west_dir.path(), &[&east.base]).await;
    east.create("src").await;
    for i in 0..20 {
        east.put("src", &format!("r{i}"), i).await;
    }

    let body = json!({"source": east.db_url("src"), "target": "copy", "create_target": true, "wait": true});
    let pulled = west.replicate(body, 200).await;
    assert_eq!(pulled["state"], "completed", "{pulled}");
    assert_eq!(pulled["report"]["revisions_written"], 21, "the table and 20 records: {pulled}");
    assert_eq!(pulled["report"]["drained"], true);
    assert_eq!(west.record_count("copy").await, 20);

    let body = json!({"source": "copy", "target": east.db_url("pushed"), "create_target": true, "wait": true});
    let pushed = west.replicate(body, 200).await;
    assert_eq!(pushed["state"], "completed", "{pushed}");
    assert_eq!(pushed["report"]["revisions_written"], 21, "{pushed}");
    assert_eq!(east.record_count("pushed").await, 20);
    east.eventually_has("pushed", "r19").await;

    // Both ends URLs, the job run by a third party (west), in both directions.
    east.put("src", "late", 99).await;
    west.put("copy", "west-only", 7).await;
    let body =
        json!({"source": east.db_url("src"), "target": west.db_url("copy"), "bidirectional": true, "wait": true});
    let both = west.replicate(body, 200).await;
    assert_eq!(both["state"], "completed", "{both}");
    assert_eq!(both["reports"][0]["revisions_written"], 1, "{both}");
    assert_eq!(both["reports"][1]["revisions_written"], 1, "{both}");
    east.eventually_has("src", "west-only").await;
    west.eventually_has("copy", "late").await;

    west.stop().await;
    east.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_peer_is_away_keeps_retrying_until_cancelled() {
    let dir = temp_dir();
    // A port nothing listens on: bind one, then let it go.
    let away = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let server = Running::start_with_peers(dir.path(), &[&format!("http://{away}")]).await;
    let body =
        json!({"source": format!("http://{away}/dbs/gone"), "target": "b", "create_target": true, "continuous": true});
    let job = server.replicate(body, 202).await;
    let path = format!("/replicate/jobs/{}", job["id"].as_str().unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.expect(Method::GET, &path, None, 200).await["state"], "running");
    let cancelled = server.expect(Method::DELETE, &path, None, 200).await;
    assert_eq!(cancelled["state"], "cancelled", "{cancelled}");
    assert_eq!(jobs_file(dir.path()), Vec::<String>::new());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_reaches_only_configured_peers() {
    let dir = temp_dir();
    let server = Running::start(dir.path()).await;
    server.create("a").await;
    // Something listening that is not a peer: the job must not connect to it.
    let bait = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let bait_addr = bait.local_addr().expect("addr");
    for (source, target) in [
        (format!("http://{bait_addr}/dbs/x"), "a".to_owned()),
        ("a".to_owned(), format!("http://{bait_addr}/dbs/x")),
        ("a".to_owned(), format!("http://user:pw@{}/dbs/b", &server.base["http://".len()..])),
    ] {
        let body = json!({"source": source, "target": target, "create_target": true, "wait": true});
        let (status, answer) = server.call(Method::POST, "/replicate", Some(body)).await;
        assert!(status == 403 || status == 400, "{source} → {target}: {status} {answer}");
    }
    let connected = tokio::time::timeout(Duration::from_millis(200), bait.accept()).await;
    assert!(connected.is_err(), "no connection was made to a URL that is not a peer");
    assert_eq!(server.expect(Method::GET, "/replicate/jobs", None, 200).await, json!([]));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuous_job_survives_a_restart_of_its_server() {
    let dir = temp_dir();
    let server = Running::start(dir.path()).await;
    server.create("a").await;
    server.expect(Method::PUT, "/dbs/b", None, 201).await;
    let job = server.replicate(json!({"source": "a", "target": "b", "continuous": true}), 202).await;
    let id = job["id"].as_str().expect("id").to_owned();
    server.put("a", "before", 1).await;
    server.eventually_has("b", "before").await;
    server.stop().await;
    assert_eq!(jobs_file(dir.path()), [id.as_str()], "the stopped job stays listed");

    // Started again on the same data directory (another port): the job runs again, under its id.
    let server = Running::start(dir.path()).await;
    let jobs = server.expect(Method::GET, "/replicate/jobs", None, 200).await;
    assert_eq!(jobs.as_array().map(Vec::len), Some(1), "{jobs}");
    assert_eq!((jobs[0]["id"].as_str(), &jobs[0]["state"]), (Some(id.as_str()), &json!("running")), "{jobs}");
    assert_eq!(
        (&jobs[0]["source"], &jobs[0]["target"], &jobs[0]["continuous"]),
        (&json!("a"), &json!("b"), &json!(true))
    );
    server.put("a", "after", 2).await;
    server.eventually_has("b", "after").await;
    let path = format!("/replicate/jobs/{id}");
    let progress = server.expect(Method::GET, &path, None, 200).await["progress"].clone();
    assert!(progress["revisions_written"].as_u64().unwrap() >= 1, "{progress}");

    let cancelled = server.expect(Method::DELETE, &path, None, 200).await;
    assert_eq!(cancelled["state"], "cancelled", "{cancelled}");
    assert_eq!(jobs_file(dir.path()), Vec::<String>::new(), "a cancelled job leaves the file");
    server.stop().await;

    // Nothing to resume any more.
    let server = Running::start(dir.path()).await;
    assert_eq!(server.expect(Method::GET, "/replicate/jobs", None, 200).await, json!([]));
    server.stop().await;
}
