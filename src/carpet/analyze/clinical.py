"""What a plan derives from the raw clinical tables: endpoints, IMWG response and progression, therapy lines.

A centre gives ``patients`` (one row per patient, dates of infusion, death and last follow-up), ``assessments``
(lab series, long format), ``therapies`` (one row per line) and ``imaging``; nothing pre-computed. This module
turns them into what the papers analyse:

- endpoints (plan ``endpoints: {name: {derive: <kind>}}``): ``pfs`` and ``os`` from infusion, ``pfs2``
  (progression after CAR T to progression on the earliest subsequent line, the Moffitt definition; death counts
  unless ``death_is_event: false`` [D]), ``os_from_progression`` (progression or relapse to death), ``ttnt``
  (infusion to the start of the next line or death), ``ttnt_from_progression`` (progression to the next line
  after it, or death);
- columns (plan ``derive``): IMWG ``best_response``, ``progression_date``, ``refractory``, ``progressed``
  (``imwg:``), the best IMWG response up to a day after infusion (``response_at:``), the class of the first line
  after infusion or progression (``first_line_after:``), the number of lines after CAR T (``lines_after:``) and
  exposure to a class of therapy by a landmark (``exposed_by:``).

Progression comes from the IMWG engine (:mod:`carpet.scores.imwg`) on the assessments; without assessments, a
``progression_date`` column of the patients table is used as given (said in the report's notes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from carpet.cohort.endpoints import DAYS_PER_MONTH, event_table, os_from_progression, overall_survival, pfs, pfs2
from carpet.errors import InputError

#: endpoint kinds a plan may derive, and the tables each needs
ENDPOINT_KINDS = {"pfs": ("progression",), "os": (), "pfs2": ("progression", "therapies"),
                  "os_from_progression": ("progression",), "ttnt": ("therapies",),
                  "ttnt_from_progression": ("progression", "therapies")}
#: IMWG columns a plan may take (``derive: [{name: x, imwg: refractory}]``)
IMWG_COLUMNS = ("best_response", "progression_date", "refractory", "progressed", "days_to_progression",
                "progression_trigger")
#: response categories from best to worst, and the ones counted as a response (>= PR)
RESPONSE_ORDER = ("sCR", "CR", "VGPR", "PR", "MR", "SD", "PD")


@dataclass
class ClinicalTables:
    """The validated raw tables and what the IMWG engine and the therapy lines made of them.

    Attributes
    ----------
    patients : DataFrame
        Validated patients table (dates as datetimes).
    progression : DataFrame or None
        One row per patient: ``patient_id, progression_date`` (datetime, NaT when none), ``best_response``,
        ``refractory`` (IMWG) — None when neither assessments nor a progression_date column exist.
    responses : DataFrame or None
        IMWG responses per assessment date (only with assessments).
    assessments : DataFrame or None
        Validated assessments (units converted).
    therapies : DataFrame or None
        Validated therapies table.
    lines : DataFrame or None
        :func:`carpet.cohort.therapy.lines_after_car_t` of the therapies.
    record : dict
        Provenance of the derivations (IMWG ruleset and parameters, progression source).
    """

    patients: pd.DataFrame
    progression: pd.DataFrame | None = None
    responses: pd.DataFrame | None = None
    assessments: pd.DataFrame | None = None
    therapies: pd.DataFrame | None = None
    lines: pd.DataFrame | None = None
    record: dict[str, Any] = field(default_factory=dict)

    def has(self, need: str) -> bool:
        return {"progression": self.progression is not None, "therapies": self.therapies is not None,
                "assessments": self.responses is not None}[need]

    # -- endpoints ------------------------------------------------------------------------------------------
    def endpoint(self, kind: str, death_is_event: bool = True) -> pd.DataFrame:
        """Event table of an endpoint kind (``patient_id, time_months, event``; see :mod:`carpet.cohort.endpoints`)."""
        pt, prog, th = self.patients, self.progression, self.therapies
        if kind == "pfs":
            return pfs(pt, prog)
        if kind == "os":
            return overall_survival(pt)
        if kind == "pfs2":
            return pfs2(pt, prog, th, death_is_event=death_is_event)
        if kind == "os_from_progression":
            return os_from_progression(pt, prog)
        start = pt.set_index("patient_id")["infusion_date"]
        if kind == "ttnt_from_progression":
            start = prog.set_index("patient_id")["progression_date"].dropna()
        ids = pd.Series(start.index, index=start.index)
        nxt = th.merge(start.rename("t0").rename_axis("patient_id").reset_index(), on="patient_id")
        nxt = nxt[nxt["start_date"] > nxt["t0"]].groupby("patient_id")["start_date"].min()
        dates = pt.set_index("patient_id")
        death = _date(dates, "death_date").reindex(start.index)
        censor = _date(dates, "last_followup_date").reindex(start.index)
        return event_table(kind.upper(), ids, start, [(nxt.reindex(start.index), "next_line"), (death, "death")],
                           censor)

    # -- columns --------------------------------------------------------------------------------------------
    def imwg_column(self, what: str) -> pd.Series:
        """An IMWG result per patient (``progressed`` is whether a confirmed progression date exists)."""
        prog = self.progression.set_index("patient_id")
        if what == "progressed":
            return prog["progression_date"].notna()
        if what not in prog:
            raise InputError(f"no IMWG {what!r}: progression was read from the patients table, not derived",
                             where="derive imwg", hint="give the assessments table (--assessments)")
        if what == "refractory":  # progression within 60 days of infusion; no progression is not refractory
            return prog["refractory"].astype("boolean").mask(prog["progression_date"].isna(), False)
        return prog[what]

    def response_at(self, day: float) -> pd.Series:
        """Best confirmed IMWG response from infusion up to ``day`` days after it; PD when progression came first.

        A response counts when the IMWG engine confirmed it (the confirming assessment may be after ``day``).
        Patients without any evaluable assessment by then are missing.
        """
        r = self.responses.copy()
        r["date"] = pd.to_datetime(r["date"])
        infusion = self.patients.set_index("patient_id")["infusion_date"]
        r = r[(r["date"] - r["patient_id"].map(infusion)).dt.days <= day]
        r = r[r["confirmed"].astype(bool) & r["response"].isin(RESPONSE_ORDER)]
        rank = r["response"].map({c: i for i, c in enumerate(RESPONSE_ORDER)})
        best = r.assign(rank=rank).sort_values("rank").groupby("patient_id")["response"].first()
        prog = self.progression.set_index("patient_id")["progression_date"]
        early = (prog - infusion.reindex(prog.index)).dt.days <= day
        out = best.reindex(infusion.index).astype(object)
        out[early.reindex(infusion.index).fillna(False).astype(bool)] = "PD"
        return out

    def first_line_after(self, after: str, output: str = "class") -> pd.Series:
        """The first line started after the infusion or after progression: its regimen class (or regimen)."""
        lines = self.lines
        if after == "progression":
            if self.progression is None:
                raise InputError("the first line after progression needs progression dates", where="derive "
                                 "first_line_after", hint="--assessments LABS.csv, or a progression_date column")
            prog = self.progression.set_index("patient_id")["progression_date"]
            lines = lines[lines["start_date"] >= lines["patient_id"].map(prog)]
        first = lines.sort_values(["patient_id", "start_date"]).groupby("patient_id").head(1).set_index("patient_id")
        column = {"class": "regimen_class", "regimen": "regimen", "response": "best_response"}[output]
        ids = self.patients["patient_id"]
        values = first[column].reindex(ids) if column in first else pd.Series(None, index=ids)
        if output == "class" and after == "progression":  # progressed without a recorded line: 'unknown'
            progressed = prog.reindex(ids).notna().to_numpy()
            values = values.where(~(values.isna() & progressed), "unknown")
        return pd.Series(values.to_numpy(), index=ids.to_numpy())

    def lines_after(self) -> pd.Series:
        """Number of lines after CAR T per patient (0 when none is recorded)."""
        ids = self.patients["patient_id"]
        return self.lines.groupby("patient_id").size().reindex(ids, fill_value=0).set_axis(ids.to_numpy())

    def exposed_by(self, classes: list[str], months: float, start: str = "progression") -> pd.Series:
        """Whether a line of ``classes`` (``t_cell_engaging`` for all of them) started within ``months`` of
        progression (or infusion). The exposure a landmark analysis compares, fixed at the landmark."""
        lines = self.lines
        is_class = (lines["t_cell_engaging"] if classes == ["t_cell_engaging"]
                    else lines["regimen_class"].isin(classes))
        t0 = (self.progression.set_index("patient_id")["progression_date"] if start == "progression"
              else self.patients.set_index("patient_id")["infusion_date"])
        days = (lines["start_date"] - lines["patient_id"].map(t0)).dt.days
        hit = lines[is_class & (days >= 0) & (days <= months * DAYS_PER_MONTH)]["patient_id"].unique()
        ids = self.patients["patient_id"]
        out = pd.Series(ids.isin(hit).to_numpy(), index=ids.to_numpy(), dtype="boolean")
        return out.mask(t0.reindex(ids).isna().to_numpy())


def _date(frame: pd.DataFrame, column: str) -> pd.Series:
    return pd.to_datetime(frame[column]) if column in frame else pd.Series(pd.NaT, index=frame.index)


def load_clinical(patients: pd.DataFrame, assessments=None, therapies=None, notes: list[str] | None = None,
                  imwg_params=None) -> ClinicalTables:
    """Validate the raw tables and derive IMWG progression/response and the lines after CAR T.

    Parameters
    ----------
    patients : DataFrame
        Patients table (validated with :func:`carpet.cohort.schema.read_patients`).
    assessments, therapies : path or DataFrame, optional
    notes : list, optional
        Receives what the reader should know (the progression source).
    """
    from carpet.cohort.schema import read_assessments, read_patients, read_therapies
    from carpet.cohort.therapy import lines_after_car_t

    notes = [] if notes is None else notes
    pt = read_patients(patients, name="patients table")
    tables = ClinicalTables(pt)
    if therapies is not None:
        name = None if isinstance(therapies, pd.DataFrame) else str(therapies)
        tables.therapies = read_therapies(therapies, name=name, patients=pt)
    if assessments is not None:
        from carpet.scores.imwg import IMWGParams, assess_cohort

        name = None if isinstance(assessments, pd.DataFrame) else str(assessments)
        tables.assessments = read_assessments(assessments, name=name, patients=pt)
        result = assess_cohort(pt, tables.assessments, tables.therapies, imwg_params or IMWGParams())
        prog = result.progression.copy()
        prog["progression_date"] = pd.to_datetime(prog["progression_date"].replace("", None))
        tables.progression, tables.responses = prog, result.responses
        tables.record["imwg"] = result.provenance
        tables.record["progression_source"] = "IMWG 2016 engine on the assessments"
    elif "progression_date" in pt:
        tables.progression = pt[["patient_id", "progression_date"]].copy()
        tables.record["progression_source"] = "progression_date column of the patients table (as given)"
        notes.append("Progression dates are the patients table's progression_date column as given (no assessments "
                     "table: the IMWG engine did not derive them).")
    if tables.therapies is not None:
        tables.lines = lines_after_car_t(tables.therapies, pt, tables.progression)
    return tables


def response_rank(value) -> int | None:
    """Position of an IMWG category in :data:`RESPONSE_ORDER` (0 = sCR), None when unknown."""
    return RESPONSE_ORDER.index(value) if value in RESPONSE_ORDER else None


def responded(values: pd.Series, at_least: str = "PR") -> pd.Series:
    """True when the category is ``at_least`` or better, False when worse, missing when unknown."""
    limit = RESPONSE_ORDER.index(at_least)
    return values.map(lambda v: None if response_rank(v) is None else response_rank(v) <= limit).astype("boolean")


__all__ = ["ClinicalTables", "load_clinical", "ENDPOINT_KINDS", "IMWG_COLUMNS", "RESPONSE_ORDER", "responded"]
