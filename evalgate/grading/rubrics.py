"""Rubrics: how an answer is graded, and which failed criteria count as hallucination."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from jinja2 import TemplateError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from evalgate.errors import ConfigError, Problem
from evalgate.grading.checks import (
    CHECKS,
    COMBINATORS,
    ENTRY_POINT_ERRORS,
    JUDGED,
    TOOL_CHECKS,
    load_entry_point_checks,
)
from evalgate.grading.judge import load_judge_template
from evalgate.spec import jsonschema_lite
from evalgate.spec.canaries import Case, case_key
from evalgate.spec.templating import check_template, is_template, render_value
from evalgate.spec.yamlio import load_yaml, problems_from_validation

JUDGE_TEMPLATES = ("faithfulness", "correctness", "instruction_following")


class Criterion(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)
    check: str
    kind: Literal["quality", "hallucination"] = "quality"
    description: str | None = None
    weight: float = Field(1.0, ge=0, allow_inf_nan=False)
    values: list[str] | str | None = None
    value: str | int | float | None = None
    pattern: str | None = None
    max: int | None = Field(None, ge=0)
    case_sensitive: bool = False
    normalize: list[Literal["case", "whitespace", "unicode", "punctuation"]] | None = None
    # json_schema
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    # numeric
    tolerance: float | None = Field(None, ge=0, allow_inf_nan=False)
    rel_tolerance: float | None = Field(None, ge=0, allow_inf_nan=False)
    pick: Literal["first", "last", "any"] = "first"
    # all_of / any_of / one_of
    checks: list[Criterion] | None = None
    # grounded
    supported_at: float = Field(0.8, ge=0, le=1)
    unsupported_below: float = Field(0.4, ge=0, le=1)
    undecided: Literal["judge", "pass", "fail"] = "judge"
    # judge
    template: str | None = None
    instructions: str | None = None
    judge_samples: int = Field(1, ge=1, le=15)
    # custom checks
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("check")
    @classmethod
    def _known_check(cls, value: str) -> str:
        load_entry_point_checks()
        if value in ENTRY_POINT_ERRORS:
            raise ValueError(f"check {value!r} is from an entry point that failed to load "
                             f"({ENTRY_POINT_ERRORS[value]})")
        if value not in CHECKS:
            raise ValueError(f"unknown check {value!r}; known: {', '.join(CHECKS)}")
        return value

    @model_validator(mode="after")
    def _has_what_check_needs(self) -> Criterion:
        missing = [name for name in CHECKS[self.check].needs
                   if getattr(self, "schema_" if name == "schema" else name) is None]
        if missing:
            raise ValueError(f"check {self.check!r} needs {', '.join(missing)!s}")
        if self.checks is not None and self.check not in COMBINATORS:
            raise ValueError(f"'checks' goes with all_of / any_of / one_of, not {self.check!r}")
        for sub in self.checks or []:
            if sub.check in JUDGED:
                raise ValueError(f"{sub.check!r} cannot be inside {self.check!r} (it needs the "
                                 "judge); make it a criterion of its own")
        if self.schema_ is not None:
            problems = jsonschema_lite.check_schema(self.schema_)
            if problems:
                raise ValueError("; ".join(problems[:3]))
        if self.params and not CHECKS[self.check].custom:
            raise ValueError(f"'params' is for custom checks; {self.check!r} is built in")
        if self.check == "judge" and self.template is None:
            raise ValueError("check 'judge' needs 'template': one of "
                             f"{', '.join(JUDGE_TEMPLATES)} or a .j2 file next to the rubric")
        if self.unsupported_below > self.supported_at:
            raise ValueError("'unsupported_below' must not exceed 'supported_at'")
        if self.check == "numeric" and isinstance(self.value, str) and not is_template(
                self.value):
            try:
                float(self.value)
            except ValueError:
                raise ValueError(f"numeric 'value' {self.value!r} is not a number") from None
        if self.pattern is not None and not is_template(self.pattern):
            try:
                re.compile(self.pattern)
            except (re.error, OverflowError, RecursionError) as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return self


class MinScore(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_score: float = Field(ge=0, le=1)


class RubricFile(BaseModel):
    """`pass_rule: all` (default: every criterion holds) or `pass_rule: {min_score: 0.8}`
    (the weighted score reaches 0.8; a failed `hallucination` criterion still fails)."""

    model_config = ConfigDict(extra="forbid")
    description: str | None = None
    pass_rule: Literal["all"] | MinScore = "all"
    criteria: list[Criterion] = Field(min_length=1)


@dataclass(frozen=True)
class Rubric:
    name: str
    display: str
    description: str | None
    criteria: list[Criterion]
    lines: dict[str, int]
    min_score: float | None = None  # None: every criterion must hold
    templates: dict[str, str] = field(default_factory=dict)  # judge criterion id -> template

    def fingerprint(self) -> str:
        payload: Any = [c.model_dump(mode="json", exclude_defaults=True) for c in self.criteria]
        if self.min_score is not None or self.templates:
            payload = [payload, self.min_score, self.templates]
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ResolvedCriterion:
    """A criterion with its templated values filled in for one case."""

    id: str
    check: str
    kind: str
    params: dict[str, Any]
    weight: float = 1.0


TEMPLATED = ("values", "value", "pattern", "instructions")


def _check_templates(criterion: Criterion, at: tuple[Any, ...], display: str, lines: Any,
                     problems: list[Problem]) -> None:
    """Parse every templated field now (nested `checks` too), not halfway through a run."""
    fields: list[tuple[str, Any]] = [(f, getattr(criterion, f)) for f in TEMPLATED]
    fields += [(f"params.{k}", v) for k, v in criterion.params.items()]
    for name, raw in fields:
        items = list(enumerate(raw)) if isinstance(raw, list) else [(None, raw)]
        for j, text in items:
            if isinstance(text, str) and is_template(text):
                where = (*at, *name.split(".")) if j is None else (*at, name, j)
                try:
                    check_template(text, display, lines.text_line(where),
                                   ".".join(map(str, (*at, name))))
                except ConfigError as exc:
                    problems += exc.problems
    for k, sub in enumerate(criterion.checks or []):
        _check_templates(sub, (*at, "checks", k), display, lines, problems)


def load_rubric(path: Path, name: str, display: str) -> Rubric:
    data, lines = load_yaml(path, display)
    if not isinstance(data, dict):
        raise ConfigError(Problem(display, "a rubric is a mapping with 'criteria'",
                                  lines.line_of(())))
    try:
        parsed = RubricFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(problems_from_validation(exc, display, lines,
                                                    model=RubricFile)) from None
    problems: list[Problem] = []
    where: dict[str, int] = {}
    templates: dict[str, str] = {}
    for i, criterion in enumerate(parsed.criteria):
        line = lines.line_of(("criteria", i)) or 0
        if criterion.id in where:
            problems.append(Problem(display, f"duplicate criterion id {criterion.id!r} (first "
                                    f"at line {where[criterion.id]})", line, f"criteria.{i}.id"))
        where[criterion.id] = line
        _check_templates(criterion, ("criteria", i), display, lines, problems)
        if criterion.check == "judge" and criterion.template is not None:
            try:
                templates[criterion.id] = load_judge_template(
                    criterion.template, path, display,
                    lines.line_of(("criteria", i, "template")), f"criteria.{i}.template")
            except ConfigError as exc:
                problems += exc.problems
    if problems:
        raise ConfigError(problems)
    min_score = None if parsed.pass_rule == "all" else parsed.pass_rule.min_score  # type: ignore[union-attr]
    return Rubric(name, display, parsed.description, parsed.criteria, where, min_score,
                  templates)


def resolve_criteria(rubric: Rubric, case: Case, case_label: str) -> list[ResolvedCriterion]:
    """Fill in each criterion's templated values from the case (sandboxed jinja2)."""
    context = {"case": case.model_dump(mode="json")}
    return [_resolve(c, c.id, rubric, case, context, case_label) for c in rubric.criteria]


