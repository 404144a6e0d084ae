"""Sequential gating: decide the gate at planned looks and stop calling once it is decided.

Why: most pull requests are clear passes (or clear regressions); deciding them on a third of
the canaries saves two thirds of the spend. Looking at the data more than once inflates the
error rates unless each look uses a stricter level, so the looks spend alpha with the
Lan-DeMets (1983, Biometrika 70:659-663) O'Brien-Fleming-type spending function

    alpha*(t) = 2 - 2 Phi(z_{1-alpha/2} / sqrt(t)),   alpha*(1) = alpha (one-sided),

the form of gsDesign's `sfLDOF` (Anderson, gsDesign; Jennison & Turnbull 2000, Group
Sequential Methods, ch. 7). At information fraction t_k (the share of canaries answered) the
cumulative z statistics Z_1..Z_K of a test with independent increments are multivariate normal
with corr(Z_i, Z_j) = sqrt(t_i / t_j); the boundary c_k solves

    P(Z_1 < c_1, ..., Z_{k-1} < c_{k-1}, Z_k >= c_k) = alpha*(t_k) - alpha*(t_{k-1})

by the recursive numerical integration of Armitage, McPherson & Rowe (1969, JRSS A 132:235-244;
Jennison & Turnbull ch. 19) on the score scale S_k = Z_k sqrt(t_k). Each guardrail is then
evaluated at the one-sided nominal level alpha_k = 1 - Phi(c_k) at look k, separately for its
PASS side and its FAIL side (so false PASS and false FAIL are each held at alpha). Known answers
(tests/test_sequential.py): 3 equal looks, alpha 0.025 one-sided: 3.710, 2.511, 1.993; 5 looks:
4.877, 3.357, 2.680, 2.290, 2.031 (gsDesign sfLDOF; DeMets & Lan 1994, Stat Med 13:1341-1352);
the classical O'Brien & Fleming (1979, Biometrics 35:549-556) boundaries for 3 looks, two-sided
0.05: 3.471, 2.454, 2.004 (Jennison & Turnbull Table 2.3, C_B(3, 0.05) = 2.004).

Rules (`SequentialGate`):
* canaries are taken in a stable, seeded random order (a hash of seed and key, so adding a
  canary does not reshuffle the others); look k covers the first ceil(t_k N) of them;
* a tested guardrail's verdict is locked at the first look where it is PASS or FAIL;
* the calls stop when every tested guardrail is locked, or when one is FAIL (the gate is then
  FAIL whatever comes next);
* curtailment: a guardrail whose final-look verdict can no longer change whatever the remaining
  canaries answer is decided now - deterministically, so it changes no error rate. Implemented
  for a p95 SLO (FAIL: already too many answers above the SLO even if every remaining canary
  answers instantly; matters early, where 0.95^n < alpha_k is not yet met, so the interim test
  cannot decide) and for one-sample rate caps and floors (the extreme completions, all good or
  all bad, decide). For the rate caps the interim boundary always decides first (checked
  exhaustively for N <= 300 over thirds), so there it is a safety net only;
* at interim looks a one-sample rate cap needs the exact Clopper-Pearson bound to agree with
  its Wilson bound (Wilson is liberal far in the tail, where interim levels sit);
* point guardrails (no test) do not steer stopping; they are judged on the data at the stop.

Approximation, stated: the independent-increments structure is exact for means and score tests
and holds asymptotically for the bootstrap and order-statistic guardrails; Holm's adjustment is
applied within each look at that look's level. `benchmarks/bench_sequential.py` checks the
resulting false PASS / false FAIL rates by simulation.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from evalgate.results import SequentialLook

if TYPE_CHECKING:  # numpy and scipy are imported on first use (only a sequential run needs them)
    import numpy as np

DEFAULT_LOOKS = (1 / 3, 2 / 3, 1.0)
_GRID = 1201          # points of the integration grid per look (odd: Simpson weights)
_LOW_SD = 9.0         # the one-sided grid starts 9 SDs below 0
_MAX_Z = 40.0


# --------------------------------------------------------------------------------------------
# Boundaries (pure functions)
# --------------------------------------------------------------------------------------------


def obf_spending(t: float, alpha: float) -> float:
    """Lan-DeMets O'Brien-Fleming-type spending: alpha spent by information fraction t."""
    from evalgate.stats import distributions as dist  # numpy + scipy.special, on first use

    if not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    if t <= 0.0:
        return 0.0
    t = min(t, 1.0)
    return float(2.0 - 2.0 * dist.norm_cdf(dist.norm_isf(alpha / 2.0) / math.sqrt(t)))


