"""The HTML report: one self-contained file a release manager opens from a pull-request link.

Why it looks the way it does:
* Offline and self-contained: inline CSS, inline SVG (charts.py), one small inline script; a
  Content-Security-Policy allows nothing else (no network, no fonts, no images) and only that
  script, by its hash, so even a markup bug could not run a model's `<script>` or `onerror`.
* Hostile text: model answers, canary ids, tags, error messages and config values are data.
  jinja2 autoescaping is on; nothing derived from the result is marked safe except the SVG that
  charts.py builds from escaped parts.
* Readable with JavaScript off: every canary is in the HTML; the script only filters, sorts and
  pages. Big runs stay fast: answers are cut at `max_answer_chars`, long ones are collapsed, and
  each canary is a `content-visibility: auto` block the browser lays out only when on screen.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache, partial
from importlib import resources
from typing import Any

import jinja2
from markupsafe import Markup

from evalgate.gate.verdicts import blocks
from evalgate.report import charts
from evalgate.report.choice import html_section as choice_section
from evalgate.report.config_diff import config_rows
from evalgate.report.production import html_section as production_section
from evalgate.report.review import review_facts
from evalgate.report.summary import calls_made_text, spend_text, tool_call_lines
from evalgate.results import CriterionResult, GuardrailVerdict, Record, RunResult

MAX_ANSWER_CHARS = 2000   # per answer in the canary table; the JSON keeps the full text
COLLAPSE_CHARS = 320      # longer answers (or more than COLLAPSE_LINES lines) fold into <details>
COLLAPSE_LINES = 6
PREVIEW_CHARS = 160
PAGE_SIZE = 100           # canaries per page when JavaScript is on
MAX_TAGS_CHARTED = 40


# -- formatting ------------------------------------------------------------------------------

def usd(v: float) -> str:
    if v == 0:
        return "$0"
    if abs(v) >= 1:
        return f"${v:,.2f}"
    digits = min(max(2, 2 - math.floor(math.log10(abs(v)))), 12)
    return f"${v:.{digits}f}"


def ms(v: float) -> str:
    return f"{v:,.0f} ms" if abs(v) >= 100 else f"{v:.1f} ms"


def level(metric: str, v: float | None) -> str:
    """A metric's value for people: 16.7%, 419 ms, $0.0168, 79.3."""
    if v is None:
        return "n/a"
    if not math.isfinite(v):
        return "n/a"
    if metric.endswith("_rate"):
        return f"{100 * v:.1f}%"
    if metric.endswith("_ms"):
        return ms(v)
    if "usd" in metric:
        return usd(v)
    return f"{v:,.4g}"


def effect(v: GuardrailVerdict, x: float | None) -> str:
    """An effect, bound or margin in the guardrail's own terms: x1.07, +2.5 pts, 419 ms."""
    if x is None or not math.isfinite(x):
        return "n/a"
    if v.effect_kind == "ratio":
        return f"x{x:.3f}" if abs(x) < 10 else f"x{x:,.1f}"
    if v.effect_kind == "difference":
        if v.metric.endswith("_rate"):
            return f"{round(100 * x, 1) + 0.0:+.1f} pts"
        return f"{x:+.4g}"
    return level(v.metric, x)


def interval(v: GuardrailVerdict) -> str:
    """The effect and its interval, units once: x1.04 [0.958, 1.137], +40.0 [+28.2, +51.8] pts,
    [379 ms, 453 ms] for a level (its estimate is the value column)."""
    def bare(x: float | None, spec: str) -> str:
        return "n/a" if x is None or not math.isfinite(x) else format(x, spec)

    if v.effect_kind == "ratio" and v.effect is not None:
        return f"x{bare(v.effect, '.3f')} [{bare(v.ci_low, '.3f')}, {bare(v.ci_high, '.3f')}]"
    if v.effect_kind == "difference" and v.effect is not None:
        if v.metric.endswith("_rate"):
            scale = [None if x is None else 100 * x for x in (v.effect, v.ci_low, v.ci_high)]
            e, lo, hi = (bare(x, "+.1f") for x in scale)
            return f"{e} [{lo}, {hi}] pts"
        return f"{bare(v.effect, '+.4g')} [{bare(v.ci_low, '+.4g')}, {bare(v.ci_high, '+.4g')}]"
    if v.ci_low is None and v.ci_high is None:
        return ""
    return f"[{effect(v, v.ci_low)}, {effect(v, v.ci_high)}]"


