"""Router model configs: loading (located usage errors), per-route records and metrics from the
simulator with two profiles behind two routes, per-route guardrails, blended cost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from evalgate.errors import ConfigError
from evalgate.pipeline.project import load_project
from evalgate.pipeline.run import run_project
from evalgate.results import read_result
from tests.conftest import make_cases, sim_model, write_project

pytest_plugins = ["pytester"]

ROUTER = {"router": {"routes": [{"name": "fast", "when": "'even' in tags",
                                 "model": "fast.yaml"}],
                     "default": "strong.yaml"}}


def fast_model(**profile: Any) -> dict[str, Any]:
    cfg = sim_model(**{"latency_ms": 2, "hallucination_rate": 0.5, "seed": 3, **profile})
    return {**cfg, "model": "fast-m", "pricing": {"input_per_mtok": 0.1, "output_per_mtok": 0.2}}


def strong_model(**profile: Any) -> dict[str, Any]:
    cfg = sim_model(**{"latency_ms": 80, **profile})
    return {**cfg, "model": "strong-m", "pricing": {"input_per_mtok": 5.0, "output_per_mtok": 15.0}}


def routed_project(root: Path, *, router: dict[str, Any] | None = None, n: int = 40,
                   gate: dict[str, Any] | None = None, fast: dict[str, Any] | None = None,
                   strong: dict[str, Any] | None = None) -> Path:
    write_project(root, model=router or ROUTER, cases=make_cases(n), gate=gate)
    (root / "models" / "fast.yaml").write_text(yaml.safe_dump(fast or fast_model()))
    (root / "models" / "strong.yaml").write_text(yaml.safe_dump(strong or strong_model()))
    return root


def test_two_profiles_behind_two_routes_give_per_route_metrics(tmp_path: Path) -> None:
    # 2 ms vs 300 ms simulated, so a busy machine's scheduling (it added ~90 ms to every call
    # once) cannot close the gap between the routes
    routed_project(tmp_path, gate={"concurrency": 16,
                                   "traffic": {"weights": {"even": 3, "odd": 1},
                                               "monthly_requests": 2_000_000}},
                   strong=strong_model(latency_ms=300))
    result = run_project(load_project(tmp_path))
    by_key = {r.case_id: r for r in result.records}
    # Even canaries go the fast route to fast.yaml, the rest to the default (strong.yaml).
    assert all(r.route == ("fast" if int(k[1:]) % 2 == 0 else "default") for k, r in
               by_key.items())
    assert {r.model for r in result.records if r.route == "fast"} == {"fast"}
    assert {r.model for r in result.records if r.route == "default"} == {"strong"}
    routes = {s.route: s for s in result.routes}
    assert set(routes) == {"fast", "default"}
    assert routes["fast"].share == pytest.approx(0.5) and routes["fast"].calls == 20
    fast, strong = routes["fast"].metrics, routes["default"].metrics
    # The profiles differ the way the simulator was told: latency, hallucinations, price.
    assert strong["latency_p50_ms"] > 300
    assert strong["latency_p50_ms"] > fast["latency_p50_ms"] + 150
    assert strong["hallucination_rate"] == 0.0
    assert 0.2 <= fast["hallucination_rate"] <= 0.8   # 20 draws at p=0.5
    assert fast["cost_per_request_usd"] * 20 < strong["cost_per_request_usd"]
    # Blended cost under the traffic mix: 3/4 the even (fast) tag's cost, 1/4 the odd tag's.
    blended = result.blended_cost
    assert blended is not None and blended.per_request_usd is not None
    expected = (3 * fast["cost_per_request_usd"] + strong["cost_per_request_usd"]) / 4
    assert blended.per_request_usd == pytest.approx(expected)
    assert blended.per_month_usd == pytest.approx(expected * 2_000_000)
    assert result.candidate.config["provider"] == "router"


def test_per_route_guardrails_fail_only_the_slow_route(tmp_path: Path) -> None:
    # 2 ms vs 300 ms simulated: a 200 ms limit separates them even on a busy machine
    gate = {"gate": {"routes": {"fast": {"latency_p50_ms": {"max": 200}},
                                "default": {"latency_p50_ms": {"max": 200}}}}}
    routed_project(tmp_path, n=10, gate=gate, fast=fast_model(hallucination_rate=0.0),
                   strong=strong_model(latency_ms=300))
    result = run_project(load_project(tmp_path))
    verdicts = {v.guardrail: v for v in result.verdicts}
    assert verdicts["route[fast].latency_p50_ms"].verdict == "PASS"
    assert verdicts["route[default].latency_p50_ms"].verdict == "FAIL"
    assert "route default" in verdicts["route[default].latency_p50_ms"].reason
    assert result.verdict == "FAIL"


def test_fallback_answers_when_the_routed_model_fails(tmp_path: Path) -> None:
    router = {"router": {**ROUTER["router"], "fallback": "strong.yaml"}}
    routed_project(tmp_path, router=router, n=6,
                   fast=fast_model(error_500_rate=1.0, hallucination_rate=0.0))
    result = run_project(load_project(tmp_path))
    fast = [r for r in result.records if r.route == "fast"]
    assert fast and all(r.ok and r.model == "strong (fallback)" for r in fast)
    # the failed attempts on the routed model stay on the record, then the fallback's
    assert all(r.attempts[0].status == 500 and r.attempts[-1].status == 200 for r in fast)
    # marked like a model's own fallback: counted, warned about, attempts flagged
    assert all(r.answered_by == "strong" and r.attempts[-1].fallback for r in fast)
    assert result.counts["fallback_answers"] == len(fast)
    assert any("answered by the fallback" in w for w in result.warnings)


def test_a_cached_rerun_keeps_routes_and_target_prices(tmp_path: Path) -> None:
    """Cached answers of a router candidate keep their route and model and are priced by the
    target that answered, so the per-route breakdown of a re-run equals the first run's."""
    routed_project(tmp_path, n=12)
    first = run_project(load_project(tmp_path), cache="on")
    again = run_project(load_project(tmp_path), cache="on")
    assert again.calls_from_cache == 12 and again.calls_made == 0
    before = {r.record_id: (r.route, r.model, r.cost_usd, r.text) for r in first.records}
    after = {r.record_id: (r.route, r.model, r.cost_usd, r.text) for r in again.records}
    assert after == before
    assert [(s.route, s.calls, s.metrics["cost_per_request_usd"]) for s in again.routes] == \
        [(s.route, s.calls, s.metrics["cost_per_request_usd"]) for s in first.routes]
    # A route pointed at another model is another router: nothing of the old one is reused,
    # and a plain candidate equal to one target never gets the router's answers.
    (tmp_path / "models" / "fast.yaml").write_text(yaml.safe_dump(
        {**fast_model(), "model": "fast-m2"}))
    changed = run_project(load_project(tmp_path), cache="on")
    assert changed.calls_from_cache == 0 and changed.calls_made == 12
    write_project(tmp_path, model=strong_model(), cases=make_cases(12))
    plain = run_project(load_project(tmp_path), cache="on")
    assert plain.calls_from_cache == 0


