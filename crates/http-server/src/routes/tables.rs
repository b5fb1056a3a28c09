//! Table definitions (`/dbs/{db}/tables`, `/dbs/{db}/tables/{table}`).

use axum::http::StatusCode;
use axum::Json;
use outpost_api::{Error, NewTable, TableDef, TableUpdate};

use super::responses::{OfDatabase, OfTable};
use super::{OkResponse, OK};
use crate::error::{ApiError, ApiResult};
use crate::extract::{AdminDb, DbPath, JsonBody, MaybeJsonBody, PathParams, ReadDb, TablePath};

/// Every live table.
#[utoipa::path(
    get, path = "/dbs/{db}/tables", tag = "tables", operation_id = "list_tables", params(DbPath),
    responses((status = 200, body = Vec<TableDef>), OfDatabase)
)]
pub async fn list(ReadDb(db): ReadDb) -> ApiResult<Json<Vec<TableDef>>> {
    Ok(Json(db.list_tables().await?))
}

/// Create a table.
#[utoipa::path(
    put, path = "/dbs/{db}/tables/{table}", tag = "tables", operation_id = "create_table", params(DbPath, TablePath),
    request_body(content = NewTable, description = "Optional: an empty body creates a table with defaults"),
    responses(
        (status = 201, description = "Created", body = TableDef),
        (status = 400, description = "Invalid name or definition", body = Error),
        OfDatabase,
        (status = 412, description = "A live table of that name exists", body = Error),
    )
)]
pub async fn create(
    AdminDb(db): AdminDb,
    PathParams(path): PathParams<TablePath>,
    MaybeJsonBody(body): MaybeJsonBody<NewTable>,
) -> ApiResult<(StatusCode, Json<TableDef>)> {
    let mut new = body.unwrap_or_default();
    if !new.name.is_empty() && new.name != path.table {
        return Err(ApiError(Error::invalid(format!(
            "the body names table {:?} but the path names {:?}",
            new.name, path.table
        ))));
    }
    new.name = path.table;
    Ok((StatusCode::CREATED, Json(db.create_table(new).await?)))
}

/// Change a table definition (`rev`, when given, must be the current one).
#[utoipa::path(
    patch, path = "/dbs/{db}/tables/{table}", tag = "tables", operation_id = "update_table", params(DbPath, TablePath),
    request_body = TableUpdate,
    responses(
        (status = 200, body = TableDef),
        (status = 400, description = "Invalid update", body = Error),
        OfTable,
        (status = 409, description = "`rev` is not the current definition", body = Error),
    )
)]
pub async fn update(
    AdminDb(db): AdminDb,
    PathParams(path): PathParams<TablePath>,
    JsonBody(update): JsonBody<TableUpdate>,
) -> ApiResult<Json<TableDef>> {
    Ok(Json(db.update_table(&path.table, update).await?))
}

/// A table definition.
#[utoipa::path(
    get, path = "/dbs/{db}/tables/{table}", tag = "tables", operation_id = "get_table", params(DbPath, TablePath),
    responses((status = 200, body = TableDef), OfTable)
)]
pub async fn get(ReadDb(db): ReadDb, PathParams(path): PathParams<TablePath>) -> ApiResult<Json<TableDef>> {
    Ok(Json(db.get_table(&path.table).await?))
}

/// Delete a table (its records stay stored, unreachable until the name is created again).
#[utoipa::path(
    delete, path = "/dbs/{db}/tables/{table}", tag = "tables", operation_id = "delete_table", params(DbPath, TablePath),
    responses(
        (status = 200, body = OkResponse),
        OfTable,
    )
)]
pub async fn delete(AdminDb(db): AdminDb, PathParams(path): PathParams<TablePath>) -> ApiResult<Json<OkResponse>> {
    db.delete_table(&path.table).await?;
    Ok(Json(OK))
}