def p_text(p: float | None) -> str:
    if p is None or not math.isfinite(p):
        return ""
    return f"{p:.2g}" if p >= 0.001 else f"{p:.1e}"


def limit_of(v: GuardrailVerdict) -> float | None:
    """The value the worse-side bound must stay inside, on the effect's own scale."""
    if v.threshold is not None:
        return v.threshold.max if v.worse == "higher" else v.threshold.min
    if v.margin is None:
        return None
    return -v.margin if v.effect_kind == "difference" and v.worse == "lower" else v.margin


# -- view models -----------------------------------------------------------------------------

@dataclass
class GateRow:
    guardrail: str
    kind: str
    test: str
    value: str
    baseline: str
    effect: str
    limit: str
    p: str
    p_holm: str
    mde: str
    n: str
    discordant: str
    passable: str
    verdict: str
    reason: str
    note: str | None


def gate_row(v: GuardrailVerdict) -> GateRow:
    eff = "" if v.kind == "point" else interval(v)
    limit = ""
    if v.threshold is not None:
        limit = " ".join(f"{name} {level(v.metric, b)}" for name, b in
                         (("max", v.threshold.max), ("min", v.threshold.min)) if b is not None)
    elif v.margin is not None:
        sign = "<=" if v.worse == "higher" else ">="
        limit = f"{sign} {effect(v, limit_of(v))}"
    return GateRow(
        guardrail=v.guardrail, kind=v.kind, test=v.test, value=level(v.metric, v.value),
        baseline="" if v.baseline is None else level(v.metric, v.baseline), effect=eff,
        limit=limit, p=p_text(v.p_value), p_holm=p_text(v.p_regression_holm),
        mde="" if v.mde is None else effect(v, v.mde),
        n=f"{v.n_canaries} x {v.n_samples}" if v.kind != "point" else "",
        discordant=(f"{v.discordant[0]} worse / {v.discordant[1]} better"
                    if v.discordant and len(v.discordant) >= 2 else ""),
        passable=("" if v.min_passable_margin is None
                  else effect(v, -v.min_passable_margin if v.effect_kind == "difference"
                              and v.worse == "lower" else v.min_passable_margin)),
        verdict=v.verdict, reason=v.reason, note=v.note)


@dataclass
class Answer:
    status: str  # pass | fail | error | ungraded
    label: str
    text: str
    preview: str | None
    chars: int
    truncated: bool
    criteria: list[CriterionResult]
    meta: str
    error: str | None
    tools: list[str] = field(default_factory=list)  # tool calls beside the expected one


def answer(r: Record, max_chars: int) -> Answer:
    text = r.text or ""
    if not r.ok:
        status, label = "error", "call failed"
    elif r.passed is None:
        status, label = "ungraded", "not graded"
    elif r.passed:
        status, label = "pass", "passed"
    else:
        status, label = "fail", "hallucination" if r.hallucination else "failed"
    shown = text[:max_chars]
    collapse = len(shown) > COLLAPSE_CHARS or shown.count("\n") >= COLLAPSE_LINES
    preview = " ".join(shown[:PREVIEW_CHARS].split()) if collapse else None
    meta = []
    if r.latency_ms is not None:
        meta.append(ms(r.latency_ms))
    if r.ttft_ms is not None:
        meta.append(f"TTFT {ms(r.ttft_ms)}")
    if r.input_tokens is not None or r.output_tokens is not None:
        est = " est." if r.usage_estimated else ""
        meta.append(f"{r.input_tokens if r.input_tokens is not None else '?'} in / "
                    f"{r.output_tokens if r.output_tokens is not None else '?'} out tok{est}")
    if r.cost_usd is not None:
        meta.append(usd(r.cost_usd))
    if r.finish_reason and r.finish_reason != "stop":
        meta.append(f"finish: {r.finish_reason}")
    if len(r.attempts) > 1:
        tries = ", ".join(str(a.status or a.error_class or "?") for a in r.attempts)
        meta.append(f"{len(r.attempts)} attempts ({tries})")
    error = None
    if not r.ok:
        error = f"{r.error_class or 'error'}: {r.error_message or '(no message)'}"
    return Answer(status, label, shown, preview, len(text), len(text) > max_chars,
                  list(r.criteria), " · ".join(meta), error, tool_call_lines(r))


