//! The client against a scripted server: which requests it sends (paths, queries, bodies), how it
//! reads answers and errors, and when it retries.

use std::time::Duration;

use outpost_api::{
    ChangeReader, ChangesRequest, Databases, ErrorKind, GetOptions, InfoReader, NewTable, PutRecord, RecordReader,
    RecordWriter, ReplicaTarget, TableWriter, Uuid, WriteOp,
};
use serde_json::json;

use crate::fake::{FakeServer, Reply};
use crate::{AccessToken, ClientConfig, RemoteDatabase, RemoteDatabases, RetryPolicy};

const REV: &str = "1-0123456789abcdef0123456789abcdef";
const CHAIN: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// Tiny delays, three attempts.
fn config() -> ClientConfig {
    ClientConfig {
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
        },
        ..ClientConfig::default()
    }
}

fn db_on(server: &FakeServer) -> RemoteDatabase {
    RemoteDatabases::with_config(&server.url(), config()).unwrap().database("db").unwrap()
}

fn info_json() -> serde_json::Value {
    json!({
        "name": "db", "uuid": Uuid::nil(), "epochs": [{"uuid": Uuid::nil(), "start_seq": 0}],
        "update_seq": 7, "chain": CHAIN, "record_count": 3, "backend": "sqlite",
    })
}

fn unavailable() -> Reply {
    Reply::json(503, json!({"error": "unavailable", "message": "busy"}))
}

#[tokio::test]
async fn two_503s_then_200_succeeds_after_retries() {
    let server =
        FakeServer::start(vec![unavailable(), Reply::text(502, "bad gateway"), Reply::json(200, info_json())]).await;
    let info = db_on(&server).info().await.unwrap();
    assert_eq!((info.name.as_str(), info.update_seq, info.backend.as_str()), ("db", 7, "sqlite"));
    assert_eq!(server.lines(), ["GET /dbs/db"; 3]);
}

#[tokio::test]
async fn retries_stop_after_the_configured_attempts() {
    let server = FakeServer::start(vec![unavailable(); 5]).await;
    let e = db_on(&server).info().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert!(e.message.contains("gave up after 3 attempts") && e.message.contains("busy"), "{e}");
    assert_eq!(server.lines().len(), 3);
}

#[tokio::test]
async fn a_retry_after_header_is_honoured_within_the_cap() {
    let busy = Reply::Status { status: 503, body: String::new(), headers: vec![("retry-after".into(), "120".into())] };
    let server = FakeServer::start(vec![busy, Reply::json(200, info_json())]).await;
    db_on(&server).info().await.unwrap();
    assert_eq!(server.lines().len(), 2);
}

#[tokio::test]
async fn replication_calls_and_record_puts_are_retried() {
    let written = json!({"table": "t", "id": "x", "rev": REV});
    let server = FakeServer::start(vec![
        unavailable(),
        Reply::json(200, written),
        Reply::text(504, ""),
        Reply::json(200, json!({"written": 0, "update_seq": 3})),
        Reply::text(502, ""),
        Reply::json(200, json!([])),
    ])
    .await;
    let db = db_on(&server);
    let put = PutRecord { id: Some("x".into()), ..PutRecord::default() };
    assert_eq!(db.put_record("t", put).await.unwrap().rev.to_string(), REV);
    assert_eq!(db.put_revisions(vec![], None).await.unwrap().update_seq, 3);
    assert!(db.revs_diff(vec![]).await.unwrap().is_empty());
    let lines = server.lines();
    let expected = ["PUT /dbs/db/tables/t/records/x", "POST /dbs/db/revs/put", "POST /dbs/db/revs-diff"];
    assert_eq!(lines, expected.iter().flat_map(|l| [*l, *l]).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_conflict_comes_back_with_the_current_rev_and_is_not_retried() {
    let conflict = json!({"error": "conflict", "message": "t/x: stale revision", "current_rev": REV});
    let server = FakeServer::start(vec![Reply::json(409, conflict)]).await;
    let put = PutRecord { id: Some("x".into()), rev: Some(REV.parse().unwrap()), ..PutRecord::default() };
    let e = db_on(&server).put_record("t", put).await.unwrap_err();
    assert_eq!((e.kind, e.message.as_str()), (ErrorKind::Conflict, "t/x: stale revision"));
    assert_eq!(e.current_rev, Some(REV.parse().unwrap()));
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].line, "PUT /dbs/db/tables/t/records/x");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&seen[0].body).unwrap(),
        json!({"attributes": {}, "rev": REV})
    );
}

