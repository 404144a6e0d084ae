"""The engine without pytest: plan the calls, make them, grade, measure, decide."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import platform
import random
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from evalgate import __version__
from evalgate.engine.executor import Step, run_jobs
from evalgate.engine.executor import executor_for as model_executor
from evalgate.engine.monitor import CallMonitor
from evalgate.engine.persist import Persistence, run_key
from evalgate.engine.planning import PlannedCall, plan_calls
from evalgate.engine.routing import executor_for, with_targets
from evalgate.errors import ConfigError, Problem
from evalgate.gate.baseline import Baseline
from evalgate.gate.compare import align_keys
from evalgate.gate.guardrails import (
    decide_gate,
    fallback_warnings,
    plan_guardrails,
    power_warnings,
    reviewed,
)
from evalgate.gate.judge_calibration import ReviewInputs, review_inputs
from evalgate.gate.production import apply
from evalgate.gate.sequential import SequentialGate, looks_of
from evalgate.gate.serving import saturation_warnings, serving_warnings
from evalgate.gate.streaming import stream_warnings
from evalgate.gate.verdicts import overall_verdict
from evalgate.grading.grade import GradingSummary, combine_gradings, grade, grading_phase
from evalgate.grading.rubrics import CaseEntry
from evalgate.pipeline.project import Project
from evalgate.pipeline.window import (
    WindowCheck,
    check_window,
    overflow_record,
    routed,
    window_verdict,
)
from evalgate.results import (
    STOPPED_CLASS,
    BaselineInfo,
    CanaryImage,
    ComparisonInfo,
    ConfigCalls,
    ModelInfo,
    Record,
    RunEnvironment,
    RunResult,
)
from evalgate.sim.launch import simulator_for
from evalgate.spec.config import LoadedModel, display_path

CANDIDATE, BASELINE = "candidate", "baseline"
T = TypeVar("T")
Publish = Callable[[RunResult, Callable[[], None]], None]


def select_calls(calls: list[PlannedCall], selected: Collection[str] | None
                 ) -> list[PlannedCall]:
    if selected is None:
        return calls
    wanted = set(selected)
    return [c for c in calls if c.record_id in wanted]


def case_fingerprint(entry: CaseEntry) -> str:
    """Changes when the canary itself changes (prompt, context, references), not its rubric."""
    payload = json.dumps(entry.case.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


async def run_looks(jobs: list[list[Step]], concurrency: int, looks: SequentialGate,
                    monitor: CallMonitor | None = None) -> list[list[Record]]:
    """Sequential gating: the jobs in look-sized batches, stopping once a look decides."""
    looks.calls_planned = sum(len(job) for job in jobs)
    done: list[list[Record]] = []
    for batch in looks.batches([job[0][1].entry.key for job in jobs]):
        part = await run_jobs([jobs[i] for i in batch], concurrency, monitor)
        done += part
        if monitor is not None and monitor.stop_reason is not None:
            break
        # In a thread: a look grades its answers, and the judge runs its own event loop.
        if await asyncio.to_thread(looks.after_look, [r for job in part for r in job]):
            break
    return done


def make_calls(project: Project, selected: Collection[str] | None, concurrency: int,
               baseline_model: LoadedModel | None, persist: Persistence | None = None,
               looks: SequentialGate | None = None,
               progress: Callable[[CallMonitor], None] | None = None,
               window: WindowCheck | None = None
               ) -> tuple[list[Record], list[Record], dict[str, list[Record]]]:
    """Make every candidate's calls and, for a live baseline, the baseline's: each canary's
    requests to all configs go back to back in a random (seeded) order on one lane. With
    `persist`, finished calls are journaled and cached, and journaled/cached answers are not
    asked for again; with `looks`, the calls go in look-sized batches that stop once a look
    decides; `progress` sees the counts after every finished call; the first candidate's
    calls of canaries over its `window` (on_overflow: error) are not made, they are errors.
    Returns the first candidate's records, the baseline's, and each further candidate's (by
    its name)."""
    cfg = project.gate.config
    cand_calls = select_calls(plan_calls(project.candidate, project.entries, cfg.samples),
                              selected)
    if not cand_calls:
        return [], [], {m.name: [] for m in project.alternatives}
    models = [*project.configs] + ([baseline_model] if baseline_model else [])
    models = with_targets(models)
    models += [m.fallback for m in models if m.fallback is not None]
    with simulator_for(models, project.entries) as sim_url:
        cand = executor_for(project.candidate, lambda m: model_executor(
            m, concurrency, cfg.gate.seed, sim_url))
        jobs: list[list[Step]] = [[(cand, call, CANDIDATE)] for call in cand_calls]
        order = random.Random(cfg.gate.seed)
        if baseline_model is not None:
            base = executor_for(baseline_model, lambda m: model_executor(
                m, concurrency, cfg.gate.seed + 1, sim_url))
            base_calls = select_calls(plan_calls(baseline_model, project.entries, cfg.samples),
                                      selected)
            for job, call in zip(jobs, base_calls, strict=True):
                job.insert(order.randrange(2), (base, call, BASELINE))
        for i, alt in enumerate(project.alternatives, 2):
            run = executor_for(alt, lambda m, i=i: model_executor(
                m, concurrency, cfg.gate.seed + i, sim_url))
            alt_calls = select_calls(plan_calls(alt, project.entries, cfg.samples), selected)
            for job, call in zip(jobs, alt_calls, strict=True):
                job.insert(order.randrange(len(job) + 1), (run, call, alt.name))

        skip = window.overflow if window is not None and window.mode == "error" else {}
        overflow = [overflow_record(c, CANDIDATE, window) for c in cand_calls
                    if c.entry.key in skip and window is not None]
        if skip:  # no call for them: they are errors from the start
            jobs = [kept for job in jobs if (kept := [
                step for step in job if step[2] != CANDIDATE or step[1].entry.key not in skip])]

        def runner(todo: list[list[Step]]) -> list[list[Record]]:
            monitor = CallMonitor.for_jobs(todo, progress)
            return asyncio.run(run_jobs(todo, concurrency, monitor) if looks is None
                               else run_looks(todo, concurrency, looks, monitor))

        if not jobs:
            done = []
        elif persist is None:
            done = runner(jobs)
        else:
            identity = {"gate": project.gate.fingerprint(),
                        "canaries": project.canary_fingerprint(),
                        "candidate": project.candidate.fingerprint(),
                        "baseline": baseline_model.fingerprint() if baseline_model else None,
                        "samples": cfg.samples}
            if project.alternatives:
                identity["alternatives"] = [m.fingerprint() for m in project.alternatives]
            key = run_key(identity, [c.record_id for c in cand_calls])
            done = persist.run(jobs, key, runner)
    records = [r for job in done for r in job]
    if overflow:  # in the order of the calls
        order_of = {c.record_id: i for i, c in enumerate(cand_calls)}
        records = sorted([*records, *overflow], key=lambda r: (
            r.config != CANDIDATE, order_of.get(r.record_id, len(order_of))))
    alts: dict[str, list[Record]] = {m.name: [] for m in project.alternatives}
    for r in records:
        if r.config in alts:
            alts[r.config].append(r)
    return ([r for r in records if r.config == CANDIDATE],
            [r for r in records if r.config == BASELINE], alts)


def saved_baseline_records(project: Project, baseline: Baseline, keys: set[str],
                           fingerprints: dict[str, str]
                           ) -> tuple[list[Record], ComparisonInfo, list[str]]:
    """The saved run's answers on this run's canaries, re-graded with today's rubrics."""
    saved = baseline.saved
    assert saved is not None
    usable, comparison, warnings = align_keys(saved, keys, fingerprints)
    entries = project.entries_by_key()
    records = [grade(old.model_copy(deep=True, update={"config": BASELINE}),
                     entries[old.key].criteria)
               for old in saved.records if old.key in usable]
    current = {n: r.fingerprint() for n, r in project.rubrics.items()}
    differing = sorted(n for n, fp in saved.rubric_fingerprints.items()
                       if n in current and current[n] != fp)
    if differing:
        warnings.insert(0, f"rubric(s) {', '.join(differing)} changed since the baseline run "
                        f"{saved.run_id}: its stored answers were re-graded with today's rubric")
    return records, comparison, warnings


