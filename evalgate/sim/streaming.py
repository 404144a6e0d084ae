"""Streamed answers: the simulator's time to first token, output rate and mid-stream faults,
written as OpenAI SSE chunks, Anthropic Messages events or NDJSON lines (`/generate`).

A stream is sent with chunked transfer encoding on a keep-alive connection, one piece of the
answer (about a word) per event, paced on an absolute schedule so that sleeps never drift:
the first content piece at TTFT, each later one when the tokens before it are due at the
profile's rate. Pieces that fall due together go out in one write.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any

from evalgate.sim.counters import SimStats
from evalgate.sim.http import _REASONS, _dumps, _Headers
from evalgate.sim.wire import _Call, _Result
from evalgate.spec.sim_profile import SimProfile

_PIECE = re.compile(r"\s*\S+\s*|\s+")


@dataclass(frozen=True, slots=True)
class StreamDraws:
    """The streaming draws of one request: the TTFT's normal deviate and its mid-stream fault
    (cut, error or stall; None for a clean stream)."""

    z_ttft: float = 0.0
    fault: str | None = None


def stream_draws(profile: SimProfile, faults: random.Random | None) -> StreamDraws:
    """Drawn after every older fault, so profiles without streaming keep their outcomes."""
    if faults is None:
        return StreamDraws()
    z = faults.gauss(0.0, 1.0)
    fault = None
    for name, rate in (("cut", profile.stream_cut_rate), ("error", profile.stream_error_rate),
                       ("stall", profile.stream_stall_rate)):
        if faults.random() < rate and fault is None:
            fault = name
    return StreamDraws(z, fault)


def has_stream_faults(p: SimProfile) -> bool:
    return (p.ttft_sigma > 0 or p.stream_cut_rate > 0 or p.stream_error_rate > 0
            or p.stream_stall_rate > 0)


def timing(profile: SimProfile, z: float, spiked: bool, draws: StreamDraws
           ) -> tuple[float, float]:
    """Seconds to the first token and per output token after it. Without `ttft_ms` the
    latency draw is the TTFT; without `tokens_per_s`, `ms_per_output_token` is the pace. A
    request that does not stream waits first + per_token x tokens, as the stream would."""
    if profile.ttft_ms is not None:
        first_ms = profile.ttft_ms * math.exp(profile.ttft_sigma * draws.z_ttft)
    else:
        first_ms = profile.latency_ms
        if profile.latency_sigma > 0:
            first_ms *= math.exp(profile.latency_sigma * z)
    if spiked:
        first_ms += profile.spike_ms
    per_token = (1.0 / profile.tokens_per_s if profile.tokens_per_s is not None
                 else profile.ms_per_output_token / 1000.0)
    return first_ms / 1000.0, per_token


def _sse(data: Any, event: str | None = None) -> bytes:
    body = data if isinstance(data, bytes) else _dumps(data)
    return (b"event: %s\n" % event.encode() if event else b"") + b"data: " + body + b"\n\n"


class _Format:
    """One wire format of a stream: what goes before, with and after the answer's pieces."""

    content_type = b"text/event-stream"

    def head(self, call: _Call, res: _Result, profile: SimProfile) -> list[bytes]:
        return []

    def piece(self, call: _Call, res: _Result, text: str) -> bytes:
        raise NotImplementedError

    def tail(self, call: _Call, res: _Result, profile: SimProfile) -> list[bytes]:
        raise NotImplementedError

    def error(self, kind: str) -> bytes:
        raise NotImplementedError


