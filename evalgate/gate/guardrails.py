"""Guardrails: which checks a gate config asks for, and their verdicts from graded records.

Each canary is the unit of analysis: with K samples its values are averaged first, and the
candidate is compared with the baseline canary by canary (paired). The statistics live in
`stats.py`; this module only shapes records into per-canary arrays and evidence into verdicts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from evalgate.gate.family import family_note, holm_fails
from evalgate.gate.judge_calibration import (
    VERIFIED,
    ReviewInputs,
    apply_review,
    pending_verified,
    verified_records,
)
from evalgate.gate.metrics import REFUSED, compute_metrics
from evalgate.gate.streaming import no_stream_reason
from evalgate.gate.verdicts import judge_metric, overall_verdict
from evalgate.results import GuardrailVerdict, Record, ThresholdOut
from evalgate.spec.config import TESTED_BOUNDS, GateSettings

if TYPE_CHECKING:  # numpy is imported on first use: the pytest side plans guardrails only
    import numpy as np

VS_BASELINE = "_vs_baseline"


@dataclass(frozen=True)
class Guardrail:
    name: str      # the gate item's name: gate[<name>]
    metric: str
    kind: str      # rate_cap | p95_slo | cost_budget | point | rate_vs_baseline | ...
    bound: float | None
    worse: str = "higher"


def plan_guardrails(settings: GateSettings, has_baseline: bool) -> list[Guardrail]:
    """The gate's guardrails, known before any call (they become test items)."""
    plan = []
    for metric, threshold in settings.metrics.items():
        bound = TESTED_BOUNDS.get(metric)
        if bound is None:
            plan.append(Guardrail(metric, metric, "point", None))
            continue
        value = getattr(threshold, bound)
        worse = "higher" if bound == "max" else "lower"
        kind = {"latency_p95_ms": "p95_slo", "cost_per_request_usd": "cost_budget",
                "cost_per_1k_usd": "cost_budget", "ttft_p95_ms": "p95_slo",
                "tokens_per_s": "throughput_floor"}.get(metric, "rate_cap")
        plan.append(Guardrail(metric, metric, kind, value, worse))
    if has_baseline:
        margins = settings.vs_baseline
        for field, metric, kind, worse in (
            ("hallucination_rate", "hallucination_rate", "rate_vs_baseline", "higher"),
            ("pass_rate", "pass_rate", "rate_vs_baseline", "lower"),
            ("error_rate", "error_rate", "rate_vs_baseline", "higher"),
            ("cost_ratio", "cost_per_request_usd", "cost_ratio", "higher"),
            ("latency_ratio", "latency_ms", "latency_gm_ratio", "higher"),
            ("p95_ratio", "latency_p95_ms", "p95_ratio", "higher"),
            ("score", "score", "score_vs_baseline", "lower"),
            ("ttft_ratio", "ttft_ms", "latency_gm_ratio", "higher"),
            ("ttft_p95_ratio", "ttft_p95_ms", "p95_ratio", "higher"),
            ("refusal_rate", "refusal_rate", "rate_vs_baseline", "higher"),
        ):
            margin = getattr(margins, field)
            if margin is not None:
                plan.append(Guardrail(field + VS_BASELINE, metric, kind, margin, worse))
    if settings.max_fallback_rate is not None:
        plan.append(Guardrail(FALLBACK, FALLBACK, "point", settings.max_fallback_rate))
    if settings.min_verified is not None:
        plan.append(Guardrail(VERIFIED, VERIFIED, "point", settings.min_verified, "lower"))
    return plan


FALLBACK = "fallback_rate"


