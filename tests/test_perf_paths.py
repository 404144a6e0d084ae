"""Fast paths added for speed must give exactly what the slow path gives."""

from __future__ import annotations

from typing import Any

import pytest
from jinja2 import TemplateError

from evalgate.spec.templating import _compiled_expression, _dict_path, render_value

CONTEXT: dict[str, Any] = {
    "case": {"id": "c1", "expected": {"facts": ["30 days", 7], "items": ["x"], "n": 0,
                                      "none": None},
             "metadata": {"get": "value"}},
    "prompt": "p",
}


@pytest.mark.parametrize("expr", ["case.expected.facts", "case.id", "prompt", "case.expected.n",
                                  "case.expected.none", "case.expected"])
def test_plain_dict_paths_equal_jinja(expr: str) -> None:
    fast = render_value("{{ " + expr + " }}", CONTEXT)
    assert _dict_path(expr, CONTEXT) is fast
    assert fast == _compiled_expression(expr)(**CONTEXT)


@pytest.mark.parametrize("expr", ["case.expected.items", "case.metadata.get", "case.id | upper",
                                  "case['id']", "case.expected.facts[0]", "case.__class__"])
def test_anything_else_goes_through_jinja(expr: str) -> None:
    from evalgate.spec.templating import _NOT_PLAIN

    assert _dict_path(expr, CONTEXT) is _NOT_PLAIN


def test_dict_attributes_keep_jinja_semantics_and_missing_names_still_fail() -> None:
    # jinja's getattr prefers the attribute: `items` is the dict method, not the key
    assert callable(render_value("{{ case.expected.items }}", CONTEXT))
    with pytest.raises(TemplateError):
        render_value("{{ case.expected.missing }}", CONTEXT)
    with pytest.raises(TemplateError):
        render_value("{{ nothing }}", CONTEXT)
