"""evalgate.stats: known answers from the literature, scipy cross-checks, independent
re-derivations, and small seeded simulations of the gate's error rates and power."""

from __future__ import annotations

import math
import re
from dataclasses import replace

import numpy as np
import pytest
from scipy import optimize, special, stats

from evalgate.gate.verdicts import overall_verdict
from evalgate.stats import (
    Evidence,
    clopper_pearson_bounds,
    compare_cost,
    compare_latency_gm,
    compare_p95,
    compare_rate,
    compare_score,
    cost_budget,
    fieller_ratio_bounds,
    finalize,
    harrell_davis,
    harrell_davis_counts,
    harrell_davis_rows,
    holm_adjust,
    mcnemar_regression_p,
    p95_slo,
    p95_slo_test,
    rate_cap,
    ratio_model_bounds,
    resampling,
    tango_ci,
    tango_statistic,
    wilson_bounds,
)

ALPHA = 0.05
Z_ALPHA = stats.norm.isf(ALPHA)
MDE_FACTOR = stats.norm.isf(ALPHA) + stats.norm.ppf(0.80)


def mc_tolerance(p: float, runs: int, k: float = 3.0) -> float:
    """k Monte-Carlo standard errors of a proportion estimated from `runs` runs."""
    return k * math.sqrt(p * (1 - p) / runs)


def paired_binary(b: int, c: int, n: int, both: int = 0, worse: str = "higher"
                  ) -> tuple[np.ndarray, np.ndarray]:
    """0/1 arrays (cand, base) with b candidate-only 'bad' canaries and c baseline-only ones."""
    bad = 1.0 if worse == "higher" else 0.0
    cand = np.full(n, 1.0 - bad)
    base = np.full(n, 1.0 - bad)
    cand[:b] = bad
    base[b:b + c] = bad
    cand[b + c:b + c + both] = bad
    base[b + c:b + c + both] = bad
    return cand, base


# ------------------------------------------------------------------------------------------
# Binomial bounds: Newcombe (1998, Stat Med 17:857-872, Table II) 95% intervals
# ------------------------------------------------------------------------------------------

NEWCOMBE_1998 = [
    # x, n, Wilson score (method 3), Clopper-Pearson "exact" (method 5)
    (81, 263, (0.2553, 0.3662), (0.2527, 0.3676)),
    (15, 148, (0.0624, 0.1605), (0.0578, 0.1617)),
    (0, 20, (0.0, 0.1611), (0.0, 0.1684)),
    (1, 29, (0.0061, 0.1718), (0.0009, 0.1776)),
]


@pytest.mark.parametrize(("x", "n", "wilson", "exact"), NEWCOMBE_1998)
def test_wilson_and_clopper_pearson_match_newcombe_1998(x: int, n: int, wilson: tuple,
                                                        exact: tuple) -> None:
    # A two-sided 95% interval is two one-sided 97.5% bounds: alpha = 0.025.
    assert wilson_bounds(x, n, 0.025) == pytest.approx(wilson, abs=5e-5)
    assert clopper_pearson_bounds(x, n, 0.025) == pytest.approx(exact, abs=5e-5)


def test_binomial_bounds_closed_forms_at_zero_successes() -> None:
    n, z = 20, stats.norm.isf(0.025)
    assert wilson_bounds(0, n, 0.025)[1] == pytest.approx(z * z / (n + z * z), rel=1e-12)
    assert clopper_pearson_bounds(0, n, 0.025)[1] == pytest.approx(1 - 0.025 ** (1 / n),
                                                                   rel=1e-12)
    assert clopper_pearson_bounds(n, n, 0.025)[0] == pytest.approx(0.025 ** (1 / n), rel=1e-12)


def test_binomial_bounds_agree_with_scipy_binomtest() -> None:
    rng = np.random.default_rng(11)
    for _ in range(40):
        n = int(rng.integers(1, 400))
        x = int(rng.integers(0, n + 1))
        alpha = float(rng.choice([0.01, 0.025, 0.05, 0.1]))
        res = stats.binomtest(x, n)
        exact = res.proportion_ci(method="exact", confidence_level=1 - 2 * alpha)
        wilson = res.proportion_ci(method="wilson", confidence_level=1 - 2 * alpha)
        assert clopper_pearson_bounds(x, n, alpha) == pytest.approx(
            (exact.low, exact.high), abs=1e-9)
        assert wilson_bounds(x, n, alpha) == pytest.approx((wilson.low, wilson.high), abs=1e-9)


def test_binomial_bounds_reject_impossible_counts() -> None:
    with pytest.raises(ValueError):
        wilson_bounds(5, 4, 0.05)
    with pytest.raises(ValueError):
        clopper_pearson_bounds(1, 10, 0.6)


# ------------------------------------------------------------------------------------------
# McNemar
# ------------------------------------------------------------------------------------------


def test_mcnemar_exact_and_mid_p_by_hand() -> None:
    # b = 9 regressions, c = 2 improvements: P(X >= 9 | X ~ Bin(11, 1/2)).
    tail = (math.comb(11, 9) + math.comb(11, 10) + math.comb(11, 11)) / 2 ** 11
    assert tail == pytest.approx(67 / 2048)
    assert mcnemar_regression_p(9, 2, mid_p=False) == pytest.approx(tail, rel=1e-12)
    assert mcnemar_regression_p(9, 2) == pytest.approx(tail - 0.5 * math.comb(11, 9) / 2 ** 11,
                                                       rel=1e-12)
    assert mcnemar_regression_p(0, 0) == 1.0
    # Improvements only: no evidence of regression at all.
    assert mcnemar_regression_p(0, 7, mid_p=False) == 1.0


def test_mcnemar_matches_binomtest() -> None:
    for b, c in [(3, 1), (12, 12), (30, 14), (0, 5), (25, 0)]:
        exact = stats.binomtest(b, b + c, 0.5, alternative="greater").pvalue
        assert mcnemar_regression_p(b, c, mid_p=False) == pytest.approx(exact, rel=1e-12)
        assert mcnemar_regression_p(b, c) < exact


# ------------------------------------------------------------------------------------------
# Tango score statistic and interval
# ------------------------------------------------------------------------------------------


