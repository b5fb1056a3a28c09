//! Quicksync end to end (SPEC §9, issue 6's acceptance): a new peer bootstrapped from a snapshot and
//! deltas then finished by a live pass, a long-offline peer applying only what it lacks, the walk
//! back after the publisher was restored from an older backup, and damaged or lying input refused
//! before anything is applied. Files are published into and pulled from directories here; the HTTP
//! transport (range requests, interrupted processes) is tested in crates/cli/tests/quicksync.rs.

use std::path::{Path, PathBuf};

use outpost_api::{
    Database, ErrorKind, GetOptions, InfoReader, Limits, PutRecord, RecordReader, ReplicaSource, ReplicaTarget, WriteOp,
};
use outpost_quicksync::{open_files, publish, pull, Manifest, PublishOptions, PullOptions, PullReport, PullStart};
use outpost_reconciler::{replicate, Options, Origin};
use outpost_sqlite::SqliteDatabase;
use outpost_tests::replicas::{assert_converged, missing_revisions};
use outpost_tests::support::{ok, plain, table};
use serde_json::json;

/// Records of the new-peer scenario (the acceptance asks for 100k; `OUTPOST_QUICKSYNC_RECORDS`
/// lowers it for a quick local run).
fn bootstrap_records() -> usize {
    std::env::var("OUTPOST_QUICKSYNC_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000)
}

struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        Site { dir: tempfile::Builder::new().prefix("outpost-qs-").tempdir().expect("a temp dir") }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    async fn db(&self, name: &str) -> SqliteDatabase {
        let path = self.path(&format!("{name}.outpost"));
        ok(outpost_sqlite::create_file(&path, name, Limits::default()).await, "create a database")
    }
}

async fn write(db: &dyn Database, ids: impl Iterator<Item = String>, tag: &str) {
    let ids: Vec<String> = ids.collect();
    for chunk in ids.chunks(1000) {
        let mut ops = Vec::new();
        for id in chunk {
            let parent = db.get_record("t", id, GetOptions::default()).await.ok().map(|r| r.rev);
            let attributes = plain(json!({"id": id, "tag": tag, "pad": "x".repeat(300)}));
            ops.push(WriteOp::put("t", PutRecord { id: Some(id.clone()), rev: parent, attributes, resolves: vec![] }));
        }
        for result in ok(db.write_batch(ops).await, "write_batch") {
            ok(result, "a write");
        }
    }
}

async fn remove(db: &dyn Database, ids: impl Iterator<Item = String>) {
    for id in ids {
        ok(db.delete_record("t", &id, None).await, "delete");
    }
}

fn ids(range: std::ops::Range<usize>) -> impl Iterator<Item = String> {
    range.map(|i| format!("r{i:06}"))
}

async fn publish_to(
    db: &dyn ReplicaSource,
    dir: &Path,
    every: u64,
    snapshot_every: u64,
) -> outpost_quicksync::PublishReport {
    let options = PublishOptions { every, snapshot_every, ..PublishOptions::default() };
    ok(publish(db, dir, &options).await, "publish")
}

async fn pull_from(dir: &Path, db: &dyn Database) -> outpost_api::Result<PullReport> {
    let files = open_files(dir.to_str().expect("a utf-8 path"), &dir.join("unused-cache"))?;
    pull(&*files, db, &PullOptions::default()).await
}

