"""Streaming output rate against an absolute floor (`gate.metrics.tokens_per_s: {min}`)."""

from __future__ import annotations

import numpy as np

from evalgate.stats.evidence import (
    Evidence,
    _as_1d,
    _check_alpha,
    _check_samples,
    mean_against_limit,
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
    return mean_against_limit(x, guardrail=guardrail, kind="throughput_floor",
                              test="one-sided t bound on the mean output tokens/s per canary",
                              limit=floor, worse="lower", alpha=alpha, samples=samples)
