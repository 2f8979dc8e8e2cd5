#!/usr/bin/env python3
"""Hostile clients against a berth of its own, one attack at a time, while a well-behaved
client pushes and pulls beside them; prints per attack berth's peak memory and descriptors,
the well-behaved client's latency against its idle baseline and whether berth is healthy
afterwards, then the goals, PASS or FAIL per attack.

Usage: python3 tools/abuse/abuse.py [--berth PATH] [--seconds N] [--only NAME[,NAME…]]
  attacks (in this order): slowloris, idle-uploads, h2-flood, oversized, fuzz, stalled-pull,
  disk-full. See tools/abuse/README.md for what each does and the goals.
Exit status: 0 every goal met, 1 a goal failed (or the run broke down), 2 nothing failed but an
attack could not run here.
"""

import argparse
import contextlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from attacks import NotRun, all_attacks  # noqa: E402
from harness import client, report, wire  # noqa: E402
from harness.server import SERVE_FLAGS, Berth, cpu_seconds  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))
# Niceness of the attacking threads (see attacker_priority).
ATTACK_NICE = 10


def log(msg):
    print(f"[abuse] {msg}", file=sys.stderr, flush=True)


def parse_args(names):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--berth", help="berth binary (default: target/release/berth, built if missing)")
    p.add_argument("--seconds", type=float, default=20, help="length of each attack and baseline")
    p.add_argument("--only", help="comma-separated attacks to run: " + ", ".join(names))
    p.add_argument("--slowloris", type=int, default=2000, help="slowloris connections")
    p.add_argument("--sessions", type=int, default=1000, help="idle upload sessions")
    p.add_argument("--h2-connections", type=int, default=8, help="HTTP/2 connections flooded")
    p.add_argument("--fuzz", type=int, default=3000, help="random and mutated requests")
    p.add_argument("--seed", type=int, default=None, help="seed of the random requests")
    p.add_argument("--berth-arg", action="append", default=[],
                   help="extra flag for every berth started (repeatable), "
                        "e.g. --berth-arg=--max-uploads=512")
    p.add_argument("--keep", action="store_true", help="keep the work directory and logs")
    args = p.parse_args()
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in names]
        if unknown:
            p.error(f"unknown attack {', '.join(unknown)}; one of {', '.join(names)}")
        args.only = wanted
    return args


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else 1 << 20
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@contextlib.contextmanager
def attacker_priority():
    """Runs the attack's threads (the calling thread and the ones it starts) at a lower CPU
    priority than berth and the well-behaved client. On a machine of two cores the attacker
    competes with both for the CPU; in a cluster it runs elsewhere. Only as root, which can
    raise the priority again afterwards; otherwise everything runs at the same priority."""
    if os.geteuid() != 0:
        yield False
        return
    tid = threading.get_native_id()
    before = os.getpriority(os.PRIO_PROCESS, tid)
    os.setpriority(os.PRIO_PROCESS, tid, max(before, ATTACK_NICE))
    try:
        yield True
    finally:
        os.setpriority(os.PRIO_PROCESS, tid, before)


def find_berth(path):
    if path:
        return os.path.abspath(path)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    binary = os.path.join(target, "release", "berth")
    if not os.path.exists(binary):
        log("building berth (cargo build --release -p berth --bin berth)")
        subprocess.run(["cargo", "build", "--release", "-p", "berth", "--bin", "berth"],
                       cwd=ROOT, check=True, stdout=sys.stderr)
    return binary


def describe_source():
    try:
        commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", ROOT, "status", "--porcelain", "--", "src", "Cargo.toml"],
            capture_output=True, text=True).stdout.strip()
        return commit + (" (with uncommitted changes to src/)" if dirty else "")
    except OSError:
        return "unknown"


class Run:
    """What the attacks get to know about the run."""

    def __init__(self, args, binary, workdir, fd_limit):
        self.binary = binary
        self.workdir = workdir
        self.seconds = args.seconds
        self.berth_args = args.berth_arg
        self.seed = args.seed if args.seed is not None else int(time.time())
        self.slowloris_connections = max(1, min(args.slowloris, fd_limit - 512))
        self.upload_sessions = args.sessions
        self.h2_connections = args.h2_connections
        self.fuzz_requests = args.fuzz
        self.primary = None
        self.primary_used = False
        self.images = {}     # berth name -> what the client pulls there
        self.baselines = {}  # berth name -> idle result of the client there
        self.pushed = {}     # berth name -> every blob the client was told was stored there


