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
import contextlib
import hashlib
import itertools
import json
import random
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import h11

from evalgate.sim.answers import (
    _UNKNOWN,
    _UNKNOWN_WRONG,
    SimCase,
    _correct_answer,
    _hallucinated_answer,
    _rng,
    _tokens,
    _vary_answer,
)
from evalgate.sim.counters import SimStats
from evalgate.sim.faults import (
    _go_duration,
    _has_faults,
    _http_date_after,
    _retry_after,
    _rfc3339_after,
    _Sever,
)
from evalgate.sim.http import _MAX_BODY, _READ_CHUNK, _dumps, _Headers, _keep_alive, _response
from evalgate.sim.judge import judge_reply
from evalgate.sim.streaming import (
    REQUEST_ARRIVED,
    StreamPlan,
    has_stream_faults,
    stream_draws,
    timing,
)
from evalgate.sim.tools import tool_answer
from evalgate.sim.wire import _ROUTES, _AnthropicRoute, _BadRequest, _empty_answer, _Result, _Route
from evalgate.spec.sim_profile import SimProfile

__all__ = ["SimServer"]


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
                if isinstance(payload, StreamPlan):
                    await payload.write(writer, headers, keep_alive, self.stats)
                else:
                    writer.write(_response(status, headers, payload, keep_alive,
                                           request.method != b"HEAD"))
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
        REQUEST_ARRIVED.set(None)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                if conn.they_are_waiting_for_100_continue:
                    writer.write(
                        conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b""
                    )
                conn.receive_data(await reader.read(_READ_CHUNK))
                if REQUEST_ARRIVED.get() is None:  # the request's first bytes are in
                    REQUEST_ARRIVED.set(time.monotonic())
            elif isinstance(event, h11.Request):
                request = event
                if REQUEST_ARRIVED.get() is None:  # it was already buffered (pipelined)
                    REQUEST_ARRIVED.set(time.monotonic())
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > _MAX_BODY:
                    return request, None
                chunks.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return request, b"".join(chunks)
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None, None

    async def _dispatch(self, request: h11.Request, body: bytes
                        ) -> tuple[int, _Headers, bytes | StreamPlan]:
        path = request.target.split(b"?", 1)[0].decode("latin-1")
        method = request.method
        route = _ROUTES.get(path)

        def error(message: str, code: str | None = None) -> bytes:
            err = {"message": message, "type": "invalid_request_error"}
            return _dumps({"error": {**err, "code": code} if code else err})

        if route is None:
            if path == "/health" and method == b"GET":
                return 200, [], b'{"status":"ok"}'
            if path == "/stats" and method == b"GET":
                return 200, [], _dumps(self.stats.snapshot())
            if path in ("/health", "/stats"):
                return 405, [(b"allow", b"GET")], error("method not allowed")
            self.stats.record(path, None, "not_found")
            return 404, [], error(f"unknown path {path}", "not_found")
        if method != b"POST":
            return 405, [(b"allow", b"POST")], error("method not allowed")
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
    ) -> tuple[int, _Headers, bytes | StreamPlan]:
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
        faults = (_rng(f"fault\x1f{stream_key}\x1f{attempt}")
                  if _has_faults(profile) or has_stream_faults(profile) else None)
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
        streaming, draws = call.stream and not profile.ignore_stream, stream_draws(profile, faults)

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
        tool = tool_answer(case, profile, stream_key) if call.has_tools else None
        answer = "" if tool is not None else answer
        completion_tokens = _tokens(json.dumps(tool) if tool else answer, cpt)
        truncated = call.max_tokens is not None and completion_tokens > call.max_tokens \
            and tool is None
        if truncated:
            assert call.max_tokens is not None
            answer = answer[: max(1, int(call.max_tokens * cpt))]
            completion_tokens = _tokens(answer, cpt)

        outcome = ("timeout" if stalled else "reset" if reset else "stall_body" if stall_body
                   else "malformed" if malformed else "invalid_json" if invalid
                   else "empty_choices" if empty else "ok")
        if streaming and outcome == "ok" and draws.fault:
            outcome = f"stream_{draws.fault}"
        self.stats.record(route.name, call.model, outcome, prompt_tokens, completion_tokens,
                          case=f"{case.key if case is not None else '?'}#{sample}")

        first_s, per_token_s = timing(profile, z, spiked, draws)
        first_s += profile.stall_s if stalled else 0.0
        if streaming and not reset:
            result = _Result(answer, prompt_tokens, completion_tokens, truncated, next(self._ids))
            return 200, limit_headers, StreamPlan(
                route.name, call, result, profile, first_s, per_token_s, draws.fault,
                f"{case.key if case is not None else '?'}#{sample}")
        delay = first_s + per_token_s * completion_tokens
        if profile.capacity is not None:
            await self._occupy(model_name, profile.capacity, delay)
        elif delay > 0:
            await asyncio.sleep(delay)

        if reset:
            raise _Sever("reset")
        result = _Result(answer, prompt_tokens, completion_tokens, truncated, next(self._ids),
                         tool)
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


