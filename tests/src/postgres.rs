//! The PostgreSQL side of the suite: where the test server is ([`test_url`]), names that no other test
//! or test process uses ([`unique_name`]), and [`PostgresFactory`], fresh databases (schemas) on it.
//!
//! The server comes from `OUTPOST_TEST_POSTGRES` (`cargo xtask ci` starts a throwaway one and sets it;
//! `cargo xtask pg start` starts one for a developer). Unset, PostgreSQL tests say so and pass, except
//! under `CI=true`, where they fail: CI never skips a backend silently.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use outpost_api::{Database, Databases, Limits};
use outpost_postgres::PostgresDatabases;

use crate::Factory;

/// The environment variable naming the PostgreSQL the tests use.
pub const URL_VAR: &str = "OUTPOST_TEST_POSTGRES";

/// The test PostgreSQL's URL; `None` after printing why the test is skipped. Panics under `CI=true`.
pub fn test_url() -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(
                !ci,
                "{URL_VAR} is unset under CI=true: PostgreSQL tests must run (cargo xtask ci starts a server)"
            );
            eprintln!("skipped: {URL_VAR} is unset (cargo xtask pg start; export {URL_VAR}=$(cargo xtask pg url))");
            None
        }
    }
}

/// A tag unique to this test process, so that names never collide on a shared server.
pub fn run_tag() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| outpost_api::Uuid::new_v4().simple().to_string()[..10].to_owned())
}

/// `<prefix>-<run tag>-<n>`: a database name used by no other test, here or in another process.
pub fn unique_name(prefix: &str) -> String {
    static MADE: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}-{}-{}", run_tag(), MADE.fetch_add(1, Ordering::Relaxed))
}

/// Fresh databases on the test PostgreSQL, deleted when the factory is dropped (also when a test fails).
pub struct PostgresFactory {
    url: String,
    dbs: tokio::sync::OnceCell<PostgresDatabases>,
    made: Mutex<Vec<String>>,
}

impl PostgresFactory {
    /// A factory on the test PostgreSQL, or `None` (tests skipped) when there is none.
    pub fn new() -> Option<Self> {
        Some(PostgresFactory { url: test_url()?, dbs: tokio::sync::OnceCell::new(), made: Mutex::new(Vec::new()) })
    }

    /// The databases handle, connected on first use (on the test's runtime, which owns its connections).
    pub async fn databases(&self) -> &PostgresDatabases {
        self.dbs
            .get_or_init(|| async {
                PostgresDatabases::connect_url(&self.url, Limits::default())
                    .await
                    .unwrap_or_else(|e| panic!("connecting to the test PostgreSQL {URL_VAR}: {e}"))
            })
            .await
    }
}

#[async_trait]
impl Factory for PostgresFactory {
    async fn fresh(&self) -> Arc<dyn Database> {
        let name = unique_name("pg");
        let db = self.databases().await.create(&name).await.unwrap_or_else(|e| panic!("creating {name}: {e}"));
        self.made.lock().unwrap_or_else(|e| e.into_inner()).push(name);
        db
    }
}

impl Drop for PostgresFactory {
    fn drop(&mut self) {
        let names = std::mem::take(&mut *self.made.lock().unwrap_or_else(|e| e.into_inner()));
        if names.is_empty() {
            return;
        }
        // The test's runtime is ending: drop the schemas from a runtime of our own, on a thread of its own.
        let url = self.url.clone();
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            runtime.block_on(async move {
                let dbs = match PostgresDatabases::connect_url(&url, Limits::default()).await {
                    Ok(dbs) => dbs,
                    Err(e) => return eprintln!("cleaning up test databases: {e}"),
                };
                for name in names {
                    if let Err(e) = dbs.delete(&name).await {
                        eprintln!("cleaning up test database {name}: {e}");
                    }
                }
            });
        });
        let _ = cleanup.join();
    }
}
