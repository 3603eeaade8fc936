"""What every command shares: the Env (options, config, DB, clock), the tick lock and
heartbeat, error lines and output helpers."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from incident_cli.config.defaults import COLUMNS_VAR, CONFIG_VAR, DB_VAR
from incident_cli.errors import ExitStatus, IncidentError, worst_exit

if TYPE_CHECKING:
    import typer

    from incident_cli.config.model import Config
    from incident_cli.outcomes import StageResult
    from incident_cli.reporting.eventlog import EventLog
    from incident_cli.runtime import TickRuntime
    from incident_cli.store.database import Database

MAX_RUNTIME_HELP = (
    "Wall-clock limit of the tick, from when it has the lock (default 50s): past it, the tick"
    " stops between units of work, names what was slow and exits 75."
)


@dataclass
class Env:
    """What every command needs: options, lazily loaded config and DB, streams and the clock."""

    config_path: str | None = None
    db_path: str | None = None
    wait: float = 0.0
    max_runtime: float | None = None  # None: DEFAULT_MAX_RUNTIME
    runtime: TickRuntime | None = None  # set by tick() once it has the lock
    verbose: bool = False
    quiet: bool = False
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    clock: Callable[[], float] = time.time
    _config: Config | None = None
    _db: Database | None = None
    event_log: EventLog | None = None
    # What the tick's summary line in the event log says beyond its exit code (run: its stages).
    tick_stages: list[dict[str, Any]] = field(default_factory=list)

    def config(self) -> Config:
        if self._config is None:
            from incident_cli.config.load import load_config

            path = self.config_path or self.environ.get(CONFIG_VAR)
            # The parsed file is cached beside the DB when the DB is named without the config
            # (--db or INCIDENT_DB, as the crontab line does).
            db = self.db_path or self.environ.get(DB_VAR)
            cache = None
            if db:
                from incident_cli.config.cache import cache_path

                cache = cache_path(db)
            self._config = load_config(
                path or "incident.yaml", self.environ, must_exist=bool(path), cache=cache
            )
        return self._config

    def resolved_db_path(self) -> str:
        return self.db_path or self.environ.get(DB_VAR) or self.config().db_path

    def db(self) -> Database:
        if self._db is None:
            from incident_cli.store.connection import is_url, open_db

            path = self.resolved_db_path()
            created = not is_url(path) and path != ":memory:" and not os.path.lexists(path)
            config = self.config()
            self._db = open_db(path, password=config.db_password, host=config.host)
            if created:
                self._say_where_state_goes(path)
            log = self.config().log
            if log is not None:
                from incident_cli.reporting.eventlog import EventLog

                self.event_log = EventLog(log.file, self.config().secrets())
                self.event_log.attach(self._db)
        return self._db

    def _say_where_state_goes(self, path: str) -> None:
        """With no config file, state lands in whatever directory cron started in: say so
        once, when that DB is created (even with --quiet: it is the only time it is said)."""
        from incident_cli.config.defaults import BUILTIN, DEFAULT_CONFIG_NAME

        if self.config().path == BUILTIN:
            sys.stderr.write(
                f"incident: no config file ./{DEFAULT_CONFIG_NAME}: using the built-in defaults;"
                f" created the state DB {os.path.abspath(path)} (name a config file with -c or"
                f" {CONFIG_VAR}, or the DB with --db or {DB_VAR})\n"
            )

    def now(self) -> float:
        return self.clock()

    def secrets(self) -> list[str]:
        found = self._config.secrets() if self._config is not None else []
        where = self.db_path or self.environ.get(DB_VAR) or ""
        if "@" in where and where.startswith(("postgresql://", "postgres://")):
            from urllib.parse import urlsplit

            with contextlib.suppress(ValueError):
                password = urlsplit(where).password
                if password:
                    found = [*found, password]
        return found

    def close(self) -> None:
        if self._db is not None:
            if self.event_log is not None:
                # Events written outside write_tx (autocommit) are committed too.
                from incident_cli.store.database import STORE_ERRORS

                with contextlib.suppress(*STORE_ERRORS):
                    self.event_log.flush(self._db)
                self.event_log.close()
                self.event_log = None
            self._db.close()
            self._db = None


def print_error(message: str, env: Env | None) -> None:
    from incident_cli.display import printable
    from incident_cli.redact import mask_userinfo, redact

    text = mask_userinfo(redact(message, env.secrets() if env else []))
    line = printable(" ".join(text.split()))  # one inert line, whatever the message held
    sys.stderr.write(f"incident: {line}\n")


def failure_code(exc: Exception, env: Env | None) -> int:
    """The one stderr line for a command's failure, and its exit code (a traceback with -v
    for the unexpected ones). The Typer group and the `run` fast path both end here."""
    from incident_cli.outcomes import describe_exception

    code, message = describe_exception(exc, _db_path(env))
    print_error(message, env)
    if env is not None and env.verbose and not isinstance(exc, IncidentError):
        import traceback

        traceback.print_exc()
    return code


def _db_path(env: Env | None) -> str | None:
    """The state DB's path for an error message, if it is known without failing again."""
    if env is None:
        return None
    try:
        return env.resolved_db_path()
    except Exception:
        return env.db_path


def get_env(ctx: typer.Context) -> Env:
    obj = ctx.find_object(Env)
    assert obj is not None
    return obj


