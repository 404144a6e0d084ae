"""Verdicts that hold their stated error rates (issue 17): exact caps, monotone paired rates,
per-call p95 with samples, the three-zone default, errors not dropped, bounds that stay in
range. Each test has the issue's reproduction as its case; levels are checked by exact
enumeration where the sample space is small, by seeded simulation otherwise."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from evalgate.gate.guardrails import decide_gate
from evalgate.results import Attempt, Record
from evalgate.spec.config import GateSettings
from evalgate.stats import compare_rate, rate_cap, tango_ci

ALPHA = 0.05


def binary_pairs(n_reg: int, n_imp: int, n: int, both: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Paired 0/1 outcomes (1 = bad): n_reg canaries bad only for the candidate, n_imp bad only
    for the baseline, `both` bad for both."""
    cand = np.zeros(n)
    base = np.zeros(n)
    cand[:n_reg] = 1
    base[n_reg:n_reg + n_imp] = 1
    cand[n_reg + n_imp:n_reg + n_imp + both] = 1
    base[n_reg + n_imp:n_reg + n_imp + both] = 1
    return cand, base


def record(key: str, *, ok: bool = True, latency: float = 500.0,
           hallucination: bool | None = False, passed: bool | None = True) -> Record:
    return Record(key=key, set="s", case_id=key.split("/")[1], ok=ok,
                  text="answer" if ok else None, latency_ms=latency if ok else None,
                  cost_usd=0.001 if ok else None, passed=passed if ok else None,
                  hallucination=hallucination if ok else None,
                  attempts=[Attempt(n=1, latency_ms=1.0)], error_class=None if ok else "timeout")


# --------------------------------------------------------------------------------------------
# 3. exact caps
# --------------------------------------------------------------------------------------------


def _cap_level(n: int, cap: float) -> tuple[float, float]:
    """Exact false PASS and false FAIL of rate_cap with the true rate at the cap."""
    false_pass = false_fail = 0.0
    for k in range(n + 1):
        ev = rate_cap(np.r_[np.ones(k), np.zeros(n - k)], guardrail="h", cap=cap, alpha=ALPHA,
                      samples=1)
        prob = float(stats.binom.pmf(k, n, cap))
        false_pass += prob * (ev.verdict == "PASS")
        false_fail += prob * (ev.verdict == "FAIL")
    return false_pass, false_fail


@pytest.mark.parametrize(("n", "cap"), [(11, 0.1), (30, 0.1), (100, 0.1), (300, 0.01),
                                        (300, 0.05), (100, 0.5)])
def test_rate_cap_holds_alpha_at_the_cap_exactly(n: int, cap: float) -> None:
    # Wilson gave 7.3% false FAIL and 5.8% false PASS at 10%, n = 100; 8.3% at 1%, n = 300.
    false_pass, false_fail = _cap_level(n, cap)
    assert false_pass <= ALPHA
    assert false_fail <= ALPHA


def test_rate_cap_one_failure_in_one_call_is_not_proof() -> None:
    ev = rate_cap(np.array([1.0]), guardrail="h", cap=0.1, alpha=ALPHA, samples=1)
    assert ev.verdict == "INCONCLUSIVE"
    assert ev.ci_low == pytest.approx(ALPHA)  # 0.05 ** (1/1)


@pytest.mark.parametrize(("canaries", "samples"), [(12, 1), (6, 2), (4, 3)])
def test_every_call_failing_fails_the_error_rate(canaries: int, samples: int) -> None:
    """12 of 12 calls failing FAILs error_rate {max: 0.05}: a dead endpoint never goes green."""
    records = [record(f"s/c{i}", ok=False) for i in range(canaries) for _ in range(samples)]
    gate = GateSettings(metrics={"error_rate": {"max": 0.05}}, on_inconclusive="warn")
    out = decide_gate(gate, records, None, samples)
    (verdict,) = out["verdicts"]
    assert verdict.verdict == "FAIL"
    assert out["verdict"] == "FAIL"
    assert "method minimum" not in verdict.reason