#[tokio::test]
async fn a_refused_connection_is_unavailable_after_the_attempts() {
    // A port that was just free: nothing listens on it.
    let port = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let dbs = RemoteDatabases::with_config(&format!("http://127.0.0.1:{port}"), config()).unwrap();
    let e = dbs.list().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert!(e.message.contains(&format!("http://127.0.0.1:{port}/dbs")), "names the URL: {e}");
    assert!(e.message.contains("gave up after 3 attempts"), "{e}");
    // The request never left the client, so even a call that is not repeatable is retried.
    let e = dbs.database("db").unwrap().write_batch(vec![]).await.unwrap_err();
    assert!(e.message.contains("gave up after 3 attempts"), "{e}");
}

#[tokio::test]
async fn a_timeout_is_unavailable() {
    let server = FakeServer::start(vec![Reply::Hang]).await;
    let config = ClientConfig {
        request_timeout: Duration::from_millis(50),
        retry: RetryPolicy::none(),
        ..ClientConfig::default()
    };
    let db = RemoteDatabases::with_config(&server.url(), config).unwrap().database("db").unwrap();
    let e = db.info().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert!(e.message.contains("timed out") && e.message.contains(&server.url()), "{e}");
}

#[tokio::test]
async fn bulk_and_creates_are_not_retried() {
    let server = FakeServer::start(vec![unavailable(); 4]).await;
    let db = db_on(&server);
    let ops = vec![WriteOp::delete("t", "x", None)];
    assert_eq!(db.write_batch(ops).await.unwrap_err().kind, ErrorKind::Unavailable);
    let new = NewTable { name: "t".into(), description: "d".into(), ..NewTable::default() };
    assert_eq!(db.create_table(new).await.unwrap_err().kind, ErrorKind::Unavailable);
    let dbs = RemoteDatabases::with_config(&server.url(), config()).unwrap();
    assert_eq!(dbs.create("other").await.err().unwrap().kind, ErrorKind::Unavailable);
    let generated = PutRecord::default();
    assert_eq!(db.put_record("t", generated).await.unwrap_err().kind, ErrorKind::Unavailable);
    let seen = server.seen();
    let lines: Vec<&str> = seen.iter().map(|s| s.line.as_str()).collect();
    assert_eq!(lines, ["POST /dbs/db/bulk", "PUT /dbs/db/tables/t", "PUT /dbs/other", "POST /dbs/db/tables/t/records"]);
    let table: serde_json::Value = serde_json::from_str(&seen[1].body).unwrap();
    assert_eq!(table.get("name"), None, "the path names the table");
    assert_eq!(table["description"], "d");
}

#[tokio::test]
async fn ids_travel_percent_encoded_in_one_segment() {
    let record = json!({"table": "t", "id": "a/b?c#d %é", "rev": REV, "attributes": {}});
    let server = FakeServer::start(vec![Reply::json(200, record.clone()), Reply::json(200, record)]).await;
    let db = db_on(&server);
    let options = GetOptions { rev: Some(REV.parse().unwrap()), conflicts: true, revs: true };
    let got = db.get_record("t", "a/b?c#d %é", options).await.unwrap();
    assert_eq!(got.id, "a/b?c#d %é");
    db.get_record("t", "'; DROP TABLE t; --", GetOptions::default()).await.unwrap();
    assert_eq!(
        server.lines(),
        [
            format!("GET /dbs/db/tables/t/records/a%2Fb%3Fc%23d%20%25%C3%A9?rev={REV}&conflicts=true&revs=true"),
            "GET /dbs/db/tables/t/records/%27%3B%20DROP%20TABLE%20t%3B%20--".to_owned(),
        ]
    );
}

