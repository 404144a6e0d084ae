"""`--evalgate-catalog`: the run's snapshots appended to the model catalog once the session's
result is final (in the controller only). A catalog that cannot be written is a warning line
in the summary, never a failed session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from evalgate.results import RunResult

OFF = "off"


def catalog_target(config: pytest.Config, root: Path) -> Path | None:
    """Where this session's catalog is (relative paths from the project root); None: off.
    Without the option: env EVALGATE_CATALOG (a path or off), else the default path."""
    value = config.getoption("evalgate_catalog") or os.environ.get("EVALGATE_CATALOG", "")
    value = value.strip()
    if not value:
        from evalgate.catalog.store import DEFAULT_PATH

        value = DEFAULT_PATH
    if value.lower() == OFF:
        return None
    path = Path(value)
    return path if path.is_absolute() else root / path


def record_run(config: pytest.Config, root: Path, result: RunResult) -> tuple[str, bool] | None:
    """Append the run; (the summary line, whether it is a warning), or None when nothing is
    recorded: the catalog is off, the run was interrupted, or it is one shard of a run (its
    merged result goes in with `evalgate catalog add`)."""
    path = catalog_target(config, root)
    if path is None or result.partial or result.shard:
        return None
    from evalgate.catalog.store import append_run

    try:
        added, warning = append_run(path, result)
    except Exception as exc:  # the catalog is a by-product: it never fails the session
        warning = f"evalgate catalog: {path} not written ({type(exc).__name__}: {exc})"
    if warning is not None:
        return warning, True
    return f"catalog: {path} (+{added} snapshot(s))", False
