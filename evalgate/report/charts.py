"""Inline SVG charts for the HTML report, built as strings in Python (no plotting dependency).

Why hand-written SVG: the report must be one self-contained file that opens offline, and the
data is hostile (tags and names come from canary files, text from models). Every text node and
attribute value here goes through `markupsafe.escape`, and every coordinate through `_n`, which
turns NaN/inf into 0, so no input can break out of the markup or write `NaN` into a path.
Each chart handles 0 and 1 data points (a "no data" panel, a padded domain).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from markupsafe import Markup
from markupsafe import escape as _escape

from evalgate.gate.metrics import percentile

CANDIDATE_COLOR = "#2563eb"
BASELINE_COLOR = "#c2410c"
VERDICT_COLORS = {"PASS": "#15803d", "FAIL": "#b91c1c", "INCONCLUSIVE": "#a16207"}
GRID = "#e5e7eb"
AXIS = "#6b7280"
INK = "#111827"
FONT = "font-family=\"system-ui,-apple-system,'Segoe UI',Roboto,sans-serif\""
Z95 = 1.959963984540054
MAX_PATH_POINTS = 400


# C0/C1 controls (but tab and newline) and lone surrogates: shown as U+FFFD, never written raw
# (a tag or canary id is untrusted text; a raw ESC or NUL in a report is worse than useless).
CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def escape(value: object) -> Markup:
    """markupsafe's escape of a text with its control characters made visible first."""
    return _escape(CONTROL.sub("\ufffd", str(value)))


def _n(x: float) -> str:
    """A coordinate for SVG: finite, short; NaN or inf become 0 instead of breaking the chart."""
    if not math.isfinite(x):
        return "0"
    text = f"{x:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _finite_or_none(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def _t(x: float, y: float, text: str, *, size: int = 11, anchor: str = "start",
       color: str = INK, weight: str = "normal") -> str:
    return (f'<text x="{_n(x)}" y="{_n(y)}" font-size="{size}" text-anchor="{anchor}" '
            f'fill="{color}" font-weight="{weight}">{escape(text)}</text>')


def _svg(uid: str, width: int, height: int, title: str, desc: str, body: list[str]) -> Markup:
    """Wrap chart elements: role=img with a <title>/<desc> pair that screen readers announce."""
    tid, did = f"{uid}-title", f"{uid}-desc"
    # Inline in HTML, so no xmlns: the parser puts <svg> in the SVG namespace by itself.
    head = (f'<svg class="chart" id="{escape(uid)}" '
            f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-labelledby="{escape(tid)} {escape(did)}" {FONT}>'
            f'<title id="{escape(tid)}">{escape(title)}</title>'
            f'<desc id="{escape(did)}">{escape(desc)}</desc>')
    return Markup(head + "".join(body) + "</svg>")  # built from escaped parts


def no_data(uid: str, title: str, why: str, width: int = 640, height: int = 80) -> Markup:
    """A placeholder panel with the reason, so an empty chart still says something."""
    body = [f'<rect x="0.5" y="0.5" width="{width - 1}" height="{height - 1}" fill="#f9fafb" '
            f'stroke="{GRID}"/>', _t(width / 2, height / 2 + 4, why, anchor="middle",
                                     color=AXIS, size=12)]
    return _svg(uid, width, height, title, why, body)


class Scale:
    """Linear or log10 mapping of a data domain onto pixels; never divides by zero."""

    def __init__(self, lo: float, hi: float, px_lo: float, px_hi: float, log: bool = False):
        self.log = log and lo > 0 and hi > 0
        if self.log:
            lo, hi = math.log10(lo), math.log10(hi)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            lo, hi = 0.0, 1.0
        if hi <= lo:
            pad = abs(lo) * 0.1 or 1.0
            lo, hi = lo - pad, hi + pad
        self.lo, self.hi, self.px_lo, self.px_hi = lo, hi, px_lo, px_hi

    def __call__(self, v: float) -> float:
        if self.log:
            v = math.log10(v) if v > 0 else self.lo
        return self.px_lo + (v - self.lo) / (self.hi - self.lo) * (self.px_hi - self.px_lo)

    def ticks(self, count: int = 6) -> list[float]:
        """Round tick values inside the domain (1-2-5 steps; decades and 2x/5x on log)."""
        if self.log:
            out = []
            for e in range(math.floor(self.lo), math.ceil(self.hi) + 1):
                for m in (1, 2, 5):
                    v = m * 10.0 ** e
                    if self.lo - 1e-9 <= math.log10(v) <= self.hi + 1e-9:
                        out.append(v)
            return out if len(out) <= 12 else [v for v in out if str(v)[0] == "1"]
        raw = (self.hi - self.lo) / max(count - 1, 1)
        mag = 10.0 ** math.floor(math.log10(raw))
        step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
        start = math.ceil(self.lo / step) * step
        out = []
        v = start
        while v <= self.hi + step * 1e-9 and len(out) < 20:
            out.append(round(v, 12))
            v += step
        return out


