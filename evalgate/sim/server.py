"""A local LLM simulator served over real HTTP/1.1 on 127.0.0.1.

It is the project's test double for everything that crosses a wire (OpenAI chat completions,
Anthropic messages and a generic in-house ``/generate`` endpoint) and powers the no-API-key
demo. Latency, rate limits, server errors, stalls, malformed bodies and hallucinations are
drawn from seeded ``random.Random`` streams so that every run is reproducible.

Design notes (why it looks like this):

* asyncio streams + ``h11`` only: h11 already ships with httpx, so the simulator adds no
  dependency, and a single event loop keeps thousands of keep-alive connections cheap.
* Two random streams per request. The *answer* stream is keyed on (seed, model, prompt,
  sample) so a retry gets the same answer; the *fault* stream also includes the attempt number
  so a retry draws fresh faults - which is exactly what a retry loop needs to be tested.
* Stats are guarded by a lock because tests read them from another thread.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import email.utils
import hashlib
import itertools
import json
import math
import random
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import h11

from evalgate.sim.judge import judge_reply
from evalgate.spec.sim_profile import SimProfile

__all__ = ["SimCase", "SimProfile", "SimRequest", "SimServer", "SimStats"]

_Headers = list[tuple[bytes, bytes]]
_MAX_BODY = 64 * 1024 * 1024
_READ_CHUNK = 65536
_NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?")
_DIGIT = re.compile(r"\d")
_GENEVA = "This was confirmed by the 2019 Geneva accord."
_UNKNOWN = "I don't know."
_UNKNOWN_WRONG = "The answer is 42."

OUTCOMES: tuple[str, ...] = (
    "ok",
    "429",
    "500",
    "timeout",
    "malformed",
    "context_length",
    "bad_request",
    "model_not_found",
    "not_found",
    "reset",
    "stall_body",
    "invalid_json",
    "empty_choices",
)


@dataclass(frozen=True)
class SimCase:
    """A canary the simulator knows the answer to (its facts, forbidden claims, reference)."""

    key: str
    prompt: str
    facts: tuple[str, ...] = ()
    forbidden: tuple[str, ...] = ()
    reference: str | None = None

    def __post_init__(self) -> None:
        # Accept lists (e.g. straight from YAML) but keep the dataclass immutable and hashable.
        object.__setattr__(self, "facts", tuple(self.facts))
        object.__setattr__(self, "forbidden", tuple(self.forbidden))


class SimRequest(NamedTuple):
    """One request as the server saw it: when (monotonic s), how busy it was, what it cost."""

    t: float
    model: str | None
    outcome: str
    in_flight: int
    prompt_tokens: int
    completion_tokens: int


class SimStats:
    """Request counters; every method is safe to call from any thread."""

    LOG_SIZE = 100_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = 0
        self._connections = 0
        self._routes: dict[str, int] = {}
        self._models: dict[str, int] = {}
        self._outcomes: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self._cases: dict[str, int] = {}
        self.in_flight = 0  # changed only on the server's loop
        self._max_in_flight = 0
        self._log: collections.deque[SimRequest] = collections.deque(maxlen=self.LOG_SIZE)

    def record(self, route: str, model: str | None, outcome: str, prompt_tokens: int = 0,
               completion_tokens: int = 0, case: str | None = None) -> None:
        """Count one request; called once per request when its outcome is decided. `case`
        ("<canary key>#<sample>") counts answered requests per canary (resume/cache tests)."""
        with self._lock:
            self._total += 1
            if case is not None:
                self._cases[case] = self._cases.get(case, 0) + 1
            self._routes[route] = self._routes.get(route, 0) + 1
            if model is not None:
                self._models[model] = self._models.get(model, 0) + 1
            self._outcomes[outcome] = self._outcomes.get(outcome, 0) + 1
            self._log.append(SimRequest(time.monotonic(), model, outcome, self.in_flight,
                                        prompt_tokens, completion_tokens))

    def enter(self) -> int:
        """A request starts being served; returns how many are in flight with it."""
        self.in_flight += 1
        if self.in_flight > self._max_in_flight:
            with self._lock:
                self._max_in_flight = max(self._max_in_flight, self.in_flight)
        return self.in_flight

    def leave(self) -> None:
        self.in_flight -= 1

    def record_connection(self) -> None:
        """Count one accepted TCP connection (lets tests prove keep-alive reuse)."""
        with self._lock:
            self._connections += 1

    def reset(self) -> None:
        """Zero every counter (e.g. between benchmark phases)."""
        with self._lock:
            self._total = 0
            self._connections = 0
            self._routes = {}
            self._models = {}
            self._outcomes = dict.fromkeys(OUTCOMES, 0)
            self._cases = {}
            self._max_in_flight = self.in_flight
            self._log.clear()

    @property
    def total(self) -> int:
        """Requests counted so far (``/health`` and ``/stats`` are not counted)."""
        with self._lock:
            return self._total

    @property
    def connections(self) -> int:
        """TCP connections accepted so far."""
        with self._lock:
            return self._connections

    @property
    def routes(self) -> dict[str, int]:
        """Copy of the per-path counts."""
        with self._lock:
            return dict(self._routes)

    @property
    def models(self) -> dict[str, int]:
        """Copy of the per-model counts."""
        with self._lock:
            return dict(self._models)

    @property
    def outcomes(self) -> dict[str, int]:
        """Copy of the per-outcome counts (one outcome per request)."""
        with self._lock:
            return dict(self._outcomes)

    @property
    def max_in_flight(self) -> int:
        """Most requests the server was serving at once (since start or reset)."""
        with self._lock:
            return self._max_in_flight

    @property
    def requests(self) -> list[SimRequest]:
        """The last LOG_SIZE requests in order: arrival time, load, outcome, tokens."""
        with self._lock:
            return list(self._log)

    def snapshot(self) -> dict[str, Any]:
        """A consistent JSON-able copy of all counters."""
        with self._lock:
            return {
                "total": self._total,
                "connections": self._connections,
                "routes": dict(self._routes),
                "models": dict(self._models),
                "outcomes": dict(self._outcomes),
                "cases": dict(self._cases),
                "max_in_flight": self._max_in_flight,
            }


# --------------------------------------------------------------------------------------------
# helpers


class _BadRequest(Exception):
    """The request body is unusable; becomes a 400 in the route's error shape."""


