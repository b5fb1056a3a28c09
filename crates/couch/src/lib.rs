//! The CouchDB replication protocol over any Outpost [`Database`] (SPEC §17), so that an unmodified
//! PouchDB — in a browser, in Node, in a mobile web view — replicates and syncs live with Outpost.
//!
//! A CouchDB *server* is one Outpost database and a CouchDB *database* one of its tables, reachable
//! only when its definition says `couch: true`: PouchDB's URL for table `orders` of database `field`
//! is `https://host/couch/field/orders`. [`router`] answers every route under `/couch/{db}/`; the
//! server that mounts it decides who may do what ([`Host`]), and answers CORS and authentication
//! before these handlers run.
//!
//! The modules: `error.rs` (CouchDB's error bodies), `seq.rs` (opaque `since`/`seq` strings that carry
//! the epoch), `doc.rs` (documents ↔ records and revisions), `server.rs` (the server root and the
//! database routes), `changes.rs` (`_changes`, with long-polls and heartbeats), `replication.rs`
//! (`_revs_diff`, `_bulk_get`, `_bulk_docs`), `docs.rs` (the document API and `_all_docs`), `local.rs`
//! (`_local/` checkpoints).
#![forbid(unsafe_code)]

mod changes;
mod doc;
mod docs;
mod error;
mod local;
mod replication;
mod seq;
mod server;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, MatchedPath, Path};
use axum::http::request::Parts;
use axum::http::Extensions;
use axum::routing::{get, post};
use axum::Router;
use outpost_api::{names, Database, ErrorKind, Limits, Uuid};

pub use error::{CouchError, CouchResult};

/// What a request needs on a database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Reads: documents, changes, revs-diff, bulk-get, checkpoints.
    Read,
    /// Writes: documents, bulk-docs, checkpoints.
    Write,
    /// Creating and deleting a CouchDB database (an Outpost table).
    Admin,
}

/// The server that mounts the CouchDB routes: it opens a database for a request when its caller
/// (which the server put into the request's extensions) may do what the route needs.
#[async_trait]
pub trait Host: Send + Sync + 'static {
    /// Database `db` for a request with these extensions, needing `need`: NotFound when there is no
    /// such database (or the caller may not know of it), Unauthorized or Forbidden when the caller
    /// may not.
    async fn database(&self, extensions: &Extensions, db: &str, need: Need) -> outpost_api::Result<Arc<dyn Database>>;

    /// A long-poll's place among the server's open feeds (its connection limits), held while the poll
    /// waits: Unavailable when the server, or the caller's token, holds as many as it may.
    fn feed(&self, extensions: &Extensions) -> outpost_api::Result<Box<dyn Send + Sync>>;

    /// The input limits in force (entries per request, documents per batch).
    fn limits(&self) -> Limits;

    /// Resolves when the server begins to shut down, for a request with these extensions: a waiting
    /// long-poll answers then, so that a graceful shutdown need not wait for it. Never by default.
    fn stopping(&self, extensions: &Extensions) -> Stopping {
        let _ = extensions;
        Box::pin(std::future::pending())
    }
}

/// What [`Host::stopping`] gives: a future that resolves when the server begins to shut down.
pub type Stopping = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// The state of the CouchDB routes.
#[derive(Clone)]
pub struct Couch {
    host: Arc<dyn Host>,
}

impl Couch {
    /// The routes' state over `host`.
    pub fn new(host: Arc<dyn Host>) -> Self {
        Couch { host }
    }

    /// Database `db` for this request.
    async fn database(&self, extensions: &Extensions, db: &str, need: Need) -> CouchResult<Arc<dyn Database>> {
        Ok(self.host.database(extensions, db, need).await?)
    }

    /// Table `table` of database `db` as a CouchDB database: it must exist and be open to CouchDB
    /// peers (`couch: true`).
    async fn table(&self, extensions: &Extensions, db: &str, table: &str, need: Need) -> CouchResult<Table> {
        if names::validate_table_name(table).is_err() {
            return Err(CouchError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "illegal_database_name",
                format!(
                    "Name: {table:?}. An Outpost table name is a lowercase letter, then up to 62 lowercase letters, \
                     digits and _"
                ),
            ));
        }
        let db = self.database(extensions, db, need).await?;
        match db.get_table(table).await {
            Ok(def) if def.couch => Ok(Table { db, name: table.to_owned() }),
            Ok(_) => Err(CouchError::forbidden(format!(
                "table {table:?} is not open to CouchDB peers: open it with `outpost table update DB {table} --couch`"
            ))),
            Err(e) if e.kind == ErrorKind::NotFound => Err(CouchError::not_found("Database does not exist.")),
            Err(e) => Err(e.into()),
        }
    }
}

/// A table open to CouchDB peers, in its database.
struct Table {
    db: Arc<dyn Database>,
    name: String,
}

