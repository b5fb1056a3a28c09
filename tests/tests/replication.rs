//! End-to-end replication (SPEC §6–§8, issue 4's acceptance) between real servers on loopback
//! ports, through `outpost-client`: the seed scenario of §8 and its trap, network faults through a
//! fault-injecting proxy, records never pulled twice, and database identity (restored targets,
//! restored or rolled-back sources, copied files that diverged).

use std::sync::Arc;
use std::time::Duration;

use outpost_api::{
    Database, ErrorKind, GetOptions, InfoReader, Limits, PutRecord, RecordReader, RecordRevs, RecordWriter,
    ReplicaSource, ReplicaTarget, RetryPolicy, WriteOp,
};
use outpost_client::ClientConfig;
use outpost_reconciler::{replicate, sync, Options, Origin, Report};
use outpost_sqlite::SqliteDatabase;
use outpost_tests::faults::{cancelled_after, FlakyTarget, PutFaults};
use outpost_tests::peer::PeerServer;
use outpost_tests::proxy::{Fault, FaultPlan, FaultyProxy};
use outpost_tests::replicas::{assert_converged, duplicate_events, knowledge_problems, missing_revisions};
use outpost_tests::support::{all_changes, ok, plain, table};
use serde_json::json;

// ---------------------------------------------------------------------------------------------------
// Writing test data.

/// `{prefix}{i:05}` for each i.
fn ids(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i:05}")).collect()
}

/// Create records (in batches), each with a body naming `site`.
async fn create(db: &dyn Database, table_name: &str, ids: &[String], site: &str) {
    for chunk in ids.chunks(1000) {
        let ops = chunk
            .iter()
            .map(|id| {
                let attributes = plain(json!({"site": site, "id": id, "version": 0}));
                WriteOp::put(table_name, PutRecord { id: Some(id.clone()), rev: None, attributes, resolves: vec![] })
            })
            .collect();
        for (id, result) in chunk.iter().zip(ok(db.write_batch(ops).await, "write_batch")) {
            ok(result, &format!("create {table_name}/{id}"));
        }
    }
}

/// Write a new body on the current winner of each record (recreating a deleted one).
async fn update(db: &dyn Database, table_name: &str, ids: &[String], tag: &str) {
    for id in ids {
        let parent = db.get_record(table_name, id, GetOptions::default()).await.ok().map(|r| r.rev);
        let attributes = plain(json!({"id": id, "tag": tag}));
        let put = PutRecord { id: Some(id.clone()), rev: parent, attributes, resolves: vec![] };
        ok(db.put_record(table_name, put).await, &format!("update {table_name}/{id}"));
    }
}

/// Delete each record's winner.
async fn remove(db: &dyn Database, table_name: &str, ids: &[String]) {
    for id in ids {
        ok(db.delete_record(table_name, id, None).await, &format!("delete {table_name}/{id}"));
    }
}

/// Records of one site: created, a third updated, some of those updated three times, a few deleted.
async fn populate(db: &dyn Database, table_name: &str, prefix: &str, n: usize, site: &str) {
    table(db, table_name).await;
    let all = ids(prefix, 0..n);
    create(db, table_name, &all, site).await;
    let updated: Vec<String> = all.iter().step_by(3).cloned().collect();
    update(db, table_name, &updated, &format!("{site} 1")).await;
    let often: Vec<String> = all.iter().step_by(9).cloned().collect();
    for round in 2..=3 {
        update(db, table_name, &often, &format!("{site} {round}")).await;
    }
    let gone: Vec<String> = all.iter().skip(1).step_by(11).cloned().collect();
    remove(db, table_name, &gone).await;
}

fn options(batch_size: usize) -> Options {
    Options { batch_size, ..Options::default() }
}

/// Options whose pass is cancelled once `batches` batches of `batch_size` have been written.
fn cancel_after(batch_size: usize, batches: u64) -> Options {
    cancelled_after(batches, options(batch_size))
}

async fn uuid_of(db: &dyn Database) -> outpost_api::Uuid {
    ok(db.info().await, "info").uuid
}

async fn update_seq_of(db: &dyn Database) -> u64 {
    ok(db.info().await, "info").update_seq
}

/// The engine's own check finds nothing wrong, and no revision was stored twice.
async fn assert_sound(name: &str, db: &SqliteDatabase) {
    let report = ok(db.check().await, "check");
    assert!(report.problems.is_empty(), "{name}: {:?}", report.problems);
    let twice = duplicate_events(db).await;
    assert!(twice.is_empty(), "{name} stored revisions twice: {twice:?}");
}