@dataclass
class Sample:
    n: int
    cand: Answer | None
    base: Answer | None


# Only what evalgate writes for a canary image: a PNG/JPEG/GIF/WebP data URI (a saved result
# could have been edited; anything else shows as the file name).
_THUMBNAIL = re.compile(r"data:image/(?:png|jpeg|gif|webp);base64,[A-Za-z0-9+/]+={0,2}")


@dataclass(frozen=True)
class Thumb:
    name: str
    src: str | None


def thumbs(result: RunResult, key: str) -> list[Thumb]:
    return [Thumb(i.name, i.thumbnail if i.thumbnail and _THUMBNAIL.fullmatch(i.thumbnail)
                  else None) for i in result.images.get(key, [])]


@dataclass
class Canary:
    key: str
    tags: list[str]
    tag_ids: str
    flags: str
    outcome: str
    cand_summary: str
    base_summary: str
    samples: list[Sample]
    rank: tuple[Any, ...]
    latency: float
    cost: float
    images: list[Thumb] = field(default_factory=list)


def _passes(records: Sequence[Record]) -> int:
    return sum(1 for r in records if r.ok and r.passed)


def canaries(result: RunResult, tag_ids: dict[str, int], max_chars: int) -> list[Canary]:
    """One entry per canary (its K samples together): regressions first, then improvements,
    then failing or erroring canaries, then the rest."""
    cand: dict[str, list[Record]] = {}
    for r in result.records:
        cand.setdefault(r.key, []).append(r)
    base: dict[str, list[Record]] = {}
    for r in result.baseline_records:
        base.setdefault(r.key, []).append(r)
    has_baseline = result.baseline is not None
    out = []
    for key, recs in cand.items():
        recs.sort(key=lambda r: r.sample)
        brecs = sorted(base.get(key, []), key=lambda r: r.sample)
        by_sample = {r.sample: r for r in brecs}
        c_rate = _passes(recs) / len(recs)
        b_rate = _passes(brecs) / len(brecs) if brecs else None
        flags = []
        if b_rate is not None and c_rate < b_rate:
            flags.append("regression")
        if b_rate is not None and c_rate > b_rate:
            flags.append("improvement")
        if any(not r.ok for r in recs):
            flags.append("error")
        flags.append("passed" if c_rate == 1.0 else "failed")
        outcome = flags[0]
        rank_group = {"regression": 0, "improvement": 1, "error": 2, "failed": 2}.get(outcome, 3)
        delta = (b_rate - c_rate) if b_rate is not None else 0.0
        tags = list(dict.fromkeys(recs[0].tags))
        lat = [r.latency_ms for r in recs if r.ok and r.latency_ms is not None]
        samples = [Sample(r.sample, answer(r, max_chars),
                          answer(by_sample[r.sample], max_chars) if r.sample in by_sample
                          else None) for r in recs]
        out.append(Canary(
            key=key, tags=tags, tag_ids=" ".join(str(tag_ids[t]) for t in tags),
            flags=" ".join(flags), outcome=outcome,
            cand_summary=f"{_passes(recs)}/{len(recs)} passed",
            base_summary=(f"{_passes(brecs)}/{len(brecs)} passed" if brecs
                          else "not in baseline" if has_baseline else ""),
            samples=samples, rank=(rank_group, -delta, c_rate, key),
            latency=sum(lat) / len(lat) if lat else 0.0,
            cost=sum(r.cost_usd or 0.0 for r in recs), images=thumbs(result, key)))
    out.sort(key=lambda c: c.rank)
    return out


def rate_points(records: Sequence[Record], series: str) -> dict[str, charts.RatePoint]:
    graded = [r for r in records if r.ok and r.passed is not None]
    return {
        "hallucination": charts.RatePoint(series, sum(1 for r in graded if r.hallucination),
                                          len(graded)),
        "pass": charts.RatePoint(series, sum(1 for r in graded if r.passed), len(graded)),
        "error": charts.RatePoint(series, sum(1 for r in records if not r.ok), len(records)),
    }


