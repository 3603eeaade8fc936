"""The fault runs' timeline invariant catches what it is there to catch (and passes real lives)."""

from __future__ import annotations

import pytest

from tests.support.invariants import timeline_problems


@pytest.mark.parametrize(
    ("status", "reopens", "kinds"),
    [
        ("open", 0, ["opened", "alert_firing", "notified"]),
        ("acknowledged", 0, ["opened", "acknowledged", "note"]),
        ("resolved", 0, ["opened", "acknowledged", "resolved"]),
        ("open", 1, ["opened", "resolved", "reopened"]),
        ("resolved", 2, ["opened", "resolved", "reopened", "resolved", "reopened", "resolved"]),
    ],
)
def test_consistent_lives_pass(status: str, reopens: int, kinds: list[str]) -> None:
    assert timeline_problems(status, reopens, kinds) == []


@pytest.mark.parametrize(
    ("status", "reopens", "kinds", "problem"),
    [
        ("resolved", 0, ["opened", "alert_cleared"], "last open/resolve event is opened"),
        ("open", 0, ["opened", "resolved"], "status open but its last"),
        ("open", 0, ["opened", "resolved", "reopened"], "1 reopened events, reopen_count 0"),
        ("acknowledged", 1, ["opened", "acknowledged", "resolved", "reopened"], "no ack event"),
        ("open", 0, ["opened", "acknowledged"], "acknowledged since it last opened"),
        ("open", 0, ["alert_firing"], "does not start with one `opened`"),
        ("resolved", 0, ["opened", "resolved", "resolved"], "more resolves than opens"),
    ],
)
def test_inconsistent_lives_are_named(
    status: str, reopens: int, kinds: list[str], problem: str
) -> None:
    assert any(problem in found for found in timeline_problems(status, reopens, kinds))
