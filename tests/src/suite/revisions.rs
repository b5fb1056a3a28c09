//! SPEC §4.2: replicated writes. Replays are no-ops, bodies are re-hashed, ancestry becomes stubs.

use outpost_api::{Body, ErrorKind, GetOptions, RecordRevs, RevId, RevisionData};
use outpost_engine::hash::revision_id;
use serde_json::json;

use crate::support::{expect_err, get, ok, plain, put, replicate, update_seq};
use crate::Factory;

fn revs_of(table: &str, id: &str, revs: &[RevId]) -> Vec<RecordRevs> {
    vec![RecordRevs { table: table.into(), id: id.into(), revs: revs.to_vec() }]
}

/// Putting revisions a database already holds writes nothing and takes no seq.
pub async fn replaying_put_revisions_is_a_no_op(f: &dyn Factory) {
    let (a, b) = (f.fresh().await, f.fresh().await);
    crate::support::table(&*a, "t").await;
    let r1 = put(&*a, "t", "x", None, plain(json!({"v": 1}))).await;
    let r2 = put(&*a, "t", "x", Some(r1), plain(json!({"v": 2}))).await;
    let y = put(&*a, "t", "y", None, plain(json!({"v": 1}))).await;
    let table_rev = ok(a.get_table("t").await, "get_table").rev;
    let mut wanted = revs_of("_tables", "t", &[table_rev]);
    wanted.extend(revs_of("t", "x", &[r1, r2]));
    wanted.extend(revs_of("t", "y", &[y]));
    let batch = ok(a.get_revisions(wanted).await, "get_revisions");
    assert_eq!(batch.len(), 4);
    let first = ok(b.put_revisions(batch.clone(), None).await, "first put_revisions");
    assert_eq!((first.written, first.update_seq), (4, 4));
    for _ in 0..2 {
        let again = ok(b.put_revisions(batch.clone(), None).await, "replayed put_revisions");
        assert_eq!((again.written, again.update_seq), (0, 4), "a replay writes nothing");
        assert_eq!(update_seq(&*b).await, 4);
    }
    assert_eq!(get(&*b, "t", "x").await.rev, r2);
    assert_eq!(replicate(&*a, &*b).await, 0, "nothing is left to replicate");
}

/// A replicated revision whose body, deleted flag or parent does not hash to its rev is Corrupt, and
/// nothing of its batch is stored.
pub async fn a_body_that_does_not_hash_to_its_rev_is_corrupt(f: &dyn Factory) {
    let (a, b) = (f.fresh().await, f.fresh().await);
    crate::support::table(&*a, "t").await;
    let r1 = put(&*a, "t", "x", None, plain(json!({"v": 1}))).await;
    let r2 = put(&*a, "t", "x", Some(r1), plain(json!({"v": 2}))).await;
    let y = put(&*a, "t", "y", None, plain(json!({"v": "fine"}))).await;
    replicate(&*a, &*b).await;
    let r3 = put(&*a, "t", "x", Some(r2), plain(json!({"v": 3}))).await;
    let good_x = ok(a.get_revisions(revs_of("t", "x", &[r3])).await, "get_revisions").remove(0);
    let z = put(&*a, "t", "z", None, plain(json!({"v": "innocent bystander"}))).await;
    let good_z = ok(a.get_revisions(revs_of("t", "z", &[z])).await, "get_revisions").remove(0);
    let other_parent = revision_id("t", "x", Some(&r1), false, &plain(json!({"v": "other"})));
    let tampered: [(&str, RevisionData); 4] = [
        ("changed body", RevisionData { attributes: Some(Body::new(&plain(json!({"v": 4})))), ..good_x.clone() }),
        ("flipped deleted flag", RevisionData { deleted: true, attributes: Some(Body::empty()), ..good_x.clone() }),
        ("another parent", RevisionData { ancestry: vec![other_parent, r1], ..good_x.clone() }),
        ("another record", RevisionData { id: "w".into(), ..good_z.clone() }),
    ];
    let seq = update_seq(&*b).await;
    for (what, bad) in tampered {
        // The good revision first in the batch: it must not be stored either.
        let batch = vec![good_z.clone(), bad];
        expect_err(b.put_revisions(batch, None).await, ErrorKind::Corrupt, what);
        assert_eq!(update_seq(&*b).await, seq, "{what}: nothing stored");
        let missing = ok(b.revs_diff(revs_of("t", "z", &[z])).await, "revs_diff");
        assert_eq!(missing, revs_of("t", "z", &[z]), "{what}: the good revision of the batch was not stored");
    }
    assert_eq!(get(&*b, "t", "x").await.rev, r2);
    assert_eq!(get(&*b, "t", "y").await.rev, y);
    // The untampered revisions are accepted.
    let done = ok(b.put_revisions(vec![good_z, good_x], None).await, "put_revisions");
    assert_eq!(done.written, 2);
}

