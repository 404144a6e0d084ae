"""Load everything a run needs, validate it together, and report every problem at once."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import TemplateError

from evalgate.engine.planning import build_messages
from evalgate.errors import ConfigError, Problem
from evalgate.grading.grade import needs_judge
from evalgate.grading.rubrics import CaseEntry, Rubric, load_rubric, resolve_criteria
from evalgate.spec.canaries import (
    CanarySet,
    Case,
    case_key,
    discover_canary_files,
    load_canary_file,
    set_name_for,
)
from evalgate.spec.config import (
    LoadedGate,
    LoadedModel,
    display_path,
    find_gate_config,
    load_gate_config,
    load_model_config,
)
from evalgate.spec.labels import Label, load_labels

RUBRIC_SUFFIXES = (".yaml", ".yml")


@dataclass
class Project:
    gate: LoadedGate
    candidate: LoadedModel
    canary_sets: list[CanarySet]
    rubrics: dict[str, Rubric]
    entries: list[CaseEntry]
    judge: LoadedModel | None = None  # the judge model config (gate config `judge`)
    labels: list[Label] = field(default_factory=list)  # reviewers' labels (gate config `labels`)
    # `candidates:` beyond the first: answered, graded and gated like it, and ranked with it
    alternatives: list[LoadedModel] = field(default_factory=list)

    @property
    def configs(self) -> list[LoadedModel]:
        """Every candidate, the first (the change under review) first."""
        return [self.candidate, *self.alternatives]

    @property
    def canary_paths(self) -> list[Path]:
        return [self.gate.resolve(p) for p in self.gate.config.canaries]

    def canary_fingerprint(self) -> str:
        joined = ",".join(s.fingerprint() for s in self.canary_sets)
        return hashlib.sha256(joined.encode()).hexdigest()[:16]

    def entries_by_key(self) -> dict[str, CaseEntry]:
        return {e.key: e for e in self.entries}

    def report_dir(self, override: str | None = None) -> Path:
        return self.gate.resolve(override or self.gate.config.report.dir)


def _collect(problems: list[Problem], fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except ConfigError as exc:
        problems += exc.problems
        return None


def load_rubrics(gate: LoadedGate, problems: list[Problem]) -> dict[str, Rubric]:
    rubrics: dict[str, Rubric] = {}
    for relative in gate.config.rubrics:
        root = gate.resolve(relative)
        if not root.exists():
            problems.append(Problem(gate.path.name, f"rubrics path {relative!r} does not exist",
                                    None, "rubrics"))
            continue
        files = [root] if root.is_file() else sorted(
            p for p in root.rglob("*") if p.suffix in RUBRIC_SUFFIXES)
        base = root.parent if root.is_file() else root
        for path in files:
            name = set_name_for(path, base)
            rubric = _collect(problems, load_rubric, path, name, display_path(path, gate.root))
            if rubric is not None:
                rubrics[name] = rubric
    return rubrics


def load_canary_sets(gate: LoadedGate, problems: list[Problem]) -> list[CanarySet]:
    roots = []
    for relative in gate.config.canaries:
        root = gate.resolve(relative)
        if not root.exists():
            problems.append(Problem(gate.path.name, f"canaries path {relative!r} does not exist",
                                    None, "canaries"))
        roots.append(root)
    sets: list[CanarySet] = []
    seen: dict[str, str] = {}
    for path, root in discover_canary_files([r for r in roots if r.exists()]):
        name = set_name_for(path, root)
        display = display_path(path, gate.root)
        if name in seen:
            problems.append(Problem(display, f"canary set name {name!r} is also used by "
                                    f"{seen[name]}; rename one file"))
            continue
        seen[name] = display
        loaded = _collect(problems, load_canary_file, path, name, display)
        if loaded is not None:
            sets.append(loaded)
    if not sets and not problems:
        problems.append(Problem(gate.path.name, "no canary files (.yaml, .yml, .jsonl) found",
                                None, "canaries"))
    return sets


def _rubric_for(case: Case, cset: CanarySet, gate: LoadedGate,
                rubrics: dict[str, Rubric]) -> str | None:
    name = case.rubric or cset.rubric or gate.config.default_rubric
    if name is None and len(rubrics) == 1:
        name = next(iter(rubrics))
    return name


def _top_level_line(path: Path, key: str) -> int | None:
    """The line where a gate config (YAML or TOML) sets a top-level key, if it can be found."""
    pattern = re.compile(rf"\s*{re.escape(key)}\s*[:=]")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return None
    return next((i for i, raw in enumerate(text.splitlines(), 1) if pattern.match(raw)), None)


def build_entries(gate: LoadedGate, sets: list[CanarySet], rubrics: dict[str, Rubric],
                  problems: list[Problem]) -> list[CaseEntry]:
    entries = []
    default = gate.config.default_rubric
    if default is not None and default not in rubrics:  # once, on that field
        problems.append(Problem(gate.path.name, f"names rubric {default!r}, which does not "
                                f"exist (known: {', '.join(sorted(rubrics)) or 'none'})",
                                _top_level_line(gate.path, "default_rubric"), "default_rubric"))
    for cset in sets:
        for case in cset.cases:
            line = cset.lines.get(case.id) or None
            name = _rubric_for(case, cset, gate, rubrics)
            if name is not None and name == default and name not in rubrics \
                    and case.rubric is None and cset.rubric is None:
                continue  # reported on default_rubric
            if name is None:
                problems.append(Problem(cset.display, f"case {case.id!r} has no rubric: set "
                                        "'rubric' on the set or the case, or 'default_rubric'",
                                        line, "rubric"))
                continue
            if name not in rubrics:
                problems.append(Problem(cset.display, f"case {case.id!r} names rubric {name!r}, "
                                        f"which does not exist (known: "
                                        f"{', '.join(sorted(rubrics)) or 'none'})", line,
                                        "rubric"))
                continue
            label = case_key(cset.name, case.id)
            criteria = _collect(problems, resolve_criteria, rubrics[name], case, label)
            if criteria is not None:
                entries.append(CaseEntry(cset.name, case, name, criteria, cset.path, line or 0,
                                         rubrics[name].min_score))
    return entries


def with_candidates(gate: LoadedGate, candidates: list[str] | None) -> LoadedGate:
    """The gate config with `--evalgate-candidates` in place of its candidate(s)."""
    if not candidates:
        return gate
    from evalgate.spec.yamlio import LineMap, validate

    data = gate.config.model_dump(mode="json") | {"candidate": "", "candidates": candidates}
    config = validate(type(gate.config), data, "--evalgate-candidates", LineMap({}))
    return LoadedGate(config, gate.path, gate.root)


RESERVED_NAMES = ("candidate", "baseline")


def load_alternatives(gate: LoadedGate, first: LoadedModel | None,
                      problems: list[Problem]) -> list[LoadedModel]:
    """The candidates after the first; two with one name, or named like a role, are an error."""
    out: list[LoadedModel] = []
    names = {first.name: first.path} if first is not None else {}
    line = _top_level_line(gate.path, "candidates")
    for relative in gate.config.candidates[1:]:
        model = _collect(problems, load_model_config, gate.resolve(relative), gate.root)
        if model is None:
            continue
        shown = display_path(model.path, gate.root)
        if model.name in names:
            problems.append(Problem(gate.path.name, f"candidates: {shown} has the name "
                                    f"{model.name!r}, as does "
                                    f"{display_path(names[model.name], gate.root)}: give "
                                    "each candidate its own 'name:'", line, "candidates"))
            continue
        if model.name in RESERVED_NAMES:
            problems.append(Problem(shown, f"a candidate after the first cannot be named "
                                    f"{model.name!r} (a role's name): set 'name:'", None,
                                    "name"))
            continue
        names[model.name] = model.path
        out.append(model)
    return out


def load_project(rootdir: Path, explicit_config: str | None = None,
                 candidates: list[str] | None = None) -> Project:
    """Load and cross-check the gate config, the candidate(s), canaries and rubrics."""
    gate = with_candidates(load_gate_config(find_gate_config(rootdir, explicit_config)),
                           candidates)
    problems: list[Problem] = []
    candidate_path = gate.resolve(gate.config.candidate)
    candidate = _collect(problems, load_model_config, candidate_path, gate.root)
    alternatives = load_alternatives(gate, candidate, problems)
    rubrics = load_rubrics(gate, problems)
    sets = load_canary_sets(gate, problems)
    entries = build_entries(gate, sets, rubrics, problems) if rubrics or not problems else []
    for model in [candidate, *alternatives]:
        if model is not None:
            problems += check_prompts(model, entries)
            if model.fallback is not None:
                problems += check_prompts(model.fallback, entries)
    if candidate is not None and candidate.router is not None:  # every route's template
        for target in candidate.router.targets():
            if target.path != candidate.router.default.path:
                problems += check_prompts(target, entries)
    if gate.config.gate.routes and candidate is not None:
        from evalgate.gate.routes import check_route_guardrails

        problems += check_route_guardrails(gate, candidate)
    judge = load_judge(gate, entries, problems)
    labels = _collect(problems, load_labels, gate.resolve(gate.config.labels), gate.root)
    if problems:
        raise ConfigError(problems)
    return Project(gate, candidate, sets, rubrics, entries, judge, labels or [], alternatives)


def load_judge(gate: LoadedGate, entries: list[CaseEntry], problems: list[Problem]
               ) -> LoadedModel | None:
    """The judge model config; a rubric that needs a judge without one is a usage error."""
    if gate.config.judge is None:
        if needs_judge(entries):
            users = sorted({e.rubric for e in entries if needs_judge([e])})
            problems.append(Problem(gate.path.name, f"rubric(s) {', '.join(users)} use the "
                                    "judge (check 'judge', or 'grounded' with undecided: judge); "
                                    "set 'judge: <model config>' in the gate config", None,
                                    "judge"))
        return None
    return _collect(problems, load_model_config, gate.resolve(gate.config.judge), gate.root)


def check_prompts(model: LoadedModel, entries: list[CaseEntry]) -> list[Problem]:
    """Render the model's prompt template for every canary now, not halfway through a run."""
    if model.prompt_template is None:
        return []
    problems = []
    for entry in entries:
        try:
            build_messages(model, entry.case)
        except (TemplateError, ArithmeticError, LookupError, TypeError, ValueError,
                RecursionError, MemoryError) as exc:
            problems.append(Problem(str(model.path.name), f"prompt_template fails for case "
                                    f"{entry.key}: {exc}", None, "prompt_template"))
            if len(problems) >= 5:
                break
    return problems


