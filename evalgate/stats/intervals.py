"""Cluster (canary) bootstrap intervals for one config's level of a metric: a mean (cost,
tokens) or a pooled type-7 percentile (latency), with no baseline and no threshold.

Why a cluster bootstrap: with K samples per canary the K answers share a prompt, so resampling
calls would treat them as independent and make the interval too narrow; resampling canaries
(each with all its calls) keeps that correlation. The point estimate it brackets is the plain
statistic over the pooled calls, the same number `gate.metrics.compute_metrics` reports.
Percentile intervals (Efron & Tibshirani 1993, ch. 13), seeded: the same data give the same
interval on every machine.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evalgate.stats.evidence import _check_alpha
from evalgate.stats.resampling import _resample_counts

RESAMPLES = 2000
_CHUNK_CELLS = 1 << 21  # resample x call cells per chunk of the percentile bootstrap (~16 MB)


def _clusters(values: Sequence[Sequence[float]]) -> list[np.ndarray]:
    out = [np.asarray(v, dtype=float).ravel() for v in values]
    out = [v for v in out if v.size]
    if any(not np.all(np.isfinite(v)) for v in out):
        raise ValueError("values must be finite")
    return out


def _ends(boot: np.ndarray, alpha: float) -> tuple[float, float]:
    low, high = np.quantile(boot, [alpha, 1.0 - alpha])
    return float(low), float(high)


def cluster_mean_interval(values: Sequence[Sequence[float]], alpha: float,
                          resamples: int = RESAMPLES, seed: int = 0
                          ) -> tuple[float, float] | None:
    """Two-sided 1 - 2*alpha interval for the mean over all calls, canaries resampled.
    None with fewer than 2 canaries holding a value (nothing to resample)."""
    _check_alpha(alpha)
    clusters = _clusters(values)
    if len(clusters) < 2:
        return None
    sums = np.array([v.sum() for v in clusters])
    sizes = np.array([float(v.size) for v in clusters])
    counts = _resample_counts(np.random.default_rng(seed), resamples, len(clusters))
    return _ends((counts @ sums) / (counts @ sizes), alpha)


def _weighted_percentile(ordered: np.ndarray, weights: np.ndarray, q: float) -> np.ndarray:
    """Type-7 percentile of each row's multiset: `ordered` sorted values, `weights` (m, N)
    their multiplicities in each resample."""
    cum = np.cumsum(weights, axis=1)
    position = (cum[:, -1] - 1) * q / 100.0
    low = np.floor(position)
    frac = position - low

    def at(p: np.ndarray) -> np.ndarray:
        return ordered[np.argmax(cum > p[:, None], axis=1)]

    high = np.minimum(low + 1, cum[:, -1] - 1)
    a = at(low)
    out: np.ndarray = a + (at(high) - a) * frac
    return out


def cluster_percentile_interval(values: Sequence[Sequence[float]], q: float, alpha: float,
                                resamples: int = RESAMPLES, seed: int = 0
                                ) -> tuple[float, float] | None:
    """Two-sided 1 - 2*alpha interval for the q-th percentile (0-100, type 7) of the pooled
    calls, canaries resampled. None with fewer than 2 canaries holding a value."""
    _check_alpha(alpha)
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q is a percentile in [0, 100], got {q}")
    clusters = _clusters(values)
    if len(clusters) < 2:
        return None
    pooled = np.concatenate(clusters)
    owner = np.concatenate([np.full(v.size, i) for i, v in enumerate(clusters)])
    order = np.argsort(pooled, kind="stable")
    ordered, owner = pooled[order], owner[order]
    gen = np.random.default_rng(seed)
    rows = max(1, _CHUNK_CELLS // pooled.size)
    boot = np.empty(resamples)
    for start in range(0, resamples, rows):
        m = min(rows, resamples - start)
        counts = _resample_counts(gen, m, len(clusters))
        boot[start:start + m] = _weighted_percentile(ordered, counts[:, owner], q)
    return _ends(boot, alpha)
