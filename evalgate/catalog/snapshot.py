"""One snapshot per config per run: who it was (provider, model, params, fingerprint), when
and at which commit, on which canary set, and every metric with a 95% interval.

The point values are `gate.metrics.compute_metrics` over the config's records, so a snapshot
says what the run's report said. Intervals treat each canary as a cluster (its K samples
together): rates get a Wilson interval (K = 1) or a t bound never narrower than the exact
bounds (K > 1, `stats.rates.rate_cap`); latency percentiles, cost and token means a canary
bootstrap (`stats.intervals`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from evalgate.gate.metrics import REFUSED, compute_metrics
from evalgate.results import Record, RunResult
from evalgate.stats.intervals import CanaryBootstrap
from evalgate.stats.primitives import wilson_bounds
from evalgate.stats.rates import rate_cap

LEVEL = 0.95
ALPHA = (1 - LEVEL) / 2  # one-sided, each side (the stats/ convention)
RESAMPLES = 1000  # canary bootstrap resamples: the figures are levels, not gate decisions
SNAPSHOT_VERSION = 1


class MetricFigure(BaseModel):
    """A metric's level for one config in one run, with its interval (None: no data)."""

    value: float | None = None
    low: float | None = None
    high: float | None = None
    method: str = ""


class Snapshot(BaseModel):
    """One config in one run, as the catalog keeps it."""

    id: str
    version: int = SNAPSHOT_VERSION
    taken_at: str  # the run's start (UTC, ISO 8601)
    run_id: str
    role: str  # candidate | baseline (later: one of N candidates)
    config: str  # the model config's name
    provider: str
    model: str
    fingerprint: str  # the model config's fingerprint: one "model version"
    params: dict[str, Any] = Field(default_factory=dict)
    commit: str | None = None
    branch: str | None = None
    canary_fingerprint: str
    n: int  # canaries answered or attempted
    calls: int
    samples: int
    level: float = LEVEL
    metrics: dict[str, MetricFigure] = Field(default_factory=dict)
    recommended_for: list[str] = Field(default_factory=list)
    verdict: str | None = None  # the gate's verdict, on the candidate's snapshot
    evalgate_version: str = ""


@dataclass(frozen=True)
class ConfigRun:
    """One config's part of a run: what it was and the records it produced in that run."""

    role: str
    name: str
    provider: str
    model: str
    fingerprint: str
    config: Mapping[str, Any]
    records: Sequence[Record]
    recommended_for: Sequence[str] = field(default_factory=tuple)
    verdict: str | None = None


def snapshot_id(run_id: str, role: str, fingerprint: str) -> str:
    """Stable: the same run's config is the same snapshot, so re-adding or re-importing it
    is a duplicate, never a second point on a trend."""
    return hashlib.sha256(f"{run_id}\0{role}\0{fingerprint}".encode()).hexdigest()[:20]


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def _by_canary(records: Sequence[Record], value: Callable[[Record], float | None],
               keys: Sequence[str] | None = None) -> list[list[float]]:
    """Values per canary: every canary of `keys` in that order (empty when it has none), or
    only the canaries with a value."""
    groups: dict[str, list[float]] = {k: [] for k in keys or ()}
    for r in records:
        v = value(r)
        if v is not None:
            groups.setdefault(r.key, []).append(float(v))
    return list(groups.values()) if keys is not None else [g for g in groups.values() if g]


def rate_interval(groups: list[list[float]]) -> tuple[float, float, str] | None:
    """A 0/1 outcome per call, grouped by canary."""
    if not groups:
        return None
    means = [sum(g) / len(g) for g in groups]
    k = max(len(g) for g in groups)
    if k == 1 or len(groups) < 3:  # one call a canary (or too few canaries for a t bound)
        calls = sum(len(g) for g in groups)
        low, high = wilson_bounds(sum(sum(g) for g in groups), calls, ALPHA)
        return low, high, "Wilson" if k == 1 else "Wilson (calls)"
    ev = rate_cap(np.array(means), guardrail="catalog", cap=0.5, alpha=ALPHA, samples=k)
    if ev.ci_low is None or ev.ci_high is None:
        return None
    return ev.ci_low, ev.ci_high, "t on canaries, >= exact bounds"


