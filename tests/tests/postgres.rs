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

/// The reconciler with PostgreSQL peers (SPEC §7, §8): a pass into PostgreSQL interrupted and
/// resumed, SQLite ⇄ PostgreSQL sync, and the transitive fast-forward across backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconciler_runs_between_sqlite_and_postgres_and_knowledge_crosses_backends() {
    use outpost_reconciler::{replicate as pass, sync, CancellationToken, Options, Origin};
    use std::sync::Arc;
    let Some(pg) = PostgresFactory::new() else { return };
    let sqlite = SqliteFactory::new();
    let (east, west, store) = (sqlite.fresh().await, pg.fresh().await, sqlite.fresh().await);
    table_with(&*east, "orders", ReconcilePolicy::KeepConflicts).await;
    for i in 0..300 {
        put(&*east, "orders", &format!("o{i:03}"), None, plain(serde_json::json!({"i": i}))).await;
    }
    // Into PostgreSQL, cancelled after two batches, then resumed from the committed point.
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    let progress: outpost_reconciler::ProgressFn = Arc::new(move |p| {
        if p.revisions_written >= 100 {
            stop.cancel();
        }
    });
    let options = Options { batch_size: 50, ..Options::default() };
    let cut = pass(&*east, &*west, &Options { progress: Some(progress), cancel, ..options.clone() }).await.unwrap();
    assert!(cut.cancelled && !cut.drained, "{cut:?}");
    let rest = pass(&*east, &*west, &options).await.unwrap();
    assert_eq!(rest.start.origin, Origin::Resume);
    assert_eq!(cut.progress.revisions_written + rest.progress.revisions_written, 301, "nothing written twice");
    // Writes on PostgreSQL, then both ways; the SQLite store pulls east and learns about west.
    for i in 0..40 {
        put(&*west, "orders", &format!("w{i:02}"), None, plain(serde_json::json!({"w": i}))).await;
    }
    sync(&*east, &*west, &options).await.unwrap();
    pass(&*east, &*store, &options).await.unwrap();
    let from_west = pass(&*west, &*store, &options).await.unwrap();
    assert_eq!(from_west.start.origin, Origin::Transitive, "{from_west:?}");
    assert_eq!(from_west.progress.revisions_fetched, 0, "nothing the store holds is fetched: {from_west:?}");
    assert_eq!(state(&*west).await, state(&*store).await);
    assert_eq!(state(&*east).await, state(&*west).await);
}
