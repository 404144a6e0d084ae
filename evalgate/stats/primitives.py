"""Known-answer primitives: one-sided rate bounds, McNemar and Tango for paired rates,
Harrell-Davis quantiles, the p95 SLO test and Holm's adjustment. Each is cross-checked against
scipy or published values in tests/test_stats.py."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import special

from evalgate.stats import distributions as dist
from evalgate.stats.evidence import P95, SloTest, Verdict, _as_1d, _check_alpha, _finite_or_none, _z
from evalgate.stats.resampling import _CHUNK_CELLS, _resample_counts, _run_chunks

# Harrell-Davis cumulative weights below this are treated as exactly zero (see _HDCounts).
_HD_NEGLIGIBLE = 1e-18


def wilson_bounds(successes: float, n: int, alpha: float) -> tuple[float, float]:
    """One-sided (1-alpha) lower and upper Wilson score bounds for a binomial proportion.

    Wilson (1927, JASA 22:209-212); the inversion of the score test, which keeps near-nominal
    coverage at small n and near 0 or 1 where the Wald interval collapses (Newcombe 1998, Stat
    Med 17:857-872, method 3).
    """
    _check_alpha(alpha)
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got {successes}/{n}")
    z = _z(alpha)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def clopper_pearson_bounds(successes: int, n: int, alpha: float) -> tuple[float, float]:
    """One-sided (1-alpha) exact (Clopper & Pearson 1934, Biometrika 26:404-413) bounds.

    Beta quantiles: lower = B(alpha; x, n-x+1), upper = B(1-alpha; x+1, n-x).
    """
    _check_alpha(alpha)
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got {successes}/{n}")
    x = int(successes)
    low = 0.0 if x == 0 else float(dist.beta_ppf(alpha, x, n - x + 1))
    high = 1.0 if x == n else float(dist.beta_isf(alpha, x + 1, n - x))
    return low, high


def binomial_cap_p(successes: int, n: int, cap: float, alternative: str) -> float:
    """Exact one-sided binomial p of H0 "rate >= cap" (alternative "less") or "rate <= cap"
    ("greater"): P(X <= x) or P(X >= x) under Binomial(n, cap); scipy `binomtest`. The
    Clopper-Pearson bound is its inversion: the upper bound is below `cap` iff the "less" p is
    below alpha."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got {successes}/{n}")
    if not 0.0 <= cap <= 1.0:
        raise ValueError(f"cap must be in [0, 1], got {cap}")
    x = int(successes)
    if alternative == "less":
        return float(min(1.0, dist.binom_cdf(x, n, cap)))
    return float(min(1.0, dist.binom_sf(x - 1, n, cap)))


def mcnemar_regression_p(b: int, c: int, mid_p: bool = True) -> float:
    """One-sided exact McNemar p for "the candidate regressed" (H0: b and c equally likely).

    b = pairs the baseline got right and the candidate wrong, c = the reverse. Conditional on
    b + c, b ~ Binomial(b + c, 1/2) under H0. The mid-p version (Lancaster 1961; Fagerland,
    Lydersen & Laake 2013, BMC Med Res Methodol 13:91) subtracts half the point probability,
    which removes most of the exact test's conservatism while keeping the level close to nominal.
    """
    if b < 0 or c < 0:
        raise ValueError("discordant counts must be >= 0")
    m = b + c
    if m == 0:
        return 1.0
    p = float(dist.binom_sf(b - 1, m, 0.5))  # P(B >= b): scipy binomtest(..., "greater")
    if mid_p:
        p -= 0.5 * dist.binom_pmf(b, m, 0.5)
    return min(1.0, max(0.0, p))


def _tango_q21(b: int, c: int, n: int, delta: float) -> float:
    """Restricted MLE of the (base wrong, candidate right) cell under p12 - p21 = delta.

    Tango (1998, Stat Med 17:891-908), eq. for q21: the positive root of 2n x^2 + B x + C = 0 with
    B = -(b + c) + (2n - b + c) delta and C = -c delta (1 - delta). Written in the cancellation-free
    form when B > 0.
    """
    a_ = 2.0 * n
    b_ = -(b + c) + (2.0 * n - b + c) * delta
    c_ = -c * delta * (1.0 - delta)
    disc = math.sqrt(max(b_ * b_ - 4.0 * a_ * c_, 0.0))
    if b_ > 0:
        return (-2.0 * c_) / (b_ + disc)
    return (disc - b_) / (2.0 * a_)


