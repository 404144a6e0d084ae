"""Anthropic Messages API."""

from __future__ import annotations

from typing import Any

import httpx

from evalgate.engine.providers.base import (
    HttpRequest,
    Reply,
    as_count,
    empty_response,
    json_body,
    malformed,
    raise_for_status,
)

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
        turns = [m for m in call.messages if m["role"] != "system"]
        body: dict[str, Any] = {"model": self.model, "messages": turns, **self.params}
        if system:
            body["system"] = system
        return HttpRequest("POST", self.url, self.headers, body)

    def parse(self, response: httpx.Response) -> Reply:
        raise_for_status(response)
        body = json_body(response)
        if not isinstance(body, dict) or not isinstance(body.get("content"), list):
            raise malformed("response has no content list", response)
        if not body["content"]:
            raise empty_response("response has an empty content list", response)
        texts = [block.get("text") for block in body["content"]
                 if isinstance(block, dict) and block.get("type") == "text"]
        if not texts or not all(isinstance(t, str) for t in texts):
            raise malformed("response has no text content block", response)
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        return Reply("".join(texts), as_count(usage.get("input_tokens")),
                     as_count(usage.get("output_tokens")), body.get("stop_reason"))
