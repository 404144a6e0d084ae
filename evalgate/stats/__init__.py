"""Paired statistics for comparing a candidate model config against a baseline on the same canaries.

Why this module exists: a single run of a few hundred canaries is noisy, so a gate that compares
point estimates flips on noise. Every guardrail here returns an `Evidence` carrying an estimate, a
one-sided bound on the worse side, a non-inferiority p-value against the tolerated margin, a
"did it regress at all" p-value (Holm-adjusted across the run by `finalize`), the minimum
detectable regression at this sample size, and one plain sentence for a release manager.

Conventions
-----------
* Each canary is a cluster: callers pass ONE value per canary (already averaged over K samples)
  and K as `samples`. Inference is at the canary level, so within-canary correlation of the K
  samples never inflates the effective n.
* `alpha` is one-sided. Intervals are two-sided ``1 - 2*alpha`` intervals, i.e. each side is a
  one-sided ``1 - alpha`` bound; with ``alpha=0.05`` the sentence says "95% upper bound".
* Verdicts: PASS needs the worse-side bound inside the margin; FAIL needs the better-side bound
  beyond it, or (set by `finalize`) a Holm-significant regression; INCONCLUSIVE otherwise and
  whenever the method's minimum sample size is not met.

Pure computation: numpy arrays in, frozen dataclasses out, no I/O. Distribution functions come
from `evalgate.distributions` (scipy.special only: scipy.stats alone costs ~0.75 s to import).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from scipy import special

from evalgate.stats import distributions as dist

Verdict = Literal["PASS", "FAIL", "INCONCLUSIVE"]
Worse = Literal["higher", "lower"]
EffectKind = Literal["difference", "ratio", "absolute"]

POWER = 0.80
"""Power at which `Evidence.mde` is quoted."""

MIN_DISCORDANT = 10
"""Tango's score test is asymptotic; below this many discordant pairs its level is not trusted."""

MIN_CANARIES_T = 30
"""Minimum canaries for t-based and bootstrap methods (CLT on per-canary means / resampling)."""

P95 = 0.95

# Rows of the bootstrap resample matrix handled per chunk: ~2**16 cells keeps each chunk in L2.
_CHUNK_CELLS = 1 << 16
# Below this many resample cells threads cost more than they save.
_THREAD_MIN_CELLS = 4_000_000
# Resample cells (resamples x canaries) the BCa cross-check of the cost ratio may use.
BCA_MAX_CELLS = 20_000_000
# Harrell-Davis cumulative weights below this are treated as exactly zero (see _HDCounts).
_HD_NEGLIGIBLE = 1e-18


def _resample_counts(gen: np.random.Generator, m: int, n: int) -> np.ndarray:
    """m bootstrap resamples of n canaries as an (m, n) matrix: how often each was drawn."""
    idx = gen.integers(0, n, size=(m, n))
    idx += (np.arange(m) * n)[:, None]
    return np.bincount(idx.ravel(), minlength=m * n).reshape(m, n)


def _run_chunks(work: Callable[[int], None], chunks: int, cells: int) -> None:
    """Run work(0..chunks-1): on two threads when the resampling is large (numpy releases the
    GIL in bincount and matmul), inline otherwise."""
    workers = min(2, os.cpu_count() or 1)
    if workers > 1 and cells >= _THREAD_MIN_CELLS:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(work, range(chunks)))
    else:
        for i in range(chunks):
            work(i)


@dataclass(frozen=True)
class Evidence:
    """Everything a release manager needs to judge one guardrail of one run."""

    guardrail: str
    kind: str
    test: str
    estimate: float | None
    baseline: float | None
    effect: float | None
    effect_kind: EffectKind
    ci_low: float | None
    ci_high: float | None
    margin: float
    worse: Worse
    p_value: float | None
    p_regression: float | None
    p_regression_holm: float | None
    n_canaries: int
    n_samples: int
    discordant: tuple[int, int] | None
    mde: float | None
    min_passable_margin: float | None
    verdict: Verdict
    note: str | None
    sentence: str
    # Additions to the briefed model (defaulted, so keyword construction is unaffected):
    alpha: float = 0.05
    """One-sided alpha the bounds were computed at; finalize() words the sentence with it."""
    method_minimum_met: bool = True
    """False when the method's minimum n was not met: the verdict stays INCONCLUSIVE."""


@dataclass(frozen=True)
class SloTest:
    """Outcome of the distribution-free p95 test against an absolute SLO."""

    p_below: float
    """p of H0 "p95 >= slo" (alternative "less"); PASS when < alpha."""
    p_above: float
    """p of H0 "p95 <= slo" (alternative "greater"); FAIL when < alpha."""
    ci_low: float | None
    ci_high: float | None
    n: int
    n_min: int
    verdict: Verdict


# --------------------------------------------------------------------------------------------
# Known-answer primitives
# --------------------------------------------------------------------------------------------


def _z(alpha: float) -> float:
    return float(dist.norm_isf(alpha))


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha is one-sided and must be in (0, 0.5), got {alpha}")


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


def tango_statistic(b: float, c: float, n: int, delta: float) -> float:
    """Tango's score statistic for a paired difference of proportions d = (b - c)/n, H0: d = delta.

    T = (b - c - n delta) / sqrt(n (2 q21 + delta (1 - delta))) with q21 the restricted MLE
    (Tango 1998, Stat Med 17:891-908). At delta = 0 this is McNemar's
    z = (b - c)/sqrt(b + c). Large positive T is evidence that d > delta.
    """
    if n <= 0 or b < 0 or c < 0 or b + c > n:
        raise ValueError(f"need 0 <= b, c and b + c <= n, got b={b} c={c} n={n}")
    if not -1.0 < delta < 1.0:
        raise ValueError(f"delta must be in (-1, 1), got {delta}")
    q21 = _tango_q21(b, c, n, delta)
    var = n * (2.0 * q21 + delta * (1.0 - delta))
    num = b - c - n * delta
    if var <= 0.0:
        return 0.0 if num == 0 else math.copysign(math.inf, num)
    return num / math.sqrt(var)


