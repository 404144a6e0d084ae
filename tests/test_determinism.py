"""Determinism: repeated canaries against simulator profiles with a known agreement rate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from scipy import stats

from evalgate.gate.baseline import resolve
from evalgate.gate.determinism import agreement_flags, normalize, select
from evalgate.pipeline.project import load_project
from evalgate.pipeline.run import run_project
from evalgate.results import Record
from tests.conftest import make_cases, sim_model, write_project


def run(root: Path, determinism: dict[str, Any], cand: dict[str, Any],
        base: dict[str, Any] | None = None, n: int = 120) -> Any:
    write_project(root, model=cand, cases=make_cases(n),
                  gate={"determinism": determinism, "concurrency": 16})
    if base is not None:
        (root / "models" / "baseline.yaml").write_text(yaml.safe_dump(base))
    project = load_project(root)
    baseline = resolve("models/baseline.yaml", project.gate) if base is not None else None
    return run_project(project, baseline=baseline)


def test_measured_agreement_matches_the_profile(tmp_path: Path) -> None:
    """The simulator makes each canary stable with p = 0.7 (seeded per canary): the measured
    share of agreeing canaries is inside the two-sided 99.9% binomial acceptance region."""
    p, n = 0.7, 120
    result = run(tmp_path, {"repeats": 4, "min_agreement": 0.4},
                 sim_model(determinism=p, seed=11), n=n)
    det = result.determinism.candidate
    assert det.canaries == n and det.repeats == 4 and det.errors == 0
    low, high = stats.binom.ppf([0.0005, 0.9995], n, p) / n
    assert low <= det.exact_agreement <= high
    # An unstable canary words each repeat differently, so folding case and punctuation does
    # not make it agree; its facts stay, so its rubric score does not move.
    assert det.normalized_agreement == det.exact_agreement
    assert det.score_stdev_mean == 0.0 and det.score_range_max == 0.0
    assert len(det.disagreeing) == round((1 - det.exact_agreement) * n)
    verdict = next(v for v in result.verdicts if v.guardrail == "determinism.agreement")
    assert verdict.verdict == "PASS"
    assert result.verdict == "PASS"


def test_compared_with_a_less_deterministic_baseline_and_score_spread(tmp_path: Path) -> None:
    cand = sim_model(determinism=0.3, hallucination_rate=0.3, seed=2)
    base = {**sim_model(determinism=1.0, seed=2), "model": "base-m"}
    result = run(tmp_path, {"repeats": 3, "canaries": {"tags": ["even"]},
                            "min_agreement": 0.8, "max_agreement_drop": 0.1}, cand, base, n=80)
    det = result.determinism
    assert det.candidate.canaries == 40 and det.baseline.canaries == 40
    assert det.baseline.exact_agreement == 1.0
    assert det.candidate.exact_agreement < 0.6
    # hallucinations are drawn per repeat, so scores spread on some canaries: a hallucinated
    # answer fails one of the rubric's two criteria (score 0.5 instead of 1.0)
    assert det.candidate.score_range_max == 0.5 and det.candidate.score_stdev_mean > 0
    assert det.baseline.score_range_max == 0.0
    verdicts = {v.guardrail: v for v in result.verdicts}
    assert verdicts["determinism.agreement"].verdict == "FAIL"
    assert verdicts["determinism.agreement_vs_baseline"].verdict == "FAIL"
    assert verdicts["determinism.agreement_vs_baseline"].baseline == 1.0


def test_normalize_and_flags() -> None:
    assert normalize("  The answer:\n30 DAYS. ") == normalize("the answer 30 days") == \
        "the answer 30 days"
    recs = [Record(key=k, set="s", case_id=k, ok=True, text=t) for k, t in
            [("a", "Yes."), ("a", "yes"), ("b", "x"), ("b", "x"), ("c", "1"), ("c", "2")]]
    recs.append(Record(key="d", set="s", case_id="d", ok=False))
    assert agreement_flags(recs) == {"a": (False, True), "b": (True, True), "c": (False, False),
                                     "d": None}


@pytest.mark.parametrize("selector, expected", [
    ({}, 6), ({"tags": ["odd"]}, 3), ({"ids": ["c1", "set/c2"]}, 2), ({"count": 4}, 4),
    ({"tags": ["even"], "count": 2}, 2)])
def test_selector(tmp_path: Path, selector: dict[str, Any], expected: int) -> None:
    from evalgate.spec.production import DeterminismSpec

    write_project(tmp_path, model=sim_model(), cases=make_cases(6))
    project = load_project(tmp_path)
    assert len(select(project.entries, DeterminismSpec(canaries=selector))) == expected
