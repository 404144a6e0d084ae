"""Each provider against the simulator over real HTTP (the callable provider in-process)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from evalgate.engine.executor import execute
from evalgate.engine.planning import plan_calls
from evalgate.engine.providers import make_provider
from evalgate.pipeline.project import load_project
from evalgate.results import Record
from evalgate.sim import SimServer
from tests.conftest import make_cases, write_project


def run_model(tmp_path: Path, model: dict[str, Any], n: int = 3) -> list[Record]:
    write_project(tmp_path, model=model, cases=make_cases(n))
    project = load_project(tmp_path)
    calls = plan_calls(project.candidate, project.entries, 1)
    return execute(project.candidate, make_provider(project.candidate), calls, 4)


def test_openai_compatible(tmp_path: Path, sim_server: SimServer) -> None:
    sim_server.add_profile("gpt-sim", {"latency_ms": 0})
    records = run_model(tmp_path, {"provider": "openai", "base_url": f"{sim_server.base_url}/v1",
                                   "model": "gpt-sim", "params": {"temperature": 0}})
    assert [r.text for r in records] == ["Answer: 0 days.", "Answer: 1 days.", "Answer: 2 days."]
    assert all(r.finish_reason == "stop" and not r.usage_estimated for r in records)
    assert sim_server.stats.snapshot()["routes"].get("/v1/chat/completions") == 3


def test_openai_max_tokens_truncation_is_recorded(tmp_path: Path, sim_server: SimServer) -> None:
    sim_server.add_profile("gpt-sim", {"latency_ms": 0})
    [record] = run_model(tmp_path, {"provider": "openai", "base_url": f"{sim_server.base_url}/v1",
                                    "model": "gpt-sim", "params": {"max_tokens": 1}}, n=1)
    # a cut-off answer is kept for reading but counts as an error (not retried: same limit)
    assert not record.ok and record.error_class == "max_tokens" and record.retryable is False
    assert record.finish_reason == "length" and record.output_tokens == 1 and record.text


def test_anthropic_messages(tmp_path: Path, sim_server: SimServer,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALGATE_TEST_ANTHROPIC", "sk-ant-test-xyz")
    sim_server.add_profile("claude-sim", {"latency_ms": 0})
    model = {"provider": "anthropic", "base_url": f"{sim_server.base_url}/v1",
             "model": "claude-sim", "api_key_env": "EVALGATE_TEST_ANTHROPIC",
             "system_prompt": "Be exact."}
    records = run_model(tmp_path, model)
    assert [r.text for r in records] == ["Answer: 0 days.", "Answer: 1 days.", "Answer: 2 days."]
    assert all(r.finish_reason == "end_turn" and r.input_tokens for r in records)
    assert sim_server.stats.snapshot()["routes"].get("/v1/messages") == 3
    provider = make_provider(load_project(tmp_path).candidate)
    assert provider.headers["x-api-key"] == "sk-ant-test-xyz"
    request = provider.build(plan_calls(load_project(tmp_path).candidate,
                                        load_project(tmp_path).entries, 1)[0])
    assert request.json["system"] == "Be exact."
    assert [m["role"] for m in request.json["messages"]] == ["user"]
    assert request.json["max_tokens"] == 1024


def test_anthropic_errors_are_classified(tmp_path: Path, sim_server: SimServer) -> None:
    sim_server.add_profile("claude-sim", {"latency_ms": 0, "error_429_rate": 1.0,
                                          "retry_after_s": 0})
    [record] = run_model(tmp_path, {"provider": "anthropic", "base_url":
                                    f"{sim_server.base_url}/v1", "model": "claude-sim",
                                    "max_retries": 1}, n=1)
    assert record.error_class == "rate_limited" and len(record.attempts) == 2


def test_generic_http_template_and_paths(tmp_path: Path, sim_server: SimServer) -> None:
    sim_server.add_profile("inhouse", {"latency_ms": 0})
    model = {"provider": "http", "model": "inhouse", "http": {
        "url": f"{sim_server.base_url}/generate",
        "body": '{"prompt": {{ prompt | tojson }}, "model": {{ model | tojson }}}',
        "text_path": "output.text", "input_tokens_path": "usage.in",
        "output_tokens_path": "usage.out"}}
    records = run_model(tmp_path, model)
    assert [r.text for r in records] == ["Answer: 0 days.", "Answer: 1 days.", "Answer: 2 days."]
    assert all(r.input_tokens and r.output_tokens and not r.usage_estimated for r in records)
    assert sim_server.stats.snapshot()["routes"].get("/generate") == 3


def test_generic_http_wrong_path_is_a_malformed_response(tmp_path: Path,
                                                         sim_server: SimServer) -> None:
    sim_server.add_profile("inhouse", {"latency_ms": 0})
    model = {"provider": "http", "model": "inhouse", "max_retries": 0, "http": {
        "url": f"{sim_server.base_url}/generate", "text_path": "output.answer",
        "body": '{"prompt": {{ prompt | tojson }}, "model": "inhouse"}'}}
    [record] = run_model(tmp_path, model, n=1)
    assert record.error_class == "malformed_response"
    assert "output.answer" in (record.error_message or "")


def test_generic_http_without_usage_estimates_tokens(tmp_path: Path,
                                                     sim_server: SimServer) -> None:
    sim_server.add_profile("inhouse", {"latency_ms": 0})
    model = {"provider": "http", "model": "inhouse", "http": {
        "url": f"{sim_server.base_url}/generate", "text_path": "output.text",
        "body": '{"prompt": {{ prompt | tojson }}, "model": "inhouse"}'}}
    [record] = run_model(tmp_path, model, n=1)
    assert record.ok and record.usage_estimated and record.output_tokens == 4  # 15 chars / 4


@pytest.fixture
def router_module(tmp_path: Path) -> Any:
    (tmp_path / "myrouter.py").write_text(
        "import asyncio\n"
        "def answer(request):\n"
        "    q = request['messages'][-1]['content']\n"
        "    n = q.split()[1].rstrip(':')\n"
        "    return {'text': f'It takes {n} days.', 'input_tokens': 7, 'output_tokens': 4}\n"
        "async def answer_async(request):\n"
        "    await asyncio.sleep(0)\n"
        "    return 'plain text ' + request['case']['id']\n"
        "def broken(request):\n"
        "    raise RuntimeError('router exploded')\n")
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in ("myrouter",):
        sys.modules.pop(name, None)


def test_python_callable_provider(tmp_path: Path, router_module: Path) -> None:
    records = run_model(tmp_path / "p1", {"provider": "callable", "callable": "myrouter:answer"})
    assert [r.text for r in records] == ["It takes 0 days.", "It takes 1 days.",
                                         "It takes 2 days."]
    assert all(r.input_tokens == 7 and r.output_tokens == 4 for r in records)
    records = run_model(tmp_path / "p2", {"provider": "callable",
                                          "callable": "myrouter:answer_async"})
    assert [r.text for r in records] == ["plain text c0", "plain text c1", "plain text c2"]
    [failed] = run_model(tmp_path / "p3", {"provider": "callable", "callable": "myrouter:broken"},
                         n=1)
    assert failed.error_class == "callable_error"
    assert failed.error_message == "RuntimeError: router exploded"


def test_sim_provider_answers_from_references(tmp_path: Path) -> None:
    from evalgate.pipeline.run import run_project

    write_project(tmp_path, model={"provider": "sim", "model": "s", "sim": {"latency_ms": 0}},
                  cases=make_cases(4), gate={"samples": 2})
    result = run_project(load_project(tmp_path))
    assert len(result.records) == 8 and all(r.passed for r in result.records)
    assert result.metrics["pass_rate"] == 1.0 and result.metrics["hallucination_rate"] == 0.0


def test_sim_provider_hallucination_rate_is_about_right(tmp_path: Path) -> None:
    from evalgate.pipeline.run import run_project

    write_project(tmp_path, model={"provider": "sim", "model": "s",
                                   "sim": {"latency_ms": 0, "hallucination_rate": 0.3, "seed": 1}},
                  cases=make_cases(100), gate={"samples": 2, "concurrency": 32})
    result = run_project(load_project(tmp_path))
    # 200 draws at p = 0.3: sd = 0.032; 4 sd either side never trips with a fixed seed.
    assert 0.17 <= result.metrics["hallucination_rate"] <= 0.43
    again = run_project(load_project(tmp_path))
    assert [r.hallucination for r in again.records] == [r.hallucination for r in result.records]


def test_bearer_key_is_sent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny capture server on 127.0.0.1 records the headers the OpenAI provider sends."""
    seen: list[dict[str, str]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        headers = dict(line.split(": ", 1) for line in head.split("\r\n")[1:] if ": " in line)
        seen.append({k.lower(): v for k, v in headers.items()})
        await reader.readexactly(int(headers.get("content-length", headers.get(
            "Content-Length", "0"))))
        body = json.dumps({"choices": [{"message": {"content": "ok"},
                                        "finish_reason": "stop"}]}).encode()
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                     b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    async def scenario() -> list[Record]:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        monkeypatch.setenv("EVALGATE_TEST_BEARER", "sk-test-bearer-1")
        write_project(tmp_path, model={"provider": "openai", "model": "x",
                                       "base_url": f"http://127.0.0.1:{port}/v1",
                                       "api_key_env": "EVALGATE_TEST_BEARER"},
                      cases=make_cases(1))
        project = load_project(tmp_path)
        from evalgate.engine.executor import Executor

        executor = Executor(project.candidate, make_provider(project.candidate), 1)
        records = await executor.run(plan_calls(project.candidate, project.entries, 1))
        server.close()
        return records

    [record] = asyncio.run(scenario())
    assert record.ok and record.text == "ok" and record.usage_estimated
    assert seen[0]["authorization"] == "Bearer sk-test-bearer-1"
    assert "x-evalgate-case" not in seen[0]  # canary ids go to the simulator only
