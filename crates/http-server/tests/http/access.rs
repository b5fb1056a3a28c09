//! SPEC §14 in-process: every route the OpenAPI document lists × {no token, unknown token, a token for
//! another database, read, write, admin} answers what the roles say — so a new route is covered the
//! day it is added (it fails here until it is given its rule) — plus the rules without tokens (loopback
//! `Host`, `Origin`), CORS, 415 for bodies that are not JSON, and `GET /dbs` filtered.

use axum::http::Method;
use outpost_server::{Access, Role};
use serde_json::{json, Value};

use crate::support::{Reply, Server};

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Needs {
    /// Nothing: anyone.
    Open,
    /// Any known token.
    Token,
    /// This role on the database of the path (or, for `POST /replicate`, on each local end).
    Role(Role),
}

/// SPEC §14's rule for every operation of the OpenAPI document.
fn needs(operation: &str) -> Option<Needs> {
    use Role::{Admin, Read, Write};
    Some(match operation {
        "server_info" | "health" | "openapi" => Needs::Open,
        "list_dbs" | "list_jobs" | "get_job" | "cancel_job" | "metrics" => Needs::Token,
        "db_info"
        | "list_tables"
        | "get_table"
        | "list_records"
        | "get_record"
        | "get_record_by_query"
        | "changes"
        | "wait_for_changes"
        | "revs_diff"
        | "get_revisions"
        | "events"
        | "chain_hash_at"
        | "knowledge"
        | "resume_point"
        | "get_local"
        | "quicksync_manifest"
        | "quicksync_file" => Needs::Role(Read),
        "put_record"
        | "post_record"
        | "delete_record"
        | "put_record_by_query"
        | "delete_record_by_query"
        | "write_batch"
        | "put_revisions"
        | "put_local"
        | "delete_local"
        | "record_knowledge" => Needs::Role(Write),
        "create_db" | "delete_db" | "create_table" | "update_table" | "delete_table" | "replicate" | "compact_db" => {
            Needs::Role(Admin)
        }
        _ => return None,
    })
}

/// Who calls, weakest first (so a destructive call that succeeds comes last).
#[derive(Clone, Copy, Debug)]
enum Who {
    Nobody,
    Unknown,
    /// A token with admin on another database only.
    Stranger,
    Has(Role),
}

const CALLERS: [Who; 6] =
    [Who::Nobody, Who::Unknown, Who::Stranger, Who::Has(Role::Read), Who::Has(Role::Write), Who::Has(Role::Admin)];

/// A server with databases `a` (table `t`, record `r`) and `b`, `c`; tokens: one per role on `a` and
/// `c`, a stranger with admin on `b`, and a setup token with admin everywhere. Secrets in that order.
async fn server() -> (Server, Vec<String>) {
    let (server, secrets) = Server::with_tokens(&[
        ("reader", &[("a", Role::Read), ("c", Role::Read)]),
        ("writer", &[("a", Role::Write), ("c", Role::Write)]),
        ("admin", &[("a", Role::Admin), ("c", Role::Admin)]),
        ("stranger", &[("b", Role::Admin)]),
        ("setup", &[("*", Role::Admin)]),
    ]);
    let setup = &secrets[4];
    for db in ["a", "b", "c"] {
        server.call(Method::PUT, &format!("/dbs/{db}")).token(setup).send().await.expect_status(201);
    }
    server.call(Method::PUT, "/dbs/a/tables/t").token(setup).send().await.expect_status(201);
    server
        .call(Method::PUT, "/dbs/a/tables/t/records/r")
        .token(setup)
        .json(json!({"attributes": {"n": {"int": "1"}}}))
        .send()
        .await
        .expect_status(200);
    (server, secrets)
}

/// The request for an OpenAPI path: parameters filled in, a query that keeps waits short.
fn concrete(path: &str) -> String {
    let filled = path
        .replace("{db}", "a")
        .replace("{table}", "t")
        .replace("{id}", "r")
        .replace("{seq}", "1")
        .replace("{source_uuid}", "0190a7c4-8d2e-7000-8000-000000000000")
        .replace("{file}", "manifest.csv");
    match path {
        "/dbs/{db}/wait" => format!("{filled}?timeout=1"),
        "/dbs/{db}/tables/{table}/record" => format!("{filled}?id=r"),
        _ => filled,
    }
}

/// A body for the routes that take one: valid where validity matters before the access check.
fn body(operation: &str) -> Option<Value> {
    Some(match operation {
        "replicate" => json!({"source": "a", "target": "c", "wait": true}),
        "write_batch" => json!({"ops": []}),
        "put_revisions" => json!({"revisions": []}),
        "revs_diff" | "get_revisions" => json!([]),
        "put_record" | "post_record" | "put_record_by_query" => json!({"attributes": {}}),
        "create_table" | "update_table" | "record_knowledge" => json!({}),
        _ => return None,
    })
}

