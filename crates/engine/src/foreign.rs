//! Foreign revisions (SPEC §3), the pure rules: a revision that arrives through the CouchDB protocol
//! (§17) under an id another implementation gave it (PouchDB's is an md5 of its own JSON text, which
//! no receiver can recompute) is kept under that id, and its body is pinned by a digest that every
//! receiver does recompute. Which body an id keeps when two arrive is decided here too, so that
//! replicas converge whatever the order of arrival.

pub use outpost_api::Digest;
use outpost_api::{Attributes, ChainHash, RevId};

/// The digest of a foreign revision's body ([`Digest::of`], defined in outpost-api so that a
/// CouchDB-protocol gateway can state it with public types).
pub fn digest(table: &str, id: &str, parent: Option<&RevId>, deleted: bool, attributes: &Attributes) -> Digest {
    Digest::of(table, id, parent, deleted, attributes)
}

/// [`digest`] of a body already encoded as canonical bytes.
pub fn digest_of_encoded(table: &str, id: &str, parent: Option<&RevId>, deleted: bool, encoded: &[u8]) -> Digest {
    Digest::of_encoded(table, id, parent, deleted, encoded)
}

/// How a revision's body is vouched for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// The body hashes to the revision id (SPEC §3): it is the only body that id can have.
    Native,
    /// The id came from another implementation; the body is pinned by its digest.
    Foreign(Digest),
}

impl Class {
    /// The class of a revision stored with `foreign` (its digest when foreign).
    pub fn of(foreign: Option<Digest>) -> Class {
        foreign.map_or(Class::Native, Class::Foreign)
    }

    /// The digest, for a foreign revision.
    pub fn digest(self) -> Option<Digest> {
        match self {
            Class::Native => None,
            Class::Foreign(d) => Some(d),
        }
    }

    /// Whether a body of class `incoming`, arriving for a revision held with a body of class `self`,
    /// replaces it: a native body always replaces a foreign one and is never replaced; between two
    /// foreign bodies the smaller digest stays. A total order, so every replica ends with the same
    /// body whatever order the bodies arrive in.
    pub fn replaced_by(self, incoming: Class) -> bool {
        match (self, incoming) {
            (Class::Native, _) => false,
            (Class::Foreign(_), Class::Native) => true,
            (Class::Foreign(held), Class::Foreign(new)) => new < held,
        }
    }
}

/// `chain(n)` after an event of class `class` (SPEC §5, §3): a foreign event's input ends with
/// `0x01 || digest`.
pub fn next_chain(prev: &ChainHash, seq: u64, event: (&str, &str, &RevId, bool), class: Class) -> ChainHash {
    prev.next_event(seq, event, class.digest().as_ref())
}

#[cfg(test)]
mod tests {
    use outpost_api::Value;
    use proptest::prelude::*;

    use super::*;
    use crate::hash::revision_id;

    #[test]
    fn the_digest_is_the_revision_formula_under_its_own_tag() {
        let body = Attributes::new().with("k", Value::Int(1));
        let d = digest("t", "x", None, false, &body);
        assert_ne!(d.0, revision_id("t", "x", None, false, &body).hash, "another domain than revision ids");
        assert_ne!(d, digest("t", "y", None, false, &body));
        assert_ne!(d, digest("t", "x", None, true, &body));
        let parent = revision_id("t", "x", None, false, &Attributes::new());
        assert_ne!(d, digest("t", "x", Some(&parent), false, &body));
        assert_ne!(d, digest("t", "x", None, false, &Attributes::new().with("k", Value::Int(2))));
    }

    #[test]
    fn a_foreign_event_chains_its_digest() {
        let g = ChainHash::genesis(outpost_api::Uuid::nil());
        let rev = RevId::new(1, [7; 16]);
        let event = ("t", "x", &rev, false);
        let native = next_chain(&g, 1, event, Class::Native);
        assert_eq!(native, g.next(1, "t", "x", &rev, false));
        let a = next_chain(&g, 1, event, Class::Foreign(Digest([1; 16])));
        assert_ne!(a, native);
        assert_ne!(a, next_chain(&g, 1, event, Class::Foreign(Digest([2; 16]))), "the body is in the chain");
    }

    fn class() -> impl Strategy<Value = Class> {
        prop_oneof![
            Just(Class::Native),
            any::<[u8; 16]>().prop_map(|d| Class::Foreign(Digest(d))),
            (0u8..3).prop_map(|b| Class::Foreign(Digest([b; 16])))
        ]
    }

    proptest! {
        /// Whatever order the bodies of one id arrive in, each replica keeps the same one: native if
        /// any arrived, else the smallest digest.
        #[test]
        fn every_order_of_arrival_keeps_the_same_body(arrivals in prop::collection::vec(class(), 1..8), seed in any::<u64>()) {
            let keep = |order: &[Class]| {
                order.iter().skip(1).fold(order[0], |held, &new| if held.replaced_by(new) { new } else { held })
            };
            let mut shuffled = arrivals.clone();
            let mut state = seed;
            for i in (1..shuffled.len()).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (state >> 33) as usize % (i + 1));
            }
            let expected = if arrivals.contains(&Class::Native) {
                Class::Native
            } else {
                arrivals.iter().copied().min_by_key(|c| match c { Class::Foreign(d) => *d, Class::Native => Digest([0; 16]) }).unwrap()
            };
            prop_assert_eq!(keep(&arrivals), expected);
            prop_assert_eq!(keep(&shuffled), expected);
        }
    }
}
