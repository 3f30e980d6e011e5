"""tables.xlsx: sheet names Excel accepts, shown numbers stored as numbers, text kept as text."""

import pandas as pd
from openpyxl import load_workbook

from carpet.report.workbook import Sheet, cell_value, sheet_names, write_workbook


def test_sheet_names_are_short_unique_and_leave_readme_alone():
    stems = ["compare_models_pfs_cindex_differences", "compare_models_pfs_cindex_differences_b", "README",
             "a/b:c"]
    names = sheet_names(stems)
    assert all(len(n) <= 31 for n in names)
    assert len({n.lower() for n in names} | {"readme"}) == len(names) + 1
    assert names[0] == "compare_models_pfs_cindex_diffe" and names[1] == "compare_models_pfs_cindex_dif_2"
    assert names[3] == "a_b_c"


def test_cells_shown_as_numbers_are_numbers_with_the_shown_decimals():
    assert cell_value("106") == (106, "0")
    assert cell_value("0.045") == (0.045, "0.000")
    assert cell_value("-1.50") == (-1.5, "0.00")
    for text in ("< 0.001", "7.9 (6.4–9.6)", "NA", "NR", "—", "43 (72%)"):
        assert cell_value(text) == (text, None)
    assert cell_value("=HYPERLINK(1)")[0] == "'=HYPERLINK(1)"  # never a formula


def test_workbook_round_trip(tmp_path):
    shown = pd.DataFrame({"Group": ["EMD", "No EMD"], "n": [37, 69], "p": [0.0021, None]})
    raw = pd.DataFrame({"time": [1.5, 2.0], "flag": [True, False]})
    path = write_workbook(tmp_path / "t.xlsx", [Sheet("km_os", shown, "KM", "km_os.csv"),
                                                Sheet("raw", raw, csv="raw.csv", shown=False)],
                          {"title": "T", "simulated": "FALSE"}, provenance={"carpet_version": "x"})
    wb = load_workbook(path)
    assert wb.sheetnames == ["README", "km_os", "raw"]
    ws = wb["km_os"]
    assert [c.value for c in ws[1]] == ["Group", "n", "p"] and ws.freeze_panes == "A2"
    from carpet.report import format as fmt

    printed = fmt.cells(shown).iloc[0, 2]  # as the report prints it
    assert [c.value for c in ws[2]] == ["EMD", 37, 0.0021]
    assert ws["C2"].number_format == "0." + "0" * len(printed.split(".")[1])
    assert ws["C3"].value == "NA"  # the report's missing mark
    assert [c.value for c in wb["raw"][2]] == [1.5, True]
    readme = [r for r in wb["README"].iter_rows(values_only=True)]
    assert ("km_os", "KM (km_os.csv)") in readme and any("carpet_version" in str(r[1]) for r in readme)
