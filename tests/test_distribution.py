"""Install under a free name, keep `evalgate` for imports and the command; `evalgate init`
keeps generated state out of git; `evalgate paths` sees the Python a gate runs."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from evalgate import DISTRIBUTION, __version__
from evalgate.cli import main
from evalgate.cli.scaffold import init_main, init_project
from evalgate.cli.watch import changed_watched, watched_paths
from tests.conftest import sim_model, write_project

ROOT = Path(__file__).resolve().parent.parent


def test_distribution_name_is_ours_and_entry_points_stay_evalgate() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == DISTRIBUTION == "pytest-evalgate"
    assert project["version"] == __version__
    assert project["entry-points"]["pytest11"] == {"evalgate": "evalgate.plugin"}
    assert project["scripts"] == {"evalgate": "evalgate.cli:main"}


def test_init_says_to_install_this_project_pinned(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert init_main(str(tmp_path), force=False) == 0
    out = capsys.readouterr().out
    assert f'pip install "pytest-evalgate=={__version__}"' in out
    assert "pip install evalgate" not in out


def test_init_writes_a_gitignore_and_keeps_an_existing_one(tmp_path: Path) -> None:
    init_project(tmp_path)
    assert (tmp_path / ".gitignore").read_text().splitlines()[1:] == [".evalgate/", "reports/"]
    other = tmp_path / "other"
    other.mkdir()
    (other / ".gitignore").write_text("node_modules\nreports")  # no final newline
    init_project(other)
    lines = (other / ".gitignore").read_text().splitlines()
    assert lines[:2] == ["node_modules", "reports"] and lines[-1] == ".evalgate/"
    assert "reports/" not in lines
    init_project(other, force=True)
    assert (other / ".gitignore").read_text().splitlines() == lines  # nothing added twice


def test_paths_include_conftest_imports_and_callable_modules(tmp_path: Path) -> None:
    model = {"provider": "callable", "callable": "app.router:answer", "model": "m",
             "system_prompt_file": "../prompts/sys.txt"}
    write_project(tmp_path, model=model, gate={"baseline": "models/baseline.yaml"})
    (tmp_path / "models" / "baseline.yaml").write_text(
        "provider: sim\nmodel: b\nfallback: backup.yaml\n")
    (tmp_path / "models" / "backup.yaml").write_text("provider: sim\nmodel: c\n")
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "sys.txt").write_text("be brief")
    for rel, text in {"app/__init__.py": "", "app/router.py": "from app import util\n",
                      "app/util.py": "import os\n", "app/unused.py": "",
                      "conftest.py": "import mychecks.words\n", "mychecks/__init__.py": "",
                      "mychecks/words.py": "from .helpers import x\nimport yaml\n",
                      "mychecks/helpers.py": "x = 1\n",
                      "src/lib.py": ""}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    watched = watched_paths(tmp_path)
    assert {"evalgate.yaml", "models/candidate.yaml", "models/baseline.yaml",
            "models/backup.yaml", "prompts/sys.txt", "canaries/", "rubrics/", "conftest.py",
            "mychecks/__init__.py", "mychecks/words.py", "mychecks/helpers.py", "app/router.py",
            "app/util.py", "app/__init__.py", ".github/workflows/evalgate.yml"} <= set(watched)
    assert "app/unused.py" not in watched and "src/lib.py" not in watched
    changed = ["README.md", "app/util.py", "canaries/new.yaml", "app/unused.py"]
    assert changed_watched(changed, watched) == ["app/util.py", "canaries/new.yaml"]


def test_paths_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                       capsys: pytest.CaptureFixture[str]) -> None:
    write_project(tmp_path, model=sim_model())
    monkeypatch.setattr("sys.stdin", iter(["docs/x.md\n", "rubrics/basic.yaml\n"]))
    assert main(["paths", str(tmp_path), "--changed"]) == 0
    assert capsys.readouterr().out == "rubrics/basic.yaml\n"
    (tmp_path / "evalgate.yaml").write_text("candidate: [\n")
    assert main(["paths", str(tmp_path)]) == 4
    assert "evalgate paths:" in capsys.readouterr().err
