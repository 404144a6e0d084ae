"""Bad tool, image and tokenizer input stops `pytest --evalgate` with a usage error (exit 4)
naming the file, the line and the field, before any call."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import sim_model, write_project

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}


def _line(path: Path, text: str) -> int:
    return next(i for i, t in enumerate(path.read_text().splitlines(), 1) if text in t)


def _tool_schema(root: Path) -> tuple[str, str]:
    bad = {"type": "function", "function": {"name": "t", "parameters": {
        "type": "object", "properties": {"x": {"minimum": "low"}}}}}
    write_project(root, model=sim_model(), canary_text=yaml.safe_dump(
        {"rubric": "basic", "cases": [{"id": "a", "prompt": "p", "tools": [bad]}]}))
    line = _line(root / "canaries" / "set.yaml", "minimum: low")
    return (f"canaries/set.yaml:{line}: cases.0.tools.0.function.parameters.properties.x."
            "minimum", "must be a number")


def _unknown_tool(root: Path) -> tuple[str, str]:
    write_project(root, model=sim_model(), canary_text=yaml.safe_dump(
        {"rubric": "basic", "tools": [WEATHER], "cases": [
            {"id": "a", "prompt": "p", "expected": {"tool_call": {"name": "book_flight"}}}]}))
    line = _line(root / "canaries" / "set.yaml", "name: book_flight")
    return f"canaries/set.yaml:{line}: cases.0.expected.tool_call.name", "'book_flight'"


def _not_an_image(root: Path) -> tuple[str, str]:
    write_project(root, model=sim_model(), canary_text=yaml.safe_dump(
        {"rubric": "basic", "cases": [{"id": "a", "prompt": "p", "images": ["x.png"]}]}))
    (root / "canaries" / "x.png").write_text("GIF? no, plain text")
    line = _line(root / "canaries" / "set.yaml", "x.png")
    return f"canaries/set.yaml:{line}: cases.0.images.0", "is not a PNG, JPEG, GIF or WebP"


def _bad_tokenizer(root: Path) -> tuple[str, str]:
    write_project(root, model={**sim_model(), "context_window": 1000, "tokenizer": "t.json"})
    (root / "models" / "t.json").write_text('{"model": {"type": "Nope"}}')
    line = _line(root / "models" / "candidate.yaml", "tokenizer:")
    return f"models/candidate.yaml:{line}: tokenizer", "does not load"


@pytest.mark.parametrize("make", [_tool_schema, _unknown_tool, _not_an_image, _bad_tokenizer])
def test_bad_input_is_exit_4_naming_file_line_and_field(tmp_path: Path, make: Any) -> None:
    where, why = make(tmp_path)
    if make is _bad_tokenizer:
        pytest.importorskip("tokenizers")
    out = subprocess.run([sys.executable, "-m", "pytest", "--evalgate", "-p", "no:cacheprovider",
                          "-q"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 4, out.stdout + out.stderr
    text = out.stdout + out.stderr
    assert where in text and why in text, text
