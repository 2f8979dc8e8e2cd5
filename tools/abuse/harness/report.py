"""The per-attack rows, the goals and the tables the tool prints (markdown, so that a run's
output can go into the README as it is)."""

RSS_ANON_LIMIT_KIB = 256 << 10
P99_FACTOR = 3

GOALS = [
    ("crash", "no panic, no crash"),
    ("memory", "RssAnon < 256 MiB"),
    ("client", "client: no errors, p99 ≤ 3× idle"),
    ("data", "space freed: pushes resume; nothing acknowledged lost"),
]


def percentile(values, p):
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


class Row:
    def __init__(self, attack):
        self.name = attack.name
        self.title = attack.title
        self.not_run = None   # why the attack did not run
        self.error = None     # the harness or the attack broke down
        self.notes = []
        self.peaks = {}
        self.anon_start = self.anon_end = float("nan")
        self.cpu = None       # CPU seconds berth used during the window
        self.client = None
        self.baseline = None
        self.alive = self.healthz = None
        self.verified = 0
        self.lost = []
        self.panics = 0
        self.resumed = None   # disk-full only

    def p(self, which, q):
        return percentile(which["latencies"], q) if which else float("nan")

    def goals(self):
        """Each goal's verdict: PASS, FAIL, NOT RUN or ERROR."""
        if self.not_run:
            return {key: "NOT RUN" for key, _ in GOALS}
        if self.error and not self.client:
            return {key: "ERROR" for key, _ in GOALS}
        out = {
            "crash": self.panics == 0 and bool(self.alive) and bool(self.healthz),
            "memory": 0 < self.peaks.get("RssAnon", 0) < RSS_ANON_LIMIT_KIB,
            "client": (self.client["errors"] == 0 and bool(self.client["latencies"])
                       and self.p(self.client, 99) <= P99_FACTOR * self.p(self.baseline, 99)),
            "data": not self.lost and self.resumed is not False,
        }
        verdict = {k: "PASS" if v else "FAIL" for k, v in out.items()}
        if self.error:
            verdict = {k: ("ERROR" if v == "PASS" else v) for k, v in verdict.items()}
        return verdict


def mib(kib):
    return f"{kib / 1024:.1f}" if kib else "–"


def table(rows):
    lines = [
        "| attack | peak RSS MiB | RssAnon MiB: start / peak / end | peak fds | client p50 / p99 ms "
        "(idle p50 / p99) | client requests / errors | healthy after |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.not_run:
            lines.append(f"| {r.title} | NOT RUN: {r.not_run} | | | | | |")
            continue
        if not r.client:
            lines.append(f"| {r.title} | ERROR: {r.error} | | | | | |")
            continue
        c, b = r.client, r.baseline
        latency = (f"{r.p(c, 50):.1f} / {r.p(c, 99):.1f} "
                   f"({r.p(b, 50):.1f} / {r.p(b, 99):.1f})")
        extra = f", {c['refused_full']} pushes refused 507" if c.get("refused_full") else ""
        healthy = ("yes" if r.alive and r.healthz and not r.lost and not r.panics else "NO") + (
            f" ({r.verified} blobs verified" + (f", {len(r.lost)} LOST" if r.lost else "")
            + (f", {r.panics} panics" if r.panics else "")
            + ("" if r.alive else ", process gone")
            + ("" if r.healthz or not r.alive else ", /healthz failing") + ")")
        lines.append(
            f"| {r.title} | {mib(r.peaks.get('VmRSS'))} | {r.anon_start:.1f} / "
            f"**{mib(r.peaks.get('RssAnon'))}** / {r.anon_end:.1f} | "
            f"{r.peaks.get('fds', '–')} | {latency} | {len(c['latencies'])} / {c['errors']}{extra} "
            f"| {healthy} |")
    return "\n".join(lines)


def summary(rows):
    lines = ["| attack | " + " | ".join(title for _, title in GOALS) + " |",
             "|---|" + "---|" * len(GOALS)]
    for r in rows:
        verdict = r.goals()
        lines.append(f"| {r.title} | " + " | ".join(verdict[k] for k, _ in GOALS) + " |")
    return "\n".join(lines)


def notes(rows):
    out = []
    for r in rows:
        if r.not_run:
            continue
        cpu = [f"berth used {r.cpu:.1f} s of CPU in the window"] if r.cpu is not None else []
        out.append(f"- **{r.title}**: " + "; ".join(
            r.notes + cpu + ([f"error: {r.error}"] if r.error else [])))
        if r.client and r.client.get("by_op"):
            idle = r.baseline["by_op"] if r.baseline else {}
            out.append("  - client p99 by request: " + ", ".join(
                f"{op} {percentile(v, 99):.1f} ms (idle {percentile(idle.get(op, []), 99):.1f})"
                for op, v in r.client["by_op"].items()))
        if r.client and r.client.get("slow"):
            out.append("  - slowest client requests (s into the window, request, ms): " + ", ".join(
                f"{t:.1f} {op} {ms:.0f}" for t, op, ms in r.client["slow"][:6]))
        if r.client and r.client["samples"]:
            out.append(f"  - client errors, e.g.: " + " | ".join(r.client["samples"][:4]))
        if r.lost:
            out.append(f"  - lost: {r.lost[:3]}")
    return "\n".join(out)


def exit_status(rows):
    verdicts = [v for r in rows for v in r.goals().values()]
    if any(v in ("FAIL", "ERROR") for v in verdicts):
        return 1
    if any(v == "NOT RUN" for v in verdicts):
        return 2
    return 0
