"""The long fault run's scenarios (bench/faults.py): one incident's life under one kind of fault,
then quiet ticks until it settles, then the invariants of tests/support/invariants.py."""

from __future__ import annotations

import os
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.binaries import ToyExporter, start_prometheus, wait_until  # noqa: E402
from tests.support.faults import (  # noqa: E402
    Sinks,
    Tick,
    Ticker,
    db_rows,
    pipeline_config,
    post_alert,
    sinks,
    slow_loris,
)
from tests.support.invariants import Verdict, check, unmarked  # noqa: E402
from tests.support.locks import EXCLUSIVE, holding  # noqa: E402

STEPS = ("poll-read", "notify-claimed", "sent", "action-claimed", "command-started")
LEASES = 130  # seconds past every lease a dead tick leaves (30 s a notification, 70 s an action)


@dataclass
class Run:
    """One run's pipeline: its directory, ticks, receivers and what its faults did."""

    workdir: Path
    ticker: Ticker
    sinks: Sinks
    am_url: str
    service: str
    config: dict[str, object]
    kills: Counter[str] = field(default_factory=Counter)  # stage → ticks killed there
    in_flight: int = 0  # messages accepted but left unmarked by a tick that was killed
    late: int = 0  # ... by a tick whose receiver answered after the sender's timeout
    notes: list[str] = field(default_factory=list)  # violations a scenario saw on the way

    @property
    def db(self) -> Path:
        return self.workdir / "state.db"

    def tick(self, *args: str, **kwargs: object) -> Tick:
        """One tick; a message a receiver accepted that its row does not show as sent must come
        from this tick's death or from an answer that came too late."""
        before, late = unmarked(self.db, self.sinks), self.sinks.late()
        result = self.ticker.run(*args, **kwargs)  # type: ignore[arg-type]
        grew = unmarked(self.db, self.sinks) - before
        if result.killed:
            self.kills[result.stage] += 1
            self.in_flight += grew
        elif grew > self.sinks.late() - late:
            self.notes.append(f"a tick that was not killed left {grew} messages unmarked")
        else:
            self.late += grew
        if "[Errno 22]" in result.stderr:
            self.notes.append("time.sleep under libfaketime failed (EINVAL)")
        if "Traceback" in result.stderr:
            self.notes.append(f"a traceback: {result.stderr.strip().splitlines()[-1]}")
        return result

    def write_config(self, **changes: object) -> None:
        self.config.update(changes)
        (self.workdir / "incident.yaml").write_text(pipeline_config(**self.config))  # type: ignore[arg-type]

    def next_due(self) -> float:
        """When the last pending notification is due again (its backoff or lease over)."""
        try:
            [(due,)] = db_rows(
                self.db,
                "SELECT max(max(next_attempt_at, coalesce(lease_until, 0)))"
                " FROM notifications WHERE status = 'pending'",
            )
        except sqlite3.Error:
            return 0.0
        return float(due or 0.0)

    def settled(self) -> bool:
        conn = sqlite3.connect(self.db, timeout=30)
        try:
            [(left,)] = conn.execute(
                "SELECT (SELECT count(*) FROM incidents WHERE status != 'resolved')"
                " + (SELECT count(*) FROM notifications WHERE status = 'pending')"
                " + (SELECT count(*) FROM actions WHERE status IN ('running', 'pending'))"
            ).fetchall()
            return int(left) == 0
        except sqlite3.OperationalError:
            return False
        finally:
            conn.close()

    def settle(self, rounds: int = 12) -> None:
        """Quiet ticks, each past every lease and backoff a fault left, until all is done."""
        for _ in range(rounds):
            self.ticker.wait(max(LEASES, self.next_due() - time.time() - self.ticker.offset))
            self.tick()
            if self.db.exists() and self.settled():
                return
            time.sleep(1.1)  # resolve_after

    def verdict(self, **kwargs: object) -> Verdict:
        verdict = check(self.workdir, self.db, self.sinks, **kwargs)  # type: ignore[arg-type]
        verdict.violations += self.notes
        if verdict.duplicates != self.in_flight + self.late:
            verdict.fail(
                f"{verdict.duplicates} duplicates, {self.in_flight} in flight at a kill,"
                f" {self.late} answered late"
            )
        state = self.ticker.run("state", "check")
        if state.code != 0:
            verdict.fail(f"state check: {state.stdout.strip()} {state.stderr.strip()}")
        return verdict


