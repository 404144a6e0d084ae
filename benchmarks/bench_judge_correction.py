"""The judge-corrected hallucination rate by simulation, through the simulator's judge.

Why this exists: a judge that misses 20% of hallucinations makes the observed rate 20% too
low, and an interval around the observed rate then misses the truth. `gate.correct_for_judge`
measures the judge against reviewers' labels and corrects the rate (Rogan-Gladen, percentile
bootstrap over canaries and labels). This checks that its interval covers the true rate.

Each run is a real evalgate run on the simulator (HTTP on 127.0.0.1): N canaries, a candidate
that hallucinates with probability `--rate`, a `check: judge` hallucination criterion graded by
the simulated judge with `miss_rate` and `false_alarm_rate`. The labels are `--labels` answers
drawn at random and labelled with the simulator's ground truth (an answer is a hallucination
when it does not state its canary's fact, by evalgate's fact matching). The gate is decided
with alpha 0.025 one-sided, so both the uncorrected interval (Wilson, on the judge's rate) and
the corrected one are two-sided 95% intervals; each is checked for covering `--rate`.

    .venv/bin/python benchmarks/bench_judge_correction.py            # 200 runs, ~6 min, 2 cores
    .venv/bin/python benchmarks/bench_judge_correction.py --runs 20  # quick look

Target: the corrected interval covers the true rate in >= 93% of the runs; the uncorrected one
does not. Seeds are fixed (run i uses seed i). Exits 0; prints the table.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from evalgate.gate.guardrails import decide_gate  # noqa: E402
from evalgate.gate.judge_calibration import review_inputs  # noqa: E402
from evalgate.pipeline.project import load_project  # noqa: E402
from evalgate.pipeline.run import run_project  # noqa: E402
from evalgate.spec.labels import Label, answer_hash  # noqa: E402
from evalgate.text.tokens import states  # noqa: E402

RUBRIC = {"criteria": [{"id": "judge-correct", "kind": "hallucination", "check": "judge",
                        "template": "correctness"}]}


@dataclass(frozen=True)
class Scenario:
    canaries: int = 400
    rate: float = 0.20
    miss_rate: float = 0.20
    false_alarm_rate: float = 0.02
    labels: int = 100


@dataclass(frozen=True)
class Outcome:
    seed: int
    observed: float
    observed_ci: tuple[float, float]
    corrected: float | None
    corrected_ci: tuple[float, float] | None
    verdict: str


def write_project(root: Path, sc: Scenario, seed: int) -> dict[str, str]:
    """A project of `sc.canaries` canaries ('<i> days'); returns each canary's fact by key."""
    (root / "models").mkdir(parents=True, exist_ok=True)
    (root / "canaries").mkdir(exist_ok=True)
    (root / "rubrics").mkdir(exist_ok=True)
    cases = [{"id": f"c{i}", "prompt": f"Question {i}: how many days for policy {i}?",
              "expected": {"facts": [f"{i} days"], "forbidden": [f"{i + 1000} days"]}}
             for i in range(sc.canaries)]
    gate = {"candidate": "models/candidate.yaml", "canaries": "canaries", "rubrics": "rubrics",
            "judge": "models/judge.yaml", "samples": 1, "concurrency": 16,
            "gate": {"alpha": 0.025, "seed": seed, "bootstrap_resamples": 2000,
                     "correct_for_judge": True,
                     "metrics": {"hallucination_rate": {"max": 0.5}}}}
    model = {"provider": "sim", "model": "m", "timeout_s": 10,
             "sim": {"latency_ms": 0, "hallucination_rate": sc.rate, "seed": seed}}
    judge = {"provider": "sim", "model": "judge", "timeout_s": 10,
             "sim": {"latency_ms": 0, "seed": seed,
                     "judge": {"miss_rate": sc.miss_rate,
                               "false_alarm_rate": sc.false_alarm_rate}}}
    for path, data in (("evalgate.yaml", gate), ("models/candidate.yaml", model),
                       ("models/judge.yaml", judge),
                       ("canaries/set.yaml", {"rubric": "basic", "cases": cases}),
                       ("rubrics/basic.yaml", RUBRIC)):
        (root / path).write_text(yaml.safe_dump(data, sort_keys=False))
    return {f"set/{c['id']}": c["expected"]["facts"][0] for c in cases}


