//! Server-run replication jobs: `POST /replicate` starts one, `/replicate/jobs` lists them,
//! `/replicate/jobs/{id}` shows or cancels one. The jobs themselves live in `crate::jobs`.

use std::time::Duration;

use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use axum::Json;
use outpost_api::Error;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::access::{Caller, Role};
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, PathParams};
use crate::jobs::spec::{Endpoint, JobSpec, DEFAULT_BATCH_SIZE};
use crate::jobs::{Job, JobState};
use crate::{AppState, REQUEST_TIMEOUT};

/// How long `DELETE /replicate/jobs/{id}` waits for the job to stop before answering 202.
pub const CANCEL_PATIENCE: Duration = Duration::from_secs(30);

/// `POST /replicate`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplicateRequest {
    /// A database name of this server, or `http(s)://host:port/dbs/NAME` of another.
    pub source: String,
    /// A database name of this server, or `http(s)://host:port/dbs/NAME` of another.
    pub target: String,
    /// Follow the source until cancelled (default false). Continuous jobs survive a server restart.
    #[serde(default)]
    pub continuous: bool,
    /// Also replicate target → source (default false).
    #[serde(default)]
    pub bidirectional: bool,
    /// Only these tables (and their definitions); all when left out.
    #[serde(default)]
    pub tables: Option<Vec<String>>,
    /// Changes per page and most revisions per write, 1-10000 (default 1000).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 10000)]
    pub batch_size: Option<u64>,
    /// Create the target when it does not exist (default false).
    #[serde(default)]
    pub create_target: bool,
    /// Answer when the job has finished (200) instead of at once (202). One-shot jobs only.
    #[serde(default)]
    pub wait: bool,
}

/// `{id}` of the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct JobPath {
    /// The job's id.
    pub id: String,
}

/// Start a replication job from `source` to `target` (both may be local names or URLs).
///
/// Answers at once with the running job (202), or with `"wait": true` when a one-shot job has
/// finished (200, whatever its state). Not bounded by the request timeout: a waited-for job takes
/// as long as it takes.
#[utoipa::path(
    post, path = "/replicate", tag = "replication jobs", operation_id = "replicate",
    request_body = ReplicateRequest,
    responses(
        (status = 202, description = "The job, running", body = Job),
        (status = 200, description = "With `wait`: the finished job", body = Job),
        (status = 400, description = "Invalid source, target, tables, batch size or options", body = Error),
        (status = 404, description = "No such local database", body = Error),
        (status = 503, description = "Shutting down, or too many jobs running", body = Error),
    )
)]
pub async fn replicate(
    State(state): State<AppState>,
    caller: Caller,
    request: Request,
) -> ApiResult<(StatusCode, Json<Job>)> {
    // This route has no timeout layer (a waited-for job may take long); its body still has to arrive
    // in time.
    let JsonBody(body) =
        tokio::time::timeout(REQUEST_TIMEOUT, JsonBody::<ReplicateRequest>::from_request(request, &state))
            .await
            .map_err(|_| ApiError(Error::unavailable("the request body did not arrive in time")))??;
    if body.wait && body.continuous {
        return Err(Error::invalid("wait applies to one-shot jobs; a continuous job runs until cancelled").into());
    }
    let batch_size = match body.batch_size {
        None => DEFAULT_BATCH_SIZE,
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
    };
    let spec = JobSpec {
        id: uuid::Uuid::now_v7().to_string(),
        source: body.source,
        target: body.target,
        continuous: body.continuous,
        bidirectional: body.bidirectional,
        tables: body.tables,
        batch_size,
        create_target: body.create_target,
    };
    let (source, target) = spec.endpoints()?;
    manages(&caller, &source, &target)?;
    let entry = state.jobs.start(&state.dbs, spec).await?;
    if body.wait {
        Ok((StatusCode::OK, Json(entry.finished().await)))
    } else {
        Ok((StatusCode::ACCEPTED, Json(entry.view())))
    }
}

/// The running jobs, then the recently finished ones (each group newest first; at most 100
/// finished jobs are kept).
#[utoipa::path(
    get, path = "/replicate/jobs", tag = "replication jobs", operation_id = "list_jobs",
    responses((status = 200, body = Vec<Job>), (status = "5XX", body = Error))
)]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Json<Vec<Job>> {
    let mut jobs = state.jobs.list();
    jobs.retain(|job| visible(&caller, job));
    Json(jobs)
}

/// One job, with its progress and, once finished, its report(s) or error.
#[utoipa::path(
    get, path = "/replicate/jobs/{id}", tag = "replication jobs", operation_id = "get_job", params(JobPath),
    responses(
        (status = 200, body = Job),
        (status = 404, description = "No such job (or it finished long ago)", body = Error),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(JobPath { id }): PathParams<JobPath>,
) -> ApiResult<Json<Job>> {
    let job = state.jobs.get(&id)?;
    if !visible(&caller, &job) {
        return Err(ApiError(crate::jobs::not_found(&id)));
    }
    Ok(Json(job))
}

/// Cancel a job: it stops at its next call boundary, keeping everything it committed. Answers the
/// job once it has stopped (200, state `cancelled`), or 202 with the job still `running` when it did
/// not stop within 30 s. A job that had finished is answered unchanged. A cancelled continuous job
/// is not resumed by a restart.
#[utoipa::path(
    delete, path = "/replicate/jobs/{id}", tag = "replication jobs", operation_id = "cancel_job", params(JobPath),
    responses(
        (status = 200, description = "The job, stopped", body = Job),
        (status = 202, description = "The job, asked to stop but still running", body = Job),
        (status = 404, description = "No such job", body = Error),
    )
)]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(JobPath { id }): PathParams<JobPath>,
) -> ApiResult<(StatusCode, Json<Job>)> {
    if !visible(&caller, &state.jobs.get(&id)?) {
        return Err(ApiError(crate::jobs::not_found(&id)));
    }
    let job = state.jobs.cancel(&id, CANCEL_PATIENCE).await?;
    let status = if job.state == JobState::Running { StatusCode::ACCEPTED } else { StatusCode::OK };
    Ok((status, Json(job)))
}

/// Ok when `caller` may run and manage a job between `source` and `target`: admin on each local end;
/// and admin on every database when an end is remote, because the job reaches a peer with the
/// server's own token for it, which may do far more than the caller could (a token with admin on
/// one database must not be able to copy a peer's other databases into it). Which URLs a job may reach
/// is the peers' rule, checked when it starts.
fn manages(caller: &Caller, source: &Endpoint, target: &Endpoint) -> ApiResult<()> {
    for end in [source, target] {
        match end {
            Endpoint::Local(name) => caller.require(name, Role::Admin)?,
            Endpoint::Remote(_) => caller.require_everywhere(Role::Admin).map_err(|e| {
                e.context("a job with a remote end acts with this server's own credentials for that peer")
            })?,
        }
    }
    Ok(())
}

/// Whether `caller` may see `job` (as if it did not exist otherwise).
pub(crate) fn visible(caller: &Caller, job: &Job) -> bool {
    match (Endpoint::parse(&job.source, "source"), Endpoint::parse(&job.target, "target")) {
        (Ok(source), Ok(target)) => manages(caller, &source, &target).is_ok(),
        _ => caller.require_everywhere(Role::Admin).is_ok(),
    }
}
