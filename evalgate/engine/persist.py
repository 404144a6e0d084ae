"""Nothing lost, nothing paid twice: the run journal and the response cache.

The journal (`.evalgate/journal/<run key>.jsonl`) gets every finished call as one JSON line the
moment it completes: written to the OS at once (a SIGKILL loses nothing finished), fsync'd in
batches (every JOURNAL_SYNC_S seconds by a background thread, and at the end). Its name is
the run's identity (gate, canaries, model fingerprints, samples, the selected calls), so
`--evalgate-resume` only ever reuses calls of the same run. A torn last line (killed mid-write)
is skipped; the file is then rewritten atomically before new lines are appended. A run that
finishes removes its journal.

The response cache (`.evalgate/cache/responses.sqlite3`) maps a hash of what decides an answer
(provider, model, endpoint, params, a hash of the headers, the API key variable's name, the
full messages, the sample index; never a header's or a key's value) to the answer, its token
counts and the latency measured when it was made. Only successful answers are stored: a failed
call is made again next run. sqlite commits are atomic; files are created 0o600 in 0o700
directories.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from evalgate.engine.planning import PlannedCall
from evalgate.results import Record, atomic_write
from evalgate.spec.config import DEFAULT_BASE_URLS, LoadedModel

CacheMode = Literal["off", "read", "write", "on"]
CACHE_MODES: tuple[str, ...] = ("off", "read", "write", "on")
STATE_DIR = ".evalgate"
JOURNAL_DIR = "journal"
CACHE_DIR = "cache"
CACHE_FILE = "responses.sqlite3"
JOURNAL_VERSION = 1
CACHE_BATCH = 64
JOURNAL_SYNC_S = 0.5


def default_cache_mode(env: Mapping[str, str] = os.environ) -> CacheMode:
    """The cache mode when `--evalgate-cache` is not given: EVALGATE_CACHE if set, else `on`
    for local runs and `off` in CI (CI=true/1): a gate there measures today's model, and CI
    runners rarely keep `.evalgate/` between jobs anyway. ValueError for a bad EVALGATE_CACHE."""
    value = env.get("EVALGATE_CACHE", "").strip().lower()
    if value:
        if value not in CACHE_MODES:
            raise ValueError(f"EVALGATE_CACHE={value!r} is not a cache mode: expected one of "
                             f"{', '.join(CACHE_MODES)}")
        return value  # type: ignore[return-value]
    return "off" if env.get("CI", "").strip().lower() in ("1", "true", "yes") else "on"


# -- private files -------------------------------------------------------------------------


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) as 0o700; tighten it if it already exists."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for p in reversed(missing):
        with contextlib.suppress(FileExistsError):
            p.mkdir(mode=0o700)
    os.chmod(path, 0o700)
    return path


def atomic_write_private(path: Path, data: bytes) -> None:
    """Write a whole file atomically (temp file, fsync, rename) with mode 0o600."""
    atomic_write(path, data, 0o600)


# -- the journal ---------------------------------------------------------------------------


def run_key(fingerprints: dict[str, Any], record_ids: Sequence[str]) -> str:
    """The identity of a run: its fingerprints and exactly which calls it makes."""
    payload = json.dumps({"v": JOURNAL_VERSION, **fingerprints,
                          "calls": sorted(record_ids)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def journal_path(root: Path, key: str) -> Path:
    return root / STATE_DIR / JOURNAL_DIR / f"{key}.jsonl"


def read_journal(path: Path, key: str) -> tuple[list[Record], int]:
    """The records a journal holds and how many lines were unreadable (a torn last line).
    A journal of another run (header mismatch) holds nothing for this one."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    lines = raw.split(b"\n")
    try:
        header = json.loads(lines[0])
    except ValueError:
        return [], len([x for x in lines if x.strip()])
    if not isinstance(header, dict) or header.get("run_key") != key:
        return [], 0
    records, bad = [], 0
    for line in lines[1:]:
        if not line.strip():
            continue
        try:
            records.append(Record.model_validate_json(line))
        except (ValidationError, ValueError):
            bad += 1
    return records, bad


