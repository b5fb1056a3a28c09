//! Reading the typed wire form (SPEC §3): values and attributes, canonicalised, every refusal naming
//! the attribute path.

use std::borrow::Cow;
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::value::{path_error, Path};
use crate::{Attributes, Value, ValueType};

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ValueSeed { path: &Path::Root }.deserialize(d)
    }
}

// Parsing is on the path of every replicated body (a fetched page, a quicksync file) and every write
// over HTTP: the seeds below take a value's type name and text without copying them where the JSON
// lets them be borrowed, and allocate only what the value keeps.

/// Deserialises one wire value, knowing its attribute path for error messages.
struct ValueSeed<'p> {
    path: &'p Path<'p>,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        expecting_value(self.path, f)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let err = |m: String| de::Error::custom(path_error(self.path, m));
        let ty = type_of(map.next_key::<TypeName>()?, self.path).map_err(de::Error::custom)?;
        let value = match ty {
            ValueType::List => map.next_value_seed(ListSeed { path: self.path })?,
            ValueType::Map => Value::Map(map.next_value_seed(MapSeed { path: self.path, attributes: false })?),
            ty => match scalar(ty, map.next_value::<Scalar<'_>>()?, self.path).map_err(de::Error::custom)? {
                Parsed::Text(text) => Value::String(text.into_owned()),
                Parsed::Value(value) => value,
            },
        };
        if map.next_key::<de::IgnoredAny>()?.is_some() {
            return Err(err("a value is an object with exactly one key naming its type".into()));
        }
        Ok(value)
    }
}

/// What a typed value at `path` was expected to be.
fn expecting_value(path: &Path<'_>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if path.is_root() {
        f.write_str("a typed value such as {\"int\": \"5\"}")
    } else {
        write!(f, "a typed value such as {{\"int\": \"5\"}} at attribute {:?}", path.to_string())
    }
}

/// A typed value's type from its one key (`None`: the object was empty).
fn type_of(name: Option<TypeName>, path: &Path<'_>) -> Result<ValueType, String> {
    let name =
        name.ok_or_else(|| path_error(path, "empty object: a value is an object with one key naming its type"))?;
    name.0.map_err(|other| {
        path_error(
            path,
            format!(
                "unknown value type {other:?}: expected one of null, bool, int, float, decimal, string, bytes, \
                 timestamp, list, map"
            ),
        )
    })
}

/// A scalar value as read: a string's text (borrowed from the input where the JSON lets it be), or
/// any other scalar's value.
enum Parsed<'de> {
    Text(Cow<'de, str>),
    Value(Value),
}

/// A scalar of type `ty` (not list or map) from the JSON after its type name, canonicalised; the
/// error names the attribute at `path`.
fn scalar<'de>(ty: ValueType, json: Scalar<'de>, path: &Path<'_>) -> Result<Parsed<'de>, String> {
    let err = |m: String| path_error(path, m);
    Ok(Parsed::Value(match ty {
        ValueType::Null => match json.json() {
            serde_json::Value::Bool(true) => Value::Null,
            other => return Err(err(format!("invalid null {other}: write {{\"null\": true}}"))),
        },
        ValueType::Bool => match json.json() {
            serde_json::Value::Bool(b) => Value::Bool(b),
            other => return Err(err(format!("invalid bool {other}: expected true or false"))),
        },
        ty => {
            // Numbers are carried as strings; a bare JSON number is accepted for convenience.
            let text = match json {
                Scalar::Text(s) => s,
                Scalar::Json(serde_json::Value::Number(n)) if ty != ValueType::String && ty != ValueType::Bytes => {
                    Cow::Owned(n.to_string())
                }
                other => return Err(err(format!("invalid {ty} {}: expected a string", other.json()))),
            };
            match ty {
                ValueType::String => return Ok(Parsed::Text(text)),
                _ => Value::parse_typed(ty, &text).map_err(err)?,
            }
        }
    }))
}

/// A value's one key: its type, or the unknown name it had.
struct TypeName(Result<ValueType, String>);

