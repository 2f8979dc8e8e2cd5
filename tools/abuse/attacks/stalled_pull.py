"""A pull that stops halfway: a 1 GiB blob is pushed first (outside the window, generated on
the fly and streamed in 16 MiB chunks), then a client GETs it, reads 512 MiB and stops
reading, holding the connection open until the window ends."""

import random
import time

from attacks import Attack
from harness import wire

REPO = "abuse/big-pull"
SIZE = 1 << 30
CHUNK = 16 << 20


class StalledPull(Attack):
    name = "stalled-pull"
    title = "1 GiB GET stalled halfway"

    def setup(self, run, berth):
        rng = random.Random(run.seed)
        conn = wire.connect(berth.target, 120)
        started = time.monotonic()
        try:
            status, digest, size = wire.push_chunked(
                conn, REPO, (rng.randbytes(CHUNK) for _ in range(SIZE // CHUNK)))
        finally:
            conn.close()
        if status != 201:
            raise RuntimeError(f"pushing the 1 GiB blob: status {status} after {size} bytes")
        self.digest = digest
        self.push_seconds = time.monotonic() - started

    def attack(self, run, berth, deadline):
        sock = wire.raw_socket(berth.target, timeout=60)
        sock.sendall(f"GET /v2/{REPO}/blobs/{self.digest} HTTP/1.1\r\n"
                     "Host: 127.0.0.1\r\n\r\n".encode())
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        head = b""
        body = 0
        started = time.monotonic()
        while b"\r\n\r\n" not in head:
            n = sock.recv_into(view)
            if n == 0:
                break
            head += bytes(view[:n])
        status = wire.read_status_line_from(head)
        body = len(head.split(b"\r\n\r\n", 1)[1]) if b"\r\n\r\n" in head else 0
        half = SIZE // 2
        while body < half and time.monotonic() < deadline:
            n = sock.recv_into(view, min(len(buf), half - body))
            if n == 0:
                break
            body += n
        read_seconds = time.monotonic() - started
        # Stop reading; hold the connection to the end of the window.
        time.sleep(max(0, deadline - time.monotonic()))
        sock.setblocking(False)
        try:
            open_at_end = len(sock.recv(1)) == 1
        except BlockingIOError:
            open_at_end = True
        except OSError:
            open_at_end = False
        sock.close()
        return [
            f"1 GiB pushed beforehand in {self.push_seconds:.1f} s; GET answered {status}, "
            f"{body >> 20} MiB read in {read_seconds:.1f} s, then nothing read for "
            f"{max(0.0, run.seconds - read_seconds):.0f} s",
            f"connection still open at the end: {'yes' if open_at_end else 'no'}",
        ]
