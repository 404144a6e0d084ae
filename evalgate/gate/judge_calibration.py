"""Human review in the gate: verified canaries, and the judge measured against reviewers.

* `gate.min_verified`: the `verified_canaries` guardrail is INCONCLUSIVE while fewer canaries
  of the run carry `verified: {by, at}`; `gate.verified_only` gates on those canaries alone.
* Labels (`labels/*.jsonl`) are matched to this run's answers by canary and answer hash; per
  answer each reviewer's latest label counts, and an answer whose reviewers disagree is kept on
  file but left out (their agreement is reported).
* The automatic hallucination verdict, and each hallucination criterion, against the labels:
  sensitivity, specificity, Cohen's kappa. Below `gate.min_judge_kappa` the guardrails that
  rest on grades (hallucination, pass rate, score) are INCONCLUSIVE.
* `gate.correct_for_judge`: the hallucination guardrails are decided on Rogan-Gladen corrected
  rates (evalgate/stats/diagnostic.py); too few labels make them INCONCLUSIVE, saying how many
  more would decide them.

Labels are assumed to be a random sample of the answers (or a proportionally stratified one,
as `evalgate review --sample` draws): Se and Sp are read off them as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from evalgate.results import (
    CorrectedRateOut,
    GuardrailVerdict,
    JudgeAccuracyOut,
    Record,
    ReviewInfo,
    ThresholdOut,
)
from evalgate.spec.config import GateSettings
from evalgate.spec.labels import Label, answer_hash

VERIFIED = "verified_canaries"
JUDGED_METRICS = ("hallucination_rate", "pass_rate", "score")
OVERALL = "hallucination"  # the record's verdict: any hallucination criterion failed


@dataclass(frozen=True)
class ReviewInputs:
    """What people said, as the gate needs it: which canaries exist and are verified, labels."""

    canaries: frozenset[str]
    verified: frozenset[str]
    labels: tuple[Label, ...] = ()


def review_inputs(entries: Iterable[Any], labels: Iterable[Label]) -> ReviewInputs:
    """From a project's entries (anything with `.key` and `.case.verified`) and its labels."""
    entries = list(entries)
    return ReviewInputs(frozenset(e.key for e in entries),
                        frozenset(e.key for e in entries if e.case.verified is not None),
                        tuple(labels))


def pending_verified(bound: float | None, samples: int) -> GuardrailVerdict:
    """The placeholder `evaluate` gives before the canaries' marks are counted."""
    return GuardrailVerdict(guardrail=VERIFIED, metric=VERIFIED, kind="point",
                            test="count of verified canaries", threshold=ThresholdOut(min=bound),
                            worse="lower", n_samples=samples, verdict="INCONCLUSIVE",
                            reason="verified canaries not counted yet")


def judge_verified(bound: int, keys: set[str], verified: frozenset[str], samples: int,
                   verified_only: bool) -> GuardrailVerdict:
    count = len(keys & verified)
    short = count < bound
    reason = (f"{count} of {len(keys)} canaries are verified by a person "
              f"({'below' if short else 'at least'} gate.min_verified {bound})")
    if short:
        reason += f": verify {bound - count} more (evalgate review) to decide the gate"
    if verified_only:
        reason += "; the gate uses the verified canaries only"
    return GuardrailVerdict(guardrail=VERIFIED, metric=VERIFIED, kind="point",
                            test="count of verified canaries", value=float(count),
                            threshold=ThresholdOut(min=bound), worse="lower",
                            n_canaries=len(keys), n_samples=samples,
                            verdict="INCONCLUSIVE" if short else "PASS", reason=reason)


@dataclass(frozen=True)
class Consolidated:
    truth: dict[tuple[str, str], bool]  # (canary, answer hash) -> hallucination per reviewers
    multi: int
    conflicts: int


def consolidate(labels: Sequence[Label]) -> Consolidated:
    """One truth per answer: each reviewer's latest label; disagreeing reviewers -> left out."""
    latest: dict[tuple[str, str], dict[str, Label]] = {}
    for lab in labels:  # file order; a later line of the same reviewer replaces an earlier one
        per = latest.setdefault((lab.canary, lab.answer), {})
        if lab.reviewer not in per or lab.at >= per[lab.reviewer].at:
            per[lab.reviewer] = lab
    truth: dict[tuple[str, str], bool] = {}
    multi = conflicts = 0
    for key, per in latest.items():
        said = {lab.label for lab in per.values()}
        if len(per) > 1:
            multi += 1
            conflicts += len(said) > 1
        calls = {lab.hallucination for lab in per.values()} - {None}
        if len(said) == 1 and len(calls) == 1:
            truth[key] = calls.pop()  # type: ignore[assignment]
    return Consolidated(truth, multi, conflicts)


