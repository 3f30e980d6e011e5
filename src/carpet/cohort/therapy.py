"""Lines of therapy after CAR T: regimen classes, T-cell-engaging flag, response per line, time to next treatment.

Regimen classes follow Table 3 of the Moffitt post-CAR T study (BCMA bispecific, GPRC5D bispecific, conventional
combination, clinical trial, other BCMA-targeted, hospice, unknown) plus CAR T and FcRH5 bispecific, as in the
salvage series of Van Oekelen et al. (Blood 2022), where T-cell-engaging therapies responded best. Classification by
drug name is a keyword table (:data:`REGIMEN_CLASSES`); a ``regimen_class`` given in the table always wins, and a
regimen no keyword matches is ``unclassified`` (never guessed).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

__all__ = ["REGIMEN_CLASSES", "REGIMEN_CLASS_LABELS", "T_CELL_ENGAGING", "RESPONDED", "classify_regimen", "lines_after_car_t",
           "first_line_summary"]

#: (class, keywords) in priority order: the first class with a matching keyword wins, so a bispecific given with
#: daratumumab is a bispecific line.
REGIMEN_CLASSES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("hospice", ("hospice", "best supportive care", "bsc", "palliative care", "comfort care")),
    ("clinical_trial", ("clinical trial", "trial", "investigational", "study drug")),
    ("car_t", ("ide-cel", "idecabtagene", "abecma", "cilta-cel", "ciltacabtagene", "carvykti", "anito-cel",
               "anitocabtagene", "arlo-cel", "arlocabtagene", "car t", "car-t", "cart")),
    ("bcma_bispecific", ("teclistamab", "tec", "teclis", "tecvayli", "elranatamab", "elra", "elrexfio",
                         "linvoseltamab", "linvo", "lynozyfic", "alnuctamab", "etentamig", "abbv-383")),
    ("gprc5d_bispecific", ("talquetamab", "talq", "tal", "talvey", "forimtamab")),
    ("fcrh5_bispecific", ("cevostamab", "cevo")),
    ("other_bcma", ("belantamab", "belamaf", "blenrep")),
    # drugs, their short forms and brand names, and the regimen acronyms of myeloma salvage
    ("conventional_combination", (
        "carfilzomib", "carfil", "kyprolis", "bortezomib", "bort", "velcade", "ixazomib", "ixa", "ninlaro",
        "pomalidomide", "pom", "poma", "pomalyst", "lenalidomide", "len", "lena", "revlimid", "thalidomide",
        "thal", "daratumumab", "dara", "darzalex", "isatuximab", "isa", "sarclisa", "elotuzumab", "elo",
        "empliciti", "selinexor", "xpovio", "dexamethasone", "dex", "cyclophosphamide", "cytoxan", "cy",
        "melphalan", "mel", "bendamustine", "benda", "venetoclax", "ven", "cisplatin", "etoposide",
        "doxorubicin", "panobinostat", "radiotherapy", "radiation", "xrt",
        "kpd", "kd", "krd", "dpd", "dkd", "dvd", "drd", "pvd", "epd", "isa-kd", "isa-pd", "isapd", "isakd", "vrd",
        "vd", "pd", "xvd", "xpd", "xd", "cyBorD", "vcd", "kcd", "ird", "nrd", "vdpace", "vdt-pace", "dcep",
        "dt-pace", "pace", "auto-sct", "asct", "allo-sct")),
)
#: How a report prints each class (the tables and CSVs keep the codes above).
REGIMEN_CLASS_LABELS = {"hospice": "Hospice", "clinical_trial": "Clinical trial", "car_t": "CAR T",
                        "bcma_bispecific": "BCMA bispecific", "gprc5d_bispecific": "GPRC5D bispecific",
                        "fcrh5_bispecific": "FcRH5 bispecific", "other_bcma": "Other BCMA-directed",
                        "conventional_combination": "Conventional combination"}
#: Classes whose mechanism engages T cells (the best responders after BCMA CAR T).
T_CELL_ENGAGING = frozenset({"car_t", "bcma_bispecific", "gprc5d_bispecific", "fcrh5_bispecific"})
#: Best responses counted as "responded" (partial response or better).
RESPONDED = ("sCR", "CR", "VGPR", "PR")


def _tokens(text: str) -> str:
    """Lower-case words split at anything but letters and digits ('Kd-PACE' -> ' kd pace ')."""
    return " " + " ".join(re.findall(r"[a-z0-9]+", text.lower())) + " "


def classify_regimen(regimen: str | None, clinical_trial: bool | None = False) -> str:
    """Class of one regimen by keyword (whole words); ``unknown`` when empty, ``unclassified`` when no match.

    A line given within a clinical trial is ``clinical_trial`` unless its drugs are T-cell engaging (then the
    mechanism matters more for the analyses and the trial flag stays in its own column).
    """
    if regimen is None or (isinstance(regimen, float) and np.isnan(regimen)) or not str(regimen).strip():
        return "clinical_trial" if clinical_trial else "unknown"
    text = _tokens(str(regimen))
    found = next((cls for cls, words in REGIMEN_CLASSES if any(_tokens(w) in text for w in words)), "unclassified")
    if clinical_trial and found not in T_CELL_ENGAGING:
        return "clinical_trial"
    return found


def lines_after_car_t(therapies: pd.DataFrame, patients: pd.DataFrame,
                      progression: pd.DataFrame | None = None) -> pd.DataFrame:
    """Lines started after the CAR T infusion, numbered, classed, with response and time to next treatment.

    Parameters
    ----------
    therapies : DataFrame
        Validated therapies table (``patient_id, line, start_date``; optional ``regimen, regimen_class,
        best_response, clinical_trial``).
    patients : DataFrame
        Validated patients table (``patient_id, infusion_date``; optional ``death_date, last_followup_date``).
    progression : DataFrame, optional
        IMWG progression (``patient_id, progression_date``); adds ``after_progression``.

    Returns
    -------
    DataFrame
        One row per line after infusion: ``salvage_line`` (1 = first after CAR T), ``regimen_class``,
        ``t_cell_engaging``, ``responded`` (best response >= PR; None when unknown), ``ttnt_days`` and
        ``ttnt_event`` (time from this line's start to the next line's start or death, else censored at last
        follow-up; NaN when neither is known).
    """
    pt = patients.set_index("patient_id")
    lines = therapies.merge(patients[["patient_id", "infusion_date"]], on="patient_id")
    lines = lines[lines["start_date"] > lines["infusion_date"]].sort_values(["patient_id", "start_date", "line"])
    lines = lines.reset_index(drop=True)
    lines["salvage_line"] = lines.groupby("patient_id").cumcount() + 1
    given = lines["regimen_class"] if "regimen_class" in lines else pd.Series(None, index=lines.index)
    trial = lines["clinical_trial"] if "clinical_trial" in lines else pd.Series(False, index=lines.index)
    regimen = lines["regimen"] if "regimen" in lines else pd.Series(None, index=lines.index)
    lines["regimen_class"] = [g if isinstance(g, str) and g.strip() else classify_regimen(r, bool(t) if t else False)
                              for g, r, t in zip(given, regimen, trial)]
    lines["t_cell_engaging"] = lines["regimen_class"].isin(T_CELL_ENGAGING)
    best = lines["best_response"] if "best_response" in lines else pd.Series(None, index=lines.index)
    lines["responded"] = [None if not isinstance(b, str) or b == "NE" else b in RESPONDED for b in best]

    nxt = lines.groupby("patient_id")["start_date"].shift(-1)
    death = lines["patient_id"].map(pt["death_date"]) if "death_date" in pt else pd.Series(pd.NaT, index=lines.index)
    last = (lines["patient_id"].map(pt["last_followup_date"]) if "last_followup_date" in pt
            else pd.Series(pd.NaT, index=lines.index))
    end = nxt.fillna(death)
    event = end.notna()
    end = end.fillna(last)
    lines["ttnt_days"] = (end - lines["start_date"]).dt.days
    lines["ttnt_event"] = np.where(end.isna(), np.nan, event.astype(float))
    if progression is not None:
        prog = pd.to_datetime(progression.set_index("patient_id")["progression_date"].replace("", None))
        lines["after_progression"] = lines["start_date"] >= lines["patient_id"].map(prog)
    return lines.drop(columns=["infusion_date"])


def first_line_summary(lines: pd.DataFrame) -> pd.DataFrame:
    """Table-3-style counts of the first line after CAR T (or after progression when that column exists).

    Returns one row per regimen class with ``n``, ``percent`` (of patients with a known class, as Table 3 reports
    'Unknown' outside the percentages) and ``response_rate_percent`` (>= PR among lines with a known response).
    """
    first = lines
    if "after_progression" in lines:
        first = lines[lines["after_progression"].fillna(False).astype(bool)]
    first = first.sort_values(["patient_id", "start_date"]).groupby("patient_id").head(1)
    known = first[first["regimen_class"] != "unknown"]
    out = first.groupby("regimen_class").agg(
        n=("patient_id", "size"),
        n_response_known=("responded", lambda s: int(s.notna().sum())),
        n_responded=("responded", lambda s: int((s == True).sum())))  # noqa: E712 (object column of bools/None)
    out["percent"] = np.where(out.index != "unknown", 100.0 * out["n"] / max(len(known), 1), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["response_rate_percent"] = 100.0 * out["n_responded"] / out["n_response_known"].replace(0, np.nan)
    return out.sort_values("n", ascending=False).reset_index()
