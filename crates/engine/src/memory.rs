//! The in-memory reference backend (feature `memory`): the storage traits over ordered maps, with no
//! SQL and no decision of its own. The conformance suite runs on it as on SQLite and PostgreSQL, so a
//! rule that hid in a backend's SQL would show as a difference; and the engine's own tests run on it.
//!
//! It keeps what the SQL backends keep, with the same meaning: revisions with their events, states
//! by record and by seq, knowledge, resume points, epochs, the live-record count. A write transaction
//! holds the one lock until it commits; what it applies becomes visible at commit, all at once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;

use async_trait::async_trait;
use outpost_api::{
    names, ChainHash, Database, Databases, Digest, Error, KnowledgeRow, Limits, Result, ResumePoint, RevId, Uuid,
};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::storage::{
    stored, ChangesRead, FeedFilter, Genesis, Head, RecordKey, Storage, StoredEvent, StoredRevision, StoredState,
    WriteSet, WriteTxn,
};
use crate::tree::{RevisionNode, RevisionTree};
use crate::Engine;

/// A database in memory.
pub type MemoryDatabase = Engine<MemoryStorage>;

/// One revision as stored: what a `_revisions` row holds.
#[derive(Clone, Debug)]
struct Row {
    parent: Option<RevId>,
    deleted: bool,
    body: Option<String>,
    event: Option<(u64, ChainHash)>,
    foreign: Option<Digest>,
}

/// Everything one database holds.
#[derive(Clone, Debug)]
struct Data {
    head: Head,
    revisions: BTreeMap<RecordKey, BTreeMap<RevId, Row>>,
    /// Revision events by seq.
    events: BTreeMap<u64, (RecordKey, RevId)>,
    states: BTreeMap<RecordKey, StoredState>,
    /// States by their seq (the changes feed's index).
    by_seq: BTreeMap<u64, RecordKey>,
    knowledge: BTreeMap<(u64, Uuid, u64), KnowledgeRow>,
    resume: HashMap<Uuid, ResumePoint>,
    record_count: Option<u64>,
    /// Local documents by table and id: revision and body.
    local: BTreeMap<RecordKey, (u64, String)>,
    /// Events whose revision's body a later event replaced, by seq (`StoredRevision::replaces`).
    superseded: BTreeMap<u64, StoredEvent>,
}

impl Data {
    fn new(genesis: &Genesis) -> Self {
        Data {
            head: genesis.head.clone(),
            revisions: BTreeMap::new(),
            events: BTreeMap::new(),
            states: BTreeMap::new(),
            by_seq: BTreeMap::new(),
            knowledge: BTreeMap::new(),
            resume: HashMap::new(),
            record_count: None,
            local: BTreeMap::new(),
            superseded: BTreeMap::new(),
        }
    }

    /// A record's tree, each stored body made into a node's by `body`.
    fn tree_with<B>(&self, key: &RecordKey, body: impl Fn(&str, &RevId) -> Result<B>) -> Result<RevisionTree<B>> {
        let mut tree = RevisionTree::default();
        for (rev, row) in self.revisions.get(key).into_iter().flatten() {
            let body = row.body.as_deref().map(|b| body(b, rev)).transpose()?;
            tree.insert(
                *rev,
                RevisionNode {
                    parent: row.parent,
                    deleted: row.deleted,
                    body,
                    seq: row.event.map(|e| e.0),
                    foreign: row.foreign,
                },
            );
        }
        Ok(tree)
    }

    fn tree(&self, key: &RecordKey) -> Result<RevisionTree> {
        self.tree_with(key, |b, rev| stored::body(b, &key.0, &key.1, rev))
    }

    fn trees(&self, keys: &[RecordKey]) -> Result<HashMap<RecordKey, RevisionTree>> {
        keys.iter().map(|k| Ok((k.clone(), self.tree(k)?))).collect()
    }

