"""Reading the response shapes real servers send, beyond a plain text answer: content as a
list of parts, tool calls, refusals, stop reasons that mean "no answer", cache and reasoning
token counts, and the error codes in a 4xx body that change what a status means.

Pure functions over parsed JSON, shared by the OpenAI and Anthropic providers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# A finish (stop) reason that means the text is not a whole answer: the error class it gets.
# OpenAI: length, content_filter; Anthropic: max_tokens, refusal, model_context_window_exceeded.
STOP_CLASSES = {"length": "max_tokens", "max_tokens": "max_tokens",
                "content_filter": "content_filter", "refusal": "refused",
                "model_context_window_exceeded": "context_length"}

STOP_MESSAGES = {
    "max_tokens": "the answer was cut off at the token limit (finish_reason {reason}): "
                  "raise max_tokens",
    "content_filter": "the provider's content filter stopped the answer (finish_reason "
                      "{reason}); the partial text is kept, not graded",
    "refused": "the model refused to answer: {refusal}",
    "context_length": "the prompt and answer outgrew the context window (finish_reason "
                      "{reason})",
}

TEXT_PART_TYPES = frozenset({"text", "output_text"})


@dataclass(frozen=True)
class ToolCallOut:
    """A tool call the model asked for: arguments parsed from JSON, else the raw text."""

    name: str
    arguments: Any
    id: str | None = None
    parse_error: str | None = None


@dataclass(frozen=True)
class Usage:
    """Token counts beyond plain in/out. `input` includes the cached and cache-write tokens
    (OpenAI's prompt_tokens does; Anthropic's input_tokens does not, so they are added)."""

    input: int | None = None
    output: int | None = None
    cached_input: int | None = None
    cache_write: int | None = None
    reasoning: int | None = None


def count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def joined_text(content: Any) -> str | None:
    """A message's content as text: a string as is, a list of parts with their text parts
    joined (some gateways send OpenAI content that way); None for anything else."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [part.get("text") for part in content
                 if isinstance(part, dict) and part.get("type") in TEXT_PART_TYPES]
        if texts and all(isinstance(t, str) for t in texts):
            return "".join(texts)
    return None


def tool_call(name: Any, arguments: Any, call_id: Any = None) -> ToolCallOut:
    """One tool call; `arguments` a JSON string (OpenAI) or an object already (Anthropic)."""
    error = None
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as exc:
            error = f"arguments are not JSON: {exc}"
    return ToolCallOut(str(name or ""), arguments, call_id if isinstance(call_id, str) else None,
                       error)


def openai_tool_calls(message: dict[str, Any]) -> tuple[ToolCallOut, ...]:
    """`message.tool_calls` (and the older `function_call`) as tool calls."""
    raw = message.get("tool_calls")
    calls = raw if isinstance(raw, list) else []
    if isinstance(message.get("function_call"), dict):
        calls = [*calls, {"function": message["function_call"]}]
    out = []
    for item in calls:
        function = item.get("function") if isinstance(item, dict) else None
        if isinstance(function, dict):
            out.append(tool_call(function.get("name"), function.get("arguments"),
                                 item.get("id")))
    return tuple(out)


def anthropic_tool_calls(blocks: list[Any]) -> tuple[ToolCallOut, ...]:
    return tuple(tool_call(b.get("name"), b.get("input"), b.get("id")) for b in blocks
                 if isinstance(b, dict) and b.get("type") == "tool_use")


def _details(usage: dict[str, Any], key: str) -> dict[str, Any]:
    value = usage.get(key)
    return value if isinstance(value, dict) else {}


def openai_usage(usage: dict[str, Any]) -> Usage:
    prompt, completion = _details(usage, "prompt_tokens_details"), _details(
        usage, "completion_tokens_details")
    return Usage(count(usage.get("prompt_tokens")), count(usage.get("completion_tokens")),
                 count(prompt.get("cached_tokens")), count(prompt.get("cache_write_tokens")),
                 count(completion.get("reasoning_tokens")))


def anthropic_usage(usage: dict[str, Any]) -> Usage:
    fresh = count(usage.get("input_tokens"))
    read = count(usage.get("cache_read_input_tokens"))
    write = count(usage.get("cache_creation_input_tokens"))
    total = None if fresh is None else fresh + (read or 0) + (write or 0)
    return Usage(total, count(usage.get("output_tokens")), read, write,
                 count(_details(usage, "output_tokens_details").get("thinking_tokens")))


def error_codes(body: Any) -> set[str]:
    """The machine-readable codes of an error body: `error.code`, `error.type` and Azure's
    `error.innererror.code`, lower-cased (OpenAI, Azure, Anthropic, LiteLLM)."""
    err = body.get("error", body) if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return set()
    inner = err.get("innererror") if isinstance(err.get("innererror"), dict) else {}
    values = (err.get("code"), err.get("type"), inner.get("code"), body.get("type"))
    return {str(v).lower() for v in values if isinstance(v, str | int) and str(v)}


QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached", "billing_error"})
FILTER_CODES = frozenset({"content_filter", "content_policy_violation",
                          "responsibleaipolicyviolation"})
# LiteLLM maps a provider's content-filter error to a 400 whose only mark is in its message.
FILTER_MESSAGES = ("contentpolicyviolationerror", "content_policy_violation")


def error_message_text(body: Any) -> str:
    err = body.get("error", body) if isinstance(body, dict) else None
    message = err.get("message") if isinstance(err, dict) else None
    return message.lower() if isinstance(message, str) else ""


def error_class_of(status: int, body: Any) -> str | None:
    """An error class that the body's codes decide (None: the status decides): a 429 for an
    account out of credit is not a rate limit; a 400 from a content filter is not a bad
    request."""
    codes = error_codes(body)
    if status in (400, 402, 429) and codes & QUOTA_CODES:
        return "quota_exhausted"
    if status == 400 and (codes & FILTER_CODES or any(
            mark in error_message_text(body) for mark in FILTER_MESSAGES)):
        return "content_filter"
    return None
