"""Human review in the gate: verified canaries, the judge against labels (sensitivity,
specificity, Cohen's kappa) and the judge-corrected hallucination rate.

The statistics are checked against hand-computed answers and by seeded simulation; the
correction end to end through the simulator's judge over HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from benchmarks.bench_judge_correction import Scenario, coverage, one_run
from evalgate.errors import ConfigError
from evalgate.gate.guardrails import decide_gate
from evalgate.gate.judge_calibration import VERIFIED, ReviewInputs
from evalgate.results import CriterionResult, Record
from evalgate.sim.judge import judge_reply
from evalgate.spec.config import GateSettings
from evalgate.spec.labels import Label, answer_hash, append_labels, load_labels
from evalgate.spec.sim_profile import SimJudge
from evalgate.stats.diagnostic import (
    MIN_LABELS_PER_CLASS,
    CorrectedRate,
    accuracy,
    cohen_kappa,
    corrected_rate,
    labels_for_classes,
    rogan_gladen,
)
from evalgate.stats.primitives import wilson_bounds

# --------------------------------------------------------------------------- statistics


def test_kappa_of_a_hand_computed_table() -> None:
    # po = 35/50 = 0.7, pe = 0.5 * 0.6 + 0.5 * 0.4 = 0.5, kappa = 0.4
    kappa, se = cohen_kappa(np.array([[20, 5], [10, 15]]))
    assert kappa == pytest.approx(0.4)
    assert 0 < se < 0.2
    perfect, _ = cohen_kappa(np.array([[10, 0], [0, 30]]))
    assert perfect == pytest.approx(1.0)
    assert math.isnan(cohen_kappa(np.array([[40, 0], [0, 0]]))[0])  # one category only


def test_kappa_standard_error_is_the_delta_method_on_the_cells() -> None:
    """Fleiss-Cohen-Everitt's formula against a numerical delta method (gradient of kappa in
    the four cell shares times the multinomial covariance)."""
    table = np.array([[23.0, 7.0], [4.0, 41.0]])
    n = table.sum()
    p = (table / n).ravel()

    def kappa_of(cells: np.ndarray) -> float:
        q = cells.reshape(2, 2) / cells.sum()
        po, pe = np.trace(q), q.sum(axis=1) @ q.sum(axis=0)
        return float((po - pe) / (1 - pe))

    grad = np.array([(kappa_of(p + h) - kappa_of(p - h)) / 2e-6
                     for h in np.eye(4) * 1e-6])
    cov = np.diag(p) - np.outer(p, p)
    _, se = cohen_kappa(table)
    assert se == pytest.approx(math.sqrt(grad @ cov @ grad / n), rel=1e-5)


def test_kappa_interval_covers_by_simulation() -> None:
    rng = np.random.default_rng(7)
    truth_kappa, hits = None, 0
    probs = np.array([0.15, 0.05, 0.08, 0.72])  # tp, fn, fp, tn
    po, pe = 0.87, 0.20 * 0.23 + 0.80 * 0.77
    truth_kappa = (po - pe) / (1 - pe)
    for _ in range(400):
        cells = rng.multinomial(200, probs)
        t = np.repeat([True, True, False, False], cells)
        f = np.repeat([True, False, True, False], cells)
        lo, hi = accuracy(t, f, alpha=0.05).kappa_ci or (math.nan, math.nan)
        hits += lo <= truth_kappa <= hi
    assert 0.85 <= hits / 400 <= 0.95  # a 90% interval


def test_sensitivity_and_specificity_with_wilson_intervals() -> None:
    truth = np.array([True] * 20 + [False] * 80)
    flagged = np.array([True] * 16 + [False] * 4 + [True] * 2 + [False] * 78)
    acc = accuracy(truth, flagged, alpha=0.05)
    assert (acc.true_pos, acc.false_neg, acc.false_pos, acc.true_neg) == (16, 4, 2, 78)
    assert acc.sensitivity == pytest.approx(0.8)
    assert acc.specificity == pytest.approx(78 / 80)
    assert acc.sensitivity_ci == pytest.approx(wilson_bounds(16, 20, 0.05))
    assert acc.specificity_ci == pytest.approx(wilson_bounds(78, 80, 0.05))
    assert acc.agreement == pytest.approx(0.94)


def test_rogan_gladen_known_answer() -> None:
    # true 20%, Se 0.8, Sp 0.98: observed 0.2 * 0.8 + 0.8 * 0.02 = 0.176
    assert rogan_gladen(0.176, 0.8, 0.98) == pytest.approx(0.2)
    assert rogan_gladen(0.01, 0.8, 0.95) == 0.0  # clipped
    assert rogan_gladen(0.01, 0.8, 0.95, clip=False) == pytest.approx(-0.04 / 0.75)
    with pytest.raises(ValueError, match="no better than chance"):
        rogan_gladen(0.2, 0.5, 0.5)


def _world(seed: int, n: int = 400, rate: float = 0.2, miss: float = 0.2, fa: float = 0.02,
           labels: int = 100) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.random(n) < rate
    u = rng.random(n)
    flagged = np.where(truth, u >= miss, u < fa)
    pick = rng.choice(n, labels, replace=False)
    return flagged.astype(float), truth[pick], flagged[pick]


def test_corrected_interval_covers_where_the_observed_one_does_not() -> None:
    """A short version of benchmarks/bench_judge_correction.py on synthetic judge errors."""
    corrected = observed = 0
    runs = 60
    for seed in range(runs):
        cand, truth, flagged = _world(seed)
        cr = corrected_rate(cand, truth, flagged, alpha=0.025, resamples=1000, seed=seed)
        corrected += cr.ci_low <= 0.2 <= cr.ci_high
        lo, hi = wilson_bounds(cand.sum(), cand.size, 0.025)
        observed += lo <= 0.2 <= hi
    assert corrected / runs >= 0.93
    assert observed / runs <= 0.85


def test_paired_correction_scales_the_difference_by_youden() -> None:
    cand, truth, flagged = _world(3)
    base = np.roll(cand, 1) * 0.5
    cr = corrected_rate(cand, truth, flagged, base=base, resamples=500)
    youden = cr.sensitivity + cr.specificity - 1
    assert cr.observed == pytest.approx(cand.mean() - base.mean())
    assert cr.candidate - (cr.baseline or 0) == pytest.approx(cr.estimate)
    assert cr.estimate == pytest.approx(cr.observed / youden, abs=0.02)  # up to clipping
    assert cr.ci_low < cr.estimate < cr.ci_high


def test_too_few_labels_and_how_many_more() -> None:
    cand, truth, flagged = _world(1, labels=30)
    with pytest.raises(ValueError, match=f"need {MIN_LABELS_PER_CLASS} of each"):
        corrected_rate(cand, truth[:20], flagged[:20])
    assert labels_for_classes(4, 60, 0.1) == 60  # 6 more positives at 10% each
    assert labels_for_classes(10, 10, 0.5) == 0
    cr = CorrectedRate(observed=0.18, estimate=0.2, ci_low=0.1, ci_high=0.3, candidate=0.2,
                       baseline=None, sensitivity=0.8, specificity=0.98, n_canaries=400,
                       n_labels=100, sd_canaries=0.02, sd_labels=0.07, alpha=0.05)
    more = cr.labels_to_decide(0.3)
    assert more == 49  # 0.1 = z * sqrt(0.02^2 + 0.07^2 * 100 / (100 + 49)), z = 1.645
    assert 1.6448536 * math.sqrt(0.02**2 + 0.07**2 * 100 / (100 + more)) <= 0.1
    assert cr.labels_to_decide(0.5) == 0  # already clear of the bound
    assert cr.labels_to_decide(0.21) is None  # the canaries' own noise is too large


# --------------------------------------------------------------------------- the gate


def rec(i: int, hallucination: bool, *, config: str = "candidate", text: str | None = None
        ) -> Record:
    key = f"s/c{i}"
    return Record(key=key, set="s", case_id=f"c{i}", config=config, ok=True,
                  text=text or f"answer {i} {hallucination}", latency_ms=10.0, cost_usd=0.0,
                  hallucination=hallucination, passed=not hallucination, score=1.0,
                  criteria=[CriterionResult(id="no-made-up", kind="hallucination",
                                            check="judge", passed=not hallucination,
                                            detail="")])


def lab(record: Record, label: str, reviewer: str = "ann", at: str = "2025-01-01") -> Label:
    return Label(canary=record.key, answer=answer_hash(record.text), label=label,
                 reviewer=reviewer, at=at)


def inputs(records: list[Record], verified: set[str] = frozenset(),  # type: ignore[assignment]
           labels: list[Label] | None = None) -> ReviewInputs:
    return ReviewInputs(frozenset(r.key for r in records), frozenset(verified),
                        tuple(labels or []))


def gate(**kw: object) -> GateSettings:
    return GateSettings.model_validate({"metrics": {"hallucination_rate": {"max": 0.5}}, **kw})


def test_min_verified_makes_the_gate_inconclusive_with_the_reason() -> None:
    records = [rec(i, False) for i in range(40)]
    out = decide_gate(gate(min_verified=30), records, None, 1,
                      inputs(records, {r.key for r in records[:12]}))
    verdict = {v.guardrail: v for v in out["verdicts"]}[VERIFIED]
    assert verdict.verdict == "INCONCLUSIVE" and out["verdict"] == "INCONCLUSIVE"
    assert "12 of 40 canaries are verified" in verdict.reason
    assert "verify 18 more" in verdict.reason
    assert out["review"].verified == 12
    done = decide_gate(gate(min_verified=30), records, None, 1,
                       inputs(records, {r.key for r in records}))
    assert done["verdict"] == "PASS"


def test_verified_only_gates_on_the_verified_canaries() -> None:
    records = [rec(i, i >= 30) for i in range(40)]  # the 10 unverified ones hallucinate
    verified = {r.key for r in records[:30]}
    out = decide_gate(gate(verified_only=True), records, None, 1, inputs(records, verified))
    [v] = out["verdicts"]
    assert v.n_canaries == 30 and v.value == 0.0
    assert out["metrics"]["hallucination_rate"] == 0.0
    assert decide_gate(gate(), records, None, 1)["metrics"]["hallucination_rate"] == 0.25


def test_judge_accuracy_is_reported_per_criterion() -> None:
    records = [rec(i, i < 20) for i in range(100)]
    # people: the judge flagged 20 answers; 4 of them are fine, and 5 it passed are not
    labels = [lab(r, "correct" if i < 4 or i >= 25 else "hallucination")
              for i, r in enumerate(records[:40])]
    labels[-1] = lab(records[39], "unsure")
    out = decide_gate(gate(), records, None, 1, inputs(records, labels=labels))
    overall, crit = out["review"].judge
    assert (overall.criterion, crit.criterion) == ("hallucination", "no-made-up")
    assert overall.n == 39  # the unsure one does not count
    assert (overall.true_pos, overall.false_pos, overall.false_neg) == (16, 4, 5)
    assert crit.sensitivity == overall.sensitivity == pytest.approx(16 / 21)


def test_min_judge_kappa_makes_judged_guardrails_inconclusive() -> None:
    records = [rec(i, i % 3 == 0) for i in range(60)]
    settings = gate(min_judge_kappa=0.6, metrics={"hallucination_rate": {"max": 0.5},
                                                  "error_rate": {"max": 0.1}})
    none = decide_gate(settings, records, None, 1, inputs(records))
    by = {v.guardrail: v for v in none["verdicts"]}
    assert by["hallucination_rate"].verdict == "INCONCLUSIVE"
    assert "no labelled answer measures the judge" in by["hallucination_rate"].reason
    assert by["error_rate"].verdict == "PASS"  # not a judged metric
    # people disagree with the judge on half the answers: kappa about 0
    labels = [lab(r, "hallucination" if i % 2 else "correct") for i, r in enumerate(records)]
    bad = {v.guardrail: v for v in decide_gate(settings, records, None, 1,
                                               inputs(records, labels=labels))["verdicts"]}
    assert "below gate.min_judge_kappa 0.6" in bad["hallucination_rate"].reason
    good = [lab(r, "hallucination" if r.hallucination else "correct") for r in records]
    ok = decide_gate(settings, records, None, 1, inputs(records, labels=good))
    assert {v.verdict for v in ok["verdicts"]} == {"PASS"}
    assert ok["review"].judge[0].kappa == pytest.approx(1.0)


def test_conflicting_labels_are_kept_and_agreement_reported(tmp_path: Path) -> None:
    records = [rec(i, False) for i in range(4)]
    path = tmp_path / "labels" / "review.jsonl"
    append_labels(path, [lab(records[0], "correct", "ann"), lab(records[0], "correct", "bob"),
                         lab(records[1], "correct", "ann"),
                         lab(records[1], "hallucination", "bob")])
    append_labels(path, [lab(records[2], "hallucination", "ann", "2025-01-01"),
                         lab(records[2], "correct", "ann", "2025-02-01")])  # ann changed mind
    loaded = load_labels(tmp_path / "labels")
    assert len(loaded) == 6 and len(path.read_text().splitlines()) == 6  # nothing dropped
    info = decide_gate(gate(), records, None, 1, inputs(records, labels=loaded))["review"]
    assert (info.multi_labelled, info.conflicts, info.reviewer_agreement) == (2, 1, 0.5)
    assert info.labelled_answers == 2  # records 0 and 2; the conflicted one is left out
    assert any("conflicting labels" in note for note in info.notes)


def test_labels_for_unknown_canaries_and_answers_are_named() -> None:
    records = [rec(i, False) for i in range(3)]
    stray = Label(canary="s/gone", answer="0" * 16, label="correct", reviewer="ann", at="x")
    old = Label(canary="s/c1", answer="f" * 16, label="correct", reviewer="ann", at="x")
    info = decide_gate(gate(), records, None, 1,
                       inputs(records, labels=[stray, old]))["review"]
    assert info.unknown_canaries == ["s/gone"]
    assert info.unmatched_labels == 2 and info.labelled_answers == 0
    assert "s/gone" in info.notes[0]


def test_malformed_label_files_are_located_errors(tmp_path: Path) -> None:
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.jsonl").write_text(
        '{"canary": "s/c1", "answer": "ab", "label": "correct", "reviewer": "r", "at": "t"}\n'
        '{"canary": "s/c1", "answer": "ab", "label": "great", "reviewer": "r", "at": "t"}\n')
    (tmp_path / "labels" / "b.jsonl").write_text("{not json\n")
    with pytest.raises(ConfigError) as err:
        load_labels(tmp_path / "labels", tmp_path)
    text = str(err.value)
    assert "labels/a.jsonl:2" in text and "label" in text
    assert "labels/b.jsonl:1" in text and "invalid JSON" in text


def test_correct_for_judge_with_too_few_labels_says_how_many_more() -> None:
    records = [rec(i, i % 5 == 0) for i in range(100)]
    labels = [lab(r, "hallucination" if r.hallucination else "correct") for r in records[:20]]
    out = decide_gate(gate(correct_for_judge=True), records, None, 1,
                      inputs(records, labels=labels))
    [v] = out["verdicts"]
    assert v.verdict == "INCONCLUSIVE"
    assert "4 labelled hallucination(s)" in v.reason and "label about 30 more" in v.reason


def test_correct_for_judge_on_the_paired_comparison() -> None:
    """The judge misses a quarter of the hallucinations on both configs: the corrected
    difference is larger than the observed one, and the verdict rests on it."""
    rng = np.random.default_rng(5)
    cand, base, labels = [], [], []
    for i in range(300):
        truth_c, truth_b = rng.random() < 0.30, rng.random() < 0.10
        seen_c = truth_c and rng.random() >= 0.25
        seen_b = truth_b and rng.random() >= 0.25
        cand.append(rec(i, seen_c, text=f"c{i}"))
        base.append(rec(i, seen_b, config="baseline", text=f"b{i}"))
        if i < 150:
            labels.append(lab(cand[-1], "hallucination" if truth_c else "correct"))
    settings = GateSettings.model_validate({"correct_for_judge": True, "vs_baseline": {
        "hallucination_rate": 0.12, "pass_rate": None, "cost_ratio": None,
        "latency_ratio": None, "p95_ratio": None, "error_rate": None}})
    out = decide_gate(settings, cand, base, 1, inputs(cand, labels=labels))
    [v] = out["verdicts"]
    [fixed] = out["review"].corrected
    assert fixed.estimate > fixed.observed > 0
    assert v.effect == pytest.approx(fixed.estimate)
    assert "judge-corrected hallucination difference" in v.reason
    assert "corrected for the judge" in v.test
    assert v.verdict == "FAIL"


# --------------------------------------------------------------------------- simulator


def test_simulated_judge_misses_and_false_alarms_at_their_rates() -> None:
    prompt = ("Untrusted answer fence: F\nREFERENCE FACTS:\n- 30 days\n\n<<<F\n{}\nF>>>\n")
    wrong = [json.loads(judge_reply(SimJudge(miss_rate=0.2), prompt.format("It is 90 days."),
                                    0, str(s)))["verdict"] for s in range(2000)]
    right = [json.loads(judge_reply(SimJudge(false_alarm_rate=0.05),
                                    prompt.format("It is 30 days."), 0, str(s)))["verdict"]
             for s in range(2000)]
    assert 0.17 < wrong.count("PASS") / 2000 < 0.23
    assert 0.03 < right.count("FAIL") / 2000 < 0.07
    plain = judge_reply(SimJudge(), prompt.format("It is 90 days."), 0, "0")
    assert json.loads(plain)["verdict"] == "FAIL"


def test_correction_through_the_simulator_over_http() -> None:
    """Short version of the benchmark: real runs on the simulator, labels from its truth."""
    sc = Scenario(canaries=300)
    outcomes = [one_run(seed, sc) for seed in range(3)]
    out = coverage(outcomes, sc.rate)
    assert out["corrected_coverage"] == 1.0
    assert out["mean_observed"] < sc.rate - 0.015  # the judge's misses bias it down
    assert abs(out["mean_corrected"] - sc.rate) < abs(out["mean_observed"] - sc.rate)


def test_verified_marks_load_and_leave_the_fingerprint_alone(tmp_path: Path) -> None:
    from evalgate.pipeline.project import load_project
    from tests.conftest import make_cases, sim_model, write_project

    cases = make_cases(3)
    write_project(tmp_path, model=sim_model(), cases=cases)
    before = load_project(tmp_path).canary_fingerprint()
    cases[0]["verified"] = {"by": "ann", "at": "2025-03-01"}
    write_project(tmp_path, model=sim_model(), cases=cases)
    project = load_project(tmp_path)
    assert project.canary_fingerprint() == before
    assert [e.case.verified.by if e.case.verified else None for e in project.entries] == \
        ["ann", None, None]
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "x.jsonl").write_text('{"canary": 1}\n')
    with pytest.raises(ConfigError, match=r"labels/x.jsonl:1"):
        load_project(tmp_path)


def test_reports_show_the_review(tmp_path: Path) -> None:
    from evalgate.pipeline.project import load_project
    from evalgate.pipeline.run import run_project
    from evalgate.report.html import render_html
    from evalgate.report.markdown import render_markdown
    from evalgate.report.summary import summary_lines
    from tests.conftest import make_cases, sim_model, write_project

    cases = make_cases(8)
    cases[0]["verified"] = {"by": "ann", "at": "2025-03-01"}
    write_project(tmp_path, model=sim_model(), cases=cases, gate={"gate": {"min_verified": 5}})
    first = run_project(load_project(tmp_path))
    append_labels(tmp_path / "labels" / "ann.jsonl",
                  [lab(r, "correct") for r in first.records[:3]])
    result = run_project(load_project(tmp_path))
    assert result.verdict == "INCONCLUSIVE"
    assert result.review is not None and result.review.labelled_answers == 3
    lines = "\n".join(summary_lines(result))
    assert "verified canaries: 1 of 8 canaries (gate.min_verified 5)" in lines
    assert "labels: 3 on file, 3 match this run's answers" in lines
    [line] = [x for x in render_markdown(result).splitlines() if x.startswith("Human review")]
    assert "1 of 8 canaries" in line and "3 on file" in line
    assert "1 of 8 canaries (gate.min_verified 5)" in render_html(result)
