//! Bodies refused by their headers are answered at once: a manifest longer than the limit
//! (413 `SIZE_INVALID`) and a blob larger than the data disk's free space (507), without
//! `100 Continue` and without waiting for a byte of the body.

mod common;

use std::time::Duration;

use common::{sha256, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Far more than any test machine's disk holds.
const HUGE: u64 = 1 << 60;

/// Sends a request head announcing a body of `length` with `Expect: 100-continue`, sends no
/// body, and returns everything the server answers until it closes the connection.
async fn expect_continue(s: &Server, method: &str, path: &str, length: u64) -> String {
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/vnd.oci.image.manifest.v1+json\r\n\
         content-length: {length}\r\nexpect: 100-continue\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    // The answer must not wait for the body: the client sends none, so a server that waited
    // would run into this deadline (far below the body idle timeout).
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out)).await;
    assert!(
        read.is_ok(),
        "no answer without the body: {:?}",
        String::from_utf8_lossy(&out)
    );
    String::from_utf8_lossy(&out).into_owned()
}

fn first_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or("")
}

#[tokio::test]
async fn an_oversized_manifest_is_refused_before_its_body() {
    let s = Server::start().await;
    let limit = 4u64 << 20;
    let answer = expect_continue(&s, "PUT", "/v2/app/manifests/latest", limit + 1).await;
    assert_eq!(
        first_line(&answer),
        "HTTP/1.1 413 Payload Too Large",
        "{answer}"
    );
    assert!(answer.contains(r#""code":"SIZE_INVALID""#), "{answer}");
    s.stop().await;
}

#[tokio::test]
async fn a_blob_larger_than_the_free_space_is_refused_before_its_body() {
    let s = Server::start().await;
    let digest = sha256(b"never sent");
    let path = format!("/v2/app/blobs/uploads/?digest={digest}");
    let answer = expect_continue(&s, "POST", &path, HUGE).await;
    assert_eq!(
        first_line(&answer),
        "HTTP/1.1 507 Insufficient Storage",
        "{answer}"
    );
    assert!(answer.contains("insufficient storage: no room"), "{answer}");

    for method in ["PATCH", "PUT"] {
        let location = s.start_upload("app").await;
        let path = match method {
            "PUT" => format!("{location}?digest={digest}"),
            _ => location.clone(),
        };
        let answer = expect_continue(&s, method, &path, HUGE).await;
        assert_eq!(
            first_line(&answer),
            "HTTP/1.1 507 Insufficient Storage",
            "{method}: {answer}"
        );
        // The session is untouched and still usable.
        let r = s.get(&location).await;
        assert_eq!(r.header("range"), "0-0", "{method}");
    }
    s.stop().await;
}
