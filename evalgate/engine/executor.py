"""The async engine: every planned call made once, bounded concurrency, retries, deadlines.

One asyncio loop and one pooled httpx client per run; calls are I/O-bound, so this beats any
process-per-call scheme. Faults are recorded on the call, never raised out of the run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import math
import os
import random
import re
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import certifi
import httpx

from evalgate.engine.monitor import CallMonitor, stopped_record
from evalgate.engine.planning import PlannedCall, build_messages
from evalgate.engine.providers import (
    CallableProvider,
    HttpProvider,
    ProviderError,
    Reply,
    make_provider,
)
from evalgate.engine.providers.base import rate_limit_pause_s
from evalgate.engine.providers.streaming import StreamingProvider, stream_fields
from evalgate.engine.replies import (
    cost_fields,
    detail_fields,
    header_cost,
    reasoning_fields,
    unanswered,
)
from evalgate.engine.throttling import THROTTLE_CLASSES, AdaptiveLimit, RateLimiter, RetryPolicy
from evalgate.results import Attempt, Record
from evalgate.spec.config import LoadedModel
from evalgate.text.tokens import estimate_tokens

LANES_PER_CLIENT = 4


REDACTED = "[REDACTED]"
MIN_FRAGMENT = 6  # the shortest piece of a cut-off secret that is blanked at a text's edge
ERROR_MESSAGE_CHARS = 400  # an error message is shortened to this, after redaction


def redactor(secrets: Sequence[str | None]) -> Callable[[str], str]:
    """A function that blanks every secret value out of a text (answers, error messages, body
    excerpts, URLs): whole, and cut off at the text's end (or its start)."""
    values = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def redact(text: str) -> str:
        for value in values:
            text = _blank_edges(text.replace(value, REDACTED), value)
        return text

    return redact


def _blank_edges(text: str, value: str) -> str:
    """Blank the longest piece of `value` that a cut left at the end (its start) or at the
    start (its end) of `text`."""
    for k in range(min(len(value) - 1, len(text)), MIN_FRAGMENT - 1, -1):
        if text.endswith(value[:k]):
            text = text[:-k] + REDACTED
            break
    for k in range(min(len(value) - 1, len(text)), MIN_FRAGMENT - 1, -1):
        if text.startswith(value[-k:]):
            text = REDACTED + text[k:]
            break
    return text


def model_secrets(model: LoadedModel) -> list[str]:
    """The values a model config's calls carry that must never be written: its API key, and
    every header value that came from the environment or names a credential, its fallback's
    too."""
    cfg = model.config
    found: list[str] = []
    if cfg.api_key_env and cfg.provider != "sim":
        found.append(model.api_key() or "")
    headers = {**cfg.headers, **(cfg.http.headers if cfg.http is not None else {})}
    from_env = {v for v in os.environ.values() if len(v) >= 8}
    found += [v for k, v in headers.items() if v in from_env or SECRET_NAME.search(k)]
    if model.fallback is not None:
        found += model_secrets(model.fallback)
    return found


SECRET_NAME = re.compile(r"auth|key|token|secret|cookie|password", re.IGNORECASE)


def scrub(record: Record, redact: Callable[[str], str]) -> Record:
    """The record with every secret out of its texts (the answer may echo a header), its
    error message shortened only after that."""
    if record.text is not None:
        record.text = redact(record.text)
    if record.reasoning_text is not None:
        record.reasoning_text = redact(record.reasoning_text)
    if record.error_message is not None:
        message = redact(record.error_message)
        if len(message) > ERROR_MESSAGE_CHARS:
            message = message[:ERROR_MESSAGE_CHARS - 3] + "..."
        record.error_message = message
    return record


def transport_error(exc: Exception, in_body: bool = False) -> ProviderError:
    """Classify a transport fault; `in_body`: the response's headers had already arrived."""
    name = type(exc).__name__
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return ProviderError("connect_error", f"{name}: {exc}{_endpoint(exc)}", retryable=True)
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        if in_body:
            return ProviderError("stalled_body", f"{name}: the response body stopped "
                                 "arriving halfway", retryable=True)
        return ProviderError("timeout", f"{name}: no answer in time", retryable=True)
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError
                  | ConnectionError):
        if in_body:
            return ProviderError("truncated_response", f"{name}: the connection closed before "
                                 f"the whole body arrived: {exc}", retryable=True)
        return ProviderError("connection_reset", f"{name}: the server closed the connection "
                             f"without an answer: {exc}", retryable=True)
    return ProviderError("connection_error", f"{name}: {exc}", retryable=True)