def labelled_records(truth: dict[tuple[str, str], bool], records: Iterable[Record]
                     ) -> list[tuple[bool, Record]]:
    """(people's verdict, the graded record) for each labelled answer of this run (first
    record of an answer text: candidate before baseline, lowest sample)."""
    seen: set[tuple[str, str]] = set()
    out = []
    for record in records:
        if not record.ok or record.hallucination is None:
            continue
        key = (record.key, answer_hash(record.text))
        if key in truth and key not in seen:
            seen.add(key)
            out.append((truth[key], record))
    return out


def _accuracy_out(name: str, pairs: list[tuple[bool, bool]], alpha: float) -> JudgeAccuracyOut:
    import numpy as np

    from evalgate import stats

    acc = stats.accuracy(np.array([t for t, _ in pairs], dtype=bool),
                         np.array([f for _, f in pairs], dtype=bool), alpha)
    return JudgeAccuracyOut(
        criterion=name, n=acc.n, true_pos=acc.true_pos, false_neg=acc.false_neg,
        false_pos=acc.false_pos, true_neg=acc.true_neg, sensitivity=acc.sensitivity,
        sensitivity_ci=list(acc.sensitivity_ci) if acc.sensitivity_ci else None,
        specificity=acc.specificity,
        specificity_ci=list(acc.specificity_ci) if acc.specificity_ci else None,
        kappa=acc.kappa, kappa_ci=list(acc.kappa_ci) if acc.kappa_ci else None)


def judge_accuracy(pairs: list[tuple[bool, Record]], alpha: float) -> list[JudgeAccuracyOut]:
    """The record's hallucination verdict, then each hallucination criterion, against people."""
    if not pairs:
        return []
    out = [_accuracy_out(OVERALL, [(t, bool(r.hallucination)) for t, r in pairs], alpha)]
    by_criterion: dict[str, list[tuple[bool, bool]]] = {}
    for truth, record in pairs:
        for c in record.criteria:
            if c.kind == "hallucination":
                by_criterion.setdefault(c.id, []).append((truth, not c.passed))
    out += [_accuracy_out(cid, got, alpha) for cid, got in sorted(by_criterion.items())]
    return out


def _inconclusive(v: GuardrailVerdict, why: str) -> GuardrailVerdict:
    if v.verdict == "INCONCLUSIVE" and why in v.reason:
        return v
    return v.model_copy(update={"verdict": "INCONCLUSIVE", "reason": f"{v.reason}; but {why}"})


Rates = dict[str, float]  # per canary: its samples' mean


def corrected_verdict(v: GuardrailVerdict, settings: GateSettings,
                      pairs: list[tuple[bool, Record]], cand_rates: Rates,
                      base_rates: Rates | None) -> tuple[GuardrailVerdict, CorrectedRateOut | None]:
    """A hallucination guardrail decided again on the judge-corrected rate(s); the observed
    per-canary rates come from the caller (gate.guardrails), paired here by canary."""
    import numpy as np

    from evalgate import stats
    from evalgate.stats.diagnostic import labels_for_classes

    if v.kind == "rate_vs_baseline" and base_rates is not None:
        keys = sorted(cand_rates.keys() & base_rates.keys())
        cand = np.array([cand_rates[k] for k in keys])
        base: np.ndarray | None = np.array([base_rates[k] for k in keys])
    else:
        cand, base = np.array(list(cand_rates.values())), None
    truth = np.array([t for t, _ in pairs], dtype=bool)
    flagged = np.array([bool(r.hallucination) for _, r in pairs], dtype=bool)
    if len(cand) == 0:
        return v, None
    try:
        cr = stats.corrected_rate(cand, truth, flagged, base=base, alpha=settings.alpha,
                                  resamples=settings.bootstrap_resamples, seed=settings.seed)
    except ValueError as exc:
        share = float(truth.mean()) if truth.size and truth.any() else float(cand.mean())
        more = labels_for_classes(int(truth.sum()), int((~truth).sum()), share)
        return _inconclusive(v, f"correct_for_judge cannot correct it: {exc}; label about "
                                f"{more} more answers (evalgate review)"), None
    bound = v.margin if v.kind == "rate_vs_baseline" else (v.threshold.max if v.threshold
                                                            else None)
    if bound is None:
        return v, None
    level = f"{1 - settings.alpha:.0%}"
    significant = (v.kind == "rate_vs_baseline" and v.verdict == "FAIL"
                   and v.p_regression_holm is not None and v.p_regression_holm < settings.alpha)
    if cr.ci_low > bound or significant:
        verdict = "FAIL"
    elif cr.ci_high <= bound:
        verdict = "PASS"
    else:
        verdict = "INCONCLUSIVE"
    what, fmt = ("difference", "+.1%") if base is not None else ("rate", ".1%")
    reason = (f"judge-corrected hallucination {what} {cr.estimate:{fmt}} (observed "
              f"{cr.observed:{fmt}}; judge sensitivity {cr.sensitivity:.0%}, specificity "
              f"{cr.specificity:.0%} from {cr.n_labels} labels); one-sided {level} bounds "
              f"[{cr.ci_low:{fmt}}, {cr.ci_high:{fmt}}] against {bound:{fmt}}: {verdict}")
    if significant:
        reason += " (significantly worse than the baseline: the correction keeps the sign)"
    more = None
    if verdict == "INCONCLUSIVE":
        more = cr.labels_to_decide(bound)
        reason += ("; more labels alone would not decide it: add canaries" if more is None
                   else f"; about {more} more labels would decide it")
    out = CorrectedRateOut(guardrail=v.guardrail, observed=cr.observed, estimate=cr.estimate,
                           ci_low=cr.ci_low, ci_high=cr.ci_high, candidate=cr.candidate,
                           baseline=cr.baseline, sensitivity=cr.sensitivity,
                           specificity=cr.specificity, n_labels=cr.n_labels,
                           sd_canaries=cr.sd_canaries, sd_labels=cr.sd_labels,
                           labels_to_decide=more)
    update = {"verdict": verdict, "reason": reason, "value": cr.candidate, "ci_low": cr.ci_low,
              "ci_high": cr.ci_high,
              "test": f"{v.test}, corrected for the judge (Rogan-Gladen; percentile bootstrap "
                      "over canaries and labels)"}
    if base is not None:
        update |= {"baseline": cr.baseline, "effect": cr.estimate}
    return v.model_copy(update=update), out