/// Every knowledge row and resume point the databases hold about each other tells the truth.
async fn assert_knowledge_holds(dbs: &[(&str, &SqliteDatabase)]) {
    let problems = knowledge_problems(dbs).await;
    assert!(problems.is_empty(), "knowledge that does not hold: {problems:#?}");
}

/// A client that tries each call once, to see quickly that a server is gone.
fn no_retry() -> ClientConfig {
    ClientConfig { retry: RetryPolicy::none(), ..ClientConfig::default() }
}

// ---------------------------------------------------------------------------------------------------
// The seed scenario of SPEC §8.

/// Three sites, each a real server: us-east and us-west with writes of their own (and conflicting
/// edits of shared records), synced both ways; store1 empty.
struct Regions {
    east: PeerServer,
    west: PeerServer,
    store: PeerServer,
    east_db: Arc<SqliteDatabase>,
    west_db: Arc<SqliteDatabase>,
    store_db: Arc<SqliteDatabase>,
    /// The us-west seq us-east drained in the last sync (what us-east's knowledge vouches for).
    west_seq_known_by_east: u64,
}

async fn regions() -> Regions {
    let (east, west, store) = (PeerServer::start(), PeerServer::start(), PeerServer::start());
    let (east_db, west_db, store_db) =
        (east.create("us-east").await, west.create("us-west").await, store.create("store1").await);
    populate(&*east_db, "items", "e", 400, "us-east").await;
    populate(&*west_db, "orders", "w", 300, "us-west").await;
    let (e, w) = (east.remote("us-east"), west.remote("us-west"));
    ok(sync(&e, &w, &options(100)).await, "first sync");
    // Both edit the same records offline: conflicts to carry along.
    update(&*east_db, "items", &ids("e", 0..30), "east again").await;
    update(&*west_db, "items", &ids("e", 15..45), "west again").await;
    update(&*west_db, "orders", &ids("w", 0..20), "west again").await;
    let (_, west_to_east) = ok(sync(&e, &w, &options(100)).await, "second sync");
    assert!(west_to_east.drained && west_to_east.knowledge_recorded);
    let west_seq_known_by_east = west_to_east.end_seq;
    let west_uuid = uuid_of(&*west_db).await;
    let knowledge = ok(east_db.knowledge(None).await, "knowledge");
    assert!(
        knowledge.iter().any(|k| k.peer == west_uuid && k.peer_seq == west_seq_known_by_east && k.via.is_none()),
        "us-east knows us-west up to {west_seq_known_by_east}: {knowledge:?}"
    );
    Regions { east, west, store, east_db, west_db, store_db, west_seq_known_by_east }
}

