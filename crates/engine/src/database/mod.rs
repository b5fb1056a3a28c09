//! [`Engine`]: the `Database` implementation, generic over a [`Storage`]. Every api call is decided
//! in the engine (validation, the write rules, winners, seqs and chain hashes, knowledge rules) and
//! stored through the storage trait. This module holds the engine itself (construction, closing, the
//! commit of a write set); each role has a file of its own:
//!
//! - `local.rs`: local writes (records, batches, table definitions);
//! - `read.rs`: reads (records, tables, the changes feed and its waits, info);
//! - `replica.rs`: the replica source and target (replicated revisions, knowledge, fork detection);
//! - `check.rs`: the integrity check;
//! - `maintenance.rs`: compaction;
//! - `local_docs.rs`: local documents (CouchDB-protocol checkpoints, never replicated).

use std::collections::HashMap;
use std::sync::Arc;

use outpost_api::{Attributes, Epoch, Error, Limits, Result, TableDef, Uuid};
use tokio::sync::watch;

use crate::plan::{PartKey, Planner, Spent};
use crate::storage::{blocking, Head, RecordKey, Storage, StoredState, WriteSet, WriteTxn};
use crate::tree::RevisionTree;

/// Items to a part of a write ([`Planner::cut`]): a few of the backend's multi-row statements each,
/// and small enough that storing the first part does not wait long for planning.
const PART: usize = 250;

mod check;
mod local;
mod local_docs;
mod maintenance;
mod read;
mod replica;

pub use check::CheckReport;
pub use local_docs::MAX_LOCAL_DOC_BYTES;
pub use maintenance::CompactProgress;

/// A database: the engine's semantics over one storage.
pub struct Engine<S: Storage> {
    storage: S,
    limits: Limits,
    /// The latest committed update_seq, for long-polls (shared with the task that commits).
    committed: Arc<watch::Sender<u64>>,
    /// Set by [`Engine::close`] when the database is deleted.
    closed: watch::Sender<bool>,
    /// Held by a running compaction (`maintenance.rs`).
    compacting: tokio::sync::Mutex<()>,
}

fn parse_body(json: &str) -> Result<Attributes> {
    serde_json::from_str(json).map_err(|e| Error::corrupt(format!("a stored body does not parse: {e}")))
}

/// A stored body in both its encodings (to send it to a peer in-process, which re-hashes it).
fn stored_body(json: &str) -> Result<outpost_api::Body> {
    outpost_api::Body::from_json(json).map_err(|e| Error::corrupt(format!("a stored body does not parse: {e}")))
}

fn table_def_of(name: &str, state: Option<&StoredState>) -> Result<TableDef> {
    match state {
        Some(s) if !s.deleted => TableDef::from_record(name, s.rev, &parse_body(&s.body)?),
        _ => Err(Error::not_found(format!("table {name:?} does not exist"))),
    }
}

fn check_page(limit: usize) -> Result<usize> {
    outpost_api::check_page(limit as u64, "limit")
}

impl<S: Storage> Engine<S> {
    /// A database over `storage`, checking input against `limits`.
    pub async fn new(storage: S, limits: Limits) -> Result<Self> {
        let head = storage.head().await?;
        let committed = Arc::new(watch::channel(head.update_seq).0);
        let (closed, _) = watch::channel(false);
        let engine = Engine { storage, limits, committed, closed, compacting: tokio::sync::Mutex::new(()) };
        if engine.storage.record_count().await?.is_none() {
            engine.recount().await?;
        }
        Ok(engine)
    }

    /// Count the live records afresh (a new database, or one from before format 2) and store the
    /// count, under the writer lock so that no write falls between the count and its store.
    async fn recount(&self) -> Result<u64> {
        let mut txn = self.begin().await?;
        let counted: u64 = txn
            .live_states_by_table()
            .await?
            .into_iter()
            .filter(|(table, _)| crate::plan::counts_table(table))
            .map(|(_, n)| n)
            .sum();
        self.commit(txn, WriteSet { record_count: Some(counted), ..WriteSet::default() }).await?;
        Ok(counted)
    }

    /// End this database, as its backend deletes it: every later call answers NotFound, waiting
    /// long-polls and event streams wake to see that, and a write in progress ends (commits or rolls
    /// back) before this returns. Writers check under the writer lock, so nothing writes into the
    /// database once this has returned.
    pub async fn close(&self) {
        self.closed.send_replace(true);
        self.storage.close().await;
    }

    /// The storage, unless the database was closed.
    fn store(&self) -> Result<&S> {
        if *self.closed.borrow() {
            return Err(Error::not_found(format!("database {:?} was deleted", self.storage.name())));
        }
        Ok(&self.storage)
    }

    /// Begin a write transaction of an open database (checked under the writer lock).
    async fn begin(&self) -> Result<Box<dyn WriteTxn>> {
        let txn = self.store()?.begin_write().await?;
        self.store()?;
        Ok(txn)
    }

    /// The storage underneath.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Validate a body for a local or replicated write: nesting depth and encoded size.
    fn check_body(&self, attributes: &Attributes) -> Result<()> {
        crate::validate::within(&outpost_api::Body::new(attributes), &self.limits)
    }

