//! The client (SPEC §9): bring a database up to date from published files, through the api traits.
//!
//! 1. Read the manifest; deltas must follow one another (each `prev_chain` the previous `end_chain`).
//! 2. Walk the deltas from the newest back: a delta is where applying starts when one of the local
//!    database's knowledge rows `(s, h)` with `start_seq - 1 ≤ s ≤ end_seq` agrees with the chain
//!    the delta gives for `s` (its `prev_chain`, its `end_chain`, or — for an `s` inside it — the
//!    chain carried by its entry at `s`, read from the verified file — only for rows about an epoch
//!    the manifest names, as it costs a download; equal chains at a seq prove a shared history
//!    whatever the row's label). A row that disagrees is a
//!    history the files do not share (the publisher was restored from a backup, or this database
//!    learned of another copy): walk on to older deltas.
//! 3. No delta agrees: apply the latest snapshot (to a new or an existing database: revisions
//!    merge), then walk again from what it proves. Without a snapshot, deltas from seq 1 always fit.
//! 4. Each file is fetched, its size and blake3 checked, and read through once to verify its chain
//!    and trailer against the manifest row before anything of it is applied (reading only what the
//!    chain commits to: bodies are skipped as JSON, and re-hashed when applied); then it is applied in
//!    chunks, the last chunk with the knowledge the file proves, in one transaction. Entries at or
//!    below the agreeing `s` are skipped. A file applied twice changes nothing. Into a target nobody
//!    sees until the pull ends and that is thrown away on any error (a bootstrap), the read-through
//!    may be skipped (`PullOptions::verify_first`): the same checks run as the file is applied, and
//!    its knowledge commits only after its verified end.
//!
//! When the local database already knows the files' database beyond the last delta, there is
//! nothing to pull: the live pass that follows takes it from there.

use std::collections::HashSet;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use outpost_api::{ChainHash, Database, Error, KnowledgeRow, KnowledgeUpdate, Result, RevisionData, Uuid};
use serde::Serialize;

use crate::files::Files;
use crate::format::{Item, Reader};
use crate::manifest::{Manifest, Row};

/// A pull progress callback.
pub type OnPullProgress = Arc<dyn Fn(&PullProgress) + Send + Sync>;

/// How a pull applies files.
#[derive(Clone)]
pub struct PullOptions {
    /// Revisions per `put_revisions` call.
    pub chunk: usize,
    /// Called as bytes arrive and entries are applied.
    pub progress: Option<OnPullProgress>,
    /// Read every file through to verify it before applying any (the default), so that damaged or
    /// lying files leave the database untouched. Only for a target nobody sees until the pull has
    /// ended and that is thrown away on any error — a bootstrap — may this be off: each file is then
    /// verified as it is applied (the same checks), and the knowledge it proves is committed only
    /// after its verified end.
    pub verify_first: bool,
    /// Record the knowledge each file proves with its last chunk (the default). Off only for a
    /// restore, which replays a backup of this very database (whose own history the knowledge would
    /// name) and records the backup's knowledge itself once its identity is restored (`backup.rs`).
    pub knowledge: bool,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions { chunk: 1000, progress: None, verify_first: true, knowledge: true }
    }
}

/// Where a pull stands.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PullProgress {
    /// What is happening: `download`, `verify` or `apply`.
    pub phase: &'static str,
    /// The file being worked on.
    pub file: String,
    /// Bytes downloaded so far.
    pub bytes: u64,
    /// Entries (revision events) applied so far, skipped ones included.
    pub entries: u64,
    /// Entries in the files this pull applies, as far as known.
    pub entries_total: u64,
}

/// How the pull started.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PullStart {
    /// From a delta that agrees with the local database's knowledge.
    Delta,
    /// From the snapshot (new database, or no delta agreed).
    Snapshot,
    /// From the first delta (seq 1), no snapshot being published.
    FirstDelta,
    /// Nothing to apply: the database holds everything the files hold.
    UpToDate,
}

