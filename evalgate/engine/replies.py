"""A provider's Reply as Record fields: what it cost (price table, prompt-cache prices or the
gateway's header), its tool calls and token details, and whether it is an answer at all."""

from __future__ import annotations

import re
from typing import Any

from evalgate.engine.providers.base import Reply
from evalgate.engine.providers.shapes import STOP_CLASSES, STOP_MESSAGES
from evalgate.results import ToolCall
from evalgate.spec.endpoint import Pricing
from evalgate.text.tokens import estimate_tokens


def header_cost(value: str | None) -> float | None:
    """A cost header's value in USD (LiteLLM sends a plain float); None when unreadable."""
    try:
        cost = float(value) if value is not None else None
    except ValueError:
        return None
    return cost if cost is not None and cost >= 0 and cost != float("inf") else None


def cost_fields(pricing: Pricing, reply: Reply, tokens_in: int, tokens_out: int
                ) -> dict[str, Any]:
    """cost_usd and where it came from: the gateway's header when configured and sent (the
    table's price kept beside it for the cross-check), else the price table."""
    table = pricing.cost(tokens_in, tokens_out, reply.cached_input_tokens or 0,
                         reply.cache_write_tokens or 0)
    if pricing.from_header and reply.header_cost_usd is not None:
        return {"cost_usd": reply.header_cost_usd, "cost_source": "header",
                "table_cost_usd": table if pricing.has_table else None}
    return {"cost_usd": table, "cost_source": "table"}


def detail_fields(reply: Reply) -> dict[str, Any]:
    """The tool calls and the cache / reasoning token counts, for the Record."""
    return {"tool_calls": [ToolCall(name=t.name, arguments=t.arguments, id=t.id,
                                    parse_error=t.parse_error) for t in reply.tool_calls],
            "cached_input_tokens": reply.cached_input_tokens,
            "cache_write_tokens": reply.cache_write_tokens,
            "reasoning_tokens": reply.reasoning_tokens}


def unanswered(reply: Reply) -> tuple[str, str] | None:
    """(error class, message) when the reply is no whole answer: a refusal, a cut-off or
    filtered answer, a context overflow. Not retried: the same request gets the same stop."""
    error_class = "refused" if reply.refusal else STOP_CLASSES.get(reply.finish_reason or "")
    if error_class is None:
        return None
    refusal = (reply.refusal or reply.text or "(no text)").strip()
    return error_class, STOP_MESSAGES[error_class].format(reason=reply.finish_reason,
                                                          refusal=refusal[:300])


# Reasoning written inline before the answer (Ollama, DeepSeek-R1-style and Qwen models):
# `<think>...</think>` (or `<thinking>`), or an opening tag never closed when the token
# budget ran out inside the reasoning.
_REASONING = re.compile(r"\A\s*<(think|thinking)>(.*?)(?:</\1>|\Z)\s*", re.S | re.I)


def split_reasoning(text: str) -> tuple[str, str | None]:
    """(answer, reasoning): the inline reasoning block taken off the front of a reply, so it
    is not graded as part of the answer (its guesses would read as hallucinations)."""
    match = _REASONING.match(text)
    if match is None:
        return text, None
    return text[match.end():], match.group(2).strip()


def reasoning_fields(reply: Reply, strip: bool) -> dict[str, Any]:
    """The answer's text and, with `strip`, the inline reasoning apart from it, counted in the
    reasoning tokens when the server did not count them."""
    if not strip:
        return {"text": reply.text}
    text, reasoning = split_reasoning(reply.text)
    if reasoning is None:
        return {"text": text}
    tokens = reply.reasoning_tokens if reply.reasoning_tokens is not None \
        else estimate_tokens(reasoning)
    return {"text": text, "reasoning_text": reasoning, "reasoning_tokens": tokens}
