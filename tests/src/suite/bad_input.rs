//! SPEC §13: every input is validated at the boundary with a precise error, and nothing invalid is
//! stored (update_seq does not move). Data that looks like SQL or paths is stored verbatim.

use outpost_api::{
    Attributes, Body, ChangesRequest, Database, ErrorKind, GetOptions, ListOptions, NewTable, RecordRevs, RevisionData,
    Value, WriteOp,
};
use outpost_engine::hash::revision_id;
use serde_json::json;

use crate::support::{all_changes, expect_err, get, nested, ok, plain, put, put_of, update_seq};
use crate::Factory;

/// A revision of `t/id` with a correct hash.
fn revision(id: &str, attributes: Attributes) -> RevisionData {
    let rev = revision_id("t", id, None, false, &attributes);
    RevisionData {
        table: "t".into(),
        id: id.into(),
        rev,
        deleted: false,
        attributes: Some(Body::new(&attributes)),
        ancestry: vec![],
        foreign: None,
    }
}

/// Check `db` stored nothing since `seq`.
async fn unchanged(db: &dyn Database, seq: u64, what: &str) {
    assert_eq!(update_seq(db).await, seq, "{what}: nothing is stored");
}

/// Table names outside `^[a-z][a-z0-9_]{0,62}$`, and reserved ones, are InvalidInput everywhere.
pub async fn invalid_table_names_are_rejected(f: &dyn Factory) {
    let db = f.fresh().await;
    let long = "a".repeat(64);
    let names = ["../x", "A", "_x", &long, "", "1a", "a-b", "a b", "a.b", "é", "_tables", "t;drop", "x'--", "a/b"];
    for name in names {
        let what = format!("table name {name:?}");
        let new = NewTable { name: name.into(), ..NewTable::default() };
        expect_err(db.create_table(new).await, ErrorKind::InvalidInput, &format!("create {what}"));
        expect_err(db.get_table(name).await, ErrorKind::InvalidInput, &format!("get {what}"));
        expect_err(db.delete_table(name).await, ErrorKind::InvalidInput, &format!("delete {what}"));
        let put = db.put_record(name, put_of("x", None, plain(json!({"v": 1})))).await;
        expect_err(put, ErrorKind::InvalidInput, &format!("put into {what}"));
        expect_err(
            db.get_record(name, "x", GetOptions::default()).await,
            ErrorKind::InvalidInput,
            &format!("get from {what}"),
        );
        expect_err(
            db.list_records(name, ListOptions::default()).await,
            ErrorKind::InvalidInput,
            &format!("list {what}"),
        );
        if name != "_tables" {
            let request = ChangesRequest { tables: Some(vec![name.into()]), ..ChangesRequest::default() };
            expect_err(db.changes(request).await, ErrorKind::InvalidInput, &format!("changes of {what}"));
        }
    }
    unchanged(&*db, 0, "invalid table names").await;
    let longest = "a".repeat(63);
    crate::support::table(&*db, &longest).await;
    put(&*db, &longest, "x", None, plain(json!({"v": 1}))).await;
}

/// Ids must be 1–256 bytes of UTF-8 without control characters; 256 bytes is fine.
pub async fn invalid_record_ids_are_rejected(f: &dyn Factory) {
    let db = f.fresh().await;
    crate::support::table(&*db, "t").await;
    let seq = update_seq(&*db).await;
    let (long, long_utf8) = ("a".repeat(257), format!("{}a", "é".repeat(128)));
    let ids = ["", &long, &long_utf8, "a\nb", "a\0b", "\u{7f}", "tab\there", "c1\u{85}", "cr\r"];
    for id in ids {
        let what = format!("id {id:?}");
        let put = db.put_record("t", put_of(id, None, plain(json!({"v": 1})))).await;
        expect_err(put, ErrorKind::InvalidInput, &format!("put {what}"));
        expect_err(
            db.get_record("t", id, GetOptions::default()).await,
            ErrorKind::InvalidInput,
            &format!("get {what}"),
        );
        expect_err(db.delete_record("t", id, None).await, ErrorKind::InvalidInput, &format!("delete {what}"));
        let batch =
            ok(db.write_batch(vec![WriteOp::put("t", put_of(id, None, plain(json!({"v": 1}))))]).await, "batch");
        expect_err(
            batch.into_iter().next().expect("one result"),
            ErrorKind::InvalidInput,
            &format!("batch put {what}"),
        );
        let replicated = db.put_revisions(vec![revision(id, plain(json!({"v": 1})))], None).await;
        expect_err(replicated, ErrorKind::InvalidInput, &format!("put_revisions {what}"));
    }
    unchanged(&*db, seq, "invalid ids").await;
    for id in ["a".repeat(256), "é".repeat(128), "x".into()] {
        put(&*db, "t", &id, None, plain(json!({"v": 1}))).await;
        assert_eq!(get(&*db, "t", &id).await.id, id);
    }
}

