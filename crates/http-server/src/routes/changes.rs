//! The changes feed (`/dbs/{db}/changes`) as a page, a long-poll or server-sent events, and the bare
//! wait (`/dbs/{db}/wait`). Waiting is `ChangeReader::wait_for_changes`, woken by the write that
//! commits: nothing here polls.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, Stream};
use outpost_api::{Change, ChangesPage, ChangesRequest, Database, Error};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use utoipa::{IntoParams, ToSchema};

use super::responses::{InvalidParameter, OfDatabase};
use crate::access::Caller;
use crate::connections::FeedSlot;
use crate::error::{public, ApiError, ApiResult};
use crate::extract::{page_limit, DbPath, Query, ReadDb};
use crate::shutdown::Stop;
use crate::{AppState, HEARTBEAT};

/// `timeout` when not given, in milliseconds.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// The longest `timeout`, in milliseconds; longer ones are cut to it.
pub const MAX_TIMEOUT_MS: u64 = 300_000;

/// How the changes feed answers.
#[derive(Deserialize, ToSchema, Default, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum Feed {
    /// One page, at once.
    #[default]
    Normal,
    /// One page; when there is nothing after `since`, wait for a write or `timeout` first.
    Longpoll,
    /// `text/event-stream`: every change as an event, following the feed as writes continue.
    Sse,
}

/// `GET /dbs/{db}/changes` parameters.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChangesQuery {
    /// Entries with seq greater than this (default 0). For `sse`, `Last-Event-ID` takes precedence.
    pub since: Option<u64>,
    /// Most entries per page, 1-10000 (default 100).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<u64>,
    /// Only these tables (comma-separated) and their definition records.
    pub tables: Option<String>,
    /// `normal` (default), `longpoll` or `sse`.
    pub feed: Option<Feed>,
    /// Long-poll wait in milliseconds (default 30000, at most 300000).
    pub timeout: Option<u64>,
}

/// `GET /dbs/{db}/wait` parameters.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Wait for update_seq to pass this (default 0).
    pub since: Option<u64>,
    /// Most milliseconds to wait (default 30000, at most 300000).
    pub timeout: Option<u64>,
}

/// The answer of `/wait`.
#[derive(Serialize, ToSchema)]
pub struct UpdateSeq {
    /// The database's update_seq when the wait ended.
    pub update_seq: u64,
}

fn timeout_of(ms: Option<u64>) -> Duration {
    Duration::from_millis(ms.unwrap_or(DEFAULT_TIMEOUT_MS).min(MAX_TIMEOUT_MS))
}

fn last_event_id(headers: &HeaderMap) -> ApiResult<Option<u64>> {
    let Some(value) = headers.get("last-event-id") else { return Ok(None) };
    let text = value.to_str().unwrap_or_default().trim();
    text.parse::<u64>()
        .map(Some)
        .map_err(|_| ApiError(Error::invalid(format!("Last-Event-ID {text:?} is not a seq (an unsigned integer)"))))
}

/// A page of changes after `since`; with `feed=longpoll` it waits for a write when there is none,
/// with `feed=sse` it streams every change as an event (`id: <seq>`, `event: change`).
#[utoipa::path(
    get, path = "/dbs/{db}/changes", tag = "changes", operation_id = "changes", params(DbPath, ChangesQuery),
    responses(
        (status = 200, description = "A page (`normal`, `longpoll`); for `sse` a `text/event-stream` of \
            `ChangeEvent`s, with a `: heartbeat` comment line every 15 s while there is nothing to send",
            content((ChangesPage = "application/json"), (ChangeEvent = "text/event-stream"))),
        InvalidParameter,
        OfDatabase,
    )
)]
pub async fn changes(
    State(state): State<AppState>,
    caller: Caller,
    ReadDb(db): ReadDb,
    Query(query): Query<ChangesQuery>,
    headers: HeaderMap,
    mut stop: Stop,
) -> ApiResult<Response> {
    let feed = query.feed.unwrap_or_default();
    let since = match feed {
        Feed::Sse => last_event_id(&headers)?.or(query.since),
        _ => query.since,
    };
    let request = ChangesRequest {
        since: since.unwrap_or(0),
        limit: page_limit(query.limit)?,
        tables: query.tables.map(|t| if t.is_empty() { Vec::new() } else { t.split(',').map(str::to_owned).collect() }),
    };
    let timeout = timeout_of(query.timeout);
    // A feed that may wait holds a slot while it is open (SPEC §14: feeds are capped).
    let slot = match feed {
        Feed::Normal => None,
        Feed::Longpoll | Feed::Sse => Some(state.budgets.feed(&caller)?),
    };
    // The first page is read before answering, so that a bad request is a 4xx, not a broken stream.
    let page = db.changes(request.clone()).await?;
    match feed {
        Feed::Normal => Ok(streamed_page(page)),
        Feed::Longpoll => Ok(Json(long_poll(&*db, request, page, timeout, &mut stop).await?).into_response()),
        Feed::Sse => {
            let buffer = page.changes.into();
            let events = event_stream(EventFeed { db, request, buffer, stop, done: false, _slot: slot });
            Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat")).into_response())
        }
    }
}