#[tokio::test]
async fn what_a_path_cannot_carry_fails_before_any_request() {
    let server = FakeServer::start(vec![]).await;
    let db = db_on(&server);
    let id = "";
    let e = db.get_record("t", id, GetOptions::default()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput, "{id:?}");
    let put = PutRecord { id: Some(id.into()), ..PutRecord::default() };
    assert_eq!(db.put_record("t", put).await.unwrap_err().kind, ErrorKind::InvalidInput);
    assert_eq!(db.delete_record("t", id, None).await.unwrap_err().kind, ErrorKind::InvalidInput);
    let empty = NewTable::default();
    assert_eq!(db.create_table(empty).await.unwrap_err().kind, ErrorKind::InvalidInput);
    let request = ChangesRequest { tables: Some(vec!["a,b".into()]), ..ChangesRequest::default() };
    assert_eq!(db.changes(request).await.unwrap_err().kind, ErrorKind::InvalidInput);
    let dbs = RemoteDatabases::new(&server.url()).unwrap();
    assert_eq!(dbs.open("../etc").await.err().unwrap().kind, ErrorKind::InvalidInput);
    assert!(server.lines().is_empty());
}

#[tokio::test]
async fn dot_ids_travel_in_the_query() {
    let record = json!({"table": "t", "id": "..", "rev": REV, "deleted": false, "attributes": {}});
    let written = json!({"table": "t", "id": ".", "rev": REV});
    let server =
        FakeServer::start(vec![Reply::json(200, record), Reply::json(200, written.clone()), Reply::json(200, written)])
            .await;
    let db = db_on(&server);
    assert_eq!(db.get_record("t", "..", GetOptions::default()).await.unwrap().id, "..");
    let put = PutRecord { id: Some(".".into()), ..PutRecord::default() };
    db.put_record("t", put).await.unwrap();
    db.delete_record("t", ".", None).await.unwrap();
    assert_eq!(
        server.lines(),
        [
            "GET /dbs/db/tables/t/record?id=..",
            "PUT /dbs/db/tables/t/record?id=.",
            "DELETE /dbs/db/tables/t/record?id=."
        ]
    );
}

#[tokio::test]
async fn batch_items_with_an_error_key_are_errors() {
    let results = json!({"results": [
        {"table": "t", "id": "x", "rev": REV},
        {"error": "conflict", "message": "stale", "current_rev": REV},
        {"error": "invalid_input", "message": "record id is empty"},
    ]});
    let server = FakeServer::start(vec![Reply::json(200, results)]).await;
    let ops = vec![WriteOp::delete("t", "x", None); 3];
    let results = db_on(&server).write_batch(ops).await.unwrap();
    assert_eq!(results[0].as_ref().unwrap().rev.to_string(), REV);
    let kinds: Vec<_> = results[1..].iter().map(|r| r.as_ref().unwrap_err().kind).collect();
    assert_eq!(kinds, [ErrorKind::Conflict, ErrorKind::InvalidInput]);
    assert_eq!(results[1].as_ref().unwrap_err().current_rev, Some(REV.parse().unwrap()));
}

#[tokio::test]
async fn queries_follow_the_contract() {
    let page = json!({"changes": [], "last_seq": 4, "pending": 0});
    let server = FakeServer::start(vec![
        Reply::json(200, page),
        Reply::json(200, json!({"update_seq": 2})),
        Reply::json(200, serde_json::Value::Null),
        Reply::json(200, json!({"update_seq": 9})),
    ])
    .await;
    let db = db_on(&server);
    let request = ChangesRequest { since: 4, limit: 10, tables: Some(vec!["a".into(), "b".into()]) };
    assert_eq!(db.changes(request).await.unwrap().last_seq, 4);
    assert_eq!(db.wait_for_changes(2, Duration::from_micros(10)).await.unwrap(), 2);
    assert_eq!(db.resume_point(Uuid::nil()).await.unwrap(), None);
    assert_eq!(db.wait_for_changes(2, Duration::from_secs(3600)).await.unwrap(), 9);
    assert_eq!(
        server.lines(),
        [
            "GET /dbs/db/changes?since=4&limit=10&tables=a%2Cb",
            "GET /dbs/db/wait?since=2&timeout=1",
            "GET /dbs/db/resume/00000000-0000-0000-0000-000000000000",
            "GET /dbs/db/wait?since=2&timeout=300000",
        ]
    );
}