    fn stored_trees(&self, keys: &[RecordKey]) -> Result<HashMap<RecordKey, RevisionTree<String>>> {
        keys.iter().map(|k| Ok((k.clone(), self.tree_with(k, |b, _| Ok(b.to_owned()))?))).collect()
    }

    /// Refuse what the SQL backends' unique indexes refuse (a seq taken by another revision or
    /// record, an epoch's uuid again), a live-record count below zero, and a live state whose
    /// winner's body is held nowhere: a reference backend shows an engine bug instead of storing it.
    fn check(&self, writes: &WriteSet) -> Result<()> {
        let refuse = |what: String| Err(Error::internal(format!("memory: {what}")));
        let mut seqs = HashSet::new();
        for r in &writes.revisions {
            let Some((seq, _)) = r.event else { continue };
            let taken =
                self.events.get(&seq).is_some_and(|(key, rev)| key.0 != r.table || key.1 != r.id || *rev != r.rev);
            if taken || !seqs.insert(seq) {
                return refuse(format!("event seq {seq} is taken (UNIQUE _revisions.seq)"));
            }
        }
        let mut state_seqs = HashSet::new();
        let bodies: HashSet<(&str, &str, RevId)> = writes
            .revisions
            .iter()
            .filter(|r| r.event.is_some() && r.body.is_some())
            .map(|r| (r.table.as_str(), r.id.as_str(), r.rev))
            .collect();
        let filled: HashSet<u64> = writes.fill_bodies.iter().map(|(seq, _)| *seq).collect();
        for state in &writes.states {
            let taken = self.by_seq.get(&state.seq).is_some_and(|key| key.0 != state.table || key.1 != state.id);
            if taken || !state_seqs.insert(state.seq) {
                return refuse(format!("state seq {} is taken (UNIQUE _records.seq)", state.seq));
            }
            // A live state's body is its winner's event's: in this write set, or stored.
            let key = (state.table.clone(), state.id.clone());
            let written = bodies.contains(&(state.table.as_str(), state.id.as_str(), state.rev));
            let held = self.revisions.get(&key).and_then(|rows| rows.get(&state.rev));
            // Held with its body, or a pending one whose body this write set fills in.
            let stored =
                held.is_some_and(|r| r.body.is_some() || r.event.is_some_and(|(seq, _)| filled.contains(&seq)));
            if !state.deleted && (!state.body.is_empty() || !(written || stored)) {
                return refuse(format!(
                    "the live state of {}/{} does not name its winner's body",
                    state.table, state.id
                ));
            }
        }
        if let Some(e) = &writes.epoch {
            if self.head.epochs.iter().any(|old| old.uuid == e.uuid) {
                return refuse(format!("epoch uuid {} again (UNIQUE _epochs.uuid)", e.uuid));
            }
        }
        let count = writes.record_count.or(self.record_count);
        if count.is_some_and(|n| n.checked_add_signed(writes.live_records).is_none()) {
            return refuse(format!("the live-record count would go below zero ({:+})", writes.live_records));
        }
        Ok(())
    }