def _fmt_ms(v: float) -> str:
    return f"{v:,.0f} ms" if abs(v) >= 10 else f"{v:.1f} ms"


def _pct(v: float) -> str:
    return f"{100 * v:.0f}%" if abs(100 * v - round(100 * v)) < 1e-9 else f"{100 * v:.1f}%"


def _ecdf_points(values: Sequence[float]) -> list[tuple[float, float]]:
    """The ECDF's corners, downsampled to at most MAX_PATH_POINTS steps for big runs."""
    ordered = sorted(values)
    n = len(ordered)
    if n <= MAX_PATH_POINTS:
        return [(v, (i + 1) / n) for i, v in enumerate(ordered)]
    idx = sorted({round(k * (n - 1) / (MAX_PATH_POINTS - 1)) for k in range(MAX_PATH_POINTS)})
    return [(ordered[i], (i + 1) / n) for i in idx]


def latency_cdf(uid: str, series: Sequence[tuple[str, Sequence[float]]],
                title: str = "Latency distribution (empirical CDF)",
                empty: str = "no latency data: no call was answered") -> Markup:
    """Empirical CDF of per-call latency (or TTFT), one curve per config, p50/p95/p99 marked."""
    data = [(name, [v for v in values if math.isfinite(v) and v >= 0])
            for name, values in series]
    data = [(name, values) for name, values in data if values]
    if not data:
        return no_data(uid, title, empty)
    width, height = 680, 320
    left, right, top, bottom = 58, 20, 14, 44
    everything = [v for _, values in data for v in values]
    lo, hi = min(everything), max(everything)
    log = lo > 0 and hi / lo > 8
    x = Scale(lo, hi, left, width - right, log=log)
    y = Scale(0.0, 1.0, height - bottom, top)
    body = [f'<rect x="{left}" y="{top}" width="{width - left - right}" '
            f'height="{height - top - bottom}" fill="#fff" stroke="{GRID}"/>']
    for tv in x.ticks(7):
        px = x(tv)
        body.append(f'<line x1="{_n(px)}" x2="{_n(px)}" y1="{top}" y2="{height - bottom}" '
                    f'stroke="{GRID}"/>')
        body.append(_t(px, height - bottom + 15, _fmt_ms(tv), anchor="middle", color=AXIS,
                       size=10))
    for q in (0.0, 0.25, 0.5, 0.75, 1.0):
        py = y(q)
        body.append(f'<line x1="{left}" x2="{width - right}" y1="{_n(py)}" y2="{_n(py)}" '
                    f'stroke="{GRID}"/>')
        body.append(_t(left - 6, py + 3, _pct(q), anchor="end", color=AXIS, size=10))
    for q, label in ((0.95, "p95"), (0.99, "p99")):
        py = y(q)
        body.append(f'<line x1="{left}" x2="{width - right}" y1="{_n(py)}" y2="{_n(py)}" '
                    f'stroke="{AXIS}" stroke-dasharray="2 3"/>')
        body.append(_t(left + 4, py - 2 if q == 0.99 else py + 10, label, color=AXIS, size=9))
    body.append(_t((left + width - right) / 2, height - 8,
                   f"latency per answered call{' (log scale)' if x.log else ''}",
                   anchor="middle", color=AXIS, size=11))
    legend_y = height - bottom - 12 - 18 * (len(data) - 1)
    for i, (name, values) in enumerate(data):
        color = CANDIDATE_COLOR if i == 0 else BASELINE_COLOR
        pts = _ecdf_points(values)
        path = [f"M{_n(x(pts[0][0]))},{_n(y(0.0))}"]
        for v, q in pts:
            path.append(f"H{_n(x(v))}V{_n(y(q))}")
        path.append(f"H{_n(width - right)}")
        dash = "" if i == 0 else ' stroke-dasharray="6 3"'
        body.append(f'<path d="{"".join(path)}" fill="none" stroke="{color}" '
                    f'stroke-width="2"{dash}><title>{escape(name)}</title></path>')
        marks = []
        for q in (50, 95, 99):
            p = percentile(values, q)
            assert p is not None
            marks.append(f"p{q} {_fmt_ms(p)}")
            body.append(f'<circle cx="{_n(x(p))}" cy="{_n(y(q / 100))}" r="3.5" fill="{color}" '
                        f'stroke="#fff"><title>{escape(f"{name} p{q}: {_fmt_ms(p)}")}</title>'
                        f'</circle>')
        lx = width - right - 330
        body.append(f'<line x1="{lx}" x2="{lx + 22}" y1="{legend_y + 18 * i - 4}" '
                    f'y2="{legend_y + 18 * i - 4}" stroke="{color}" stroke-width="2"{dash}/>')
        body.append(_t(lx + 28, legend_y + 18 * i,
                       f"{name} (n={len(values)}): {', '.join(marks)}", size=10))
    desc = "; ".join(
        f"{name}: {len(values)} calls, p50 {_fmt_ms(percentile(values, 50) or 0)}, "
        f"p95 {_fmt_ms(percentile(values, 95) or 0)}, p99 {_fmt_ms(percentile(values, 99) or 0)}"
        for name, values in data)
    return _svg(uid, width, height, title, desc, body)


