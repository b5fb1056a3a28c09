//! File formats across versions: a format-2 file made by the format-2 code (committed under
//! `tests/fixtures/`) opens as today's format, migrated, and answers every read exactly as the
//! format-2 code answered it (committed beside it as JSON): its records and revision trees, stubs,
//! conflicts, tombstones, merge-fields reads, the changes feed, every event with its chain hash,
//! knowledge, resume points and the live-record count. Then it passes the integrity check, its SQL
//! views read, and it takes new writes.
//!
//! The fixture was made by `format_scenario::scenario` at format 2; `OUTPOST_WRITE_FORMAT2_FIXTURE=1` makes it
//! again, and only a build whose format is 2 can. A format-4 fixture, made the same way at format 4
//! (`OUTPOST_WRITE_FORMAT4_FIXTURE=1`) with foreign revisions, superseded events and a local document
//! added (`foreign_scenario`), proves the migrations after it.

use std::path::{Path, PathBuf};

use outpost_api::{
    Attributes, Body, InfoReader, Limits, LocalDocs, NewTable, RecordWriter, ReplicaTarget, RevId, RevisionData,
    TableWriter,
};
use outpost_engine::foreign::digest;
use outpost_engine::hash::revision_id;
use outpost_engine::storage::Storage;
use outpost_engine::Engine;
use serde_json::Value as Json;

#[path = "common/format_scenario.rs"]
mod format_scenario;
use format_scenario::{answers, body, check_views, scenario, takes_writes};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
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
    opens_migrated_with_everything_it_held(2).await;
}

#[tokio::test]
async fn a_format_4_file_opens_migrated_with_everything_it_held() {
    opens_migrated_with_everything_it_held(4).await;
}

/// The fixture of format `format` (made again by the code of that format when
/// `OUTPOST_WRITE_FORMAT{format}_FIXTURE` is set) opens migrated and answers as it did.
async fn opens_migrated_with_everything_it_held(format_of_fixture: i64) {
    let format = format_of_fixture;
    let dir = tempfile::tempdir().unwrap();
    let fixture = fixtures().join(format!("format{format}.outpost"));
    let expected_path = fixtures().join(format!("format{format}.json"));
    if std::env::var_os(format!("OUTPOST_WRITE_FORMAT{format}_FIXTURE")).is_some() {
        assert_eq!(outpost_sqlite::FORMAT_VERSION, format, "the fixture is made by the format-{format} code only");
        let made = dir.path().join("made.outpost");
        let db = outpost_sqlite::create_file(&made, "fixture", Limits::default()).await.unwrap();
        scenario(&db).await;
        if format >= 4 {
            foreign_scenario(&db).await;
        }
        let text = serde_json::to_string_pretty(&all_answers(&db, format).await).unwrap();
        std::fs::create_dir_all(fixtures()).unwrap();
        let _ = std::fs::remove_file(&fixture);
        // VACUUM INTO: one compact file, no WAL beside it.
        outpost_sqlite::backup(&db, &fixture).await.unwrap();
        std::fs::write(&expected_path, text + "\n").unwrap();
    }
    let path = dir.path().join("fixture.outpost");
    std::fs::copy(&fixture, &path).unwrap();
    let expected: Json = serde_json::from_str(&std::fs::read_to_string(&expected_path).unwrap()).unwrap();
    let db = outpost_sqlite::open_file(&path, Limits::default()).await.unwrap();
    assert_eq!(all_answers(&db, format).await, expected);
    let report = db.check().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let (format, (vacuum, free), live, history): (i64, (i64, i64), i64, i64) = db
        .storage()
        .with_connection(|c| {
            let one = |sql: &str| c.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
            (
                one("PRAGMA user_version"),
                (one("PRAGMA auto_vacuum"), one("PRAGMA freelist_count")),
                one("SELECT count(*) FROM items WHERE json_extract(attributes, '$.n.int') IS NOT NULL"),
                one("SELECT count(*) FROM items_history"),
            )
        })
        .await;
    assert_eq!(format, outpost_sqlite::FORMAT_VERSION);
    // The old tables' pages went back to the file system, in a file that returns free pages (as the
    // format-4 fixture does; the format-2 one was made before files did).
    assert_eq!(vacuum == 2, format_of_fixture >= 4);
    if vacuum == 2 {
        assert_eq!(free, 0, "pages left free by the migration");
    }
    check_views(&expected, live, history);
    views_show_revision_ids_as_text(&db, &expected).await;
    takes_writes(&db, &expected).await;
    // Its size in storage: the file and its WAL.
    let on_disk = std::fs::metadata(&path).unwrap().len();
    let size = db.size_bytes().await.unwrap().expect("SQLite knows its size");
    assert!(size >= on_disk, "{size} bytes, the file alone {on_disk}");
}

