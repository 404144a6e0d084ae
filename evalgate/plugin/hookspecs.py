"""pytest hooks evalgate adds (registered by evalgate.plugin's pytest_addhooks)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.hookspec
def pytest_evalgate_register_checks(registry: Any) -> None:
    """Register custom rubric checks: `registry.add(name, fn)` with
    `fn(answer: str, params: dict) -> bool | (bool, detail) | CheckOutcome`. Called once per
    session (in the controller and in each xdist worker) before rubrics are loaded."""
