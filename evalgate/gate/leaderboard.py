"""The leaderboard of N model configs and the recommendation among them.

Why: with several candidates the question is no longer "may this one ship" but "which one",
and picking the best-looking of N noisy estimates overstates it. So every figure carries its
interval; "indistinguishable from the best" rests on Holm-adjusted paired tests across all
pairs; and the recommendation is the cheapest config that is non-inferior to the best on pass
and hallucination rates within the gate's margins, at the gate's alpha divided by the number
of non-inferiority comparisons (Bonferroni), so the family of claims holds at alpha.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from evalgate.gate.guardrails import EXTRACT, per_canary
from evalgate.results import Choice, Figure, Leaderboard, NonInferiority, PairTest, Record, Standing
from evalgate.spec.config import GateSettings

if TYPE_CHECKING:
    import numpy as np

    from evalgate.stats.choice import Interval

# Below this many canaries (in a scope: all, or one tag) there is no recommendation: the paired
# t needs 30 (stats.rates.MIN_CANARIES_T), and Tango's score bounds are not trusted on fewer.
MIN_CANARIES = 30
QUALITY = (("pass_rate", "lower"), ("hallucination_rate", "higher"))
MARGIN_FIELD = {"pass_rate": "pass_rate", "hallucination_rate": "hallucination_rate"}
CORRECTION = ("pairwise differences: two-sided paired tests (exact McNemar, or paired t with "
              "K samples) across all pairs and both quality metrics, Holm-adjusted; "
              "non-inferiority to the best: one-sided bounds at alpha / (2 x (configs - 1)) "
              "(Bonferroni)")


# A failed call is an answer that did not pass: the pass rate is over every call, so a config
# cannot look better by failing its hard canaries. The hallucination rate is over answers.
RATES = {"pass_rate": lambda r: 1.0 if r.ok and r.passed else 0.0,
         "hallucination_rate": EXTRACT["hallucination_rate"]}


def _figure(iv: Interval) -> Figure:
    return Figure(value=iv.value, low=iv.low, high=iv.high)


def _cost_per_success(records: Sequence[Record]) -> tuple[dict[str, float], dict[str, float]]:
    """Per canary, the cost of every call (failed ones with a known price too; a fallback's
    answer is priced on its record) and the number of answers that passed their rubric."""
    cost: dict[str, float] = {}
    passed: dict[str, float] = {}
    for r in records:
        cost[r.key] = cost.get(r.key, 0.0) + (r.cost_usd or 0.0)
        passed[r.key] = passed.get(r.key, 0.0) + (1.0 if r.passed else 0.0)
    return cost, passed


def standing(name: str, records: Sequence[Record], alpha: float) -> Standing:
    """One config's figures, each with its interval."""
    import numpy as np

    from evalgate.stats import choice

    if not any(r.ok for r in records):
        return Standing(name=name, status="no data", n_canaries=len({r.key for r in records}))

    def values(metric: str) -> np.ndarray:
        return np.array(list(per_canary(records, RATES.get(metric, EXTRACT[metric])).values()))

    figures = {
        "pass_rate": _figure(choice.rate_interval(values("pass_rate"), alpha)),
        "hallucination_rate": _figure(choice.rate_interval(values("hallucination_rate"), alpha)),
        "latency_p50_ms": _figure(choice.quantile_interval(values("latency_ms"), 0.5, alpha)),
        "latency_p95_ms": _figure(choice.quantile_interval(values("latency_ms"), 0.95, alpha)),
        "cost_per_1k_usd": _figure(choice.mean_interval(values("cost_per_1k_usd"), alpha)),
    }
    ttft = values("ttft_ms")
    if ttft.size:
        figures["ttft_p50_ms"] = _figure(choice.quantile_interval(ttft, 0.5, alpha))
        figures["ttft_p95_ms"] = _figure(choice.quantile_interval(ttft, 0.95, alpha))
    cost, passed = _cost_per_success(records)
    keys = sorted(cost)
    figures["cost_per_success_usd"] = _figure(choice.ratio_interval(
        np.array([cost[k] for k in keys]), np.array([passed[k] for k in keys]), alpha))
    return Standing(name=name, n_canaries=len(keys), figures=figures)


def _value(s: Standing, metric: str, default: float) -> float:
    fig = s.figures.get(metric)
    return default if fig is None or fig.value is None else fig.value


def _best(standings: list[Standing]) -> Standing:
    """Highest pass rate; ties: lower hallucination rate, then cheaper per successful answer."""
    return min(standings, key=lambda s: (-_value(s, "pass_rate", 0.0),
                                         _value(s, "hallucination_rate", 1.0),
                                         _value(s, "cost_per_success_usd", float("inf"))))


