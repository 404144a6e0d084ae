"""The gate workflow's logic, run without GitHub: each `run:` step of the job executes in bash
in a scaffolded repository with a real git history, as the runner would (step `if:`s, env,
secrets, $GITHUB_OUTPUT), so a fork PR without a key, a change to nothing evaluated and a real
gate run are checked end to end. `uses:` steps are recorded, not run; `pip` is a stub."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from evalgate import DISTRIBUTION, __version__
from evalgate.cli.scaffold import init_project, install_line

ROOT = Path(__file__).resolve().parent.parent
GATE = ROOT / ".github" / "workflows" / "evalgate.yml"
OPENAI_CANDIDATE = """provider: openai
base_url: https://api.openai.com/v1
model: gpt-4o-mini
api_key_env: OPENAI_API_KEY
system_prompt_file: ../prompts/system.txt
"""

@dataclass
class Job:
    """What a run of the gate job did."""

    ran: list[str] = field(default_factory=list)       # step names whose script ran
    skipped: list[str] = field(default_factory=list)   # step names whose `if:` was false
    failed: str | None = None                          # the step that failed the job
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    log: str = ""

    @property
    def success(self) -> bool:
        return self.failed is None


def load_workflow() -> dict[str, Any]:
    data = yaml.safe_load(GATE.read_text())
    data["on"] = data.pop(True, data.get("on"))
    return data


def substitute(text: str, secrets: dict[str, str], github: dict[str, str]) -> str:
    """Expand the `${{ }}` expressions the job's env uses; anything else is a test error."""
    def one(match: re.Match[str]) -> str:
        expr = match.group(1).strip()
        if expr.startswith("secrets."):
            return secrets.get(expr.removeprefix("secrets."), "")
        if expr in github:
            return github[expr]
        raise AssertionError(f"unsupported expression in the workflow: {expr}")
    return re.sub(r"\$\{\{(.*?)\}\}", one, text)


def condition(expr: str | None, job: Job) -> bool:
    """The `if:` forms the workflow uses: none (success()), always(), output comparisons."""
    if expr is None:
        return job.success
    terms = [t.strip() for t in expr.split("&&")]
    ok = True if "always()" in terms else job.success
    for term in terms:
        if term == "always()":
            continue
        m = re.fullmatch(r"steps\.(\w+)\.outputs\.(\w+) == '(\w+)'", term)
        assert m, f"unsupported if: {expr}"
        ok = ok and job.outputs.get(m[1], {}).get(m[2]) == m[3]
    return ok


