//! Records: list, read, write, delete, and bulk writes. Record attributes travel in the typed wire
//! form, or in plain JSON with `?format=plain` / `Accept: application/json; format=plain`.

use axum::response::{IntoResponse, Response};
use axum::Json;
use outpost_api::{
    Attributes, Error, GetOptions, ListOptions, PutRecord, Record, RecordPage, RevId, WriteOp, WriteResult,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::responses::{InvalidBody, InvalidParameter, OfDatabase, OfTable, RecordWrite};
use crate::error::{public, ApiError, ApiResult};
use crate::extract::{
    page_limit, parse_json, DbPath, Format, FormatQuery, IfMatch, PathParams, Query, RawBody, ReadDb, RecordPath,
    TablePath, WriteDb,
};

/// `GET .../records` parameters.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Records whose id sorts after this one (UTF-8 byte order).
    pub after: Option<String>,
    /// Most records returned, 1-10000 (default 100).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<u64>,
    /// Include records whose winner is a tombstone (default false).
    pub include_deleted: Option<bool>,
}

/// `GET .../records/{id}` parameters.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GetQuery {
    /// Read this revision's own body instead of the reconciled state.
    pub rev: Option<RevId>,
    /// Include conflicts and field conflicts (default false).
    pub conflicts: Option<bool>,
    /// Include the revision history (default false).
    pub revs: Option<bool>,
}

/// `DELETE .../records/{id}` parameters.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// The revision to delete (the current winner when absent); `If-Match` may carry it instead.
    pub rev: Option<RevId>,
}

/// `POST /dbs/{db}/bulk`; `A` is the attributes' form, as for [`PutRecord`].
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, bound(deserialize = "A: Deserialize<'de> + Default"))]
pub struct BulkRequest<A = Attributes> {
    /// The operations, applied in one transaction, each with its own result.
    pub ops: Vec<WriteOp<A>>,
}

/// Refuse a body that is not a JSON object: serde would also take a struct as an array of its fields.
fn require_object(body: &[u8], what: &str) -> ApiResult<()> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError(Error::invalid(format!("{what} is a JSON object"))));
    }
    Ok(())
}

/// A bulk body in `format`, with its attributes in the typed form.
fn parse_bulk(body: &[u8], format: Format) -> ApiResult<Vec<WriteOp>> {
    require_object(body, "a bulk request")?;
    match format {
        Format::Typed => Ok(parse_json::<BulkRequest>(body)?.ops),
        Format::Plain => {
            let request: BulkRequest<serde_json::Value> = parse_json(body)?;
            let typed = |(i, op): (usize, WriteOp<serde_json::Value>)| {
                let attributes = match &op.attributes {
                    serde_json::Value::Null => Attributes::new(),
                    json => Attributes::from_plain(json).map_err(|e| e.context(format!("ops[{i}].attributes")))?,
                };
                Ok(WriteOp { attributes, op: op.op, table: op.table, id: op.id, rev: op.rev, resolves: op.resolves })
            };
            Ok(request.ops.into_iter().enumerate().map(typed).collect::<Result<_, Error>>()?)
        }
    }
}

/// One result of a bulk write: a `WriteResult`, or an error object (it has the key `error`).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum BulkItem {
    /// The operation was applied.
    Written(WriteResult),
    /// The operation failed (the others were still applied).
    Failed(Error),
}

/// The answer of `POST /dbs/{db}/bulk`, in request order.
#[derive(Serialize, ToSchema)]
pub struct BulkResponse {
    /// One item per operation.
    pub results: Vec<BulkItem>,
}

fn plain_record(record: Record) -> serde_json::Value {
    let attributes = record.attributes.to_plain();
    let mut json = serde_json::to_value(Record { attributes: Attributes::new(), ..record }).unwrap_or_default();
    json["attributes"] = attributes;
    json
}

/// A write's body in `format`, with its attributes in the typed form.
fn parse_write(body: &[u8], format: Format) -> ApiResult<PutRecord> {
    require_object(body, "a record write")?;
    match format {
        Format::Typed => {
            // `"attributes": null` means none, as in the plain form.
            let write: PutRecord<Option<Attributes>> = parse_json(body)?;
            Ok(PutRecord {
                attributes: write.attributes.unwrap_or_default(),
                id: write.id,
                rev: write.rev,
                resolves: write.resolves,
            })
        }
        Format::Plain => {
            let write: PutRecord<serde_json::Value> = parse_json(body)?;
            let attributes = match write.attributes {
                serde_json::Value::Null => Attributes::new(),
                json => Attributes::from_plain(&json).map_err(|e| e.context("attributes"))?,
            };
            Ok(PutRecord { id: write.id, rev: write.rev, attributes, resolves: write.resolves })
        }
    }
}

