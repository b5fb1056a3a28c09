//! What a replicating CouchDB peer asks of a database (SPEC §17): `_revs_diff` (which revisions it
//! lacks), `_bulk_get` (revisions with their `_revisions` history) and `_bulk_docs` — with
//! `new_edits: false`, revisions the peer made, stored as foreign revisions under their own ids (the
//! engine takes one as native when its body hashes to its id), parents first; a document Outpost
//! refuses is answered `forbidden` on its own, so that PouchDB counts it denied and goes on, while a
//! failure of the server fails the request, so that PouchDB tries it again.

use std::collections::{HashMap, HashSet};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{Extensions, StatusCode};
use axum::Json;
use outpost_api::{Body, Error, ErrorKind, RecordRevs, RevId, RevisionData, WriteOp, WriteOpKind};
use serde_json::{json, Map, Value};

use crate::error::{CouchError, CouchResult};
use crate::{doc, json_body_sized, off_workers, Couch, Need, Table};

/// `POST _revs_diff`: `{id: [rev, …]}` → `{id: {"missing": [rev, …]}}` for the ids with missing ones.
pub async fn revs_diff(
    State(couch): State<Couch>,
    ext: Extensions,
    Path((db, table)): Path<(String, String)>,
    body: Bytes,
) -> CouchResult<Json<Value>> {
    let t = couch.table(&ext, &db, &table, Need::Read).await?;
    let Value::Object(asked) = json_body_sized(body).await? else {
        return Err(CouchError::bad_request("_revs_diff takes an object of document ids to revision lists"));
    };
    too_many(asked.len(), couch.host.limits().max_request_entries, "_revs_diff")?;
    let mut have = Vec::with_capacity(asked.len());
    // Revision ids Outpost cannot hold (not <generation>-<32 hex>) are missing, as they are.
    let mut unheld: HashMap<String, Vec<String>> = HashMap::new();
    for (id, revs) in asked {
        let Value::Array(revs) = revs else {
            return Err(CouchError::bad_request(format!("_revs_diff: the revisions of {id:?} are not a list")));
        };
        let mut parsed = Vec::new();
        for r in revs {
            let text = r.as_str().ok_or_else(|| CouchError::bad_request("_revs_diff: a revision is not a string"))?;
            match text.parse::<RevId>() {
                Ok(rev) => parsed.push(rev),
                Err(_) => unheld.entry(id.clone()).or_default().push(text.to_owned()),
            }
        }
        have.push(RecordRevs { table: t.name.clone(), id, revs: parsed });
    }
    let mut out = Map::new();
    for missing in t.db.revs_diff(have).await? {
        let revs: Vec<Value> = missing.revs.iter().map(|r| json!(r.to_string())).collect();
        out.insert(missing.id, json!({"missing": revs}));
    }
    for (id, revs) in unheld {
        let entry = out.entry(id).or_insert_with(|| json!({"missing": []}));
        if let Some(list) = entry["missing"].as_array_mut() {
            list.extend(revs.into_iter().map(Value::String));
        }
    }
    Ok(Json(Value::Object(out)))
}

/// `POST _bulk_get?revs=true`: `{"docs": [{"id", "rev"?}, …]}` → `{"results": [{"id", "docs":
/// [{"ok": doc} | {"error": {…}}]}, …]}`, each document with `_revisions` when `revs` is asked.
pub async fn bulk_get(
    State(couch): State<Couch>,
    ext: Extensions,
    Path((db, table)): Path<(String, String)>,
    axum::extract::Query(query): axum::extract::Query<HashMap<String, String>>,
    body: Bytes,
) -> CouchResult<Json<Value>> {
    let t = couch.table(&ext, &db, &table, Need::Read).await?;
    let with_revs = query.get("revs").is_some_and(|v| v == "true");
    let docs = json_body_sized(body)
        .await?
        .get("docs")
        .and_then(Value::as_array)
        .cloned()
        .ok_or_else(|| CouchError::bad_request("_bulk_get takes {\"docs\": [{\"id\": …, \"rev\": …}, …]}"))?;
    too_many(docs.len(), couch.host.limits().max_request_entries, "_bulk_get")?;
    let mut asked: Vec<(String, Option<String>)> = Vec::with_capacity(docs.len());
    for d in &docs {
        let id = d
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| CouchError::bad_request("_bulk_get: a doc without id"))?;
        asked.push((id.to_owned(), d.get("rev").and_then(Value::as_str).map(str::to_owned)));
    }
    let results = fetch(&t, &asked, with_revs).await?;
    Ok(Json(json!({"results": results})))
}