@dataclass
class TagStat:
    tag: str
    canaries: int
    cand: dict[str, charts.RatePoint]
    base: dict[str, charts.RatePoint] | None


def tag_stats(result: RunResult) -> list[TagStat]:
    by_tag: dict[str, list[Record]] = {}
    base_by_tag: dict[str, list[Record]] = {}
    for r in result.records:
        for t in dict.fromkeys(r.tags):
            by_tag.setdefault(t, []).append(r)
    for r in result.baseline_records:
        for t in dict.fromkeys(r.tags):
            base_by_tag.setdefault(t, []).append(r)
    stats = [TagStat(t, len({r.key for r in recs}), rate_points(recs, "candidate"),
                     rate_points(base_by_tag.get(t, []), "baseline")
                     if result.baseline is not None else None)
             for t, recs in by_tag.items()]
    stats.sort(key=lambda s: (-s.canaries, s.tag))
    return stats


def _pct(p: charts.RatePoint | None) -> str:
    if p is None or p.n == 0:
        return "n/a"
    return f"{100 * p.k / p.n:.1f}% ({p.k}/{p.n})"


def headline(result: RunResult) -> str:
    """One sentence why: the first guardrail with the gate's verdict, or that all passed."""
    n = len(result.verdicts)
    if n == 0:
        return "No guardrail is configured: nothing was checked."
    if result.verdict == "PASS":
        return f"All {n} guardrail{'s' if n != 1 else ''} passed."
    hits = [v for v in result.verdicts if v.verdict == result.verdict]
    if not hits:
        return f"The gate is {result.verdict}."
    first = hits[0].reason
    more = len(hits) - 1
    word = "failed" if result.verdict == "FAIL" else "inconclusive"
    extra = f" ({more} more guardrail{'s' if more != 1 else ''} {word})" if more else ""
    return f"{first}{extra}"


def run_facts(result: RunResult) -> list[tuple[str, str]]:
    env = result.environment
    c = result.counts
    facts = [
        ("run id", result.run_id),
        ("started", result.started_at),
        ("commit", env.git_commit or "n/a"),
        ("branch", env.git_branch or "n/a"),
        ("evalgate", result.evalgate_version),
        ("python", env.python or "n/a"),
        ("platform", env.platform or "n/a"),
        ("canary set fingerprint", result.canary_fingerprint),
        ("gate config fingerprint", result.gate_fingerprint),
        ("rubric fingerprints", ", ".join(f"{k} {v}" for k, v in
                                          result.rubric_fingerprints.items()) or "none"),
        ("canaries x samples", f"{c.get('canaries', 0)} x {result.samples}"),
        ("answers", f"{c.get('calls', len(result.records))} candidate"
                  + (f" + {len(result.baseline_records)} baseline"
                     if result.baseline_records else "")),
        ("calls made (HTTP attempts)", calls_made_text(result)),
        ("calls from cache", f"{result.calls_from_cache}"
                             + (" (their latency: measured when cached)"
                                if result.calls_from_cache else "")),
        ("calls resumed from the journal", f"{result.calls_from_journal}"),
        ("partial run", "yes: interrupted before every call was made" if result.partial
         else "no"),
        ("calls planned / saved", spend_text(result)),
        *sequential_facts(result),
        ("errors (after retries)", f"{c.get('errors', 0)}"),
        ("retried calls", f"{c.get('retried_calls', 0)}"),
        ("throttled (rate limits; summed over calls, not in latency)",
         f"{c.get('throttled_ms', 0) / 1000:,.2f} s"),
        ("answered by the fallback model", f"{c.get('fallback_answers', 0)}"),
        ("usage estimated (no token counts)", f"{c.get('usage_estimated', 0)}"),
        ("concurrency", f"{result.concurrency}"),
        ("wall time", f"{result.wall_time_s:,.2f} s"),
        ("total spend", usd(result.total_cost_usd)),
        *([("judge", f"{result.judge_model}: {result.judge_calls} calls (not in the calls "
                     "above), "
                     f"{usd(result.judge_cost_usd)} (not in the spend above), "
                     f"{result.judge_errors} judge errors"
                     + (f", vote agreement {result.judge_agreement:.0%}"
                        if result.judge_agreement is not None else ""))]
          if result.judge_calls else []),
        *review_facts(result),
        ("alpha (one-sided)", f"{result.alpha:g}"),
        ("on_inconclusive", result.on_inconclusive),
        ("canary_failures", result.canary_failures),
        ("schema version", f"{result.schema_version}"),
    ]
    return facts


