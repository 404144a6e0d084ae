"""The request and response shapes of the three wire protocols the simulator speaks: OpenAI
chat completions, Anthropic messages and a generic `/generate` endpoint (bodies in, answers and
errors out in each protocol's own shape)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from evalgate.spec.sim_profile import SimProfile


class _BadRequest(Exception):
    """The request body is unusable; becomes a 400 in the route's error shape."""


@dataclass(slots=True)
class _Call:
    """What a route extracted from a request body, in route-independent form."""

    model: str | None
    prompt_text: str
    user_text: str
    max_tokens: int | None
    sample: str | None
    stream: bool = False  # answer as a stream (evalgate/sim/streaming.py)
    include_usage: bool = False  # OpenAI's stream_options.include_usage: a final usage chunk
    has_tools: bool = False  # the request offers tools: a tool canary is answered with a call


@dataclass(slots=True)
class _Result:
    """The simulated outcome of a model call, before it is rendered in a route's shape."""

    answer: str
    prompt_tokens: int
    completion_tokens: int
    truncated: bool
    n: int
    tool_call: dict[str, Any] | None = None  # {id, name, arguments}: the answer is this call


def _content_text(content: Any) -> str:
    """Text of a message content: a string or a list of ``{"type": "text"}`` blocks."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict):
                text = block.get("text")
                if isinstance(text, str):
                    parts.append(text)
            else:
                raise _BadRequest("content blocks must be objects")
        return "\n".join(parts)
    raise _BadRequest("message content must be a string or a list of content blocks")


def _messages(body: dict[str, Any]) -> tuple[list[str], str]:
    """All message texts plus the last user message text (used to find the canary)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _BadRequest("'messages' must be a non-empty array")
    texts: list[str] = []
    last_user = ""
    for msg in messages:
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
            raise _BadRequest("each message needs a 'role' and 'content'")
        text = _content_text(msg.get("content"))
        texts.append(text)
        if msg["role"] == "user" and (text or not last_user):  # not a tool_result-only turn
            last_user = text
    return texts, last_user


def _model_field(body: dict[str, Any]) -> str | None:
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise _BadRequest("'model' must be a string")
    return model


def _max_tokens(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _BadRequest("'max_tokens' must be a positive integer")
    return value


def _sample_from_body(body: dict[str, Any]) -> str | None:
    seed = body.get("seed")
    return None if seed is None else str(seed)


def _streaming(call: _Call, body: dict[str, Any]) -> _Call:
    """The call with the request's streaming switch (and OpenAI's usage option) read."""
    options = body.get("stream_options")
    call.stream = body.get("stream") is True
    call.include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
    call.has_tools = isinstance(body.get("tools"), list) and bool(body["tools"])
    return call


def _empty_answer(out: dict[str, Any]) -> dict[str, Any]:
    """A success body with nothing in it: no choices / content blocks / output text."""
    for key in ("choices", "content"):
        if key in out:
            out[key] = []
    if "output" in out:
        out["output"] = {}
    return out


class _Route:
    """Parses one API's request body and renders its success and error bodies."""

    name = ""

    def parse(self, body: dict[str, Any]) -> _Call:
        raise NotImplementedError

    def success(self, call: _Call, res: _Result, profile: SimProfile) -> dict[str, Any]:
        raise NotImplementedError

    def error(self, kind: str, message: str) -> dict[str, Any]:
        raise NotImplementedError

    def context_message(self, prompt_tokens: int, window: int) -> str:
        raise NotImplementedError


_OPENAI_ERR = {
    "rate_limit": ("rate_limit_error", "rate_limit_exceeded"),
    "server": ("server_error", None),
    "context": ("invalid_request_error", "context_length_exceeded"),
    "bad_request": ("invalid_request_error", None),
    "model_not_found": ("invalid_request_error", "model_not_found"),
}


_ANTHROPIC_ERR = {
    "rate_limit": "rate_limit_error",
    "server": "api_error",
    "context": "invalid_request_error",
    "bad_request": "invalid_request_error",
    "model_not_found": "not_found_error",
}


class _OpenAIRoute(_Route):
    name = "/v1/chat/completions"

    def parse(self, body: dict[str, Any]) -> _Call:
        texts, last_user = _messages(body)
        limit = body.get("max_completion_tokens")
        if limit is None:
            limit = body.get("max_tokens")
        return _streaming(_Call(
            _model_field(body),
            "\n".join(texts),
            last_user,
            _max_tokens(limit),
            _sample_from_body(body),
        ), body)

    def success(self, call: _Call, res: _Result, profile: SimProfile) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": f"chatcmpl-sim-{res.n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": call.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": res.answer},
                    "finish_reason": "length" if res.truncated else "stop",
                }
            ],
        }
        if res.tool_call is not None:
            tool = res.tool_call
            out["choices"][0].update(finish_reason="tool_calls", message={
                "role": "assistant", "content": None, "tool_calls": [{
                    "id": tool["id"], "type": "function", "function": {
                        "name": tool["name"], "arguments": json.dumps(tool["arguments"])}}]})
        if profile.report_usage:
            out["usage"] = {
                "prompt_tokens": res.prompt_tokens,
                "completion_tokens": res.completion_tokens,
                "total_tokens": res.prompt_tokens + res.completion_tokens,
            }
        return out

    def error(self, kind: str, message: str) -> dict[str, Any]:
        etype, code = _OPENAI_ERR[kind]
        err: dict[str, Any] = {"message": message, "type": etype}
        if code is not None:
            err["code"] = code
        return {"error": err}

    def context_message(self, prompt_tokens: int, window: int) -> str:
        return (
            f"This model's maximum context length is {window} tokens. However, your messages "
            f"resulted in {prompt_tokens} tokens. Please reduce the length of the messages."
        )


