"""Random and mutated requests: bad names, bad digests, bad ranges, bad JSON manifests,
invalid UTF-8, path tricks, random methods, contradictory framing, and valid requests with
random bytes flipped, inserted or removed. A few thousand, each on its own connection,
spread over the window by four workers. Only the repository `abuse/fuzz` is ever named, and
`/admin/` only with GET, so nothing here can touch what the well-behaved client pushed.

A request is judged by its answer: a 5xx other than 503 and 507 is noted (with the request
kind), as is a request that got no answer at all within the timeout."""

import concurrent.futures
import json
import os
import random
import threading
import time

from attacks import Attack
from harness import wire

REPO = "abuse/fuzz"
WORKERS = 4
TIMEOUT = 3.0
SAMPLES = 6
HEX = "0123456789abcdef"


def hexes(rng, n):
    return "".join(rng.choice(HEX) for _ in range(n))


BAD_NAMES = ["UPPER/case", "a..b", "-lead", "trail-", "a//b", "a/./b", "a/../b", "x" * 300,
             "\u00e4/\u00f6", "a b", "a%20b", "a%2Fb", "a%2fb", ".", "..", "_", "a___b",
             "a:b", "a@b", "a%00b", "a/" * 100 + "b", "%2e%2e/abuse", "abuse/fuzz%2F..%2F..",
             "abuse/fuzz/" + "%C0%AF", "abuse\\fuzz", "abuse/fuzz;x=1"]


def bad_digests(rng):
    h = hexes(rng, 64)
    return ["sha256:", "sha256:" + h[:63], "sha256:" + h + "0", "sha256:" + h.upper(),
            "sha512:" + h, "md5:" + h[:32], "sha256:" + "g" * 64, "sha256" + h, ":" + h,
            "SHA256:" + h, "sha256:" + h * 50, "sha256+b64:abc", "a:b:c", "sha256:%00" + h[:62],
            "sha256:" + h[:32] + "%2F" + h[32:], "sha384:" + hexes(rng, 96), "blake3:" + h]


RANGES = ["bytes=99999999-", "bytes=10-5", "bytes=-0", "bytes=a-b", "bytes=0-1,2-3", "bytes=",
          "items=0-1", "bytes=-99999999999999999999", "bytes=18446744073709551615-",
          "bytes=0-18446744073709551616", "bytes=--1", "bytes=0-0,-1", "bytes= 1 - 2",
          "bytes=65535-65536", "bytes=0-65535", "bytes=65536-"]
CONTENT_RANGES = ["5-2", "0-", "-1-5", "a-b", "0-99999999999999999999", "bytes 0-5/6", "0-0",
                  "1-10", "18446744073709551615-18446744073709551615", "", "0--1", "0-4294967296"]
METHODS = ["FOO", "PROPFIND", "TRACE", "OPTIONS", "get", "Get", "PATCH", "PUT", "DELETE", "HEAD",
           "M" * 200, "GET\x7f", "BREW", "MKCOL", "LINK", "PRI", "POST"]
TYPES = [wire.MANIFEST_TYPE, "application/vnd.oci.image.index.v1+json",
         "application/vnd.docker.distribution.manifest.v2+json",
         "application/vnd.docker.distribution.manifest.list.v2+json", "text/plain", "",
         "application/json; charset=utf-8", "x" * 5000]


