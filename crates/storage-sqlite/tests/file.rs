//! The SQLite file as other tools see it: SQL views per table, format versions, and opening errors.

use outpost_api::{Attributes, ErrorKind, InfoReader, Limits, NewTable, PutRecord, RecordWriter, TableWriter, Value};

fn put(id: &str, n: i64) -> PutRecord {
    PutRecord { id: Some(id.into()), attributes: Attributes::new().with("n", Value::Int(n)), ..Default::default() }
}

#[tokio::test]
async fn each_table_has_a_reconciled_view_and_a_history_view() {
    let dir = tempfile::tempdir().unwrap();
    let db = outpost_sqlite::create_file(&dir.path().join("v.outpost"), "v", Limits::default()).await.unwrap();
    db.create_table(NewTable { name: "orders".into(), ..Default::default() }).await.unwrap();
    let first = db.put_record("orders", put("o-1", 1)).await.unwrap();
    db.put_record("orders", PutRecord { rev: Some(first.rev), ..put("o-1", 2) }).await.unwrap();
    db.put_record("orders", put("'; DROP TABLE _records; --", 3)).await.unwrap();
    db.delete_record("orders", "'; DROP TABLE _records; --", None).await.unwrap();
    let (live, history): (Vec<(String, String)>, i64) = db
        .storage()
        .with_connection(|c| {
            let live = c
                .prepare("SELECT id, json_extract(attributes, '$.n.int') FROM orders ORDER BY id")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let history = c.query_row("SELECT count(*) FROM orders_history", [], |r| r.get(0)).unwrap();
            (live, history)
        })
        .await;
    assert_eq!(live, vec![("o-1".to_owned(), "2".to_owned())]);
    assert_eq!(history, 4, "two revisions of o-1, a record and its tombstone");
}

#[tokio::test]
async fn a_file_of_a_newer_format_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.outpost");
    let db = outpost_sqlite::create_file(&path, "new", Limits::default()).await.unwrap();
    db.storage().with_connection(|c| c.pragma_update(None, "user_version", 99)).await.unwrap();
    drop(db);
    let err = outpost_sqlite::open_file(&path, Limits::default()).await.err().expect("refused");
    assert_eq!(err.kind, ErrorKind::InvalidInput);
    assert!(err.message.contains("format version 99"), "{}", err.message);
}

#[tokio::test]
async fn opening_what_is_not_a_database_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "hello").unwrap();
    let cases =
        [(dir.path().join("missing.outpost"), ErrorKind::NotFound), (dir.path().to_owned(), ErrorKind::InvalidInput)];
    for (path, kind) in cases {
        let err = outpost_sqlite::open_file(&path, Limits::default()).await.err().expect("refused");
        assert_eq!(err.kind, kind, "{}: {}", path.display(), err.message);
    }
    let err = outpost_sqlite::open_file(&text, Limits::default()).await.err().expect("refused");
    assert!(matches!(err.kind, ErrorKind::InvalidInput | ErrorKind::Corrupt), "{err}");
    let err = outpost_sqlite::create_file(&dir.path().join("no/such/dir.outpost"), "x", Limits::default())
        .await
        .err()
        .expect("refused");
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
}

#[tokio::test]
async fn a_data_directory_hosts_named_databases() {
    use outpost_api::Databases;
    let dir = tempfile::tempdir().unwrap();
    let dbs = outpost_sqlite::SqliteDatabases::new(dir.path().join("data"), Limits::default()).unwrap();
    assert!(dbs.list().await.unwrap().is_empty());
    dbs.create("field-b").await.unwrap();
    dbs.create("field_a").await.unwrap();
    assert_eq!(dbs.create("field_a").await.err().unwrap().kind, ErrorKind::AlreadyExists);
    assert_eq!(dbs.list().await.unwrap(), vec!["field-b", "field_a"]);
    let opened = dbs.open("field_a").await.unwrap();
    assert_eq!(opened.info().await.unwrap().name, "field_a");
    for bad in ["../x", "%2e%2e", "A", "a/b", "", "a.outpost"] {
        assert_eq!(dbs.create(bad).await.err().unwrap().kind, ErrorKind::InvalidInput, "{bad}");
        assert_eq!(dbs.open(bad).await.err().unwrap().kind, ErrorKind::InvalidInput, "{bad}");
    }
    assert_eq!(dbs.open("nope").await.err().unwrap().kind, ErrorKind::NotFound);
    dbs.delete("field_a").await.unwrap();
    assert_eq!(dbs.list().await.unwrap(), vec!["field-b"]);
    assert_eq!(dbs.delete("field_a").await.err().unwrap().kind, ErrorKind::NotFound);
    assert!(!dir.path().join("data/field_a.outpost").exists());
}