def max_runtime_option() -> Any:
    """`--max-runtime` after a tick command's name; it wins over the one before it."""
    import typer

    return typer.Option(
        None, "--max-runtime", metavar="D", help=MAX_RUNTIME_HELP, show_default=False
    )


def set_max_runtime(env: Env, text: str | None) -> None:
    if text is not None:
        env.max_runtime = duration_option("--max-runtime", text)


def duration_option(option: str, text: str) -> float:
    """A duration option's seconds, more than 0; else a usage error naming the option."""
    from incident_cli.errors import UsageError
    from incident_cli.times import parse_duration

    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None
    if seconds <= 0:
        raise UsageError(f"{option} must be more than 0s")
    return seconds


@dataclass
class TickRecord:
    """What a tick command's body reports: exit codes, and the error lines its heartbeat keeps."""

    codes: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def add(self, stage: StageResult) -> None:
        self.codes.append(stage.code)
        self.errors.extend(stage.errors)


@contextmanager
def tick(
    env: Env, command: str, *, lock: bool = True, heartbeat: bool = True
) -> Iterator[TickRecord]:
    """Run a tick command under the tick lock and leave a heartbeat with its exit code.

    The body adds exit codes (or whole stage results) to the yielded record; the worst code
    is recorded, with the stage's error lines. An exception records the status and the line
    `outcomes.describe_exception` gives it, the ones the command exits with. A dry run passes
    heartbeat=False: a manual dry run must not hide a stale tick from `incident status`.
    `lock=False` when the caller already holds the lock (`run --every` holds it for all its
    ticks, see `held_lock`).
    """
    from incident_cli.runtime import DEFAULT_MAX_RUNTIME, TickRuntime
    from incident_cli.store.connection import tick_lock
    from incident_cli.store.status import record_heartbeat

    env.config()
    db = env.db()
    record = TickRecord()
    codes = record.codes
    error: str | None = None
    env.tick_stages = []  # one summary line per tick, also when one invocation runs several
    lock_ctx = tick_lock(db, env.resolved_db_path(), env.wait, env.config().host) if lock else None
    if lock_ctx is not None:
        lock_ctx.acquire()
    started = env.now()  # after the lock: the heartbeat's duration is the work's
    runtime = env.runtime = TickRuntime(
        DEFAULT_MAX_RUNTIME if env.max_runtime is None else env.max_runtime
    )
    try:
        yield record
        error = "; ".join(record.errors) or None
        if runtime.expired:
            print_error(f"{command}: {runtime.overrun()}", env)
            codes.append(int(ExitStatus.TEMPFAIL))
    except Exception as exc:
        from incident_cli.outcomes import describe_exception

        code, error = describe_exception(exc, db.where())  # a URL's password masked
        codes.append(code)
        raise
    except BaseException as exc:  # Ctrl-C or SIGTERM mid-tick is not a success
        if not isinstance(exc, SystemExit) or exc.code:
            codes.append(130 if isinstance(exc, KeyboardInterrupt) else 1)
            error = f"interrupted ({exc.__class__.__name__})"
        raise
    finally:
        try:
            from incident_cli.redact import redact

            finished = env.now()
            shown_error = redact(error, env.secrets()) if error else None
            if heartbeat:
                host = env.config().host
                code = worst_exit(codes)
                record_heartbeat(db, command, started, finished, code, shown_error, host)
                if env.event_log is not None:
                    env.event_log.tick(
                        command, started, finished, code, shown_error, env.tick_stages, host
                    )
        finally:
            if lock_ctx is not None:
                lock_ctx.release()


def say(env: Env, stage: StageResult, *, prefix: str = "", notes: bool = True) -> None:
    """A stage's lines on stderr, one each: its errors and (unless `notes` is off: --json
    carries them) its notes, whatever -q says. Cron mails them, so a failure that only repeats
    an earlier tick's waits for -v."""
    lines = stage.errors + (stage.notes if notes else [])
    shown = [line for line in lines if env.verbose or line not in stage.repeated]
    if not shown:
        return  # (the usual case: a quiet tick imports nothing to say it)
    from incident_cli.display import printable
    from incident_cli.redact import redact

    for line in shown:
        text = printable(" ".join(redact(prefix + line, env.secrets()).split()))
        sys.stderr.write(f"incident: {text}\n")


@contextmanager
def held_lock(env: Env) -> Iterator[None]:
    """The tick lock for the whole of a block (several ticks in one invocation)."""
    from incident_cli.store.connection import tick_lock

    host = env.config().host
    with tick_lock(env.db(), env.resolved_db_path(), env.wait, host):
        yield


def emit_json(data: Any) -> None:
    from incident_cli.display import json_text

    sys.stdout.write(json_text(data) + "\n")


# Off a terminal nothing is folded: rich needs a width, and none of our lines comes near this.
UNFOLDED_WIDTH = 1_000_000


def console() -> Any:
    """A rich Console on stdout (honours NO_COLOR); imported only by commands that print.

    Not on a terminal (cron mail, the journal, a pipe, a file, a pager) and with no COLUMNS,
    lines keep their whole length: a timeline line or a title split mid-word helps nobody, and
    `grep` finds whole lines. `:name:` emoji codes in untrusted text are not expanded.
    """
    from rich.console import Console

    width = None if sys.stdout.isatty() or os.environ.get(COLUMNS_VAR) else UNFOLDED_WIDTH
    return Console(highlight=False, soft_wrap=False, width=width, emoji=False)
