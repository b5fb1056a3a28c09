//! Outpost's HTTP API (docs/HTTP.md, SPEC §11) over any [`outpost_api::Databases`]: axum handlers
//! that parse a request, call one trait method and map its error; the error JSON of every failure
//! (bad JSON, bad query, unknown route, wrong method, oversize body); the changes feed as a page,
//! a long-poll or server-sent events; server-run replication jobs ([`Jobs`], `POST /replicate`);
//! the files a quicksync publisher wrote (SPEC §9), with range requests ([`AppState::with_quicksync`]);
//! and `GET /openapi.json`, generated from the handlers.
//!
//! Only this crate knows HTTP status codes. [`router`] builds the service (tests call it
//! in-process), [`serve`] runs it on a listener with graceful shutdown, resuming the persisted
//! replication jobs first and stopping the running ones at the end.
#![forbid(unsafe_code)]

pub mod access;
mod compactor;
mod config;
mod connections;
mod couch;
mod error;
mod extract;
mod jobs;
mod listen;
mod metrics;
mod openapi;
mod publisher;
mod routes;
mod shutdown;
mod stream;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use access::{Access, Caller, NewToken, Role, TokenConfig};
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::{middleware, Extension, Router};
use outpost_api::{Databases, Limits};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use config::{check_exposure, CorsConfig, LimitsConfig, ServerConfig, TlsConfig};
pub use connections::{ConnectionLimits, UPLOAD_PATIENCE};
pub use error::{ApiError, ApiResult};
pub use jobs::{Job, JobState, Jobs, PeerConfig, Peers, JOBS_FILE, MAX_FINISHED, MAX_RUNNING};
pub use listen::{Tls, HANDSHAKE_TIMEOUT};
pub use metrics::{Metrics, CONTENT_TYPE as METRICS_CONTENT_TYPE};
pub use openapi::{openapi, ApiDoc};
pub use publisher::PublishSchedule;
pub use routes::changes::{DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS};
pub use shutdown::shutdown_signal;

/// How long a request may take, long-polls and event streams aside (503 `unavailable` past it).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How often an event stream sends a `: heartbeat` comment.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// How long [`serve`], shutting down, waits for the running replication jobs to stop.
pub const JOBS_GRACE: Duration = Duration::from_secs(30);
/// How often a server compacts the tables that set `keep_bodies`, unless told otherwise.
pub const DEFAULT_COMPACT_EVERY: Duration = Duration::from_secs(3600);

/// What every handler shares: the databases served, the input limits, who may do what, the
/// replication jobs and where the published quicksync files are.
#[derive(Clone)]
pub struct AppState {
    /// The databases this server hosts.
    pub dbs: Arc<dyn Databases>,
    /// Input limits; `max_request_bytes` bounds request bodies.
    pub limits: Limits,
    /// Tokens and browser origins (SPEC §14); [`Access::open`] serves loopback callers only.
    pub access: Access,
    /// Connection-level limits (SPEC §14): header timeout, connections, feeds, upload bytes.
    pub connections: ConnectionLimits,
    /// The counters behind `connections`.
    pub(crate) budgets: connections::Budgets,
    /// What `/metrics` reports of the requests and connections served.
    pub metrics: Metrics,
    /// Server-run replication jobs (`POST /replicate`).
    pub jobs: Jobs,
    /// The quicksync root: database `db`'s published files are in `<root>/<db>/`. `None` serves none
    /// (every `/dbs/{db}/quicksync/…` is 404).
    pub quicksync: Option<PathBuf>,
    /// When [`serve`] publishes quicksync files into the quicksync root by itself (`None`: never;
    /// another process publishes).
    pub publish: Option<PublishSchedule>,
    /// How often [`serve`] compacts the tables that set `keep_bodies` (SPEC §4.5; `None`: never).
    pub compact_every: Option<Duration>,
}

impl AppState {
    /// State serving `dbs` with `limits`; replication jobs are kept in memory only (continuous ones
    /// end with the server; see [`AppState::with_jobs`]); no quicksync files are served (see
    /// [`AppState::with_quicksync`]).
    pub fn new(dbs: Arc<dyn Databases>, limits: Limits) -> Self {
        let connections = ConnectionLimits::default();
        let budgets = connections::Budgets::new(&connections);
        AppState {
            dbs,
            limits,
            access: Access::open(),
            connections,
            budgets,
            metrics: Metrics::default(),
            jobs: Jobs::in_memory(),
            quicksync: None,
            publish: None,
            compact_every: Some(DEFAULT_COMPACT_EVERY),
        }
    }

    /// The same state compacting tables that set `keep_bodies` this often (`None`: never).
    pub fn with_compaction(self, every: Option<Duration>) -> Self {
        AppState { compact_every: every, ..self }
    }

    /// The same state with these connection-level limits.
    pub fn with_connection_limits(self, connections: ConnectionLimits) -> Self {
        let budgets = connections::Budgets::new(&connections);
        AppState { connections, budgets, ..self }
    }

