//! From HTTP back to `outpost_api::Error`: a server's error body keeps its kind, anything else takes
//! the kind of its status, and a server that cannot be reached is `Unavailable`.

use std::error::Error as _;

use outpost_api::{Error, ErrorKind, WriteResult};
use serde::Deserialize;

/// The error of a non-2xx response: the body when it is ours (`{"error": kind, "message": ...}`),
/// else the kind of the status with whatever the body says.
pub(crate) fn from_response(status: u16, body: &[u8], what: &str) -> Error {
    if let Ok(error) = serde_json::from_slice::<Error>(body) {
        return error;
    }
    let kind = ErrorKind::from_http_status(status);
    /// An error body of another version or a proxy that still carries a message.
    #[derive(Deserialize)]
    struct Foreign {
        message: String,
    }
    let detail = match serde_json::from_slice::<Foreign>(body) {
        Ok(foreign) => foreign.message,
        Err(_) => snippet(body),
    };
    if detail.is_empty() {
        Error::new(kind, format!("{what}: HTTP {status}"))
    } else {
        Error::new(kind, format!("{what}: HTTP {status}: {detail}"))
    }
}

/// The start of a body that is not ours, as text on one line.
fn snippet(body: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX)]);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if body.len() > MAX {
        format!("{text}…")
    } else {
        text
    }
}

/// A failure to talk to the server at all (connect, timeout, connection cut): `Unavailable`, with
/// the URL and the underlying cause.
pub(crate) fn from_transport(error: &reqwest::Error, what: &str) -> Error {
    let cause = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        format!("cannot connect: {}", causes(error))
    } else {
        causes(error)
    };
    Error::unavailable(format!("{what}: {cause}"))
}

/// The chain of causes of an error, innermost last, without reqwest's own repetition of the URL.
fn causes(error: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut source = error.source();
    while let Some(e) = source {
        parts.push(e.to_string());
        source = e.source();
    }
    if parts.is_empty() {
        parts.push(error.to_string());
    }
    parts.dedup();
    parts.join(": ")
}

/// A 2xx body that does not parse as the route's response type.
pub(crate) fn bad_body(error: &serde_json::Error, what: &str) -> Error {
    Error::internal(format!("{what}: the response is not what the API defines: {error}"))
}

/// One item of a bulk response: an error object (it has the key `"error"`) or a `WriteResult`.
pub(crate) fn batch_item(item: serde_json::Value, what: &str) -> Result<WriteResult, Error> {
    if item.get("error").is_some() {
        let status_kind = item.get("error").and_then(|k| serde_json::from_value::<ErrorKind>(k.clone()).ok());
        return Err(serde_json::from_value::<Error>(item.clone()).unwrap_or_else(|_| {
            let message = item.get("message").and_then(|m| m.as_str()).unwrap_or("no message").to_owned();
            Error::new(status_kind.unwrap_or(ErrorKind::Internal), message)
        }));
    }
    serde_json::from_value(item).map_err(|e| bad_body(&e, what))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const REV: &str = "2-0123456789abcdef0123456789abcdef";

    /// (status, body, expected kind, text the message contains)
    fn check(cases: &[(u16, &str, ErrorKind, &str)]) {
        for (status, body, kind, text) in cases {
            let e = from_response(*status, body.as_bytes(), "GET http://h/x");
            assert_eq!(e.kind, *kind, "{status} {body}");
            assert!(e.message.contains(text), "{status} {body}: {e}");
        }
    }

    #[test]
    fn our_error_bodies_keep_their_kind_and_message() {
        let conflict = json!({"error": "conflict", "message": "stale", "current_rev": REV}).to_string();
        let e = from_response(409, conflict.as_bytes(), "PUT x");
        assert_eq!((e.kind, e.message.as_str()), (ErrorKind::Conflict, "stale"));
        assert_eq!(e.current_rev, Some(REV.parse().unwrap()));
        for kind in ErrorKind::ALL {
            let body = json!({"error": kind, "message": "m"}).to_string();
            let e = from_response(kind.http_status(), body.as_bytes(), "x");
            assert_eq!((e.kind, e.message.as_str(), e.current_rev), (kind, "m", None));
        }
        // The body wins over the status: a kind is the server's own word.
        check(&[(400, r#"{"error":"too_large","message":"big"}"#, ErrorKind::TooLarge, "big")]);
    }

    #[test]
    fn other_bodies_take_the_kind_of_their_status() {
        check(&[
            (404, "", ErrorKind::NotFound, "GET http://h/x: HTTP 404"),
            (400, "Failed to deserialize query string: limit", ErrorKind::InvalidInput, "limit"),
            (405, "", ErrorKind::InvalidInput, "HTTP 405"),
            (413, "length limit exceeded", ErrorKind::TooLarge, "length limit"),
            (502, "<html><body>Bad   Gateway</body></html>", ErrorKind::Unavailable, "Bad Gateway"),
            (504, "", ErrorKind::Unavailable, "504"),
            (500, "oops", ErrorKind::Internal, "oops"),
            (418, "", ErrorKind::InvalidInput, "418"),
            (409, r#"{"error":"brand_new_kind","message":"later"}"#, ErrorKind::Conflict, "later"),
            (503, r#"{"message":"draining"}"#, ErrorKind::Unavailable, "draining"),
        ]);
        let long = "x".repeat(1000);
        let e = from_response(500, long.as_bytes(), "x");
        assert!(e.message.len() < 300 && e.message.ends_with('…'), "{e}");
    }

    #[test]
    fn batch_items_are_results_or_errors() {
        let ok = batch_item(json!({"table": "t", "id": "x", "rev": REV}), "bulk").unwrap();
        assert_eq!((ok.table.as_str(), ok.id.as_str(), ok.rev.to_string()), ("t", "x", REV.to_owned()));
        let e = batch_item(json!({"error": "conflict", "message": "stale", "current_rev": REV}), "bulk").unwrap_err();
        assert_eq!((e.kind, e.current_rev), (ErrorKind::Conflict, Some(REV.parse().unwrap())));
        let e = batch_item(json!({"error": "invalid_input"}), "bulk").unwrap_err();
        assert_eq!((e.kind, e.message.as_str()), (ErrorKind::InvalidInput, "no message"));
        let e = batch_item(json!({"error": "unheard_of", "message": "m"}), "bulk").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Internal);
        assert_eq!(batch_item(json!({"id": "x"}), "bulk").unwrap_err().kind, ErrorKind::Internal);
    }
}
