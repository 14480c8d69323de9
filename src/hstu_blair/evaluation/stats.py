"""Statistics over repeated runs: mean +/- std across seeds, paired t-test, relative gain.

The paired t-test's p-value comes from ``scipy.stats.t`` when SciPy is installed (the ``reports``
extra) and otherwise from the exact formula below, p = I_{df/(df+t^2)}(df/2, 1/2), with the
regularised incomplete beta function evaluated by its continued fraction (Numerical Recipes §6.4).
Both agree to about 1e-10 (relative).
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def _finite_floats(values: Sequence[float], name: str) -> list[float]:
    out = [float(v) for v in values]
    if not out:
        raise ValueError(f"{name} is empty")
    bad = [v for v in out if not math.isfinite(v)]
    if bad:
        raise ValueError(f"{name} holds {len(bad)} non-finite values (first {bad[0]})")
    return out


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) of per-seed values; std is 0 for a single value.

    Raises:
        ValueError: ``values`` is empty or holds NaN/inf.
    """
    v = _finite_floats(values, "values")
    mean = math.fsum(v) / len(v)
    if len(v) == 1:
        return mean, 0.0
    return mean, math.sqrt(math.fsum((x - mean) ** 2 for x in v) / (len(v) - 1))


def _betainc_cf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz), valid for x < (a+1)/(a+b+2)."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),  # even step
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),  # odd step
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= c * d
        if abs(c * d - 1.0) < eps:
            return h
    raise ArithmeticError(f"incomplete beta continued fraction did not converge (a={a}, b={b}, x={x})")


def _betainc(a: float, b: float, x: float, one_minus_x: float) -> float:
    """Regularised incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1.

    ``1 - x`` is passed separately so that callers can supply it without rounding.
    """
    if x <= 0.0:
        return 0.0
    if one_minus_x <= 0.0:
        return 1.0
    log_front = a * math.log(x) + b * math.log(one_minus_x)
    log_front -= math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betainc_cf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betainc_cf(b, a, one_minus_x) / b


def t_two_sided_p(t: float, df: int) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom, by the exact formula (no SciPy)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if math.isinf(t):
        return 0.0
    return _betainc(df / 2.0, 0.5, df / (df + t * t), t * t / (df + t * t))


def paired_test(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided paired t-test of per-seed values ``a`` against ``b`` (seed i of ``a`` pairs with seed i of ``b``).

    Returns:
        The p-value of the null hypothesis "the mean difference a - b is 0". When every difference is
        the same, the test statistic is undefined (SciPy returns NaN): this returns 1.0 if that
        difference is 0 (no evidence of any difference) and 0.0 otherwise.

    Raises:
        ValueError: lengths differ, fewer than 2 pairs, or a value is NaN/inf.
    """
    x, y = _finite_floats(a, "a"), _finite_floats(b, "b")
    if len(x) != len(y):
        raise ValueError(f"paired test needs equal lengths, got {len(x)} and {len(y)}")
    if len(x) < 2:
        raise ValueError("paired test needs at least 2 pairs (seeds)")
    diff = [p - q for p, q in zip(x, y)]
    mean, std = mean_std(diff)
    if std == 0.0:
        return 1.0 if mean == 0.0 else 0.0
    t = mean / (std / math.sqrt(len(diff)))
    df = len(diff) - 1
    try:
        from scipy import stats as scipy_stats
    except ImportError:
        return t_two_sided_p(t, df)
    return float(2.0 * scipy_stats.t.sf(abs(t), df))


def relative_gain(new: float, base: float) -> float:
    """Relative improvement of ``new`` over ``base`` in percent: 100 * (new - base) / base.

    Raises:
        ValueError: ``base`` is 0.
    """
    if base == 0:
        raise ValueError("relative gain over a baseline of 0 is undefined")
    return 100.0 * (new - base) / base
