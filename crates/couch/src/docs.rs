//! The document API for applications (SPEC §17): a document read (the winner, a revision, or
//! `open_revs` with their histories), written (`PUT`/`POST`, a local write on the revision it names),
//! deleted, and `_all_docs`, in CouchDB's shapes. Design documents are stored as documents and never
//! run. Ids are ordered by their UTF-8 bytes (CouchDB's raw collation).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::Query;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use outpost_api::{ErrorKind, GetOptions, ListOptions, PutRecord, RevId, MAX_PAGE};
use serde_json::{json, Value};

use crate::error::{CouchError, CouchResult};
use crate::replication::{fetch, replicate};
use crate::{doc, json_body_sized, DocId, ReadTable, Table, WriteTable};

type Params = HashMap<String, String>;

fn flag(params: &Params, name: &str) -> bool {
    params.get(name).is_some_and(|v| v == "true")
}

/// A query parameter holding JSON (`startkey="a"`, `open_revs=["1-…"]`); 400 when it does not parse.
fn json_param(params: &Params, name: &str) -> CouchResult<Option<Value>> {
    params
        .get(name)
        .map(|text| serde_json::from_str(text).map_err(|e| CouchError::bad_request(format!("{name} is not JSON: {e}"))))
        .transpose()
}

/// `GET {table}/{id}` and `GET {table}/_design/{id}`.
pub(crate) async fn get(
    ReadTable(t): ReadTable,
    DocId(id): DocId,
    Query(params): Query<Params>,
) -> CouchResult<Json<Value>> {
    read(t, &id, &params).await
}

async fn read(t: Table, id: &str, params: &Params) -> CouchResult<Json<Value>> {
    let with_revs = flag(params, "revs");
    if let Some(open) = params.get("open_revs") {
        let revs: Vec<Option<String>> = if open == "all" {
            match t.db.get_record(&t.name, id, GetOptions { conflicts: true, ..GetOptions::default() }).await {
                Ok(r) => {
                    std::iter::once(r.rev).chain(r.conflicts.unwrap_or_default()).map(|r| Some(r.to_string())).collect()
                }
                Err(e) if e.kind == ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(e.into()),
            }
        } else {
            let list: Vec<String> = serde_json::from_str(open)
                .map_err(|e| CouchError::bad_request(format!("open_revs must be \"all\" or a JSON list: {e}")))?;
            list.into_iter().map(Some).collect()
        };
        let asked: Vec<(String, Option<String>)> = revs.into_iter().map(|r| (id.to_owned(), r)).collect();
        let results = fetch(&t, &asked, with_revs).await?;
        // `_bulk_get`'s entries, turned into `open_revs`' `{"ok": doc}` / `{"missing": rev}`.
        let out: Vec<Value> = results
            .into_iter()
            .filter_map(|r| r["docs"].get(0).cloned())
            .map(|d| match d.get("error") {
                Some(e) => json!({"missing": e["rev"]}),
                None => d,
            })
            .collect();
        return Ok(Json(Value::Array(out)));
    }
    let rev = params.get("rev").map(|r| doc::rev(r).map_err(|_| CouchError::not_found("missing"))).transpose()?;
    let options = GetOptions { rev, conflicts: flag(params, "conflicts"), revs: with_revs };
    let record = match t.db.get_record(&t.name, id, options).await {
        Ok(r) => r,
        Err(e) if e.kind == ErrorKind::NotFound => {
            return Err(CouchError::not_found(if rev.is_none() && deleted(&t, id).await? {
                "deleted"
            } else {
                "missing"
            }))
        }
        Err(e) => return Err(e.into()),
    };
    let mut out = doc::to_json(id, record.rev, record.deleted, &record.attributes, record.revisions.as_deref());
    if let Some(conflicts) = record.conflicts.filter(|c| !c.is_empty()) {
        out["_conflicts"] = json!(conflicts.iter().map(RevId::to_string).collect::<Vec<_>>());
    }
    Ok(Json(out))
}

/// Whether record `id` exists with a deleted winner (CouchDB says `deleted` rather than `missing`).
async fn deleted(t: &Table, id: &str) -> CouchResult<bool> {
    let options = ListOptions { after: predecessor(id), limit: 1, include_deleted: true };
    let page = t.db.list_records(&t.name, options).await?;
    Ok(page.records.first().is_some_and(|r| r.id == id && r.deleted))
}

