"""The `sim:` block of a model config: how the local simulator behaves as that model.

The simulator (evalgate/sim/) serves these profiles; they live here, with the other file
formats, so that loading a model config never imports the simulator."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SimJudge(BaseModel):
    """Judge behaviour of a simulated model (`sim: {judge: {...}}` in a model config)."""

    model_config = ConfigDict(extra="forbid")
    gullible: bool = False
    malformed_rate: float = Field(0.0, ge=0, le=1)
    flip_rate: float = Field(0.0, ge=0, le=1)
    # Errors against the truth (the script's verdict), drawn after flip_rate: a real FAIL
    # answered PASS (a missed hallucination), a real PASS answered FAIL (a false alarm).
    miss_rate: float = Field(0.0, ge=0, le=1)
    false_alarm_rate: float = Field(0.0, ge=0, le=1)


class SimProfile(BaseModel):
    """Behaviour of one simulated model; selected by the request's ``model`` field."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: float = Field(20.0, ge=0)
    latency_sigma: float = Field(0.0, ge=0)
    spike_prob: float = Field(0.0, ge=0, le=1)
    spike_ms: float = Field(0.0, ge=0)
    ms_per_output_token: float = Field(0.0, ge=0)
    error_429_rate: float = Field(0.0, ge=0, le=1)
    retry_after_s: float | None = Field(1.0, ge=0)
    error_500_rate: float = Field(0.0, ge=0, le=1)
    timeout_rate: float = Field(0.0, ge=0, le=1)
    stall_s: float = Field(30.0, ge=0)
    malformed_rate: float = Field(0.0, ge=0, le=1)
    hallucination_rate: float = Field(0.0, ge=0, le=1)
    # a tool canary's call is wrong this often: a tool not offered, or an invented argument
    tool_error_rate: float = Field(0.0, ge=0, le=1)
    context_window: int = Field(128000, ge=1)
    chars_per_token: float = Field(4.0, gt=0)
    report_usage: bool = True
    seed: int = 0
    # Load and determinism knobs (see _occupy and _vary_answer): None = off.
    capacity: int | None = Field(None, ge=1)  # requests served at once; more wait in a queue
    determinism: float | None = Field(None, ge=0, le=1)  # P(a canary's answer is the same
    # across samples), drawn once per canary; otherwise every sample words it differently
    judge: SimJudge | None = None  # act as a judge model (evalgate/sim/judge.py)
    # Provider faults beyond the rates above (all off by default).
    error_500_status: int = Field(500, ge=500, le=599)  # the status of error_500_rate's errors
    retry_after_http_date: bool = False  # Retry-After as an HTTP date (whole seconds)
    max_in_flight: int | None = Field(None, ge=1)  # 429 above this many accepted in flight
    limit_requests: int | None = Field(None, ge=1)  # requests per limit window, else 429
    limit_tokens: int | None = Field(None, ge=1)  # prompt tokens per limit window, else 429
    limit_window_s: float = Field(60.0, gt=0)  # limits and x-ratelimit-* headers use it
    reset_rate: float = Field(0.0, ge=0, le=1)  # close the socket (TCP RST), no response
    stall_body_rate: float = Field(0.0, ge=0, le=1)  # headers and half the body, then stall_s
    invalid_json_rate: float = Field(0.0, ge=0, le=1)  # a 200 whose body is not JSON
    empty_choices_rate: float = Field(0.0, ge=0, le=1)  # a 200 with no choices / content
    fault_cases: list[str] | None = None  # canary keys the faults hit (None: every request)
    # Streaming (`stream: true` requests): time to first token (lognormal median and sigma;
    # None: the latency draw above is the TTFT), the output rate after it (None:
    # ms_per_output_token), and faults in the middle of a stream: the stream ends without its
    # terminator (cut), an error event of `stream_error_type`, or no chunk for stall_s.
    # A request that does not stream takes the same time as the whole stream would.
    ttft_ms: float | None = Field(None, ge=0)
    ttft_sigma: float = Field(0.0, ge=0)
    tokens_per_s: float | None = Field(None, gt=0)
    stream_cut_rate: float = Field(0.0, ge=0, le=1)
    stream_error_rate: float = Field(0.0, ge=0, le=1)
    stream_error_type: str = "overloaded_error"
    stream_stall_rate: float = Field(0.0, ge=0, le=1)
    ignore_stream: bool = False  # answer streaming requests with plain JSON, as some proxies do
