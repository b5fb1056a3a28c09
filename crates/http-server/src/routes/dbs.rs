//! Databases: list, create, info, delete (`/dbs`, `/dbs/{db}`).

use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use axum::Json;
use outpost_api::{CompactReport, CompactRequest, DbInfo, Error};

use super::responses::OfDatabase;
use super::{OkResponse, OK};
use crate::access::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{AdminDb, AdminDbName, DbPath, MaybeJsonBody, ReadDb};
use crate::{AppState, REQUEST_TIMEOUT};

/// Database names, sorted.
#[utoipa::path(
    get, path = "/dbs", tag = "databases", operation_id = "list_dbs",
    responses((status = 200, body = Vec<String>), (status = "5XX", body = Error))
)]
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<String>>> {
    let mut names = state.dbs.list().await?;
    names.retain(|name| caller.sees(name));
    Ok(Json(names))
}

/// Create a database.
#[utoipa::path(
    put, path = "/dbs/{db}", tag = "databases", operation_id = "create_db", params(DbPath),
    responses(
        (status = 201, description = "Created", body = DbInfo),
        (status = 400, description = "Invalid database name", body = Error),
        (status = 412, description = "A database of that name exists", body = Error),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    AdminDbName(name): AdminDbName,
) -> ApiResult<(StatusCode, Json<DbInfo>)> {
    let db = state.dbs.create(&name).await?;
    Ok((StatusCode::CREATED, Json(db.info().await?)))
}

/// Name, uuid, epochs, update_seq, chain hash, record count and backend of a database.
#[utoipa::path(
    get, path = "/dbs/{db}", tag = "databases", operation_id = "db_info", params(DbPath),
    responses(
        (status = 200, body = DbInfo),
        (status = 400, description = "Invalid database name", body = Error),
        OfDatabase,
    )
)]
pub async fn info(ReadDb(db): ReadDb) -> ApiResult<Json<DbInfo>> {
    Ok(Json(db.info().await?))
}

/// Delete a database and everything in it.
#[utoipa::path(
    delete, path = "/dbs/{db}", tag = "databases", operation_id = "delete_db", params(DbPath),
    responses(
        (status = 200, body = OkResponse),
        (status = 400, description = "Invalid database name", body = Error),
        OfDatabase,
    )
)]
pub async fn delete(State(state): State<AppState>, AdminDbName(name): AdminDbName) -> ApiResult<Json<OkResponse>> {
    state.dbs.delete(&name).await?;
    Ok(Json(OK))
}

/// Compact a database (SPEC §4.5): drop the bodies of non-leaf revisions more than `keep_bodies`
/// generations below every leaf (each table's own `keep_bodies`, else 0, when left out), keeping
/// every revision's id, parent and seq, so replication, revs-diff, reads of leaves and merged states
/// are unchanged. The body may be left out. It runs in bounded batches (writers wait for one at
/// most) and answers when done, however long that takes; a client that goes away does not stop it.
#[utoipa::path(
    post, path = "/dbs/{db}/compact", tag = "databases", operation_id = "compact_db", params(DbPath),
    request_body(content = Option<CompactRequest>, description = "What to compact; left out, every table"),
    responses(
        (status = 200, body = CompactReport),
        (status = 400, description = "Invalid database or table name, or request", body = Error),
        OfDatabase,
    )
)]
pub async fn compact(
    State(state): State<AppState>,
    AdminDb(db): AdminDb,
    request: Request,
) -> ApiResult<Json<CompactReport>> {
    // This route has no timeout layer (a compaction may take long); its body still has to arrive in
    // time.
    let MaybeJsonBody(request) =
        tokio::time::timeout(REQUEST_TIMEOUT, MaybeJsonBody::<CompactRequest>::from_request(request, &state))
            .await
            .map_err(|_| ApiError(Error::unavailable("the request body did not arrive in time")))??;
    let request = request.unwrap_or_default();
    // Its own task: a batch in progress is atomic anyway, but a compaction asked for is finished.
    let task = tokio::spawn(async move { db.compact(request).await });
    match task.await {
        Ok(report) => Ok(Json(report?)),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(Error::unavailable("the server is shutting down").into()),
    }
}
