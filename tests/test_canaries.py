"""Canary sets (YAML and JSONL) and loading a whole project with its rubrics."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from evalgate.errors import ConfigError, Problem
from evalgate.pipeline.project import Project, load_project
from evalgate.spec.canaries import (
    CanarySet,
    Case,
    case_key,
    discover_canary_files,
    load_canary_file,
    set_name_for,
)

REPO = Path(__file__).resolve().parents[1]
RUBRIC = "criteria:\n  - {id: facts, check: contains_all, values: '{{ case.expected.facts }}'}\n"


def write(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def jsonl(*rows: Any) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def load(tmp_path: Path, text: str, name: str = "set.yaml") -> CanarySet:
    path = write(tmp_path, name, text)
    return load_canary_file(path, path.stem, name)


def problems(tmp_path: Path, text: str, name: str = "set.yaml") -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, name)
    return info.value.problems


def one_problem(tmp_path: Path, text: str, name: str = "set.yaml") -> Problem:
    found = problems(tmp_path, text, name)
    assert len(found) == 1, found
    return found[0]


def project(root: Path, gate: str = "candidate: models/c.yaml\n") -> Project:
    write(root, "evalgate.yaml", gate)
    if not (root / "models" / "c.yaml").exists():
        write(root, "models/c.yaml", "provider: sim\nmodel: m\n")
    return load_project(root)


def project_error(root: Path, gate: str = "candidate: models/c.yaml\n") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        project(root, gate)
    return info.value


# --------------------------------------------------------------------------- YAML sets


def test_mapping_form_with_shared_tags_and_rubric(tmp_path: Path) -> None:
    cset = load(tmp_path, """\
        description: Support
        rubric: support
        tags: [support, policy]
        cases:
          - id: refund
            prompt: How long do I have?
            context: 30 days.
            expected: {facts: ["30 days"], forbidden: ["90 days"]}
            tags: [returns, policy]
          - id: shipping
            prompt: How fast?
        """)
    assert cset.name == "set"
    assert cset.rubric == "support"
    assert [c.id for c in cset.cases] == ["refund", "shipping"]
    refund, shipping = cset.cases
    assert refund.tags == ["support", "policy", "returns"]  # shared first, no duplicates
    assert shipping.tags == ["support", "policy"]
    assert refund.expected.facts == ["30 days"]
    assert refund.expected.forbidden == ["90 days"]
    assert refund.context == "30 days."
    assert shipping.expected.facts == []
    assert cset.lines == {"refund": 5, "shipping": 10}


def test_bare_list_form(tmp_path: Path) -> None:
    cset = load(tmp_path, """\
        - id: a
          prompt: first
        - id: b
          prompt: second
          rubric: other
        """)
    assert cset.rubric is None
    assert [(c.id, c.prompt, c.rubric) for c in cset.cases] == [
        ("a", "first", None), ("b", "second", "other")]
    assert cset.lines == {"a": 1, "b": 3}


def test_bare_list_errors_are_located(tmp_path: Path) -> None:
    found = problems(tmp_path, """\
        - id: a
          prompt: first
        - id: b
          prompt: second
          colour: red
        """)
    assert [(p.line, p.field) for p in found] == [(5, "cases.1.colour")]


def test_integer_ids_become_strings(tmp_path: Path) -> None:
    cset = load(tmp_path, "cases:\n  - {id: 7, prompt: p}\n  - {id: '08', prompt: q}\n")
    assert [c.id for c in cset.cases] == ["7", "08"]
    assert cset.lines == {"7": 2, "08": 3}


def test_boolean_id_is_rejected(tmp_path: Path) -> None:
    problem = one_problem(tmp_path, "cases:\n  - {id: true, prompt: p}\n")
    assert problem.field == "cases.0.id"


def test_empty_id_is_rejected(tmp_path: Path) -> None:
    problem = one_problem(tmp_path, "cases:\n  - {id: '', prompt: p}\n")
    assert problem.field == "cases.0.id"


def test_duplicate_ids_name_both_lines(tmp_path: Path) -> None:
    problem = one_problem(tmp_path, """\
        cases:
          - id: a
            prompt: p
          - id: b
            prompt: q
          - id: a
            prompt: r
        """)
    assert problem.line == 6
    assert problem.field == "cases.2.id"
    assert "duplicate case id 'a'" in problem.message
    assert "first at line 2" in problem.message
    assert str(problem).startswith("set.yaml:6: cases.2.id: ")


def test_duplicate_ids_in_bare_list_name_both_lines(tmp_path: Path) -> None:
    problem = one_problem(tmp_path, "- id: a\n  prompt: p\n- id: a\n  prompt: q\n")
    assert problem.line == 3
    assert "first at line 1" in problem.message


@pytest.mark.parametrize("case", [
    "{id: a}",
    "{id: a, prompt: p, messages: [{role: user, content: x}]}",
])
def test_prompt_xor_messages(tmp_path: Path, case: str) -> None:
    problem = one_problem(tmp_path, f"cases:\n  - {case}\n")
    assert (problem.line, problem.field) == (2, "cases.0")
    assert "exactly one of 'prompt' or 'messages'" in problem.message


def test_messages_need_a_user_turn(tmp_path: Path) -> None:
    problem = one_problem(tmp_path, """\
        cases:
          - id: a
            messages:
              - {role: system, content: Be brief.}
              - {role: assistant, content: Hello.}
        """)
    assert (problem.line, problem.field) == (2, "cases.0")
    assert "role 'user'" in problem.message


def test_message_role_is_checked(tmp_path: Path) -> None:
    problem = one_problem(tmp_path, """\
        cases:
          - id: a
            messages:
              - role: user
                content: hi
              - role: bot
                content: hello
        """)
    assert (problem.line, problem.field) == (6, "cases.0.messages.1.role")


def test_user_text_is_the_last_user_turn(tmp_path: Path) -> None:
    cset = load(tmp_path, """\
        cases:
          - id: a
            messages:
              - {role: user, content: I bought a tent.}
              - {role: assistant, content: "How can I help?"}
              - {role: user, content: The pole broke.}
          - {id: b, prompt: Plain question}
        """)
    assert cset.cases[0].user_text == "The pole broke."
    assert cset.cases[1].user_text == "Plain question"


def test_bad_field_in_case_is_located(tmp_path: Path) -> None:
    found = problems(tmp_path, """\
        cases:
          - id: a
            prompt: p
          - id: b
            prompt: q
            expected:
              facts: 30 days
              forbiden: [x]
        """)
    assert {(p.line, p.field) for p in found} == {
        (7, "cases.1.expected.facts"), (8, "cases.1.expected.forbiden")}


def test_case_that_is_not_a_mapping(tmp_path: Path) -> None:
    problem = one_problem(tmp_path, "cases:\n  - {id: a, prompt: p}\n  - just text\n")
    assert (problem.line, problem.field) == (3, "cases.1")


def test_all_bad_cases_reported_at_once(tmp_path: Path) -> None:
    found = problems(tmp_path, """\
        cases:
          - {id: a}
          - {id: b, prompt: ok}
          - {id: c, prompt: 3}
        """)
    assert [(p.line, p.field) for p in found] == [(2, "cases.0"), (4, "cases.2.prompt")]


@pytest.mark.parametrize("text", ["cases: []\n", "[]\n"])
def test_empty_set_is_an_error(tmp_path: Path, text: str) -> None:
    problem = one_problem(tmp_path, text)
    assert problem.file == "set.yaml"
    assert "no cases" in problem.message


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    problem = one_problem(tmp_path, "")
    assert problem.file == "set.yaml"
    assert "'cases'" in problem.message


def test_set_level_unknown_key(tmp_path: Path) -> None:
    problem = one_problem(tmp_path, "rubrik: x\ncases:\n  - {id: a, prompt: p}\n")
    assert (problem.line, problem.field) == (1, "rubrik")


def test_set_fingerprint_tracks_cases(tmp_path: Path) -> None:
    a = load(tmp_path, "- {id: a, prompt: p}\n", "one/set.yaml")
    b = load(tmp_path, "- {id: a, prompt: p}\n", "two/set.yaml")
    c = load(tmp_path, "- {id: a, prompt: changed}\n", "three/set.yaml")
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != c.fingerprint()


# --------------------------------------------------------------------------- JSONL sets


def test_jsonl_set(tmp_path: Path) -> None:
    cset = load(tmp_path, jsonl(
        {"id": "a", "prompt": "p", "tags": ["billing"], "rubric": "support"},
        "",
        {"id": 2, "prompt": "q", "expected": {"facts": ["PDF"]}},
    ), "billing.jsonl")
    assert cset.name == "billing"
    assert cset.rubric is None
    assert [c.id for c in cset.cases] == ["a", "2"]
    assert cset.cases[0].rubric == "support"
    assert cset.cases[1].expected.facts == ["PDF"]
    assert cset.lines == {"a": 1, "2": 3}  # blank lines still count


def test_jsonl_bad_json_reports_line(tmp_path: Path) -> None:
    problem = one_problem(tmp_path, jsonl(
        {"id": "a", "prompt": "p"},
        "",
        '{"id": "b", "prompt": "q"',
    ), "set.jsonl")
    assert (problem.file, problem.line) == ("set.jsonl", 3)
    assert "invalid JSON" in problem.message
    assert str(problem).startswith("set.jsonl:3: invalid JSON")


def test_jsonl_invalid_cases_report_their_lines(tmp_path: Path) -> None:
    found = problems(tmp_path, jsonl(
        {"id": "a", "prompt": "p"},
        {"id": "b"},
        {"id": "c", "prompt": "r", "extra": 1},
        {"id": "d", "prompt": "s", "expected": {"facts": "x"}},
        [1, 2],
    ), "set.jsonl")
    assert [(p.line, p.field) for p in found] == [
        (2, "(document)"), (3, "extra"), (4, "expected.facts"), (5, "")]
    assert all(p.file == "set.jsonl" for p in found)
    assert "exactly one of 'prompt' or 'messages'" in found[0].message


def test_jsonl_duplicate_ids_name_both_lines(tmp_path: Path) -> None:
    problem = one_problem(tmp_path, jsonl(
        {"id": "a", "prompt": "p"}, {"id": "b", "prompt": "q"}, {"id": "a", "prompt": "r"},
    ), "set.jsonl")
    assert (problem.line, problem.field) == (3, "id")
    assert "first at line 1" in problem.message


def test_jsonl_empty_is_an_error(tmp_path: Path) -> None:
    problem = one_problem(tmp_path, "\n\n", "set.jsonl")
    assert "no cases" in problem.message


# --------------------------------------------------------------------------- discovery


def test_nested_folders_give_slash_set_names(tmp_path: Path) -> None:
    write(tmp_path, "canaries/billing/eu.yaml", "- {id: a, prompt: p}\n")
    write(tmp_path, "canaries/billing/us.jsonl", jsonl({"id": "a", "prompt": "p"}))
    write(tmp_path, "canaries/support.yml", "- {id: a, prompt: p}\n")
    write(tmp_path, "canaries/notes.txt", "not a canary file")
    found = discover_canary_files([tmp_path / "canaries"])
    names = [set_name_for(path, root) for path, root in found]
    assert names == ["billing/eu", "billing/us", "support"]
    single = discover_canary_files([tmp_path / "canaries" / "billing" / "eu.yaml"])
    assert [set_name_for(p, r) for p, r in single] == ["eu"]
    assert case_key("billing/eu", "a") == "billing/eu/a"


# --------------------------------------------------------------------------- projects


def test_shipped_example_project_loads() -> None:
    loaded = load_project(REPO)
    assert sorted(loaded.rubrics) == ["grounded", "images", "judged", "structured", "support",
                                     "tools"]
    assert sorted(s.name for s in loaded.canary_sets) == [
        "account", "billing", "grounded", "images", "judge-injection", "structured", "support",
        "tools"]
    assert loaded.judge is not None and loaded.judge.config.sim is not None
    total = sum(len(s.cases) for s in loaded.canary_sets)
    assert len(loaded.entries) == total
    keys = {e.key for e in loaded.entries}
    assert {"support/refund-window", "billing/invoice-copy", "support/multi-turn-followup"} <= keys
    refund = loaded.entries_by_key()["support/refund-window"]
    assert refund.rubric == "support"
    facts = next(c for c in refund.criteria if c.id == "states-facts")
    assert facts.params["values"] == ["30 days"]


def test_nested_set_names_in_project(tmp_path: Path) -> None:
    write(tmp_path, "rubrics/basic.yaml", RUBRIC)
    write(tmp_path, "canaries/billing/eu.yaml", "- {id: vat, prompt: p}\n")
    write(tmp_path, "canaries/billing.yaml", "- {id: vat, prompt: p}\n")
    loaded = project(tmp_path)
    assert sorted(e.key for e in loaded.entries) == ["billing/eu/vat", "billing/vat"]


def test_single_rubric_is_the_default(tmp_path: Path) -> None:
    write(tmp_path, "rubrics/only.yaml", RUBRIC)
    write(tmp_path, "canaries/s.yaml", """\
        - id: a
          prompt: p
          expected: {facts: [x, y]}
        """)
    loaded = project(tmp_path)
    (entry,) = loaded.entries
    assert entry.rubric == "only"
    assert entry.line == 1
    assert entry.criteria[0].params["values"] == ["x", "y"]


def test_no_rubric_chosen_when_several_exist(tmp_path: Path) -> None:
    write(tmp_path, "rubrics/one.yaml", RUBRIC)
    write(tmp_path, "rubrics/two.yaml", RUBRIC)
    write(tmp_path, "canaries/s.yaml", "- {id: a, prompt: p}\n- {id: b, prompt: q}\n")
    error = project_error(tmp_path)
    assert [(p.file, p.line, p.field) for p in error.problems] == [
        ("canaries/s.yaml", 1, "rubric"), ("canaries/s.yaml", 2, "rubric")]
    assert "default_rubric" in error.problems[0].message


def test_default_rubric_and_precedence(tmp_path: Path) -> None:
    write(tmp_path, "rubrics/one.yaml", RUBRIC)
    write(tmp_path, "rubrics/two.yaml", RUBRIC)
    write(tmp_path, "rubrics/three.yaml", RUBRIC)
    write(tmp_path, "canaries/plain.yaml", """\
        - {id: a, prompt: p}
        - {id: b, prompt: p, rubric: three}
        """)
    write(tmp_path, "canaries/setlevel.yaml", """\
        rubric: one
        cases:
          - {id: c, prompt: p}
          - {id: d, prompt: p, rubric: three}
        """)
    loaded = project(tmp_path, "candidate: models/c.yaml\ndefault_rubric: two\n")
    chosen = {e.key: e.rubric for e in loaded.entries}
    assert chosen == {"plain/a": "two", "plain/b": "three",
                      "setlevel/c": "one", "setlevel/d": "three"}


def test_nested_rubric_names(tmp_path: Path) -> None:
    write(tmp_path, "rubrics/teams/support.yaml", RUBRIC)
    write(tmp_path, "rubrics/general.yaml", RUBRIC)
    write(tmp_path, "canaries/s.yaml", "rubric: teams/support\ncases:\n  - {id: a, prompt: p}\n")
    loaded = project(tmp_path)
    assert sorted(loaded.rubrics) == ["general", "teams/support"]
    assert loaded.entries[0].rubric == "teams/support"


def test_case_naming_unknown_rubric(tmp_path: Path) -> None:
    write(tmp_path, "rubrics/basic.yaml", RUBRIC)
    write(tmp_path, "canaries/s.jsonl", jsonl(
        {"id": "a", "prompt": "p"},
        {"id": "b", "prompt": "q", "rubric": "ghost"},
    ))
    error = project_error(tmp_path)
    assert len(error.problems) == 1
    problem = error.problems[0]
    assert (problem.file, problem.line, problem.field) == ("canaries/s.jsonl", 2, "rubric")
    assert "'ghost'" in problem.message
    assert "known: basic" in problem.message


def test_default_rubric_that_does_not_exist(tmp_path: Path) -> None:
    write(tmp_path, "rubrics/basic.yaml", RUBRIC)
    write(tmp_path, "canaries/s.yaml", "- {id: a, prompt: p}\n")
    error = project_error(tmp_path, "candidate: models/c.yaml\ndefault_rubric: nope\n")
    assert len(error.problems) == 1
    assert "'nope'" in error.problems[0].message


def test_problems_from_several_files_in_one_error(tmp_path: Path) -> None:
    write(tmp_path, "models/c.yaml", "provider: sim\nmodel: m\ntemprature: 1\n")
    write(tmp_path, "rubrics/good.yaml", RUBRIC)
    write(tmp_path, "rubrics/bad.yaml", "criteria:\n  - id: x\n    check: sounds_right\n")
    write(tmp_path, "canaries/dupes.yaml", "- {id: a, prompt: p}\n- {id: a, prompt: q}\n")
    write(tmp_path, "canaries/broken.jsonl", '{"id": "a", "prompt": "p"}\n{oops\n')
    write(tmp_path, "canaries/fine.yaml", "rubric: missing\ncases:\n  - {id: a, prompt: p}\n")
    error = project_error(tmp_path)
    located = {(p.file, p.line, p.field) for p in error.problems}
    assert located == {
        ("models/c.yaml", 3, "temprature"),
        ("rubrics/bad.yaml", 3, "criteria.0.check"),
        ("canaries/dupes.yaml", 2, "cases.1.id"),
        ("canaries/broken.jsonl", 2, None),
        ("canaries/fine.yaml", 3, "rubric"),
    }
    text = str(error)
    assert text.startswith("5 problems in evalgate input files:")
    for file in ("models/c.yaml:3", "rubrics/bad.yaml:3", "canaries/dupes.yaml:2",
                 "canaries/broken.jsonl:2", "canaries/fine.yaml:3"):
        assert file in text


def test_missing_canaries_and_rubrics_paths(tmp_path: Path) -> None:
    error = project_error(tmp_path, "candidate: models/c.yaml\ncanaries: cases\nrubrics: grading\n")
    messages = sorted((p.field or "", p.message) for p in error.problems)
    assert [field for field, _ in messages] == ["canaries", "rubrics"]
    assert "'cases' does not exist" in messages[0][1]
    assert "'grading' does not exist" in messages[1][1]


def test_no_canary_files(tmp_path: Path) -> None:
    write(tmp_path, "rubrics/basic.yaml", RUBRIC)
    (tmp_path / "canaries").mkdir()
    error = project_error(tmp_path)
    assert len(error.problems) == 1
    assert "no canary files" in error.problems[0].message


def test_two_files_with_one_set_name(tmp_path: Path) -> None:
    write(tmp_path, "rubrics/basic.yaml", RUBRIC)
    write(tmp_path, "canaries/s.jsonl", jsonl({"id": "a", "prompt": "p"}))
    write(tmp_path, "canaries/s.yaml", "- {id: b, prompt: q}\n")
    error = project_error(tmp_path)
    assert len(error.problems) == 1
    assert error.problems[0].file == "canaries/s.yaml"
    assert "canaries/s.jsonl" in error.problems[0].message


def test_case_model_is_strict() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Case(id="a")
    assert Case(id="a", prompt="p").user_text == "p"
