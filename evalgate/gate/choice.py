"""N candidates in one run: each further candidate's own gate, the run's verdict under
`gate.require`, and the leaderboard of every config of the run.

Why here and not in the pipeline: `evalgate merge` and `evalgate compare` decide from saved
results too, and must decide alike."""

from __future__ import annotations

from collections.abc import Sequence

from evalgate.gate.guardrails import decide_gate
from evalgate.gate.judge_calibration import ReviewInputs
from evalgate.gate.leaderboard import leaderboard
from evalgate.gate.verdicts import overall_verdict
from evalgate.results import CandidateRun, Leaderboard, ModelInfo, Record, RunResult, Verdict
from evalgate.spec.config import GateSettings

RANK = {"PASS": 0, "INCONCLUSIVE": 1, "FAIL": 2}


def gate_alternative(settings: GateSettings, label: str, records: list[Record],
                     base_records: Sequence[Record] | None, samples: int,
                     review: ReviewInputs | None, info: ModelInfo,
                     path: str | None) -> CandidateRun:
    """One further candidate gated exactly as the first is (same guardrails, same baseline)."""
    decision = decide_gate(settings, records, base_records, samples, review)
    return CandidateRun(label=label, info=info, path=path, records=records,
                        metrics=decision["metrics"], counts=decision["counts"],
                        verdicts=decision["verdicts"], verdict=decision["verdict"])


def required_verdict(require: str, primary: Verdict, others: Sequence[Verdict]) -> Verdict:
    """The run's verdict: the first candidate's (`primary`), every one's (`all`: the worst),
    or the best one's (`any`)."""
    if require == "primary" or not others:
        return primary
    verdicts = [primary, *others]
    if require == "all":
        return overall_verdict(verdicts)
    return min(verdicts, key=lambda v: RANK[v])


def config_records(result: RunResult, baseline_name: str | None
                   ) -> tuple[list[tuple[str, list[Record]]], dict[str, str]]:
    """Every config of the run with its records (a live baseline too), and its file."""
    configs = [(result.candidate.name, result.records)]
    paths = {result.candidate.name: result.candidate_path or ""}
    for alt in result.alternatives:
        configs.append((alt.info.name, alt.records))
        paths[alt.info.name] = alt.path or ""
    if baseline_name is not None and result.baseline is not None:
        configs.append((baseline_name, result.baseline_records))
        if result.baseline.kind == "model":
            paths[baseline_name] = result.baseline.source
    return configs, paths


def leaderboard_of(result: RunResult, baseline_name: str | None, settings: GateSettings,
                   samples: int, weights: dict[str, float]) -> Leaderboard:
    configs, paths = config_records(result, baseline_name)
    return leaderboard(configs, settings, samples, paths, weights)


def merge_alternatives(merged: RunResult, shards: Sequence[RunResult],
                       settings: GateSettings) -> RunResult:
    """The further candidates of sharded runs joined (records concatenated by candidate),
    each gated again on all its records, the run's verdict under `require` and the leaderboard
    decided anew. A result with one candidate comes back unchanged."""
    first = shards[0]
    if not first.alternatives:
        return merged
    base = merged.baseline_records if merged.baseline is not None else None
    alternatives = []
    for alt in first.alternatives:
        records = sorted((r for s in shards for a in s.alternatives if a.label == alt.label
                          for r in a.records), key=lambda r: (r.key, r.sample))
        alternatives.append(gate_alternative(settings, alt.label, records, base,
                                             merged.samples, None, alt.info, alt.path))
    primary = merged.verdict
    merged = merged.model_copy(update={
        "alternatives": alternatives, "primary_verdict": primary,
        "verdict": required_verdict(merged.require, primary,
                                    [a.verdict for a in alternatives])})
    board = first.leaderboard
    names = [s.name for s in board.overall.standings] if board is not None else []
    base_name = next((n for n in names if n.startswith("baseline (")), None)
    weights = board.traffic_weights if board is not None else {}
    merged.leaderboard = leaderboard_of(merged, base_name, settings, merged.samples, weights)
    return merged


def compare_many(result: RunResult, baseline: RunResult, others: Sequence[RunResult],
                 settings: GateSettings) -> RunResult:
    """`evalgate compare BASE CAND MORE...`: each further saved run gated against the baseline
    run as the first is (`result`, already compared), then ranked on one leaderboard. Names
    that repeat get their position appended (two runs of `candidate` -> candidate, candidate-3)."""
    from evalgate.gate.compare import align

    taken = {result.candidate.name, f"baseline ({baseline.candidate.name})"}
    alternatives = []
    for i, other in enumerate(others, 3):
        name = other.candidate.name if other.candidate.name not in taken \
            else f"{other.candidate.name}-{i}"
        taken.add(name)
        base_records = align(baseline, other)[0]
        records = [r.model_copy(update={"config": name}) for r in other.records]
        alternatives.append(gate_alternative(
            settings, name, records, base_records, other.samples, None,
            other.candidate.model_copy(update={"name": name}), other.candidate_path))
    primary = result.verdict
    merged = result.model_copy(update={
        "alternatives": alternatives, "primary_verdict": primary,
        "require": settings.require,
        "verdict": required_verdict(settings.require, primary,
                                    [a.verdict for a in alternatives])})
    name = f"baseline ({baseline.candidate.name})"
    merged.leaderboard = leaderboard_of(merged, name, settings, merged.samples, {})
    return merged