@dataclass(frozen=True)
class ForestRow:
    """One guardrail's interval in its own units, with the limit it must stay inside."""

    label: str
    verdict: str
    estimate: float | None
    low: float | None
    high: float | None
    limit: float | None
    reference: float | None  # "no change" (0 for differences, 1 for ratios), None for levels
    worse: str  # "higher" | "lower": which side of the limit is a violation
    fmt: Callable[[float], str] = field(default=lambda v: f"{v:.3g}")


def forest(uid: str, rows: Sequence[ForestRow], level: str = "90%") -> Markup:
    """A forest plot with one small panel per guardrail, each scaled to its own interval and
    limit (ratios, differences and levels do not share an axis): the shaded side of the dashed
    line is a violation, the bar is the interval, the dot the estimate."""
    title = "Guardrail intervals against their limits"
    if not rows:
        return no_data(uid, title, "no tested guardrail (only point estimates or none)")
    width, row_h, label_w, text_w, top = 860, 46, 250, 200, 8
    px_lo, px_hi = label_w + 10, width - text_w - 10
    height = top + row_h * len(rows) + 20
    body: list[str] = []
    desc: list[str] = []
    for i, row in enumerate(rows):
        r = replace(row, estimate=_finite_or_none(row.estimate), low=_finite_or_none(row.low),
                    high=_finite_or_none(row.high), limit=_finite_or_none(row.limit),
                    reference=_finite_or_none(row.reference))
        y0 = top + i * row_h
        mid = y0 + row_h / 2
        color = VERDICT_COLORS.get(r.verdict, AXIS)
        if i % 2 == 0:
            body.append(f'<rect x="0" y="{_n(y0)}" width="{width}" height="{row_h}" '
                        f'fill="#f9fafb"/>')
        body.append(_t(8, mid - 2, r.label, size=12, weight="600"))
        body.append(_t(8, mid + 13, r.verdict, size=10, color=color, weight="700"))
        values = [v for v in (r.estimate, r.low, r.high, r.limit, r.reference) if v is not None]
        if r.estimate is None and r.low is None and r.high is None:
            body.append(_t(px_lo, mid + 4, "no estimate (not enough data)", color=AXIS))
            desc.append(f"{r.label}: {r.verdict}, no estimate")
            continue
        lo, hi = min(values), max(values)
        pad = (hi - lo) * 0.08 or (abs(hi) * 0.1 or 1.0)
        x = Scale(lo - pad, hi + pad, px_lo, px_hi)
        body.append(f'<line x1="{px_lo}" x2="{px_hi}" y1="{_n(mid + 12)}" y2="{_n(mid + 12)}" '
                    f'stroke="{GRID}"/>')
        if r.limit is not None:
            lx = x(r.limit)
            bad_x, bad_w = (lx, px_hi - lx) if r.worse == "higher" else (px_lo, lx - px_lo)
            body.append(f'<rect x="{_n(bad_x)}" y="{_n(y0 + 6)}" width="{_n(max(bad_w, 0))}" '
                        f'height="{row_h - 12}" fill="#fee2e2" opacity="0.7"/>')
            body.append(f'<line x1="{_n(lx)}" x2="{_n(lx)}" y1="{_n(y0 + 4)}" '
                        f'y2="{_n(y0 + row_h - 4)}" stroke="#b91c1c" stroke-width="1.5" '
                        f'stroke-dasharray="4 3"><title>{escape("limit " + r.fmt(r.limit))}'
                        f'</title></line>')
            body.append(_t(lx + (-4 if r.worse == "higher" else 4), y0 + 15,
                           "limit " + r.fmt(r.limit), size=9,
                           anchor="end" if r.worse == "higher" else "start", color="#b91c1c"))
        if r.reference is not None:
            rx = x(r.reference)
            body.append(f'<line x1="{_n(rx)}" x2="{_n(rx)}" y1="{_n(y0 + 8)}" '
                        f'y2="{_n(y0 + row_h - 12)}" stroke="{AXIS}" stroke-width="1.5"/>')
            body.append(_t(rx, y0 + row_h - 3, "no change", size=8, anchor="middle",
                           color=AXIS))
        low = r.low if r.low is not None else r.estimate
        high = r.high if r.high is not None else r.estimate
        if low is not None and high is not None:
            body.append(f'<line x1="{_n(x(low))}" x2="{_n(x(high))}" y1="{_n(mid)}" '
                        f'y2="{_n(mid)}" stroke="{color}" stroke-width="4" '
                        f'stroke-linecap="round"/>')
        if r.estimate is not None:
            body.append(f'<circle cx="{_n(x(r.estimate))}" cy="{_n(mid)}" r="5" fill="#fff" '
                        f'stroke="{color}" stroke-width="2.5"/>')
        interval = (f"[{r.fmt(low)}, {r.fmt(high)}]" if low is not None and high is not None
                    else "")
        est = r.fmt(r.estimate) if r.estimate is not None else "n/a"
        body.append(_t(width - text_w, mid + 4, f"{est} {interval}", size=11))
        desc.append(f"{r.label}: {r.verdict}, estimate {est}, {level} interval {interval}"
                    + (f", limit {r.fmt(r.limit)}" if r.limit is not None else ""))
    body.append(_t(px_lo, height - 4, f"bar: {level} interval (each end a one-sided bound); "
                   "dot: estimate; dashed: limit; shaded: violation side", size=10, color=AXIS))
    return _svg(uid, width, height, title, "; ".join(desc), body)


