//! SPEC §3, foreign revisions: a revision whose id another implementation made (a CouchDB-protocol
//! peer, §17) is kept under that id with its body pinned by a digest that every receiver recomputes,
//! only in a table open to CouchDB peers; it replicates and replays with its digest, which its
//! event's chain hash commits to. Native revisions stay verified by their ids.

use outpost_api::{
    Attributes, Body, ChainHash, Database, Digest, ErrorKind, GetOptions, NewTable, RecordRevs, RevId, RevisionData,
    TableDef,
};
use serde_json::json;

use crate::support::{expect_err, genesis_of, ok, plain, put, replicate, rev, update_seq};
use crate::Factory;

/// A revision of `table/id` under `rev`, sent as foreign with the digest of its body.
fn foreign(table: &str, id: &str, rev: RevId, ancestry: &[RevId], deleted: bool, body: Attributes) -> RevisionData {
    let digest = outpost_engine::foreign::digest(table, id, ancestry.first(), deleted, &body);
    RevisionData {
        table: table.into(),
        id: id.into(),
        rev,
        deleted,
        attributes: Some(Body::new(&body)),
        ancestry: ancestry.to_vec(),
        foreign: Some(digest),
    }
}

/// A PouchDB-like revision id: generation `g`, an md5-like hex made from `seed`.
fn pouch_rev(generation: u64, seed: u8) -> RevId {
    rev(&format!("{generation}-{}", format!("{seed:02x}").repeat(16)))
}

async fn couch_table(db: &dyn Database, name: &str, couch: bool) -> TableDef {
    ok(db.create_table(NewTable { name: name.into(), couch, ..NewTable::default() }).await, "create table")
}

async fn get_one(db: &dyn Database, table: &str, id: &str, r: RevId) -> RevisionData {
    let wanted = vec![RecordRevs { table: table.into(), id: id.into(), revs: vec![r] }];
    let mut got = ok(db.get_revisions(wanted).await, "get_revisions");
    assert_eq!(got.len(), 1, "{table}/{id} {r}");
    got.remove(0)
}

/// The chain hashes of every event of `db`, folded from genesis as SPEC §3 and §5 define them, a
/// foreign event's input ending with `0x01 || digest`, written here from the formula.
async fn folded_chain(db: &dyn Database) -> (ChainHash, ChainHash) {
    let mut chain = genesis_of(db).await;
    let mut after = 0;
    loop {
        let events = ok(db.events(after, 100).await, "events");
        let Some(last) = events.last() else { break };
        after = last.seq;
        for e in &events {
            let r = &e.revision;
            let mut input = b"outpost/chain/v1".to_vec();
            input.extend_from_slice(&chain.0);
            input.extend_from_slice(&e.seq.to_be_bytes());
            for part in [r.table.as_bytes(), r.id.as_bytes(), r.rev.to_string().as_bytes()] {
                input.extend_from_slice(&(part.len() as u32).to_be_bytes());
                input.extend_from_slice(part);
            }
            input.push(r.deleted as u8);
            if let Some(Digest(d)) = r.foreign {
                input.push(1);
                input.extend_from_slice(&d);
            }
            chain = ChainHash(*blake3::hash(&input).as_bytes());
            assert_eq!(chain, e.chain, "the chain hash of event {}", e.seq);
        }
    }
    (chain, ok(db.info().await, "info").chain)
}

