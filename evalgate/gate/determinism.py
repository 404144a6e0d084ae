"""Determinism: ask selected canaries K times at the configured temperature and measure whether
the answers agree (exactly, and after folding case, whitespace and punctuation) and how much
their rubric scores spread. A canary "agrees" when all K answers are equal.

The unit is the canary: the agreement rate is the share of canaries whose K answers agree, so
the gate's tests for rates over canaries apply (a Wilson bound against `min_agreement`, a paired
non-inferiority test against a live baseline's agreement with `max_agreement_drop`).
"""

from __future__ import annotations

import asyncio
import random
import re
import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np

from evalgate.engine.executor import Executor, run_jobs
from evalgate.engine.planning import PlannedCall, build_messages
from evalgate.engine.providers import make_provider
from evalgate.engine.routing import executor_for, with_targets
from evalgate.gate.guardrails import Guardrail, no_data, to_verdict, undecidable
from evalgate.grading.grade import grade
from evalgate.results import DeterminismReport, DeterminismStats, GuardrailVerdict, Record
from evalgate.sim.launch import simulator_for
from evalgate.spec.production import DeterminismSpec

DET_SAMPLE_BASE = 200_000  # sample numbers of repeat calls: distinct from the gate's samples
CANDIDATE, BASELINE = "candidate", "baseline"
_FOLD = re.compile(r"[\W_]+", re.UNICODE)


def normalize(text: str) -> str:
    """Case, whitespace and punctuation folded: 'The answer: 30 days.' == 'the answer 30 DAYS'."""
    return _FOLD.sub(" ", text.casefold()).strip()


def select(entries: Sequence[Any], spec: DeterminismSpec) -> list[Any]:
    """The canaries the selector names (tags: any of; ids: key or case id; count: the first N
    of what is left, in canary order)."""
    sel = spec.canaries
    chosen = list(entries)
    if sel.tags:
        wanted = set(sel.tags)
        chosen = [e for e in chosen if wanted & set(e.case.tags)]
    if sel.ids:
        ids = set(sel.ids)
        chosen = [e for e in chosen if e.key in ids or e.case.id in ids]
    if sel.count is not None:
        chosen = chosen[:sel.count]
    return chosen


def agreement_flags(records: Sequence[Record]) -> dict[str, tuple[bool, bool] | None]:
    """Per canary: (exact, normalised) agreement of its K answers; None when a call failed."""
    texts: dict[str, list[str | None]] = {}
    for r in records:
        texts.setdefault(r.key, []).append(r.text if r.ok else None)
    out: dict[str, tuple[bool, bool] | None] = {}
    for key, answers in texts.items():
        if any(a is None for a in answers):
            out[key] = None
            continue
        out[key] = (len(set(answers)) == 1,
                    len({normalize(a or "") for a in answers}) == 1)
    return out


def summarize(config: str, records: Sequence[Record], repeats: int) -> DeterminismStats:
    flags = agreement_flags(records)
    usable = {k: f for k, f in flags.items() if f is not None}
    scores: dict[str, list[float]] = {}
    for r in records:
        if r.ok and r.score is not None:
            scores.setdefault(r.key, []).append(r.score)
    stdevs = [statistics.stdev(v) for v in scores.values() if len(v) >= 2]
    ranges = [max(v) - min(v) for v in scores.values() if v]
    n = len(usable)
    return DeterminismStats(
        config=config, canaries=len(flags), repeats=repeats,
        exact_agreement=sum(f[0] for f in usable.values()) / n if n else None,
        normalized_agreement=sum(f[1] for f in usable.values()) / n if n else None,
        score_stdev_mean=sum(stdevs) / len(stdevs) if stdevs else None,
        score_range_max=max(ranges) if ranges else None,
        errors=sum(1 for r in records if not r.ok),
        disagreeing=sorted(k for k, f in usable.items() if not f[1]))