class _Sever(Exception):
    """A fault below HTTP: the connection is reset, or the body stalls halfway."""

    def __init__(self, kind: str, headers: _Headers | None = None, payload: bytes = b"",
                 stall_s: float = 0.0) -> None:
        super().__init__(kind)
        self.kind = kind
        self.headers = headers or []
        self.payload = payload
        self.stall_s = stall_s

    async def apply(self, writer: asyncio.StreamWriter) -> None:
        if self.kind == "reset":  # linger 0: close() sends RST, as a crashed upstream would
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return
        raw = _response(200, self.headers, self.payload, False, True)
        cut = len(raw) - len(self.payload) // 2
        writer.write(raw[:cut])
        await writer.drain()
        await asyncio.sleep(self.stall_s)
        writer.write(raw[cut:])
        await writer.drain()


@dataclass(slots=True)
class _Call:
    """What a route extracted from a request body, in route-independent form."""

    model: str | None
    prompt_text: str
    user_text: str
    max_tokens: int | None
    sample: str | None


@dataclass(slots=True)
class _Result:
    """The simulated outcome of a model call, before it is rendered in a route's shape."""

    answer: str
    prompt_tokens: int
    completion_tokens: int
    truncated: bool
    n: int


def _tokens(text: str, chars_per_token: float) -> int:
    """Rough token estimate used for usage, context length and max_tokens."""
    return max(1, math.ceil(len(text) / chars_per_token))


def _rng(key: str) -> random.Random:
    """A Random seeded from sha256 so seeds are stable across Python versions and runs."""
    return random.Random(int.from_bytes(hashlib.sha256(key.encode()).digest()[:16], "big"))


def _content_text(content: Any) -> str:
    """Text of a message content: a string or a list of ``{"type": "text"}`` blocks."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict):
                text = block.get("text")
                if isinstance(text, str):
                    parts.append(text)
            else:
                raise _BadRequest("content blocks must be objects")
        return "\n".join(parts)
    raise _BadRequest("message content must be a string or a list of content blocks")


def _messages(body: dict[str, Any]) -> tuple[list[str], str]:
    """All message texts plus the last user message text (used to find the canary)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _BadRequest("'messages' must be a non-empty array")
    texts: list[str] = []
    last_user = ""
    for msg in messages:
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
            raise _BadRequest("each message needs a 'role' and 'content'")
        text = _content_text(msg.get("content"))
        texts.append(text)
        if msg["role"] == "user":
            last_user = text
    return texts, last_user


def _model_field(body: dict[str, Any]) -> str | None:
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise _BadRequest("'model' must be a string")
    return model


