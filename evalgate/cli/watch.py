"""`evalgate paths`: every file the gate reads, so CI can tell whether a pull request changes
anything evaluated. Python code counts too (conftest.py, where custom checks register, the
local modules it imports, and `callable:` provider modules): parsed, never imported or run."""

from __future__ import annotations

import ast
import os
from collections.abc import Iterable
from pathlib import Path

from evalgate.pipeline.project import Project, load_project
from evalgate.spec.config import LoadedModel, load_model_config

# Always watched, relative to the project root: what registers custom checks, and the job.
ALWAYS = ("conftest.py", ".github/workflows/evalgate.yml")


def _model_files(model: LoadedModel, files: set[Path], modules: set[str]) -> None:
    """Add a model config, its prompt files and `callable:` module, its fallback's and its
    routes'."""
    files.add(model.path)
    for side in (model.config.system_prompt_file, model.config.prompt_template_file):
        if side:
            files.add(model.path.parent / side)
    if model.config.callable:
        modules.add(model.config.callable.partition(":")[0])
    others = [model.fallback] if model.fallback else []
    others += list(model.router.targets()) if model.router is not None else []
    for other in others:
        if other.path != model.path:
            _model_files(other, files, modules)


def _module_files(name: str, roots: list[Path]) -> list[Path]:
    """The source files importing dotted `name` runs from one of `roots` (its packages'
    `__init__.py` too), found without importing; [] when it is not local."""
    parts = name.split(".")
    for root in roots:
        found = [root.joinpath(*parts[:i], "__init__.py") for i in range(1, len(parts))]
        found = [f for f in found if f.is_file()]
        for leaf in (root.joinpath(*parts).with_suffix(".py"),
                     root.joinpath(*parts, "__init__.py")):
            if leaf.is_file():
                return [*found, leaf]
    return []


def _imports(path: Path, roots: list[Path]) -> list[Path]:
    """Local files a Python file imports; relative imports resolve from its own folder."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return []
    files: list[Path] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                files += _module_files(alias.name, roots)
        elif isinstance(node, ast.ImportFrom):
            base = [path.parents[node.level - 1]] if node.level else roots
            prefix = f"{node.module}." if node.module else ""
            if node.module:
                files += _module_files(node.module, base)
            for alias in node.names:  # `from pkg import module`
                files += _module_files(prefix + alias.name, base)
    return files


def python_closure(starts: Iterable[Path], modules: Iterable[str], roots: list[Path]
                   ) -> set[Path]:
    """Local Python files reachable by imports from `starts` and the named `modules`."""
    todo = [p for p in starts if p.is_file()]
    todo += [f for m in modules for f in _module_files(m, roots)]
    seen: set[Path] = set()
    while todo:
        path = todo.pop().resolve()
        if path not in seen:
            seen.add(path)
            todo += _imports(path, roots)
    return seen


def _baseline_model(project: Project) -> LoadedModel | None:
    spec = project.gate.config.baseline
    if not spec or spec.startswith("git:") or not spec.endswith((".yaml", ".yml")):
        return None
    return load_model_config(project.gate.resolve(spec), project.gate.root)


def watched_paths(root: Path, config: str | None = None) -> list[str]:
    """Paths relative to `root` the gate depends on; folders end with `/`."""
    root = root.resolve()
    project = load_project(root, config)
    gate = project.gate
    files = {gate.path.resolve(), *(root / name for name in ALWAYS)}
    modules: set[str] = set()
    for model in (project.candidate, project.judge, _baseline_model(project)):
        if model is not None:
            _model_files(model, files, modules)
    roots = [root, root / "src"]
    files |= python_closure([root / "conftest.py"], modules, roots)
    folders = {gate.resolve(p) for p in (*gate.config.canaries, *gate.config.rubrics)}
    out = {_relative(f, root) for f in files}
    out |= {_relative(d, root) + ("/" if d.is_dir() else "") for d in folders}
    return sorted(p for p in out if p is not None)


def _relative(path: Path, root: Path) -> str | None:
    try:
        return Path(os.path.normpath(path.resolve())).relative_to(root).as_posix()
    except ValueError:  # outside the repository: a change there is not in the diff anyway
        return None


def changed_watched(changed: Iterable[str], watched: list[str]) -> list[str]:
    """The changed paths (as `git diff --name-only` prints them) the gate depends on."""
    files = {w for w in watched if not w.endswith("/")}
    folders = tuple(w for w in watched if w.endswith("/"))
    return [c for c in (line.strip() for line in changed)
            if c and (c in files or c.startswith(folders))]
