"""Sharded runs (`--evalgate-shard=I/N`) and merging their results, in real pytest subprocesses
against the simulator: the shards partition the canaries, and the merged result decides the
gate like one run on all of them."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import evalgate.stats.primitives  # noqa: F401  (scipy loaded before pytester snapshots sys.modules)
from evalgate.gate.compare import gate_settings
from evalgate.gate.guardrails import evaluate, plan_guardrails
from evalgate.gate.metrics import compute_metrics
from evalgate.gate.verdicts import overall_verdict
from evalgate.pipeline.merge import merge_main, merge_results
from evalgate.results import GuardrailVerdict, Record, RunResult, read_result, write_result
from evalgate.sim import SimServer
from tests.conftest import make_cases, read_json, sim_cases_from, sim_model, write_project

pytest_plugins = ["pytester"]

N_CANARIES = 60
GATE = {"samples": 2, "concurrency": 16, "gate": {"metrics": {
    "pass_rate": {"min": 0.4}, "hallucination_rate": {"max": 0.6}, "error_rate": {"max": 0.5},
    "cost_per_1k_usd": {"max": 1.0}, "tokens_out_mean": {"max": 1000},
    "latency_p95_ms": {"max": 5000}}}}
ALL_KEYS = {f"set/c{i}" for i in range(N_CANARIES)}
EXACT_METRICS = ("pass_rate", "hallucination_rate", "error_rate", "tokens_in_mean",
                 "tokens_out_mean")


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("--evalgate", "-p", "no:cacheprovider", *args)


def load(pytester: pytest.Pytester, report_dir: str = "reports") -> RunResult:
    return read_result(pytester.path / report_dir / "evalgate.json")


def expected_shard(key: str, total: int) -> int:
    """The documented assignment, restated here so a change to it fails a test."""
    return int(hashlib.sha256(key.encode()).hexdigest(), 16) % total + 1


def keys_with_samples(result: RunResult) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for record in result.records:
        out.setdefault(record.key, set()).add(record.sample)
    return out


def answers(records: list[Record]) -> dict[str, tuple[Any, ...]]:
    return {r.record_id: (r.text, r.passed, r.hallucination, r.input_tokens, r.output_tokens)
            for r in records}


def same_verdicts(a: list[GuardrailVerdict], b: list[GuardrailVerdict]) -> None:
    """Same guardrails, same verdicts, same evidence (up to float summation order)."""
    assert [v.guardrail for v in a] == [v.guardrail for v in b]
    for x, y in zip(a, b, strict=True):
        assert x.verdict == y.verdict, x.guardrail
        assert x.n_canaries == y.n_canaries
        for field in ("value", "ci_low", "ci_high", "p_value"):
            got, want = getattr(x, field), getattr(y, field)
            assert got == want or got == pytest.approx(want, rel=1e-9, abs=1e-12), \
                (x.guardrail, field)


def redecide(result: RunResult, records: list[Record], base: list[Record] | None
             ) -> list[GuardrailVerdict]:
    """What one run would decide on these records (independently of merge.py's plumbing)."""
    settings = gate_settings(result)
    metrics = compute_metrics(records)[0]
    return evaluate(settings, plan_guardrails(settings, base is not None), records, base,
                    metrics, result.samples)


@pytest.fixture
def project(pytester: pytest.Pytester) -> Path:
    return write_project(pytester.path, model=sim_model(hallucination_rate=0.3, seed=7),
                         cases=make_cases(N_CANARIES), gate=GATE)


def test_four_shards_partition_the_canaries_and_merge_like_one_run(
        pytester: pytest.Pytester, project: Path) -> None:
    run(pytester)
    full = load(pytester)
    shards = []
    for k in range(1, 5):
        out = run(pytester, f"--evalgate-shard={k}/4", f"--evalgate-report-dir=shard{k}")
        shard = load(pytester, f"shard{k}")
        keys = keys_with_samples(shard)
        assert all(samples == {0, 1} for samples in keys.values())  # samples stay together
        assert all(expected_shard(key, 4) == k for key in keys)
        assert out.parseoutcomes()["deselected"] == 2 * (N_CANARIES - len(keys))
        assert shard.counts["calls"] == 2 * len(keys)
        shards.append(shard)
    per_shard = [set(keys_with_samples(s)) for s in shards]
    assert sum(len(k) for k in per_shard) == N_CANARIES  # disjoint ...
    assert set().union(*per_shard) == ALL_KEYS  # ... and complete
    assert all(per_shard)  # 60 canaries in 4 shards: none empty

    merged = merge_results(shards)
    assert merged.run_id not in {s.run_id for s in shards}
    # Answers are deterministic per (model, prompt, sample): the same as one unsharded run.
    assert answers(merged.records) == answers(full.records)
    assert merged.counts == full.counts
    for metric in EXACT_METRICS:
        assert merged.metrics[metric] == full.metrics[metric], metric
    assert merged.metrics["cost_per_request_usd"] == pytest.approx(
        full.metrics["cost_per_request_usd"], rel=1e-12)  # float sums in another order
    assert merged.total_cost_usd == pytest.approx(full.total_cost_usd, rel=1e-12)
    assert merged.calls_made == sum(s.calls_made for s in shards)
    assert merged.calls_made == full.calls_made
    assert merged.wall_time_s == max(s.wall_time_s for s in shards)
    assert merged.case_fingerprints == full.case_fingerprints
    # Latencies differ run to run: the merged decision is the one a single run would make on
    # the shards' own records, and every verdict not about latency matches the unsharded run.
    by_id = {r.record_id: r for r in merged.records}
    same_verdicts(merged.verdicts, redecide(full, [by_id[r.record_id] for r in full.records],
                                            None))
    latency_free = [v for v in merged.verdicts if "latency" not in v.metric]
    same_verdicts(latency_free, [v for v in full.verdicts if "latency" not in v.metric])
    assert merged.verdict == overall_verdict([v.verdict for v in merged.verdicts])
    assert merged.verdict == full.verdict == "PASS"
    for metric in ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms"):
        assert merged.metrics[metric] == compute_metrics(merged.records)[0][metric]

    paths = [str(pytester.path / f"shard{k}" / "evalgate.json") for k in (3, 1, 4, 2)]
    out_path = pytester.path / "merged.json"
    assert merge_main(paths, str(out_path)) == 0
    written = read_result(out_path)
    assert written.model_dump(exclude={"run_id"}) == merged.model_dump(exclude={"run_id"})


@pytest.fixture
def counting_sim() -> Iterator[SimServer]:
    """A simulator in this process, to count the calls each shard makes."""
    server = SimServer(cases=sim_cases_from(make_cases(N_CANARIES)))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_shard_is_the_same_every_time_with_xdist_and_k(
        pytester: pytest.Pytester, counting_sim: SimServer) -> None:
    counting_sim.add_profile("ext", {"latency_ms": 1})
    model = {"provider": "openai", "base_url": f"{counting_sim.base_url}/v1", "model": "ext",
             "timeout_s": 5, "max_retries": 1}
    write_project(pytester.path, model=model, cases=make_cases(N_CANARIES), gate=GATE)
    out = run(pytester, "--evalgate-shard=2/4")
    first = keys_with_samples(load(pytester))
    assert set(first) == {k for k in ALL_KEYS if expected_shard(k, 4) == 2}
    assert counting_sim.stats.total == 2 * len(first)  # other shards' canaries are never called
    assert "evalgate: evalgate.yaml, candidate" in out.stdout.str()
    assert "shard 2/4" in out.stdout.str()
    counting_sim.stats.reset()
    run(pytester, "-n", "2", "--evalgate-shard=2/4")
    assert keys_with_samples(load(pytester)) == first
    assert counting_sim.stats.total == 2 * len(first)
    counting_sim.stats.reset()
    run(pytester, "-k", "even", "--evalgate-shard=2/4")
    even = {k for k in first if int(k.removeprefix("set/c")) % 2 == 0}
    assert set(keys_with_samples(load(pytester))) == even
    assert counting_sim.stats.total == 2 * len(even)


@pytest.mark.parametrize("spec", ["0/4", "5/4", "x", "1/0", "2", "-1/4", "1/4/2"])
def test_a_bad_shard_is_a_usage_error(pytester: pytest.Pytester, spec: str) -> None:
    write_project(pytester.path, model=sim_model(), cases=make_cases(2))
    result = run(pytester, f"--evalgate-shard={spec}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--evalgate-shard: '{spec}' is not a shard: expected I/N "
                                 "with 1 <= I <= N*"])
    assert not (pytester.path / "reports").exists()


