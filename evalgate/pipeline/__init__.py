"""The orchestrator: load and cross-check every file of a project (`project`), then run it
spec -> engine -> grading -> gate -> result (`run`); merge the results of sharded runs
(`merge`). The pytest plugin and the CLI are shells on top of this."""

from __future__ import annotations

from evalgate.pipeline.project import Project, load_project
from evalgate.pipeline.run import run_project

__all__ = ["Project", "load_project", "run_project"]
