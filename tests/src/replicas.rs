//! Comparing replicas after replication: a [`Snapshot`] of everything replication must make equal
//! (per record: winner, deleted flag, leaves, conflicts, reconciled body and field conflicts, and
//! each leaf's body and ancestry — which together give the revision tree's shape), what revisions
//! one replica lacks of another, and whether the knowledge rows and resume points a database holds
//! tell the truth about its peers.
//!
//! Bodies of inner revisions are not compared: a revision that reached a replica only as the
//! ancestor of a newer one is legitimately a bodiless stub there.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use outpost_api::{
    Attributes, Body, Database, ErrorKind, GetOptions, InfoReader, RecordRevs, ReplicaSource, ReplicaTarget, RevId,
};
use outpost_engine::storage::Storage;
use outpost_sqlite::SqliteDatabase;

use crate::support::{all_changes, ok};

/// One leaf revision: tombstone or not, its body, its ancestry (parent first).
#[derive(Clone, Debug, PartialEq)]
pub struct LeafSnapshot {
    /// Whether the leaf is a tombstone.
    pub deleted: bool,
    /// Its body, when stored.
    pub body: Option<Attributes>,
    /// Its ancestry, parent first.
    pub ancestry: Vec<RevId>,
}

/// What a read of a record with its conflicts returns.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadSnapshot {
    /// The reconciled body (merged, under `merge-fields`).
    pub body: Attributes,
    /// The conflicting leaves.
    pub conflicts: Vec<RevId>,
    /// Fields a merge could not settle.
    pub field_conflicts: Vec<String>,
}

/// What replication must make equal about one record.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordSnapshot {
    /// The winning revision.
    pub rev: RevId,
    /// Whether the winner is a tombstone.
    pub deleted: bool,
    /// Every leaf, sorted.
    pub leaves: Vec<RevId>,
    /// What a read with conflicts returns, or the error kind when it fails (a deleted record or
    /// table). System records are not read.
    pub read: Option<Result<ReadSnapshot, ErrorKind>>,
    /// Each leaf's revision.
    pub leaf_revisions: BTreeMap<RevId, LeafSnapshot>,
}

/// Every record of a database, by (table, id).
pub type Snapshot = BTreeMap<(String, String), RecordSnapshot>;

/// Read a snapshot of `db` through the api traits.
pub async fn snapshot(db: &dyn Database) -> Snapshot {
    let changes = all_changes(db, 0, None).await;
    let mut out = Snapshot::new();
    for chunk in changes.chunks(500) {
        let wanted: Vec<RecordRevs> = chunk
            .iter()
            .map(|c| RecordRevs { table: c.table.clone(), id: c.id.clone(), revs: c.leaves.clone() })
            .collect();
        let mut leaves: BTreeMap<(String, String), BTreeMap<RevId, LeafSnapshot>> = BTreeMap::new();
        for r in ok(db.get_revisions(wanted).await, "get_revisions of every leaf") {
            let leaf = LeafSnapshot {
                deleted: r.deleted,
                body: r.attributes.as_ref().map(Body::attributes),
                ancestry: r.ancestry,
            };
            leaves.entry((r.table, r.id)).or_default().insert(r.rev, leaf);
        }
        for c in chunk {
            let read = if c.table.starts_with('_') {
                None
            } else {
                let options = GetOptions { conflicts: true, ..GetOptions::default() };
                Some(db.get_record(&c.table, &c.id, options).await.map_err(|e| e.kind).map(|r| ReadSnapshot {
                    body: r.attributes,
                    conflicts: r.conflicts.unwrap_or_default(),
                    field_conflicts: r.field_conflicts.unwrap_or_default(),
                }))
            };
            let mut sorted = c.leaves.clone();
            sorted.sort();
            let key = (c.table.clone(), c.id.clone());
            let leaf_revisions = leaves.remove(&key).unwrap_or_default();
            out.insert(key, RecordSnapshot { rev: c.rev, deleted: c.deleted, leaves: sorted, read, leaf_revisions });
        }
    }
    out
}

/// The differences between two snapshots, described (at most `limit` records), or None.
pub fn differences(a_name: &str, a: &Snapshot, b_name: &str, b: &Snapshot, limit: usize) -> Option<String> {
    let mut out = String::new();
    let mut found = 0;
    let keys: std::collections::BTreeSet<&(String, String)> = a.keys().chain(b.keys()).collect();
    for key in keys {
        let (x, y) = (a.get(key), b.get(key));
        if x == y {
            continue;
        }
        found += 1;
        if found <= limit {
            let _ = writeln!(out, "{}/{}:\n  {a_name}: {x:?}\n  {b_name}: {y:?}", key.0, key.1);
        }
    }
    (found > 0).then(|| format!("{found} records differ between {a_name} and {b_name}:\n{out}"))
}

/// Assert that every named database holds the same records, revision trees and reconciled states.
pub async fn assert_converged(dbs: &[(&str, &dyn Database)]) {
    let (first_name, first) = dbs.first().expect("databases to compare");
    let expected = snapshot(*first).await;
    for (name, db) in &dbs[1..] {
        let actual = snapshot(*db).await;
        if let Some(diff) = differences(first_name, &expected, name, &actual, 5) {
            panic!("{diff}");
        }
    }
}

