"""Machine checks of a carpet report as a reader sees it (stdlib HTML parsing only).

Each packaged plan's HTML report is read back table by table; two checks stand in for a reader looking at it
(used by tests/test_report_numbers.py, test_analyze.py and the demo test):

1. Numbers: every number in every value cell of every HTML table is found in results.json — in ONE record
   (a dict of the table's analysis, with what it holds up to two levels down) that explains the whole row — as
   that record's number printed with the cell's decimals (``f"{x:.{d}f}"``, the formatting policy's rounding),
   a ``< b`` bound by a number below it. Strings in results.json are not sources (they are what was printed).
   Figures: every number of a legend or text (numbers at risk, Sankey counts and row %, flowchart boxes) is a
   number of the figure's analysis (results.json keeps each figure's texts under ``figure_checks``).
2. Labels: no heading, table header, row label, figure title, axis label or legend entry shows a snake_case
   name (a column, ``mtv_ml``, or a results key, ``hr_lower``), a one-word column name alone as it is
   (``stage``), one of the data's column words upper-cased as a code a reader does not know ("METCR"), or a
   column word gluing letters to digits ("day30"). The column names are the plan's data's (results.json).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path


@dataclass
class ShownTable:
    heading: str                      # the section heading (h2) the table is under
    caption: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)

    @property
    def csv(self) -> str | None:
        """The CSV file the caption names ("... (km_pfs.csv)"), i.e. the analysis the table belongs to."""
        found = re.findall(r"\(([\w.-]+\.csv)\)", self.caption)  # a wide table's parts: "(x.csv) — part 1 of 2"
        return found[-1] if found else None


class _Parser(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.headings: list[str] = []
        self.tables: list[ShownTable] = []
        self._text: list[str] | None = None
        self._what = None
        self._caption = ""
        self._row: list[str] | None = None
        self._in_head = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("h1", "h2", "h3") or (tag == "div" and "caption" in (attrs.get("class") or "").split()):
            self._what, self._text = tag, []
        elif tag == "table":
            self.tables.append(ShownTable(self.headings[-1] if self.headings else "", self._caption, []))
            self._caption = ""
        elif tag == "thead":
            self._in_head = True
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._what, self._text = tag, []

    def handle_endtag(self, tag):
        if self._text is not None and tag == self._what:
            text = " ".join("".join(self._text).split())
            if tag in ("h1", "h2", "h3"):
                self.headings.append(text)
            elif tag == "div":
                self._caption = text
            elif self._row is not None:
                self._row.append(text)
            self._text, self._what = None, None
        elif tag == "thead":
            self._in_head = False
        elif tag == "tr" and self._row is not None and self.tables:
            table = self.tables[-1]
            if self._in_head:
                table.header = self._row
            else:
                table.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)


def read_report(path: Path) -> tuple[list[str], list[ShownTable]]:
    """The headings and the tables of an HTML report, in page order."""
    parser = _Parser()
    parser.feed(Path(path).read_text(encoding="utf-8"))
    return parser.headings, parser.tables


#: abbreviations a haematology reader knows; any other upper-cased column word is a code left unlabelled
READER_ABBREVIATIONS = {"MTV", "TLG", "SUV", "EMD", "PMD", "IPI", "LDH", "ECOG", "HR", "OR", "CI", "PFS", "PFS2",
                        "OS", "ISS", "CRP", "FLC", "IMWG", "PET", "CT", "CR", "PR", "VGPR", "CAR", "AUC", "AIC", "BIC",
                        "BCMA", "CNS", "ORR", "TCE", "IQR", "SD", "SE", "NA", "NR", "BM", "IMPETUS", "IMPeTUs", "LBCL",
                        "GPRC5D", "FCRH5", "ASCT", "TCR", "MM", "DLBCL", "ULN", "ANC", "HB", "IG", "IGG", "IGA", "IGD"}


NUMBER = re.compile(r"(?<![\w.])(<\s*)?(-?\d+(?:\.\d+)?(?:e[-+]\d+)?)")
MISSING_WORDS = ("NA", "NR", "—")


def _is_value_text(text: str) -> bool:
    """A cell printed from numbers: digits and the policy's punctuation, no words besides NA / NR."""
    for word in MISSING_WORDS:
        text = text.replace(word, "")
    return not re.search(r"[A-Za-z]", re.sub(r"\d(e[-+]\d)", r"\1", text).replace("e-", "").replace("e+", ""))


