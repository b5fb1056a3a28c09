//! The conformance suite catches bugs: each test here wraps in-memory databases (the engine with no
//! SQL under it, so the memory configuration alone has these teeth) in a [`Mutant`] that breaks one
//! guarantee at the api boundary, and checks that the suite tests covering that guarantee fail (panic)
//! against it. An unbroken wrapper passes them (the `control` test).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use outpost_api::{
    BatchResult, ChainHash, ChangeReader, ChangesPage, ChangesRequest, CompactReport, CompactRequest, Database, DbInfo,
    ErrorKind, GetOptions, InfoReader, KnowledgeRow, KnowledgeUpdate, ListOptions, LocalDoc, LocalDocs, Maintenance,
    NewTable, PutRecord, PutRevisionsResult, Record, RecordPage, RecordReader, RecordRevs, RecordWriter, ReplicaSource,
    ReplicaTarget, Result, ResumePoint, RevisionData, RevisionEvent, TableDef, TableReader, TableUpdate, TableWriter,
    Uuid, Value, WriteOp, WriteResult,
};
use outpost_tests::{Factory, MemoryFactory};

/// The one bug a [`Mutant`] has.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mutation {
    /// No bug.
    None,
    /// Reads report no conflicting leaves.
    ForgetConflicts,
    /// Reads report no field conflicts.
    ForgetFieldConflicts,
    /// `info().update_seq` runs one ahead once past 2.
    SkewUpdateSeq,
    /// `chain_hash_at(n)` answers the hash of `n - 1`.
    ChainOffByOne,
    /// The changes feed repeats its last entry.
    RepeatLastChange,
    /// The changes feed ignores the table filter.
    IgnoreTableFilter,
    /// `put_revisions` swallows Corrupt.
    AcceptCorrupt,
    /// Conflict errors lose their `current_rev`.
    ForgetCurrentRev,
    /// Reads trim string values.
    TrimStrings,
    /// Page limits are clamped instead of refused.
    ClampLimits,
    /// TooLarge is reported as InvalidInput.
    TooLargeIsInvalid,
    /// Writes that store nothing (retries, no-ops) are reported as conflicts.
    RetriesConflict,
    /// `list_records` includes deleted records.
    ListDeleted,
    /// `revs_diff` says nothing is missing.
    NothingMissing,
    /// `get_revisions` sends no ancestry.
    NoAncestry,
    /// Generated ids are UUID v4.
    UuidV4Ids,
    /// `list_tables` is not sorted by name.
    UnsortedTables,
}

/// A database with one injected bug.
struct Mutant {
    inner: Arc<dyn Database>,
    mutation: Mutation,
}

impl Mutant {
    fn is(&self, m: Mutation) -> bool {
        self.mutation == m
    }

    fn fix_error<T>(&self, result: Result<T>) -> Result<T> {
        result.map_err(|mut e| {
            if self.is(Mutation::ForgetCurrentRev) {
                e.current_rev = None;
            }
            if self.is(Mutation::TooLargeIsInvalid) && e.kind == ErrorKind::TooLarge {
                e.kind = ErrorKind::InvalidInput;
            }
            e
        })
    }

    fn fix_limit(&self, limit: usize) -> usize {
        if self.is(Mutation::ClampLimits) {
            limit.clamp(1, 10_000)
        } else {
            limit
        }
    }

    fn fix_record(&self, mut r: Record) -> Record {
        if self.is(Mutation::ForgetConflicts) && r.conflicts.is_some() {
            r.conflicts = Some(vec![]);
        }
        if self.is(Mutation::ForgetFieldConflicts) && r.field_conflicts.is_some() {
            r.field_conflicts = Some(vec![]);
        }
        if self.is(Mutation::TrimStrings) {
            for v in r.attributes.values_mut() {
                if let Value::String(s) = v {
                    *s = s.trim().to_owned();
                }
            }
        }
        r
    }