def _check_fractions(fractions: Sequence[float]) -> list[float]:
    ts = [float(t) for t in fractions]
    if not ts or any(not 0.0 < t <= 1.0 for t in ts) or any(
            b <= a for a, b in itertools.pairwise(ts)):
        raise ValueError(f"information fractions must increase within (0, 1], got {ts}")
    return ts


def _simpson(m: int) -> np.ndarray:
    import numpy as np

    w = np.ones(m)
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    return w / 3.0


class _Recursion:
    """Sub-densities of S_k = Z_k sqrt(t_k) on the continuation region, look by look."""

    def __init__(self, two_sided: bool) -> None:
        self.two_sided = two_sided
        self.grid: np.ndarray | None = None   # S values of the current continuation region
        self.dens: np.ndarray | None = None   # density x Simpson weight x step on that grid
        self.t = 0.0

    def cross(self, t: float, z: float) -> float:
        """P(not stopped before, and Z at fraction t crosses z) (both tails if two-sided)."""
        from evalgate.stats import distributions as dist  # numpy + scipy.special, on first use

        b = z * math.sqrt(t)
        if self.grid is None:
            p = float(dist.norm_sf(z))
            return 2.0 * p if self.two_sided else p
        sd = math.sqrt(t - self.t)
        up = dist.norm_sf((b - self.grid) / sd)
        if self.two_sided:
            up = up + dist.norm_cdf((-b - self.grid) / sd)
        return float(self.dens @ up)

    def advance(self, t: float, z: float) -> None:
        """Condition on not stopping at fraction t (continuation region below z, or |Z| < z)."""
        import numpy as np

        from evalgate.stats import distributions as dist  # numpy + scipy.special, on first use

        b = z * math.sqrt(t)
        low = -b if self.two_sided else -_LOW_SD * math.sqrt(t)
        grid = np.linspace(low, b, _GRID)
        step = (b - low) / (_GRID - 1)
        if self.grid is None:
            f = dist.norm_pdf(grid / math.sqrt(t)) / math.sqrt(t)
        else:
            sd = math.sqrt(t - self.t)
            u = (grid[:, None] - self.grid[None, :]) / sd
            kernel = np.exp(-0.5 * u * u) / (sd * math.sqrt(2.0 * math.pi))
            f = kernel @ self.dens
        self.grid, self.dens, self.t = grid, f * _simpson(_GRID) * step, t


def spending_bounds(fractions: Sequence[float], alpha: float,
                    spending: Callable[[float, float], float] = obf_spending) -> list[float]:
    """One-sided z boundaries c_1..c_K spending `spending(t, alpha)` at fractions t_1..t_K."""
    from evalgate.stats import distributions as dist  # numpy + scipy.special, on first use

    ts = _check_fractions(fractions)
    rec = _Recursion(two_sided=False)
    bounds: list[float] = []
    spent = 0.0
    for t in ts:
        target = spending(t, alpha) - spent
        if target <= 1e-15:
            z = _MAX_Z
        else:
            z = dist.brentq(lambda c, t=t, target=target: rec.cross(t, c) - target,
                            -10.0, _MAX_Z, xtol=1e-10)
        spent += rec.cross(t, z)
        rec.advance(t, z)
        bounds.append(z)
    return bounds


def crossing_probabilities(fractions: Sequence[float], bounds: Sequence[float],
                           two_sided: bool = False) -> list[float]:
    """Under H0, the probability of first crossing each look's boundary (for checks)."""
    ts = _check_fractions(fractions)
    rec = _Recursion(two_sided)
    out = []
    for t, z in zip(ts, bounds, strict=True):
        out.append(rec.cross(t, z))
        rec.advance(t, z)
    return out