def _score_statistic_numeric(b: int, c: int, n: int, delta: float) -> float:
    """Tango's statistic re-derived without the closed form: maximise the multinomial likelihood
    over p21 numerically under p12 = p21 + delta, then (b - c - n delta)/sqrt(n Var)."""
    a = n - b - c
    lo = max(0.0, -delta)
    hi = (1.0 - delta) / 2.0

    def nll(p21: float) -> float:
        p12 = p21 + delta
        return -(special.xlogy(b, p12) + special.xlogy(c, p21) + special.xlogy(a, 1 - p12 - p21))

    res = optimize.minimize_scalar(nll, bounds=(lo + 1e-13, hi - 1e-13), method="bounded",
                                   options={"xatol": 1e-13})
    p21 = res.x
    var = n * (2 * p21 + delta - delta * delta)
    return (b - c - n * delta) / math.sqrt(var)


def test_tango_reduces_to_mcnemar_z_agresti_example() -> None:
    # Agresti, Categorical Data Analysis (2nd ed. 2002, sec. 10.1): presidential approval of
    # 1600 people surveyed twice; 150 approve -> disapprove, 86 disapprove -> approve;
    # McNemar z^2 = 17.36.
    z = tango_statistic(150, 86, 1600, 0.0)
    assert z == pytest.approx(64 / math.sqrt(236), rel=1e-12)
    assert z * z == pytest.approx(17.36, abs=0.005)
    rng = np.random.default_rng(2)
    for _ in range(20):
        n = int(rng.integers(20, 500))
        b, c = (int(v) for v in rng.multinomial(n, [0.1, 0.07, 0.83])[:2])
        if b + c:
            assert tango_statistic(b, c, n, 0.0) == pytest.approx((b - c) / math.sqrt(b + c))


def test_tango_statistic_matches_numerical_restricted_mle() -> None:
    rng = np.random.default_rng(5)
    for _ in range(30):
        n = int(rng.integers(15, 400))
        b, c = (int(v) for v in rng.multinomial(n, [0.15, 0.1, 0.75])[:2])
        delta = float(rng.uniform(-0.3, 0.3))
        assert tango_statistic(b, c, n, delta) == pytest.approx(
            _score_statistic_numeric(b, c, n, delta), rel=1e-5, abs=1e-6)


def test_tango_ci_inverts_the_statistic_and_matches_numeric_inversion() -> None:
    z = stats.norm.isf(ALPHA)
    for b, c, n in [(12, 2, 50), (7, 13, 120), (30, 5, 200), (1, 0, 40)]:
        low, high = tango_ci(b, c, n, ALPHA)
        assert low < (b - c) / n < high
        assert tango_statistic(b, c, n, low) == pytest.approx(z, abs=1e-6)
        assert tango_statistic(b, c, n, high) == pytest.approx(-z, abs=1e-6)
        num_low = optimize.brentq(lambda d, t: _score_statistic_numeric(*t, d) - z,
                                  -0.99, (b - c) / n, args=((b, c, n),))
        num_high = optimize.brentq(lambda d, t: _score_statistic_numeric(*t, d) + z,
                                   (b - c) / n, 0.99, args=((b, c, n),))
        assert (low, high) == pytest.approx((num_low, num_high), abs=1e-5)


def test_tango_ci_symmetry_and_zero_discordance_closed_form() -> None:
    low, high = tango_ci(9, 9, 80, ALPHA)
    assert low == pytest.approx(-high, abs=1e-10)
    # b = c = 0: T(delta) = -sqrt(n delta / (1 - delta)), so the upper bound is z^2 / (n + z^2).
    n, z = 50, stats.norm.isf(0.025)
    assert tango_ci(0, 0, n, 0.025) == pytest.approx((-z * z / (n + z * z), z * z / (n + z * z)),
                                                     abs=1e-9)
    # Mirror image: swapping b and c negates the interval.
    a_low, a_high = tango_ci(14, 3, 90, ALPHA)
    m_low, m_high = tango_ci(3, 14, 90, ALPHA)
    assert (a_low, a_high) == pytest.approx((-m_high, -m_low), abs=1e-10)
    # All discordant the same way: the interval reaches the boundary.
    assert tango_ci(40, 0, 40, ALPHA)[1] == pytest.approx(1.0)


@pytest.mark.parametrize(("p12", "p21"), [(0.1, 0.05), (0.2, 0.2), (0.05, 0.05), (0.3, 0.1)])
def test_tango_ci_exact_coverage_is_near_nominal(p12: float, p21: float) -> None:
    """Coverage computed exactly by enumerating every (b, c) at n = 40: no Monte-Carlo error."""
    n = 40
    delta = p12 - p21
    b, c = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    keep = b + c <= n
    b, c = b[keep], c[keep]
    prob = stats.multinomial.pmf(np.stack([b, c, n - b - c], axis=1), n, [p12, p21, 1 - p12 - p21])
    bounds = np.array([tango_ci(int(x), int(y), n, ALPHA) for x, y in zip(b, c, strict=True)])
    lower_cov = float(prob[bounds[:, 0] <= delta].sum())
    upper_cov = float(prob[bounds[:, 1] >= delta].sum())
    assert abs(lower_cov - (1 - ALPHA)) < 0.025
    assert abs(upper_cov - (1 - ALPHA)) < 0.025


# ------------------------------------------------------------------------------------------
# Harrell-Davis
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 5, 37, 200, 1001])
@pytest.mark.parametrize("q", [0.1, 0.5, 0.95, 0.99])
def test_harrell_davis_matches_scipy_hdquantiles(n: int, q: float) -> None:
    x = np.random.default_rng(n).lognormal(6, 0.7, n)
    expected = float(stats.mstats.hdquantiles(x, prob=[q])[0])
    assert harrell_davis(x, q) == pytest.approx(expected, rel=1e-10)


def test_harrell_davis_of_one_value_is_that_value() -> None:
    # (scipy's hdquantiles returns a masked value for n = 1, so this one is checked directly)
    assert harrell_davis(np.array([812.0]), 0.95) == 812.0


def test_harrell_davis_rows_is_rowwise() -> None:
    rows = np.sort(np.random.default_rng(1).normal(size=(7, 60)), axis=1)
    expected = [harrell_davis(r, 0.95) for r in rows]
    assert harrell_davis_rows(rows, 0.95) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("n", [40, 3000])
