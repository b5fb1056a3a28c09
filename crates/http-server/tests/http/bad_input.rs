//! Bad input (SPEC §13): each its documented 4xx with our error JSON, the server keeps serving, and
//! nothing invalid is stored.

use axum::http::Method;
use outpost_api::Limits;
use serde_json::json;

use crate::support::Server;

struct Case {
    method: Method,
    uri: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: u16,
    kind: &'static str,
}

fn case(method: Method, uri: impl Into<String>, body: impl Into<Vec<u8>>, status: u16, kind: &'static str) -> Case {
    Case { method, uri: uri.into(), headers: Vec::new(), body: body.into(), status, kind }
}

impl Case {
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

fn nested(open: &str, close: &str, depth: usize, inner: &str) -> String {
    format!("{}{inner}{}", open.repeat(depth), close.repeat(depth))
}

fn bad_cases(rev: &str) -> Vec<Case> {
    use Method as M;
    let record = "/dbs/a/tables/t/records/r";
    let put = |body: &str| case(M::PUT, record, body, 400, "invalid_input");
    let typed_deep = format!(r#"{{"attributes": {{"d": {}}}}}"#, nested(r#"{"list": ["#, "]}", 40, r#"{"int": "1"}"#));
    let typed_deeper =
        format!(r#"{{"attributes": {{"d": {}}}}}"#, nested(r#"{"list": ["#, "]}", 100, "{\"int\": \"1\"}"));
    let plain_deep = format!(r#"{{"attributes": {{"d": {}}}}}"#, nested("[", "]", 40, "1"));
    vec![
        // Malformed JSON and JSON of the wrong shape.
        put(r#"{"attributes": "#),
        put("not json"),
        put(""),
        put("[]"),
        put(r#"{"attributes": []}"#),
        put(r#"{"attributes": {"n": 5}}"#),
        put(r#"{"attributes": {"n": {"int": "x"}}}"#),
        put(r#"{"attributes": {"n": {"int": "99999999999999999999"}}}"#),
        put(r#"{"attributes": {"n": {"float": "NaN"}}}"#),
        put(r#"{"attributes": {"n": {"int": "1", "string": "1"}}}"#),
        put(r#"{"attributes": {"_n": {"int": "1"}}}"#),
        put(r#"{"attributes": {}, "rev": 5}"#),
        put(r#"{"attributes": {}, "rev": "1-xyz"}"#),
        put(r#"{"attributes": {}, "attrs": {}}"#),
        put(r#"{"id": "other", "attributes": {}}"#),
        case(M::PUT, format!("{record}?format=plain"), r#"{"attributes": [1]}"#, 400, "invalid_input"),
        case(M::PUT, format!("{record}?format=xml"), r#"{"attributes": {}}"#, 400, "invalid_input"),
        case(M::POST, "/dbs/a/tables/t/records", r#"{"attributes": {"n": {"nope": "1"}}}"#, 400, "invalid_input"),
        case(M::POST, "/dbs/a/bulk", r#"{"ops": "x"}"#, 400, "invalid_input"),
        case(M::POST, "/dbs/a/bulk", r#"{"ops": [{"op": "upsert", "table": "t"}]}"#, 400, "invalid_input"),
        case(M::POST, "/dbs/a/revs-diff", "{}", 400, "invalid_input"),
        case(M::POST, "/dbs/a/revs/get", r#"[{"table": "t"}]"#, 400, "invalid_input"),
        case(M::POST, "/dbs/a/revs/put", r#"{"revisions": [], "extra": 1}"#, 400, "invalid_input"),
        case(M::POST, "/dbs/a/knowledge", r#"{"source": "not-a-uuid"}"#, 400, "invalid_input"),
        case(M::PATCH, "/dbs/a/tables/t", r#"{"policy": "nope"}"#, 400, "invalid_input"),
        case(M::PATCH, "/dbs/a/tables/t", r#"{"colour": "red"}"#, 400, "invalid_input"),
        case(M::PUT, "/dbs/a/tables/u", r#"{"fields": {"f": {"type": "nope"}}}"#, 400, "invalid_input"),
        // Invalid UTF-8 and deep nesting.
        case(M::PUT, record, b"{\"attributes\": {\"s\": {\"string\": \"\xff\"}}}".to_vec(), 400, "invalid_input"),
        case(M::PUT, record, typed_deep, 400, "invalid_input"),
        case(M::PUT, record, typed_deeper, 400, "invalid_input"),
        case(M::PUT, format!("{record}?format=plain"), plain_deep, 400, "invalid_input"),
        case(M::POST, "/dbs/a/revs-diff", nested("[", "]", 10_000, ""), 400, "invalid_input"),
        // Ids, revs and headers.
        case(M::PUT, format!("/dbs/a/tables/t/records/{}", "x".repeat(300)), "{}", 400, "invalid_input"),
        case(M::PUT, "/dbs/a/tables/t/records/a%0Ab", "{}", 400, "invalid_input"),
        case(M::PUT, "/dbs/a/tables/t/records/%FF", "{}", 400, "invalid_input"),
        case(M::PUT, record, "{}", 400, "invalid_input").header("if-match", "\"nope\""),
        case(M::PUT, record, format!(r#"{{"rev": "{rev}"}}"#), 400, "invalid_input")
            .header("if-match", "\"1-00000000000000000000000000000000\""),
        case(M::PUT, record, "{}", 409, "conflict").header("if-match", "\"1-00000000000000000000000000000000\""),
        case(M::DELETE, format!("{record}?rev=1-00000000000000000000000000000000"), "", 409, "conflict"),
        case(M::DELETE, format!("{record}?rev=bad"), "", 400, "invalid_input"),
        case(M::GET, format!("{record}?rev=bad"), "", 400, "invalid_input"),
        case(M::GET, format!("{record}?conflicts=yes"), "", 400, "invalid_input"),
        // Database and table names, path tricks.
        case(M::PUT, "/dbs/..%2Fx", "", 400, "invalid_input"),
        case(M::PUT, "/dbs/%2e%2e", "", 400, "invalid_input"),
        case(M::PUT, "/dbs/%2E%2E%2F%2E%2E%2Fetc", "", 400, "invalid_input"),
        case(M::GET, "/dbs/%2e%2e/tables", "", 400, "invalid_input"),
        case(M::DELETE, "/dbs/%2e%2e", "", 400, "invalid_input"),
        case(M::PUT, "/dbs/../x", "", 404, "not_found"),
        case(M::GET, "/dbs/a/../../x", "", 404, "not_found"),
        case(M::PUT, "/dbs/A", "", 400, "invalid_input"),
        case(M::PUT, "/dbs/a.outpost", "", 400, "invalid_input"),
        case(M::PUT, "/dbs/-a", "", 400, "invalid_input"),
        case(M::PUT, "/dbs/a%00b", "", 400, "invalid_input"),
        case(M::PUT, format!("/dbs/{}", "a".repeat(64)), "", 400, "invalid_input"),
        case(M::PUT, "/dbs/a/tables/..%2Fx", "", 400, "invalid_input"),
        case(M::PUT, "/dbs/a/tables/%2e%2e", "", 400, "invalid_input"),
        case(M::PUT, "/dbs/a/tables/_tables", "", 400, "invalid_input"),
        case(M::PUT, "/dbs/a/tables/Bad", "", 400, "invalid_input"),
        case(M::GET, "/dbs/a/tables/%2e%2e", "", 400, "invalid_input"),
        case(M::PUT, "/dbs/a/tables/%2e%2e/records/r", "{}", 400, "invalid_input"),
        // Unknown routes and wrong methods.
        case(M::GET, "/nope", "", 404, "not_found"),
        case(M::GET, "/dbs/a/nope", "", 404, "not_found"),
        case(M::GET, "/dbs/a/tables/t/records/r/extra", "", 404, "not_found"),
        case(M::POST, "/dbs/a", "{}", 405, "invalid_input"),
        case(M::PATCH, "/dbs", "", 405, "invalid_input"),
        case(M::DELETE, "/health", "", 405, "invalid_input"),
        case(M::GET, "/dbs/a/bulk", "", 405, "invalid_input"),
        case(M::PUT, "/dbs/a/changes", "", 405, "invalid_input"),
        case(M::POST, "/dbs/a/tables/t/records/r", "{}", 405, "invalid_input"),
        // Numbers in the query and path.
        case(M::GET, "/dbs/a/changes?limit=10001", "", 400, "invalid_input"),
        case(M::GET, "/dbs/a/changes?limit=0", "", 400, "invalid_input"),
        case(M::GET, "/dbs/a/changes?limit=99999999999999999999999", "", 400, "invalid_input"),
        case(M::GET, "/dbs/a/changes?limit=ten", "", 400, "invalid_input"),
        case(M::GET, "/dbs/a/tables/t/records?limit=1000000", "", 400, "invalid_input"),
        case(M::GET, "/dbs/a/tables/t/records?limit=-1", "", 400, "invalid_input"),
        case(M::GET, "/dbs/a/changes?since=-1", "", 400, "invalid_input"),
        case(M::GET, "/dbs/a/changes?since=abc", "", 400, "invalid_input"),
        case(M::GET, "/dbs/a/changes?since=1.5", "", 400, "invalid_input"),
        case(M::GET, "/dbs/a/changes?feed=continuous", "", 400, "invalid_input"),
        case(M::GET, "/dbs/a/changes?feed=longpoll&timeout=soon", "", 400, "invalid_input"),
        case(M::GET, "/dbs/a/changes?feed=sse&limit=0", "", 400, "invalid_input"),
        case(M::GET, "/dbs/a/changes?feed=sse", "", 400, "invalid_input").header("last-event-id", "x"),
        case(M::GET, "/dbs/a/changes?tables=..%2Fx", "", 400, "invalid_input"),
        case(M::GET, "/dbs/a/wait?since=-5", "", 400, "invalid_input"),
        case(M::GET, "/dbs/a/wait?timeout=-5", "", 400, "invalid_input"),
        case(M::GET, "/dbs/a/knowledge?upto=-1", "", 400, "invalid_input"),
        case(M::GET, "/dbs/a/chain/-1", "", 400, "invalid_input"),
        case(M::GET, "/dbs/a/chain/abc", "", 400, "invalid_input"),
        case(M::GET, "/dbs/a/chain/18446744073709551616", "", 400, "invalid_input"),
        case(M::GET, "/dbs/a/resume/not-a-uuid", "", 400, "invalid_input"),
    ]
}

#[tokio::test]
async fn bad_input_gets_its_documented_status_and_stores_nothing() {
    let server = Server::with_table().await;
    let rev = server.put("a", "t", "r", 1).await;
    let before = server.get("/dbs/a").await.expect_status(200);
    for case in bad_cases(&rev) {
        let mut call = server.call(case.method.clone(), &case.uri).body(case.body);
        for (name, value) in &case.headers {
            call = call.header(name, value);
        }
        let reply = call.send().await;
        assert_eq!(reply.status.as_u16(), case.status, "{} {}: {}", case.method, case.uri, reply.json());
        assert_eq!(reply.json()["error"], case.kind, "{} {}", case.method, case.uri);
        assert!(reply.json()["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Still serving; nothing stored, no file made.
    server.get("/health").await.expect_status(200);
    assert_eq!(server.get("/dbs/a").await.expect_status(200), before);
    assert_eq!(server.get("/dbs").await.expect_status(200), json!(["a"]));
    assert_eq!(server.files(), ["a.outpost"]);
    let record = server.get("/dbs/a/tables/t/records/r").await.expect_status(200);
    assert_eq!((record["rev"].as_str(), &record["attributes"]), (Some(rev.as_str()), &json!({"n": {"int": "1"}})));
}

#[tokio::test]
async fn a_wrong_method_says_which_are_allowed() {
    let server = Server::with_table().await;
    let reply = server.call(Method::POST, "/dbs/a").send().await;
    reply.expect_error(405, "invalid_input");
    let allow = reply.headers.get("allow").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(allow.contains("PUT") && allow.contains("DELETE"), "{allow}");
}

#[tokio::test]
async fn bodies_past_the_limits_are_too_large() {
    let limits = Limits { max_request_bytes: 4096, max_bulk_ops: 3, max_body_bytes: 1024, ..Limits::default() };
    let server = Server::with_limits(limits);
    server.call(Method::PUT, "/dbs/a").send().await.expect_status(201);
    server.call(Method::PUT, "/dbs/a/tables/t").send().await.expect_status(201);
    let big = json!({"attributes": {"s": {"string": "x".repeat(5000)}}});
    for uri in ["/dbs/a/tables/t/records/r", "/dbs/a/tables/t/records/r?format=plain"] {
        server.call(Method::PUT, uri).json(big.clone()).send().await.expect_error(413, "too_large");
    }
    let raw = vec![b' '; 5000];
    for (method, uri) in [
        (Method::POST, "/dbs/a/tables/t/records"),
        (Method::POST, "/dbs/a/bulk"),
        (Method::POST, "/dbs/a/revs/put"),
        (Method::POST, "/dbs/a/revs-diff"),
        (Method::PUT, "/dbs/a/tables/u"),
        (Method::PATCH, "/dbs/a/tables/t"),
        (Method::POST, "/dbs/a/knowledge"),
    ] {
        server.call(method, uri).body(raw.clone()).send().await.expect_error(413, "too_large");
    }
    // Under the request limit but over the record body limit, or too many operations.
    let body = json!({"attributes": {"s": {"string": "x".repeat(2000)}}});
    server.call(Method::PUT, "/dbs/a/tables/t/records/r").json(body).send().await.expect_error(413, "too_large");
    let op = json!({"op": "put", "table": "t", "attributes": {}});
    let ops = json!({"ops": [op, op, op, op]});
    server.call(Method::POST, "/dbs/a/bulk").json(ops).send().await.expect_error(413, "too_large");
    assert_eq!(server.update_seq("a").await, 1);
    server.get("/health").await.expect_status(200);
}

#[tokio::test]
async fn the_default_request_limit_is_16_mib() {
    let server = Server::with_table().await;
    let mut body = br#"{"attributes": {"s": {"string": ""#.to_vec();
    body.resize((16 << 20) + 1, b'x');
    body.extend_from_slice(br#""}}}"#);
    let reply = server.call(Method::PUT, "/dbs/a/tables/t/records/r").body(body).send().await;
    reply.expect_error(413, "too_large");
    assert_eq!(server.update_seq("a").await, 1);
}
