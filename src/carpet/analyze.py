"""``carpet analyze``: an analysis plan (YAML) turned into tables, figures, an HTML and a PDF report.

A plan is written for clinicians: a title, the endpoints (time/event columns, or dates to derive them
from), optional derived columns (risk scores, EMD/PMD status, cut-offs, logs, labels) and a list of
analyses (``table1``, ``km``, ``cox``, ``transitions``, ``cutpoint``, ``cutoff``, ``compare_models``,
``landmark``). Every problem of a plan is reported at once, each naming its key path
(``analyses[2].endpoint``) and what was expected.

Plan reference (see ``carpet/plans/`` (installed with the package) for complete plans)::

    title: Post-CAR T progression outcomes        # required; subtitle: and seed: (default 0) optional
    endpoints:                                    # required: name -> time/event columns or dates
      pfs2: {time: pfs2_months, event: pfs2_event, unit: months, label: PFS from progression}
      pfs:  {start: infusion_date, event_date: [progression_date, death_date],
             censor_date: last_followup_date, unit: months}          # earliest event date counts
    assessments: {pfs: pfs_imwg}                  # with --assessments: PFS from IMWG progression
    imaging: {ids: {STUDY-1: P001}, select: first}  # with --imaging: study_id -> patient_id, which study
    derive:                                       # new columns, in order (later ones may use earlier)
      - {name: ipi, score: ipi}                   # ipi, aaipi, car_hematotox, iss, riss, r2iss
      - {name: ipi_group, score: ipi, output: group}
      - {name: status_baseline, emd_pmd: [emd_baseline, pmd_baseline]}   # None / EMD / PMD / EMD+PMD
      - {name: mtv_high, cut: {column: mtv_ml, above: 54.3}}             # or at_least:
      - {name: log_mtv, log: mtv_ml}
      - {name: emd, labels: {column: emd_baseline, values: {true: EMD, false: No EMD}}}
      - {name: emd_both, combine: [emd_baseline, emd_progression]}       # "a / b" group names
    analyses:                                     # each may also have title: and name: (file stem)
      - {type: table1, by: emd, continuous: [...], categorical: [...], nonnormal: [...], labels: {...}}
      - {type: km, endpoint: pfs2, by: emd, risk_times: [0, 6, 12, 18, 24]}   # by: may be a list
      - {type: cox, endpoint: pfs2, covariates: [emd_baseline, age_years], strata: [centre]}
      - {type: transitions, before: status_baseline, after: status_progression, order: [None, EMD, PMD, EMD+PMD]}
      - {type: cutpoint, endpoint: pfs, marker: mtv_ml, min_prop: 0.1, n_perm: 1000}
      - {type: cutoff, endpoint: pfs, marker: mtv_ml, value: 54.3, cutoff_method: suv4, marker_method: suv4}
      - {type: compare_models, endpoint: pfs, models: {IPI: [ipi], MTV: [log_mtv]}, horizon: 12, n_boot: 200}
      - {type: landmark, endpoint: pfs, time: 1.0, by: metcr_day30}

``table1`` and ``transitions`` accept ``max_tables`` (the exact Fisher test's enumeration limit, beyond
which a seeded Monte Carlo p-value is used).

The statistics are those of :mod:`carpet.stats`; this module only prepares the analysis table, calls
them, and writes what they return. Writes into the output folder:

- ``report.html`` (self-contained) and ``report.pdf``;
- one CSV per table (``table1.csv``, ``km_<endpoint>_<by>.csv``, ``cox_<endpoint>.csv``, ...);
- ``figures/<name>.png`` and ``figures/<name>.pdf`` per figure;
- ``results.json``: every number with its provenance (plan hash, input hashes, carpet version).

Identifier columns (names, birth dates, MRNs, ...) are dropped from the inputs before anything is
computed, unless ``include_identifiers=True``. When the data are simulated (a true ``simulated``
column), every output says SIMULATED.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from carpet.errors import InputError
from carpet.provenance import file_sha256, provenance

__all__ = ["AnalysisResult", "load_plan", "validate_plan", "run_analysis", "IDENTIFIER_COLUMNS", "ANALYSES"]

SIMULATED_BANNER = "SIMULATED DATA — not patients"

#: Columns that identify a person; dropped from every input unless identifiers are asked for.
IDENTIFIER_COLUMNS = frozenset({
    "name", "patient_name", "first_name", "last_name", "given_name", "family_name", "full_name",
    "birth_date", "date_of_birth", "dob", "mrn", "medical_record_number", "ssn", "social_security_number",
    "address", "street", "phone", "telephone", "email", "e_mail"})

# Keys of each analysis: required and optional, each with the kind of value it takes.
#   column(s): column names of the analysis table; endpoint: a name under ``endpoints``.
ANALYSES: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "table1": ({"by": "column"}, {"continuous": "columns", "categorical": "columns", "nonnormal": "columns",
                                  "labels": "mapping", "max_tables": "count"}),
    "km": ({"endpoint": "endpoint"}, {"by": "columns", "risk_times": "numbers"}),
    "cox": ({"endpoint": "endpoint", "covariates": "columns"}, {"strata": "columns"}),
    "transitions": ({"before": "column", "after": "column", "order": "list"},
                    {"before_title": "str", "after_title": "str", "max_tables": "count"}),
    "cutpoint": ({"endpoint": "endpoint", "marker": "column"},
                 {"min_prop": "proportion", "max_prop": "proportion", "n_perm": "count"}),
    "cutoff": ({"endpoint": "endpoint", "marker": "column", "value": "number"},
               {"cutoff_method": "str", "marker_method": "str", "strict": "bool"}),
    "compare_models": ({"endpoint": "endpoint", "models": "models"}, {"horizon": "number", "n_boot": "count"}),
    "landmark": ({"endpoint": "endpoint", "time": "number", "by": "column"}, {"risk_times": "numbers"}),
}
_COMMON = {"type": "str", "title": "str", "name": "str"}
_TOP = {"title", "subtitle", "seed", "endpoints", "derive", "analyses", "imaging", "assessments"}
_SCORES = {"ipi": "IPI", "aaipi": "aaIPI", "car_hematotox": "CAR-HEMATOTOX", "iss": "ISS", "riss": "R-ISS",
           "r_iss": "R-ISS", "r2iss": "R2-ISS", "r2_iss": "R2-ISS"}
_DERIVE_OPS = ("score", "emd_pmd", "cut", "log", "labels", "combine")
_UNIT_DAYS = {"days": 1.0, "months": 365.25 / 12, "years": 365.25}
_EMD_PMD_LABELS = {"negative": "None", "emd_only": "EMD", "pmd_only": "PMD", "emd_and_pmd": "EMD+PMD"}


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


# ---------------------------------------------------------------------------------------------------------------
# the plan
# ---------------------------------------------------------------------------------------------------------------
def load_plan(plan: dict | str | Path) -> tuple[dict, str, str]:
    """Return ``(plan dict, sha256, source label)`` of a plan given as a dict or a YAML file."""
    if isinstance(plan, dict):
        text = json.dumps(plan, sort_keys=True, default=str)
        return plan, hashlib.sha256(text.encode()).hexdigest(), "<plan>"
    path = Path(plan)
    if not path.is_file():
        raise InputError("is a folder; expected a YAML plan file" if path.is_dir() else "plan file not found",
                         source=path, hint="--plan PLAN.yaml")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InputError(f"not valid YAML: {exc}", source=path) from None
    if not isinstance(data, dict):
        raise InputError("a plan must be a mapping with keys such as title, endpoints, analyses", source=path)
    return data, file_sha256(path), str(path)


def _kind_problem(value: Any, kind: str, endpoints: set[str]) -> str | None:
    """What is wrong with ``value`` for a key of ``kind`` (None when it is fine)."""
    is_num = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind in ("column", "str"):
        return None if isinstance(value, str) and value else "expected a name (text)"
    if kind == "columns":
        ok = (isinstance(value, str) and value) or (isinstance(value, list) and value
                                                    and all(isinstance(v, str) for v in value))
        return None if ok else "expected a column name or a list of column names"
    if kind == "endpoint":
        if not isinstance(value, str):
            return "expected an endpoint name"
        return None if value in endpoints else f"unknown endpoint '{value}' (defined: {sorted(endpoints)})"
    if kind == "number":
        return None if is_num else f"expected a number, got {value!r}"
    if kind == "proportion":
        return None if is_num and 0 < value < 1 else f"expected a proportion between 0 and 1, got {value!r}"
    if kind == "count":
        return None if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else \
            f"expected a whole number >= 0, got {value!r}"
    if kind == "bool":
        return None if isinstance(value, bool) else f"expected true or false, got {value!r}"
    if kind == "numbers":
        ok = isinstance(value, list) and value and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                       for v in value)
        return None if ok else "expected a list of numbers, e.g. [0, 6, 12, 18, 24]"
    if kind == "list":
        return None if isinstance(value, list) and value else "expected a list"
    if kind == "mapping":
        return None if isinstance(value, dict) else "expected a mapping (key: value)"
    if kind == "models":
        if not isinstance(value, dict) or len(value) < 2:
            return "expected at least two models, e.g. {IPI: [ipi], MTV: [log_mtv]}"
        bad = [k for k, v in value.items() if _kind_problem(v, "columns", endpoints)]
        return f"models {bad} must each list their covariate columns" if bad else None
    raise AssertionError(kind)


def validate_plan(plan: dict) -> list[str]:
    """Structural problems of a plan, each as ``'key.path: what was expected'`` (empty when valid).

    Column names are checked later, against the data (see :func:`run_analysis`).
    """
    problems = [f"{k}: unknown key (expected one of {sorted(_TOP)})" for k in plan if k not in _TOP]
    if not isinstance(plan.get("title"), str):
        problems.append("title: expected the report title (text)")
    if "seed" in plan and _kind_problem(plan["seed"], "count", set()):
        problems.append("seed: expected a whole number >= 0")
    endpoints = plan.get("endpoints") or {}
    if not isinstance(endpoints, dict) or not endpoints:
        problems.append("endpoints: expected a mapping of endpoint name to {time, event} or "
                        "{start, event_date, censor_date}")
        endpoints = {}
    for name, ep in endpoints.items():
        problems += _endpoint_problems(f"endpoints.{name}", ep)
    names = set(endpoints)
    assessments = plan.get("assessments")
    if assessments is not None:
        if not isinstance(assessments, dict) or set(assessments) - {"pfs"} or (
                "pfs" in assessments and not isinstance(assessments["pfs"], str)):
            problems.append("assessments: expected {pfs: <endpoint name>} (or leave it out)")
        elif "pfs" in assessments:
            names.add(assessments["pfs"])
    imaging = plan.get("imaging")
    if imaging is not None and (not isinstance(imaging, dict) or set(imaging) - {"ids", "select"}
                                or imaging.get("select", "first") not in ("first", "last")
                                or not isinstance(imaging.get("ids", {}), dict)):
        problems.append("imaging: expected {ids: {study_id: patient_id, ...}, select: first|last}")
    derive = plan.get("derive") or []
    if not isinstance(derive, list):
        problems.append("derive: expected a list of {name: ..., <operation>: ...}")
        derive = []
    for i, d in enumerate(derive):
        problems += _derive_problems(f"derive[{i}]", d)
    analyses = plan.get("analyses")
    if not isinstance(analyses, list) or not analyses:
        problems.append("analyses: expected a list of analyses, e.g. - {type: km, endpoint: pfs, by: group}")
        analyses = []
    for i, a in enumerate(analyses):
        where = f"analyses[{i}]"
        if not isinstance(a, dict):
            problems.append(f"{where}: expected a mapping with a 'type'")
            continue
        kind = a.get("type")
        if kind not in ANALYSES:
            problems.append(f"{where}.type: unknown analysis type {kind!r} (expected one of {sorted(ANALYSES)})")
            continue
        required, optional = ANALYSES[kind]
        allowed = {**_COMMON, **required, **optional}
        problems += [f"{where}.{k}: unknown key for {kind} (expected one of {sorted(allowed)})"
                     for k in a if k not in allowed]
        problems += [f"{where}.{k}: required for {kind}" for k in required if k not in a]
        for k, v in a.items():
            msg = _kind_problem(v, allowed[k], names) if k in allowed else None
            if msg:
                problems.append(f"{where}.{k}: {msg}")
    return problems


def _endpoint_problems(where: str, ep: Any) -> list[str]:
    if not isinstance(ep, dict):
        return [f"{where}: expected {{time: <column>, event: <column>}} or {{start: <date column>, "
                "event_date: <date column(s)>, censor_date: <date column>}}"]
    allowed = {"time", "event", "start", "event_date", "censor_date", "unit", "label"}
    out = [f"{where}.{k}: unknown key (expected one of {sorted(allowed)})" for k in ep if k not in allowed]
    if {"time", "event"} <= set(ep):
        if set(ep) & {"start", "event_date", "censor_date"}:
            out.append(f"{where}: give either time/event columns or start/event_date/censor_date dates, not both")
    elif not {"start", "event_date", "censor_date"} <= set(ep):
        out.append(f"{where}: expected time and event columns, or start, event_date and censor_date")
    if ep.get("unit", "months") not in _UNIT_DAYS:
        out.append(f"{where}.unit: expected one of {sorted(_UNIT_DAYS)}, got {ep.get('unit')!r}")
    for k in ("time", "event", "start", "censor_date", "label"):
        if k in ep and not isinstance(ep[k], str):
            out.append(f"{where}.{k}: expected a name (text)")
    if "event_date" in ep and _kind_problem(ep["event_date"], "columns", set()):
        out.append(f"{where}.event_date: expected a date column or a list of date columns (earliest counts)")
    return out


def _derive_problems(where: str, d: Any) -> list[str]:
    if not isinstance(d, dict) or not isinstance(d.get("name"), str):
        return [f"{where}: expected {{name: <new column>, <operation>: ...}} with one of {list(_DERIVE_OPS)}"]
    ops = [k for k in d if k in _DERIVE_OPS]
    extra = [k for k in d if k not in (*_DERIVE_OPS, "name", "output")]
    out = [f"{where}.{k}: unknown key (expected name and one of {list(_DERIVE_OPS)})" for k in extra]
    if len(ops) != 1:
        return out + [f"{where}: expected exactly one operation of {list(_DERIVE_OPS)}, got {ops}"]
    op, arg = ops[0], d[ops[0]]
    if op == "score" and str(arg).lower() not in _SCORES:
        out.append(f"{where}.score: unknown score {arg!r} (expected one of {sorted(set(_SCORES))})")
    if op == "score" and d.get("output", "points") not in ("points", "group"):
        out.append(f"{where}.output: expected points or group")
    if op in ("emd_pmd", "combine") and (not isinstance(arg, list) or len(arg) != 2 and op == "emd_pmd"
                                         or any(not isinstance(a, str) for a in arg)):
        out.append(f"{where}.{op}: expected a list of columns" + (" [emd, pmd]" if op == "emd_pmd" else ""))
    if op == "cut" and not (isinstance(arg, dict) and isinstance(arg.get("column"), str)
                            and len(set(arg) & {"above", "at_least"}) == 1
                            and not _kind_problem(arg.get("above", arg.get("at_least")), "number", set())):
        out.append(f"{where}.cut: expected {{column: <column>, above: <number>}} (or at_least: <number>)")
    if op == "log" and not isinstance(arg, str):
        out.append(f"{where}.log: expected a column name")
    if op == "labels" and not (isinstance(arg, dict) and isinstance(arg.get("column"), str)
                               and isinstance(arg.get("values"), dict)):
        out.append(f"{where}.labels: expected {{column: <column>, values: {{true: EMD, false: No EMD}}}}")
    return out


def _raise(problems: list[str], source: str, stage: str) -> None:
    if problems:
        listing = "\n  - ".join(problems)
        raise InputError(f"{len(problems)} problem(s) in the analysis plan ({stage}):\n  - {listing}", source=source)


# ---------------------------------------------------------------------------------------------------------------
# the analysis table
# ---------------------------------------------------------------------------------------------------------------
def _coerce(df: pd.DataFrame) -> pd.DataFrame:
    """Give text columns read from CSV their type: numbers as float, true/false as boolean (missing kept)."""
    out = df.copy()
    truth = {"true": True, "false": False, "yes": True, "no": False}
    for col in out.columns:
        s = out[col]
        if s.dtype != object or col in ("patient_id", "study_id"):  # ids stay text, even "001"
            continue
        values = s.dropna().map(lambda v: v.strip() if isinstance(v, str) else v)
        values = values[values != ""]
        if values.empty:
            continue
        if values.map(lambda v: isinstance(v, (bool, np.bool_)) or str(v).lower() in truth).all():
            out[col] = s.map(lambda v: None if _missing(v) or v == "" else
                             truth.get(str(v).strip().lower(), v)).astype("boolean")
            continue
        numbers = pd.to_numeric(values, errors="coerce")
        if numbers.notna().all():
            out[col] = pd.to_numeric(s.replace("", None), errors="coerce")
    return out


def _drop_identifiers(df: pd.DataFrame, table: str, notes: list[str]) -> pd.DataFrame:
    found = [c for c in df.columns if c.lower() in IDENTIFIER_COLUMNS]
    if found:
        notes.append(f"Identifier column(s) {found} of the {table} table were dropped before analysis "
                     "(use --include-identifiers to keep them).")
    return df.drop(columns=found)


def _imaging_table(source, spec: dict, notes: list[str]) -> pd.DataFrame:
    """The imaging table with ``patient_id`` (from the plan's ``imaging.ids`` when given).

    A file is read and validated with :func:`carpet.cohort.schema.read_imaging` after the ids are mapped
    (the schema requires ``patient_id``); a DataFrame is taken as already validated.
    """
    from carpet.cohort.schema import load_table, read_imaging

    name = None if isinstance(source, pd.DataFrame) else str(source)
    img = source.copy() if name is None else load_table(Path(source))
    ids = spec.get("ids")
    if ids:
        if "study_id" not in img:
            raise InputError("the plan maps study ids to patients but the imaging table has no study_id column",
                             source=name or "imaging table", where="plan imaging.ids")
        img["patient_id"] = img["study_id"].astype(str).map({str(k): str(v) for k, v in ids.items()})
        unmapped = int(img["patient_id"].isna().sum())
        if unmapped:
            notes.append(f"{unmapped} imaging row(s) whose study_id is not in the plan's imaging.ids were left out.")
        img = img.dropna(subset=["patient_id"])
    elif "patient_id" not in img:
        raise InputError("the imaging table has no patient_id column", source=name or "imaging table",
                         hint="add patient_id, or map study ids in the plan: imaging: {ids: {study_id: patient_id}}")
    return img if name is None else read_imaging(img, name=name)


def _merge_imaging(data: pd.DataFrame, imaging: pd.DataFrame, spec: dict, notes: list[str]) -> pd.DataFrame:
    img = imaging.drop(columns=["source_row"], errors="ignore")
    if "study_date" in img:
        img = img.sort_values("study_date", kind="stable")
    img = img.groupby("patient_id", sort=False).nth(-1 if spec.get("select") == "last" else 0)
    overlap = [c for c in img.columns if c in data.columns and c != "patient_id"]
    if overlap:
        notes.append(f"Imaging values replace the clinical table's column(s) {overlap}.")
    merged = data.drop(columns=overlap).merge(img, on="patient_id", how="left")
    notes.append(f"Imaging merged on patient_id ({spec.get('select', 'first')} study per patient): "
                 f"{int(merged['patient_id'].isin(img['patient_id']).sum())} of {len(merged)} patients have one.")
    return merged


def _with_assessments(data: pd.DataFrame, assessments, therapies, spec: dict | None, endpoints: dict,
                      record: dict, notes: list[str]) -> pd.DataFrame:
    """Add IMWG ``best_response``, ``progression_date``, ``refractory`` (and PFS when the plan asks)."""
    from carpet.cohort.endpoints import pfs
    from carpet.scores.imwg import assess_cohort

    result = assess_cohort(data, assessments, therapies)
    record["imwg"] = result.provenance
    prog = result.progression[["patient_id", "best_response", "progression_date", "refractory"]].copy()
    prog["progression_date"] = pd.to_datetime(prog["progression_date"].replace("", None))
    overlap = [c for c in prog.columns if c in data.columns and c != "patient_id"]
    if overlap:
        notes.append(f"IMWG results (from the assessments) replace the clinical table's column(s) {overlap}.")
    data = data.drop(columns=overlap).merge(prog, on="patient_id", how="left")
    if spec and spec.get("pfs"):
        name = spec["pfs"]
        table = pfs(data, result.progression).set_index("patient_id")
        data[f"{name}_months"] = data["patient_id"].map(table["time_months"])
        data[f"{name}_event"] = data["patient_id"].map(table["event"])
        endpoints[name] = {"time": f"{name}_months", "event": f"{name}_event", "unit": "months",
                           "label": "PFS from infusion (IMWG 2016 progression or death)"}
    return data


def _date_endpoint(data: pd.DataFrame, name: str, ep: dict) -> pd.DataFrame:
    """Time and event from dates: earliest of the event dates, else censored at the censoring date."""
    from carpet.cohort.endpoints import event_table

    events = _by_list(ep["event_date"])
    dates = {c: pd.to_datetime(data[c]) for c in [ep["start"], ep["censor_date"], *events]}
    table = event_table(name, data["patient_id"], dates[ep["start"]], [(dates[c], c) for c in events],
                   dates[ep["censor_date"]])
    unit = ep.get("unit", "months")
    data = data.copy()
    data[f"{name}_{unit}"] = table["time_days"].to_numpy() / _UNIT_DAYS[unit]
    data[f"{name}_event"] = table["event"].to_numpy()
    return data


def _derive(data: pd.DataFrame, d: dict, where: str) -> tuple[pd.DataFrame, dict]:
    """Add one derived column; returns the table and the derivation's record for provenance."""
    from carpet.cohort.patterns import emd_pmd_status

    name = d["name"]
    data = data.copy()
    if "score" in d:
        from carpet.scores.risk import score_patients

        score = _SCORES[str(d["score"]).lower()]
        scored, prov = score_patients(data, scores=(score,), cytogenetic_rules=())
        key = score.lower().replace("-", "_")
        column = key if d.get("output", "points") == "points" else f"{key}_group"
        data[name] = scored[column].to_numpy()
        if d.get("output", "points") == "points":
            data[name] = pd.to_numeric(data[name], errors="coerce")
        return data, {"score": score, "output": d.get("output", "points"), "provenance": prov,
                      "first_patient": str(scored[f"{key}_reason"].iloc[0]) if len(scored) else ""}
    if "emd_pmd" in d:
        emd, pmd = d["emd_pmd"]
        status = [emd_pmd_status(e, p) for e, p in zip(data[emd], data[pmd])]
        data[name] = pd.Series([_EMD_PMD_LABELS.get(s) for s in status], index=data.index, dtype=object)
        return data, {"emd_pmd": [emd, pmd], "labels": _EMD_PMD_LABELS, "unknown": "missing"}
    if "cut" in d:
        cut = d["cut"]
        x = pd.to_numeric(data[cut["column"]], errors="coerce")
        flag = x > cut["above"] if "above" in cut else x >= cut["at_least"]
        data[name] = flag.astype("boolean").mask(x.isna())
        return data, {"cut": cut, "rule": "column > above" if "above" in cut else "column >= at_least"}
    if "log" in d:
        x = pd.to_numeric(data[d["log"]], errors="coerce")
        if (x <= 0).any():
            raise InputError(f"log of '{d['log']}' needs values > 0; {int((x <= 0).sum())} are not",
                             where=f"plan {where}.log")
        data[name] = np.log(x)
        return data, {"log": d["log"], "base": "e"}
    if "labels" in d:
        spec = d["labels"]
        values = {_label_key(k): v for k, v in spec["values"].items()}
        data[name] = data[spec["column"]].map(lambda v: None if _missing(v) else values.get(_label_key(v), str(v)))
        return data, {"labels": spec}
    cols = d["combine"]
    data[name] = [None if any(_missing(v) for v in row) else " / ".join(str(v) for v in row)
                  for row in data[cols].itertuples(index=False)]
    return data, {"combine": cols}


def _label_key(v) -> str:
    """Match plan keys to data values: true/false, and 1 to 1.0 (numbers read from CSV are floats)."""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v)).lower()
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v).strip().lower()


