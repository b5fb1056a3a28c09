//! Compaction end to end (SPEC §4.5, issue 18's acceptance): a database whose every record has 50
//! revisions gives back most of its space, keeps every revision id, passes `check`, and reaches a
//! new peer the same three ways — a reconciler pass, quicksync files (snapshot and deltas, applied
//! in small chunks so a compacted revision is often held before the one after it), and a portable
//! backup restored with the same seqs and chain hashes.

use std::path::PathBuf;

use outpost_api::{
    Body, CompactRequest, Database, GetOptions, InfoReader, Limits, Maintenance, PutRecord, RecordReader, RecordRevs,
    ReplicaTarget, RevId, TableWriter, WriteOp,
};
use outpost_quicksync::{open_files, publish, pull, PublishOptions, PullOptions};
use outpost_reconciler::{replicate, Options};
use outpost_sqlite::SqliteDatabase;
use outpost_tests::replicas::assert_converged;
use outpost_tests::support::{ok, plain, table};
use serde_json::json;

const RECORDS: usize = 100;
const REVISIONS: usize = 50;

struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        Site { dir: tempfile::Builder::new().prefix("outpost-compact-").tempdir().expect("a temp dir") }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    async fn db(&self, name: &str) -> SqliteDatabase {
        let path = self.path(&format!("{name}.outpost"));
        ok(outpost_sqlite::create_file(&path, name, Limits::default()).await, "create a database")
    }
}

/// `REVISIONS` rounds, each writing one revision of every record: a record's revisions are
/// `RECORDS` seqs apart. Returns every revision id, by record.
async fn write_history(db: &dyn Database) -> Vec<(String, Vec<RevId>)> {
    let mut history: Vec<(String, Vec<RevId>)> = (0..RECORDS).map(|i| (format!("r{i:03}"), Vec::new())).collect();
    for round in 0..REVISIONS {
        let ops = history
            .iter()
            .map(|(id, revs)| {
                let attributes =
                    plain(json!({"round": round, "note": format!("{id} in round {round}"), "pad": "x".repeat(400)}));
                WriteOp::put(
                    "t",
                    PutRecord { id: Some(id.clone()), rev: revs.last().copied(), attributes, resolves: vec![] },
                )
            })
            .collect();
        let results = ok(db.write_batch(ops).await, "write_batch");
        for ((_, revs), result) in history.iter_mut().zip(results) {
            revs.push(ok(result, "a write").rev);
        }
    }
    history
}

