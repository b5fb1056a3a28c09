//! The history a format fixture holds, written by one build and read by the next: the same scenario
//! on every backend (SQLite's `format.rs`, PostgreSQL's `format.rs` includes this file), and
//! everything the api answers about a database as JSON, which the migrated fixture must answer
//! unchanged.

use outpost_api::{
    Attributes, Body, ChainHash, ChangeReader, ChangesRequest, GetOptions, InfoReader, KnowledgeRow, KnowledgeUpdate,
    ListOptions, NewTable, PutRecord, ReconcilePolicy, RecordReader, RecordRevs, RecordWriter, ReplicaSource,
    ReplicaTarget, ResumePoint, RevId, RevisionData, TableReader, TableWriter, Uuid, Value,
};
use outpost_engine::hash::revision_id;
use outpost_engine::storage::Storage;
use outpost_engine::Engine;
use serde_json::{json, Value as Json};

/// The peer whose replicated revisions, knowledge and resume point the fixture holds.
pub const PEER: Uuid = Uuid::from_u128(0x0bad_cafe_0000_4000_8000_0000_0000_0001);
const VIA: Uuid = Uuid::from_u128(0x0bad_cafe_0000_4000_8000_0000_0000_0002);

pub fn body(pairs: &[(&str, i64)]) -> Attributes {
    let mut a = Attributes::new();
    for (k, v) in pairs {
        a = a.with(*k, Value::Int(*v));
    }
    a
}

pub fn put(id: &str, rev: Option<RevId>, attributes: Attributes) -> PutRecord {
    PutRecord { id: Some(id.into()), rev, attributes, resolves: vec![] }
}

/// A revision as a peer would send it, its id hashed from its body and parent.
fn revision(table: &str, id: &str, ancestry: Vec<RevId>, deleted: bool, attributes: Attributes) -> RevisionData {
    let rev = revision_id(table, id, ancestry.first(), deleted, &attributes);
    RevisionData {
        table: table.into(),
        id: id.into(),
        rev,
        deleted,
        attributes: Some(Body::new(&attributes)),
        ancestry,
        foreign: None,
    }
}

/// What the fixture holds: two tables (keep-conflicts and merge-fields) and a dropped one; edits,
/// deletes and a revival; conflicts replicated in, one resolved; ancestors known only as stubs, one
/// later filled in and one linked to its parent later; knowledge and a resume point from a peer.
pub async fn scenario<S: Storage + 'static>(db: &Engine<S>) {
    db.create_table(NewTable { name: "items".into(), ..NewTable::default() }).await.unwrap();
    let notes = NewTable { name: "notes".into(), policy: ReconcilePolicy::MergeFields, ..NewTable::default() };
    db.create_table(notes).await.unwrap();
    db.create_table(NewTable { name: "dropped".into(), ..NewTable::default() }).await.unwrap();
    db.put_record("dropped", put("d-1", None, body(&[("n", 1)]))).await.unwrap();
    db.delete_table("dropped").await.unwrap();

    // Edits, a delete, a delete and revival.
    let a1 = db.put_record("items", put("a", None, body(&[("n", 1)]))).await.unwrap().rev;
    let a2 = db.put_record("items", put("a", Some(a1), body(&[("n", 2)]))).await.unwrap().rev;
    db.put_record("items", put("a", Some(a2), body(&[("n", 3), ("m", 1)]))).await.unwrap();
    db.put_record("items", put("b", None, body(&[("n", 1)]))).await.unwrap();
    db.delete_record("items", "b", None).await.unwrap();
    db.put_record("items", put("c", None, body(&[("n", 1)]))).await.unwrap();
    db.delete_record("items", "c", None).await.unwrap();
    db.put_record("items", put("c", None, body(&[("n", 2)]))).await.unwrap();
    for i in 0..40 {
        db.put_record("items", put(&format!("bulk-{i:02}"), None, body(&[("i", i)]))).await.unwrap();
    }

    // Conflicts from a peer: on d (kept) and on e (resolved by a local write).
    let d1 = db.put_record("items", put("d", None, body(&[("n", 1)]))).await.unwrap().rev;
    db.put_record("items", put("d", Some(d1), body(&[("n", 2)]))).await.unwrap();
    let e1 = db.put_record("items", put("e", None, body(&[("n", 1)]))).await.unwrap().rev;
    let e_local = db.put_record("items", put("e", Some(e1), body(&[("n", 2)]))).await.unwrap().rev;
    let d_peer = revision("items", "d", vec![d1], false, body(&[("n", 20)]));
    let e_peer = revision("items", "e", vec![e1], false, body(&[("n", 30)]));
    let e_peer_rev = e_peer.rev;
    db.put_revisions(vec![d_peer, e_peer], None).await.unwrap();
    let e_winner = db.get_record("items", "e", GetOptions::default()).await.unwrap().rev;
    let e_loser = if e_winner == e_local { e_peer_rev } else { e_local };
    let resolve = PutRecord { resolves: vec![e_loser], ..put("e", Some(e_winner), body(&[("n", 40)])) };
    db.put_record("items", resolve).await.unwrap();

    // Ancestors as stubs: f3 arrives with f2 and f1 in its ancestry; then f1's own body fills its stub.
    let f1 = revision("items", "f", vec![], false, body(&[("n", 1)]));
    let f2 = revision("items", "f", vec![f1.rev], false, body(&[("n", 2)]));
    let f3 = revision("items", "f", vec![f2.rev, f1.rev], false, body(&[("n", 3)]));
    db.put_revisions(vec![f3], None).await.unwrap();
    db.put_revisions(vec![f1], None).await.unwrap();
    // g4 arrives with its ancestry cut at g3 (a stub of unknown parent), and g3's parent comes later.
    let g1 = revision("items", "g", vec![], false, body(&[("n", 1)]));
    let g2 = revision("items", "g", vec![g1.rev], false, body(&[("n", 2)]));
    let g3 = revision("items", "g", vec![g2.rev, g1.rev], false, body(&[("n", 3)]));
    let g4 = revision("items", "g", vec![g3.rev], false, body(&[("n", 4)]));
    let g4b = revision("items", "g", vec![g3.rev, g2.rev, g1.rev], false, body(&[("n", 5)]));
    db.put_revisions(vec![g4], None).await.unwrap();
    db.put_revisions(vec![g4b], None).await.unwrap();

    // Merge-fields: two branches editing different fields, and one field both edited.
    let n1 = db.put_record("notes", put("n", None, body(&[("x", 1), ("y", 1), ("z", 1)]))).await.unwrap().rev;
    db.put_record("notes", put("n", Some(n1), body(&[("x", 2), ("y", 1), ("z", 2)]))).await.unwrap();
    let peer_note = revision("notes", "n", vec![n1], false, body(&[("x", 1), ("y", 3), ("z", 3)]));

    // Knowledge and a resume point, recorded with the peer's last batch.
    let chain = ChainHash([7; 32]);
    let knowledge = KnowledgeUpdate {
        source: PEER,
        source_seq: 12,
        source_chain: chain,
        imported: vec![KnowledgeRow {
            peer: VIA,
            peer_seq: 5,
            peer_chain: ChainHash([5; 32]),
            local_seq: 9,
            via: None,
        }],
    };
    db.put_revisions_with_knowledge(vec![peer_note], knowledge).await.unwrap();
    let resume = ResumePoint { source: PEER, source_seq: 14, source_chain: ChainHash([9; 32]) };
    let tomb = revision("items", "h", vec![], true, Attributes::new());
    db.put_revisions(vec![tomb], Some(resume)).await.unwrap();
}

