//! The narrow storage trait the engine runs on. A backend stores rows and answers indexed queries; it
//! makes no decision about what a write means (that is the engine's, in `plan` and `reconcile`).
//!
//! Writes go through a [`WriteTxn`]: the engine reads the head and the revision trees it needs,
//! decides everything in pure functions, and hands the backend one [`WriteSet`] to store before
//! committing. Backends must serialise write transactions per database (seqs are gap-free and
//! visible in order).

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use outpost_api::{ChainHash, Change, Digest, Epoch, Error, KnowledgeRow, Result, ResumePoint, RevId, Uuid};

use crate::tree::RevisionTree;

/// A record's address.
pub type RecordKey = (String, String);

/// The database's position: its latest revision event, its chain hash there, and its epochs.
#[derive(Clone, Debug, PartialEq)]
pub struct Head {
    /// The seq of the latest revision event (0 when none).
    pub update_seq: u64,
    /// The chain hash at `update_seq`.
    pub chain: ChainHash,
    /// Every epoch, oldest first (never empty).
    pub epochs: Vec<Epoch>,
}

impl Head {
    /// The uuid in force now.
    pub fn uuid(&self) -> Uuid {
        self.epochs.last().expect("a database has at least one epoch").uuid
    }
}

/// A new database's identity, decided here and nowhere else (SPEC §6): a fresh uuid, its first epoch
/// from seq 1, and the genesis chain hash as the head of an empty database. A backend creating a
/// database stores its name and this head.
#[derive(Clone, Debug, PartialEq)]
pub struct Genesis {
    /// The database's name (validated).
    pub name: String,
    /// The head of the empty database: update_seq 0, the genesis chain, one epoch.
    pub head: Head,
}

impl Genesis {
    /// The identity of a new database called `name`.
    pub fn new(name: &str) -> Result<Genesis> {
        outpost_api::names::validate_db_name(name)?;
        let uuid = Uuid::new_v4();
        let head =
            Head { update_seq: 0, chain: crate::hash::genesis_chain(uuid), epochs: vec![Epoch { uuid, start_seq: 1 }] };
        Ok(Genesis { name: name.to_owned(), head })
    }

    /// The identity of a database restored from a portable backup of one whose epochs were `epochs`:
    /// it begins as that database began (its first epoch, so its genesis chain), and replaying the
    /// backup's events in order gives it the same seqs and chain hashes; [`crate::Engine::restore_epochs`]
    /// then adds the later epochs and a new one. InvalidInput for an epoch list no database has.
    pub fn restored(name: &str, epochs: &[Epoch]) -> Result<Genesis> {
        outpost_api::names::validate_db_name(name)?;
        check_epochs(epochs)?;
        let first = epochs[0];
        let head = Head { update_seq: 0, chain: crate::hash::genesis_chain(first.uuid), epochs: vec![first] };
        Ok(Genesis { name: name.to_owned(), head })
    }

    /// The first epoch.
    pub fn epoch(&self) -> Epoch {
        self.head.epochs[0]
    }
}

/// An epoch list as a database has one: not empty, the first from seq 1, in increasing order of
/// start, each with its own uuid. InvalidInput otherwise.
pub fn check_epochs(epochs: &[Epoch]) -> Result<()> {
    let ordered = epochs.windows(2).all(|w| w[0].start_seq < w[1].start_seq);
    let unique = epochs.iter().enumerate().all(|(i, e)| epochs[..i].iter().all(|o| o.uuid != e.uuid));
    if epochs.first().is_none_or(|e| e.start_seq != 1) || !ordered || !unique {
        return Err(Error::invalid("epochs must start at seq 1, in increasing order, each with its own uuid"));
    }
    Ok(())
}

/// Which entries a filtered changes feed carries: the states of `tables`, and the states of the
/// records named in `records` (the engine adds the definitions of the tables it names, SPEC §7).
#[derive(Clone, Debug, PartialEq)]
pub struct FeedFilter {
    /// Tables whose every state passes.
    pub tables: Vec<String>,
    /// Single records that pass too.
    pub records: Vec<RecordKey>,
}