def baseline_info(baseline: Baseline) -> BaselineInfo:
    if baseline.model is not None:
        model = baseline.model
        return BaselineInfo(source=baseline.source.spec, kind=baseline.source.kind,
                            name=model.name, provider=model.config.provider,
                            model=model.config.model or model.name,
                            fingerprint=model.fingerprint(), config=model.describe())
    saved = baseline.saved
    assert saved is not None
    return BaselineInfo(source=baseline.source.spec, kind="result", name=saved.candidate.name,
                        provider=saved.candidate.provider, model=saved.candidate.model,
                        fingerprint=saved.candidate.fingerprint, run_id=saved.run_id,
                        rubric_fingerprints=saved.rubric_fingerprints,
                        config=saved.candidate.config)


def in_background(fn: Callable[..., T], *args: object) -> Callable[[], T]:
    """Start fn(*args) in a thread now (e.g. `git` while the calls run); call to wait for it."""
    box: list[T] = []
    thread = threading.Thread(target=lambda: box.append(fn(*args)), daemon=True)
    thread.start()

    def result() -> T:
        thread.join()
        return box[0] if box else fn(*args)

    return result


def run_project(project: Project, selected: Collection[str] | None = None,
                concurrency: int | None = None, run_id: str | None = None,
                baseline: Baseline | None = None, cache: str = "off",
                resume: bool = False, shard: tuple[int, int] | None = None,
                progress: Callable[[CallMonitor], None] | None = None,
                publish: Publish | None = None) -> RunResult:
    """Make each selected (canary, sample) call once and decide the gate on the results.

    `cache` (off|read|write|on) and `resume` (reuse the journal of an interrupted run of the
    same configuration) are the reliability switches; see evalgate.engine.persist. `progress`
    is called with the live counts after every finished call. `publish(result, done)` writes
    the result and the reports and calls `done()` once all of them are on disk: only then does
    the journal go, so a kill while they are written resumes with no call made again (without
    `publish`, the journal goes when the result is returned)."""
    cfg = project.gate.config
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    workers = cfg.concurrency if concurrency is None else concurrency
    if workers < 1:
        raise ConfigError(Problem("concurrency", f"{workers} is not a concurrency: expected a "
                                  "whole number >= 1"))
    live = baseline.model if baseline is not None else None
    persist = Persistence(project.gate.root, cache, resume)  # type: ignore[arg-type]
    fingerprints = {e.key: case_fingerprint(e) for e in project.entries}
    gradings: list[GradingSummary] = []
    window = check_window(project.candidate, project.entries, project.gate.root,
                          persist.cache_mode)
    if window is not None and window.overflow and window.mode == "long_context":
        project = dataclasses.replace(project, candidate=routed(project.candidate, window))

    def grade_batch(records: list[Record]) -> None:
        """Grade in place, with the judge when the rubrics need one (a sequential look)."""
        gradings.append(grading_phase(project, records, workers, cache))

    looks = sequential_gate(project, selected, baseline, fingerprints, grade_batch)
    where = in_background(environment, project.gate.root)
    cand_records, base_records, alt_records = make_calls(project, selected, workers, live,
                                                         persist, looks, progress, window)
    alt_all = [r for recs in alt_records.values() for r in recs]
    comparison, warnings = None, []
    if baseline is not None and baseline.saved is not None:
        keys = {r.key for r in cand_records}
        base_records, comparison, warnings = saved_baseline_records(
            project, baseline, keys, fingerprints)
        if looks is not None and looks.outcomes and looks.saved_baseline is not None:
            # the looks' copies, already graded (and judged) once
            base_records = [r for r in looks.saved_baseline if r.key in keys]
    elif baseline is not None:
        comparison = ComparisonInfo(compared=len({r.key for r in cand_records}))
    if looks is not None and looks.outcomes:  # every answer was graded at its look
        # ... except a look cut short by Ctrl-C: its answers are graded here
        ungraded = [r for r in [*cand_records, *base_records, *alt_all]
                    if r.ok and not r.criteria]
        if ungraded:
            grade_batch(ungraded)
        grading = combine_gradings(gradings)
    else:  # judge calls (after every model call), then the final grades
        grading = grading_phase(project, [*cand_records, *base_records, *alt_all], workers,
                                cache)
    review = project_review(project)
    decision = decide_gate(cfg.gate, cand_records,
                           base_records if baseline is not None else None, cfg.samples, review)
    model = project.candidate
    all_records = [*cand_records, *(base_records if live is not None else []), *alt_all]
    planned, saved, seq_info = persist.planned or len(all_records), 0, None
    if looks is not None and looks.outcomes:  # the looks' verdicts, at their nominal levels
        decision["verdicts"] = looks.verdicts()
        if review is not None:
            decision["verdicts"] = reviewed(cfg.gate, decision["verdicts"], cand_records,
                                            base_records if baseline is not None else None,
                                            review, cfg.samples)[0]
        decision["verdict"] = overall_verdict([v.verdict for v in decision["verdicts"]])
        planned = looks.calls_planned
        seq_info = looks.info(planned, len(all_records))
        if looks.stopped_early and not persist.partial:  # Ctrl-C saves nothing
            saved = planned - len(all_records)
    if window is not None:  # the gate item "N canaries exceed the candidate's window"
        decision["verdicts"] = [*decision["verdicts"], window_verdict(window)]
        decision["verdict"] = overall_verdict([v.verdict for v in decision["verdicts"]])
    warnings = fallback_warnings(cand_records, base_records) + warnings \
        + stream_warnings(cand_records, base_records) + power_warnings(decision["verdicts"])
    warnings = reliability_notes(persist, all_records, decision) + early_stop_notes(
        all_records) + warnings \
        + serving_warnings("candidate", cand_records, model.config.pricing.from_header)
    if live is not None:
        warnings += serving_warnings("baseline", base_records, live.config.pricing.from_header)
    if decision.get("review") is not None:
        warnings += decision["review"].notes
    result = RunResult(
        evalgate_version=__version__,
        run_id=run_id or uuid.uuid4().hex[:12],
        started_at=started.isoformat(timespec="seconds"),
        wall_time_s=round(time.perf_counter() - t0, 3),
        gate_fingerprint=project.gate.fingerprint(),
        canary_fingerprint=project.canary_fingerprint(),
        rubric_fingerprints={n: r.fingerprint() for n, r in sorted(project.rubrics.items())},
        candidate=ModelInfo(name=model.name, provider=model.config.provider,
                            model=model.config.model or model.name,
                            fingerprint=model.fingerprint(), config=model.describe()),
        samples=cfg.samples,
        concurrency=workers,
        calls_made=sum(len(r.attempts) for r in all_records
                       if (r.config, r.record_id) not in persist.reused),
        calls_by_config=calls_by_config(all_records, persist.reused),
        calls_planned=planned,
        calls_saved_sequential=saved,
        sequential=seq_info,
        records=cand_records,
        **decision,
        canary_failures=cfg.canary_failures,
        case_fingerprints={k: fingerprints[k] for k in sorted({r.key for r in cand_records})},
        baseline=baseline_info(baseline) if baseline is not None else None,
        baseline_records=base_records,
        comparison=comparison,
        warnings=warnings,
        images=canary_images(project, {r.key for r in cand_records}),
        environment=where(),
        total_cost_usd=sum(r.cost_usd or 0.0 for r in all_records if not r.cached),
        calls_from_cache=persist.from_cache,
        calls_from_journal=persist.from_journal,
        partial=persist.partial,
        **grading.fields(),
    )
    if project.alternatives:
        choose_among(project, result, alt_records, baseline is not None, review)
    # Routes, blended cost, load profile, determinism: only when configured.

    result = apply(project, result, cand_records,
                   base_records if baseline is not None else None, live, workers, selected,
                   shard)
    result.warnings += saturation_warnings(result.load, {"candidate": cand_records, **(
        {"baseline": base_records} if live is not None else {})})
    # Not before: a Ctrl-C or a kill while grading, loading or writing keeps the journal.
    if publish is None:
        persist.finish()
    else:
        publish(result, persist.finish)
    return result


