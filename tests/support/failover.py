"""The failover run (tests/test_failover.py and bench/failover.py): two hosts (INCIDENT_HOSTNAME
a and b) each run `incident run` back to back, as a cron loop with `--wait` would, against one
state DB (a PostgreSQL URL, or a SQLite file both share); a real Alertmanager whose alerts are
fired and resolved on a schedule; a webhook receiver and a PagerDuty mock; and the fault
pipeline's recovery command (tests/support/faults.py), which appends `incident:attempt` to
attempts.log. The host that holds the tick lock is killed with SIGKILL at random moments and
restarted; its leases are moved into the past before it restarts (what waiting for them would
give, without the wait). Afterwards every alert is resolved, the hosts tick until all is quiet,
and the invariants are checked.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.binaries import cli_env, start_alertmanager
from tests.support.faults import pipeline_config, post_alert
from tests.support.notify import Receiver, receiver

HOSTS = ("a", "b")
LOCK_WAIT = "10"  # --wait: the standby host takes the lock as soon as the holder dies


def state_sql(db: str, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """One statement (`?` placeholders) on the state DB, a SQLite file or a PostgreSQL URL,
    committed; its rows. Nothing (and no file created) before the first tick made the schema."""
    if db.startswith(("postgresql://", "postgres://")):
        import psycopg

        with psycopg.connect(db, autocommit=True, connect_timeout=10) as conn:
            try:
                cursor = conn.execute(sql.replace("%", "%%").replace("?", "%s"), list(args))
            except psycopg.errors.UndefinedTable:
                return []
            return list(cursor.fetchall()) if cursor.description else []
    try:
        conn = sqlite3.connect(f"file:{db}?mode=rw", uri=True, timeout=30)
    except sqlite3.OperationalError:
        return []  # not created yet
    try:
        with conn:
            return conn.execute(sql, list(args)).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        conn.close()


def age_leases_of(db: str, host: str) -> None:
    """Move the leases of `host`'s claims into the past: its tick was killed."""
    state_sql(
        db,
        "UPDATE notifications SET lease_until = 1 WHERE lease_until IS NOT NULL AND claimed_by = ?",
        [host],
    )
    state_sql(
        db,
        "UPDATE actions SET lease_until = 1 WHERE lease_until IS NOT NULL AND claimed_by = ?",
        [host],
    )


def lock_holder(db: str, workdir: Path) -> tuple[str | None, int | None]:
    """(the host holding the tick lock, the pid holding it on SQLite) or (None, None)."""
    if db.startswith(("postgresql://", "postgres://")):
        found = state_sql(
            db,
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE 'incident@%'"
            " AND l.objid = ?",
            [0x1C1D_0002],  # the tick lock's key (store/postgres.py)
        )
        return (str(found[0][0]).split("@", 1)[1], None) if found else (None, None)
    lock = workdir / "state.db.lock"
    try:
        inode = lock.stat().st_ino
    except FileNotFoundError:
        return None, None
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 12345 08:01:1234567 0 EOF"
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].endswith(f":{inode}"):
            return None, int(fields[4])
    return None, None


@dataclass
class Host:
    """One host's cron loop: `incident run --wait` again as soon as the last one ended."""

    name: str
    workdir: Path
    db: str
    stop: threading.Event
    mutex: threading.Lock = field(default_factory=threading.Lock)
    proc: subprocess.Popen[bytes] | None = None
    ticks: list[tuple[float, float, int]] = field(default_factory=list)  # from its heartbeats
    codes: Counter[int] = field(default_factory=Counter)

    def loop(self) -> None:
        env = cli_env({"INCIDENT_HOSTNAME": self.name})
        argv = [sys.executable, "-m", "incident_cli", "-c", "incident.yaml", "--db", self.db]
        with open(self.workdir / f"host-{self.name}.stderr", "ab") as stderr:
            while not self.stop.is_set():
                with self.mutex:  # not while the killer ages this host's leases
                    self.proc = subprocess.Popen(
                        [*argv, "run", "--wait", LOCK_WAIT],
                        cwd=self.workdir,
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=stderr,
                    )
                self.codes[self.proc.wait()] += 1
                self.note_heartbeat()

    def note_heartbeat(self) -> None:
        """Its last `run` heartbeat, if it is a new one (a killed tick leaves none)."""
        found = state_sql(
            self.db,
            "SELECT last_started_at, last_run_at, last_exit FROM host_heartbeats"
            " WHERE host = ? AND command = 'run'",
            [self.name],
        )
        if found and (not self.ticks or self.ticks[-1][0] != found[0][0]):
            started, finished, code = found[0]
            self.ticks.append((float(started), float(finished), int(code)))

    def kill(self, pid: int | None) -> bool:
        """SIGKILL its running tick (the one with `pid`, when given) and age its leases
        before it restarts; False when there was no such tick."""
        with self.mutex:
            proc = self.proc
            if proc is None or proc.poll() is not None or pid not in (None, proc.pid):
                return False
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            age_leases_of(self.db, self.name)
            return True