def test_harrell_davis_counts_equals_sorting_the_resamples(n: int) -> None:
    rng = np.random.default_rng(n)
    x = np.round(rng.lognormal(6, 0.5, n))  # rounding creates ties
    idx = rng.integers(0, n, size=(25, n))
    counts = np.stack([np.bincount(row, minlength=n) for row in idx])
    expected = harrell_davis_rows(np.sort(x[idx], axis=1), 0.95)
    assert harrell_davis_counts(x, counts, 0.95) == pytest.approx(expected, rel=1e-12)


def test_harrell_davis_counts_degenerate_resample_uses_the_full_path() -> None:
    # Every draw on the smallest value: far outside the rank window the fast path assumes.
    n = 3000
    x = np.random.default_rng(3).lognormal(6, 0.5, n)
    counts = np.zeros((2, n), dtype=np.int64)
    counts[0, np.argmin(x)] = n
    counts[1, np.argmax(x)] = n
    assert harrell_davis_counts(x, counts, 0.95) == pytest.approx([x.min(), x.max()], rel=1e-12)


# ------------------------------------------------------------------------------------------
# p95 against an SLO (order statistics)
# ------------------------------------------------------------------------------------------


def test_p95_slo_needs_59_canaries_at_alpha_005() -> None:
    assert 0.95 ** 59 < 0.05 < 0.95 ** 58
    fast = np.linspace(100, 200, 58)
    small = p95_slo_test(fast, slo=1000, alpha=0.05)
    assert small.n_min == 59
    assert small.verdict == "INCONCLUSIVE"
    assert small.ci_high is None  # no order statistic is a 95% upper bound yet
    big = p95_slo_test(np.linspace(100, 200, 59), slo=1000, alpha=0.05)
    assert big.verdict == "PASS"
    assert big.ci_high == pytest.approx(200.0)
    assert big.p_below == pytest.approx(stats.quantile_test(
        np.linspace(100, 200, 59), q=1000, p=0.95, alternative="less").pvalue)

    ev = p95_slo(fast, guardrail="latency_p95", slo_ms=1000, alpha=0.05)
    assert ev.verdict == "INCONCLUSIVE"
    assert ev.note is not None and "59" in ev.note


def test_p95_slo_fails_when_clearly_above_and_is_inconclusive_near() -> None:
    rng = np.random.default_rng(4)
    x = rng.lognormal(np.log(800), 0.4, 400)
    true_p95 = 800 * math.exp(0.4 * stats.norm.ppf(0.95))
    assert p95_slo(x, guardrail="p95", slo_ms=0.6 * true_p95, alpha=ALPHA).verdict == "FAIL"
    assert p95_slo(x, guardrail="p95", slo_ms=1.6 * true_p95, alpha=ALPHA).verdict == "PASS"
    near = p95_slo(x, guardrail="p95", slo_ms=true_p95, alpha=ALPHA)
    assert near.verdict == "INCONCLUSIVE"
    assert near.ci_low is not None and near.ci_high is not None
    assert near.ci_low < true_p95 < near.ci_high


# ------------------------------------------------------------------------------------------
# compare_rate
# ------------------------------------------------------------------------------------------


def test_compare_rate_binary_uses_tango_and_mcnemar() -> None:
    n, b, c = 200, 16, 6
    cand, base = paired_binary(b, c, n, both=4)
    ev = compare_rate(cand, base, guardrail="hallucination_rate", margin=0.05, alpha=ALPHA,
                      samples=1)
    assert ev.discordant == (b, c)
    assert ev.effect == pytest.approx((b - c) / n)
    # continuity-corrected since issue 17 (the uncorrected bound is liberal with few pairs)
    assert (ev.ci_low, ev.ci_high) == pytest.approx(tango_ci(b, c, n, ALPHA, 0.5))
    assert ev.p_value == pytest.approx(stats.norm.cdf(tango_statistic(b, c, n, 0.05, 0.5)))
    assert ev.p_regression == pytest.approx(mcnemar_regression_p(b, c))
    assert ev.min_passable_margin == ev.ci_high
    assert ev.mde == pytest.approx(_mcnemar_mde(c / n, n), rel=1e-6)
    # upper bound above the margin, lower bound below it
    assert ev.ci_low < 0.05 < ev.ci_high
    assert ev.verdict == "INCONCLUSIVE"
    assert "95% upper bound" in ev.sentence
    assert f"{100 * (4 + b) / n:.1f}%" in ev.sentence
    assert "+5.0 points" in ev.sentence


def test_compare_rate_binary_pass_and_fail_from_the_bounds() -> None:
    cand, base = paired_binary(6, 6, 400, both=10)
    assert compare_rate(cand, base, guardrail="h", margin=0.05, alpha=ALPHA,
                        samples=1).verdict == "PASS"
    cand, base = paired_binary(60, 5, 200)
    ev = compare_rate(cand, base, guardrail="h", margin=0.05, alpha=ALPHA, samples=1)
    assert ev.ci_low > 0.05
    assert ev.verdict == "FAIL"


def test_compare_rate_binary_few_discordant_pairs_decide_by_the_corrected_bounds() -> None:
    # Issue 17 removed the minimum of 10 discordant pairs (it made the verdict non-monotone).
    cand, base = paired_binary(2, 1, 1000)
    ev = compare_rate(cand, base, guardrail="h", margin=0.05, alpha=ALPHA, samples=1)
    assert ev.ci_high == pytest.approx(tango_ci(2, 1, 1000, ALPHA, 0.5)[1])
    assert ev.ci_high < 0.05
    assert ev.verdict == "PASS"
    assert ev.note is None


def test_compare_rate_binary_pass_rate_worse_lower() -> None:
    # pass rate: b canaries the baseline passed and the candidate failed.
    n, b, c = 300, 30, 8
    cand, base = paired_binary(b, c, n, worse="lower")
    ev = compare_rate(cand, base, guardrail="pass_rate", margin=0.03, alpha=ALPHA, samples=1,
                      worse="lower")
    low, high = tango_ci(b, c, n, ALPHA, 0.5)
    assert ev.discordant == (b, c)
    assert ev.effect == pytest.approx(-(b - c) / n)
    assert (ev.ci_low, ev.ci_high) == pytest.approx((-high, -low))
    assert ev.min_passable_margin == pytest.approx(high)
    assert ev.p_regression == pytest.approx(mcnemar_regression_p(b, c))
    assert ev.verdict == ("FAIL" if -low < -0.03 else "INCONCLUSIVE")
    # A FAIL beyond the margin quotes the bound that proves it: even the best case (upper bound
    # on the change in pass rate) is a drop larger than the tolerance.
    assert -low < -0.03 and f"95% upper bound {-low * 100:+.1f} points" in ev.sentence


