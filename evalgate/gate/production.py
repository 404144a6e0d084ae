"""Production-like checks on top of a gate run: per-route metrics and guardrails of a router
candidate, blended cost under a traffic mix, the load profile and determinism.

One entry point for run.py (`apply`) and one for the pytest plugin's gate items
(`extra_guardrails`), so the default path (none of it configured) does nothing at all.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from evalgate.gate.guardrails import Guardrail, undecidable
from evalgate.gate.verdicts import overall_verdict
from evalgate.results import Record, RunResult


def configured(project: Any) -> bool:
    cfg = project.gate.config
    return bool(project.candidate.router is not None or cfg.gate.routes or cfg.traffic
                or cfg.load or cfg.determinism)


def runs_load(cfg: Any, shard: tuple[int, int] | None) -> bool:
    """Whether this run measures the load profile: it serves every canary alike, so one
    shard (the first) measures it for all; N shards would pay for it N times."""
    return cfg.load is not None and (shard is None or shard[0] == 1)


def extra_guardrails(cfg: Any, has_baseline: bool,
                     shard: tuple[int, int] | None = None) -> list[Guardrail]:
    """The extra gate items (names known before any call).

    Each module is imported only when its section is configured: `determinism` brings numpy,
    which a plain gate does not need before its statistics.
    """
    names: list[str] = []
    if cfg.gate.routes:
        from evalgate.gate.routes import route_guardrail_names

        names += route_guardrail_names(cfg.gate)
    if runs_load(cfg, shard):
        from evalgate.gate.load import load_guardrail_names

        names += load_guardrail_names(cfg.load, has_baseline)
    if cfg.determinism is not None:
        from evalgate.gate.determinism import determinism_guardrail_names

        names += determinism_guardrail_names(cfg.determinism, has_baseline)
    return [Guardrail(name, name, "production", None) for name in names]


def apply(project: Any, result: RunResult, cand: Sequence[Record], base: Sequence[Record] | None,
          live_baseline: Any | None, concurrency: int,
          selected: Collection[str] | None = None,
          shard: tuple[int, int] | None = None) -> RunResult:
    """Add the configured checks' reports and verdicts to a finished run result."""
    if not configured(project):
        return result
    import time

    from evalgate.gate.routes import blended_cost, route_breakdown, route_verdicts

    t0 = time.perf_counter()
    cfg = project.gate.config
    settings = cfg.gate
    extra = []
    router = project.candidate.router
    if router is not None:
        result.candidate.provider = "router"
        result.candidate.model = ", ".join(t.name for t in router.targets())
    result.routes = route_breakdown(cand)
    if base is not None:
        result.baseline_routes = route_breakdown(base)
    if settings.routes:
        extra += route_verdicts(settings, cand, cfg.samples)
    if cfg.traffic is not None or project.candidate.router is not None:
        result.blended_cost = blended_cost(cand, cfg.traffic)
        if base is not None:
            result.baseline_blended_cost = blended_cost(base, cfg.traffic)
        missing = sorted(set(result.blended_cost.missing_tags))
        if missing:
            result.warnings.append(f"traffic weights name tag(s) {', '.join(missing)} that no "
                                   "answered canary has: left out of the blended cost")
    if result.partial and (cfg.load is not None or cfg.determinism is not None):
        # interrupted: no more calls; their guardrails cannot be decided
        result.warnings.append("PARTIAL run: the load profile and determinism checks were "
                               "not run")
        extra += [undecidable(g, 1, 0, "the run was interrupted before this check")
                  for g in extra_guardrails(cfg, result.baseline is not None, shard)
                  if not g.name.startswith("route[")]
        result.wall_time_s = round(result.wall_time_s + time.perf_counter() - t0, 3)
        result.verdicts = [*result.verdicts, *extra]
        result.verdict = overall_verdict([v.verdict for v in result.verdicts])
        if result.verdict == "PASS":
            result.verdict = "INCONCLUSIVE"
        return result
    if cfg.load is not None and shard is not None and not runs_load(cfg, shard):
        result.warnings.append(f"load profile: measured by shard 1/{shard[1]} only (it serves "
                               "every canary alike; one measurement per run, not per shard)")
    if runs_load(cfg, shard):
        from evalgate.gate.load import load_verdicts, run_load

        result.load = run_load(project, cfg.load, live_baseline, settings.seed)
        # Load calls are spend too: in the run's HTTP attempts and total cost.
        result.calls_made += sum(lv.attempts for lv in result.load.levels)
        result.total_cost_usd += sum(lv.cost_usd for lv in result.load.levels)
        result.load.notes += [] if live_baseline is not None or result.baseline is None else [
            "the baseline is a saved result: it was not loaded (no live model to call)"]
        extra += load_verdicts(cfg.load, result.load, result.baseline is not None)
    if cfg.determinism is not None:
        from evalgate.gate.determinism import determinism_verdicts, run_determinism

        keys = None if selected is None else {s.rsplit("#", 1)[0] for s in selected}
        report, det_cand, det_base = run_determinism(
            project, cfg.determinism, live_baseline, concurrency, settings.seed, keys)
        result.determinism = report
        result.calls_made += sum(len(r.attempts) for r in [*det_cand, *det_base])
        result.total_cost_usd += sum(r.cost_usd or 0.0 for r in [*det_cand, *det_base])
        verdicts = determinism_verdicts(cfg.determinism, settings, det_cand,
                                        det_base if live_baseline is not None else None)
        if result.baseline is not None and live_baseline is None and \
                cfg.determinism.max_agreement_drop is not None:
            verdicts.append(undecidable(
                Guardrail("determinism.agreement_vs_baseline", "agreement_rate", "rate_vs_baseline",
                  cfg.determinism.max_agreement_drop, "lower"), 1, 0,
                "the baseline is a saved result, which cannot be asked again"))
        extra += verdicts
    result.wall_time_s = round(result.wall_time_s + time.perf_counter() - t0, 3)
    if extra:
        result.verdicts = [*result.verdicts, *extra]
        result.verdict = overall_verdict([v.verdict for v in result.verdicts])
    return result


WORST = {"FAIL": 2, "INCONCLUSIVE": 1, "PASS": 0}


def redecided_extras(settings: Any, runs: Sequence[RunResult], records: Sequence[Record],
                     samples: int) -> list[Any]:
    """The production guardrails of runs whose gate is decided again (`evalgate merge` of
    shards, `evalgate compare`): route guardrails recomputed on the records; load and
    determinism verdicts, which were measured with live calls, carried over (the worst over
    the runs per guardrail, so no shard's FAIL is dropped)."""
    from evalgate.gate.routes import route_verdicts

    out = list(route_verdicts(settings, records, samples)) if settings.routes else []
    carried: dict[str, Any] = {}
    for run in runs:
        for v in run.verdicts:
            if v.guardrail.startswith(("load[", "determinism.")):
                held = carried.get(v.guardrail)
                if held is None or WORST[v.verdict] > WORST[held.verdict]:
                    carried[v.guardrail] = v
    if len(runs) > 1:
        for name, v in carried.items():
            note = f"carried from the shards' own runs (the worst of {len(runs)})"
            carried[name] = v.model_copy(update={"note": f"{v.note}; {note}" if v.note
                                                 else note})
    return out + list(carried.values())
