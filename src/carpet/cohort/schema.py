"""Clinical table schemas and their strict reader.

Four tables enter carpet's clinical side (CSV or Excel, one header row):

``patients``     one row per patient (:data:`PATIENTS`);
``assessments``  long format, one row per patient, date and parameter (:data:`ASSESSMENTS`);
``therapies``    one row per line of therapy (:data:`THERAPIES`);
``imaging``      one row per PET/CT study, from ``carpet quantify``/``batch`` (:data:`IMAGING`).

Reading is strict: dates must be ISO ``YYYY-MM-DD`` (or real Excel dates), numbers must be numbers, units must be
in the conversion table :data:`UNIT_CONVERSIONS`, ids must be unique. Every problem of a file is collected and
reported together in one :class:`carpet.errors.InputError`; each names the file, the row as a spreadsheet shows it
(header = row 1), the column, the value and what was expected. Units are converted once, here, to the internal
units of ``spec/clinical-rules.md`` §0.2.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from carpet.errors import InputError

__all__ = [
    "Column", "TableSchema", "Problem", "PATIENTS", "ASSESSMENTS", "THERAPIES", "IMAGING", "PARAMETERS",
    "UNIT_CONVERSIONS", "read_table", "read_patients", "read_assessments", "read_therapies", "read_imaging",
    "validate_frame", "describe", "load_table", "SEGMENTATION_METHODS", "METHOD_MEASURES", "method_column",
    "method_of_column",
]

#: Excel's day zero for serial dates (the 1900 leap-year bug makes it 1899-12-30).
_EXCEL_EPOCH = pd.Timestamp("1899-12-30")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
#: Plausible calendar years of clinical dates (also keeps every date inside pandas' datetime range).
_YEARS = (1900, 2199)
_EXCEL_SERIAL_MAX = (pd.Timestamp(f"{_YEARS[1]}-12-31") - _EXCEL_EPOCH).days
_TRUE = {"true", "yes", "y", "1", "1.0", "positive", "pos"}
_FALSE = {"false", "no", "n", "0", "0.0", "negative", "neg"}
#: At most this many problems are spelled out in one error message (all are kept on ``error.problems``).
MAX_PROBLEMS_SHOWN = 50


@dataclass(frozen=True)
class Column:
    """One column of a table schema.

    ``kind`` is one of ``id`` (non-empty text), ``text``, ``date``, ``number``, ``int``, ``bool``, ``choice``.
    ``not_before`` names another date column of the same row that this date may not precede (an event
    before the infusion, say). Units live in the column name (``hb_g_dl``).
    """

    name: str
    kind: str
    required: bool = False
    doc: str = ""
    choices: tuple[str, ...] = ()
    min_value: float | None = None
    max_value: float | None = None
    not_before: str | None = None


@dataclass(frozen=True)
class TableSchema:
    """A named table: its columns, the columns whose values must be unique together, and unit aliases.

    ``unit_aliases`` maps a column written in another unit to ``(column, factor)``: a ``platelets_g_l`` column is
    read, multiplied by 1000 and stored as ``platelets_per_ul``.
    """

    name: str
    columns: tuple[Column, ...]
    unique: tuple[str, ...] = ()
    doc: str = ""
    unit_aliases: tuple[tuple[str, str, float], ...] = ()

    def requiring(self, *names: str) -> "TableSchema":
        """The same schema with ``names`` made required (e.g. what one command needs)."""
        cols = tuple(Column(**{**c.__dict__, "required": c.required or c.name in names}) for c in self.columns)
        return TableSchema(self.name, cols, self.unique, self.doc, self.unit_aliases)


@dataclass(frozen=True)
class Problem:
    """One validation problem: where (1-based spreadsheet row, header = 1), what was found, what was expected."""

    row: int | None
    column: str | None
    value: Any
    expected: str

    def __str__(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column '{self.column}'")
        value = "" if self.value is None else f"value {self.value!r}: "
        return f"{', '.join(where)}: {value}{self.expected}"


def _flag(name: str, doc: str) -> Column:
    return Column(name, "bool", doc=doc)


def _num(name: str, doc: str, lo: float | None = 0.0, hi: float | None = None) -> Column:
    return Column(name, "number", doc=doc, min_value=lo, max_value=hi)


_CYTOGENETICS = tuple(
    _flag(n, f"{d} by FISH (true/false; empty = not tested)") for n, d in [
        ("del17p", "del(17p)/monosomy 17"), ("t4_14", "t(4;14)"), ("t14_16", "t(14;16)"), ("t14_20", "t(14;20)"),
        ("gain1q", "1q gain (3 copies)"), ("amp1q", "1q amplification (>= 4 copies)"),
        ("del1p32", "del(1p32), monoallelic"), ("del1p32_biallelic", "del(1p32), biallelic"),
        ("tp53_mutation", "TP53 mutation"), ("non_hyperdiploid", "non-hyperdiploid karyotype"),
        ("t11_14", "t(11;14)"),
        ("high_risk_gep", "high-risk gene-expression profile"),
    ]) + (
    _num("del17p_pct", "del(17p) positive nuclei (%) as the lab reported", 0, 100),
)

PATIENTS = TableSchema(
    "patients",
    (
        Column("patient_id", "id", required=True, doc="pseudonymous study id (never a name or MRN)"),
        Column("infusion_date", "date", required=True, doc="CAR T infusion, the index date"),
        Column("sex", "choice", choices=("M", "F"), doc="M or F"),
        Column("birth_year", "int", min_value=1900, max_value=2100, doc="year of birth"),
        _num("age_years", "age at infusion (years)", 0, 130),
        Column("disease", "choice", choices=("MM", "LBCL", "other"), doc="MM, LBCL or other"),
        Column("product", "text", doc="CAR T product, e.g. ide-cel"),
        Column("heavy_chain", "text", doc="IgG, IgA, light_chain_only, ..."),
        Column("involved_light_chain", "choice", choices=("kappa", "lambda"), doc="kappa or lambda"),
        Column("death_date", "date", not_before="infusion_date", doc="date of death"),
        Column("last_followup_date", "date", not_before="infusion_date", doc="last contact alive"),
        Column("ecog", "int", min_value=0, max_value=5, doc="ECOG performance status 0-5"),
        Column("ann_arbor_stage", "int", min_value=1, max_value=4, doc="Ann Arbor stage 1-4"),
        Column("n_extranodal_sites", "int", min_value=0, doc="extranodal sites (Lugano)"),
        _num("ldh_u_l", "LDH (U/L)"), _num("ldh_uln_u_l", "LDH upper limit of normal of that lab (U/L)"),
        _num("platelets_per_ul", "platelets (/uL)"), _num("anc_per_ul", "neutrophils (/uL)"),
        _num("hb_g_dl", "haemoglobin (g/dL)"), _num("crp_mg_dl", "CRP (mg/dL)"),
        _num("ferritin_ng_ml", "ferritin (ng/mL)"), _num("b2m_mg_l", "beta-2 microglobulin (mg/L)"),
        _num("albumin_g_dl", "albumin (g/dL)"), _num("creatinine_mg_dl", "creatinine (mg/dL)"),
        *_CYTOGENETICS,
        _flag("emd_baseline", "extramedullary disease at infusion"),
        _flag("pmd_baseline", "paramedullary disease at infusion"),
        _flag("emd_progression", "extramedullary disease at progression"),
        _flag("pmd_progression", "paramedullary disease at progression"),
        _flag("new_bone_progression", "new bone lesion at progression"),
    ),
    unique=("patient_id",),
    doc="One row per patient. Baseline labs are those before lymphodepletion; units are in the column names.",
    unit_aliases=(
        ("platelets_g_l", "platelets_per_ul", 1000.0), ("anc_g_l", "anc_per_ul", 1000.0),
        ("hb_g_l", "hb_g_dl", 0.1), ("crp_mg_l", "crp_mg_dl", 0.1), ("ferritin_ug_l", "ferritin_ng_ml", 1.0),
        ("b2m_mg_dl", "b2m_mg_l", 10.0), ("albumin_g_l", "albumin_g_dl", 0.1),
        ("creatinine_umol_l", "creatinine_mg_dl", 1 / 88.42),
    ),
)

ASSESSMENTS = TableSchema(
    "assessments",
    (
        Column("patient_id", "id", required=True, doc="as in the patients table"),
        Column("date", "date", required=True, doc="sample date"),
        Column("parameter", "id", required=True, doc="one of PARAMETERS"),
        Column("value", "text", required=True, doc="number, or positive/negative for immunofixation"),
        Column("unit", "text", doc="unit as the lab wrote it; see UNIT_CONVERSIONS"),
    ),
    doc="Long format: one row per patient, date and parameter.",
)

THERAPIES = TableSchema(
    "therapies",
    (
        Column("patient_id", "id", required=True),
        Column("line", "int", required=True, min_value=0, doc="line number (CAR T itself may be any number)"),
        Column("start_date", "date", required=True),
        Column("end_date", "date", not_before="start_date"),
        Column("regimen", "text", doc="drugs as written, e.g. 'teclistamab' or 'KPd'"),
        Column("regimen_class", "text", doc="optional class; derived from the regimen when empty"),
        Column("best_response", "choice", choices=("sCR", "CR", "VGPR", "PR", "MR", "SD", "PD", "NE")),
        Column("progression_date", "date", not_before="start_date", doc="progression on this line"),
        _flag("clinical_trial", "given within a clinical trial"),
    ),
    unique=("patient_id", "line"),
    doc="One row per line of therapy.",
)

#: carpet.segment.METHODS, written out: importing the segmentation module (scipy.signal) would cost every
#: clinical command a second at start-up (a test keeps the two equal).
SEGMENTATION_METHODS = ("suv4", "suv2.5", "pct41", "a50p", "percist", "liver3sd", "mv2", "mv3")
#: Study measures imaging.csv carries for each segmentation method, as ``<measure>_<method>``
#: (:func:`method_column`): kind and meaning.
METHOD_MEASURES = {"n_lesions": ("int", "lesions found"), "mtv_ml": ("number", "metabolic tumour volume (mL)"),
                   "tlg": ("number", "total lesion glycolysis (mL*SUV)"), "suv_max": ("number", "SUVmax"),
                   "suv_peak": ("number", "SUVpeak of the lesion with the highest SUVpeak (IBSI 1 cm3 peak)")}
#: Deauville scores as imaging.csv writes them: 1-5, X (uptake unrelated to disease) or NE (not evaluable).
_DS = ("1", "2", "3", "4", "5", "X", "NE")
_METCR_RULES = ("zamagni2021", "imwg2016_imaging", "lugano_style")


def method_column(measure: str, method: str) -> str:
    """imaging.csv column of a study measure made with one segmentation method: ``mtv_ml_suv4``,
    ``tlg_pct41``, ``suv_max_suv2_5`` (a '.' of the method name is written '_', so R and spreadsheets read the
    name as it is); ``threshold_<method>`` holds the threshold the method used."""
    return f"{measure}_{method.replace('.', '_')}"


def method_of_column(name: str) -> str | None:
    """The segmentation method a per-method column was made with (``mtv_ml_pct41`` or, after an imaging window,
    ``mtv_ml_pct41_baseline`` → ``'pct41'``); None for any other column."""
    for method in SEGMENTATION_METHODS:
        for measure in METHOD_MEASURES:
            column = method_column(measure, method)
            if name == column or name.startswith(column + "_"):
                return method
    return None


def _per_method_columns() -> tuple[Column, ...]:
    columns = []
    for method in SEGMENTATION_METHODS:
        for measure, (kind, doc) in METHOD_MEASURES.items():
            columns.append(Column(method_column(measure, method), kind, min_value=0, doc=f"{doc}, {method}"))
        columns.append(Column(method_column("threshold", method), "text",
                              doc=f"threshold of {method} in this study (SUV, or the per-lesion rule)"))
    return tuple(columns)


IMAGING = TableSchema(
    "imaging",
    (
        Column("study_id", "id", required=True),
        Column("patient_id", "id", doc="links the study to the patients table (batch --studies adds it)"),
        Column("study_date", "date"),
        Column("status", "choice", choices=("done", "failed"), doc="done, or failed (see errors.csv)"),
        Column("method", "text", doc="segmentation method of carpet quantify"),
        _num("mtv_ml", "metabolic tumour volume (mL)"), _num("tlg", "total lesion glycolysis (mL*SUV)"),
        _num("suv_max", "SUVmax"), _num("dmax_mm", "largest distance between lesions (mm)"),
        Column("n_lesions", "int", min_value=0), Column("n_bone", "int", min_value=0),
        Column("n_paramedullary", "int", min_value=0), Column("n_extramedullary", "int", min_value=0),
        *_per_method_columns(),
        Column("deauville_ds", "choice", choices=_DS, doc="study Deauville score (highest lesion score)"),
        _num("marrow_suv_median", "median SUV of the marrow (diffuse uptake)"),
        Column("marrow_ds", "choice", choices=_DS, doc="Deauville score of the diffuse marrow uptake"),
        _flag("diffuse_marrow", "diffuse marrow uptake (marrow Deauville >= 4)"),
        Column("impetus_bm_ds", "choice", choices=_DS, doc="IMPeTUs bone marrow score"),
        Column("impetus_fl_count", "int", min_value=0, doc="IMPeTUs focal lesions"),
        Column("impetus_fl_count_cat", "int", min_value=0, max_value=3, doc="IMPeTUs focal lesion category 0-3"),
        Column("impetus_fl_sites", "text", doc="IMPeTUs focal lesion sites, '+'-joined"),
        Column("impetus_fl_target_ds", "choice", choices=_DS, doc="IMPeTUs score of the hottest focal lesion"),
        Column("impetus_lytic_count_cat", "int", min_value=0, max_value=3, doc="IMPeTUs lytic lesion category 0-3"),
        _flag("impetus_fracture", "IMPeTUs fracture"),
        Column("impetus_fracture_sites", "text", doc="IMPeTUs fracture sites, '+'-joined"),
        _flag("impetus_paramedullary", "IMPeTUs paramedullary disease"),
        Column("impetus_paramedullary_ds", "choice", choices=_DS, doc="IMPeTUs paramedullary score"),
        _flag("impetus_emd", "IMPeTUs extramedullary disease"),
        Column("impetus_emd_subtypes", "text", doc="IMPeTUs EMD subtypes, '+'-joined"),
        Column("impetus_emd_ds", "choice", choices=_DS, doc="IMPeTUs EMD score"),
        Column("impetus_n_indeterminate", "int", min_value=0, doc="lesions of indeterminate site"),
        Column("impetus_report", "text", doc="IMPeTUs report string"),
        *(_flag(f"metcr_{r}", f"metabolic CR of the scan ({r.upper()})") for r in _METCR_RULES),
        Column("baseline_study_id", "text", doc="the scan a follow-up was read against"),
        Column("n_new_lesions", "int", min_value=0, doc="new lesions against the baseline"),
        Column("n_resolved_lesions", "int", min_value=0, doc="baseline lesions no longer seen"),
        _num("baseline_suv_max", "SUVmax of the baseline scan"),
        _num("delta_suv_max_pct", "SUVmax change from the baseline (%)", lo=-100.0),
        Column("lugano_category", "choice", choices=("CMR", "PMR", "NMR", "PMD", "NE"),
               doc="Lugano 2014 response against the baseline"),
        *(_flag(f"metcr_{r}_vs_baseline", f"metabolic CR against the baseline ({r.upper()})")
          for r in _METCR_RULES),
        Column("carpet_version", "text", doc="carpet version that measured the study"),
    ),
    unique=("study_id",),
    doc="One row per PET/CT study, from carpet quantify / batch outputs (key: study_id, as batch writes it).",
)

# --------------------------------------------------------------------------------------------------------------
# Assessment parameters and unit conversions (spec §0.2): canonical unit, then {unit as written: factor}.
# Unit strings are compared after lower-casing, removing spaces and writing µ/μ as u.
# --------------------------------------------------------------------------------------------------------------
_PER_UL = {"/ul": 1.0, "cells/ul": 1.0, "/mm3": 1.0, "g/l": 1000.0, "10^9/l": 1000.0, "x10^9/l": 1000.0,
           "10e9/l": 1000.0, "10^3/ul": 1000.0, "x10^3/ul": 1000.0, "k/ul": 1000.0}
UNIT_CONVERSIONS: dict[str, tuple[str, dict[str, float]]] = {
    "serum_m_protein": ("g/dL", {"g/dl": 1.0, "g/l": 0.1, "mg/dl": 0.001}),
    "urine_m_protein": ("mg/24h", {"mg/24h": 1.0, "mg/24hr": 1.0, "mg/d": 1.0, "mg/day": 1.0, "g/24h": 1000.0,
                                   "g/d": 1000.0, "g/day": 1000.0}),
    "kappa_flc": ("mg/dL", {"mg/dl": 1.0, "mg/l": 0.1}),
    "lambda_flc": ("mg/dL", {"mg/dl": 1.0, "mg/l": 0.1}),
    "bm_plasma_cells": ("%", {"%": 1.0, "percent": 1.0}),
    "plasmacytoma_spd": ("cm2", {"cm2": 1.0, "cm^2": 1.0, "mm2": 0.01, "mm^2": 0.01}),
    "calcium": ("mg/dL", {"mg/dl": 1.0, "mmol/l": 4.008}),
    "creatinine": ("mg/dL", {"mg/dl": 1.0, "umol/l": 1 / 88.42}),
    "hb": ("g/dL", {"g/dl": 1.0, "g/l": 0.1}),
    "crp": ("mg/dL", {"mg/dl": 1.0, "mg/l": 0.1}),
    "ferritin": ("ng/mL", {"ng/ml": 1.0, "ug/l": 1.0}),
    "b2m": ("mg/L", {"mg/l": 1.0, "ug/ml": 1.0, "mg/dl": 10.0}),
    "albumin": ("g/dL", {"g/dl": 1.0, "g/l": 0.1}),
    "ldh": ("U/L", {"u/l": 1.0, "iu/l": 1.0}),
    "platelets": ("/uL", _PER_UL),
    "anc": ("/uL", _PER_UL),
}
#: Qualitative parameters: value positive/negative (stored 1/0); unit empty.
QUALITATIVE = ("serum_ife", "urine_ife", "bm_clonality")
#: Event flags: value 1 (seen) or 0; unit empty.
FLAGS = ("new_lesion", "new_bone_lesion")
PARAMETERS = tuple(UNIT_CONVERSIONS) + QUALITATIVE + FLAGS


def describe(schema: TableSchema) -> pd.DataFrame:
    """The schema as a table (column, kind, required, allowed values, range, meaning) for documentation."""
    rows = [{"column": c.name, "kind": c.kind, "required": c.required, "choices": ", ".join(c.choices),
             "min": c.min_value, "max": c.max_value, "not_before": c.not_before or "", "doc": c.doc}
            for c in schema.columns]
    return pd.DataFrame(rows)


def _norm_unit(unit: str) -> str:
    return re.sub(r"\s+", "", unit.lower().replace("µ", "u").replace("μ", "u"))


# --------------------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------------------
def _raise(problems: list[Problem], schema_name: str, source: str) -> None:
    if not problems:
        return
    problems = sorted(problems, key=lambda p: p.row or 0)
    shown = "\n  - ".join(str(p) for p in problems[:MAX_PROBLEMS_SHOWN])
    more = len(problems) - MAX_PROBLEMS_SHOWN
    tail = f"\n  ... and {more} more" if more > 0 else ""
    exc = InputError(f"{len(problems)} problem(s) in the {schema_name} table:\n  - {shown}{tail}", source=source)
    exc.problems = list(problems)
    raise exc


def load_table(path: Path) -> pd.DataFrame:
    """Read CSV or XLSX into a frame of raw cells (text for CSV, Excel's own types for XLSX)."""
    suffix = path.suffix.lower()
    if path.is_dir():
        raise InputError("is a folder; expected a CSV or XLSX file", source=path)
    if not path.is_file():
        raise InputError("file not found", source=path)
    try:
        if suffix in (".xlsx", ".xlsm"):
            return pd.read_excel(path, dtype=object, engine="openpyxl")
        if suffix in (".csv", ".txt", ".tsv"):
            table = pd.read_csv(path, dtype=str, keep_default_na=False, sep="\t" if suffix == ".tsv" else ",",
                                encoding="utf-8-sig")
            if suffix != ".tsv" and len(table.columns) == 1 and ";" in str(table.columns[0]):
                raise InputError(f"the header '{table.columns[0]}' is one column holding ';': the file is "
                                 "separated by semicolons (a European-locale export)", source=path,
                                 hint="save it as CSV with commas, or as .xlsx")
            return table
    except InputError:
        raise
    except pd.errors.EmptyDataError:
        raise InputError("the file is empty; expected a header row and data rows", source=path) from None
    except Exception as exc:  # parser, encoding and zip errors all mean "not a readable table"
        raise InputError(f"cannot read the table ({type(exc).__name__}: {exc})", source=path,
                         hint="save it as UTF-8 CSV or .xlsx") from None
    raise InputError(f"unsupported file type '{suffix}'; expected .csv, .tsv or .xlsx", source=path)


def _is_blank(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and np.isnan(v):
        return True
    if v is pd.NaT or (isinstance(v, type(pd.NA)) and v is pd.NA):
        return True
    return isinstance(v, str) and v.strip() == ""


def _parse_date(v: Any) -> tuple[pd.Timestamp | None, str | None]:
    if isinstance(v, (pd.Timestamp, _dt.datetime)):
        if v.tzinfo is not None or (v.hour, v.minute, v.second, v.microsecond) != (0, 0, 0, 0):
            return None, "expected a date without time of day"
        day = _dt.date(v.year, v.month, v.day)
    elif isinstance(v, _dt.date):
        day = v
    elif isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)):
        # a number in a date column of a spreadsheet: an Excel serial day (1 = 1900-01-01)
        if not (np.isfinite(v) and float(v).is_integer() and 1 <= v <= _EXCEL_SERIAL_MAX):
            return None, "expected an ISO date YYYY-MM-DD or an Excel date"
        day = (_EXCEL_EPOCH + pd.Timedelta(days=int(v))).date()
    else:
        text = str(v).strip()
        if not _ISO_DATE.match(text):
            return None, "expected an ISO date YYYY-MM-DD (e.g. 2024-03-31) or an Excel date"
        try:
            day = _dt.date.fromisoformat(text)
        except ValueError:
            return None, "expected an existing calendar date YYYY-MM-DD"
    if not _YEARS[0] <= day.year <= _YEARS[1]:
        return None, f"expected a date in the years {_YEARS[0]}-{_YEARS[1]}"
    return pd.Timestamp(day), None


