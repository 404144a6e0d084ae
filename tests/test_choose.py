"""N candidates in one run, the leaderboard and the recommendation: the statistics against known
answers and seeded simulation, the runs against the simulator over real HTTP."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from evalgate.errors import ConfigError
from evalgate.gate.baseline import resolve
from evalgate.gate.leaderboard import MIN_CANARIES, choose
from evalgate.pipeline.project import load_project
from evalgate.pipeline.run import run_project
from evalgate.results import Record, RunResult
from evalgate.spec.config import GateSettings
from evalgate.stats import choice
from tests.conftest import make_cases, sim_model, write_project

pytest_plugins = ["pytester"]


def priced(input_per_mtok: float, **profile: Any) -> dict[str, Any]:
    model = sim_model(**profile)
    model["pricing"] = {"input_per_mtok": input_per_mtok, "output_per_mtok": input_per_mtok}
    return model


def project_with(root: Path, models: dict[str, dict[str, Any]], n: int,
                 gate: dict[str, Any] | None = None) -> Path:
    """A project whose candidates are `models` (in order), each file models/<name>.yaml."""
    first, *_ = models
    write_project(root, model=models[first], cases=make_cases(n),
                  gate={"candidate": None, "candidates": [f"models/{m}.yaml" for m in models],
                        "concurrency": 16, **(gate or {})})
    (root / "models" / "candidate.yaml").unlink()
    for name, model in models.items():  # the simulator tells profiles apart by model name
        (root / "models" / f"{name}.yaml").write_text(yaml.safe_dump({**model, "model": name}))
    text = yaml.safe_load((root / "evalgate.yaml").read_text())
    text.pop("candidate")
    (root / "evalgate.yaml").write_text(yaml.safe_dump(text, sort_keys=False))
    return root


# --------------------------------------------------------------------------- statistics


def test_choice_intervals_match_known_answers() -> None:
    from scipy import stats as sps

    x = np.array([1.0] * 45 + [0.0] * 5)
    iv = choice.rate_interval(x, 0.05)
    z = sps.norm.isf(0.05)
    centre = (0.9 + z * z / 100) / (1 + z * z / 50)
    half = z * math.sqrt(0.9 * 0.1 / 50 + z * z / 10000) / (1 + z * z / 50)
    assert iv.value == 0.9 and iv.low == pytest.approx(centre - half)
    assert iv.high == pytest.approx(centre + half)
    m = choice.mean_interval(np.array([1.0, 2.0, 3.0, 4.0]), 0.05)
    half = sps.t.isf(0.05, 3) * np.std([1, 2, 3, 4], ddof=1) / 2
    assert (m.low, m.high) == (pytest.approx(2.5 - half), pytest.approx(2.5 + half))
    # the exact two-sided McNemar test is the two-sided binomial test on the discordant pairs
    a = np.array([1] * 12 + [0] * 3 + [1] * 30, dtype=float)
    b = np.array([0] * 12 + [1] * 3 + [1] * 30, dtype=float)
    assert choice.paired_difference_p(a, b) == pytest.approx(
        sps.binomtest(12, 15, 0.5).pvalue, rel=1e-9)
    # cost per successful answer: a ratio of sums; equal costs and passes are exactly 1 per pass
    r = choice.ratio_interval(np.full(40, 2.0), np.ones(40), 0.05)
    assert (r.value, r.low, r.high) == (2.0, pytest.approx(2.0), pytest.approx(2.0))
    assert choice.ratio_interval(np.ones(5), np.zeros(5), 0.05).value is None
    q = choice.quantile_interval(np.arange(1.0, 101.0), 0.5, 0.05)
    assert q.value == pytest.approx(50.5, abs=0.01) and q.low < 50.5 < q.high


def synthetic(name: str, rng: np.random.Generator, n: int, pass_p: float, hall_p: float,
              cost: float) -> list[Record]:
    """Paired records (canary i of every config is the same canary) with known rates."""
    template = Record(key="s/c", set="s", case_id="c", config=name, ok=True, text="x",
                      cost_usd=cost)
    hall = rng.random(n) < hall_p
    passed = ~hall & (rng.random(n) < pass_p)
    return [template.model_copy(update={
        "key": f"s/c{i}", "case_id": f"c{i}", "passed": bool(passed[i]),
        "hallucination": bool(hall[i]), "latency_ms": 100.0 + i}) for i in range(n)]


def test_identical_configs_claim_a_difference_in_at_most_alpha_of_repetitions() -> None:
    """Four configs of one quality: the leaderboard calls some pair significantly different
    (Holm across all pairs and both metrics) in <= alpha of 400 seeded repetitions."""
    rng = np.random.default_rng(20261203)
    settings = GateSettings()
    claims = 0
    reps = 400
    for _ in range(reps):
        configs = [(n, synthetic(n, rng, 60, 0.8, 0.1, 0.001)) for n in "abcd"]
        picked = choose(configs, settings, 1)
        claims += any(p.significant for p in picked.pairs)
    # alpha = 0.05: 20 of 400 expected at most; the binomial 99.9% upper limit allows 33
    assert claims / reps <= 0.05 + 3.1 * math.sqrt(0.05 * 0.95 / reps), claims


def test_a_clearly_better_config_is_told_apart() -> None:
    rng = np.random.default_rng(7)
    configs = [("good", synthetic("good", rng, 200, 0.95, 0.0, 0.01)),
               ("bad", synthetic("bad", rng, 200, 0.6, 0.2, 0.001))]
    picked = choose(configs, GateSettings(), 1)
    assert picked.best == "good" and picked.recommended == "good"
    assert picked.verdict == "NONE_NON_INFERIOR"
    assert all(p.significant for p in picked.pairs)
    bad = next(s for s in picked.standings if s.name == "bad")
    assert bad.non_inferior is False and bad.tied_with_best == []


def test_below_the_minimum_the_choice_is_inconclusive() -> None:
    rng = np.random.default_rng(3)
    configs = [(n, synthetic(n, rng, MIN_CANARIES - 1, 0.9, 0.0, 0.01)) for n in "ab"]
    picked = choose(configs, GateSettings(), 1)
    assert picked.verdict == "INCONCLUSIVE" and picked.recommended is None
    assert f"only {MIN_CANARIES - 1} canaries" in picked.reason


# --------------------------------------------------------------------------- runs over HTTP


FOUR = {
    # perfect and dear; perfect and cheap (the right answer); cheapest but hallucinates;
    # cheap-ish and hallucinating now and then
    "dear": priced(8.0),
    "cheap": priced(1.0),
    "liar": priced(0.1, hallucination_rate=0.35),
    "flaky": priced(0.5, hallucination_rate=0.12),
}


@pytest.fixture(scope="module")
def four(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """One run of the four profiles (240 canaries x 4 configs over HTTP), shared."""
    project = load_project(project_with(tmp_path_factory.mktemp("four"), FOUR, 240))
    assert [m.name for m in project.configs] == list(FOUR)
    return run_project(project)


def test_four_profiles_recommend_the_known_right_one(four: RunResult) -> None:
    result = four
    assert {r.config for a in result.alternatives for r in a.records} == {"cheap", "liar",
                                                                          "flaky"}
    assert result.calls_by_config["candidate"].made == 240
    assert all(result.calls_by_config[n].made == 240 for n in ("cheap", "liar", "flaky"))
    board = result.leaderboard
    assert board is not None
    overall = board.overall
    assert overall.recommended == "cheap", overall.reason
    assert overall.verdict == "RECOMMEND"
    by_name = {s.name: s for s in overall.standings}
    assert by_name["liar"].non_inferior is False and by_name["flaky"].non_inferior is False
    assert by_name["dear"].non_inferior is True
    cps = by_name["cheap"].figures["cost_per_success_usd"]
    assert cps.low is not None and cps.low <= cps.value <= cps.high
    # the liar passes ~65%: its cost per successful answer is its cost per call / 0.65
    liar = by_name["liar"].figures
    assert liar["cost_per_success_usd"].value == pytest.approx(
        liar["cost_per_1k_usd"].value / 1000 / liar["pass_rate"].value, rel=1e-9)
    assert "Holm" in board.correction
    assert [c.tag for c in board.by_tag] == ["even", "odd"]
    assert all(c.recommended == "cheap" for c in board.by_tag)
    assert board.paths["cheap"] == "models/cheap.yaml"


def test_a_candidate_whose_calls_all_fail_is_no_data_never_best(tmp_path: Path) -> None:
    models = {"ok": priced(1.0), "dead": priced(0.01, error_500_rate=1.0)}
    models["dead"]["max_retries"] = 0
    result = run_project(load_project(project_with(
        tmp_path, models, 40, {"gate": {"metrics": {"error_rate": {"max": 0.5}}}})))
    board = result.leaderboard
    assert board is not None
    dead = next(s for s in board.overall.standings if s.name == "dead")
    assert dead.status == "no data" and board.overall.best == "ok"
    assert board.overall.recommended == "ok"
    assert result.alternatives[0].verdict != "PASS"


def test_each_candidate_is_gated_and_require_decides(tmp_path: Path) -> None:
    models = {"a": priced(1.0), "b": priced(1.0, hallucination_rate=0.6)}
    gate = {"baseline": "models/base.yaml", "gate": {"require": "primary"}}
    root = project_with(tmp_path, models, 60, gate)
    (root / "models" / "base.yaml").write_text(yaml.safe_dump(priced(1.0)))
    project = load_project(root)
    baseline = resolve("models/base.yaml", project.gate, "baseline")
    result = run_project(project, baseline=baseline)
    assert result.require == "primary" and result.verdict == result.primary_verdict
    b = result.alternatives[0]
    hall = next(v for v in b.verdicts if v.guardrail == "hallucination_rate_vs_baseline")
    assert hall.verdict == "FAIL" and b.verdict == "FAIL"
    assert [v.guardrail for v in b.verdicts] == [v.guardrail for v in result.verdicts]
    assert result.verdict != "FAIL"
    names = {s.name for s in result.leaderboard.overall.standings}  # type: ignore[union-attr]
    assert names == {"a", "b", "baseline (base)"}
    from evalgate.report.junit import render_junit

    xml = render_junit(result)
    assert 'name="gate[a:hallucination_rate_vs_baseline]"' in xml
    assert 'name="gate[b:hallucination_rate_vs_baseline]"' in xml
    assert 'type="evalgate.FAIL"' not in xml  # b fails, but require: primary does not block
    strict = render_junit(result.model_copy(update={"require": "all"}))
    assert 'type="evalgate.FAIL"' in strict


@pytest.mark.parametrize("gate,field,words", [
    ({"candidates": ["models/a.yaml", "models/a.yaml"]}, "candidates", "listed twice"),
    ({"candidates": ["models/a.yaml", "models/b.yaml"], "baseline": "models/b.yaml"},
     "candidates", "also the baseline"),
    ({"candidate": "models/a.yaml", "baseline": "models/a.yaml"}, "candidate",
     "also the baseline"),
])
def test_bad_candidates_are_usage_errors(tmp_path: Path, gate: dict[str, Any], field: str,
                                         words: str) -> None:
    root = project_with(tmp_path, {"a": priced(1.0), "b": priced(1.0)}, 4)
    data = yaml.safe_load((root / "evalgate.yaml").read_text())
    data.pop("candidates")
    (root / "evalgate.yaml").write_text(yaml.safe_dump({**data, **gate}))
    with pytest.raises(ConfigError) as info:
        load_project(root)
    problem = info.value.problems[0]
    assert problem.field == field and words in problem.message
    assert problem.file == "evalgate.yaml"


def test_two_candidates_with_one_name_are_a_usage_error(tmp_path: Path) -> None:
    same = {**priced(1.0), "name": "twin"}
    root = project_with(tmp_path, {"a": same, "b": same}, 4)
    with pytest.raises(ConfigError) as info:
        load_project(root)
    problem = info.value.problems[0]
    assert problem.field == "candidates" and "'twin'" in problem.message
    assert "models/b.yaml" in problem.message


def test_the_cache_and_resume_work_with_n_configs(tmp_path: Path) -> None:
    models = {"a": priced(1.0), "b": priced(0.5), "c": priced(0.2)}
    project = load_project(project_with(tmp_path, models, 12))
    first = run_project(project, cache="on")
    assert first.calls_from_cache == 0 and first.calls_made == 36
    again = run_project(project, cache="on", resume=True)
    assert again.calls_from_cache == 36 and again.calls_made == 0
    assert {r.config for a in again.alternatives for r in a.records} == {"b", "c"}
    assert all(r.cached for a in again.alternatives for r in a.records)
    assert again.leaderboard is not None
    assert [s.name for s in again.leaderboard.overall.standings] == ["a", "b", "c"]


def test_plugin_items_per_candidate_and_exit_by_require(pytester: pytest.Pytester) -> None:
    models = {"a": priced(1.0), "b": priced(1.0, error_500_rate=1.0)}
    models["b"]["max_retries"] = 0
    project_with(pytester.path, models, 8,  # 0 of 8 is below an exact 50% cap; 0 of 4 is not
                 {"gate": {"metrics": {"error_rate": {"max": 0.5}}}})
    collected = pytester.runpytest_subprocess("--evalgate", "--collect-only", "-q")
    ids = [line for line in collected.outlines if "gate[" in line]
    assert ids == ["evalgate::gate[a:error_rate]", "evalgate::gate[b:error_rate]"]
    primary = pytester.runpytest_subprocess("--evalgate")
    assert primary.ret == 0, primary.stdout.str()
    data = yaml.safe_load((pytester.path / "evalgate.yaml").read_text())
    data["gate"]["require"] = "all"
    (pytester.path / "evalgate.yaml").write_text(yaml.safe_dump(data))
    strict = pytester.runpytest_subprocess("--evalgate")
    assert strict.ret == 1
    strict.stdout.fnmatch_lines(["*FAILED*gate[[]b:error_rate[]]*"])
    only_a = pytester.runpytest_subprocess("--evalgate", "--evalgate-candidates=models/a.yaml",
                                           "--collect-only", "-q")
    assert "evalgate::gate[error_rate]" in only_a.outlines
    dup = pytester.runpytest_subprocess("--evalgate",
                                        "--evalgate-candidates=models/a.yaml,models/a.yaml")
    assert dup.ret == 4
    dup.stderr.fnmatch_lines(["*candidates*listed twice*"])
    itself = pytester.runpytest_subprocess("--evalgate", "--evalgate-baseline=models/b.yaml")
    assert itself.ret == 4
    itself.stderr.fnmatch_lines(["*--evalgate-baseline*'models/b.yaml' is also a candidate*"])


def test_reports_show_the_leaderboard_and_the_recommendation(four: RunResult) -> None:
    from evalgate.report.html import render_html
    from evalgate.report.junit import render_junit
    from evalgate.report.markdown import render_markdown
    from evalgate.report.summary import summary_lines

    terminal = "\n".join(summary_lines(four))
    assert "leaderboard (4 configs, gate.require: primary):" in terminal
    assert "recommended: cheap (cheap is the cheapest config non-inferior" in terminal
    assert "Holm-adjusted" in terminal
    md = render_markdown(four)
    assert "### Leaderboard" in md and "cost / success" in md and "**recommended\\: cheap" in md
    page = render_html(four)
    assert 'id="choice"' in page and 'id="chart-pareto"' in page
    assert "cheap: pass rate 100.0%" in page and "(Pareto front)" in page
    xml = render_junit(four)
    assert 'name="evalgate.choice"' in xml and "leaderboard[liar]" in xml
    assert "gate[cheap:" not in xml  # no guardrails in this gate: no items to show
    assert "recommendation" in xml and 'name="recommended" value="cheap"' in xml


def test_pareto_front_known_answer() -> None:
    from evalgate.report.pareto import pareto_front

    points = [("a", 0.9, 2.0), ("b", 0.95, 3.0), ("c", 0.8, 2.5), ("d", 0.9, 1.0)]
    assert pareto_front(points) == ["b", "d"]


def test_choose_writes_a_router_that_runs_as_the_next_candidate(tmp_path: Path) -> None:
    """`evenonly` answers only the even canaries (its calls on odd ones fail) and costs a
    fifth: the router sends tag `even` to it and the rest to `cheap`."""
    from evalgate.cli import main

    n = 200
    odd = [f"set/c{i}" for i in range(1, n, 2)]
    models = {"cheap": priced(1.0),
              "evenonly": priced(0.2, error_500_rate=1.0, fault_cases=odd)}
    models["evenonly"]["max_retries"] = 0
    root = project_with(tmp_path, models, n, {"traffic": {"weights": {"even": 3, "odd": 1}}})
    result = run_project(load_project(root))
    board = result.leaderboard
    assert board is not None
    assert board.overall.recommended == "cheap"
    assert {c.tag: c.recommended for c in board.by_tag} == {"even": "evenonly", "odd": "cheap"}
    from evalgate.results import write_result

    write_result(result, root / "reports" / "evalgate.json")
    assert main(["choose", str(root / "reports" / "evalgate.json"), "-o",
                 str(root / "router.yaml"), "--root", str(root)]) == 0
    text = (root / "router.yaml").read_text()
    spec = yaml.safe_load(text)
    assert spec["router"] == {"routes": [{"name": "tag-even", "when": "'even' in tags",
                                          "model": "models/evenonly.yaml"}],
                              "default": "models/cheap.yaml"}
    assert "# Overall: NONE_NON_INFERIOR" in text or "# Overall: RECOMMEND" in text
    assert "margins: pass_rate 5.0%, hallucination_rate 5.0%" in text
    assert "under traffic.weights (even 3, odd 1)" in text
    # the router's blended cost: 3/4 of the traffic at a fifth of the price
    line = next(x for x in text.splitlines() if "Blended cost" in x)
    router = float(line.split("router $")[1].split(" ")[0])
    alone = float(line.split("against $")[1].split(" ")[0])
    assert "for the best single model, cheap" in line
    assert router == pytest.approx(alone * (0.75 * 0.2 + 0.25), rel=0.02)
    # the router, as the candidate of a follow-up run, passes a pass-rate floor
    data = yaml.safe_load((root / "evalgate.yaml").read_text())
    data.pop("candidates")
    data |= {"candidate": "router.yaml", "gate": {"metrics": {"pass_rate": {"min": 0.9}}}}
    (root / "evalgate.yaml").write_text(yaml.safe_dump(data))
    follow = run_project(load_project(root))
    assert follow.verdict == "PASS", [v.reason for v in follow.verdicts]
    assert {r.route for r in follow.records} == {"tag-even", "default"}
    assert main(["choose", str(root / "evalgate.yaml"), "-o", str(tmp_path / "x.yaml")]) == 4


def test_shards_merge_with_n_configs_like_one_run(tmp_path: Path) -> None:
    from evalgate.pipeline.merge import merge_results

    models = {"a": priced(1.0), "b": priced(0.5, hallucination_rate=0.2, seed=3)}
    project = load_project(project_with(
        tmp_path, models, 40, {"gate": {"metrics": {"hallucination_rate": {"max": 0.5}}}}))
    full = run_project(project)
    ids = sorted(r.record_id for r in full.records)
    shards = [run_project(project, selected=ids[k::2], shard=(k + 1, 2)) for k in range(2)]
    assert all(len(s.alternatives[0].records) == 20 for s in shards)
    merged = merge_results(shards)
    assert len(merged.alternatives) == 1 and merged.alternatives[0].label == "b"
    b_full, b_merged = full.alternatives[0], merged.alternatives[0]
    assert sorted(r.record_id for r in b_merged.records) == sorted(
        r.record_id for r in b_full.records)
    assert [v.verdict for v in b_merged.verdicts] == [v.verdict for v in b_full.verdicts]
    assert merged.leaderboard is not None and full.leaderboard is not None
    assert merged.leaderboard.overall.best == full.leaderboard.overall.best
    assert merged.calls_by_config["b"].made == 40


def test_sequential_looks_with_n_configs(tmp_path: Path) -> None:
    models = {"a": priced(1.0), "b": priced(0.5)}
    project = load_project(project_with(tmp_path, models, 30, {"gate": {
        "sequential": True, "metrics": {"pass_rate": {"min": 0.5}}}}))
    result = run_project(project)
    assert result.sequential is not None
    b = result.alternatives[0]
    assert b.records and all(r.config == "b" and r.passed is not None for r in b.records)
    assert [v.guardrail for v in b.verdicts] == ["pass_rate"]


def test_compare_takes_n_saved_results(tmp_path: Path) -> None:
    """Three single-candidate runs saved apart, compared with one baseline run at once."""
    from evalgate.cli import main
    from evalgate.results import read_result, write_result

    paths = []
    for name, model in {"base": priced(1.0), "a": priced(0.5),
                        "b": priced(0.2, hallucination_rate=0.5)}.items():
        root = write_project(tmp_path / name, model={**model, "model": name, "name": name},
                             cases=make_cases(40),
                             gate={"gate": {"vs_baseline": {"hallucination_rate": 0.05}}})
        path = tmp_path / f"{name}.json"
        write_result(run_project(load_project(root)), path)
        paths.append(str(path))
    out = tmp_path / "out"
    code = main(["compare", *paths, "--out", str(out)])
    result = read_result(out / "evalgate.json")
    assert [a.info.name for a in result.alternatives] == ["b"]
    hall = next(v for v in result.alternatives[0].verdicts
                if v.guardrail == "hallucination_rate_vs_baseline")
    assert hall.verdict == "FAIL"
    assert result.require == "primary" and code == (1 if result.verdict != "PASS" else 0)
    board = result.leaderboard
    assert board is not None
    assert {s.name for s in board.overall.standings} == {"a", "b", "baseline (base)"}
    assert "### Leaderboard" in (out / "evalgate.md").read_text()


def test_a_killed_n_candidate_run_resumes_with_only_the_missing_calls(tmp_path: Path) -> None:
    """SIGKILL mid-run, then --evalgate-resume: the journal holds every config's answers
    under its own label, and only the calls it lacks are made again."""
    import os
    import signal

    from evalgate.engine.persist import read_journal
    from evalgate.sim import SimServer
    from tests.conftest import read_json, sim_cases_from
    from tests.test_reliability import (
        case_counts,
        journal_files,
        run_pytest,
        start_pytest,
        wait_for_records,
    )

    n = 60
    server = SimServer(cases=sim_cases_from(make_cases(n)))
    server.start()
    try:
        models = {}
        for name in ("a", "b", "c"):
            server.add_profile(name, {"latency_ms": 40, "seed": 3})
            models[name] = {"provider": "openai", "base_url": f"{server.base_url}/v1",
                            "model": name, "timeout_s": 10, "max_retries": 1,
                            "pricing": {"input_per_mtok": 1.0, "output_per_mtok": 1.0}}
        root = project_with(tmp_path, models, n, {"concurrency": 2})
        proc = start_pytest(root)
        wait_for_records(proc, root, 12)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        [journal] = journal_files(root)
        import json

        finished, _ = read_journal(journal, json.loads(journal.read_text().split("\n")[0])
                                   ["run_key"])
        assert {r.config for r in finished} >= {"candidate"} and len(finished) >= 12
        for name in ("a", "b", "c"):
            server.add_profile(name, {"latency_ms": 1, "seed": 3})
        before = sum(case_counts(server).values())
        code, out = run_pytest(root, "--evalgate-resume")
        assert code == 0, out
        made = sum(case_counts(server).values()) - before
        resumed = read_json(root / "reports" / "evalgate.json")
        assert resumed["calls_from_journal"] == len(finished)
        assert made == 3 * n - len(finished)
        labels = {r["config"] for alt in resumed["alternatives"] for r in alt["records"]}
        assert labels == {"b", "c"} and len(resumed["records"]) == n
    finally:
        server.stop()