    /// Store a write set as the SQL backends do, statement for statement ([`Data::check`]ed first).
    fn apply(&mut self, writes: WriteSet) {
        for r in writes.revisions {
            let key = (r.table, r.id);
            let rows = self.revisions.entry(key.clone()).or_default();
            let parent = rows.get(&r.rev).and_then(|old| old.parent).or(r.parent);
            match r.event {
                // A stub: inserted if missing; an existing row only learns a parent it lacked.
                None => {
                    let row = rows.entry(r.rev).or_insert(Row {
                        parent,
                        deleted: false,
                        body: None,
                        event: None,
                        foreign: None,
                    });
                    row.parent = parent;
                }
                Some((seq, chain)) if r.superseded => {
                    let revision = StoredRevision { table: key.0.clone(), id: key.1.clone(), body: None, ..r };
                    self.superseded.insert(seq, StoredEvent { seq, chain, revision });
                }
                Some((seq, chain)) => {
                    // A replacing event: the one it replaces stays in the history, without its body.
                    if let Some(old) = r.replaces.and_then(|_| rows.get(&r.rev)) {
                        if let Some((old_seq, old_chain)) = old.event {
                            let revision = StoredRevision {
                                table: key.0.clone(),
                                id: key.1.clone(),
                                rev: r.rev,
                                parent: old.parent,
                                deleted: old.deleted,
                                body: None,
                                event: old.event,
                                foreign: old.foreign,
                                replaces: None,
                                superseded: false,
                            };
                            self.superseded.insert(old_seq, StoredEvent { seq: old_seq, chain: old_chain, revision });
                        }
                    }
                    // The row takes the parent the event names (verified with its id), the stub's
                    // only when it names none.
                    let parent = r.parent.or(parent);
                    let row =
                        Row { parent, deleted: r.deleted, body: r.body, event: Some((seq, chain)), foreign: r.foreign };
                    // An event replacing another of the same revision moves it in the seq index.
                    if let Some((old, _)) = rows.insert(r.rev, row).and_then(|old| old.event) {
                        self.events.remove(&old);
                    }
                    self.events.insert(seq, (key, r.rev));
                }
            }
        }
        for l in writes.local_docs {
            match l.doc {
                Some(doc) => self.local.insert((l.table, l.id), doc),
                None => self.local.remove(&(l.table, l.id)),
            };
        }
        for (seq, body) in writes.fill_bodies {
            if let Some((key, rev)) = self.events.get(&seq) {
                if let Some(row) = self.revisions.get_mut(key).and_then(|rows| rows.get_mut(rev)) {
                    row.body = Some(body);
                }
            }
        }
        for seq in writes.drop_bodies {
            if let Some((key, rev)) = self.events.get(&seq) {
                if let Some(row) = self.revisions.get_mut(key).and_then(|rows| rows.get_mut(rev)) {
                    row.body = None;
                }
            }
        }
        for mut state in writes.states {
            let key = (state.table.clone(), state.id.clone());
            if !state.deleted {
                // The winner's event holds the body (`check`ed): the state read back carries it.
                let winner = self.revisions.get(&key).and_then(|rows| rows.get(&state.rev));
                state.body = winner.and_then(|r| r.body.clone()).expect("checked: the winner's body is held");
            }
            if let Some(old) = self.states.get(&key) {
                self.by_seq.remove(&old.seq);
            }
            self.by_seq.insert(state.seq, key.clone());
            self.states.insert(key, state);
        }
        if let Some((seq, chain)) = writes.head {
            self.head.update_seq = seq;
            self.head.chain = chain;
        }
        if let Some(n) = writes.record_count {
            self.record_count = Some(n);
        }
        if let Some(n) = &mut self.record_count {
            *n = n.checked_add_signed(writes.live_records).expect("checked: the count stays at or above zero");
        }
        if let Some(p) = writes.resume {
            self.resume.insert(p.source, p);
        }
        let forget: HashSet<(Uuid, u64)> = writes.forget_knowledge.into_iter().collect();
        self.knowledge.retain(|_, k| !forget.contains(&(k.peer, k.peer_seq)));
        for k in writes.knowledge {
            let exists = self.knowledge.values().any(|e| e.peer == k.peer && e.peer_seq == k.peer_seq);
            if !exists {
                self.knowledge.insert((k.local_seq, k.peer, k.peer_seq), k);
            }
        }
        if let Some(e) = writes.epoch {
            self.head.epochs.push(e);
        }
    }

    fn passes(filter: Option<&FeedFilter>, key: &RecordKey) -> bool {
        filter.is_none_or(|f| f.tables.contains(&key.0) || f.records.contains(key))
    }