def test_sentence_quotes_the_worse_side_bound_when_not_failing_beyond_margin() -> None:
    n, b, c = 300, 9, 6
    cand, base = paired_binary(b, c, n, worse="higher")
    ev = compare_rate(cand, base, guardrail="h", margin=0.05, alpha=ALPHA, samples=1)
    assert ev.verdict != "FAIL"
    assert f"95% upper bound {tango_ci(b, c, n, ALPHA, 0.5)[1] * 100:+.1f} points" in ev.sentence


def test_compare_rate_clustered_uses_paired_t() -> None:
    rng = np.random.default_rng(8)
    q = rng.beta(8, 2, 120)
    base = rng.binomial(5, q) / 5
    cand = rng.binomial(5, np.clip(q - 0.04, 0, 1)) / 5
    ev = compare_rate(cand, base, guardrail="pass_rate", margin=0.05, alpha=ALPHA, samples=5,
                      worse="lower")
    assert ev.n_samples == 5 and ev.discordant is None
    assert ev.p_regression == pytest.approx(
        stats.ttest_rel(cand, base, alternative="less").pvalue)
    assert ev.p_value == pytest.approx(
        stats.ttest_rel(cand, base - 0.05, alternative="greater").pvalue)
    ci = stats.ttest_rel(cand, base).confidence_interval(1 - 2 * ALPHA)
    assert (ev.ci_low, ev.ci_high) == pytest.approx((ci.low, ci.high))
    small = compare_rate(cand[:20], base[:20], guardrail="pass_rate", margin=0.5, alpha=ALPHA,
                         samples=5, worse="lower")
    assert small.verdict == "INCONCLUSIVE"


def test_compare_rate_validates_inputs() -> None:
    with pytest.raises(ValueError):
        compare_rate(np.array([0.5, 1.0]), np.array([0.0, 1.0]), guardrail="h", margin=0.05,
                     alpha=ALPHA, samples=1)
    with pytest.raises(ValueError):
        compare_rate(np.ones(3), np.ones(4), guardrail="h", margin=0.05, alpha=ALPHA, samples=1)


def _mcnemar_mde(p_imp: float, n: int) -> float:
    """The d where McNemar's z test has 80% power, variance under the alternative (Connor 1987),
    with scipy: improvements at p_imp, regressions at p_imp + d."""
    def power(d: float) -> float:
        psi = 2 * p_imp + d
        return stats.norm.cdf((math.sqrt(n) * d - stats.norm.isf(ALPHA) * math.sqrt(psi))
                              / math.sqrt(psi - d * d))
    return optimize.brentq(lambda d: power(d) - 0.80, 1e-9, 1 - 2 * p_imp)


def test_mde_note_when_the_margin_is_below_what_the_run_can_detect() -> None:
    cand, base = paired_binary(0, 0, 80, both=4)  # 5% baseline, no discordance at all
    ev = compare_rate(cand, base, guardrail="h", margin=0.02, alpha=ALPHA, samples=1)
    expected = _mcnemar_mde(0.05 * 0.95, 80)  # planning value: independent pairs
    assert ev.mde == pytest.approx(expected)
    assert ev.note is not None
    assert "with 80 canaries at a 5.0% baseline" in ev.note
    assert f">= {100 * expected:.1f} points" in ev.note
    assert "add canaries or samples" in ev.note
    wide = compare_rate(cand, base, guardrail="h", margin=0.2, alpha=ALPHA, samples=1)
    assert wide.note is None or "can only detect" not in wide.note


# ------------------------------------------------------------------------------------------
# rate_cap, cost_budget, compare_score, latency gm
# ------------------------------------------------------------------------------------------


def test_rate_cap_exact_verdicts() -> None:
    # Clopper-Pearson since issue 17 (Wilson's one-sided bound was liberal at the cap)
    zeros = np.zeros(300)
    ev = rate_cap(zeros, guardrail="h", cap=0.05, alpha=ALPHA, samples=1)
    assert ev.ci_high == pytest.approx(1 - ALPHA ** (1 / 300))
    assert ev.verdict == "PASS" and ev.p_regression is None
    many = np.r_[np.ones(30), np.zeros(70)]
    assert rate_cap(many, guardrail="h", cap=0.1, alpha=ALPHA, samples=1).verdict == "FAIL"
    edge = np.r_[np.ones(5), np.zeros(95)]
    assert rate_cap(edge, guardrail="h", cap=0.05, alpha=ALPHA, samples=1).verdict == \
        "INCONCLUSIVE"
    # a floor on a pass rate mirrors it
    passes = np.r_[np.ones(95), np.zeros(5)]
    floor = rate_cap(passes, guardrail="pass", cap=0.8, alpha=ALPHA, samples=1, worse="lower")
    assert floor.ci_low == pytest.approx(stats.beta.ppf(ALPHA, 95, 6))
    assert floor.verdict == "PASS"
    assert rate_cap(passes, guardrail="pass", cap=0.99, alpha=ALPHA, samples=1,
                    worse="lower").verdict == "FAIL"


def test_rate_cap_of_zero_can_fail_but_never_pass() -> None:
    clean = rate_cap(np.zeros(500), guardrail="h", cap=0.0, alpha=ALPHA, samples=1)
    assert clean.verdict == "INCONCLUSIVE" and clean.p_value == 1.0
    assert clean.note is not None and "never" in clean.note
    dirty = rate_cap(np.r_[np.ones(3), np.zeros(497)], guardrail="h", cap=0.0, alpha=ALPHA,
                     samples=1)
    assert dirty.verdict == "FAIL"


