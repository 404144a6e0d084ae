"""The load profile against the simulator: latency rises with concurrency when the simulator
has a capacity limit; baseline interleaved; 429 rates; guardrails; the time cap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from evalgate.gate.baseline import resolve
from evalgate.pipeline.project import load_project
from evalgate.pipeline.run import run_project
from evalgate.results import LoadReport
from tests.conftest import make_cases, sim_model, write_project


def load_project_with(root: Path, load: dict[str, Any], cand: dict[str, Any],
                      base: dict[str, Any] | None = None) -> Any:
    write_project(root, model=cand, cases=make_cases(8), gate={"load": load})
    if base is not None:
        (root / "models" / "baseline.yaml").write_text(yaml.safe_dump(base))
    project = load_project(root)
    baseline = resolve("models/baseline.yaml", project.gate) if base is not None else None
    return run_project(project, baseline=baseline)


def p95(report: LoadReport, c: int, config: str = "candidate") -> float:
    level = next(lv for lv in report.levels if lv.concurrency == c and lv.config == config)
    assert level.p95_ms is not None
    return level.p95_ms


def test_latency_rises_with_concurrency_beyond_capacity(tmp_path: Path) -> None:
    cand = sim_model(latency_ms=30, capacity=2)
    base = {**sim_model(latency_ms=30, seed=5), "model": "base-m"}
    load = {"levels": [1, 8, 32], "requests": 32, "max_p95_ms": {1: 1000, 32: 100},
            "max_p95_ratio": 1.5, "max_error_rate": 0.1}
    result = load_project_with(tmp_path, load, cand, base)
    report = result.load
    assert report is not None and report.interleaved and not report.notes
    assert [(lv.concurrency, lv.config) for lv in report.levels] == [
        (1, "candidate"), (1, "baseline"), (8, "candidate"), (8, "baseline"),
        (32, "candidate"), (32, "baseline")]
    assert all(lv.requests == 32 and not lv.truncated for lv in report.levels)
    # 2 slots of 30 ms: at 8 in flight a request waits up to 3 service times (p95 ~ 120 ms),
    # at 32 up to 15 (p95 ~ 450 ms); at 1 it never waits (~30 ms).
    assert p95(report, 8) > 2 * p95(report, 1)
    assert p95(report, 32) > 2.5 * p95(report, 8)
    assert p95(report, 32) > 250
    # The baseline has no capacity limit: its tail stays far below the candidate's at 32.
    assert p95(report, 32, "baseline") < p95(report, 32) / 2
    # Throughput saturates at capacity / service time (~67/s) for the candidate.
    cand32 = next(lv for lv in report.levels if lv.concurrency == 32 and lv.config == "candidate")
    assert cand32.throughput_rps < 75
    assert all(lv.error_rate == 0 and lv.rate_429 == 0 for lv in report.levels)
    verdicts = {v.guardrail: v for v in result.verdicts}
    assert verdicts["load[c=1].latency_p95_ms"].verdict == "PASS"
    assert verdicts["load[c=32].latency_p95_ms"].verdict == "FAIL"
    assert verdicts["load[c=32].p95_ratio_vs_baseline"].verdict == "FAIL"
    assert verdicts["load[c=32].p95_ratio_vs_baseline"].effect > 2  # type: ignore[operator]
    assert verdicts["load[c=8].error_rate"].verdict == "PASS"
    assert result.verdict == "FAIL"


def test_429_and_error_rates_per_level(tmp_path: Path) -> None:
    cand = {**sim_model(latency_ms=1, error_429_rate=0.3, retry_after_s=0, error_500_rate=0.2),
            "max_retries": 0}
    result = load_project_with(tmp_path, {"levels": [4], "requests": 200,
                                          "max_error_rate": 0.1}, cand)
    level = result.load.levels[0]  # type: ignore[union-attr]
    assert level.requests == 200
    # No retries: 30% of requests get a 429; of the rest, 20% a 500 -> 44% errors in all.
    # 200 draws: +-4 binomial standard deviations.
    assert abs(level.rate_429 - 0.3) < 4 * (0.3 * 0.7 / 200) ** 0.5
    assert abs(level.error_rate - 0.44) < 4 * (0.44 * 0.56 / 200) ** 0.5
    verdict = next(v for v in result.verdicts if v.guardrail == "load[c=4].error_rate")
    assert verdict.verdict == "FAIL"


def test_time_cap_stops_the_load_phase(tmp_path: Path) -> None:
    load = {"levels": [1, 2], "requests": 200, "max_total_s": 0.3, "max_p95_ms": {2: 1000}}
    result = load_project_with(tmp_path, load, sim_model(latency_ms=20))
    report = result.load
    assert report is not None and report.wall_time_s < 2
    assert report.levels[0].truncated and report.levels[0].requests < 200
    assert "time cap" in report.notes[0]
    assert [lv.concurrency for lv in report.levels] == [1]
    verdict = next(v for v in result.verdicts if v.guardrail == "load[c=2].latency_p95_ms")
    assert verdict.verdict == "INCONCLUSIVE"


def test_duration_bounds_a_level(tmp_path: Path) -> None:
    load = {"levels": [2], "requests": 10000, "duration_s": 0.3}
    result = load_project_with(tmp_path, load, sim_model(latency_ms=10))
    level = result.load.levels[0]  # type: ignore[union-attr]
    # batches of 8 requests at 2 in flight take ~40 ms: the level stops soon after 0.3 s
    assert 8 <= level.requests < 200 and level.requests % 8 == 0
    assert 0.25 < level.duration_s < 1.5 and not level.truncated


def test_load_config_is_validated(tmp_path: Path) -> None:
    import pytest

    from evalgate.errors import ConfigError

    write_project(tmp_path, model=sim_model(), cases=make_cases(2),
                  gate={"load": {"levels": [1, 4], "max_p95_ms": {8: 100}}})
    with pytest.raises(ConfigError, match="max_p95_ms names level"):
        load_project(tmp_path)


def test_merge_carries_the_worst_load_and_determinism_verdicts() -> None:
    """Load and determinism were measured with live calls a merge cannot repeat: each shard's
    verdict is carried, the worst one per guardrail, so no shard's FAIL is dropped."""
    from evalgate.gate.production import redecided_extras
    from evalgate.results import GuardrailVerdict, RunResult
    from evalgate.spec.config import GateSettings

    def verdict(name: str, v: str) -> GuardrailVerdict:
        return GuardrailVerdict(guardrail=name, metric="latency_p95_ms", kind="load",
                                test="point", verdict=v, reason=v)

    shards = [RunResult.model_construct(verdicts=[verdict("load[c=4].latency_p95_ms", "PASS"),
                                                  verdict("determinism.agreement", "PASS"),
                                                  verdict("latency_p95_ms", "FAIL")]),
              RunResult.model_construct(verdicts=[verdict("load[c=4].latency_p95_ms", "FAIL"),
                                                  verdict("determinism.agreement", "PASS")])]
    extras = {v.guardrail: v for v in redecided_extras(GateSettings(), shards, [], 1)}
    assert set(extras) == {"load[c=4].latency_p95_ms", "determinism.agreement"}
    assert extras["load[c=4].latency_p95_ms"].verdict == "FAIL"
    assert "worst of 2" in (extras["load[c=4].latency_p95_ms"].note or "")
    assert extras["determinism.agreement"].verdict == "PASS"


