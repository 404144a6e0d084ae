"""What every provider shares: the reply, the fault taxonomy, and status classification."""

from __future__ import annotations

import email.utils
import json
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from evalgate.engine.providers.shapes import ToolCallOut, count, error_class_of


@dataclass(frozen=True)
class Reply:
    text: str
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str | None = None
    # What real servers add (evalgate/engine/providers/shapes.py): tool calls, a refusal's
    # text, cache and reasoning token counts, a gateway's own price for the call.
    tool_calls: tuple[ToolCallOut, ...] = ()
    refusal: str | None = None
    cached_input_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None
    header_cost_usd: float | None = None


class ProviderError(Exception):
    """A failed attempt, classified: is it worth retrying, and how long the server asked to wait."""

    def __init__(self, error_class: str, message: str, *, retryable: bool,
                 status: int | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.retryable = retryable
        self.status = status
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class HttpRequest:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = None


class HttpProvider(Protocol):
    def build(self, call: Any) -> HttpRequest: ...

    def parse(self, response: httpx.Response) -> Reply: ...


def _plain_seconds(value: str) -> float | None:
    """A bare number of seconds (never negative), or None when the value is something else."""
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    seconds = _plain_seconds(value)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(value: str | None) -> float | None:
    """OpenAI's x-ratelimit-reset-* values ("20ms", "1s", "6m0s", "1h2m3.5s") as seconds;
    a bare number counts as seconds. None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    seconds = _plain_seconds(value)
    if seconds is not None:
        return seconds
    parts = _DURATION.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


_REMAINING = ("x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens")
_RESET = ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")
_ANTHROPIC_KINDS = ("requests", "tokens", "input-tokens", "output-tokens")


def seconds_until(value: str | None, now: datetime | None = None) -> float | None:
    """Anthropic's anthropic-ratelimit-*-reset (an RFC 3339 time, e.g. 2026-11-23T04:40:00Z)
    as seconds from now (0 when past); None when absent or unreadable."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if when.tzinfo is None:
        return None  # a time without a zone is not RFC 3339: unknowable, so not waited for
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def rate_limit_pause_s(headers: httpx.Headers) -> float | None:
    """Seconds until the server's window resets when a rate-limit header says nothing is
    left: OpenAI's x-ratelimit-remaining-* (reset as a duration) or Anthropic's
    anthropic-ratelimit-*-remaining (reset as a time). The latest reset when several are
    exhausted; None when calls may go on."""
    waits = []
    for remaining, reset in zip(_REMAINING, _RESET, strict=True):
        if _exhausted(headers.get(remaining)):
            waits.append(parse_duration(headers.get(reset)))
    for kind in _ANTHROPIC_KINDS:
        if _exhausted(headers.get(f"anthropic-ratelimit-{kind}-remaining")):
            waits.append(seconds_until(headers.get(f"anthropic-ratelimit-{kind}-reset")))
    known = [w for w in waits if w is not None]
    return max(known) if known else None


def _exhausted(remaining: str | None) -> bool:
    return remaining is not None and remaining.strip() in ("0", "0.0")


RETRYABLE_STATUSES = {408: "timeout", 409: "conflict", 425: "too_early", 429: "rate_limited",
                      500: "server_error", 502: "bad_gateway", 503: "unavailable",
                      504: "gateway_timeout", 529: "overloaded"}


def error_message_from(response: httpx.Response) -> str:
    """The provider's own error message when the body has one, else the body. Whole: the
    executor redacts secrets from the full text first and only then shortens it (a key cut
    in half by a shortening would no longer match)."""
    try:
        body = response.json()
    except ValueError:
        return response.text
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            return str(err.get("message") or err)
        return str(err)
    return str(body)


def is_context_length(response: httpx.Response) -> bool:
    text = response.text.lower()
    return any(marker in text for marker in (
        "context_length_exceeded", "maximum context length", "prompt is too long",
        "context window"))


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def raise_for_status(response: httpx.Response) -> None:
    """Classify a non-2xx response into a ProviderError."""
    status = response.status_code
    if status < 300:
        return
    message = f"HTTP {status}: {error_message_from(response)}"
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if retry_after is None and status == 429:  # no Retry-After: the window's reset time
        retry_after = rate_limit_pause_s(response.headers)
        if retry_after is None:  # something left, but not enough for this request's tokens
            retry_after = parse_duration(response.headers.get(_RESET[1])
                                         or response.headers.get(_RESET[0]))
    by_body = error_class_of(status, _json_or_none(response))
    if by_body is not None:  # out of credit, a content filter: asking again changes nothing
        raise ProviderError(by_body, message, retryable=False, status=status)
    if status in RETRYABLE_STATUSES or status >= 500:
        raise ProviderError(RETRYABLE_STATUSES.get(status, "server_error"), message,
                            retryable=True, status=status, retry_after_s=retry_after)
    if status == 400 and is_context_length(response):
        raise ProviderError("context_length", message, retryable=False, status=status)
    error_class = {401: "auth", 403: "forbidden", 404: "not_found"}.get(status, "bad_request")
    raise ProviderError(error_class, message, retryable=False, status=status)


def json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        # JSON that ends before it is complete is a cut-off body; anything else is garbage.
        cut = isinstance(exc, json.JSONDecodeError) and (
            exc.msg.startswith("Unterminated string") or exc.pos >= len(exc.doc.rstrip()))
        raise ProviderError("truncated_response" if cut else "malformed_response",
                            f"response body is not valid JSON: {exc}",
                            retryable=True, status=response.status_code) from None


def empty_response(message: str, response: httpx.Response) -> ProviderError:
    return ProviderError("empty_response", message, retryable=True, status=response.status_code)


# finish reasons that mean the answer was cut off at the token limit (OpenAI, Anthropic)
TRUNCATED_FINISH = frozenset({"length", "max_tokens"})


def malformed(message: str, response: httpx.Response) -> ProviderError:
    return ProviderError("malformed_response", message, retryable=True,
                         status=response.status_code)


as_count = count  # the generic HTTP provider's name for it
