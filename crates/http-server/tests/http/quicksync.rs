//! Quicksync files (SPEC §9, docs/HTTP.md): the manifest and published files of `<root>/<db>/`, whole
//! and by range (how a client resumes a download), and nothing outside that directory.

use axum::body::Body;
use axum::http::{Method, Request};
use futures_util::StreamExt;
use outpost_server::REQUEST_TIMEOUT;
use tower::ServiceExt;

use crate::support::{Reply, Server};

const MANIFEST: &[u8] = b"kind,db_uuid,start_seq,end_seq,prev_chain,end_chain,file,bytes,blake3\n";
const SECRET: &[u8] = b"a secret outside the database's quicksync directory";

/// Bytes whose every window differs from its neighbours, so a shifted range cannot pass for the right one.
fn file_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[track_caller]
fn header<'a>(reply: &'a Reply, name: &str) -> &'a str {
    let value = reply.headers.get(name).unwrap_or_else(|| panic!("no {name} in {:?}", reply.headers));
    value.to_str().expect("ASCII header")
}

/// A server with database `a` whose directory holds the manifest and `snap.oqs` (`len` bytes).
async fn published(len: usize) -> (Server, Vec<u8>) {
    let server = Server::with_quicksync().await;
    let data = file_bytes(len);
    server.publish("a/manifest.csv", MANIFEST);
    server.publish("a/snap.oqs", &data);
    (server, data)
}

async fn get_range(server: &Server, uri: &str, range: &str) -> Reply {
    server.call(Method::GET, uri).header("range", range).send().await
}

#[tokio::test]
async fn the_manifest_and_a_file_are_served_whole() {
    let (server, data) = published(1000).await;
    let manifest = server.get("/dbs/a/quicksync/manifest.csv").await;
    assert_eq!(manifest.status, 200);
    assert_eq!(&manifest.body[..], MANIFEST);
    assert_eq!(header(&manifest, "content-type"), "text/csv; charset=utf-8");
    assert_eq!(header(&manifest, "cache-control"), "no-cache");
    assert_eq!(header(&manifest, "content-length"), MANIFEST.len().to_string());

    let file = server.get("/dbs/a/quicksync/snap.oqs").await;
    assert_eq!(file.status, 200);
    assert_eq!(file.body, data);
    assert_eq!(header(&file, "content-type"), "application/octet-stream");
    assert_eq!(header(&file, "cache-control"), "public, max-age=31536000, immutable");
    assert_eq!(header(&file, "content-length"), "1000");
    assert_eq!(header(&file, "accept-ranges"), "bytes");
    assert!(file.headers.get("content-range").is_none());
    let modified = header(&file, "last-modified");

    // HEAD: the same head, no body.
    let head = server.call(Method::HEAD, "/dbs/a/quicksync/snap.oqs").send().await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(header(&head, "content-length"), "1000");
    assert_eq!(header(&head, "last-modified"), modified);
    assert_eq!(header(&head, "cache-control"), "public, max-age=31536000, immutable");

    // `no-cache` means revalidate: an unchanged manifest is 304 without a body.
    let since = header(&manifest, "last-modified");
    let again =
        server.call(Method::GET, "/dbs/a/quicksync/manifest.csv").header("if-modified-since", since).send().await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(header(&again, "cache-control"), "no-cache");
}

#[tokio::test]
async fn a_range_is_answered_206_with_exactly_those_bytes() {
    let (server, data) = published(1000).await;
    let part = get_range(&server, "/dbs/a/quicksync/snap.oqs", "bytes=10-19").await;
    assert_eq!(part.status, 206);
    assert_eq!(part.body, data[10..20]);
    assert_eq!(header(&part, "content-range"), "bytes 10-19/1000");
    assert_eq!(header(&part, "content-length"), "10");
    assert_eq!(header(&part, "content-type"), "application/octet-stream");
    assert_eq!(header(&part, "cache-control"), "public, max-age=31536000, immutable");

    let suffix = get_range(&server, "/dbs/a/quicksync/snap.oqs", "bytes=-5").await;
    assert_eq!((suffix.status.as_u16(), &suffix.body[..]), (206, &data[995..]));
    assert_eq!(header(&suffix, "content-range"), "bytes 995-999/1000");

    let head = server.call(Method::HEAD, "/dbs/a/quicksync/snap.oqs").header("range", "bytes=10-19").send().await;
    assert_eq!((head.status.as_u16(), head.body.len()), (206, 0));
    assert_eq!(header(&head, "content-range"), "bytes 10-19/1000");

    let manifest = get_range(&server, "/dbs/a/quicksync/manifest.csv", "bytes=0-3").await;
    assert_eq!((manifest.status.as_u16(), &manifest.body[..]), (206, &b"kind"[..]));
    assert_eq!(header(&manifest, "content-type"), "text/csv; charset=utf-8");
}