def test_shards_that_do_not_belong_together_are_refused(
        pytester: pytest.Pytester, project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(pytester, "--evalgate-shard=1/2", "--evalgate-report-dir=s1")
    run(pytester, "--evalgate-shard=2/2", "--evalgate-report-dir=s2")
    one, two = load(pytester, "s1"), load(pytester, "s2")
    assert len(merge_results([one, two]).records) == 2 * N_CANARIES

    candidate = two.candidate.model_copy(update={"fingerprint": "other"})
    gate = {**two.gate, "alpha": 0.1}
    mismatches = [
        (two.model_copy(update={"candidate": candidate}), "candidate model config"),
        (two.model_copy(update={"gate": gate}), "gate settings"),
        (two.model_copy(update={"samples": 3}), "samples per canary"),
        (two.model_copy(update={"canary_fingerprint": "other"}), "canary sets"),
        (one, "set/c.*#0 is in more than one shard"),
    ]
    for other, message in mismatches:
        with pytest.raises(ValueError, match=message):
            merge_results([one, other])
    with pytest.raises(ValueError, match="no results"):
        merge_results([])

    bad = pytester.path / "bad.json"
    write_result(two.model_copy(update={"gate": gate}), bad)
    s1 = str(pytester.path / "s1" / "evalgate.json")
    out = pytester.path / "merged.json"
    capsys.readouterr()
    assert merge_main([s1, str(bad)], str(out)) == 4
    assert "cannot merge: the shards differ in gate settings" in capsys.readouterr().err
    assert merge_main([s1, str(pytester.path / "missing.json")], str(out)) == 4
    assert "missing.json: not a readable evalgate result" in capsys.readouterr().err
    (pytester.path / "junk.json").write_text("{not json")
    assert merge_main([s1, str(pytester.path / "junk.json")], str(out)) == 4
    assert "junk.json: not a readable evalgate result" in capsys.readouterr().err
    assert not out.exists()


def test_merging_shards_with_a_live_baseline(pytester: pytest.Pytester) -> None:
    write_project(pytester.path, model=sim_model(hallucination_rate=0.3, seed=7),
                  cases=make_cases(N_CANARIES),
                  gate={**GATE, "baseline": "models/baseline.yaml"})
    baseline = {**sim_model(hallucination_rate=0.1, seed=11), "model": "b"}
    (pytester.path / "models" / "baseline.yaml").write_text(yaml.safe_dump(baseline))
    run(pytester)
    full = load(pytester)
    shards = []
    for k in (1, 2):
        run(pytester, f"--evalgate-shard={k}/2", f"--evalgate-report-dir=s{k}")
        shards.append(load(pytester, f"s{k}"))
    assert all(s.baseline is not None and s.baseline_records for s in shards)
    merged = merge_results(shards)
    assert merged.baseline is not None and full.baseline is not None
    assert merged.baseline.fingerprint == full.baseline.fingerprint
    assert answers(merged.baseline_records) == answers(full.baseline_records)
    assert answers(merged.records) == answers(full.records)
    for metric in EXACT_METRICS:
        assert merged.baseline_metrics[metric] == full.baseline_metrics[metric], metric
    assert merged.comparison is not None and merged.comparison.compared == N_CANARIES
    assert merged.calls_made == sum(s.calls_made for s in shards) == full.calls_made
    assert any(v.guardrail.endswith("_vs_baseline") for v in merged.verdicts)
    same_verdicts(merged.verdicts, redecide(merged, merged.records, merged.baseline_records))
    assert [v.guardrail for v in merged.verdicts] == [v.guardrail for v in full.verdicts]


def test_merge_cli_and_incomplete_shard_sets_are_flagged(pytester: pytest.Pytester) -> None:
    """`evalgate merge` writes the merged result; a missing shard is a warning, not silence."""
    import subprocess
    import sys

    from evalgate.pipeline.merge import shard_warnings

    write_project(pytester.path, model=sim_model(), cases=make_cases(60),
                  gate={"gate": {"on_inconclusive": "warn"}})
    for k in (1, 2, 3):
        pytester.runpytest_subprocess("--evalgate", f"--evalgate-shard={k}/3",
                                      f"--evalgate-report-dir=shard{k}")
    shards = [pytester.path / f"shard{k}" / "evalgate.json" for k in (1, 2, 3)]
    assert [read_json(p)["shard"] for p in shards] == ["1/3", "2/3", "3/3"]
    out = subprocess.run([sys.executable, "-m", "evalgate.cli", "merge", *map(str, shards),
                          "-o", "merged.json"], cwd=pytester.path, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    merged = read_json(pytester.path / "merged.json")
    assert merged["shard"] is None and len(merged["records"]) == 60
    assert not any("shards" in w for w in merged["warnings"])
    partial = [read_result(p) for p in shards[:2]]
    assert shard_warnings(partial) == [
        "merged 2 of 3 shards (missing 3/3): the gate was decided on part of the canaries"]


def test_the_load_profile_is_measured_by_the_first_shard_only(
        pytester: pytest.Pytester) -> None:
    """Load calls serve every canary alike: one shard measures them for the run (N shards
    would pay for the load profile N times), and the merged result carries its report."""
    load_spec = {"levels": [2], "requests": 20, "max_error_rate": 0.2}
    write_project(pytester.path, model=sim_model(), cases=make_cases(N_CANARIES),
                  gate={**GATE, "load": load_spec})
    first = run(pytester, "-v", "--evalgate-shard=1/2", "--evalgate-report-dir=s1")
    second = run(pytester, "-v", "--evalgate-shard=2/2", "--evalgate-report-dir=s2")
    one, two = load(pytester, "s1"), load(pytester, "s2")
    assert one.load is not None and [lv.requests for lv in one.load.levels] == [20]
    assert "load[c=2].error_rate" in {v.guardrail for v in one.verdicts}
    assert "gate[load[c=2].error_rate]" in first.stdout.str()
    assert two.load is None and not any(v.guardrail.startswith("load[") for v in two.verdicts)
    assert "gate[load[" not in second.stdout.str()  # no gate item that could not be decided
    assert any("measured by shard 1/2 only" in w for w in two.warnings)
    gate_attempts = sum(len(r.attempts) for r in two.records)
    assert two.calls_made == gate_attempts  # shard 2 made no load call
    assert one.calls_made == sum(len(r.attempts) for r in one.records) + \
        sum(lv.attempts for lv in one.load.levels)
    merged = merge_results([two, one])  # in any order
    assert merged.load == one.load
    assert "load[c=2].error_rate" in {v.guardrail for v in merged.verdicts}