    fn changes(&self, since: u64, limit: usize, filter: Option<&FeedFilter>, pending_cap: u64) -> ChangesRead {
        let mut passing = self
            .by_seq
            .range((Bound::Excluded(since), Bound::Unbounded))
            .filter(|(_, key)| Self::passes(filter, key))
            .map(|(_, key)| &self.states[key]);
        let changes = passing
            .by_ref()
            .take(limit)
            .map(|s| outpost_api::Change {
                seq: s.seq,
                table: s.table.clone(),
                id: s.id.clone(),
                rev: s.rev,
                deleted: s.deleted,
                leaves: s.leaves.clone(),
            })
            .collect();
        let pending = passing.take(usize::try_from(pending_cap).unwrap_or(usize::MAX)).count() as u64;
        ChangesRead { changes, pending, update_seq: self.head.update_seq }
    }
}

/// One database's storage in memory. Closed by [`Storage::close`], it answers NotFound.
pub struct MemoryStorage {
    name: String,
    data: Arc<Mutex<Option<Data>>>,
}

impl MemoryStorage {
    /// The empty storage of a new database.
    pub fn new(genesis: &Genesis) -> Self {
        MemoryStorage { name: genesis.name.clone(), data: Arc::new(Mutex::new(Some(Data::new(genesis)))) }
    }

    /// Run `f` on the committed data, once no writer holds it.
    async fn read<T>(&self, f: impl FnOnce(&Data) -> Result<T>) -> Result<T> {
        let data = self.data.lock().await;
        f(open(&data)?)
    }
}

fn open(data: &Option<Data>) -> Result<&Data> {
    data.as_ref().ok_or_else(|| Error::not_found("the database was deleted"))
}

/// A write transaction: holds the lock; what it applies is stored at commit.
struct MemoryWriteTxn {
    data: OwnedMutexGuard<Option<Data>>,
    applied: Vec<WriteSet>,
}

impl MemoryWriteTxn {
    fn data(&self) -> Result<&Data> {
        open(&self.data)
    }
}

#[async_trait]
impl WriteTxn for MemoryWriteTxn {
    async fn head(&mut self) -> Result<Head> {
        Ok(self.data()?.head.clone())
    }
    async fn load_trees(&mut self, keys: Vec<RecordKey>) -> Result<HashMap<RecordKey, RevisionTree<String>>> {
        self.data()?.stored_trees(&keys)
    }
    async fn load_state(&mut self, table: &str, id: &str) -> Result<Option<StoredState>> {
        Ok(self.data()?.states.get(&(table.to_owned(), id.to_owned())).cloned())
    }
    async fn load_local_rev(&mut self, table: &str, id: &str) -> Result<Option<u64>> {
        Ok(self.data()?.local.get(&(table.to_owned(), id.to_owned())).map(|(rev, _)| *rev))
    }
    async fn live_states_by_table(&mut self) -> Result<Vec<(String, u64)>> {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for state in self.data()?.states.values().filter(|s| !s.deleted) {
            *counts.entry(state.table.clone()).or_default() += 1;
        }
        Ok(counts.into_iter().collect())
    }
    async fn apply(&mut self, writes: WriteSet) -> Result<()> {
        self.data()?;
        self.applied.push(writes);
        Ok(())
    }
    async fn commit(mut self: Box<Self>) -> Result<()> {
        let mut applied = std::mem::take(&mut self.applied);
        let data = self.data.as_mut().ok_or_else(|| Error::not_found("the database was deleted"))?;
        // All or nothing: one write set (what the engine applies) is checked before it is stored;
        // several are stored into a copy that replaces the data only when every one passed.
        if applied.len() == 1 {
            let writes = applied.pop().expect("one write set");
            data.check(&writes)?;
            data.apply(writes);
            return Ok(());
        }
        let mut next = data.clone();
        for writes in applied {
            next.check(&writes)?;
            next.apply(writes);
        }
        *data = next;
        Ok(())
    }
}

