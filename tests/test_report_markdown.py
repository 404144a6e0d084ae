"""The Markdown summary: content, injection-proof escaping, the size limit, the step summary.

There is no GitHub renderer here, so `markup()` reads the Markdown the way CommonMark does for
the parts that matter (fenced code blocks closed by a long enough fence, code spans closed by a
backtick run of the same length, backslash escapes) and returns what GitHub would interpret as
Markdown/HTML; the hostile strings must not survive into it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from evalgate.report.markdown import append_step_summary, render_markdown
from evalgate.results import (
    BaselineInfo,
    ComparisonInfo,
    CriterionResult,
    GuardrailVerdict,
    ModelInfo,
    Record,
    RunResult,
)

HOSTILE = [
    "# heading",
    "[x](http://evil)",
    "![](http://evil/x.png)",
    "</details>",
    "@here and @octocat",
    "```\n</details>\n# owned\n```",
    "<img src=x onerror=alert(1)>",
    "| a | b |",
    "www.evil.example and https://evil.example/path",
    "\x00\x1b[31mred `code` ``more``",
    "~~~\n<script>alert(2)</script>",
    "$x^2$ *bold* _it_ #123",
]
HEADINGS = re.compile(r"## evalgate gate: \*\*(PASS|FAIL|INCONCLUSIVE)\*\*( \(not blocking\))?"
                      r"|### (Warnings|Top regressions|Failed canaries)")


def record(key: str, sample: int, *, passed: bool, text: str = "fine answer", ok: bool = True,
           config: str = "candidate") -> Record:
    set_name, _, case_id = key.partition("/")
    criteria = [CriterionResult(id="states-facts", kind="quality", check="contains_all",
                                passed=passed, detail="states all" if passed else "missing x")]
    return Record(key=key, set=set_name, case_id=case_id, sample=sample, config=config, ok=ok,
                  text=text if ok else None, latency_ms=120.0, cost_usd=1e-5, input_tokens=10,
                  output_tokens=5, criteria=criteria if ok else [],
                  passed=passed if ok else None, hallucination=False if ok else None,
                  error_class=None if ok else "server_error",
                  error_message=None if ok else text)


def verdict(guardrail: str, value: str, reason: str) -> GuardrailVerdict:
    return GuardrailVerdict(guardrail=guardrail, metric="pass_rate", kind="rate_vs_baseline",
                            test="paired t", value=0.5, baseline=0.9, effect=-0.4, ci_low=-0.5,
                            ci_high=-0.3, margin=0.05, p_value=0.001, n_canaries=12,
                            verdict=value, reason=reason)  # type: ignore[arg-type]


def make_result(cand: list[Record], base: list[Record], *, warnings: list[str] | None = None,
                name: str = "candidate", verdict_value: str = "FAIL") -> RunResult:
    verdicts = [verdict("pass_rate_vs_baseline", verdict_value,
                        f"pass_rate_vs_baseline: candidate 50.0% vs baseline 90.0%: "
                        f"{verdict_value}")]
    return RunResult(
        evalgate_version="0", run_id="run1", started_at="2026-01-02T03:04:05+00:00",
        wall_time_s=1.0, gate_fingerprint="g", canary_fingerprint="c", rubric_fingerprints={},
        candidate=ModelInfo(name=name, provider="sim", model="m", fingerprint="f"),
        samples=1, concurrency=1, calls_made=len(cand), records=cand,
        metrics={"pass_rate": 0.5}, counts={"canaries": len({r.key for r in cand}),
                                            "calls": len(cand), "errors": 0},
        verdicts=verdicts, verdict=verdict_value,  # type: ignore[arg-type]
        baseline=BaselineInfo(source="reports/main.json", kind="result", name="base"),
        baseline_records=base, comparison=ComparisonInfo(compared=len(base)),
        warnings=warnings or [])


def code_free(md: str, spans: bool = True) -> str:
    """The Markdown minus fenced code blocks and (with `spans`) code spans, as CommonMark
    delimits them; escaped characters become a placeholder."""
    kept: list[str] = []
    fence: str | None = None
    for line in md.split("\n"):
        match = re.match(r" {0,3}(`{3,}|~{3,})", line)
        if fence is None and match:
            fence = match.group(1)
            continue
        if fence is not None:
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence) \
                    and not line.strip().strip(fence[0]):
                fence = None
            continue
        kept.append(line)
    assert fence is None, "a code block is left open"
    text = "\n".join(kept)
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out.append("\u2400")  # an escaped character: literal, not syntax
            i += 2
            continue
        if text[i] == "`" and spans:
            run = re.match(r"`+", text[i:])
            assert run
            n = len(run.group(0))
            closing = re.compile(r"(?<!`)`{" + str(n) + r"}(?!`)").search(text, i + n)
            if closing:
                out.append("\u2401")  # a code span
                i = closing.end()
                continue
            out.append(run.group(0))
            i += n
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


def assert_inert(md: str) -> None:
    markup = code_free(md)
    for line in markup.split("\n"):
        if line.startswith("#"):
            assert HEADINGS.fullmatch(line), line
    # GFM splits table cells on unescaped pipes before it looks for code spans
    widths: list[int] = []
    for line in [*code_free(md, spans=False).split("\n"), ""]:
        if line.startswith("|"):
            widths.append(line.count("|"))
        elif widths:
            assert len(set(widths)) == 1, f"a table row has extra cells: {widths}"
            widths = []
    for bad in ("](", "![", "<img", "<script", "http://", "https://", "www.", "~~~", "*bold*",
                "_it_", "$x"):
        assert bad not in markup, bad
    assert not re.search(r"@[A-Za-z0-9]", markup), "a mention"
    assert not re.search(r"#[0-9]", markup), "an issue reference"
    assert markup.count("<details>") == markup.count("</details>") <= 1
    assert "\x00" not in md and "\x1b" not in md


def table_widths(md: str) -> set[int]:
    """Cells per row of each table, counting unescaped pipes (code spans do not hide them)."""
    widths = set()
    for line in code_free(md, spans=False).split("\n"):
        if line.startswith("|") and not line.startswith("|---"):
            widths.add(line.count("|"))
    return widths


def test_summary_shows_verdict_table_sentences_and_regressions() -> None:
    cand = [record("s/ok", 0, passed=True), record("s/reg", 0, passed=False, text="wrong one"),
            record("s/both", 0, passed=False, text="also wrong")]
    base = [record("s/ok", 0, passed=True, config="baseline"),
            record("s/reg", 0, passed=True, text="right one", config="baseline"),
            record("s/both", 0, passed=False, config="baseline")]
    md = render_markdown(make_result(cand, base, warnings=["rubric basic changed"]))
    assert md.startswith("## evalgate gate: **FAIL**")
    assert "`candidate`" in md and "`base`" in md and "compared on 3 canaries" in md
    assert "| `pass_rate_vs_baseline` |" in md and "**FAIL** |" in md
    assert "candidate 50\\.0% vs baseline 90\\.0%" in md
    assert "- rubric basic changed" in md
    lines = md.split("\n")
    reg = next(i for i, x in enumerate(lines) if x.startswith("| `s/reg`"))
    both = next(i for i, x in enumerate(lines) if x.startswith("| `s/both`"))
    assert reg < both, "a regression (baseline passed) comes before a plain failure"
    assert "| 0/1 | 1/1 |" in lines[reg] and "| 0/1 | 0/1 |" in lines[both]
    assert not any(x.startswith("| `s/ok`") for x in lines), "passing canaries are not listed"
    assert "wrong one" in md and "right one" in md, "answer excerpts of both sides"
    assert md.rstrip().endswith(
        "Full report: `evalgate.html` in the `evalgate-reports` artifact.")
    assert "Full report" not in render_markdown(make_result(cand, base), html_name=None)
    assert_inert(md)


def test_hostile_text_cannot_inject_markdown_or_html() -> None:
    cand = [record(f"s/c{i}", 0, passed=False, text=t) for i, t in enumerate(HOSTILE)]
    cand.append(record("s/err", 0, passed=False, ok=False, text=HOSTILE[4] + HOSTILE[1]))
    cand.append(record("s/# @here [x](http://evil) |", 0, passed=False, text="x"))
    cand.append(record("s/a`[x](http://evil)`b``", 0, passed=False, text="`y`"))
    base = [record(r.key, 0, passed=True, text=HOSTILE[6], config="baseline") for r in cand]
    md = render_markdown(make_result(cand, base, warnings=HOSTILE,
                                     name="@everyone [x](http://evil) <img src=x>"))
    assert_inert(md)
    assert len(table_widths(md)) == 2, "gate table (8 cells) and canary table (5 cells) only"
    assert "onerror" in md and "# owned" in md, "hostile answers are shown, as text"


def test_fences_outlast_backtick_runs_in_answers() -> None:
    answer = "````\n</details>\n````````\nstill inside"
    md = render_markdown(make_result([record("s/a", 0, passed=False, text=answer)],
                                     [record("s/a", 0, passed=True, config="baseline")]))
    assert_inert(md)
    assert "still inside" in md and "still inside" not in code_free(md)


@pytest.fixture(scope="module")
def huge() -> RunResult:
    """10,000 canaries, every one regressed, with 3,000-character answers and long ids."""
    long = ("lorem ipsum `x` | " * 200)[:3000]
    cand = [record(f"set/{'canary-' * 10}{i}", 0, passed=False, text=long)
            for i in range(10_000)]
    base = [record(r.key, 0, passed=True, text=long, config="baseline") for r in cand]
    warnings = [f"warning {i}: " + "w" * 400 for i in range(300)]
    return make_result(cand, base, warnings=warnings)


def test_size_limit_holds_for_a_huge_run(huge: RunResult) -> None:
    md = render_markdown(huge)
    assert len(md) <= 65536
    assert "more canaries not shown" in md
    assert "10000 canaries pass less often than on the baseline" in md
    assert_inert(md)


def test_excerpts_go_before_rows_and_rows_before_the_gate(huge: RunResult) -> None:
    unlimited = render_markdown(huge, limit=10**8)
    rows = unlimited.count("\n| `set/")
    assert unlimited.count("<details>") == 1 and rows > 10
    shorter = render_markdown(huge, limit=len(unlimited) - 1)
    assert len(shorter) <= len(unlimited) - 1
    assert shorter.count("\n| `set/") == rows, "excerpts shrink before any row goes"
    assert shorter.count("```text") < unlimited.count("```text")
    tiny = render_markdown(huge, limit=6000)
    assert len(tiny) <= 6000
    assert "<details>" not in tiny
    assert "| `pass_rate_vs_baseline` |" in tiny, "the gate table stays"
    shown = tiny.count("\n| `set/")
    assert f"({10_000 - shown} more canaries not shown.)" in tiny
    assert_inert(tiny)
    cut = render_markdown(huge, limit=300)
    assert len(cut) <= 300 and cut.startswith("## evalgate gate")


def test_append_step_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "summary.md"
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert append_step_summary("# a\n") is False
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(target))
    target.write_text("before\n")
    assert append_step_summary("first") is True
    assert append_step_summary("second\n") is True
    assert target.read_text() == "before\nfirst\nsecond\n"


def test_without_a_baseline_failures_are_listed_and_warn_does_not_block() -> None:
    cand = [record("s/a", 0, passed=False, text="nope"), record("s/b", 0, passed=True)]
    result = make_result(cand, [], verdict_value="INCONCLUSIVE").model_copy(
        update={"baseline": None, "comparison": None, "on_inconclusive": "warn",
                "canary_failures": "report"})
    md = render_markdown(result)
    assert md.startswith("## evalgate gate: **INCONCLUSIVE** (not blocking)\n")
    assert ") vs baseline `" not in md and "compared on" not in md
    assert "### Failed canaries" in md and "### Top regressions" not in md
    assert "| `s/a` | 0/1 | n/a |" in md and "`s/b`" not in md
    assert "1 of 2 canary answers failed" in md and "canary\\_failures: report" in md
    assert_inert(md)