def _parse_number(v: Any) -> tuple[float | None, str | None]:
    if isinstance(v, bool):
        return None, "expected a number"
    if isinstance(v, (int, float, np.integer, np.floating)):
        x = float(v)
    else:
        try:
            x = float(str(v).strip())
        except ValueError:
            return None, "expected a number (decimal point '.', no units in the cell)"
    if not np.isfinite(x):
        return None, "expected a finite number"
    return x, None


def _parse_bool(v: Any) -> tuple[bool | None, str | None]:
    if isinstance(v, (bool, np.bool_)):
        return bool(v), None
    text = str(v).strip().lower()
    if text in _TRUE:
        return True, None
    if text in _FALSE:
        return False, None
    return None, "expected true/false (also yes/no, 1/0, positive/negative)"


def _parse_cell(col: Column, v: Any) -> tuple[Any, str | None]:
    if col.kind == "date":
        return _parse_date(v)
    if col.kind == "bool":
        return _parse_bool(v)
    if col.kind in ("number", "int"):
        x, why = _parse_number(v)
        if why:
            return None, why
        if col.kind == "int" and not x.is_integer():
            return None, "expected a whole number"
        if col.min_value is not None and x < col.min_value:
            what = "a non-negative number" if col.min_value == 0 else f"a value >= {col.min_value:g}"
            return None, f"expected {what}"
        if col.max_value is not None and x > col.max_value:
            return None, f"expected a value <= {col.max_value:g}"
        return (int(x) if col.kind == "int" else x), None
    text = v.isoformat() if isinstance(v, (_dt.date, _dt.datetime)) else str(v).strip()
    if isinstance(v, float) and v.is_integer():
        text = str(int(v))  # Excel turns id 12 into 12.0
    if col.kind == "choice":
        match = {c.lower(): c for c in col.choices}.get(text.lower())
        if match is None:
            return None, f"expected one of {', '.join(col.choices)}"
        return match, None
    return text, None


