//! The engine's input boundaries, both of them, as pure functions the trait implementations call
//! before touching storage: local writes ([`local`]) and what arrives through the replication protocol
//! (SPEC §13: seqs, filters, revs-diff/revs/get entries, knowledge, and [`replicated`] revisions). Every
//! check that protects the database and its peers from a hostile or broken client or peer is here, and
//! a local write and a replicated revision meet the same rules for names, nesting and size.
//!
//! A replicated revision leaves this module as a [`VerifiedRevision`], its id recomputed from its body
//! and parent: the planner takes nothing else, so "re-hashed before stored" is a type. Each refusal is a
//! precise InvalidInput, TooLarge or Corrupt, and nothing is stored.

use std::collections::HashMap;

use outpost_api::{
    names, Attributes, Body, Error, KnowledgeRow, KnowledgeUpdate, Limits, RecordRevs, Result, ResumePoint, RevId,
    RevisionData, Uuid, WriteOp, WriteOpKind, MAX_GENERATION,
};

use crate::foreign::{digest_of_encoded, Digest};
use crate::hash::revision_id_of_encoded;
use crate::plan::LocalWrite;

/// The largest seq any input may name: seqs are stored as signed 64-bit integers on every backend.
pub(crate) const MAX_SEQ: u64 = i64::MAX as u64;

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
pub(crate) fn table_filter(tables: Option<Vec<String>>, limits: &Limits) -> Result<Option<Vec<String>>> {
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
///
/// A request naming each record once (what a replication pass sends) is checked in place: its keys
/// are only looked up, in a set keyed by ahash's random state (peers choose them), not copied.
pub(crate) fn record_revs(mut entries: Vec<RecordRevs>, limits: &Limits, what: &str) -> Result<Vec<RecordRevs>> {
    // Sized as the limit allows: a request past it is refused before its keys fill the set.
    let room = entries.len().min(limits.max_request_entries + 1);
    let mut seen = ahash::HashSet::with_capacity_and_hasher(room, ahash::RandomState::new());
    let mut repeated = false;
    for (i, entry) in entries.iter().enumerate() {
        if !seen.insert((entry.table.as_str(), entry.id.as_str())) {
            repeated = true;
            break;
        }
        check_record_entry(entry, i, limits, what)?;
    }
    drop(seen);
    if repeated {
        return merged_record_revs(entries, limits, what);
    }
    for entry in entries.iter_mut().filter(|e| e.revs.len() > 1) {
        let mut seen = std::collections::HashSet::with_capacity(entry.revs.len());
        entry.revs.retain(|r| seen.insert(*r));
    }
    Ok(entries)
}

/// The checks of a request's `index`th distinct record: within the limit, valid names.
fn check_record_entry(entry: &RecordRevs, index: usize, limits: &Limits, what: &str) -> Result<()> {
    if index == limits.max_request_entries {
        return Err(Error::too_large(format!(
            "{what} names more than {} records; the limit is {}",
            limits.max_request_entries, limits.max_request_entries
        )));
    }
    names::validate_any_table_name(&entry.table)?;
    names::validate_record_id(&entry.id, names::MAX_ID_BYTES)
}

/// [`record_revs`] of a request that names a record more than once.
fn merged_record_revs(entries: Vec<RecordRevs>, limits: &Limits, what: &str) -> Result<Vec<RecordRevs>> {
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    let mut merged: Vec<RecordRevs> = Vec::new();
    for entry in entries {
        let key = (entry.table, entry.id);
        match index.get(&key) {
            Some(&i) => merged[i].revs.extend(entry.revs),
            None => {
                let entry = RecordRevs { table: key.0, id: key.1, revs: entry.revs };
                check_record_entry(&entry, merged.len(), limits, what)?;
                index.insert((entry.table.clone(), entry.id.clone()), merged.len());
                merged.push(entry);
            }
        }
    }
    for entry in &mut merged {
        let mut seen = std::collections::HashSet::with_capacity(entry.revs.len());
        entry.revs.retain(|r| seen.insert(*r));
    }
    Ok(merged)
}

/// A replicated revision that passed every check of [`replicated`]: valid names, a body within the
/// limits, an ancestry of consecutive generations cut to the revs limit, and an id that its body and
/// parent hash to. Only this module makes one.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedRevision {
    table: String,
    id: String,
    rev: RevId,
    deleted: bool,
    /// Its canonical bytes and the JSON stored; `None` for a compacted revision replayed from a
    /// quicksync file ([`replayed`]).
    body: Option<Body>,
    ancestry: Vec<RevId>,
    /// A foreign revision's digest, recomputed from its body (taken as sent for a compacted one).
    foreign: Option<Digest>,
}

