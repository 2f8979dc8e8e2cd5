//! The upstream client against scripted HTTP/1.1 servers that misbehave as real upstreams do:
//! overload statuses, silence before or within a body, a connection cut mid-body, a chunked
//! manifest over the limit, the token flow's corner cases and a blob redirected to another
//! host. Each server records the request heads it read, so the tests see what berth sent.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth::mirror::config::{Credentials, MirrorConfig, MirrorTable};
use berth::mirror::upstream::{Upstream, UpstreamError};
use berth::oci::digest::{Algorithm, Digest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

const TIMEOUT: Duration = Duration::from_millis(400);
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// What a scripted server does with one request.
enum Reply {
    /// Writes these bytes and reads the next request on the connection.
    Send(Vec<u8>),
    /// Writes these bytes, then neither writes nor closes.
    SendThenStall(Vec<u8>),
    /// Writes these bytes, then closes the connection.
    SendThenClose(Vec<u8>),
}

struct Scripted {
    addr: std::net::SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    /// Dropping it aborts the accept loop and, through its JoinSet, every connection.
    _task: tokio::task::JoinHandle<()>,
}

impl Scripted {
    async fn start(
        ip: &str,
        answer: impl Fn(&str, std::net::SocketAddr) -> Reply + Send + Sync + 'static,
    ) -> Scripted {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let answer = Arc::new(answer);
        let seen = heads.clone();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let (answer, seen) = (answer.clone(), seen.clone());
                connections.spawn(async move {
                    serve(stream, addr, &*answer, &seen).await;
                });
            }
        });
        Scripted {
            addr,
            heads,
            _task: task,
        }
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The request heads read so far whose request line contains `part`.
    fn heads_with(&self, part: &str) -> Vec<String> {
        let heads = self.heads.lock().unwrap();
        heads
            .iter()
            .filter(|h| h.lines().next().unwrap_or("").contains(part))
            .cloned()
            .collect()
    }
}

