"""The distribution functions and the root finder evalgate's statistics need, on `scipy.special`.

Why this module exists: importing `scipy.stats` costs ~0.75 s and `scipy.optimize` ~0.45 s, and
every gated run paid that when the gate was decided, for a handful of normal, t, beta and
binomial tails and one root finder. `scipy.special` (~0.2 s) holds the functions that do the
actual work, so these are thin wrappers that call the same special function `scipy.stats`
calls (results agree to the last bit unless a docstring says otherwise; tests/
test_distributions.py cross-checks every one against scipy.stats / scipy.optimize), plus:

* `quantile_test_pvalue` / `quantile_test_ci`: scipy's `quantile_test` (Conover 1999) and its
  order-statistic `confidence_interval`, written out for the one-sample case evalgate uses;
* `brentq`: scipy's Brent root finder (Brent 1973; scipy/optimize/Zeros/brentq.c by Charles
  Harris) ported line by line, so the same function, bracket and tolerances give the same root.

Functions taking x / q accept scalars or numpy arrays (numpy ufuncs), except where noted.
Nothing here may import `scipy.stats` or `scipy.optimize` (a test runs the imports in a fresh
interpreter and checks `sys.modules`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from scipy import special

Alternative = Literal["less", "greater", "two-sided"]

_SQRT_2PI = np.sqrt(2 * np.pi)  # the same constant scipy.stats.norm.pdf divides by
_LN_2PI = math.log(2.0 * math.pi)
_EPS = float(np.finfo(float).eps)


# --------------------------------------------------------------------------------------------
# Normal
# --------------------------------------------------------------------------------------------


def norm_cdf(x: Any) -> Any:
    """P(Z <= x) (Cody's erfc-based ndtr, accurate in both tails)."""
    return special.ndtr(x)


def norm_sf(x: Any) -> Any:
    """P(Z > x), as ndtr(-x): no 1 - cdf cancellation in the upper tail."""
    return special.ndtr(np.negative(x))


def norm_ppf(q: Any) -> Any:
    """The q-quantile of N(0, 1)."""
    return special.ndtri(q)


def norm_isf(q: Any) -> Any:
    """z with P(Z > z) = q, as -ndtri(q) (exact for tiny q)."""
    return -special.ndtri(q)


def norm_pdf(x: Any) -> Any:
    """Standard normal density, the expression scipy.stats.norm.pdf evaluates."""
    return np.exp(-np.asarray(x, dtype=float) ** 2 / 2.0) / _SQRT_2PI


# --------------------------------------------------------------------------------------------
# Beta and Student t
# --------------------------------------------------------------------------------------------


def beta_ppf(q: Any, a: Any, b: Any) -> Any:
    """The q-quantile of Beta(a, b) (Boost ibeta_inv)."""
    return special.betaincinv(a, b, q)


def beta_isf(q: Any, a: Any, b: Any) -> Any:
    """x with P(X > x) = q for X ~ Beta(a, b): the complemented inverse, not ppf(1 - q)."""
    return special.betainccinv(a, b, q)


def t_cdf(x: Any, df: Any) -> Any:
    """P(T <= x), T ~ Student t with df degrees of freedom."""
    return special.stdtr(df, x)


def t_sf(x: Any, df: Any) -> Any:
    """P(T > x), as stdtr(df, -x) (symmetry, no cancellation)."""
    return special.stdtr(df, -np.asarray(x, dtype=float))


def t_isf(q: Any, df: Any) -> Any:
    """t with P(T > t) = q, as -stdtrit(df, q)."""
    return -special.stdtrit(df, q)


def ttest_1samp_pvalue(a: np.ndarray, popmean: float,
                       alternative: Literal["less", "greater"]) -> float:
    """One-sided p-value of the one-sample t test, computed as scipy.stats.ttest_1samp does.

    t = (mean - popmean) / sqrt(var_{ddof=1} / n), with the variance formed as scipy forms it
    (mean of squared deviations times n / (n - 1)), so the statistic matches to the last bit.
    """
    x = np.asarray(a, dtype=float)
    n = x.size
    mean = np.mean(x)
    var = np.mean((x - mean) ** 2) * (n / (n - 1.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.divide(mean - popmean, np.sqrt(var / n))
    if alternative == "less":
        return float(special.stdtr(n - 1.0, t))
    if alternative == "greater":
        return float(special.stdtr(n - 1.0, -t))
    raise ValueError(f"alternative must be 'less' or 'greater', got {alternative!r}")


# --------------------------------------------------------------------------------------------
# Binomial
# --------------------------------------------------------------------------------------------


def binom_cdf(k: Any, n: int, p: float) -> Any:
    """P(Y <= k), Y ~ Binomial(n, p): I_{1-p}(n - k, k + 1), the form Boost's binomial uses."""
    kf = np.floor(np.asarray(k, dtype=float))
    inside = (kf >= 0) & (kf < n)
    kk = np.where(inside, kf, 0.0)
    val = special.betainc(n - kk, kk + 1.0, 1.0 - p)
    out = np.where(kf < 0, 0.0, np.where(kf >= n, 1.0, val))
    return out[()] if out.ndim == 0 else out


def binom_sf(k: Any, n: int, p: float) -> Any:
    """P(Y > k), Y ~ Binomial(n, p): I_p(k + 1, n - k) (no 1 - cdf cancellation)."""
    kf = np.floor(np.asarray(k, dtype=float))
    inside = (kf >= 0) & (kf < n)
    kk = np.where(inside, kf, 0.0)
    val = special.betainc(kk + 1.0, n - kk, p)
    out = np.where(kf < 0, 1.0, np.where(kf >= n, 0.0, val))
    return out[()] if out.ndim == 0 else out


def _stirlerr(n: float) -> float:
    """log(n!) - log(sqrt(2 pi n) (n/e)^n): the Stirling remainder, series for n > 15."""
    if n <= 15.0:
        return math.lgamma(n + 1.0) - (n + 0.5) * math.log(n) + n - 0.5 * _LN_2PI
    s0, s1, s2, s3, s4 = 1 / 12, 1 / 360, 1 / 1260, 1 / 1680, 1 / 1188
    nn = n * n
    if n > 500:
        return (s0 - s1 / nn) / n
    if n > 80:
        return (s0 - (s1 - s2 / nn) / nn) / n
    if n > 35:
        return (s0 - (s1 - (s2 - s3 / nn) / nn) / nn) / n
    return (s0 - (s1 - (s2 - (s3 - s4 / nn) / nn) / nn) / nn) / n


def _bd0(x: float, np_: float) -> float:
    """x log(x / np) + np - x, summed as a series near x = np to avoid cancellation."""
    if abs(x - np_) < 0.1 * (x + np_):
        v = (x - np_) / (x + np_)
        s = (x - np_) * v
        ej = 2.0 * x * v
        v *= v
        j = 1
        while True:
            ej *= v
            s1 = s + ej / (2 * j + 1)
            if s1 == s:
                return s1
            s = s1
            j += 1
    return x * math.log(x / np_) + np_ - x


def binom_pmf(k: int, n: int, p: float) -> float:
    """P(Y = k), Y ~ Binomial(n, p), scalar.

    Loader's saddle-point form (C. Loader 2000, "Fast and accurate computation of binomial
    probabilities"; R's dbinom): relative error ~1e-15 for any n, where the textbook
    C(n, k) p^k q^(n-k) underflows (0.5**100000 == 0) and log-gamma differences lose ~1e-10.
    """
    k, n, p = float(k), float(n), float(p)
    q = 1.0 - p
    if k != math.floor(k) or k < 0 or k > n:
        return 0.0
    if p == 0.0:
        return 1.0 if k == 0 else 0.0
    if q == 0.0:
        return 1.0 if k == n else 0.0
    if k == 0:
        if n == 0:
            return 1.0
        return math.exp(-_bd0(n, n * q) - n * p if p < 0.1 else n * math.log(q))
    if k == n:
        return math.exp(-_bd0(n, n * p) - n * q if q < 0.1 else n * math.log(p))
    lc = (_stirlerr(n) - _stirlerr(k) - _stirlerr(n - k) - _bd0(k, n * p)
          - _bd0(n - k, n * q))
    lf = _LN_2PI + math.log(k) + math.log1p(-k / n)
    return math.exp(lc - 0.5 * lf)


def binom_ppf(q: float, n: int, p: float) -> int:
    """Smallest k in 0..n with P(Y <= k) >= q (scipy's discrete ppf; -1 at q = 0), scalar.

    Binary search over the monotone cdf: log2(n) special-function calls.
    """
    if q <= 0.0:
        return -1
    if q >= 1.0:
        return n
    lo, hi = 0, n  # cdf(n) = 1 >= q, so the answer is in [lo, hi]
    while lo < hi:
        mid = (lo + hi) // 2
        if binom_cdf(mid, n, p) >= q:
            hi = mid
        else:
            lo = mid + 1
    return lo


def binom_isf(q: float, n: int, p: float) -> int:
    """Smallest k in 0..n with P(Y > k) <= q (scipy's discrete isf; -1 at q = 1), scalar."""
    if q >= 1.0:
        return -1
    if q <= 0.0:
        return n
    lo, hi = 0, n  # sf(n) = 0 <= q
    while lo < hi:
        mid = (lo + hi) // 2
        if binom_sf(mid, n, p) <= q:
            hi = mid
        else:
            lo = mid + 1
    return lo


# --------------------------------------------------------------------------------------------
# Quantile test (Conover 1999, section 3.2; scipy.stats.quantile_test)
# --------------------------------------------------------------------------------------------


def quantile_test_pvalue(x: np.ndarray, q: float, p: float, alternative: Alternative) -> float:
    """p-value of H0 "the p-quantile of x's population is q" (scipy `quantile_test`).

    T1 = #(x <= q), T2 = #(x < q), Y ~ Binomial(n, p). "less" (the quantile is below q):
    P(Y >= T2); "greater": P(Y <= T1); "two-sided": twice the smaller of the two, capped at 1.
    """
    v = np.asarray(x, dtype=float).ravel()
    n = v.size
    t1 = int(np.count_nonzero(v <= q))
    t2 = int(np.count_nonzero(v < q))
    p_less = float(binom_sf(t2 - 1, n, p))
    p_greater = float(binom_cdf(t1, n, p))
    if alternative == "less":
        return p_less
    if alternative == "greater":
        return p_greater
    if alternative == "two-sided":
        return float(np.clip(2 * min(p_greater, p_less), 0, 1))
    raise ValueError(f"alternative must be 'less', 'greater' or 'two-sided', got {alternative!r}")


def quantile_test_ci(x: np.ndarray, p: float, confidence_level: float,
                     alternative: Alternative) -> tuple[float, float]:
    """Order-statistic interval for the p-quantile (scipy `quantile_test(...).confidence_interval`).

    Ends are order statistics picked with Binomial(n, p) quantiles; an end the sample cannot
    reach is nan, the open side of a one-sided interval is -inf / inf (as scipy returns them).
    """
    if confidence_level <= 0 or confidence_level >= 1:
        raise ValueError("`confidence_level` must be a number between 0 and 1.")
    v = np.sort(np.asarray(x, dtype=float).ravel())
    n = v.size
    low, high = -math.inf, math.inf
    if alternative == "less":
        tail = 1 - confidence_level
        hi_i = binom_isf(tail, n, p)
        high = float(v[hi_i]) if hi_i < n else math.nan
    elif alternative == "greater":
        tail = 1 - confidence_level
        lo_i = binom_ppf(tail, n, p) - 1
        low = float(v[lo_i]) if lo_i >= 0 else math.nan
    elif alternative == "two-sided":
        tail = (1 - confidence_level) / 2
        lo_i = binom_ppf(tail, n, p) - 1
        low = float(v[lo_i]) if lo_i >= 0 else math.nan
        hi_i = binom_isf(tail, n, p)
        high = float(v[hi_i]) if hi_i < n else math.nan
    else:
        raise ValueError(f"alternative must be 'less', 'greater' or 'two-sided', "
                         f"got {alternative!r}")
    return low, high


# --------------------------------------------------------------------------------------------
# Root finding
# --------------------------------------------------------------------------------------------


def brentq(f: Callable[..., float], a: float, b: float, args: tuple[Any, ...] = (),
           xtol: float = 2e-12, rtol: float = 4 * _EPS, maxiter: int = 100) -> float:
    """A root of f in [a, b] where f(a) and f(b) differ in sign (Brent 1973).

    A line-by-line port of scipy.optimize.brentq (scipy/optimize/Zeros/brentq.c): inverse
    quadratic extrapolation or secant steps when they shrink the bracket fast enough, bisection
    otherwise; stops when half the bracket is below (xtol + rtol |x|) / 2. Raises ValueError if
    the ends do not bracket a sign change, RuntimeError after `maxiter` iterations.
    """
    if xtol <= 0:
        raise ValueError(f"xtol too small ({xtol:g} <= 0)")
    if rtol < 4 * _EPS:
        raise ValueError(f"rtol too small ({rtol:g} < {4 * _EPS:g})")
    xpre, xcur = float(a), float(b)
    xblk = fblk = spre = scur = 0.0
    fpre = float(f(xpre, *args))
    fcur = float(f(xcur, *args))
    if fpre == 0:
        return xpre
    if fcur == 0:
        return xcur
    if math.isnan(fpre) or math.isnan(fcur) or (
            math.copysign(1.0, fpre) == math.copysign(1.0, fcur)):
        raise ValueError("f(a) and f(b) must have different signs")
    for _ in range(maxiter):
        if fpre != 0 and fcur != 0 and math.copysign(1.0, fpre) != math.copysign(1.0, fcur):
            xblk, fblk = xpre, fpre
            spre = scur = xcur - xpre
        if abs(fblk) < abs(fcur):
            xpre, xcur, xblk = xcur, xblk, xcur
            fpre, fcur, fblk = fcur, fblk, fcur
        delta = (xtol + rtol * abs(xcur)) / 2
        sbis = (xblk - xcur) / 2
        if fcur == 0 or abs(sbis) < delta:
            return xcur
        if abs(spre) > delta and abs(fcur) < abs(fpre):
            if xpre == xblk:  # interpolate
                stry = -fcur * (xcur - xpre) / (fcur - fpre)
            else:  # extrapolate
                dpre = (fpre - fcur) / (xpre - xcur)
                dblk = (fblk - fcur) / (xblk - xcur)
                stry = -fcur * (fblk * dblk - fpre * dpre) / (dblk * dpre * (fblk - fpre))
            if 2 * abs(stry) < min(abs(spre), 3 * abs(sbis) - delta):  # good short step
                spre, scur = scur, stry
            else:  # bisect
                spre = scur = sbis
        else:  # bisect
            spre = scur = sbis
        xpre, fpre = xcur, fcur
        if abs(scur) > delta:
            xcur += scur
        else:
            xcur += delta if sbis > 0 else -delta
        fcur = float(f(xcur, *args))
    raise RuntimeError(f"brentq: failed to converge after {maxiter} iterations, x = {xcur}")