/// Every revision event, in seq order.
async fn events(db: &dyn Database) -> Vec<outpost_api::RevisionEvent> {
    let events = ok(db.events(0, 10_000).await, "events");
    assert!(events.len() < 10_000, "one page holds the history");
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_database_frees_most_of_its_space_and_reaches_new_peers_the_same() {
    let site = Site::new();
    let db = site.db("field").await;
    table(&db, "t").await;
    let history = write_history(&db).await;
    let before = ok(db.info().await, "info");

    // The file itself, its WAL checkpointed into it (the WAL's length says nothing of what is stored).
    let file = site.path("field.outpost");
    ok(db.storage().wal_settled().await, "checkpoint");
    let file_before = std::fs::metadata(&file).expect("the file").len();
    let report = ok(db.compact(CompactRequest::default()).await, "compact");
    assert_eq!(report.bodies_dropped, (RECORDS * (REVISIONS - 1)) as u64, "{report:?}");
    let (size_before, size_after) = (report.size_before.expect("a size"), report.size_after.expect("a size"));
    assert!(size_after < size_before, "{report:?}");
    let file_after = std::fs::metadata(&file).expect("the file").len();
    assert!(file_after * 2 < file_before, "most of the file is returned: {file_before} -> {file_after}");
    assert!(ok(db.check().await, "check").problems.is_empty(), "a compacted database passes check");
    let info = ok(db.info().await, "info");
    assert_eq!(
        (info.update_seq, info.chain, info.record_count),
        (before.update_seq, before.chain, before.record_count)
    );
    let every: Vec<RecordRevs> =
        history.iter().map(|(id, revs)| RecordRevs { table: "t".into(), id: id.clone(), revs: revs.clone() }).collect();
    assert!(ok(db.revs_diff(every).await, "revs_diff").is_empty(), "every revision id is kept");
    let (id, revs) = &history[7];
    let last = ok(db.get_record("t", id, GetOptions::default()).await, "get");
    assert_eq!(last.rev, revs[REVISIONS - 1]);
    assert_eq!(
        last.attributes,
        plain(json!({"round": REVISIONS - 1, "note": format!("{id} in round 49"), "pad": "x".repeat(400)}))
    );

    // A reconciler pass into an empty peer.
    let replicated = site.db("replicated").await;
    ok(replicate(&db, &replicated, &Options::default()).await, "replicate");
    assert_converged(&[("compacted", &db), ("replicated", &replicated)]).await;
    assert!(ok(replicated.check().await, "check").problems.is_empty());

    // Quicksync files of the compacted history, applied 64 events at a time: a compacted revision
    // is often in a chunk before the revision that follows it.
    let files = site.path("files");
    let options = PublishOptions { every: 1500, snapshot_every: 1_000_000, ..PublishOptions::default() };
    ok(publish(&db, &files, &options).await, "publish");
    let source = ok(open_files(files.to_str().expect("utf-8"), &site.path("cache")), "open the files");
    let pulled = site.db("pulled").await;
    let small = PullOptions { chunk: 64, ..PullOptions::default() };
    ok(pull(&*source, &pulled, &small).await, "pull");
    assert_converged(&[("compacted", &db), ("pulled", &pulled)]).await;
    assert!(ok(pulled.check().await, "check").problems.is_empty());
    assert_eq!(ok(pulled.info().await, "info").record_count, RECORDS as u64);

    // A portable backup replays to the same seqs and chain hashes.
    let backup = site.path("backup");
    let identity = ok(outpost_quicksync::backup::backup(&db, &backup, &PublishOptions::default()).await, "backup");
    let genesis = ok(outpost_engine::storage::Genesis::restored("restored", &identity.epochs), "genesis");
    let restored =
        ok(outpost_sqlite::create_file_as(&site.path("restored.outpost"), genesis, Limits::default()).await, "create");
    ok(outpost_quicksync::backup::restore(&backup, &restored, &small).await, "restore");
    assert_eq!(events(&restored).await, events(&db).await, "the same events, compacted ones without bodies");
    assert_converged(&[("compacted", &db), ("restored", &restored)]).await;
    assert!(ok(restored.check().await, "check").problems.is_empty());
}

/// A compacted revision replayed before the revision after it is held but pending: the record reads
/// as before (or not at all when it is its only revision), the live-record count and `check` agree,
/// and the revision after it settles it. Only `put_events` takes one: `put_revisions`, the replication
/// boundary, refuses a live revision without its body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_revision_is_pending_until_the_revision_after_it_arrives() {
    use outpost_api::{ErrorKind, RecordWriter, RevisionData};
    use outpost_engine::hash::revision_id;

    let site = Site::new();
    let db = site.db("replayed").await;
    table(&db, "t").await;
    let body = |v: i64| plain(json!({"v": v}));
    let revision = |id: &str, ancestry: &[RevId], v: i64, compacted: bool| {
        let rev = revision_id("t", id, ancestry.first(), false, &body(v));
        let attributes = (!compacted).then(|| Body::new(&body(v)));
        RevisionData {
            table: "t".into(),
            id: id.into(),
            rev,
            deleted: false,
            attributes,
            ancestry: ancestry.to_vec(),
            foreign: None,
        }
    };
    let x1 = revision("x", &[], 1, false);
    let x2 = revision("x", &[x1.rev], 2, true);
    let x3 = revision("x", &[x2.rev, x1.rev], 3, false);
    let y1 = revision("y", &[], 1, true);
    let y2 = revision("y", &[y1.rev], 2, false);

    let err = db.put_revisions(vec![x1.clone(), x2.clone()], None).await.expect_err("refused");
    assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");
    ok(db.put_events(vec![x1.clone(), x2.clone(), y1.clone()], None).await, "put_events");
    let x = ok(db.get_record("t", "x", GetOptions::default()).await, "get x");
    assert_eq!((x.rev, &x.attributes), (x1.rev, &body(1)), "x reads as before its pending revision");
    let missing = db.get_record("t", "y", GetOptions::default()).await.expect_err("y is not there yet");
    assert_eq!(missing.kind, ErrorKind::NotFound);
    assert_eq!(ok(db.info().await, "info").record_count, 1);
    let check = ok(db.check().await, "check");
    assert_eq!((check.compacted, check.pending, check.problems.len()), (2, 2, 1), "{check:?}");

    // A pending revision is not taken as written, by a local write or by revs-diff: whoever holds it
    // with its body is asked for it, and the body, verified, is stored into its event.
    let same = PutRecord { id: Some("x".into()), rev: Some(x1.rev), attributes: body(2), resolves: vec![] };
    let err = db.put_record("t", same).await.expect_err("the pending revision's id");
    assert_eq!(err.kind, ErrorKind::Conflict, "{err}");
    let asked = vec![RecordRevs { table: "t".into(), id: "x".into(), revs: vec![x1.rev, x2.rev] }];
    let missing = ok(db.revs_diff(asked).await, "revs_diff");
    assert_eq!(missing, [RecordRevs { table: "t".into(), id: "x".into(), revs: vec![x2.rev] }]);
    let with_body = revision("x", &[x1.rev], 2, false);
    let filled = ok(db.put_revisions(vec![with_body], None).await, "the body of x2");
    assert_eq!(filled.written, 0, "no new event: the body goes into x2's");
    let x = ok(db.get_record("t", "x", GetOptions::default()).await, "get x");
    assert_eq!((x.rev, &x.attributes), (x2.rev, &body(2)));
    let asked = vec![RecordRevs { table: "t".into(), id: "x".into(), revs: vec![x2.rev] }];
    assert!(ok(db.revs_diff(asked).await, "revs_diff").is_empty(), "x2 is held now");

    ok(db.put_events(vec![x3.clone(), y2.clone()], None).await, "the revisions after them");
    let x = ok(db.get_record("t", "x", GetOptions { revs: true, ..GetOptions::default() }).await, "get x");
    assert_eq!((x.rev, &x.attributes), (x3.rev, &body(3)));
    let check = ok(db.check().await, "check");
    assert_eq!((check.compacted, check.pending), (1, 0), "y1 stays compacted, nothing is pending: {check:?}");
    assert_eq!(x.revisions, Some(vec![x3.rev, x2.rev, x1.rev]), "one line, the compacted revision in it");
    let y = ok(db.get_record("t", "y", GetOptions::default()).await, "get y");
    assert_eq!(y.rev, y2.rev);
    assert_eq!(ok(db.info().await, "info").record_count, 2);
    assert!(ok(db.check().await, "check").problems.is_empty());
}

