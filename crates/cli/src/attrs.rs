//! Attributes and field declarations from the command line: `--wire` (typed wire JSON), `--plain`
//! (plain JSON), `key=value` pairs, and `--field name:type[:required]`.

use std::io::Read;

use outpost_api::{Attributes, Error, FieldDecl, Result, ValueType};

/// Where a record body comes from on the command line.
#[derive(Clone, Debug, Default)]
pub struct AttributeArgs {
    /// A typed wire JSON object (`{"size": {"int": "4"}}`), or `-` / `@FILE`.
    pub wire: Option<String>,
    /// A plain JSON object (`{"size": 4}`), or `-` / `@FILE`.
    pub plain: Option<String>,
    /// `key=value` pairs.
    pub pairs: Vec<String>,
}

impl AttributeArgs {
    /// The attributes all sources give together. An attribute named by two sources is an error, so
    /// nothing is silently overridden.
    pub fn parse(&self) -> Result<Attributes> {
        let mut out = Attributes::new();
        let mut add = |from: &str, attrs: Attributes| -> Result<()> {
            for (name, value) in attrs.0 {
                if out.contains_key(&name) {
                    return Err(Error::invalid(format!("attribute {name:?} is given twice ({from})")));
                }
                out.insert(name, value);
            }
            Ok(())
        };
        if let Some(arg) = &self.wire {
            add("--wire", parse_wire(&read_source(arg, "--wire")?, "--wire")?)?;
        }
        if let Some(arg) = &self.plain {
            add("--plain", parse_plain(&read_source(arg, "--plain")?, "--plain")?)?;
        }
        for pair in &self.pairs {
            let (name, value) = parse_pair(pair)?;
            let one = serde_json::Value::Object([(name, value)].into_iter().collect());
            add("key=value", Attributes::from_plain(&one)?)?;
        }
        Ok(out)
    }
}

/// The text of an argument that may name stdin (`-`) or a file (`@FILE`).
fn read_source(arg: &str, flag: &str) -> Result<String> {
    if arg == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Error::invalid(format!("{flag} -: reading stdin: {e}")))?;
        Ok(text)
    } else if let Some(path) = arg.strip_prefix('@') {
        std::fs::read_to_string(path).map_err(|e| {
            let kind = if e.kind() == std::io::ErrorKind::NotFound {
                outpost_api::ErrorKind::NotFound
            } else {
                outpost_api::ErrorKind::InvalidInput
            };
            Error::new(kind, format!("{flag} @{path}: {e}"))
        })
    } else {
        Ok(arg.to_owned())
    }
}

/// Attributes in typed wire form (SPEC §3), given with `flag`; errors name the attribute path.
pub fn parse_wire(text: &str, flag: &str) -> Result<Attributes> {
    serde_json::from_str(text).map_err(|e| Error::invalid(format!("{flag}: {e}")))
}

/// Attributes from a plain JSON object given with `flag`.
pub fn parse_plain(text: &str, flag: &str) -> Result<Attributes> {
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| Error::invalid(format!("{flag}: not JSON: {e}")))?;
    Attributes::from_plain(&json).map_err(|e| e.context(flag))
}

/// One `key=value` pair: the value is plain JSON when it parses as JSON (`4`, `true`, `["a"]`,
/// `"quoted"`), else the text itself (`Ann`). The key is everything before the first `=`.
pub fn parse_pair(pair: &str) -> Result<(String, serde_json::Value)> {
    let (name, text) = pair.split_once('=').ok_or_else(|| Error::invalid(format!("{pair:?} is not key=value")))?;
    if name.is_empty() {
        return Err(Error::invalid(format!("{pair:?} has no attribute name before '='")));
    }
    let value = serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_owned()));
    Ok((name.to_owned(), value))
}

