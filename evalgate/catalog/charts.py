"""The catalog's trend chart: one metric across runs, a line per model version with each
snapshot's interval as a whisker, broken (and marked) where the canary set changed.

Built like `report.charts` (whose helpers it uses): inline SVG from escaped parts, every
coordinate through `_n`, a "no data" panel when there is nothing to draw.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup

from evalgate.report.charts import AXIS, GRID, Scale, _n, _svg, _t, escape, no_data

PALETTE = ("#2563eb", "#c2410c", "#15803d", "#7c3aed", "#0891b2", "#be185d", "#4d7c0f",
           "#a16207")
DASHES = ("", "6 3", "2 3", "8 3 2 3")
CHANGE_COLOR = "#b45309"


def style(i: int) -> tuple[str, str]:
    """A series' colour and dash pattern: eight colours, then dashed versions of them."""
    return PALETTE[i % len(PALETTE)], DASHES[(i // len(PALETTE)) % len(DASHES)]


@dataclass(frozen=True)
class TrendPoint:
    x: int  # the run's position, oldest first
    value: float | None
    low: float | None
    high: float | None
    epoch: int  # which canary set (a line never joins two)
    title: str  # shown on hover: version, run, value and interval


@dataclass(frozen=True)
class TrendSeries:
    label: str
    points: Sequence[TrendPoint]


def _ok(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def trend(uid: str, title: str, x_labels: Sequence[str], series: Sequence[TrendSeries],
          changes: Sequence[int], fmt: Callable[[float], str]) -> Markup:
    """`changes`: the run positions whose canary set differs from the run before."""
    drawn = [s for s in series if any(_ok(p.value) for p in s.points)]
    if not drawn:
        return no_data(uid, title, "no snapshot has a value for this metric")
    width, left, right, top = 620, 70, 16, 16
    plot_h = 190
    height = top + plot_h + 34 + 16 * len(drawn) + 8
    bottom_px = top + plot_h
    ends = [v for s in drawn for p in s.points for v in (p.value, p.low, p.high) if _ok(v)]
    pad = (max(ends) - min(ends)) * 0.06
    y = Scale(min(ends) - pad, max(ends) + pad, bottom_px, top)
    runs = max(len(x_labels), 1)
    x = Scale(-0.5, runs - 0.5, left, width - right)
    body = [f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{plot_h}" '
            f'fill="#fff" stroke="{GRID}"/>']
    for tv in y.ticks(5):
        py = y(tv)
        body.append(f'<line x1="{left}" x2="{width - right}" y1="{_n(py)}" y2="{_n(py)}" '
                    f'stroke="{GRID}"/>')
        body.append(_t(left - 6, py + 3, fmt(tv), anchor="end", color=AXIS, size=10))
    step = max(1, math.ceil(runs / 8))
    for i, label in enumerate(x_labels):
        if i % step == 0 or i == runs - 1:
            body.append(_t(x(i), bottom_px + 14, label, anchor="middle", color=AXIS, size=9))
    for i in changes:
        px = x(i - 0.5)
        body.append(f'<line class="canary-change" x1="{_n(px)}" x2="{_n(px)}" y1="{top}" '
                    f'y2="{bottom_px}" stroke="{CHANGE_COLOR}" stroke-dasharray="4 3" '
                    f'stroke-width="1.5"><title>canary set changed</title></line>')
        body.append(_t(px + 3, top + 11, "canary set changed", color=CHANGE_COLOR, size=9))
    slot = min(8.0, (x(1) - x(0)) * 0.5 / max(len(drawn), 1))
    for k, s in enumerate(drawn):
        color, dash = style(k)
        shift = (k - (len(drawn) - 1) / 2) * slot  # side by side, not on top of each other

        def px_of(p: TrendPoint, shift: float = shift) -> float:
            return x(p.x) + shift

        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        points = [p for p in s.points if _ok(p.value)]
        segment: list[TrendPoint] = []
        for p in [*points, None]:
            if p is None or (segment and p.epoch != segment[-1].epoch):
                if len(segment) > 1:
                    d = " ".join(f"{'M' if j == 0 else 'L'}{_n(px_of(q))},{_n(y(q.value or 0))}"
                                 for j, q in enumerate(segment))
                    body.append(f'<path class="trend" d="{d}" fill="none" stroke="{color}" '
                                f'stroke-width="2"{dash_attr}/>')
                segment = []
            if p is not None:
                segment.append(p)
        for p in points:
            px = px_of(p)
            if _ok(p.low) and _ok(p.high):
                lo, hi = y(p.low or 0.0), y(p.high or 0.0)
                body.append(f'<g class="ci" stroke="{color}" stroke-width="1.5">'
                            f'<line x1="{_n(px)}" x2="{_n(px)}" y1="{_n(lo)}" y2="{_n(hi)}"/>'
                            f'<line x1="{_n(px - 4)}" x2="{_n(px + 4)}" y1="{_n(lo)}" '
                            f'y2="{_n(lo)}"/><line x1="{_n(px - 4)}" x2="{_n(px + 4)}" '
                            f'y1="{_n(hi)}" y2="{_n(hi)}"/></g>')
            body.append(f'<circle class="pt" cx="{_n(px)}" cy="{_n(y(p.value or 0.0))}" r="3.5" '
                        f'fill="{color}" stroke="#fff"><title>{escape(p.title)}</title>'
                        f'</circle>')
        ly = bottom_px + 34 + 16 * k
        body.append(f'<line x1="{left}" x2="{left + 22}" y1="{ly - 4}" y2="{ly - 4}" '
                    f'stroke="{color}" stroke-width="2"{dash_attr}/>')
        body.append(_t(left + 28, ly, s.label, size=10))
    desc = (f"{title} across {runs} run(s), {len(drawn)} model version(s), each point with its "
            "interval" + (f"; the canary set changed {len(changes)} time(s)" if changes else ""))
    return _svg(uid, width, height, title, desc, body)
