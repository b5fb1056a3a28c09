//! SPEC §17 end to end over real sockets: a CouchDB replication client (the requests PouchDB makes,
//! written out here) pushes its revisions into an Outpost server and pulls Outpost's back; the
//! revisions it made are kept as foreign revisions under their ids and replicate on between Outpost
//! servers; a document Outpost cannot take is refused alone; checkpoints stay local; a long-poll
//! wakes on a write.

use std::time::Duration;

use outpost_api::{
    Database, GetOptions, InfoReader, NewTable, RecordReader, RecordRevs, RecordWriter, ReplicaSource, RevId,
    TableReader, TableUpdate, TableWriter,
};
use outpost_reconciler::{replicate, Options};
use outpost_tests::peer::PeerServer;
use outpost_tests::support::{ok, plain, winner_of};
use serde_json::{json, Value};

const H1: &str = "0123456789abcdef0123456789abcdef";
const H2A: &str = "2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a";
const H2B: &str = "2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b";
const H3: &str = "33333333333333333333333333333333";

/// A CouchDB client of one table, `http://…/couch/{db}/{table}`.
struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(server: &PeerServer, db: &str, table: &str) -> Self {
        Client { http: reqwest::Client::new(), base: format!("{}/couch/{db}/{table}", server.url()) }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("a body");
        (status, serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}")))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
}

async fn couch_table(db: &dyn Database, name: &str) {
    ok(db.create_table(NewTable { name: name.into(), couch: true, ..NewTable::default() }).await, "couch table");
}

fn doc(id: &str, gen: u64, hashes: &[&str], body: Value) -> Value {
    let mut d = body;
    d["_id"] = json!(id);
    d["_rev"] = json!(format!("{gen}-{}", hashes[0]));
    d["_revisions"] = json!({"start": gen, "ids": hashes});
    d
}

fn rev(text: &str) -> RevId {
    text.parse().expect("a revision id")
}