#[async_trait]
impl Storage for MemoryStorage {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn name(&self) -> &str {
        &self.name
    }

    async fn begin_write(&self) -> Result<Box<dyn WriteTxn>> {
        let data = self.data.clone().lock_owned().await;
        open(&data)?;
        Ok(Box::new(MemoryWriteTxn { data, applied: Vec::new() }))
    }

    fn takes_parts(&self) -> bool {
        // Several write sets in one transaction are stored into a copy of the whole database.
        false
    }

    async fn close(&self) {
        self.data.lock().await.take();
    }

    async fn head(&self) -> Result<Head> {
        self.read(|d| Ok(d.head.clone())).await
    }

    async fn load_trees(&self, keys: &[RecordKey]) -> Result<HashMap<RecordKey, RevisionTree>> {
        self.read(|d| d.trees(keys)).await
    }

    async fn load_stored_trees(&self, keys: &[RecordKey]) -> Result<HashMap<RecordKey, RevisionTree<String>>> {
        self.read(|d| d.stored_trees(keys)).await
    }

    async fn held_revs(&self, keys: &[RecordKey]) -> Result<HashMap<RecordKey, HashSet<RevId>>> {
        self.read(|d| {
            Ok(keys
                .iter()
                .map(|k| (k.clone(), d.revisions.get(k).into_iter().flat_map(|rows| rows.keys().copied()).collect()))
                .collect())
        })
        .await
    }

    async fn load_state(&self, table: &str, id: &str) -> Result<Option<StoredState>> {
        self.read(|d| Ok(d.states.get(&(table.to_owned(), id.to_owned())).cloned())).await
    }

    async fn local_doc(&self, table: &str, id: &str) -> Result<Option<(u64, String)>> {
        self.read(|d| Ok(d.local.get(&(table.to_owned(), id.to_owned())).cloned())).await
    }

    async fn list_states(
        &self,
        table: &str,
        after: Option<&str>,
        limit: usize,
        include_deleted: bool,
    ) -> Result<Vec<StoredState>> {
        self.read(|d| {
            let from = (table.to_owned(), after.unwrap_or("").to_owned());
            Ok(d.states
                .range((Bound::Excluded(from), Bound::Unbounded))
                .take_while(|(key, _)| key.0 == table)
                .filter(|(_, s)| include_deleted || !s.deleted)
                .take(limit)
                .map(|(_, s)| s.clone())
                .collect())
        })
        .await
    }

    async fn changes(
        &self,
        since: u64,
        limit: usize,
        filter: Option<&FeedFilter>,
        pending_cap: u64,
    ) -> Result<ChangesRead> {
        self.read(|d| Ok(d.changes(since, limit, filter, pending_cap))).await
    }

    async fn chain_at(&self, seq: u64) -> Result<Option<ChainHash>> {
        self.read(|d| {
            let current = d.events.get(&seq).and_then(|(key, rev)| d.revisions.get(key)?.get(rev)?.event);
            Ok(current.map(|(_, chain)| chain).or_else(|| d.superseded.get(&seq).map(|e| e.chain)))
        })
        .await
    }

    async fn events(&self, after: u64, limit: usize) -> Result<Vec<StoredEvent>> {
        self.read(|d| {
            let mut out = Vec::new();
            for (seq, (key, rev)) in d.events.range((Bound::Excluded(after), Bound::Unbounded)).take(limit) {
                let row = &d.revisions[key][rev];
                let (_, chain) = row.event.ok_or_else(|| Error::corrupt(format!("event {seq} lost its seq")))?;
                out.push(StoredEvent {
                    seq: *seq,
                    chain,
                    revision: StoredRevision {
                        table: key.0.clone(),
                        id: key.1.clone(),
                        rev: *rev,
                        parent: row.parent,
                        deleted: row.deleted,
                        body: row.body.clone(),
                        event: row.event,
                        foreign: row.foreign,
                        replaces: None,
                        superseded: false,
                    },
                });
            }
            // The superseded events in their places.
            out.extend(
                d.superseded.range((Bound::Excluded(after), Bound::Unbounded)).take(limit).map(|(_, e)| e.clone()),
            );
            out.sort_by_key(|e| e.seq);
            out.truncate(limit);
            Ok(out)
        })
        .await
    }

