//! Database formats across versions on a real PostgreSQL (`OUTPOST_TEST_POSTGRES`; skipped when
//! unset, failing under `CI=true`): a format-2 schema made by the format-2 code (a `pg_dump` committed
//! under `tests/fixtures/`) opens as today's format, migrated, and answers every read exactly as the
//! format-2 code answered it (committed beside it as JSON): records and revision trees, stubs,
//! conflicts, tombstones, merge-fields reads, the changes feed, every event with its chain hash,
//! knowledge, resume points and the live-record count. Then it passes the integrity check, its SQL
//! views read, and it takes new writes.
//!
//! The fixture was made by the scenario SQLite's fixture was made by (`format_scenario`), at format
//! 2; `OUTPOST_WRITE_FORMAT2_FIXTURE=1` makes it again (with `pg_dump`), and only a build whose
//! format is 2 can.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use outpost_api::{Databases, InfoReader, Limits};
use outpost_postgres::{PostgresDatabases, REGISTRY};
use serde_json::Value as Json;

mod common;
use common::test_url;

#[path = "../../storage-sqlite/tests/common/format_scenario.rs"]
mod format_scenario;
use format_scenario::{answers, check_views, scenario, takes_writes};

/// The name the fixture's schema was dumped under.
const FIXTURE_DB: &str = "format2-fixture";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A database name no other test (here or in another process) uses.
fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{}-{}-{}", std::process::id(), nanos % 1_000_000_000, N.fetch_add(1, Ordering::Relaxed))
}

/// `pg_dump` of the fixture's schema, as plain INSERTs (no COPY, so one simple query loads it).
fn dump(url: &str, to: &Path) {
    let bin = ["/usr/lib/postgresql/15/bin/pg_dump", "pg_dump"]
        .into_iter()
        .find(|b| !b.starts_with('/') || Path::new(b).exists())
        .unwrap();
    let out = std::process::Command::new(bin)
        .args(["--schema", &format!("\"{FIXTURE_DB}\""), "--inserts", "--no-owner", "--no-privileges", url])
        .output()
        .expect("pg_dump runs");
    assert!(out.status.success(), "pg_dump: {}", String::from_utf8_lossy(&out.stderr));
    // psql's meta-commands (`\restrict` in newer dumps) are not SQL.
    let text = String::from_utf8(out.stdout).unwrap();
    let sql: Vec<&str> = text.lines().filter(|l| !l.starts_with('\\')).collect();
    std::fs::write(to, sql.join("\n") + "\n").unwrap();
}

/// Make the fixture again: the scenario on a new format-2 database, its answers and its dump.
async fn write_fixture(url: &str, dbs: &PostgresDatabases) {
    assert_eq!(outpost_postgres::FORMAT_VERSION, 2, "the fixture is made by the format-2 code only");
    let _ = dbs.delete(FIXTURE_DB).await;
    let db = dbs.create_postgres(FIXTURE_DB).await.unwrap();
    scenario(&db).await;
    let text = serde_json::to_string_pretty(&answers(&db).await).unwrap();
    std::fs::create_dir_all(fixtures()).unwrap();
    dump(url, &fixtures().join("format2.sql"));
    std::fs::write(fixtures().join("format2.json"), text + "\n").unwrap();
    dbs.delete(FIXTURE_DB).await.unwrap();
}

/// Load the committed fixture as database `name` (its schema and its registry row), and the answers it
/// must give.
async fn load_fixture(dbs: &PostgresDatabases, name: &str) -> Json {
    let sql = std::fs::read_to_string(fixtures().join("format2.sql")).unwrap();
    let sql = sql.replace(&format!("\"{FIXTURE_DB}\""), &format!("\"{name}\""));
    let client = dbs.connection().await.unwrap();
    client.batch_execute(&sql).await.unwrap();
    // pg_dump empties the search path for its session.
    client.batch_execute("RESET search_path").await.unwrap();
    client
        .execute(&format!("INSERT INTO \"{REGISTRY}\".databases (name, schema_name) VALUES ($1, $1)"), &[&name])
        .await
        .unwrap();
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("format2.json")).unwrap()).unwrap()
}

async fn one(dbs: &PostgresDatabases, sql: &str) -> i64 {
    dbs.connection().await.unwrap().query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_2_schema_opens_migrated_with_everything_it_held() {
    let Some(url) = test_url() else { return };
    let dbs = PostgresDatabases::connect_url(&url, Limits::default()).await.unwrap();
    if std::env::var_os("OUTPOST_WRITE_FORMAT2_FIXTURE").is_some() {
        write_fixture(&url, &dbs).await;
    }
    let name = unique("format2");
    let expected = load_fixture(&dbs, &name).await;
    let db = dbs.open_postgres(&name).await.unwrap();
    assert_eq!(answers(&db).await, expected);
    let report = db.check().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);

    let s = format!("\"{name}\"");
    let format = one(&dbs, &format!("SELECT max(version)::int8 FROM {s}._migrations")).await;
    assert_eq!(format, outpost_postgres::FORMAT_VERSION);
    let live = one(&dbs, &format!("SELECT count(*) FROM {s}.items WHERE attributes->'n'->'int' IS NOT NULL")).await;
    let history = one(&dbs, &format!("SELECT count(*) FROM {s}.items_history")).await;
    check_views(&expected, live, history);
    takes_writes(&db, &expected).await;
    // Its size in storage: the schema's tables with their indexes, more than the rows' text alone.
    let size = db.size_bytes().await.unwrap().expect("PostgreSQL knows its size");
    let text = one(&dbs, &format!("SELECT sum(length(coalesce(body, '')))::int8 FROM {s}._events")).await;
    assert!(size > text as u64, "{size} bytes");
    dbs.delete(&name).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_of_yours_on_the_old_tables_stops_the_migration_which_leaves_the_schema_as_it_was() {
    let Some(url) = test_url() else { return };
    let dbs = PostgresDatabases::connect_url(&url, Limits::default()).await.unwrap();
    let name = unique("format2-views");
    let expected = load_fixture(&dbs, &name).await;
    let s = format!("\"{name}\"");
    let client = dbs.connection().await.unwrap();
    client
        .batch_execute(&format!(
            "CREATE VIEW {s}.mine AS SELECT count(*) AS n FROM {s}._records WHERE NOT deleted;
             CREATE VIEW {s}.old_internals AS SELECT count(*) AS n FROM {s}._revisions;"
        ))
        .await
        .unwrap();
    let err = dbs.open_postgres(&name).await.err().expect("the migration fails");
    assert!(err.message.contains("migrating") && err.message.contains("_revisions"), "{}", err.message);
    let views = format!("SELECT count(*) FROM pg_catalog.pg_views WHERE schemaname = '{name}'");
    assert_eq!(one(&dbs, &format!("SELECT max(version)::int8 FROM {s}._migrations")).await, 2);
    assert_eq!(one(&dbs, &views).await, 6 + 2, "format 2 as it was: Outpost's six views and the two others");
    assert_eq!(one(&dbs, &format!("SELECT count(*) FROM {s}._revisions")).await, 73);

    // Once the obstacle is gone, it migrates; the view on `_records` is kept and reads the new table.
    client.batch_execute(&format!("DROP VIEW {s}.old_internals")).await.unwrap();
    let db = dbs.open_postgres(&name).await.unwrap();
    assert_eq!(answers(&db).await, expected);
    assert_eq!(one(&dbs, &views).await, 6 + 1);
    assert!(one(&dbs, &format!("SELECT n FROM {s}.mine")).await > 0);
    dbs.delete(&name).await.unwrap();
}
