"""The run result: what every call did, how it was graded, the metrics and the verdicts.

This is the JSON contract (`reports/evalgate.json`): versioned, re-renderable, usable as the
baseline of a later run. Pydantic models here; plain functions elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

# 2: streaming timings, response details (tool calls, cache and reasoning tokens), review,
# N candidates and the leaderboard, images; every field added is optional, so version 1
# results still load (tests/test_cli_reports.py).
SCHEMA_VERSION = 2
RESULT_FILE = "evalgate.json"
# The error class of a call the run did not make because it stopped early (a dead endpoint).
STOPPED_CLASS = "stopped_early"

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


class ClaimResult(BaseModel):
    """One claim (sentence) of an answer and whether the case's context supports it."""

    text: str
    support: float  # lexical: share of its content words found in the context
    status: Literal["supported", "unsupported", "undecided"]
    by: str = "lexical"  # lexical | judge | undecided -> pass/fail
    detail: str = ""


class CriterionResult(BaseModel):
    id: str
    kind: str
    check: str
    passed: bool
    detail: str
    weight: float = 1.0
    error: str | None = None  # a judge error (never a pass)
    # Set when the outcome rests on judge errors: what `passed` would be had each of them been
    # a PASS (a judge criterion with no verdict or outvoted by errors, a grounded criterion
    # whose only unsupported claims are the judge's errors).
    passed_if_judged: bool | None = None
    claims: list[ClaimResult] = Field(default_factory=list)  # grounded: per-claim support
    votes: list[str] = Field(default_factory=list)  # judge_samples > 1: PASS/FAIL/ERROR
    agreement: float | None = None  # share of votes agreeing with the majority


class IfJudged(BaseModel):
    """A record's grade had every judge error been a PASS (its best case)."""

    passed: bool
    hallucination: bool
    score: float


class ToolCall(BaseModel):
    """A tool call in an answer: `arguments` parsed from JSON, else the raw text (with
    `parse_error` saying why)."""

    name: str
    arguments: Any = None
    id: str | None = None
    parse_error: str | None = None


class CanaryImage(BaseModel):
    """An image a canary sends: its file name, type, size and hash; `thumbnail` (a data URI)
    only for a small one, for the HTML report."""

    name: str
    media_type: str
    bytes: int
    sha256: str
    thumbnail: str | None = None


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
    if_judged: IfJudged | None = None  # set when the grade rests on judge errors
    route: str | None = None  # a router candidate: the route that took the call
    model: str | None = None  # ... and the model config that answered it
    # Answered from the response cache: no call made in this run; latency_ms and the token
    # counts are the ones measured when the answer was made, at cached_at (UTC, ISO 8601).
    cached: bool = False
    cached_at: str | None = None
    judge_calls: int = 0  # judge calls made to grade this answer (cost kept apart)
    judge_cost_usd: float | None = None
    # Provider faults: whether the final error was worth retrying; time spent waiting on rate
    # limits (429s, Retry-After, x-ratelimit-* pauses, adaptive concurrency, rpm/tpm pacing),
    # never part of latency_ms; the `fallback:` model's name when it gave this answer.
    retryable: bool | None = None
    throttled_ms: float = 0.0
    answered_by: str | None = None
    # Streaming (`stream: true`), from the client's clock on the answering attempt, throttled
    # time excluded: None when the call was not asked to stream, False when the server ignored
    # it and sent plain JSON (no timing then); time to first content token, mean and p95 gap
    # between content chunks, output tokens after the first per second.
    streamed: bool | None = None
    ttft_ms: float | None = None
    itl_ms: float | None = None
    itl_p95_ms: float | None = None
    tokens_per_s: float | None = None
    # What the server said beyond text and plain token counts: the tool calls it asked for;
    # cached / cache-write input tokens (part of input_tokens) and reasoning tokens (part of
    # output_tokens); where cost_usd came from ("table": the model config's pricing;
    # "header": the gateway's cost header) and, for a header price, the table's price too.
    tool_calls: list[ToolCall] = Field(default_factory=list)
    # a tool canary's expected call (its `arguments`: the expected exact values, schema and
    # per-field checks), shown beside the answer's calls in the reports
    expected_tool_call: ToolCall | None = None
    images: list[str] = Field(default_factory=list)  # the canary's image files, by name
    cached_input_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None
    # inline reasoning (`<think>...</think>`) taken off the answer before grading
    # (strip_reasoning, on by default); kept here for reading, never graded
    reasoning_text: str | None = None
    cost_source: str | None = None
    table_cost_usd: float | None = None

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


