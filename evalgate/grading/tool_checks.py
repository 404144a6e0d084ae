"""Tool-call checks: did the answer call the expected tool, with arguments its own schema
allows and the canary expects, or no tool at all, in the expected order.

Like every check, a pure function of (answer text, params). Besides the criterion's fields,
params carry the canary's `tools` (OpenAI function format), its `expected` tool call and the
names of the calls in its earlier turns (`history`, from rubrics.resolve_criteria), and the
answer's `tool_calls` (from grading.grade)."""

from __future__ import annotations

import math
import re
from typing import Any

from evalgate.grading.outcome import CheckOutcome
from evalgate.spec import jsonschema_lite

NOT_EXPECTED = "the canary expects no tool call; not checked"


def _calls(params: dict[str, Any]) -> list[dict[str, Any]]:
    return list(params.get("tool_calls") or [])


def _offered(params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Tool name -> its parameter schema."""
    return {t["function"]["name"]: t["function"].get("parameters") or {}
            for t in params.get("tools") or []}


def _shown(call: dict[str, Any]) -> str:
    return f"{call['name']}({jsonschema_lite.short_json(call.get('arguments'))})"


def _names(params: dict[str, Any]) -> list[str]:
    values = params.get("values")
    if values:
        return list(values)
    expected = params.get("expected")
    return [expected["name"]] if expected else []


def tool_called(answer: str, params: dict[str, Any]) -> CheckOutcome:
    """A tool of the expected name (or of any of `values`) was called."""
    names, calls = _names(params), _calls(params)
    if not names:
        return CheckOutcome(True, NOT_EXPECTED)
    good = [c for c in calls if c["name"] in names]
    if good:
        return CheckOutcome(True, f"called {_shown(good[0])}")
    if not calls:
        return CheckOutcome(False, f"called no tool (expected {' or '.join(names)})")
    offered = _offered(params)
    wrong = ", ".join(c["name"] + ("" if c["name"] in offered else " (not offered)")
                      for c in calls)
    return CheckOutcome(False, f"called {wrong}; expected {' or '.join(names)}")


def tool_args_valid(answer: str, params: dict[str, Any]) -> CheckOutcome:
    """Every call names an offered tool, with JSON arguments its parameter schema allows and
    no argument the schema does not have (an invented one, even where the schema is open)."""
    calls, offered = _calls(params), _offered(params)
    if not calls:
        return CheckOutcome(True, "no tool call to check")
    for call in calls:
        name = call["name"]
        if name not in offered:
            return CheckOutcome(False, f"called {name!r}, which was not offered (offered: "
                                f"{', '.join(offered) or 'none'})")
        if call.get("parse_error"):
            return CheckOutcome(False, f"{name}: {call['parse_error']}")
        args, schema = call.get("arguments"), offered[name]
        if not isinstance(args, dict):
            return CheckOutcome(False, f"{name}: arguments are not a JSON object")
        known = schema.get("properties") or {}
        invented = [k for k in args if k not in known]
        if invented:
            return CheckOutcome(False, f"{name}: invents argument(s) "
                                f"{', '.join(map(repr, invented))} (the schema has "
                                f"{', '.join(known) or 'none'})")
        try:
            errors = jsonschema_lite.validate(args, schema)
        except (RecursionError, OverflowError) as exc:
            return CheckOutcome(False, f"{name}: cannot validate: {type(exc).__name__}")
        if errors:
            return CheckOutcome(False, f"{name}: " + "; ".join(errors[:3]))
    return CheckOutcome(True, f"{len(calls)} call(s) valid against their tools' schemas")


def _field_check(value: Any, check: dict[str, Any]) -> str | None:
    """Why one argument fails its per-field check, or None."""
    if check.get("equals") is not None:
        errors = jsonschema_lite.validate(value, {"const": check["equals"]})
        return errors[0] if errors else None
    if check.get("numeric") is not None:
        try:
            got = float(value)
        except (TypeError, ValueError):
            return f"{value!r} is not a number"
        want = float(check["numeric"])
        allowed = max(check.get("tolerance") or 0.0,
                      (check.get("rel_tolerance") or 0.0) * abs(want))
        ok = math.isfinite(got) and abs(got - want) <= allowed + 1e-12
        return None if ok else f"{got:g} not within {allowed:g} of {want:g}"
    text = value if isinstance(value, str) else jsonschema_lite.short_json(value)
    flags = 0 if check.get("case_sensitive") else re.IGNORECASE
    if check.get("contains") is not None:
        needle = check["contains"]
        found = needle in text if flags == 0 else needle.lower() in text.lower()
        return None if found else f"{text[:60]!r} does not contain {needle!r}"
    pattern = check.get("regex") or ""
    return None if re.search(pattern, text, flags) else f"{text[:60]!r} does not match " \
        f"/{pattern}/"


def tool_args_match(answer: str, params: dict[str, Any]) -> CheckOutcome:
    """The expected tool's call has the expected arguments: each exact value given, valid
    against `arguments_schema`, and each per-field check holding."""
    expected = params.get("expected")
    if not expected:
        return CheckOutcome(True, NOT_EXPECTED)
    call = next((c for c in _calls(params) if c["name"] == expected["name"]), None)
    if call is None:
        return CheckOutcome(False, f"no call of {expected['name']!r} to compare")
    args = call.get("arguments")
    if not isinstance(args, dict):
        return CheckOutcome(False, f"arguments are not a JSON object ({call.get('parse_error')})")
    problems: list[str] = []
    for key, want in (expected.get("arguments") or {}).items():
        if key not in args:
            problems.append(f"missing {key!r}")
        else:
            problems += [f"{key}: {e}" for e in
                         jsonschema_lite.validate(args[key], {"const": want}, key)[:1]]
    if expected.get("arguments_schema") is not None:
        problems += jsonschema_lite.validate(args, expected["arguments_schema"])
    for key, check in (expected.get("argument_checks") or {}).items():
        why = _field_check(args[key], check) if key in args else "missing"
        if why is not None:
            problems.append(f"{key}: {why}")
    if problems:
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        return CheckOutcome(False, "; ".join(problems[:3]) + more)
    return CheckOutcome(True, f"{_shown(call)} matches the expected arguments")


def no_tool_call(answer: str, params: dict[str, Any]) -> CheckOutcome:
    """The answer calls no tool (a canary whose right answer is text)."""
    if params.get("expected"):
        return CheckOutcome(True, "the canary expects a tool call; not checked")
    calls = _calls(params)
    if calls:
        return CheckOutcome(False, f"called {', '.join(_shown(c) for c in calls[:3])}")
    return CheckOutcome(True, "called no tool")


def tool_sequence(answer: str, params: dict[str, Any]) -> CheckOutcome:
    """The earlier turns' calls and the answer's, in order, are the expected sequence."""
    want = list(params.get("values") or params.get("sequence") or [])
    if not want:
        return CheckOutcome(True, "the canary gives no tool_sequence; not checked")
    got = [*params.get("history", []), *(c["name"] for c in _calls(params))]
    if got == want:
        return CheckOutcome(True, f"tool sequence {' -> '.join(got)}")
    return CheckOutcome(False, f"tool sequence {' -> '.join(got) or '(none)'}; expected "
                        f"{' -> '.join(want)}")
