"""Grade a record against its resolved criteria; the grading phase with the judge's calls."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evalgate.engine.persist import open_cache
from evalgate.grading.checks import CHECKS, run_check
from evalgate.grading.judge import JudgeKey, JudgeOutcome, JudgeRequest, JudgeRun, run_judge
from evalgate.grading.rubrics import ResolvedCriterion
from evalgate.results import ClaimResult, CriterionResult, IfJudged, Record, ToolCall
from evalgate.sim.launch import simulator_for
from evalgate.text.grounding import split_and_score

NOT_JUDGED = "not judged: no judge verdict for this criterion (is a judge model configured?)"


def _key(record: Record, criterion_id: str, claim: int = -1) -> JudgeKey:
    return (record.config, record.record_id, criterion_id, claim)


def grade(record: Record, criteria: list[ResolvedCriterion], judged: JudgeRun | None = None,
          min_score: float | None = None) -> Record:
    """Fill in criteria outcomes, pass, score and the hallucination flag (in place).

    A response is a hallucination when any criterion of kind `hallucination` fails. The score
    is the weighted share of criteria that hold. It passes when every criterion holds, or,
    with `min_score`, when the score reaches it and no hallucination criterion failed. A
    failed call has no answer to grade: its pass/hallucination stay None (error rate).
    """
    if not record.ok or record.text is None:
        return record
    outcomes = judged.outcomes if judged is not None else {}
    results = []
    for criterion in criteria:
        if criterion.check == "judge":
            result = _judge_result(record, criterion, outcomes.get(_key(record, criterion.id)))
        elif criterion.check == "grounded":
            result = _grounded_result(record, criterion, outcomes)
        else:
            params = {**criterion.params, "output_tokens": record.output_tokens,
                      "tool_calls": [t.model_dump() for t in record.tool_calls]}
            outcome = run_check(criterion.check, record.text, params)
            result = CriterionResult(id=criterion.id, kind=criterion.kind,
                                     check=criterion.check, passed=outcome.passed,
                                     detail=outcome.detail)
        result.weight = criterion.weight
        results.append(result)
    record.criteria = results
    record.score, record.hallucination, record.passed = settle(results, min_score)
    record.if_judged = None
    if any(r.passed_if_judged is not None for r in results):
        best = [r.model_copy(update={"passed": r.passed_if_judged})
                if r.passed_if_judged is not None else r for r in results]
        score, hallucination, passed = settle(best, min_score)
        record.if_judged = IfJudged(passed=passed, hallucination=hallucination, score=score)
    if judged is not None:
        owner = (record.config, record.record_id)
        record.judge_calls = judged.calls_by_record.get(owner, 0)
        record.judge_cost_usd = judged.cost_by_record.get(owner, 0.0)
    return record


def settle(results: list[CriterionResult], min_score: float | None
           ) -> tuple[float, bool, bool]:
    """(score, hallucination, passed) of an answer from its criteria's outcomes."""
    total = sum(r.weight for r in results)
    score = (sum(r.weight for r in results if r.passed) / total) if total > 0 else \
        float(all(r.passed for r in results))
    hallucination = any(not r.passed for r in results if r.kind == "hallucination")
    if min_score is None:
        return score, hallucination, all(r.passed for r in results)
    return score, hallucination, score >= min_score - 1e-12 and not hallucination


def _judge_result(record: Record, criterion: ResolvedCriterion,
                  outcome: JudgeOutcome | None) -> CriterionResult:
    base = {"id": criterion.id, "kind": criterion.kind, "check": "judge"}
    name = criterion.params.get("template")
    if outcome is None:
        return CriterionResult(**base, passed=False, detail=NOT_JUDGED, error=NOT_JUDGED,
                               passed_if_judged=True)
    votes = outcome.votes if len(outcome.votes) > 1 else []
    if outcome.verdict is None:
        return CriterionResult(**base, passed=False, detail=f"judge error ({name}): "
                               f"{outcome.error}", error=outcome.error, votes=votes,
                               passed_if_judged=True)
    tally = f" [{outcome.votes.count('PASS')}/{len(outcome.votes)} PASS]" if votes else ""
    return CriterionResult(**base, passed=outcome.verdict == "PASS",
                           detail=f"judge ({name}) {outcome.verdict}{tally}: {outcome.reason}",
                           votes=votes, agreement=outcome.agreement,
                           passed_if_judged=True if fail_by_errors(outcome) else None)


