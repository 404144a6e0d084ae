"""The planned messages (neutral form: tool calls, tool results, images) and a canary's tools
in each API's own shape: OpenAI `tools` / `tool_choice` / `tool_calls` / `image_url` parts,
Anthropic `tools` / `tool_use` / `tool_result` / `image` blocks."""

from __future__ import annotations

import json
from typing import Any


def tools_of(call: Any) -> list[dict[str, Any]]:
    """The canary's tools in the OpenAI function format (none for a canary without)."""
    tools = getattr(call.entry.case, "tools", None) or []
    return [t.model_dump(mode="json", exclude_none=True) for t in tools]


def _images(turn: dict[str, Any]) -> list[dict[str, Any]]:
    return list(turn.get("images") or [])


def openai_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in messages:
        if m["role"] == "tool":
            out.append({"role": "tool", "tool_call_id": m["tool_call_id"],
                        "content": m["content"]})
        elif m.get("tool_calls"):
            out.append({"role": "assistant", "content": m["content"] or None, "tool_calls": [
                {"id": c["id"], "type": "function",
                 "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])}}
                for c in m["tool_calls"]]})
        elif _images(m):
            parts: list[dict[str, Any]] = [{"type": "text", "text": m["content"]}]
            parts += [{"type": "image_url", "image_url": {
                "url": f"data:{i['media_type']};base64,{i['data']}"}} for i in _images(m)]
            out.append({"role": m["role"], "content": parts})
        else:
            out.append({"role": m["role"], "content": m["content"]})
    return out


def openai_tool_fields(call: Any) -> dict[str, Any]:
    """`tools` and `tool_choice` for a chat-completions body (nothing without tools)."""
    tools = tools_of(call)
    if not tools:
        return {}
    choice = call.entry.case.tool_choice
    body: dict[str, Any] = {"tools": tools}
    if choice in ("auto", "required", "none"):
        body["tool_choice"] = choice
    elif choice is not None:
        body["tool_choice"] = {"type": "function", "function": {"name": choice}}
    return body


def anthropic_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Turns without the system prompt; tool results become `tool_result` blocks of a user
    turn (consecutive ones in one turn, as Anthropic's alternating roles need)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if m["role"] == "system":
            continue
        if m["role"] == "tool":
            block = {"type": "tool_result", "tool_use_id": m["tool_call_id"],
                     "content": m["content"]}
            if out and out[-1]["role"] == "user" and isinstance(out[-1]["content"], list) \
                    and all(b.get("type") == "tool_result" for b in out[-1]["content"]):
                out[-1]["content"].append(block)
            else:
                out.append({"role": "user", "content": [block]})
        elif m.get("tool_calls"):
            blocks: list[dict[str, Any]] = [{"type": "text", "text": m["content"]}] \
                if m["content"] else []
            blocks += [{"type": "tool_use", "id": c["id"], "name": c["name"],
                        "input": c["arguments"]} for c in m["tool_calls"]]
            out.append({"role": "assistant", "content": blocks})
        elif _images(m):
            images: list[dict[str, Any]] = [{"type": "image", "source": {
                "type": "base64", "media_type": i["media_type"], "data": i["data"]}}
                for i in _images(m)]
            out.append({"role": m["role"],
                        "content": [*images, {"type": "text", "text": m["content"]}]})
        else:
            out.append({"role": m["role"], "content": m["content"]})
    return out


def anthropic_tool_fields(call: Any) -> dict[str, Any]:
    """Anthropic's `tools` (name, description, input_schema) and `tool_choice`."""
    tools = tools_of(call)
    if not tools:
        return {}
    body: dict[str, Any] = {"tools": [
        {"name": t["function"]["name"], "input_schema": t["function"]["parameters"],
         **({"description": t["function"]["description"]}
            if t["function"].get("description") else {})} for t in tools]}
    choice = call.entry.case.tool_choice
    if choice is not None:
        body["tool_choice"] = {"auto": {"type": "auto"}, "required": {"type": "any"},
                               "none": {"type": "none"}}.get(choice,
                                                             {"type": "tool", "name": choice})
    return body