/// The documents `asked` names (the winner where no rev is named), in order, as `_bulk_get` answers.
pub(crate) async fn fetch(t: &Table, asked: &[(String, Option<String>)], with_revs: bool) -> CouchResult<Vec<Value>> {
    // Revisions are fetched in rounds, each record at most once in a round, so that every revision's
    // history comes whole (one request of several revisions of a record shares their lines).
    let mut wanted: Vec<(usize, String, RevId)> = Vec::new();
    let mut answers: Vec<Option<Value>> = vec![None; asked.len()];
    for (i, (id, rev)) in asked.iter().enumerate() {
        let rev = match rev {
            Some(text) => match text.parse::<RevId>() {
                Ok(rev) => rev,
                Err(_) => {
                    answers[i] = Some(missing(id, text));
                    continue;
                }
            },
            None => match t.db.get_record(&t.name, id, Default::default()).await {
                Ok(record) => record.rev,
                Err(e) if e.kind == ErrorKind::NotFound => {
                    answers[i] = Some(missing(id, "undefined"));
                    continue;
                }
                Err(e) => return Err(e.into()),
            },
        };
        wanted.push((i, id.clone(), rev));
    }
    while !wanted.is_empty() {
        let mut round: Vec<(usize, String, RevId)> = Vec::new();
        let mut in_round: HashSet<String> = HashSet::new();
        let mut later = Vec::new();
        for w in wanted {
            if in_round.contains(&w.1) {
                later.push(w);
            } else {
                in_round.insert(w.1.clone());
                round.push(w);
            }
        }
        let request: Vec<RecordRevs> = round
            .iter()
            .map(|(_, id, rev)| RecordRevs { table: t.name.clone(), id: id.clone(), revs: vec![*rev] })
            .collect();
        let got = t.db.get_revisions(request).await?;
        for (i, id, rev) in round {
            let found = got.iter().find(|r| r.id == id && r.rev == rev);
            answers[i] = Some(match found {
                Some(r) if r.attributes.is_some() || r.deleted => {
                    let history: Vec<RevId> = std::iter::once(r.rev).chain(r.ancestry.iter().copied()).collect();
                    let attributes = r.attributes.as_ref().map(Body::attributes).unwrap_or_default();
                    let doc = doc::to_json(&r.id, r.rev, r.deleted, &attributes, with_revs.then_some(&history[..]));
                    json!({"id": id, "docs": [{"ok": doc}]})
                }
                // Unknown, known only by id, or its body compacted.
                _ => missing(&id, &rev.to_string()),
            });
        }
        wanted = later;
    }
    Ok(answers.into_iter().map(|a| a.unwrap_or(Value::Null)).collect())
}

fn missing(id: &str, rev: &str) -> Value {
    json!({"id": id, "docs": [{"error": {"id": id, "rev": rev, "error": "not_found", "reason": "missing"}}]})
}

/// `POST _bulk_docs`: `{"docs": [...], "new_edits"?: bool}`. 201 with one result per document (with
/// `new_edits: false`, only the refusals, as CouchDB answers).
pub async fn bulk_docs(
    State(couch): State<Couch>,
    ext: Extensions,
    Path((db, table)): Path<(String, String)>,
    body: Bytes,
) -> CouchResult<(StatusCode, Json<Value>)> {
    let t = couch.table(&ext, &db, &table, Need::Write).await?;
    let mut body = json_body_sized(body).await?;
    let new_edits = body.get("new_edits").and_then(Value::as_bool).unwrap_or(true);
    let Some(Value::Array(docs)) = body.get_mut("docs").map(Value::take) else {
        return Err(CouchError::bad_request("_bulk_docs takes {\"docs\": [...]}"));
    };
    too_many(docs.len(), couch.host.limits().max_bulk_ops, "_bulk_docs")?;
    let results = if new_edits { edit(&t, docs).await? } else { replicate(&t, docs).await? };
    Ok((StatusCode::CREATED, Json(Value::Array(results))))
}

/// The result of a refused document.
fn refused(id: Option<&str>, rev: Option<&str>, e: &CouchError) -> Value {
    // PouchDB reads `status` (else it reports 500) and needs `id` to report a denied document.
    json!({"id": id, "rev": rev, "error": e.error, "reason": e.reason, "status": e.status.as_u16()})
}

