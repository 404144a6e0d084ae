"""The pytest plugin end to end, in real pytest subprocesses (pytester) against the simulator."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from evalgate.sim import SimServer
from tests.conftest import make_cases, read_json, sim_model, write_project

pytest_plugins = ["pytester"]

# Wide enough for a handful of canaries to decide (one-sided Wilson bounds at n=2: 0.43-1).
GOOD_GATE = {"gate": {"metrics": {"pass_rate": {"min": 0.4},
                                  "hallucination_rate": {"max": 0.6}}}}


def external_model(server: SimServer, **profile: Any) -> dict[str, Any]:
    """A model config pointing at a simulator this test process runs (to count its calls)."""
    server.add_profile("ext", {"latency_ms": 1, **profile})
    return {"provider": "openai", "base_url": f"{server.base_url}/v1", "model": "ext",
            "timeout_s": 5, "max_retries": 1}


def result_json(pytester: pytest.Pytester) -> Any:
    return read_json(pytester.path / "reports" / "evalgate.json")


def test_one_item_per_canary_sample_and_one_per_metric(pytester: pytest.Pytester) -> None:
    write_project(pytester.path, model=sim_model(), cases=make_cases(2),
                  gate={"samples": 2, **GOOD_GATE})
    result = pytester.runpytest_subprocess("--evalgate", "--collect-only", "-q")
    ids = [line for line in result.outlines if "::" in line]
    assert ids == ["canaries/set.yaml::c0[0]", "canaries/set.yaml::c0[1]",
                   "canaries/set.yaml::c1[0]", "canaries/set.yaml::c1[1]",
                   "evalgate::gate[pass_rate]", "evalgate::gate[hallucination_rate]"]
    assert not (pytester.path / "reports").exists(), "--collect-only must not call the model"


def test_passing_run_exits_0_and_writes_the_result(pytester: pytest.Pytester) -> None:
    write_project(pytester.path, model=sim_model(), cases=make_cases(5), gate=GOOD_GATE)
    result = pytester.runpytest_subprocess("--evalgate")
    result.assert_outcomes(passed=7)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*evalgate gate: PASS*", "pass_rate *100.0%*min 40.0%*PASS",
                                 "*pass_rate: candidate 100.0% (95% lower bound *) against a "
                                 "floor of 40.0%: PASS"])
    data = result_json(pytester)
    assert data["schema_version"] == 2 and data["verdict"] == "PASS"
    assert len(data["records"]) == 5 and all(r["passed"] for r in data["records"])
    assert data["counts"]["calls"] == 5 and data["metrics"]["pass_rate"] == 1.0


def test_gate_item_fails_on_a_slow_profile(pytester: pytest.Pytester) -> None:
    write_project(pytester.path, model=sim_model(latency_ms=120), cases=make_cases(60),
                  gate={"concurrency": 32, "gate": {"metrics": {"latency_p95_ms": {"max": 50},
                                                                "pass_rate": {"min": 0.5}}}})
    result = pytester.runpytest_subprocess("--evalgate")
    result.assert_outcomes(passed=61, failed=1)
    assert result.ret == 1
    out = result.stdout.str()
    assert "FAILED evalgate::gate[latency_p95_ms]" in out
    result.stdout.re_match_lines([
        r"latency_p95_ms: candidate \d+ ms \(95% lower bound \d+ ms\) against an SLO "
        r"of 50\.0 ms: FAIL", r"  test: .*order-statistic quantile test.*"])
    data = result_json(pytester)
    assert data["verdict"] == "FAIL" and data["metrics"]["latency_p95_ms"] >= 120


def test_hallucinating_canary_fails_with_its_reason(pytester: pytest.Pytester) -> None:
    write_project(pytester.path, model=sim_model(hallucination_rate=1.0), cases=make_cases(2))
    result = pytester.runpytest_subprocess("--evalgate")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*hallucination: *no-forbidden (contains_none): states "
                                 "forbidden '1000 days'*", "*answer: *1000 days*"])


def test_canary_failures_can_be_reported_not_blocking(pytester: pytest.Pytester) -> None:
    write_project(pytester.path, model=sim_model(hallucination_rate=1.0), cases=make_cases(3),
                  gate={"canary_failures": "report",
                        "gate": {"metrics": {"tokens_out_mean": {"max": 1000}}}})
    result = pytester.runpytest_subprocess("--evalgate")
    result.assert_outcomes(passed=1, xfailed=3)
    assert result.ret == 0


def test_a_failed_call_fails_its_canary_and_the_run_goes_on(pytester: pytest.Pytester) -> None:
    model = sim_model(error_500_rate=1.0)
    model["max_retries"] = 0
    write_project(pytester.path, model=model, cases=make_cases(3),
                  gate={"gate": {"metrics": {"error_rate": {"max": 0.01},
                                             "pass_rate": {"min": 0.9}}}})
    result = pytester.runpytest_subprocess("--evalgate")
    result.assert_outcomes(failed=5)
    result.stdout.fnmatch_lines(["*call failed after 1 attempt(s): server_error: HTTP 500*",
                                 "error_rate: candidate 100.0% (95% lower bound *) "
                                 "against a cap of 1.0%: FAIL",
                                 "INCONCLUSIVE: cannot decide pass_rate: no canary has data*"])
    records = result_json(pytester)["records"]
    assert [r["error_class"] for r in records] == ["server_error"] * 3


@pytest.mark.parametrize(("canary_text", "expected"), [
    ("rubric: basic\ncases:\n  - id: a\n    prompt: [unclosed\n",
     "canaries/set.yaml:5: invalid YAML: *expected ',' or ']'* (while parsing a flow sequence "
     "that starts at line 4)"),
    ("rubric: basic\ncases:\n  - id: a\n    prompt: hi\n    colour: red\n",
     "canaries/set.yaml:5: cases.0.colour: unknown field"),
    ("rubric: basic\ncases:\n  - id: a\n    prompt: hi\n  - id: a\n    prompt: ho\n",
     "canaries/set.yaml:5: cases.1.id: duplicate case id 'a' (first at line 3)"),
])
def test_broken_canary_file_is_a_usage_error(pytester: pytest.Pytester, canary_text: str,
                                             expected: str) -> None:
    write_project(pytester.path, model=sim_model(), canary_text=canary_text)
    result = pytester.runpytest_subprocess("--evalgate")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: evalgate: {expected}*"])
    assert "Traceback" not in result.stderr.str()


def test_broken_gate_config_names_file_line_and_field(pytester: pytest.Pytester) -> None:
    write_project(pytester.path, model=sim_model(),
                  gate={"gate": {"metrics": {"latency_p95_ms": {"max": "fast"}}}})
    result = pytester.runpytest_subprocess("--evalgate")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*evalgate.yaml:8: gate.metrics.latency_p95_ms.max: Input "
                                 "should be a valid number*'fast'*"])


def test_missing_api_key_is_a_usage_error(pytester: pytest.Pytester,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVALGATE_NO_SUCH_KEY", raising=False)
    write_project(pytester.path, model={"provider": "openai", "model": "gpt-x",
                                        "api_key_env": "EVALGATE_NO_SUCH_KEY"})
    result = pytester.runpytest_subprocess("--evalgate")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*models/candidate.yaml: api_key_env: environment variable "
                                 "EVALGATE_NO_SUCH_KEY is not set*"])


def test_pyproject_table_is_a_gate_config(pytester: pytest.Pytester) -> None:
    write_project(pytester.path, model=sim_model(), cases=make_cases(2))
    (pytester.path / "evalgate.yaml").unlink()
    pytester.makepyprojecttoml('[tool.evalgate]\ncandidate = "models/candidate.yaml"\n'
                               '[tool.evalgate.gate.metrics]\ntokens_out_mean = {max = 100}\n')
    result = pytester.runpytest_subprocess("--evalgate")
    result.assert_outcomes(passed=3)


def test_without_the_flag_the_plugin_is_inert(pytester: pytest.Pytester) -> None:
    write_project(pytester.path, model=sim_model(), cases=make_cases(2))
    pytester.makeconftest(
        "import sys\n"
        "def pytest_collection_finish(session):\n"
        "    heavy = [m for m in ('httpx', 'scipy', 'pydantic', 'jinja2', 'yaml',\n"
        "                         'evalgate.pipeline.run') if m in sys.modules]\n"
        "    assert not heavy, heavy\n")
    pytester.makepyfile(test_plain="def test_ok():\n    assert True\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert not (pytester.path / "reports").exists()


def answers(data: Any) -> dict[str, tuple[Any, ...]]:
    return {f"{r['key']}#{r['sample']}": (r["text"], r["passed"], r["hallucination"])
            for r in data["records"]}


def test_xdist_gives_the_same_results_with_each_call_made_once(
        pytester: pytest.Pytester, sim_server: SimServer) -> None:
    model = external_model(sim_server, hallucination_rate=0.4, seed=5)
    write_project(pytester.path, model=model, cases=make_cases(12),
                  gate={"samples": 2, **GOOD_GATE})
    serial = pytester.runpytest_subprocess("--evalgate")
    serial_data = result_json(pytester)
    calls_serial = sim_server.stats.total
    sim_server.stats.reset()
    sim_server.reset_attempts()
    parallel = pytester.runpytest_subprocess("--evalgate", "-n", "2")
    parallel_data = result_json(pytester)
    assert calls_serial == 24 and sim_server.stats.total == 24
    assert answers(serial_data) == answers(parallel_data)
    for key in ("hallucination_rate", "pass_rate", "error_rate"):
        assert serial_data["metrics"][key] == parallel_data["metrics"][key]
    assert serial.parseoutcomes() == parallel.parseoutcomes()
    assert serial.ret == parallel.ret == 1  # some canaries hallucinate: the run fails alike


# A worker's conftest: before its collection is reported (modifyitems runs before xdist sends
# it), wait (bounded) for the controller's result file and say whether it appeared. Without
# the early start the controller makes its calls only after a worker reported its collection,
# which this hook holds back: the file never appears.
WAIT_FOR_RESULT = """
import json, os, time
import sys
from pathlib import Path

