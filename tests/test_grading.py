"""The rubric language: new checks (positive and negative), normalisation, reference facts and
their documented equivalences, grounding on crafted contexts, weights and pass rules."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from evalgate.errors import ConfigError
from evalgate.grading.checks import CHECKS
from evalgate.grading.grade import grade
from evalgate.grading.rubrics import load_rubric, resolve_criteria
from evalgate.results import Record
from evalgate.spec.canaries import Case
from evalgate.spec.jsonschema_lite import check_schema, validate
from evalgate.text.grounding import lexical_support
from evalgate.text.tokens import claims, normalise_text, numbers_in, states


def run(check: str, answer: str, **params: Any) -> tuple[bool, str]:
    out = CHECKS[check].run(answer, {"case_sensitive": False, "max": None, **params})
    return out.passed, out.detail


def rubric(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "r.yaml"
    path.write_text(textwrap.dedent(text))
    return load_rubric(path, "r", "rubrics/r.yaml")


def graded(tmp_path: Path, text: str, answer: str, case: dict[str, Any] | None = None,
           output_tokens: int | None = None) -> Record:
    r = rubric(tmp_path, text)
    c = Case.model_validate(case or {"id": "c", "prompt": "q"})
    record = Record(key="s/c", set="s", case_id="c", ok=True, text=answer,
                    output_tokens=output_tokens)
    return grade(record, resolve_criteria(r, c, "s/c"), None, r.min_score)


# ------------------------------------------------------------------------ deterministic checks

SCHEMA = {"type": "object", "required": ["id", "amount"], "additionalProperties": False,
          "properties": {"id": {"type": "string", "pattern": "^A\\d+$", "minLength": 2,
                                "maxLength": 5},
                         "amount": {"type": "number", "minimum": 0, "maximum": 100},
                         "status": {"enum": ["ok", "no"]},
                         "tags": {"type": "array", "items": {"type": "integer"}}}}


def test_json_schema_accepts_a_valid_document() -> None:
    ok, detail = run("json_schema", '{"id": "A12", "amount": 49.9, "status": "ok", '
                     '"tags": [1, 2]}', schema=SCHEMA)
    assert ok, detail


@pytest.mark.parametrize(("answer", "why"), [
    ('{"id": "A12"}', "missing required property 'amount'"),
    ('{"id": "B12", "amount": 1}', "does not match pattern"),
    ('{"id": "A123456", "amount": 1}', "maxLength"),
    ('{"id": "A1", "amount": 101}', "maximum"),
    ('{"id": "A1", "amount": -1}', "minimum"),
    ('{"id": "A1", "amount": "1"}', "expected number, got string"),
    ('{"id": "A1", "amount": 1, "status": "maybe"}', "not one of"),
    ('{"id": "A1", "amount": 1, "extra": 1}', "unexpected property 'extra'"),
    ('{"id": "A1", "amount": 1, "tags": [1, true]}', "$.tags[1]: expected integer"),
    ('[1, 2]', "expected object"),
    ("not json", "not valid JSON"),
])
def test_json_schema_rejects_with_the_reason(answer: str, why: str) -> None:
    ok, detail = run("json_schema", answer, schema=SCHEMA)
    assert not ok and why in detail


def test_json_schema_integer_and_boolean_types() -> None:
    assert validate(3.0, {"type": "integer"}) == []
    assert validate(3.5, {"type": "integer"}) != []
    assert validate(True, {"type": "integer"}) != []
    assert validate(True, {"type": "boolean"}) == []
    assert validate(None, {"type": ["string", "null"]}) == []


def test_json_schema_unsupported_keyword_is_a_config_error(tmp_path: Path) -> None:
    assert check_schema({"type": "object", "oneOf": []})
    with pytest.raises(ConfigError) as exc:
        rubric(tmp_path, """\
            criteria:
              - id: s
                check: json_schema
                schema: {type: object, propertyNames: {pattern: x}}
            """)
    assert "unsupported keyword 'propertyNames'" in str(exc.value)
    assert "rubrics/r.yaml" in str(exc.value)


@pytest.mark.parametrize(("answer", "params", "expected"), [
    ("The refund is 49.90 USD.", {"value": 49.9}, True),
    ("The refund is 49.95 USD.", {"value": 49.9, "tolerance": 0.1}, True),
    ("The refund is 52 USD.", {"value": 49.9, "tolerance": 0.1}, False),
    ("About 1,050 units.", {"value": 1000, "rel_tolerance": 0.05}, True),
    ("About 1,051 units.", {"value": 1000, "rel_tolerance": 0.05}, False),
    ("You have thirty days.", {"value": 30}, True),
    ("Order 1042: refund 12 USD.", {"value": 12}, False),  # first number is 1042
    ("Order 1042: refund 12 USD.", {"value": 12, "pick": "last"}, True),
    ("Order 1042: refund 12 USD.", {"value": 12, "pick": "any"}, True),
    ("No number here.", {"value": 1}, False),
])
def test_numeric(answer: str, params: dict[str, Any], expected: bool) -> None:
    assert run("numeric", answer, **params)[0] is expected


def test_starts_with_not_regex_max_tokens() -> None:
    assert run("starts_with", "  Yes, you can.", value="yes")[0]
    assert not run("starts_with", "Well, yes.", value="yes")[0]
    assert not run("starts_with", "yes", value="Yes", case_sensitive=True)[0]
    assert run("not_regex", "Returns within 30 days.", pattern=r"as an ai")[0]
    ok, detail = run("not_regex", "As an AI model I cannot.", pattern=r"as an ai")
    assert not ok and "'As an AI'" in detail
    assert run("max_tokens", "x" * 400, max=100)[0]  # estimated 100 tokens
    assert not run("max_tokens", "x" * 404, max=100)[0]
    ok, detail = run("max_tokens", "short", max=10, output_tokens=11)
    assert not ok and "reported" in detail


def test_normalisation_options() -> None:
    fullwidth = "\uff32\uff45\uff54\uff55\uff52\uff4e\uff53"  # "Returns", full-width
    assert normalise_text(f"{fullwidth}\u00a0 \u2014  OK", ["unicode", "whitespace", "case"]) \
        == "returns - ok"
    assert normalise_text("full-refund, now!", ["punctuation", "whitespace"]) == \
        "full refund now"
    assert run("contains_all", "FULL-REFUND!", values=["full refund"],
               normalize=["case", "punctuation", "whitespace"])[0]
    assert not run("contains_all", "FULL-REFUND!", values=["full refund"])[0]
    assert run("equals", "\uff59\uff45\uff53", value="yes")[0]  # unicode NFKC is on by default
    assert not run("equals", "\uff59\uff45\uff53", value="yes", normalize=["case"])[0]


def test_combinators() -> None:
    from evalgate.grading.rubrics import ResolvedCriterion

    a = ResolvedCriterion("a", "contains_any", "quality",
                          {"case_sensitive": False, "max": None, "values": ["alpha"]})
    b = ResolvedCriterion("b", "contains_any", "quality",
                          {"case_sensitive": False, "max": None, "values": ["beta"]})
    for answer, all_, any_, one in [("alpha beta", True, True, False),
                                    ("alpha", False, True, True),
                                    ("gamma", False, False, False)]:
        assert run("all_of", answer, checks=[a, b])[0] is all_
        assert run("any_of", answer, checks=[a, b])[0] is any_
        assert run("one_of", answer, checks=[a, b])[0] is one
    assert "ok a" in run("one_of", "alpha", checks=[a, b])[1]


def test_combinator_in_a_rubric_file(tmp_path: Path) -> None:
    text = """\
        criteria:
          - id: either
            check: any_of
            checks:
              - {id: id, check: regex, pattern: "NW-\\\\d+"}
              - {id: word, check: contains_all, values: "{{ case.expected.facts }}"}
        """
    case = {"id": "c", "prompt": "q", "expected": {"facts": ["order"]}}
    assert graded(tmp_path, text, "see NW-12", case).passed
    assert graded(tmp_path, text, "the order", case).passed
    assert not graded(tmp_path, text, "nothing", case).passed


def test_judge_inside_a_combinator_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        rubric(tmp_path, """\
            criteria:
              - id: x
                check: all_of
                checks: [{id: j, check: judge, template: correctness}]
            """)
    assert "cannot be inside" in str(exc.value)


# ------------------------------------------------------------------------ reference facts

@pytest.mark.parametrize(("fact", "answer"), [
    ("30 days", "You have 30 days."),                    # exact
    ("30 days", "within a 30-day window"),               # hyphen + singular unit
    ("30 days", "within thirty days"),                   # number word
    ("30 days", "within Thirty-Day limits"),             # case + hyphen + word
    ("thirty days", "within 30 days"),                   # word in the fact, digits in answer
    ("1000 USD", "up to 1,000 USD"),                     # thousands separator
    ("1,200 points", "one thousand two hundred points"),  # number words to the thousands
    ("250 USD", "two hundred and fifty USD"),            # "and" inside a number
    ("25 USD", "twenty-five USD"),                       # hyphenated tens
    ("10 percent", "10% off"),                           # % = percent
    ("2.5 hours", "2.50 hours"),                         # numbers compared as values
    ("full refund", "a FULL\n  refund"),                 # case and whitespace
    ("full refund", "a \uff46\uff55\uff4c\uff4c refund"),                  # unicode NFKC
    ("original payment method", "the original payment-method"),  # punctuation between words
])
def test_fact_equivalences(fact: str, answer: str) -> None:
    assert states(fact, answer)


@pytest.mark.parametrize(("fact", "answer"), [
    ("30 days", "130 days"),           # a number is a value, not a substring
    ("30 days", "30 business days"),   # words must be contiguous
    ("30 days", "3 days"),
    ("30 days", "thirty-one days"),
    ("full refund", "refund in full"),  # no reordering, no synonyms
    ("2 points", "22 points"),
    ("never expire", "never expires"),  # plural folding only right after a number
    ("5 to 10 business days", "5 or 10 business days"),
])
def test_fact_non_equivalences(fact: str, answer: str) -> None:
    assert not states(fact, answer)


def test_number_words() -> None:
    assert numbers_in("one, twelve, forty-two, nine hundred, three thousand and five") == \
        [1, 12, 42, 900, 3005]
    assert numbers_in("two three") == [2, 3]  # not 5
    assert numbers_in("Visa and PayPal") == []


def test_facts_and_forbidden_read_the_case(tmp_path: Path) -> None:
    text = """\
        criteria:
          - {id: f, check: facts}
          - {id: x, check: forbidden, kind: hallucination}
        """
    case = {"id": "c", "prompt": "q",
            "expected": {"facts": ["30 days"], "forbidden": ["60 days"]}}
    good = graded(tmp_path, text, "You get a thirty-day window.", case)
    assert good.passed and not good.hallucination
    bad = graded(tmp_path, text, "You get a sixty-day window.", case)
    assert not bad.passed and bad.hallucination
    assert "missing fact(s) '30 days'" in bad.criteria[0].detail
    assert "forbidden '60 days'" in bad.criteria[1].detail


# ------------------------------------------------------------------------ grounding

CONTEXT = "Returns are accepted within 30 days of delivery for a full refund."


def test_claims_split_sentences_and_bullets() -> None:
    assert claims("Yes. Returns take 30 days! See WCAG 2.1 AA, e.g. here.\n- item one\n"
                  "2. item two") == ["Yes.", "Returns take 30 days!",
                                     "See WCAG 2.1 AA, e.g. here.", "item one", "item two"]


def test_lexical_support_bands() -> None:
    supported = lexical_support("Returns are accepted within 30 days.", CONTEXT, 0.8, 0.4)
    assert supported.status == "supported" and supported.support == 1.0
    wrong_number = lexical_support("Returns are accepted within 60 days.", CONTEXT, 0.8, 0.4)
    assert wrong_number.status == "unsupported" and "60" in wrong_number.why
    invented = lexical_support("Shipping insurance covers lost parcels.", CONTEXT, 0.8, 0.4)
    assert invented.status == "unsupported"
    partial = lexical_support("Delivery returns get a refund quickly.", CONTEXT, 0.8, 0.4)
    assert partial.status == "undecided" and 0.4 <= partial.support < 0.8


def test_grounded_names_the_unsupported_claim(tmp_path: Path) -> None:
    text = """\
        criteria:
          - {id: g, check: grounded, kind: hallucination, undecided: fail}
        """
    case = {"id": "c", "prompt": "q", "context": CONTEXT}
    good = graded(tmp_path, text, "Returns are accepted within thirty days. It is a full "
                  "refund.", case)
    assert good.passed, good.criteria[0].detail
    assert [c.status for c in good.criteria[0].claims] == ["supported", "supported"]
    bad = graded(tmp_path, text, "Returns are accepted within 30 days. Shipping insurance "
                 "covers lost parcels.", case)
    assert bad.hallucination and not bad.passed
    result = bad.criteria[0]
    assert [c.status for c in result.claims] == ["supported", "unsupported"]
    assert "Shipping insurance covers lost parcels." in result.detail
    no_context = graded(tmp_path, text, "Anything.", {"id": "c", "prompt": "q"})
    assert no_context.passed and "no context" in no_context.criteria[0].detail


def test_grounded_undecided_without_a_verdict_is_not_a_pass(tmp_path: Path) -> None:
    text = """\
        criteria:
          - {id: g, check: grounded, undecided: judge}
        """
    case = {"id": "c", "prompt": "q", "context": CONTEXT}
    record = graded(tmp_path, text, "Delivery returns get a refund quickly.", case)
    assert not record.passed
    assert record.criteria[0].claims[0].by == "judge"
    assert record.criteria[0].error is not None


def test_grounded_marks_a_failure_that_rests_only_on_judge_errors(tmp_path: Path) -> None:
    text = """\
        criteria:
          - {id: g, check: grounded, kind: hallucination, undecided: judge}
        """
    case = {"id": "c", "prompt": "q", "context": CONTEXT}
    only = graded(tmp_path, text, "Delivery returns get a refund quickly.", case)
    assert only.hallucination and only.criteria[0].passed_if_judged is True
    assert only.if_judged is not None and only.if_judged.passed
    assert not only.if_judged.hallucination
    # A number the context lacks is unsupported whatever the judge says: nothing rests on it.
    also = graded(tmp_path, text, "Returns are accepted within 45 days. Delivery "
                  "returns get a refund quickly.", case)
    assert also.hallucination and also.criteria[0].error is not None
    assert also.criteria[0].passed_if_judged is None and also.if_judged is None


# ------------------------------------------------------------------------ weights and pass rule

def test_weighted_score_and_min_score_rule(tmp_path: Path) -> None:
    text = """\
        pass_rule: {min_score: 0.7}
        criteria:
          - {id: a, check: contains_all, values: [alpha], weight: 3}
          - {id: b, check: contains_all, values: [beta], weight: 1}
          - {id: h, check: contains_none, values: [wrong], kind: hallucination, weight: 0}
        """
    only_a = graded(tmp_path, text, "alpha")
    assert only_a.score == pytest.approx(0.75) and only_a.passed
    only_b = graded(tmp_path, text, "beta")
    assert only_b.score == pytest.approx(0.25) and not only_b.passed
    hallucinated = graded(tmp_path, text, "alpha beta wrong")
    assert hallucinated.score == pytest.approx(1.0)
    assert hallucinated.hallucination and not hallucinated.passed  # never passes by score


def test_all_rule_is_the_default(tmp_path: Path) -> None:
    text = """\
        criteria:
          - {id: a, check: contains_all, values: [alpha], weight: 3}
          - {id: b, check: contains_all, values: [beta]}
        """
    record = graded(tmp_path, text, "alpha")
    assert record.score == pytest.approx(0.75) and not record.passed


@pytest.mark.parametrize(("body", "message"), [
    ("- {id: n, check: numeric}", "needs value"),
    ("- {id: n, check: numeric, value: lots}", "is not a number"),
    ("- {id: j, check: judge}", "needs 'template'"),
    ("- {id: j, check: judge, template: nonsense}", "neither a shipped template"),
    ("- {id: w, check: contains_all, values: [a], weight: -1}", "weight"),
    ("- {id: p, check: regex, pattern: a, params: {x: 1}}", "'params' is for custom checks"),
    ("- {id: g, check: grounded, supported_at: 0.3, unsupported_below: 0.5}", "must not exceed"),
    ("- {id: c, check: regex, pattern: a, checks: []}", "'checks' goes with"),
    ("- {id: u, check: contains_all, values: [a], normalize: [lower]}", "normalize"),
])
def test_bad_criteria_are_located_config_errors(tmp_path: Path, body: str,
                                                message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        rubric(tmp_path, "criteria:\n  " + body + "\n")
    assert message in str(exc.value) and "rubrics/r.yaml" in str(exc.value)
    assert ":2" in str(exc.value) or "line 2" in str(exc.value)


def test_a_bad_template_inside_a_combinator_is_located(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        rubric(tmp_path, """\
            criteria:
              - id: x
                check: any_of
                checks:
                  - {id: a, check: contains_all, values: "{{ case.expected.facts }}"}
                  - {id: b, check: contains_all, values: "{{ case.expected.facts "}
            """)
    assert "rubrics/r.yaml:6: criteria.0.checks.1.values: template error" in str(exc.value)


# ------------------------------------------------- hostile answers and schema values (review)

def test_hostile_json_answers_fail_the_criterion_never_the_run() -> None:
    deep = "[" * 5000
    assert not run("json_valid", deep)[0]
    assert not run("json_schema", deep, schema={"type": "array"})[0]
    huge = '{"n": 1' + "0" * 400 + "}"
    ok, _ = run("json_schema", huge, schema={"type": "object", "properties": {
        "n": {"type": "integer", "maximum": 5}}})
    assert not ok
    assert not run("json_valid", "NaN")[0]  # NaN and Infinity are not JSON
    assert not run("json_schema", '{"s": NaN}', schema={"type": "object"})[0]


def test_schema_values_are_checked_at_load_and_booleans_are_not_numbers() -> None:
    assert check_schema({"type": "integer", "minimum": "0"})
    assert check_schema({"type": "string", "maxLength": "3"})
    assert check_schema({"enum": 5})
    assert check_schema({"type": "object", "required": "id"})
    assert check_schema({"type": "array", "items": [{"type": "string"}]})  # list form
    assert not check_schema({"type": "array", "items": {"type": "string"}, "minItems": 1})
    assert validate(True, {"enum": [1]}) and validate(False, {"const": 0})
    assert not validate(1, {"enum": [1]}) and not validate([True], {"const": [True]})


def test_signed_and_leading_dot_numbers_are_values() -> None:
    # states(fact, answer)
    assert not states("5 degrees", "It is -5 degrees.")
    assert states("-5 degrees", "It is -5 degrees.")
    assert states("-5 degrees", "It is \u22125 degrees.")  # a typographic minus
    assert states("30 days", "a 30-day window") and states("10", "pages 5-10")
    assert states("0.5 percent", "Only .5% of orders.") and not states("5 percent", "Only .5%.")
    assert run("numeric", "It is -5 degrees.", value=-5)[0]
    assert not run("numeric", "It is -5 degrees.", value=5)[0]


def test_a_negated_claim_is_never_supported_by_word_overlap() -> None:
    ctx = "The plan includes refunds."
    assert lexical_support("The plan includes refunds.", ctx, 0.8, 0.5).status == "supported"
    for contrary in ("The plan does not include refunds.", "The plan never includes refunds.",
                     "It doesn't include refunds."):
        s = lexical_support(contrary, ctx, 0.8, 0.5)
        assert s.status == "undecided" and "negation" in s.why
    # a negation the context states too is fine
    assert lexical_support("Refunds are not given after 30 days.",
                           "Refunds are not given after 30 days of delivery.", 0.8,
                           0.5).status == "supported"
