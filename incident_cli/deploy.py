"""Deployment files: the crontab lines and systemd units for an install, with absolute paths."""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Install:
    """Where this install lives: the program to run, the config and (optionally) the DB."""

    program: tuple[str, ...]
    config: str | None
    db: str | None = None
    env_file: str = "/etc/incident/incident.env"
    state_dir: str = "/var/lib/incident"
    textfile: str = "/var/lib/prometheus/node-exporter/incident.prom"

    def command(self, *args: str) -> str:
        argv = [*self.program]
        if self.config:
            argv += ["-c", self.config]
        if self.db:
            argv += ["--db", self.db]
        return shlex.join([*argv, *args])

    def cron_command(self, *args: str) -> str:
        # cron turns an unescaped % into a newline
        return self.command(*args).replace("%", "\\%")


def this_install(config: str | None, db: str | None) -> Install:
    """The running interpreter's `incident` (a venv's or pipx's script), else `python -m`."""
    script = Path(sys.executable).parent / "incident"
    program: tuple[str, ...] = (
        (str(script),) if script.exists() else (sys.executable, "-m", "incident_cli")
    )
    return Install(
        program=program,
        config=str(Path(config).resolve()) if config else None,
        db=str(Path(db).resolve()) if db else None,
    )


# Where the shipped crontab puts its nightly `state backup` copies.
BACKUP_DIR = "/var/backups/incident"


def every_text(seconds: float) -> str:
    """A duration as `run --every` and systemd read it: `5s`, `1.5s`."""
    return f"{seconds:g}s"


def run_args(every: float | None) -> tuple[str, ...]:
    """`run`, or for a crontab line with ticks every `every` seconds through the minute: the
    last starts at `60s - every` and ends by the next minute's line, which waits up to `every`
    for the lock should that tick run late (rather than lose its whole minute to exit 75)."""
    if every is None:
        return ("run",)
    return (
        "--wait",
        f"{every:g}",  # seconds
        "run",
        "--every",
        every_text(every),
        "--for",
        every_text(60 - every),
    )


def crontab(install: Install, every: float | None = None) -> str:
    what = (
        "One tick a minute"
        if every is None
        else f"A tick every {every_text(every)} (one lock for the minute's ticks)"
    )
    return f"""\
# incident — crontab lines (install with `crontab -e`, or into /etc/cron.d with a user column).
# Cron mails any output: incident is silent on success. Set the variables of
# {install.env_file} in this crontab's header (cron does not read env files).
# {what}: poll, detect-anomalies, recover, notify (exit 75 = try next tick).
* * * * * {install.cron_command("--quiet", *run_args(every))}
# Hourly report of the hours that had incidents, mailed by cron (the MAILTO of this crontab):
0 * * * * {install.cron_command("report", "1", "--format", "markdown", "--quiet-if-empty")}
# Metrics for Prometheus via node_exporter's textfile collector (written atomically):
* * * * * {install.cron_command("metrics", "--textfile", install.textfile)}
# Daily retention: resolved incidents older than 90 days (report numbers are kept).
17 3 * * * {install.cron_command("--quiet", "archive", "--older-than", "90")}
# Nightly online backup (never overwrites; mode 0600), then keep 14 days of them:
37 3 * * * {_nightly_backup(install)}
"""


def _nightly_backup(install: Install) -> str:
    backup = install.cron_command("--quiet", "state", "backup")
    return (
        f"mkdir -p -m 0700 {BACKUP_DIR} && {backup} {BACKUP_DIR}/incident-$(date +\\%F).db"
        f" && find {BACKUP_DIR} -name 'incident-*.db' -mtime +14 -delete"
    )


def _unit_value(value: str) -> str:
    # systemd expands %-specifiers in unit values; quote values with white space.
    value = value.replace("%", "%%")
    return f'"{value}"' if any(c.isspace() for c in value) else value


def service_unit(install: Install, every: float | None = None) -> str:
    db = install.db or install.state_dir + "/incident.db"
    db_dir = str(Path(db).parent)
    writable = ""
    if db_dir != install.state_dir:
        # ProtectSystem=strict makes everything read-only but the StateDirectory.
        writable = f"ReadWritePaths={_unit_value(db_dir)}\n"
    # Started every `every` seconds by the timer: each tick ends before the next is due.
    tick_args = ("run",) if every is None else ("run", "--max-runtime", every_text(every))
    return f"""\
# incident — one tick: poll, detect-anomalies, recover, notify. Started by incident.timer.
[Unit]
Description=incident tick (Prometheus/Alertmanager incident response)
After=network-online.target
Wants=network-online.target

[Service]
Type=oneshot
ExecStart={install.command("--quiet", *tick_args).replace("%", "%%")}
EnvironmentFile=-{_unit_value(install.env_file)}
Environment={_unit_value("INCIDENT_DB=" + db)}
{writable}StateDirectory=incident
StateDirectoryMode=0700
UMask=0077
# 75 means "try again next tick" (a source down, or the previous tick still running).
SuccessExitStatus=75
TimeoutStartSec=15min
# Sandbox. Recovery commands run inside it: if yours need to write elsewhere (or gain
# privileges, e.g. through sudo), add ReadWritePaths= or drop NoNewPrivileges= for them.
ProtectSystem=strict
ProtectHome=read-only
PrivateTmp=yes
NoNewPrivileges=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
LockPersonality=yes
"""


def timer_unit(every: float | None = None) -> str:
    if every is not None:
        return f"""\
# incident — runs incident.service every {every_text(every)} (counted from each start).
[Unit]
Description=incident tick every {every_text(every)}

[Timer]
OnActiveSec=0
OnUnitActiveSec={every_text(every)}
AccuracySec=1s

[Install]
WantedBy=timers.target
"""
    return """\
# incident — runs incident.service every minute.
[Unit]
Description=incident tick every minute

[Timer]
OnCalendar=*-*-* *:*:00
AccuracySec=1s
Persistent=false

[Install]
WantedBy=timers.target
"""


SHIPPED = Install(program=("/usr/local/bin/incident",), config="/etc/incident/incident.yaml")
