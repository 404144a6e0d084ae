"""Grade a record against its resolved criteria."""

from __future__ import annotations

from evalgate.graders.checks import CHECKS
from evalgate.results import CriterionResult, Record
from evalgate.rubrics import ResolvedCriterion


def grade(record: Record, criteria: list[ResolvedCriterion]) -> Record:
    """Fill in criteria outcomes, pass, score and the hallucination flag (in place).

    A response is a hallucination when any criterion of kind `hallucination` fails. A failed call
    has no answer to grade: its pass/hallucination stay None and it counts in the error rate.
    """
    if not record.ok or record.text is None:
        return record
    results = []
    for criterion in criteria:
        outcome = CHECKS[criterion.check].run(record.text, criterion.params)
        results.append(CriterionResult(id=criterion.id, kind=criterion.kind,
                                       check=criterion.check, passed=outcome.passed,
                                       detail=outcome.detail))
    record.criteria = results
    record.passed = all(r.passed for r in results)
    record.hallucination = any(not r.passed for r in results if r.kind == "hallucination")
    record.score = sum(r.passed for r in results) / len(results) if results else 1.0
    return record
