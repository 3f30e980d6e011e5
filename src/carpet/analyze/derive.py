"""The analysis table: inputs typed and merged, endpoints derived from dates, derived columns added."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from carpet.analyze.plan import _DERIVE_OPS, _SCORES, _TABLE_OPS, _UNIT_DAYS, _analysis_columns, _by_list, _raise
from carpet.errors import InputError

#: Columns that identify a person; dropped from every input unless identifiers are asked for.
IDENTIFIER_COLUMNS = frozenset({
    "name", "patient_name", "first_name", "last_name", "given_name", "family_name", "full_name",
    "birth_date", "date_of_birth", "dob", "mrn", "medical_record_number", "ssn", "social_security_number",
    "address", "street", "phone", "telephone", "email", "e_mail"})

_NEEDS_TEXT = {"progression": "progression dates: the assessments table (--assessments) or a progression_date "
                              "column in the patients table",
               "assessments": "the assessments table (--assessments LABS.csv)",
               "therapies": "the therapies table (--therapies LINES.csv)"}
_EMD_PMD_LABELS = {"negative": "None", "emd_only": "EMD", "pmd_only": "PMD", "emd_and_pmd": "EMD+PMD"}


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


#: scan windows of ``imaging: {windows: default}``: days from infusion (inclusive) and which scan in the window
DEFAULT_WINDOWS = {"baseline": {"from_days": -60, "to_days": 0, "pick": "last"},
                   "day30": {"from_days": 14, "to_days": 45, "pick": "first"}}


def _merge_imaging(data: pd.DataFrame, imaging: pd.DataFrame, spec: dict, notes: list[str]) -> pd.DataFrame:
    img = imaging.drop(columns=["source_row"], errors="ignore")
    if spec.get("windows"):
        return _merge_windows(data, img, DEFAULT_WINDOWS if spec["windows"] == "default" else spec["windows"], notes)
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


def _merge_windows(data: pd.DataFrame, img: pd.DataFrame, windows: dict, notes: list[str]) -> pd.DataFrame:
    """Several scans per patient, one chosen per window of days from infusion; columns get ``_<window>``.

    ``baseline`` (60 days before infusion to the infusion day, the last scan) and ``day30`` (14 to 45 days after,
    the first scan) are the defaults; each column of a chosen scan becomes ``<column>_<window>`` beside
    ``days_from_infusion_<window>``.
    """
    if "study_date" not in img or "infusion_date" not in data:
        raise InputError("imaging windows need study_date in the imaging table and infusion_date in the patients "
                         "table", where="plan imaging.windows")
    img = img.merge(data[["patient_id", "infusion_date"]], on="patient_id", how="inner")
    img["days_from_infusion"] = (pd.to_datetime(img["study_date"]) - pd.to_datetime(img["infusion_date"])).dt.days
    img = img.drop(columns=["infusion_date"]).sort_values(["patient_id", "study_date"], kind="stable")
    merged = data
    for name, w in windows.items():
        inside = img[(img["days_from_infusion"] >= w["from_days"]) & (img["days_from_infusion"] <= w["to_days"])]
        chosen = inside.groupby("patient_id", sort=False).nth(-1 if w.get("pick", "first") == "last" else 0)
        chosen = chosen.rename(columns={c: f"{c}_{name}" for c in chosen.columns if c != "patient_id"})
        merged = merged.drop(columns=[c for c in chosen.columns if c in merged and c != "patient_id"])
        merged = merged.merge(chosen, on="patient_id", how="left")
        notes.append(f"Imaging window '{name}' ({w['from_days']} to {w['to_days']} days from infusion, "
                     f"{w.get('pick', 'first')} scan): {len(chosen)} of {len(data)} patients have a scan; "
                     f"{int((inside.groupby('patient_id').size() > 1).sum())} had more than one in the window.")
    return merged


def _with_assessments(data: pd.DataFrame, tables, spec: dict | None, endpoints: dict,
                      notes: list[str]) -> pd.DataFrame:
    """Add IMWG ``best_response``, ``progression_date``, ``refractory`` (and PFS when the plan asks)."""
    prog = tables.progression[["patient_id", "best_response", "progression_date", "refractory"]]
    overlap = [c for c in prog.columns if c in data.columns and c != "patient_id"]
    if overlap:
        notes.append(f"IMWG results (from the assessments) replace the clinical table's column(s) {overlap}.")
    data = data.drop(columns=overlap).merge(prog, on="patient_id", how="left")
    if spec and spec.get("pfs"):
        name = spec["pfs"]
        data = _add_endpoint(data, name, tables.endpoint("pfs"), "months")
        endpoints[name] = {"time": f"{name}_months", "event": f"{name}_event", "unit": "months",
                           "label": "PFS from infusion (IMWG 2016 progression or death)"}
    return data


def _add_endpoint(data: pd.DataFrame, name: str, table: pd.DataFrame, unit: str) -> pd.DataFrame:
    """Time (in ``unit``) and event columns of an event table, by patient (missing for patients not in it)."""
    table = table.set_index("patient_id")
    data = data.copy()
    data[f"{name}_{unit}"] = data["patient_id"].map(table["time_days"] / _UNIT_DAYS[unit])
    data[f"{name}_event"] = data["patient_id"].map(table["event"])
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


_CUT_RULES = {"above": (lambda x, v: x > v, ">"), "at_least": (lambda x, v: x >= v, ">="),
              "below": (lambda x, v: x < v, "<"), "at_most": (lambda x, v: x <= v, "<=")}


def _table_derive(data: pd.DataFrame, d: dict, tables) -> tuple[pd.DataFrame, dict]:
    """A column from the raw tables (IMWG results, therapy lines), by patient."""
    name = d["name"]
    if "imwg" in d:
        values, rec = tables.imwg_column(d["imwg"]), {"imwg": d["imwg"], **tables.record}
    elif "response_at" in d:
        values = tables.response_at(float(d["response_at"]))
        rec = {"response_at_day": d["response_at"], "rule": "best confirmed IMWG response up to that day after "
               "infusion; PD when progression came first", **tables.record}
    elif "first_line_after" in d:
        values = tables.first_line_after(d["first_line_after"], d.get("output", "class"))
        rec = {"first_line_after": d["first_line_after"], "output": d.get("output", "class"),
               "classes": "carpet.cohort.therapy.REGIMEN_CLASSES (a given regimen_class wins)"}
    elif "lines_after" in d:
        values, rec = tables.lines_after(), {"lines_after": "car_t", "rule": "lines started after the infusion"}
    else:
        spec = d["exposed_by"]
        values = tables.exposed_by(_by_list(spec.get("classes", "t_cell_engaging")), float(spec["within_months"]),
                                   spec.get("from", "progression"))
        rec = {"exposed_by": spec, "rule": "a line of these classes started within within_months of the start "
               "(exposure fixed at that landmark)"}
    data = data.copy()
    data[name] = data["patient_id"].map(values)
    return data, rec


def _derive(data: pd.DataFrame, d: dict, where: str, tables=None) -> tuple[pd.DataFrame, dict]:
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
    if "any_of" in d:
        # Kleene OR of true/false columns: true when any is true, false when all are false, else unknown
        flags = [data[c].map(lambda v: None if _missing(v) else bool(v)).astype("boolean") for c in d["any_of"]]
        out = flags[0]
        for f in flags[1:]:
            out = out | f
        data[name] = out
        return data, {"any_of": d["any_of"], "rule": "true if any is true, false if all are false, else unknown"}
    if "cut" in d:
        cut = d["cut"]
        x = pd.to_numeric(data[cut["column"]], errors="coerce")
        key = next(k for k in _CUT_RULES if k in cut)
        data[name] = _CUT_RULES[key][0](x, cut[key]).astype("boolean").mask(x.isna())
        return data, {"cut": cut, "rule": f"column {_CUT_RULES[key][1]} {key}"}
    if "cytogenetics" in d:
        from carpet.scores.risk import score_patients

        scored, prov = score_patients(data, scores=(), cytogenetic_rules=(d["cytogenetics"],))
        key = d["cytogenetics"].lower().replace("-", "_")
        data[name] = scored[f"{key}_group"].to_numpy()
        return data, {"cytogenetics": d["cytogenetics"], "provenance": prov,
                      "first_patient": str(scored[f"{key}_reason"].iloc[0]) if len(scored) else ""}
    if "responded" in d:
        from carpet.analyze.clinical import responded

        spec = d["responded"]
        data[name] = responded(data[spec["column"]], spec.get("at_least", "PR")).to_numpy()
        return data, {"responded": spec, "rule": f"IMWG category {spec.get('at_least', 'PR')} or better"}
    if any(op in d for op in _TABLE_OPS):
        return _table_derive(data, d, tables)
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
        keys = data[spec["column"]].map(lambda v: None if _missing(v) else _label_key(v))
        rec = {"labels": spec}
        if set(values) <= {"true", "false"} and set(keys.dropna()) <= {"0", "1"} and keys.notna().any():
            # a 0/1 coded yes/no column: 1 is true, 0 is false (said in the provenance, never kept as "1")
            keys = keys.map({"1": "true", "0": "false"})
            rec["coding"] = "0/1 read as false/true"
        unknown = sorted(set(keys.dropna()) - set(values))
        if unknown:
            raise InputError(f"column '{spec['column']}' holds {unknown}, which the labels do not name "
                             f"(labels for {sorted(values)})", where=f"plan {where}.labels",
                             hint="add a label for each value, or fix the column's coding")
        data[name] = keys.map(lambda k: None if k is None else values[k])
        return data, rec
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


def _prepare(data: pd.DataFrame, plan: dict, endpoints: dict, source: str,
             tables=None) -> tuple[pd.DataFrame, dict]:
    """Derive endpoints and columns, then check that every column the plan names exists."""
    from carpet.analyze.clinical import ENDPOINT_KINDS

    problems, derived, values = [], {}, []
    for name, ep in endpoints.items():
        if "time" in ep:
            continue
        unit = ep.get("unit", "months")
        if "derive" in ep:
            lacking = [n for n in ENDPOINT_KINDS[ep["derive"]] if tables is None or not tables.has(n)]
            if lacking:
                problems.append(f"endpoints.{name}.derive: {ep['derive']} needs {_NEEDS_TEXT[lacking[0]]}")
                continue
            data = _add_endpoint(data, name, tables.endpoint(ep["derive"], ep.get("death_is_event", True)), unit)
            ep.update(time=f"{name}_{unit}", event=f"{name}_event")
            derived[name] = {"endpoint": ep["derive"], **({"death_is_event": ep.get("death_is_event", True)}
                                                          if ep["derive"] == "pfs2" else {}), **tables.record}
            continue
        missing = [c for c in [ep["start"], ep["censor_date"], *_by_list(ep["event_date"])] if c not in data]
        if missing:
            problems.append(f"endpoints.{name}: date column(s) {missing} not in the data")
            continue
        data = _date_endpoint(data, name, ep)
        ep.update(time=f"{name}_{unit}", event=f"{name}_event")
    for i, d in enumerate(plan.get("derive") or []):
        op = next(k for k in d if k in _DERIVE_OPS)
        arg = d[op]
        if op in _TABLE_OPS:
            lacking = [n for n in _TABLE_OPS[op] if tables is None or not tables.has(n)]
            if lacking:
                problems.append(f"derive[{i}].{op}: needs {_NEEDS_TEXT[lacking[0]]}")
                continue
            needed = []
        else:
            needed = (arg if isinstance(arg, list) else [arg["column"]] if isinstance(arg, dict) else
                      [] if op in ("score", "cytogenetics") else [arg])
        missing = [c for c in needed if c not in data]
        if missing:
            problems.append(f"derive[{i}].{op}: column(s) {missing} not in the data{_dropped_hint(missing)}")
            continue
        data, derived[d["name"]] = _derive(data, d, f"derive[{i}]", tables)
        if data[d["name"]].isna().all():
            why = derived[d["name"]].get("first_patient", "")
            problems.append(f"derive[{i}]: '{d['name']}' has no value for any patient (an input is missing "
                            f"for every patient{'; first patient: ' + why if why else ''})")
    for name, ep in endpoints.items():
        for key in ("time", "event"):
            if ep.get(key) and ep[key] not in data:
                problems.append(f"endpoints.{name}.{key}: column '{ep[key]}' not in the data")
            elif ep.get(key):
                values += _non_numeric(data, ep[key], f"endpoints.{name}.{key}",
                                       "a number of " + ep.get("unit", "months") if key == "time" else "0 or 1")
    for i, a in enumerate(plan["analyses"]):
        for key, col in _analysis_columns(a, endpoints):
            if col not in data:
                problems.append(f"analyses[{i}].{key}: column '{col}' not in the data{_dropped_hint([col])}")
    if problems:
        problems.append(f"(available columns: {sorted(map(str, data.columns))})")
    _raise(problems, source, "columns")
    if values:  # the data, not the plan, is wrong
        raise InputError("the clinical table does not fit the plan:\n  - " + "\n  - ".join(values), source=source)
    return data, derived


def _non_numeric(data: pd.DataFrame, column: str, key: str, expected: str) -> list[str]:
    """A problem naming the patients and values of ``column`` that are not numbers (empty is fine)."""
    values = data[column]
    bad = values.notna() & pd.to_numeric(values, errors="coerce").isna()
    if not bad.any():
        return []
    ids = data["patient_id"][bad] if "patient_id" in data else values.index[bad]
    shown = ", ".join(f"{pid} ({val!r})" for pid, val in list(zip(ids, values[bad]))[:5])
    return [f"{key}: column '{column}' holds {int(bad.sum())} value(s) that are not numbers: {shown}"
            f"{', …' if bad.sum() > 5 else ''}; expected {expected}"]


def _dropped_hint(columns) -> str:
    return (" (identifier columns are dropped; --include-identifiers keeps them)"
            if any(c.lower() in IDENTIFIER_COLUMNS for c in columns) else "")


def population(data: pd.DataFrame, column: str, source: str, notes: list[str]) -> pd.DataFrame:
    """The rows of the plan's ``population:`` (a true/false column, given or derived): the patients every analysis
    but the flowchart is about. Missing counts as not in it; any other value is refused."""
    if column not in data:
        raise InputError(f"population: column '{column}' not in the data (available: {sorted(map(str, data))})",
                         source=source, hint="derive it first, e.g. derive: [{name: progressed, imwg: progressed}]")
    values = data[column]
    keys = values.map(lambda v: None if _missing(v) else _label_key(v))
    bad = sorted(set(keys.dropna()) - {"true", "false", "1", "0"})
    if bad:
        raise InputError(f"population: column '{column}' holds {bad[:5]}; expected true/false", source=source)
    inside = keys.isin(["true", "1"]).to_numpy()
    notes.append(f"Analysis population: the {int(inside.sum())} of {len(data)} patients with {column} true "
                 f"(the flowchart counts all {len(data)}).")
    return data[inside].reset_index(drop=True)