#[tokio::test]
async fn a_restored_backup_holds_the_data_and_begins_a_new_epoch() {
    use outpost_api::{GetOptions, InfoReader, RecordReader, ReplicaSource};
    let dir = tempfile::tempdir().unwrap();
    let db = outpost_sqlite::create_file(&dir.path().join("live.outpost"), "live", Limits::default()).await.unwrap();
    db.create_table(NewTable { name: "t".into(), ..Default::default() }).await.unwrap();
    for i in 0..20 {
        db.put_record("t", put(&format!("r{i}"), i)).await.unwrap();
    }
    let backup = dir.path().join("live.backup");
    outpost_sqlite::backup(&db, &backup).await.unwrap();
    let again = outpost_sqlite::backup(&db, &backup).await.unwrap_err();
    assert_eq!(again.kind, ErrorKind::AlreadyExists, "a backup never overwrites: {again}");
    // Written after the backup: not in the restored copy.
    db.put_record("t", put("late", 99)).await.unwrap();
    let before = db.info().await.unwrap();

    let path = dir.path().join("copy.outpost");
    let (restored, epoch) = outpost_sqlite::restore(&backup, &path, "copy", Limits::default()).await.unwrap();
    let info = restored.info().await.unwrap();
    assert_eq!(info.name, "copy");
    assert_eq!(info.update_seq, before.update_seq - 1);
    assert_eq!(info.epochs.len(), 2);
    assert_eq!(info.epochs[0], before.epochs[0], "the original's epoch stays listed");
    assert_eq!(epoch, info.epochs[1]);
    assert_eq!(epoch.start_seq, info.update_seq + 1, "the new epoch names the seqs written from now on");
    assert_ne!(info.uuid, before.uuid);
    assert_eq!(restored.chain_hash_at(10).await.unwrap(), db.chain_hash_at(10).await.unwrap(), "same history");
    assert_eq!(
        restored.get_record("t", "r7", GetOptions::default()).await.unwrap().attributes,
        put("r7", 7).attributes
    );
    let late = restored.get_record("t", "late", GetOptions::default()).await.unwrap_err();
    assert_eq!(late.kind, ErrorKind::NotFound);
    assert!(restored.check().await.unwrap().problems.is_empty());

    // Restoring from a live database file works too; an existing target is refused.
    let (from_live, _) = outpost_sqlite::restore(
        &dir.path().join("live.outpost"),
        &dir.path().join("twin.outpost"),
        "twin",
        Limits::default(),
    )
    .await
    .unwrap();
    assert_eq!(from_live.info().await.unwrap().update_seq, before.update_seq);
    let taken = outpost_sqlite::restore(&backup, &path, "copy", Limits::default()).await.err().unwrap();
    assert_eq!(taken.kind, ErrorKind::AlreadyExists);
    let missing =
        outpost_sqlite::restore(&dir.path().join("nope"), &dir.path().join("n.outpost"), "n", Limits::default())
            .await
            .err()
            .unwrap();
    assert_eq!(missing.kind, ErrorKind::NotFound);
    assert!(!dir.path().join("n.outpost").exists() && !dir.path().join("n.outpost.restoring").exists());
}

/// This process's open descriptors on files whose name ends with `suffix`.
fn open_files_ending(suffix: &str) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|fds| {
            fds.flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .filter(|target| target.to_string_lossy().ends_with(suffix))
                .count()
        })
        .unwrap_or(0)
}