def judge_fallback(bound: float, records: Sequence[Record], samples: int) -> GuardrailVerdict:
    """INCONCLUSIVE, not FAIL, above the bound: the candidate's own quality is unknown, not bad
    (with on_inconclusive: fail, the default, that still blocks)."""
    used = sum(1 for r in records if r.ok and r.answered_by)
    share = used / len(records) if records else 0.0
    over = share > bound
    reason = (f"{used} of {len(records)} candidate calls ({share:.1%}) were answered by the "
              f"fallback model, {'above' if over else 'within'} max_fallback_rate {bound:.1%}"
              + (": the gate cannot vouch for the candidate's own answers" if over else ""))
    return GuardrailVerdict(guardrail=FALLBACK, metric=FALLBACK, kind="point",
                            test="share of answers from the fallback model", value=share,
                            threshold=ThresholdOut(max=bound), n_canaries=len({r.key for r in
                                                                               records}),
                            n_samples=samples, verdict="INCONCLUSIVE" if over else "PASS",
                            reason=reason)


def fallback_warnings(records: Sequence[Record], base_records: Sequence[Record] | None = None
                      ) -> list[str]:
    """The run-level warning that some answers are not the candidate's (or the baseline's)."""
    warnings = []
    for who, recs in (("candidate", records), ("baseline", base_records or [])):
        names = sorted({r.answered_by for r in recs if r.ok and r.answered_by})
        if names:
            used = sum(1 for r in recs if r.ok and r.answered_by)
            warnings.append(f"{used} of {len(recs)} {who} calls were {FALLBACK_NOTE} "
                            f"({', '.join(names)}) after the {who}'s retries ran out: their "
                            "quality, cost and latency are the fallback's, not the " + who + "'s")
    return warnings


FALLBACK_NOTE = "answered by the fallback model"


Extract = Callable[[Record], float | None]

EXTRACT: dict[str, Extract] = {
    "hallucination_rate": lambda r: None if r.hallucination is None else float(r.hallucination),
    "pass_rate": lambda r: None if r.passed is None else float(r.passed),
    "error_rate": lambda r: 0.0 if r.ok else 1.0,
    "refusal_rate": lambda r: float(r.error_class == REFUSED),
    "latency_p95_ms": lambda r: r.latency_ms if r.ok else None,
    "latency_ms": lambda r: r.latency_ms if r.ok else None,
    "cost_per_request_usd": lambda r: r.cost_usd if r.ok else None,
    "cost_per_1k_usd": lambda r: None if not r.ok or r.cost_usd is None else r.cost_usd * 1000,
    "score": lambda r: r.score,
    "ttft_ms": lambda r: r.ttft_ms if r.ok else None,
    "ttft_p95_ms": lambda r: r.ttft_ms if r.ok else None,
    "tokens_per_s": lambda r: r.tokens_per_s if r.ok else None,
}
# guardrail metrics that read the same per-canary values: extracted once
SAME_VALUES = {"latency_p95_ms": "latency_ms", "ttft_p95_ms": "ttft_ms"}


QUALITY_FAILURE = {"hallucination_rate": 1.0, "pass_rate": 0.0, "score": 0.0}
"""The value an errored call takes in a quality guardrail with errors_count_as: failure."""


def extractor(metric: str, settings: GateSettings, records: Sequence[Record]) -> Extract:
    """EXTRACT[metric], with errored calls as failures in the quality metrics when the gate's
    `errors_count_as` is `failure` (the default).

    Only where the metric is measured: on the canaries with a value for it in `records` (both
    configs' calls), or on every canary when each answered canary has one (a rubric that grades
    hallucinations on some canaries only does not turn an error elsewhere into one)."""
    plain = EXTRACT[metric]
    if settings.errors_count_as != "failure" or metric not in QUALITY_FAILURE:
        return plain
    measured = {r.key for r in records if r.ok and plain(r) is not None}
    if not measured:
        return plain
    everywhere = {r.key for r in records if r.ok} <= measured
    failure = QUALITY_FAILURE[metric]

    def extract(record: Record) -> float | None:
        if not record.ok and (everywhere or record.key in measured):
            return failure
        return plain(record)

    return extract