/// The write a request asks for: its body in `format`, the path's id and an `If-Match` merged in.
fn put_of(body: &[u8], format: Format, path_id: Option<String>, if_match: IfMatch) -> ApiResult<PutRecord> {
    let write = parse_write(body, format)?;
    let id = match (path_id, write.id) {
        (Some(path), Some(body)) if path != body => {
            return Err(ApiError(Error::invalid(format!("the body names record {body:?} but the path names {path:?}"))))
        }
        (path, body) => path.or(body),
    };
    let rev = if_match.merge(write.rev)?;
    Ok(PutRecord { id, rev, ..write })
}

/// Records of a table in id order, one page.
#[utoipa::path(
    get, path = "/dbs/{db}/tables/{table}/records", tag = "records", operation_id = "list_records",
    params(DbPath, TablePath, ListQuery, FormatQuery),
    responses(
        (status = 200, body = RecordPage),
        InvalidParameter,
        OfTable,
    )
)]
pub async fn list(
    ReadDb(db): ReadDb,
    PathParams(path): PathParams<TablePath>,
    Query(query): Query<ListQuery>,
    format: Format,
) -> ApiResult<Response> {
    let options = ListOptions {
        after: query.after,
        limit: page_limit(query.limit)?,
        include_deleted: query.include_deleted.unwrap_or(false),
    };
    let page = db.list_records(&path.table, options).await?;
    Ok(match format {
        Format::Typed => Json(page).into_response(),
        Format::Plain => Json(serde_json::json!({
            "records": page.records.into_iter().map(plain_record).collect::<Vec<_>>(),
            "next_after": page.next_after,
        }))
        .into_response(),
    })
}

/// A record's reconciled state, or one revision's body with `rev`.
#[utoipa::path(
    get, path = "/dbs/{db}/tables/{table}/records/{id}", tag = "records", operation_id = "get_record",
    params(DbPath, RecordPath, GetQuery, FormatQuery),
    responses(
        (status = 200, body = Record),
        InvalidParameter,
        (status = 404, description = "No such database, table, record or revision", body = Error),
    )
)]
pub async fn get(
    ReadDb(db): ReadDb,
    PathParams(path): PathParams<RecordPath>,
    Query(query): Query<GetQuery>,
    format: Format,
) -> ApiResult<Response> {
    let options =
        GetOptions { rev: query.rev, conflicts: query.conflicts.unwrap_or(false), revs: query.revs.unwrap_or(false) };
    let record = db.get_record(&path.table, &path.id, options).await?;
    Ok(match format {
        Format::Typed => Json(record).into_response(),
        Format::Plain => Json(plain_record(record)).into_response(),
    })
}

/// Create or update a record.
#[utoipa::path(
    put, path = "/dbs/{db}/tables/{table}/records/{id}", tag = "records", operation_id = "put_record",
    params(DbPath, RecordPath, FormatQuery),
    request_body = PutRecord<Attributes>,
    responses(
        (status = 200, body = WriteResult),
        RecordWrite,
    )
)]
pub async fn put(
    WriteDb(db): WriteDb,
    PathParams(path): PathParams<RecordPath>,
    format: Format,
    if_match: IfMatch,
    body: RawBody,
) -> ApiResult<Json<WriteResult>> {
    let put = body.parse(move |body| put_of(body, format, Some(path.id), if_match)).await?;
    Ok(Json(db.put_record(&path.table, put).await?))
}

/// Create a record with a generated id (UUID v7).
#[utoipa::path(
    post, path = "/dbs/{db}/tables/{table}/records", tag = "records", operation_id = "post_record",
    params(DbPath, TablePath, FormatQuery),
    request_body = PutRecord<Attributes>,
    responses(
        (status = 200, body = WriteResult),
        RecordWrite,
    )
)]
pub async fn post(
    WriteDb(db): WriteDb,
    PathParams(path): PathParams<TablePath>,
    format: Format,
    if_match: IfMatch,
    body: RawBody,
) -> ApiResult<Json<WriteResult>> {
    let put = body.parse(move |body| put_of(body, format, None, if_match)).await?;
    Ok(Json(db.put_record(&path.table, put).await?))
}

