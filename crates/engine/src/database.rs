//! [`Engine`]: the `Database` implementation, generic over a [`Storage`]. Every api call is decided
//! here (validation, the write rules, winners, seqs and chain hashes, knowledge rules) and stored
//! through the storage trait.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use outpost_api::{
    names, Attributes, BatchResult, ChainHash, ChangeReader, ChangesPage, ChangesRequest, DbInfo, Epoch, Error,
    GetOptions, InfoReader, KnowledgeRow, KnowledgeUpdate, Limits, ListOptions, NewTable, PutRecord,
    PutRevisionsResult, ReconcilePolicy, Record, RecordPage, RecordReader, RecordRevs, RecordWriter, ReplicaSource,
    ReplicaTarget, Result, ResumePoint, RevId, RevisionData, RevisionEvent, TableDef, TableReader, TableUpdate,
    TableWriter, Timestamp, Uuid, WriteOp, WriteOpKind, WriteResult, PENDING_EXACT_UP_TO,
};
use tokio::sync::watch;

use crate::hash::genesis_chain;
use crate::plan::{LocalWrite, Planner};
use crate::reconcile::reconcile;
use crate::storage::{blocking, Head, RecordKey, Storage, StoredState, WriteSet, WriteTxn};
use crate::tree::RevisionTree;

/// Largest page a read may ask for (records, changes, revisions).
pub const MAX_PAGE: usize = 10_000;

/// A database: the engine's semantics over one storage.
pub struct Engine<S: Storage> {
    storage: S,
    limits: Limits,
    /// The latest committed update_seq, for long-polls (shared with the task that commits).
    committed: std::sync::Arc<watch::Sender<u64>>,
    /// Set by [`Engine::close`] when the database is deleted.
    closed: watch::Sender<bool>,
}

fn parse_body(json: &str) -> Result<Attributes> {
    serde_json::from_str(json).map_err(|e| Error::corrupt(format!("a stored body does not parse: {e}")))
}

fn table_def_of(name: &str, state: Option<&StoredState>) -> Result<TableDef> {
    match state {
        Some(s) if !s.deleted => TableDef::from_record(name, s.rev, &parse_body(&s.body)?),
        _ => Err(Error::not_found(format!("table {name:?} does not exist"))),
    }
}

fn check_page(limit: usize) -> Result<usize> {
    if limit == 0 || limit > MAX_PAGE {
        return Err(Error::invalid(format!("limit must be between 1 and {MAX_PAGE}, not {limit}")));
    }
    Ok(limit)
}

/// The rows a knowledge update records: the direct row about the source, and the source's own rows
/// with `via` set (local seqs are set when stored).
fn knowledge_rows(update: KnowledgeUpdate) -> Result<Vec<KnowledgeRow>> {
    let direct = KnowledgeRow {
        peer: update.source,
        peer_seq: update.source_seq,
        peer_chain: update.source_chain,
        local_seq: 0,
        via: None,
    };
    let mut rows = vec![direct];
    for row in update.imported {
        // Only knowledge the source held at the drained point may travel (SPEC §8).
        if row.local_seq > update.source_seq {
            return Err(Error::invalid(format!(
                "imported knowledge about {} holds from the source's seq {}, after the drained seq {}",
                row.peer, row.local_seq, update.source_seq
            )));
        }
        rows.push(KnowledgeRow { via: Some(update.source), ..row });
    }
    Ok(rows)
}

/// Turn an operation into a validated local write (before any storage access).
fn prepare(limits: &Limits, op: WriteOp) -> Result<LocalWrite> {
    names::validate_table_name(&op.table)?;
    let id = match (op.id, op.op) {
        (Some(id), _) => id,
        (None, WriteOpKind::Put) => Uuid::now_v7().to_string(),
        (None, WriteOpKind::Delete) => return Err(Error::invalid("a delete names the record id")),
    };
    // The configured id limit binds new records; ids already stored (perhaps replicated from a peer
    // with a larger limit) stay reachable up to the protocol's maximum.
    let creating = op.op == WriteOpKind::Put && op.rev.is_none();
    names::validate_record_id(&id, if creating { limits.max_id_bytes } else { names::MAX_ID_BYTES })?;
    let deleted = op.op == WriteOpKind::Delete;
    if deleted && (!op.attributes.is_empty() || !op.resolves.is_empty()) {
        return Err(Error::invalid("a delete carries no attributes and resolves nothing"));
    }
    for name in op.attributes.keys() {
        names::validate_attribute_name(name)?;
    }
    crate::input::body(&op.attributes, limits)?;
    Ok(LocalWrite { table: op.table, id, parent: op.rev, deleted, attributes: op.attributes, resolves: op.resolves })
}

