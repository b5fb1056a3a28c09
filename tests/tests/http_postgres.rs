//! The conformance suite through `outpost-client` against a real `outpost-server` on a loopback port,
//! backed by PostgreSQL (`OUTPOST_TEST_POSTGRES`; skipped when unset, failing under `CI=true`): with
//! `sqlite.rs`, `http_sqlite.rs` and `postgres.rs`, the four configurations of SPEC §10.

use std::sync::{Arc, OnceLock};

use outpost_api::{Databases, ErrorKind, Limits};
use outpost_postgres::PostgresDatabases;
use outpost_tests::http::{HttpFactory, TestServer};
use outpost_tests::postgres::{test_url, unique_name};
use outpost_tests::support::{expect_err, ok};

/// One server for the whole test process, on the test PostgreSQL; `None` when there is none.
fn server() -> Option<&'static TestServer> {
    let url = test_url()?;
    static SERVER: OnceLock<TestServer> = OnceLock::new();
    Some(SERVER.get_or_init(|| {
        TestServer::start_with(move || async move {
            let dbs = PostgresDatabases::connect_url(&url, Limits::default())
                .await
                .unwrap_or_else(|e| panic!("connecting to the test PostgreSQL: {e}"));
            Arc::new(dbs) as Arc<dyn Databases>
        })
    }))
}

outpost_tests::conformance_suite!(server().map(HttpFactory::new));

/// `RemoteDatabases` over HTTP on PostgreSQL: the same kinds as a local `Databases`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn databases_are_listed_opened_and_deleted_over_http() {
    let Some(server) = server() else { return };
    let dbs = ok(outpost_client::RemoteDatabases::new(&server.url()), "client");
    let name = unique_name("remote");
    ok(dbs.create(&name).await, "create");
    expect_err(dbs.create(&name).await.map(|_| ()), ErrorKind::AlreadyExists, "create again");
    assert!(ok(dbs.list().await, "list").contains(&name));
    let opened = ok(dbs.open(&name).await, "open");
    let info = ok(opened.info().await, "info");
    assert_eq!((info.name.as_str(), info.backend.as_str()), (name.as_str(), "postgres"));
    ok(dbs.delete(&name).await, "delete");
    expect_err(dbs.open(&name).await.map(|_| ()), ErrorKind::NotFound, "open after delete");
    expect_err(dbs.delete(&name).await, ErrorKind::NotFound, "delete again");
    expect_err(opened.info().await, ErrorKind::NotFound, "info of a deleted database");
    expect_err(dbs.create("pg_catalog").await.map(|_| ()), ErrorKind::InvalidInput, "a name PostgreSQL reserves");
}
