"""The leaderboard and the recommendation of an N-candidate run, as terminal lines, Markdown,
HTML and the figures JUnit properties carry. One module for all four formats, so they say the
same thing in the same words."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup

from evalgate.report.charts import escape
from evalgate.report.mdtext import prose, table
from evalgate.results import Choice, Figure, Leaderboard, RunResult, Standing

COLUMNS = (("pass_rate", "pass rate"), ("hallucination_rate", "hallucination"),
           ("latency_p50_ms", "p50"), ("latency_p95_ms", "p95"), ("ttft_p95_ms", "TTFT p95"),
           ("cost_per_1k_usd", "cost / 1k"), ("cost_per_success_usd", "cost / success"))


def figure_text(metric: str, fig: Figure | None) -> str:
    """'91.0% [87.1%, 93.8%]', '412 ms [380, 450]', '$1.23 [1.10, 1.36]'; '-' when unknown."""
    if fig is None or fig.value is None:
        return "-"

    def one(v: float | None) -> str:
        if v is None:
            return "?"
        if metric.endswith("_rate"):
            return f"{v:.1%}"
        if metric.endswith("_ms"):
            return f"{v:,.0f}"
        return f"{v:.4g}"

    unit = " ms" if metric.endswith("_ms") else ""
    money = "$" if metric.endswith("_usd") else ""
    return f"{money}{one(fig.value)}{unit} [{one(fig.low)}, {one(fig.high)}]"


def columns(choice: Choice) -> list[tuple[str, str]]:
    """The figure columns this board has data for (TTFT only when some config streamed)."""
    return [(m, h) for m, h in COLUMNS
            if any(m in s.figures for s in choice.standings) or m == "pass_rate"]


def gate_verdicts(result: RunResult) -> dict[str, str]:
    out = {result.candidate.name: result.primary_verdict or result.verdict}
    out.update({a.info.name: a.verdict for a in result.alternatives})
    return out


def standing_cells(s: Standing, cols: Sequence[tuple[str, str]],
                   verdicts: dict[str, str]) -> list[str]:
    if s.status == "no data":
        return [s.name, "no data", *(["-"] * len(cols)), "-", "-", verdicts.get(s.name, "-")]
    tied = ", ".join(m.removesuffix("_rate") for m in s.tied_with_best) or "-"
    ni = "-" if s.non_inferior is None else ("yes" if s.non_inferior else "no")
    return [s.name, str(s.n_canaries), *(figure_text(m, s.figures.get(m)) for m, _ in cols),
            tied, ni, verdicts.get(s.name, "-")]


def head(cols: Sequence[tuple[str, str]]) -> list[str]:
    return ["config", "canaries", *(h for _, h in cols), "as good as the best on",
            "non-inferior", "gate"]


def recommendation_text(choice: Choice) -> str:
    if choice.verdict == "RECOMMEND":
        return f"recommended: {choice.recommended} ({choice.reason})"
    if choice.verdict == "NONE_NON_INFERIOR":
        return f"recommended: {choice.recommended}, the best ({choice.reason})"
    return f"no recommendation: {choice.reason}"


def method_text(board: Leaderboard) -> str:
    margins = ", ".join(f"{m} {v:.1%}" for m, v in board.margins.items() if v is not None)
    return (f"intervals: two-sided {1 - 2 * board.alpha:.0%} (each side a one-sided "
            f"{1 - board.alpha:.0%} bound); cost per successful answer = the cost of every "
            f"call (retries and fallback answers included) over the answers that passed "
            f"their rubric, Fieller interval; {board.correction}; margins: {margins or 'none'}")


def tag_row(c: Choice) -> list[str]:
    return [c.tag or "", str(c.n_canaries), c.verdict, c.recommended or "-", c.best or "-"]


TAG_HEAD = ["tag", "canaries", "choice", "recommended", "best"]


def terminal_lines(result: RunResult) -> list[str]:
    board = result.leaderboard
    if board is None:
        return []
    cols = columns(board.overall)
    rows = [head(cols)] + [standing_cells(s, cols, gate_verdicts(result))
                           for s in board.overall.standings]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"leaderboard ({len(board.overall.standings)} configs, gate.require: "
             f"{result.require}):"]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
              for r in rows]
    lines.append(recommendation_text(board.overall))
    lines += [f"  tag {c.tag}: {c.verdict}" + (f", {c.recommended}" if c.recommended else "")
              for c in board.by_tag]
    lines.append(f"  ({method_text(board)})")
    return lines


def markdown_lines(result: RunResult) -> list[str]:
    board = result.leaderboard
    if board is None:
        return []
    cols = columns(board.overall)
    verdicts = gate_verdicts(result)
    lines = ["### Leaderboard", ""]
    lines += table(head(cols), [standing_cells(s, cols, verdicts)
                                for s in board.overall.standings])
    lines += ["", f"**{prose(recommendation_text(board.overall), 3000)}**", ""]
    if board.by_tag:
        lines += table(TAG_HEAD, [tag_row(c) for c in board.by_tag])
        lines.append("")
    lines += [prose(method_text(board), 2000), ""]
    return lines


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ['<table class="plain"><thead><tr>']
    out += [f"<th>{escape(h)}</th>" for h in header]
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def html_section(result: RunResult) -> Markup:
    """The 'Choosing a model' section (leaderboard, Pareto chart, per-tag choice), or nothing."""
    from evalgate.report.pareto import pareto

    board = result.leaderboard
    if board is None:
        return Markup("")
    cols = columns(board.overall)
    verdicts = gate_verdicts(result)
    parts = ["<h3>Leaderboard</h3>",
             _html_table(head(cols), [standing_cells(s, cols, verdicts)
                                      for s in board.overall.standings]),
             f"<p><strong>{escape(recommendation_text(board.overall))}</strong></p>",
             f'<figure class="wide"><figcaption>Cost per successful answer vs pass rate'
             f"</figcaption>{pareto('chart-pareto', board.overall.standings)}</figure>"]
    if board.by_tag:
        parts += ["<h3>Per tag</h3>", _html_table(TAG_HEAD, [tag_row(c) for c in board.by_tag])]
    parts.append(f'<p class="hint">{escape(method_text(board))}</p>')
    # Every piece above is a constant or went through escape() (the chart escapes its own).
    return Markup('<section id="choice"><h2>Choosing a model</h2>' + "".join(parts)
                  + "</section>")