def bars(uid: str, title: str, items: Sequence[tuple[str, float | None]],
         fmt: Callable[[float], str], unit: str) -> Markup:
    """Side-by-side bars (e.g. cost per 1k requests, candidate vs baseline) with values."""
    shown = [(name, v) for name, v in items if v is not None and math.isfinite(v)]
    if not shown:
        return no_data(uid, title, f"no {unit} data: no call was answered", width=340)
    width, height, left, top, bottom = 340, 230, 16, 24, 40
    peak = max(v for _, v in shown)
    y = Scale(0.0, peak * 1.15 if peak > 0 else 1.0, height - bottom, top)
    slot = (width - 2 * left) / len(shown)
    bar_w = min(90.0, slot * 0.55)
    body = [f'<line x1="{left}" x2="{width - left}" y1="{height - bottom}" '
            f'y2="{height - bottom}" stroke="{AXIS}"/>']
    for i, (name, v) in enumerate(shown):
        color = CANDIDATE_COLOR if i == 0 else BASELINE_COLOR
        cx = left + slot * (i + 0.5)
        top_px = y(max(v, 0.0))
        body.append(f'<rect x="{_n(cx - bar_w / 2)}" y="{_n(top_px)}" width="{_n(bar_w)}" '
                    f'height="{_n(max(height - bottom - top_px, 0))}" fill="{color}">'
                    f'<title>{escape(f"{name}: {fmt(v)}")}</title></rect>')
        body.append(_t(cx, top_px - 6, fmt(v), anchor="middle", size=12, weight="600"))
        body.append(_t(cx, height - bottom + 16, name, anchor="middle", size=11))
    if len(shown) == 2 and shown[1][1] > 0:
        ratio = shown[0][1] / shown[1][1]
        body.append(_t(width / 2, height - 6, f"{shown[0][0]} = x{ratio:.2f} {shown[1][0]}",
                       anchor="middle", size=10, color=AXIS))
    desc = ", ".join(f"{name} {fmt(v)}" for name, v in shown)
    return _svg(uid, width, height, title, f"{unit}: {desc}", body)


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float, float] | None:
    """The rate and its Wilson score interval (sensible at 0 and n); None when n is 0."""
    if n <= 0:
        return None
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return p, max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class RatePoint:
    series: str  # "candidate" | "baseline"
    k: int
    n: int


