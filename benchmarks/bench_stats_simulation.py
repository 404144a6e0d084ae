"""How often does the statistics layer get it wrong, how much can it see, and how fast is it?

Why this exists: `tests/test_stats.py` checks the error rates on a few hundred seeds so CI stays
fast; this script runs the same kind of simulations with enough seeds to read the rates to about
a percentage point, plus the timings the gate promises. It prints and always exits 0.

1. Per guardrail kind, alone (Holm over one test), at n canaries:
   * false FAIL: no change (A/A), or for absolute caps the truth exactly at the cap;
   * false PASS: the truth exactly at the margin (or the cap): the non-inferiority test's level.
   Both should be <= alpha (up to Monte-Carlo error, shown as +- 1 SE).
2. The whole gate (five guardrails, `finalize` + `overall_verdict`) A/A: family-wise false FAIL.
3. Power to detect a regression (p_regression < alpha) at 0.5, 1, 1.5 and 2 x the true MDE
   under no change (from a pilot of A/A runs: (z_{1-alpha} + z_0.8) x the sampling SD of the
   effect estimator; the mean MDE the A/A runs report is shown next to it), observed vs what
   the runs' own `mde` predicts at that effect, Phi((z_{1-alpha} + z_0.8) effect / mde - z).
   (For binary rates the SE grows with the regression, so the prediction uses the runs' mde.)
4. At the boundary, per n: rate caps (K=1, the truth at the cap; n in 11, 30, 100, 300), the
   p95 SLO and p95 ratio with K = 2 and 3 correlated calls a canary (tested on the calls, canary
   = cluster), and the cost ratio on lognormal costs (the truth at the margin; then the PASS
   rate at x1.00 and x0.90 with the ratio-model check and with Fieller alone: its power cost).
5. Timing (printed last): `compare_p95` at n = 10,000 with 9,999 resamples (target < 2 s on
   2 cores), and every guardrail plus `finalize` at n = 10,000.

6. Power at the MDE the paired binary test reports (from A/A runs): should be 0.80 within 2 SE.

Usage: python benchmarks/bench_stats_simulation.py [--seeds 1000] [--quick] [--n 200]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats

from evalgate.gate.verdicts import overall_verdict
from evalgate.stats import (
    Evidence,
    compare_cost,
    compare_latency_gm,
    compare_p95,
    compare_rate,
    compare_score,
    cost_budget,
    fieller_ratio_bounds,
    finalize,
    p95_slo,
    rate_cap,
)

ALPHA = 0.05
SIGMA, RHO = 0.5, 0.6          # log-latency SD and candidate/baseline log correlation
MU_LAT = math.log(800.0)
COST_MU, COST_SIGMA = math.log(0.002), 0.5


@dataclass(frozen=True)
class Scenario:
    """One guardrail kind: how to simulate it at a given true effect, and its boundaries."""

    name: str
    run: Callable[[int, float], Evidence]   # (seed, true effect) -> Evidence
    null: float                             # "no change" (or the cap itself for absolute kinds)
    margin: float                           # the true effect at the non-inferiority margin
    log_scale: bool                         # ratio kinds: MDE and effects on the log scale


def _lat_pair(rng: np.random.Generator, n: int, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Paired lognormal latencies whose p95 ratio and geometric-mean ratio are both `ratio`."""
    z1 = rng.normal(size=n)
    z2 = RHO * z1 + math.sqrt(1 - RHO * RHO) * rng.normal(size=n)
    return np.exp(MU_LAT + math.log(ratio) + SIGMA * z2), np.exp(MU_LAT + SIGMA * z1)