class _OpenAIStream(_Format):
    def _chunk(self, call: _Call, res: _Result, delta: dict[str, Any],
               finish: str | None = None) -> dict[str, Any]:
        return {"id": f"chatcmpl-sim-{res.n}", "object": "chat.completion.chunk",
                "model": call.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    def head(self, call: _Call, res: _Result, profile: SimProfile) -> list[bytes]:
        return [_sse(self._chunk(call, res, {"role": "assistant", "content": ""}))]

    def piece(self, call: _Call, res: _Result, text: str) -> bytes:
        return _sse(self._chunk(call, res, {"content": text}))

    def tail(self, call: _Call, res: _Result, profile: SimProfile) -> list[bytes]:
        out = [_sse(self._chunk(call, res, {}, "length" if res.truncated else "stop"))]
        if profile.report_usage and call.include_usage:
            out.append(_sse({"id": f"chatcmpl-sim-{res.n}", "object": "chat.completion.chunk",
                             "model": call.model, "choices": [],
                             "usage": {"prompt_tokens": res.prompt_tokens,
                                       "completion_tokens": res.completion_tokens,
                                       "total_tokens": res.prompt_tokens
                                       + res.completion_tokens}}))
        return [*out, _sse(b"[DONE]")]

    def error(self, kind: str) -> bytes:
        return _sse({"error": {"message": f"simulated mid-stream {kind}", "type": kind}})


class _AnthropicStream(_Format):
    def head(self, call: _Call, res: _Result, profile: SimProfile) -> list[bytes]:
        usage = {"input_tokens": res.prompt_tokens, "output_tokens": 1} \
            if profile.report_usage else {}
        message = {"id": f"msg_sim_{res.n}", "type": "message", "role": "assistant",
                   "model": call.model, "content": [], "stop_reason": None, "usage": usage}
        return [_sse({"type": "message_start", "message": message}, "message_start"),
                _sse({"type": "content_block_start", "index": 0,
                      "content_block": {"type": "text", "text": ""}}, "content_block_start"),
                _sse({"type": "ping"}, "ping")]

    def piece(self, call: _Call, res: _Result, text: str) -> bytes:
        return _sse({"type": "content_block_delta", "index": 0,
                     "delta": {"type": "text_delta", "text": text}}, "content_block_delta")

    def tail(self, call: _Call, res: _Result, profile: SimProfile) -> list[bytes]:
        delta: dict[str, Any] = {"type": "message_delta", "delta": {
            "stop_reason": "max_tokens" if res.truncated else "end_turn", "stop_sequence": None}}
        if profile.report_usage:
            delta["usage"] = {"output_tokens": res.completion_tokens}
        return [_sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
                _sse(delta, "message_delta"), _sse({"type": "message_stop"}, "message_stop")]

    def error(self, kind: str) -> bytes:
        return _sse({"type": "error", "error": {"type": kind, "message":
                                                f"simulated mid-stream {kind}"}}, "error")


class _NdjsonStream(_Format):
    """`/generate`: one JSON object a line, `{"text": ...}`, then `{"done": true, "usage"}`."""

    content_type = b"application/x-ndjson"

    def piece(self, call: _Call, res: _Result, text: str) -> bytes:
        return _dumps({"text": text}) + b"\n"

    def tail(self, call: _Call, res: _Result, profile: SimProfile) -> list[bytes]:
        done: dict[str, Any] = {"done": True}
        if profile.report_usage:
            done["usage"] = {"in": res.prompt_tokens, "out": res.completion_tokens}
        return [_dumps(done) + b"\n"]

    def error(self, kind: str) -> bytes:
        return _dumps({"error": {"type": kind, "message": f"simulated mid-stream {kind}"}}) \
            + b"\n"


FORMATS: dict[str, _Format] = {"/v1/chat/completions": _OpenAIStream(),
                               "/v1/messages": _AnthropicStream(), "/generate": _NdjsonStream()}


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


# When the connection handler read the first bytes of the request being answered: the server's
# own TTFT runs from there, so it includes the server's parsing and answer-building time (a
# client sees that time too) and leaves only transit and scheduling to the client's error.
REQUEST_ARRIVED: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "evalgate_sim_request_arrived", default=None)


@dataclass
class StreamPlan:
    """A streamed 200 the connection handler writes: what to send, when, and which fault."""

    route: str
    call: _Call
    result: _Result
    profile: SimProfile
    first_s: float
    per_token_s: float
    fault: str | None
    case: str
    arrived: float = field(default_factory=lambda: REQUEST_ARRIVED.get() or time.monotonic())

    async def write(self, writer: asyncio.StreamWriter, headers: _Headers, keep_alive: bool,
                    stats: SimStats) -> None:
        """Send the stream; the request counts as in flight until its last byte."""
        stats.enter()
        try:
            await self._write(writer, headers, keep_alive, stats)
        finally:
            stats.leave()

    async def _write(self, writer: asyncio.StreamWriter, headers: _Headers, keep_alive: bool,
                     stats: SimStats) -> None:
        fmt, call, res, profile = FORMATS[self.route], self.call, self.result, self.profile
        lines = [b"HTTP/1.1 200 %s\r\ncontent-type: %s\r\nserver: evalgate-sim\r\n"
                 b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n"
                 % (_REASONS[200], fmt.content_type)]
        lines.extend(b"%s: %s\r\n" % kv for kv in headers)
        if not keep_alive:
            lines.append(b"connection: close\r\n")
        lines.append(b"\r\n")
        lines.extend(_chunked(e) for e in fmt.head(call, res, profile))
        writer.write(b"".join(lines))
        await writer.drain()
        pieces = _PIECE.findall(res.answer) or [res.answer]
        half = len(pieces) // 2 if self.fault else len(pieces)
        loop = asyncio.get_running_loop()
        start = loop.time() + self.first_s
        seconds_per_char = self.per_token_s / profile.chars_per_token
        dues, chars = [], -len(pieces[0])
        for piece in pieces:  # piece k is due once the characters after the first are
            chars += len(piece)
            dues.append(start + chars * seconds_per_char)
        i = 0
        while i < half:
            now = loop.time()
            if dues[i] > now:
                await asyncio.sleep(dues[i] - now)
                now = loop.time()
            batch = []
            while i < half and dues[i] <= now:
                batch.append(_chunked(fmt.piece(call, res, pieces[i])))
                i += 1
            writer.write(b"".join(batch))
            if i == len(batch):  # the first content piece is out: the server's own TTFT
                stats.record_stream(self.case, (time.monotonic() - self.arrived) * 1000)
            await writer.drain()
        if self.fault == "stall":  # no chunk for stall_s, then the rest of the answer
            await asyncio.sleep(profile.stall_s)
            writer.write(b"".join(_chunked(fmt.piece(call, res, p)) for p in pieces[half:]))
        if self.fault == "error":
            writer.write(_chunked(fmt.error(profile.stream_error_type)))
        if self.fault in (None, "stall"):
            writer.write(b"".join(_chunked(e) for e in fmt.tail(call, res, profile)))
        writer.write(b"0\r\n\r\n")  # a cut stream ends cleanly too, just without its end event
        await writer.drain()


__all__ = ["FORMATS", "REQUEST_ARRIVED", "StreamDraws", "StreamPlan", "has_stream_faults",
           "stream_draws", "timing"]
