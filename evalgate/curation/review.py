"""`evalgate review`: a local page where a person labels answers and verifies canaries.

Served by the standard library's threading HTTP server on 127.0.0.1 only, on an ephemeral
port, behind a random per-session token (403 without it). Why the standard library and not
starlette + uvicorn: one local user, three routes, JSON in and out; the package is a pytest
plugin whose runtime dependencies load in every CI run, and a web stack would add several for
a page that `http.server` serves in a few dozen lines.

Everything shown (prompts, answers, judge reasons) is escaped by jinja2's autoescape, and the
page's one script runs under a nonce-only Content-Security-Policy, so an answer that carries
HTML or script renders as text. Writes: labels are appended to `labels/<reviewer>.jsonl`
(never rewritten); reference edits and `verified:` marks go back to the canary YAML through
the round-trip editor (comments, order and formatting kept).
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import subprocess
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from jinja2 import Environment, PackageLoader, select_autoescape

from evalgate.curation.logs import stratified_sample
from evalgate.curation.yamledit import EditError, edit_case
from evalgate.results import Record, RunResult
from evalgate.spec.canaries import CanarySet, Case, case_key
from evalgate.spec.labels import LABELS, Label, answer_hash, append_labels

MAX_BODY = 1 << 20


class ReviewError(ValueError):
    """A request the session refuses (unknown canary or answer, bad field): HTTP 400."""


@dataclass
class Answer:
    config: str
    sample: int
    text: str
    hash: str
    outcome: str
    criteria: list[tuple[str, str, bool, str]]


@dataclass
class Item:
    key: str
    case: Case
    path: Path | None
    answers: list[Answer] = field(default_factory=list)


def outcome(record: Record) -> str:
    if not record.ok:
        return "error"
    if record.hallucination:
        return "hallucination"
    return "pass" if record.passed else "fail"


def audit_sample(records: list[Record], n: int | None, seed: int) -> list[Record]:
    """A proportional stratified sample of answers by outcome and first tag (seeded)."""
    answered = [r for r in records if r.ok]
    return stratified_sample(answered, lambda r: f"{outcome(r)}|{r.tags[:1]}", n, seed)


def reviewer_name(given: str | None, root: Path) -> str:
    """--reviewer, else `git config user.name`, else an error: a label names its person."""
    if given:
        return given
    try:
        out = subprocess.run(["git", "-C", str(root), "config", "user.name"],
                             capture_output=True, text=True, timeout=10)
        name = out.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        name = ""
    if not name:
        raise ReviewError("no reviewer name: pass --reviewer NAME or set git config user.name")
    return name


def build_items(sets: list[CanarySet], result: RunResult, sample: int | None = None,
                seed: int = 0) -> list[Item]:
    """The canaries to review, each with its candidate and baseline answers (a sample of the
    candidate's answers with `sample`)."""
    cases = {case_key(s.name, c.id): (c, s.path) for s in sets for c in s.cases}
    chosen = audit_sample(result.records, sample, seed) if sample else result.records
    keys = list(dict.fromkeys(r.key for r in chosen if r.key in cases))
    picked = {r.record_id for r in chosen}
    items = {k: Item(k, cases[k][0], cases[k][1]) for k in keys}
    for record in [*result.records, *result.baseline_records]:
        item = items.get(record.key)
        if item is None or not record.ok or (record.config == "candidate" and sample
                                             and record.record_id not in picked):
            continue
        item.answers.append(Answer(
            record.config, record.sample, record.text or "", answer_hash(record.text),
            outcome(record), [(c.id, c.check, c.passed, c.detail) for c in record.criteria]))
    return list(items.values())


def _lines(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ReviewError(f"'{name}' must be a list of strings")
    return [v.strip() for v in value if v.strip()]


class ReviewSession:
    """The review's state and its two writes; HTTP-free, so it is tested on its own too."""

    def __init__(self, items: list[Item], labels_dir: Path, reviewer: str) -> None:
        self.items = {i.key: i for i in items}
        self.reviewer = reviewer
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", reviewer).strip("-.") or "reviewer"
        self.labels_path = labels_dir / f"{slug}.jsonl"
        self.token = secrets.token_urlsafe(24)
        self.lock = threading.Lock()

    def _item(self, payload: dict[str, Any]) -> Item:
        item = self.items.get(str(payload.get("canary")))
        if item is None:
            raise ReviewError(f"unknown canary {payload.get('canary')!r}")
        return item

    def label(self, payload: dict[str, Any]) -> dict[str, Any]:
        item = self._item(payload)
        answer = str(payload.get("answer"))
        found = [a for a in item.answers if a.hash == answer]
        if not found:
            raise ReviewError(f"canary {item.key} has no answer with hash {answer!r}")
        if payload.get("label") not in LABELS:
            raise ReviewError(f"label must be one of {', '.join(LABELS)}")
        note = payload.get("note")
        lab = Label(canary=item.key, answer=answer, label=payload["label"],
                    reviewer=self.reviewer, at=now(), config=found[0].config,
                    note=str(note) if note else None)
        with self.lock:
            append_labels(self.labels_path, [lab])
        return {"ok": True, "label": lab.label, "file": self.labels_path.name}

    def save_canary(self, payload: dict[str, Any]) -> dict[str, Any]:
        item = self._item(payload)
        if item.path is None:
            raise ReviewError(f"canary {item.key} has no file")
        facts = _lines(payload.get("facts", []), "facts")
        forbidden = _lines(payload.get("forbidden", []), "forbidden")
        verified = payload.get("verified")
        mark = {"by": self.reviewer, "at": now()} if verified else None
        with self.lock:
            try:
                edit_case(item.path, item.case.id, facts=facts, forbidden=forbidden,
                          verified=mark, unverify=verified is False)
            except EditError as exc:
                raise ReviewError(str(exc)) from None
        item.case.expected.facts, item.case.expected.forbidden = facts, forbidden
        return {"ok": True, "verified": bool(mark)}

    def page(self, nonce: str) -> str:
        env = Environment(loader=PackageLoader("evalgate.curation", "templates"),
                          autoescape=select_autoescape(default=True, default_for_string=True))
        return env.get_template("review.html.j2").render(
            items=list(self.items.values()), labels=LABELS, reviewer=self.reviewer,
            nonce=nonce)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class _Handler(BaseHTTPRequestHandler):
    session: ReviewSession
    server_version = "evalgate-review"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the URL holds the token
        pass

    def _send(self, status: int, body: str, kind: str = "application/json",
              csp: str | None = None) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", f"{kind}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Content-Type-Options", "nosniff")
        if csp:
            self.send_header("Content-Security-Policy", csp)
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self) -> bool:
        query = parse_qs(urlsplit(self.path).query)
        given = self.headers.get("X-Evalgate-Token") or (query.get("token") or [""])[0]
        if hmac.compare_digest(given.encode(), self.session.token.encode()):
            return True
        self._send(403, json.dumps({"error": "403: missing or wrong review token (use the URL "
                                             "that evalgate review printed)"}))
        return False

    def do_GET(self) -> None:
        if not self._authorised():
            return
        if urlsplit(self.path).path != "/":
            self._send(404, json.dumps({"error": "not found"}))
            return
        nonce = secrets.token_urlsafe(16)
        csp = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; "
               "connect-src 'self'; img-src 'none'; base-uri 'none'; form-action 'none'")
        self._send(200, self.session.page(nonce), "text/html", csp)

    def do_POST(self) -> None:
        if not self._authorised():
            return
        route = {"/api/label": self.session.label, "/api/canary": self.session.save_canary}
        action = route.get(urlsplit(self.path).path)
        if action is None:
            self._send(404, json.dumps({"error": "not found"}))
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                raise ReviewError("request body too large")
            payload = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(payload, dict):
                raise ReviewError("send a JSON object")
            self._send(200, json.dumps(action(payload)))
        except (ReviewError, json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
            self._send(400, json.dumps({"error": str(exc)}))


class ReviewServer:
    """The page on 127.0.0.1 (port 0: an ephemeral one), in a background thread."""

    def __init__(self, session: ReviewSession, port: int = 0) -> None:
        handler = type("Handler", (_Handler,), {"session": session})
        self.session = session
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/?token={self.session.token}"

    def start(self) -> ReviewServer:
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self.thread is not None:
            self.thread.join(timeout=10)

    def serve_forever(self) -> None:
        try:
            self.httpd.serve_forever()
        finally:
            self.httpd.server_close()
