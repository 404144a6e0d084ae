"""The async engine against the simulator over real HTTP on 127.0.0.1: retries, Retry-After,
timeouts, deadlines, classification, concurrency bound and client-side rate limits."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest

from evalgate.engine.executor import Executor, execute, redactor
from evalgate.engine.planning import plan_calls
from evalgate.engine.providers import make_provider
from evalgate.engine.providers.base import ProviderError, parse_retry_after
from evalgate.engine.throttling import RetryPolicy
from evalgate.pipeline.project import load_project
from evalgate.results import Record
from evalgate.sim import SimServer
from tests.conftest import make_cases, write_project


def run_against(tmp_path: Path, server: SimServer, profile: dict[str, Any], *, n: int = 4,
                concurrency: int = 8, **model: Any) -> list[Record]:
    """Serve `profile` as model 'p' and run n canaries through the real executor."""
    server.add_profile("p", profile)
    cfg = {"provider": "openai", "base_url": f"{server.base_url}/v1", "model": "p",
           "timeout_s": 5, "max_retries": 2, **model}
    write_project(tmp_path, model=cfg, cases=make_cases(n))
    project = load_project(tmp_path)
    calls = plan_calls(project.candidate, project.entries, 1)
    return execute(project.candidate, make_provider(project.candidate), calls, concurrency)


def test_answers_are_parsed_with_usage_and_cost(tmp_path: Path, sim_server: SimServer) -> None:
    records = run_against(tmp_path, sim_server, {"latency_ms": 0}, n=3,
                          pricing={"input_per_mtok": 1000.0, "output_per_mtok": 2000.0})
    assert [r.key for r in records] == ["set/c0", "set/c1", "set/c2"]
    for i, r in enumerate(records):
        assert r.ok and f"{i} days" in (r.text or "")
        assert r.input_tokens and r.output_tokens and not r.usage_estimated
        assert r.cost_usd == pytest.approx((r.input_tokens * 1000 + r.output_tokens * 2000) / 1e6)
        assert len(r.attempts) == 1 and r.attempts[0].status == 200


def test_retry_after_is_honoured_between_attempts(tmp_path: Path, sim_server: SimServer) -> None:
    records = run_against(tmp_path, sim_server, {"latency_ms": 0, "error_429_rate": 1.0,
                                                 "retry_after_s": 0.3}, n=1, max_retries=2)
    [record] = records
    assert not record.ok and record.error_class == "rate_limited"
    assert [a.status for a in record.attempts] == [429, 429, 429]
    assert [a.retry_after_s for a in record.attempts] == [0.3, 0.3, 0.3]
    assert [a.waited_ms for a in record.attempts] == [0.0, 300.0, 300.0]
    assert sim_server.stats.snapshot()["outcomes"]["429"] == 3
    # Both waits really happened: the call's end-to-end latency spans them.
    assert record.latency_ms is None or record.latency_ms >= 600


def test_retry_after_is_capped(tmp_path: Path, sim_server: SimServer) -> None:
    t0 = time.perf_counter()
    [record] = run_against(tmp_path, sim_server, {"latency_ms": 0, "error_429_rate": 1.0,
                                                  "retry_after_s": 30}, n=1, max_retries=1,
                           max_retry_after_s=0.05)
    assert record.attempts[1].waited_ms == 50.0
    assert time.perf_counter() - t0 < 10


def test_some_429s_then_success(tmp_path: Path, sim_server: SimServer) -> None:
    records = run_against(tmp_path, sim_server, {"latency_ms": 0, "error_429_rate": 0.4,
                                                 "retry_after_s": 0.01, "seed": 3},
                          n=30, max_retries=8)
    retried_ok = [r for r in records if r.ok and len(r.attempts) > 1]
    assert retried_ok, "with a 40% 429 rate some calls must succeed after a retry"
    assert all(r.ok for r in records)
    for r in retried_ok:
        assert all(a.status == 429 for a in r.attempts[:-1]) and r.attempts[-1].status == 200


def test_server_errors_are_retried_then_recorded(tmp_path: Path, sim_server: SimServer) -> None:
    [record] = run_against(tmp_path, sim_server, {"latency_ms": 0, "error_500_rate": 1.0},
                           n=1, max_retries=1)
    assert not record.ok and record.error_class == "server_error"
    assert len(record.attempts) == 2 and record.error_message
    assert "HTTP 500" in record.error_message


def test_timeouts_are_classified_and_retried(tmp_path: Path, sim_server: SimServer) -> None:
    [record] = run_against(tmp_path, sim_server, {"latency_ms": 0, "timeout_rate": 1.0,
                                                  "stall_s": 3}, n=1, max_retries=1,
                           timeout_s=0.2)
    assert not record.ok and record.error_class == "timeout"
    assert len(record.attempts) == 2
    assert all(a.latency_ms < 2000 for a in record.attempts)


def test_total_deadline_bounds_a_call(tmp_path: Path, sim_server: SimServer) -> None:
    t0 = time.perf_counter()
    [record] = run_against(tmp_path, sim_server, {"latency_ms": 0, "timeout_rate": 1.0,
                                                  "stall_s": 5}, n=1, max_retries=10,
                           timeout_s=0.3, deadline_s=0.8)
    elapsed = time.perf_counter() - t0
    assert not record.ok and record.error_class in ("timeout", "deadline_exceeded")
    assert elapsed < 3, "the deadline must stop retries long before 11 x 0.3 s"
    assert len(record.attempts) < 11


def test_malformed_body_is_recorded(tmp_path: Path, sim_server: SimServer) -> None:
    [record] = run_against(tmp_path, sim_server, {"latency_ms": 0, "malformed_rate": 1.0},
                           n=1, max_retries=1)
    # the simulator cuts a valid body in half: JSON that ends early is a truncated response
    assert not record.ok and record.error_class == "truncated_response" and record.retryable
    assert len(record.attempts) == 2


def test_context_length_is_not_retried(tmp_path: Path, sim_server: SimServer) -> None:
    [record] = run_against(tmp_path, sim_server, {"latency_ms": 0, "context_window": 2},
                           n=1, max_retries=3)
    assert not record.ok and record.error_class == "context_length"
    assert len(record.attempts) == 1 and record.attempts[0].status == 400


def test_connection_refused_is_a_connect_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = {"provider": "openai", "base_url": f"http://127.0.0.1:{port}/v1", "model": "x",
           "max_retries": 1, "timeout_s": 2}
    write_project(tmp_path, model=cfg, cases=make_cases(1))
    project = load_project(tmp_path)
    calls = plan_calls(project.candidate, project.entries, 1)
    [record] = execute(project.candidate, make_provider(project.candidate), calls, 1)
    assert not record.ok and record.error_class == "connect_error"
    assert len(record.attempts) == 2


def max_overlap(records: list[Record]) -> int:
    events = []
    for r in records:
        assert r.latency_ms is not None
        events += [(r.started_s, 1), (r.started_s + r.latency_ms / 1000, -1)]
    current = peak = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):
        current += delta
        peak = max(peak, current)
    return peak


def test_concurrency_is_bounded_and_used(tmp_path: Path, sim_server: SimServer) -> None:
    t0 = time.perf_counter()
    records = run_against(tmp_path, sim_server, {"latency_ms": 100}, n=20, concurrency=4)
    elapsed = time.perf_counter() - t0
    assert all(r.ok for r in records)
    assert max_overlap(records) == 4
    assert elapsed >= 0.5  # 20 calls / 4 at a time x 100 ms


def test_rpm_rate_limit_spaces_call_starts(tmp_path: Path, sim_server: SimServer) -> None:
    records = run_against(tmp_path, sim_server, {"latency_ms": 0}, n=6, concurrency=6,
                          rate_limit={"rpm": 1200})
    starts = sorted(r.started_s for r in records)
    # 1200 rpm = one start slot every 50 ms from the run's start; a start may be late (a busy
    # machine), never early, so the k-th start is at least k x 50 ms in.
    for k, start in enumerate(starts):
        assert start >= k * 0.05 - 0.001, (k, starts)


def test_retry_after_parsing() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_backoff_is_jittered_and_bounded() -> None:
    import random

    policy = RetryPolicy(max_retries=5, timeout_s=1, deadline_s=10, max_retry_after_s=2)
    rng = random.Random(1)
    error = ProviderError("server_error", "x", retryable=True)
    waits = [policy.wait_s(3, error, rng) for _ in range(200)]
    assert all(0 <= w <= 4.0 for w in waits)
    assert len(set(waits)) > 150  # jittered, not a fixed schedule
    limited = ProviderError("rate_limited", "x", retryable=True, retry_after_s=9)
    assert policy.wait_s(0, limited, rng) == 2  # Retry-After capped at max_retry_after_s


def test_redactor_blanks_secrets() -> None:
    redact = redactor(["sk-test-123456", None, "ab"])
    assert redact("bad key sk-test-123456 in url?key=sk-test-123456") == \
        "bad key [REDACTED] in url?key=[REDACTED]"
    assert redact("ab stays: too short to be a key") == "ab stays: too short to be a key"


def test_executor_reads_key_only_from_env(tmp_path: Path, sim_server: SimServer,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALGATE_TEST_KEY", "sk-test-abcdef")
    sim_server.add_profile("p", {"latency_ms": 0})
    write_project(tmp_path, model={"provider": "openai", "base_url": f"{sim_server.base_url}/v1",
                                   "model": "p", "api_key_env": "EVALGATE_TEST_KEY"},
                  cases=make_cases(1))
    project = load_project(tmp_path)
    provider = make_provider(project.candidate)
    assert provider.headers["authorization"] == "Bearer sk-test-abcdef"
    executor = Executor(project.candidate, provider, 1)
    assert executor.redact("x sk-test-abcdef y") == "x [REDACTED] y"
