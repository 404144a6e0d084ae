"""Shared test helpers: write a small evalgate project to a folder, start the simulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from evalgate.sim import SimServer

RUBRIC = {
    "criteria": [
        {"id": "states-facts", "check": "contains_all", "values": "{{ case.expected.facts }}"},
        {"id": "no-forbidden", "kind": "hallucination", "check": "contains_none",
         "values": "{{ case.expected.forbidden }}"},
    ]
}


def make_cases(n: int, prefix: str = "c") -> list[dict[str, Any]]:
    """n canaries whose correct answer states '<n> days' and never '<n+1000> days'."""
    return [{"id": f"{prefix}{i}", "prompt": f"Question {i}: how many days for policy {i}?",
             "expected": {"facts": [f"{i} days"], "forbidden": [f"{i + 1000} days"]},
             "tags": ["even" if i % 2 == 0 else "odd"]} for i in range(n)]


def write_project(root: Path, *, model: dict[str, Any], cases: list[dict[str, Any]] | None = None,
                  gate: dict[str, Any] | None = None, rubric: dict[str, Any] | None = None,
                  canary_text: str | None = None) -> Path:
    """Write evalgate.yaml, models/candidate.yaml, canaries/set.yaml, rubrics/basic.yaml."""
    (root / "models").mkdir(parents=True, exist_ok=True)
    (root / "canaries").mkdir(exist_ok=True)
    (root / "rubrics").mkdir(exist_ok=True)
    config = {"candidate": "models/candidate.yaml", "canaries": "canaries",
              "rubrics": "rubrics", "concurrency": 8, **(gate or {})}
    (root / "evalgate.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (root / "models" / "candidate.yaml").write_text(yaml.safe_dump(model, sort_keys=False))
    if canary_text is not None:
        (root / "canaries" / "set.yaml").write_text(canary_text)
    else:
        body = {"rubric": "basic", "cases": cases if cases is not None else make_cases(6)}
        (root / "canaries" / "set.yaml").write_text(yaml.safe_dump(body, sort_keys=False))
    (root / "rubrics" / "basic.yaml").write_text(yaml.safe_dump(rubric or RUBRIC))
    return root


def sim_model(**profile: Any) -> dict[str, Any]:
    """A `provider: sim` model config with a fast default profile."""
    return {"provider": "sim", "model": "m", "timeout_s": 5, "max_retries": 2,
            "pricing": {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
            "sim": {"latency_ms": 1, **profile}}


def sim_cases_from(cases: list[dict[str, Any]], set_name: str = "set") -> list[Any]:
    from evalgate.sim import SimCase

    return [SimCase(key=f"{set_name}/{c['id']}", prompt=c["prompt"],
                    facts=tuple(c["expected"]["facts"]),
                    forbidden=tuple(c["expected"]["forbidden"])) for c in cases]


@pytest.fixture(autouse=True)
def _no_step_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs inside tests must never append to a real CI job summary."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


@pytest.fixture(autouse=True)
def _no_response_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs inside tests make their calls unless a test turns the response cache on (tests
    re-run one project and count the simulator's calls)."""
    monkeypatch.setenv("EVALGATE_CACHE", "off")


@pytest.fixture(autouse=True)
def _no_model_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs inside tests append to no model catalog unless a test asks for one
    (--evalgate-catalog), so no test litters a project with .evalgate/catalog.sqlite3."""
    monkeypatch.setenv("EVALGATE_CATALOG", "off")


@pytest.fixture
def sim_server() -> Iterator[SimServer]:
    """A simulator on 127.0.0.1 (ephemeral port) that knows make_cases(); add profiles per test."""
    server = SimServer(cases=sim_cases_from(make_cases(50)))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())