/// A revision to store: new, the body of a revision previously held as a stub, or (a stub again,
/// without event) the parent of a stub whose parent was unknown. A stub entry never replaces a
/// known parent; an event is stored with its `parent` (the one its id was verified with), or the
/// stub's when it names none — an ancestry is only a peer's claim.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredRevision {
    /// The table.
    pub table: String,
    /// The record id.
    pub id: String,
    /// The revision id.
    pub rev: RevId,
    /// Its parent, when known.
    pub parent: Option<RevId>,
    /// Whether it is a tombstone.
    pub deleted: bool,
    /// The body in wire JSON; `None` for a stub.
    pub body: Option<String>,
    /// The revision event: its seq and the chain hash after it; `None` for a stub.
    pub event: Option<(u64, ChainHash)>,
    /// A foreign revision's body digest (SPEC §3), which its event's chain hash folds in; `None` for
    /// a native revision or a stub.
    pub foreign: Option<Digest>,
    /// For an event whose body replaces the one a revision was stored with (SPEC §3: one body per
    /// id), the seq of that earlier event: it stays in the history, superseded — its seq, chain hash,
    /// class and digest kept, its body dropped — so that the events from seq 1 still fold to the
    /// chain, and the revision's row is this event's. (When that event is in the same write set, it
    /// is `superseded` there instead, and moving it finds nothing.)
    pub replaces: Option<u64>,
    /// An event stored superseded from the start: a later event of the same write set replaces its
    /// body. It has no body; a backend stores it where superseded events go, not as the revision's
    /// row.
    pub superseded: bool,
}

/// A local document to store (`LocalDocs`, SPEC §17): its new revision and body (a JSON object's
/// text), or `None` to delete it. No seq, no event: it is never replicated.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredLocalDoc {
    /// The table.
    pub table: String,
    /// The document id.
    pub id: String,
    /// The revision and body to store; `None` deletes the document.
    pub doc: Option<(u64, String)>,
}

/// A record's reconciled state as stored (what reads and the changes feed return).
#[derive(Clone, Debug, PartialEq)]
pub struct StoredState {
    /// The table.
    pub table: String,
    /// The record id.
    pub id: String,
    /// The winning revision.
    pub rev: RevId,
    /// Whether the winner is a tombstone.
    pub deleted: bool,
    /// The reconciled body in wire JSON: for a live record always the winner's own, as the winner's
    /// revision stores it (the engine reconciles `merge-fields` on read), so a backend keeps it
    /// there only; `{}` for a deleted one. In a [`WriteSet`] a live record's is empty (its winner's
    /// event holds it, in the write set or stored): read back, it is the winner's.
    pub body: String,
    /// Every leaf.
    pub leaves: Vec<RevId>,
    /// Non-deleted leaves other than the winner.
    pub conflicts: Vec<RevId>,
    /// Fields a merge could not settle.
    pub field_conflicts: Vec<String>,
    /// The record's latest seq.
    pub seq: u64,
}

/// Everything one write transaction stores, decided by the engine.
///
/// What a backend may assume of a write set the engine gives it: revision events take the seqs after
/// the head in the order listed, each chain hash extending the one before, `head` the last of them;
/// each revision has at most one event entry and one stub entry, a stub entry never after its event;
/// `states` are in seq order, one per record, a live one's body empty (its winner's event holds it); knowledge rows hold
/// from the new head's seq. A backend
/// stores them as given, in one transaction, and decides nothing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WriteSet {
    /// Revisions to insert; one whose rev is already stored as a stub fills it in. A stub entry (no
    /// event) for a revision already stored sets its parent when the stored one has none (a parent
    /// learned from a later, longer ancestry); it changes nothing else.
    pub revisions: Vec<StoredRevision>,
    /// Whether an event in `revisions` stores a revision held as a stub (stored, or by a stub entry
    /// earlier in this set). When false, a backend need not look for stubs to replace.
    pub fills_stubs: bool,
    /// New reconciled states, replacing the old ones.
    pub states: Vec<StoredState>,
    /// For each of `states`, whether its record had no state before (no revisions at all), which a
    /// backend may insert without looking for one to replace; empty when not known (then any state
    /// may replace one).
    pub new_states: Vec<bool>,
    /// The new head position (when any event was written).
    pub head: Option<(u64, ChainHash)>,
    /// A resume point to store (replacing the one for the same source).
    pub resume: Option<ResumePoint>,
    /// Knowledge rows to add (an existing row for the same peer and seq is kept).
    pub knowledge: Vec<KnowledgeRow>,
    /// Events whose bodies compaction drops (`compact::droppable`), by seq: each keeps its revision,
    /// parent, tombstone flag, seq and chain hash, and its body becomes absent as a stub's is. None
    /// is a live state's winner.
    pub drop_bodies: Vec<u64>,
    /// Bodies stored into events that were stored without one, by seq: a pending revision (replayed
    /// from quicksync files without its body, `RevisionTree::leaves`) whose body arrived, verified.
    /// The event keeps its seq and chain hash.
    pub fill_bodies: Vec<(u64, String)>,
    /// Stored knowledge rows to delete, by peer and peer seq (the engine's pruning rule,
    /// `knowledge::forgotten`); none of them is in `knowledge`.
    pub forget_knowledge: Vec<(Uuid, u64)>,
    /// A new epoch to append.
    pub epoch: Option<Epoch>,
    /// Tables whose SQL views should exist.
    pub views: Vec<String>,
    /// The live-record count counted afresh, stored before `live_records` is added.
    pub record_count: Option<u64>,
    /// The change in the number of live records (the engine's rule: `plan::counts`), which backends
    /// add to the stored count so that `record_count` costs nothing. Added to no count, it changes
    /// nothing: the engine then counts afresh.
    pub live_records: i64,
    /// Local documents to store or delete (replacing what is stored under the same table and id).
    pub local_docs: Vec<StoredLocalDoc>,
}