class Journal:
    """Append-only JSONL of finished calls: one os.write per line (a killed process loses no
    finished call), fsync'd by a background thread every JOURNAL_SYNC_S seconds when lines
    were added, and at close - so an fsync never stalls the event loop making the calls."""

    def __init__(self, path: Path, key: str, keep: Sequence[Record] = ()) -> None:
        self.path = path
        private_dir(path.parent)
        header = json.dumps({"evalgate_journal": JOURNAL_VERSION, "run_key": key,
                             "created": datetime.now(UTC).isoformat(timespec="seconds")})
        # Start from a clean, whole file: the header and the still-valid lines of a resumed
        # journal, so a new line is never glued to a torn one.
        body = "".join(r.model_dump_json() + "\n" for r in keep)
        atomic_write_private(path, (header + "\n" + body).encode())
        self.fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND)
        self.dirty = False
        self.lines = len(keep)  # records in the file
        # The first call that could not be journaled (a full disk, a file-size limit): from
        # it on the journal is off and the run goes on; None while every write succeeds.
        self.failed_at: int | None = None
        self.failure: str | None = None
        self._stop = threading.Event()
        self._syncer = threading.Thread(target=self._sync_loop, name="evalgate-journal",
                                        daemon=True)
        self._syncer.start()

    def append(self, record: Record) -> None:
        """Journal one finished call; a write that fails turns the journal off (the lines
        already in it stay resumable), it never stops the run."""
        if self.fd is None or self.failed_at is not None:
            return
        line = (record.model_dump_json() + "\n").encode()
        try:
            written = os.write(self.fd, line)
            if written != len(line):  # a short write: the file is full
                raise OSError(errno.ENOSPC, f"short write ({written} of {len(line)} bytes)")
        except OSError as exc:
            self.failed_at = self.lines + 1
            self.failure = f"{type(exc).__name__}: {exc}"
            return
        self.lines += 1
        self.dirty = True

    def _sync_loop(self) -> None:
        while not self._stop.wait(JOURNAL_SYNC_S):
            self.sync()

    def sync(self) -> None:
        fd = self.fd
        if fd is not None and self.dirty:
            self.dirty = False
            with contextlib.suppress(OSError):  # durability against power loss only
                os.fsync(fd)

    def close(self, remove: bool = False) -> None:
        if self.fd is None:
            return
        self._stop.set()
        self._syncer.join()
        self.dirty = True
        self.sync()
        os.close(self.fd)
        self.fd = None
        if remove:
            self.path.unlink(missing_ok=True)


# -- the response cache --------------------------------------------------------------------


STREAM_FIELDS = ("streamed", "ttft_ms", "itl_ms", "itl_p95_ms", "tokens_per_s")
# What an answer carries beside its text: the tool calls it asked for (graded by tool
# canaries), its cache and reasoning token counts (priced) and the reasoning taken off it.
DETAIL_FIELDS = ("tool_calls", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens",
                 "reasoning_text")


def model_identity(model: LoadedModel) -> dict[str, Any]:
    """What about a model config decides its answers. Headers (an organisation, a beta flag)
    and the API key's account can change an answer too: they count as a hash of the header
    names and values, and the key variable's name, never a value."""
    cfg = model.config
    ident: dict[str, Any] = {"provider": cfg.provider, "model": cfg.model or model.name,
                             "params": cfg.params}
    headers = {**cfg.headers, **(cfg.http.headers if cfg.http is not None else {})}
    if headers:  # only then: a config without headers keeps its cache keys
        pairs = sorted((k.lower(), v) for k, v in headers.items())
        ident["headers_sha256"] = hashlib.sha256(json.dumps(pairs).encode()).hexdigest()
    if cfg.api_key_env:
        ident["api_key_env"] = cfg.api_key_env
    if getattr(model, "router", None) is not None:  # routes, targets and their prices
        ident["router"] = model.fingerprint()
    if cfg.provider in DEFAULT_BASE_URLS:
        ident["base_url"] = (cfg.base_url or DEFAULT_BASE_URLS[cfg.provider]).rstrip("/")
    elif cfg.provider == "http" and cfg.http is not None:
        ident["http"] = cfg.http.model_dump(mode="json", include={
            "url", "method", "body", "text_path", "input_tokens_path", "output_tokens_path"})
    elif cfg.provider == "callable":
        ident["callable"] = cfg.callable
    elif cfg.provider == "sim" and cfg.sim is not None:
        ident["sim"] = cfg.sim.model_dump(mode="json")
    if cfg.stream:  # a streamed answer carries its TTFT: never served from a plain one
        ident["stream"] = True
    return ident