def choose_among(project: Project, result: RunResult, alt_records: dict[str, list[Record]],
                 has_baseline: bool, review: ReviewInputs | None) -> None:
    """N candidates: gate each further one against the baseline as the first is gated, decide
    the run by `gate.require`, and rank them all (with the baseline) on the leaderboard."""
    from evalgate.gate.choice import gate_alternative, leaderboard_of, required_verdict

    cfg = project.gate.config
    root = project.gate.root
    base = result.baseline_records if has_baseline else None
    for model in project.alternatives:
        result.alternatives.append(gate_alternative(
            cfg.gate, model.name, alt_records[model.name], base, cfg.samples, review,
            ModelInfo(name=model.name, provider=model.config.provider,
                      model=model.config.model or model.name,
                      fingerprint=model.fingerprint(), config=model.describe()),
            display_path(model.path, root)))
    result.candidate_path = display_path(project.candidate.path, root)
    result.require = cfg.gate.require
    result.primary_verdict = result.verdict
    result.verdict = required_verdict(cfg.gate.require, result.verdict,
                                      [a.verdict for a in result.alternatives])
    base_name = None
    if has_baseline and result.baseline is not None and result.baseline_records:
        base_name = f"baseline ({result.baseline.name})"
    weights = cfg.traffic.weights if cfg.traffic is not None else {}
    result.leaderboard = leaderboard_of(result, base_name, cfg.gate, cfg.samples, weights)
    result.warnings += [f"candidate {a.info.name}: {w}"
                        for a in result.alternatives for w in fallback_warnings(a.records)]


