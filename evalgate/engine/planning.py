"""Planning the calls: the messages a model config sends for a canary, and every (canary,
sample) request of a run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from evalgate.spec.canaries import Case, Message
from evalgate.spec.config import LoadedModel
from evalgate.spec.templating import render_text


class Canary(Protocol):
    """What the engine needs of a canary entry (grading's CaseEntry): its key, set and case."""

    @property
    def key(self) -> str: ...

    @property
    def set_name(self) -> str: ...

    @property
    def case(self) -> Case: ...


@dataclass(frozen=True)
class PlannedCall:
    """One request to make: a canary, a sample index, the messages the model config builds."""

    entry: Canary
    sample: int
    messages: list[dict[str, Any]]

    @property
    def record_id(self) -> str:
        return f"{self.entry.key}#{self.sample}"


def _turns(turns: list[Message], case: Case) -> list[dict[str, Any]]:
    """A conversation in the providers' neutral form: an assistant turn's earlier tool calls
    get ids (`call_<turn>_<k>` when the canary gives none) and a tool turn is tied to its
    call by id (the latest call of that tool when it names only the tool)."""
    out: list[dict[str, Any]] = []
    by_name: dict[str, str] = {}
    by_id: dict[str, str] = {}
    for i, m in enumerate(turns):
        turn: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.tool_calls:
            turn["tool_calls"] = []
            for k, c in enumerate(m.tool_calls):
                call_id = c.id or f"call_{i}_{k}"
                by_name[c.name], by_id[call_id] = call_id, c.name
                turn["tool_calls"].append({"id": call_id, "name": c.name,
                                           "arguments": c.arguments})
        if m.images:
            turn["images"] = [case.image(name).message_part() for name in m.images]
        if m.role == "tool":
            turn["tool_call_id"] = m.tool_call_id or by_name.get(m.name or "", m.name)
            turn["name"] = m.name or by_id.get(m.tool_call_id or "", "")
        out.append(turn)
    return out


def build_messages(model: LoadedModel, case: Case) -> list[dict[str, Any]]:
    """The chat messages a model config sends for a canary (system prompt, template, turns)."""
    messages: list[dict[str, Any]] = []
    has_system = case.messages is not None and any(m.role == "system" for m in case.messages)
    if model.system_prompt and not has_system:
        messages.append({"role": "system", "content": model.system_prompt})
    if case.messages is not None:
        messages += _turns(case.messages, case)
        return messages
    if model.prompt_template is not None:
        text = render_text(model.prompt_template, {
            "prompt": case.prompt, "context": case.context, "case": case.model_dump(mode="json"),
            "tags": case.tags, "metadata": case.metadata})
    elif case.context:
        text = f"Context:\n{case.context}\n\nQuestion: {case.prompt}"
    else:
        text = case.prompt or ""
    turn: dict[str, Any] = {"role": "user", "content": text}
    if case.images:
        turn["images"] = [case.image(name).message_part() for name in case.images]
    messages.append(turn)
    return messages


def plan_calls(model: LoadedModel, entries: Sequence[Canary], samples: int) -> list[PlannedCall]:
    """Every (canary, sample) request, in canary order."""
    calls = []
    for entry in entries:
        messages = build_messages(model, entry.case)
        calls += [PlannedCall(entry, k, messages) for k in range(samples)]
    return calls
