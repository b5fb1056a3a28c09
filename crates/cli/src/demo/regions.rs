//! Scenes 3 to 5: transitive fast-forward between regions (us-east, us-west, store1), the trap of an
//! interrupted pass, and a copied database file detected and re-identified.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use outpost_api::{InfoReader, ReconcilePolicy, ReplicaSource, Result};
use outpost_reconciler::{replicate, sync, CancellationToken, Options, Origin, ProgressFn};
use outpost_sqlite::SqliteDatabase;

use super::{lacking, table, write_records, Narrator};

/// Options of passes in batches of `batch_size`.
fn batches(batch_size: usize) -> Options {
    Options { batch_size, ..Options::default() }
}

/// Two regions that each wrote records of their own and edited some of the other's, synced both
/// ways: us-east (400 items) and us-west (300 orders).
async fn regions(n: &mut Narrator, east: &str, west: &str) -> Result<(SqliteDatabase, SqliteDatabase)> {
    let (e, w) = (n.db(east).await?, n.db(west).await?);
    table(&e, "items", ReconcilePolicy::KeepConflicts).await?;
    write_records(&e, "items", "e", 0..400, "us-east").await?;
    table(&w, "orders", ReconcilePolicy::KeepConflicts).await?;
    write_records(&w, "orders", "w", 0..300, "us-west").await?;
    sync(&e, &w, &batches(100)).await?;
    Ok((e, w))
}

pub(super) async fn transitive_fast_forward(n: &mut Narrator) -> Result<()> {
    n.scene(
        "Transitive fast-forward: us-east, us-west and store1",
        "Two cloud regions replicate with each other; a store pulls from the nearer one. When that \
         region goes away, the store's first pass from the other region must not start from zero: \
         us-east's knowledge of us-west, which the store received with its data, says where to start.",
    );
    n.say("us-east (400 items) and us-west (300 orders) sync both ways; each then edits records, and they sync again.");
    let (east, west) = regions(n, "us-east", "us-west").await?;
    write_records(&east, "items", "e", 0..30, "east again").await?;
    write_records(&west, "items", "e", 15..45, "west again").await?;
    let (_, west_to_east) = sync(&east, &west, &batches(100)).await?;
    n.show("us-west's seqs that us-east has read to the end", format!("1-{}", west_to_east.end_seq));
    n.check(west_to_east.drained && west_to_east.knowledge_recorded, "us-east records that as knowledge of us-west");

    n.say("store1 pulls everything from us-east. With the data comes us-east's knowledge of us-west.");
    let store = n.db("store1").await?;
    let pulled = replicate(&east, &store, &batches(100)).await?;
    n.show("revisions store1 wrote", format!("{} (everything us-east holds)", pulled.progress.revisions_written));
    drop(east);

    n.say(
        "us-east goes away. store1 pulls from us-west for the first time: it starts at the us-west seq \
         us-east vouched for (checked against us-west's own chain hash at that seq) and transfers nothing \
         it already holds.",
    );
    let from_west = replicate(&west, &store, &batches(100)).await?;
    let feed = west.info().await?.update_seq;
    n.show("start", format!("us-west seq {} ({})", from_west.start.seq, origin(from_west.start.origin)));
    n.show(
        "changes read",
        format!("{} (a pass from zero reads us-west's whole feed)", from_west.progress.changes_read),
    );
    n.show("revisions fetched", from_west.progress.revisions_fetched);
    n.check(
        from_west.start.origin == Origin::Transitive && from_west.start.seq == west_to_east.end_seq,
        "store1 starts where us-east's knowledge of us-west ends",
    );
    n.check(
        from_west.progress.changes_read == 0 && from_west.progress.revisions_fetched == 0 && feed > 0,
        "it reads none of us-west's changes and transfers nothing again",
    );
    n.check(lacking(&west, &store).await? == 0, "store1 holds everything us-west holds");
    Ok(())
}

/// Where a pass started, in words.
fn origin(origin: Origin) -> &'static str {
    match origin {
        Origin::Zero => "from zero: nothing known",
        Origin::Resume => "its own checkpoint for this source",
        Origin::Direct => "its own knowledge of the source",
        Origin::Transitive => "knowledge of the source received from a third database",
    }
}

/// Options whose pass is cancelled after `after` batches of `size`, as a pass cut by a network
/// failure or a killed process.
fn cut_after(size: usize, after: u64) -> Options {
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    let written = AtomicU64::new(0);
    let progress: ProgressFn = Arc::new(move |_| {
        if written.fetch_add(1, Ordering::Relaxed) + 1 >= after {
            stop.cancel();
        }
    });
    Options { progress: Some(progress), cancel, ..batches(size) }
}

