"""The PostgreSQL column of `make bench`: the storm poll, the steady poll and `report 24` over
the storm's incidents, each on SQLite and on PostgreSQL in the same run, alternating.

The PostgreSQL server is started for the bench on a loopback port (tests/support/postgres.py:
Debian's binaries, a temporary directory, gone afterwards), so its figures include a TCP
round trip per statement on the same machine, as a PostgreSQL on a nearby host would have.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import AlertServer, Timing, incident_argv, run_timed, synthetic_alerts  # noqa: E402

CASES = ("storm poll (new alerts)", "steady poll (no change)", "report 24 --format json")


def _config(workdir: Path, url: str, n: int) -> Path:
    config = workdir / "incident.yaml"
    config.write_text(
        f"""
sources:
  prometheus: {{type: prometheus, url: "{url}", timeout: 60s}}
incidents: {{storm: {{max_new_per_tick: 20}}}}
channels:
  slack: {{type: slack, webhook_url: "http://127.0.0.1:9/unused"}}
defaults: {{notify: [slack]}}
"""
    )
    return config


def _run(config: Path, where: str, *args: str) -> Timing:
    timing = run_timed([*incident_argv(config, "--db", where), *args], cwd=config.parent)
    if timing.code != 0:
        sys.exit(f"bench: `{' '.join(args)}` on {where.split('@')[-1]} exited {timing.code}")
    return timing


def postgres_cases(n: int, runs: int, work: Path) -> list[tuple[str, dict[str, list[Timing]]]]:
    """{case: {backend: timings}} for the three cases on both backends."""
    from tests.support.postgres import running_postgres

    found: dict[str, dict[str, list[Timing]]] = {c: {"SQLite": [], "PostgreSQL": []} for c in CASES}
    server = AlertServer()
    quiet = AlertServer()
    try:
        server.set_alerts(synthetic_alerts(n))
        with running_postgres() as pg:
            for i in range(runs):
                for backend in ("SQLite", "PostgreSQL"):
                    workdir = work / f"pg-{i}-{backend}"
                    workdir.mkdir()
                    if backend == "SQLite":
                        where = str(workdir / "incident.db")
                    else:
                        where = pg.url(pg.create_database())
                    # The first tick has run (as in production): the schema exists.
                    _run(_config(workdir, quiet.url, n), where, "poll")
                    config = _config(workdir, server.url, n)
                    found[CASES[0]][backend].append(_run(config, where, "poll"))
                    found[CASES[1]][backend].append(_run(config, where, "poll"))
                    found[CASES[2]][backend].append(
                        _run(config, where, "report", "24", "--format", "json")
                    )
    finally:
        server.close()
        quiet.close()
    return [(case, found[case]) for case in CASES]


def table(results: list[tuple[str, dict[str, list[Timing]]]], n: int, runs: int) -> str:
    lines = [
        "| case | N | SQLite | PostgreSQL | PostgreSQL / SQLite | peak RSS (PostgreSQL) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for case, by in results:
        lite = statistics.median(t.seconds for t in by["SQLite"])
        pg = statistics.median(t.seconds for t in by["PostgreSQL"])
        rss = max(t.peak_rss_mb for t in by["PostgreSQL"])
        lines.append(
            f"| {case} | {n:,} | {lite:.3f}s | {pg:.3f}s | {pg / lite:.2f}x | {rss:.0f} MB |"
        )
    lines.append(f"\nmedian of {runs} runs each; both backends in the same run, alternating")
    return "\n".join(lines)