def obrien_fleming_bounds(fractions: Sequence[float], alpha: float,
                          two_sided: bool = True) -> list[float]:
    """Classical O'Brien-Fleming boundaries c / sqrt(t_k), c giving total level alpha."""
    from evalgate.stats import distributions as dist  # numpy + scipy.special, on first use

    ts = _check_fractions(fractions)

    def excess(c: float) -> float:
        return sum(crossing_probabilities(ts, [c / math.sqrt(t) for t in ts], two_sided)) - alpha

    c = dist.brentq(excess, 0.5, 10.0, xtol=1e-10)
    return [c / math.sqrt(t) for t in ts]


@functools.lru_cache(maxsize=64)
def _cached_bounds(fractions: tuple[float, ...], alpha: float) -> list[float]:
    return spending_bounds(fractions, alpha)


def nominal_alphas(fractions: Sequence[float], alpha: float) -> list[float]:
    """The one-sided level each look's verdicts use: 1 - Phi(c_k)."""
    from evalgate.stats import distributions as dist  # numpy + scipy.special, on first use

    return [float(dist.norm_sf(z)) for z in spending_bounds(fractions, alpha)]


# --------------------------------------------------------------------------------------------
# Looks over canaries (pure functions)
# --------------------------------------------------------------------------------------------


def stable_order(keys: Sequence[str], seed: int) -> list[str]:
    """Canary keys in a seeded random order that stays put when other canaries come and go."""
    return sorted(keys, key=lambda k: hashlib.sha256(f"{seed}\0{k}".encode()).digest())


def look_sizes(n: int, looks: Sequence[float]) -> list[int]:
    """Canaries seen by each look: ceil(t_k n), at least 1, distinct, the last one n."""
    sizes: list[int] = []
    for t in _check_fractions(looks):
        size = min(n, max(1, math.ceil(t * n - 1e-9)))
        if not sizes or size > sizes[-1]:
            sizes.append(size)
    if sizes and sizes[-1] != n:
        sizes.append(n)
    return sizes


def curtail_rate(count: int, n: int, remaining: int, bound: float, worse: str,
                 alpha_final: float) -> str | None:
    """The final-look verdict of a one-sample-per-canary rate cap (worse="higher", `count` =
    bad canaries) or floor (worse="lower", `count` = good ones) when no answer of the
    `remaining` canaries can change it, else None.

    The Wilson bounds are monotone in the count (more bad moves both up) and a canary that
    errors only drops out, so the extreme completions (all remaining good / all bad) decide.
    """
    from evalgate.stats import wilson_bounds

    total = n + remaining
    if total == 0:
        return None
    best_low, _ = wilson_bounds(count, total, alpha_final)              # rest all good
    _, worst_high = wilson_bounds(count + remaining, total, alpha_final)  # rest all bad
    if worse == "higher":
        if best_low > bound:
            return "FAIL"
        if worst_high < bound:
            return "PASS"
    else:
        if worst_high < bound:   # the floor missed even if every remaining canary is good
            return "FAIL"
        if best_low > bound:
            return "PASS"
    return None


# --------------------------------------------------------------------------------------------
# The run-time driver
# --------------------------------------------------------------------------------------------


