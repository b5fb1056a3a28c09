//! The wire JSON of attributes written directly: byte for byte what their `Serialize` gives through
//! `serde_json` (a property test holds the two equal), without serde's machinery. Every write
//! encodes its body once to store it, so this is on the write path of every record. The same for
//! what a source streams once per record of a pass: an entry of the changes feed and a revision
//! with its stored body.

use std::fmt::Write as _;

use base64::Engine as _;

use crate::scalar::format_float;
use crate::value::{Attributes, Value};

impl Attributes {
    /// The attributes' wire JSON, as `serde_json::to_string` writes them.
    pub fn to_json(&self) -> String {
        // Room for a typical attribute each (a key, its type, a short value): most bodies are written
        // without growing the buffer, which copied it twice for a body of a few hundred bytes.
        let mut out = String::with_capacity(64 + 96 * self.0.len());
        write_map(&mut out, &self.0);
        out
    }
}

/// Parse JSON bytes (a request or response body) as `T`. The bytes are checked as UTF-8 once and
/// parsed as text: parsing bytes directly checks every string on its own, which cost a replicated
/// record's parse a fifth of its time. Bytes that are not UTF-8 are parsed as bytes, for
/// `serde_json`'s own message naming where.
pub fn from_json_bytes<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> serde_json::Result<T> {
    from_json_bytes_by(bytes, |text| serde_json::from_str(text))
}

/// [`from_json_bytes`], the text read by `read`: a faster reader of one type's JSON that takes what
/// `serde` takes, as the same value, and refuses what it refuses (`revisions_from_json`).
pub fn from_json_bytes_by<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    read: impl FnOnce(&str) -> serde_json::Result<T>,
) -> serde_json::Result<T> {
    match std::str::from_utf8(bytes) {
        Ok(text) => read(text),
        Err(_) => serde_json::from_slice(bytes),
    }
}

/// The length of `value`'s JSON as `serde_json` writes it, counted without keeping the text (e.g. to
/// size a request before sending it).
pub fn json_len(value: &impl serde::Serialize) -> u64 {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail, and our types always encode.
    serde_json::to_writer(&mut count, value).map_or(0, |()| count.0)
}

impl crate::Change {
    /// The entry's JSON, as `serde_json` writes it.
    pub fn write_json(&self, out: &mut String) {
        write!(out, "{{\"seq\":{},\"table\":", self.seq).expect("writing to a String");
        write_key(out, (&self.table, &self.id, &self.rev, self.deleted));
        out.push_str(",\"leaves\":");
        write_revs(out, &self.leaves);
        out.push('}');
    }
}

impl crate::RevisionJson {
    /// The revision's JSON, as `serde_json` writes it (the body's stored JSON as it is).
    pub fn write_json(&self, out: &mut String) {
        out.push_str("{\"table\":");
        write_key(out, (&self.table, &self.id, &self.rev, self.deleted));
        if let Some(body) = &self.attributes {
            out.push_str(",\"attributes\":");
            out.push_str(body.get());
        }
        out.push_str(",\"ancestry\":");
        write_revs(out, &self.ancestry);
        if let Some(digest) = &self.foreign {
            write!(out, ",\"foreign\":\"{digest}\"").expect("writing to a String");
        }
        out.push('}');
    }
}

/// A table, an id, a revision id and its deletion, after `"table":`.
fn write_key(out: &mut String, (table, id, rev, deleted): (&str, &str, &crate::RevId, bool)) {
    write_str(out, table);
    out.push_str(",\"id\":");
    write_str(out, id);
    // A revision id's text is digits, a dash and hex: nothing to escape.
    out.push_str(",\"rev\":\"");
    out.push_str(&rev.text());
    out.push_str("\",\"deleted\":");
    out.push_str(if deleted { "true" } else { "false" });
}

/// Revision ids as a JSON array.
fn write_revs(out: &mut String, revs: &[crate::RevId]) {
    out.push('[');
    for (i, rev) in revs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        out.push_str(&rev.text());
        out.push('"');
    }
    out.push(']');
}

fn write_map(out: &mut String, items: &std::collections::BTreeMap<String, Value>) {
    out.push('{');
    for (i, (key, value)) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, key);
        out.push(':');
        write_value(out, value);
    }
    out.push('}');
}

