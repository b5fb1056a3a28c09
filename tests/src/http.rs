//! The conformance suite over HTTP: a real `outpost-server` on a loopback port (127.0.0.1:0), on
//! its own runtime in a background thread, and a factory whose databases are `outpost-client`
//! `RemoteDatabase`s created through `RemoteDatabases::create`.
//!
//! `#[tokio::test]` gives every test its own runtime, so the server cannot live on one: it runs on
//! a dedicated runtime for the whole test process (start it once, e.g. from a `OnceLock`) and ends
//! with the process. Each factory makes its own client (connection pools are tied to the runtime
//! that opened them) and deletes the databases it made when dropped.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use async_trait::async_trait;
use outpost_api::{Database, Databases, Limits};
use outpost_client::RemoteDatabases;

use crate::Factory;

/// An `outpost-server` serving `dbs` on 127.0.0.1, until the process ends.
pub struct TestServer {
    addr: SocketAddr,
    dbs: Arc<dyn Databases>,
    runtime: tokio::runtime::Handle,
    made: AtomicU64,
}

impl TestServer {
    /// Bind 127.0.0.1:0 and serve `dbs` (with the default limits) on a runtime of its own in a
    /// background thread. Returns once the server accepts connections.
    pub fn start(dbs: Arc<dyn Databases>) -> TestServer {
        Self::start_with(move || async move { dbs })
    }

    /// Like [`TestServer::start`], with the databases made by `make` on the server's runtime (for
    /// backends whose connections belong to the runtime that opened them, such as PostgreSQL's pool).
    pub fn start_with<F, Fut>(make: F) -> TestServer
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Arc<dyn Databases>>,
    {
        let (ready, started) = mpsc::channel();
        std::thread::Builder::new()
            .name("outpost-test-server".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("outpost-test-server")
                    .enable_all()
                    .build()
                    .expect("a runtime for the test server");
                runtime.block_on(async move {
                    let dbs = make().await;
                    let state = outpost_server::AppState::new(dbs.clone(), Limits::default());
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
                    let addr = listener.local_addr().expect("the server's address");
                    ready.send((addr, dbs, tokio::runtime::Handle::current())).expect("the starter waits");
                    // No shutdown signal: the server lives as long as the test process.
                    if let Err(e) = outpost_server::serve(listener, state, std::future::pending()).await {
                        panic!("the test server failed: {e}");
                    }
                });
            })
            .expect("a thread for the test server");
        let (addr, dbs, runtime) = started.recv().expect("the test server starts");
        TestServer { addr, dbs, runtime, made: AtomicU64::new(0) }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A database name not used before, in this process or (on a shared backend such as one
    /// PostgreSQL) in another.
    fn fresh_name(&self) -> String {
        format!("conformance-{}-{}", crate::postgres::run_tag(), self.made.fetch_add(1, Ordering::Relaxed))
    }

    /// Delete databases directly in the served set, waiting until it is done.
    fn delete_all(&self, names: Vec<String>) {
        if names.is_empty() {
            return;
        }
        let (done, finished) = mpsc::channel();
        let dbs = self.dbs.clone();
        self.runtime.spawn(async move {
            for name in names {
                if let Err(e) = dbs.delete(&name).await {
                    eprintln!("cleaning up test database {name}: {e}");
                }
            }
            let _ = done.send(());
        });
        let _ = finished.recv();
    }
}

/// Fresh databases on a [`TestServer`], each created over HTTP and used through the client.
pub struct HttpFactory {
    server: &'static TestServer,
    remote: RemoteDatabases,
    made: Mutex<Vec<String>>,
}

impl HttpFactory {
    /// A factory with its own client of `server`.
    pub fn new(server: &'static TestServer) -> Self {
        let remote = RemoteDatabases::new(&server.url()).expect("the test server's URL is valid");
        HttpFactory { server, remote, made: Mutex::new(Vec::new()) }
    }
}

#[async_trait]
impl Factory for HttpFactory {
    async fn fresh(&self) -> Arc<dyn Database> {
        let name = self.server.fresh_name();
        let db = self.remote.create(&name).await.unwrap_or_else(|e| panic!("creating {name} over HTTP: {e}"));
        self.made.lock().expect("not poisoned").push(name);
        db
    }
}

impl Drop for HttpFactory {
    fn drop(&mut self) {
        let names = std::mem::take(&mut *self.made.lock().unwrap_or_else(|e| e.into_inner()));
        self.server.delete_all(names);
    }
}
