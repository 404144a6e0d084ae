"""Sequential gating: boundaries against published values and scipy, looks, curtailment, and
early stops end to end over the simulator."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from evalgate.errors import ConfigError
from evalgate.gate.sequential import look_sizes, stable_order
from evalgate.pipeline.project import load_project
from evalgate.pipeline.run import run_project
from evalgate.results import RunResult
from evalgate.stats import wilson_bounds
from evalgate.stats.sequential import (
    crossing_probabilities,
    curtail_rate,
    nominal_alphas,
    obf_spending,
    obrien_fleming_bounds,
    spending_bounds,
)
from tests.conftest import make_cases, sim_model, write_project

pytest_plugins = ["pytester"]

THIRDS = [1 / 3, 2 / 3, 1.0]


def test_lan_demets_obf_bounds_match_published_values() -> None:
    # gsDesign sfLDOF, one-sided 0.025 (= two-sided 0.05 symmetric); DeMets & Lan 1994.
    assert spending_bounds(THIRDS, 0.025) == pytest.approx([3.7103, 2.5114, 1.9930], abs=1e-4)
    assert spending_bounds([0.2, 0.4, 0.6, 0.8, 1.0], 0.025) == pytest.approx(
        [4.8769, 3.3570, 2.6803, 2.2898, 2.0310], abs=1e-4)


def test_classical_obrien_fleming_bounds_match_jennison_turnbull() -> None:
    # Jennison & Turnbull (2000) Table 2.3: C_B(3, 0.05) = 2.004, two-sided.
    assert obrien_fleming_bounds(THIRDS, 0.05, two_sided=True) == pytest.approx(
        [3.471, 2.454, 2.004], abs=1e-3)


def test_first_look_is_closed_form_and_the_spending_adds_up() -> None:
    alpha = 0.05
    bounds = spending_bounds([0.25, 0.6, 1.0], alpha)
    assert bounds[0] == pytest.approx(stats.norm.isf(obf_spending(0.25, alpha)), abs=1e-9)
    spent = np.cumsum(crossing_probabilities([0.25, 0.6, 1.0], bounds))
    assert spent == pytest.approx([obf_spending(t, alpha) for t in (0.25, 0.6, 1.0)], abs=1e-9)
    assert obf_spending(1.0, alpha) == pytest.approx(alpha, abs=1e-12)
    nominal = nominal_alphas([0.25, 0.6, 1.0], alpha)
    assert nominal[0] < nominal[1] < nominal[2] < alpha


def test_crossing_probabilities_agree_with_scipy_multivariate_normal() -> None:
    """P(Z_1 < c_1, ..., Z_K < c_K) with corr(Z_i, Z_j) = sqrt(t_i/t_j) by Genz's algorithm."""
    ts = [0.3, 0.55, 1.0]
    bounds = spending_bounds(ts, 0.05)
    corr = np.array([[math.sqrt(min(a, b) / max(a, b)) for b in ts] for a in ts])
    stay = stats.multivariate_normal.cdf(np.array(bounds), mean=np.zeros(3), cov=corr,
                                         abseps=1e-7, releps=1e-7)
    assert 1 - stay == pytest.approx(0.05, abs=2e-5)


def test_simulated_brownian_paths_cross_at_alpha() -> None:
    rng = np.random.default_rng(11)
    ts = np.array(THIRDS)
    paths = 200_000
    steps = rng.standard_normal((paths, 3)) * np.sqrt(np.diff(np.concatenate([[0.0], ts])))
    z = np.cumsum(steps, axis=1) / np.sqrt(ts)
    crossed = (z >= np.array(spending_bounds(THIRDS, 0.05))).any(axis=1).mean()
    se = math.sqrt(0.05 * 0.95 / paths)
    assert abs(crossed - 0.05) < 4 * se


def test_bad_fractions_are_rejected() -> None:
    for bad in ([0.5, 0.5, 1.0], [0.0, 1.0], [0.4, 1.2], []):
        with pytest.raises(ValueError):
            spending_bounds(bad, 0.05)


def test_look_sizes_and_stable_order() -> None:
    assert look_sizes(300, THIRDS) == [100, 200, 300]
    assert look_sizes(10, THIRDS) == [4, 7, 10]
    assert look_sizes(2, [0.1, 0.2, 1.0]) == [1, 2]
    keys = [f"set/c{i}" for i in range(50)]
    order = stable_order(keys, seed=0)
    assert sorted(order) == sorted(keys) and order != keys
    assert stable_order(list(reversed(keys)), seed=0) == order
    with_new = stable_order([*keys, "set/new"], seed=0)
    assert [k for k in with_new if k != "set/new"] == order
    assert stable_order(keys, seed=1) != order