/// An id just before `id` in byte order when one can be written (`id` minus its last byte, when that
/// byte was the smallest, is a prefix, which sorts before it); `None` from the start.
fn predecessor(id: &str) -> Option<String> {
    let mut bytes = id.as_bytes().to_vec();
    let last = bytes.pop()?;
    if last > 0x01 && last < 0x80 {
        bytes.push(last - 1);
        bytes.extend_from_slice("\u{10FFFF}".as_bytes());
    }
    String::from_utf8(bytes).ok()
}

/// `PUT {table}/{id}` (and `_design/{id}`): a local write on `_rev` (or `?rev=`, or `If-Match`);
/// with `?new_edits=false`, a revision the client made, stored as it is.
pub(crate) async fn put(
    WriteTable(t): WriteTable,
    DocId(id): DocId,
    Query(params): Query<Params>,
    headers: HeaderMap,
    body: Bytes,
) -> CouchResult<(StatusCode, Json<Value>)> {
    write(t, id, &params, &headers, body).await
}

/// `POST {table}`: a new document, its id `_id` or generated.
pub(crate) async fn post(WriteTable(t): WriteTable, body: Bytes) -> CouchResult<(StatusCode, Json<Value>)> {
    let parsed = doc::parse(json_body_sized(body).await?)?;
    if let Some(id) = &parsed.id {
        doc::check_id(id)?;
    }
    let rev = parsed.rev.as_deref().map(doc::rev).transpose()?;
    let put = PutRecord { id: parsed.id, rev, attributes: parsed.attributes, resolves: vec![] };
    let w = t.db.put_record(&t.name, put).await.map_err(conflict)?;
    Ok((StatusCode::CREATED, Json(json!({"ok": true, "id": w.id, "rev": w.rev.to_string()}))))
}

fn conflict(e: outpost_api::Error) -> CouchError {
    if e.kind == ErrorKind::Conflict {
        CouchError::conflict()
    } else {
        e.into()
    }
}

async fn write(
    t: Table,
    id: String,
    params: &Params,
    headers: &HeaderMap,
    body: Bytes,
) -> CouchResult<(StatusCode, Json<Value>)> {
    doc::check_id(&id)?;
    let mut json = json_body_sized(body).await?;
    let Some(members) = json.as_object_mut() else {
        return Err(CouchError::bad_request("Document must be a JSON object"));
    };
    if params.get("new_edits").is_some_and(|v| v == "false") {
        members.insert("_id".into(), json!(id));
        let rev = json.get("_rev").cloned();
        if let Some(refusal) = replicate(&t, vec![json]).await?.into_iter().next() {
            let status = if refusal["error"] == "forbidden" { StatusCode::FORBIDDEN } else { StatusCode::BAD_REQUEST };
            return Err(CouchError::new(status, "forbidden", refusal["reason"].as_str().unwrap_or("refused")));
        }
        return Ok((StatusCode::CREATED, Json(json!({"ok": true, "id": id, "rev": rev}))));
    }
    let parsed = doc::parse(json)?;
    if parsed.id.as_ref().is_some_and(|body_id| *body_id != id) {
        return Err(CouchError::bad_request("the document's _id is not the one in the URL"));
    }
    let if_match = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()).map(|v| v.trim_matches('"').to_owned());
    let rev_text = parsed.rev.clone().or_else(|| params.get("rev").cloned()).or(if_match);
    let rev = rev_text.as_deref().map(doc::rev).transpose().map_err(|_| CouchError::conflict())?;
    let w = if parsed.deleted {
        let Some(rev) = rev else { return Err(CouchError::conflict()) };
        t.db.delete_record(&t.name, &id, Some(rev)).await
    } else {
        let put = PutRecord { id: Some(id), rev, attributes: parsed.attributes, resolves: vec![] };
        t.db.put_record(&t.name, put).await
    }
    .map_err(conflict)?;
    Ok((StatusCode::CREATED, Json(json!({"ok": true, "id": w.id, "rev": w.rev.to_string()}))))
}

/// `DELETE {table}/{id}?rev=` (and `_design/{id}`).
pub(crate) async fn delete(
    WriteTable(t): WriteTable,
    DocId(id): DocId,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> CouchResult<Json<Value>> {
    remove(t, &id, &params, &headers).await
}

async fn remove(t: Table, id: &str, params: &Params, headers: &HeaderMap) -> CouchResult<Json<Value>> {
    let if_match = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()).map(|v| v.trim_matches('"').to_owned());
    // CouchDB deletes only the revision named.
    let Some(text) = params.get("rev").cloned().or(if_match) else { return Err(CouchError::conflict()) };
    let rev = doc::rev(&text).map_err(|_| CouchError::conflict())?;
    let w = t.db.delete_record(&t.name, id, Some(rev)).await.map_err(conflict)?;
    Ok(Json(json!({"ok": true, "id": w.id, "rev": w.rev.to_string()})))
}