def test_load_calls_count_in_the_runs_attempts_and_spend(tmp_path: Path) -> None:
    """The load profile's calls cost money like the gate's: their attempts (retries included)
    are in `calls_made` and their cost in `total_cost_usd`."""
    cand = {**sim_model(latency_ms=1, error_429_rate=0.3, retry_after_s=0, seed=3),
            "max_retries": 3}
    result = load_project_with(tmp_path, {"levels": [2, 4], "requests": 40}, cand)
    levels = result.load.levels  # type: ignore[union-attr]
    assert [lv.requests for lv in levels] == [40, 40]
    assert all(lv.attempts > lv.requests for lv in levels)  # 30% 429s were retried
    assert all(lv.cost_usd > 0 for lv in levels)
    gate_attempts = sum(len(r.attempts) for r in result.records)
    gate_cost = sum(r.cost_usd or 0.0 for r in result.records)
    assert result.calls_made == gate_attempts + sum(lv.attempts for lv in levels)
    assert abs(result.total_cost_usd - gate_cost - sum(lv.cost_usd for lv in levels)) < 1e-12
    from evalgate.report.summary import spend_text

    assert f"the load profile's {sum(lv.attempts for lv in levels)} attempts and $" in \
        spend_text(result)
    # Each answered load call costs what the same prompt costs at the gate (same pricing).
    per_call = gate_cost / len(result.records)
    answered = sum(lv.requests - lv.errors for lv in levels)
    assert abs(sum(lv.cost_usd for lv in levels) - answered * per_call) < 0.5 * per_call * answered
