"""The catalog on disk: SQLite (`.evalgate/catalog.sqlite3`), one row per snapshot and one per
metric, and JSON lines for carrying it between machines (a CI artifact, a committed file).

Why SQLite: appends from parallel runs need transactions, not a file rewritten whole; WAL mode
lets a reader render while a run appends, and `BEGIN IMMEDIATE` with a busy timeout queues two
writers instead of failing one. Snapshot ids are primary keys, so re-adding a result or
re-importing an export skips what is already there. Writing the catalog after a run is best
effort: `append_run` turns any failure into a warning, never into a failed gate.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType

from pydantic import ValidationError

from evalgate.catalog.snapshot import MetricFigure, Snapshot, snapshots_of
from evalgate.results import RunResult

DEFAULT_PATH = ".evalgate/catalog.sqlite3"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  version INTEGER NOT NULL,
  taken_at TEXT NOT NULL,
  run_id TEXT NOT NULL,
  role TEXT NOT NULL,
  config TEXT NOT NULL,
  provider TEXT NOT NULL,
  model TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  params TEXT NOT NULL,
  commit_sha TEXT,
  branch TEXT,
  canary_fingerprint TEXT NOT NULL,
  n INTEGER NOT NULL,
  calls INTEGER NOT NULL,
  samples INTEGER NOT NULL,
  level REAL NOT NULL,
  recommended_for TEXT NOT NULL,
  verdict TEXT,
  evalgate_version TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS snapshots_by_config ON snapshots (fingerprint, taken_at);
CREATE TABLE IF NOT EXISTS metrics (
  snapshot_id TEXT NOT NULL REFERENCES snapshots (id) ON DELETE CASCADE,
  pos INTEGER NOT NULL,
  metric TEXT NOT NULL,
  value REAL,
  low REAL,
  high REAL,
  method TEXT NOT NULL,
  PRIMARY KEY (snapshot_id, metric)
);
"""
_COLUMNS = ("id", "version", "taken_at", "run_id", "role", "config", "provider", "model",
            "fingerprint", "params", "commit_sha", "branch", "canary_fingerprint", "n", "calls",
            "samples", "level", "recommended_for", "verdict", "evalgate_version")


class CatalogError(Exception):
    """A catalog or an export that cannot be used: the message names the file (and line)."""


class Catalog:
    """An open catalog database; a context manager that closes it."""

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = path
        if not create and not path.exists():
            raise CatalogError(f"{path}: no catalog here (a run writes one, or "
                               "`evalgate catalog add` / `import`)")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            self.db.execute("PRAGMA foreign_keys = ON")
            self.db.execute("PRAGMA journal_mode = WAL")
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise CatalogError(f"{path}: catalog schema {version} is newer than this "
                                   f"evalgate's ({SCHEMA_VERSION})")
            if version < SCHEMA_VERSION:
                with self._write():
                    self._create()
                    self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            self.db.close()
            raise

    def _create(self) -> None:
        # statement by statement: executescript() would commit the open transaction first
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                self.db.execute(statement)

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction, taken at once (a second writer waits for it)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def add(self, snapshots: Iterable[Snapshot]) -> int:
        """Append snapshots in one transaction; the number added (duplicates are skipped)."""
        added = 0
        with self._write():
            for s in snapshots:
                row = (s.id, s.version, s.taken_at, s.run_id, s.role, s.config, s.provider,
                       s.model, s.fingerprint, json.dumps(s.params), s.commit, s.branch,
                       s.canary_fingerprint, s.n, s.calls, s.samples, s.level,
                       json.dumps(s.recommended_for), s.verdict, s.evalgate_version)
                marks = ", ".join("?" * len(_COLUMNS))
                cur = self.db.execute(f"INSERT OR IGNORE INTO snapshots ({', '.join(_COLUMNS)})"
                                      f" VALUES ({marks})", row)
                if cur.rowcount == 0:
                    continue
                added += 1
                self.db.executemany(
                    "INSERT INTO metrics (snapshot_id, pos, metric, value, low, high, method) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(s.id, i, name, f.value, f.low, f.high, f.method)
                     for i, (name, f) in enumerate(s.metrics.items())])
        return added

    def snapshots(self) -> list[Snapshot]:
        """Every snapshot, oldest first (by the run's start, then as appended)."""
        metrics: dict[str, dict[str, MetricFigure]] = {}
        for sid, name, value, low, high, method in self.db.execute(
                "SELECT snapshot_id, metric, value, low, high, method FROM metrics "
                "ORDER BY snapshot_id, pos"):
            metrics.setdefault(sid, {})[name] = MetricFigure(value=value, low=low, high=high,
                                                             method=method)
        out = []
        for row in self.db.execute(f"SELECT {', '.join(_COLUMNS)} FROM snapshots "
                                   "ORDER BY taken_at, seq"):
            d = dict(zip(_COLUMNS, row, strict=True))
            d["commit"] = d.pop("commit_sha")
            d["params"] = json.loads(d["params"])
            d["recommended_for"] = json.loads(d["recommended_for"])
            out.append(Snapshot(**d, metrics=metrics.get(d["id"], {})))
        return out

    def __len__(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM snapshots").fetchone()[0])


def export_lines(catalog: Catalog, path: Path) -> int:
    """Write every snapshot as one JSON line, oldest first; the number written."""
    snapshots = catalog.snapshots()
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(s.model_dump_json() + "\n" for s in snapshots)
    path.write_text(text, encoding="utf-8")
    return len(snapshots)


def read_lines(path: Path) -> list[Snapshot]:
    """Every snapshot of an export; the first bad line is an error naming file and line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise CatalogError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{path}: cannot read: {exc}") from None
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(Snapshot.model_validate_json(line))
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(p) for p in error["loc"])
            why = error["msg"] if not where else f"{where}: {error['msg']}"
            raise CatalogError(f"{path}:{number}: not a catalog snapshot: {why}") from None
    return out


def import_lines(catalog: Catalog, path: Path) -> tuple[int, int]:
    """Add an export's snapshots (all or none: a bad line adds nothing); (added, skipped)."""
    snapshots = read_lines(path)
    added = catalog.add(snapshots)
    return added, len(snapshots) - added


def append_run(path: Path, result: RunResult) -> tuple[int, str | None]:
    """After a run: its snapshots appended; (added, None), or (0, a warning) when the catalog
    cannot be written (a read-only disk, a file that is not a database...)."""
    try:
        snapshots = snapshots_of(result)
        with Catalog(path) as catalog:
            return catalog.add(snapshots), None
    except (sqlite3.Error, OSError, CatalogError, ValueError) as exc:
        return 0, f"evalgate catalog: {path} not written ({exc})"