def one_run(seed: int, sc: Scenario) -> Outcome:
    """One seeded run: the simulator answers and judges; labels from its ground truth."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        facts = write_project(root, sc, seed)
        project = load_project(root)
        result = run_project(project)
    answered = [r for r in result.records if r.ok and r.hallucination is not None]
    labels = [Label(canary=r.key, answer=answer_hash(r.text),
                    label="correct" if states(facts[r.key], r.text or "") else "hallucination",
                    reviewer="simulator", at="2025-01-01T00:00:00+00:00")
              for r in random.Random(seed).sample(answered, min(sc.labels, len(answered)))]
    settings = project.gate.config.gate
    plain = decide_gate(settings.model_copy(update={"correct_for_judge": False}),
                        result.records, None, 1)["verdicts"][0]
    fixed = decide_gate(settings, result.records, None, 1,
                        review_inputs(project.entries, labels))
    corrected = fixed["review"].corrected
    return Outcome(seed, plain.value or 0.0, (plain.ci_low or 0.0, plain.ci_high or 1.0),
                   corrected[0].estimate if corrected else None,
                   (corrected[0].ci_low, corrected[0].ci_high) if corrected else None,
                   fixed["verdicts"][0].verdict)


def _run(args: tuple[int, Scenario]) -> Outcome:
    return one_run(*args)


def simulate(runs: int, sc: Scenario, jobs: int = 1) -> list[Outcome]:
    todo = [(seed, sc) for seed in range(runs)]
    if jobs <= 1:
        return [_run(t) for t in todo]
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        return pool.map(_run, todo)


def coverage(outcomes: list[Outcome], truth: float) -> dict[str, Any]:
    """Shares of runs whose interval covers `truth`; a run that could not correct counts as
    not covering."""
    n = len(outcomes)
    cov_plain = sum(lo <= truth <= hi for o in outcomes for lo, hi in [o.observed_ci]) / n
    cov_fixed = sum(o.corrected_ci is not None and o.corrected_ci[0] <= truth
                    <= o.corrected_ci[1] for o in outcomes) / n
    decided = [o for o in outcomes if o.corrected is not None]
    return {"runs": n, "uncorrected_coverage": cov_plain, "corrected_coverage": cov_fixed,
            "corrected_runs": len(decided),
            "mean_observed": sum(o.observed for o in outcomes) / n,
            "mean_corrected": (sum(o.corrected or 0.0 for o in decided) / len(decided)
                               if decided else None)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--canaries", type=int, default=Scenario.canaries)
    ap.add_argument("--rate", type=float, default=Scenario.rate)
    ap.add_argument("--miss-rate", type=float, default=Scenario.miss_rate)
    ap.add_argument("--false-alarm-rate", type=float, default=Scenario.false_alarm_rate)
    ap.add_argument("--labels", type=int, default=Scenario.labels)
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    sc = Scenario(a.canaries, a.rate, a.miss_rate, a.false_alarm_rate, a.labels)
    t0 = time.perf_counter()
    out = coverage(simulate(a.runs, sc, a.jobs), sc.rate)
    print(f"{a.runs} runs x {sc.canaries} canaries, true rate {sc.rate:.0%}, judge miss "
          f"{sc.miss_rate:.0%} / false alarm {sc.false_alarm_rate:.0%}, {sc.labels} labels "
          f"({time.perf_counter() - t0:.0f} s)")
    print(f"  mean observed rate   {out['mean_observed']:.3f}")
    print(f"  mean corrected rate  {out['mean_corrected']:.3f} "
          f"({out['corrected_runs']} of {out['runs']} runs could be corrected)")
    print(f"  95% interval covers the true rate: uncorrected {out['uncorrected_coverage']:.1%}, "
          f"corrected {out['corrected_coverage']:.1%}")
    met = out["corrected_coverage"] >= 0.93 > out["uncorrected_coverage"]
    print("target (corrected >= 93%, uncorrected below):", "MET" if met else "NOT MET")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
