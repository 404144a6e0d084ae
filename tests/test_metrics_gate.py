"""Run metrics from records, and the gate's verdicts on them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from evalgate.gate.metrics import compute_metrics, percentile
from evalgate.gate.verdicts import blocks, judge_metric, overall_verdict
from evalgate.results import Attempt, Record, Verdict
from evalgate.spec.config import GateSettings

# --------------------------------------------------------------------------- percentile


@pytest.mark.parametrize("n", [1, 2, 3, 7, 20, 101, 1000])
@pytest.mark.parametrize("q", [0, 1, 5, 25, 33.3, 50, 90, 95, 99, 99.9, 100])
def test_percentile_matches_numpy(n: int, q: float) -> None:
    rng = np.random.default_rng(20240611 + n)
    for _ in range(5):
        data = rng.lognormal(mean=5.0, sigma=1.0, size=n).tolist()
        assert percentile(data, q) == pytest.approx(float(np.percentile(data, q)), rel=1e-12)


def test_percentile_ties_and_order() -> None:
    data = [5.0, 1.0, 3.0, 3.0, 9.0]
    for q in (0, 10, 50, 75, 100):
        assert percentile(data, q) == pytest.approx(float(np.percentile(data, q)))
    assert percentile(data, 0) == 1.0
    assert percentile(data, 100) == 9.0
    assert percentile(data, 50) == 3.0
    assert percentile([1.0, 2.0], 50) == 1.5
    assert data == [5.0, 1.0, 3.0, 3.0, 9.0]  # input left unsorted


def test_percentile_no_data() -> None:
    assert percentile([], 50) is None


# --------------------------------------------------------------------------- metrics


def rec(key: str, *, ok: bool = True, latency: float | None = None, cost: float | None = None,
        tin: int | None = None, tout: int | None = None, passed: bool | None = None,
        hallucination: bool | None = None, attempts: int = 1, estimated: bool = False) -> Record:
    return Record(
        key=key, set=key.split("/")[0], case_id=key.split("/")[1], ok=ok,
        text="answer" if ok else None, latency_ms=latency, cost_usd=cost, input_tokens=tin,
        output_tokens=tout, passed=passed, hallucination=hallucination, usage_estimated=estimated,
        attempts=[Attempt(n=i + 1, latency_ms=1.0) for i in range(attempts)],
        error_class=None if ok else "timeout",
    )


RECORDS = [
    rec("s/a", latency=100, cost=0.001, tin=10, tout=20, passed=True, hallucination=False),
    rec("s/b", latency=200, cost=0.003, tin=30, tout=40, passed=False, hallucination=True,
        attempts=2),
    rec("s/c", latency=300, cost=0.002, tin=20, tout=30, passed=False, hallucination=False,
        estimated=True),
    rec("s/a", latency=400, cost=0.002, tin=20, tout=30, passed=True, hallucination=False),
    # Failed calls: slow and never graded; they may not touch latency, cost or quality rates.
    rec("s/d", ok=False, latency=9000, attempts=3),
    rec("s/e", ok=False),
]


def test_compute_metrics() -> None:
    metrics, _ = compute_metrics(RECORDS)
    latencies = [100, 200, 300, 400]
    assert metrics["latency_p50_ms"] == pytest.approx(np.percentile(latencies, 50))
    assert metrics["latency_p95_ms"] == pytest.approx(np.percentile(latencies, 95))
    assert metrics["latency_p99_ms"] == pytest.approx(np.percentile(latencies, 99))
    assert metrics["cost_per_request_usd"] == pytest.approx(0.002)
    assert metrics["cost_per_1k_usd"] == pytest.approx(1000 * 0.002)
    assert metrics["tokens_in_mean"] == pytest.approx(20)
    assert metrics["tokens_out_mean"] == pytest.approx(30)
    assert metrics["error_rate"] == pytest.approx(2 / 6)
    assert metrics["pass_rate"] == pytest.approx(2 / 4)
    assert metrics["hallucination_rate"] == pytest.approx(1 / 4)


def test_compute_counts() -> None:
    _, counts = compute_metrics(RECORDS)
    assert counts == {
        "calls": 6, "answered": 4, "errors": 2, "graded": 4, "passed": 2, "hallucinations": 1,
        "retried_calls": 2, "attempts": 1 + 2 + 1 + 1 + 3 + 1, "usage_estimated": 1,
        "canaries": 5, "throttled_ms": 0, "fallback_answers": 0, "streamed": 0,
    }


def test_answered_but_ungraded_counts_for_latency_not_quality() -> None:
    records = [
        rec("s/a", latency=100, cost=0.01, passed=True, hallucination=False),
        rec("s/b", latency=300, cost=0.03),  # answered, not graded
    ]
    metrics, counts = compute_metrics(records)
    assert metrics["latency_p50_ms"] == pytest.approx(200)
    assert metrics["cost_per_1k_usd"] == pytest.approx(20.0)
    assert metrics["pass_rate"] == 1.0
    assert metrics["hallucination_rate"] == 0.0
    assert metrics["error_rate"] == 0.0
    assert (counts["answered"], counts["graded"]) == (2, 1)


def test_missing_usage_is_left_out_of_means() -> None:
    records = [rec("s/a", latency=10, cost=0.004, tin=100), rec("s/b", latency=20)]
    metrics, _ = compute_metrics(records)
    assert metrics["cost_per_request_usd"] == pytest.approx(0.004)
    assert metrics["tokens_in_mean"] == pytest.approx(100)
    assert metrics["tokens_out_mean"] is None


def test_all_calls_failed() -> None:
    metrics, counts = compute_metrics([rec("s/a", ok=False), rec("s/b", ok=False)])
    assert metrics["error_rate"] == 1.0
    for name in ("pass_rate", "hallucination_rate", "latency_p95_ms", "cost_per_1k_usd",
                 "tokens_in_mean"):
        assert metrics[name] is None
    assert (counts["calls"], counts["answered"], counts["graded"]) == (2, 0, 0)


def test_no_records() -> None:
    metrics, counts = compute_metrics([])
    assert all(value is None for value in metrics.values())
    assert counts["calls"] == 0


# --------------------------------------------------------------------------- verdicts


@pytest.mark.parametrize(("value", "verdict"), [
    (0.0, "PASS"), (899.9, "PASS"), (900.0, "PASS"), (900.0001, "FAIL"), (5000.0, "FAIL"),
])
def test_judge_max_bound(value: float, verdict: Verdict) -> None:
    result = judge_metric("latency_p95_ms", value, None, 900.0)
    assert result.verdict == verdict
    assert result.value == value
    assert (result.threshold.max, result.threshold.min) == (900.0, None)
    assert "latency_p95_ms" in result.reason
    if verdict == "FAIL":
        assert "above the maximum" in result.reason


@pytest.mark.parametrize(("value", "verdict"), [
    (1.0, "PASS"), (0.85, "PASS"), (0.8499, "FAIL"), (0.0, "FAIL"),
])
def test_judge_min_bound(value: float, verdict: Verdict) -> None:
    result = judge_metric("pass_rate", value, 0.85, None)
    assert result.verdict == verdict
    if verdict == "FAIL":
        assert "below the minimum" in result.reason


@pytest.mark.parametrize(("value", "verdict"), [
    (0.1, "FAIL"), (0.2, "PASS"), (0.5, "PASS"), (0.8, "PASS"), (0.81, "FAIL"),
])
def test_judge_both_bounds(value: float, verdict: Verdict) -> None:
    assert judge_metric("tokens_out_mean", value, 0.2, 0.8).verdict == verdict


@pytest.mark.parametrize(("low", "high"), [(None, 1.0), (0.5, None), (0.1, 0.9)])
def test_judge_no_data_is_inconclusive(low: float | None, high: float | None) -> None:
    result = judge_metric("error_rate", None, low, high)
    assert result.verdict == "INCONCLUSIVE"
    assert result.value is None
    assert "no data" in result.reason


def test_reasons_are_formatted() -> None:
    assert "12.0%" in judge_metric("error_rate", 0.12, None, 0.02).reason
    assert "2.0%" in judge_metric("error_rate", 0.12, None, 0.02).reason
    assert "$0.5" in judge_metric("cost_per_1k_usd", 0.7, None, 0.5).reason
    assert "900 ms" in judge_metric("latency_p95_ms", 120.0, None, 900.0).reason


def settings(**metrics: dict[str, Any]) -> GateSettings:
    return GateSettings.model_validate({"metrics": metrics})


@pytest.mark.parametrize(("verdicts", "overall"), [
    (["PASS"], "PASS"),
    (["PASS", "PASS", "PASS"], "PASS"),
    (["PASS", "FAIL"], "FAIL"),
    (["FAIL", "INCONCLUSIVE"], "FAIL"),
    (["INCONCLUSIVE", "PASS", "FAIL"], "FAIL"),
    (["PASS", "INCONCLUSIVE"], "INCONCLUSIVE"),
    (["INCONCLUSIVE"], "INCONCLUSIVE"),
])
def test_overall_verdict(verdicts: list[Verdict], overall: Verdict) -> None:
    assert overall_verdict(verdicts) == overall


@pytest.mark.parametrize(("verdict", "policy", "blocked"), [
    ("PASS", "fail", False), ("PASS", "warn", False), ("PASS", "pass", False),
    ("FAIL", "fail", True), ("FAIL", "warn", True), ("FAIL", "pass", True),
    ("INCONCLUSIVE", "fail", True), ("INCONCLUSIVE", "warn", False),
    ("INCONCLUSIVE", "pass", False),
])
def test_blocks(verdict: Verdict, policy: str, blocked: bool) -> None:
    assert blocks(verdict, policy) is blocked


def test_nan_metric_is_inconclusive_never_pass() -> None:
    from evalgate.gate.verdicts import judge_metric as judge

    verdict = judge("latency_p95_ms", float("nan"), None, 100.0)
    assert verdict.verdict == "INCONCLUSIVE"
