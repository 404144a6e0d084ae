"""Issue 17, items 4-7: the cost ratio on skewed costs, the binary MDE under the alternative,
errored calls in the quality guardrails and the error-rate guardrail, and the family-wise false
FAIL of many guardrails (Holm over the bound-based FAILs). Each test has the issue's
reproduction as its case; rates are checked by seeded simulation against alpha + 2 SE."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from evalgate.gate.family import family_note, family_wise_rate, holm_fails
from evalgate.gate.guardrails import decide_gate
from evalgate.report.summary import summary_lines
from evalgate.results import Attempt, Record, RunResult
from evalgate.spec.config import GateSettings
from evalgate.stats import (
    compare_cost,
    compare_rate,
    fieller_ratio_bounds,
    finalize,
    rate_cap,
    ratio_model_bounds,
)

ALPHA = 0.05


def two_se(p: float, runs: int) -> float:
    return 2 * math.sqrt(p * (1 - p) / runs)


# --------------------------------------------------------------------------------------------
# 4. the cost ratio on skewed costs: Fieller and the ratio model must agree
# --------------------------------------------------------------------------------------------


def lognormal_costs(seed: int, n: int, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """The issue's reproduction: lognormal baseline costs (sigma 1), the candidate a lognormal
    (sigma 0.5) multiple of them whose mean ratio of means is exactly `ratio`."""
    rng = np.random.default_rng(seed)
    base = np.exp(rng.normal(math.log(0.002), 1.0, n))
    return ratio * base * np.exp(rng.normal(-0.125, 0.5, n)), base


def test_ratio_model_bounds_by_hand() -> None:
    c, b = np.array([2.0, 3.0, 5.0, 4.0]), np.array([1.0, 2.0, 4.0, 2.0])
    low, high, se = ratio_model_bounds(c, b, ALPHA) or (0, 0, 0)
    rho = c / b  # ratios 2, 1.5, 1.25, 2: the weights b / sum(b) make the mean ratio 14/9
    expected_se = math.sqrt(np.var(rho, ddof=1) * np.sum(b * b) / b.sum() ** 2)
    assert se == pytest.approx(expected_se, rel=1e-12)
    t = stats.t.isf(ALPHA, 3)
    assert (low, high) == pytest.approx((14 / 9 - t * expected_se, 14 / 9 + t * expected_se))
    assert ratio_model_bounds(c, np.array([1.0, 0.0, 4.0, 2.0]), ALPHA) is None


@pytest.mark.parametrize("n", [30, 100])
def test_cost_ratio_at_the_margin_on_lognormal_costs_holds_alpha(n: int) -> None:
    runs = 400
    passes = fieller_passes = 0
    for seed in range(runs):
        cand, base = lognormal_costs(seed, n, 1.10)
        ev = compare_cost(cand, base, guardrail="cost", margin_ratio=1.10, alpha=ALPHA,
                          seed=seed, bca_resamples=199)
        passes += ev.verdict == "PASS"
        high = fieller_ratio_bounds(cand, base, ALPHA)[1]
        fieller_passes += high is not None and high < 1.10
        if ev.verdict == "PASS":  # the reported bound is the one that decided
            assert ev.ci_high < 1.10 and ev.p_value < ALPHA
    assert passes / runs <= ALPHA + two_se(ALPHA, runs)
    # Fieller alone, the method before issue 17, is what the issue reproduced (8.8-9.1%)
    assert fieller_passes / runs > ALPHA + two_se(ALPHA, runs) * 0.5


def test_cost_ratio_disagreement_is_a_note() -> None:
    for seed in range(200):
        cand, base = lognormal_costs(seed, 30, 1.10)
        high = fieller_ratio_bounds(cand, base, ALPHA)[1]
        ev = compare_cost(cand, base, guardrail="cost", margin_ratio=1.10, alpha=ALPHA,
                          bca_resamples=199)
        if high is not None and high < 1.10 and ev.verdict != "PASS":
            assert ev.note is not None and "Fieller alone" in ev.note
            assert "would say PASS" in ev.note and "ratio-model bounds" in ev.note
            assert ev.ci_high >= 1.10
            return
    pytest.fail("no seed where Fieller alone passes and the ratio model does not")


def test_cost_ratio_still_passes_a_cheaper_candidate() -> None:
    """The power the check costs stays bounded: a x0.90 candidate on 300 canaries passes."""
    passes = sum(compare_cost(*lognormal_costs(seed, 300, 0.90), guardrail="cost",
                              margin_ratio=1.10, alpha=ALPHA, bca_resamples=199).verdict
                 == "PASS" for seed in range(100))
    assert passes >= 90


# --------------------------------------------------------------------------------------------
# 5. the binary MDE: 80% power at the reported MDE
# --------------------------------------------------------------------------------------------


def paired_cells(seed: int, n: int, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """2% both bad, 3% only the baseline, 3% + delta only the candidate (1 = bad)."""
    rng = np.random.default_rng(seed)
    cell = rng.choice(4, size=n, p=[0.02, 0.03, 0.03 + delta, 0.92 - delta])
    return np.isin(cell, [0, 2]).astype(float), np.isin(cell, [0, 1]).astype(float)


def test_power_at_the_reported_binary_mde_is_80_percent() -> None:
    n, pilot, runs = 200, 200, 400
    mde = float(np.mean([compare_rate(*paired_cells(10_000 + s, n, 0.0), guardrail="h",
                                      margin=0.05, alpha=ALPHA, samples=1).mde
                         for s in range(pilot)]))
    power = np.mean([compare_rate(*paired_cells(s, n, mde), guardrail="h", margin=0.05,
                                  alpha=ALPHA, samples=1).p_regression < ALPHA
                     for s in range(runs)])
    # before issue 17 the MDE came from the variance at the observed discordance: power 0.63-0.72
    assert abs(power - 0.80) <= two_se(0.80, runs)


# --------------------------------------------------------------------------------------------
# 6. errored calls: a failure in the quality guardrails by default, and error_rate_vs_baseline
# --------------------------------------------------------------------------------------------


def record(key: str, *, ok: bool = True, hallucination: bool = False, passed: bool = True,
           config: str = "candidate") -> Record:
    return Record(key=key, set="s", case_id=key.split("/")[1], ok=ok, config=config,
                  text="answer" if ok else None, latency_ms=500.0 if ok else None,
                  cost_usd=0.001 if ok else None, passed=passed if ok else None,
                  hallucination=hallucination if ok else None,
                  attempts=[Attempt(n=1, latency_ms=1.0)], error_class=None if ok else "timeout")


def timeouts_on_the_hard_prompts() -> tuple[list[Record], list[Record]]:
    """The issue's reproduction: 200 canaries, 30 of them hard. The baseline answers all and
    hallucinates on 15 hard ones; the candidate times out on every hard one."""
    keys = [f"s/c{i:03d}" for i in range(200)]
    base = [record(k, hallucination=i < 15, passed=i >= 15, config="baseline")
            for i, k in enumerate(keys)]
    cand = [record(k, ok=i >= 30) for i, k in enumerate(keys)]
    return cand, base


def gate_for(errors_count_as: str) -> GateSettings:
    return GateSettings.model_validate({
        "errors_count_as": errors_count_as,
        "vs_baseline": {"cost_ratio": None, "latency_ratio": None, "p95_ratio": None}})


def test_errored_calls_count_as_failures_by_default() -> None:
    assert GateSettings().errors_count_as == "failure"
    cand, base = timeouts_on_the_hard_prompts()
    verdicts = {v.guardrail: v for v in decide_gate(gate_for("failure"), cand, base, 1)
                ["verdicts"]}
    halluc = verdicts["hallucination_rate_vs_baseline"]
    # 30 errors as hallucinations vs the baseline's 15: +7.5 points, not an improvement
    assert halluc.n_canaries == 200 and halluc.value == pytest.approx(30 / 200)
    assert halluc.effect == pytest.approx(15 / 200) and halluc.verdict != "PASS"
    assert "30 candidate and 0 baseline errored calls counted as hallucinations" in halluc.reason
    assert "errors_count_as: failure" in halluc.reason
    assert verdicts["pass_rate_vs_baseline"].verdict != "PASS"
    assert "counted as failed answers" in verdicts["pass_rate_vs_baseline"].reason
    errors = verdicts["error_rate_vs_baseline"]
    assert errors.kind == "rate_vs_baseline" and errors.discordant == [30, 0]
    assert errors.verdict == "FAIL"  # +15 points against a tolerance of +5


def test_errored_calls_left_out_when_missing_and_the_sentence_says_so() -> None:
    cand, base = timeouts_on_the_hard_prompts()
    decision = decide_gate(gate_for("missing"), cand, base, 1)
    verdicts = {v.guardrail: v for v in decision["verdicts"]}
    halluc = verdicts["hallucination_rate_vs_baseline"]
    # the candidate looks better on quality: the hard canaries drop out of the pairing
    assert halluc.n_canaries == 170 and halluc.verdict == "PASS"
    assert "30 candidate and 0 baseline errored calls left out (errors_count_as: missing" \
        in halluc.reason
    # ... which the paired error-rate guardrail catches
    assert verdicts["error_rate_vs_baseline"].verdict == "FAIL"
    assert decision["verdict"] == "FAIL"


def test_errors_count_only_where_the_metric_is_measured() -> None:
    """A rubric grading hallucinations on some canaries only: an error elsewhere is no
    hallucination."""
    keys = [f"s/c{i:03d}" for i in range(60)]
    cand = [record(k, ok=i % 2 == 0).model_copy(
        update={"hallucination": None if i >= 30 or i % 2 else False}) for i, k in
        enumerate(keys)]
    cand[1] = record(keys[1], ok=False)  # canary 1 measures it (the baseline has a value)
    base = [record(k, config="baseline").model_copy(
        update={"hallucination": False if i < 30 else None}) for i, k in enumerate(keys)]
    verdicts = {v.guardrail: v for v in decide_gate(gate_for("failure"), cand, base, 1)
                ["verdicts"]}
    # 15 errors among the 30 measured canaries count; the other 15 are not measured
    assert verdicts["hallucination_rate_vs_baseline"].n_canaries == 30
    assert verdicts["hallucination_rate_vs_baseline"].value == pytest.approx(0.5)


def test_error_rate_vs_baseline_passes_an_unchanged_candidate() -> None:
    keys = [f"s/c{i:03d}" for i in range(300)]
    cand = [record(k, ok=i % 50 != 0) for i, k in enumerate(keys)]
    base = [record(k, ok=i % 50 != 1, config="baseline") for i, k in enumerate(keys)]
    (v,) = [v for v in decide_gate(gate_for("failure"), cand, base, 1)["verdicts"]
            if v.guardrail == "error_rate_vs_baseline"]
    assert v.effect == 0.0 and v.verdict == "PASS"


# --------------------------------------------------------------------------------------------
# 7. many guardrails: the family-wise false FAIL said, and Holm over the bound-based FAILs
# --------------------------------------------------------------------------------------------


def test_family_wise_rate_is_said() -> None:
    assert family_wise_rate(6, 0.05) == pytest.approx(1 - 0.95 ** 6)
    note = family_note(6, 0.05, "none")
    assert note is not None and "6 tested guardrails, each at one-sided alpha 0.05" in note
    assert "1-(1-0.05)^6 = 26.5%" in note and "fail_correction: holm would hold it" in note
    assert family_note(1, 0.05, "none") is None
    cand, base = timeouts_on_the_hard_prompts()
    decision = decide_gate(gate_for("failure"), cand, base, 1)
    assert decision["family_wise"].startswith("3 tested guardrails")
    result = RunResult.model_validate({
        "evalgate_version": "0", "run_id": "r", "started_at": "t", "wall_time_s": 0.0,
        "gate_fingerprint": "g", "canary_fingerprint": "c", "rubric_fingerprints": {},
        "candidate": {"name": "m", "provider": "sim", "model": "m", "fingerprint": "f"},
        "samples": 1, "concurrency": 1, "calls_made": 0, "records": [], "counts": {
            "canaries": 200, "calls": 200, "errors": 30}, **decision})
    assert any("the gate: 3 tested guardrails" in line for line in summary_lines(result))


def caps_gate(correction: str) -> tuple[GateSettings, list[Record]]:
    """200 answers: 28 hallucinations against a 10% cap (FAIL at alpha 0.05: the exact lower
    bound is 10.14%; 9.51% at 0.025), 100 failed answers against a 90% pass-rate floor (FAIL by
    far), no error against a 5% cap."""
    settings = GateSettings.model_validate({
        "fail_correction": correction, "metrics": {
            "hallucination_rate": {"max": 0.10}, "pass_rate": {"min": 0.90},
            "error_rate": {"max": 0.05}}})
    records = [record(f"s/c{i:03d}", hallucination=i < 28, passed=i >= 100)
               for i in range(200)]
    return settings, records


def test_holm_over_the_fails_keeps_the_clear_one_and_drops_the_marginal_one() -> None:
    settings, records = caps_gate("none")
    plain = {v.guardrail: v for v in decide_gate(settings, records, None, 1)["verdicts"]}
    assert plain["hallucination_rate"].verdict == "FAIL"
    assert plain["hallucination_rate"].ci_low == pytest.approx(
        stats.beta.ppf(ALPHA, 28, 173))
    settings, records = caps_gate("holm")
    decision = decide_gate(settings, records, None, 1)
    holm = {v.guardrail: v for v in decision["verdicts"]}
    assert holm["pass_rate"].verdict == "FAIL"
    assert "confirmed by Holm over 3 guardrails" in holm["pass_rate"].reason
    marginal = holm["hallucination_rate"]
    assert marginal.verdict == "INCONCLUSIVE"
    assert "not after Holm over 3 guardrails: not at one-sided alpha 0.025" in marginal.reason
    assert holm["error_rate"].verdict == "PASS"
    assert decision["verdict"] == "FAIL"
    assert "holds that rate at 0.05" in decision["family_wise"]


def test_holm_over_the_fails_holds_the_family_wise_rate() -> None:
    """Five independent caps with their truths at the cap (n = 100, cap 10%): each FAILs 3.4%
    of the time, the gate 1-(1-0.034)^5 ~ 16%; with Holm at most alpha."""
    runs, caps, n = 400, 5, 100
    plain = corrected = 0
    for seed in range(runs):
        rng = np.random.default_rng(seed)
        xs = [(rng.random(n) < 0.10).astype(float) for _ in range(caps)]
        evs = finalize([rate_cap(x, guardrail=f"cap{j}", cap=0.10, alpha=ALPHA, samples=1)
                        for j, x in enumerate(xs)], ALPHA)
        plain += any(ev.verdict == "FAIL" for ev in evs)
        held = holm_fails(evs, ALPHA, lambda i, a, xs=xs: rate_cap(
            xs[i], guardrail=f"cap{i}", cap=0.10, alpha=a, samples=1))
        corrected += any(ev.verdict == "FAIL" for ev in held)
    assert plain / runs > ALPHA + two_se(ALPHA, runs)
    assert corrected / runs <= ALPHA + two_se(ALPHA, runs)
