"""The engine without pytest: plan the calls, make them, grade, measure, decide."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import platform
import random
import subprocess
import time
import uuid
from collections.abc import Collection, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from evalgate import __version__
from evalgate.baseline import Baseline
from evalgate.compare import align_keys
from evalgate.config import LoadedModel
from evalgate.executor import Step, executor_for, run_jobs
from evalgate.graders.grade import grade
from evalgate.guardrails import decide_gate, fallback_warnings, power_warnings
from evalgate.project import CaseEntry, PlannedCall, Project, plan_calls
from evalgate.results import (
    BaselineInfo,
    ComparisonInfo,
    ModelInfo,
    Record,
    RunEnvironment,
    RunResult,
)

CANDIDATE, BASELINE = "candidate", "baseline"


def sim_cases(entries: list[CaseEntry]) -> list[object]:
    from evalgate.sim import SimCase

    return [SimCase(key=e.key, prompt=e.case.user_text, facts=tuple(e.case.expected.facts),
                    forbidden=tuple(e.case.expected.forbidden),
                    reference=e.case.expected.reference) for e in entries]


@contextlib.contextmanager
def simulator_for(models: Sequence[LoadedModel], entries: list[CaseEntry]
                  ) -> Iterator[str | None]:
    """Start one local simulator on 127.0.0.1 serving every `provider: sim` model's profile."""
    sims = [m for m in models if m.config.provider == "sim"]
    if not sims:
        yield None
        return
    from evalgate.sim import SimProfile, SimServer

    server = SimServer(cases=sim_cases(entries))  # type: ignore[arg-type]
    for model in sims:
        server.add_profile(model.config.model or model.name, model.config.sim or SimProfile())
    server.start()
    try:
        yield server.base_url
    finally:
        server.stop()


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


def make_calls(project: Project, selected: Collection[str] | None, concurrency: int,
               baseline_model: LoadedModel | None) -> tuple[list[Record], list[Record]]:
    """Make the candidate's calls and, for a live baseline, the baseline's: each canary's two
    requests go back to back in a random (seeded) order on one lane."""
    cfg = project.gate.config
    cand_calls = select_calls(plan_calls(project.candidate, project.entries, cfg.samples),
                              selected)
    if not cand_calls:
        return [], []
    models = [project.candidate] + ([baseline_model] if baseline_model else [])
    models += [m.fallback for m in models if m.fallback is not None]
    with simulator_for(models, project.entries) as sim_url:
        cand = executor_for(project.candidate, concurrency, cfg.gate.seed, sim_url)
        jobs: list[list[Step]] = [[(cand, call, CANDIDATE)] for call in cand_calls]
        if baseline_model is not None:
            base = executor_for(baseline_model, concurrency, cfg.gate.seed + 1, sim_url)
            base_calls = select_calls(plan_calls(baseline_model, project.entries, cfg.samples),
                                      selected)
            order = random.Random(cfg.gate.seed)
            for job, call in zip(jobs, base_calls, strict=True):
                job.insert(order.randrange(2), (base, call, BASELINE))
        done = asyncio.run(run_jobs(jobs, concurrency))
    records = [r for job in done for r in job]
    return ([r for r in records if r.config == CANDIDATE],
            [r for r in records if r.config == BASELINE])


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


def run_project(project: Project, selected: Collection[str] | None = None,
                concurrency: int | None = None, run_id: str | None = None,
                baseline: Baseline | None = None) -> RunResult:
    """Make each selected (canary, sample) call once and decide the gate on the results."""
    cfg = project.gate.config
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    workers = concurrency or cfg.concurrency
    live = baseline.model if baseline is not None else None
    cand_records, base_records = make_calls(project, selected, workers, live)
    entries = project.entries_by_key()
    for record in [*cand_records, *base_records]:
        grade(record, entries[record.key].criteria)
    fingerprints = {e.key: case_fingerprint(e) for e in project.entries}
    comparison, warnings = None, []
    if baseline is not None and baseline.saved is not None:
        keys = {r.key for r in cand_records}
        base_records, comparison, warnings = saved_baseline_records(
            project, baseline, keys, fingerprints)
    elif baseline is not None:
        comparison = ComparisonInfo(compared=len({r.key for r in cand_records}))
    decision = decide_gate(cfg.gate, cand_records,
                           base_records if baseline is not None else None, cfg.samples)
    warnings = fallback_warnings(cand_records, base_records) + warnings \
        + power_warnings(decision["verdicts"])
    model = project.candidate
    all_records = [*cand_records, *(base_records if live is not None else [])]
    return RunResult(
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
        calls_made=sum(len(r.attempts) for r in all_records),
        records=cand_records,
        **decision,
        canary_failures=cfg.canary_failures,
        case_fingerprints={k: fingerprints[k] for k in sorted({r.key for r in cand_records})},
        baseline=baseline_info(baseline) if baseline is not None else None,
        baseline_records=base_records,
        comparison=comparison,
        warnings=warnings,
        environment=environment(project.gate.root),
        total_cost_usd=sum(r.cost_usd or 0.0 for r in all_records),
    )


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
