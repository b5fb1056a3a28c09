//! SPEC §5: gap-free seqs, the changes feed, the chain hash.

use std::time::Duration;

use outpost_api::{ChangesRequest, Database, ErrorKind, PutRecord, ReconcilePolicy, RecordRevs, WriteOp};
use serde_json::json;

use crate::support::{
    all_changes, chain_of, delete, expect_err, fold_chain, genesis_of, get, ok, plain, put, put_of, update_seq, Event,
};
use crate::Factory;

/// Check that the last action added exactly `events` revision events after `before`: update_seq moved
/// by that much and the changes feed's newest entry sits at the new update_seq. Returns it.
async fn advanced(db: &dyn Database, before: u64, events: u64, what: &str) -> u64 {
    let now = update_seq(db).await;
    assert_eq!(now, before + events, "{what}: update_seq moves by one per revision event");
    let page = ok(db.changes(ChangesRequest { since: before, limit: 100, tables: None }).await, "changes");
    assert_eq!(page.last_seq, now, "{what}: last_seq of a drained feed");
    assert_eq!(page.pending, 0);
    if events > 0 {
        let seqs: Vec<u64> = page.changes.iter().map(|c| c.seq).collect();
        assert_eq!(seqs.last(), Some(&now), "{what}: the feed ends at update_seq");
        assert!(seqs.iter().all(|s| *s > before && *s <= now), "{what}: seqs {seqs:?} within ({before}, {now}]");
    } else {
        assert!(page.changes.is_empty(), "{what}: nothing new in the feed");
    }
    now
}

/// Every revision event takes the next seq; retries, no-ops and failures take none.
pub async fn seqs_grow_by_one_per_revision_event(f: &dyn Factory) {
    let db = f.fresh().await;
    let db = &*db;
    assert_eq!(update_seq(db).await, 0, "a fresh database");
    let s = advanced(db, 0, 0, "nothing").await;
    crate::support::table_with(db, "t", ReconcilePolicy::KeepConflicts).await;
    let s = advanced(db, s, 1, "create table").await;
    let r1 = put(db, "t", "x", None, plain(json!({"v": 1}))).await;
    let s = advanced(db, s, 1, "create").await;
    put(db, "t", "x", None, plain(json!({"v": 1}))).await;
    let s = advanced(db, s, 0, "retried create").await;
    let r2 = put(db, "t", "x", Some(r1), plain(json!({"v": 2}))).await;
    let s = advanced(db, s, 1, "update").await;
    put(db, "t", "x", Some(r2), plain(json!({"v": 2}))).await;
    let s = advanced(db, s, 0, "no-op").await;
    let _ = db.put_record("t", put_of("x", Some(r1), plain(json!({"v": 9})))).await;
    let s = advanced(db, s, 0, "conflict").await;
    let _ = db.put_record("t", put_of("", None, plain(json!({"v": 9})))).await;
    let s = advanced(db, s, 0, "invalid id").await;
    delete(db, "t", "x", None).await;
    let s = advanced(db, s, 1, "delete").await;
    let update = outpost_api::TableUpdate { description: Some("described".into()), ..Default::default() };
    ok(db.update_table("t", update).await, "update table");
    let s = advanced(db, s, 1, "update table").await;
    let ops = (0..3).map(|i| WriteOp::put("t", put_of(&format!("b{i}"), None, plain(json!({"i": i}))))).collect();
    ok(db.write_batch(ops).await, "batch");
    let s = advanced(db, s, 3, "batch of three").await;
    ok(db.delete_table("t").await, "delete table");
    advanced(db, s, 1, "delete table").await;
}

/// Pages follow `limit`; `last_seq` is the next `since`; `pending` counts what is left; the pages
/// together are every record once, in seq order.
pub async fn changes_page_by_limit_and_report_pending(f: &dyn Factory) {
    let db = f.fresh().await;
    crate::support::table(&*db, "t").await;
    for i in 0..7 {
        put(&*db, "t", &format!("r{i}"), None, plain(json!({"i": i}))).await;
    }
    let total = 8u64;
    let mut since = 0;
    let mut seen = Vec::new();
    loop {
        let page = ok(db.changes(ChangesRequest { since, limit: 3, tables: None }).await, "changes");
        assert!(page.changes.len() <= 3);
        seen.extend(page.changes.iter().map(|c| c.seq));
        assert_eq!(page.pending, total - seen.len() as u64, "pending after {seen:?}");
        if page.pending > 0 {
            assert_eq!(Some(page.last_seq), page.changes.last().map(|c| c.seq), "last_seq is the page's last seq");
        }
        since = page.last_seq;
        if page.pending == 0 {
            break;
        }
    }
    assert_eq!(seen, (1..=total).collect::<Vec<_>>());
    assert_eq!(since, total, "a drained reader ends at update_seq");
    let empty = ok(db.changes(ChangesRequest { since: total, limit: 3, tables: None }).await, "changes at the end");
    assert_eq!((empty.changes.len(), empty.last_seq, empty.pending), (0, total, 0));
    let tail = ok(db.changes(ChangesRequest { since: 6, limit: 100, tables: None }).await, "changes from 6");
    assert_eq!(tail.changes.iter().map(|c| c.seq).collect::<Vec<_>>(), [7, 8]);
}

