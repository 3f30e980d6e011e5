"""CSV and XLSX outputs never hold a live formula (OWASP CSV injection), and numbers stay numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from carpet.io.tables import neutralise_cell, neutralise_formulas, write_csv
from carpet.stats.table1 import table1


@pytest.mark.parametrize("text", ["=1+1", '=HYPERLINK("http://x","y")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)",
                                  "\tx", "\rx", "-", "+"])
def test_formula_leading_text_gets_a_quote(text):
    assert neutralise_cell(text) == "'" + text


@pytest.mark.parametrize("value", ["-1.5", "+3", "-2e-3", ".5", "abc", "", "'=already", 5, -1.5, None, np.nan])
def test_plain_numbers_text_and_non_text_untouched(value):
    out = neutralise_cell(value)
    assert out is value or (out == value)


def test_write_csv_neutralises_text_columns_and_header_not_numbers(tmp_path):
    frame = pd.DataFrame({"id": ["=1+1", "P2"], "=evil": ["a", "b"], "x": [-1.0, 2.0]})
    write_csv(frame, tmp_path / "t.csv")
    back = pd.read_csv(tmp_path / "t.csv")
    assert back.columns.tolist() == ["id", "'=evil", "x"]
    assert back["id"].tolist() == ["'=1+1", "P2"] and back["x"].tolist() == [-1.0, 2.0]
    assert frame["id"].tolist() == ["=1+1", "P2"]  # the caller's frame is not changed
    assert neutralise_formulas(frame)["x"].dtype == float


def test_table1_to_excel_writes_text_not_a_formula(tmp_path):
    import openpyxl

    df = pd.DataFrame({"arm": ['=HYPERLINK("http://x","y")', "B"] * 10, "age": np.arange(20.0)})
    t = table1(df, by="arm", continuous=["age"])
    path = t.to_excel(tmp_path / "t1.xlsx")
    cells = [c for row in openpyxl.load_workbook(path)["Table 1"].iter_rows() for c in row]
    assert not [c.coordinate for c in cells if c.data_type == "f"]
    assert any(str(c.value).startswith("'=HYPERLINK") for c in cells)
