//! Typed attribute values and their JSON wire form (SPEC §3).
//!
//! The wire form is one key naming the type: `{"int": "-1234"}`. Numbers travel as strings so no
//! float approximation can change a hash. Deserialising canonicalises (`{"int": "007"}` becomes 7)
//! and rejects invalid input with an error that names the attribute path (`attribute "a.b[2]": ...`).
//! Plain JSON (`{"size": 4}`) is converted by [`Value::from_plain`] and [`Value::to_plain`]. The
//! wire form is read in `parse.rs`.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Serialize, Serializer};

use crate::scalar::{canonical_float, format_float, parse_float, parse_int, Decimal, Timestamp};
use crate::Error;

/// A typed attribute value.
#[derive(Clone, PartialEq, Debug)]
pub enum Value {
    /// The absent value.
    Null,
    /// true or false.
    Bool(bool),
    /// A 64-bit signed integer.
    Int(i64),
    /// A finite 64-bit float (never NaN or infinite; `-0.0` is stored as `0.0`).
    Float(f64),
    /// An exact decimal in canonical text.
    Decimal(Decimal),
    /// UTF-8 text, kept exactly as given.
    String(String),
    /// Raw bytes (base64 on the wire).
    Bytes(Vec<u8>),
    /// A UTC instant.
    Timestamp(Timestamp),
    /// An ordered list.
    List(Vec<Value>),
    /// A map from string keys to values (keys sorted by UTF-8 bytes).
    Map(BTreeMap<String, Value>),
}

/// The type of a [`Value`], as named in the wire form and in field declarations.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum ValueType {
    Null,
    Bool,
    Int,
    Float,
    Decimal,
    String,
    Bytes,
    Timestamp,
    List,
    Map,
}

impl ValueType {
    /// The wire name (`"int"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::Null => "null",
            ValueType::Bool => "bool",
            ValueType::Int => "int",
            ValueType::Float => "float",
            ValueType::Decimal => "decimal",
            ValueType::String => "string",
            ValueType::Bytes => "bytes",
            ValueType::Timestamp => "timestamp",
            ValueType::List => "list",
            ValueType::Map => "map",
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Value {
    /// The type of this value.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::Null => ValueType::Null,
            Value::Bool(_) => ValueType::Bool,
            Value::Int(_) => ValueType::Int,
            Value::Float(_) => ValueType::Float,
            Value::Decimal(_) => ValueType::Decimal,
            Value::String(_) => ValueType::String,
            Value::Bytes(_) => ValueType::Bytes,
            Value::Timestamp(_) => ValueType::Timestamp,
            Value::List(_) => ValueType::List,
            Value::Map(_) => ValueType::Map,
        }
    }

    /// Nesting depth: 1 for a scalar, 1 + the deepest item for a list or map.
    pub fn depth(&self) -> usize {
        match self {
            Value::List(items) => 1 + items.iter().map(Value::depth).max().unwrap_or(0),
            Value::Map(items) => 1 + items.values().map(Value::depth).max().unwrap_or(0),
            _ => 1,
        }
    }

    /// A float value; NaN and infinities are rejected, `-0.0` becomes `0.0`.
    pub fn float(f: f64) -> Result<Value, Error> {
        canonical_float(f).map(Value::Float).map_err(Error::invalid)
    }

    /// A decimal value parsed from text.
    pub fn decimal(text: &str) -> Result<Value, Error> {
        text.parse().map(Value::Decimal).map_err(Error::invalid)
    }

    /// A string value.
    pub fn string(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }

    /// Parse one value of the given type from its wire text (the string inside `{"type": "text"}`),
    /// canonicalising. For list and map the text is their wire JSON.
    pub fn parse_typed(ty: ValueType, text: &str) -> Result<Value, String> {
        Ok(match ty {
            ValueType::Null => Value::Null,
            ValueType::Bool => match text {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => return Err(format!("invalid bool {text:?}: expected true or false")),
            },
            ValueType::Int => Value::Int(parse_int(text)?),
            ValueType::Float => Value::Float(parse_float(text)?),
            ValueType::Decimal => Value::Decimal(text.parse()?),
            ValueType::String => Value::String(text.to_owned()),
            ValueType::Bytes => Value::Bytes(
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|e| format!("invalid bytes: expected standard base64 with padding ({e})"))?,
            ),
            ValueType::Timestamp => Value::Timestamp(text.parse()?),
            ValueType::List | ValueType::Map => serde_json::from_str::<Value>(text).map_err(|e| e.to_string())?,
        })
    }

    /// Convert plain JSON: integers that fit i64 → int, other numbers → decimal with their exact
    /// digits, strings, bools, null, arrays → list, objects → map.
    pub fn from_plain(json: &serde_json::Value) -> Result<Value, Error> {
        from_plain_at(json, &Path::Root)
    }

    /// Plain JSON for this value: int, float and decimal as JSON numbers, bytes as base64 text,
    /// timestamps as RFC 3339 text. Lossy: the types of bytes and timestamps are not kept.
    pub fn to_plain(&self) -> serde_json::Value {
        use serde_json::Value as J;
        let number = |text: &str| {
            text.parse::<serde_json::Number>().map(J::Number).unwrap_or_else(|_| J::String(text.to_owned()))
        };
        match self {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::Number((*i).into()),
            Value::Float(f) => number(&format_float(*f)),
            Value::Decimal(d) => number(d.as_str()),
            Value::String(s) => J::String(s.clone()),
            Value::Bytes(b) => J::String(base64::engine::general_purpose::STANDARD.encode(b)),
            Value::Timestamp(t) => J::String(t.to_string()),
            Value::List(items) => J::Array(items.iter().map(Value::to_plain).collect()),
            Value::Map(items) => J::Object(items.iter().map(|(k, v)| (k.clone(), v.to_plain())).collect()),
        }
    }
}