THUMBNAIL_MAX_BYTES = 64 * 1024  # larger images show by name only in the HTML report


def canary_images(project: Project, keys: set[str]) -> dict[str, list[CanaryImage]]:
    """The images of the run's canaries, with a data-URI thumbnail for small ones."""
    return {e.key: [CanaryImage(name=i.name, media_type=i.media_type, bytes=i.size,
                                sha256=i.sha256, thumbnail=f"data:{i.media_type};base64,{i.data}"
                                if i.size <= THUMBNAIL_MAX_BYTES else None)
                    for i in e.case.image_refs()]
            for e in project.entries if e.key in keys and e.case.image_refs()}


def calls_by_config(records: list[Record], reused: set[tuple[str, str]]
                    ) -> dict[str, ConfigCalls]:
    """Per config, the calls this run made and their HTTP attempts: the one count the terminal
    and the reports show (not answers from the cache or journal, nor calls left unmade)."""
    out: dict[str, ConfigCalls] = {}
    for r in records:
        counts = out.setdefault(r.config, ConfigCalls())
        if r.cached or r.error_class == STOPPED_CLASS or (r.config, r.record_id) in reused:
            continue
        counts.made += 1
        counts.attempts += len(r.attempts)
    return out


def early_stop_notes(records: list[Record]) -> list[str]:
    """Why calls were not made when a dead endpoint stopped the run early."""
    stopped = [r for r in records if r.error_class == STOPPED_CLASS]
    if not stopped:
        return []
    reason = (stopped[0].error_message or "").removeprefix("not made: ")
    return [f"{len(stopped)} of {len(records)} calls were not made: {reason}"]