/// What a pull did.
#[derive(Clone, Debug, Serialize)]
pub struct PullReport {
    /// Where the files came from.
    pub location: String,
    /// The epoch uuid naming the last seq applied (the files' database).
    pub db: Option<Uuid>,
    /// How the pull started.
    pub start: PullStart,
    /// The files applied, in order.
    pub applied: Vec<String>,
    /// Deltas whose chain disagreed with the local knowledge (walked back over).
    pub walked_back: Vec<String>,
    /// Entries read from applied files (skipped ones included).
    pub entries: u64,
    /// Entries skipped because the database already held them (at or below the agreeing seq).
    pub skipped: u64,
    /// Revision events the local database stored.
    pub written: u64,
    /// Bytes downloaded (0 for a directory).
    pub bytes: u64,
    /// The files' seq and chain hash the database now holds everything up to.
    pub end_seq: u64,
    /// The chain hash at `end_seq`.
    pub end_chain: Option<ChainHash>,
    /// Wall time.
    pub duration_ms: u64,
    /// Things worth knowing.
    pub warnings: Vec<String>,
}

impl PullReport {
    /// The report of a pull that applied nothing (yet).
    pub fn empty(location: &str) -> Self {
        PullReport {
            location: location.to_owned(),
            db: None,
            start: PullStart::UpToDate,
            applied: vec![],
            walked_back: vec![],
            entries: 0,
            skipped: 0,
            written: 0,
            bytes: 0,
            end_seq: 0,
            end_chain: None,
            duration_ms: 0,
            warnings: vec![],
        }
    }
}

/// Where applying starts: a delta's index (the number of deltas when none is left to apply) and the
/// seq up to which its entries are already held.
struct Start {
    index: usize,
    held_upto: u64,
}

struct Pull<'a> {
    files: &'a dyn Files,
    /// The epoch uuids the manifest names (the files' database).
    files_db: HashSet<Uuid>,
    target: &'a dyn Database,
    options: &'a PullOptions,
    progress: PullProgress,
    bytes: Arc<AtomicU64>,
    report: PullReport,
}

/// Bring `target` up to date from `files`.
pub async fn pull(files: &dyn Files, target: &dyn Database, options: &PullOptions) -> Result<PullReport> {
    if options.chunk == 0 {
        return Err(Error::invalid("the chunk size must be at least 1"));
    }
    let started = Instant::now();
    let manifest = Manifest::parse(&files.manifest().await?).map_err(|e| e.context(files.location()))?;
    let deltas: Vec<Row> = manifest.deltas().into_iter().cloned().collect();
    check_contiguous(&deltas)?;
    let mut pull = Pull {
        files,
        files_db: manifest.rows.iter().map(|r| r.db).collect(),
        target,
        options,
        progress: PullProgress::default(),
        bytes: Arc::new(AtomicU64::new(0)),
        report: PullReport::empty(files.location()),
    };
    // Choose every file first, fetch and verify them all, and only then apply: damaged or lying
    // input is refused while the database is still untouched.
    let rows = target.knowledge(None).await?;
    let mut plan: Vec<(Row, u64)> = Vec::new();
    match pull.find_start(&deltas, &rows).await? {
        Some(start) => {
            pull.report.start = if start.index < deltas.len() { PullStart::Delta } else { PullStart::UpToDate };
            plan.extend(following(&deltas, start));
        }
        None if pull.is_ahead(&deltas, &rows) => {}
        None => match manifest.latest_snapshot() {
            Some(snapshot) => {
                pull.report.start = PullStart::Snapshot;
                plan.push((snapshot.clone(), 0));
                // What the snapshot will prove, as the knowledge row it will leave.
                let proven = KnowledgeRow {
                    peer: snapshot.db,
                    peer_seq: snapshot.end_seq,
                    peer_chain: snapshot.end_chain,
                    local_seq: 0,
                    via: None,
                };
                match pull.find_start(&deltas, &[proven]).await? {
                    Some(start) => plan.extend(following(&deltas, start)),
                    None if deltas.last().is_none_or(|d| d.end_seq <= snapshot.end_seq) => {}
                    None => {
                        return Err(Error::corrupt(format!(
                            "{}: the deltas after the snapshot (seq {}) do not continue its history",
                            files.location(),
                            snapshot.end_seq
                        )))
                    }
                }
            }
            None if deltas.first().is_some_and(|d| d.start_seq == 1) => {
                pull.report.start = PullStart::FirstDelta;
                plan.extend(following(&deltas, Start { index: 0, held_upto: 0 }));
            }
            None if deltas.is_empty() => {
                return Err(Error::not_found(format!("{}: nothing is published", files.location())))
            }
            None => {
                return Err(Error::not_found(format!(
                    "{}: no snapshot, and no delta this database can start from (they begin at seq {})",
                    files.location(),
                    deltas[0].start_seq
                )))
            }
        },
    }
    pull.progress.entries_total = plan.iter().map(|(r, _)| r.end_seq - r.start_seq + 1).sum();
    let mut paths = Vec::with_capacity(plan.len());
    for (row, _) in &plan {
        let path = pull.fetch(row).await?;
        if options.verify_first {
            pull.progress.phase = "verify";
            pull.tell();
            // Reading a whole file through is blocking work: off the async workers.
            let (file, checked) = (path.clone(), row.clone());
            tokio::task::spawn_blocking(move || verify(&file, &checked))
                .await
                .map_err(|e| Error::internal(format!("verifying {}: {e}", row.file)))??;
        }
        paths.push(path);
    }
    for ((row, held_upto), path) in plan.iter().zip(paths) {
        pull.apply(row, &path, *held_upto).await?;
    }
    pull.report.bytes = pull.bytes.load(Ordering::Relaxed);
    pull.report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(pull.report)
}