/// Where a value sits in a body (`a.b[2]`), for error messages: made as the parser descends, written
/// out only when an error names it (a path string per attribute was a good share of parsing a body).
#[derive(Clone, Copy)]
pub(crate) enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl Path<'_> {
    /// Whether the path names nothing (the root, or an empty key under it), so a message names no
    /// attribute. Only errors ask.
    pub(crate) fn is_root(&self) -> bool {
        self.to_string().is_empty()
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Key(parent, key) if parent.is_root() => f.write_str(key),
            Path::Key(parent, key) => write!(f, "{parent}.{key}"),
            Path::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

pub(crate) fn path_error(path: &Path<'_>, message: impl fmt::Display) -> String {
    if path.is_root() {
        message.to_string()
    } else {
        format!("attribute {:?}: {message}", path.to_string())
    }
}

fn from_plain_at(json: &serde_json::Value, path: &Path<'_>) -> Result<Value, Error> {
    use serde_json::Value as J;
    Ok(match json {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Decimal(n.to_string().parse().map_err(|e| Error::invalid(path_error(path, e)))?),
        },
        J::String(s) => Value::String(s.clone()),
        J::Array(items) => Value::List(
            items.iter().enumerate().map(|(i, v)| from_plain_at(v, &Path::Index(path, i))).collect::<Result<_, _>>()?,
        ),
        J::Object(items) => Value::Map(
            items
                .iter()
                .map(|(k, v)| Ok((k.clone(), from_plain_at(v, &Path::Key(path, k))?)))
                .collect::<Result<_, Error>>()?,
        ),
    })
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        let key = self.value_type().as_str();
        match self {
            Value::Null => map.serialize_entry(key, &true)?,
            Value::Bool(b) => map.serialize_entry(key, b)?,
            Value::Int(i) => map.serialize_entry(key, &i.to_string())?,
            Value::Float(f) => map.serialize_entry(key, &format_float(*f))?,
            Value::Decimal(d) => map.serialize_entry(key, d.as_str())?,
            Value::String(v) => map.serialize_entry(key, v)?,
            Value::Bytes(b) => map.serialize_entry(key, &base64::engine::general_purpose::STANDARD.encode(b))?,
            Value::Timestamp(t) => map.serialize_entry(key, &t.to_string())?,
            Value::List(items) => map.serialize_entry(key, &ListRef(items))?,
            Value::Map(items) => map.serialize_entry(key, items)?,
        }
        map.end()
    }
}

struct ListRef<'a>(&'a [Value]);

impl Serialize for ListRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for v in self.0 {
            seq.serialize_element(v)?;
        }
        seq.end()
    }
}