def fail_by_errors(outcome: JudgeOutcome) -> bool:
    """A FAIL that error votes decided: had they been PASS votes, the majority was PASS."""
    votes = outcome.votes
    return outcome.verdict == "FAIL" and "ERROR" in votes and \
        (votes.count("PASS") + votes.count("ERROR")) * 2 > len(votes)


def _grounded_result(record: Record, criterion: ResolvedCriterion,
                     outcomes: dict[JudgeKey, JudgeOutcome]) -> CriterionResult:
    p = criterion.params
    base = {"id": criterion.id, "kind": criterion.kind, "check": "grounded"}
    if not p.get("context"):
        return CriterionResult(**base, passed=True, detail="the case has no context to "
                               "ground against; not checked")
    scored = split_and_score(record.text or "", p["context"], p["supported_at"],
                             p["unsupported_below"])
    claims: list[ClaimResult] = []
    errors = []
    decided_bad = 0  # unsupported claims that no judge error decided
    hinged = 0  # unsupported claims that a judge error decided
    for i, s in enumerate(scored):
        status, by, why = s.status, "lexical", s.why
        if status == "undecided":
            if p["undecided"] == "judge":
                got = outcomes.get(_key(record, criterion.id, i))
                by = "judge"
                if got is None:
                    status, why = "unsupported", NOT_JUDGED
                    errors.append(NOT_JUDGED)
                elif got.verdict is None:
                    status, why = "unsupported", f"judge error: {got.error}"
                    errors.append(got.error or "judge error")
                else:
                    status = "supported" if got.verdict == "PASS" else "unsupported"
                    why = f"{why}; judge {got.verdict}: {got.reason}"
                    if fail_by_errors(got):
                        hinged += 1
                    else:
                        decided_bad += status == "unsupported"
            else:
                status = "supported" if p["undecided"] == "pass" else "unsupported"
                by = f"undecided -> {p['undecided']}"
                decided_bad += status == "unsupported"
        else:
            decided_bad += status != "supported"
        claims.append(ClaimResult(text=s.text, support=round(s.support, 3), status=status,
                                  by=by, detail=why))
    bad = [c for c in claims if c.status != "supported"]
    if bad:
        shown = "; ".join(f"{c.text[:80]!r} ({c.detail})" for c in bad[:3])
        detail = f"{len(bad)} of {len(claims)} claim(s) unsupported: {shown}"
    else:
        judged = sum(1 for c in claims if c.by == "judge")
        detail = f"all {len(claims)} claim(s) supported by the context" + (
            f" ({judged} decided by the judge)" if judged else "")
    return CriterionResult(**base, passed=not bad, detail=detail, claims=claims,
                           error=errors[0] if errors else None,
                           passed_if_judged=True if (errors or hinged) and not decided_bad
                           else None)


def judge_requests(record: Record, entry: Any) -> list[JudgeRequest]:
    """What the judge must decide for this record: each `judge` criterion (x judge_samples),
    and each claim the lexical grounding pass left undecided."""
    if not record.ok or record.text is None:
        return []
    out = []
    base = record.sample * 100_000
    for criterion in entry.criteria:
        p = criterion.params
        if criterion.check == "judge":
            out.append(JudgeRequest(_key(record, criterion.id), entry, p["template_text"],
                                    record.text, p.get("instructions"), p["judge_samples"],
                                    base))
        elif criterion.check == "grounded" and p.get("context") and p["undecided"] == "judge":
            scored = split_and_score(record.text, p["context"], p["supported_at"],
                                     p["unsupported_below"])
            for i, s in enumerate(scored):
                if s.status == "undecided":
                    out.append(JudgeRequest(_key(record, criterion.id, i), entry,
                                            faithfulness_template(), s.text, None, 1,
                                            base + 1000 * (i + 1)))
    return out


