"""`max_concurrency` holds the requests in flight to what a server answers at once, and the
report warns when a run sent more than its server sustained (latency up, throughput flat)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evalgate.gate.serving import Saturation, in_flight_peak, run_peak, saturation
from evalgate.pipeline.project import load_project
from evalgate.pipeline.run import run_project
from evalgate.results import LoadLevel, LoadReport, RunResult
from tests.conftest import make_cases, write_project
from tests.wire_server import Canned, WireServer, wire_server

SERVICE_S = 0.2  # what the server spends on one request (well above the client's own)


def answer(path: str, request: dict[str, Any]) -> Canned:
    """The right answer for the canary the request asks about (make_cases' wording)."""
    n = request["messages"][-1]["content"].split()[1].rstrip(":")
    return Canned({"choices": [{"index": 0, "finish_reason": "stop",
                                "message": {"role": "assistant", "content": f"{n} days."}}],
                   "usage": {"prompt_tokens": 10, "completion_tokens": 3}})


LOAD = {"levels": [1, 4], "requests": 8, "rounds": 1}


def run(tmp_path: Path, server: WireServer, n: int = 8, **model: Any) -> RunResult:
    config = {"provider": "openai", "base_url": f"{server.base_url}/v1", "model": "m",
              "timeout_s": 10, **model}
    write_project(tmp_path, model=config, cases=make_cases(n),
                  gate={"concurrency": 4, "load": LOAD})
    return run_project(load_project(tmp_path))


def queue_warnings(result: RunResult) -> list[str]:
    return [w for w in result.warnings if "max_concurrency" in w]


def test_single_slot_server_warns_and_max_concurrency_holds_it(tmp_path: Path) -> None:
    with wire_server(answer, slots=1, service_s=SERVICE_S) as server:
        flooded = run(tmp_path / "flooded", server)
        assert server.peak == 4 and run_peak(flooded.records) == 4
        [warning] = queue_warnings(flooded)
        assert "candidate: from concurrency 1 to 4 throughput grew only" in warning
        assert "the run had up to 4 calls in flight" in warning
        assert "set max_concurrency: 1" in warning.lower()
        found = saturation(flooded.load, "candidate")
        assert found is not None and found.gain < 2 and found.rise >= 1.5 and found.sustained == 1

        server.peak = 0
        held = run(tmp_path / "held", server, max_concurrency=1)
        assert server.peak == 1 and run_peak(held.records) == 1
        assert not queue_warnings(held) and all(r.passed for r in held.records)


def test_a_server_that_answers_in_parallel_gets_no_warning(tmp_path: Path) -> None:
    with wire_server(answer, service_s=SERVICE_S) as server:
        result = run(tmp_path, server)
    assert server.peak == 4 and not queue_warnings(result)
    assert saturation(result.load, "candidate") is None
    levels = {lv.concurrency: lv.throughput_rps for lv in result.load.levels}
    assert levels[4] > 2 * levels[1]


def test_saturation_needs_a_step_up_in_concurrency() -> None:
    def level(concurrency: int, rps: float, p50: float) -> LoadLevel:
        return LoadLevel(concurrency=concurrency, config="candidate", requests=10, errors=0,
                         rate_429=0.0, error_rate=0.0, throughput_rps=rps, duration_s=1.0,
                         p50_ms=p50)

    queued = LoadReport(levels=[level(1, 10.0, 100), level(4, 11.0, 380), level(8, 11, 760)])
    assert saturation(queued, "candidate") == Saturation("candidate", 1, 4, 11.0, 1.1, 3.8)
    two_slots = LoadReport(levels=[level(1, 10.0, 100), level(8, 19.0, 420)])
    assert saturation(two_slots, "candidate").sustained == 2  # type: ignore[union-attr]
    scaled = LoadReport(levels=[level(1, 10.0, 100), level(4, 38.0, 105)])
    assert saturation(scaled, "candidate") is None
    assert saturation(LoadReport(levels=[level(4, 11.0, 380)]), "candidate") is None
    assert saturation(None, "candidate") is None


def test_in_flight_peak_counts_overlaps() -> None:
    assert in_flight_peak([(0, 1), (0.5, 2), (1, 3), (2.5, 4)]) == 2
    assert in_flight_peak([(0, 1), (1, 2)]) == 1  # one ends as the next starts
    assert in_flight_peak([]) == 0
