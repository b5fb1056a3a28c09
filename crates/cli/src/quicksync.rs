//! `outpost quicksync publish DB DIR` and `outpost quicksync pull URL DB` (SPEC §9, docs/FORMAT.md):
//! the publisher and the client of outpost-quicksync, with progress bars on a terminal and reports as
//! text or `--json`. A pull ends with a live replication pass from the server for the tail, which
//! starts where the files ended.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::{Args, Subcommand};
use outpost_api::{ErrorKind, Limits, Result};
use outpost_quicksync::{PublishOptions, PublishProgress, PullOptions, PullProgress, PullReport};
use outpost_reconciler::{Options, Report};
use outpost_sqlite::Bootstrap;
use serde::Serialize;

use crate::locator::{LocalEngine, Locator, OpenDatabase};
use crate::output::{self, Bar};
use crate::sync::bytes;

/// Publish a database's history as static files, or bootstrap a database from them.
#[derive(Subcommand, Debug)]
pub enum QuicksyncCommand {
    /// Write what is new in DB into DIR as snapshot and delta files.
    ///
    /// Deltas hold at most --every revision events (contiguous from seq 1), a snapshot when none exists or --snapshot-every events followed the last one, and
    /// manifest.csv (replaced atomically). Files never change once written; running it again writes
    /// only what is new. After a restore from backup the rows whose history the database no longer
    /// has are dropped and those seqs published afresh.
    #[command(
        after_help = "Examples:\n  outpost quicksync publish stock.outpost ./public/stock\n  outpost quicksync \
                            publish stock.outpost ./public/stock --every 50000 --snapshot-every 1000000"
    )]
    Publish(PublishArgs),
    /// Bring DB (created if missing) up to date from files published at URL, then a live pass.
    ///
    /// A database file that does not exist yet is built aside (DB.bootstrapping, its commits synced
    /// once at the end) and appears at DB only once every file is applied: an interrupted pull
    /// leaves no half-made database, and running it again starts over from the downloads kept.
    /// The snapshot for a new database, else the deltas after what DB already holds (walking back past deltas whose chain
    /// hash disagrees, e.g. after the publisher was restored from a backup). Every file is checked
    /// (size, blake3, chain) before anything is applied; downloads resume after an interruption.
    /// Then a live replication pass from the server takes the changes made after the files.
    #[command(
        after_help = "Examples:\n  outpost quicksync pull http://hq:7070/dbs/stock/quicksync/ store.outpost\n  \
                            outpost quicksync pull ./public/stock store.outpost --live http://hq:7070/dbs/stock"
    )]
    Pull(PullArgs),
}

#[derive(Args, Debug)]
pub struct PublishArgs {
    /// The database to publish (a file path, a postgres:// URL with --db, or an http(s)://…/dbs/NAME URL).
    db: String,
    /// The directory to publish into (created if missing).
    dir: PathBuf,
    /// The most revision events in one delta.
    #[arg(long, default_value_t = outpost_quicksync::publish::DEFAULT_EVERY)]
    every: u64,
    /// Write a new snapshot once this many events follow the latest one.
    #[arg(long, default_value_t = outpost_quicksync::publish::DEFAULT_SNAPSHOT_EVERY)]
    snapshot_every: u64,
    /// In a directory with no deltas yet, start the deltas after the snapshot instead of at seq 1:
    /// a large database published for the first time is written once, not twice. Clients whose
    /// history ends before the first delta then take the snapshot.
    #[arg(long)]
    deltas_after_snapshot: bool,
}

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Where the files are: http(s)://host:port/dbs/NAME/quicksync/ (an Outpost server), any
    /// http(s) URL of a published directory, or a local directory.
    url: String,
    /// The database to bring up to date (created if missing).
    db: String,
    /// Where downloads are kept until applied (default: next to a database file, else in the
    /// system's temp dir). An interrupted pull resumes the downloads found there.
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// The live database for the final replication pass (default: the server of an
    /// http(s)://…/dbs/NAME/quicksync/ URL; none for other URLs).
    #[arg(long, value_name = "LOCATOR", conflicts_with = "no_live")]
    live: Option<String>,
    /// Skip the live replication pass.
    #[arg(long)]
    no_live: bool,
    /// Revisions per write while applying (1-10000).
    #[arg(long, default_value_t = 1000)]
    chunk: usize,
}