def errors_sentence(g: Guardrail, settings: GateSettings, cand_records: Sequence[Record],
                    base_records: Sequence[Record] | None) -> str | None:
    """What a quality guardrail did with the errored calls, when there were any."""
    if g.metric not in QUALITY_FAILURE:
        return None
    n_cand = sum(1 for r in cand_records if not r.ok)
    n_base = sum(1 for r in base_records or [] if not r.ok)
    if not n_cand and not n_base:
        return None
    who = f"{n_cand} candidate" + (f" and {n_base} baseline" if base_records is not None else "")
    if settings.errors_count_as == "failure":
        what = {"hallucination_rate": "hallucinations", "pass_rate": "failed answers",
                "score": "score 0"}[g.metric]
        return f"{who} errored calls counted as {what} (errors_count_as: failure)"
    return (f"{who} errored calls left out (errors_count_as: missing; error_rate counts "
            "them)")


def per_canary(records: Sequence[Record], extract: Extract) -> dict[str, float]:
    """Each canary's mean over its samples (canaries with no value are left out)."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for record in records:  # one pass, no per-canary lists: 10,000s of records per guardrail
        value = extract(record)
        if value is not None:
            key = record.key
            if key in counts:
                sums[key] += value
                counts[key] += 1
            else:
                sums[key] = value
                counts[key] = 1
    return {key: total / counts[key] for key, total in sums.items()}


def per_canary_calls(records: Sequence[Record], extract: Extract) -> dict[str, list[float]]:
    """Each canary's values, one a call (canaries with no value are left out)."""
    calls: dict[str, list[float]] = {}
    for record in records:
        value = extract(record)
        if value is not None:
            calls.setdefault(record.key, []).append(value)
    return calls


