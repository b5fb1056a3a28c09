//! Replication jobs in-process (`POST /replicate`, `/replicate/jobs`): bad requests, a waited one-shot
//! job and its report, both directions, a continuous job following writes until cancelled, and the
//! jobs file. Jobs between servers and across a restart are end-to-end tests in
//! tests/tests/replicate_jobs.rs.

use std::future::Future;
use std::time::Duration;

use axum::http::Method;
use serde_json::{json, Value};

use crate::support::Server;

const BOUND: Duration = Duration::from_secs(30);

async fn bounded<T>(what: &str, test: impl Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, test).await.unwrap_or_else(|_| panic!("{what} did not finish within {BOUND:?}"))
}

async fn post(server: &Server, body: Value) -> crate::support::Reply {
    server.call(Method::POST, "/replicate").json(body).send().await
}

/// Poll `uri` until it answers 200 (a bounded number of times); its body.
async fn eventually(server: &Server, uri: &str) -> Value {
    for _ in 0..400 {
        let reply = server.get(uri).await;
        if reply.status == 200 {
            return reply.json();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{uri} never answered 200");
}

#[tokio::test]
async fn bad_requests_are_refused_with_their_kind() {
    let server = Server::with_table().await;
    server.call(Method::PUT, "/dbs/b").send().await.expect_status(201);
    let cases = [
        (json!({"target": "b"}), 400, "invalid_input", "source"),
        (json!({"source": "a", "target": "b", "continous": true}), 400, "invalid_input", "continous"),
        (json!({"source": "a", "target": "b", "batch_size": "10"}), 400, "invalid_input", "invalid JSON body"),
        (json!({"source": "A b", "target": "b"}), 400, "invalid_input", "source: expected a database name"),
        (json!({"source": "a", "target": "../b"}), 400, "invalid_input", "target: expected a database name"),
        (json!({"source": "ftp://h/dbs/x", "target": "b"}), 400, "invalid_input", "scheme must be http or https"),
        (json!({"source": "a", "target": "http://h:1/x"}), 400, "invalid_input", "target: invalid database URL"),
        (json!({"source": "http://h:1/dbs/x?y", "target": "b"}), 400, "invalid_input", "query"),
        (json!({"source": "a", "target": "a"}), 400, "invalid_input", "the same database"),
        (json!({"source": "a", "target": "b", "tables": []}), 400, "invalid_input", "at least one table"),
        (json!({"source": "a", "target": "b", "tables": ["T"]}), 400, "invalid_input", "tables: invalid table name"),
        (json!({"source": "a", "target": "b", "batch_size": 0}), 400, "invalid_input", "batch_size"),
        (json!({"source": "a", "target": "b", "batch_size": 10001}), 400, "invalid_input", "batch_size"),
        (json!({"source": "a", "target": "b", "continuous": true, "wait": true}), 400, "invalid_input", "one-shot"),
        (json!({"source": "nope", "target": "b"}), 404, "not_found", "source: this server has no database"),
        (json!({"source": "a", "target": "nope"}), 404, "not_found", "create_target"),
    ];
    for (body, status, kind, reason) in cases {
        let error = post(&server, body.clone()).await.expect_error(status, kind);
        assert!(error["message"].as_str().unwrap().contains(reason), "{body}: {error}");
    }
    server.call(Method::POST, "/replicate").send().await.expect_error(400, "invalid_input");
    server.call(Method::POST, "/replicate").body("{").send().await.expect_error(400, "invalid_input");
    server.get("/replicate").await.expect_error(405, "invalid_input");
    server.get("/replicate/jobs/nope").await.expect_error(404, "not_found");
    server.call(Method::DELETE, "/replicate/jobs/nope").send().await.expect_error(404, "not_found");
    assert_eq!(server.get("/replicate/jobs").await.expect_status(200), json!([]), "no job was started");
    assert_eq!(server.state.dbs.list().await.unwrap(), ["a", "b"], "no database was created");
}

#[tokio::test]
async fn a_waited_one_shot_job_copies_everything_and_reports_it() {
    bounded("the one-shot job", async {
        let server = Server::with_table().await;
        for i in 0..5 {
            server.put("a", "t", &format!("r{i}"), i).await;
        }
        let body = json!({"source": "a", "target": "b", "create_target": true, "wait": true, "batch_size": 2});
        let job = post(&server, body).await.expect_status(200);
        assert_eq!(job["state"], "completed", "{job}");
        assert_eq!((job["source"].as_str(), job["target"].as_str()), (Some("a"), Some("b")));
        assert_eq!((job["continuous"].as_bool(), job["bidirectional"].as_bool()), (Some(false), Some(false)));
        assert!(job["started_at"].is_string() && job["finished_at"].is_string(), "{job}");
        assert!(job.get("error").is_none() && job.get("reports").is_none(), "{job}");
        // The table definition and five records: six revision events, all copied.
        let report = &job["report"];
        assert_eq!(report["changes_read"], 6, "{report}");
        assert_eq!(report["revisions_written"], 6, "{report}");
        assert_eq!(report["end_seq"], 6, "{report}");
        assert_eq!(report["start"]["origin"], "zero", "{report}");
        assert_eq!((report["drained"].as_bool(), report["knowledge_recorded"].as_bool()), (Some(true), Some(true)));
        assert_eq!(report["pages"], 3, "batch_size 2: {report}");
        assert_eq!(job["progress"]["revisions_written"], 6, "{job}");
        for i in 0..5 {
            let record = server.get(&format!("/dbs/b/tables/t/records/r{i}")).await.expect_status(200);
            assert_eq!(record["attributes"]["n"]["int"], i.to_string());
        }
        assert_eq!(
            server.get(&format!("/replicate/jobs/{}", job["id"].as_str().unwrap())).await.expect_status(200),
            job
        );

        // Again: nothing is left to copy, and the pass starts where the first one ended.
        let again = post(&server, json!({"source": "a", "target": "b", "wait": true})).await.expect_status(200);
        assert_eq!(again["report"]["revisions_written"], 0, "{again}");
        assert_eq!(again["report"]["start"]["seq"], 6, "{again}");
        let list = server.get("/replicate/jobs").await.expect_status(200);
        let ids: Vec<&Value> = list.as_array().unwrap().iter().map(|j| &j["id"]).collect();
        assert_eq!(ids, [&again["id"], &job["id"]], "finished jobs, newest first");
        // Cancelling a finished job changes nothing.
        let uri = format!("/replicate/jobs/{}", job["id"].as_str().unwrap());
        assert_eq!(server.call(Method::DELETE, &uri).send().await.expect_status(200)["state"], "completed");
    })
    .await;
}

#[tokio::test]
async fn a_bidirectional_job_reports_both_directions() {
    bounded("the bidirectional job", async {
        let server = Server::with_table().await;
        server.call(Method::PUT, "/dbs/b").send().await.expect_status(201);
        server.call(Method::PUT, "/dbs/b/tables/u").send().await.expect_status(201);
        server.put("a", "t", "from-a", 1).await;
        server.put("b", "u", "from-b", 2).await;
        let body = json!({"source": "a", "target": "b", "bidirectional": true, "wait": true});
        let job = post(&server, body).await.expect_status(200);
        assert_eq!(job["state"], "completed", "{job}");
        assert!(job.get("report").is_none(), "{job}");
        let reports = job["reports"].as_array().expect("two reports");
        assert_eq!(reports.len(), 2);
        assert_eq!(reports[0]["revisions_written"], 2, "a → b: table t and its record");
        assert_eq!(reports[1]["revisions_written"], 2, "b → a: table u and its record");
        assert_eq!(job["reverse_progress"]["revisions_written"], 2, "{job}");
        server.get("/dbs/b/tables/t/records/from-a").await.expect_status(200);
        server.get("/dbs/a/tables/u/records/from-b").await.expect_status(200);
    })
    .await;
}

#[tokio::test]
async fn a_continuous_job_follows_writes_until_cancelled() {
    bounded("the continuous job", async {
        let server = Server::with_table().await;
        server.put("a", "t", "before", 1).await;
        let body = json!({"source": "a", "target": "b", "create_target": true, "continuous": true, "tables": ["t"]});
        let job = post(&server, body).await.expect_status(202);
        assert_eq!(job["state"], "running", "{job}");
        assert_eq!(job["tables"], json!(["t"]));
        let uri = format!("/replicate/jobs/{}", job["id"].as_str().unwrap());
        eventually(&server, "/dbs/b/tables/t/records/before").await;
        server.put("a", "t", "after", 2).await;
        eventually(&server, "/dbs/b/tables/t/records/after").await;
        let running = server.get(&uri).await.expect_status(200);
        assert_eq!(running["state"], "running");
        assert!(running.get("report").is_none(), "a report comes when the job ends: {running}");
        assert!(running["progress"]["revisions_written"].as_u64().unwrap() >= 3, "{running}");
        assert_eq!(server.get("/replicate/jobs").await.expect_status(200)[0]["id"], job["id"]);

        let cancelled = server.call(Method::DELETE, &uri).send().await.expect_status(200);
        assert_eq!(cancelled["state"], "cancelled", "{cancelled}");
        assert_eq!(cancelled["report"]["cancelled"], true, "{cancelled}");
        assert!(cancelled["finished_at"].is_string());
        assert_eq!(server.get(&uri).await.expect_status(200), cancelled);
        assert_eq!(server.call(Method::DELETE, &uri).send().await.expect_status(200), cancelled, "idempotent");
    })
    .await;
}

#[tokio::test]
async fn the_jobs_file_lists_running_continuous_jobs_only() {
    bounded("the jobs file", async {
        let server = Server::with_jobs_file();
        server.call(Method::PUT, "/dbs/a").send().await.expect_status(201);
        let once = post(&server, json!({"source": "a", "target": "b", "create_target": true, "wait": true})).await;
        assert_eq!(once.expect_status(200)["state"], "completed");
        assert_eq!(server.jobs_file(), Vec::<String>::new(), "one-shot jobs are not kept");

        let first = post(&server, json!({"source": "a", "target": "b", "continuous": true})).await.expect_status(202);
        let second = post(&server, json!({"source": "b", "target": "a", "continuous": true})).await.expect_status(202);
        let ids = [first["id"].as_str().unwrap(), second["id"].as_str().unwrap()];
        assert_eq!(server.jobs_file(), ids);
        let cancelled = server.call(Method::DELETE, &format!("/replicate/jobs/{}", ids[0])).send().await;
        assert_eq!(cancelled.expect_status(200)["state"], "cancelled");
        assert_eq!(server.jobs_file(), [ids[1]], "a cancelled job leaves the file");

        // The server's shutdown stops the other one but keeps it listed, to resume it at the next start.
        server.state.jobs.stop();
        server.state.jobs.stopped(BOUND).await;
        assert_eq!(server.get(&format!("/replicate/jobs/{}", ids[1])).await.expect_status(200)["state"], "cancelled");
        assert_eq!(server.jobs_file(), [ids[1]]);
        let refused = post(&server, json!({"source": "a", "target": "b", "wait": true})).await;
        refused.expect_error(503, "unavailable");
    })
    .await;
}

#[tokio::test]
async fn listed_jobs_resume_and_one_that_cannot_fails_and_leaves_the_file() {
    bounded("resuming jobs", async {
        let Server { dir, .. } = Server::with_table().await;
        let listed = json!({"version": 1, "jobs": [
            {"id": "resumes", "source": "a", "target": "b", "continuous": true, "create_target": true},
            {"id": "gone", "source": "gone", "target": "b", "continuous": true},
            {"id": "invalid", "source": "a", "target": "a", "continuous": true},
        ]});
        std::fs::write(dir.path().join(outpost_server::JOBS_FILE), listed.to_string()).expect("write the jobs file");
        let server = Server::persisted(dir);
        assert_eq!(server.jobs_file(), ["resumes", "gone", "invalid"]);
        server.state.jobs.resume(&server.state.dbs).await;

        let jobs = server.get("/replicate/jobs").await.expect_status(200);
        let states: Vec<(&str, &str)> = jobs
            .as_array()
            .unwrap()
            .iter()
            .map(|j| (j["id"].as_str().unwrap(), j["state"].as_str().unwrap()))
            .collect();
        assert_eq!(states, [("resumes", "running"), ("invalid", "failed"), ("gone", "failed")]);
        assert_eq!(jobs[2]["error"]["error"], "not_found", "{jobs}");
        assert_eq!(jobs[1]["error"]["error"], "invalid_input", "{jobs}");
        assert_eq!(server.jobs_file(), ["resumes"]);
        server.put("a", "t", "r", 1).await;
        eventually(&server, "/dbs/b/tables/t/records/r").await;
        server.state.jobs.resume(&server.state.dbs).await;
        assert_eq!(server.get("/replicate/jobs").await.expect_status(200).as_array().unwrap().len(), 3, "once only");
        server.state.jobs.stop();
        server.state.jobs.stopped(BOUND).await;
    })
    .await;
}
