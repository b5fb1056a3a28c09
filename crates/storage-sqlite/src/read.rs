//! Read connections: reads that never wait for the writer. In WAL mode a reader sees the database as
//! of the last commit before its transaction began, while one writer goes on; so a replication pass
//! can ask the target what it lacks (`revs_diff`) and read the source's changes and bodies while the
//! target commits the page before, instead of queueing behind the writer's connection.
//!
//! Each read runs in one read transaction (one snapshot, however many statements it takes: a changes
//! page and its pending count agree), on its own connection from a few slots, opened when first needed
//! and kept while the database is open. A read that begins after a commit returned sees that commit,
//! as on the writer's connection. The connections are `query_only`: nothing can write through them.
//!
//! A bootstrap's staging file has no WAL (`config::Durability::Staging`: its journal is in memory):
//! there a read waits while a write commits. A bootstrap reads only between its writes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use outpost_api::{Error, Result};
use outpost_engine::storage::blocking;
use rusqlite::Connection;
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::config::{open_connection_with, Durability};
use crate::error::SqlResultExt;

/// Read connections per database: enough for a pass's reads to overlap each other and a server's
/// readers to not queue behind one slow read; each is a file descriptor set and a page cache.
pub const READERS: usize = 2;

/// One read connection's place.
enum Slot {
    /// Not opened yet (or not needed so far).
    Unopened,
    Open(Connection),
    /// The database was closed for deletion: every later read fails.
    Closed,
}

/// The read connections of one database file.
pub(crate) struct Readers {
    path: PathBuf,
    durability: Durability,
    slots: Vec<Arc<Mutex<Slot>>>,
    /// Where the next read that finds every slot busy waits (turn by turn, so waits spread).
    next: AtomicUsize,
}

impl Readers {
    pub(crate) fn new(path: &Path, durability: Durability) -> Readers {
        let slots = (0..READERS).map(|_| Arc::new(Mutex::new(Slot::Unopened))).collect();
        Readers { path: path.to_owned(), durability, slots, next: AtomicUsize::new(0) }
    }

    /// A free slot, or the next one's turn once it is free.
    async fn slot(&self) -> OwnedMutexGuard<Slot> {
        for slot in &self.slots {
            if let Ok(guard) = slot.clone().try_lock_owned() {
                return guard;
            }
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        self.slots[i].clone().lock_owned().await
    }

    /// Run `f` in a read transaction on a read connection, on the blocking pool.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let mut slot = self.slot().await;
        let (path, durability) = (self.path.clone(), self.durability);
        blocking(move || {
            if matches!(*slot, Slot::Unopened) {
                *slot = Slot::Open(open_reader(&path, durability)?);
            }
            let conn = match &*slot {
                Slot::Open(conn) => conn,
                _ => return Err(Error::not_found("the database was deleted")),
            };
            let txn = conn.unchecked_transaction().sql()?;
            let out = f(&txn)?;
            txn.commit().sql()?;
            Ok(out)
        })
        .await?
    }

    /// Whether a read runs now (perhaps on the blocking pool after its request was cancelled).
    pub(crate) fn busy(&self) -> bool {
        self.slots.iter().any(|slot| Arc::strong_count(slot) > 1 || slot.try_lock().is_err())
    }

    /// Close every read connection once its read in progress ends; later reads fail. The writer's
    /// connection is closed after these, so that it is the last and removes the WAL.
    pub(crate) async fn close(&self) {
        for slot in &self.slots {
            let mut guard = slot.lock().await;
            if let Slot::Open(conn) = std::mem::replace(&mut *guard, Slot::Closed) {
                let closed = blocking(move || conn.close().map_err(|(_, e)| crate::error::map(e))).await;
                if let Err(e) | Ok(Err(e)) = closed {
                    tracing::warn!(file = %self.path.display(), error = %e, "closing a read connection");
                }
            }
        }
    }
}

/// A connection of the file at `path` that can only read.
fn open_reader(path: &Path, durability: Durability) -> Result<Connection> {
    let conn = open_connection_with(path, false, durability)?;
    conn.pragma_update(None, "query_only", true).sql()?;
    Ok(conn)
}
