"""Where the baseline comes from: a model config run live, a saved result, a model config as it
is at a git ref, or the local run store (`.evalgate/runs/`, pytest-benchmark style)."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from evalgate.errors import ConfigError, Problem
from evalgate.results import SCHEMA_VERSION, RunResult, read_result, write_result
from evalgate.spec.config import LoadedGate, LoadedModel, load_model_config

STORE_DIR = ".evalgate/runs"

Kind = Literal["model", "result", "git"]


@dataclass(frozen=True)
class BaselineSource:
    kind: Kind
    spec: str  # as the user wrote it, e.g. "git:origin/main:models/candidate.yaml"


@dataclass(frozen=True)
class Baseline:
    """A resolved baseline: a model to run live, or a saved result to compare against."""

    source: BaselineSource
    model: LoadedModel | None = None
    saved: RunResult | None = None
    saved_path: Path | None = None

    @property
    def label(self) -> str:
        if self.model is not None:
            return f"{self.model.name} ({self.source.spec})"
        assert self.saved is not None
        return f"saved run {self.saved.run_id} ({self.source.spec})"


def parse_source(spec: str) -> BaselineSource:
    if spec.startswith("git:"):
        return BaselineSource("git", spec)
    if spec.endswith(".json"):
        return BaselineSource("result", spec)
    return BaselineSource("model", spec)


def resolve(spec: str, gate: LoadedGate, field: str = "baseline") -> Baseline:
    """Load the baseline `spec` names; every failure is a located usage error."""
    source = parse_source(spec)
    if source.kind == "model":
        return Baseline(source, model=load_model_config(gate.resolve(spec), gate.root))
    if source.kind == "result":
        path = gate.resolve(spec)
        return Baseline(source, saved=load_saved(path, spec), saved_path=path)
    return Baseline(source, model=load_git_model(spec, gate, field))


def load_saved(path: Path, shown: str) -> RunResult:
    try:
        return read_result(path)
    except FileNotFoundError:
        raise ConfigError(Problem(shown, "baseline result file not found")) from None
    except (OSError, ValueError, ValidationError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(Problem(shown, f"not an evalgate result (schema version "
                                  f"{SCHEMA_VERSION}): {first}")) from None


def _git(root: Path, *args: str) -> str:
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(Problem(str(root), f"cannot run git: {exc}")) from None
    if out.returncode != 0:
        raise LookupError(out.stderr.strip() or f"git {' '.join(args)} failed")
    return out.stdout


def load_git_model(spec: str, gate: LoadedGate, field: str = "baseline") -> LoadedModel:
    """The model config (and its prompt files) as they are at a git ref, without a checkout."""
    match = re.fullmatch(r"git:([^:]+):(.+)", spec)
    if not match:
        raise ConfigError(Problem(gate.path.name, f"{spec!r}: write git:<ref>:<path>, e.g. "
                                  "git:origin/main:models/candidate.yaml", None, field))
    ref, relative = match.groups()
    try:
        top = Path(_git(gate.root, "rev-parse", "--show-toplevel").strip())
        _git(gate.root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except LookupError:
        raise ConfigError(Problem(gate.path.name, f"{spec!r}: {ref!r} is not a commit in the "
                                  "git repository", None, field)) from None

    def read_at_ref(path: Path, shown: str) -> str:
        inside = path.resolve().relative_to(top.resolve()).as_posix()
        try:
            return _git(top, "show", f"{ref}:{inside}")
        except LookupError:
            raise ConfigError(Problem(shown, f"not found at git ref {ref!r}")) from None

    return load_model_config(gate.resolve(relative), gate.root, read_at_ref,
                             shown=f"{relative}@{ref}")


def store_dir(gate: LoadedGate) -> Path:
    return gate.root / STORE_DIR


def save_to_store(result: RunResult, gate: LoadedGate) -> Path:
    """Save a run as `.evalgate/runs/NNNN_<run id>.json` (numbered, newest last)."""
    folder = store_dir(gate)
    folder.mkdir(parents=True, exist_ok=True)
    numbers = [int(p.name[:4]) for p in folder.glob("[0-9][0-9][0-9][0-9]_*.json")]
    path = folder / f"{max(numbers, default=0) + 1:04d}_{result.run_id}.json"
    write_result(result, path)
    return path


def find_in_store(gate: LoadedGate, run: str | None) -> Path:
    """The newest saved run, or the one whose number (`3`, `0003`) or run id is given."""
    runs = sorted(store_dir(gate).glob("[0-9][0-9][0-9][0-9]_*.json"))
    if not runs:
        raise ConfigError(Problem(STORE_DIR, "no saved runs to compare with: run once with "
                                  "--evalgate-autosave"))
    if run is None:
        return runs[-1]
    for path in runs:
        number, _, run_id = path.stem.partition("_")
        if run in (run_id, number) or (run.isdigit() and int(run) == int(number)):
            return path
    names = ", ".join(p.stem for p in runs[-5:])
    raise ConfigError(Problem(STORE_DIR, f"no saved run {run!r} (newest: {names})"))


def from_store(gate: LoadedGate, run: str | None) -> Baseline:
    path = find_in_store(gate, run)
    shown = path.relative_to(gate.root).as_posix()
    return Baseline(BaselineSource("result", shown), saved=load_saved(path, shown),
                    saved_path=path)
