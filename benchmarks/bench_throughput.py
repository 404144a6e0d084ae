"""Throughput ceiling: requests per second end to end through `pytest --evalgate`, and where
the time goes when the model answers instantly.

Why this exists: with a 0 ms simulator nothing waits on the network, so the wall time is all
evalgate's and pytest's own work. This script measures `pytest --evalgate` (and `-n 2`) on N
synthetic canaries in interleaved rounds (median wall time -> canaries per second), then runs
it once more under cProfile and splits the profile into phases by the cumulative time of the
functions that own them:

  startup+plugins  interpreter, imports, plugin load, config (the rest)
  collection       pytest's collection of the canary items (Session.perform_collect)
  calls            own time of the HTTP stack, the event loop and the executor
  grading          graders.grade.grade
  statistics       guardrails.decide_gate
  result JSON      results.write_result
  reports          report.write_all (HTML, JUnit, Markdown)
  pytest items     running the items (runner.runtestprotocol), reports and hooks per item
  terminal summary the session's terminal summary

cProfile inflates call-heavy code (pytest's per-item hooks most), so the shares are indicative;
the wall times and rates come from the unprofiled rounds. `--quick`: N=500, one round. Exits 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import pstats
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_overhead as bo  # the shared project/simulator helpers

PHASES = [  # (label, file suffix, function name) - the first match in the profile wins
    ("collection", "_pytest/main.py", "perform_collect"),
    ("grading", "evalgate/grading/grade.py", "grade"),
    ("statistics", "evalgate/gate/guardrails.py", "decide_gate"),
    ("result JSON", "evalgate/results.py", "write_result"),
    ("reports", "evalgate/report/__init__.py", "write_all"),
    ("pytest items", "_pytest/runner.py", "runtestprotocol"),
    ("terminal summary", "_pytest/terminal.py", "pytest_terminal_summary"),
]


CALL_STACK = ("/httpx/", "/httpcore/", "/anyio/", "/h11/", "/asyncio/", "/selectors.py",
              "/ssl.py", "/socket.py", "/evalgate/engine/executor.py",
              "/evalgate/engine/throttling.py", "/evalgate/engine/providers/")


def phases(profile: Path) -> tuple[list[tuple[str, float]], float]:
    """Cumulative seconds per phase (and the profile's total) from a cProfile dump."""
    st = pstats.Stats(str(profile))
    raw = st.stats  # type: ignore[attr-defined]
    # The sum of every function's own time: the profile's whole span. (The largest cumtime is
    # not: the frames open across the event loop lose the time spent inside it.)
    total = float(st.total_tt)  # type: ignore[attr-defined]
    out = []
    for label, suffix, name in PHASES:
        cum = sum(ct for (file, _, func), (_, _, _, ct, _) in raw.items()
                  if func == name and file.replace("\\", "/").endswith(suffix))
        out.append((label, cum))
    # The calls by own time of the HTTP stack and the event loop: cProfile drops the frames
    # that were open across the event loop here (make_calls, asyncio.run), so no cumtime.
    calls = sum(tt for (file, _, _), (_, _, tt, _, _) in raw.items()
                if any(part in file.replace("\\", "/") for part in CALL_STACK))
    out.insert(1, ("calls (HTTP + event loop)", calls))
    return out, total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--quick", action="store_true", help="N=500, one round")
    args = p.parse_args(argv)
    n, rounds = (500, 1) if args.quick else (args.n, args.rounds)
    has_xdist = importlib.util.find_spec("xdist") is not None
    work = Path(tempfile.mkdtemp(prefix="evalgate-throughput-"))
    project = work / "project"
    print(f"evalgate throughput benchmark: N={n}, concurrency {args.concurrency}, simulator "
          f"at 0 ms, {rounds} round(s); {bo.tree_info()}")
    walls: dict[str, list[float]] = {"pytest": [], "pytest -n 2": []} if has_xdist \
        else {"pytest": []}
    engine: list[float] = []
    try:
        canary_file = bo.write_project(project, n, args.concurrency, 0.0, "jsonl")
        with bo.simulator(project, canary_file) as sim:
            bo.write_model(project, sim.base_url)
            for r in range(1, rounds + 1):
                for name in walls:
                    out = bo.measure_pytest(work, project, sim, n, name.endswith("-n 2"),
                                            600 + n / 10)
                    if out.error:
                        print(f"round {r} {name}: FAILED {out.error[:800]}")
                        continue
                    walls[name].append(out.wall_s)
                    if name == "pytest" and "engine_in_pytest_s" in out.extra:
                        engine.append(out.extra["engine_in_pytest_s"])
                    print(f"round {r}: {name:<12} {out.wall_s:6.2f} s = {n / out.wall_s:7.0f} "
                          "canaries/s", flush=True)
            prof = work / "pytest.prof"
            shutil.rmtree(project / "reports", ignore_errors=True)
            code, wall, _ = bo.run_waited(
                [sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "pytest",
                 "--evalgate", "--evalgate-cache=off", "-p", "no:cacheprovider", "-q",
                 *bo.third_party_plugin_opt_outs()], project,
                work / "profiled.log", 600 + n / 5)
            print(f"profiled run: exit {code}, {wall:.2f} s (cProfile inflates it)")
        print("\nrequests per second end to end (median of rounds; one call per canary):")
        for name, ws in walls.items():
            if ws:
                med = statistics.median(ws)
                print(f"  {name:<12} {med:6.2f} s  ->  {n / med:7.0f} canaries/s")
        if engine:
            print(f"  engine inside pytest (its summary line): {statistics.median(engine):.2f} s")
        if prof.exists():
            rows, total = phases(prof)
            known = sum(s for _, s in rows)
            rows.append(("startup+plugins+rest", max(0.0, total - known)))
            print(f"\nwhere the time goes (cProfile of one `pytest --evalgate`, total "
                  f"{total:.2f} s):")
            width = max(len(label) for label, _ in rows)
            for label, secs in rows:
                print(f"  {label:<{width}}  {secs:6.2f} s  {100 * secs / total:5.1f}%  "
                      f"{1000 * secs / n:6.3f} ms/canary")
            print("  (grading runs inside the engine; items' time includes pytest's hooks and "
                  "the per-item report)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
