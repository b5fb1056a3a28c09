//! Scene 2: quicksync files bootstrap a new peer and bring a long-offline one up to date; after the
//! publisher is restored from an older backup, the files are republished and a client walks back to
//! the history both still share.

use std::path::Path;

use outpost_api::{InfoReader, Limits, ReconcilePolicy, ReplicaSource, Result};
use outpost_quicksync::{open_files, publish, pull, PublishOptions, PullOptions, PullReport, PullStart};
use outpost_reconciler::{replicate, Options};

use super::{lacking, table, write_records, Narrator};

async fn pull_from(files: &Path, db: &dyn outpost_api::Database) -> Result<PullReport> {
    let source = open_files(&files.display().to_string(), &files.join(".cache"))?;
    pull(&*source, db, &PullOptions::default()).await
}

fn files_of(report: &PullReport) -> String {
    report.applied.iter().map(|f| f.split('-').next().unwrap_or_default()).collect::<Vec<_>>().join(", ")
}

pub(super) async fn bootstrap_and_walk_back(n: &mut Narrator) -> Result<()> {
    n.scene(
        "Quicksync: new and long-offline peers catch up from files",
        "Replicating a large database record by record is slow. The publisher writes its history as a \
         few compressed files — a snapshot and deltas — that any web server or directory can hold; a \
         peer downloads the ones it lacks, verifies every one against the chain hash, and applies them.",
    );
    let hq = n.db("hq").await?;
    table(&hq, "parts", ReconcilePolicy::KeepConflicts).await?;
    write_records(&hq, "parts", "p", 0..2000, "v1").await?;
    let files = n.path("files");
    let every = PublishOptions { every: 500, ..PublishOptions::default() };

    n.say("The headquarters database (2,000 parts) publishes its files into a directory.");
    let published = publish(&hq, &files, &every).await?;
    let snapshots = published.written.iter().filter(|f| f.kind == "snapshot").count();
    n.show("files written", format!("{snapshots} snapshot, {} deltas", published.written.len() - snapshots));
    n.show("last seq", format!("{} (2,000 parts, and the table's definition)", published.update_seq));
    let backup = n.path("hq-backup.outpost");
    outpost_sqlite::backup(&hq, &backup).await?;
    let at_backup = hq.info().await?.update_seq;

    n.say("A new peer, the depot, starts empty and pulls: it takes the snapshot, then any delta after it.");
    let depot = n.db("depot").await?;
    let report = pull_from(&files, &depot).await?;
    n.show("files applied", files_of(&report));
    n.show("revisions written", report.written);
    n.check(report.start == PullStart::Snapshot, "an empty peer starts from the snapshot");
    n.check(lacking(&hq, &depot).await? == 0, "the depot holds every revision headquarters holds");

    n.say(
        "A delivery van pulled the same files, then spent weeks offline while headquarters updated 300 \
         parts and added 100, and published again. Back online, the van downloads only the new deltas.",
    );
    let van = n.db("van").await?;
    pull_from(&files, &van).await?;
    write_records(&hq, "parts", "p", 500..800, "v2").await?;
    write_records(&hq, "parts", "p", 2000..2100, "v1").await?;
    publish(&hq, &files, &every).await?;
    let report = pull_from(&files, &van).await?;
    n.show("files applied", files_of(&report));
    n.show("revisions applied", report.entries);
    n.check(report.start == PullStart::Delta && report.entries == 400, "only the 400 new revisions travel");
    n.check(lacking(&hq, &van).await? == 0, "the van is up to date");

    n.say(
        "Headquarters' disk fails. It is restored from last night's backup: the 400 later writes are \
         gone from it, and it begins a new epoch (a new uuid from the next seq), so no peer mistakes its \
         new seqs for the lost ones. It writes 500 new parts and republishes: the files of the lost \
         history are dropped, and new ones cover the same seqs with another history.",
    );
    drop(hq);
    let (hq, epoch) = outpost_sqlite::restore(&backup, &n.path("hq-restored.outpost"), "hq", Limits::default()).await?;
    write_records(&hq, "parts", "q", 0..500, "after the restore").await?;
    let republished = publish(&hq, &files, &every).await?;
    n.show("the new epoch starts at seq", epoch.start_seq);
    n.show("files dropped", republished.dropped.len());
    n.check(epoch.start_seq == at_backup + 1, "the new epoch begins right after the backup's last seq");

    n.say(
        "The van pulls. It knows headquarters up to seq 2401, but the chain hash the files give for seq \
         2401 is not the one it knows: that seq now names other history. So it walks back to the last \
         seq whose chain hash both agree on, 2001 (the backup's end), and applies only what follows.",
    );
    let known = van.knowledge(None).await?.iter().filter(|k| k.peer != epoch.uuid).map(|k| k.peer_seq).max();
    n.show("the van had read headquarters up to seq", known.unwrap_or(0));
    n.check(known == Some(2401), "past seq 2001, where the restored history parts from the one the van read");
    let report = pull_from(&files, &van).await?;
    n.show("files applied", files_of(&report));
    n.show(
        "revisions applied",
        format!("{}, seqs {}-{}", report.entries, report.end_seq + 1 - report.entries, report.end_seq),
    );
    n.check(report.start == PullStart::Delta && report.entries == 500, "only the 500 revisions after seq 2001 travel");
    n.check(lacking(&hq, &van).await? == 0, "the van holds everything the restored headquarters holds");
    let lost = lacking(&van, &hq).await?;
    n.show("revisions the van holds that headquarters lost", lost);
    n.check(lost == 400, "the van still has the 400 writes the restore lost");

    n.say("The van syncs back to headquarters: the lost writes come home.");
    replicate(&van, &hq, &Options::default()).await?;
    n.check(lacking(&van, &hq).await? == 0, "headquarters holds every revision again");
    Ok(())
}