/// The deltas to apply from `start`, each with the seq up to which it is already held.
fn following(deltas: &[Row], start: Start) -> impl Iterator<Item = (Row, u64)> + '_ {
    deltas[start.index..].iter().enumerate().map(move |(i, d)| (d.clone(), if i == 0 { start.held_upto } else { 0 }))
}

/// Deltas must chain: each starts right after the previous one, from its end chain.
fn check_contiguous(deltas: &[Row]) -> Result<()> {
    for pair in deltas.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if b.start_seq != a.end_seq + 1 || b.prev_chain != a.end_chain {
            return Err(Error::corrupt(format!(
                "manifest: delta {} (seqs {}..={}) does not continue {} (seqs {}..={})",
                b.file, b.start_seq, b.end_seq, a.file, a.start_seq, a.end_seq
            )));
        }
    }
    Ok(())
}

impl Pull<'_> {
    fn tell(&self) {
        if let Some(report) = &self.options.progress {
            let mut p = self.progress.clone();
            p.bytes = self.bytes.load(Ordering::Relaxed);
            report(&p);
        }
    }

    /// The newest delta that agrees with one of the database's knowledge rows (SPEC §9 step 2).
    async fn find_start(&mut self, deltas: &[Row], rows: &[KnowledgeRow]) -> Result<Option<Start>> {
        for (index, delta) in deltas.iter().enumerate().rev() {
            let candidates: Vec<&KnowledgeRow> =
                rows.iter().filter(|r| r.peer_seq + 1 >= delta.start_seq && r.peer_seq <= delta.end_seq).collect();
            if candidates.is_empty() {
                continue;
            }
            let mut agreed = None::<u64>;
            let mut inside = Vec::new();
            for row in &candidates {
                let chain = if row.peer_seq + 1 == delta.start_seq {
                    Some(delta.prev_chain)
                } else if row.peer_seq == delta.end_seq {
                    Some(delta.end_chain)
                } else {
                    None
                };
                match chain {
                    Some(chain) if chain == row.peer_chain => agreed = agreed.max(Some(row.peer_seq)),
                    Some(_) => {}
                    // Only rows about the files' database are worth a download to check.
                    None if self.files_db.contains(&row.peer) => inside.push((row.peer_seq, row.peer_chain)),
                    None => {}
                }
            }
            if !inside.is_empty() && agreed.is_none_or(|s| inside.iter().any(|(seq, _)| *seq > s)) {
                // Only the file knows the chain at a seq inside it.
                let path = self.fetch(delta).await?;
                let chains = chains_at(&path, delta, &inside)?;
                for ((seq, chain), found) in inside.iter().zip(chains) {
                    if found == Some(*chain) {
                        agreed = agreed.max(Some(*seq));
                    }
                }
            }
            match agreed {
                // Holding the delta's end, applying starts with the next one (maybe none).
                Some(held_upto) if held_upto == delta.end_seq => {
                    return Ok(Some(Start { index: index + 1, held_upto: 0 }))
                }
                Some(held_upto) => return Ok(Some(Start { index, held_upto })),
                None => {
                    tracing::info!(file = %delta.file, "the delta's history differs from what this database knows; walking back");
                    self.report.walked_back.push(delta.file.clone());
                }
            }
        }
        Ok(None)
    }

    /// Whether the database already knows the files' database beyond the last delta (then only a
    /// live pass can bring anything newer, and it verifies that knowledge itself).
    fn is_ahead(&mut self, deltas: &[Row], rows: &[KnowledgeRow]) -> bool {
        let Some(last) = deltas.last() else { return false };
        let ahead = rows.iter().any(|r| self.files_db.contains(&r.peer) && r.peer_seq > last.end_seq);
        if ahead {
            self.report.warnings.push(format!(
                "this database already knows {} beyond the files' last seq {}: nothing to apply from them",
                last.db, last.end_seq
            ));
        }
        ahead
    }

    async fn fetch(&mut self, row: &Row) -> Result<std::path::PathBuf> {
        self.progress.phase = "download";
        self.progress.file = row.file.clone();
        self.tell();
        let bytes = self.bytes.clone();
        let tell = self.options.progress.clone();
        let snapshot = self.progress.clone();
        let progress = move |n: u64| {
            let total = bytes.fetch_add(n, Ordering::Relaxed) + n;
            if let Some(report) = &tell {
                report(&PullProgress { bytes: total, ..snapshot.clone() });
            }
        };
        self.files
            .fetch(row, &progress)
            .await
            .map_err(|e| e.context(format!("{} from {}", row.file, self.files.location())))
    }

    /// Apply one verified file; entries at or below `held_upto` are skipped. The file is read and
    /// parsed on a blocking thread of its own, a chunk or two ahead of the writes (a bounded queue,
    /// so memory stays flat): parsing the next chunk overlaps storing this one.
    async fn apply(&mut self, row: &Row, path: &Path, held_upto: u64) -> Result<()> {
        self.progress.phase = "apply";
        self.progress.file = row.file.clone();
        // The checks of `verify` again, as the file is read: what it is read as must be what was
        // verified (and without `verify_first`, this is where the file is verified).
        let reader = Reader::new(buffered(path)?).map_err(|e| e.context(&row.file))?;
        check_header(reader.header(), row).map_err(|e| e.context(&row.file))?;
        let (sender, mut chunks) = tokio::sync::mpsc::channel(READ_AHEAD_CHUNKS);
        let size = self.options.chunk;
        let reading = tokio::task::spawn_blocking(move || read_chunks(reader, size, held_upto, &sender));
        let mut last = None;
        while let Some(chunk) = chunks.recv().await {
            let chunk = chunk.map_err(|e| e.context(&row.file))?;
            self.report.entries += chunk.entries;
            self.progress.entries += chunk.entries;
            self.report.skipped += chunk.skipped;
            match chunk.imported {
                None => {
                    self.report.written += self.target.put_events(chunk.revisions, None).await?.written;
                    self.tell();
                }
                Some(imported) => last = Some((chunk.revisions, imported, chunk.end_chain)),
            }
        }
        reading.await.map_err(|e| Error::internal(format!("reading {}: {e}", row.file)))?;
        let (revisions, imported, end_chain) =
            last.ok_or_else(|| Error::internal(format!("reading {} stopped before its end", row.file)))?;
        check_end(end_chain, row).map_err(|e| e.context(&row.file))?;
        // The last chunk commits with what the whole file proves: every event of the files'
        // database up to its end is now held here.
        let update = KnowledgeUpdate { source: row.db, source_seq: row.end_seq, source_chain: row.end_chain, imported };
        let knowledge = self.options.knowledge.then_some(update);
        self.report.written += self.target.put_events(revisions, knowledge).await?.written;
        self.tell();
        self.report.applied.push(row.file.clone());
        self.report.db = Some(row.db);
        self.report.end_seq = row.end_seq;
        self.report.end_chain = Some(row.end_chain);
        Ok(())
    }
}

