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
    _paired_latencies,
    _sentence,
    _t_p,
    _t_summary,
    _z,
    mde_difference,
    mde_ratio,
)
from evalgate.stats.primitives import _resample_hd_pair, harrell_davis, p95_slo_test


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
        effect=math.exp(ts.mean), effect_kind="ratio",
        ci_low=math.exp(ts.low) if math.isfinite(ts.low) else None,
        ci_high=math.exp(ts.high) if math.isfinite(ts.high) else None, margin=margin_ratio,
        worse="higher", p_value=p_value,
        p_regression=p_reg, n_canaries=n, n_samples=samples, discordant=None,
        mde=mde_ratio(ts.se, alpha), alpha=alpha, minimum_met=ok, notes=notes)