    /// Plan `items` with `plan` on the blocking pool, from `head` and the `trees` of the `records`
    /// they may touch, in parts (`plan::part_lengths` of each item's `key`) when the backend takes
    /// them: each part's write set is stored in `txn` while the next is planned, so planning overlaps
    /// the backend's work. Returns the last write set (to commit), what the plan no longer needs, and
    /// each item's outcome. An error of `plan` or of storing a part fails the whole write: `txn`,
    /// dropped uncommitted, rolls back every part.
    async fn plan_in_parts<I, O>(
        &self,
        txn: &mut Box<dyn WriteTxn>,
        (head, trees, records): (Head, HashMap<RecordKey, RevisionTree<String>>, usize),
        (items, key): (Vec<I>, PartKey<I>),
        mut plan: impl FnMut(&mut Planner, I) -> Result<O> + Send + 'static,
    ) -> Result<(WriteSet, Spent, Vec<O>)>
    where
        I: Send + 'static,
        O: Send + 'static,
    {
        let size = if self.storage.takes_parts() { PART } else { usize::MAX };
        // At most the batch's writes wait here, as one write set did before: planning stops at the
        // first part it cannot hand over (storing failed).
        let (parts, mut cut) = tokio::sync::mpsc::unbounded_channel::<WriteSet>();
        let planning = blocking(move || {
            let lengths = crate::plan::part_lengths(items.iter().map(key), size);
            let mut planner = Planner::new(&head, trees, records);
            let mut outcomes = Vec::with_capacity(items.len());
            let mut items = items.into_iter();
            for (i, length) in lengths.iter().enumerate() {
                for item in items.by_ref().take(*length) {
                    outcomes.push(plan(&mut planner, item)?);
                }
                if i + 1 < lengths.len() {
                    if let Some(part) = planner.cut()? {
                        // A store that failed has its error; planning on would be for nothing.
                        if parts.send(part).is_err() {
                            break;
                        }
                    }
                }
            }
            drop(parts);
            let (writes, spent) = planner.finish_apart()?;
            Ok::<_, Error>((writes, spent, outcomes))
        });
        let storing = async {
            while let Some(part) = cut.recv().await {
                if let Err(e) = txn.apply(part).await {
                    cut.close();
                    return Err(e);
                }
            }
            Ok::<_, Error>(())
        };
        let (planned, stored) = tokio::join!(planning, storing);
        let planned = planned??;
        stored?;
        Ok(planned)
    }

    async fn commit(&self, mut txn: Box<dyn WriteTxn>, writes: WriteSet) -> Result<()> {
        if writes.is_empty() {
            return Ok(());
        }
        let head = writes.head;
        let committed = self.committed.clone();
        // Applied, committed and announced in a task of its own: a request cancelled meanwhile (its
        // timeout, its client gone) cannot stop a commit from waking the long-polls that wait for it.
        let task = tokio::spawn(async move {
            txn.apply(writes).await?;
            txn.commit().await?;
            if let Some((seq, _)) = head {
                committed.send_if_modified(|s| {
                    let newer = seq > *s;
                    if newer {
                        *s = seq;
                    }
                    newer
                });
            }
            Ok(())
        });
        match task.await {
            Ok(done) => done,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(Error::unavailable("the runtime is shutting down")),
        }
    }

    /// Finish a restore from a portable backup of a database whose epochs were `epochs`, once its
    /// events were replayed (SPEC §6, §18): the later epochs that name the replayed seqs are added as
    /// they were, so peers that knew them still fast-forward over those seqs, then a new epoch begins
    /// at `update_seq + 1` (the original may have written past the backup). InvalidInput when this
    /// database did not begin as the backup's (`storage::Genesis::restored`), or an epoch starts past
    /// what was replayed.
    pub async fn restore_epochs(&self, epochs: &[Epoch]) -> Result<Epoch> {
        crate::storage::check_epochs(epochs)?;
        let head = self.store()?.head().await?;
        if head.epochs != epochs[..1.min(epochs.len())] {
            return Err(Error::invalid("this database did not begin as the backup's: restore into a new one"));
        }
        if let Some(e) = epochs.iter().find(|e| e.start_seq > head.update_seq + 1) {
            return Err(Error::invalid(format!(
                "epoch {} starts at seq {}, past the {} events replayed",
                e.uuid, e.start_seq, head.update_seq
            )));
        }
        // An epoch begun right after the last replayed seq names none of them: the new one stands for it.
        for epoch in epochs[1..].iter().filter(|e| e.start_seq <= head.update_seq) {
            let txn = self.begin().await?;
            self.commit(txn, WriteSet { epoch: Some(*epoch), ..WriteSet::default() }).await?;
        }
        self.reidentify().await
    }

    /// Begin a new epoch (SPEC §6): a fresh uuid naming this database from `update_seq + 1` on. Used
    /// after a copy or restore so that no two databases share a (uuid, seq) pair.
    pub async fn reidentify(&self) -> Result<Epoch> {
        let mut txn = self.begin().await?;
        let head = txn.head().await?;
        let epoch = Epoch { uuid: Uuid::new_v4(), start_seq: head.update_seq + 1 };
        let writes = WriteSet { epoch: Some(epoch), ..WriteSet::default() };
        self.commit(txn, writes).await?;
        Ok(epoch)
    }
}
