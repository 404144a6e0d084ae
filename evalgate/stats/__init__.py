"""Paired statistics for comparing a candidate model config against a baseline on the same
canaries.

Why this module exists: a single run of a few hundred canaries is noisy, so a gate that compares
point estimates flips on noise. Every guardrail here returns an `Evidence` carrying an estimate, a
one-sided bound on the worse side, a non-inferiority p-value against the tolerated margin, a
"did it regress at all" p-value (Holm-adjusted across the run by `finalize`), the minimum
detectable regression at this sample size, and one plain sentence for a release manager.

Conventions
-----------
* Each canary is a cluster: callers pass ONE value per canary (already averaged over K samples)
  and K as `samples`. Inference is at the canary level, so within-canary correlation of the K
  samples never inflates the effective n.
* `alpha` is one-sided. Intervals are two-sided ``1 - 2*alpha`` intervals, i.e. each side is a
  one-sided ``1 - alpha`` bound; with ``alpha=0.05`` the sentence says "95% upper bound".
* Verdicts: PASS needs the worse-side bound inside the margin; FAIL needs the better-side bound
  beyond it, or (set by `finalize`) a Holm-significant regression; INCONCLUSIVE otherwise and
  whenever the method's minimum sample size is not met.

Pure computation: numpy arrays in, frozen dataclasses out, no I/O. Distribution functions come
from `evalgate.stats.distributions` (scipy.special only: scipy.stats alone costs ~0.75 s to
import).

Modules: `choice` (choosing among N configs), `evidence` (what a test returns, shared
helpers, the sentence), `primitives` (known-answer methods), `rates`, `latency`, `cost`
(the guardrail tests), `intervals` (cluster-bootstrap intervals of one config's level),
`family` (Holm across the run), `sequential` (group-sequential boundaries), `resampling`,
`distributions`. This package imports nothing else of evalgate.

The names below are imported on first use (PEP 562): numpy and scipy.special load only when a
statistic is computed, so `evalgate.stats.sequential` and the modules that merely name this
package stay cheap to import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from evalgate.stats.choice import (
        Interval,
        mean_interval,
        paired_difference_p,
        quantile_interval,
        rate_interval,
        ratio_interval,
    )
    from evalgate.stats.cost import (
        compare_cost,
        cost_budget,
        fieller_ratio_bounds,
        ratio_model_bounds,
    )
    from evalgate.stats.diagnostic import (
        Accuracy,
        CorrectedRate,
        accuracy,
        cohen_kappa,
        corrected_rate,
        rogan_gladen,
    )
    from evalgate.stats.evidence import (
        Evidence,
        SloTest,
        Verdict,
        mde_difference,
        mde_paired_binary,
        mde_ratio,
    )
    from evalgate.stats.family import finalize
    from evalgate.stats.intervals import cluster_mean_interval, cluster_percentile_interval
    from evalgate.stats.latency import compare_latency_gm, compare_p95, p95_slo
    from evalgate.stats.primitives import (
        clopper_pearson_bounds,
        harrell_davis,
        harrell_davis_counts,
        harrell_davis_rows,
        holm_adjust,
        mcnemar_regression_p,
        p95_slo_test,
        tango_ci,
        tango_statistic,
        wilson_bounds,
    )
    from evalgate.stats.rates import compare_rate, compare_score, rate_cap
    from evalgate.stats.throughput import throughput_floor

_EXPORTS = {
    "Interval": "choice",
    "mean_interval": "choice",
    "paired_difference_p": "choice",
    "quantile_interval": "choice",
    "rate_interval": "choice",
    "ratio_interval": "choice",
    "Accuracy": "diagnostic",
    "CorrectedRate": "diagnostic",
    "accuracy": "diagnostic",
    "cohen_kappa": "diagnostic",
    "corrected_rate": "diagnostic",
    "rogan_gladen": "diagnostic",
    "Evidence": "evidence",
    "SloTest": "evidence",
    "Verdict": "evidence",
    "clopper_pearson_bounds": "primitives",
    "cluster_mean_interval": "intervals",
    "cluster_percentile_interval": "intervals",
    "compare_cost": "cost",
    "compare_latency_gm": "latency",
    "compare_p95": "latency",
    "compare_rate": "rates",
    "compare_score": "rates",
    "cost_budget": "cost",
    "fieller_ratio_bounds": "cost",
    "finalize": "family",
    "harrell_davis": "primitives",
    "harrell_davis_counts": "primitives",
    "harrell_davis_rows": "primitives",
    "holm_adjust": "primitives",
    "mcnemar_regression_p": "primitives",
    "mde_difference": "evidence",
    "mde_paired_binary": "evidence",
    "mde_ratio": "evidence",
    "p95_slo": "latency",
    "p95_slo_test": "primitives",
    "rate_cap": "rates",
    "ratio_model_bounds": "cost",
    "tango_ci": "primitives",
    "tango_statistic": "primitives",
    "throughput_floor": "throughput",
    "wilson_bounds": "primitives",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'evalgate.stats' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"evalgate.stats.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "Accuracy",
    "CorrectedRate",
    "Evidence",
    "Interval",
    "SloTest",
    "Verdict",
    "accuracy",
    "clopper_pearson_bounds",
    "cluster_mean_interval",
    "cluster_percentile_interval",
    "cohen_kappa",
    "compare_cost",
    "compare_latency_gm",
    "compare_p95",
    "compare_rate",
    "compare_score",
    "corrected_rate",
    "cost_budget",
    "fieller_ratio_bounds",
    "finalize",
    "harrell_davis",
    "harrell_davis_counts",
    "harrell_davis_rows",
    "holm_adjust",
    "mcnemar_regression_p",
    "mde_difference",
    "mde_paired_binary",
    "mde_ratio",
    "mean_interval",
    "p95_slo",
    "p95_slo_test",
    "paired_difference_p",
    "quantile_interval",
    "rate_cap",
    "rate_interval",
    "ratio_interval",
    "ratio_model_bounds",
    "rogan_gladen",
    "tango_ci",
    "tango_statistic",
    "throughput_floor",
    "wilson_bounds",
]
