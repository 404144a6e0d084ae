"""Join the results of sharded runs (`pytest --evalgate --evalgate-shard=I/N`) into one.

Each shard's own verdicts are computed on a slice of the canaries, so they are only
informative: a p95 or a rate over a quarter of the canaries is not the gate's decision. The
merged result concatenates the records and decides the gate again, once, on all of them, with
the gate settings every shard used. Shards that ran different configs are refused rather than
mixed. Wall time is the longest shard's (shards run side by side in CI); calls and cost are
summed.
"""

from __future__ import annotations

import math
import sys
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from evalgate.gate.choice import merge_alternatives
from evalgate.gate.compare import comparison_warnings, gate_settings
from evalgate.gate.guardrails import FALLBACK_NOTE, decide_gate, fallback_warnings, power_warnings
from evalgate.gate.production import redecided_extras
from evalgate.gate.verdicts import overall_verdict
from evalgate.report.summary import summary_lines
from evalgate.results import ComparisonInfo, ConfigCalls, RunResult, read_result, write_result

# Warnings that depend on which canaries a run had: dropped from the shards', written afresh.
_PER_RUN_WARNINGS = ("canary(ies) are not in the baseline run", "canary(ies) changed since",
                     FALLBACK_NOTE)


def _same(results: Sequence[RunResult], what: str, get: Callable[[RunResult], object]) -> None:
    values = [get(r) for r in results]
    if any(v != values[0] for v in values[1:]):
        differing = next(r for r, v in zip(results, values, strict=True) if v != values[0])
        raise ValueError(f"cannot merge: the shards differ in {what} (run {results[0].run_id} "
                         f"vs run {differing.run_id}); merge only the shards of one run")


def _check_compatible(results: Sequence[RunResult]) -> None:
    _same(results, "candidate model config (fingerprint)", lambda r: r.candidate.fingerprint)
    _same(results, "gate settings", lambda r: gate_settings(r).model_dump(mode="json"))
    _same(results, "samples per canary", lambda r: r.samples)
    _same(results, "baseline (source and fingerprint)",
          lambda r: None if r.baseline is None else (r.baseline.source, r.baseline.fingerprint,
                                                     r.baseline.run_id))
    _same(results, "canary sets (canary fingerprint)", lambda r: r.canary_fingerprint)
    _same(results, "rubrics (rubric fingerprints)", lambda r: r.rubric_fingerprints)
    _same(results, "canary_failures", lambda r: r.canary_failures)
    seen: dict[str, str] = {}
    for result in results:
        for record in result.records:
            if record.record_id in seen:
                raise ValueError(
                    f"cannot merge: {record.record_id} is in more than one shard (runs "
                    f"{seen[record.record_id]} and {result.run_id}); shards must not overlap "
                    "(was a file given twice?)")
            seen[record.record_id] = result.run_id


def _comparison(results: Sequence[RunResult]) -> ComparisonInfo | None:
    infos = [r.comparison for r in results if r.comparison is not None]
    if not infos:
        return None
    # Each shard lists the baseline's canaries it did not run; the merged run lacks only those
    # that no shard ran.
    extra = set(infos[0].extra_in_baseline).intersection(*(i.extra_in_baseline for i in infos))
    return ComparisonInfo(
        compared=sum(i.compared for i in infos),
        missing_in_baseline=sorted({k for i in infos for k in i.missing_in_baseline}),
        changed=sorted({k for i in infos for k in i.changed}),
        extra_in_baseline=sorted(extra))


