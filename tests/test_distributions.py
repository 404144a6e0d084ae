"""evalgate.stats.distributions: every function cross-checked against scipy.stats /
scipy.optimize (which the runtime no longer imports) on grids with edge cases, exact binomial
answers, known roots, and a fresh interpreter proving the runtime modules never import
scipy.stats or scipy.optimize."""

from __future__ import annotations

import math
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
from scipy import optimize, stats

from evalgate.stats import distributions as dist

ALPHAS = [1e-300, 1e-12, 1e-6, 0.001, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.49]
NS = [1, 2, 3, 10, 59, 100, 1000, 100_000]


def _rel(a: float, b: float) -> float:
    if math.isnan(a) or math.isnan(b):
        return 0.0 if math.isnan(a) and math.isnan(b) else math.inf
    return 0.0 if a == b else abs(a - b) / abs(b)


# --------------------------------------------------------------------------------------------
# Normal, beta, t
# --------------------------------------------------------------------------------------------


def test_normal_functions_match_scipy_on_scalars_and_arrays():
    x = np.array([-40.0, -38.5, -8.0, -1.0, -1e-300, 0.0, 1e-300, 0.5, 1.6448536269514722, 8.0,
                  38.5, 40.0])
    q = np.array([*ALPHAS, 0.5, 0.8, 0.95, 1 - 1e-12])
    np.testing.assert_allclose(dist.norm_cdf(x), stats.norm.cdf(x), rtol=1e-14, atol=0)
    np.testing.assert_allclose(dist.norm_sf(x), stats.norm.sf(x), rtol=1e-14, atol=0)
    np.testing.assert_allclose(dist.norm_pdf(x), stats.norm.pdf(x), rtol=1e-14, atol=0)
    np.testing.assert_allclose(dist.norm_ppf(q), stats.norm.ppf(q), rtol=1e-14, atol=0)
    np.testing.assert_allclose(dist.norm_isf(q), stats.norm.isf(q), rtol=1e-14, atol=0)
    # the upper tail is computed directly, not as 1 - cdf (which keeps ~1 digit at x = 8)
    assert dist.norm_sf(8.0) == pytest.approx(6.22096057427178e-16, rel=1e-12)
    assert dist.norm_isf(1e-300) == pytest.approx(37.0471, rel=1e-5)
    for v in x:  # scalars in, scalars out, same values
        assert float(dist.norm_sf(float(v))) == float(stats.norm.sf(v))
        assert float(dist.norm_pdf(float(v))) == float(stats.norm.pdf(v))
    grid = np.linspace(-9.0, 3.0, 7).reshape(7, 1) - np.linspace(0, 1, 3)
    assert dist.norm_sf(grid).shape == (7, 3)