def pytest_collection_modifyitems(config, items):
    inp = getattr(config, "workerinput", None)
    if inp is None:
        return
    path, deadline = Path(inp["evalgate_result"]), time.monotonic() + 60
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    Path(f"seen-{inp['workerid']}.json").write_text(json.dumps({"ready": path.exists()}))
"""


def test_xdist_controller_calls_while_the_workers_start(
        pytester: pytest.Pytester, sim_server: SimServer) -> None:
    write_project(pytester.path, model=external_model(sim_server), cases=make_cases(6),
                  gate=GOOD_GATE)
    pytester.makeconftest(WAIT_FOR_RESULT)
    result = pytester.runpytest_subprocess("--evalgate", "-n", "2")
    seen = [read_json(p) for p in sorted(pytester.path.glob("seen-gw*.json"))]
    assert seen == [{"ready": True}, {"ready": True}]  # the calls were done before collection
    assert sim_server.stats.total == 6  # once each
    assert result.parseoutcomes()["passed"] == 6 + len(result_json(pytester)["verdicts"])


def test_xdist_a_conftest_deselection_is_decided_again_on_the_selection(
        pytester: pytest.Pytester, sim_server: SimServer) -> None:
    write_project(pytester.path, model=external_model(sim_server), cases=make_cases(6),
                  gate=GOOD_GATE)
    pytester.makeconftest("""