def _missing(v) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def _analysis_columns(a: dict, endpoints: dict) -> list[tuple[str, str]]:
    """(key path suffix, column) of every column an analysis reads."""
    cols = []
    required, optional = ANALYSES[a["type"]]
    for key, kind in {**required, **optional}.items():
        if key not in a:
            continue
        if kind == "column":
            cols.append((key, a[key]))
        elif kind == "columns":
            cols += [(key, c) for c in ([a[key]] if isinstance(a[key], str) else a[key])]
        elif kind == "models":
            cols += [(f"{key}.{m}", c) for m, v in a[key].items() for c in ([v] if isinstance(v, str) else v)]
        elif kind == "endpoint":
            ep = endpoints[a[key]]  # a date endpoint whose dates are missing has no time/event: reported already
            cols += [(key, ep[k]) for k in ("time", "event") if k in ep]
    return cols


# ---------------------------------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------------------------------
class _Writer:
    """Writes each table and figure to its file and to both reports (HTML and PDF)."""

    def __init__(self, out: Path, title: str, subtitle: str, simulated: bool):
        from carpet.report.html import Report
        from carpet.report.pdf import PdfReport

        self.out, self.simulated, self.files = out, simulated, {}
        banner = "SIMULATED" if simulated else ""
        self.html = Report(title, subtitle=(f"{SIMULATED_BANNER}. " if simulated else "") + subtitle)
        self.pdf = PdfReport(title, subtitle=self.html.subtitle, banner=banner,
                             metadata=({"Subject": "SIMULATED DATA (not patients)", "Keywords": "SIMULATED"}
                                       if simulated else {}))
        (out / "figures").mkdir(parents=True, exist_ok=True)

    def section(self, title: str) -> None:
        self.html.section(title)
        self.pdf.section(title)

    def text(self, text: str) -> None:
        self.html.text(text)
        self.pdf.text(text)

    def note(self, text: str) -> None:
        self.html.note(text)
        self.pdf.note(text)

    def table(self, df: pd.DataFrame, stem: str, caption: str, display: pd.DataFrame | None = None) -> str:
        """Write ``df`` to ``<stem>.csv`` and show it (or the more readable ``display``) in the reports."""
        path = self.out / f"{stem}.csv"
        with open(path, "w", encoding="utf-8", newline="") as fh:
            if self.simulated:
                fh.write(f"# {SIMULATED_BANNER}\n")
            df.to_csv(fh, index=False)
        self.files[path.name] = path
        shown = df if display is None else display
        self.html.table(shown, caption=f"{caption} ({path.name})")
        self.pdf.table(shown, caption=f"{caption} ({path.name})")
        return path.name

    def figure(self, fig, stem: str, caption: str) -> list[str]:
        if self.simulated:
            fig.text(0.995, 0.005, "SIMULATED", ha="right", va="bottom", fontsize=7, color="#D55E00",
                     fontweight="bold")
        import matplotlib.pyplot as plt

        names = []
        for ext in ("png", "pdf"):
            path = self.out / "figures" / f"{stem}.{ext}"
            fig.savefig(path, bbox_inches="tight")  # PNG at the journal style's 300 dpi
            self.files[f"figures/{path.name}"] = path
            names.append(f"figures/{path.name}")
        plt.close(fig)
        png = (self.out / "figures" / f"{stem}.png").read_bytes()
        self.pdf.image(png, caption)
        # The PNG just written goes into the HTML as is: Report.figure would draw the figure once more.
        self.html.image(png, caption)
        return names