/// A record written several times appears once, at its latest seq, with its winner and leaves.
pub async fn a_record_updated_twice_appears_once_at_its_latest_seq(f: &dyn Factory) {
    let db = f.fresh().await;
    crate::support::table(&*db, "t").await;
    let r1 = put(&*db, "t", "x", None, plain(json!({"v": 1}))).await;
    put(&*db, "t", "y", None, plain(json!({"v": 1}))).await;
    let r2 = put(&*db, "t", "x", Some(r1), plain(json!({"v": 2}))).await;
    let r3 = put(&*db, "t", "x", Some(r2), plain(json!({"v": 3}))).await;
    let changes = all_changes(&*db, 0, None).await;
    let summary: Vec<(u64, &str, &str)> = changes.iter().map(|c| (c.seq, c.table.as_str(), c.id.as_str())).collect();
    assert_eq!(summary, [(1, "_tables", "t"), (3, "t", "y"), (5, "t", "x")]);
    let x = &changes[2];
    assert_eq!((x.rev, x.deleted, &x.leaves), (r3, false, &vec![r3]));
    let tomb = delete(&*db, "t", "x", None).await;
    let after = all_changes(&*db, 5, None).await;
    assert_eq!(after.len(), 1);
    assert_eq!((after[0].seq, after[0].rev, after[0].deleted, &after[0].leaves), (6, tomb, true, &vec![tomb]));
}

/// A table filter returns that table's records and its `_tables` definition record, nothing else.
pub async fn a_table_filter_passes_the_table_and_its_definition(f: &dyn Factory) {
    let db = f.fresh().await;
    crate::support::table(&*db, "a").await;
    crate::support::table(&*db, "b").await;
    for (t, id) in [("a", "1"), ("b", "1"), ("a", "2"), ("b", "2")] {
        put(&*db, t, id, None, plain(json!({"t": t}))).await;
    }
    // (the tables asked for, the (table, id) entries expected in order)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)]);
    let cases: [Case<'_>; 3] = [
        (&["a"], &[("_tables", "a"), ("a", "1"), ("a", "2")]),
        (&["b"], &[("_tables", "b"), ("b", "1"), ("b", "2")]),
        (&["a", "b"], &[("_tables", "a"), ("_tables", "b"), ("a", "1"), ("b", "1"), ("a", "2"), ("b", "2")]),
    ];
    for (tables, expected) in cases {
        let filter = Some(tables.iter().map(|t| t.to_string()).collect());
        let got = all_changes(&*db, 0, filter).await;
        let got: Vec<(&str, &str)> = got.iter().map(|c| (c.table.as_str(), c.id.as_str())).collect();
        assert_eq!(got, expected, "filter {tables:?}");
    }
    let request = ChangesRequest { since: 0, limit: 2, tables: Some(vec!["a".into()]) };
    let page = ok(db.changes(request).await, "filtered page");
    assert_eq!(page.pending, 1, "pending counts only what the filter passes");
}

/// `chain_hash_at(n)` is the spec's fold over the database's events from its genesis hash, and
/// `info().chain` is the chain at update_seq.
pub async fn chain_hashes_follow_the_spec_formula(f: &dyn Factory) {
    let db = f.fresh().await;
    crate::support::table(&*db, "t").await;
    let r1 = put(&*db, "t", "x", None, plain(json!({"v": 1}))).await;
    let tomb = delete(&*db, "t", "x", Some(r1)).await;
    put(&*db, "t", "y", None, plain(json!({"v": 1}))).await;
    let table_rev = ok(db.get_table("t").await, "get_table").rev;
    let event = |table: &str, id: &str, rev, deleted| Event { table: table.into(), id: id.into(), rev, deleted };
    let y = get(&*db, "t", "y").await.rev;
    let events = [
        event("_tables", "t", table_rev, false),
        event("t", "x", r1, false),
        event("t", "x", tomb, true),
        event("t", "y", y, false),
    ];
    let expected = fold_chain(genesis_of(&*db).await, &events);
    assert_eq!(chain_of(&*db).await, expected);
    assert_eq!(ok(db.info().await, "info").chain, expected[4]);
}

/// Copy the revisions of `events` one at a time, in the given order, from `from` to `to`.
async fn replay(from: &dyn Database, to: &dyn Database, events: &[Event]) {
    for e in events {
        let wanted = vec![RecordRevs { table: e.table.clone(), id: e.id.clone(), revs: vec![e.rev] }];
        let revisions = ok(from.get_revisions(wanted).await, "get_revisions");
        assert_eq!(ok(to.put_revisions(revisions, None).await, "put_revisions").written, 1);
    }
}