    async fn fix_write(&self, before: u64, result: Result<WriteResult>) -> Result<WriteResult> {
        if self.is(Mutation::RetriesConflict) && result.is_ok() && self.inner.info().await?.update_seq == before {
            return Err(outpost_api::Error::conflict("mutant: nothing written", None));
        }
        self.fix_error(result)
    }

    async fn seq(&self) -> Result<u64> {
        Ok(self.inner.info().await?.update_seq)
    }
}

#[async_trait]
impl TableReader for Mutant {
    async fn get_table(&self, name: &str) -> Result<TableDef> {
        self.inner.get_table(name).await
    }
    async fn list_tables(&self) -> Result<Vec<TableDef>> {
        let mut tables = self.inner.list_tables().await?;
        if self.is(Mutation::UnsortedTables) {
            tables.reverse();
        }
        Ok(tables)
    }
}

#[async_trait]
impl TableWriter for Mutant {
    async fn create_table(&self, table: NewTable) -> Result<TableDef> {
        self.fix_error(self.inner.create_table(table).await)
    }
    async fn update_table(&self, name: &str, update: TableUpdate) -> Result<TableDef> {
        self.fix_error(self.inner.update_table(name, update).await)
    }
    async fn delete_table(&self, name: &str) -> Result<()> {
        self.inner.delete_table(name).await
    }
}

#[async_trait]
impl RecordReader for Mutant {
    async fn get_record(&self, table: &str, id: &str, options: GetOptions) -> Result<Record> {
        self.inner.get_record(table, id, options).await.map(|r| self.fix_record(r))
    }
    async fn list_records(&self, table: &str, mut options: ListOptions) -> Result<RecordPage> {
        options.limit = self.fix_limit(options.limit);
        if self.is(Mutation::ListDeleted) {
            options.include_deleted = true;
        }
        self.inner.list_records(table, options).await
    }
}

#[async_trait]
impl RecordWriter for Mutant {
    async fn put_record(&self, table: &str, mut put: PutRecord) -> Result<WriteResult> {
        if self.is(Mutation::UuidV4Ids) && put.id.is_none() {
            put.id = Some(Uuid::new_v4().to_string());
        }
        let before = self.seq().await?;
        let result = self.inner.put_record(table, put).await;
        self.fix_write(before, result).await
    }
    async fn delete_record(&self, table: &str, id: &str, rev: Option<outpost_api::RevId>) -> Result<WriteResult> {
        let before = self.seq().await?;
        let result = self.inner.delete_record(table, id, rev).await;
        self.fix_write(before, result).await
    }
    async fn write_batch(&self, ops: Vec<WriteOp>) -> Result<BatchResult> {
        let results = self.fix_error(self.inner.write_batch(ops).await)?;
        Ok(results.into_iter().map(|r| self.fix_error(r)).collect())
    }
}

#[async_trait]
impl ChangeReader for Mutant {
    async fn changes(&self, mut request: ChangesRequest) -> Result<ChangesPage> {
        request.limit = self.fix_limit(request.limit);
        if self.is(Mutation::IgnoreTableFilter) {
            request.tables = None;
        }
        let mut page = self.inner.changes(request).await?;
        if self.is(Mutation::RepeatLastChange) {
            if let Some(last) = page.changes.last().cloned() {
                page.changes.push(last);
            }
        }
        Ok(page)
    }
    async fn wait_for_changes(&self, since: u64, timeout: Duration) -> Result<u64> {
        self.inner.wait_for_changes(since, timeout).await
    }
}

#[async_trait]
impl LocalDocs for Mutant {
    async fn get_local(&self, table: &str, id: &str) -> Result<LocalDoc> {
        self.inner.get_local(table, id).await
    }
    async fn put_local(
        &self,
        table: &str,
        id: &str,
        rev: Option<u64>,
        body: Option<serde_json::Map<String, serde_json::Value>>,
    ) -> Result<u64> {
        self.inner.put_local(table, id, rev, body).await
    }
}

