"""Deterministic checks: pure functions of (answer text, resolved criterion parameters).

`judge` and `grounded` are registered here too (so rubrics validate against one registry) but
are graded in evalgate/graders/grade.py, which has the judge's verdicts. Custom checks join the
registry through the `evalgate.checks` entry point group or the
`pytest_evalgate_register_checks(registry)` hook (see `CheckRegistry`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from evalgate.grading import tool_checks
from evalgate.grading.outcome import CheckOutcome
from evalgate.spec import jsonschema_lite
from evalgate.text.tokens import (
    DEFAULT_NORMALISE,
    find_fact,
    normalise_text,
    numbers_in,
    states,
    tokens,
)


@dataclass(frozen=True)
class CheckSpec:
    """A check's implementation and the criterion fields it needs."""

    run: Callable[[str, dict[str, Any]], CheckOutcome]
    needs: tuple[str, ...]
    custom: bool = False


def normalise(text: str, case_sensitive: bool, options: list[str] | None = None) -> str:
    """The criterion's normalisations (default: case, whitespace, unicode NFKC); a
    case-sensitive criterion never folds case."""
    opts = list(DEFAULT_NORMALISE if options is None else options)
    if case_sensitive and "case" in opts:
        opts.remove("case")
    return normalise_text(text, opts)


def _norm(text: str, params: dict[str, Any]) -> str:
    return normalise(text, params["case_sensitive"], params.get("normalize"))


def _values(params: dict[str, Any]) -> list[str]:
    return [_norm(v, params) for v in params["values"]]


def _quote(items: list[str]) -> str:
    return ", ".join(repr(i) for i in items)


def contains_all(answer: str, params: dict[str, Any]) -> CheckOutcome:
    text = _norm(answer, params)
    missing = [v for v, n in zip(params["values"], _values(params), strict=True) if n not in text]
    if missing:
        return CheckOutcome(False, f"missing {_quote(missing)}")
    return CheckOutcome(True, f"states all {len(params['values'])} expected value(s)")


def contains_any(answer: str, params: dict[str, Any]) -> CheckOutcome:
    if not params["values"]:
        return CheckOutcome(True, "no values to look for")
    text = _norm(answer, params)
    found = [v for v, n in zip(params["values"], _values(params), strict=True) if n in text]
    if found:
        return CheckOutcome(True, f"states {_quote(found[:3])}")
    return CheckOutcome(False, f"states none of {_quote(params['values'])}")


def contains_none(answer: str, params: dict[str, Any]) -> CheckOutcome:
    text = _norm(answer, params)
    found = [v for v, n in zip(params["values"], _values(params), strict=True) if n in text]
    if found:
        return CheckOutcome(False, f"states forbidden {_quote(found)}")
    return CheckOutcome(True, f"states none of {len(params['values'])} forbidden value(s)")


def regex(answer: str, params: dict[str, Any]) -> CheckOutcome:
    flags = 0 if params["case_sensitive"] else re.IGNORECASE
    if re.search(params["pattern"], answer, flags):
        return CheckOutcome(True, f"matches /{params['pattern']}/")
    return CheckOutcome(False, f"does not match /{params['pattern']}/")


def equals(answer: str, params: dict[str, Any]) -> CheckOutcome:
    expected = _norm(params["value"], params)
    if _norm(answer, params) == expected:
        return CheckOutcome(True, "equals the expected answer")
    return CheckOutcome(False, f"differs from {params['value']!r}")