@pytest.mark.parametrize("when, needle", [
    ("().__class__", "empty parentheses"),
    ("tags.__class__", "attribute access"),
    ("__import__('os')", "dunder"),
    ("len(tags) > 2", "unknown name 'len'"),
    ("prompt_tokens < 'x'", "compares a number with a string"),
])
def test_bad_condition_is_a_located_usage_error(tmp_path: Path, when: str, needle: str) -> None:
    router = {"router": {"routes": [{"name": "fast", "when": "prompt_tokens < 100",
                                     "model": "fast.yaml"},
                                    {"name": "odd", "when": when, "model": "strong.yaml"}],
                         "default": "strong.yaml"}}
    routed_project(tmp_path, router=router, n=2)
    with pytest.raises(ConfigError) as info:
        load_project(tmp_path)
    problem = next(p for p in info.value.problems if "route 'odd'" in p.message)
    assert problem.file == "models/candidate.yaml" and needle in problem.message
    assert problem.field == "router.routes[1].when"
    text = (tmp_path / "models" / "candidate.yaml").read_text().splitlines()
    assert problem.line is not None and "when:" in text[problem.line - 1]


def test_other_router_mistakes_are_located(tmp_path: Path) -> None:
    router = {"router": {"routes": [{"name": "default", "when": "true", "model": "fast.yaml"},
                                    {"when": "true", "model": "missing.yaml"}],
                         "default": "strong.yaml"}}
    routed_project(tmp_path, router=router, n=2,
                   gate={"gate": {"routes": {"nope": {"pass_rate": {"min": 0.5}}}}})
    with pytest.raises(ConfigError) as info:
        load_project(tmp_path)
    text = str(info.value)
    assert "route 'default': the name is already used" in text
    assert "route 'route2': model 'missing.yaml' could not be loaded" in text
    nested = {"router": {"routes": [], "default": "candidate.yaml"}}
    routed_project(tmp_path, router=nested, n=2)
    with pytest.raises(ConfigError, match="routers do not nest"):
        load_project(tmp_path)


