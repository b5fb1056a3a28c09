//! Streamed JSON for responses that can be large (a changes page, revisions with their bodies): the
//! items are serialised a chunk at a time as the client reads, so the server never holds the whole
//! encoded response.

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// About how many bytes one chunk of the stream carries.
const CHUNK: usize = 64 * 1024;

/// `prefix`, then `items` as a JSON array's elements separated by commas, then `suffix`.
pub(crate) fn json_array<T: Serialize + Send + 'static>(
    prefix: String,
    items: Vec<T>,
    suffix: &'static str,
) -> Response {
    let mut items = items.into_iter().peekable();
    let mut prefix = Some(prefix);
    let mut done = false;
    let chunks = std::iter::from_fn(move || {
        if done {
            return None;
        }
        let mut buf = prefix.take().map(String::into_bytes).unwrap_or_default();
        while buf.len() < CHUNK {
            let Some(item) = items.next() else {
                buf.extend_from_slice(suffix.as_bytes());
                done = true;
                break;
            };
            if let Err(e) = serde_json::to_writer(&mut buf, &item) {
                return Some(Err(std::io::Error::other(e)));
            }
            if items.peek().is_some() {
                buf.push(b',');
            }
        }
        Some(Ok(Bytes::from(buf)))
    });
    let body = Body::from_stream(futures_util::stream::iter(chunks));
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_streamed_array_is_the_same_json() {
        for n in [0usize, 1, 2, 5000] {
            let items: Vec<String> = (0..n).map(|i| format!("item {i} {}", "x".repeat(40))).collect();
            let response = json_array("{\"n\":1,\"items\":[".into(), items.clone(), "]}");
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
            let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(json, serde_json::json!({"n": 1, "items": items}), "{n} items");
        }
    }
}