impl<S: Storage> Engine<S> {
    /// A database over `storage`, checking input against `limits`.
    pub async fn new(storage: S, limits: Limits) -> Result<Self> {
        let head = storage.head().await?;
        let committed = std::sync::Arc::new(watch::channel(head.update_seq).0);
        let (closed, _) = watch::channel(false);
        Ok(Engine { storage, limits, committed, closed })
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
        crate::input::body(attributes, &self.limits)
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

    /// Turn an operation into a validated local write (before any storage access).
    fn prepare(&self, op: WriteOp) -> Result<LocalWrite> {
        prepare(&self.limits, op)
    }

    /// Run local writes in one transaction; per-operation results in order.
    async fn write_local(&self, ops: Vec<Result<LocalWrite>>, check_fields: bool) -> Result<BatchResult> {
        let mut txn = self.begin().await?;
        let head = txn.head().await?;
        let mut defs: HashMap<String, Result<TableDef>> = HashMap::new();
        let mut keys: Vec<RecordKey> = Vec::new();
        let mut seen = HashSet::new();
        for w in ops.iter().flatten() {
            if w.table != names::TABLES_TABLE && !defs.contains_key(&w.table) {
                let state = txn.load_state(names::TABLES_TABLE, &w.table).await?;
                defs.insert(w.table.clone(), table_def_of(&w.table, state.as_ref()));
            }
            if seen.insert((w.table.as_str(), w.id.as_str())) {
                keys.push((w.table.clone(), w.id.clone()));
            }
        }
        let trees = txn.load_trees(&keys).await?;
        // Planning encodes and hashes every body: CPU work, kept off the async workers.
        let (writes, results) = blocking(move || {
            let mut planner = Planner::new(&head, trees);
            let mut results = Vec::with_capacity(ops.len());
            for w in ops {
                let outcome = w.and_then(|w| {
                    let policy = if w.table == names::TABLES_TABLE {
                        ReconcilePolicy::KeepConflicts
                    } else {
                        let def = defs[&w.table].as_ref().map_err(Clone::clone)?;
                        if check_fields && !w.deleted {
                            def.check_fields(&w.attributes)?;
                        }
                        def.policy
                    };
                    let rev = planner.local_write(&w, policy)?;
                    Ok(WriteResult { table: w.table, id: w.id, rev })
                });
                results.push(outcome);
            }
            Ok::<_, Error>((planner.finish()?, results))
        })
        .await??;
        self.commit(txn, writes).await?;
        Ok(results)
    }

    async fn write_one(&self, w: Result<LocalWrite>) -> Result<WriteResult> {
        self.write_local(vec![w], true).await?.pop().expect("one result per operation")
    }

    async fn write_table(&self, name: &str, parent: Option<RevId>, deleted: bool, body: Attributes) -> Result<RevId> {
        // A definition travels as a `_tables` record: the record body limit binds it too (every peer
        // would refuse a larger one).
        self.check_body(&body).map_err(|e| e.context(format!("the definition of table {name:?}")))?;
        let w = LocalWrite {
            table: names::TABLES_TABLE.into(),
            id: name.into(),
            parent,
            deleted,
            attributes: body,
            resolves: vec![],
        };
        Ok(self.write_one(Ok(w)).await?.rev)
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

    /// Store replicated revisions and, atomically with them, a resume point or what a batch proves
    /// (SPEC §7, §8): the write behind `put_revisions`, `put_revisions_with_knowledge` and
    /// `record_knowledge`.
    async fn store_revisions(
        &self,
        revisions: Vec<RevisionData>,
        resume: Option<ResumePoint>,
        knowledge: Option<KnowledgeUpdate>,
    ) -> Result<PutRevisionsResult> {
        if revisions.len() > self.limits.max_bulk_ops {
            return Err(Error::too_large(format!(
                "{} revisions in one batch; the limit is {}",
                revisions.len(),
                self.limits.max_bulk_ops
            )));
        }
        // Validation encodes every body to measure it: off the async workers, like the planning below.
        let limits = self.limits;
        let revisions: Vec<RevisionData> = blocking(move || {
            revisions.into_iter().map(|r| crate::input::replicated(r, &limits)).collect::<Result<_>>()
        })
        .await??;
        if let Some(point) = &resume {
            crate::input::resume_point(point)?;
        }
        if let Some(update) = &knowledge {
            crate::input::knowledge(update)?;
        }
        let mut rows = match knowledge {
            Some(update) => knowledge_rows(update)?,
            None => Vec::new(),
        };
        // Chains at committed seqs never change, so the fork check may read before the write begins.
        // Without knowledge (every put_revisions of a pass) there is nothing to check or read.
        let fork = if rows.is_empty() { None } else { self.fork_point(&rows).await? };
        let mut txn = self.begin().await?;
        let head = txn.head().await?;
        let mut keys: Vec<RecordKey> = revisions.iter().map(|r| (r.table.clone(), r.id.clone())).collect();
        keys.sort();
        keys.dedup();
        let trees = if keys.is_empty() { HashMap::new() } else { txn.load_trees(&keys).await? };
        // Planning verifies the hash of every body.
        let planned = head.clone();
        let (mut writes, written) = blocking(move || {
            let mut planner = Planner::new(&planned, trees);
            let mut written = 0;
            for r in &revisions {
                written += planner.replicated(r)? as u64;
            }
            Ok::<_, Error>((planner.finish()?, written))
        })
        .await??;
        writes.resume = resume;
        let update_seq = writes.head.map_or(head.update_seq, |h| h.0);
        let own: HashSet<Uuid> = head.epochs.iter().map(|e| e.uuid).collect();
        rows.retain(|r| !own.contains(&r.peer));
        for row in &mut rows {
            // The knowledge holds from the state after this write on.
            row.local_seq = update_seq;
        }
        writes.knowledge = rows;
        // A fork of the uuid in force when checked; a new epoch begun since already separates the copies.
        writes.epoch = match fork {
            Some((uuid, start_seq)) if head.uuid() == uuid => Some(Epoch { uuid: Uuid::new_v4(), start_seq }),
            _ => None,
        };
        if let Some(e) = &writes.epoch {
            tracing::warn!(db = self.storage.name(), new_uuid = %e.uuid, start_seq = e.start_seq,
                "a peer's knowledge shows this database's history forked under its uuid: a new epoch begins");
        }
        self.commit(txn, writes).await?;
        Ok(PutRevisionsResult { written, update_seq })
    }

    /// SPEC §6: whether knowledge rows about this database's current uuid contradict its own chain,
    /// which means another copy of this database (a copied file that diverged) wrote under the same
    /// uuid. Returns the uuid checked and the seq a new epoch must start at: the seq after the highest
    /// one where a presented row matches this database's chain (bounded below by the current epoch's
    /// start, which any copy under this uuid shares), so no peer can mistake the fork's seqs for ours.
    async fn fork_point(&self, rows: &[KnowledgeRow]) -> Result<Option<(Uuid, u64)>> {
        let head = self.store()?.head().await?;
        let current = *head.epochs.last().expect("a database has at least one epoch");
        let mut agreeing = Vec::new();
        let mut first_contradiction = None::<u64>;
        for row in rows.iter().filter(|r| r.peer == current.uuid) {
            let agrees = row.peer_seq <= head.update_seq && self.chain_hash_at(row.peer_seq).await? == row.peer_chain;
            if agrees {
                agreeing.push(row.peer_seq);
            } else {
                first_contradiction = Some(first_contradiction.map_or(row.peer_seq, |s| s.min(row.peer_seq)));
            }
        }
        let Some(contradiction) = first_contradiction else { return Ok(None) };
        let agreed = agreeing.into_iter().filter(|s| *s < contradiction).max().unwrap_or(0);
        let start_seq = (agreed + 1).max(current.start_seq).min(head.update_seq + 1);
        Ok(Some((current.uuid, start_seq)))
    }

    /// Verify every revision event: seqs gap-free from 1, each body hashing to its rev id (where the
    /// body and parent are stored), the chain folding to the head's hash.
    pub async fn check(&self) -> Result<CheckReport> {
        let head = self.store()?.head().await?;
        let mut report = CheckReport { update_seq: head.update_seq, ..CheckReport::default() };
        let mut chain = genesis_chain(head.epochs[0].uuid);
        let mut expect = 1;
        loop {
            let events = self.store()?.events(expect - 1, 1000).await?;
            if events.is_empty() {
                break;
            }
            for e in events {
                let r = &e.revision;
                if e.seq != expect {
                    report.problems.push(format!("seq {expect} is missing (next event is {})", e.seq));
                }
                expect = e.seq + 1;
                chain = crate::hash::next_chain(&chain, e.seq, &r.table, &r.id, &r.rev, r.deleted);
                if chain != e.chain {
                    report.problems.push(format!("chain hash at seq {} does not match its events", e.seq));
                    chain = e.chain;
                }
                report.events += 1;
                if let Some(body) = &r.body {
                    match parse_body(body) {
                        Ok(body) => {
                            let actual = crate::hash::revision_id(&r.table, &r.id, r.parent.as_ref(), r.deleted, &body);
                            if r.parent.is_some() || r.rev.generation == 1 {
                                report.rehashed += 1;
                                if actual != r.rev {
                                    report.problems.push(format!(
                                        "revision {} of {}/{} (seq {}) does not match its body",
                                        r.rev, r.table, r.id, e.seq
                                    ));
                                }
                            }
                        }
                        Err(err) => report.problems.push(format!("seq {}: {}", e.seq, err.message)),
                    }
                }
            }
        }
        self.check_states(&mut report).await?;
        if expect - 1 != head.update_seq {
            report.problems.push(format!("events end at seq {} but update_seq is {}", expect - 1, head.update_seq));
        }
        if chain != head.chain {
            report.problems.push("the head's chain hash does not match the events".into());
        }
        Ok(report)
    }
}

impl<S: Storage> Engine<S> {
    /// Part of `check`: every stored state must equal the one its revision tree gives now.
    async fn check_states(&self, report: &mut CheckReport) -> Result<()> {
        let mut since = 0;
        loop {
            let read = self.store()?.changes(since, 1000, None, 1).await?;
            let Some(last) = read.changes.last() else { return Ok(()) };
            since = last.seq;
            let keys: Vec<RecordKey> = read.changes.iter().map(|c| (c.table.clone(), c.id.clone())).collect();
            let trees = self.store()?.load_trees(&keys).await?;
            for key in keys {
                let Some(stored) = self.store()?.load_state(&key.0, &key.1).await? else { continue };
                report.records += 1;
                let expected =
                    trees.get(&key).filter(|t| !t.is_empty()).map(|t| reconcile(t, ReconcilePolicy::KeepConflicts));
                let matches = match expected {
                    Some(Ok(r)) => {
                        r.winner == stored.rev
                            && r.deleted == stored.deleted
                            && r.leaves == stored.leaves
                            && r.conflicts == stored.conflicts
                            && parse_body(&stored.body).is_ok_and(|b| b == r.body)
                    }
                    _ => false,
                };
                if !matches {
                    report
                        .problems
                        .push(format!("record {}/{}: the stored state does not match its revision tree", key.0, key.1));
                }
            }
        }
    }
}

/// What `check` found.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct CheckReport {
    /// The database's update_seq.
    pub update_seq: u64,
    /// Revision events read.
    pub events: u64,
    /// Revisions whose body was re-hashed.
    pub rehashed: u64,
    /// Records whose reconciled state was recomputed and compared.
    pub records: u64,
    /// Every problem found; empty for a sound database.
    pub problems: Vec<String>,
}

#[async_trait]
impl<S: Storage> TableReader for Engine<S> {
    async fn get_table(&self, name: &str) -> Result<TableDef> {
        names::validate_table_name(name)?;
        let state = self.store()?.load_state(names::TABLES_TABLE, name).await?;
        table_def_of(name, state.as_ref())
    }

