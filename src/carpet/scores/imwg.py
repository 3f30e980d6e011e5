"""IMWG 2016 response and progression from laboratory time series (ruleset ``IMWG2016``).

Implements the longitudinal algorithm of ``spec/clinical-rules.md`` §3.7 on the rules of §3.2–§3.6: baseline and
measurable disease, response per assessment with confirmation, nadir per parameter, progressive disease with the
triggering parameter, best confirmed response, relapse from CR, refractory status, values after new therapy
excluded. No library implements IMWG on raw labs in Python, hence this module. Disputed rules ([D]) are named
switches of :class:`IMWGParams`; every result records the ruleset id and every parameter value.

Internal units: M-protein g/dL, urine M-protein mg/24 h, free light chains mg/dL, marrow plasma cells %,
plasmacytoma SPD cm2. Use :func:`carpet.cohort.schema.read_assessments` to convert lab units.

Conventions ([C] unless a source is named; all recorded in ``provenance.json``):

- Baseline: the latest value of each parameter within ``baseline_window_days`` before or on the infusion date.
  Only assessments after the infusion date and before the next line's start are assessed.
- Confirmation: a category is confirmed by the next *evaluable* assessment (one that is not ``NE``) meeting the
  same or a better category; every category, SD included, needs such a pair [V]. PD by imaging (new lesion,
  plasmacytoma SPD) or marrow needs none [V].
- ``nadir_mode='confirmed'``: a level counts toward the nadir once two consecutive samples of that parameter are at
  or below it; marrow and imaging values count singly (they need no confirmation).
- Progression date = the first assessment of the confirming pair; later rows are reported as PD.
- A measurable parameter missing at a visit makes it ``NE``; a value needed only for a higher category
  downgrades to the next lower category, with the reason in ``responses.reason``.
- Threshold comparisons tolerate 1e-10 relative float error, so a value exactly at a threshold is at it.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from carpet.cohort.schema import read_assessments, read_patients, read_therapies
from carpet.errors import InputError
from carpet.provenance import file_sha256, provenance
from carpet.io.tables import write_csv

__all__ = ["RULESET", "CATEGORIES", "IMWGParams", "IMWGResult", "assess_patient", "assess_cohort",
           "refractory_to", "next_therapy_dates"]

RULESET = "IMWG2016"
#: Response categories from worst to best; ``NE`` (not evaluable) is outside the order.
CATEGORIES = ("PD", "SD", "MR", "PR", "VGPR", "CR", "sCR")
PD, SD, MR, PR, VGPR, CR, SCR = range(7)
NE = -1
#: Tolerance of threshold comparisons: lab values carry at most ~6 significant digits, so a difference below
#: 1e-10 (relative) is floating-point noise (0.7 - 0.2 = 0.49999999999999994 must meet ">= 0.5").
_TOL = 1e-10
_LAB_COLUMNS = ("serum_m_protein", "urine_m_protein", "kappa_flc", "lambda_flc", "serum_ife", "urine_ife",
                "bm_plasma_cells", "bm_clonality", "new_lesion", "plasmacytoma_spd")


def _ge(a: float, b: float) -> bool:
    return a >= b - _TOL * max(1.0, abs(b))


def _gt(a: float, b: float) -> bool:
    return a > b + _TOL * max(1.0, abs(b))


@dataclass(frozen=True)
class IMWGParams:
    """Every threshold and disputed choice of the IMWG 2016 engine (spec tag in brackets).

    Attributes
    ----------
    serum_measurable_min : float
        Serum M-protein (g/dL) at baseline for measurable disease [D]: 1.0 (IMWG) or 0.5 (KarMMa, CARTITUDE-1).
    urine_measurable_min : float
        Urine M-protein (mg/24 h) for measurable disease [R].
    flc_measurable_min : float
        Involved FLC (mg/dL) for measurable FLC-only disease, with an abnormal ratio [R].
    flc_normal_range : tuple of float
        Normal kappa/lambda ratio, inclusive [V]; labs may supply their own (renal range 0.37-3.1).
    nadir_mode : {'confirmed', 'any'}
        [D] 'confirmed' (IMWG 2016: the lowest value reached by two consecutive samples) or 'any' (2006/2011: the
        lowest single value). Baseline is always a candidate nadir.
    baseline_window_days : int
        Baseline = latest value within this many days before (or on) the infusion date [C].
    pd_relative_rise : float
        Relative rise from nadir for PD (>= 0.25) [V].
    serum_pd_abs_g_dl, serum_pd_abs_inclusive : float, bool
        Absolute serum rise for PD, 0.5 g/dL, compared with >= (True) or > (False) [D, minor].
    serum_high_nadir_g_dl, serum_pd_abs_high_nadir_g_dl : float
        When the serum nadir is >= 5 g/dL, a rise >= 1 g/dL suffices [V].
    urine_pd_abs_mg : float
        Absolute urine rise for PD (>= 200 mg/24 h) [V].
    flc_pd_abs_mg_dl : float
        Absolute dFLC rise for PD (> 10 mg/dL, strict) [V].
    bmpc_pd_abs_pct : float
        Absolute marrow plasma-cell rise for PD (>= 10 percentage points) [V].
    bmpc_cr_max_pct : float
        CR needs marrow plasma cells < 5 % [V].
    bmpc_pr_baseline_min_pct : float
        Marrow-only PR needs baseline plasma cells >= 30 % [V].
    relapse_from_cr_bmpc_pct : float
        Relapse from CR: marrow plasma cells >= 5 % [V 2006 footnote].
    flc_ratio_for_cr : bool
        [D] True: FLC-only disease needs a normal ratio for CR (IMWG); False: only for sCR (some CAR T studies).
    confirm_required : bool
        Biochemical categories and PD need two consecutive assessments [V].
    marrow_pd_needs_confirmation : bool
        Marrow and imaging PD need no confirmation [V]; set True to require it for marrow PD.
    death_confirms_pd : bool
        Death after an unconfirmed PD at the last assessment confirms it [V: "or death from PD"]. The tables
        carry no cause of death, so this is off by default [C].
    plasmacytoma_pd_rise : float
        Soft-tissue plasmacytoma PD: SPD increase >= 50 % from its nadir [R]; needs no confirmation.
    plasmacytoma_pr_reduction : float
        PR (and better) needs an SPD reduction >= 50 % when plasmacytomas were present at baseline [V].
    mr_plasmacytoma : {'gt50', 'ge25'}
        [D] MR plasmacytoma clause: SPD reduction > 50 % (one reproduction) or >= 25 % (2016 text by recall).
    refractory_window_days : int
        Progression within this many days of infusion (inclusive: day 60 counts) is refractory [R]/[C].
    """

    serum_measurable_min: float = 1.0
    urine_measurable_min: float = 200.0
    flc_measurable_min: float = 10.0
    flc_normal_range: tuple[float, float] = (0.26, 1.65)
    nadir_mode: str = "confirmed"
    baseline_window_days: int = 30
    pd_relative_rise: float = 0.25
    serum_pd_abs_g_dl: float = 0.5
    serum_pd_abs_inclusive: bool = True
    serum_high_nadir_g_dl: float = 5.0
    serum_pd_abs_high_nadir_g_dl: float = 1.0
    urine_pd_abs_mg: float = 200.0
    flc_pd_abs_mg_dl: float = 10.0
    bmpc_pd_abs_pct: float = 10.0
    bmpc_cr_max_pct: float = 5.0
    bmpc_pr_baseline_min_pct: float = 30.0
    relapse_from_cr_bmpc_pct: float = 5.0
    flc_ratio_for_cr: bool = True
    confirm_required: bool = True
    marrow_pd_needs_confirmation: bool = False
    death_confirms_pd: bool = False
    plasmacytoma_pd_rise: float = 0.5
    plasmacytoma_pr_reduction: float = 0.5
    mr_plasmacytoma: str = "gt50"
    refractory_window_days: int = 60

    def __post_init__(self):
        if self.nadir_mode not in ("confirmed", "any"):
            raise InputError(f"nadir_mode must be 'confirmed' or 'any', not {self.nadir_mode!r}",
                             source="IMWGParams")
        if self.mr_plasmacytoma not in ("gt50", "ge25"):
            raise InputError(f"mr_plasmacytoma must be 'gt50' or 'ge25', not {self.mr_plasmacytoma!r}",
                             source="IMWGParams")

    def record(self) -> dict[str, Any]:
        """The parameters as a JSON-ready dict (for provenance)."""
        rec = asdict(self)
        rec["flc_normal_range"] = list(self.flc_normal_range)
        return rec


def refractory_to(last_dose_date, pd_date, best_response: str | None = None, window_days: int = 60) -> bool:
    """Rajkumar 2011 refractoriness to one therapy (spec §3.6).

    True when progression falls within ``window_days`` of the last dose (inclusive: day 60 counts) or, when
    ``best_response`` is given, when the therapy never reached at least MR.
    """
    if best_response is not None and best_response in ("SD", "PD", "NE"):
        return True
    if pd_date is None or pd.isna(pd_date):
        return False
    days = (pd.Timestamp(pd_date) - pd.Timestamp(last_dose_date)).days
    return 0 <= days <= window_days


# ----------------------------------------------------------------------------------------------------------------
# one patient
# ----------------------------------------------------------------------------------------------------------------
_UNINVOLVED = {"kappa": "lambda_flc", "lambda": "kappa_flc"}


def _warn_conflicts(labs: pd.DataFrame, source: str) -> None:
    """Warn about one parameter measured twice on one day with different values: the worst is used
    (:func:`_wide`), but a typo or a second sample should be looked at."""
    key = ["patient_id", "date", "parameter"]
    spread = labs.groupby(key)["value"].transform("nunique")
    for (pid, day, param), grp in labs[spread > 1].groupby(key):
        warnings.warn(f"{source}: rows {', '.join(map(str, grp['source_row']))}: {param} of patient "
                      f"{pid} on {pd.Timestamp(day).date()} has different values "
                      f"({', '.join(f'{v:g}' for v in grp['value'])}); the worst is used "
                      "(admiralonco convention): check for a typo", stacklevel=3)


def _wide(assessments: pd.DataFrame, light_chain: pd.Series) -> pd.DataFrame:
    """One row per patient and date (all patients at once); same-day duplicates resolved to the worst value
    (admiralonco convention [V]).

    Worst = highest for every parameter (IFE positive = 1) except the uninvolved light chain, whose fall widens
    dFLC: its values are negated around a single ``max``.
    """
    long = assessments[assessments["parameter"].isin(_LAB_COLUMNS)]
    flip = (long["parameter"] == long["patient_id"].map(light_chain).map(_UNINVOLVED)).to_numpy()
    signed = long.assign(value=np.where(flip, -long["value"].to_numpy(float), long["value"].to_numpy(float)))
    wide = signed.pivot_table(index=["patient_id", "date"], columns="parameter", values="value", aggfunc="max")
    wide = wide.reindex(columns=list(_LAB_COLUMNS))
    for chain, col in _UNINVOLVED.items():
        rows = wide.index.get_level_values(0).map(light_chain) == chain
        wide.loc[rows, col] = -wide.loc[rows, col]
    return wide.sort_index()


def _baseline(dates: np.ndarray, cols: dict[str, np.ndarray], index_date: pd.Timestamp,
              window_days: int) -> dict[str, float]:
    """Latest value of each parameter within ``window_days`` before (or on) the index date."""
    win = (dates <= index_date) & (dates >= index_date - pd.Timedelta(days=window_days))
    out = {}
    for c, v in cols.items():
        ok = np.flatnonzero(win & ~np.isnan(v))
        out[c] = v[ok[-1]] if len(ok) else np.nan
    return out


def _nadirs(values: np.ndarray, baseline: float, mode: str) -> np.ndarray:
    """Nadir before each time point: baseline and earlier values (``any``) or values confirmed by the next sample.

    In ``confirmed`` mode a level counts once two consecutive samples of the parameter are at or below it, i.e.
    ``max(v[i], v[i+1])`` for consecutive available values that both precede the time point.
    """
    out = np.full(len(values), np.nan)
    best = baseline
    prev = np.nan
    for j, v in enumerate(values):
        out[j] = best
        if np.isnan(v):
            continue
        cand = v if mode == "any" else (max(prev, v) if not np.isnan(prev) else np.nan)
        if not np.isnan(cand):
            best = cand if np.isnan(best) else min(best, cand)
        prev = v
    return out


def _rise_pd(value: float, nadir: float, rel: float, abs_min: float, inclusive: bool = True) -> bool:
    """PD rule 'increase >= rel from nadir and absolute increase >= abs_min' (``>`` when not inclusive).

    A nadir of 0 (or below) makes the relative rise undefined; the absolute rule alone applies (spec §3.7 [C]).
    """
    if np.isnan(value) or np.isnan(nadir):
        return False
    rise = value - nadir
    rel_ok = nadir <= 0 or _ge(rise, rel * nadir)
    abs_ok = _ge(rise, abs_min) if inclusive else _gt(rise, abs_min)
    return rel_ok and abs_ok


def _serum_pd(value: float, nadir: float, p: IMWGParams) -> bool:
    """Serum PD: >= 25 % and >= 0.5 g/dL above the nadir; from a nadir >= 5 g/dL a rise >= 1 g/dL suffices."""
    if not np.isnan(nadir) and _ge(nadir, p.serum_high_nadir_g_dl):
        return _rise_pd(value, nadir, 0.0, p.serum_pd_abs_high_nadir_g_dl)
    return _rise_pd(value, nadir, p.pd_relative_rise, p.serum_pd_abs_g_dl, p.serum_pd_abs_inclusive)


def _ratio_normal(kappa: float, lam: float, normal: tuple[float, float]) -> float:
    """1.0 normal, 0.0 abnormal, NaN unknown."""
    if np.isnan(kappa) or np.isnan(lam) or lam <= 0:
        return np.nan
    r = kappa / lam
    return float(normal[0] - _TOL <= r <= normal[1] + _TOL)


@dataclass
class _Disease:
    serum: bool
    urine: bool
    flc: bool
    marrow: bool

    @property
    def label(self) -> str:
        parts = [n for n, f in (("serum", self.serum), ("urine", self.urine), ("flc", self.flc),
                                ("marrow", self.marrow)) if f]
        return "+".join(parts) if parts else "none"


def _measurable(base: dict[str, float], inv0: float, ratio_normal0: float, p: IMWGParams) -> _Disease:
    """Measurable disease at baseline (spec §3.2) and the hierarchy serum/urine -> FLC -> marrow."""
    serum = _ge(base["serum_m_protein"], p.serum_measurable_min) if not np.isnan(base["serum_m_protein"]) else False
    urine = _ge(base["urine_m_protein"], p.urine_measurable_min) if not np.isnan(base["urine_m_protein"]) else False
    flc = (not serum and not urine and not np.isnan(inv0) and _ge(inv0, p.flc_measurable_min)
           and ratio_normal0 == 0.0)
    marrow = not (serum or urine or flc) and not np.isnan(base["bm_plasma_cells"])
    return _Disease(serum, urine, flc, marrow)


def _reduced(value: float, base: float, fraction: float, strict: bool = False) -> bool:
    """``value`` is at least (``strict``: more than) ``fraction`` below ``base``; compared in value units so the
    float tolerance scales with the values."""
    drop, need = base - value, fraction * base
    return _gt(drop, need) if strict else _ge(drop, need)


def _serum_level(s: float, s0: float) -> int:
    if s <= 0 or _reduced(s, s0, 0.90):
        return VGPR
    if _reduced(s, s0, 0.50):
        return PR
    return MR if _reduced(s, s0, 0.25) else SD


def _urine_level(u: float, u0: float, measurable: bool) -> int:
    if u < 100:
        return VGPR
    if measurable:
        if _reduced(u, u0, 0.90) or u < 200:
            return PR
        return MR if _reduced(u, u0, 0.50) else SD
    return PR if u < 200 else SD


def _flc_level(d: float, d0: float) -> int:
    if _reduced(d, d0, 0.90, strict=True):
        return VGPR
    return PR if _reduced(d, d0, 0.50) else SD


def assess_patient(patient_id: str, infusion_date, assessments: pd.DataFrame,
                   involved_light_chain: str | None = None, next_therapy_date=None,
                   params: IMWGParams = IMWGParams(), death_date=None) -> "IMWGResult":
    """IMWG 2016 response per assessment and progression for one patient.

    Parameters
    ----------
    patient_id : str
    infusion_date : date-like
        Index date (CAR T infusion); baseline is the latest value in the ``baseline_window_days`` before it.
    assessments : DataFrame
        Long format ``date, parameter, value`` in internal units (see module docstring); IFE and clonality as
        1 (positive) / 0 (negative); ``new_lesion`` 1 when imaging shows a new lesion; ``plasmacytoma_spd``
        (cm2) the sum of products of diameters of soft-tissue plasmacytomas.
    involved_light_chain : {'kappa', 'lambda'}, optional
        Needed for dFLC; without it the FLC path is not evaluable.
    next_therapy_date : date-like, optional
        Start of the next line after CAR T; values on or after it are excluded.
    params : IMWGParams
    death_date : date-like, optional
        Used only with ``params.death_confirms_pd``.

    Returns
    -------
    IMWGResult
    """
    labs = assessments.assign(patient_id=patient_id, date=pd.to_datetime(assessments["date"]))
    wide = _wide(labs, pd.Series({patient_id: involved_light_chain}, dtype=object))
    return _assess(patient_id, infusion_date, wide.droplevel(0), involved_light_chain, next_therapy_date, params,
                   death_date)


def _assess(patient_id, infusion_date, wide: pd.DataFrame, involved_light_chain, next_therapy_date,
            p: IMWGParams, death_date=None) -> "IMWGResult":
    """:func:`assess_patient` on the patient's wide table (one row per date, columns ``_LAB_COLUMNS``)."""
    index_date = pd.Timestamp(infusion_date)
    cutoff = None if next_therapy_date is None or pd.isna(next_therapy_date) else pd.Timestamp(next_therapy_date)
    all_dates = wide.index.to_numpy()
    keep = all_dates < cutoff if cutoff is not None else np.ones(len(all_dates), bool)
    n_excluded = int((~keep).sum())
    cols_all = {c: wide[c].to_numpy(float)[keep] for c in _LAB_COLUMNS}
    all_dates = all_dates[keep]
    base = _baseline(all_dates, cols_all, index_date, p.baseline_window_days)
    after = all_dates > index_date
    post = {c: v[after] for c, v in cols_all.items()}

    inv_col = {"kappa": "kappa_flc", "lambda": "lambda_flc"}.get(involved_light_chain or "")
    uninv_col = _UNINVOLVED.get(involved_light_chain or "")

    def dflc(values):
        """Involved minus uninvolved FLC; NaN when the involved chain is not known."""
        if inv_col is None:
            return np.full_like(values["kappa_flc"], np.nan, dtype=float)
        return values[inv_col] - values[uninv_col]

    dflc0 = float(dflc(base))
    ratio0 = _ratio_normal(base["kappa_flc"], base["lambda_flc"], p.flc_normal_range)
    disease = _measurable(base, base[inv_col] if inv_col else np.nan, ratio0, p)

    dates = [pd.Timestamp(d) for d in all_dates[after]]
    n = len(dates)
    S, U, B = post["serum_m_protein"], post["urine_m_protein"], post["bm_plasma_cells"]
    D = dflc(post)
    nad = {
        "serum": _nadirs(S, base["serum_m_protein"], p.nadir_mode),
        "urine": _nadirs(U, base["urine_m_protein"], p.nadir_mode),
        "dflc": _nadirs(D, dflc0, p.nadir_mode),
        # marrow needs no confirmation [V], so every marrow value is a confirmed value
        "bmpc": _nadirs(B, base["bm_plasma_cells"], "any"),
        # imaging needs no confirmation, so every SPD measurement is a candidate nadir
        "spd": _nadirs(post["plasmacytoma_spd"], base["plasmacytoma_spd"], "any"),
    }
    spd = pd.Series(post["plasmacytoma_spd"]).ffill().to_numpy(float)  # latest imaging at or before each point
    # latest post-baseline marrow at or before each time point (marrow needs no repeat for CR)
    marrow = pd.Series(B).ffill().to_numpy(float)
    clonal = pd.Series(post["bm_clonality"]).ffill().to_numpy(float)

    cats = np.full(n, NE)
    triggers: list[str] = [""] * n
    reasons: list[str] = [""] * n
    no_confirm = np.zeros(n, bool)  # PD that needs no confirmation (imaging, marrow)
    for j in range(n):
        row = {c: v[j] for c, v in post.items()}
        trig = []
        if _serum_pd(S[j], nad["serum"][j], p):
            trig.append("serum_m_protein")
        if _rise_pd(U[j], nad["urine"][j], p.pd_relative_rise, p.urine_pd_abs_mg):
            trig.append("urine_m_protein")
        if not disease.serum and not disease.urine:
            nd = nad["dflc"][j]
            # a negative dFLC nadir (uninvolved above involved) is taken as 0 [C]: the rise counts from no excess
            if _rise_pd(D[j], max(nd, 0.0) if not np.isnan(nd) else nd, p.pd_relative_rise, p.flc_pd_abs_mg_dl,
                        inclusive=False):
                trig.append("dflc")
        marrow_pd = (disease.marrow or not (disease.serum or disease.urine or disease.flc)) and _rise_pd(
            B[j], nad["bmpc"][j], p.pd_relative_rise, p.bmpc_pd_abs_pct)
        if marrow_pd:
            trig.append("bm_plasma_cells")
        if row["new_lesion"] == 1:
            trig.append("new_lesion")
        spd_nadir = nad["spd"][j]
        if _gt(row["plasmacytoma_spd"], spd_nadir if not np.isnan(spd_nadir) else np.inf) and _rise_pd(
                row["plasmacytoma_spd"], spd_nadir, p.plasmacytoma_pd_rise, 0.0):
            trig.append("plasmacytoma_spd")
        if trig:
            cats[j] = PD
            triggers[j] = "+".join(trig)
            imaging = "new_lesion" in trig or "plasmacytoma_spd" in trig
            no_confirm[j] = imaging or (marrow_pd and not p.marrow_pd_needs_confirmation)
            continue
        cats[j], reasons[j] = _response_level(j, row, S, U, D, base, dflc0, disease, marrow, clonal, p)
        if base["plasmacytoma_spd"] > 0 and cats[j] != NE:
            cats[j], reasons[j] = _plasmacytoma_cap(cats[j], reasons[j], spd[j], base["plasmacytoma_spd"], p)

    # Confirmation uses the next *evaluable* assessment: a visit where only, say, an IFE was drawn (NE) neither
    # confirms nor breaks a pair.
    nxt = _next_evaluable(cats)
    # --- progression: first PD confirmed by the next assessment (or needing no confirmation) -----------------
    prog_j = None
    unconfirmed_j = None
    confirmed = np.zeros(n, bool)
    for j in np.flatnonzero(cats == PD):
        if no_confirm[j] or not p.confirm_required or (nxt[j] >= 0 and cats[nxt[j]] == PD):
            prog_j = int(j)
            break
        if nxt[j] < 0:  # PD at the last evaluable assessment
            died = death_date is not None and not pd.isna(death_date) and pd.Timestamp(death_date) >= dates[j]
            if p.death_confirms_pd and died:
                prog_j = int(j)
                break
            unconfirmed_j = int(j)
    if prog_j is not None:
        confirmed[prog_j:] = True
        cats[prog_j:] = PD
        for k in range(prog_j + 1, n):
            if not triggers[k]:
                reasons[k] = "after_progression"
    # --- confirmation of response categories: the next assessment meets the same or a better category ------
    end = prog_j if prog_j is not None else n
    best = NE
    first_resp = None  # first assessment of the first pair both >= PR
    for j in range(end):
        if cats[j] == NE or cats[j] == PD:
            continue
        if not p.confirm_required:
            confirmed[j] = True
            pair = cats[j]
        elif 0 <= nxt[j] < end and cats[nxt[j]] != PD:
            confirmed[j] = cats[nxt[j]] >= cats[j]
            pair = min(cats[j], cats[nxt[j]])
        else:
            continue
        best = max(best, pair)
        if first_resp is None and pair >= PR:
            first_resp = j
    if best == NE and prog_j is not None:
        best = PD

    prog_date = dates[prog_j] if prog_j is not None else None
    responses = pd.DataFrame({
        "patient_id": patient_id,
        "date": [d.date().isoformat() for d in dates],
        "response": [CATEGORIES[c] if c != NE else "NE" for c in cats],
        "confirmed": confirmed,
        "pd_trigger": triggers,
        "reason": reasons,
        "serum_change_pct": _pct_change(S, base["serum_m_protein"]),
        "urine_change_pct": _pct_change(U, base["urine_m_protein"]),
        "dflc_change_pct": _pct_change(D, dflc0),
        "serum_nadir_g_dl": nad["serum"],
        "urine_nadir_mg_24h": nad["urine"],
        "dflc_nadir_mg_dl": nad["dflc"],
    })
    days = (prog_date - index_date).days if prog_date is not None else None
    resp_date = dates[first_resp] if first_resp is not None else None
    progression = {
        "patient_id": patient_id,
        "best_response": CATEGORIES[best] if best != NE else "NE",
        "progression_date": prog_date.date().isoformat() if prog_date is not None else "",
        "progression_confirmed": prog_date is not None,
        "refractory": days is not None and days <= p.refractory_window_days,
        "progression_trigger": triggers[prog_j] if prog_j is not None else "",
        "days_to_progression": days,
        "first_response_date": resp_date.date().isoformat() if resp_date is not None else "",
        "duration_of_response_days": (prog_date - resp_date).days if resp_date is not None and prog_date is not None
        else None,
        "unconfirmed_pd_date": dates[unconfirmed_j].date().isoformat() if unconfirmed_j is not None else "",
        "measurable_disease": disease.label,
        "relapse_from_cr_date": _relapse_from_cr(dates, post, cats, confirmed, p),
        "n_assessments": n,
        "n_excluded_after_new_therapy": n_excluded,
        "next_therapy_date": cutoff.date().isoformat() if cutoff is not None else "",
    }
    return IMWGResult(responses, pd.DataFrame([progression]), p)


