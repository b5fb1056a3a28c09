//! The publisher (SPEC §9): writes a database's history into immutable snapshot and delta files and
//! keeps `manifest.csv` true, reading the database through [`ReplicaSource`] only.
//!
//! Every seq is in exactly one delta (deltas are contiguous from seq 1, at most `every` events
//! each) — or, with [`PublishOptions::deltas_after_snapshot`], deltas begin after the first snapshot
//! a directory gets, and the seqs before it are in snapshots only; a snapshot (seqs 1..=s) is added
//! when none exists or `snapshot_every` events have passed since the last one, and replaces it. One
//! publisher writes a directory at a time: a run holds a lock on `<dir>/.publish.lock`, and a second
//! fails at once (Unavailable) instead of racing it. A run first checks each listed file against the database's
//! chain: after a restore from backup (a new epoch) the rows whose history the database no longer
//! has are dropped, and the seqs after the last matching delta are published afresh under new file
//! names. Files are written to a temporary name, synced and renamed before the manifest names them;
//! files no manifest names any more are removed last.

use std::collections::HashSet;
use std::fs;
use std::io::BufWriter;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use outpost_api::{DbInfo, Error, ErrorKind, KnowledgeRow, ReplicaSource, Result, Uuid};
use serde::Serialize;

use crate::format::{Header, Kind, Writer};
use crate::manifest::{is_file_name, sync_dir, Manifest, Row};

/// Events per delta unless told otherwise.
pub const DEFAULT_EVERY: u64 = 10_000;
/// Events after the last snapshot that make a new one worth writing, unless told otherwise.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 100_000;

/// A publish progress callback.
pub type OnPublishProgress = Arc<dyn Fn(&PublishProgress) + Send + Sync>;

/// How a publisher cuts files.
#[derive(Clone)]
pub struct PublishOptions {
    /// The most events a delta holds.
    pub every: u64,
    /// Write a new snapshot once this many events follow the latest one.
    pub snapshot_every: u64,
    /// Events read from the source per call.
    pub page: usize,
    /// zstd compression level.
    pub level: i32,
    /// Called after each page written.
    pub progress: Option<OnPublishProgress>,
    /// A directory that has no deltas yet starts them after its snapshot instead of at seq 1: a
    /// large database published for the first time is written once (in the snapshot), not twice.
    /// Clients whose history stops before the first delta take the snapshot, as new ones do.
    pub deltas_after_snapshot: bool,
}

impl Default for PublishOptions {
    fn default() -> Self {
        PublishOptions {
            every: DEFAULT_EVERY,
            snapshot_every: DEFAULT_SNAPSHOT_EVERY,
            page: 1000,
            level: 3,
            progress: None,
            deltas_after_snapshot: false,
        }
    }
}

/// Where a publish run stands.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PublishProgress {
    /// Events written so far (a seq written to a snapshot and a delta counts twice).
    pub events: u64,
    /// Events this run will write in all.
    pub total: u64,
    /// Compressed bytes of the files finished so far.
    pub bytes: u64,
}

/// What a publish run did.
#[derive(Clone, Debug, Serialize)]
pub struct PublishReport {
    /// The database's name.
    pub db: String,
    /// Its current epoch uuid.
    pub uuid: Uuid,
    /// Its update_seq when the run began (what the files now reach).
    pub update_seq: u64,
    /// Files written by this run, as listed in the manifest.
    pub written: Vec<PublishedFile>,
    /// Files dropped from the manifest: their history is not the database's any more, or a newer
    /// snapshot replaces them.
    pub dropped: Vec<PublishedFile>,
    /// Rows the manifest lists after the run.
    pub listed: usize,
    /// Events written.
    pub events: u64,
    /// Wall time.
    pub duration_ms: u64,
}

/// One manifest row, as a report shows it.
#[derive(Clone, Debug, Serialize)]
pub struct PublishedFile {
    /// `snapshot` or `delta`.
    pub kind: &'static str,
    /// The epoch uuid naming its end.
    pub db: Uuid,
    /// The first seq.
    pub start_seq: u64,
    /// The last seq.
    pub end_seq: u64,
    /// The file name.
    pub file: String,
    /// Its size.
    pub bytes: u64,
}

impl From<&Row> for PublishedFile {
    fn from(r: &Row) -> Self {
        PublishedFile {
            kind: r.kind.as_str(),
            db: r.db,
            start_seq: r.start_seq,
            end_seq: r.end_seq,
            file: r.file.clone(),
            bytes: r.bytes,
        }
    }
}

