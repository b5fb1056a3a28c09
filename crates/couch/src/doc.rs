//! CouchDB documents and Outpost records (SPEC §17): a document's own fields are a record's
//! attributes in the plain JSON mapping of §3 (a pure function of the JSON), and its special members
//! (`_id`, `_rev`, `_deleted`, `_revisions`, …) are the record's id, revision, tombstone flag and
//! ancestry. A revision a CouchDB peer made arrives as a foreign revision (§3) with the digest of its
//! body; Outpost's own revisions go out under their own ids.

use outpost_api::{Attributes, Body, Digest, RevId, RevisionData};
use serde_json::{json, Map, Value};

use crate::error::{CouchError, CouchResult};

/// A document as a CouchDB client sent it, split into what Outpost stores.
#[derive(Clone, Debug, PartialEq)]
pub struct DocIn {
    /// `_id`.
    pub id: Option<String>,
    /// `_rev`, as sent.
    pub rev: Option<String>,
    /// `_deleted`.
    pub deleted: bool,
    /// `_revisions`: the generation of `_rev` and the hashes from it to the oldest known.
    pub revisions: Option<(u64, Vec<String>)>,
    /// Every other member, as attributes.
    pub attributes: Attributes,
}

/// Members CouchDB computes on read, which a client may send back and which mean nothing on write.
const IGNORED: [&str; 5] = ["_conflicts", "_deleted_conflicts", "_revs_info", "_local_seq", "_seq"];

/// Split a document into its special members and attributes. 400 for a document that is not an
/// object, a special member CouchDB does not know, or a value the plain mapping refuses; 403
/// `forbidden` for attachments, which Outpost does not store yet.
pub fn parse(json: Value) -> CouchResult<DocIn> {
    let Value::Object(members) = json else {
        return Err(CouchError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "bad_request",
            "Document must be a JSON object",
        ));
    };
    let mut doc = DocIn { id: None, rev: None, deleted: false, revisions: None, attributes: Attributes::new() };
    let mut rest = Map::new();
    for (name, value) in members {
        match name.as_str() {
            "_id" => doc.id = Some(string(value, "_id")?),
            "_rev" => doc.rev = Some(string(value, "_rev")?),
            "_deleted" => doc.deleted = value.as_bool().unwrap_or(false),
            "_revisions" => doc.revisions = Some(revisions(&value)?),
            "_attachments" => {
                return Err(CouchError::forbidden("attachments are not stored by Outpost yet (SPEC §17)"));
            }
            n if IGNORED.contains(&n) => {}
            n if n.starts_with('_') => {
                return Err(CouchError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "doc_validation",
                    format!("Bad special document member: {n}"),
                ));
            }
            _ => {
                rest.insert(name, value);
            }
        }
    }
    doc.attributes = Attributes::from_plain(&Value::Object(rest)).map_err(|e| CouchError::bad_request(e.message))?;
    Ok(doc)
}

fn string(value: Value, what: &str) -> CouchResult<String> {
    match value {
        Value::String(s) => Ok(s),
        other => Err(CouchError::bad_request(format!("{what} must be a string, not {other}"))),
    }
}

fn revisions(value: &Value) -> CouchResult<(u64, Vec<String>)> {
    let bad = || CouchError::bad_request("_revisions must be {\"start\": <generation>, \"ids\": [<hash>, …]}");
    let start = value.get("start").and_then(Value::as_u64).ok_or_else(bad)?;
    let ids = value.get("ids").and_then(Value::as_array).ok_or_else(bad)?;
    let ids = ids.iter().map(|v| v.as_str().map(str::to_owned).ok_or_else(bad)).collect::<CouchResult<_>>()?;
    Ok((start, ids))
}

/// Whether a record id is a document's for CouchDB clients: ids starting with `_` are reserved, and
/// only `_design/…` documents are documents (a record named `_local/…` written through Outpost's own
/// API would read to PouchDB as a checkpoint; it is left out of what they see).
pub fn is_document_id(id: &str) -> bool {
    !id.starts_with('_') || id.starts_with("_design/")
}

/// A document id a CouchDB client may write (CouchDB's rule): 400 for other reserved ids.
pub fn check_id(id: &str) -> CouchResult<()> {
    if is_document_id(id) {
        Ok(())
    } else {
        Err(CouchError::bad_request(format!("Only reserved document ids may start with underscore ({id:?})")))
    }
}

/// A revision id as a CouchDB peer writes it. Outpost takes `<generation>-<32 lowercase hex>` (what
/// CouchDB and PouchDB make); anything else is refused as `forbidden`, so that a replicating PouchDB
/// reports that one document denied and goes on.
pub fn rev(text: &str) -> CouchResult<RevId> {
    text.parse().map_err(|_| {
        CouchError::forbidden(format!(
            "revision id {text:?} is not <generation>-<32 lowercase hex characters>, the only form Outpost stores"
        ))
    })
}