/// Wait (bounded) until no descriptor of this process is on a file ending with `suffix`: closing runs
/// on the blocking pool, after the open that triggered it answered.
async fn closed_soon(suffix: &str) -> bool {
    for _ in 0..200 {
        if open_files_ending(suffix) == 0 {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    false
}

#[tokio::test]
async fn databases_nobody_holds_are_closed_once_idle() {
    use outpost_api::Databases;
    let dir = tempfile::tempdir().unwrap();
    let dbs = outpost_sqlite::SqliteDatabases::new(dir.path().join("data"), Limits::default())
        .unwrap()
        .with_idle_close(std::time::Duration::ZERO);
    let held = dbs.create("held").await.unwrap();
    drop(dbs.create("idle").await.unwrap());
    // Their first commits' background checkpoints done: a database whose checkpoint runs is in use.
    for name in ["held", "idle"] {
        dbs.open_sqlite(name).await.unwrap().storage().wal_settled().await.unwrap();
    }
    // Open: one descriptor, or two once a checkpoint ran (SQLite keeps a closed connection's
    // descriptor for reuse while another connection holds a lock on the file).
    assert!(open_files_ending("/idle.outpost") >= 1);
    // Opening another closes the idle one; the held one stays open for its holder.
    let other = dbs.open("held").await.unwrap();
    assert_eq!(dbs.open_count().await, 1);
    assert!(closed_soon("/idle.outpost").await, "the idle database's file is closed");
    assert!(open_files_ending("/held.outpost") >= 1);
    // A closed one opens again when asked for.
    assert_eq!(dbs.open("idle").await.unwrap().info().await.unwrap().name, "idle");
    drop((held, other));
    drop(dbs.open("idle").await.unwrap());
    assert_eq!(dbs.open_count().await, 1, "held, released, is closed too");
    assert!(closed_soon("/held.outpost").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_is_checkpointed_in_the_background_and_commits_stay_durable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal.outpost");
    let db = outpost_sqlite::create_file(&path, "wal", Limits::default()).await.unwrap();
    db.create_table(NewTable { name: "t".into(), ..Default::default() }).await.unwrap();
    // The writer does not checkpoint at SQLite's default 1000 pages: only at the backstop.
    let (autocheckpoint, synchronous): (i64, i64) = db
        .storage()
        .with_connection(|c| {
            let a = c.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0)).unwrap();
            (a, c.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap())
        })
        .await;
    assert_eq!(autocheckpoint, i64::from(outpost_sqlite::WAL_BACKSTOP_PAGES));
    assert_eq!(synchronous, 2, "synchronous = FULL: every commit syncs the WAL");
    let body = Attributes::new().with("text", Value::String("x".repeat(2000)));
    for batch in 0..20 {
        let ops = (0..100)
            .map(|i| {
                let put =
                    PutRecord { id: Some(format!("r{batch}-{i}")), attributes: body.clone(), ..Default::default() };
                outpost_api::WriteOp::put("t", put)
            })
            .collect();
        assert!(db.write_batch(ops).await.unwrap().iter().all(Result::is_ok));
    }
    // About 9 MB committed: checkpoints ran in the background, and all of it is in the file.
    let (frames, checkpointed) = db.storage().wal_settled().await.unwrap();
    assert!(db.storage().background_checkpoints() >= 1, "no checkpoint ran in the background");
    assert!(frames > 0 && frames == checkpointed, "{checkpointed} of {frames} WAL frames checkpointed");
    assert_eq!(db.info().await.unwrap().record_count, 2000);
    // Closed and opened again (as after a crash, the WAL is read back), everything is there and sound.
    drop(db);
    let db = outpost_sqlite::open_file(&path, Limits::default()).await.unwrap();
    assert_eq!(db.info().await.unwrap().record_count, 2000);
    assert!(db.check().await.unwrap().problems.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_on_while_a_writer_holds_the_database_and_see_only_commits() {
    use outpost_api::{ChangeReader, ChangesRequest, RecordReader, RecordRevs, ReplicaTarget};
    use outpost_engine::storage::{Storage, WriteSet};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.outpost");
    let db = outpost_sqlite::create_file(&path, "r", Limits::default()).await.unwrap();
    db.create_table(NewTable { name: "t".into(), ..Default::default() }).await.unwrap();
    let put = db.put_record("t", put("a", 1)).await.unwrap();
    let before = db.info().await.unwrap();

    // A writer holds the database, with a change applied but not committed.
    let mut txn = db.storage().begin_write().await.unwrap();
    txn.apply(WriteSet { record_count: Some(77), ..Default::default() }).await.unwrap();
    // Every kind of read answers meanwhile (were it queued behind the writer, this would never
    // finish: the bound only turns a hang into a failure), from the last commit.
    let reads = async {
        let info = db.info().await.unwrap();
        let page = db.changes(ChangesRequest { since: 0, limit: 10, tables: None }).await.unwrap();
        let record = db.get_record("t", "a", Default::default()).await.unwrap();
        let have = RecordRevs { table: "t".into(), id: "a".into(), revs: vec![put.rev] };
        let missing = db.revs_diff(vec![have]).await.unwrap();
        (info, page, record, missing)
    };
    let (info, page, record, missing) = tokio::time::timeout(std::time::Duration::from_secs(120), reads)
        .await
        .expect("the reads waited for the writer");
    assert_eq!(info.record_count, before.record_count, "the uncommitted count is not seen");
    assert_eq!(page.last_seq, before.update_seq);
    assert_eq!(page.changes.len(), 2, "the table's definition and its record");
    assert_eq!(record.rev, put.rev);
    assert!(missing.is_empty());
    txn.commit().await.unwrap();
    assert_eq!(db.storage().record_count().await.unwrap(), Some(77), "a read after the commit sees it");

    // Closed for deletion, the read connections are closed too, and reads fail clearly.
    db.storage().close().await;
    let err = db.storage().head().await.expect_err("closed");
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
}

#[tokio::test]
async fn a_stored_body_damaged_behind_outposts_back_is_not_sent_as_broken_json() {
    use outpost_api::{RecordRevs, ReplicaSource};
    let dir = tempfile::tempdir().unwrap();
    let db = outpost_sqlite::create_file(&dir.path().join("d.outpost"), "d", Limits::default()).await.unwrap();
    db.create_table(NewTable { name: "t".into(), ..Default::default() }).await.unwrap();
    let rev = db.put_record("t", put("a", 1)).await.unwrap().rev;
    let wanted = vec![RecordRevs { table: "t".into(), id: "a".into(), revs: vec![rev] }];
    let sent = db.get_revisions_json(wanted.clone()).await.unwrap();
    assert_eq!(sent[0].attributes.as_ref().map(|b| b.get()), Some(r#"{"n":{"int":"1"}}"#), "the body as stored");
    db.storage()
        .with_connection(|c| c.execute("UPDATE _events SET body = '{\"n\": {\"int\": \"1\"' WHERE id = 'a'", []))
        .await
        .unwrap();
    let err = db.get_revisions_json(wanted).await.expect_err("a body that is not JSON");
    assert_eq!(err.kind, ErrorKind::Corrupt, "{err}");
    assert!(err.message.contains("t/a"), "{err}");
}

/// The names of the indexes the file holds.
async fn indexes(db: &outpost_sqlite::SqliteDatabase) -> Vec<String> {
    db.storage()
        .with_connection(|c| {
            c.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%' ORDER BY name")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_is_built_aside_and_appears_whole_or_not_at_all() {
    use outpost_api::{ChangeReader, ChangesRequest};
    use outpost_sqlite::Bootstrap;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("boot.outpost");
    let staging = dir.path().join("boot.outpost.bootstrapping");
    // A crash's leftover at the staging name is thrown away, not trusted.
    std::fs::write(&staging, "left by a crash").unwrap();
    let boot = Bootstrap::begin(&path, "boot", Limits::default()).await.unwrap();
    assert_eq!(boot.staging_path(), staging);
    let db = boot.database();
    db.create_table(NewTable { name: "t".into(), ..Default::default() }).await.unwrap();
    for i in 0..50 {
        db.put_record("t", put(&format!("r{i:02}"), i)).await.unwrap();
    }
    assert!(!path.exists(), "no database at the path before it is finished");
    assert!(staging.exists());
    drop(db);
    // Dropped unfinished (an error, an interruption): nothing is left, at the path or aside.
    drop(boot);
    assert!(!path.exists() && !staging.exists(), "an unfinished bootstrap leaves nothing");

    let boot = Bootstrap::begin(&path, "boot", Limits::default()).await.unwrap();
    let db = boot.database();
    db.create_table(NewTable { name: "t".into(), ..Default::default() }).await.unwrap();
    for i in 0..50 {
        db.put_record("t", put(&format!("r{i:02}"), i)).await.unwrap();
    }
    let before = db.info().await.unwrap();
    // Being built, the file lacks the changes feed's index (built once at the end).
    assert!(!indexes(&db).await.contains(&"_records_seq".to_owned()));
    drop(db);
    // One bootstrap of a path at a time: a second fails clearly and leaves the first one's file.
    let err = Bootstrap::begin(&path, "boot", Limits::default()).await.err().expect("refused");
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
    assert!(err.message.contains("another process is making"), "{err}");
    assert!(staging.exists());
    let done = boot.finish().await.unwrap();
    assert!(path.exists() && !staging.exists(), "moved into place");
    let after = done.info().await.unwrap();
    assert_eq!(
        (after.update_seq, after.record_count, after.uuid),
        (before.update_seq, before.record_count, before.uuid)
    );
    assert!(indexes(&done).await.contains(&"_records_seq".to_owned()), "{:?}", indexes(&done).await);
    let page = done.changes(ChangesRequest { since: 0, limit: 100, ..Default::default() }).await.unwrap();
    assert_eq!(page.changes.len(), 51, "the table's definition and its 50 records");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // Live now: commits are durable again, and the database takes writes as any other.
    let sync: i64 =
        done.storage().with_connection(|c| c.pragma_query_value(None, "synchronous", |r| r.get(0))).await.unwrap();
    assert_eq!(sync, 2, "synchronous = FULL");
    done.put_record("t", put("later", 1)).await.unwrap();
    drop(done);
    let reopened = outpost_sqlite::open_file(&path, Limits::default()).await.unwrap();
    assert_eq!(reopened.info().await.unwrap().update_seq, after.update_seq + 1);
    // A bootstrap never replaces a database.
    let err = Bootstrap::begin(&path, "boot", Limits::default()).await.err().expect("refused");
    assert_eq!(err.kind, ErrorKind::AlreadyExists, "{err}");
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !["boot.outpost", "boot.outpost-wal", "boot.outpost-shm"].contains(&n.as_str()))
        .collect();
    assert!(left.is_empty(), "nothing but the open database is left beside it: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_never_make_the_same_database_at_once() {
    use outpost_sqlite::Bootstrap;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.outpost");
    let boot = Bootstrap::begin(&path, "x", Limits::default()).await.unwrap();
    // While one bootstrap holds the path, neither a restore nor a create may take it over.
    let backup = dir.path().join("b.outpost");
    let src = outpost_sqlite::create_file(&dir.path().join("src.outpost"), "src", Limits::default()).await.unwrap();
    outpost_sqlite::backup(&src, &backup).await.unwrap();
    let (staged, staging) = (boot.database().info().await.unwrap().uuid, boot.staging_path().to_owned());
    // Each makes the database under its own staging name and lock; the file appears whole at the
    // path from whichever finishes first, and the other fails without touching it.
    let restored = outpost_sqlite::restore(&backup, &path, "x", Limits::default()).await.unwrap().0;
    let restored_uuid = restored.info().await.unwrap().uuid;
    drop(restored);
    let err = boot.finish().await.err().expect("the bootstrap finds the path taken");
    assert_eq!(err.kind, ErrorKind::AlreadyExists, "{err}");
    assert!(!staging.exists(), "a bootstrap that could not finish removes its staging file");
    let lock = dir.path().join("x.outpost.bootstrapping.lock");
    assert!(!lock.exists(), "and its lock file, as the path is taken for good");
    let at_path = outpost_sqlite::open_file(&path, Limits::default()).await.unwrap();
    assert_eq!(at_path.info().await.unwrap().uuid, restored_uuid, "the restore's database, untouched");
    assert_ne!(restored_uuid, staged);
    let err = outpost_sqlite::create_file(&path, "x", Limits::default()).await.err().expect("refused");
    assert_eq!(err.kind, ErrorKind::AlreadyExists, "{err}");
}
