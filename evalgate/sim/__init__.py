"""The local LLM simulator: the project's test double for everything that crosses a wire, and
the no-API-key demo. `SimServer` serves OpenAI chat completions, Anthropic messages and a
generic `/generate` endpoint over real HTTP/1.1 on 127.0.0.1; `simulator_for` starts one for a
run's `provider: sim` models.

Modules: `server` (connections, dispatch, limits), `wire` (the three protocols' shapes),
`answers` (what it says), `faults` (what goes wrong), `http` (framing), `counters` (what it
saw), `judge` (the simulated judge model), `launch` (one server for a run).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from evalgate.sim.answers import SimCase
    from evalgate.sim.counters import OUTCOMES, SimRequest, SimStats
    from evalgate.sim.launch import sim_cases, simulator_for
    from evalgate.sim.server import SimServer
    from evalgate.spec.sim_profile import SimJudge, SimProfile

# Imported on first use (PEP 562), as the stats face does: a run against a real provider
# imports `evalgate.sim.launch` but never loads the server.
_EXPORTS = {
    "OUTCOMES": "evalgate.sim.counters", "SimCase": "evalgate.sim.answers",
    "SimJudge": "evalgate.spec.sim_profile", "SimProfile": "evalgate.spec.sim_profile",
    "SimRequest": "evalgate.sim.counters", "SimServer": "evalgate.sim.server",
    "SimStats": "evalgate.sim.counters", "sim_cases": "evalgate.sim.launch",
    "simulator_for": "evalgate.sim.launch",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'evalgate.sim' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = ["OUTCOMES", "SimCase", "SimJudge", "SimProfile", "SimRequest", "SimServer",
           "SimStats", "sim_cases", "simulator_for"]