pub async fn run(cmd: QuicksyncCommand, json: bool) -> Result<()> {
    match cmd {
        QuicksyncCommand::Publish(args) => publish(args, json).await,
        QuicksyncCommand::Pull(args) => pull(args, json).await,
    }
}

async fn publish(args: PublishArgs, json: bool) -> Result<()> {
    let locator: Locator = args.db.parse()?;
    let db = locator.open(Limits::default()).await?;
    let bar = Bar::new(json, &format!("publish {locator}"), "");
    let view = bar.clone();
    let options = PublishOptions {
        every: args.every,
        snapshot_every: args.snapshot_every,
        deltas_after_snapshot: args.deltas_after_snapshot,
        progress: Some(Arc::new(move |p: &PublishProgress| {
            view.show(p.events, p.total, &format!("events, {} written", bytes(p.bytes)));
        })),
        ..PublishOptions::default()
    };
    let report = outpost_quicksync::publish(db.database(), &args.dir, &options).await;
    bar.finish();
    let report = report?;
    if json {
        return output::emit_json(&report);
    }
    let mut text = if report.written.is_empty() {
        format!("{}: nothing new to publish (files reach seq {})", args.dir.display(), report.update_seq)
    } else {
        format!(
            "{}: published {} file(s) up to seq {} ({} events) in {:.1}s",
            args.dir.display(),
            report.written.len(),
            report.update_seq,
            report.events,
            report.duration_ms as f64 / 1000.0
        )
    };
    for f in &report.written {
        text.push_str(&format!("\n  + {} {}..={} {} ({})", f.kind, f.start_seq, f.end_seq, f.file, bytes(f.bytes)));
    }
    for f in &report.dropped {
        text.push_str(&format!("\n  - {} {}..={} {} (dropped)", f.kind, f.start_seq, f.end_seq, f.file));
    }
    output::emit(&text)
}

/// What `pull --json` prints.
#[derive(Serialize)]
struct PullOutput<'a> {
    quicksync: &'a PullReport,
    /// Whether the database file was new and built in bulk under a staging name, moved into place
    /// once every file was applied.
    bootstrapped: bool,
    live: Option<&'a Report>,
    /// The process's peak resident memory, from the OS (Linux), for watching that applying stays
    /// bounded by the chunk, not the file.
    peak_rss_bytes: Option<u64>,
}

