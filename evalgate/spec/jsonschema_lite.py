"""A small JSON Schema validator for the subset rubrics need (no dependency on `jsonschema`).

Supported keywords: type (string or list; "integer" excludes booleans and non-integral
floats), properties, required, additionalProperties (bool or schema), items (one schema),
enum, const, minimum, maximum, exclusiveMinimum, exclusiveMaximum, minLength, maxLength,
minItems, maxItems, pattern (re.search, like JSON Schema). Anything else in a schema is a
config error at load time (`check_schema`), so a typo never silently validates everything.
"""

from __future__ import annotations

import json
import re
from typing import Any

KEYWORDS = frozenset({
    "type", "properties", "required", "additionalProperties", "items", "enum", "const",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength",
    "minItems", "maxItems", "pattern", "description", "title", "$schema",
})
TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})


def check_schema(schema: Any, at: str = "schema") -> list[str]:
    """Problems with the schema itself (unknown keyword, bad type name, bad pattern)."""
    if not isinstance(schema, dict):
        return [f"{at}: a schema is a mapping"]
    problems = [f"{at}: unsupported keyword {k!r} (supported: {', '.join(sorted(KEYWORDS))})"
                for k in schema if k not in KEYWORDS]
    types = schema.get("type")
    for t in [types] if isinstance(types, str) else types or []:
        if t not in TYPES:
            problems.append(f"{at}.type: unknown type {t!r}")
    if types is not None and not isinstance(types, str | list):
        problems.append(f"{at}.type: a type name or a list of them")
    if "pattern" in schema:
        try:
            re.compile(schema["pattern"])
        except (re.error, TypeError) as exc:
            problems.append(f"{at}.pattern: invalid regular expression: {exc}")
    for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        if key in schema and not _is_type(schema[key], "number"):
            problems.append(f"{at}.{key}: must be a number, got {_kind(schema[key])}")
    for key in ("minLength", "maxLength", "minItems", "maxItems"):
        if key in schema and not (_is_type(schema[key], "integer") and schema[key] >= 0):
            problems.append(f"{at}.{key}: must be a non-negative integer")
    if "enum" in schema and not isinstance(schema["enum"], list):
        problems.append(f"{at}.enum: must be a list")
    if "required" in schema and not (isinstance(schema["required"], list)
                                     and all(isinstance(n, str) for n in schema["required"])):
        problems.append(f"{at}.required: must be a list of property names")
    if "properties" in schema and not isinstance(schema["properties"], dict):
        problems.append(f"{at}.properties: must be a mapping")
    for name, sub in (schema.get("properties") or {}).items() \
            if isinstance(schema.get("properties"), dict) else ():
        problems += check_schema(sub, f"{at}.properties.{name}")
    for key in ("items", "additionalProperties"):
        sub = schema.get(key)
        if isinstance(sub, dict):
            problems += check_schema(sub, f"{at}.{key}")
        elif sub is not None and not (key == "additionalProperties" and isinstance(sub, bool)):
            problems.append(f"{at}.{key}: must be a schema (a mapping)"
                            + (" or a boolean" if key == "additionalProperties" else "")
                            + " (the list form of items is not supported)")
    return problems


def _same(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1 and false is not 0 (Python says they are)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


def _is_type(value: Any, name: str) -> bool:
    if name == "null":
        return value is None
    if name == "boolean":
        return isinstance(value, bool)
    if name == "integer":
        return isinstance(value, int | float) and not isinstance(value, bool) \
            and float(value).is_integer()
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if name == "string":
        return isinstance(value, str)
    if name == "array":
        return isinstance(value, list)
    return isinstance(value, dict)


def validate(value: Any, schema: dict[str, Any], at: str = "$") -> list[str]:
    """Every violation, as `<json path>: <why>`; empty when the value is valid."""
    errors: list[str] = []
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if not any(_is_type(value, t) for t in names):
            return [f"{at}: expected {' or '.join(names)}, got {_kind(value)}"]
    if "enum" in schema and not any(_same(value, option) for option in schema["enum"]):
        errors.append(f"{at}: {value!r} is not one of {schema['enum']!r}")
    if "const" in schema and not _same(value, schema["const"]):
        errors.append(f"{at}: {value!r} is not {schema['const']!r}")
    if _is_type(value, "number"):
        for key, bad in (("minimum", lambda v, b: v < b), ("maximum", lambda v, b: v > b),
                         ("exclusiveMinimum", lambda v, b: v <= b),
                         ("exclusiveMaximum", lambda v, b: v >= b)):
            if key in schema and bad(value, schema[key]):
                errors.append(f"{at}: {value!r} violates {key} {schema[key]!r}")
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(f"{at}: shorter than minLength {schema['minLength']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{at}: longer than maxLength {schema['maxLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{at}: does not match pattern {schema['pattern']!r}")
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append(f"{at}: fewer than minItems {schema['minItems']}")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{at}: more than maxItems {schema['maxItems']}")
        if isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                errors += validate(item, schema["items"], f"{at}[{i}]")
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for name in schema.get("required") or []:
            if name not in value:
                errors.append(f"{at}: missing required property {name!r}")
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in props:
                errors += validate(item, props[name], f"{at}.{name}")
            elif extra is False:
                errors.append(f"{at}: unexpected property {name!r}")
            elif isinstance(extra, dict):
                errors += validate(item, extra, f"{at}.{name}")
    return errors


def _kind(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _is_type(value, name):
            return name
    return type(value).__name__


def short_json(value: Any, limit: int = 200) -> str:
    """A value as compact JSON (its repr when it is not JSON), cut at `limit` characters."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "), sort_keys=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