impl Regions {
    /// store1 pulls us-east, then us-east's server stops (and is seen to be gone).
    async fn store_pulls_east_then_east_goes_away(&mut self) -> Report {
        let pulled =
            ok(replicate(&self.east.remote("us-east"), &self.store.remote("store1"), &options(100)).await, "pull");
        assert!(pulled.drained && pulled.knowledge_recorded, "{pulled:?}");
        assert!(pulled.progress.revisions_written > 0);
        assert_converged(&[("us-east", &*self.east_db), ("store1", &*self.store_db)]).await;
        let url = self.east.db_url("us-east");
        self.east.stop();
        let gone = outpost_client::connect_with(&url, no_retry()).expect("a locator");
        let kind = gone.info().await.expect_err("us-east is stopped").kind;
        assert_eq!(kind, ErrorKind::Unavailable);
        pulled
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_scenario_store1_starts_from_us_east_knowledge_and_transfers_nothing_it_holds() {
    let mut sites = regions().await;
    let pulled = sites.store_pulls_east_then_east_goes_away().await;
    let west_uuid = uuid_of(&*sites.west_db).await;
    let east_uuid = uuid_of(&*sites.east_db).await;

    let from_west =
        ok(replicate(&sites.west.remote("us-west"), &sites.store.remote("store1"), &options(100)).await, "pass");
    assert_eq!(from_west.start.origin, Origin::Transitive, "{from_west:?}");
    assert_eq!(from_west.start.seq, sites.west_seq_known_by_east, "the us-west seq us-east vouched for");
    assert_eq!(from_west.start.epoch, Some(west_uuid));
    assert_eq!(from_west.start.via, Some(east_uuid));
    assert_eq!(from_west.progress.changes_read, 0, "{from_west:?}");
    assert_eq!(from_west.progress.revisions_fetched, 0, "{from_west:?}");
    assert_eq!(from_west.progress.revisions_written, 0, "{from_west:?}");
    assert!(from_west.drained && from_west.warnings.is_empty(), "{from_west:?}");
    assert!(from_west.requests <= 10, "a first pass that transfers nothing costs {} requests", from_west.requests);
    assert_eq!(pulled.progress.changes_read, 702, "store1 got every record from us-east: {pulled:?}");
    assert_converged(&[("us-west", &*sites.west_db), ("store1", &*sites.store_db)]).await;
    assert_sound("store1", &sites.store_db).await;
    assert_knowledge_holds(&[("us-east", &sites.east_db), ("us-west", &sites.west_db), ("store1", &sites.store_db)])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_scenario_store1_fetches_only_what_us_west_wrote_after_the_sync() {
    let mut sites = regions().await;
    // us-west goes on writing after the sync: 25 new records, 30 updates, 10 records updated twice,
    // 5 deletions — 70 records changed by 80 revisions, none of which store1 can have.
    let west: &dyn Database = &*sites.west_db;
    create(west, "orders", &ids("n", 0..25), "us-west").await;
    update(west, "orders", &ids("w", 100..130), "later").await;
    update(west, "items", &ids("e", 200..210), "later").await;
    update(west, "items", &ids("e", 200..210), "later still").await;
    remove(west, "orders", &ids("w", 200..205)).await;
    let (changed, written) = (25 + 30 + 10 + 5, 25 + 30 + 2 * 10 + 5);
    assert_eq!(update_seq_of(west).await, sites.west_seq_known_by_east + written);
    sites.store_pulls_east_then_east_goes_away().await;

    let from_west =
        ok(replicate(&sites.west.remote("us-west"), &sites.store.remote("store1"), &options(100)).await, "pass");
    assert_eq!(from_west.start.origin, Origin::Transitive, "{from_west:?}");
    assert_eq!(from_west.start.seq, sites.west_seq_known_by_east);
    assert_eq!(from_west.progress.changes_read, changed, "{from_west:?}");
    assert_eq!(from_west.progress.revisions_fetched, written, "only what us-west wrote since: {from_west:?}");
    assert_eq!(from_west.progress.revisions_written, written, "{from_west:?}");
    assert_converged(&[("us-west", &*sites.west_db), ("store1", &*sites.store_db)]).await;
    assert_sound("store1", &sites.store_db).await;
    assert_knowledge_holds(&[("us-east", &sites.east_db), ("us-west", &sites.west_db), ("store1", &sites.store_db)])
        .await;
}

/// The trap of SPEC §8: a pass interrupted before draining must not pass for knowledge. us-east
/// updates us-west's records after their sync, so those records sit late in us-east's feed; store1's
/// pass from us-east is cut after us-east's knowledge of us-west became "covered" by the position
/// reached but before those late records. Had store1 taken that position as knowledge, it would
/// later skip them when pulling from us-west, and with us-east gone they would be lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trap_an_interrupted_pass_is_not_knowledge_and_loses_nothing() {
    let (mut east, west, store) = (PeerServer::start(), PeerServer::start(), PeerServer::start());
    let (east_db, west_db, store_db) =
        (east.create("us-east").await, west.create("us-west").await, store.create("store1").await);
    populate(&*east_db, "items", "e", 300, "us-east").await;
    populate(&*west_db, "orders", "w", 300, "us-west").await;
    let (e, w, s) = (east.remote("us-east"), west.remote("us-west"), store.remote("store1"));
    let (_, west_to_east) = ok(sync(&e, &w, &options(100)).await, "sync");
    let west_uuid = uuid_of(&*west_db).await;
    let east_knows = ok(east_db.knowledge(None).await, "knowledge");
    let row = east_knows.iter().find(|k| k.peer == west_uuid).expect("us-east knows us-west");
    assert_eq!(row.peer_seq, west_to_east.end_seq);
    let east_seq_of_that_knowledge = row.local_seq;

    // us-east updates 200 of us-west's records (several times) and some of its own: they move to the
    // end of us-east's feed, past the seq at which it learned about us-west.
    let late = ids("w", 0..200);
    update(&*east_db, "orders", &late, "east 1").await;
    update(&*east_db, "orders", &ids("w", 0..60), "east 2").await;
    update(&*east_db, "items", &ids("e", 0..50), "east 1").await;

    // store1's pass from us-east: cut after 8 batches of 50, i.e. past the ~400 records that did not
    // move and into the late ones.
    let cut = ok(replicate(&e, &s, &cancel_after(50, 8)).await, "the cut pass");
    assert!(cut.cancelled && !cut.drained && !cut.knowledge_recorded, "{cut:?}");
    let east_seq = update_seq_of(&*east_db).await;
    assert!(
        cut.end_seq >= east_seq_of_that_knowledge && cut.end_seq < east_seq,
        "the cut ({}) lies after us-east learned us-west ({east_seq_of_that_knowledge}) and before its end ({east_seq})",
        cut.end_seq
    );
    assert!(ok(store_db.knowledge(None).await, "knowledge").is_empty(), "a mid-pass position is not knowledge");
    // The trap is armed: some us-west revisions that us-east held when it learned us-west are not on
    // store1 yet.
    let lacking = missing_revisions(&*west_db, &*store_db).await;
    let armed = lacking.iter().filter(|(t, id, _)| t == "orders" && late.contains(id)).count();
    assert!(armed > 0, "store1 lacks some of us-west's revisions that us-east updated late");

    // Records us-east updates after the first part of the pass: store1 holds their older revisions.
    update(&*east_db, "items", &ids("e", 100..120), "after the cut").await;
    east.stop();

    let from_west = ok(replicate(&w, &s, &options(50)).await, "us-west to store1");
    assert_ne!(from_west.start.origin, Origin::Transitive, "{from_west:?}");
    assert_eq!(from_west.start.seq, 0, "store1 knows nothing of us-west: {from_west:?}");
    let still_lacking = missing_revisions(&*west_db, &*store_db).await;
    assert!(
        still_lacking.is_empty(),
        "store1 lacks {} us-west revisions, e.g. {:?}",
        still_lacking.len(),
        still_lacking.first()
    );
    // What store1 got from us-east before the cut is still there.
    let from_east: Vec<RecordRevs> = all_changes(&*store_db, 0, None)
        .await
        .into_iter()
        .map(|c| RecordRevs { table: c.table, id: c.id, revs: c.leaves })
        .collect();
    assert!(ok(east_db.revs_diff(from_east).await, "revs_diff").is_empty(), "store1 holds nothing us-east never had");
    assert_sound("store1", &store_db).await;
    assert_knowledge_holds(&[("us-east", &east_db), ("us-west", &west_db), ("store1", &store_db)]).await;
}

// ---------------------------------------------------------------------------------------------------
// Faults and costs.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_through_a_faulty_network_completes_and_converges() {
    let (a, b) = (PeerServer::start(), PeerServer::start());
    let (a_db, b_db) = (a.create("field").await, b.create("cloud").await);
    populate(&*a_db, "items", "a", 1200, "field").await;
    populate(&*b_db, "orders", "b", 400, "cloud").await;
    // 12% of the chunks relayed are hit, 40 faults per proxy at most. The client tries each call
    // twice, so some failures reach the reconciler, which restarts the pass; every restart spends at
    // least one fault, so 100 passes always outlast the 80 faults and the sync always completes.
    let plan = |seed| FaultPlan { seed, percent: 12, budget: 40, max_delay: Duration::from_millis(30) };
    let (to_a, to_b) = (FaultyProxy::start(a.addr(), plan(7)).await, FaultyProxy::start(b.addr(), plan(11)).await);
    let client = ClientConfig {
        retry: RetryPolicy {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(100),
        },
        ..ClientConfig::default()
    };
    let ra = ok(outpost_client::connect_with(&format!("{}/dbs/field", to_a.url()), client.clone()), "locator");
    let rb = ok(outpost_client::connect_with(&format!("{}/dbs/cloud", to_b.url()), client), "locator");
    let passes = Options {
        batch_size: 150,
        retry: RetryPolicy {
            max_attempts: 100,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(200),
        },
        ..Options::default()
    };
    let (ab, ba) = ok(sync(&ra, &rb, &passes).await, "sync through the faulty proxies");
    assert!(ab.drained && ba.drained, "{ab:?}\n{ba:?}");
    assert_converged(&[("field", &*a_db), ("cloud", &*b_db)]).await;
    assert_sound("field", &a_db).await;
    assert_sound("cloud", &b_db).await;
    assert_knowledge_holds(&[("field", &a_db), ("cloud", &b_db)]).await;
    assert!(to_a.faults() + to_b.faults() > 0, "the proxies injected faults");
    for (name, proxy) in [("field", &to_a), ("cloud", &to_b)] {
        let kinds = [Fault::DropRequest, Fault::DropResponse, Fault::TruncateResponse, Fault::DelayResponse];
        let counts: Vec<String> = kinds.iter().map(|k| format!("{k:?} {}", proxy.faults_of(*k))).collect();
        eprintln!("proxy of {name}: {} connections; faults: {}", proxy.connections(), counts.join(", "));
    }
    eprintln!("restarts: {} + {}; warnings: {:#?} {:#?}", ab.restarts, ba.restarts, ab.warnings, ba.warnings);
    // Another pass, through the same proxies, has nothing to do.
    let again = ok(replicate(&ra, &rb, &passes).await, "again");
    assert_eq!(again.progress.revisions_fetched, 0, "{again:?}");
}

/// One full pass over HTTP of `n` records, then a second one; returns the second's report.
async fn second_pass_after_a_full_one(n: usize) -> Report {
    let (a, b) = (PeerServer::start(), PeerServer::start());
    let a_db = a.create("source").await;
    b.create("target").await;
    table(&*a_db, "items").await;
    create(&*a_db, "items", &ids("r", 0..n), "source").await;
    let (ra, rb) = (a.remote("source"), b.remote("target"));
    let first = ok(replicate(&ra, &rb, &options(1000)).await, "first pass");
    assert_eq!(first.progress.revisions_written, n as u64 + 1, "every record and the table definition");
    let second = ok(replicate(&ra, &rb, &options(1000)).await, "second pass");
    assert_eq!(second.start.origin, Origin::Direct);
    assert_eq!(second.start.seq, first.end_seq);
    assert_eq!(second.progress.changes_read, 0, "{second:?}");
    assert_eq!(second.progress.revisions_fetched, 0, "{second:?}");
    assert_eq!(second.progress.revisions_written, 0, "{second:?}");
    second
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_never_pulled_twice_and_a_pass_with_nothing_to_do_costs_the_same_at_any_size() {
    let small = second_pass_after_a_full_one(500).await;
    let large = second_pass_after_a_full_one(5000).await;
    assert!(small.requests <= 10, "a pass with nothing to do costs {} requests", small.requests);
    assert_eq!(small.requests, large.requests, "the same on 500 and 5000 records");
    assert_eq!(small.pages, large.pages);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_pass_into_an_empty_target_asks_no_revs_diff_and_a_later_pass_does() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (source, target) = (local_file(&dir, "source").await, Arc::new(local_file(&dir, "target").await));
    table(&source, "t").await;
    create(&source, "t", &ids("a", 0..2500), "source").await;
    let counted = FlakyTarget::new(target.clone() as Arc<dyn Database>, PutFaults::After(u64::MAX));
    // The target holds nothing: it lacks every revision the feed names (none has an ancestry).
    let first = ok(replicate(&source, &counted, &options(500)).await, "first pass");
    assert_eq!(counted.revs_diffs(), 0, "{first:?}");
    assert_eq!(first.progress.revisions_written, update_seq_of(&source).await, "{first:?}");
    // Now it holds them: a pass asks what it lacks, and takes only that.
    update(&source, "t", &ids("a", 0..100), "again").await;
    create(&source, "t", &ids("b", 0..10), "source").await;
    let second = ok(replicate(&source, &counted, &options(500)).await, "second pass");
    assert!(counted.revs_diffs() > 0, "{second:?}");
    assert_eq!((second.progress.revisions_fetched, second.progress.revisions_written), (110, 110), "{second:?}");
    assert_converged(&[("source", &source), ("target", &*target)]).await;
    assert_sound("target", &target).await;
}

// ---------------------------------------------------------------------------------------------------
// Identity (SPEC §6).

/// A local SQLite file in `dir`.
async fn local_file(dir: &tempfile::TempDir, name: &str) -> SqliteDatabase {
    let path = dir.path().join(format!("{name}.outpost"));
    ok(outpost_sqlite::create_file(&path, name, Limits::default()).await, "create_file")
}

/// A tablet (a local file) pulls from a hub server; it is backed up mid-pass and after the pass,
/// the hub moves on, and the tablet is lost: restored from either backup, it resumes from the point
/// stored with its data and fetches exactly what it lacks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_restored_from_an_older_backup_resumes_from_the_point_stored_with_its_data() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let hub = PeerServer::start();
    let hub_db = hub.create("hub").await;
    populate(&*hub_db, "items", "h", 1200, "hub").await;
    let remote = hub.remote("hub");
    let tablet = local_file(&dir, "tablet").await;

    let cut = ok(replicate(&remote, &tablet, &cancel_after(100, 4)).await, "cut pass");
    assert!(cut.cancelled && !cut.drained);
    let mid_backup = dir.path().join("mid.backup");
    ok(outpost_sqlite::backup(&tablet, &mid_backup).await, "backup mid-pass");
    let rest = ok(replicate(&remote, &tablet, &options(100)).await, "the rest");
    assert_eq!((rest.start.origin, rest.start.seq), (Origin::Resume, cut.end_seq));
    let full_backup = dir.path().join("full.backup");
    ok(outpost_sqlite::backup(&tablet, &full_backup).await, "backup after the pass");
    create(&*hub_db, "items", &ids("n", 0..100), "hub").await;
    update(&*hub_db, "items", &ids("h", 500..550), "later").await;
    ok(replicate(&remote, &tablet, &options(100)).await, "the tablet keeps up");
    let tablet_uuid = uuid_of(&tablet).await;

    for (backup, origin, seq, name) in [
        (&mid_backup, Origin::Resume, cut.end_seq, "tablet_mid"),
        (&full_backup, Origin::Direct, rest.end_seq, "tablet_full"),
    ] {
        let path = dir.path().join(format!("{name}.outpost"));
        let (restored, epoch) = ok(outpost_sqlite::restore(backup, &path, name, Limits::default()).await, "restore");
        let info = ok(restored.info().await, "info");
        assert_eq!(info.uuid, epoch.uuid);
        assert_ne!(info.uuid, tablet_uuid, "a restored database begins a new epoch");
        assert_eq!(info.epochs.len(), 2);
        let lacking = missing_revisions(&*hub_db, &restored).await.len() as u64;
        assert!(lacking > 0);
        let report = ok(replicate(&remote, &restored, &options(100)).await, "replicate to the restored tablet");
        assert_eq!((report.start.origin, report.start.seq), (origin, seq), "{name}: {report:?}");
        assert_eq!(report.progress.revisions_fetched, lacking, "{name} fetches exactly what it lacks");
        assert_converged(&[("hub", &*hub_db), (name, &restored)]).await;
        assert_sound(name, &restored).await;
    }
}

/// A tablet (the source) pushes to a hub server twice, and is then lost and restored from a backup
/// taken between the two pushes: the hub's points past the backup name no state of the restored
/// source (a new epoch begins at the backup's seq), so they are discarded; the hub keeps what the
/// lost tablet pushed, gets what the restored one writes, and a sync both ways converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_restored_from_an_older_backup_is_detected_and_replication_stays_correct() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let hub = PeerServer::start();
    let hub_db = hub.create("hub").await;
    let remote = hub.remote("hub");
    let tablet = local_file(&dir, "tablet").await;
    populate(&tablet, "items", "t", 300, "tablet").await;
    let first = ok(replicate(&tablet, &remote, &options(100)).await, "first push");
    let backup = dir.path().join("tablet.backup");
    ok(outpost_sqlite::backup(&tablet, &backup).await, "backup");
    create(&tablet, "items", &ids("lost", 0..50), "tablet").await;
    update(&tablet, "items", &ids("t", 0..40), "lost").await;
    let second = ok(replicate(&tablet, &remote, &options(100)).await, "second push");
    assert!(second.end_seq > first.end_seq);

