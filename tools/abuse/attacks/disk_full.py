"""Disk full: a berth of its own whose data directory is on a 256 MiB tmpfs mounted for the
run (which needs root; without it the attack is reported as not run). A 48 MiB filler file is
put on the tmpfs before berth starts. The attack pushes 1 MiB blobs (single-request POST) and
4 MiB blobs (POST, PATCH, PUT) until berth refuses them with 507, keeps the disk full for a
while (pushing and pulling on), then deletes the filler file and checks that pushes are
accepted again and that every blob berth acknowledged, before and after, still verifies.

The well-behaved client runs against this berth too (with its own idle baseline there); a
push of its answered 507 while the disk is full is counted as refused, not as an error."""

import http.client
import os
import subprocess

import time

from attacks import Attack, NotRun
from harness import wire
from harness.server import Berth

REPO = "abuse/fill"
TMPFS_SIZE = "256m"
FILLER = 48 << 20
SMALL = 1 << 20
LARGE = 4 << 20


class DiskFull(Attack):
    name = "disk-full"
    title = "disk full (256 MiB tmpfs), then space freed"
    allow_full = True

    def __init__(self):
        self.mount = None
        self.acknowledged = []

    def server(self, run):
        if os.geteuid() != 0:
            raise NotRun("mounting a tmpfs needs root")
        self.mount = os.path.join(run.workdir, "small")
        os.makedirs(self.mount, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs",
                               self.mount], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if done.returncode != 0:
            self.mount = None
            raise NotRun(f"mount -t tmpfs failed: {done.stderr.decode().strip()}")
        self.filler = os.path.join(self.mount, "filler")
        with open(self.filler, "wb") as f:
            block = b"\0" * (1 << 20)
            for _ in range(FILLER >> 20):
                f.write(block)
        berth = Berth(run.binary, os.path.join(self.mount, "data"),
                      os.path.join(run.workdir, "berth-disk-full.log"), run.berth_args,
                      name="disk-full")
        return berth.start()

    def push(self, conn, size, statuses):
        """One push of `size` bytes; records its outcome and returns the connection to use
        next (a new one after a transport failure)."""
        data = os.urandom(size)
        try:
            if size <= SMALL:
                status, digest = wire.push_blob(conn, REPO, data)
            else:
                status, digest, _ = wire.push_chunked(
                    conn, REPO, (data[i:i + SMALL] for i in range(0, size, SMALL)))
        except (OSError, http.client.HTTPException, RuntimeError) as e:
            status, digest = type(e).__name__, None
            conn.close()
            conn = wire.connect(self.target, 30)
        key = f"{'1 MiB' if size <= SMALL else '4 MiB'} {status}"
        statuses[key] = statuses.get(key, 0) + 1
        if status == 201:
            self.acknowledged.append((REPO, digest))
        return conn, status

    def attack(self, run, berth, deadline):
        self.target = berth.target
        started = time.monotonic()
        window = deadline - started
        conn = wire.connect(self.target, 30)
        fill, full, after = {}, {}, {}
        # Fill until berth refuses ten pushes in a row, within the first 40 % of the window.
        refusals, pushes = 0, 0
        while refusals < 10 and time.monotonic() < started + 0.4 * window:
            size = LARGE if pushes % 4 == 3 else SMALL
            conn, status = self.push(conn, size, fill)
            pushes += 1
            refusals = refusals + 1 if status != 201 else 0
        full_at = time.monotonic() - started
        free_full = os.statvfs(self.mount).f_bavail * os.statvfs(self.mount).f_frsize
        stored = len(self.acknowledged)
        # Keep it full until half the window: more pushes, and pulls of what is there.
        pulls_ok, pulls = 0, 0
        while time.monotonic() < started + 0.5 * window:
            conn, _ = self.push(conn, SMALL if pushes % 2 else LARGE, full)
            pushes += 1
            if self.acknowledged:
                repo, digest = self.acknowledged[pulls % len(self.acknowledged)]
                pulls += 1
                try:
                    status, _, body = wire.request(conn, "GET", f"/v2/{repo}/blobs/{digest}")
                    pulls_ok += status == 200 and wire.digest_of(body) == digest
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = wire.connect(self.target, 30)
            time.sleep(0.1)
        # Free space, then push again.
        os.remove(self.filler)
        freed_at = time.monotonic() - started
        accepted = 0
        for i in range(12):
            conn, status = self.push(conn, LARGE if i % 4 == 3 else SMALL, after)
            accepted += status == 201
        conn.close()
        failures = wire.verify_blobs(self.target, self.acknowledged)
        self.resumed = accepted == 12 and not failures
        time.sleep(max(0, deadline - time.monotonic()))

        def fmt(d):
            return ", ".join(f"{k}×{v}" for k, v in sorted(d.items())) or "none"
        notes = [
            f"filling ({full_at:.1f} s): {fmt(fill)}; {stored} blobs stored, "
            f"{free_full >> 10} KiB free on the tmpfs when full",
            f"while full: {fmt(full)}; pulls {pulls_ok}/{pulls} verified",
            f"filler deleted at {freed_at:.1f} s; then: {fmt(after)}",
            f"every blob acknowledged ({len(self.acknowledged)}) verifies: "
            + ("yes" if not failures else f"NO, {len(failures)} fail, e.g. {failures[:3]}"),
        ]
        return notes

    def teardown(self, run, berth):
        if berth is not None:
            berth.stop()
        if self.mount:
            if subprocess.run(["umount", self.mount], stderr=subprocess.DEVNULL).returncode != 0:
                subprocess.run(["umount", "-l", self.mount], stderr=subprocess.DEVNULL)
