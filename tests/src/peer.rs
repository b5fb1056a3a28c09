//! Real servers for end-to-end replication tests: each [`PeerServer`] stands for one site of a
//! topology (us-east, us-west, a store), serves a data directory of its own on a loopback port, and
//! can be stopped mid-test to show that a later replication does not need it. Unlike
//! [`TestServer`](crate::http::TestServer), which lives as long as the test process, a peer server
//! stops when asked or when dropped.

use std::net::SocketAddr;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use outpost_api::{Databases, Limits};
use outpost_client::{ClientConfig, RemoteDatabase};
use outpost_sqlite::{SqliteDatabase, SqliteDatabases};

/// How long a stopping server may take to finish its open requests before it is abandoned.
const GRACE: Duration = Duration::from_secs(5);

/// An `outpost-server` on 127.0.0.1 serving the databases of its own temp directory, on a runtime
/// of its own in a background thread. Stopped by [`PeerServer::stop`] or when dropped.
pub struct PeerServer {
    addr: SocketAddr,
    dbs: Arc<SqliteDatabases>,
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl PeerServer {
    /// Bind 127.0.0.1:0 and serve a fresh, empty data directory. Returns once it accepts connections.
    pub fn start() -> PeerServer {
        let dir = tempfile::Builder::new().prefix("outpost-peer-").tempdir().expect("a temp dir for a peer server");
        let dbs = Arc::new(SqliteDatabases::new(dir.path(), Limits::default()).expect("the data directory"));
        let state = outpost_server::AppState::new(dbs.clone(), Limits::default());
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let (ready, started) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("outpost-peer-server".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("outpost-peer-server")
                    .enable_all()
                    .build()
                    .expect("a runtime for a peer server");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
                    ready.send(listener.local_addr().expect("the server's address")).expect("the starter waits");
                    let mut asked = stopping.clone();
                    let shutdown = async move {
                        let _ = asked.wait_for(|stop| *stop).await;
                    };
                    let mut asked = stopping;
                    let abandon = async move {
                        let _ = asked.wait_for(|stop| *stop).await;
                        tokio::time::sleep(GRACE).await;
                    };
                    tokio::select! {
                        served = outpost_server::serve(listener, state, shutdown) => {
                            if let Err(e) = served {
                                panic!("a peer server failed: {e}");
                            }
                        }
                        () = abandon => eprintln!("a peer server did not stop within {GRACE:?}; abandoned"),
                    }
                });
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .expect("a thread for a peer server");
        let addr = started.recv().expect("the peer server starts");
        PeerServer { addr, dbs, stop, thread: Some(thread), _dir: dir }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The locator of a database on this server, `http://127.0.0.1:PORT/dbs/NAME`.
    pub fn db_url(&self, name: &str) -> String {
        format!("{}/dbs/{name}", self.url())
    }

    /// Create a database on this server; returns the server's own handle to it (shared with the
    /// server: same writer lock, same change notifications), for writing and inspecting directly.
    pub async fn create(&self, name: &str) -> Arc<SqliteDatabase> {
        self.dbs.create(name).await.unwrap_or_else(|e| panic!("creating {name}: {e}"));
        self.local(name).await
    }

    /// The server's own handle to one of its databases (usable after the server is stopped).
    pub async fn local(&self, name: &str) -> Arc<SqliteDatabase> {
        self.dbs.open_sqlite(name).await.unwrap_or_else(|e| panic!("opening {name}: {e}"))
    }

    /// A database of this server through `outpost-client`, with the default client configuration.
    pub fn remote(&self, name: &str) -> RemoteDatabase {
        self.remote_with(name, ClientConfig::default())
    }

    /// A database of this server through `outpost-client`, with `config`.
    pub fn remote_with(&self, name: &str, config: ClientConfig) -> RemoteDatabase {
        outpost_client::connect_with(&self.db_url(name), config).expect("a valid locator")
    }

    /// Stop serving: stop accepting, let open requests finish (within a bound), close the port.
    /// Idempotent.
    pub fn stop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() && !std::thread::panicking() {
                panic!("the peer server thread panicked");
            }
        }
    }
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        self.stop();
    }
}
