//! The conformance suite through `outpost-client` against a real `outpost-server` on a loopback
//! port, backed by SQLite files: the same checks, the same error kinds, as on SQLite directly.

use std::sync::{Arc, OnceLock};

use outpost_api::{Databases, ErrorKind, InfoReader, Limits};
use outpost_tests::http::TestServer;
use outpost_tests::support::{expect_err, ok};

/// One server for the whole test process, its data in a temp dir under the target directory.
fn server() -> &'static TestServer {
    static SERVER: OnceLock<TestServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("http-sqlite-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("a temp dir for the server's databases");
        // The databases are deleted by the factories; the (then empty) directory outlives the process.
        let dbs = outpost_sqlite::SqliteDatabases::new(dir.keep(), Limits::default()).expect("the data directory");
        TestServer::start(Arc::new(dbs))
    })
}

outpost_tests::conformance_suite!(outpost_tests::http::HttpFactory::new(server()));

/// `RemoteDatabases` over HTTP: what the suite does not reach (it only creates), with the error kinds
/// of a local `Databases`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn databases_are_listed_opened_and_deleted_over_http() {
    let dbs = ok(outpost_client::RemoteDatabases::new(&server().url()), "client");
    let name = "remote-databases";
    ok(dbs.create(name).await, "create");
    expect_err(dbs.create(name).await.map(|_| ()), ErrorKind::AlreadyExists, "create again");
    assert!(ok(dbs.list().await, "list").iter().any(|n| n == name));
    let opened = ok(dbs.open(name).await, "open");
    assert_eq!(ok(opened.info().await, "info").name, name);
    let located = ok(outpost_client::connect(&format!("{}/dbs/{name}", server().url())), "connect");
    assert_eq!(ok(located.info().await, "info through a locator").name, name);
    ok(dbs.delete(name).await, "delete");
    expect_err(dbs.open(name).await.map(|_| ()), ErrorKind::NotFound, "open after delete");
    expect_err(dbs.delete(name).await, ErrorKind::NotFound, "delete again");
    expect_err(located.info().await, ErrorKind::NotFound, "info of a deleted database");
    expect_err(dbs.create("../etc").await.map(|_| ()), ErrorKind::InvalidInput, "an invalid name");
}
