//! `outpost sync`, `db backup` and `db restore` end to end, with the real binary; and crash safety:
//! a replication process killed with SIGKILL at random moments, rerun each time, ends exact.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use outpost_api::{Attributes, InfoReader, Limits, NewTable, RecordWriter, TableWriter, Value, WriteOp, WriteOpKind};

mod common;
use common::{entries, json_of, outpost, Rng};

/// A database file with `records` records in table `items` (every fifth updated, every eleventh
/// deleted); returns its update_seq.
async fn source(path: &Path, records: usize) -> u64 {
    let db = outpost_sqlite::create_file(path, "src", Limits::default()).await.unwrap();
    db.create_table(NewTable { name: "items".into(), ..NewTable::default() }).await.unwrap();
    add(&db, 0, records).await
}

async fn add(db: &outpost_sqlite::SqliteDatabase, from: usize, to: usize) -> u64 {
    let op = |i: usize, rev, text: &str| WriteOp {
        op: WriteOpKind::Put,
        table: "items".into(),
        id: Some(format!("item-{i:06}")),
        rev,
        attributes: Attributes::new().with("n", Value::Int(i as i64)).with("text", Value::string(text)),
        resolves: vec![],
    };
    for chunk in (from..to).collect::<Vec<_>>().chunks(1000) {
        let created = db.write_batch(chunk.iter().map(|&i| op(i, None, "first")).collect()).await.unwrap();
        let mut again = Vec::new();
        for (&i, result) in chunk.iter().zip(created) {
            let rev = result.unwrap().rev;
            if i % 5 == 0 {
                again.push(op(i, Some(rev), "second"));
            } else if i % 11 == 0 {
                again.push(WriteOp { op: WriteOpKind::Delete, attributes: Attributes::new(), ..op(i, Some(rev), "") });
            }
        }
        for r in db.write_batch(again).await.unwrap() {
            r.unwrap();
        }
    }
    db.info().await.unwrap().update_seq
}

#[tokio::test]
async fn sync_copies_once_and_says_what_it_did() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let events = source(&d.join("src.outpost"), 300).await;

    let (code, _, stderr) = outpost(d, &["sync", "src.outpost", "dst.outpost"]);
    assert_eq!(code, 3, "a missing target is not found: {stderr}");
    assert!(stderr.contains("--create-target"), "{stderr}");

    let first = json_of(d, &["sync", "src.outpost", "dst.outpost", "--create-target", "--json", "--batch-size", "50"]);
    assert_eq!((first["from"].as_str(), first["to"].as_str()), (Some("src.outpost"), Some("dst.outpost")));
    assert_eq!(first["drained"], true);
    assert_eq!(first["start"]["origin"], "zero");
    assert_eq!(first["changes_read"], 301, "300 records and the table definition: {first}");
    assert_eq!(first["revisions_written"], events, "every revision, updated ones' first versions included");
    let again = json_of(d, &["sync", "src.outpost", "dst.outpost", "--json"]);
    assert_eq!(again["start"]["origin"], "direct");
    assert_eq!((again["changes_read"].as_u64(), again["revisions_fetched"].as_u64()), (Some(0), Some(0)));

    let (code, text, _) = outpost(d, &["sync", "src.outpost", "dst.outpost"]);
    assert_eq!(code, 0);
    assert!(text.contains("src.outpost → dst.outpost: drained"), "{text}");
    let both = json_of(d, &["sync", "src.outpost", "dst.outpost", "--both", "--json"]);
    assert_eq!(both.as_array().map(Vec::len), Some(2), "{both}");
    assert_eq!(both[1]["from"], "dst.outpost");

    let (code, _, stderr) = outpost(d, &["sync", "src.outpost", "src.outpost"]);
    assert_eq!(code, 5, "{stderr}");
    let (code, _, stderr) = outpost(d, &["sync", "src.outpost", "dst.outpost", "--batch-size", "0"]);
    assert_eq!(code, 5, "{stderr}");
}

#[tokio::test]
async fn a_restored_backup_is_a_new_epoch_that_syncs_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let seq = source(&d.join("src.outpost"), 100).await;
    let backup = json_of(d, &["db", "backup", "src.outpost", "src.backup", "--json"]);
    assert_eq!(backup["update_seq"], seq);
    let (code, _, stderr) = outpost(d, &["db", "backup", "src.outpost", "src.backup"]);
    assert_eq!(code, 6, "a backup never overwrites: {stderr}");

    let restored = json_of(d, &["db", "restore", "src.backup", "copy.outpost", "--json"]);
    assert_eq!(restored["info"]["name"], "copy");
    assert_eq!(restored["info"]["update_seq"], seq);
    assert_eq!(restored["new_epoch"]["start_seq"], seq + 1);
    assert_eq!(restored["info"]["epochs"].as_array().map(Vec::len), Some(2));
    outpost(d, &["put", "copy.outpost", "items", "new-on-copy", "n=1"]);
    let back = json_of(d, &["sync", "copy.outpost", "src.outpost", "--json"]);
    assert_eq!(back["revisions_written"], 1, "only the new record travels back: {back}");
    let (code, _, stderr) = outpost(d, &["db", "check", "copy.outpost"]);
    assert_eq!(code, 0, "{stderr}");
}

#[tokio::test]
async fn a_sync_killed_at_random_moments_ends_exact() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut source_seq = source(&d.join("src.outpost"), 10_000).await;
    // The target exists first: what is under test is the pass, not file creation.
    outpost_sqlite::create_file(&d.join("dst.outpost"), "dst", Limits::default()).await.unwrap();
    let sync = ["sync", "src.outpost", "dst.outpost", "--batch-size", "100", "--json"];
    let mut rng = Rng(0x5eed_f0a7_9057);
    let mut kills = 0;
    let mut completed = 0;
    for round in 0..400 {
        if kills >= 24 {
            break;
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_outpost"))
            .args(sync)
            .current_dir(d)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("outpost sync starts");
        std::thread::sleep(Duration::from_millis(10 + rng.below(150)));
        if child.try_wait().expect("status").is_none() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reaped");
            kills += 1;
        } else {
            // It finished before the kill: give the next runs something new to copy.
            completed += 1;
            let db = outpost_sqlite::open_file(&d.join("src.outpost"), Limits::default()).await.unwrap();
            let from = 10_000 + round * 500;
            source_seq = add(&db, from, from + 500).await;
        }
    }
    assert!(kills >= 20, "only {kills} runs were killed mid-pass ({completed} completed first)");

    let last = json_of(d, &sync);
    assert_eq!(last["drained"], true);
    for db in ["src.outpost", "dst.outpost"] {
        let (code, out, err) = outpost(d, &["db", "check", db]);
        assert_eq!(code, 0, "{db}: {out}{err}");
    }
    // A clean copy of the same source is the reference: same records, and the same number of
    // revision events, so no revision was written twice by the interrupted runs.
    json_of(d, &["sync", "src.outpost", "ref.outpost", "--create-target", "--json"]);
    let (target, reference) = (entries(&d.join("dst.outpost")).await, entries(&d.join("ref.outpost")).await);
    assert_eq!(target.len(), reference.len());
    assert!(target == reference, "the interrupted copy differs from a clean one");
    let info = |db: &str| json_of(d, &["db", "info", db, "--json"]);
    assert_eq!(info("dst.outpost")["update_seq"], info("ref.outpost")["update_seq"], "no revision written twice");
    assert_eq!(info("dst.outpost")["record_count"], info("src.outpost")["record_count"]);
    assert!(source_seq > 10_000);
}
