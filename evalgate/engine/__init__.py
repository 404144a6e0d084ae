"""The calls: planning (messages per canary and sample), providers (one module each behind
`providers.base`), the executor (lanes, retries, deadlines, fallback), throttling (backoff,
rate limits, adaptive concurrency), routed execution, and the journal and response cache
(`persist`). It yields call records (`evalgate.results.Record`); it grades nothing."""

from __future__ import annotations

from evalgate.engine.executor import Executor, executor_for, run_jobs
from evalgate.engine.persist import Persistence, ResponseCache, open_cache
from evalgate.engine.planning import PlannedCall, build_messages, plan_calls
from evalgate.engine.providers import ProviderError, Reply, make_provider
from evalgate.engine.throttling import AdaptiveLimit, RateLimiter, RetryPolicy

__all__ = ["AdaptiveLimit", "Executor", "Persistence", "PlannedCall", "ProviderError",
           "RateLimiter", "Reply", "ResponseCache", "RetryPolicy", "build_messages",
           "executor_for", "make_provider", "open_cache", "plan_calls", "run_jobs"]