def tango_statistic(b: float, c: float, n: int, delta: float,
                    continuity: float = 0.0) -> float:
    """Tango's score statistic for a paired difference of proportions d = (b - c)/n, H0: d = delta.

    T = (b - c - n delta) / sqrt(n (2 q21 + delta (1 - delta))) with q21 the restricted MLE
    (Tango 1998, Stat Med 17:891-908). At delta = 0 this is McNemar's
    z = (b - c)/sqrt(b + c). Large positive T is evidence that d > delta.

    `continuity` (0.5 for the corrected statistic) shrinks |b - c - n delta| by that much
    before dividing, as the continuity-corrected McNemar z does: with few discordant pairs the
    uncorrected score bound is liberal (its exact level reaches 8.8% at n = 60, alpha = 5%),
    the corrected one holds the level (see tests/test_stats.py, exact enumeration).
    """
    if n <= 0 or b < 0 or c < 0 or b + c > n:
        raise ValueError(f"need 0 <= b, c and b + c <= n, got b={b} c={c} n={n}")
    if not -1.0 < delta < 1.0:
        raise ValueError(f"delta must be in (-1, 1), got {delta}")
    q21 = _tango_q21(b, c, n, delta)
    var = n * (2.0 * q21 + delta * (1.0 - delta))
    num = b - c - n * delta
    if continuity:
        num = math.copysign(max(abs(num) - continuity, 0.0), num)
    if var <= 0.0:
        return 0.0 if num == 0 else math.copysign(math.inf, num)
    return num / math.sqrt(var)


def tango_ci(b: float, c: float, n: int, alpha: float,
             continuity: float = 0.0) -> tuple[float, float]:
    """Score interval for the paired difference (b - c)/n: each side a one-sided 1-alpha bound.

    Inverts `tango_statistic` with brentq: the lower bound solves T = +z_{1-alpha}, the upper
    T = -z_{1-alpha} (T decreases in delta). Tango (1998) shows it keeps near-nominal coverage
    where the Wald interval does not, including b = c = 0 (upper bound z^2/(n + z^2)).
    """
    _check_alpha(alpha)
    z = _z(alpha)
    d = (b - c) / n
    eps = 1e-12

    def f(delta: float, target: float) -> float:
        return tango_statistic(b, c, n, delta, continuity) - target

    lo_end, hi_end = -1.0 + eps, 1.0 - eps
    d = min(max(d, lo_end), hi_end)
    low = lo_end if f(lo_end, z) <= 0 else dist.brentq(f, lo_end, d, args=(z,), xtol=1e-13)
    high = hi_end if f(hi_end, -z) >= 0 else dist.brentq(f, d, hi_end, args=(-z,), xtol=1e-13)
    return max(-1.0, float(low)), min(1.0, float(high))


def _hd_cdf(n: int, q: float) -> np.ndarray:
    """F[k] = I_{k/n}((n+1)q, (n+1)(1-q)), k = 0..n: cumulative Harrell-Davis weights."""
    a = (n + 1) * q
    b = (n + 1) * (1 - q)
    return special.betainc(a, b, np.arange(n + 1) / n)


def harrell_davis(x: np.ndarray, q: float) -> float:
    """Harrell & Davis (1982, Biometrika 69:635-640) quantile: a beta-weighted mean of all order
    statistics, W_i = I_{i/n}(a, b) - I_{(i-1)/n}(a, b), a = (n+1)q, b = (n+1)(1-q).

    Why: far less jumpy than one order statistic for tail quantiles at a few hundred canaries, so
    the bootstrap of a p95 ratio is smoother and less biased.
    """
    values = np.sort(np.asarray(x, dtype=float).ravel())
    if values.size == 0:
        raise ValueError("harrell_davis needs at least one value")
    return float(harrell_davis_rows(values[None, :], q)[0])


def harrell_davis_rows(sorted_rows: np.ndarray, q: float) -> np.ndarray:
    """Harrell-Davis quantile of each row of an already row-sorted (m, n) matrix (one matmul)."""
    rows = np.asarray(sorted_rows, dtype=float)
    if rows.ndim != 2 or rows.shape[1] == 0:
        raise ValueError("sorted_rows must be a non-empty (m, n) array")
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must be in (0, 1), got {q}")
    weights = np.diff(_hd_cdf(rows.shape[1], q))
    return rows @ weights


