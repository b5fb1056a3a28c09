//! Databases: list, create, info, delete (`/dbs`, `/dbs/{db}`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use outpost_api::{DbInfo, Error};

use super::responses::OfDatabase;
use super::{OkResponse, OK};
use crate::access::Caller;
use crate::error::ApiResult;
use crate::extract::{AdminDbName, DbPath, ReadDb};
use crate::AppState;

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