def merge_results(results: Sequence[RunResult]) -> RunResult:
    """One result from the shards of a run, its gate decided again on all the records.
    ValueError when the shards do not belong together (different configs, or overlapping)."""
    if not results:
        raise ValueError("cannot merge: no results given")
    _check_compatible(results)
    first = results[0]
    settings = gate_settings(first)
    has_baseline = first.baseline is not None
    records = sorted((r for res in results for r in res.records),
                     key=lambda r: (r.key, r.sample))
    base_records = sorted((r for res in results for r in res.baseline_records),
                          key=lambda r: (r.key, r.sample))
    decision = decide_gate(settings, records, base_records if has_baseline else None,
                           first.samples)
    extras = redecided_extras(settings, results, records, first.samples)
    # every shard counted the whole project's canaries against the window: the same item
    extras += [v for v in first.verdicts if v.guardrail == "context_window"][:1]
    if extras:
        decision["verdicts"] = [*decision["verdicts"], *extras]
        decision["verdict"] = overall_verdict([v.verdict for v in decision["verdicts"]])
    if any(r.partial for r in results) and decision["verdict"] == "PASS":
        decision["verdict"] = "INCONCLUSIVE"  # a shard was interrupted: never a PASS
    comparison = _comparison(results)
    names = tuple(f"{v.guardrail}: " for v in decision["verdicts"])
    warnings: list[str] = fallback_warnings(records, base_records)
    for result in results:
        for w in result.warnings:
            if w not in warnings and not w.startswith(names) and not any(
                    p in w for p in _PER_RUN_WARNINGS):
                warnings.append(w)
    if comparison is not None:
        warnings += comparison_warnings(comparison)
    warnings += power_warnings(decision["verdicts"])
    warnings += shard_warnings(results)
    return merge_alternatives(first.model_copy(deep=True, update={
        "shard": None,
        "run_id": uuid.uuid4().hex[:12],
        "started_at": min(r.started_at for r in results),
        "wall_time_s": max(r.wall_time_s for r in results),
        "concurrency": max(r.concurrency for r in results),
        "calls_made": sum(r.calls_made for r in results),
        "calls_by_config": merged_calls(results),
        "calls_from_cache": sum(r.calls_from_cache for r in results),
        "calls_from_journal": sum(r.calls_from_journal for r in results),
        "partial": any(r.partial for r in results),
        "calls_planned": None if any(r.calls_planned is None for r in results)
        else sum(r.calls_planned or 0 for r in results),
        "calls_saved_sequential": sum(r.calls_saved_sequential for r in results),
        "sequential": None,  # each shard's looks are its own; the merged gate is decided anew
        "load": next((r.load for r in results if r.load is not None), None),  # shard 1's
        "total_cost_usd": math.fsum(r.total_cost_usd for r in results),  # any order
        **merged_judge(results),
        "records": records,
        **decision,
        "case_fingerprints": dict(sorted(
            (k, v) for r in results for k, v in r.case_fingerprints.items())),
        "baseline_records": base_records,
        "comparison": comparison,
        "warnings": warnings,
    }), results, settings)


def merged_calls(results: Sequence[RunResult]) -> dict[str, ConfigCalls]:
    """Each config's calls and attempts, summed over the shards."""
    out: dict[str, ConfigCalls] = {}
    for r in results:
        for config, calls in r.calls_by_config.items():
            total = out.setdefault(config, ConfigCalls())
            total.made += calls.made
            total.attempts += calls.attempts
    return out


def merged_judge(results: list[RunResult]) -> dict[str, object]:
    """The shards' judge calls, cost and errors summed; agreement weighted by judge calls."""
    weighted = [(r.judge_agreement, r.judge_calls) for r in results
                if r.judge_agreement is not None and r.judge_calls]
    calls = sum(n for _, n in weighted)
    return {"judge_calls": sum(r.judge_calls for r in results),
            "judge_cost_usd": math.fsum(r.judge_cost_usd for r in results),
            "judge_errors": sum(r.judge_errors for r in results),
            "judge_calls_from_cache": sum(r.judge_calls_from_cache for r in results),
            "judge_agreement": sum(a * n for a, n in weighted) / calls if calls else None,
            "judge_model": next((r.judge_model for r in results if r.judge_model), None)}


def shard_warnings(results: list[RunResult]) -> list[str]:
    """Say so when the merged shards are not one complete I/N set: the gate then decides on
    fewer canaries than the whole run would have."""
    shards = [r.shard for r in results]
    if all(s is None for s in shards):
        return []
    parsed = [tuple(int(x) for x in s.split("/")) for s in shards if s is not None]
    totals = {n for _, n in parsed}
    if None in shards or len(totals) != 1:
        return ["the merged results are not shards of one I/N split: check the inputs"]
    total = totals.pop()
    missing = sorted(set(range(1, total + 1)) - {i for i, _ in parsed})
    if missing:
        names = ", ".join(f"{i}/{total}" for i in missing)
        return [f"merged {total - len(missing)} of {total} shards (missing {names}): the "
                "gate was decided on part of the canaries"]
    return []


def merge_main(paths: list[str], out: str) -> int:
    """`evalgate merge shard-*.json -o result.json`: 0 when merged, 4 (usage error, as pytest)
    on an unreadable file or shards that do not belong together; problems go to stderr."""
    if not paths:
        print("evalgate merge: no shard result files given", file=sys.stderr)
        return 4
    results = []
    for path in paths:
        try:
            results.append(read_result(Path(path)))
        except (OSError, ValueError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            print(f"{path}: not a readable evalgate result: {reason}", file=sys.stderr)
            return 4
    try:
        merged = merge_results(results)
    except ValueError as exc:
        print(f"{', '.join(paths)}: {exc}", file=sys.stderr)
        return 4
    write_result(merged, Path(out))
    print(f"evalgate gate: {merged.verdict} (merged {len(results)} shard(s))")
    for line in summary_lines(merged):
        print(line)
    print(f"result: {out}")
    return 0
