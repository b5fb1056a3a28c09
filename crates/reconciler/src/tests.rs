//! The pass on local SQLite engines: what it copies, what it skips, where it starts.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use outpost_api::{
    Attributes, ChangesRequest, Database, GetOptions, InfoReader, Limits, NewTable, PutRecord, ReconcilePolicy,
    RecordReader, RecordWriter, ReplicaSource, RevId, TableWriter, Value,
};

use crate::{replicate, sync, Options, Origin};

type Db = outpost_sqlite::SqliteDatabase;

async fn fresh(dir: &tempfile::TempDir, name: &str) -> Db {
    outpost_sqlite::create_file(&dir.path().join(format!("{name}.outpost")), name, Limits::default()).await.unwrap()
}

async fn fill(db: &Db, from: usize, to: usize) {
    if db.create_table(NewTable { name: "items".into(), ..NewTable::default() }).await.is_err() {
        // Already there.
    }
    let mut revs = Vec::new();
    for i in from..to {
        let attrs = Attributes::new().with("n", Value::string(i.to_string()));
        let put = PutRecord { id: Some(format!("r{i:05}")), rev: None, attributes: attrs, resolves: vec![] };
        revs.push(db.put_record("items", put).await.unwrap().rev);
    }
    // Update every third record, delete every seventh.
    for (k, i) in (from..to).enumerate() {
        if i % 3 == 0 {
            let attrs = Attributes::new().with("n", Value::string(format!("{i} again")));
            let put =
                PutRecord { id: Some(format!("r{i:05}")), rev: Some(revs[k]), attributes: attrs, resolves: vec![] };
            revs[k] = db.put_record("items", put).await.unwrap().rev;
        }
        if i % 7 == 0 {
            db.delete_record("items", &format!("r{i:05}"), Some(revs[k])).await.unwrap();
        }
    }
}

/// Every record's winner, deletion and leaves, by (table, id).
async fn state(db: &dyn Database) -> BTreeMap<(String, String), (RevId, bool, Vec<RevId>)> {
    let mut out = BTreeMap::new();
    let mut since = 0;
    loop {
        let page = db.changes(ChangesRequest { since, limit: 1000, tables: None }).await.unwrap();
        for c in page.changes {
            let mut leaves = c.leaves;
            leaves.sort();
            out.insert((c.table, c.id), (c.rev, c.deleted, leaves));
        }
        since = page.last_seq;
        if page.pending == 0 {
            return out;
        }
    }
}

fn options(batch_size: usize) -> Options {
    Options { batch_size, ..Options::default() }
}

#[tokio::test]
async fn a_pass_copies_everything_and_a_second_pass_copies_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (fresh(&dir, "a").await, fresh(&dir, "b").await);
    fill(&a, 0, 2500).await;
    let seen = Arc::new(AtomicU64::new(0));
    let counter = seen.clone();
    let progress: crate::ProgressFn = Arc::new(move |p| counter.store(p.revisions_written, Ordering::Relaxed));
    let first = replicate(&a, &b, &Options { progress: Some(progress), ..options(300) }).await.unwrap();
    assert_eq!(state(&a).await, state(&b).await);
    assert_eq!(first.start.origin, Origin::Zero);
    assert!(first.drained && first.knowledge_recorded);
    let events = a.info().await.unwrap().update_seq;
    assert_eq!(first.progress.changes_read, 2501, "2500 records and the table definition");
    assert_eq!(first.progress.revisions_written, events, "every revision, inner ones included");
    assert_eq!(seen.load(Ordering::Relaxed), events, "progress reported the final count");
    assert_eq!(first.end_seq, events);
    assert!(first.pages >= 9, "{} pages of at most 300", first.pages);

    let second = replicate(&a, &b, &options(300)).await.unwrap();
    assert_eq!(second.start.origin, Origin::Direct);
    assert_eq!(second.start.seq, first.end_seq);
    assert_eq!((second.progress.changes_read, second.progress.revisions_fetched), (0, 0));
    assert!(second.requests <= 10, "a pass with nothing to do costs {} requests", second.requests);
}