/// How many parsed chunks may wait for the writer.
const READ_AHEAD_CHUNKS: usize = 2;

/// A chunk of a file's revisions, read ahead of the writer.
struct Chunk {
    revisions: Vec<RevisionData>,
    /// Entries read for it, skipped ones included.
    entries: u64,
    /// Entries skipped (already held).
    skipped: u64,
    /// With the last chunk: the file's knowledge rows.
    imported: Option<Vec<KnowledgeRow>>,
    /// With the last chunk: the chain at the file's verified end.
    end_chain: ChainHash,
}

/// Read a file into chunks of `size` revisions (entries at or below `held_upto` skipped), sending
/// each as it fills and the last with the knowledge rows; stops at the first error (sent on) or when
/// the writer has gone.
fn read_chunks(
    mut reader: Reader<BufReader<File>>,
    size: usize,
    held_upto: u64,
    sender: &tokio::sync::mpsc::Sender<Result<Chunk>>,
) {
    let new = || Chunk {
        revisions: Vec::with_capacity(size),
        entries: 0,
        skipped: 0,
        imported: None,
        end_chain: ChainHash([0; 32]),
    };
    let mut chunk = new();
    let mut imported = Vec::new();
    loop {
        match reader.next_item() {
            Ok(Some(Item::Event(event))) => {
                chunk.entries += 1;
                if event.seq <= held_upto {
                    chunk.skipped += 1;
                    continue;
                }
                chunk.revisions.push(event.revision);
                if chunk.revisions.len() == size
                    && sender.blocking_send(Ok(std::mem::replace(&mut chunk, new()))).is_err()
                {
                    return;
                }
            }
            Ok(Some(Item::Knowledge(k))) => imported.push(k),
            Ok(None) => {
                chunk.imported = Some(imported);
                chunk.end_chain = reader.trailer().expect("a verified end has a trailer").end_chain;
                let _ = sender.blocking_send(Ok(chunk));
                return;
            }
            Err(e) => {
                let _ = sender.blocking_send(Err(e));
                return;
            }
        }
    }
}

