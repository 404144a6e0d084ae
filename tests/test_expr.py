"""The routing condition language: parse, type-check, evaluate; never Python eval."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evalgate.spec.expr import ExprError, compile_condition, evaluate, parse, tokenize

ENV = {"prompt_chars": 120, "prompt_words": 20, "prompt_tokens": 30, "tags": ["billing", "vip"],
       "set": "support", "id": "refund-1", "metadata": {"tier": "gold", "lang": "de", "n": 3}}


@pytest.mark.parametrize("text, expected", [
    ("prompt_tokens < 120", True),
    ("prompt_tokens >= 31", False),
    ("prompt_chars == 120 and prompt_words != 21", True),
    ("'billing' in tags", True),
    ("'reasoning' in tags", False),
    ("'reasoning' not in tags", True),
    ("not 'vip' in tags", False),
    ("set == 'support' or id == 'x'", True),
    ("id in ['a', 'refund-1']", True),
    ("'fund' in id", True),
    ("metadata.tier == 'gold' and metadata.n > 2", True),
    ("metadata.missing == 'x'", False),
    ("metadata.missing != 'x'", True),
    ("metadata.tier > 3", False),          # a value of another type simply does not match
    ("(prompt_tokens < 10 or 'vip' in tags) and not (set == 'other')", True),
    ("true", True),
    ("False or prompt_words <= 20", True),
    ('id == "refund-1"', True),
    ("1.5e2 > prompt_chars", True),
    ("'it\\'s' == \"it's\"", True),
])
def test_evaluates(text: str, expected: bool) -> None:
    assert evaluate(compile_condition(text), ENV) is expected


@pytest.mark.parametrize("text, message", [
    ("prompt_tokens < 'ten'", "compares a number with a string"),
    ("tags == 3", "compares a list with a number"),
    ("prompt_tokens", "not true/false"),
    ("3 in tags", "compares a number with a list of strings"),
    ("'a' in prompt_tokens", "needs a list or a string on the right"),
    ("tags in tags", "not a list"),
    ("not tags", "'not' needs a condition"),
    ("prompt_tokens and true", "'and' needs a condition"),
    ("[1, 'a'] == tags", "mixes types"),
    ("true < false", "needs numbers or strings"),
    ("metadata.x < true", "cannot order booleans"),
])
def test_type_errors(text: str, message: str) -> None:
    with pytest.raises(ExprError, match=message):
        compile_condition(text)


@pytest.mark.parametrize("text, message", [
    ("__class__", "dunder"),
    ("().__class__", "empty parentheses"),
    ("(prompt_tokens).__class__", "attribute access"),
    ("tags.__class__", "attribute access"),
    ("id.upper", "attribute access"),
    ("metadata.__class__", "not allowed"),
    ("metadata._secret == 1", "not allowed"),
    ("metadata.a.b == 1", "attribute access"),
    ("len(tags) > 1", "unknown name 'len'"),
    ("tags(1)", "calls are not allowed"),
    ("'x'.join(tags)", "attribute access"),
    ("tags[0] == 'a'", "indexing is not allowed"),
    ("import os", "unknown name 'import'"),
    ("__import__('os').system('true')", "dunder"),
    ("open('x')", "unknown name 'open'"),
    ("prompt_tokens = 3", "use == to compare"),
    ("1 < prompt_tokens < 3", "cannot be chained"),
    ("lambda: 1", "unexpected character ':'"),
    ("prompt_tokens < 3;", "unexpected character ';'"),
    ("`id`", "unexpected character"),
    ("", "empty condition"),
    ("(" * 60 + "true" + ")" * 60, "nests deeper"),
    ("'unterminated", "unexpected character"),
    ("'\\n' in id", "unknown escape"),
    ("metadata", "metadata.<key>"),
    ("[tags] == 1", "literal values only"),
    ("id in " + "[" * 1900, "literal values only"),
    ("id in [(true)]", "literal values only"),
    ("not " * 100 + "true", "nests deeper"),
])
def test_rejected(text: str, message: str) -> None:
    with pytest.raises(ExprError, match=message):
        compile_condition(text)


def test_error_has_column() -> None:
    with pytest.raises(ExprError) as info:
        compile_condition("prompt_tokens < 3 and tags[0]")
    assert info.value.column == 27
    assert "(column 27)" in str(info.value)


def test_no_python_eval_reachable() -> None:
    """The evaluator only ever returns booleans, and evaluates nothing but the AST."""
    node = parse("id == 'refund-1'")
    assert evaluate(node, {**ENV, "id": type("Evil", (), {"__eq__": lambda s, o: 1 / 0})()}) \
        is False
    assert [t.kind for t in tokenize("a <= 'b'")] == ["name", "op", "str", "end"]


ALPHABET = st.sampled_from([*"abcdefghijklmnopqrstuvwxyz_0123456789 .,()[]'\"<>=!-+*/\\;:@`",
                            "and ", "or ", "not ", "in ", "tags", "metadata.", "__class__",
                            "prompt_tokens", "true", "'x'"])


@settings(max_examples=300, deadline=None)
@given(st.lists(ALPHABET, max_size=40).map("".join))
def test_fuzz_only_project_errors(text: str) -> None:
    """Whatever the text, the parser either compiles it or raises ExprError, and a compiled
    condition evaluates to a boolean on any case."""
    try:
        node = compile_condition(text)
    except ExprError:
        return
    assert evaluate(node, ENV) in (True, False)
    assert evaluate(node, {}) in (True, False)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=80))
def test_fuzz_any_unicode(text: str) -> None:
    with contextlib.suppress(ExprError):
        compile_condition(text)
