"""The engine without pytest: plan the calls, make them, grade, measure, decide."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Collection, Iterator
from datetime import UTC, datetime

from evalgate import __version__
from evalgate.config import LoadedModel
from evalgate.executor import execute
from evalgate.gate import decide
from evalgate.graders.grade import grade
from evalgate.metrics import compute_metrics
from evalgate.project import CaseEntry, PlannedCall, Project, plan_calls
from evalgate.providers import make_provider
from evalgate.results import ModelInfo, RunResult


def sim_cases(entries: list[CaseEntry]) -> list[object]:
    from evalgate.sim import SimCase

    return [SimCase(key=e.key, prompt=e.case.user_text, facts=tuple(e.case.expected.facts),
                    forbidden=tuple(e.case.expected.forbidden),
                    reference=e.case.expected.reference) for e in entries]


@contextlib.contextmanager
def simulator_for(model: LoadedModel, entries: list[CaseEntry]) -> Iterator[str | None]:
    """Start the local simulator on 127.0.0.1 for `provider: sim`, for as long as the run."""
    if model.config.provider != "sim":
        yield None
        return
    from evalgate.sim import SimProfile, SimServer

    name = model.config.model or model.name
    server = SimServer(profiles={name: model.config.sim or SimProfile()},
                       cases=sim_cases(entries))  # type: ignore[arg-type]
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


def run_project(project: Project, selected: Collection[str] | None = None,
                concurrency: int | None = None, run_id: str | None = None) -> RunResult:
    """Make each selected (canary, sample) call once and decide the gate on the results."""
    cfg = project.gate.config
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    calls = select_calls(plan_calls(project.candidate, project.entries, cfg.samples), selected)
    entries_by_key = project.entries_by_key()
    workers = concurrency or cfg.concurrency
    with simulator_for(project.candidate, project.entries) as sim_url:
        provider = make_provider(project.candidate, sim_url)
        records = execute(project.candidate, provider, calls, workers) if calls else []
    for record in records:
        grade(record, entries_by_key[record.key].criteria)
    metrics, counts = compute_metrics(records)
    verdicts, overall = decide(cfg.gate, metrics)
    model = project.candidate
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
                            fingerprint=model.fingerprint()),
        samples=cfg.samples,
        concurrency=workers,
        calls_made=sum(len(r.attempts) for r in records),
        records=records,
        metrics=metrics,
        counts=counts,
        verdicts=verdicts,
        verdict=overall,
        on_inconclusive=cfg.gate.on_inconclusive,
    )