impl VerifiedRevision {
    /// The table.
    pub fn table(&self) -> &str {
        &self.table
    }
    /// The record id.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// The revision id, verified.
    pub fn rev(&self) -> RevId {
        self.rev
    }
    /// Whether it is a tombstone.
    pub fn deleted(&self) -> bool {
        self.deleted
    }
    /// The body (empty for a tombstone sent without one; `None` for a compacted revision).
    pub fn body(&self) -> Option<&Body> {
        self.body.as_ref()
    }
    /// The table, the record id, the body, and the ancestry, moved out.
    pub fn into_parts(self) -> (String, String, Option<Body>, Vec<RevId>) {
        (self.table, self.id, self.body, self.ancestry)
    }
    /// The ancestry, parent first, each one generation older than the one before.
    pub fn ancestry(&self) -> &[RevId] {
        &self.ancestry
    }
    /// The parent the id was verified against.
    pub fn parent(&self) -> Option<RevId> {
        self.ancestry.first().copied()
    }
    /// For a foreign revision (SPEC §3), the digest its body was verified against; `None` for a
    /// native one. The caller must take a foreign revision only into a table open to CouchDB peers.
    pub fn foreign(&self) -> Option<Digest> {
        self.foreign
    }
}

/// Check a replicated revision as the planner needs it (SPEC §4.2, §13): names, nesting and size as
/// for a local write; the ancestry cut to `limits.max_ancestry` ids (CouchDB's `revs_limit`; the
/// oldest id kept becomes a stub) and a chain of consecutive generations ending at the parent; and the
/// id recomputed from the body and parent (Corrupt when it differs). A `_tables` revision must be a
/// valid table definition.
///
/// A revision sent as foreign (`RevisionData::foreign`) whose body does not hash to its id is taken
/// as foreign when the body digests to the value sent (SPEC §3), in a user table; one whose body does
/// hash to its id is native, whatever it was sent as. Which tables take foreign revisions is the
/// caller's check ([`VerifiedRevision::foreign`]).
pub fn replicated(r: RevisionData, limits: &Limits) -> Result<VerifiedRevision> {
    verify(r, limits, false)
}

/// [`replicated`] for a revision event replayed from verified quicksync files, in seq order
/// (`ReplicaTarget::put_events`): a live revision without a body is a compacted one (SPEC §4.5),
/// taken without its body — its id cannot be re-hashed, as a stub's cannot — and pending until the
/// revision after it arrives (`RevisionTree::leaves`).
pub fn replayed(r: RevisionData, limits: &Limits) -> Result<VerifiedRevision> {
    verify(r, limits, true)
}

/// The table name and record id of a replicated revision: what [`replicated`] checks first, and what
/// a write checks of a whole batch before it reads the trees of its records.
pub fn revision_key(r: &RevisionData) -> Result<()> {
    let context = |e: Error| e.context(format!("revision {} of {}/{}", r.rev, r.table, r.id));
    names::validate_any_table_name(&r.table).map_err(context)?;
    names::validate_record_id(&r.id, names::MAX_ID_BYTES).map_err(context)
}

