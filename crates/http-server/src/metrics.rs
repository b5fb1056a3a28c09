//! `GET /metrics` (SPEC §18), in the OpenMetrics text format Prometheus scrapes: requests by route
//! and status with their latencies, open connections and feeds, replication jobs and their progress,
//! and per database its update_seq, live-record count and size in storage.
//!
//! Requests are counted by a middleware ([`track`]) around every route, under the route's template
//! (`/dbs/{db}/tables/{table}/records`), never the raw path: a label per id would grow without bound.
//! The database and job figures are read when scraped, and only for what the caller may see (the
//! databases `GET /dbs` lists to it, the jobs `GET /replicate/jobs` lists): a scraper's token needs
//! `read` on the databases whose figures it should collect.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use outpost_api::ErrorKind;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::access::Caller;
use crate::error::ApiResult;
use crate::jobs::JobState;
use crate::AppState;

/// The upper bounds of the latency buckets, in seconds: from a cached read to a long request.
const LATENCY_BUCKETS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The content type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DbLabels {
    db: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    job: String,
    direction: String,
}

type Latencies = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// The figures a server keeps as it runs. Cloning shares them.
#[derive(Clone, Debug)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    latency: Latencies,
    /// Connections being served (kept by the listener).
    pub(crate) connections: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        fn histogram() -> Histogram {
            Histogram::new(LATENCY_BUCKETS)
        }
        Metrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(histogram as fn() -> Histogram),
            connections: Gauge::default(),
        }
    }
}

/// A method as a label: the ones the API has, every other one as `other` (a client choosing methods
/// must not choose label values).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Count a request and time it to its response head, under its route's template (`unmatched` for a
/// path no route has).
pub(crate) async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
    let method = method_label(request.method()).to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let metrics = &state.metrics;
    let labels = RouteLabels { route, method };
    metrics.latency.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
    let status = response.status().as_u16();
    metrics.requests.get_or_create(&RequestLabels { route: labels.route, method: labels.method, status }).inc();
    response
}

/// The server's figures in the OpenMetrics text format.
#[utoipa::path(
    get, path = "/metrics", tag = "server", operation_id = "metrics",
    responses(
        (status = 200, description = "The figures, in the OpenMetrics text format Prometheus scrapes: requests by \
            route template, method and status, request latencies, open connections and feeds, replication jobs \
            and their progress, and for each database the caller may read its update_seq, live-record count and \
            bytes in storage", content_type = "application/openmetrics-text"),
        (status = 401, description = "No token, or an unknown one (a server with tokens)", body = outpost_api::Error),
    )
)]
pub async fn metrics(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    let mut registry = Registry::with_prefix("outpost");
    let m = &state.metrics;
    registry.register(
        "http_requests",
        "HTTP requests answered, by route template, method and status",
        m.requests.clone(),
    );
    registry.register_with_unit(
        "http_request_duration",
        "Time from a request to its response head, by route template and method",
        Unit::Seconds,
        m.latency.clone(),
    );
    registry.register("http_connections_open", "Connections being served", m.connections.clone());
    let feeds = Gauge::<i64>::default();
    feeds.set(state.budgets.feeds_open() as i64);
    registry.register("feeds_open", "Long-polls and event streams open", feeds);
    jobs(&state, &caller, &mut registry);
    databases(&state, &caller, &mut registry).await?;
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .map_err(|e| outpost_api::Error::internal(format!("encoding the metrics: {e}")))?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response())
}

/// The replication jobs the caller sees: how many in each state, and each running one's progress.
fn jobs(state: &AppState, caller: &Caller, registry: &mut Registry) {
    let counts = Family::<StateLabels, Gauge>::default();
    let (written, fetched, bytes) = (
        Family::<JobLabels, Counter>::default(),
        Family::<JobLabels, Counter>::default(),
        Family::<JobLabels, Counter>::default(),
    );
    let (position, head) = (Family::<JobLabels, Gauge>::default(), Family::<JobLabels, Gauge>::default());
    for job_state in JobState::ALL {
        counts.get_or_create(&StateLabels { state: job_state.as_str().into() }).set(0);
    }
    for job in state.jobs.list().into_iter().filter(|job| crate::routes::replicate::visible(caller, job)) {
        counts.get_or_create(&StateLabels { state: job.state.as_str().into() }).inc();
        if job.state != JobState::Running {
            continue;
        }
        let directions = [("forward", Some(&job.progress)), ("reverse", job.reverse_progress.as_ref())];
        for (direction, progress) in directions {
            let Some(p) = progress else { continue };
            let labels = JobLabels { job: job.id.clone(), direction: direction.into() };
            written.get_or_create(&labels).inc_by(p.revisions_written);
            fetched.get_or_create(&labels).inc_by(p.revisions_fetched);
            bytes.get_or_create(&labels).inc_by(p.bytes);
            position.get_or_create(&labels).set(gauge_value(p.source_seq));
            head.get_or_create(&labels).set(gauge_value(p.source_update_seq));
        }
    }
    registry.register("replication_jobs", "Replication jobs kept by the server, by state", counts);
    let help = "of a running replication job (forward: source to target; reverse: back)";
    registry.register("replication_job_revisions_written", format!("Revisions written {help}"), written);
    registry.register("replication_job_revisions_fetched", format!("Revisions fetched {help}"), fetched);
    registry.register("replication_job_fetched_bytes", format!("Bytes of revisions fetched {help}"), bytes);
    registry.register("replication_job_source_seq", format!("The source seq committed {help}"), position);
    registry.register(
        "replication_job_source_update_seq",
        format!("The source's update_seq as last seen {help}"),
        head,
    );
}

/// Each database the caller sees: update_seq, live records and bytes in storage. A database deleted
/// while scraped is left out; one that cannot be read is counted apart and logged.
async fn databases(state: &AppState, caller: &Caller, registry: &mut Registry) -> ApiResult<()> {
    let (seqs, records, sizes) = (
        Family::<DbLabels, Gauge>::default(),
        Family::<DbLabels, Gauge>::default(),
        Family::<DbLabels, Gauge>::default(),
    );
    let unreadable = Gauge::<i64>::default();
    for name in state.dbs.list().await? {
        if !caller.sees(&name) {
            continue;
        }
        let figures = async {
            let db = state.dbs.open(&name).await?;
            Ok::<_, outpost_api::Error>((db.info().await?, db.size_bytes().await?))
        };
        let (info, size) = match figures.await {
            Ok(figures) => figures,
            Err(e) if e.kind == ErrorKind::NotFound => continue,
            // One database that cannot be read does not take the others' figures with it.
            Err(e) => {
                tracing::warn!(db = %name, error = %e, "reading a database's figures for /metrics");
                unreadable.inc();
                continue;
            }
        };
        let labels = DbLabels { db: name };
        seqs.get_or_create(&labels).set(gauge_value(info.update_seq));
        records.get_or_create(&labels).set(gauge_value(info.record_count));
        if let Some(size) = size {
            sizes.get_or_create(&labels).set(gauge_value(size));
        }
    }
    registry.register("database_update_seq", "The seq of a database's latest revision event", seqs);
    registry.register("database_records", "Live records of a database (in user tables)", records);
    registry.register_with_unit("database_size", "Bytes a database takes in its storage", Unit::Bytes, sizes);
    registry.register("databases_unreadable", "Databases whose figures could not be read (see the log)", unreadable);
    Ok(())
}

/// A count as a gauge's value (saturating: no count reaches 2^63).
fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
