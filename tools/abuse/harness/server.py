"""A `berth serve` started by the tool, and the sampler that watches its memory and
descriptors from /proc every 100 ms."""

import os
import signal
import subprocess
import threading
import time

from harness import wire

# Flags given to every berth the tool starts, beside --listen and --data. The header-read
# timeout is shortened from its default (30 s) so that it fires within an attack of the
# default length; the grace period so that a berth still holding attacked connections stops
# quickly once its attack is over. Everything else is berth's default.
SERVE_FLAGS = ["--header-read-timeout", "10", "--grace-period", "2"]

SAMPLE_EVERY = 0.1


class Berth:
    """One berth process on a free loopback port, its stderr kept in `log`."""

    def __init__(self, binary, data, log, extra=(), tls=None, name=None):
        self.name = name or data
        self.binary = binary
        self.data = data
        self.log = log
        self.extra = list(extra)
        self.tls = tls  # (cert, key) or None
        self.proc = None
        self.port = None
        self.sampler = None

    @property
    def target(self):
        return wire.Target("127.0.0.1", self.port, self.tls is not None)

    def start(self):
        self.port = wire.free_port()
        args = [self.binary, "serve", "--listen", f"127.0.0.1:{self.port}",
                "--data", self.data, *SERVE_FLAGS, *self.extra]
        if self.tls:
            args += ["--tls-cert", self.tls[0], "--tls-key", self.tls[1]]
        err = open(self.log, "ab")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        err.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"berth exited with {self.proc.returncode} at start; see {self.log}")
            if wire.healthz(self.target, timeout=1):
                self.sampler = Sampler(self.proc.pid)
                self.sampler.start()
                return self
            time.sleep(0.1)
        raise RuntimeError(f"berth did not answer /healthz within 30 s; see {self.log}")

    def again(self):
        """A new process on the same data directory (started), this one stopped."""
        self.stop()
        return Berth(self.binary, self.data, self.log, self.extra, self.tls, self.name).start()

    def rss_anon_mib(self):
        status = read_status(self.proc.pid)
        return status["RssAnon"] / 1024 if status else float("nan")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def panics(self):
        """How many times berth's stderr says a thread panicked."""
        try:
            with open(self.log, "rb") as f:
                return f.read().count(b"panicked")
        except OSError:
            return 0

    def fd_limit(self):
        try:
            with open(f"/proc/{self.proc.pid}/limits") as f:
                for line in f:
                    if line.startswith("Max open files"):
                        return int(line.split()[3])
        except (OSError, ValueError, IndexError):
            pass
        return None

    def stop(self):
        if self.sampler:
            self.sampler.stop()
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def read_status(pid):
    """VmRSS and RssAnon of `pid` in KiB, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            text = f.read()
    except OSError:
        return None
    out = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "RssAnon"):
            out[key] = int(rest.split()[0])
    return out


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """User and system CPU time `pid` has used, in seconds, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / TICKS
    except (OSError, ValueError, IndexError):
        return None


def count_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


class Sampler(threading.Thread):
    """Peak VmRSS, RssAnon and open descriptors since the last `reset`."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.lock = threading.Lock()
        self.halt = threading.Event()
        self.peaks = {"VmRSS": 0, "RssAnon": 0, "fds": 0}
        self.latest = dict(self.peaks)

    def run(self):
        while not self.halt.is_set():
            status = read_status(self.pid)
            fds = count_fds(self.pid)
            if status is not None:
                with self.lock:
                    for key, value in status.items():
                        self.latest[key] = value
                        self.peaks[key] = max(self.peaks[key], value)
                    if fds is not None:
                        self.latest["fds"] = fds
                        self.peaks["fds"] = max(self.peaks["fds"], fds)
            self.halt.wait(SAMPLE_EVERY)

    def reset(self):
        with self.lock:
            self.peaks = dict(self.latest)

    def read(self):
        with self.lock:
            return dict(self.peaks)

    def stop(self):
        self.halt.set()