    let path = dir.path().join("tablet2.outpost");
    let (restored, _) = ok(outpost_sqlite::restore(&backup, &path, "tablet2", Limits::default()).await, "restore");
    create(&restored, "items", &ids("new", 0..60), "restored").await;
    update(&restored, "items", &ids("t", 20..60), "restored").await;
    assert!(update_seq_of(&restored).await >= second.end_seq, "the restored tablet reuses the lost seqs");

    let report = ok(replicate(&restored, &remote, &options(100)).await, "push from the restored tablet");
    assert!(report.start.seq <= first.end_seq, "{report:?}");
    assert!(matches!(report.start.origin, Origin::Zero | Origin::Direct), "{report:?}");
    assert!(report.warnings.iter().any(|w| w.contains("discarded")), "the discarded point is reported: {report:?}");
    assert!(missing_revisions(&restored, &*hub_db).await.is_empty(), "the hub has every write of the restored tablet");
    assert!(missing_revisions(&tablet, &*hub_db).await.is_empty(), "the hub keeps what the lost tablet pushed");

    ok(sync(&restored, &remote, &options(100)).await, "sync both ways");
    assert_converged(&[("hub", &*hub_db), ("tablet2", &restored)]).await;
    assert!(missing_revisions(&tablet, &restored).await.is_empty(), "the restored tablet got the lost writes back");
    assert_sound("hub", &hub_db).await;
    assert_sound("tablet2", &restored).await;
}

