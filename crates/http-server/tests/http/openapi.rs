//! `GET /openapi.json` lists every route of docs/HTTP.md with request and response schemas (JSON, or
//! the content type of a file route), and every schema it refers to is defined.

use serde_json::Value;

use crate::support::Server;

/// The route table of docs/HTTP.md: method, path, whether it takes a JSON body.
const ROUTES: &[(&str, &str, bool)] = &[
    ("get", "/", false),
    ("get", "/health", false),
    ("get", "/dbs", false),
    ("put", "/dbs/{db}", false),
    ("get", "/dbs/{db}", false),
    ("delete", "/dbs/{db}", false),
    ("post", "/dbs/{db}/compact", true),
    ("get", "/dbs/{db}/tables", false),
    ("put", "/dbs/{db}/tables/{table}", true),
    ("patch", "/dbs/{db}/tables/{table}", true),
    ("get", "/dbs/{db}/tables/{table}", false),
    ("delete", "/dbs/{db}/tables/{table}", false),
    ("get", "/dbs/{db}/tables/{table}/records", false),
    ("get", "/dbs/{db}/tables/{table}/records/{id}", false),
    ("put", "/dbs/{db}/tables/{table}/records/{id}", true),
    ("post", "/dbs/{db}/tables/{table}/records", true),
    ("delete", "/dbs/{db}/tables/{table}/records/{id}", false),
    ("get", "/dbs/{db}/tables/{table}/record", false),
    ("put", "/dbs/{db}/tables/{table}/record", true),
    ("delete", "/dbs/{db}/tables/{table}/record", false),
    ("get", "/dbs/{db}/tables/{table}/local/{id}", false),
    ("put", "/dbs/{db}/tables/{table}/local/{id}", true),
    ("delete", "/dbs/{db}/tables/{table}/local/{id}", false),
    ("post", "/dbs/{db}/bulk", true),
    ("get", "/dbs/{db}/changes", false),
    ("get", "/dbs/{db}/wait", false),
    ("post", "/dbs/{db}/revs-diff", true),
    ("post", "/dbs/{db}/revs/get", true),
    ("post", "/dbs/{db}/revs/put", true),
    ("get", "/dbs/{db}/chain/{seq}", false),
    ("get", "/dbs/{db}/events", false),
    ("get", "/dbs/{db}/knowledge", false),
    ("post", "/dbs/{db}/knowledge", true),
    ("get", "/dbs/{db}/resume/{source_uuid}", false),
    ("post", "/replicate", true),
    ("get", "/replicate/jobs", false),
    ("get", "/replicate/jobs/{id}", false),
    ("delete", "/replicate/jobs/{id}", false),
];

/// The routes of docs/HTTP.md that answer files rather than JSON: path and the 2xx content type.
const FILE_ROUTES: &[(&str, &str)] =
    &[("/dbs/{db}/quicksync/manifest.csv", "text/csv"), ("/dbs/{db}/quicksync/{file}", "application/octet-stream")];