    async fn list_tables(&self) -> Result<Vec<TableDef>> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.store()?.list_states(names::TABLES_TABLE, after.as_deref(), 1000, false).await?;
            let done = page.len() < 1000;
            for s in &page {
                out.push(table_def_of(&s.id, Some(s))?);
            }
            after = page.last().map(|s| s.id.clone());
            if done {
                return Ok(out);
            }
        }
    }
}

#[async_trait]
impl<S: Storage> TableWriter for Engine<S> {
    async fn create_table(&self, table: NewTable) -> Result<TableDef> {
        names::validate_table_name(&table.name)?;
        for name in table.fields.keys().chain(table.metadata.keys()) {
            names::validate_attribute_name(name)?;
        }
        self.check_body(&table.metadata)?;
        if let Some(state) = self.store()?.load_state(names::TABLES_TABLE, &table.name).await? {
            if !state.deleted {
                return Err(Error::already_exists(format!("table {:?} exists", table.name)));
            }
        }
        let def = TableDef {
            name: table.name.clone(),
            rev: RevId::new(1, [0; 16]),
            description: table.description,
            created_at: Timestamp::now(),
            created_by: table.created_by,
            policy: table.policy,
            fields: table.fields,
            metadata: table.metadata,
        };
        // A concurrent create of the same name wins the race inside the transaction: that is AlreadyExists.
        self.write_table(&table.name, None, false, def.to_attributes()).await.map_err(|e| match e.kind {
            outpost_api::ErrorKind::Conflict => Error::already_exists(format!("table {:?} exists", table.name)),
            _ => e,
        })?;
        self.get_table(&table.name).await
    }

