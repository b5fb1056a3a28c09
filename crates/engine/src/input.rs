//! The engine's input boundary for what arrives through the replication protocol (SPEC §13): every
//! check that protects the database and its peers from a hostile or broken peer, in one place, as pure
//! functions the trait implementations call before touching storage. Local writes are checked by
//! `Engine::prepare`; replicated revisions here meet the same rules for names, nesting and size.
//!
//! Each refusal is a precise InvalidInput or TooLarge, and nothing is stored.

use std::collections::HashMap;

use outpost_api::{names, Error, KnowledgeRow, KnowledgeUpdate, Limits, RecordRevs, Result, ResumePoint, RevisionData};

/// The largest seq any input may name: seqs are stored as signed 64-bit integers on every backend.
pub const MAX_SEQ: u64 = i64::MAX as u64;

/// Refuse a seq no backend can store (`what` names the parameter).
pub fn seq(value: u64, what: &str) -> Result<u64> {
    if value > MAX_SEQ {
        return Err(Error::invalid(format!("{what} = {value} is above the largest seq, {MAX_SEQ}")));
    }
    Ok(value)
}

/// The seqs of a resume point.
pub fn resume_point(point: &ResumePoint) -> Result<()> {
    seq(point.source_seq, "resume.source_seq").map(drop)
}

/// The seqs of a knowledge update and the rows it imports.
pub fn knowledge(update: &KnowledgeUpdate) -> Result<()> {
    seq(update.source_seq, "knowledge.source_seq")?;
    update.imported.iter().try_for_each(knowledge_row)
}

fn knowledge_row(row: &KnowledgeRow) -> Result<()> {
    seq(row.peer_seq, "knowledge peer_seq")?;
    seq(row.local_seq, "knowledge local_seq").map(drop)
}

/// A changes filter: at most `limits.max_filter_tables` valid names, duplicates dropped.
pub fn table_filter(tables: Option<Vec<String>>, limits: &Limits) -> Result<Option<Vec<String>>> {
    let Some(mut tables) = tables else { return Ok(None) };
    tables.sort();
    tables.dedup();
    if tables.len() > limits.max_filter_tables {
        return Err(Error::invalid(format!(
            "the changes filter names {} tables; the limit is {}",
            tables.len(),
            limits.max_filter_tables
        )));
    }
    for t in &tables {
        names::validate_any_table_name(t)?;
    }
    Ok(Some(tables))
}

/// The entries of a revs-diff or revs/get request with duplicates merged (one entry per record, each
/// revision once, first-seen order kept), refused when more than `limits.max_request_entries` records
/// remain or when names are invalid. Merging first means 60,000 copies of one key cost one entry.
pub fn record_revs(entries: Vec<RecordRevs>, limits: &Limits, what: &str) -> Result<Vec<RecordRevs>> {
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    let mut merged: Vec<RecordRevs> = Vec::new();
    for entry in entries {
        let key = (entry.table, entry.id);
        match index.get(&key) {
            Some(&i) => merged[i].revs.extend(entry.revs),
            None => {
                if merged.len() == limits.max_request_entries {
                    return Err(Error::too_large(format!(
                        "{what} names more than {} records; the limit is {}",
                        limits.max_request_entries, limits.max_request_entries
                    )));
                }
                names::validate_any_table_name(&key.0)?;
                names::validate_record_id(&key.1, names::MAX_ID_BYTES)?;
                index.insert(key.clone(), merged.len());
                merged.push(RecordRevs { table: key.0, id: key.1, revs: entry.revs });
            }
        }
    }
    for entry in &mut merged {
        let mut seen = std::collections::HashSet::with_capacity(entry.revs.len());
        entry.revs.retain(|r| seen.insert(*r));
    }
    Ok(merged)
}

/// A replicated revision as the planner may take it: names, nesting and size checked as for a local
/// write, and the ancestry cut to `limits.max_ancestry` ids (CouchDB's `revs_limit`; the oldest id kept
/// becomes a stub). The hash is verified by the planner, which needs the tree.
pub fn replicated(mut r: RevisionData, limits: &Limits) -> Result<RevisionData> {
    let context = |e: Error| e.context(format!("revision {} of {}/{}", r.rev, r.table, r.id));
    names::validate_any_table_name(&r.table).map_err(context)?;
    names::validate_record_id(&r.id, names::MAX_ID_BYTES).map_err(context)?;
    if let Some(attributes) = &r.attributes {
        for name in attributes.keys() {
            names::validate_attribute_name(name).map_err(context)?;
        }
        body(attributes, limits).map_err(context)?;
    }
    r.ancestry.truncate(limits.max_ancestry.max(1));
    Ok(r)
}

