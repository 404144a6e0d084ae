"""Canary sets: real business prompts with references, loaded from YAML or JSONL."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from evalgate.errors import ConfigError, Problem
from evalgate.spec.images import ImageRef, load_image
from evalgate.spec.tools import (
    ExpectedToolCall,
    Tool,
    ToolCallTurn,
    expected_problems,
    tool_problems,
)
from evalgate.spec.yamlio import LineMap, load_jsonl, load_yaml, problems_from_validation

CANARY_SUFFIXES = (".yaml", ".yml", ".jsonl")


class Message(BaseModel):
    """One turn. A multi-step tool canary carries its earlier tool calls (`tool_calls` on an
    assistant turn) and their results (a `tool` turn with `name` or `tool_call_id`)."""

    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    tool_calls: list[ToolCallTurn] | None = None
    tool_call_id: str | None = None
    name: str | None = None
    images: list[str] | None = None  # paths relative to the canary file (a user turn)

    @model_validator(mode="after")
    def _tool_fields(self) -> Message:
        if self.images is not None and self.role != "user":
            raise ValueError("'images' go on a user turn")
        if self.tool_calls is not None and self.role != "assistant":
            raise ValueError("'tool_calls' goes on an assistant turn")
        if (self.tool_call_id is not None or self.name is not None) and self.role != "tool":
            raise ValueError("'tool_call_id' and 'name' go on a tool turn")
        if self.role == "tool" and self.tool_call_id is None and self.name is None:
            raise ValueError("a tool turn needs 'name' (the tool) or 'tool_call_id'")
        return self


class Expected(BaseModel):
    model_config = ConfigDict(extra="forbid")
    facts: list[str] = Field(default_factory=list)
    forbidden: list[str] = Field(default_factory=list)
    reference: str | None = None
    tool_call: ExpectedToolCall | None = None  # the call a good answer makes
    tool_sequence: list[str] | None = None  # every call's tool name, earlier turns first


class Verified(BaseModel):
    """Who checked a canary's references by hand, and when (`evalgate review` writes it)."""

    model_config = ConfigDict(extra="forbid")
    by: str = Field(min_length=1)
    at: str = Field(min_length=1)  # ISO 8601 date or time

    @field_validator("at", mode="before")
    @classmethod
    def _date_as_text(cls, value: Any) -> Any:
        return value.isoformat() if hasattr(value, "isoformat") else value


