"""The local LLM simulator: the project's test double for everything that crosses a wire, and
the no-API-key demo. `SimServer` serves OpenAI chat completions, Anthropic messages and a
generic `/generate` endpoint over real HTTP/1.1 on 127.0.0.1; `simulator_for` starts one for a
run's `provider: sim` models.

Modules: `server` (connections, dispatch, limits), `wire` (the three protocols' shapes),
`answers` (what it says), `faults` (what goes wrong), `http` (framing), `counters` (what it
saw), `judge` (the simulated judge model), `launch` (one server for a run).
"""

from __future__ import annotations

from evalgate.sim.answers import SimCase
from evalgate.sim.counters import OUTCOMES, SimRequest, SimStats
from evalgate.sim.launch import sim_cases, simulator_for
from evalgate.sim.server import SimServer
from evalgate.spec.sim_profile import SimJudge, SimProfile

__all__ = ["OUTCOMES", "SimCase", "SimJudge", "SimProfile", "SimRequest", "SimServer",
           "SimStats", "sim_cases", "simulator_for"]
