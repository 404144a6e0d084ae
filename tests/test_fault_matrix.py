"""The provider fault matrix, end to end: each fault is injected by the simulator over real HTTP
on 127.0.0.1 into ONE canary's calls (SimProfile.fault_cases), and the run must classify it
(error_class, retryable or not), keep that canary's record, count it in error_rate, retry
exactly the retryable ones, and answer every other canary normally."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from evalgate.pipeline.project import load_project
from evalgate.pipeline.run import run_project
from tests.conftest import make_cases, sim_model, write_project

N = 4
TARGET = "set/c1"
MAX_RETRIES = 2
LONG_FACT = "the refund goes back to the original card " * 8  # ~85 tokens, others ~5

# id, profile knobs, model config knobs, expected class, retryable
MATRIX: list[tuple[str, dict[str, Any], dict[str, Any], str, bool]] = [
    ("http-500", {"error_500_rate": 1.0}, {}, "server_error", True),
    ("http-502", {"error_500_rate": 1.0, "error_500_status": 502}, {}, "bad_gateway", True),
    ("http-503", {"error_500_rate": 1.0, "error_500_status": 503}, {}, "unavailable", True),
    ("http-429", {"error_429_rate": 1.0, "retry_after_s": 0.01}, {}, "rate_limited", True),
    ("connection-reset", {"reset_rate": 1.0}, {}, "connection_reset", True),
    ("read-timeout", {"timeout_rate": 1.0, "stall_s": 3.0}, {"timeout_s": 0.3},
     "timeout", True),
    ("stall-mid-body", {"stall_body_rate": 1.0, "stall_s": 3.0}, {"timeout_s": 0.3},
     "stalled_body", True),
    ("truncated-json", {"malformed_rate": 1.0}, {}, "truncated_response", True),
    ("malformed-json", {"invalid_json_rate": 1.0}, {}, "malformed_response", True),
    ("empty-choices", {"empty_choices_rate": 1.0}, {}, "empty_response", True),
    # deterministic faults of the request itself: the same request fails the same way again
    ("finish-length", {}, {"params": {"max_tokens": 20}}, "max_tokens", False),
    ("context-length", {"context_window": 60}, {}, "context_length", False),
]


def cases_with_a_long_one() -> list[dict[str, Any]]:
    """make_cases(N), with c1's answer and prompt long enough for the token-limit rows."""
    cases = make_cases(N)
    cases[1]["expected"]["facts"] = [LONG_FACT.strip()]
    cases[1]["context"] = "Policy text. " * 40  # ~130 tokens of prompt; the others ~12
    return cases


@pytest.mark.parametrize(("profile", "model", "error_class", "retryable"),
                         [pytest.param(*row[1:], id=row[0]) for row in MATRIX])
def test_fault_is_classified_recorded_and_counted(tmp_path: Path, profile: dict[str, Any],
                                                  model: dict[str, Any], error_class: str,
                                                  retryable: bool) -> None:
    cfg = sim_model(fault_cases=[TARGET], **profile)
    cfg.update(max_retries=MAX_RETRIES, **model)
    write_project(tmp_path, model=cfg, cases=cases_with_a_long_one())
    result = run_project(load_project(tmp_path), concurrency=4)

    assert [r.key for r in result.records] == [f"set/c{i}" for i in range(N)]  # none dropped
    by_key = {r.key: r for r in result.records}
    bad = by_key.pop(TARGET)
    assert not bad.ok and bad.error_class == error_class and bad.retryable is retryable
    assert bad.error_message
    assert len(bad.attempts) == (MAX_RETRIES + 1 if retryable else 1)
    if error_class != "max_tokens":  # a cut-off answer comes back as an HTTP 200
        assert all(a.error_class == error_class for a in bad.attempts)
    assert bad.passed is None and bad.hallucination is None  # an error is not graded
    for other in by_key.values():
        assert other.ok and other.passed and len(other.attempts) == 1, other
    assert result.metrics["error_rate"] == pytest.approx(1 / N)
    assert result.counts["errors"] == 1 and result.counts["canaries"] == N
    assert result.metrics["pass_rate"] == 1.0  # quality is over answered calls only


def test_matrix_faults_reach_the_server(tmp_path: Path) -> None:
    """The simulator really injected each kind of fault (not, say, a client-side error)."""
    from evalgate.sim import SimProfile, SimServer
    from tests.conftest import sim_cases_from

    cases = make_cases(2)
    knobs = {"reset": {"reset_rate": 1.0}, "stall_body": {"stall_body_rate": 1.0,
                                                           "stall_s": 3.0},
             "invalid_json": {"invalid_json_rate": 1.0},
             "empty_choices": {"empty_choices_rate": 1.0}}
    with SimServer(cases=sim_cases_from(cases)) as server:
        for outcome, knob in knobs.items():
            server.add_profile(outcome, SimProfile(latency_ms=0, **knob))
            cfg = {"provider": "openai", "base_url": f"{server.base_url}/v1", "model": outcome,
                   "timeout_s": 0.3, "max_retries": 0}
            root = tmp_path / outcome
            write_project(root, model=cfg, cases=cases)
            result = run_project(load_project(root), concurrency=2)
            assert all(not r.ok for r in result.records)
            assert server.stats.outcomes[outcome] == 2, (outcome, server.stats.outcomes)
