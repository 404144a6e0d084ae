"""Reports rendered from a run result: HTML, JUnit XML, Markdown (JSON is the result itself)."""

from __future__ import annotations

import ctypes
import functools
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evalgate.results import (
    RESULT_FILE,
    RunResult,
    atomic_write,
    result_bytes,
    sync_dir,
    write_synced,
)

DEFAULT_NAMES = {"html": "evalgate.html", "junit": "evalgate.xml", "markdown": "evalgate.md"}


def write_text(path: Path, text: str) -> Path:
    """Write atomically, so a CI step never uploads half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text.encode("utf-8"))
    return path


def write_reports(result: RunResult, *, html: Path | None = None, junit: Path | None = None,
                  markdown: Path | None = None, step_summary: bool = False) -> list[Path]:
    """Render and write the requested formats; returns the files written. With
    `step_summary`, the Markdown is also appended to `$GITHUB_STEP_SUMMARY` when it is set."""
    from evalgate.report.html import render_html
    from evalgate.report.junit import render_junit
    from evalgate.report.markdown import append_step_summary, render_markdown

    written = []
    if html is not None:
        written.append(write_text(html, render_html(result)))
    if junit is not None:
        written.append(write_text(junit, render_junit(result)))
    if markdown is not None or step_summary:
        md = render_markdown(result, html_name=html.name if html is not None else None)
        if markdown is not None:
            written.append(write_text(markdown, md))
        if step_summary:
            append_step_summary(md)
    return written


def write_all(result: RunResult, folder: Path, step_summary: bool = False,
              with_result: bool = False) -> list[Path]:
    """Every report (and, `with_result`, the result itself) into `folder` as one set: written
    into a fresh temporary directory beside it, then swapped in, so a kill or a CI cancel
    leaves the previous set or this one, never a mix (see publish_set)."""
    from evalgate.report.html import render_html
    from evalgate.report.junit import render_junit
    from evalgate.report.markdown import append_step_summary, render_markdown

    md = render_markdown(result, html_name=DEFAULT_NAMES["html"])
    files: dict[str, Callable[[], bytes]] = {RESULT_FILE: lambda: result_bytes(result)} \
        if with_result else {}
    files[DEFAULT_NAMES["html"]] = lambda: render_html(result).encode("utf-8")
    files[DEFAULT_NAMES["junit"]] = lambda: render_junit(result).encode("utf-8")
    files[DEFAULT_NAMES["markdown"]] = md.encode
    written = publish_set(folder, files)
    if step_summary:
        append_step_summary(md)
    return [p for p in written if p.name != RESULT_FILE]


def publish_set(folder: Path, files: dict[str, Callable[[], bytes]]) -> list[Path]:
    """Replace `folder`'s files named in `files` (name -> a function making its content, called
    in order) as one set; its other files stay.

    The set is built in a fresh directory beside `folder` (same file system; its name carries
    this process's id), each file fsync'd, the other files of `folder` hard-linked in, and the
    two directories are then exchanged in one step (renameat2 RENAME_EXCHANGE; where that is
    missing, two renames, between which `folder` is briefly absent but never mixed). A folder
    that holds directories (e.g. the project root) cannot be swapped: its files are then
    replaced one by one, each atomically."""
    folder = folder.absolute()
    folder.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(folder)
    staging = folder.with_name(f".{folder.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    os.mkdir(staging)  # the umask decides its mode, as for any report folder
    try:
        for name, make in files.items():
            write_synced(staging / name, make())
        if folder.exists() and not _carry_over(folder, staging, set(files)):
            for name in files:
                os.replace(staging / name, folder / name)
            sync_dir(folder)
        else:
            _swap_in(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [folder / name for name in files]


def _carry_over(folder: Path, staging: Path, replaced: set[str]) -> bool:
    """Hard-link (or copy) `folder`'s other files into the new set; False when `folder`
    holds anything but files, so it cannot be swapped as a whole."""
    entries = list(os.scandir(folder))
    if any(not e.is_file(follow_symlinks=False) and not e.is_symlink() for e in entries):
        return False
    for entry in entries:
        if entry.name in replaced:
            continue
        target = staging / entry.name
        if entry.is_symlink():
            os.symlink(os.readlink(entry.path), target)
            continue
        try:
            os.link(entry.path, target)
        except OSError:
            shutil.copy2(entry.path, target)
    return True


def _swap_in(staging: Path, folder: Path) -> None:
    """Put the staging directory at `folder`; the previous set ends at `staging` (removed by
    the caller)."""
    if not folder.exists():
        os.rename(staging, folder)
        os.mkdir(staging)  # for the caller's rmtree
    elif not _exchange(staging, folder):
        old = folder.with_name(staging.name + ".old")
        os.rename(folder, old)
        os.rename(staging, folder)
        os.rename(old, staging)
    sync_dir(folder.parent)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@functools.cache
def _renameat2() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # not Linux, or a C library without it
        return None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2); False when the system cannot."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    return renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b),
                     _RENAME_EXCHANGE) == 0


def _remove_stale(folder: Path) -> None:
    """Staging directories of processes that were killed while publishing."""
    for path in folder.parent.glob(f".{folder.name}.*.tmp"):
        pid = path.name[len(folder.name) + 2:].split(".")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process
        return True
    return True