def _endpoint(exc: httpx.HTTPError) -> str:
    """' (POST http://host:port/path)': where the request went, without its query string."""
    try:
        request = exc.request
    except RuntimeError:  # raised outside a request
        return ""
    return f" ({request.method} {request.url.copy_with(query=None, fragment=None)})"


@functools.cache
def _shared_ssl_context() -> ssl.SSLContext:
    """One TLS context for every client: building one loads the CA bundle (milliseconds)."""
    return ssl.create_default_context(cafile=certifi.where())


@dataclass(slots=True)
class Outcome:
    """One model's try at a call: its reply or last error, attempts, throttled time."""

    reply: Reply | None
    error: ProviderError | None
    attempts: list[Attempt]
    throttled_s: float
    start: float
    latency_s: float
    estimate: int


def falls_back(error: ProviderError | None) -> bool:
    """Transient faults that outlived the retries go to the fallback; a bad request, an
    auth error, a context overflow or a cut-off answer are the config's problem and do not."""
    return error is not None and (error.retryable or error.error_class == "deadline_exceeded")


class Executor:
    def __init__(self, model: LoadedModel,
                 provider: HttpProvider | CallableProvider | StreamingProvider,
                 concurrency: int, seed: int = 0, fallback: Executor | None = None) -> None:
        if concurrency < 1:  # no attempt could ever take a slot: a hang, not a run
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.model = model
        self.provider = provider
        self.concurrency = concurrency
        self.policy = RetryPolicy.of(model)
        limit = model.config.rate_limit
        self.limiter = RateLimiter(limit.rpm if limit else None, limit.tpm if limit else None)
        cap = model.config.max_concurrency
        self.gate = AdaptiveLimit(min(concurrency, cap) if cap else concurrency)
        self.rng = random.Random(seed)
        self.redact = redactor(model_secrets(model))
        self.pricing = model.config.pricing
        self.fallback = fallback

    async def run(self, calls: Sequence[PlannedCall], config_label: str = "candidate"
                  ) -> list[Record]:
        """Run every call once; one Record per call, in plan order."""
        jobs = [[(self, call, config_label)] for call in calls]
        return [job[0] for job in await run_jobs(jobs, self.concurrency)]

    async def _attempt(self, client: httpx.AsyncClient, call: PlannedCall,
                       budget_s: float, in_body: list[bool]) -> Reply:
        async with asyncio.timeout(budget_s):
            if isinstance(self.provider, CallableProvider):
                return await self.provider.invoke(call)
            if isinstance(self.provider, StreamingProvider):
                return await self.provider.send(client, call, self.policy.timeout_s, in_body,
                                                self.gate.pause)
            request = self.provider.build(call)
            response = await client.send(
                client.build_request(request.method, request.url, headers=request.headers,
                                     json=request.json, timeout=self.policy.timeout_s),
                stream=True)
            in_body[0] = True  # headers are in: a fault from here on is mid-body
            try:
                await response.aread()
            except BaseException:
                await response.aclose()
                raise
            pause = rate_limit_pause_s(response.headers)
            if pause is not None:
                self.gate.pause(pause)
            reply = self.provider.parse(response)
            if self.pricing.from_header:
                reply = dataclasses.replace(reply, header_cost_usd=header_cost(
                    response.headers.get(self.pricing.from_header)))
            return reply

    async def attempts(self, client: httpx.AsyncClient, call: PlannedCall) -> Outcome:
        """Make one planned call with its retries: the reply or the last error."""
        attempts: list[Attempt] = []
        start = deadline = latency = 0.0
        error: ProviderError | None = None
        reply: Reply | None = None
        waited = throttled = 0.0
        estimate = 0
        if self.limiter.per_token:
            estimate = self.limiter.estimate(call.messages)
        for n in range(self.policy.max_retries + 1):
            queued = await self.limiter.acquire(estimate)
            queued += await self.gate.acquire()
            throttled += queued
            if n == 0:  # latency and deadline start once the client may send, not before
                start = time.perf_counter()
                deadline = start + self.policy.deadline_s
            else:  # queueing for a slot does not eat into the call's deadline
                deadline += queued
            a0 = time.perf_counter()
            error = None
            budget = min(self.policy.timeout_s, deadline - a0)
            if budget <= 0:
                self.gate.release(a0, False, answered=False)
                error = ProviderError("deadline_exceeded", "call deadline of "
                                      f"{self.policy.deadline_s:g}s exceeded", retryable=False)
                break
            in_body = [False]
            try:
                reply = await self._attempt(client, call, budget, in_body)
            except ProviderError as exc:
                error = exc
            except (httpx.HTTPError, TimeoutError, OSError) as exc:
                error = transport_error(exc, in_body[0])
            finally:
                self.gate.release(a0, error is not None
                                  and error.error_class in THROTTLE_CLASSES, reply is not None)
            elapsed = time.perf_counter() - a0
            if reply is not None:
                attempts.append(Attempt(n=n, status=200, latency_ms=elapsed * 1000,
                                        waited_ms=waited))
                latency = elapsed
                break
            assert error is not None
            attempts.append(Attempt(n=n, status=error.status, error_class=error.error_class,
                                    latency_ms=elapsed * 1000, retry_after_s=error.retry_after_s,
                                    waited_ms=waited))
            if not error.retryable or n == self.policy.max_retries:
                break
            wait = self.policy.wait_s(n, error, self.rng)
            if time.perf_counter() + wait >= deadline:
                break
            await asyncio.sleep(wait)
            waited = wait * 1000
            if error.error_class in THROTTLE_CLASSES:
                throttled += wait
        return Outcome(reply, error, attempts, throttled, start, latency, estimate)

    async def call(self, client: httpx.AsyncClient, call: PlannedCall, label: str,
                   t0: float) -> Record:
        """Make one planned call (with its retries, then its fallback) and record it."""
        entry = call.entry
        out = await self.attempts(client, call)
        answerer, answered_by, message_prefix = self, None, ""
        attempts, throttled, start = out.attempts, out.throttled_s, out.start
        if out.reply is None and self.fallback is not None and falls_back(out.error):
            fb = self.fallback
            assert out.error is not None
            message_prefix = (f"{out.error.error_class} after {len(attempts)} attempt(s); "
                              f"fallback {fb.model.name}: ")
            call = PlannedCall(entry, call.sample, build_messages(fb.model, entry.case))
            second = await fb.attempts(client, call)
            for attempt in second.attempts:
                attempt.fallback = True
            attempts = attempts + second.attempts
            throttled += second.throttled_s
            out, answerer = second, fb
            if second.reply is not None:
                answered_by = fb.model.name
        common = dict(key=entry.key, set=entry.set_name, case_id=entry.case.id,
                      sample=call.sample, config=label, tags=entry.case.tags,
                      attempts=attempts, started_s=round(start - t0, 6),
                      throttled_ms=throttled * 1000)
        reply = out.reply
        if reply is None:
            error = out.error
            assert error is not None
            return scrub(Record(ok=False, error_class=error.error_class,
                                retryable=error.retryable,
                                error_message=message_prefix + str(error), **common),
                         self.redact)
        estimated = reply.input_tokens is None or reply.output_tokens is None
        tokens_in = reply.input_tokens if reply.input_tokens is not None else sum(
            estimate_tokens(m["content"]) for m in call.messages)
        tokens_out = reply.output_tokens if reply.output_tokens is not None \
            else estimate_tokens(reply.text)
        if answerer.limiter.per_token:
            answerer.limiter.settle(out.estimate, tokens_in, tokens_out)
        strip = answerer.model.config.strip_reasoning is not False
        fields = dict(finish_reason=reply.finish_reason,
                      input_tokens=tokens_in, output_tokens=tokens_out,
                      usage_estimated=estimated,
                      **cost_fields(answerer.pricing, reply, tokens_in, tokens_out),
                      **(detail_fields(reply)
                         | reasoning_fields(reply, strip)),
                      latency_ms=out.latency_s * 1000, answered_by=answered_by,
                      **stream_fields(reply, tokens_out))
        stopped = unanswered(reply)
        if stopped is not None:  # refused, cut off, filtered: kept for reading, not an answer
            return scrub(Record(ok=False, error_class=stopped[0], retryable=False,
                                error_message=stopped[1], **fields, **common), self.redact)
        return scrub(Record(ok=True, **fields, **common), self.redact)