fn verify(r: RevisionData, limits: &Limits, compacted: bool) -> Result<VerifiedRevision> {
    let context = |e: Error| e.context(format!("revision {} of {}/{}", r.rev, r.table, r.id));
    revision_key(&r)?;
    // The canonical bytes measured here are the ones the id is recomputed from below.
    if let Some(body) = &r.attributes {
        body.check_names().map_err(context)?;
        within(body, limits).map_err(context)?;
    }
    if !(1..=MAX_GENERATION).contains(&r.rev.generation) {
        return Err(Error::invalid(format!(
            "revision {} of {}/{}: the generation is not between 1 and {MAX_GENERATION}",
            r.rev, r.table, r.id
        )));
    }
    let RevisionData { table, id, rev, deleted, attributes, mut ancestry, foreign } = r;
    let body = match (attributes, deleted) {
        (Some(a), _) => Some(a),
        // A superseded foreign tombstone replayed: its body (digested, whatever it held) is gone.
        (None, true) if compacted && foreign.is_some() => None,
        (None, true) => Some(Body::empty()),
        (None, false) if compacted => None,
        (None, false) => {
            return Err(Error::invalid(format!(
                "revision {rev} of {table}/{id} carries no body (only a replay of quicksync files into a local \
                 database takes a compacted revision)"
            )))
        }
    };
    // An ancestry cut short ends in a stub without a parent, linked later if a longer ancestry arrives.
    ancestry.truncate(limits.max_ancestry.max(1));
    let mut expect = rev.generation;
    for a in &ancestry {
        if a.generation.checked_add(1) != Some(expect) {
            return Err(Error::invalid(format!(
                "revision {rev} of {table}/{id}: ancestry is not a chain of consecutive generations"
            )));
        }
        expect = a.generation;
    }
    let parent = ancestry.first().copied();
    if parent.is_none() && rev.generation != 1 {
        return Err(Error::invalid(format!("revision {rev} of {table}/{id} has no parent in its ancestry")));
    }
    let actual = match &body {
        Some(body) => revision_id_of_encoded(&table, &id, parent.as_ref(), deleted, body.canonical()),
        // A compacted revision: nothing to re-hash.
        None => rev,
    };
    if foreign.is_some() && table == names::TABLES_TABLE {
        return Err(Error::corrupt(format!(
            "revision {rev} of {table}/{id} is sent as foreign: a table definition is always native"
        )));
    }
    let foreign = match (&body, foreign) {
        // A compacted revision: nothing to re-hash, its class as sent (the chain hash the quicksync
        // reader verified commits to it).
        (None, sent) => sent,
        _ if actual == rev => None,
        (Some(body), Some(sent)) => {
            // Recomputed from the bytes the native id was.
            let digest = digest_of_encoded(&table, &id, parent.as_ref(), deleted, body.canonical());
            if digest != sent {
                return Err(Error::corrupt(format!(
                    "foreign revision {rev} of {table}/{id} does not match its body (it digests to {digest}, not {sent})"
                )));
            }
            Some(sent)
        }
        (Some(_), None) => {
            return Err(Error::corrupt(format!(
                "revision {rev} of {table}/{id} does not match its body (it hashes to {actual})"
            )))
        }
    };
    if table == names::TABLES_TABLE && !deleted {
        names::validate_table_name(&id)?;
        if let Some(body) = &body {
            outpost_api::TableDef::from_record(&id, rev, &body.attributes())?;
        }
    }
    Ok(VerifiedRevision { table, id, rev, deleted, body, ancestry, foreign })
}

/// Turn a local operation into a validated write, before any storage access: names, a generated id
/// (UUID v7) for a put without one, the configured id limit for new records, nesting and size.
pub(crate) fn local(limits: &Limits, op: WriteOp) -> Result<LocalWrite> {
    names::validate_table_name(&op.table)?;
    let id = match (op.id, op.op) {
        (Some(id), _) => id,
        (None, WriteOpKind::Put) => new_id(),
        (None, WriteOpKind::Delete) => return Err(Error::invalid("a delete names the record id")),
    };
    // The configured id limit binds new records; ids already stored (perhaps replicated from a peer
    // with a larger limit) stay reachable up to the protocol's maximum.
    let creating = op.op == WriteOpKind::Put && op.rev.is_none();
    names::validate_record_id(&id, if creating { limits.max_id_bytes } else { names::MAX_ID_BYTES })?;
    let deleted = op.op == WriteOpKind::Delete;
    if deleted && (!op.attributes.is_empty() || !op.resolves.is_empty()) {
        return Err(Error::invalid("a delete carries no attributes and resolves nothing"));
    }
    let encoded = encoded(&op.attributes, limits)?;
    Ok(LocalWrite {
        table: op.table,
        id,
        parent: op.rev,
        deleted,
        attributes: op.attributes,
        encoded,
        resolves: op.resolves,
    })
}

/// The record a local operation names (after `assign_ids`) when its table name and id pass the
/// checks [`local`] makes of them (the id against the protocol's limit, which binds every id): the
/// only records whose storage a write reads before its operations are validated.
pub(crate) fn named(op: &WriteOp) -> Option<crate::storage::RecordKey> {
    let id = op.id.as_ref()?;
    let valid =
        names::validate_table_name(&op.table).is_ok() && names::validate_record_id(id, names::MAX_ID_BYTES).is_ok();
    valid.then(|| (op.table.clone(), id.clone()))
}

/// The id of a record put without one: a UUID v7, which sorts by when it was made.
pub(crate) fn new_id() -> String {
    Uuid::now_v7().to_string()
}

/// Give each put without an id its [`new_id`], in the batch's order (so that the ids sort as the
/// operations came), before the batch is validated in parts on several threads.
pub(crate) fn assign_ids(ops: &mut [WriteOp]) {
    for op in ops.iter_mut().filter(|op| op.id.is_none() && op.op == WriteOpKind::Put) {
        op.id = Some(new_id());
    }
}

/// A batch of `len` operations or revisions (`what`) against `limits.max_bulk_ops`.
pub(crate) fn batch(len: usize, limits: &Limits, what: &str) -> Result<()> {
    if len > limits.max_bulk_ops {
        return Err(Error::too_large(format!("{len} {what} in one batch; the limit is {}", limits.max_bulk_ops)));
    }
    Ok(())
}