def pytest_collection_modifyitems(config, items):
    drop = [i for i in items if i.name == "c3"]
    items[:] = [i for i in items if i.name != "c3"]
    config.hook.pytest_deselected(items=drop)
""")
    result = pytester.runpytest_subprocess("--evalgate", "-n", "2")
    data = result_json(pytester)
    assert sorted(r["key"] for r in data["records"]) == [f"set/c{i}" for i in range(6) if i != 3]
    assert "the workers selected 5 of the 6 canary calls" in data["warnings"][0]
    assert sim_server.stats.total == 6 + 5  # the first round was wasted, and said so
    # Every report is the second round's (the first round's were finished before it began).
    xml = (pytester.path / "reports" / "evalgate.xml").read_text()
    assert xml.count('classname="set"') == 5 and 'name="c3"' not in xml
    assert "the workers selected 5 of the 6" in \
        (pytester.path / "reports" / "evalgate.md").read_text()
    assert result.ret == 0


@pytest.mark.parametrize(("args", "calls"), [
    (["-k", "even"], 3),
    (["-m", "odd"], 3),
    (["canaries/set.yaml::c1"], 1),
    (["-n", "2", "-k", "c2 or c4"], 2),
])
def test_selection_limits_which_canaries_are_called(
        pytester: pytest.Pytester, sim_server: SimServer, args: list[str], calls: int) -> None:
    write_project(pytester.path, model=external_model(sim_server), cases=make_cases(6),
                  gate=GOOD_GATE)
    result = pytester.runpytest_subprocess("--evalgate", *args)
    assert sim_server.stats.total == calls
    assert len(result_json(pytester)["records"]) == calls
    assert result.parseoutcomes()["passed"] >= calls


def test_api_key_never_reaches_output_or_files(pytester: pytest.Pytester, sim_server: SimServer,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-test-3f9c2a7d41b84e0aa6d2"
    monkeypatch.setenv("EVALGATE_TEST_API_KEY", secret)
    model = external_model(sim_server, error_500_rate=0.5)
    model["api_key_env"] = "EVALGATE_TEST_API_KEY"
    write_project(pytester.path, model=model, cases=make_cases(6), gate=GOOD_GATE)
    # The response cache is on so its file is written and searched too; the journal (removed
    # when a run finishes) is searched after a real SIGKILL in test_reliability.py.
    result = pytester.runpytest_subprocess("--evalgate", "-vv", "--evalgate-cache=on")
    assert sim_server.stats.total >= 6
    assert secret not in result.stdout.str() + result.stderr.str()
    written = [p for p in pytester.path.rglob("*") if p.is_file()]
    assert any(p.name == "evalgate.json" for p in written)
    assert any(p.name == "responses.sqlite3" and p.stat().st_size > 0 for p in written)
    for path in written:
        assert secret.encode() not in path.read_bytes(), path


@pytest.mark.parametrize(("model", "expected"), [
    ({"provider": "sim", "model": "m", "prompt_template": "Q: {{ prompt }} ({{ cutomer }})"},
     "candidate.yaml: prompt_template: prompt_template fails for case set/c0: 'cutomer' is "
     "undefined"),
    ({"provider": "callable", "callable": "no_such_module_xyz:answer"},
     "models/candidate.yaml: callable: cannot import 'no_such_module_xyz:answer'"),
    ({"provider": "telepathy", "model": "m"},
     "models/candidate.yaml:1: provider: Input should be 'openai', 'anthropic', 'http', "
     "'callable' or 'sim'"),
])
def test_broken_model_config_fails_before_any_call(pytester: pytest.Pytester,
                                                   model: dict[str, Any], expected: str) -> None:
    write_project(pytester.path, model=model, cases=make_cases(2))
    result = pytester.runpytest_subprocess("--evalgate")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert expected in result.stderr.str()
    assert not (pytester.path / "reports").exists()


def test_a_previous_result_is_never_reused(pytester: pytest.Pytester) -> None:
    """Deselecting every canary must not let the gate pass on an earlier run's result file."""
    # 5 canaries: 2 of 2 is no proof of a 40% floor under the exact bound (issue 17)
    write_project(pytester.path, model=sim_model(), cases=make_cases(5), gate=GOOD_GATE)
    assert pytester.runpytest_subprocess("--evalgate").ret == 0
    first = result_json(pytester)
    result = pytester.runpytest_subprocess("--evalgate", "-n", "2", "-k",
                                           "pass_rate or hallucination_rate")
    result.assert_outcomes(failed=2)
    assert "INCONCLUSIVE: cannot decide pass_rate: no canary has data" in result.stdout.str()
    data = result_json(pytester)
    assert data["run_id"] != first["run_id"]
    assert data["records"] == [] and data["verdict"] == "INCONCLUSIVE"


