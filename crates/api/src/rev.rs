//! Revision ids and chain hashes: the two hash-derived names of the data model.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// A revision id, `"{generation}-{hex}"`: the generation (1 for a first revision, parent + 1 after)
/// and the first 16 bytes of the revision hash (SPEC §3).
///
/// Ordering is by generation, then hash bytes; within one generation that equals the order of the id
/// strings, which is what the winner rule (§4.3) compares.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RevId {
    /// 1 for a first revision, the parent's generation plus one after.
    pub generation: u64,
    /// The first 16 bytes of the revision hash.
    pub hash: [u8; 16],
}

/// The largest generation a revision may have (SPEC §13): 2^53 − 1, which every JSON number reader
/// holds exactly. Parsing refuses larger ones, so no arithmetic on a parsed generation overflows.
pub const MAX_GENERATION: u64 = (1 << 53) - 1;

impl RevId {
    /// A revision id from its parts.
    pub fn new(generation: u64, hash: [u8; 16]) -> Self {
        RevId { generation, hash }
    }

    /// The id's text, `"{generation}-{hex}"`, made on the stack: what `to_string` gives, without
    /// allocating (hashes and SQL parameters take it on every write).
    pub fn text(&self) -> RevText {
        let mut buf = [0u8; REV_TEXT_MAX];
        // The generation's digits, right to left, then moved to the front.
        let mut digits = [0u8; 20];
        let mut n = self.generation;
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let digits = &digits[start..];
        buf[..digits.len()].copy_from_slice(digits);
        let mut len = digits.len();
        buf[len] = b'-';
        len += 1;
        for b in self.hash {
            buf[len] = HEX[(b >> 4) as usize];
            buf[len + 1] = HEX[(b & 15) as usize];
            len += 2;
        }
        RevText { buf, len: len as u8 }
    }
}

/// The longest revision id text: 20 digits (a `u64`), a dash and 32 hex characters.
const REV_TEXT_MAX: usize = 20 + 1 + 32;

/// A revision id's text on the stack ([`RevId::text`]); derefs to `str`.
#[derive(Clone, Copy)]
pub struct RevText {
    buf: [u8; REV_TEXT_MAX],
    len: u8,
}

impl RevText {
    /// The text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len as usize]).expect("digits, a dash and hex are ascii")
    }
}

impl std::ops::Deref for RevText {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for RevText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    let mut buf = [0u8; 64];
    for (i, b) in bytes.iter().enumerate() {
        buf[2 * i] = HEX[(b >> 4) as usize];
        buf[2 * i + 1] = HEX[(b & 15) as usize];
    }
    f.write_str(std::str::from_utf8(&buf[..bytes.len() * 2]).expect("hex is ascii"))
}

/// What [`HEX_VALUE`] gives a byte that is not a lowercase hex digit.
const NOT_HEX: u8 = 0x80;

/// Each byte's value as a lowercase hex digit, or [`NOT_HEX`].
const HEX_VALUE: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut i = 0;
    while i < 16 {
        table[HEX[i] as usize] = i as u8;
        i += 1;
    }
    table
};

fn parse_hex<const N: usize>(s: &str, what: &str) -> Result<[u8; N], Error> {
    let bytes = s.as_bytes();
    if bytes.len() != 2 * N {
        return Err(Error::invalid(format!("{what}: expected {} lowercase hex characters", 2 * N)));
    }
    // Every id read from a peer is parsed here: a table lookup per character, one test for them
    // all, and the error made only for text that is not hex.
    let mut out = [0u8; N];
    let mut invalid = 0u8;
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let (high, low) = (HEX_VALUE[usize::from(pair[0])], HEX_VALUE[usize::from(pair[1])]);
        invalid |= high | low;
        out[i] = (high << 4) | (low & 0x0f);
    }
    if invalid & NOT_HEX != 0 {
        let c = bytes.iter().find(|&&c| HEX_VALUE[usize::from(c)] == NOT_HEX).copied().unwrap_or(b'?');
        return Err(Error::invalid(format!("{what}: {:?} is not lowercase hex", c as char)));
    }
    Ok(out)
}

impl fmt::Display for RevId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

impl fmt::Debug for RevId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for RevId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::invalid(format!("invalid revision id {s:?}: expected \"<generation>-<32 hex>\""));
        let (generation, hex) = s.split_once('-').ok_or_else(bad)?;
        if generation.is_empty() || generation.starts_with('0') || !generation.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let generation: u64 = generation.parse().map_err(|_| bad())?;
        if generation > MAX_GENERATION {
            return Err(Error::invalid(format!(
                "invalid revision id {s:?}: the generation is above the largest one, {MAX_GENERATION}"
            )));
        }
        let hash = parse_hex::<16>(hex, "revision id").map_err(|_| bad())?;
        Ok(RevId { generation, hash })
    }
}