def _max_tokens(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _BadRequest("'max_tokens' must be a positive integer")
    return value


def _sample_from_body(body: dict[str, Any]) -> str | None:
    seed = body.get("seed")
    return None if seed is None else str(seed)


def _sentence(parts: Iterable[str]) -> str:
    """``Answer: a; b.`` without doubling a full stop the last fact already has."""
    text = "; ".join(parts)
    return f"Answer: {text}" if text.endswith((".", "!", "?")) else f"Answer: {text}."


def _other_number(s: str, rng: random.Random) -> str:
    """A different number whose text does not contain the original (30 -> 45, never 130)."""
    if "," in s:  # thousands separators: 1,000 -> 1,350
        whole, _, frac = s.partition(".")
        cand = f"{int(_other_number(whole.replace(',', ''), rng)):,}"
        return f"{cand}.{frac}" if frac else cand
    if "." in s:
        decimals = len(s.split(".", 1)[1])
        value = float(s)
        step = 10.0**-decimals
        for _ in range(50):
            delta = max(value * rng.uniform(0.2, 0.9), step * rng.randint(1, 9))
            cand = f"{value + delta:.{decimals}f}"
            if s not in cand:
                return cand
        return f"{value + 7.5:.{decimals}f}"
    n = int(s)
    for _ in range(50):
        cand = str(n + rng.randint(1, max(9, n // 2)))
        if s not in cand:
            return cand
    return str(n * 2 + 11)


def _alter_numbers(text: str, rng: random.Random) -> str:
    return _NUMBER.sub(lambda m: _other_number(m.group(0), rng), text)


def _wrong_facts(facts: tuple[str, ...], rng: random.Random) -> str:
    """The facts with every number changed, redrawn until no numeric fact survives verbatim."""
    numeric = [f for f in facts if _DIGIT.search(f)]
    answer = ""
    for _ in range(20):
        answer = _sentence(_alter_numbers(f, rng) for f in facts)
        if not any(f in answer for f in numeric):
            break
    return answer


def _correct_answer(case: SimCase) -> str:
    if case.reference is not None:
        return case.reference
    if case.facts:
        return _sentence(case.facts)
    return "I can help with that."


def _hallucinated_answer(case: SimCase, rng: random.Random) -> str:
    if case.forbidden:
        return _sentence([rng.choice(case.forbidden)])
    if case.facts and any(_DIGIT.search(f) for f in case.facts):
        return _wrong_facts(case.facts, rng)
    if not case.facts and case.reference is not None and _DIGIT.search(case.reference):
        return _alter_numbers(case.reference, rng)
    return f"{_correct_answer(case)} {_GENEVA}"


def _has_faults(p: SimProfile) -> bool:
    """Whether any fault or latency draw can matter for this profile."""
    return (
        p.error_429_rate > 0
        or p.error_500_rate > 0
        or p.timeout_rate > 0
        or p.latency_sigma > 0
        or p.spike_prob > 0
        or p.malformed_rate > 0
        or p.reset_rate > 0
        or p.stall_body_rate > 0
        or p.invalid_json_rate > 0
        or p.empty_choices_rate > 0
    )


def _http_date_after(seconds: float) -> bytes:
    """Retry-After as an HTTP date, rounded up to the next whole second."""
    return email.utils.formatdate(math.ceil(time.time() + seconds), usegmt=True).encode()


def _rfc3339_after(seconds: float) -> bytes:
    """A reset time as Anthropic sends it: an RFC 3339 UTC timestamp (here with milliseconds,
    so sub-second simulated windows stay exact)."""
    when = datetime.now(UTC) + timedelta(seconds=seconds)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z").encode()


def _go_duration(seconds: float) -> bytes:
    """A reset time in OpenAI's x-ratelimit-reset-* format: "20ms", "1.5s", "6m0s"."""
    ms = max(1, math.ceil(seconds * 1000))
    if ms < 1000:
        return b"%dms" % ms
    minutes, rest = divmod(ms / 1000, 60)
    text = f"{int(minutes)}m{rest:g}s" if minutes else f"{rest:g}s"
    return text.encode()


def _empty_answer(out: dict[str, Any]) -> dict[str, Any]:
    """A success body with nothing in it: no choices / content blocks / output text."""
    for key in ("choices", "content"):
        if key in out:
            out[key] = []
    if "output" in out:
        out["output"] = {}
    return out


def _retry_after(value: float) -> bytes:
    return str(int(value) if float(value).is_integer() else value).encode()


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


# --------------------------------------------------------------------------------------------
# route shapes


class _Route:
    """Parses one API's request body and renders its success and error bodies."""

    name = ""

    def parse(self, body: dict[str, Any]) -> _Call:
        raise NotImplementedError

    def success(self, call: _Call, res: _Result, profile: SimProfile) -> dict[str, Any]:
        raise NotImplementedError

    def error(self, kind: str, message: str) -> dict[str, Any]:
        raise NotImplementedError

    def context_message(self, prompt_tokens: int, window: int) -> str:
        raise NotImplementedError


_OPENAI_ERR = {
    "rate_limit": ("rate_limit_error", "rate_limit_exceeded"),
    "server": ("server_error", None),
    "context": ("invalid_request_error", "context_length_exceeded"),
    "bad_request": ("invalid_request_error", None),
    "model_not_found": ("invalid_request_error", "model_not_found"),
}
_ANTHROPIC_ERR = {
    "rate_limit": "rate_limit_error",
    "server": "api_error",
    "context": "invalid_request_error",
    "bad_request": "invalid_request_error",
    "model_not_found": "not_found_error",
}


class _OpenAIRoute(_Route):
    name = "/v1/chat/completions"

    def parse(self, body: dict[str, Any]) -> _Call:
        if body.get("stream"):
            raise _BadRequest("stream=true is not supported by the evalgate simulator")
        texts, last_user = _messages(body)
        limit = body.get("max_completion_tokens")
        if limit is None:
            limit = body.get("max_tokens")
        return _Call(
            _model_field(body),
            "\n".join(texts),
            last_user,
            _max_tokens(limit),
            _sample_from_body(body),
        )

    def success(self, call: _Call, res: _Result, profile: SimProfile) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": f"chatcmpl-sim-{res.n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": call.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": res.answer},
                    "finish_reason": "length" if res.truncated else "stop",
                }
            ],
        }
        if profile.report_usage:
            out["usage"] = {
                "prompt_tokens": res.prompt_tokens,
                "completion_tokens": res.completion_tokens,
                "total_tokens": res.prompt_tokens + res.completion_tokens,
            }
        return out

    def error(self, kind: str, message: str) -> dict[str, Any]:
        etype, code = _OPENAI_ERR[kind]
        err: dict[str, Any] = {"message": message, "type": etype}
        if code is not None:
            err["code"] = code
        return {"error": err}

    def context_message(self, prompt_tokens: int, window: int) -> str:
        return (
            f"This model's maximum context length is {window} tokens. However, your messages "
            f"resulted in {prompt_tokens} tokens. Please reduce the length of the messages."
        )


class _AnthropicRoute(_Route):
    name = "/v1/messages"

    def parse(self, body: dict[str, Any]) -> _Call:
        texts, last_user = _messages(body)
        system = body.get("system")
        if system is not None:
            texts.insert(0, _content_text(system))
        return _Call(
            _model_field(body),
            "\n".join(texts),
            last_user,
            _max_tokens(body.get("max_tokens")),
            _sample_from_body(body),
        )

    def success(self, call: _Call, res: _Result, profile: SimProfile) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": f"msg_sim_{res.n}",
            "type": "message",
            "role": "assistant",
            "model": call.model,
            "content": [{"type": "text", "text": res.answer}],
            "stop_reason": "max_tokens" if res.truncated else "end_turn",
            "stop_sequence": None,
        }
        if profile.report_usage:
            out["usage"] = {
                "input_tokens": res.prompt_tokens,
                "output_tokens": res.completion_tokens,
            }
        return out

    def error(self, kind: str, message: str) -> dict[str, Any]:
        return {"type": "error", "error": {"type": _ANTHROPIC_ERR[kind], "message": message}}

    def context_message(self, prompt_tokens: int, window: int) -> str:
        return f"prompt is too long: {prompt_tokens} tokens > {window} maximum"


