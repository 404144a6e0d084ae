"""Group-sequential boundaries for looks at a gate's data: the
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

numpy and scipy.special are imported on first use: only a sequential run needs them.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

_GRID = 1201          # points of the integration grid per look (odd: Simpson weights)
_LOW_SD = 9.0         # the one-sided grid starts 9 SDs below 0
_MAX_Z = 40.0


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


def curtail_rate(count: int, n: int, remaining: int, bound: float, worse: str,
                 alpha_final: float) -> str | None:
    """The final-look verdict of a one-sample-per-canary rate cap (worse="higher", `count` =
    bad canaries) or floor (worse="lower", `count` = good ones) when no answer of the
    `remaining` canaries can change it, else None.

    The Wilson bounds are monotone in the count (more bad moves both up) and a canary that
    errors only drops out, so the extreme completions (all remaining good / all bad) decide.
    """
    from evalgate.stats.primitives import wilson_bounds

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