/// The push and pull of a PouchDB replication, request by request: revs-diff, bulk-docs with
/// `new_edits: false` (parents first, one document refused alone), the changes feed in `all_docs`
/// style, bulk-get with histories, checkpoints; Outpost keeps the client's ids and picks the
/// winner CouchDB picks; its own revisions go out under their own ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_couchdb_client_replicates_both_ways() {
    let server = PeerServer::start();
    let db = server.create("field").await;
    couch_table(&*db, "orders").await;
    ok(db.create_table(NewTable { name: "closed".into(), ..NewTable::default() }).await, "plain table");
    let c = Client::new(&server, "field", "orders");

    let (status, root) =
        Client { http: reqwest::Client::new(), base: format!("{}/couch/field", server.url()) }.get("/").await;
    assert_eq!((status, root["couchdb"].as_str()), (200, Some("Welcome")));
    let uuid = root["uuid"].as_str().expect("a uuid").to_owned();
    assert_eq!(uuid, ok(db.info().await, "info").epochs[0].uuid.simple().to_string(), "the first epoch's");
    assert_eq!(Client::new(&server, "field", "closed").get("/").await.0, 403, "couch: false");
    assert_eq!(Client::new(&server, "field", "nothing").get("/").await.0, 404);

    // Push: a line 1 → 2a, a branch 2b → 3 (a tombstone), and a document with an attachment.
    let asked = json!({"x": [format!("2-{H2A}"), format!("3-{H3}")], "y": [format!("1-{H1}")]});
    let (status, missing) = c.post("/_revs_diff", asked).await;
    assert_eq!(status, 200);
    assert_eq!(missing["x"]["missing"].as_array().map(Vec::len), Some(2));
    let docs = json!({"new_edits": false, "docs": [
        doc("x", 2, &[H2A, H1], json!({"qty": 1.5, "tags": ["a", 7], "note": null})),
        doc("x", 3, &[H3, H2B, H1], json!({"_deleted": true})),
        doc("y", 1, &[H1], json!({"_attachments": {"a.txt": {"data": "aGk="}}})),
        doc("a/b", 1, &[H1], json!({"path": "a/b"})),
    ]});
    let (status, refusals) = c.post("/_bulk_docs", docs).await;
    assert_eq!(status, 201);
    let refusals = refusals.as_array().expect("a list");
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!((refusals[0]["id"].as_str(), refusals[0]["error"].as_str()), (Some("y"), Some("forbidden")));

    // Outpost keeps the client's ids as foreign revisions, and the winner CouchDB picks.
    let record = ok(db.get_record("orders", "x", GetOptions { conflicts: true, ..GetOptions::default() }).await, "x");
    let leaves = [(rev(&format!("2-{H2A}")), false), (rev(&format!("3-{H3}")), true)];
    assert_eq!(record.rev, winner_of(&leaves), "a live leaf beats a deeper tombstone");
    let wanted = vec![RecordRevs { table: "orders".into(), id: "x".into(), revs: vec![record.rev] }];
    assert!(ok(db.get_revisions(wanted).await, "revs")[0].foreign.is_some(), "foreign");
    let check = ok(db.check().await, "check");
    assert!(check.problems.is_empty() && check.foreign >= 3, "{check:?}");

    // Pull: an Outpost write, then the feed in all_docs style, and bulk-get with histories.
    let native =
        ok(db.put_record("orders", outpost_tests::support::put_of("n", None, plain(json!({"k": 42})))).await, "native")
            .rev;
    let (_, feed) = c.get("/_changes?style=all_docs&since=0&limit=100").await;
    let results = feed["results"].as_array().expect("results");
    let x = results.iter().find(|r| r["id"] == "x").expect("x in the feed");
    assert_eq!(x["changes"].as_array().map(Vec::len), Some(2), "every leaf: {x}");
    assert!(results.iter().all(|r| r["id"] != "orders"), "the table's definition is not a document");
    let last_seq = feed["last_seq"].as_str().expect("an opaque last_seq").to_owned();
    assert!(last_seq.ends_with(&uuid[..16]), "{last_seq} carries the epoch");
    let (_, got) = c
        .post("/_bulk_get?revs=true", json!({"docs": [{"id": "x", "rev": format!("2-{H2A}")}, {"id": "n", "rev": native.to_string()}, {"id": "x", "rev": format!("9-{H1}")}]}))
        .await;
    let got = got["results"].as_array().expect("results");
    let x = &got[0]["docs"][0]["ok"];
    assert_eq!((x["qty"].to_string(), x["tags"].clone()), ("1.5".to_owned(), json!(["a", 7])));
    assert_eq!(x["_revisions"], json!({"start": 2, "ids": [H2A, H1]}));
    assert_eq!(got[1]["docs"][0]["ok"]["_rev"], json!(native.to_string()), "native ids go out as they are");
    assert_eq!(got[2]["docs"][0]["error"]["error"], json!("not_found"));

    // A checkpoint is the client's own: revisioned, and not a change.
    let (status, saved) = c.call(reqwest::Method::PUT, "/_local/cp", Some(json!({"last_seq": last_seq}))).await;
    assert_eq!((status, saved["rev"].as_str()), (201, Some("0-1")));
    let (status, _) = c.call(reqwest::Method::PUT, "/_local/cp", Some(json!({"last_seq": "x"}))).await;
    assert_eq!(status, 409, "a checkpoint write names the revision it replaces");
    assert_eq!(c.get("/_local/cp").await.1["last_seq"], json!(last_seq));
    let (_, after) = c.get(&format!("/_changes?since={last_seq}")).await;
    assert_eq!(after["results"], json!([]), "no change since");
    let (_, from_elsewhere) = c.get("/_changes?since=5-0000000000000000").await;
    assert!(!from_elsewhere["results"].as_array().expect("results").is_empty(), "another epoch's since starts over");

    // A long-poll with heartbeats wakes on a write.
    let poll = {
        let (http, url) = (
            c.http.clone(),
            format!("{}/_changes?feed=longpoll&heartbeat=1000&timeout=20000&since={last_seq}", c.base),
        );
        tokio::spawn(async move { http.get(url).send().await.expect("answered").text().await.expect("a body") })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    ok(db.put_record("orders", outpost_tests::support::put_of("late", None, plain(json!({"v": 1})))).await, "late");
    let text = tokio::time::timeout(Duration::from_secs(20), poll).await.expect("the poll ends").expect("joined");
    let woke: Value = serde_json::from_str(text.trim()).expect("JSON after the heartbeats");
    assert_eq!(woke["results"][0]["id"], json!("late"));
    drop(server);
}