/// A local write's body in both its encodings, each made once, when it is validated: its canonical
/// bytes, which its revision id hashes, and its wire JSON, which is stored — on the validating
/// threads, not in the planner, whose work is the one step of a write that cannot run beside another.
/// Refused for a name that is not an attribute name, and as [`within`] refuses it.
pub fn encoded(attributes: &Attributes, limits: &Limits) -> Result<Body> {
    let body = Body::new(attributes);
    body.check_names()?;
    within(&body, limits)?;
    Ok(body)
}

/// A body's nesting depth and encoded size against the limits (local and replicated writes alike).
pub fn within(body: &Body, limits: &Limits) -> Result<()> {
    if body.depth() > limits.max_depth {
        return Err(Error::invalid(format!(
            "attributes nest {} deep; the limit is {}",
            body.depth(),
            limits.max_depth
        )));
    }
    let size = body.canonical().len();
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
    use outpost_api::ErrorKind;

    use super::*;
    use crate::hash::revision_id;

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
        // Each record named once (checked in place): a revision named twice is kept once.
        let once = record_revs(vec![entry("a", &[1, 2, 1]), entry("b", &[3])], &limits, "x").unwrap();
        assert_eq!(once, vec![entry("a", &[1, 2]), entry("b", &[3])]);
        // A bad name after a repeated key is found by the merging way too.
        let bad = RecordRevs { id: String::new(), ..entry("z", &[1]) };
        let e = record_revs(vec![entry("a", &[1]), entry("a", &[2]), bad], &limits, "x").unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidInput);
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
        let empty = Attributes::new();
        let base = RevisionData {
            table: "t".into(),
            id: "x".into(),
            rev: revision_id("t", "x", Some(&rev(9)), false, &empty),
            deleted: false,
            attributes: Some(Body::new(&empty)),
            ancestry: (1..10).rev().map(rev).collect(),
            foreign: None,
        };
        let cut = replicated(base.clone(), &limits).unwrap();
        assert_eq!(cut.ancestry(), &[rev(9), rev(8), rev(7)]);
        assert_eq!((cut.rev(), cut.parent()), (base.rev, Some(rev(9))));
        let nested = Attributes::from_plain(&serde_json::json!({"a": {"b": {"c": 1}}})).unwrap();
        let e = replicated(RevisionData { attributes: Some(Body::new(&nested)), ..base.clone() }, &limits).unwrap_err();
        assert!(e.message.contains("nest") && e.message.contains("revision 10-"), "{e}");
        let e = replicated(RevisionData { table: "T".into(), ..base.clone() }, &limits).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidInput);
    }

    /// One case per rule of `replicated`: what each malformed revision is refused as.
    #[test]
    fn replicated_revisions_are_refused_by_rule() {
        let body = Attributes::new().with("n", outpost_api::Value::Int(1));
        let first = revision_id("t", "x", None, false, &body);
        let second = revision_id("t", "x", Some(&first), false, &body);
        let good = RevisionData {
            table: "t".into(),
            id: "x".into(),
            rev: second,
            deleted: false,
            attributes: Some(Body::new(&body.clone())),
            ancestry: vec![first],
            foreign: None,
        };
        let cases: Vec<(&str, RevisionData, Option<ErrorKind>)> = vec![
            ("sound", good.clone(), None),
            ("no body", RevisionData { attributes: None, ..good.clone() }, Some(ErrorKind::InvalidInput)),
            ("no parent", RevisionData { ancestry: vec![], ..good.clone() }, Some(ErrorKind::InvalidInput)),
            ("gap", RevisionData { ancestry: vec![rev(5)], ..good.clone() }, Some(ErrorKind::InvalidInput)),
            ("other parent", RevisionData { ancestry: vec![rev(1)], ..good.clone() }, Some(ErrorKind::Corrupt)),
            (
                "other body",
                RevisionData { attributes: Some(Body::new(&Attributes::new())), ..good.clone() },
                Some(ErrorKind::Corrupt),
            ),
            ("tombstone flag", RevisionData { deleted: true, ..good.clone() }, Some(ErrorKind::Corrupt)),
            (
                "generation 0",
                RevisionData { rev: RevId::new(0, [1; 16]), ..good.clone() },
                Some(ErrorKind::InvalidInput),
            ),
            ("bad table", RevisionData { table: "T".into(), ..good.clone() }, Some(ErrorKind::InvalidInput)),
            (
                "a definition that is not one",
                RevisionData {
                    table: names::TABLES_TABLE.into(),
                    rev: revision_id(names::TABLES_TABLE, "x", Some(&first), false, &body),
                    ..good.clone()
                },
                Some(ErrorKind::InvalidInput),
            ),
        ];
        for (what, r, expect) in cases {
            let got = replicated(r, &Limits::default()).map(drop).map_err(|e| e.kind);
            assert_eq!(got.err(), expect, "{what}");
        }
    }
}
