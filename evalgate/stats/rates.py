"""Guardrails on rates and scores: a rate against the baseline (paired, Tango/McNemar), a
rate under a cap, and a mean score against the baseline."""

from __future__ import annotations

import math

import numpy as np

from evalgate.stats import distributions as dist
from evalgate.stats.evidence import (
    MIN_CANARIES_T,
    TANGO_CONTINUITY,
    Evidence,
    Worse,
    _as_1d,
    _build,
    _check_alpha,
    _check_samples,
    _paired,
    _t_p,
    _t_summary,
    mde_difference,
    mde_paired_binary,
)
from evalgate.stats.primitives import (
    binomial_cap_p,
    clopper_pearson_bounds,
    mcnemar_regression_p,
    tango_ci,
    tango_statistic,
)


def compare_rate(cand: np.ndarray, base: np.ndarray, *, guardrail: str, margin: float,
                 alpha: float, samples: int, worse: Worse = "higher") -> Evidence:
    """Paired rate vs the baseline with a tolerated worsening `margin` (rate units, positive).

    K == 1 (binary per canary): continuity-corrected Tango score non-inferiority test and
    interval on the paired difference, mid-p McNemar for "regressed at all". No minimum of
    discordant pairs: a cutoff on them made the verdict non-monotone (one more candidate failure
    could turn INCONCLUSIVE into PASS); the correction keeps the exact level at or below alpha
    with few discordant pairs instead (`TANGO_CONTINUITY`). K > 1 (each
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
        r_low, r_high = tango_ci(n_reg, n_imp, n, alpha, TANGO_CONTINUITY)
        low, high = (r_low, r_high) if worse == "higher" else (-r_high, -r_low)
        p_value = float(dist.norm_cdf(tango_statistic(n_reg, n_imp, n, margin,
                                                      TANGO_CONTINUITY)))
        p_reg = mcnemar_regression_p(n_reg, n_imp, mid_p=True)
        return _build(
            guardrail=guardrail, kind="rate_vs_baseline",
            test=("Tango score test, continuity-corrected (paired non-inferiority) + mid-p "
                  "McNemar (regression)"),
            estimate=est, baseline=base_rate, effect=est - base_rate, effect_kind="difference",
            ci_low=low, ci_high=high, margin=margin, worse=worse, p_value=p_value,
            p_regression=p_reg, n_canaries=n, n_samples=1, discordant=(n_reg, n_imp),
            mde=mde_paired_binary(n_reg, n_imp, n, base_rate, alpha), alpha=alpha,
            minimum_met=True, notes=[], baseline_level=base_rate)

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
    low, high = max(-1.0, min(ts.low, f_low)), min(1.0, max(ts.high, f_high))
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


def _cluster_rate_bounds(x: np.ndarray, alpha: float) -> tuple[float, float, str]:
    """One-sided (1-alpha) bounds on the mean of per-canary rates in [0, 1] (K draws a canary).

    n >= 30: t bounds on the canary means, never narrower than Clopper-Pearson bounds over
    canaries (sum of means as the count): a canary mean's variance never exceeds p(1-p), so that
    floor is conservative for clustered draws and stops the t bound collapsing when every canary
    mean is equal. n < 30: exact and valid under any within-canary correlation: P(a canary has
    every draw bad) <= p <= P(it has any bad draw), so Clopper-Pearson bounds on those two
    counts bound p. Both clipped to [0, 1].
    """
    n = x.size
    if n >= MIN_CANARIES_T:
        ts = _t_summary(x, alpha)
        total = float(x.sum())
        cp_low = 0.0 if total == 0 else float(dist.beta_ppf(alpha, total, n - total + 1))
        cp_high = 1.0 if total == n else float(dist.beta_isf(alpha, total + 1, n - total))
        low, high = min(ts.low, cp_low), max(ts.high, cp_high)
        method = "t bound on per-canary rates, never narrower than Clopper-Pearson over canaries"
    else:
        low = clopper_pearson_bounds(int(np.sum(x >= 1.0)), n, alpha)[0]
        high = clopper_pearson_bounds(int(np.sum(x > 0.0)), n, alpha)[1]
        method = ("exact (Clopper-Pearson) bounds on the canaries with every draw / any draw "
                  f"bad (fewer than {MIN_CANARIES_T} canaries)")
    return max(0.0, low), min(1.0, high), method


def rate_cap(cand: np.ndarray, *, guardrail: str, cap: float, alpha: float, samples: int,
             worse: Worse = "higher") -> Evidence:
    """Absolute cap (worse="higher") or floor (worse="lower") on a rate, no baseline.

    K == 1: exact one-sided Clopper-Pearson bounds and the matching exact binomial p (the bound
    is the test's inversion), so false PASS and false FAIL stay at or below alpha at every n.
    K > 1: see `_cluster_rate_bounds`. Bounds stay in [0, 1]. `mde` here is the distance from
    the cap the true rate must keep for this run to decide with 80% power.
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
    side = "less" if worse == "higher" else "greater"
    notes: list[str | None] = []
    if cap == (0.0 if worse == "higher" else 1.0):  # can be failed but never proven
        notes.append(f"a {'cap' if worse == 'higher' else 'floor'} of {cap:g} can never "
                     "PASS on a sample; use a small tolerance instead")
    null_se = math.sqrt(cap * (1 - cap) / n)
    if samples == 1:
        if not np.all((x == 0) | (x == 1)):
            raise ValueError("with samples == 1 the rates must be 0/1 per canary")
        k = int(x.sum())
        low, high = clopper_pearson_bounds(k, n, alpha)
        p_value: float | None = binomial_cap_p(k, n, cap, side)
        mde: float | None = mde_difference(null_se, alpha) if null_se > 0 else None
        test = "exact binomial test (Clopper-Pearson bound, one-sided) vs an absolute cap"
    else:
        low, high, method = _cluster_rate_bounds(x, alpha)
        if n >= MIN_CANARIES_T:
            p_value = _t_p(x, cap, side)
            if null_se > 0:
                zstat = (est - cap) / null_se
                z_p = float(dist.norm_cdf(zstat) if worse == "higher" else dist.norm_sf(zstat))
                p_value = max(p_value, z_p)
        else:
            count = int(np.sum(x > 0.0)) if worse == "higher" else int(np.sum(x >= 1.0))
            p_value = binomial_cap_p(count, n, cap, side)
        se = _t_summary(x, alpha).se if n > 1 else 0.0
        mde = mde_difference(se if 0 < se < math.inf else
                             math.sqrt(cap * (1 - cap) / (n * samples)), alpha) or None
        test = f"{method} (canary = cluster of K={samples})"
    return _build(
        guardrail=guardrail, kind="rate_cap", test=test, estimate=est, baseline=None,
        effect=est, effect_kind="absolute", ci_low=low, ci_high=high, margin=cap, worse=worse,
        p_value=p_value, p_regression=None, n_canaries=n, n_samples=samples, discordant=None,
        mde=mde, alpha=alpha, minimum_met=True, notes=notes)


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
        effect_kind="difference",
        ci_low=max(-1.0, ts.low) if math.isfinite(ts.low) else None,
        ci_high=min(1.0, ts.high) if math.isfinite(ts.high) else None,
        margin=margin, worse="lower",
        p_value=_t_p(diff, -margin, "greater"), p_regression=_t_p(diff, 0.0, "less"),
        n_canaries=n, n_samples=samples, discordant=None, mde=mde_difference(ts.se, alpha),
        alpha=alpha, minimum_met=ok, notes=notes)