# -- production-like checks (evalgate/gate/: routes, load, determinism) ---------------------

class RouteStats(BaseModel):
    """One route of a router config: its share of the calls and its main metrics."""

    route: str
    calls: int
    share: float
    canaries: int
    models: dict[str, int] = Field(default_factory=dict)
    metrics: dict[str, float | None] = Field(default_factory=dict)


class BlendedCost(BaseModel):
    """Projected cost under a traffic mix (weights per tag; none: the canaries as they are)."""

    monthly_requests: float
    weights: dict[str, float] = Field(default_factory=dict)
    missing_tags: list[str] = Field(default_factory=list)
    per_request_usd: float | None = None
    per_1k_usd: float | None = None
    per_month_usd: float | None = None


class LoadLevel(BaseModel):
    """One config at one concurrency level of the load profile."""

    concurrency: int
    config: str
    requests: int
    errors: int
    rate_429: float  # share of requests that met at least one 429
    error_rate: float
    throughput_rps: float
    duration_s: float
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    truncated: bool = False  # stopped by the load phase's time cap
    attempts: int = 0  # HTTP attempts, retries included (0 in older result files)
    cost_usd: float = 0.0  # what the level's calls cost: part of the run's total_cost_usd


class LoadReport(BaseModel):
    levels: list[LoadLevel] = Field(default_factory=list)
    wall_time_s: float = 0.0
    interleaved: bool = False
    notes: list[str] = Field(default_factory=list)


class DeterminismStats(BaseModel):
    """One config's answers to the same canaries asked `repeats` times."""

    config: str
    canaries: int
    repeats: int
    exact_agreement: float | None = None       # share of canaries whose K answers are equal
    normalized_agreement: float | None = None  # ... after case/whitespace/punctuation folding
    score_stdev_mean: float | None = None      # mean over canaries of the stdev of K scores
    score_range_max: float | None = None       # largest max-min of K scores on one canary
    errors: int = 0
    disagreeing: list[str] = Field(default_factory=list)  # canary keys (normalised)


class DeterminismReport(BaseModel):
    agreement: str = "normalized"
    candidate: DeterminismStats
    baseline: DeterminismStats | None = None
class SequentialLook(BaseModel):
    """One look of a sequential run: how much data, the boundary, what it decided."""

    look: int
    canaries: int
    fraction: float
    z_bound: float
    nominal_alpha: float
    decided: dict[str, str] = Field(default_factory=dict)
    curtailed: dict[str, str] = Field(default_factory=dict)


class SequentialInfo(BaseModel):
    """How a sequential run (gate.sequential) went: its looks and why it stopped."""

    looks: list[float]
    alpha: float
    spending: str
    canaries_planned: int
    looks_done: int
    looks_planned: int
    stopped_early: bool
    reason: str
    calls_planned: int
    calls_saved: int
    analyses: list[SequentialLook] = Field(default_factory=list)


class JudgeAccuracyOut(BaseModel):
    """An automatic verdict (the record's hallucination verdict, or one hallucination
    criterion) against reviewers' labels; intervals two-sided 1 - 2*alpha."""

    criterion: str
    n: int
    true_pos: int
    false_neg: int
    false_pos: int
    true_neg: int
    sensitivity: float | None = None
    sensitivity_ci: list[float] | None = None
    specificity: float | None = None
    specificity_ci: list[float] | None = None
    kappa: float | None = None
    kappa_ci: list[float] | None = None


