"""Thresholds applied to metrics: a verdict per guardrail and one for the gate, with reasons."""

from __future__ import annotations

import math

from evalgate.results import GuardrailVerdict, RunResult, ThresholdOut, Verdict


def fmt(metric: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    if metric.endswith("_rate"):
        return f"{value:.1%}"
    if metric.endswith("_usd"):
        return money(value)
    if metric.endswith("_ms"):
        return f"{value:.0f} ms"
    return f"{value:.4g}"


def money(value: float) -> str:
    """Dollars with three significant digits and never an exponent: $0.0000177, $0.0713,
    $12.35 (cents at least)."""
    if value == 0 or not math.isfinite(value):
        return f"${value:g}"
    digits = max(2, 2 - math.floor(math.log10(abs(value))))
    return f"${value:,.{digits}f}"


def judge_metric(metric: str, value: float | None, low: float | None,
                 high: float | None) -> GuardrailVerdict:
    """A point estimate against a threshold, for metrics evalgate has no test for."""
    threshold = ThresholdOut(max=high, min=low)
    if value is None or math.isnan(value):
        return GuardrailVerdict(guardrail=metric, metric=metric, kind="point", test=POINT_TEST,
                                value=None, threshold=threshold, verdict="INCONCLUSIVE",
                                reason=f"cannot decide {metric}: no data (no answered calls)")
    problems = []
    if high is not None and value > high:
        problems.append(f"above the maximum {fmt(metric, high)}")
    if low is not None and value < low:
        problems.append(f"below the minimum {fmt(metric, low)}")
    bounds = " and ".join(b for b in (
        f"max {fmt(metric, high)}" if high is not None else "",
        f"min {fmt(metric, low)}" if low is not None else "") if b)
    common = dict(guardrail=metric, metric=metric, kind="point", test=POINT_TEST, value=value,
                  threshold=threshold)
    if problems:
        return GuardrailVerdict(**common, verdict="FAIL",
                                reason=f"{metric} is {fmt(metric, value)}, "
                                f"{' and '.join(problems)}")
    return GuardrailVerdict(**common, verdict="PASS",
                            reason=f"{metric} is {fmt(metric, value)}, within {bounds}")


POINT_TEST = "point estimate vs threshold (no test)"


def overall_verdict(verdicts: list[Verdict]) -> Verdict:
    """FAIL if any guardrail fails; PASS only if every one passes; INCONCLUSIVE otherwise."""
    if "FAIL" in verdicts:
        return "FAIL"
    if "INCONCLUSIVE" in verdicts:
        return "INCONCLUSIVE"
    return "PASS"


def blocks(verdict: Verdict, on_inconclusive: str) -> bool:
    """Does this verdict fail its test item (and so the CI job)?"""
    return verdict == "FAIL" or (verdict == "INCONCLUSIVE" and on_inconclusive == "fail")


def blocking_candidates(result: RunResult) -> set[str]:
    """The candidates whose failing gate items fail the run under `require` (by name)."""
    names = [result.candidate.name, *(a.info.name for a in result.alternatives)]
    if result.require == "all":
        return set(names)
    if result.require == "any":
        verdicts = [result.primary_verdict or result.verdict,
                    *(a.verdict for a in result.alternatives)]
        return set() if "PASS" in verdicts else set(names)
    return {result.candidate.name}
