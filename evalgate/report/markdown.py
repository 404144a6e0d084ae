"""The gate as Markdown, for `$GITHUB_STEP_SUMMARY` and as a pull-request comment body.

Everything here ends up rendered by GitHub next to the pull request, and much of it comes from
people or models evalgate does not control: answers, error messages, canary ids, model names. So
no text from a result reaches the Markdown raw:

- identifiers, problems and other short values go into inline code spans (no links, mentions,
  HTML or emphasis are recognised inside them), with a delimiter longer than any backtick run in
  the value and `|` escaped so a table row cannot be split;
- answer excerpts go into fenced code blocks whose fence is longer than any backtick run in the
  answer, so a "```" or `</details>` in an answer stays text;
- sentences (verdict reasons, warnings) are prose: every Markdown punctuation character is
  backslash-escaped and `@`/`#` get a zero-width space after them, which stops GitHub's mention,
  issue-reference, e-mail and URL autolinks, which run on text.

PR comments are capped at 65,536 characters and a summary should stay readable, so the output
never exceeds `limit`: answer excerpts go first, then table rows and warnings, and the text says
how many were left out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from evalgate.gate.verdicts import blocks, fmt
from evalgate.report.choice import markdown_lines as choice_markdown
from evalgate.report.mdtext import (
    EXCERPT_CHARS,
    cell,
    code,
    code_block,
    prose,
    table,
)
from evalgate.report.production import markdown_lines
from evalgate.report.review import review_facts
from evalgate.report.summary import (
    canary_problem,
    gate_cells,
    image_lines,
    spend_text,
    tool_call_lines,
)
from evalgate.results import GuardrailVerdict, Record, RunResult

MAX_ROWS = 50
MAX_EXCERPTS = 20
ARTIFACT = "evalgate-reports"


def gate_row(v: GuardrailVerdict, on_inconclusive: str) -> list[str]:
    """The terminal's gate table columns, one verdict."""
    value, baseline, effect, margin, p = gate_cells(v)
    verdict = f"**{v.verdict}**"
    if v.verdict == "INCONCLUSIVE" and not blocks(v.verdict, on_inconclusive):
        verdict += " (not blocking)"
    return [code(v.guardrail), *(cell(c) for c in (value, baseline, effect, margin, p)),
            verdict]


@dataclass
class Canary:
    """One canary's candidate (and baseline) answers, for the regressions table."""

    key: str
    cand: list[Record]
    base: list[Record]

    @property
    def cand_failed(self) -> list[Record]:
        return [r for r in self.cand if not (r.ok and r.passed)]

    @property
    def drop(self) -> float:
        """How much less often the candidate passes than the baseline did (0 without one)."""
        if not self.base or not self.cand:
            return 0.0
        cand = sum(1 for r in self.cand if r.ok and r.passed) / len(self.cand)
        base = sum(1 for r in self.base if r.ok and r.passed) / len(self.base)
        return base - cand


def ranked_canaries(result: RunResult) -> tuple[list[Canary], int]:
    """Regressions first (baseline passed more often), then other failing canaries; and how
    many of them are regressions."""
    by_key: dict[str, Canary] = {}
    for record in result.records:
        by_key.setdefault(record.key, Canary(record.key, [], [])).cand.append(record)
    for record in result.baseline_records:
        if record.key in by_key:
            by_key[record.key].base.append(record)
    regressions = sorted((c for c in by_key.values() if c.drop > 0),
                         key=lambda c: (-c.drop, c.key))
    failing = sorted((c for c in by_key.values() if c.drop <= 0 and c.cand_failed),
                     key=lambda c: (-len(c.cand_failed), c.key))
    return regressions + failing, len(regressions)


def _passed(records: list[Record]) -> str:
    if not records:
        return "n/a"
    return f"{sum(1 for r in records if r.ok and r.passed)}/{len(records)}"


def _first_line(record: Record) -> str:
    problem = canary_problem(record)
    return problem.splitlines()[0] if problem else ""


def _answer(record: Record) -> str:
    if not record.ok:
        return f"[call failed: {record.error_class}] {record.error_message or ''}"
    return "\n".join([record.text or "", *tool_call_lines(record), *image_lines(record)]
                     ).strip("\n")


def _excerpt(canary: Canary) -> list[str]:
    worst = canary.cand_failed[0] if canary.cand_failed else canary.cand[0]
    lines = [f"{code(canary.key, table=False)}, candidate, sample {worst.sample}:", "",
             code_block(_answer(worst)), ""]
    if canary.base:
        good = next((r for r in canary.base if r.ok and r.passed), canary.base[0])
        lines += [f"baseline, sample {good.sample}:", "", code_block(_answer(good)), ""]
    return lines