#[tokio::test]
async fn a_resumed_download_asks_for_the_rest() {
    let (server, data) = published(200_000).await;
    let uri = "/dbs/a/quicksync/snap.oqs";
    let modified = header(&server.call(Method::HEAD, uri).send().await, "last-modified").to_owned();
    // The first attempt broke off after 70,000 bytes; the client asks for the rest of the same file.
    let held = &data[..70_000];
    let rest = server.call(Method::GET, uri).header("range", "bytes=70000-").header("if-range", &modified).send().await;
    assert_eq!(rest.status, 206);
    assert_eq!(header(&rest, "content-range"), "bytes 70000-199999/200000");
    assert_eq!(header(&rest, "content-length"), "130000");
    assert!([held, &rest.body[..]].concat() == data, "the held part and the rest make the file");
    let plain = get_range(&server, uri, "bytes=70000-").await;
    assert_eq!(plain.status, 206);
    assert!(plain.body == rest.body, "without If-Range, the same rest");

    // A validator that no longer matches (the file was replaced since, or an entity tag, which this
    // server never sends): the whole file, never a splice of two versions.
    for stale in ["Thu, 01 Jan 1970 00:00:00 GMT", "\"some-etag\"", "W/\"weak\""] {
        let reply =
            server.call(Method::GET, uri).header("range", "bytes=70000-").header("if-range", stale).send().await;
        assert_eq!(reply.status, 200, "If-Range {stale}");
        assert!(reply.body == data, "If-Range {stale}: the whole file");
        assert!(reply.headers.get("content-range").is_none(), "If-Range {stale}");
    }
}

#[tokio::test]
async fn an_unsatisfiable_range_is_416_with_the_size() {
    let (server, _) = published(1000).await;
    for range in ["bytes=1000-", "bytes=5000-6000", "bytes=0-1,5-6"] {
        let reply = get_range(&server, "/dbs/a/quicksync/snap.oqs", range).await;
        reply.expect_error(416, "invalid_input");
        assert_eq!(header(&reply, "content-range"), "bytes */1000", "{range}");
    }
    // Resuming past the end of a file that has since changed: the whole (new) file, not a 416.
    let uri = "/dbs/a/quicksync/snap.oqs";
    let stale = "Thu, 01 Jan 1970 00:00:00 GMT";
    let reply = server.call(Method::GET, uri).header("range", "bytes=5000-").header("if-range", stale).send().await;
    assert_eq!((reply.status.as_u16(), reply.body.len()), (200, 1000));
}

#[tokio::test]
async fn a_missing_file_is_404() {
    let (server, _) = published(10).await;
    let body = server.get("/dbs/a/quicksync/snap-2.oqs").await.expect_error(404, "not_found");
    assert!(body["message"].as_str().unwrap().contains("snap-2.oqs"), "{body}");
    // A database that published nothing yet has no directory at all.
    server.call(Method::PUT, "/dbs/b").send().await.expect_status(201);
    server.get("/dbs/b/quicksync/manifest.csv").await.expect_error(404, "not_found");
    // A directory is not a file.
    std::fs::create_dir_all(server.quicksync_root().join("a/sub")).expect("directory");
    server.get("/dbs/a/quicksync/sub").await.expect_error(404, "not_found");
}