class CorrectedRateOut(BaseModel):
    """A hallucination guardrail recomputed on judge-corrected rates (gate.correct_for_judge)."""

    guardrail: str
    observed: float
    estimate: float
    ci_low: float
    ci_high: float
    candidate: float
    baseline: float | None = None
    sensitivity: float
    specificity: float
    n_labels: int
    sd_canaries: float
    sd_labels: float
    labels_to_decide: int | None = None


class ReviewInfo(BaseModel):
    """Human review behind the gate: verified canaries, labels, the judge measured against them."""

    canaries: int
    verified: int
    verified_only: bool = False
    min_verified: int | None = None
    labels: int = 0  # label lines on file
    labelled_answers: int = 0  # answers of this run with a usable (agreed, not unsure) label
    unmatched_labels: int = 0  # labels for answers not in this run (older answers)
    unknown_canaries: list[str] = Field(default_factory=list)  # labels naming no canary
    multi_labelled: int = 0  # answers labelled by two or more reviewers
    conflicts: int = 0  # ... whose reviewers disagree (all kept on file; left out here)
    reviewer_agreement: float | None = None
    judge: list[JudgeAccuracyOut] = Field(default_factory=list)
    corrected: list[CorrectedRateOut] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


class ConfigCalls(BaseModel):
    """One config's calls in this run: the answers asked for and the HTTP attempts they took
    (retries included); answers from the cache or the journal, and calls an early stop left
    unmade, are in neither."""

    made: int = 0
    attempts: int = 0


class Figure(BaseModel):
    """A leaderboard figure: the estimate and its two one-sided (1 - alpha) bounds."""

    value: float | None = None
    low: float | None = None
    high: float | None = None


class Standing(BaseModel):
    """One config on the leaderboard (`status: no data` when none of its calls answered)."""

    name: str
    status: Literal["ok", "no data"] = "ok"
    n_canaries: int = 0
    figures: dict[str, Figure] = Field(default_factory=dict)
    best_on: list[str] = Field(default_factory=list)  # quality metrics it has the best value on
    tied_with_best: list[str] = Field(default_factory=list)  # ... or is indistinguishable on
    non_inferior: bool | None = None  # to the best, on pass and hallucination rates


class PairTest(BaseModel):
    metric: str
    a: str
    b: str
    p_value: float
    p_holm: float
    significant: bool


class NonInferiority(BaseModel):
    config: str
    metric: str
    difference: float | None = None  # config minus the best
    low: float | None = None
    high: float | None = None
    margin: float
    non_inferior: bool


class Choice(BaseModel):
    """The recommendation on one scope (all canaries, or the canaries of one tag)."""

    scope: str = "all"
    tag: str | None = None
    n_canaries: int = 0
    verdict: Literal["RECOMMEND", "NONE_NON_INFERIOR", "INCONCLUSIVE"]
    recommended: str | None = None
    best: str | None = None
    reason: str
    standings: list[Standing] = Field(default_factory=list)
    pairs: list[PairTest] = Field(default_factory=list)
    evidence: list[NonInferiority] = Field(default_factory=list)


class Leaderboard(BaseModel):
    alpha: float
    margins: dict[str, float | None] = Field(default_factory=dict)
    correction: str = ""
    overall: Choice
    by_tag: list[Choice] = Field(default_factory=list)
    paths: dict[str, str] = Field(default_factory=dict)  # config name -> its model config file
    traffic_weights: dict[str, float] = Field(default_factory=dict)


