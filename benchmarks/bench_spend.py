"""API spend of a gate: calls counted at the simulator for the runs a pull request triggers.

Why this exists: a gate runs on every pull request, so the calls it makes are its users' daily
bill. This script counts them where they land - at the simulator (a real HTTP server on
127.0.0.1, its per-model request counters) - not from evalgate's own report, for:

  (a) a first run: candidate v1 against a live baseline (2 calls per canary);
  (b) the same run again, unchanged: target 0 calls. Needs the response cache
      (`--evalgate-cache=on`); when this evalgate has no such option it prints
      "cache not available" and shows what the re-run costs without one;
  (c) a pull request that changes only the candidate (v2), the baseline reused from run (a)'s
      saved result (`--evalgate-baseline=saved.json`): target candidate calls only;
  (d) run (c) with `gate.sequential: true`: fewer candidate calls when the answer is clear.

Each run is `pytest --evalgate` in a subprocess in a generated project. Exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from evalgate.pipeline.project import load_project
from evalgate.sim import SimProfile, SimServer
from evalgate.sim.server import sim_cases

MODELS = {"prod": "base-prod", "v1": "cand-v1", "v2": "cand-v2"}


def write_project(root: Path, n: int, base_url: str) -> None:
    for sub in ("models", "canaries", "rubrics"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    cases = [{"id": f"q{i:04d}", "prompt": f"Spend question {i}: the return window for item {i}?",
              "expected": {"facts": [f"{10 + i % 80} days"], "forbidden": ["lifetime"]}}
             for i in range(n)]
    (root / "canaries" / "spend.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases))
    rubric = {"criteria": [
        {"id": "facts", "check": "contains_all", "values": "{{ case.expected.facts }}"},
        {"id": "no-lies", "kind": "hallucination", "check": "contains_none",
         "values": "{{ case.expected.forbidden }}"}]}
    (root / "rubrics" / "spend.yaml").write_text(yaml.safe_dump(rubric))
    for name, model in MODELS.items():
        config = {"provider": "openai", "base_url": f"{base_url}/v1", "model": model,
                  "timeout_s": 30, "params": {"max_tokens": 64},
                  "pricing": {"input_per_mtok": 0.15, "output_per_mtok": 0.6}}
        (root / "models" / f"{name}.yaml").write_text(yaml.safe_dump(config))
    for seq in (False, True):
        gate = {"candidate": "models/v1.yaml", "baseline": "models/prod.yaml",
                "canaries": "canaries/", "rubrics": "rubrics/", "concurrency": 16,
                "canary_failures": "report",
                "gate": {"on_inconclusive": "warn", "sequential": seq,
                         "metrics": {"error_rate": {"max": 0.10}},
                         "vs_baseline": {"cost_ratio": None, "p95_ratio": None,
                                         "latency_ratio": None}}}
        name = "evalgate-seq.yaml" if seq else "evalgate.yaml"
        (root / name).write_text(yaml.safe_dump(gate, sort_keys=False))
    (root / "pytest.ini").write_text("[pytest]\n")


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items()
           if not k.startswith("PYTEST_") and k != "PYTHONDONTWRITEBYTECODE"}
    out["NO_PROXY"] = out["no_proxy"] = "127.0.0.1,localhost"
    return out


def cache_option_available(root: Path) -> bool:
    """Does this evalgate's pytest plugin know --evalgate-cache? (asked, not assumed)"""
    out = subprocess.run([sys.executable, "-m", "pytest", "--help", "-p", "no:cacheprovider"],
                         cwd=root, capture_output=True, text=True, env=env(), timeout=120)
    return "--evalgate-cache" in out.stdout