def test_beta_quantiles_match_scipy_at_clopper_pearson_arguments():
    # From alpha = 1e-12 up: at 1e-300 Boost's ibeta_inv gives up (nan) on both sides.
    worst = 0.0
    for n in NS:
        for x in sorted({1, 2, n // 3, n // 2, n - 1, n}):
            if not 1 <= x <= n:
                continue
            for a in ALPHAS[1:]:
                low = float(dist.beta_ppf(a, x, n - x + 1))
                worst = max(worst, _rel(low, float(stats.beta.ppf(a, x, n - x + 1))))
                if x < n:
                    high = float(dist.beta_isf(a, x + 1, n - x))
                    worst = max(worst, _rel(high, float(stats.beta.isf(a, x + 1, n - x))))
    assert worst <= 1e-13
    # a known answer: x = 0 of n, upper bound 1 - alpha^(1/n) (here via isf with x + 1 = 1)
    assert float(dist.beta_isf(0.05, 1, 59)) == pytest.approx(1 - 0.05 ** (1 / 59), rel=1e-13)


def test_t_functions_match_scipy_across_df():
    xs = np.array([-50.0, -3.0, -1e-8, 0.0, 0.7, 2.0, 12.0, 300.0])
    for df in [1, 2, 3, 5, 29, 30, 99, 1e4, 1e7]:
        np.testing.assert_allclose(dist.t_cdf(xs, df), stats.t.cdf(xs, df), rtol=1e-14, atol=0)
        np.testing.assert_allclose(dist.t_sf(xs, df), stats.t.sf(xs, df), rtol=1e-14, atol=0)
        for a in ALPHAS[1:]:
            assert _rel(float(dist.t_isf(a, df)), float(stats.t.isf(a, df))) <= 1e-14
    assert float(dist.t_isf(0.05, 1)) == pytest.approx(math.tan(math.pi * 0.45), rel=1e-12)


@pytest.mark.parametrize("n", [2, 3, 30, 1000])
def test_one_sample_t_pvalue_matches_scipy_ttest_1samp(n):
    rng = np.random.default_rng(n)
    for _ in range(5):
        d = rng.normal(0.01, 0.1, n)
        for mu0 in [0.0, 0.02, -0.05, float(d.mean())]:
            for alt in ["less", "greater"]:
                want = float(stats.ttest_1samp(d, mu0, alternative=alt).pvalue)
                assert _rel(dist.ttest_1samp_pvalue(d, mu0, alt), want) <= 1e-13
    with pytest.raises(ValueError):
        dist.ttest_1samp_pvalue(np.array([1.0, 2.0]), 0.0, "two-sided")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Binomial
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.5, 0.95, 0.05, 0.3])
def test_binomial_tails_match_scipy_including_out_of_range_k(p):
    for n in NS:
        if n <= 1000:
            k = np.arange(-2, n + 3, dtype=float)
        else:
            k = np.array([-1, 0, 1, 100, 4000, 49_000, 50_000, 50_500, 94_000, 95_000, 95_800,
                          n - 1, n, n + 1], dtype=float)
        k = np.concatenate([k, k[:5] + 0.5])  # non-integer k is floored, as scipy does
        np.testing.assert_allclose(dist.binom_cdf(k, n, p), stats.binom.cdf(k, n, p),
                                   rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(dist.binom_sf(k, n, p), stats.binom.sf(k, n, p),
                                   rtol=1e-12, atol=1e-300)
    assert dist.binom_sf(-1, 7, 0.5) == 1.0 and dist.binom_cdf(-1, 7, 0.5) == 0.0
    assert dist.binom_sf(7, 7, 0.5) == 0.0 and dist.binom_cdf(7, 7, 0.5) == 1.0


def test_binomial_tails_exact_for_a_fair_coin():
    for n in [1, 2, 7, 20, 61]:
        for k in range(n + 1):
            exact_sf = Fraction(sum(math.comb(n, j) for j in range(k + 1, n + 1)), 2 ** n)
            assert float(dist.binom_sf(k, n, 0.5)) == pytest.approx(float(exact_sf), rel=1e-13,
                                                                    abs=0)


def test_binomial_pmf_matches_exact_and_scipy_without_underflow():
    for n in [1, 2, 7, 20, 61, 200]:
        for k in range(n + 1):
            exact = math.comb(n, k) / 2 ** n
            assert _rel(dist.binom_pmf(k, n, 0.5), exact) <= 1e-13
    worst = 0.0
    for n in NS:
        for p in [0.5, 0.95, 0.05, 0.3]:
            ks = range(n + 1) if n <= 1000 else [0, 1, 2, 40_000, 50_000, 50_001, 94_000,
                                                 95_000, n - 1, n]
            for k in ks:
                want = float(stats.binom.pmf(k, n, p))
                if want > 1e-100:
                    worst = max(worst, _rel(dist.binom_pmf(k, n, p), want))
    assert worst <= 1e-12
    # 0.5**100000 underflows; the saddle-point form does not: C(n, n/2)/2^n ~ sqrt(2/(pi n))
    assert dist.binom_pmf(50_000, 100_000, 0.5) == pytest.approx(
        float(stats.binom.pmf(50_000, 100_000, 0.5)), rel=1e-13)
    assert dist.binom_pmf(-1, 5, 0.5) == dist.binom_pmf(6, 5, 0.5) == 0.0
    assert dist.binom_pmf(0, 5, 0.0) == 1.0 and dist.binom_pmf(5, 5, 1.0) == 1.0


def test_binomial_quantiles_equal_scipy():
    # No q = 0.5 at p = 0.5: there cdf((n-1)/2) == 0.5 exactly for odd n, and which side of the
    # tie a computed cdf lands on is a last-bit accident in scipy too (it answers 18 for
    # ppf(0.5, 35, 0.5), where the exact answer is 17). The p95 test never meets such ties.
    qs = [1e-12, 0.001, 0.01, 0.025, 0.05, 0.1, 0.2, 0.49, 0.51, 0.9]
    for n in [*range(1, 200), 1000, 5000, 20_000]:
        for p in [0.95, 0.5, 0.05]:
            for q in qs:
                assert dist.binom_ppf(q, n, p) == int(stats.binom.ppf(q, n, p)), (q, n, p)
                assert dist.binom_isf(q, n, p) == int(stats.binom.isf(q, n, p)), (q, n, p)
    assert dist.binom_ppf(0.0, 10, 0.5) == int(stats.binom.ppf(0.0, 10, 0.5)) == -1
    assert dist.binom_isf(1.0, 10, 0.5) == int(stats.binom.isf(1.0, 10, 0.5)) == -1
    assert dist.binom_ppf(1.0, 10, 0.5) == 10 and dist.binom_isf(0.0, 10, 0.5) == 10


# --------------------------------------------------------------------------------------------
# Quantile test
# --------------------------------------------------------------------------------------------


def _samples() -> list[tuple[np.ndarray, float]]:
    rng = np.random.default_rng(3)
    out: list[tuple[np.ndarray, float]] = []
    for n in [1, 2, 5, 20, 58, 59, 60, 100, 1000]:
        x = rng.lognormal(6.0, 0.4, n)
        out += [(x, float(np.quantile(x, 0.95))), (x, float(x.max())), (x, float(x.min())),
                (x, 0.0), (x, 1e9), (x, float(x[0]))]
        ties = np.round(x / 100.0) * 100.0  # many ties, some equal to the SLO
        out += [(ties, 400.0), (ties, float(np.quantile(ties, 0.95)))]
    out.append((np.full(80, 250.0), 250.0))  # every value equal to the SLO
    return out


@pytest.mark.parametrize("alternative", ["less", "greater", "two-sided"])
def test_quantile_test_pvalue_matches_scipy(alternative):
    for x, slo in _samples():
        for p in [0.95, 0.5, 0.99]:
            want = float(stats.quantile_test(x, q=slo, p=p, alternative=alternative).pvalue)
            got = dist.quantile_test_pvalue(x, slo, p, alternative)
            assert got == pytest.approx(want, rel=1e-13, abs=1e-300), (x.size, slo, p)


@pytest.mark.parametrize("alternative", ["less", "greater", "two-sided"])
def test_quantile_test_interval_matches_scipy_including_nan_and_inf_ends(alternative):
    ends_seen: set[str] = set()
    for x, slo in _samples():
        res = stats.quantile_test(x, q=slo, p=0.95, alternative=alternative)
        for alpha in [0.001, 0.01, 0.05, 0.1, 0.25]:
            conf = 1 - 2 * alpha
            ci = res.confidence_interval(confidence_level=conf)
            low, high = dist.quantile_test_ci(x, 0.95, conf, alternative)
            np.testing.assert_equal((low, high), (float(ci.low), float(ci.high)))
            ends_seen.update("nan" if math.isnan(v) else "inf" if math.isinf(v) else "finite"
                             for v in (low, high))
    assert "finite" in ends_seen and "nan" in ends_seen
    if alternative != "two-sided":
        assert "inf" in ends_seen
    with pytest.raises(ValueError):
        dist.quantile_test_ci(np.arange(5.0), 0.95, 1.0, alternative)


# --------------------------------------------------------------------------------------------
# Root finder
# --------------------------------------------------------------------------------------------


ROOT_CASES = [
    (lambda x: x ** 3 - 2 * x - 5, 2.0, 3.0, 2.0945514815423265),
    (lambda x: math.cos(x) - x, 0.0, 1.0, 0.7390851332151607),
    (lambda x: math.exp(x) - 10.0, -5.0, 10.0, math.log(10.0)),
    (lambda x: math.atan(x - 1e-3), -100.0, 1e4, 1e-3),
    (lambda x: float(stats.norm.sf(x)) - 0.025, -10.0, 40.0, 1.959963984540054),
    (lambda x: (x - 1.0) ** 3, 0.0, 5.0, 1.0),  # a triple root: slow, bisection-driven
]


@pytest.mark.parametrize("case", range(len(ROOT_CASES)))
@pytest.mark.parametrize("xtol", [2e-12, 1e-14, 1e-4])
def test_brentq_matches_scipy_and_known_roots(case, xtol):
    f, a, b, root = ROOT_CASES[case]
    got = dist.brentq(f, a, b, xtol=xtol, maxiter=500)
    want = optimize.brentq(f, a, b, xtol=xtol, maxiter=500)
    tol = xtol + 4 * np.finfo(float).eps * abs(root)
    assert abs(got - want) <= tol
    assert abs(got - root) <= max(tol, 1e-5 if case == 5 else 0.0)
    # reversed bracket, extra args, rtol: still scipy's answer
    got_r = dist.brentq(lambda x, s: s * f(x), b, a, args=(-1.0,), xtol=xtol, rtol=1e-12,
                        maxiter=500)
    want_r = optimize.brentq(lambda x, s: s * f(x), b, a, args=(-1.0,), xtol=xtol, rtol=1e-12,
                             maxiter=500)
    assert abs(got_r - want_r) <= xtol + 1e-12 * abs(root)


def test_brentq_errors_and_endpoint_roots():
    with pytest.raises(ValueError, match="different signs"):
        dist.brentq(lambda x: x * x + 1.0, -1.0, 1.0)
    with pytest.raises(ValueError, match="different signs"):
        dist.brentq(lambda x: x - 5.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="xtol"):
        dist.brentq(lambda x: x, -1.0, 1.0, xtol=0.0)
    with pytest.raises(ValueError, match="rtol"):
        dist.brentq(lambda x: x, -1.0, 1.0, rtol=1e-17)
    with pytest.raises(RuntimeError, match="converge"):
        dist.brentq(lambda x: x ** 3 - 2 * x - 5, 2.0, 3.0, xtol=1e-15, maxiter=2)
    # the triple root needs 123 iterations at xtol 2e-12 in scipy's brentq, so both give up at
    # the default 100 and both succeed with 123 (the step logic is the same)
    with pytest.raises(RuntimeError):
        optimize.brentq(lambda x: (x - 1.0) ** 3, 0.0, 5.0)
    with pytest.raises(RuntimeError):
        dist.brentq(lambda x: (x - 1.0) ** 3, 0.0, 5.0)
    with pytest.raises(RuntimeError):
        dist.brentq(lambda x: (x - 1.0) ** 3, 0.0, 5.0, maxiter=122)
    assert abs(dist.brentq(lambda x: (x - 1.0) ** 3, 0.0, 5.0, maxiter=123) - 1.0) < 1e-5
    assert dist.brentq(lambda x: x - 1.0, 1.0, 3.0) == 1.0
    assert dist.brentq(lambda x: x - 3.0, 1.0, 3.0) == 3.0


# --------------------------------------------------------------------------------------------
# Import cost
# --------------------------------------------------------------------------------------------


def test_runtime_modules_never_import_scipy_stats_or_optimize():
    code = ("import evalgate.stats.rates, evalgate.stats.latency, evalgate.stats.cost, "
            "evalgate.stats.family, evalgate.stats.sequential, "
            "evalgate.gate.sequential, evalgate.gate.guardrails, "
            "evalgate.pipeline.run, evalgate.plugin.session, evalgate.stats.distributions; "
            "import sys; "
            "print(sorted(m for m in sys.modules "
            "if m.startswith(('scipy.stats', 'scipy.optimize'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout
