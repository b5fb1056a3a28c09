//! `GET /openapi.json`: the OpenAPI document of docs/HTTP.md, generated from the handlers'
//! `#[utoipa::path]` attributes and the wire types' schemas.

use outpost_api::{Error, ErrorKind};
use utoipa::OpenApi;

use crate::routes::{changes, dbs, quicksync, records, replica, replicate, server, tables};

/// The OpenAPI description of every route.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Outpost HTTP API",
        description = "Offline-first multi-master record database. Errors are `{\"error\": kind, \"message\": \
            ...}` with the status of their kind; record attributes travel in the typed wire form unless \
            `?format=plain` (or `Accept: application/json; format=plain`) asks for plain JSON.",
    ),
    paths(
        server::root,
        server::health,
        server::openapi_json,
        dbs::list,
        dbs::create,
        dbs::info,
        dbs::delete,
        tables::list,
        tables::create,
        tables::update,
        tables::get,
        tables::delete,
        records::list,
        records::get,
        records::put,
        records::post,
        records::delete,
        records::get_by_query,
        records::put_by_query,
        records::delete_by_query,
        records::bulk,
        changes::changes,
        changes::wait,
        replica::revs_diff,
        replica::get_revisions,
        replica::put_revisions,
        replica::chain,
        replica::events,
        replica::knowledge,
        replica::record_knowledge,
        replica::resume_point,
        quicksync::manifest,
        quicksync::file,
        replicate::replicate,
        replicate::list,
        replicate::get,
        replicate::cancel,
    ),
    components(schemas(Error, ErrorKind, changes::Feed)),
    tags(
        (name = "server", description = "The server itself"),
        (name = "databases", description = "Databases hosted by the server"),
        (name = "tables", description = "Table definitions"),
        (name = "records", description = "Record reads and local writes"),
        (name = "changes", description = "The changes feed"),
        (name = "replication", description = "What replication sources and targets offer"),
        (name = "replication jobs", description = "Replications run by the server, once or continuously"),
        (name = "quicksync", description = "Published snapshot and delta files, with range requests"),
    )
)]
pub struct ApiDoc;

/// The OpenAPI document served at `GET /openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}
