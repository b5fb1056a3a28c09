//! URLs: the server base URL, database locators (`http(s)://host:port/dbs/NAME`) and the
//! percent-encoded path segments of docs/HTTP.md.

use outpost_api::{names, Error, Result};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::Url;

/// Everything but RFC 3986 unreserved characters is encoded, so `/`, `?`, `#`, `%`, `\` and spaces in
/// an id stay inside its one segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// One path segment, percent-encoded.
pub(crate) fn segment(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

/// A segment that a URL cannot carry: empty, or a dot segment, which URL parsers remove from a path
/// whether written plainly or percent-encoded (WHATWG URL; `%2e` counts as `.`).
fn inexpressible(text: &str) -> bool {
    matches!(text, "" | "." | "..")
}

/// The path segment of a table name. Names a path cannot carry are invalid table names anyway; they
/// get the same error as from a local database.
pub(crate) fn table_segment(name: &str) -> Result<String> {
    if inexpressible(name) {
        names::validate_table_name(name)?;
    }
    Ok(segment(name))
}

/// The path segment of a record id: any UTF-8 id, percent-encoded. The empty id is invalid (as
/// locally); the ids `.` and `..` have no path form (URL parsers remove dot segments, encoded or not):
/// `None`, and they travel in the query of the `/record?id=` routes instead.
pub(crate) fn record_segment(id: &str) -> Result<Option<String>> {
    if id.is_empty() {
        names::validate_record_id(id, names::MAX_ID_BYTES)?;
    }
    Ok((!inexpressible(id)).then(|| segment(id)))
}

/// The path segment of a database name, validated (`^[a-z][a-z0-9_-]{0,62}$`).
pub(crate) fn db_segment(name: &str) -> Result<String> {
    names::validate_db_name(name)?;
    Ok(segment(name))
}

/// A server's base URL, checked and without a trailing slash: `http(s)://host[:port][/prefix]`.
pub fn base_url(text: &str) -> Result<String> {
    let url = parse_http(text)?;
    let mut base = url.as_str().to_owned();
    while base.ends_with('/') {
        base.pop();
    }
    Ok(base)
}

/// A URL with an http or https scheme, a host, and no query or fragment.
fn parse_http(text: &str) -> Result<Url> {
    let url = Url::parse(text).map_err(|e| Error::invalid(format!("invalid URL {text:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::invalid(format!("invalid URL {text:?}: the scheme must be http or https")));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Error::invalid(format!("invalid URL {text:?}: it names no host")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::invalid(format!(
            "invalid URL {:?}: credentials do not belong in a URL, where `ps` and logs show them; give the token \
             in OUTPOST_TOKEN or a token file",
            without_credentials(&url)
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::invalid(format!("invalid URL {text:?}: a server URL takes no query or fragment")));
    }
    Ok(url)
}

/// `url` with its user name and password left out, for messages.
fn without_credentials(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

/// A database locator split into the server's base URL and the database name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Locator {
    /// The server's base URL, without a trailing slash (`http://127.0.0.1:7070`).
    pub base: String,
    /// The database name.
    pub name: String,
}

impl Locator {
    /// Parse `http(s)://host[:port][/prefix]/dbs/NAME` (a trailing slash is allowed). InvalidInput
    /// names what is wrong: the scheme, the host, the `/dbs/NAME` ending, or the name itself.
    pub fn parse(text: &str) -> Result<Locator> {
        let url = parse_http(text)?;
        let path = url.path().strip_suffix('/').unwrap_or(url.path());
        let expected =
            || Error::invalid(format!("invalid database URL {text:?}: expected http(s)://host:port/dbs/NAME"));
        let (prefix, name) = path.rsplit_once('/').ok_or_else(expected)?;
        let prefix = prefix.strip_suffix("/dbs").ok_or_else(expected)?;
        names::validate_db_name(name).map_err(|e| e.context(format!("invalid database URL {text:?}")))?;
        let mut root = url.clone();
        root.set_path(prefix);
        Ok(Locator { base: base_url(root.as_str())?, name: name.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use outpost_api::ErrorKind;

    use super::*;

    #[test]
    fn locators_split_into_base_and_name() {
        let cases = [
            ("http://127.0.0.1:7070/dbs/field", "http://127.0.0.1:7070", "field"),
            ("https://example.org/dbs/a-b_1/", "https://example.org", "a-b_1"),
            ("http://[::1]:80/dbs/x", "http://[::1]", "x"),
            ("http://h:8/outpost/v1/dbs/store1", "http://h:8/outpost/v1", "store1"),
        ];
        for (text, base, name) in cases {
            let locator = Locator::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!((locator.base.as_str(), locator.name.as_str()), (base, name), "{text}");
        }
    }

    #[test]
    fn bad_locators_are_invalid_input_with_a_reason() {
        let cases = [
            ("ftp://h/dbs/x", "scheme"),
            ("http:///dbs/x", "host"),
            ("not a url", "invalid URL"),
            ("http://h:1/x", "expected http(s)://host:port/dbs/NAME"),
            ("http://h:1/dbs/", "expected"),
            ("http://h:1/dbs", "expected"),
            ("http://h:1/dbs/Field", "invalid database name"),
            ("http://h:1/dbs/..%2Fx", "invalid database name"),
            ("http://h:1/dbs/a%20b", "invalid database name"),
            ("http://h:1/dbs/x?y=1", "query"),
            ("http://h:1/dbs/x#f", "fragment"),
            ("http://h:1/dbs/x/tables", "expected"),
        ];
        for (text, reason) in cases {
            let e = Locator::parse(text).expect_err(text);
            assert_eq!(e.kind, ErrorKind::InvalidInput, "{text}");
            assert!(e.message.contains(reason), "{text}: {e}");
        }
    }

    #[test]
    fn base_urls_lose_their_trailing_slash() {
        assert_eq!(base_url("http://h:1/").unwrap(), "http://h:1");
        assert_eq!(base_url("http://h:1/p/").unwrap(), "http://h:1/p");
        assert_eq!(base_url("HTTP://H:1").unwrap(), "http://h:1");
        assert_eq!(base_url("h:1").unwrap_err().kind, ErrorKind::InvalidInput);
    }

    #[test]
    fn ids_are_one_encoded_segment() {
        let cases = [
            ("x", "x"),
            ("a/b\\c", "a%2Fb%5Cc"),
            ("?x=1&y=2#frag", "%3Fx%3D1%26y%3D2%23frag"),
            ("%2e%2e%2f", "%252e%252e%252f"),
            (" leading and trailing ", "%20leading%20and%20trailing%20"),
            ("'; DROP TABLE records; --", "%27%3B%20DROP%20TABLE%20records%3B%20--"),
            ("😀 é", "%F0%9F%98%80%20%C3%A9"),
            ("a.b-c_d~e", "a.b-c_d~e"),
            ("...", "..."),
        ];
        for (id, encoded) in cases {
            assert_eq!(record_segment(id).unwrap().as_deref(), Some(encoded), "{id:?}");
            // The encoded segment survives URL parsing unchanged and decodes back to the id.
            let url = Url::parse(&format!("http://h/t/{encoded}")).unwrap();
            let last = url.path_segments().unwrap().next_back().unwrap().to_owned();
            assert_eq!(last, encoded);
            let decoded = percent_encoding::percent_decode_str(&last).decode_utf8().unwrap();
            assert_eq!(decoded, id);
        }
    }

    #[test]
    fn segments_a_path_cannot_carry_are_invalid_input() {
        assert!(record_segment("").unwrap_err().message.contains("empty"));
        for id in [".", ".."] {
            assert_eq!(record_segment(id).unwrap(), None, "{id}");
        }
        for name in ["", ".", ".."] {
            assert_eq!(table_segment(name).unwrap_err().kind, ErrorKind::InvalidInput, "{name:?}");
        }
        // Other invalid table names are left to the server, which answers as a local database would.
        assert_eq!(table_segment("a/b").unwrap(), "a%2Fb");
        assert_eq!(db_segment("../x").unwrap_err().kind, ErrorKind::InvalidInput);
    }
}
