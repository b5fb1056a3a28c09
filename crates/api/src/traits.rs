//! The public traits, split by concern so backends and transports can be swapped (SPEC §1).
//! Every method states what it guarantees; the conformance suite in `tests/` checks it on every
//! backend and transport.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::{
    BatchResult, ChainHash, ChangesPage, ChangesRequest, CompactReport, CompactRequest, DbInfo, GetOptions,
    KnowledgeRow, KnowledgeUpdate, ListOptions, LocalDoc, NewTable, PutRecord, PutRevisionsResult, Record, RecordPage,
    RecordRevs, Result, ResumePoint, RevId, RevisionData, RevisionEvent, RevisionJson, TableDef, TableUpdate, WriteOp,
    WriteResult,
};

/// Reading table definitions.
#[async_trait]
pub trait TableReader: Send + Sync {
    /// The definition of a live table. NotFound when it does not exist or was deleted.
    async fn get_table(&self, name: &str) -> Result<TableDef>;
    /// Every live table, by name.
    async fn list_tables(&self) -> Result<Vec<TableDef>>;
}

/// Changing table definitions. Each change is a revision of the table's `_tables` record and takes a
/// seq like any other revision event.
#[async_trait]
pub trait TableWriter: Send + Sync {
    /// Create a table. AlreadyExists when a live table has the name; a deleted table's name may be
    /// reused (its definition record is revived).
    async fn create_table(&self, table: NewTable) -> Result<TableDef>;
    /// Change a table's definition. Conflict when `update.rev` is not the current definition.
    async fn update_table(&self, name: &str, update: TableUpdate) -> Result<TableDef>;
    /// Delete a table: its definition becomes a tombstone; its records stay stored (and replicate) but
    /// cannot be written or read until a table of that name is created again.
    async fn delete_table(&self, name: &str) -> Result<()>;
}

/// Reading records.
///
/// ```
/// use outpost_api::{GetOptions, RecordReader, Result};
///
/// /// A record's text and how many conflicting versions it has.
/// async fn show(db: &dyn RecordReader, id: &str) -> Result<String> {
///     let record = db.get_record("notes", id, GetOptions { conflicts: true, ..Default::default() }).await?;
///     let conflicts = record.conflicts.map_or(0, |c| c.len());
///     Ok(format!("{:?} ({conflicts} conflicting)", record.attributes.get("text")))
/// }
/// ```
#[async_trait]
pub trait RecordReader: Send + Sync {
    /// The reconciled state of a record (or, with `options.rev`, that revision's own body).
    /// NotFound when the record does not exist or its winner is a tombstone (unless a rev is named).
    async fn get_record(&self, table: &str, id: &str, options: GetOptions) -> Result<Record>;
    /// Records of a table in id order (UTF-8 bytes), `options.limit` at most per page.
    async fn list_records(&self, table: &str, options: ListOptions) -> Result<RecordPage>;
    /// How many records of `table` are live (their winner is not a tombstone). The default pages
    /// through `list_records`; a database that can count in its storage does.
    async fn count_records(&self, table: &str) -> Result<u64> {
        let mut count = 0u64;
        let mut after = None;
        loop {
            let page =
                self.list_records(table, ListOptions { after, limit: crate::MAX_PAGE, include_deleted: false }).await?;
            count += page.records.len() as u64;
            match page.next_after {
                Some(next) => after = Some(next),
                None => return Ok(count),
            }
        }
    }
}

/// Local writes (SPEC §4.1).
///
/// An update names the revision it edits; a stale one is refused as `Conflict`, carrying the current
/// winner, so nothing is overwritten unseen:
///
/// ```
/// use outpost_api::{Attributes, ErrorKind, PutRecord, RecordWriter, Result, RevId, Value};
///
/// /// Write `count` on the revision last seen: `Err(winner)` when someone else wrote first (read it
/// /// again and decide), `Ok` with the new revision otherwise.
/// async fn set_count(db: &dyn RecordWriter, id: &str, seen: RevId, count: i64) -> Result<Result<RevId, Option<RevId>>> {
///     let attributes = Attributes::new().with("count", Value::Int(count));
///     let put = PutRecord { id: Some(id.into()), rev: Some(seen), attributes, ..Default::default() };
///     match db.put_record("items", put).await {
///         Ok(written) => Ok(Ok(written.rev)),
///         Err(e) if e.kind == ErrorKind::Conflict => Ok(Err(e.current_rev)),
///         Err(e) => Err(e),
///     }
/// }
/// ```
#[async_trait]
pub trait RecordWriter: Send + Sync {
    /// Create or update a record. The named parent rev must be a current leaf, else Conflict carrying
    /// the winning rev. Idempotent: retrying a write that already happened returns its revision; a
    /// write that changes nothing returns the parent.
    async fn put_record(&self, table: &str, put: PutRecord) -> Result<WriteResult>;
    /// Delete a record by writing a tombstone on `rev` (the current winner when `None`).
    async fn delete_record(&self, table: &str, id: &str, rev: Option<RevId>) -> Result<WriteResult>;
    /// Many writes in one transaction; each has its own result, in request order. A failed operation
    /// does not stop the others.
    async fn write_batch(&self, ops: Vec<WriteOp>) -> Result<BatchResult>;
}

