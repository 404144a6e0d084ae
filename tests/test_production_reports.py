"""Routes, load profile and determinism in the reports: present when configured, escaped,
absent (reports unchanged) when not."""

from __future__ import annotations

import math
import re
from pathlib import Path

import yaml

from evalgate.gate.baseline import resolve
from evalgate.pipeline.project import load_project
from evalgate.pipeline.run import run_project
from evalgate.report.charts import latency_vs_concurrency
from evalgate.report.html import render_html
from evalgate.report.markdown import render_markdown
from evalgate.report.summary import summary_lines
from evalgate.results import RunResult
from tests.conftest import make_cases, sim_model, write_project

EVIL = "<script>alert(1)</script>|`x`"


def full_run(root: Path) -> RunResult:
    router = {"router": {"routes": [{"name": "fast", "when": "'even' in tags",
                                     "model": "fast.yaml"}], "default": "strong.yaml"}}
    gate = {"traffic": {"weights": {"even": 1}, "monthly_requests": 1000},
            "load": {"levels": [1, 4], "requests": 8, "max_p95_ms": {4: 5000}},
            "determinism": {"repeats": 2, "canaries": {"count": 4}, "min_agreement": 0.1}}
    write_project(root, model=router, cases=make_cases(6), gate=gate)
    (root / "models" / "fast.yaml").write_text(yaml.safe_dump(
        {**sim_model(), "model": "fast-m", "name": EVIL}))
    (root / "models" / "strong.yaml").write_text(yaml.safe_dump(
        {**sim_model(latency_ms=5), "model": "strong-m"}))
    (root / "models" / "baseline.yaml").write_text(yaml.safe_dump(
        {**sim_model(determinism=0.0), "model": "base-m"}))
    project = load_project(root)
    return run_project(project, baseline=resolve("models/baseline.yaml", project.gate))


def test_everything_in_every_report_and_escaped(tmp_path: Path) -> None:
    result = full_run(tmp_path)
    assert result.load is not None and result.determinism is not None
    assert result.determinism.baseline is not None
    assert result.determinism.baseline.exact_agreement == 0.0  # determinism 0: never agrees
    assert result.determinism.candidate.exact_agreement == 1.0
    html = render_html(result)
    section = html[html.index('<section id="production">'):]
    section = section[:section.index("</section>")]
    for heading in ("Routes", "Blended cost", "Load profile", "Determinism"):
        assert f"<h3>{heading}</h3>" in section
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in section
    assert 'id="chart-load"' in section and section.count("<path") == 4  # p50+p95 x 2 configs
    md = render_markdown(result)
    for heading in ("### Routes", "### Blended cost", "### Load profile", "### Determinism"):
        assert heading in md
    routes_table = md[md.index("### Routes"):md.index("### Blended cost")]
    assert "<script>" not in routes_table.replace("`<script>", "")  # only inside code spans
    assert "\\|" in routes_table  # the | in the model name cannot split the row
    lines = summary_lines(result)
    assert any(line.startswith("routes: fast 50.0%") for line in lines)
    assert any(line.startswith("load c=4 baseline: 8 requests") for line in lines)
    assert any(line.startswith("determinism candidate: 4 canaries x 2") for line in lines)
    # JSON round trip keeps it all
    again = RunResult.model_validate_json(result.model_dump_json())
    assert again.load == result.load and again.routes == result.routes


def test_reports_unchanged_without_production_checks(tmp_path: Path) -> None:
    write_project(tmp_path, model=sim_model(), cases=make_cases(3))
    result = run_project(load_project(tmp_path))
    assert result.routes == [] and result.load is None and result.determinism is None
    assert result.blended_cost is None and all(r.route is None for r in result.records)
    assert 'id="production"' not in render_html(result)
    assert "### Routes" not in render_markdown(result)
    assert not any(line.startswith(("routes:", "load", "determinism", "blended"))
                   for line in summary_lines(result))


def test_load_chart_shapes() -> None:
    svg = str(latency_vs_concurrency("c", [("candidate", [(1, 20.0, 25.0), (16, 60.0, 90.0)]),
                                           ("baseline", [(1, 21.0, 26.0), (16, 22.0, 30.0)])]))
    assert svg.count("<path") == 4 and svg.count("<circle") == 8
    assert "candidate p95 at 16: 90 ms" in svg
    empty = str(latency_vs_concurrency("c", [("candidate", [(1, None, None)])]))
    assert "no load data" in empty
    odd = str(latency_vs_concurrency("c", [("candidate", [(1, math.nan, 5.0),
                                                          (4, 1.0, math.inf)])]))
    assert not re.search(r"nan|inf", odd.lower().replace("infl", ""))
