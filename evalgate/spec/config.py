"""Gate and model configuration: pydantic models at the edge, located errors on bad input."""

from __future__ import annotations

import itertools
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal, get_args

from pydantic import Field, field_validator, model_validator

from evalgate.errors import ConfigError, MissingSecretError, Problem
from evalgate.spec.endpoint import HttpSpec, Pricing, RateLimit, Strict
from evalgate.spec.production import DeterminismSpec, LoadSpec, TrafficSpec
from evalgate.spec.routing import load_router
from evalgate.spec.sim_profile import SimProfile
from evalgate.spec.window import load_tokenizer
from evalgate.spec.yamlio import (
    LineMap,
    digest,
    field_error,
    load_yaml,
    parse_yaml,
    read_text,
    validate,
)

# Metrics a gate can hold thresholds on, with the direction in which "worse" lies.
METRICS: dict[str, str] = {
    "latency_p50_ms": "lower is better",
    "latency_p95_ms": "lower is better",
    "latency_p99_ms": "lower is better",
    "cost_per_request_usd": "lower is better",
    "cost_per_1k_usd": "lower is better",
    "tokens_in_mean": "lower is better",
    "tokens_out_mean": "lower is better",
    "error_rate": "lower is better",
    "hallucination_rate": "lower is better",
    "pass_rate": "higher is better",
    # streaming calls only (`stream: true`): time to first token, inter-token gap, output rate
    "ttft_p50_ms": "lower is better",
    "ttft_p95_ms": "lower is better",
    "ttft_p99_ms": "lower is better",
    "itl_p95_ms": "lower is better",
    "tokens_per_s_mean": "higher is better",
    "tokens_per_s": "higher is better",
    "refusal_rate": "lower is better",
}

CONFIG_FILE_NAMES = ("evalgate.yaml", "evalgate.yml")


