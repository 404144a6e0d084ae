"""Records -> graded records: rubrics resolved per canary (`rubrics`), deterministic checks and
their registry (`checks`, custom checks included), grounding against a context, the judge model
(`judge`: fenced untrusted answers, strict verdicts) and the pass rule (`grade`)."""

from __future__ import annotations

from evalgate.grading.checks import CHECKS, CheckRegistry, run_check
from evalgate.grading.grade import GradingSummary, grade, grading_phase
from evalgate.grading.rubrics import CaseEntry, ResolvedCriterion, Rubric, load_rubric

__all__ = ["CHECKS", "CaseEntry", "CheckRegistry", "GradingSummary", "ResolvedCriterion",
           "Rubric", "grade", "grading_phase", "load_rubric", "run_check"]
