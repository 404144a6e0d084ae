"""The model catalog: one snapshot per config per run (metrics with intervals, the canary
set, the commit), kept in SQLite or JSON lines, rendered as an HTML page and Markdown.

Beside `pipeline` and `curation`: it reads `RunResult`s and draws with `report.charts`; the
shells (`pytest --evalgate`, `evalgate catalog`) write it after a run.
"""

from __future__ import annotations

from evalgate.catalog.snapshot import ConfigRun, MetricFigure, Snapshot, snapshots_of
from evalgate.catalog.store import (
    DEFAULT_PATH,
    Catalog,
    CatalogError,
    append_run,
    export_lines,
    import_lines,
)

__all__ = [
    "DEFAULT_PATH",
    "Catalog",
    "CatalogError",
    "ConfigRun",
    "MetricFigure",
    "Snapshot",
    "append_run",
    "export_lines",
    "import_lines",
    "snapshots_of",
]