/// `GET _all_docs`.
pub(crate) async fn all_docs_get(ReadTable(t): ReadTable, Query(params): Query<Params>) -> CouchResult<Json<Value>> {
    let keys = json_param(&params, "keys")?;
    all_docs(t, &params, keys).await
}

/// `POST _all_docs`: `keys` in the body.
pub(crate) async fn all_docs_post(
    ReadTable(t): ReadTable,
    Query(params): Query<Params>,
    body: Bytes,
) -> CouchResult<Json<Value>> {
    let keys =
        if body.iter().all(u8::is_ascii_whitespace) { None } else { json_body_sized(body).await?.get("keys").cloned() };
    all_docs(t, &params, keys).await
}

async fn all_docs(t: Table, params: &Params, keys: Option<Value>) -> CouchResult<Json<Value>> {
    if flag(params, "descending") {
        return Err(CouchError::bad_request("descending is not supported by Outpost's _all_docs"));
    }
    let include_docs = flag(params, "include_docs");
    let row = |r: &outpost_api::Record| {
        let mut row = json!({"id": r.id, "key": r.id, "value": {"rev": r.rev.to_string()}});
        if include_docs {
            row["doc"] = doc::to_json(&r.id, r.rev, r.deleted, &r.attributes, None);
        }
        row
    };
    let mut rows = Vec::new();
    if let Some(keys) = keys {
        let keys: Vec<String> = serde_json::from_value(keys)
            .map_err(|e| CouchError::bad_request(format!("keys must be a list of ids: {e}")))?;
        if keys.len() > MAX_PAGE {
            return Err(CouchError::bad_request(format!("keys names more than {MAX_PAGE} documents")));
        }
        for key in keys {
            match t.db.get_record(&t.name, &key, GetOptions::default()).await {
                Ok(r) => rows.push(row(&r)),
                Err(e) if e.kind == ErrorKind::NotFound => rows.push(json!({"key": key, "error": "not_found"})),
                Err(e) => return Err(e.into()),
            }
        }
        return Ok(Json(json!({"total_rows": rows.len(), "offset": 0, "rows": rows})));
    }
    let text = |name: &str, alt: &str| -> CouchResult<Option<String>> {
        match json_param(params, name)?.or(json_param(params, alt)?) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(CouchError::bad_request(format!("{name} {other} is not a document id"))),
        }
    };
    let (start, end) =
        (text("startkey", "start_key")?.or(text("key", "key")?), text("endkey", "end_key")?.or(text("key", "key")?));
    let inclusive_end = params.get("inclusive_end").is_none_or(|v| v != "false");
    // One answer holds at most a page of rows; a client pages on with `startkey` or `skip`.
    let limit: usize = params
        .get("limit")
        .map(|l| l.parse().map_err(|_| CouchError::bad_request("limit is not a number")))
        .transpose()?
        .unwrap_or(MAX_PAGE)
        .min(MAX_PAGE);
    let mut skip: usize = params
        .get("skip")
        .map(|l| l.parse().map_err(|_| CouchError::bad_request("skip is not a number")))
        .transpose()?
        .unwrap_or(0);
    let mut after = start.as_deref().and_then(predecessor);
    let mut total = 0usize;
    loop {
        let page = t.db.list_records(&t.name, ListOptions { after, limit: MAX_PAGE, include_deleted: false }).await?;
        for r in &page.records {
            if start.as_ref().is_some_and(|s| r.id < *s) || !doc::is_document_id(&r.id) {
                continue;
            }
            let past_end = end.as_ref().is_some_and(|e| if inclusive_end { r.id > *e } else { r.id >= *e });
            if past_end {
                break;
            }
            total += 1;
            if skip > 0 {
                skip -= 1;
            } else if rows.len() < limit {
                rows.push(row(r));
            }
        }
        // The scan stops once the rows are full: past them, only the count would go on.
        let full = rows.len() >= limit;
        let done = full || page.records.last().is_some_and(|r| end.as_ref().is_some_and(|e| r.id >= *e));
        match page.next_after {
            Some(next) if !done => after = Some(next),
            _ => break,
        }
    }
    // The table's live documents when the rows are all of them from the start; else those counted.
    let total = if start.is_none() && end.is_none() { t.db.count_records(&t.name).await? as usize } else { total };
    Ok(Json(json!({"total_rows": total, "offset": 0, "rows": rows})))
}
