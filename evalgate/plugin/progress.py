"""Live progress while the calls run, so the terminal is not silent for the minutes a real API
takes after `collected N items`.

Printed with pytest's own terminal reporter (no new dependency: one line of counts needs no
`rich` or `tqdm`, and going through the reporter keeps `-p no:terminal`, capture and xdist's
controller output working as pytest users expect). On a terminal the line is redrawn in place
(`\\r`) a few times a second; in CI (env CI set) or when the output is not a terminal, a new line
is printed every N seconds (`--evalgate-progress-every`, env EVALGATE_PROGRESS_EVERY, default
10; 0 turns progress off), because a log keeps every `\\r` redraw as a line of its own.

A thread draws, not the executor's callback: the line must move (elapsed, ETA) even while no
call finishes, e.g. during a long backoff, and drawing never slows the event loop down.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest

from evalgate.engine.monitor import CallMonitor, Snapshot, snapshot

DEFAULT_EVERY_S = 10.0
ENV_EVERY = "EVALGATE_PROGRESS_EVERY"
REDRAW_S = 0.25  # on a terminal


def duration(seconds: float) -> str:
    """`42 s`, `3m05s`, `1h02m`: short enough for one line."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def progress_line(snap: Snapshot, final: bool = False) -> str:
    """`evalgate calls: candidate 12/30 (2 errors: 2 http_500), baseline 11/30; 4 s elapsed,
    ETA 6 s; throttled 1.2 s summed over calls` (waits of concurrent calls overlap)."""
    parts = []
    for c in snap.configs:
        text = f"{c.label} {c.done}/{c.total}"
        if c.errors:
            ranked = sorted(c.errors.items(), key=lambda kv: (-kv[1], kv[0]))
            n = sum(c.errors.values())
            text += (f" ({n} error{'s' if n != 1 else ''}: "
                     + ", ".join(f"{k} {cls}" for cls, k in ranked) + ")")
        parts.append(text)
    line = f"evalgate calls: {', '.join(parts)}; {duration(snap.elapsed_s)} elapsed"
    if snap.stop_reason is not None:
        line += ", stopping early (see the summary)"
    elif final:
        line += ", done" if snap.done == snap.total else ""
    elif snap.eta_s is not None:
        line += f", ETA {duration(snap.eta_s)}"
    # last: a narrow terminal cuts the line's end
    return line + f"; throttled {snap.throttled_ms / 1000:.1f} s summed over calls"


def progress_every(config: pytest.Config, env: dict[str, str] | None = None) -> float:
    """Seconds between CI lines: the option, else EVALGATE_PROGRESS_EVERY, else 10."""
    value = config.getoption("evalgate_progress_every")
    if value is not None:
        return float(value)
    raw = (env if env is not None else os.environ).get(ENV_EVERY, "").strip()
    if not raw:
        return DEFAULT_EVERY_S
    try:
        return float(raw)
    except ValueError:
        raise pytest.UsageError(f"evalgate: {ENV_EVERY}={raw!r} is not a number of seconds"
                                ) from None


def in_ci(env: dict[str, str] | None = None) -> bool:
    """Env CI set to anything but false/0/no: GitHub, GitLab, Buildkite... set CI=true."""
    value = (env if env is not None else os.environ).get("CI", "").strip().lower()
    return value not in ("", "0", "false", "no")


class ProgressPrinter:
    """The `progress` callback of `run_project`: draws the monitor's counts until `close`."""

    def __init__(self, reporter: Any, writer: Any, live: bool, every_s: float) -> None:
        self.reporter = reporter
        self.writer = writer  # pytest's TerminalWriter: its width, and flush
        self.live = live
        self.every_s = REDRAW_S if live else every_s
        self.monitor: CallMonitor | None = None
        self.lines: list[str] = []  # what was drawn, in order (the last one per redraw)
        self.finished = False  # the final line is drawn
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_config(cls, config: pytest.Config) -> ProgressPrinter | None:
        """None when there is no terminal reporter (`-p no:terminal`) or progress is off."""
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        every = progress_every(config)
        if reporter is None or every <= 0:
            return None
        live = bool(getattr(reporter, "isatty", False)) and not in_ci()
        return cls(reporter, config.get_terminal_writer(), live, every)

    def __call__(self, monitor: CallMonitor) -> None:
        """Called in the event loop (when the monitor is made, then per finished call): only
        starts the drawing thread the first time."""
        if self._thread is not None:
            return
        self.monitor = monitor
        self._draw()
        self._thread = threading.Thread(target=self._tick, name="evalgate-progress",
                                        daemon=True)
        self._thread.start()

    def _tick(self) -> None:
        while not self._stop.wait(self.every_s):
            if self._draw():  # every call answered: grading (and the judge) come next
                return

    def _draw(self, final: bool = False) -> bool:
        """Draw the counts; True once the final line is drawn (every call done, or `final`)."""
        if self.finished:
            return True
        assert self.monitor is not None
        snap = snapshot(self.monitor)
        self.finished = final or snap.done >= snap.total
        line = progress_line(snap, self.finished)
        try:
            if self.live:
                width = self.writer.fullwidth - 1  # a wrapped line cannot be redrawn
                if len(line) > width:
                    line = line[:max(0, width - 3)] + "..."
                self.reporter.rewrite(line, erase=True)
            else:
                self.reporter.write_line(line)
            self.writer.flush()
            if self.finished and self.live:
                self.reporter.write("\n")  # pytest's own output starts on a fresh line
        except (OSError, ValueError):  # the terminal went away: the run goes on
            return self.finished
        self.lines.append(line)
        return self.finished

    def close(self) -> None:
        """The run is over (or failed): stop the thread and draw the final counts unless the
        thread already did."""
        if self._thread is None:
            return  # no call was made (all cached, or nothing selected)
        self._stop.set()
        self._thread.join()
        self._thread = None
        self._draw(final=True)