def _render(raw: Any, context: dict[str, Any], rubric: Rubric, top: str, field: str,
            label: str) -> Any:
    try:
        return render_value(raw, context)
    except (TemplateError, ArithmeticError, LookupError, TypeError, ValueError,
            RecursionError, MemoryError) as exc:  # e.g. `{{ 1/0 }}`, `{{ case.id + 1 }}`
        raise ConfigError(Problem(
            rubric.display, f"template error for case {label}: {exc}",
            rubric.lines.get(top), f"{top}.{field}")) from None


def _resolve(criterion: Criterion, top: str, rubric: Rubric, case: Case,
             context: dict[str, Any], case_label: str) -> ResolvedCriterion:
    params: dict[str, Any] = {"case_sensitive": criterion.case_sensitive,
                              "max": criterion.max}
    if criterion.normalize is not None:
        params["normalize"] = criterion.normalize
    for name in TEMPLATED:
        raw = getattr(criterion, name)
        if raw is None:
            continue
        value = _render(raw, context, rubric, top, name, case_label)
        params[name] = _coerce(name, value, rubric, criterion, case_label)
    check = criterion.check
    if check == "facts" and "values" not in params:
        params["values"] = list(case.expected.facts)
    elif check == "forbidden" and "values" not in params:
        params["values"] = list(case.expected.forbidden)
    elif check == "json_schema":
        params["schema"] = criterion.schema_
    elif check == "numeric":
        params.update(tolerance=criterion.tolerance, rel_tolerance=criterion.rel_tolerance,
                      pick=criterion.pick)
    elif check in ("all_of", "any_of", "one_of"):
        params["checks"] = [_resolve(sub, top, rubric, case, context, case_label)
                            for sub in criterion.checks or []]
    elif check == "grounded":
        params.update(context=case.context, supported_at=criterion.supported_at,
                      unsupported_below=criterion.unsupported_below,
                      undecided=criterion.undecided)
    elif check in TOOL_CHECKS:
        params.update(_tool_params(case))
    elif check == "judge":
        params.update(template_text=rubric.templates.get(criterion.id, ""),
                      template=criterion.template, judge_samples=criterion.judge_samples,
                      case=context["case"])
    if CHECKS[check].custom:  # a custom check gets its own params (templated) and the case
        params = {"case": context["case"],
                  **{k: _render(v, context, rubric, top, f"params.{k}", case_label)
                     for k, v in criterion.params.items()}}
    return ResolvedCriterion(criterion.id, check, criterion.kind, params, criterion.weight)