impl<'de> Deserialize<'de> for TypeName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Name;
        impl Visitor<'_> for Name {
            type Value = TypeName;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value type name")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<TypeName, E> {
                Ok(TypeName(match name {
                    "null" => Ok(ValueType::Null),
                    "bool" => Ok(ValueType::Bool),
                    "int" => Ok(ValueType::Int),
                    "float" => Ok(ValueType::Float),
                    "decimal" => Ok(ValueType::Decimal),
                    "string" => Ok(ValueType::String),
                    "bytes" => Ok(ValueType::Bytes),
                    "timestamp" => Ok(ValueType::Timestamp),
                    "list" => Ok(ValueType::List),
                    "map" => Ok(ValueType::Map),
                    other => Err(other.to_owned()),
                }))
            }
        }
        d.deserialize_str(Name)
    }
}

/// A scalar value's JSON: text borrowed from the input when it can be, anything else as JSON (for
/// a number, or for the error message that names what was sent).
enum Scalar<'de> {
    Text(Cow<'de, str>),
    Json(serde_json::Value),
}

impl Scalar<'_> {
    fn json(self) -> serde_json::Value {
        match self {
            Scalar::Text(s) => serde_json::Value::String(s.into_owned()),
            Scalar::Json(v) => v,
        }
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Any;
        impl<'de> Visitor<'de> for Any {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Text(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Text(Cow::Owned(s)))
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Json(serde_json::Value::Bool(b)))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Json(n.into()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Json(n.into()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Json(n.into()))
            }
            // Integers past 64 bits, from a `serde_json::Value` (with exact number digits).
            fn visit_i128<E: de::Error>(self, n: i128) -> Result<Scalar<'de>, E> {
                Deserialize::deserialize(de::value::I128Deserializer::<E>::new(n)).map(Scalar::Json)
            }
            fn visit_u128<E: de::Error>(self, n: u128) -> Result<Scalar<'de>, E> {
                Deserialize::deserialize(de::value::U128Deserializer::<E>::new(n)).map(Scalar::Json)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Json(serde_json::Value::Null))
            }
            fn visit_none<E: de::Error>(self) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Json(serde_json::Value::Null))
            }
            // Arrays, objects and (with exact number digits) numbers: as serde_json reads them.
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Scalar<'de>, A::Error> {
                Deserialize::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(Scalar::Json)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Scalar<'de>, A::Error> {
                Deserialize::deserialize(de::value::MapAccessDeserializer::new(map)).map(Scalar::Json)
            }
        }
        d.deserialize_any(Any)
    }
}

struct ListSeed<'p> {
    path: &'p Path<'p>,
}

impl<'de> DeserializeSeed<'de> for ListSeed<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ListSeed<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a JSON array of typed values at attribute {:?}", self.path.to_string())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        loop {
            match seq.next_element_seed(ValueSeed { path: &Path::Index(self.path, items.len()) })? {
                Some(v) => items.push(v),
                None => return Ok(Value::List(items)),
            }
        }
    }
}

struct MapSeed<'p> {
    path: &'p Path<'p>,
    /// Top-level attribute maps also check attribute names.
    attributes: bool,
}

impl<'de> DeserializeSeed<'de> for MapSeed<'_> {
    type Value = BTreeMap<String, Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for MapSeed<'_> {
    type Value = BTreeMap<String, Value>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.attributes {
            f.write_str("a JSON object of attribute name → typed value")
        } else {
            write!(f, "a JSON object of typed values at attribute {:?}", self.path.to_string())
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            if self.attributes {
                crate::names::validate_attribute_name(&key).map_err(|e| de::Error::custom(e.message))?;
            }
            let value = map.next_value_seed(ValueSeed { path: &Path::Key(self.path, &key) })?;
            match out.entry(key) {
                Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                Entry::Occupied(held) => {
                    return Err(de::Error::custom(path_error(&Path::Key(self.path, held.key()), "duplicate key")))
                }
            }
        }
        Ok(out)
    }
}

/// Attributes from wire JSON whose names are not checked (a [`crate::Body`] made from attributes
/// that may not be valid ones, read back to be refused with a precise message).
pub(crate) fn attributes_unchecked(text: &str) -> serde_json::Result<Attributes> {
    let mut d = serde_json::Deserializer::from_str(text);
    let map = MapSeed { path: &Path::Root, attributes: false }.deserialize(&mut d)?;
    d.end()?;
    Ok(Attributes(map))
}

impl<'de> Deserialize<'de> for Attributes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        MapSeed { path: &Path::Root, attributes: true }.deserialize(d).map(Attributes)
    }
}
