//! The route table of docs/HTTP.md, one module per concern. Handlers are thin: parse (extractors),
//! call one trait method, map the error.

use axum::routing::{get, post};
use axum::Router;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;

pub(crate) mod changes;
pub(crate) mod dbs;
pub(crate) mod local;
pub(crate) mod quicksync;
pub(crate) mod records;
pub(crate) mod replica;
pub(crate) mod replicate;
pub(crate) mod responses;
pub(crate) mod server;
pub(crate) mod tables;

/// `{"ok": true}`: the answer of a call that returns nothing.
#[derive(Serialize, ToSchema)]
pub struct OkResponse {
    /// Always true.
    pub ok: bool,
}

pub(crate) const OK: OkResponse = OkResponse { ok: true };

/// Every route that answers within the request timeout. The timeout bounds the time to the response
/// head, not the body: a quicksync file streams for as long as its download takes.
pub(crate) fn bounded() -> Router<AppState> {
    Router::new()
        .route("/", get(server::root))
        .route("/health", get(server::health))
        .route("/openapi.json", get(server::openapi_json))
        .route("/metrics", get(crate::metrics::metrics))
        .route("/dbs", get(dbs::list))
        .route("/dbs/{db}", get(dbs::info).put(dbs::create).delete(dbs::delete))
        .route("/dbs/{db}/tables", get(tables::list))
        .route(
            "/dbs/{db}/tables/{table}",
            get(tables::get).put(tables::create).patch(tables::update).delete(tables::delete),
        )
        .route("/dbs/{db}/tables/{table}/records", get(records::list).post(records::post))
        .route("/dbs/{db}/tables/{table}/records/{id}", get(records::get).put(records::put).delete(records::delete))
        .route(
            "/dbs/{db}/tables/{table}/record",
            get(records::get_by_query).put(records::put_by_query).delete(records::delete_by_query),
        )
        .route("/dbs/{db}/tables/{table}/local/{id}", get(local::get).put(local::put).delete(local::delete))
        .route("/dbs/{db}/bulk", post(records::bulk))
        .route("/dbs/{db}/revs-diff", post(replica::revs_diff))
        .route("/dbs/{db}/revs/get", post(replica::get_revisions))
        .route("/dbs/{db}/revs/put", post(replica::put_revisions))
        .route("/dbs/{db}/chain/{seq}", get(replica::chain))
        .route("/dbs/{db}/events", get(replica::events))
        .route("/dbs/{db}/knowledge", get(replica::knowledge).post(replica::record_knowledge))
        .route("/dbs/{db}/resume/{source_uuid}", get(replica::resume_point))
        // Here rather than in `unbounded`: the head (open the file, seek to the range) comes at once,
        // or a stuck disk answers 503 after REQUEST_TIMEOUT; the body, however large, is not timed.
        .route("/dbs/{db}/quicksync/manifest.csv", get(quicksync::manifest))
        .route("/dbs/{db}/quicksync/{file}", get(quicksync::file))
        .route("/replicate/jobs", get(replicate::list))
        .route("/replicate/jobs/{id}", get(replicate::get).delete(replicate::cancel))
}

/// `POST /replicate`, which with `"wait": true` answers when its job has finished, and
/// `POST /dbs/{db}/compact`, which answers when done, however long that takes: no timeout layer (the
/// handlers bound the time their bodies may take to arrive).
pub(crate) fn unbounded() -> Router<AppState> {
    Router::new().route("/replicate", post(replicate::replicate)).route("/dbs/{db}/compact", post(dbs::compact))
}

/// The routes that may wait for writes (long-poll, event stream).
pub(crate) fn feeds() -> Router<AppState> {
    Router::new().route("/dbs/{db}/changes", get(changes::changes)).route("/dbs/{db}/wait", get(changes::wait))
}
