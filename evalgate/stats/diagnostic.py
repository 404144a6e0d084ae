"""The judge as a diagnostic test: its error measured against people, and a rate corrected for it.

A judge that misses 20% of hallucinations makes the observed hallucination rate 20% too low.
Against reviewers' labels (the truth) the judge has a sensitivity (share of real
hallucinations it flags), a specificity (share of good answers it passes) and a chance-corrected
agreement (Cohen's kappa). Rogan & Gladen (1978, Am J Epidemiol 107:71-76) turn an observed
rate into the true one: ``(observed + Sp - 1) / (Se + Sp - 1)``.

The corrected rate's interval must carry two uncertainties: the canaries' (which answers were
drawn) and the labels' (Se and Sp are estimates, often from a few dozen hallucinations). It is
a percentile bootstrap over both at once: canaries resampled (paired with the baseline's when
comparing), labels resampled, the estimator recomputed. Why not the delta method: Se rests on
few positives, the estimator is a ratio whose denominator (Youden's J) can come near 0, and the
rate is clipped to [0, 1]: the linearisation is poor exactly where it matters, the bootstrap
needs no formula per estimator (rate, paired difference), and it splits the variance into its
two parts, which says how many more labels would decide a verdict.

Pure numerics: arrays in, frozen dataclasses out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from evalgate.stats import distributions as dist
from evalgate.stats.evidence import _check_alpha
from evalgate.stats.primitives import wilson_bounds

MIN_LABELS_PER_CLASS = 10
"""Fewer labelled hallucinations (or good answers) than this: Se (or Sp) is not estimated."""

MIN_YOUDEN = 0.05
"""A judge with Se + Sp - 1 below this is no better than a coin: nothing can be corrected."""

RESAMPLES = 2000


@dataclass(frozen=True)
class Accuracy:
    """One automatic verdict against people: 2x2 counts and what follows from them.

    Intervals are two-sided ``1 - 2*alpha`` (each side a one-sided ``1 - alpha`` bound), as
    everywhere in this package."""

    n: int
    true_pos: int
    false_neg: int
    false_pos: int
    true_neg: int
    sensitivity: float | None
    sensitivity_ci: tuple[float, float] | None
    specificity: float | None
    specificity_ci: tuple[float, float] | None
    kappa: float | None
    kappa_ci: tuple[float, float] | None
    agreement: float | None


def cohen_kappa(table: np.ndarray) -> tuple[float, float]:
    """Cohen's kappa of a square agreement table and its large-sample standard error.

    The standard error is Fleiss, Cohen & Everitt's (1969, Psychol Bull 72:323-327) non-null
    formula (the delta method on the multinomial cell shares). NaN when undefined (all ratings
    in one category: chance agreement is 1)."""
    t = np.asarray(table, dtype=float)
    n = t.sum()
    if t.ndim != 2 or t.shape[0] != t.shape[1] or n <= 0:
        raise ValueError("need a non-empty square table of counts")
    p = t / n
    rows, cols = p.sum(axis=1), p.sum(axis=0)
    po, pe = float(np.trace(p)), float(rows @ cols)
    if pe >= 1.0:
        return math.nan, math.nan
    kappa = (po - pe) / (1 - pe)
    k = t.shape[0]
    diag = sum(p[i, i] * (1 - (rows[i] + cols[i]) * (1 - kappa)) ** 2 for i in range(k))
    off = (1 - kappa) ** 2 * sum(p[i, j] * (cols[i] + rows[j]) ** 2
                                 for i in range(k) for j in range(k) if i != j)
    var = (diag + off - (kappa - pe * (1 - kappa)) ** 2) / (n * (1 - pe) ** 2)
    return kappa, math.sqrt(max(var, 0.0))


def accuracy(truth: np.ndarray, flagged: np.ndarray, alpha: float = 0.05) -> Accuracy:
    """Sensitivity and specificity (Wilson intervals) and Cohen's kappa (FCE interval) of
    `flagged` (the automatic verdict: True = hallucination) against `truth` (people's)."""
    _check_alpha(alpha)
    t = np.asarray(truth, dtype=bool)
    f = np.asarray(flagged, dtype=bool)
    if t.shape != f.shape or t.ndim != 1:
        raise ValueError("truth and flagged must be 1-D and of one length")
    tp, fn = int(np.sum(t & f)), int(np.sum(t & ~f))
    fp, tn = int(np.sum(~t & f)), int(np.sum(~t & ~f))
    pos, neg, n = tp + fn, fp + tn, t.size
    sens = tp / pos if pos else None
    spec = tn / neg if neg else None
    kappa = kappa_ci = None
    if n:
        k, se = cohen_kappa(np.array([[tp, fn], [fp, tn]]))
        if math.isfinite(k):
            z = float(dist.norm_isf(alpha))
            kappa, kappa_ci = k, (max(-1.0, k - z * se), min(1.0, k + z * se))
    return Accuracy(n=n, true_pos=tp, false_neg=fn, false_pos=fp, true_neg=tn,
                    sensitivity=sens,
                    sensitivity_ci=wilson_bounds(tp, pos, alpha) if pos else None,
                    specificity=spec,
                    specificity_ci=wilson_bounds(tn, neg, alpha) if neg else None,
                    kappa=kappa, kappa_ci=kappa_ci, agreement=(tp + tn) / n if n else None)


def rogan_gladen(observed: float, sensitivity: float, specificity: float,
                 clip: bool = True) -> float:
    """The true rate behind an observed one, given the judge's Se and Sp (Rogan-Gladen)."""
    youden = sensitivity + specificity - 1
    if youden <= 0:
        raise ValueError("the judge is no better than chance (Se + Sp <= 1): nothing to correct")
    value = (observed + specificity - 1) / youden
    return min(1.0, max(0.0, value)) if clip else value


@dataclass(frozen=True)
class CorrectedRate:
    """A hallucination rate (or a paired difference of two) corrected for the judge's error."""

    observed: float            # the judge's rate (or candidate - baseline)
    estimate: float            # corrected (Rogan-Gladen)
    ci_low: float              # percentile bootstrap over canaries and labels, 1 - 2*alpha
    ci_high: float
    candidate: float           # the candidate's corrected rate
    baseline: float | None     # the baseline's, when comparing
    sensitivity: float
    specificity: float
    n_canaries: int
    n_labels: int
    sd_canaries: float         # bootstrap sd from the canaries alone (labels held)
    sd_labels: float           # ... from the labels alone (canaries held)
    alpha: float

    def labels_to_decide(self, bound: float) -> int | None:
        """About how many more labels would put the one-sided bounds clear of `bound`: 0 when
        they already are, None when no number of labels would (the canaries' own noise is too
        large: add canaries). Variances add: the labels' part shrinks as 1/labels."""
        z = float(dist.norm_isf(self.alpha))
        room = (abs(self.estimate - bound) / z) ** 2 - self.sd_canaries ** 2
        if room <= 0:
            return None
        factor = self.sd_labels ** 2 / room
        return max(0, math.ceil(self.n_labels * (factor - 1)))


def _youden_parts(truth: np.ndarray, flagged: np.ndarray, idx: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(Se, Sp) per resample of the labels; NaN where a resample has no positive/negative."""
    t, f = truth[idx], flagged[idx]
    pos = t.sum(axis=1)
    neg = idx.shape[1] - pos
    with np.errstate(invalid="ignore", divide="ignore"):
        se = np.where(pos > 0, (t & f).sum(axis=1) / pos, np.nan)
        sp = np.where(neg > 0, (~t & ~f).sum(axis=1) / neg, np.nan)
    return se, sp


def corrected_rate(cand: np.ndarray, truth: np.ndarray, flagged: np.ndarray, *,
                   base: np.ndarray | None = None, alpha: float = 0.05,
                   resamples: int = RESAMPLES, seed: int = 0) -> CorrectedRate:
    """The judge-corrected hallucination rate of `cand` (one observed rate per canary), or with
    `base` (paired by canary) the corrected difference candidate - baseline.

    The labels (`truth`, `flagged`: people's verdict and the judge's on the same answers) give
    Se and Sp. Raises ValueError when they cannot: fewer than MIN_LABELS_PER_CLASS of either
    class, or a judge no better than chance."""
    _check_alpha(alpha)
    c = np.asarray(cand, dtype=float)
    t = np.asarray(truth, dtype=bool)
    f = np.asarray(flagged, dtype=bool)
    b = None if base is None else np.asarray(base, dtype=float)
    if c.ndim != 1 or c.size == 0 or (b is not None and b.shape != c.shape):
        raise ValueError("cand (and base) must be non-empty 1-D arrays paired by canary")
    pos, neg = int(t.sum()), int((~t).sum())
    if min(pos, neg) < MIN_LABELS_PER_CLASS:
        raise ValueError(f"{pos} labelled hallucination(s) and {neg} labelled other answer(s): "
                         f"need {MIN_LABELS_PER_CLASS} of each to measure the judge")
    se = float((t & f).sum() / pos)
    sp = float((~t & ~f).sum() / neg)
    if se + sp - 1 < MIN_YOUDEN:
        raise ValueError(f"the judge is no better than chance against the labels (sensitivity "
                         f"{se:.2f}, specificity {sp:.2f})")
    rng = np.random.default_rng(seed)
    n, m = c.size, t.size
    ci = rng.integers(0, n, size=(resamples, n))
    li = rng.integers(0, m, size=(resamples, m))
    se_b, sp_b = _youden_parts(t, f, li)
    obs_c = c[ci].mean(axis=1)
    obs_b = None if b is None else b[ci].mean(axis=1)

    def estimator(oc: np.ndarray | float, ob: np.ndarray | float | None, s: np.ndarray | float,
                  p: np.ndarray | float) -> np.ndarray:
        j = np.asarray(s) + np.asarray(p) - 1
        with np.errstate(invalid="ignore", divide="ignore"):
            j = np.where(j >= MIN_YOUDEN, j, np.nan)  # a resampled judge no better than chance
            rate_c = np.clip((np.asarray(oc) + p - 1) / j, 0, 1)
            if ob is None:
                return rate_c
            return rate_c - np.clip((np.asarray(ob) + p - 1) / j, 0, 1)

    mean_c, mean_b = float(c.mean()), None if b is None else float(b.mean())
    both = estimator(obs_c, obs_b, se_b, sp_b)
    labels_only = estimator(mean_c, mean_b, se_b, sp_b)
    canaries_only = estimator(obs_c, obs_b, se, sp)
    ok = np.isfinite(both)
    if ok.mean() < 1 - alpha:  # the labels too often cannot tell Se or Sp at all
        raise ValueError("the labels are too few to measure the judge in most resamples")
    low, high = np.quantile(both[ok], [alpha, 1 - alpha])
    rate_c = rogan_gladen(mean_c, se, sp)
    rate_b = None if mean_b is None else rogan_gladen(mean_b, se, sp)
    estimate = rate_c if rate_b is None else rate_c - rate_b
    observed = mean_c if mean_b is None else mean_c - mean_b
    return CorrectedRate(
        observed=observed, estimate=estimate, ci_low=float(low), ci_high=float(high),
        candidate=rate_c, baseline=rate_b, sensitivity=se, specificity=sp, n_canaries=n,
        n_labels=m, sd_canaries=float(np.std(canaries_only)),
        sd_labels=float(np.nanstd(labels_only)), alpha=alpha)


def labels_for_classes(positives: int, negatives: int, share: float) -> int:
    """About how many more random labels reach MIN_LABELS_PER_CLASS of both classes, when a
    labelled answer is a hallucination with probability `share`."""
    share = min(max(share, 1e-3), 1 - 1e-3)
    need_pos = max(0, MIN_LABELS_PER_CLASS - positives) / share
    need_neg = max(0, MIN_LABELS_PER_CLASS - negatives) / (1 - share)
    return math.ceil(max(need_pos, need_neg))
