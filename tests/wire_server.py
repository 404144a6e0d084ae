"""A small real HTTP server on 127.0.0.1 that answers with bodies a test builds (from the
`openai` and `anthropic` SDKs' own types): the response shapes real servers send, over a real
socket. It counts the requests it had in flight at once; with `slots` it answers only that
many at a time and queues the rest, like llama.cpp's or Ollama's single slot."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Canned:
    """One response: status, JSON body (or raw text), extra headers."""

    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


Responder = Callable[[str, dict[str, Any]], Canned]


class WireServer:
    def __init__(self, responder: Responder, slots: int | None = None,
                 service_s: float = 0.0) -> None:
        self.responder = responder
        self.service_s = service_s  # how long the server works on one request
        self.slots = threading.Semaphore(slots) if slots else None
        self.lock = threading.Lock()
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.in_flight = self.peak = 0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def _serve(self, path: str, request: dict[str, Any]) -> Canned:
        with self.lock:
            self.requests.append((path, request))
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            if self.slots is not None:
                with self.slots:
                    time.sleep(self.service_s)
            elif self.service_s:
                time.sleep(self.service_s)
            return self.responder(path, request)
        finally:
            with self.lock:
                self.in_flight -= 1

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                canned = server._serve(self.path, json.loads(raw or b"{}"))
                body = canned.body if isinstance(canned.body, bytes) else (
                    canned.body.encode() if isinstance(canned.body, str)
                    else json.dumps(canned.body).encode())
                self.send_response(canned.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                for name, value in canned.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        return Handler


@contextmanager
def wire_server(responder: Responder, slots: int | None = None,
                service_s: float = 0.0) -> Iterator[WireServer]:
    server = WireServer(responder, slots, service_s)
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def always(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Responder:
    """A responder that sends the same response to every request."""
    canned = Canned(body, status, headers or {})
    return lambda path, request: canned


def forward_to(base_url: str) -> Responder:
    """A responder that forwards each request to another server (the simulator) and answers
    with its reply: the test sees what the provider sent (the wire server keeps it) and the
    simulator still answers."""
    import httpx

    def respond(path: str, request: dict[str, Any]) -> Canned:
        reply = httpx.post(f"{base_url}{path}", json=request, timeout=5)
        return Canned(reply.json(), reply.status_code)
    return respond