#[tokio::test]
async fn an_interrupted_pass_resumes_from_its_committed_point() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (fresh(&dir, "a").await, fresh(&dir, "b").await);
    fill(&a, 0, 1000).await;
    // Cancel after the third batch is written.
    let cancel = crate::CancellationToken::new();
    let stop = cancel.clone();
    let progress: crate::ProgressFn = Arc::new(move |p| {
        if p.revisions_written >= 300 {
            stop.cancel();
        }
    });
    let cut = replicate(&a, &b, &Options { progress: Some(progress), cancel, ..options(100) }).await.unwrap();
    assert!(cut.cancelled && !cut.drained && !cut.knowledge_recorded);
    assert!(b.knowledge(None).await.unwrap().is_empty(), "a mid-pass position is not knowledge");
    let rest = replicate(&a, &b, &options(100)).await.unwrap();
    assert_eq!(rest.start.origin, Origin::Resume);
    assert_eq!(rest.start.seq, cut.end_seq);
    let events = a.info().await.unwrap().update_seq;
    assert_eq!(cut.progress.revisions_written + rest.progress.revisions_written, events, "nothing written twice");
    assert_eq!(state(&a).await, state(&b).await);
}

#[tokio::test]
async fn knowledge_travels_and_saves_a_first_pass() {
    let dir = tempfile::tempdir().unwrap();
    let (east, west, store) = (fresh(&dir, "east").await, fresh(&dir, "west").await, fresh(&dir, "store").await);
    fill(&east, 0, 500).await;
    fill(&west, 500, 900).await;
    sync(&east, &west, &options(128)).await.unwrap();
    let pulled = replicate(&east, &store, &options(128)).await.unwrap();
    assert!(pulled.progress.revisions_written > 0);
    let from_west = replicate(&west, &store, &options(128)).await.unwrap();
    assert_eq!(from_west.start.origin, Origin::Transitive);
    assert_eq!(from_west.start.via, Some(east.info().await.unwrap().uuid));
    assert_eq!(from_west.progress.revisions_fetched, 0, "{from_west:?}");
    assert_eq!(state(&west).await, state(&store).await);
}

#[tokio::test]
async fn a_filtered_pass_does_not_stand_in_for_a_full_one() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (fresh(&dir, "a").await, fresh(&dir, "b").await);
    fill(&a, 0, 50).await;
    a.create_table(NewTable { name: "other".into(), ..NewTable::default() }).await.unwrap();
    let put = PutRecord { id: Some("x".into()), ..PutRecord::default() };
    a.put_record("other", put).await.unwrap();
    let filtered = Options { tables: Some(vec!["items".into()]), ..options(10) };
    let part = replicate(&a, &b, &filtered).await.unwrap();
    assert!(!part.knowledge_recorded);
    assert!(state(&b).await.keys().all(|(t, id)| t == "items" || id == "items"), "only items and its definition");
    let again = replicate(&a, &b, &filtered).await.unwrap();
    assert_eq!(again.start.origin, Origin::Resume, "a filtered pass resumes from its own point");
    let full = replicate(&a, &b, &options(10)).await.unwrap();
    assert_eq!(full.start.origin, Origin::Zero, "the filtered pass's point is not the full pass's");
    assert_eq!(state(&a).await, state(&b).await);
}

#[tokio::test]
async fn a_continuous_replication_follows_writes_until_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (Arc::new(fresh(&dir, "a").await), Arc::new(fresh(&dir, "b").await));
    fill(&a, 0, 20).await;
    let cancel = crate::CancellationToken::new();
    let options = Options {
        continuous: true,
        poll_timeout: std::time::Duration::from_secs(5),
        cancel: cancel.clone(),
        ..options(7)
    };
    let (source, target) = (a.clone(), b.clone());
    let job = tokio::spawn(async move { replicate(&*source, &*target, &options).await });
    fill(&a, 20, 40).await;
    let want = a.info().await.unwrap().update_seq;
    // Bounded wait for the follower to catch up with the writes made after it started.
    for _ in 0..500 {
        if state(&*a).await == state(&*b).await && b.knowledge(None).await.unwrap().iter().any(|k| k.peer_seq == want) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(state(&*a).await, state(&*b).await);
    cancel.cancel();
    let report = job.await.unwrap().unwrap();
    assert!(report.cancelled && report.drained);
    assert_eq!(report.end_seq, want);
}

