"""`evalgate init`: a fresh repository passes its own gate; nothing is ever overwritten silently."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from evalgate.cli.scaffold import CANARIES, TEMPLATES, example_canaries, init_main, init_project

ROOT = Path(__file__).resolve().parent.parent


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def run_gate(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`pytest --evalgate` in `root`, in a subprocess, never touching a CI step summary."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("GITHUB_STEP_SUMMARY", "PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER")}
    return subprocess.run([sys.executable, "-m", "pytest", "--evalgate", "-p", "no:cacheprovider",
                           "-q", *args], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300)


def test_fresh_repository_passes_the_gate_on_the_simulator(tmp_path: Path) -> None:
    written = init_project(tmp_path)
    assert {p.relative_to(tmp_path).as_posix() for p in written} == {*TEMPLATES, CANARIES,
                                                                     ".gitignore"}
    out = run_gate(tmp_path)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    result = json.loads((tmp_path / "reports" / "evalgate.json").read_text())
    assert result["verdict"] == "PASS"


def test_unchanged_config_passes_against_itself_at_a_git_ref(tmp_path: Path) -> None:
    """What CI does on a PR that changes no model setting: the git: baseline must not block."""
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    init_project(tmp_path)
    git = ["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci", "-C", str(tmp_path)]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "init"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    out = run_gate(tmp_path, "--evalgate-baseline=git:HEAD:models/candidate.yaml")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    result = json.loads((tmp_path / "reports" / "evalgate.json").read_text())
    assert result["verdict"] == "PASS"


def test_example_canaries_are_many_unique_and_consistent() -> None:
    cases = example_canaries()
    assert len(cases) >= 60
    assert len({c["id"] for c in cases}) == len(cases)
    for case in cases:
        for fact in case["expected"]["facts"]:
            assert fact in case["context"], case["id"]
        for wrong in case["expected"]["forbidden"]:
            assert wrong not in case["context"], case["id"]


def test_second_init_refuses_and_changes_nothing(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "README.md").write_text("mine\n")
    assert init_main(str(tmp_path), force=False) == 0
    assert "pytest --evalgate" in capsys.readouterr().out
    (tmp_path / "models" / "candidate.yaml").write_text("provider: openai  # edited\n")
    before = snapshot(tmp_path)
    with pytest.raises(FileExistsError, match=r"models/candidate\.yaml"):
        init_project(tmp_path)
    assert init_main(str(tmp_path), force=False) == 1
    assert "would overwrite" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def test_one_existing_file_blocks_the_whole_init(tmp_path: Path) -> None:
    (tmp_path / "evalgate.yaml").write_text("candidate: mine.yaml\n")
    with pytest.raises(FileExistsError, match=r"evalgate\.yaml"):
        init_project(tmp_path)
    assert snapshot(tmp_path) == {"evalgate.yaml": b"candidate: mine.yaml\n"}


def test_force_overwrites(tmp_path: Path) -> None:
    init_project(tmp_path)
    fresh = snapshot(tmp_path)
    (tmp_path / "evalgate.yaml").write_text("broken: [\n")
    assert init_project(tmp_path, force=True)
    assert snapshot(tmp_path) == fresh


def test_generated_files_match_this_repository(tmp_path: Path) -> None:
    init_project(tmp_path)
    for rel in (".github/workflows/evalgate.yml", ".github/workflows/evalgate-comment.yml"):
        assert (tmp_path / rel).read_bytes() == (ROOT / rel).read_bytes(), rel
    candidate = yaml.safe_load((tmp_path / "models" / "candidate.yaml").read_text())
    assert candidate["provider"] == "sim" and "api_key_env" not in candidate
    assert "OPENAI_API_KEY" in (tmp_path / "models" / "candidate.yaml").read_text()


def test_init_main_refuses_a_missing_directory(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert init_main(str(tmp_path / "nope"), force=False) == 1
    assert "not a directory" in capsys.readouterr().err