async fn serve(
    mut stream: TcpStream,
    addr: std::net::SocketAddr,
    answer: &(dyn Fn(&str, std::net::SocketAddr) -> Reply + Send + Sync),
    seen: &Mutex<Vec<String>>,
) {
    let mut buf = Vec::new();
    loop {
        // Requests here never have bodies: a head ends the request.
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut more = [0u8; 4096];
            match stream.read(&mut more).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&more[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        seen.lock().unwrap().push(head.clone());
        match answer(&head, addr) {
            Reply::Send(bytes) => {
                if stream.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Reply::SendThenStall(bytes) => {
                let _ = stream.write_all(&bytes).await;
                tokio::time::sleep(Duration::from_secs(60)).await;
                return;
            }
            Reply::SendThenClose(bytes) => {
                let _ = stream.write_all(&bytes).await;
                return;
            }
        }
    }
}

/// A complete response with a Content-Length.
fn response(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// The value of header `name` in a request head.
fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

fn target(head: &str) -> &str {
    head.split(' ').nth(1).unwrap_or("")
}

fn upstream(base: &str, credentials: Option<(&str, &str)>) -> Upstream {
    let mut c = MirrorConfig::resolve(&MirrorTable {
        ns: "faulty.test".into(),
        upstream: Some(base.into()),
        ..MirrorTable::default()
    })
    .unwrap();
    c.credentials = credentials.map(|(u, p)| Credentials {
        username: u.into(),
        password: p.into(),
    });
    c.timeout = TIMEOUT;
    Upstream::new(&c).unwrap()
}

fn digest(data: &[u8]) -> Digest {
    Digest::of(Algorithm::Sha256, data)
}

#[tokio::test]
async fn overload_statuses_are_outages_other_statuses_are_not() {
    let server = Scripted::start("127.0.0.1", |head, _| {
        let status = match target(head) {
            t if t.contains("/manifests/busy") => "503 Service Unavailable",
            t if t.contains("/manifests/") => "429 Too Many Requests",
            _ => "400 Bad Request",
        };
        Reply::Send(response(status, &[], b""))
    })
    .await;
    let up = upstream(&server.base(), None);
    let e = up.manifest("a/b", "busy", false, 1024).await.unwrap_err();
    assert!(matches!(e, UpstreamError::Unavailable(503, _)), "{e}");
    assert!(e.is_outage());
    let e = up.manifest("a/b", "limited", true, 1024).await.unwrap_err();
    assert!(matches!(e, UpstreamError::Unavailable(429, _)), "{e}");
    let e = up.blob("a/b", &digest(b"x")).await.unwrap_err();
    assert!(matches!(e, UpstreamError::Invalid(_)), "{e}");
    assert!(!e.is_outage());
    // Names that are not names never reach the upstream.
    let e = up.manifest("../x", "v1", false, 1024).await.unwrap_err();
    assert!(matches!(e, UpstreamError::Invalid(_)), "{e}");
    assert!(server.heads_with("../x").is_empty());
}

#[tokio::test]
async fn silence_and_cuts_are_unreachable() {
    let server = Scripted::start("127.0.0.1", |head, _| {
        // Claims 100 bytes, sends 10.
        let partial = || b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789".to_vec();
        match target(head) {
            t if t.contains("/manifests/") => Reply::SendThenStall(Vec::new()),
            t if t.contains("/blobs/sha256:aaaa") => Reply::SendThenStall(partial()),
            _ => Reply::SendThenClose(partial()),
        }
    })
    .await;
    let up = upstream(&server.base(), None);

    // No response head at all.
    let started = Instant::now();
    let e = up.manifest("a/b", "v1", false, 1024).await.unwrap_err();
    assert!(matches!(e, UpstreamError::Unreachable(_)), "{e}");
    assert!(started.elapsed() >= TIMEOUT);
    assert!(started.elapsed() < TIMEOUT * 4, "{:?}", started.elapsed());

    // A head, ten bytes, then silence.
    let stalled = Digest::parse(&format!("sha256:{}", "a".repeat(64))).unwrap();
    let mut blob = up.blob("a/b", &stalled).await.unwrap().unwrap();
    assert_eq!(blob.size(), Some(100));
    assert_eq!(&blob.chunk().await.unwrap().unwrap()[..], b"0123456789");
    let started = Instant::now();
    let e = blob.chunk().await.unwrap_err();
    assert!(matches!(e, UpstreamError::Unreachable(_)), "{e}");
    assert!(started.elapsed() >= TIMEOUT);
    assert!(started.elapsed() < TIMEOUT * 4, "{:?}", started.elapsed());

    // A head, ten bytes, then the connection closes: the short body is an error, not an end.
    let mut blob = up.blob("a/b", &digest(b"cut")).await.unwrap().unwrap();
    let mut result = Ok(Some(bytes::Bytes::new()));
    while let Ok(Some(_)) = result {
        result = blob.chunk().await;
    }
    let e = result.unwrap_err();
    assert!(matches!(e, UpstreamError::Unreachable(_)), "{e}");
}

#[tokio::test]
async fn chunked_manifest_bounded_and_headers_kept_as_sent() {
    let body: Vec<u8> = format!(
        "{{\"mediaType\":\"{MANIFEST}\",\"pad\":\"{}\"}}",
        "x".repeat(500)
    )
    .into_bytes();
    let answer_body = body.clone();
    let server = Scripted::start("127.0.0.1", move |head, _| {
        if target(head).contains("/manifests/bare") {
            return Reply::Send(response("200 OK", &[], b"{}"));
        }
        let (first, second) = answer_body.split_at(300);
        let mut r = format!(
            "HTTP/1.1 200 OK\r\ncontent-type:  {MANIFEST}; charset=utf-8 \r\n\
             docker-content-digest: not-a-digest\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        .into_bytes();
        for part in [first, second] {
            r.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
            r.extend_from_slice(part);
            r.extend_from_slice(b"\r\n");
        }
        r.extend_from_slice(b"0\r\n\r\n");
        Reply::Send(r)
    })
    .await;
    let up = upstream(&server.base(), None);
    let e = up
        .manifest("a/b", "v1", false, body.len() - 1)
        .await
        .unwrap_err();
    assert!(matches!(e, UpstreamError::Invalid(_)), "{e}");
    let got = up
        .manifest("a/b", "v1", false, body.len())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got.body[..], &body[..]);
    assert_eq!(got.media_type, format!("{MANIFEST}; charset=utf-8"));
    assert_eq!(got.digest, None);
    assert_eq!(got.size, None);
    // Accept names exactly the four manifest formats.
    let heads = server.heads_with("/manifests/v1");
    let accept = header(&heads[0], "accept").unwrap();
    assert!(accept.contains("application/vnd.oci.image.index.v1+json"));
    assert!(accept.contains("application/vnd.docker.distribution.manifest.v2+json"));
    assert!(!accept.contains("*/*") && !accept.contains("distribution.manifest.v1"));
    assert!(header(&heads[0], "user-agent")
        .unwrap()
        .starts_with("berth/"));
    // No Content-Type: berth could not say what it stores.
    let e = up.manifest("a/b", "bare", false, 1024).await.unwrap_err();
    assert!(matches!(e, UpstreamError::Invalid(_)), "{e}");
}

/// A registry with a token service at `/auth` on the same server, as the docker token spec
/// describes it. Repositories below `org/` behave as their second component says.
fn token_registry(head: &str, addr: std::net::SocketAddr) -> Reply {
    let t = target(head);
    let authorization = header(head, "authorization").unwrap_or_default();
    if let Some(query) = t.strip_prefix("/auth?") {
        let answer = if query.contains("org%2Fbroken") {
            r#"{"nope":true}"#.to_owned()
        } else if query.contains("org%2Fdown") {
            return Reply::Send(response("503 Service Unavailable", &[], b""));
        } else if authorization != format!("Basic {}", b64("user:pw")) {
            return Reply::Send(response("401 Unauthorized", &[], b""));
        } else if query.contains("org%2Fshort") {
            r#"{"token":"short-lived","expires_in":1}"#.to_owned()
        } else {
            r#"{"access_token":"tok-1","expires_in":3600}"#.to_owned()
        };
        return Reply::Send(response("200 OK", &[], answer.as_bytes()));
    }
    let granted = matches!(
        authorization.as_str(),
        "Bearer tok-1" | "Bearer short-lived"
    ) && !t.contains("/org/refused/");
    if granted {
        let body = b"{}";
        return Reply::Send(response(
            "200 OK",
            &[
                ("content-type", MANIFEST),
                ("docker-content-digest", &digest(body).to_string()),
            ],
            body,
        ));
    }
    let repo = t.trim_start_matches("/v2/").split("/manifests/").next();
    let challenge = format!(
        r#"Bearer realm="http://{addr}/auth?client=x",service="reg \"one\"",scope="repository:{}:pull""#,
        repo.unwrap_or("")
    );
    Reply::Send(response(
        "401 Unauthorized",
        &[("www-authenticate", &challenge)],
        b"",
    ))
}

fn b64(text: &str) -> String {
    berth::auth::b64::encode_std(text.as_bytes())
}

#[tokio::test]
async fn token_flow_follows_the_challenge() {
    let server = Scripted::start("127.0.0.1", token_registry).await;
    let up = upstream(&server.base(), Some(("user", "pw")));

    for _ in 0..3 {
        let got = up.manifest("org/app", "v1", false, 1024).await.unwrap();
        assert_eq!(got.unwrap().digest, Some(digest(b"{}")));
    }
    // Anonymous first, one token request, then the token on every request.
    let tokens = server.heads_with("/auth?");
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    let query = target(&tokens[0]);
    assert!(query.starts_with("/auth?client=x&"), "{query}");
    assert!(query.contains("service=reg+%22one%22"), "{query}");
    assert!(
        query.contains("scope=repository%3Aorg%2Fapp%3Apull"),
        "{query}"
    );
    let manifests = server.heads_with("/v2/org/app/manifests/v1");
    let sent: Vec<Option<String>> = manifests
        .iter()
        .map(|h| header(h, "authorization"))
        .collect();
    let bearer = Some("Bearer tok-1".to_owned());
    assert_eq!(sent, [None, bearer.clone(), bearer.clone(), bearer]);

    // A token that lives less than the safety margin is used once, never cached.
    for _ in 0..2 {
        assert!(up
            .manifest("org/short", "v1", true, 1024)
            .await
            .unwrap()
            .is_some());
    }
    assert_eq!(server.heads_with("/auth?").len(), 3);

    // The token service's faults: malformed answer, outage, refused credentials.
    let e = up
        .manifest("org/broken", "v1", false, 1024)
        .await
        .unwrap_err();
    assert!(matches!(e, UpstreamError::Invalid(_)), "{e}");
    assert!(e.to_string().contains("token"), "{e}");
    let e = up
        .manifest("org/down", "v1", false, 1024)
        .await
        .unwrap_err();
    assert!(e.is_outage(), "{e}");
    let e = upstream(&server.base(), Some(("user", "bad")))
        .manifest("org/app", "v1", false, 1024)
        .await
        .unwrap_err();
    assert!(matches!(e, UpstreamError::Denied(_)), "{e}");
    assert!(!e.to_string().contains("bad"), "{e}");
    // A token the registry still refuses: one retry, then Denied.
    let before = server.heads_with("/v2/org/refused/").len();
    let e = up
        .manifest("org/refused", "v1", false, 1024)
        .await
        .unwrap_err();
    assert!(matches!(e, UpstreamError::Denied(_)), "{e}");
    assert_eq!(server.heads_with("/v2/org/refused/").len(), before + 2);
}

#[tokio::test]
async fn unreachable_token_service_is_an_outage() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap();
    drop(closed);
    let server = Scripted::start("127.0.0.1", move |_, _| {
        let challenge = format!(r#"Bearer realm="http://{dead}/token",service="s""#);
        Reply::Send(response(
            "401 Unauthorized",
            &[("www-authenticate", &challenge)],
            b"",
        ))
    })
    .await;
    let e = upstream(&server.base(), None)
        .manifest("a/b", "v1", false, 1024)
        .await
        .unwrap_err();
    assert!(matches!(e, UpstreamError::Unreachable(_)), "{e}");
    assert!(e.to_string().contains("token service"), "{e}");
}

#[tokio::test]
async fn blob_redirected_to_another_host_loses_authorization() {
    let storage = Scripted::start("127.0.0.2", |_, _| {
        Reply::Send(response("200 OK", &[], b"blob bytes"))
    })
    .await;
    let location = format!("http://{}/storage/blob?sig=s3cr3t", storage.addr);
    let registry = Scripted::start("127.0.0.1", move |head, _| {
        if header(head, "authorization").is_some() {
            Reply::Send(response(
                "307 Temporary Redirect",
                &[("location", &location)],
                b"",
            ))
        } else {
            Reply::Send(response(
                "401 Unauthorized",
                &[("www-authenticate", r#"Basic realm="registry""#)],
                b"",
            ))
        }
    })
    .await;
    let up = upstream(&registry.base(), Some(("user", "pw")));
    for _ in 0..2 {
        let mut blob = up
            .blob("a/b", &digest(b"blob bytes"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(blob.size(), Some(10));
        let mut got = Vec::new();
        while let Some(piece) = blob.chunk().await.unwrap() {
            got.extend_from_slice(&piece);
        }
        assert_eq!(got, b"blob bytes");
    }
    // The registry saw Basic (after its challenge, then at once); the storage host never did.
    let sent: Vec<Option<String>> = registry
        .heads_with("/blobs/")
        .iter()
        .map(|h| header(h, "authorization"))
        .collect();
    let basic = Some(format!("Basic {}", b64("user:pw")));
    assert_eq!(sent, [None, basic.clone(), basic]);
    let fetched = storage.heads_with("/storage/blob");
    assert_eq!(fetched.len(), 2);
    assert!(fetched.iter().all(|h| header(h, "authorization").is_none()));
}