/// A revision arriving with ancestry the target lacks is stored with its ancestors as stubs: they
/// take no seq, revs_diff no longer asks for them, their bodies are unknown until they arrive.
pub async fn ancestry_is_stored_as_stubs(f: &dyn Factory) {
    let (a, b) = (f.fresh().await, f.fresh().await);
    crate::support::table(&*a, "t").await;
    replicate(&*a, &*b).await;
    let r1 = put(&*a, "t", "x", None, plain(json!({"v": 1}))).await;
    let r2 = put(&*a, "t", "x", Some(r1), plain(json!({"v": 2}))).await;
    let r3 = put(&*a, "t", "x", Some(r2), plain(json!({"v": 3}))).await;
    let tip = ok(a.get_revisions(revs_of("t", "x", &[r3])).await, "get_revisions").remove(0);
    assert_eq!(tip.ancestry, vec![r2, r1], "get_revisions gives the ancestry, parent first");
    let seq = update_seq(&*b).await;
    let result = ok(b.put_revisions(vec![tip], None).await, "put_revisions");
    assert_eq!((result.written, result.update_seq), (1, seq + 1), "stubs are not revision events");
    assert!(ok(b.revs_diff(revs_of("t", "x", &[r1, r2, r3])).await, "revs_diff").is_empty(), "stubs count as held");
    let history = ok(b.get_record("t", "x", GetOptions { revs: true, ..GetOptions::default() }).await, "get revs");
    assert_eq!((history.revisions, history.attributes), (Some(vec![r3, r2, r1]), plain(json!({"v": 3}))));
    let stub = b.get_record("t", "x", GetOptions { rev: Some(r2), ..GetOptions::default() }).await;
    expect_err(stub, ErrorKind::NotFound, "the body of a stub");
    // The body filling a stub is a revision event; the stub's place in the tree does not change.
    let middle = ok(a.get_revisions(revs_of("t", "x", &[r2])).await, "get_revisions").remove(0);
    let filled = ok(b.put_revisions(vec![middle], None).await, "fill the stub");
    assert_eq!((filled.written, filled.update_seq), (1, seq + 2));
    let body =
        ok(b.get_record("t", "x", GetOptions { rev: Some(r2), ..GetOptions::default() }).await, "get filled stub");
    assert_eq!(body.attributes, plain(json!({"v": 2})));
    assert_eq!(get(&*b, "t", "x").await.rev, r3);
    // A truncated ancestry is accepted: the ancestors it names become stubs.
    let r4 = put(&*a, "t", "y", None, plain(json!({"v": 1}))).await;
    let r5 = put(&*a, "t", "y", Some(r4), plain(json!({"v": 2}))).await;
    let r6 = put(&*a, "t", "y", Some(r5), plain(json!({"v": 3}))).await;
    let mut truncated = ok(a.get_revisions(revs_of("t", "y", &[r6])).await, "get_revisions").remove(0);
    truncated.ancestry.truncate(1);
    assert_eq!(ok(b.put_revisions(vec![truncated], None).await, "truncated ancestry").written, 1);
    let missing = ok(b.revs_diff(revs_of("t", "y", &[r4, r5, r6])).await, "revs_diff");
    assert_eq!(missing, revs_of("t", "y", &[r4]), "only the ancestor beyond the truncation is missing");
}