/// A replicated document (`new_edits: false`) of `table` as the revision Outpost stores: its id,
/// its `_rev` with the ancestry `_revisions` gives, its body, and the digest it is kept under if it
/// turns out not to be one of Outpost's own revisions (the engine re-hashes it natively first).
pub fn replicated(table: &str, doc: DocIn) -> CouchResult<RevisionData> {
    let id = doc.id.ok_or_else(|| CouchError::bad_request("a replicated document names its _id"))?;
    check_id(&id)?;
    let text = doc.rev.ok_or_else(|| CouchError::bad_request(format!("replicated document {id:?} has no _rev")))?;
    let rev = rev(&text)?;
    let mut ancestry = Vec::new();
    if let Some((start, ids)) = doc.revisions {
        let own = text.split_once('-').map(|(_, hash)| hash);
        if start != rev.generation || ids.first().map(String::as_str) != own {
            return Err(CouchError::bad_request(format!("_revisions of {id:?} does not start at its _rev {text}")));
        }
        for (i, hash) in ids.iter().enumerate().skip(1) {
            let Some(generation) = start.checked_sub(i as u64).filter(|g| *g >= 1) else { break };
            ancestry.push(self::rev(&format!("{generation}-{hash}"))?);
        }
    }
    let foreign = Some(Digest::of(table, &id, ancestry.first(), doc.deleted, &doc.attributes));
    Ok(RevisionData {
        table: table.to_owned(),
        id,
        rev,
        deleted: doc.deleted,
        attributes: Some(Body::new(&doc.attributes)),
        ancestry,
        foreign,
    })
}

/// The hash part of a revision id (after `N-`).
pub fn hash_of(rev: &RevId) -> String {
    let text = rev.to_string();
    text.split_once('-').map_or(text.clone(), |(_, h)| h.to_owned())
}

/// A document for a client: `_id`, `_rev`, the attributes in plain JSON, `_deleted` for a tombstone,
/// and `_revisions` from `history` (the revision itself first, then its ancestors) when given.
pub fn to_json(id: &str, rev: RevId, deleted: bool, attributes: &Attributes, history: Option<&[RevId]>) -> Value {
    let mut out = match attributes.to_plain() {
        Value::Object(members) => members,
        _ => Map::new(),
    };
    out.insert("_id".into(), json!(id));
    out.insert("_rev".into(), json!(rev.to_string()));
    if deleted {
        out.insert("_deleted".into(), json!(true));
    }
    if let Some(history) = history {
        let ids: Vec<String> = history.iter().map(hash_of).collect();
        out.insert("_revisions".into(), json!({"start": rev.generation, "ids": ids}));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use outpost_api::Value as V;

    use super::*;

    const R1: &str = "1-0123456789abcdef0123456789abcdef";
    const R2: &str = "2-fedcba9876543210fedcba9876543210";

    #[test]
    fn a_replicated_document_becomes_a_foreign_revision_with_its_ancestry() {
        let doc = parse(json!({
            "_id": "a/b", "_rev": R2, "_revisions": {"start": 2, "ids": [&R2[2..], &R1[2..]]},
            "n": 1.5, "k": 42, "list": [1, "x", null], "_conflicts": ["ignored"]
        }))
        .unwrap();
        assert_eq!(doc.attributes.get("n"), Some(&V::decimal("1.5").unwrap()));
        assert_eq!(doc.attributes.get("k"), Some(&V::Int(42)));
        let r = replicated("orders", doc).unwrap();
        assert_eq!(
            (r.id.as_str(), r.rev.to_string(), r.ancestry.clone()),
            ("a/b", R2.to_owned(), vec![R1.parse().unwrap()])
        );
        let expected = Digest::of(
            "orders",
            "a/b",
            Some(&R1.parse().unwrap()),
            false,
            &r.attributes.as_ref().unwrap().attributes(),
        );
        assert_eq!(r.foreign, Some(expected));
        // Back out: the same members, and _revisions from the history.
        let out =
            to_json(&r.id, r.rev, false, &r.attributes.as_ref().unwrap().attributes(), Some(&[r.rev, r.ancestry[0]]));
        assert_eq!(out["_revisions"], json!({"start": 2, "ids": [&R2[2..], &R1[2..]]}));
        assert_eq!((out["n"].to_string(), out["k"].clone()), ("1.5".to_owned(), json!(42)));
    }

    #[test]
    fn what_outpost_cannot_take_is_refused_by_kind() {
        let forbidden = |v: Value| parse(v).and_then(|d| replicated("t", d)).unwrap_err().error;
        assert_eq!(forbidden(json!({"_id": "x", "_rev": R1, "_attachments": {}})), "forbidden");
        assert_eq!(forbidden(json!({"_id": "x", "_rev": "1-abc"})), "forbidden");
        assert_eq!(forbidden(json!({"_id": "x", "_rev": R1, "_weird": 1})), "doc_validation");
        assert_eq!(forbidden(json!([1])), "bad_request");
        assert_eq!(
            forbidden(json!({"_id": "x", "_rev": R2, "_revisions": {"start": 3, "ids": [&R2[2..]]}})),
            "bad_request"
        );
        assert_eq!(forbidden(json!({"_rev": R1})), "bad_request");
        assert_eq!(forbidden(json!({"_id": "x", "_rev": R1, "": 1})), "bad_request");
    }
}