def validate_frame(raw: pd.DataFrame, schema: TableSchema, source: str,
                   patients: pd.DataFrame | None = None) -> pd.DataFrame:
    """Validate and type a frame of raw cells against ``schema``; raise one error listing every problem.

    Columns not in the schema are kept as they are (text), after the schema's columns. With ``patients`` (a
    validated patients table), every ``patient_id`` must be one of its ids.
    """
    table, problems = _validate(raw, schema, source, patients)
    _raise(problems, schema.name, source)
    return table


def _apply_unit_aliases(raw: pd.DataFrame, schema: TableSchema, problems: list[Problem]) -> pd.DataFrame:
    """Convert columns written in an alias unit into the schema's column (problems named by the alias column)."""
    for alias, target, factor in schema.unit_aliases:
        if alias not in raw.columns:
            continue
        if target in raw.columns:
            problems.append(Problem(1, alias, None, f"give either {alias} or {target}, not both"))
            continue
        lo = next((c.min_value for c in schema.columns if c.name == target), None)
        converted = []
        for i, v in enumerate(raw[alias].tolist()):
            x, why = (None, None) if _is_blank(v) else _parse_number(v)
            if x is not None and lo is not None and x * factor < lo:
                x, why = None, "expected a non-negative number" if lo == 0 else f"expected a value >= {lo / factor:g}"
            if why:
                problems.append(Problem(i + 2, alias, v, why))
            converted.append(None if x is None else x * factor)
        raw = raw.drop(columns=[alias]).assign(**{target: converted})
    return raw