/// The same loss, but the tablet is rolled back by copying an old file into place (no new epoch),
/// and writes past the seq the hub last drained: the hub's point names a state of the same uuid, and
/// only the chain hash shows it is not this one. The sync back then tells the copy that its history
/// forked under its uuid, and it re-identifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_rolled_back_by_a_file_copy_is_detected_by_its_chain_hash() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let hub = PeerServer::start();
    let hub_db = hub.create("hub").await;
    let remote = hub.remote("hub");
    let tablet = local_file(&dir, "tablet").await;
    populate(&tablet, "items", "t", 300, "tablet").await;
    let first = ok(replicate(&tablet, &remote, &options(100)).await, "first push");
    let backup = dir.path().join("tablet.backup");
    ok(outpost_sqlite::backup(&tablet, &backup).await, "backup");
    create(&tablet, "items", &ids("lost", 0..50), "tablet").await;
    let second = ok(replicate(&tablet, &remote, &options(100)).await, "second push");
    let uuid = uuid_of(&tablet).await;

    let path = dir.path().join("rolled-back.outpost");
    std::fs::copy(&backup, &path).expect("copy the backup into place");
    let rolled_back = ok(outpost_sqlite::open_file(&path, Limits::default()).await, "open the copy");
    assert_eq!(uuid_of(&rolled_back).await, uuid, "a plain copy keeps its uuid");
    create(&rolled_back, "items", &ids("new", 0..80), "rolled back").await;
    assert!(update_seq_of(&rolled_back).await > second.end_seq);

    let report = ok(replicate(&rolled_back, &remote, &options(100)).await, "push from the rolled-back tablet");
    assert_eq!((report.start.origin, report.start.seq), (Origin::Direct, first.end_seq), "{report:?}");
    assert!(
        report.warnings.iter().any(|w| w.contains("discarded") && w.contains("chain hash")),
        "the chain mismatch is reported: {report:?}"
    );
    assert!(missing_revisions(&rolled_back, &*hub_db).await.is_empty());
    assert!(missing_revisions(&tablet, &*hub_db).await.is_empty());

    let (_, back) = ok(sync(&rolled_back, &remote, &options(100)).await, "sync both ways");
    assert!(back.warnings.iter().any(|w| w.contains("forked")), "{back:?}");
    let info = ok(rolled_back.info().await, "info");
    assert_ne!(info.uuid, uuid, "the copy re-identified");
    assert_eq!(info.epochs.len(), 2);
    assert!(info.epochs[1].start_seq <= first.end_seq + 1, "{:?}", info.epochs);
    ok(sync(&rolled_back, &remote, &options(100)).await, "sync again");
    assert_converged(&[("hub", &*hub_db), ("rolled-back", &rolled_back)]).await;
    assert_sound("rolled-back", &rolled_back).await;
}

