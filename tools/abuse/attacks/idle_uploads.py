"""Idle upload sessions: many sessions each given a partial chunk (512 KiB) and left idle,
in four phases, berth's RssAnon read after each:

1. half of the sessions get a complete 512 KiB PATCH and are then left alone;
2. a quarter are left in the middle of a PATCH that declared a 1 MiB chunk (Content-Length
   and Content-Range) and sent only 512 KiB of it, the connection held open;
3. a quarter the same with chunked transfer coding and a Content-Range (berth knows the
   chunk's length but not the body's);
4. as many single-request uploads (POST ?digest=) as phase 3 has sessions, declaring 1 MiB
   and stalled after 512 KiB, the connection held open.

Everything is held until the window ends. The sessions are cancelled after the health check,
so later attacks find free slots."""

import concurrent.futures
import http.client
import os
import threading
import time

from attacks import Attack
from harness import wire

REPO = "abuse/idle"
CHUNK = 512 << 10
DECLARED = 1 << 20
WORKERS = 8


class IdleUploads(Attack):
    name = "idle-uploads"
    title = "idle upload sessions"

    def __init__(self):
        self.locations = []

    def attack(self, run, berth, deadline):
        target = berth.target
        data = os.urandom(CHUNK)
        lock = threading.Lock()
        held = []
        statuses = {}
        count = run.upload_sessions
        quarter = count // 4
        phases = [("idle", count - 2 * quarter), ("length", quarter), ("chunked", quarter),
                  ("monolithic", quarter)]

        def note(what, status):
            with lock:
                key = f"{what} {status}"
                statuses[key] = statuses.get(key, 0) + 1

        def hold(head, body):
            sock = wire.raw_socket(target)
            sock.sendall(head + body)
            with lock:
                held.append(sock)

        def one(conn, kind):
            if kind == "monolithic":
                digest = "sha256:" + os.urandom(32).hex()
                hold((f"POST /v2/{REPO}/blobs/uploads/?digest={digest} HTTP/1.1\r\n"
                      f"Host: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
                      f"Content-Length: {DECLARED}\r\n\r\n").encode(), data)
                note("POST ?digest= stalled", "sent")
                return
            try:
                location = wire.start_session(conn, REPO)
            except RuntimeError as e:
                note("POST", str(e).split(":")[1].split()[0] if ":" in str(e) else "?")
                return
            with lock:
                self.locations.append(location)
            if kind == "idle":
                status, _, _ = wire.request(conn, "PATCH", location, data, {
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"0-{CHUNK - 1}"})
                note("PATCH", status)
                return
            framing = (f"Content-Length: {DECLARED}\r\n" if kind == "length"
                       else "Transfer-Encoding: chunked\r\n")
            head = (f"PATCH {location} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    f"Content-Type: application/octet-stream\r\n"
                    f"Content-Range: 0-{DECLARED - 1}\r\n{framing}\r\n").encode()
            body = data if kind == "length" else b"%x\r\n" % len(data) + data + b"\r\n"
            hold(head, body)
            note(f"PATCH stalled ({kind})", "sent")

        def worker(kind, n):
            conn = wire.connect(target, 30)
            try:
                for _ in range(n):
                    if time.monotonic() >= deadline:
                        return
                    try:
                        one(conn, kind)
                    except (OSError, http.client.HTTPException) as e:
                        note(f"{kind} error", type(e).__name__)
                        conn.close()
                        conn = wire.connect(target, 30)
            finally:
                conn.close()

        started = time.monotonic()
        window = deadline - run.seconds
        memory = [f"{berth.rss_anon_mib():.0f}"]
        with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
            for kind, n in phases:
                shares = [n // WORKERS + (i < n % WORKERS) for i in range(WORKERS)]
                list(pool.map(worker, [kind] * WORKERS, shares))
                time.sleep(1)  # let the last bytes land before reading the memory
                memory.append(f"{berth.rss_anon_mib():.0f} ({time.monotonic() - window:.1f} s)")
        filled = time.monotonic() - started
        # Hold everything, idle, until the window ends; then let go of the stalled bodies.
        time.sleep(max(0, deadline - time.monotonic()))
        answered = 0
        for sock in held:
            sock.setblocking(False)
            try:
                if sock.recv(1):
                    answered += 1
            except OSError:
                pass
            sock.close()
        summary = ", ".join(f"{k}×{v}" for k, v in sorted(statuses.items()))
        return [
            f"{len(self.locations)} sessions opened and {len(held)} requests left stalled in "
            f"{filled:.1f} s: {summary}; held requests answered by berth before the end: {answered}",
            "RssAnon MiB before / after each phase (s into the window) (idle sessions, stalled "
            "PATCH with Content-Length, stalled chunked PATCH with Content-Range, stalled POST "
            "?digest=): "
            + " / ".join(memory),
        ]

    def teardown(self, run, berth):
        if berth is None or not berth.alive():
            return
        conn = wire.connect(berth.target, 30)
        try:
            for location in self.locations:
                try:
                    wire.request(conn, "DELETE", location)
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = wire.connect(berth.target, 30)
        finally:
            conn.close()
