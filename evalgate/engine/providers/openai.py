"""OpenAI-compatible chat completions: OpenAI, vLLM, Ollama, LiteLLM, and the simulator."""

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
        body = {"model": self.model, "messages": call.messages, **self.params}
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
        message = first.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            raise malformed("choices[0].message.content is missing or not text", response)
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        return Reply(content, as_count(usage.get("prompt_tokens")),
                     as_count(usage.get("completion_tokens")), first.get("finish_reason"))
