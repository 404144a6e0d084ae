"""What the simulator saw: per-request outcomes, routes, models, canaries and load, safe to
read from any thread (tests read them while the server runs)."""

from __future__ import annotations

import collections
import threading
import time
from typing import Any, NamedTuple

OUTCOMES: tuple[str, ...] = (
    "ok",
    "429",
    "500",
    "timeout",
    "malformed",
    "context_length",
    "bad_request",
    "model_not_found",
    "not_found",
    "reset",
    "stall_body",
    "invalid_json",
    "empty_choices",
)


class SimRequest(NamedTuple):
    """One request as the server saw it: when (monotonic s), how busy it was, what it cost."""

    t: float
    model: str | None
    outcome: str
    in_flight: int
    prompt_tokens: int
    completion_tokens: int


class SimStats:
    """Request counters; every method is safe to call from any thread."""

    LOG_SIZE = 100_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = 0
        self._connections = 0
        self._routes: dict[str, int] = {}
        self._models: dict[str, int] = {}
        self._outcomes: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self._cases: dict[str, int] = {}
        self.in_flight = 0  # changed only on the server's loop
        self._max_in_flight = 0
        self._log: collections.deque[SimRequest] = collections.deque(maxlen=self.LOG_SIZE)
        self._streams: dict[str, float] = {}  # "<key>#<sample>" -> the server's own TTFT, ms

    def record_stream(self, case: str, ttft_ms: float) -> None:
        """The time from a streamed request's arrival to its first content chunk's write, as
        the server measured it (benchmarks compare the client's TTFT with it)."""
        with self._lock:
            self._streams[case] = ttft_ms

    def record(self, route: str, model: str | None, outcome: str, prompt_tokens: int = 0,
               completion_tokens: int = 0, case: str | None = None) -> None:
        """Count one request; called once per request when its outcome is decided. `case`
        ("<canary key>#<sample>") counts answered requests per canary (resume/cache tests)."""
        with self._lock:
            self._total += 1
            if case is not None:
                self._cases[case] = self._cases.get(case, 0) + 1
            self._routes[route] = self._routes.get(route, 0) + 1
            if model is not None:
                self._models[model] = self._models.get(model, 0) + 1
            self._outcomes[outcome] = self._outcomes.get(outcome, 0) + 1
            self._log.append(SimRequest(time.monotonic(), model, outcome, self.in_flight,
                                        prompt_tokens, completion_tokens))

    def enter(self) -> int:
        """A request starts being served; returns how many are in flight with it."""
        self.in_flight += 1
        if self.in_flight > self._max_in_flight:
            with self._lock:
                self._max_in_flight = max(self._max_in_flight, self.in_flight)
        return self.in_flight

    def leave(self) -> None:
        self.in_flight -= 1

    def record_connection(self) -> None:
        """Count one accepted TCP connection (lets tests prove keep-alive reuse)."""
        with self._lock:
            self._connections += 1

    def reset(self) -> None:
        """Zero every counter (e.g. between benchmark phases)."""
        with self._lock:
            self._total = 0
            self._connections = 0
            self._routes = {}
            self._models = {}
            self._outcomes = dict.fromkeys(OUTCOMES, 0)
            self._cases = {}
            self._max_in_flight = self.in_flight
            self._log.clear()
            self._streams = {}

    @property
    def total(self) -> int:
        """Requests counted so far (``/health`` and ``/stats`` are not counted)."""
        with self._lock:
            return self._total

    @property
    def connections(self) -> int:
        """TCP connections accepted so far."""
        with self._lock:
            return self._connections

    @property
    def routes(self) -> dict[str, int]:
        """Copy of the per-path counts."""
        with self._lock:
            return dict(self._routes)

    @property
    def models(self) -> dict[str, int]:
        """Copy of the per-model counts."""
        with self._lock:
            return dict(self._models)

    @property
    def outcomes(self) -> dict[str, int]:
        """Copy of the per-outcome counts (one outcome per request)."""
        with self._lock:
            return dict(self._outcomes)

    @property
    def max_in_flight(self) -> int:
        """Most requests the server was serving at once (since start or reset)."""
        with self._lock:
            return self._max_in_flight

    @property
    def requests(self) -> list[SimRequest]:
        """The last LOG_SIZE requests in order: arrival time, load, outcome, tokens."""
        with self._lock:
            return list(self._log)

    def snapshot(self) -> dict[str, Any]:
        """A consistent JSON-able copy of all counters."""
        with self._lock:
            return {
                "total": self._total,
                "connections": self._connections,
                "routes": dict(self._routes),
                "models": dict(self._models),
                "outcomes": dict(self._outcomes),
                "cases": dict(self._cases),
                "max_in_flight": self._max_in_flight,
                **({"streams": dict(self._streams)} if self._streams else {}),
            }
