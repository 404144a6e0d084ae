"""Statistics for choosing among N model configs: per-config figures with intervals, paired
two-sided tests between configs, and paired non-inferiority bounds against the best.

Why a module of its own: the gate compares one candidate with one baseline; choosing among N
configs asks different questions (which configs are indistinguishable from the best, which is
the cheapest one that is not worse), and every answer needs error control for the number of
comparisons. Arrays in (one value per canary, already averaged over its K samples), floats out.
Every interval is two-sided 1 - 2*alpha (each side a one-sided 1 - alpha bound), as elsewhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from evalgate.stats import distributions as dist
from evalgate.stats.cost import fieller_ratio_bounds
from evalgate.stats.primitives import harrell_davis, mcnemar_regression_p, wilson_bounds


@dataclass(frozen=True)
class Interval:
    """A point estimate and its two one-sided (1 - alpha) bounds (None: unbounded/unknown)."""

    value: float | None
    low: float | None
    high: float | None


def rate_interval(values: np.ndarray, alpha: float) -> Interval:
    """Mean of per-canary rates with Wilson bounds over the canaries (the canary is the unit)."""
    x = np.asarray(values, dtype=float)
    n = x.size
    if n == 0:
        return Interval(None, None, None)
    low, high = wilson_bounds(float(x.sum()), n, alpha)
    return Interval(float(x.mean()), low, high)


def mean_interval(values: np.ndarray, alpha: float) -> Interval:
    """Mean with one-sided t bounds (a single value has no interval)."""
    x = np.asarray(values, dtype=float)
    n = x.size
    if n == 0:
        return Interval(None, None, None)
    mean = float(x.mean())
    if n < 2:
        return Interval(mean, None, None)
    half = float(dist.t_isf(alpha, n - 1)) * float(x.std(ddof=1)) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half)


def quantile_interval(values: np.ndarray, q: float, alpha: float) -> Interval:
    """Harrell-Davis quantile with the distribution-free order-statistic interval; an end the
    sample cannot reach (too few canaries for that quantile) is None."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return Interval(None, None, None)
    est = float(harrell_davis(x, q))
    if x.size < 2:
        return Interval(est, None, None)
    low, high = dist.quantile_test_ci(x, q, 1 - 2 * alpha, "two-sided")

    def finite(v: float) -> float | None:
        return float(v) if math.isfinite(v) else None

    return Interval(est, finite(low), finite(high))


def ratio_interval(num: np.ndarray, den: np.ndarray, alpha: float) -> Interval:
    """sum(num) / sum(den) over canaries with the paired Fieller bounds (e.g. cost over passed
    answers: cost per successful answer). No passes at all: no value; a denominator not
    significantly above 0: the value without bounds (the Fieller set is unbounded)."""
    n_arr, d_arr = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    if d_arr.size == 0 or float(d_arr.sum()) <= 0:
        return Interval(None, None, None)
    value = float(n_arr.sum() / d_arr.sum())
    if d_arr.size < 2:
        return Interval(value, None, None)
    low, high = fieller_ratio_bounds(n_arr, d_arr, alpha)
    return Interval(value, low, high)


def paired_difference_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p for "a and b differ" on paired per-canary rates: the exact McNemar test for
    0/1 values (one sample per canary), else the paired t on the differences."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.size == 0:
        return 1.0
    binary = bool(np.all((x == 0) | (x == 1)) and np.all((y == 0) | (y == 1)))
    if binary:
        worse, better = int(np.sum((x == 1) & (y == 0))), int(np.sum((x == 0) & (y == 1)))
        one = min(mcnemar_regression_p(worse, better, mid_p=False),
                  mcnemar_regression_p(better, worse, mid_p=False))
        return min(1.0, 2.0 * one)
    d = x - y
    if d.size < 2 or float(d.std(ddof=1)) == 0.0:
        return 1.0 if float(np.abs(d).max()) == 0.0 else 0.0
    t = float(d.mean()) / (float(d.std(ddof=1)) / math.sqrt(d.size))
    return min(1.0, 2.0 * float(dist.t_sf(abs(t), d.size - 1)))
