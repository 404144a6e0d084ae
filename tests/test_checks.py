"""Deterministic checks, rubric loading and templating, grading and message building."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from jinja2 import TemplateError
from jinja2.exceptions import SecurityError

from evalgate.engine.planning import build_messages
from evalgate.errors import ConfigError
from evalgate.grading.checks import CHECKS
from evalgate.grading.grade import grade
from evalgate.grading.rubrics import ResolvedCriterion, Rubric, load_rubric, resolve_criteria
from evalgate.results import Record
from evalgate.spec.canaries import Case
from evalgate.spec.config import LoadedModel, ModelConfig
from evalgate.spec.templating import render_text, render_value


def run(check: str, answer: str, **params: Any) -> bool:
    full = {"case_sensitive": False, "max": None, **params}
    return CHECKS[check].run(answer, full).passed


def detail(check: str, answer: str, **params: Any) -> str:
    full = {"case_sensitive": False, "max": None, **params}
    return CHECKS[check].run(answer, full).detail


# --------------------------------------------------------------------------- checks


def test_registry_is_complete() -> None:
    assert set(CHECKS) >= {"contains_all", "contains_any", "contains_none", "regex", "equals",
                           "max_words", "json_valid", "json_schema", "numeric", "starts_with",
                           "not_regex", "max_tokens", "facts", "forbidden", "all_of", "any_of",
                           "one_of", "grounded", "judge"}


def test_contains_all() -> None:
    answer = "Returns are accepted within 30 days for a FULL refund."
    assert run("contains_all", answer, values=["30 days", "full refund"])
    assert not run("contains_all", answer, values=["30 days", "store credit"])
    assert "'store credit'" in detail("contains_all", answer, values=["30 days", "store credit"])
    assert "'30 days'" not in detail("contains_all", answer, values=["30 days", "store credit"])
    assert run("contains_all", answer, values=[])


def test_contains_all_case_sensitivity() -> None:
    answer = "Pay with PayPal or Visa."
    assert run("contains_all", answer, values=["paypal", "VISA"])
    assert not run("contains_all", answer, values=["paypal"], case_sensitive=True)
    assert run("contains_all", answer, values=["PayPal", "Visa"], case_sensitive=True)


def test_contains_all_normalises_whitespace() -> None:
    answer = "Refunds take 5\n   business\tdays."
    assert run("contains_all", answer, values=["5 business days"])
    assert run("contains_all", "5 business days", values=["  5   business\ndays "])
    assert not run("contains_all", "5businessdays", values=["5 business days"])


def test_contains_any() -> None:
    answer = "We ship to Canada and Mexico."
    assert run("contains_any", answer, values=["Germany", "canada"])
    assert not run("contains_any", answer, values=["Germany", "France"])
    assert not run("contains_any", answer, values=["canada"], case_sensitive=True)
    assert run("contains_any", "ship   to\ncanada", values=["to Canada"])
    assert run("contains_any", answer, values=[])


def test_contains_none() -> None:
    answer = "Gift cards never expire."
    assert run("contains_none", answer, values=["expire after 12 months", "fee"])
    assert not run("contains_none", answer, values=["NEVER expire"])
    assert run("contains_none", answer, values=["NEVER expire"], case_sensitive=True)
    assert not run("contains_none", "cards\nnever   expire", values=["never expire"])
    assert "'never expire'" in detail("contains_none", answer, values=["never expire"])
    assert run("contains_none", answer, values=[])


def test_regex() -> None:
    answer = "Your order ships in 3 to 5 business days."
    assert run("regex", answer, pattern=r"\d+ to \d+ business days")
    assert run("regex", answer, pattern=r"SHIPS")  # search, case-insensitive by default
    assert not run("regex", answer, pattern=r"SHIPS", case_sensitive=True)
    assert not run("regex", answer, pattern=r"^\d")
    assert not run("regex", answer, pattern=r"next day")


def test_equals() -> None:
    assert run("equals", "  Yes,\n  it  is. ", value="yes, it is.")
    assert not run("equals", "Yes, it is.", value="yes, it is.", case_sensitive=True)
    assert run("equals", "Yes,  it is.", value="Yes, it is.", case_sensitive=True)
    assert not run("equals", "Yes, it is!", value="Yes, it is.")
    assert not run("equals", "Yes, it is. Really.", value="Yes, it is.")


def test_max_words() -> None:
    assert run("max_words", "one two three", max=3)
    assert not run("max_words", "one two three four", max=3)
    assert run("max_words", "one\n\ntwo   three", max=3)
    assert run("max_words", "", max=0)
    assert not run("max_words", "word", max=0)
    assert detail("max_words", "a b c d", max=3) == "4 words (max 3)"


def test_json_valid() -> None:
    assert run("json_valid", '{"refund": true, "days": 30}')
    assert run("json_valid", " [1, 2, 3] ")
    assert not run("json_valid", "{'refund': True}")
    assert not run("json_valid", '{"a": 1')
    assert not run("json_valid", "")
    assert not run("json_valid", "Sure! Here it is: {}")


# --------------------------------------------------------------------------- rubrics

CASE = Case(id="refund", prompt="How long?", context="30 days.",
            expected={"facts": ["30 days", "full refund"], "forbidden": ["90 days"],
                      "reference": "Within 30 days."},
            tags=["policy"], metadata={"min": 2})


def rubric(tmp_path: Path, text: str, name: str = "r") -> Rubric:
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_rubric(path, name, f"rubrics/{name}.yaml")


def rubric_error(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        rubric(tmp_path, text)
    return info.value


def resolve_error(tmp_path: Path, text: str, case: Case = CASE) -> ConfigError:
    loaded = rubric(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        resolve_criteria(loaded, case, "set/refund")
    return info.value


def params_of(tmp_path: Path, text: str, case: Case = CASE) -> dict[str, dict[str, Any]]:
    return {c.id: c.params for c in resolve_criteria(rubric(tmp_path, text), case, "set/refund")}


def test_whole_expression_gives_native_list(tmp_path: Path) -> None:
    params = params_of(tmp_path, """\
        criteria:
          - id: facts
            check: contains_all
            values: "{{ case.expected.facts }}"
          - id: none
            kind: hallucination
            check: contains_none
            values: "{{ case.expected.forbidden }}"
        """)
    assert params["facts"]["values"] == ["30 days", "full refund"]
    assert params["none"]["values"] == ["90 days"]


def test_list_of_templated_strings(tmp_path: Path) -> None:
    params = params_of(tmp_path, """\
        criteria:
          - id: facts
            check: contains_all
            values: ["{{ case.expected.facts[0] }}", "id {{ case.id }}", "plain", "{{ 'a' }}b"]
        """)
    assert params["facts"]["values"] == ["30 days", "id refund", "plain", "ab"]


def test_templated_value_pattern_and_numbers(tmp_path: Path) -> None:
    params = params_of(tmp_path, """\
        criteria:
          - id: same
            check: equals
            value: "{{ case.expected.reference }}"
          - id: re
            check: regex
            pattern: "{{ case.metadata.min }}\\\\d* days"
          - id: num
            check: equals
            value: "{{ case.metadata.min }}"
        """)
    assert params["same"]["value"] == "Within 30 days."
    assert params["re"]["pattern"] == r"2\d* days"
    assert params["num"]["value"] == "2"


def test_plain_values_pass_through(tmp_path: Path) -> None:
    params = params_of(tmp_path, """\
        criteria:
          - {id: a, check: contains_any, values: [x, y], case_sensitive: true}
          - {id: b, check: contains_all, values: single}
          - {id: c, check: max_words, max: 12}
        """)
    assert params["a"] == {"case_sensitive": True, "max": None, "values": ["x", "y"]}
    assert params["b"]["values"] == ["single"]
    assert params["c"] == {"case_sensitive": False, "max": 12}


@pytest.mark.parametrize(("template", "needle"), [
    ("{{ case.expected.nope }}", "nope"),
    ("{{ nothing }}", "'nothing' is undefined"),
    ("Say {{ nothing }}", "'nothing' is undefined"),
    ("{{ case.metadata.absent }}", "absent"),
])
def test_undefined_names_raise_located_error(tmp_path: Path, template: str, needle: str) -> None:
    error = resolve_error(tmp_path, f"""\
        criteria:
          - id: ok
            check: json_valid
          - id: bad
            check: contains_all
            values: "{template}"
        """)
    (problem,) = error.problems
    assert problem.file == "rubrics/r.yaml"
    assert problem.line == 4
    assert problem.field == "bad.values"
    assert "set/refund" in problem.message
    assert needle in problem.message


def test_value_of_wrong_shape_is_an_error(tmp_path: Path) -> None:
    error = resolve_error(tmp_path, """\
        criteria:
          - id: facts
            check: contains_all
            values: "{{ case.expected }}"
        """)
    (problem,) = error.problems
    assert (problem.line, problem.field) == (2, "facts.values")
    assert "list of strings" in problem.message


def test_templated_pattern_must_compile(tmp_path: Path) -> None:
    case = Case(id="x", prompt="p", metadata={"bad": "(open"})
    error = resolve_error(tmp_path, """\
        criteria:
          - {id: re, check: regex, pattern: "{{ case.metadata.bad }}"}
        """, case)
    assert error.problems[0].field == "re.pattern"
    assert "invalid regular expression" in error.problems[0].message


@pytest.mark.parametrize("template", [
    "{{ case.__class__.__mro__ }}",
    "{{ case.__class__ }}",
    "{{ ''.__class__.__subclasses__() }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "x {{ ''.__class__.__mro__ }}",
    "{{ case.items.__self__ }}",
    "{{ case.expected.facts.append('leak') }}",
    "{{ case.expected.facts.pop() }}",
    "{{ case.update({'id': 'other'}) }}",
])
def test_sandbox_refuses_tricks(tmp_path: Path, template: str) -> None:
    error = resolve_error(tmp_path, f"""\
        criteria:
          - id: trick
            check: equals
            value: "{template}"
          - id: facts
            check: contains_all
            values: "{{{{ case.expected.facts }}}}"
        """)
    (problem,) = error.problems
    assert problem.field == "trick.value"
    assert "template error" in problem.message
    assert CASE.expected.facts == ["30 days", "full refund"]


def test_templates_cannot_change_what_later_criteria_see() -> None:
    context = {"case": CASE.model_dump(mode="json")}
    with pytest.raises(SecurityError):
        render_value("{{ case.expected.facts.pop() }}", context)
    with pytest.raises(SecurityError):
        render_value("{{ case.expected.facts.clear() or 'x' }}", context)
    assert render_value("{{ case.expected.facts }}", context) == ["30 days", "full refund"]


def test_render_value_and_text_directly() -> None:
    context = {"case": {"n": 3, "words": ["a", "b"]}}
    assert render_value("{{ case.n }}", context) == 3
    assert render_value("  {{ case.words }}  ", context) == ["a", "b"]
    assert render_value("n={{ case.n }}", context) == "n=3"
    assert render_value(["{{ case.n }}", "k"], context) == [3, "k"]
    assert render_value(7, context) == 7
    assert render_value("no template", context) == "no template"
    with pytest.raises(TemplateError):
        render_value("{{ case.missing }}", context)
    with pytest.raises(SecurityError):
        render_value("{{ case.__class__ }}", context)
    with pytest.raises(SecurityError):
        render_text("{{ ''.__class__.__subclasses__() }}", context)
    assert render_text("{{ case.words | join(', ') }}", context) == "a, b"


def test_unknown_check_is_a_load_error(tmp_path: Path) -> None:
    error = rubric_error(tmp_path, """\
        description: demo
        criteria:
          - id: facts
            check: contains_every
            values: [a]
        """)
    (problem,) = error.problems
    assert (problem.file, problem.line, problem.field) == ("rubrics/r.yaml", 4, "criteria.0.check")
    assert "contains_every" in problem.message
    assert "contains_all" in problem.message  # the known checks are listed


def test_invalid_regex_is_a_load_error(tmp_path: Path) -> None:
    error = rubric_error(tmp_path, """\
        criteria:
          - id: short
            check: max_words
            max: 10
          - id: re
            check: regex
            pattern: "(unclosed"
        """)
    (problem,) = error.problems
    assert (problem.file, problem.line, problem.field) == ("rubrics/r.yaml", 5, "criteria.1")
    assert "invalid regular expression" in problem.message


def test_template_syntax_error_is_a_load_error_at_its_line(tmp_path: Path) -> None:
    error = rubric_error(tmp_path, """\
        criteria:
          - id: facts
            check: contains_all
            values:
              - fine
              - "{{ case.expected.facts"
          - id: re
            check: regex
            pattern: "{% if %}"
        """)
    located = [(p.line, p.field) for p in error.problems]
    assert located == [(6, "criteria.0.values"), (9, "criteria.1.pattern")]
    assert all("template error" in p.message for p in error.problems)


@pytest.mark.parametrize(("criterion", "needle"), [
    ("{id: a, check: regex}", "needs pattern"),
    ("{id: a, check: equals}", "needs value"),
    ("{id: a, check: max_words}", "needs max"),
    ("{id: a, check: contains_all}", "needs values"),
])
def test_criterion_needs_its_parameters(tmp_path: Path, criterion: str, needle: str) -> None:
    text = f"criteria:\n  - {{id: ok, check: json_valid}}\n  - {criterion}\n"
    error = rubric_error(tmp_path, text)
    (problem,) = error.problems
    assert (problem.line, problem.field) == (3, "criteria.1")
    assert needle in problem.message


def test_rubric_shape_errors(tmp_path: Path) -> None:
    assert rubric_error(tmp_path, "criteria: []\n").problems[0].field == "criteria"
    assert "mapping" in rubric_error(tmp_path, "- a\n").problems[0].message
    kind = rubric_error(tmp_path, "criteria:\n  - {id: a, check: json_valid, kind: vibes}\n")
    assert kind.problems[0].field == "criteria.0.kind"
    dup = rubric_error(tmp_path, "criteria:\n  - {id: a, check: json_valid}\n"
                                 "  - {id: a, check: json_valid}\n")
    assert (dup.problems[0].line, dup.problems[0].field) == (3, "criteria.1.id")
    assert "first at line 2" in dup.problems[0].message


def test_shipped_rubric_loads() -> None:
    repo = Path(__file__).resolve().parents[1]
    loaded = load_rubric(repo / "rubrics" / "support.yaml", "support", "rubrics/support.yaml")
    assert [(c.id, c.check, c.kind) for c in loaded.criteria] == [
        ("states-facts", "contains_all", "quality"),
        ("no-invented-policy", "contains_none", "hallucination"),
        ("concise", "max_words", "quality"),
    ]


# --------------------------------------------------------------------------- grading

CRITERIA = [
    ResolvedCriterion("facts", "contains_all", "quality",
                      {"case_sensitive": False, "max": None, "values": ["30 days"]}),
    ResolvedCriterion("no-wrong-policy", "contains_none", "hallucination",
                      {"case_sensitive": False, "max": None, "values": ["90 days"]}),
    ResolvedCriterion("short", "max_words", "quality",
                      {"case_sensitive": False, "max": 8}),
]


def record(text: str | None, ok: bool = True) -> Record:
    return Record(key="set/refund", set="set", case_id="refund", ok=ok, text=text)


def test_grade_all_pass() -> None:
    graded = grade(record("You have 30 days."), CRITERIA)
    assert graded.passed is True
    assert graded.hallucination is False
    assert graded.score == 1.0
    assert [(c.id, c.kind, c.check, c.passed) for c in graded.criteria] == [
        ("facts", "quality", "contains_all", True),
        ("no-wrong-policy", "hallucination", "contains_none", True),
        ("short", "quality", "max_words", True),
    ]


def test_grade_quality_failure_is_not_a_hallucination() -> None:
    graded = grade(record("You have a month to send it back."), CRITERIA)
    assert graded.passed is False
    assert graded.hallucination is False
    assert graded.score == pytest.approx(2 / 3)


def test_grade_hallucination() -> None:
    graded = grade(record("30 days, or 90 days for members."), CRITERIA)
    assert graded.passed is False
    assert graded.hallucination is True
    assert graded.score == pytest.approx(2 / 3)
    failed = [c.id for c in graded.criteria if not c.passed]
    assert failed == ["no-wrong-policy"]


def test_grade_everything_fails() -> None:
    graded = grade(record("Well, it is 90 days, maybe more, depending on many other things."),
                   CRITERIA)
    assert (graded.passed, graded.hallucination, graded.score) == (False, True, 0.0)


def test_failed_call_is_not_graded() -> None:
    failed = record(None, ok=False)
    failed.error_class = "timeout"
    graded = grade(failed, CRITERIA)
    assert graded.passed is None
    assert graded.hallucination is None
    assert graded.score is None
    assert graded.criteria == []
    no_text = grade(record(None, ok=True), CRITERIA)
    assert (no_text.passed, no_text.hallucination, no_text.criteria) == (None, None, [])


def test_grade_without_criteria() -> None:
    graded = grade(record("anything"), [])
    assert (graded.passed, graded.hallucination, graded.score) == (True, False, 1.0)


def test_grade_with_resolved_rubric(tmp_path: Path) -> None:
    criteria = resolve_criteria(rubric(tmp_path, """\
        criteria:
          - {id: facts, check: contains_all, values: "{{ case.expected.facts }}"}
          - {id: wrong, kind: hallucination, check: contains_none,
             values: "{{ case.expected.forbidden }}"}
        """), CASE, "set/refund")
    good = grade(record("Within 30 DAYS for a full   refund."), criteria)
    bad = grade(record("Within 90 days for a full refund."), criteria)
    assert (good.passed, good.hallucination) == (True, False)
    assert (bad.passed, bad.hallucination) == (False, True)


# --------------------------------------------------------------------------- messages


def model(system_prompt: str | None = None, template: str | None = None) -> LoadedModel:
    return LoadedModel(ModelConfig(provider="sim"), Path("models/m.yaml"), "m",
                       system_prompt, template)


def test_messages_plain_prompt() -> None:
    case = Case(id="a", prompt="How long?")
    assert build_messages(model(), case) == [{"role": "user", "content": "How long?"}]


def test_messages_with_system_prompt() -> None:
    case = Case(id="a", prompt="How long?")
    assert build_messages(model("Be brief."), case) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "How long?"},
    ]


def test_messages_default_context_wrapping() -> None:
    case = Case(id="a", prompt="How long?", context="Returns: 30 days.")
    assert build_messages(model(), case) == [
        {"role": "user", "content": "Context:\nReturns: 30 days.\n\nQuestion: How long?"}]


def test_messages_prompt_template() -> None:
    case = Case(id="a", prompt="How long?", context="30 days.", tags=["policy"],
                metadata={"lang": "en"})
    template = ("[{{ case.id }}|{{ tags | join(',') }}|{{ metadata.lang }}] "
                "{% if context %}Use: {{ context }} {% endif %}Q: {{ prompt }}")
    messages = build_messages(model("Sys.", template), case)
    assert messages == [
        {"role": "system", "content": "Sys."},
        {"role": "user", "content": "[a|policy|en] Use: 30 days. Q: How long?"},
    ]
    short = "{% if context %}Use: {{ context }} {% endif %}Q: {{ prompt }}"
    no_context = build_messages(model(None, short), Case(id="b", prompt="Why?"))
    assert no_context == [{"role": "user", "content": "Q: Why?"}]


def test_messages_multi_turn() -> None:
    case = Case(id="a", messages=[
        {"role": "user", "content": "I bought a tent."},
        {"role": "assistant", "content": "How can I help?"},
        {"role": "user", "content": "The pole broke."},
    ], context="ignored for conversations")
    assert build_messages(model("Be kind.", "T: {{ prompt }}"), case) == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "I bought a tent."},
        {"role": "assistant", "content": "How can I help?"},
        {"role": "user", "content": "The pole broke."},
    ]


def test_messages_case_system_turn_wins() -> None:
    case = Case(id="a", messages=[
        {"role": "system", "content": "Case system."},
        {"role": "user", "content": "Hi"},
    ])
    assert build_messages(model("Model system."), case) == [
        {"role": "system", "content": "Case system."},
        {"role": "user", "content": "Hi"},
    ]
