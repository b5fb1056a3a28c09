//! PostgresDatabases against a real PostgreSQL (`OUTPOST_TEST_POSTGRES`; skipped when unset, failing
//! under `CI=true`): schemas and the registry, per-table views, migrations, errors, and several handles
//! (as several server processes would hold) sharing one database: gap-free seqs and cross-handle
//! wake-ups.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use outpost_api::{Attributes, ChangesRequest, Database, Databases, ErrorKind, Limits, NewTable, PutRecord};
use outpost_postgres::{PostgresConfig, PostgresDatabases};

mod common;
use common::test_url;

/// A database name no other test (here or in another process) uses.
fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{}-{}-{}", std::process::id(), nanos % 1_000_000_000, N.fetch_add(1, Ordering::Relaxed))
}

async fn connect(url: &str) -> PostgresDatabases {
    PostgresDatabases::connect_url(url, Limits::default()).await.unwrap_or_else(|e| panic!("connect: {e}"))
}

fn body(json: serde_json::Value) -> Attributes {
    Attributes::from_plain(&json).unwrap()
}

fn put(id: &str, json: serde_json::Value) -> PutRecord {
    PutRecord { id: Some(id.into()), rev: None, attributes: body(json), resolves: vec![] }
}

async fn sql_rows(url: &str, sql: &str) -> Vec<tokio_postgres::Row> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client.query(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn databases_are_schemas_listed_in_the_registry() {
    let Some(url) = test_url() else { return };
    let dbs = connect(&url).await;
    let name = unique("reg");
    dbs.create(&name).await.unwrap();
    assert!(dbs.list().await.unwrap().contains(&name));
    let schemas = sql_rows(&url, &format!("SELECT 1 FROM pg_namespace WHERE nspname = '{name}'")).await;
    assert_eq!(schemas.len(), 1, "one schema named after the database");
    assert_eq!(dbs.create(&name).await.err().unwrap().kind, ErrorKind::AlreadyExists);

    // A schema that is not Outpost's is never taken over, nor listed.
    let foreign = unique("foreign");
    sql_rows(&url, &format!("CREATE SCHEMA \"{foreign}\"")).await;
    let e = dbs.create(&foreign).await.err().unwrap();
    assert_eq!(e.kind, ErrorKind::AlreadyExists, "{e}");
    assert!(e.message.contains("not an Outpost database"), "{e}");
    assert!(!dbs.list().await.unwrap().contains(&foreign));
    assert_eq!(dbs.open(&foreign).await.err().unwrap().kind, ErrorKind::NotFound);
    assert_eq!(dbs.delete(&foreign).await.unwrap_err().kind, ErrorKind::NotFound);
    sql_rows(&url, &format!("DROP SCHEMA \"{foreign}\"")).await;

    for bad in ["pg_x", "Upper", "a;b", "../x", "_outpost"] {
        assert_eq!(dbs.create(bad).await.err().unwrap().kind, ErrorKind::InvalidInput, "{bad}");
    }

    // A second handle (another process) sees the database; deleting drops the schema.
    let other = connect(&url).await;
    assert_eq!(other.open(&name).await.unwrap().info().await.unwrap().backend, "postgres");
    dbs.delete(&name).await.unwrap();
    assert!(sql_rows(&url, &format!("SELECT 1 FROM pg_namespace WHERE nspname = '{name}'")).await.is_empty());
    assert_eq!(dbs.open(&name).await.err().unwrap().kind, ErrorKind::NotFound);
    assert_eq!(dbs.delete(&name).await.unwrap_err().kind, ErrorKind::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_have_views_for_direct_reading() {
    let Some(url) = test_url() else { return };
    let dbs = connect(&url).await;
    let name = unique("views");
    let db = dbs.create(&name).await.unwrap();
    db.create_table(NewTable { name: "people".into(), ..NewTable::default() }).await.unwrap();
    let ann = db.put_record("people", put("ann", serde_json::json!({"age": 41}))).await.unwrap();
    db.put_record("people", put("bob", serde_json::json!({"age": 7}))).await.unwrap();
    db.delete_record("people", "bob", None).await.unwrap();
    let live = sql_rows(&url, &format!("SELECT id, rev, attributes::text FROM \"{name}\".people ORDER BY id")).await;
    assert_eq!(live.len(), 1, "the deleted record is not in the live view");
    assert_eq!((live[0].get::<_, String>(0), live[0].get::<_, String>(1)), ("ann".into(), ann.rev.to_string()));
    assert!(live[0].get::<_, String>(2).contains("\"int\""), "{}", live[0].get::<_, String>(2));
    let history = sql_rows(&url, &format!("SELECT id, deleted FROM \"{name}\".people_history ORDER BY seq")).await;
    let history: Vec<(String, bool)> = history.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(history, [("ann".into(), false), ("bob".into(), false), ("bob".into(), true)]);
    dbs.delete(&name).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_a_newer_format_is_refused() {
    let Some(url) = test_url() else { return };
    let name = unique("newer");
    connect(&url).await.create(&name).await.unwrap();
    sql_rows(&url, &format!("INSERT INTO \"{name}\"._migrations (version) VALUES (99)")).await;
    let e = connect(&url).await.open(&name).await.err().unwrap();
    assert_eq!(e.kind, ErrorKind::InvalidInput, "{e}");
    assert!(e.message.contains("newer"), "{e}");
    connect(&url).await.delete(&name).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_unavailable_and_the_password_is_not_shown() {
    // Port 1 on loopback: nothing listens there.
    let config = PostgresConfig::from_url("postgres://ann:secret@127.0.0.1:1/outpost").unwrap();
    let e = PostgresDatabases::connect(config, Limits::default()).await.err().unwrap();
    assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
    assert!(e.message.contains("postgres://ann@127.0.0.1:1/outpost"), "{e}");
    assert!(!e.message.contains("secret"), "{e}");
}

/// Follow the changes feed of `db` until `total`, asserting that every seq appears once and in order.
async fn follow(db: Arc<dyn Database>, from: u64, total: u64) -> u64 {
    let mut seen = from;
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen < total {
        assert!(Instant::now() < deadline, "the feed stalled at {seen} of {total}");
        let page = db.changes(ChangesRequest { since: seen, limit: 37, tables: None }).await.unwrap();
        for c in &page.changes {
            assert_eq!(c.seq, seen + 1, "after seq {seen} the feed showed {} (a seq was skipped or repeated)", c.seq);
            seen = c.seq;
        }
        if page.changes.is_empty() {
            db.wait_for_changes(seen, Duration::from_secs(5)).await.unwrap();
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_on_two_handles_take_gap_free_seqs_in_order() {
    let Some(url) = test_url() else { return };
    let (a, b) = (connect(&url).await, connect(&url).await);
    let name = unique("seqs");
    let db_a = a.create(&name).await.unwrap();
    db_a.create_table(NewTable { name: "items".into(), ..NewTable::default() }).await.unwrap();
    let db_b = b.open(&name).await.unwrap();
    const WRITERS: u64 = 8;
    const EACH: u64 = 40;
    let mut seq = 1;
    for round in 0..3 {
        let reader = tokio::spawn(follow(db_b.clone(), seq, seq + WRITERS * EACH));
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let db = if w % 2 == 0 { db_a.clone() } else { db_b.clone() };
            writers.push(tokio::spawn(async move {
                for i in 0..EACH {
                    // New records only: each one stays in the feed at its own seq.
                    db.put_record("items", put(&format!("r{round}-w{w}-{i}"), serde_json::json!({"i": i})))
                        .await
                        .unwrap();
                }
            }));
        }
        for w in writers {
            w.await.unwrap();
        }
        seq = reader.await.unwrap();
        assert_eq!(seq, 1 + (round + 1) * WRITERS * EACH);
    }
    assert_eq!(db_a.info().await.unwrap().update_seq, seq);
    a.delete(&name).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_wakes_for_a_write_through_another_handle() {
    let Some(url) = test_url() else { return };
    let (a, b) = (connect(&url).await, connect(&url).await);
    let name = unique("wake");
    let db_a = a.create(&name).await.unwrap();
    let db_b = b.open(&name).await.unwrap();
    for round in 0..3u64 {
        let since = db_b.info().await.unwrap().update_seq;
        let waiting = {
            let db_b = db_b.clone();
            tokio::spawn(async move { db_b.wait_for_changes(since, Duration::from_secs(30)).await.unwrap() })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        let wrote = Instant::now();
        db_a.create_table(NewTable { name: format!("t{round}"), ..NewTable::default() }).await.unwrap();
        let woke = waiting.await.unwrap();
        println!("round {round}: woken {:?} after the write through the other handle", wrote.elapsed());
        assert_eq!(woke, since + 1);
        assert!(wrote.elapsed() < Duration::from_secs(10), "woken only after {:?}", wrote.elapsed());
    }
    a.delete(&name).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_listener_reconnects_and_catches_up() {
    let Some(url) = test_url() else { return };
    let app = unique("outpost-listener");
    let sep = if url.contains('?') { '&' } else { '?' };
    let b_url = format!("{url}{sep}application_name={app}");
    let (a, b) = (connect(&url).await, connect(&b_url).await);
    let name = unique("relisten");
    let db_a = a.create(&name).await.unwrap();
    let db_b = b.open(&name).await.unwrap();
    let waiting = {
        let db_b = db_b.clone();
        tokio::spawn(async move { db_b.wait_for_changes(0, Duration::from_secs(30)).await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Cut b's listening session; the commit below is announced while nobody of b listens.
    let killed = sql_rows(
        &url,
        &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{app}' AND query LIKE 'LISTEN%'"),
    )
    .await;
    assert_eq!(killed.len(), 1, "b has one listening session");
    let wrote = Instant::now();
    db_a.create_table(NewTable { name: "late".into(), ..NewTable::default() }).await.unwrap();
    assert_eq!(waiting.await.unwrap(), 1);
    println!("woken {:?} after the write, across a reconnection", wrote.elapsed());
    assert!(wrote.elapsed() < Duration::from_secs(10));
    a.delete(&name).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_is_renamed_whole_and_never_onto_a_taken_name() {
    let Some(url) = test_url() else { return };
    let dbs = connect(&url).await;
    let (from, to, taken) = (unique("aside"), unique("final"), unique("taken"));
    let db: Arc<dyn Database> = dbs.create_postgres(&from).await.unwrap();
    db.create_table(NewTable { name: "t".into(), ..NewTable::default() }).await.unwrap();
    let written = db.put_record("t", put("a", serde_json::json!({"n": 1}))).await.unwrap().rev;
    let before = db.info().await.unwrap();
    dbs.create(&taken).await.unwrap();
    assert_eq!(dbs.rename(&from, &taken).await.err().unwrap().kind, ErrorKind::AlreadyExists);
    assert_eq!(dbs.rename(&unique("none"), &to).await.err().unwrap().kind, ErrorKind::NotFound);
    let engine = dbs.rename(&from, &to).await.unwrap();
    let renamed: &dyn Database = &*engine;
    let after = renamed.info().await.unwrap();
    assert_eq!((after.name.as_str(), after.uuid, after.chain), (to.as_str(), before.uuid, before.chain));
    assert_eq!(renamed.get_record("t", "a", Default::default()).await.unwrap().rev, written);
    let listed = dbs.list().await.unwrap();
    assert!(listed.contains(&to) && !listed.contains(&from), "{listed:?}");
    // Its views moved with it, and it takes writes under its new name.
    assert_eq!(sql_rows(&url, &format!("SELECT count(*) FROM \"{to}\".t")).await.len(), 1);
    renamed.put_record("t", put("b", serde_json::json!({"n": 2}))).await.unwrap();
    assert!(engine.check().await.unwrap().problems.is_empty());
    for name in [to, taken] {
        dbs.delete(&name).await.unwrap();
    }
}
