"""Oversized heads and bodies: 1 MiB request heads (one header, or many small ones), manifest
PUTs of 5 MiB (over the 4 MiB default limit, with a Content-Length or chunked), and blob
uploads declaring more than the data disk has free (monolithic POST, PATCH and PUT). Four
workers repeat the round, a second apart, for the first half of the window.

Then, for the second half, manifest PUTs just within the limit: 64 connections each declare a
4 MiB manifest, send all of it but the last 64 KiB and stop, held open to the end of the
window (berth's RssAnon is read before and after)."""

import concurrent.futures
import os
import threading
import time

from attacks import Attack
from harness import wire

REPO = "abuse/big"
HEAD_BYTES = 1 << 20
MANIFEST_BYTES = 5 << 20
WORKERS = 4
MAX_ROUNDS = 200
PAUSE = 1.0
STALLED_MANIFESTS = 64
MANIFEST_LIMIT = 4 << 20  # berth's default --max-manifest-bytes


def exchange(target, head, body=b"", chunks=None):
    """Sends a hand-made request and returns its status, "closed" when the server closed
    without answering, or "timeout". A server that stops reading and answers early is fine:
    the answer is read whatever happened to the sending."""
    try:
        sock = wire.raw_socket(target, timeout=15)
    except OSError as e:
        return f"connect {type(e).__name__}"
    try:
        try:
            sock.sendall(head)
            if chunks is not None:
                for chunk in chunks:
                    sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                sock.sendall(b"0\r\n\r\n")
            elif body:
                sock.sendall(body)
        except OSError:
            pass
        try:
            status = wire.read_status_line(sock)
        except TimeoutError:
            return "timeout"
        except OSError:
            return "closed"
        return status if status is not None else "closed"
    finally:
        sock.close()


class Oversized(Attack):
    name = "oversized"
    title = "oversized headers and bodies"

    def attack(self, run, berth, deadline):
        target = berth.target
        st = os.statvfs(berth.data)
        too_big = 2 * st.f_bavail * st.f_frsize + (1 << 30)
        manifest = (b'{"schemaVersion":2,"mediaType":"' + wire.MANIFEST_TYPE.encode()
                    + b'","annotations":{"x":"')
        manifest += b"a" * (MANIFEST_BYTES - len(manifest) - 3) + b'"}}'
        one_mib = os.urandom(1 << 20)
        lock = threading.Lock()
        tally = {}
        rounds = [0]

        def note(kind, status):
            with lock:
                tally.setdefault(kind, {})
                tally[kind][str(status)] = tally[kind].get(str(status), 0) + 1

        def one_round():
            host = "Host: 127.0.0.1\r\n"
            start = b"GET /v2/ HTTP/1.1\r\n" + host.encode()
            big = start + b"X-Big: " + b"a" * HEAD_BYTES + b"\r\n\r\n"
            note("1 MiB header", exchange(target, big))
            many = b"".join(b"X-H%05d: %s\r\n" % (i, b"b" * 54) for i in range(HEAD_BYTES // 64))
            note("1 MiB of headers", exchange(target, start + many + b"\r\n"))
            put = (f"PUT /v2/{REPO}/manifests/v1 HTTP/1.1\r\n{host}"
                   f"Content-Type: {wire.MANIFEST_TYPE}\r\n")
            note("manifest 5 MiB (length)", exchange(
                target, f"{put}Content-Length: {len(manifest)}\r\n\r\n".encode(), manifest))
            note("manifest 5 MiB (chunked)", exchange(
                target, f"{put}Transfer-Encoding: chunked\r\n\r\n".encode(),
                chunks=[manifest[i:i + (256 << 10)] for i in range(0, len(manifest), 256 << 10)]))
            digest = "sha256:" + os.urandom(32).hex()
            note("POST ?digest= > free", exchange(target, (
                f"POST /v2/{REPO}/blobs/uploads/?digest={digest} HTTP/1.1\r\n{host}"
                f"Content-Type: application/octet-stream\r\nContent-Length: {too_big}\r\n\r\n"
            ).encode(), one_mib))
            conn = wire.connect(target, 15)
            try:
                location = wire.start_session(conn, REPO)
            except Exception as e:  # noqa: BLE001 - any failure is recorded, not raised
                note("POST session", type(e).__name__)
                return
            finally:
                conn.close()
            note("PATCH > free", exchange(target, (
                f"PATCH {location} HTTP/1.1\r\n{host}Content-Type: application/octet-stream\r\n"
                f"Content-Length: {too_big}\r\n\r\n").encode(), one_mib))
            note("PUT > free", exchange(target, (
                f"PUT {wire.with_query(location, 'digest=' + digest)} HTTP/1.1\r\n{host}"
                f"Content-Type: application/octet-stream\r\nContent-Length: {too_big}\r\n\r\n"
            ).encode(), one_mib))
            conn = wire.connect(target, 15)
            try:
                wire.request(conn, "DELETE", location)
            except OSError:
                pass
            finally:
                conn.close()

        half = time.monotonic() + (deadline - time.monotonic()) / 2

        def worker():
            while time.monotonic() < half:
                with lock:
                    if rounds[0] >= MAX_ROUNDS:
                        return
                    rounds[0] += 1
                one_round()
                time.sleep(min(PAUSE, max(0, half - time.monotonic())))

        with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
            for f in [pool.submit(worker) for _ in range(WORKERS)]:
                f.result()
        notes = [f"{rounds[0]} rounds by {WORKERS} workers; declared upload size {too_big} bytes"]
        for kind, statuses in tally.items():
            notes.append(f"{kind}: " + ", ".join(f"{k}×{v}" for k, v in sorted(statuses.items())))
        notes.append(self.stalled_manifests(berth, deadline))
        return notes

    def stalled_manifests(self, berth, deadline):
        before = berth.rss_anon_mib()
        body = b'{"schemaVersion":2,"x":"' + b"a" * (MANIFEST_LIMIT - (64 << 10)) + b'"'
        head = (f"PUT /v2/{REPO}/manifests/held HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Type: {wire.MANIFEST_TYPE}\r\nContent-Length: {MANIFEST_LIMIT}\r\n\r\n").encode()
        held, failed = [], 0
        for _ in range(STALLED_MANIFESTS):
            if time.monotonic() >= deadline:
                break
            try:
                sock = wire.raw_socket(berth.target, timeout=15)
                sock.sendall(head + body)
                held.append(sock)
            except OSError:
                failed += 1
        time.sleep(min(1, max(0, deadline - time.monotonic())))
        after = berth.rss_anon_mib()
        time.sleep(max(0, deadline - time.monotonic()))
        answered = 0
        for sock in held:
            sock.setblocking(False)
            try:
                answered += bool(sock.recv(1))
            except OSError:
                pass
            sock.close()
        return (f"{len(held)} manifest PUTs declaring {MANIFEST_LIMIT >> 20} MiB held after "
                f"{(MANIFEST_LIMIT - (64 << 10)) >> 10} KiB ({failed} failed to send, {answered} "
                f"answered before the end): RssAnon {before:.0f} MiB before, {after:.0f} MiB after")