def _validate(raw: pd.DataFrame, schema: TableSchema, source: str,
              patients: pd.DataFrame | None = None) -> tuple[pd.DataFrame, list[Problem]]:
    """Typed table and the list of cell problems (raises at once only when required columns are missing)."""
    problems: list[Problem] = []
    headers = [str(h).strip() for h in raw.columns]
    seen: set[str] = set()
    for h in headers:
        if h in seen:
            problems.append(Problem(1, h, None, "duplicate column name"))
        seen.add(h)
    raw = raw.copy()
    raw.columns = headers
    for col in schema.columns:
        if col.required and col.name not in raw.columns:
            problems.append(Problem(1, col.name, None, f"missing required column ({col.doc or col.kind})"))
    if problems:
        _raise(problems, schema.name, source)
    raw = _apply_unit_aliases(raw, schema, problems)

    out: dict[str, list[Any]] = {}
    for col in schema.columns:
        if col.name not in raw.columns:
            continue
        values: list[Any] = []
        for i, v in enumerate(raw[col.name].tolist()):
            if _is_blank(v):
                if col.required:
                    problems.append(Problem(i + 2, col.name, None, f"missing value ({col.doc or col.kind})"))
                values.append(None)
                continue
            parsed, why = _parse_cell(col, v)
            if why:
                problems.append(Problem(i + 2, col.name, v if not isinstance(v, str) else v.strip(), why))
            values.append(parsed)
        out[col.name] = values
    table = pd.DataFrame(out, index=range(len(raw)))
    if not len(table):  # pandas types an empty list as float64; an id/text column must stay text to join
        table = table.astype({c.name: object for c in schema.columns
                              if c.kind in ("id", "text", "choice", "bool") and c.name in table})
    for col in schema.columns:
        if col.kind == "date" and col.name in table:
            table[col.name] = pd.to_datetime(table[col.name])
        if col.not_before and col.name in table and col.not_before in table:
            later, earlier = table[col.name], table[col.not_before]
            for i in np.flatnonzero((later < earlier).to_numpy()):
                problems.append(Problem(int(i) + 2, col.name, later.iloc[i].date().isoformat(),
                                        f"expected a date on or after {col.not_before} "
                                        f"({earlier.iloc[i].date().isoformat()})"))
    if schema.unique and all(c in table for c in schema.unique):
        key = table[list(schema.unique)]
        dup = key.duplicated(keep=False) & key.notna().all(axis=1)
        for keyval, grp in key[dup].groupby(list(schema.unique), sort=False):
            rows = [int(i) + 2 for i in grp.index]
            shown = keyval[0] if isinstance(keyval, tuple) and len(keyval) == 1 else keyval
            problems.append(Problem(rows[1], ", ".join(schema.unique), shown,
                                    f"expected unique {'/'.join(schema.unique)}; also in row(s) "
                                    f"{', '.join(map(str, [rows[0], *rows[2:]]))}"))
    if patients is not None and "patient_id" in table:
        known = set(patients["patient_id"])
        problems += [Problem(i + 2, "patient_id", pid, "unknown patient (not in the patients table)")
                     for i, pid in enumerate(table["patient_id"]) if pid is not None and pid not in known]
    extra = [h for h in raw.columns if h not in table.columns]
    for h in extra:
        table[h] = raw[h].to_numpy()
    table["source_row"] = np.arange(len(table)) + 2
    return table, problems