/// Everything the api answers about the database, as JSON.
pub async fn answers<S: Storage + 'static>(db: &Engine<S>) -> Json {
    let info = db.info().await.unwrap();
    let tables: Vec<String> = db.list_tables().await.unwrap().into_iter().map(|t| t.name).collect();
    let mut records = serde_json::Map::new();
    for table in &tables {
        let options = ListOptions { include_deleted: true, limit: 1000, ..ListOptions::default() };
        let page = db.list_records(table, options).await.unwrap();
        let mut each = Vec::new();
        for r in page.records {
            // A deleted record reads as NotFound: its listing is what there is.
            let full = GetOptions { conflicts: true, revs: true, ..GetOptions::default() };
            each.push(if r.deleted { r } else { db.get_record(table, &r.id, full).await.unwrap() });
        }
        records.insert(table.clone(), serde_json::to_value(each).unwrap());
    }
    let changes = db.changes(ChangesRequest { since: 0, limit: 1000, tables: None }).await.unwrap();
    let events = db.events(0, 1000).await.unwrap();
    // Every stored revision is held; one made up is not.
    let unknown = RecordRevs { table: "items".into(), id: "a".into(), revs: vec![RevId::new(1, [0xab; 16])] };
    let have = events.iter().map(|e| {
        let r = &e.revision;
        RecordRevs { table: r.table.clone(), id: r.id.clone(), revs: vec![r.rev] }
    });
    let held: Vec<RecordRevs> = db.revs_diff(have.chain([unknown]).collect()).await.unwrap();
    json!({
        "uuid": info.uuid,
        "epochs": info.epochs,
        "update_seq": info.update_seq,
        "chain": info.chain,
        "record_count": info.record_count,
        "chain_at_10": db.chain_hash_at(10).await.unwrap(),
        "tables": tables,
        "records": records,
        "changes": changes,
        "events": events,
        "missing": held,
        "knowledge": db.knowledge(None).await.unwrap(),
        "resume": db.resume_point(PEER).await.unwrap(),
    })
}

/// What the migrated fixture's views must show: `live`, the rows of the `items` view with an `n`, and
/// `history`, the rows of `items_history`.
pub fn check_views(expected: &Json, live: i64, history: i64) {
    let items = expected["records"]["items"].as_array().unwrap();
    let live_with_n = items.iter().filter(|r| r["deleted"] == false && r["attributes"].get("n").is_some()).count();
    assert_eq!(live, live_with_n as i64, "the items view reads the reconciled live records");
    let item_events =
        expected["events"].as_array().unwrap().iter().filter(|e| e["revision"]["table"] == "items").count();
    assert!(history > item_events as i64, "the history view holds every event and the stubs: {history}");
}

/// The migrated fixture takes new writes, and stays sound.
pub async fn takes_writes<S: Storage + 'static>(db: &Engine<S>, expected: &Json) {
    let a = db.get_record("items", "a", GetOptions::default()).await.unwrap();
    db.put_record("items", put("a", Some(a.rev), body(&[("n", 4)]))).await.unwrap();
    db.put_record("items", put("new", None, body(&[("n", 1)]))).await.unwrap();
    let report = db.check().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(db.info().await.unwrap().record_count, expected["record_count"].as_u64().unwrap() + 1);
}