fn describe(reply: &Reply) -> String {
    format!("{} {}", reply.status, String::from_utf8_lossy(&reply.body))
}

#[tokio::test]
async fn every_route_answers_what_the_callers_role_allows() {
    let doc = outpost_server::openapi();
    let doc = serde_json::to_value(&doc).expect("OpenAPI JSON");
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            let id = operation["operationId"].as_str().expect("operationId");
            let needs = needs(id).unwrap_or_else(|| {
                panic!("{method} {path} ({id}) has no access rule in this test: add it to `needs` as SPEC §14 says")
            });
            let (server, secrets) = server().await;
            let method: Method = method.to_uppercase().parse().expect("method");
            for who in CALLERS {
                let mut call = server.call(method.clone(), &concrete(path));
                call = match who {
                    Who::Nobody => call,
                    Who::Unknown => call.token("opt_not-a-token-of-this-server"),
                    Who::Stranger => call.token(&secrets[3]),
                    Who::Has(role) => call.token(&secrets[role as usize]),
                };
                if let Some(body) = body(id) {
                    call = call.json(body);
                }
                let reply = call.send().await;
                let what = format!("{method} {path} as {who:?}: {}", describe(&reply));
                let status = reply.status.as_u16();
                let hidden = status == 404 && reply.json()["message"] == "database \"a\" does not exist";
                match (needs, who) {
                    (Needs::Open, _) => assert!(status < 400, "{what}"),
                    (_, Who::Nobody | Who::Unknown) => {
                        reply.expect_error(401, "unauthorized");
                        assert_eq!(reply.headers["www-authenticate"], "Bearer realm=\"outpost\"", "{what}");
                    }
                    (Needs::Token, _) => assert!(status != 401 && status != 403 && !hidden, "{what}"),
                    (Needs::Role(_), Who::Stranger) if id == "replicate" => {
                        assert_eq!(status, 404, "a job's local end the token cannot see: {what}")
                    }
                    (Needs::Role(_), Who::Stranger) => {
                        assert!(hidden, "a database without a role looks absent: {what}");
                    }
                    (Needs::Role(need), Who::Has(role)) if role < need => {
                        let body = reply.expect_error(403, "forbidden");
                        let message = body["message"].as_str().unwrap_or_default();
                        assert!(message.contains(&format!("this needs {need}")), "{what}");
                    }
                    (Needs::Role(_), Who::Has(_)) => assert!(status != 401 && status != 403 && !hidden, "{what}"),
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 37, "every operation of the document was tried ({checked})");
}

#[tokio::test]
async fn the_database_list_shows_only_readable_databases() {
    let (server, secrets) = server().await;
    let names = |reply: Reply| reply.expect_status(200);
    assert_eq!(names(server.call(Method::GET, "/dbs").token(&secrets[0]).send().await), json!(["a", "c"]));
    assert_eq!(names(server.call(Method::GET, "/dbs").token(&secrets[3]).send().await), json!(["b"]));
    assert_eq!(names(server.call(Method::GET, "/dbs").token(&secrets[4]).send().await), json!(["a", "b", "c"]));
}

#[tokio::test]
async fn basic_authentication_carries_the_token_as_password() {
    use base64::Engine as _;
    let (server, secrets) = server().await;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("pouchdb:{}", secrets[0]));
    let reply = server.call(Method::GET, "/dbs/a").header("authorization", &format!("Basic {basic}")).send().await;
    assert_eq!(reply.expect_status(200)["name"], "a");
    let wrong = base64::engine::general_purpose::STANDARD.encode(format!("{}:x", secrets[0]));
    let reply = server.call(Method::GET, "/dbs/a").header("authorization", &format!("Basic {wrong}")).send().await;
    reply.expect_error(401, "unauthorized");
}

