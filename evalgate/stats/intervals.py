"""Cluster (canary) bootstrap intervals for one config's level of a metric: a mean (cost,
tokens) or a pooled type-7 percentile (latency), with no baseline and no threshold.

Why a cluster bootstrap: with K samples per canary the K answers share a prompt, so resampling
calls would treat them as independent and make the interval too narrow; resampling canaries
(each with all its calls) keeps that correlation. The point estimate it brackets is the plain
statistic over the pooled calls, the same number `gate.metrics.compute_metrics` reports.
Percentile intervals (Efron & Tibshirani 1993, ch. 13), seeded: the same data give the same
interval on every machine.

One `CanaryBootstrap` draws the resamples once and every metric of a config reuses them, and a
percentile only counts the canaries with a value in a window around the quantile (a resample
whose quantile falls outside it is redone in full), so 10,000 canaries stay cheap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from evalgate.stats.evidence import _check_alpha

RESAMPLES = 2000
_ROWS_CELLS = 1 << 20  # resample x canary cells handled at once (~8 MB of float64)


def _cluster_arrays(values: Sequence[Sequence[float]]) -> list[np.ndarray]:
    out = [np.asarray(v, dtype=float).ravel() for v in values]
    if any(not np.all(np.isfinite(v)) for v in out):
        raise ValueError("values must be finite")
    return out


def _ends(boot: np.ndarray, alpha: float) -> tuple[float, float] | None:
    boot = boot[np.isfinite(boot)]
    if boot.size == 0:
        return None
    low, high = np.quantile(boot, [alpha, 1.0 - alpha])
    return float(low), float(high)


class CanaryBootstrap:
    """`resamples` bootstrap resamples of `n` canaries (the canaries each one drew), shared by
    the metrics of one config; the values passed in are one sequence per canary, in the same
    canary order every time (an empty sequence: that canary has no value for the metric)."""

    def __init__(self, n: int, resamples: int = RESAMPLES, seed: int = 0) -> None:
        if n < 1 or resamples < 1:
            raise ValueError(f"need n >= 1 and resamples >= 1, got {n}, {resamples}")
        dtype = np.uint16 if n <= 1 << 16 else np.int64
        self.drawn = np.random.default_rng(seed).integers(0, n, size=(resamples, n),
                                                          dtype=dtype)
        self.n, self.resamples = n, resamples

    def _rows(self, width: int) -> list[slice]:
        step = max(1, _ROWS_CELLS // max(width, 1))
        return [slice(i, min(i + step, self.resamples)) for i in range(0, self.resamples, step)]

    def _sums(self, per_canary: np.ndarray) -> np.ndarray:
        """Each resample's sum of a per-canary quantity (gathered in row chunks)."""
        out = np.empty(self.resamples)
        for rows in self._rows(self.n):
            out[rows] = per_canary[self.drawn[rows]].sum(axis=1)
        return out

    def _check(self, values: Sequence[Sequence[float]], alpha: float) -> list[np.ndarray] | None:
        _check_alpha(alpha)
        if len(values) != self.n:
            raise ValueError(f"need one value sequence per canary ({self.n}), got {len(values)}")
        clusters = _cluster_arrays(values)
        return clusters if sum(1 for v in clusters if v.size) >= 2 else None

    def mean(self, values: Sequence[Sequence[float]], alpha: float
             ) -> tuple[float, float] | None:
        """Two-sided 1 - 2*alpha interval for the mean over all values; None with fewer than
        2 canaries holding a value."""
        clusters = self._check(values, alpha)
        if clusters is None:
            return None
        sums = self._sums(np.array([v.sum() for v in clusters]))
        sizes = self._sums(np.array([float(v.size) for v in clusters]))
        with np.errstate(invalid="ignore", divide="ignore"):
            return _ends(sums / sizes, alpha)

    def percentile(self, values: Sequence[Sequence[float]], q: float, alpha: float
                   ) -> tuple[float, float] | None:
        """Two-sided 1 - 2*alpha interval for the q-th percentile (0-100, type 7) of the
        pooled values; None with fewer than 2 canaries holding a value."""
        if not 0.0 <= q <= 100.0:
            raise ValueError(f"q is a percentile in [0, 100], got {q}")
        clusters = self._check(values, alpha)
        if clusters is None:
            return None
        pooled = np.concatenate(clusters)
        owner = np.concatenate([np.full(v.size, i) for i, v in enumerate(clusters)])
        order = np.argsort(pooled, kind="stable")
        ordered, owner = pooled[order], owner[order]
        total = self._sums(np.bincount(owner, minlength=self.n).astype(np.float64))
        position = (total - 1) * q / 100.0
        low_p = np.floor(position)
        high_p = np.minimum(low_p + 1, total - 1)
        # The window: about 6 standard errors of the quantile's rank either side of it; a
        # resample only needs the multiplicities of the canaries with a value in it.
        size = ordered.size
        centre = round((size - 1) * q / 100.0)
        half = int(6 * math.sqrt(size * max(q / 100 * (1 - q / 100), 0.01))) + 64
        a, b = max(0, centre - half), min(size, centre + half)
        base = self._sums(np.bincount(owner[:a], minlength=self.n).astype(np.float64))
        inside_owners = np.unique(owner[a:b])
        slot_of = np.full(self.n, -1)
        slot_of[inside_owners] = np.arange(inside_owners.size)
        width = inside_owners.size
        window_slots = slot_of[owner[a:b]]
        boot = np.full(self.resamples, np.nan)
        redo = []
        for rows in self._rows(self.n):
            m = rows.stop - rows.start
            slots = slot_of[self.drawn[rows]]
            row_of, col = np.nonzero(slots >= 0)
            counts = np.bincount(row_of * width + slots[row_of, col],
                                 minlength=m * width).reshape(m, width)
            cum = base[rows, None] + np.cumsum(counts[:, window_slots], axis=1,
                                               dtype=np.float64)
            lo, hi = low_p[rows], high_p[rows]
            inside = (lo >= base[rows]) & (hi < cum[:, -1]) & (total[rows] > 0)
            v_lo = ordered[a + np.argmax(cum > lo[:, None], axis=1)]
            v_hi = ordered[a + np.argmax(cum > hi[:, None], axis=1)]
            boot[rows] = np.where(inside, v_lo + (v_hi - v_lo) * (position[rows] - lo), np.nan)
            redo += [rows.start + i for i in np.flatnonzero(~inside & (total[rows] > 0))]
        for i in redo:  # the rare resample whose quantile left the window: in full
            cum = np.cumsum(np.bincount(self.drawn[i], minlength=self.n)[owner],
                            dtype=np.float64)
            v_lo = ordered[int(np.argmax(cum > low_p[i]))]
            v_hi = ordered[int(np.argmax(cum > high_p[i]))]
            boot[i] = v_lo + (v_hi - v_lo) * (position[i] - low_p[i])
        return _ends(boot, alpha)


def cluster_mean_interval(values: Sequence[Sequence[float]], alpha: float,
                          resamples: int = RESAMPLES, seed: int = 0
                          ) -> tuple[float, float] | None:
    """`CanaryBootstrap.mean` with resamples of its own."""
    return CanaryBootstrap(max(len(values), 1), resamples, seed).mean(values, alpha) \
        if values else None


def cluster_percentile_interval(values: Sequence[Sequence[float]], q: float, alpha: float,
                                resamples: int = RESAMPLES, seed: int = 0
                                ) -> tuple[float, float] | None:
    """`CanaryBootstrap.percentile` with resamples of its own."""
    return CanaryBootstrap(max(len(values), 1), resamples, seed).percentile(values, q, alpha) \
        if values else None
