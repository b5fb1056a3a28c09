//! SPEC §4.1: local writes. The parent must be a current leaf; retries and no-ops are safe; deletes
//! are tombstones that a later create extends.

use outpost_api::{ErrorKind, GetOptions, ListOptions, PutRecord, Uuid};
use outpost_engine::hash::revision_id;
use serde_json::json;

use crate::support::{delete, expect_err, get, ok, plain, put, put_of, update_seq};
use crate::Factory;

/// A create returns a first-generation rev; reads return the body under that rev.
pub async fn a_created_record_reads_back(f: &dyn Factory) {
    let db = f.fresh().await;
    crate::support::table(&*db, "t").await;
    let body = plain(json!({"name": "Ann", "size": 4}));
    let result = ok(db.put_record("t", put_of("x", None, body.clone())).await, "create");
    assert_eq!((result.table.as_str(), result.id.as_str()), ("t", "x"));
    assert_eq!(result.rev.generation, 1);
    assert_eq!(result.rev, revision_id("t", "x", None, false, &body));
    let record = get(&*db, "t", "x").await;
    assert_eq!((record.table.as_str(), record.id.as_str(), record.rev, record.deleted), ("t", "x", result.rev, false));
    assert_eq!(record.attributes, body);
    assert_eq!(record.conflicts, Some(vec![]));
    let info = ok(db.info().await, "info");
    assert_eq!(info.record_count, 1, "table definitions are not counted as records");
    assert!(!info.backend.is_empty());
}

/// The live-record count follows creates, updates, deletes and revivals (and never counts tables).
pub async fn the_record_count_follows_creates_deletes_and_revivals(f: &dyn Factory) {
    let db = f.fresh().await;
    assert_eq!(count(&*db).await, 0);
    crate::support::table(&*db, "t").await;
    crate::support::table(&*db, "u").await;
    let a = put(&*db, "t", "a", None, plain(json!({"n": 1}))).await;
    put(&*db, "t", "b", None, plain(json!({"n": 2}))).await;
    put(&*db, "u", "a", None, plain(json!({"n": 3}))).await;
    assert_eq!(count(&*db).await, 3);
    put(&*db, "t", "a", Some(a), plain(json!({"n": 4}))).await;
    assert_eq!(count(&*db).await, 3, "an update is not a new record");
    delete(&*db, "t", "a", None).await;
    delete(&*db, "u", "a", None).await;
    assert_eq!(count(&*db).await, 1);
    put(&*db, "t", "a", None, plain(json!({"n": 5}))).await;
    assert_eq!(count(&*db).await, 2, "a revived record counts again");
}

async fn count(db: &dyn outpost_api::Database) -> u64 {
    ok(db.info().await, "info").record_count
}

/// A put without id gets a generated UUID v7 id.
pub async fn a_generated_id_is_a_uuid_v7(f: &dyn Factory) {
    let db = f.fresh().await;
    crate::support::table(&*db, "t").await;
    let put = PutRecord { attributes: plain(json!({"k": 1})), ..PutRecord::default() };
    let result = ok(db.put_record("t", put).await, "put without id");
    let uuid: Uuid = result.id.parse().unwrap_or_else(|e| panic!("generated id {:?} is not a uuid: {e}", result.id));
    assert_eq!(uuid.get_version_num(), 7);
    assert_eq!(get(&*db, "t", &result.id).await.rev, result.rev);
}

/// An update names the current rev, gets the next generation, and reads return the new body.
pub async fn an_update_names_the_current_rev(f: &dyn Factory) {
    let db = f.fresh().await;
    crate::support::table(&*db, "t").await;
    let r1 = put(&*db, "t", "x", None, plain(json!({"v": 1}))).await;
    let body = plain(json!({"v": 2, "w": "new"}));
    let r2 = put(&*db, "t", "x", Some(r1), body.clone()).await;
    assert_eq!(r2.generation, 2);
    assert_eq!(r2, revision_id("t", "x", Some(&r1), false, &body), "the rev commits to its parent");
    let record = get(&*db, "t", "x").await;
    assert_eq!((record.rev, record.attributes), (r2, body));
    let history = ok(db.get_record("t", "x", GetOptions { revs: true, ..GetOptions::default() }).await, "get revs");
    assert_eq!(history.revisions, Some(vec![r2, r1]));
    let old = ok(db.get_record("t", "x", GetOptions { rev: Some(r1), ..GetOptions::default() }).await, "get old rev");
    assert_eq!((old.rev, old.attributes), (r1, plain(json!({"v": 1}))));
}