    async fn update_table(&self, name: &str, update: TableUpdate) -> Result<TableDef> {
        let mut def = self.get_table(name).await?;
        let parent = update.rev.unwrap_or(def.rev);
        if let Some(d) = update.description {
            def.description = d;
        }
        if let Some(p) = update.policy {
            def.policy = p;
        }
        if let Some(f) = update.fields {
            for name in f.keys() {
                names::validate_attribute_name(name)?;
            }
            def.fields = f;
        }
        if let Some(m) = update.metadata {
            self.check_body(&m)?;
            def.metadata = m;
        }
        self.write_table(name, Some(parent), false, def.to_attributes()).await?;
        self.get_table(name).await
    }

    async fn delete_table(&self, name: &str) -> Result<()> {
        let def = self.get_table(name).await?;
        self.write_table(name, Some(def.rev), true, Attributes::new()).await?;
        Ok(())
    }
}

#[async_trait]
impl<S: Storage> RecordReader for Engine<S> {
    async fn get_record(&self, table: &str, id: &str, options: GetOptions) -> Result<Record> {
        let def = self.get_table(table).await?;
        names::validate_record_id(id, names::MAX_ID_BYTES)?;
        let missing = || Error::not_found(format!("record {table}/{id} does not exist"));
        let state = self.store()?.load_state(table, id).await?.ok_or_else(missing)?;
        let merges = merges_on_read(&def, &state);
        let tree = if options.rev.is_some() || options.revs || merges {
            let key = (table.to_owned(), id.to_owned());
            self.store()?.load_trees(std::slice::from_ref(&key)).await?.remove(&key).unwrap_or_default()
        } else {
            RevisionTree::new()
        };
        let mut record = match options.rev {
            Some(rev) => {
                let node =
                    tree.get(&rev).ok_or_else(|| Error::not_found(format!("{table}/{id} has no revision {rev}")))?;
                let body = node.body.clone().ok_or_else(|| {
                    Error::not_found(format!("the body of {table}/{id} revision {rev} is not stored"))
                })?;
                Record {
                    table: table.into(),
                    id: id.into(),
                    rev,
                    deleted: node.deleted,
                    attributes: body,
                    conflicts: None,
                    field_conflicts: None,
                    revisions: None,
                }
            }
            None if state.deleted => return Err(Error::not_found(format!("record {table}/{id} was deleted"))),
            None => record_of(&def, state.clone(), merges.then_some(&tree))?,
        };
        if options.conflicts {
            record.conflicts = Some(state.conflicts.clone());
            if record.field_conflicts.is_none() {
                record.field_conflicts = Some(vec![]);
            }
        } else {
            record.field_conflicts = None;
        }
        if options.revs {
            let mut revs = vec![record.rev];
            revs.extend(tree.ancestry(&record.rev));
            record.revisions = Some(revs);
        }
        Ok(record)
    }