/// Publish what is new in `source` into `dir` (created if missing).
pub async fn publish(source: &dyn ReplicaSource, dir: &Path, options: &PublishOptions) -> Result<PublishReport> {
    if options.every == 0 || options.snapshot_every == 0 || options.page == 0 {
        return Err(Error::invalid("--every, --snapshot-every and the page size must be at least 1"));
    }
    let started = Instant::now();
    fs::create_dir_all(dir).map_err(|e| Error::internal(format!("creating {}: {e}", dir.display())))?;
    let _lock = lock(dir)?;
    let info = source.info().await?;
    let old = Manifest::read(dir)?.unwrap_or_default();
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for row in old.rows {
        if matches_history(source, &info, &row).await? {
            kept.push(row);
        } else {
            dropped.push(row);
        }
    }
    // Deltas must stay contiguous, from seq 1 or from right after a kept snapshot: a delta after a
    // dropped one is dropped too.
    kept.sort_by_key(|r| (r.kind, r.start_seq));
    let snapshot_end = kept.iter().filter(|r| r.kind == Kind::Snapshot).map(|r| r.end_seq).max();
    let first_delta = kept.iter().find(|r| r.kind == Kind::Delta).map(|r| r.start_seq);
    let mut next = match first_delta {
        Some(start) if snapshot_end.is_some_and(|end| start <= end + 1) => start,
        _ => 1,
    };
    let mut manifest = Manifest::default();
    for row in kept {
        if row.kind == Kind::Delta && row.start_seq != next {
            dropped.push(row);
            continue;
        }
        if row.kind == Kind::Delta {
            next = row.end_seq + 1;
        }
        manifest.rows.push(row);
    }
    let end = info.update_seq;
    let snapshot_due = match manifest.latest_snapshot() {
        None => end > 0,
        Some(s) => end >= s.end_seq.saturating_add(options.snapshot_every),
    };
    if options.deltas_after_snapshot && manifest.deltas().is_empty() {
        // The snapshot this run writes, or the one kept, holds everything up to its end.
        next = if snapshot_due { end + 1 } else { manifest.latest_snapshot().map_or(1, |s| s.end_seq + 1) };
    }
    let mut plan: Vec<(Kind, u64, u64)> = Vec::new();
    let mut start = next;
    while start <= end {
        let stop = end.min(start + options.every - 1);
        plan.push((Kind::Delta, start, stop));
        start = stop + 1;
    }
    if snapshot_due {
        plan.push((Kind::Snapshot, 1, end));
    }
    let total = plan.iter().map(|(_, a, b)| b - a + 1).sum();
    let mut progress = PublishProgress { total, ..PublishProgress::default() };
    let mut written = Vec::new();
    for (kind, start, stop) in plan {
        let row = write_file(source, &info, dir, kind, start, stop, options, &mut progress).await?;
        if kind == Kind::Snapshot {
            // The newest snapshot replaces the older ones: clients only ever take the latest.
            let (old, rest): (Vec<Row>, Vec<Row>) = manifest.rows.drain(..).partition(|r| r.kind == Kind::Snapshot);
            dropped.extend(old);
            manifest.rows = rest;
        }
        written.push(PublishedFile::from(&row));
        manifest.rows.push(row);
    }
    manifest.sort();
    if !written.is_empty() || !dropped.is_empty() {
        manifest.write(dir)?;
    }
    remove_unlisted(dir, &manifest);
    Ok(PublishReport {
        db: info.name.clone(),
        uuid: info.uuid,
        update_seq: end,
        events: progress.events,
        written,
        dropped: dropped.iter().map(PublishedFile::from).collect(),
        listed: manifest.rows.len(),
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// Whether the database's history still holds a listed file's: the same chain at its start and end.
async fn matches_history(source: &dyn ReplicaSource, info: &DbInfo, row: &Row) -> Result<bool> {
    if row.end_seq > info.update_seq {
        return Ok(false);
    }
    let at = |seq| async move {
        match source.chain_hash_at(seq).await {
            Ok(chain) => Ok(Some(chain)),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    };
    Ok(at(row.end_seq).await? == Some(row.end_chain) && at(row.start_seq - 1).await? == Some(row.prev_chain))
}

/// The epoch uuid that names `seq` (SPEC §6: the latest epoch starting at or before it).
fn epoch_naming(info: &DbInfo, seq: u64) -> Uuid {
    info.epochs.iter().rev().find(|e| e.start_seq <= seq).unwrap_or(&info.epochs[0]).uuid
}

/// Write one file and return its manifest row; the file is durable under its final name when this
/// returns.
#[allow(clippy::too_many_arguments)]
async fn write_file(
    source: &dyn ReplicaSource,
    info: &DbInfo,
    dir: &Path,
    kind: Kind,
    start: u64,
    end: u64,
    options: &PublishOptions,
    progress: &mut PublishProgress,
) -> Result<Row> {
    let prev_chain = source.chain_hash_at(start - 1).await?;
    let db = epoch_naming(info, end);
    let header = Header::new(kind, db, start, end, prev_chain);
    let tmp = dir.join(format!(".{}-{start}-{end}.tmp", kind.as_str()));
    let io = |e: std::io::Error| Error::internal(format!("writing {}: {e}", tmp.display()));
    let file = fs::File::create(&tmp).map_err(io)?;
    let mut writer = Writer::new(BufWriter::with_capacity(1 << 20, file), header, options.level)?;
    let mut after = start - 1;
    while after < end {
        let want = options.page.min((end - after) as usize);
        let events = source.events(after, want).await?;
        if events.is_empty() {
            return Err(Error::unavailable(format!("the database gave no events after seq {after} (of {end})")));
        }
        for event in &events {
            writer.event(event)?;
        }
        after = events.last().map_or(after, |e| e.seq);
        progress.events += events.len() as u64;
        if let Some(report) = &options.progress {
            report(progress);
        }
    }
    for row in knowledge_in(source, kind, start, end).await? {
        writer.knowledge(&row)?;
    }
    let (written, buffered) = writer.finish()?;
    let file = buffered.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    drop(file);
    // Named by content: a republished range of another history gets another name, so a file
    // name never changes meaning.
    let name = format!("{}-{start:012}-{end:012}-{}.qs", kind.as_str(), &written.trailer.end_chain.to_string()[..16]);
    debug_assert!(is_file_name(&name));
    fs::rename(&tmp, dir.join(&name)).map_err(io)?;
    sync_dir(dir).map_err(io)?;
    progress.bytes += written.bytes;
    if let Some(report) = &options.progress {
        report(progress);
    }
    Ok(Row {
        kind,
        db,
        start_seq: start,
        end_seq: end,
        prev_chain,
        end_chain: written.trailer.end_chain,
        file: name,
        bytes: written.bytes,
        blake3: written.blake3,
    })
}

/// The knowledge rows a file carries: a snapshot, every row with local seq ≤ its end; a delta, the
/// rows recorded within its seqs (the first delta also those recorded before any event).
async fn knowledge_in(source: &dyn ReplicaSource, kind: Kind, start: u64, end: u64) -> Result<Vec<KnowledgeRow>> {
    let rows = source.knowledge(Some(end)).await?;
    Ok(rows.into_iter().filter(|r| kind == Kind::Snapshot || start == 1 || r.local_seq >= start).collect())
}

/// The name of the lock a publish run holds in its directory (a dot name: never served, never
/// listed, never removed as an unlisted file).
pub const LOCK_FILE: &str = ".publish.lock";

/// Hold `dir`'s publisher lock until the returned file is dropped; Unavailable when another publisher
/// (this process or another) holds it. The lock is the operating system's, so a publisher that dies
/// leaves no stale lock behind.
fn lock(dir: &Path) -> Result<fs::File> {
    let path = dir.join(LOCK_FILE);
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::unavailable(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(Error::unavailable(format!(
            "another publisher is writing {} (it holds {}); one publisher per directory",
            dir.display(),
            path.display()
        ))),
        Err(fs::TryLockError::Error(e)) => Err(Error::unavailable(format!("cannot lock {}: {e}", path.display()))),
    }
}

/// Remove published files (and leftovers of interrupted writes) that the manifest no longer names.
/// A failure only leaves a file behind.
fn remove_unlisted(dir: &Path, manifest: &Manifest) {
    let listed: HashSet<&str> = manifest.rows.iter().map(|r| r.file.as_str()).collect();
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = name.ends_with(".qs") || (name.starts_with('.') && name.ends_with(".tmp"));
        if ours && !listed.contains(name.as_str()) && !name.starts_with(".manifest") {
            if let Err(e) = fs::remove_file(entry.path()) {
                tracing::warn!(file = %entry.path().display(), "could not remove an unlisted quicksync file: {e}");
            }
        }
    }
}