/// One value: a one-entry object naming its type.
fn write_value(out: &mut String, value: &Value) {
    out.push_str("{\"");
    out.push_str(value.value_type().as_str());
    out.push_str("\":");
    match value {
        Value::Null => out.push_str("true"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            out.push('"');
            write!(out, "{i}").expect("writing to a String");
            out.push('"');
        }
        Value::Float(f) => write_str(out, &format_float(*f)),
        Value::Decimal(d) => write_str(out, d.as_str()),
        Value::String(s) => write_str(out, s),
        Value::Bytes(b) => {
            out.push('"');
            base64::engine::general_purpose::STANDARD.encode_string(b, out);
            out.push('"');
        }
        Value::Timestamp(t) => {
            out.push('"');
            write!(out, "{t}").expect("writing to a String");
            out.push('"');
        }
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Map(items) => write_map(out, items),
    }
    out.push('}');
}

/// A JSON string as `serde_json` escapes it: `"` and `\`, the short escapes of `\b \t \n \f \r`, other
/// control characters as `\u00xx`, everything else as it is.
fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    // Most text needs no escape: one pass that the compiler can vectorise, then a copy.
    let plain = !bytes.iter().fold(false, |any, &b| any | (b < 0x20) | (b == b'"') | (b == b'\\'));
    if plain {
        out.push_str(s);
    } else {
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let short = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                0x00..=0x1f => "",
                _ => continue,
            };
            // An ASCII byte: the slices end on character boundaries.
            out.push_str(&s[start..i]);
            if short.is_empty() {
                write!(out, "\\u{b:04x}").expect("writing to a String");
            } else {
                out.push_str(short);
            }
            start = i + 1;
        }
        out.push_str(&s[start..]);
    }
    out.push('"');
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::{Decimal, Timestamp};

    pub(crate) fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z]{0,12}",
            "\\PC{0,12}",
            proptest::collection::vec(any::<char>(), 0..12).prop_map(|c| c.into_iter().collect()),
            proptest::collection::vec(0u8..0x80, 0..12).prop_map(|b| String::from_utf8(b).unwrap()),
        ]
    }

    pub(crate) fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| Value::Float(if f == 0.0 {
                0.0
            } else {
                f
            })),
            (any::<i32>(), 0u32..6).prop_map(|(n, scale)| {
                let d: Decimal = format!("{n}e-{scale}").parse().unwrap_or_else(|_| "0".parse().unwrap());
                Value::Decimal(d)
            }),
            text().prop_map(Value::String),
            proptest::collection::vec(any::<u8>(), 0..10).prop_map(Value::Bytes),
            (0i64..4_000_000_000_000, 0u32..1_000_000_000)
                .prop_filter_map("a valid instant", |(s, n)| { Timestamp::from_parts(s, n).map(Value::Timestamp) }),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::List),
                proptest::collection::btree_map(text(), inner, 0..4).prop_map(Value::Map),
            ]
        })
    }

    proptest! {
        #[test]
        fn the_wire_json_is_what_serde_writes(items in proptest::collection::btree_map(text(), value(), 0..6)) {
            let attributes = Attributes(items);
            prop_assert_eq!(attributes.to_json(), serde_json::to_string(&attributes).unwrap());
        }

        #[test]
        fn the_wire_json_parses_back(items in proptest::collection::btree_map(text(), value(), 0..6)) {
            // Under one attribute: any text is a key of a map value, not every text an attribute name.
            let attributes = Attributes::new().with("a", Value::Map(items));
            prop_assert_eq!(serde_json::from_str::<Attributes>(&attributes.to_json()).unwrap(), attributes);
        }
    }

    #[test]
    fn json_bytes_parse_as_text_and_bytes_that_are_not_utf8_are_refused_where_they_fail() {
        let a: Attributes =
            from_json_bytes(br#"{"s": {"string": "\u00e9t\u00e9"}, "t": {"string": "plain"}}"#).unwrap();
        assert_eq!(a["s"], Value::string("\u{e9}t\u{e9}"));
        assert_eq!(a["t"], Value::string("plain"));
        let bad = from_json_bytes::<Attributes>(b"{\"s\": {\"string\": \"\xff\"}}").unwrap_err().to_string();
        assert_eq!(
            bad,
            serde_json::from_slice::<Attributes>(b"{\"s\": {\"string\": \"\xff\"}}").unwrap_err().to_string()
        );
        assert!(bad.contains("invalid unicode code point"), "{bad}");
        let shape = from_json_bytes::<Attributes>(b"[1]").unwrap_err().to_string();
        assert_eq!(shape, serde_json::from_slice::<Attributes>(b"[1]").unwrap_err().to_string());
    }

    #[test]
    fn every_control_character_is_escaped_as_serde_does() {
        let all: String = (0u8..0x80).map(char::from).chain(['é', '\u{2028}', '😀']).collect();
        let attributes = Attributes(BTreeMap::from([(all.clone(), Value::String(all))]));
        assert_eq!(attributes.to_json(), serde_json::to_string(&attributes).unwrap());
    }
}
