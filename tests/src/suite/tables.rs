//! SPEC §2: tables, their definitions as `_tables` records, and field declarations.

use std::collections::BTreeMap;

use outpost_api::{
    Body, ErrorKind, FieldDecl, GetOptions, NewTable, ReconcilePolicy, RecordRevs, RevisionData, TableUpdate, Value,
    ValueType,
};
use outpost_engine::hash::revision_id;
use serde_json::json;

use crate::support::{change_of, expect_err, get, ok, plain, put, put_of, replicate, update_seq};
use crate::Factory;

/// Create, get, list, update (with and without a rev; a stale rev conflicts), delete, create again.
pub async fn tables_can_be_created_read_listed_updated_and_deleted(f: &dyn Factory) {
    let db = f.fresh().await;
    assert!(ok(db.list_tables().await, "list").is_empty(), "a fresh database has no tables");
    let fields = BTreeMap::from([("qty".to_owned(), FieldDecl { ty: ValueType::Int, required: true })]);
    let new = NewTable {
        name: "orders".into(),
        description: "what was ordered".into(),
        created_by: "ann".into(),
        policy: ReconcilePolicy::MergeFields,
        fields: fields.clone(),
        metadata: plain(json!({"owner": "ops", "tags": ["a", "b"]})),
        keep_bodies: Some(3),
        couch: false,
    };
    let created = ok(db.create_table(new.clone()).await, "create");
    assert_eq!(
        (&created.name, &created.description, &created.created_by, created.policy, &created.fields, &created.metadata),
        (&new.name, &new.description, &new.created_by, new.policy, &new.fields, &new.metadata)
    );
    assert_eq!(created.rev.generation, 1);
    assert_eq!(created.keep_bodies, Some(3));
    assert_eq!(ok(db.get_table("orders").await, "get"), created);
    crate::support::table(&*db, "aardvarks").await;
    let names: Vec<String> = ok(db.list_tables().await, "list").into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["aardvarks", "orders"], "listed by name");

    let update = TableUpdate { rev: Some(created.rev), description: Some("v2".into()), ..TableUpdate::default() };
    let v2 = ok(db.update_table("orders", update).await, "update");
    assert_eq!((v2.rev.generation, v2.description.as_str(), v2.keep_bodies), (2, "v2", Some(3)));
    assert_eq!((&v2.fields, v2.policy, v2.created_at), (&fields, ReconcilePolicy::MergeFields, created.created_at));
    let seq = update_seq(&*db).await;
    let stale = TableUpdate { rev: Some(created.rev), description: Some("stale".into()), ..TableUpdate::default() };
    expect_err(db.update_table("orders", stale).await, ErrorKind::Conflict, "update on a stale rev");
    assert_eq!(update_seq(&*db).await, seq);
    let update = TableUpdate {
        policy: Some(ReconcilePolicy::KeepConflicts),
        fields: Some(BTreeMap::new()),
        keep_bodies: Some(None),
        ..Default::default()
    };
    let v3 = ok(db.update_table("orders", update).await, "update without rev");
    assert_eq!(
        (v3.rev.generation, v3.policy, v3.fields.len(), v3.description.as_str(), v3.keep_bodies),
        (3, ReconcilePolicy::KeepConflicts, 0, "v2", None)
    );
    assert_eq!(ok(db.get_table("orders").await, "get"), v3);

    ok(db.delete_table("orders").await, "delete");
    expect_err(db.get_table("orders").await, ErrorKind::NotFound, "get a deleted table");
    expect_err(db.delete_table("orders").await, ErrorKind::NotFound, "delete a deleted table");
    let update = TableUpdate { description: Some("gone".into()), ..TableUpdate::default() };
    expect_err(db.update_table("orders", update).await, ErrorKind::NotFound, "update a deleted table");
    let names: Vec<String> = ok(db.list_tables().await, "list").into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["aardvarks"]);
    let tomb = change_of(&*db, "_tables", "orders").await;
    assert!(tomb.deleted, "the definition record is a tombstone");
    let again = ok(db.create_table(NewTable { name: "orders".into(), ..NewTable::default() }).await, "create again");
    assert_eq!(again.rev.generation, 5, "the new definition extends the tombstone's branch");
    assert_eq!((again.policy, again.fields.len()), (ReconcilePolicy::KeepConflicts, 0));
}