class Case(BaseModel):
    """One canary: a prompt (or a conversation) and what a good answer states and avoids."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)
    prompt: str | None = None
    messages: list[Message] | None = None
    context: str | None = None
    expected: Expected = Field(default_factory=Expected)
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    rubric: str | None = None
    tools: list[Tool] | None = None  # offered to the model (OpenAI function format)
    tool_choice: str | None = None  # auto | required | none | a tool's name
    images: list[str] | None = None  # with `prompt`: images on its turn (paths from the file)
    # Review metadata, left out of every dump (fingerprints, cache keys, templates): verifying
    # a canary does not make it a changed canary.
    verified: Verified | None = Field(None, exclude=True)
    _images: dict[str, ImageRef] = PrivateAttr(default_factory=dict)  # read at load

    def image(self, name: str) -> ImageRef:
        return self._images[name]

    def image_refs(self) -> list[ImageRef]:
        return list(self._images.values())

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _prompt_or_messages(self) -> Case:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of 'prompt' or 'messages'")
        if self.messages is not None and not any(m.role == "user" for m in self.messages):
            raise ValueError("'messages' needs at least one message with role 'user'")
        if self.images is not None and self.messages is not None:
            raise ValueError("with 'messages', give 'images' on the user turn they go with")
        return self

    @property
    def user_text(self) -> str:
        """The text of the last user turn: what the canary asks."""
        if self.prompt is not None:
            return self.prompt
        assert self.messages is not None
        return next(m.content for m in reversed(self.messages) if m.role == "user")


class CanarySetFile(BaseModel):
    """The YAML form of a set: shared settings and the cases."""

    model_config = ConfigDict(extra="forbid")
    description: str | None = None
    rubric: str | None = None
    tags: list[str] = Field(default_factory=list)
    tools: list[Tool] | None = None  # offered to every case that gives none of its own
    cases: list[dict[str, Any]]


@dataclass
class CanarySet:
    name: str
    path: Path
    display: str
    cases: list[Case]
    rubric: str | None = None
    lines: dict[str, int] = field(default_factory=dict)

    def fingerprint(self) -> str:
        payload: list[Any] = [c.model_dump(mode="json") for c in self.cases]
        hashes = [[i.sha256 for i in c.image_refs()] for c in self.cases]
        if any(hashes):  # only then: sets without images keep their fingerprint
            payload.append(hashes)
        return hashlib.sha256(json.dumps([self.name, self.rubric, payload], sort_keys=True)
                              .encode()).hexdigest()[:16]


def case_key(set_name: str, case_id: str) -> str:
    return f"{set_name}/{case_id}"


def _validate_cases(
    raw_cases: list[tuple[Any, int | None, tuple[int | str, ...], LineMap]],
    display: str,
    shared_tags: list[str],
    shared_tools: list[Tool] | None = None,
    base: Path | None = None,
) -> tuple[list[Case], dict[str, int], list[Problem]]:
    cases: list[Case] = []
    lines: dict[str, int] = {}
    problems: list[Problem] = []
    for raw, line, prefix, sub in raw_cases:
        if not isinstance(raw, dict):
            problems.append(Problem(display, "a case must be a mapping with at least 'id' and "
                                    "'prompt'", line, ".".join(map(str, prefix))))
            continue
        try:
            case = Case.model_validate(raw)
        except ValidationError as exc:
            problems += problems_from_validation(exc, display, sub, prefix, model=Case)
            continue
        if case.id in lines:
            field = ".".join(map(str, (*prefix, "id")))
            problems.append(Problem(display, f"duplicate case id {case.id!r} (first at line "
                                    f"{lines[case.id]})", line, field))
            continue
        if shared_tags:
            case.tags = list(dict.fromkeys([*shared_tags, *case.tags]))
        if case.tools is None and shared_tools is not None:
            case.tools = list(shared_tools)
        elif case.tools is not None:
            problems += tool_problems(case.tools, display, sub, prefix)
        problems += _read_images(case, base, display, sub, prefix)
        problems += expected_problems([t.name for t in case.tools or []], case.expected.tool_call,
                                      case.tool_choice, display, sub, prefix)
        cases.append(case)
        lines[case.id] = line or 0
    return cases, lines, problems


def _read_images(case: Case, base: Path | None, display: str, lines: LineMap,
                 prefix: tuple[int | str, ...]) -> list[Problem]:
    """Read and check every image of a case (paths relative to the canary file)."""
    turns: list[tuple[tuple[int | str, ...], list[str]]] = [(("images",), case.images or [])]
    turns += [(("messages", i, "images"), m.images or [])
              for i, m in enumerate(case.messages or [])]
    problems = []
    for at, names in turns:
        for j, name in enumerate(names):
            try:
                case._images[name] = load_image(base or Path("."), name)
            except (ValueError, OSError) as exc:
                problems.append(Problem(display, str(exc), lines.line_of((*at, j)),
                                        ".".join(map(str, (*prefix, *at, j)))))
    return problems


def load_canary_file(path: Path, set_name: str, display: str) -> CanarySet:
    if path.suffix == ".jsonl":
        rows = load_jsonl(path, display)
        raw = [(data, number, (), LineMap({(): number})) for number, data in rows]
        cases, lines, problems = _validate_cases(raw, display, [], None, path.parent)
        rubric = None
    else:
        data, linemap = load_yaml(path, display)
        if isinstance(data, list):
            data = {"cases": data}
            # Re-root the line map too, so case `i` is found at ("cases", i), not at line 1.
            linemap = LineMap({(): linemap.line_of(()) or 1,
                               **{("cases", *k): v for k, v in linemap.lines.items()}})
        if not isinstance(data, dict):
            raise ConfigError(Problem(display, "a canary set is a mapping with 'cases' (or a "
                                      "list of cases)", linemap.line_of(())))
        try:
            head = CanarySetFile.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(problems_from_validation(exc, display, linemap,
                                                        model=CanarySetFile)) from None
        raw = [
            (item, linemap.line_of(("cases", i)), ("cases", i), linemap.sub(("cases", i)))
            for i, item in enumerate(head.cases)
        ]
        problems = tool_problems(head.tools or [], display, linemap, ())
        cases, lines, more = _validate_cases(raw, display, head.tags, head.tools, path.parent)
        problems += more
        rubric = head.rubric
    if problems:
        raise ConfigError(problems)
    if not cases:
        raise ConfigError(Problem(display, "the canary set has no cases", None, "cases"))
    return CanarySet(set_name, path, display, cases, rubric, lines)


def discover_canary_files(paths: list[Path]) -> list[tuple[Path, Path]]:
    """(file, root it was found under) for every canary file, in a stable order."""
    found: list[tuple[Path, Path]] = []
    for root in paths:
        if root.is_file():
            found.append((root, root.parent))
        elif root.is_dir():
            found += [(p, root) for p in sorted(root.rglob("*"))
                      if p.is_file() and p.suffix in CANARY_SUFFIXES]
    return found


def set_name_for(path: Path, root: Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix()
