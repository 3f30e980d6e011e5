"""Helpers to check carpet.stats against R values in ``../shared/reference/survival/reference_values.json``.

The datasets are prepared exactly as ``scripts/r_reference.R`` prepares them; each record's ``what``
string names the analysis (label), the group and the quantity.
"""

from __future__ import annotations

import json
import math
import re
from functools import lru_cache

import numpy as np
import pandas as pd

from conftest import REFERENCE

SURVIVAL = REFERENCE / "survival"


def load_records() -> list[dict]:
    """All records (empty when the reference folder is absent: tests then skip via reference_path)."""
    path = SURVIVAL / "reference_values.json"
    if not path.exists():
        return []
    return json.loads(path.read_text())["values"]


@lru_cache(maxsize=None)
def dataset(name: str) -> pd.DataFrame:
    """Dataset ``name`` prepared as in r_reference.R (time/event columns named ``time``/``event``)."""
    d = SURVIVAL / "data"
    if name == "lung":
        df = pd.read_csv(d / "lung.csv")
        df["ecog3"] = np.minimum(df["ph.ecog"], 2)
    elif name == "veteran":
        df = pd.read_csv(d / "veteran.csv")
        df["trt"] = np.where(df["Treatment"] == "test", 2, 1)
        df["celltype"] = pd.Categorical(df["Celltype"], categories=["squamous", "smallcell", "adeno", "large"])
        df["karno"] = df["Karnofsky_score"]
        df["age"] = df["Age_in_years"]
        df["diagtime"] = df["Months_from_Diagnosis"]
        df["prior"] = np.where(df["Prior_therapy"] == "yes", 10, 0)
    elif name == "gbsg2":
        df = pd.read_csv(d / "gbsg2.csv")
        for col, levels in {"horTh": ["no", "yes"], "tgrade": ["I", "II", "III"], "menostat": ["Pre", "Post"]}.items():
            df[col] = pd.Categorical(df[col], categories=levels)
    elif name == "whas500":
        df = pd.read_csv(d / "whas500.csv")
        df["agegrp"] = pd.cut(df["age"], [0, 60, 70, 80, np.inf], right=False,
                              labels=["[0,60)", "[60,70)", "[70,80)", "[80,Inf)"])
    elif name == "dlbcl":
        # one row has no follow-up; R's model.frame drops it (na.omit), carpet refuses it, so drop it here
        df = pd.read_csv(d / "dlbcl_maxstat.csv").rename(columns={"cens": "status"}).dropna(subset=["time"])
    elif name == "rossi":
        df = pd.read_csv(d / "rossi.csv").rename(columns={"week": "time", "arrest": "status"})
    else:
        raise KeyError(name)
    return df.rename(columns={"status": "event"})


# label in the record -> grouping column (None = overall), per dataset
KM_LABELS = {"overall": None, "by sex": "sex", "by trt": "trt", "by celltype": "celltype",
             "by horTh": "horTh", "by gender": "gender", "by GEG": "GEG"}
LOGRANK_LABELS = {
    "by sex (2-group)": ("sex", None), "by ph.ecog (4 groups 0/1/2/3, 1 NA dropped)": ("ph.ecog", None),
    "by ph.ecog collapsed 0/1/>=2 (3 groups)": ("ecog3", None), "by sex stratified by inst": ("sex", "inst"),
    "by trt (2-group)": ("trt", None), "by celltype (4 groups)": ("celltype", None),
    "by horTh (2-group)": ("horTh", None), "by tgrade (3 groups)": ("tgrade", None),
    "by gender (2-group)": ("gender", None),
    "by age group [<60,60-70,70-80,>=80) (4 groups)": ("agegrp", None), "by GEG (2-group)": ("GEG", None),
}
COX_LABELS = {
    "sex": ["sex"], "age+sex+ph.ecog": ["age", "sex", "ph.ecog"], "trt": ["trt"],
    "full (celltype ref=squamous)": ["trt", "celltype", "karno", "diagtime", "age", "prior"],
    "horTh": ["horTh"],
    "age+gender+bmi+chf+hr+sysbp": ["age", "gender", "bmi", "chf", "hr", "sysbp"],
}
COX_FULL = {"gbsg2": ["horTh", "age", "menostat", "tsize", "tgrade", "pnodes", "progrec", "estrec"],
            "rossi": ["fin", "age", "race", "wexp", "mar", "paro", "prio"]}