class Fuzz(Attack):
    name = "fuzz"
    title = "random and mutated requests"

    def setup(self, run, berth):
        layer = os.urandom(64 << 10)
        self.manifest_digest = wire.push_image(berth.target, REPO, "v1", layer)
        self.layer = wire.digest_of(layer)
        conn = wire.connect(berth.target)
        try:
            self.sessions = [wire.start_session(conn, REPO) for _ in range(20)]
            status, _, body = wire.request(conn, "GET", f"/v2/{REPO}/manifests/v1",
                                           headers={"Accept": wire.MANIFEST_TYPE})
            self.manifest = body if status == 200 else b"{}"
        finally:
            conn.close()

    # Each generator returns (kind, request bytes, complete): `complete` is False when the
    # request deliberately promises more body than it sends.
    def request(self, rng):
        kind = rng.choice(["name", "digest", "range", "json", "utf8", "path", "method",
                           "framing", "mutated", "mutated"])
        return getattr(self, "gen_" + kind)(rng)

    @staticmethod
    def build(method, path, headers=(), body=b"", length=True):
        if isinstance(path, str):
            path = path.encode("utf-8", "surrogateescape")
        head = method.encode("latin-1", "replace") + b" " + path + b" HTTP/1.1\r\n"
        head += b"Host: 127.0.0.1\r\nConnection: close\r\n"
        for name, value in headers:
            if isinstance(value, str):
                value = value.encode("utf-8", "surrogateescape")
            head += name.encode() + b": " + value + b"\r\n"
        if length and body is not None:
            head += b"Content-Length: %d\r\n" % len(body)
        return head + b"\r\n" + (body or b"")

    def gen_name(self, rng):
        name = rng.choice(BAD_NAMES)
        d = self.layer
        path = rng.choice([f"/v2/{name}/tags/list", f"/v2/{name}/manifests/v1",
                           f"/v2/{name}/blobs/{d}", f"/v2/{name}/blobs/uploads/",
                           f"/v2/{name}/referrers/{d}", f"/v2/{name}/manifests/{d}"])
        method = rng.choice(["GET", "HEAD", "POST", "PUT", "PATCH"])
        return "bad name", self.build(method, path, body=b""), True

    def gen_digest(self, rng):
        bad = rng.choice(bad_digests(rng))
        choice = rng.randrange(5)
        if choice == 0:
            return "bad digest", self.build("GET", f"/v2/{REPO}/blobs/{bad}"), True
        if choice == 1:
            return "bad digest", self.build("HEAD", f"/v2/{REPO}/manifests/{bad}"), True
        if choice == 2:
            return "bad digest", self.build("POST", f"/v2/{REPO}/blobs/uploads/?digest={bad}",
                                            body=os.urandom(rng.randrange(64))), True
        if choice == 3:
            loc = rng.choice(self.sessions)
            return "bad digest", self.build("PUT", wire.with_query(loc, f"digest={bad}"),
                                            body=b""), True
        return "bad digest", self.build(
            "POST", f"/v2/{REPO}/blobs/uploads/?mount={bad}&from={REPO}", body=b""), True

    def gen_range(self, rng):
        if rng.random() < 0.5:
            return "bad range", self.build("GET", f"/v2/{REPO}/blobs/{self.layer}",
                                           [("Range", rng.choice(RANGES))]), True
        loc = rng.choice(self.sessions)
        body = os.urandom(rng.randrange(0, 32))
        method = rng.choice(["PATCH", "PUT"])
        path = loc if method == "PATCH" else wire.with_query(loc, "digest=" + wire.digest_of(body))
        return "bad range", self.build(method, path, [("Content-Range", rng.choice(CONTENT_RANGES)),
                                                      ("Content-Type", "application/octet-stream")],
                                       body), True

    def gen_json(self, rng):
        valid = self.manifest
        unknown = "sha256:" + hexes(rng, 64)
        bodies = [
            valid[: rng.randrange(1, max(2, len(valid)))],
            b"[" * 100000, b'{"a":' * 50000, b'{"schemaVersion": 2}', b"null", b"", b"{}",
            b'{"schemaVersion": "2", "config": 7, "layers": {}}',
            b'{"schemaVersion": 2, "size": 1e999999}', b'{"schemaVersion": 2, "schemaVersion": 1}',
            b'{"schemaVersion": 2, "x": "\\ud800"}', b'{"schemaVersion": 2, "x": "\xff\xfe"}',
            json.dumps({"schemaVersion": 2, "mediaType": wire.MANIFEST_TYPE,
                        "config": {"mediaType": wire.CONFIG_TYPE, "digest": unknown, "size": 2},
                        "layers": []}).encode(),
            json.dumps({"schemaVersion": 2, "mediaType": wire.MANIFEST_TYPE,
                        "config": {"mediaType": wire.CONFIG_TYPE, "digest": "sha256:zz", "size": -1},
                        "layers": [{"digest": self.layer, "size": 2 ** 70}]}).encode(),
            json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": [{"mediaType": wire.MANIFEST_TYPE, "digest": unknown,
                                       "size": 5}] * 1000}).encode(),
            json.dumps({"schemaVersion": 2, "mediaType": wire.MANIFEST_TYPE,
                        "subject": {"mediaType": wire.MANIFEST_TYPE, "digest": unknown, "size": 1},
                        "config": {"mediaType": wire.CONFIG_TYPE, "digest": unknown, "size": 2},
                        "layers": []}).encode(),
            valid.replace(b"schemaVersion", b"schemaVersi\xc3on"),
        ]
        body = rng.choice(bodies)
        ref = rng.choice(["v1", "t" + hexes(rng, 6), wire.digest_of(body), unknown, "x" * 129])
        return "bad manifest", self.build("PUT", f"/v2/{REPO}/manifests/{ref}",
                                          [("Content-Type", rng.choice(TYPES))], body), True

    def gen_utf8(self, rng):
        junk = bytes(rng.choice([0xff, 0xfe, 0xc0, 0xaf, 0x80, 0xed, 0xa0]) for _ in range(4))
        choice = rng.randrange(4)
        if choice == 0:
            path = b"/v2/abuse/fuzz" + junk + b"/tags/list"
            return "invalid UTF-8", self.build("GET", path), True
        if choice == 1:
            return "invalid UTF-8", self.build("GET", f"/v2/{REPO}/manifests/v1",
                                               [("Accept", junk.decode("latin-1").encode("latin-1")),
                                                ("X-Junk", junk)]), True
        if choice == 2:
            path = f"/v2/{REPO}/tags/list?last=%ff%fe&n=%c0"
            return "invalid UTF-8", self.build("GET", path), True
        return "invalid UTF-8", self.build("GET", b"/v2/" + junk + b"/manifests/" + junk), True

    def gen_path(self, rng):
        path = rng.choice([
            "/v2/../admin/gc", f"/v2/{REPO}/../../admin/gc", "/v2/abuse%2Ffuzz/tags/list",
            "//v2//abuse//fuzz//tags//list", f"/v2/{REPO}/blobs/uploads/../../manifests/v1",
            "/v2/./abuse/fuzz/tags/list", "/%76%32/", f"/v2/{REPO}/tags/list?n=-1",
            f"/v2/{REPO}/tags/list?n=99999999999999999999", "/v2/_catalog?n=0",
            f"/v2/{REPO}/tags/list#frag", "http://127.0.0.1/v2/", "*",
            f"/v2/{REPO}/blobs/uploads/" + "../" * 50, "/" + "a/" * 5000,
            f"/v2/{REPO}/manifests/..", f"/v2/{REPO}/manifests/%2e%2e", "/v2/%2e%2e/admin/gc",
            "/admin/gc/../../v2/", "/admin//gc", "/v2/_catalog?n=1&last=" + "z" * 4000,
            f"/v2/{REPO}/referrers/{self.layer}?artifactType=%00",
        ])
        method = "GET" if "admin" in path else rng.choice(["GET", "HEAD", "OPTIONS"])
        return "path trick", self.build(method, path), True

    def gen_method(self, rng):
        method = rng.choice(METHODS)
        path = rng.choice([f"/v2/{REPO}/tags/list", f"/v2/{REPO}/manifests/v1", "/v2/",
                           f"/v2/{REPO}/blobs/{self.layer}", f"/v2/{REPO}/blobs/uploads/",
                           rng.choice(self.sessions), "/healthz", "/v2/_catalog"])
        if method in ("DELETE",) and "blobs" in path and "uploads" not in path:
            path = f"/v2/{REPO}/blobs/sha256:{hexes(rng, 64)}"  # never the fuzz layer itself
        body = os.urandom(rng.randrange(0, 16))
        return "random method", self.build(method, path, body=body), True

    def gen_framing(self, rng):
        base = (f"POST /v2/{REPO}/blobs/uploads/ HTTP/1.1\r\n"
                "Host: 127.0.0.1\r\nConnection: close\r\n")
        choice = rng.randrange(9)
        if choice == 0:
            return "framing", (base + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                               "5\r\nhello\r\n0\r\n\r\n").encode(), True
        if choice == 1:
            return "framing", (base + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!").encode(), True
        if choice == 2:
            return "framing", (base + "Content-Length: -1\r\n\r\n").encode(), True
        if choice == 3:
            return "framing", (base + "Content-Length: +5\r\n\r\nhello").encode(), True
        if choice == 4:
            return "framing", (base + "Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n"
                               "x\r\n0\r\n\r\n").encode(), True
        if choice == 5:
            return "framing", (base + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n").encode(), True
        if choice == 6:
            return "framing", b"GET /v2/ HTTP/1.1\nHost: 127.0.0.1\nConnection: close\n\n", True
        if choice == 7:
            return "framing", (b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Fold: a\r\n b\r\n"
                               b"NoColonHere\r\nConnection: close\r\n\r\n"), True
        return "framing", (base + "Content-Length: 100\r\n\r\nshort").encode(), False

    def gen_mutated(self, rng):
        valid = rng.choice([
            self.build("GET", f"/v2/{REPO}/manifests/v1", [("Accept", wire.MANIFEST_TYPE)]),
            self.build("GET", f"/v2/{REPO}/blobs/{self.layer}", [("Range", "bytes=0-99")]),
            self.build("HEAD", f"/v2/{REPO}/blobs/{self.layer}"),
            self.build("POST", f"/v2/{REPO}/blobs/uploads/", body=b""),
            self.build("PUT", f"/v2/{REPO}/manifests/v1", [("Content-Type", wire.MANIFEST_TYPE)],
                       self.manifest),
            self.build("PATCH", rng.choice(self.sessions), [("Content-Type", "application/octet-stream")],
                       os.urandom(100)),
            self.build("GET", f"/v2/{REPO}/tags/list?n=10"),
        ])
        data = bytearray(valid)
        for _ in range(rng.randrange(1, 9)):
            op = rng.randrange(3)
            i = rng.randrange(len(data))
            if op == 0:
                data[i] = rng.randrange(256)
            elif op == 1:
                data.insert(i, rng.randrange(256))
            elif len(data) > 1:
                del data[i]
        # A mutation may have grown a Content-Length past the body: no answer is then fine.
        return "mutated", bytes(data), False

    def attack(self, run, berth, deadline):
        target = berth.target
        count = run.fuzz_requests
        seed = run.seed
        started = time.monotonic()
        spacing = max(0.0, (deadline - started) * 0.9) / max(1, count)
        lock = threading.Lock()
        nxt = [0]
        by_status = {}
        suspicious = {}
        samples = []

        def record(kind, status, complete, req):
            with lock:
                by_status[status] = by_status.get(status, 0) + 1
                bad = (isinstance(status, int) and status >= 500 and status not in (503, 507)) \
                    or (status == "timeout" and complete)
                if bad:
                    key = f"{kind} → {status}"
                    suspicious[key] = suspicious.get(key, 0) + 1
                    if len(samples) < SAMPLES:
                        samples.append(f"{key}: {req[:160]!r}")

        def worker(n):
            rng = random.Random(seed * 1000 + n)
            while True:
                with lock:
                    i = nxt[0]
                    if i >= count:
                        return
                    nxt[0] += 1
                at = started + i * spacing
                if time.monotonic() >= deadline:
                    return
                if at > time.monotonic():
                    time.sleep(at - time.monotonic())
                kind, req, complete = self.request(rng)
                try:
                    sock = wire.raw_socket(target, timeout=TIMEOUT)
                except OSError as e:
                    record(kind, f"connect {type(e).__name__}", complete, req)
                    continue
                try:
                    try:
                        sock.sendall(req)
                    except OSError:
                        pass
                    try:
                        status = wire.read_status_line(sock)
                        status = status if status is not None else "closed"
                    except TimeoutError:
                        status = "timeout"
                    except OSError:
                        status = "closed"
                finally:
                    sock.close()
                record(kind, status, complete, req)

        with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
            for f in [pool.submit(worker, n) for n in range(WORKERS)]:
                f.result()
        sent = sum(by_status.values())
        notes = [f"{sent} requests (seed {seed}): " + ", ".join(
            f"{k}×{v}" for k, v in sorted(by_status.items(), key=lambda kv: str(kv[0])))]
        if suspicious:
            notes.append("suspicious: " + ", ".join(
                f"{k}×{v}" for k, v in sorted(suspicious.items())))
            notes += [f"  e.g. {s}" for s in samples]
        else:
            notes.append("no 5xx (other than 503/507) and no unanswered complete request")
        return notes

    def teardown(self, run, berth):
        conn = wire.connect(berth.target)
        try:
            for loc in self.sessions:
                try:
                    wire.request(conn, "DELETE", loc)
                except OSError:
                    conn.close()
                    conn = wire.connect(berth.target)
        finally:
            conn.close()
