"""The well-behaved client: a few threads in a child process that push small blobs and pull a
manifest and a blob at a steady pace, timing every request.

It runs in its own process so that the attacks, which run in the tool's main process, cannot
slow it down through Python's global interpreter lock: what it measures is the server."""

import http.client
import multiprocessing
import os
import threading
import time

from harness import wire

REPO = "wb/app"
BLOB_REPO = "wb/blobs"
TAG = "latest"
THREADS = 2
# Each thread pushes a blob, pulls the manifest and pulls the layer once per period.
PERIOD = 0.05
SMALL_BLOB = 4096
LAYER = 64 << 10
# A new connection every so many requests, so that connection admission is measured too.
RECONNECT_EVERY = 30
REQUEST_TIMEOUT = 10
ERROR_SAMPLES = 8
SLOW_KEPT = 20


def seed(target):
    """Pushes the image the client pulls; returns what the client needs to know of it."""
    layer = os.urandom(LAYER)
    manifest = wire.push_image(target, REPO, TAG, layer)
    return {"manifest": manifest, "layer": wire.digest_of(layer)}


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.latencies = []
        self.by_op = {}
        self.slow = []  # (seconds into the run, request, ms) of the slowest requests
        self.errors = 0
        self.samples = []
        self.refused_full = 0
        self.pushed = []

    def error(self, what):
        with self.lock:
            self.errors += 1
            if len(self.samples) < ERROR_SAMPLES:
                self.samples.append(what)


def worker(target, image, seconds, deadline, allow_full, tally):
    conn = None
    used = 0
    next_at = time.monotonic()

    def push(conn):
        status, digest = wire.push_blob(conn, BLOB_REPO, os.urandom(SMALL_BLOB))
        if status == 201:
            with tally.lock:
                tally.pushed.append((BLOB_REPO, digest))
            return None
        if status == 507 and allow_full:
            with tally.lock:
                tally.refused_full += 1
            return None
        return f"push: status {status}"

    def pull(path, digest, headers=None):
        def op(conn):
            status, _, body = wire.request(conn, "GET", path, headers=headers)
            if status != 200:
                return f"GET {path}: status {status}"
            if wire.digest_of(body) != digest:
                return f"GET {path}: content differs"
            return None
        return op

    ops = [
        ("push", push),
        ("manifest GET", pull(f"/v2/{REPO}/manifests/{TAG}", image["manifest"],
                              {"Accept": wire.MANIFEST_TYPE})),
        ("blob GET", pull(f"/v2/{REPO}/blobs/{image['layer']}", image["layer"])),
    ]
    while time.monotonic() < deadline:
        for name, op in ops:
            if conn is None or used >= RECONNECT_EVERY:
                if conn is not None:
                    conn.close()
                conn = wire.connect(target, REQUEST_TIMEOUT)
                used = 0
            used += 1
            started = time.perf_counter()
            try:
                failure = op(conn)
            except (OSError, http.client.HTTPException) as e:
                failure = f"{name}: {type(e).__name__}: {e}"
                conn.close()
                conn = None
            elapsed = (time.perf_counter() - started) * 1000
            with tally.lock:
                tally.latencies.append(elapsed)
                tally.by_op.setdefault(name, []).append(elapsed)
                tally.slow.append((round(time.monotonic() - (deadline - seconds), 2), name,
                                   round(elapsed, 1)))
                if len(tally.slow) > 4 * SLOW_KEPT:
                    tally.slow = sorted(tally.slow, key=lambda s: -s[2])[:SLOW_KEPT]
            if failure:
                tally.error(failure)
        next_at += PERIOD
        now = time.monotonic()
        if next_at > now:
            time.sleep(next_at - now)
        else:
            next_at = now  # late: carry on without a burst to catch up
    if conn is not None:
        conn.close()


def run(target, image, seconds, allow_full, out):
    target = wire.Target(*target)
    tally = Tally()
    deadline = time.monotonic() + seconds
    threads = [threading.Thread(target=worker,
                                args=(target, image, seconds, deadline, allow_full, tally))
               for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put({
        "latencies": tally.latencies,
        "by_op": tally.by_op,
        "slow": sorted(tally.slow, key=lambda s: -s[2])[:SLOW_KEPT],
        "errors": tally.errors,
        "samples": tally.samples,
        "refused_full": tally.refused_full,
        "pushed": tally.pushed,
    })


class Running:
    """A well-behaved client running in a child process for `seconds`."""

    def __init__(self, target, image, seconds, allow_full=False):
        ctx = multiprocessing.get_context("spawn")
        self.seconds = seconds
        self.queue = ctx.Queue()
        self.proc = ctx.Process(target=run, args=(tuple(target), image, seconds, allow_full,
                                                  self.queue), daemon=True)
        self.proc.start()

    def result(self):
        try:
            out = self.queue.get(timeout=self.seconds + 60)
        except Exception:  # queue.Empty: the child died or hung
            self.proc.kill()
            out = {"latencies": [], "by_op": {}, "slow": [], "errors": 1,
                   "samples": ["the client process gave no result"], "refused_full": 0,
                   "pushed": []}
        self.proc.join(10)
        return out