@dataclass(frozen=True)
class RateRow:
    label: str
    panels: tuple[tuple[RatePoint, ...], ...]  # one tuple of points per panel


def rate_dots(uid: str, title: str, panel_titles: Sequence[str], rows: Sequence[RateRow],
              note: str = "") -> Markup:
    """Rates with Wilson 95% intervals on a 0-100% axis: rows (metrics or tags) x panels,
    candidate and baseline offset within each row."""
    if not rows:
        return no_data(uid, title, "no graded calls")
    label_w, gap, row_h, top = 170, 28, 30, 34
    panel_w = 480 if len(panel_titles) == 1 else 330
    width = label_w + len(panel_titles) * (panel_w + gap)
    height = top + row_h * len(rows) + 30
    body: list[str] = []
    desc: list[str] = []
    for p, ptitle in enumerate(panel_titles):
        x0 = label_w + p * (panel_w + gap)
        x = Scale(0.0, 1.0, x0, x0 + panel_w)
        body.append(_t(x0, 14, ptitle, size=12, weight="600"))
        for tv in (0.0, 0.25, 0.5, 0.75, 1.0):
            px = x(tv)
            body.append(f'<line x1="{_n(px)}" x2="{_n(px)}" y1="{top - 6}" '
                        f'y2="{top + row_h * len(rows)}" stroke="{GRID}"/>')
            body.append(_t(px, top + row_h * len(rows) + 14, _pct(tv), anchor="middle",
                           size=9, color=AXIS))
        for i, row in enumerate(rows):
            mid = top + i * row_h + row_h / 2
            points = row.panels[p] if p < len(row.panels) else ()
            for j, point in enumerate(points):
                color = CANDIDATE_COLOR if point.series == "candidate" else BASELINE_COLOR
                py = mid + (j - (len(points) - 1) / 2) * 8
                w = wilson(point.k, point.n)
                if w is None:
                    body.append(_t(x0 + 2, py + 3, f"{point.series}: no data", size=9,
                                   color=AXIS))
                    continue
                rate, lo, hi = w
                text = (f"{row.label}, {ptitle}, {point.series}: {_pct(rate)} "
                        f"({point.k}/{point.n}; 95% {_pct(lo)}-{_pct(hi)})")
                desc.append(text)
                body.append(f'<g><title>{escape(text)}</title>'
                            f'<line x1="{_n(x(lo))}" x2="{_n(x(hi))}" y1="{_n(py)}" '
                            f'y2="{_n(py)}" stroke="{color}" stroke-width="2"/>'
                            f'<circle cx="{_n(x(rate))}" cy="{_n(py)}" r="3.5" fill="{color}"/>'
                            f'</g>')
    for i, row in enumerate(rows):
        mid = top + i * row_h + row_h / 2
        label = row.label if len(row.label) <= 26 else row.label[:25] + "…"
        body.append(_t(label_w - 10, mid + 4, label, anchor="end", size=11))
    present = {pt.series for row in rows for points in row.panels for pt in points}
    legend = [(name, color) for name, color in (("candidate", CANDIDATE_COLOR),
                                                ("baseline", BASELINE_COLOR))
              if name in present]
    lx = label_w
    for name, color in legend:
        body.append(f'<circle cx="{lx}" cy="{height - 8}" r="4" fill="{color}"/>')
        body.append(_t(lx + 8, height - 4, name, size=10))
        lx += 90
    if note:
        body.append(_t(lx + 10, height - 4, note, size=10, color=AXIS))
    return _svg(uid, width, height, title, "; ".join(desc) or "no data", body)


