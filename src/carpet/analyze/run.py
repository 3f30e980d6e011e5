"""``run_analysis``: a plan run on a cohort, from the input tables to ``results.json`` and the reports."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from carpet.analyze.clinical import load_clinical
from carpet.analyze.derive import (_coerce, _drop_identifiers, _imaging_table, _merge_imaging, _prepare,
                                   _with_assessments, population)
from carpet.analyze.labels import Labels
from carpet.analyze.plan import (ANALYSES, WHOLE_COHORT_ANALYSES, needs_raw_tables, _raise, _title, _default_stem,
                                 _unique, load_plan, validate_plan)
from carpet.analyze.cohort_runners import COHORT_RUNNERS, TABLE_ANALYSES
from carpet.analyze.runners import _RUNNERS
from carpet.analyze.writer import SIMULATED_BANNER, _jsonable, _Writer
from carpet.errors import InputError
from carpet.provenance import file_sha256, provenance

@dataclass
class AnalysisResult:
    """Result of :func:`run_analysis`.

    Attributes
    ----------
    results : dict
        Per analysis name: its numbers and provenance (what ``results.json`` holds under ``analyses``).
    files : dict
        Name -> path of every file written (``report.html``, ``report.pdf``, ``results.json``, CSVs, figures).
    notes : list of str
        What the run changed or warned about (dropped identifier columns, excluded rows, method warnings).
    simulated : bool
    provenance : dict
    """

    results: dict[str, Any]
    files: dict[str, Path]
    notes: list[str] = field(default_factory=list)
    simulated: bool = False
    provenance: dict[str, Any] = field(default_factory=dict)


def run_analysis(patients: pd.DataFrame, plan: dict | str | Path, out_dir: str | Path, imaging=None,
                 assessments=None, therapies=None, *, include_identifiers: bool = False,
                 input_files: dict[str, str | Path] | None = None, xlsx: bool = False,
                 page_size: str = "A4") -> AnalysisResult:
    """Run an analysis plan on a cohort and write tables, figures, reports and ``results.json``.

    Parameters
    ----------
    patients : DataFrame
        One row per patient with ``patient_id`` (as :func:`carpet.cohort.schema.read_patients` returns it,
        or already typed). Text columns holding numbers or true/false are converted.
    plan : dict or path
        The analysis plan (see the module docstring and ``carpet/plans/`` (installed with the package)).
    out_dir : path
        Output folder (created).
    imaging : path or DataFrame, optional
        One row per PET/CT study (``carpet quantify``/``batch``), merged on ``patient_id`` (or via the plan's
        ``imaging.ids`` study_id -> patient_id mapping); the first study per patient unless ``select: last``.
        A file is validated with :func:`carpet.cohort.schema.read_imaging`.
    assessments, therapies : path or DataFrame, optional
        Lab assessments (and therapy lines) for the IMWG engine, which adds ``best_response``,
        ``progression_date``, ``refractory`` and, with ``assessments: {pfs: <name>}`` in the plan, a PFS endpoint.
    include_identifiers : bool
        Keep identifier columns (names, birth dates, MRNs); by default they are dropped with a note.
    input_files : mapping, optional
        The files the tables were read from; their SHA-256 goes into the provenance.
    xlsx : bool
        Also write ``tables.xlsx``: a README sheet, then one sheet per table as the report shows it.
    page_size : {'A4', 'Letter'}
        Page size of ``report.pdf`` (every page the same).

    Returns
    -------
    AnalysisResult

    Raises
    ------
    InputError
        Listing every problem of the plan, each with its key path (``analyses[2].endpoint``).
    """
    plan, plan_sha, plan_source = load_plan(plan)
    _raise(validate_plan(plan), plan_source, "structure")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = analysis_table(patients, plan, imaging, assessments, therapies, include_identifiers=include_identifiers,
                           source=plan_source)
    data, everyone, endpoints, derived, tables = (table.data, table.everyone, table.endpoints, table.derived,
                                                  table.tables)
    notes, record = table.notes, table.record
    simulated = bool("simulated" in data and data["simulated"].fillna(False).astype(bool).any())

    labels = Labels(plan.get("variables"))
    writer = _Writer(out, plan["title"], plan.get("subtitle", ""), simulated, labels=labels, page_size=page_size)
    if simulated:
        writer.note(f"{SIMULATED_BANNER}: every number, table and figure here comes from simulated data.")
    writer.text(f"{len(data)} patients; plan {plan_source} (sha256 {plan_sha[:12]}).")
    for note in notes:
        writer.note(note)
    results: dict[str, Any] = {}
    seed = int(plan.get("seed", 0))
    used_names: set[str] = set()
    headings: dict[str, int] = {}
    for i, a in enumerate(plan["analyses"]):
        stem = _unique(a.get("name") or _default_stem(a), used_names)
        heading = _title(a, endpoints, labels)
        headings[heading] = headings.get(heading, 0) + 1
        writer.section(heading if headings[heading] == 1 else f"{heading} ({headings[heading]})")
        _check_survival_rows(data, a, endpoints, patients, (input_files or {}).get("clinical"), i)
        try:
            extra = (tables,) if a["type"] in TABLE_ANALYSES else ()
            rows = everyone if a["type"] in WHOLE_COHORT_ANALYSES else data
            res = RUNNERS[a["type"]](rows, a, endpoints, writer, stem, seed, *extra)
        except InputError as exc:  # say which analysis of the plan the data could not support
            raise InputError(f"analyses[{i}] ({a['type']}): {exc}", source=plan_source) from exc
        res.update(type=a["type"], plan_item=a, key_path=f"analyses[{i}]")
        results[stem] = res
    inputs = _input_record(patients, imaging, assessments, input_files)
    prov = provenance(command="carpet analyze", plan={"source": plan_source, "sha256": plan_sha},
                      inputs=inputs, simulated=simulated, identifiers_included=include_identifiers, **record)
    writer.html.provenance = prov  # the HTML template prints it at the end
    writer.pdf.section("Provenance").text(json.dumps(_jsonable(prov), indent=1))
    document = {"title": plan["title"], "simulated": simulated,
                "notice": SIMULATED_BANNER if simulated else None, "n_patients": int(len(data)),
                "n_in_tables": int(len(everyone)), "population": plan.get("population"),
                "notes": notes, "columns": [str(c) for c in data.columns], "endpoints": endpoints,
                "derived": derived, "analyses": results,
                "figure_checks": writer.figure_checks, "provenance": prov}
    files = writer.files
    files["results.json"] = out / "results.json"
    files["results.json"].write_text(json.dumps(_jsonable(document), indent=2, allow_nan=False), encoding="utf-8")
    if xlsx:
        writer.workbook(out / "tables.xlsx")
    files["report.pdf"] = writer.pdf.write(out / "report.pdf")
    files["report.html"] = writer.html.write(out / "report.html")
    return AnalysisResult(results=results, files=files, notes=notes, simulated=simulated, provenance=prov)


@dataclass
class AnalysisTable:
    """What a plan's analyses read: the analysis table and how it was made (:func:`analysis_table`).

    Attributes
    ----------
    data : DataFrame
        One row per patient of the plan's population (all patients without ``population:``), with the derived
        endpoints (``<name>_months``, ``<name>_event``) and columns.
    everyone : DataFrame
        The same for every patient of the tables (what the flowchart counts).
    endpoints, derived : dict
        The endpoints with their time/event columns; the record of each derivation.
    tables : ClinicalTables or None
        The validated raw tables and the IMWG results.
    notes : list of str
    record : dict
        Provenance of the derivations.
    """

    data: pd.DataFrame
    everyone: pd.DataFrame
    endpoints: dict
    derived: dict
    tables: Any
    notes: list[str]
    record: dict[str, Any]


def analysis_table(patients: pd.DataFrame, plan: dict, imaging=None, assessments=None, therapies=None, *,
                   include_identifiers: bool = False, source: str = "<plan>") -> AnalysisTable:
    """The analysis table of a (validated) plan from the input tables: typing, identifiers dropped, the raw tables'
    derivations (IMWG, lines), imaging merged, endpoints and derived columns, the plan's population.

    :func:`run_analysis` runs the analyses on it; tests compare it across inputs (raw tables against the
    simulator's answers).
    """
    notes: list[str] = []
    record: dict[str, Any] = {}
    data = _coerce(patients.drop(columns=["source_row"], errors="ignore"))
    if not include_identifiers:
        data = _drop_identifiers(data, "clinical", notes)
    endpoints = {k: dict(v) for k, v in plan["endpoints"].items()}
    tables = None
    if assessments is not None or therapies is not None or needs_raw_tables(plan):
        tables = load_clinical(data, assessments, therapies, notes)
        record.update(tables.record)
    if imaging is not None:
        img = _coerce(_imaging_table(imaging, plan.get("imaging") or {}, notes))
        if not include_identifiers:
            img = _drop_identifiers(img, "imaging", notes)
        data = _merge_imaging(data, img, plan.get("imaging") or {}, notes)
    if assessments is not None:
        data = _with_assessments(data, tables, plan.get("assessments"), endpoints, notes)
    elif (plan.get("assessments") or {}).get("pfs"):
        _raise(["assessments.pfs: needs the assessments table (--assessments LABS.csv)"], source, "inputs")
    data, derived = _prepare(data, plan, endpoints, source, tables)
    everyone = data
    if plan.get("population"):
        data = population(data, plan["population"], source, notes)
    return AnalysisTable(data, everyone, endpoints, derived, tables, notes, record)


RUNNERS = {**_RUNNERS, **COHORT_RUNNERS}
assert set(RUNNERS) == set(ANALYSES)


def _check_survival_rows(data: pd.DataFrame, a: dict, endpoints: dict, patients: pd.DataFrame, clinical,
                         i: int) -> None:
    """Refuse a time that is not a number >= 0 or an event that is not 0/1, naming the clinical table's own
    row (``source_row``: the CSV/XLSX row, header = row 1) and the column — the statistics functions, which
    see only the rows they analyse, could name only a position among those."""
    ep = endpoints.get(a.get("endpoint")) if isinstance(a.get("endpoint"), str) else None
    if not ep or "time" not in ep or ep["time"] not in data or ep["event"] not in data:
        return
    rows = dict(zip(patients["patient_id"], patients["source_row"])) if {"patient_id", "source_row"} <= set(
        patients.columns) else {}
    frame = data.dropna(subset=[ep["time"], ep["event"]])
    for column, kind in ((ep["time"], "time"), (ep["event"], "event")):
        raw = frame[column].map(lambda v: float(v) if isinstance(v, (bool, np.bool_)) else v)
        value = pd.to_numeric(raw, errors="coerce")
        if kind == "time":
            bad, expected = ~np.isfinite(value) | (value < 0), "a finite number >= 0 (time to event or censoring)"
        else:
            bad, expected = ~value.isin([0.0, 1.0]), "0 (censored) or 1 (event)"
        if bad.any():
            first = bad.to_numpy().nonzero()[0][0]
            pid = frame["patient_id"].iloc[first] if "patient_id" in frame else None
            row = rows.get(pid)
            where = f"row {row}, column {column!r}" if row is not None else f"column {column!r}"
            raise InputError(f"analyses[{i}] ({a['type']}), endpoint {a['endpoint']!r}: {kind} must be {expected}, "
                             f"got '{raw.iloc[first]}' ({int(bad.sum())} such value(s))",
                             source=clinical or "clinical table", where=where)


def _input_record(patients, imaging, assessments, input_files) -> dict:
    record = {}
    for name, table in (("clinical", patients), ("imaging", imaging), ("assessments", assessments)):
        if isinstance(table, pd.DataFrame):
            content = pd.util.hash_pandas_object(table.astype(str), index=False).to_numpy().tobytes()
            record[name] = {"rows": int(len(table)), "content_sha256": hashlib.sha256(content).hexdigest()}
        elif isinstance(table, (str, Path)):  # a file given directly: which one, and its hash
            record[name] = {"path": str(table), "sha256": file_sha256(table)}
    for name, path in (input_files or {}).items():
        if path is not None:
            record.setdefault(name, {}).update(path=str(path), sha256=file_sha256(path))
    return record
