"""Prompt tokens before any call, for the context-window check: exact with the model
config's local tokenizer, else the 4-characters-a-token estimate corrected by what the same
model reported for cached answers (reported / estimated input tokens)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from evalgate.engine.persist import cache_key, identity_text, model_identity, open_cache
from evalgate.engine.planning import PlannedCall
from evalgate.spec.config import LoadedModel
from evalgate.text.tokens import estimate_tokens


def prompt_text(call: PlannedCall) -> str:
    """What the model reads as text: every turn (earlier tool calls too) and the tools."""
    parts = []
    for m in call.messages:
        parts.append(m.get("content") or "")
        parts += [json.dumps({"name": c["name"], "arguments": c["arguments"]})
                  for c in m.get("tool_calls") or []]
    tools = getattr(call.entry.case, "tools", None) or []
    parts += [json.dumps(t.model_dump(mode="json", exclude_none=True)) for t in tools]
    return "\n".join(parts)


def estimated_tokens(call: PlannedCall) -> int:
    return estimate_tokens(prompt_text(call))


def exact_tokens(tokenizer: Any, call: PlannedCall) -> int:
    return len(tokenizer.encode(prompt_text(call)).ids)


def reported_ratio(model: LoadedModel, calls: Sequence[PlannedCall], root: Any,
                   cache_mode: str) -> float | None:
    """Reported over estimated input tokens, summed over this model's cached answers to these
    calls (None: no cached answer with reported usage, or no readable cache)."""
    cache, _ = open_cache(root, cache_mode)
    if cache is None:
        return None
    ident = identity_text(model_identity(model))
    reported = estimated = 0
    try:
        for call in calls:
            value = cache.get(cache_key(ident, call))
            tokens = value.get("input_tokens") if value is not None else None
            if isinstance(tokens, int) and tokens > 0 and not value.get("usage_estimated"):
                reported += tokens
                estimated += estimated_tokens(call)
    finally:
        cache.close()
    return reported / estimated if estimated else None


def prompt_counter(model: LoadedModel, calls: Sequence[PlannedCall], root: Any,
                   cache_mode: str) -> tuple[dict[str, int], str]:
    """Prompt tokens per canary key (the first sample's call) and how they were counted:
    `tokenizer`, `estimate x <ratio> (cached answers)` or `estimate`."""
    first: dict[str, PlannedCall] = {}
    for call in calls:
        first.setdefault(call.entry.key, call)
    if model.tokenizer is not None:
        return {k: exact_tokens(model.tokenizer, c) for k, c in first.items()}, "tokenizer"
    ratio = reported_ratio(model, list(first.values()), root, cache_mode)
    how = "estimate" if ratio is None else f"estimate x {ratio:.2f} (cached answers)"
    return {k: max(1, round(estimated_tokens(c) * (ratio or 1.0)))
            for k, c in first.items()}, how
