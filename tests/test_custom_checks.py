"""Custom checks (conftest hook, entry point) and the `evalgate_case` fixture, in real pytest
subprocesses against the simulator; with and without xdist."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from evalgate.grading.checks import CHECKS, CheckRegistry
from tests.conftest import make_cases, read_json, sim_model, write_project

pytest_plugins = ["pytester"]

GATE = {"gate": {"on_inconclusive": "pass", "metrics": {"pass_rate": {"min": 0.1}}}}
CONFTEST = '''
def pytest_evalgate_register_checks(registry):
    def mentions(answer, params):
        word = params["word"]
        return word in answer, f"mentions {word!r}" if word in answer else f"no {word!r}"

    def broken(answer, params):
        raise RuntimeError("boom")

    registry.add("mentions", mentions)
    registry.add("broken", broken)
'''


def custom_rubric(*extra: dict[str, Any]) -> dict[str, Any]:
    return {"criteria": [{"id": "says-days", "check": "mentions",
                          "params": {"word": "{{ case.expected.facts[0] }}"}}, *extra]}


def test_conftest_hook_registers_checks_and_a_raising_one_fails_only_its_canary(
        pytester: pytest.Pytester) -> None:
    write_project(pytester.path, model=sim_model(), cases=make_cases(3),
                  gate={**GATE, "canary_failures": "report"},
                  rubric=custom_rubric({"id": "b", "check": "broken", "kind": "hallucination"}))
    pytester.makeconftest(CONFTEST)
    result = pytester.runpytest_subprocess("--evalgate")
    result.assert_outcomes(xfailed=3, passed=1)  # the run completed; the gate item passed
    records = read_json(pytester.path / "reports" / "evalgate.json")["records"]
    says, broken = records[0]["criteria"]
    assert (says["check"], says["passed"], says["detail"]) == ("mentions", True,
                                                                "mentions '0 days'")
    assert not broken["passed"] and broken["detail"] == "check 'broken' raised RuntimeError: boom"
    assert all(r["hallucination"] for r in records)


def test_an_unknown_check_is_a_located_config_error(tmp_path: Path) -> None:
    from evalgate.errors import ConfigError
    from evalgate.pipeline.project import load_project

    write_project(tmp_path, model=sim_model(), cases=make_cases(2), rubric=custom_rubric())
    with pytest.raises(ConfigError) as exc:
        load_project(tmp_path)
    assert "rubrics/basic.yaml" in str(exc.value)
    assert "unknown check 'mentions'" in str(exc.value)


def test_entry_point_checks_are_registered(pytester: pytest.Pytester,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    site = pytester.path / "site"
    (site / "shoutcheck").mkdir(parents=True)
    (site / "shoutcheck" / "__init__.py").write_text(
        "def shouting(answer, params):\n    return answer.isupper()\n")
    dist = site / "shoutcheck-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: shoutcheck\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[evalgate.checks]\nshouting = shoutcheck:shouting\n"
                                           "broken = shoutcheck:missing\n")
    monkeypatch.setenv("PYTHONPATH", str(site))
    write_project(pytester.path, model=sim_model(), cases=make_cases(2),
                  gate={**GATE, "canary_failures": "report"},
                  rubric={"criteria": [{"id": "loud", "check": "shouting"}]})
    result = pytester.runpytest_subprocess("--evalgate")
    result.assert_outcomes(xfailed=2, passed=1)  # "Answer: 0 days." is not upper case
    record = read_json(pytester.path / "reports" / "evalgate.json")["records"][0]
    assert record["criteria"][0]["detail"] == "shouting: does not hold"
    # a plugin that does not load is named where its check is used, not a crash
    (pytester.path / "rubrics" / "basic.yaml").write_text(
        "criteria: [{id: b, check: broken}]\n")
    result = pytester.runpytest_subprocess("--evalgate")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*rubrics/basic.yaml*'broken' is from an entry point that "
                                 "failed to load (shoutcheck:missing: AttributeError*"])


def test_registry_refuses_builtin_names_and_bad_names() -> None:
    registry = CheckRegistry()
    with pytest.raises(ValueError):
        registry.add("regex", lambda a, p: True)
    with pytest.raises(ValueError):
        registry.add("no spaces", lambda a, p: True)
    registry.add("tmp_custom_check", lambda a, p: "junk")
    try:
        outcome = CHECKS["tmp_custom_check"].run("x", {})
        assert not outcome.passed and "returned str" in outcome.detail
    finally:
        del CHECKS["tmp_custom_check"]


CASE_TESTS = textwrap.dedent('''
    import pytest

    @pytest.mark.evalgate_cases(tags=["even"])
    def test_even_answers_state_their_days(evalgate_case):
        n = int(evalgate_case.case.id[1:])
        assert f"{n} days" in evalgate_case.text
        assert len(evalgate_case.records) == 2 and evalgate_case.record.passed

    @pytest.mark.evalgate_cases(keys=["set/c1"])
    def test_a_wrong_expectation_fails(evalgate_case):
        assert "1001 days" in evalgate_case.text
''')


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]])
def test_evalgate_case_fixture_asserts_on_the_runs_answers(pytester: pytest.Pytester,
                                                           xdist: list[str]) -> None:
    write_project(pytester.path, model=sim_model(), cases=make_cases(4),
                  gate={**GATE, "samples": 2})
    pytester.makepyfile(test_answers=CASE_TESTS)
    result = pytester.runpytest_subprocess("--evalgate", "test_answers.py", "-v", *xdist)
    def outcome(test: str) -> str:
        line = next(x for x in result.outlines if test in x and ("PASSED" in x or "FAILED" in x))
        return "PASSED" if "PASSED" in line else "FAILED"

    assert outcome("test_even_answers_state_their_days[set/c0]") == "PASSED"
    assert outcome("test_even_answers_state_their_days[set/c2]") == "PASSED"
    assert outcome("test_a_wrong_expectation_fails[set/c1]") == "FAILED"
    outcomes = result.parseoutcomes()
    assert outcomes["passed"] == 2 + 8 + 1 and outcomes["failed"] == 1
    # every call made once, by the controller
    assert read_json(pytester.path / "reports" / "evalgate.json")["counts"]["calls"] == 8


def test_evalgate_case_only_selected_canaries_are_called(pytester: pytest.Pytester) -> None:
    """`-k` selecting only the fixture test still makes the calls it needs."""
    write_project(pytester.path, model=sim_model(), cases=make_cases(4),
                  gate={**GATE, "samples": 2})
    pytester.makepyfile(test_answers=CASE_TESTS)
    result = pytester.runpytest_subprocess("--evalgate", "test_answers.py", "-k",
                                           "even_answers")
    result.assert_outcomes(passed=2)
    calls = read_json(pytester.path / "reports" / "evalgate.json")["counts"]["calls"]
    assert calls == 4  # c0 and c2, two samples each


def test_evalgate_case_without_evalgate_skips(pytester: pytest.Pytester,
                                              tmp_path: Path) -> None:
    pytester.makepyfile(test_answers=CASE_TESTS)
    result = pytester.runpytest_subprocess("test_answers.py")
    result.assert_outcomes(skipped=2)


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]])
def test_evalgate_case_tests_follow_the_shard(pytester: pytest.Pytester,
                                              xdist: list[str]) -> None:
    """With --evalgate-shard, a test on another shard's canary is deselected like that canary:
    otherwise every shard would call it, and merged shards would hold it twice."""
    from evalgate.plugin.session import shard_of

    write_project(pytester.path, model=sim_model(), cases=make_cases(8),
                  gate={**GATE, "samples": 2})
    pytester.makepyfile(test_answers=CASE_TESTS)
    result = pytester.runpytest_subprocess("--evalgate", "--evalgate-shard=1/2", "-v",
                                           "test_answers.py", *xdist)
    mine = {f"set/c{i}" for i in range(8) if shard_of(f"set/c{i}", 2) == 1}
    assert 0 < len(mine) < 8
    data = read_json(pytester.path / "reports" / "evalgate.json")
    assert {r["key"] for r in data["records"]} == mine  # no call outside the shard
    ran = {line.split("test_answers.py::", 1)[1].split("[", 1)[1].split("]", 1)[0]
           for line in result.outlines
           if "test_answers.py::" in line and ("PASSED" in line or "FAILED" in line)}
    even_here = {k for k in mine if int(k.removeprefix("set/c")) % 2 == 0}
    assert ran == even_here | ({"set/c1"} & mine)  # the case tests on this shard, all run
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == \
        2 * len(mine) + len(ran) + len(data["verdicts"])
