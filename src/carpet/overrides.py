"""Reader overrides: a reviewed cohort made reproducible.

A reader who checks carpet's calls on the review page writes what to change in a CSV, one row a change::

    study_id,lesion_id,action,site,reason
    pat01_base,3,site,bone,lytic on CT beside the cortex
    pat01_base,5,exclude,,ureter
    pat01_fu,2,include,,not brown fat

``action`` is ``site`` (set the lesion's site to ``site``, one of the contract sites), ``exclude`` (the
lesion is physiological uptake: removed from the label map before anything is measured, so MTV, TLG,
SUVmax, Dmax and the counts all drop it) or ``include`` (bring back a component the physiology rules
excluded: its ``lesion_id`` is then the ``component_id`` of ``excluded.csv`` / ``summary.json``
``excluded.components``; it becomes a lesion with the next free id). ``lesion_id`` of the other actions is
the id in the run without overrides (lesion ids are not renumbered when a lesion is excluded, so the file
stays valid). ``carpet quantify --overrides FILE`` and
``carpet batch --overrides FILE`` apply the rows of the study they read and record each applied change,
with the file's SHA-256, in ``summary.json`` ``provenance.overrides``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from carpet.errors import InputError

__all__ = ["ACTIONS", "read_overrides", "overrides_for", "apply_inclusions", "apply_exclusions", "apply_sites"]

ACTIONS = ("site", "exclude", "include")
SITES = ("bone", "paramedullary", "extramedullary", "indeterminate", "unknown")
_REQUIRED = ("study_id", "lesion_id", "action")


def read_overrides(path) -> pd.DataFrame:
    """Read and check an overrides CSV (see the module docstring); rows keep their file line in ``line``."""
    path = Path(path)
    if not path.is_file():
        raise InputError("overrides file not found", source=path)
    table = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    table.columns = [c.strip().lower() for c in table.columns]
    missing = [c for c in _REQUIRED if c not in table.columns]
    if missing:
        raise InputError(f"missing column(s) {missing}; expected study_id, lesion_id, action[, site, reason]",
                         source=path)
    for col in ("site", "reason"):
        if col not in table.columns:
            table[col] = ""
    table = table.apply(lambda s: s.str.strip())
    table["line"] = np.arange(len(table)) + 2          # the header is line 1
    for row in table.itertuples():
        where = f"line {row.line}"
        if not row.lesion_id.isdigit() or int(row.lesion_id) < 1:
            raise InputError(f"lesion_id must be a positive whole number, got {row.lesion_id!r}",
                             source=path, where=f"{where}, column 'lesion_id'")
        if row.action not in ACTIONS:
            raise InputError(f"action must be one of {ACTIONS}, got {row.action!r}", source=path,
                             where=f"{where}, column 'action'")
        if row.action == "site" and row.site not in SITES:
            raise InputError(f"site must be one of {SITES}, got {row.site!r}", source=path,
                             where=f"{where}, column 'site'")
        if not row.study_id:
            raise InputError("study_id is empty", source=path, where=f"{where}, column 'study_id'")
    table["lesion_id"] = table["lesion_id"].astype(int)
    dup = table.duplicated(["study_id", "lesion_id"], keep=False)
    if dup.any():
        lines = table.loc[dup, "line"].tolist()
        raise InputError(f"more than one change for the same lesion (lines {', '.join(map(str, lines))}); "
                         "keep one", source=path)
    table.attrs["source"] = str(path)
    return table


def overrides_for(table: pd.DataFrame, study_id: str | None) -> pd.DataFrame:
    """The rows of one study. Without ``study_id`` the file must hold a single study."""
    studies = sorted(set(table["study_id"]))
    if study_id is None:
        if len(studies) > 1:
            raise InputError(f"the overrides file holds several studies ({', '.join(studies)}): say which one "
                             "this is", source=table.attrs.get("source"), hint="--study-id")
        return table
    return table[table["study_id"] == study_id]


def _check_ids(rows: pd.DataFrame, present, what: str = "lesion") -> None:
    unknown = rows[~rows["lesion_id"].isin(list(present))]
    if len(unknown):
        r = unknown.iloc[0]
        ids = ", ".join(str(int(i)) for i in sorted(present)) or "none"
        raise InputError(f"study {r.study_id} has no {what} {r.lesion_id} (its {what}s: {ids})",
                         source=rows.attrs.get("source"), where=f"line {r.line}",
                         hint=("an included component is a component_id of excluded.csv" if what != "lesion"
                               else "lesion ids are those of the run without overrides"))


def apply_inclusions(labels: np.ndarray, excluded: np.ndarray | None, rows: pd.DataFrame,
                     voxel_ml: float) -> tuple[np.ndarray, np.ndarray | None, list[dict]]:
    """Bring back the excluded components the rows ``include`` (``lesion_id`` = ``component_id``): each
    becomes a lesion with the next free id (after every lesion, in row order) and leaves ``excluded``.

    Returns the new label array, the new excluded-component array and one record per inclusion.
    """
    add = rows[rows["action"] == "include"]
    if add.empty:
        return labels, excluded, []
    present = [] if excluded is None else np.flatnonzero(np.bincount(np.asarray(excluded).ravel())[1:]) + 1
    _check_ids(add, present, what="excluded component")
    labels, excluded = np.array(labels, copy=True), np.array(excluded, copy=True)
    next_id = int(labels.max(initial=0)) + 1
    records = []
    for r in add.itertuples():
        where = excluded == r.lesion_id
        labels[where] = next_id
        excluded[where] = 0
        records.append({"component_id": int(r.lesion_id), "action": "include", "lesion_id": next_id,
                        "reason": r.reason, "volume_ml_added": float(where.sum() * voxel_ml)})
        next_id += 1
    return labels, excluded, records


def apply_exclusions(labels: np.ndarray, rows: pd.DataFrame, voxel_ml: float) -> tuple[np.ndarray, list[dict]]:
    """Zero the voxels of every lesion the rows ``exclude`` (ids are kept, not renumbered).

    Returns the new label array and one record per excluded lesion (with the volume removed, mL).
    """
    drop = rows[rows["action"] == "exclude"]
    if drop.empty:
        return labels, []
    counts = np.bincount(np.asarray(labels).ravel())
    _check_ids(drop, np.flatnonzero(counts[1:]) + 1)
    lut = np.arange(len(counts), dtype=labels.dtype)
    lut[drop["lesion_id"].to_numpy()] = 0
    records = [{"lesion_id": int(r.lesion_id), "action": "exclude", "reason": r.reason,
                "volume_ml_removed": float(counts[r.lesion_id] * voxel_ml)} for r in drop.itertuples()]
    return lut[labels], records


def apply_sites(lesions: pd.DataFrame, rows: pd.DataFrame) -> tuple[pd.DataFrame, list[dict]]:
    """Set the site of every lesion a ``site`` row names; adds ``site_by`` (``carpet`` or ``reader``)."""
    change = rows[rows["action"] == "site"]
    if change.empty:
        return lesions, []
    _check_ids(change, set(lesions["lesion_id"]))
    table = lesions.copy()
    table["site_by"] = "carpet"
    records = []
    for r in change.itertuples():
        at = table.index[table["lesion_id"] == r.lesion_id]
        records.append({"lesion_id": int(r.lesion_id), "action": "site", "site": r.site,
                        "carpet_site": str(table.loc[at[0], "site"]), "reason": r.reason})
        table.loc[at, "site"] = r.site
        table.loc[at, "site_by"] = "reader"
    return table, records
