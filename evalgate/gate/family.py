"""The gate as a family of tests: what its family-wise false-FAIL rate is, and the opt-in Holm
step-down over the bound-based FAILs (`gate.fail_correction: holm`).

Each guardrail FAILs at one-sided level alpha when its better-side bound is beyond the limit.
A gate FAILs when any guardrail FAILs, so with k guardrails whose truths all sit at their
limits it false-FAILs with probability up to 1 - (1 - alpha)^k (independent guardrails; k alpha
at worst). PASS needs no correction: it needs every guardrail (intersection-union).

Holm over the FAILs (Holm 1979, Scand. J. Statist. 6:65-70) in its step-down form, on bounds:
with r of the k guardrails not yet confirmed, a FAIL is confirmed when its bound at one-sided
alpha / r is still beyond the limit; repeat while new FAILs are confirmed. (Testing "beyond the
limit" at level a is exactly "the bound at level a is beyond it", so this is Holm on the
p-values of those tests without having to compute them.) The FAILs left unconfirmed become
INCONCLUSIVE, and say why. The family-wise false-FAIL rate is then at most alpha.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any


def beyond_limit(ev: Any) -> bool:
    """The evidence's better-side bound is beyond its limit: a FAIL on the bounds (not one set
    by fail_on_significant_regression)."""
    limit = -ev.margin if (ev.effect_kind == "difference" and ev.worse == "lower") else ev.margin
    if ev.worse == "higher":
        return ev.ci_low is not None and ev.ci_low > limit
    return ev.ci_high is not None and ev.ci_high < limit


def family_wise_rate(k: int, alpha: float) -> float:
    """1 - (1 - alpha)^k: the gate's false-FAIL rate with k independent guardrails at their
    limits, each tested at one-sided alpha."""
    return 1.0 - (1.0 - alpha) ** k


def family_note(k: int, alpha: float, correction: str) -> str | None:
    """The sentence every report shows about the gate as a family of k tested guardrails."""
    if k < 2:
        return None
    head = (f"{k} tested guardrails, each at one-sided alpha {alpha:g}: had every one its truth "
            f"at its limit, the gate would false-FAIL up to 1-(1-{alpha:g})^{k} = "
            f"{family_wise_rate(k, alpha):.1%} of the time (independent guardrails; "
            f"{min(1.0, k * alpha):.0%} at worst)")
    if correction == "holm":
        return (head + "; gate.fail_correction: holm confirms each bound-based FAIL by Holm's "
                f"step-down over the {k}, which holds that rate at {alpha:g}")
    return head + "; gate.fail_correction: holm would hold it at " + f"{alpha:g}"


def holm_fails(evidences: Sequence[Any], alpha: float,
               recompute: Callable[[int, float], Any]) -> list[Any]:
    """The evidences with their bound-based FAILs confirmed by Holm's step-down over all of
    them, or turned INCONCLUSIVE. `recompute(i, level)` is evidence i at one-sided `level`."""
    k = len(evidences)
    pending = {i for i, ev in enumerate(evidences) if ev.verdict == "FAIL" and beyond_limit(ev)}
    confirmed: dict[int, float] = {}
    while pending:
        level = alpha / (k - len(confirmed))
        newly = {i for i in pending if beyond_limit(recompute(i, level))}
        if not newly:
            break
        confirmed.update(dict.fromkeys(newly, level))
        pending -= newly
    out = list(evidences)
    for i in confirmed:
        ev = out[i]
        out[i] = replace(ev, sentence=f"{ev.sentence} (confirmed by Holm over {k} guardrails: "
                                      f"still beyond the limit at one-sided alpha "
                                      f"{confirmed[i]:.3g}; gate.fail_correction: holm)")
    unconfirmed_level = alpha / max(k - len(confirmed), 1)
    for i in pending:
        ev = out[i]
        sentence = ev.sentence.removesuffix(": FAIL")
        out[i] = replace(ev, verdict="INCONCLUSIVE", sentence=(
            f"{sentence}: INCONCLUSIVE (beyond the limit at alpha {alpha:g} but not after Holm "
            f"over {k} guardrails: not at one-sided alpha {unconfirmed_level:.3g}; "
            "gate.fail_correction: holm)"))
    return out
