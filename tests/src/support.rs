//! Helpers the conformance tests share: building bodies, writing and reading with a panic on
//! unexpected errors, checking error kinds, and a minimal replicator over the api traits.

use std::fmt::Debug;

use outpost_api::{
    Attributes, ChainHash, Change, ChangesRequest, Database, Error, ErrorKind, GetOptions, NewTable, PutRecord,
    ReconcilePolicy, Record, RecordRevs, Result, RevId, TableDef,
};
use outpost_engine::hash::{genesis_chain, next_chain};

/// Attributes from their wire JSON (`{"qty": {"int": "3"}}`); panics on invalid input.
pub fn wire(json: serde_json::Value) -> Attributes {
    serde_json::from_value(json.clone()).unwrap_or_else(|e| panic!("{json} is not valid wire attributes: {e}"))
}

/// Attributes from plain JSON (`{"qty": 3}`); panics on invalid input.
pub fn plain(json: serde_json::Value) -> Attributes {
    Attributes::from_plain(&json).unwrap_or_else(|e| panic!("{json} is not valid plain attributes: {e}"))
}

/// Parse a revision id; panics on a malformed one.
pub fn rev(text: &str) -> RevId {
    text.parse().unwrap_or_else(|e| panic!("{text:?} is not a revision id: {e}"))
}

/// Unwrap a result, naming the operation on failure.
pub fn ok<T>(result: Result<T>, what: &str) -> T {
    result.unwrap_or_else(|e| panic!("{what}: unexpected error {e}"))
}

/// Expect an error of `kind`; returns it.
pub fn expect_err<T: Debug>(result: Result<T>, kind: ErrorKind, what: &str) -> Error {
    match result {
        Ok(v) => panic!("{what}: expected {kind}, got Ok({v:?})"),
        Err(e) => {
            assert_eq!(e.kind, kind, "{what}: expected {kind}, got {e}");
            e
        }
    }
}

/// Create a keep-conflicts table.
pub async fn table(db: &dyn Database, name: &str) -> TableDef {
    table_with(db, name, ReconcilePolicy::KeepConflicts).await
}

/// Create a table with a reconcile policy.
pub async fn table_with(db: &dyn Database, name: &str, policy: ReconcilePolicy) -> TableDef {
    let new = NewTable { name: name.into(), policy, ..NewTable::default() };
    ok(db.create_table(new).await, &format!("create table {name}"))
}

/// The write `put_record` does, with the id and parent given.
pub fn put_of(id: &str, parent: Option<RevId>, attributes: Attributes) -> PutRecord {
    PutRecord { id: Some(id.into()), rev: parent, attributes, resolves: vec![] }
}

/// Put a record; panics on failure; returns the resulting revision.
pub async fn put(db: &dyn Database, table: &str, id: &str, parent: Option<RevId>, attributes: Attributes) -> RevId {
    let result = db.put_record(table, put_of(id, parent, attributes)).await;
    ok(result, &format!("put {table}/{id} on {parent:?}")).rev
}

/// Delete a record; panics on failure; returns the tombstone's revision.
pub async fn delete(db: &dyn Database, table: &str, id: &str, parent: Option<RevId>) -> RevId {
    ok(db.delete_record(table, id, parent).await, &format!("delete {table}/{id} on {parent:?}")).rev
}

/// The reconciled record with conflicts, panicking when it cannot be read.
pub async fn get(db: &dyn Database, table: &str, id: &str) -> Record {
    let options = GetOptions { conflicts: true, ..GetOptions::default() };
    ok(db.get_record(table, id, options).await, &format!("get {table}/{id}"))
}

/// The database's update_seq.
pub async fn update_seq(db: &dyn Database) -> u64 {
    ok(db.info().await, "info").update_seq
}

/// Every entry of the changes feed after `since`, following pages.
pub async fn all_changes(db: &dyn Database, since: u64, tables: Option<Vec<String>>) -> Vec<Change> {
    let mut out = Vec::new();
    let mut since = since;
    loop {
        let request = ChangesRequest { since, limit: 100, tables: tables.clone() };
        let page = ok(db.changes(request).await, "changes");
        out.extend(page.changes);
        since = page.last_seq;
        if page.pending == 0 {
            return out;
        }
    }
}

/// The changes-feed entry of one record (winner, deleted flag, leaves).
pub async fn change_of(db: &dyn Database, table: &str, id: &str) -> Change {
    all_changes(db, 0, Some(vec![table.to_owned()]))
        .await
        .into_iter()
        .find(|c| c.table == table && c.id == id)
        .unwrap_or_else(|| panic!("{table}/{id} is not in the changes feed"))
}