def _header(result: RunResult) -> list[str]:
    c = result.candidate
    blocking = blocks(result.verdict, result.on_inconclusive)
    lines = [f"## evalgate gate: **{result.verdict}**"
             + ("" if blocking or result.verdict != "INCONCLUSIVE" else " (not blocking)")
             + (" (PARTIAL run: interrupted)" if result.partial else ""), ""]
    who = f"Candidate {code(c.name, table=False)} ({code(c.provider, table=False)}, " \
          f"{code(c.model, table=False)})"
    if result.baseline is not None:
        b = result.baseline
        compared = result.comparison.compared if result.comparison else 0
        who += f" vs baseline {code(b.name, table=False)} ({code(b.source, table=False)}), " \
               f"compared on {compared} canaries"
    lines += [who + ".", ""]
    n = result.counts
    facts = [f"{n.get('canaries', 0)} canaries x {result.samples} sample(s)",
             f"{n.get('calls', 0)} calls", f"{n.get('errors', 0)} errors",
             *([f"throttled {n['throttled_ms'] / 1000:.2f} s summed over calls (not in latency)"]
               if n.get("throttled_ms") else []),
             *([f"**{n['fallback_answers']} answered by the fallback model**"]
               if n.get("fallback_answers") else []),
             f"spend {fmt('total_usd', result.total_cost_usd)}",
             *([f"{result.calls_from_cache} answers from cache (latency measured when cached)"]
               if result.calls_from_cache else []),
             *([f"judge {result.judge_calls} calls"
                + (f" ({result.judge_calls_from_cache} verdicts from cache)"
                   if result.judge_calls_from_cache else "")
                + f", {fmt('total_usd', result.judge_cost_usd)}"]
               if result.judge_calls or result.judge_calls_from_cache else []),
             f"run {code(result.run_id, table=False)}"]
    if result.environment.git_commit:
        facts.append(f"commit {code(result.environment.git_commit[:12], table=False)}")
    lines += [", ".join(facts) + ".", "", prose("C" + spend_text(result)[1:] + ".", 2000), ""]
    review = review_facts(result)
    if review:
        lines += ["Human review: " + prose("; ".join(f"{k}: {v}" for k, v in review), 2000)
                  + ".", ""]
    return lines


def _render(result: RunResult, ranked: list[Canary], n_regressions: int, html_name: str | None,
            rows: int, excerpts: int, warnings: int, size_note: bool) -> str:
    lines = _header(result)
    lines += table(["guardrail", "value", "baseline", "effect [CI]", "margin",
                   "p within margin", "verdict"],
                    [gate_row(v, result.on_inconclusive) for v in result.verdicts])
    lines.append("")
    lines += [f"- {prose(v.reason)}" for v in result.verdicts if v.kind != "point"]
    if result.family_wise:
        lines.append(f"- the gate: {prose(result.family_wise)}")
    failed = sum(1 for r in result.records if not (r.ok and r.passed))
    if failed:
        policy = ("these fail the test run" if result.canary_failures == "fail"
                  else "reported only (canary\\_failures: report)")
        lines.append(f"- {failed} of {len(result.records)} canary answers failed their rubric "
                     f"or call: {policy}")
    lines.append("")

    lines += markdown_lines(result)
    lines += choice_markdown(result)
    if result.warnings:
        lines += ["### Warnings", ""]
        lines += [f"- {prose(w)}" for w in result.warnings[:warnings]]
        if warnings < len(result.warnings):
            lines.append(f"- ({len(result.warnings) - warnings} more warnings not shown)")
        lines.append("")
    if ranked:
        title = "Top regressions" if n_regressions else "Failed canaries"
        lines += [f"### {title}", ""]
        if n_regressions:
            lines += [f"{n_regressions} canaries pass less often than on the baseline; "
                      f"{len(ranked) - n_regressions} other canaries fail.", ""]
        shown = ranked[:rows]
        if shown:
            lines += table(["canary", "candidate passed", "baseline passed", "problem"], [
                [code(c.key), _passed(c.cand), _passed(c.base),
                 code(_first_line(c.cand_failed[0])) if c.cand_failed else " "]
                for c in shown])
            lines.append("")
        if len(ranked) > rows:
            lines += [f"({len(ranked) - rows} more canaries not shown.)", ""]
        if excerpts:
            lines += ["<details>", f"<summary>Answer excerpts ({min(excerpts, len(shown))} "
                      f"canaries, first {EXCERPT_CHARS} characters)</summary>", ""]
            for canary in shown[:excerpts]:
                lines += _excerpt(canary)
            lines += ["</details>", ""]
        elif shown:
            lines += ["(Answer excerpts left out to keep this summary short.)", ""]
    if size_note:
        lines += ["(Shortened to fit the size limit.)", ""]
    if html_name:
        lines.append(f"Full report: {code(html_name, table=False)} in the "
                     f"`{ARTIFACT}` artifact.")
    return "\n".join(lines).rstrip() + "\n"


def render_markdown(result: RunResult, html_name: str | None = "evalgate.html",
                    limit: int = 65536) -> str:
    """The gate summary as GitHub Markdown, never longer than `limit` characters."""
    ranked, n_regressions = ranked_canaries(result)
    rows = min(len(ranked), MAX_ROWS)
    excerpts = min(rows, MAX_EXCERPTS)
    warnings = len(result.warnings)

    def render() -> str:
        cut = (rows < min(len(ranked), MAX_ROWS) or excerpts < min(rows, MAX_EXCERPTS)
               or warnings < len(result.warnings))
        return _render(result, ranked, n_regressions, html_name, rows, excerpts, warnings, cut)

    text = render()
    while len(text) > limit and excerpts > 0:  # excerpts first...
        excerpts = excerpts // 2 if excerpts > 4 else excerpts - 1
        text = render()
    while len(text) > limit and rows > 0:  # ...then table rows...
        rows = rows // 2 if rows > 8 else rows - 1
        text = render()
    while len(text) > limit and warnings > 0:  # ...then warnings
        warnings = warnings // 2 if warnings > 8 else warnings - 1
        text = render()
    if len(text) > limit:  # a limit smaller than the gate table: cut at a line boundary
        note = "\n(Truncated to fit the size limit.)\n"
        head = text[:max(limit - len(note), 0)]
        head = head[:head.rfind("\n") + 1] if "\n" in head else ""
        text = (head + note)[:limit]
    return text


def append_step_summary(markdown: str) -> bool:
    """Append to the GitHub Actions job summary when running there; False elsewhere."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return False
    with Path(target).open("a", encoding="utf-8") as fh:
        fh.write(markdown if markdown.endswith("\n") else markdown + "\n")
    return True
