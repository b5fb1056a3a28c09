//! File formats across versions: a format-2 file made by the format-2 code (committed under
//! `tests/fixtures/`) opens as today's format, migrated, and answers every read exactly as the
//! format-2 code answered it (committed beside it as JSON): its records and revision trees, stubs,
//! conflicts, tombstones, merge-fields reads, the changes feed, every event with its chain hash,
//! knowledge, resume points and the live-record count. Then it passes the integrity check, its SQL
//! views read, and it takes new writes.
//!
//! The fixture was made by [`scenario`] at format 2; `OUTPOST_WRITE_FORMAT2_FIXTURE=1` makes it
//! again, and only a build whose format is 2 can.

use std::path::{Path, PathBuf};

use outpost_api::{
    Attributes, ChainHash, ChangeReader, ChangesRequest, GetOptions, InfoReader, KnowledgeRow, KnowledgeUpdate, Limits,
    ListOptions, NewTable, PutRecord, ReconcilePolicy, RecordReader, RecordRevs, RecordWriter, ReplicaSource,
    ReplicaTarget, ResumePoint, RevId, RevisionData, TableReader, TableWriter, Uuid, Value,
};
use outpost_engine::hash::revision_id;
use outpost_sqlite::SqliteDatabase;
use serde_json::{json, Value as Json};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The peer whose replicated revisions, knowledge and resume point the fixture holds.
const PEER: Uuid = Uuid::from_u128(0x0bad_cafe_0000_4000_8000_0000_0000_0001);
const VIA: Uuid = Uuid::from_u128(0x0bad_cafe_0000_4000_8000_0000_0000_0002);

fn body(pairs: &[(&str, i64)]) -> Attributes {
    let mut a = Attributes::new();
    for (k, v) in pairs {
        a = a.with(*k, Value::Int(*v));
    }
    a
}

fn put(id: &str, rev: Option<RevId>, attributes: Attributes) -> PutRecord {
    PutRecord { id: Some(id.into()), rev, attributes, resolves: vec![] }
}

/// A revision as a peer would send it, its id hashed from its body and parent.
fn revision(table: &str, id: &str, ancestry: Vec<RevId>, deleted: bool, attributes: Attributes) -> RevisionData {
    let rev = revision_id(table, id, ancestry.first(), deleted, &attributes);
    RevisionData { table: table.into(), id: id.into(), rev, deleted, attributes: Some(attributes), ancestry }
}

/// What the fixture holds: two tables (keep-conflicts and merge-fields) and a dropped one; edits,
/// deletes and a revival; conflicts replicated in, one resolved; ancestors known only as stubs, one
/// later filled in and one linked to its parent later; knowledge and a resume point from a peer.
async fn scenario(db: &SqliteDatabase) {
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
async fn answers(db: &SqliteDatabase) -> Json {
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

/// The fixture copied into `dir`, and the answers it must give.
fn copy_fixture(dir: &Path) -> (PathBuf, Json) {
    let path = dir.join("fixture.outpost");
    std::fs::copy(fixtures().join("format2.outpost"), &path).unwrap();
    let expected = serde_json::from_str(&std::fs::read_to_string(fixtures().join("format2.json")).unwrap()).unwrap();
    (path, expected)
}

#[tokio::test]
async fn a_format_1_file_is_migrated_and_gets_its_record_count_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let (path, expected) = copy_fixture(dir.path());
    // Format 1 is format 2 without the stored count.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("DELETE FROM _meta WHERE key = 'record_count'; PRAGMA user_version = 1;").unwrap();
    drop(conn);
    let db = outpost_sqlite::open_file(&path, Limits::default()).await.unwrap();
    assert_eq!(answers(&db).await, expected);
    db.delete_record("items", "a", None).await.unwrap();
    assert_eq!(db.info().await.unwrap().record_count, expected["record_count"].as_u64().unwrap() - 1);
}

#[tokio::test]
async fn views_someone_else_made_are_left_and_do_not_stop_the_migration() {
    let dir = tempfile::tempdir().unwrap();
    let (path, expected) = copy_fixture(dir.path());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE VIEW mine AS SELECT count(*) AS n FROM _records WHERE deleted = 0;
         CREATE VIEW old_internals AS SELECT count(*) AS n FROM _revisions;",
    )
    .unwrap();
    drop(conn);
    let db = outpost_sqlite::open_file(&path, Limits::default()).await.unwrap();
    assert_eq!(answers(&db).await, expected);
    let (mine, views): (i64, i64) = db
        .storage()
        .with_connection(|c| {
            let one = |sql: &str| c.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
            (one("SELECT n FROM mine"), one("SELECT count(*) FROM sqlite_master WHERE type = 'view'"))
        })
        .await;
    // Its view reads the new `_records` (the same name); the one on a table gone is kept, as made.
    let live_states = expected["records"].as_object().unwrap().values().flat_map(|r| r.as_array().unwrap()).count()
        - expected["records"]["items"].as_array().unwrap().iter().filter(|r| r["deleted"] == true).count();
    assert!(mine >= live_states as i64, "{mine} live states");
    assert_eq!(views, 6 + 2, "Outpost's six views, and the two others");
}

