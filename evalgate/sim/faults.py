"""Provider faults the simulator injects below and above HTTP: resets, stalled bodies,
Retry-After in its several formats, and whether a profile has any fault at all."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import math
import socket
import struct
import time
from datetime import UTC, datetime, timedelta

from evalgate.sim.http import _Headers, _response
from evalgate.spec.sim_profile import SimProfile


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


def _retry_after(value: float) -> bytes:
    return str(int(value) if float(value).is_integer() else value).encode()
