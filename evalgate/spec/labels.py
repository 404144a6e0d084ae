"""Reviewers' labels: what a person said about one answer (`labels/*.jsonl`).

One JSON object a line: the canary's key, the answer's hash, the label, the reviewer and the
time. Files are only ever appended to, so a label once written is never lost; two reviewers
who disagree on an answer both stay on file (the gate reports their agreement).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from evalgate.errors import ConfigError, Problem
from evalgate.spec.yamlio import LineMap, load_jsonl, problems_from_validation

LabelName = Literal["correct", "hallucination", "other", "unsure"]
LABELS: tuple[str, ...] = ("correct", "hallucination", "other", "unsure")


class Label(BaseModel):
    """One reviewer's verdict on one answer."""

    model_config = ConfigDict(extra="forbid")
    canary: str = Field(min_length=1)   # the canary's key: <set>/<id>
    answer: str = Field(min_length=1)   # answer_hash() of the answer's text
    label: LabelName
    reviewer: str = Field(min_length=1)
    at: str = Field(min_length=1)       # ISO 8601, UTC
    config: str | None = None           # candidate | baseline: whose answer it was
    note: str | None = None

    @property
    def hallucination(self) -> bool | None:
        """The label as the judge's question: None when the reviewer was unsure."""
        return None if self.label == "unsure" else self.label == "hallucination"


def answer_hash(text: str | None) -> str:
    """A short, stable id of an answer's text (what a label points at)."""
    return hashlib.sha256((text or "").encode("utf-8")).hexdigest()[:16]


def label_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.jsonl")) if directory.is_dir() else []


def load_labels(directory: Path, root: Path | None = None) -> list[Label]:
    """Every label under `directory`; every malformed line is reported, with its place."""
    labels: list[Label] = []
    problems: list[Problem] = []
    for path in label_files(directory):
        display = str(path.relative_to(root)) if root and path.is_relative_to(root) else str(path)
        try:
            rows = load_jsonl(path, display)
        except ConfigError as exc:
            problems += exc.problems
            continue
        for number, data in rows:
            try:
                labels.append(Label.model_validate(data))
            except ValidationError as exc:
                problems += problems_from_validation(exc, display, LineMap({(): number}))
    if problems:
        raise ConfigError(problems)
    return labels


def append_labels(path: Path, labels: Iterable[Label]) -> None:
    """Append and fsync: a crash leaves whole lines, and earlier lines are never rewritten."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(lab.model_dump(exclude_none=True), ensure_ascii=False) + "\n"
                    for lab in labels)
    with path.open("a", encoding="utf-8") as out:
        out.write(lines)
        out.flush()
        os.fsync(out.fileno())