/// The revisions of `source` (every leaf and every ancestor of one) that `target` does not hold.
pub async fn missing_revisions(source: &dyn Database, target: &dyn Database) -> Vec<(String, String, RevId)> {
    let theirs = snapshot(source).await;
    let mut have = Vec::new();
    for ((table, id), record) in &theirs {
        let mut revs: Vec<RevId> = record.leaves.clone();
        for leaf in record.leaf_revisions.values() {
            revs.extend(leaf.ancestry.iter().copied());
        }
        revs.sort();
        revs.dedup();
        have.push(RecordRevs { table: table.clone(), id: id.clone(), revs });
    }
    let mut out = Vec::new();
    for chunk in have.chunks(500) {
        for m in ok(target.revs_diff(chunk.to_vec()).await, "revs_diff") {
            out.extend(m.revs.into_iter().map(|r| (m.table.clone(), m.id.clone(), r)));
        }
    }
    out
}

/// Whether the knowledge rows and resume points of each database tell the truth about the others
/// (SPEC §8). For every row a database holds about an epoch of another one in `dbs`: the chain it
/// records is that database's chain at the seq, and the holder has every revision event that
/// database stored up to it. For every resume point it holds for one of their epochs: the chain
/// matches, and it holds every current leaf of each record whose latest seq is at or below it.
/// Returns the problems found.
pub async fn knowledge_problems(dbs: &[(&str, &SqliteDatabase)]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut infos = Vec::new();
    for (_, db) in dbs {
        infos.push(ok(db.info().await, "info"));
    }
    for (holder_name, holder) in dbs {
        for row in ok(holder.knowledge(None).await, "knowledge") {
            let Some(peer) = infos.iter().position(|i| i.epochs.iter().any(|e| e.uuid == row.peer)) else { continue };
            let (peer_name, peer_db) = dbs[peer];
            let what = format!("{holder_name}'s knowledge of {peer_name} at seq {} (via {:?})", row.peer_seq, row.via);
            match peer_db.chain_hash_at(row.peer_seq).await {
                Ok(chain) if chain == row.peer_chain => {}
                Ok(_) => problems.push(format!("{what}: the chain differs from {peer_name}'s")),
                Err(e) => problems.push(format!("{what}: {e}")),
            }
            let lacking = lacking_events(peer_db, row.peer_seq, holder).await;
            if !lacking.is_empty() {
                problems.push(format!(
                    "{what}: {holder_name} lacks {} of those events, e.g. {:?}",
                    lacking.len(),
                    lacking[0]
                ));
            }
        }
        for (peer, info) in infos.iter().enumerate() {
            let (peer_name, peer_db) = dbs[peer];
            if peer_name == *holder_name {
                continue;
            }
            for epoch in &info.epochs {
                let Some(point) = ok(holder.resume_point(epoch.uuid).await, "resume_point") else { continue };
                let what = format!("{holder_name}'s resume point for {peer_name} at seq {}", point.source_seq);
                match peer_db.chain_hash_at(point.source_seq).await {
                    Ok(chain) if chain == point.source_chain => {}
                    Ok(_) => problems.push(format!("{what}: the chain differs from {peer_name}'s")),
                    Err(e) => problems.push(format!("{what}: {e}")),
                }
                let settled: Vec<RecordRevs> = all_changes(peer_db, 0, None)
                    .await
                    .into_iter()
                    .filter(|c| c.seq <= point.source_seq)
                    .map(|c| RecordRevs { table: c.table, id: c.id, revs: c.leaves })
                    .collect();
                let missing = ok(holder.revs_diff(settled).await, "revs_diff");
                if let Some(m) = missing.first() {
                    problems.push(format!("{what}: {holder_name} lacks leaves {:?} of {}/{}", m.revs, m.table, m.id));
                }
            }
        }
    }
    problems
}

/// The revision events of `source` with seq ≤ `upto` that `holder` does not hold.
async fn lacking_events(source: &SqliteDatabase, upto: u64, holder: &SqliteDatabase) -> Vec<(String, String, RevId)> {
    let mut wanted = Vec::new();
    let mut after = 0;
    while after < upto {
        let events = ok(source.storage().events(after, 1000).await, "events");
        let Some(last) = events.last() else { break };
        after = last.seq;
        for e in events.into_iter().filter(|e| e.seq <= upto) {
            let r = e.revision;
            wanted.push(RecordRevs { table: r.table, id: r.id, revs: vec![r.rev] });
        }
    }
    let mut out = Vec::new();
    for chunk in wanted.chunks(1000) {
        for m in ok(holder.revs_diff(chunk.to_vec()).await, "revs_diff") {
            out.extend(m.revs.into_iter().map(|r| (m.table.clone(), m.id.clone(), r)));
        }
    }
    out
}

/// Revisions stored as more than one revision event (a revision must be stored once, whatever
/// replication replays).
pub async fn duplicate_events(db: &SqliteDatabase) -> Vec<(String, String, RevId)> {
    let mut seen = std::collections::HashSet::new();
    let mut twice = Vec::new();
    let mut after = 0;
    loop {
        let events = ok(db.storage().events(after, 1000).await, "events");
        let Some(last) = events.last() else { return twice };
        after = last.seq;
        for e in events {
            let r = e.revision;
            let key = (r.table, r.id, r.rev);
            if !seen.insert(key.clone()) {
                twice.push(key);
            }
        }
    }
}
