"""Figures a reader can take at face value: money without exponents, p columns named for what
they test, ratio margins as ratios, throttled time said to be summed, the verdict printed by
`evalgate report`, `--evalgate-samples` on the command line, and one count of calls per
config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from evalgate.cli import main
from evalgate.gate.baseline import resolve
from evalgate.gate.verdicts import fmt, money
from evalgate.pipeline.project import load_project
from evalgate.pipeline.run import run_project
from evalgate.report.html import render_html
from evalgate.report.summary import gate_cells, summary_lines
from evalgate.results import GuardrailVerdict, write_result
from evalgate.sim import SimServer
from tests.conftest import make_cases, sim_model, write_project


@pytest.mark.parametrize(("value", "shown"), [
    (1.76987e-05, "$0.0000177"), (0.0713303, "$0.0713"), (12.345, "$12.35"),
    (1234.5, "$1,234.50"), (0.0, "$0")])
def test_money_has_significant_digits_and_no_exponent(value: float, shown: str) -> None:
    assert money(value) == shown == fmt("cost_per_request_usd", value)


@pytest.mark.parametrize("guardrail", ["cost_ratio_vs_baseline", "latency_ratio_vs_baseline"])
def test_a_ratio_margin_is_a_ratio_even_without_data(guardrail: str) -> None:
    metric = "cost_per_request_usd" if guardrail.startswith("cost") else "latency_ms"
    v = GuardrailVerdict(guardrail=guardrail, metric=metric, kind="vs_baseline", test="t",
                         margin=1.1, verdict="INCONCLUSIVE", reason="no data")
    assert gate_cells(v)[3] == "x1.100"


def test_terminal_table_names_its_p_columns_and_evalgate_report_prints_the_verdict(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_project(tmp_path, model=sim_model(seed=1), cases=make_cases(40),
                  gate={"gate": {"on_inconclusive": "warn",
                                 "metrics": {"cost_per_request_usd": {"max": 0.01}}}})
    result = run_project(load_project(tmp_path))
    lines = summary_lines(result)
    header = next(line for line in lines if line.startswith("guardrail"))
    assert "p within margin" in header and "p worse (Holm)" in header
    assert "e-0" not in "\n".join(lines)  # no money in scientific notation
    path = tmp_path / "reports" / "evalgate.json"
    write_result(result, path)
    assert main(["report", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"evalgate gate: {result.verdict}\n")
    assert header in out


def test_samples_override_on_the_command_line(pytester: pytest.Pytester) -> None:
    write_project(pytester.path, model=sim_model(), cases=make_cases(3), gate={"samples": 1})
    out = pytester.runpytest_subprocess("--evalgate", "--evalgate-samples=3", "-q")
    result = json.loads((pytester.path / "reports" / "evalgate.json").read_text())
    assert result["samples"] == 3 and len(result["records"]) == 9, out.stdout.str()
    bad = pytester.runpytest_subprocess("--evalgate", "--evalgate-samples=0")
    assert bad.ret == 4
    assert "--evalgate-samples: must be at least 1" in bad.stderr.str() + bad.stdout.str()


def test_one_count_per_config_in_every_report(sim_server: SimServer, tmp_path: Path) -> None:
    """Each config's calls and HTTP attempts (retries included), the same in the terminal, HTML
    and JSON, and what the simulator saw over the wire; the judge's are not in them."""
    for name, rate in (("cand", 0.3), ("base", 0.0)):
        sim_server.add_profile(name, {"latency_ms": 1, "error_500_rate": rate, "seed": 2})
    model = {"provider": "openai", "base_url": f"{sim_server.base_url}/v1", "model": "cand",
             "timeout_s": 5, "max_retries": 3}
    write_project(tmp_path, model=model, cases=make_cases(20),
                  gate={"baseline": "models/baseline.yaml"})
    (tmp_path / "models" / "baseline.yaml").write_text(yaml.safe_dump({**model, "model": "base"}))
    project = load_project(tmp_path)
    result = run_project(project, baseline=resolve("models/baseline.yaml", project.gate))
    seen = sim_server.stats.models
    cand, base = result.calls_by_config["candidate"], result.calls_by_config["baseline"]
    assert (cand.made, base.made) == (20, 20)
    assert (cand.attempts, base.attempts) == (seen["cand"], seen["base"]) == (
        sum(len(r.attempts) for r in result.records), 20)
    assert cand.attempts > 20  # the 500s were retried: attempts are not calls
    assert result.calls_made == cand.attempts + base.attempts
    counts = (f"candidate 20 made ({cand.attempts} HTTP attempts), baseline 20 made "
              f"(20 HTTP attempts)")
    lines = summary_lines(result)
    assert counts in lines[1]
    assert "HTTP attempts" not in lines[0]  # one count, said once
    html = render_html(result)
    assert html.count(counts) >= 1
    assert f"{result.calls_made} HTTP attempts" not in "\n".join(lines)  # no other total