/// Creating a table whose name is live is AlreadyExists and stores nothing.
pub async fn creating_a_live_table_again_already_exists(f: &dyn Factory) {
    let db = f.fresh().await;
    let first = crate::support::table(&*db, "t").await;
    let seq = update_seq(&*db).await;
    let again = NewTable { name: "t".into(), description: "another".into(), ..NewTable::default() };
    expect_err(db.create_table(again).await, ErrorKind::AlreadyExists, "create an existing table");
    assert_eq!(update_seq(&*db).await, seq);
    assert_eq!(ok(db.get_table("t").await, "get"), first);
}

/// A table definition is the `_tables` record named after it: its rev is the record's winner, it
/// appears in the feed, and it replicates like data.
pub async fn table_definitions_replicate_as_records(f: &dyn Factory) {
    let (a, b) = (f.fresh().await, f.fresh().await);
    let def = crate::support::table_with(&*a, "t", ReconcilePolicy::MergeFields).await;
    let change = change_of(&*a, "_tables", "t").await;
    assert_eq!((change.seq, change.rev, change.deleted), (1, def.rev, false));
    let revisions = ok(
        a.get_revisions(vec![RecordRevs { table: "_tables".into(), id: "t".into(), revs: vec![def.rev] }]).await,
        "get",
    );
    assert_eq!(revisions.len(), 1);
    let body = revisions[0].attributes.as_ref().expect("a definition has a body").attributes();
    assert_eq!(def.rev, revision_id("_tables", "t", None, false, &body), "a definition is hashed like any record");
    assert_eq!(replicate(&*a, &*b).await, 1);
    assert_eq!(ok(b.get_table("t").await, "replicated definition"), def);
    put(&*b, "t", "x", None, plain(json!({"v": 1}))).await;
    ok(a.delete_table("t").await, "delete");
    replicate(&*a, &*b).await;
    expect_err(b.get_table("t").await, ErrorKind::NotFound, "a replicated table delete");
}

/// Field declarations are checked on local writes (required fields, types; null allowed when not
/// required) and not on replicated revisions, which are history.
pub async fn field_declarations_bind_local_writes_only(f: &dyn Factory) {
    let db = f.fresh().await;
    let fields = BTreeMap::from([
        ("qty".to_owned(), FieldDecl { ty: ValueType::Int, required: true }),
        ("note".to_owned(), FieldDecl { ty: ValueType::String, required: false }),
    ]);
    ok(db.create_table(NewTable { name: "t".into(), fields, ..NewTable::default() }).await, "create");
    let seq = update_seq(&*db).await;
    let rejected = [
        ("missing required field", json!({"note": "hi"})),
        ("wrong type", json!({"qty": "three"})),
        ("null in a required field", json!({"qty": null})),
        ("wrong type of optional field", json!({"qty": 1, "note": 5})),
    ];
    for (what, body) in rejected {
        expect_err(db.put_record("t", put_of("x", None, plain(body))).await, ErrorKind::InvalidInput, what);
    }
    let batch =
        ok(db.write_batch(vec![outpost_api::WriteOp::put("t", put_of("x", None, plain(json!({}))))]).await, "batch");
    expect_err(batch.into_iter().next().expect("one result"), ErrorKind::InvalidInput, "batch without qty");
    assert_eq!(update_seq(&*db).await, seq, "nothing stored");
    for (id, body) in
        [("a", json!({"qty": 1})), ("b", json!({"qty": 2, "note": null})), ("c", json!({"qty": 3, "extra": true}))]
    {
        put(&*db, "t", id, None, plain(body)).await;
    }
    // A delete carries no fields and is never refused for it.
    crate::support::delete(&*db, "t", "c", None).await;
    // A replicated revision breaking the declarations is stored: it is history.
    let body = plain(json!({"qty": "lots"}));
    let rev = revision_id("t", "r", None, false, &body);
    let revision = RevisionData {
        table: "t".into(),
        id: "r".into(),
        rev,
        deleted: false,
        attributes: Some(Body::new(&body)),
        ancestry: vec![],
        foreign: None,
    };
    assert_eq!(ok(db.put_revisions(vec![revision], None).await, "put_revisions").written, 1);
    assert_eq!(get(&*db, "t", "r").await.attributes["qty"], Value::string("lots"));
}