/// Foreign revisions go only into tables whose definition says `couch: true`, only with the digest
/// of their body; there they are stored, read and sent on with it. A body that hashes to its id is
/// native however it was sent, and a table definition is never foreign.
pub async fn foreign_revisions_go_only_into_couch_tables(f: &dyn Factory) {
    let db = f.fresh().await;
    couch_table(&*db, "c", true).await;
    couch_table(&*db, "n", false).await;
    let body = plain(json!({"title": "from a browser", "n": 1}));
    let r1 = pouch_rev(1, 0xab);
    let seq = update_seq(&*db).await;
    for (table, kind) in [("n", ErrorKind::Forbidden), ("u", ErrorKind::Forbidden)] {
        let sent = foreign(table, "x", r1, &[], false, body.clone());
        let e = expect_err(db.put_revisions(vec![sent], None).await, kind, "a foreign revision outside a couch table");
        assert!(e.message.contains("couch: true"), "{}", e.message);
    }
    let mut wrong = foreign("c", "x", r1, &[], false, body.clone());
    wrong.foreign = Some(Digest([7; 16]));
    expect_err(db.put_revisions(vec![wrong], None).await, ErrorKind::Corrupt, "a digest that is not the body's");
    let mut unmarked = foreign("c", "x", r1, &[], false, body.clone());
    unmarked.foreign = None;
    expect_err(db.put_revisions(vec![unmarked], None).await, ErrorKind::Corrupt, "a foreign id sent as native");
    let definition = foreign("_tables", "c", r1, &[], false, Attributes::new());
    expect_err(db.put_revisions(vec![definition], None).await, ErrorKind::Corrupt, "a foreign table definition");
    assert_eq!(update_seq(&*db).await, seq, "nothing refused was stored");

    // Accepted: a line of two foreign revisions, a conflicting foreign branch and a tombstone on it.
    let r2 = pouch_rev(2, 0x11);
    let (b2, b3) = (pouch_rev(2, 0x22), pouch_rev(3, 0x33));
    let line = vec![
        foreign("c", "x", r1, &[], false, body.clone()),
        foreign("c", "x", r2, &[r1], false, plain(json!({"title": "edited", "n": 2}))),
        foreign("c", "x", b2, &[r1], false, plain(json!({"title": "elsewhere"}))),
        foreign("c", "x", b3, &[b2, r1], true, Attributes::new()),
    ];
    let sent = line[1].clone();
    assert_eq!(ok(db.put_revisions(line.clone(), None).await, "foreign revisions").written, 4);
    assert_eq!(ok(db.put_revisions(line, None).await, "again").written, 0, "a replay is a no-op");
    let options = GetOptions { conflicts: true, ..GetOptions::default() };
    let record = ok(db.get_record("c", "x", options).await, "read");
    let expected = (r2, sent.attributes.as_ref().expect("a body").attributes(), Some(vec![]));
    assert_eq!((record.rev, record.attributes.clone(), record.conflicts.clone()), expected, "the tombstone closed b2");
    assert_eq!(get_one(&*db, "c", "x", r2).await, sent, "sent on as received, digest and all");
    let tomb = get_one(&*db, "c", "x", b3).await;
    assert_eq!((tomb.deleted, tomb.foreign.is_some()), (true, true));

    // A revision sent as foreign whose body hashes to its id is native.
    let native_body = plain(json!({"k": 1}));
    let native = outpost_engine::hash::revision_id("c", "y", None, false, &native_body);
    ok(db.put_revisions(vec![foreign("c", "y", native, &[], false, native_body)], None).await, "native as foreign");
    assert_eq!(get_one(&*db, "c", "y", native).await.foreign, None);
    // A local write on a foreign parent is native.
    let child = put(&*db, "c", "x", Some(r2), plain(json!({"title": "edited here"}))).await;
    assert_eq!(get_one(&*db, "c", "x", child).await.foreign, None);
    let (folded, head) = folded_chain(&*db).await;
    assert_eq!(folded, head, "the chain folds to the head, digests and all");
}

