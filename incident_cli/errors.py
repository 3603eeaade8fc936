"""Exit statuses and the exceptions that map onto them."""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0
    PARTIAL_FAILURE = 1  # ran, but part of its own job failed
    USAGE = 2
    TEMPFAIL = 75  # try again next tick: source unreachable or lock busy
    CONFIG = 78  # the config file is invalid


class IncidentError(Exception):
    """An error the CLI reports as one line on stderr with a specific exit status."""

    exit_status = ExitStatus.PARTIAL_FAILURE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(IncidentError):
    exit_status = ExitStatus.CONFIG

    def __init__(self, file: str, path: str, problem: str) -> None:
        from incident_cli.redact import mask_userinfo

        # The config is not read yet, so its secrets are unknown: a URL's credentials, at
        # least, never reach the message.
        problem = mask_userinfo(problem)
        where = f"{file}: {path}: " if path else f"{file}: "
        super().__init__(f"invalid config: {where}{problem}")
        self.file = file
        self.path = path
        self.problem = problem


class SourceError(IncidentError):
    """A source could not be read or answered something that is not the expected shape."""

    exit_status = ExitStatus.TEMPFAIL


class UnsafeState(IncidentError):
    """A state file or directory that someone else could have written (exit 78, like a config
    error: a person has to fix it)."""

    exit_status = ExitStatus.CONFIG


class LockBusy(IncidentError):
    exit_status = ExitStatus.TEMPFAIL


class UsageError(IncidentError):
    exit_status = ExitStatus.USAGE


class NotFound(IncidentError):
    exit_status = ExitStatus.PARTIAL_FAILURE


def worst_exit(codes: list[int]) -> int:
    """The exit status of several steps. A failure of the command's own job (1, or any other
    non-zero) outranks "try again next tick" (75): a dead letter must not hide behind a source
    that is down (and 75 counts as success for the shipped systemd unit)."""
    failures = [c for c in codes if c not in (0, int(ExitStatus.TEMPFAIL))]
    if failures:
        return max(failures)
    return int(ExitStatus.TEMPFAIL) if int(ExitStatus.TEMPFAIL) in codes else 0
