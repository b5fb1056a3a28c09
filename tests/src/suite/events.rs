//! SPEC §9's read and write primitives: every revision event in seq order (what quicksync files
//! carry), a batch stored atomically with the knowledge it proves, and knowledge pruned per peer.

use outpost_api::{
    Body, ChainHash, Database, ErrorKind, GetOptions, KnowledgeRow, KnowledgeUpdate, RecordRevs, RevisionEvent,
};
use serde_json::json;

use crate::support::{delete, expect_err, get, ok, plain, put, update_seq};
use crate::Factory;

/// Every event of `db`, read in pages of `page`.
async fn all_events(db: &dyn Database, page: usize) -> Vec<RevisionEvent> {
    let mut out: Vec<RevisionEvent> = Vec::new();
    loop {
        let after = out.last().map_or(0, |e| e.seq);
        let got = ok(db.events(after, page).await, "events");
        assert!(got.len() <= page, "a page holds at most its limit");
        if got.is_empty() {
            return out;
        }
        out.extend(got);
    }
}

/// Events list every revision (not only each record's latest) at the seq it took, with the chain
/// hash the database reports there, its body, and its parent.
pub async fn events_list_every_revision_in_seq_order(f: &dyn Factory) {
    let db = f.fresh().await;
    crate::support::table(&*db, "t").await;
    let r1 = put(&*db, "t", "x", None, plain(json!({"v": 1}))).await;
    let r2 = put(&*db, "t", "x", Some(r1), plain(json!({"v": 2}))).await;
    let y = put(&*db, "t", "y", None, plain(json!({"v": "y"}))).await;
    let r3 = delete(&*db, "t", "x", Some(r2)).await;
    let events = all_events(&*db, 2).await;
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=update_seq(&*db).await).collect::<Vec<_>>(), "every seq, in order, across pages");
    for e in &events {
        assert_eq!(e.chain, ok(db.chain_hash_at(e.seq).await, "chain_hash_at"), "the chain at seq {}", e.seq);
    }
    let x: Vec<_> = events.iter().filter(|e| e.revision.id == "x").map(|e| &e.revision).collect();
    assert_eq!(x.iter().map(|r| r.rev).collect::<Vec<_>>(), vec![r1, r2, r3], "inner revisions too");
    assert_eq!((x[0].ancestry.clone(), x[0].attributes.clone()), (vec![], Some(Body::new(&plain(json!({"v": 1}))))));
    assert_eq!(x[1].ancestry, vec![r1], "the parent, held with a body, ends the ancestry");
    assert!(x[2].deleted, "a delete is a tombstone event");
    assert!(events.iter().any(|e| e.revision.table == "_tables" && e.revision.id == "t"), "table definitions too");
    assert!(events.iter().any(|e| e.revision.rev == y));
    let tail = ok(db.events(2, 10).await, "events after 2");
    assert_eq!(tail.first().map(|e| e.seq), Some(3));
    assert!(ok(db.events(update_seq(&*db).await, 10).await, "events at the end").is_empty());
    for limit in [0, 10_001] {
        expect_err(db.events(0, limit).await, ErrorKind::InvalidInput, &format!("events limit {limit}"));
    }
}

/// Applying every event of a database in seq order rebuilds its revision trees, stubs included: the
/// ancestry of an event runs through stubs to the first ancestor held with a body.
pub async fn events_from_seq_one_rebuild_every_tree(f: &dyn Factory) {
    let (a, b, c) = (f.fresh().await, f.fresh().await, f.fresh().await);
    crate::support::table(&*a, "t").await;
    crate::support::replicate(&*a, &*b).await;
    let r1 = put(&*a, "t", "x", None, plain(json!({"v": 1}))).await;
    let r2 = put(&*a, "t", "x", Some(r1), plain(json!({"v": 2}))).await;
    let r3 = put(&*a, "t", "x", Some(r2), plain(json!({"v": 3}))).await;
    // b holds r1 in full, then r3 with r2 as a stub.
    crate::support::copy(&*a, &*b, "t", "x", &[r1]).await;
    let wanted = vec![RecordRevs { table: "t".into(), id: "x".into(), revs: vec![r3] }];
    let mut tip = ok(a.get_revisions(wanted).await, "get_revisions").remove(0);
    tip.ancestry.truncate(2);
    ok(b.put_revisions(vec![tip], None).await, "r3 over a stub");
    let events = all_events(&*b, 1000).await;
    let event_of_r3 = events.iter().find(|e| e.revision.rev == r3).expect("r3 is an event");
    assert_eq!(event_of_r3.revision.ancestry, vec![r2, r1], "through the stub r2 to r1, held with a body");
    for e in &events {
        ok(c.put_revisions(vec![e.revision.clone()], None).await, "apply one event");
    }
    assert_eq!(update_seq(&*c).await, update_seq(&*b).await, "one event each");
    assert_eq!(history(&*c).await, Some(vec![r3, r2, r1]));
    assert_eq!(history(&*c).await, history(&*b).await);
    let diff = vec![RecordRevs { table: "t".into(), id: "x".into(), revs: vec![r1, r2, r3] }];
    assert!(ok(c.revs_diff(diff).await, "revs_diff").is_empty(), "the stub is held as a stub");
}