    async fn list_records(&self, table: &str, options: ListOptions) -> Result<RecordPage> {
        let def = self.get_table(table).await?;
        let limit = check_page(options.limit)?;
        let mut states =
            self.store()?.list_states(table, options.after.as_deref(), limit + 1, options.include_deleted).await?;
        let more = states.len() > limit;
        states.truncate(limit);
        let next_after = if more { states.last().map(|s| s.id.clone()) } else { None };
        let merge_keys: Vec<RecordKey> =
            states.iter().filter(|s| merges_on_read(&def, s)).map(|s| (s.table.clone(), s.id.clone())).collect();
        let trees = if merge_keys.is_empty() { HashMap::new() } else { self.store()?.load_trees(&merge_keys).await? };
        let mut records = Vec::with_capacity(states.len());
        for s in states {
            let tree = trees.get(&(s.table.clone(), s.id.clone()));
            let mut record = record_of(&def, s, tree)?;
            record.field_conflicts = None;
            records.push(record);
        }
        Ok(RecordPage { records, next_after })
    }
}

/// Whether a record's read needs its tree: a `merge-fields` table merges live conflicts on read.
fn merges_on_read(def: &TableDef, state: &StoredState) -> bool {
    def.policy == ReconcilePolicy::MergeFields && !state.deleted && !state.conflicts.is_empty()
}