def test_route_guardrail_must_name_a_route(tmp_path: Path) -> None:
    routed_project(tmp_path, n=2, gate={"gate": {"routes": {"nope": {"pass_rate": {"min": 0.5}}}}})
    with pytest.raises(ConfigError, match="route 'nope' is not a route of the candidate"):
        load_project(tmp_path)


def test_plugin_bad_condition_exits_4(pytester: pytest.Pytester) -> None:
    router = {"router": {"routes": [{"name": "x", "when": "id.__class__", "model": "fast.yaml"}],
                         "default": "strong.yaml"}}
    routed_project(pytester.path, router=router, n=2)
    result = pytester.runpytest_subprocess("--evalgate")
    assert result.ret == 4
    assert "models/candidate.yaml" in result.stderr.str() + result.stdout.str()
    assert "route 'x'" in result.stderr.str() + result.stdout.str()


def test_plugin_runs_route_gate_items_and_reports(pytester: pytest.Pytester) -> None:
    gate = {"gate": {"metrics": {"pass_rate": {"min": 0.3}},
                     "routes": {"fast": {"latency_p50_ms": {"max": 5000}}}}}
    routed_project(pytester.path, n=6, gate=gate, fast=fast_model(hallucination_rate=0.0))
    result = pytester.runpytest_subprocess("--evalgate", "-rA")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["PASSED evalgate::gate?route?fast?.latency_p50_ms?"])
    result.stdout.fnmatch_lines(["candidate candidate (router, fast, strong)*",
                                 "routes: fast 50.0% (3 calls;*| default 50.0% (3 calls;*",
                                 "blended cost (the canary distribution as it is): candidate*"])
    data = read_result(pytester.path / "reports" / "evalgate.json")
    assert {s.route for s in data.routes} == {"fast", "default"}
    md = (pytester.path / "reports" / "evalgate.md").read_text()
    assert "Routes" in md and "`fast`" in md
    html = (pytester.path / "reports" / "evalgate.html").read_text()
    assert 'id="production"' in html and "fast" in html


def test_merge_and_compare_keep_the_route_guardrails(tmp_path: Path) -> None:
    """`evalgate merge` and `evalgate compare` decide the gate again from the records: the
    route guardrails are decided again too (not dropped), so a route regression still FAILs."""
    from evalgate.gate.compare import compare_results
    from evalgate.pipeline.merge import merge_results

    gate = {"gate": {"routes": {"default": {"latency_p50_ms": {"max": 200}}}}}
    routed_project(tmp_path, n=12, gate=gate, fast=fast_model(hallucination_rate=0.0),
                   strong=strong_model(latency_ms=300))
    project = load_project(tmp_path)
    ids = [f"{e.key}#0" for e in project.entries]
    halves = [run_project(project, selected=ids[:6]), run_project(project, selected=ids[6:])]
    merged = merge_results(halves)
    verdicts = {v.guardrail: v for v in merged.verdicts}
    assert verdicts["route[default].latency_p50_ms"].verdict == "FAIL"
    # decided on the union's default-route calls, not taken from either half
    from evalgate.gate.metrics import percentile
    union = [r.latency_ms for r in merged.records if r.route == "default" and r.latency_ms]
    assert len(union) == 6
    assert verdicts["route[default].latency_p50_ms"].value == pytest.approx(
        percentile(union, 50))
    assert merged.verdict == "FAIL"
    compared = compare_results(merged, merged)
    assert {v.guardrail: v.verdict for v in compared.verdicts}[
        "route[default].latency_p50_ms"] == "FAIL"
    assert compared.verdict == "FAIL"
