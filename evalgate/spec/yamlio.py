"""YAML and JSONL loading that remembers where every value came from.

Pydantic tells us *which* field is wrong (a location tuple); this module maps that tuple back
to a line in the file, so an error reads `canaries/support.yaml:14: cases.2.expected.facts: ...`.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from evalgate.errors import ConfigError, Problem

Loc = tuple[int | str, ...]


class LineMap:
    """Maps a location (keys and list indices from the document root) to a 1-based line."""

    def __init__(self, lines: dict[Loc, int] | None = None,
                 text_lines: dict[Loc, int] | None = None, root: Loc = ()) -> None:
        self.lines: dict[Loc, int] = lines or {}
        # Where the text of a literal block scalar (`key: |`) starts: the line after the key.
        self.text_lines: dict[Loc, int] = text_lines or {}
        self.root = root  # a sub-document's map is a view: locations are relative to `root`

    def has(self, loc: Iterable[int | str]) -> bool:
        return (*self.root, *loc) in self.lines

    def line_of(self, loc: Iterable[int | str]) -> int | None:
        """Line of the deepest known prefix of `loc` (pydantic adds union/validator tags)."""
        path = (*self.root, *loc)
        while len(path) > len(self.root):
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(self.root)

    def text_line(self, loc: Iterable[int | str]) -> int | None:
        """Line of the first line of text of the string at `loc` (for template errors)."""
        return self.text_lines.get((*self.root, *loc)) or self.line_of(loc)

    def sub(self, prefix: Loc) -> LineMap:
        """The map of a sub-document, re-rooted at `prefix` (a view: no copying)."""
        return LineMap(self.lines, self.text_lines, (*self.root, *prefix))


# Bounds on what a config file may be: deeper nesting overflows the (recursive) composer, and
# aliases that expand past the node budget are a "billion laughs" document.
MAX_DEPTH = 200
MAX_NODES = 200_000


def _walk(node: yaml.Node, loc: Loc, lines: dict[Loc, int], file: str,
          text_lines: dict[Loc, int], budget: list[int] | None = None,
          active: set[int] | None = None) -> None:
    budget = [MAX_NODES] if budget is None else budget
    active = set() if active is None else active
    budget[0] -= 1
    if budget[0] < 0:
        raise ConfigError(Problem(file, "document too large (aliases expand to more than "
                                  f"{MAX_NODES} values)", node.start_mark.line + 1))
    if id(node) in active:
        raise ConfigError(Problem(file, "invalid YAML: recursive alias (a value contains "
                                  "itself)", node.start_mark.line + 1))
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.ScalarNode) and node.style == "|":
        text_lines[loc] = node.start_mark.line + 2
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    Problem(file, f"duplicate key {key!r} (first at line {seen[key]})", line,
                            ".".join(map(str, (*loc, key))))
                )
            seen[key] = line
            lines[(*loc, key)] = line
            active.add(id(node))
            _walk(value_node, (*loc, key), lines, file, text_lines, budget, active)
            active.discard(id(node))
            lines[(*loc, key)] = line
    elif isinstance(node, yaml.SequenceNode):
        active.add(id(node))
        for i, item in enumerate(node.value):
            _walk(item, (*loc, i), lines, file, text_lines, budget, active)
        active.discard(id(node))


# libyaml's safe loader when PyYAML was built with it (several times faster), else pure Python.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_yaml(text: str, file: str) -> tuple[Any, LineMap]:
    """Parse YAML safely (never constructs Python objects) and record each value's line."""
    loader = _LOADER(text)
    try:
        _check_depth(text, file)
        node = loader.get_single_node()
        if node is not None:
            # Cycles and alias bombs are rejected on the node graph, before constructing data.
            lines: dict[Loc, int] = {}
            text_lines: dict[Loc, int] = {}
            _walk(node, (), lines, file, text_lines)
        data = loader.construct_document(node) if node is not None else None
    except (ValueError, OverflowError) as exc:  # e.g. `2001-02-30`, an int of 5000 digits
        raise ConfigError(Problem(file, f"invalid YAML value: {exc}")) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and context_mark is not None and context_mark.line + 1 != line:
            problem += f" ({context} that starts at line {context_mark.line + 1})"
        raise ConfigError(Problem(file, f"invalid YAML: {problem}", line)) from None
    finally:
        loader.dispose()
    if node is None:
        return data, LineMap({}, {})
    return data, LineMap(lines, text_lines)