/// A record as read from its stored state, merged under `merge-fields` when its tree is given.
fn record_of(def: &TableDef, state: StoredState, tree: Option<&RevisionTree>) -> Result<Record> {
    let (attributes, field_conflicts) = match tree {
        Some(tree) if merges_on_read(def, &state) => {
            let r = reconcile(tree, def.policy)?;
            (r.body, r.field_conflicts)
        }
        _ => (parse_body(&state.body)?, vec![]),
    };
    Ok(Record {
        table: state.table,
        id: state.id,
        rev: state.rev,
        deleted: state.deleted,
        attributes,
        conflicts: None,
        field_conflicts: Some(field_conflicts),
        revisions: None,
    })
}

#[async_trait]
impl<S: Storage> RecordWriter for Engine<S> {
    async fn put_record(&self, table: &str, put: PutRecord) -> Result<WriteResult> {
        let op = WriteOp::put(table, put);
        self.write_one(self.prepare(op)).await
    }

    async fn delete_record(&self, table: &str, id: &str, rev: Option<RevId>) -> Result<WriteResult> {
        self.write_one(self.prepare(WriteOp::delete(table, id, rev))).await
    }

    async fn write_batch(&self, ops: Vec<WriteOp>) -> Result<BatchResult> {
        if ops.len() > self.limits.max_bulk_ops {
            return Err(Error::too_large(format!(
                "{} operations in one batch; the limit is {}",
                ops.len(),
                self.limits.max_bulk_ops
            )));
        }
        let limits = self.limits;
        let prepared = blocking(move || ops.into_iter().map(|op| prepare(&limits, op)).collect()).await?;
        self.write_local(prepared, true).await
    }
}

