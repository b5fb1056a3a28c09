//! The memory factory: each database a fresh in-memory engine (the reference backend of
//! `outpost_engine::memory`), so the suite checks the engine's rules with no SQL underneath.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use outpost_api::{Database, Databases, Limits};
use outpost_engine::memory::MemoryDatabases;

use crate::Factory;

/// Fresh in-memory databases.
pub struct MemoryFactory {
    dbs: MemoryDatabases,
    made: AtomicUsize,
}

impl MemoryFactory {
    /// A factory of its own.
    pub fn new() -> Self {
        MemoryFactory { dbs: MemoryDatabases::new(Limits::default()), made: AtomicUsize::new(0) }
    }
}

impl Default for MemoryFactory {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Factory for MemoryFactory {
    async fn fresh(&self) -> Arc<dyn Database> {
        let name = format!("db{}", self.made.fetch_add(1, Ordering::Relaxed));
        self.dbs.create(&name).await.unwrap_or_else(|e| panic!("creating {name}: {e}"))
    }
}
