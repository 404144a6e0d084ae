"""The async engine: every planned call made once, bounded concurrency, retries, deadlines.

One asyncio loop and one pooled httpx client per run; calls are I/O-bound, so this beats any
process-per-call scheme. Faults are recorded on the call, never raised out of the run.
"""

from __future__ import annotations

import asyncio
import functools
import math
import random
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import certifi
import httpx

from evalgate.config import LoadedModel
from evalgate.project import PlannedCall
from evalgate.providers import CallableProvider, HttpProvider, ProviderError, Reply
from evalgate.results import Attempt, Record

BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 8.0
LANES_PER_CLIENT = 4


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int
    timeout_s: float
    deadline_s: float
    max_retry_after_s: float

    @classmethod
    def of(cls, model: LoadedModel) -> RetryPolicy:
        cfg = model.config
        return cls(cfg.max_retries, cfg.timeout_s, cfg.total_deadline_s, cfg.max_retry_after_s)

    def wait_s(self, attempt: int, error: ProviderError, rng: random.Random) -> float:
        """Honour Retry-After (capped); otherwise full-jitter exponential backoff."""
        if error.retry_after_s is not None:
            return min(error.retry_after_s, self.max_retry_after_s)
        return rng.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))


class RateLimiter:
    """Client-side requests-per-minute pacing: evenly spaced start slots."""

    def __init__(self, rpm: float | None) -> None:
        self.interval = 60.0 / rpm if rpm else 0.0
        self.next_slot = 0.0

    async def acquire(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        slot = max(now, self.next_slot)
        self.next_slot = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


def redactor(secrets: Sequence[str | None]) -> Callable[[str], str]:
    """A function that blanks every secret value out of a text (error messages, URLs)."""
    values = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def redact(text: str) -> str:
        for value in values:
            text = text.replace(value, "[REDACTED]")
        return text

    return redact


def transport_error(exc: Exception) -> ProviderError:
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return ProviderError("connect_error", f"{type(exc).__name__}: {exc}", retryable=True)
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return ProviderError("timeout", f"{type(exc).__name__}: no answer in time",
                             retryable=True)
    return ProviderError("connection_error", f"{type(exc).__name__}: {exc}", retryable=True)


@functools.cache
def _shared_ssl_context() -> ssl.SSLContext:
    """One TLS context for every client: building one loads the CA bundle (milliseconds)."""
    return ssl.create_default_context(cafile=certifi.where())


def estimate_tokens(text: str) -> int:
    """Rough token count (4 characters a token) for servers that report no usage."""
    return max(1, math.ceil(len(text) / 4))


class Executor:
    def __init__(self, model: LoadedModel, provider: HttpProvider | CallableProvider,
                 concurrency: int, seed: int = 0) -> None:
        self.model = model
        self.provider = provider
        self.concurrency = concurrency
        self.policy = RetryPolicy.of(model)
        self.limiter = RateLimiter(model.config.rate_limit.rpm if model.config.rate_limit
                                   else None)
        self.rng = random.Random(seed)
        self.redact = redactor([model.api_key()] if model.config.api_key_env
                               and model.config.provider != "sim" else [])
        self.pricing = model.config.pricing

    async def run(self, calls: Sequence[PlannedCall], config_label: str = "candidate"
                  ) -> list[Record]:
        """Run every call once; one Record per call, in plan order."""
        jobs = [[(self, call, config_label)] for call in calls]
        return [job[0] for job in await run_jobs(jobs, self.concurrency)]

    async def _attempt(self, client: httpx.AsyncClient, call: PlannedCall,
                       budget_s: float) -> Reply:
        async with asyncio.timeout(budget_s):
            if isinstance(self.provider, CallableProvider):
                return await self.provider.invoke(call)
            request = self.provider.build(call)
            response = await client.request(request.method, request.url,
                                            headers=request.headers, json=request.json,
                                            timeout=self.policy.timeout_s)
            return self.provider.parse(response)

    async def call(self, client: httpx.AsyncClient, call: PlannedCall, label: str,
                   t0: float) -> Record:
        """Make one planned call (with its retries) and record what happened."""
        entry = call.entry
        attempts: list[Attempt] = []
        start = deadline = 0.0
        error: ProviderError | None = None
        reply: Reply | None = None
        waited = 0.0
        for n in range(self.policy.max_retries + 1):
            await self.limiter.acquire()
            if n == 0:  # latency and deadline start once the client may send, not before
                start = time.perf_counter()
                deadline = start + self.policy.deadline_s
            budget = min(self.policy.timeout_s, deadline - time.perf_counter())
            if budget <= 0:
                error = ProviderError("deadline_exceeded", "call deadline of "
                                      f"{self.policy.deadline_s:g}s exceeded", retryable=False)
                break
            a0 = time.perf_counter()
            try:
                reply = await self._attempt(client, call, budget)
            except ProviderError as exc:
                error = exc
            except (httpx.HTTPError, TimeoutError, OSError) as exc:
                error = transport_error(exc)
            elapsed = (time.perf_counter() - a0) * 1000
            if reply is not None:
                attempts.append(Attempt(n=n, status=200, latency_ms=elapsed, waited_ms=waited))
                break
            assert error is not None
            attempts.append(Attempt(n=n, status=error.status, error_class=error.error_class,
                                    latency_ms=elapsed, retry_after_s=error.retry_after_s,
                                    waited_ms=waited))
            if not error.retryable or n == self.policy.max_retries:
                break
            wait = self.policy.wait_s(n, error, self.rng)
            if time.perf_counter() + wait >= deadline:
                break
            await asyncio.sleep(wait)
            waited = wait * 1000
        end = time.perf_counter()
        common = dict(key=entry.key, set=entry.set_name, case_id=entry.case.id,
                      sample=call.sample, config=label, tags=entry.case.tags,
                      attempts=attempts, started_s=round(start - t0, 6))
        if reply is None:
            assert error is not None
            return Record(ok=False, error_class=error.error_class,
                          error_message=self.redact(str(error)), **common)
        estimated = reply.input_tokens is None or reply.output_tokens is None
        tokens_in = reply.input_tokens if reply.input_tokens is not None else sum(
            estimate_tokens(m["content"]) for m in call.messages)
        tokens_out = reply.output_tokens if reply.output_tokens is not None \
            else estimate_tokens(reply.text)
        return Record(ok=True, text=reply.text, finish_reason=reply.finish_reason,
                      input_tokens=tokens_in, output_tokens=tokens_out, usage_estimated=estimated,
                      cost_usd=self.pricing.cost(tokens_in, tokens_out),
                      latency_ms=(end - start) * 1000, **common)


Step = tuple[Executor, PlannedCall, str]


def _client() -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=LANES_PER_CLIENT,
                          max_keepalive_connections=LANES_PER_CLIENT)
    return httpx.AsyncClient(limits=limits, verify=_shared_ssl_context())