def test_rate_cap_exact_p_agrees_with_the_clopper_pearson_bound() -> None:
    """The Clopper-Pearson bound is the inversion of the exact binomial test: PASS exactly when
    p < alpha, and p is scipy's binomtest."""
    for x in range(0, 41):
        ev = rate_cap(np.r_[np.ones(x), np.zeros(400 - x)], guardrail="h", cap=0.06,
                      alpha=ALPHA, samples=1)
        assert (ev.p_value < ALPHA) == (ev.verdict == "PASS")
        assert ev.p_value == pytest.approx(
            stats.binomtest(x, 400, 0.06, alternative="less").pvalue, rel=1e-9)


def test_rate_cap_clustered_t_and_minimum() -> None:
    rng = np.random.default_rng(9)
    x = rng.binomial(4, 0.03, 100) / 4
    ev = rate_cap(x, guardrail="h", cap=0.1, alpha=ALPHA, samples=4)
    t_high = x.mean() + stats.t.isf(ALPHA, 99) * stats.sem(x)
    total = float(x.sum())
    cp_high = stats.beta.isf(ALPHA, total + 1, 100 - total)
    assert ev.ci_high == pytest.approx(max(t_high, cp_high))
    assert ev.verdict == "PASS"
    # Below 30 canaries (issue 17): exact bounds on the canaries with any / every draw bad,
    # instead of INCONCLUSIVE whatever the data.
    small = rate_cap(x[:29], guardrail="h", cap=0.5, alpha=ALPHA, samples=4)
    assert small.ci_high == pytest.approx(stats.beta.isf(ALPHA, np.sum(x[:29] > 0) + 1,
                                                         29 - np.sum(x[:29] > 0)))
    assert small.verdict == "PASS"


def test_rate_cap_clustered_never_collapses_on_zero_variance() -> None:
    """No event at all in 64 canaries x 2 samples is not proof of a 0% rate."""
    ev = rate_cap(np.zeros(64), guardrail="err", cap=0.02, alpha=ALPHA, samples=2)
    assert ev.ci_high == pytest.approx(1 - ALPHA ** (1 / 64))
    assert ev.ci_high > 0.03
    assert ev.verdict == "INCONCLUSIVE"


def test_cost_budget_t_bound() -> None:
    x = np.random.default_rng(10).gamma(20, 0.002 / 20, 200)
    ev = cost_budget(x, guardrail="cost", budget=0.0025, alpha=ALPHA)
    assert ev.p_value == pytest.approx(stats.ttest_1samp(x, 0.0025, alternative="less").pvalue)
    assert ev.verdict == "PASS"
    assert "$0.00250" in ev.sentence
    assert cost_budget(x, guardrail="cost", budget=0.0015, alpha=ALPHA).verdict == "FAIL"


def test_compare_score_drop_beyond_margin_fails() -> None:
    rng = np.random.default_rng(12)
    base = rng.uniform(0.5, 0.9, 150)
    cand = np.clip(base - 0.1 + rng.normal(0, 0.02, 150), 0, 1)
    ev = compare_score(cand, base, guardrail="rubric", margin=0.05, alpha=ALPHA)
    assert ev.worse == "lower" and ev.ci_high < -0.05
    assert ev.verdict == "FAIL"
    same = compare_score(base, base, guardrail="rubric", margin=0.05, alpha=ALPHA)
    assert same.verdict == "PASS" and same.p_regression == 1.0


def test_compare_latency_gm_is_a_t_on_log_ratios() -> None:
    rng = np.random.default_rng(13)
    base = rng.lognormal(np.log(800), 0.5, 150)
    cand = base * rng.lognormal(np.log(1.05), 0.2, 150)
    ev = compare_latency_gm(cand, base, guardrail="latency", margin_ratio=1.2, alpha=ALPHA)
    logs = np.log(cand / base)
    assert ev.effect == pytest.approx(stats.gmean(cand) / stats.gmean(base))
    ci = stats.ttest_1samp(logs, 0).confidence_interval(1 - 2 * ALPHA)
    assert (ev.ci_low, ev.ci_high) == pytest.approx((math.exp(ci.low), math.exp(ci.high)))
    assert ev.p_value == pytest.approx(
        stats.ttest_1samp(logs, math.log(1.2), alternative="less").pvalue)
    assert ev.p_regression == pytest.approx(
        stats.ttest_1samp(logs, 0, alternative="greater").pvalue)
    assert ev.verdict == "PASS"
    assert "x1.20" in ev.sentence


# ------------------------------------------------------------------------------------------
# compare_p95
# ------------------------------------------------------------------------------------------


def test_compare_p95_is_seeded_and_brackets_the_true_ratio() -> None:
    rng = np.random.default_rng(14)
    z1 = rng.normal(size=2000)
    z2 = 0.6 * z1 + 0.8 * rng.normal(size=2000)
    base, cand = np.exp(6.5 + 0.5 * z1), np.exp(6.5 + math.log(1.1) + 0.5 * z2)
    one = compare_p95(cand, base, guardrail="p95", margin_ratio=1.25, alpha=ALPHA,
                      resamples=999, seed=3)
    two = compare_p95(cand, base, guardrail="p95", margin_ratio=1.25, alpha=ALPHA,
                      resamples=999, seed=3)
    assert one == two
    assert one.ci_low < 1.1 < one.ci_high
    assert one.effect == pytest.approx(harrell_davis(cand, 0.95) / harrell_davis(base, 0.95))
    # Inside the x1.25 margin yet a clear 10% slowdown: PASS on the bounds, FAIL after Holm.
    assert one.ci_high < 1.25 and one.verdict == "PASS"
    assert one.p_regression < ALPHA
    assert finalize([one], ALPHA)[0].verdict == "PASS"  # three zones, the default since 17
    assert finalize([one], ALPHA, regression_fails=True)[0].verdict == "FAIL"
    assert "ms" in one.sentence and "x1.25" in one.sentence


def test_compare_p95_threads_do_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(15)
    base = rng.lognormal(6, 0.5, 1000)
    cand = base * rng.lognormal(0, 0.2, 1000)
    threaded = compare_p95(cand, base, guardrail="p95", margin_ratio=1.25, alpha=ALPHA,
                           resamples=5000, seed=1)
    monkeypatch.setattr(resampling, "_THREAD_MIN_CELLS", 10 ** 12)
    serial = compare_p95(cand, base, guardrail="p95", margin_ratio=1.25, alpha=ALPHA,
                         resamples=5000, seed=1)
    assert threaded == serial