def pytest_run(root: Path, server: SimServer, args: list[str]) -> dict[str, Any]:
    server.stats.reset()
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "pytest", "--evalgate", "-q",
                          "-p", "no:cacheprovider", *args], cwd=root, capture_output=True,
                         text=True, env=env(), timeout=900)
    wall = time.perf_counter() - t0
    result = json.loads((root / "reports" / "evalgate.json").read_text())
    return {"exit": out.returncode, "wall_s": wall, "sim": server.stats.models,
            "total": server.stats.total, "verdict": result["verdict"],
            "reported_made": result.get("calls_made"),
            "saved_seq": result.get("calls_saved_sequential", 0),
            "from_cache": result.get("calls_from_cache", 0),
            "spend": result.get("total_cost_usd", 0.0), "tail": out.stdout[-800:]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--n", type=int, default=300, help="canaries")
    p.add_argument("--latency-ms", type=float, default=5.0)
    p.add_argument("--quick", action="store_true", help="150 canaries")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args(argv)
    n = 150 if args.quick else args.n
    root = Path(tempfile.mkdtemp(prefix="evalgate-spend-"))
    server = SimServer()
    for model, rate in (("base-prod", 0.10), ("cand-v1", 0.10), ("cand-v2", 0.04)):
        server.add_profile(model, SimProfile(latency_ms=args.latency_ms, hallucination_rate=rate,
                                             seed=3))
    server.start()
    rows: list[tuple[str, ...]] = []
    try:
        write_project(root, n, server.base_url)
        server.add_cases(sim_cases(load_project(root).entries))  # type: ignore[arg-type]
        print(f"evalgate spend benchmark: {n} canaries, simulator {server.base_url}, "
              f"project {root}")
        has_cache = cache_option_available(root)

        def row(label: str, r: dict[str, Any], target: str) -> None:
            sim = r["sim"]
            cand = sim.get("cand-v1", 0) + sim.get("cand-v2", 0)
            rows.append((label, str(r["total"]), str(cand), str(sim.get("base-prod", 0)),
                         str(r["saved_seq"]), str(r["from_cache"]),
                         f"${r['spend']:.4f}", f"{r['wall_s']:.1f}", r["verdict"], target))
            if r["exit"] not in (0, 1):
                print(f"[{label}] pytest exited {r['exit']}:\n{r['tail']}")

        cache = ["--evalgate-cache=on"] if has_cache else []  # explicit: CI=true means off
        first = pytest_run(root, server, cache)
        row("(a) first run, live baseline", first, f"{2 * n} (2 per canary)")
        shutil.copy(root / "reports" / "evalgate.json", root / "saved.json")
        if has_cache:
            again = pytest_run(root, server, cache)
            row("(b) unchanged re-run, --evalgate-cache=on", again, "0")
        else:
            print("(b) cache not available: this evalgate has no --evalgate-cache option; "
                  "the row shows the re-run without a cache")
            again = pytest_run(root, server, [])
            row("(b) unchanged re-run (cache not available)", again, "0 with a cache")
        pr = ["--evalgate-baseline=saved.json"]
        (root / "evalgate.yaml").write_text((root / "evalgate.yaml").read_text()
                                            .replace("models/v1.yaml", "models/v2.yaml"))
        (root / "evalgate-seq.yaml").write_text((root / "evalgate-seq.yaml").read_text()
                                                .replace("models/v1.yaml", "models/v2.yaml"))
        row("(c) candidate changed, saved baseline", pytest_run(root, server, [*pr, *cache]),
            f"{n} (candidate only)")
        # (c)'s answers are in the cache now: (d) runs without it, or it would make no call
        row("(d) = (c) + gate.sequential, cache off", pytest_run(
            root, server, [*pr, "--evalgate-config=evalgate-seq.yaml",
                           *(["--evalgate-cache=off"] if has_cache else [])]), f"<= {n}")
    finally:
        server.stop()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    head = ("run", "calls at sim", "candidate", "baseline", "saved (seq)", "from cache",
            "spend", "wall s", "verdict", "target")
    table = [head, *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    print()
    for i, r in enumerate(table):
        print("  ".join(c.ljust(w) if j in (0, 8, 9) else c.rjust(w)
                        for j, (c, w) in enumerate(zip(r, widths, strict=True))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