def calls_arrays(calls: dict[str, list[float]], keys: Sequence[str]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The calls of `keys` flattened, and the index (into keys) of each call's canary."""
    import numpy as np

    values = np.array([v for k in keys for v in calls[k]], dtype=float)
    index = np.array([i for i, k in enumerate(keys) for _ in calls[k]], dtype=np.intp)
    return values, index


P95_KINDS = ("p95_slo", "p95_ratio")


def p95_of_calls(g: Guardrail, settings: GateSettings, cand_records: Sequence[Record],
                 base_records: Sequence[Record] | None, samples: int) -> Any:
    """The p95 guardrails with K > 1 calls a canary: tested on the calls, canary = cluster."""
    from evalgate import stats

    extract = extractor(g.metric, settings, [*cand_records, *(base_records or [])])
    cand_calls = per_canary_calls(cand_records, extract)
    if g.kind == "p95_slo":
        if not cand_calls:
            return None
        values, index = calls_arrays(cand_calls, sorted(cand_calls))
        return stats.p95_slo(values, guardrail=g.name, slo_ms=g.bound, alpha=settings.alpha,
                             samples=samples, canary=index)
    base_calls = per_canary_calls(base_records or [], extract)
    keys = sorted(cand_calls.keys() & base_calls.keys())
    if not keys:
        return None
    c, c_idx = calls_arrays(cand_calls, keys)
    b, b_idx = calls_arrays(base_calls, keys)
    return stats.compare_p95(c, b, guardrail=g.name, margin_ratio=g.bound, alpha=settings.alpha,
                             resamples=settings.bootstrap_resamples, seed=settings.seed,
                             samples=samples, cand_canary=c_idx, base_canary=b_idx)


def paired(cand: dict[str, float], base: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    keys = sorted(cand.keys() & base.keys())
    return np.array([cand[k] for k in keys]), np.array([base[k] for k in keys])


def no_data(guardrail: Guardrail, samples: int) -> GuardrailVerdict:
    return GuardrailVerdict(
        guardrail=guardrail.name, metric=guardrail.metric, kind=guardrail.kind,
        test="(none: no data)", margin=guardrail.bound, worse=guardrail.worse,
        n_canaries=0, n_samples=samples, verdict="INCONCLUSIVE",
        reason=f"cannot decide {guardrail.name}: no canary has data for it")


def undecidable(guardrail: Guardrail, samples: int, n: int, why: str) -> GuardrailVerdict:
    return GuardrailVerdict(
        guardrail=guardrail.name, metric=guardrail.metric, kind=guardrail.kind,
        test="(none: the data do not allow it)", margin=guardrail.bound, worse=guardrail.worse,
        n_canaries=n, n_samples=samples, verdict="INCONCLUSIVE",
        reason=f"cannot decide {guardrail.name}: {why}")


def _evidence(g: Guardrail, cand: np.ndarray, base: np.ndarray | None, settings: GateSettings,
              samples: int) -> Any:
    from evalgate import stats

    alpha = settings.alpha
    if g.kind == "rate_cap":
        return stats.rate_cap(cand, guardrail=g.name, cap=g.bound, alpha=alpha, samples=samples,
                              worse=g.worse)
    if g.kind == "p95_slo":
        return stats.p95_slo(cand, guardrail=g.name, slo_ms=g.bound, alpha=alpha,
                             samples=samples)
    if g.kind == "cost_budget":
        return stats.cost_budget(cand, guardrail=g.name, budget=g.bound, alpha=alpha,
                                 samples=samples)
    if g.kind == "throughput_floor":
        return stats.throughput_floor(cand, guardrail=g.name, floor=g.bound, alpha=alpha,
                                      samples=samples)
    assert base is not None
    if g.kind == "rate_vs_baseline":
        return stats.compare_rate(cand, base, guardrail=g.name, margin=g.bound, alpha=alpha,
                                  samples=samples, worse=g.worse)
    if g.kind == "cost_ratio":
        return stats.compare_cost(cand, base, guardrail=g.name, margin_ratio=g.bound,
                                  alpha=alpha, seed=settings.seed, samples=samples,
                                  bca_resamples=settings.bootstrap_resamples)
    if g.kind == "latency_gm_ratio":
        return stats.compare_latency_gm(cand, base, guardrail=g.name, margin_ratio=g.bound,
                                        alpha=alpha, samples=samples)
    if g.kind == "score_vs_baseline":
        return stats.compare_score(cand, base, guardrail=g.name, margin=g.bound, alpha=alpha,
                                   samples=samples)
    if g.kind == "p95_ratio":
        return stats.compare_p95(cand, base, guardrail=g.name, margin_ratio=g.bound, alpha=alpha,
                                 resamples=settings.bootstrap_resamples, seed=settings.seed,
                                 samples=samples)
    raise ValueError(f"unknown guardrail kind {g.kind}")


def to_verdict(g: Guardrail, ev: Any) -> GuardrailVerdict:
    threshold = None
    if g.kind in ("rate_cap", "p95_slo", "cost_budget", "throughput_floor"):
        threshold = ThresholdOut(max=g.bound) if g.worse == "higher" else ThresholdOut(min=g.bound)
    return GuardrailVerdict(
        guardrail=g.name, metric=g.metric, kind=ev.kind, test=ev.test, value=ev.estimate,
        baseline=ev.baseline, effect=ev.effect, effect_kind=ev.effect_kind, ci_low=ev.ci_low,
        ci_high=ev.ci_high, margin=ev.margin, threshold=threshold, worse=ev.worse,
        p_value=ev.p_value, p_regression=ev.p_regression,
        p_regression_holm=ev.p_regression_holm, n_canaries=ev.n_canaries,
        n_samples=ev.n_samples, discordant=list(ev.discordant) if ev.discordant else None,
        mde=ev.mde, min_passable_margin=ev.min_passable_margin, verdict=ev.verdict,
        note=ev.note, reason=ev.sentence)


def evaluate(settings: GateSettings, plan: list[Guardrail], cand_records: Sequence[Record],
             base_records: Sequence[Record] | None, metrics: dict[str, float | None],
             samples: int) -> list[GuardrailVerdict]:
    """Verdicts for every planned guardrail, Holm-adjusted across the run's regression tests."""
    import numpy as np

    from evalgate import stats

    verdicts: dict[str, GuardrailVerdict] = {}
    tested: list[tuple[Guardrail, Any]] = []
    again: list[Callable[[float], Any]] = []  # each tested guardrail at another alpha
    values: dict[str, tuple[dict[str, float], dict[str, float] | None]] = {}
    every = [*cand_records, *(base_records or [])]
    for g in plan:
        if g.name == FALLBACK:
            verdicts[g.name] = judge_fallback(g.bound or 0.0, cand_records, samples)
            continue
        if g.name == VERIFIED:  # counted from the canary files in decide_gate
            verdicts[g.name] = pending_verified(g.bound, samples)
            continue
        if g.kind == "point":
            threshold = settings.metrics[g.metric]
            verdicts[g.name] = judge_metric(g.metric, metrics.get(g.metric), threshold.min,
                                            threshold.max)
            continue
        if g.kind in P95_KINDS and samples > 1:
            try:
                ev = p95_of_calls(g, settings, cand_records, base_records, samples)
            except ValueError as exc:
                verdicts[g.name] = undecidable(g, samples, 0, str(exc))
                continue
            if ev is None:
                verdicts[g.name] = no_data(g, samples)
            else:
                tested.append((g, ev))
                again.append(lambda a, g=g: p95_of_calls(
                    g, settings.model_copy(update={"alpha": a}), cand_records, base_records,
                    samples))
            continue
        same = SAME_VALUES.get(g.metric, g.metric)
        if same not in values:
            extract = extractor(g.metric, settings, every)
            values[same] = (per_canary(cand_records, extract),
                            per_canary(base_records, extract)
                            if base_records is not None else None)
        cand_values, base_values = values[same]
        if base_values is None:
            cand, base = np.array(list(cand_values.values())), None
        else:
            cand, base = paired(cand_values, base_values)
        if len(cand) == 0:
            why = no_stream_reason(g.metric, cand_records, base_records)
            verdicts[g.name] = undecidable(g, samples, 0, why) if why else no_data(g, samples)
            continue
        try:
            tested.append((g, _evidence(g, cand, base, settings, samples)))
            again.append(lambda a, g=g, cand=cand, base=base: _evidence(
                g, cand, base, settings.model_copy(update={"alpha": a}), samples))
        except ValueError as exc:  # e.g. a ratio to a baseline that cost nothing
            verdicts[g.name] = undecidable(g, samples, len(cand), str(exc))
    final = stats.finalize([ev for _, ev in tested], settings.alpha,
                           settings.fail_on_significant_regression)
    if settings.fail_correction == "holm":
        final = holm_fails(final, settings.alpha, lambda i, a: again[i](a))
    for (g, _), ev in zip(tested, final, strict=True):
        verdict = to_verdict(g, ev)
        said = errors_sentence(g, settings, cand_records, base_records)
        if said:
            verdict = verdict.model_copy(update={"reason": f"{verdict.reason}; {said}"})
        verdicts[g.name] = verdict
    return [verdicts[g.name] for g in plan]


def tested_count(verdicts: Sequence[GuardrailVerdict]) -> int:
    """Guardrails decided by a statistical test (not point estimates, not undecidable)."""
    return sum(1 for v in verdicts if v.kind != "point" and not v.test.startswith("(none"))


def as_if_judged(records: Sequence[Record]) -> list[Record]:
    """The records with each grade that rests on judge errors taken at its best case."""
    return [r.model_copy(update=r.if_judged.model_dump()) if r.if_judged is not None else r
            for r in records]


def judge_error_sensitivity(settings: GateSettings, plan: list[Guardrail],
                            records: Sequence[Record], base_records: Sequence[Record] | None,
                            metrics: dict[str, float | None], samples: int,
                            verdicts: list[GuardrailVerdict]) -> list[GuardrailVerdict]:
    """A verdict that judge errors could have turned is INCONCLUSIVE, and says so.

    A judge error fails its criterion, which may be a hallucination criterion: a flaky judge
    must neither pass nor block a candidate unnoticed. The gate is decided twice more: with
    the candidate's judge errors as PASSes (the best case for the candidate) and, when the
    baseline has judge errors, with the baseline's as PASSes (its worst case). A verdict that
    is not the same all three ways is INCONCLUSIVE.
    """
    hinged = sum(r.if_judged is not None for r in records)
    base_hinged = sum(r.if_judged is not None for r in base_records or [])
    if not hinged and not base_hinged:
        return verdicts
    alternatives = []
    if hinged:
        best = as_if_judged(records)
        alternatives.append(evaluate(settings, plan, best, base_records,
                                     compute_metrics(best)[0], samples))
    if base_records is not None and base_hinged:
        alternatives.append(evaluate(settings, plan, records, as_if_judged(base_records),
                                     metrics, samples))
    out = []
    for i, v in enumerate(verdicts):
        turned = sorted({alt[i].verdict for alt in alternatives} - {v.verdict})
        if not turned or v.verdict == "INCONCLUSIVE":
            out.append(v)
            continue
        who = f"{hinged} candidate answer(s)" + (
            f" and {base_hinged} baseline answer(s)" if base_hinged else "")
        out.append(v.model_copy(update={
            "verdict": "INCONCLUSIVE",
            "reason": f"{v.reason}; but this rests on judge errors in {who}: had the judge "
                      f"answered PASS there, it would be {' or '.join(turned)}, so the gate "
                      "cannot decide (INCONCLUSIVE); fix the judge and run again"}))
    return out


def power_warnings(verdicts: Sequence[GuardrailVerdict]) -> list[str]:
    """The run-level warnings for margins finer than the run can detect."""
    return [f"{v.guardrail}: {v.note}" for v in verdicts if v.note and "can only detect" in v.note]


def reviewed(settings: GateSettings, verdicts: list[GuardrailVerdict],
             records: Sequence[Record], base_records: Sequence[Record] | None,
             review: ReviewInputs, samples: int) -> tuple[list[GuardrailVerdict], Any]:
    """The verdicts with verified canaries and reviewers' labels applied (judge_calibration)."""
    extract = EXTRACT["hallucination_rate"]
    rates = (per_canary(records, extract),
             per_canary(base_records, extract) if base_records is not None else None)
    return apply_review(settings, verdicts, records, base_records, review, samples, rates)


def decide_gate(settings: GateSettings, records: Sequence[Record],
                base_records: Sequence[Record] | None, samples: int,
                review: ReviewInputs | None = None) -> dict[str, Any]:
    """The fields of a RunResult that deciding the gate sets, from graded records: metrics,
    counts, verdicts, the overall verdict and the settings used. One place for a live run,
    `evalgate compare` and `evalgate merge`, so all three decide alike. `review`: verified
    canaries and labels (gate.min_verified, verified_only, min_judge_kappa, correct_for_judge)."""
    if review is not None and settings.verified_only:
        records = verified_records(records, review)
        base_records = None if base_records is None else verified_records(base_records, review)
    metrics, counts = compute_metrics(records)
    plan = plan_guardrails(settings, base_records is not None)
    verdicts = evaluate(settings, plan, records, base_records, metrics, samples)
    verdicts = judge_error_sensitivity(settings, plan, records, base_records, metrics, samples,
                                       verdicts)
    info = None
    if review is not None:
        verdicts, info = reviewed(settings, verdicts, records, base_records, review, samples)
    return {
        "review": info,
        "metrics": metrics,
        "counts": counts,
        "verdicts": verdicts,
        "verdict": overall_verdict([v.verdict for v in verdicts]),
        "family_wise": family_note(tested_count(verdicts), settings.alpha,
                                   settings.fail_correction),
        "on_inconclusive": settings.on_inconclusive,
        "alpha": settings.alpha,
        "gate": settings.model_dump(mode="json"),
        "baseline_metrics": compute_metrics(base_records)[0] if base_records is not None else {},
    }
