"""Watching the calls while they run: counts for live progress, and an early stop when a dead
endpoint makes every call fail the same way (no point making hundreds more to learn that)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from evalgate.results import STOPPED_CLASS, Record

# Stop when the first EARLY_STOP_CALLS finished calls of one config all failed with one class
# that retrying or more calls will not change: a non-retryable error (auth, bad request,
# context length) or a connect error (nothing listens there).
EARLY_STOP_CALLS = 20
CONNECT_CLASSES = frozenset({"connect_error"})


@dataclass
class ConfigProgress:
    """One config's calls so far."""

    total: int = 0
    done: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    throttled_ms: float = 0.0
    streak_class: str | None = None  # the class every finished call failed with, so far
    streak: int = 0
    example: str = ""


@dataclass
class CallMonitor:
    """Fed every finished call by the executor; `stop_reason` set when the run should stop.
    `on_update` sees it once when created and after every finished call."""

    totals: dict[str, int]
    on_update: Callable[[CallMonitor], None] | None = None
    early_stop_calls: int = EARLY_STOP_CALLS
    started: float = field(default_factory=time.monotonic)
    configs: dict[str, ConfigProgress] = field(default_factory=dict)
    stop_reason: str | None = None

    def __post_init__(self) -> None:
        self.configs = {label: ConfigProgress(total=n) for label, n in self.totals.items()}
        if self.on_update is not None:  # 0 of N: a progress display can start before any answer
            self.on_update(self)

    @classmethod
    def for_jobs(cls, jobs: Sequence[Sequence[tuple[object, object, str]]],
                 on_update: Callable[[CallMonitor], None] | None = None) -> CallMonitor:
        totals = Counter(label for job in jobs for _, _, label in job)
        return cls(dict(totals), on_update)

    def done(self, record: Record) -> None:
        """Count one finished call; decide whether the run stops."""
        prog = self.configs.setdefault(record.config, ConfigProgress())
        prog.done += 1
        prog.throttled_ms += record.throttled_ms
        if not record.ok and record.error_class:
            prog.errors[record.error_class] += 1
        self._streak(prog, record)
        if self.on_update is not None:
            self.on_update(self)

    def _streak(self, prog: ConfigProgress, record: Record) -> None:
        if prog.streak < 0:  # broken before: this config's endpoint answers (or fails variously)
            return
        decisive = (not record.ok and record.error_class is not None
                    and (record.retryable is False or record.error_class in CONNECT_CLASSES))
        if not decisive or prog.streak_class not in (None, record.error_class):
            prog.streak = -1
            return
        if prog.streak_class is None:
            prog.streak_class, prog.example = record.error_class, record.error_message or ""
        prog.streak += 1
        if prog.streak >= self.early_stop_calls and self.stop_reason is None:
            self.stop_reason = (f"the first {prog.streak} {record.config} calls all failed "
                                f"with {prog.streak_class}: {prog.example}")

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def eta_s(self) -> float | None:
        """Seconds left at the rate so far; None before the first call finished."""
        done = sum(p.done for p in self.configs.values())
        total = sum(p.total for p in self.configs.values())
        if not done:
            return None
        return self.elapsed_s * (total - done) / done


@dataclass(frozen=True)
class ConfigSnapshot:
    """One config's counts at one moment, copied so another thread can render them."""

    label: str
    done: int
    total: int
    errors: dict[str, int]
    throttled_ms: float


@dataclass(frozen=True)
class Snapshot:
    """The run's counts at one moment: per config, elapsed and ETA (None before any answer)."""

    configs: tuple[ConfigSnapshot, ...]
    elapsed_s: float
    eta_s: float | None
    stop_reason: str | None

    @property
    def done(self) -> int:
        return sum(c.done for c in self.configs)

    @property
    def total(self) -> int:
        return sum(c.total for c in self.configs)

    @property
    def throttled_ms(self) -> float:
        """Summed over calls: waits of concurrent calls overlap, so it can exceed the wall time."""
        return sum(c.throttled_ms for c in self.configs)


def snapshot(monitor: CallMonitor) -> Snapshot:
    """Copy the counts: a progress thread reads them while the event loop updates them (each
    copy below is one C-level operation under the GIL, so none sees a dict mid-resize)."""
    items = list(monitor.configs.items())
    configs = tuple(ConfigSnapshot(label, p.done, p.total, dict(p.errors), p.throttled_ms)
                    for label, p in items)
    done = sum(c.done for c in configs)
    total = sum(c.total for c in configs)
    elapsed = monitor.elapsed_s
    eta = elapsed * (total - done) / done if done else None
    return Snapshot(configs, elapsed, eta, monitor.stop_reason)


def stopped_record(record_fields: dict[str, object], reason: str) -> Record:
    """The record of a call the early stop left unmade: failed, with the reason."""
    return Record(ok=False, error_class=STOPPED_CLASS, retryable=False,
                  error_message=f"not made: the run stopped early because {reason}",
                  **record_fields)  # type: ignore[arg-type]
