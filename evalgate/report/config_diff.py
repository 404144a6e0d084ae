"""The report's configuration table: candidate and baseline settings side by side, every
value flattened to a dotted key, secret-looking header values masked, long values (prompts)
shown as a line diff."""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from itertools import zip_longest
from typing import Any

LONG_VALUE_CHARS = 80     # config values longer than this (or multi-line) get a line diff
DIFF_CONTEXT = 3          # unchanged prompt lines shown around each change
SECRET_HEADER = re.compile(r"auth|key|token|secret|cookie|password", re.IGNORECASE)


def value_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


@dataclass
class DiffLine:
    kind: str  # eq | chg | del | add | skip
    old: str | None
    new: str | None


@dataclass
class ConfigRow:
    key: str
    cand: str | None
    base: str | None
    changed: bool
    long: bool
    diff: list[DiffLine] = field(default_factory=list)


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as dotted keys (params.temperature), so each differing leaf is a row."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        elif name.startswith("headers.") and SECRET_HEADER.search(name) and value:
            out[name] = "(hidden: looks like a credential)"
        else:
            out[name] = value
    return out


def line_diff(old: str, new: str, context: int = DIFF_CONTEXT) -> list[DiffLine]:
    """Side-by-side line diff of two prompts: changed, removed and added lines with `context`
    equal lines around them; longer equal runs fold into one "skip" row."""
    a, b = old.splitlines(), new.splitlines()
    rows: list[DiffLine] = []
    ops = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    for n, (tag, i1, i2, j1, j2) in enumerate(ops):
        if tag == "equal":
            same = a[i1:i2]
            head = context if n > 0 else 0
            tail = context if n < len(ops) - 1 else 0
            if len(same) > head + tail + 1:
                rows += [DiffLine("eq", line, line) for line in same[:head]]
                rows.append(DiffLine("skip", f"... {len(same) - head - tail} unchanged lines",
                                     f"... {len(same) - head - tail} unchanged lines"))
                rows += [DiffLine("eq", line, line) for line in same[len(same) - tail:]]
            else:
                rows += [DiffLine("eq", line, line) for line in same]
        else:
            for left, right in zip_longest(a[i1:i2], b[j1:j2]):
                kind = "chg" if left is not None and right is not None else (
                    "del" if right is None else "add")
                rows.append(DiffLine(kind, left, right))
    if old != new and all(row.kind in ("eq", "skip") for row in rows):
        note = "(differs only in line endings or trailing whitespace)"
        rows.append(DiffLine("skip", note, note))
    return rows


def config_rows(cand: dict[str, Any], base: dict[str, Any] | None) -> list[ConfigRow]:
    """Every key of either config, candidate's order first; changed rows flagged."""
    c = flatten(cand)
    b = flatten(base) if base is not None else {}
    rows = []
    for key in [*c, *(k for k in b if k not in c)]:
        ct = value_text(c[key]) if key in c else None
        bt = value_text(b[key]) if key in b else None
        changed = base is not None and ct != bt
        long = any(t is not None and (len(t) > LONG_VALUE_CHARS or "\n" in t) for t in (ct, bt))
        diff = line_diff(bt, ct) if changed and long and ct is not None and bt is not None else []
        rows.append(ConfigRow(key, ct, bt, changed, long, diff))
    return rows