def sequential_facts(result: RunResult) -> list[tuple[str, str]]:
    """Rows for a sequential run: each look's size, level and what it decided."""
    seq = result.sequential
    if seq is None:
        return []
    rows = [("sequential gating", f"{seq.looks_done} of {seq.looks_planned} looks; {seq.reason}; "
                                  f"{seq.spending}")]
    for a in seq.analyses:
        decided = ", ".join(f"{g} {v}" for g, v in {**a.decided, **a.curtailed}.items())
        rows.append((f"look {a.look}", f"{a.canaries} canaries ({a.fraction:.0%}), z >= "
                                       f"{a.z_bound:.3f}, nominal alpha {a.nominal_alpha:.3g}"
                                       + (f"; decided: {decided}" if decided else "")
                                       + (f" (curtailed: {', '.join(a.curtailed)})"
                                          if a.curtailed else "")))
    return rows


def json_for_script(data: Any) -> Markup:
    """JSON safe inside <script type="application/json">: no `</script>`, no HTML-significant
    characters, no JS line terminators (read back with JSON.parse)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for raw, esc in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"),
                     ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, esc)
    return Markup(text)  # only JSON string escapes remain: nothing can close the element


# -- rendering -------------------------------------------------------------------------------

def thousands(v: int) -> str:
    return f"{v:,}"


_CONTROL = charts.CONTROL  # shown as U+FFFD, never written raw


def _visible(value: object) -> object:
    """Every {{ }} value: untrusted text (answers, reasons, claims) loses its control
    characters before it is escaped; markup evalgate built itself is left as it is."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return _CONTROL.sub("\ufffd", value)
    return value


@cache
def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("evalgate.report", "templates"),
        autoescape=True, trim_blocks=True, lstrip_blocks=True,
        undefined=jinja2.StrictUndefined, finalize=_visible)
    env.filters["num"] = thousands
    return env


@cache
def _asset(name: str) -> str:
    return resources.files("evalgate.report").joinpath("templates", name).read_text("utf-8")


NO_IMAGES = "'none'"


