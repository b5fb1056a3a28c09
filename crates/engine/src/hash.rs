//! Revision ids and the chain hash (SPEC §3, §5).

use outpost_api::{Attributes, ChainHash, RevId, Uuid};

use crate::canonical::{encode_map, put_lb, with_scratch};

/// The revision id of a revision: generation = parent's + 1 (1 without a parent); hash = the first 16
/// bytes of `blake3("outpost/rev/v1" || lb(table) || lb(id) || lb(parent or "") || deleted:u8 ||
/// map(attributes))`. A tombstone has empty attributes.
pub fn revision_id(table: &str, id: &str, parent: Option<&RevId>, deleted: bool, attributes: &Attributes) -> RevId {
    let mut body = Vec::with_capacity(256);
    encode_map(&mut body, attributes);
    revision_id_of_encoded(table, id, parent, deleted, &body)
}

/// [`revision_id`] for a body already in canonical bytes (`map(attributes)`).
pub(crate) fn revision_id_of_encoded(
    table: &str,
    id: &str,
    parent: Option<&RevId>,
    deleted: bool,
    body: &[u8],
) -> RevId {
    let mut h = blake3::Hasher::new();
    h.update(b"outpost/rev/v1");
    with_scratch(|head| {
        put_lb(head, table.as_bytes());
        put_lb(head, id.as_bytes());
        let parent_text = parent.map(RevId::text);
        put_lb(head, parent_text.as_deref().unwrap_or("").as_bytes());
        head.push(deleted as u8);
        h.update(head);
    });
    h.update(body);
    let digest = h.finalize();
    let mut hash = [0u8; 16];
    hash.copy_from_slice(&digest.as_bytes()[..16]);
    // Saturating: a generation past MAX_GENERATION is refused before anything is stored (the planner).
    RevId::new(parent.map_or(1, |p| p.generation.saturating_add(1)), hash)
}

/// `chain(0)`: see [`ChainHash::genesis`] (the definition lives in outpost-api, where verifiers reach it).
pub fn genesis_chain(first_epoch: Uuid) -> ChainHash {
    ChainHash::genesis(first_epoch)
}

/// `chain(n)`: see [`ChainHash::next`].
pub fn next_chain(prev: &ChainHash, seq: u64, table: &str, id: &str, rev: &RevId, deleted: bool) -> ChainHash {
    prev.next(seq, table, id, rev, deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_api::Value;

    #[test]
    fn generations_follow_the_parent() {
        let a = revision_id("t", "x", None, false, &Attributes::new());
        assert_eq!(a.generation, 1);
        let b = revision_id("t", "x", Some(&a), false, &Attributes::new().with("k", Value::Int(1)));
        assert_eq!(b.generation, 2);
    }

    #[test]
    fn every_input_changes_the_id() {
        let body = Attributes::new().with("k", Value::Int(1));
        let base = revision_id("t", "x", None, false, &body);
        assert_ne!(base, revision_id("u", "x", None, false, &body));
        assert_ne!(base, revision_id("t", "y", None, false, &body));
        assert_ne!(base, revision_id("t", "x", None, true, &body));
        assert_ne!(base, revision_id("t", "x", None, false, &Attributes::new().with("k", Value::Int(2))));
        // lb() framing: moving bytes between table and id changes the hash.
        assert_ne!(revision_id("ab", "c", None, false, &body), revision_id("a", "bc", None, false, &body));
    }

    #[test]
    fn the_chain_commits_to_each_event() {
        let g = genesis_chain(Uuid::nil());
        let r = revision_id("t", "x", None, false, &Attributes::new());
        let c1 = next_chain(&g, 1, "t", "x", &r, false);
        assert_ne!(c1, next_chain(&g, 2, "t", "x", &r, false));
        assert_ne!(c1, next_chain(&g, 1, "t", "x", &r, true));
        assert_ne!(c1, next_chain(&c1, 1, "t", "x", &r, false));
    }
}