/// A write on a rev that is not a current leaf (stale, or unknown) fails with Conflict carrying the
/// winning rev, and stores nothing.
pub async fn a_stale_rev_conflicts_with_the_winner(f: &dyn Factory) {
    let db = f.fresh().await;
    crate::support::table(&*db, "t").await;
    let r1 = put(&*db, "t", "x", None, plain(json!({"v": 1}))).await;
    let r2 = put(&*db, "t", "x", Some(r1), plain(json!({"v": 2}))).await;
    let unknown = revision_id("t", "x", Some(&r2), false, &plain(json!({"v": "never written"})));
    let seq = update_seq(&*db).await;
    for (parent, what) in [(r1, "stale parent"), (unknown, "unknown parent")] {
        let e = expect_err(
            db.put_record("t", put_of("x", Some(parent), plain(json!({"v": 3})))).await,
            ErrorKind::Conflict,
            what,
        );
        assert_eq!(e.current_rev, Some(r2), "{what}: the conflict names the winner");
        let e = expect_err(db.delete_record("t", "x", Some(parent)).await, ErrorKind::Conflict, what);
        assert_eq!(e.current_rev, Some(r2), "{what}: the conflict names the winner");
    }
    assert_eq!(update_seq(&*db).await, seq, "a conflict stores nothing");
    assert_eq!(get(&*db, "t", "x").await.rev, r2);
}

/// Creating (no rev) a record that exists with another body is a Conflict carrying the winner.
pub async fn creating_an_existing_record_conflicts(f: &dyn Factory) {
    let db = f.fresh().await;
    crate::support::table(&*db, "t").await;
    let r1 = put(&*db, "t", "x", None, plain(json!({"v": 1}))).await;
    let seq = update_seq(&*db).await;
    let e = expect_err(
        db.put_record("t", put_of("x", None, plain(json!({"v": 2})))).await,
        ErrorKind::Conflict,
        "create on existing",
    );
    assert_eq!(e.current_rev, Some(r1));
    assert_eq!(update_seq(&*db).await, seq);
}

/// Retrying a write (same parent, same body) returns the revision it made, with no new seq: for a
/// create, an update, and a delete, even after the record moved on.
pub async fn retrying_a_write_returns_the_same_rev(f: &dyn Factory) {
    let db = f.fresh().await;
    crate::support::table(&*db, "t").await;
    let b1 = plain(json!({"v": 1}));
    let b2 = plain(json!({"v": 2}));
    let r1 = put(&*db, "t", "x", None, b1.clone()).await;
    let seq = update_seq(&*db).await;
    assert_eq!(put(&*db, "t", "x", None, b1.clone()).await, r1, "a retried create");
    assert_eq!(update_seq(&*db).await, seq);
    let r2 = put(&*db, "t", "x", Some(r1), b2.clone()).await;
    let seq = update_seq(&*db).await;
    assert_eq!(put(&*db, "t", "x", Some(r1), b2.clone()).await, r2, "a retried update");
    assert_eq!(put(&*db, "t", "x", None, b1).await, r1, "a create retried after an update");
    assert_eq!(update_seq(&*db).await, seq);
    let r3 = delete(&*db, "t", "x", Some(r2)).await;
    let seq = update_seq(&*db).await;
    assert_eq!(delete(&*db, "t", "x", Some(r2)).await, r3, "a retried delete");
    assert_eq!(put(&*db, "t", "x", Some(r1), b2).await, r2, "an update retried after a delete");
    assert_eq!(update_seq(&*db).await, seq);
}

/// A write with the same attributes and deleted flag as its parent returns the parent, no new seq.
pub async fn a_write_that_changes_nothing_returns_the_parent(f: &dyn Factory) {
    let db = f.fresh().await;
    crate::support::table(&*db, "t").await;
    let body = plain(json!({"v": 1, "list": [1, 2]}));
    let r1 = put(&*db, "t", "x", None, body.clone()).await;
    let seq = update_seq(&*db).await;
    assert_eq!(put(&*db, "t", "x", Some(r1), body).await, r1);
    assert_eq!(update_seq(&*db).await, seq);
    assert_eq!(get(&*db, "t", "x").await.rev, r1);
}

