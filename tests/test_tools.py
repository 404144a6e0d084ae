"""Tool-call canaries over real HTTP: the simulator answers with the expected call (or, at
`tool_error_rate`, a hallucinated one), the providers send the tools in each API's shape, and
the tool checks grade the calls."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from anthropic.types import MessageParam, ToolParam
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam
from pydantic import TypeAdapter

from evalgate.errors import ConfigError
from evalgate.pipeline.project import load_project
from evalgate.pipeline.run import run_project
from evalgate.results import Record
from evalgate.sim import SimServer
from evalgate.sim.launch import sim_cases
from tests.conftest import sim_model, write_project
from tests.wire_server import forward_to, wire_server

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "required": ["city"], "properties": {
        "city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1}}}}}
REFUND = {"type": "function", "function": {
    "name": "refund_order", "parameters": {"type": "object", "required": ["order_id"],
                                           "properties": {"order_id": {"type": "string"},
                                                          "amount": {"type": "number"}}}}}
CASES: list[dict[str, Any]] = [
    {"id": "weather-exact", "prompt": "What is the weather in Paris, in celsius?",
     "expected": {"tool_call": {"name": "get_weather",
                                "arguments": {"city": "Paris", "unit": "celsius"}}}},
    {"id": "refund-checks", "prompt": "Refund order NW-1042, 49.90 USD.",
     "expected": {"tool_call": {"name": "refund_order", "argument_checks": {
         "order_id": {"regex": "^NW-\\d{4}$", "equals": "NW-1042"},
         "amount": {"numeric": 49.9, "tolerance": 0.01}}}}},
    {"id": "weather-schema", "prompt": "Weather in Oslo for the next 3 days?",
     "expected": {"tool_call": {"name": "get_weather", "arguments": {"city": "Oslo", "days": 3},
                                "arguments_schema": {"type": "object", "required": ["days"],
                                                     "properties": {"days": {"minimum": 2}}}}}},
    {"id": "multi-step", "messages": [
        {"role": "user", "content": "Refund order NW-7 after checking the weather in Rome."},
        {"role": "assistant", "tool_calls": [{"name": "get_weather",
                                              "arguments": {"city": "Rome"}}]},
        {"role": "tool", "name": "get_weather", "content": "{\"temp\": 21}"}],
     "expected": {"tool_sequence": ["get_weather", "refund_order"],
                  "tool_call": {"name": "refund_order", "arguments": {"order_id": "NW-7"}}}},
    {"id": "no-tool", "prompt": "Say hello.", "expected": {"reference": "Hello there."}},
]
RUBRIC = {"criteria": [
    {"id": "called", "check": "tool_called"},
    {"id": "valid", "kind": "hallucination", "check": "tool_args_valid"},
    {"id": "args", "check": "tool_args_match"},
    {"id": "none", "check": "no_tool_call"},
    {"id": "order", "check": "tool_sequence"},
]}


def project_at(root: Path, model: dict[str, Any], cases: list[dict[str, Any]] | None = None
               ) -> Path:
    write_project(root, model=model, rubric=RUBRIC, canary_text=yaml.safe_dump(
        {"rubric": "basic", "tools": [WEATHER, REFUND], "cases": cases or CASES}))
    return root


def by_case(records: list[Record]) -> dict[str, Record]:
    return {r.case_id: r for r in records if r.config == "candidate"}


def test_tool_canaries_pass_through_the_simulator(tmp_path: Path) -> None:
    result = run_project(load_project(project_at(tmp_path, sim_model())))
    records = by_case(result.records)
    assert all(r.passed for r in records.values()), [
        (r.case_id, [c.detail for c in r.criteria if not c.passed]) for r in records.values()]
    weather = records["weather-exact"]
    assert [(t.name, t.arguments) for t in weather.tool_calls] == [
        ("get_weather", {"city": "Paris", "unit": "celsius"})]
    assert weather.expected_tool_call is not None
    assert weather.expected_tool_call.name == "get_weather"
    assert records["refund-checks"].tool_calls[0].arguments == {"order_id": "NW-1042",
                                                                "amount": 49.9}
    assert records["multi-step"].tool_calls[0].name == "refund_order"
    assert records["no-tool"].tool_calls == [] and records["no-tool"].text == "Hello there."


def test_wrong_calls_fail_and_hallucinate(tmp_path: Path) -> None:
    result = run_project(load_project(project_at(tmp_path, sim_model(tool_error_rate=1.0))))
    records = by_case(result.records)
    tool_cases = [r for k, r in records.items() if k != "no-tool"]
    assert tool_cases and all(not r.passed and r.hallucination for r in tool_cases)
    details = " | ".join(c.detail for r in tool_cases for c in r.criteria if c.id == "valid")
    assert "was not offered" in details or "invents argument" in details
    assert records["no-tool"].passed and not records["no-tool"].hallucination


def test_arguments_that_differ_fail_the_match(tmp_path: Path) -> None:
    cases = [{"id": "c", "prompt": "Weather in Paris?", "expected": {"tool_call": {
        "name": "get_weather", "arguments": {"city": "Paris", "days": 2}}}}]
    root = project_at(tmp_path, sim_model(), cases)
    project = load_project(root)
    # the simulator is taught other arguments than the canary expects (a wrong model)
    case = project.entries[0].case
    assert case.expected.tool_call is not None
    case.expected.tool_call.arguments = {"city": "Lyon", "days": 2}
    [record] = run_project(project).records
    case.expected.tool_call.arguments = {"city": "Paris", "days": 2}
    from evalgate.grading.grade import grade
    from evalgate.grading.rubrics import resolve_criteria

    entry = project.entries[0]
    grade(record, resolve_criteria(project.rubrics["basic"], entry.case, entry.key))
    args = next(c for c in record.criteria if c.id == "args")
    assert not args.passed and "city" in args.detail and "Paris" in args.detail
    assert next(c for c in record.criteria if c.id == "valid").passed



@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_tools_reach_the_server_in_each_api_shape(tmp_path: Path, provider: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALGATE_TEST_KEY", "k")
    project = load_project(project_at(tmp_path, {"provider": "sim", "model": "m"}))
    with SimServer(cases=sim_cases(project.entries)) as sim:
        sim.add_profile("m", {"latency_ms": 0})
        with wire_server(forward_to(sim.base_url)) as wire:
            model = {"provider": provider, "model": "m", "base_url": f"{wire.base_url}/v1",
                     "api_key_env": "EVALGATE_TEST_KEY", "timeout_s": 5}
            (tmp_path / "models" / "candidate.yaml").write_text(yaml.safe_dump(model))
            result = run_project(load_project(tmp_path))
            requests = [body for _, body in wire.requests]
    assert all(r.passed for r in result.records), [
        (r.case_id, r.error_message, [c.detail for c in r.criteria if not c.passed])
        for r in result.records if not r.passed]
    multi = next(b for b in requests if len(b["messages"]) > 1)
    if provider == "openai":
        tools = TypeAdapter(list[ChatCompletionToolParam]).validate_python(multi["tools"])
        assert tools[0]["function"]["name"] == "get_weather"
        TypeAdapter(list[ChatCompletionMessageParam]).validate_python(multi["messages"])
        assert multi["messages"][1]["tool_calls"][0]["function"]["name"] == "get_weather"
        assert multi["messages"][2] == {"role": "tool", "tool_call_id": "call_1_0",
                                        "content": "{\"temp\": 21}"}
    else:
        tools_a = TypeAdapter(list[ToolParam]).validate_python(multi["tools"])
        assert tools_a[1]["name"] == "refund_order" and "input_schema" in tools_a[1]
        TypeAdapter(list[MessageParam]).validate_python(multi["messages"])
        assert multi["messages"][1]["content"][0]["type"] == "tool_use"
        assert multi["messages"][2]["content"][0] == {
            "type": "tool_result", "tool_use_id": "call_1_0", "content": "{\"temp\": 21}"}


def _problems(tmp_path: Path, cases: list[dict[str, Any]],
              tools: list[dict[str, Any]] | None = None) -> str:
    write_project(tmp_path, model=sim_model(), rubric=RUBRIC, canary_text=yaml.safe_dump(
        {"rubric": "basic", "tools": tools or [WEATHER], "cases": cases}))
    with pytest.raises(ConfigError) as err:
        load_project(tmp_path)
    return str(err.value)


def test_an_invalid_tool_schema_names_file_line_and_field(tmp_path: Path) -> None:
    bad = {"type": "function", "function": {"name": "t", "parameters": {
        "type": "object", "properties": {"x": {"type": "strin"}}}}}
    text = _problems(tmp_path, [{"id": "a", "prompt": "p"}], [bad])
    lines = (tmp_path / "canaries" / "set.yaml").read_text().splitlines()
    line = next(i for i, t in enumerate(lines, 1) if "type: strin" in t)
    assert f"canaries/set.yaml:{line}: tools.0.function.parameters.properties.x.type: " \
        "invalid tool schema: unknown type 'strin'" in text


def test_an_expected_call_of_a_tool_not_offered_is_a_usage_error(tmp_path: Path) -> None:
    text = _problems(tmp_path, [{"id": "a", "prompt": "p",
                                 "expected": {"tool_call": {"name": "send_email"}}}])
    assert "cases.0.expected.tool_call.name" in text and "'send_email'" in text
    assert "not in tools" in text


def test_reports_show_the_call_beside_the_expected_one_escaped(tmp_path: Path) -> None:
    from evalgate.report.html import render_html
    from evalgate.report.junit import render_junit
    from evalgate.report.markdown import render_markdown

    hostile = "<script>alert(1)</script>"
    cases = [{"id": "c", "prompt": "Weather?", "expected": {"tool_call": {
        "name": "get_weather", "arguments": {"city": hostile}}}}]
    result = run_project(load_project(project_at(tmp_path, sim_model(tool_error_rate=1.0),
                                                  cases)))
    [record] = result.records
    assert not record.passed
    html = render_html(result)
    assert hostile not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "tool call: get_weather" in html or "tool call: get_weather_v2" in html
    assert "expected: get_weather(" in html
    junit = render_junit(result)
    assert "expected: get_weather({&quot;city&quot;: &quot;&lt;script&gt;" in junit
    markdown = render_markdown(result)
    # inside a fenced code block (evalgate.report.mdtext.code_block): shown, never rendered
    assert re.search(r"```[^`]*tool call: get_weather[^`]*expected: get_weather\(", markdown)


def _params(calls: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"tool_calls": calls, "tools": [WEATHER, REFUND], **extra}


def test_the_tool_checks_on_crafted_calls() -> None:
    from evalgate.grading.checks import run_check

    weather = {"name": "get_weather", "arguments": {"city": "Oslo"}}
    expected = {"name": "refund_order"}
    # any of several tools
    assert run_check("tool_called", "", _params([weather], values=["refund_order",
                                                                      "get_weather"])).passed
    missed = run_check("tool_called", "", _params([weather], expected=expected))
    assert not missed.passed and "expected refund_order" in missed.detail
    # an argument the schema does not have, even though the schema is open
    invented = run_check("tool_args_valid", "", _params(
        [{"name": "get_weather", "arguments": {"city": "Oslo", "mood": "sunny"}}]))
    assert not invented.passed and "invents argument(s) 'mood'" in invented.detail
    broken = run_check("tool_args_valid", "", _params(
        [{"name": "get_weather", "arguments": "{city", "parse_error": "not JSON"}]))
    assert not broken.passed and "not JSON" in broken.detail
    wrong_type = run_check("tool_args_valid", "", _params(
        [{"name": "get_weather", "arguments": {"city": "Oslo", "days": 0}}]))
    assert not wrong_type.passed and "minimum" in wrong_type.detail
    assert not run_check("no_tool_call", "", _params([weather])).passed
    assert run_check("no_tool_call", "", _params([])).passed
    sequence = _params([{"name": "refund_order", "arguments": {}}], history=["get_weather"])
    assert run_check("tool_sequence", "", {**sequence, "sequence": [
        "get_weather", "refund_order"]}).passed
    assert not run_check("tool_sequence", "", {**sequence, "sequence": ["refund_order"]}).passed