def cache_key(identity: dict[str, Any] | str, call: PlannedCall) -> str:
    """sha256 over the model identity, the full messages and the sample index. The http and
    callable providers see the whole canary (their templates may use any field) and the
    simulator answers by canary key (its X-Evalgate-Case header; two canaries may share a
    prompt), so for them the canary and its key are part of the key too. `identity` may be
    given as identity_text() already."""
    ident = identity if isinstance(identity, str) else identity_text(identity)
    parts = [ident, json.dumps(call.messages, sort_keys=True, separators=(",", ":")),
             str(call.sample)]
    if any(f'"provider":"{p}"' in ident for p in ("http", "callable", "sim")) \
            or '"router":' in ident:  # a router picks its route from the canary's fields
        parts.append(call.entry.key)
        parts.append(json.dumps(call.entry.case.model_dump(mode="json"), sort_keys=True,
                                separators=(",", ":"), default=str))
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def judge_cache_key(identity: str, template: str, case: dict[str, Any], answer: str,
                    instructions: str | None, vote: int) -> str:
    """sha256 of what decides a judge verdict: the judge model, its prompt template, the canary,
    the answer under judgment, the criterion's instructions and the vote index. Not the
    messages: they carry a fresh random fence per call."""
    parts = [identity, template, json.dumps(case, sort_keys=True, separators=(",", ":"),
                                             default=str), answer, instructions or "", str(vote)]
    return hashlib.sha256("\x1fjudge\x1f".join(parts).encode()).hexdigest()


def open_cache(root: Path, mode: str) -> tuple[ResponseCache | None, str | None]:
    """The response cache for a mode (None when off) and why it could not be opened, if so:
    an unusable cache (a read-only checkout, a locked file) costs calls, never the run."""
    if mode == "off":
        return None, None
    try:
        return ResponseCache(cache_path(root).parent, mode), None  # type: ignore[arg-type]
    except (OSError, sqlite3.Error) as exc:
        return None, f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class CacheInfo:
    path: Path
    answers: int
    size_bytes: int
    oldest: str | None  # measured_at of the oldest answer (ISO 8601, UTC)
    newest: str | None


def cache_path(root: Path) -> Path:
    return root / STATE_DIR / CACHE_DIR / CACHE_FILE


def cache_info(root: Path) -> CacheInfo | None:
    """What the response cache under `root` holds; None when there is none. sqlite3.Error
    when the file is not a readable cache."""
    path = cache_path(root)
    if not path.exists():
        return None
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
        try:
            answers, oldest, newest = db.execute(
                "SELECT COUNT(*), MIN(measured_at), MAX(measured_at) FROM answers").fetchone()
        except sqlite3.OperationalError:  # created but never written
            answers, oldest, newest = 0, None, None
    size = sum(p.stat().st_size for p in path.parent.glob(CACHE_FILE + "*"))
    return CacheInfo(path, answers, size, oldest, newest)


def prune_cache(root: Path, older_than: timedelta | None) -> int:
    """Delete the answers measured before now - `older_than` (all of them for None) and give
    the space back; returns how many were deleted. Why: nothing else ever removes an answer,
    and a model name can be re-pointed upstream while its cached answers stay."""
    path = cache_path(root)
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(path, timeout=30, isolation_level=None)) as db:
        try:
            if older_than is None:
                deleted = db.execute("DELETE FROM answers").rowcount
            else:
                cutoff = (datetime.now(UTC) - older_than).isoformat(timespec="seconds")
                deleted = db.execute("DELETE FROM answers WHERE measured_at < ?",
                                     (cutoff,)).rowcount
        except sqlite3.OperationalError:  # no table yet: nothing to delete
            return 0
        db.execute("VACUUM")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return max(deleted, 0)


def identity_text(identity: dict[str, Any]) -> str:
    return json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)