class _HDCounts:
    """Harrell-Davis quantiles of bootstrap resamples given as multiplicity counts.

    Why: sorting B x n resampled values is the bottleneck of a quantile bootstrap. A resample that
    draws canary j w_j times, sorted, is the sorted original values with x_(j) repeated w_j times;
    with C_j the cumulative counts in sorted order its HD quantile is exactly
    sum_j x_(j) (F[C_j] - F[C_{j-1}]) = sum_j F[C_j] v_j, v_j = x_(j) - x_(j+1), v_n = x_(n)
    (summation by parts, F[0] = 0, F[n] = 1). So no per-resample sort is needed.

    Only ranks near the quantile carry weight: F[C_j] is below 1e-18 for ranks well under it.
    We work on ranks >= j_lo only and get C_{j_lo - 1} as n minus the counts above; rows where
    F[C_{j_lo - 1}] is not negligible (never seen in practice) are recomputed over all ranks.
    """

    def __init__(self, values: np.ndarray, q: float, cluster: int = 1) -> None:
        # cluster: the calls a resampled unit brings (the counts' variance grows K-fold)
        x = np.asarray(values, dtype=float)
        self.n = n = x.size
        self.order = np.argsort(x, kind="stable")
        xs = x[self.order]
        self.v = np.append(xs[:-1] - xs[1:], xs[-1])
        self.cdf = _hd_cdf(n, q)
        k_lo = int(np.searchsorted(self.cdf, _HD_NEGLIGIBLE, side="right")) - 1
        spread = 12.0 * math.sqrt(cluster * n * q * (1 - q)) + 2.0 * cluster
        self.j_lo = max(0, int(k_lo - spread))
        self.top = self.order[self.j_lo:]

    def __call__(self, counts: np.ndarray) -> np.ndarray:
        top = np.take(counts, self.top, axis=1)
        below = self.n - top.sum(axis=1)
        cum = np.cumsum(top, axis=1)
        cum += below[:, None]
        hd = np.take(self.cdf, cum) @ self.v[self.j_lo:]
        if self.j_lo > 0:
            bad = np.flatnonzero(self.cdf[below] > _HD_NEGLIGIBLE)
            if bad.size:
                full = np.cumsum(np.take(counts[bad], self.order, axis=1), axis=1)
                hd[bad] = np.take(self.cdf, full) @ self.v
        return hd


def harrell_davis_counts(values: np.ndarray, counts: np.ndarray, q: float) -> np.ndarray:
    """HD quantile of each resample described by per-value multiplicities (rows sum to n).

    Equal to ``harrell_davis_rows(np.sort(values[idx], axis=1), q)`` for the index matrix `idx`
    whose row-wise bincounts are `counts`; used by the p95 bootstrap.
    """
    x = np.asarray(values, dtype=float).ravel()
    w = np.asarray(counts)
    if w.ndim != 2 or w.shape[1] != x.size:
        raise ValueError("counts must be an (m, n) array over the n values")
    if np.any(w.sum(axis=1) != x.size):
        raise ValueError("each row of counts must sum to n (a bootstrap resample of size n)")
    return _HDCounts(x, q)(w)