@contextmanager
def pipeline(am_url: str, rng: random.Random) -> Iterator[Run]:
    service = f"svc-{rng.randrange(10**9)}"
    workdir = Path(tempfile.mkdtemp(prefix="incident-faults-"))
    try:
        with sinks() as got:
            config: dict[str, object] = {
                "am_url": am_url,
                "hook_url": got.hook.url,
                "service": service,
                "command_sleep": 0.2,
                "pagerduty_url": got.pagerduty.url,
                "smtp_port": got.smtp_port,
            }
            run = Run(workdir, Ticker(workdir), got, am_url, service, config)
            run.write_config()
            yield run
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def life(run: Run, ticks: int, fault: Callable[[int], None]) -> None:
    """The alert fires, `fault(k)` runs `ticks` times (the alert resolved half way), settle."""
    post_alert(run.am_url, run.service)
    for k in range(ticks):
        if k == ticks // 2:
            post_alert(run.am_url, run.service, resolved=True)
        fault(k)
    post_alert(run.am_url, run.service, resolved=True)
    run.settle()


# --------------------------------------------------------------------------- kills


def named(run: Run, rng: random.Random, kills: int) -> None:
    """SIGKILL at a named step (INCIDENT_TEST_CRASH_AT); a duplicate only per kill after a send
    and before its mark."""

    def fault(_: int) -> None:
        run.tick(crash_at=rng.choice(STEPS))
        run.ticker.wait(LEASES)

    life(run, kills, fault)


def random_moment(run: Run, rng: random.Random, kills: int) -> None:
    """SIGKILL at a random moment of a tick (poll, notify or recover)."""

    seconds = [1.0]  # how long the last tick that finished took

    def fault(_: int) -> None:
        tick = run.tick("-v", "run", kill_after=rng.uniform(0.2, seconds[-1]))  # -v: stages
        if not tick.killed:
            seconds.append(tick.seconds)
        run.ticker.wait(LEASES)

    life(run, kills, fault)


# --------------------------------------------------------------------------- receivers


def receivers(run: Run, rng: random.Random, ticks: int) -> None:
    """The webhook first a slow-loris peer, then flapping 500s and answers past the timeout;
    PagerDuty 429s with Retry-After (short, waited within the tick, and long); SMTP 451s."""
    with slow_loris() as loris:
        real_hook = run.config["hook_url"]
        run.write_config(hook_url=loris)
        flaps = [(500, {}, b"oops"), (200, {"X-Delay": "2.5"}, b"ok"), None]
        run.sinks.behave["hook"] = lambda i: flaps[(i + rng.randrange(3)) % 3]
        # A short Retry-After is waited for within the tick (the first, on the real clock).
        limits = [(429, {"Retry-After": "1"}, b""), (429, {"Retry-After": "45"}, b"")]
        run.sinks.behave["pd"] = lambda i: limits[i] if i < len(limits) else None
        run.sinks.mail_replies.extend(["451 4.3.0 try again later"] * 2)

        def fault(k: int) -> None:
            if k == 2:
                run.write_config(hook_url=real_hook)  # the loris is gone, the flapping starts
            run.tick()
            run.ticker.wait(rng.choice((5, 40, 70)))

        life(run, ticks, fault)


# --------------------------------------------------------------------------- the clock


def clock_jumps(run: Run, rng: random.Random, ticks: int) -> None:
    """The ticks' clock steps back or forward an hour between ticks, three incidents firing, a
    recovery command that fails (budget: 2 attempts in 3 h): no negative duration, no incident
    resolved while its alerts fire, the budget never spent twice, everything resolved after."""
    services = [run.service, f"{run.service}-b", f"{run.service}-c"]
    run.write_config(
        service=f"~{run.service}.*",
        command="echo $INCIDENT_ID-$INCIDENT_ATTEMPT >> attempts.log; exit 1",
        recovery="\n      max_attempts: 2\n      backoff: 20s\n      cooldown: 3h",
    )
    for service in services:
        post_alert(run.am_url, service)
    for k in range(ticks):
        run.ticker.jump(rng.choice((-3600, 3600, -3600)))
        run.tick()
        if k < ticks - 1:
            _none_resolved(run)
    for service in services:
        post_alert(run.am_url, service, resolved=True)
    run.settle()


def _none_resolved(run: Run) -> None:
    conn = sqlite3.connect(run.db, timeout=30)
    try:
        [(resolved,)] = conn.execute(
            "SELECT count(*) FROM incidents WHERE status = 'resolved'"
        ).fetchall()
    finally:
        conn.close()
    if resolved:
        run.notes.append(f"{resolved} incidents resolved while their alerts fired (clock jump)")


# --------------------------------------------------------------------------- Prometheus


