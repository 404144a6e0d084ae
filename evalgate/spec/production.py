"""Gate-config sections for production-like checks: traffic mix, load profile, determinism.

Separate from config.py so the sections (and their validation) live next to each other; the
gate config imports them as optional fields, and leaving them out changes nothing.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrafficSpec(_Strict):
    """Production traffic mix for the blended cost: weights per canary tag (any scale; they
    are normalised), or none to take the canary distribution as it is."""

    weights: dict[str, float] = Field(default_factory=dict)
    monthly_requests: float = Field(1_000_000, gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _positive(self) -> TrafficSpec:
        bad = [t for t, w in self.weights.items() if not w >= 0]
        if bad or (self.weights and sum(self.weights.values()) <= 0):
            raise ValueError("traffic weights must be >= 0 with a positive sum")
        return self


class LoadSpec(_Strict):
    """Replay canary prompts at each concurrency level, candidate and baseline interleaved."""

    levels: list[int] = Field(min_length=1, max_length=12)
    requests: int = Field(64, ge=1, le=20000)              # per level and config (a cap)
    duration_s: float | None = Field(None, gt=0, le=3600)  # per level: stop after this long
    max_total_s: float = Field(120.0, gt=0, le=7200)       # hard cap on the whole load phase
    rounds: int = Field(4, ge=1, le=100)                   # alternating batches per level
    max_p95_ms: dict[int, float] = Field(default_factory=dict)
    max_error_rate: float | None = Field(None, ge=0, le=1)
    max_p95_ratio: float | None = Field(None, ge=1)        # candidate p95 / baseline p95

    @model_validator(mode="after")
    def _levels(self) -> LoadSpec:
        if any(c < 1 or c > 1024 for c in self.levels):
            raise ValueError("concurrency levels must be between 1 and 1024")
        if len(set(self.levels)) != len(self.levels):
            raise ValueError("concurrency levels must be distinct")
        unknown = sorted(set(self.max_p95_ms) - set(self.levels))
        if unknown:
            raise ValueError(f"max_p95_ms names level(s) {unknown} that are not in levels "
                             f"{self.levels}")
        if any(not v > 0 for v in self.max_p95_ms.values()):
            raise ValueError("max_p95_ms bounds must be positive")
        return self


class CanarySelector(_Strict):
    tags: list[str] | None = None
    ids: list[str] | None = None
    count: int | None = Field(None, ge=1, le=10000)


class DeterminismSpec(_Strict):
    """Ask selected canaries `repeats` times and measure whether the answers agree."""

    canaries: CanarySelector = Field(default_factory=CanarySelector)
    repeats: int = Field(5, ge=2, le=100)
    agreement: Literal["exact", "normalized"] = "normalized"  # what the guardrails hold
    min_agreement: float | None = Field(None, ge=0, le=1)
    max_agreement_drop: float | None = Field(None, ge=0, le=1)  # vs a live baseline
