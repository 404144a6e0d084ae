"""The catalog rendered: one self-contained HTML page (jinja2, inline CSS and SVG, no script)
and its Markdown twin.

What it shows: a row per model version (a model config fingerprint) with its latest figures
and intervals and the tags it is recommended for; a trend per metric across the runs; and a
note wherever the canary set changed between runs, because figures measured on different
canaries are not equals (the trend lines are broken there, not joined).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, partial
from itertools import pairwise
from pathlib import Path

import jinja2
from markupsafe import Markup

from evalgate.catalog.charts import TrendPoint, TrendSeries, style, trend
from evalgate.catalog.snapshot import MetricFigure, Snapshot
from evalgate.report import mdtext
from evalgate.report.html import level

MAX_MARKDOWN_RUNS = 30  # trend rows in the Markdown (a PR comment has 65,536 characters)
KEY_METRICS = ("pass_rate", "hallucination_rate", "error_rate", "latency_p95_ms",
               "cost_per_1k_usd")
CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; script-src 'none'; "
       "base-uri 'none'; form-action 'none'")


def short(fingerprint: str | None, n: int = 8) -> str:
    return (fingerprint or "")[:n] or "n/a"


def figure_text(metric: str, f: MetricFigure | None) -> tuple[str, str]:
    """(value, "[low, high]") for people; the interval is empty when there is none."""
    if f is None or f.value is None:
        return "n/a", ""
    if f.low is None or f.high is None:
        return level(metric, f.value), ""
    return level(metric, f.value), f"[{level(metric, f.low)}, {level(metric, f.high)}]"


@dataclass(frozen=True)
class Run:
    """One run of the catalog (its configs' snapshots), in time order."""

    index: int
    run_id: str
    taken_at: str
    canary_fingerprint: str
    commit: str | None

    @property
    def label(self) -> str:
        return f"#{self.index + 1} {self.taken_at[5:16].replace('T', ' ')}"  # #N MM-DD HH:MM


@dataclass(frozen=True)
class Version:
    """A model version: every snapshot of one config fingerprint, oldest first."""

    fingerprint: str
    snapshots: tuple[Snapshot, ...]

    @property
    def latest(self) -> Snapshot:
        return self.snapshots[-1]

    @property
    def label(self) -> str:
        s = self.latest
        return f"{s.config} ({s.provider}/{s.model}, {short(self.fingerprint)})"


@dataclass(frozen=True)
class CanaryChange:
    before: Run
    after: Run

    @property
    def text(self) -> str:
        return (f"The canary set changed between run {self.before.index + 1} "
                f"({self.before.taken_at}, canaries {short(self.before.canary_fingerprint)}) "
                f"and run {self.after.index + 1} ({self.after.taken_at}, canaries "
                f"{short(self.after.canary_fingerprint)}): figures on either side were "
                "measured on different canaries and are not compared as equals (trend lines "
                "break there).")


@dataclass(frozen=True)
class Catalogued:
    """The snapshots arranged for rendering."""

    snapshots: tuple[Snapshot, ...]
    runs: tuple[Run, ...]
    versions: tuple[Version, ...]
    changes: tuple[CanaryChange, ...]
    metrics: tuple[str, ...]

    def epoch(self, run_index: int) -> int:
        return sum(1 for c in self.changes if c.after.index <= run_index)


def arrange(snapshots: Sequence[Snapshot]) -> Catalogued:
    ordered = sorted(snapshots, key=lambda s: s.taken_at)  # stable: appended order kept
    runs: dict[str, Run] = {}
    for s in ordered:
        if s.run_id not in runs:
            runs[s.run_id] = Run(len(runs), s.run_id, s.taken_at, s.canary_fingerprint, s.commit)
    run_list = tuple(runs.values())
    changes = tuple(CanaryChange(a, b) for a, b in pairwise(run_list)
                    if a.canary_fingerprint != b.canary_fingerprint)
    by_version: dict[str, list[Snapshot]] = {}
    for s in ordered:
        by_version.setdefault(s.fingerprint, []).append(s)
    versions = tuple(sorted((Version(fp, tuple(v)) for fp, v in by_version.items()),
                            key=lambda v: (v.latest.taken_at, v.latest.role == "candidate"),
                            reverse=True))
    metrics: dict[str, None] = {}
    for s in ordered:
        metrics.update(dict.fromkeys(s.metrics))
    return Catalogued(tuple(ordered), run_list, versions, changes, tuple(metrics))


def title_of(metric: str) -> str:
    return metric.replace("_", " ").replace(" ms", " (ms)").replace(" usd", " (USD)")


def trend_chart(cat: Catalogued, metric: str, uid: str) -> Markup:
    series = []
    for v in cat.versions:
        points = []
        for s in v.snapshots:
            f = s.metrics.get(metric)
            if f is None:
                continue
            run = next(r for r in cat.runs if r.run_id == s.run_id)
            value, ci = figure_text(metric, f)
            points.append(TrendPoint(run.index, f.value, f.low, f.high, cat.epoch(run.index),
                                     f"{v.label}, run {run.index + 1} ({s.taken_at}): "
                                     f"{value} {ci}".strip()))
        series.append(TrendSeries(v.label, points))
    return trend(uid, title_of(metric), [r.label for r in cat.runs], series,
                 [c.after.index for c in cat.changes], partial(level, metric))


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("evalgate.catalog", "templates"),
                              autoescape=True, trim_blocks=True, lstrip_blocks=True,
                              undefined=jinja2.StrictUndefined)