/// The path's parameters (`db`, `table`, `id`), percent-decoded.
async fn path_params(parts: &mut Parts, couch: &Couch) -> CouchResult<HashMap<String, String>> {
    let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, couch)
        .await
        .map_err(|e| CouchError::bad_request(e.body_text()))?;
    Ok(params)
}

/// An extractor of the path's table, opened for a caller with `$need`: a route's access rule is the
/// type of its table argument, as the server's own routes' is their database argument's.
macro_rules! table_extractor {
    ($(#[$doc:meta])* $name:ident, $need:expr) => {
        $(#[$doc])*
        struct $name(Table);

        impl FromRequestParts<Couch> for $name {
            type Rejection = CouchError;

            async fn from_request_parts(parts: &mut Parts, couch: &Couch) -> CouchResult<Self> {
                let params = path_params(parts, couch).await?;
                let (Some(db), Some(table)) = (params.get("db"), params.get("table")) else {
                    return Err(CouchError::bad_request("the path names no database"));
                };
                couch.table(&parts.extensions, db, table, $need).await.map($name)
            }
        }
    };
}

table_extractor!(
    /// The path's table, for a caller with `read` on its database.
    ReadTable,
    Need::Read
);
table_extractor!(
    /// The path's table, for a caller with `write` on its database.
    WriteTable,
    Need::Write
);

/// The document id of the path: its `{id}`, under `_design/` on the design-document routes (CouchDB
/// clients write `_design/x` with its slash).
struct DocId(String);

impl FromRequestParts<Couch> for DocId {
    type Rejection = CouchError;

    async fn from_request_parts(parts: &mut Parts, couch: &Couch) -> CouchResult<Self> {
        let id = path_params(parts, couch)
            .await?
            .remove("id")
            .ok_or_else(|| CouchError::bad_request("the path names no document"))?;
        let matched = MatchedPath::from_request_parts(parts, couch).await;
        let design = matched.is_ok_and(|m| m.as_str().contains("/_design/"));
        Ok(DocId(if design { format!("_design/{id}") } else { id }))
    }
}

impl Table {
    /// The database's current epoch uuid (what its sequence strings carry) and update_seq.
    async fn position(&self) -> CouchResult<(Uuid, u64)> {
        let info = self.db.info().await?;
        Ok((info.uuid, info.update_seq))
    }
}

/// A JSON request body; 400 `bad_request` when it is empty or not JSON.
fn json_body(bytes: &Bytes) -> CouchResult<serde_json::Value> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(CouchError::bad_request("the request body is empty; this route expects JSON"));
    }
    outpost_api::from_json_bytes(bytes).map_err(|e| CouchError::bad_request(format!("invalid JSON: {e}")))
}

/// Bodies up to this size are parsed where they were read; larger ones on the blocking pool, so that
/// parsing megabytes never holds an async worker (as the server's own routes do).
const INLINE_PARSE_BYTES: usize = 64 * 1024;

/// [`json_body`], off the async workers when the body is large.
async fn json_body_sized(bytes: Bytes) -> CouchResult<serde_json::Value> {
    if bytes.len() <= INLINE_PARSE_BYTES {
        return json_body(&bytes);
    }
    off_workers(move || json_body(&bytes)).await
}

/// Run CPU work (parsing, hashing) on the blocking pool.
async fn off_workers<T: Send + 'static>(f: impl FnOnce() -> CouchResult<T> + Send + 'static) -> CouchResult<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(out) => out,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(outpost_api::Error::unavailable("the server is shutting down").into()),
    }
}

/// Every CouchDB route, under `/couch/{db}`, with and without the trailing slash CouchDB clients
/// add to database URLs.
pub fn router<S: Clone + Send + Sync + 'static>(couch: Couch) -> Router<S> {
    let doc = get(docs::get).put(docs::put).delete(docs::delete);
    let table = get(server::table_info).put(server::create_table).delete(server::delete_table).post(docs::post);
    Router::new()
        .route("/couch/{db}", get(server::root))
        .route("/couch/{db}/", get(server::root))
        .route("/couch/{db}/_all_dbs", get(server::all_dbs))
        .route("/couch/{db}/_session", get(server::session))
        .route("/couch/{db}/{table}", table.clone())
        .route("/couch/{db}/{table}/", table)
        .route("/couch/{db}/{table}/_changes", get(changes::get).post(changes::post))
        .route("/couch/{db}/{table}/_revs_diff", post(replication::revs_diff))
        .route("/couch/{db}/{table}/_bulk_get", post(replication::bulk_get))
        .route("/couch/{db}/{table}/_bulk_docs", post(replication::bulk_docs))
        .route("/couch/{db}/{table}/_ensure_full_commit", post(server::ensure_full_commit))
        .route("/couch/{db}/{table}/_all_docs", get(docs::all_docs_get).post(docs::all_docs_post))
        .route("/couch/{db}/{table}/_local/{id}", get(local::get).put(local::put).delete(local::delete))
        .route("/couch/{db}/{table}/_design/{id}", doc.clone())
        .route("/couch/{db}/{table}/{id}", doc)
        .with_state(couch)
}