def latency_vs_concurrency(uid: str, series: Sequence[tuple[str, Sequence[tuple[int, float | None,
                                                                              float | None]]]],
                           ) -> Markup:
    """Load profile: p50 (dashed) and p95 (solid) latency per concurrency level (log2 x axis),
    one colour per config, so a tail that grows with load shows as a rising line."""
    title = "Latency vs concurrency (load profile)"
    data = [(name, [(c, _finite_or_none(p50), _finite_or_none(p95)) for c, p50, p95 in points
                    if c > 0]) for name, points in series]
    data = [(name, pts) for name, pts in data if any(p95 is not None for _, _, p95 in pts)]
    if not data:
        return no_data(uid, title, "no load data: no level was measured")
    width, height = 680, 300
    left, right, top, bottom = 64, 20, 14, 44
    levels = sorted({c for _, pts in data for c, _, _ in pts})
    values = [v for _, pts in data for _, p50, p95 in pts for v in (p50, p95) if v is not None]
    x = Scale(min(levels), max(levels), left + 20, width - right - 20, log=max(levels) > 1)
    y = Scale(0.0, max(values) * 1.1 if max(values) > 0 else 1.0, height - bottom, top)
    body = [f'<rect x="{left}" y="{top}" width="{width - left - right}" '
            f'height="{height - top - bottom}" fill="#fff" stroke="{GRID}"/>']
    for c in levels:
        px = x(c)
        body.append(f'<line x1="{_n(px)}" x2="{_n(px)}" y1="{top}" y2="{height - bottom}" '
                    f'stroke="{GRID}"/>')
        body.append(_t(px, height - bottom + 15, str(c), anchor="middle", color=AXIS, size=10))
    for tv in y.ticks(6):
        py = y(tv)
        body.append(f'<line x1="{left}" x2="{width - right}" y1="{_n(py)}" y2="{_n(py)}" '
                    f'stroke="{GRID}"/>')
        body.append(_t(left - 6, py + 3, _fmt_ms(tv), anchor="end", color=AXIS, size=10))
    body.append(_t((left + width - right) / 2, height - 8, "requests in flight (concurrency)",
                   anchor="middle", color=AXIS, size=11))
    desc = []
    for i, (name, pts) in enumerate(data):
        color = CANDIDATE_COLOR if i == 0 else BASELINE_COLOR
        for q, dash, idx in (("p95", "", 2), ("p50", ' stroke-dasharray="5 3"', 1)):
            line = [(pt[0], pt[idx]) for pt in pts if pt[idx] is not None]
            if not line:
                continue
            path = "".join(f"{'M' if j == 0 else 'L'}{_n(x(c))},{_n(y(v))}"
                           for j, (c, v) in enumerate(line))
            body.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="2"'
                        f'{dash}><title>{escape(f"{name} {q}")}</title></path>')
            for c, v in line:
                body.append(f'<circle cx="{_n(x(c))}" cy="{_n(y(v))}" r="3.5" fill="{color}" '
                            f'stroke="#fff"><title>{escape(f"{name} {q} at {c}: {_fmt_ms(v)}")}'
                            f'</title></circle>')
            desc.append(f"{name} {q}: " + ", ".join(f"{c} -> {_fmt_ms(v)}" for c, v in line))
        ly = top + 14 + 18 * i
        body.append(f'<line x1="{left + 10}" x2="{left + 32}" y1="{ly - 4}" y2="{ly - 4}" '
                    f'stroke="{color}" stroke-width="2"/>')
        body.append(_t(left + 38, ly, f"{name}: p95 solid, p50 dashed", size=10))
    return _svg(uid, width, height, title, "; ".join(desc), body)