@dataclass
class FailoverResult:
    kills: int = 0
    incidents: int = 0
    violations: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)  # one line per extra delivery
    failover_seconds: list[float] = field(default_factory=list)
    ticks: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def _fire_and_resolve(
    am_url: str, stop: threading.Event, rng: random.Random, fired: list[str]
) -> None:
    """The alert schedule: a new service fires every ~1.5 s and resolves 3-6 s later."""
    pending: list[tuple[float, str]] = []
    n = 0
    while not stop.is_set():
        now = time.monotonic()
        for due, service in [p for p in pending if p[0] <= now]:
            post_alert(am_url, service, resolved=True)
            pending.remove((due, service))
        service = f"svc-{n}"
        n += 1
        post_alert(am_url, service)
        fired.append(service)
        pending.append((now + rng.uniform(3.0, 6.0), service))
        stop.wait(rng.uniform(1.0, 2.0))
    for _, service in pending:
        post_alert(am_url, service, resolved=True)


def _kill_holders(
    hosts: dict[str, Host],
    db: str,
    workdir: Path,
    kills: int,
    rng: random.Random,
    gap: tuple[float, float],
) -> list[tuple[float, str]]:
    """Kill the lock holder at random moments (`gap` seconds apart) until `kills` ticks were
    killed."""
    done: list[tuple[float, str]] = []
    while len(done) < kills:
        time.sleep(rng.uniform(*gap))
        host, pid = lock_holder(db, workdir)
        candidates = [hosts[host]] if host else list(hosts.values())
        for h in candidates:
            at = time.time()
            if h.kill(pid):
                done.append((at, h.name))
                break
    return done


def _settled(db: str) -> bool:
    [(left,)] = state_sql(
        db,
        "SELECT (SELECT count(*) FROM incidents WHERE status != 'resolved')"
        " + (SELECT count(*) FROM notifications WHERE status = 'pending')"
        " + (SELECT count(*) FROM actions WHERE status = 'running')",
    )
    return int(left) == 0


def run_failover(
    workdir: Path, db: str, kills: int, seed: int = 7, gap: tuple[float, float] = (0.3, 1.5)
) -> FailoverResult:
    """The whole run; `db` is `workdir/state.db` or a PostgreSQL URL of an empty database; the
    kills come `gap` (min, max) seconds apart."""
    rng = random.Random(seed)
    result = FailoverResult()
    started = time.monotonic()
    am = start_alertmanager(workdir / "am")
    try:
        with receiver() as hook, receiver() as pagerduty:
            (workdir / "incident.yaml").write_text(
                pipeline_config(
                    am.url,
                    hook.url,
                    "~svc-.*",
                    0.2,
                    pagerduty_url=pagerduty.url,
                    record="$INCIDENT_ID:$INCIDENT_ATTEMPT",
                )
            )
            stop_hosts, stop_alerts = threading.Event(), threading.Event()
            hosts = {name: Host(name, workdir, db, stop_hosts) for name in HOSTS}
            fired: list[str] = []
            threads = [threading.Thread(target=h.loop, daemon=True) for h in hosts.values()]
            schedule = threading.Thread(
                target=_fire_and_resolve, args=(am.url, stop_alerts, rng, fired), daemon=True
            )
            for thread in (*threads, schedule):
                thread.start()
            try:
                killed = _kill_holders(hosts, db, workdir, kills, rng, gap)
                stop_alerts.set()
                schedule.join()
                _wait_until_quiet(hosts, db)
            finally:
                stop_alerts.set()
                stop_hosts.set()
                for thread in threads:
                    thread.join(120)
            result.kills = len(killed)
            result.seconds = time.monotonic() - started
            _check(result, workdir, db, hosts, killed, hook, pagerduty)
    finally:
        am.stop()
    return result


def _successful_ticks(hosts: dict[str, Host]) -> int:
    return sum(1 for h in hosts.values() for t in h.ticks if t[2] == 0)


