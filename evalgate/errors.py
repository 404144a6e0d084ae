"""The project's own error types: one for bad input files, one for provider faults."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one input file, located as precisely as the file allows."""

    file: str
    message: str
    line: int | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        what = f"{self.field}: {self.message}" if self.field else self.message
        return f"{where}: {what}"


class EvalgateError(Exception):
    """Base class of every error evalgate raises on purpose."""


class ConfigError(EvalgateError):
    """A gate config, model config, canary set or rubric is broken.

    Carries every problem found, so one run shows the user all of them at once.
    """

    def __init__(self, problems: list[Problem] | Problem) -> None:
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        super().__init__(self.render())

    def render(self) -> str:
        if len(self.problems) == 1:
            return str(self.problems[0])
        lines = [f"{len(self.problems)} problems in evalgate input files:"]
        lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)


class MissingSecretError(ConfigError):
    """The environment variable a model config names for its API key is not set."""