class ResponseCache:
    """One sqlite file of answers by cache key; reads and/or writes as the mode allows."""

    def __init__(self, directory: Path, mode: CacheMode) -> None:
        self.mode = mode
        self.reads = mode in ("read", "on")
        self.writes = mode in ("write", "on")
        private_dir(directory)
        path = directory / CACHE_FILE
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        os.chmod(path, 0o600)
        self.db = sqlite3.connect(path, timeout=30, isolation_level=None,
                                  check_same_thread=False)
        # WAL: a commit appends to the log without an fsync (synchronous=NORMAL), so a batch
        # costs the event loop little; sqlite gives its side files the database file's mode.
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, "
                        "value TEXT NOT NULL, measured_at TEXT NOT NULL)")
        self.pending: list[tuple[str, str, str]] = []

    def get(self, key: str) -> dict[str, Any] | None:
        if not self.reads:
            return None
        row = self.db.execute("SELECT value, measured_at FROM answers WHERE key = ?",
                              (key,)).fetchone()
        if row is None:
            return None
        try:
            value = json.loads(row[0])
        except ValueError:
            return None
        if not isinstance(value, dict) or not isinstance(value.get("text"), str):
            return None
        value["measured_at"] = row[1]
        return value

    def put(self, key: str, record: Record) -> None:
        """Queue a successful answer; errors are never cached."""
        if not self.writes or not record.ok or record.text is None or record.cached \
                or record.answered_by is not None:  # a fallback's answer is not the primary's
            return
        value = {"text": record.text, "finish_reason": record.finish_reason,
                 "input_tokens": record.input_tokens, "output_tokens": record.output_tokens,
                 "usage_estimated": record.usage_estimated, "latency_ms": record.latency_ms,
                 "route": record.route, "model": record.model}
        if record.streamed is not None:  # the stream's timing, measured when it was made
            value.update(record.model_dump(include=set(STREAM_FIELDS)))
        value.update({k: v for k, v in record.model_dump(mode="json", include=set(
            DETAIL_FIELDS)).items() if v not in (None, [])})
        measured = datetime.now(UTC).isoformat(timespec="seconds")
        self.pending.append((key, json.dumps(value), measured))
        if len(self.pending) >= CACHE_BATCH:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        rows, self.pending = self.pending, []
        with contextlib.suppress(sqlite3.Error):  # a busy or read-only cache costs calls only
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("INSERT OR REPLACE INTO answers VALUES (?, ?, ?)", rows)
            self.db.execute("COMMIT")

    def close(self) -> None:
        self.flush()
        self.db.close()


def cached_record(model: LoadedModel, call: PlannedCall, label: str,
                  value: dict[str, Any]) -> Record:
    """A Record for a cached answer: no attempts (no call made), the latency and token counts
    measured when the answer was made, the cost at today's prices (what the answer costs)."""
    entry = call.entry
    tokens_in, tokens_out = value.get("input_tokens"), value.get("output_tokens")
    router = getattr(model, "router", None)
    if router is not None:  # a routed answer is priced by the target that gave it
        model = next((t for t in router.targets() if t.name == value.get("model")), model)
    details = {k: value[k] for k in DETAIL_FIELDS if k in value}
    cost = (model.config.pricing.cost(tokens_in, tokens_out,
                                      details.get("cached_input_tokens") or 0,
                                      details.get("cache_write_tokens") or 0)
            if isinstance(tokens_in, int) and isinstance(tokens_out, int) else None)
    return Record(key=entry.key, set=entry.set_name, case_id=entry.case.id, sample=call.sample,
                  config=label, tags=entry.case.tags, ok=True, text=value["text"],
                  finish_reason=value.get("finish_reason"), input_tokens=tokens_in,
                  output_tokens=tokens_out,
                  usage_estimated=bool(value.get("usage_estimated")), cost_usd=cost,
                  latency_ms=value.get("latency_ms"), route=value.get("route"),
                  model=value.get("model"), cached=True,
                  cached_at=value.get("measured_at"),
                  **{k: value[k] for k in STREAM_FIELDS if k in value}, **details)


# -- the wrapper around the executor -------------------------------------------------------


class Recorder:
    """Stands in for an Executor in a job step: makes the call through it, then hands the
    finished record to `sink` (journal, cache). The executor's hot path is untouched."""

    def __init__(self, inner: Any, sink: Callable[[Any, PlannedCall, Record], None]) -> None:
        self.inner = inner
        self.sink = sink

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def call(self, client: Any, call: PlannedCall, label: str, *args: Any,
                   **kwargs: Any) -> Record:
        record = await self.inner.call(client, call, label, *args, **kwargs)
        self.sink(self.inner, call, record)
        return record


class Replay:
    """Stands in for an Executor in a job step whose answer is already known (journal, cache):
    the step stays in its job, so the runner (and a sequential look) sees every canary, but no
    call is made."""

    def __init__(self, inner: Any, record: Record, on_replay: Callable[[Record], None]
                 ) -> None:
        self.inner = inner
        self.record = record
        self.on_replay = on_replay  # counts it as used: a sequential stop may skip the step

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def call(self, client: Any, call: PlannedCall, label: str, *args: Any,
                   **kwargs: Any) -> Record:
        self.on_replay(self.record)
        return self.record


