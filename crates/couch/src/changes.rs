//! `_changes` (SPEC §17): one table's slice of the database's changes feed in CouchDB's shape,
//! `style=all_docs` listing every leaf, sequences as opaque strings that carry the epoch; `feed=longpoll`
//! waits for a change (sending a newline every `heartbeat` ms meanwhile, as CouchDB does, so proxies
//! and clients see the connection alive); `filter=_doc_ids` keeps the documents named.

use std::collections::HashSet;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, Extensions};
use axum::response::{IntoResponse, Response};
use outpost_api::{ChangesRequest, ErrorKind, GetOptions, MAX_PAGE};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{CouchError, CouchResult};
use crate::{doc, json_body_sized, seq, Couch, Need, Table};

/// The longest a long-poll waits for a change (CouchDB's default `timeout`).
const MAX_WAIT: Duration = Duration::from_secs(60);
/// The shortest heartbeat taken: a client asking for more is answered with this.
const MIN_HEARTBEAT: Duration = Duration::from_millis(1000);
/// Feed pages read to fill one answer when a filter skips what they hold.
const MAX_PAGES: usize = 20;

/// The query parameters of `_changes`; others are ignored, as CouchDB ignores what it does not use.
#[derive(Deserialize, Default)]
pub struct ChangesQuery {
    since: Option<String>,
    limit: Option<u64>,
    style: Option<String>,
    feed: Option<String>,
    heartbeat: Option<String>,
    timeout: Option<u64>,
    include_docs: Option<bool>,
    filter: Option<String>,
    doc_ids: Option<String>,
}

/// `GET _changes`.
pub async fn get(
    State(couch): State<Couch>,
    ext: Extensions,
    Path((db, table)): Path<(String, String)>,
    Query(query): Query<ChangesQuery>,
) -> CouchResult<Response> {
    let doc_ids = match &query.doc_ids {
        Some(text) => Some(
            serde_json::from_str::<Vec<String>>(text)
                .map_err(|e| CouchError::bad_request(format!("doc_ids must be a JSON array of strings: {e}")))?,
        ),
        None => None,
    };
    changes(&couch, &ext, couch.table(&ext, &db, &table, Need::Read).await?, query, doc_ids).await
}

/// `POST _changes`: the same, `doc_ids` in the body.
pub async fn post(
    State(couch): State<Couch>,
    ext: Extensions,
    Path((db, table)): Path<(String, String)>,
    Query(query): Query<ChangesQuery>,
    body: Bytes,
) -> CouchResult<Response> {
    let t = couch.table(&ext, &db, &table, Need::Read).await?;
    let doc_ids = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let body = json_body_sized(body).await?;
        match body.get("doc_ids") {
            None | Some(Value::Null) => None,
            Some(ids) => Some(
                serde_json::from_value::<Vec<String>>(ids.clone())
                    .map_err(|e| CouchError::bad_request(format!("doc_ids must be an array of strings: {e}")))?,
            ),
        }
    };
    changes(&couch, &ext, t, query, doc_ids).await
}

/// What one answer holds: its results and where the client goes on from.
struct Answer {
    results: Vec<Value>,
    last_seq: u64,
    pending: u64,
}

async fn changes(
    couch: &Couch,
    ext: &Extensions,
    t: Table,
    query: ChangesQuery,
    doc_ids: Option<Vec<String>>,
) -> CouchResult<Response> {
    let (epoch, head) = t.position().await?;
    let since = seq::since_text(query.since.as_deref().unwrap_or("0"), epoch, head)?;
    let limit = query.limit.unwrap_or(MAX_PAGE as u64).clamp(1, MAX_PAGE as u64) as usize;
    let ids = match (query.filter.as_deref(), doc_ids) {
        (Some("_doc_ids"), Some(ids)) if ids.len() > couch.host.limits().max_request_entries => {
            return Err(CouchError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("doc_ids names more than {} documents", couch.host.limits().max_request_entries),
            ))
        }
        (Some("_doc_ids"), Some(ids)) => Some(ids.into_iter().collect::<HashSet<String>>()),
        (Some("_doc_ids"), None) => return Err(CouchError::bad_request("filter=_doc_ids needs doc_ids")),
        (Some(other), _) => {
            return Err(CouchError::bad_request(format!(
                "filter {other:?} is not supported: Outpost runs no design-document code (only _doc_ids)"
            )))
        }
        (None, _) => None,
    };
    let options = Options {
        all_docs: query.style.as_deref() == Some("all_docs"),
        include_docs: query.include_docs.unwrap_or(false),
        limit,
        ids,
    };
    let longpoll = matches!(query.feed.as_deref(), Some("longpoll") | Some("continuous") | Some("eventsource"));
    if !longpoll {
        let answer = read(&t, since, &options).await?;
        return Ok(respond(answer, epoch));
    }
    let wait = query.timeout.map_or(MAX_WAIT, |ms| Duration::from_millis(ms).min(MAX_WAIT));
    let heartbeat = match query.heartbeat.as_deref() {
        None | Some("false") => None,
        Some("true") => Some(Duration::from_secs(60)),
        Some(ms) => Some(
            Duration::from_millis(
                ms.parse().map_err(|_| CouchError::bad_request(format!("heartbeat {ms:?} is not a number")))?,
            )
            .max(MIN_HEARTBEAT),
        ),
    };
    // A poll that may wait holds a place among the server's feeds while it is open.
    let slot = couch.host.feed(ext)?;
    let stopping = couch.host.stopping(ext);
    let poll = async move {
        // A server shutting down answers with what there is now instead of waiting on.
        let answer = tokio::select! {
            answer = long_poll(&t, since, &options, wait) => answer?,
            () = stopping => read(&t, since, &options).await?,
        };
        drop(slot);
        Ok::<_, CouchError>(answer)
    };
    let Some(heartbeat) = heartbeat else {
        return Ok(respond(poll.await?, epoch));
    };
    // Newlines while waiting, then the answer, in one streamed body.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        let mut poll = std::pin::pin!(poll);
        let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        let body = loop {
            tokio::select! {
                answer = &mut poll => break match answer {
                    Ok(answer) => body_of(&answer, epoch),
                    // The status is sent already: the error goes in the body, as CouchDB does.
                    Err(e) => json!({"error": e.error, "reason": e.reason}).to_string(),
                },
                _ = beat.tick() => {
                    if tx.send(Ok(Bytes::from_static(b"\n"))).await.is_err() {
                        return;
                    }
                }
                // The client went away: the poll (and its feed place) ends now, not at the next beat.
                () = tx.closed() => return,
            }
        };
        let _ = tx.send(Ok(Bytes::from(body))).await;
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    Ok(([(header::CONTENT_TYPE, "application/json")], Body::from_stream(stream)).into_response())
}