impl Serialize for RevId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text())
    }
}

impl<'de> Deserialize<'de> for RevId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d)
    }
}

/// A value parsed from its JSON string as the JSON holds it, borrowed where it can be: every
/// revision of a fetched page, each id of its ancestry and each chain hash is read here, and no
/// string is made for one.
fn from_text<'de, D: Deserializer<'de>, T: FromStr<Err = Error>>(d: D) -> Result<T, D::Error> {
    struct Text<T>(std::marker::PhantomData<T>);
    impl<T: FromStr<Err = Error>> serde::de::Visitor<'_> for Text<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<T, E> {
            s.parse().map_err(|e: Error| E::custom(e.message))
        }
    }
    d.deserialize_str(Text(std::marker::PhantomData))
}

/// A 32-byte chain hash (SPEC §5): commits to every revision event up to a seq. Written as 64 hex
/// characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChainHash(pub [u8; 32]);

impl ChainHash {
    /// `chain(0) = blake3("outpost/genesis/v1" || first_epoch_uuid_bytes)`.
    pub fn genesis(first_epoch: uuid::Uuid) -> ChainHash {
        let mut h = blake3::Hasher::new();
        h.update(b"outpost/genesis/v1");
        h.update(first_epoch.as_bytes());
        ChainHash(*h.finalize().as_bytes())
    }

    /// The chain hash after revision event `seq`, this being the chain hash before it:
    /// `blake3("outpost/chain/v1" || chain(n-1) || n:u64 || lb(table) || lb(id) || lb(rev) || deleted:u8)`,
    /// where `lb` is a big-endian u32 length followed by the bytes.
    ///
    /// Defined here rather than in the engine so that anyone holding a run of events (a quicksync
    /// client) can verify it with the public types alone.
    pub fn next(&self, seq: u64, table: &str, id: &str, rev: &RevId, deleted: bool) -> ChainHash {
        self.next_with(seq, (table, id, rev, deleted), None)
    }

    /// `chain(n)` after a *foreign* revision event (SPEC §3: a revision kept under the id another
    /// implementation gave it, its body pinned by a digest): [`ChainHash::next`]'s input followed by
    /// `0x01 || digest`, so two databases agreeing on `chain(n)` agree on every body up to n.
    pub fn next_foreign(&self, seq: u64, event: (&str, &str, &RevId, bool), digest: &Digest) -> ChainHash {
        self.next_with(seq, event, Some(&digest.0))
    }

    /// `chain(n)` after an event whose revision is foreign when `foreign` holds its digest, native
    /// when `None` ([`ChainHash::next`], [`ChainHash::next_foreign`]).
    pub fn next_event(&self, seq: u64, event: (&str, &str, &RevId, bool), foreign: Option<&Digest>) -> ChainHash {
        self.next_with(seq, event, foreign.map(|d| &d.0))
    }

    /// The chain step, `(table, id, rev, deleted)` the event, `foreign` its digest when foreign.
    fn next_with(
        &self,
        seq: u64,
        (table, id, rev, deleted): (&str, &str, &RevId, bool),
        foreign: Option<&[u8; 16]>,
    ) -> ChainHash {
        use crate::canonical::{put_lb, with_scratch};
        with_scratch(|buf| {
            buf.extend_from_slice(b"outpost/chain/v1");
            buf.extend_from_slice(&self.0);
            buf.extend_from_slice(&seq.to_be_bytes());
            put_lb(buf, table.as_bytes());
            put_lb(buf, id.as_bytes());
            put_lb(buf, rev.text().as_bytes());
            buf.push(deleted as u8);
            if let Some(digest) = foreign {
                buf.push(0x01);
                buf.extend_from_slice(digest);
            }
            ChainHash(*blake3::hash(buf).as_bytes())
        })
    }
}

impl fmt::Display for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for ChainHash {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        parse_hex::<32>(s, "chain hash").map(ChainHash)
    }
}

impl Serialize for ChainHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ChainHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d)
    }
}

/// A foreign revision's body digest (SPEC §3): the first 16 bytes of
/// `blake3("outpost/foreign/v1" || lb(table) || lb(id) || lb(parent_rev or "") || deleted:u8 ||
/// map(attributes))`, which pins the body of a revision whose id another implementation made (and
/// no receiver can recompute). Written as 32 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 16]);

impl Digest {
    /// The digest of a foreign revision's body: `table/id`'s revision under `parent`, a tombstone
    /// when `deleted`, with `attributes`.
    pub fn of(table: &str, id: &str, parent: Option<&RevId>, deleted: bool, attributes: &crate::Attributes) -> Digest {
        Digest::of_encoded(table, id, parent, deleted, &crate::canonical::encode_attributes(attributes))
    }

