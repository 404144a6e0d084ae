"""Live progress while the calls run: redrawn in place on a terminal (a real pseudo-terminal),
a line every N seconds in CI, through real pytest runs against the simulator."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from evalgate.engine.monitor import ConfigSnapshot, Snapshot
from evalgate.plugin.progress import duration, in_ci, progress_line
from tests.conftest import make_cases, sim_model, write_project

pytest_plugins = ["pytester"]

LINE = re.compile(r"evalgate calls: candidate (\d+)/(\d+)")
# 24 calls on 2 lanes, most answered after >= 120 ms (the simulator's sleep): the calls take
# over a second whatever the machine, so the drawing thread (every 0.25 s on a terminal, every
# 0.2 s in CI below) ticks while they run.
SLOW = {"latency_ms": 120, "error_500_rate": 0.15, "error_429_rate": 0.05, "seed": 4}


def slow_project(root: Path, baseline: bool = False) -> None:
    model = sim_model(**SLOW)
    model["max_retries"] = 0  # the 500s stay errors: counted by class in the progress line
    gate = {"concurrency": 2}
    if baseline:
        gate["baseline"] = "models/baseline.yaml"
    write_project(root, model=model, cases=make_cases(12 if baseline else 24), gate=gate)
    if baseline:
        (root / "models" / "baseline.yaml").write_text(
            yaml.safe_dump(sim_model(latency_ms=120, seed=5)))


def counts(lines: list[str]) -> list[tuple[int, int]]:
    return [(int(m[1]), int(m[2])) for m in map(LINE.search, lines) if m]


def test_progress_line_names_counts_errors_throttling_and_eta() -> None:
    snap = Snapshot((ConfigSnapshot("candidate", 12, 30, {"timeout": 1, "http_500": 2}, 700.0),
                     ConfigSnapshot("baseline", 11, 30, {}, 500.0)),
                    elapsed_s=4.2, eta_s=95.0, stop_reason=None)
    assert progress_line(snap) == (
        "evalgate calls: candidate 12/30 (3 errors: 2 http_500, 1 timeout), baseline 11/30; "
        "4 s elapsed, ETA 1m35s; throttled 1.2 s summed over calls")
    done = Snapshot((ConfigSnapshot("candidate", 30, 30, {}, 0.0),), 7.0, 0.0, None)
    assert progress_line(done, final=True).endswith("7 s elapsed, done; throttled 0.0 s summed "
                                                    "over calls")
    stopped = Snapshot((ConfigSnapshot("candidate", 20, 30, {"auth": 20}, 0.0),), 1.0, 0.5,
                       "the first 20 candidate calls all failed with auth")
    assert "(20 errors: 20 auth)" in progress_line(stopped)
    assert "stopping early" in progress_line(stopped) and "ETA" not in progress_line(stopped)
    assert Snapshot((), 0.0, None, None).done == 0
    assert [duration(s) for s in (0.4, 59.6, 185, 3725)] == ["0 s", "1m00s", "3m05s", "1h02m"]


def test_ci_is_any_value_but_false() -> None:
    assert [in_ci({"CI": v}) for v in ("true", "1", "woodpecker", "", "false", "0")] == [
        True, True, True, False, False, False]
    assert in_ci({}) is False


def run_in_pty(args: list[str], cwd: Path, env: dict[str, str],
               timeout: float = 120.0) -> tuple[int, bytes]:
    """Run a command on a fresh pseudo-terminal (its stdout isatty) and read all it wrote."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave,
                            close_fds=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not select.select([master], [], [], deadline - time.monotonic())[0]:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(master)
        code = proc.wait(timeout=30)
    return code, out


def test_terminal_redraws_one_line_in_place(pytester: pytest.Pytester) -> None:
    slow_project(pytester.path)
    env = {k: v for k, v in os.environ.items()
           if k not in ("CI", "PYTEST_ADDOPTS", "EVALGATE_PROGRESS_EVERY")}
    env.update(COLUMNS="220", EVALGATE_CACHE="off")
    code, raw = run_in_pty([sys.executable, "-m", "pytest", "--evalgate", "-p",
                            "no:cacheprovider", "-p", "no:xdist"], pytester.path, env)
    out = raw.decode()
    assert code in (0, 1), out
    drawn = out.split("evalgate gate:")[0]
    # each redraw starts with a carriage return, on one line: no newline between redraws
    redraws = [part for part in drawn.split("\r") if LINE.search(part)]
    seen = counts(redraws)
    assert len(seen) >= 3, out
    assert seen[0] == (0, 24) and seen[-1] == (24, 24)
    assert any(0 < done < 24 for done, _ in seen), seen  # drawn while the calls ran
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert all("\n" not in part.rstrip("\r\n") for part in redraws[:-1]), redraws
    assert any("ETA" in part for part in redraws)
    assert "summed over calls" in redraws[-1] and "done" in redraws[-1]
    assert re.search(r"\(\d+ errors?: \d+ (server_error|rate_limited)", redraws[-1]), redraws[-1]


def test_ci_prints_a_line_every_n_seconds(pytester: pytest.Pytester,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    slow_project(pytester.path, baseline=True)
    monkeypatch.setenv("CI", "true")
    result = pytester.runpytest_subprocess("--evalgate", "--evalgate-progress-every=0.2",
                                           "-p", "no:xdist")
    lines = [ln for ln in result.outlines if ln.startswith("evalgate calls:")]
    assert "\r" not in result.stdout.str()  # a CI log keeps every redraw: new lines only
    seen = counts(lines)
    assert len(seen) >= 3, result.stdout.str()
    assert seen[0] == (0, 12) and seen[-1] == (12, 12)
    assert any(0 < done < 12 for done, _ in seen), lines
    assert all(re.search(r"baseline \d+/12", ln) for ln in lines), lines
    assert lines[-1].count("12/12") == 2 and "done" in lines[-1]
    # an ETA once an answer came back (the rate so far), none before
    assert all(("ETA" in ln) == (done > 0) for ln, (done, _) in zip(lines[:-1], seen[:-1],
                                                                      strict=True))


def test_progress_off_and_a_bad_interval(pytester: pytest.Pytester,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    write_project(pytester.path, model=sim_model(), cases=make_cases(3))
    monkeypatch.setenv("CI", "true")
    quiet = pytester.runpytest_subprocess("--evalgate", "--evalgate-progress-every=0",
                                          "-p", "no:xdist")
    assert quiet.ret == 0
    assert "evalgate calls:" not in quiet.stdout.str()
    shown = pytester.runpytest_subprocess("--evalgate", "-p", "no:xdist")
    assert shown.ret == 0
    assert shown.stdout.lines.count(
        next(ln for ln in shown.outlines if ln.startswith("evalgate calls: candidate 3/3"))) == 1
    monkeypatch.setenv("EVALGATE_PROGRESS_EVERY", "soon")
    bad = pytester.runpytest_subprocess("--evalgate")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    assert "EVALGATE_PROGRESS_EVERY='soon' is not a number" in bad.stderr.str()