def run_analysis(patients: pd.DataFrame, plan: dict | str | Path, out_dir: str | Path, imaging=None,
                 assessments=None, therapies=None, *, include_identifiers: bool = False,
                 input_files: dict[str, str | Path] | None = None) -> AnalysisResult:
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
    if imaging is not None:
        img = _coerce(_imaging_table(imaging, plan.get("imaging") or {}, notes))
        if not include_identifiers:
            img = _drop_identifiers(img, "imaging", notes)
        data = _merge_imaging(data, img, plan.get("imaging") or {}, notes)
    if assessments is not None:
        data = _with_assessments(data, assessments, therapies, plan.get("assessments"), endpoints, record, notes)
    elif (plan.get("assessments") or {}).get("pfs"):
        _raise(["assessments.pfs: needs the assessments table (--assessments LABS.csv)"], plan_source, "inputs")
    data, derived = _prepare(data, plan, endpoints, plan_source)
    simulated = bool("simulated" in data and data["simulated"].fillna(False).astype(bool).any())

    writer = _Writer(out, plan["title"], plan.get("subtitle", ""), simulated)
    if simulated:
        writer.note(f"{SIMULATED_BANNER}: every number, table and figure here comes from simulated data.")
    writer.text(f"{len(data)} patients; plan {plan_source} (sha256 {plan_sha[:12]}).")
    for note in notes:
        writer.note(note)
    results: dict[str, Any] = {}
    seed = int(plan.get("seed", 0))
    used_names: set[str] = set()
    for i, a in enumerate(plan["analyses"]):
        stem = _unique(a.get("name") or _default_stem(a), used_names)
        writer.section(_title(a, endpoints))
        try:
            res = _RUNNERS[a["type"]](data, a, endpoints, writer, stem, seed)
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
                "notes": notes, "endpoints": endpoints, "derived": derived, "analyses": results, "provenance": prov}
    files = writer.files
    files["results.json"] = out / "results.json"
    files["results.json"].write_text(json.dumps(_jsonable(document), indent=2, allow_nan=False), encoding="utf-8")
    files["report.pdf"] = writer.pdf.write(out / "report.pdf")
    files["report.html"] = writer.html.write(out / "report.html")
    return AnalysisResult(results=results, files=files, notes=notes, simulated=simulated, provenance=prov)