    async fn knowledge(&self, upto: Option<u64>) -> Result<Vec<KnowledgeRow>> {
        self.read(|d| {
            let upto = upto.unwrap_or(u64::MAX);
            Ok(d.knowledge.values().filter(|k| k.local_seq <= upto).cloned().collect())
        })
        .await
    }

    async fn resume_point(&self, source: Uuid) -> Result<Option<ResumePoint>> {
        self.read(|d| Ok(d.resume.get(&source).cloned())).await
    }

    async fn record_count(&self) -> Result<Option<u64>> {
        self.read(|d| Ok(d.record_count)).await
    }
}

/// Databases in memory, gone with the process: for tests, and for trying Outpost without a disk.
#[derive(Default)]
pub struct MemoryDatabases {
    limits: Limits,
    open: Mutex<BTreeMap<String, Arc<MemoryDatabase>>>,
}

impl MemoryDatabases {
    /// No databases yet; each checks input against `limits`.
    pub fn new(limits: Limits) -> Self {
        MemoryDatabases { limits, open: Mutex::new(BTreeMap::new()) }
    }

    /// Create a database as its concrete type.
    pub async fn create_memory(&self, name: &str) -> Result<Arc<MemoryDatabase>> {
        let genesis = Genesis::new(name)?;
        let mut open = self.open.lock().await;
        if open.contains_key(name) {
            return Err(Error::already_exists(format!("database {name:?} exists")));
        }
        let db = Arc::new(Engine::new(MemoryStorage::new(&genesis), self.limits).await?);
        open.insert(name.to_owned(), db.clone());
        Ok(db)
    }
}

#[async_trait]
impl Databases for MemoryDatabases {
    async fn list(&self) -> Result<Vec<String>> {
        Ok(self.open.lock().await.keys().cloned().collect())
    }

    async fn open(&self, name: &str) -> Result<Arc<dyn Database>> {
        names::validate_db_name(name)?;
        let open = self.open.lock().await;
        let db = open.get(name).ok_or_else(|| Error::not_found(format!("database {name:?} does not exist")))?;
        Ok(db.clone())
    }

    async fn create(&self, name: &str) -> Result<Arc<dyn Database>> {
        Ok(self.create_memory(name).await?)
    }

