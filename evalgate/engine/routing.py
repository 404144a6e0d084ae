"""Executing routed calls: a router model config picks a target per canary, and its fallback
answers when the routed call fails (the router's files are loaded by evalgate.spec.routing)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from evalgate.engine.planning import PlannedCall, build_messages
from evalgate.spec.routing import Router


class RoutedExecutor:
    """Quacks like an Executor (`call`): picks the route per call, builds that target's
    messages, runs its Executor, and retries once on the fallback when the call failed."""

    def __init__(self, model: Any, make: Callable[[Any], Any]) -> None:
        self.model = model
        self.router: Router = model.router
        self.executors = {t.path.resolve(): make(t) for t in self.router.targets()}
        self._build = build_messages
        self._messages: dict[tuple[Path, str], list[dict[str, str]]] = {}

    def _planned(self, target: Any, call: Any) -> Any:
        key = (target.path.resolve(), call.entry.key)
        if key not in self._messages:
            self._messages[key] = self._build(target, call.entry.case)
        return PlannedCall(call.entry, call.sample, self._messages[key])

    async def call(self, client: Any, call: Any, label: str, t0: float) -> Any:
        route, target = self.router.select(call.entry.set_name, call.entry.case)
        record = await self.executors[target.path.resolve()].call(
            client, self._planned(target, call), label, t0)
        record.route, record.model = route, target.name
        fallback = self.router.fallback
        if record.ok or fallback is None or fallback.path.resolve() == target.path.resolve() \
                or (not record.retryable and record.error_class != "deadline_exceeded"):
            return record  # as falls_back(): a config's own error (auth, bad request) stays
        second = await self.executors[fallback.path.resolve()].call(
            client, self._planned(fallback, call), label, t0)
        offset = len(record.attempts)
        for a in second.attempts:
            a.n += offset
            a.fallback = True
        second.attempts = record.attempts + second.attempts
        second.started_s = record.started_s
        # As for a model's own `fallback:`: latency is the answering attempt's own time, the
        # time lost on the routed model is throttled/failed time, and the answer is marked so
        # the fallback warning, the fallback_rate guardrail and the cache (never stored) see it.
        second.throttled_ms += record.throttled_ms
        second.route, second.model = route, f"{fallback.name} (fallback)"
        second.answered_by = second.answered_by or fallback.name
        return second


def executor_for(model: Any, make: Callable[[Any], Any]) -> Any:
    """The model's Executor, or a RoutedExecutor for a router config."""
    return RoutedExecutor(model, make) if model.router is not None else make(model)


def with_targets(models: Sequence[Any]) -> list[Any]:
    """The models plus every router's targets (what the simulator must serve)."""
    out = []
    for m in models:
        out += m.router.targets() if m.router is not None else [m]
    return out