/// An ancestor first held without its parent (a truncated ancestry) is linked when a longer ancestry
/// names the parent, in a later batch or the same one: its own ancestors are not mistaken for leaves.
pub async fn a_parent_learned_later_links_a_truncated_ancestry(f: &dyn Factory) {
    let (a, b, c) = (f.fresh().await, f.fresh().await, f.fresh().await);
    crate::support::table(&*a, "t").await;
    replicate(&*a, &*b).await;
    replicate(&*a, &*c).await;
    let r1 = put(&*a, "t", "x", None, plain(json!({"v": 1}))).await;
    let r2 = put(&*a, "t", "x", Some(r1), plain(json!({"v": 2}))).await;
    let r3 = put(&*a, "t", "x", Some(r2), plain(json!({"v": 3}))).await;
    let r4 = crate::support::delete(&*a, "t", "x", Some(r3)).await;
    let mut short = ok(a.get_revisions(revs_of("t", "x", &[r3])).await, "get_revisions").remove(0);
    short.ancestry.truncate(1);
    let full = ok(a.get_revisions(revs_of("t", "x", &[r4])).await, "get_revisions").remove(0);
    assert_eq!(full.ancestry, vec![r3, r2, r1]);
    ok(b.put_revisions(vec![short.clone()], None).await, "the truncated one");
    ok(b.put_revisions(vec![full.clone()], None).await, "then the full ancestry");
    ok(c.put_revisions(vec![short.clone(), full], None).await, "both in one batch");
    for db in [&b, &c] {
        let change = crate::support::change_of(&**db, "t", "x").await;
        assert_eq!((change.rev, change.deleted, change.leaves), (r4, true, vec![r4]), "r1 is not a leaf");
        expect_err(db.get_record("t", "x", GetOptions::default()).await, ErrorKind::NotFound, "deleted record");
        let history =
            ok(db.get_record("t", "x", GetOptions { rev: Some(r4), revs: true, ..GetOptions::default() }).await, "r4");
        assert_eq!(history.revisions, Some(vec![r4, r3, r2, r1]), "the whole line is linked");
    }
    // The first revision held in full, then r3 with a truncated ancestry: r1 looks like a second leaf
    // until a replay of r3 with its whole ancestry links the line (no new event, new leaves).
    let first = ok(a.get_revisions(revs_of("t", "x", &[r1])).await, "get_revisions").remove(0);
    let whole = ok(a.get_revisions(revs_of("t", "x", &[r3])).await, "get_revisions").remove(0);
    let d = f.fresh().await;
    crate::support::table(&*d, "t").await;
    ok(d.put_revisions(vec![first, short], None).await, "r1, then r3 cut short");
    assert_eq!(crate::support::change_of(&*d, "t", "x").await.leaves.len(), 2, "r1 and r3 look unrelated");
    let seq = update_seq(&*d).await;
    let replay = ok(d.put_revisions(vec![whole], None).await, "replay r3 with its ancestry");
    assert_eq!((replay.written, replay.update_seq), (0, seq), "linking is not a revision event");
    let change = crate::support::change_of(&*d, "t", "x").await;
    assert_eq!((change.rev, change.leaves), (r3, vec![r3]), "one line again");
}