def _pct_change(values: np.ndarray, base: float) -> np.ndarray:
    if np.isnan(base) or base == 0:
        return np.full(len(values), np.nan)
    return np.round(100.0 * (values - base) / base, 3)


def _response_level(j, row, S, U, D, base, dflc0, disease: _Disease, marrow, clonal, p: IMWGParams) -> tuple[int, str]:
    """Best category all measurable parameters meet at time point ``j`` (no PD), with the reason codes.

    A measurable parameter not measured at ``j`` makes the time point not evaluable (``NE``); a missing value
    needed only by a higher category (urine < 100 mg/24 h for VGPR, IFE and marrow for CR, the FLC ratio and
    clonality for sCR) gives the next lower category [V admiralonco/IMWG].
    """
    levels, missing = [], []
    if disease.serum:
        if np.isnan(S[j]):
            missing.append("serum_m_protein")
        else:
            levels.append(_serum_level(S[j], base["serum_m_protein"]))
    vgpr_needs_urine = False
    if disease.serum or disease.urine:
        if not np.isnan(U[j]):
            levels.append(_urine_level(U[j], base["urine_m_protein"], disease.urine))
        elif disease.urine:
            missing.append("urine_m_protein")
        else:
            vgpr_needs_urine = True
    if disease.flc:
        if np.isnan(D[j]):
            missing.append("dflc")
        else:
            levels.append(_flc_level(D[j], dflc0))
    if disease.marrow:
        if np.isnan(marrow[j]):
            missing.append("bm_plasma_cells")
        elif base["bm_plasma_cells"] >= p.bmpc_pr_baseline_min_pct and _reduced(
                marrow[j], base["bm_plasma_cells"], 0.5):
            levels.append(PR)
        else:
            levels.append(SD)
    if disease.label == "none":
        return NE, "no_measurable_disease"
    if missing:
        return NE, "missing_" + "+".join(missing)
    level = min(levels)
    if vgpr_needs_urine and level >= VGPR:
        return PR, "downgraded_missing_urine_m_protein"
    if level < VGPR:
        return level, ""
    # CR: negative serum and urine IFE and < 5 % marrow plasma cells (and a normal ratio for FLC-only disease)
    ife_s, ife_u = row["serum_ife"], row["urine_ife"]
    ratio = _ratio_normal(row["kappa_flc"], row["lambda_flc"], p.flc_normal_range)
    if ife_s == 1 or ife_u == 1:
        return VGPR, ""
    if np.isnan(ife_s) or np.isnan(ife_u):
        return VGPR, "cr_not_evaluable_ife_missing"
    if np.isnan(marrow[j]):
        return VGPR, "cr_not_evaluable_no_marrow"
    if not marrow[j] < p.bmpc_cr_max_pct:
        return VGPR, "marrow_plasma_cells_not_below_cr_limit"
    if disease.flc and p.flc_ratio_for_cr and ratio != 1.0:
        return VGPR, "flc_ratio_not_normal" if ratio == 0.0 else "cr_not_evaluable_flc_ratio_missing"
    if ratio == 1.0 and clonal[j] == 0:
        return SCR, ""
    return CR, "scr_not_evaluable" if np.isnan(ratio) or np.isnan(clonal[j]) else "scr_criteria_not_met"


