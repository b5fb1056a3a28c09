//! SPEC §4.5: compaction drops the bodies of old non-leaf revisions and changes no read of a record,
//! no revs-diff answer and no replication result; every revision id, parent and seq stays.

use outpost_api::{
    CompactReport, CompactRequest, Database, ErrorKind, GetOptions, NewTable, ReconcilePolicy, Record, RecordRevs,
    RevId,
};
use serde_json::json;

use crate::support::{all_changes, expect_err, ok, plain, put, replicate, table, table_with, update_seq};
use crate::Factory;

/// A line of `n` revisions of `table/id`, oldest first.
async fn line(db: &dyn Database, table: &str, id: &str, n: i64) -> Vec<RevId> {
    let mut revs: Vec<RevId> = Vec::new();
    for v in 1..=n {
        let body = plain(json!({"v": v, "text": format!("revision {v} of {id}"), "same": 1}));
        revs.push(put(db, table, id, revs.last().copied(), body).await);
    }
    revs
}

async fn compact(db: &dyn Database, request: CompactRequest) -> CompactReport {
    ok(db.compact(request).await, "compact")
}

fn keep(n: u64) -> CompactRequest {
    CompactRequest { keep_bodies: Some(n), ..CompactRequest::default() }
}

/// A record as read, or the kind of error reading it gives (a deleted one is not found).
type Reading = Result<Record, ErrorKind>;

/// Every read compaction must not change: each record (merged and with its conflicts and history),
/// and the changes feed.
async fn reads(db: &dyn Database, keys: &[(&str, &str)]) -> (Vec<Reading>, Vec<(String, String, RevId, Vec<RevId>)>) {
    let mut records = Vec::new();
    for (table, id) in keys {
        let options = GetOptions { conflicts: true, revs: true, ..GetOptions::default() };
        records.push(db.get_record(table, id, options).await.map_err(|e| e.kind));
    }
    let feed = all_changes(db, 0, None).await.into_iter().map(|c| (c.table, c.id, c.rev, c.leaves)).collect();
    (records, feed)
}

/// Bodies deeper than `keep_bodies` below every leaf go; leaves, the generations kept and the base
/// of an open `merge-fields` conflict keep theirs; no read, revs-diff answer or replication result
/// changes, no seq is taken, and a second compaction finds nothing more.
pub async fn compaction_drops_old_bodies_and_changes_no_read(f: &dyn Factory) {
    let (a, b) = (f.fresh().await, f.fresh().await);
    table(&*a, "t").await;
    table_with(&*a, "m", ReconcilePolicy::MergeFields).await;
    let x = line(&*a, "t", "x", 8).await;
    let z = line(&*a, "t", "z", 3).await;
    crate::support::delete(&*a, "t", "z", Some(z[2])).await;
    // y: a line of 4 under merge-fields, then edits of different fields on two peers: an open
    // conflict whose merge needs generation 4's body.
    let y = line(&*a, "m", "y", 4).await;
    replicate(&*a, &*b).await;
    put(&*a, "m", "y", Some(y[3]), plain(json!({"v": 5, "text": "revision 4 of y", "same": 1}))).await;
    put(&*b, "m", "y", Some(y[3]), plain(json!({"v": 4, "text": "edited on b", "same": 1}))).await;
    replicate(&*b, &*a).await;
    let keys = [("t", "x"), ("t", "z"), ("m", "y")];
    let before = reads(&*a, &keys).await;
    let merged = before.0[2].as_ref().expect("y reads");
    assert_eq!(merged.attributes, plain(json!({"v": 5, "text": "edited on b", "same": 1})), "y merges both edits");
    let seq = update_seq(&*a).await;

    let report = compact(&*a, keep(2)).await;
    // Below leaves of generation 8 (x), 4 (z's tombstone) and 5 (y's two): x's 1-5, z's 1, y's 1-2.
    assert_eq!(report.bodies_dropped, 5 + 1 + 2, "{report:?}");
    assert!(report.body_bytes > 8 * 20, "{report:?}");
    assert_eq!((report.records, report.upto), (3, seq), "{report:?}");
    assert_eq!(update_seq(&*a).await, seq, "compaction writes no revision event");
    assert_eq!(reads(&*a, &keys).await, before, "every read is the same");
    let old = GetOptions { rev: Some(x[4]), ..GetOptions::default() };
    expect_err(a.get_record("t", "x", old).await, ErrorKind::NotFound, "the body of a compacted revision");
    let kept = GetOptions { rev: Some(x[5]), ..GetOptions::default() };
    ok(a.get_record("t", "x", kept).await, "a body within keep_bodies of the leaf");

    // Down to the leaves: x's 6-7, z's 2-3, and y's 3 but not 4, the open conflict's merge base.
    assert_eq!(compact(&*a, keep(0)).await.bodies_dropped, 2 + 2 + 1);
    assert_eq!(reads(&*a, &keys).await, before, "every read is still the same");
    let base = GetOptions { rev: Some(y[3]), ..GetOptions::default() };
    ok(a.get_record("m", "y", base).await, "the merge base keeps its body");
    let every = vec![
        RecordRevs { table: "t".into(), id: "x".into(), revs: x.clone() },
        RecordRevs { table: "m".into(), id: "y".into(), revs: y.clone() },
    ];
    assert!(ok(a.revs_diff(every).await, "revs_diff").is_empty(), "every revision is still held");
    assert_eq!(compact(&*a, keep(0)).await.bodies_dropped, 0, "nothing is left to drop");

    // A fresh peer replicating from the compacted one holds the same records, merged the same: the
    // reconciler fetches the ancestors' bodies the source still has (the merge base among them).
    let c = f.fresh().await;
    let options = outpost_reconciler::Options::default();
    ok(outpost_reconciler::replicate(&*a, &*c, &options).await, "replicate from the compacted peer");
    // (Its history lists the compacted ancestors as it received them: by id only, ids cut at the
    // replication's ancestry limit as for any peer.)
    let current = |r: &Reading| r.as_ref().map(|r| (r.rev, r.attributes.clone(), r.conflicts.clone())).ok();
    let there = reads(&*c, &keys).await.0;
    assert_eq!(there.iter().map(current).collect::<Vec<_>>(), before.0.iter().map(current).collect::<Vec<_>>());
    let sorted = |mut feed: Vec<_>| {
        feed.sort();
        feed
    };
    assert_eq!(sorted(reads(&*c, &keys).await.1), sorted(before.1), "the same leaves and winners");
    assert_eq!(replicate(&*a, &*c).await, 0);
}