/// An ancestry is a peer's claim, a revision's parent is what its id hashes: a hostile ancestry that
/// names a made-up grandparent makes a stub with that parent, and the verified revision filling the
/// stub later (or in the same batch) stores the parent it was verified with. Otherwise the record
/// would send that revision under the made-up parent, which every other peer refuses as corrupt.
pub async fn a_verified_parent_overrides_an_ancestrys_claim(f: &dyn Factory) {
    let a = f.fresh().await;
    crate::support::table(&*a, "t").await;
    // Two targets that hold the table only: x is new to them.
    let mut targets = Vec::new();
    for _ in 0..2 {
        let b = f.fresh().await;
        replicate(&*a, &*b).await;
        targets.push(b);
    }
    let r1 = put(&*a, "t", "x", None, plain(json!({"v": 1}))).await;
    let r2 = put(&*a, "t", "x", Some(r1), plain(json!({"v": 2}))).await;
    let r3 = put(&*a, "t", "x", Some(r2), plain(json!({"v": 3}))).await;
    let fake = revision_id("t", "x", None, false, &plain(json!({"v": "made up"})));
    let mut hostile = ok(a.get_revisions(revs_of("t", "x", &[r3])).await, "get_revisions").remove(0);
    hostile.ancestry = vec![r2, fake];
    let middle = ok(a.get_revisions(revs_of("t", "x", &[r2])).await, "get_revisions").remove(0);
    assert_eq!(middle.ancestry, vec![r1]);
    for (b, together) in targets.into_iter().zip([false, true]) {
        let c = f.fresh().await;
        if together {
            ok(b.put_revisions(vec![hostile.clone(), middle.clone()], None).await, "the claim and the revision");
        } else {
            ok(b.put_revisions(vec![hostile.clone()], None).await, "the hostile ancestry");
            ok(b.put_revisions(vec![middle.clone()], None).await, "the revision it claims about");
        }
        let sent = ok(b.get_revisions(revs_of("t", "x", &[r2])).await, "get_revisions of the filled stub").remove(0);
        assert_eq!(sent.ancestry, vec![r1], "together: {together}: r2 is sent under the parent it hashes with");
        let history =
            ok(b.get_record("t", "x", GetOptions { rev: Some(r3), revs: true, ..GetOptions::default() }).await, "r3");
        assert_eq!(history.revisions, Some(vec![r3, r2, r1]), "together: {together}: the verified line");
        // The revision replicates on: a third peer takes it, and the record's whole line from b.
        replicate(&*b, &*c).await;
        ok(c.put_revisions(vec![sent], None).await, "a third peer takes r2 as b sends it");
        assert_eq!(get(&*c, "t", "x").await.rev, r3);
    }
}

/// get_revisions leaves out unknown revisions and records; revs_diff lists, per record, exactly the
/// revisions not held.
pub async fn get_revisions_and_revs_diff_answer_per_revision(f: &dyn Factory) {
    let db = f.fresh().await;
    crate::support::table(&*db, "t").await;
    let r1 = put(&*db, "t", "x", None, plain(json!({"v": 1}))).await;
    let unknown = revision_id("t", "x", Some(&r1), false, &plain(json!({"v": "elsewhere"})));
    let elsewhere = revision_id("t", "nobody", None, false, &plain(json!({"v": 1})));
    let mut wanted = revs_of("t", "x", &[r1, unknown]);
    wanted.extend(revs_of("t", "nobody", &[elsewhere]));
    let got = ok(db.get_revisions(wanted.clone()).await, "get_revisions");
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].rev, got[0].deleted, &got[0].ancestry), (r1, false, &vec![]));
    assert_eq!(got[0].attributes, Some(Body::new(&plain(json!({"v": 1})))));
    let mut expected = revs_of("t", "x", &[unknown]);
    expected.extend(revs_of("t", "nobody", &[elsewhere]));
    assert_eq!(ok(db.revs_diff(wanted).await, "revs_diff"), expected);
    assert!(ok(db.revs_diff(revs_of("t", "x", &[r1])).await, "revs_diff").is_empty());
}

