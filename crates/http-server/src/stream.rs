//! Streamed JSON for responses that can be large (a changes page, revisions with their bodies): the
//! items are serialised a chunk at a time as the client reads, so the server never holds the whole
//! encoded response, and off the async workers.

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use outpost_api::{Change, RevisionEvent, RevisionJson};

/// About how many bytes one chunk of the stream carries.
const CHUNK: usize = 64 * 1024;

/// An element of a streamed array, written as its JSON.
pub(crate) trait Element: Send + 'static {
    fn write(&self, out: &mut String) -> serde_json::Result<()>;
}

/// A pass reads one entry of the feed and one revision per record: written directly
/// (`outpost_api`'s `write_json`, byte for byte serde's JSON), without serde's machinery.
impl Element for Change {
    fn write(&self, out: &mut String) -> serde_json::Result<()> {
        self.write_json(out);
        Ok(())
    }
}

impl Element for RevisionJson {
    fn write(&self, out: &mut String) -> serde_json::Result<()> {
        self.write_json(out);
        Ok(())
    }
}

impl Element for RevisionEvent {
    fn write(&self, out: &mut String) -> serde_json::Result<()> {
        out.push_str(&serde_json::to_string(self)?);
        Ok(())
    }
}

/// What is left to send of a streamed array.
struct Rest<T> {
    items: std::iter::Peekable<std::vec::IntoIter<T>>,
    prefix: Option<String>,
    suffix: &'static str,
}

impl<T: Element> Rest<T> {
    /// The next chunk: the prefix if not yet sent, then items until the chunk is full, then the
    /// suffix after the last item. `None` once everything was sent.
    fn chunk(&mut self, done: &mut bool) -> Option<std::io::Result<Bytes>> {
        if *done {
            return None;
        }
        let mut buf = self.prefix.take().unwrap_or_default();
        while buf.len() < CHUNK {
            let Some(item) = self.items.next() else {
                buf.push_str(self.suffix);
                *done = true;
                break;
            };
            if let Err(e) = item.write(&mut buf) {
                *done = true;
                return Some(Err(std::io::Error::other(e)));
            }
            if self.items.peek().is_some() {
                buf.push(',');
            }
        }
        Some(Ok(Bytes::from(buf)))
    }
}

/// `prefix`, then `items` as a JSON array's elements separated by commas, then `suffix`. Each chunk
/// is encoded on the blocking pool (encoding megabytes of bodies is CPU work that would otherwise
/// hold an async worker, and with it the I/O of every other connection); no thread waits for a
/// slow reader between chunks.
pub(crate) fn json_array<T: Element>(prefix: String, items: Vec<T>, suffix: &'static str) -> Response {
    let rest = Rest { items: items.into_iter().peekable(), prefix: Some(prefix), suffix };
    let chunks = futures_util::stream::unfold(Some((rest, false)), |state| async move {
        let (mut rest, mut done) = state?;
        let encoded = tokio::task::spawn_blocking(move || {
            let chunk = rest.chunk(&mut done);
            (chunk, rest, done)
        })
        .await;
        match encoded {
            Ok((Some(chunk), rest, done)) => Some((chunk, Some((rest, done)))),
            Ok((None, _, _)) => None,
            Err(e) => Some((Err(std::io::Error::other(e)), None)),
        }
    });
    let body = Body::from_stream(chunks);
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Element for String {
        fn write(&self, out: &mut String) -> serde_json::Result<()> {
            out.push_str(&serde_json::to_string(self)?);
            Ok(())
        }
    }

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