def test_clustered_cap_below_30_canaries_is_exact_and_valid() -> None:
    """K > 1 with few canaries: bounds on "every draw bad" / "any draw bad" canaries, valid
    under any within-canary correlation. Simulated with perfectly correlated draws (the worst
    case for treating draws as independent) at the cap."""
    rng = np.random.default_rng(17)
    fails = passes = 0
    runs = 2000
    for _ in range(runs):
        x = np.repeat((rng.random(20) < 0.2).astype(float)[:, None], 3, axis=1).mean(axis=1)
        verdict = rate_cap(x, guardrail="h", cap=0.2, alpha=ALPHA, samples=3).verdict
        fails += verdict == "FAIL"
        passes += verdict == "PASS"
    se = math.sqrt(ALPHA * (1 - ALPHA) / runs)
    assert fails / runs <= ALPHA + 2 * se
    assert passes / runs <= ALPHA + 2 * se


# --------------------------------------------------------------------------------------------
# 2. paired rates: monotone, no cutoff
# --------------------------------------------------------------------------------------------


def test_all_baseline_hallucinations_fixed_is_not_worse_than_one_new_one() -> None:
    """n = 200, the baseline hallucinates on 9 canaries, all fixed: that cannot be less
    convincing than the same plus one new candidate hallucination."""
    fixed = compare_rate(*binary_pairs(0, 9, 200), guardrail="h", margin=0.05, alpha=ALPHA,
                         samples=1)
    plus_one = compare_rate(*binary_pairs(1, 9, 200), guardrail="h", margin=0.05, alpha=ALPHA,
                            samples=1)
    assert fixed.verdict == "PASS"
    assert plus_one.verdict == "PASS"
    assert fixed.ci_high < plus_one.ci_high


def test_identical_candidate_passes() -> None:
    cand, base = binary_pairs(0, 0, 1000, both=30)
    ev = compare_rate(cand, base, guardrail="h", margin=0.05, alpha=ALPHA, samples=1)
    assert ev.verdict == "PASS"
    assert ev.discordant == (0, 0)


VERDICT_ORDER = {"PASS": 0, "INCONCLUSIVE": 1, "FAIL": 2}


