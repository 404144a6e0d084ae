"""Run level: Holm's adjustment across the run's guardrails, and each final sentence."""

from __future__ import annotations

from dataclasses import replace

from evalgate.stats.evidence import Evidence, _check_alpha, _fmt_p, _join, _sentence
from evalgate.stats.primitives import holm_adjust


def finalize(evidences: list[Evidence], alpha: float,
             regression_fails: bool = False) -> list[Evidence]:
    """Holm-adjust every non-None p_regression across the run and write each final sentence.

    By default the verdicts stay the three-zone reading of the bounds (PASS inside the margin,
    FAIL beyond it, INCONCLUSIVE between); a significant regression inside the margin is a note.
    `regression_fails` (the gate's `fail_on_significant_regression: true`) also FAILs the
    significant ones, unless the method minimum was not met.

    Why Holm: a run checks several guardrails; without a family-wise correction an unchanged
    candidate would FAIL on one of them far more often than alpha.
    """
    _check_alpha(alpha)
    idx = [i for i, ev in enumerate(evidences) if ev.p_regression is not None]
    adjusted = holm_adjust([evidences[i].p_regression for i in idx])  # type: ignore[misc]
    holm = dict(zip(idx, (float(a) for a in adjusted), strict=True))
    out: list[Evidence] = []
    for i, ev in enumerate(evidences):
        p_holm = holm.get(i)
        verdict = ev.verdict
        note = ev.note
        if p_holm is not None and p_holm < alpha:
            if regression_fails and ev.method_minimum_met:
                verdict = "FAIL"
            elif ev.method_minimum_met:
                if verdict != "FAIL":
                    where = "within the margin" if verdict == "PASS" else "not beyond the margin"
                    note = _join([note, f"regression significant after Holm (p "
                                        f"{_fmt_p(p_holm)}), {where}: the verdict is the "
                                        "bounds' against the margin"])
            else:
                note = _join([note, f"regression significant after Holm (p {_fmt_p(p_holm)}) "
                                    "but the method minimum is not met"])
        new = replace(ev, p_regression_holm=p_holm, verdict=verdict, note=note)
        out.append(replace(new, sentence=_sentence(new, holm_alpha=alpha)))
    return out