async fn history(db: &dyn Database) -> Option<Vec<outpost_api::RevId>> {
    let options = GetOptions { revs: true, ..GetOptions::default() };
    ok(db.get_record("t", "x", options).await, "get with revs").revisions
}

/// A batch stored with its knowledge commits both or neither; storing it again changes nothing.
pub async fn a_batch_commits_with_the_knowledge_it_proves(f: &dyn Factory) {
    let (a, c) = (f.fresh().await, f.fresh().await);
    crate::support::table(&*a, "t").await;
    let r1 = put(&*a, "t", "x", None, plain(json!({"v": 1}))).await;
    put(&*a, "t", "x", Some(r1), plain(json!({"v": 2}))).await;
    let source = ok(a.info().await, "info");
    let events = all_events(&*a, 100).await;
    let revisions: Vec<_> = events.iter().map(|e| e.revision.clone()).collect();
    let imported = KnowledgeRow {
        peer: outpost_api::Uuid::new_v4(),
        peer_seq: 7,
        peer_chain: source.chain,
        local_seq: source.update_seq,
        via: None,
    };
    let update = KnowledgeUpdate {
        source: source.uuid,
        source_seq: source.update_seq,
        source_chain: source.chain,
        imported: vec![imported],
    };
    // An imported row from after the batch's end: refused, and nothing of the batch is stored.
    let late = KnowledgeRow { local_seq: source.update_seq + 1, ..imported };
    let bad = KnowledgeUpdate { imported: vec![late], ..update.clone() };
    expect_err(c.put_revisions_with_knowledge(revisions.clone(), bad).await, ErrorKind::InvalidInput, "late row");
    assert_eq!(update_seq(&*c).await, 0, "nothing stored");
    // A body that does not hash to its rev: Corrupt, and no knowledge is recorded.
    let mut tampered = revisions.clone();
    tampered.last_mut().expect("events").attributes = Some(Body::new(&plain(json!({"v": "forged"}))));
    expect_err(c.put_revisions_with_knowledge(tampered, update.clone()).await, ErrorKind::Corrupt, "forged body");
    assert!(ok(c.knowledge(None).await, "knowledge").is_empty(), "no knowledge without its batch");
    let stored = ok(c.put_revisions_with_knowledge(revisions.clone(), update.clone()).await, "the batch");
    assert_eq!((stored.written, stored.update_seq), (revisions.len() as u64, source.update_seq));
    let rows = ok(c.knowledge(None).await, "knowledge");
    let direct = rows.iter().find(|r| r.via.is_none()).expect("the direct row");
    assert_eq!((direct.peer, direct.peer_seq, direct.peer_chain), (source.uuid, source.update_seq, source.chain));
    assert_eq!(direct.local_seq, stored.update_seq, "recorded at the update_seq after the write");
    let via = rows.iter().find(|r| r.via.is_some()).expect("the imported row");
    assert_eq!((via.peer, via.via), (imported.peer, Some(source.uuid)));
    assert_eq!(rows.len(), 2);
    let again = ok(c.put_revisions_with_knowledge(revisions, update).await, "the batch again");
    assert_eq!((again.written, again.update_seq), (0, stored.update_seq), "a replay writes nothing");
    assert_eq!(ok(c.knowledge(None).await, "knowledge").len(), 2, "and adds no row");
    assert_eq!(get(&*c, "t", "x").await.attributes, plain(json!({"v": 2})));
}

/// SPEC §18: knowledge rows are pruned to a few per peer epoch — the newest, and the newest of the
/// latest aligned spans of each power-of-two size (`knowledge::retained`) — so a database that
/// replicates for years keeps a bounded number and a pass reads a bounded number; the newest row is
/// never lost.
pub async fn knowledge_rows_are_pruned_to_a_few_per_peer(f: &dyn Factory) {
    let c = f.fresh().await;
    let (peer, other) = (outpost_api::Uuid::new_v4(), outpost_api::Uuid::new_v4());
    let other_row =
        KnowledgeUpdate { source: other, source_seq: 3, source_chain: ChainHash([3; 32]), imported: vec![] };
    ok(c.record_knowledge(other_row).await, "knowledge of another peer");
    for seq in 1..=100u64 {
        let chain = ChainHash([seq as u8; 32]);
        let update = KnowledgeUpdate { source: peer, source_seq: seq, source_chain: chain, imported: vec![] };
        ok(c.record_knowledge(update).await, "record knowledge");
    }
    let rows = ok(c.knowledge(None).await, "knowledge");
    let mut seqs: Vec<u64> = rows.iter().filter(|r| r.peer == peer).map(|r| r.peer_seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, [63, 95, 97, 98, 99, 100], "the newest four, then the newest of the latest aligned spans");
    let newest = rows.iter().find(|r| r.peer == peer && r.peer_seq == 100).expect("the newest row");
    assert_eq!(newest.peer_chain, ChainHash([100; 32]));
    assert!(rows.iter().any(|r| r.peer == other && r.peer_seq == 3), "another peer's rows are left alone");
}
