"""The three anomaly checks over a journey's newest results, and their edges."""

from __future__ import annotations

import pytest

from incident_cli.anomaly import evaluate, p95
from incident_cli.config import AnomalyConfig
from incident_cli.journeys import JourneyResult

SMALL = AnomalyConfig(window=4, fail_threshold=0.25, p95_factor=1.5, consecutive_failures=3)


def results(pattern: str, latencies: list[float] | None = None) -> list[JourneyResult]:
    """'.' an ok run, 'x' a failed one, oldest first; latency 100 ms unless given."""
    lat = latencies or [100.0] * len(pattern)
    assert len(lat) == len(pattern)
    return [
        JourneyResult("login", at=1000.0 + i, ok=ch == ".", latency_ms=lat[i])
        for i, ch in enumerate(pattern)
    ]


def tripped(pattern: str, latencies: list[float] | None = None, settings: AnomalyConfig = SMALL):
    return {c.name for c in evaluate("login", results(pattern, latencies), settings).tripped}


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("", set()),
        ("xx", set()),  # window not full, and a run shorter than 3
        ("..x", set()),  # window not full: no failure rate yet
        ("...x", set()),  # 1/4 is exactly the threshold: does not trip
        ("..xx", {"failure_rate"}),
        ("xxx", {"consecutive_failures"}),  # needs only 3 results, not a full window
        ("x.x.", {"failure_rate"}),
        ("....x.", set()),  # the failure is in the window, at the threshold
        ("xx.xx", {"failure_rate"}),  # a run of 2 is broken by a success
        ("..xxx", {"failure_rate", "consecutive_failures"}),
        ("xxxxx.", {"failure_rate"}),  # the newest result succeeded: no run
        ("xxx....", set()),  # the old run is out of the window
    ],
)
def test_failure_rate_and_consecutive_failures(pattern: str, expected: set[str]) -> None:
    assert tripped(pattern) == expected


OLD = "100 100 100 100 "


def ms(text: str) -> list[float]:
    return [float(v) for v in text.split()]


@pytest.mark.parametrize(
    ("latencies", "expected"),
    [
        (OLD + "100 100 100 151", {"p95_latency"}),
        (OLD + "100 100 100 150", set()),  # exactly 1.5 x the baseline: does not trip
        (OLD + "149 149 149 149", set()),
        ("100 100 100 100 100 100 151", set()),  # 7 results: the window before is not full
        ("100 100 100 200 200 200 200 200", set()),  # the baseline is slow too
        ("100 100 100 100 1 1 1 1", set()),  # faster is never an anomaly
    ],
)
def test_p95_against_the_window_before(latencies: str, expected: set[str]) -> None:
    assert tripped("." * len(ms(latencies)), ms(latencies)) == expected


def test_a_baseline_of_zero_ms_has_nothing_to_compare_with() -> None:
    assert tripped("........", [0.0] * 4 + [5.0] * 4) == set()


def test_failed_runs_latency_is_not_part_of_the_p95() -> None:
    # A timed-out run took 30 s; the successful ones are as fast as before.
    e = evaluate("login", results("......x.", [100.0] * 6 + [30000.0, 100.0]), SMALL)
    assert e.p95_ms == 100.0
    assert {c.name for c in e.tripped} == set()


def test_a_window_without_successes_has_no_p95() -> None:
    e = evaluate("login", results("....xxxx"), SMALL)
    assert e.p95_ms is None
    assert {c.name for c in e.tripped} == {"failure_rate", "consecutive_failures"}


def test_a_failed_run_may_have_no_latency() -> None:
    rows = results("....")
    rows.append(JourneyResult("login", 2000.0, False, None))
    e = evaluate("login", rows, SMALL)
    assert e.failures == 1


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        # Nearest rank over 20 results is the 19th: one slow run out of 20 is not the p95.
        (20, set()),
        # Over 12 it is the 12th, the slowest: one slow run is the p95 and trips the check.
        (12, {"p95_latency"}),
    ],
)
def test_a_single_slow_outlier(window: int, expected: set[str]) -> None:
    settings = AnomalyConfig(window=window, p95_factor=1.5, consecutive_failures=3)
    latencies = [100.0] * (2 * window - 1) + [2000.0]
    assert tripped("." * (2 * window), latencies, settings) == expected


def test_ties_at_the_p95_rank() -> None:
    settings = AnomalyConfig(window=20, p95_factor=1.5, consecutive_failures=3)
    # Two slow runs out of 20: the 19th and 20th values tie at 300, so the p95 is 300.
    latencies = [100.0] * 20 + [100.0] * 18 + [300.0, 300.0]
    e = evaluate("login", results("." * 40, latencies), settings)
    assert e.p95_ms == 300.0
    assert e.baseline_p95_ms == 100.0
    assert [c.name for c in e.tripped] == ["p95_latency"]
    assert e.tripped[0].numbers == {
        "p95_ms": 300.0,
        "baseline_p95_ms": 100.0,
        "factor": 1.5,
        "limit_ms": 150.0,
    }


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], None),
        ([7.0], 7.0),
        ([3.0, 1.0, 2.0], 3.0),
        ([float(v) for v in range(1, 13)], 12.0),
        ([float(v) for v in range(1, 21)], 19.0),
        ([float(v) for v in range(100, 0, -1)], 95.0),
        ([5.0] * 10, 5.0),
    ],
)
def test_p95_is_nearest_rank(values: list[float], expected: float | None) -> None:
    assert p95(values) == expected


def test_severity_is_critical_only_for_a_run_of_failures() -> None:
    assert evaluate("login", results("..xx"), SMALL).severity == "warning"
    assert evaluate("login", results(".xxx"), SMALL).severity == "critical"


def test_the_numbers_of_each_check() -> None:
    e = evaluate("login", results("....xxxx"), SMALL)
    by_name = {c.name: c for c in e.tripped}
    assert by_name["failure_rate"].numbers == {
        "failure_rate": 1.0,
        "threshold": 0.25,
        "failures": 4,
        "results": 4,
    }
    assert by_name["consecutive_failures"].numbers == {"run": 4, "threshold": 3}
    assert by_name["consecutive_failures"].onset == 1004.0  # the first failure of the run
    assert "4 failures in a row" in by_name["consecutive_failures"].describe()