def _resample_hd_pair(x: np.ndarray, y: np.ndarray, q: float, resamples: int,
                      seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Paired bootstrap (canary indices drawn with replacement) of the HD quantiles of x and y.

    Chunks of rows keep memory in cache; each chunk has its own generator spawned from
    ``np.random.default_rng(seed)``, so the result does not depend on threading.
    """
    n = x.size
    hx, hy = _HDCounts(x, q), _HDCounts(y, q)
    rows = max(1, _CHUNK_CELLS // n)
    starts = list(range(0, resamples, rows))
    gens = np.random.default_rng(seed).spawn(len(starts))
    out_x = np.empty(resamples)
    out_y = np.empty(resamples)

    def work(i: int) -> None:
        start = starts[i]
        m = min(rows, resamples - start)
        counts = _resample_counts(gens[i], m, n)
        out_x[start:start + m] = hx(counts)
        out_y[start:start + m] = hy(counts)

    _run_chunks(work, len(starts), resamples * n)
    return out_x, out_y


def _hd_weighted_rows(values: np.ndarray, counts: np.ndarray, q: float,
                     cluster: int = 1) -> np.ndarray:
    """HD quantile of each resample given per-value multiplicities whose row sums may differ
    (clusters of unequal size): the cumulative weights are computed for each row's own size.
    As in `_HDCounts`, only ranks near the quantile are weighed; rows where the ranks below carry
    weight are recomputed over all ranks."""
    order = np.argsort(values, kind="stable")
    xs = values[order]
    v = np.append(xs[:-1] - xs[1:], xs[-1])
    n = values.size
    spread = 12.0 * math.sqrt(cluster * n * q * (1 - q)) + 2.0 * cluster
    j_lo = max(0, int(q * n - spread))
    top = counts[:, order[j_lo:]]
    size = counts.sum(axis=1, keepdims=True).astype(float)
    a, b = (size + 1) * q, (size + 1) * (1 - q)
    below = size - top.sum(axis=1, keepdims=True)
    cum = np.cumsum(top, axis=1) + below
    out = special.betainc(a, b, cum / size) @ v[j_lo:]
    if j_lo > 0:
        bad = np.flatnonzero(special.betainc(a, b, below / size)[:, 0] > _HD_NEGLIGIBLE)
        if bad.size:
            full = np.cumsum(counts[bad][:, order], axis=1)
            out[bad] = special.betainc(a[bad], b[bad], full / size[bad]) @ v
    return out


def _resample_hd_clustered(x: np.ndarray, x_canary: np.ndarray, y: np.ndarray,
                           y_canary: np.ndarray, n: int, q: float, resamples: int,
                           seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Cluster bootstrap (Davison & Hinkley 1997, sec. 3.8) of the HD quantiles of per-call x
    and y: canary indices 0..n-1 drawn with replacement, each drawn canary bringing all its calls
    (x_canary / y_canary: the canary of each call), the same draws for both sides (paired).

    With an equal number of calls per canary each resample has as many calls as the sample, so
    the fast multiplicity path of `_HDCounts` applies; otherwise each row's own size is used.
    """
    rows = max(1, _CHUNK_CELLS // max(x.size, y.size))
    starts = list(range(0, resamples, rows))
    gens = np.random.default_rng(seed).spawn(len(starts))
    out_x = np.empty(resamples)
    out_y = np.empty(resamples)
    sides = []
    for values, canary in ((x, x_canary), (y, y_canary)):
        sizes = np.bincount(canary, minlength=n)
        big = int(sizes.max())
        fast = _HDCounts(values, q, big) if bool(np.all(sizes == big)) else None
        sides.append((values, canary, fast, big))

    def work(i: int) -> None:
        start = starts[i]
        m = min(rows, resamples - start)
        counts = _resample_counts(gens[i], m, n)
        for (values, canary, fast, big), out in zip(sides, (out_x, out_y), strict=True):
            per_call = counts[:, canary]
            if fast is not None:
                out[start:start + m] = fast(per_call)
            else:
                out[start:start + m] = _hd_weighted_rows(values, per_call, q, big)

    _run_chunks(work, len(starts), resamples * max(x.size, y.size))
    return out_x, out_y


def p95_slo_test(values: np.ndarray, slo: float, alpha: float) -> SloTest:
    """Distribution-free test of the p95 against an SLO (Conover 1999, Practical Nonparametric
    Statistics; scipy `quantile_test`) with the order-statistic interval (Thompson 1936).

    Minimum n: the largest observation is a one-sided (1-alpha) upper bound for the p95 only when
    0.95**n < alpha (n >= 59 at alpha = 0.05); below that no data can PASS, so INCONCLUSIVE.
    """
    _check_alpha(alpha)
    x = _as_1d(values, "values")
    n = x.size
    n_min = math.floor(math.log(alpha) / math.log(P95)) + 1
    p_below = dist.quantile_test_pvalue(x, slo, P95, "less")
    p_above = dist.quantile_test_pvalue(x, slo, P95, "greater")
    ci_low, ci_high = dist.quantile_test_ci(x, P95, 1 - 2 * alpha, "two-sided")
    low, high = _finite_or_none(ci_low), _finite_or_none(ci_high)
    if n < n_min:
        verdict: Verdict = "INCONCLUSIVE"
    elif p_below < alpha:
        verdict = "PASS"
    elif p_above < alpha:
        verdict = "FAIL"
    else:
        verdict = "INCONCLUSIVE"
    return SloTest(p_below=p_below, p_above=p_above, ci_low=low, ci_high=high, n=n,
                   n_min=n_min, verdict=verdict)


def holm_adjust(pvalues: Sequence[float]) -> np.ndarray:
    """Holm (1979, Scand J Stat 6:65-70) step-down adjusted p-values, made monotone.

    Controls the family-wise error rate under any dependence between the guardrails' tests.
    """
    p = np.asarray(pvalues, dtype=float)
    m = p.size
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(np.argsort(p, kind="stable")):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted
