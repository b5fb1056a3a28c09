//! The server root (`GET /couch/{db}/`: CouchDB's welcome, with a stable uuid per Outpost database)
//! and the database routes: info, create (a table open to CouchDB peers), delete.

use axum::extract::{Path, State};
use axum::http::{Extensions, StatusCode};
use axum::Json;
use outpost_api::{NewTable, ReconcilePolicy};
use serde_json::{json, Value};

use crate::error::{CouchError, CouchResult};
use crate::{seq, Couch, Need};

/// The CouchDB version whose protocol these routes speak (what clients may check).
const COUCHDB_VERSION: &str = "3.3.3";

/// `GET /couch/{db}/`: who we are. PouchDB reads `uuid` (part of its replication ids).
pub async fn root(State(couch): State<Couch>, ext: Extensions, Path(db): Path<String>) -> CouchResult<Json<Value>> {
    let db = couch.database(&ext, &db, Need::Read).await?;
    let info = db.info().await?;
    // The first epoch's uuid: stable for the database's whole life, as CouchDB's server uuid is.
    let uuid = info.epochs.first().map_or(info.uuid, |e| e.uuid).simple().to_string();
    Ok(Json(json!({
        "couchdb": "Welcome",
        "version": COUCHDB_VERSION,
        "uuid": uuid,
        "vendor": {"name": "Outpost", "version": env!("CARGO_PKG_VERSION")},
        "features": [],
    })))
}

/// `GET /couch/{db}/_all_dbs`: the tables open to CouchDB peers.
pub async fn all_dbs(State(couch): State<Couch>, ext: Extensions, Path(db): Path<String>) -> CouchResult<Json<Value>> {
    let db = couch.database(&ext, &db, Need::Read).await?;
    let names: Vec<String> = db.list_tables().await?.into_iter().filter(|t| t.couch).map(|t| t.name).collect();
    Ok(Json(json!(names)))
}

/// `GET /couch/{db}/_session`: the caller was let in (the server checked its credentials).
pub async fn session(State(couch): State<Couch>, ext: Extensions, Path(db): Path<String>) -> CouchResult<Json<Value>> {
    couch.database(&ext, &db, Need::Read).await?;
    Ok(Json(json!({"ok": true, "userCtx": {"name": null, "roles": []}, "info": {"authenticated": "token"}})))
}

/// `GET /couch/{db}/{table}/`: the database's info. `doc_count` counts the table's live records
/// (`count_records`: one statement on either backend, a scan of the table's index range).
pub async fn table_info(
    State(couch): State<Couch>,
    ext: Extensions,
    Path((db, table)): Path<(String, String)>,
) -> CouchResult<Json<Value>> {
    let t = couch.table(&ext, &db, &table, Need::Read).await?;
    let (epoch, update_seq) = t.position().await?;
    let count = t.db.count_records(&t.name).await?;
    let update_seq = seq::format(update_seq, epoch);
    Ok(Json(json!({
        "db_name": t.name,
        "doc_count": count,
        "doc_del_count": 0,
        "update_seq": update_seq,
        "committed_update_seq": update_seq,
        "purge_seq": "0",
        "compact_running": false,
        "instance_start_time": "0",
        "disk_format_version": 8,
        "sizes": {"file": 0, "external": 0, "active": 0},
        "props": {},
    })))
}

/// `PUT /couch/{db}/{table}/`: create the table, open to CouchDB peers and keeping conflicts (admin);
/// 412 `file_exists` when it exists.
pub async fn create_table(
    State(couch): State<Couch>,
    ext: Extensions,
    Path((db, table)): Path<(String, String)>,
) -> CouchResult<(StatusCode, Json<Value>)> {
    match couch.table(&ext, &db, &table, Need::Read).await {
        Ok(_) => {
            return Err(CouchError::new(
                StatusCode::PRECONDITION_FAILED,
                "file_exists",
                "The database could not be created, the file already exists.",
            ))
        }
        Err(e) if e.status == StatusCode::NOT_FOUND => {}
        Err(e) => return Err(e),
    }
    let db = couch.database(&ext, &db, Need::Admin).await?;
    let new = NewTable {
        name: table,
        description: "created by a CouchDB-protocol client".into(),
        policy: ReconcilePolicy::KeepConflicts,
        couch: true,
        ..NewTable::default()
    };
    db.create_table(new).await?;
    Ok((StatusCode::CREATED, Json(json!({"ok": true}))))
}

/// `DELETE /couch/{db}/{table}/`: delete the table (admin).
pub async fn delete_table(
    State(couch): State<Couch>,
    ext: Extensions,
    Path((db, table)): Path<(String, String)>,
) -> CouchResult<Json<Value>> {
    couch.table(&ext, &db, &table, Need::Admin).await?;
    let db = couch.database(&ext, &db, Need::Admin).await?;
    db.delete_table(&table).await?;
    Ok(Json(json!({"ok": true})))
}

/// `POST /couch/{db}/{table}/_ensure_full_commit`: every write is durable when answered already.
pub async fn ensure_full_commit(
    State(couch): State<Couch>,
    ext: Extensions,
    Path((db, table)): Path<(String, String)>,
) -> CouchResult<(StatusCode, Json<Value>)> {
    couch.table(&ext, &db, &table, Need::Write).await?;
    Ok((StatusCode::CREATED, Json(json!({"ok": true, "instance_start_time": "0"}))))
}
