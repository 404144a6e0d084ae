"""Tool-call canaries: the tools a canary offers (OpenAI function format), the tool call it
expects, and the cross-checks that make a broken tool spec a usage error at load time."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from evalgate.errors import Problem
from evalgate.spec import jsonschema_lite
from evalgate.spec.yamlio import LineMap

TOOL_NAME = r"^[A-Za-z0-9_-]{1,64}$"  # what OpenAI and Anthropic both accept


class ToolFunction(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=TOOL_NAME)
    description: str | None = None
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None


class Tool(BaseModel):
    """One tool in the OpenAI function format: `{type: function, function: {name, ...}}`."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["function"] = "function"
    function: ToolFunction

    @property
    def name(self) -> str:
        return self.function.name


class ArgCheck(BaseModel):
    """A per-field check of one argument: the rubric checks' `numeric` (with tolerance),
    `contains` and `regex`, or an exact `equals`."""

    model_config = ConfigDict(extra="forbid")
    equals: Any = None
    numeric: float | None = Field(None, allow_inf_nan=False)
    tolerance: float | None = Field(None, ge=0, allow_inf_nan=False)
    rel_tolerance: float | None = Field(None, ge=0, allow_inf_nan=False)
    contains: str | None = None
    regex: str | None = None
    case_sensitive: bool = False

    @model_validator(mode="after")
    def _one_check(self) -> ArgCheck:
        given = [n for n in ("equals", "numeric", "contains", "regex")
                 if getattr(self, n) is not None]
        if not given:
            raise ValueError("give one of 'equals', 'numeric', 'contains' or 'regex'")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return self


class ExpectedToolCall(BaseModel):
    """The call a good answer makes: the tool's name and its arguments as exact values
    (`arguments`, the keys given), a JSON Schema (`arguments_schema`) or per-field checks
    (`argument_checks`); any of them, or none (only the name matters)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=TOOL_NAME)
    arguments: dict[str, Any] | None = None
    arguments_schema: dict[str, Any] | None = None
    argument_checks: dict[str, ArgCheck] | None = None


class ToolCallTurn(BaseModel):
    """An earlier tool call in a multi-step canary's `messages` (an assistant turn)."""

    model_config = ConfigDict(extra="forbid")
    id: str | None = None
    name: str = Field(pattern=TOOL_NAME)
    arguments: dict[str, Any] = Field(default_factory=dict)


def _field(*loc: int | str) -> str:
    return ".".join(map(str, loc))


def tool_problems(tools: list[Tool], display: str, lines: LineMap,
                  prefix: tuple[int | str, ...]) -> list[Problem]:
    """What is wrong with a list of tools (a canary's or a set's): a parameter schema the
    validator does not understand or that is no object schema, a name given twice."""
    out: list[Problem] = []
    names = [t.name for t in tools]
    for j, tool in enumerate(tools):
        at = ("tools", j, "function", "parameters")
        params = tool.function.parameters
        problems = jsonschema_lite.check_schema(params, _field(*prefix, *at))
        if not problems and params.get("type", "object") != "object":
            problems = [f"{_field(*prefix, *at)}.type: a tool's parameters are an object "
                        "schema"]
        for problem in problems:  # "<path>: why": the path is where the problem is
            path, _, why = problem.partition(": ")
            loc = tuple(int(k) if k.isdigit() else k for k in path.split("."))[len(prefix):]
            out.append(Problem(display, f"invalid tool schema: {why}", lines.line_of(loc),
                               path))
        if names.index(tool.name) != j:
            at = ("tools", j, "function", "name")
            out.append(Problem(display, f"duplicate tool name {tool.name!r}", lines.line_of(at),
                               _field(*prefix, *at)))
    return out


def expected_problems(names: list[str], expected: ExpectedToolCall | None,
                      tool_choice: str | None, display: str, lines: LineMap,
                      prefix: tuple[int | str, ...]) -> list[Problem]:
    """An expected call (or tool_choice) naming a tool that is not offered; an arguments
    schema the validator does not understand."""
    out: list[Problem] = []
    if expected is not None:
        loc = ("expected", "tool_call")
        if expected.name not in names:
            known = ", ".join(names) or "none: give 'tools'"
            out.append(Problem(display, f"expected.tool_call names tool {expected.name!r}, "
                               f"which is not in tools (offered: {known})",
                               lines.line_of((*loc, "name")), _field(*prefix, *loc, "name")))
        if expected.arguments_schema is not None:
            at = _field(*prefix, *loc, "arguments_schema")
            out += [Problem(display, f"invalid schema: {p}",
                            lines.line_of((*loc, "arguments_schema")), at)
                    for p in jsonschema_lite.check_schema(expected.arguments_schema, at)]
    if tool_choice not in (None, "auto", "required", "none") and tool_choice not in names:
        out.append(Problem(display, f"tool_choice {tool_choice!r} is not auto, required, none "
                           "or an offered tool", lines.line_of(("tool_choice",)),
                           _field(*prefix, "tool_choice")))
    return out


def _example(schema: dict[str, Any]) -> Any:
    """A value valid for a simple schema (const, enum, then the type's plainest value)."""
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    kind = kind[0] if isinstance(kind, list) and kind else kind
    if kind == "object":  # the required properties and those with one possible value
        props = schema.get("properties") or {}
        fixed = [k for k, v in props.items() if isinstance(v, dict) and ("const" in v
                                                                         or v.get("enum"))]
        return {k: _example(props.get(k, {}))
                for k in dict.fromkeys([*(schema.get("required") or []), *fixed])}
    if kind in ("number", "integer"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        return low + (1 if "exclusiveMinimum" in schema and "minimum" not in schema else 0)
    return {"boolean": False, "array": [], "null": None}.get(kind or "", "x" * max(
        1, int(schema.get("minLength", 1))))


def example_arguments(expected: ExpectedToolCall, parameters: dict[str, Any] | None = None
                      ) -> dict[str, Any]:
    """Arguments that satisfy an expected call as far as it can be read (the simulator's
    answer): the tool's required parameters, the expected schema's plainest valid object,
    the per-field checks' values, then the exact values over all of them."""
    args: dict[str, Any] = {}
    if parameters:
        props = parameters.get("properties") or {}
        args.update({k: _example(props.get(k, {})) for k in parameters.get("required") or []})
    if expected.arguments_schema is not None:
        made = _example({"type": "object", **expected.arguments_schema})
        args.update(made if isinstance(made, dict) else {})
    for name, check in (expected.argument_checks or {}).items():
        value = check.equals if check.equals is not None else check.numeric \
            if check.numeric is not None else check.contains
        if value is not None:
            args[name] = value
    args.update(expected.arguments or {})
    return args
