"""Sequential gating: decide the gate at planned looks and stop calling once it is decided.

Why: most pull requests are clear passes (or clear regressions); deciding them on a third of
the canaries saves two thirds of the spend. Looking at the data more than once inflates the
error rates unless each look uses a stricter level, so the looks spend alpha with the Lan-DeMets
O'Brien-Fleming-type spending function (the boundaries and their known answers are in
evalgate/stats/sequential.py).

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

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from evalgate.gate.guardrails import (
    as_if_judged,
    evaluate,
    extractor,
    judge_error_sensitivity,
    per_canary,
)
from evalgate.gate.metrics import compute_metrics
from evalgate.results import SequentialLook
from evalgate.stats.sequential import (
    _cached_bounds,
    _check_fractions,
    curtail_rate,
)

if TYPE_CHECKING:  # numpy and scipy are imported on first use (only a sequential run needs them)
    pass

DEFAULT_LOOKS = (1 / 3, 2 / 3, 1.0)


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
        from evalgate.stats import clopper_pearson_bounds

        values = per_canary(cand, extractor(g.metric, self.settings, cand))
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
        fixed = self._curtail_on(g, cand, final_alpha)
        if fixed is not None and any(r.if_judged is not None for r in cand) and \
                self._curtail_on(g, as_if_judged(cand), final_alpha) != fixed:
            return None
        return fixed

    def _curtail_on(self, g: Any, cand: Sequence[Any], final_alpha: float) -> str | None:
        import numpy as np


        values = per_canary(cand, extractor(g.metric, self.settings, cand))
        remaining = self.total - len({r.key for r in cand})
        if g.kind == "rate_cap" and self.samples == 1 and g.bound is not None:
            bad = sum(1 for x in values.values() if (x >= 0.5) == (g.worse == "higher"))
            return curtail_rate(bad, len(values), remaining, g.bound, g.worse, final_alpha)
        if g.kind == "p95_slo" and self.samples == 1 and g.bound is not None and values:
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
