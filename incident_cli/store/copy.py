"""`incident state copy`: a SQLite state's every row, ids included, into an empty PostgreSQL
database, in one transaction, with its id counters moved past the highest id and the row
counts checked afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from incident_cli.errors import IncidentError
from incident_cli.store.database import Database, write_tx

# Parents before the rows that refer to them; counters last, after the incidents' triggers
# counted the copied rows (they are replaced by the source's own counts).
ORDER = (
    "incidents",
    "alerts",
    "timeline",
    "actions",
    "notifications",
    "channel_refs",
    "followups",
    "journeys",
    "journey_files",
    "heartbeats",
    "host_heartbeats",
    "source_status",
    "source_replicas",
    "sync_status",
    "recovery_breaker",
    "tick_lock",
    "rollup_hourly",
    "rollup_followups",
    "id_floor",
    "counters",
)
ID_TABLES = ("incidents", "alerts", "timeline", "actions", "notifications", "journeys", "followups")
BATCH = 2000
# Rows a new schema starts with (m009's floor of 0, m014's closed breaker, m016's tick lock
# lease, never held) or that the copy's own inserts produce (the counters' triggers): replaced
# by the source's.
REPLACED = ("id_floor", "counters", "recovery_breaker", "tick_lock")


class TargetNotEmpty(IncidentError):
    pass


@dataclass
class CopyResult:
    """Rows per table in the source and in the target after the copy; the next id each
    id-numbered table gives."""

    source: str
    target: str
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    next_ids: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(src == dst for src, dst in self.counts.values())


def _tables(db: Database) -> list[str]:
    if db.is_postgres:
        rows = db.conn.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        )
    else:
        rows = db.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    return [row[0] for row in rows]


def _columns(db: Database, table: str) -> list[str]:
    cursor = db.conn.execute(f"SELECT * FROM {table} LIMIT 0")
    return [d[0] for d in cursor.description]


def _count(db: Database, table: str) -> int:
    return int(db.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def check_empty(target: Database) -> None:
    """Refuse a target that holds tables of its own or rows of ours."""
    known = {*ORDER, "_migrations"}
    tables = _tables(target)
    foreign = sorted(set(tables) - known)
    if foreign:
        raise TargetNotEmpty(
            f"refusing to copy into {target.where()}: it is not empty (it has tables of its own:"
            f" {', '.join(foreign[:5])}); give an empty database"
        )
    filled = [(t, _count(target, t)) for t in ORDER if t in tables and t not in REPLACED]
    filled = [(t, n) for t, n in filled if n]
    if filled:
        said = ", ".join(f"{n} {t}" for t, n in filled[:4])
        raise TargetNotEmpty(
            f"refusing to copy into {target.where()}: it already holds a state ({said});"
            " give an empty database"
        )


def _rows(source: Database, table: str, columns: list[str]) -> Iterator[list[tuple[object, ...]]]:
    cursor = source.conn.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY 1")
    while True:
        batch = cursor.fetchmany(BATCH)
        if not batch:
            return
        yield [tuple(row) for row in batch]


def copy_state(source: Database, target: Database) -> CopyResult:
    """Copy every row of `source` (SQLite, migrations current) into `target` (PostgreSQL, empty,
    migrated) in one transaction; then count both sides."""
    result = CopyResult(source.where(), target.where())
    missing = [t for t in ORDER if t in _tables(source) and t not in _tables(target)]
    if missing:
        raise IncidentError(f"the target has no table {missing[0]}: its schema is not current")
    present = [t for t in ORDER if t in _tables(source)]
    with write_tx(target):
        for table in present:
            columns = _columns(source, table)
            if table in REPLACED:
                target.conn.execute(f"DELETE FROM {table}")
            marks = ", ".join("?" * len(columns))
            sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
            for batch in _rows(source, table, columns):
                target.conn.executemany(sql, batch)
        for table in ID_TABLES:
            if table in present:
                result.next_ids[table] = _continue_ids(target, table)
    for table in present:
        result.counts[table] = (_count(source, table), _count(target, table))
    return result


def _continue_ids(target: Database, table: str) -> int:
    """Move the table's id counter past its highest id (and, for incidents, past every id
    `archive` removed): returns the next id it gives."""
    top = int(target.conn.execute(f"SELECT COALESCE(max(id), 0) FROM {table}").fetchone()[0])
    if table == "incidents":
        floor = target.conn.execute(
            "SELECT COALESCE(max(value), 0) FROM id_floor WHERE name = 'incidents'"
        ).fetchone()[0]
        top = max(top, int(floor))
    called = "true" if top else "false"  # false: the next id is 1 itself
    target.conn.execute(
        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), ?, {called})", (max(top, 1),)
    )
    return top + 1