def _prepare(data: pd.DataFrame, plan: dict, endpoints: dict, source: str) -> tuple[pd.DataFrame, dict]:
    """Derive endpoints and columns, then check that every column the plan names exists."""
    problems, derived = [], {}
    for name, ep in endpoints.items():
        if "time" in ep:
            continue
        missing = [c for c in [ep["start"], ep["censor_date"], *_by_list(ep["event_date"])] if c not in data]
        if missing:
            problems.append(f"endpoints.{name}: date column(s) {missing} not in the data")
            continue
        data = _date_endpoint(data, name, ep)
        unit = ep.get("unit", "months")
        ep.update(time=f"{name}_{unit}", event=f"{name}_event")
    for i, d in enumerate(plan.get("derive") or []):
        op = next(k for k in d if k in _DERIVE_OPS)
        arg = d[op]
        needed = (arg if isinstance(arg, list) else [arg["column"]] if isinstance(arg, dict) else
                  [] if op == "score" else [arg])
        missing = [c for c in needed if c not in data]
        if missing:
            problems.append(f"derive[{i}].{op}: column(s) {missing} not in the data{_dropped_hint(missing)}")
            continue
        data, derived[d["name"]] = _derive(data, d, f"derive[{i}]")
        if data[d["name"]].isna().all():
            why = derived[d["name"]].get("first_patient", "")
            problems.append(f"derive[{i}]: '{d['name']}' has no value for any patient (an input is missing "
                            f"for every patient{'; first patient: ' + why if why else ''})")
    for name, ep in endpoints.items():
        for key in ("time", "event"):
            if ep.get(key) and ep[key] not in data:
                problems.append(f"endpoints.{name}.{key}: column '{ep[key]}' not in the data")
    for i, a in enumerate(plan["analyses"]):
        for key, col in _analysis_columns(a, endpoints):
            if col not in data:
                problems.append(f"analyses[{i}].{key}: column '{col}' not in the data{_dropped_hint([col])}")
    if problems:
        problems.append(f"(available columns: {sorted(map(str, data.columns))})")
    _raise(problems, source, "columns")
    return data, derived


