"""Deterministic checks: pure functions of (answer text, resolved criterion parameters)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    detail: str


@dataclass(frozen=True)
class CheckSpec:
    """A check's implementation and the criterion fields it needs."""

    run: Callable[[str, dict[str, Any]], CheckOutcome]
    needs: tuple[str, ...]


def normalise(text: str, case_sensitive: bool) -> str:
    """Collapse whitespace, and fold case unless the criterion is case-sensitive."""
    collapsed = " ".join(text.split())
    return collapsed if case_sensitive else collapsed.casefold()


def _values(params: dict[str, Any]) -> list[str]:
    return [normalise(v, params["case_sensitive"]) for v in params["values"]]


def _quote(items: list[str]) -> str:
    return ", ".join(repr(i) for i in items)


def contains_all(answer: str, params: dict[str, Any]) -> CheckOutcome:
    text = normalise(answer, params["case_sensitive"])
    missing = [v for v, n in zip(params["values"], _values(params), strict=True) if n not in text]
    if missing:
        return CheckOutcome(False, f"missing {_quote(missing)}")
    return CheckOutcome(True, f"states all {len(params['values'])} expected value(s)")


def contains_any(answer: str, params: dict[str, Any]) -> CheckOutcome:
    if not params["values"]:
        return CheckOutcome(True, "no values to look for")
    text = normalise(answer, params["case_sensitive"])
    found = [v for v, n in zip(params["values"], _values(params), strict=True) if n in text]
    if found:
        return CheckOutcome(True, f"states {_quote(found[:3])}")
    return CheckOutcome(False, f"states none of {_quote(params['values'])}")


def contains_none(answer: str, params: dict[str, Any]) -> CheckOutcome:
    text = normalise(answer, params["case_sensitive"])
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
    expected = normalise(params["value"], params["case_sensitive"])
    if normalise(answer, params["case_sensitive"]) == expected:
        return CheckOutcome(True, "equals the expected answer")
    return CheckOutcome(False, f"differs from {params['value']!r}")


def max_words(answer: str, params: dict[str, Any]) -> CheckOutcome:
    count = len(answer.split())
    limit = params["max"]
    return CheckOutcome(count <= limit, f"{count} words (max {limit})")


def json_valid(answer: str, params: dict[str, Any]) -> CheckOutcome:
    try:
        json.loads(answer)
    except ValueError as exc:
        return CheckOutcome(False, f"not valid JSON: {exc}")
    return CheckOutcome(True, "valid JSON")


CHECKS: dict[str, CheckSpec] = {
    "contains_all": CheckSpec(contains_all, ("values",)),
    "contains_any": CheckSpec(contains_any, ("values",)),
    "contains_none": CheckSpec(contains_none, ("values",)),
    "regex": CheckSpec(regex, ("pattern",)),
    "equals": CheckSpec(equals, ("value",)),
    "max_words": CheckSpec(max_words, ("max",)),
    "json_valid": CheckSpec(json_valid, ()),
}
