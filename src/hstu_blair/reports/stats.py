"""Statistics over repeated runs: mean +/- std across seeds, paired t-test, relative gain.

The p-values come from ``scipy.stats`` (installed by the ``reports`` extra).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from scipy import stats as scipy_stats
from scipy.special import betainc


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


def t_two_sided_p(t: float, df: int) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom: I_x(df/2, 1/2) with
    x = df / (df + t^2) (``scipy.special.betainc``), through the complement I_{1-x}(1/2, df/2)
    when x is close to 1, so that p-values near 1 keep their precision."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if math.isinf(t):
        return 0.0
    a, t2 = df / 2.0, t * t
    x, one_minus_x = df / (df + t2), t2 / (df + t2)
    if x < (a + 1.0) / (a + 2.5):
        return float(betainc(a, 0.5, x))
    return float(1.0 - betainc(0.5, a, one_minus_x))


def paired_test(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided paired t-test of per-seed values ``a`` against ``b`` (seed i of ``a`` pairs with seed i of ``b``).

    Returns:
        The p-value of the null hypothesis "the mean difference a - b is 0"
        (``scipy.stats.ttest_rel``). When every difference is the same the statistic is undefined
        (SciPy returns NaN): this returns 1.0 if that difference is 0 (no evidence of any
        difference) and 0.0 otherwise.

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
    return float(scipy_stats.ttest_rel(x, y).pvalue)


def paired_by_seed(a: Mapping[int, float], b: Mapping[int, float]) -> float | None:
    """:func:`paired_test` of ``a`` against ``b`` (seed -> value) over the seeds both have; None
    when fewer than two are shared."""
    seeds = sorted(a.keys() & b.keys())
    if len(seeds) < 2:
        return None
    return paired_test([a[s] for s in seeds], [b[s] for s in seeds])


def relative_gain(new: float, base: float) -> float:
    """Relative improvement of ``new`` over ``base`` in percent: 100 * (new - base) / base.

    Raises:
        ValueError: ``base`` is 0.
    """
    if base == 0:
        raise ValueError("relative gain over a baseline of 0 is undefined")
    return 100.0 * (new - base) / base
