"""OpenAI-compatible chat completions: OpenAI, vLLM, Ollama, LiteLLM, and the simulator."""

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
from evalgate.engine.providers.parts import openai_messages, openai_tool_fields
from evalgate.engine.providers.shapes import (
    STOP_CLASSES,
    joined_text,
    openai_tool_calls,
    openai_usage,
)


class OpenAIProvider:
    def __init__(self, base_url: str, model: str, params: dict[str, Any], headers: dict[str, str],
                 api_key: str | None, case_headers: bool = False) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.params = params
        self.headers = {"content-type": "application/json", **headers}
        if api_key:
            self.headers["authorization"] = f"Bearer {api_key}"
        self.case_headers = case_headers

    def build(self, call: Any) -> HttpRequest:
        headers = self.headers
        if self.case_headers:  # lets the simulator answer from the canary's references
            headers = {**headers, "x-evalgate-case": call.entry.key,
                       "x-evalgate-sample": str(call.sample)}
        body = {"model": self.model, "messages": openai_messages(call.messages),
                **openai_tool_fields(call), **self.params}
        return HttpRequest("POST", self.url, headers, body)

    def parse(self, response: httpx.Response) -> Reply:
        raise_for_status(response)
        body = json_body(response)
        if not isinstance(body, dict):
            raise malformed("response is not a JSON object", response)
        choices = body.get("choices")
        if not isinstance(choices, list):
            raise malformed("response has no choices", response)
        if not choices:
            raise empty_response("response has an empty choices list", response)
        first = choices[0] if isinstance(choices[0], dict) else {}
        message = first.get("message") if isinstance(first.get("message"), dict) else {}
        finish = first.get("finish_reason")
        content = joined_text(message.get("content"))
        tools = openai_tool_calls(message)
        refusal = message.get("refusal") if isinstance(message.get("refusal"), str) else None
        if content is None:
            # No text is a whole reply when the model called tools, refused, or was stopped
            # (a reasoning parser can eat the whole budget: content null, finish length).
            if message.get("content") is not None or not (
                    tools or refusal or finish in STOP_CLASSES):
                raise malformed("choices[0].message.content is missing or not text", response)
            content = ""
        usage = openai_usage(body["usage"] if isinstance(body.get("usage"), dict) else {})
        return Reply(content, usage.input, usage.output, finish, tools, refusal or None,
                     usage.cached_input, usage.cache_write, usage.reasoning)