def _csp(script: str, images: bool = False) -> str:
    """Nothing but the inline script and style; `data:` images only when the run has canary
    thumbnails (an image cannot run script)."""
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    return ("default-src 'none'; style-src 'unsafe-inline'; "
            f"img-src {'data:' if images else NO_IMAGES}; "
            f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'")


def render_html(result: RunResult, *, max_answer_chars: int = MAX_ANSWER_CHARS,
                page_size: int = PAGE_SIZE) -> str:
    """The report for one run result, as one self-contained HTML document."""
    has_baseline = result.baseline is not None
    all_tags = sorted({t for r in result.records for t in r.tags})
    tag_ids = {t: i for i, t in enumerate(all_tags)}
    items = canaries(result, tag_ids, max_answer_chars)
    tag_counts = Counter(t for c in items for t in c.tags)
    outcome_counts = Counter(f for c in items for f in c.flags.split())

    base_name = "baseline"

    def series(field: str) -> list[tuple[str, Sequence[float]]]:
        """One config's per-call values of `field` (answered calls) per curve."""
        out = [(name, [v for r in recs if r.ok and (v := getattr(r, field)) is not None])
               for name, recs in (("candidate", result.records), (base_name,
                                                                   result.baseline_records))]
        return out if has_baseline else out[:1]

    ttft = series("ttft_ms")
    forest_rows = [
        charts.ForestRow(label=v.guardrail, verdict=v.verdict,
                         estimate=v.effect, low=v.ci_low, high=v.ci_high, limit=limit_of(v),
                         reference={"difference": 0.0, "ratio": 1.0}.get(v.effect_kind),
                         worse=v.worse, fmt=partial(effect, v))
        for v in result.verdicts if v.kind != "point"]
    cand_rates = rate_points(result.records, "candidate")
    base_rates = rate_points(result.baseline_records, "baseline") if has_baseline else None
    overall_rows = [
        charts.RateRow(label, ((cand_rates[m],) + ((base_rates[m],) if base_rates else ()),))
        for label, m in (("hallucination rate", "hallucination"), ("pass rate", "pass"),
                         ("error rate", "error"))]
    tags = tag_stats(result)
    tag_rows = [
        charts.RateRow(s.tag, tuple(
            (s.cand[m],) + ((s.base[m],) if s.base is not None else ())
            for m in ("pass", "hallucination")))
        for s in tags[:MAX_TAGS_CHARTED]]
    level_pct = f"{100 * (1 - 2 * result.alpha):g}%"
    chart_svgs = {
        "latency": charts.latency_cdf("chart-latency", series("latency_ms")),
        "ttft": charts.latency_cdf("chart-ttft", ttft, "Time to first token (empirical CDF)")
        if any(values for _, values in ttft) else None,
        "forest": charts.forest("chart-forest", forest_rows, level_pct),
        "cost": charts.bars("chart-cost", "Cost per 1,000 requests",
                            [("candidate", result.metrics.get("cost_per_1k_usd"))]
                            + ([(base_name, result.baseline_metrics.get("cost_per_1k_usd"))]
                               if has_baseline else []), usd, "cost per 1k requests"),
        "rates": charts.rate_dots("chart-rates", "Hallucination, pass and error rates",
                                  ["rate with Wilson 95% interval"], overall_rows),
        "tags": charts.rate_dots("chart-tags", "Pass and hallucination rate per tag",
                                 ["pass rate", "hallucination rate"], tag_rows)
        if tag_rows else charts.no_data("chart-tags", "Per-tag breakdown", "no tags"),
    }
    cand_cfg = dict(result.candidate.config)
    # An older saved baseline may not carry its config: show the candidate's alone then.
    base_cfg = dict(result.baseline.config) if result.baseline and result.baseline.config \
        else None
    cfg_rows = config_rows(cand_cfg, base_cfg)
    graded = result.counts.get("graded", 0)
    failed_calls = graded - result.counts.get("passed", 0) + result.counts.get("errors", 0)
    script = _asset("report.js")
    context = {
        "r": result,
        "has_baseline": has_baseline,
        "headline": headline(result),
        "blocking": blocks(result.verdict, result.on_inconclusive),
        "verdict_counts": {k: sum(1 for v in result.verdicts if v.verdict == k)
                           for k in ("PASS", "FAIL", "INCONCLUSIVE")},
        "failed_calls": failed_calls,
        "gate_rows": [gate_row(v) for v in result.verdicts],
        "config_rows": cfg_rows,
        "changed_keys": [row.key for row in cfg_rows if row.changed and row.key != "name"],
        "base_config_missing": has_baseline and base_cfg is None,
        "show_base_cfg": base_cfg is not None,
        "charts": chart_svgs,
        "production": production_section(result),  # routes, load, determinism (or nothing)
        "choice": choice_section(result),  # N candidates: leaderboard, Pareto chart
        "tags": tags,
        "tags_charted": min(len(tags), MAX_TAGS_CHARTED),
        "pct": _pct,
        "canaries": items,
        "tag_options": [(tag_ids[t], t, tag_counts.get(t, 0)) for t in all_tags],
        "outcome_counts": outcome_counts,
        "page_size": page_size,
        "facts": run_facts(result),
        "spend": usd(result.total_cost_usd),
        "other_metrics": [(m, level(m, v), level(m, result.baseline_metrics.get(m))
                           if has_baseline else "") for m, v in result.metrics.items()],
        "style": Markup(_asset("report.css")),  # our own constant stylesheet
        "script": Markup(script),  # our own constant script, allowed by its hash
        "csp": _csp(script, any(t.src for c in items for t in c.images)),
        "page_data": json_for_script({"pageSize": page_size, "total": len(items),
                                      "runId": result.run_id}),
        "level_pct": level_pct,
        "max_answer_chars": max_answer_chars,
    }
    return _env().get_template("report.html.j2").render(context)