RATES: dict[str, tuple[Callable[[Record], bool], Callable[[Record], float]]] = {
    "error_rate": (lambda r: True, lambda r: float(not r.ok)),
    "refusal_rate": (lambda r: True, lambda r: float(r.error_class == REFUSED)),
    "hallucination_rate": (lambda r: r.ok and r.passed is not None,
                           lambda r: float(bool(r.hallucination))),
    "pass_rate": (lambda r: r.ok and r.passed is not None, lambda r: float(bool(r.passed))),
}
PERCENTILES: dict[str, tuple[str, float]] = {
    "latency_p50_ms": ("latency_ms", 50), "latency_p95_ms": ("latency_ms", 95),
    "latency_p99_ms": ("latency_ms", 99), "ttft_p50_ms": ("ttft_ms", 50),
    "ttft_p95_ms": ("ttft_ms", 95), "ttft_p99_ms": ("ttft_ms", 99),
    "itl_p95_ms": ("itl_ms", 95),
}
MEANS: dict[str, tuple[str, float]] = {
    "cost_per_request_usd": ("cost_usd", 1.0), "cost_per_1k_usd": ("cost_usd", 1000.0),
    "tokens_in_mean": ("input_tokens", 1.0), "tokens_out_mean": ("output_tokens", 1.0),
}


def metric_figures(records: Sequence[Record]) -> dict[str, MetricFigure]:
    """Every metric `compute_metrics` gives, each with its interval where one is defined."""
    values, _ = compute_metrics(records)
    answered = [r for r in records if r.ok]
    keys = sorted({r.key for r in records})
    boot = CanaryBootstrap(max(len(keys), 1), RESAMPLES)

    def per_canary(attr: str) -> list[list[float]]:
        return _by_canary(answered, lambda r: getattr(r, attr), keys)

    out: dict[str, MetricFigure] = {}
    for name, value in values.items():
        figure = MetricFigure(value=_finite(value))
        bounds: tuple[float, float] | None = None
        if figure.value is None:
            out[name] = figure
            continue
        if name in RATES:
            keep, outcome = RATES[name]
            found = rate_interval(_by_canary([r for r in records if keep(r)], outcome))
            if found is not None:
                bounds, figure.method = (found[0], found[1]), found[2]
        elif name in PERCENTILES:
            attr, q = PERCENTILES[name]
            bounds = boot.percentile(per_canary(attr), q, ALPHA)
            figure.method = "canary bootstrap"
        elif name in MEANS:
            attr, scale = MEANS[name]
            found_mean = boot.mean(per_canary(attr), ALPHA)
            bounds = None if found_mean is None else (found_mean[0] * scale,
                                                      found_mean[1] * scale)
            figure.method = "canary bootstrap"
        elif name == "tokens_per_s_mean":  # a mean over canaries of their means
            bounds = boot.mean([[sum(g) / len(g)] if g else [] for g in
                                per_canary("tokens_per_s")], ALPHA)
            figure.method = "canary bootstrap"
        if bounds is not None:
            figure.low, figure.high = _finite(bounds[0]), _finite(bounds[1])
        else:
            figure.method = ""
        out[name] = figure
    return out


def snapshot_of(run: ConfigRun, result: RunResult) -> Snapshot:
    """One config's snapshot from its records and the run's identity."""
    records = list(run.records)
    params = run.config.get("params")
    return Snapshot(
        id=snapshot_id(result.run_id, run.role, run.fingerprint),
        taken_at=result.started_at, run_id=result.run_id, role=run.role, config=run.name,
        provider=run.provider, model=run.model, fingerprint=run.fingerprint,
        params=dict(params) if isinstance(params, Mapping) else {},
        commit=result.environment.git_commit, branch=result.environment.git_branch,
        canary_fingerprint=result.canary_fingerprint, n=len({r.key for r in records}),
        calls=len(records), samples=result.samples, metrics=metric_figures(records),
        recommended_for=sorted(set(run.recommended_for)), verdict=run.verdict,
        evalgate_version=result.evalgate_version)


def config_runs(result: RunResult) -> list[ConfigRun]:
    """The configs this run called: the candidate, and a baseline run live. A baseline read
    from a saved result is that earlier run's snapshot, not this one's; a config with no
    record (every canary deselected) has nothing to say."""
    c = result.candidate
    runs = [ConfigRun("candidate", c.name, c.provider, c.model, c.fingerprint, c.config,
                      result.records, verdict=result.verdict)] if result.records else []
    b = result.baseline
    if b is not None and b.kind != "result" and result.baseline_records:
        runs.append(ConfigRun("baseline", b.name, b.provider or "", b.model or b.name,
                              b.fingerprint or "", b.config, result.baseline_records))
    return runs


def snapshots_of(result: RunResult, runs: Sequence[ConfigRun] | None = None) -> list[Snapshot]:
    """A run's snapshots: one per config (by default the ones `config_runs` finds; N
    candidates pass their own list)."""
    return [snapshot_of(run, result) for run in (config_runs(result) if runs is None else runs)]
