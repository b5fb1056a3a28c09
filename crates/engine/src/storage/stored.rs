//! How backends encode and decode the values they store, in one place: what a backend reads back
//! must be what the engine wrote, and anything else is `Corrupt`.

use outpost_api::{Attributes, ChainHash, Digest, Error, Result, RevId, Uuid};

/// A chain hash from its 32 stored bytes.
pub fn chain(bytes: &[u8]) -> Result<ChainHash> {
    <[u8; 32]>::try_from(bytes).map(ChainHash).map_err(|_| Error::corrupt("a stored chain hash is not 32 bytes"))
}

/// A revision's class from its stored digest: 16 bytes for a foreign revision, none for a native one.
pub fn digest(bytes: Option<&[u8]>) -> Result<Option<Digest>> {
    bytes
        .map(|b| <[u8; 16]>::try_from(b).map(Digest).map_err(|_| Error::corrupt("a stored digest is not 16 bytes")))
        .transpose()
}

/// A revision id from its stored text.
pub fn rev(text: &str) -> Result<RevId> {
    text.parse().map_err(|_| Error::corrupt(format!("a stored revision id {text:?} does not parse")))
}

/// A revision id from its stored parts (SQLite's format 5): its generation and its 16-byte hash.
pub fn rev_of(generation: i64, hash: &[u8]) -> Result<RevId> {
    let hash = <[u8; 16]>::try_from(hash).map_err(|_| Error::corrupt("a stored revision hash is not 16 bytes"))?;
    match u64::try_from(generation) {
        Ok(g @ 1..=outpost_api::MAX_GENERATION) => Ok(RevId::new(g, hash)),
        _ => Err(Error::corrupt(format!("a stored revision generation {generation} is out of range"))),
    }
}

/// A parent from its stored hash (SQLite's format 5): one generation below its child's,
/// `generation`, so a parent of the wrong generation cannot be stored.
pub fn parent_of(generation: i64, hash: Option<&[u8]>) -> Result<Option<RevId>> {
    let Some(hash) = hash else { return Ok(None) };
    if generation <= 1 {
        return Err(Error::corrupt(format!("a stored revision of generation {generation} has a parent")));
    }
    rev_of(generation - 1, hash).map(Some)
}

/// The bytes of one revision id in a packed list ([`pack_revs`]).
const PACKED: usize = 24;

/// A list of revision ids packed as bytes (SQLite's format 5): each its generation as 8 bytes
/// big-endian, then its hash. No bytes at all (stored as NULL) for no revision, or for exactly
/// `[implied]` (a state's leaves when the winner is the only one, nearly always), without allocating.
pub fn pack_revs(revs: &[RevId], implied: Option<&RevId>) -> Option<Vec<u8>> {
    if revs.is_empty() || (revs.len() == 1 && Some(&revs[0]) == implied) {
        return None;
    }
    let mut out = Vec::with_capacity(revs.len() * PACKED);
    for r in revs {
        out.extend_from_slice(&r.generation.to_be_bytes());
        out.extend_from_slice(&r.hash);
    }
    Some(out)
}

/// A list packed by [`pack_revs`] with the same `implied` (none unpacks to `[implied]`, or to no
/// revision when there is none).
pub fn unpack_revs(bytes: Option<&[u8]>, implied: Option<&RevId>) -> Result<Vec<RevId>> {
    let Some(bytes) = bytes else { return Ok(implied.into_iter().copied().collect()) };
    if bytes.is_empty() || !bytes.len().is_multiple_of(PACKED) {
        return Err(Error::corrupt(format!("a stored list of revision ids is {} bytes", bytes.len())));
    }
    bytes
        .chunks_exact(PACKED)
        .map(|b| {
            let generation = u64::from_be_bytes(b[..8].try_into().expect("8 bytes"));
            rev_of(i64::try_from(generation).unwrap_or(-1), &b[8..])
        })
        .collect()
}

/// A list of revision ids stored as one space-separated text (the ids are ASCII: no Unicode
/// whitespace to look for).
pub fn rev_list(text: &str) -> Result<Vec<RevId>> {
    text.split_ascii_whitespace().map(rev).collect()
}