def test_compare_p95_minimum_n() -> None:
    x = np.linspace(100, 300, 29)
    ev = compare_p95(x * 2, x, guardrail="p95", margin_ratio=1.25, alpha=ALPHA, resamples=199)
    assert ev.verdict == "INCONCLUSIVE" and not ev.method_minimum_met


# ------------------------------------------------------------------------------------------
# compare_cost: Fieller by brentq vs the closed-form quadratic, vs BCa
# ------------------------------------------------------------------------------------------


def _fieller_closed_form(c: np.ndarray, b: np.ndarray, alpha: float) -> tuple[float, float]:
    n = c.size
    t2 = stats.t.isf(alpha, n - 1) ** 2
    cov = np.cov(c, b, ddof=1)
    qa = b.mean() ** 2 - t2 * cov[1, 1] / n
    qb = -2 * (c.mean() * b.mean() - t2 * cov[0, 1] / n)
    qc = c.mean() ** 2 - t2 * cov[0, 0] / n
    root = math.sqrt(qb * qb - 4 * qa * qc)
    return (-qb - root) / (2 * qa), (-qb + root) / (2 * qa)


def test_cost_ratio_ci_brackets_the_truth_and_agrees_with_bca() -> None:
    rng = np.random.default_rng(16)
    n, true_ratio = 600, 1.05
    scale = np.exp(rng.normal(np.log(0.002), 0.5, n))
    base = scale * rng.gamma(20, 1 / 20, n)
    cand = true_ratio * scale * rng.gamma(20, 1 / 20, n)
    ev = compare_cost(cand, base, guardrail="cost", margin_ratio=1.10, alpha=ALPHA, seed=1)
    assert ev.ci_low < true_ratio < ev.ci_high
    fieller = _fieller_closed_form(cand, base, ALPHA)
    assert fieller_ratio_bounds(cand, base, ALPHA) == pytest.approx(fieller, rel=1e-9)
    # issue 17: the reported bounds are the wider of Fieller's and the ratio model's, each side
    model = ratio_model_bounds(cand, base, ALPHA)
    assert model is not None
    assert ev.ci_low == pytest.approx(min(fieller[0], model[0]), rel=1e-9)
    assert ev.ci_high == pytest.approx(max(fieller[1], model[1]), rel=1e-9)
    assert ev.p_value == pytest.approx(max(
        stats.ttest_rel(cand, 1.10 * base, alternative="less").pvalue,
        stats.t.cdf((cand.mean() / base.mean() - 1.10) / model[2], n - 1)))
    assert ev.p_regression == pytest.approx(max(
        stats.ttest_rel(cand, base, alternative="greater").pvalue,
        stats.t.sf((cand.mean() / base.mean() - 1.0) / model[2], n - 1)))
    assert ev.note is not None and "BCa bootstrap" in ev.note and "DISAGREES" not in ev.note
    bca = stats.bootstrap((cand, base), lambda x, y, axis=-1: x.mean(axis) / y.mean(axis),
                          paired=True, vectorized=True, method="BCa",
                          confidence_level=1 - 2 * ALPHA, n_resamples=9999,
                          rng=np.random.default_rng(1)).confidence_interval
    shown = re.search(r"BCa bootstrap \(.*?\): \[([0-9.]+), ([0-9.]+)\]", ev.note)
    assert shown is not None  # our vectorised BCa vs scipy's, up to Monte Carlo error
    assert float(shown.group(1)) == pytest.approx(bca.low, abs=0.003)
    assert float(shown.group(2)) == pytest.approx(bca.high, abs=0.003)
    width = ev.ci_high - ev.ci_low
    assert abs(bca.low - ev.ci_low) < 0.15 * width
    assert abs(bca.high - ev.ci_high) < 0.15 * width


def test_fieller_unbounded_when_baseline_mean_is_not_clearly_positive() -> None:
    # One costly baseline canary among 40 free ones: t of the baseline mean = 1.0 < t_0.95.
    base = np.r_[1.0, np.zeros(39)]
    cand = np.random.default_rng(17).uniform(0.5, 1.5, 40)
    assert base.mean() / stats.sem(base) < stats.t.isf(ALPHA, 39)
    assert fieller_ratio_bounds(cand, base, ALPHA) == (None, None)
    ev = compare_cost(cand, base, guardrail="cost", margin_ratio=1.1, alpha=ALPHA,
                      bca_resamples=199)
    assert ev.verdict == "INCONCLUSIVE"
    assert ev.note is not None and "unbounded" in ev.note
    assert "unbounded" in ev.sentence


def test_fieller_coverage_small_simulation() -> None:
    rng = np.random.default_rng(18)
    runs, hits = 300, 0
    for _ in range(runs):
        scale = rng.lognormal(0, 0.6, 60)
        base = scale * rng.gamma(5, 0.2, 60)
        cand = 1.2 * scale * rng.gamma(5, 0.2, 60)
        low, high = fieller_ratio_bounds(cand, base, ALPHA)
        hits += low is not None and high is not None and low <= 1.2 <= high
    assert abs(hits / runs - (1 - 2 * ALPHA)) < mc_tolerance(1 - 2 * ALPHA, runs)


# ------------------------------------------------------------------------------------------
# Holm, finalize, overall
# ------------------------------------------------------------------------------------------


def test_holm_by_hand() -> None:
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 -> monotone 0.06
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjust([0.9, 0.8]) == pytest.approx([1.0, 1.0])
    assert holm_adjust([]).size == 0


def _evidence(verdict: str, p_reg: float | None, minimum: bool = True) -> Evidence:
    cand, base = paired_binary(12, 10, 400)
    ev = compare_rate(cand, base, guardrail="g", margin=0.05, alpha=ALPHA, samples=1)
    return replace(ev, verdict=verdict, p_regression=p_reg, method_minimum_met=minimum)