    /// [`Digest::of`] a body already encoded as canonical bytes ([`crate::canonical::encode_attributes`]).
    pub fn of_encoded(table: &str, id: &str, parent: Option<&RevId>, deleted: bool, encoded: &[u8]) -> Digest {
        use crate::canonical::put_lb;
        let mut input = Vec::with_capacity(64 + table.len() + id.len() + encoded.len());
        input.extend_from_slice(b"outpost/foreign/v1");
        put_lb(&mut input, table.as_bytes());
        put_lb(&mut input, id.as_bytes());
        let parent = parent.map(RevId::text);
        put_lb(&mut input, parent.as_deref().unwrap_or("").as_bytes());
        input.push(deleted as u8);
        input.extend_from_slice(encoded);
        let mut out = [0u8; 16];
        out.copy_from_slice(&blake3::hash(&input).as_bytes()[..16]);
        Digest(out)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        parse_hex::<16>(s, "foreign digest").map(Digest)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_text(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rev_ids_parse_and_print() {
        let s = "12-0123456789abcdef0123456789abcdef";
        let r: RevId = s.parse().unwrap();
        assert_eq!(r.generation, 12);
        assert_eq!(r.to_string(), s);
        for bad in [
            "",
            "1",
            "1-",
            "0-0123456789abcdef0123456789abcdef",
            "01-0123456789abcdef0123456789abcdef",
            "1-0123456789ABCDEF0123456789abcdef",
            "1-0123",
            "x-0123456789abcdef0123456789abcdef",
            "99999999999999999999999-0123456789abcdef0123456789abcdef",
            "18446744073709551615-0123456789abcdef0123456789abcdef",
            "9007199254740992-0123456789abcdef0123456789abcdef",
        ] {
            assert!(bad.parse::<RevId>().is_err(), "{bad}");
        }
        let top: RevId = "9007199254740991-0123456789abcdef0123456789abcdef".parse().unwrap();
        assert_eq!(top.generation, MAX_GENERATION);
    }

    #[test]
    fn ids_and_hashes_read_from_json_as_their_text_parses() {
        let hex = "0123456789abcdef0123456789abcdef";
        let r: RevId = serde_json::from_str(&format!("\"3-{hex}\"")).unwrap();
        assert_eq!(r.to_string(), format!("3-{hex}"));
        assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"3-{hex}\""));
        // Escaped text (not borrowed from the input) and text from a JSON value alike.
        assert_eq!(serde_json::from_str::<RevId>(&format!("\"\\u0033-{hex}\"")).unwrap(), r);
        assert_eq!(serde_json::from_value::<RevId>(serde_json::json!(format!("3-{hex}"))).unwrap(), r);
        let bad = serde_json::from_str::<RevId>(&format!("\"3-{}\"", hex.to_uppercase())).unwrap_err();
        assert!(bad.to_string().contains("invalid revision id"), "{bad}");
        let not_text = serde_json::from_str::<RevId>("3").unwrap_err();
        assert!(not_text.to_string().contains("expected a string"), "{not_text}");
        let chain = ChainHash([7; 32]);
        assert_eq!(serde_json::from_str::<ChainHash>(&serde_json::to_string(&chain).unwrap()).unwrap(), chain);
        let digest = Digest([9; 16]);
        assert_eq!(serde_json::from_str::<Digest>(&serde_json::to_string(&digest).unwrap()).unwrap(), digest);
        assert!(serde_json::from_str::<ChainHash>("\"07\"").is_err());
        let odd = parse_hex::<2>("0g12", "x").unwrap_err();
        assert!(odd.message.contains("'g' is not lowercase hex"), "{odd}");
        let first = parse_hex::<2>("G012", "x").unwrap_err();
        assert!(first.message.contains("'G' is not lowercase hex"), "{first}");
    }

    #[test]
    fn the_text_is_the_formatted_id() {
        let hash: [u8; 16] = std::array::from_fn(|i| (i as u8).wrapping_mul(37));
        for generation in [0, 1, 9, 10, 99, 100, 12345, MAX_GENERATION, u64::MAX] {
            let r = RevId::new(generation, hash);
            let expected = format!("{generation}-{}", hash.iter().map(|b| format!("{b:02x}")).collect::<String>());
            assert_eq!(r.text().as_str(), expected);
            assert_eq!(r.to_string(), expected);
        }
    }

    #[test]
    fn same_generation_order_is_string_order() {
        let a: RevId = "3-0f000000000000000000000000000000".parse().unwrap();
        let b: RevId = "3-a0000000000000000000000000000000".parse().unwrap();
        assert!(a < b);
        assert!(a.to_string() < b.to_string());
    }
}
