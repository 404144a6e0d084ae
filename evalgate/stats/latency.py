"""Latency guardrails: the p95 ratio against the baseline, the p95 SLO, and the geometric-mean
latency ratio."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from evalgate.stats.evidence import (
    MIN_CANARIES_T,
    P95,
    Evidence,
    _as_1d,
    _build,
    _check_samples,
    _level,
    _paired_latencies,
    _sentence,
    _t_p,
    _t_summary,
    _z,
    mde_difference,
    mde_ratio,
)
from evalgate.stats.primitives import (
    _resample_hd_clustered,
    _resample_hd_pair,
    harrell_davis,
    p95_slo_test,
)
from evalgate.stats.rates import _cluster_rate_bounds


def compare_p95(cand_ms: np.ndarray, base_ms: np.ndarray, *, guardrail: str,
                margin_ratio: float, alpha: float, resamples: int = 9999, seed: int = 0,
                samples: int = 1, cand_canary: np.ndarray | None = None,
                base_canary: np.ndarray | None = None) -> Evidence:
    """Ratio of Harrell-Davis p95 latencies, candidate over baseline, by a paired bootstrap.

    Canary indices are resampled with replacement (keeps the pairing); bounds are the alpha and
    1-alpha percentiles of the bootstrap ratios (Efron & Tibshirani 1993, ch. 13). p-values are
    the matching percentile-inversion p's, (1 + #{ratio* on the null side}) / (B + 1): approximate,
    as the percentile interval is. `mde` uses the bootstrap SD of log ratios. n >= 30 canaries.

    With K > 1 calls a canary, pass every call's latency and `cand_canary` / `base_canary`, the
    canary index (0..n-1, the same canary on both sides) of each call: the p95 is then the p95 of
    the calls, and the bootstrap resamples canaries with all their calls (a cluster bootstrap), so
    the K calls of a canary are never treated as independent. Without them, one value a canary.
    """
    clustered = cand_canary is not None or base_canary is not None
    if clustered:
        c, b, c_idx, b_idx, n = _calls_by_canary(cand_ms, base_ms, cand_canary, base_canary)
        _paired_latencies(c[:1], b[:1], margin_ratio, alpha, samples)
        if np.any(c <= 0) or np.any(b <= 0):
            raise ValueError("latencies must be > 0 ms")
    else:
        c, b = _paired_latencies(cand_ms, base_ms, margin_ratio, alpha, samples)
        n = c.size
    if resamples < 1:
        raise ValueError("resamples must be >= 1")
    est, base_p95 = harrell_davis(c, P95), harrell_davis(b, P95)
    if clustered:
        boot_c, boot_b = _resample_hd_clustered(c, c_idx, b, b_idx, n, P95, resamples, seed)
    else:
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
        test=(f"paired {'cluster (by canary) ' if clustered else ''}percentile bootstrap of the "
              f"Harrell-Davis p95 ratio{' of the calls' if clustered else ''} (B={resamples}; "
              "p-values approx.)"),
        estimate=est, baseline=base_p95, effect=est / base_p95, effect_kind="ratio",
        ci_low=low, ci_high=high, margin=margin_ratio, worse="higher", p_value=p_value,
        p_regression=p_reg, n_canaries=n, n_samples=samples, discordant=None, mde=mde,
        alpha=alpha, minimum_met=ok, notes=notes)


def _calls_by_canary(cand_ms: np.ndarray, base_ms: np.ndarray, cand_canary: np.ndarray | None,
                     base_canary: np.ndarray | None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    c, b = _as_1d(cand_ms, "cand_ms"), _as_1d(base_ms, "base_ms")
    if cand_canary is None or base_canary is None:
        raise ValueError("pass both cand_canary and base_canary (or neither)")
    c_idx, b_idx = _canary_index(cand_canary, c.size), _canary_index(base_canary, b.size)
    n = int(max(c_idx.max(), b_idx.max())) + 1
    if np.any(np.bincount(c_idx, minlength=n) == 0) or np.any(
            np.bincount(b_idx, minlength=n) == 0):
        raise ValueError("every canary 0..n-1 needs at least one call on both sides (paired)")
    return c, b, c_idx, b_idx, n


def _canary_index(canary: np.ndarray, size: int) -> np.ndarray:
    idx = np.asarray(canary)
    if idx.shape != (size,) or not np.issubdtype(idx.dtype, np.integer) or np.any(idx < 0):
        raise ValueError("the canary index of each call must be non-negative integers, one a "
                         "call")
    return idx.astype(np.intp)


def _exceedance_bounds(x: np.ndarray, idx: np.ndarray, n: int, threshold: float,
                       alpha: float) -> tuple[float, float]:
    """Bounds on the share of calls above `threshold`, canary = cluster (`_cluster_rate_bounds`
    on each canary's share of calls above it)."""
    share = np.bincount(idx, weights=(x > threshold).astype(float), minlength=n) / np.bincount(
        idx, minlength=n)
    low, high, _ = _cluster_rate_bounds(share, alpha)
    return low, high


def _clustered_slo(x: np.ndarray, idx: np.ndarray, slo_ms: float, alpha: float
                   ) -> tuple[str, float | None, float | None, float]:
    """The p95 SLO test on calls, clustered by canary: the p95 is below the SLO iff fewer than 5%
    of calls exceed it, so PASS when the upper bound on that share is below 5% and FAIL when its
    lower bound is above. The p95's bounds invert the same test over the observed latencies:
    the upper bound is the smallest latency the test would PASS as an SLO, the lower bound the
    largest it would FAIL. Returns the verdict, the bounds and the exceedance share's upper
    bound at the SLO."""
    n = int(idx.max()) + 1
    share_p = 1.0 - P95
    low, high = _exceedance_bounds(x, idx, n, slo_ms, alpha)
    verdict = "PASS" if high < share_p else "FAIL" if low > share_p else "INCONCLUSIVE"
    grid = np.unique(x)

    def first(pred: object) -> int:
        lo, hi = 0, grid.size  # smallest i with pred(grid[i]) true; pred is monotone
        while lo < hi:
            mid = (lo + hi) // 2
            if pred(grid[mid]):  # type: ignore[operator]
                hi = mid
            else:
                lo = mid + 1
        return lo

    i_up = first(lambda v: _exceedance_bounds(x, idx, n, v, alpha)[1] < share_p)
    i_fail = first(lambda v: not _exceedance_bounds(x, idx, n, v, alpha)[0] > share_p)
    p95_high = float(grid[i_up]) if i_up < grid.size else None
    p95_low = float(grid[i_fail - 1]) if i_fail > 0 else None
    return verdict, p95_low, p95_high, high


def p95_slo(cand_ms: np.ndarray, *, guardrail: str, slo_ms: float, alpha: float,
            samples: int = 1, canary: np.ndarray | None = None) -> Evidence:
    """Absolute p95 SLO, distribution-free (see `p95_slo_test`). `mde` (ms) is approximate:
    (z_{1-alpha} + z_0.8) x the SE implied by the width of the interval.

    With K > 1 calls a canary, pass every call's latency and `canary`, the canary index of each
    call: the p95 is that of the calls, tested by the share of calls above the SLO with the canary
    as the cluster (`_clustered_slo`), never on per-canary means.
    """
    _check_samples(samples)
    x = _as_1d(cand_ms, "cand_ms")
    if canary is not None:
        idx = _canary_index(canary, x.size)
        n = int(idx.max()) + 1
        if np.any(np.bincount(idx, minlength=n) == 0):
            raise ValueError("every canary 0..n-1 needs at least one call")
        verdict, ci_low, ci_high, share_high = _clustered_slo(x, idx, float(slo_ms), alpha)
        mde = None
        if ci_low is not None and ci_high is not None:
            mde = mde_difference((ci_high - ci_low) / (2 * _z(alpha)), alpha)
        ev = _build(
            guardrail=guardrail, kind="p95_slo",
            test=("share of calls above the SLO, canary = cluster of its calls (p95 of the "
                  f"calls, K={samples})"),
            estimate=harrell_davis(x, P95), baseline=None, effect=harrell_davis(x, P95),
            effect_kind="absolute", ci_low=ci_low, ci_high=ci_high, margin=float(slo_ms),
            worse="higher", p_value=None, p_regression=None, n_canaries=n, n_samples=samples,
            discordant=None, mde=mde, alpha=alpha, minimum_met=True,
            notes=[f"{_level(alpha)} upper bound on the share of calls above the SLO: "
                   f"{100 * share_high:.1f}% (PASS needs < 5%)"])
        ev = replace(ev, verdict=verdict)
        return replace(ev, sentence=_sentence(ev))
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
        effect=math.exp(ts.mean), effect_kind="ratio",
        ci_low=math.exp(ts.low) if math.isfinite(ts.low) else None,
        ci_high=math.exp(ts.high) if math.isfinite(ts.high) else None, margin=margin_ratio,
        worse="higher", p_value=p_value,
        p_regression=p_reg, n_canaries=n, n_samples=samples, discordant=None,
        mde=mde_ratio(ts.se, alpha), alpha=alpha, minimum_met=ok, notes=notes)