/// Ids and attribute names that look like SQL, paths or markup are data: stored and read back verbatim.
pub async fn ids_that_look_like_sql_or_paths_are_stored_verbatim(f: &dyn Factory) {
    let db = f.fresh().await;
    crate::support::table(&*db, "t").await;
    let ids = [
        "'; DROP TABLE records; --",
        "Robert'); DROP TABLE students;--",
        "x' OR '1'='1",
        "\"double\" \"quoted\"",
        "../../etc/passwd",
        "..",
        ".",
        "/",
        "a/b\\c",
        "%2e%2e%2f",
        "C:\\Windows\\system32",
        "<script>alert(1)</script>",
        "?x=1&y=2#frag",
        " leading and trailing ",
        "😀 emoji",
        "*",
        "%",
        "_underscore",
        "$1",
    ];
    let body = plain(json!({
        "'; DROP TABLE records; --": "sql",
        "../../etc/passwd": "path",
        "a.b": "dotted",
        "$where": "mongo",
        "select": "keyword",
    }));
    for id in ids {
        let rev = put(&*db, "t", id, None, body.clone()).await;
        let record = get(&*db, "t", id).await;
        assert_eq!((record.id.as_str(), record.rev, &record.attributes), (id, rev, &body), "id {id:?}");
        let wanted = vec![RecordRevs { table: "t".into(), id: id.into(), revs: vec![rev] }];
        assert_eq!(ok(db.get_revisions(wanted).await, "get_revisions")[0].id, id);
    }
    let mut expected: Vec<&str> = ids.to_vec();
    expected.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let listed = ok(db.list_records("t", ListOptions::default()).await, "list");
    assert_eq!(listed.records.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), expected);
    let fed: Vec<String> = all_changes(&*db, 1, None).await.into_iter().map(|c| c.id).collect();
    assert_eq!(fed, ids, "the feed lists them in write order");
    // Each is a record of its own: deleting one leaves the others.
    crate::support::delete(&*db, "t", "'; DROP TABLE records; --", None).await;
    assert_eq!(ok(db.info().await, "info").record_count, ids.len() as u64 - 1);
    assert_eq!(get(&*db, "t", "%").await.attributes, body);
}

/// Attribute names must be 1–256 bytes and not start with `_`, in records and table metadata.
pub async fn invalid_attribute_names_are_rejected(f: &dyn Factory) {
    let db = f.fresh().await;
    crate::support::table(&*db, "t").await;
    let seq = update_seq(&*db).await;
    for name in [String::new(), "_x".into(), "_".into(), "a".repeat(257)] {
        let what = format!("attribute name {name:?}");
        let body = Attributes::new().with(name.clone(), Value::Int(1));
        expect_err(db.put_record("t", put_of("x", None, body.clone())).await, ErrorKind::InvalidInput, &what);
        let new = NewTable { name: "m".into(), metadata: body, ..NewTable::default() };
        expect_err(db.create_table(new).await, ErrorKind::InvalidInput, &format!("metadata {what}"));
        let wire = serde_json::from_value::<Attributes>(json!({ name.clone(): {"int": "1"} }));
        assert!(wire.is_err(), "{what} is rejected when deserialised");
    }
    unchanged(&*db, seq, "invalid attribute names").await;
    put(&*db, "t", "x", None, Attributes::new().with("a".repeat(256), Value::Int(1)).with("a_b", Value::Null)).await;
}