/// Records of a table that does not exist, or was deleted, cannot be read or written.
pub async fn records_of_a_missing_or_deleted_table_are_not_found(f: &dyn Factory) {
    let db = f.fresh().await;
    let seq = update_seq(&*db).await;
    expect_err(db.put_record("nope", put_of("x", None, plain(json!({"v": 1})))).await, ErrorKind::NotFound, "put");
    expect_err(db.get_record("nope", "x", GetOptions::default()).await, ErrorKind::NotFound, "get");
    expect_err(db.list_records("nope", Default::default()).await, ErrorKind::NotFound, "list");
    assert_eq!(update_seq(&*db).await, seq);
    crate::support::table(&*db, "t").await;
    let r1 = put(&*db, "t", "x", None, plain(json!({"v": 1}))).await;
    ok(db.delete_table("t").await, "delete table");
    let seq = update_seq(&*db).await;
    expect_err(db.get_record("t", "x", GetOptions::default()).await, ErrorKind::NotFound, "get in a deleted table");
    expect_err(db.put_record("t", put_of("x", Some(r1), plain(json!({"v": 2})))).await, ErrorKind::NotFound, "put");
    expect_err(db.delete_record("t", "x", Some(r1)).await, ErrorKind::NotFound, "delete in a deleted table");
    assert_eq!(update_seq(&*db).await, seq);
    // The records stayed stored: re-creating the table shows them again.
    crate::support::table(&*db, "t").await;
    assert_eq!(get(&*db, "t", "x").await.rev, r1);
}

/// Of two concurrent creates of one table name, one succeeds and the other is AlreadyExists (not
/// Conflict): the existence check and the write are one transaction.
pub async fn concurrent_creates_of_one_table_already_exist(f: &dyn Factory) {
    let db = f.fresh().await;
    let mut outcomes = Vec::new();
    for i in 0..50 {
        let name = format!("t{i}");
        let racers: Vec<_> = (0..2)
            .map(|_| {
                let (db, name) = (db.clone(), name.clone());
                tokio::spawn(async move { db.create_table(NewTable { name, ..NewTable::default() }).await })
            })
            .collect();
        let mut kinds = Vec::new();
        for racer in racers {
            kinds.push(racer.await.expect("no panic").err().map(|e| e.kind));
        }
        kinds.sort_by_key(|k| k.is_some());
        outcomes.push((name, kinds));
    }
    let wrong: Vec<_> = outcomes.iter().filter(|(_, k)| k[..] != [None, Some(ErrorKind::AlreadyExists)]).collect();
    assert!(wrong.is_empty(), "expected one success and one AlreadyExists per name; got {wrong:?}");
    assert_eq!(update_seq(&*db).await, 50, "one definition revision per name");
}

/// A table opens to CouchDB-protocol peers (`couch`, SPEC §17) only under keep-conflicts, on create and
/// on update, and says so in its definition.
pub async fn couch_tables_use_keep_conflicts(f: &dyn Factory) {
    let db = f.fresh().await;
    let merging =
        NewTable { name: "m".into(), policy: ReconcilePolicy::MergeFields, couch: true, ..NewTable::default() };
    expect_err(db.create_table(merging).await, ErrorKind::InvalidInput, "a couch table under merge-fields");
    let seq = update_seq(&*db).await;
    let open = ok(db.create_table(NewTable { name: "c".into(), couch: true, ..NewTable::default() }).await, "create");
    assert!(open.couch && ok(db.get_table("c").await, "get").couch);
    assert_eq!(update_seq(&*db).await, seq + 1, "the refused one stored nothing");
    let to_merge = TableUpdate { policy: Some(ReconcilePolicy::MergeFields), ..TableUpdate::default() };
    expect_err(db.update_table("c", to_merge).await, ErrorKind::InvalidInput, "merge-fields on a couch table");
    let closed = ok(db.update_table("c", TableUpdate { couch: Some(false), ..TableUpdate::default() }).await, "close");
    assert!(!closed.couch);
}