#[tokio::test]
async fn without_tokens_only_loopback_names_are_served() {
    let server = Server::with_table().await;
    for host in ["localhost", "localhost:7070", "127.0.0.1:7070", "[::1]:7070", "app.localhost"] {
        server.call(Method::GET, "/dbs/a").header("host", host).send().await.expect_status(200);
    }
    for host in ["evil.example", "evil.example:7070", "10.0.0.1:7070", "127.0.0.1.evil.example"] {
        let reply = server.call(Method::GET, "/dbs/a").header("host", host).send().await;
        let body = reply.expect_error(403, "forbidden");
        assert!(body["message"].as_str().unwrap().contains("loopback"), "{host}: {body}");
    }
    // Nor through a proxy on the same host, which would make every caller look local.
    for header in ["x-forwarded-for", "forwarded", "via", "x-real-ip"] {
        let reply =
            server.call(Method::GET, "/dbs/a").header("host", "127.0.0.1:7070").header(header, "1.2.3.4").send().await;
        let body = reply.expect_error(403, "forbidden");
        assert!(body["message"].as_str().unwrap().contains("proxy"), "{header}: {body}");
    }
    // A rebinding page cannot write either.
    let reply = server.call(Method::DELETE, "/dbs/a").header("host", "evil.example:7070").send().await;
    reply.expect_error(403, "forbidden");
    server.get("/dbs/a").await.expect_status(200);
}

#[tokio::test]
async fn foreign_origins_are_refused_and_listed_ones_get_cors() {
    let server = Server::with_table().await;
    let reply = server.call(Method::GET, "/dbs/a").header("origin", "https://evil.example").send().await;
    reply.expect_error(403, "forbidden");
    assert!(reply.headers.get("access-control-allow-origin").is_none());
    // The cross-site form post of the issue: text/plain, from a foreign page.
    let reply = server
        .call(Method::POST, "/replicate")
        .header("origin", "https://evil.example")
        .header("content-type", "text/plain")
        .raw_body(r#"{"source": "a", "target": "copy", "create_target": true}"#)
        .send()
        .await;
    reply.expect_error(403, "forbidden");
    assert_eq!(server.get("/dbs").await.expect_status(200), json!(["a"]), "nothing was copied");

    let access = Access::open().with_origins(&["https://app.example".to_owned()]).expect("origin");
    let server = Server::with_access(access);
    server.call(Method::PUT, "/dbs/a").send().await.expect_status(201);
    let reply = server.call(Method::GET, "/dbs/a").header("origin", "https://app.example").send().await;
    reply.expect_status(200);
    assert_eq!(reply.headers["access-control-allow-origin"], "https://app.example");
    assert_eq!(reply.headers["access-control-allow-credentials"], "true");
    let preflight = server
        .call(Method::OPTIONS, "/dbs/a/bulk")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization, content-type")
        .send()
        .await;
    assert!(preflight.status.is_success(), "{}", describe(&preflight));
    assert_eq!(preflight.headers["access-control-allow-origin"], "https://app.example");
    let allowed = preflight.headers["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"), "{allowed}");
    let reply = server.call(Method::GET, "/dbs/a").header("origin", "https://other.example").send().await;
    reply.expect_error(403, "forbidden");
}

#[tokio::test]
async fn bodies_that_are_not_json_are_415_and_store_nothing() {
    let server = Server::with_table().await;
    for (method, uri) in [
        (Method::POST, "/dbs/a/bulk"),
        (Method::PUT, "/dbs/a/tables/t/records/x"),
        (Method::POST, "/replicate"),
        (Method::PUT, "/dbs/a/tables/u"),
    ] {
        for content_type in [Some("text/plain"), Some("application/x-www-form-urlencoded"), None] {
            let mut call = server.call(method.clone(), uri).raw_body(r#"{"ops": [], "attributes": {}}"#);
            if let Some(content_type) = content_type {
                call = call.header("content-type", content_type);
            }
            let reply = call.send().await;
            let body = reply.expect_status(415);
            assert_eq!(body["error"], "invalid_input", "{method} {uri}");
            assert!(body["message"].as_str().unwrap().contains("application/json"), "{body}");
        }
    }
    assert_eq!(server.update_seq("a").await, 1, "only the table definition was written");
    server.get("/dbs/a/tables/u").await.expect_error(404, "not_found");
}

#[tokio::test]
async fn a_job_with_a_remote_end_needs_admin_on_every_database() {
    let (server, secrets) = server().await;
    // Admin on `a` only: the server's own peer token must not become this token's.
    let body = json!({"source": "https://hq.example:7443/dbs/payroll", "target": "a", "wait": true});
    let reply = server.call(Method::POST, "/replicate").token(&secrets[2]).json(body.clone()).send().await;
    let error = reply.expect_error(403, "forbidden");
    assert!(error["message"].as_str().unwrap().contains("own credentials"), "{error}");
    // Admin everywhere passes the role check; the peer rule then refuses a URL no peer has.
    let reply = server.call(Method::POST, "/replicate").token(&secrets[4]).json(body).send().await;
    let error = reply.expect_error(403, "forbidden");
    assert!(error["message"].as_str().unwrap().contains("not a configured peer"), "{error}");
}
