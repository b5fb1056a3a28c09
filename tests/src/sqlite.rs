//! The SQLite factory: each database a new file in a temp dir owned by the factory.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use outpost_api::{Database, Limits};

use crate::Factory;

/// Fresh SQLite databases in a temp dir that lives as long as the factory.
pub struct SqliteFactory {
    dir: tempfile::TempDir,
    made: AtomicUsize,
}

impl SqliteFactory {
    /// A factory with its own temp dir.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temp dir for test databases");
        SqliteFactory { dir, made: AtomicUsize::new(0) }
    }
}

impl Default for SqliteFactory {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Factory for SqliteFactory {
    async fn fresh(&self) -> Arc<dyn Database> {
        let n = self.made.fetch_add(1, Ordering::Relaxed);
        let name = format!("db{n}");
        let path = self.dir.path().join(format!("{name}.outpost"));
        let db = outpost_sqlite::create_file(&path, &name, Limits::default())
            .await
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        Arc::new(db)
    }
}