def _leaves(obj, depth: int = 2) -> list[float]:
    """Numbers of a record and of what it holds up to ``depth`` levels down (lists do not count as a level)."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return []
    if isinstance(obj, (int, float)):
        return [float(obj)]
    if isinstance(obj, list):
        return [v for item in obj for v in _leaves(item, depth)]
    if isinstance(obj, dict) and depth > 0:
        return [v for item in obj.values() for v in _leaves(item, depth - 1)]
    return []


def _records(obj) -> list[dict]:
    """Every dict in a results subtree (the candidate sources of a row)."""
    if isinstance(obj, dict):
        return [obj] + [r for v in obj.values() for r in _records(v)]
    if isinstance(obj, list):
        return [r for v in obj for r in _records(v)]
    return []


def _explains(token: tuple[str, str], leaves: list[float]) -> bool:
    bound, text = token
    if bound:  # "< 0.001": a number below the bound (a Monte Carlo p stored as 1/B: at the bound)
        return any(0 <= x <= float(text) for x in leaves)
    if "e" in text:
        return any(f"{x:.2e}" == text for x in leaves)
    decimals = len(text.partition(".")[2])
    return any(f"{x:.{decimals}f}" == text for x in leaves)


def _value_columns(table) -> list[int]:
    """Columns printed from numbers: every cell a value text, the header not empty (Table 1's level column)."""
    return [j for j, head in enumerate(table.header)
            if head and all(_is_value_text(row[j]) for row in table.rows if j < len(row))]


def unexplained_numbers(doc: dict, html: Path) -> tuple[list[str], int]:
    """Numbers in the report's tables without a source in results.json; and how many were found."""
    by_csv = {f: res for res in doc["analyses"].values() for f in res.get("files", []) if f.endswith(".csv")}
    _, tables = read_report(html)
    problems, found = [], 0
    for table in tables:
        res = by_csv.get(table.csv)
        if res is None:
            if table.csv is not None or not table.caption.startswith(("Provenance", "Notes")):
                problems.append(f"table {table.caption!r}: no analysis of results.json lists its file")
            continue
        leaves = [(r, _leaves(r)) for r in _records(res)]
        columns = _value_columns(table)
        for row in table.rows:
            tokens = [m.groups(default="") for j in columns if j < len(row) for m in NUMBER.finditer(row[j])]
            if not tokens:
                continue
            if any(all(_explains(t, values) for t in tokens) for _, values in leaves):
                found += len(tokens)
                continue
            missing = [t[1] for t in tokens if not any(_explains(t, values) for _, values in leaves)]
            problems.append(f"{table.csv} row {row[:2]}: " + (f"no source for {missing}" if missing else
                                                               "no one record holds the whole row"))
    return problems, found


def unexplained_figure_numbers(doc: dict) -> tuple[list[str], int]:
    """Numbers in the figures' legends and texts (numbers at risk, medians, p, Sankey flow counts and row %,
    flowchart boxes) without a source among the numbers of the figure's analysis in results.json."""
    by_png = {f: res for res in doc["analyses"].values() for f in res.get("files", []) if f.endswith(".png")}
    problems, found = [], 0
    for stem, check in doc["figure_checks"].items():
        res = by_png.get(f"figures/{stem}.png")
        if res is None:
            problems.append(f"figure {stem}: no analysis of results.json lists it")
            continue
        leaves = _leaves(res, depth=99)
        for kind in ("legend", "text"):
            for text in check.get("texts", {}).get(kind, []):
                cited = re.sub(r"\b[A-Z][a-z]+ (19|20)\d\d\b", "", text)  # "(Lau 1992)" cites, it does not count
                tokens = [m.groups(default="") for m in NUMBER.finditer(cited)]
                missing = [t[1] for t in tokens if not _explains(t, leaves)]
                found += len(tokens) - len(missing)
                if missing:
                    problems.append(f"figure {stem} {kind} {text!r}: no source for {missing}")
    return problems, found


def _raw_hits(text: str, columns: set[str]) -> list[str]:
    """What in ``text`` is a raw name: a snake_case identifier (a column or a results key, ``mtv_ml``,
    ``hr_lower``), a one-word column name shown alone as it is (``stage``), a column word upper-cased as a
    code a reader does not know (``METCR``), or a column word gluing letters to digits (``day30``)."""
    hits = [f"identifier {w}" for w in re.findall(r"(?<![\w-])[A-Za-z][A-Za-z0-9]*_\w+", text)]
    for column in sorted(columns):
        words = [w for w in column.split("_") if w]
        if len(words) == 1 and text == column:
            hits.append(column)
        for word in words:
            code, glued = word.upper(), re.fullmatch(r"[A-Za-z]+\d+", word) is not None
            if code in READER_ABBREVIATIONS or len(word) < 2 or word.isdigit():
                continue
            if re.search(rf"(?<![\w-]){re.escape(code)}(?![\w-])", text) or (
                    glued and re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text, flags=re.IGNORECASE)):
                hits.append(f"{column} ({word})")
    return sorted(set(hits))


def raw_labels(folder: Path) -> list[str]:
    """Every heading, header, row label and figure text of the report in ``folder`` that shows a raw name."""
    doc = json.loads((folder / "results.json").read_text())
    columns = set(doc.get("columns") or [])
    assert columns, "results.json lists the data's columns"
    headings, tables = read_report(folder / "report.html")
    shown: list[tuple[str, str]] = [("heading", h) for h in headings]
    for table in tables:
        shown += [(f"header of {table.csv}", h) for h in table.header]
        value = set(_value_columns(table))
        shown += [(f"row label of {table.csv}", row[j]) for row in table.rows for j in range(len(row))
                  if j not in value and row[j]]
    for stem, check in doc["figure_checks"].items():
        shown += [(f"figure {stem} {kind}", text) for kind, texts in check.get("texts", {}).items() for text in texts]
    return [f"{where}: {text!r} shows {hit}" for where, text in shown for hit in _raw_hits(text, columns)]
