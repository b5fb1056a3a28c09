//! WAL checkpoints off the commit path. SQLite's automatic checkpoint runs inside the commit that
//! crosses its threshold, so every few batches one writer also copies the WAL into the database file
//! and syncs it before its commit returns. Here the writer's connection checkpoints only as a
//! backstop (at [`BACKSTOP_PAGES`], should the background fall far behind), and a connection of the
//! database's own runs a `PASSIVE` checkpoint on the blocking pool once about [`EVERY_BYTES`] were
//! committed since the last one (SQLite's own default is 1000 pages, 4 MiB): it never blocks
//! the writer or readers, and a commit is as durable as before (`synchronous = FULL`: the commit
//! syncs the WAL; the checkpoint only moves synced frames into the database file).
//!
//! Commits that arrive while a checkpoint runs are coalesced into one more run after it. The
//! checkpoint connection is opened for a run and closed after it, so an idle database holds no more
//! files open than before.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use outpost_api::Result;
use rusqlite::Connection;
use tokio::sync::watch;

use crate::config::{open_connection_with, Durability};
use crate::error::SqlResultExt;

/// The writer's own automatic checkpoint, kept only as a backstop: in pages of the WAL (4 KiB each).
pub const BACKSTOP_PAGES: u32 = 16_384;

/// About how many bytes of commits (bodies, states and keys) start a background checkpoint.
pub const EVERY_BYTES: u64 = 4 << 20;

/// What the checkpointer is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Idle,
    Running,
    /// Running, and commits arrived since it began: run again when done.
    Again,
}

/// The background checkpoints of one database file.
pub(crate) struct Checkpointer {
    path: PathBuf,
    durability: Durability,
    /// Held by a checkpoint while it runs; `true` once the database is closed (none runs again).
    closed: Mutex<bool>,
    state: watch::Sender<State>,
    /// Bytes committed since the last checkpoint began.
    pending: std::sync::atomic::AtomicU64,
    /// Background checkpoints run so far.
    runs: std::sync::atomic::AtomicU64,
}

impl Checkpointer {
    pub(crate) fn new(path: &Path, durability: Durability) -> Arc<Self> {
        Arc::new(Checkpointer {
            path: path.to_owned(),
            durability,
            closed: Mutex::new(false),
            state: watch::channel(State::Idle).0,
            pending: std::sync::atomic::AtomicU64::new(0),
            runs: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// A commit of about `bytes` happened: checkpoint once enough has been committed since the last
    /// checkpoint.
    pub(crate) fn committed(self: &Arc<Self>, bytes: u64) {
        use std::sync::atomic::Ordering;
        // A staging file has no WAL (its journal is in memory, `config.rs`): nothing to move.
        if self.durability == Durability::Staging {
            return;
        }
        let pending = self.pending.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if pending >= EVERY_BYTES {
            self.pending.store(0, Ordering::Relaxed);
            self.kick();
        }
    }

    /// Checkpoint soon, on the blocking pool, unless one is running (then once more after it).
    fn kick(self: &Arc<Self>) {
        let mut start = false;
        self.state.send_if_modified(|state| {
            start = *state == State::Idle;
            *state = if start { State::Running } else { State::Again };
            start
        });
        if start {
            let me = self.clone();
            tokio::task::spawn_blocking(move || me.run());
        }
    }

    /// Checkpoint until no commit arrived during the last run.
    fn run(&self) {
        loop {
            self.runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Err(e) = self.checkpoint() {
                tracing::warn!(file = %self.path.display(), error = %e, "a background WAL checkpoint failed");
            }
            let mut done = false;
            self.state.send_modify(|state| {
                done = *state != State::Again;
                *state = if done { State::Idle } else { State::Running };
            });
            if done {
                return;
            }
        }
    }

    /// One `PASSIVE` checkpoint: the WAL frames and how many of them are in the database file now.
    fn checkpoint(&self) -> Result<(i64, i64)> {
        let closed = self.closed.lock().expect("the closed flag");
        if *closed {
            return Ok((0, 0));
        }
        let conn: Connection = open_connection_with(&self.path, false, self.durability)?;
        let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get(1)?, r.get(2)?))).sql();
        drop(conn);
        drop(closed);
        done
    }

    /// Wait until no checkpoint runs or is due, then checkpoint once more here: the WAL frames and how
    /// many are in the database file (equal when the checkpoints keep up and no reader holds an old
    /// snapshot). For tests and tools.
    pub(crate) async fn settled(self: &Arc<Self>) -> Result<(i64, i64)> {
        let mut state = self.state.subscribe();
        let _ = state.wait_for(|s| *s == State::Idle).await;
        let me = self.clone();
        outpost_engine::storage::blocking(move || me.checkpoint()).await?
    }

    /// How many background checkpoints ran.
    pub(crate) fn runs(&self) -> u64 {
        self.runs.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether a checkpoint runs now.
    pub(crate) fn busy(&self) -> bool {
        *self.state.borrow() != State::Idle
    }

    /// The database is being closed (deleted, or its file moved): wait for the checkpoint in
    /// progress, and run none again. Blocks: call it on the blocking pool.
    pub(crate) fn close(&self) {
        *self.closed.lock().expect("the closed flag") = true;
    }
}