def junit_cases(path: Path) -> list[tuple[str, str, str]]:
    """(classname, name, outcome) of every testcase, in document order."""
    import xml.etree.ElementTree as ET

    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome = next((child.tag for child in case), "passed")
        cases.append((case.get("classname", ""), case.get("name", ""), outcome))
    return cases


def test_every_run_writes_all_reports_alike_with_and_without_xdist(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    import xmlschema

    from tests.test_report_junit import XSD

    # 7 of 10 passing is no proof of a 40% floor under the exact bound (issue 17): 30%
    gate = {"gate": {"metrics": {"pass_rate": {"min": 0.3}, "hallucination_rate": {"max": 0.7}}}}
    write_project(pytester.path, model=sim_model(hallucination_rate=0.3, seed=9),
                  cases=make_cases(10), gate=gate)
    summary = pytester.path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    pytester.runpytest_subprocess("--evalgate")
    reports = pytester.path / "reports"
    assert {p.name for p in reports.iterdir()} >= {"evalgate.json", "evalgate.html",
                                                    "evalgate.xml", "evalgate.md"}
    serial = junit_cases(reports / "evalgate.xml")
    first_md = (reports / "evalgate.md").read_text()
    assert summary.read_text() == first_md
    pytester.runpytest_subprocess("--evalgate", "-n", "2")
    assert junit_cases(reports / "evalgate.xml") == serial
    assert len(serial) == 12 and ("evalgate", "gate[pass_rate]", "passed") in serial
    assert any(outcome == "failure" for _, _, outcome in serial)  # hallucinating canaries
    xmlschema.XMLSchema(str(XSD)).validate(str(reports / "evalgate.xml"))
    # appended once per run, never overwritten
    assert summary.read_text() == first_md + (reports / "evalgate.md").read_text()


def test_the_run_stays_frozen_to_the_end_and_the_next_session_thaws_it(
        pytester: pytest.Pytester, sim_server: SimServer) -> None:
    """The gate freezes its run's objects for a cheap exit; a process that runs pytest.main()
    again gets them back when the next evalgate session starts (they could never be collected
    otherwise)."""
    write_project(pytester.path, model=external_model(sim_server), cases=make_cases(4),
                  gate=GOOD_GATE)
    pytester.makeconftest("""
import gc

def pytest_configure(config):
    with open("frozen-at-configure.txt", "a") as out:
        out.write(f"{gc.get_freeze_count()}\\n")
""")
    script = pytester.path / "twice.py"
    script.write_text(
        "import gc, pytest\n"
        "args = ['--evalgate', '-q', '-p', 'no:cacheprovider']\n"
        "first = pytest.main(args)\n"
        "between = gc.get_freeze_count()\n"
        "second = pytest.main(args)\n"
        "print('codes', int(first), int(second), 'frozen between', between > 0)\n")
    result = pytester.run(sys.executable, str(script))
    assert "codes 0 0 frozen between True" in result.stdout.str(), result.stdout.str()
    at_configure = (pytester.path / "frozen-at-configure.txt").read_text().split()
    assert at_configure == ["0", "0"]  # the second session started with nothing frozen
    assert sim_server.stats.total == 8


def test_a_hostile_answer_cannot_drive_the_terminal_or_the_ci_runner(
        pytester: pytest.Pytester) -> None:
    """The failure text shows a model's answer, but on one line with control characters
    escaped: no ANSI sequence reaches the terminal and no answer line starts a GitHub
    Actions workflow command."""
    hostile = ("Returns take \x1b[2J\x1b]0;owned\x07 ninety days.\n::error::injected\r\n"
               "::add-mask::x \u202eevil\u202c")
    case = {"id": "hostile", "prompt": "How many days do I have to return an item?",
            "expected": {"facts": ["30 days"], "forbidden": ["90 days"]},
            "metadata": {"sim_answer": hostile}}
    write_project(pytester.path, model=sim_model(), cases=[case], gate=GOOD_GATE)
    result = pytester.runpytest_subprocess("--evalgate")
    out = result.stdout.str()
    assert "answer: Returns take \\u001b[2J\\u001b]0;owned\\u0007 ninety days.\\n::error::" \
        "injected\\r\\n::add-mask::x \\u202eevil\\u202c" in out
    for bad in ("\x1b", "\x07", "\r", "\u202e"):
        assert bad not in out
    assert not [line for line in out.splitlines() if line.lstrip().startswith("::")]
    assert result.ret == 1  # the canary fails: it never says 30 days