class Threshold(Strict):
    """An absolute bound on one metric; `max` for lower-is-better metrics, `min` for the others."""

    max: float | None = Field(None, allow_inf_nan=False)
    min: float | None = Field(None, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one_bound(self) -> Threshold:
        if self.max is None and self.min is None:
            raise ValueError("give at least one of 'max' or 'min'")
        if self.max is not None and self.min is not None and self.min > self.max:
            raise ValueError(f"'min' ({self.min}) is above 'max' ({self.max})")
        return self


MetricName = Literal[
    "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "cost_per_request_usd",
    "cost_per_1k_usd", "tokens_in_mean", "tokens_out_mean", "error_rate", "hallucination_rate",
    "pass_rate", "refusal_rate", "ttft_p50_ms", "ttft_p95_ms", "ttft_p99_ms", "itl_p95_ms",
    "tokens_per_s_mean", "tokens_per_s",
]
assert set(get_args(MetricName)) == set(METRICS)


# Metrics whose absolute threshold is tested statistically, and the bound each one takes.
TESTED_BOUNDS: dict[str, str] = {
    "hallucination_rate": "max",
    "error_rate": "max",
    "pass_rate": "min",
    "refusal_rate": "max",
    "latency_p95_ms": "max",
    "cost_per_request_usd": "max",
    "cost_per_1k_usd": "max",
    "ttft_p95_ms": "max",
    "tokens_per_s": "min",
}


class VsBaseline(Strict):
    """Margins against the baseline: how much worse the candidate may be. `null` turns one off."""

    hallucination_rate: float | None = Field(0.05, ge=0, le=1)   # points of increase
    pass_rate: float | None = Field(0.05, ge=0, le=1)            # points of drop
    error_rate: float | None = Field(0.05, ge=0, le=1)           # points of increase
    cost_ratio: float | None = Field(1.10, ge=1)                 # mean cost per request
    latency_ratio: float | None = Field(1.10, ge=1)              # geometric mean, per canary
    p95_ratio: float | None = Field(1.25, ge=1)                  # Harrell-Davis p95
    score: float | None = Field(None, ge=0, le=1)                # drop in mean rubric score
    # streaming only, off unless set: time to first token (geometric mean; Harrell-Davis p95)
    ttft_ratio: float | None = Field(None, ge=1)
    ttft_p95_ratio: float | None = Field(None, ge=1)
    refusal_rate: float | None = Field(None, ge=0, le=1)         # points of increase


class SequentialSettings(Strict):
    """Sequential gating: the information fractions (shares of canaries) at which to look."""

    looks: list[float] = Field(default_factory=lambda: [1 / 3, 2 / 3, 1.0],
                               min_length=1, max_length=20)

    @field_validator("looks")
    @classmethod
    def _increasing(cls, looks: list[float]) -> list[float]:
        if any(not 0 < t <= 1 for t in looks) or any(b <= a for a, b in itertools.pairwise(looks)):
            raise ValueError("looks must increase strictly within (0, 1], e.g. [0.33, 0.67, 1.0]")
        if looks[-1] != 1.0:
            raise ValueError("the last look must be 1.0 (all canaries)")
        return looks


class GateSettings(Strict):
    alpha: float = Field(0.05, gt=0, lt=0.5)
    on_inconclusive: Literal["fail", "warn", "pass"] = "fail"
    metrics: dict[MetricName, Threshold] = Field(default_factory=dict)
    vs_baseline: VsBaseline = Field(default_factory=VsBaseline)
    # Three zones by default: PASS inside the margin, FAIL beyond it, INCONCLUSIVE between.
    # `true` also fails a candidate significantly worse than the baseline (Holm-adjusted,
    # one-sided) whose bound is inside the margin.
    fail_on_significant_regression: bool = False
    # A call that errored (after its retries) in the quality guardrails (hallucination_rate,
    # pass_rate, score): `failure` counts it as a hallucination / a failed answer / score 0, so a
    # candidate that times out on the hard canaries does not look better; `missing` leaves it
    # out (error_rate and error_rate_vs_baseline still count it). Either way the sentence says.
    errors_count_as: Literal["failure", "missing"] = "failure"
    # `holm`: a bound-based FAIL must survive Holm's step-down over the run's tested guardrails
    # (family-wise false FAIL at most alpha); `none`: each guardrail FAILs at alpha on its own.
    fail_correction: Literal["none", "holm"] = "none"
    # Share of candidate calls a `fallback:` model may answer before the gate is INCONCLUSIVE;
    # null: no such guardrail (a warning still says how many it answered).
    max_fallback_rate: float | None = Field(None, ge=0, le=1)
    bootstrap_resamples: int = Field(9999, ge=199, le=200000)
    seed: int = 0
    # Thresholds per route of a router candidate: {route name: {metric: {max/min}}}.
    routes: dict[str, dict[MetricName, Threshold]] = Field(default_factory=dict)
    # Opt-in sequential gating (evalgate/gate/sequential.py): `true` for looks at 1/3, 2/3, all.
    sequential: bool | SequentialSettings = False
    # Human review (evalgate/gate/judge_calibration.py): while fewer canaries carry `verified:`
    # the gate is INCONCLUSIVE; `verified_only` gates on those alone; a judge whose Cohen's
    # kappa against the labels is below `min_judge_kappa` cannot decide the judged guardrails;
    # `correct_for_judge` corrects the hallucination rate for the judge's measured error.
    min_verified: int | None = Field(None, ge=1)
    verified_only: bool = False
    min_judge_kappa: float | None = Field(None, ge=-1, le=1)
    correct_for_judge: bool = False
    # N candidates: which of them must pass for the run to pass (`primary`: the first; the
    # others are alternatives shown for the choice).
    require: Literal["all", "any", "primary"] = "primary"

    @model_validator(mode="after")
    def _tested_bounds(self) -> GateSettings:
        for metric, threshold in self.metrics.items():
            bound = TESTED_BOUNDS.get(metric)
            other = "min" if bound == "max" else "max"
            if bound and getattr(threshold, other) is not None:
                raise field_error(
                    "metrics", f"{metric} takes '{bound}' only (it is tested statistically "
                    f"against that bound); remove '{other}'")
        return self


class ReportSettings(Strict):
    dir: str = "reports"


class GateConfig(Strict):
    """The gate config: `evalgate.yaml`, or `[tool.evalgate]` in pyproject.toml."""

    # One candidate (`candidate:`) or several (`candidates:`, the first is the change under
    # review); after validation `candidate` is always the first one.
    candidate: str = ""
    candidates: list[str] = Field(default_factory=list)
    baseline: str | None = None
    canaries: list[str] = Field(default_factory=lambda: ["canaries"])
    rubrics: list[str] = Field(default_factory=lambda: ["rubrics"])
    default_rubric: str | None = None
    samples: int = Field(1, ge=1, le=1000)
    concurrency: int = Field(16, ge=1, le=4096)
    canary_failures: Literal["fail", "report"] = "fail"
    gate: GateSettings = Field(default_factory=GateSettings)
    report: ReportSettings = Field(default_factory=ReportSettings)
    # Production-like checks (evalgate/spec/production.py); absent = not run.
    traffic: TrafficSpec | None = None
    load: LoadSpec | None = None
    determinism: DeterminismSpec | None = None
    judge: str | None = None  # model config of the judge (rubric checks `judge`, `grounded`)
    labels: str = "labels"  # reviewers' labels (labels/*.jsonl, written by `evalgate review`)

    @field_validator("canaries", "rubrics", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _candidates(self) -> GateConfig:
        if self.candidates and self.candidate and self.candidate != self.candidates[0]:
            raise field_error("candidate", "give 'candidate' (one) or 'candidates' (several), "
                              "not both")
        if not self.candidates and not self.candidate:
            raise field_error("candidate", "Field required: 'candidate: <model config>' or "
                              "'candidates: [<model config>, ...]'")
        seen: set[str] = set()
        for path in self.candidates:
            norm = str(PurePosixPath(path.replace("\\", "/")))
            if norm in seen:
                raise field_error("candidates", f"{path!r} is listed twice")
            seen.add(norm)
            if self.baseline is not None and norm == str(PurePosixPath(self.baseline)):
                raise field_error("candidates", f"{path!r} is also the baseline")
        if self.candidates:
            self.candidate = self.candidates[0]
        elif self.baseline is not None and self.candidate == self.baseline:
            raise field_error("candidate", f"{self.candidate!r} is also the baseline")
        return self


Provider = Literal["openai", "anthropic", "http", "callable", "sim"]
DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com/v1",
}


class ModelConfig(Strict):
    """One model configuration under test (candidate) or compared against (baseline)."""

    name: str | None = None
    provider: Provider
    base_url: str | None = None
    model: str = ""
    api_key_env: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    system_prompt: str | None = None
    system_prompt_file: str | None = None
    prompt_template: str | None = None
    prompt_template_file: str | None = None
    pricing: Pricing = Field(default_factory=Pricing)
    timeout_s: float = Field(60.0, gt=0)
    deadline_s: float | None = Field(None, gt=0)
    max_retries: int = Field(3, ge=0, le=20)
    max_retry_after_s: float = Field(60.0, ge=0)
    rate_limit: RateLimit | None = None
    # Requests this model's server answers at once (llama.cpp and Ollama: 1 by default); more
    # in flight only queue at the server and measure the queue, so the executor holds them.
    max_concurrency: int | None = Field(None, ge=1, le=4096)
    headers: dict[str, str] = Field(default_factory=dict)
    http: HttpSpec | None = None
    callable: str | None = None
    sim: SimProfile | None = None
    fallback: str | None = None  # another model config (path from this file) for failed calls
    # Stream the answer (SSE / NDJSON) to measure time to first token and tokens/s; a
    # stream with no chunk for stream_idle_timeout_s is `stalled_stream`.
    stream: bool = False
    stream_idle_timeout_s: float = Field(30.0, gt=0)
    # Take inline reasoning (`<think>...</think>` before the answer) off the text before
    # grading; unset means on (false grades the text as written).
    strip_reasoning: bool | None = None
    # The context window: a canary whose estimated prompt plus max_output_tokens exceeds it
    # is not sent; it is an error (`on_overflow: error`) or goes to the `long_context` model.
    # `tokenizer`: a local tokenizer.json (path from this file) for exact prompt counts.
    context_window: int | None = Field(None, ge=1)
    max_output_tokens: int | None = Field(None, ge=1)
    tokenizer: str | None = None
    on_overflow: Literal["error", "long_context"] | None = None
    long_context: str | None = None

    @property
    def overflow_mode(self) -> str:
        return self.on_overflow or ("long_context" if self.long_context else "error")

    @model_validator(mode="after")
    def _provider_needs(self) -> ModelConfig:
        if self.system_prompt and self.system_prompt_file:
            raise field_error("system_prompt_file",
                              "give 'system_prompt' or 'system_prompt_file', not both")
        if self.prompt_template and self.prompt_template_file:
            raise field_error("prompt_template_file",
                              "give 'prompt_template' or 'prompt_template_file', not both")
        if self.provider in ("openai", "anthropic") and not self.model:
            raise field_error("model", f"provider {self.provider!r} needs 'model'", "provider")
        if self.provider == "http" and self.http is None:
            raise field_error("http", "provider 'http' needs an 'http' section (url, body, "
                              "text_path)", "provider")
        if self.provider == "callable" and not self.callable:
            raise field_error("callable", "provider 'callable' needs 'callable: "
                              "package.module:function'", "provider")
        if self.callable and ":" not in self.callable:
            raise field_error("callable", "'callable' must look like 'package.module:function'")
        if self.overflow_mode == "long_context" and not self.long_context:
            raise field_error("on_overflow", "'on_overflow: long_context' needs 'long_context: "
                              "<model config>'")
        if (self.long_context or self.max_output_tokens) and self.context_window is None:
            raise field_error("context_window", "'long_context' and 'max_output_tokens' go with "
                              "'context_window' (the window they are measured against)",
                              "long_context" if self.long_context else "max_output_tokens")
        if self.sim is not None and self.provider != "sim":
            raise field_error("sim", "'sim' (a simulator profile) only goes with provider 'sim'")
        if "stream" in self.params:
            raise field_error("params", "'params.stream' is not a free-form parameter: set "
                              "'stream: true' at the top level of the model config (evalgate "
                              "then parses the stream and measures time to first token)")
        if self.stream and self.provider == "callable":
            raise field_error("stream", "provider 'callable' cannot stream: it returns the whole "
                              "answer, so there is no time to first token to measure; remove "
                              "'stream'")
        return self

    @property
    def total_deadline_s(self) -> float:
        """Deadline for one call including its retries."""
        if self.deadline_s is not None:
            return self.deadline_s
        return self.timeout_s * (self.max_retries + 1) + min(self.max_retry_after_s, 60.0)


# Settings added after configs were first fingerprinted: left out of the fingerprint while
# unset, so a config that does not use them keeps the fingerprint (and cache) it had.
LATER_SETTINGS = ("max_concurrency", "strip_reasoning", "context_window", "max_output_tokens",
                  "tokenizer", "on_overflow", "long_context")
LATER_PRICING = ("cached_input_per_mtok", "cache_write_per_mtok", "from_header")


def drop_unset(payload: dict[str, Any]) -> None:
    for key in LATER_SETTINGS:
        if payload.get(key) is None:
            payload.pop(key, None)
    pricing = payload.get("pricing")
    for key in LATER_PRICING if isinstance(pricing, dict) else ():
        if pricing.get(key) is None:
            pricing.pop(key, None)


@dataclass(frozen=True)
class LoadedModel:
    """A validated model config with its files resolved (prompts read, name settled)."""

    config: ModelConfig
    path: Path
    name: str
    system_prompt: str | None
    prompt_template: str | None
    # A router config (evalgate/spec/routing.py): `config` and the prompts are its default route's.
    router: Any = field(default=None, compare=False)
    fallback: LoadedModel | None = None
    long_context: LoadedModel | None = None  # where canaries too long for the window go
    tokenizer: Any = field(default=None, compare=False)  # a tokenizers.Tokenizer, or None

    def fingerprint(self) -> str:
        """Changes whenever anything that can change an answer or its price changes."""
        if self.router is not None:
            return str(self.router.fingerprint())
        payload = self.config.model_dump(
            mode="json", exclude={"name", "system_prompt_file", "prompt_template_file",
                                  "fallback"}
        )
        payload["system_prompt"] = self.system_prompt
        payload["prompt_template"] = self.prompt_template
        if not self.config.stream:  # only then: configs that do not stream keep their fingerprint
            del payload["stream"], payload["stream_idle_timeout_s"]
            if isinstance(payload.get("http"), dict) and payload["http"].get("stream") is None:
                del payload["http"]["stream"]
        drop_unset(payload)
        if self.fallback is not None:  # only then: configs without one keep their fingerprint
            payload["fallback"] = self.fallback.fingerprint()
        if self.long_context is not None:
            payload["long_context"] = self.long_context.fingerprint()
        return digest(payload)

    def describe(self) -> dict[str, Any]:
        """The config for reports: every setting, prompts resolved, no secret (only the name of
        the key's environment variable is in the config to begin with)."""
        if self.router is not None:
            return dict(self.router.describe(self.name))
        payload = self.config.model_dump(mode="json", exclude_none=True,
                                          exclude={"system_prompt_file", "prompt_template_file"})
        payload["name"] = self.name
        if self.system_prompt is not None:
            payload["system_prompt"] = self.system_prompt
        if self.prompt_template is not None:
            payload["prompt_template"] = self.prompt_template
        return payload

    def api_key(self) -> str | None:
        """The API key from the environment; never stored, logged or written anywhere."""
        env = self.config.api_key_env
        if not env:
            return None
        if not env.isidentifier() or not env.isascii():
            # Likely the key itself pasted into `api_key_env`: never echo it into logs.
            raise MissingSecretError(
                Problem(str(self.path), "api_key_env must be the NAME of an environment variable "
                        "(e.g. OPENAI_API_KEY), not the key itself", None, "api_key_env")
            )
        value = os.environ.get(env)
        if not value:
            raise MissingSecretError(
                Problem(str(self.path), f"environment variable {env} is not set (the API key)",
                        None, "api_key_env")
            )
        return value


def display_path(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


Reader = Callable[[Path, str], str]


def load_model_config(path: Path, root: Path, reader: Reader = read_text,
                      shown: str | None = None, *, is_fallback: bool = False) -> LoadedModel:
    """Load a model config and the prompt files it names. `reader` reads a file's text: the
    file system by default, or a git revision for a `git:<ref>:<path>` baseline."""
    shown = shown or display_path(path, root)
    data, lines = parse_yaml(reader(path, shown), shown)
    if isinstance(data, dict) and "router" in data:
        name, router = load_router(data, lines, path, root, reader, shown, load_model_config)
        default = router.default
        return LoadedModel(default.config, path, name or path.stem, default.system_prompt,
                           default.prompt_template, router=router)
    config: ModelConfig = validate(ModelConfig, data, shown, lines)

    def side_file(name: str | None, field: str) -> str | None:
        if name is None:
            return None
        return reader(path.parent / name, f"{shown} ({field}: {name})")

    system_prompt = config.system_prompt or side_file(config.system_prompt_file,
                                                      "system_prompt_file")
    template = config.prompt_template or side_file(config.prompt_template_file,
                                                   "prompt_template_file")
    if template is not None:
        from evalgate.spec.templating import check_template

        if config.prompt_template:
            check_template(template, shown, lines.text_line(("prompt_template",)),
                           "prompt_template")
        else:  # an error in a template file is located in that file, not in the model config
            check_template(template, f"{shown} (prompt_template_file: "
                           f"{config.prompt_template_file})", 1, "prompt_template_file")
    fallback = None
    if config.fallback is not None and is_fallback:
        raise ConfigError(Problem(shown, "a fallback model config cannot name a fallback of its "
                                  "own (chains are not supported)",
                                  lines.line_of(("fallback",)), "fallback"))
    if config.fallback is not None:
        fallback = load_fallback(config.fallback, path, root, reader, shown, lines)
    long_model = None if config.long_context is None else load_fallback(
        config.long_context, path, root, reader, shown, lines, "long_context")
    tokenizer = None if config.tokenizer is None else load_tokenizer(
        path.parent / config.tokenizer, shown, lines.line_of(("tokenizer",)))
    return LoadedModel(config, path, config.name or path.stem, system_prompt, template,
                       fallback=fallback, long_context=long_model, tokenizer=tokenizer)


def load_fallback(name: str, path: Path, root: Path, reader: Reader, shown: str,
                  lines: LineMap, key: str = "fallback") -> LoadedModel:
    """The `fallback:` (or `long_context:`) model config, validated now (its own errors name
    its own file)."""
    line = lines.line_of((key,))
    target = path.parent / name
    try:
        same = target.resolve() == path.resolve()
    except (OSError, ValueError, RuntimeError) as exc:
        raise ConfigError(Problem(shown, f"bad path {name!r}: {exc}", line, key)) from None
    if same:
        raise ConfigError(Problem(shown, f"a model cannot be its own {key}", line, key))
    own = display_path(target, root) if reader is read_text else f"{shown} ({key}: {name})"
    try:
        reader(target, own)
    except ConfigError as exc:  # a missing file is this config's mistake: point at the key
        raise ConfigError(Problem(shown, f"{name!r}: {exc.problems[0].message}", line,
                                  key)) from None
    return load_model_config(target, root, reader, own, is_fallback=True)


@dataclass(frozen=True)
class LoadedGate:
    config: GateConfig
    path: Path
    root: Path

    def resolve(self, relative: str) -> Path:
        try:
            return (self.root / relative).resolve()
        except (OSError, ValueError, RuntimeError) as exc:  # NUL byte, symlink loop
            raise ConfigError(Problem(self.path.name, f"bad path {relative!r}: {exc}")) from None

    def fingerprint(self) -> str:
        return digest(self.config.model_dump(mode="json"))


def find_gate_config(rootdir: Path, explicit: str | None) -> Path:
    if explicit:
        path = Path(explicit)
        if not path.exists():
            raise ConfigError(Problem(explicit, "gate config file not found"))
        return path
    for name in CONFIG_FILE_NAMES:
        if (rootdir / name).exists():
            return rootdir / name
    pyproject = rootdir / "pyproject.toml"
    tool = (_read_toml(pyproject) or {}).get("tool", {}) if pyproject.exists() else {}
    if isinstance(tool, dict) and "evalgate" in tool:
        return pyproject
    raise ConfigError(
        Problem(str(rootdir), "no gate config: create evalgate.yaml, add [tool.evalgate] to "
                "pyproject.toml, or pass --evalgate-config FILE")
    )


def _read_toml(path: Path) -> dict[str, Any] | None:
    try:
        return tomllib.loads(read_text(path, str(path)))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(Problem(str(path), f"invalid TOML: {exc}")) from None


def load_gate_config(path: Path) -> LoadedGate:
    root = path.parent.resolve()
    shown = path.name
    if path.suffix == ".toml":
        tool = (_read_toml(path) or {}).get("tool", {})
        data = tool.get("evalgate") if isinstance(tool, dict) else None
        # tomllib keeps no positions: point every problem at the table's header line.
        text = read_text(path, shown)
        header = next((i for i, raw in enumerate(text.splitlines(), 1)
                       if re.match(r"\s*\[\s*tool\.evalgate\s*\]\s*(#.*)?$", raw)), None)
        lines = LineMap({(): header} if header else {})
        shown = f"{path.name} [tool.evalgate]"
    else:
        data, lines = load_yaml(path, shown)
    return LoadedGate(validate(GateConfig, data, shown, lines), path, root)