/// Foreign revisions replicate between Outpost databases with their digests (a table definition
/// ahead of them in the same pass opens the table), and replay from their events: both copies hold
/// the same trees, winners and bodies, and chains that commit to the digests.
pub async fn foreign_revisions_replicate_and_replay(f: &dyn Factory) {
    let (a, b, c) = (f.fresh().await, f.fresh().await, f.fresh().await);
    couch_table(&*a, "c", true).await;
    let (r1, r2, b2) = (pouch_rev(1, 0x01), pouch_rev(2, 0x02), pouch_rev(2, 0x03));
    let revisions = vec![
        foreign("c", "x", r1, &[], false, plain(json!({"v": 1}))),
        foreign("c", "x", r2, &[r1], false, plain(json!({"v": 2}))),
        foreign("c", "x", b2, &[r1], false, plain(json!({"v": 3}))),
    ];
    ok(a.put_revisions(revisions, None).await, "foreign revisions into a");
    put(&*a, "c", "z", None, plain(json!({"native": true}))).await;
    replicate(&*a, &*b).await;
    let options = || GetOptions { conflicts: true, revs: true, ..GetOptions::default() };
    let on_a = ok(a.get_record("c", "x", options()).await, "read a");
    assert_eq!(on_a.conflicts, Some(vec![r2.min(b2)]), "two foreign branches: the greater id wins");
    assert_eq!(ok(b.get_record("c", "x", options()).await, "read b"), on_a);
    // The leaves travel with their bodies and digests; their parent r1 as a stub.
    for r in [r2, b2] {
        assert_eq!(get_one(&*b, "c", "x", r).await, get_one(&*a, "c", "x", r).await, "{r} on both");
    }
    let (folded, head) = folded_chain(&*b).await;
    assert_eq!(folded, head);

    // A table closed to CouchDB peers later keeps what they wrote, and it still replicates to a peer
    // that learns of the table only now.
    let closed = outpost_api::TableUpdate { couch: Some(false), ..outpost_api::TableUpdate::default() };
    ok(a.update_table("c", closed).await, "close the table");
    let late = f.fresh().await;
    // The reconciler: it copies the table's older definitions (their bodies) with the current one.
    ok(outpost_reconciler::replicate(&*a, &*late, &outpost_reconciler::Options::default()).await, "to a late peer");
    assert_eq!(ok(late.get_record("c", "x", options()).await, "read late"), on_a);

    // Replayed event by event, as quicksync files apply.
    let events = ok(a.events(0, 100).await, "events of a");
    assert!(events.iter().any(|e| e.revision.foreign.is_some()), "events carry the digests");
    ok(c.put_events(events.into_iter().map(|e| e.revision).collect(), None).await, "replay");
    assert_eq!(ok(c.get_record("c", "x", options()).await, "read c"), on_a);
    let (folded, head) = folded_chain(&*c).await;
    assert_eq!(folded, head);
}

