"""Report views of the production-like checks (routes, blended cost, load, determinism) for the
terminal, Markdown and HTML. Each returns nothing when its check was not configured, so the
default reports are unchanged. Route and model names come from config files: Markdown puts
them in code spans, HTML escapes them (markupsafe)."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

from evalgate.gate.verdicts import fmt
from evalgate.report import charts
from evalgate.report.mdtext import cell, code, table
from evalgate.results import BlendedCost, DeterminismStats, LoadLevel, RouteStats, RunResult


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _ms(v: float | None) -> str:
    return fmt("x_ms", v)


def _usd(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"${v:,.2f}" if abs(v) >= 100 else f"${v:.4g}"


def _models(s: RouteStats) -> str:
    return ", ".join(f"{m} x{n}" for m, n in s.models.items())


def _route_cells(s: RouteStats) -> list[str]:
    m = s.metrics
    return [_pct(s.share), str(s.calls), _ms(m.get("latency_p50_ms")),
            _ms(m.get("latency_p95_ms")), _usd(m.get("cost_per_1k_usd")),
            _pct(m.get("hallucination_rate")), _pct(m.get("pass_rate")),
            _pct(m.get("error_rate"))]


ROUTE_HEAD = ["share", "calls", "p50", "p95", "cost/1k", "hallucination", "pass", "errors"]
LOAD_HEAD = ["concurrency", "config", "requests", "throughput", "p50", "p95", "p99", "errors",
             "429s"]
DET_HEAD = ["config", "canaries", "repeats", "agree (exact)", "agree (normalised)",
            "score stdev (mean)", "score range (max)", "errors"]


def _blend_text(b: BlendedCost) -> str:
    return (f"{_usd(b.per_1k_usd)} per 1k requests, {_usd(b.per_month_usd)} per month at "
            f"{b.monthly_requests:,.0f} requests")


def _mix(b: BlendedCost) -> str:
    if not b.weights:
        return "the canary distribution as it is"
    return "weights " + ", ".join(f"{t} {w:g}" for t, w in b.weights.items())


def _load_cells(lv: object) -> list[str]:
    assert isinstance(lv, LoadLevel)
    return [str(lv.concurrency), lv.config, str(lv.requests) + (" (cut)" if lv.truncated else ""),
            f"{lv.throughput_rps:.1f}/s", _ms(lv.p50_ms), _ms(lv.p95_ms), _ms(lv.p99_ms),
            _pct(lv.error_rate), _pct(lv.rate_429)]


def _det_cells(d: DeterminismStats) -> list[str]:
    spread = "n/a" if d.score_stdev_mean is None else f"{d.score_stdev_mean:.3g}"
    rng = "n/a" if d.score_range_max is None else f"{d.score_range_max:.3g}"
    return [d.config, str(d.canaries), str(d.repeats), _pct(d.exact_agreement),
            _pct(d.normalized_agreement), spread, rng, str(d.errors)]


# -- terminal ------------------------------------------------------------------------------------

def terminal_lines(result: RunResult) -> list[str]:
    lines = []
    for label, routes in (("routes", result.routes), ("baseline routes", result.baseline_routes)):
        if routes:
            lines.append(f"{label}: " + " | ".join(
                f"{s.route} {_pct(s.share)} ({s.calls} calls; p50 "
                f"{_ms(s.metrics.get('latency_p50_ms'))}, p95 "
                f"{_ms(s.metrics.get('latency_p95_ms'))}, "
                f"{_usd(s.metrics.get('cost_per_1k_usd'))}/1k, hallucination "
                f"{_pct(s.metrics.get('hallucination_rate'))}, pass "
                f"{_pct(s.metrics.get('pass_rate'))})" for s in routes))
    if result.blended_cost is not None:
        text = f"blended cost ({_mix(result.blended_cost)}): candidate " \
               f"{_blend_text(result.blended_cost)}"
        if result.baseline_blended_cost is not None:
            text += f"; baseline {_blend_text(result.baseline_blended_cost)}"
        lines.append(text)
    if result.load is not None:
        for lv in result.load.levels:
            lines.append(f"load c={lv.concurrency} {lv.config}: {lv.requests} requests, "
                         f"{lv.throughput_rps:.1f}/s, p50 {_ms(lv.p50_ms)}, p95 {_ms(lv.p95_ms)}, "
                         f"p99 {_ms(lv.p99_ms)}, errors {_pct(lv.error_rate)}, 429s "
                         f"{_pct(lv.rate_429)}" + (" (cut by the time cap)" if lv.truncated
                                                   else ""))
        lines += [f"load: {n}" for n in result.load.notes]
    if result.determinism is not None:
        for d in (result.determinism.candidate, result.determinism.baseline):
            if d is not None:
                lines.append(f"determinism {d.config}: {d.canaries} canaries x {d.repeats}, "
                             f"agree {_pct(d.exact_agreement)} exact, "
                             f"{_pct(d.normalized_agreement)} normalised; score stdev "
                             f"{_det_cells(d)[5]}, max range {_det_cells(d)[6]}")
    return lines


# -- Markdown ------------------------------------------------------------------------------------

def markdown_lines(result: RunResult) -> list[str]:
    lines: list[str] = []
    if result.routes:
        lines += ["### Routes", ""]
        rows = [[code(f"{label}: {s.route}" if label else s.route),
                 *(cell(c) for c in _route_cells(s)), code(_models(s))]
                for label, routes in (("", result.routes), ("baseline", result.baseline_routes))
                for s in routes]
        lines += [*table(["route", *ROUTE_HEAD, "models"], rows), ""]
    if result.blended_cost is not None:
        lines += ["### Blended cost", "", "Mix: " + code(_mix(result.blended_cost), table=False)
                  + ".", ""]
        rows = [["candidate", cell(_usd(result.blended_cost.per_1k_usd)),
                 cell(_usd(result.blended_cost.per_month_usd))]]
        if result.baseline_blended_cost is not None:
            rows.append(["baseline", cell(_usd(result.baseline_blended_cost.per_1k_usd)),
                         cell(_usd(result.baseline_blended_cost.per_month_usd))])
        month = f"per month ({result.blended_cost.monthly_requests:,.0f} requests)"
        lines += [*table(["config", "per 1k requests", month], rows), ""]
    if result.load is not None:
        lines += ["### Load profile", ""]
        lines += [*table(LOAD_HEAD, [[cell(c) for c in _load_cells(lv)]
                                      for lv in result.load.levels]), ""]
    if result.determinism is not None:
        lines += ["### Determinism", ""]
        stats = [d for d in (result.determinism.candidate, result.determinism.baseline) if d]
        lines += [*table(DET_HEAD, [[cell(c) for c in _det_cells(d)] for d in stats]), ""]
    return lines


# -- HTML ----------------------------------------------------------------------------------------

NUM = ' class="num"'


def _html_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ['<table class="plain"><thead><tr>']
    out += [f"<th>{escape(h)}</th>" for h in head]
    out.append("</tr></thead><tbody>")
    for row in rows:
        cells = [f"<td{NUM if i else ''}>{escape(c)}</td>" for i, c in enumerate(row)]
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def html_section(result: RunResult) -> Markup:
    """The 'Production checks' section, or nothing when none was configured."""
    parts: list[str] = []
    if result.routes:
        rows = [[f"{label}{s.route}", *_route_cells(s), _models(s)]
                for label, routes in (("", result.routes),
                                      ("baseline: ", result.baseline_routes)) for s in routes]
        parts += ["<h3>Routes</h3>", _html_table(["route", *ROUTE_HEAD, "models"], rows)]
    if result.blended_cost is not None:
        b = result.blended_cost
        rows = [["candidate", _usd(b.per_1k_usd), _usd(b.per_month_usd)]]
        if result.baseline_blended_cost is not None:
            bb = result.baseline_blended_cost
            rows.append(["baseline", _usd(bb.per_1k_usd), _usd(bb.per_month_usd)])
        parts += [f"<h3>Blended cost</h3><p>Mix: {escape(_mix(b))}.</p>",
                  _html_table(["config", "per 1k requests",
                               f"per month ({b.monthly_requests:,.0f} requests)"], rows)]
    if result.load is not None:
        series = []
        for config in ("candidate", "baseline"):
            pts = [(lv.concurrency, lv.p50_ms, lv.p95_ms) for lv in result.load.levels
                   if lv.config == config]
            if pts:
                series.append((config, pts))
        chart = charts.latency_vs_concurrency("chart-load", series)
        notes = "".join(f'<p class="hint">{escape(n)}</p>' for n in result.load.notes)
        how = " (candidate and baseline batches interleaved)" if result.load.interleaved else ""
        parts += ["<h3>Load profile</h3>", f'<figure class="wide"><figcaption>Latency vs '
                  f"concurrency{how}</figcaption>{chart}</figure>", notes,
                  _html_table(LOAD_HEAD, [_load_cells(lv) for lv in result.load.levels])]
    if result.determinism is not None:
        stats = [d for d in (result.determinism.candidate, result.determinism.baseline) if d]
        parts += ["<h3>Determinism</h3>", _html_table(DET_HEAD, [_det_cells(d) for d in stats])]
        disagreeing = result.determinism.candidate.disagreeing
        if disagreeing:
            more = f" and {len(disagreeing) - 50} more" if len(disagreeing) > 50 else ""
            parts.append(f'<p class="hint">Candidate canaries whose answers differ: '
                         f'{escape(", ".join(disagreeing[:50]) + more)}</p>')
    if not parts:
        return Markup("")
    # Every piece above is a constant or went through escape() (charts escape their own).
    return Markup('<section id="production"><h2>Production checks</h2>' + "".join(parts)
                  + "</section>")
