//! `GET /openapi.json`: the OpenAPI document of docs/HTTP.md, generated from the handlers'
//! `#[utoipa::path]` attributes and the wire types' schemas.

use outpost_api::{Error, ErrorKind};
use utoipa::OpenApi;

use crate::routes::{changes, dbs, local, quicksync, records, replica, replicate, server, tables};

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
        crate::metrics::metrics,
        dbs::list,
        dbs::create,
        dbs::info,
        dbs::delete,
        dbs::compact,
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
        local::get,
        local::put,
        local::delete,
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
    secure(&mut doc);
    without_string_property_names(doc)
}

/// JSON object keys are strings whatever a schema says: the `propertyNames: {"type": "string"}` that
/// utoipa writes for every map says nothing, and only gives a test generator a constraint it cannot
/// negate (Schemathesis: "a `not` whose complement is not spelled out").
fn without_string_property_names(doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    fn strip(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                if map.get("propertyNames") == Some(&serde_json::json!({"type": "string"})) {
                    map.remove("propertyNames");
                }
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut json = serde_json::to_value(&doc).expect("the OpenAPI document encodes");
    strip(&mut json);
    serde_json::from_value(json).expect("the OpenAPI document decodes")
}

/// SPEC §14 in the document, for every route at once (so no annotation can forget it): the bearer and
/// basic schemes; every route but the open ones requiring one, with its 401; the 403 that any route
/// may answer (a weak role; without tokens, a caller that is not a loopback one; a foreign Origin);
/// the 415 of every route that takes a body; and the 400 of every route naming a database (an invalid
/// name is refused before anything looks for it).
fn secure(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
    use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};

    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    components.add_security_scheme("basic", SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)));
    let error = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content("application/json", Content::new(Some(Ref::from_schema_name("Error"))))
                .build(),
        )
    };
    for (path, item) in doc.paths.paths.iter_mut() {
        let open = crate::access::OPEN_PATHS.contains(&path.as_str());
        let operations =
            [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch, &mut item.head];
        for operation in operations.into_iter().flatten() {
            let responses = &mut operation.responses.responses;
            if !open {
                operation.security = Some(vec![
                    SecurityRequirement::new("bearer", Vec::<String>::new()),
                    SecurityRequirement::new("basic", Vec::<String>::new()),
                ]);
                responses
                    .entry("401".into())
                    .or_insert_with(|| error("No access token, or one this server does not know"));
            }
            responses.entry("403".into()).or_insert_with(|| {
                error("The token's role is too weak; without tokens, a caller that is not a loopback one; a foreign Origin")
            });
            if path.contains("{db}") {
                responses
                    .entry("400".into())
                    .or_insert_with(|| error("An invalid database name (or another invalid parameter)"));
            }
            if operation.request_body.is_some() {
                responses
                    .entry("415".into())
                    .or_insert_with(|| error("The body is not sent as Content-Type: application/json"));
            }
        }
    }
}
