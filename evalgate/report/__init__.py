"""Reports rendered from a run result: HTML, JUnit XML, Markdown (JSON is the result itself)."""

from __future__ import annotations

from pathlib import Path

from evalgate.results import RunResult

DEFAULT_NAMES = {"html": "evalgate.html", "junit": "evalgate.xml", "markdown": "evalgate.md"}


def write_text(path: Path, text: str) -> Path:
    """Write atomically, so a CI step never uploads half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
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


def write_all(result: RunResult, folder: Path, step_summary: bool = False) -> list[Path]:
    return write_reports(result, html=folder / DEFAULT_NAMES["html"],
                         junit=folder / DEFAULT_NAMES["junit"],
                         markdown=folder / DEFAULT_NAMES["markdown"], step_summary=step_summary)
