"""The attacks, in the order the tool runs them. Each is a class with:

- `name` (for --only) and `title`;
- `server(run)`: the berth to attack, `run.primary` unless the attack needs one of its own
  (raises `NotRun` when it cannot have it);
- `setup(run, berth)`: preparation outside the measured window;
- `attack(run, berth, deadline)`: the attack itself, in the measured window, stopping by
  itself at `deadline`; returns notes for the report;
- `teardown(run, berth)`: after the health check;
- `allow_full`: the well-behaved client counts a push answered 507 as refused, not failed;
- `resumed`: for the disk-full attack, whether pushes worked again once space was freed and
  every blob it acknowledged still verifies (None elsewhere).
"""


class NotRun(Exception):
    """The attack cannot run here; the message says why."""


class Attack:
    name = ""
    title = ""
    allow_full = False
    resumed = None

    def server(self, run):
        return run.primary

    def setup(self, run, berth):
        pass

    def attack(self, run, berth, deadline):
        raise NotImplementedError

    def teardown(self, run, berth):
        pass


def all_attacks():
    from attacks.slowloris import Slowloris
    from attacks.idle_uploads import IdleUploads
    from attacks.h2_flood import H2Flood
    from attacks.oversized import Oversized
    from attacks.fuzz import Fuzz
    from attacks.stalled_pull import StalledPull
    from attacks.disk_full import DiskFull
    return [Slowloris(), IdleUploads(), H2Flood(), Oversized(), Fuzz(), StalledPull(), DiskFull()]