/// Values nested deeper than 32 levels are InvalidInput, for local and replicated writes; 32 is fine.
pub async fn nesting_deeper_than_the_limit_is_invalid(f: &dyn Factory) {
    let db = f.fresh().await;
    crate::support::table(&*db, "t").await;
    let seq = update_seq(&*db).await;
    let in_map = |depth: usize| {
        let mut v = nested(depth - 1);
        v = Value::Map([("k".to_owned(), v)].into());
        v
    };
    for (what, value) in [("list", nested(33)), ("map", in_map(33))] {
        assert_eq!(value.depth(), 33);
        let body = Attributes::new().with("deep", value);
        expect_err(db.put_record("t", put_of("x", None, body.clone())).await, ErrorKind::InvalidInput, what);
        let batch = ok(db.write_batch(vec![WriteOp::put("t", put_of("x", None, body.clone()))]).await, "batch");
        expect_err(batch.into_iter().next().expect("one result"), ErrorKind::InvalidInput, what);
        expect_err(db.put_revisions(vec![revision("x", body)], None).await, ErrorKind::InvalidInput, what);
    }
    unchanged(&*db, seq, "deep nesting").await;
    put(&*db, "t", "list", None, Attributes::new().with("deep", nested(32))).await;
    put(&*db, "t", "map", None, Attributes::new().with("deep", in_map(32))).await;
    assert_eq!(get(&*db, "t", "list").await.attributes["deep"], nested(32));
}

/// A body over 1 MiB in canonical bytes is TooLarge, for local and replicated writes; exactly 1 MiB
/// is fine.
pub async fn bodies_over_the_limit_are_too_large(f: &dyn Factory) {
    let db = f.fresh().await;
    crate::support::table(&*db, "t").await;
    let seq = update_seq(&*db).await;
    // map(1 attribute "s" → string n): 0x09 + u32 + lb("s") + 0x05 + u32 + n = 15 + n bytes.
    let body_of = |n: usize| Attributes::new().with("s", Value::string("x".repeat(n)));
    let limit = 1 << 20;
    assert_eq!(outpost_engine::canonical::encode_attributes(&body_of(limit - 15)).len(), limit);
    let over = body_of(limit - 14);
    expect_err(db.put_record("t", put_of("x", None, over.clone())).await, ErrorKind::TooLarge, "put");
    let batch = ok(db.write_batch(vec![WriteOp::put("t", put_of("x", None, over.clone()))]).await, "batch");
    expect_err(batch.into_iter().next().expect("one result"), ErrorKind::TooLarge, "batch put");
    expect_err(db.put_revisions(vec![revision("x", over)], None).await, ErrorKind::TooLarge, "put_revisions");
    unchanged(&*db, seq, "bodies over the limit").await;
    let at_limit = body_of(limit - 15);
    put(&*db, "t", "x", None, at_limit.clone()).await;
    assert_eq!(get(&*db, "t", "x").await.attributes, at_limit);
}

/// More than 10,000 operations in one batch, or revisions in one put_revisions, is TooLarge;
/// 10,000 is accepted (here all invalid, each with its own error).
pub async fn batches_over_the_limit_are_too_large(f: &dyn Factory) {
    let db = f.fresh().await;
    crate::support::table(&*db, "t").await;
    let seq = update_seq(&*db).await;
    let op = WriteOp::put("t", put_of("", None, plain(json!({"v": 1}))));
    expect_err(db.write_batch(vec![op.clone(); 10_001]).await, ErrorKind::TooLarge, "10,001 operations");
    let results = ok(db.write_batch(vec![op; 10_000]).await, "10,000 operations");
    assert_eq!(results.len(), 10_000);
    assert!(results.iter().all(|r| r.as_ref().is_err_and(|e| e.kind == ErrorKind::InvalidInput)));
    let revisions = vec![revision("x", plain(json!({"v": 1}))); 10_001];
    expect_err(db.put_revisions(revisions, None).await, ErrorKind::TooLarge, "10,001 revisions");
    unchanged(&*db, seq, "batches over the limit").await;
}