#[async_trait]
impl<S: Storage> ChangeReader for Engine<S> {
    async fn changes(&self, request: ChangesRequest) -> Result<ChangesPage> {
        let limit = check_page(request.limit)?;
        crate::input::seq(request.since, "since")?;
        let tables = crate::input::table_filter(request.tables, &self.limits)?;
        let read = self.store()?.changes(request.since, limit, tables.as_deref(), PENDING_EXACT_UP_TO).await?;
        // Drained, the reader has seen everything up to update_seq (the knowledge rule of §8 relies on it).
        let last_seq = match (read.pending, read.changes.last()) {
            (0, _) => read.update_seq.max(request.since),
            (_, Some(last)) => last.seq,
            (_, None) => request.since,
        };
        let last_chain = Some(self.chain_hash_at(last_seq).await?);
        Ok(ChangesPage { changes: read.changes, last_seq, pending: read.pending, last_chain })
    }

    async fn wait_for_changes(&self, since: u64, timeout: Duration) -> Result<u64> {
        crate::input::seq(since, "since")?;
        // Subscribe before reading the head, so that no commit falls between the two.
        let mut rx = self.committed.subscribe();
        let external = self.storage.external_commits();
        let current = self.store()?.head().await?.update_seq;
        if current > since {
            return Ok(current);
        }
        let ours = async { rx.wait_for(|s| *s > since).await.ok().map(|s| *s) };
        // Closed (the database deleted): wake, so that the head read below answers NotFound.
        let mut closed = self.closed.subscribe();
        let deleted = async {
            let _ = closed.wait_for(|c| *c).await;
            None
        };
        // Commits by other writers of the same storage only wake the wait: the head read below is the
        // answer. A closed channel never wakes.
        let theirs = async {
            if let Some(mut ext) = external {
                if ext.wait_for(|s| *s > since).await.is_ok() {
                    return None;
                }
            }
            std::future::pending().await
        };
        let woken = tokio::time::timeout(timeout, async {
            tokio::select! {
                seq = ours => seq,
                seq = theirs => seq,
                seq = deleted => seq,
            }
        })
        .await
        .ok()
        .flatten();
        match woken {
            Some(seq) => Ok(seq),
            None => Ok(self.store()?.head().await?.update_seq),
        }
    }
}

#[async_trait]
impl<S: Storage> InfoReader for Engine<S> {
    async fn info(&self) -> Result<DbInfo> {
        let head: Head = self.store()?.head().await?;
        Ok(DbInfo {
            name: self.storage.name().to_owned(),
            uuid: head.uuid(),
            epochs: head.epochs.clone(),
            update_seq: head.update_seq,
            chain: head.chain,
            record_count: self.store()?.record_count().await?,
            backend: self.storage.backend().to_owned(),
        })
    }
}

#[async_trait]
impl<S: Storage> ReplicaSource for Engine<S> {
    async fn get_revisions(&self, wanted: Vec<RecordRevs>) -> Result<Vec<RevisionData>> {
        let wanted = crate::input::record_revs(wanted, &self.limits, "revs/get")?;
        let keys: Vec<RecordKey> = wanted.iter().map(|w| (w.table.clone(), w.id.clone())).collect();
        let mut trees = self.store()?.load_trees(&keys).await?;
        let mut out = Vec::new();
        for w in wanted {
            let Some(tree) = trees.get_mut(&(w.table.clone(), w.id.clone())) else { continue };
            // Each line of history is sent once: a revision's ancestry stops at the nearest older
            // revision also asked for (and sent with its body), which carries the rest. Asking for a
            // whole history of depth d costs O(d), not O(d²).
            let sent: HashSet<RevId> =
                w.revs.iter().copied().filter(|r| tree.get(r).is_some_and(|n| !n.is_stub())).collect();
            let mut done = HashSet::new();
            for rev in w.revs {
                if !done.insert(rev) {
                    continue;
                }
                let mut ancestry = tree.ancestry(&rev);
                let Some(node) = tree.get_mut(&rev) else { continue };
                if let Some(i) = ancestry.iter().position(|a| sent.contains(a)) {
                    ancestry.truncate(i + 1);
                }
                // Each revision is sent once, so its body moves out of the tree (ancestries only
                // need parents).
                out.push(RevisionData {
                    table: w.table.clone(),
                    id: w.id.clone(),
                    rev,
                    deleted: node.deleted,
                    attributes: node.body.take(),
                    ancestry,
                });
            }
        }
        Ok(out)
    }

