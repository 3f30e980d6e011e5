"""How carpet prints a number: one policy for every table, figure, caption and report (HTML, PDF, CSV text).

The policy
----------
p-values (journal style)
    ``< 0.001`` below 0.001; otherwise two significant digits (0.0076 → ``0.0076``, 0.0499 → ``0.050``,
    0.072 → ``0.072``, 0.83 → ``0.83``); 1 prints ``1.0``. In running text a p is written ``p = 0.072`` or
    ``p < 0.001`` (:func:`p_equals`) — never ``p = <0.001``.
Monte Carlo / permutation p-values
    with ``B`` resamples, an estimate of 0 (or at most ``1/B``) prints ``< 1/B`` in the same style
    (``< 0.001`` for B = 1000, ``< 1e-05`` never: ``< 0.00001``); others as p-values.
Estimates and confidence limits (HR, OR, medians, survival, differences)
    two significant digits of the *smallest-magnitude* number of the group (estimate, lower, upper) decide
    the decimals used for all three, with at least ``min_decimals`` (default 2 for ratios, 1 for times);
    decimals are added while two different numbers of the group would print alike, or while a limit would
    print as the null value (1 for a ratio) that it is not. So a per-unit HR ``1.0012 (0.99974–1.0026)``
    prints ``1.0012 (0.9997–1.0026)`` (its CI visibly contains 1), never ``1 (1–1)`` or ``1.00 (1.00–1.00)``.
    Whole counts print as integers. Only numbers ≥ 1e6 or < 1e-4 in magnitude use scientific notation.
Model fit statistics (AIC, BIC, log-likelihood, chi-square statistics)
    one decimal (1060.97 → ``1061.0``, -528.4 → ``-528.4``).
Cut-points
    as used for the split (:func:`cutpoint`): the stored float's shortest exact text (``122.5``, ``54.3``).
    An optimised cut-point is replaced by the shortest rounded number between its observed value and the
    next one, which splits the data identically (:func:`split_value`: 27.278634634401502 with the next value
    28.1 becomes ``28``); that number is the one used for the split, stored in results.json
    (``split_value``) and printed — the same text in the heading, the group names, the legend and the table.
Other numbers in tables
    whole numbers as integers, others to three significant digits (0.512, 54.3, 1235) (:func:`number`).
Missing values — each word has one meaning
    ``NA``: not available (missing data, or a quantity that cannot be computed, e.g. a CI with no events);
    ``NR``: not reached (a median or CI limit of a survival curve that never falls to 0.5);
    ``—``: not applicable (a cell with no meaning, e.g. the p of a one-group table).
    The same words appear in CSV text columns; numeric CSV columns leave missing cells empty (R reads NA).

Everything here is a pure function of numbers to text; nothing imports above :mod:`carpet.report`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["NA", "NR", "NOT_APPLICABLE", "is_missing", "p_value", "p_equals", "mc_p_value", "estimate",
           "estimate_ci", "fit_statistic", "cutpoint", "split_value", "number", "count", "percent", "time_value"]

NA = "NA"
NR = "NR"
NOT_APPLICABLE = "—"


def is_missing(value) -> bool:
    """True for None, NaN, pandas NA/NaT (anything that is not a finite number or a value)."""
    if value is None:
        return True
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return True
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass
    return isinstance(value, float) and math.isnan(value)


def _finite(value) -> float | None:
    if is_missing(value):
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _sig(value: float, digits: int) -> str:
    """``value`` to ``digits`` significant digits in plain (non-scientific) notation, trailing zeros kept."""
    if value == 0:
        return "0." + "0" * (digits - 1) if digits > 1 else "0"
    exponent = math.floor(math.log10(abs(value)))
    decimals = max(digits - 1 - exponent, 0)
    text = f"{value:.{decimals}f}"
    # rounding may carry into a new digit (0.0999 -> 0.100): recompute with the new exponent
    if decimals and len(text.replace("-", "").replace(".", "").lstrip("0")) > digits:
        text = f"{value:.{decimals - 1}f}"
    return text


def p_value(p, missing: str = NA) -> str:
    """A p-value in journal style: ``< 0.001``, else two significant digits; ``missing`` for None/NaN.

    >>> [p_value(x) for x in (0.0004, 0.0076, 0.0499, 0.072, 0.83, 1.0)]
    ['< 0.001', '0.0076', '0.050', '0.072', '0.83', '1.0']
    """
    v = _finite(p)
    if v is None:
        return missing
    if v < 0.001:
        return "< 0.001"
    return _sig(min(v, 1.0), 2)


def p_equals(p, missing: str = NA, n_resamples: int | None = None) -> str:
    """``p = 0.072`` / ``p < 0.001`` for running text and figure annotations (never ``p = <0.001``);
    with ``n_resamples`` the p is a Monte Carlo one (:func:`mc_p_value`)."""
    text = mc_p_value(p, n_resamples, missing) if n_resamples else p_value(p, missing=missing)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def mc_p_value(p, n_resamples: int | None, missing: str = NA) -> str:
    """A Monte Carlo / permutation p-value from ``n_resamples`` draws: at or below ``1/B`` prints ``< 1/B``
    (a p stored as ``1/B`` is the bound "no draw as extreme", e.g. :func:`carpet.stats.table1.fisher_test`).

    >>> mc_p_value(0.0, 100000), mc_p_value(0.0, 1000), mc_p_value(0.034, 1000)
    ('< 0.00001', '< 0.001', '0.034')
    """
    v = _finite(p)
    if v is None:
        return missing
    if n_resamples and v <= 1.0 / n_resamples:
        bound = 1.0 / n_resamples
        return "< " + f"{bound:.{max(0, -math.floor(math.log10(bound)))}f}".rstrip("0").rstrip(".")
    return p_value(v, missing=missing)


def _decimals_for(values: Iterable[float], min_decimals: int, digits: int = 2) -> int:
    """Decimals that give every value at least ``digits`` significant digits of its *spread*-free magnitude."""
    finite = [abs(v) for v in values if v is not None and v != 0]
    if not finite:
        return min_decimals
    smallest = min(finite)
    return max(min_decimals, digits - 1 - math.floor(math.log10(smallest)))


def _close_decimals(values: list[float], decimals: int, null: float | None = None, limit: int = 6) -> int:
    """More decimals while distinct numbers of a group print alike, or one prints as ``null`` it is not."""
    distinct = {v for v in values if v is not None}

    def ambiguous(d: int) -> bool:
        if len({f"{v:.{d}f}" for v in distinct}) < len(distinct):
            return True
        return null is not None and any(v != null and f"{v:.{d}f}" == f"{null:.{d}f}" for v in distinct)

    while decimals < limit and ambiguous(decimals):
        decimals += 1
    return decimals


def _plain(v: float, decimals: int) -> str:
    if v != 0 and (abs(v) >= 1e6 or abs(v) < 1e-4):
        return f"{v:.2e}"
    return f"{v:.{decimals}f}"


def estimate(value, min_decimals: int = 2, missing: str = NA) -> str:
    """One estimate (HR, OR, difference) by magnitude: two significant digits, at least ``min_decimals``.

    >>> estimate(1.0012), estimate(2.5), estimate(0.00456), estimate(None)
    ('1.00', '2.50', '0.0046', 'NA')
    """
    v = _finite(value)
    if v is None:
        return missing
    return _plain(v, _decimals_for([v], min_decimals))


def estimate_ci(value, lower, upper, min_decimals: int = 2, missing: str = NA, sep: str = "–",
                null: float | None = 1.0) -> str:
    """``estimate (lower–upper)`` with one number of decimals for all three, enough to tell them apart
    and to tell each from ``null`` (1 for ratios; pass 0 for differences, None for neither).

    >>> estimate_ci(1.0012, 0.99974, 1.0026)
    '1.0012 (0.9997–1.0026)'
    >>> estimate_ci(2.31, 1.2, 4.456)
    '2.31 (1.20–4.46)'
    """
    values = [_finite(v) for v in (value, lower, upper)]
    decimals = _decimals_for(values, min_decimals)
    decimals = _close_decimals(values, decimals, null)
    text = [missing if v is None else _plain(v, decimals) for v in values]
    return f"{text[0]} ({text[1]}{sep}{text[2]})"


def time_value(value, decimals: int = 1, missing: str = NR) -> str:
    """A survival time (median, CI limit): ``decimals`` places, ``NR`` (not reached) when absent.

    Use ``missing=NA`` where absence means "cannot be computed" rather than "not reached".
    """
    v = _finite(value)
    return missing if v is None else f"{v:.{decimals}f}"


def fit_statistic(value, missing: str = NA) -> str:
    """AIC, BIC, log-likelihood, chi-square statistics: one decimal (1060.97 → ``1061.0``)."""
    v = _finite(value)
    return missing if v is None else f"{v:.1f}"


def cutpoint(value, missing: str = NA) -> str:
    """A cut-point as used for the split: the shortest text that reads back as the same float (``repr``).

    An optimised cut-point is first replaced by the value the split really uses, :func:`split_value`.

    >>> cutpoint(122.5), cutpoint(54.3), cutpoint(321.98765432), cutpoint(28.0)
    ('122.5', '54.3', '321.98765432', '28')
    """
    v = _finite(value)
    if v is None:
        return missing
    return str(int(v)) if v.is_integer() else repr(v)


def split_value(value: float, data) -> float:
    """The shortest rounded number that splits ``data`` exactly as ``value`` does (``x > cut``).

    Every cut in ``[a, b)`` — ``a`` the largest observed value ≤ ``value``, ``b`` the smallest above it —
    gives the same two groups; this returns the number of that interval with the fewest decimals (0, 1, 2 …),
    the one nearest ``value`` among those. An optimised cut-point (maxstat's is an observed value, e.g.
    27.278634634401502) is then printed, stored and used for the split as that number, so the rule a reader
    applies ("MTV > 28 mL") gives the reported groups. (No library rounds within an interval; written here.)

    >>> split_value(27.278634634401502, [12.0, 27.278634634401502, 28.1])
    28.0
    >>> split_value(122.47, [100.0, 122.47, 123.0]), split_value(5.0, [4.0, 5.0, 6.5])
    (122.5, 5.0)
    """
    import numpy as np

    x = np.asarray(data, dtype=float)
    x = x[np.isfinite(x)]
    v = float(value)
    below, above = x[x <= v], x[x > v]
    if not len(below) or not len(above):
        return v  # nobody on one side: nothing to round within
    a, b = float(below.max()), float(above.min())
    split = x > v
    for decimals in range(0, 13):
        scale = 10.0 ** decimals
        first, last = math.ceil(a * scale), math.ceil(b * scale) - 1
        if first > last:
            continue
        k = min(max(round(v * scale), first), last)
        candidate = round(k / scale, decimals)
        if a <= candidate < b and np.array_equal(x > candidate, split):
            return candidate
    return v


def count(value, missing: str = NA) -> str:
    """A whole number (patients, events, lesions)."""
    v = _finite(value)
    return missing if v is None else str(int(round(v)))


def percent(numerator, denominator, decimals: int = 0, missing: str = NA) -> str:
    """``n (p%)``; ``0`` for an empty row (0 of 0), ``missing`` when the numerator is missing."""
    n, d = _finite(numerator), _finite(denominator)
    if n is None or (not d and n):
        return missing
    if not d:
        return "0"
    return f"{int(round(n))} ({100 * n / d:.{decimals}f}%)"


def number(value, missing: str = NA) -> str:
    """Any other number shown in a table cell: whole numbers as integers, others with three significant
    digits and at least one decimal below 1000, none above (0.512, 54.3, 1235)."""
    v = _finite(value)
    if v is None:
        return missing
    if float(v).is_integer():
        return str(int(v))
    if abs(v) >= 1000:
        return f"{v:.0f}"
    return _plain(v, _decimals_for([v], 1, digits=3))


def cell(value, float_format: str | None = None, missing: str = NA) -> str:
    """One table cell as text: missing as ``missing``, floats by :func:`number` (or ``float_format``),
    true/false as yes/no, anything else as ``str``."""
    if is_missing(value):
        return missing
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return "yes" if value else "no"
    if isinstance(value, float) or type(value).__name__.startswith("float"):
        return float_format.format(value) if float_format else number(value, missing=missing)
    return str(value)


def cells(df, float_format: str | None = None, missing: str = NA):
    """A DataFrame with every cell formatted by :func:`cell` (columns and index kept)."""
    return df.astype(object).map(lambda v: cell(v, float_format, missing))