def _next_evaluable(cats: np.ndarray) -> np.ndarray:
    """Index of the next assessment with a category other than NE (-1 when none)."""
    out = np.full(len(cats), -1)
    following = -1
    for j in range(len(cats) - 1, -1, -1):
        out[j] = following
        if cats[j] != NE:
            following = j
    return out


def _plasmacytoma_cap(level: int, reason: str, spd: float, spd0: float, p: IMWGParams) -> tuple[int, str]:
    """Plasmacytomas present at baseline: CR needs them gone, PR/VGPR a >= 50 % SPD reduction, MR the clause
    chosen by ``mr_plasmacytoma`` [D]. No imaging yet after baseline: one level down (missing data)."""
    if np.isnan(spd):
        return max(SD, level - 1), ";".join(filter(None, [reason, "downgraded_missing_plasmacytoma_spd"]))
    if spd <= 0:
        cap = SCR
    elif _reduced(spd, spd0, p.plasmacytoma_pr_reduction):
        cap = VGPR
    elif (_reduced(spd, spd0, 0.5, strict=True) if p.mr_plasmacytoma == "gt50" else _reduced(spd, spd0, 0.25)):
        cap = MR
    else:
        cap = SD
    if cap < level:
        return cap, ";".join(filter(None, [reason, "capped_by_plasmacytoma_spd"]))
    return level, reason