def executor_for(model: LoadedModel, concurrency: int, seed: int = 0,
                 sim_url: str | None = None) -> Executor:
    """The Executor for a model config and, when it names one, for its `fallback:`."""
    fallback = None
    if model.fallback is not None:
        fallback = Executor(model.fallback, make_provider(model.fallback, sim_url), concurrency,
                            seed + 7919)
    return Executor(model, make_provider(model, sim_url), concurrency, seed, fallback)


Step = tuple[Executor, PlannedCall, str]


def _client() -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=LANES_PER_CLIENT,
                          max_keepalive_connections=LANES_PER_CLIENT)
    return httpx.AsyncClient(limits=limits, verify=_shared_ssl_context())


async def run_jobs(jobs: Sequence[Sequence[Step]], concurrency: int,
                   monitor: CallMonitor | None = None) -> list[list[Record]]:
    """Run jobs on `concurrency` lanes; the steps of one job go back to back on one lane.

    A job is one canary's baseline and candidate request (in a random order), so load drift
    during the run hits both configs alike. Lanes share an httpx client in small groups:
    httpcore's pool rescans every waiting request against every connection, which makes one
    client with 64 connections several times slower than 16 clients with 4 each.
    `monitor` sees every finished call; once it says stop, the calls in flight are cancelled,
    and every call not made is recorded as failed with its reason.
    """
    t0 = time.perf_counter()
    results: list[list[Record]] = [[] for _ in jobs]
    pending = iter(enumerate(jobs))
    lanes = max(1, min(concurrency, len(jobs)))
    clients = [_client() for _ in range(math.ceil(lanes / LANES_PER_CLIENT))]
    stop = asyncio.Event()

    async def lane(client: httpx.AsyncClient) -> None:
        for index, job in pending:  # one shared iterator: each job is taken exactly once
            for runner, call, label in job:
                results[index].append(await runner.call(client, call, label, t0))
                if monitor is not None:
                    monitor.done(results[index][-1])
                    if monitor.stop_reason is not None:
                        stop.set()
            if stop.is_set():
                return

    tasks = [asyncio.ensure_future(lane(clients[j // LANES_PER_CLIENT])) for j in range(lanes)]
    try:
        await _until_done_or_stopped(tasks, stop)
    finally:
        for client in clients:
            await client.aclose()
    if monitor is not None and monitor.stop_reason is not None:
        _fill_stopped(jobs, results, monitor.stop_reason)
    return results


async def _until_done_or_stopped(tasks: list[asyncio.Future[None]], stop: asyncio.Event) -> None:
    """Wait for the lanes (a lane's exception ends the wait); when `stop` is set first, the
    calls still in flight are cancelled."""
    stopper = asyncio.ensure_future(stop.wait())
    running = set(tasks)
    try:
        while running and not stop.is_set():
            done, _ = await asyncio.wait([*running, stopper], return_when=asyncio.FIRST_COMPLETED)
            running -= done
            for task in done & set(tasks):
                task.result()  # re-raise a lane's error
    finally:
        stopper.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _fill_stopped(jobs: Sequence[Sequence[Step]], results: list[list[Record]],
                  reason: str) -> None:
    """Record every call the early stop left unmade (or cut off) as failed, with the reason."""
    for index, job in enumerate(jobs):
        for _, call, label in job[len(results[index]):]:
            entry = call.entry
            results[index].append(stopped_record(
                dict(key=entry.key, set=entry.set_name, case_id=entry.case.id,
                     sample=call.sample, config=label, tags=entry.case.tags), reason))


def execute(model: LoadedModel, provider: HttpProvider | CallableProvider,
            calls: Sequence[PlannedCall], concurrency: int, seed: int = 0,
            config_label: str = "candidate") -> list[Record]:
    """Make every planned call once; returns one Record per call, in plan order."""
    executor = Executor(model, provider, concurrency, seed)
    return asyncio.run(executor.run(calls, config_label))