#[tokio::test]
async fn a_migration_that_fails_leaves_the_file_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = copy_fixture(dir.path());
    // A table in the way of the migration's: it fails half-way, inside its transaction.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE _states (x)").unwrap();
    drop(conn);
    let err = outpost_sqlite::open_file(&path, Limits::default()).await.err().expect("the migration fails");
    assert!(err.message.contains("_states"), "{}", err.message);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    let views: i64 =
        conn.query_row("SELECT count(*) FROM sqlite_master WHERE type = 'view'", [], |r| r.get(0)).unwrap();
    let revisions: i64 = conn.query_row("SELECT count(*) FROM _revisions", [], |r| r.get(0)).unwrap();
    assert_eq!((version, views, revisions), (2, 6, 73), "format 2 as it was, views and all");
    // Once the obstacle is gone, it migrates.
    conn.execute_batch("DROP TABLE _states").unwrap();
    drop(conn);
    outpost_sqlite::open_file(&path, Limits::default()).await.unwrap();
}

#[tokio::test]
async fn a_format_2_file_opens_migrated_with_everything_it_held() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = fixtures().join("format2.outpost");
    let expected_path = fixtures().join("format2.json");
    if std::env::var_os("OUTPOST_WRITE_FORMAT2_FIXTURE").is_some() {
        assert_eq!(outpost_sqlite::FORMAT_VERSION, 2, "the fixture is made by the format-2 code only");
        let made = dir.path().join("made.outpost");
        let db = outpost_sqlite::create_file(&made, "fixture", Limits::default()).await.unwrap();
        scenario(&db).await;
        let text = serde_json::to_string_pretty(&answers(&db).await).unwrap();
        std::fs::create_dir_all(fixtures()).unwrap();
        let _ = std::fs::remove_file(&fixture);
        // VACUUM INTO: one compact file, no WAL beside it.
        outpost_sqlite::backup(&db, &fixture).await.unwrap();
        std::fs::write(&expected_path, text + "\n").unwrap();
    }
    let (path, expected) = copy_fixture(dir.path());
    let db = outpost_sqlite::open_file(&path, Limits::default()).await.unwrap();
    assert_eq!(answers(&db).await, expected);
    let report = db.check().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let (format, live, history): (i64, i64, i64) = db
        .storage()
        .with_connection(|c| {
            let one = |sql: &str| c.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
            (
                one("PRAGMA user_version"),
                one("SELECT count(*) FROM items WHERE json_extract(attributes, '$.n.int') IS NOT NULL"),
                one("SELECT count(*) FROM items_history"),
            )
        })
        .await;
    assert_eq!(format, outpost_sqlite::FORMAT_VERSION);
    let items = &expected["records"]["items"];
    let live_with_n = items
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["deleted"] == false && r["attributes"].get("n").is_some())
        .count();
    assert_eq!(live, live_with_n as i64, "the items view reads the reconciled live records");
    let item_events =
        expected["events"].as_array().unwrap().iter().filter(|e| e["revision"]["table"] == "items").count();
    assert!(history > item_events as i64, "the history view holds every event and the stubs: {history}");

    // It takes new writes, and stays sound.
    let a = db.get_record("items", "a", GetOptions::default()).await.unwrap();
    db.put_record("items", put("a", Some(a.rev), body(&[("n", 4)]))).await.unwrap();
    db.put_record("items", put("new", None, body(&[("n", 1)]))).await.unwrap();
    let report = db.check().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(db.info().await.unwrap().record_count, expected["record_count"].as_u64().unwrap() + 1);
}
