"""Wide tables in the reports: split into parts that repeat the key column, never set below the floor size."""

import shutil

import numpy as np
import pandas as pd
import pytest

from carpet.report.html import Report
from carpet.report.pdf import MIN_FONT_PT, PdfReport, table_parts, text_width_pt
from carpet.report.wide_tables import column_groups, key_columns, part_caption, part_label


def _wide(n_times=13):
    rng = np.random.default_rng(0)
    cols = {"Group": ["line 1", "line 2", "line 3+"], "n": [78, 49, 99], "Events": [72, 43, 83],
            "Median, months (95% CI)": ["3.6 (2.3–5.4)", "4.2 (1.9–5.4)", "3.4 (2.6–5.3)"]}
    for k in range(n_times):
        s = rng.uniform(0.02, 0.9, 3)
        cols[f"S({3 * k})"] = [f"{v:.4f} ({v / 2:.4f}–{min(1, v * 1.5):.4f})" for v in s]
    return pd.DataFrame(cols)


def test_column_groups_repeat_the_key_column_and_fit():
    assert column_groups([50, 40, 40, 40], 200) == [[0, 1, 2, 3]]
    widths = [60.0] + [45.0] * 13
    parts = column_groups(widths, 300.0)
    assert len(parts) == 3
    assert all(p[0] == 0 and sum(widths[c] for c in p) <= 300.0 for p in parts)
    assert sorted(c for p in parts for c in p[1:]) == list(range(1, 14))  # every column once, in order
    assert column_groups([60.0, 400.0, 30.0], 300.0) == [[0, 1], [0, 2]]  # too wide alone: a part of its own
    # parts about equally wide, not a full part and a stub
    assert column_groups([10.0] * 7, 45.0) == [[0, 1, 2, 3], [0, 4, 5, 6]]
    # at most one more part keeps every cell on one line; two more do not pay
    assert len(column_groups([60.0] + [45.0] * 13, 300.0, natural=[60.0] + [60.0] * 13)) == 4
    assert len(column_groups([60.0] + [45.0] * 13, 300.0, natural=[60.0] + [80.0] * 13)) == 3
    assert part_label(1, 2, ["Group", "n", "S(6)"]) == "part 1 of 2: n to S(6)"
    assert part_caption("KM, PFS (km_pfs.csv)", 2, 2, ["Group", "S(9)", "S(12)"]) == \
        "KM, PFS — part 2 of 2: S(9) to S(12) (km_pfs.csv)"  # the caption still ends with its file
    assert part_label(2, 2, ["Group", "", ""]) == "part 2 of 2"  # no names to give
    assert key_columns(["Characteristic", "", "Overall", "EMD"]) == 2  # Table 1's level column labels rows too
    assert key_columns(["Group", "n"]) == 1 and part_label(1, 2, ["Characteristic", "", "Overall"]) == \
        "part 1 of 2: Overall"


def test_pdf_table_parts_keep_the_floor_size_and_fit_the_text_width():
    wide = _wide()
    header, rows = list(wide.columns), wide.to_numpy().tolist()
    parts = table_parts(header, rows, 523.0)
    assert len(parts) >= 2
    assert [c for cols, _ in parts for c in cols[1:]] == list(range(1, len(header)))
    for cols, layout in parts:
        assert cols[0] == 0 and layout.font_size >= MIN_FONT_PT
        assert sum(layout.widths) <= 523.0 + 1e-6
        for r, row in enumerate(layout.lines):
            for width, lines in zip(layout.widths, row):
                assert all(text_width_pt(ln, layout.font_size, bold=r == 0) <= width - 7.9 for ln in lines)
        # intervals wrap at their space at most, never inside a number
        body_words = {w for row in layout.lines[1:] for cell in row for ln in cell for w in ln.split()}
        assert body_words <= {w for r in rows for c in cols for w in str(r[c]).split()}
    prose = table_parts(["Term", "Note"], [["a", "a long note " * 60]], 523.0)  # wraps at 7 pt, never smaller
    assert len(prose) == 1 and prose[0][1].font_size == MIN_FONT_PT and len(prose[0][1].lines[1][1]) > 3
    narrow = table_parts(header[:6], [r[:6] for r in rows], 523.0)
    assert len(narrow) == 1 and narrow[0][1].font_size == 7.5  # a table that fits is left whole


def test_wide_table_in_the_pdf_is_never_below_the_floor(tmp_path):
    from _rendered import pdf_word_sizes

    if shutil.which("pdftotext") is None:
        pytest.skip("poppler-utils (pdftotext) not installed")
    path = PdfReport("Wide").table(_wide(), "PFS per salvage line").write(tmp_path / "wide.pdf")
    words = pdf_word_sizes(path)
    table_words = [w for _, w, *_ in words if w.startswith("(0.")]
    assert len(table_words) == 3 * 13  # every CI printed, none cut
    assert min(s for _, _, s, *_ in words) >= MIN_FONT_PT - 0.05
    assert sum("part" in w for _, w, *_ in words) >= 2
    assert all(x0 >= 35 and x1 <= 595.44 - 35 for *_, x0, x1 in words)  # within the margins


def test_wide_table_in_the_html_is_split_with_the_key_column_in_each_part():
    report = Report("Wide")
    report.table(_wide(), caption="PFS per salvage line")
    blocks = report.sections[0].blocks
    assert len(blocks) >= 2 and all(b["caption"].startswith("PFS per salvage line — part ") for b in blocks)
    assert all(b["html"].count("<td>line 2</td>") == 1 for b in blocks)
    assert sum(b["html"].count("<th>") for b in blocks) == len(_wide().columns) + len(blocks) - 1
    # an interval is one unbreakable word; the space before it is the only place a cell may wrap
    import re

    assert all("–" not in re.sub(r'<span class="nw">[^<]*</span>', "", b["html"]) for b in blocks)
    assert '<span class="nw">(0.' in blocks[-1]["html"]


def test_a_heading_moves_with_a_table_that_moves_whole_to_the_next_page(tmp_path):
    import subprocess

    if shutil.which("pdftotext") is None:
        pytest.skip("poppler-utils (pdftotext) not installed")
    table = pd.DataFrame({"Characteristic": [f"row {k}" for k in range(30)], "Overall": ["12 (34%)"] * 30})
    report = PdfReport("Keep").text("\n".join(f"line {k}" for k in range(40)))  # most of page 1
    path = report.section("Table 1: baseline characteristics").table(table, "Table 1").write(tmp_path / "k.pdf")
    pages = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True,
                           check=True).stdout.split("\f")
    heading_page = next(k for k, p in enumerate(pages) if "Table 1: baseline characteristics" in p)
    assert "row 0" in pages[heading_page] and "row 29" in pages[heading_page]  # heading, table: one page
    assert "line 39" in pages[heading_page - 1]