/// An original file and a plain copy of it (same uuid) both write; knowledge about the original
/// reaching the copy — through a third peer, or from the original directly — shows the copy's
/// history forked under the shared uuid, and the copy begins a new epoch.
async fn diverged_copy(through_a_third_peer: bool) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let original = local_file(&dir, "original").await;
    populate(&original, "items", "o", 200, "original").await;
    let backup = dir.path().join("original.backup");
    ok(outpost_sqlite::backup(&original, &backup).await, "backup");
    let copied_at = update_seq_of(&original).await;
    // A peer that took everything the original had when it was copied.
    let early = local_file(&dir, "early").await;
    ok(replicate(&original, &early, &options(100)).await, "original to an early peer");
    let path = dir.path().join("copy.outpost");
    std::fs::copy(&backup, &path).expect("copy the file");
    let copy = ok(outpost_sqlite::open_file(&path, Limits::default()).await, "open the copy");
    let uuid = uuid_of(&original).await;
    assert_eq!(uuid_of(&copy).await, uuid);
    create(&original, "items", &ids("x", 0..40), "original").await;
    update(&original, "items", &ids("o", 0..20), "original").await;
    create(&copy, "items", &ids("y", 0..30), "copy").await;
    update(&copy, "items", &ids("o", 10..30), "copy").await;

    let hub = PeerServer::start();
    let hub_db = hub.create("hub").await;
    let remote = hub.remote("hub");
    let detected = if through_a_third_peer {
        ok(replicate(&original, &remote, &options(100)).await, "original to hub");
        ok(replicate(&remote, &copy, &options(100)).await, "hub to copy")
    } else {
        ok(replicate(&original, &copy, &options(100)).await, "original to copy")
    };
    assert!(detected.warnings.iter().any(|w| w.contains("forked")), "{detected:?}");
    let info = ok(copy.info().await, "info");
    assert_ne!(info.uuid, uuid, "the copy re-identified");
    assert_eq!(info.epochs.len(), 2, "{:?}", info.epochs);
    assert_eq!(info.epochs[0].uuid, uuid);
    assert!(info.epochs[1].start_seq <= copied_at + 1, "the new epoch covers every seq that may differ");
    if !through_a_third_peer {
        // From the original itself, the copy finds where their histories part (bisecting chain
        // hashes on both sides): the seqs they share keep the uuid every peer knows them by.
        assert_eq!(info.epochs[1].start_seq, copied_at + 1, "{:?}", info.epochs);
        // So the early peer's knowledge of the original still holds on the copy: it fast-forwards.
        let report = ok(replicate(&copy, &early, &options(100)).await, "copy to the early peer");
        assert_eq!((report.start.origin, report.start.seq), (Origin::Direct, copied_at), "{report:?}");
    }
    assert_eq!(uuid_of(&original).await, uuid, "the original keeps its uuid");

    for _ in 0..2 {
        ok(sync(&original, &remote, &options(100)).await, "original and hub");
        ok(sync(&copy, &remote, &options(100)).await, "copy and hub");
    }
    assert_converged(&[("original", &original), ("copy", &copy), ("hub", &*hub_db)]).await;
    assert_eq!(uuid_of(&original).await, uuid, "the original keeps its uuid");
    assert_sound("original", &original).await;
    assert_sound("copy", &copy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diverged_copy_is_reidentified_when_knowledge_reaches_it_through_a_third_peer() {
    diverged_copy(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diverged_copy_is_reidentified_when_the_original_replicates_to_it() {
    diverged_copy(false).await;
}

/// SPEC §18: a record with a deep history of large bodies (18 MB, over a server's 16 MiB request
/// limit) replicates into a server in requests under its limit, and back out through a client that
/// takes answers of 4 MiB at most: what is sent is cut by bytes, and an answer over the client's cap
/// is asked for again in halves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_with_a_deep_history_replicates_in_requests_under_the_limits() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let device = local_file(&dir, "device").await;
    table(&device, "t").await;
    let pad = "x".repeat(60_000);
    let mut rev = None;
    for n in 0..300 {
        let attributes = plain(json!({"n": n, "pad": pad}));
        let put = PutRecord { id: Some("deep".into()), rev, attributes, resolves: vec![] };
        rev = Some(ok(device.put_record("t", put).await, "put").rev);
    }
    let hub = PeerServer::start();
    let hub_db = hub.create("hub").await;
    let pushed = ok(replicate(&device, &hub.remote("hub"), &Options::default()).await, "push the deep history");
    assert_eq!(pushed.progress.revisions_written, 301, "the table and every revision of the record");
    assert!(missing_revisions(&device, &*hub_db).await.is_empty());

    let config = ClientConfig { max_response_bytes: 4 << 20, ..ClientConfig::default() };
    let back = local_file(&dir, "back").await;
    let pulled = ok(replicate(&hub.remote_with("hub", config), &back, &Options::default()).await, "pull it back");
    assert_eq!(pulled.progress.revisions_written, 301);
    assert!(missing_revisions(&*hub_db, &back).await.is_empty());
    assert_eq!(ok(back.get_record("t", "deep", GetOptions::default()).await, "get").rev, rev.expect("written"));
    assert_sound("back", &back).await;
}
