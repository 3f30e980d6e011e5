"""The analysis plan's schema: loading a plan, checking its structure, names and titles of its analyses.

Column names are checked later, against the data (:func:`carpet.analyze.derive.prepare`).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

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
}
_COMMON = {"type": "str", "title": "str", "name": "str"}
_TOP = {"title", "subtitle", "seed", "endpoints", "derive", "analyses", "imaging", "assessments"}
_SCORES = {"ipi": "IPI", "aaipi": "aaIPI", "car_hematotox": "CAR-HEMATOTOX", "iss": "ISS", "riss": "R-ISS",
           "r_iss": "R-ISS", "r2iss": "R2-ISS", "r2_iss": "R2-ISS"}
_DERIVE_OPS = ("score", "emd_pmd", "cut", "log", "labels", "combine")
_UNIT_DAYS = {"days": 1.0, "months": 365.25 / 12, "years": 365.25}


def load_plan(plan: dict | str | Path) -> tuple[dict, str, str]:
    """Return ``(plan dict, sha256, source label)`` of a plan given as a dict or a YAML file."""
    if isinstance(plan, dict):
        text = json.dumps(plan, sort_keys=True, default=str)
        return plan, hashlib.sha256(text.encode()).hexdigest(), "<plan>"
    path = Path(plan)
    if not path.is_file():
        raise InputError("plan file not found", source=path, hint="--plan PLAN.yaml")
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
            ep = endpoints[a[key]]  # (a date endpoint whose dates are missing has no time: reported there)
            cols += [(key, ep[k]) for k in ("time", "event") if k in ep]
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