def test_finalize_fails_a_holm_significant_regression_even_inside_the_margin() -> None:
    # A small but significant regression: 40 regressions vs 12 improvements on 2000 canaries.
    cand, base = paired_binary(40, 12, 2000)
    ev = compare_rate(cand, base, guardrail="h", margin=0.05, alpha=ALPHA, samples=1)
    assert ev.verdict == "PASS" and ev.p_regression < ALPHA / 3
    quiet = _evidence("PASS", 0.5)
    # opt-in since issue 17 (the default is the three-zone reading, see test_stats_levels.py)
    final = finalize([ev, quiet, quiet], ALPHA, regression_fails=True)
    assert final[0].p_regression_holm == pytest.approx(3 * ev.p_regression)
    assert final[0].verdict == "FAIL"
    assert "Holm" in final[0].sentence
    assert "fail_on_significant_regression: true" in final[0].sentence
    assert [f.verdict for f in final[1:]] == ["PASS", "PASS"]
    assert overall_verdict([f.verdict for f in final]) == "FAIL"


def test_finalize_respects_method_minimums_and_absolute_caps() -> None:
    below_minimum = _evidence("INCONCLUSIVE", 0.001, minimum=False)
    cap = rate_cap(np.zeros(300), guardrail="cap", cap=0.05, alpha=ALPHA, samples=1)
    final = finalize([below_minimum, cap], ALPHA)
    assert final[0].verdict == "INCONCLUSIVE"
    assert final[0].p_regression_holm == pytest.approx(0.001)  # the cap has no p_regression
    assert final[0].note is not None and "method minimum" in final[0].note
    assert final[1].p_regression_holm is None and final[1].verdict == "PASS"
    assert overall_verdict([f.verdict for f in final]) == "INCONCLUSIVE"


# ------------------------------------------------------------------------------------------
# Simulation: A/A false FAIL of the whole gate, and power vs the MDE
# ------------------------------------------------------------------------------------------


def _aa_run(seed: int, n: int = 200) -> list[Evidence]:
    """One A/A run: candidate and baseline drawn from the same per-canary distributions."""
    rng = np.random.default_rng(seed)
    p = rng.beta(0.5, 9.5, n)  # heterogeneous hallucination risk, mean 5%
    hb = (rng.random(n) < p).astype(float)
    hc = (rng.random(n) < p).astype(float)
    q = rng.beta(8, 2, n)  # pass probability, K = 3 samples per canary
    pb, pc = rng.binomial(3, q) / 3, rng.binomial(3, q) / 3
    mu = rng.normal(math.log(800), 0.4, n)
    lb, lc = np.exp(mu + 0.3 * rng.normal(size=n)), np.exp(mu + 0.3 * rng.normal(size=n))
    scale = np.exp(rng.normal(math.log(0.002), 0.5, n))
    cb, cc = scale * rng.gamma(20, 1 / 20, n), scale * rng.gamma(20, 1 / 20, n)
    evidences = [
        compare_rate(hc, hb, guardrail="hallucination_rate", margin=0.05, alpha=ALPHA,
                     samples=1),
        compare_rate(pc, pb, guardrail="pass_rate", margin=0.05, alpha=ALPHA, samples=3,
                     worse="lower"),
        compare_p95(lc, lb, guardrail="latency_p95", margin_ratio=1.25, alpha=ALPHA,
                    resamples=999, seed=seed),
        compare_latency_gm(lc, lb, guardrail="latency_gm", margin_ratio=1.2, alpha=ALPHA),
        compare_cost(cc, cb, guardrail="cost", margin_ratio=1.1, alpha=ALPHA, seed=seed,
                     bca_resamples=199),
    ]
    return finalize(evidences, ALPHA)


AA_RUNS = 200


@pytest.fixture(scope="module")
def aa_results() -> list[list[Evidence]]:
    return [_aa_run(seed) for seed in range(AA_RUNS)]


def _inside_margin(ev: Evidence) -> bool:
    if ev.worse == "higher":
        return ev.ci_high is not None and ev.ci_high < ev.margin
    limit = -ev.margin if ev.effect_kind == "difference" else ev.margin
    return ev.ci_low is not None and ev.ci_low > limit


def _regressed(ev: Evidence) -> bool:
    null = 0.0 if ev.effect_kind == "difference" else 1.0
    if ev.worse == "higher":
        return ev.ci_low is not None and ev.ci_low > null
    return ev.ci_high is not None and ev.ci_high < null


def test_bounds_and_p_values_tell_the_same_story(aa_results: list[list[Evidence]]) -> None:
    """Each interval is the inversion of its test: the worse-side bound is inside the margin
    exactly when the non-inferiority p < alpha, and the better-side bound excludes "no change"
    exactly when the regression p < alpha (percentile bootstrap: up to resampling granularity;
    the mid-p McNemar is not the Tango score test, so only the first holds for binary rates)."""
    for k in range(len(aa_results[0])):
        evs = [r[k] for r in aa_results]
        agree_pass = np.mean([_inside_margin(ev) == (ev.p_value < ALPHA) for ev in evs])
        agree_reg = np.mean([_regressed(ev) == (ev.p_regression < ALPHA) for ev in evs])
        exact = evs[0].kind != "p95_ratio"
        assert agree_pass >= (1.0 if exact else 0.97), evs[0].guardrail
        if evs[0].discordant is None:
            assert agree_reg >= (1.0 if exact else 0.97), evs[0].guardrail


def test_aa_false_fail_rate_of_the_gate_is_at_most_alpha(
        aa_results: list[list[Evidence]]) -> None:
    runs = AA_RUNS
    results = aa_results
    false_fail = np.mean([overall_verdict([e.verdict for e in r]) == "FAIL" for r in results])
    assert false_fail <= ALPHA + mc_tolerance(ALPHA, runs)
    # Without Holm the five one-sided tests would false-FAIL far more often than alpha:
    raw_any = np.mean([any(ev.p_regression < ALPHA for ev in r) for r in results])
    assert raw_any > false_fail
    # The gate must not be vacuous: most A/A runs pass every guardrail or are inconclusive.
    assert np.mean([overall_verdict([e.verdict for e in r]) != "FAIL" for r in results]) > 0.85


def _binary_run(seed: int, n: int, p_both: float, p_improve: float, delta: float) -> Evidence:
    rng = np.random.default_rng(seed)
    probs = [p_both, p_improve, p_improve + delta, 1 - p_both - 2 * p_improve - delta]
    cell = rng.choice(4, size=n, p=probs)  # both, baseline-only, candidate-only, neither
    base = np.isin(cell, [0, 1]).astype(float)
    cand = np.isin(cell, [0, 2]).astype(float)
    return compare_rate(cand, base, guardrail="h", margin=0.05, alpha=ALPHA, samples=1)