#[tokio::test]
async fn a_body_that_is_not_the_route_type_is_internal() {
    let server = FakeServer::start(vec![Reply::text(200, "<html>captive portal</html>")]).await;
    let e = db_on(&server).info().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Internal);
    assert!(e.message.contains("GET http://127.0.0.1"), "{e}");
}

#[tokio::test]
async fn databases_list_open_create_and_delete() {
    let server = FakeServer::start(vec![
        Reply::json(200, json!(["a", "b"])),
        Reply::json(200, info_json()),
        Reply::json(201, info_json()),
        Reply::json(200, json!({"ok": true})),
        Reply::json(404, json!({"error": "not_found", "message": "database \"db\" does not exist"})),
    ])
    .await;
    let dbs = RemoteDatabases::with_config(&format!("{}/", server.url()), config()).unwrap();
    assert_eq!(dbs.list().await.unwrap(), ["a", "b"]);
    dbs.open("db").await.unwrap();
    dbs.create("db").await.unwrap();
    dbs.delete("db").await.unwrap();
    assert_eq!(dbs.open("db").await.err().unwrap().kind, ErrorKind::NotFound);
    assert_eq!(server.lines(), ["GET /dbs", "GET /dbs/db", "PUT /dbs/db", "DELETE /dbs/db", "GET /dbs/db"]);
}

#[test]
fn connect_parses_the_locator() {
    let db = crate::connect("http://127.0.0.1:7070/dbs/field").unwrap();
    assert_eq!((db.name(), db.url().as_str()), ("field", "http://127.0.0.1:7070/dbs/field"));
    let e = crate::connect("http://127.0.0.1:7070/field").unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert!(e.message.contains("/dbs/NAME"), "{e}");
}

#[tokio::test]
async fn the_token_travels_as_a_bearer_header_and_never_in_debug_output() {
    let server = FakeServer::start(vec![Reply::json(200, info_json())]).await;
    let token = AccessToken::new("opt_secret-of-the-test").unwrap();
    let config = ClientConfig { token: Some(token), ..config() };
    assert!(!format!("{config:?}").contains("opt_secret"), "{config:?}");
    RemoteDatabases::with_config(&server.url(), config).unwrap().database("db").unwrap().info().await.unwrap();
    assert!(server.seen()[0].head.contains("authorization: bearer opt_secret-of-the-test"), "{:?}", server.seen());
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let moved = Reply::Status {
        status: 307,
        body: String::new(),
        headers: vec![("location".into(), "http://127.0.0.1:1/elsewhere".into())],
    };
    let server = FakeServer::start(vec![moved, Reply::json(200, info_json())]).await;
    let e = db_on(&server).info().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput, "{e}");
    assert!(e.message.contains("redirects") && e.message.contains("http://127.0.0.1:1/elsewhere"), "{e}");
    assert_eq!(server.lines().len(), 1, "one request, not followed");
}

#[tokio::test]
async fn a_response_over_the_cap_is_too_large() {
    let big = json!({"padding": "x".repeat(4096)});
    let server = FakeServer::start(vec![Reply::json(200, big)]).await;
    let config = ClientConfig { max_response_bytes: 1024, ..config() };
    let db = RemoteDatabases::with_config(&server.url(), config).unwrap().database("db").unwrap();
    let e = db.info().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge, "{e}");
}

#[test]
fn credentials_in_a_url_are_refused_without_being_repeated() {
    let e = RemoteDatabases::new("https://user:opt_leaked@hq.example:7443").unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert!(e.message.contains("credentials do not belong in a URL") && !e.message.contains("opt_leaked"), "{e}");
    let e = AccessToken::new("  ").unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
}