fn refs<'a>(json: &'a Value, out: &mut Vec<&'a str>) {
    match json {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r);
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_openapi_document_lists_every_route_with_schemas() {
    let server = Server::new();
    let doc = server.get("/openapi.json").await.expect_status(200);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{}", doc["openapi"]);
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    for (method, path, takes_body) in ROUTES {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is missing");
        let responses = op["responses"].as_object().expect("responses");
        let ok = responses.iter().find(|(status, _)| status.starts_with('2')).expect("a 2xx response");
        assert!(ok.1["content"]["application/json"]["schema"].is_object(), "{method} {path}: 2xx schema");
        if *path != "/" && *path != "/health" {
            let error = responses.iter().find(|(status, _)| status.starts_with('4') || status.starts_with('5'));
            let error = error.unwrap_or_else(|| panic!("{method} {path}: an error response"));
            assert_eq!(error.1["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/Error");
        }
        let request = &op["requestBody"]["content"]["application/json"]["schema"];
        assert_eq!(request.is_object(), *takes_body, "{method} {path}: request body schema");
        for param in path.split('{').skip(1).map(|p| p.trim_end_matches(|c| c != '}').trim_end_matches('}')) {
            let params = op["parameters"].as_array().expect("parameters");
            assert!(params.iter().any(|p| p["name"] == param && p["in"] == "path"), "{method} {path}: {param}");
        }
    }
    for (path, content_type) in FILE_ROUTES {
        let op = &doc["paths"][path]["get"];
        assert!(op.is_object(), "get {path} is missing");
        for status in ["200", "206"] {
            assert!(
                op["responses"][status]["content"][content_type].is_object(),
                "get {path}: {status} {content_type}"
            );
        }
        assert!(op["responses"]["206"]["headers"]["Content-Range"].is_object(), "get {path}: Content-Range");
        for status in ["404", "416"] {
            let error = &op["responses"][status]["content"]["application/json"]["schema"]["$ref"];
            assert_eq!(error, "#/components/schemas/Error", "get {path}: {status}");
        }
        let params = op["parameters"].as_array().expect("parameters");
        for (name, place) in [("db", "path"), ("Range", "header"), ("If-Range", "header")] {
            assert!(params.iter().any(|p| p["name"] == name && p["in"] == place), "get {path}: {name}");
        }
    }
    let metrics = &doc["paths"]["/metrics"]["get"]["responses"];
    assert!(metrics["200"]["content"]["application/openmetrics-text"].is_object(), "get /metrics: {metrics}");
    assert_eq!(metrics["401"]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/Error");
    let mut operation_ids: Vec<&str> = doc["paths"]
        .as_object()
        .expect("paths")
        .values()
        .flat_map(|item| item.as_object().expect("path item").values())
        .map(|op| op["operationId"].as_str().expect("operationId"))
        .collect();
    let count = operation_ids.len();
    operation_ids.sort();
    operation_ids.dedup();
    assert_eq!(operation_ids.len(), count, "operationIds are unique");
    assert_eq!(
        count,
        ROUTES.len() + FILE_ROUTES.len() + 2,
        "the documented routes, /metrics and /openapi.json, nothing else"
    );
    let sse = &doc["paths"]["/dbs/{db}/changes"]["get"]["responses"]["200"]["content"];
    assert!(sse["text/event-stream"].is_object(), "{sse}");
    let mut found = Vec::new();
    refs(&doc, &mut found);
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for r in found {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("odd ref {r}"));
        assert!(schemas.contains_key(name), "{r} is not defined");
    }
    for name in
        ["Value", "Attributes", "RevId", "ChainHash", "Timestamp", "Record", "Error", "ErrorKind", "Job", "Report"]
    {
        assert!(schemas.contains_key(name), "{name} is not defined");
    }
    let value = serde_json::to_string(&schemas["Value"]).unwrap();
    for key in ["null", "bool", "int", "float", "decimal", "string", "bytes", "timestamp", "list", "map"] {
        assert!(value.contains(&format!("\"{key}\"")), "Value names {key}");
    }
}

#[tokio::test]
async fn the_document_says_which_routes_need_a_token_and_how_they_refuse() {
    let server = Server::new();
    let doc = server.get("/openapi.json").await.expect_status(200);
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(
        (schemes["bearer"]["scheme"].as_str(), schemes["basic"]["scheme"].as_str()),
        (Some("bearer"), Some("basic"))
    );
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let open = ["/", "/health", "/openapi.json"].contains(&path.as_str());
            let names: Vec<&str> = op["security"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r.as_object())
                .flat_map(|r| r.keys())
                .map(String::as_str)
                .collect();
            assert_eq!(names.is_empty(), open, "{method} {path}: security {names:?}");
            let responses = &op["responses"];
            assert_eq!(responses["401"].is_object(), !open, "{method} {path}: 401");
            assert!(responses["403"].is_object(), "{method} {path}: 403");
            assert_eq!(responses["415"].is_object(), op["requestBody"].is_object(), "{method} {path}: 415");
        }
    }
}