def max_words(answer: str, params: dict[str, Any]) -> CheckOutcome:
    count = len(answer.split())
    limit = params["max"]
    return CheckOutcome(count <= limit, f"{count} words (max {limit})")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(answer: str) -> Any:
    """Strict JSON (no NaN/Infinity); ValueError for anything else, also for nesting too deep
    to parse (RecursionError) or numbers too large to use: an answer can never crash grading."""
    try:
        return json.loads(answer, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def json_valid(answer: str, params: dict[str, Any]) -> CheckOutcome:
    try:
        parse_json(answer)
    except ValueError as exc:
        return CheckOutcome(False, f"not valid JSON: {exc}")
    return CheckOutcome(True, "valid JSON")


def starts_with(answer: str, params: dict[str, Any]) -> CheckOutcome:
    if _norm(answer, params).startswith(_norm(params["value"], params)):
        return CheckOutcome(True, f"starts with {params['value']!r}")
    return CheckOutcome(False, f"does not start with {params['value']!r}")


def not_regex(answer: str, params: dict[str, Any]) -> CheckOutcome:
    flags = 0 if params["case_sensitive"] else re.IGNORECASE
    found = re.search(params["pattern"], answer, flags)
    if found:
        return CheckOutcome(False, f"matches forbidden /{params['pattern']}/ at "
                                   f"{found.group(0)[:60]!r}")
    return CheckOutcome(True, f"does not match /{params['pattern']}/")


def max_tokens(answer: str, params: dict[str, Any]) -> CheckOutcome:
    """Output tokens as the provider reported them (estimated at 4 characters a token when it
    reported none, like the executor does)."""
    count = params.get("output_tokens")
    source = "reported"
    if count is None:
        count, source = max(1, math.ceil(len(answer) / 4)), "estimated"
    limit = params["max"]
    return CheckOutcome(count <= limit, f"{count} output tokens ({source}; max {limit})")


def json_schema(answer: str, params: dict[str, Any]) -> CheckOutcome:
    try:
        data = parse_json(answer)
    except ValueError as exc:
        return CheckOutcome(False, f"not valid JSON: {exc}")
    try:
        errors = jsonschema_lite.validate(data, params["schema"])
    except (RecursionError, OverflowError) as exc:  # e.g. a 400-digit integer vs a bound
        return CheckOutcome(False, f"cannot validate: {type(exc).__name__}")
    if errors:
        more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
        return CheckOutcome(False, "; ".join(errors[:3]) + more)
    return CheckOutcome(True, "valid JSON matching the schema")


def numeric(answer: str, params: dict[str, Any]) -> CheckOutcome:
    """Extract the answer's numbers (digits or number words) and compare one with `value`:
    |x - value| <= max(tolerance, rel_tolerance * |value|)."""
    try:
        expected = float(params["value"])
    except (TypeError, ValueError):
        return CheckOutcome(False, f"expected value {params['value']!r} is not a number")
    found = numbers_in(answer)
    if not found:
        return CheckOutcome(False, "states no number")
    allowed = max(params.get("tolerance") or 0.0,
                  (params.get("rel_tolerance") or 0.0) * abs(expected))
    pick = params.get("pick") or "first"
    candidates = found if pick == "any" else [found[0] if pick == "first" else found[-1]]
    good = [x for x in candidates if abs(x - expected) <= allowed + 1e-12]
    shown = ", ".join(f"{x:g}" for x in candidates[:5])
    if good:
        return CheckOutcome(True, f"{good[0]:g} is within {allowed:g} of {expected:g}")
    return CheckOutcome(False, f"{shown} not within {allowed:g} of {expected:g} ({pick} number)")


def facts(answer: str, params: dict[str, Any]) -> CheckOutcome:
    """Every reference fact stated, under the documented equivalences (numbers as values)."""
    answer_tokens = tokens(answer)

    missing = [f for f in params["values"] if find_fact(f, answer_tokens) is None]
    if missing:
        return CheckOutcome(False, f"missing fact(s) {_quote(missing)}")
    return CheckOutcome(True, f"states all {len(params['values'])} fact(s)")


def forbidden(answer: str, params: dict[str, Any]) -> CheckOutcome:
    """No forbidden statement made, under the same equivalences as `facts`."""
    said = [f for f in params["values"] if states(f, answer)]
    if said:
        return CheckOutcome(False, f"states forbidden {_quote(said)}")
    return CheckOutcome(True, f"states none of {len(params['values'])} forbidden statement(s)")


def run_check(check: str, answer: str, params: dict[str, Any]) -> CheckOutcome:
    """Run one registered check; a custom check that raises or returns junk fails, with why."""
    spec = CHECKS[check]
    try:
        outcome = spec.run(answer, params)
    except Exception as exc:  # a user's check must not take the run down
        if not spec.custom:
            raise
        return CheckOutcome(False, f"check {check!r} raised {type(exc).__name__}: {exc}")
    return outcome


def _combine(answer: str, params: dict[str, Any]) -> list[tuple[str, CheckOutcome]]:
    out = []
    for sub in params["checks"]:
        sub_params = {**sub.params, "output_tokens": params.get("output_tokens"),
                      "tool_calls": params.get("tool_calls")}
        out.append((sub.id, run_check(sub.check, answer, sub_params)))
    return out


def _combined_detail(results: list[tuple[str, CheckOutcome]]) -> str:
    return "; ".join(f"{'ok' if o.passed else 'no'} {i}: {o.detail}" for i, o in results)


def all_of(answer: str, params: dict[str, Any]) -> CheckOutcome:
    results = _combine(answer, params)
    return CheckOutcome(all(o.passed for _, o in results), _combined_detail(results))


def any_of(answer: str, params: dict[str, Any]) -> CheckOutcome:
    results = _combine(answer, params)
    return CheckOutcome(any(o.passed for _, o in results), _combined_detail(results))


def one_of(answer: str, params: dict[str, Any]) -> CheckOutcome:
    """Exactly one of the sub-checks holds (like JSON Schema's oneOf)."""
    results = _combine(answer, params)
    n = sum(o.passed for _, o in results)
    return CheckOutcome(n == 1, f"{n} of {len(results)} hold (exactly 1 needed): "
                        + _combined_detail(results))


def _graded_elsewhere(answer: str, params: dict[str, Any]) -> CheckOutcome:
    raise AssertionError("judge and grounded are graded by evalgate.grading.grade")


CHECKS: dict[str, CheckSpec] = {
    "contains_all": CheckSpec(contains_all, ("values",)),
    "contains_any": CheckSpec(contains_any, ("values",)),
    "contains_none": CheckSpec(contains_none, ("values",)),
    "regex": CheckSpec(regex, ("pattern",)),
    "equals": CheckSpec(equals, ("value",)),
    "max_words": CheckSpec(max_words, ("max",)),
    "json_valid": CheckSpec(json_valid, ()),
    "json_schema": CheckSpec(json_schema, ("schema",)),
    "numeric": CheckSpec(numeric, ("value",)),
    "starts_with": CheckSpec(starts_with, ("value",)),
    "not_regex": CheckSpec(not_regex, ("pattern",)),
    "max_tokens": CheckSpec(max_tokens, ("max",)),
    "facts": CheckSpec(facts, ()),
    "forbidden": CheckSpec(forbidden, ()),
    "all_of": CheckSpec(all_of, ("checks",)),
    "any_of": CheckSpec(any_of, ("checks",)),
    "one_of": CheckSpec(one_of, ("checks",)),
    "tool_called": CheckSpec(tool_checks.tool_called, ()),
    "tool_args_valid": CheckSpec(tool_checks.tool_args_valid, ()),
    "tool_args_match": CheckSpec(tool_checks.tool_args_match, ()),
    "no_tool_call": CheckSpec(tool_checks.no_tool_call, ()),
    "tool_sequence": CheckSpec(tool_checks.tool_sequence, ()),
    "grounded": CheckSpec(_graded_elsewhere, ()),
    "judge": CheckSpec(_graded_elsewhere, ()),
}
BUILTIN_CHECKS = frozenset(CHECKS)
COMBINATORS = frozenset({"all_of", "any_of", "one_of"})
TOOL_CHECKS = frozenset({"tool_called", "tool_args_valid", "tool_args_match", "no_tool_call",
                         "tool_sequence"})
JUDGED = frozenset({"grounded", "judge"})  # need a judge model (grounded: for undecided claims)


CustomCheck = Callable[[str, dict[str, Any]], "CheckOutcome | bool | tuple[bool, str]"]


def _wrap(name: str, fn: CustomCheck) -> Callable[[str, dict[str, Any]], CheckOutcome]:
    def run(answer: str, params: dict[str, Any]) -> CheckOutcome:
        out = fn(answer, params)
        if isinstance(out, CheckOutcome):
            return out
        if isinstance(out, bool):
            return CheckOutcome(out, f"{name}: {'holds' if out else 'does not hold'}")
        if (isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], bool)
                and isinstance(out[1], str)):
            return CheckOutcome(out[0], out[1])
        return CheckOutcome(False, f"check {name!r} returned {type(out).__name__}, expected a "
                                   "bool, (bool, detail) or CheckOutcome")
    return run


