"""Rubrics: how an answer is graded, and which failed criteria count as hallucination."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from jinja2 import TemplateError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from evalgate.canaries import Case
from evalgate.errors import ConfigError, Problem
from evalgate.graders.checks import CHECKS
from evalgate.templating import check_template, is_template, render_value
from evalgate.yamlio import load_yaml, problems_from_validation


class Criterion(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)
    check: str
    kind: Literal["quality", "hallucination"] = "quality"
    description: str | None = None
    values: list[str] | str | None = None
    value: str | None = None
    pattern: str | None = None
    max: int | None = Field(None, ge=0)
    case_sensitive: bool = False

    @field_validator("check")
    @classmethod
    def _known_check(cls, value: str) -> str:
        if value not in CHECKS:
            raise ValueError(f"unknown check {value!r}; known: {', '.join(CHECKS)}")
        return value

    @model_validator(mode="after")
    def _has_what_check_needs(self) -> Criterion:
        missing = [name for name in CHECKS[self.check].needs if getattr(self, name) is None]
        if missing:
            raise ValueError(f"check {self.check!r} needs {', '.join(missing)!s}")
        if self.pattern is not None and not is_template(self.pattern):
            try:
                re.compile(self.pattern)
            except (re.error, OverflowError, RecursionError) as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return self


class RubricFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str | None = None
    criteria: list[Criterion] = Field(min_length=1)


@dataclass(frozen=True)
class Rubric:
    name: str
    display: str
    description: str | None
    criteria: list[Criterion]
    lines: dict[str, int]

    def fingerprint(self) -> str:
        payload = [c.model_dump(mode="json") for c in self.criteria]
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ResolvedCriterion:
    """A criterion with its templated values filled in for one case."""

    id: str
    check: str
    kind: str
    params: dict[str, Any]


def load_rubric(path: Path, name: str, display: str) -> Rubric:
    data, lines = load_yaml(path, display)
    if not isinstance(data, dict):
        raise ConfigError(Problem(display, "a rubric is a mapping with 'criteria'",
                                  lines.line_of(())))
    try:
        parsed = RubricFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(problems_from_validation(exc, display, lines)) from None
    problems: list[Problem] = []
    where: dict[str, int] = {}
    for i, criterion in enumerate(parsed.criteria):
        line = lines.line_of(("criteria", i)) or 0
        if criterion.id in where:
            problems.append(Problem(display, f"duplicate criterion id {criterion.id!r} (first "
                                    f"at line {where[criterion.id]})", line, f"criteria.{i}.id"))
        where[criterion.id] = line
        for field in ("values", "value", "pattern"):
            raw = getattr(criterion, field)
            items = list(enumerate(raw)) if isinstance(raw, list) else [(None, raw)]
            for j, text in items:
                if isinstance(text, str) and is_template(text):
                    at = ("criteria", i, field) if j is None else ("criteria", i, field, j)
                    try:
                        check_template(text, display, lines.text_line(at),
                                       f"criteria.{i}.{field}")
                    except ConfigError as exc:
                        problems += exc.problems
    if problems:
        raise ConfigError(problems)
    return Rubric(name, display, parsed.description, parsed.criteria, where)


def resolve_criteria(rubric: Rubric, case: Case, case_label: str) -> list[ResolvedCriterion]:
    """Fill in each criterion's templated values from the case (sandboxed jinja2)."""
    context = {"case": case.model_dump(mode="json")}
    resolved = []
    for criterion in rubric.criteria:
        params: dict[str, Any] = {"case_sensitive": criterion.case_sensitive,
                                  "max": criterion.max}
        for field in ("values", "value", "pattern"):
            raw = getattr(criterion, field)
            if raw is None:
                continue
            try:
                value = render_value(raw, context)
            except (TemplateError, ArithmeticError, LookupError, TypeError, ValueError,
                    RecursionError, MemoryError) as exc:  # e.g. `{{ 1/0 }}`, `{{ case.id + 1 }}`
                raise ConfigError(Problem(
                    rubric.display, f"template error for case {case_label}: {exc}",
                    rubric.lines.get(criterion.id), f"{criterion.id}.{field}")) from None
            params[field] = _coerce(field, value, rubric, criterion, case_label)
        resolved.append(ResolvedCriterion(criterion.id, criterion.check, criterion.kind, params))
    return resolved


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
        return str(value)
    raise ConfigError(Problem(
        rubric.display, f"for case {label}, {field} rendered to {type(value).__name__} "
        f"{value!r:.60}; expected {'a list of strings' if field == 'values' else 'a string'}",
        rubric.lines.get(criterion.id), f"{criterion.id}.{field}"))