def render_html(snapshots: Sequence[Snapshot]) -> str:
    """The catalog page: self-contained (inline CSS and SVG; a CSP allows nothing else)."""
    cat = arrange(snapshots)
    newest = cat.runs[-1].canary_fingerprint if cat.runs else None
    rows = []
    for v in cat.versions:
        s = v.latest
        rows.append({
            "v": v, "s": s, "params": json.dumps(s.params, sort_keys=True) if s.params else "",
            "figures": [(m, *figure_text(m, s.metrics.get(m))) for m in KEY_METRICS
                        if m in cat.metrics],
            "all": [(m, *figure_text(m, s.metrics.get(m))) for m in cat.metrics],
            "old_canaries": s.canary_fingerprint != newest,
            "color": style(cat.versions.index(v))[0],
        })
    context = {
        "cat": cat, "rows": rows, "csp": CSP, "short": short, "title_of": title_of,
        "key_metrics": [m for m in KEY_METRICS if m in cat.metrics],
        "level_pct": f"{100 * (snapshots[0].level if snapshots else 0.95):g}%",
        "charts": [(m, trend_chart(cat, m, f"trend-{i}")) for i, m in enumerate(cat.metrics)],
    }
    return _env().get_template("catalog.html.j2").render(context)


def render_markdown(snapshots: Sequence[Snapshot]) -> str:
    """The catalog as Markdown (a PR comment, a committed file): the same table and notes,
    and a trend table per key metric. Every untrusted text renders literally."""
    cat = arrange(snapshots)
    out = ["# Model catalog", ""]
    if not cat.snapshots:
        return "\n".join([*out, "The catalog is empty: no run has been recorded yet.", ""])
    out += [f"{len(cat.snapshots)} snapshot(s) of {len(cat.versions)} model version(s) over "
            f"{len(cat.runs)} run(s), {cat.runs[0].taken_at} to {cat.runs[-1].taken_at}; "
            f"intervals {100 * cat.snapshots[0].level:g}%.", ""]
    out += [f"> **Note:** {mdtext.prose(c.text, 600)}" for c in cat.changes]
    if cat.changes:
        out.append("")
    keys = [m for m in KEY_METRICS if m in cat.metrics]
    rows = []
    for v in cat.versions:
        s = v.latest
        figures = [" ".join(figure_text(m, s.metrics.get(m))).strip() for m in keys]
        rows.append([mdtext.code(s.config), mdtext.code(f"{s.provider}/{s.model}"),
                     mdtext.code(short(v.fingerprint)), str(len(v.snapshots)),
                     mdtext.cell(s.taken_at), mdtext.code(short(s.commit)),
                     mdtext.code(short(s.canary_fingerprint)),
                     *(mdtext.cell(f) for f in figures),
                     ", ".join(mdtext.code(t) for t in s.recommended_for) or "none"])
    out += ["## Model versions", ""]
    out += mdtext.table(["config", "provider/model", "fingerprint", "snapshots", "latest run",
                         "commit", "canaries", *(title_of(m) for m in keys),
                         "recommended for"], rows)
    out += ["", "## Trends", ""]
    shown = cat.runs[-MAX_MARKDOWN_RUNS:]
    if len(shown) < len(cat.runs):
        out += [f"The last {len(shown)} of {len(cat.runs)} runs; the HTML page has them all.",
                ""]
    for m in keys:
        out += [f"### {title_of(m)}", ""]
        trows = []
        for r in shown:
            cells = []
            for v in cat.versions:
                s = next((s for s in v.snapshots if s.run_id == r.run_id), None)
                f = s.metrics.get(m) if s is not None else None
                cells.append(mdtext.cell(" ".join(figure_text(m, f)).strip()) if f else "")
            changed = any(c.after is r for c in cat.changes)
            trows.append([str(r.index + 1) + (" (canary set changed)" if changed else ""),
                          mdtext.cell(r.taken_at), mdtext.code(short(r.canary_fingerprint)),
                          *cells])
        out += mdtext.table(["run", "date", "canaries",
                             *(mdtext.code(v.label) for v in cat.versions)], trows)
        out.append("")
    return "\n".join(out)


def write_pages(snapshots: Sequence[Snapshot], html: Path | None,
                markdown: Path | None) -> list[Path]:
    """Write the HTML page and the Markdown; the paths written."""
    written = []
    for path, render in ((html, render_html), (markdown, render_markdown)):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render(snapshots), encoding="utf-8")
            written.append(path)
    return written
