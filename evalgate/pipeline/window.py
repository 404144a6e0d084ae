"""The context window at the edge: before any call, which canaries would overflow the
candidate's window (prompt + max_output_tokens > context_window); they are errors made
without a call (`on_overflow: error`) or go to the `long_context` model, and the gate item
`context_window` says how many there were."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evalgate.engine.planning import PlannedCall, plan_calls
from evalgate.engine.window import prompt_counter
from evalgate.gate.guardrails import Guardrail
from evalgate.results import GuardrailVerdict, Record
from evalgate.spec.config import LoadedModel
from evalgate.spec.routing import overflow_router

GUARDRAIL = "context_window"
OVERFLOW_CLASS = "context_overflow"


@dataclass(frozen=True)
class WindowCheck:
    """The canaries that do not fit one model config's window, and how that was counted."""

    model: str
    window: int
    budget: int  # output tokens the answer may take (max_output_tokens or params.max_tokens)
    mode: str  # error | long_context
    counted: str  # tokenizer | estimate | estimate x r (cached answers)
    overflow: dict[str, int]  # canary key -> prompt tokens
    long_model: str | None = None

    def message(self, key: str) -> str:
        tokens = self.overflow[key]
        return (f"the prompt ({tokens} tokens, {self.counted}) plus max_output_tokens "
                f"({self.budget}) is {tokens + self.budget}, over {self.model}'s context "
                f"window of {self.window}; not sent")


def output_budget(model: LoadedModel) -> int:
    cfg = model.config
    if cfg.max_output_tokens is not None:
        return cfg.max_output_tokens
    for key in ("max_completion_tokens", "max_tokens"):
        value = cfg.params.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return 0


def check_window(model: LoadedModel, entries: Sequence[Any], root: Any, cache_mode: str
                 ) -> WindowCheck | None:
    """None when the model config gives no context_window (or is a router)."""
    cfg = model.config
    if cfg.context_window is None or model.router is not None:
        return None
    tokens, counted = prompt_counter(model, plan_calls(model, entries, 1), root, cache_mode)
    budget = output_budget(model)
    over = {k: n for k, n in tokens.items() if n + budget > cfg.context_window}
    long_name = model.long_context.name if model.long_context is not None else None
    return WindowCheck(model.name, cfg.context_window, budget, cfg.overflow_mode, counted,
                       over, long_name)


def routed(model: LoadedModel, check: WindowCheck) -> LoadedModel:
    """The model as a router sending its overflowing canaries to its long_context model."""
    assert model.long_context is not None
    router = overflow_router(model, model.long_context, frozenset(check.overflow),
                             f"prompt + {check.budget} > {check.window} tokens")
    return dataclasses.replace(model, router=router)


def overflow_record(call: PlannedCall, label: str, check: WindowCheck) -> Record:
    """An error made without a call: it counts in error_rate like any failed call."""
    entry = call.entry
    return Record(key=entry.key, set=entry.set_name, case_id=entry.case.id, sample=call.sample,
                  config=label, tags=entry.case.tags, ok=False, error_class=OVERFLOW_CLASS,
                  retryable=False, error_message=check.message(entry.key),
                  input_tokens=check.overflow[entry.key], usage_estimated=True)


def window_guardrails(model: LoadedModel) -> list[Guardrail]:
    """The `context_window` gate item, known before any call: only for a candidate that sets
    its window (a router candidate checks none)."""
    if model.config.context_window is None or model.router is not None:
        return []
    return [Guardrail("context_window", "context_window", "production", None)]


def window_verdict(check: WindowCheck | None) -> GuardrailVerdict:
    """The gate item: FAIL when canaries exceed the window and are errors; PASS when none
    does, or when they go to the long-context model."""
    if check is None:
        return GuardrailVerdict(guardrail=GUARDRAIL, metric=GUARDRAIL, kind="production",
                                test="count", verdict="PASS",
                                reason="no context_window configured")
    n = len(check.overflow)
    head = f"{n} canaries exceed the candidate's window ({check.window} tokens, " \
           f"{check.counted}, {check.budget} kept for the answer)"
    if not n:
        verdict, reason = "PASS", f"0 canaries exceed the candidate's window ({check.window} " \
            f"tokens, {check.counted})"
    elif check.mode == "long_context":
        verdict, reason = "PASS", f"{head}: sent to {check.long_model} (route long_context)"
    else:
        shown = ", ".join(sorted(check.overflow)[:5]) + (" ..." if n > 5 else "")
        verdict, reason = "FAIL", f"{head}: recorded as errors ({OVERFLOW_CLASS}) without a " \
            f"call: {shown}"
    return GuardrailVerdict(guardrail=GUARDRAIL, metric=GUARDRAIL, kind="production",
                            test="count", value=float(n), verdict=verdict,  # type: ignore[arg-type]
                            reason=reason, n_canaries=n)