class CheckRegistry:
    """What a `pytest_evalgate_register_checks(registry)` hook receives."""

    def add(self, name: str, fn: CustomCheck) -> None:
        """Register `fn(answer, params) -> bool | (bool, detail) | CheckOutcome` as check
        `name`; `params` holds the criterion's `params` (templated) and `case` (the canary)."""
        if not re.fullmatch(r"[A-Za-z_][\w.-]*", name):
            raise ValueError(f"bad check name {name!r}")
        if name in BUILTIN_CHECKS:
            raise ValueError(f"check {name!r} is built in; pick another name")
        CHECKS[name] = CheckSpec(_wrap(name, fn), (), custom=True)

    def names(self) -> list[str]:
        return sorted(n for n, s in CHECKS.items() if s.custom)


_entry_points_loaded = False
ENTRY_POINT_ERRORS: dict[str, str] = {}  # check name -> why its entry point did not load


def load_entry_point_checks() -> None:
    """Register the checks of installed packages (entry point group `evalgate.checks`: the
    entry's name is the check's name, its object the check function). Once per process."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    registry = CheckRegistry()
    for ep in entry_points(group="evalgate.checks"):
        try:
            registry.add(ep.name, ep.load())
        except Exception as exc:  # a broken plugin names itself where its check is used
            ENTRY_POINT_ERRORS[ep.name] = f"{ep.value}: {type(exc).__name__}: {exc}"