def parse_outputs(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines() if path.exists() else []
    return dict(line.split("=", 1) for line in lines if "=" in line)


def run_job(repo: Path, tmp: Path, secrets: dict[str, str],
            env_overrides: dict[str, str] | None = None) -> Job:
    """Run the `gate` job's steps in `repo` the way the runner does."""
    data = load_workflow()
    job_def = data["jobs"]["gate"]
    github = {"github.base_ref": "main", "github.event.pull_request.number": "7",
              "github.token": "token-unused"}
    stub = tmp / "bin"
    stub.mkdir(exist_ok=True)
    (stub / "pip").write_text(f'#!/bin/sh\necho "$@" >> "{tmp}/pip-calls"\n')
    (stub / "pip").chmod(0o755)
    summary = tmp / "step-summary.md"
    base_env = {"PATH": f"{stub}:{Path(sys.executable).parent}:{os.environ['PATH']}",
                "HOME": str(tmp), "GITHUB_STEP_SUMMARY": str(summary),
                "GITHUB_REPOSITORY": "o/r", "EVALGATE_CACHE": "off"}
    for scope in (data.get("env", {}), job_def.get("env", {})):
        base_env |= {k: substitute(str(v), secrets, github) for k, v in scope.items()}
    base_env |= env_overrides or {}
    job = Job()
    for index, step in enumerate(job_def["steps"]):
        name = step.get("name") or step.get("uses") or f"step {index}"
        if not condition(step.get("if"), job):
            job.skipped.append(name)
            continue
        if "run" not in step:
            job.ran.append(name)  # an action: recorded as run (it has no logic to check)
            continue
        output = tmp / f"output-{index}"
        env = base_env | {k: substitute(str(v), secrets, github)
                          for k, v in step.get("env", {}).items()}
        env["GITHUB_OUTPUT"] = str(output)
        proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c",
                               step["run"]], cwd=repo, env=env, capture_output=True,
                              text=True, timeout=600)
        job.log += f"--- {name} (exit {proc.returncode})\n{proc.stdout}{proc.stderr}"
        job.ran.append(name)
        if "id" in step:
            job.outputs[step["id"]] = parse_outputs(output)
        if proc.returncode != 0 and job.failed is None:
            job.failed = name
    return job


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci", "-C",
                    str(repo), *args], check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A scaffolded repository: `main` (also as origin/main) and a PR branch checked out."""
    root = tmp_path / "repo"
    root.mkdir()
    init_project(root)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    git(root, "update-ref", "refs/remotes/origin/main", "HEAD")
    git(root, "checkout", "-q", "-b", "pr")
    return root


def commit(repo: Path, rel: str, text: str) -> None:
    path = repo / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"change {rel}")


def test_fork_pr_without_the_key_fails_the_check(repo: Path, tmp_path: Path) -> None:
    commit(repo, "models/candidate.yaml", OPENAI_CANDIDATE)
    job = run_job(repo, tmp_path, secrets={})  # a fork's PR: no repository secrets
    assert not job.success, job.log
    assert job.failed == "Check the API key (forks get no secrets)"
    assert "Run the gate" in job.skipped
    assert any(n.startswith("Upload gate reports") for n in job.ran)  # not-run.md goes up too
    note = (repo / "reports" / "not-run.md").read_text()
    assert "NOT RUN: FAIL" in note and "OPENAI_API_KEY" in note
    assert "NOT RUN: FAIL" in (tmp_path / "step-summary.md").read_text()
    assert "::error title=evalgate::not run" in job.log


def test_the_documented_opt_in_lets_an_unevaluated_fork_pr_pass(repo: Path,
                                                                 tmp_path: Path) -> None:
    commit(repo, "models/candidate.yaml", OPENAI_CANDIDATE)
    job = run_job(repo, tmp_path, secrets={}, env_overrides={"EVALGATE_ON_SKIP": "pass"})
    assert job.success, job.log
    assert "Run the gate" in job.skipped
    assert "passed by policy" in (repo / "reports" / "not-run.md").read_text()


def test_a_change_to_nothing_evaluated_passes_without_running(repo: Path,
                                                              tmp_path: Path) -> None:
    commit(repo, "README.md", "docs only\n")
    job = run_job(repo, tmp_path, secrets={})
    assert job.success, job.log
    assert job.outputs["changes"] == {"evaluate": "false"}
    assert {"Check the API key (forks get no secrets)", "Run the gate"} <= set(job.skipped)
    assert "nothing to evaluate" in (repo / "reports" / "skipped.md").read_text()


def test_a_custom_check_module_change_runs_the_gate_with_this_project(
        repo: Path, tmp_path: Path) -> None:
    """conftest.py registers a check from a local module; editing only that module must run
    the gate, installed as exactly this project (pinned), and the simulator gate passes."""
    commit(repo, "conftest.py", "from checks.words import mentions\n\n\n"
           "def pytest_evalgate_register_checks(registry):\n"
           "    registry.add('mentions', mentions)\n")
    commit(repo, "checks/__init__.py", "")
    commit(repo, "checks/words.py", "def mentions(answer, params):\n    return True\n")
    git(repo, "update-ref", "refs/remotes/origin/main", "HEAD")
    commit(repo, "checks/words.py", "def mentions(answer, params):\n    return 'x' in answer\n")
    job = run_job(repo, tmp_path, secrets={})
    assert job.outputs["changes"] == {"evaluate": "true"}, job.log
    assert "changed: checks/words.py" in job.log
    assert job.success, job.log
    assert "Run the gate" in job.ran and (repo / "reports" / "evalgate.json").exists()
    assert (tmp_path / "pip-calls").read_text().split() == [
        "install", f"{DISTRIBUTION}=={__version__}"]


def test_the_pins_name_this_project() -> None:
    text = GATE.read_text()
    assert f'pip install "{DISTRIBUTION}=={__version__}"' in text
    assert f'^name = "{DISTRIBUTION}"' in text
    assert install_line() == f'pip install "{DISTRIBUTION}=={__version__}"'
    assert re.search(rf'^name = "{DISTRIBUTION}"$', (ROOT / "pyproject.toml").read_text(), re.M)
    assert "pip install evalgate" not in (ROOT / "README.md").read_text()