async def run_jobs(jobs: Sequence[Sequence[Step]], concurrency: int) -> list[list[Record]]:
    """Run jobs on `concurrency` lanes; the steps of one job go back to back on one lane.

    A job is one canary's baseline and candidate request (in a random order), so load drift
    during the run hits both configs alike. Lanes share an httpx client in small groups:
    httpcore's pool rescans every waiting request against every connection, which makes one
    client with 64 connections several times slower than 16 clients with 4 each.
    """
    t0 = time.perf_counter()
    results: list[list[Record]] = [[] for _ in jobs]
    pending = iter(enumerate(jobs))
    lanes = max(1, min(concurrency, len(jobs)))
    clients = [_client() for _ in range(math.ceil(lanes / LANES_PER_CLIENT))]

    async def lane(client: httpx.AsyncClient) -> None:
        for index, job in pending:  # one shared iterator: each job is taken exactly once
            results[index] = [await runner.call(client, call, label, t0)
                              for runner, call, label in job]

    try:
        await asyncio.gather(*(lane(clients[j // LANES_PER_CLIENT]) for j in range(lanes)))
    finally:
        for client in clients:
            await client.aclose()
    return results


def execute(model: LoadedModel, provider: HttpProvider | CallableProvider,
            calls: Sequence[PlannedCall], concurrency: int, seed: int = 0,
            config_label: str = "candidate") -> list[Record]:
    """Make every planned call once; returns one Record per call, in plan order."""
    executor = Executor(model, provider, concurrency, seed)
    return asyncio.run(executor.run(calls, config_label))