def apply_review(settings: GateSettings, verdicts: list[GuardrailVerdict],
                 records: Sequence[Record], base_records: Sequence[Record] | None,
                 inputs: ReviewInputs, samples: int,
                 hallucination_rates: tuple[Rates, Rates | None]
                 ) -> tuple[list[GuardrailVerdict], ReviewInfo]:
    """The verdicts with what people said applied, and the review section of the result.
    `hallucination_rates`: the observed per-canary rates of the candidate and the baseline."""
    keys = {r.key for r in records}
    together = [*records, *(base_records or [])]
    merged = consolidate(inputs.labels)
    pairs = labelled_records(merged.truth, together)
    in_run = {(r.key, answer_hash(r.text)) for r in together if r.ok}
    unknown = sorted({lab.canary for lab in inputs.labels if lab.canary not in inputs.canaries})
    accuracy = judge_accuracy(pairs, settings.alpha)
    info = ReviewInfo(
        canaries=len(keys), verified=len(keys & inputs.verified),
        verified_only=settings.verified_only, min_verified=settings.min_verified,
        labels=len(inputs.labels), labelled_answers=len(pairs),
        unmatched_labels=sum(1 for k in merged.truth if k not in in_run),
        unknown_canaries=unknown, multi_labelled=merged.multi, conflicts=merged.conflicts,
        reviewer_agreement=1 - merged.conflicts / merged.multi if merged.multi else None,
        judge=accuracy)
    if unknown:
        info.notes.append(f"{len(unknown)} labelled canary key(s) name no canary of this "
                          f"project (renamed or removed?): {', '.join(unknown[:5])}")
    if merged.conflicts:
        info.notes.append(f"{merged.conflicts} of {merged.multi} answers labelled by more than "
                          "one reviewer have conflicting labels: all are kept in labels/, "
                          "none of them counts until the reviewers agree")
    kappa = accuracy[0].kappa if accuracy else None
    out = []
    for v in verdicts:
        if v.guardrail == VERIFIED and settings.min_verified is not None:
            v = judge_verified(settings.min_verified, keys, inputs.verified, samples,
                               settings.verified_only)
        if settings.correct_for_judge and v.metric == "hallucination_rate" \
                and v.kind in ("rate_cap", "rate_vs_baseline") and v.n_canaries:
            v, corrected = corrected_verdict(v, settings, pairs, *hallucination_rates)
            if corrected is not None:
                info.corrected.append(corrected)
        if settings.min_judge_kappa is not None and v.metric in JUDGED_METRICS:
            if kappa is None:
                v = _inconclusive(v, f"no labelled answer measures the judge (gate."
                                     f"min_judge_kappa {settings.min_judge_kappa}): label some "
                                     "with evalgate review")
            elif kappa < settings.min_judge_kappa:
                v = _inconclusive(v, f"the judge's Cohen's kappa against {len(pairs)} labels is "
                                     f"{kappa:.2f}, below gate.min_judge_kappa "
                                     f"{settings.min_judge_kappa}: the grades cannot be trusted")
        out.append(v)
    return out, info


def verified_records(records: Sequence[Record], inputs: ReviewInputs) -> list[Record]:
    """gate.verified_only: the records of verified canaries only."""
    return [r for r in records if r.key in inputs.verified]
