"""Scale: 10,000 canaries x 2 configs (a live baseline) through the engine, and what it costs.

Why this exists: a large canary suite must not turn the gate's own work (statistics, the JSON
result, the reports) into the slow part, nor need a big CI runner. Targets: peak RSS < 500 MB,
statistics < 2 s with 9999 bootstrap resamples, all reports < 5 s; the HTML size is printed.

How: `evalgate sim` runs in its own process (0 ms latency); each round is a fresh child
process (this file with --child) that loads the project, runs it with `run_project` against a
live baseline (every default vs-baseline guardrail: rates, cost ratio with its BCa cross-check,
latency ratio, p95 ratio with its bootstrap), then writes the JSON result and every report.
Phases are timed by wrapping - not changing - `evalgate.pipeline.run.make_calls` and
`evalgate.pipeline.run.decide_gate`; peak RSS is the child's RUSAGE_SELF. Rounds are interleaved
with nothing else, so report medians; `--quick` runs 2,000 canaries once. Exits 0.
"""

from __future__ import annotations

import argparse
import importlib
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_overhead as bo  # the shared project/simulator helpers

TARGETS = {"rss_mb": 500.0, "stats_s": 2.0, "reports_s": 5.0}


def child(project: str) -> int:
    """One measured run: prints one JSON line."""
    import evalgate.pipeline.run as run_mod
    from evalgate.gate.baseline import resolve
    from evalgate.pipeline.project import load_project
    from evalgate.report import write_all
    from evalgate.results import write_result

    spans: dict[str, float] = {}

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t, c = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spans[name] = spans.get(name, 0.0) + time.perf_counter() - t
                cpu = name.replace("_s", "_cpu_s")
                spans[cpu] = spans.get(cpu, 0.0) + time.process_time() - c
        return wrapper

    run_mod.make_calls = timed("calls_s", run_mod.make_calls)
    run_mod.decide_gate = timed("stats_s", run_mod.decide_gate)
    t_import = time.perf_counter()
    importlib.import_module("evalgate.stats")  # scipy: a fixed cost per run, reported apart
    spans["scipy_import_s"] = time.perf_counter() - t_import
    root = Path(project)
    t0 = time.perf_counter()
    proj = load_project(root)
    spans["load_s"] = time.perf_counter() - t0
    baseline = resolve("models/baseline.yaml", proj.gate)
    t1 = time.perf_counter()
    result = run_mod.run_project(proj, baseline=baseline)
    spans["run_s"] = time.perf_counter() - t1
    out_dir = root / "reports"
    t2 = time.perf_counter()
    write_result(result, out_dir / "evalgate.json")
    spans["json_s"] = time.perf_counter() - t2
    t3, c3 = time.perf_counter(), time.process_time()
    paths = write_all(result, out_dir, step_summary=False)
    spans["reports_s"] = time.perf_counter() - t3
    spans["reports_cpu_s"] = time.process_time() - c3
    sizes = {p.suffix: p.stat().st_size for p in paths}
    sizes[".json"] = (out_dir / "evalgate.json").stat().st_size
    print(json.dumps({
        **spans, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "verdict": result.verdict, "records": len(result.records),
        "baseline_records": len(result.baseline_records), "sizes": sizes,
        "verdicts": {v.guardrail: v.verdict for v in result.verdicts}}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--quick", action="store_true", help="2,000 canaries, one round")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args.child)
    n, rounds = (2000, 1) if args.quick else (args.n, args.rounds)
    work = Path(tempfile.mkdtemp(prefix="evalgate-scale-"))
    project = work / "project"
    print(f"evalgate scale benchmark: {n} canaries x 2 configs (live baseline), concurrency "
          f"{args.concurrency}, simulator at 0 ms, {rounds} round(s); {bo.tree_info()}")
    outs: list[dict[str, Any]] = []
    try:
        canary_file = bo.write_project(project, n, args.concurrency, 0.0, "jsonl")
        with bo.simulator(project, canary_file) as sim:
            bo.write_model(project, sim.base_url)
            cand = (project / "models" / "candidate.yaml").read_text()
            (project / "models" / "baseline.yaml").write_text(
                cand.replace(f"model: {bo.MODEL}", "model: bench-baseline"))
            for r in range(1, rounds + 1):
                shutil.rmtree(project / "reports", ignore_errors=True)
                t = time.perf_counter()
                proc = subprocess.run([sys.executable, __file__, "--child", str(project)],
                                      cwd=project, capture_output=True, text=True,
                                      env=bo.child_env(), timeout=1800)
                wall = time.perf_counter() - t
                last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
                if proc.returncode != 0 or not last.startswith("{"):
                    print(f"round {r} FAILED ({proc.returncode}): {proc.stderr[-1500:]}")
                    continue
                out = json.loads(last)
                out["wall_s"] = wall
                outs.append(out)
                print(f"round {r}: calls {out['calls_s']:.1f} s, statistics "
                      f"{out['stats_s']:.2f} s, JSON {out['json_s']:.2f} s, reports "
                      f"{out['reports_s']:.2f} s, peak RSS {out['rss_mb']:.0f} MB", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not outs:
        print("no successful round")
        return 0

    def med(key: str) -> float:
        return statistics.median(o[key] for o in outs)

    last = outs[-1]
    print(f"\nrecords: {last['records']} candidate + {last['baseline_records']} baseline; "
          f"verdict {last['verdict']} {last['verdicts']}")
    print("medians: " + ", ".join(f"{k} {med(k):.2f} s" for k in
                                  ("scipy_import_s", "load_s", "calls_s", "stats_s",
                                   "run_s", "json_s", "reports_s")))
    print(f"CPU seconds (all threads; less sensitive to a busy machine than wall time): "
          f"statistics {med('stats_cpu_s'):.2f} s, reports {med('reports_cpu_s'):.2f} s")
    sizes = last["sizes"]
    print("file sizes: " + ", ".join(f"{k[1:]} {v / 1e6:.1f} MB" for k, v in sizes.items()))
    print("\ntargets:")
    rss = max(o["rss_mb"] for o in outs)
    for key, value, unit in (("rss_mb", rss, "MB"), ("stats_s", med("stats_s"), "s"),
                             ("reports_s", med("reports_s"), "s")):
        target = TARGETS[key]
        print(f"  {key.replace('_', ' ')} < {target:g} {unit}: {value:.2f} {unit} -> "
              f"{'MET' if value < target else 'NOT MET'}")
    print(f"  HTML size: {sizes.get('.html', 0) / 1e6:.1f} MB (no target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
