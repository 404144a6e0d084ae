"""Run metrics from graded records: latency percentiles, cost, tokens, error/hallucination/pass
rates. Rates of quality (pass, hallucination) are over answered calls; failed calls count in
`error_rate` only, so a flaky provider cannot hide behind a good pass rate or vice versa. A
refusal is a failed call, and `refusal_rate` (over all calls) singles it out."""

from __future__ import annotations

import math
from collections.abc import Sequence

from evalgate.results import Record

REFUSED = "refused"  # the error class of a refusal: a failed call, and its own rate


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolation percentile (numpy's default, 'type 7'); None for no data."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _per_canary_mean(records: Sequence[Record]) -> float | None:
    """Mean over canaries of each canary's mean tokens/s: canaries weigh alike (clustered)."""
    by_key: dict[str, list[float]] = {}
    for r in records:
        if r.tokens_per_s is not None:
            by_key.setdefault(r.key, []).append(r.tokens_per_s)
    return _mean([sum(v) / len(v) for v in by_key.values()])


def stream_metrics(answered: Sequence[Record]) -> dict[str, float | None]:
    """TTFT percentiles, p95 over calls of their mean inter-token gap, mean output rate.
    Absent (never 0) when no answer was streamed, so runs that do not stream report as before."""
    if not any(r.streamed for r in answered):
        return {}
    ttfts = [r.ttft_ms for r in answered if r.ttft_ms is not None]
    return {
        "ttft_p50_ms": percentile(ttfts, 50),
        "ttft_p95_ms": percentile(ttfts, 95),
        "ttft_p99_ms": percentile(ttfts, 99),
        "itl_p95_ms": percentile([r.itl_ms for r in answered if r.itl_ms is not None], 95),
        "tokens_per_s_mean": _per_canary_mean(answered),
    }


def compute_metrics(records: Sequence[Record]) -> tuple[dict[str, float | None], dict[str, int]]:
    answered = [r for r in records if r.ok]
    latencies = [r.latency_ms for r in answered if r.latency_ms is not None]
    costs = [r.cost_usd for r in answered if r.cost_usd is not None]
    graded = [r for r in answered if r.passed is not None]
    mean_cost = _mean(costs)
    metrics: dict[str, float | None] = {
        "latency_p50_ms": percentile(latencies, 50),
        "latency_p95_ms": percentile(latencies, 95),
        "latency_p99_ms": percentile(latencies, 99),
        "cost_per_request_usd": mean_cost,
        "cost_per_1k_usd": None if mean_cost is None else mean_cost * 1000,
        "tokens_in_mean": _mean([r.input_tokens for r in answered if r.input_tokens is not None]),
        "tokens_out_mean": _mean([r.output_tokens for r in answered
                                  if r.output_tokens is not None]),
        "error_rate": (len(records) - len(answered)) / len(records) if records else None,
        "hallucination_rate": _mean([float(bool(r.hallucination)) for r in graded]),
        "pass_rate": _mean([float(bool(r.passed)) for r in graded]),
        **stream_metrics(answered),
        "refusal_rate": _mean([float(r.error_class == REFUSED) for r in records]),
    }
    counts = {
        "calls": len(records),
        "answered": len(answered),
        "errors": len(records) - len(answered),
        "graded": len(graded),
        "passed": sum(1 for r in graded if r.passed),
        "hallucinations": sum(1 for r in graded if r.hallucination),
        "retried_calls": sum(1 for r in records if len(r.attempts) > 1),
        "attempts": sum(len(r.attempts) for r in records),
        "usage_estimated": sum(1 for r in answered if r.usage_estimated),
        "canaries": len({r.key for r in records}),
        "throttled_ms": round(sum(r.throttled_ms for r in records)),
        "fallback_answers": sum(1 for r in answered if r.answered_by),
        "streamed": sum(1 for r in answered if r.streamed),
    }
    return metrics, counts