/// A delete writes a tombstone on the named rev; reads are NotFound, except of the tombstone itself.
pub async fn a_deleted_record_is_not_found(f: &dyn Factory) {
    let db = f.fresh().await;
    crate::support::table(&*db, "t").await;
    let r1 = put(&*db, "t", "x", None, plain(json!({"v": 1}))).await;
    put(&*db, "t", "y", None, plain(json!({"v": 1}))).await;
    let seq = update_seq(&*db).await;
    let r2 = delete(&*db, "t", "x", Some(r1)).await;
    assert_eq!(r2.generation, 2);
    assert_eq!(r2, revision_id("t", "x", Some(&r1), true, &Default::default()), "a tombstone hashes an empty body");
    assert_eq!(update_seq(&*db).await, seq + 1);
    expect_err(db.get_record("t", "x", GetOptions::default()).await, ErrorKind::NotFound, "get deleted");
    let tomb =
        ok(db.get_record("t", "x", GetOptions { rev: Some(r2), ..GetOptions::default() }).await, "get tombstone");
    assert!(tomb.deleted);
    assert!(tomb.attributes.is_empty());
    let live = ok(db.list_records("t", ListOptions::default()).await, "list");
    assert_eq!(live.records.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["y"]);
    let all =
        ok(db.list_records("t", ListOptions { include_deleted: true, ..ListOptions::default() }).await, "list all");
    assert_eq!(all.records.iter().map(|r| (r.id.as_str(), r.deleted)).collect::<Vec<_>>(), [("x", true), ("y", false)]);
    assert_eq!(ok(db.info().await, "info").record_count, 1);
    let missing =
        expect_err(db.delete_record("t", "nobody", None).await, ErrorKind::NotFound, "delete a missing record");
    assert!(missing.current_rev.is_none());
    expect_err(db.get_record("t", "nobody", GetOptions::default()).await, ErrorKind::NotFound, "get a missing record");
}

/// A create on a record whose winner is a tombstone extends the tombstone's branch: generation
/// continues and the history runs through the tombstone.
pub async fn creating_after_a_delete_extends_the_tombstone_branch(f: &dyn Factory) {
    let db = f.fresh().await;
    crate::support::table(&*db, "t").await;
    let r1 = put(&*db, "t", "x", None, plain(json!({"v": 1}))).await;
    let r2 = delete(&*db, "t", "x", Some(r1)).await;
    let body = plain(json!({"v": "again"}));
    let r3 = put(&*db, "t", "x", None, body.clone()).await;
    assert_eq!(r3, revision_id("t", "x", Some(&r2), false, &body));
    let record =
        ok(db.get_record("t", "x", GetOptions { revs: true, conflicts: true, ..GetOptions::default() }).await, "get");
    assert_eq!(record.revisions, Some(vec![r3, r2, r1]));
    assert_eq!(record.conflicts, Some(vec![]));
    assert_eq!(record.attributes, body);
}

/// A delete without rev writes the tombstone on the current winner.
pub async fn a_delete_without_rev_deletes_the_winner(f: &dyn Factory) {
    let db = f.fresh().await;
    crate::support::table(&*db, "t").await;
    let r1 = put(&*db, "t", "x", None, plain(json!({"v": 1}))).await;
    let r2 = put(&*db, "t", "x", Some(r1), plain(json!({"v": 2}))).await;
    let r3 = delete(&*db, "t", "x", None).await;
    assert_eq!(r3, revision_id("t", "x", Some(&r2), true, &Default::default()));
    let options = GetOptions { rev: Some(r3), revs: true, ..GetOptions::default() };
    let tomb = ok(db.get_record("t", "x", options).await, "get tombstone");
    assert_eq!(tomb.revisions, Some(vec![r3, r2, r1]));
    expect_err(db.get_record("t", "x", GetOptions::default()).await, ErrorKind::NotFound, "get deleted");
}

/// `list_records` returns records in UTF-8 byte order of id, `limit` per page, with `next_after`.
pub async fn records_list_in_id_order_by_pages(f: &dyn Factory) {
    let db = f.fresh().await;
    crate::support::table(&*db, "t").await;
    let ids = ["m", "b", "é", "a", "Z", "z", "a0", "~"];
    for id in ids {
        put(&*db, "t", id, None, plain(json!({"id": id}))).await;
    }
    let mut expected: Vec<&str> = ids.to_vec();
    expected.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = ok(
            db.list_records("t", ListOptions { after: after.clone(), limit: 3, include_deleted: false }).await,
            "list",
        );
        assert!(page.records.len() <= 3);
        for r in &page.records {
            assert_eq!(r.attributes, plain(json!({"id": r.id})));
        }
        seen.extend(page.records.into_iter().map(|r| r.id));
        match page.next_after {
            Some(next) => {
                assert_eq!(Some(&next), seen.last(), "next_after is the last id of the page");
                after = Some(next);
            }
            None => break,
        }
    }
    assert_eq!(seen, expected);
}