def test_curtailment_decides_only_what_no_remaining_answer_can_change() -> None:
    a = 0.045
    # cap 5%: 40 hallucinations in the first 200 of 300 -> >= 13.3% whatever follows
    assert curtail_rate(40, 200, 100, 0.05, "higher", a) == "FAIL"
    assert wilson_bounds(40, 300, a)[0] > 0.05
    # 0 bad so far, 20 remaining: even 20 bad of 300 keeps the upper bound under 15%
    assert curtail_rate(0, 280, 20, 0.15, "higher", a) == "PASS"
    # undecidable: a few bad, many remaining
    assert curtail_rate(5, 100, 200, 0.05, "higher", a) is None
    # floor of 90% good: 150 good of 200, 100 left -> at best 250/300 = 83%
    assert curtail_rate(150, 200, 100, 0.90, "lower", a) == "FAIL"
    assert curtail_rate(299, 299, 1, 0.90, "lower", a) == "PASS"


# --------------------------------------------------------------------------------------------
# End to end over the simulator


def seq_project(root: Path, n: int, hallucination: float, looks: object = True,
                metrics: dict[str, object] | None = None) -> Path:
    gate = {"sequential": looks,
            "metrics": metrics or {"hallucination_rate": {"max": 0.10},
                                   "pass_rate": {"min": 0.80}}}
    return write_project(root, model=sim_model(latency_ms=1, hallucination_rate=hallucination,
                                               seed=5),
                         cases=make_cases(n), gate={"concurrency": 8, "gate": gate})


def test_a_clear_pass_stops_at_the_first_look_and_saves_calls(tmp_path: Path) -> None:
    # 0 of 100 hallucinate: the 99.93% Wilson upper bound 9.3% is under the 10% cap
    result = run_project(load_project(seq_project(tmp_path, 300, 0.0)))
    assert result.verdict == "PASS"
    seq = result.sequential
    assert seq is not None and seq.stopped_early and seq.looks_done == 1
    assert len(result.records) == 100
    assert result.calls_planned == 300 and result.calls_saved_sequential == 200
    assert seq.analyses[0].nominal_alpha == pytest.approx(obf_spending(1 / 3, 0.05), rel=1e-6)
    assert all("look 1/3" in (v.note or "") for v in result.verdicts)
    assert RunResult.model_validate_json(result.model_dump_json()).sequential == seq


def test_a_clear_regression_fails_early(tmp_path: Path) -> None:
    result = run_project(load_project(seq_project(tmp_path, 240, 0.5)))
    assert result.verdict == "FAIL"
    assert result.sequential is not None and result.sequential.looks_done == 1
    assert "FAIL" in result.sequential.reason
    assert result.calls_saved_sequential == 160


def test_a_borderline_candidate_runs_every_look(tmp_path: Path) -> None:
    # a 10% hallucination rate against a 10% cap cannot be decided: all canaries are called
    result = run_project(load_project(seq_project(
        tmp_path, 90, 0.10, {"looks": [0.5, 1.0]},
        metrics={"hallucination_rate": {"max": 0.10}})))
    assert result.sequential is not None
    assert result.sequential.looks_done == 2 and not result.sequential.stopped_early
    assert result.calls_saved_sequential == 0 and len(result.records) == 90
    assert result.sequential.analyses[-1].nominal_alpha < 0.05


def test_curtailment_in_a_run(tmp_path: Path) -> None:
    """At look 1 (50 of 150 canaries) the p95 test cannot decide (it needs 0.95^n < alpha_1,
    n >= 142), but ~30% of answers are already far above the SLO: the final verdict is FAIL
    even if the 100 remaining canaries all answer instantly, so the run stops."""
    root = tmp_path
    write_project(root, model=sim_model(latency_ms=5, spike_prob=0.3, spike_ms=400, seed=2),
                  cases=make_cases(150),
                  gate={"concurrency": 8, "gate": {"sequential": True,
                                                   "metrics": {"latency_p95_ms": {"max": 200}}}})
    result = run_project(load_project(root))
    seq = result.sequential
    assert seq is not None and result.verdict == "FAIL"
    assert seq.analyses[0].decided == {}
    assert seq.analyses[0].curtailed == {"latency_p95_ms": "FAIL"}
    assert seq.looks_done == 1 and result.calls_saved_sequential == 100
    [verdict] = result.verdicts
    assert verdict.verdict == "FAIL" and "curtailed at look 1" in (verdict.note or "")


def test_sequential_off_is_unchanged(tmp_path: Path) -> None:
    result = run_project(load_project(seq_project(tmp_path, 60, 0.0, looks=False)))
    assert result.sequential is None and result.calls_saved_sequential == 0
    assert result.calls_planned == 60 and len(result.records) == 60


def test_bad_looks_are_a_located_config_error(tmp_path: Path) -> None:
    seq_project(tmp_path, 10, 0.0, {"looks": [0.5, 0.4, 1.0]})
    with pytest.raises(ConfigError) as info:
        load_project(tmp_path)
    text = str(info.value)
    assert "evalgate.yaml" in text and "looks" in text
    seq_project(tmp_path, 10, 0.0, {"looks": [0.5, 0.9]})
    with pytest.raises(ConfigError, match="last look"):
        load_project(tmp_path)


