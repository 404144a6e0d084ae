"""Rate limits against the simulator over real HTTP on 127.0.0.1: 429 storms shrink the
executor's concurrency (AIMD), Retry-After (seconds and HTTP date) and x-ratelimit-* headers
are honoured, throttled time is reported apart from latency, and the client-side rpm / tpm
limits hold as measured by the server's own request log."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from evalgate.engine.providers.base import parse_duration, rate_limit_pause_s
from evalgate.engine.throttling import AdaptiveLimit
from evalgate.pipeline.project import load_project
from evalgate.pipeline.run import run_project
from evalgate.report.markdown import render_markdown
from evalgate.report.summary import summary_lines
from evalgate.results import RunResult
from evalgate.sim import SimServer
from tests.conftest import make_cases, write_project


def run_on(tmp_path: Path, server: SimServer, profile: dict[str, Any], *, n: int,
           concurrency: int, **model: Any) -> RunResult:
    """Serve `profile` as model 'p'; run n canaries through the whole engine against it."""
    server.add_profile("p", profile)
    cfg = {"provider": "openai", "base_url": f"{server.base_url}/v1", "model": "p",
           "timeout_s": 5, **model}
    write_project(tmp_path, model=cfg, cases=make_cases(n))
    return run_project(load_project(tmp_path), concurrency=concurrency)


def test_429_storm_shrinks_concurrency_and_loses_nothing(tmp_path: Path,
                                                         sim_server: SimServer) -> None:
    # The server serves 4 requests at a time and answers 429 (Retry-After 50 ms) beyond
    # that; the run starts 16 lanes wide.
    n, lanes = 48, 16
    result = run_on(tmp_path, sim_server, {"latency_ms": 40, "max_in_flight": 4,
                                           "retry_after_s": 0.05},
                    n=n, concurrency=lanes, max_retries=12)
    records = result.records
    assert sorted(r.key for r in records) == sorted(f"set/c{i}" for i in range(n))
    assert all(r.ok for r in records), [r.error_class for r in records if not r.ok]
    throttled = [r for r in records if any(a.status == 429 for a in r.attempts)]
    assert throttled, "the storm must have hit some calls"
    assert result.counts["retried_calls"] == len(throttled)

    log = [q for q in sim_server.stats.requests if q.model == "p"]
    assert sim_server.stats.max_in_flight >= lanes - 2  # the run did start 16 wide
    # ...and then backed off: in the second half of the run the server never saw more than
    # half the lanes at once (without adaptive concurrency every retry wave is 16 wide).
    mid = (log[0].t + log[-1].t) / 2
    later = [q.in_flight for q in log if q.t > mid]
    assert later and max(later) <= lanes // 2, later
    late_429 = sum(q.outcome == "429" for q in log if q.t > mid)
    early_429 = sum(q.outcome == "429" for q in log if q.t <= mid)
    assert late_429 < early_429

    # Throttled time is reported, and kept out of latency: a record's latency is its
    # successful attempt's, however long it waited for Retry-After and a free slot.
    assert result.counts["throttled_ms"] > 0
    for r in throttled:
        assert r.throttled_ms >= sum(a.waited_ms for a in r.attempts) - 1e-6
        assert r.latency_ms == pytest.approx(r.attempts[-1].latency_ms)
    latencies = sorted(r.latency_ms or 0 for r in records)
    assert latencies[len(latencies) // 2] < 40 + 250  # the model's 40 ms, plus a busy machine
    assert max(r.throttled_ms for r in records) > 50
    # ...and shown next to the run's other figures
    seconds = f"{result.counts['throttled_ms'] / 1000:.2f}"
    summed = "summed over calls (not in latency)"
    assert f"throttled {seconds}s {summed}" in summary_lines(result)[0]
    assert f"throttled {seconds} s {summed}" in render_markdown(result)


def test_retry_after_as_an_http_date(tmp_path: Path, sim_server: SimServer) -> None:
    result = run_on(tmp_path, sim_server, {"latency_ms": 0, "error_429_rate": 1.0,
                                           "retry_after_s": 1, "retry_after_http_date": True,
                                           "fault_cases": ["set/c0"]},
                    n=2, concurrency=2, max_retries=1)
    bad, good = result.records
    assert good.ok and not bad.ok and bad.error_class == "rate_limited" and bad.retryable
    # an HTTP date has whole seconds: the server asked for 1 s, rounded up to the next second
    wait = bad.attempts[1].waited_ms
    assert 0 < bad.attempts[0].retry_after_s <= 2.0  # type: ignore[operator]
    assert 0 < wait <= 2000 and bad.throttled_ms >= wait
    assert result.metrics["error_rate"] == 0.5


def test_x_ratelimit_remaining_zero_pauses_until_reset(tmp_path: Path,
                                                       sim_server: SimServer) -> None:
    # 4 requests per 0.4 s window. One lane: the response that says "remaining 0" makes the
    # client wait for the reset, so it never runs into a 429 at all.
    t0 = time.perf_counter()
    result = run_on(tmp_path, sim_server, {"latency_ms": 0, "limit_requests": 4,
                                           "limit_window_s": 0.4},
                    n=10, concurrency=1, max_retries=0)
    elapsed = time.perf_counter() - t0
    assert all(r.ok for r in result.records)
    assert sim_server.stats.outcomes["429"] == 0
    assert elapsed >= 0.4  # 10 requests need 3 windows: at least two resets waited for
    assert sum(r.throttled_ms > 0 for r in result.records) >= 2
    assert result.counts["throttled_ms"] >= 400 * 0.5


def test_429_without_retry_after_waits_for_the_token_window(tmp_path: Path,
                                                            sim_server: SimServer) -> None:
    # A token limit that every 4th request overruns; the 429 carries no Retry-After, only
    # x-ratelimit-reset-tokens, which the client must use as the wait.
    result = run_on(tmp_path, sim_server, {"latency_ms": 0, "limit_tokens": 36,
                                           "limit_window_s": 0.3, "retry_after_s": None},
                    n=8, concurrency=1, max_retries=4)
    assert all(r.ok for r in result.records)
    hit = [a for r in result.records for a in r.attempts if a.status == 429]
    assert hit, "the token limit must have been reached"
    assert all(a.retry_after_s is not None and 0 < a.retry_after_s <= 0.3 for a in hit)


@pytest.mark.parametrize(("limit", "n"), [({"rpm": 480}, 12), ({"tpm": 9000}, 14)],
                         ids=["rpm", "tpm"])
def test_client_rate_limits_hold_at_the_server(tmp_path: Path, sim_server: SimServer,
                                               limit: dict[str, float], n: int) -> None:
    lanes = 6
    result = run_on(tmp_path, sim_server, {"latency_ms": 1}, n=n, concurrency=lanes,
                    rate_limit=limit, max_retries=0)
    assert all(r.ok for r in result.records)
    log = sorted((q for q in sim_server.stats.requests if q.model == "p"), key=lambda q: q.t)
    assert len(log) == n
    span = log[-1].t - log[0].t
    if "rpm" in limit:
        observed, allowed = (n - 1) / span * 60, limit["rpm"]
    else:  # tokens the server saw (prompt + answer) before the last request started
        observed = sum(q.prompt_tokens + q.completion_tokens for q in log[:-1]) / span * 60
        allowed = limit["tpm"]
        # any stretch of the run, not just the whole: a late usage correction is at most
        # one answer per lane behind
        slack = lanes * max(q.completion_tokens for q in log)
        for i in range(n):
            for j in range(i + 1, n):
                sent = sum(q.prompt_tokens + q.completion_tokens for q in log[i:j])
                assert sent <= allowed / 60 * (log[j].t - log[i].t) + slack, (i, j)
    # 10%: the first request's connection setup shortens the measured span a little
    assert observed <= allowed * 1.10, (observed, allowed)
    assert observed >= allowed * 0.5, (observed, allowed)  # paced, not stalled
    assert result.counts["throttled_ms"] > 0  # pacing counts as throttled time


def test_adaptive_limit_halves_once_per_round_trip_and_recovers() -> None:
    import asyncio

    async def scenario() -> tuple[float, float, float]:
        gate = AdaptiveLimit(16)
        sent = time.perf_counter()
        for _ in range(8):
            await gate.acquire()
        for _ in range(8):  # eight 429s of attempts sent before the cut: one halving
            gate.release(sent, throttled=True)
        after_storm = gate.limit
        for _ in range(8):
            await gate.acquire()
            gate.release(time.perf_counter(), throttled=True)  # sent after the cut: cuts
        floor = gate.limit
        for _ in range(200):
            await gate.acquire()
            gate.release(time.perf_counter(), throttled=False)
        return after_storm, floor, gate.limit

    after_storm, floor, recovered = asyncio.run(scenario())
    assert after_storm == 8
    assert floor == 1  # never below one call in flight
    assert recovered == 16  # additive increase back to the run's concurrency


def test_rate_limit_header_parsing() -> None:
    import httpx

    assert parse_duration("20ms") == pytest.approx(0.02)
    assert parse_duration("1s") == 1.0
    assert parse_duration("6m0s") == 360.0
    assert parse_duration("1h2m3.5s") == pytest.approx(3723.5)
    assert parse_duration("1.5") == 1.5
    assert parse_duration("soon") is None and parse_duration("") is None
    assert parse_duration("5x") is None
    headers = httpx.Headers({"x-ratelimit-remaining-requests": "0",
                             "x-ratelimit-reset-requests": "250ms",
                             "x-ratelimit-remaining-tokens": "0",
                             "x-ratelimit-reset-tokens": "1s"})
    assert rate_limit_pause_s(headers) == 1.0  # wait for the later of the two resets
    assert rate_limit_pause_s(httpx.Headers({"x-ratelimit-remaining-requests": "3",
                                             "x-ratelimit-reset-requests": "1s"})) is None


def test_simulator_speaks_openai_rate_limit_headers() -> None:
    import email.utils

    import httpx

    from evalgate.sim import SimProfile

    body = {"model": "p", "messages": [{"role": "user", "content": "hello there"}]}
    profile = SimProfile(latency_ms=0, limit_requests=2, limit_tokens=1000, limit_window_s=360,
                         retry_after_http_date=True)
    with SimServer({"p": profile}) as server, httpx.Client(base_url=server.base_url) as client:
        first, second, third = (client.post("/v1/chat/completions", json=body)
                                for _ in range(3))
    assert [r.status_code for r in (first, second, third)] == [200, 200, 429]
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert second.headers["x-ratelimit-remaining-requests"] == "0"
    assert int(second.headers["x-ratelimit-remaining-tokens"]) == 1000 - 2 * 3
    reset = second.headers["x-ratelimit-reset-requests"]  # e.g. "5m59.998s"
    assert reset.startswith("5m") and 355 < (parse_duration(reset) or 0) <= 360
    assert rate_limit_pause_s(second.headers) == parse_duration(reset)
    when = email.utils.parsedate_to_datetime(third.headers["retry-after"])
    assert 355 < when.timestamp() - time.time() <= 361


def test_anthropic_rate_limit_headers_pause_until_their_reset_time() -> None:
    from datetime import UTC, datetime, timedelta

    from evalgate.engine.providers.base import seconds_until

    now = datetime(2026, 11, 23, 4, 40, tzinfo=UTC)
    assert seconds_until("2026-11-23T04:40:02.5Z", now) == 2.5
    assert seconds_until("2026-11-23T05:40:00+01:00", now) == 0.0  # the same instant
    assert seconds_until("2026-11-23T04:39:00Z", now) == 0.0  # past: no wait
    assert seconds_until("2026-11-23T04:40:02", now) is None  # no zone: not RFC 3339
    assert seconds_until("soon", now) is None and seconds_until(None, now) is None
    soon = (datetime.now(UTC) + timedelta(seconds=3)).isoformat().replace("+00:00", "Z")
    later = (datetime.now(UTC) + timedelta(seconds=8)).isoformat().replace("+00:00", "Z")
    headers = httpx.Headers({"anthropic-ratelimit-requests-remaining": "0",
                             "anthropic-ratelimit-requests-reset": soon,
                             "anthropic-ratelimit-input-tokens-remaining": "0",
                             "anthropic-ratelimit-input-tokens-reset": later})
    assert 7 < (rate_limit_pause_s(headers) or 0) <= 8  # the later of the two resets
    assert rate_limit_pause_s(httpx.Headers({"anthropic-ratelimit-requests-remaining": "5",
                                             "anthropic-ratelimit-requests-reset": later})) \
        is None


def test_anthropic_remaining_zero_pauses_until_reset(tmp_path: Path,
                                                     sim_server: SimServer) -> None:
    """On the Anthropic route the simulator sends anthropic-ratelimit-* headers (reset as a
    time): one lane, 4 requests per 0.4 s window, and the client waits for each reset instead
    of running into a 429."""
    sim_server.add_profile("p", {"latency_ms": 0, "limit_requests": 4, "limit_window_s": 0.4})
    with httpx.Client(base_url=sim_server.base_url) as client:
        reply = client.post("/v1/messages", json={
            "model": "p", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]})
    assert "x-ratelimit-remaining-requests" not in reply.headers
    assert reply.headers["anthropic-ratelimit-requests-limit"] == "4"
    assert reply.headers["anthropic-ratelimit-requests-reset"].endswith("Z")
    sim_server.stats.reset()
    cfg = {"provider": "anthropic", "base_url": f"{sim_server.base_url}/v1", "model": "p",
           "timeout_s": 5, "max_retries": 0}
    write_project(tmp_path, model=cfg, cases=make_cases(10))
    t0 = time.perf_counter()
    result = run_project(load_project(tmp_path), concurrency=1)
    elapsed = time.perf_counter() - t0
    assert all(r.ok for r in result.records), [r.error_message for r in result.records]
    assert sim_server.stats.outcomes["429"] == 0
    assert elapsed >= 0.4  # 10 requests need 3 windows: at least two resets waited for
    assert sum(r.throttled_ms > 0 for r in result.records) >= 2
