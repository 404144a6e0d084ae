"""Names of the gate's pytest items, and the way back from a collected node id to the
(canary, sample) call it runs on: xdist workers report only node ids."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from pathlib import Path

import pytest

from evalgate.grading.rubrics import CaseEntry

GATE_NODE = "evalgate"


def item_name(entry: CaseEntry, sample: int, samples: int) -> str:
    return entry.case.id if samples == 1 else f"{entry.case.id}[{sample}]"



def case_key(item: pytest.Item) -> str | None:
    """The canary key a test using the `evalgate_case` fixture runs on, else None."""
    key = getattr(getattr(item, "callspec", None), "params", {}).get("evalgate_case")
    return key if isinstance(key, str) else None


def record_ids_from_nodeids(ids: Iterable[str], *, rootpath: Path,
                            entries_by_file: dict[Path, list[CaseEntry]], samples: int,
                            known_keys: Collection[str]) -> list[str]:
    """Map the node ids a worker collected back to (canary, sample) record ids."""
    by_name: dict[tuple[str, str], str] = {}
    suffixes: list[tuple[str, Path]] = []
    for path, entries in entries_by_file.items():
        try:
            shown = path.relative_to(rootpath).as_posix()
        except ValueError:
            shown = path.as_posix()
        suffixes.append((shown, path))
        for entry in entries:
            for k in range(samples):
                by_name[(shown, item_name(entry, k, samples))] = f"{entry.key}#{k}"
    selected = []
    for nodeid in ids:
        file_part, sep, name = nodeid.partition("::")
        if not sep or file_part == GATE_NODE:
            continue
        shown = next((s for s, p in suffixes if s == file_part
                      or p.as_posix().endswith("/" + file_part)), None)
        if shown is not None and (shown, name) in by_name:
            selected.append(by_name[(shown, name)])
        elif name.endswith("]") and "[" in name:  # a test using evalgate_case[<key>]
            key = name[name.index("[") + 1:-1]
            if key in known_keys:
                selected += [f"{key}#{k}" for k in range(samples)]
    return selected
