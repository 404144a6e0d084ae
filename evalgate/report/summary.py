"""Plain-text views of a run result, shared by the terminal, the gate items' failure text,
JUnit, Markdown and the CLI. No pytest here: reports and the CLI import it without pytest."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from evalgate.gate.verdicts import fmt
from evalgate.report.choice import terminal_lines as choice_lines
from evalgate.report.production import terminal_lines  # routes, load, determinism
from evalgate.report.review import review_facts
from evalgate.results import STOPPED_CLASS, GuardrailVerdict, Record, RunResult

# Line breaks, C0/C1 controls (ESC starts ANSI sequences), DEL, and the Unicode line separators
# and bidirectional overrides that make a terminal show other text than the bytes say.
_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r"}


def one_line(text: str) -> str:
    """Untrusted text (a model's answer, a judge's reason, a provider's error body) for a
    terminal or CI log: on one line with control characters as visible escapes, so it can
    neither rewrite the screen (ANSI escapes) nor begin a line a CI runner executes as a
    command (GitHub Actions reads `::error::...` or `::add-mask::...` at a line's start)."""
    return _UNSAFE.sub(lambda m: _NAMED.get(m.group(), f"\\u{ord(m.group()):04x}"), text)


def _call_text(name: str, arguments: Any) -> str:
    try:
        args = json.dumps(arguments, ensure_ascii=False, sort_keys=True, separators=(", ", ": "))
    except (TypeError, ValueError):
        args = repr(arguments)
    return one_line(f"{name}({args if len(args) <= 300 else args[:300] + '...'})")


def tool_call_lines(record: Record) -> list[str]:
    """The answer's tool calls beside the canary's expected call, one line each (model
    output: passed through `one_line`; the renderers escape it like any answer)."""
    lines = [f"tool call: {_call_text(t.name, t.arguments)}" for t in record.tool_calls]
    expected = record.expected_tool_call
    if expected is not None:
        if not record.tool_calls:
            lines.append("tool call: (none)")
        lines.append(f"expected: {_call_text(expected.name, expected.arguments)}")
    return lines


def image_lines(record: Record) -> list[str]:
    """The canary's image files by name (the HTML report shows small ones as thumbnails)."""
    return [one_line("images: " + ", ".join(record.images))] if record.images else []


def canary_problem(record: Record) -> str | None:
    """Why a canary fails, in a few lines a developer can act on; None when it holds.
    Everything the model or provider wrote is passed through `one_line`."""
    if record.error_class == STOPPED_CLASS:
        return one_line(record.error_message or "not made")
    if not record.ok:
        tries = len(record.attempts)
        return (f"call failed after {tries} attempt(s): {record.error_class}: "
                f"{one_line(record.error_message or '')}")
    if record.passed:
        return None
    failed = [c for c in record.criteria if not c.passed]
    label = "hallucination" if record.hallucination else "rubric failed"
    lines = [f"{label}: " + "; ".join(f"{c.id} ({c.check}): {one_line(c.detail or '')}"
                                      for c in failed)]
    answer = record.text or ""
    lines.append("answer: " + one_line(answer if len(answer) <= 500 else answer[:500] + "..."))
    return "\n".join(lines + tool_call_lines(record) + image_lines(record))


def failure_text(verdict: GuardrailVerdict) -> str:
    """The gate item's failure message: the plain sentence, then the evidence."""
    reason = verdict.reason
    lines = [reason if reason.endswith(verdict.verdict) else f"{verdict.verdict}: {reason}"]
    lines += [f"  {line}" for line in evidence_lines(verdict)]
    return "\n".join(lines)


def evidence_lines(v: GuardrailVerdict) -> list[str]:
    lines = [f"test: {v.test}"]
    facts = []
    if v.p_value is not None:
        facts.append(f"p = {v.p_value:.3g}")
    if v.p_regression_holm is not None:
        facts.append(f"regression p (Holm) = {v.p_regression_holm:.3g}")
    facts.append(f"n = {v.n_canaries} canaries x {v.n_samples} sample(s)")
    if v.discordant:
        facts.append(f"discordant pairs: {v.discordant[0]} worse, {v.discordant[1]} better")
    lines.append(", ".join(facts))
    power = []
    if v.mde is not None:
        power.append(f"detectable at 80% power: {effect_text(v, v.mde)}")
    if v.min_passable_margin is not None:
        smallest = effect_text(v, v.min_passable_margin)
        power.append(f"smallest margin this run could pass: {smallest}")
    if power:
        lines.append(", ".join(power))
    if v.note:
        lines.append(f"note: {v.note}")
    return lines


def effect_text(v: GuardrailVerdict, value: float | None) -> str:
    """A value on the guardrail's effect scale: x1.234 for ratios, the metric's unit else."""
    if value is None:
        return "n/a"
    if v.effect_kind == "ratio":
        return f"x{value:.3f}"
    return fmt(v.metric, value)


def gate_cells(v: GuardrailVerdict) -> tuple[str, str, str, str, str]:
    """The gate table's value, baseline, effect [CI], margin and p columns for one verdict."""
    effect = ""
    if v.effect is not None:
        effect = (f"{effect_text(v, v.effect)} [{effect_text(v, v.ci_low)}, "
                  f"{effect_text(v, v.ci_high)}]")
    elif v.ci_low is not None or v.ci_high is not None:
        effect = f"[{fmt(v.metric, v.ci_low)}, {fmt(v.metric, v.ci_high)}]"
    margin = ""
    if v.threshold is not None:
        margin = " ".join(f"{k} {fmt(v.metric, b)}" for k, b in
                          (("max", v.threshold.max), ("min", v.threshold.min)) if b is not None)
    elif v.margin is not None:  # a ratio guardrail's margin is a ratio, with data or not
        ratio = v.effect_kind == "ratio" or v.guardrail.split("_vs_")[0].endswith("_ratio")
        margin = f"x{v.margin:.3f}" if ratio else fmt(v.metric, v.margin)
    p = "" if v.p_value is None else f"{v.p_value:.3g}"
    baseline = fmt(v.metric, v.baseline) if v.baseline is not None else ""
    return fmt(v.metric, v.value), baseline, effect, margin, p


def holm_text(v: GuardrailVerdict) -> str:
    """The Holm-adjusted p of "the candidate is worse than the baseline" (it can FAIL a
    guardrail inside its margin), blank for a guardrail without that test."""
    return "" if v.p_regression_holm is None else f"{v.p_regression_holm:.3g}"


def reuse_text(result: RunResult) -> str:
    """', N answers from cache (latency measured when cached), M from the journal'."""
    parts = []
    if result.calls_from_cache:
        parts.append(f"{result.calls_from_cache} answers from cache (their latency from cache)")
    if result.calls_from_journal:
        parts.append(f"{result.calls_from_journal} resumed from the journal")
    return "".join(f"; {p}" for p in parts)


def calls_made_text(result: RunResult, made: int | None = None) -> str:
    """`candidate 228 made (231 HTTP attempts), baseline 228 made (231 HTTP attempts)`: one count
    per config, the same in every report; the judge's calls are counted apart (judge_calls).
    A result saved before the per-config counts shows its totals."""
    by = result.calls_by_config
    if not by:
        if made is None:
            return f"{result.calls_made} HTTP attempts"
        return f"{made} made ({result.calls_made} HTTP attempts)"
    text = ", ".join(f"{config} {c.made} made ({c.attempts} HTTP attempts)"
                     for config, c in by.items())
    probes = result.calls_made - sum(c.attempts for c in by.values())
    if probes > 0:  # the load profile's and determinism's own requests
        text += f", {probes} HTTP attempts by the production checks"
    return text


def spend_text(result: RunResult) -> str:
    """Calls made and saved (cache, sequential stop), spend and wall time, in one sentence."""
    answered = len(result.records) + (len(result.baseline_records)
                                      if result.baseline is not None
                                      and result.baseline.kind != "result" else 0)
    unmade = sum(r.error_class == STOPPED_CLASS for r in result.records) + (
        sum(r.error_class == STOPPED_CLASS for r in result.baseline_records))
    made = max(0, answered - result.calls_from_cache - result.calls_from_journal - unmade)
    saved = result.calls_from_cache + result.calls_from_journal + result.calls_saved_sequential
    text = f"calls: {calls_made_text(result, made)}"
    if result.calls_planned is not None:
        text += f" of {result.calls_planned} planned"
    parts = [f"{result.calls_from_cache} from cache"]
    if result.calls_from_journal:
        parts.append(f"{result.calls_from_journal} resumed from the journal")
    seq = result.sequential
    if seq is not None:
        parts.append(f"{result.calls_saved_sequential} by a sequential stop after look "
                     f"{seq.looks_done}/{seq.looks_planned} ({seq.reason})"
                     if seq.stopped_early else "0 by sequential looks (no early stop)")
    text += f", {saved} saved ({', '.join(parts)})"
    spend = f"spend {fmt('total_usd', result.total_cost_usd)}"
    if result.load is not None and result.load.levels:
        load_attempts = sum(lv.attempts for lv in result.load.levels)
        load_cost = sum(lv.cost_usd for lv in result.load.levels)
        spend += (f" (the load profile's {load_attempts} attempts and "
                  f"{fmt('total_usd', load_cost)} included)")
    return f"{text}; {spend}; wall time {result.wall_time_s:.2f}s"


def fault_facts(counts: dict[str, int]) -> str:
    """Throttled time and fallback answers, when there were any (", throttled 1.2s")."""
    text = ""
    if counts.get("throttled_ms"):
        text += (f", throttled {counts['throttled_ms'] / 1000:.2f}s summed over calls "
                 "(not in latency)")
    if counts.get("fallback_answers"):
        text += f", {counts['fallback_answers']} answered by the fallback"
    return text


def error_summary(records: Sequence[Record], top: int = 3) -> list[str]:
    """Per config, the most frequent error classes with one example message each."""
    lines = []
    for config in dict.fromkeys(r.config for r in records):
        failed = [r for r in records if r.config == config and not r.ok and r.error_class]
        counts = Counter(r.error_class for r in failed)
        ranked = sorted(counts.most_common(), key=lambda kv: kv[0] == STOPPED_CLASS)
        for error_class, n in ranked[:top]:  # the calls an early stop left unmade come last
            example = next(r.error_message for r in failed if r.error_class == error_class)
            lines.append(f"{config} errors: {error_class} x{n}, e.g. "
                         f"{one_line(example or '(no message)')}")
        if len(counts) > top:
            rest = sum(n for _, n in ranked[top:])
            lines.append(f"{config} errors: {rest} more in {len(counts) - top} other class(es)")
    return lines


def summary_lines(result: RunResult) -> list[str]:
    """The terminal's gate section: run facts, the gate table, the sentences and warnings."""
    c = result.counts
    lines = [f"candidate {result.candidate.name} ({result.candidate.provider}, "
             f"{result.candidate.model}); {c['canaries']} canaries x {result.samples} "
             f"sample(s), {c['errors']} candidate errors" + reuse_text(result)
             + fault_facts(c),
             spend_text(result)]
    if result.partial:
        lines.insert(0, "PARTIAL run: interrupted before every call was made")
    live_baseline = result.baseline is not None and result.baseline.kind != "result"
    lines += error_summary([*result.records, *(result.baseline_records if live_baseline
                                               else [])])
    if result.judge_calls or result.judge_calls_from_cache:
        agreement = (f", vote agreement {result.judge_agreement:.0%}"
                     if result.judge_agreement is not None else "")
        cached = (f", {result.judge_calls_from_cache} verdicts from cache"
                  if result.judge_calls_from_cache else "")
        lines.append(f"judge {result.judge_model}: {result.judge_calls} calls (not in the "
                     f"calls above){cached}, "
                     f"${result.judge_cost_usd:.4f} (apart from the candidate's spend), "
                     f"{result.judge_errors} judge errors{agreement}")
    lines += [f"{name}: {text}" for name, text in review_facts(result)]
    if result.baseline is not None:
        b = result.baseline
        lines.append(f"baseline {b.name} ({b.source}); compared on "
                     f"{result.comparison.compared if result.comparison else 0} canaries")
    rows: list[tuple[str, ...]] = [
        ("guardrail", "value", "baseline", "effect [CI]", "margin", "p within margin",
         "p worse (Holm)", "verdict")]
    rows += [(v.guardrail, *gate_cells(v), holm_text(v), v.verdict) for v in result.verdicts]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
              for row in rows]
    lines += [f"- {v.reason}" for v in result.verdicts if v.kind != "point"]
    if result.family_wise:
        lines.append(f"- the gate: {result.family_wise}")
    shown = {v.metric for v in result.verdicts}
    other = [f"{m} {fmt(m, value)}" for m, value in result.metrics.items() if m not in shown]
    if other:
        lines.append("other metrics: " + ", ".join(other))
    lines += terminal_lines(result)
    lines += choice_lines(result)
    lines += [f"warning: {w}" for w in result.warnings]
    return lines
