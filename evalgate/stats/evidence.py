"""What a guardrail's test returns (`Evidence`), the conventions every test shares, and the one
sentence a release manager reads (see the package docstring for the conventions)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from evalgate.stats import distributions as dist

Verdict = Literal["PASS", "FAIL", "INCONCLUSIVE"]
Worse = Literal["higher", "lower"]
EffectKind = Literal["difference", "ratio", "absolute"]

POWER = 0.80
"""Power at which `Evidence.mde` is quoted."""

TANGO_CONTINUITY = 0.5
"""Continuity correction of the paired-rate score test (K = 1). Uncorrected, Tango's bound is
liberal with few discordant pairs (exact false FAIL 8.8% at n = 60); corrected, the exact level
stays at or below alpha + 0.2 points over the grid tests/test_stats.py enumerates. It replaces
a minimum of 10 discordant pairs, which made the verdict non-monotone."""

MIN_CANARIES_T = 30
"""Minimum canaries for t-based and bootstrap methods (CLT on per-canary means / resampling)."""

P95 = 0.95


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


def _z(alpha: float) -> float:
    return float(dist.norm_isf(alpha))


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha is one-sided and must be in (0, 0.5), got {alpha}")


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
    """MDE (rate units) of a paired binary comparison with n canaries, under the alternative.

    b canaries regressed, c improved. The alternative keeps the improvements at their observed
    share p_imp = c/n and adds the regression d to the other discordant cell, p_reg = p_imp + d,
    so the discordance psi = 2 p_imp + d grows with d. McNemar's statistic sqrt(n) d_hat /
    sqrt(psi) rejects when above z_{1-alpha}, and d_hat has variance (psi - d^2)/n under the
    alternative (Connor 1987, Biometrics 43:207-211), so the power at d is
    Phi((sqrt(n) d - z_{1-alpha} sqrt(psi)) / sqrt(psi - d^2)); the MDE is the d where that is
    80%. (The variance at the observed discordance instead, as before issue 17, made the power
    at the quoted MDE 63-72%.) With no discordance at all, the planning value
    p_imp = p0 (1 - p0) (independent pairs, baseline rate p0 floored at 1/n).
    """
    _check_alpha(alpha)
    if n < 1:
        raise ValueError("n must be >= 1")
    if b + c == 0:
        p0 = min(max(baseline_rate, 1.0 / n), 1.0 - 1.0 / n) if n > 1 else 0.5
        p_imp = p0 * (1.0 - p0)
    else:
        p_imp = c / n
    z_a, z_b = _z(alpha), float(dist.norm_ppf(POWER))
    root_n = math.sqrt(n)

    def shortfall(d: float) -> float:  # > 0 while the power at d is below 80%
        psi = 2.0 * p_imp + d
        return z_a * math.sqrt(psi) + z_b * math.sqrt(max(psi - d * d, 0.0)) - root_n * d

    top = 1.0 - 2.0 * p_imp  # p_reg + p_imp <= 1
    if top <= 0.0 or shortfall(top) > 0.0:  # no regression this run can detect at 80%
        return 1.0
    return dist.brentq(shortfall, 1e-12, top, xtol=1e-12)


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
    if kind == "throughput_floor":
        return f"{v:.1f} tokens/s"
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
    if bound is None and ev.n_canaries < 2:
        bound_txt = f"not enough data for a {_level(ev.alpha)} {side} bound"
    else:
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
               f"{_fmt_p(ev.p_regression_holm or 0.0)}), though its bound is inside the "
               "margin (fail_on_significant_regression: true)")
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
    """Assemble Evidence: verdict from the bounds, notes, the preliminary sentence. A bound that
    is not finite (one canary: no spread to measure) is None, and the sentence says "not enough
    data" instead of printing infinity."""
    ci_low, ci_high = _finite_or_none(ci_low), _finite_or_none(ci_high)
    mde = _finite_or_none(mde) if n_canaries >= 2 else None
    if n_canaries < 2 and (ci_low is None or ci_high is None):
        notes = [*notes, f"only {n_canaries} canary: not enough data to bound {guardrail}"]
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


def mean_against_limit(x: np.ndarray, *, guardrail: str, kind: str, test: str, limit: float,
                       worse: Literal["higher", "lower"], alpha: float, samples: int,
                       nonnegative: bool = False) -> Evidence:
    """A per-canary mean against an absolute limit with one-sided t bounds (n >= 30): the
    cost budget and the tokens/s floor. `nonnegative`: the quantity cannot go below 0, nor
    its lower bound."""
    n = x.size
    ts = _t_summary(x, alpha)
    ok = n >= MIN_CANARIES_T
    notes = [None if ok else f"only {n} canaries (need {MIN_CANARIES_T} for the t bound)"]
    return _build(
        guardrail=guardrail, kind=kind, test=test, estimate=ts.mean, baseline=None,
        effect=ts.mean, effect_kind="absolute",
        ci_low=max(0.0, ts.low) if nonnegative else ts.low, ci_high=ts.high,
        margin=float(limit), worse=worse,
        p_value=_t_p(x, limit, "less" if worse == "higher" else "greater"), p_regression=None,
        n_canaries=n, n_samples=samples, discordant=None, mde=mde_difference(ts.se, alpha),
        alpha=alpha, minimum_met=ok, notes=notes)
