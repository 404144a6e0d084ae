"""The Pareto chart of an N-candidate run: cost per successful answer against pass rate, each
config a marker with its two intervals as error bars, its p95 latency as the marker's size, and
the Pareto front (no other config both passes more often and costs less per success) drawn.

Why a chart: the recommendation picks one config; the chart shows what it traded away."""

from __future__ import annotations

import math
from collections.abc import Sequence

from markupsafe import Markup

from evalgate.report.charts import AXIS, GRID, INK, Scale, _n, _svg, _t, escape, no_data
from evalgate.results import Standing

W, H = 640, 360
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 20, 50
FRONT = "#2563eb"
OTHER = "#6b7280"


def pareto_front(points: Sequence[tuple[str, float, float]]) -> list[str]:
    """Names on the front of (name, pass rate, cost): no other point is at least as good on
    both and better on one."""
    front = []
    for name, p, c in points:
        dominated = any((p2 >= p and c2 <= c) and (p2 > p or c2 < c)
                        for n2, p2, c2 in points if n2 != name)
        if not dominated:
            front.append(name)
    return front


def pareto(uid: str, standings: Sequence[Standing]) -> Markup:
    """The chart, or a placeholder saying why there is none."""
    rows = []
    for s in standings:
        pr = s.figures.get("pass_rate")
        cost = s.figures.get("cost_per_success_usd")
        if s.status != "ok" or pr is None or cost is None or pr.value is None \
                or cost.value is None or cost.value <= 0:
            continue
        p95 = s.figures.get("latency_p95_ms")
        rows.append((s, pr, cost, p95.value if p95 is not None else None))
    title = "Cost per successful answer vs pass rate"
    if not rows:
        return no_data(uid, title, "no config has both a pass rate and a priced success")
    lows = [c.low if c.low and c.low > 0 else c.value for _, _, c, _ in rows]
    highs = [c.high if c.high else c.value for _, _, c, _ in rows]
    y = Scale(min(lows) * 0.8, max(highs) * 1.25, H - BOTTOM, TOP, log=True)
    p_lo = min((p.low if p.low is not None else p.value) for _, p, _, _ in rows)
    x = Scale(max(0.0, p_lo - 0.05), 1.0, LEFT, W - RIGHT)
    slowest = max((v for *_, v in rows if v), default=1.0)
    body = [f'<rect x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" '
            f'height="{H - TOP - BOTTOM}" fill="none" stroke="{GRID}"/>']
    for t in x.ticks():
        body.append(_t(x(t), H - BOTTOM + 16, f"{t:.0%}", anchor="middle", color=AXIS, size=10))
    for t in y.ticks():
        body += [f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{_n(y(t))}" y2="{_n(y(t))}" '
                 f'stroke="{GRID}"/>',
                 _t(LEFT - 6, y(t) + 4, f"${t:.3g}", anchor="end", color=AXIS, size=10)]
    body += [_t((LEFT + W - RIGHT) / 2, H - 12, "pass rate (error bars: intervals)",
                anchor="middle", color=AXIS),
             _t(14, TOP - 6, "cost per successful answer (log)", color=AXIS, size=10)]
    front = pareto_front([(s.name, p.value, c.value) for s, p, c, _ in rows])  # type: ignore
    on_front = sorted((r for r in rows if r[0].name in front), key=lambda r: r[1].value)
    if len(on_front) > 1:
        path = " ".join(f"{_n(x(p.value))},{_n(y(c.value))}"  # type: ignore[arg-type]
                        for _, p, c, _ in on_front)
        body.append(f'<polyline points="{path}" fill="none" stroke="{FRONT}" '
                    f'stroke-dasharray="4 3"/>')
    for s, p, c, p95 in rows:
        cx, cy = x(p.value), y(c.value)  # type: ignore[arg-type]
        color = FRONT if s.name in front else OTHER
        if p.low is not None and p.high is not None:
            body.append(f'<line x1="{_n(x(p.low))}" x2="{_n(x(p.high))}" y1="{_n(cy)}" '
                        f'y2="{_n(cy)}" stroke="{color}"/>')
        if c.low is not None and c.high is not None and c.low > 0:
            body.append(f'<line x1="{_n(cx)}" x2="{_n(cx)}" y1="{_n(y(c.low))}" '
                        f'y2="{_n(y(c.high))}" stroke="{color}"/>')
        r = 4 + 8 * math.sqrt((p95 or 0) / slowest) if slowest > 0 else 6
        tip = (f"{s.name}: pass {p.value:.1%}, ${c.value:.4g} per success"
               + (f", p95 {p95:,.0f} ms" if p95 else ""))
        body.append(f'<circle cx="{_n(cx)}" cy="{_n(cy)}" r="{_n(r)}" fill="{color}" '
                    f'fill-opacity="0.35" stroke="{color}"><title>{escape(tip)}</title>'
                    "</circle>")
        body.append(_t(cx + r + 3, cy - 3, s.name, color=INK, size=11))
    desc = "; ".join(f"{s.name}: pass rate {p.value:.1%}, ${c.value:.4g} per successful answer"
                     f"{' (Pareto front)' if s.name in front else ''}" for s, p, c, _ in rows)
    return _svg(uid, W, H, title, desc + "; marker size: p95 latency", body)