impl WriteSet {
    /// Whether there is nothing to store.
    pub fn is_empty(&self) -> bool {
        self == &WriteSet::default()
    }
}

/// One revision event read back, for checks and full scans.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    /// The event's seq.
    pub seq: u64,
    /// The chain hash after it.
    pub chain: ChainHash,
    /// The revision.
    pub revision: StoredRevision,
}

/// A page of the changes feed as the backend reads it, in one consistent snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct ChangesRead {
    /// Entries in seq order.
    pub changes: Vec<Change>,
    /// Entries after the last one returned, counted up to the cap given.
    pub pending: u64,
    /// The database's update_seq in the same snapshot.
    pub update_seq: u64,
}

/// Run blocking work on tokio's blocking pool: storage calls that block (SQLite reads, fsyncs), and
/// CPU work such as validating, encoding, hashing or parsing megabytes of bodies. An async worker
/// serves the I/O of every other request, so a heavy request must never hold one. A panic in `f` is
/// re-raised here.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    joined(tokio::task::spawn_blocking(f)).await
}

async fn joined<T>(task: tokio::task::JoinHandle<T>) -> Result<T> {
    match task.await {
        Ok(out) => Ok(out),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(Error::unavailable("the runtime is shutting down")),
    }
}

/// `f` applied to each item on the blocking pool, the items split into a part per core (at most
/// four; small batches stay whole), the results in the items' order. For CPU work on each item of a
/// batch that no item's result depends on — validating the bodies of a page of revisions — so that
/// it runs beside the rest of a write instead of before it on one core.
pub async fn blocking_map<T, U>(mut items: Vec<T>, f: impl Fn(T) -> U + Clone + Send + 'static) -> Result<Vec<U>>
where
    T: Send + 'static,
    U: Send + 'static,
{
    // Asked once: the answer reads the cgroup's files on Linux.
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from));
    let (parts, size) = parts_of(items.len(), cores);
    let mut tails = Vec::with_capacity(parts);
    while items.len() > size {
        tails.push(items.split_off(items.len() - size));
    }
    tails.push(items);
    // Every part starts now; parts were split off the end, so the last one is the batch's first.
    let running: Vec<_> = tails
        .into_iter()
        .rev()
        .map(|part| {
            let f = f.clone();
            tokio::task::spawn_blocking(move || part.into_iter().map(f).collect::<Vec<U>>())
        })
        .collect();
    let mut out = Vec::with_capacity(size * parts);
    for part in running {
        out.extend(joined(part).await?);
    }
    Ok(out)
}

/// Free `value` on the blocking pool, off the caller's path: for what a write no longer needs once
/// planned, whose freeing would otherwise come before its statements (`Planner::finish_apart`).
pub fn drop_aside<T: Send + 'static>(value: T) {
    drop(tokio::task::spawn_blocking(move || drop(value)));
}

/// How [`blocking_map`] splits `len` items on `cores` cores: how many parts, of at most how many
/// items each.
fn parts_of(len: usize, cores: usize) -> (usize, usize) {
    /// Fewer items than this to a part would cost more in handing them over than they save.
    const MIN_PART: usize = 64;
    let parts = cores.min(4).min(len / MIN_PART).max(1);
    (parts, len.div_ceil(parts))
}

