"""The load profile: replay canary prompts at several concurrency levels and measure tail
latency, throughput and error/429 rates, candidate and baseline interleaved.

Why interleaved batches: a shared endpoint's load drifts during a run; alternating candidate
and baseline batches at each level (the order flipping every round) exposes both to the same
drift, so "candidate p95 / baseline p95 at concurrency 64" compares like with like. The calls
go through the same providers and executors as the gate's calls (retries, rate limits,
timeouts), are bounded by a request cap per level and a hard time cap for the whole phase, and
are not graded: this measures serving, the gate's canaries measure quality.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from typing import Any

from evalgate.engine.executor import Executor, run_jobs
from evalgate.engine.planning import PlannedCall, plan_calls
from evalgate.engine.providers import make_provider
from evalgate.engine.routing import executor_for, with_targets
from evalgate.gate.metrics import percentile
from evalgate.gate.verdicts import judge_metric
from evalgate.results import GuardrailVerdict, LoadLevel, LoadReport, Record
from evalgate.sim.launch import simulator_for
from evalgate.spec.production import LoadSpec

LOAD_SAMPLE_BASE = 100_000  # sample numbers of load calls: distinct from the gate's samples
CANDIDATE, BASELINE = "candidate", "baseline"


def level_stats(concurrency: int, config: str, records: Sequence[Record], busy_s: float,
                truncated: bool) -> LoadLevel:
    answered = [r.latency_ms for r in records if r.ok and r.latency_ms is not None]
    n = len(records)
    errors = sum(1 for r in records if not r.ok)
    limited = sum(1 for r in records if any(a.status == 429 for a in r.attempts))
    return LoadLevel(concurrency=concurrency, config=config, requests=n, errors=errors,
                     rate_429=limited / n if n else 0.0, error_rate=errors / n if n else 0.0,
                     throughput_rps=len(answered) / busy_s if busy_s > 0 else 0.0,
                     duration_s=round(busy_s, 4), p50_ms=percentile(answered, 50),
                     p95_ms=percentile(answered, 95), p99_ms=percentile(answered, 99),
                     truncated=truncated, attempts=sum(len(r.attempts) for r in records),
                     cost_usd=sum(r.cost_usd or 0.0 for r in records))


async def run_levels(spec: LoadSpec, configs: Sequence[tuple[str, Any, Sequence[Any]]],
                     ) -> LoadReport:
    """`configs`: (label, executor, planned calls to cycle through). Each level runs in
    rounds; each round is one batch per config at that concurrency, order flipped per round."""
    t0 = time.perf_counter()
    report = LoadReport(interleaved=len(configs) > 1)
    stop = False
    for concurrency in spec.levels:
        rounds = max(1, min(spec.rounds, spec.requests // concurrency))
        batch = max(concurrency, math.ceil(spec.requests / rounds))
        if spec.duration_s is not None:  # short batches, so the level stops near its duration
            batch = min(batch, 4 * concurrency)
        done: dict[str, list[Record]] = {label: [] for label, _, _ in configs}
        busy = dict.fromkeys(done, 0.0)
        truncated = False
        level_t0 = time.perf_counter()
        k = 0
        while not stop:
            sent = min(len(v) for v in done.values())
            if sent >= spec.requests:
                break
            if spec.duration_s is not None and k > 0 and \
                    time.perf_counter() - level_t0 >= spec.duration_s:
                break
            size = min(batch, spec.requests - sent)
            order = list(configs) if k % 2 == 0 else list(reversed(configs))
            for label, executor, calls in order:
                remaining = spec.max_total_s - (time.perf_counter() - t0)
                if remaining <= 0:
                    stop = truncated = True
                    break
                jobs = []
                for i in range(sent, sent + size):
                    call = calls[i % len(calls)]
                    jobs.append([(executor, PlannedCall(call.entry, LOAD_SAMPLE_BASE + i,
                                                        call.messages), label)])
                b0 = time.perf_counter()
                try:
                    result = await asyncio.wait_for(run_jobs(jobs, concurrency), remaining)
                except TimeoutError:
                    stop = truncated = True
                    break
                busy[label] += time.perf_counter() - b0
                done[label] += [job[0] for job in result]
            k += 1
        for label, _, _ in configs:
            report.levels.append(level_stats(concurrency, label, done[label], busy[label],
                                             truncated))
        if stop:
            report.notes.append(f"the load phase hit its time cap (max_total_s "
                                f"{spec.max_total_s:g}) at concurrency {concurrency}; later "
                                "levels were not run")
            break
    report.wall_time_s = round(time.perf_counter() - t0, 3)
    return report


def run_load(project: Any, spec: LoadSpec, baseline: Any | None, seed: int) -> LoadReport:
    """Replay the canaries' prompts (round-robin) at each level against a fresh simulator
    when a config uses `provider: sim`, else against the configured endpoints."""
    models = [project.candidate] + ([baseline] if baseline is not None else [])
    top = max(spec.levels)
    with simulator_for(with_targets(models), project.entries) as sim_url:
        def make(offset: int) -> Any:
            return lambda m: Executor(m, make_provider(m, sim_url), top, seed + offset)

        configs = [(CANDIDATE, executor_for(project.candidate, make(11)),
                    plan_calls(project.candidate, project.entries, 1))]
        if baseline is not None:
            configs.append((BASELINE, executor_for(baseline, make(12)),
                            plan_calls(baseline, project.entries, 1)))
        return asyncio.run(run_levels(spec, configs))


def _level(report: LoadReport, concurrency: int, config: str) -> LoadLevel | None:
    return next((lv for lv in report.levels
                 if lv.concurrency == concurrency and lv.config == config), None)


def load_guardrail_names(spec: LoadSpec | None, has_baseline: bool) -> list[str]:
    if spec is None:
        return []
    names = [f"load[c={c}].latency_p95_ms" for c in spec.levels if c in spec.max_p95_ms]
    if spec.max_error_rate is not None:
        names += [f"load[c={c}].error_rate" for c in spec.levels]
    if spec.max_p95_ratio is not None and has_baseline:
        names += [f"load[c={c}].p95_ratio_vs_baseline" for c in spec.levels]
    return names


def _named(v: GuardrailVerdict, name: str, concurrency: int, note: str | None = None
           ) -> GuardrailVerdict:
    return v.model_copy(update={
        "guardrail": name, "kind": "load",
        "test": "point estimate under load (no test: each request is not an independent "
                "canary)", "note": note,
        "reason": f"under load at concurrency {concurrency}: {v.reason}"})


def load_verdicts(spec: LoadSpec, report: LoadReport, has_baseline: bool
                  ) -> list[GuardrailVerdict]:
    """Point verdicts on the measured levels (a level not measured is INCONCLUSIVE)."""
    out = []
    for c in spec.levels:
        cand = _level(report, c, CANDIDATE)
        base = _level(report, c, BASELINE)
        if c in spec.max_p95_ms:
            value = cand.p95_ms if cand is not None else None
            out.append(_named(judge_metric("latency_p95_ms", value, None, spec.max_p95_ms[c]),
                              f"load[c={c}].latency_p95_ms", c))
            if base is not None:
                out[-1].baseline = base.p95_ms
        if spec.max_error_rate is not None:
            value = cand.error_rate if cand is not None and cand.requests else None
            out.append(_named(judge_metric("error_rate", value, None, spec.max_error_rate),
                              f"load[c={c}].error_rate", c))
            if base is not None:
                out[-1].baseline = base.error_rate
        if spec.max_p95_ratio is not None and has_baseline:
            ratio = None
            if cand is not None and base is not None and cand.p95_ms and base.p95_ms:
                ratio = cand.p95_ms / base.p95_ms
            note = None if base is not None else "the baseline is a saved result: no live " \
                "baseline to load at the same time"
            v = _named(judge_metric("load_p95_ratio", ratio, None, spec.max_p95_ratio),
                       f"load[c={c}].p95_ratio_vs_baseline", c, note)
            if ratio is not None and cand is not None and base is not None:
                within = "within" if v.verdict == "PASS" else "above"
                v.reason = (f"under load at concurrency {c}: candidate p95 {cand.p95_ms:.0f} ms "
                            f"vs baseline {base.p95_ms:.0f} ms (same load, interleaved): "
                            f"x{ratio:.2f}, {within} the limit x{spec.max_p95_ratio:.2f}")
            out.append(v.model_copy(update={"effect": ratio, "effect_kind": "ratio",
                                             "value": cand.p95_ms if cand else None,
                                             "baseline": base.p95_ms if base else None,
                                             "metric": "latency_p95_ms",
                                             "margin": spec.max_p95_ratio,
                                             "threshold": None}))
    return out
