"""Choosing among N configs at scale: 5 candidates x 2,000 canaries at concurrency 64 against the
simulator, against a raw-httpx floor making the same 10,000 requests.

Why this exists: `candidates:` multiplies the calls by N and adds a leaderboard (per-config
intervals, Holm-adjusted pairwise tests, non-inferiority to the best, per tag). This checks
that the engine's overhead stays small at N x the work, that memory stays bounded (peak RSS of
the engine's process), and that the leaderboard's statistics take a small share of the run.

Each workload runs in a fresh child process (this file with --child), the simulator in its own
process (`evalgate sim`), as in bench_overhead.py, whose helpers it uses. Prints the figures;
exits 0. `--quick`: 200 canaries.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_overhead as bo  # the shared project/simulator helpers

CONFIGS = 5
PRICES = (3.0, 1.0, 0.5, 0.25, 0.1)  # per million tokens, in and out: five distinct costs


def write_candidates(root: Path, base_url: str) -> None:
    """Five OpenAI-compatible configs at the simulator, differing in price; the gate lists
    them all as candidates."""
    import yaml

    names = []
    for i, price in enumerate(PRICES[:CONFIGS]):
        name = f"m{i}"
        model = {"provider": "openai", "base_url": f"{base_url}/v1", "model": bo.MODEL,
                 "name": name, "params": {"max_tokens": bo.MAX_TOKENS},
                 "timeout_s": bo.TIMEOUT_S,
                 "pricing": {"input_per_mtok": price, "output_per_mtok": price}}
        (root / "models" / f"{name}.yaml").write_text(yaml.safe_dump(model, sort_keys=False))
        names.append(f"models/{name}.yaml")
    gate = yaml.safe_load((root / "evalgate.yaml").read_text())
    gate.pop("candidate", None)
    gate["candidates"] = names
    (root / "evalgate.yaml").write_text(yaml.safe_dump(gate, sort_keys=False))


def child_engine(spec: dict[str, Any]) -> dict[str, Any]:
    """load_project + run_project with 5 candidates, then the leaderboard timed again alone."""
    import evalgate.gate.choice as choice_mod
    import evalgate.pipeline.run as run_mod
    from evalgate.gate.choice import config_records
    from evalgate.gate.leaderboard import leaderboard
    from evalgate.pipeline.project import load_project
    from evalgate.pipeline.run import run_project

    spans: dict[str, float] = {}
    run_mod.run_jobs = bo.timed(run_mod.run_jobs, spans)  # wrapped, not changed: the calls
    for name in ("grading_phase", "decide_gate"):
        setattr(run_mod, name, timed_as(getattr(run_mod, name), spans, name))
    choice_mod.decide_gate = timed_as(choice_mod.decide_gate, spans, "decide_gate")
    choice_mod.leaderboard_of = timed_as(choice_mod.leaderboard_of, spans, "leaderboard")
    t0 = time.perf_counter()
    project = load_project(Path(spec["project"]))
    result = run_project(project)
    wall = time.perf_counter() - t0
    configs, paths = config_records(result, None)
    s0 = time.perf_counter()
    board = leaderboard(configs, project.gate.config.gate, result.samples, paths)
    stats_s = time.perf_counter() - s0
    return {"wall_s": wall, "stats_s": stats_s, "exec_s": spans.get("exec_s", float("nan")),
            "grading_s": spans.get("grading_phase", 0.0),
            "gates_s": spans.get("decide_gate", 0.0),
            "board_s": spans.get("leaderboard", 0.0), "calls": sum(c.made for c in
                                                             result.calls_by_config.values()),
            "answered": sum(1 for _, recs in configs for r in recs if r.ok),
            "recommended": board.overall.recommended, "choice": board.overall.verdict}


def timed_as(fn: Any, spans: dict[str, float], name: str) -> Any:
    """fn, adding its wall time to spans[name]."""
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spans[name] = spans.get(name, 0.0) + time.perf_counter() - t

    return wrapper


def child(kind: str, spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    import httpx  # noqa: F401  (imported before the clock, for both)

    out = child_engine(spec) if kind == "engine" else bo.child_raw(spec)
    out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out), flush=True)
    return 0


def run_child(kind: str, spec: Path, cwd: Path) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", kind, str(spec)], cwd=cwd,
                         capture_output=True, text=True, timeout=1800, env=bo.child_env())
    if out.returncode != 0:
        raise RuntimeError(f"{kind} child failed: {out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("KIND", "SPEC"), help=argparse.SUPPRESS)
    parser.add_argument("--canaries", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.child:
        return child(*args.child)
    n = 200 if args.quick else args.canaries
    total = n * CONFIGS
    with tempfile.TemporaryDirectory(prefix="evalgate-bench-choose-") as tmp:
        work = Path(tmp)
        project = work / "project"
        canary_file = bo.write_project(project, n, args.concurrency, args.latency_ms, "jsonl")
        with bo.simulator(project, canary_file) as sim:
            write_candidates(project, sim.base_url)
            bodies = [{"model": bo.MODEL,
                       "messages": [{"role": "user", "content": bo.canary(i)["prompt"]}],
                       "max_tokens": bo.MAX_TOKENS} for i in range(n) for _ in range(CONFIGS)]
            from evalgate.engine import executor

            raw_spec = work / "raw.json"
            raw_spec.write_text(json.dumps({
                "url": f"{sim.base_url}/v1/chat/completions", "bodies": bodies,
                "concurrency": args.concurrency, "layout": "lanes",
                "per_client": getattr(executor, "LANES_PER_CLIENT", 4)}))
            engine_spec = work / "engine.json"
            engine_spec.write_text(json.dumps({"project": str(project)}))
            raw = run_child("raw", raw_spec, work)
            engine = run_child("engine", engine_spec, work)
    ideal = total / args.concurrency * args.latency_ms / 1000
    print(f"bench_choose: {CONFIGS} configs x {n} canaries = {total} requests, concurrency "
          f"{args.concurrency}, simulator latency {args.latency_ms:g} ms (ideal "
          f"{ideal:.2f} s)")
    print(f"  raw httpx floor : {raw['wall_s']:.2f} s wall, {total / raw['wall_s']:.0f} req/s, "
          f"peak RSS {raw['rss_mb']:.0f} MB")
    print(f"  evalgate engine : {engine['wall_s']:.2f} s wall ({engine['calls']} calls, "
          f"{engine['answered']} answered), {total / engine['wall_s']:.0f} req/s, "
          f"x{engine['wall_s'] / raw['wall_s']:.2f} the floor, peak RSS "
          f"{engine['rss_mb']:.0f} MB")
    print(f"  of which: calls (executor) {engine['exec_s']:.2f} s, grading "
          f"{engine['grading_s']:.2f} s, the {CONFIGS} gates {engine['gates_s']:.2f} s, the "
          f"leaderboard in the run {engine['board_s']:.2f} s")
    print(f"  leaderboard statistics (all + per tag): {engine['stats_s']:.2f} s "
          f"({engine['stats_s'] / engine['wall_s']:.1%} of the run); choice "
          f"{engine['choice']}, recommended {engine['recommended']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
