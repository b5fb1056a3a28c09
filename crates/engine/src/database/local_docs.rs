//! Local documents (SPEC §17): what a CouchDB-protocol peer keeps on a database for its own use —
//! PouchDB's replication checkpoints under `_local/…` — per table, never replicated and never in
//! the changes feed. A write compares the revision it was based on with the stored one inside the
//! write transaction, so two checkpoint writers cannot both win.

use async_trait::async_trait;
use outpost_api::{names, Error, LocalDoc, LocalDocs, Result};

use super::Engine;
use crate::storage::{Storage, StoredLocalDoc, WriteSet};

/// The largest body a local document may have, in bytes of JSON: a checkpoint is a few hundred.
pub const MAX_LOCAL_DOC_BYTES: usize = 64 * 1024;

#[async_trait]
impl<S: Storage> LocalDocs for Engine<S> {
    async fn get_local(&self, table: &str, id: &str) -> Result<LocalDoc> {
        check_key(table, id)?;
        let Some((rev, text)) = self.store()?.local_doc(table, id).await? else {
            return Err(Error::not_found(format!("local document {id:?} of table {table:?} does not exist")));
        };
        let body = serde_json::from_str(&text).map_err(|e| {
            Error::corrupt(format!("the stored local document {id:?} of {table:?} does not parse: {e}"))
        })?;
        Ok(LocalDoc { rev, body })
    }

    async fn put_local(
        &self,
        table: &str,
        id: &str,
        rev: Option<u64>,
        body: Option<serde_json::Map<String, serde_json::Value>>,
    ) -> Result<u64> {
        check_key(table, id)?;
        let text = body.map(|b| serde_json::Value::Object(b).to_string());
        if let Some(text) = &text {
            if text.len() > MAX_LOCAL_DOC_BYTES {
                return Err(Error::too_large(format!(
                    "a local document is {} bytes of JSON; the limit is {MAX_LOCAL_DOC_BYTES}",
                    text.len()
                )));
            }
        }
        let mut txn = self.begin().await?;
        // Only a table open to CouchDB peers has their checkpoints (read in the transaction, so a
        // table closed meanwhile takes none).
        let def = super::table_def_of(table, txn.load_state(names::TABLES_TABLE, table).await?.as_ref())?;
        if !def.couch {
            return Err(Error::forbidden(format!(
                "table {table:?} is not open to CouchDB peers, whose local documents these are (couch: true)"
            )));
        }
        let stored = txn.load_local_rev(table, id).await?;
        if stored != rev {
            let shown = |r: Option<u64>| r.map_or_else(|| "none".to_owned(), |r| r.to_string());
            return Err(Error::conflict(
                format!("local document {id:?} of {table:?} is at revision {}, not {}", shown(stored), shown(rev)),
                None,
            ));
        }
        let (new_rev, doc) = match (text, stored) {
            (Some(text), _) => {
                let next = stored.unwrap_or(0) + 1;
                (next, Some((next, text)))
            }
            (None, Some(at)) => (at, None),
            (None, None) => {
                return Err(Error::not_found(format!("local document {id:?} of table {table:?} does not exist")))
            }
        };
        let local_docs = vec![StoredLocalDoc { table: table.to_owned(), id: id.to_owned(), doc }];
        self.commit(txn, WriteSet { local_docs, ..WriteSet::default() }).await?;
        Ok(new_rev)
    }
}

fn check_key(table: &str, id: &str) -> Result<()> {
    names::validate_table_name(table)?;
    names::validate_record_id(id, names::MAX_ID_BYTES)
}