def project_review(project: Project) -> ReviewInputs | None:
    """What reviewers said, when the gate uses it or there is any (None: nothing to apply)."""
    g = project.gate.config.gate
    uses = (g.min_verified is not None or g.verified_only or g.min_judge_kappa is not None
            or g.correct_for_judge)
    if not uses and not project.labels and not any(e.case.verified for e in project.entries):
        return None
    return review_inputs(project.entries, project.labels)


LATENCY_METRICS = ("latency_ms", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
                   "ttft_ms", "ttft_p95_ms", "tokens_per_s")


def reliability_notes(persist: Persistence, records: list[Record],
                      decision: dict[str, Any]) -> list[str]:
    """Say what the numbers rest on: a partial run never passes; latency that came from the
    cache (measured when the answer was first made) is named on every latency verdict."""
    notes = []
    if persist.partial:
        if decision["verdict"] == "PASS":
            decision["verdict"] = "INCONCLUSIVE"
        notes.append(f"PARTIAL run: interrupted after {len(records)} of {persist.planned} "
                     "calls; the verdict cannot be PASS. Finish it with --evalgate-resume")
    if persist.resumed_missing:
        notes.append("--evalgate-resume: no journal of this run (same config, canaries and "
                     "selection) was found, so every call was made")
    elif persist.replaced_journal:
        notes.append("an interrupted run of this configuration left a journal; this run "
                     "started over (--evalgate-resume would have reused its answers)")
    if persist.from_journal:
        notes.append(f"resumed: {persist.from_journal} answer(s) reused from the journal of "
                     "the interrupted run, not asked for again"
                     + (f" ({persist.unreadable_lines} torn journal line(s) skipped)"
                        if persist.unreadable_lines else ""))
    if persist.journal_error:
        notes.append("the run journal (.evalgate/journal) could not be written, so an "
                     f"interrupted run could not be resumed: {persist.journal_error}")
    if persist.journal_failed_at is not None:
        notes.append(f"the run could not be journaled from call {persist.journal_failed_at} "
                     f"on: resume will repeat those calls ({persist.journal_failure})")
    if persist.cache_error:
        notes.append(f"the response cache (.evalgate/cache) could not be used, so every call "
                     f"was made: {persist.cache_error}")
    cached = [r for r in records if r.cached]
    if cached:
        when = sorted(r.cached_at or "?" for r in cached)
        span = when[0] if when[0] == when[-1] else f"{when[0]} to {when[-1]}"
        note = (f"latency from cache for {len(cached)} of {len(records)} answers (measured at "
                f"{span})")
        notes.append(f"{len(cached)} of {len(records)} answers came from the response cache "
                     f"(.evalgate/cache), no call made: their latency is the one measured when "
                     f"each was first made ({span}), not in this run (so is their time to first "
                     "token when streamed); "
                     "--evalgate-cache=off measures it again")
        for verdict in decision["verdicts"]:
            if verdict.metric in LATENCY_METRICS:
                verdict.note = f"{verdict.note}; {note}" if verdict.note else note
    return notes


