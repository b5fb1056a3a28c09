//! Server-run replication jobs (`POST /replicate`, SPEC §11): each job runs the reconciler on a
//! tokio task between two databases — hosted here or reached by URL — once, or continuously until
//! cancelled. [`Jobs`] owns them: the running ones, a bounded history of finished ones, and for a
//! server with a jobs file, the definitions of the running continuous jobs, which survive a restart.
//!
//! Life of a job: `running` → `completed` | `failed` | `cancelled`. A continuous job stays in the
//! jobs file while it runs and when the server's shutdown stops it (so the next start resumes it);
//! it leaves the file when it is cancelled (`DELETE`) or fails.

mod file;
mod peers;
mod run;
pub(crate) mod spec;

pub use peers::{PeerConfig, Peers};

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use outpost_api::{Databases, Error, ErrorKind, Result, Timestamp};
use outpost_reconciler::{CancellationToken, Progress, Report};
use serde::Serialize;
use tokio::sync::watch;
use utoipa::ToSchema;

use self::run::Side;
use self::spec::JobSpec;

/// The jobs file's name in `outpost serve`'s data directory.
pub const JOBS_FILE: &str = "replication-jobs.json";
/// Most jobs running at once; more are refused (503) until some finish.
pub const MAX_RUNNING: usize = 100;
/// Finished jobs kept for `GET /replicate/jobs`, the most recent ones.
pub const MAX_FINISHED: usize = 100;

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Replicating (or, continuous, following the source).
    Running,
    /// A one-shot job that finished its pass(es).
    Completed,
    /// Stopped by an error that retries did not overcome (`error` says which).
    Failed,
    /// Stopped by `DELETE /replicate/jobs/{id}` or the server's shutdown.
    Cancelled,
}

impl JobState {
    /// The state as the API writes it: `running`, `completed`, `failed` or `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Every state.
    pub const ALL: [JobState; 4] = [JobState::Running, JobState::Completed, JobState::Failed, JobState::Cancelled];
}

/// A replication job as `/replicate` answers it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Job {
    /// The job's id (a UUID v7; a resumed continuous job keeps its id).
    pub id: String,
    /// A database name of this server, or `http(s)://host:port/dbs/NAME`.
    pub source: String,
    /// A database name of this server, or `http(s)://host:port/dbs/NAME`.
    pub target: String,
    /// Follows the source until cancelled.
    pub continuous: bool,
    /// Also replicates target → source.
    pub bidirectional: bool,
    /// Only these tables; `null` for all.
    pub tables: Option<Vec<String>>,
    /// Changes per page and most revisions per write.
    pub batch_size: usize,
    /// Whether the target is created when missing.
    pub create_target: bool,
    /// Where the job is.
    pub state: JobState,
    /// When the job started (this server run, for a resumed job).
    pub started_at: Timestamp,
    /// When the job stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// The pass report of a finished one-way job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<Report>,
    /// The reports of a finished bidirectional job: source → target, then target → source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reports: Option<Vec<Report>>,
    /// Why a failed job failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Error>,
    /// Counters of source → target so far.
    pub progress: Progress,
    /// Counters of target → source so far (bidirectional jobs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reverse_progress: Option<Progress>,
}

/// The replication jobs of a server. Cloning is cheap and shares them.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
    /// The remote ends jobs may reach.
    peers: Peers,
}

struct Inner {
    /// Where the running continuous jobs are listed, if anywhere.
    file: Option<PathBuf>,
    table: Mutex<Table>,
    /// Held while the jobs file is written, so that writes land in the order their lists were taken.
    writer: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Table {
    /// Oldest first.
    running: Vec<Arc<Entry>>,
    /// Newest first, at most MAX_FINISHED.
    finished: VecDeque<Arc<Entry>>,
    /// What the jobs file lists.
    saved: Vec<JobSpec>,
    /// Read from the jobs file, waiting for `resume`.
    to_resume: Vec<JobSpec>,
    /// The server is shutting down: no new jobs.
    stopping: bool,
}

/// One job: its definition, its cancellation, and how it stands.
pub(crate) struct Entry {
    spec: JobSpec,
    started_at: Timestamp,
    cancel: CancellationToken,
    /// Cancelled by a client (not by the server's shutdown).
    by_user: AtomicBool,
    status: Mutex<Status>,
    /// Becomes true once the job has stopped and its end is recorded.
    done: watch::Sender<bool>,
}

struct Status {
    state: JobState,
    finished_at: Option<Timestamp>,
    progress: Progress,
    reverse_progress: Option<Progress>,
    reports: Vec<Report>,
    error: Option<Error>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Default for Jobs {
    fn default() -> Self {
        Jobs::in_memory()
    }
}

impl Jobs {
    /// Jobs kept in memory only: continuous jobs end with the server.
    pub fn in_memory() -> Self {
        Jobs::with(None, Vec::new())
    }

