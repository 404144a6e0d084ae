"""Records to guardrail verdicts: per-canary averaging, pairing, and undecidable data."""

from __future__ import annotations

from evalgate.gate.guardrails import evaluate, paired, per_canary, plan_guardrails
from evalgate.results import Record
from evalgate.spec.config import GateSettings


def record(key: str, sample: int, *, ok: bool = True, hallucination: bool | None = False,
           cost: float | None = 0.0, latency: float = 100.0, config: str = "candidate"
           ) -> Record:
    return Record(key=key, set="s", case_id=key, sample=sample, config=config, ok=ok,
                  text="x" if ok else None, latency_ms=latency if ok else None,
                  cost_usd=cost if ok else None,
                  hallucination=hallucination if ok else None,
                  passed=(not hallucination) if ok else None)


def test_plan_names_every_guardrail_in_config_order() -> None:
    settings = GateSettings.model_validate({"metrics": {"latency_p99_ms": {"max": 5},
                                                        "error_rate": {"max": 0.1}},
                                            "vs_baseline": {"cost_ratio": None}})
    assert [g.name for g in plan_guardrails(settings, False)] == ["latency_p99_ms", "error_rate"]
    plan = plan_guardrails(settings, True)
    assert [g.name for g in plan] == [
        "latency_p99_ms", "error_rate", "hallucination_rate_vs_baseline",
        "pass_rate_vs_baseline", "error_rate_vs_baseline", "latency_ratio_vs_baseline",
        "p95_ratio_vs_baseline"]
    assert [g.kind for g in plan[:2]] == ["point", "rate_cap"]


def test_samples_are_averaged_per_canary_and_errors_left_out() -> None:
    records = [record("a", 0, hallucination=True), record("a", 1), record("a", 2, ok=False),
               record("b", 0), record("c", 0, ok=False)]
    rates = per_canary(records, lambda r: None if r.hallucination is None
                       else float(r.hallucination))
    assert rates == {"a": 0.5, "b": 0.0}
    cand, base = paired(rates, {"b": 1.0, "a": 0.25, "z": 0.0})
    assert list(cand) == [0.5, 0.0] and list(base) == [0.25, 1.0]  # sorted keys, intersection


def test_a_ratio_to_a_free_baseline_is_inconclusive_not_a_crash() -> None:
    settings = GateSettings.model_validate({"vs_baseline": {"hallucination_rate": None,
                                                            "pass_rate": None,
                                                            "error_rate": None,
                                                            "latency_ratio": None,
                                                            "p95_ratio": None}})
    plan = plan_guardrails(settings, True)
    cand = [record(f"k{i}", 0, cost=0.001) for i in range(40)]
    base = [record(f"k{i}", 0, cost=0.0, config="baseline") for i in range(40)]
    [verdict] = evaluate(settings, plan, cand, base, {}, 1)
    assert verdict.guardrail == "cost_ratio_vs_baseline"
    assert verdict.verdict == "INCONCLUSIVE"
    assert verdict.reason.startswith("cannot decide cost_ratio_vs_baseline: ")
    assert verdict.n_canaries == 40


def test_rubric_score_guardrail_is_opt_in_and_paired() -> None:
    assert "score_vs_baseline" not in [g.name for g in plan_guardrails(GateSettings(), True)]
    settings = GateSettings.model_validate({"vs_baseline": {
        "hallucination_rate": None, "pass_rate": None, "error_rate": None, "cost_ratio": None,
        "latency_ratio": None, "p95_ratio": None, "score": 0.05}})
    plan = plan_guardrails(settings, True)
    cand = [record(f"k{i}", 0).model_copy(update={"score": 0.5}) for i in range(40)]
    base = [record(f"k{i}", 0, config="baseline").model_copy(update={"score": 1.0})
            for i in range(40)]
    [verdict] = evaluate(settings, plan, cand, base, {}, 1)
    assert verdict.guardrail == "score_vs_baseline" and verdict.worse == "lower"
    assert verdict.effect == -0.5 and verdict.verdict == "FAIL"