#[async_trait]
impl Maintenance for Mutant {
    async fn compact(&self, request: CompactRequest) -> Result<CompactReport> {
        self.inner.compact(request).await
    }
}

#[async_trait]
impl InfoReader for Mutant {
    async fn info(&self) -> Result<DbInfo> {
        let mut info = self.inner.info().await?;
        if self.is(Mutation::SkewUpdateSeq) && info.update_seq > 2 {
            info.update_seq += 1;
        }
        Ok(info)
    }
}

#[async_trait]
impl ReplicaSource for Mutant {
    async fn get_revisions(&self, wanted: Vec<RecordRevs>) -> Result<Vec<RevisionData>> {
        let mut revisions = self.inner.get_revisions(wanted).await?;
        if self.is(Mutation::NoAncestry) {
            revisions.iter_mut().for_each(|r| r.ancestry.clear());
        }
        Ok(revisions)
    }
    async fn chain_hash_at(&self, seq: u64) -> Result<ChainHash> {
        if self.is(Mutation::ChainOffByOne) && seq > 0 {
            // Keep NotFound beyond update_seq; answer the previous hash otherwise.
            self.inner.chain_hash_at(seq).await?;
            return self.inner.chain_hash_at(seq - 1).await;
        }
        self.inner.chain_hash_at(seq).await
    }
    async fn knowledge(&self, upto: Option<u64>) -> Result<Vec<KnowledgeRow>> {
        self.inner.knowledge(upto).await
    }
    async fn events(&self, after: u64, limit: usize) -> Result<Vec<RevisionEvent>> {
        self.inner.events(after, limit).await
    }
}

#[async_trait]
impl ReplicaTarget for Mutant {
    async fn revs_diff(&self, have: Vec<RecordRevs>) -> Result<Vec<RecordRevs>> {
        if self.is(Mutation::NothingMissing) {
            return Ok(vec![]);
        }
        self.inner.revs_diff(have).await
    }
    async fn put_revisions(
        &self,
        revisions: Vec<RevisionData>,
        resume: Option<ResumePoint>,
    ) -> Result<PutRevisionsResult> {
        match self.inner.put_revisions(revisions, resume).await {
            Err(e) if self.is(Mutation::AcceptCorrupt) && e.kind == ErrorKind::Corrupt => {
                Ok(PutRevisionsResult { written: 0, update_seq: self.seq().await? })
            }
            other => self.fix_error(other),
        }
    }
    async fn put_revisions_with_knowledge(
        &self,
        revisions: Vec<RevisionData>,
        knowledge: KnowledgeUpdate,
    ) -> Result<PutRevisionsResult> {
        self.fix_error(self.inner.put_revisions_with_knowledge(revisions, knowledge).await)
    }
    async fn record_knowledge(&self, update: KnowledgeUpdate) -> Result<()> {
        self.inner.record_knowledge(update).await
    }
    async fn resume_point(&self, source: Uuid) -> Result<Option<ResumePoint>> {
        self.inner.resume_point(source).await
    }
}

/// In-memory databases wrapped in a [`Mutant`]: the memory configuration alone catches every mutation.
struct MutantFactory {
    inner: MemoryFactory,
    mutation: Mutation,
}

#[async_trait]
impl Factory for MutantFactory {
    async fn fresh(&self) -> Arc<dyn Database> {
        Arc::new(Mutant { inner: self.inner.fresh().await, mutation: self.mutation })
    }
}

/// Silence the expected panics of suite tests run on worker threads; keep the test threads' own.
fn quiet_workers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !std::thread::current().name().is_some_and(|n| n.starts_with("tokio-")) {
                default(info);
            }
        }));
    });
}