/// What a format-4 file holds besides the shared scenario (SPEC §3, §17): foreign revisions in a
/// table open to CouchDB peers, one with a child; a foreign body replaced by a smaller-digest one,
/// and one by the native body of its id (both leave a superseded event); a local document.
async fn foreign_scenario<S: Storage + 'static>(db: &Engine<S>) {
    let pouch = NewTable { name: "pouch".into(), couch: true, ..NewTable::default() };
    db.create_table(pouch).await.unwrap();
    let foreign = |id: &str, rev: RevId, ancestry: Vec<RevId>, attributes: Attributes| RevisionData {
        table: "pouch".into(),
        id: id.into(),
        rev,
        deleted: false,
        foreign: Some(digest("pouch", id, ancestry.first(), false, &attributes)),
        attributes: Some(Body::new(&attributes)),
        ancestry,
    };
    // x: a foreign first revision and its foreign child.
    let x1 = RevId::new(1, [0x11; 16]);
    let x2 = RevId::new(2, [0x22; 16]);
    db.put_revisions(vec![foreign("x", x1, vec![], body(&[("n", 1)]))], None).await.unwrap();
    db.put_revisions(vec![foreign("x", x2, vec![x1], body(&[("n", 2)]))], None).await.unwrap();
    // y: two foreign bodies for one id, the larger digest first, so the second replaces it.
    let y1 = RevId::new(1, [0x33; 16]);
    let (mut first, mut second) =
        (foreign("y", y1, vec![], body(&[("n", 1)])), foreign("y", y1, vec![], body(&[("n", 2)])));
    if second.foreign > first.foreign {
        std::mem::swap(&mut first, &mut second);
    }
    db.put_revisions(vec![first], None).await.unwrap();
    db.put_revisions(vec![second], None).await.unwrap();
    // z: a foreign body under the id a native body hashes to; the native body replaces it.
    let native = body(&[("n", 3)]);
    let z1 = revision_id("pouch", "z", None, false, &native);
    db.put_revisions(vec![foreign("z", z1, vec![], body(&[("n", 4)]))], None).await.unwrap();
    let mut replacing = foreign("z", z1, vec![], native);
    replacing.foreign = None;
    db.put_revisions(vec![replacing], None).await.unwrap();
    let map = |v: serde_json::Value| v.as_object().unwrap().clone();
    let one = db.put_local("pouch", "checkpoint", None, Some(map(serde_json::json!({"seq": 1})))).await.unwrap();
    db.put_local("pouch", "checkpoint", Some(one), Some(map(serde_json::json!({"seq": 2})))).await.unwrap();
}

/// [`answers`], and for a format-4 fixture its local document too.
async fn all_answers<S: Storage + 'static>(db: &Engine<S>, format: i64) -> Json {
    let mut all = answers(db).await;
    if format >= 4 {
        all["local"] = serde_json::to_value(db.get_local("pouch", "checkpoint").await.unwrap()).unwrap();
    }
    all
}

/// The views show revision ids as the api does, as text a plain `sqlite3` user reads (no Outpost
/// function): each live record's winner, and each event's id and parent.
async fn views_show_revision_ids_as_text(db: &Engine<outpost_sqlite::SqliteStorage>, expected: &Json) {
    type History = Vec<(String, String, Option<String>)>;
    let (live, history): (Vec<(String, String)>, History) = db
        .storage()
        .with_connection(|c| {
            let mut live = c.prepare("SELECT id, rev FROM items").unwrap();
            let live = live.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
            let live = live.collect::<rusqlite::Result<_>>().unwrap();
            let mut history = c.prepare("SELECT id, rev, parent FROM items_history WHERE seq IS NOT NULL").unwrap();
            let history = history.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap();
            (live, history.collect::<rusqlite::Result<_>>().unwrap())
        })
        .await;
    let records = expected["records"]["items"].as_array().unwrap();
    let winners: Vec<(String, String)> = records
        .iter()
        .filter(|r| r["deleted"] == false)
        .map(|r| (r["id"].as_str().unwrap().to_owned(), r["rev"].as_str().unwrap().to_owned()))
        .collect();
    let mut live = live;
    live.sort();
    let mut winners = winners;
    winners.sort();
    assert_eq!(live, winners);
    for e in expected["events"].as_array().unwrap().iter().map(|e| &e["revision"]).filter(|r| r["table"] == "items") {
        let (id, rev) = (e["id"].as_str().unwrap(), e["rev"].as_str().unwrap());
        let parent = e["ancestry"].as_array().unwrap().first().map(|p| p.as_str().unwrap().to_owned());
        let row = history.iter().find(|(i, r, _)| i == id && r == rev).unwrap_or_else(|| panic!("{id} {rev}"));
        assert_eq!(row.2, parent, "{id} {rev}");
    }
}