/// Copy the named revisions of one record (with their ancestry) from one database to another.
pub async fn copy(from: &dyn Database, to: &dyn Database, table: &str, id: &str, revs: &[RevId]) -> u64 {
    let wanted = vec![RecordRevs { table: table.into(), id: id.into(), revs: revs.to_vec() }];
    let revisions = ok(from.get_revisions(wanted).await, "get_revisions");
    assert_eq!(revisions.len(), revs.len(), "get_revisions of {table}/{id} {revs:?}");
    ok(to.put_revisions(revisions, None).await, "put_revisions").written
}

/// One replication pass through the api traits: every leaf the target lacks, with its ancestry.
/// Returns the revision events written.
pub async fn replicate(from: &dyn Database, to: &dyn Database) -> u64 {
    let mut since = 0;
    let mut written = 0;
    loop {
        let request = ChangesRequest { since, limit: 50, tables: None };
        let page = ok(from.changes(request).await, "changes of the source");
        let have = page.leaf_revs();
        if !have.is_empty() {
            let missing = ok(to.revs_diff(have).await, "revs_diff");
            if !missing.is_empty() {
                let revisions = ok(from.get_revisions(missing).await, "get_revisions");
                written += ok(to.put_revisions(revisions, None).await, "put_revisions").written;
            }
        }
        since = page.last_seq;
        if page.pending == 0 {
            return written;
        }
    }
}

/// The winner rule of SPEC §4.3, written independently of the engine: non-deleted leaves beat
/// deleted ones, then the higher generation, then the greater revision id string.
pub fn winner_of(leaves: &[(RevId, bool)]) -> RevId {
    leaves.iter().max_by_key(|(r, deleted)| (!deleted, r.generation, r.to_string())).expect("a record has a leaf").0
}

/// One revision event as the chain hash sees it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Event {
    /// The table.
    pub table: String,
    /// The record id.
    pub id: String,
    /// The revision.
    pub rev: RevId,
    /// Whether it is a tombstone.
    pub deleted: bool,
}

impl Event {
    /// The event of a change entry.
    pub fn of(c: &Change) -> Self {
        Event { table: c.table.clone(), id: c.id.clone(), rev: c.rev, deleted: c.deleted }
    }
}

/// The genesis hash of a database, from its first epoch.
pub async fn genesis_of(db: &dyn Database) -> ChainHash {
    let info = ok(db.info().await, "info");
    genesis_chain(info.epochs.first().expect("a database has an epoch").uuid)
}

/// `chain(0..=n)` folded from `genesis` over `events` (SPEC §5).
pub fn fold_chain(genesis: ChainHash, events: &[Event]) -> Vec<ChainHash> {
    let mut out = vec![genesis];
    for (i, e) in events.iter().enumerate() {
        let prev = *out.last().expect("starts with genesis");
        out.push(next_chain(&prev, i as u64 + 1, &e.table, &e.id, &e.rev, e.deleted));
    }
    out
}

/// The chain hashes a database reports for seqs `0..=update_seq`.
pub async fn chain_of(db: &dyn Database) -> Vec<ChainHash> {
    let mut out = Vec::new();
    for seq in 0..=update_seq(db).await {
        out.push(ok(db.chain_hash_at(seq).await, &format!("chain_hash_at({seq})")));
    }
    out
}

/// Nested lists `depth` deep around an int (a scalar is depth 1).
pub fn nested(depth: usize) -> outpost_api::Value {
    let mut v = outpost_api::Value::Int(1);
    for _ in 1..depth {
        v = outpost_api::Value::List(vec![v]);
    }
    v
}

/// A small seeded random number generator (SplitMix64) for fault schedules and random drivers:
/// the same seed gives the same draws on every platform.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A draw from `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// True with a chance of `percent` in 100.
    pub fn chance(&mut self, percent: u32) -> bool {
        self.below(100) < u64::from(percent)
    }
}

/// A temp dir for databases whose durability a test does not need: on tmpfs (`/dev/shm`) where the
/// machine has one, so that the many small synced transactions of a random driver run at memory
/// speed; elsewhere the usual temp dir.
pub fn scratch_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    let in_memory = shm.is_dir().then(|| tempfile::Builder::new().prefix("outpost-scratch-").tempdir_in(shm).ok());
    in_memory.flatten().unwrap_or_else(|| tempfile::tempdir().expect("a temp dir"))
}
