//! `hash-sink`: a stand-in registry that takes chunked blob pushes, checks their sha256 and
//! throws the bytes away. It stores nothing, so its push rate is the ceiling for any registry
//! that verifies digests on the same machine: the client, loopback TCP and one sha256 stream,
//! with nothing else. The benchmark measures it beside the real registries in the same run.
//!
//! Plain blocking sockets, one thread per connection, and just the requests `push-chunked`
//! sends: `GET /v2/`, `POST` (new upload), `PATCH` with `Content-Length`, `PUT ?digest=`.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

/// Upload sessions by id: the running sha256 and the length so far.
type Sessions = Arc<Mutex<HashMap<u64, (Sha256, u64)>>>;

/// Serves until the process is killed.
pub fn run(listen: &str) -> io::Result<()> {
    let listener = TcpListener::bind(listen)?;
    eprintln!("hash-sink: listening on {}", listener.local_addr()?);
    serve_forever(listener)
}

fn serve_forever(listener: TcpListener) -> io::Result<()> {
    let sessions: Sessions = Arc::default();
    let next_id = Arc::new(AtomicU64::new(1));
    for conn in listener.incoming() {
        let conn = conn?;
        let (sessions, next_id) = (sessions.clone(), next_id.clone());
        std::thread::spawn(move || {
            if let Err(e) = serve(conn, &sessions, &next_id) {
                if e.kind() != io::ErrorKind::UnexpectedEof {
                    eprintln!("hash-sink: connection ended: {e}");
                }
            }
        });
    }
    Ok(())
}

/// One request head: method, target and the only two headers the sink needs.
struct Head {
    method: String,
    target: String,
    content_length: u64,
    chunked: bool,
}

fn serve(conn: TcpStream, sessions: &Sessions, next_id: &AtomicU64) -> io::Result<()> {
    conn.set_nodelay(true)?;
    let mut out = conn.try_clone()?;
    let mut input = BufReader::with_capacity(1 << 20, conn);
    loop {
        let head = read_head(&mut input)?;
        if head.chunked {
            // push-chunked always sends a length; anything else is not what the sink is for.
            respond(&mut out, "411 Length Required", &[])?;
            return Ok(());
        }
        let path = head.target.split('?').next().unwrap_or("");
        let id: Option<u64> = path.rsplit('/').next().and_then(|s| s.parse().ok());
        match head.method.as_str() {
            "POST" if path.ends_with("/blobs/uploads/") => {
                discard(&mut input, head.content_length)?;
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                lock(sessions).insert(id, (Sha256::new(), 0));
                let location = format!("{path}{id}");
                respond(&mut out, "202 Accepted", &[("Location", &location)])?;
            }
            "PATCH" => {
                let taken = id.and_then(|id| Some((id, lock(sessions).remove(&id)?)));
                let Some((id, mut session)) = taken else {
                    discard(&mut input, head.content_length)?;
                    respond(&mut out, "404 Not Found", &[])?;
                    continue;
                };
                hash_body(&mut input, head.content_length, &mut session.0)?;
                session.1 += head.content_length;
                let range = format!("0-{}", session.1.saturating_sub(1));
                lock(sessions).insert(id, session);
                respond(
                    &mut out,
                    "202 Accepted",
                    &[("Location", path), ("Range", &range)],
                )?;
            }
            "PUT" => {
                let expected = query_digest(&head.target);
                let session = id.and_then(|id| lock(sessions).remove(&id));
                let Some((mut hasher, _)) = session else {
                    discard(&mut input, head.content_length)?;
                    respond(&mut out, "404 Not Found", &[])?;
                    continue;
                };
                hash_body(&mut input, head.content_length, &mut hasher)?;
                let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
                if expected.as_deref() == Some(actual.as_str()) {
                    respond(
                        &mut out,
                        "201 Created",
                        &[("Docker-Content-Digest", &actual)],
                    )?;
                } else {
                    respond(&mut out, "400 Bad Request", &[])?;
                }
            }
            _ => {
                discard(&mut input, head.content_length)?;
                respond(&mut out, "200 OK", &[])?;
            }
        }
    }
}

fn read_head(input: &mut impl BufRead) -> io::Result<Head> {
    let mut line = String::new();
    if input.read_line(&mut line)? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let mut words = line.split_whitespace();
    let (method, target) = match (words.next(), words.next()) {
        (Some(m), Some(t)) => (m.to_string(), t.to_string()),
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "bad request line",
            ))
        }
    };
    let mut head = Head {
        method,
        target,
        content_length: 0,
        chunked: false,
    };
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end();
        if line.is_empty() {
            return Ok(head);
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            head.content_length = value
                .parse()
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad Content-Length"))?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = value.eq_ignore_ascii_case("chunked");
        }
    }
}

/// Hashes exactly `len` body bytes straight from the reader's buffer.
fn hash_body(input: &mut impl BufRead, mut len: u64, hasher: &mut Sha256) -> io::Result<()> {
    while len > 0 {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let n = buf.len().min(len as usize);
        hasher.update(&buf[..n]);
        input.consume(n);
        len -= n as u64;
    }
    Ok(())
}

fn discard(input: &mut impl Read, len: u64) -> io::Result<()> {
    io::copy(&mut input.take(len), &mut io::sink()).map(|_| ())
}

fn respond(out: &mut impl Write, status: &str, headers: &[(&str, &str)]) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())
}

fn query_digest(target: &str) -> Option<String> {
    let query = target.split_once('?')?.1;
    query.split('&').find_map(|kv| {
        let value = kv.strip_prefix("digest=")?;
        Some(value.replace("%3A", ":").replace("%3a", ":"))
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends one request on `conn` and returns the response head.
    fn exchange(conn: &mut BufReader<TcpStream>, request: &str, body: &[u8]) -> String {
        let stream = conn.get_mut();
        stream.write_all(request.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        let mut head = String::new();
        loop {
            let n = conn.read_line(&mut head).unwrap();
            if n == 0 || head.ends_with("\r\n\r\n") {
                return head;
            }
        }
    }

    fn header<'a>(head: &'a str, name: &str) -> &'a str {
        head.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
            .unwrap_or_else(|| panic!("no {name} in {head}"))
    }

    fn push(conn: &mut BufReader<TcpStream>, parts: &[&[u8]], digest: &str) -> String {
        let post = "POST /v2/a/blobs/uploads/ HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
        let head = exchange(conn, post, b"");
        assert!(head.starts_with("HTTP/1.1 202"), "{head}");
        let mut location = header(&head, "Location").to_string();
        for part in parts {
            let patch = format!(
                "PATCH {location} HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
                part.len()
            );
            let head = exchange(conn, &patch, part);
            assert!(head.starts_with("HTTP/1.1 202"), "{head}");
            location = header(&head, "Location").to_string();
        }
        let put = format!("PUT {location}?digest={digest} HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        exchange(conn, &put, b"")
    }

    #[test]
    fn checks_the_digest_of_a_chunked_push() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || serve_forever(listener));
        let mut conn = BufReader::new(TcpStream::connect(addr).unwrap());
        let parts: [&[u8]; 3] = [b"hello ", b"chunked ", b"world"];
        let digest = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(b"hello chunked world"))
        );

        let head = push(&mut conn, &parts, &digest);
        assert!(head.starts_with("HTTP/1.1 201"), "{head}");
        assert_eq!(header(&head, "Docker-Content-Digest"), digest);

        let wrong = format!("sha256:{}", hex::encode(Sha256::digest(b"something else")));
        let head = push(&mut conn, &parts, &wrong);
        assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    }
}
