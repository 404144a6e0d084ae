"""A generic in-house HTTP endpoint: a jinja2 body template and dotted paths into the reply."""

from __future__ import annotations

import json
from typing import Any

import httpx
from jinja2 import TemplateError

from evalgate.engine.providers.base import (
    HttpRequest,
    ProviderError,
    Reply,
    as_count,
    json_body,
    malformed,
    raise_for_status,
)
from evalgate.engine.providers.parts import tools_of
from evalgate.spec.endpoint import HttpSpec
from evalgate.spec.templating import render_text


def lookup(data: Any, path: str) -> Any:
    """Follow `a.b.0.c` through dicts and lists; None when any step is missing."""
    current = data
    for part in path.split("."):
        if isinstance(current, dict):
            current = current.get(part)
        elif isinstance(current, list) and part.lstrip("-").isdigit():
            index = int(part)
            current = current[index] if -len(current) <= index < len(current) else None
        else:
            return None
    return current


class GenericHttpProvider:
    def __init__(self, spec: HttpSpec, model: str, params: dict[str, Any],
                 headers: dict[str, str], api_key: str | None) -> None:
        self.spec = spec
        self.model = model
        self.params = params
        self.headers = {"content-type": "application/json", **headers, **spec.headers}
        if api_key:
            scheme = f"{spec.auth_scheme} " if spec.auth_scheme else ""
            self.headers[spec.auth_header.lower()] = f"{scheme}{api_key}"

    def build(self, call: Any) -> HttpRequest:
        messages = call.messages
        context = {
            "prompt": next(m["content"] for m in reversed(messages) if m["role"] == "user"),
            "system": "\n\n".join(m["content"] for m in messages if m["role"] == "system"),
            "messages": messages, "model": self.model, "params": self.params,
            "case": call.entry.case.model_dump(mode="json"), "sample": call.sample,
            # a canary's tools (OpenAI function format) and the last user turn's images
            # ({name, media_type, data (base64), data_uri}), for the body template
            "tools": tools_of(call),
            "images": next((list(m.get("images") or []) for m in reversed(messages)
                            if m["role"] == "user"), []),
        }
        try:
            body = json.loads(render_text(self.spec.body, context))
        except (TemplateError, ValueError) as exc:
            raise ProviderError("request_template", f"http.body did not render to JSON: {exc}",
                                retryable=False) from None
        return HttpRequest(self.spec.method, self.spec.url, self.headers, body)

    def parse(self, response: httpx.Response) -> Reply:
        raise_for_status(response)
        body = json_body(response)
        text = lookup(body, self.spec.text_path)
        if not isinstance(text, str):
            raise malformed(f"no text at {self.spec.text_path!r} in the response", response)
        tokens_in = lookup(body, self.spec.input_tokens_path) if self.spec.input_tokens_path \
            else None
        tokens_out = lookup(body, self.spec.output_tokens_path) if self.spec.output_tokens_path \
            else None
        return Reply(text, as_count(tokens_in), as_count(tokens_out), None)