/// Wait until a write brings changes after `request.since` (which, with a table filter, may take more
/// than one write) or the timeout passes; then answer a page. Shutdown ends the wait early.
async fn long_poll(
    db: &dyn Database,
    request: ChangesRequest,
    mut page: ChangesPage,
    timeout: Duration,
    stop: &mut Stop,
) -> ApiResult<ChangesPage> {
    let deadline = Instant::now() + timeout;
    while page.changes.is_empty() {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            break;
        }
        // Drained, `last_seq` is the update_seq the page was read at: wait for a write after it.
        let seen = page.last_seq;
        let woken = tokio::select! {
            seq = db.wait_for_changes(seen, remaining) => seq?,
            () = stop.wait() => seen,
        };
        if woken <= seen {
            break;
        }
        page = db.changes(request.clone()).await?;
    }
    Ok(page)
}

/// One event of a `feed=sse` stream, as the OpenAPI document describes it: `id: <seq>`,
/// `event: change`, `data: <a Change as JSON>`; a stream that ends on an error ends with an
/// `event: error` whose data is an `Error`. Heartbeats are comment lines (`: heartbeat`), not events.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ChangeEvent {
    /// The change's seq (absent on an `error` event); send it back as `Last-Event-ID` to resume.
    id: Option<String>,
    /// `change`, or `error` for the last event of a stream that ends on an error.
    event: String,
    /// The JSON of a `Change` (of an `Error` for `event: error`).
    #[schema(content_media_type = "application/json")]
    data: String,
}

/// What an event stream carries from one event to the next.
struct EventFeed {
    db: Arc<dyn Database>,
    /// `since` is the seq of the last event sent (or of the drained point).
    request: ChangesRequest,
    buffer: VecDeque<Change>,
    stop: Stop,
    done: bool,
    /// Counted among the open feeds for as long as the stream lives.
    _slot: Option<FeedSlot>,
}

fn error_event(error: Error) -> Event {
    Event::default().event("error").json_data(public(error)).unwrap_or_else(|_| Event::default().event("error"))
}

/// Every change in seq order with no gap: send the buffered page, read the next one after the last
/// seq sent, and when drained wait for the next write. Ends on an error (sent as an `error` event)
/// or when the server shuts down.
fn event_stream(feed: EventFeed) -> impl Stream<Item = Result<Event, Infallible>> + Send {
    stream::unfold(feed, |mut feed| async move {
        loop {
            if feed.done {
                return None;
            }
            if let Some(change) = feed.buffer.pop_front() {
                feed.request.since = change.seq;
                let event = match Event::default().id(change.seq.to_string()).event("change").json_data(&change) {
                    Ok(event) => event,
                    Err(e) => {
                        feed.done = true;
                        error_event(Error::internal(format!("cannot encode change {}: {e}", change.seq)))
                    }
                };
                return Some((Ok(event), feed));
            }
            let page = match feed.db.changes(feed.request.clone()).await {
                Ok(page) => page,
                Err(e) => {
                    feed.done = true;
                    return Some((Ok(error_event(e)), feed));
                }
            };
            if !page.changes.is_empty() {
                feed.buffer.extend(page.changes);
                continue;
            }
            // Drained at update_seq `last_seq`: nothing up to it is left for this filter.
            feed.request.since = page.last_seq;
            let waited = tokio::select! {
                seq = feed.db.wait_for_changes(page.last_seq, Duration::from_millis(MAX_TIMEOUT_MS)) => seq,
                () = feed.stop.wait() => return None,
            };
            if let Err(e) = waited {
                feed.done = true;
                return Some((Ok(error_event(e)), feed));
            }
        }
    })
}

/// Wait until the database's update_seq passes `since` or `timeout` passes; answers the update_seq.
#[utoipa::path(
    get, path = "/dbs/{db}/wait", tag = "changes", operation_id = "wait_for_changes", params(DbPath, WaitQuery),
    responses(
        (status = 200, body = UpdateSeq),
        InvalidParameter,
        OfDatabase,
    )
)]
pub async fn wait(
    State(state): State<AppState>,
    caller: Caller,
    ReadDb(db): ReadDb,
    Query(query): Query<WaitQuery>,
    mut stop: Stop,
) -> ApiResult<Json<UpdateSeq>> {
    let _slot = state.budgets.feed(&caller)?;
    let since = query.since.unwrap_or(0);
    let timeout = timeout_of(query.timeout);
    let update_seq = tokio::select! {
        seq = db.wait_for_changes(since, timeout) => seq?,
        // Shutting down: answer now with where the database stands.
        () = stop.wait() => db.info().await?.update_seq,
    };
    Ok(Json(UpdateSeq { update_seq }))
}

/// A changes page, streamed: up to 10,000 entries.
fn streamed_page(page: ChangesPage) -> Response {
    crate::stream::json_array(page.stream_prefix(), page.changes, "]}")
}