class _AnthropicRoute(_Route):
    name = "/v1/messages"

    def parse(self, body: dict[str, Any]) -> _Call:
        texts, last_user = _messages(body)
        system = body.get("system")
        if system is not None:
            texts.insert(0, _content_text(system))
        return _streaming(_Call(
            _model_field(body),
            "\n".join(texts),
            last_user,
            _max_tokens(body.get("max_tokens")),
            _sample_from_body(body),
        ), body)

    def success(self, call: _Call, res: _Result, profile: SimProfile) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": f"msg_sim_{res.n}",
            "type": "message",
            "role": "assistant",
            "model": call.model,
            "content": [{"type": "text", "text": res.answer}],
            "stop_reason": "max_tokens" if res.truncated else "end_turn",
            "stop_sequence": None,
        }
        if res.tool_call is not None:
            tool = res.tool_call
            out.update(stop_reason="tool_use", content=[{
                "type": "tool_use", "id": tool["id"], "name": tool["name"],
                "input": tool["arguments"]}])
        if profile.report_usage:
            out["usage"] = {
                "input_tokens": res.prompt_tokens,
                "output_tokens": res.completion_tokens,
            }
        return out

    def error(self, kind: str, message: str) -> dict[str, Any]:
        return {"type": "error", "error": {"type": _ANTHROPIC_ERR[kind], "message": message}}

    def context_message(self, prompt_tokens: int, window: int) -> str:
        return f"prompt is too long: {prompt_tokens} tokens > {window} maximum"


class _GenerateRoute(_Route):
    name = "/generate"

    def parse(self, body: dict[str, Any]) -> _Call:
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            raise _BadRequest("'prompt' must be a string")
        return _streaming(_Call(
            _model_field(body),
            prompt,
            prompt,
            _max_tokens(body.get("max_tokens")),
            _sample_from_body(body),
        ), body)

    def success(self, call: _Call, res: _Result, profile: SimProfile) -> dict[str, Any]:
        out: dict[str, Any] = {"output": {"text": res.answer}}
        if profile.report_usage:
            out["usage"] = {"in": res.prompt_tokens, "out": res.completion_tokens}
        return out

    def error(self, kind: str, message: str) -> dict[str, Any]:
        return {"error": message}

    def context_message(self, prompt_tokens: int, window: int) -> str:
        return f"context length exceeded: {prompt_tokens} tokens > {window} maximum"


_ROUTES: dict[str, _Route] = {
    r.name: r for r in (_OpenAIRoute(), _AnthropicRoute(), _GenerateRoute())
}