fn buffered(path: &Path) -> Result<BufReader<File>> {
    let file = File::open(path).map_err(|e| Error::internal(format!("opening {}: {e}", path.display())))?;
    Ok(BufReader::with_capacity(1 << 20, file))
}

/// Read a fetched file through once: its header must be the row's, its chain must fold from the
/// row's `prev_chain` to its `end_chain`, its trailer must agree. Nothing is applied before this.
fn verify(path: &Path, row: &Row) -> Result<()> {
    let check = || -> Result<()> {
        // Only what the chain commits to is read: the bodies are re-hashed when applied.
        let reader = Reader::keys(buffered(path)?)?;
        check_header(reader.header(), row)?;
        check_end(reader.verify()?.end_chain, row)
    };
    check().map_err(|e| e.context(&row.file))
}

/// A file's header must be what its manifest row lists.
fn check_header(h: &crate::format::Header, row: &Row) -> Result<()> {
    if (h.kind, h.db, h.start_seq, h.end_seq, h.prev_chain)
        != (row.kind, row.db, row.start_seq, row.end_seq, row.prev_chain)
    {
        return Err(Error::corrupt(format!(
            "the file's header ({} of {} seqs {}..={} from chain {}) is not what the manifest lists",
            h.kind.as_str(),
            h.db,
            h.start_seq,
            h.end_seq,
            h.prev_chain
        )));
    }
    Ok(())
}

/// A file's chain, verified to its trailer, must end where its manifest row says.
fn check_end(end_chain: ChainHash, row: &Row) -> Result<()> {
    if end_chain != row.end_chain {
        return Err(Error::corrupt(format!(
            "the file's chain ends at {} but the manifest says {}",
            end_chain, row.end_chain
        )));
    }
    Ok(())
}

/// The chains a verified file carries at `seqs` (inside its range), `None` where it has none.
fn chains_at(path: &Path, row: &Row, seqs: &[(u64, ChainHash)]) -> Result<Vec<Option<ChainHash>>> {
    verify(path, row)?;
    let mut out = vec![None; seqs.len()];
    let mut reader = Reader::keys(buffered(path)?)?;
    while let Some(item) = reader.next_item()? {
        if let Item::Event(e) = item {
            for (i, (seq, _)) in seqs.iter().enumerate() {
                if *seq == e.seq {
                    out[i] = Some(e.chain);
                }
            }
        }
    }
    Ok(out)
}
