"""A dead endpoint says why and stops early: the first calls all failing with one connect or
non-retryable class end the run with that reason (and the endpoint) in the summary, instead of
hundreds more calls and retries that can only fail the same way."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from evalgate.engine.monitor import EARLY_STOP_CALLS, STOPPED_CLASS, CallMonitor
from evalgate.pipeline.project import load_project
from evalgate.pipeline.run import run_project
from evalgate.report.summary import summary_lines
from evalgate.results import Record
from evalgate.sim import SimProfile, SimServer
from tests.conftest import make_cases, write_project

CONCURRENCY = 8  # at most EARLY_STOP_CALLS + CONCURRENCY calls are ever started


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def openai_model(base_url: str, **extra: Any) -> dict[str, Any]:
    return {"provider": "openai", "base_url": base_url, "model": "m", "timeout_s": 2,
            "max_retries": 2, **extra}


def made(records: list[Record]) -> list[Record]:
    return [r for r in records if r.error_class != STOPPED_CLASS]


def test_a_closed_port_stops_within_30_calls_and_says_why(tmp_path: Path) -> None:
    port = closed_port()
    write_project(tmp_path, model=openai_model(f"http://127.0.0.1:{port}/v1"),
                  cases=make_cases(100), gate={"samples": 2, "concurrency": CONCURRENCY})
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", "--evalgate", "-p",
                           "no:cacheprovider", "-q"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env=None)
    elapsed = time.monotonic() - t0
    result = json.loads((tmp_path / "reports" / "evalgate.json").read_text())
    records = [Record.model_validate(r) for r in result["records"]]
    assert len(records) == 200  # every planned call has a record
    tried = made(records)
    assert len(tried) <= 30 and {r.error_class for r in tried} == {"connect_error"}
    assert sum(len(r.attempts) for r in tried) <= 30 * 3
    assert elapsed < 30
    out = proc.stdout
    assert proc.returncode == 1, out
    endpoint = f"POST http://127.0.0.1:{port}/v1/chat/completions"
    assert f"candidate errors: connect_error x{len(tried)}, e.g. ConnectError: " in out
    assert endpoint in out
    assert (f"{200 - len(tried)} of 200 calls were not made: the run stopped early because "
            f"the first {EARLY_STOP_CALLS} candidate calls all failed with connect_error") in out
    assert f"{STOPPED_CLASS} x{200 - len(tried)}" in out


def test_a_non_retryable_class_stops_early_counted_at_the_server(tmp_path: Path) -> None:
    server = SimServer()
    server.add_profile("m", SimProfile(latency_ms=1, context_window=2))  # every prompt too long
    server.start()
    try:
        write_project(tmp_path, model=openai_model(server.base_url + "/v1"),
                      cases=make_cases(80), gate={"concurrency": CONCURRENCY})
        result = run_project(load_project(tmp_path))
        assert server.stats.total <= EARLY_STOP_CALLS + CONCURRENCY  # one attempt each: no retry
    finally:
        server.stop()
    assert {r.error_class for r in made(result.records)} == {"context_length"}
    assert len(result.records) == 80
    lines = summary_lines(result)
    assert any(line.startswith("candidate errors: context_length x") for line in lines)
    assert any("calls were not made: the run stopped early" in w for w in result.warnings)


def test_retryable_server_errors_or_one_answer_do_not_stop_the_run(tmp_path: Path) -> None:
    server = SimServer()
    server.add_profile("m", SimProfile(latency_ms=1, error_500_rate=1.0))
    server.start()
    try:
        write_project(tmp_path, model=openai_model(server.base_url + "/v1", max_retries=0),
                      cases=make_cases(40), gate={"concurrency": CONCURRENCY})
        result = run_project(load_project(tmp_path))
        assert server.stats.total == 40  # a 500 may be transient: every call is made
    finally:
        server.stop()
    assert {r.error_class for r in result.records} == {"server_error"}
    assert not any("not made" in w for w in result.warnings)


def rec(ok: bool, error_class: str | None = None, retryable: bool | None = None) -> Record:
    return Record(key="s/c", set="s", case_id="c", ok=ok, error_class=error_class,
                  retryable=retryable, error_message="boom")


def test_one_answer_or_a_second_class_breaks_the_streak() -> None:
    for first in (rec(True), rec(False, "auth", False), rec(False, "server_error", True)):
        monitor = CallMonitor({"candidate": 100}, early_stop_calls=5)
        monitor.done(first)
        for _ in range(10):
            monitor.done(rec(False, "connect_error", True))
        assert monitor.stop_reason is None, first
    monitor = CallMonitor({"candidate": 100}, early_stop_calls=5)
    for _ in range(5):
        monitor.done(rec(False, "auth", False))
    assert monitor.stop_reason == "the first 5 candidate calls all failed with auth: boom"
