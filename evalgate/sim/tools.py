"""How the simulator answers a tool canary: the call its expected.tool_call describes, or, at
the profile's `tool_error_rate`, a hallucinated one (a tool that was not offered, or an
argument its schema does not have). Drawn from a stream keyed like the answers, so a retry
gets the same call."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from evalgate.sim.answers import SimCase, _rng
from evalgate.spec.sim_profile import SimProfile

_INVENTED = ("priority", "confidence", "notes", "force")


def tool_answer(case: SimCase | None, profile: SimProfile, stream_key: str
                ) -> dict[str, Any] | None:
    """{id, name, arguments} when the canary expects a tool call, else None (a text answer)."""
    if case is None or case.tool_call is None:
        return None
    name, arguments = case.tool_call[0], json.loads(case.tool_call[1])
    if profile.tool_error_rate > 0:
        rng = _rng(f"tool\x1f{stream_key}")
        if rng.random() < profile.tool_error_rate:
            if rng.random() < 0.5:
                name = f"{name}_v2"
            else:
                known = set(case.tool_params) | set(arguments)
                extra = next((k for k in _INVENTED if k not in known), "invented_argument")
                arguments = {**arguments, extra: True}
    digest = hashlib.sha256(stream_key.encode()).hexdigest()[:12]
    return {"id": f"call_sim_{digest}", "name": name, "arguments": arguments}
