"""Tables out: CSV and XLSX that a spreadsheet opens without running anything in them.

Every CSV carpet writes goes through :func:`write_csv`, and :meth:`carpet.stats.Table1.to_excel`
through :func:`neutralise_formulas`. A text cell beginning with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return is read by Excel, LibreOffice and Google Sheets as a formula (CSV injection); as OWASP
recommends, such a cell gets a leading single quote, which the spreadsheet shows as text. Cells that are
plain numbers (``-1.5``, ``+3``, ``-2e-3``) are left alone, and numeric columns are never touched.
pandas and openpyxl have no such option, so it is written here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def neutralise_cell(value: Any) -> Any:
    """``value`` with a leading ``'`` when it is text a spreadsheet would run as a formula."""
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells (and column names) cannot start a formula."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col].dtype):
            out[col] = out[col].map(neutralise_cell)
    out.columns = [neutralise_cell(c) for c in out.columns]
    return out


def write_csv(frame: pd.DataFrame, path: str | Path | Any, **kwargs: Any) -> str | Path | Any:
    """Write ``frame`` as CSV (no index) with formula-leading text neutralised; returns ``path``."""
    neutralise_formulas(frame).to_csv(path, index=False, **kwargs)
    return path