/// Page limits must be 1–10,000.
pub async fn page_limits_outside_the_range_are_invalid(f: &dyn Factory) {
    let db = f.fresh().await;
    crate::support::table(&*db, "t").await;
    for limit in [0, 10_001, usize::MAX] {
        let request = ChangesRequest { limit, ..ChangesRequest::default() };
        expect_err(db.changes(request).await, ErrorKind::InvalidInput, &format!("changes limit {limit}"));
        let options = ListOptions { limit, ..ListOptions::default() };
        expect_err(db.list_records("t", options).await, ErrorKind::InvalidInput, &format!("list limit {limit}"));
    }
    for limit in [1, 10_000] {
        ok(db.changes(ChangesRequest { limit, ..ChangesRequest::default() }).await, "changes");
        ok(db.list_records("t", ListOptions { limit, ..ListOptions::default() }).await, "list");
    }
}

/// Replicated revisions with a bad shape are InvalidInput (bad names, ancestry that is not a chain of
/// generations, a live revision without a body, a `_tables` body that is no definition), and the
/// batch they came in stores nothing.
pub async fn malformed_replicated_revisions_are_rejected(f: &dyn Factory) {
    let db = f.fresh().await;
    crate::support::table(&*db, "t").await;
    let seq = update_seq(&*db).await;
    let body = plain(json!({"v": 1}));
    let r1 = revision_id("t", "x", None, false, &body);
    let on = |parent: &outpost_api::RevId| revision_id("t", "x", Some(parent), false, &body);
    let r2 = on(&r1);
    let r3 = on(&r2);
    let good = revision("g", body.clone());
    let base = RevisionData {
        table: "t".into(),
        id: "x".into(),
        rev: r1,
        deleted: false,
        attributes: Some(Body::new(&body)),
        ancestry: vec![],
        foreign: None,
    };
    let not_a_definition = plain(json!({"hello": "world"}));
    let cases = [
        (
            "bad table name",
            RevisionData { table: "../t".into(), rev: revision_id("../t", "x", None, false, &body), ..base.clone() },
        ),
        (
            "reserved table",
            RevisionData {
                table: "_other".into(),
                rev: revision_id("_other", "x", None, false, &body),
                ..base.clone()
            },
        ),
        ("gap in ancestry", RevisionData { rev: r3, ancestry: vec![r1], ..base.clone() }),
        ("ancestry out of order", RevisionData { rev: r3, ancestry: vec![r1, r2], ..base.clone() }),
        ("no ancestry past generation 1", RevisionData { rev: r2, ancestry: vec![], ..base.clone() }),
        ("live revision without body", RevisionData { attributes: None, ..base.clone() }),
        (
            "_tables body that is no definition",
            RevisionData {
                table: "_tables".into(),
                id: "u".into(),
                rev: revision_id("_tables", "u", None, false, &not_a_definition),
                attributes: Some(Body::new(&not_a_definition)),
                ..base.clone()
            },
        ),
    ];
    for (what, bad) in cases {
        expect_err(db.put_revisions(vec![good.clone(), bad], None).await, ErrorKind::InvalidInput, what);
        unchanged(&*db, seq, what).await;
    }
    assert_eq!(ok(db.put_revisions(vec![good, base], None).await, "well-formed revisions").written, 2);
}