pub(super) async fn the_trap(n: &mut Narrator) -> Result<()> {
    n.scene(
        "The trap: an interrupted pass is not knowledge",
        "A changes feed lists each record once, at its latest change. A pass cut off half-way has seen \
         a prefix of the feed, not a prefix of the history: records changed late sit at the end. Had \
         store1 taken its position as knowledge, it would skip those records when pulling from us-west \
         later — and with us-east gone, they would be lost.",
    );
    n.say("Three fresh databases play the same parts. us-east and us-west sync; then us-east updates 200 of us-west's orders: they move to the end of its feed.");
    let (east, west) = regions(n, "us-east-2", "us-west-2").await?;
    write_records(&east, "orders", "w", 0..200, "east's update").await?;

    n.say("store1's pass from us-east is cut off after 8 batches of 50 changes.");
    let store = n.db("store1-2").await?;
    let cut = replicate(&east, &store, &cut_after(50, 8)).await?;
    n.show("pass drained", cut.drained);
    n.show("knowledge recorded", cut.knowledge_recorded);
    n.check(!cut.drained && !cut.knowledge_recorded, "a cut pass records no knowledge");
    let knowledge = store.knowledge(None).await?;
    n.check(knowledge.is_empty(), "store1 knows nothing about us-east or us-west yet");
    drop(east);

    n.say("us-east goes away; store1 pulls from us-west.");
    let from_west = replicate(&west, &store, &batches(50)).await?;
    n.show("start", format!("us-west seq {} ({})", from_west.start.seq, origin(from_west.start.origin)));
    n.show(
        "revisions fetched",
        format!("{} (those the cut pass had not brought)", from_west.progress.revisions_fetched),
    );
    n.check(from_west.start.seq == 0, "with no knowledge, store1 starts from zero (revs-diff keeps it cheap)");
    n.check(lacking(&west, &store).await? == 0, "no record of us-west is missing on store1");
    Ok(())
}

pub(super) async fn a_copied_file(n: &mut Narrator) -> Result<()> {
    n.scene(
        "A copied database file is detected and re-identified",
        "A database is named by its uuid and seq: (uuid, seq) must mean one state. Copy the file, write to \
         both, and the same pair means two different things. Outpost notices when the copies meet, and the \
         copy takes a new identity from the point where the two histories part.",
    );
    n.say("An original with 200 items is copied as a plain file; both copies then take writes of their own.");
    let original = n.db("original").await?;
    table(&original, "items", ReconcilePolicy::KeepConflicts).await?;
    write_records(&original, "items", "o", 0..200, "original").await?;
    let backup = n.path("original-backup.outpost");
    outpost_sqlite::backup(&original, &backup).await?;
    let copied_at = original.info().await?.update_seq;
    let path = n.path("copy.outpost");
    std::fs::copy(&backup, &path).map_err(|e| outpost_api::Error::internal(format!("copying: {e}")))?;
    let copy = outpost_sqlite::open_file(&path, outpost_api::Limits::default()).await?;
    let uuid = original.info().await?.uuid;
    n.show("the original's uuid", uuid);
    n.show("the copy's uuid", copy.info().await?.uuid);
    write_records(&original, "items", "x", 0..40, "original").await?;
    write_records(&copy, "items", "y", 0..30, "copy").await?;

    n.say(
        "The original replicates to the copy. It vouches for its own uuid up to its latest seq, with its \
         chain hash there — which is not the copy's chain hash at that seq under the same uuid: their \
         histories forked. The copy, the one receiving, finds the last seq where they agree by bisecting \
         chain hashes, and takes a new uuid right after it.",
    );
    let report = replicate(&original, &copy, &batches(100)).await?;
    for warning in &report.warnings {
        n.show("warning", warning);
    }
    let info = copy.info().await?;
    n.show("the copy's uuid now", info.uuid);
    let starts: Vec<u64> = info.epochs.iter().map(|e| e.start_seq).collect();
    n.show(
        "the copy's epochs start at seqs",
        format!("{starts:?} (copied at seq {copied_at}: 200 items and the table's definition)"),
    );
    n.check(info.uuid != uuid, "the copy re-identified itself");
    n.check(starts == [1, copied_at + 1], "its new epoch begins right after the copy point");
    n.check(original.info().await?.uuid == uuid, "the original keeps its uuid");

    n.say("They sync both ways and converge; `outpost db reidentify` does the same by hand right after a copy.");
    sync(&original, &copy, &batches(100)).await?;
    n.check(
        lacking(&original, &copy).await? == 0 && lacking(&copy, &original).await? == 0,
        "both hold the same revisions",
    );
    let check = copy.check().await?;
    n.check(check.problems.is_empty(), "the copy passes `outpost db check`");
    Ok(())
}