/// One body per id (SPEC §3): a native body replaces a foreign one held under its id, and between two
/// foreign bodies the smaller digest stays — each time a new revision event, the one replaced kept in
/// the history without its body, so the chain still folds. Revs-diff reports a revision held as
/// foreign as missing, so that a better body can reach it; the events replay to the same state.
pub async fn a_native_body_replaces_a_foreign_one(f: &dyn Factory) {
    let (a, c) = (f.fresh().await, f.fresh().await);
    couch_table(&*a, "c", true).await;
    // A native revision whose body holds a float, as a PouchDB sends it back: a decimal.
    let native_body = crate::support::wire(json!({"k": {"float": "1.5"}, "s": {"string": "x"}}));
    let r = outpost_engine::hash::revision_id("c", "x", None, false, &native_body);
    let lossy = plain(json!({"k": 1.5, "s": "x"}));
    assert_eq!(ok(a.put_revisions(vec![foreign("c", "x", r, &[], false, lossy)], None).await, "foreign").written, 1);
    let asked = || vec![RecordRevs { table: "c".into(), id: "x".into(), revs: vec![r] }];
    assert_eq!(ok(a.revs_diff(asked()).await, "revs-diff").len(), 1, "held as foreign: asked for again");
    let native = RevisionData {
        table: "c".into(),
        id: "x".into(),
        rev: r,
        deleted: false,
        attributes: Some(Body::new(&native_body)),
        ancestry: vec![],
        foreign: None,
    };
    assert_eq!(ok(a.put_revisions(vec![native.clone()], None).await, "native").written, 1, "a new event");
    assert_eq!(get_one(&*a, "c", "x", r).await, native, "the native body, and no digest");
    assert!(ok(a.revs_diff(asked()).await, "revs-diff").is_empty(), "held as native: nothing missing");
    let lossy_again = foreign("c", "x", r, &[], false, plain(json!({"k": 1.5, "s": "x"})));
    assert_eq!(ok(a.put_revisions(vec![lossy_again], None).await, "foreign again").written, 0, "native stays");
    assert_eq!(ok(a.get_record("c", "x", GetOptions::default()).await, "read").attributes, native_body);

    // Two foreign bodies under one id: the smaller digest stays, whatever the order.
    let ry = pouch_rev(1, 0x77);
    let (b1, b2) = (plain(json!({"v": "one"})), plain(json!({"v": "two"})));
    let (d1, d2) = (
        outpost_engine::foreign::digest("c", "y", None, false, &b1),
        outpost_engine::foreign::digest("c", "y", None, false, &b2),
    );
    let (small, large) = if d1 < d2 { (b1, b2) } else { (b2, b1) };
    ok(a.put_revisions(vec![foreign("c", "y", ry, &[], false, large.clone())], None).await, "larger digest");
    let replaced = ok(a.put_revisions(vec![foreign("c", "y", ry, &[], false, small.clone())], None).await, "smaller");
    assert_eq!(replaced.written, 1, "the smaller digest replaces the larger");
    let kept = ok(a.put_revisions(vec![foreign("c", "y", ry, &[], false, large)], None).await, "larger again");
    assert_eq!(kept.written, 0);
    assert_eq!(ok(a.get_record("c", "y", GetOptions::default()).await, "read y").attributes, small);

    // A foreign body never moves a revision: one under another parent (a digest ground smaller, say)
    // leaves the one held alone.
    let (rz, rz2) = (pouch_rev(1, 0x10), pouch_rev(2, 0x20));
    ok(a.put_revisions(vec![foreign("c", "z", rz, &[], false, plain(json!({"v": 1})))], None).await, "z1");
    ok(a.put_revisions(vec![foreign("c", "z", rz2, &[rz], false, plain(json!({"v": 2})))], None).await, "z2");
    let elsewhere = foreign("c", "z", rz2, &[pouch_rev(1, 0x99)], false, plain(json!({"v": "moved"})));
    assert_eq!(ok(a.put_revisions(vec![elsewhere], None).await, "moved").written, 0, "not under another parent");
    let z = ok(a.get_record("c", "z", GetOptions { revs: true, ..GetOptions::default() }).await, "z");
    assert_eq!((z.attributes, z.revisions), (plain(json!({"v": 2})), Some(vec![rz2, rz])));

    // A local write whose revision id was taken by a foreign body (planted under a predicted id)
    // stores its native body over it, instead of taking it for a retry.
    let body = plain(json!({"planted": false}));
    let predicted = outpost_engine::hash::revision_id("c", "p", None, false, &body);
    let planted = foreign("c", "p", predicted, &[], false, plain(json!({"planted": true})));
    ok(a.put_revisions(vec![planted], None).await, "planted");
    assert_eq!(put(&*a, "c", "p", None, body.clone()).await, predicted);
    assert_eq!(get_one(&*a, "c", "p", predicted).await.foreign, None, "the native body replaced it");
    assert_eq!(ok(a.get_record("c", "p", GetOptions::default()).await, "p").attributes, body);

    // A foreign tombstone with fields, replaced: its superseded event replays without them.
    let rt = pouch_rev(1, 0x30);
    let (t1, t2) = (plain(json!({"why": "a"})), plain(json!({"why": "b"})));
    let (dt1, dt2) = (
        outpost_engine::foreign::digest("c", "t", None, true, &t1),
        outpost_engine::foreign::digest("c", "t", None, true, &t2),
    );
    let (small_t, large_t) = if dt1 < dt2 { (t1, t2) } else { (t2, t1) };
    ok(a.put_revisions(vec![foreign("c", "t", rt, &[], true, large_t)], None).await, "tombstone");
    let again = ok(a.put_revisions(vec![foreign("c", "t", rt, &[], true, small_t)], None).await, "tombstone again");
    assert_eq!(again.written, 1);

    // The history holds each replaced event, without its body, and folds to the head.
    let events = ok(a.events(0, 100).await, "events");
    let superseded: Vec<_> =
        events.iter().filter(|e| e.revision.table == "c" && e.revision.attributes.is_none()).collect();
    assert_eq!(superseded.len(), 4, "{events:?}");
    let (folded, head) = folded_chain(&*a).await;
    assert_eq!(folded, head);
    // Replayed event by event, as quicksync files apply: the same records, the same history. (Only a
    // local database takes events without their bodies: over HTTP, refused as a whole.)
    match c.put_events(events.into_iter().map(|e| e.revision).collect(), None).await {
        Err(e) if e.kind == ErrorKind::InvalidInput && e.message.contains("local database") => return,
        other => ok(other, "replay"),
    };
    for id in ["x", "y", "z", "p"] {
        assert_eq!(
            ok(c.get_record("c", id, GetOptions::default()).await, "read c"),
            ok(a.get_record("c", id, GetOptions::default()).await, "read a")
        );
    }
    assert_eq!(get_one(&*c, "c", "x", r).await, native);
    let (folded, head) = folded_chain(&*c).await;
    assert_eq!(folded, head);
}
