//! `write_batch`: one transaction, one result per operation, in request order.

use outpost_api::{ErrorKind, WriteOp};
use outpost_engine::hash::revision_id;
use serde_json::json;

use crate::support::{all_changes, expect_err, get, ok, plain, put, put_of, update_seq};
use crate::Factory;

/// A failing operation gets its own error and does not stop the others.
pub async fn a_batch_reports_a_result_per_operation(f: &dyn Factory) {
    let db = f.fresh().await;
    crate::support::table(&*db, "t").await;
    let existing = put(&*db, "t", "e", None, plain(json!({"v": 1}))).await;
    let newer = put(&*db, "t", "e", Some(existing), plain(json!({"v": 2}))).await;
    let body = |v: i64| plain(json!({ "v": v }));
    let ops = vec![
        WriteOp::put("t", put_of("a", None, body(1))),
        WriteOp::put("t", put_of("", None, body(1))),
        WriteOp::put("t", put_of("e", Some(existing), body(3))),
        WriteOp::put("missing", put_of("a", None, body(1))),
        WriteOp::delete("t", "nobody", None),
        WriteOp::put("t", put_of("b", None, body(2))),
        WriteOp::delete("t", "e", Some(newer)),
    ];
    let seq = update_seq(&*db).await;
    let results = ok(db.write_batch(ops).await, "batch");
    assert_eq!(results.len(), 7);
    let a = ok(results[0].clone(), "op 0");
    assert_eq!((a.table.as_str(), a.id.as_str(), a.rev), ("t", "a", revision_id("t", "a", None, false, &body(1))));
    expect_err(results[1].clone(), ErrorKind::InvalidInput, "op 1: empty id");
    let conflict = expect_err(results[2].clone(), ErrorKind::Conflict, "op 2: stale rev");
    assert_eq!(conflict.current_rev, Some(newer));
    expect_err(results[3].clone(), ErrorKind::NotFound, "op 3: missing table");
    expect_err(results[4].clone(), ErrorKind::NotFound, "op 4: delete of a missing record");
    let b = ok(results[5].clone(), "op 5");
    let tomb = ok(results[6].clone(), "op 6");
    assert_eq!(tomb.rev, revision_id("t", "e", Some(&newer), true, &Default::default()));
    assert_eq!(update_seq(&*db).await, seq + 3, "three operations succeeded");
    assert_eq!(get(&*db, "t", "a").await.rev, a.rev);
    assert_eq!(get(&*db, "t", "b").await.rev, b.rev);
    expect_err(db.get_record("t", "e", Default::default()).await, ErrorKind::NotFound, "e was deleted");
    assert!(ok(db.write_batch(vec![]).await, "empty batch").is_empty());
    assert_eq!(update_seq(&*db).await, seq + 3);
}

/// The operations of a batch take contiguous seqs, in request order.
pub async fn a_batch_takes_contiguous_seqs(f: &dyn Factory) {
    let db = f.fresh().await;
    crate::support::table(&*db, "t").await;
    crate::support::table(&*db, "u").await;
    let seq = update_seq(&*db).await;
    let ids = ["e", "d", "c", "b", "a"];
    let ops = ids
        .iter()
        .enumerate()
        .map(|(i, id)| WriteOp::put(if i % 2 == 0 { "t" } else { "u" }, put_of(id, None, plain(json!({"i": i})))))
        .collect();
    let results = ok(db.write_batch(ops).await, "batch");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let changes = all_changes(&*db, seq, None).await;
    let got: Vec<(u64, &str)> = changes.iter().map(|c| (c.seq, c.id.as_str())).collect();
    let expected: Vec<(u64, &str)> = ids.iter().enumerate().map(|(i, id)| (seq + 1 + i as u64, *id)).collect();
    assert_eq!(got, expected);
    for (c, r) in changes.iter().zip(&results) {
        assert_eq!(c.rev, r.as_ref().expect("checked above").rev);
    }
}

/// Later operations of a batch see earlier ones: a create then an update of the same record, both
/// in one batch, succeed; a second create of it is a retry.
pub async fn a_batch_sees_its_own_earlier_operations(f: &dyn Factory) {
    let db = f.fresh().await;
    crate::support::table(&*db, "t").await;
    let (b1, b2) = (plain(json!({"v": 1})), plain(json!({"v": 2})));
    let r1 = revision_id("t", "x", None, false, &b1);
    let r2 = revision_id("t", "x", Some(&r1), false, &b2);
    let ops = vec![
        WriteOp::put("t", put_of("x", None, b1.clone())),
        WriteOp::put("t", put_of("x", Some(r1), b2.clone())),
        WriteOp::put("t", put_of("x", None, b1)),
        WriteOp::put("t", put_of("x", Some(r1), plain(json!({"v": "branch"})))),
    ];
    let seq = update_seq(&*db).await;
    let results = ok(db.write_batch(ops).await, "batch");
    let revs: Vec<_> = results.iter().take(3).map(|r| r.as_ref().map(|w| w.rev).map_err(Clone::clone)).collect();
    assert_eq!(revs, [Ok(r1), Ok(r2), Ok(r1)]);
    let conflict = expect_err(results[3].clone(), ErrorKind::Conflict, "an edit of a rev the batch superseded");
    assert_eq!(conflict.current_rev, Some(r2));
    assert_eq!(update_seq(&*db).await, seq + 2);
    let record = get(&*db, "t", "x").await;
    assert_eq!((record.rev, record.attributes), (r2, b2));
}

/// Ids generated for a batch's puts (UUID v7) sort in the batch's order, also in a batch large enough
/// to be validated on several threads.
pub async fn generated_ids_sort_in_the_batchs_order(f: &dyn Factory) {
    let db = f.fresh().await;
    crate::support::table(&*db, "t").await;
    let put = |i: usize| {
        WriteOp::put("t", outpost_api::PutRecord { attributes: plain(json!({ "i": i })), ..Default::default() })
    };
    let results = ok(db.write_batch((0..600).map(put).collect()).await, "batch");
    let ids: Vec<String> = results.into_iter().map(|r| ok(r, "put").id).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(ids, sorted, "generated ids are unique and in the batch's order");
}