MAXSTAT_LABELS = {"age": "age", "ph.karno (1 NA)": "ph.karno", "karno": "karno", "pnodes": "pnodes",
                  "tsize": "tsize", "progrec": "progrec", "bmi": "bmi",
                  "MGE (maxstat help-page example)": "MGE"}

KM_RE = re.compile(r"^KM (?P<label>.+?) \[(?P<group>[^\]]+)\]: (?P<q>.+)$")
LR_RE = re.compile(r"^(?P<kind>log-rank|G-rho \(rho=1, Peto-Peto/Prentice\)) (?P<label>.+?)"
                   r"(?: \[(?P<group>[\w.]+=.*|group\d+)\])?: (?P<q>chisq|df|p|observed|expected)$")
COX_RE = re.compile(r"^Cox (?P<label>.+?) \((?P<ties>efron|breslow)\)(?: (?P<var>\S+))?: (?P<q>.+)$")
MAXSTAT_RE = re.compile(r"^maxstat (?P<label>.+?): (?P<q>.+)$")


def select(kind_re: re.Pattern, records: list[dict]) -> list[dict]:
    return [r for r in records if kind_re.match(r["what"])]


def group_index(groups: list, group: str) -> int:
    """Position of an R group name (``sex=1``, ``ph.ecog=0``, ``group2``) among carpet's sorted groups."""
    if group.startswith("group"):
        return int(group[5:]) - 1
    value = group.split("=", 1)[1]
    for i, g in enumerate(groups):
        if str(g) == value or (isinstance(g, (int, float)) and float(g) == float(value)):
            return i
    raise AssertionError(f"group {group!r} not among {groups}")


def record_id(rec: dict) -> str:
    return f"{rec['dataset']}:{rec['what']}"


def subset(df: pd.DataFrame, group_col: str | None, group: str) -> pd.DataFrame:
    """Rows of one KM stratum named like R (``sex=1``, ``celltype=adeno``, or ``overall``)."""
    if group_col is None:
        return df
    col, _, value = group.partition("=")
    assert col == group_col, (col, group_col)
    return df[df[group_col].astype(str) == value]


def assert_close(actual, rec: dict, tolerance: str | None = None) -> None:
    """Compare with the record's value under ``tolerance`` ("abs x" / "rel x"; default: the record's)."""
    expected = rec["value"]
    if expected is None:
        assert actual is None or (isinstance(actual, float) and math.isnan(actual)), (record_id(rec), actual)
        return
    assert actual is not None and not (isinstance(actual, float) and math.isnan(actual)), (record_id(rec), actual)
    spec = tolerance or rec["tolerance"]
    kind, value = ("abs", "0") if spec == "exact" else spec.split()[:2]
    tol = float(value)
    err = abs(float(actual) - float(expected))
    limit = tol if kind == "abs" else tol * abs(float(expected)) + 1e-300
    assert err <= limit, f"{record_id(rec)}: carpet {actual!r} vs R {expected!r} (|diff| {err:.3g} > {limit:.3g})"


def close(actual, expected, rel=0.0, abs_=0.0):
    """Element-wise |a - e| <= abs + rel·|e|, with None/NaN (R's NA) matching only None/NaN."""
    a = np.array([np.nan if v is None else v for v in np.atleast_1d(actual)], dtype=float)
    e = np.array([np.nan if v is None else v for v in np.atleast_1d(expected)], dtype=float)
    assert a.shape == e.shape
    assert np.array_equal(np.isnan(a), np.isnan(e)), (a, e)
    ok = ~np.isnan(e)
    np.testing.assert_allclose(a[ok], e[ok], rtol=rel, atol=abs_)
