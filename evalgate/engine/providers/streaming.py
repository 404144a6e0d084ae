"""Streamed calls (`stream: true`): the body read incrementally with httpx's streaming API,
decoded per protocol (OpenAI SSE chunks, Anthropic Messages events, a generic endpoint's SSE
or NDJSON), and timed on the client's clock: time to first content token, the gaps between
content chunks and the output rate after the first token.

A stream that ends before its end event (`[DONE]`, `message_stop`, the `done_path`) is
`truncated_stream` and one that sends no chunk for `stream_idle_timeout_s` is
`stalled_stream`; both are retried. An error event is classified by its type. A partial
answer is never returned as a reply, so it is never graded.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from evalgate.engine.providers.base import (
    HttpRequest,
    ProviderError,
    Reply,
    as_count,
    raise_for_status,
    rate_limit_pause_s,
)
from evalgate.engine.providers.generic_http import lookup
from evalgate.spec.endpoint import HttpStream


@dataclass(frozen=True)
class StreamReply(Reply):
    """A reply with its stream timing (seconds, client clock). `streamed` is False when the
    server ignored `stream` and answered with plain JSON: then there is no timing."""

    streamed: bool = False
    ttft_s: float | None = None
    gaps_s: tuple[float, ...] = ()
    span_s: float = 0.0  # first content chunk -> end of the stream
    after_first: float = 0.0  # share of the answer's characters after the first chunk


def stream_error(err: Any) -> ProviderError:
    """An error event inside a stream, classified by its type (or code) like a status."""
    if isinstance(err, dict):
        kind = str(err.get("type") or err.get("code") or "")
        message = str(err.get("message") or kind)[:300]
    else:
        kind = message = str(err)[:300]
    low = kind.lower()
    if "overloaded" in low:
        error_class, retryable = "overloaded", True
    elif "rate_limit" in low:
        error_class, retryable = "rate_limited", True
    elif "context_length" in low:
        error_class, retryable = "context_length", False
    elif "invalid_request" in low or "authentication" in low or "permission" in low:
        error_class, retryable = "bad_request", False
    elif "server" in low or "api_error" in low or "timeout" in low:
        error_class, retryable = "server_error", True
    else:
        error_class, retryable = "stream_error", True
    return ProviderError(error_class, f"error event mid-stream ({kind or 'untyped'}): {message}",
                         retryable=retryable, status=200)


class SseParser:
    """Server-sent events, fed bytes as they arrive: (event name, data) per dispatched event."""

    def __init__(self) -> None:
        self.buf = b""
        self.event: str | None = None
        self.data: list[str] = []

    def feed(self, chunk: bytes) -> list[tuple[str | None, str]]:
        *lines, self.buf = (self.buf + chunk).split(b"\n")
        out = []
        for raw in lines:
            line = raw.rstrip(b"\r")
            if not line:
                if self.data:
                    out.append((self.event, "\n".join(self.data)))
                self.event, self.data = None, []
                continue
            name, _, value = line.partition(b":")
            value = value[1:] if value.startswith(b" ") else value
            if name == b"data":
                self.data.append(value.decode("utf-8", "replace"))
            elif name == b"event":
                self.event = value.decode("utf-8", "replace")
        return out


class NdjsonParser:
    """One JSON document a line."""

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, chunk: bytes) -> list[tuple[str | None, str]]:
        *lines, self.buf = (self.buf + chunk).split(b"\n")
        return [(None, line.decode("utf-8", "replace")) for line in lines if line.strip()]


def _json(data: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        raise ProviderError("malformed_response", f"a stream chunk is not JSON: {data[:120]!r}",
                            retryable=True, status=200) from None


class Decoder:
    """One protocol's events -> the answer's pieces, usage, finish reason, and the end."""

    end_event = "the end event"

    def __init__(self) -> None:
        self.done = False
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.finish_reason: str | None = None

    def feed(self, event: str | None, data: str) -> str | None:
        raise NotImplementedError


class OpenAIDecoder(Decoder):
    end_event = "data: [DONE]"

    def feed(self, event: str | None, data: str) -> str | None:
        if data.strip() == "[DONE]":
            self.done = True
            return None
        body = _json(data)
        if not isinstance(body, dict):
            return None
        if "error" in body:
            raise stream_error(body["error"])
        usage = body.get("usage")
        if isinstance(usage, dict):
            self.input_tokens = as_count(usage.get("prompt_tokens"))
            self.output_tokens = as_count(usage.get("completion_tokens"))
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return None
        if choices[0].get("finish_reason"):
            self.finish_reason = choices[0]["finish_reason"]
        delta = choices[0].get("delta")
        content = delta.get("content") if isinstance(delta, dict) else None
        return content if isinstance(content, str) else None


class AnthropicDecoder(Decoder):
    end_event = "message_stop"

    def feed(self, event: str | None, data: str) -> str | None:
        body = _json(data)
        kind = (body.get("type") if isinstance(body, dict) else None) or event
        if event == "error" or kind == "error":
            raise stream_error(body.get("error") if isinstance(body, dict) else body)
        if kind == "message_start" and isinstance(body.get("message"), dict):
            usage = body["message"].get("usage")
            if isinstance(usage, dict):
                self.input_tokens = as_count(usage.get("input_tokens"))
        elif kind == "content_block_delta" and isinstance(body.get("delta"), dict):
            delta = body["delta"]
            if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
                return str(delta["text"])
        elif kind == "message_delta":
            usage, delta = body.get("usage"), body.get("delta")
            if isinstance(usage, dict):
                self.output_tokens = as_count(usage.get("output_tokens"))
            if isinstance(delta, dict) and delta.get("stop_reason"):
                self.finish_reason = delta["stop_reason"]
        elif kind == "message_stop":
            self.done = True
        return None


class GenericDecoder(Decoder):
    """A generic endpoint: the text at `text_path` in each chunk; without `done_path` the end
    of the body (or SSE's `[DONE]`) is the end of the answer."""

    def __init__(self, spec: HttpStream) -> None:
        super().__init__()
        self.spec = spec
        self.end_event = f"a chunk with {spec.done_path!r}"

    def feed(self, event: str | None, data: str) -> str | None:
        if data.strip() == "[DONE]":
            self.done = True
            return None
        body = _json(data)
        if event == "error" or (isinstance(body, dict) and "error" in body):
            raise stream_error(body.get("error") if isinstance(body, dict) else body)
        spec = self.spec
        if spec.input_tokens_path and lookup(body, spec.input_tokens_path) is not None:
            self.input_tokens = as_count(lookup(body, spec.input_tokens_path))
        if spec.output_tokens_path and lookup(body, spec.output_tokens_path) is not None:
            self.output_tokens = as_count(lookup(body, spec.output_tokens_path))
        if spec.done_path and lookup(body, spec.done_path):
            self.done = True
        text = lookup(body, spec.text_path)
        return text if isinstance(text, str) else None


def _media_type(response: httpx.Response) -> str:
    return response.headers.get("content-type", "").split(";")[0].strip().lower()


class StreamingProvider:
    """Wraps a provider: the same request asking to stream, the answer read as it arrives."""

    def __init__(self, inner: Any, decoder: Callable[[], Decoder], *, sse: bool = True,
                 idle_s: float = 30.0, body: dict[str, Any] | None = None,
                 needs_end: bool = True) -> None:
        self.inner = inner
        self.decoder = decoder
        self.sse = sse
        self.idle_s = idle_s
        self.body = body or {}
        self.needs_end = needs_end

    def build(self, call: Any) -> HttpRequest:
        request = self.inner.build(call)
        body = {**request.json, **self.body} if isinstance(request.json, dict) else request.json
        accept = "text/event-stream" if self.sse else "application/x-ndjson"
        return HttpRequest(request.method, request.url, {**request.headers, "accept": accept},
                           body)

    def parse(self, response: httpx.Response) -> Reply:
        return self.inner.parse(response)

    async def send(self, client: httpx.AsyncClient, call: Any, timeout_s: float,
                   in_body: list[bool], pause: Callable[[float], None]) -> StreamReply:
        """One attempt: send, then read the stream (or a plain JSON answer) as it comes."""
        request = self.build(call)
        sent = [time.perf_counter()]

        async def trace(event: str, info: dict[str, Any]) -> None:
            if event.endswith("send_request_body.complete"):  # the request is on the wire
                sent[0] = time.perf_counter()

        response = await client.send(
            client.build_request(request.method, request.url, headers=request.headers,
                                 json=request.json, timeout=timeout_s,
                                 extensions={"trace": trace}), stream=True)
        in_body[0] = True  # headers are in: a fault from here on is mid-body
        try:
            wait = rate_limit_pause_s(response.headers)
            if wait is not None:
                pause(wait)
            if response.status_code >= 300 or (self.sse and
                                               _media_type(response) == "application/json"):
                await response.aread()  # an error, or a server that ignored `stream`
                reply = self.parse(response)
                return StreamReply(reply.text, reply.input_tokens, reply.output_tokens,
                                   reply.finish_reason)
            return await self._read(response, sent[0])
        finally:
            await response.aclose()

    async def _read(self, response: httpx.Response, sent: float) -> StreamReply:
        raise_for_status(response)
        parser = SseParser() if self.sse else NdjsonParser()
        decoder = self.decoder()
        times: list[float] = []
        texts: list[str] = []
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.idle_s) as idle:
                async for chunk in response.aiter_bytes():
                    now = time.perf_counter()
                    idle.reschedule(loop.time() + self.idle_s)
                    for event, data in parser.feed(chunk):
                        text = decoder.feed(event, data)
                        if text:
                            times.append(now)
                            texts.append(text)
        except (TimeoutError, httpx.TimeoutException):
            raise ProviderError("stalled_stream", f"no stream chunk for {self.idle_s:g}s after "
                                f"{len(texts)} content chunk(s)", retryable=True,
                                status=response.status_code) from None
        except (httpx.RemoteProtocolError, httpx.ReadError, ConnectionError) as exc:
            raise ProviderError("truncated_stream", f"{type(exc).__name__}: the connection "
                                f"closed mid-stream after {len(texts)} content chunk(s)",
                                retryable=True, status=response.status_code) from None
        end = time.perf_counter()
        if self.needs_end and not decoder.done:
            raise ProviderError("truncated_stream", f"the stream ended without "
                                f"{decoder.end_event} after {len(texts)} content chunk(s)",
                                retryable=True, status=response.status_code)
        if not texts:
            raise ProviderError("empty_response", "the stream carried no content",
                                retryable=True, status=response.status_code)
        text = "".join(texts)
        return StreamReply(text, decoder.input_tokens, decoder.output_tokens,
                           decoder.finish_reason, streamed=True, ttft_s=times[0] - sent,
                           gaps_s=tuple(b - a for a, b in itertools.pairwise(times)),
                           span_s=end - times[0],
                           after_first=1.0 - len(texts[0]) / len(text))