def test_power_on_a_hallucination_regression_matches_the_mde() -> None:
    """Baseline 5% (2% both + 3% baseline-only), n = 200: at a true regression equal to the MDE
    computed from the true cell probabilities the power is 80%, and at +10 points it is what the
    same normal approximation predicts."""
    n, p_both, p_improve, runs = 200, 0.02, 0.03, 200

    def se(delta: float) -> float:
        return math.sqrt(2 * p_improve + delta - delta * delta) / math.sqrt(n)

    true_mde = optimize.brentq(lambda d: d - MDE_FACTOR * se(d), 1e-6, 0.5)
    for delta, predicted in [(true_mde, 0.80),
                             (0.10, stats.norm.cdf(0.10 / se(0.10) - Z_ALPHA))]:
        evs = [_binary_run(1000 + s, n, p_both, p_improve, delta) for s in range(runs)]
        power = np.mean([ev.p_regression < ALPHA for ev in evs])
        assert abs(power - predicted) <= max(mc_tolerance(predicted, runs), 0.02)
        if delta == true_mde:
            assert np.mean([ev.mde for ev in evs]) == pytest.approx(true_mde, rel=0.1)


def _latency_run(seed: int, n: int, ratio: float, sigma: float = 0.5,
                 rho: float = 0.6) -> Evidence:
    rng = np.random.default_rng(seed)
    z1 = rng.normal(size=n)
    z2 = rho * z1 + math.sqrt(1 - rho * rho) * rng.normal(size=n)
    base = np.exp(6.5 + sigma * z1)
    cand = np.exp(6.5 + math.log(ratio) + sigma * z2)  # true p95 ratio == ratio exactly
    return compare_p95(cand, base, guardrail="p95", margin_ratio=1.25, alpha=ALPHA,
                       resamples=999, seed=seed)


def test_power_on_a_p95_regression_matches_the_mde() -> None:
    """Paired lognormal latencies (log-sd 0.5, log-correlation 0.6), n = 200.

    The asymptotic SE of log(p95 ratio) follows from the joint law of two sample quantiles,
    Var = sigma^2 [2 p(1-p) - 2 (P(X<=z_p, Y<=z_p) - p^2)] / (n phi(z_p)^2). The run's bootstrap
    MDE must agree with it, power at the run's MDE must be 80%, and x1.5 must be detected as
    often as that SE predicts."""
    n, sigma, rho, runs = 200, 0.5, 0.6, 200
    zp = stats.norm.ppf(0.95)
    joint = stats.multivariate_normal(mean=[0, 0], cov=[[1, rho], [rho, 1]]).cdf([zp, zp])
    var = 2 * 0.95 * 0.05 - 2 * (joint - 0.95 ** 2)
    se_log = sigma * math.sqrt(var / n) / stats.norm.pdf(zp)

    pilot = [_latency_run(5000 + s, n, 1.0) for s in range(60)]
    run_mde = float(np.exp(np.mean([math.log(ev.mde) for ev in pilot])))
    assert math.log(run_mde) == pytest.approx(MDE_FACTOR * se_log, rel=0.15)

    at_mde = [_latency_run(6000 + s, n, run_mde) for s in range(runs)]
    power = np.mean([ev.p_regression < ALPHA for ev in at_mde])
    assert abs(power - 0.80) <= mc_tolerance(0.80, runs)
    # near the decision boundary the percentile bound and the bootstrap p must agree
    agree = np.mean([(ev.ci_low > 1.0) == (ev.p_regression < ALPHA) for ev in at_mde])
    assert agree >= 0.97

    big = [_latency_run(7000 + s, n, 1.5) for s in range(runs)]
    predicted = stats.norm.cdf(math.log(1.5) / se_log - Z_ALPHA)
    power_big = np.mean([ev.p_regression < ALPHA for ev in big])
    assert power_big >= predicted - max(mc_tolerance(predicted, runs), 0.01)
    # Alone in its run (Holm over one test), a detected regression FAILs the guardrail when
    # fail_on_significant_regression is on (opt-in since issue 17).
    final = [finalize([ev], ALPHA, regression_fails=True)[0] for ev in big]
    assert np.mean([ev.verdict == "FAIL" for ev in final]) == power_big


def test_compare_rate_clustered_never_collapses_when_nothing_varies() -> None:
    """No hallucination in 64 canaries x 2 samples, either side: the t interval is [0, 0], but
    the bound must still reflect the finite number of draws (Tango over 128 draws)."""
    zeros = np.zeros(64)
    ev = compare_rate(zeros, zeros, guardrail="h", margin=0.01, alpha=ALPHA, samples=2)
    assert ev.ci_high == pytest.approx(tango_ci(0, 0, 128, ALPHA)[1])
    assert ev.ci_high > 0.015
    assert ev.verdict == "INCONCLUSIVE"  # a 1-point margin cannot be shown from 128 draws
    wide = compare_rate(zeros, zeros, guardrail="h", margin=0.05, alpha=ALPHA, samples=2)
    assert wide.verdict == "PASS" and wide.p_value < ALPHA


def test_vectorised_bca_ratio_matches_scipy_bootstrap() -> None:
    """The closed-form jackknife + count-matrix resampling give scipy's BCa interval."""
    from evalgate.stats.cost import _bca_ratio

    rng = np.random.default_rng(8)
    for n in (40, 500):
        base = rng.lognormal(0, 0.7, n)
        cand = base * rng.lognormal(0.05, 0.3, n)
        ours = _bca_ratio(cand, base, 0.05, 40_000, seed=2)
        ref = stats.bootstrap((cand, base), lambda x, y, axis=-1: x.mean(axis) / y.mean(axis),
                              paired=True, vectorized=True, method="BCa",
                              confidence_level=0.90, n_resamples=40_000,
                              rng=np.random.default_rng(2)).confidence_interval
        assert ours is not None
        width = ref.high - ref.low
        assert ours[0] == pytest.approx(ref.low, abs=0.02 * width)
        assert ours[1] == pytest.approx(ref.high, abs=0.02 * width)
    assert _bca_ratio(np.ones(10), np.zeros(10), 0.05, 199, 0) is None