class SequentialGate:
    """Runs the looks for `run.make_calls`: orders the jobs, grades and judges each look."""

    def __init__(self, settings: Any, plan: Sequence[Any], looks: Sequence[float],
                 samples: int, grade_records: Callable[[list[Any]], Any],
                 saved_baseline: Sequence[Any] | None = None, live_baseline: bool = False
                 ) -> None:
        self.settings = settings
        self.plan = list(plan)
        self.looks = _check_fractions(looks)
        self.samples = samples
        self.grade_records = grade_records  # grades a look's records in place (judge too)
        self.saved_baseline = list(saved_baseline) if saved_baseline is not None else None
        self.live_baseline = live_baseline
        self.records: list[Any] = []
        self.keys_seen: list[str] = []
        self.total = 0
        self.sizes: list[int] = []
        self.outcomes: list[SequentialLook] = []
        self.locked: dict[str, Any] = {}       # guardrail -> GuardrailVerdict at its look
        self.last: list[Any] = []              # the latest look's verdicts
        self.stop_reason = "all looks done"
        self.stopped_early = False
        self.calls_planned = 0

    def batches(self, keys: Sequence[str]) -> list[list[int]]:
        """Job indices per look; `keys` holds each job's canary key (samples share one)."""
        unique = list(dict.fromkeys(keys))
        order = stable_order(unique, self.settings.seed)
        self.total = len(order)
        self.sizes = look_sizes(self.total, self.looks) if order else []
        rank = {k: i for i, k in enumerate(order)}
        out: list[list[int]] = [[] for _ in self.sizes]
        for index, key in enumerate(keys):
            look = next(j for j, size in enumerate(self.sizes) if rank[key] < size)
            out[look].append(index)
        return out

    def bounds(self) -> list[float]:
        return _cached_bounds(tuple(s / self.total for s in self.sizes), self.settings.alpha)

    def after_look(self, new_records: Sequence[Any]) -> bool:
        """Grade this look's records, judge every guardrail; True means stop calling."""
        from evalgate.gate.guardrails import evaluate, judge_error_sensitivity
        from evalgate.gate.metrics import compute_metrics
        from evalgate.stats import distributions as dist  # numpy + scipy.special, on first use

        self.grade_records(list(new_records))
        self.records += new_records
        k = len(self.outcomes)
        bounds = self.bounds()
        z, size = bounds[k], self.sizes[k]
        nominal = float(dist.norm_sf(z))
        cand = [r for r in self.records if r.config == "candidate"]
        keys = {r.key for r in cand}
        base: list[Any] | None = None
        if self.live_baseline:
            base = [r for r in self.records if r.config == "baseline"]
        elif self.saved_baseline is not None:
            base = [r for r in self.saved_baseline if r.key in keys]
        at_look = self.settings.model_copy(update={"alpha": nominal})
        metrics = compute_metrics(cand)[0]
        verdicts = evaluate(at_look, self.plan, cand, base, metrics, self.samples)
        # A verdict judge errors could turn decides nothing at a look either: it stays open.
        verdicts = judge_error_sensitivity(at_look, self.plan, cand, base, metrics,
                                           self.samples, verdicts)
        outcome = SequentialLook(look=k + 1, canaries=size, fraction=size / self.total,
                              z_bound=z, nominal_alpha=nominal)
        final_alpha = float(dist.norm_sf(bounds[-1]))
        last_look = k + 1 == len(self.sizes)
        for g, v in zip(self.plan, verdicts, strict=True):
            if g.kind == "point" or g.name in self.locked:
                continue
            note = (f"sequential look {k + 1}/{len(self.sizes)} ({size} of {self.total} "
                    f"canaries): one-sided nominal alpha {nominal:.3g} (O'Brien-Fleming "
                    f"spending of {self.settings.alpha:g})")
            if v.verdict != "INCONCLUSIVE" and not last_look and not self._exact_agrees(
                    g, v, cand, nominal):
                v = v.model_copy(update={"verdict": "INCONCLUSIVE"})
                verdicts = [v if x.guardrail == g.name else x for x in verdicts]
            if v.verdict != "INCONCLUSIVE":
                self.locked[g.name] = v.model_copy(update={"note": _join(v.note, note)})
                outcome.decided[g.name] = v.verdict
                continue
            if last_look:
                continue
            curtailed = self._curtail(g, v, cand, final_alpha)
            if curtailed is not None:
                why = (f"curtailed at look {k + 1}: the final verdict is {curtailed} whatever "
                       f"the remaining {self.total - size} canaries answer")
                self.locked[g.name] = v.model_copy(update={
                    "verdict": curtailed, "note": _join(v.note, why),
                    "reason": f"{v.reason} -> {curtailed} ({why})"})
                outcome.curtailed[g.name] = curtailed
        self.outcomes.append(outcome)
        self.last = verdicts
        tested = [g.name for g in self.plan if g.kind != "point"]
        if last_look:
            return True
        if any(v.verdict == "FAIL" for v in self.locked.values()):
            self.stop_reason = f"a guardrail FAILed at look {k + 1}"
        elif tested and all(name in self.locked for name in tested):
            self.stop_reason = f"every guardrail decided at look {k + 1}"
        else:
            return False
        self.stopped_early = True
        return True

    def _exact_agrees(self, g: Any, v: Any, cand: Sequence[Any], nominal: float) -> bool:
        """Interim looks of a one-sample rate cap also need the exact (Clopper-Pearson) bound.

        Why: the Wilson score bound is liberal far in the tail, where interim levels sit (100
        canaries on a 10% cap, nominal 0.00069: it FAILs with probability 0.0020); requiring
        the exact bound too keeps each look at or below its spent alpha.
        """
        if g.kind != "rate_cap" or self.samples != 1 or g.bound is None:
            return True
        from evalgate.gate.guardrails import EXTRACT, per_canary
        from evalgate.stats import clopper_pearson_bounds

        values = per_canary(cand, EXTRACT[g.metric])
        if not values:
            return True
        count = sum(1 for x in values.values() if x >= 0.5)
        low, high = clopper_pearson_bounds(count, len(values), nominal)
        if v.verdict == "FAIL":
            return low > g.bound if g.worse == "higher" else high < g.bound
        return high < g.bound if g.worse == "higher" else low > g.bound

    def _curtail(self, g: Any, v: Any, cand: Sequence[Any], final_alpha: float) -> str | None:
        """The final-look verdict if no answer of the remaining canaries can change it, nor
        the judge errors among the answers so far (taken either way)."""
        from evalgate.gate.guardrails import as_if_judged

        fixed = self._curtail_on(g, cand, final_alpha)
        if fixed is not None and any(r.if_judged is not None for r in cand) and \
                self._curtail_on(g, as_if_judged(cand), final_alpha) != fixed:
            return None
        return fixed

    def _curtail_on(self, g: Any, cand: Sequence[Any], final_alpha: float) -> str | None:
        import numpy as np

        from evalgate.gate.guardrails import EXTRACT, per_canary

        values = per_canary(cand, EXTRACT[g.metric])
        remaining = self.total - len({r.key for r in cand})
        if g.kind == "rate_cap" and self.samples == 1 and g.bound is not None:
            bad = sum(1 for x in values.values() if (x >= 0.5) == (g.worse == "higher"))
            return curtail_rate(bad, len(values), remaining, g.bound, g.worse, final_alpha)
        if g.kind == "p95_slo" and g.bound is not None and values:
            # The order-statistic test only counts values above the SLO, and one more value at
            # or below it (or a canary that errors) can only weaken a FAIL: so if the run
            # FAILs even when every remaining canary answers instantly, it FAILs.
            from evalgate.stats import p95_slo_test

            best = np.concatenate([np.fromiter(values.values(), float), np.zeros(remaining)])
            if p95_slo_test(best, g.bound, final_alpha).verdict == "FAIL":
                return "FAIL"
        return None

    def verdicts(self) -> list[Any]:
        """Final verdicts: locked ones from their look; the rest from the last look."""
        out = []
        for g, v in zip(self.plan, self.last, strict=True):
            if g.name in self.locked:
                out.append(self.locked[g.name])
            elif g.kind != "point" and self.stopped_early:
                out.append(v.model_copy(update={"note": _join(
                    v.note, f"not decided when the run stopped ({self.stop_reason})")}))
            else:
                out.append(v)
        return out

    def info(self, calls_planned: int, calls_made: int) -> dict[str, Any]:
        """The `sequential` section of the run result."""
        return {
            "looks": self.looks, "alpha": self.settings.alpha,
            "spending": "Lan-DeMets O'Brien-Fleming type, alpha*(t) = 2 - 2 Phi(z_{1-a/2}/sqrt t)",
            "canaries_planned": self.total, "looks_done": len(self.outcomes),
            "looks_planned": len(self.sizes), "stopped_early": self.stopped_early,
            "reason": self.stop_reason, "calls_planned": calls_planned,
            "calls_saved": max(0, calls_planned - calls_made),
            "analyses": list(self.outcomes),
        }


def _join(*notes: str | None) -> str | None:
    kept = [n for n in notes if n]
    return "; ".join(kept) if kept else None


def looks_of(setting: bool | Mapping[str, Any] | Any) -> list[float] | None:
    """The look fractions a `gate.sequential` setting asks for; None when off."""
    if setting is None or setting is False:
        return None
    if setting is True:
        return list(DEFAULT_LOOKS)
    looks = getattr(setting, "looks", None)
    if looks is None and isinstance(setting, Mapping):
        looks = setting.get("looks")
    return list(looks) if looks else list(DEFAULT_LOOKS)