/// Delete a record: a tombstone on `rev` (the current winner when absent).
#[utoipa::path(
    delete, path = "/dbs/{db}/tables/{table}/records/{id}", tag = "records", operation_id = "delete_record",
    params(DbPath, RecordPath, DeleteQuery),
    responses(
        (status = 200, body = WriteResult),
        InvalidParameter,
        (status = 404, description = "No such database, table or record", body = Error),
        (status = 409, description = "The named revision is not a current leaf", body = Error),
    )
)]
pub async fn delete(
    WriteDb(db): WriteDb,
    PathParams(path): PathParams<RecordPath>,
    Query(query): Query<DeleteQuery>,
    if_match: IfMatch,
) -> ApiResult<Json<WriteResult>> {
    let rev = if_match.merge(query.rev)?;
    Ok(Json(db.delete_record(&path.table, &path.id, rev).await?))
}

/// Many writes in one transaction, each with its own result.
#[utoipa::path(
    post, path = "/dbs/{db}/bulk", tag = "records", operation_id = "write_batch", params(DbPath, FormatQuery),
    request_body = BulkRequest<Attributes>,
    responses(
        (status = 200, body = BulkResponse),
        InvalidBody,
        OfDatabase,
        (status = 413, description = "Too many operations, or body over the limit", body = Error),
    )
)]
pub async fn bulk(WriteDb(db): WriteDb, format: Format, body: RawBody) -> ApiResult<Json<BulkResponse>> {
    let ops = body.parse(move |body| parse_bulk(body, format)).await?;
    let results = db.write_batch(ops).await?;
    let results = results
        .into_iter()
        .map(|r| match r {
            Ok(written) => BulkItem::Written(written),
            Err(e) => BulkItem::Failed(public(e)),
        })
        .collect();
    Ok(Json(BulkResponse { results }))
}

/// `?id=` of the `/record` routes: record ids that cannot be a path segment (`.`, `..`) travel here.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IdQuery {
    /// The record id.
    pub id: String,
}

fn addressed(table: TablePath, id: IdQuery) -> PathParams<RecordPath> {
    PathParams(RecordPath { table: table.table, id: id.id })
}

/// `GET .../records/{id}` with the id in the query.
#[utoipa::path(
    get, path = "/dbs/{db}/tables/{table}/record", tag = "records", operation_id = "get_record_by_query",
    params(DbPath, TablePath, IdQuery, GetQuery, FormatQuery),
    responses(
        (status = 200, body = Record),
        InvalidParameter,
        (status = 404, description = "No such database, table, record or revision", body = Error),
    )
)]
pub async fn get_by_query(
    db: ReadDb,
    PathParams(table): PathParams<TablePath>,
    Query(id): Query<IdQuery>,
    query: Query<GetQuery>,
    format: Format,
) -> ApiResult<Response> {
    get(db, addressed(table, id), query, format).await
}

/// `PUT .../records/{id}` with the id in the query.
#[utoipa::path(
    put, path = "/dbs/{db}/tables/{table}/record", tag = "records", operation_id = "put_record_by_query",
    params(DbPath, TablePath, IdQuery, FormatQuery),
    request_body = PutRecord<Attributes>,
    responses(
        (status = 200, body = WriteResult),
        RecordWrite,
    )
)]
pub async fn put_by_query(
    db: WriteDb,
    PathParams(table): PathParams<TablePath>,
    Query(id): Query<IdQuery>,
    format: Format,
    if_match: IfMatch,
    body: RawBody,
) -> ApiResult<Json<WriteResult>> {
    put(db, addressed(table, id), format, if_match, body).await
}

/// `DELETE .../records/{id}` with the id in the query.
#[utoipa::path(
    delete, path = "/dbs/{db}/tables/{table}/record", tag = "records", operation_id = "delete_record_by_query",
    params(DbPath, TablePath, IdQuery, DeleteQuery),
    responses(
        (status = 200, body = WriteResult),
        InvalidParameter,
        (status = 404, description = "No such database, table or record", body = Error),
        (status = 409, description = "The named revision is not a current leaf", body = Error),
    )
)]
pub async fn delete_by_query(
    db: WriteDb,
    PathParams(table): PathParams<TablePath>,
    Query(id): Query<IdQuery>,
    query: Query<DeleteQuery>,
    if_match: IfMatch,
) -> ApiResult<Json<WriteResult>> {
    delete(db, addressed(table, id), query, if_match).await
}