def _paired(a: dict[str, float], b: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    keys = sorted(a.keys() & b.keys())
    return np.array([a[k] for k in keys]), np.array([b[k] for k in keys])


def pair_tests(names: list[str], rates: dict[str, dict[str, dict[str, float]]],
               alpha: float) -> list[PairTest]:
    """Every pair on both quality metrics, two-sided, Holm-adjusted as one family."""
    from evalgate.stats import choice
    from evalgate.stats.primitives import holm_adjust

    raw = []
    for metric, _ in QUALITY:
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                x, y = _paired(rates[a][metric], rates[b][metric])
                raw.append((metric, a, b, choice.paired_difference_p(x, y)))
    if not raw:
        return []
    adjusted = holm_adjust([p for *_, p in raw])
    return [PairTest(metric=m, a=a, b=b, p_value=p, p_holm=float(h), significant=bool(h <= alpha))
            for (m, a, b, p), h in zip(raw, adjusted, strict=True)]


def non_inferiority(name: str, best: str, rates: dict[str, dict[str, dict[str, float]]],
                    settings: GateSettings, samples: int, alpha: float) -> list[NonInferiority]:
    """The config against the best on each quality metric whose margin is set."""
    from evalgate.stats.rates import compare_rate

    out = []
    for metric, worse in QUALITY:
        margin = getattr(settings.vs_baseline, MARGIN_FIELD[metric])
        if margin is None:
            continue
        x, y = _paired(rates[name][metric], rates[best][metric])
        if x.size < 2:
            out.append(NonInferiority(config=name, metric=metric, margin=margin,
                                      non_inferior=False))
            continue
        ev = compare_rate(x, y, guardrail=metric, margin=margin, alpha=alpha, samples=samples,
                          worse=worse)
        ok = (ev.ci_high < margin) if worse == "higher" else (ev.ci_low > -margin)
        out.append(NonInferiority(config=name, metric=metric, difference=ev.effect,
                                  low=ev.ci_low, high=ev.ci_high, margin=margin,
                                  non_inferior=bool(ok)))
    return out


def _pct(v: float | None) -> str:
    return "?" if v is None else f"{v:+.1%}"


def choose(configs: Sequence[tuple[str, Sequence[Record]]], settings: GateSettings,
           samples: int, scope: str = "all", tag: str | None = None) -> Choice:
    """The leaderboard and the recommendation on these records (one scope)."""
    alpha = settings.alpha
    standings = [standing(name, recs, alpha) for name, recs in configs]
    n = max((s.n_canaries for s in standings), default=0)
    usable = [s for s in standings if s.status == "ok"]
    if not usable:
        return Choice(scope=scope, tag=tag, n_canaries=n, verdict="INCONCLUSIVE",
                      reason="no config answered any canary: no data", standings=standings)
    records = dict(configs)
    rates = {s.name: {m: per_canary(records[s.name], RATES[m]) for m, _ in QUALITY}
             for s in usable}
    names = [s.name for s in usable]
    pairs = pair_tests(names, rates, alpha)
    best = _best(usable)
    for s in usable:
        for metric, worse in QUALITY:
            top = (max if worse == "lower" else min)(usable, key=lambda u, m=metric: _value(
                u, m, 0.0 if worse == "lower" else 1.0))
            if _value(s, metric, -1) == _value(top, metric, -2):
                s.best_on.append(metric)
                s.tied_with_best.append(metric)
                continue
            test = next((p for p in pairs if p.metric == metric
                         and {p.a, p.b} == {s.name, top.name}), None)
            if test is not None and not test.significant:
                s.tied_with_best.append(metric)
    if n < MIN_CANARIES:
        return Choice(scope=scope, tag=tag, n_canaries=n, verdict="INCONCLUSIVE",
                      best=best.name, standings=standings, pairs=pairs,
                      reason=f"only {n} canaries (the recommendation needs {MIN_CANARIES}): "
                             f"INCONCLUSIVE; the best-looking is {best.name}")
    others = [s for s in usable if s.name != best.name]
    corrected = alpha / max(1, 2 * len(others))
    evidence: list[NonInferiority] = []
    best.non_inferior = True
    for s in others:
        rows = non_inferiority(s.name, best.name, rates, settings, samples, corrected)
        evidence += rows
        s.non_inferior = all(r.non_inferior for r in rows)
    eligible = [s for s in usable if s.non_inferior]
    pick = min(eligible, key=lambda s: (_value(s, "cost_per_success_usd", float("inf")),
                                        _value(s, "cost_per_1k_usd", float("inf"))))
    facts = "; ".join(f"{r.config} {r.metric} {_pct(r.difference)} vs {best.name} "
                      f"[{_pct(r.low)}, {_pct(r.high)}], margin {r.margin:.1%}: "
                      f"{'non-inferior' if r.non_inferior else 'not shown non-inferior'}"
                      for r in evidence)
    level = f"at alpha {alpha:g} / {max(1, 2 * len(others))} = {corrected:.4g} per comparison"
    if len(eligible) == 1:
        return Choice(scope=scope, tag=tag, n_canaries=n, verdict="NONE_NON_INFERIOR",
                      recommended=best.name, best=best.name, standings=standings,
                      pairs=pairs, evidence=evidence,
                      reason=f"no other config is non-inferior to the best; the best is "
                             f"{best.name} ({level}){': ' + facts if facts else ''}")
    cost = pick.figures["cost_per_success_usd"].value
    return Choice(scope=scope, tag=tag, n_canaries=n, verdict="RECOMMEND",
                  recommended=pick.name, best=best.name, standings=standings, pairs=pairs,
                  evidence=evidence,
                  reason=f"{pick.name} is the cheapest config non-inferior to the best "
                         f"({best.name}) on pass and hallucination rates within the gate's "
                         f"margins ({level})"
                         + (f", at ${cost:.6f} per successful answer" if cost else "")
                         + f": {facts}")


def leaderboard(configs: Sequence[tuple[str, Sequence[Record]]], settings: GateSettings,
                samples: int, paths: dict[str, str] | None = None,
                weights: dict[str, float] | None = None) -> Leaderboard:
    """The overall choice and one per canary tag."""
    overall = choose(configs, settings, samples)
    tags = sorted({t for _, recs in configs for r in recs for t in r.tags})
    by_tag = []
    for tag in tags:
        scoped = [(name, [r for r in recs if tag in r.tags]) for name, recs in configs]
        by_tag.append(choose(scoped, settings, samples, scope=f"tag:{tag}", tag=tag))
    margins = {m: getattr(settings.vs_baseline, f) for m, f in MARGIN_FIELD.items()}
    return Leaderboard(alpha=settings.alpha, margins=margins, correction=CORRECTION,
                       overall=overall, by_tag=by_tag, paths=paths or {},
                       traffic_weights=weights or {})
