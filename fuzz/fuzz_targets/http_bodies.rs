//! The HTTP request bodies of `revs/put` and `bulk`, sent to the server's router over a SQLite data
//! directory: whatever the bytes, the answer is a client error or a success with our error JSON,
//! never a 5xx, and the database keeps passing its integrity check.
#![no_main]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{header, Request};
use libfuzzer_sys::fuzz_target;
use outpost_api::{Databases, Limits, NewTable};
use outpost_server::{router, AppState};
use outpost_sqlite::SqliteDatabases;
use tower::ServiceExt;

struct Served {
    runtime: tokio::runtime::Runtime,
    dbs: Arc<SqliteDatabases>,
    app: axum::Router,
    _dir: tempfile::TempDir,
}

fn served() -> &'static Served {
    static SERVED: OnceLock<Served> = OnceLock::new();
    SERVED.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let dbs = Arc::new(SqliteDatabases::new(dir.path(), Limits::default()).unwrap());
        runtime.block_on(async {
            let db = dbs.create("f").await.unwrap();
            db.create_table(NewTable { name: "t".into(), ..NewTable::default() }).await.unwrap();
        });
        let app = router(AppState::new(dbs.clone(), Limits::default()));
        Served { runtime, dbs, app, _dir: dir }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&route, body)) = data.split_first() else { return };
    let served = served();
    let uri = if route % 2 == 0 { "/dbs/f/revs/put" } else { "/dbs/f/bulk" };
    let request = Request::post(uri)
        .header(header::HOST, "localhost")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_vec()))
        .unwrap();
    let response = served.runtime.block_on(served.app.clone().oneshot(request)).unwrap();
    let status = response.status();
    let bytes = served.runtime.block_on(axum::body::to_bytes(response.into_body(), usize::MAX)).unwrap();
    assert!(status.as_u16() < 500, "{uri}: {status} {}", String::from_utf8_lossy(&bytes));
    if !status.is_success() {
        let error: serde_json::Value = serde_json::from_slice(&bytes).expect("an error is JSON");
        assert!(error["error"].is_string(), "{error}");
    }
    // Now and then the whole database is checked, and replaced by a fresh one so that it stays small.
    static RUNS: AtomicU64 = AtomicU64::new(0);
    if RUNS.fetch_add(1, Ordering::Relaxed) % 512 == 511 {
        served.runtime.block_on(async {
            let report = served.dbs.open_sqlite("f").await.unwrap().check().await.expect("the check runs");
            assert!(report.problems.is_empty(), "{:?}", report.problems);
            served.dbs.delete("f").await.unwrap();
            let db = served.dbs.create("f").await.unwrap();
            db.create_table(NewTable { name: "t".into(), ..NewTable::default() }).await.unwrap();
        });
    }
});
