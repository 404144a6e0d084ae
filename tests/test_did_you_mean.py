"""A misspelt key names the field it probably meant, at any depth of every input file."""

from __future__ import annotations

from pathlib import Path

import pytest

from evalgate.errors import ConfigError
from evalgate.pipeline.project import load_project
from tests.conftest import sim_model, write_project


def problems(root: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_project(root)
    return str(info.value)


def test_misspelt_keys_get_a_hint(tmp_path: Path) -> None:
    write_project(tmp_path, model=sim_model(), gate={
        "sampels": 3, "gate": {"vs_baselin": {}, "metrics": {"latency_p95_ms": {"maxx": 9}}}})
    text = problems(tmp_path)
    assert "evalgate.yaml:5: sampels: unknown field (not allowed here); did you mean " \
           "'samples'?" in text
    assert "gate.vs_baselin: unknown field (not allowed here); did you mean 'vs_baseline'?" in text
    assert "gate.metrics.latency_p95_ms.maxx: unknown field (not allowed here); did you mean " \
           "'max'?" in text


def test_model_and_canary_keys_get_a_hint_and_nonsense_gets_none(tmp_path: Path) -> None:
    write_project(tmp_path, model={**sim_model(), "max_retires": 2, "zzzzqq": 1},
                  canary_text="cases:\n  - id: a\n    promt: hi\n    prompt: hi\n")
    text = problems(tmp_path)
    assert "max_retires: unknown field (not allowed here); did you mean 'max_retries'?" in text
    assert "cases.0.promt: unknown field (not allowed here); did you mean 'prompt'?" in text
    assert "zzzzqq: unknown field (not allowed here)\n" in text + "\n"