/// `new_edits: false`: revisions made by the peer, stored as they are, in one `put_revisions` when
/// the batch is taken; when it is refused for what a document holds, the batch is halved until each
/// refused document stands alone (a few commits for a few bad documents, never one per document), and
/// only those are refused (`forbidden`, which PouchDB counts as denied).
pub(crate) async fn replicate(t: &Table, docs: Vec<Value>) -> CouchResult<Vec<Value>> {
    let table = t.name.clone();
    // Converting and digesting the bodies is CPU work: off the async workers.
    let (mut results, revisions) = off_workers(move || {
        let mut results = Vec::new();
        let mut revisions: Vec<RevisionData> = Vec::with_capacity(docs.len());
        for d in docs {
            let (id, rev) = ids_of(&d);
            match doc::parse(d).and_then(|parsed| doc::replicated(&table, parsed)) {
                Ok(r) => revisions.push(r),
                Err(e) => results.push(refused(id.as_deref(), rev.as_deref(), &as_denied(e))),
            }
        }
        Ok((results, revisions))
    })
    .await?;
    let mut parts = vec![revisions];
    while let Some(part) = parts.pop() {
        if part.is_empty() {
            continue;
        }
        match t.db.put_revisions(part.clone(), None).await {
            Ok(_) => {}
            Err(e) if !refuses_content(&e) => return Err(e.into()),
            Err(e) if part.len() == 1 => {
                let (id, rev) = (part[0].id.clone(), part[0].rev.to_string());
                results.push(refused(Some(&id), Some(&rev), &as_denied(e.into())));
            }
            Err(_) => {
                let mut part = part;
                let second = part.split_off(part.len() / 2);
                parts.push(second);
                parts.push(part);
            }
        }
    }
    Ok(results)
}

/// A sent document's `_id` and `_rev`, whatever else it holds.
fn ids_of(d: &Value) -> (Option<String>, Option<String>) {
    let text = |k: &str| d.get(k).and_then(Value::as_str).map(str::to_owned);
    (text("_id"), text("_rev"))
}

/// 413 for a request naming more than `max` entries.
fn too_many(n: usize, max: usize, what: &str) -> CouchResult<()> {
    if n > max {
        return Err(CouchError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("{what} names {n} documents; the limit is {max}: send them in smaller batches"),
        ));
    }
    Ok(())
}

/// Whether an error refuses what was sent (so sending it again cannot help) rather than tells of
/// the server's trouble.
fn refuses_content(e: &Error) -> bool {
    matches!(e.kind, ErrorKind::InvalidInput | ErrorKind::Corrupt | ErrorKind::Forbidden | ErrorKind::TooLarge)
}

/// A refusal of a replicated document as PouchDB must see it: `forbidden`, whatever the cause.
fn as_denied(e: CouchError) -> CouchError {
    if e.is_permanent() {
        CouchError::forbidden(e.reason)
    } else {
        e
    }
}

/// New edits: each document a local write on the revision it names (`_rev`), a delete for
/// `_deleted`; one result each, `{"ok": true, "id", "rev"}` or the error.
pub(crate) async fn edit(t: &Table, docs: Vec<Value>) -> CouchResult<Vec<Value>> {
    let mut results: Vec<Option<Value>> = vec![None; docs.len()];
    let mut ops = Vec::new();
    let mut at = Vec::new();
    for (i, d) in docs.into_iter().enumerate() {
        let (sent_id, _) = ids_of(&d);
        let parsed = doc::parse(d).and_then(|p| {
            if let Some(id) = &p.id {
                doc::check_id(id)?;
            }
            let rev = p.rev.as_deref().map(doc::rev).transpose()?;
            // CouchDB deletes only the revision named.
            if p.deleted && rev.is_none() {
                return Err(CouchError::conflict());
            }
            Ok((p, rev))
        });
        match parsed {
            Ok((p, rev)) => {
                let op = if p.deleted { WriteOpKind::Delete } else { WriteOpKind::Put };
                let attributes = if p.deleted { Default::default() } else { p.attributes };
                at.push((i, p.id.clone()));
                ops.push(WriteOp { op, table: t.name.clone(), id: p.id, rev, attributes, resolves: vec![] });
            }
            Err(e) => results[i] = Some(refused(sent_id.as_deref(), None, &e)),
        }
    }
    if !ops.is_empty() {
        for ((i, id), r) in at.into_iter().zip(t.db.write_batch(ops).await?) {
            results[i] = Some(match r {
                Ok(w) => json!({"ok": true, "id": w.id, "rev": w.rev.to_string()}),
                Err(e) if e.kind == ErrorKind::Conflict => {
                    json!({"id": id, "error": "conflict", "reason": "Document update conflict."})
                }
                Err(e) => {
                    let e = CouchError::from(e);
                    json!({"id": id, "error": e.error, "reason": e.reason})
                }
            });
        }
    }
    Ok(results.into_iter().map(|r| r.unwrap_or(Value::Null)).collect())
}
