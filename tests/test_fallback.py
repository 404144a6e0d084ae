"""`fallback:` model configs against two simulator profiles over real HTTP on 127.0.0.1: used
only after the primary's retries ran out on a transient fault, marked on every record it
answered, counted, warned about, and able to make the gate INCONCLUSIVE; bad fallback configs
are located usage errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from evalgate.errors import ConfigError
from evalgate.pipeline.project import load_project
from evalgate.pipeline.run import run_project
from evalgate.report.summary import summary_lines
from evalgate.results import RunResult
from evalgate.spec.config import load_model_config
from tests.conftest import make_cases, sim_model, write_project

pytest_plugins = ["pytester"]

N = 4
DOWN = {"error_500_rate": 1.0, "error_500_status": 503}  # the primary: always 503
BACKUP = {"provider": "sim", "model": "backup", "timeout_s": 5, "max_retries": 1,
          "pricing": {"input_per_mtok": 10.0, "output_per_mtok": 20.0},
          "sim": {"latency_ms": 1}}


def project_with_fallback(root: Path, primary: dict[str, Any], *, fallback: dict[str, Any]
                          | None = None, gate: dict[str, Any] | None = None) -> Path:
    model = sim_model(**primary)
    model.update(model="primary", max_retries=1, fallback="fallback.yaml")
    write_project(root, model=model, cases=make_cases(N), gate=gate)
    (root / "models" / "fallback.yaml").write_text(yaml.safe_dump(fallback or BACKUP))
    return root


def run(root: Path) -> RunResult:
    return run_project(load_project(root), concurrency=4)


def test_fallback_answers_when_the_primary_is_down(tmp_path: Path) -> None:
    result = run(project_with_fallback(tmp_path, DOWN))
    assert [r.key for r in result.records] == [f"set/c{i}" for i in range(N)]
    for r in result.records:
        assert r.ok and r.passed and r.answered_by == "fallback"
        assert [(a.status, a.fallback) for a in r.attempts] == [(503, False), (503, False),
                                                                (200, True)]
        assert r.latency_ms == pytest.approx(r.attempts[-1].latency_ms)
        assert r.cost_usd == pytest.approx((r.input_tokens * 10 + r.output_tokens * 20) / 1e6)
    assert result.counts["fallback_answers"] == N
    assert result.metrics["error_rate"] == 0.0
    # No max_fallback_rate: the verdict stands, but it carries the warning, first.
    assert result.verdict == "PASS"
    assert result.warnings[0].startswith(f"{N} of {N} candidate calls were answered by the "
                                         "fallback model (fallback)")
    assert any(f"{N} answered by the fallback" in line for line in summary_lines(result))


@pytest.mark.parametrize(("limit", "verdict"), [(0.2, "INCONCLUSIVE"), (0.25, "PASS")])
def test_max_fallback_rate_guardrail(tmp_path: Path, limit: float, verdict: str) -> None:
    # only canary c1's calls fail on the primary: the fallback answers 1 of 4 = 25%
    root = project_with_fallback(tmp_path, {**DOWN, "fault_cases": ["set/c1"]},
                                 gate={"gate": {"max_fallback_rate": limit}})
    result = run(root)
    assert [r.answered_by for r in result.records] == [None, "fallback", None, None]
    [guard] = [v for v in result.verdicts if v.guardrail == "fallback_rate"]
    assert guard.value == 0.25 and guard.verdict == verdict
    assert result.verdict == verdict
    assert "1 of 4 candidate calls (25.0%) were answered by the fallback" in guard.reason


def test_a_bad_request_does_not_fall_back(tmp_path: Path) -> None:
    # a context overflow is the config's problem: no retry, and no fallback to hide it
    result = run(project_with_fallback(tmp_path, {"context_window": 2}))
    for r in result.records:
        assert not r.ok and r.error_class == "context_length" and r.answered_by is None
        assert len(r.attempts) == 1 and not r.attempts[0].fallback
    assert result.counts["fallback_answers"] == 0 and not result.warnings


def test_when_the_fallback_fails_too_both_are_recorded(tmp_path: Path) -> None:
    broken = {**BACKUP, "sim": {"latency_ms": 1, "reset_rate": 1.0}}
    result = run(project_with_fallback(tmp_path, DOWN, fallback=broken))
    for r in result.records:
        assert not r.ok and r.error_class == "connection_reset" and r.retryable
        assert r.answered_by is None and sum(a.fallback for a in r.attempts) == 2
        assert r.error_message and r.error_message.startswith(
            "unavailable after 2 attempt(s); fallback fallback: ")
    assert result.metrics["error_rate"] == 1.0


def test_fallback_gate_item_in_pytest(pytester: pytest.Pytester) -> None:
    project_with_fallback(pytester.path, DOWN, gate={"gate": {"max_fallback_rate": 0.5}})
    result = pytester.runpytest_subprocess("--evalgate")
    result.stdout.fnmatch_lines(["*gate?fallback_rate?*", "*4 answered by the fallback*",
                                 "warning: 4 of 4 candidate calls were answered by the "
                                 "fallback model*"])
    assert result.ret != 0  # INCONCLUSIVE with on_inconclusive: fail (the default)


# -- loading ----------------------------------------------------------------------------------

def write_models(root: Path, primary: str, fallback: str | None = None) -> Path:
    (root / "models").mkdir(parents=True, exist_ok=True)
    (root / "models" / "candidate.yaml").write_text(primary)
    if fallback is not None:
        (root / "models" / "fallback.yaml").write_text(fallback)
    return root / "models" / "candidate.yaml"


def load_error(path: Path, root: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_model_config(path, root)
    return info.value


def test_fallback_is_loaded_with_the_model(tmp_path: Path) -> None:
    path = write_models(tmp_path, "provider: sim\nfallback: fallback.yaml\n",
                        "provider: sim\nmodel: backup\n")
    model = load_model_config(path, tmp_path)
    assert model.fallback is not None and model.fallback.config.model == "backup"
    alone = load_model_config(write_models(tmp_path / "b", "provider: sim\n"), tmp_path / "b")
    assert alone.fallback is None
    # the fallback is part of what the model config means: changing it changes the fingerprint
    other = write_models(tmp_path / "c", "provider: sim\nfallback: fallback.yaml\n",
                         "provider: sim\nmodel: other\n")
    assert load_model_config(other, tmp_path / "c").fingerprint() != model.fingerprint()


def test_missing_fallback_file_points_at_the_key(tmp_path: Path) -> None:
    path = write_models(tmp_path, "provider: sim\nmodel: x\nfallback: nope.yaml\n")
    [problem] = load_error(path, tmp_path).problems
    assert (problem.file, problem.line, problem.field) == ("models/candidate.yaml", 3,
                                                           "fallback")
    assert "nope.yaml" in problem.message and "file not found" in problem.message


def test_a_broken_fallback_is_located_in_its_own_file(tmp_path: Path) -> None:
    path = write_models(tmp_path, "provider: sim\nfallback: fallback.yaml\n",
                        "provider: sim\nmodel: b\ntimeout: 3\n")
    [problem] = load_error(path, tmp_path).problems
    assert (problem.file, problem.line, problem.field) == ("models/fallback.yaml", 3, "timeout")


@pytest.mark.parametrize(("primary", "fallback", "file", "message"), [
    ("provider: sim\nfallback: candidate.yaml\n", None, "candidate", "its own fallback"),
    ("provider: sim\nfallback: fallback.yaml\n",
     "provider: sim\nfallback: candidate.yaml\n", "fallback", "chains are not supported"),
])
def test_fallback_loops_are_refused(tmp_path: Path, primary: str, fallback: str | None,
                                    file: str, message: str) -> None:
    [problem] = load_error(write_models(tmp_path, primary, fallback), tmp_path).problems
    assert (problem.file, problem.line, problem.field) == (f"models/{file}.yaml", 2,
                                                           "fallback")
    assert message in problem.message


def test_rate_limit_needs_rpm_or_tpm(tmp_path: Path) -> None:
    path = write_models(tmp_path, "provider: sim\nrate_limit: {}\n")
    [problem] = load_error(path, tmp_path).problems
    assert problem.line == 2 and problem.field == "rate_limit"
    assert "rpm" in problem.message and "tpm" in problem.message
    ok = write_models(tmp_path / "ok", "provider: sim\nrate_limit: {tpm: 90000}\n")
    limit = load_model_config(ok, tmp_path / "ok").config.rate_limit
    assert limit is not None and limit.tpm == 90000 and limit.rpm is None
