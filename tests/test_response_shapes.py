"""Each response shape real servers send, built with the `openai` and `anthropic` SDKs' own
types, served over real HTTP on 127.0.0.1, and classified as the providers' table says."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pytest

from evalgate.pipeline.project import load_project
from evalgate.pipeline.run import run_project
from evalgate.results import RunResult
from tests.conftest import make_cases, write_project
from tests.wire_server import Responder, always, wire_server

openai_types = pytest.importorskip("openai.types")
anthropic_types = pytest.importorskip("anthropic.types")

from anthropic.types import (  # noqa: E402
    Message,
    RateLimitError,
    TextBlock,
    ToolUseBlock,
    Usage,
)
from openai.types import CompletionUsage, ErrorObject  # noqa: E402
from openai.types.chat import (  # noqa: E402
    ChatCompletion,
    ChatCompletionMessage,
    ChatCompletionMessageFunctionToolCall,
)
from openai.types.chat.chat_completion import Choice  # noqa: E402
from openai.types.chat.chat_completion_message_function_tool_call import Function  # noqa: E402
from openai.types.completion_usage import (  # noqa: E402
    CompletionTokensDetails,
    PromptTokensDetails,
)


def completion(content: str | None = None, finish: str = "stop", *, refusal: str | None = None,
               tool_calls: list[Any] | None = None, usage: CompletionUsage | None = None
               ) -> dict[str, Any]:
    """An OpenAI chat completion body as the SDK types serialise it (nulls kept)."""
    message = ChatCompletionMessage(role="assistant", content=content, refusal=refusal,
                                    tool_calls=tool_calls)
    body = ChatCompletion(id="chatcmpl-1", object="chat.completion", created=1, model="m",
                          choices=[Choice(index=0, finish_reason=finish, message=message)],
                          usage=usage or CompletionUsage(prompt_tokens=12, completion_tokens=5,
                                                         total_tokens=17))
    return body.model_dump(mode="json")


def message(blocks: list[Any], stop: str | None, usage: Usage | None = None) -> dict[str, Any]:
    """An Anthropic Messages body as the SDK types serialise it."""
    body = Message(id="msg_1", type="message", role="assistant", model="claude",
                   content=blocks, stop_reason=stop, stop_sequence=None,
                   usage=usage or Usage(input_tokens=12, output_tokens=5))
    return body.model_dump(mode="json")


def error_body(error: ErrorObject, **extra: Any) -> dict[str, Any]:
    return {"error": {**error.model_dump(mode="json"), **extra}}


def run(tmp_path: Path, responder: Responder, provider: str = "openai", n: int = 1,
        pricing: dict[str, Any] | None = None, gate: dict[str, Any] | None = None
        ) -> RunResult:
    """The gate's run against the wire server, one canary per call."""
    with wire_server(responder) as server:
        model = {"provider": provider, "base_url": f"{server.base_url}/v1", "model": "m",
                 "max_retries": 2, "timeout_s": 5,
                 "pricing": pricing or {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}
        write_project(tmp_path, model=model, cases=make_cases(n), gate=gate)
        return run_project(load_project(tmp_path))


def test_openai_refusal_is_refused_not_retried_with_a_refusal_rate(tmp_path: Path) -> None:
    body = completion(None, refusal="I can't help with that request.")
    result = run(tmp_path, always(body), n=10,
                 gate={"gate": {"metrics": {"refusal_rate": {"max": 0.2}}}})
    record = result.records[0]
    assert (record.ok, record.error_class, record.retryable) == (False, "refused", False)
    assert len(record.attempts) == 1 and "I can't help" in (record.error_message or "")
    assert result.metrics["refusal_rate"] == 1.0 and result.metrics["error_rate"] == 1.0
    [verdict] = [v for v in result.verdicts if v.guardrail == "refusal_rate"]
    assert verdict.verdict == "FAIL"


def test_tool_calls_with_null_content_are_kept(tmp_path: Path) -> None:
    calls = [ChatCompletionMessageFunctionToolCall(
                 id="call_1", type="function",
                 function=Function(name="get_weather", arguments='{"city": "Paris"}')),
             ChatCompletionMessageFunctionToolCall(
                 id="call_2", type="function",
                 function=Function(name="lookup", arguments='{"id": 4'))]
    result = run(tmp_path, always(completion(None, "tool_calls", tool_calls=calls)))
    record = result.records[0]
    assert record.ok and record.text == "" and len(record.attempts) == 1
    first, broken = record.tool_calls
    assert (first.name, first.arguments, first.id) == ("get_weather", {"city": "Paris"},
                                                       "call_1")
    assert broken.arguments == '{"id": 4' and "not JSON" in (broken.parse_error or "")


def test_anthropic_tool_use_blocks_are_kept(tmp_path: Path) -> None:
    blocks = [TextBlock(type="text", text="Checking."),
              ToolUseBlock(type="tool_use", id="toolu_1", name="get_weather",
                           input={"city": "Oslo", "unit": "c"})]
    result = run(tmp_path, always(message(blocks, "tool_use")), provider="anthropic")
    record = result.records[0]
    assert record.ok and record.text == "Checking." and record.finish_reason == "tool_use"
    [call] = record.tool_calls
    assert (call.name, call.arguments) == ("get_weather", {"city": "Oslo", "unit": "c"})


def test_content_as_a_list_of_parts_is_joined(tmp_path: Path) -> None:
    body = completion("placeholder")
    body["choices"][0]["message"]["content"] = [
        {"type": "text", "text": "Answer: "}, {"type": "image_url", "image_url": {"url": "x"}},
        {"type": "text", "text": "0 days."}]
    record = run(tmp_path, always(body)).records[0]
    assert record.ok and record.text == "Answer: 0 days." and record.passed


def test_content_filter_finish_is_not_graded(tmp_path: Path) -> None:
    record = run(tmp_path, always(completion("Answer: 0 days. But", "content_filter"))).records[0]
    assert (record.ok, record.error_class, record.retryable) == (False, "content_filter", False)
    assert record.text == "Answer: 0 days. But" and record.passed is None
    assert len(record.attempts) == 1


def test_azure_content_filter_400(tmp_path: Path) -> None:
    error = ErrorObject(code="content_filter", param="prompt", type="invalid_request_error",
                        message="The response was filtered due to the prompt triggering Azure "
                        "OpenAI's content management policy.")
    body = error_body(error, status=400, innererror={
        "code": "ResponsibleAIPolicyViolation",
        "content_filter_result": {"hate": {"filtered": True, "severity": "high"}}})
    record = run(tmp_path, always(body, 400)).records[0]
    assert (record.error_class, record.retryable, len(record.attempts)) == (
        "content_filter", False, 1)
    assert "content management policy" in (record.error_message or "")


def test_anthropic_stop_reason_refusal(tmp_path: Path) -> None:
    result = run(tmp_path, always(message([], "refusal")), provider="anthropic")
    record = result.records[0]
    assert (record.ok, record.error_class, len(record.attempts)) == (False, "refused", 1)
    assert result.metrics["refusal_rate"] == 1.0


def test_null_content_with_finish_length_is_max_tokens(tmp_path: Path) -> None:
    usage = CompletionUsage(prompt_tokens=12, completion_tokens=64, total_tokens=76,
                            completion_tokens_details=CompletionTokensDetails(
                                reasoning_tokens=64))
    record = run(tmp_path, always(completion(None, "length", usage=usage))).records[0]
    assert (record.ok, record.error_class, record.retryable) == (False, "max_tokens", False)
    assert record.reasoning_tokens == 64 and record.output_tokens == 64
    assert len(record.attempts) == 1


def test_insufficient_quota_429_is_not_retried_and_named(tmp_path: Path) -> None:
    error = ErrorObject(code="insufficient_quota", type="insufficient_quota", param=None,
                        message="You exceeded your current quota, please check your plan and "
                        "billing details.")
    result = run(tmp_path, always(error_body(error), 429, {"retry-after": "0"}), n=2)
    record = result.records[0]
    assert (record.error_class, record.retryable, len(record.attempts)) == (
        "quota_exhausted", False, 1)
    [warning] = [w for w in result.warnings if "quota_exhausted" in w]
    assert "2 of 2" in warning and "exceeded your current quota" in warning


def test_anthropic_429_rate_limit_is_still_retried(tmp_path: Path) -> None:
    """The quota rule reads codes, not the status: a plain rate limit still waits and retries."""
    body = {"type": "error", "error": RateLimitError(
        type="rate_limit_error", message="Number of requests has exceeded your rate limit"
    ).model_dump(mode="json")}
    record = run(tmp_path, always(body, 429, {"retry-after": "0"}), "anthropic").records[0]
    assert record.error_class == "rate_limited" and len(record.attempts) == 3


THINKING = ("<think>The policy page once said 1000 days; maybe it still does.</think>\n\n"
            "Answer: 0 days.")


def test_inline_reasoning_is_taken_off_before_grading_and_kept(tmp_path: Path) -> None:
    record = run(tmp_path, always(completion(THINKING))).records[0]
    assert record.ok and record.text == "Answer: 0 days." and record.passed
    assert record.reasoning_text == "The policy page once said 1000 days; maybe it still does."
    assert record.reasoning_tokens is not None and record.reasoning_tokens > 0
    assert record.output_tokens == 5  # the server's count, reasoning included


def test_inline_reasoning_is_graded_as_written_when_asked(tmp_path: Path) -> None:
    with wire_server(always(completion(THINKING))) as server:
        model = {"provider": "openai", "base_url": f"{server.base_url}/v1", "model": "m",
                 "max_retries": 0, "strip_reasoning": False,
                 "pricing": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}
        write_project(tmp_path, model=model, cases=make_cases(1))
        record = run_project(load_project(tmp_path)).records[0]
    assert record.text == THINKING and record.reasoning_text is None
    assert record.passed is False  # "1000 days" is the canary's forbidden statement


def test_an_unclosed_reasoning_block_leaves_no_answer(tmp_path: Path) -> None:
    body = completion("<think>Let me work out the policy. First, the", "length")
    record = run(tmp_path, always(body)).records[0]
    assert (record.ok, record.error_class) == (False, "max_tokens")
    assert record.text == "" and record.reasoning_text is not None


def test_a_cached_answer_keeps_its_tool_calls_reasoning_and_cache_prices(tmp_path: Path) -> None:
    calls = [ChatCompletionMessageFunctionToolCall(
        id="call_1", type="function",
        function=Function(name="get_weather", arguments='{"city": "Paris"}'))]
    usage = CompletionUsage(prompt_tokens=1000, completion_tokens=100, total_tokens=1100,
                            prompt_tokens_details=PromptTokensDetails(cached_tokens=800))
    body = completion(THINKING, "tool_calls", tool_calls=calls, usage=usage)
    pricing = {"input_per_mtok": 1.0, "output_per_mtok": 2.0, "cached_input_per_mtok": 0.1}
    with wire_server(always(body)) as server:
        model = {"provider": "openai", "base_url": f"{server.base_url}/v1", "model": "m",
                 "max_retries": 0, "pricing": pricing}
        write_project(tmp_path, model=model, cases=make_cases(1))
        made = run_project(load_project(tmp_path), cache="on").records[0]
        cached = run_project(load_project(tmp_path), cache="on").records[0]
    assert not made.cached and cached.cached
    for field in ("text", "tool_calls", "cached_input_tokens", "reasoning_text",
                  "reasoning_tokens", "cost_usd"):
        assert getattr(cached, field) == getattr(made, field), field
    assert cached.tool_calls[0].arguments == {"city": "Paris"}
    assert cached.cost_usd == pytest.approx((200 * 1.0 + 800 * 0.1 + 100 * 2.0) / 1e6)


def test_openai_cached_and_reasoning_tokens_are_priced(tmp_path: Path) -> None:
    usage = CompletionUsage(prompt_tokens=1000, completion_tokens=100, total_tokens=1100,
                            prompt_tokens_details=PromptTokensDetails(cached_tokens=800),
                            completion_tokens_details=CompletionTokensDetails(
                                reasoning_tokens=60))
    pricing = {"input_per_mtok": 1.0, "output_per_mtok": 2.0, "cached_input_per_mtok": 0.1}
    record = run(tmp_path, always(completion("Answer: 0 days.", usage=usage)),
                 pricing=pricing).records[0]
    assert record.ok and record.input_tokens == 1000 and record.cached_input_tokens == 800
    assert record.reasoning_tokens == 60 and record.output_tokens == 100
    assert record.cost_usd == pytest.approx((200 * 1.0 + 800 * 0.1 + 100 * 2.0) / 1e6)
    assert record.cost_source == "table"


def test_anthropic_cache_read_and_write_tokens_are_priced(tmp_path: Path) -> None:
    usage = Usage(input_tokens=100, output_tokens=10, cache_read_input_tokens=800,
                  cache_creation_input_tokens=100)
    blocks = [TextBlock(type="text", text="Answer: 0 days.")]
    pricing = {"input_per_mtok": 3.0, "output_per_mtok": 15.0, "cached_input_per_mtok": 0.3,
               "cache_write_per_mtok": 3.75}
    record = run(tmp_path, always(message(blocks, "end_turn", usage)), "anthropic",
                 pricing=pricing).records[0]
    assert record.input_tokens == 1000 and record.cached_input_tokens == 800
    assert record.cache_write_tokens == 100
    assert record.cost_usd == pytest.approx((100 * 3.0 + 800 * 0.3 + 100 * 3.75 + 10 * 15.0)
                                            / 1e6)


def test_cost_header_is_trusted_and_cross_checked(tmp_path: Path) -> None:
    pricing = {"input_per_mtok": 1.0, "output_per_mtok": 2.0,
               "from_header": "x-litellm-response-cost"}
    body = completion("Answer: 0 days.")  # 12 in, 5 out: the table says $0.000022
    agreed = run(tmp_path / "a", always(body, headers={"x-litellm-response-cost": "2.2e-05"}),
                 n=3, pricing=pricing)
    assert [r.cost_source for r in agreed.records] == ["header"] * 3
    assert agreed.records[0].cost_usd == pytest.approx(2.2e-05)
    assert not [w for w in agreed.warnings if "cost header" in w]
    differs = run(tmp_path / "b", always(body, headers={"x-litellm-response-cost": "0.0005"}),
                  n=3, pricing=pricing)
    assert differs.total_cost_usd == pytest.approx(0.0015)
    [warning] = [w for w in differs.warnings if "cost header" in w]
    assert "$0.001500" in warning and "$0.000066" in warning
    absent = run(tmp_path / "c", always(body), n=2, pricing=pricing)
    assert absent.records[0].cost_usd == pytest.approx(2.2e-05)
    assert [w for w in absent.warnings if "no answer carried" in w]


def test_litellm_400_text_is_shown_in_the_report(tmp_path: Path) -> None:
    from evalgate.report.html import render_html
    from evalgate.report.markdown import render_markdown

    body = {"error": {"message": "Authentication Error, No connected db.",
                      "type": "auth_error", "param": "None", "code": "400"}}
    result = run(tmp_path, always(body, 400))
    record = result.records[0]
    assert (record.error_class, len(record.attempts)) == ("bad_request", 1)
    assert "No connected db." in (record.error_message or "")
    assert html.escape("No connected db.") in render_html(result)
    assert "No connected db" in render_markdown(result)
