//! Canonical bytes of values (SPEC §3): the input of every hash. All integers big-endian; `lb(x)` is a
//! u32 length then the bytes.
//!
//! ```text
//! null 0x00 | bool 0x01 b | int 0x02 i64 | float 0x03 f64-bits | decimal 0x04 lb(text)
//! string 0x05 lb(utf8) | bytes 0x06 lb(raw) | timestamp 0x07 i64-secs u32-nanos
//! list 0x08 u32-count items... | map 0x09 u32-count (lb(key) value)... sorted by key bytes
//! ```
//!
//! Here rather than in the engine, which hashes with them, so that anyone holding public types can
//! compute what commits to a body: a CouchDB-protocol gateway states a foreign revision's digest
//! ([`crate::Digest::of`]) as a quicksync client verifies a chain hash.

use std::collections::BTreeMap;

use crate::{Attributes, Value};

/// Append `lb(bytes)`: a big-endian u32 length, then the bytes.
pub fn put_lb(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Run `f` on an empty buffer of this thread's, kept between calls: the inputs of the hashes made
/// for every event (a chain step, a revision id's head) put together without an allocation each.
pub fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            f(&mut buf)
        }
        // Called again from inside `f`: a buffer of its own.
        Err(_) => f(&mut Vec::new()),
    })
}

/// A decimal's canonical bytes, from its canonical text.
pub(crate) fn put_decimal(out: &mut Vec<u8>, text: &str) {
    out.push(0x04);
    put_lb(out, text.as_bytes());
}

/// Append the canonical bytes of one value.
pub fn encode_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.push(0x00),
        Value::Bool(b) => out.extend_from_slice(&[0x01, *b as u8]),
        Value::Int(i) => {
            out.push(0x02);
            out.extend_from_slice(&i.to_be_bytes());
        }
        Value::Float(f) => {
            out.push(0x03);
            // Values are canonical (-0.0 stored as 0.0), so the bits are too.
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        Value::Decimal(d) => put_decimal(out, d.as_str()),
        Value::String(s) => {
            out.push(0x05);
            put_lb(out, s.as_bytes());
        }
        Value::Bytes(b) => {
            out.push(0x06);
            put_lb(out, b);
        }
        Value::Timestamp(t) => {
            out.push(0x07);
            out.extend_from_slice(&t.secs.to_be_bytes());
            out.extend_from_slice(&t.nanos.to_be_bytes());
        }
        Value::List(items) => {
            out.push(0x08);
            out.extend_from_slice(&(items.len() as u32).to_be_bytes());
            for item in items {
                encode_value(out, item);
            }
        }
        Value::Map(items) => encode_map(out, items),
    }
}

/// Append the canonical bytes of a map (keys in UTF-8 byte order, which is `BTreeMap<String, _>`'s).
pub fn encode_map(out: &mut Vec<u8>, items: &BTreeMap<String, Value>) {
    out.push(0x09);
    out.extend_from_slice(&(items.len() as u32).to_be_bytes());
    for (key, value) in items {
        put_lb(out, key.as_bytes());
        encode_value(out, value);
    }
}

/// The canonical bytes of a record body (the attributes as a map).
pub fn encode_attributes(attributes: &Attributes) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    encode_map(&mut out, attributes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(v: &Value) -> String {
        let mut out = Vec::new();
        encode_value(&mut out, v);
        out.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn scalars_encode_as_documented() {
        assert_eq!(hex(&Value::Null), "00");
        assert_eq!(hex(&Value::Bool(true)), "0101");
        assert_eq!(hex(&Value::Int(-2)), "02fffffffffffffffe");
        assert_eq!(hex(&Value::float(1.5).unwrap()), "033ff8000000000000");
        assert_eq!(hex(&Value::float(-0.0).unwrap()), hex(&Value::float(0.0).unwrap()));
        assert_eq!(hex(&Value::decimal("12.50").unwrap()), "040000000431322e35");
        assert_eq!(hex(&Value::string("é")), "0500000002c3a9");
        assert_eq!(hex(&Value::Bytes(vec![0, 255])), "060000000200ff");
        let t = Value::Timestamp("1970-01-01T00:00:01.5Z".parse().unwrap());
        assert_eq!(hex(&t), "0700000000000000011dcd6500");
        assert_eq!(hex(&Value::List(vec![Value::Null, Value::Bool(false)])), "0800000002000100");
    }

    #[test]
    fn map_keys_are_sorted_by_utf8_bytes() {
        let m: BTreeMap<String, Value> =
            [("b".to_owned(), Value::Null), ("a".to_owned(), Value::Null), ("é".to_owned(), Value::Null)].into();
        let mut out = Vec::new();
        encode_map(&mut out, &m);
        let h: String = out.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(h, "090000000300000001610000000001620000000002c3a900");
    }
}
