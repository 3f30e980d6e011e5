"""Transitions between two categorical states, e.g. EMD/PMD status at baseline → at progression.

The cross-table keeps a fixed category order (so tables and Sankey figures of different cohorts
line up), the association is tested as in Table 1 (chi-square, or Fisher's exact test when any
expected count is < 5; see :mod:`carpet.stats.table1`), and the non-zero flows feed
:func:`carpet.report.sankey.sankey_figure`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from carpet.errors import InputError
from carpet.provenance import provenance
from carpet.stats._input import require_columns
from carpet.stats.table1 import TableTest, association_test


@dataclass
class Transitions:
    """Result of :func:`transitions`.

    Attributes
    ----------
    table : DataFrame
        Counts, rows = ``before`` categories, columns = ``after`` categories, both in the given order
        (the ``unknown`` category last when present); margins not included.
    test : TableTest
        Association between before and after on patients with both states known.
    flows : DataFrame
        ``source, target, n`` for every non-zero cell, in table order.
    provenance : dict
    """

    table: pd.DataFrame
    test: TableTest
    flows: pd.DataFrame
    provenance: dict = field(default_factory=dict)

    @property
    def row_percent(self) -> pd.DataFrame:
        """Percent of each ``before`` row going to each ``after`` column (rows sum to 100)."""
        totals = self.table.sum(axis=1).replace(0, np.nan)
        return self.table.div(totals, axis=0) * 100.0


def transitions(df: pd.DataFrame, before: str, after: str, order: Sequence, *,
                unknown: str | None = "Unknown", max_tables: int = 2_000_000, seed: int = 0) -> Transitions:
    """Cross-tabulate ``before`` → ``after`` states with a fixed category order.

    Parameters
    ----------
    df : DataFrame
        One row per patient.
    before, after : str
        Columns with the state at the two times (e.g. ``emd_pmd_baseline``, ``emd_pmd_progression``).
    order : sequence
        All categories, in display order; values outside it are an error.
    unknown : str or None
        Label for a missing state (shown as its own category, last; left out of the test). ``None``
        drops patients with either state missing.
    max_tables, seed : see :func:`carpet.stats.table1.fisher_test`.

    Returns
    -------
    Transitions
    """
    require_columns(df, [before, after])
    for col in (before, after):
        bad = sorted({str(v) for v in df[col].dropna() if v not in list(order)})
        if bad:
            raise InputError(f"values {bad} of column '{col}' are not in order={list(order)}",
                             where=f"column '{col}'", hint="add them to order=")
    data = df[[before, after]]
    categories = list(order)
    if unknown is None:
        data = data.dropna()
    elif data.isna().any().any():
        data = data.fillna(unknown)
        categories = categories + [unknown]
    table = pd.crosstab(pd.Categorical(data[before], categories=categories),
                        pd.Categorical(data[after], categories=categories), dropna=False)
    table = table.reindex(index=categories, columns=categories, fill_value=0)
    table.index.name, table.columns.name = before, after
    known = [c for c in categories if c != unknown or unknown in order]
    test = association_test(table.loc[known, known].to_numpy(), max_tables=max_tables, seed=seed)
    flows = (table.stack().rename("n").reset_index().set_axis(["source", "target", "n"], axis=1))
    flows = flows[flows["n"] > 0].reset_index(drop=True)
    prov = provenance(method="transitions", before=before, after=after, order=categories,
                      test=test.test, n=int(table.to_numpy().sum()))
    return Transitions(table=table, test=test, flows=flows, provenance=prov)