/// `get_revisions` of a whole line of history sends each ancestry once: a revision's ancestry stops
/// at the nearest older revision also asked for, whatever the order asked in; the answer, put
/// anywhere, rebuilds the whole tree with every body.
pub async fn get_revisions_of_a_whole_history_sends_each_line_once(f: &dyn Factory) {
    let (a, b) = (f.fresh().await, f.fresh().await);
    crate::support::table(&*a, "t").await;
    crate::support::table(&*b, "t").await;
    let mut line = vec![put(&*a, "t", "x", None, plain(json!({"v": 0}))).await];
    for v in 1..6 {
        line.push(put(&*a, "t", "x", line.last().copied(), plain(json!({ "v": v }))).await);
    }
    // Asked for the 6th, 4th and 2nd revisions (newest first): each ancestry ends at the next one
    // asked for; the oldest goes down to the root.
    let asked = [line[5], line[3], line[1]];
    let got = ok(a.get_revisions(revs_of("t", "x", &asked)).await, "get_revisions");
    let ancestries: Vec<(RevId, Vec<RevId>)> = got.iter().map(|r| (r.rev, r.ancestry.clone())).collect();
    let expected = vec![(line[5], vec![line[4], line[3]]), (line[3], vec![line[2], line[1]]), (line[1], vec![line[0]])];
    assert_eq!(ancestries, expected);
    // Alone, a revision comes with its whole ancestry.
    let alone = ok(a.get_revisions(revs_of("t", "x", &[line[5]])).await, "get_revisions");
    assert_eq!(alone[0].ancestry, line[..5].iter().rev().copied().collect::<Vec<_>>());
    // The whole history, oldest first, rebuilds the tree with every body.
    let all = ok(a.get_revisions(revs_of("t", "x", &line)).await, "get_revisions");
    assert!(all.iter().skip(1).all(|r| r.ancestry.len() == 1), "each revision names only its parent");
    assert_eq!(ok(b.put_revisions(all, None).await, "put_revisions").written, 6);
    for (v, rev) in line.iter().enumerate() {
        let options = GetOptions { rev: Some(*rev), ..GetOptions::default() };
        let record = ok(b.get_record("t", "x", options).await, "get_record of an inner revision");
        assert_eq!(record.attributes, plain(json!({ "v": v })));
    }
    let options = GetOptions { revs: true, ..GetOptions::default() };
    let history = ok(b.get_record("t", "x", options).await, "get_record with revs").revisions;
    assert_eq!(history, Some(line.iter().rev().copied().collect()));
}

/// Revisions sent with their bodies as stored (`get_revisions_json`, what a server answers) are the
/// same JSON, byte for byte, as the revisions `get_revisions` gives: bodies of every kind of value,
/// a tombstone, a conflict, stubs (no body) and unknown revisions (left out).
pub async fn revisions_sent_as_stored_are_the_json_of_get_revisions(f: &dyn Factory) {
    let (a, b) = (f.fresh().await, f.fresh().await);
    crate::support::table(&*a, "t").await;
    replicate(&*a, &*b).await;
    let body = json!({
        "text": "quote \" backslash \\ slash / tab \t newline \n control \u{1} é 😀",
        "n": -12345678901234_i64, "x": 1.5, "tiny": 1e-300, "yes": true, "none": null,
        "list": [1, "two", [3.25], {"four": 4}], "nested": {"a": {"b": {"c": "deep"}}}
    });
    let r1 = put(&*a, "t", "x", None, plain(body)).await;
    let r2 = put(&*a, "t", "x", Some(r1), plain(json!({"v": 2}))).await;
    let r3 = put(&*a, "t", "x", Some(r2), plain(json!({"v": 3}))).await;
    let gone = put(&*a, "t", "gone", None, plain(json!({"v": 1}))).await;
    let tombstone = ok(a.delete_record("t", "gone", Some(gone)).await, "delete").rev;
    let other = put(&*b, "t", "x", None, plain(json!({"other": "branch"}))).await;
    // b holds x's tip with r2 and r1 as stubs, beside a branch of its own; a's tombstone too.
    let tip = ok(a.get_revisions(revs_of("t", "x", &[r3])).await, "get_revisions").remove(0);
    ok(b.put_revisions(vec![tip], None).await, "put_revisions");
    replicate(&*a, &*b).await;
    let unknown = RevId { generation: 9, hash: [7; 16] };
    for (db, x) in [(&a, vec![r1, r2, r3]), (&b, vec![r3, r2, r1, other, unknown])] {
        let mut wanted = revs_of("t", "x", &x);
        wanted.extend(revs_of("t", "gone", &[tombstone, gone]));
        wanted.extend(revs_of("t", "nobody", &[r1]));
        let typed = ok(db.get_revisions(wanted.clone()).await, "get_revisions");
        let raw = ok(db.get_revisions_json(wanted).await, "get_revisions_json");
        assert_eq!(serde_json::to_string(&raw).unwrap(), serde_json::to_string(&typed).unwrap());
        assert!(typed.iter().any(|r| r.attributes.is_none() && !r.deleted) || x.len() == 3, "stubs were asked for");
    }
}
