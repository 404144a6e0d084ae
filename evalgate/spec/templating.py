"""Sandboxed jinja2: the only way evalgate turns config text into values or prompts.

Rubric values like `"{{ case.expected.facts }}"` evaluate to the native value (a list), not its
string form; anything else renders as text. The sandbox blocks attribute tricks and mutation of
the context (one criterion cannot change what the next one sees), and undefined names are errors
rather than silently empty strings or Undefined objects.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError, Undefined
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from evalgate.errors import ConfigError, Problem

_WHOLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\}\}).)*)\}\}\s*$", re.S)


MAX_RESULT = 1_000_000  # longest string/sequence (or largest power) a template may build


class _Sandbox(ImmutableSandboxedEnvironment):
    """Also bounds `*` and `**`: `{{ 'a' * 10**10 }}` must fail, not eat the machine (and
    intercepting them stops jinja2 constant-folding them at compile time)."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(right, int) and abs(right) > 1000 and not (
                    isinstance(left, int) and abs(left) <= 1):
                raise SecurityError("exponent too large")
            return left ** right
        for seq, times in ((left, right), (right, left)):
            if (isinstance(seq, str | list | tuple) and isinstance(times, int)
                    and len(seq) * times > MAX_RESULT):
                raise SecurityError("result too large")
        return left * right


@lru_cache(maxsize=1)
def environment() -> ImmutableSandboxedEnvironment:
    return _Sandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


def check_template(text: str, file: str, line: int | None, field: str) -> None:
    """Fail at load time, not mid-run, on a template that does not parse."""
    try:
        environment().parse(text)
    except RecursionError:
        raise ConfigError(Problem(file, "template error: nested too deeply", line, field)) \
            from None
    except TemplateError as exc:
        inner = getattr(exc, "lineno", None)
        at = line + inner - 1 if line and inner else line
        raise ConfigError(Problem(file, f"template error: {exc}", at, field)) from None


def is_template(text: str) -> bool:
    return "{{" in text or "{%" in text


@lru_cache(maxsize=4096)
def _compiled_expression(expr: str) -> Any:
    return environment().compile_expression(expr, undefined_to_none=False)


@lru_cache(maxsize=4096)
def _compiled_template(text: str) -> Any:
    return environment().from_string(text)


_NOT_PLAIN = object()
_DOTTED = re.compile(r"[A-Za-z]\w*(?:\.[A-Za-z]\w*)*\Z")


def _dict_path(expr: str, context: dict[str, Any]) -> Any:
    """`case.expected.facts` looked up through plain dicts without a jinja context (the
    profile's biggest cost when loading thousands of canaries). Only where jinja's sandboxed
    getattr gives the same: every step a dict key that is not also a dict attribute
    (`items`, `get`...); anything else returns _NOT_PLAIN and goes through jinja."""
    if not _DOTTED.match(expr):
        return _NOT_PLAIN
    value: Any = context
    for name in expr.split("."):
        if type(value) is not dict or name not in value or hasattr(dict, name):
            return _NOT_PLAIN
        value = value[name]
    return value


def render_value(value: Any, context: dict[str, Any]) -> Any:
    """Render a config value: `{{ expr }}` alone gives the native value, other text a string.

    Lists are rendered item by item. Raises jinja2.TemplateError on undefined names.
    """
    if isinstance(value, list):
        return [render_value(item, context) for item in value]
    if not isinstance(value, str) or not is_template(value):
        return value
    whole = _WHOLE_EXPRESSION.match(value)
    if whole:
        expr = whole.group("expr").strip()
        found = _dict_path(expr, context)
        if found is not _NOT_PLAIN:
            return found
        result = _compiled_expression(expr)(**context)
        if isinstance(result, Undefined):
            # A bare expression hands back the Undefined object instead of raising: raise the
            # error it carries (undefined name, or the sandbox's SecurityError).
            result._fail_with_undefined_error()
        return result
    return _compiled_template(value).render(**context)


def render_text(template: str, context: dict[str, Any]) -> str:
    return _compiled_template(template).render(**context)