/// Run each named suite test against `$mutation`; each must panic (or, for `Mutation::None`, pass).
macro_rules! check {
    ($mutation:expr, [$($module:ident :: $test:ident),+ $(,)?]) => {{
        quiet_workers();
        let mutation: Mutation = $mutation;
        $(
            let handle = tokio::spawn(async move {
                let factory = MutantFactory { inner: MemoryFactory::new(), mutation };
                outpost_tests::suite::$module::$test(&factory).await;
            });
            let panicked = handle.await.is_err_and(|e| e.is_panic());
            if mutation == Mutation::None {
                assert!(!panicked, "{} fails on an unbroken database", stringify!($test));
            } else {
                assert!(panicked, "{} does not catch {mutation:?}", stringify!($test));
            }
        )+
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control() {
    check!(
        Mutation::None,
        [
            replication::keep_conflicts_keeps_conflicts_until_resolved,
            feed::seqs_grow_by_one_per_revision_event,
            feed::chain_hashes_commit_to_the_order_of_history,
            revisions::a_body_that_does_not_hash_to_its_rev_is_corrupt,
            writes::retrying_a_write_returns_the_same_rev,
            bad_input::bodies_over_the_limit_are_too_large,
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_are_checked() {
    check!(
        Mutation::ForgetConflicts,
        [
            replication::winner_and_conflicts_do_not_depend_on_arrival_order,
            replication::merge_fields_merges_disjoint_edits,
            replication::merge_fields_reports_overlapping_edits,
            replication::keep_conflicts_keeps_conflicts_until_resolved,
        ]
    );
    check!(Mutation::ForgetFieldConflicts, [replication::merge_fields_reports_overlapping_edits]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seqs_and_chain_hashes_are_checked() {
    check!(
        Mutation::SkewUpdateSeq,
        [feed::seqs_grow_by_one_per_revision_event, revisions::replaying_put_revisions_is_a_no_op,]
    );
    check!(
        Mutation::ChainOffByOne,
        [feed::chain_hashes_follow_the_spec_formula, feed::chain_hashes_commit_to_the_order_of_history,]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_changes_feed_is_checked() {
    check!(
        Mutation::RepeatLastChange,
        [
            feed::a_record_updated_twice_appears_once_at_its_latest_seq,
            feed::changes_page_by_limit_and_report_pending,
            batch::a_batch_takes_contiguous_seqs,
        ]
    );
    check!(Mutation::IgnoreTableFilter, [feed::a_table_filter_passes_the_table_and_its_definition]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_rules_are_checked() {
    check!(Mutation::AcceptCorrupt, [revisions::a_body_that_does_not_hash_to_its_rev_is_corrupt]);
    check!(
        Mutation::NothingMissing,
        [
            replication::winner_and_conflicts_do_not_depend_on_arrival_order,
            revisions::ancestry_is_stored_as_stubs,
            tables::table_definitions_replicate_as_records,
        ]
    );
    check!(
        Mutation::NoAncestry,
        [values::stored_revisions_match_the_hash_vectors, revisions::ancestry_is_stored_as_stubs,]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_write_rules_are_checked() {
    check!(
        Mutation::ForgetCurrentRev,
        [
            writes::a_stale_rev_conflicts_with_the_winner,
            writes::creating_an_existing_record_conflicts,
            batch::a_batch_reports_a_result_per_operation,
        ]
    );
    check!(
        Mutation::RetriesConflict,
        [
            writes::retrying_a_write_returns_the_same_rev,
            writes::a_write_that_changes_nothing_returns_the_parent,
            feed::seqs_grow_by_one_per_revision_event,
        ]
    );
    check!(Mutation::ListDeleted, [writes::a_deleted_record_is_not_found]);
    check!(Mutation::UuidV4Ids, [writes::a_generated_id_is_a_uuid_v7]);
    check!(Mutation::TrimStrings, [values::every_value_type_round_trips]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_tables_are_checked() {
    check!(Mutation::ClampLimits, [bad_input::page_limits_outside_the_range_are_invalid]);
    check!(
        Mutation::TooLargeIsInvalid,
        [bad_input::bodies_over_the_limit_are_too_large, bad_input::batches_over_the_limit_are_too_large,]
    );
    check!(Mutation::UnsortedTables, [tables::tables_can_be_created_read_listed_updated_and_deleted]);
}
