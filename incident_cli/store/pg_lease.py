"""The PostgreSQL tick lock's lease: what tells a live holder from a stalled one.

A stalled process (SIGSTOP, a frozen VM) keeps its TCP connection, since its kernel still
answers keepalives, and so its session advisory lock. While a process holds the tick lock, a
daemon thread renews a lease in the `tick_lock` row on a connection of its own, every third
of the lease. A stalled process's threads all stop, so its lease runs out; a healthy one busy
in a long recovery command keeps renewing. The next host that finds the lock held and its
lease run out ends the holder's session (pg_terminate_backend: allowed for the same role) and
takes the lock. Time is the server's clock, the same for every host.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from incident_cli.errors import IncidentError

if TYPE_CHECKING:
    from incident_cli.store.postgres import PgConnection

SERVER_NOW = "extract(epoch from clock_timestamp())"
# The renewal session's name in pg_stat_activity: incident-lease@<host>.
LEASE_SESSION = "incident-lease"


@dataclass(frozen=True)
class StalledHolder:
    host: str
    pid: int
    lease_until: float

    def evicted_line(self) -> str:
        at = datetime.fromtimestamp(self.lease_until, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return (
            f"evicted stalled host {self.host} (session pid {self.pid}):"
            f" its tick lock lease ran out at {at}"
        )


def take_lease(conn: PgConnection, host: str, lease: float) -> None:
    """Record this session as the tick lock's holder, its lease `lease` seconds long."""
    conn.execute(
        f"UPDATE tick_lock SET host = ?, backend_pid = pg_backend_pid(),"
        f" lease_until = {SERVER_NOW} + ? WHERE id = 1",
        (host, lease),
    )


def stalled_holder(conn: PgConnection, key: int) -> StalledHolder | None:
    """The session holding advisory lock `key`, when its lease has run out. A holder that has
    not recorded its lease yet (it has just taken the lock) is not stalled."""
    row = conn.execute(
        "SELECT t.host, t.backend_pid, t.lease_until FROM tick_lock t"
        " JOIN pg_locks l ON l.pid = t.backend_pid AND l.locktype = 'advisory' AND l.granted"
        " AND ((l.classid::bigint << 32) | l.objid::bigint) = ?"
        f" WHERE t.id = 1 AND t.lease_until < {SERVER_NOW}",
        (key,),
    ).fetchone()
    if row is None:
        return None
    return StalledHolder(str(row[0] or "unknown"), int(row[1]), float(row[2]))


def end_session(conn: PgConnection, pid: int) -> None:
    """End the stalled holder's session, and with it its advisory locks."""
    conn.execute("SELECT pg_terminate_backend(?)", (pid,))


class LeaseKeeper:
    """A daemon thread renewing this session's lease on its own connection every third of
    the lease, until stopped or until the row names another session (this one was evicted)."""

    def __init__(self, conn: PgConnection, host: str, lease: float) -> None:
        """Opens the renewal connection at once: a host that cannot (the server refuses more
        connections) must not hold the lock, since its lease would run out while it works."""
        self.conn = conn
        self.host = host
        self.lease = lease
        self.pid = int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])
        self._own: PgConnection | None = self._connect()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tick-lock-lease", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        own, self._own = self._own, None  # never started: its connection is still here
        if own is not None:
            with contextlib.suppress(Exception):
                own.close()

    def _connect(self) -> PgConnection:
        from incident_cli.store.postgres import connect

        conn: PgConnection = connect(
            self.conn.url, self.conn.raw.info.password, self.host, LEASE_SESSION
        )
        return conn

    def _run(self) -> None:
        own, self._own = self._own, None
        try:
            while not self._stop.wait(self.lease / 3):
                try:
                    if own is None:
                        own = self._connect()
                    renewed = own.execute(
                        f"UPDATE tick_lock SET lease_until = {SERVER_NOW} + ?"
                        " WHERE id = 1 AND backend_pid = ?",
                        (self.lease, self.pid),
                    ).rowcount
                except (sqlite3.Error, IncidentError):
                    # The server or the network: try again next time (the lease may lapse).
                    if own is not None:
                        with contextlib.suppress(Exception):
                            own.close()
                    own = None
                    continue
                if not renewed:
                    return  # another host evicted this one: its session is gone
        finally:
            if own is not None:
                with contextlib.suppress(Exception):
                    own.close()
