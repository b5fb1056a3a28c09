//! Serve and sync: an Outpost server on a loopback port over a data directory, and a local SQLite
//! file that syncs with one of its databases through the HTTP client, as a device syncs with a hub.
//!
//! ```text
//! cargo run --example serve_and_sync
//! ```

use std::sync::Arc;

use outpost::client::RemoteDatabases;
use outpost::replication::Options;
use outpost::server::AppState;
use outpost::sqlite::SqliteDatabases;
use outpost::{Attributes, Databases, InfoReader, NewTable, PutRecord, RecordWriter, Result, TableWriter, Value};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let dir = tempfile::tempdir().expect("a temp dir");

    // The hub: `outpost serve` in a few lines, on a free loopback port (no tokens: loopback only).
    let hub: Arc<dyn Databases> = Arc::new(SqliteDatabases::new(dir.path().join("hub"), Default::default())?);
    hub.create("inventory").await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
    let url = format!("http://{}", listener.local_addr().expect("its address"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let state = AppState::new(hub, Default::default());
    let server = tokio::spawn(outpost::server::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    println!("serving at {url}");

    // The device: a local file with a table and a record of its own.
    let device = outpost::sqlite::create_file(&dir.path().join("device.outpost"), "device", Default::default()).await?;
    device.create_table(NewTable { name: "items".into(), ..Default::default() }).await?;
    let bolts = Attributes::new().with("name", Value::String("bolts".into())).with("count", Value::Int(120));
    device.put_record("items", PutRecord { id: Some("bolts".into()), attributes: bolts, ..Default::default() }).await?;

    // The hub's database, through the client: the same traits as the local file. The first sync
    // carries the table's definition and the record up.
    let remote = RemoteDatabases::new(&url)?.open_remote("inventory").await?;
    let (up, _) = outpost::sync(&device, &remote, &Options::default()).await?;
    println!("device → hub: {} revisions", up.progress.revisions_written);

    // Someone writes at the hub; the next sync brings it down.
    let nuts = Attributes::new().with("name", Value::String("nuts".into())).with("count", Value::Int(40));
    remote.put_record("items", PutRecord { id: Some("nuts".into()), attributes: nuts, ..Default::default() }).await?;
    let (_, down) = outpost::sync(&device, &remote, &Options::default()).await?;
    println!("hub → device: {} revisions", down.progress.revisions_written);
    for (name, db) in [("device", &device as &dyn outpost::Database), ("hub", &remote)] {
        let info = db.info().await?;
        let nuts = db.get_record("items", "nuts", Default::default()).await?;
        println!("{name}: {} records, nuts = {:?}", info.record_count, nuts.attributes.get("count"));
    }
    assert_eq!(device.info().await?.record_count, remote.info().await?.record_count);

    let _ = stop.send(());
    server.await.expect("the server task").expect("the server stops cleanly");
    Ok(())
}
