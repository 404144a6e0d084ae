"""Anthropic Messages API."""

from __future__ import annotations

from typing import Any

import httpx

from evalgate.engine.providers.base import (
    HttpRequest,
    Reply,
    empty_response,
    json_body,
    malformed,
    raise_for_status,
)
from evalgate.engine.providers.parts import anthropic_messages, anthropic_tool_fields
from evalgate.engine.providers.shapes import STOP_CLASSES, anthropic_tool_calls, anthropic_usage

ANTHROPIC_VERSION = "2023-06-01"


class AnthropicProvider:
    def __init__(self, base_url: str, model: str, params: dict[str, Any], headers: dict[str, str],
                 api_key: str | None) -> None:
        self.url = base_url.rstrip("/") + "/messages"
        self.model = model
        self.params = {"max_tokens": 1024, **params}
        self.headers = {"content-type": "application/json",
                        "anthropic-version": ANTHROPIC_VERSION, **headers}
        if api_key:
            self.headers["x-api-key"] = api_key

    def build(self, call: Any) -> HttpRequest:
        system = "\n\n".join(m["content"] for m in call.messages if m["role"] == "system")
        body: dict[str, Any] = {"model": self.model,
                                "messages": anthropic_messages(call.messages),
                                **anthropic_tool_fields(call), **self.params}
        if system:
            body["system"] = system
        return HttpRequest("POST", self.url, self.headers, body)

    def parse(self, response: httpx.Response) -> Reply:
        raise_for_status(response)
        body = json_body(response)
        if not isinstance(body, dict) or not isinstance(body.get("content"), list):
            raise malformed("response has no content list", response)
        blocks, stop = body["content"], body.get("stop_reason")
        if not blocks and stop not in STOP_CLASSES:  # a refusal may come with no content
            raise empty_response("response has an empty content list", response)
        texts = [block.get("text") for block in blocks
                 if isinstance(block, dict) and block.get("type") == "text"]
        tools = anthropic_tool_calls(blocks)
        if not all(isinstance(t, str) for t in texts) or not (
                texts or tools or stop in STOP_CLASSES):
            raise malformed("response has no text content block", response)
        text = "".join(texts)
        usage = anthropic_usage(body["usage"] if isinstance(body.get("usage"), dict) else {})
        return Reply(text, usage.input, usage.output, stop, tools,
                     text if stop == "refusal" else None, usage.cached_input,
                     usage.cache_write, usage.reasoning)
