//! `outpost serve`: the HTTP API (SPEC §11) over a data directory of SQLite databases, or over the
//! databases of a PostgreSQL (one schema each), which several `outpost serve` processes may share;
//! and the quicksync files published for them (SPEC §9), from `DIR/quicksync` or `--quicksync`.
//! Settings come from the config file (`--config`, SPEC §14), overridden by flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use outpost_api::{Databases, Error, Result};
use outpost_server::ServerConfig;

/// Where the served databases live.
pub enum Store {
    /// A data directory of SQLite files.
    Data(PathBuf),
    /// A PostgreSQL URL.
    Postgres(String),
}

/// Where a data directory's quicksync files are when `--quicksync` does not say.
pub const QUICKSYNC_DIR: &str = "quicksync";
/// The data directory when neither a flag nor the config names one.
pub const DEFAULT_DATA: &str = "outpost-data";
/// The address when neither a flag nor the config names one.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";

/// What the command line said (each overriding the config file).
pub struct Flags {
    pub config: Option<PathBuf>,
    pub compact_every: Option<std::time::Duration>,
    pub data: Option<PathBuf>,
    pub postgres: Option<String>,
    pub listen: Option<SocketAddr>,
    pub quicksync: Option<PathBuf>,
}

/// Serve every database of the configured store until SIGINT or SIGTERM; in-flight requests finish.
/// `publish` makes the server publish quicksync files into its quicksync root by itself.
pub async fn run(flags: Flags, publish: Option<outpost_server::PublishSchedule>) -> Result<()> {
    let config = match &flags.config {
        Some(path) => ServerConfig::load(path)?,
        None => ServerConfig::default(),
    };
    let listen = match flags.listen.or(config.listen) {
        Some(listen) => listen,
        None => DEFAULT_LISTEN.parse().map_err(|e| Error::internal(format!("default address: {e}")))?,
    };
    // A flag names the store whichever the file names.
    let store = match (flags.postgres, flags.data, config.postgres.clone(), config.data.clone()) {
        (Some(url), _, _, _) => Store::Postgres(url),
        (None, Some(data), _, _) => Store::Data(data),
        (None, None, Some(url), _) => Store::Postgres(url),
        (None, None, None, data) => Store::Data(data.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA))),
    };
    let access = config.access()?;
    let tls = config.tls()?;
    let limits = config.limits()?;
    let connections = config.connection_limits()?;
    if let Some(warning) = outpost_server::check_exposure(listen, &access, tls.is_some(), config.allow_plain_http)? {
        tracing::warn!("{warning}");
        eprintln!("warning: {warning}");
    }
    let peers = config.peers()?;
    // Continuous replication jobs are listed in `DIR/replication-jobs.json` and resume at the next
    // start; a server on PostgreSQL has no data directory, so its jobs live as long as the process.
    // Published quicksync files sit beside a data directory's databases; a server on PostgreSQL has no
    // directory of its own, so it serves them only from a directory it is given.
    let quicksync = flags.quicksync.or(config.quicksync.clone());
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
            let dbs = outpost_sqlite::SqliteDatabases::new(&data, limits)?;
            warn_if_shared(&data);
            let place = format!("data in {}", data.display());
            let jobs = outpost_server::Jobs::persisted(data.join(outpost_server::JOBS_FILE))?;
            (Arc::new(dbs), place, jobs)
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
    match config.tokens.len() {
        0 => place.push_str(", no access tokens: loopback callers only"),
        1 => place.push_str(", 1 access token"),
        n => place.push_str(&format!(", {n} access tokens")),
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::unavailable(format!("cannot listen on {listen}: {e}")))?;
    let addr = listener.local_addr().map_err(|e| Error::internal(e.to_string()))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    // The first line says where the server is: scripts and tests read it (port 0 picks a free port).
    println!("outpost listening on {scheme}://{addr} ({place})");
    let mut state = outpost_server::AppState::new(dbs, limits)
        .with_access(access)
        .with_connection_limits(connections)
        .with_jobs(jobs.with_peers(peers))
        .with_compaction(flags.compact_every);
    if let Some(root) = quicksync {
        state = state.with_quicksync(root);
    }
    if let Some(schedule) = publish {
        state = state.with_publishing(schedule);
    }
    outpost_server::serve_with(listener, tls, state, outpost_server::shutdown_signal())
        .await
        .map_err(|e| Error::unavailable(format!("serving on {addr}: {e}")))?;
    eprintln!("outpost stopped");
    Ok(())
}

/// Warn when the data directory (made 0700 when this server creates it) lets other users in.
fn warn_if_shared(data: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if std::fs::metadata(data).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
            let warning =
                format!("the data directory {} is open to other users of this machine; `chmod 700` it", data.display());
            tracing::warn!("{warning}");
            eprintln!("warning: {warning}");
        }
    }
}