    async fn chain_hash_at(&self, seq: u64) -> Result<ChainHash> {
        let head = self.store()?.head().await?;
        if seq == 0 {
            return Ok(genesis_chain(head.epochs[0].uuid));
        }
        if seq > head.update_seq {
            return Err(Error::not_found(format!("seq {seq} is beyond update_seq {}", head.update_seq)));
        }
        self.store()?
            .chain_at(seq)
            .await?
            .ok_or_else(|| Error::corrupt(format!("no chain hash is stored at seq {seq}")))
    }

    async fn knowledge(&self, upto: Option<u64>) -> Result<Vec<KnowledgeRow>> {
        upto.map(|s| crate::input::seq(s, "upto")).transpose()?;
        self.store()?.knowledge(upto).await
    }

    async fn events(&self, after: u64, limit: usize) -> Result<Vec<RevisionEvent>> {
        let limit = check_page(limit)?;
        crate::input::seq(after, "after")?;
        let events = self.store()?.events(after, limit).await?;
        // Only revisions with a parent can have stubs above them; their trees say which parents are stubs.
        let mut keys: Vec<RecordKey> = events
            .iter()
            .filter(|e| e.revision.parent.is_some())
            .map(|e| (e.revision.table.clone(), e.revision.id.clone()))
            .collect();
        keys.sort();
        keys.dedup();
        let trees = if keys.is_empty() { HashMap::new() } else { self.store()?.load_trees(&keys).await? };
        let mut out = Vec::with_capacity(events.len());
        for e in events {
            let r = e.revision;
            let tree = trees.get(&(r.table.clone(), r.id.clone()));
            // Through stubs only: a parent held with a body has an event of its own carrying its line.
            let mut ancestry = Vec::new();
            let mut next = r.parent;
            while let Some(p) = next.filter(|_| (ancestry.len() as u64) < r.rev.generation) {
                ancestry.push(p);
                next = tree.and_then(|t| t.get(&p)).filter(|n| n.is_stub()).and_then(|n| n.parent);
            }
            let attributes = r.body.as_deref().map(parse_body).transpose()?;
            out.push(RevisionEvent {
                seq: e.seq,
                chain: e.chain,
                revision: RevisionData {
                    table: r.table,
                    id: r.id,
                    rev: r.rev,
                    deleted: r.deleted,
                    attributes,
                    ancestry,
                },
            });
        }
        Ok(out)
    }
}

#[async_trait]
impl<S: Storage> ReplicaTarget for Engine<S> {
    async fn revs_diff(&self, have: Vec<RecordRevs>) -> Result<Vec<RecordRevs>> {
        let have = crate::input::record_revs(have, &self.limits, "revs-diff")?;
        let keys: Vec<RecordKey> = have.iter().map(|w| (w.table.clone(), w.id.clone())).collect();
        let held = self.store()?.held_revs(&keys).await?;
        let mut out = Vec::new();
        for h in have {
            let held = held.get(&(h.table.clone(), h.id.clone()));
            let missing: Vec<RevId> = h.revs.into_iter().filter(|r| !held.is_some_and(|t| t.contains(r))).collect();
            if !missing.is_empty() {
                out.push(RecordRevs { table: h.table, id: h.id, revs: missing });
            }
        }
        Ok(out)
    }

    async fn put_revisions(
        &self,
        revisions: Vec<RevisionData>,
        resume: Option<ResumePoint>,
    ) -> Result<PutRevisionsResult> {
        self.store_revisions(revisions, resume, None).await
    }

    async fn put_revisions_with_knowledge(
        &self,
        revisions: Vec<RevisionData>,
        knowledge: KnowledgeUpdate,
    ) -> Result<PutRevisionsResult> {
        self.store_revisions(revisions, None, Some(knowledge)).await
    }

    async fn record_knowledge(&self, update: KnowledgeUpdate) -> Result<()> {
        self.store_revisions(Vec::new(), None, Some(update)).await.map(|_| ())
    }

    async fn resume_point(&self, source: Uuid) -> Result<Option<ResumePoint>> {
        self.store()?.resume_point(source).await
    }
}
