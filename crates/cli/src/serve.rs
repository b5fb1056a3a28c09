//! `outpost serve`: the HTTP API (SPEC §11) over a data directory of SQLite databases.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use outpost_api::{Error, Limits, Result};

/// Serve every database in `data` on `listen` until SIGINT or SIGTERM; in-flight requests finish.
/// Continuous replication jobs are listed in `data/replication-jobs.json` and resume at the next start.
pub async fn run(data: PathBuf, listen: SocketAddr, limits: Limits) -> Result<()> {
    // Secure default (SPEC §14): without tokens, only loopback addresses are served.
    if !listen.ip().is_loopback() {
        return Err(Error::invalid(format!(
            "refusing to listen on {listen}: without configured access tokens the server binds loopback \
             addresses only (e.g. 127.0.0.1:7070); token authentication arrives with SPEC §14"
        )));
    }
    let dbs = Arc::new(outpost_sqlite::SqliteDatabases::new(&data, limits)?);
    let jobs = outpost_server::Jobs::persisted(data.join(outpost_server::JOBS_FILE))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::unavailable(format!("cannot listen on {listen}: {e}")))?;
    let addr = listener.local_addr().map_err(|e| Error::internal(e.to_string()))?;
    // The first line says where the server is: scripts and tests read it (port 0 picks a free port).
    println!("outpost listening on http://{addr} (data in {})", data.display());
    let state = outpost_server::AppState::new(dbs, limits).with_jobs(jobs);
    outpost_server::serve(listener, state, outpost_server::shutdown_signal())
        .await
        .map_err(|e| Error::unavailable(format!("serving on {addr}: {e}")))?;
    eprintln!("outpost stopped");
    Ok(())
}
