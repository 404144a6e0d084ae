"""HTTP/1.1 framing on top of h11: response bytes, status reasons, keep-alive."""

from __future__ import annotations

import json
from typing import Any

import h11

_Headers = list[tuple[bytes, bytes]]
_MAX_BODY = 64 * 1024 * 1024
_READ_CHUNK = 65536


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


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