def tango_ci(b: float, c: float, n: int, alpha: float) -> tuple[float, float]:
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
        return tango_statistic(b, c, n, delta) - target

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

    def __init__(self, values: np.ndarray, q: float) -> None:
        x = np.asarray(values, dtype=float)
        self.n = n = x.size
        self.order = np.argsort(x, kind="stable")
        xs = x[self.order]
        self.v = np.append(xs[:-1] - xs[1:], xs[-1])
        self.cdf = _hd_cdf(n, q)
        k_lo = int(np.searchsorted(self.cdf, _HD_NEGLIGIBLE, side="right")) - 1
        spread = 12.0 * math.sqrt(n * q * (1 - q)) + 2.0
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


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _as_1d(values: np.ndarray | Sequence[float], name: str) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array (one value per canary)")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _paired(cand: np.ndarray, base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = _as_1d(cand, "cand")
    b = _as_1d(base, "base")
    if c.shape != b.shape:
        raise ValueError(f"cand and base must be paired by canary: {c.size} vs {b.size} values")
    return c, b


def _paired_latencies(cand_ms: np.ndarray, base_ms: np.ndarray, margin_ratio: float,
                      alpha: float, samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Validated paired latencies for the ratio guardrails."""
    _check_alpha(alpha)
    _check_samples(samples)
    c, b = _paired(cand_ms, base_ms)
    if np.any(c <= 0) or np.any(b <= 0):
        raise ValueError("latencies must be > 0 ms")
    if margin_ratio <= 0:
        raise ValueError("margin_ratio must be > 0 (e.g. 1.25)")
    return c, b


def _finite_or_none(v: float | None) -> float | None:
    if v is None or not math.isfinite(v):
        return None
    return float(v)


def _mde_factor(alpha: float) -> float:
    return _z(alpha) + float(dist.norm_ppf(POWER))


def mde_difference(se: float, alpha: float) -> float:
    """Smallest true worsening a one-sided level-alpha test detects with 80% power:
    (z_{1-alpha} + z_{0.80}) x SE (the usual normal-approximation sample-size relation)."""
    _check_alpha(alpha)
    return _mde_factor(alpha) * se


def mde_ratio(se_log: float, alpha: float) -> float:
    """`mde_difference` on the log scale, reported as a ratio (e.g. 1.19 = a 19% increase)."""
    return math.exp(mde_difference(se_log, alpha))


def mde_paired_binary(b: int, c: int, n: int, baseline_rate: float, alpha: float) -> float:
    """MDE (rate units) of a paired binary comparison with n canaries.

    SE from the observed discordance, sqrt((b + c)/n - d^2)/sqrt(n) with d = (b - c)/n (the
    multinomial variance of d); with no discordance at all, the planning value
    sqrt(2 p0 (1 - p0)/n) (independent pairs, baseline rate p0 floored at 1/n).
    """
    d = (b - c) / n
    se = math.sqrt(max((b + c) / n - d * d, 0.0) / n)
    if se == 0.0:
        p0 = min(max(baseline_rate, 1.0 / n), 1.0 - 1.0 / n) if n > 1 else 0.5
        se = math.sqrt(2.0 * p0 * (1.0 - p0) / n)
    return mde_difference(se, alpha)


@dataclass(frozen=True)
class _TSummary:
    mean: float
    se: float
    df: int
    low: float
    high: float


def _t_summary(d: np.ndarray, alpha: float) -> _TSummary:
    """Mean, SE and the two one-sided (1-alpha) t bounds of per-canary values."""
    n = d.size
    mean = float(d.mean())
    se = float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else math.inf
    df = max(n - 1, 1)
    if se == 0.0:
        return _TSummary(mean, 0.0, df, mean, mean)
    t = float(dist.t_isf(alpha, df))
    return _TSummary(mean, se, df, mean - t * se, mean + t * se)


def _t_p(d: np.ndarray, mu0: float, alternative: Literal["less", "greater"]) -> float:
    """One-sided one-sample t p-value (scipy ttest_1samp), defined when all d are equal."""
    if d.size < 2:
        return 1.0
    if float(np.ptp(d)) == 0.0:
        diff = float(d[0]) - mu0
        hit = diff < 0 if alternative == "less" else diff > 0
        return 0.0 if hit else 1.0
    return dist.ttest_1samp_pvalue(d, mu0, alternative)


def _verdict_from_bounds(effect_kind: EffectKind, worse: Worse, low: float | None,
                         high: float | None, margin: float) -> Verdict:
    limit = -margin if (effect_kind == "difference" and worse == "lower") else margin
    if worse == "higher":
        if high is not None and high < limit:
            return "PASS"
        if low is not None and low > limit:
            return "FAIL"
    else:
        if low is not None and low > limit:
            return "PASS"
        if high is not None and high < limit:
            return "FAIL"
    return "INCONCLUSIVE"


def _min_passable(effect_kind: EffectKind, worse: Worse, low: float | None,
                  high: float | None) -> float | None:
    """The worse-side bound, in margin units (a positive drop for difference kinds, worse=lower)."""
    if worse == "higher":
        return high
    if low is None:
        return None
    return -low if effect_kind == "difference" else low


def _join(notes: Sequence[str | None]) -> str | None:
    kept = [s for s in notes if s]
    return "; ".join(kept) if kept else None


# --------------------------------------------------------------------------------------------
# Formatting for people
# --------------------------------------------------------------------------------------------

_RATE_KINDS = {"rate_vs_baseline", "rate_cap"}
_MS_KINDS = {"p95_ratio", "p95_slo", "latency_gm_ratio"}
_USD_KINDS = {"cost_ratio", "cost_budget"}


def _fmt_ms(v: float) -> str:
    return f"{v:,.0f} ms" if abs(v) >= 100 else f"{v:.1f} ms"


def _fmt_usd(v: float) -> str:
    if v == 0:
        return "$0"
    if abs(v) >= 1:
        return f"${v:,.2f}"
    digits = max(2, 2 - math.floor(math.log10(abs(v))))
    return f"${v:.{digits}f}"


def _fmt_level(kind: str, v: float | None) -> str:
    """A candidate/baseline level (rate, ms, USD or score)."""
    if v is None:
        return "n/a"
    if kind in _RATE_KINDS:
        return f"{100 * v:.1f}%"
    if kind in _MS_KINDS:
        return _fmt_ms(v)
    if kind in _USD_KINDS:
        return _fmt_usd(v)
    return f"{v:.3f}"


def _fmt_effect(kind: str, effect_kind: EffectKind, v: float | None) -> str:
    """An effect or bound: points for rate differences, x-ratios, levels for absolute caps."""
    if v is None:
        return "unbounded"
    if effect_kind == "ratio":
        return f"x{v:.2f}"
    if effect_kind == "absolute":
        return _fmt_level(kind, v)
    if kind in _RATE_KINDS:
        return f"{round(100 * v, 1) + 0.0:+.1f} points"
    return f"{round(v, 3) + 0.0:+.3f}"


def _fmt_mde(kind: str, effect_kind: EffectKind, v: float) -> str:
    if effect_kind == "ratio":
        return f"x{v:.2f}"
    if kind in _RATE_KINDS:
        return f"{100 * v:.1f} points"
    if effect_kind == "absolute":
        return _fmt_level(kind, v)
    return f"{v:.3f}"


def _fmt_p(p: float) -> str:
    return f"{p:.2g}" if p >= 0.001 else f"{p:.1e}"


def _level(alpha: float) -> str:
    return f"{100 * (1 - alpha):g}%"


def _sentence(ev: Evidence, holm_alpha: float | None = None) -> str:
    """One plain sentence: what moved, by how much, the worse-side bound, the limit, the verdict."""
    kind, ek = ev.kind, ev.effect_kind
    # The bound that decides: the worse side shows it fits the margin; on a FAIL beyond the
    # margin, the better side shows that even the best case does not.
    beyond = ev.verdict == "FAIL" and _verdict_from_bounds(
        ek, ev.worse, ev.ci_low, ev.ci_high, ev.margin) == "FAIL"
    upper = (ev.worse == "higher") != beyond
    side = "upper" if upper else "lower"
    bound = ev.ci_high if upper else ev.ci_low
    bound_txt = f"{_level(ev.alpha)} {side} bound {_fmt_effect(kind, ek, bound)}"
    if ek == "absolute":
        word = {"p95_slo": "an SLO", "cost_budget": "a budget"}.get(
            kind, "a cap" if ev.worse == "higher" else "a floor")
        head = (f"{ev.guardrail}: candidate {_fmt_level(kind, ev.estimate)} ({bound_txt}) "
                f"against {word} of {_fmt_level(kind, ev.margin)}")
    else:
        if ek == "ratio":
            limit = f"a limit of x{ev.margin:.2f}"
        else:
            tolerated = ev.margin if ev.worse == "higher" else -ev.margin
            limit = f"a tolerance of {_fmt_effect(kind, ek, tolerated)}"
        head = (f"{ev.guardrail}: candidate {_fmt_level(kind, ev.estimate)} vs baseline "
                f"{_fmt_level(kind, ev.baseline)} ({_fmt_effect(kind, ek, ev.effect)}; "
                f"{bound_txt}) against {limit}")
    why = ""
    regress_sig = (holm_alpha is not None and ev.p_regression_holm is not None
                   and ev.p_regression_holm < holm_alpha)
    if not ev.method_minimum_met:
        why = " (method minimum not met)"
    elif ev.verdict == "FAIL" and regress_sig and _verdict_from_bounds(
            ek, ev.worse, ev.ci_low, ev.ci_high, ev.margin) != "FAIL":
        why = (f" because it regressed significantly (Holm-adjusted p "
               f"{_fmt_p(ev.p_regression_holm or 0.0)})")
    return f"{head}: {ev.verdict}{why}"


def _mde_note(ev: Evidence, baseline_level: float | None) -> str | None:
    """Warn when the margin is finer than what this run can resolve."""
    if ev.mde is None or ev.effect_kind == "absolute":
        return None
    too_coarse = ev.margin < ev.mde
    if not too_coarse:
        return None
    at = (f" at a {_fmt_level(ev.kind, baseline_level)} baseline"
          if baseline_level is not None and ev.kind in _RATE_KINDS else "")
    what = "a regression" if ev.effect_kind == "difference" else "a ratio"
    return (f"with {ev.n_canaries} canaries{at} this run can only detect {what} of >= "
            f"{_fmt_mde(ev.kind, ev.effect_kind, ev.mde)} at {POWER:.0%} power (margin "
            f"{_fmt_mde(ev.kind, ev.effect_kind, ev.margin)}); add canaries or samples")


def _build(*, guardrail: str, kind: str, test: str, estimate: float | None,
           baseline: float | None, effect: float | None, effect_kind: EffectKind,
           ci_low: float | None, ci_high: float | None, margin: float, worse: Worse,
           p_value: float | None, p_regression: float | None, n_canaries: int, n_samples: int,
           discordant: tuple[int, int] | None, mde: float | None, alpha: float,
           minimum_met: bool, notes: Sequence[str | None],
           baseline_level: float | None = None) -> Evidence:
    """Assemble Evidence: verdict from the bounds, notes, the preliminary sentence."""
    verdict = (_verdict_from_bounds(effect_kind, worse, ci_low, ci_high, margin)
               if minimum_met else "INCONCLUSIVE")
    ev = Evidence(
        guardrail=guardrail, kind=kind, test=test, estimate=estimate, baseline=baseline,
        effect=effect, effect_kind=effect_kind, ci_low=ci_low, ci_high=ci_high, margin=margin,
        worse=worse, p_value=p_value, p_regression=p_regression, p_regression_holm=None,
        n_canaries=n_canaries, n_samples=n_samples, discordant=discordant, mde=mde,
        min_passable_margin=_min_passable(effect_kind, worse, ci_low, ci_high),
        verdict=verdict, note=None, sentence="", alpha=alpha, method_minimum_met=minimum_met)
    note = _join([*notes, _mde_note(ev, baseline_level)])
    ev = replace(ev, note=note)
    return replace(ev, sentence=_sentence(ev))


def _check_samples(samples: int) -> None:
    if samples < 1:
        raise ValueError(f"samples (K) must be >= 1, got {samples}")


# --------------------------------------------------------------------------------------------
# Guardrail comparisons
# --------------------------------------------------------------------------------------------


def compare_rate(cand: np.ndarray, base: np.ndarray, *, guardrail: str, margin: float,
                 alpha: float, samples: int, worse: Worse = "higher") -> Evidence:
    """Paired rate vs the baseline with a tolerated worsening `margin` (rate units, positive).

    K == 1 (binary per canary): Tango score non-inferiority test and interval on the paired
    difference, mid-p McNemar for "regressed at all"; needs >= 10 discordant pairs. K > 1 (each
    value a per-canary mean of K Bernoulli samples): paired t on per-canary differences, which is
    valid for clustered samples because the canary is the unit; needs n >= 30.
    """
    _check_alpha(alpha)
    _check_samples(samples)
    c, b = _paired(cand, base)
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"margin is a tolerated worsening in rate units in [0, 1), got {margin}")
    if np.any((c < 0) | (c > 1)) or np.any((b < 0) | (b > 1)):
        raise ValueError("rates must be in [0, 1]")
    n = c.size
    est, base_rate = float(c.mean()), float(b.mean())
    p0 = min(max(base_rate, 1.0 / n), 1.0 - 1.0 / n) if n > 1 else 0.5

    if samples == 1:
        if not (np.all((c == 0) | (c == 1)) and np.all((b == 0) | (b == 1))):
            raise ValueError("with samples == 1 the rates must be 0/1 per canary")
        bad_c, bad_b = (c == 1, b == 1) if worse == "higher" else (c == 0, b == 0)
        n_reg = int(np.sum(bad_c & ~bad_b))   # candidate worse on this canary
        n_imp = int(np.sum(~bad_c & bad_b))   # candidate better
        r_low, r_high = tango_ci(n_reg, n_imp, n, alpha)
        low, high = (r_low, r_high) if worse == "higher" else (-r_high, -r_low)
        p_value = float(dist.norm_cdf(tango_statistic(n_reg, n_imp, n, margin)))
        p_reg = mcnemar_regression_p(n_reg, n_imp, mid_p=True)
        ok = n_reg + n_imp >= MIN_DISCORDANT
        notes = [None if ok else
                 f"only {n_reg + n_imp} discordant pairs (need {MIN_DISCORDANT} for Tango's "
                 f"score test): INCONCLUSIVE whatever the bounds; mid-p McNemar "
                 f"regression p {_fmt_p(p_reg)}"]
        return _build(
            guardrail=guardrail, kind="rate_vs_baseline",
            test="Tango score test (paired non-inferiority) + mid-p McNemar (regression)",
            estimate=est, baseline=base_rate, effect=est - base_rate, effect_kind="difference",
            ci_low=low, ci_high=high, margin=margin, worse=worse, p_value=p_value,
            p_regression=p_reg, n_canaries=n, n_samples=1, discordant=(n_reg, n_imp),
            mde=mde_paired_binary(n_reg, n_imp, n, base_rate, alpha), alpha=alpha,
            minimum_met=ok, notes=notes, baseline_level=base_rate)

    diff = c - b
    ts = _t_summary(diff, alpha)
    se = ts.se
    if se == 0.0:
        se = math.sqrt(2.0 * p0 * (1.0 - p0) / (n * samples))
    # The t interval collapses when every canary moved alike (e.g. no hallucination anywhere, so
    # every difference is 0), so it is never narrower than Tango's interval over the n*K draws
    # with the observed discordance. Treating draws as independent is optimistic under
    # clustering, which is why it only serves as a floor: wherever canaries vary, t decides.
    b_draws = float(np.clip(diff, 0, None).sum()) * samples
    c_draws = float(np.clip(-diff, 0, None).sum()) * samples
    f_low, f_high = tango_ci(b_draws, c_draws, n * samples, alpha)
    low, high = min(ts.low, f_low), max(ts.high, f_high)
    if worse == "higher":
        floor_used = f_high > ts.high
        floor_p = float(dist.norm_cdf(tango_statistic(b_draws, c_draws, n * samples, margin)))
        p_value = _t_p(diff, margin, "less")
        p_reg = _t_p(diff, 0.0, "greater")
    else:
        floor_used = f_low < ts.low
        floor_p = float(dist.norm_sf(tango_statistic(b_draws, c_draws, n * samples, -margin)))
        p_value = _t_p(diff, -margin, "greater")
        p_reg = _t_p(diff, 0.0, "less")
    if floor_used:  # the p-value tells the same story as the bound that decides
        p_value = max(p_value, floor_p)
    ok = n >= MIN_CANARIES_T
    notes = [None if ok else f"only {n} canaries (need {MIN_CANARIES_T} for the paired t)"]
    return _build(
        guardrail=guardrail, kind="rate_vs_baseline",
        test=f"paired t on per-canary rates (canary = cluster of K={samples}), floored by "
             "Tango's interval over the draws",
        estimate=est, baseline=base_rate, effect=ts.mean, effect_kind="difference",
        ci_low=low, ci_high=high, margin=margin, worse=worse, p_value=p_value,
        p_regression=p_reg, n_canaries=n, n_samples=samples, discordant=None,
        mde=mde_difference(se, alpha), alpha=alpha, minimum_met=ok, notes=notes,
        baseline_level=base_rate)


def rate_cap(cand: np.ndarray, *, guardrail: str, cap: float, alpha: float, samples: int,
             worse: Worse = "higher") -> Evidence:
    """Absolute cap (worse="higher") or floor (worse="lower") on a rate, no baseline.

    K == 1: Wilson one-sided bounds and the matching score-test p (the Wilson interval is its
    inversion). K > 1: one-sided t bounds on per-canary means (n >= 30). `mde` here is the
    distance from the cap the true rate must keep for this run to decide with 80% power.
    """
    _check_alpha(alpha)
    _check_samples(samples)
    x = _as_1d(cand, "cand")
    if not 0.0 <= cap <= 1.0:
        raise ValueError(f"cap must be in [0, 1], got {cap}")
    if np.any((x < 0) | (x > 1)):
        raise ValueError("rates must be in [0, 1]")
    n = x.size
    est = float(x.mean())
    if samples == 1:
        if not np.all((x == 0) | (x == 1)):
            raise ValueError("with samples == 1 the rates must be 0/1 per canary")
        low, high = wilson_bounds(float(x.sum()), n, alpha)
        null_se = math.sqrt(cap * (1 - cap) / n)
        p_value: float | None = None
        mde: float | None = None
        notes: list[str | None] = []
        if null_se > 0:
            zstat = (est - cap) / null_se
            p_value = float(dist.norm_cdf(zstat) if worse == "higher" else dist.norm_sf(zstat))
            mde = mde_difference(null_se, alpha)
        else:  # a cap of exactly 0 (or floor of 1) can be failed but never proven
            notes.append(f"a {'cap' if worse == 'higher' else 'floor'} of {cap:g} can never "
                         "PASS on a sample; use a small tolerance instead")
        ok = True
        test = "Wilson score bound (one-sided) vs an absolute cap"
    else:
        # The t bound collapses when every canary mean is equal (e.g. no errors at all), so the
        # bounds are never narrower than a Wilson bound over canaries: a canary mean's variance
        # never exceeds p(1-p), which makes that bound conservative for clustered draws.
        ts = _t_summary(x, alpha)
        w_low, w_high = wilson_bounds(float(x.sum()), n, alpha)
        low, high = min(ts.low, w_low), max(ts.high, w_high)
        null_se = math.sqrt(cap * (1 - cap) / n)
        side = "less" if worse == "higher" else "greater"
        p_value = _t_p(x, cap, side)
        if null_se > 0:
            zstat = (est - cap) / null_se
            z_p = float(dist.norm_cdf(zstat) if worse == "higher" else dist.norm_sf(zstat))
            p_value = z_p if p_value is None else max(p_value, z_p)
        mde = mde_difference(ts.se if ts.se > 0 else math.sqrt(cap * (1 - cap) / (n * samples)),
                             alpha) or None
        ok = n >= MIN_CANARIES_T
        test = (f"one-sided t bound on per-canary rates (canary = cluster of K={samples}), "
                "never narrower than a Wilson bound over canaries")
        notes = [None if ok else f"only {n} canaries (need {MIN_CANARIES_T} for the t bound)"]
    return _build(
        guardrail=guardrail, kind="rate_cap", test=test, estimate=est, baseline=None,
        effect=est, effect_kind="absolute", ci_low=low, ci_high=high, margin=cap, worse=worse,
        p_value=p_value, p_regression=None, n_canaries=n, n_samples=samples, discordant=None,
        mde=mde, alpha=alpha, minimum_met=ok, notes=notes)


def compare_p95(cand_ms: np.ndarray, base_ms: np.ndarray, *, guardrail: str,
                margin_ratio: float, alpha: float, resamples: int = 9999, seed: int = 0,
                samples: int = 1) -> Evidence:
    """Ratio of Harrell-Davis p95 latencies, candidate over baseline, by a paired bootstrap.

    Canary indices are resampled with replacement (keeps the pairing); bounds are the alpha and
    1-alpha percentiles of the bootstrap ratios (Efron & Tibshirani 1993, ch. 13). p-values are
    the matching percentile-inversion p's, (1 + #{ratio* on the null side}) / (B + 1): approximate,
    as the percentile interval is. `mde` uses the bootstrap SD of log ratios. n >= 30.
    """
    c, b = _paired_latencies(cand_ms, base_ms, margin_ratio, alpha, samples)
    if resamples < 1:
        raise ValueError("resamples must be >= 1")
    n = c.size
    est, base_p95 = harrell_davis(c, P95), harrell_davis(b, P95)
    boot_c, boot_b = _resample_hd_pair(c, b, P95, resamples, seed)
    ratios = boot_c / boot_b
    low, high = (float(v) for v in np.quantile(ratios, [alpha, 1 - alpha]))
    p_value = float((1 + np.count_nonzero(ratios >= margin_ratio)) / (resamples + 1))
    p_reg = float((1 + np.count_nonzero(ratios <= 1.0)) / (resamples + 1))
    sd_log = float(np.std(np.log(ratios), ddof=1)) if resamples > 1 else math.nan
    mde = mde_ratio(sd_log, alpha) if math.isfinite(sd_log) else None
    ok = n >= MIN_CANARIES_T
    notes = [None if ok else f"only {n} canaries (need {MIN_CANARIES_T} for the bootstrap)"]
    return _build(
        guardrail=guardrail, kind="p95_ratio",
        test=(f"paired percentile bootstrap of the Harrell-Davis p95 ratio (B={resamples}; "
              "p-values approx.)"),
        estimate=est, baseline=base_p95, effect=est / base_p95, effect_kind="ratio",
        ci_low=low, ci_high=high, margin=margin_ratio, worse="higher", p_value=p_value,
        p_regression=p_reg, n_canaries=n, n_samples=samples, discordant=None, mde=mde,
        alpha=alpha, minimum_met=ok, notes=notes)


def p95_slo(cand_ms: np.ndarray, *, guardrail: str, slo_ms: float, alpha: float,
            samples: int = 1) -> Evidence:
    """Absolute p95 SLO, distribution-free (see `p95_slo_test`). `mde` (ms) is approximate:
    (z_{1-alpha} + z_0.8) x the SE implied by the width of the order-statistic interval.
    """
    _check_samples(samples)
    x = _as_1d(cand_ms, "cand_ms")
    res = p95_slo_test(x, slo_ms, alpha)
    ok = res.n >= res.n_min
    mde = None
    if res.ci_low is not None and res.ci_high is not None:
        mde = mde_difference((res.ci_high - res.ci_low) / (2 * _z(alpha)), alpha)
    notes = [None if ok else
             f"only {res.n} canaries: the p95 order-statistic test needs {res.n_min} "
             f"(0.95^n < {alpha:g}) before any data can pass"]
    p95 = harrell_davis(x, P95)
    ev = _build(
        guardrail=guardrail, kind="p95_slo",
        test="distribution-free order-statistic quantile test (Conover) vs an SLO",
        estimate=p95, baseline=None, effect=p95,
        effect_kind="absolute", ci_low=res.ci_low, ci_high=res.ci_high, margin=float(slo_ms),
        worse="higher", p_value=res.p_below, p_regression=None, n_canaries=res.n,
        n_samples=samples, discordant=None, mde=mde, alpha=alpha, minimum_met=ok, notes=notes)
    # The test, not the (conservative, order-statistic) interval, decides the verdict.
    ev = replace(ev, verdict=res.verdict)
    return replace(ev, sentence=_sentence(ev))


def compare_latency_gm(cand_ms: np.ndarray, base_ms: np.ndarray, *, guardrail: str,
                       margin_ratio: float, alpha: float, samples: int = 1) -> Evidence:
    """Typical slowdown: paired t on per-canary log(cand/base); effect = geometric-mean ratio.

    The log makes a multiplicative slowdown additive and tames the right skew of latencies, so
    the t interval (exponentiated) is well calibrated at n >= 30.
    """
    c, b = _paired_latencies(cand_ms, base_ms, margin_ratio, alpha, samples)
    n = c.size
    logs = np.log(c) - np.log(b)
    ts = _t_summary(logs, alpha)
    p_value = _t_p(logs, math.log(margin_ratio), "less")
    p_reg = _t_p(logs, 0.0, "greater")
    ok = n >= MIN_CANARIES_T
    notes = [None if ok else f"only {n} canaries (need {MIN_CANARIES_T} for the paired t)"]
    return _build(
        guardrail=guardrail, kind="latency_gm_ratio",
        test="paired t on per-canary log latency ratios (geometric-mean ratio)",
        estimate=float(np.exp(np.log(c).mean())), baseline=float(np.exp(np.log(b).mean())),
        effect=math.exp(ts.mean), effect_kind="ratio", ci_low=math.exp(ts.low),
        ci_high=math.exp(ts.high), margin=margin_ratio, worse="higher", p_value=p_value,
        p_regression=p_reg, n_canaries=n, n_samples=samples, discordant=None,
        mde=mde_ratio(ts.se, alpha), alpha=alpha, minimum_met=ok, notes=notes)


def fieller_ratio_bounds(cand: np.ndarray, base: np.ndarray, alpha: float
                         ) -> tuple[float | None, float | None]:
    """One-sided (1-alpha) bounds for mean(cand)/mean(base) by inverting the linearised paired t.

    For each m the test of H0 "E[cand] = m E[base]" is the one-sample t on d_i = cand_i - m base_i
    (Fieller 1954, JRSS B 16:175-185; the paired form of the Fieller interval). The bounds are the
    m where that t equals -/+ t_{1-alpha}; found with brentq. When the baseline mean is not
    significantly above 0 the confidence set is unbounded: (None, None).
    """
    c, b = _paired(cand, base)
    n = c.size
    if n < 2:
        return None, None
    mc, mb = float(c.mean()), float(b.mean())
    cov = np.cov(np.vstack([c, b]), ddof=1)
    s_cc, s_bb, s_cb = float(cov[0, 0]), float(cov[1, 1]), float(cov[0, 1])
    tcrit = float(dist.t_isf(alpha, n - 1))

    def tstat(m: float) -> float:
        var = max(s_cc - 2 * m * s_cb + m * m * s_bb, 0.0)
        num = mc - m * mb
        if var == 0.0:
            return 0.0 if num == 0 else math.copysign(math.inf, num)
        return num / math.sqrt(var / n)

    if mb <= 0 or (s_bb > 0 and mb * math.sqrt(n / s_bb) <= tcrit):
        return None, None
    r = mc / mb
    scale = max(abs(r), 1e-12)

    def root(target: float, direction: float) -> float | None:
        step = 0.01 * scale
        for _ in range(200):
            m = r + direction * step
            crossed = tstat(m) <= target if direction > 0 else tstat(m) >= target
            if crossed:
                lo, hi = sorted((r, m))
                return dist.brentq(lambda v: tstat(v) - target, lo, hi, xtol=1e-14, rtol=1e-12)
            step *= 2.0
        return None

    return root(tcrit, -1.0), root(-tcrit, 1.0)


def _resample_sums(values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Column sums of `resamples` paired bootstrap resamples of the (n, k) matrix `values`.

    Each chunk draws its canary indices, turns them into multiplicity counts (bincount) and
    multiplies: one BLAS product instead of gathering B x n x k values. Chunks have their own
    generators spawned from `seed`, so threading does not change the result.
    """
    n = values.shape[0]
    rows = max(1, (16 * _CHUNK_CELLS) // n)  # ~8 MB of indices a chunk: few, cheap tasks
    starts = list(range(0, resamples, rows))
    gens = np.random.default_rng(seed).spawn(len(starts))
    out = np.empty((resamples, values.shape[1]))

    def work(i: int) -> None:
        start = starts[i]
        m = min(rows, resamples - start)
        out[start:start + m] = _resample_counts(gens[i], m, n) @ values

    _run_chunks(work, len(starts), resamples * n)
    return out


def _bca_ratio(c: np.ndarray, b: np.ndarray, alpha: float, resamples: int,
               seed: int) -> tuple[float, float] | None:
    """Paired BCa bootstrap interval (Efron 1987, JASA 82:171-185) of mean(c)/mean(b), as a
    cross-check; each side a one-sided (1 - alpha) bound.

    Vectorised for the ratio of means: resample sums come from count matrices (see
    `_resample_sums`) and the jackknife that sets the acceleration is closed-form,
    theta_(i) = (sum c - c_i) / (sum b - b_i), so it costs O(n) instead of O(n^2). The
    formulas are those of scipy.stats.bootstrap(method="BCa"), which the tests cross-check.
    """
    n = c.size
    sc, sb = float(c.sum()), float(b.sum())
    if sb <= 0:
        return None
    theta = sc / sb
    sums = _resample_sums(np.column_stack([c, b]), resamples, seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        boot = sums[:, 0] / sums[:, 1]
        jack = (sc - c) / (sb - b)
    if not (np.all(np.isfinite(boot)) and np.all(np.isfinite(jack))) or n < 3:
        return None
    z0 = float(special.ndtri(np.count_nonzero(boot < theta) / resamples))
    dev = jack.mean() - jack
    denom = 6.0 * float(np.sum(dev ** 2)) ** 1.5
    accel = float(np.sum(dev ** 3)) / denom if denom > 0 else 0.0
    if not (math.isfinite(z0) and math.isfinite(accel)):
        return None
    levels = []
    for q in (alpha, 1 - alpha):
        zq = float(special.ndtri(q))
        levels.append(float(special.ndtr(z0 + (z0 + zq) / (1 - accel * (z0 + zq)))))
    low, high = (float(v) for v in np.quantile(boot, levels))
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    return low, high


def compare_cost(cand: np.ndarray, base: np.ndarray, *, guardrail: str, margin_ratio: float,
                 alpha: float, seed: int = 0, samples: int = 1,
                 bca_resamples: int = 9999) -> Evidence:
    """Mean cost per canary, candidate over baseline, by the linearised (Fieller) paired t.

    Non-inferiority p = ttest_rel(cand, margin*base, "less"): the ratio of means is below margin
    iff E[cand - margin*base] < 0, so no delta method is needed. Bounds invert that test over m.
    A paired BCa bootstrap of the ratio is reported in the note as a cross-check; a disagreement
    is flagged. n >= 30.
    """
    _check_alpha(alpha)
    _check_samples(samples)
    c, b = _paired(cand, base)
    if np.any(c < 0) or np.any(b < 0):
        raise ValueError("costs must be >= 0")
    if margin_ratio <= 0:
        raise ValueError("margin_ratio must be > 0 (e.g. 1.1)")
    n = c.size
    mc, mb = float(c.mean()), float(b.mean())
    if mb <= 0:
        raise ValueError("the baseline mean cost must be > 0 for a ratio")
    r = mc / mb
    p_value = _t_p(c - margin_ratio * b, 0.0, "less")
    p_reg = _t_p(c - b, 0.0, "greater")
    low, high = fieller_ratio_bounds(c, b, alpha)
    notes: list[str | None] = []
    ok = n >= MIN_CANARIES_T
    if not ok:
        notes.append(f"only {n} canaries (need {MIN_CANARIES_T} for the paired t)")
    if low is None or high is None:
        notes.append("Fieller interval unbounded: the baseline mean cost is not clearly above 0")
    mde = None
    if mc > 0 and n > 1:
        se_log = float(np.std(c - r * b, ddof=1)) / (math.sqrt(n) * mc)
        mde = mde_ratio(se_log, alpha)
    # A cross-check only: its resamples are capped at BCA_MAX_CELLS / n (>= 1999), so it
    # never dominates the run's statistics (10,000 canaries: 2,000 resamples, ~0.3 s).
    bca_b = min(bca_resamples, max(1999, BCA_MAX_CELLS // max(n, 1)))
    bca = _bca_ratio(c, b, alpha, bca_b, seed) if n > 2 else None
    if bca is None:
        notes.append("BCa bootstrap cross-check unavailable")
    else:
        text = (f"BCa bootstrap (B={bca_b}, {_level(alpha)} one-sided each): "
                f"[{bca[0]:.3f}, {bca[1]:.3f}]")
        fieller_verdict = _verdict_from_bounds("ratio", "higher", low, high, margin_ratio)
        bca_verdict = _verdict_from_bounds("ratio", "higher", bca[0], bca[1], margin_ratio)
        if fieller_verdict != bca_verdict:
            text += f" DISAGREES: it would say {bca_verdict}"
        elif low is not None and high is not None and max(
                abs(bca[0] - low), abs(bca[1] - high)) > 0.25 * (high - low):
            text += " differs from the Fieller bounds by > 25% of their width"
        notes.append(text)
    return _build(
        guardrail=guardrail, kind="cost_ratio",
        test="Fieller-linearised paired t on the mean-cost ratio (BCa bootstrap cross-check)",
        estimate=mc, baseline=mb, effect=r, effect_kind="ratio", ci_low=low, ci_high=high,
        margin=margin_ratio, worse="higher", p_value=p_value, p_regression=p_reg, n_canaries=n,
        n_samples=samples, discordant=None, mde=mde, alpha=alpha, minimum_met=ok, notes=notes)


def cost_budget(cand: np.ndarray, *, guardrail: str, budget: float, alpha: float,
                samples: int = 1) -> Evidence:
    """Mean cost per canary against an absolute budget: one-sided t bounds (n >= 30)."""
    _check_alpha(alpha)
    _check_samples(samples)
    x = _as_1d(cand, "cand")
    if budget <= 0:
        raise ValueError("budget must be > 0")
    n = x.size
    ts = _t_summary(x, alpha)
    ok = n >= MIN_CANARIES_T
    notes = [None if ok else f"only {n} canaries (need {MIN_CANARIES_T} for the t bound)"]
    return _build(
        guardrail=guardrail, kind="cost_budget", test="one-sided t bound on the mean cost",
        estimate=ts.mean, baseline=None, effect=ts.mean, effect_kind="absolute",
        ci_low=ts.low, ci_high=ts.high, margin=float(budget), worse="higher",
        p_value=_t_p(x, budget, "less"), p_regression=None, n_canaries=n, n_samples=samples,
        discordant=None, mde=mde_difference(ts.se, alpha), alpha=alpha, minimum_met=ok,
        notes=notes)


def compare_score(cand: np.ndarray, base: np.ndarray, *, guardrail: str, margin: float,
                  alpha: float, samples: int = 1) -> Evidence:
    """Continuous rubric scores in [0, 1] (higher is better): paired t on per-canary means with a
    tolerated drop `margin` (positive, score units). n >= 30."""
    _check_alpha(alpha)
    _check_samples(samples)
    c, b = _paired(cand, base)
    if np.any((c < 0) | (c > 1)) or np.any((b < 0) | (b > 1)):
        raise ValueError("scores must be in [0, 1]")
    if margin < 0:
        raise ValueError("margin is a tolerated drop and must be >= 0")
    n = c.size
    diff = c - b
    ts = _t_summary(diff, alpha)
    ok = n >= MIN_CANARIES_T
    notes = [None if ok else f"only {n} canaries (need {MIN_CANARIES_T} for the paired t)"]
    return _build(
        guardrail=guardrail, kind="score_vs_baseline", test="paired t on per-canary mean scores",
        estimate=float(c.mean()), baseline=float(b.mean()), effect=ts.mean,
        effect_kind="difference", ci_low=ts.low, ci_high=ts.high, margin=margin, worse="lower",
        p_value=_t_p(diff, -margin, "greater"), p_regression=_t_p(diff, 0.0, "less"),
        n_canaries=n, n_samples=samples, discordant=None, mde=mde_difference(ts.se, alpha),
        alpha=alpha, minimum_met=ok, notes=notes)


# --------------------------------------------------------------------------------------------
# Run level
# --------------------------------------------------------------------------------------------


def finalize(evidences: list[Evidence], alpha: float,
             regression_fails: bool = True) -> list[Evidence]:
    """Holm-adjust every non-None p_regression across the run, FAIL the significant ones (unless
    the method minimum was not met, or `regression_fails` is off: then only a bound beyond the
    margin fails) and write each final sentence.

    Why Holm: a run checks several guardrails; without a family-wise correction an unchanged
    candidate would FAIL on one of them far more often than alpha.
    """
    _check_alpha(alpha)
    idx = [i for i, ev in enumerate(evidences) if ev.p_regression is not None]
    adjusted = holm_adjust([evidences[i].p_regression for i in idx])  # type: ignore[misc]
    holm = dict(zip(idx, (float(a) for a in adjusted), strict=True))
    out: list[Evidence] = []
    for i, ev in enumerate(evidences):
        p_holm = holm.get(i)
        verdict = ev.verdict
        note = ev.note
        if p_holm is not None and p_holm < alpha:
            if not regression_fails:
                if verdict != "FAIL":
                    note = _join([note, f"regression significant after Holm (p "
                                        f"{_fmt_p(p_holm)}), within the margin"])
            elif ev.method_minimum_met:
                verdict = "FAIL"
            else:
                note = _join([note, f"regression significant after Holm (p {_fmt_p(p_holm)}) "
                                    "but the method minimum is not met"])
        new = replace(ev, p_regression_holm=p_holm, verdict=verdict, note=note)
        out.append(replace(new, sentence=_sentence(new, holm_alpha=alpha)))
    return out


__all__ = [
    "Evidence",
    "SloTest",
    "Verdict",
    "clopper_pearson_bounds",
    "compare_cost",
    "compare_latency_gm",
    "compare_p95",
    "compare_rate",
    "compare_score",
    "cost_budget",
    "fieller_ratio_bounds",
    "finalize",
    "harrell_davis",
    "harrell_davis_counts",
    "harrell_davis_rows",
    "holm_adjust",
    "mcnemar_regression_p",
    "mde_difference",
    "mde_paired_binary",
    "mde_ratio",
    "p95_slo",
    "p95_slo_test",
    "rate_cap",
    "tango_ci",
    "tango_statistic",
    "wilson_bounds",
]