def sequential_gate(project: Project, selected: Collection[str] | None,
                    baseline: Baseline | None, fingerprints: dict[str, str],
                    grade_batch: Callable[[list[Record]], None]) -> SequentialGate | None:
    """The look runner when `gate.sequential` is on (None otherwise)."""
    cfg = project.gate.config
    fractions = looks_of(cfg.gate.sequential)
    if fractions is None:
        return None
    saved = None
    if baseline is not None and baseline.saved is not None:
        keys = {c.entry.key for c in select_calls(
            plan_calls(project.candidate, project.entries, cfg.samples), selected)}
        saved = saved_baseline_records(project, baseline, keys, fingerprints)[0]
        grade_batch(saved)
    return SequentialGate(cfg.gate, plan_guardrails(cfg.gate, baseline is not None), fractions,
                          cfg.samples, grade_batch,
                          saved_baseline=saved,
                          live_baseline=baseline is not None and baseline.model is not None)


def environment(root: Path) -> RunEnvironment:
    """Where the run happened: Python, platform, and the git commit and branch if any."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                                 text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() or None if out.returncode == 0 else None

    return RunEnvironment(python=platform.python_version(), platform=platform.platform(),
                          git_commit=git("rev-parse", "HEAD"),
                          git_branch=git("rev-parse", "--abbrev-ref", "HEAD"))