def _dropped_hint(columns) -> str:
    return (" (identifier columns are dropped; --include-identifiers keeps them)"
            if any(c.lower() in IDENTIFIER_COLUMNS for c in columns) else "")


def _unique(stem: str, used: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)
    name, k = stem, 2
    while name in used:
        name, k = f"{stem}_{k}", k + 1
    used.add(name)
    return name


def _by_list(value) -> list[str]:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def _default_stem(a: dict) -> str:
    t = a["type"]
    if t == "table1":
        return "table1"
    if t == "km":
        return "_".join(["km", a["endpoint"], *_by_list(a.get("by"))])
    if t == "transitions":
        return f"transitions_{a['before']}_{a['after']}"
    if t in ("cutpoint", "cutoff"):
        return f"{t}_{a['endpoint']}_{a['marker']}"
    if t == "landmark":
        return f"landmark_{a['endpoint']}_{a['by']}"
    return f"{t}_{a['endpoint']}"


def _title(a: dict, endpoints: dict) -> str:
    return a.get("title") or _default_title(a, endpoints)


def _default_title(a: dict, endpoints: dict) -> str:
    label = endpoints[a["endpoint"]].get("label", a["endpoint"]) if "endpoint" in a else ""
    t = a["type"]
    if t == "table1":
        return f"Patient characteristics by {a['by']}"
    if t == "km":
        by = " × ".join(_by_list(a.get("by")))
        return f"{label} by {by}" if by else label
    if t == "transitions":
        return f"{a['before']} → {a['after']}"
    if t == "cox":
        return f"Cox model of {label}"
    if t == "cutpoint":
        return f"Optimised cut-point of {a['marker']} for {label}"
    if t == "cutoff":
        return f"{label} by {a['marker']} > {a['value']:g}"
    if t == "landmark":
        return f"Landmark at {a['time']:g}: {label} by {a['by']}"
    return f"Model comparison for {label}"