/// What a compaction covers: one table, each table's own `keep_bodies` (the server's schedule), and
/// only records changed after `since`; a bad request is refused.
pub async fn compaction_covers_the_tables_and_seqs_asked_for(f: &dyn Factory) {
    let db = f.fresh().await;
    table(&*db, "t").await;
    let kept = NewTable { name: "k".into(), keep_bodies: Some(1), ..NewTable::default() };
    ok(db.create_table(kept).await, "create a table with keep_bodies");
    line(&*db, "t", "x", 5).await;
    line(&*db, "k", "x", 5).await;

    let scheduled = CompactRequest { scheduled: true, ..CompactRequest::default() };
    let report = compact(&*db, scheduled.clone()).await;
    assert_eq!((report.records, report.bodies_dropped), (1, 3), "only k, keeping one generation: {report:?}");
    let upto = report.upto;
    let only_t = CompactRequest { table: Some("t".into()), ..keep(3) };
    assert_eq!(compact(&*db, only_t).await.bodies_dropped, 1, "t alone, keeping three generations");
    let later = CompactRequest { since: upto, ..keep(0) };
    assert_eq!(compact(&*db, later.clone()).await.records, 0, "nothing changed since");
    line(&*db, "t", "y", 3).await;
    let report = compact(&*db, later).await;
    assert_eq!((report.records, report.bodies_dropped), (1, 2), "only y changed since: {report:?}");
    // Without keep_bodies, a table's own applies (k keeps 1: nothing more), else 0.
    assert_eq!(compact(&*db, CompactRequest::default()).await.bodies_dropped, 3, "x of t, down to its leaf");

    let both = CompactRequest { keep_bodies: Some(1), ..scheduled };
    expect_err(db.compact(both).await, ErrorKind::InvalidInput, "a scheduled compaction with keep_bodies");
    let missing = CompactRequest { table: Some("nope".into()), ..CompactRequest::default() };
    expect_err(db.compact(missing).await, ErrorKind::NotFound, "compact a table that does not exist");
    let internal = CompactRequest { table: Some("_tables".into()), ..CompactRequest::default() };
    expect_err(db.compact(internal).await, ErrorKind::InvalidInput, "compact the table definitions");
}
