"""The run result: what every call did, how it was graded, the metrics and the verdicts.

This is the JSON contract (`reports/evalgate.json`): versioned, re-renderable, usable as the
baseline of a later run. Pydantic models here; plain functions elsewhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

SCHEMA_VERSION = 1
RESULT_FILE = "evalgate.json"

Verdict = Literal["PASS", "FAIL", "INCONCLUSIVE"]


class Attempt(BaseModel):
    """One HTTP attempt of a call (a call retries after 429s, 5xx, timeouts...)."""

    n: int
    status: int | None = None
    error_class: str | None = None
    latency_ms: float
    retry_after_s: float | None = None
    waited_ms: float = 0.0
    fallback: bool = False  # made to the model config's `fallback:` model


class CriterionResult(BaseModel):
    id: str
    kind: str
    check: str
    passed: bool
    detail: str


class Record(BaseModel):
    """One call (one canary, one sample, one config) and its grade."""

    key: str
    set: str
    case_id: str
    sample: int = 0
    config: str = "candidate"
    tags: list[str] = Field(default_factory=list)
    ok: bool
    text: str | None = None
    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    usage_estimated: bool = False
    cost_usd: float | None = None
    latency_ms: float | None = None
    started_s: float = 0.0
    attempts: list[Attempt] = Field(default_factory=list)
    error_class: str | None = None
    error_message: str | None = None
    criteria: list[CriterionResult] = Field(default_factory=list)
    passed: bool | None = None
    hallucination: bool | None = None
    score: float | None = None
    # Provider faults: whether the final error was worth retrying; time spent waiting on rate
    # limits (429s, Retry-After, x-ratelimit-* pauses, adaptive concurrency, rpm/tpm pacing),
    # never part of latency_ms; the `fallback:` model's name when it gave this answer.
    retryable: bool | None = None
    throttled_ms: float = 0.0
    answered_by: str | None = None

    @property
    def record_id(self) -> str:
        return f"{self.key}#{self.sample}"


class ThresholdOut(BaseModel):
    max: float | None = None
    min: float | None = None


class GuardrailVerdict(BaseModel):
    """One guardrail's verdict with its evidence: what was measured, against what, how sure."""

    guardrail: str
    metric: str
    kind: str
    test: str
    value: float | None = None
    baseline: float | None = None
    effect: float | None = None
    effect_kind: str = "absolute"
    ci_low: float | None = None
    ci_high: float | None = None
    margin: float | None = None
    threshold: ThresholdOut | None = None
    worse: str = "higher"
    p_value: float | None = None
    p_regression: float | None = None
    p_regression_holm: float | None = None
    n_canaries: int = 0
    n_samples: int = 1
    discordant: list[int] | None = None
    mde: float | None = None
    min_passable_margin: float | None = None
    verdict: Verdict
    note: str | None = None
    reason: str


class ModelInfo(BaseModel):
    name: str
    provider: str
    model: str
    fingerprint: str
    # The model config as loaded (the API key's env var name only, never its value) and the
    # resolved system prompt / prompt template, so reports can show what changed.
    config: dict[str, Any] = Field(default_factory=dict)


class RunEnvironment(BaseModel):
    python: str = ""
    platform: str = ""
    git_commit: str | None = None
    git_branch: str | None = None


class BaselineInfo(BaseModel):
    source: str
    kind: str
    name: str
    provider: str | None = None
    model: str | None = None
    fingerprint: str | None = None
    run_id: str | None = None
    rubric_fingerprints: dict[str, str] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)


class ComparisonInfo(BaseModel):
    """How the baseline lines up with this run's canaries."""

    compared: int
    missing_in_baseline: list[str] = Field(default_factory=list)
    changed: list[str] = Field(default_factory=list)
    extra_in_baseline: list[str] = Field(default_factory=list)


class RunResult(BaseModel):
    schema_version: int = SCHEMA_VERSION
    evalgate_version: str
    run_id: str
    started_at: str
    wall_time_s: float
    gate_fingerprint: str
    canary_fingerprint: str
    rubric_fingerprints: dict[str, str]
    candidate: ModelInfo
    samples: int
    concurrency: int
    calls_made: int
    records: list[Record]
    metrics: dict[str, float | None]
    counts: dict[str, int]
    verdicts: list[GuardrailVerdict]
    verdict: Verdict
    on_inconclusive: str = "fail"
    canary_failures: str = "fail"  # fail: a failing canary fails the run; report: shown only
    alpha: float = 0.05
    case_fingerprints: dict[str, str] = Field(default_factory=dict)
    baseline: BaselineInfo | None = None
    baseline_records: list[Record] = Field(default_factory=list)
    baseline_metrics: dict[str, float | None] = Field(default_factory=dict)
    comparison: ComparisonInfo | None = None
    warnings: list[str] = Field(default_factory=list)
    gate: dict[str, Any] = Field(default_factory=dict)  # the GateSettings the verdicts used
    environment: RunEnvironment = Field(default_factory=RunEnvironment)
    total_cost_usd: float = 0.0  # spend of this run's calls (candidate and a live baseline)
    shard: str | None = None  # "I/N" for one slice of a sharded run; None when whole
    calls_from_cache: int = 0

    def record_map(self) -> dict[str, Record]:
        return {r.record_id: r for r in self.records}


def write_result(result: RunResult, path: Path) -> None:
    """Write atomically: a reader (an xdist worker, a later run) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(result.model_dump_json(indent=1), encoding="utf-8")
    tmp.replace(path)


def read_result(path: Path) -> RunResult:
    return RunResult.model_validate_json(path.read_text(encoding="utf-8"))
