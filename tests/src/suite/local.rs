//! SPEC §17, local documents: what a CouchDB-protocol peer keeps on a database for its own use
//! (PouchDB's replication checkpoints), per table, with a revision each write must name, never
//! replicated and taking no seq, only in tables open to CouchDB peers.

use outpost_api::{ErrorKind, LocalDoc, NewTable};
use serde_json::json;

use crate::support::{expect_err, ok, put, replicate, table, update_seq};
use crate::Factory;

fn body(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    v.as_object().expect("an object").clone()
}

/// A local document is written at revision none, then each revision in turn; a write naming another
/// revision is a conflict; it reads back, is deleted at its revision, and is neither in the changes
/// feed nor replicated.
pub async fn local_documents_keep_revisions_and_stay_local(f: &dyn Factory) {
    let (a, b) = (f.fresh().await, f.fresh().await);
    ok(a.create_table(NewTable { name: "t".into(), couch: true, ..NewTable::default() }).await, "couch table");
    table(&*a, "closed").await;
    put(&*a, "t", "x", None, crate::support::plain(json!({"v": 1}))).await;
    let seq = update_seq(&*a).await;
    expect_err(a.get_local("t", "cp").await, ErrorKind::NotFound, "a document never written");
    let first = body(json!({"last_seq": "3-ab", "history": [{"session_id": "s", "last_seq": 3}]}));
    assert_eq!(ok(a.put_local("t", "cp", None, Some(first.clone())).await, "create"), 1);
    expect_err(a.put_local("t", "cp", None, Some(first.clone())).await, ErrorKind::Conflict, "create again");
    let second = body(json!({"last_seq": "9-ab"}));
    expect_err(a.put_local("t", "cp", Some(2), Some(second.clone())).await, ErrorKind::Conflict, "a future rev");
    assert_eq!(ok(a.put_local("t", "cp", Some(1), Some(second.clone())).await, "update"), 2);
    assert_eq!(ok(a.get_local("t", "cp").await, "read"), LocalDoc { rev: 2, body: second.clone() });
    // Per table: the same id in another table is another document.
    expect_err(a.get_local("u", "cp").await, ErrorKind::NotFound, "another table");
    assert_eq!(update_seq(&*a).await, seq, "no seq taken");
    replicate(&*a, &*b).await;
    expect_err(b.get_local("t", "cp").await, ErrorKind::NotFound, "never replicated");

    let big = body(json!({"pad": "x".repeat(outpost_engine::MAX_LOCAL_DOC_BYTES)}));
    expect_err(a.put_local("t", "cp", Some(2), Some(big)).await, ErrorKind::TooLarge, "past the limit");
    expect_err(a.put_local("Bad Name", "cp", None, Some(first)).await, ErrorKind::InvalidInput, "a bad table");
    expect_err(a.put_local("closed", "cp", None, Some(body(json!({})))).await, ErrorKind::Forbidden, "couch: false");
    expect_err(a.put_local("nothing", "cp", None, Some(body(json!({})))).await, ErrorKind::NotFound, "no table");
    expect_err(a.put_local("t", "cp", Some(1), None).await, ErrorKind::Conflict, "delete at an old rev");
    assert_eq!(ok(a.put_local("t", "cp", Some(2), None).await, "delete"), 2);
    expect_err(a.get_local("t", "cp").await, ErrorKind::NotFound, "deleted");
    expect_err(a.put_local("t", "cp", Some(2), None).await, ErrorKind::Conflict, "deleted twice");
    assert_eq!(ok(a.put_local("t", "cp", None, Some(second)).await, "created again"), 1);
}