_FAITHFULNESS: list[str] = []


def faithfulness_template() -> str:
    if not _FAITHFULNESS:
        from importlib.resources import files

        _FAITHFULNESS.append((files("evalgate.grading") / "judge_templates" /
                              "faithfulness.j2").read_text("utf-8"))
    return _FAITHFULNESS[0]


@dataclass
class GradingSummary:
    """What the run result reports about the grading phase."""

    judge_model: str | None = None
    judge_calls: int = 0
    judge_cost_usd: float = 0.0
    judge_errors: int = 0
    judge_agreement: float | None = None
    judge_calls_from_cache: int = 0

    def fields(self) -> dict[str, Any]:
        return dict(self.__dict__)


def combine_gradings(parts: Sequence[GradingSummary]) -> GradingSummary:
    """One summary for grading done in batches (the looks of a sequential run)."""
    judged = [p for p in parts if p.judge_agreement is not None]
    weight = sum(p.judge_calls for p in judged)
    return GradingSummary(
        judge_model=next((p.judge_model for p in parts if p.judge_model), None),
        judge_calls=sum(p.judge_calls for p in parts),
        judge_cost_usd=sum(p.judge_cost_usd for p in parts),
        judge_errors=sum(p.judge_errors for p in parts),
        judge_agreement=(sum(p.judge_agreement * p.judge_calls for p in judged  # type: ignore[operator]
                             ) / weight if weight else None),
        judge_calls_from_cache=sum(p.judge_calls_from_cache for p in parts))


def needs_judge(entries: Sequence[Any]) -> bool:
    return any(c.check == "judge" or (c.check == "grounded" and c.params["undecided"] == "judge"
                                      and c.params.get("context"))
               for e in entries for c in e.criteria)


def grading_phase(project: Any, records: Sequence[Record], concurrency: int,
                  cache_mode: str = "off") -> GradingSummary:
    """Ask the judge what the rubrics need (after all model calls), then grade every record
    with the verdicts and its rubric's pass rule. `cache_mode` is the run's response cache
    mode: judge verdicts are cached like answers."""
    entries = project.entries_by_key()
    judged = JudgeRun()
    judge_model = getattr(project, "judge", None)
    if judge_model is not None:
        requests = [req for r in records for req in judge_requests(r, entries[r.key])]
        if requests:
            cache, _ = open_cache(project.gate.root, cache_mode)  # unusable: judge calls made
            try:
                with simulator_for([judge_model], project.entries) as sim_url:
                    judged = run_judge(judge_model, requests, concurrency,
                                       project.gate.config.gate.seed + 7, sim_url, cache)
            finally:
                if cache is not None:
                    cache.close()
    for record in records:
        entry = entries[record.key]
        record.images = [i.name for i in entry.case.image_refs()]
        expected = entry.case.expected.tool_call
        if expected is not None:  # shown beside the answer's calls in the reports
            shown = expected.model_dump(mode="json", exclude_none=True, exclude={"name"})
            record.expected_tool_call = ToolCall(name=expected.name, arguments=(
                shown.get("arguments") if list(shown) == ["arguments"] else shown or None))
        grade(record, entry.criteria, judged, getattr(entry, "min_score", None))
    agreements = [o.agreement for o in judged.outcomes.values() if o.agreement is not None]
    return GradingSummary(
        judge_model=judged.model, judge_calls=judged.calls,
        judge_cost_usd=judged.cost_usd,
        judge_errors=sum(1 for o in judged.outcomes.values() if o.verdict is None),
        judge_agreement=sum(agreements) / len(agreements) if agreements else None,
        judge_calls_from_cache=judged.from_cache)


__all__ = ["CHECKS", "combine_gradings", "grade", "grading_phase", "judge_requests"]
