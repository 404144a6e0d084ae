"""The model catalog: snapshots of real simulator runs (figures equal to the run's, intervals
that bracket them and resample canaries, not calls), SQLite that survives runs, exports and
imports exactly, the shells (`pytest --evalgate`, `evalgate catalog`), and the page itself in
a real headless Chromium: no console errors, intervals on screen, canary-set changes marked.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from evalgate.catalog import Catalog, CatalogError, append_run, export_lines, import_lines
from evalgate.catalog.render import arrange, render_html, render_markdown
from evalgate.catalog.snapshot import MetricFigure, Snapshot, metric_figures, snapshots_of
from evalgate.cli import main
from evalgate.gate.baseline import resolve
from evalgate.pipeline.project import load_project
from evalgate.pipeline.run import run_project
from evalgate.results import RunResult, write_result
from evalgate.stats.intervals import (
    CanaryBootstrap,
    cluster_mean_interval,
    cluster_percentile_interval,
)
from evalgate.stats.primitives import wilson_bounds
from tests.conftest import make_cases, sim_model, write_project
from tests.test_report_html import CHROMIUM, Chromium, Page

PAYLOAD = "<script>document.body.setAttribute('data-pwned','1')</script>"


# -- real runs ---------------------------------------------------------------------------------

def project_at(root: Path, cases: int = 30, samples: int = 1, hallucination: float = 0.2,
               name: str = "candidate") -> Path:
    """A candidate and a live baseline under two model names (two simulator profiles)."""
    cand = sim_model(hallucination_rate=hallucination, error_500_rate=0.05, seed=3)
    cand.update(model="cand-model", name=name, max_retries=0, params={"temperature": 0.7})
    write_project(root, model=cand, cases=make_cases(cases),
                  gate={"samples": samples, "baseline": "models/baseline.yaml"})
    base = sim_model(seed=5)
    base.update(model="base-model", params={"temperature": 0.1})
    (root / "models" / "baseline.yaml").write_text(yaml.safe_dump(base))
    return root


def run_at(root: Path) -> RunResult:
    project = load_project(root)
    return run_project(project, baseline=resolve("models/baseline.yaml", project.gate))


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory: pytest.TempPathFactory) -> list[RunResult]:
    """Three runs of one project: the second with a changed candidate prompt (a new model
    version), the third on a larger canary set."""
    root = project_at(tmp_path_factory.mktemp("catalog-project"), samples=2)
    first = run_at(root)
    cand = yaml.safe_load((root / "models" / "candidate.yaml").read_text())
    cand["system_prompt"] = "Answer briefly."
    (root / "models" / "candidate.yaml").write_text(yaml.safe_dump(cand))
    second = run_at(root)
    body = {"rubric": "basic", "cases": make_cases(36)}
    (root / "canaries" / "set.yaml").write_text(yaml.safe_dump(body))
    third = run_at(root)
    return [first, second, third]


def test_snapshot_figures_are_the_runs_and_intervals_bracket_them(
        three_runs: list[RunResult]) -> None:
    result = three_runs[0]
    cand, base = snapshots_of(result)
    assert (cand.role, base.role) == ("candidate", "baseline")
    assert (cand.model, base.model) == ("cand-model", "base-model")
    assert cand.fingerprint == result.candidate.fingerprint
    assert cand.params == {"temperature": 0.7} and base.params == {"temperature": 0.1}
    assert cand.canary_fingerprint == result.canary_fingerprint
    assert (cand.n, cand.calls, cand.samples) == (30, 60, 2)
    assert cand.verdict == result.verdict and base.verdict is None
    assert {m: f.value for m, f in cand.metrics.items()} == result.metrics
    assert {m: f.value for m, f in base.metrics.items()} == result.baseline_metrics
    for s in (cand, base):
        for name, f in s.metrics.items():
            assert f.value is not None and f.low is not None and f.high is not None, name
            assert f.low <= f.value <= f.high, (name, f)
    assert (cand.metrics["hallucination_rate"].value or 0) > 0
    p95 = cand.metrics["latency_p95_ms"]
    assert p95.low is not None and p95.high is not None and p95.high > p95.low


def test_rate_interval_is_wilson_with_one_sample_per_canary(tmp_path: Path) -> None:
    result = run_at(project_at(tmp_path, cases=40, samples=1, hallucination=0.3))
    f = snapshots_of(result)[0].metrics["hallucination_rate"]
    graded = [r for r in result.records if r.ok and r.passed is not None]
    k = sum(1 for r in graded if r.hallucination)
    assert f.value == k / len(graded)
    assert (f.low, f.high) == pytest.approx(wilson_bounds(k, len(graded), 0.025))
    assert f.method == "Wilson"


def test_a_saved_baseline_is_not_snapshotted_again(tmp_path: Path) -> None:
    """A baseline read from a saved result is that earlier run's snapshot, not this run's."""
    root = project_at(tmp_path, cases=10)
    first = run_at(root)
    write_result(first, root / "saved.json")
    project = load_project(root)
    second = run_project(project, baseline=resolve("saved.json", project.gate))
    assert second.baseline is not None and second.baseline.kind == "result"
    assert [s.role for s in snapshots_of(second)] == ["candidate"]


def test_three_runs_survive_export_and_import_with_trends_drawn(
        three_runs: list[RunResult], tmp_path: Path) -> None:
    db = tmp_path / ".evalgate" / "catalog.sqlite3"
    for result in three_runs:
        assert append_run(db, result) == (2, None)
    assert append_run(db, three_runs[0]) == (0, None), "the same run twice is one snapshot"
    with Catalog(db) as catalog:
        kept = catalog.snapshots()
        assert len(catalog) == 6
        assert export_lines(catalog, tmp_path / "export.jsonl") == 6
    assert kept == [s for r in three_runs for s in snapshots_of(r)]
    lines = (tmp_path / "export.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [s.id for s in kept]

    with Catalog(tmp_path / "elsewhere.sqlite3") as other:
        assert import_lines(other, tmp_path / "export.jsonl") == (6, 0)
        assert import_lines(other, tmp_path / "export.jsonl") == (0, 6), "duplicates skipped"
        assert other.snapshots() == kept
        export_lines(other, tmp_path / "again.jsonl")
    assert (tmp_path / "again.jsonl").read_bytes() == (tmp_path / "export.jsonl").read_bytes()

    cat = arrange(kept)
    assert len(cat.runs) == 3 and len(cat.versions) == 3, "two candidate versions + baseline"
    assert [(c.before.index, c.after.index) for c in cat.changes] == [(1, 2)]
    html = render_html(kept)
    assert html.count('class="trend-chart"') == len(cat.metrics)
    # the baseline's line joins runs 1 and 2 only: the canary change breaks it before run 3
    assert html.count('class="trend"') == len(cat.metrics)
    assert html.count('class="canary-change"') == len(cat.metrics) + 1  # each chart + the note
    assert "not compared as equals" in html
    markdown = render_markdown(kept)
    assert "**Note:** The canary set changed between run 2" in markdown
    assert "| 3 (canary set changed) |" in markdown


def test_import_of_a_broken_line_names_file_and_line_and_adds_nothing(
        three_runs: list[RunResult], tmp_path: Path) -> None:
    good = [s.model_dump_json() for s in snapshots_of(three_runs[0])]
    path = tmp_path / "broken.jsonl"
    path.write_text(good[0] + "\n\n" + good[1][:-5] + "\n")
    with Catalog(tmp_path / "c.sqlite3") as catalog:
        with pytest.raises(CatalogError, match=r"broken\.jsonl:3: not a catalog snapshot"):
            import_lines(catalog, path)
        assert len(catalog) == 0, "all or nothing"
        path.write_text(good[0] + "\n" + json.dumps({"id": "x"}) + "\n")
        with pytest.raises(CatalogError, match=r"broken\.jsonl:2: .*taken_at"):
            import_lines(catalog, path)


def test_an_unwritable_catalog_is_a_warning(three_runs: list[RunResult],
                                            tmp_path: Path) -> None:
    (tmp_path / "not-a-db.sqlite3").write_text("this is no database\n" * 20)
    added, warning = append_run(tmp_path / "not-a-db.sqlite3", three_runs[0])
    assert added == 0 and warning is not None and "not a database" in warning
    (tmp_path / "file").write_text("")
    added, warning = append_run(tmp_path / "file" / "catalog.sqlite3", three_runs[0])
    assert added == 0 and warning is not None and "not written" in warning


def test_a_newer_catalog_schema_is_refused(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "new.sqlite3")
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(CatalogError, match="schema 99 is newer"):
        Catalog(tmp_path / "new.sqlite3")


def test_two_writers_at_once_both_land(three_runs: list[RunResult], tmp_path: Path) -> None:
    """Two connections appending at the same moment (two CI jobs on one disk): the busy
    timeout queues the second transaction instead of failing it."""
    db = tmp_path / "shared.sqlite3"
    Catalog(db).close()
    batches = [snapshots_of(r) for r in three_runs[:2]]
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def write(snapshots: list[Snapshot]) -> None:
        try:
            with Catalog(db) as catalog:
                start.wait()
                for s in snapshots:
                    catalog.add([s])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Catalog(db) as catalog:
        assert len(catalog) == 4
        assert catalog.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# -- the statistics ----------------------------------------------------------------------------

def test_canary_bootstrap_matches_a_brute_force_bootstrap() -> None:
    """The windowed percentile and the gathered mean equal expanding every resample."""
    rng = np.random.default_rng(7)
    values = [rng.exponential(100, size=int(rng.integers(0, 4))) for _ in range(40)]
    boot = CanaryBootstrap(40, 300, seed=3)
    expanded = [np.concatenate([values[j] for j in boot.drawn[i]]) for i in range(300)]
    for q in (0, 50, 95, 99, 100):
        want = np.quantile([np.percentile(e, q) for e in expanded if e.size], [0.05, 0.95])
        assert boot.percentile(values, q, 0.05) == pytest.approx(tuple(want), rel=1e-12)
    means = [e.mean() for e in expanded if e.size]
    assert boot.mean(values, 0.05) == pytest.approx(tuple(np.quantile(means, [0.05, 0.95])))


def test_canaries_are_resampled_not_calls() -> None:
    """K identical answers per canary carry one canary's information: the interval must not
    shrink as if they were K independent calls."""
    rng = np.random.default_rng(1)
    once = [[v] for v in rng.lognormal(5, 0.5, size=60)]
    thrice = [v * 3 for v in once]
    assert cluster_percentile_interval(thrice, 95, 0.025) == pytest.approx(
        cluster_percentile_interval(once, 95, 0.025), rel=0.05)
    assert cluster_mean_interval(thrice, 0.025) == pytest.approx(
        cluster_mean_interval(once, 0.025))
    calls = [[v] for v in np.repeat(np.array(once).ravel(), 3)]
    lo, hi = cluster_mean_interval(calls, 0.025) or (0, 0)
    lo1, hi1 = cluster_mean_interval(once, 0.025) or (0, 0)
    assert hi - lo < 0.75 * (hi1 - lo1), "resampling calls would be too narrow"
    assert cluster_mean_interval([[1.0]], 0.025) is None, "one canary: nothing to resample"


def test_a_metric_with_no_data_has_no_interval() -> None:
    figures = metric_figures([])
    assert all(f.value is None and f.low is None for f in figures.values())


# -- the page ----------------------------------------------------------------------------------

def hostile(snapshots: list[Snapshot]) -> list[Snapshot]:
    return [s.model_copy(update={"config": PAYLOAD, "recommended_for": [PAYLOAD, "support"],
                                 "params": {"note": PAYLOAD}}) if s.role == "candidate" else s
            for s in snapshots]


def test_page_escapes_every_text(three_runs: list[RunResult]) -> None:
    snapshots = hostile([s for r in three_runs for s in snapshots_of(r)])
    html = render_html(snapshots)
    assert PAYLOAD not in html and "&lt;script&gt;" in html
    assert "<script" not in html, "the page has no script at all"
    markdown = render_markdown(snapshots)
    assert "`<script>" in markdown, "untrusted names are code spans"
    assert "\n<script" not in markdown


def test_an_empty_catalog_renders() -> None:
    assert 'id="empty"' in render_html([])
    assert "The catalog is empty" in render_markdown([])


def test_one_snapshot_and_missing_figures_render(three_runs: list[RunResult]) -> None:
    one = snapshots_of(three_runs[0])[0]
    bare = one.model_copy(update={"metrics": {"pass_rate": MetricFigure(value=None)}})
    html = render_html([bare])
    assert "no snapshot has a value for this metric" in html
    assert "n/a" in render_markdown([bare])


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Any:
    import os
    import shutil

    if not Path(CHROMIUM).exists():
        missing = f"{CHROMIUM} is not installed (apt-get install chromium)"
        (pytest.fail if os.environ.get("CI") else pytest.skip)(missing)
    profile = tmp_path_factory.mktemp("catalog-chromium")
    chrome = Chromium(profile)
    try:
        chrome.send("Browser.getVersion")
        yield chrome
    finally:
        chrome.close()
        shutil.rmtree(profile, ignore_errors=True)


def test_catalog_page_in_chromium_has_no_errors_and_shows_intervals(
        browser: Chromium, three_runs: list[RunResult], tmp_path: Path) -> None:
    snapshots = hostile([s for r in three_runs for s in snapshots_of(r)])
    path = tmp_path / "catalog.html"
    path.write_text(render_html(snapshots), encoding="utf-8")
    page = Page(browser)
    page.open(path)
    print(f"screenshot: {page.screenshot(tmp_path / 'catalog.png')}")
    assert page.problems() == []
    assert [u for u in page.requests() if not u.startswith("file://")] == []
    assert page.js("document.body.getAttribute('data-pwned')") is None
    assert page.js("document.querySelectorAll('tr.version').length") == 3
    # every key figure of every version shows its interval, on screen
    shown = page.js("""[...document.querySelectorAll('#versions-table .ci')].map(e => {
        const r = e.getBoundingClientRect(); return [e.textContent, r.width > 0 && r.height > 0];
    })""")
    assert len(shown) == 3 * 5 and all(visible and text.startswith("[") for text, visible in shown)
    whiskers = page.js("""[...document.querySelectorAll('svg .ci')].filter(g => {
        const r = g.getBoundingClientRect(); return r.height > 0 || r.width > 0; }).length""")
    points = page.js("document.querySelectorAll('svg circle.pt').length")
    assert whiskers > 0 and points >= whiskers
    assert page.js("document.querySelectorAll('li.canary-change').length") == 1
    assert page.js("document.querySelector('#canary-notes').getBoundingClientRect().height") > 0
    assert page.js("document.querySelectorAll('svg line.canary-change').length") == \
        len(arrange(snapshots).metrics)
    narrow = Page(browser, width=400, height=800)  # a phone: tables scroll, nothing spills
    narrow.open(path)
    assert narrow.problems() == []
    assert narrow.js("document.documentElement.scrollWidth") <= 400
    assert narrow.js("document.querySelector('svg.chart').getBoundingClientRect().width") <= 400


# -- the shells --------------------------------------------------------------------------------

def test_cli_add_export_import_and_render(three_runs: list[RunResult], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for i, result in enumerate(three_runs):
        write_result(result, tmp_path / f"run{i}.json")
    assert main(["catalog", "add", "run0.json", "run1.json"]) == 0
    assert main(["catalog", "add", "run2.json", "run1.json"]) == 0
    out = capsys.readouterr().out
    assert "4 snapshot(s) added, 0 already there" in out
    assert "2 snapshot(s) added, 2 already there" in out
    assert Path(".evalgate/catalog.sqlite3").exists()
    assert main(["catalog", "export", "cat.jsonl"]) == 0
    assert main(["catalog", "--catalog", "copy.sqlite3", "import", "cat.jsonl"]) == 0
    assert main(["catalog", "import", "cat.jsonl", "--catalog", "copy.sqlite3"]) == 0
    out = capsys.readouterr().out
    assert "6 snapshot(s) imported" in out and "0 snapshot(s) imported" in out
    assert main(["catalog", "--catalog", "copy.sqlite3", "--out", "site"]) == 0
    assert "trend-chart" in (tmp_path / "site" / "catalog.html").read_text()
    assert "# Model catalog" in (tmp_path / "site" / "catalog.md").read_text()
    assert main(["catalog", "--catalog", "nowhere.sqlite3"]) == 4
    assert main(["catalog", "add", "missing.json"]) == 4
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    assert main(["catalog", "import", "bad.jsonl"]) == 4
    err = capsys.readouterr().err
    assert "nowhere.sqlite3: no catalog here" in err
    assert "missing.json: file not found" in err
    assert "bad.jsonl:1: not a catalog snapshot" in err


def test_pytest_evalgate_appends_each_run_and_off_appends_none(
        pytester: pytest.Pytester) -> None:
    project_at(pytester.path, cases=8)
    args = ("--evalgate", "-p", "no:cacheprovider")
    first = pytester.runpytest_subprocess(*args, "--evalgate-catalog=.evalgate/c.sqlite3")
    first.stdout.fnmatch_lines(["catalog: *c.sqlite3 (+2 snapshot(s))"])
    second = pytester.runpytest_subprocess(*args, "--evalgate-catalog=.evalgate/c.sqlite3")
    assert second.ret == first.ret
    pytester.runpytest_subprocess(*args)  # EVALGATE_CATALOG=off here (tests/conftest.py)
    with Catalog(pytester.path / ".evalgate" / "c.sqlite3") as catalog:
        snapshots = catalog.snapshots()
    assert len(snapshots) == 4 and len({s.run_id for s in snapshots}) == 2
    assert not (pytester.path / ".evalgate" / "catalog.sqlite3").exists()
    (pytester.path / "broken.sqlite3").write_text("no database here\n" * 20)
    broken = pytester.runpytest_subprocess(*args, "--evalgate-catalog=broken.sqlite3")
    broken.stdout.fnmatch_lines(["evalgate catalog: *broken.sqlite3 not written (*"])
    assert broken.ret == first.ret, "an unwritable catalog never changes the outcome"


def test_markdown_trends_keep_to_the_last_runs(three_runs: list[RunResult]) -> None:
    """Many runs must not outgrow a PR comment: the Markdown keeps the last 30 of them."""
    one = snapshots_of(three_runs[0])[0]
    many = [one.model_copy(update={"id": f"s{i}", "run_id": f"r{i:03d}",
                                   "taken_at": f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}+00:00"})
            for i in range(100)]
    markdown = render_markdown(many)
    assert "The last 30 of 100 runs" in markdown
    assert "| 71 |" in markdown and "| 70 |" not in markdown
    assert len(markdown) < 65536
    assert render_html(many).count('class="pt"') == 100 * len(one.metrics)


def test_a_run_with_no_records_adds_no_snapshot(three_runs: list[RunResult]) -> None:
    """Every canary deselected: nothing was measured, so no point lands on a trend."""
    empty = three_runs[0].model_copy(update={"records": [], "baseline_records": []})
    assert snapshots_of(empty) == []
