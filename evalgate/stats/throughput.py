"""Streaming output rate against an absolute floor (`gate.metrics.tokens_per_s: {min}`)."""

from __future__ import annotations

import numpy as np

from evalgate.stats.evidence import (
    MIN_CANARIES_T,
    Evidence,
    _as_1d,
    _build,
    _check_alpha,
    _check_samples,
    _t_p,
    _t_summary,
    mde_difference,
)


def throughput_floor(cand: np.ndarray, *, guardrail: str, floor: float, alpha: float,
                     samples: int = 1) -> Evidence:
    """Mean tokens/s per canary against a floor: one-sided t bounds (n >= 30), as the cost
    budget is tested, with lower as the worse side."""
    _check_alpha(alpha)
    _check_samples(samples)
    x = _as_1d(cand, "cand")
    if floor <= 0:
        raise ValueError("the tokens/s floor must be > 0")
    n = x.size
    ts = _t_summary(x, alpha)
    ok = n >= MIN_CANARIES_T
    notes = [None if ok else f"only {n} canaries (need {MIN_CANARIES_T} for the t bound)"]
    return _build(
        guardrail=guardrail, kind="throughput_floor",
        test="one-sided t bound on the mean output tokens/s per canary",
        estimate=ts.mean, baseline=None, effect=ts.mean, effect_kind="absolute",
        ci_low=ts.low, ci_high=ts.high, margin=float(floor), worse="lower",
        p_value=_t_p(x, floor, "greater"), p_regression=None, n_canaries=n, n_samples=samples,
        discordant=None, mde=mde_difference(ts.se, alpha), alpha=alpha, minimum_met=ok,
        notes=notes)