def stream_fields(reply: Reply, tokens_out: int) -> dict[str, Any]:
    """The Record fields of a streamed reply (none for a call that was not asked to stream):
    TTFT, mean and p95 inter-chunk gap, and output tokens after the first per second."""
    if not isinstance(reply, StreamReply):
        return {}
    if not reply.streamed:
        return {"streamed": False}
    gaps = reply.gaps_s
    p95 = None
    if len(gaps) >= 2:
        p95 = statistics.quantiles(gaps, n=20, method="inclusive")[18] * 1000
    elif gaps:
        p95 = gaps[0] * 1000
    rate = tokens_out * reply.after_first / reply.span_s if reply.span_s > 0 else None
    return {"streamed": True, "ttft_ms": (reply.ttft_s or 0.0) * 1000,
            "itl_ms": statistics.fmean(gaps) * 1000 if gaps else None, "itl_p95_ms": p95,
            "tokens_per_s": rate if rate and gaps else None}


def streaming(provider: Any, kind: str, idle_s: float, http: HttpStream | None = None
              ) -> StreamingProvider:
    """The streaming form of a built provider, by its wire protocol."""
    if kind == "anthropic":
        return StreamingProvider(provider, AnthropicDecoder, idle_s=idle_s,
                                 body={"stream": True})
    if kind == "http":
        spec = http or HttpStream()
        return StreamingProvider(provider, lambda: GenericDecoder(spec),
                                 sse=spec.format == "sse", idle_s=idle_s,
                                 needs_end=spec.done_path is not None)
    return StreamingProvider(provider, OpenAIDecoder, idle_s=idle_s, body={
        "stream": True, "stream_options": {"include_usage": True}})