def read_table(source: str | Path | pd.DataFrame, schema: TableSchema, name: str | None = None,
               patients: pd.DataFrame | None = None) -> pd.DataFrame:
    """Read a CSV/XLSX file (or validate a DataFrame of raw cells) against ``schema``.

    Parameters
    ----------
    source : path or DataFrame
        The file, or an already-loaded frame (``name`` then labels it in messages).
    schema : TableSchema
    name : str, optional
        How messages name a DataFrame source.
    patients : DataFrame, optional
        Validated patients table; ids not in it are reported with the other problems.

    Returns
    -------
    DataFrame
        Typed columns (dates as ``datetime64``, numbers as float, flags as bool or None) plus ``source_row``, the
        row number a spreadsheet shows for each record (header = row 1).

    Raises
    ------
    InputError
        Listing every problem of the file (``error.problems`` holds them as :class:`Problem` objects).
    """
    if isinstance(source, pd.DataFrame):
        return validate_frame(source, schema, name or f"<{schema.name} table>", patients)
    path = Path(source)
    return validate_frame(load_table(path), schema, str(path), patients)


def read_patients(source, require: Iterable[str] = (), name: str | None = None) -> pd.DataFrame:
    """Read the patients table; ``require`` makes optional columns required (e.g. ``involved_light_chain``).

    A patients table without rows is refused (every other table would then fail on 'unknown patient')."""
    table = read_table(source, PATIENTS.requiring(*require), name)
    if table.empty:
        raise InputError("the patients table has a header row but no patient rows",
                         source=name or (source if isinstance(source, (str, Path)) else None))
    return table