    /// Jobs whose running continuous ones are listed in `path` (created when needed). The jobs it
    /// lists now are started by [`Jobs::resume`] (which `serve` calls). A file that cannot be read or
    /// parsed is an error, so that no job definition is silently dropped.
    pub fn persisted(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let specs = file::load(&path)?;
        Ok(Jobs::with(Some(path), specs))
    }

    fn with(file: Option<PathBuf>, specs: Vec<JobSpec>) -> Self {
        let table = Table { saved: specs.clone(), to_resume: specs, ..Table::default() };
        let inner = Inner { file, table: Mutex::new(table), writer: tokio::sync::Mutex::new(()) };
        Jobs { inner: Arc::new(inner), peers: Peers::none() }
    }

    /// The same jobs, reaching the remote ends `peers` lists (and no others).
    pub fn with_peers(self, peers: Peers) -> Self {
        Jobs { peers, ..self }
    }

    /// The jobs file, if there is one.
    pub fn file(&self) -> Option<&Path> {
        self.inner.file.as_deref()
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        lock(&self.inner.table)
    }

    /// Start the jobs read from the jobs file (once; later calls find nothing to do). A job that
    /// cannot start (its local database is gone, its definition is invalid) is listed as failed and
    /// leaves the file.
    pub async fn resume(&self, dbs: &Arc<dyn Databases>) {
        let specs = std::mem::take(&mut self.table().to_resume);
        for spec in specs {
            let id = spec.id.clone();
            match self.launch(dbs, spec.clone(), true).await {
                Ok(_) => tracing::info!(job = %id, "resumed replication job"),
                // Left in the file for the next start.
                Err(_) if self.table().stopping => {}
                Err(e) => {
                    tracing::error!(job = %id, error = %e, "cannot resume replication job; it leaves the jobs file");
                    let entry = Arc::new(Entry::new(spec));
                    self.finish(&entry, Err(e)).await;
                }
            }
        }
    }

    /// Start a new job. InvalidInput for a bad definition, NotFound for a missing local database (a
    /// missing target is created when the definition says so), Unavailable while shutting down or
    /// when too many jobs run. A continuous job is in the jobs file before this returns.
    pub(crate) async fn start(&self, dbs: &Arc<dyn Databases>, spec: JobSpec) -> Result<Arc<Entry>> {
        self.launch(dbs, spec, false).await
    }

    async fn launch(&self, dbs: &Arc<dyn Databases>, spec: JobSpec, resumed: bool) -> Result<Arc<Entry>> {
        let (source, target) = spec.endpoints()?;
        // Checked before a target is created for a job that could not run, and again when registering.
        self.table().admit()?;
        // Both ends are checked before either is opened: no connection to a URL that is not a peer.
        let source = run::prepare(&self.peers, source, "source")?;
        let target = run::prepare(&self.peers, target, "target")?;
        let source = run::open(dbs, source, false, "source").await?;
        let target = run::open(dbs, target, spec.create_target, "target").await?;
        let entry = Arc::new(Entry::new(spec));
        let save = {
            let mut table = self.table();
            table.admit()?;
            table.running.push(entry.clone());
            let save = entry.spec.continuous && !resumed && self.inner.file.is_some();
            if save {
                table.saved.push(entry.spec.clone());
            }
            save
        };
        if save {
            if let Err(e) = self.save().await {
                let mut table = self.table();
                table.running.retain(|e| !Arc::ptr_eq(e, &entry));
                table.saved.retain(|s| s.id != entry.spec.id);
                return Err(e);
            }
        }
        let spec = &entry.spec;
        tracing::info!(job = %spec.id, source = %spec.source, target = %spec.target, continuous = spec.continuous,
            bidirectional = spec.bidirectional, "replication job started");
        tokio::spawn(self.clone().run(entry.clone(), source, target));
        Ok(entry)
    }

