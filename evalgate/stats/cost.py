"""Cost guardrails: the cost ratio against the baseline (Fieller and the ratio-model bound, both
must agree; a BCa bootstrap cross-check in the note) and a budget per request."""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from evalgate.stats import distributions as dist
from evalgate.stats.evidence import (
    MIN_CANARIES_T,
    Evidence,
    _as_1d,
    _build,
    _check_alpha,
    _check_samples,
    _level,
    _paired,
    _t_p,
    _verdict_from_bounds,
    mde_ratio,
    mean_against_limit,
)
from evalgate.stats.resampling import _resample_sums

# Resample cells (resamples x canaries) the BCa cross-check of the cost ratio may use.
BCA_MAX_CELLS = 20_000_000


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


def ratio_model_bounds(cand: np.ndarray, base: np.ndarray, alpha: float
                       ) -> tuple[float, float, float] | None:
    """One-sided (1-alpha) bounds for mean(cand)/mean(base) under the ratio model, and its SE.

    The ratio of means is the baseline-weighted mean of the per-canary ratios rho_i = c_i/b_i,
    weights w_i = b_i / sum(b). If the rho_i are exchangeable given the baseline costs (the
    ratio model of survey sampling, Cochran 1977 ch. 6), Var(r | b) = Var(rho) sum(w_i^2): the
    spread of the ratios is estimated from every canary alike, not from the few costly ones that
    dominate the Fieller residuals c_i - r b_i (with skewed costs those residuals understate the
    variance exactly when r comes out low, which is what makes Fieller alone pass too often).
    t bounds on n - 1 df. None when a baseline cost is 0 (no ratio) or n < 2.
    """
    c, b = _paired(cand, base)
    n = c.size
    if n < 2 or np.any(b <= 0):
        return None
    mb = float(b.mean())
    r = float(c.mean()) / mb
    se = math.sqrt(float(np.var(c / b, ddof=1)) * float(np.mean(b * b)) / n) / mb
    tcrit = float(dist.t_isf(alpha, n - 1))
    return r - tcrit * se, r + tcrit * se, se


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
    """Mean cost per canary, candidate over baseline: Fieller and the ratio model must agree.

    Fieller: non-inferiority p = ttest_rel(cand, margin*base, "less") (the ratio of means is
    below margin iff E[cand - margin*base] < 0, no delta method) and bounds inverting it over m.
    On skewed (lognormal) costs it alone passes a candidate at the margin 9% of the time at
    alpha 5%, at every n from 30 to 300: a few costly canaries dominate its residuals. So the
    bounds reported are the wider of Fieller's and `ratio_model_bounds` (each side), and each
    p-value (non-inferiority, regression) the larger of the two tests': PASS (and FAIL) only
    when both agree. A paired BCa bootstrap of the
    ratio is reported in the note as a cross-check (it is as liberal as Fieller there, so it
    never decides). n >= 30.
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
    f_low, f_high = fieller_ratio_bounds(c, b, alpha)
    low, high = f_low, f_high
    notes: list[str | None] = []
    ok = n >= MIN_CANARIES_T
    if not ok:
        notes.append(f"only {n} canaries (need {MIN_CANARIES_T} for the paired t)")
    if f_low is None or f_high is None:
        notes.append("Fieller interval unbounded: the baseline mean cost is not clearly above 0")
    se_log = (float(np.std(c - r * b, ddof=1)) / (math.sqrt(n) * mc)
              if mc > 0 and n > 1 else None)
    model = ratio_model_bounds(c, b, alpha)
    if model is None:
        if n > 1:
            notes.append("ratio-model check unavailable (a baseline canary cost 0): Fieller "
                         "alone decides")
    else:
        m_low, m_high, m_se = model
        if f_low is not None and f_high is not None:
            low, high = max(0.0, min(f_low, m_low)), max(f_high, m_high)
        if m_se > 0:
            p_value = max(p_value, float(dist.t_cdf((r - margin_ratio) / m_se, n - 1)))
            p_reg = max(p_reg, float(dist.t_sf((r - 1.0) / m_se, n - 1)))
            if se_log is not None:
                se_log = max(se_log, m_se / r)
        else:
            p_value = p_value if r < margin_ratio else 1.0
            p_reg = p_reg if r > 1.0 else 1.0
        alone = _verdict_from_bounds("ratio", "higher", f_low, f_high, margin_ratio)
        both = _verdict_from_bounds("ratio", "higher", low, high, margin_ratio)
        if alone != both:
            notes.append(f"Fieller alone [{f_low:.3f}, {f_high:.3f}] would say {alone}; the "
                         f"ratio-model bounds [{m_low:.3f}, {m_high:.3f}] do not agree")
    mde = mde_ratio(se_log, alpha) if se_log is not None else None
    # A cross-check only: its resamples are capped at BCA_MAX_CELLS / n (>= 1999), so it
    # never dominates the run's statistics (10,000 canaries: 2,000 resamples, ~0.3 s).
    bca_b = min(bca_resamples, max(1999, BCA_MAX_CELLS // max(n, 1)))
    bca = _bca_ratio(c, b, alpha, bca_b, seed) if n > 2 else None
    if bca is None:
        notes.append("BCa bootstrap cross-check unavailable")
    else:
        text = (f"BCa bootstrap (B={bca_b}, {_level(alpha)} one-sided each): "
                f"[{bca[0]:.3f}, {bca[1]:.3f}]")
        verdict = _verdict_from_bounds("ratio", "higher", low, high, margin_ratio)
        bca_verdict = _verdict_from_bounds("ratio", "higher", bca[0], bca[1], margin_ratio)
        if verdict != bca_verdict:
            text += f" DISAGREES: it would say {bca_verdict}"
        elif low is not None and high is not None and max(
                abs(bca[0] - low), abs(bca[1] - high)) > 0.25 * (high - low):
            text += " differs from the bounds by > 25% of their width"
        notes.append(text)
    return _build(
        guardrail=guardrail, kind="cost_ratio",
        test=("Fieller-linearised paired t and the ratio-model t on the mean-cost ratio, both "
              "must agree (BCa bootstrap cross-check)"),
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
    return mean_against_limit(x, guardrail=guardrail, kind="cost_budget",
                              test="one-sided t bound on the mean cost", limit=budget,
                              worse="higher", alpha=alpha, samples=samples, nonnegative=True)