/// The attributes of a record: attribute name → value. Names are 1–256 bytes and do not start with `_`.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct Attributes(pub BTreeMap<String, Value>);

impl Attributes {
    /// No attributes.
    pub fn new() -> Self {
        Attributes(BTreeMap::new())
    }

    /// Attributes from plain JSON: an object whose values are converted by [`Value::from_plain`].
    pub fn from_plain(json: &serde_json::Value) -> Result<Self, Error> {
        let obj = json.as_object().ok_or_else(|| Error::invalid("attributes must be a JSON object"))?;
        let mut out = BTreeMap::new();
        for (k, v) in obj {
            crate::names::validate_attribute_name(k)?;
            out.insert(k.clone(), from_plain_at(v, &Path::Key(&Path::Root, k))?);
        }
        Ok(Attributes(out))
    }

    /// Plain JSON for these attributes (see [`Value::to_plain`]).
    pub fn to_plain(&self) -> serde_json::Value {
        serde_json::Value::Object(self.0.iter().map(|(k, v)| (k.clone(), v.to_plain())).collect())
    }

    /// Builder-style insert.
    pub fn with(mut self, name: impl Into<String>, value: Value) -> Self {
        self.0.insert(name.into(), value);
        self
    }

    /// The deepest nesting of any value (0 when empty).
    pub fn depth(&self) -> usize {
        self.0.values().map(Value::depth).max().unwrap_or(0)
    }
}

impl std::ops::Deref for Attributes {
    type Target = BTreeMap<String, Value>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Attributes {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl FromIterator<(String, Value)> for Attributes {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        Attributes(iter.into_iter().collect())
    }
}

impl Serialize for Attributes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wire(v: serde_json::Value) -> Result<Value, String> {
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    #[test]
    fn every_type_round_trips_through_the_wire_form() {
        let input = json!({"map": {
            "n": {"null": true}, "b": {"bool": false}, "i": {"int": "-1234"}, "f": {"float": "1.5"},
            "d": {"decimal": "12.5"}, "s": {"string": "héllo"}, "y": {"bytes": "AAEC/w=="},
            "t": {"timestamp": "2026-01-01T00:00:00.5Z"}, "l": {"list": [{"int": "1"}, {"string": "x"}]}
        }});
        let v = wire(input.clone()).unwrap();
        assert_eq!(serde_json::to_value(&v).unwrap(), input);
    }

    #[test]
    fn non_canonical_input_is_canonicalised() {
        for (input, expect) in [
            (json!({"int": "007"}), json!({"int": "7"})),
            (json!({"int": "-0"}), json!({"int": "0"})),
            (json!({"int": 42}), json!({"int": "42"})),
            (json!({"float": "-0.0"}), json!({"float": "0"})),
            (json!({"float": "1.50"}), json!({"float": "1.5"})),
            (json!({"decimal": "1.5e3"}), json!({"decimal": "1500"})),
            (json!({"timestamp": "2026-01-01T01:00:00.100+01:00"}), json!({"timestamp": "2026-01-01T00:00:00.1Z"})),
        ] {
            assert_eq!(serde_json::to_value(wire(input).unwrap()).unwrap(), expect);
        }
    }