class _GenerateRoute(_Route):
    name = "/generate"

    def parse(self, body: dict[str, Any]) -> _Call:
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            raise _BadRequest("'prompt' must be a string")
        return _Call(
            _model_field(body),
            prompt,
            prompt,
            _max_tokens(body.get("max_tokens")),
            _sample_from_body(body),
        )

    def success(self, call: _Call, res: _Result, profile: SimProfile) -> dict[str, Any]:
        out: dict[str, Any] = {"output": {"text": res.answer}}
        if profile.report_usage:
            out["usage"] = {"in": res.prompt_tokens, "out": res.completion_tokens}
        return out

    def error(self, kind: str, message: str) -> dict[str, Any]:
        return {"error": message}

    def context_message(self, prompt_tokens: int, window: int) -> str:
        return f"context length exceeded: {prompt_tokens} tokens > {window} maximum"


_ROUTES: dict[str, _Route] = {
    r.name: r for r in (_OpenAIRoute(), _AnthropicRoute(), _GenerateRoute())
}
_STATUS = {
    "rate_limit": 429,
    "server": 500,
    "context": 400,
    "bad_request": 400,
    "model_not_found": 404,
}
_REASONS = {
    100: b"Continue",
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Payload Too Large",
    414: b"URI Too Long",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
    501: b"Not Implemented",
    505: b"HTTP Version Not Supported",
}


def _response(
    status: int, headers: _Headers, payload: bytes, keep_alive: bool, with_body: bool
) -> bytes:
    """Serialise one Content-Length framed JSON response (HEAD gets no body)."""
    lines = [
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\nserver: evalgate-sim\r\n"
        b"content-length: %d\r\n" % (status, _REASONS.get(status, b""), len(payload))
    ]
    lines.extend(b"%s: %s\r\n" % kv for kv in headers)
    if not keep_alive:
        lines.append(b"connection: close\r\n")
    lines.append(b"\r\n")
    if with_body:
        lines.append(payload)
    return b"".join(lines)


def _keep_alive(request: h11.Request) -> bool:
    """HTTP/1.1 keeps the connection unless the client says close; 1.0 always closes."""
    if request.http_version != b"1.1":
        return False
    return not any(
        name == b"connection" and b"close" in value.lower() for name, value in request.headers
    )


# --------------------------------------------------------------------------------------------
# server