/// The changes feed (SPEC §5).
///
/// Following it: read pages from a seq, and wait for commits when drained.
///
/// ```
/// use std::time::Duration;
/// use outpost_api::{ChangeReader, ChangesRequest, Result};
///
/// async fn follow(db: &dyn ChangeReader, mut since: u64, rounds: usize) -> Result<u64> {
///     for _ in 0..rounds {
///         let page = db.changes(ChangesRequest { since, ..Default::default() }).await?;
///         for change in &page.changes {
///             println!("{} {}/{} is now {}", change.seq, change.table, change.id, change.rev);
///         }
///         since = page.last_seq;
///         if page.pending == 0 {
///             db.wait_for_changes(since, Duration::from_secs(30)).await?;
///         }
///     }
///     Ok(since)
/// }
/// ```
#[async_trait]
pub trait ChangeReader: Send + Sync {
    /// One page of changes after `since`: each changed record once, at its latest seq, in seq order.
    /// Cost is proportional to the page, not to the database.
    async fn changes(&self, request: ChangesRequest) -> Result<ChangesPage>;
    /// Wait until `update_seq > since` or the timeout passes; returns the `update_seq` then.
    async fn wait_for_changes(&self, since: u64, timeout: Duration) -> Result<u64>;
}

/// Identity, shared by both replication roles.
#[async_trait]
pub trait InfoReader: Send + Sync {
    /// Name, uuid, epochs, update_seq, chain hash at update_seq, record count, backend.
    async fn info(&self) -> Result<DbInfo>;
    /// Bytes the database takes in its storage (SQLite: its file and WAL; PostgreSQL: its schema's
    /// tables with their indexes); `None` where that is not known (in memory, a remote peer). Asked for
    /// apart from `info`, which is on every pass's path, as it may cost a query.
    async fn size_bytes(&self) -> Result<Option<u64>> {
        Ok(None)
    }
}

/// What a replication source offers (SPEC §7, §8).
#[async_trait]
pub trait ReplicaSource: InfoReader {
    /// The named revisions with their bodies (when stored) and ancestry. Unknown revisions are left
    /// out. Each ancestry is complete down to the root, except that it stops at the nearest older
    /// revision of the same record that is also named (and stored with its body), which comes with
    /// its own: the answer carries each line of history once.
    async fn get_revisions(&self, wanted: Vec<RecordRevs>) -> Result<Vec<RevisionData>>;
    /// [`ReplicaSource::get_revisions`], with the size of the answer in bytes: the body that crossed
    /// the wire from a remote source, the length of the same JSON from a local one (how a pass counts
    /// what it moved without encoding it again).
    async fn get_revisions_sized(&self, wanted: Vec<RecordRevs>) -> Result<(Vec<RevisionData>, u64)> {
        let revisions = self.get_revisions(wanted).await?;
        let bytes = crate::wire::json_len(&revisions);
        Ok((revisions, bytes))
    }
    /// [`ReplicaSource::get_revisions`] as a server sends them: the bodies as wire JSON, which a
    /// database storing them as such copies as they are instead of parsing and encoding each.
    async fn get_revisions_json(&self, wanted: Vec<RecordRevs>) -> Result<Vec<RevisionJson>> {
        Ok(self.get_revisions(wanted).await?.into_iter().map(RevisionJson::encode).collect())
    }
    /// The chain hash after revision event `seq` (`seq` = 0 is the genesis hash). NotFound beyond
    /// `update_seq`. O(log n).
    async fn chain_hash_at(&self, seq: u64) -> Result<ChainHash>;
    /// Knowledge rows, those with local seq ≤ `upto` when given.
    async fn knowledge(&self, upto: Option<u64>) -> Result<Vec<KnowledgeRow>>;
    /// Revision events with seq > `after`, in seq order, at most `limit` (1..=10,000): every revision
    /// this database stored, with its body, each at the seq it took (unlike the changes feed, which
    /// lists each record once). Cost is proportional to the page.
    async fn events(&self, after: u64, limit: usize) -> Result<Vec<RevisionEvent>>;
}