@settings(max_examples=300, deadline=None, derandomize=True)
@given(n=st.integers(20, 400), data=st.data())
def test_paired_rate_verdict_is_monotone_in_candidate_failures(n: int,
                                                                data: st.DataObject) -> None:
    """One more candidate failure (a concordant-good pair becomes a regression, or an
    improvement becomes concordant-bad) never makes the verdict better nor the bound lower."""
    n_reg = data.draw(st.integers(0, n // 4))
    n_imp = data.draw(st.integers(0, n // 4))
    both = data.draw(st.integers(0, n - n_reg - n_imp))
    margin = data.draw(st.sampled_from([0.02, 0.05, 0.1]))
    worse = data.draw(st.sampled_from(["higher", "lower"]))

    def run(r: int, i: int, b: int) -> tuple[int, float]:
        cand, base = binary_pairs(r, i, n, both=b)
        if worse == "lower":  # a pass rate: 1 = good
            cand, base = 1 - cand, 1 - base
        ev = compare_rate(cand, base, guardrail="g", margin=margin, alpha=ALPHA, samples=1,
                          worse=worse)
        bound = ev.ci_high if worse == "higher" else -ev.ci_low
        return VERDICT_ORDER[ev.verdict], bound

    start = run(n_reg, n_imp, both)
    if n_reg + n_imp + both < n:
        new_reg = run(n_reg + 1, n_imp, both)
        assert new_reg[0] >= start[0] and new_reg[1] >= start[1] - 1e-12
    if n_imp > 0:
        lost_fix = run(n_reg, n_imp - 1, both + 1)
        assert lost_fix[0] >= start[0] and lost_fix[1] >= start[1] - 1e-12


def _paired_level(n: int, delta: float, p21: float) -> tuple[float, float]:
    """Exact false PASS and false FAIL of compare_rate (K=1) with the truth at the margin."""
    p12 = p21 + delta
    false_pass = false_fail = 0.0
    for b in range(n + 1):
        pb = stats.binom.pmf(b, n, p12)
        if pb < 1e-12:
            continue
        for c in range(n - b + 1):
            prob = pb * stats.binom.pmf(c, n - b, p21 / (1 - p12))
            if prob < 1e-12:
                continue
            low, high = tango_ci(b, c, n, ALPHA, 0.5)
            false_pass += prob * (high < delta)
            false_fail += prob * (low > delta)
    return false_pass, false_fail


@pytest.mark.parametrize(("n", "p21"), [(40, 0.0), (40, 0.03), (60, 0.01), (100, 0.0)])
def test_paired_rate_holds_alpha_with_few_discordant_pairs_exactly(n: int, p21: float) -> None:
    # Uncorrected Tango: 8.8% false FAIL at n = 60, p21 = 0.01; 6.3% at n = 100, p21 = 0.
    false_pass, false_fail = _paired_level(n, 0.05, p21)
    assert false_pass <= ALPHA + 0.002
    assert false_fail <= ALPHA + 0.002


# --------------------------------------------------------------------------------------------
# 9. rate intervals stay in [0, 1]; 10. one canary says "not enough data"
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("samples", [1, 2, 3])
def test_rate_cap_interval_never_leaves_zero_one(samples: int) -> None:
    # hallucination_rate 0.5% [-0.3%, 4.9%] was shown: one canary of 100 at 1/2.
    x = np.zeros(100)
    x[0] = 0.5 if samples > 1 else 1.0
    ev = rate_cap(x, guardrail="hallucination_rate", cap=0.1, alpha=ALPHA, samples=samples)
    assert ev.ci_low is not None and ev.ci_high is not None
    assert 0.0 <= ev.ci_low <= ev.estimate <= ev.ci_high <= 1.0
    everything = rate_cap(np.ones(40), guardrail="error_rate", cap=0.05, alpha=ALPHA,
                          samples=samples)
    assert everything.ci_high == 1.0 and everything.ci_low is not None


def test_gate_table_shows_no_negative_rate() -> None:
    from evalgate.report.summary import gate_cells

    records = [record(f"s/c{i}", ok=not (i == 0 and k == 0)) for i in range(100)
               for k in range(2)]
    gate = GateSettings(metrics={"error_rate": {"max": 0.05}})
    (verdict,) = decide_gate(gate, records, None, 2)["verdicts"]
    assert verdict.ci_low is not None and verdict.ci_low >= 0.0
    assert "-" not in gate_cells(verdict)[2]


def test_rate_differences_stay_in_minus_one_one() -> None:
    from evalgate.stats import compare_score

    rng = np.random.default_rng(3)
    cand = rng.binomial(2, 0.98, 40) / 2
    base = np.zeros(40)
    ev = compare_rate(cand, base, guardrail="pass_rate", margin=0.05, alpha=ALPHA, samples=2,
                      worse="lower")
    assert -1.0 <= ev.ci_low <= ev.ci_high <= 1.0
    sc = compare_score(np.ones(30), np.r_[np.zeros(29), 1.0], guardrail="s", margin=0.05,
                       alpha=ALPHA)
    assert -1.0 <= sc.ci_low <= sc.ci_high <= 1.0


def test_one_canary_says_not_enough_data_not_infinity() -> None:
    from evalgate.stats import compare_latency_gm, compare_score, cost_budget, finalize

    evs = finalize([
        compare_latency_gm(np.array([900.0]), np.array([800.0]),
                           guardrail="latency_ratio_vs_baseline", margin_ratio=1.1,
                           alpha=ALPHA),
        cost_budget(np.array([0.01]), guardrail="cost_per_request_usd", budget=0.1,
                    alpha=ALPHA),
        compare_score(np.array([0.5]), np.array([0.6]), guardrail="score_vs_baseline",
                      margin=0.05, alpha=ALPHA),
    ], ALPHA)
    for ev in evs:
        assert "inf" not in ev.sentence and "inf" not in (ev.note or "")
        assert "not enough data" in ev.sentence
        assert ev.verdict == "INCONCLUSIVE"
        assert ev.mde is None
    assert evs[0].ci_high is None and evs[0].ci_low is None


# --------------------------------------------------------------------------------------------
# 1. p95 with samples > 1: on the calls, canary = cluster
# --------------------------------------------------------------------------------------------


def _slow_every_fifth(rng: np.random.Generator, n: int) -> list[list[float]]:
    """Two calls a canary around 200 ms; every 5th canary has one call at 2,000 ms."""
    calls = []
    for i in range(n):
        pair = list(200 + 20 * rng.random(2))
        if i % 5 == 0:
            pair[0] = 2000 + rng.random()
        calls.append(pair)
    return calls


def test_p95_slo_with_samples_is_tested_on_calls() -> None:
    """300 canaries x 2 calls, every 5th with a 2,000 ms call: p95 of the calls is 2,000 ms,
    so `latency_p95_ms {max: 1200}` FAILs (it PASSed on per-canary means, ~1,100 ms)."""
    from evalgate.stats import p95_slo

    calls = _slow_every_fifth(np.random.default_rng(1), 300)
    values = np.array([v for pair in calls for v in pair])
    canary = np.repeat(np.arange(300), 2)
    ev = p95_slo(values, guardrail="latency_p95_ms", slo_ms=1200, alpha=ALPHA, samples=2,
                 canary=canary)
    assert ev.verdict == "FAIL"
    assert ev.estimate == pytest.approx(2000, rel=0.01)
    assert ev.ci_low is not None and ev.ci_low > 1200
    assert ev.n_canaries == 300 and ev.n_samples == 2
    means = np.array([np.mean(pair) for pair in calls])
    assert p95_slo(means, guardrail="latency_p95_ms", slo_ms=1200, alpha=ALPHA,
                   samples=2).verdict == "PASS"  # what the gate used to do


def test_p95_slo_with_samples_through_the_gate() -> None:
    calls = _slow_every_fifth(np.random.default_rng(2), 300)
    records = [record(f"s/c{i}", latency=v) for i, pair in enumerate(calls) for v in pair]
    gate = GateSettings(metrics={"latency_p95_ms": {"max": 1200}})
    out = decide_gate(gate, records, None, 2)
    (verdict,) = out["verdicts"]
    assert verdict.verdict == "FAIL"
    assert out["metrics"]["latency_p95_ms"] == pytest.approx(2000, rel=0.01)
    assert "cluster" in verdict.test
    assert "2,0" in verdict.reason  # candidate ~2,000 ms, not 1,100 ms


def test_p95_slo_clustered_bounds_invert_the_test() -> None:
    from evalgate.stats import p95_slo

    rng = np.random.default_rng(5)
    z = rng.normal(size=(200, 3)) * 0.3 + rng.normal(size=(200, 1)) * 0.4
    values = np.exp(6.5 + z).ravel()
    canary = np.repeat(np.arange(200), 3)
    ev = p95_slo(values, guardrail="p", slo_ms=1000, alpha=ALPHA, samples=3, canary=canary)
    assert ev.ci_low is not None and ev.ci_high is not None
    assert ev.ci_low < ev.estimate < ev.ci_high
    # An SLO just above the upper bound passes; just below the lower bound fails.
    for slo, verdict in ((ev.ci_high * 1.0001, "PASS"), (ev.ci_low * 0.9999, "FAIL")):
        assert p95_slo(values, guardrail="p", slo_ms=slo, alpha=ALPHA, samples=3,
                       canary=canary).verdict == verdict


@pytest.mark.parametrize("k", [2, 3])
def test_p95_slo_clustered_holds_alpha_at_the_slo(k: int) -> None:
    """Strongly correlated calls within a canary (the case per-call independence gets wrong),
    truth exactly at the SLO: false PASS and false FAIL within alpha + 2 SE."""
    from evalgate.stats import p95_slo

    runs, n = 400, 120
    sd_canary, sd_call = 0.45, 0.2
    total_sd = math.hypot(sd_canary, sd_call)
    slo = math.exp(total_sd * stats.norm.ppf(0.95))  # true p95 of a call
    rng = np.random.default_rng(100 + k)
    canary = np.repeat(np.arange(n), k)
    fails = passes = 0
    for _ in range(runs):
        z = rng.normal(size=(n, 1)) * sd_canary + rng.normal(size=(n, k)) * sd_call
        verdict = p95_slo(np.exp(z).ravel(), guardrail="p", slo_ms=slo, alpha=ALPHA, samples=k,
                          canary=canary).verdict
        fails += verdict == "FAIL"
        passes += verdict == "PASS"
    limit = ALPHA + 2 * math.sqrt(ALPHA * (1 - ALPHA) / runs)
    assert fails / runs <= limit
    assert passes / runs <= limit


def test_p95_ratio_with_samples_uses_the_calls() -> None:
    """Per-canary means turn "one slow call in every 5th canary" (baseline) vs "both calls slow
    in every 10th" (candidate) into a x1.6 p95 regression; both have 10% of calls slow, so the
    p95 of the calls has not moved."""
    from evalgate.stats import compare_p95

    rng = np.random.default_rng(4)
    n = 400
    base = 200 + 20 * rng.random((n, 2))
    cand = 200 + 20 * rng.random((n, 2))
    base[::5, 0] = 1000 + rng.random(n // 5)
    cand[::10, :] = 1000 + rng.random((n // 10, 2))
    canary = np.repeat(np.arange(n), 2)
    ev = compare_p95(cand.ravel(), base.ravel(), guardrail="p95_ratio_vs_baseline",
                     margin_ratio=1.25, alpha=ALPHA, resamples=999, seed=1, samples=2,
                     cand_canary=canary, base_canary=canary)
    assert ev.effect == pytest.approx(1.0, abs=0.02)
    assert ev.verdict != "FAIL"
    assert "cluster" in ev.test
    old = compare_p95(cand.mean(axis=1), base.mean(axis=1), guardrail="p", margin_ratio=1.25,
                      alpha=ALPHA, resamples=999, seed=1, samples=2)
    assert old.effect > 1.5 and old.verdict == "FAIL"


def test_cluster_bootstrap_with_one_call_a_canary_is_the_paired_bootstrap() -> None:
    from evalgate.stats import compare_p95

    rng = np.random.default_rng(6)
    cand, base = np.exp(rng.normal(6, 0.5, 80)), np.exp(rng.normal(6, 0.5, 80))
    plain = compare_p95(cand, base, guardrail="p", margin_ratio=1.25, alpha=ALPHA,
                        resamples=499, seed=3)
    index = np.arange(80)
    clustered = compare_p95(cand, base, guardrail="p", margin_ratio=1.25, alpha=ALPHA,
                            resamples=499, seed=3, cand_canary=index, base_canary=index)
    assert (clustered.ci_low, clustered.ci_high) == pytest.approx((plain.ci_low, plain.ci_high))


def test_unequal_cluster_sizes_use_each_resample_size() -> None:
    from evalgate.stats.primitives import _hd_weighted_rows, harrell_davis

    rng = np.random.default_rng(7)
    values = rng.lognormal(6, 0.5, 30)
    counts = rng.integers(0, 3, size=(20, 30))
    got = _hd_weighted_rows(values, counts, 0.95)
    want = [harrell_davis(np.repeat(values, row), 0.95) for row in counts]
    assert got == pytest.approx(want, rel=1e-10)


# --------------------------------------------------------------------------------------------
# 8. three zones by default; fail_on_significant_regression is opt-in and says so
# --------------------------------------------------------------------------------------------


def test_significant_regression_inside_the_margin_passes_by_default() -> None:
    """n = 2,000, +2.0 points with an upper bound of about +2.8 against a 5-point tolerance."""
    from evalgate.stats import finalize

    cand, base = binary_pairs(60, 20, 2000)
    ev = compare_rate(cand, base, guardrail="hallucination_rate_vs_baseline", margin=0.05,
                      alpha=ALPHA, samples=1)
    assert ev.effect == pytest.approx(0.02)
    assert ev.ci_low > 0 and ev.ci_high < 0.05 and ev.p_regression < ALPHA
    (default,) = finalize([ev], ALPHA)
    assert default.verdict == "PASS"
    assert "within the margin" in (default.note or "")
    assert GateSettings().fail_on_significant_regression is False
    (opt_in,) = finalize([ev], ALPHA, regression_fails=True)
    assert opt_in.verdict == "FAIL"
    assert "regressed significantly" in opt_in.sentence
    assert "fail_on_significant_regression: true" in opt_in.sentence
    assert "inside the margin" in opt_in.sentence


def test_three_zones_fail_beyond_inconclusive_between() -> None:
    from evalgate.stats import finalize

    beyond = finalize([compare_rate(*binary_pairs(60, 5, 200), guardrail="h", margin=0.05,
                                    alpha=ALPHA, samples=1)], ALPHA)[0]
    assert beyond.ci_low > 0.05 and beyond.verdict == "FAIL"
    assert "regressed significantly" not in beyond.sentence
    between = finalize([compare_rate(*binary_pairs(16, 6, 200), guardrail="h", margin=0.05,
                                     alpha=ALPHA, samples=1)], ALPHA)[0]
    assert between.ci_low < 0.05 < between.ci_high and between.verdict == "INCONCLUSIVE"


def test_tiny_latency_regression_at_scale_passes_by_default() -> None:
    """10,000 canaries, p95 x1.04 against a limit of x1.25: PASS, not FAIL."""
    from evalgate.stats import compare_p95, finalize

    rng = np.random.default_rng(8)
    base = np.exp(rng.normal(6.5, 0.5, 10_000))
    cand = base * 1.04 * np.exp(rng.normal(0, 0.05, 10_000))
    ev = compare_p95(cand, base, guardrail="p95_ratio_vs_baseline", margin_ratio=1.25,
                     alpha=ALPHA, resamples=999, seed=2)
    assert ev.p_regression < ALPHA
    (final,) = finalize([ev], ALPHA)
    assert final.verdict == "PASS"
