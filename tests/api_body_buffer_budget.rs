//! Request bodies held in memory share one budget (`--max-body-buffer-bytes`). Clients that
//! send most of a body and go silent fill it; the next request that needs room cuts off the
//! one silent the longest (408, its bytes dropped), and well-behaved clients are served. The
//! bytes held are the gauge `berth_body_buffer_bytes`, back to 0 once every request is gone.

mod common;

use std::time::Duration;

use common::{image_manifest, sha256, Body, Server, OCI_MANIFEST};
use http::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MIB: usize = 1 << 20;
const BUDGET: usize = 8 * MIB;

async fn server() -> Server {
    Server::start_with(|c| c.limits.max_body_buffer_bytes = BUDGET).await
}

/// Sends a request head declaring `declared` body bytes, then `sent` of them, then nothing.
async fn stall(s: &Server, request_line: &str, declared: usize, sent: usize) -> TcpStream {
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    let head = format!(
        "{request_line} HTTP/1.1\r\nhost: x\r\ncontent-type: {OCI_MANIFEST}\r\n\
         content-length: {declared}\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&vec![b' '; sent]).await.unwrap();
    tcp
}

/// Everything the server sends on a stalled connection until it closes it.
async fn answer(tcp: &mut TcpStream) -> String {
    let mut out = Vec::new();
    // A guard against hanging, far below the 120 s body idle timeout that would also end it.
    let read = tokio::time::timeout(Duration::from_secs(60), tcp.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    assert!(
        read.is_ok(),
        "the stalled request was never answered: {text:?}"
    );
    text
}

fn assert_cut_off(answer: &str) {
    assert!(
        answer.starts_with("HTTP/1.1 408 Request Timeout"),
        "{answer}"
    );
    assert!(
        answer.contains(r#""code":"BLOB_UPLOAD_INVALID""#),
        "{answer}"
    );
    assert!(answer.contains("request body stalled"), "{answer}");
}

async fn metric(s: &Server, name: &str) -> u64 {
    let text = s.get("/metrics").await.text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

/// Waits until the bytes held are `want` (the server reads what the clients sent at its own
/// pace).
async fn held_becomes(s: &Server, want: usize) {
    let mut seen = 0;
    for _ in 0..1200 {
        seen = metric(s, "berth_body_buffer_bytes").await as usize;
        if seen == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("body bytes held stayed at {seen}, never {want}");
}

#[tokio::test]
async fn stalled_manifest_puts_make_way_for_a_well_behaved_client() {
    let s = server().await;
    let put = |tag: &str| format!("PUT /v2/stall/manifests/{tag}");
    let mut first = stall(&s, &put("s1"), 4 * MIB, 3 * MIB).await;
    held_becomes(&s, 3 * MIB).await;
    let mut second = stall(&s, &put("s2"), 4 * MIB, 3 * MIB).await;
    held_becomes(&s, 6 * MIB).await;
    // The third does not fit beside them: the first, silent the longest, makes way.
    let third = stall(&s, &put("s3"), 4 * MIB, 3 * MIB).await;
    assert_cut_off(&answer(&mut first).await);
    held_becomes(&s, 6 * MIB).await;
    assert_eq!(metric(&s, "berth_body_buffer_cuts_total").await, 1);

    // A small push holds nothing while it waits: it goes through as if nothing happened.
    s.push_blob("app", &[7u8; 4096]).await;

    // A manifest of 3 MiB from another client, sent in two parts: the first needs room, which
    // the second stalled PUT (now silent the longest) gives up.
    let config = s.push_blob("app", b"{}").await;
    let layer = s.push_blob("app", b"layer").await;
    let pad = "x".repeat(3 * MIB - 1024);
    let extra = format!(r#","annotations":{{"pad":"{pad}"}}"#);
    let manifest = image_manifest(&config, 2, &[(&layer, 5)], &extra);
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let client = Server::client_only(s.addr);
    let pushed = tokio::spawn(async move {
        client
            .send(
                Method::PUT,
                "/v2/app/manifests/big",
                &[("content-type", OCI_MANIFEST)],
                Body::Channel(rx),
            )
            .await
    });
    let (head, rest) = manifest.split_at(5 * MIB / 2);
    tx.send(head.to_vec().into()).await.unwrap();
    assert_cut_off(&answer(&mut second).await);
    tx.send(rest.to_vec().into()).await.unwrap();
    drop(tx);
    let r = pushed.await.unwrap();
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = s.get("/v2/app/manifests/big").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body.as_ref(), manifest.as_slice());
    assert_eq!(metric(&s, "berth_body_buffer_cuts_total").await, 2);

    // Only the third is held now; once its client is gone nothing is.
    held_becomes(&s, 3 * MIB).await;
    drop(third);
    held_becomes(&s, 0).await;
    s.stop().await;
}

#[tokio::test]
async fn stalled_single_request_pushes_make_way_for_a_well_behaved_client() {
    let s = server().await;
    let digest = sha256(b"never finished");
    let post = format!("POST /v2/stall/blobs/uploads/?digest={digest}");
    let part = 3 * MIB / 4;
    let mut stalled = Vec::new();
    for i in 1..=10 {
        stalled.push(stall(&s, &post, MIB, part).await);
        held_becomes(&s, i * part).await;
    }
    // All ten silent for over a second, the eleventh goes past 8 MiB: to get back under the
    // budget less an eighth (7 MiB), the two silent the longest are cut off.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let eleventh = stall(&s, &post, MIB, part).await;
    assert_cut_off(&answer(&mut stalled[0]).await);
    assert_cut_off(&answer(&mut stalled[1]).await);
    held_becomes(&s, 9 * part).await;
    assert_eq!(metric(&s, "berth_body_buffer_cuts_total").await, 2);

    let blob = vec![3u8; 4096];
    let digest = s.push_blob("app", &blob).await;
    assert_eq!(
        s.get(&format!("/v2/app/blobs/{digest}"))
            .await
            .body
            .as_ref(),
        blob.as_slice()
    );
    let manifest = s.image("app", "v1").await;
    let r = s.put_manifest("app", "v1", OCI_MANIFEST, &manifest).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());

    drop(stalled);
    drop(eleventh);
    held_becomes(&s, 0).await;
    s.stop().await;
}
