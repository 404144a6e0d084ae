"""Sequential gating by simulation: error rates at alpha, and the calls it saves.

Why this exists: looking at the data three times instead of once must not raise the rate of
false PASS (a regression let through) or false FAIL (a good change blocked) above alpha, and
the point of looking early is to save calls on clear cases. This script drives the real
decision code (`evalgate.gate.sequential.SequentialGate`: boundaries, per-look verdicts through
`guardrails.evaluate`, locking, curtailment, stopping) with synthetic graded records - no HTTP,
so thousands of replications take a few minutes - and compares each scenario with the fixed
design (one look at all canaries, `guardrails.evaluate` at alpha).

Scenarios (N canaries, one sample each, alpha 0.05 one-sided, looks at 1/3, 2/3, 1):

* rate cap (hallucination_rate max 10%): true rate 10% (on the cap: PASS and FAIL both false),
  2% (clear pass) and 25% (clear regression);
* paired vs a baseline at 10% (hallucination_rate_vs_baseline, margin 5 points): candidate at
  15% (on the margin: PASS is false), 10% (no change: FAIL is false), 8% (clear pass), 30%
  (clear regression);
* paired latency (latency_ratio_vs_baseline, margin x1.10; log-normal canaries with call
  noise): true ratio x1.10 (PASS is false), x1.0 (FAIL is false), x0.85, x1.4.

With the project's default `fail_on_significant_regression`, a candidate exactly on the margin
FAILs whenever its regression is significant, so "on the margin" rows show many FAILs by design;
their error is the false PASS.

Seeds are fixed; `--quick` runs fewer replications. Exits 0; prints a table.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass

import numpy as np

from evalgate.gate.guardrails import evaluate, plan_guardrails
from evalgate.gate.sequential import DEFAULT_LOOKS, SequentialGate
from evalgate.gate.verdicts import overall_verdict
from evalgate.results import Record
from evalgate.spec.config import GateSettings


@dataclass(frozen=True)
class Scenario:
    name: str
    cand_rate: float
    base_rate: float | None   # None: no baseline, an absolute cap
    false: str                # which verdict is an error here: PASS, FAIL, "PASS+FAIL" or ""
    latency_ratio: float | None = None  # set: a latency_ratio_vs_baseline scenario instead


CAP = 0.10
MARGIN = 0.05
SCENARIOS = [
    Scenario("cap: true rate = cap 10%", 0.10, None, "PASS+FAIL"),
    Scenario("cap: clear pass (2%)", 0.02, None, ""),
    Scenario("cap: clear regression (25%)", 0.25, None, ""),
    Scenario("vs baseline: +5 pts = margin", 0.15, 0.10, "PASS"),
    Scenario("vs baseline: no change", 0.10, 0.10, "FAIL"),
    Scenario("vs baseline: clear pass (8% vs 10%)", 0.08, 0.10, ""),
    Scenario("vs baseline: clear regression (30%)", 0.30, 0.10, ""),
    Scenario("latency vs baseline: ratio = margin 1.10", 0, 0, "PASS", 1.10),
    Scenario("latency vs baseline: no change", 0, 0, "FAIL", 1.0),
    Scenario("latency vs baseline: clear pass (x0.85)", 0, 0, "", 0.85),
    Scenario("latency vs baseline: clear regression (x1.4)", 0, 0, "", 1.4),
]
LATENCY_SIGMA = 0.6   # spread of per-canary log latency (canaries differ in length)
NOISE_SIGMA = 0.35    # call-to-call log noise around a canary's own latency


def settings_for(s: Scenario, alpha: float) -> GateSettings:
    if s.latency_ratio is not None:
        off = {k: None for k in ("hallucination_rate", "pass_rate", "cost_ratio", "p95_ratio")}
        return GateSettings.model_validate({"alpha": alpha, "sequential": True,
                                            "vs_baseline": {"latency_ratio": 1.10, **off}})
    if s.base_rate is None:
        return GateSettings.model_validate({"alpha": alpha, "sequential": True,
                                            "metrics": {"hallucination_rate": {"max": CAP}}})
    off = {k: None for k in ("pass_rate", "cost_ratio", "latency_ratio", "p95_ratio")}
    return GateSettings.model_validate({"alpha": alpha, "sequential": True,
                                        "vs_baseline": {"hallucination_rate": MARGIN, **off}})


def records(keys: list[str], bad: np.ndarray, config: str,
            latency: np.ndarray | None = None) -> list[Record]:
    lat = latency if latency is not None else np.full(len(keys), 100.0)
    return [Record(key=k, set="s", case_id=k, config=config, ok=True, text="x",
                   latency_ms=float(ms), cost_usd=0.001, hallucination=bool(b), passed=not b,
                   attempts=[]) for k, b, ms in zip(keys, bad, lat, strict=True)]


def one(s: Scenario, n: int, alpha: float, rng: np.random.Generator
        ) -> tuple[str, str, int]:
    """(fixed-design verdict, sequential verdict, canaries the sequential run used)."""
    settings = settings_for(s, alpha)
    has_base = s.base_rate is not None
    plan = plan_guardrails(settings, has_base)
    keys = [f"s/c{i:05d}" for i in range(n)]
    cand_bad = rng.random(n) < s.cand_rate
    base_bad = rng.random(n) < (s.base_rate or 0.0)
    cand_ms = base_ms = None
    if s.latency_ratio is not None:
        own = 300.0 * np.exp(LATENCY_SIGMA * rng.standard_normal(n))
        base_ms = own * np.exp(NOISE_SIGMA * rng.standard_normal(n))
        cand_ms = own * s.latency_ratio * np.exp(NOISE_SIGMA * rng.standard_normal(n))
    cand = dict(zip(keys, records(keys, cand_bad, "candidate", cand_ms), strict=True))
    base = None
    if has_base:
        base = dict(zip(keys, records(keys, base_bad, "baseline", base_ms), strict=True))
    fixed = evaluate(settings, plan, list(cand.values()),
                     list(base.values()) if base else None, {}, 1)
    gate = SequentialGate(settings, plan, DEFAULT_LOOKS, 1, lambda r: r,
                          saved_baseline=list(base.values()) if base else None)
    used = 0
    for batch in gate.batches(keys):
        used += len(batch)
        if gate.after_look([cand[keys[i]] for i in batch]):
            break
    return (overall_verdict([v.verdict for v in fixed]),
            overall_verdict([v.verdict for v in gate.verdicts()]), used)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--n", type=int, default=300, help="canaries per run")
    p.add_argument("--reps", type=int, default=800, help="replications per scenario")
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=20261123)
    p.add_argument("--quick", action="store_true", help="200 replications per scenario")
    args = p.parse_args(argv)
    reps = 200 if args.quick else args.reps
    looks = [round(t, 3) for t in DEFAULT_LOOKS]
    print(f"sequential gating simulation: N={args.n} canaries, looks {looks}, alpha "
          f"{args.alpha:g} (one-sided), {reps} replications per scenario, seed {args.seed}")
    head = ("scenario", "fixed PASS", "fixed FAIL", "seq PASS", "seq FAIL", "seq INCONCL",
            "calls saved", "false rate (seq)", "s")
    rows = [head]
    notes = []
    for index, s in enumerate(SCENARIOS):
        rng = np.random.default_rng([args.seed, index])
        t0 = time.perf_counter()
        fixed, seq, used = [], [], []
        for _ in range(reps):
            f, q, u = one(s, args.n, args.alpha, rng)
            fixed.append(f)
            seq.append(q)
            used.append(u)

        def share(vs: list[str], v: str) -> float:
            return vs.count(v) / len(vs)

        saved = 1 - float(np.mean(used)) / args.n
        false = ""
        if s.false:
            rates = [share(seq, v) for v in s.false.split("+")]
            se = math.sqrt(args.alpha * (1 - args.alpha) / reps)
            false = "/".join(f"{r:.3f}" for r in rates)
            ok = all(r <= args.alpha + 2 * se for r in rates)
            notes.append(f"{s.name}: false {s.false} {false} vs alpha {args.alpha:g} "
                         f"(+2 SE = {args.alpha + 2 * se:.3f}) -> {'OK' if ok else 'ABOVE'}")
        rows.append((s.name, f"{share(fixed, 'PASS'):.3f}", f"{share(fixed, 'FAIL'):.3f}",
                     f"{share(seq, 'PASS'):.3f}", f"{share(seq, 'FAIL'):.3f}",
                     f"{share(seq, 'INCONCLUSIVE'):.3f}", f"{saved:.1%}", false or "-",
                     f"{time.perf_counter() - t0:.0f}"))
        print(f"  done: {s.name}", flush=True)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    print()
    for i, row in enumerate(rows):
        print("  ".join(c.ljust(w) if j == 0 else c.rjust(w)
                        for j, (c, w) in enumerate(zip(row, widths, strict=True))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print("\nerror rates (sequential):")
    for note in notes:
        print("  " + note)
    clear = [r for r in rows[1:] if "clear" in r[0]]
    print("mean share of calls saved: " + "; ".join(f"{r[0]} {r[6]}" for r in clear))
    return 0


if __name__ == "__main__":
    sys.exit(main())