    /// The job's task: run it (a panic is a failure, not a job stuck in `running`), then record its end.
    async fn run(self, entry: Arc<Entry>, source: Side, target: Side) {
        let job = entry.clone();
        let outcome = tokio::spawn(async move { run::run(&job, source, target).await })
            .await
            .unwrap_or_else(|e| Err(Error::internal(format!("the replication task ended abnormally: {e}"))));
        self.finish(&entry, outcome).await;
    }

    /// Record how a job ended, move it to the history, drop it from the jobs file unless the
    /// server's shutdown stopped it, then wake whoever waits for it.
    async fn finish(&self, entry: &Arc<Entry>, outcome: Result<Vec<Report>>) {
        let cancelled = entry.cancel.is_cancelled();
        let state = match &outcome {
            Ok(_) if cancelled => JobState::Cancelled,
            Ok(_) => JobState::Completed,
            Err(_) => JobState::Failed,
        };
        let id = &entry.spec.id;
        match &outcome {
            Err(e) => tracing::warn!(job = %id, error = %e, "replication job failed"),
            Ok(_) => tracing::info!(job = %id, ?state, "replication job finished"),
        }
        {
            let mut status = lock(&entry.status);
            status.state = state;
            status.finished_at = Some(Timestamp::now());
            match outcome {
                Ok(reports) => status.reports = reports,
                Err(e) => status.error = Some(shown(e)),
            }
        }
        let by_shutdown = state == JobState::Cancelled && !entry.by_user.load(Ordering::SeqCst);
        let unsaved = {
            let mut table = self.table();
            table.running.retain(|e| !Arc::ptr_eq(e, entry));
            table.finished.push_front(entry.clone());
            table.finished.truncate(MAX_FINISHED);
            let before = table.saved.len();
            if !by_shutdown {
                table.saved.retain(|s| s.id != *id);
            }
            table.saved.len() != before
        };
        if unsaved {
            if let Err(e) = self.save().await {
                tracing::error!(job = %id, error = %e, "the finished job is still listed in the jobs file");
            }
        }
        entry.done.send_replace(true);
    }

    /// Write the jobs file from the current list.
    async fn save(&self) -> Result<()> {
        let Some(path) = self.inner.file.clone() else { return Ok(()) };
        let _writing = self.inner.writer.lock().await;
        let jobs = self.table().saved.clone();
        let shown = path.display().to_string();
        tokio::task::spawn_blocking(move || file::store(&path, &jobs))
            .await
            .map_err(|e| Error::internal(format!("writing the replication jobs file {shown}: {e}")))?
            .map_err(|e| Error::unavailable(format!("cannot write the replication jobs file {shown}: {e}")))
    }

    fn find(&self, id: &str) -> Option<Arc<Entry>> {
        let table = self.table();
        table.running.iter().chain(table.finished.iter()).find(|e| e.spec.id == id).cloned()
    }

    /// The job `id`, running or among the recent finished ones.
    pub(crate) fn get(&self, id: &str) -> Result<Job> {
        self.find(id).map(|e| e.view()).ok_or_else(|| not_found(id))
    }

    /// The running jobs (newest first), then the recent finished ones (newest first).
    pub(crate) fn list(&self) -> Vec<Job> {
        let table = self.table();
        table.running.iter().rev().chain(table.finished.iter()).map(|e| e.view()).collect()
    }

    /// Cancel the job `id` and wait up to `patience` for it to stop; the job as it then stands (a
    /// job that had finished is answered unchanged).
    pub(crate) async fn cancel(&self, id: &str, patience: Duration) -> Result<Job> {
        let entry = self.find(id).ok_or_else(|| not_found(id))?;
        if !*entry.done.borrow() {
            entry.by_user.store(true, Ordering::SeqCst);
            entry.cancel.cancel();
            let _ = tokio::time::timeout(patience, entry.finished()).await;
        }
        Ok(entry.view())
    }

    /// Begin shutting down: refuse new jobs from now on and cancel the running ones. Continuous jobs
    /// stay in the jobs file, so the next start (with new `Jobs`) resumes them.
    pub fn stop(&self) {
        let running = {
            let mut table = self.table();
            table.stopping = true;
            table.running.clone()
        };
        for entry in running {
            entry.cancel.cancel();
        }
    }