/// The text a list of revision ids is stored as: space-separated, made without allocating for
/// a list of one (a state's leaves, nearly always) or none.
pub fn join_revs(revs: &[RevId]) -> RevList {
    match revs {
        [] => RevList::Empty,
        [one] => RevList::One(one.text()),
        many => {
            let mut out = String::with_capacity(many.len() * 35);
            for (i, r) in many.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(&r.text());
            }
            RevList::Many(out)
        }
    }
}

/// A list of revision ids as stored text ([`join_revs`]).
pub enum RevList {
    /// No revision: the empty text.
    Empty,
    /// One revision: its text.
    One(outpost_api::RevText),
    /// More: their texts, space-separated.
    Many(String),
}

impl std::ops::Deref for RevList {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            RevList::Empty => "",
            RevList::One(text) => text.as_str(),
            RevList::Many(text) => text,
        }
    }
}

/// A uuid from its 16 stored bytes.
pub fn uuid(bytes: &[u8]) -> Result<Uuid> {
    Uuid::from_slice(bytes).map_err(|_| Error::corrupt("a stored uuid is not 16 bytes"))
}

/// A revision's body from its stored wire JSON (`rev` of `table`/`id`, for the message).
pub fn body(json: &str, table: &str, id: &str, rev: &RevId) -> Result<Attributes> {
    serde_json::from_str(json).map_err(|e| Error::corrupt(format!("stored body of {table}/{id} {rev}: {e}")))
}

/// A state's field conflicts from their stored JSON list.
pub fn field_conflicts(json: &str) -> Result<Vec<String>> {
    serde_json::from_str(json).map_err(|e| Error::corrupt(format!("stored field conflicts: {e}")))
}

/// The JSON list field conflicts are stored as (borrowed for none, nearly always).
pub fn encode_field_conflicts(fields: &[String]) -> std::borrow::Cow<'static, str> {
    if fields.is_empty() {
        return "[]".into();
    }
    serde_json::Value::from(fields.to_vec()).to_string().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(generation: u64, byte: u8) -> RevId {
        RevId::new(generation, [byte; 16])
    }

    #[test]
    fn packed_lists_read_back_and_the_implied_one_packs_to_nothing() {
        let winner = r(3, 1);
        assert_eq!(pack_revs(&[winner], Some(&winner)), None);
        assert_eq!(unpack_revs(None, Some(&winner)).unwrap(), vec![winner]);
        assert_eq!(pack_revs(&[], None), None);
        assert_eq!(unpack_revs(None, None).unwrap(), vec![]);
        for list in [vec![r(1, 9)], vec![winner, r(2, 7)], vec![r(1 << 40, 0xff), r(1, 0)]] {
            let packed = pack_revs(&list, Some(&winner)).unwrap();
            assert_eq!(packed.len(), list.len() * PACKED);
            assert_eq!(unpack_revs(Some(&packed), Some(&winner)).unwrap(), list);
            assert_eq!(unpack_revs(pack_revs(&list, None).as_deref(), None).unwrap(), list);
        }
    }

    #[test]
    fn stored_parts_out_of_range_are_corrupt() {
        assert_eq!(rev_of(2, &[5; 16]).unwrap(), r(2, 5));
        for (generation, hash) in [(0, &[0u8; 16][..]), (-1, &[0; 16]), (1 << 53, &[0; 16]), (1, &[0; 15])] {
            assert!(rev_of(generation, hash).is_err(), "{generation} {}", hash.len());
        }
        assert_eq!(parent_of(3, Some(&[4; 16])).unwrap(), Some(r(2, 4)));
        assert_eq!(parent_of(1, None).unwrap(), None);
        assert!(parent_of(1, Some(&[4; 16])).is_err(), "a first revision has no parent");
        assert!(unpack_revs(Some(&[0; 23]), None).is_err());
        assert!(unpack_revs(Some(&[]), None).is_err(), "an empty list is stored as none");
        let zero_generation = [0u8; 24];
        assert!(unpack_revs(Some(&zero_generation), None).is_err());
        let mut huge = [0xffu8; 24];
        huge[..8].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(unpack_revs(Some(&huge), None).is_err());
    }
}