/// An open write transaction. Dropped without `commit`, it rolls back.
#[async_trait]
pub trait WriteTxn: Send {
    /// The head as of this transaction.
    async fn head(&mut self) -> Result<Head>;
    /// The revision trees of these records, each body as the wire JSON it is stored as (the planner
    /// reads values only where a rule needs them); a record with no revisions has no entry or an
    /// empty tree. The keys are given, not lent: a backend reading on another thread takes them
    /// there without copying each name.
    async fn load_trees(&mut self, keys: Vec<RecordKey>) -> Result<HashMap<RecordKey, RevisionTree<String>>>;
    /// The reconciled state of one record, if any.
    async fn load_state(&mut self, table: &str, id: &str) -> Result<Option<StoredState>>;
    /// The revision of `table`'s local document `id`, if there is one.
    async fn load_local_rev(&mut self, table: &str, id: &str) -> Result<Option<u64>>;
    /// How many states of each table have a winner that is not a tombstone (an aggregate, read when
    /// the engine counts the live records afresh).
    async fn live_states_by_table(&mut self) -> Result<Vec<(String, u64)>>;
    /// Store a write set (may be called more than once).
    async fn apply(&mut self, writes: WriteSet) -> Result<()>;
    /// Make everything applied durable and visible, atomically.
    async fn commit(self: Box<Self>) -> Result<()>;
}