/// SPEC §13, the replication protocol as an input boundary: seqs above i64::MAX, oversized filters and
/// requests, generations at and past the largest, long ancestries and oversized table definitions are
/// refused (or bounded) the same way on every backend, store nothing, and leave the feed readable.
pub async fn protocol_inputs_are_bounded(f: &dyn Factory) {
    use outpost_api::{ChainHash, ResumePoint, RevId, MAX_GENERATION};

    let db = f.fresh().await;
    crate::support::table(&*db, "t").await;
    let seq = update_seq(&*db).await;
    let huge = i64::MAX as u64 + 1;

    let request = ChangesRequest { since: huge, ..ChangesRequest::default() };
    expect_err(db.changes(request).await, ErrorKind::InvalidInput, "changes since > i64::MAX");
    expect_err(db.events(huge, 10).await, ErrorKind::InvalidInput, "events after > i64::MAX");
    expect_err(db.knowledge(Some(u64::MAX)).await, ErrorKind::InvalidInput, "knowledge upto > i64::MAX");
    let resume =
        ResumePoint { source: outpost_api::Uuid::new_v4(), source_seq: huge, source_chain: ChainHash([0; 32]) };
    let put = db.put_revisions(vec![revision("r", plain(json!({"v": 1})))], Some(resume)).await;
    expect_err(put, ErrorKind::InvalidInput, "a resume point past i64::MAX");
    unchanged(&*db, seq, "seqs past i64::MAX").await;

    let tables: Vec<String> = (0..101).map(|i| format!("t{i}")).collect();
    let request = ChangesRequest { tables: Some(tables), ..ChangesRequest::default() };
    expect_err(db.changes(request).await, ErrorKind::InvalidInput, "a filter of 101 tables");

    // Duplicates collapse: 60,000 copies of one key are one entry, answered once.
    let one = revision("dup", plain(json!({"v": 1})));
    ok(db.put_revisions(vec![one.clone()], None).await, "one revision");
    let copies = vec![RecordRevs { table: "t".into(), id: "dup".into(), revs: vec![one.rev] }; 60_000];
    let got = ok(db.get_revisions(copies.clone()).await, "revs/get of copies");
    assert_eq!(got.len(), 1, "one revision answered, not 60,000");
    assert!(ok(db.revs_diff(copies).await, "revs-diff of copies").is_empty());
    let distinct: Vec<RecordRevs> =
        (0..10_001).map(|i| RecordRevs { table: "t".into(), id: format!("r{i}"), revs: vec![one.rev] }).collect();
    expect_err(db.revs_diff(distinct).await, ErrorKind::TooLarge, "revs-diff of 10,001 records");
    let seq = update_seq(&*db).await;

    // The largest generation is a revision like any; a write past it is refused, and the feed stays
    // readable for every peer.
    let body = plain(json!({"v": 2}));
    let top_parent = RevId::new(MAX_GENERATION - 1, [7; 16]);
    let top = RevisionData {
        table: "t".into(),
        id: "deep".into(),
        rev: revision_id("t", "deep", Some(&top_parent), false, &body),
        deleted: false,
        attributes: Some(Body::new(&body)),
        ancestry: vec![top_parent],
        foreign: None,
    };
    assert_eq!(top.rev.generation, MAX_GENERATION);
    ok(db.put_revisions(vec![top.clone()], None).await, "a revision at the largest generation");
    let next = db.put_record("t", put_of("deep", Some(top.rev), plain(json!({"v": 3})))).await;
    expect_err(next, ErrorKind::InvalidInput, "a write past the largest generation");
    let past = RevisionData {
        rev: RevId::new(u64::MAX, [1; 16]),
        ancestry: vec![RevId::new(u64::MAX - 1, [2; 16])],
        ..top.clone()
    };
    expect_err(db.put_revisions(vec![past], None).await, ErrorKind::InvalidInput, "a generation past the largest");
    assert_eq!(update_seq(&*db).await, seq + 1, "only the valid revision was stored");
    let feed = all_changes(&*db, 0, None).await;
    assert!(feed.iter().any(|c| c.id == "deep" && c.rev == top.rev), "the feed reads the deep record");

    // A long ancestry is cut to 1,000 ids: stored, the oldest kept one a stub.
    let mut chain = vec![revision_id("t", "long", None, false, &body)];
    for _ in 0..1_500 {
        let last = *chain.last().unwrap();
        chain.push(revision_id("t", "long", Some(&last), false, &body));
    }
    let leaf = chain.pop().unwrap();
    chain.reverse();
    let long = RevisionData {
        table: "t".into(),
        id: "long".into(),
        rev: leaf,
        deleted: false,
        attributes: Some(Body::new(&body)),
        ancestry: chain,
        foreign: None,
    };
    ok(db.put_revisions(vec![long], None).await, "a revision with 1,500 ancestors");
    let record = ok(db.get_record("t", "long", GetOptions { revs: true, ..GetOptions::default() }).await, "long");
    let history = record.revisions.map(|r| r.len()).unwrap_or_default();
    assert!((2..=1_001).contains(&history), "history cut to the limit: {history}");

    // A table definition obeys the record body limit (every peer would refuse a larger one).
    let seq = update_seq(&*db).await;
    let big = NewTable { name: "big".into(), description: "d".repeat(3 << 20), ..NewTable::default() };
    expect_err(db.create_table(big).await, ErrorKind::TooLarge, "a 3 MiB table description");
    unchanged(&*db, seq, "oversized table definition").await;
}