def _wait_until_quiet(hosts: dict[str, Host], db: str, limit: float = 120.0) -> None:
    """Until everything has settled, and then two more successful ticks."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and not _settled(db):
        time.sleep(0.5)
    enough = _successful_ticks(hosts) + 2
    while time.monotonic() < deadline and _successful_ticks(hosts) < enough:
        time.sleep(0.5)


def _check(
    result: FailoverResult,
    workdir: Path,
    db: str,
    hosts: dict[str, Host],
    killed: list[tuple[float, str]],
    hook: Receiver,
    pagerduty: Receiver,
) -> None:
    v = result.violations
    incidents = state_sql(db, "SELECT id, key, status FROM incidents ORDER BY id")
    result.incidents = len(incidents)
    # Every incident whose alerts cleared is resolved (every alert was resolved at the end).
    v.extend(
        f"incident {i} is {status}, not resolved"
        for i, _, status in incidents
        if status != "resolved"
    )
    # Firing and resolved at each channel at least once; a duplicate only where a claim was
    # taken over (attempts > 1: its tick was killed between the send and the mark).
    attempts = {
        (incident, channel, event): int(n)
        for incident, channel, event, n in state_sql(
            db,
            "SELECT incident_id, channel, event, max(attempts) FROM notifications"
            " WHERE incident_id IS NOT NULL GROUP BY incident_id, channel, event",
        )
    }
    from incident_cli.notify.channels.pagerduty import incident_dedup_key

    keys = {incident_dedup_key(i, key): i for i, key, _ in incidents}
    got: Counter[tuple[int, str, str]] = Counter()
    for r in hook.received:
        if isinstance(r.body, dict) and isinstance(r.body.get("incident"), dict):
            got[(int(r.body["incident"]["id"]), "hook", str(r.body["event"]))] += 1
    actions = {"trigger": "firing", "resolve": "resolved", "acknowledge": "acknowledged"}
    for r in pagerduty.received:
        if isinstance(r.body, dict) and r.body.get("dedup_key") in keys:
            event = actions.get(str(r.body.get("event_action")), str(r.body.get("event_action")))
            got[(keys[r.body["dedup_key"]], "pd", event)] += 1
    for i, _, _ in incidents:
        for channel in ("hook", "pd"):
            for event in ("firing", "resolved"):
                n = got[(i, channel, event)]
                if n == 0:
                    v.append(f"incident {i}: no {event} message at {channel}")
                elif n > 1:
                    claims = attempts.get((i, channel, event), 0)
                    line = f"incident {i}: {event} at {channel} {n} times ({claims} claims)"
                    result.duplicates.extend([line] * (n - 1))
                    if n > claims:
                        v.append(f"{line}: more deliveries than claims")
    # No recovery attempt ran twice.
    log = workdir / "attempts.log"
    ran = log.read_text().split() if log.exists() else []
    v.extend(f"attempt {a} ran {n} times" for a, n in Counter(ran).items() if n > 1)
    # Nothing left running or claimed.
    [(running, leased)] = state_sql(
        db,
        "SELECT (SELECT count(*) FROM actions WHERE status = 'running'),"
        " (SELECT count(*) FROM notifications WHERE lease_until IS NOT NULL)",
    )
    if running or leased:
        v.append(f"left after the quiet ticks: {running} running action(s), {leased} lease(s)")
    # No tick ran on both hosts at once (each completed tick's heartbeat: start and end).
    spans = sorted((s, e, h.name) for h in hosts.values() for s, e, _ in h.ticks)
    latest: tuple[float, str] | None = None  # the end and host of the tick that ends last
    for start, end, name in spans:
        if latest is not None and latest[1] != name and start < latest[0]:
            v.append(f"ticks overlapped: {name}'s at {start:.3f} began before {latest[1]}'s ended")
        if latest is None or end > latest[0]:
            latest = (end, name)
    # Nothing crashed with a traceback.
    for h in hosts.values():
        text = (workdir / f"host-{h.name}.stderr").read_text(errors="replace")
        if "Traceback" in text:
            v.append(f"host {h.name} printed a traceback: {text[text.index('Traceback') :][:500]}")
    # Each failover: from the kill to the end of the next successful tick on the other host,
    # when no other kill came in between (that one is the next failover's).
    kill_times = sorted(at for at, _ in killed)
    for at, name in killed:
        next_kill = min((t for t in kill_times if t > at), default=float("inf"))
        ends = [
            e for h in hosts.values() if h.name != name for s, e, c in h.ticks if s > at and c == 0
        ]
        if ends and min(ends) < next_kill:
            result.failover_seconds.append(min(ends) - at)
    result.ticks = {n: len(h.ticks) for n, h in hosts.items()}