/// Two databases that store the same revision events in the same order hold chains that verify
/// against one history; a third that stores them in another order does not, though its records end
/// the same. (Independently created databases have different genesis hashes — chain(0) commits to
/// the first epoch's uuid — so each chain is checked against the fold of a history from its own
/// genesis.)
pub async fn chain_hashes_commit_to_the_order_of_history(f: &dyn Factory) {
    let (a, b, c) = (f.fresh().await, f.fresh().await, f.fresh().await);
    crate::support::table(&*a, "t").await;
    for i in 0..5 {
        put(&*a, "t", &format!("r{i}"), None, plain(json!({"i": i}))).await;
    }
    // Each record was written once, so A's feed lists every event, in seq order.
    let history: Vec<Event> = all_changes(&*a, 0, None).await.iter().map(Event::of).collect();
    assert_eq!(history.len(), 6);
    replay(&*a, &*b, &history).await;
    let mut reordered = history.clone();
    reordered[1..].reverse();
    replay(&*a, &*c, &reordered).await;
    for (name, db) in [("A", &a), ("B", &b)] {
        let expected = fold_chain(genesis_of(&**db).await, &history);
        assert_eq!(chain_of(&**db).await, expected, "{name} verifies against A's history");
    }
    let c_chain = chain_of(&*c).await;
    assert_eq!(c_chain, fold_chain(genesis_of(&*c).await, &reordered), "C verifies against its own order");
    let as_if_in_order = fold_chain(genesis_of(&*c).await, &history);
    assert_eq!(c_chain[1], as_if_in_order[1], "the common prefix agrees");
    for n in 2..=6 {
        assert_ne!(c_chain[n], as_if_in_order[n], "C's chain at {n} does not verify against A's order");
    }
    let events_of = |changes: Vec<outpost_api::Change>| changes.iter().map(Event::of).collect::<Vec<_>>();
    assert_eq!(events_of(all_changes(&*b, 0, None).await), history, "B's feed is A's");
    assert_eq!(events_of(all_changes(&*c, 0, None).await), reordered, "C's feed is in its own order");
    for i in 0..5 {
        let id = format!("r{i}");
        let (ra, rb, rc) = (get(&*a, "t", &id).await, get(&*b, "t", &id).await, get(&*c, "t", &id).await);
        assert_eq!(ra, rb);
        assert_eq!(ra, rc);
    }
}

/// `chain_hash_at(0)` is the genesis hash of the first epoch; past update_seq is NotFound.
pub async fn chain_hash_at_zero_is_genesis_and_beyond_update_seq_is_not_found(f: &dyn Factory) {
    let db = f.fresh().await;
    let genesis = genesis_of(&*db).await;
    assert_eq!(ok(db.chain_hash_at(0).await, "chain_hash_at(0)"), genesis);
    assert_eq!(ok(db.info().await, "info").chain, genesis, "an empty database's chain is its genesis");
    expect_err(db.chain_hash_at(1).await, ErrorKind::NotFound, "chain_hash_at(1) of an empty database");
    crate::support::table(&*db, "t").await;
    assert_eq!(ok(db.chain_hash_at(0).await, "chain_hash_at(0)"), genesis, "genesis does not move");
    ok(db.chain_hash_at(1).await, "chain_hash_at(1)");
    expect_err(db.chain_hash_at(2).await, ErrorKind::NotFound, "chain_hash_at(update_seq + 1)");
    expect_err(db.chain_hash_at(u64::MAX).await, ErrorKind::NotFound, "chain_hash_at(u64::MAX)");
}

/// `wait_for_changes` returns update_seq at once when it is past `since`, and update_seq after the
/// timeout when nothing came.
pub async fn wait_for_changes_returns_at_once_when_behind(f: &dyn Factory) {
    let db = f.fresh().await;
    crate::support::table(&*db, "t").await;
    let put = PutRecord { id: Some("x".into()), attributes: plain(json!({"v": 1})), ..PutRecord::default() };
    ok(db.put_record("t", put).await, "put");
    let long = Duration::from_secs(300);
    assert_eq!(ok(db.wait_for_changes(0, long).await, "wait since 0"), 2);
    assert_eq!(ok(db.wait_for_changes(1, long).await, "wait since 1"), 2);
    assert_eq!(ok(db.wait_for_changes(2, Duration::from_millis(1)).await, "wait at the head"), 2);
    // A writer wakes a waiter.
    let waiter = {
        let db = db.clone();
        tokio::spawn(async move { db.wait_for_changes(2, long).await })
    };
    tokio::task::yield_now().await;
    ok(db.put_record("t", put_of("y", None, plain(json!({"v": 1})))).await, "put");
    // A guard against a waiter that is never woken (it would otherwise sit out its 300 s timeout).
    let guard = Duration::from_secs(120);
    let joined = tokio::time::timeout(guard, waiter).await.expect("a write wakes a waiting wait_for_changes");
    let woken = ok(joined.expect("the waiter does not panic"), "wait since 2");
    assert_eq!(woken, 3);
}