async fn pull(args: PullArgs, json: bool) -> Result<()> {
    outpost_api::check_page(args.chunk as u64, "--chunk")?;
    let locator: Locator = args.db.parse()?;
    // A database file that does not exist yet is bootstrapped in bulk: built under a staging name
    // and moved into place once every file is applied (outpost_sqlite::Bootstrap).
    let bootstrap = match &locator {
        Locator::File(path) if !path.exists() => {
            Some(Bootstrap::begin(path, &locator.default_name()?, Limits::default()).await?)
        }
        _ => None,
    };
    let target = match &bootstrap {
        Some(b) => OpenDatabase::local(LocalEngine::Sqlite(b.database())),
        None => open_or_create(&locator).await?,
    };
    let cache = args.cache.clone().unwrap_or_else(|| default_cache(&locator, &args.url));
    let own_cache = args.cache.is_none();
    let files = outpost_quicksync::files::open_with(&args.url, &cache, crate::remote::download_client()?)?;
    let bar = Bar::new(json, &format!("quicksync {} → {locator}", args.url), "");
    let view = bar.clone();
    let started = Instant::now();
    let options = PullOptions {
        // A bootstrap is seen by nobody until it is finished, and thrown away on any error: each file
        // may be verified as it is applied instead of read through once before.
        verify_first: bootstrap.is_none(),
        knowledge: true,
        chunk: args.chunk,
        progress: Some(Arc::new(move |p: &PullProgress| {
            let secs = started.elapsed().as_secs_f64().max(0.001);
            let rate = p.entries as f64 / secs;
            view.show(
                p.entries,
                p.entries_total,
                &format!("entries, {} downloaded, {rate:.0}/s, {} {}", bytes(p.bytes), p.phase, p.file),
            );
        })),
    };
    let report = outpost_quicksync::pull(&*files, target.database(), &options).await;
    bar.finish();
    let report = report?;
    let bootstrapped = bootstrap.is_some();
    let target = match bootstrap {
        Some(bootstrap) => {
            drop(target);
            if !json {
                output::note(&format!("{locator}: building the changes index and syncing the new file"));
            }
            OpenDatabase::local(LocalEngine::Sqlite(Arc::new(bootstrap.finish().await?)))
        }
        None => target,
    };
    // The downloads are applied: a cache of our own has done its job (one the user named is theirs).
    if own_cache && cache.exists() {
        let _ = std::fs::remove_dir_all(&cache);
    }
    for w in &report.warnings {
        output::note(&format!("warning: {w}"));
    }
    let live_locator = if args.no_live { None } else { args.live.clone().or_else(|| live_of(&args.url)) };
    let live = match live_locator {
        Some(live) => {
            let source: Locator = live.parse()?;
            let source = source.open(Limits::default()).await.map_err(|e| e.context("the live database"))?;
            Some(outpost_reconciler::replicate(source.database(), target.database(), &Options::default()).await?)
        }
        None => None,
    };
    if json {
        return output::emit_json(&PullOutput {
            quicksync: &report,
            bootstrapped,
            live: live.as_ref(),
            peak_rss_bytes: output::peak_rss(),
        });
    }
    let start = match report.start {
        outpost_quicksync::PullStart::Snapshot => "from the snapshot",
        outpost_quicksync::PullStart::Delta => "from the deltas after what it held",
        outpost_quicksync::PullStart::FirstDelta => "from the first delta",
        outpost_quicksync::PullStart::UpToDate => "nothing new in the files",
    };
    let mut text = format!(
        "{locator}: {start}; {} file(s) applied, {} entries ({} already held), {} revisions written, {} downloaded, \
         files end at seq {}, {:.1}s",
        report.applied.len(),
        report.entries,
        report.skipped,
        report.written,
        bytes(report.bytes),
        report.end_seq,
        report.duration_ms as f64 / 1000.0
    );
    if bootstrapped {
        text.push_str("\n  a new file, built aside and moved into place once complete");
    }
    if !report.walked_back.is_empty() {
        text.push_str(&format!(
            "\n  walked back over {} delta(s) whose history differs from what {locator} knew",
            report.walked_back.len()
        ));
    }
    if let Some(live) = &live {
        text.push_str(&format!(
            "\n  live pass: from seq {}, {} changes read, {} revisions written",
            live.start.seq, live.progress.changes_read, live.progress.revisions_written
        ));
    }
    output::emit(&text)
}

async fn open_or_create(locator: &Locator) -> Result<OpenDatabase> {
    match locator.open(Limits::default()).await {
        Err(e) if e.kind == ErrorKind::NotFound => locator.create(&locator.default_name()?, Limits::default()).await,
        other => other,
    }
}

/// `<file>.quicksync-cache` beside a database file; elsewhere a directory named after the URL (so a
/// rerun finds its partial downloads) in the user's own cache directory — not the shared temp dir,
/// where another user could create it first and read or redirect the downloads.
fn default_cache(locator: &Locator, url: &str) -> PathBuf {
    match locator {
        Locator::File(path) => {
            let mut name = path.file_name().unwrap_or_default().to_os_string();
            name.push(".quicksync-cache");
            path.with_file_name(name)
        }
        _ => {
            let key = blake3::hash(format!("{locator}\n{url}").as_bytes()).to_hex();
            let home = std::env::var_os("HOME").map(PathBuf::from);
            let cache = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).or(home.map(|h| h.join(".cache")));
            cache.unwrap_or_else(|| PathBuf::from(".")).join("outpost").join(format!("quicksync-{}", &key[..16]))
        }
    }
}

/// The live database behind an Outpost server's quicksync URL (`…/dbs/NAME/quicksync/`).
fn live_of(url: &str) -> Option<String> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return None;
    }
    let trimmed = url.trim_end_matches('/');
    let base = trimmed.strip_suffix("/quicksync")?;
    base.rsplit_once("/dbs/").is_some_and(|(_, name)| !name.is_empty() && !name.contains('/')).then(|| base.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_live_database_of_a_server_url() {
        assert_eq!(live_of("http://hq:7070/dbs/stock/quicksync/").as_deref(), Some("http://hq:7070/dbs/stock"));
        assert_eq!(live_of("https://hq/dbs/stock/quicksync").as_deref(), Some("https://hq/dbs/stock"));
        assert_eq!(live_of("https://cdn.example/stock/"), None);
        assert_eq!(live_of("./public/dbs/stock/quicksync"), None);
        assert_eq!(live_of("http://hq/dbs//quicksync"), None);
    }
}
