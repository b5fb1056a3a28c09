//! `outpost serve`: the HTTP API (SPEC §11) over a data directory of SQLite databases, or over the
//! databases of a PostgreSQL (one schema each), which several `outpost serve` processes may share;
//! and the quicksync files published for them (SPEC §9), from `DIR/quicksync` or `--quicksync`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use outpost_api::{Databases, Error, Limits, Result};

/// Where the served databases live.
pub enum Store {
    /// A data directory of SQLite files.
    Data(PathBuf),
    /// A PostgreSQL URL.
    Postgres(String),
}

/// Where a data directory's quicksync files are when `--quicksync` does not say.
pub const QUICKSYNC_DIR: &str = "quicksync";

/// Serve every database of `store` on `listen` until SIGINT or SIGTERM; in-flight requests finish.
/// `quicksync` is the root of the published quicksync files (default: `quicksync/` in a data
/// directory; none on PostgreSQL).
/// `publish` makes the server publish quicksync files into that root by itself.
pub async fn run(
    store: Store,
    listen: SocketAddr,
    quicksync: Option<PathBuf>,
    publish: Option<outpost_server::PublishSchedule>,
    limits: Limits,
) -> Result<()> {
    // Secure default (SPEC §14): without tokens, only loopback addresses are served.
    if !listen.ip().is_loopback() {
        return Err(Error::invalid(format!(
            "refusing to listen on {listen}: without configured access tokens the server binds loopback \
             addresses only (e.g. 127.0.0.1:7070); token authentication arrives with SPEC §14"
        )));
    }
    // Continuous replication jobs are listed in `DIR/replication-jobs.json` and resume at the next
    // start; a server on PostgreSQL has no data directory, so its jobs live as long as the process.
    // Published quicksync files sit beside a data directory's databases; a server on PostgreSQL has no
    // directory of its own, so it serves them only from a directory it is given.
    let quicksync = match &store {
        Store::Data(data) => Some(quicksync.unwrap_or_else(|| data.join(QUICKSYNC_DIR))),
        Store::Postgres(_) => quicksync,
    };
    if publish.is_some() && quicksync.is_none() {
        return Err(Error::invalid("--publish-every needs a quicksync directory: give --quicksync DIR"));
    }
    if publish.as_ref().is_some_and(|p| p.every == 0 || p.snapshot_every == 0) {
        return Err(Error::invalid("--publish-every and --publish-snapshot-every must be at least 1"));
    }
    let (dbs, mut place, jobs): (Arc<dyn Databases>, String, outpost_server::Jobs) = match store {
        Store::Data(data) => {
            let place = format!("data in {}", data.display());
            let jobs = outpost_server::Jobs::persisted(data.join(outpost_server::JOBS_FILE))?;
            (Arc::new(outpost_sqlite::SqliteDatabases::new(&data, limits)?), place, jobs)
        }
        Store::Postgres(url) => {
            let dbs = outpost_postgres::PostgresDatabases::connect_url(&url, limits).await?;
            let place = format!("databases in {}", dbs.shown_url());
            (Arc::new(dbs), place, outpost_server::Jobs::default())
        }
    };
    if let Some(root) = &quicksync {
        // Created now so that a publisher (or an operator) finds where to write.
        std::fs::create_dir_all(root)
            .map_err(|e| Error::unavailable(format!("cannot create quicksync directory {}: {e}", root.display())))?;
        place.push_str(&format!(", quicksync files in {}", root.display()));
        if let Some(p) = &publish {
            place.push_str(&format!(" (published every {} events", p.every));
            if let Some(i) = p.interval {
                place.push_str(&format!(" or {}s", i.as_secs()));
            }
            place.push(')');
        }
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::unavailable(format!("cannot listen on {listen}: {e}")))?;
    let addr = listener.local_addr().map_err(|e| Error::internal(e.to_string()))?;
    // The first line says where the server is: scripts and tests read it (port 0 picks a free port).
    println!("outpost listening on http://{addr} ({place})");
    let mut state = outpost_server::AppState::new(dbs, limits).with_jobs(jobs);
    if let Some(root) = quicksync {
        state = state.with_quicksync(root);
    }
    if let Some(schedule) = publish {
        state = state.with_publishing(schedule);
    }
    outpost_server::serve(listener, state, outpost_server::shutdown_signal())
        .await
        .map_err(|e| Error::unavailable(format!("serving on {addr}: {e}")))?;
    eprintln!("outpost stopped");
    Ok(())
}
