//! Upload sessions: chunks with Content-Range, out-of-order chunks, streamed chunked PATCH,
//! PUT with and without a last chunk, status, cancel, unknown sessions.

mod common;

use common::{sha256, Body, Server};
use http::{Method, StatusCode};

fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test]
async fn session_headers_and_status() {
    let s = Server::start().await;
    let r = s
        .send(Method::POST, "/v2/u/blobs/uploads/", &[], Body::Empty)
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let location = r.header("location").to_owned();
    let uuid = r.header("docker-upload-uuid").to_owned();
    assert_eq!(location, format!("/v2/u/blobs/uploads/{uuid}"));
    assert_eq!(r.header("range"), "0-0");
    assert_eq!(r.header("content-length"), "0");
    // A hint for clients that honour it (the chunk tests below send shorter chunks).
    assert_eq!(r.header("oci-chunk-min-length"), (1 << 20).to_string());

    let r = s.get(&location).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.header("range"), "0-0");
    assert_eq!(r.header("docker-upload-uuid"), uuid);
    assert_eq!(r.header("location"), location);
    s.stop().await;
}

#[tokio::test]
async fn chunks_with_content_range_then_put_without_body() {
    let s = Server::start().await;
    let blob = data(3000, 1);
    let location = s.start_upload("c").await;
    let mut at = 0;
    for chunk in blob.chunks(1024) {
        let range = format!("{at}-{}", at + chunk.len() - 1);
        let r = s
            .send(
                Method::PATCH,
                &location,
                &[
                    ("content-range", &range),
                    ("content-type", "application/octet-stream"),
                ],
                Body::full(chunk.to_vec()),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
        at += chunk.len();
        assert_eq!(r.header("range"), format!("0-{}", at - 1));
        assert_eq!(r.header("location"), location);
    }
    let digest = sha256(&blob);
    let r = s.close_upload(&location, &digest).await;
    assert_eq!(r.header("location"), format!("/v2/c/blobs/{digest}"));
    assert_eq!(r.header("docker-content-digest"), digest.to_string());
    assert_eq!(
        &s.get(&format!("/v2/c/blobs/{digest}")).await.body[..],
        &blob[..]
    );
    // The session is gone once committed.
    let r = s.get(&location).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "BLOB_UPLOAD_UNKNOWN");
    s.stop().await;
}

#[tokio::test]
async fn out_of_order_chunk_is_416_and_keeps_the_session() {
    let s = Server::start().await;
    let blob = data(200, 2);
    let location = s.start_upload("o").await;
    let r = s
        .send(
            Method::PATCH,
            &location,
            &[("content-range", "0-99")],
            Body::full(blob[..100].to_vec()),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    // A chunk that skips ahead, and one that repeats the start.
    for (range, len) in [("150-199", 50), ("0-99", 100)] {
        let r = s
            .send(
                Method::PATCH,
                &location,
                &[("content-range", range)],
                Body::full(vec![0u8; len]),
            )
            .await;
        assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(r.error_code(), "BLOB_UPLOAD_INVALID");
        assert_eq!(r.header("range"), "0-99");
        assert_eq!(r.header("location"), location);
    }
    let r = s.get(&location).await;
    assert_eq!(r.header("range"), "0-99");
    // The upload resumes where it stood and completes with the right bytes.
    let digest = sha256(&blob);
    let r = s
        .send(
            Method::PUT,
            &format!("{location}?digest={digest}"),
            &[("content-range", "100-199")],
            Body::full(blob[100..].to_vec()),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(
        &s.get(&format!("/v2/o/blobs/{digest}")).await.body[..],
        &blob[..]
    );
    s.stop().await;
}

/// Sends `head` (request line and headers, without the blank line) and `len` body bytes the
/// way Go's client does, the whole request before reading; then reads one response on the
/// kept-alive connection.
fn write_all_then_read(
    addr: std::net::SocketAddr,
    head: &str,
    len: usize,
) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    let head = format!("{head}\r\nHost: {addr}\r\nContent-Length: {len}\r\n\r\n");
    tcp.write_all(head.as_bytes()).unwrap();
    tcp.write_all(&vec![7u8; len])
        .map_err(|e| format!("writing the body: {e}"))?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tcp.read(&mut buf).map_err(|e| format!("reading: {e}"))?;
        if n == 0 {
            return Err(format!("closed after {:?}", String::from_utf8_lossy(&got)));
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    let l = l.to_ascii_lowercase();
                    l.strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return Ok(text);
            }
        }
    }
}

