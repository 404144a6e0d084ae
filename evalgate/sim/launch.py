"""Starting the simulator for a run: one server on 127.0.0.1 serving every `provider: sim`
model's profile, taught the run's canaries (their facts, forbidden claims and references)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from typing import Any

from evalgate.sim.answers import SimCase
from evalgate.spec.canaries import Case
from evalgate.spec.config import LoadedModel
from evalgate.spec.sim_profile import SimProfile
from evalgate.spec.tools import example_arguments


def sim_cases(entries: Sequence[Any]) -> list[SimCase]:
    """The simulator's view of canary entries (anything with `key` and `case`)."""
    return [SimCase(key=e.key, prompt=e.case.user_text, facts=tuple(e.case.expected.facts),
                    forbidden=tuple(e.case.expected.forbidden),
                    reference=_sim_answer(e.case), **_sim_tool(e.case)) for e in entries]


def _sim_tool(case: Case) -> dict[str, Any]:
    """The call a tool canary is answered with, and the expected tool's parameter names."""
    expected = case.expected.tool_call
    if expected is None:
        return {}
    tool = next((t for t in case.tools or [] if t.name == expected.name), None)
    params = tuple((tool.function.parameters.get("properties") or {}) if tool else ())
    parameters = tool.function.parameters if tool is not None else None
    return {"tool_call": (expected.name, json.dumps(example_arguments(expected, parameters))),
            "tool_params": params}


def _sim_answer(case: Case) -> str | None:
    """The simulator answers a canary's reference, or its `metadata.sim_answer` (a demo of an
    answer a model should not give, e.g. a judge-injection attempt)."""
    forced = case.metadata.get("sim_answer")
    return forced if isinstance(forced, str) else case.expected.reference


@contextlib.contextmanager
def simulator_for(models: Sequence[LoadedModel], entries: Sequence[Any]
                  ) -> Iterator[str | None]:
    """Start one local simulator on 127.0.0.1 serving every `provider: sim` model's profile."""
    sims = [m for m in models if m.config.provider == "sim"]
    if not sims:
        yield None
        return
    from evalgate.sim.server import SimServer  # the server loads only when a run uses it

    server = SimServer(cases=sim_cases(entries))
    for model in sims:
        server.add_profile(model.config.model or model.name, model.config.sim or SimProfile())
    server.start()
    try:
        yield server.base_url
    finally:
        server.stop()