def read_therapies(source, name: str | None = None, patients: pd.DataFrame | None = None) -> pd.DataFrame:
    """Read the therapies (lines) table (ids checked against ``patients`` when given)."""
    return read_table(source, THERAPIES, name, patients)


def read_imaging(source, name: str | None = None, patients: pd.DataFrame | None = None) -> pd.DataFrame:
    """Read an imaging table (one row per study, as ``carpet quantify``/``batch`` write them)."""
    return read_table(source, IMAGING, name, patients)


def read_assessments(source, name: str | None = None, patients: pd.DataFrame | None = None) -> pd.DataFrame:
    """Read the long-format assessments table and convert every value to its internal unit.

    Returns columns ``patient_id, date, parameter, value`` (float in the canonical unit; 1/0 for qualitative
    results and flags), ``unit`` (canonical), ``source_row``. Unknown parameters or units and values that are not
    numbers (or not positive/negative for immunofixation) are errors, as are ids not in ``patients`` when given.
    """
    label = name or (f"<{ASSESSMENTS.name} table>" if isinstance(source, pd.DataFrame) else str(source))
    raw = source if isinstance(source, pd.DataFrame) else load_table(Path(source))
    table, problems = _validate(raw, ASSESSMENTS, label, patients)
    if "unit" not in table:
        table["unit"] = None
    values = np.full(len(table), np.nan)
    units: list[str | None] = [None] * len(table)
    for i, (param, cell, unit) in enumerate(zip(table["parameter"], table["value"], table["unit"])):
        row = i + 2
        if param is None or cell is None:
            continue
        key = param.strip().lower()
        unit_text = "" if unit is None else unit
        if key in UNIT_CONVERSIONS:
            canonical, table_of = UNIT_CONVERSIONS[key]
            factor = table_of.get(_norm_unit(unit_text))
            if factor is None:
                problems.append(Problem(row, "unit", unit_text, f"unknown unit for {key}; expected one of "
                                        f"{', '.join(sorted(table_of))}"))
                continue
            x, why = _parse_number(cell)
            if why or x < 0:
                problems.append(Problem(row, "value", cell, why or "expected a non-negative number"))
                continue
            values[i], units[i] = x * factor, canonical
        elif key in QUALITATIVE or key in FLAGS:
            flag, why = _parse_bool(cell)
            if why:
                problems.append(Problem(row, "value", cell, "expected positive or negative" if key in QUALITATIVE
                                        else "expected 1 (seen) or 0"))
                continue
            if _norm_unit(unit_text) not in ("", "-", "na"):
                problems.append(Problem(row, "unit", unit_text, f"{key} takes no unit; leave the cell empty"))
                continue
            values[i], units[i] = float(flag), ""
        else:
            problems.append(Problem(row, "parameter", param, f"unknown parameter; expected one of "
                                    f"{', '.join(PARAMETERS)}"))
            continue
        table.at[i, "parameter"] = key
    _raise(problems, ASSESSMENTS.name, label)
    table["value"] = values
    table["unit"] = units
    return table