    /// The same state with `access`: its tokens and the browser origins allowed.
    pub fn with_access(self, access: Access) -> Self {
        AppState { access, ..self }
    }

    /// The same state with `jobs`, e.g. [`Jobs::persisted`] so that continuous jobs survive a restart.
    pub fn with_jobs(self, jobs: Jobs) -> Self {
        AppState { jobs, ..self }
    }

    /// The same state serving the quicksync files under `root` (`<root>/<db>/manifest.csv` and the
    /// files it lists) at `/dbs/{db}/quicksync/…`. The server only reads them; a publisher writes them.
    pub fn with_quicksync(self, root: impl Into<PathBuf>) -> Self {
        AppState { quicksync: Some(root.into()), ..self }
    }

    /// The same state publishing quicksync files on `schedule` into the quicksync root while
    /// [`serve`] runs (only when a root is set).
    pub fn with_publishing(self, schedule: PublishSchedule) -> Self {
        AppState { publish: Some(schedule), ..self }
    }
}

fn request_span(request: &Request) -> tracing::Span {
    let id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
    tracing::info_span!("request", id, method = %request.method(), path = %request.uri().path())
}

/// Every route of docs/HTTP.md behind the access rules of SPEC §14 ([`access`]), with body limit,
/// request timeout, CORS for the configured origins, request ids (`x-request-id`, generated when absent
/// and echoed back) and tracing.
pub fn router(state: AppState) -> Router {
    // Long-polls bound themselves (at most MAX_TIMEOUT_MS); event streams are not cut by a
    // timeout layer, which only bounds the time to the response head.
    let feed_timeout = Duration::from_millis(MAX_TIMEOUT_MS) + REQUEST_TIMEOUT;
    let bounded =
        routes::bounded().route_layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, REQUEST_TIMEOUT));
    let feeds =
        routes::feeds().route_layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, feed_timeout));
    // The CouchDB protocol: long-polls bound themselves (at most a minute), like the feeds.
    let host = couch::Host { dbs: state.dbs.clone(), budgets: state.budgets.clone(), limits: state.limits };
    let couch = outpost_couch::router(outpost_couch::Couch::new(Arc::new(host)))
        .route_layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, feed_timeout))
        .route_layer(middleware::from_fn_with_state(state.clone(), couch::take_upload_room));
    let app = bounded
        .merge(feeds)
        .merge(couch)
        .merge(routes::unbounded())
        .layer(DefaultBodyLimit::max(state.limits.max_request_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), access::guard))
        .layer(middleware::from_fn(error::json_errors))
        // Outside the guard and the error bodies: refused requests are counted too.
        .layer(middleware::from_fn_with_state(state.clone(), metrics::track));
    // No CORS headers at all unless origins are configured (then preflights are answered here, before
    // the guard: browsers send them without credentials).
    let app = match access::cors(&state.access) {
        Some(cors) => app.layer(cors),
        None => app,
    };
    app.layer(TraceLayer::new_for_http().make_span_with(request_span as fn(&Request) -> tracing::Span))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// Serve [`router`] on `listener` (plain HTTP; see [`serve_with`] for HTTPS) until `shutdown`
/// resolves, then shut down gracefully: stop accepting, end long-polls (with their current page) and event streams, cancel the running
/// replication jobs (continuous ones stay in the jobs file), and let in-flight requests finish.
/// Before serving, the jobs listed in the jobs file are resumed.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, None, state, shutdown).await
}

/// [`serve`], over TLS when `tls` is given (HTTPS).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    tls: Option<Tls>,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stopping = shutdown::Stopping::new();
    let jobs = state.jobs.clone();
    jobs.resume(&state.dbs).await;
    let (stop_publishing, publishing) = tokio::sync::watch::channel(false);
    let publisher = match (&state.quicksync, &state.publish) {
        (Some(root), Some(schedule)) => {
            Some(publisher::Publisher::spawn(state.dbs.clone(), root.clone(), schedule.clone(), publishing.clone()))
        }
        _ => None,
    };
    let compactor = state.compact_every.map(|every| compactor::spawn(state.dbs.clone(), every, publishing));
    let (header_read_timeout, max_connections) =
        (state.connections.header_read_timeout, state.connections.max_connections);
    let open_connections = state.metrics.connections.clone();
    let app = router(state).layer(Extension(stopping.clone()));
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving the Outpost HTTP API");
    }
    let stop_jobs = jobs.clone();
    let served =
        listen::serve(listener, tls, app, (header_read_timeout, max_connections, open_connections), async move {
            shutdown.await;
            stopping.raise();
            stop_jobs.stop();
        })
        .await;
    // Also when serving failed: no job outlives its server.
    jobs.stop();
    jobs.stopped(JOBS_GRACE).await;
    let _ = stop_publishing.send(true);
    if let Some(compactor) = compactor {
        // A compaction stops between batches: each commits whole (in a task of its own) or not at all.
        compactor.abort();
        let _ = compactor.await;
    }
    if let Some(publisher) = publisher {
        // It stops between files; a file being written is finished first.
        let _ = publisher.await;
    }
    served
}