def _relapse_from_cr(dates: list, post: dict[str, np.ndarray], cats: np.ndarray, confirmed: np.ndarray,
                     p: IMWGParams) -> str:
    """First date after a confirmed CR with reappearing M-protein (IFE or electrophoresis), marrow plasma cells
    >= 5 % or a new lesion (IMWG relapse from CR, for DFS only; not used for progression)."""
    cr_idx = np.flatnonzero((cats >= CR) & confirmed)
    if not len(cr_idx):
        return ""
    later = {c: v[cr_idx[0] + 1:] for c, v in post.items()}
    with np.errstate(invalid="ignore"):
        hit = ((later["serum_ife"] == 1) | (later["urine_ife"] == 1) | (later["serum_m_protein"] > 0)
               | (later["urine_m_protein"] > 0) | (later["bm_plasma_cells"] >= p.relapse_from_cr_bmpc_pct)
               | (later["new_lesion"] == 1))
    return dates[cr_idx[0] + 1 + int(np.argmax(hit))].date().isoformat() if hit.any() else ""


# ----------------------------------------------------------------------------------------------------------------
# cohort
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class IMWGResult:
    """IMWG results: ``responses`` (one row per patient and assessment date) and ``progression`` (one per patient)."""

    responses: pd.DataFrame
    progression: pd.DataFrame
    params: IMWGParams = field(default_factory=IMWGParams)
    inputs: dict[str, Any] = field(default_factory=dict)

    @property
    def provenance(self) -> dict[str, Any]:
        return provenance(ruleset=RULESET, parameters=self.params.record(), inputs=self.inputs,
                          progression_date_convention="first date of the confirming pair (or of the imaging/"
                          "marrow assessment that needs no confirmation)",
                          refractory_definition=f"progression within {self.params.refractory_window_days} days "
                          "of infusion, inclusive")

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``responses.csv``, ``progression.csv`` and ``provenance.json`` into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"responses": out / "responses.csv", "progression": out / "progression.csv",
                 "provenance": out / "provenance.json"}
        write_csv(self.responses, paths["responses"])
        write_csv(self.progression, paths["progression"])
        paths["provenance"].write_text(json.dumps(self.provenance, indent=2, default=str))
        return paths


