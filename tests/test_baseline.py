"""Baselines end to end over the simulator: live (interleaved), saved result, git ref, store."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from evalgate.pipeline.project import load_project
from evalgate.pipeline.run import run_project
from tests.conftest import make_cases, read_json, sim_model, write_project

pytest_plugins = ["pytester"]


def with_baseline(root: Path, base_profile: dict[str, Any], name: str = "base") -> None:
    model = sim_model(**base_profile)
    model["model"] = name
    (root / "models" / "baseline.yaml").write_text(yaml.safe_dump(model))


def test_live_baseline_runs_interleaved_back_to_back(tmp_path: Path) -> None:
    from evalgate.gate.baseline import resolve

    write_project(tmp_path, model=sim_model(latency_ms=20), cases=make_cases(30),
                  gate={"concurrency": 4, "baseline": "models/baseline.yaml"})
    with_baseline(tmp_path, {"latency_ms": 20})
    project = load_project(tmp_path)
    result = run_project(project, baseline=resolve("models/baseline.yaml", project.gate))
    assert len(result.records) == len(result.baseline_records) == 30
    firsts = []
    for cand in result.records:
        base = next(b for b in result.baseline_records if b.key == cand.key)
        first, second = sorted((cand, base), key=lambda r: r.started_s)
        end_first = first.started_s + (first.latency_ms or 0) / 1000
        assert second.started_s >= end_first - 1e-3, "the pair runs back to back on one lane"
        assert second.started_s - end_first < 0.1, "...with nothing else in between"
        firsts.append(first.config)
    assert 5 < firsts.count("baseline") < 25, "the order within a pair is random"


def test_a_a_live_comparison_does_not_fail(pytester: pytest.Pytester) -> None:
    """Identical profiles under two model names: noise must not block the change."""
    profile = {"latency_ms": 20, "latency_sigma": 0.3, "hallucination_rate": 0.1, "seed": 4}
    write_project(pytester.path, model=sim_model(**profile), cases=make_cases(80),
                  gate={"concurrency": 16, "samples": 1, "baseline": "models/baseline.yaml",
                        "gate": {"on_inconclusive": "warn"}})
    with_baseline(pytester.path, profile)
    result = pytester.runpytest_subprocess("--evalgate", "-p", "no:cacheprovider")
    data = read_json(pytester.path / "reports" / "evalgate.json")
    verdicts = {v["guardrail"]: v for v in data["verdicts"]}
    assert set(verdicts) == {"hallucination_rate_vs_baseline", "pass_rate_vs_baseline",
                             "error_rate_vs_baseline", "cost_ratio_vs_baseline",
                             "latency_ratio_vs_baseline", "p95_ratio_vs_baseline"}
    assert all(v["verdict"] != "FAIL" for v in verdicts.values()), verdicts
    assert data["verdict"] in ("PASS", "INCONCLUSIVE")
    assert data["baseline"]["kind"] == "model" and data["baseline"]["name"] == "baseline"
    # canaries whose answer hallucinates fail; the gate items do not
    assert "FAILED evalgate::gate" not in result.stdout.str()


def test_a_b_regression_fails_with_its_evidence(pytester: pytest.Pytester) -> None:
    write_project(pytester.path, model=sim_model(hallucination_rate=0.35, seed=2),
                  cases=make_cases(120),
                  gate={"concurrency": 32, "canary_failures": "report",
                        "baseline": "models/baseline.yaml",
                        "gate": {"vs_baseline": {"cost_ratio": None, "latency_ratio": None,
                                                 "p95_ratio": None}}})
    with_baseline(pytester.path, {"hallucination_rate": 0.02, "seed": 3})
    result = pytester.runpytest_subprocess("--evalgate", "-p", "no:cacheprovider")
    assert result.ret == 1
    out = result.stdout.str()
    assert "FAILED evalgate::gate[hallucination_rate_vs_baseline]" in out
    result.stdout.fnmatch_lines([
        "hallucination_rate_vs_baseline: candidate *% vs baseline *% (+* points; 95% lower "
        "bound +* points) against a tolerance of +5.0 points: FAIL",
        "  test: Tango score test*",
        "  p = *, regression p (Holm) = *, n = 120 canaries x 1 sample(s), discordant pairs: "
        "* worse, * better"])
    data = read_json(pytester.path / "reports" / "evalgate.json")
    v = next(v for v in data["verdicts"] if v["guardrail"] == "hallucination_rate_vs_baseline")
    assert v["verdict"] == "FAIL" and v["effect"] > 0.2 and v["ci_low"] > 0.05
    assert v["discordant"][0] > v["discordant"][1]
    assert v["mde"] is not None and v["p_regression_holm"] < 0.05


def test_saved_result_baseline_aligns_canaries_and_warns(pytester: pytest.Pytester) -> None:
    write_project(pytester.path, model=sim_model(), cases=make_cases(40),
                  gate={"gate": {"on_inconclusive": "warn"}})
    assert pytester.runpytest_subprocess("--evalgate").ret == 0
    saved = pytester.path / "baseline.json"
    (pytester.path / "reports" / "evalgate.json").rename(saved)
    first = read_json(saved)
    # Change one canary, drop one, add one, and change the rubric.
    cases = make_cases(40)
    cases[3]["prompt"] += " (reworded)"
    del cases[5]
    cases.append(make_cases(41)[40])
    body = {"rubric": "basic", "cases": cases}
    (pytester.path / "canaries" / "set.yaml").write_text(yaml.safe_dump(body))
    rubric = yaml.safe_load((pytester.path / "rubrics" / "basic.yaml").read_text())
    rubric["criteria"].append({"id": "short", "check": "max_words", "max": 50})
    (pytester.path / "rubrics" / "basic.yaml").write_text(yaml.safe_dump(rubric))
    result = pytester.runpytest_subprocess("--evalgate", "--evalgate-baseline=baseline.json")
    data = read_json(pytester.path / "reports" / "evalgate.json")
    assert data["baseline"]["kind"] == "result" and data["baseline"]["run_id"] == first["run_id"]
    comparison = data["comparison"]
    assert comparison["changed"] == ["set/c3"]
    assert comparison["missing_in_baseline"] == ["set/c40"]
    assert comparison["extra_in_baseline"] == ["set/c5"]
    assert comparison["compared"] == 38
    assert len(data["baseline_records"]) == 38
    assert all(len(r["criteria"]) == 3 for r in data["baseline_records"]), "re-graded"
    assert data["calls_made"] == 40, "a saved baseline costs no calls"
    out = result.stdout.str()
    assert "warning: rubric(s) basic changed since the baseline run" in out
    assert "warning: 1 canary(ies) changed since the baseline run (e.g. set/c3)" in out


def test_broken_baseline_is_a_usage_error(pytester: pytest.Pytester) -> None:
    write_project(pytester.path, model=sim_model(), cases=make_cases(2))
    (pytester.path / "bad.json").write_text(json.dumps({"schema_version": 1}))
    result = pytester.runpytest_subprocess("--evalgate", "--evalgate-baseline=bad.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "bad.json: not an evalgate result" in result.stderr.str()
    result = pytester.runpytest_subprocess("--evalgate", "--evalgate-baseline=models/nope.yaml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "models/nope.yaml: file not found" in result.stderr.str()


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                          text=True).stdout


def test_git_ref_baseline_reads_config_and_prompt_at_the_ref(pytester: pytest.Pytester) -> None:
    root = pytester.path
    model = sim_model(latency_ms=1)
    model["system_prompt_file"] = "../prompts/system.txt"
    write_project(root, model=model, cases=make_cases(3))
    (root / "prompts").mkdir()
    (root / "prompts" / "system.txt").write_text("Old system prompt.")
    git(root, "init", "-q", "-b", "main")
    git(root, "-c", "user.email=t@example.com", "-c", "user.name=t", "add", ".")
    git(root, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "base")
    (root / "prompts" / "system.txt").write_text("New system prompt.")
    model["sim"]["latency_ms"] = 2
    model["model"] = "cand"
    (root / "models" / "candidate.yaml").write_text(yaml.safe_dump(model))
    result = pytester.runpytest_subprocess(
        "--evalgate", "--evalgate-baseline=git:main:models/candidate.yaml")
    data = read_json(root / "reports" / "evalgate.json")
    assert data["baseline"]["kind"] == "git" and data["baseline"]["model"] == "m"
    assert data["baseline"]["fingerprint"] != data["candidate"]["fingerprint"]
    assert len(data["baseline_records"]) == 3
    assert "baseline candidate (git:main:models/candidate.yaml)" in result.stdout.str()
    from evalgate.gate.baseline import load_git_model
    from evalgate.spec.config import load_gate_config

    old = load_git_model("git:main:models/candidate.yaml", load_gate_config(root / "evalgate.yaml"))
    assert old.system_prompt == "Old system prompt." and old.config.sim.latency_ms == 1
    bad = pytester.runpytest_subprocess("--evalgate", "--evalgate-baseline=git:nope:models/x.yaml")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    assert "'nope' is not a commit" in bad.stderr.str()


def test_autosave_and_compare_with_the_store(pytester: pytest.Pytester) -> None:
    write_project(pytester.path, model=sim_model(), cases=make_cases(4),
                  gate={"gate": {"on_inconclusive": "pass"}})
    none_yet = pytester.runpytest_subprocess("--evalgate", "--evalgate-compare")
    assert none_yet.ret == pytest.ExitCode.USAGE_ERROR
    assert "no saved runs to compare with" in none_yet.stderr.str()
    first = pytester.runpytest_subprocess("--evalgate", "--evalgate-autosave")
    first.stdout.fnmatch_lines(["saved as .evalgate/runs/0001_*.json"])
    second = pytester.runpytest_subprocess("--evalgate", "--evalgate-autosave",
                                           "--evalgate-compare")
    second.stdout.fnmatch_lines(["baseline * (.evalgate/runs/0001_*.json); compared on 4 "
                                 "canaries", "saved as .evalgate/runs/0002_*.json"])
    runs = sorted((pytester.path / ".evalgate" / "runs").glob("*.json"))
    assert [p.name[:4] for p in runs] == ["0001", "0002"]
    run_id = runs[0].stem.split("_", 1)[1]
    by_id = pytester.runpytest_subprocess("--evalgate", f"--evalgate-compare={run_id}")
    assert read_json(pytester.path / "reports" / "evalgate.json")["baseline"]["run_id"] == run_id
    assert by_id.ret == 0
    by_number = pytester.runpytest_subprocess("--evalgate", "--evalgate-compare=2")
    second_id = runs[1].stem.split("_", 1)[1]
    assert read_json(pytester.path / "reports" / "evalgate.json")["baseline"]["run_id"] == \
        second_id
    assert by_number.ret == 0
