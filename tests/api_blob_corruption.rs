//! A blob chunk damaged on disk ends the GET response early: the client gets the intact
//! extents before it and then a short body, never a damaged byte presented as the blob.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: usize = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_chunk_cuts_the_body_short() {
    let s = Server::start().await;
    // xorshift: no 64-byte window repeats, so the damaged spot can be found in the segment.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let blob: Vec<u8> = (0..3 * MIB)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let digest = s.push_blob("c", &blob).await;

    // Flip a byte in the blob's last 1 MiB chunk record, under the running server.
    let seg = s.dir.path().join("data/segments/0000000000000001.seg");
    let bytes = std::fs::read(&seg).unwrap();
    let probe = &blob[2 * MIB + 1000..2 * MIB + 1064];
    let at = bytes.windows(64).position(|w| w == probe).unwrap() as u64;
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&seg)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 0x01;
    f.write_all_at(&b, at).unwrap();

    for _ in 0..2 {
        let mut conn = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        let req =
            format!("GET /v2/c/blobs/{digest} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        conn.write_all(req.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        // The server drops the connection: either an orderly close or a reset.
        loop {
            match conn.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => {
                    eprintln!("read error {e}");
                    break;
                }
            }
        }
        let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&got[..head_end]).to_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", blob.len())),
            "{head}"
        );
        let body = &got[head_end..];
        assert!(body.len() < blob.len(), "the body must end early");
        assert!(
            body.len() <= 2 * MIB,
            "no byte of the damaged chunk is sent"
        );
        assert_eq!(
            body,
            &blob[..body.len()],
            "what was sent is the intact prefix"
        );
    }

    // The intact chunks are still served to a range request that does not touch the damage.
    let r = s
        .send(
            http::Method::GET,
            &format!("/v2/c/blobs/{digest}"),
            &[("range", "bytes=0-2097151")],
            Body::Empty,
        )
        .await;
    assert_eq!(r.status, http::StatusCode::PARTIAL_CONTENT);
    assert!(r.body[..] == blob[..2 * MIB]);

    // Both cut-short GETs are visible to operators, not only in the log.
    let text = s.get("/metrics").await.text();
    assert!(
        text.contains("berth_store_corrupt_reads_total 2"),
        "corrupt read not counted:\n{text}"
    );
    s.stop().await;
}