#[tokio::test]
async fn no_name_reaches_outside_the_directory() {
    let (server, _) = published(10).await;
    // One level up (the quicksync root), two levels up (the data directory), a subdirectory and a
    // hidden file: all readable by the server, none of them published files.
    server.publish("secret", SECRET);
    server.publish("a/sub/secret", SECRET);
    server.publish("a/.hidden", SECRET);
    std::fs::write(server.dir.path().join("secret"), SECRET).expect("write");
    let refused = [
        "..",
        "%2E%2E",
        ".hidden",
        "%2Ehidden",
        "a%2Fb",
        "sub%2Fsecret",
        "..%2Fsecret",
        "%2E%2E%2Fsecret",
        "..%2F..%2Fsecret",
        "..%5Csecret",
        "%2Fetc%2Fpasswd",
        "secret%00",
    ];
    for file in refused {
        server.get(&format!("/dbs/a/quicksync/{file}")).await.expect_error(400, "invalid_input");
    }
    // Paths that are not one segment match no route at all.
    for uri in ["/dbs/a/quicksync/../secret", "/dbs/a/quicksync/sub/secret", "/dbs/a/quicksync/"] {
        server.get(uri).await.expect_error(404, "not_found");
    }
    // Nor can the database name climb out.
    for db in ["..", "%2E%2E", "a%2F..", "A"] {
        server.get(&format!("/dbs/{db}/quicksync/secret")).await.expect_error(400, "invalid_input");
    }
    // Whatever the answer, it is never the secret.
    let every = refused.iter().map(|f| format!("/dbs/a/quicksync/{f}")).chain(["/dbs/a/quicksync/secret".into()]);
    for uri in every {
        let reply = server.get(&uri).await;
        assert!(reply.status.is_client_error(), "{uri}: {}", reply.status);
        assert!(!reply.body.windows(SECRET.len()).any(|w| w == SECRET), "{uri} served the secret");
    }
}

#[tokio::test]
async fn an_unknown_database_is_404_even_with_files_on_disk() {
    let (server, _) = published(10).await;
    server.publish("ghost/manifest.csv", MANIFEST);
    let body = server.get("/dbs/ghost/quicksync/manifest.csv").await.expect_error(404, "not_found");
    assert!(body["message"].as_str().unwrap().contains("ghost"), "{body}");
    // A deleted database's files stay on disk but are no longer served.
    server.call(Method::DELETE, "/dbs/a").send().await.expect_status(200);
    server.get("/dbs/a/quicksync/manifest.csv").await.expect_error(404, "not_found");
    server.get("/dbs/a/quicksync/snap.oqs").await.expect_error(404, "not_found");
}

#[tokio::test]
async fn without_a_root_nothing_is_served() {
    let server = Server::with_table().await;
    // Where a root would plausibly be: the data directory and `DIR/quicksync`.
    for dir in [server.dir.path().join("a"), server.dir.path().join("quicksync/a")] {
        std::fs::create_dir_all(&dir).expect("directory");
        std::fs::write(dir.join("manifest.csv"), MANIFEST).expect("write");
        std::fs::write(dir.join("snap.oqs"), SECRET).expect("write");
    }
    assert!(server.state.quicksync.is_none());
    for uri in ["/dbs/a/quicksync/manifest.csv", "/dbs/a/quicksync/snap.oqs"] {
        let body = server.get(uri).await.expect_error(404, "not_found");
        assert!(body["message"].as_str().unwrap().contains("--quicksync"), "{body}");
    }
}

// Paused time: the clock moves only when told, so the body is read "two request timeouts" after the
// head. The timeout layer bounds the time to the head; a download may take as long as it takes.
#[tokio::test(start_paused = true)]
async fn a_download_is_not_cut_by_the_request_timeout() {
    let (server, data) = published(1 << 20).await;
    let request = Request::get("/dbs/a/quicksync/snap.oqs").body(Body::empty()).expect("request");
    let response = server.app.clone().oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body().into_data_stream();
    let first = body.next().await.expect("a first chunk").expect("chunk");
    assert!(first.len() < data.len(), "the file comes in several chunks");
    let mut received = first.to_vec();
    tokio::time::advance(REQUEST_TIMEOUT * 2).await;
    while let Some(chunk) = body.next().await {
        received.extend_from_slice(&chunk.expect("no error past the request timeout"));
    }
    assert_eq!(received.len(), data.len(), "every byte arrives");
    assert!(received == data, "the file, unchanged");
}