def _tool_params(case: Case) -> dict[str, Any]:
    """What the tool checks read of a canary: its tools, expected call and sequence, and the
    names of the calls in its earlier turns."""
    expected = case.expected.tool_call
    return {"tools": [t.model_dump(mode="json") for t in case.tools or []],
            "expected": expected.model_dump(mode="json") if expected is not None else None,
            "sequence": list(case.expected.tool_sequence or []),
            "history": [c.name for m in case.messages or [] for c in m.tool_calls or []]}


def _coerce(field: str, value: Any, rubric: Rubric, criterion: Criterion, label: str) -> Any:
    if field == "values":
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        if isinstance(value, list | tuple) and all(
            isinstance(v, str | int | float) and not isinstance(v, bool) for v in value
        ):
            return [str(v) for v in value]
    elif isinstance(value, str | int | float) and not isinstance(value, bool):
        if field == "pattern":
            try:
                re.compile(str(value))
            except (re.error, OverflowError, RecursionError) as exc:
                raise ConfigError(Problem(
                    rubric.display, f"for case {label}, invalid regular expression: {exc}",
                    rubric.lines.get(criterion.id), f"{criterion.id}.pattern")) from None
        if field == "value" and criterion.check == "numeric":
            try:
                return float(value)
            except ValueError:
                raise ConfigError(Problem(
                    rubric.display, f"for case {label}, numeric value {value!r:.60} is not a "
                    "number", rubric.lines.get(criterion.id), f"{criterion.id}.value")) from None
        return str(value)
    raise ConfigError(Problem(
        rubric.display, f"for case {label}, {field} rendered to {type(value).__name__} "
        f"{value!r:.60}; expected {'a list of strings' if field == 'values' else 'a string'}",
        rubric.lines.get(criterion.id), f"{criterion.id}.{field}"))


@dataclass(frozen=True)
class CaseEntry:
    """A canary with its set, its rubric and the rubric's criteria resolved for it."""

    set_name: str
    case: Case
    rubric: str
    criteria: list[ResolvedCriterion]
    file: Path
    line: int
    min_score: float | None = None  # the rubric's pass rule (None: all criteria)

    @property
    def key(self) -> str:
        return case_key(self.set_name, self.case.id)