/// What to list of each change.
struct Options {
    all_docs: bool,
    include_docs: bool,
    limit: usize,
    ids: Option<HashSet<String>>,
}

/// Wait up to `wait` for a change after `since`, then answer (empty when none came). Each read goes on
/// from where the one before ended, so a commit reads only what it added; a stretch of the feed that
/// the filters skip entirely (more than one answer's pages) is answered at once, empty, with the
/// `last_seq` the client goes on from.
async fn long_poll(t: &Table, since: u64, options: &Options, wait: Duration) -> CouchResult<Answer> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut from = since;
    loop {
        let answer = read(t, from, options).await?;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if !answer.results.is_empty() || answer.pending > 0 || left.is_zero() {
            return Ok(answer);
        }
        // Drained: woken by any commit of the database; one of another table reads empty and waits on.
        from = answer.last_seq;
        t.db.wait_for_changes(from, left).await?;
    }
}

/// One answer from `since`: pages of the database's feed filtered to the table (and the ids asked
/// for), until `limit` results or the end.
async fn read(t: &Table, since: u64, options: &Options) -> CouchResult<Answer> {
    let mut results = Vec::new();
    let mut at = since;
    let mut pending = 0;
    for _ in 0..MAX_PAGES {
        let request =
            ChangesRequest { since: at, limit: options.limit - results.len(), tables: Some(vec![t.name.clone()]) };
        let page = t.db.changes(request).await?;
        for c in page.changes {
            // The feed of a table carries its definition record too.
            if c.table != t.name
                || !doc::is_document_id(&c.id)
                || options.ids.as_ref().is_some_and(|ids| !ids.contains(&c.id))
            {
                continue;
            }
            let revs: Vec<Value> = if options.all_docs {
                c.leaves.iter().map(|r| json!({"rev": r.to_string()})).collect()
            } else {
                vec![json!({"rev": c.rev.to_string()})]
            };
            let mut entry = json!({"seq": c.seq, "id": c.id, "changes": revs});
            if c.deleted {
                entry["deleted"] = json!(true);
            }
            if options.include_docs {
                entry["doc"] = if c.deleted {
                    json!({"_id": c.id, "_rev": c.rev.to_string(), "_deleted": true})
                } else {
                    current_doc(t, &c.id).await?
                };
            }
            results.push(entry);
        }
        at = page.last_seq;
        pending = page.pending;
        if pending == 0 || results.len() >= options.limit {
            break;
        }
    }
    Ok(Answer { results, last_seq: at, pending })
}

/// A record's winner as a document (a tombstone as `_deleted`), for `include_docs`.
async fn current_doc(t: &Table, id: &str) -> CouchResult<Value> {
    match t.db.get_record(&t.name, id, GetOptions::default()).await {
        Ok(r) => Ok(doc::to_json(id, r.rev, r.deleted, &r.attributes, None)),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(Value::Null),
        Err(e) => Err(e.into()),
    }
}

fn body_of(answer: &Answer, epoch: outpost_api::Uuid) -> String {
    let results: Vec<Value> = answer
        .results
        .iter()
        .map(|r| {
            let mut r = r.clone();
            let seq = r["seq"].as_u64().unwrap_or(0);
            r["seq"] = json!(seq::format(seq, epoch));
            r
        })
        .collect();
    json!({"results": results, "last_seq": seq::format(answer.last_seq, epoch), "pending": answer.pending}).to_string()
}

fn respond(answer: Answer, epoch: outpost_api::Uuid) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body_of(&answer, epoch)).into_response()
}
