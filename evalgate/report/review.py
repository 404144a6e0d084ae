"""Human review on a result, as short facts every report shows: verified canaries, labels,
reviewers' agreement, the judge against the labels, judge-corrected rates."""

from __future__ import annotations

from evalgate.results import JudgeAccuracyOut, RunResult


def _interval(value: float | None, ci: list[float] | None, pct: bool = True) -> str:
    if value is None:
        return "n/a"
    f = (lambda x: f"{x:.0%}") if pct else (lambda x: f"{x:.2f}")
    return f(value) + (f" [{f(ci[0])}, {f(ci[1])}]" if ci else "")


def accuracy_text(a: JudgeAccuracyOut) -> str:
    return (f"{a.criterion} on {a.n} labels: sensitivity "
            f"{_interval(a.sensitivity, a.sensitivity_ci)}, specificity "
            f"{_interval(a.specificity, a.specificity_ci)}, Cohen's kappa "
            f"{_interval(a.kappa, a.kappa_ci, pct=False)}")


def review_facts(result: RunResult) -> list[tuple[str, str]]:
    """(name, text) pairs; none when the run used no review."""
    r = result.review
    if r is None:
        return []
    verified = f"{r.verified} of {r.canaries} canaries"
    if r.min_verified is not None:
        verified += f" (gate.min_verified {r.min_verified})"
    if r.verified_only:
        verified += "; the gate uses these only"
    labels = f"{r.labels} on file, {r.labelled_answers} match this run's answers"
    if r.multi_labelled:
        labels += (f"; {r.multi_labelled} answers labelled twice or more, reviewers agree on "
                   f"{r.reviewer_agreement:.0%} ({r.conflicts} conflicting, kept)")
    facts = [("verified canaries", verified), ("labels", labels)]
    facts += [("judge vs people", accuracy_text(a)) for a in r.judge]
    facts += [("judge-corrected", f"{c.guardrail}: {c.estimate:.1%} [{c.ci_low:.1%}, "
               f"{c.ci_high:.1%}] (observed {c.observed:.1%}; {c.n_labels} labels)")
              for c in r.corrected]
    return facts
