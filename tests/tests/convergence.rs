//! The convergence property of SPEC §16: random creates, updates, deletes and conflicting edits on
//! 3–5 peers (local SQLite engines) in several tables — one of them `merge-fields` — with random
//! replication between random pairs, many of them interrupted (cancelled after a few batches, or
//! cut by a target whose writes fail before or after committing), in small batches so that passes
//! span many pages. Then a full sync (a ring, twice around), after which every peer must hold the
//! same revision trees, winners, conflicts and reconciled state; every knowledge row and resume
//! point must tell the truth; no revision may have been stored twice; and another pass must have
//! nothing to fetch.
//!
//! Cases: `OUTPOST_CONVERGENCE_CASES` (default 32).

use std::sync::{Arc, OnceLock};

use outpost_api::{
    Attributes, Database, ErrorKind, GetOptions, Limits, PutRecord, ReconcilePolicy, RecordReader, RecordWriter,
    RetryPolicy, Value,
};
use outpost_reconciler::{replicate, Options};
use outpost_sqlite::SqliteDatabase;
use outpost_tests::faults::{cancelled_after, FlakyTarget, PutFaults};
use outpost_tests::replicas::{differences, duplicate_events, knowledge_problems, snapshot};
use outpost_tests::support::{ok, scratch_dir, table_with};
use proptest::prelude::*;
use proptest::sample::Index;

/// The tables every peer creates (independently, so their definitions conflict too).
const TABLES: [(&str, ReconcilePolicy); 3] = [
    ("notes", ReconcilePolicy::KeepConflicts),
    ("tasks", ReconcilePolicy::KeepConflicts),
    ("profiles", ReconcilePolicy::MergeFields),
];

/// Record ids per table: few, so that peers keep editing the same records.
const IDS: usize = 4;

/// Fields of a body.
const FIELDS: [&str; 3] = ["a", "b", "c"];

/// A local write.
#[derive(Clone, Debug)]
enum Edit {
    /// Set a field (creating the record if it is absent or deleted).
    Set { field: usize, value: i64 },
    /// Remove a field.
    Unset { field: usize },
    /// Delete the record.
    Delete,
    /// Set a field and resolve every conflict.
    Resolve { field: usize, value: i64 },
}

/// How a replication is cut short.
#[derive(Clone, Debug)]
enum Interrupt {
    /// Not at all.
    None,
    /// Cancelled once this many batches are written.
    Cancel(u64),
    /// The target's writes fail at random (before or after committing); the pass restarts when
    /// `restarts` is set, else it ends with the error.
    Fail { seed: u64, percent: u32, restarts: bool },
}

#[derive(Clone, Debug)]
enum Step {
    Write { peer: Index, table: usize, id: usize, edit: Edit },
    Replicate { from: Index, to: Index, batch: usize, interrupt: Interrupt },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        5 => (0..FIELDS.len(), 0i64..3).prop_map(|(field, value)| Edit::Set { field, value }),
        1 => (0..FIELDS.len()).prop_map(|field| Edit::Unset { field }),
        1 => Just(Edit::Delete),
        1 => (0..FIELDS.len(), 0i64..3).prop_map(|(field, value)| Edit::Resolve { field, value }),
    ]
}

fn interrupt() -> impl Strategy<Value = Interrupt> {
    prop_oneof![
        2 => Just(Interrupt::None),
        2 => (1u64..5).prop_map(Interrupt::Cancel),
        2 => (any::<u64>(), 10u32..60, any::<bool>())
            .prop_map(|(seed, percent, restarts)| Interrupt::Fail { seed, percent, restarts }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (any::<Index>(), 0..TABLES.len(), 0..IDS, edit())
            .prop_map(|(peer, table, id, edit)| Step::Write { peer, table, id, edit }),
        1 => (any::<Index>(), any::<Index>(), 1usize..6, interrupt())
            .prop_map(|(from, to, batch, interrupt)| Step::Replicate { from, to, batch, interrupt }),
    ]
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime")
    })
}