    #[test]
    fn invalid_input_names_the_attribute_path() {
        let cases = [
            (json!({"a": {"map": {"b": {"list": [{"int": "1"}, {"int": "x"}]}}}}), "a.b[1]"),
            (json!({"n": {"float": "NaN"}}), "\"n\""),
            (json!({"n": {"nope": "1"}}), "unknown value type"),
            (json!({"n": {"int": "1", "float": "1"}}), "exactly one key"),
            (json!({"n": {}}), "empty object"),
            (json!({"n": {"bytes": "***"}}), "base64"),
            (json!({"_n": {"int": "1"}}), "_n"),
            (json!({"": {"int": "1"}}), "attribute name"),
            (json!({"n": {"null": false}}), "null"),
            (json!({"n": {"bool": "yes"}}), "bool"),
        ];
        for (input, needle) in cases {
            let err = serde_json::from_value::<Attributes>(input.clone()).unwrap_err().to_string();
            assert!(err.contains(needle), "{input} gave {err:?}, expected {needle:?}");
            // Parsed from text (strings borrowed from the input), the same message.
            let text = serde_json::from_str::<Attributes>(&input.to_string()).unwrap_err().to_string();
            assert!(text.starts_with(&err), "{input} from text gave {text:?}, from a value {err:?}");
        }
        let duplicate = serde_json::from_str::<Attributes>(r#"{"a": {"map": {"x": {"int": "1"}, "x": {"int": "2"}}}}"#);
        assert!(duplicate.unwrap_err().to_string().contains("attribute \"a.x\": duplicate key"));
        let nested = serde_json::from_str::<Attributes>(r#"{"a": {"list": [{"map": {"k": {"int": []}}}]}}"#);
        assert!(nested.unwrap_err().to_string().contains("attribute \"a[0].k\": invalid int []: expected a string"));
    }

    #[test]
    fn text_parses_as_the_json_value_does() {
        // Escaped and plain strings, bare numbers (exact digits kept), every type, nested.
        let text = r#"{"s": {"string": "a\"b\u00e9\n"}, "p": {"string": "plain"}, "i": {"int": 42},
            "d": {"decimal": 123456789012345678901234567890.5}, "f": {"float": 1.5}, "n": {"null": true},
            "b": {"bool": true}, "l": {"list": [{"int": "-7"}, {"map": {"k": {"bytes": "AAE="}}}]},
            "t": {"timestamp": "2026-01-01T00:00:00Z"}}"#;
        let from_text: Attributes = serde_json::from_str(text).unwrap();
        let from_value: Attributes = serde_json::from_value(serde_json::from_str(text).unwrap()).unwrap();
        assert_eq!(from_text, from_value);
        assert_eq!(from_text["s"], Value::string("a\"b\u{e9}\n"));
        assert_eq!(from_text["i"], Value::Int(42));
        assert_eq!(from_text["d"], Value::decimal("123456789012345678901234567890.5").unwrap());
        assert_eq!(from_text["f"], Value::float(1.5).unwrap());
        assert!(serde_json::from_str::<Attributes>(r#"{"s": {"string": 5}}"#).is_err());
        // Integers past 64 bits, from text and from a JSON value alike.
        for text in
            [r#"{"d": {"decimal": 123456789012345678901234567890}}"#, r#"{"d": {"decimal": -18446744073709551617}}"#]
        {
            let from_text: Attributes = serde_json::from_str(text).unwrap();
            let from_value: Attributes = serde_json::from_value(serde_json::from_str(text).unwrap()).unwrap();
            assert_eq!(from_text, from_value, "{text}");
        }
        for text in [r#"{"i": {"int": 18446744073709551616}}"#, r#"{"i": {"int": -9223372036854775809}}"#] {
            let from_value = serde_json::from_value::<Attributes>(serde_json::from_str(text).unwrap());
            let message = from_value.unwrap_err().to_string();
            assert!(message.contains("attribute \"i\"") && message.contains("out of range"), "{text}: {message}");
        }
        // An empty map key names no attribute, as a path of none.
        let empty = serde_json::from_str::<Value>(r#"{"map": {"": {"map": {"b": {"int": "x"}}}}}"#).unwrap_err();
        assert!(empty.to_string().starts_with("attribute \"b\": invalid int"), "{empty}");
    }

    #[test]
    fn plain_json_keeps_exact_digits() {
        let a = Attributes::from_plain(&serde_json::from_str(
            r#"{"size": 4, "price": 12.50, "big": 123456789012345678901234567890, "tags": ["a", null], "ok": true}"#,
        ).unwrap())
        .unwrap();
        assert_eq!(a["size"], Value::Int(4));
        assert_eq!(a["price"], Value::decimal("12.5").unwrap());
        assert_eq!(a["big"], Value::decimal("123456789012345678901234567890").unwrap());
        assert_eq!(a["tags"], Value::List(vec![Value::string("a"), Value::Null]));
        assert_eq!(
            a.to_plain().to_string(),
            r#"{"big":123456789012345678901234567890,"ok":true,"price":12.5,"size":4,"tags":["a",null]}"#
        );
        assert!(Attributes::from_plain(&json!([1])).is_err());
        assert!(Attributes::from_plain(&json!({"_x": 1})).is_err());
    }

    #[test]
    fn depth_counts_nesting() {
        assert_eq!(Value::Int(1).depth(), 1);
        assert_eq!(Value::List(vec![Value::List(vec![])]).depth(), 2);
    }
}