#[tokio::test]
async fn a_format_4_file_whose_revision_ids_do_not_convert_is_refused_and_left_as_it_was() {
    for (what, sql) in [
        ("rev", "UPDATE _events SET rev = '1-0123' WHERE seq = 6"),
        ("rev", "UPDATE _records SET rev = '01-' || substr(rev, 3) WHERE id = 'bulk-00'"),
        ("parent", "UPDATE _events SET parent = '7-' || substr(parent, 3) WHERE seq = (SELECT min(seq) FROM _events WHERE parent IS NOT NULL)"),
        ("parent", "UPDATE _stubs SET parent = 'not an id' WHERE rev = (SELECT min(rev) FROM _stubs WHERE parent IS NOT NULL)"),
        ("list", "UPDATE _records SET leaves = leaves || ' 2-xyz' WHERE id = 'd'"),
        ("rev", "UPDATE _events SET rev = '9007199254740992-' || substr(rev, 3) WHERE seq = 6"),
        ("leaves", "UPDATE _records SET leaves = zeroblob(24) WHERE id = 'bulk-01'"),
        ("leaves", "UPDATE _records SET conflicts = x'00' WHERE id = 'bulk-02'"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fixture.outpost");
        std::fs::copy(fixtures().join("format4.outpost"), &path).unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        assert_eq!(conn.execute(sql, []).unwrap(), 1, "{sql}");
        let before: i64 = conn.query_row("SELECT sum(length(rev)) FROM _events", [], |r| r.get(0)).unwrap();
        drop(conn);
        let err = outpost_sqlite::open_file(&path, Limits::default()).await.err().expect(sql);
        assert_eq!(err.kind, outpost_api::ErrorKind::Corrupt, "{sql}: {err}");
        if what != "list" {
            assert!(err.message.contains(what), "{sql}: {err}");
        }
        let conn = rusqlite::Connection::open(&path).unwrap();
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        let after: i64 = conn.query_row("SELECT sum(length(rev)) FROM _events", [], |r| r.get(0)).unwrap();
        assert_eq!((version, after), (4, before), "{sql}: format 4 as it was");
    }
}

#[tokio::test]
async fn views_are_remade_once_each_and_only_outposts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fixture.outpost");
    std::fs::copy(fixtures().join("format4.outpost"), &path).unwrap();
    // Two tables whose views could claim one name (`items_history`: the history of `items`, made first,
    // has it), and a view of someone else's under the name of a table defined after it (`report`).
    let conn = rusqlite::Connection::open(&path).unwrap();
    for table in ["items_history", "report"] {
        conn.execute(
            "INSERT INTO _events (seq, tbl, id, rev, parent, deleted, body, chain, digest)
             VALUES ((SELECT max(seq) + 1 FROM _events), '_tables', ?1, '1-' || lower(hex(randomblob(16))), NULL, 1,
                     '{}', zeroblob(32), NULL)",
            [table],
        )
        .unwrap();
    }
    conn.execute_batch("CREATE VIEW report AS SELECT 42 AS answer").unwrap();
    drop(conn);
    let db = outpost_sqlite::open_file(&path, Limits::default()).await.unwrap();
    let (answer, history, views): (i64, i64, i64) = db
        .storage()
        .with_connection(|c| {
            let one = |sql: &str| c.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
            (
                one("SELECT answer FROM report"),
                one("SELECT count(*) FROM items_history WHERE rev LIKE '%-%'"),
                one("SELECT count(*) FROM sqlite_master WHERE type = 'view'"),
            )
        })
        .await;
    assert_eq!(answer, 42, "someone else's view is left as it was");
    assert!(history > 40, "items' history keeps its name: {history} rows");
    assert_eq!(views, 8 + 1, "Outpost's eight views (four tables), and the other");
}