def _check_depth(text: str, file: str) -> None:
    """Reject nesting deeper than MAX_DEPTH from the event stream (iterative, unlike the
    composer, which overflows the C stack on `[[[[...`)."""
    depth = 0
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise ConfigError(Problem(file, f"invalid YAML: nested more than {MAX_DEPTH} "
                                          "levels deep", event.start_mark.line + 1))
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def read_text(path: Path, display: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(Problem(display, "file not found")) from None
    except (OSError, ValueError) as exc:  # ValueError: undecodable bytes, NUL in the path
        raise ConfigError(Problem(display, f"cannot read file: {exc}")) from None


def load_yaml(path: Path, display: str | None = None) -> tuple[Any, LineMap]:
    display = display or str(path)
    return parse_yaml(read_text(path, display), display)


def load_jsonl(path: Path, display: str | None = None) -> list[tuple[int, Any]]:
    """Each non-blank line of a JSONL file with its line number. A leading byte order mark
    (editors on Windows write one) is not part of the first line, as in YAML."""
    display = display or str(path)
    rows: list[tuple[int, Any]] = []
    text = read_text(path, display).removeprefix("\ufeff")
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            rows.append((number, json.loads(raw)))
        except json.JSONDecodeError as exc:
            raise ConfigError(Problem(display, f"invalid JSON: {exc.msg} (column {exc.colno})",
                                      number)) from None
        except (ValueError, RecursionError) as exc:  # a 5000-digit int, `[[[[...`
            raise ConfigError(Problem(display, f"invalid JSON: {str(exc)[:100]}", number)) from None
    return rows


def _field_name(loc: Loc) -> str:
    return ".".join(str(part) for part in loc) or "(document)"


def problems_from_validation(
    exc: ValidationError, file: str, lines: LineMap, prefix: Loc = (),
    model: type[BaseModel] | None = None,
) -> list[Problem]:
    """Turn a pydantic ValidationError into located, readable problems; with the validated
    `model`, an unknown field gets a "did you mean" from the fields allowed there."""
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(part for part in err["loc"] if not _is_pydantic_tag(part))
        message = err["msg"]
        field_error = _FIELD_ERROR.match(message)
        if field_error:  # a cross-field check that names its field (see field_error())
            field, anchor, message = field_error.groups()
            line = lines.line_of((*loc, field)) if lines.has((*loc, field)) else \
                lines.line_of((*loc, anchor or field))
            problems.append(Problem(file, message, line, _field_name((*prefix, *loc, field))))
            continue
        if err["type"] == "extra_forbidden":
            message = "unknown field (not allowed here)" + did_you_mean(model, loc)
        elif "input" in err and err["type"] not in ("missing",) and _short(err["input"]):
            message = f"{message} (got {_short(err['input'])})"
        problems.append(Problem(file, message, lines.line_of(loc), _field_name((*prefix, *loc))))
    return problems


def did_you_mean(model: type[BaseModel] | None, loc: Loc) -> str:
    """'; did you mean 'samples'?' for a misspelt field at `loc`, or ''."""
    allowed = _fields_at(model, loc[:-1]) if model is not None and loc else []
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.7) if loc else []
    return f"; did you mean {close[0]!r}?" if close else ""


def _fields_at(model: type[BaseModel], path: Loc) -> list[str]:
    """The field names (and aliases) of the model found by walking `path` from `model`."""
    current: Any = model
    keyed = False  # the previous field was a mapping: this part is one of its keys
    for part in path:
        if isinstance(part, int) or keyed or not _is_model(current):
            keyed = False
            continue
        info = current.model_fields.get(part) or next(
            (f for f in current.model_fields.values() if f.alias == part), None)
        if info is None:
            return []
        keyed = _is_mapping(info.annotation)
        current = _model_in(info.annotation)
    if not _is_model(current):
        return []
    return [*current.model_fields, *(f.alias for f in current.model_fields.values() if f.alias)]


def _is_mapping(annotation: Any) -> bool:
    """`dict[...]`, also inside `X | None`."""
    if typing.get_origin(annotation) is dict:
        return True
    return any(_is_mapping(arg) for arg in typing.get_args(annotation)
               if typing.get_origin(annotation) is not list)


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _model_in(annotation: Any) -> Any:
    """The model class inside `X | None`, `list[X]`, `dict[str, X]` (else the annotation)."""
    if _is_model(annotation):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if _is_model(found):
            return found
    return annotation


_FIELD_ERROR = re.compile(r"^Value error, @(\w+)(?:@(\w+))?: (.*)$", re.S)


def field_error(field: str, message: str, anchor: str | None = None) -> ValueError:
    """A model-level validation error that belongs to one field (or, when that field is absent,
    to `anchor`, e.g. the `provider:` line for "provider 'openai' needs 'model'")."""
    return ValueError(f"@{field}{'@' + anchor if anchor else ''}: {message}")


def _is_pydantic_tag(part: int | str) -> bool:
    # Union members and validator names pydantic inserts into locations, e.g. 'function-after[...]'.
    if not isinstance(part, str):
        return False
    return ("[" in part and part.endswith("]")) or part in {"str", "int"}


def _short(value: Any) -> str:
    if isinstance(value, dict | list):
        return ""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def digest(payload: Any) -> str:
    """A short stable hash of a JSON-able payload (config fingerprints)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def validate(model: type[BaseModel], data: Any, file: str, lines: LineMap) -> Any:
    """Validate `data` as `model`, raising one ConfigError that lists every located problem."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(Problem(file, f"expected a mapping of fields, got {type(data).__name__}",
                                  lines.line_of(())))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(problems_from_validation(exc, file, lines, model=model)) from None