/// What a replication target offers (SPEC §7, §8).
#[async_trait]
pub trait ReplicaTarget: InfoReader {
    /// For each record, the named revisions this database does not hold (as bodies or stubs).
    /// Records with nothing missing are left out.
    async fn revs_diff(&self, have: Vec<RecordRevs>) -> Result<Vec<RecordRevs>>;
    /// Store replicated revisions: each body is re-hashed and must match its rev id (else Corrupt,
    /// and nothing is stored); missing ancestors become stubs; known revisions are no-ops. All of it,
    /// and the resume point when given, commit in one transaction.
    async fn put_revisions(
        &self,
        revisions: Vec<RevisionData>,
        resume: Option<ResumePoint>,
    ) -> Result<PutRevisionsResult>;
    /// `put_revisions`, then `record_knowledge`, in one transaction: for a batch that proves
    /// knowledge by itself (a verified quicksync batch holds every revision event of its source up to
    /// `knowledge.source_seq`). The knowledge rows are recorded at the update_seq after the write.
    /// Idempotent: a batch stored again changes nothing (known revisions are no-ops, and a
    /// knowledge row for a peer and seq already recorded is kept).
    async fn put_revisions_with_knowledge(
        &self,
        revisions: Vec<RevisionData>,
        knowledge: KnowledgeUpdate,
    ) -> Result<PutRevisionsResult>;
    /// Replay revision events read from verified quicksync files, in seq order: `put_revisions` (with
    /// `knowledge` as `put_revisions_with_knowledge` when given), except that a live revision without a
    /// body is a compacted one (SPEC §4.5), stored without it and not part of its record until the
    /// revision after it arrives — which an ordered replay brings later, perhaps in a later batch or
    /// file. The default refuses them as `put_revisions` does: a remote peer's `revs/put` takes no
    /// revision without its body.
    async fn put_events(
        &self,
        revisions: Vec<RevisionData>,
        knowledge: Option<KnowledgeUpdate>,
    ) -> Result<PutRevisionsResult> {
        match knowledge {
            Some(update) => self.put_revisions_with_knowledge(revisions, update).await,
            None => self.put_revisions(revisions, None).await,
        }
    }
    /// Record what a drained pass learned: the source's position and its imported knowledge rows,
    /// each at this database's current update_seq.
    async fn record_knowledge(&self, update: KnowledgeUpdate) -> Result<()>;
    /// The resume point stored for a source epoch, if any.
    async fn resume_point(&self, source: uuid::Uuid) -> Result<Option<ResumePoint>>;
}

/// Work an operator asks of a database (SPEC §4.5).
#[async_trait]
pub trait Maintenance: Send + Sync {
    /// Drop the bodies no read needs any more: of non-leaf revisions more than `keep_bodies`
    /// generations below every leaf, keeping each revision's id, parent and seq (SPEC §4.5). Runs in
    /// bounded batches, so writers wait for one batch at most. NotFound for an unknown table;
    /// InvalidInput for `scheduled` with `keep_bodies`.
    async fn compact(&self, request: CompactRequest) -> Result<CompactReport>;
}

/// Documents a CouchDB-protocol peer keeps on a database for its own use (SPEC §17: `_local/…`, where
/// PouchDB stores its replication checkpoints): per table, never replicated, never in the changes
/// feed, taking no seq. Each has a revision number, 1 after its first write and one more after each.
#[async_trait]
pub trait LocalDocs: Send + Sync {
    /// `table`'s local document `id`. NotFound when there is none.
    async fn get_local(&self, table: &str, id: &str) -> Result<LocalDoc>;
    /// Write `body` as `table`'s local document `id` (`None`: delete it) when its revision is `rev`
    /// (`None`: there is no such document); Conflict otherwise. Returns the new revision (the one
    /// deleted, for a delete). InvalidInput for bad names, TooLarge past the body limit.
    async fn put_local(
        &self,
        table: &str,
        id: &str,
        rev: Option<u64>,
        body: Option<serde_json::Map<String, serde_json::Value>>,
    ) -> Result<u64>;
}

/// Everything a database offers. Implemented automatically for any type with all the parts.
///
/// A SQLite file, a PostgreSQL schema, a database in memory and one on a remote server are all a
/// `Database`, so code written against it runs on any of them:
///
/// ```
/// use outpost_api::{Database, Result};
///
/// /// How many live records a database holds, and its position in its history.
/// async fn summary(db: &dyn Database) -> Result<String> {
///     let info = db.info().await?;
///     Ok(format!("{}: {} records at seq {} ({} backend)", info.name, info.record_count, info.update_seq, info.backend))
/// }
/// ```
pub trait Database:
    TableReader
    + TableWriter
    + RecordReader
    + RecordWriter
    + ChangeReader
    + ReplicaSource
    + ReplicaTarget
    + Maintenance
    + LocalDocs
{
}

impl<T> Database for T where
    T: TableReader
        + TableWriter
        + RecordReader
        + RecordWriter
        + ChangeReader
        + ReplicaSource
        + ReplicaTarget
        + Maintenance
        + LocalDocs
{
}

/// A set of named databases (what a server hosts).
#[async_trait]
pub trait Databases: Send + Sync {
    /// Database names, sorted.
    async fn list(&self) -> Result<Vec<String>>;
    /// Open an existing database. NotFound when there is none of that name.
    async fn open(&self, name: &str) -> Result<Arc<dyn Database>>;
    /// Create a database. AlreadyExists when one of that name exists.
    async fn create(&self, name: &str) -> Result<Arc<dyn Database>>;
    /// Delete a database and everything in it. NotFound when there is none.
    async fn delete(&self, name: &str) -> Result<()>;
}
