"""Decide the gate from two saved runs, without calling any model.

For CI setups that run the candidate and the baseline in separate jobs (or keep the main
branch's result as an artifact): the candidate's answers are compared canary by canary with the
baseline run's, using the candidate's gate settings and the grades both runs stored. Unlike a
saved baseline inside `pytest --evalgate`, nothing is re-graded (there may be no rubric files
here), so differing rubric fingerprints are a warning in every report.
"""

from __future__ import annotations

from evalgate.gate.guardrails import decide_gate, fallback_warnings, power_warnings
from evalgate.gate.production import redecided_extras
from evalgate.gate.verdicts import overall_verdict
from evalgate.results import BaselineInfo, ComparisonInfo, Record, RunResult
from evalgate.spec.config import GateSettings

BASELINE = "baseline"


def gate_settings(candidate: RunResult, alpha: float | None = None) -> GateSettings:
    """The gate settings the candidate run used (a GateSettings dump), `alpha` overridden."""
    data = dict(candidate.gate) or {"alpha": candidate.alpha,
                                    "on_inconclusive": candidate.on_inconclusive}
    if alpha is not None:
        data["alpha"] = alpha
    return GateSettings.model_validate(data)


def align_keys(baseline: RunResult, keys: set[str], fingerprints: dict[str, str]
               ) -> tuple[set[str], ComparisonInfo, list[str]]:
    """Which of this run's canaries the baseline run can be compared on: those it has, left
    out where a canary changed (both fingerprints known and different), the rest listed."""
    stored = {r.key for r in baseline.records}
    changed = sorted(
        k for k in keys & stored
        if None not in (baseline.case_fingerprints.get(k), fingerprints.get(k))
        and baseline.case_fingerprints[k] != fingerprints[k])
    usable = (keys & stored) - set(changed)
    comparison = ComparisonInfo(compared=len(usable), missing_in_baseline=sorted(keys - stored),
                                changed=changed, extra_in_baseline=sorted(stored - keys))
    warnings = []
    if not usable:
        warnings.append(f"the baseline run {baseline.run_id} has no canary in common with this "
                        "run: nothing to compare")
    return usable, comparison, warnings + comparison_warnings(comparison)


def comparison_warnings(comparison: ComparisonInfo) -> list[str]:
    """What a reader must know about canaries the comparison had to leave out."""
    warnings = []
    if comparison.missing_in_baseline:
        warnings.append(f"{len(comparison.missing_in_baseline)} canary(ies) are not in the "
                        "baseline run: compared on the intersection only")
    if comparison.changed:
        warnings.append(f"{len(comparison.changed)} canary(ies) changed since the baseline run "
                        f"(e.g. {comparison.changed[0]}): left out of the comparison")
    return warnings


def align(baseline: RunResult, candidate: RunResult
          ) -> tuple[list[Record], ComparisonInfo, list[str]]:
    """The baseline run's records on the candidate's canaries, as the baseline graded them."""
    usable, comparison, warnings = align_keys(
        baseline, {r.key for r in candidate.records}, candidate.case_fingerprints)
    records = [r.model_copy(deep=True, update={"config": BASELINE})
               for r in baseline.records if r.key in usable]
    differing = sorted(name for name, fp in baseline.rubric_fingerprints.items()
                       if candidate.rubric_fingerprints.get(name) not in (None, fp))
    if differing:
        warnings.insert(0, f"rubric(s) {', '.join(differing)} differ between the baseline run "
                        f"{baseline.run_id} and this run: answers are compared as each run "
                        "graded them")
    if baseline.samples != candidate.samples:
        warnings.append(f"the baseline run has {baseline.samples} sample(s) per canary, this "
                        f"run {candidate.samples}: each canary's mean is compared")
    return records, comparison, warnings


def compare_results(baseline: RunResult, candidate: RunResult, *, alpha: float | None = None,
                    source: str | None = None) -> RunResult:
    """The candidate run, judged against the baseline run's answers: new metrics, verdicts,
    comparison and warnings; everything else (answers, run id, model info) is the candidate's."""
    settings = gate_settings(candidate, alpha)
    base_records, comparison, warnings = align(baseline, candidate)
    decision = decide_gate(settings, candidate.records, base_records, candidate.samples)
    extras = redecided_extras(settings, [candidate], candidate.records, candidate.samples)
    if extras:
        decision["verdicts"] = [*decision["verdicts"], *extras]
        decision["verdict"] = overall_verdict([v.verdict for v in decision["verdicts"]])
    warnings = fallback_warnings(candidate.records, base_records) + warnings \
        + power_warnings(decision["verdicts"])
    if candidate.partial and decision["verdict"] == "PASS":
        decision["verdict"] = "INCONCLUSIVE"  # an interrupted run never passes
        warnings.insert(0, "PARTIAL run: the candidate run was interrupted; the verdict "
                        "cannot be PASS")
    info = BaselineInfo(source=source or f"run {baseline.run_id}", kind="result",
                        name=baseline.candidate.name, provider=baseline.candidate.provider,
                        model=baseline.candidate.model,
                        fingerprint=baseline.candidate.fingerprint, run_id=baseline.run_id,
                        rubric_fingerprints=baseline.rubric_fingerprints,
                        config=baseline.candidate.config)
    return candidate.model_copy(deep=True, update={
        **decision,
        "sequential": None,  # decided again on every answer, at the full alpha
        "baseline": info,
        "baseline_records": base_records,
        "comparison": comparison,
        "warnings": warnings,
    })
