"""The shipped example (README's main command) keeps working: gate PASS, exit 0."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_example_passes_the_gate(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--evalgate", "-p", "no:cacheprovider",
         f"--evalgate-report-dir={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "evalgate gate: PASS" in out.stdout
    result = json.loads((tmp_path / "evalgate.json").read_text())
    assert result["verdict"] == "PASS"
    assert result["counts"]["canaries"] == 83 and result["counts"]["calls"] == 249
    assert len(result["baseline_records"]) == 249  # the live baseline ran the same canaries
    # The tool-call and image canaries pass: the right calls, the images sent and answered.
    shown = [r for r in result["records"] if r["set"] in ("tools", "images")]
    assert len(shown) == 21 and all(r["passed"] for r in shown)
    assert sum(1 for r in shown if r["tool_calls"]) == 12
    assert set(result["images"]) == {"images/swatch-colour", "images/swatch-pair"}
    # The sim judge graded the judge criteria and undecided claims; its spend is kept apart.
    assert result["judge_calls"] > 0 and result["judge_errors"] == 0
    assert result["judge_cost_usd"] > 0
    assert result["total_cost_usd"] == pytest.approx(
        sum(r["cost_usd"] for r in result["records"] + result["baseline_records"]))
    # Every judge-injection canary fails, on every sample, for both configs.
    red = [r for r in result["records"] + result["baseline_records"]
           if r["set"] == "judge-injection"]
    assert len(red) == 24 and not any(r["passed"] for r in red)
    assert all(not c["passed"] for r in red for c in r["criteria"] if c["check"] == "judge")
    # Every check kind is used by the shipped rubrics.
    from evalgate.grading.checks import BUILTIN_CHECKS

    used = {c["check"] for r in result["records"] for c in r["criteria"]}
    assert used >= BUILTIN_CHECKS - {"contains_any", "regex", "equals", "max_words",
                                     "json_valid", "contains_all"}
    text = " ".join((ROOT / "rubrics" / f).read_text() for f in
                    ("support.yaml", "grounded.yaml", "structured.yaml", "judged.yaml",
                     "tools.yaml"))
    assert all(f"check: {name}" in text for name in BUILTIN_CHECKS)
    assert {v["guardrail"] for v in result["verdicts"]} == {
        "latency_p95_ms", "cost_per_1k_usd", "hallucination_rate", "error_rate",
        "hallucination_rate_vs_baseline", "pass_rate_vs_baseline", "error_rate_vs_baseline",
        "cost_ratio_vs_baseline", "latency_ratio_vs_baseline", "p95_ratio_vs_baseline"}
    assert all(v["verdict"] == "PASS" and v["test"] for v in result["verdicts"])
    assert not list(ROOT.glob("tests/**/evalgate.json"))


def test_production_example_passes_with_routes_load_and_determinism(tmp_path: Path) -> None:
    """examples/production: a routed candidate with per-route guardrails, blended cost, a load
    profile and determinism, on the shipped canaries; PASS and every section in the result."""
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--evalgate", "-p", "no:cacheprovider",
         "--evalgate-config=examples/production/evalgate.yaml",
         f"--evalgate-report-dir={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    result = json.loads((tmp_path / "evalgate.json").read_text())
    assert result["verdict"] == "PASS"
    assert {r["route"] for r in result["routes"]} == {"billing", "short", "default"}
    assert [lv["concurrency"] for lv in result["load"]["levels"]] == [1, 1, 4, 4, 16, 16]
    assert result["determinism"]["candidate"]["canaries"] == 16
    assert result["blended_cost"]["per_month_usd"] < result["baseline_blended_cost"][
        "per_month_usd"]
    names = {v["guardrail"] for v in result["verdicts"]}
    assert {"route[short].latency_p50_ms", "load[c=16].latency_p95_ms",
            "load[c=16].p95_ratio_vs_baseline", "determinism.agreement"} <= names
