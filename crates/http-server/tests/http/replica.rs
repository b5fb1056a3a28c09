//! The replication routes: one pass from `a` to `b` over HTTP, chain hashes, knowledge, resume
//! points, and a corrupt revision refused with 422.

use axum::http::Method;
use serde_json::{json, Value};

use crate::support::Server;

/// revs-diff, revs/get and revs/put for everything `a` has; returns the resume point stored.
async fn replicate(server: &Server) -> Value {
    let info = server.get("/dbs/a").await.expect_status(200);
    let changes = server.get("/dbs/a/changes?limit=10000").await.expect_status(200);
    let have: Vec<Value> = changes["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| json!({"table": c["table"], "id": c["id"], "revs": c["leaves"]}))
        .collect();
    let missing = server.call(Method::POST, "/dbs/b/revs-diff").json(json!(have)).send().await.expect_status(200);
    assert_eq!(missing.as_array().unwrap().len(), have.len());
    let revisions = server.call(Method::POST, "/dbs/a/revs/get").json(missing).send().await.expect_status(200);
    assert!(revisions.as_array().unwrap().iter().all(|r| r["attributes"].is_object()));
    let resume = json!({"source": info["uuid"], "source_seq": info["update_seq"], "source_chain": info["chain"]});
    let body = json!({"revisions": revisions, "resume": resume});
    let put = server.call(Method::POST, "/dbs/b/revs/put").json(body).send().await.expect_status(200);
    assert_eq!(put["written"], revisions.as_array().unwrap().len());
    let again = server.call(Method::POST, "/dbs/b/revs-diff").json(json!(have)).send().await.expect_status(200);
    assert_eq!(again, json!([]));
    resume
}

#[tokio::test]
async fn a_replication_pass_runs_over_http() {
    let server = Server::with_table().await;
    server.call(Method::PUT, "/dbs/b").send().await.expect_status(201);
    let rev = server.put("a", "t", "r1", 1).await;
    server.put("a", "t", "r2", 2).await;
    let resume = replicate(&server).await;

    let copied = server.get("/dbs/b/tables/t/records/r1").await.expect_status(200);
    assert_eq!((copied["rev"].as_str(), &copied["attributes"]), (Some(rev.as_str()), &json!({"n": {"int": "1"}})));
    let uuid = resume["source"].as_str().unwrap();
    assert_eq!(server.get(&format!("/dbs/b/resume/{uuid}")).await.expect_status(200), resume);
    let unknown = "0190a0a0-0000-7000-8000-000000000000";
    assert_eq!(server.get(&format!("/dbs/b/resume/{unknown}")).await.expect_status(200), Value::Null);
    server.get(&format!("/dbs/nope/resume/{unknown}")).await.expect_error(404, "not_found");

    // Chain hashes: seq 0 is genesis, update_seq is the head, beyond it is not found.
    let info = server.get("/dbs/a").await.expect_status(200);
    let genesis = server.get("/dbs/a/chain/0").await.expect_status(200);
    assert_eq!(genesis["seq"], 0);
    assert_eq!(genesis["chain"].as_str().unwrap().len(), 64);
    let head = server.get(&format!("/dbs/a/chain/{}", info["update_seq"])).await.expect_status(200);
    assert_eq!(head["chain"], info["chain"]);
    server.get("/dbs/a/chain/999").await.expect_error(404, "not_found");

    // Knowledge: recorded at b's update_seq, read back with and without `upto`.
    let update = json!({
        "source": resume["source"], "source_seq": resume["source_seq"], "source_chain": resume["source_chain"],
        "imported": []
    });
    let ok = server.call(Method::POST, "/dbs/b/knowledge").json(update).send().await.expect_status(200);
    assert_eq!(ok, json!({"ok": true}));
    let rows = server.get("/dbs/b/knowledge").await.expect_status(200);
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    assert_eq!(rows[0]["peer"], resume["source"]);
    assert_eq!(rows[0]["peer_seq"], resume["source_seq"]);
    let local = rows[0]["local_seq"].as_u64().unwrap();
    assert_eq!(server.get(&format!("/dbs/b/knowledge?upto={local}")).await.expect_status(200), rows);
    assert_eq!(server.get(&format!("/dbs/b/knowledge?upto={}", local - 1)).await.expect_status(200), json!([]));
    assert_eq!(server.get("/dbs/a/knowledge").await.expect_status(200), json!([]));
}

#[tokio::test]
async fn a_revision_that_does_not_match_its_hash_is_corrupt_and_not_stored() {
    let server = Server::with_table().await;
    server.call(Method::PUT, "/dbs/b").send().await.expect_status(201);
    let rev = server.put("a", "t", "r", 1).await;
    let wanted = json!([{"table": "t", "id": "r", "revs": [rev]}]);
    let mut revisions = server.call(Method::POST, "/dbs/a/revs/get").json(wanted).send().await.expect_status(200);
    assert_eq!(revisions[0]["attributes"], json!({"n": {"int": "1"}}));
    revisions[0]["attributes"] = json!({"n": {"int": "2"}});
    let body = json!({"revisions": revisions});
    let reply = server.call(Method::POST, "/dbs/b/revs/put").json(body).send().await;
    reply.expect_error(422, "corrupt");
    assert_eq!(server.update_seq("b").await, 0);
    let have = json!([{"table": "t", "id": "r", "revs": [rev]}]);
    let missing = server.call(Method::POST, "/dbs/b/revs-diff").json(have.clone()).send().await.expect_status(200);
    assert_eq!(missing, have);
}
