//! Every route of docs/HTTP.md, the happy path and its documented error statuses.

use axum::http::Method;
use serde_json::json;

use crate::support::{unchained, Server};

#[tokio::test]
async fn root_and_health_answer() {
    let server = Server::new();
    let root = server.get("/").await.expect_status(200);
    assert_eq!(root["name"], "outpost");
    assert_eq!(root["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(server.get("/health").await.expect_status(200), json!({"status": "ok"}));
}

#[tokio::test]
async fn requests_carry_a_request_id() {
    let server = Server::new();
    let reply = server.get("/health").await;
    assert!(reply.headers.get("x-request-id").is_some_and(|v| !v.is_empty()));
    let reply = server.call(Method::GET, "/health").header("x-request-id", "abc-123").send().await;
    assert_eq!(reply.headers["x-request-id"], "abc-123");
}

#[tokio::test]
async fn databases_are_created_listed_read_and_deleted() {
    let server = Server::new();
    assert_eq!(server.get("/dbs").await.expect_status(200), json!([]));
    let info = server.call(Method::PUT, "/dbs/field-1").send().await.expect_status(201);
    assert_eq!(info["name"], "field-1");
    assert_eq!(info["update_seq"], 0);
    assert_eq!(info["backend"], "sqlite");
    server.call(Method::PUT, "/dbs/field-1").send().await.expect_error(412, "already_exists");
    server.call(Method::PUT, "/dbs/b").send().await.expect_status(201);
    assert_eq!(server.get("/dbs").await.expect_status(200), json!(["b", "field-1"]));
    assert_eq!(server.get("/dbs/field-1").await.expect_status(200)["uuid"], info["uuid"]);
    server.get("/dbs/nope").await.expect_error(404, "not_found");
    assert_eq!(server.call(Method::DELETE, "/dbs/field-1").send().await.expect_status(200), json!({"ok": true}));
    server.call(Method::DELETE, "/dbs/field-1").send().await.expect_error(404, "not_found");
    server.get("/dbs/field-1").await.expect_error(404, "not_found");
    assert_eq!(server.get("/dbs").await.expect_status(200), json!(["b"]));
}

#[tokio::test]
async fn tables_are_created_updated_read_and_deleted() {
    let server = Server::new();
    server.call(Method::PUT, "/dbs/a").send().await.expect_status(201);
    server.call(Method::PUT, "/dbs/nope/tables/t").send().await.expect_error(404, "not_found");
    let body = json!({
        "description": "orders", "created_by": "ann", "policy": "merge-fields",
        "fields": {"qty": {"type": "int", "required": true}}, "metadata": {"owner": {"string": "ops"}}
    });
    let def = server.call(Method::PUT, "/dbs/a/tables/orders").json(body).send().await.expect_status(201);
    assert_eq!(def["name"], "orders");
    assert_eq!(def["policy"], "merge-fields");
    assert_eq!(def["fields"]["qty"], json!({"type": "int", "required": true}));
    assert_eq!(def["metadata"], json!({"owner": {"string": "ops"}}));
    // An empty body makes a table with defaults; a `name` must match the path.
    let empty = server.call(Method::PUT, "/dbs/a/tables/notes").send().await.expect_status(201);
    assert_eq!(empty["policy"], "keep-conflicts");
    let named = json!({"name": "other"});
    server.call(Method::PUT, "/dbs/a/tables/x").json(named).send().await.expect_error(400, "invalid_input");
    let named = json!({"name": "same"});
    server.call(Method::PUT, "/dbs/a/tables/same").json(named).send().await.expect_status(201);
    server.call(Method::PUT, "/dbs/a/tables/orders").send().await.expect_error(412, "already_exists");

    let list = server.get("/dbs/a/tables").await.expect_status(200);
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["notes", "orders", "same"]);
    assert_eq!(server.get("/dbs/a/tables/orders").await.expect_status(200), def);

    let update = json!({"rev": def["rev"], "description": "what was ordered"});
    let updated = server.call(Method::PATCH, "/dbs/a/tables/orders").json(update).send().await.expect_status(200);
    assert_eq!(updated["description"], "what was ordered");
    assert_ne!(updated["rev"], def["rev"]);
    let stale = json!({"rev": def["rev"], "description": "stale"});
    server.call(Method::PATCH, "/dbs/a/tables/orders").json(stale).send().await.expect_error(409, "conflict");
    let missing = json!({"description": "x"});
    server.call(Method::PATCH, "/dbs/a/tables/nope").json(missing).send().await.expect_error(404, "not_found");

    let deleted = server.call(Method::DELETE, "/dbs/a/tables/orders").send().await.expect_status(200);
    assert_eq!(deleted, json!({"ok": true}));
    server.get("/dbs/a/tables/orders").await.expect_error(404, "not_found");
    server.call(Method::DELETE, "/dbs/a/tables/orders").send().await.expect_error(404, "not_found");
}

#[tokio::test]
async fn records_are_written_read_listed_and_deleted() {
    let server = Server::with_table().await;
    let attributes = json!({"qty": {"int": "4"}, "note": {"string": "fragile"}});
    let written = server
        .call(Method::PUT, "/dbs/a/tables/t/records/r1")
        .json(json!({"attributes": attributes}))
        .send()
        .await
        .expect_status(200);
    assert_eq!((&written["table"], &written["id"]), (&json!("t"), &json!("r1")));
    let rev1 = written["rev"].as_str().unwrap().to_owned();
    assert!(rev1.starts_with("1-"));

    let record = server.get("/dbs/a/tables/t/records/r1").await.expect_status(200);
    assert_eq!(record["attributes"], attributes);
    assert_eq!(record["rev"], rev1.as_str());
    assert_eq!(record["deleted"], false);

    // Creating again without a rev conflicts and names the winner; a stale rev too.
    let again = json!({"attributes": {}});
    let conflict =
        server.call(Method::PUT, "/dbs/a/tables/t/records/r1").json(again).send().await.expect_error(409, "conflict");
    assert_eq!(conflict["current_rev"], rev1.as_str());

    // Updates name the rev in the body or in If-Match.
    let update = json!({"rev": rev1, "attributes": {"qty": {"int": "5"}}});
    let rev2 = server.call(Method::PUT, "/dbs/a/tables/t/records/r1").json(update).send().await.expect_status(200)
        ["rev"]
        .clone();
    let stale = json!({"attributes": {"qty": {"int": "6"}}});
    let reply = server
        .call(Method::PUT, "/dbs/a/tables/t/records/r1")
        .header("if-match", &format!("\"{rev1}\""))
        .json(stale.clone())
        .send()
        .await;
    assert_eq!(reply.expect_error(409, "conflict")["current_rev"], rev2);
    let rev3 = server
        .call(Method::PUT, "/dbs/a/tables/t/records/r1")
        .header("if-match", &format!("\"{}\"", rev2.as_str().unwrap()))
        .json(stale)
        .send()
        .await
        .expect_status(200)["rev"]
        .clone();
    assert!(rev3.as_str().unwrap().starts_with("3-"));

    let full = server.get("/dbs/a/tables/t/records/r1?revs=true&conflicts=true").await.expect_status(200);
    assert_eq!(full["revisions"].as_array().unwrap().len(), 3);
    assert_eq!(full["conflicts"], json!([]));
    let old = server.get(&format!("/dbs/a/tables/t/records/r1?rev={rev1}")).await.expect_status(200);
    assert_eq!(old["attributes"], attributes);
    server
        .get("/dbs/a/tables/t/records/r1?rev=9-00000000000000000000000000000000")
        .await
        .expect_error(404, "not_found");

    // POST generates a UUID v7 id.
    let posted = server
        .call(Method::POST, "/dbs/a/tables/t/records")
        .json(json!({"attributes": {"x": {"bool": true}}}))
        .send()
        .await
        .expect_status(200);
    let id = posted["id"].as_str().unwrap();
    assert_eq!(id.len(), 36);
    assert_eq!(&id[14..15], "7", "UUID v7: {id}");
    assert_eq!(server.get(&format!("/dbs/a/tables/t/records/{id}")).await.expect_status(200)["id"], id);

    // Delete by ?rev=, then by If-Match; a deleted record is not found unless asked for.
    server
        .call(Method::DELETE, &format!("/dbs/a/tables/t/records/r1?rev={rev1}"))
        .send()
        .await
        .expect_error(409, "conflict");
    let gone = server
        .call(Method::DELETE, &format!("/dbs/a/tables/t/records/r1?rev={}", rev3.as_str().unwrap()))
        .send()
        .await
        .expect_status(200);
    assert!(gone["rev"].as_str().unwrap().starts_with("4-"));
    server.get("/dbs/a/tables/t/records/r1").await.expect_error(404, "not_found");
    server.call(Method::DELETE, "/dbs/a/tables/t/records/never").send().await.expect_error(404, "not_found");
    let posted_rev = posted["rev"].as_str().unwrap();
    server
        .call(Method::DELETE, &format!("/dbs/a/tables/t/records/{id}"))
        .header("if-match", &format!("\"{posted_rev}\""))
        .send()
        .await
        .expect_status(200);
    let page = server.get("/dbs/a/tables/t/records").await.expect_status(200);
    assert_eq!(page, json!({"records": [], "next_after": null}));
    let page = server.get("/dbs/a/tables/t/records?include_deleted=true").await.expect_status(200);
    assert_eq!(page["records"].as_array().unwrap().len(), 2);
    assert!(page["records"].as_array().unwrap().iter().all(|r| r["deleted"] == true));
    server.get("/dbs/a/tables/nope/records").await.expect_error(404, "not_found");
    server.get("/dbs/a/tables/nope/records/x").await.expect_error(404, "not_found");
}

#[tokio::test]
async fn records_list_by_pages_in_id_order() {
    let server = Server::with_table().await;
    for id in ["c", "a", "e", "b", "d"] {
        server.put("a", "t", id, 1).await;
    }
    let mut ids = Vec::new();
    let mut uri = "/dbs/a/tables/t/records?limit=2".to_owned();
    loop {
        let page = server.get(&uri).await.expect_status(200);
        ids.extend(page["records"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()));
        match page["next_after"].as_str() {
            Some(after) => uri = format!("/dbs/a/tables/t/records?limit=2&after={after}"),
            None => break,
        }
    }
    assert_eq!(ids, ["a", "b", "c", "d", "e"]);
}

#[tokio::test]
async fn record_ids_are_percent_decoded_data() {
    let server = Server::with_table().await;
    for (encoded, id) in [("a%2Fb", "a/b"), ("..", ".."), ("%2e%2e%2Fetc", "../etc"), ("caf%C3%A9%20x", "café x")] {
        let uri = format!("/dbs/a/tables/t/records/{encoded}");
        let written = server.call(Method::PUT, &uri).json(json!({"attributes": {}})).send().await.expect_status(200);
        assert_eq!(written["id"], id);
        assert_eq!(server.get(&uri).await.expect_status(200)["id"], id);
    }
    assert_eq!(server.files(), ["a.outpost"]);
}

#[tokio::test]
async fn plain_json_is_asked_for_by_query_or_accept() {
    let server = Server::with_table().await;
    let plain = json!({"qty": 4, "price": 12.5, "tags": ["a", null], "ok": true, "nested": {"k": "v"}});
    let written = server
        .call(Method::PUT, "/dbs/a/tables/t/records/p?format=plain")
        .json(json!({"attributes": plain}))
        .send()
        .await
        .expect_status(200);
    let typed = server.get("/dbs/a/tables/t/records/p").await.expect_status(200);
    assert_eq!(typed["attributes"]["qty"], json!({"int": "4"}));
    assert_eq!(typed["attributes"]["price"], json!({"decimal": "12.5"}));
    assert_eq!(server.get("/dbs/a/tables/t/records/p?format=plain").await.expect_status(200)["attributes"], plain);
    let accept = "application/json; format=plain";
    let reply = server.call(Method::GET, "/dbs/a/tables/t/records/p").header("accept", accept).send().await;
    let record = reply.expect_status(200);
    assert_eq!(record["attributes"], plain);
    assert_eq!(record["rev"], written["rev"]);
    let page = server.call(Method::GET, "/dbs/a/tables/t/records").header("accept", accept).send().await;
    assert_eq!(page.expect_status(200)["records"][0]["attributes"], plain);

    // Writes in plain JSON through Accept, and POST.
    let update = json!({"rev": written["rev"], "attributes": {"qty": 5}});
    let reply =
        server.call(Method::PUT, "/dbs/a/tables/t/records/p").header("accept", accept).json(update).send().await;
    reply.expect_status(200);
    assert_eq!(server.get("/dbs/a/tables/t/records/p?format=plain").await.json()["attributes"], json!({"qty": 5}));
    let posted = server
        .call(Method::POST, "/dbs/a/tables/t/records?format=plain")
        .json(json!({"attributes": {"big": 123456789012345678901234567890u128}}))
        .send()
        .await
        .expect_status(200);
    let id = posted["id"].as_str().unwrap();
    let typed = server.get(&format!("/dbs/a/tables/t/records/{id}")).await.expect_status(200);
    assert_eq!(typed["attributes"]["big"], json!({"decimal": "123456789012345678901234567890"}));
    // Typed input is not plain JSON: a bare number is not a typed value.
    let bare = json!({"attributes": {"qty": 4}});
    server.call(Method::PUT, "/dbs/a/tables/t/records/q").json(bare).send().await.expect_error(400, "invalid_input");
}

#[tokio::test]
async fn bulk_writes_answer_per_operation() {
    let server = Server::with_table().await;
    let rev = server.put("a", "t", "x", 1).await;
    let ops = json!({"ops": [
        {"op": "put", "table": "t", "id": "y", "attributes": {"n": {"int": "1"}}},
        {"op": "put", "table": "t", "id": "x", "attributes": {"n": {"int": "2"}}},
        {"op": "delete", "table": "t", "id": "x", "rev": rev},
        {"op": "put", "table": "nope", "id": "z"},
    ]});
    let reply = server.call(Method::POST, "/dbs/a/bulk").json(ops).send().await.expect_status(200);
    let results = reply["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    assert_eq!(results[0]["id"], "y");
    assert_eq!(results[1]["error"], "conflict");
    assert_eq!(results[1]["current_rev"], rev.as_str());
    assert!(results[2]["rev"].as_str().unwrap().starts_with("2-"));
    assert_eq!(results[3]["error"], "not_found");
    server.get("/dbs/a/tables/t/records/y").await.expect_status(200);
    server.get("/dbs/a/tables/t/records/x").await.expect_error(404, "not_found");
    server.call(Method::POST, "/dbs/nope/bulk").json(json!({"ops": []})).send().await.expect_error(404, "not_found");
}

#[tokio::test]
async fn bulk_writes_take_plain_json_too() {
    let server = Server::with_table().await;
    let ops = json!({"ops": [
        {"op": "put", "table": "t", "id": "a", "attributes": {"qty": 4, "price": 12.5, "tags": ["x"]}},
        {"op": "put", "table": "t", "id": "b"},
        {"op": "put", "table": "t", "id": "c", "attributes": null},
    ]});
    let reply = server.call(Method::POST, "/dbs/a/bulk?format=plain").json(ops).send().await.expect_status(200);
    assert!(reply["results"].as_array().unwrap().iter().all(|r| r["rev"].is_string()), "{reply}");
    let typed = server.get("/dbs/a/tables/t/records/a").await.expect_status(200);
    assert_eq!(typed["attributes"]["qty"], json!({"int": "4"}));
    assert_eq!(typed["attributes"]["price"], json!({"decimal": "12.5"}));
    assert_eq!(server.get("/dbs/a/tables/t/records/c").await.expect_status(200)["attributes"], json!({}));
    // Through Accept as on the record routes; a bad value names its operation, and nothing is written.
    let accept = "application/json; format=plain";
    let bad = json!({"ops": [
        {"op": "put", "table": "t", "id": "d", "attributes": {"n": 1}},
        {"op": "put", "table": "t", "id": "e", "attributes": {"_hidden": 1}},
    ]});
    let reply = server.call(Method::POST, "/dbs/a/bulk").header("accept", accept).json(bad).send().await;
    let error = reply.expect_error(400, "invalid_input");
    assert!(error["message"].as_str().unwrap().contains("ops[1].attributes"), "{error}");
    server.get("/dbs/a/tables/t/records/d").await.expect_error(404, "not_found");
    // The typed form is still the default: a bare number is not a typed value.
    let bare = json!({"ops": [{"op": "put", "table": "t", "id": "f", "attributes": {"n": 1}}]});
    server.call(Method::POST, "/dbs/a/bulk").json(bare).send().await.expect_error(400, "invalid_input");
}

#[tokio::test]
async fn the_changes_feed_pages_and_filters() {
    let server = Server::with_table().await;
    server.call(Method::PUT, "/dbs/a/tables/u").send().await.expect_status(201);
    for id in ["r1", "r2", "r3"] {
        server.put("a", "t", id, 1).await;
    }
    server.put("a", "u", "s1", 1).await;
    let all = server.get("/dbs/a/changes").await.expect_status(200);
    let seqs: Vec<u64> = all["changes"].as_array().unwrap().iter().map(|c| c["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6], "{all}");
    assert_eq!((all["last_seq"].as_u64(), all["pending"].as_u64()), (Some(6), Some(0)));

    let page = server.get("/dbs/a/changes?since=2&limit=2").await.expect_status(200);
    assert_eq!(page["changes"][0]["seq"], 3);
    assert_eq!((page["last_seq"].as_u64(), page["pending"].as_u64()), (Some(4), Some(2)));
    assert_eq!(page["changes"][0]["id"], "r1");
    assert!(page["changes"][0]["leaves"].is_array());

    let only_u = server.get("/dbs/a/changes?tables=u").await.expect_status(200);
    let ids: Vec<&str> = only_u["changes"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["u", "s1"], "the definition record of u, then its record");
    let none = server.get("/dbs/a/changes?tables=").await.expect_status(200);
    assert_eq!(unchained(none), json!({"changes": [], "last_seq": 6, "pending": 0}), "an empty filter matches nothing");
    let normal = server.get("/dbs/a/changes?since=6&feed=normal").await.expect_status(200);
    assert_eq!(unchained(normal), json!({"changes": [], "last_seq": 6, "pending": 0}));
    server.get("/dbs/nope/changes").await.expect_error(404, "not_found");
}

#[tokio::test]
async fn wait_answers_the_update_seq() {
    let server = Server::with_table().await;
    server.put("a", "t", "r", 1).await;
    assert_eq!(server.get("/dbs/a/wait?since=0").await.expect_status(200), json!({"update_seq": 2}));
    // Nothing after 2: the wait times out and answers where the database stands.
    assert_eq!(server.get("/dbs/a/wait?since=2&timeout=1").await.expect_status(200), json!({"update_seq": 2}));
    server.get("/dbs/nope/wait").await.expect_error(404, "not_found");
}
