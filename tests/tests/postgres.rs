//! The conformance suite on PostgreSQL: every test on a fresh schema of the test server
//! (`OUTPOST_TEST_POSTGRES`; skipped when unset, failing under `CI=true`). And replication between a
//! SQLite and a PostgreSQL database, both ways.

use outpost_api::{Database, ReconcilePolicy};
use outpost_tests::postgres::PostgresFactory;
use outpost_tests::support::{all_changes, delete, get, plain, put, replicate, table_with};
use outpost_tests::{Factory, SqliteFactory};

outpost_tests::conformance_suite!(PostgresFactory::new());

/// The state a peer holds, as the api shows it: every change (winner, leaves) and every record's
/// reconciled state with its conflicts.
async fn state(db: &dyn Database) -> Vec<String> {
    let mut out = Vec::new();
    for c in all_changes(db, 0, None).await {
        let mut leaves = c.leaves.clone();
        leaves.sort();
        let line = format!("{}/{} {} deleted={} leaves={leaves:?}", c.table, c.id, c.rev, c.deleted);
        if c.table == "orders" && !c.deleted {
            let r = get(db, "orders", &c.id).await;
            out.push(format!("{line} attributes={:?} conflicts={:?}", r.attributes, r.conflicts));
        } else {
            out.push(line);
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_and_postgres_replicate_both_ways_and_converge() {
    let Some(pg) = PostgresFactory::new() else { return };
    let sqlite = SqliteFactory::new();
    let (a, b) = (sqlite.fresh().await, pg.fresh().await);
    table_with(&*a, "orders", ReconcilePolicy::KeepConflicts).await;
    let shared = put(&*a, "orders", "shared", None, plain(serde_json::json!({"qty": 1}))).await;
    let gone = put(&*a, "orders", "gone", None, plain(serde_json::json!({"qty": 9}))).await;
    assert!(replicate(&*a, &*b).await > 0, "sqlite → postgres copies the table and records");
    // Offline edits on both sides: a conflict on one record, new records, a delete.
    put(&*a, "orders", "shared", Some(shared), plain(serde_json::json!({"qty": 2}))).await;
    put(&*b, "orders", "shared", Some(shared), plain(serde_json::json!({"qty": 3, "by": "pg"}))).await;
    put(&*a, "orders", "from-sqlite", None, plain(serde_json::json!({"n": "é\u{0}x"}))).await;
    put(&*b, "orders", "from-postgres", None, plain(serde_json::json!({"n": [1, 2.5, "z"]}))).await;
    delete(&*b, "orders", "gone", Some(gone)).await;
    assert!(replicate(&*a, &*b).await > 0);
    assert!(replicate(&*b, &*a).await > 0);
    let (on_a, on_b) = (state(&*a).await, state(&*b).await);
    assert_eq!(on_a, on_b, "both peers hold the same winners, leaves, conflicts and bodies");
    assert!(on_a.iter().any(|l| l.starts_with("orders/shared") && l.contains("conflicts=Some([")), "{on_a:#?}");
    assert_eq!((replicate(&*a, &*b).await, replicate(&*b, &*a).await), (0, 0), "a second pass copies nothing");
}