/// A foreign body replaced by a native one under its id (SPEC §3) stays in the history without its
/// body: `check` counts that event as superseded, not compacted, and finds nothing wrong.
#[tokio::test]
async fn a_superseded_body_is_counted_apart_from_compacted_ones() {
    let site = Site::new();
    let db = site.db("a").await;
    let couch = outpost_api::NewTable { name: "c".into(), couch: true, ..outpost_api::NewTable::default() };
    ok(db.create_table(couch).await, "a table open to CouchDB peers");
    let native = plain(json!({"v": 1}));
    let rev = outpost_engine::hash::revision_id("c", "x", None, false, &native);
    // The same revision as a CouchDB peer holds it: its number read back as a float.
    let lossy = plain(json!({"v": 1.5}));
    let digest = outpost_engine::foreign::digest("c", "x", None, false, &lossy);
    let revision = |attributes: outpost_api::Attributes, foreign| outpost_api::RevisionData {
        table: "c".into(),
        id: "x".into(),
        rev,
        deleted: false,
        attributes: Some(Body::new(&attributes)),
        ancestry: vec![],
        foreign,
    };
    ok(db.put_revisions(vec![revision(lossy, Some(digest))], None).await, "the foreign body");
    let replaced = ok(db.put_revisions(vec![revision(native, None)], None).await, "the native body");
    assert_eq!(replaced.written, 1, "the native body replaces the foreign one");
    let check = ok(db.check().await, "check");
    assert_eq!((check.events, check.superseded, check.compacted, check.pending), (3, 1, 0, 0), "{check:?}");
    assert!(check.problems.is_empty(), "{check:?}");
}