fn kinds(report: &PullReport) -> Vec<String> {
    report.applied.iter().map(|f| f.split('-').next().unwrap_or_default().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_peer_bootstraps_from_a_snapshot_and_deltas_and_a_live_pass_takes_only_the_tail() {
    let n = bootstrap_records();
    let site = Site::new();
    let (server, files) = (site.db("server").await, site.path("files"));
    table(&server, "t").await;
    write(&server, ids(0..n), "v1").await;
    let first = publish_to(&server, &files, n as u64 + 1, 10 * n as u64).await;
    assert_eq!(first.written.iter().map(|f| f.kind).collect::<Vec<_>>(), ["delta", "snapshot"]);
    // Three more rounds of changes, each published as one delta: updates, deletes, new records.
    write(&server, ids(0..n / 10), "v2").await;
    publish_to(&server, &files, n as u64, 10 * n as u64).await;
    remove(&server, ids(n / 10..n / 10 + 50)).await;
    publish_to(&server, &files, n as u64, 10 * n as u64).await;
    write(&server, ids(n..n + 100), "v1").await;
    let last = publish_to(&server, &files, n as u64, 10 * n as u64).await;
    assert_eq!(last.written.len(), 1, "only what is new: {:?}", last.written);
    let again = publish_to(&server, &files, n as u64, 10 * n as u64).await;
    assert!(again.written.is_empty() && again.dropped.is_empty(), "a second run publishes nothing: {again:?}");
    let files_end = ok(server.info().await, "info").update_seq;
    // The tail, after the last delta: only a live pass brings it.
    write(&server, ids(0..7), "tail").await;

    let client = site.db("client").await;
    let report = ok(pull_from(&files, &client).await, "pull");
    assert_eq!(report.start, PullStart::Snapshot);
    assert_eq!(kinds(&report), ["snapshot", "delta", "delta", "delta"], "{:?}", report.applied);
    assert_eq!(report.end_seq, files_end);
    assert_eq!(ok(client.get_record("t", "r000000", GetOptions::default()).await, "get").attributes, {
        plain(json!({"id": "r000000", "tag": "v2", "pad": "x".repeat(300)}))
    });
    let live = ok(replicate(&server, &client, &Options::default()).await, "the live pass");
    assert_eq!((live.start.origin, live.start.seq), (Origin::Direct, files_end), "starts where the files end");
    assert_eq!(live.progress.changes_read, 7, "only the tail is read");
    assert_eq!(live.progress.revisions_written, 7, "only the tail is written");
    assert_converged(&[("server", &server), ("client", &client)]).await;
    // Pulling again applies nothing: the database holds everything the files hold.
    let again = ok(pull_from(&files, &client).await, "pull again");
    assert!(again.applied.is_empty(), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_offline_peer_applies_only_the_batches_after_what_it_holds() {
    let site = Site::new();
    let (server, files) = (site.db("server").await, site.path("files"));
    let peer = site.db("peer").await;
    table(&server, "t").await;
    write(&server, ids(0..1200), "v1").await;
    // The peer was in sync at seq s (a live pass), which falls inside a delta.
    ok(replicate(&server, &peer, &Options::default()).await, "a live pass");
    let s = ok(server.info().await, "info").update_seq;
    write(&server, ids(1000..2600), "v2").await;
    remove(&server, ids(0..30)).await;
    publish_to(&server, &files, 500, 100_000).await;
    let manifest = Manifest::read(&files).expect("a manifest").expect("published");
    let containing =
        manifest.deltas().into_iter().find(|d| d.start_seq <= s && s < d.end_seq).expect("a delta").clone();
    assert!(containing.start_seq < s, "s = {s} is inside {containing:?}");

    let report = ok(pull_from(&files, &peer).await, "pull");
    assert_eq!(report.start, PullStart::Delta);
    assert!(!kinds(&report).contains(&"snapshot".to_owned()), "never the snapshot: {:?}", report.applied);
    assert_eq!(report.applied.first(), Some(&containing.file), "starts with the delta holding s");
    let after: Vec<String> = manifest.deltas().iter().filter(|d| d.end_seq > s).map(|d| d.file.clone()).collect();
    assert_eq!(report.applied, after, "every delta after s, and only those");
    assert_eq!(report.skipped, s - containing.start_seq + 1, "entries up to s are not applied again");
    assert_converged(&[("server", &server), ("peer", &peer)]).await;
    // Applying a batch twice is a no-op: pulling again applies nothing, and each delta stored again
    // with its knowledge writes no event and adds no row.
    let seq = ok(peer.info().await, "info").update_seq;
    let knowledge = ok(peer.knowledge(None).await, "knowledge").len();
    assert!(ok(pull_from(&files, &peer).await, "pull again").applied.is_empty());
    for delta in manifest.deltas().into_iter().filter(|d| report.applied.contains(&d.file)) {
        let file = std::fs::File::open(files.join(&delta.file)).unwrap();
        let mut reader = outpost_quicksync::format::Reader::new(std::io::BufReader::new(file)).unwrap();
        let (mut revisions, mut imported) = (Vec::new(), Vec::new());
        while let Some(item) = reader.next_item().unwrap() {
            match item {
                outpost_quicksync::format::Item::Event(e) => revisions.push(e.revision),
                outpost_quicksync::format::Item::Knowledge(k) => imported.push(k),
            }
        }
        let update = outpost_api::KnowledgeUpdate {
            source: delta.db,
            source_seq: delta.end_seq,
            source_chain: delta.end_chain,
            imported,
        };
        let again = ok(peer.put_revisions_with_knowledge(revisions, update).await, "a delta again");
        assert_eq!(again.written, 0, "{}", delta.file);
    }
    assert_eq!(ok(peer.info().await, "info").update_seq, seq, "no revision event from applying batches again");
    assert_eq!(ok(peer.knowledge(None).await, "knowledge").len(), knowledge, "and no new knowledge row");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_server_is_restored_from_an_older_backup_the_client_walks_back() {
    let site = Site::new();
    let files = site.path("files");
    let server = site.db("server").await;
    table(&server, "t").await;
    write(&server, ids(0..600), "v1").await;
    publish_to(&server, &files, 200, 100_000).await;
    let backup = site.path("backup.outpost");
    ok(outpost_sqlite::backup(&server, &backup).await, "backup");
    let at_backup = ok(server.info().await, "info").update_seq;
    let client = site.db("client").await;
    ok(pull_from(&files, &client).await, "a first pull");
    // History the server will lose: updates, and new records.
    write(&server, ids(100..300), "lost").await;
    write(&server, ids(600..650), "lost").await;
    publish_to(&server, &files, 200, 1).await;
    ok(pull_from(&files, &client).await, "a second pull, of the history the server will lose");
    // A second client bootstrapped from the snapshot of the lost history alone knows only its end.
    let lone = site.db("lone").await;
    let snapshot_only = site.path("snapshot-only");
    std::fs::create_dir_all(&snapshot_only).unwrap();
    let mut manifest = Manifest::read(&files).unwrap().unwrap();
    manifest.rows.retain(|r| r.kind == outpost_quicksync::Kind::Snapshot);
    std::fs::copy(files.join(&manifest.rows[0].file), snapshot_only.join(&manifest.rows[0].file)).unwrap();
    manifest.write(&snapshot_only).unwrap();
    ok(pull_from(&snapshot_only, &lone).await, "a pull of the snapshot alone");

    // The server is restored from the backup (a new epoch), writes on, and republishes.
    drop(server);
    let (server, _epoch) = ok(
        outpost_sqlite::restore(&backup, &site.path("restored.outpost"), "server", Limits::default()).await,
        "restore",
    );
    write(&server, ids(400..700), "after restore").await;
    remove(&server, ids(500..520)).await;
    let republished = publish_to(&server, &files, 200, 1).await;
    assert!(!republished.dropped.is_empty(), "rows of the lost history are dropped: {republished:?}");
    let manifest = Manifest::read(&files).unwrap().unwrap();
    for row in &manifest.rows {
        assert_eq!(ok(server.chain_hash_at(row.end_seq).await, "chain"), row.end_chain, "{row:?} is the server's");
    }

    let report = ok(pull_from(&files, &client).await, "the pull after the restore");
    assert_eq!(report.start, PullStart::Delta, "{report:?}");
    assert!(!report.walked_back.is_empty(), "the newest deltas disagree with what the client knows");
    let first = manifest.deltas().into_iter().find(|d| Some(&d.file) == report.applied.first()).unwrap().clone();
    assert!(first.start_seq <= at_backup + 1, "it walked back to history both share: {first:?}");
    let report = ok(pull_from(&files, &lone).await, "the lone client's pull");
    assert_eq!(report.start, PullStart::Snapshot, "no delta agrees: back to the snapshot");
    for db in [&client, &lone] {
        assert!(missing_revisions(&server, db).await.is_empty(), "every revision the server holds");
        for id in ids(500..520) {
            let change = outpost_tests::support::change_of(db, "t", &id).await;
            assert!(change.deleted, "{id}: the delete arrived as a tombstone");
        }
    }
    let lost = missing_revisions(&client, &server).await;
    assert!(!lost.is_empty(), "the server lost revisions the client still holds");
    ok(replicate(&client, &server, &Options::default()).await, "sync back");
    assert!(missing_revisions(&client, &server).await.is_empty(), "the lost revisions are restored to the server");
    let record = ok(server.get_record("t", "r000650", GetOptions::default()).await.map(|r| r.attributes), "r000650");
    assert_eq!(record, ok(client.get_record("t", "r000650", GetOptions::default()).await, "get").attributes);
    ok(replicate(&server, &client, &Options::default()).await, "and back");
    assert_converged(&[("server", &server), ("client", &client)]).await;
}

/// A copy of `files` in a new directory, damaged by `damage`.
fn damaged(site: &Site, files: &Path, name: &str, damage: impl FnOnce(&Path, &mut Manifest)) -> PathBuf {
    let dir = site.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut manifest = Manifest::read(files).unwrap().unwrap();
    for row in &manifest.rows {
        std::fs::copy(files.join(&row.file), dir.join(&row.file)).unwrap();
    }
    damage(&dir, &mut manifest);
    manifest.write(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_or_lying_input_is_refused_before_anything_is_applied() {
    let site = Site::new();
    let (server, files) = (site.db("server").await, site.path("files"));
    table(&server, "t").await;
    write(&server, ids(0..300), "v1").await;
    publish_to(&server, &files, 100, 100_000).await;
    write(&server, ids(0..300), "v2").await;
    publish_to(&server, &files, 100, 100_000).await;
    let last_delta = |m: &Manifest| m.rows.iter().rposition(|r| r.kind == outpost_quicksync::Kind::Delta).unwrap();
    let cases: Vec<(&str, PathBuf, &str)> = vec![
        (
            "a truncated file",
            damaged(&site, &files, "truncated", |dir, m| {
                let path = dir.join(&m.rows[last_delta(m)].file);
                let bytes = std::fs::read(&path).unwrap();
                std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
            }),
            "bytes where the manifest says",
        ),
        (
            "a flipped byte",
            damaged(&site, &files, "flipped", |dir, m| {
                let path = dir.join(&m.rows[last_delta(m)].file);
                let mut bytes = std::fs::read(&path).unwrap();
                let middle = bytes.len() / 2;
                bytes[middle] ^= 1;
                std::fs::write(&path, &bytes).unwrap();
            }),
            "does not match the manifest",
        ),
        (
            "a row whose hash lies",
            damaged(&site, &files, "hash-lies", |_, m| {
                let i = last_delta(m);
                m.rows[i].blake3 = "0".repeat(64);
            }),
            "does not match the manifest",
        ),
        (
            "a row whose end chain lies",
            damaged(&site, &files, "chain-lies", |_, m| {
                let i = last_delta(m);
                m.rows[i].end_chain = outpost_api::ChainHash([3; 32]);
            }),
            "chain",
        ),
        (
            "a row whose start chain lies",
            damaged(&site, &files, "prev-lies", |_, m| {
                let i = last_delta(m);
                m.rows[i].prev_chain = outpost_api::ChainHash([3; 32]);
                m.rows[i - 1].end_chain = outpost_api::ChainHash([3; 32]);
            }),
            "chain",
        ),
    ];
    for (what, dir, says) in cases {
        for fresh in [true, false] {
            let db = site.db(&format!("client-{}-{fresh}", dir.file_name().unwrap().to_string_lossy())).await;
            if !fresh {
                // An existing database that knows the first deltas: the bad one is among those it applies.
                table(&db, "t").await;
                write(&db, ids(5000..5003), "local").await;
            }
            let before = (ok(db.info().await, "info"), ok(db.knowledge(None).await, "knowledge"));
            let e = pull_from(&dir, &db).await.expect_err(what);
            assert_eq!(e.kind, ErrorKind::Corrupt, "{what}: {e}");
            assert!(e.message.contains(says), "{what}: {e}");
            let after = (ok(db.info().await, "info"), ok(db.knowledge(None).await, "knowledge"));
            assert_eq!(before, after, "{what}: the database is unchanged");
        }
        // Into a bootstrap, files are verified as they are applied (nobody sees the database until
        // it is finished): the same input is refused the same way, and nothing is left.
        let path = site.path(&format!("boot-{}.outpost", dir.file_name().unwrap().to_string_lossy()));
        let boot = ok(outpost_sqlite::Bootstrap::begin(&path, "boot", Limits::default()).await, "bootstrap");
        let files = ok(open_files(dir.to_str().unwrap(), &dir.join("unused-cache")), "files");
        let options = PullOptions { verify_first: false, ..PullOptions::default() };
        let e = pull(&*files, &*boot.database(), &options).await.expect_err(what);
        assert_eq!(e.kind, ErrorKind::Corrupt, "{what}, bootstrapped: {e}");
        assert!(e.message.contains(says), "{what}, bootstrapped: {e}");
        let staging = boot.staging_path().to_owned();
        drop(boot);
        assert!(!path.exists() && !staging.exists(), "{what}: a refused bootstrap leaves nothing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_publishes_on_its_schedule_and_serves_the_files_for_a_pull_over_http() {
    let site = Site::new();
    let dbs =
        std::sync::Arc::new(ok(outpost_sqlite::SqliteDatabases::new(site.path("data"), Limits::default()), "data"));
    let root = site.path("data").join("quicksync");
    let schedule = outpost_server::PublishSchedule {
        every: 100,
        interval: None,
        snapshot_every: 1_000,
        deltas_after_snapshot: true,
    };
    let state =
        outpost_server::AppState::new(dbs.clone(), Limits::default()).with_quicksync(&root).with_publishing(schedule);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopping) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(outpost_server::serve(listener, state, async move {
        let _ = stopping.await;
    }));
    ok(outpost_api::Databases::create(&*dbs, "stock").await, "create");
    let db = ok(dbs.open_sqlite("stock").await, "open");
    table(&*db, "t").await;
    write(&*db, ids(0..250), "v1").await;
    let update_seq = ok(db.info().await, "info").update_seq;
    // Published by count (every 100 events): wait until the files reach what was written.
    let mut reached = None;
    let mut manifest = None;
    for _ in 0..600 {
        manifest = Manifest::read(&root.join("stock")).ok().flatten();
        reached = manifest.as_ref().map(|m| m.rows.iter().map(|r| r.end_seq).max().unwrap_or(0));
        if reached == Some(update_seq) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(reached, Some(update_seq), "the server published everything written");
    // Its deltas start after its first snapshot, as scheduled: nothing before it is written twice.
    let manifest = manifest.expect("a manifest");
    let snapshot = manifest.latest_snapshot().expect("a snapshot");
    let first_delta = manifest.deltas().first().map(|d| d.start_seq);
    assert!(first_delta.is_none_or(|start| start > 1 && start <= snapshot.end_seq + 1), "{manifest:?}");
    write(&*db, ids(0..3), "tail").await;

    let client = site.db("client").await;
    let url = format!("http://{addr}/dbs/stock/quicksync/");
    let files = ok(open_files(&url, &site.path("cache")), "open the URL");
    let report = ok(pull(&*files, &client, &PullOptions::default()).await, "pull over HTTP");
    assert_eq!(report.start, PullStart::Snapshot);
    assert!(report.bytes > 0, "downloaded: {report:?}");
    let remote = outpost_client::connect(&format!("http://{addr}/dbs/stock")).expect("a locator");
    let live = ok(replicate(&remote, &client, &Options::default()).await, "the live pass");
    assert_eq!((live.start.seq, live.progress.changes_read), (update_seq, 3), "only the tail");
    assert_converged(&[("server", &*db), ("client", &client)]).await;
    let _ = stop.send(());
    ok(server.await.expect("the server task").map_err(|e| outpost_api::Error::internal(e.to_string())), "serve");
}

/// Everything a database stores, read through its storage: head (seq, chain, epochs), every revision
/// event with its body, every record's revision tree (stubs included), the live-record count, the
/// knowledge rows, and the changes feed.
type Stored = (
    outpost_engine::storage::Head,
    Vec<outpost_engine::storage::StoredEvent>,
    Vec<((String, String), outpost_engine::tree::RevisionTree)>,
    Option<u64>,
    Vec<outpost_api::KnowledgeRow>,
    Vec<outpost_api::Change>,
);

async fn stored(db: &SqliteDatabase) -> Stored {
    use outpost_engine::storage::Storage;
    let storage = db.storage();
    let head = ok(storage.head().await, "head");
    let mut events = Vec::new();
    loop {
        let after = events.last().map_or(0, |e: &outpost_engine::storage::StoredEvent| e.seq);
        let page = ok(storage.events(after, 5000).await, "events");
        if page.is_empty() {
            break;
        }
        events.extend(page);
    }
    let mut keys: Vec<(String, String)> =
        events.iter().map(|e| (e.revision.table.clone(), e.revision.id.clone())).collect();
    keys.sort();
    keys.dedup();
    let mut trees = Vec::new();
    for chunk in keys.chunks(1000) {
        let mut loaded = ok(storage.load_trees(chunk).await, "trees");
        trees.extend(chunk.iter().map(|k| (k.clone(), loaded.remove(k).expect("a tree for every record"))));
    }
    let count = ok(storage.record_count().await, "record count");
    let knowledge = ok(storage.knowledge(None).await, "knowledge");
    let changes = outpost_tests::support::all_changes(db, 0, None).await;
    (head, events, trees, count, knowledge, changes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrapped_file_is_the_database_applying_the_files_one_by_one_makes() {
    let n = bootstrap_records();
    let site = Site::new();
    let (server, files) = (site.db("server").await, site.path("files"));
    let every = (n as u64 / 3).max(50);
    table(&server, "t").await;
    write(&server, ids(0..n), "v1").await;
    publish_to(&server, &files, every, every * 3).await;
    // Conflicts, and stubs: a peer edits some records twice offline while the server edits them
    // once; only the peer's leaves travel, so its first edits reach the server as ancestry alone.
    let peer = site.db("peer").await;
    ok(replicate(&server, &peer, &Options::default()).await, "to the peer");
    let edited = n / 100 + 3;
    write(&peer, ids(0..edited), "peer-a").await;
    write(&peer, ids(0..edited), "peer-b").await;
    write(&server, ids(0..edited / 2), "server").await;
    // A few leaves copied alone: their parents are held as stubs (before replication brings the rest).
    for id in ids(edited - 3..edited) {
        let leaf = ok(peer.get_record("t", &id, GetOptions::default()).await, "get").rev;
        outpost_tests::support::copy(&peer, &server, "t", &id, &[leaf]).await;
    }
    ok(replicate(&peer, &server, &Options::default()).await, "back from the peer");
    publish_to(&server, &files, every, every * 3).await;
    // Tombstones (one over a conflict), a revival, and new records, each in a delta of its own.
    remove(&server, ids(edited..edited + 40)).await;
    remove(&server, ids(0..1)).await;
    publish_to(&server, &files, every, every * 3).await;
    write(&server, ids(edited..edited + 5), "revived").await;
    write(&server, ids(n..n + 60), "v1").await;
    publish_to(&server, &files, every, every * 3).await;
    let manifest = Manifest::read(&files).expect("a manifest").expect("published");
    assert!(manifest.deltas().len() >= 4, "several deltas: {:?}", manifest.rows);

    // One identity for both, so that even their chains must be equal.
    let genesis = ok(outpost_engine::storage::Genesis::new("client"), "genesis");
    let plain = {
        let path = site.path("plain.outpost");
        let storage = ok(outpost_sqlite::SqliteStorage::create(&path, &genesis), "create");
        ok(outpost_engine::Engine::new(storage, Limits::default()).await, "open")
    };
    let one_by_one = ok(pull_from(&files, &plain).await, "pull into a database file");
    let path = site.path("boot.outpost");
    let boot = ok(outpost_sqlite::Bootstrap::begin_with(&path, genesis, Limits::default()).await, "bootstrap");
    // As the CLI pulls into a bootstrap: each file verified as it is applied.
    let bulk = {
        let files = ok(open_files(files.to_str().unwrap(), &files.join("unused-cache")), "files");
        let options = PullOptions { verify_first: false, ..PullOptions::default() };
        ok(pull(&*files, &*boot.database(), &options).await, "pull into a bootstrap")
    };
    let booted = ok(boot.finish().await, "finish the bootstrap");
    assert_eq!((bulk.start, &bulk.applied, bulk.written), (one_by_one.start, &one_by_one.applied, one_by_one.written));
    assert_eq!(bulk.start, PullStart::Snapshot);

    let (a, b) = (stored(&plain).await, stored(&booted).await);
    assert!(a.2.iter().any(|(_, t)| t.iter().any(|(_, node)| node.is_stub())), "the files carry stubs");
    assert!(a.5.iter().any(|c| c.leaves.len() > 1), "and conflicts");
    assert!(a.5.iter().any(|c| c.deleted), "and tombstones");
    assert_eq!(a.0, b.0, "the same head: seq, chain and epochs");
    assert_eq!(a.1.len(), b.1.len());
    if let Some((x, y)) = a.1.iter().zip(&b.1).find(|(x, y)| x != y) {
        panic!("the events differ first at seq {}: {x:?} against {y:?}", x.seq);
    }
    assert!(a.2 == b.2, "the same revision trees, stubs included");
    assert_eq!(a.3, b.3, "the same live-record count");
    assert_eq!(a.4, b.4, "the same knowledge");
    assert!(a.5 == b.5, "the same changes feed");
    assert_converged(&[("one by one", &plain), ("bootstrapped", &booted), ("server", &server)]).await;
    let check = ok(booted.check().await, "check");
    assert!(check.problems.is_empty(), "{:?}", check.problems);
    assert_eq!(check.rehashed, a.1.iter().filter(|e| e.revision.body.is_some()).count() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deltas_may_start_after_the_first_snapshot_and_clients_still_follow() {
    let site = Site::new();
    let (server, files) = (site.db("server").await, site.path("files"));
    table(&server, "t").await;
    write(&server, ids(0..500), "v1").await;
    let after =
        PublishOptions { every: 100, snapshot_every: 10_000, deltas_after_snapshot: true, ..PublishOptions::default() };
    let first = ok(publish(&server, &files, &after).await, "publish");
    // The history so far is written once, in the snapshot; no delta repeats it.
    assert_eq!(first.written.iter().map(|f| f.kind).collect::<Vec<_>>(), ["snapshot"], "{:?}", first.written);
    let snapshot_end = first.update_seq;
    let early = site.db("early").await;
    assert_eq!(ok(pull_from(&files, &early).await, "pull").start, PullStart::Snapshot);

    write(&server, ids(0..150), "v2").await;
    let second = ok(publish(&server, &files, &after).await, "publish");
    let deltas: Vec<(u64, u64)> = second.written.iter().map(|f| (f.start_seq, f.end_seq)).collect();
    assert_eq!(deltas.first().map(|d| d.0), Some(snapshot_end + 1), "the deltas begin after the snapshot");
    // A run without the option keeps them: a snapshot bridges the seqs before the first delta.
    let plain_options = PublishOptions { every: 100, snapshot_every: 10_000, ..PublishOptions::default() };
    let again = ok(publish(&server, &files, &plain_options).await, "publish");
    assert!(again.written.is_empty() && again.dropped.is_empty(), "{again:?}");

    // The peer that took the snapshot takes only the deltas; a new one takes the snapshot and them.
    let report = ok(pull_from(&files, &early).await, "pull");
    assert_eq!((report.start, kinds(&report)), (PullStart::Delta, vec!["delta".to_owned(); deltas.len()]));
    let late = site.db("late").await;
    let report = ok(pull_from(&files, &late).await, "pull");
    assert_eq!(report.start, PullStart::Snapshot);
    assert_eq!(report.end_seq, ok(server.info().await, "info").update_seq);
    for peer in [&early, &late] {
        assert!(missing_revisions(&server, peer).await.is_empty(), "the peer holds every revision");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_publisher_of_a_directory_fails_clearly_and_the_lock_is_never_a_published_file() {
    let site = Site::new();
    let (server, files) = (site.db("server").await, site.path("files"));
    table(&server, "t").await;
    write(&server, ids(0..10), "v1").await;
    std::fs::create_dir_all(&files).expect("the directory");
    // Another publisher (here: this test) holds the directory's lock.
    let held = std::fs::File::create(files.join(outpost_quicksync::publish::LOCK_FILE)).expect("the lock file");
    held.try_lock().expect("the lock");
    let err = publish(&server, &files, &PublishOptions::default()).await.expect_err("a second publisher");
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
    assert!(err.message.contains("another publisher") && err.message.contains(".publish.lock"), "{err}");
    assert!(Manifest::read(&files).expect("read").is_none(), "nothing was written");
    drop(held);
    let report = publish_to(&server, &files, 100, 10_000).await;
    assert_eq!(report.written.len(), 2);
    // The lock stays (it is the operating system's lock that counts), and is neither listed nor removed.
    let manifest = Manifest::read(&files).expect("read").expect("a manifest");
    assert!(manifest.rows.iter().all(|r| !r.file.starts_with('.')));
    assert!(files.join(outpost_quicksync::publish::LOCK_FILE).exists());
    let client = site.db("client").await;
    ok(pull_from(&files, &client).await, "pull");
}

/// Everything a restore must keep: every event with its seq, chain hash and revision, the chain hash
/// at every seq, the changes feed, and the knowledge rows (by peer, seq and chain).
async fn history(db: &dyn Database) -> serde_json::Value {
    let info = ok(db.info().await, "info");
    let events = ok(db.events(0, 10_000).await, "events");
    assert!(events.len() < 10_000, "one page holds the history");
    let mut chains = Vec::new();
    for seq in 0..=info.update_seq {
        chains.push(ok(db.chain_hash_at(seq).await, "chain_hash_at"));
    }
    let changes =
        ok(db.changes(outpost_api::ChangesRequest { since: 0, limit: 10_000, tables: None }).await, "changes");
    let mut knowledge: Vec<(outpost_api::Uuid, u64, outpost_api::ChainHash)> =
        ok(db.knowledge(None).await, "knowledge").iter().map(|r| (r.peer, r.peer_seq, r.peer_chain)).collect();
    knowledge.sort();
    json!({"events": events, "chains": chains, "changes": changes.changes, "knowledge": knowledge,
           "record_count": info.record_count})
}

/// SPEC §18: a portable backup moves a database SQLite → PostgreSQL → SQLite with its whole history
/// (seqs, chain hashes, trees, states) and knowledge; each restore keeps the epochs that name the
/// backed-up seqs and begins a new one, and a peer that knew the original fast-forwards from the
/// restored database as it would have from the original.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portable_backup_moves_a_database_to_postgresql_and_back_with_its_identity() {
    let Some(url) = outpost_tests::postgres::test_url() else { return };
    let site = Site::new();
    let (original, peer) = (site.db("original").await, site.db("peer").await);
    table(&original, "t").await;
    table(&peer, "t").await;
    write(&original, ids(0..300), "v1").await;
    write(&peer, ids(250..400), "peer").await;
    // Knowledge of a peer, conflicts from it, an epoch begun mid-history, deletes and updates after.
    ok(replicate(&peer, &original, &Options::default()).await, "peer to original");
    let second_epoch = ok(original.reidentify().await, "reidentify");
    remove(&original, ids(0..20)).await;
    write(&original, ids(20..60), "v2").await;
    let early = site.db("early").await;
    ok(replicate(&original, &early, &Options::default()).await, "original to an early peer");
    let before = history(&original).await;
    let original_epochs = ok(original.info().await, "info").epochs;
    assert_eq!(original_epochs[1], second_epoch);

    let to_pg = site.path("backup-1");
    let identity = ok(outpost_quicksync::backup::backup(&original, &to_pg, &PublishOptions::default()).await, "backup");
    assert_eq!(identity.epochs, original_epochs);
    let dbs = ok(outpost_postgres::PostgresDatabases::connect_url(&url, Limits::default()).await, "connect");
    let name = outpost_tests::postgres::unique_name("restored");
    let genesis = ok(outpost_engine::storage::Genesis::restored(&name, &identity.epochs), "genesis");
    let pg = ok(dbs.create_postgres_as(genesis).await, "create on PostgreSQL");
    ok(outpost_quicksync::backup::restore(&to_pg, &*pg, &PullOptions::default()).await, "restore into PostgreSQL");
    let new_epoch = ok(pg.restore_epochs(&identity.epochs).await, "restore the epochs");
    ok(pg.record_knowledge(identity.knowledge_update().expect("a history")).await, "restore the knowledge");
    assert_eq!(history(&*pg).await, before, "the same history and knowledge on PostgreSQL");
    let epochs = ok(pg.info().await, "info").epochs;
    assert_eq!(epochs[..2], original_epochs[..], "the epochs that name the backed-up seqs");
    assert_eq!((epochs.len(), new_epoch.start_seq), (3, identity.update_seq + 1), "and a new one after them");
    assert!(ok(pg.check().await, "check").problems.is_empty());

    // The early peer knew the original at its last seq: from the restored database it starts there.
    write(&*pg, ids(400..410), "after the restore").await;
    let report = ok(replicate(&*pg, &early, &Options::default()).await, "restored to the early peer");
    assert_eq!((report.start.origin, report.start.seq), (Origin::Direct, identity.update_seq), "{report:?}");
    assert_eq!(report.progress.revisions_written, 10, "only what was written since");

    // And back to SQLite, with the restored database's three epochs.
    let to_sqlite = site.path("backup-2");
    let again = ok(outpost_quicksync::backup::backup(&*pg, &to_sqlite, &PublishOptions::default()).await, "backup");
    let genesis = ok(outpost_engine::storage::Genesis::restored("back", &again.epochs), "genesis");
    let back =
        ok(outpost_sqlite::create_file_as(&site.path("back.outpost"), genesis, Limits::default()).await, "create");
    ok(outpost_quicksync::backup::restore(&to_sqlite, &back, &PullOptions::default()).await, "restore into SQLite");
    ok(back.restore_epochs(&again.epochs).await, "restore the epochs");
    ok(back.record_knowledge(again.knowledge_update().expect("a history")).await, "restore the knowledge");
    assert_eq!(history(&back).await, history(&*pg).await, "the same history and knowledge on SQLite");
    assert_eq!(ok(back.info().await, "info").epochs[..3], epochs[..]);
    assert!(ok(back.check().await, "check").problems.is_empty());

    // A restore only goes into a database that begins as the backup's, and a backup never overwrites.
    let stranger = site.db("stranger").await;
    let err =
        outpost_quicksync::backup::restore(&to_sqlite, &stranger, &PullOptions::default()).await.expect_err("refused");
    assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");
    let err =
        outpost_quicksync::backup::backup(&original, &to_pg, &PublishOptions::default()).await.expect_err("taken");
    assert_eq!(err.kind, ErrorKind::AlreadyExists, "{err}");
    ok(outpost_api::Databases::delete(&dbs, &name).await, "delete");
}
