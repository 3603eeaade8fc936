"""The three anomaly checks over a journey's newest results, and their edges."""

from __future__ import annotations

import random
import statistics

import pytest

from incident_cli.config.model import AnomalyConfig
from incident_cli.intake.anomaly import evaluate, p95
from incident_cli.intake.journeys import JourneyResult

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
        (OLD + "151 151 151 151", {"p95_latency"}),
        (OLD + "150 150 150 150", set()),  # exactly 1.5 x the baseline: does not trip
        (OLD + "149 149 149 149", set()),
        # One slow run of four: the p95 is 100 + 0.85 x 51 = 143.35, under the limit of 150.
        (OLD + "100 100 100 151", set()),
        # Two: the p95 lies between 150 and 160 (158.5).
        (OLD + "100 100 150 160", {"p95_latency"}),
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
    ("window", "outlier", "expected"),
    [
        # Over 12 results the p95 is 45% of the way from the 11th to the 12th (the slowest)
        # value: one run at 151 or 200 ms over a flat 100 ms is a p95 of 122.95 or 145 ms.
        (12, 151.0, set()),
        (12, 200.0, set()),
        # One run more than (1.5 - 1) / 0.45 + 1 = 2.11 x the baseline still lifts it over.
        (12, 250.0, {"p95_latency"}),
        # Over 20 the slowest value weighs 5%: 2000 ms makes a p95 of 195 ms.
        (20, 1000.0, set()),
        (20, 2000.0, {"p95_latency"}),
    ],
)
def test_a_single_slow_outlier(window: int, outlier: float, expected: set[str]) -> None:
    settings = AnomalyConfig(window=window, p95_factor=1.5, consecutive_failures=3)
    latencies = [100.0] * (2 * window - 1) + [outlier]
    assert tripped("." * (2 * window), latencies, settings) == expected


def test_one_outlier_in_the_window_before_does_not_hide_a_sustained_jump() -> None:
    settings = AnomalyConfig(window=12, p95_factor=1.5, consecutive_failures=3)
    latencies = [100.0] * 11 + [1000.0] + [900.0] * 12
    e = evaluate("login", results("." * 24, latencies), settings)
    assert e.baseline_p95_ms == pytest.approx(505.0)  # 100 + 0.45 x 900, not the 1000 ms outlier
    assert e.p95_ms == 900.0
    assert [c.name for c in e.tripped] == ["p95_latency"]


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
        ([3.0, 1.0, 2.0], 2.9),  # rank 0.95 x 2 = 1.9: 2 + 0.9 x (3 - 2)
        ([float(v) for v in range(1, 13)], 11.45),  # rank 10.45
        ([float(v) for v in range(1, 21)], 19.05),  # rank 18.05
        ([float(v) for v in range(1, 22)], 20.0),  # rank 19: exactly a measured value
        ([float(v) for v in range(100, 0, -1)], 95.05),
        ([5.0] * 10, 5.0),
        ([100.0] * 11 + [151.0], 122.95),
    ],
)
def test_p95_interpolates_linearly_between_neighbours(
    values: list[float], expected: float | None
) -> None:
    assert p95(values) == (None if expected is None else pytest.approx(expected))


def test_p95_is_the_linear_method_of_numpy_and_statistics() -> None:
    rng = random.Random(5)
    for n in range(2, 60):
        values = [rng.choice([rng.uniform(0, 500), 100.0]) for _ in range(n)]
        expected = statistics.quantiles(values, n=100, method="inclusive")[94]
        assert p95(values) == pytest.approx(expected, rel=1e-12), n


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
