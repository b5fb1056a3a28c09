//! Publishing quicksync files on a schedule (SPEC §9): a background task that, for every database the
//! server hosts, runs `outpost_quicksync::publish` into `<root>/<db>/` once enough revision events
//! are unpublished, or when the interval has passed and anything is new. What to write is the
//! quicksync crate's decision; this module only says when.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use outpost_api::{Databases, Result};
use outpost_quicksync::{Manifest, PublishOptions};
use tokio::sync::watch;

/// How often the databases are looked at.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// When the server publishes by itself.
#[derive(Clone, Debug)]
pub struct PublishSchedule {
    /// Publish once this many revision events are unpublished; also the most events in a delta.
    pub every: u64,
    /// Also publish whatever is new at least this often (`None`: by count only).
    pub interval: Option<Duration>,
    /// A new snapshot once this many events follow the latest one.
    pub snapshot_every: u64,
    /// A database's first publish writes only its snapshot, and deltas start after it
    /// (`PublishOptions::deltas_after_snapshot`): its history so far is written once, not twice.
    pub deltas_after_snapshot: bool,
}

/// The scheduled publisher: started by [`crate::serve`] when the state has a schedule; stops when
/// its stop signal is raised (between databases, never mid-file: a file is complete or absent).
pub(crate) struct Publisher {
    dbs: Arc<dyn Databases>,
    root: PathBuf,
    schedule: PublishSchedule,
    last: HashMap<String, Instant>,
}

impl Publisher {
    pub(crate) fn spawn(
        dbs: Arc<dyn Databases>,
        root: PathBuf,
        schedule: PublishSchedule,
        mut stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let mut publisher = Publisher { dbs, root, schedule, last: HashMap::new() };
        let runtime = tokio::runtime::Handle::current();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    () = tokio::time::sleep(CHECK_EVERY) => {}
                }
                // A round compresses, hashes and syncs files: it runs on the blocking pool, so it never
                // holds an async worker that requests need.
                let (stop_seen, runtime_seen) = (stop.clone(), runtime.clone());
                let round = tokio::task::spawn_blocking(move || {
                    let result = runtime_seen.block_on(publisher.round(&stop_seen));
                    (publisher, result)
                });
                match round.await {
                    Ok((back, result)) => {
                        publisher = back;
                        if let Err(e) = result {
                            tracing::warn!("quicksync publishing: {e}");
                        }
                    }
                    Err(e) => {
                        tracing::error!("quicksync publishing stopped: {e}");
                        return;
                    }
                }
            }
        })
    }

    /// Look at every database once; publish those that are due.
    async fn round(&mut self, stop: &watch::Receiver<bool>) -> Result<()> {
        for name in self.dbs.list().await? {
            if *stop.borrow() {
                return Ok(());
            }
            if let Err(e) = self.maybe_publish(&name).await {
                tracing::warn!(db = %name, "quicksync publishing: {e}");
            }
        }
        Ok(())
    }

    async fn maybe_publish(&mut self, name: &str) -> Result<()> {
        let db = self.dbs.open(name).await?;
        let update_seq = db.info().await?.update_seq;
        let dir = self.root.join(name);
        let published = Manifest::read(&dir)?.and_then(|m| m.deltas().last().map(|d| d.end_seq)).unwrap_or(0);
        let unpublished = update_seq.saturating_sub(published);
        let since = *self.last.entry(name.to_owned()).or_insert_with(Instant::now);
        let by_time = self.schedule.interval.is_some_and(|i| since.elapsed() >= i);
        // A database whose history went back below the files (a restore) is published too: the
        // publisher drops what is no longer true.
        let due = unpublished >= self.schedule.every || (by_time && unpublished > 0) || update_seq < published;
        if !due {
            return Ok(());
        }
        let options = PublishOptions {
            every: self.schedule.every,
            snapshot_every: self.schedule.snapshot_every,
            deltas_after_snapshot: self.schedule.deltas_after_snapshot,
            ..PublishOptions::default()
        };
        let report = outpost_quicksync::publish(&*db, &dir, &options).await?;
        self.last.insert(name.to_owned(), Instant::now());
        tracing::info!(db = %name, files = report.written.len(), dropped = report.dropped.len(),
            update_seq = report.update_seq, "published quicksync files");
        Ok(())
    }
}