    /// Wait until the running jobs have stopped, at most `grace`.
    pub async fn stopped(&self, grace: Duration) {
        let running = self.table().running.clone();
        let all = async {
            for entry in &running {
                entry.finished().await;
            }
        };
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!(?grace, "replication jobs did not stop in time; they end with the process");
        }
    }
}

impl Table {
    /// Whether one more job may start.
    fn admit(&self) -> Result<()> {
        if self.stopping {
            return Err(Error::unavailable("the server is shutting down; it starts no replication jobs"));
        }
        if self.running.len() >= MAX_RUNNING {
            return Err(Error::unavailable(format!(
                "{MAX_RUNNING} replication jobs are running already; cancel one or wait for one to finish"
            )));
        }
        Ok(())
    }
}

pub(crate) fn not_found(id: &str) -> Error {
    Error::not_found(format!("no replication job {id:?} (finished jobs are kept for a while only)"))
}

/// A job's error as clients see it: a client error (a database missing, a peer refusing a token) as
/// it is; a server-side failure (a peer or storage unreachable, damage, a bug) by its kind only, since
/// its detail (addresses, paths, OS errors) is for the log, where [`Jobs::finish`] wrote it.
fn shown(error: Error) -> Error {
    if error.kind.http_status() < 500 {
        return error;
    }
    let message = match error.kind {
        ErrorKind::Unavailable => "a peer or this server's storage was unavailable; start the job again later (the server log has the details)",
        _ => "the job failed inside the server; the server log has the details",
    };
    Error::new(error.kind, message)
}

impl Entry {
    fn new(spec: JobSpec) -> Self {
        let status = Status {
            state: JobState::Running,
            finished_at: None,
            progress: Progress::default(),
            reverse_progress: spec.bidirectional.then(Progress::default),
            reports: Vec::new(),
            error: None,
        };
        Entry {
            spec,
            started_at: Timestamp::now(),
            cancel: CancellationToken::new(),
            by_user: AtomicBool::new(false),
            status: Mutex::new(status),
            done: watch::channel(false).0,
        }
    }

    fn record_progress(&self, reverse: bool, progress: Progress) {
        let mut status = lock(&self.status);
        if reverse {
            status.reverse_progress = Some(progress);
        } else {
            status.progress = progress;
        }
    }

    /// Resolves once the job has stopped and its end is recorded.
    pub(crate) async fn finished(&self) -> Job {
        let mut done = self.done.subscribe();
        // The sender lives as long as the entry: the wait ends only by the job's end.
        let _ = done.wait_for(|done| *done).await;
        self.view()
    }

    /// The job as clients see it.
    pub(crate) fn view(&self) -> Job {
        let status = lock(&self.status);
        let spec = &self.spec;
        let finished = !status.reports.is_empty();
        Job {
            id: spec.id.clone(),
            source: spec.source.clone(),
            target: spec.target.clone(),
            continuous: spec.continuous,
            bidirectional: spec.bidirectional,
            tables: spec.tables.clone(),
            batch_size: spec.batch_size,
            create_target: spec.create_target,
            state: status.state,
            started_at: self.started_at,
            finished_at: status.finished_at,
            report: (finished && !spec.bidirectional).then(|| status.reports[0].clone()),
            reports: (finished && spec.bidirectional).then(|| status.reports.clone()),
            error: status.error.clone(),
            progress: status.progress,
            reverse_progress: status.reverse_progress,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_states_name_is_the_one_the_api_writes() {
        for state in JobState::ALL {
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        }
    }

    #[test]
    fn a_job_error_shows_no_addresses_paths_or_os_texts() {
        let hidden = [
            Error::unavailable("postgres at postgres://outpost@10.0.0.7:5432/outpost is unavailable: Connection refused (os error 111)"),
            Error::unavailable("cannot read /var/lib/outpost/data: Permission denied (os error 13)"),
            Error::internal("sqlite: disk I/O error at /var/lib/outpost/data/field.outpost"),
        ];
        for error in hidden {
            let kind = error.kind;
            let shown = shown(error);
            assert_eq!(shown.kind, kind);
            for secret in ["10.0.0.7", "5432", "os error", "/var/lib", "postgres://"] {
                assert!(!shown.message.contains(secret), "{kind:?}: {}", shown.message);
            }
        }
        // A client error is what the caller needs to fix: shown as it is.
        let missing = Error::not_found("database \"field\" does not exist");
        assert_eq!(shown(missing.clone()), missing);
    }
}