def run_determinism(project: Any, spec: DeterminismSpec, baseline: Any | None, concurrency: int,
                    seed: int, selected_keys: set[str] | None = None
                    ) -> tuple[DeterminismReport, list[Record], list[Record]]:
    """Make K calls per selected canary (candidate and a live baseline back to back, in a
    seeded random order, like the gate's calls), grade them, and summarise agreement."""
    entries = select(project.entries, spec)
    if selected_keys is not None:
        entries = [e for e in entries if e.key in selected_keys]
    models = [project.candidate] + ([baseline] if baseline is not None else [])
    cand_records: list[Record] = []
    base_records: list[Record] = []
    if entries:
        with simulator_for(with_targets(models), project.entries) as sim_url:
            def make(offset: int) -> Any:
                return lambda m: Executor(m, make_provider(m, sim_url), concurrency,
                                          seed + offset)

            cand = executor_for(project.candidate, make(21))
            base = executor_for(baseline, make(22)) if baseline is not None else None
            order = random.Random(seed + 23)
            jobs = []
            for entry in entries:
                cand_msgs = build_messages(project.candidate, entry.case)
                base_msgs = build_messages(baseline, entry.case) if baseline is not None \
                    else None
                for j in range(spec.repeats):
                    job = [(cand, PlannedCall(entry, DET_SAMPLE_BASE + j, cand_msgs), CANDIDATE)]
                    if base is not None and base_msgs is not None:
                        job.insert(order.randrange(2),
                                   (base, PlannedCall(entry, DET_SAMPLE_BASE + j, base_msgs),
                                    BASELINE))
                    jobs.append(job)
            done = asyncio.run(run_jobs(jobs, concurrency))
        by_key = {e.key: e for e in entries}
        for record in (r for job in done for r in job):
            grade(record, by_key[record.key].criteria)
            (cand_records if record.config == CANDIDATE else base_records).append(record)
    report = DeterminismReport(
        agreement=spec.agreement, candidate=summarize(CANDIDATE, cand_records, spec.repeats),
        baseline=summarize(BASELINE, base_records, spec.repeats) if baseline is not None
        else None)
    return report, cand_records, base_records


def determinism_guardrail_names(spec: DeterminismSpec | None, has_baseline: bool) -> list[str]:
    if spec is None:
        return []
    names = ["determinism.agreement"] if spec.min_agreement is not None else []
    if spec.max_agreement_drop is not None and has_baseline:
        names.append("determinism.agreement_vs_baseline")
    return names


def determinism_verdicts(spec: DeterminismSpec, settings: Any, cand: Sequence[Record],
                         base: Sequence[Record] | None) -> list[GuardrailVerdict]:
    """Wilson floor on the candidate's agreement; paired non-inferiority vs a live baseline."""
    from evalgate import stats

    which = 1 if spec.agreement == "normalized" else 0

    def flags(records: Sequence[Record]) -> dict[str, float]:
        return {k: float(f[which]) for k, f in agreement_flags(records).items() if f is not None}

    planned: list[tuple[Guardrail, np.ndarray, np.ndarray | None]] = []
    cand_flags = flags(cand)
    if spec.min_agreement is not None:
        g = Guardrail("determinism.agreement", "agreement_rate", "rate_cap", spec.min_agreement,
                      "lower")
        planned.append((g, np.array(list(cand_flags.values())), None))
    if spec.max_agreement_drop is not None and base is not None:
        g = Guardrail("determinism.agreement_vs_baseline", "agreement_rate",
                      "rate_vs_baseline", spec.max_agreement_drop, "lower")
        base_flags = flags(base)
        keys = sorted(cand_flags.keys() & base_flags.keys())
        planned.append((g, np.array([cand_flags[k] for k in keys]),
                        np.array([base_flags[k] for k in keys])))
    out: dict[str, GuardrailVerdict] = {}
    tested = []
    for g, c, b in planned:
        if len(c) == 0:
            out[g.name] = no_data(g, 1)
            continue
        assert g.bound is not None
        try:
            if b is None:
                ev = stats.rate_cap(c, guardrail=g.name, cap=g.bound, alpha=settings.alpha,
                                    samples=1, worse="lower")
            else:
                ev = stats.compare_rate(c, b, guardrail=g.name, margin=g.bound,
                                        alpha=settings.alpha, samples=1, worse="lower")
        except ValueError as exc:
            out[g.name] = undecidable(g, 1, len(c), str(exc))
            continue
        tested.append((g, ev))
    final = stats.finalize([ev for _, ev in tested], settings.alpha,
                           settings.fail_on_significant_regression)
    for (g, _), ev in zip(tested, final, strict=True):
        out[g.name] = to_verdict(g, ev)
    return [out[g.name] for g, _, _ in planned]
