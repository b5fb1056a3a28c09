//! `outpost serve`: the HTTP API (SPEC §11) over a data directory of SQLite databases, or over the
//! databases of a PostgreSQL (one schema each), which several `outpost serve` processes may share.

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

/// Serve every database of `store` on `listen` until SIGINT or SIGTERM; in-flight requests finish.
pub async fn run(store: Store, listen: SocketAddr, limits: Limits) -> Result<()> {
    // Secure default (SPEC §14): without tokens, only loopback addresses are served.
    if !listen.ip().is_loopback() {
        return Err(Error::invalid(format!(
            "refusing to listen on {listen}: without configured access tokens the server binds loopback \
             addresses only (e.g. 127.0.0.1:7070); token authentication arrives with SPEC §14"
        )));
    }
    // Continuous replication jobs are listed in `DIR/replication-jobs.json` and resume at the next
    // start; a server on PostgreSQL has no data directory, so its jobs live as long as the process.
    let (dbs, place, jobs): (Arc<dyn Databases>, String, outpost_server::Jobs) = match store {
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
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::unavailable(format!("cannot listen on {listen}: {e}")))?;
    let addr = listener.local_addr().map_err(|e| Error::internal(e.to_string()))?;
    // The first line says where the server is: scripts and tests read it (port 0 picks a free port).
    println!("outpost listening on http://{addr} ({place})");
    let state = outpost_server::AppState::new(dbs, limits).with_jobs(jobs);
    outpost_server::serve(listener, state, outpost_server::shutdown_signal())
        .await
        .map_err(|e| Error::unavailable(format!("serving on {addr}: {e}")))?;
    eprintln!("outpost stopped");
    Ok(())
}