/// A client that writes its whole request before reading the answer (as Go's does) gets the
/// error, not a broken pipe: a body refused on its headers alone is still read, after the
/// answer (hyper closes a connection whose request body was left unread, while the client is
/// still writing it).
#[tokio::test]
async fn refused_request_bodies_are_read_before_the_error_is_sent() {
    let s = Server::start().await;
    let addr = s.addr;
    for len in [1000usize, 1 << 20, 8 << 20] {
        let location = s.start_upload("early/reply").await;
        let cases = [
            (
                format!(
                    "PATCH {location} HTTP/1.1\r\nContent-Range: 500-{}",
                    500 + len - 1
                ),
                "HTTP/1.1 416",
                "BLOB_UPLOAD_INVALID",
            ),
            (
                format!("PUT {location}?digest=sha256:nothex HTTP/1.1"),
                "HTTP/1.1 400",
                "DIGEST_INVALID",
            ),
            (
                "POST /v2/early/reply/blobs/uploads/?digest=md5:00 HTTP/1.1".to_string(),
                "HTTP/1.1 400",
                "DIGEST_INVALID",
            ),
            // Over the 4 MiB manifest limit the size is what is refused.
            (
                "PUT /v2/early/reply/manifests/v1?tag=no%20spaces HTTP/1.1".to_string(),
                if len > 4 << 20 {
                    "HTTP/1.1 413"
                } else {
                    "HTTP/1.1 400"
                },
                if len > 4 << 20 {
                    "SIZE_INVALID"
                } else {
                    "MANIFEST_INVALID"
                },
            ),
        ];
        for (head, status, code) in cases {
            let response =
                tokio::task::spawn_blocking(move || write_all_then_read(addr, &head, len))
                    .await
                    .unwrap()
                    .unwrap_or_else(|e| panic!("{len}-byte body: {e}"));
            assert!(response.starts_with(status), "{response}");
            assert!(response.contains(code), "{response}");
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn content_range_that_disagrees_with_the_body_is_refused() {
    let s = Server::start().await;
    let location = s.start_upload("m").await;
    let r = s
        .send(
            Method::PATCH,
            &location,
            &[("content-range", "0-9")],
            Body::full(vec![1u8; 5]),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "SIZE_INVALID");
    let r = s
        .send(
            Method::PATCH,
            &location,
            &[("content-range", "bogus")],
            Body::full(vec![1u8; 5]),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "BLOB_UPLOAD_INVALID");
    let r = s
        .send(
            Method::PATCH,
            &location,
            &[("content-range", "0-18446744073709551615")],
            Body::full(vec![1u8; 5]),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(s.get(&location).await.header("range"), "0-0");
    s.stop().await;
}

#[tokio::test]
async fn chunked_patch_of_the_wrong_length_leaves_the_session_unchanged() {
    let s = Server::start().await;
    let location = s.start_upload("w").await;
    // Chunked transfer encoding: no Content-Length, so only the end of the body tells.
    for parts in [
        vec![vec![1u8; 3], vec![2u8; 2]],
        vec![vec![1u8; 8], vec![2u8; 7]],
    ] {
        let r = s
            .send(
                Method::PATCH,
                &location,
                &[("content-range", "0-9")],
                Body::chunked(parts),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.error_code(), "SIZE_INVALID");
        assert_eq!(s.get(&location).await.header("range"), "0-0");
    }
    let blob = data(10, 9);
    let r = s
        .send(
            Method::PATCH,
            &location,
            &[("content-range", "0-9")],
            Body::chunked(vec![blob[..4].to_vec(), blob[4..].to_vec()]),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    assert_eq!(r.header("range"), "0-9");
    let digest = sha256(&blob);
    s.close_upload(&location, &digest).await;
    s.stop().await;
}

#[tokio::test]
async fn streamed_patch_without_length_then_put_with_last_chunk() {
    let s = Server::start().await;
    // Larger than one append batch, sent in uneven pieces with chunked transfer encoding.
    let blob = data((2 << 20) + 12345, 3);
    let location = s.start_upload("stream/me").await;
    let (first, rest) = blob.split_at((1 << 20) + 999);
    let parts: Vec<Vec<u8>> = first.chunks(70_000).map(<[u8]>::to_vec).collect();
    let r = s
        .send(Method::PATCH, &location, &[], Body::chunked(parts))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    assert_eq!(r.header("range"), format!("0-{}", first.len() - 1));
    let digest = sha256(&blob);
    let parts: Vec<Vec<u8>> = rest.chunks(300_000).map(<[u8]>::to_vec).collect();
    let r = s
        .send(
            Method::PUT,
            &format!("{location}?digest={digest}"),
            &[],
            Body::chunked(parts),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = s.get(&format!("/v2/stream/me/blobs/{digest}")).await;
    assert!(r.body[..] == blob[..]);
    s.stop().await;
}

/// Clients may send a body in tiny transfer-encoding chunks: thousands of frames per stored
/// record still make one whole blob.
#[tokio::test]
async fn streamed_patch_in_tiny_frames() {
    let s = Server::start().await;
    let blob = data((3 << 20) + 77, 9);
    let location = s.start_upload("stream/tiny").await;
    let parts: Vec<Vec<u8>> = blob.chunks(100).map(<[u8]>::to_vec).collect();
    let r = s
        .send(Method::PATCH, &location, &[], Body::chunked(parts))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    assert_eq!(r.header("range"), format!("0-{}", blob.len() - 1));
    let digest = sha256(&blob);
    s.close_upload(&location, &digest).await;
    let r = s.get(&format!("/v2/stream/tiny/blobs/{digest}")).await;
    assert!(r.body[..] == blob[..]);
    s.stop().await;
}

#[tokio::test]
async fn put_with_wrong_digest_fails_and_stores_nothing() {
    let s = Server::start().await;
    let location = s.start_upload("w").await;
    s.send(Method::PATCH, &location, &[], Body::full(b"abc".to_vec()))
        .await;
    let wrong = sha256(b"xyz");
    let r = s
        .send(
            Method::PUT,
            &format!("{location}?digest={wrong}"),
            &[],
            Body::Empty,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "DIGEST_INVALID");
    assert_eq!(
        s.get(&format!("/v2/w/blobs/{}", sha256(b"abc")))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.get(&format!("/v2/w/blobs/{wrong}")).await.status,
        StatusCode::NOT_FOUND
    );

    // PUT without any digest is refused before touching the session.
    let location = s.start_upload("w").await;
    let r = s.send(Method::PUT, &location, &[], Body::Empty).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "DIGEST_INVALID");
    assert_eq!(s.get(&location).await.status, StatusCode::NO_CONTENT);
    s.stop().await;
}

#[tokio::test]
async fn cancel_and_unknown_sessions() {
    let s = Server::start().await;
    let location = s.start_upload("k").await;
    s.send(
        Method::PATCH,
        &location,
        &[],
        Body::full(b"partial".to_vec()),
    )
    .await;
    assert_eq!(s.delete(&location).await.status, StatusCode::NO_CONTENT);
    for method in [Method::GET, Method::PATCH, Method::DELETE] {
        let r = s.send(method.clone(), &location, &[], Body::Empty).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{method}");
        assert_eq!(r.error_code(), "BLOB_UPLOAD_UNKNOWN");
    }
    let d = sha256(b"");
    for id in ["0123456789abcdef0123456789abcdef", "not-a-session", "ZZ"] {
        let r = s
            .send(
                Method::PUT,
                &format!("/v2/k/blobs/uploads/{id}?digest={d}"),
                &[],
                Body::Empty,
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{id}");
        assert_eq!(r.error_code(), "BLOB_UPLOAD_UNKNOWN");
    }
    // A session belongs to the repository that opened it.
    let location = s.start_upload("mine").await;
    let id = location.rsplit('/').next().unwrap();
    let r = s.get(&format!("/v2/theirs/blobs/uploads/{id}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "BLOB_UPLOAD_UNKNOWN");
    s.stop().await;
}

#[tokio::test]
async fn session_limit_is_toomanyrequests() {
    let s = Server::start_with(|c| c.store.max_open_uploads = 2).await;
    s.start_upload("l").await;
    s.start_upload("l").await;
    let r = s
        .send(Method::POST, "/v2/l/blobs/uploads/", &[], Body::Empty)
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.error_code(), "TOOMANYREQUESTS");
    s.stop().await;
}

/// Chunks too large to hold before checking them stream into the store; one whose body turns
/// out shorter or longer than its Content-Range is cut back, written records included, so the
/// session is exactly as before the request.
#[tokio::test]
async fn streamed_chunk_of_the_wrong_length_is_cut_back() {
    let s = Server::start_with(|c| {
        c.store.chunk_record_bytes = 4096;
        c.limits.append_batch_bytes = 4096;
        c.limits.monolithic_buffer_bytes = 4096;
    })
    .await;
    let location = s.start_upload("cut").await;
    let blob = data(60_000, 5);
    let first = 10_000;
    let r = s
        .send(
            Method::PATCH,
            &location,
            &[("content-range", &format!("0-{}", first - 1))],
            Body::chunked(vec![blob[..first].to_vec()]),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let range = format!("{first}-{}", blob.len() - 1);
    for junk in [data(30_000, 77), data(70_000, 78)] {
        let parts = junk.chunks(5_000).map(<[u8]>::to_vec).collect();
        let r = s
            .send(
                Method::PATCH,
                &location,
                &[("content-range", &range)],
                Body::chunked(parts),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
        assert_eq!(r.error_code(), "SIZE_INVALID");
        let status = s.get(&location).await;
        assert_eq!(status.header("range"), format!("0-{}", first - 1));
    }
    let r = s
        .send(
            Method::PATCH,
            &location,
            &[("content-range", &range)],
            Body::chunked(vec![blob[first..].to_vec()]),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let digest = sha256(&blob);
    s.close_upload(&location, &digest).await;
    let got = s.get(&format!("/v2/cut/blobs/{digest}")).await;
    assert_eq!(&got.body[..], &blob[..]);
    s.stop().await;
}
