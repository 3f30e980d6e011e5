"""The analysis plan's schema: loading a plan, checking its structure, names and titles of its analyses.

Column names are checked later, against the data (:func:`carpet.analyze.derive.prepare`).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from carpet.errors import InputError
from carpet.provenance import file_sha256

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
    "association": ({"marker": "column", "outcomes": "columns"}, {"value": "number"}),
    # analyses of the raw clinical tables (carpet.analyze.cohort_runners)
    "patterns": ({}, {"window_days": "count", "marrow_min_pct": "number"}),
    "flowchart": ({}, {"by": "column", "refractory_days": "count"}),
    "proportion": ({"column": "column"}, {"by": "column", "label": "str"}),
    "lines": ({}, {"after": "str", "risk_times": "numbers"}),
    "swimmer": ({}, {"max_patients": "count"}),
    "roc": ({"endpoint": "endpoint", "markers": "columns", "horizon": "number"}, {"direction": "str"}),
    "cox_table": ({"endpoint": "endpoint", "covariates": "columns"}, {"strata": "columns"}),
    "exposure_cox": ({"endpoint": "endpoint", "classes": "classes"}, {"from": "str"}),
}
_COMMON = {"type": "str", "title": "str", "name": "str"}
_TOP = {"title", "subtitle", "seed", "endpoints", "derive", "analyses", "imaging", "assessments", "variables",
        "population"}
#: analyses that count every patient of the tables, not only the plan's population (Figure 1 starts at "treated")
WHOLE_COHORT_ANALYSES = ("flowchart",)
_SCORES = {"ipi": "IPI", "aaipi": "aaIPI", "car_hematotox": "CAR-HEMATOTOX", "iss": "ISS", "riss": "R-ISS",
           "r_iss": "R-ISS", "r2iss": "R2-ISS", "r2_iss": "R2-ISS"}
_DERIVE_OPS = ("score", "emd_pmd", "cut", "log", "labels", "combine", "any_of", "cytogenetics", "responded",
               "imwg", "response_at", "first_line_after", "lines_after", "exposed_by")
#: derive operations that read the raw assessments / therapies (not a column of the analysis table)
_TABLE_OPS = {"imwg": ("progression",), "response_at": ("assessments",), "first_line_after": ("therapies",),
              "lines_after": ("therapies",), "exposed_by": ("therapies", "progression")}
_CUTS = ("above", "at_least", "below", "at_most")
_UNIT_DAYS = {"days": 1.0, "months": 365.25 / 12, "years": 365.25}


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
    if kind == "classes":  # regimen classes (carpet.cohort.therapy), or t_cell_engaging for all of them
        return _kind_problem(value, "columns", endpoints)
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
    if "population" in plan and not isinstance(plan["population"], str):
        problems.append("population: expected the name of a true/false column (e.g. a derived 'progressed')")
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
    if imaging is not None and (not isinstance(imaging, dict) or set(imaging) - {"ids", "select", "windows"}
                                or imaging.get("select", "first") not in ("first", "last")
                                or not isinstance(imaging.get("ids", {}), dict)
                                or _windows_problem(imaging.get("windows"))):
        problems.append("imaging: expected {ids: {study_id: patient_id, ...}, select: first|last} or windows: "
                        "default | {name: {from_days: -60, to_days: 0, pick: last}, ...}")
    derive = plan.get("derive") or []
    if not isinstance(derive, list):
        problems.append("derive: expected a list of {name: ..., <operation>: ...}")
        derive = []
    for i, d in enumerate(derive):
        problems += _derive_problems(f"derive[{i}]", d)
    from carpet.analyze.labels import variables_problems

    problems += variables_problems(plan.get("variables"))
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
    from carpet.analyze.clinical import ENDPOINT_KINDS

    allowed = {"time", "event", "start", "event_date", "censor_date", "unit", "label", "derive", "death_is_event"}
    out = [f"{where}.{k}: unknown key (expected one of {sorted(allowed)})" for k in ep if k not in allowed]
    if "derive" in ep:
        if ep["derive"] not in ENDPOINT_KINDS:
            out.append(f"{where}.derive: unknown endpoint {ep['derive']!r} (expected one of {list(ENDPOINT_KINDS)})")
        if set(ep) & {"time", "event", "start", "event_date", "censor_date"}:
            out.append(f"{where}: a derived endpoint takes no time/event or date columns")
        if "death_is_event" in ep and (ep["derive"] != "pfs2" or not isinstance(ep["death_is_event"], bool)):
            out.append(f"{where}.death_is_event: true or false, for derive: pfs2 only")
    elif {"time", "event"} <= set(ep):
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
    if op in ("emd_pmd", "combine", "any_of") and (not isinstance(arg, list) or len(arg) != 2 and op == "emd_pmd"
                                         or any(not isinstance(a, str) for a in arg)):
        out.append(f"{where}.{op}: expected a list of columns" + (" [emd, pmd]" if op == "emd_pmd" else ""))
    if op == "cut" and not (isinstance(arg, dict) and isinstance(arg.get("column"), str)
                            and len(set(arg) & set(_CUTS)) == 1 and set(arg) <= {"column", *_CUTS}
                            and not _kind_problem(next((arg[k] for k in _CUTS if k in arg), None), "number", set())):
        out.append(f"{where}.cut: expected {{column: <column>, above: <number>}} (or at_least:, below:, at_most:)")
    out += _table_op_problems(where, op, arg, d)
    if op == "log" and not isinstance(arg, str):
        out.append(f"{where}.log: expected a column name")
    if op == "labels" and not (isinstance(arg, dict) and isinstance(arg.get("column"), str)
                               and isinstance(arg.get("values"), dict)):
        out.append(f"{where}.labels: expected {{column: <column>, values: {{true: EMD, false: No EMD}}}}")
    return out


def _windows_problem(windows) -> bool:
    if windows is None or windows == "default":
        return False
    return not (isinstance(windows, dict) and windows and all(
        isinstance(w, dict) and set(w) <= {"from_days", "to_days", "pick"} and w.get("pick", "first") in
        ("first", "last") and not _kind_problem(w.get("from_days"), "number", set())
        and not _kind_problem(w.get("to_days"), "number", set()) for w in windows.values()))


def needs_raw_tables(plan: dict) -> bool:
    """Whether the plan derives endpoints or columns from the raw clinical tables."""
    return (any(isinstance(ep, dict) and "derive" in ep for ep in (plan.get("endpoints") or {}).values())
            or any(isinstance(d, dict) and set(d) & set(_TABLE_OPS) for d in plan.get("derive") or []))


def _table_op_problems(where: str, op: str, arg: Any, d: dict) -> list[str]:
    """Problems of the derive operations on risk rules and the raw tables."""
    from carpet.analyze.clinical import IMWG_COLUMNS, RESPONSE_ORDER
    from carpet.scores.risk import CYTOGENETIC_RULES

    if op == "cytogenetics" and arg not in CYTOGENETIC_RULES:
        return [f"{where}.cytogenetics: unknown rule {arg!r} (expected one of {list(CYTOGENETIC_RULES)})"]
    if op == "responded" and not (isinstance(arg, dict) and isinstance(arg.get("column"), str)
                                  and arg.get("at_least", "PR") in RESPONSE_ORDER):
        return [f"{where}.responded: expected {{column: <IMWG category column>, at_least: PR}} "
                f"(at_least one of {list(RESPONSE_ORDER)})"]
    if op == "imwg" and arg not in IMWG_COLUMNS:
        return [f"{where}.imwg: expected one of {list(IMWG_COLUMNS)}"]
    if op == "response_at" and _kind_problem(arg, "number", set()):
        return [f"{where}.response_at: expected days after infusion, e.g. 90"]
    if op == "first_line_after" and arg not in ("infusion", "progression"):
        return [f"{where}.first_line_after: expected infusion or progression"]
    if op == "first_line_after" and d.get("output", "class") not in ("class", "regimen", "response"):
        return [f"{where}.output: expected class, regimen or response"]
    if op == "lines_after" and arg != "car_t":
        return [f"{where}.lines_after: expected car_t"]
    if op == "exposed_by" and not (isinstance(arg, dict) and set(arg) <= {"classes", "within_months", "from"}
                                   and not _kind_problem(arg.get("within_months"), "number", set())
                                   and arg.get("from", "progression") in ("progression", "infusion")
                                   and not _kind_problem(arg.get("classes"), "columns", set())):
        return [f"{where}.exposed_by: expected {{classes: t_cell_engaging (or a list of regimen classes), "
                "within_months: <number>, from: progression|infusion}"]
    return []


def _raise(problems: list[str], source: str, stage: str) -> None:
    if problems:
        listing = "\n  - ".join(problems)
        raise InputError(f"{len(problems)} problem(s) in the analysis plan ({stage}):\n  - {listing}", source=source)


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
        elif kind == "endpoint" and "time" in endpoints[a[key]]:  # an endpoint that could not be derived is
            ep = endpoints[a[key]]                                   # reported under endpoints already
            cols += [(key, ep["time"]), (key, ep["event"])]
    return cols


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
    if t == "association":
        return f"association_{a['marker']}"
    if t == "proportion":
        return "_".join(["proportion", a["column"], *_by_list(a.get("by"))])
    if "endpoint" not in a:  # the analyses of the raw tables: patterns, flowchart, lines, swimmer
        return t
    return f"{t}_{a['endpoint']}"


def _title(a: dict, endpoints: dict, labels=None) -> str:
    return a.get("title") or _default_title(a, endpoints, labels)


def _default_title(a: dict, endpoints: dict, labels=None) -> str:
    """A heading from the plan item, naming columns by their labels (:class:`carpet.analyze.labels.Labels`)."""
    from carpet.analyze.labels import Labels
    from carpet.report.format import cutpoint as exact

    name = (labels or Labels()).label
    ep = endpoints[a["endpoint"]] if "endpoint" in a else {}
    label = ep.get("label", a.get("endpoint", ""))
    t = a["type"]
    if t == "table1":
        return f"Patient characteristics by {name(a['by'])}"
    if t == "km":
        by = " and ".join(name(c) for c in _by_list(a.get("by")))
        return f"{label} by {by}" if by else label
    if t == "transitions":
        return f"{a.get('before_title', name(a['before']))} → {a.get('after_title', name(a['after']))}"
    if t == "cox":
        return f"Cox model of {label}"
    if t == "cutpoint":
        return f"Optimised cut-point of {name(a['marker'])} for {label}"
    if t == "cutoff":  # the cut-off with its unit: "MTV > 54.3 mL"
        unit = (labels or Labels()).unit(a["marker"])
        return f"{label} by {name(a['marker'])} > {exact(a['value'])}{f' {unit}' if unit else ''}"
    if t == "landmark":
        unit = ep.get("unit", "months")
        unit = unit[:-1] if a["time"] == 1 and unit.endswith("s") else unit
        return f"Landmark at {a['time']:g} {unit}: {label} by {name(a['by'])}"
    if t == "proportion":  # the plan item's label names the rate, as its table does
        return _RAW_TITLES[t].format(column=a.get("label") or name(a["column"]))
    if t == "roc":
        markers = [a["markers"]] if isinstance(a["markers"], str) else list(a["markers"])
        unit = ep.get("unit", "months")
        return f"AUC of {' and '.join(map(name, markers))} for {label} by {a['horizon']:g} {unit}"
    if t in _RAW_TITLES:
        return _RAW_TITLES[t].format(**{**a, "column": name(a["column"]) if "column" in a else "",
                                        **({"marker": name(a["marker"]),
                                            "outcomes": ", ".join(name(c) for c in _by_list(a["outcomes"]))}
                                           if t == "association" else {})})
    return f"Model comparison for {label}"


_RAW_TITLES = {"patterns": "Patterns of progression", "flowchart": "Patients treated, progressed, refractory, relapsed",
               "proportion": "Rate of {column} with exact 95% CI", "lines": "Lines of therapy after CAR T",
               "swimmer": "Swimmer plot of the lines after progression",
               "roc": "AUC of {markers} for an event by {horizon}",
               "cox_table": "Univariable and multivariable Cox models",
               "exposure_cox": "Time-dependent exposure to {classes} (Cox)",
               "association": "{marker} and {outcomes}: rank tests"}


# ---------------------------------------------------------------------------------------------------------------
# what a plan needs (carpet analyze --describe)
# ---------------------------------------------------------------------------------------------------------------
_ENDPOINT_INPUTS = {
    "patients": [("infusion_date", "date of the CAR T infusion (YYYY-MM-DD)"),
                 ("death_date", "date of death, empty when alive"),
                 ("last_followup_date", "last contact alive, empty when dead")],
    "assessments": [("patient_id, date, parameter, value, unit", "lab series, long format (serum_m_protein g/dL, "
                     "urine_m_protein mg/24h, kappa_flc/lambda_flc, serum_ife/urine_ife, bm_plasma_cells %, "
                     "new_lesion 1, new_bone_lesion 1/0); the IMWG 2016 engine dates progression")],
    "therapies": [("patient_id, line, start_date", "one row per line of therapy (the CAR T line may be included)"),
                  ("regimen", "drugs as written ('Dara-Pom-dex', 'Tec-Dara'); classed by carpet"),
                  ("best_response", "sCR, CR, VGPR, PR, MR, SD, PD or NE"),
                  ("progression_date", "progression on that line, empty when none")],
}
#: the raw table each need of a derivation reads (progression comes from the assessments by the IMWG engine)
_TABLE_OF_NEED = {"progression": "assessments", "assessments": "assessments", "therapies": "therapies"}


def required_inputs(plan: dict) -> pd.DataFrame:
    """The input columns a plan reads: ``table, column, holds, needed_by`` (one row each).

    Columns the plan derives itself are not listed; derived endpoints and derive operations on the raw tables
    list the tables they read. Run :func:`validate_plan` first (a structurally broken plan raises).
    """
    from carpet.analyze.clinical import ENDPOINT_KINDS
    from carpet.analyze.derive import DEFAULT_WINDOWS
    from carpet.analyze.labels import Labels
    from carpet.cohort.schema import IMAGING, PATIENTS

    docs = {c.name: (c.kind, c.doc or ", ".join(c.choices)) for c in PATIENTS.columns}
    imaging_docs = {c.name: (c.kind, c.doc or ", ".join(c.choices)) for c in IMAGING.columns}
    labels = Labels(plan.get("variables"))  # a column the schema does not know is described by the plan's label
    rows: dict[tuple[str, str], dict] = {}
    windows = (plan.get("imaging") or {}).get("windows")
    windows = DEFAULT_WINDOWS if windows == "default" else windows or {}

    def need(table, column, why, holds=None):
        window = next((w for w in windows if table == "patients" and column.endswith(f"_{w}")
                       and column[:-len(w) - 1] in imaging_docs), None)
        if window:  # <column>_<window> of an imaging column: that column, of the scan the window picks
            w = windows[window]
            need("imaging", "patient_id", why, "the patient of each scan")
            need("imaging", "study_date", why, "date of the scan (YYYY-MM-DD)")
            need("patients", "infusion_date", why, "date of the CAR T infusion (YYYY-MM-DD)")
            table, column = "imaging", column[:-len(window) - 1]
            kind, doc = imaging_docs[column]
            holds = holds or (f"{doc} ({kind}), of the {w.get('pick', 'first')} scan "
                              f"{w['from_days']} to {w['to_days']} days from infusion")
        kind, doc = docs.get(column, ("", ""))
        text = holds or (f"{doc} ({kind})" if doc else labels.name(column))
        row = rows.setdefault((table, column), {"table": table, "column": column, "holds": text, "needed_by": []})
        row["needed_by"].append(why)

    def tables(names, why):
        for table in dict.fromkeys(_TABLE_OF_NEED[n] for n in names):
            for column, holds in _ENDPOINT_INPUTS[table]:
                need(table, column, why, holds)
            if table == "assessments":
                need("patients", "infusion_date", why, "date of the CAR T infusion (YYYY-MM-DD)")
                need("patients", "involved_light_chain", why, "kappa or lambda (the IMWG engine reads the FLC)")

    derived = {d["name"] for d in plan.get("derive") or [] if isinstance(d, dict)}
    endpoint_columns = set()
    for name, ep in (plan.get("endpoints") or {}).items():
        why = f"endpoints.{name}"
        if "derive" in ep:
            for column, holds in _ENDPOINT_INPUTS["patients"]:
                need("patients", column, why, holds)
            tables(ENDPOINT_KINDS[ep["derive"]], why)
        elif "time" in ep:
            need("patients", ep["time"], why, f"time to event or censoring, in {ep.get('unit', 'months')}")
            need("patients", ep["event"], why, "1 = event, 0 = censored")
            endpoint_columns |= {ep["time"], ep["event"]}
        else:
            for column in [ep["start"], ep["censor_date"], *_by_list(ep["event_date"])]:
                need("patients", column, why, "a date (YYYY-MM-DD)")
    for i, d in enumerate(plan.get("derive") or []):
        op = next(k for k in d if k in _DERIVE_OPS)
        why, arg = f"derive[{i}] ({d['name']})", d[op]
        if op in _TABLE_OPS:
            tables(_TABLE_OPS[op], why)
        elif op == "score":
            from carpet.scores.risk import SCORE_INPUTS

            for column in SCORE_INPUTS[_SCORES[str(arg).lower()]]:
                need("patients", column, why)
        elif op == "cytogenetics":
            fish = (("del17p", "t4_14", "t14_16") if arg in ("RISS2015", "CART_TRIALS") else
                    ("del17p", "t4_14", "t14_16", "t14_20", "gain1q", "amp1q", "del1p32", "tp53_mutation"))
            for column in fish:
                need("patients", column, why, "true/false from FISH, empty = not tested")
        else:
            cols = arg if isinstance(arg, list) else [arg["column"]] if isinstance(arg, dict) else [arg]
            for column in cols:
                if column not in derived:
                    holds = "true/false (0/1 is read as false/true)" if op == "labels" else None
                    need("patients", column, why, holds)
    if plan.get("population") and plan["population"] not in derived:
        need("patients", plan["population"], "population", "true/false: the patients the analyses are about")
    for i, a in enumerate(plan.get("analyses") or []):
        why = f"analyses[{i}] ({a['type']})"
        if a["type"] in ("patterns",):
            tables(["assessments"], why)
        if a["type"] in ("lines", "swimmer", "exposure_cox"):
            tables(["therapies"], why)
        required, optional = ANALYSES[a["type"]]
        for key, kind in {**required, **optional}.items():
            if key in a and kind in ("column", "columns", "models"):
                values = a[key].values() if kind == "models" else [a[key]]
                for column in (c for v in values for c in _by_list(v)):
                    if column not in derived and column not in endpoint_columns:
                        need("patients", column, why)
    out = pd.DataFrame(list(rows.values()), columns=["table", "column", "holds", "needed_by"])
    out["needed_by"] = out["needed_by"].map(lambda v: ", ".join(dict.fromkeys(v)))
    order = {"patients": 0, "assessments": 1, "therapies": 2, "imaging": 3}
    return out.sort_values("table", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)


def describe_plan(plan: dict | str | Path) -> str:
    """Text listing of :func:`required_inputs`, by table (what ``carpet analyze --describe`` prints)."""
    data, _, source = load_plan(plan)
    _raise(validate_plan(data), source, "structure")
    table = required_inputs(data)
    lines = [f"{data['title']} ({source}) reads:"]
    for name, part in table.groupby("table", sort=False):
        lines.append(f"\n{name} table ({'--clinical' if name == 'patients' else '--' + name}):")
        width = max(len(c) for c in part["column"])
        lines += [f"  {r.column:<{width}}  {r.holds}  [{r.needed_by}]" for r in part.itertuples()]
    lines.append("\nColumns the plan derives itself are not listed. Plan language: docs/plans.md.")
    return "\n".join(lines)