def test_calls_saved_spend_and_wall_time_in_every_report(tmp_path: Path) -> None:
    from evalgate.report import write_all
    from evalgate.report.summary import summary_lines

    result = run_project(load_project(seq_project(tmp_path / "p", 300, 0.0)))
    expected = "100 made (100 HTTP attempts) of 300 planned, 200 saved (0 from cache, 200 by a " \
               "sequential stop after look 1/3"
    terminal = "\n".join(summary_lines(result))
    assert expected in terminal and "wall time" in terminal and "spend $" in terminal
    paths = write_all(result, tmp_path / "reports", step_summary=False)
    texts = {p.suffix: p.read_text() for p in paths}
    assert expected in texts[".md"].replace("\\", "")  # escaped Markdown prose renders it
    assert expected in texts[".html"] and "nominal alpha 0.000687" in texts[".html"]


def test_interim_rate_cap_needs_the_exact_bound_too() -> None:
    """21 of the first 100 hallucinate against a 10% cap: Wilson's 99.93% lower bound (10.5%)
    says FAIL, the exact Clopper-Pearson one (9.9%) does not, so look 1 does not lock it."""
    from evalgate.gate.guardrails import plan_guardrails
    from evalgate.gate.sequential import SequentialGate
    from evalgate.results import Record
    from evalgate.spec.config import GateSettings

    a1 = obf_spending(1 / 3, 0.05)
    assert wilson_bounds(21, 100, a1)[0] > 0.10
    from evalgate.stats import clopper_pearson_bounds
    assert clopper_pearson_bounds(21, 100, a1)[0] < 0.10
    settings = GateSettings.model_validate({"sequential": True,
                                            "metrics": {"hallucination_rate": {"max": 0.10}}})
    gate = SequentialGate(settings, plan_guardrails(settings, False), [1 / 3, 2 / 3, 1.0], 1,
                          lambda r: r)
    keys = [f"s/c{i}" for i in range(300)]
    first = gate.batches(keys)[0]
    recs = [Record(key=keys[i], set="s", case_id=keys[i], ok=True, text="x",
                   hallucination=j < 21, passed=j >= 21, latency_ms=1.0)
            for j, i in enumerate(first)]
    assert gate.after_look(recs) is False
    assert gate.outcomes[0].decided == {} and gate.last[0].verdict == "INCONCLUSIVE"


def test_pytest_skips_the_canaries_a_sequential_stop_left_uncalled(
        pytester: pytest.Pytester) -> None:
    seq_project(pytester.path, 300, 0.0)
    result = pytester.runpytest_subprocess("--evalgate", "-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(passed=100 + 2, skipped=200)
    result.stdout.fnmatch_lines(["*200 saved (0 from cache, 200 by a sequential stop*",
                                 "*not called: sequential gating stopped after look 1/3*"])
    assert result.ret == 0


def test_nothing_selected_with_sequential_on(tmp_path: Path) -> None:
    result = run_project(load_project(seq_project(tmp_path, 30, 0.0)), selected=set())
    assert result.records == [] and result.sequential is None
    assert {v.verdict for v in result.verdicts} == {"INCONCLUSIVE"}


def test_cached_answers_are_replayed_inside_the_looks(tmp_path: Path) -> None:
    """A re-run with the response cache sees the cached answers at the same look (stable
    order) and stops there again without a call; without the replay in place the look would
    see no answer at all."""
    project = seq_project(tmp_path, 300, 0.0)
    first = run_project(load_project(project), cache="on")
    assert first.sequential is not None and first.sequential.looks_done == 1
    assert first.calls_made == 100 and first.calls_from_cache == 0
    again = run_project(load_project(project), cache="on")
    assert again.verdict == "PASS"
    assert again.sequential is not None and again.sequential.looks_done == 1
    assert again.calls_from_cache == 100 and again.calls_made == 0
    assert {r.record_id for r in again.records} == {r.record_id for r in first.records}
    assert all(r.cached and r.passed for r in again.records)


def test_a_fully_cached_rerun_still_takes_its_looks(tmp_path: Path) -> None:
    """Every answer in the cache: the looks still run over the replayed answers, so the
    decision basis (look levels) does not depend on what the cache happened to hold."""
    project = seq_project(tmp_path, 300, 0.0, looks=False)
    whole = run_project(load_project(project), cache="on")
    assert whole.sequential is None and whole.calls_made == 300
    cfg = (project / "evalgate.yaml").read_text()
    (project / "evalgate.yaml").write_text(cfg.replace("sequential: false", "sequential: true"))
    again = run_project(load_project(project), cache="on")
    assert again.sequential is not None and again.sequential.looks_done == 1
    assert again.calls_made == 0 and again.calls_from_cache == 100
