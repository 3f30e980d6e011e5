"""Time-to-event endpoints as event tables ready for ``carpet.stats`` (one row per patient).

- ``PFS``  from infusion to confirmed IMWG progression or death; censored at last follow-up.
- ``OS``   from infusion to death; censored at last follow-up.
- ``PFS2`` from progression after CAR T to progression on the earliest subsequent line (Moffitt definition), or
  death when ``death_is_event`` [D: the Moffitt text names progression only; EMA's PFS2 counts death too];
  censored at last follow-up.
- ``OS_PP`` overall survival from progression after CAR T to death; censored at last follow-up.

Every table has ``patient_id, endpoint, start_date, end_date, time_days, time_months, event, end_reason``.
Months are days / :data:`DAYS_PER_MONTH` (365.25 / 12). A patient whose end cannot be dated (no event and no
follow-up date) gets ``end_reason = 'no_follow_up'`` and NaN time/event, never a silent zero.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from carpet.errors import InputError

__all__ = ["DAYS_PER_MONTH", "pfs", "overall_survival", "pfs2", "os_from_progression", "event_table"]

DAYS_PER_MONTH = 365.25 / 12
_COLUMNS = ["patient_id", "endpoint", "start_date", "end_date", "time_days", "time_months", "event", "end_reason"]


def _dates(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame:
        return pd.Series(pd.NaT, index=frame.index)
    return pd.to_datetime(frame[column].replace("", None))


def event_table(endpoint: str, ids, start, events: list[tuple[pd.Series, str]], censor: pd.Series) -> pd.DataFrame:
    """Earliest of the event dates (in order of ``events``; ties go to the first), else the censoring date."""
    end = pd.Series(pd.NaT, index=start.index)
    reason = pd.Series("no_follow_up", index=start.index, dtype=object)
    for dates, name in events:
        take = dates.notna() & (end.isna() | (dates < end))
        end, reason = end.where(~take, dates), reason.where(~take, name)
    event = end.notna()
    cens = end.isna() & censor.notna()
    end = end.where(~cens, censor)
    reason = reason.where(~cens, "censored_last_followup")
    days = (end - start).dt.days
    bad = days < 0
    if bad.any():
        who = ", ".join(f"{pid} ({r}: {e.date()} before {s.date()})" for pid, r, e, s in
                        zip(ids[bad], reason[bad], end[bad], start[bad]))
        raise InputError(f"{endpoint}: end before start for {who}", source="endpoints",
                         hint="check death_date / last_followup_date / progression dates")
    known = end.notna()
    return pd.DataFrame({
        "patient_id": ids.to_numpy(), "endpoint": endpoint, "start_date": start.to_numpy(), "end_date": end.to_numpy(),
        "time_days": days.to_numpy(dtype=float), "time_months": (days / DAYS_PER_MONTH).to_numpy(dtype=float),
        "event": np.where(known, event.astype(float), np.nan), "end_reason": reason.to_numpy(),
    }, columns=_COLUMNS)


def _patients_with(patients: pd.DataFrame, progression: pd.DataFrame | None) -> pd.DataFrame:
    df = patients.copy()
    df["death_date"] = _dates(df, "death_date")
    df["last_followup_date"] = _dates(df, "last_followup_date")
    if progression is not None:
        prog = progression[["patient_id", "progression_date"]].copy()
        prog["progression_date"] = _dates(prog, "progression_date")
        df = df.drop(columns=["progression_date"], errors="ignore").merge(prog, on="patient_id", how="left")
    return df.reset_index(drop=True)


def pfs(patients: pd.DataFrame, progression: pd.DataFrame) -> pd.DataFrame:
    """PFS from infusion: confirmed progression (``progression.progression_date``) or death."""
    df = _patients_with(patients, progression)
    return event_table("PFS", df["patient_id"], df["infusion_date"],
                  [(df["progression_date"], "progression"), (df["death_date"], "death")], df["last_followup_date"])


def overall_survival(patients: pd.DataFrame) -> pd.DataFrame:
    """OS from infusion to death, censored at last follow-up."""
    df = _patients_with(patients, None)
    return event_table("OS", df["patient_id"], df["infusion_date"], [(df["death_date"], "death")],
                  df["last_followup_date"])


def _progressed(patients, progression):
    df = _patients_with(patients, progression)
    return df[df["progression_date"].notna()].reset_index(drop=True)


def pfs2(patients: pd.DataFrame, progression: pd.DataFrame, therapies: pd.DataFrame,
         death_is_event: bool = True) -> pd.DataFrame:
    """PFS2: from progression after CAR T to progression on the earliest line started on/after it.

    ``therapies`` needs ``patient_id, start_date, progression_date`` (progression on that line). Only patients
    with a progression date enter.
    """
    if "progression_date" not in therapies:
        raise InputError("PFS2 needs the progression date on each line: the therapies table has no "
                         "progression_date column", source="therapies", where="progression_date",
                         hint="add a progression_date column (empty where the line has not progressed)")
    df = _progressed(patients, progression)
    th = therapies.copy()
    th["line_progression"] = _dates(th, "progression_date")
    th = th.drop(columns=["progression_date"]).merge(df[["patient_id", "progression_date"]], on="patient_id")
    th = th[th["start_date"] >= th["progression_date"]].sort_values(["patient_id", "start_date"])
    first = th.groupby("patient_id").head(1).set_index("patient_id")["line_progression"]
    events = [(df["patient_id"].map(first), "progression_on_next_line")]
    if death_is_event:
        events.append((df["death_date"], "death"))
    return event_table("PFS2", df["patient_id"], df["progression_date"], events, df["last_followup_date"])


def os_from_progression(patients: pd.DataFrame, progression: pd.DataFrame) -> pd.DataFrame:
    """OS from progression after CAR T to death, censored at last follow-up (progressed patients only)."""
    df = _progressed(patients, progression)
    return event_table("OS_PP", df["patient_id"], df["progression_date"], [(df["death_date"], "death")],
                  df["last_followup_date"])
