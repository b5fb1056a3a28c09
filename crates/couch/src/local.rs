//! `_local/{id}` documents (SPEC §17): a replicating PouchDB's checkpoints, kept per table through
//! `LocalDocs` — never replicated, never in `_changes` — with CouchDB's `_rev` of `0-N`.

use axum::body::Bytes;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::Json;
use outpost_api::ErrorKind;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{CouchError, CouchResult};
use crate::{json_body_sized, DocId, ReadTable, WriteTable};

/// `0-N` → N. A revision that is not ours cannot be the current one: a conflict.
fn local_rev(text: &str) -> CouchResult<u64> {
    text.strip_prefix("0-").and_then(|n| n.parse().ok()).ok_or_else(CouchError::conflict)
}

/// `GET _local/{id}`.
pub(crate) async fn get(ReadTable(t): ReadTable, DocId(id): DocId) -> CouchResult<Json<Value>> {
    let doc = t.db.get_local(&t.name, &id).await.map_err(|e| {
        if e.kind == ErrorKind::NotFound {
            CouchError::not_found("missing")
        } else {
            e.into()
        }
    })?;
    let mut out = doc.body;
    out.insert("_id".into(), json!(format!("_local/{id}")));
    out.insert("_rev".into(), json!(format!("0-{}", doc.rev)));
    Ok(Json(Value::Object(out)))
}

/// `PUT _local/{id}`: written when its `_rev` is the stored one (none to create).
pub(crate) async fn put(
    WriteTable(t): WriteTable,
    DocId(id): DocId,
    body: Bytes,
) -> CouchResult<(StatusCode, Json<Value>)> {
    let Value::Object(mut body) = json_body_sized(body).await? else {
        return Err(CouchError::bad_request("Document must be a JSON object"));
    };
    body.remove("_id");
    let rev = match body.remove("_rev") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(local_rev(&text)?),
        Some(other) => return Err(CouchError::bad_request(format!("_rev {other} is not a string"))),
    };
    let rev = t.db.put_local(&t.name, &id, rev, Some(body)).await.map_err(local_conflict)?;
    Ok((StatusCode::CREATED, Json(json!({"ok": true, "id": format!("_local/{id}"), "rev": format!("0-{rev}")}))))
}

/// `?rev=` of a delete.
#[derive(Deserialize)]
pub struct RevQuery {
    rev: Option<String>,
}

/// `DELETE _local/{id}?rev=0-N`.
pub(crate) async fn delete(
    WriteTable(t): WriteTable,
    DocId(id): DocId,
    Query(query): Query<RevQuery>,
) -> CouchResult<Json<Value>> {
    let rev = match query.rev.as_deref() {
        Some(text) => local_rev(text)?,
        None => t.db.get_local(&t.name, &id).await.map_err(local_conflict)?.rev,
    };
    t.db.put_local(&t.name, &id, Some(rev), None).await.map_err(local_conflict)?;
    Ok(Json(json!({"ok": true, "id": format!("_local/{id}"), "rev": "0-0"})))
}

fn local_conflict(e: outpost_api::Error) -> CouchError {
    match e.kind {
        ErrorKind::Conflict => CouchError::conflict(),
        ErrorKind::NotFound => CouchError::not_found("missing"),
        _ => e.into(),
    }
}