/// A body's nesting depth and encoded size against the limits (local and replicated writes alike).
pub fn body(attributes: &outpost_api::Attributes, limits: &Limits) -> Result<()> {
    if attributes.depth() > limits.max_depth {
        return Err(Error::invalid(format!(
            "attributes nest {} deep; the limit is {}",
            attributes.depth(),
            limits.max_depth
        )));
    }
    let size = crate::canonical::encode_attributes(attributes).len();
    if size > limits.max_body_bytes {
        return Err(Error::too_large(format!(
            "record body is {size} bytes encoded; the limit is {}",
            limits.max_body_bytes
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use outpost_api::{ErrorKind, RevId};

    use super::*;

    fn rev(generation: u64) -> RevId {
        RevId::new(generation, [generation as u8; 16])
    }

    fn entry(id: &str, revs: &[u64]) -> RecordRevs {
        RecordRevs { table: "t".into(), id: id.into(), revs: revs.iter().map(|g| rev(*g)).collect() }
    }

    #[test]
    fn duplicate_entries_collapse_before_they_are_counted() {
        let limits = Limits { max_request_entries: 2, ..Limits::default() };
        let many = vec![entry("a", &[1, 2]); 60_000];
        let merged = record_revs(many, &limits, "revs/get").expect("one record");
        assert_eq!(merged, vec![entry("a", &[1, 2])]);
        let merged = record_revs(vec![entry("a", &[1]), entry("b", &[2]), entry("a", &[3, 1])], &limits, "x").unwrap();
        assert_eq!(merged, vec![entry("a", &[1, 3]), entry("b", &[2])]);
        let e =
            record_revs(vec![entry("a", &[1]), entry("b", &[1]), entry("c", &[1])], &limits, "revs-diff").unwrap_err();
        assert_eq!(e.kind, ErrorKind::TooLarge);
        assert!(e.message.contains("revs-diff names more than 2 records"), "{e}");
        let bad = RecordRevs { table: "../x".into(), ..entry("a", &[1]) };
        assert_eq!(record_revs(vec![bad], &limits, "x").unwrap_err().kind, ErrorKind::InvalidInput);
    }

    #[test]
    fn seqs_stop_at_the_largest_signed_integer() {
        assert_eq!(seq(MAX_SEQ, "since").unwrap(), MAX_SEQ);
        let e = seq(MAX_SEQ + 1, "since").unwrap_err();
        assert!(e.message.contains("since = 9223372036854775808"), "{e}");
        assert!(seq(u64::MAX, "after").is_err());
    }

    #[test]
    fn table_filters_are_bounded_and_deduplicated() {
        let limits = Limits { max_filter_tables: 2, ..Limits::default() };
        let names = |n: &[&str]| Some(n.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        assert_eq!(table_filter(names(&["b", "a", "b"]), &limits).unwrap(), names(&["a", "b"]));
        assert_eq!(table_filter(None, &limits).unwrap(), None);
        assert!(table_filter(names(&["a", "b", "c"]), &limits).unwrap_err().message.contains("limit is 2"));
        assert!(table_filter(names(&["A"]), &limits).is_err());
    }

    #[test]
    fn replicated_revisions_meet_the_rules_of_local_writes() {
        let limits = Limits { max_ancestry: 3, max_depth: 2, ..Limits::default() };
        let base = RevisionData {
            table: "t".into(),
            id: "x".into(),
            rev: rev(10),
            deleted: false,
            attributes: Some(outpost_api::Attributes::new()),
            ancestry: (1..10).rev().map(rev).collect(),
        };
        let cut = replicated(base.clone(), &limits).unwrap();
        assert_eq!(cut.ancestry, vec![rev(9), rev(8), rev(7)]);
        let nested = outpost_api::Attributes::from_plain(&serde_json::json!({"a": {"b": {"c": 1}}})).unwrap();
        let e = replicated(RevisionData { attributes: Some(nested), ..base.clone() }, &limits).unwrap_err();
        assert!(e.message.contains("nest") && e.message.contains("revision 10-"), "{e}");
        let e = replicated(RevisionData { table: "T".into(), ..base }, &limits).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidInput);
    }
}