/// A database's storage.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// The backend's name (`sqlite`, `postgres`).
    fn backend(&self) -> &'static str;
    /// The database's name.
    fn name(&self) -> &str;
    /// Begin a write transaction; waits for any other writer of this database.
    async fn begin_write(&self) -> Result<Box<dyn WriteTxn>>;
    /// Whether the engine should store a large write in parts while it plans the rest
    /// ([`WriteTxn::apply`] more than once): true unless applying several write sets costs the
    /// backend more than one (the memory backend copies its data to make them all-or-nothing).
    fn takes_parts(&self) -> bool {
        true
    }
    /// Close the storage of a database being deleted, once the write in progress (if any) has ended,
    /// so that nothing holds its files when they are removed; every later call fails. The default, for
    /// a backend whose connections are pooled, only waits for the writer.
    async fn close(&self) {
        drop(self.begin_write().await);
    }
    /// The current head.
    async fn head(&self) -> Result<Head>;
    /// The revision trees of these records; a record with no revisions has no entry or an empty tree.
    async fn load_trees(&self, keys: &[RecordKey]) -> Result<HashMap<RecordKey, RevisionTree>>;
    /// [`Storage::load_trees`] with each body as the wire JSON it is stored as, not parsed: what
    /// sending revisions on as they are needs. The default encodes `load_trees`' bodies; a backend
    /// storing bodies as text gives them as read.
    async fn load_stored_trees(&self, keys: &[RecordKey]) -> Result<HashMap<RecordKey, RevisionTree<String>>> {
        let trees = self.load_trees(keys).await?;
        Ok(trees.into_iter().map(|(key, tree)| (key, tree.map_bodies(|body| body.to_json()))).collect())
    }
    /// The revision ids held (with a body or as stubs) for these records: what `revs_diff` needs,
    /// which a backend can answer from its key index without reading or parsing bodies (a record
    /// with none has no entry or an empty set).
    async fn held_revs(&self, keys: &[RecordKey]) -> Result<HashMap<RecordKey, HashSet<RevId>>> {
        let trees = self.load_trees(keys).await?;
        Ok(trees.into_iter().map(|(key, tree)| (key, tree.iter().map(|(rev, _)| *rev).collect())).collect())
    }
    /// Of these records' events, those whose body a peer may improve, by record: stored without a
    /// body and no tombstones (compacted, or replayed compacted: `WriteSet::fill_bodies`), or foreign
    /// (SPEC §3: a native body would replace it). A record with none has no entry or an empty set.
    /// The default reads `load_trees`.
    async fn improvable_revs(&self, keys: &[RecordKey]) -> Result<HashMap<RecordKey, HashSet<RevId>>> {
        let trees = self.load_trees(keys).await?;
        Ok(trees
            .into_iter()
            .map(|(key, tree)| {
                let revs = tree
                    .iter()
                    .filter(|(_, n)| !n.is_stub() && ((n.body.is_none() && !n.deleted) || n.foreign.is_some()));
                (key, revs.map(|(rev, _)| *rev).collect())
            })
            .collect())
    }
    /// The reconciled state of one record.
    async fn load_state(&self, table: &str, id: &str) -> Result<Option<StoredState>>;
    /// `table`'s local document `id`: its revision and body as stored.
    async fn local_doc(&self, table: &str, id: &str) -> Result<Option<(u64, String)>>;
    /// States of a table with id > `after`, in id order, at most `limit`.
    async fn list_states(
        &self,
        table: &str,
        after: Option<&str>,
        limit: usize,
        include_deleted: bool,
    ) -> Result<Vec<StoredState>>;
    /// How many states of `table` are live (not tombstones). The default pages through `list_states`;
    /// a backend counts in one statement.
    async fn live_count(&self, table: &str) -> Result<u64> {
        let mut count = 0u64;
        let mut after: Option<String> = None;
        loop {
            let page = self.list_states(table, after.as_deref(), 1000, false).await?;
            count += page.len() as u64;
            if page.len() < 1000 {
                return Ok(count);
            }
            after = page.last().map(|s| s.id.clone());
        }
    }
    /// States with seq > `since` in seq order, at most `limit`, optionally only those passing `filter`;
    /// `pending` counted up to `pending_cap` (with the same filter). Must use an index on seq: cost
    /// proportional to the page.
    async fn changes(
        &self,
        since: u64,
        limit: usize,
        filter: Option<&FeedFilter>,
        pending_cap: u64,
    ) -> Result<ChangesRead>;
    /// The chain hash after event `seq` (1 ≤ seq ≤ update_seq), by index lookup.
    async fn chain_at(&self, seq: u64) -> Result<Option<ChainHash>>;
    /// Revision events with seq > `after`, in seq order, at most `limit`.
    async fn events(&self, after: u64, limit: usize) -> Result<Vec<StoredEvent>>;
    /// Knowledge rows, those with local seq ≤ `upto` when given.
    async fn knowledge(&self, upto: Option<u64>) -> Result<Vec<KnowledgeRow>>;
    /// The resume point stored for a source.
    async fn resume_point(&self, source: Uuid) -> Result<Option<ResumePoint>>;
    /// The live-record count the engine keeps (`WriteSet::record_count`, `WriteSet::live_records`);
    /// `None` while it was never counted (a new database, or one from before format 2).
    async fn record_count(&self) -> Result<Option<u64>>;
    /// Bytes the database takes in its storage ([`outpost_api::InfoReader::size_bytes`]); `None` (the
    /// default) where the backend cannot tell.
    async fn size_bytes(&self) -> Result<Option<u64>> {
        Ok(None)
    }
    /// Return the space that dropped bodies freed to the file system, where the backend can (SQLite:
    /// an incremental vacuum, in bounded steps); the default does nothing (PostgreSQL reuses it).
    async fn reclaim_space(&self) -> Result<()> {
        Ok(())
    }
    /// Commits made to this database by other writers sharing the storage (e.g. other server processes
    /// on one PostgreSQL), as the update_seq each reached, so that long-polls wake for them too. A value
    /// must only be sent once that seq is committed. `None` (the default): this engine is the only
    /// writer, and it wakes its own waiters.
    fn external_commits(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
}

pub mod stored;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blocking_map_keeps_the_items_order_across_its_parts() {
        for n in [0usize, 1, 63, 64, 128, 129, 1000, 1001] {
            let items: Vec<usize> = (0..n).collect();
            let out = blocking_map(items, |i| i * 3).await.unwrap();
            assert_eq!(out, (0..n).map(|i| i * 3).collect::<Vec<_>>(), "{n} items");
        }
    }

    #[test]
    fn a_batch_is_split_in_a_part_per_core_and_never_in_small_parts() {
        for (len, cores, parts, size) in [
            (0, 2, 1, 0),
            (10, 2, 1, 10),
            (127, 2, 1, 127),
            (128, 2, 2, 64),
            (1000, 2, 2, 500),
            (1001, 2, 2, 501),
            (1000, 1, 1, 1000),
            (1000, 16, 4, 250),
            (200, 16, 3, 67),
        ] {
            assert_eq!(parts_of(len, cores), (parts, size), "{len} items on {cores} cores");
        }
    }
}