def next_therapy_dates(patients: pd.DataFrame, therapies: pd.DataFrame | None) -> pd.Series:
    """Start of the first line that begins after each patient's infusion (NaT when none), indexed by patient."""
    ids = patients["patient_id"]
    if therapies is None or not len(therapies):
        return pd.Series(pd.NaT, index=ids)
    infusion = patients.set_index("patient_id")["infusion_date"]
    later = therapies[therapies["start_date"] > therapies["patient_id"].map(infusion)]
    return later.groupby("patient_id")["start_date"].min().reindex(ids)


def assess_cohort(patients, assessments, therapies=None, params: IMWGParams = IMWGParams()) -> IMWGResult:
    """IMWG 2016 response and progression for every patient.

    Parameters
    ----------
    patients, assessments, therapies : path or DataFrame
        Tables as in DESIGN.md (``carpet imwg``); paths (CSV/XLSX) or frames are validated with
        :mod:`carpet.cohort.schema` (units converted there). ``patients`` needs ``involved_light_chain``.
    params : IMWGParams

    Returns
    -------
    IMWGResult
    """
    names = {k: (str(v) if isinstance(v, (str, Path)) else None)
             for k, v in (("patients", patients), ("assessments", assessments), ("therapies", therapies))}
    pt = read_patients(patients, require=("involved_light_chain",), name=names["patients"])
    labs = read_assessments(assessments, name=names["assessments"], patients=pt)
    _warn_conflicts(labs, names["assessments"] or "assessments")
    lines = None if therapies is None else read_therapies(therapies, name=names["therapies"], patients=pt)
    cut = next_therapy_dates(pt, lines)
    wide = _wide(labs, pt.set_index("patient_id")["involved_light_chain"])
    by_patient = {pid: w.droplevel(0) for pid, w in wide.groupby(level=0, sort=False)}
    empty = wide.iloc[:0].droplevel(0)
    death = pt["death_date"] if "death_date" in pt else pd.Series(pd.NaT, index=pt.index)
    parts = [_assess(r.patient_id, r.infusion_date, by_patient.get(r.patient_id, empty), r.involved_light_chain,
                     cut.get(r.patient_id), params, d) for r, d in zip(pt.itertuples(index=False), death)]
    responses = pd.concat([x.responses for x in parts], ignore_index=True)
    progression = pd.concat([x.progression for x in parts], ignore_index=True)
    inputs = {k: {"path": v, "sha256": file_sha256(v)} for k, v in names.items() if v}
    return IMWGResult(responses, progression, params, inputs)