def _survival_frame(data: pd.DataFrame, ep: dict, columns: list[str]) -> pd.DataFrame:
    """Rows with time, event and ``columns`` all known (event as int)."""
    frame = data.dropna(subset=[ep["time"], ep["event"], *columns]).copy()
    from carpet.stats._input import survival_arrays

    time, event = survival_arrays(frame[ep["time"]], frame[ep["event"]],
                                  source=f"clinical table, endpoint columns '{ep['time']}'/'{ep['event']}'")
    frame[ep["time"]], frame[ep["event"]] = time, event.astype(int)
    return frame


def _group_label(column: str, value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return column if value else f"no {column}"
    return str(value)


def _groups(frame: pd.DataFrame, by: list[str]) -> pd.Series:
    if not by:
        return pd.Series("All patients", index=frame.index)
    parts = [frame[c].map(lambda v, c=c: _group_label(c, v)) for c in by]
    return parts[0].str.cat(parts[1:], sep=" / ") if len(parts) > 1 else parts[0]


def _risk_times(a: dict, t_max: float) -> list[float]:
    if "risk_times" in a:
        return [float(v) for v in a["risk_times"]]
    step = max(float(np.ceil(t_max / 5)), 1.0)
    return [float(v) for v in np.arange(0.0, t_max + 1e-9, step)]


def _km_table(times: np.ndarray, events: np.ndarray, groups: pd.Series, risk_times: list[float]):
    """Per group: KM fit, n, events, median and CI, survival at ``risk_times`` (long format)."""
    from carpet.stats import kaplan_meier

    rows, per_group, fits = [], {}, {}
    for g in sorted(groups.unique(), key=str):
        mask = (groups == g).to_numpy()
        km = kaplan_meier(times[mask], events[mask])
        lo, hi = km.median_ci
        at = km.survival_at(risk_times)
        per_group[g] = {"n": km.n, "events": km.events, "median": km.median, "median_lower": lo, "median_upper": hi,
                        "survival_at": at.to_dict("records")}
        fits[g] = km
        rows += [{"group": g, "n": km.n, "events": km.events, "median": km.median, "median_lower": lo,
                  "median_upper": hi, **r} for r in at.to_dict("records")]
    return pd.DataFrame(rows), per_group, fits


def _km_display(per_group: dict, risk_times: list[float], unit: str) -> pd.DataFrame:
    """One row per group for the reports: n, events, median (95% CI), survival (95% CI) at each time."""
    def num(v):
        return "NR" if v is None or v != v else f"{v:.1f}"

    rows = []
    for g, r in per_group.items():
        row = {"group": g, "n": r["n"], "events": r["events"],
               f"median {unit} (95% CI)": f"{num(r['median'])} ({num(r['median_lower'])}–{num(r['median_upper'])})"}
        for at in r["survival_at"]:
            row[f"S({at['time']:g})"] = (f"{at['surv']:.2f} ({at['lower']:.2f}–{at['upper']:.2f})"
                                         if at["n_risk"] > 0 else f"{at['surv']:.2f}")
        rows.append(row)
    return pd.DataFrame(rows)


def _km_block(writer: _Writer, frame: pd.DataFrame, ep: dict, groups: pd.Series, a: dict, stem: str,
              title: str) -> dict:
    """KM table + figure + log-rank for a grouping of ``frame``; returns the numbers."""
    from carpet.report.km_plot import km_figure
    from carpet.stats import logrank

    t, e = frame[ep["time"]].to_numpy(float), frame[ep["event"]].to_numpy(int)
    risk_times = _risk_times(a, float(t.max()))
    table, per_group, fits = _km_table(t, e, groups, risk_times)
    res: dict[str, Any] = {"endpoint": ep, "groups": per_group, "risk_times": risk_times,
                           "provenance": next(iter(fits.values())).provenance}
    files = [writer.table(table, stem, f"Kaplan–Meier estimates, {title}",
                          display=_km_display(per_group, risk_times, ep.get("unit", "months")))]
    if groups.nunique() >= 2:
        lr = logrank(t, e, groups.to_numpy())
        res["logrank"] = {"statistic": lr.statistic, "df": lr.df, "p_value": lr.p_value, "provenance": lr.provenance}
        writer.text(f"Log-rank test: chi-square {lr.statistic:.3f} on {lr.df} df, p = {lr.p_value:.4g}.")
    plot_groups = {g: (t[(groups == g).to_numpy()], e[(groups == g).to_numpy()]) for g in per_group}
    longest = max(len(str(g)) for g in plot_groups)
    fig, _ = km_figure(plot_groups, risk_times=risk_times, title=title, show_ci=len(plot_groups) <= 2,
                       xlabel=ep.get("unit", "months").capitalize(),
                       figsize=(4.6 + max(0, longest - 18) * 0.09, 3.9))  # room for long group names
    files += writer.figure(fig, stem, f"{title}; Kaplan–Meier with 95% CI and number at risk.")
    res["files"] = files
    return res


def _excluded_note(writer: _Writer, data: pd.DataFrame, frame: pd.DataFrame, what: str) -> int:
    n = len(data) - len(frame)
    if n:
        writer.note(f"{n} patient(s) with a missing {what} were left out of this analysis.")
    return n


def _exact_limit(a: dict) -> dict:
    """``max_tables`` of the exact r×c Fisher test when the plan caps it (beyond it: seeded Monte Carlo p)."""
    return {"max_tables": a["max_tables"]} if "max_tables" in a else {}


def _run_table1(data, a, endpoints, writer, stem, seed):
    from carpet.stats.table1 import table1

    t1 = table1(data, by=a["by"], continuous=_by_list(a.get("continuous")),
                categorical=_by_list(a.get("categorical")), nonnormal=_by_list(a.get("nonnormal")),
                labels=a.get("labels"), seed=seed, **_exact_limit(a))
    files = [writer.table(t1.summary, stem, f"Table 1 by {a['by']}")]
    return {"tests": t1.tests.to_dict("records"), "table": t1.summary.to_dict("records"),
            "provenance": t1.provenance, "files": files}


def _run_km(data, a, endpoints, writer, stem, seed):
    ep, by = endpoints[a["endpoint"]], _by_list(a.get("by"))
    frame = _survival_frame(data, ep, by)
    res = _km_block(writer, frame, ep, _groups(frame, by), a, stem, _title(a, endpoints))
    res["n_excluded"] = _excluded_note(writer, data, frame, f"time, event or {' / '.join(by) or 'value'}")
    return res


def _run_cox(data, a, endpoints, writer, stem, seed):
    from carpet.stats import cox

    ep = endpoints[a["endpoint"]]
    covs, strata = _by_list(a["covariates"]), _by_list(a.get("strata"))
    fit = cox(data, duration=ep["time"], event=ep["event"], covariates=covs, strata=strata or None)
    summary = fit.summary.rename_axis("term").reset_index()
    files = [writer.table(summary, stem, f"Cox model (n = {fit.n}, events = {fit.n_events})")]
    if fit.n_dropped:
        writer.note(f"{fit.n_dropped} patient(s) with a missing value were left out of the Cox model.")
    for w in fit.warnings:  # R's words, e.g. "Loglik converged before variable 2; coefficient may be infinite."
        writer.note(f"Cox model: {w}")
    tests = {name: {"statistic": t.statistic, "df": t.df, "p_value": t.p_value}
             for name, t in (("lr_test", fit.lr_test), ("wald_test", fit.wald_test), ("score_test", fit.score_test))}
    zph = fit.zph().reset_index()
    writer.text(f"Concordance {fit.concordance:.3f} (SE {fit.concordance_se:.3f}); likelihood-ratio test p = "
                f"{fit.lr_test.p_value:.4g}; proportional hazards (cox.zph, global) p = {zph['p'].iloc[-1]:.4g}.")
    return {"endpoint": ep, "summary": summary.to_dict("records"), "n": fit.n, "n_events": fit.n_events,
            "n_dropped": fit.n_dropped, "concordance": fit.concordance, "concordance_se": fit.concordance_se,
            **tests, "zph": zph.to_dict("records"), "warnings": list(fit.warnings), "provenance": fit.provenance,
            "files": files}


def _run_transitions(data, a, endpoints, writer, stem, seed):
    from carpet.report.sankey import sankey_figure
    from carpet.stats.transitions import transitions

    order = [str(v) for v in a["order"]]
    tr = transitions(data, a["before"], a["after"], order=order, seed=seed, **_exact_limit(a))
    files = [writer.table(tr.table.reset_index(), stem,
                          f"{a['before']} (rows) → {a['after']} (columns), patients")]
    writer.text(f"{tr.test.test}: p = {tr.test.p_text or f'{tr.test.p_value:.4g}'} (patients with both states known).")
    fig = sankey_figure(tr.flows, order=list(tr.table.index), left_title=a.get("before_title", a["before"]),
                        right_title=a.get("after_title", a["after"]))
    files += writer.figure(fig, stem, f"Transitions {a['before']} → {a['after']}.")
    return {"table": {str(k): {str(c): int(n) for c, n in row.items()} for k, row in tr.table.iterrows()},
            "test": tr.test.__dict__, "provenance": tr.provenance, "files": files}


def _run_cutpoint(data, a, endpoints, writer, stem, seed):
    from carpet.stats import cutpoint

    ep = endpoints[a["endpoint"]]
    frame = _survival_frame(data, ep, [a["marker"]])
    x = pd.to_numeric(frame[a["marker"]]).to_numpy(float)
    cp = cutpoint(frame[ep["time"]], frame[ep["event"]], x, min_prop=a.get("min_prop", 0.1),
                  max_prop=a.get("max_prop", 0.9), n_perm=a.get("n_perm", 0), seed=seed)
    writer.text(str(cp) + ". An optimised cut-point is reported only with its search-adjusted p-value.")
    files = [writer.table(cp.summary, stem, f"Maximally selected log-rank cut-point of {a['marker']}")]
    groups = pd.Series(np.where(x > cp.value, f"{a['marker']} > {cp.value:g}", f"{a['marker']} ≤ {cp.value:g}"),
                       index=frame.index)
    km = _km_block(writer, frame, ep, groups, a, f"{stem}_km", f"{ep.get('label', a['endpoint'])} by optimised "
                   f"cut-point of {a['marker']}")
    n_excl = _excluded_note(writer, data, frame, f"time, event or {a['marker']}")
    return {"endpoint": ep, "cutpoint": cp.value, "statistic": cp.statistic, "p_value": cp.p_value,
            "p_value_lau94": cp.p_value_lau94, "p_value_perm": cp.p_value_perm, "n_perm": cp.n_perm,
            "n_candidates": cp.n_candidates, "n": cp.n, "n_excluded": n_excl, "seed": seed,
            "provenance": cp.provenance, "km": km, "files": files + km["files"]}


def _run_cutoff(data, a, endpoints, writer, stem, seed):
    from carpet.stats.cutpoint import evaluate_cutoff

    ep = endpoints[a["endpoint"]]
    frame = _survival_frame(data, ep, [a["marker"]])
    x = pd.to_numeric(frame[a["marker"]]).to_numpy(float)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ev = evaluate_cutoff(frame[ep["time"]], frame[ep["event"]], x, float(a["value"]),
                             marker_method=a.get("marker_method"), cutoff_method=a.get("cutoff_method"),
                             strict=a.get("strict", True))
    warned = [str(w.message) for w in caught]
    for message in warned:  # a published cut-off on a marker made another way must be loud, not silent
        writer.note(f"WARNING: {message}.")
    files = [writer.table(ev.summary, stem, f"Pre-specified cut-off {a['marker']} > {a['value']:g}")]
    groups = pd.Series(np.where(x > a["value"], f"{a['marker']} > {a['value']:g}",
                                f"{a['marker']} ≤ {a['value']:g}"), index=frame.index)
    km = _km_block(writer, frame, ep, groups, a, f"{stem}_km", _title(a, endpoints))
    return {"endpoint": ep, **ev.summary.iloc[0].to_dict(), "logrank_df": ev.logrank.df, "warnings": warned,
            "n_excluded": _excluded_note(writer, data, frame, f"time, event or {a['marker']}"),
            "provenance": ev.provenance, "km": km, "files": files + km["files"]}


def _run_compare_models(data, a, endpoints, writer, stem, seed):
    from carpet.stats.models import compare_models

    ep = endpoints[a["endpoint"]]
    models = {str(k): _by_list(v) for k, v in a["models"].items()}
    frame = data.copy()
    for c in {c for covs in models.values() for c in covs}:
        if pd.api.types.is_bool_dtype(frame[c]):  # 0/1 coding, as compare_models asks for numeric covariates
            frame[c] = frame[c].astype("Float64").astype(float)
    frame[ep["event"]] = pd.to_numeric(frame[ep["event"]])
    cmp = compare_models(frame, ep["time"], ep["event"], models, n_boot=a.get("n_boot", 200), seed=seed,
                         horizon=a.get("horizon"))
    summary = cmp.summary.assign(covariates=cmp.summary["covariates"].map(
        lambda v: ", ".join(v) if isinstance(v, (list, tuple)) else v))
    files = [writer.table(summary, stem, "Cox models compared on the same patients"),
             writer.table(cmp.differences, f"{stem}_cindex_differences", "Bootstrap differences in C-index")]
    if len(cmp.lr_tests):
        files.append(writer.table(cmp.lr_tests, f"{stem}_lr_tests", "Likelihood-ratio tests of nested models"))
    return {"endpoint": ep, "summary": summary.to_dict("records"), "differences": cmp.differences.to_dict("records"),
            "lr_tests": cmp.lr_tests.to_dict("records"), "provenance": cmp.provenance, "files": files}


def _run_landmark(data, a, endpoints, writer, stem, seed):
    from carpet.stats.landmark import landmark

    ep = endpoints[a["endpoint"]]
    frame = _survival_frame(data, ep, [a["by"]])
    lm = landmark(frame, ep["time"], ep["event"], landmark_time=float(a["time"]), group=a["by"])
    files = [writer.table(lm.at_risk, f"{stem}_at_risk", f"Patients at risk at the landmark ({a['time']:g})")]
    groups = lm.data[a["by"]].map(lambda v: _group_label(a["by"], v))
    shifted = {**ep, "time": "time_from_landmark"}
    km = _km_block(writer, lm.data, shifted, groups, a, stem, _title(a, endpoints))
    return {"endpoint": ep, "landmark_time": float(a["time"]), "at_risk": lm.at_risk.to_dict("records"),
            "logrank": {"statistic": lm.logrank.statistic, "df": lm.logrank.df, "p_value": lm.logrank.p_value},
            "n_excluded": _excluded_note(writer, data, frame, f"time, event or {a['by']}"),
            "provenance": lm.provenance, "km": km, "files": files + km["files"]}


_RUNNERS = {"table1": _run_table1, "km": _run_km, "cox": _run_cox, "transitions": _run_transitions,
            "cutpoint": _run_cutpoint, "cutoff": _run_cutoff, "compare_models": _run_compare_models,
            "landmark": _run_landmark}
assert set(_RUNNERS) == set(ANALYSES)


def _input_record(patients, imaging, assessments, input_files) -> dict:
    record = {}
    for name, table in (("clinical", patients), ("imaging", imaging), ("assessments", assessments)):
        if isinstance(table, pd.DataFrame):
            content = pd.util.hash_pandas_object(table.astype(str), index=False).to_numpy().tobytes()
            record[name] = {"rows": int(len(table)), "content_sha256": hashlib.sha256(content).hexdigest()}
    for name, path in (input_files or {}).items():
        if path is not None:
            record.setdefault(name, {}).update(path=str(path), sha256=file_sha256(path))
    return record


def _jsonable(obj):
    """Plain JSON: numpy scalars as numbers, NaN/NA as null, dates as ISO text."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if obj is None or obj is pd.NA or obj is pd.NaT:
        return None
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, (pd.Timestamp, np.datetime64)):
        return str(obj)
    return str(obj)
