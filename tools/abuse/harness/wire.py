"""HTTP over loopback with the standard library: connections to a berth, the pushes and
checks the attacks and the well-behaved client share, and raw exchanges for requests that
http.client refuses to send."""

import collections
import concurrent.futures
import hashlib
import http.client
import json
import socket
import ssl
import threading

Target = collections.namedtuple("Target", "host port tls")

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tls_context(alpn=("http/1.1",)):
    """A client context for berth's throwaway self-signed certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(list(alpn))
    return ctx


def connect(target, timeout=10):
    if target.tls:
        return http.client.HTTPSConnection(target.host, target.port, timeout=timeout,
                                           context=tls_context())
    return http.client.HTTPConnection(target.host, target.port, timeout=timeout)


def raw_socket(target, timeout=10):
    """A connected socket (TLS-wrapped for a TLS target) for hand-made requests."""
    sock = socket.create_connection((target.host, target.port), timeout=timeout)
    if target.tls:
        sock = tls_context().wrap_socket(sock, server_hostname=target.host)
    return sock


def request(conn, method, path, body=None, headers=None):
    """One exchange on `conn`: (status, headers, body). Raises on a transport failure."""
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def healthz(target, timeout=5):
    try:
        conn = connect(target, timeout)
        try:
            status, _, _ = request(conn, "GET", "/healthz")
            return status == 200
        finally:
            conn.close()
    except OSError:
        return False


def push_blob(conn, repo, data):
    """Single-request monolithic push (POST ?digest= with the body); returns the status."""
    digest = digest_of(data)
    status, _, _ = request(conn, "POST", f"/v2/{repo}/blobs/uploads/?digest={digest}", data,
                           {"Content-Type": "application/octet-stream"})
    return status, digest


def start_session(conn, repo):
    """POST an upload session; returns its Location path or raises."""
    status, headers, body = request(conn, "POST", f"/v2/{repo}/blobs/uploads/", b"",
                                    {"Content-Length": "0"})
    if status != 202:
        raise RuntimeError(f"POST upload: {status} {body[:200]!r}")
    return headers["location"]


def with_query(location, query):
    return location + ("&" if "?" in location else "?") + query


def push_chunked(conn, repo, chunks):
    """POST, one PATCH per chunk (with Content-Range), PUT ?digest=; `chunks` is an iterable
    of bytes, hashed as it is sent. Returns (status of the PUT, digest, size)."""
    location = start_session(conn, repo)
    sha = hashlib.sha256()
    offset = 0
    for chunk in chunks:
        sha.update(chunk)
        status, headers, body = request(conn, "PATCH", location, chunk, {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
        })
        if status != 202:
            return status, None, offset
        location = headers["location"]
        offset += len(chunk)
    digest = "sha256:" + sha.hexdigest()
    status, _, _ = request(conn, "PUT", with_query(location, f"digest={digest}"), b"",
                           {"Content-Length": "0"})
    return status, digest, offset


def push_image(target, repo, tag, layer):
    """A config, one layer and an OCI manifest under `tag`; returns the manifest's digest."""
    conn = connect(target)
    try:
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        for blob in (config, layer):
            status, _ = push_blob(conn, repo, blob)
            if status != 201:
                raise RuntimeError(f"pushing a blob of {repo}: {status}")
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "digest": digest_of(config), "size": len(config)},
            "layers": [{"mediaType": LAYER_TYPE, "digest": digest_of(layer), "size": len(layer)}],
        }).encode()
        status, _, body = request(conn, "PUT", f"/v2/{repo}/manifests/{tag}", manifest,
                                  {"Content-Type": MANIFEST_TYPE})
        if status != 201:
            raise RuntimeError(f"pushing the manifest of {repo}: {status} {body[:200]!r}")
        return digest_of(manifest)
    finally:
        conn.close()


def verify_blobs(target, blobs, threads=4):
    """GETs every (repo, digest) and checks the sha256 of what comes back. Returns the list
    of failures as (repo, digest, what)."""
    blobs = list(blobs)
    failures = []
    lock = threading.Lock()

    def worker(part):
        conn = connect(target, timeout=30)
        try:
            for repo, digest in part:
                try:
                    status, _, body = request(conn, "GET", f"/v2/{repo}/blobs/{digest}")
                    if status != 200:
                        what = f"status {status}"
                    elif digest_of(body) != digest:
                        what = "content differs"
                    else:
                        continue
                except (OSError, http.client.HTTPException) as e:
                    conn.close()
                    conn = connect(target, timeout=30)
                    what = f"{type(e).__name__}: {e}"
                with lock:
                    failures.append((repo, digest, what))
        finally:
            conn.close()

    parts = [blobs[i::threads] for i in range(threads)]
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, parts))
    return failures


def read_status_line(sock, limit=65536):
    """Reads from `sock` until a response's status line is complete; returns the status code,
    or None when the server closed without answering. Raises socket.timeout on silence."""
    buf = b""
    while b"\r\n" not in buf and len(buf) < limit:
        chunk = sock.recv(4096)
        if not chunk:
            break
        buf += chunk
    line = buf.split(b"\r\n", 1)[0].split()
    if len(line) >= 2 and line[0].startswith(b"HTTP/") and line[1].isdigit():
        return int(line[1])
    return None


def metric(target, name):
    """The value of one unlabelled metric from /metrics, or None."""
    try:
        conn = connect(target, 10)
        try:
            status, _, body = request(conn, "GET", "/metrics")
        finally:
            conn.close()
    except (OSError, http.client.HTTPException):
        return None
    if status != 200:
        return None
    for line in body.decode(errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == name:
            return float(parts[1])
    return None


def read_status_line_from(data):
    line = data.split(b"\r\n", 1)[0].split()
    if len(line) >= 2 and line[0].startswith(b"HTTP/") and line[1].isdigit():
        return int(line[1])
    return None