def measure_client(run, berth, allow_full=False):
    """The well-behaved client alone, for the run's length: the idle baseline."""
    key = berth.name
    if key not in run.images:
        run.images[key] = client.seed(berth.target)
    result = client.Running(berth.target, run.images[key], run.seconds, allow_full).result()
    run.pushed.setdefault(key, []).extend(map(tuple, result["pushed"]))
    return result


def run_attack(run, attack):
    row = report.Row(attack)
    berth = None
    try:
        try:
            berth = attack.server(run)
        except NotRun as e:
            row.not_run = str(e)
            log(f"{attack.name}: not run: {e}")
            attack.teardown(run, None)
            return row
        if berth is run.primary:
            # Each attack gets a fresh process on the same data, so that memory one attack
            # left allocated is not counted against the next.
            if run.primary_used:
                run.primary = berth = berth.again()
            run.primary_used = True
        key = berth.name
        if key not in run.baselines:
            log(f"{attack.name}: idle baseline of the well-behaved client on this berth "
                f"({run.seconds:g} s)")
            run.baselines[key] = measure_client(run, berth)
        row.baseline = run.baselines[key]
        attack.setup(run, berth)
        panics = berth.panics()
        berth.sampler.reset()
        row.anon_start = berth.rss_anon_mib()
        cpu = cpu_seconds(berth.proc.pid)
        log(f"{attack.name}: attacking for {run.seconds:g} s")
        wb = client.Running(berth.target, run.images[key], run.seconds, attack.allow_full)
        deadline = time.monotonic() + run.seconds
        try:
            with attacker_priority():
                row.notes = attack.attack(run, berth, deadline) or []
        except Exception as e:  # noqa: BLE001 - reported, and the run goes on
            row.error = f"the attack failed: {type(e).__name__}: {e}"
            log(traceback.format_exc())
        row.client = wb.result()
        cpu_after = cpu_seconds(berth.proc.pid)
        if cpu is not None and cpu_after is not None:
            row.cpu = cpu_after - cpu
        run.pushed[key].extend(map(tuple, row.client["pushed"]))
        row.alive = berth.alive()
        row.healthz = row.alive and wire.healthz(berth.target)
        blobs = run.pushed[key]
        row.lost = wire.verify_blobs(berth.target, blobs) if row.alive else list(blobs)
        row.verified = len(blobs) - len(row.lost)
        row.peaks = berth.sampler.read()
        row.anon_end = berth.rss_anon_mib() if row.alive else float("nan")
        row.panics = berth.panics() - panics
        row.resumed = attack.resumed
    except Exception as e:  # noqa: BLE001
        row.error = f"{type(e).__name__}: {e}"
        log(traceback.format_exc())
    finally:
        try:
            attack.teardown(run, berth)
        except Exception as e:  # noqa: BLE001
            log(f"{attack.name}: teardown failed: {e}")
    log(f"{attack.name}: {row.goals()}")
    return row


def main():
    attacks = all_attacks()
    args = parse_args([a.name for a in attacks])
    if args.only:
        attacks = [a for a in attacks if a.name in args.only]
    fd_limit = raise_fd_limit()
    binary = find_berth(args.berth)
    workdir = tempfile.mkdtemp(prefix="berth-abuse.", dir="/var/tmp")
    run = Run(args, binary, workdir, fd_limit)
    started = time.monotonic()
    rows = []
    primary = None
    try:
        primary = Berth(binary, os.path.join(workdir, "data"), os.path.join(workdir, "berth.log"),
                        args.berth_arg, name="primary").start()
        run.primary = primary
        version = subprocess.run([binary, "--version"], capture_output=True,
                                 text=True).stdout.strip()
        log(f"{version} at {primary.target.host}:{primary.target.port}, data in {workdir}; "
            f"open-file limit {primary.fd_limit()}")
        log(f"idle baseline of the well-behaved client ({run.seconds:g} s)")
        run.baselines[primary.name] = measure_client(run, primary)
        for attack in attacks:
            rows.append(run_attack(run, attack))
    finally:
        if run.primary is not None:
            run.primary.stop()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    load = os.getloadavg()
    print(f"berth {describe_source()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{os.cpu_count()} cores, load average {load[0]:.1f} at the end, "
          f"{args.seconds:g} s per attack, {time.monotonic() - started:.0f} s in all, "
          f"seed {run.seed}, attacks at nice {ATTACK_NICE if os.geteuid() == 0 else 0}, "
          f"berth flags: {' '.join(SERVE_FLAGS + args.berth_arg)}\n")
    print(report.table(rows) + "\n")
    print(report.notes(rows) + "\n")
    print(report.summary(rows))
    return report.exit_status(rows)


if __name__ == "__main__":
    sys.exit(main())