def _cost_pair(rng: np.random.Generator, n: int, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-canary cost scale shared by both configs; the ratio of mean costs is `ratio`."""
    scale = np.exp(rng.normal(COST_MU, COST_SIGMA, n))
    return ratio * scale * rng.gamma(20, 1 / 20, n), scale * rng.gamma(20, 1 / 20, n)


def scenarios(n: int, resamples: int, bca_resamples: int) -> list[Scenario]:
    def halluc(seed: int, delta: float) -> Evidence:
        rng = np.random.default_rng(seed)
        # cells: both hallucinate 2%, baseline only 3%, candidate only 3% + delta
        cell = rng.choice(4, size=n, p=[0.02, 0.03, 0.03 + delta, 0.92 - delta])
        base = np.isin(cell, [0, 1]).astype(float)
        cand = np.isin(cell, [0, 2]).astype(float)
        return compare_rate(cand, base, guardrail="hallucination_rate", margin=0.05,
                            alpha=ALPHA, samples=1)

    def pass_rate(seed: int, delta: float) -> Evidence:
        rng = np.random.default_rng(seed)
        q = 0.1 + 0.9 * rng.beta(8, 2, n)  # >= 0.1, so q + delta stays a probability
        base = rng.binomial(3, q) / 3
        cand = rng.binomial(3, q + delta) / 3
        return compare_rate(cand, base, guardrail="pass_rate", margin=0.05, alpha=ALPHA,
                            samples=3, worse="lower")

    def cap(seed: int, rate: float) -> Evidence:
        rng = np.random.default_rng(seed)
        x = (rng.random(n) < rate).astype(float)
        return rate_cap(x, guardrail="hallucination_cap", cap=0.05, alpha=ALPHA, samples=1)

    def p95(seed: int, ratio: float) -> Evidence:
        cand, base = _lat_pair(np.random.default_rng(seed), n, ratio)
        return compare_p95(cand, base, guardrail="latency_p95", margin_ratio=1.25, alpha=ALPHA,
                           resamples=resamples, seed=seed)

    true_p95 = math.exp(MU_LAT + SIGMA * stats.norm.ppf(0.95))

    def slo(seed: int, p95_value: float) -> Evidence:
        rng = np.random.default_rng(seed)
        x = np.exp(math.log(p95_value) - SIGMA * stats.norm.ppf(0.95) + SIGMA * rng.normal(
            size=n))
        return p95_slo(x, guardrail="latency_p95_slo", slo_ms=true_p95, alpha=ALPHA)

    def gm(seed: int, ratio: float) -> Evidence:
        cand, base = _lat_pair(np.random.default_rng(seed), n, ratio)
        return compare_latency_gm(cand, base, guardrail="latency_gm", margin_ratio=1.2,
                                  alpha=ALPHA)

    def cost(seed: int, ratio: float) -> Evidence:
        cand, base = _cost_pair(np.random.default_rng(seed), n, ratio)
        return compare_cost(cand, base, guardrail="cost", margin_ratio=1.1, alpha=ALPHA,
                            seed=seed, bca_resamples=bca_resamples)

    true_mean_cost = math.exp(COST_MU + COST_SIGMA ** 2 / 2)

    def budget(seed: int, mean: float) -> Evidence:
        cand, _ = _cost_pair(np.random.default_rng(seed), n, mean / true_mean_cost)
        return cost_budget(cand, guardrail="cost_budget", budget=true_mean_cost, alpha=ALPHA)

    def score(seed: int, delta: float) -> Evidence:
        rng = np.random.default_rng(seed)
        truth = rng.uniform(0.3, 0.7, n)
        base = truth + rng.uniform(-0.1, 0.1, n)
        cand = truth + delta + rng.uniform(-0.1, 0.1, n)
        return compare_score(cand, base, guardrail="rubric_score", margin=0.05, alpha=ALPHA)

    return [
        Scenario("rate_vs_baseline K=1 (Tango/McNemar)", halluc, 0.0, 0.05, False),
        Scenario("rate_vs_baseline K=3 (paired t, lower)", pass_rate, 0.0, -0.05, False),
        Scenario("rate_cap K=1 (Clopper-Pearson)", cap, 0.05, 0.05, False),
        Scenario("p95_ratio (HD bootstrap)", p95, 1.0, 1.25, True),
        Scenario("p95_slo (order statistics)", slo, true_p95, true_p95, False),
        Scenario("latency_gm_ratio (log t)", gm, 1.0, 1.2, True),
        Scenario("cost_ratio (Fieller + ratio model)", cost, 1.0, 1.1, True),
        Scenario("cost_budget (t)", budget, true_mean_cost, true_mean_cost, False),
        Scenario("score_vs_baseline (paired t)", score, 0.0, -0.05, False),
    ]


def rate(hits: int, runs: int) -> str:
    p = hits / runs
    return f"{p:6.3f} +- {math.sqrt(max(p * (1 - p), 1e-12) / runs):.3f}"


def error_rates(items: list[Scenario], seeds: int) -> None:
    print(f"\n1. Error rates per guardrail kind, alone, alpha = {ALPHA} ({seeds} seeds each)")
    print(f"   {'kind':42s} {'false FAIL (null)':>20s} {'false PASS (margin)':>20s}  secs")
    for sc in items:
        t0 = time.perf_counter()
        fails = sum(finalize([sc.run(s, sc.null)], ALPHA)[0].verdict == "FAIL"
                    for s in range(seeds))
        passes = sum(sc.run(100_000 + s, sc.margin).verdict == "PASS" for s in range(seeds))
        secs = time.perf_counter() - t0
        print(f"   {sc.name:42s} {rate(fails, seeds):>20s} {rate(passes, seeds):>20s}"
              f"  {secs:4.1f}")


def gate_aa(items: list[Scenario], seeds: int) -> None:
    picked = [sc for sc in items if sc.name.startswith(
        ("rate_vs_baseline", "p95_ratio", "latency_gm", "cost_ratio"))]
    print(f"\n2. Whole gate A/A ({len(picked)} guardrails, Holm via finalize, {seeds} seeds)")
    t0 = time.perf_counter()
    fails = passes = 0
    for s in range(seeds):
        verdict = overall_verdict([e.verdict for e in finalize(
            [sc.run(200_000 + s, sc.null) for sc in picked], ALPHA)])
        fails += verdict == "FAIL"
        passes += verdict == "PASS"
    print(f"   false FAIL {rate(fails, seeds)}   PASS {rate(passes, seeds)}   "
          f"({time.perf_counter() - t0:.1f} s)")


def power_curves(items: list[Scenario], seeds: int, pilot: int) -> None:
    z_a = stats.norm.isf(ALPHA)
    factor = z_a + stats.norm.ppf(0.80)
    ks = (0.5, 1.0, 1.5, 2.0)
    print(f"\n3. Power (p_regression < {ALPHA}) at k x the true A/A MDE ({seeds} seeds per "
          f"point; true MDE from {pilot} A/A runs); observed / predicted by the runs' mde")
    print(f"   {'kind':42s} {'true MDE':>9s} {'reported':>9s}  "
          + "  ".join(f"k={k:<3g} obs/pred" for k in ks))
    for sc in items:
        if sc.name.startswith(("rate_cap", "p95_slo", "cost_budget")):
            continue
        sign = -1.0 if sc.margin < sc.null else 1.0  # which direction is a regression
        pilot_evs = [sc.run(300_000 + s, sc.null) for s in range(pilot)]
        effects = [ev.effect for ev in pilot_evs]
        if sc.log_scale:
            sd = float(np.std(np.log(effects), ddof=1))
            reported = float(np.exp(np.mean(np.log([ev.mde for ev in pilot_evs]))))
            true_mde, shown = factor * sd, f"x{math.exp(factor * sd):.3f}"
            rep = f"x{reported:.3f}"
        else:
            sd = float(np.std(effects, ddof=1))
            true_mde = factor * sd
            shown, rep = f"{true_mde:.4f}", f"{np.mean([ev.mde for ev in pilot_evs]):.4f}"
        cells = []
        for k in ks:
            shift = k * true_mde
            effect = sc.null * math.exp(sign * shift) if sc.log_scale else sc.null + sign * shift
            evs = [sc.run(400_000 + 10_000 * int(k * 10) + s, effect) for s in range(seeds)]
            observed = np.mean([ev.p_regression < ALPHA for ev in evs])
            # what the runs' own MDE predicts: SE = MDE / factor, power = Phi(shift/SE - z)
            mdes = [ev.mde for ev in evs]
            run_mde = float(np.mean(np.log(mdes))) if sc.log_scale else float(np.mean(mdes))
            predicted = stats.norm.cdf(factor * shift / run_mde - z_a)
            cells.append(f"{observed:.3f}/{predicted:.3f}")
        print(f"   {sc.name:42s} {shown:>9s} {rep:>9s}  " + "  ".join(f"{c:>14s}" for c in cells))


SD_CANARY, SD_CALL = 0.45, 0.2   # log-latency SD between canaries and between a canary's calls


def _clustered_calls(rng: np.random.Generator, n: int, k: int, shift: float = 0.0
                     ) -> np.ndarray:
    """K lognormal calls for each of n canaries, correlated within a canary."""
    z = rng.normal(size=(n, 1)) * SD_CANARY + rng.normal(size=(n, k)) * SD_CALL
    return np.exp(z + shift).ravel()


def _clustered_ratio(seed: int, n: int, k: int, ratio: float, resamples: int) -> str:
    rng = np.random.default_rng(seed)
    base = _clustered_calls(rng, n, k)
    cand = _clustered_calls(rng, n, k, math.log(ratio))
    index = np.repeat(np.arange(n), k)
    ev = compare_p95(cand, base, guardrail="p95", margin_ratio=1.25, alpha=ALPHA,
                     resamples=resamples, seed=seed, samples=k, cand_canary=index,
                     base_canary=index)
    return finalize([ev], ALPHA)[0].verdict


def boundary_rates(seeds: int, resamples: int) -> None:
    print(f"\n4. At the boundary ({seeds} seeds a cell; limit alpha + 2 SE = "
          f"{ALPHA + 2 * math.sqrt(ALPHA * (1 - ALPHA) / seeds):.3f})")
    print(f"   {'case':52s} {'false FAIL':>16s} {'false PASS':>16s}")

    def row(name: str, run: Callable[[int], str]) -> None:
        verdicts = [run(s) for s in range(seeds)]
        fails, passes = verdicts.count("FAIL"), verdicts.count("PASS")
        print(f"   {name:52s} {rate(fails, seeds):>16s} {rate(passes, seeds):>16s}")

    for n in (11, 30, 100, 300):
        for cap in (0.01, 0.1):
            def cap_run(seed: int, n: int = n, cap: float = cap) -> str:
                x = (np.random.default_rng(seed).random(n) < cap).astype(float)
                return rate_cap(x, guardrail="cap", cap=cap, alpha=ALPHA, samples=1).verdict
            row(f"rate_cap K=1 n={n} cap={cap:g} (truth at the cap)", cap_run)

    slo = math.exp(math.hypot(SD_CANARY, SD_CALL) * stats.norm.ppf(0.95))
    n = 150
    for k in (2, 3):
        index = np.repeat(np.arange(n), k)
        row(f"p95_slo K={k} n={n} (truth at the SLO)",
            lambda seed, k=k, index=index: p95_slo(
                _clustered_calls(np.random.default_rng(seed), n, k), guardrail="slo",
                slo_ms=slo, alpha=ALPHA, samples=k, canary=index).verdict)
        for ratio, col in ((1.0, "no change (FAIL col)"), (1.25, "at x1.25 (PASS col)")):
            row(f"p95_ratio K={k} n={n} {col}",
                lambda seed, k=k, ratio=ratio: _clustered_ratio(seed, n, k, ratio, resamples))

    for n in (30, 100, 300):
        def cost_run(seed: int, n: int = n) -> str:
            cand, base = _lognormal_costs(seed, n, 1.10)
            return compare_cost(cand, base, guardrail="cost", margin_ratio=1.1, alpha=ALPHA,
                                seed=seed, bca_resamples=199).verdict
        row(f"cost_ratio lognormal n={n} at x1.10 (PASS col)", cost_run)
    print("   power cost of the ratio-model check (PASS rate, Fieller and ratio model / Fieller "
          "alone):")
    for n in (30, 100, 300):
        cells = []
        for ratio in (1.0, 0.9):
            both = alone = 0
            for s in range(seeds):
                cand, base = _lognormal_costs(500_000 + s, n, ratio)
                both += compare_cost(cand, base, guardrail="cost", margin_ratio=1.1,
                                     alpha=ALPHA, seed=s, bca_resamples=199).verdict == "PASS"
                high = fieller_ratio_bounds(cand, base, ALPHA)[1]
                alone += high is not None and high < 1.1
            cells.append(f"at x{ratio:.2f}: {both / seeds:.3f} / {alone / seeds:.3f}")
        print(f"     n={n:<4d} " + "   ".join(cells))


def _lognormal_costs(seed: int, n: int, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Skewed costs: lognormal baseline (sigma 1), the candidate a lognormal (sigma 0.5)
    multiple of it; the ratio of mean costs is exactly `ratio`."""
    rng = np.random.default_rng(seed)
    base = np.exp(rng.normal(math.log(0.002), 1.0, n))
    return ratio * base * np.exp(rng.normal(-0.125, 0.5, n)), base


def mde_power(seeds: int, pilot: int) -> None:
    """Power of the paired binary regression test at the MDE the runs report (target 0.80)."""
    print(f"\n6. Power at the reported MDE, rate_vs_baseline K=1 (2% both bad, 3% only the "
          f"baseline, 3% + d only the candidate; mean MDE of {pilot} A/A runs, {seeds} seeds; "
          f"target 0.80, 2 SE = {2 * math.sqrt(0.16 / seeds):.3f})")
    for n in (100, 200, 500, 2000):
        def run(seed: int, delta: float, n: int = n) -> Evidence:
            rng = np.random.default_rng(seed)
            cell = rng.choice(4, size=n, p=[0.02, 0.03, 0.03 + delta, 0.92 - delta])
            return compare_rate(np.isin(cell, [0, 2]).astype(float),
                                np.isin(cell, [0, 1]).astype(float), guardrail="h",
                                margin=0.05, alpha=ALPHA, samples=1)
        mde = float(np.mean([run(700_000 + s, 0.0).mde for s in range(pilot)]))
        hits = sum(run(800_000 + s, mde).p_regression < ALPHA for s in range(seeds))
        print(f"   n={n:<5d} reported MDE {100 * mde:5.2f} points: power {rate(hits, seeds)}")


def timings(repeats: int) -> None:
    n = 10_000
    rng = np.random.default_rng(0)
    cand_ms, base_ms = _lat_pair(rng, n, 1.05)
    print(f"\n5. Timing at n = {n:,} canaries")
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        compare_p95(cand_ms, base_ms, guardrail="p95", margin_ratio=1.25, alpha=ALPHA,
                    resamples=9999, seed=1)
        times.append(time.perf_counter() - t0)
    verdict = "meets" if min(times) < 2.0 else "MISSES"
    print(f"   compare_p95, 9,999 resamples: best {min(times):.2f} s, median "
          f"{statistics.median(times):.2f} s over {repeats} ({verdict} the < 2 s target)")

    p = rng.beta(0.5, 9.5, n)
    hb, hc = (rng.random(n) < p).astype(float), (rng.random(n) < p).astype(float)
    q = rng.beta(8, 2, n)
    pb, pc = rng.binomial(3, q) / 3, rng.binomial(3, q) / 3
    cost_c, cost_b = _cost_pair(rng, n, 1.0)
    steps: list[tuple[str, Callable[[], Evidence]]] = [
        ("compare_rate K=1", lambda: compare_rate(hc, hb, guardrail="h", margin=0.02,
                                                  alpha=ALPHA, samples=1)),
        ("compare_rate K=3", lambda: compare_rate(pc, pb, guardrail="pass", margin=0.02,
                                                  alpha=ALPHA, samples=3, worse="lower")),
        ("rate_cap", lambda: rate_cap(hc, guardrail="cap", cap=0.08, alpha=ALPHA, samples=1)),
        ("compare_p95", lambda: compare_p95(cand_ms, base_ms, guardrail="p95",
                                            margin_ratio=1.25, alpha=ALPHA)),
        ("p95_slo", lambda: p95_slo(cand_ms, guardrail="slo", slo_ms=3000, alpha=ALPHA)),
        ("compare_latency_gm", lambda: compare_latency_gm(cand_ms, base_ms, guardrail="gm",
                                                          margin_ratio=1.2, alpha=ALPHA)),
        ("compare_cost (BCa 9,999)", lambda: compare_cost(cost_c, cost_b, guardrail="cost",
                                                          margin_ratio=1.1, alpha=ALPHA)),
        ("cost_budget", lambda: cost_budget(cost_c, guardrail="budget", budget=0.01,
                                            alpha=ALPHA)),
    ]
    t_all = time.perf_counter()
    evidences = []
    parts = []
    for name, step in steps:
        t0 = time.perf_counter()
        evidences.append(step())
        parts.append(f"{name} {time.perf_counter() - t0:.2f}")
    t0 = time.perf_counter()
    final = finalize(evidences, ALPHA)
    parts.append(f"finalize {1000 * (time.perf_counter() - t0):.1f} ms")
    print(f"   all 8 guardrails + finalize: {time.perf_counter() - t_all:.2f} s "
          f"(overall {overall_verdict([e.verdict for e in final])})")
    print("     " + "; ".join(parts))
    print(f"     e.g. {final[3].sentence}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=None,
                        help="seeds per error-rate cell and per power point (default 1000)")
    parser.add_argument("--only-boundary", action="store_true",
                        help="only sections 4 and 6 (the boundary rates, power at the MDE)")
    parser.add_argument("--quick", action="store_true",
                        help="200 seeds, smaller pilot, one timing repeat")
    parser.add_argument("--n", type=int, default=200, help="canaries per simulated run")
    parser.add_argument("--resamples", type=int, default=999,
                        help="p95 bootstrap resamples inside the simulations (timing uses 9999)")
    args = parser.parse_args(argv)
    seeds = args.seeds or (200 if args.quick else 1000)
    pilot = 200 if args.quick else 500
    # The BCa cross-check only feeds the note, never a verdict: keep it cheap in simulations.
    items = scenarios(args.n, args.resamples, bca_resamples=199)
    started = time.perf_counter()
    print(f"evalgate.stats simulation: n = {args.n} canaries, alpha = {ALPHA} (one-sided), "
          f"p95 bootstrap B = {args.resamples} in simulations")
    if args.only_boundary:
        boundary_rates(seeds, args.resamples)
        mde_power(seeds, pilot)
        return
    error_rates(items, seeds)
    gate_aa(items, seeds)
    power_curves(items, seeds, pilot)
    boundary_rates(seeds, args.resamples)
    mde_power(seeds, pilot)
    timings(1 if args.quick else 3)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
