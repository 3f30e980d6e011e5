"""Progression patterns after CAR T and EMD/PMD status transitions (Moffitt post-CAR T study, Table 2, Figure 2).

Patterns at progression: ``biochemical`` (IMWG PD by serum/urine M-protein or dFLC), ``marrow`` (clonal plasma cells
>= 5 % near progression), ``new_bone`` (new bone lesion), ``emd``, ``pmd`` and ``emd_or_pmd``; ``isolated_*`` when
that pattern is the only one of the four groups (biochemical, marrow, new bone, EMD or PMD). Unknown findings stay
unknown (None): a pattern is isolated only when every other group is known to be absent.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["progression_patterns", "pattern_summary", "emd_pmd_status", "emd_pmd_transitions", "STATUSES"]

_GROUPS = ("biochemical", "marrow", "new_bone", "emd_or_pmd")
_BIOCHEMICAL_TRIGGERS = ("serum_m_protein", "urine_m_protein", "dflc")
STATUSES = ("negative", "emd_only", "pmd_only", "emd_and_pmd", "unknown")


def _flag(v):
    if v is None or (np.ndim(v) == 0 and bool(pd.isna(v))):  # None, pd.NA, NaN of any float type
        return None
    return bool(v)


def _near(assessments: pd.DataFrame, parameter: str, prog: pd.Series, window_days: int,
          infusion: pd.Series | None = None) -> pd.DataFrame:
    """Values of ``parameter`` within ``window_days`` of each patient's progression date.

    A sample taken before the infusion is the disease CAR T treated, never a finding at progression (an early
    progression would otherwise count the pre-infusion marrow as marrow relapse).
    """
    a = assessments[assessments["parameter"] == parameter][["patient_id", "date", "value"]]
    a = a.merge(prog.rename("progression_date").rename_axis("patient_id").reset_index(), on="patient_id")
    near = (a["date"] - a["progression_date"]).abs() <= pd.Timedelta(days=window_days)
    if infusion is not None:
        near &= ~(a["date"] <= a["patient_id"].map(infusion))
    return a[near]


def progression_patterns(progression: pd.DataFrame, patients: pd.DataFrame | None = None,
                         assessments: pd.DataFrame | None = None, window_days: int = 30,
                         marrow_min_pct: float = 5.0) -> pd.DataFrame:
    """Pattern flags for every patient with a confirmed progression.

    Parameters
    ----------
    progression : DataFrame
        IMWG progression table (``patient_id, progression_date, progression_trigger``).
    patients : DataFrame, optional
        Validated patients table; ``emd_progression``, ``pmd_progression``, ``new_bone_progression`` are used.
    assessments : DataFrame, optional
        Validated assessments; ``bm_plasma_cells`` and ``new_bone_lesion`` (1 new bone lesion, 0 imaging without
        one) within ``window_days`` of progression, after the infusion (when ``patients`` gives its date).
    window_days : int
        Half-width of the window around the progression date for marrow and imaging findings [C].
    marrow_min_pct : float
        Marrow involvement at progression: clonal plasma cells >= 5 % (Moffitt methods).

    Returns
    -------
    DataFrame
        ``patient_id, progression_date, biochemical, marrow, new_bone, emd, pmd, emd_or_pmd, isolated_*`` with
        True / False / None (unknown).
    """
    prog = progression[progression["progression_date"].astype(str).str.len() > 0].copy()
    prog["progression_date"] = pd.to_datetime(prog["progression_date"])
    out = prog[["patient_id", "progression_date"]].reset_index(drop=True)
    trig = prog.get("progression_trigger", pd.Series("", index=prog.index)).fillna("").astype(str)
    out["biochemical"] = [any(t in s.split("+") for t in _BIOCHEMICAL_TRIGGERS) for s in trig]
    dates = out.set_index("patient_id")["progression_date"]

    marrow = pd.Series(None, index=out.index, dtype=object)
    new_bone = pd.Series(None, index=out.index, dtype=object)
    pt = patients.set_index("patient_id") if patients is not None else pd.DataFrame()
    if assessments is not None:
        infusion = pd.to_datetime(pt["infusion_date"]) if "infusion_date" in pt else None
        bm = _near(assessments, "bm_plasma_cells", dates, window_days, infusion).groupby("patient_id")["value"].max()
        marrow = out["patient_id"].map(lambda p: None if p not in bm.index else bool(bm[p] >= marrow_min_pct))
        # new_bone_lesion says whether a new lesion is in bone; new_lesion (IMWG) does not, so it cannot stand in
        nb = _near(assessments, "new_bone_lesion", dates, window_days, infusion).groupby("patient_id")["value"].max()
        new_bone = out["patient_id"].map(lambda p: None if p not in nb.index else bool(nb[p] == 1))

    def from_patients(col):
        if col not in pt:
            return pd.Series(None, index=out.index, dtype=object)
        return out["patient_id"].map(lambda p: _flag(pt[col].get(p)))

    out["marrow"] = marrow
    nb_pt = from_patients("new_bone_progression")
    out["new_bone"] = [_either_source(a, b) for a, b in zip(new_bone, nb_pt)]
    out["emd"] = from_patients("emd_progression")
    out["pmd"] = from_patients("pmd_progression")
    out["emd_or_pmd"] = [_any_known(a, b) for a, b in zip(out["emd"], out["pmd"])]
    for g in _GROUPS:
        others = [o for o in _GROUPS if o != g]
        out[f"isolated_{g}"] = [_isolated(row[g], [row[o] for o in others]) for _, row in out.iterrows()]
    return out


def _any_known(a, b):
    a, b = _flag(a), _flag(b)
    if a is True or b is True:
        return True
    return False if a is False and b is False else None


def _either_source(a, b):
    """One finding reported by two sources: seen if either saw it, absent if a source that looked says so."""
    a, b = _flag(a), _flag(b)
    if a is True or b is True:
        return True
    return None if a is None and b is None else False


def _isolated(value, others):
    value = _flag(value)
    if value is not True:
        return value  # False or unknown
    others = [_flag(o) for o in others]
    if any(o is True for o in others):
        return False
    return True if all(o is False for o in others) else None


def pattern_summary(patterns: pd.DataFrame) -> pd.DataFrame:
    """n and percent per pattern, the percent of the patients in whom that pattern is known (as Table 2 does)."""
    rows = []
    for col in [c for c in patterns.columns if c not in ("patient_id", "progression_date")]:
        vals = patterns[col].map(_flag)
        known = int(vals.notna().sum())
        n = int((vals == True).sum())  # noqa: E712 (object column of bools/None)
        rows.append({"pattern": col, "n": n, "n_known": known,
                     "percent": 100.0 * n / known if known else np.nan})
    return pd.DataFrame(rows)


def emd_pmd_status(emd, pmd) -> str:
    """Combined status: negative, emd_only, pmd_only, emd_and_pmd, or unknown when it cannot be told."""
    e, p = _flag(emd), _flag(pmd)
    if e is True and p is True:
        return "emd_and_pmd"
    if e is True and p is False:
        return "emd_only"
    if p is True and e is False:
        return "pmd_only"
    if e is False and p is False:
        return "negative"
    return "unknown"


def emd_pmd_transitions(patients: pd.DataFrame) -> pd.DataFrame:
    """Baseline x progression EMD/PMD status table (Figure 2 of the Moffitt study), counts with all statuses.

    Needs ``emd_baseline, pmd_baseline, emd_progression, pmd_progression``; rows = baseline, columns = progression.
    """
    base = [emd_pmd_status(e, p) for e, p in zip(patients["emd_baseline"], patients["pmd_baseline"])]
    prog = [emd_pmd_status(e, p) for e, p in zip(patients["emd_progression"], patients["pmd_progression"])]
    table = pd.crosstab(pd.Categorical(base, STATUSES), pd.Categorical(prog, STATUSES), dropna=False)
    table.index.name, table.columns.name = "baseline", "progression"
    return table