/// Revisions a CouchDB client made replicate between Outpost servers with their digests (the table
/// definition, `couch: true`, with them), and reach a client of the second server with the same
/// ids, winners and bodies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_revisions_replicate_between_outpost_servers() {
    let (a, b) = (PeerServer::start(), PeerServer::start());
    let (db_a, db_b) = (a.create("field").await, b.create("field").await);
    couch_table(&*db_a, "orders").await;
    let docs = json!({"new_edits": false, "docs": [
        doc("x", 2, &[H2A, H1], json!({"v": "a"})),
        doc("x", 2, &[H2B, H1], json!({"v": "b"})),
        doc("z", 1, &[H3], json!({"n": 1.25})),
    ]});
    let (status, refusals) = Client::new(&a, "field", "orders").post("/_bulk_docs", docs).await;
    assert_eq!((status, refusals), (201, json!([])));
    // The definition changes after the records: the feed lists it after them, yet it must reach b
    // first, or b would refuse foreign revisions into a table it does not know to be open.
    let later = TableUpdate { description: Some("updated after its records".into()), ..TableUpdate::default() };
    ok(db_a.update_table("orders", later).await, "update the definition");
    // One record a page, so the definition cannot ride in the same batch as the records.
    let one_by_one = Options { batch_size: 1, ..Options::default() };
    ok(replicate(&a.remote("field"), &b.remote("field"), &one_by_one).await, "a → b");
    assert!(ok(db_b.get_table("orders").await, "the definition came along").couch);
    for id in ["x", "z"] {
        let options = || GetOptions { conflicts: true, revs: true, ..GetOptions::default() };
        assert_eq!(
            ok(db_b.get_record("orders", id, options()).await, id),
            ok(db_a.get_record("orders", id, options()).await, id)
        );
    }
    let check = ok(db_b.check().await, "check b");
    assert!(check.problems.is_empty() && check.foreign == 3, "{check:?}");
    let asked = json!({"docs": [{"id": "x", "rev": format!("2-{H2B}")}, {"id": "z"}]});
    let (_, from_a) = Client::new(&a, "field", "orders").post("/_bulk_get?revs=true", asked.clone()).await;
    let (_, from_b) = Client::new(&b, "field", "orders").post("/_bulk_get?revs=true", asked).await;
    assert_eq!(from_a, from_b, "a client of either server reads the same documents");
    assert_eq!(from_b["results"][1]["docs"][0]["ok"]["n"].to_string(), "1.25");
}

/// What a hostile CouchDB client sends is refused without harm: batches past the limits (413), a
/// document that is no object, ids reserved for checkpoints, deletes that name no revision; a
/// long-poll filtered to documents that never change answers at its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_couchdb_requests_are_refused() {
    let server = PeerServer::start();
    let db = server.create("field").await;
    couch_table(&*db, "orders").await;
    let c = Client::new(&server, "field", "orders");
    let limits = outpost_api::Limits::default();
    let many: Vec<Value> = (0..=limits.max_bulk_ops).map(|i| json!({"_id": format!("d{i}"), "v": i})).collect();
    let (status, body) = c.post("/_bulk_docs", json!({"new_edits": false, "docs": many})).await;
    assert_eq!((status, body["error"].as_str()), (413, Some("too_large")), "{body}");
    let asked: Vec<Value> = (0..=limits.max_request_entries).map(|i| json!({"id": format!("d{i}")})).collect();
    assert_eq!(c.post("/_bulk_get", json!({"docs": asked})).await.0, 413);
    let (status, _) = c.call(reqwest::Method::PUT, "/x?new_edits=false", Some(json!([1]))).await;
    assert_eq!(status, 400, "a document that is no object");
    let (status, _) = c.call(reqwest::Method::PUT, "/_local%2Fx", Some(json!({"v": 1}))).await;
    assert_eq!(status, 400, "a record id reserved for checkpoints");
    let (status, results) =
        c.post("/_bulk_docs", json!({"docs": [{"_id": "y", "v": 1}, {"_id": "y", "_deleted": true}]})).await;
    assert_eq!(status, 201);
    assert_eq!(
        (results[0]["ok"].as_bool(), results[1]["error"].as_str(), results[1]["id"].as_str()),
        (Some(true), Some("conflict"), Some("y"))
    );
    // Writes to other documents do not end a poll filtered to one that never changes, and it answers
    // empty, with where to go on from, at its timeout.
    let poll = {
        let url = format!(
            "{}/_changes?feed=longpoll&timeout=1500&filter=_doc_ids&doc_ids=%5B%22never%22%5D&since=now",
            c.base
        );
        let http = c.http.clone();
        tokio::spawn(async move { http.get(url).send().await.expect("answered").json::<Value>().await.expect("JSON") })
    };
    for i in 0..5 {
        ok(
            db.put_record("orders", outpost_tests::support::put_of(&format!("w{i}"), None, plain(json!({"i": i}))))
                .await,
            "write",
        );
    }
    let answer = tokio::time::timeout(Duration::from_secs(30), poll).await.expect("the poll ends").expect("joined");
    assert_eq!(answer["results"], json!([]), "{answer}");
    assert!(answer["last_seq"].as_str().is_some_and(|s| s.contains('-')), "{answer}");
}