#[tokio::test]
async fn a_copied_file_that_diverged_is_detected_and_reidentified() {
    let dir = tempfile::tempdir().unwrap();
    let original = fresh(&dir, "orig").await;
    fill(&original, 0, 30).await;
    // A file copy without re-identifying: two databases answer to one uuid.
    let copy_path = dir.path().join("copy.outpost");
    outpost_sqlite::backup(&original, &copy_path).await.unwrap();
    let copy = outpost_sqlite::open_file(&copy_path, Limits::default()).await.unwrap();
    let shared = original.info().await.unwrap();
    assert_eq!(copy.info().await.unwrap().uuid, shared.uuid);
    fill(&original, 30, 40).await;
    fill(&copy, 100, 105).await;
    let report = replicate(&original, &copy, &options(16)).await.unwrap();
    let after = copy.info().await.unwrap();
    assert_ne!(after.uuid, shared.uuid, "the copy left the shared identity");
    assert_eq!(after.epochs.len(), 2);
    assert!(after.epochs[1].start_seq <= shared.update_seq + 1, "the fork epoch covers every diverged seq");
    assert!(report.warnings.iter().any(|w| w.contains("forked")), "{:?}", report.warnings);
    assert_eq!(original.info().await.unwrap().uuid, shared.uuid, "the original keeps its uuid");
    // Everything still converges.
    sync(&original, &copy, &options(16)).await.unwrap();
    assert_eq!(state(&original).await, state(&copy).await);
}

fn ints(pairs: &[(&str, i64)]) -> Attributes {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), Value::Int(*v))).collect()
}

async fn put_on(db: &Db, parent: Option<RevId>, body: Attributes) -> RevId {
    let put = PutRecord { id: Some("x".into()), rev: parent, attributes: body, resolves: vec![] };
    db.put_record("t", put).await.unwrap().rev
}

#[tokio::test]
async fn inner_revisions_travel_with_their_bodies_so_merge_fields_reconciles_alike_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (fresh(&dir, "a").await, fresh(&dir, "b").await, fresh(&dir, "c").await);
    let table = NewTable { name: "t".into(), policy: ReconcilePolicy::MergeFields, ..NewTable::default() };
    a.create_table(table).await.unwrap();
    let base = put_on(&a, None, ints(&[("a", 1), ("b", 1)])).await;
    replicate(&a, &b, &options(10)).await.unwrap();
    put_on(&a, Some(base), ints(&[("a", 2), ("b", 1)])).await;
    // c sees the base only as the parent of a's edit...
    replicate(&a, &c, &options(10)).await.unwrap();
    put_on(&b, Some(base), ints(&[("a", 1), ("b", 2)])).await;
    // ...and then b's edit, which makes the base the merge base of two branches.
    replicate(&b, &c, &options(10)).await.unwrap();
    replicate(&b, &a, &options(10)).await.unwrap();
    for (name, db) in [("a", &a), ("c", &c)] {
        let options = GetOptions { conflicts: true, ..GetOptions::default() };
        let record = db.get_record("t", "x", options).await.unwrap();
        assert_eq!(record.attributes, ints(&[("a", 2), ("b", 2)]), "{name} merges against the base");
        assert_eq!(record.field_conflicts, Some(vec![]), "{name}");
    }
    let at_base = GetOptions { rev: Some(base), ..GetOptions::default() };
    assert_eq!(c.get_record("t", "x", at_base).await.unwrap().attributes, ints(&[("a", 1), ("b", 1)]));
}

#[tokio::test]
async fn a_long_history_costs_a_pass_bytes_linear_in_its_length() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (fresh(&dir, "a").await, fresh(&dir, "b").await);
    a.create_table(NewTable { name: "t".into(), ..NewTable::default() }).await.unwrap();
    let mut rev = None;
    for i in 0..400 {
        rev = Some(put_on(&a, rev, ints(&[("n", i)])).await);
    }
    let report = replicate(&a, &b, &options(100)).await.unwrap();
    assert_eq!(report.progress.revisions_written, 401, "every revision, with its body");
    // 400 revisions of ~40-byte ids and tiny bodies: sending each one's whole ancestry would be
    // ~80,000 ids (over 3 MB).
    assert!(report.progress.bytes < 200_000, "{} bytes for a history of 400", report.progress.bytes);
    let oldest = GetOptions {
        rev: Some(
            a.get_record("t", "x", GetOptions { revs: true, ..GetOptions::default() })
                .await
                .unwrap()
                .revisions
                .unwrap()[399],
        ),
        ..GetOptions::default()
    };
    assert_eq!(b.get_record("t", "x", oldest).await.unwrap().attributes, ints(&[("n", 0)]));
}
