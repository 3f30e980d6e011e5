"""``run_analysis``: a plan run on a cohort, from the input tables to ``results.json`` and the reports."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from carpet.analyze.clinical import load_clinical
from carpet.analyze.derive import (_coerce, _drop_identifiers, _imaging_table, _merge_imaging, _prepare,
                                   _with_assessments)
from carpet.analyze.labels import Labels
from carpet.analyze.plan import ANALYSES, needs_raw_tables, _raise, _title, _default_stem, _unique, load_plan, validate_plan
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
        Also write ``tables.xlsx``: one sheet per table (same content as the CSVs) and an ``about`` sheet.
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
        _raise(["assessments.pfs: needs the assessments table (--assessments LABS.csv)"], plan_source, "inputs")
    data, derived = _prepare(data, plan, endpoints, plan_source, tables)
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
        try:
            extra = (tables,) if a["type"] in TABLE_ANALYSES else ()
            res = RUNNERS[a["type"]](data, a, endpoints, writer, stem, seed, *extra)
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
                "notes": notes, "endpoints": endpoints, "derived": derived, "analyses": results,
                "figure_checks": writer.figure_checks, "provenance": prov}
    files = writer.files
    files["results.json"] = out / "results.json"
    files["results.json"].write_text(json.dumps(_jsonable(document), indent=2, allow_nan=False), encoding="utf-8")
    if xlsx:
        writer.workbook(out / "tables.xlsx")
    files["report.pdf"] = writer.pdf.write(out / "report.pdf")
    files["report.html"] = writer.html.write(out / "report.html")
    return AnalysisResult(results=results, files=files, notes=notes, simulated=simulated, provenance=prov)


RUNNERS = {**_RUNNERS, **COHORT_RUNNERS}
assert set(RUNNERS) == set(ANALYSES)


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