fn cases() -> u32 {
    std::env::var("OUTPOST_CONVERGENCE_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(32)
}

/// Apply a local write on `db`, based on what a read of the record returns (as an application would).
async fn write(db: &SqliteDatabase, table: &str, id: &str, edit: &Edit) {
    let options = GetOptions { conflicts: true, ..GetOptions::default() };
    let current = match db.get_record(table, id, options).await {
        Ok(record) => Some(record),
        Err(e) if e.kind == ErrorKind::NotFound => None,
        Err(e) => panic!("read {table}/{id}: {e}"),
    };
    let mut body = current.as_ref().map(|r| r.attributes.clone()).unwrap_or_else(Attributes::new);
    let parent = current.as_ref().map(|r| r.rev);
    let mut resolves = vec![];
    match edit {
        Edit::Set { field, value } => {
            body.insert(FIELDS[*field].into(), Value::Int(*value));
        }
        Edit::Unset { field } => {
            body.remove(FIELDS[*field]);
        }
        Edit::Delete => {
            if let Some(rev) = parent {
                ok(db.delete_record(table, id, Some(rev)).await, &format!("delete {table}/{id}"));
            }
            return;
        }
        Edit::Resolve { field, value } => {
            body.insert(FIELDS[*field].into(), Value::Int(*value));
            resolves = current.as_ref().and_then(|r| r.conflicts.clone()).unwrap_or_default();
        }
    }
    let put = PutRecord { id: Some(id.into()), rev: parent, attributes: body, resolves };
    ok(db.put_record(table, put).await, &format!("{edit:?} on {table}/{id}"));
}

/// One replication, possibly cut short. Returns whether it completed.
async fn pass(from: &SqliteDatabase, to: &Arc<SqliteDatabase>, batch: usize, interrupt: &Interrupt) -> bool {
    let mut options = Options { batch_size: batch, retry: RetryPolicy::none(), ..Options::default() };
    let result = match interrupt {
        Interrupt::None => replicate(from, &**to, &options).await,
        Interrupt::Cancel(batches) => replicate(from, &**to, &cancelled_after(*batches, options)).await,
        Interrupt::Fail { seed, percent, restarts } => {
            if *restarts {
                options.retry = RetryPolicy {
                    max_attempts: 5,
                    initial_backoff: std::time::Duration::from_millis(1),
                    max_backoff: std::time::Duration::from_millis(2),
                };
            }
            let faults = PutFaults::Random { seed: *seed, percent: *percent, budget: 3 };
            let flaky = FlakyTarget::new(to.clone() as Arc<dyn Database>, faults);
            replicate(from, &flaky, &options).await
        }
    };
    match result {
        Ok(report) => report.drained,
        Err(e) if e.kind == ErrorKind::Unavailable => false,
        Err(e) => panic!("replication failed: {e}"),
    }
}

/// Names of the peers.
const NAMES: [&str; 5] = ["peer0", "peer1", "peer2", "peer3", "peer4"];

/// Knowledge rows and resume points must tell the truth at every moment, interrupted passes or not.
async fn assert_knowledge_holds(dbs: &[Arc<SqliteDatabase>], when: &str) {
    let named: Vec<(&str, &SqliteDatabase)> = NAMES.iter().copied().zip(dbs.iter().map(|db| &**db)).collect();
    let problems = knowledge_problems(&named).await;
    assert!(problems.is_empty(), "{when}, knowledge that does not hold: {problems:#?}");
}

/// Run one case: the steps on `peers` fresh databases, then the full sync and every check.
async fn run(peers: usize, steps: &[Step]) {
    let dir = scratch_dir();
    let mut dbs: Vec<Arc<SqliteDatabase>> = Vec::new();
    for name in &NAMES[..peers] {
        let path = dir.path().join(format!("{name}.outpost"));
        let db = ok(outpost_sqlite::create_file(&path, name, Limits::default()).await, "create_file");
        for (table, policy) in TABLES {
            table_with(&db, table, policy).await;
        }
        dbs.push(Arc::new(db));
    }
    for step in steps {
        match step {
            Step::Write { peer, table, id, edit } => {
                write(&dbs[peer.index(peers)], TABLES[*table].0, &format!("r{id}"), edit).await;
            }
            Step::Replicate { from, to, batch, interrupt } => {
                let from = from.index(peers);
                let to = (from + 1 + to.index(peers - 1)) % peers;
                pass(&dbs[from], &dbs[to], *batch, interrupt).await;
                assert_knowledge_holds(&dbs, &format!("after {step:?}")).await;
            }
        }
    }
    // The full sync: a ring, twice around, uninterrupted.
    for _ in 0..2 {
        for i in 0..peers {
            assert!(pass(&dbs[i], &dbs[(i + 1) % peers], 3, &Interrupt::None).await, "a full-sync pass drains");
        }
    }
    let expected = snapshot(&*dbs[0]).await;
    for (name, db) in NAMES.iter().zip(&dbs).skip(1) {
        if let Some(diff) = differences(NAMES[0], &expected, name, &snapshot(&**db).await, 3) {
            panic!("{diff}");
        }
    }
    assert_knowledge_holds(&dbs, "after the full sync").await;
    for (name, db) in NAMES.iter().zip(&dbs) {
        let report = ok(db.check().await, "check");
        assert!(report.problems.is_empty(), "{name}: {:?}", report.problems);
        let twice = duplicate_events(db).await;
        assert!(twice.is_empty(), "{name} stored revisions twice: {twice:?}");
    }
    for i in 0..peers {
        let options = Options { batch_size: 3, ..Options::default() };
        let again = ok(replicate(&*dbs[i], &*dbs[(i + 1) % peers], &options).await, "another pass");
        assert_eq!(again.progress.revisions_fetched, 0, "nothing left to fetch: {again:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 512, ..ProptestConfig::default() })]

    /// Whatever the writes and however replication was cut, a full sync makes every peer the same.
    #[test]
    fn peers_converge_after_a_full_sync(peers in 3usize..=5, steps in prop::collection::vec(step(), 10..60)) {
        runtime().block_on(run(peers, &steps));
    }
}