class CandidateRun(BaseModel):
    """A candidate beyond the first (`candidates:`): its answers and its own gate."""

    label: str  # Record.config of its records
    info: ModelInfo
    path: str | None = None
    records: list[Record] = Field(default_factory=list)
    metrics: dict[str, float | None] = Field(default_factory=dict)
    counts: dict[str, int] = Field(default_factory=dict)
    verdicts: list[GuardrailVerdict] = Field(default_factory=list)
    verdict: Verdict = "INCONCLUSIVE"


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
    calls_made: int  # every HTTP attempt: both configs' calls, load and determinism probes
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
    # The gate as a family of tests: its family-wise false-FAIL rate (and what
    # gate.fail_correction does about it); None with fewer than two tested guardrails.
    family_wise: str | None = None
    images: dict[str, list[CanaryImage]] = Field(default_factory=dict)  # canary key -> images
    gate: dict[str, Any] = Field(default_factory=dict)  # the GateSettings the verdicts used
    environment: RunEnvironment = Field(default_factory=RunEnvironment)
    total_cost_usd: float = 0.0  # spend of this run's calls (candidate and a live baseline)
    shard: str | None = None  # "I/N" for one slice of a sharded run; None when whole
    calls_from_cache: int = 0
    # candidate, and a live baseline: one count each (the judge's calls are judge_calls)
    calls_by_config: dict[str, ConfigCalls] = Field(default_factory=dict)
    # Production-like checks; empty/None unless configured (router candidate, traffic, load:,
    # determinism:).
    routes: list[RouteStats] = Field(default_factory=list)
    baseline_routes: list[RouteStats] = Field(default_factory=list)
    blended_cost: BlendedCost | None = None
    baseline_blended_cost: BlendedCost | None = None
    load: LoadReport | None = None
    determinism: DeterminismReport | None = None
    calls_from_journal: int = 0  # --evalgate-resume: answers reused from the interrupted run
    # Interrupted (Ctrl-C) before every call was made: the verdict is never PASS.
    partial: bool = False
    judge_model: str | None = None  # the judge's model when a rubric needed one
    judge_calls: int = 0
    judge_cost_usd: float = 0.0  # not in total_cost_usd: the candidate's spend stays comparable
    judge_errors: int = 0  # judged items with no valid verdict (graded as failed)
    judge_agreement: float | None = None  # mean vote agreement where judge_samples > 1
    judge_calls_from_cache: int = 0  # judge verdicts read from the response cache: no call
    calls_planned: int | None = None  # planned calls (candidate + live baseline); None: unknown
    calls_saved_sequential: int = 0  # planned calls a sequential stop made unnecessary
    sequential: SequentialInfo | None = None
    review: ReviewInfo | None = None  # verified canaries and labels, when the gate uses them
    # N candidates (`candidates:`): the ones after the first, which decides unless `require`
    alternatives: list[CandidateRun] = Field(default_factory=list)
    require: Literal["all", "any", "primary"] = "primary"
    primary_verdict: Verdict | None = None  # the first candidate's own verdict (N candidates)
    candidate_path: str | None = None
    leaderboard: Leaderboard | None = None

    def record_map(self) -> dict[str, Record]:
        return {r.record_id: r for r in self.records}


def write_synced(path: Path, data: bytes, mode: int = 0o666) -> None:
    """Create `path` with `data` and fsync it: on disk before anything renames it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        if mode != 0o666:  # a private file stays private whatever the umask
            os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_dir(path: Path) -> None:
    """fsync a directory, so a rename in it survives a power loss (best effort)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o666) -> None:
    """Write a whole file atomically: a temp file named for this process (two processes never
    share one), fsync'd, then renamed over `path`. A reader (an xdist worker, a later run)
    sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        write_synced(tmp, data, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    sync_dir(path.parent)


def write_result(result: RunResult, path: Path) -> None:
    """Write atomically (see atomic_write)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, result_bytes(result))


def result_bytes(result: RunResult) -> bytes:
    return result.model_dump_json(indent=1).encode()


def read_result(path: Path) -> RunResult:
    return RunResult.model_validate_json(path.read_text(encoding="utf-8"))