@dataclass
class Persistence:
    """Journal and cache for one run; what make_calls reused, and whether it was cut short."""

    root: Path
    cache_mode: CacheMode = "off"
    resume: bool = False
    partial: bool = False
    planned: int = 0
    from_cache: int = 0
    from_journal: int = 0
    journal: Any = None  # the finished calls' journal, kept until finish()
    # (config, record id) of answers the journal gave: their attempts were made by another run
    reused: set[tuple[str, str]] = field(default_factory=set)
    unreadable_lines: int = 0
    resumed_missing: bool = False  # --evalgate-resume given, but no journal of this run
    replaced_journal: bool = False  # an interrupted run's journal, not resumed, started over
    cache_error: str | None = None  # the cache could not be opened: the run went without
    journal_error: str | None = None  # the journal could not be written: no resume possible
    journal_failed_at: int | None = None  # the first call a failed write left out of it
    journal_failure: str | None = None  # ... and why

    def finish(self) -> None:
        """The whole run is done (grading, judge, load, result): its journal is not needed.
        Until then a Ctrl-C or a crash keeps it, so --evalgate-resume loses no answer."""
        if self.journal is not None:
            self.journal.path.unlink(missing_ok=True)
            self.journal = None

    def run(self, jobs: Sequence[Sequence[tuple[Any, PlannedCall, str]]], key: str,
            runner: Callable[[list[list[Any]]], Any]) -> list[list[Record]]:
        """Run `jobs` (lists of (executor, call, label) steps) with `runner` (a function over
        the jobs, journaled and cached answers replayed in place as `Replay` steps): journal
        and cache new answers as they finish. Ctrl-C: the calls in flight are cancelled, the
        journal is flushed and what finished is returned with `partial` set."""
        self.planned = sum(len(job) for job in jobs)
        path = journal_path(self.root, key)
        old: list[Record] = []
        if self.resume:
            old, self.unreadable_lines = read_journal(path, key)
            self.resumed_missing = not path.exists()
        else:
            self.replaced_journal = path.exists()
        reuse = {(r.config, r.record_id): r for r in old if r.ok}
        journal: Journal | None = None
        try:
            journal = Journal(path, key, list(reuse.values()))
        except OSError as exc:  # e.g. a read-only checkout: the run goes on, unjournaled
            self.journal_error = f"{type(exc).__name__}: {exc}"
        cache, self.cache_error = open_cache(self.root, self.cache_mode)
        identities: dict[int, str] = {}
        keys: dict[tuple[int, str], str] = {}  # computed while planning, looked up in sink

        def key_of(executor: Any, call: PlannedCall) -> str:
            slot = (id(executor), call.record_id)
            found = keys.get(slot)
            if found is None:
                ident = identities.get(id(executor))
                if ident is None:
                    ident = identities[id(executor)] = identity_text(
                        model_identity(executor.model))
                found = keys[slot] = cache_key(ident, call)
            return found

        done: dict[tuple[str, str], Record] = {}

        def sink(executor: Any, call: PlannedCall, record: Record) -> None:
            done[(record.config, record.record_id)] = record
            if journal is not None:
                journal.append(record)
            if cache is not None and cache.writes and record.ok:
                cache.put(key_of(executor, call), record)

        def from_journal(record: Record) -> None:
            done[(record.config, record.record_id)] = record
            self.from_journal += 1
            self.reused.add((record.config, record.record_id))

        def from_cache(record: Record) -> None:
            done[(record.config, record.record_id)] = record
            self.from_cache += 1
            if journal is not None:
                journal.append(record)

        finished = False
        try:
            todo: list[list[Any]] = []
            for job in jobs:
                steps = []
                for executor, call, label in job:
                    found = reuse.get((label, call.record_id))
                    if found is not None:
                        if cache is not None:  # the killed run may not have stored it there
                            cache.put(key_of(executor, call), found)
                        steps.append((Replay(executor, found, from_journal), call, label))
                        continue
                    # The key is computed here, before the run, also for a cache that only
                    # writes: the sink on the event loop then only looks it up.
                    key = key_of(executor, call) if cache is not None else ""
                    value = cache.get(key) if cache is not None else None
                    if value is not None:
                        record = cached_record(executor.model, call, label, value)
                        steps.append((Replay(executor, record, from_cache), call, label))
                        continue
                    steps.append((Recorder(executor, sink), call, label))
                if steps:
                    todo.append(steps)
            if todo:  # also when all replay: a sequential run still takes its looks
                for job in runner(todo) or []:  # + calls an early stop left unmade
                    for record in job:
                        done.setdefault((record.config, record.record_id), record)
            finished = True
        except KeyboardInterrupt:
            self.partial = True
        finally:
            if journal is not None:  # a finished run needs no journal; any other keeps it
                journal.close()
                self.journal_failed_at, self.journal_failure = journal.failed_at, journal.failure
                if finished:  # removed by finish(), once grading and reports are done too
                    self.journal = journal
            if cache is not None:
                cache.close()
        return [[done[(label, call.record_id)] for _, call, label in job
                 if (label, call.record_id) in done] for job in jobs]
