"""Edits to a canary YAML file that keep it the reviewer's file: comments, key order, quoting
and indentation survive (ruamel.yaml round trip). Each edit reads the file afresh and writes
it atomically, so an edit made by hand meanwhile is kept and a crash leaves the old file."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.util import load_yaml_guess_indent


class EditError(ValueError):
    """The edit cannot be made (no such case, not a YAML set); nothing was written."""


def _yaml_for(text: str) -> YAML:
    _, indent, seq_indent = load_yaml_guess_indent(text)
    indent, seq_indent = indent or 2, seq_indent or 0
    y = YAML()
    y.preserve_quotes = True
    y.width = 4096  # never re-wrap a reviewer's long lines
    y.indent(mapping=max(2, indent - seq_indent), sequence=indent, offset=seq_indent)
    return y


def edit_case(path: Path, case_id: str, *, facts: list[str] | None = None,
              forbidden: list[str] | None = None, verified: dict[str, str] | None = None,
              unverify: bool = False) -> None:
    """Set a case's expected facts / forbidden statements and its `verified` mark."""
    if path.suffix not in (".yaml", ".yml"):
        raise EditError(f"{path.name} is not a YAML canary set: edit its references by hand")
    text = path.read_text(encoding="utf-8")
    y = _yaml_for(text)
    data = y.load(text)
    cases: Any = data.get("cases") if isinstance(data, dict) else data
    if not isinstance(cases, list):
        raise EditError(f"{path.name} has no list of cases")
    found = [c for c in cases if isinstance(c, dict) and str(c.get("id")) == case_id]
    if not found:
        raise EditError(f"{path.name} has no case {case_id!r} (renamed since the run?)")
    case = found[0]
    if facts is not None or forbidden is not None:
        expected = case.get("expected")
        if expected is None:
            expected = case["expected"] = {}
        for key, values in (("facts", facts), ("forbidden", forbidden)):
            if values is None:
                continue
            if key in expected and list(expected[key] or []) == values:
                continue  # unchanged: keep its formatting
            if values or key in expected:
                expected[key] = values
    if verified is not None:
        case["verified"] = verified
    elif unverify and "verified" in case:
        del case["verified"]
    out = io.StringIO()
    y.dump(data, out)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(out.getvalue(), encoding="utf-8")
    tmp.replace(path)