class SimServer:
    """The simulator: start() it in a background thread, or await serve_forever() in a CLI."""

    def __init__(
        self,
        profiles: dict[str, SimProfile] | None = None,
        cases: Iterable[SimCase] = (),
        default_profile: SimProfile | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.host = host
        self._port_cfg = port
        self.port = port
        self.default_profile = default_profile
        self.stats = SimStats()
        self._lock = threading.Lock()
        self._profiles: dict[str, SimProfile] = {}
        for name, prof in (profiles or {}).items():
            self.add_profile(name, prof)
        self._by_key: dict[str, SimCase] = {}
        self._by_prompt: dict[str, SimCase] = {}
        self._by_length: list[SimCase] = []
        self.add_cases(cases)
        self._attempts: dict[tuple[str, str, str], int] = {}
        self._ids = itertools.count(1)
        self._windows: dict[str, list[float]] = {}  # model -> [window index, requests, tokens]
        self._t0 = time.monotonic()
        self._rejecting = 0  # max_in_flight rejections being answered
        self._conn_tasks: set[asyncio.Task[Any]] = set()
        self._slots: dict[tuple[str, int], asyncio.Semaphore] = {}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main_task: asyncio.Task[None] | None = None
        self._lifecycle = threading.Lock()

    # -- configuration -------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``; the port is real once the server is listening."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def add_profile(self, name: str, profile: SimProfile | dict[str, Any]) -> None:
        """Register (or replace) the profile served for ``model == name``."""
        prof = profile if isinstance(profile, SimProfile) else SimProfile.model_validate(profile)
        with self._lock:
            self._profiles = {**self._profiles, name: prof}

    def add_cases(self, cases: Iterable[SimCase]) -> None:
        """Teach the simulator canaries; indexes are rebuilt copy-on-write for thread safety."""
        new = list(cases)
        if not new:
            return
        with self._lock:
            by_key = dict(self._by_key)
            by_prompt = dict(self._by_prompt)
            for case in new:
                by_key[case.key] = case
                by_prompt[case.prompt] = case
            ordered = sorted(
                (c for c in by_prompt.values() if c.prompt), key=lambda c: -len(c.prompt)
            )
            self._by_key, self._by_prompt, self._by_length = by_key, by_prompt, ordered

    def reset_attempts(self) -> None:
        """Forget retry history so fault draws restart from attempt 0."""
        self._attempts = {}

    def _profile(self, model: str | None) -> SimProfile | None:
        prof = self._profiles.get(model if model is not None else "default")
        return prof if prof is not None else self.default_profile

    def _find_case(self, key: str | None, text: str) -> SimCase | None:
        if key:
            case = self._by_key.get(key)
            if case is not None:
                return case
        case = self._by_prompt.get(text)
        if case is None:
            case = self._by_prompt.get(text.strip())
        if case is not None:
            return case
        for cand in self._by_length:  # longest prompt first
            if cand.prompt in text:
                return cand
        return None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> SimServer:
        """Serve from a daemon thread with its own event loop; returns once listening."""
        with self._lifecycle:
            if self._thread is not None and self._thread.is_alive():
                return self
            ready = threading.Event()
            failure: list[BaseException] = []
            loop = asyncio.new_event_loop()

            def run() -> None:
                asyncio.set_event_loop(loop)
                try:
                    task = loop.create_task(self.serve_forever(on_ready=lambda _s: ready.set()))
                    self._main_task = task
                    with contextlib.suppress(asyncio.CancelledError):
                        loop.run_until_complete(task)
                except BaseException as exc:  # surfaced to the caller of start()
                    failure.append(exc)
                finally:
                    ready.set()
                    with contextlib.suppress(Exception):
                        loop.run_until_complete(loop.shutdown_asyncgens())
                    loop.close()

            thread = threading.Thread(target=run, name="evalgate-sim", daemon=True)
            thread.start()
            ready.wait()
            if failure:
                thread.join()
                raise failure[0]
            self._thread, self._loop = thread, loop
            return self

    def stop(self) -> None:
        """Close the listener and all connections, then join the thread. Idempotent."""
        with self._lifecycle:
            thread, loop, task = self._thread, self._loop, self._main_task
            self._thread = self._loop = self._main_task = None
            if thread is None or loop is None:
                return
            if task is not None:
                with contextlib.suppress(RuntimeError):  # loop already closed
                    loop.call_soon_threadsafe(task.cancel)
            thread.join(timeout=10)

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def serve_forever(self, on_ready: Callable[[SimServer], None] | None = None) -> None:
        """Bind and serve until cancelled (foreground CLI); ``on_ready`` fires once bound."""
        server = await asyncio.start_server(
            self._handle, self.host, self._port_cfg, backlog=4096, limit=_READ_CHUNK
        )
        self.port = server.sockets[0].getsockname()[1]
        try:
            if on_ready is not None:
                on_ready(self)
            await asyncio.Event().wait()
        finally:
            server.close()
            tasks = list(self._conn_tasks)
            for t in tasks:
                t.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await server.wait_closed()

    # -- HTTP ----------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection: parse requests with h11, answer them in order, keep alive.

        h11 parses every request; responses are written by hand from a fixed template
        because h11's header validation was ~15% of the per-request cost and our
        responses are always the same simple shape (Content-Length framed JSON). A fresh
        h11.Connection per request (fed any pipelined bytes) keeps h11's state consistent.
        """
        task = asyncio.current_task()
        if task is not None:
            self._conn_tasks.add(task)
        self.stats.record_connection()
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                try:
                    request, body = await self._read_request(conn, reader, writer)
                except h11.RemoteProtocolError as exc:
                    if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                        msg = str(exc) or "bad request"
                        payload = _dumps(
                            {"error": {"message": msg, "type": "invalid_request_error"}}
                        )
                        writer.write(_response(exc.error_status_hint, [], payload, False, True))
                        await writer.drain()
                    break
                if request is None:
                    break
                keep_alive = _keep_alive(request)
                if body is None:
                    keep_alive = False
                    status, headers = 413, []
                    payload = _dumps(
                        {
                            "error": {
                                "message": "request body too large",
                                "type": "invalid_request_error",
                            }
                        }
                    )
                else:
                    try:
                        status, headers, payload = await self._dispatch(request, body)
                    except _Sever as fault:
                        await fault.apply(writer)
                        break
                writer.write(
                    _response(status, headers, payload, keep_alive, request.method != b"HEAD")
                )
                if writer.transport.get_write_buffer_size() > _READ_CHUNK:
                    await writer.drain()
                if not keep_alive:
                    break
                trailing, closed = conn.trailing_data
                conn = h11.Connection(h11.SERVER)
                if trailing:
                    conn.receive_data(trailing)
                if closed:
                    conn.receive_data(b"")
        except (ConnectionError, h11.LocalProtocolError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # Our own shutdown. Finishing normally keeps asyncio's stream callback from
            # logging the cancellation as an error (it calls task.exception()).
            pass
        finally:
            if task is not None:
                self._conn_tasks.discard(task)
            writer.close()

    @staticmethod
    async def _read_request(
        conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[h11.Request | None, bytes | None]:
        """Next request and its body; (None, None) on a clean close; body None if too big."""
        request: h11.Request | None = None
        chunks: list[bytes] = []
        size = 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                if conn.they_are_waiting_for_100_continue:
                    writer.write(
                        conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b""
                    )
                conn.receive_data(await reader.read(_READ_CHUNK))
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > _MAX_BODY:
                    return request, None
                chunks.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return request, b"".join(chunks)
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None, None

    async def _dispatch(self, request: h11.Request, body: bytes) -> tuple[int, _Headers, bytes]:
        path = request.target.split(b"?", 1)[0].decode("latin-1")
        method = request.method
        route = _ROUTES.get(path)
        if route is None:
            if path == "/health" and method == b"GET":
                return 200, [], b'{"status":"ok"}'
            if path == "/stats" and method == b"GET":
                return 200, [], _dumps(self.stats.snapshot())
            if path in ("/health", "/stats"):
                return (
                    405,
                    [(b"allow", b"GET")],
                    _dumps(
                        {
                            "error": {
                                "message": "method not allowed",
                                "type": "invalid_request_error",
                            }
                        }
                    ),
                )
            self.stats.record(path, None, "not_found")
            return (
                404,
                [],
                _dumps(
                    {
                        "error": {
                            "message": f"unknown path {path}",
                            "type": "invalid_request_error",
                            "code": "not_found",
                        }
                    }
                ),
            )
        if method != b"POST":
            return (
                405,
                [(b"allow", b"POST")],
                _dumps(
                    {"error": {"message": "method not allowed", "type": "invalid_request_error"}}
                ),
            )
        headers = {k: v for k, v in request.headers if k.startswith(b"x-evalgate-")}
        self.stats.enter()
        try:
            return await self._complete(route, headers, body)
        finally:
            self.stats.leave()

    def _limits(self, profile: SimProfile, model: str, prompt_tokens: int,
                anthropic: bool = False) -> tuple[_Headers, float | None]:
        """Server-side request/token limits per window: rate-limit headers in OpenAI's format
        (x-ratelimit-*, reset as a duration) or, on the Anthropic route, Anthropic's
        (anthropic-ratelimit-*, reset as an RFC 3339 time; the token limit counts input
        tokens), and the seconds until reset when this request is over a limit."""
        window = profile.limit_window_s
        elapsed = time.monotonic() - self._t0
        index = elapsed // window
        state = self._windows.get(model)
        if state is None or state[0] != index:
            state = self._windows[model] = [index, 0, 0]
        reset = (index + 1) * window - elapsed
        over = (profile.limit_requests is not None and state[1] >= profile.limit_requests) or (
            profile.limit_tokens is not None and state[2] + prompt_tokens > profile.limit_tokens)
        if not over:
            state[1] += 1
            state[2] += prompt_tokens
        headers: _Headers = []
        for kind, limit, used in (("requests", profile.limit_requests, state[1]),
                                  ("tokens", profile.limit_tokens, state[2])):
            if limit is None:
                continue
            left = b"%d" % max(0, limit - int(used))
            if anthropic:
                name = b"anthropic-ratelimit-" + (b"input-tokens" if kind == "tokens"
                                                  else kind.encode())
                headers += [(name + b"-limit", b"%d" % limit), (name + b"-remaining", left),
                            (name + b"-reset", _rfc3339_after(reset))]
            else:
                headers += [(b"x-ratelimit-limit-" + kind.encode(), b"%d" % limit),
                            (b"x-ratelimit-remaining-" + kind.encode(), left),
                            (b"x-ratelimit-reset-" + kind.encode(), _go_duration(reset))]
        return headers, reset if over else None

    def _retry_header(self, profile: SimProfile, seconds: float | None) -> _Headers:
        if seconds is None:
            return []
        value = (_http_date_after(seconds) if profile.retry_after_http_date
                 else _retry_after(round(seconds, 3)))
        return [(b"retry-after", value)]

    async def _complete(
        self, route: _Route, headers: dict[bytes, bytes], raw: bytes
    ) -> tuple[int, _Headers, bytes]:
        """The simulation proper, in the documented order of decisions."""
        model: str | None = None
        try:
            try:
                body = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                raise _BadRequest(f"request body is not valid JSON: {exc}") from None
            if not isinstance(body, dict):
                raise _BadRequest("request body must be a JSON object")
            model = body.get("model") if isinstance(body.get("model"), str) else None
            call = route.parse(body)
        except _BadRequest as exc:
            self.stats.record(route.name, model, "bad_request")
            return 400, [], _dumps(route.error("bad_request", str(exc)))

        profile = self._profile(call.model)
        model_name = call.model if call.model is not None else "default"
        if profile is None:
            self.stats.record(route.name, call.model, "model_not_found")
            return (
                404,
                [],
                _dumps(route.error("model_not_found", f"model '{model_name}' not found")),
            )

        sample_hdr = headers.get(b"x-evalgate-sample")
        if sample_hdr is not None:
            sample = sample_hdr.decode("utf-8", "replace")
        else:
            sample = call.sample if call.sample is not None else "0"
        cpt = profile.chars_per_token
        prompt_tokens = _tokens(call.prompt_text, cpt)
        digest = hashlib.sha256(call.prompt_text.encode()).hexdigest()
        attempt_key = (model_name, digest, sample)
        attempt = self._attempts.get(attempt_key, 0)
        self._attempts[attempt_key] = attempt + 1

        # 1. context length (deterministic)
        if prompt_tokens > profile.context_window:
            self.stats.record(route.name, call.model, "context_length")
            msg = route.context_message(prompt_tokens, profile.context_window)
            return 400, [], _dumps(route.error("context", msg))

        # 1b. server-side limits: concurrency, then requests / tokens per window
        limit_headers: _Headers = []
        if (profile.max_in_flight is not None
                and self.stats.in_flight - self._rejecting > profile.max_in_flight):
            # Turning a request away takes latency_ms too (as on a busy real server), so the
            # rejected requests show in the in-flight count (not in the accepted one).
            self.stats.record(route.name, call.model, "429", prompt_tokens)
            self._rejecting += 1
            try:
                await asyncio.sleep(profile.latency_ms / 1000.0)
            finally:
                self._rejecting -= 1
            return 429, self._retry_header(profile, profile.retry_after_s), _dumps(
                route.error("rate_limit", "Too many concurrent requests (simulated)"))
        if profile.limit_requests is not None or profile.limit_tokens is not None:
            limit_headers, reset = self._limits(profile, model_name, prompt_tokens,
                                                anthropic=isinstance(route, _AnthropicRoute))
            if reset is not None:
                self.stats.record(route.name, call.model, "429", prompt_tokens)
                # retry_after_s: null -> no Retry-After; the client has x-ratelimit-reset-*
                retry = self._retry_header(profile, None if profile.retry_after_s is None
                                           else reset)
                return 429, limit_headers + retry, _dumps(
                    route.error("rate_limit", "Rate limit reached for requests (simulated)"))

        stream_key = f"{profile.seed}\x1f{model_name}\x1f{digest}\x1f{sample}"
        # Skipping the fault stream when no fault can fire changes no outcome; it only
        # saves seeding a Random on the hot path of latency-only benchmarks.
        faults = _rng(f"fault\x1f{stream_key}\x1f{attempt}") if _has_faults(profile) else None
        if faults is not None and profile.fault_cases is not None:
            key_hdr = headers.get(b"x-evalgate-case")
            target = self._find_case(key_hdr.decode("utf-8", "replace") if key_hdr else None,
                                     call.user_text)
            if target is None or target.key not in profile.fault_cases:
                faults = None
        # 2. rate limit
        if faults is not None and faults.random() < profile.error_429_rate:
            self.stats.record(route.name, call.model, "429", prompt_tokens)
            extra = self._retry_header(profile, profile.retry_after_s)
            return 429, extra, _dumps(route.error("rate_limit", "Rate limit reached (simulated)"))
        # 3. server error
        if faults is not None and faults.random() < profile.error_500_rate:
            self.stats.record(route.name, call.model, "500", prompt_tokens)
            return profile.error_500_status, limit_headers, _dumps(
                route.error("server", "simulated server error"))
        # 4. stall, 5. latency (needs the answer length), 6. malformed
        stalled = spiked = malformed = False
        reset = stall_body = invalid = empty = False
        z = 0.0
        if faults is not None:
            stalled = faults.random() < profile.timeout_rate
            z = faults.gauss(0.0, 1.0)
            spiked = faults.random() < profile.spike_prob
            malformed = faults.random() < profile.malformed_rate
            # drawn after the older faults, so existing profiles keep their outcomes
            reset = faults.random() < profile.reset_rate
            stall_body = faults.random() < profile.stall_body_rate
            invalid = faults.random() < profile.invalid_json_rate
            empty = faults.random() < profile.empty_choices_rate

        hallucinate = False
        answer_rng: random.Random | None = None
        if profile.hallucination_rate > 0:
            answer_rng = _rng(f"answer\x1f{stream_key}")
            hallucinate = answer_rng.random() < profile.hallucination_rate
        key_hdr = headers.get(b"x-evalgate-case")
        case = self._find_case(
            key_hdr.decode("utf-8", "replace") if key_hdr else None, call.user_text
        )
        if case is None:
            answer = _UNKNOWN_WRONG if hallucinate else _UNKNOWN
        elif hallucinate and answer_rng is not None:
            answer = _hallucinated_answer(case, answer_rng)
        else:
            answer = _correct_answer(case)
        if profile.determinism is not None:
            answer = _vary_answer(profile, f"{model_name}\x1f{digest}", sample, answer)
        if profile.judge is not None:
            answer = judge_reply(profile.judge, call.prompt_text, profile.seed, sample)
        completion_tokens = _tokens(answer, cpt)
        truncated = call.max_tokens is not None and completion_tokens > call.max_tokens
        if truncated:
            assert call.max_tokens is not None
            answer = answer[: max(1, int(call.max_tokens * cpt))]
            completion_tokens = _tokens(answer, cpt)

        outcome = ("timeout" if stalled else "reset" if reset else "stall_body" if stall_body
                   else "malformed" if malformed else "invalid_json" if invalid
                   else "empty_choices" if empty else "ok")
        self.stats.record(route.name, call.model, outcome, prompt_tokens, completion_tokens,
                          case=f"{case.key if case is not None else '?'}#{sample}")

        delay_ms = profile.latency_ms
        if profile.latency_sigma > 0:
            delay_ms *= math.exp(profile.latency_sigma * z)
        if spiked:
            delay_ms += profile.spike_ms
        delay_ms += profile.ms_per_output_token * completion_tokens
        delay = delay_ms / 1000.0 + (profile.stall_s if stalled else 0.0)
        if profile.capacity is not None:
            await self._occupy(model_name, profile.capacity, delay)
        elif delay > 0:
            await asyncio.sleep(delay)

        if reset:
            raise _Sever("reset")
        result = _Result(answer, prompt_tokens, completion_tokens, truncated, next(self._ids))
        body = route.success(call, result, profile)
        payload = _dumps(_empty_answer(body) if empty and outcome == "empty_choices" else body)
        if stall_body:
            raise _Sever("stall_body", limit_headers, payload, profile.stall_s)
        if malformed:
            payload = payload[: max(1, len(payload) // 2)]
        elif invalid and outcome == "invalid_json":  # Python-ish quoting: not JSON at all
            payload = payload.replace(b'"', b"'")
        return 200, limit_headers, payload

    async def _occupy(self, model_name: str, capacity: int, delay: float) -> None:
        """Serve with at most `capacity` requests of this model in service at once: the rest
        queue (FIFO), so latency grows with concurrency beyond capacity, as on a real server."""
        key = (model_name, capacity)
        slots = self._slots.get(key)
        if slots is None:
            slots = self._slots[key] = asyncio.Semaphore(capacity)
        async with slots:
            await asyncio.sleep(max(delay, 0.0))


_VARIANTS = ("In short", "To summarise", "Briefly", "Put simply", "In a nutshell", "Overall",
             "All in all", "Simply put")


def _vary_answer(profile: SimProfile, case_key: str, sample: str, answer: str) -> str:
    """The determinism knob: a canary is stable with probability `profile.determinism` (drawn
    once per canary from the profile's seed); an unstable one words every sample differently
    (a different lead-in and the sample number), so no two of its samples agree, exactly or
    after folding case, spaces and punctuation, and its facts stay in the answer."""
    assert profile.determinism is not None
    if _rng(f"determinism\x1f{profile.seed}\x1f{case_key}").random() < profile.determinism:
        return answer
    lead = _VARIANTS[_rng(f"variant\x1f{case_key}\x1f{sample}").randrange(len(_VARIANTS))]
    return f"{lead} (take {sample}): {answer}"