    async fn delete(&self, name: &str) -> Result<()> {
        names::validate_db_name(name)?;
        let db = self.open.lock().await.remove(name);
        let db = db.ok_or_else(|| Error::not_found(format!("database {name:?} does not exist")))?;
        db.close().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use outpost_api::{
        ChangeReader, ChangesRequest, ErrorKind, InfoReader, KnowledgeUpdate, NewTable, PutRecord, RecordReader,
        RecordWriter, ReplicaSource, ReplicaTarget, TableWriter,
    };

    use super::*;

    async fn db() -> MemoryDatabase {
        let genesis = Genesis::new("t").unwrap();
        Engine::new(MemoryStorage::new(&genesis), Limits::default()).await.unwrap()
    }

    async fn put(db: &MemoryDatabase, id: &str, n: i64) -> RevId {
        let attributes = outpost_api::Attributes::new().with("n", outpost_api::Value::Int(n));
        db.put_record("x", PutRecord { id: Some(id.into()), attributes, ..Default::default() }).await.unwrap().rev
    }

    #[tokio::test]
    async fn a_new_database_counts_its_records_once_and_keeps_the_count() {
        let db = db().await;
        assert_eq!(db.storage().record_count().await.unwrap(), Some(0), "counted when opened");
        db.create_table(NewTable { name: "x".into(), ..Default::default() }).await.unwrap();
        put(&db, "a", 1).await;
        put(&db, "b", 1).await;
        db.delete_record("x", "a", None).await.unwrap();
        assert_eq!(db.info().await.unwrap().record_count, 1);
        assert!(db.check().await.unwrap().problems.is_empty());
    }

    #[tokio::test]
    async fn knowledge_that_contradicts_our_chain_begins_a_new_epoch() {
        let db = db().await;
        db.create_table(NewTable { name: "x".into(), ..Default::default() }).await.unwrap();
        put(&db, "a", 1).await;
        let head = db.storage().head().await.unwrap();
        let ours = head.uuid();
        // A peer read seq 1 from us, and seq 2 from a copy of us that wrote something else there.
        let agreed = KnowledgeRow {
            peer: ours,
            peer_seq: 1,
            peer_chain: db.chain_hash_at(1).await.unwrap(),
            local_seq: 1,
            via: None,
        };
        let fork = KnowledgeRow { peer: ours, peer_seq: 2, peer_chain: ChainHash([9; 32]), ..agreed };
        let peer = Uuid::new_v4();
        let imported = vec![agreed, fork];
        let update = KnowledgeUpdate { source: peer, source_seq: 1, source_chain: ChainHash([1; 32]), imported };
        db.record_knowledge(update).await.unwrap();
        let info = db.info().await.unwrap();
        assert_eq!(info.epochs.len(), 2, "{info:?}");
        assert_eq!(info.epochs[1].start_seq, 2, "the seq after the last one the rows agree on");
        // Only the row about the peer is kept; none about ourselves.
        let rows = db.knowledge(None).await.unwrap();
        assert_eq!(rows.iter().map(|r| r.peer).collect::<Vec<_>>(), vec![peer]);
    }

    #[test]
    fn what_a_unique_index_refuses_is_refused() {
        let genesis = Genesis::new("t").unwrap();
        let mut data = Data::new(&genesis);
        let event = |id: &str, seq: u64| StoredRevision {
            table: "x".into(),
            id: id.into(),
            rev: RevId::new(1, [seq as u8; 16]),
            parent: None,
            deleted: false,
            body: Some("{}".into()),
            event: Some((seq, ChainHash([seq as u8; 32]))),
            foreign: None,
            replaces: None,
            superseded: false,
        };
        let first = WriteSet { revisions: vec![event("a", 1)], ..WriteSet::default() };
        data.check(&first).unwrap();
        data.apply(first);
        let again = WriteSet { revisions: vec![event("b", 1)], ..WriteSet::default() };
        assert!(data.check(&again).unwrap_err().message.contains("seq 1 is taken"));
        let epoch = WriteSet { epoch: Some(genesis.epoch()), ..WriteSet::default() };
        assert!(data.check(&epoch).unwrap_err().message.contains("epoch uuid"));
        let below = WriteSet { record_count: Some(0), live_records: -1, ..WriteSet::default() };
        assert!(data.check(&below).unwrap_err().message.contains("below zero"));
    }

    #[tokio::test]
    async fn a_closed_database_answers_not_found() {
        let db = db().await;
        db.create_table(NewTable { name: "x".into(), ..Default::default() }).await.unwrap();
        put(&db, "a", 1).await;
        db.close().await;
        let request = ChangesRequest { since: 0, limit: 10, tables: None };
        assert_eq!(db.changes(request).await.unwrap_err().kind, ErrorKind::NotFound);
        assert_eq!(db.get_record("x", "a", Default::default()).await.unwrap_err().kind, ErrorKind::NotFound);
        let revs = vec![outpost_api::RecordRevs { table: "x".into(), id: "a".into(), revs: vec![] }];
        assert_eq!(db.revs_diff(revs).await.unwrap_err().kind, ErrorKind::NotFound);
    }
}
