"""How hard the engine pushes: retry backoff (full jitter), a client-side rate limit, and the
adaptive concurrency that shrinks on throttling and pauses until a server's rate-limit window
resets."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from evalgate.engine.providers import ProviderError
from evalgate.spec.config import LoadedModel
from evalgate.text.tokens import estimate_tokens

BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 8.0
# Errors that mean "too much load": they shrink the adaptive concurrency, and waiting after
# them counts as throttled time, not as a fault's backoff.
THROTTLE_CLASSES = frozenset({"rate_limited", "overloaded"})
PAUSE_MARGIN_S = 0.005  # wake just after the server's window resets, never just before


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
    """Client-side pacing with no burst: starts evenly spaced (rpm), and each start waits until
    the tokens already sent fit the tokens-per-minute budget (tpm). A call's tokens are the
    prompt's estimate when it starts, corrected by the reply's usage when it ends."""

    def __init__(self, rpm: float | None, tpm: float | None = None) -> None:
        self.interval = 60.0 / rpm if rpm else 0.0
        self.per_token = 60.0 / tpm if tpm else 0.0
        self.active = bool(self.interval or self.per_token)
        self.next_slot = 0.0
        self.next_token_slot = 0.0
        self.answers = self.answer_tokens = 0

    async def acquire(self, tokens: int = 0) -> float:
        """Wait for this start's slot; returns the seconds waited. The slot is taken when the
        call starts, not booked ahead, so usage settled meanwhile moves it."""
        if not self.active:
            return 0.0
        t0 = now = time.monotonic()
        while (slot := max(self.next_slot, self.next_token_slot)) > now:
            await asyncio.sleep(slot - now)
            now = time.monotonic()
        self.next_slot = max(now, self.next_slot) + self.interval
        self.next_token_slot = max(now, self.next_token_slot) + tokens * self.per_token
        return now - t0

    def estimate(self, messages: Sequence[dict[str, str]]) -> int:
        """A call's tokens before it is made: the prompt's, plus the mean answer so far."""
        answer = round(self.answer_tokens / self.answers) if self.answers else 0
        return sum(estimate_tokens(m["content"]) for m in messages) + answer

    def settle(self, estimated: int, tokens_in: int, tokens_out: int) -> None:
        """Charge the tokens a call really used (prompt and answer) instead of its estimate."""
        self.next_token_slot += (tokens_in + tokens_out - estimated) * self.per_token
        self.answers += 1
        self.answer_tokens += tokens_out


class AdaptiveLimit:
    """AIMD cap on one model's attempts in flight, like TCP's congestion window.

    A 429 halves the cap (once per round trip: attempts sent before the last cut saw the old
    cap, so their 429s do not cut again); each success adds 1/cap, i.e. one more slot per cap's
    worth of successes, up to the run's concurrency. When a response says no requests or tokens
    remain in the server's window (x-ratelimit-remaining-* = 0), new attempts pause until it
    resets. Until the first 429 or pause, acquire() is one comparison.
    """

    def __init__(self, ceiling: int) -> None:
        self.ceiling = float(ceiling)
        self.limit = float(ceiling)
        self.in_flight = 0
        self.resume_at = 0.0  # perf_counter time; 0: not paused
        self.last_cut = -math.inf
        self.waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> float:
        """Take a slot; returns the seconds spent waiting for it."""
        if self.in_flight < self.limit and not self.resume_at:
            self.in_flight += 1
            return 0.0
        t0 = time.perf_counter()
        while True:
            pause = self.resume_at - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
                continue
            self.resume_at = 0.0
            if self.in_flight < self.limit:
                break
            waiter = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            try:
                await waiter
            finally:
                if not waiter.done():
                    waiter.cancel()
        self.in_flight += 1
        return time.perf_counter() - t0

    def release(self, sent_at: float, throttled: bool, answered: bool = True) -> None:
        """Give the slot back: a 429 (or 529) shrinks the cap, an answer grows it, any other
        outcome (a 5xx, a timeout) leaves it be."""
        self.in_flight -= 1
        if throttled:
            if sent_at >= self.last_cut:
                self.limit = max(1.0, self.limit / 2)
                self.last_cut = time.perf_counter()
        elif answered and self.limit < self.ceiling:
            self.limit = min(self.ceiling, self.limit + 1.0 / self.limit)
        if self.waiters:
            free = math.ceil(self.limit) - self.in_flight
            while free > 0 and self.waiters:
                waiter = self.waiters.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    free -= 1

    def pause(self, seconds: float) -> None:
        """No new attempts for `seconds` (the server's rate-limit window resets then)."""
        self.resume_at = max(self.resume_at, time.perf_counter() + seconds + PAUSE_MARGIN_S)
