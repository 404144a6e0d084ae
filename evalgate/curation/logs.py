"""`evalgate canaries import LOGS`: real requests (JSONL or CSV) to a canary file.

Steps, in this order so that no PII reaches any output and the sample is reproducible:
read and map fields (dotted paths into JSON rows) -> scrub PII -> drop near duplicates ->
seeded stratified sample -> write the canary YAML (each case's `metadata.source` names its log
line) and a lock file (the input's hash, the seed, the counts)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from evalgate.curation.dedup import near_duplicates
from evalgate.curation.pii import Scrubber
from evalgate.errors import ConfigError, Problem

Stratify = Literal["none", "tag", "length", "route"]
LENGTH_BUCKETS = (80, 200, 500)  # characters: short, medium, long, very long


@dataclass(frozen=True)
class Mapping:
    """Which field of a log row holds what (dotted paths: `request.messages.0.content`)."""

    prompt: str = "prompt"
    answer: str | None = None  # None: the `answer` field when rows have one
    id: str | None = None
    context: str | None = None
    tag: str | None = None
    route: str | None = None


@dataclass
class Row:
    line: int
    prompt: str
    answer: str | None = None
    id: str | None = None
    context: str | None = None
    tags: list[str] = field(default_factory=list)
    route: str | None = None


@dataclass
class ImportReport:
    rows_read: int = 0
    skipped: int = 0  # rows without a prompt
    duplicates: int = 0
    sampled: int = 0
    pii: Counter[str] = field(default_factory=Counter)
    strata: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        pii = ", ".join(f"{n} {k.lower()}" for k, n in sorted(self.pii.items())) or "none"
        return [f"{self.rows_read} rows read, {self.skipped} without a prompt skipped, "
                f"{self.duplicates} near duplicates removed, {self.sampled} canaries written",
                f"PII replaced: {sum(self.pii.values())} ({pii})",
                "strata: " + ", ".join(f"{k} {v}" for k, v in sorted(self.strata.items()))]


def _get(data: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            raise KeyError(path)
    return data


def read_rows(path: Path, fmt: str | None = None) -> list[tuple[int, dict[str, Any]]]:
    """(line, row) for each row; a malformed line is a located error."""
    display = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(Problem(display, f"cannot read the log file: {exc}")) from None
    fmt = fmt or ("csv" if path.suffix.lower() == ".csv" else "jsonl")
    rows: list[tuple[int, dict[str, Any]]] = []
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        try:
            for row in reader:
                if None in row:
                    raise ConfigError(Problem(display, "more cells than header columns",
                                              reader.line_num))
                rows.append((reader.line_num, dict(row)))
        except csv.Error as exc:
            raise ConfigError(Problem(display, f"malformed CSV: {exc}", reader.line_num)
                              ) from None
        return rows
    problems = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, RecursionError, ValueError) as exc:
            problems.append(Problem(display, f"invalid JSON: {str(exc)[:100]}", number))
            continue
        if not isinstance(data, dict):
            problems.append(Problem(display, "a log line must be a JSON object", number))
            continue
        rows.append((number, data))
    if problems:
        raise ConfigError(problems[:20])
    return rows


def map_rows(rows: Sequence[tuple[int, dict[str, Any]]], mapping: Mapping, display: str,
             scrub: Callable[[str], str]) -> tuple[list[Row], int]:
    """Rows with the mapped fields (scrubbed); a mapped field no row has is an error."""
    given = {k: v for k, v in vars(mapping).items() if v}
    wanted = {"answer": "answer", **given}
    seen = dict.fromkeys(wanted, 0)
    out, skipped = [], 0
    for line, data in rows:
        got: dict[str, Any] = {}
        for name, path in wanted.items():
            try:
                value = _get(data, path)
            except KeyError:
                continue
            if value not in (None, ""):
                got[name] = value
                seen[name] += 1
        if not isinstance(got.get("prompt"), str | int | float):
            skipped += 1
            continue
        text = {k: scrub(str(v)) for k, v in got.items() if k != "tag"}.get
        tags = got.get("tag", [])
        tags = [str(t) for t in tags] if isinstance(tags, list) else [
            t for t in re.split(r"[,;|]\s*", str(tags)) if t]
        out.append(Row(line, text("prompt") or "", text("answer"),
                       text("id"), text("context"),
                       [scrub(t) for t in tags], text("route")))
    missing = [f"--{name}-field {path!r}" for name, path in given.items() if not seen[name]]
    if missing:
        example = ", ".join(sorted(rows[0][1])[:12]) if rows else ""
        raise ConfigError(Problem(display, f"no row has the field of {', '.join(missing)} "
                                  f"(fields of the first row: {example})"))
    return out, skipped


def stratum(row: Row, by: Stratify) -> str:
    if by == "tag":
        return row.tags[0] if row.tags else "(untagged)"
    if by == "route":
        return row.route or "(no route)"
    if by == "length":
        n = len(row.prompt)
        for i, edge in enumerate(LENGTH_BUCKETS):
            if n < edge:
                return f"len<{edge}" if i == 0 else f"len{LENGTH_BUCKETS[i - 1]}-{edge}"
        return f"len>={LENGTH_BUCKETS[-1]}"
    return "all"


def stratified_sample(items: Sequence[Any], key: Callable[[Any], str], n: int | None,
                      seed: int) -> list[Any]:
    """n items, each stratum in proportion to its size (largest remainders), drawn with a
    seeded RNG; the result keeps the input order. Proportional allocation keeps the strata's
    shares, so rates read off the sample (e.g. the judge's Se/Sp) need no reweighting."""
    if n is None or n >= len(items):
        return list(items)
    groups: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(key(item), []).append(i)
    quota = {k: n * len(v) / len(items) for k, v in groups.items()}
    take = {k: math.floor(q) for k, q in quota.items()}
    for k in sorted(quota, key=lambda k: (take[k] - quota[k], k))[:n - sum(take.values())]:
        take[k] += 1
    rng = random.Random(seed)
    chosen = [i for k in sorted(groups) for i in rng.sample(groups[k], take[k])]
    return [items[i] for i in sorted(chosen)]


def case_of(row: Row, source: str, seen_ids: set[str]) -> dict[str, Any]:
    base = row.id or "imp-" + hashlib.sha256(row.prompt.encode()).hexdigest()[:10]
    cid, k = base, 1
    while cid in seen_ids:
        k += 1
        cid = f"{base}-{k}"
    seen_ids.add(cid)
    case: dict[str, Any] = {"id": cid, "prompt": row.prompt}
    if row.context:
        case["context"] = row.context
    if row.answer:
        case["expected"] = {"reference": row.answer}
    if row.tags:
        case["tags"] = row.tags
    case["metadata"] = {"source": f"{source}:{row.line}",
                        **({"route": row.route} if row.route else {})}
    return case


def import_logs(logs: Path, out: Path, *, mapping: Mapping = Mapping(), fmt: str | None = None,
                sample: int | None = None, seed: int = 0, stratify: Stratify = "none",
                threshold: float = 0.8, scrub: bool = True,
                patterns: Sequence[tuple[str, re.Pattern[str]]] = ()) -> ImportReport:
    """Write the canary file `out` and `out` + `.lock`; returns what happened."""
    report = ImportReport()
    scrubber = Scrubber(patterns)
    rows = read_rows(logs, fmt)
    report.rows_read = len(rows)
    mapped, report.skipped = map_rows(rows, mapping, str(logs),
                                      scrubber if scrub else (lambda s: s))
    report.pii = scrubber.counts
    dups = near_duplicates([r.prompt for r in mapped], threshold, seed)
    report.duplicates = len(dups)
    unique = [r for i, r in enumerate(mapped) if i not in dups]
    chosen = stratified_sample(unique, lambda r: stratum(r, stratify), sample, seed)
    report.sampled = len(chosen)
    report.strata = dict(Counter(stratum(r, stratify) for r in chosen))
    ids: set[str] = set()
    cases = [case_of(r, logs.name, ids) for r in chosen]
    body = {"description": f"imported from {logs.name} (evalgate canaries import)",
            "cases": cases}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=100),
                   encoding="utf-8")
    lock = {"input": logs.name, "input_sha256": hashlib.sha256(logs.read_bytes()).hexdigest(),
            "seed": seed, "sample": sample, "count": len(cases), "rows_read": report.rows_read,
            "duplicates_removed": report.duplicates, "threshold": threshold,
            "stratify": stratify, "pii_scrubbed": scrub, "pii_replaced": dict(report.pii),
            "mapping": {k: v for k, v in vars(mapping).items() if v}}
    lock_path(out).write_text(json.dumps(lock, indent=1, sort_keys=True) + "\n",
                              encoding="utf-8")
    return report


def lock_path(out: Path) -> Path:
    return out.with_name(out.name + ".lock")
