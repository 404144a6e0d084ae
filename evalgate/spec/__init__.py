"""Files in: the gate config, model configs (and routers), canary sets, the production
settings, the simulator's `sim:` profiles; YAML with line numbers, the routing-condition
language and prompt templating. Pydantic models at the edge; every problem names its file,
line and field.

This layer imports nothing of evalgate but `errors` and the pure `text` helpers. Rubrics are
loaded by `evalgate.grading.rubrics`: a rubric is validated against the check catalog, which
grading owns.
"""

from __future__ import annotations

from evalgate.spec.canaries import CanarySet, Case, discover_canary_files, load_canary_file
from evalgate.spec.config import (
    GateConfig,
    GateSettings,
    LoadedGate,
    LoadedModel,
    ModelConfig,
    find_gate_config,
    load_gate_config,
    load_model_config,
)
from evalgate.spec.production import DeterminismSpec, LoadSpec, TrafficSpec
from evalgate.spec.routing import Router
from evalgate.spec.sim_profile import SimJudge, SimProfile

__all__ = ["CanarySet", "Case", "DeterminismSpec", "GateConfig", "GateSettings", "LoadSpec",
           "LoadedGate", "LoadedModel", "ModelConfig", "Router", "SimJudge", "SimProfile",
           "TrafficSpec", "discover_canary_files", "find_gate_config", "load_canary_file",
           "load_gate_config", "load_model_config"]