def prometheus_restart(run: Run, rng: random.Random, ticks: int) -> None:
    """Prometheus as the source, restarted (and once killed) while its alert fires: the incident
    stays open through the failed polls, never resolves or reopens, resolves once it clears."""
    toy = ToyExporter()
    rules = (
        "groups:\n- name: g\n  rules:\n  - alert: BackendDown\n    expr: 'toy_value{name=\"down\"} == 1'\n"
        f"    labels: {{service: {run.service}, severity: critical}}\n"
    )
    prom = start_prometheus(run.workdir / "prom", rules, [toy.address])
    try:
        toy.set("down", 1)
        run.write_config(source=f'{{type: prometheus, url: "{prom.url}", timeout: 5s}}')
        firing = lambda: "firing" in str(_prom_alerts(prom.url))  # noqa: E731
        wait_until(firing, timeout=30)
        for k in range(ticks):
            run.tick()
            (prom.kill if k % 2 else prom.stop)()
            run.tick()  # the source is down: exit 75, nothing changes
            prom.start()
            wait_until(firing, timeout=30)
        run.tick()
        toy.set("down", 0)
        wait_until(lambda: not firing(), timeout=30)
        run.settle()
        conn = sqlite3.connect(run.db, timeout=30)
        got = conn.execute("SELECT count(*), sum(reopen_count) FROM incidents").fetchall()
        conn.close()
        if got != [(1, 0)]:
            run.notes.append(f"a restart opened or reopened incidents: {got}")
    finally:
        prom.stop()
        toy.close()


def _prom_alerts(url: str) -> object:
    from tests.support.binaries import http_json

    try:
        return http_json(url + "/api/v1/alerts")
    except OSError:
        return None


# --------------------------------------------------------------------------- the state DB


def db_fault(run: Run, rng: random.Random, fault: str) -> None:
    """One state-DB fault hits a tick in the middle of the life; the ticks after it recover."""
    post_alert(run.am_url, run.service)
    run.tick()
    code = DB_FAULTS[fault](run)
    if code not in EXPECTED[fault]:
        run.notes.append(f"{fault}: exit {code}")
    post_alert(run.am_url, run.service, resolved=True)
    run.settle()


def _disk_full(run: Run) -> int:
    def small_files() -> None:  # what `prlimit --fsize=4000` does: no file may grow past it
        resource.setrlimit(resource.RLIMIT_FSIZE, (4000, 4000))

    run.tick()
    return run.tick(preexec=small_files).code


def _locked(run: Run) -> int:
    with holding(run.db, EXCLUSIVE):
        return run.tick().code


def _corrupted(run: Run) -> int:
    """A page overwritten; the documented restore (the last `state backup`) and on."""
    backup = run.workdir / "backup.db"
    run.tick("state", "backup", str(backup))
    conn = sqlite3.connect(run.db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'incidents'").fetchone()
    conn.close()
    with open(run.db, "r+b") as fh:
        fh.seek((root[0] - 1) * page)
        fh.write(b"\x5a" * page)
    code = run.ticker.run().code  # (no count of unmarked messages: the DB is damaged)
    for suffix in ("-wal", "-shm"):
        Path(f"{run.db}{suffix}").unlink(missing_ok=True)
    shutil.copy(backup, run.db)
    return code


def _read_only(run: Run) -> int:
    """The state directory read-only for the tick: a read-only bind mount as root (whom
    permissions do not stop), else mode 0555 with no -wal or -shm in it (a tick must create
    them; ours are empty leftovers of this harness's read-only connections, none open now)."""
    where = str(run.workdir)
    if os.geteuid() == 0:
        subprocess.run(["mount", "--bind", where, where], check=True)
        try:
            subprocess.run(["mount", "-o", "remount,ro,bind", where], check=True)
            return run.tick().code
        finally:
            subprocess.run(["umount", where], check=True)
    for suffix in ("-wal", "-shm"):
        wal = Path(f"{run.db}{suffix}")
        if suffix == "-shm" or wal.stat().st_size == 0:
            wal.unlink(missing_ok=True)
    os.chmod(run.workdir, 0o555)
    try:
        return run.tick().code
    finally:
        os.chmod(run.workdir, 0o755)


def _wal_deleted(run: Run) -> int:
    """Another process writes, then its -wal file is deleted under it (as in
    tests/test_state_faults.py); once it closes, from the -wal it still has open, all is back."""
    script = (
        "c.execute('PRAGMA wal_autocheckpoint = 0')\n"
        "c.execute(\"INSERT INTO journeys (journey, at, ok, origin) VALUES ('held', 1, 1, 'cli')\")\n"
        "os.unlink(sys.argv[1] + '-wal')\n"
    )
    with holding(run.db, script):
        return run.tick().code


DB_FAULTS: dict[str, Callable[[Run], int]] = {
    "disk full": _disk_full,
    "DB held locked": _locked,
    "DB corrupted": _corrupted,
    "read-only state dir": _read_only,
    "WAL deleted": _wal_deleted,
}
EXPECTED = {
    "disk full": (75,),
    "DB held locked": (75,),
    "DB corrupted": (1,),
    "read-only state dir": (1,),
    "WAL deleted": (1,),
}
