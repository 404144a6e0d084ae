"""Which baseline a pytest session compares with: the options, else the gate config."""

from __future__ import annotations

import pytest

from evalgate.errors import ConfigError, Problem
from evalgate.gate.baseline import Baseline
from evalgate.pipeline.project import Project


def has_baseline(config: pytest.Config, project: Project) -> bool:
    return bool(config.getoption("evalgate_baseline") or project.gate.config.baseline
                or config.getoption("evalgate_compare") is not None)


def load_baseline(config: pytest.Config, project: Project) -> Baseline | None:
    from evalgate.gate.baseline import from_store, resolve

    compare = config.getoption("evalgate_compare")
    if compare is not None:
        return from_store(project.gate, compare or None)
    spec = config.getoption("evalgate_baseline") or project.gate.config.baseline
    if not spec:
        return None
    field = "--evalgate-baseline" if config.getoption("evalgate_baseline") else "baseline"
    baseline = resolve(spec, project.gate, field)
    if baseline.model is not None and baseline.source.kind == "model":
        same = baseline.model.path.resolve()
        if any(m.path.resolve() == same for m in project.configs):
            raise ConfigError(Problem(field, f"{spec!r} is also a candidate: a candidate "
                                      "compared with itself tells nothing"))
    return baseline
