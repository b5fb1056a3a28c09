//! Configured limits (SPEC §13) other than the defaults the conformance suite assumes.

use std::sync::Arc;

use outpost_api::{Body, Database, ErrorKind, GetOptions, Limits, RevisionData};
use outpost_engine::hash::revision_id;
use outpost_tests::support::{ok, plain, table, update_seq};

/// A replicated record whose id is longer than this database's configured id limit is either
/// refused (InvalidInput, nothing stored) or stored and readable — never stored but unreachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_ids_beyond_the_configured_limit_are_refused_or_readable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let limits = Limits { max_id_bytes: 8, ..Limits::default() };
    let db = outpost_sqlite::create_file(&dir.path().join("short-ids.outpost"), "short-ids", limits).await;
    let db: Arc<dyn Database> = Arc::new(ok(db, "create"));
    table(&*db, "t").await;
    let seq = update_seq(&*db).await;
    let (id, body) = ("0123456789", plain(serde_json::json!({"v": 1})));
    let rev = revision_id("t", id, None, false, &body);
    let revision = RevisionData {
        table: "t".into(),
        id: id.into(),
        rev,
        deleted: false,
        attributes: Some(Body::new(&body)),
        ancestry: vec![],
        foreign: None,
    };
    match db.put_revisions(vec![revision], None).await {
        Err(e) => {
            assert_eq!(e.kind, ErrorKind::InvalidInput, "{e}");
            assert_eq!(update_seq(&*db).await, seq, "nothing stored");
        }
        Ok(_) => {
            let record = db.get_record("t", id, GetOptions::default()).await;
            assert_eq!(ok(record, "a stored record is readable by its id").rev, rev);
        }
    }
}
