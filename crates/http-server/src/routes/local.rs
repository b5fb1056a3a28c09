//! Local documents (`/dbs/{db}/tables/{table}/local/{id}`, SPEC §17): what a CouchDB-protocol peer
//! keeps on a database for its own use (replication checkpoints), never replicated. The trait behind
//! them is `LocalDocs`; the CouchDB routes (`/couch/…/_local/{id}`) reach the same documents.

use axum::Json;
use outpost_api::{Error, LocalDoc, LocalPut, LocalRev};
use serde::Deserialize;
use utoipa::IntoParams;

use super::responses::InvalidBody;
use crate::error::ApiResult;
use crate::extract::{DbPath, JsonBody, PathParams, Query, ReadDb, RecordPath, WriteDb};

/// A local document.
#[utoipa::path(
    get, path = "/dbs/{db}/tables/{table}/local/{id}", tag = "records", operation_id = "get_local",
    params(DbPath, RecordPath),
    responses((status = 200, body = LocalDoc), (status = 404, description = "No such database or document", body = Error))
)]
pub async fn get(ReadDb(db): ReadDb, PathParams(path): PathParams<RecordPath>) -> ApiResult<Json<LocalDoc>> {
    Ok(Json(db.get_local(&path.table, &path.id).await?))
}

/// Write a local document, replacing revision `rev` (absent: there is none).
#[utoipa::path(
    put, path = "/dbs/{db}/tables/{table}/local/{id}", tag = "records", operation_id = "put_local",
    params(DbPath, RecordPath), request_body = LocalPut,
    responses(
        (status = 200, body = LocalRev),
        InvalidBody,
        (status = 404, description = "No such database", body = Error),
        (status = 409, description = "`rev` is not the document's revision", body = Error),
    )
)]
pub async fn put(
    WriteDb(db): WriteDb,
    PathParams(path): PathParams<RecordPath>,
    JsonBody(put): JsonBody<LocalPut>,
) -> ApiResult<Json<LocalRev>> {
    let rev = db.put_local(&path.table, &path.id, put.rev, Some(put.body)).await?;
    Ok(Json(LocalRev { rev }))
}

/// `?rev=` of a local document's delete.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// The document's revision.
    pub rev: u64,
}

/// Delete a local document at revision `rev`.
#[utoipa::path(
    delete, path = "/dbs/{db}/tables/{table}/local/{id}", tag = "records", operation_id = "delete_local",
    params(DbPath, RecordPath, DeleteQuery),
    responses(
        (status = 200, body = LocalRev),
        (status = 404, description = "No such database or document", body = Error),
        (status = 409, description = "`rev` is not the document's revision", body = Error),
    )
)]
pub async fn delete(
    WriteDb(db): WriteDb,
    PathParams(path): PathParams<RecordPath>,
    Query(query): Query<DeleteQuery>,
) -> ApiResult<Json<LocalRev>> {
    let rev = db.put_local(&path.table, &path.id, Some(query.rev), None).await?;
    Ok(Json(LocalRev { rev }))
}
