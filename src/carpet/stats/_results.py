"""Result types shared by the survival statistics (``carpet.stats``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TestResult:
    """A chi-square-type test: ``statistic`` on ``df`` degrees of freedom and its ``p_value``."""

    statistic: float
    df: int
    p_value: float

    # Not a pytest test class, although the name starts with "Test".
    __test__ = False


def na(value: float | None) -> str:
    """Format a possibly missing number the way R prints it (``NA`` for None/NaN)."""
    if value is None or value != value:
        return "NA"
    return f"{value:.6g}"


def format_p(p: float | None, missing: str = "") -> str:
    """A p-value as carpet prints it everywhere (tables, figures, reports).

    ``<0.001`` below 0.001, three decimals below 0.1 (so 0.0499 reads 0.050, never 0.05), two
    decimals otherwise; ``missing`` for None/NaN.
    """
    if p is None or not np.isfinite(p):
        return missing
    if p < 0.001:
        return "<0.001"
    return f"{p:.3f}" if p < 0.1 else f"{p:.2f}"
