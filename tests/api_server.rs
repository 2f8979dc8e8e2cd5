//! The server loop: graceful shutdown with a request in flight, restart over the same data,
//! header limits and timeouts, bodies that flow longer than the idle timeout, and TLS with ALPN.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{sha256, Body, Server};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Polls the metrics until the server has read `n` request body bytes in all; fails after a
/// deadline instead of hanging.
async fn wait_for_bytes_in(s: &Server, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = s.get("/metrics").await.text();
        let read = text
            .lines()
            .find_map(|l| l.strip_prefix("berth_http_request_bytes_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if read >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server read {read} of {n} body bytes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn shutdown_lets_an_upload_in_flight_finish_and_data_survives() {
    let s = Server::start().await;
    let blob: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    let digest = sha256(&blob);
    let location = s.start_upload("g").await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let addr = s.addr;
    let put = {
        let path = format!("{location}?digest={digest}");
        let s2 = Server::client_only(addr);
        tokio::spawn(async move { s2.send(Method::PUT, &path, &[], Body::Channel(rx)).await })
    };
    let (first, second) = blob.split_at(50_000);
    tx.send(Bytes::copy_from_slice(first)).await.unwrap();
    // Wait until the server has read the first half, then begin shutting down.
    wait_for_bytes_in(&s, 50_000).await;
    let stopping = tokio::spawn(s.stop());
    tx.send(Bytes::copy_from_slice(second)).await.unwrap();
    drop(tx);
    let r = put.await.unwrap();
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let dir = stopping.await.unwrap();
    // New connections are refused once the server has stopped.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());

    let s = Server::start_in(dir, |_| {}).await;
    let r = s.get(&format!("/v2/g/blobs/{digest}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body[..] == blob[..]);
    s.stop().await;
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let s = Server::start_with(|c| c.server.max_header_bytes = 8192).await;
    let big = "x".repeat(20_000);
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    // `connection: close`, so the end of the answer is the end of the stream (otherwise the
    // read below waits out the header-read timeout of the next request).
    let req = format!("GET /v2/ HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-big: {big}\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tcp.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).to_lowercase();
    assert!(text.starts_with("http/1.1 431"), "{text}");
    // A registry error like any other: version header and the spec's JSON body.
    assert!(
        text.contains("docker-distribution-api-version: registry/2.0"),
        "{text}"
    );
    assert!(text.contains(r#""errors":[{"code":"unknown""#), "{text}");
    // The server still answers well-formed requests.
    assert_eq!(s.get("/v2/").await.status, StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn silent_connections_are_closed() {
    let s = Server::start_with(|c| c.server.header_read_timeout = Duration::from_millis(300)).await;
    // Half a request head, then silence: the server hangs up instead of waiting forever.
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(b"GET /v2/ HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), tcp.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "connection was not closed");
    assert!(!String::from_utf8_lossy(&out).contains("200 OK"));
    s.stop().await;
}

#[tokio::test]
async fn a_slow_body_that_keeps_flowing_is_not_cut_off() {
    let s = Server::start_with(|c| {
        c.server.idle_timeout = Duration::from_secs(1);
        c.limits.body_idle_timeout = Duration::from_secs(1);
    })
    .await;
    let location = s.start_upload("slow").await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let client = Server::client_only(s.addr);
    let patch = tokio::spawn(async move {
        client
            .send(Method::PATCH, &location, &[], Body::Channel(rx))
            .await
    });
    // Several idle periods in total, never silent for one.
    for _ in 0..15 {
        tx.send(Bytes::from_static(b"0123456789")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(tx);
    let r = patch.await.unwrap();
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    assert_eq!(r.header("range"), "0-149");
    s.stop().await;
}

#[tokio::test]
async fn a_stalled_body_is_abandoned_and_the_session_kept() {
    let s = Server::start_with(|c| {
        c.server.idle_timeout = Duration::from_millis(300);
        c.limits.body_idle_timeout = Duration::from_millis(300);
    })
    .await;
    let location = s.start_upload("stall").await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let client = Server::client_only(s.addr);
    let path = location.clone();
    let patch = tokio::spawn(async move {
        client
            .send(Method::PATCH, &path, &[], Body::Channel(rx))
            .await
    });
    tx.send(Bytes::from_static(b"abc")).await.unwrap();
    let r = patch.await.unwrap();
    assert_eq!(r.status, StatusCode::REQUEST_TIMEOUT);
    drop(tx);
    assert_eq!(s.get(&location).await.header("range"), "0-2");
    s.stop().await;
}

fn make_cert(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl is needed to make a test certificate");
    assert!(status.success());
    (cert, key)
}

async fn tls_client(
    addr: std::net::SocketAddr,
    cert: &std::path::Path,
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

#[tokio::test]
async fn tls_with_alpn_h2_and_http1() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = make_cert(certs.path());
    let s = Server::start_with(|c| {
        c.tls = Some(berth::config::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        })
    })
    .await;

    // HTTP/2 chosen through ALPN, TLS 1.3.
    let tls = tls_client(
        s.addr,
        &cert,
        &[b"h2", b"http/1.1"],
        &[&rustls::version::TLS13],
    )
    .await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get(format!("https://localhost:{}/v2/", s.addr.port()))
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let r = sender.send_request(req).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.version(), http::Version::HTTP_2);
    assert_eq!(
        r.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    // A multi-MiB body streams over h2 (flow control must not stall it).
    let blob: Vec<u8> = (0..(3u32 << 20)).map(|i| (i % 253) as u8).collect();
    let digest = sha256(&blob);
    let req = Request::post(format!(
        "https://localhost:{}/v2/h2/blobs/uploads/?digest={digest}",
        s.addr.port()
    ))
    .body(http_body_util::Full::new(Bytes::from(blob.clone())))
    .unwrap();
    let r = sender.send_request(req).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let req = Request::get(format!(
        "https://localhost:{}/v2/h2/blobs/{digest}",
        s.addr.port()
    ))
    .body(http_body_util::Full::new(Bytes::new()))
    .unwrap();
    let r = sender.send_request(req).await.unwrap();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    assert!(body[..] == blob[..]);
    let req = Request::head(format!(
        "https://localhost:{}/v2/h2/blobs/{digest}",
        s.addr.port()
    ))
    .body(http_body_util::Full::new(Bytes::new()))
    .unwrap();
    let r = sender.send_request(req).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["content-length"],
        blob.len().to_string().as_str()
    );

    // HTTP/1.1 over TLS 1.2 for clients that offer nothing else.
    let tls = tls_client(s.addr, &cert, &[b"http/1.1"], &[&rustls::version::TLS12]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/v2/_catalog")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let r = sender.send_request(req).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body = r.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], br#"{"repositories":["h2"]}"#);
    s.stop().await;
}

/// An upload whose client goes quiet in the middle of its body holds no thread: with a pool of
/// three blocking threads, eight stalled PATCHes leave room for another upload to go through.
#[test]
fn quiet_uploads_hold_no_blocking_threads() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(3)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let s = Server::start().await;
        let mut feeds = Vec::new();
        let mut patches = Vec::new();
        for i in 0..8u8 {
            let location = s.start_upload("quiet").await;
            let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
            let client = Server::client_only(s.addr);
            patches.push(tokio::spawn(async move {
                client
                    .send(Method::PATCH, &location, &[], Body::Channel(rx))
                    .await
            }));
            tx.send(Bytes::from(vec![i; 100_000])).await.unwrap();
            feeds.push(tx);
        }
        // Every PATCH is inside its handler, waiting for more of its body.
        wait_for_bytes_in(&s, 800_000).await;
        let blob: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let upload = async {
            let location = s.start_upload("other").await;
            let r = s
                .send(Method::PATCH, &location, &[], Body::full(blob.clone()))
                .await;
            assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
            let digest = sha256(&blob);
            s.close_upload(&location, &digest).await;
            digest
        };
        let digest = tokio::time::timeout(Duration::from_secs(10), upload)
            .await
            .expect("an upload is not starved by quiet ones");
        let r = s.get(&format!("/v2/other/blobs/{digest}")).await;
        assert!(r.body[..] == blob[..]);
        drop(feeds);
        for patch in patches {
            let r = patch.await.unwrap();
            assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
            assert_eq!(r.header("range"), "0-99999");
        }
        s.stop().await;
    });
}

/// An HTTP/1.1 connection that has answered one request, kept open for more.
async fn open_connection(
    addr: std::net::SocketAddr,
) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    assert_eq!(get_on(&mut sender, addr).await, StatusCode::OK);
    sender
}

async fn get_on(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    addr: std::net::SocketAddr,
) -> StatusCode {
    let req = Request::get("/v2/")
        .header("host", addr.to_string())
        .body(Empty::new())
        .unwrap();
    sender.send_request(req).await.unwrap().status()
}

#[tokio::test]
async fn connections_past_the_cap_are_refused_and_a_freed_slot_is_used_again() {
    let s = Server::start_with(|c| c.server.max_connections = 2).await;
    let mut first = open_connection(s.addr).await;
    let second = open_connection(s.addr).await;

    // A third connection gets a registry error, not a hang.
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(b"GET /v2/ HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out))
        .await
        .expect("a refused connection is closed")
        .unwrap();
    let text = String::from_utf8_lossy(&out).to_lowercase();
    assert!(text.starts_with("http/1.1 503"), "{text}");
    assert!(text.contains(r#""code":"toomanyrequests""#), "{text}");

    // The connections already open keep working.
    assert_eq!(get_on(&mut first, s.addr).await, StatusCode::OK);
    drop(second);
    // Once the server has seen the close, its slot takes a new connection.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = Server::client_only(s.addr)
            .send(Method::GET, "/v2/", &[], Body::full(Bytes::new()))
            .await;
        if r.status == StatusCode::OK {
            break;
        }
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            std::time::Instant::now() < deadline,
            "the slot never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(get_on(&mut first, s.addr).await, StatusCode::OK);
    s.stop().await;
}

/// HTTP/2 has no head-read timer in hyper, and a client's pings keep bytes moving: a
/// connection that never opens a stream is still closed after the header-read timeout.
#[tokio::test]
async fn an_h2_connection_that_only_pings_is_closed() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = make_cert(certs.path());
    let s = Server::start_with(|c| {
        c.tls = Some(berth::config::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        });
        c.server.header_read_timeout = Duration::from_millis(500);
    })
    .await;
    let tls = tls_client(s.addr, &cert, &[b"h2"], &[&rustls::version::TLS13]).await;
    let (_sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(Duration::from_millis(100))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true)
        .handshake::<_, Empty<Bytes>>(TokioIo::new(tls))
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(20), conn).await;
    assert!(
        ended.is_ok(),
        "the server kept a connection without requests"
    );
    s.stop().await;
}
