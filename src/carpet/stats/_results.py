"""Result types shared by the survival statistics (``carpet.stats``)."""

from __future__ import annotations

from dataclasses import dataclass


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

