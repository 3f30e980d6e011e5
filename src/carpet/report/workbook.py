"""The report's tables as one XLSX workbook a reader opens in Excel: a README sheet, then a sheet per table.

Each sheet holds the table as the report shows it (labels, the report's number formats), not the CSV's raw
columns: a cell that prints as a plain number ("106", "0.045", "7.9") is stored as a number, with the
report's decimals as its number format, so it sorts and sums; intervals ("7.9 (6.4–9.6)"), "< 0.001", NA
and NR stay text. The header row is bold and frozen, columns are as wide as their text. Sheet names are the
CSV stems, cut to Excel's 31 characters and made unique. The README sheet says what each sheet is (its
caption and CSV file) and carries the provenance (carpet version, plan, inputs, simulated or not).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from carpet.io.tables import neutralise_cell
from carpet.report import format as fmt

SHEET_NAME_MAX = 31  # Excel's limit
MAX_COLUMN_WIDTH = 60  # characters; longer text wraps in the cell
_NUMBER = re.compile(r"-?\d+(?:\.(\d+))?")


@dataclass
class Sheet:
    """One table of the workbook: ``frame`` as shown (``shown=True``: cells formatted by the report's
    policy) or raw data (``shown=False``: written as the CSV holds it), its ``caption`` and ``csv`` file."""

    stem: str
    frame: pd.DataFrame
    caption: str = ""
    csv: str = ""
    shown: bool = True


def sheet_names(stems: Sequence[str], reserved: Sequence[str] = ("README",)) -> list[str]:
    """Excel sheet names for ``stems``: at most 31 characters, unique (case-insensitively, as Excel compares
    them), none equal to a ``reserved`` name; a cut name that repeats gets ``_2``, ``_3`` ..."""
    used = {r.lower() for r in reserved}
    names = []
    for stem in stems:
        clean = re.sub(r"[\[\]:*?/\\]", "_", str(stem)) or "table"
        name, k = clean[:SHEET_NAME_MAX], 2
        while name.lower() in used:
            suffix = f"_{k}"
            name, k = clean[:SHEET_NAME_MAX - len(suffix)] + suffix, k + 1
        used.add(name.lower())
        names.append(name)
    return names


def cell_value(text):
    """A shown cell as the workbook stores it: ``(value, number_format)``; a plain number becomes a number
    with as many decimals as it showed, anything else stays text (formula-safe)."""
    if isinstance(text, str):
        m = _NUMBER.fullmatch(text.strip())
        if m:
            decimals = len(m.group(1) or "")
            return (float(text) if decimals else int(text)), ("0." + "0" * decimals if decimals else "0")
        return neutralise_cell(text), None
    return text, None


def write_workbook(path: str | Path, sheets: Sequence[Sheet], about: Mapping[str, object],
                   provenance: Mapping | None = None) -> Path:
    """Write ``sheets`` to ``path`` (XLSX) after a README sheet of ``about`` (field → value), a list of the
    sheets and the ``provenance`` (as JSON lines); returns the path."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font
    from openpyxl.utils import get_column_letter

    path = Path(path)
    names = sheet_names([s.stem for s in sheets])
    wb = Workbook()
    readme = wb.active
    readme.title = "README"
    bold = Font(bold=True)
    rows: list[list] = [["field", "value"], *[[k, _text(v)] for k, v in about.items()], [],
                        ["sheet", "table (CSV file)"]]
    rows += [[name, f"{s.caption} ({s.csv})" if s.caption else s.csv] for name, s in zip(names, sheets)]
    if provenance:
        rows += [[], ["provenance", ""]]
        rows += [["", line] for line in json.dumps(provenance, indent=1, default=str).splitlines()]
    for row in rows:
        readme.append([neutralise_cell(v) for v in row])
    for cell in readme[1]:
        cell.font = bold
    readme.column_dimensions["A"].width = max(12, max(len(n) for n in names) + 2 if names else 12)
    readme.column_dimensions["B"].width = 100
    readme.freeze_panes = "A2"
    for name, sheet in zip(names, sheets):
        ws = wb.create_sheet(name)
        frame = fmt.cells(sheet.frame) if sheet.shown else sheet.frame
        ws.append([neutralise_cell(str(c)) for c in frame.columns])
        widths = [len(str(c)) for c in frame.columns]
        for r, values in enumerate(frame.itertuples(index=False), start=2):
            for c, raw in enumerate(values, start=1):
                value, number_format = cell_value(raw) if sheet.shown else (_plain(raw), None)
                cell = ws.cell(row=r, column=c, value=value)
                if number_format:
                    cell.number_format = number_format
                widths[c - 1] = max(widths[c - 1], len(str(raw)) if raw is not None else 0)
        for cell in ws[1]:
            cell.font = bold
            cell.alignment = Alignment(wrap_text=True, vertical="top")
        for c, width in enumerate(widths, start=1):
            ws.column_dimensions[get_column_letter(c)].width = min(MAX_COLUMN_WIDTH, width + 2)
        ws.freeze_panes = "A2"
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    return path


def _plain(value):
    """A raw CSV value as a workbook cell: missing as empty, numpy scalars as Python, text formula-safe."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if hasattr(value, "item"):
        value = value.item()
    return neutralise_cell(value) if isinstance(value, str) else value


def _text(value) -> object:
    return value if isinstance(value, (int, float, str)) else str(value)