/// A field declaration `name:type[:required]`, e.g. `qty:int:required` or `note:string`.
pub fn parse_field(spec: &str) -> std::result::Result<(String, FieldDecl), String> {
    let mut parts = spec.split(':');
    let (Some(name), Some(ty)) = (parts.next(), parts.next()) else {
        return Err(format!("{spec:?}: expected name:type[:required]"));
    };
    if name.is_empty() {
        return Err(format!("{spec:?}: the field name is empty"));
    }
    let ty: ValueType = serde_json::from_value(serde_json::Value::String(ty.to_owned())).map_err(|_| {
        format!(
            "{spec:?}: unknown type {ty:?}; expected one of null, bool, int, float, decimal, string, bytes, \
             timestamp, list, map"
        )
    })?;
    let required = match (parts.next(), parts.next()) {
        (None, _) => false,
        (Some("required"), None) => true,
        _ => return Err(format!("{spec:?}: expected name:type or name:type:required")),
    };
    Ok((name.to_owned(), FieldDecl { ty, required }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_api::{ErrorKind, Value};
    use serde_json::json;

    fn pairs(items: &[&str]) -> Result<Attributes> {
        AttributeArgs { pairs: items.iter().map(|s| s.to_string()).collect(), ..Default::default() }.parse()
    }

    #[test]
    fn pair_values_are_plain_json_when_they_parse_else_text() {
        let cases: &[(&str, &str, serde_json::Value)] = &[
            ("size=4", "size", json!(4)),
            ("ok=true", "ok", json!(true)),
            ("tags=[\"a\"]", "tags", json!(["a"])),
            ("name=Ann", "name", json!("Ann")),
            ("quoted=\"4\"", "quoted", json!("4")),
            ("empty=", "empty", json!("")),
            ("eq=a=b", "eq", json!("a=b")),
            ("nothing=null", "nothing", json!(null)),
            ("spaced=hello world", "spaced", json!("hello world")),
        ];
        for (pair, name, value) in cases {
            let (n, v) = parse_pair(pair).unwrap();
            assert_eq!((n.as_str(), &v), (*name, value), "{pair}");
        }
        assert!(parse_pair("novalue").is_err());
        assert!(parse_pair("=x").is_err());
    }

    #[test]
    fn pairs_become_typed_attributes() {
        let a = pairs(&["size=4", "name=Ann", "price=12.50"]).unwrap();
        assert_eq!(a.get("size"), Some(&Value::Int(4)));
        assert_eq!(a.get("name"), Some(&Value::string("Ann")));
        assert_eq!(a.get("price"), Some(&Value::decimal("12.5").unwrap()));
    }

    #[test]
    fn sources_combine_and_may_not_overlap() {
        let args = AttributeArgs {
            wire: Some(r#"{"when": {"timestamp": "2026-01-01T00:00:00Z"}}"#.into()),
            plain: Some(r#"{"size": 4}"#.into()),
            pairs: vec!["name=Ann".into()],
        };
        let a = args.parse().unwrap();
        assert_eq!(a.len(), 3);
        assert!(matches!(a.get("when"), Some(Value::Timestamp(_))));

        let twice =
            AttributeArgs { plain: Some(r#"{"size": 4}"#.into()), pairs: vec!["size=5".into()], ..Default::default() };
        let e = twice.parse().unwrap_err();
        assert!(e.message.contains("\"size\" is given twice"), "{}", e.message);
        assert!(pairs(&["a=1", "a=2"]).is_err());
    }

    #[test]
    fn bad_input_is_invalid_and_says_where() {
        let cases: &[(AttributeArgs, &str)] = &[
            (AttributeArgs { wire: Some(r#"{"n": {"int": "x"}}"#.into()), ..Default::default() }, "\"n\""),
            (AttributeArgs { wire: Some(r#"{"n": 4}"#.into()), ..Default::default() }, "--wire"),
            (AttributeArgs { plain: Some("[1]".into()), ..Default::default() }, "object"),
            (AttributeArgs { plain: Some("{".into()), ..Default::default() }, "not JSON"),
            (AttributeArgs { pairs: vec!["_sys=1".into()], ..Default::default() }, "reserved"),
        ];
        for (args, needle) in cases {
            let e = args.parse().unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidInput, "{args:?}");
            assert!(e.message.contains(needle), "{args:?}: {}", e.message);
        }
    }

    #[test]
    fn a_missing_file_source_is_not_found() {
        let args = AttributeArgs { plain: Some("@/nonexistent/body.json".into()), ..Default::default() };
        assert_eq!(args.parse().unwrap_err().kind, ErrorKind::NotFound);
    }

    #[test]
    fn field_declarations_parse() {
        assert_eq!(
            parse_field("qty:int:required").unwrap(),
            ("qty".into(), FieldDecl { ty: ValueType::Int, required: true })
        );
        assert_eq!(
            parse_field("note:string").unwrap(),
            ("note".into(), FieldDecl { ty: ValueType::String, required: false })
        );
        for bad in ["qty", "qty:integer", ":int", "qty:int:maybe", "qty:int:required:x"] {
            assert!(parse_field(bad).is_err(), "{bad}");
        }
    }
}
