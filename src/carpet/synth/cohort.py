"""Simulated cohorts calibrated to the published CAR T studies.

Every simulated patient carries the clinical variables, PET findings and outcomes that one of the
studies in ``../shared/studies/`` reports, drawn so that the cohort reproduces the study's summary
figures within sampling error. The figures and their sources live in
:mod:`carpet.synth.calibration`; this module only draws from them.

>>> c = simulate_cohort("moffitt_post_cart", seed=0)
>>> len(c.patients), bool(c.patients["simulated"].all())
(106, True)

Studies (``STUDIES``):

``moffitt_post_cart``
    106 myeloma patients who progressed after ide-cel / cilta-cel; baseline and progression EMD/PMD
    (Figure 2 transitions), progression patterns (Table 2), first salvage (Table 3), time to
    progression, PFS2 and OS from progression by baseline × progression EMD (Figures 3–5).
``certainty_pet``
    61 myeloma patients with baseline PET (MTV, SUVmax, lesions, bone-independent EMD, PMD,
    diffuse marrow uptake), day-30 metCR, PFS, CAR T expansion and TCR diversity.
``lbcl_mtv``
    111 LBCL patients from 6 centres with MTV (SUV 4.0), the raw IPI and CAR-HEMATOTOX components and PFS/OS.
``salvage_post_bcma``
    79 myeloma patients who relapsed after BCMA CAR T and every line they received afterwards (regimen as
    written, start, best response, progression on it), about 237 courses (Blood 2022).

Everything drawn is labelled simulated: a ``simulated`` column, ``SIM-`` patient ids and a README
written next to the table. Not written by a library: no package simulates cohorts from published
summary figures; the survival draws are plain inverse-CDF exponential draws (numpy).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.special import ndtri

from carpet.errors import InputError
from carpet.provenance import provenance
from carpet.synth import calibration as cal
from carpet.synth.calibration import Target
from carpet.synth.labs import progression_value
from carpet.io.tables import write_csv

DAYS_PER_MONTH = 365.25 / 12
REFRACTORY_DAYS = 60  # Moffitt: "progression within 60 days of CAR T-cell infusion"
DAY90 = 90  # Moffitt: response assessed on day 90 post-infusion
# simulated laboratory schedule: baseline a week before infusion, monthly, confirmation 2 weeks later
BASELINE_DAY = -7
ASSESSMENT_INTERVAL_DAYS = 30
CONFIRMATION_DAYS = 14
# phantom link
DIFFUSE_MARROW_SUV = 2.5  # assumed: visibly above the phantom's default marrow (1.2), below SUV 4
MIN_LESION_RADIUS_MM = 4.0  # one 4 mm PET voxel either side of the centre

SIMULATED_NOTICE = (
    "SIMULATED DATA - NOT REAL PATIENTS.\n"
    "Every row of patients.csv was drawn at random by carpet's cohort simulator (carpet.synth.cohort),\n"
    "calibrated to the published summary figures of one study. No value belongs to a real person.\n"
    "Do not use these data for clinical decisions or report them as observed results.\n"
)


@dataclass(frozen=True)
class StudyInfo:
    """A study the simulator can reproduce."""

    id: str
    disease: str
    n: int
    description: str
    targets: dict[str, Target]
    #: draws (patients), (patients, therapies) or (patients, therapies, other treated patients)
    simulate: Callable[[np.random.Generator, int], pd.DataFrame | tuple[pd.DataFrame, ...]] = field(repr=False)
    #: model parameters derived from the targets (recorded in the provenance)
    derived: Callable[[], dict[str, Any]] = field(repr=False, default=dict)
    #: columns only the simulator knows (its answers); ``patients.csv`` leaves them out, ``truth.csv`` has them
    truth_only: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------------------
# small drawing helpers
# --------------------------------------------------------------------------------------------------
def _tv(targets: dict[str, Target], key: str):
    return targets[key].value


def _categorical(rng, n: int, counts_or_probs: dict) -> np.ndarray:
    """Draw ``n`` labels with probabilities proportional to the dict values."""
    labels = np.array(list(counts_or_probs), dtype=object)
    p = np.asarray(list(counts_or_probs.values()), float)
    return labels[rng.choice(len(labels), size=n, p=p / p.sum())]


def _by_group(rng, groups: np.ndarray, per_group: dict, draw: Callable) -> np.ndarray:
    """Apply ``draw(rng, size, spec)`` separately within each group value (e.g. EMD yes/no)."""
    out = np.empty(len(groups), dtype=object)
    for key, spec in per_group.items():
        mask = groups == key
        out[mask] = draw(rng, int(mask.sum()), spec)
    return out


def _quartile_draw(rng, n: int, quartiles, value_range) -> np.ndarray:
    """Draw from the piecewise-linear distribution through (min, Q1, median, Q3, max).

    A published median and IQR fix three quantiles; linear interpolation between them (and the
    assumed range) reproduces them exactly in expectation without choosing a parametric family.
    """
    lo, hi = value_range
    return np.interp(rng.random(n), [0.0, 0.25, 0.5, 0.75, 1.0], [lo, *quartiles, hi])


def _exponential_months(u: np.ndarray, median_months) -> np.ndarray:
    """Exponential times with the given median(s) from uniforms ``u`` (inverse CDF)."""
    return -np.log1p(-u) * np.asarray(median_months, float) / np.log(2.0)


def _censor(time_months: np.ndarray, follow_up_months: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Administrative censoring: observed time and 0/1 event indicator."""
    event = (time_months <= follow_up_months).astype(np.int64)
    return np.minimum(time_months, follow_up_months), event


def _dates(rng, n: int, window) -> pd.DatetimeIndex:
    start, end = (np.datetime64(d, "D") for d in window)
    days = rng.integers(0, int((end - start).astype(int)) + 1, size=n)
    return pd.DatetimeIndex(start + days.astype("timedelta64[D]"))


def _ids(prefix: str, n: int) -> list[str]:
    return [f"SIM-{prefix}-{i:04d}" for i in range(1, n + 1)]


def _myeloma_demographics(rng, n: int, emd: np.ndarray) -> dict[str, Any]:
    """Age, sex, race, ECOG and monoclonal protein, by baseline EMD as in Moffitt Table 1."""
    t = cal.MOFFITT_TARGETS
    age = _by_group(rng, emd, _tv(t, "age_quartiles_by_emd"),
                    lambda r, k, q: _quartile_draw(r, k, q, _tv(t, "age_range_years"))).astype(float)
    male = _by_group(rng, emd, _tv(t, "male_by_emd"), lambda r, k, p: r.random(k) < p).astype(bool)
    race = _by_group(rng, emd, _tv(t, "race_counts_by_emd"), _categorical)
    ecog_cat = _by_group(rng, emd, _tv(t, "ecog_counts_by_emd"), _categorical)
    ecog = np.where(ecog_cat == "0-1", (rng.random(n) >= _tv(t, "ecog0_share_of_0_1")).astype(int),
                    ecog_cat).astype(np.int64)
    heavy = _by_group(rng, emd, _tv(t, "heavy_chain_counts_by_emd"), _categorical)
    light_counts = _tv(t, "light_chain_counts")
    no_heavy = heavy == "none"
    # the non-secretory patients are those without a heavy chain whose light chain is also absent
    p_nonsec = light_counts["none"] / sum(_tv(t, "heavy_chain_counts_by_emd")[g]["none"] for g in (True, False))
    non_secretory = no_heavy & (rng.random(n) < p_nonsec)
    # non-secretory plasma cells still carry a kappa or lambda light chain (seen on marrow
    # immunohistochemistry), so every patient has the involved chain `carpet imwg` needs
    light = _categorical(rng, n, {k: v for k, v in light_counts.items() if k != "none"})
    heavy = np.where(no_heavy, np.where(non_secretory, "none", "light_chain_only"), heavy)
    return {
        "sex": np.where(male, "M", "F"),
        "age_years": np.round(age).astype(np.int64),
        "race": race,
        "ecog": ecog,
        "heavy_chain": heavy,
        "involved_light_chain": light,
        "non_secretory": non_secretory,
    }


# --------------------------------------------------------------------------------------------------
# Moffitt: post-CAR T progression
# --------------------------------------------------------------------------------------------------
def _site_flags(category: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """EMD / PMD flags from a Figure 2 category; 'unknown' gives missing (pandas NA)."""
    unknown = category == "unknown"
    emd = pd.array(np.isin(category, ["emd_only", "both"]), dtype="boolean")
    pmd = pd.array(np.isin(category, ["pmd_only", "both"]), dtype="boolean")
    emd[unknown] = pd.NA
    pmd[unknown] = pd.NA
    return emd, pmd


def moffitt_pattern_probabilities() -> dict[str, float]:
    """Conditional probabilities of the progression patterns, derived from Table 2.

    The isolated-pattern rows of Table 2 imply strong dependence between the patterns (no isolated
    marrow relapse; few progressions without both biochemical relapse and EMD/PMD). The model:
    marrow involvement only together with biochemical relapse; biochemical relapse depends on
    EMD/PMD at progression (E); new bone disease depends on both; a progression with neither
    biochemical relapse nor E is a new-bone-only progression. Solving the marginals of Table 2 and
    the isolated bone / isolated EMD-PMD rows gives the probabilities below; isolated biochemical
    progression then follows (about 7% vs 6% published).
    """
    t = cal.MOFFITT_TARGETS
    counts = _tv(t, "transition_counts")
    known = sum(v for row in counts.values() for k, v in row.items() if k != "unknown")
    p_e = sum(v for row in counts.values() for k, v in row.items() if k in ("emd_only", "pmd_only", "both")) / known
    p_b, p_m, p_n = (_tv(t, k) for k in ("pattern_biochemical", "pattern_marrow", "pattern_bone"))
    p_not_b_not_e = _tv(t, "isolated_bone")            # forced new-bone-only progressions
    p_not_b_e = (1 - p_b) - p_not_b_not_e
    p_n_given_not_b_e = 1 - _tv(t, "isolated_emd_or_pmd") / p_not_b_e
    return {
        "b_given_e": (p_e - p_not_b_e) / p_e,
        "b_given_not_e": (1 - p_e - p_not_b_not_e) / (1 - p_e),
        "m_given_b": p_m / p_b,
        "n_given_b": (p_n - p_not_b_not_e - p_not_b_e * p_n_given_not_b_e) / p_b,
        "n_given_not_b_e": p_n_given_not_b_e,
    }


def _moffitt_patterns(rng, n: int, e: np.ndarray, non_secretory: np.ndarray) -> dict[str, np.ndarray]:
    p = moffitt_pattern_probabilities()
    # non-secretory disease cannot relapse biochemically; the others carry its share so the
    # cohort-wide rate stays at the published 82%
    p_sec = 1 - cal.MOFFITT_TARGETS["light_chain_counts"].value["none"] / cal.MOFFITT_TARGETS["n"].value
    p_b = np.where(e, p["b_given_e"], p["b_given_not_e"]) / p_sec
    b = (rng.random(n) < p_b) & ~non_secretory
    m = b & (rng.random(n) < p["m_given_b"])
    u = rng.random(n)
    bone = np.where(b, u < p["n_given_b"], np.where(e, u < p["n_given_not_b_e"], True))
    return {"pattern_biochemical": b, "pattern_marrow": m, "pattern_bone": bone}


def _simulate_moffitt(rng: np.random.Generator, n: int) -> pd.DataFrame:
    t = cal.MOFFITT_TARGETS
    base_cat = _categorical(rng, n, _tv(t, "baseline_status_counts"))
    prog_cat = _by_group(rng, base_cat, _tv(t, "transition_counts"), _categorical)
    emd_bl = np.isin(base_cat, ["emd_only", "both"])
    pmd_bl = np.isin(base_cat, ["pmd_only", "both"])
    emd_pd, pmd_pd = _site_flags(prog_cat)
    emd_pd_known = emd_pd.fillna(False).to_numpy(bool)
    e_any = emd_pd_known | pmd_pd.fillna(False).to_numpy(bool)

    demo = _myeloma_demographics(rng, n, emd_bl)
    product = _categorical(rng, n, _tv(t, "product_counts"))
    p_refr = {k: v / _tv(t, "product_counts")[k] for k, v in _tv(t, "refractory_counts_by_product").items()}
    refractory = _by_group(rng, product, p_refr, lambda r, k, p: r.random(k) < p).astype(bool)

    # time to progression: piecewise-linear quantile function through the published quartiles,
    # with the lower 13% (P(refractory)) of the distribution below 60 days
    p_ref_all = sum(_tv(t, "refractory_counts_by_product").values()) / _tv(t, "n")
    lo, hi = _tv(t, "ttp_range_months")
    q1, q2, q3 = _tv(t, "ttp_quartiles_months")
    cut = REFRACTORY_DAYS / DAYS_PER_MONTH
    u = np.where(refractory, rng.random(n) * p_ref_all, p_ref_all + rng.random(n) * (1 - p_ref_all))
    ttp_days = np.interp(u, [0, p_ref_all, 0.25, 0.5, 0.75, 1], [lo, cut, q1, q2, q3, hi]) * DAYS_PER_MONTH
    ttp_days = np.where(refractory, np.minimum(np.floor(ttp_days), REFRACTORY_DAYS),
                        np.maximum(np.ceil(ttp_days), REFRACTORY_DAYS + 1)).astype(np.int64)

    # infusion inside the study window, early enough that progression precedes the data cut-off
    start, end = (np.datetime64(d, "D") for d in _tv(t, "infusion_window"))
    cutoff = np.datetime64(_tv(t, "data_cutoff"), "D")
    last = np.minimum(end, cutoff - ttp_days.astype("timedelta64[D]"))
    span = (last - start).astype(np.int64)
    infusion = start + np.floor(rng.random(n) * (span + 1)).astype("timedelta64[D]")
    progression = infusion + ttp_days.astype("timedelta64[D]")

    # post-progression outcomes: exponential by (baseline EMD, progression EMD); PFS2 and OS share
    # one uniform, so PFS2 <= OS (an assumption, see calibration 'pfs2_os_coupling')
    m_pfs2 = cal.moffitt_group_medians("pfs2")
    m_os = cal.moffitt_group_medians("os_pp")
    groups = list(zip(emd_bl, emd_pd_known))
    u = rng.random(n)
    pfs2_raw = _exponential_months(u, [m_pfs2[g] for g in groups])
    os_raw = _exponential_months(u, [m_os[g] for g in groups])
    follow_up = (cutoff - progression).astype(np.int64) / DAYS_PER_MONTH
    pfs2, pfs2_event = _censor(pfs2_raw, follow_up)
    os_pp, os_pp_event = _censor(os_raw, follow_up)
    patterns = _moffitt_patterns(rng, n, e_any, demo["non_secretory"])

    # day-90 response: patients who progressed by day 90 have none; the others carry the published
    # rates, scaled up by the share still progression-free at day 90 (independent of EMD here)
    p_by_day90 = np.interp(DAY90 / DAYS_PER_MONTH, [lo, cut, q1, q2, q3, hi], [0, p_ref_all, 0.25, 0.5, 0.75, 1])
    early = ttp_days <= DAY90
    p_orr = np.where(emd_bl, _tv(t, "day90_orr_by_emd")[True], _tv(t, "day90_orr_by_emd")[False]) / (1 - p_by_day90)
    p_cr = np.where(emd_bl, _tv(t, "day90_cr_by_emd")[True], _tv(t, "day90_cr_by_emd")[False]) / (1 - p_by_day90)
    u = rng.random(n)
    lines = _by_group(rng, emd_bl, _tv(t, "prior_lines_quartiles_by_emd"),
                      lambda r, k, q: _quartile_draw(r, k, q, _tv(t, "prior_lines_range")))
    ttp_months = ttp_days / DAYS_PER_MONTH

    truth = pd.DataFrame({
        "patient_id": _ids("MM", n),
        **{k: demo[k] for k in ("sex", "age_years", "race", "ecog", "heavy_chain", "involved_light_chain",
                                "non_secretory")},
        "disease": "MM",
        "product": product,
        "infusion_date": pd.DatetimeIndex(infusion),
        "prior_lines": np.round(lines.astype(float)).astype(np.int64),
        "prior_asct": rng.random(n) < _tv(t, "prior_asct"),
        "high_risk_cytogenetics": rng.random(n) < _tv(t, "high_risk_cytogenetics"),
        "anemia": rng.random(n) < _tv(t, "anemia"),
        "neutropenia": rng.random(n) < _tv(t, "neutropenia"),
        "thrombocytopenia": rng.random(n) < _tv(t, "thrombocytopenia"),
        "renal_failure": rng.random(n) < _tv(t, "renal_failure"),
        "emd_baseline": emd_bl,
        "pmd_baseline": pmd_bl,
        "day90_orr": ~early & (u < p_orr),
        "day90_cr": ~early & (u < p_cr),
        "pfs_months": ttp_months,
        "pfs_event": np.ones(n, np.int64),  # every patient of this study progressed
        "progression_date": pd.DatetimeIndex(progression),
        "refractory": refractory,
        "emd_progression": emd_pd,
        "pmd_progression": pmd_pd,
        **patterns,
        "pattern_emd": emd_pd,
        "pattern_pmd": pmd_pd,
        "first_salvage_class": _categorical(rng, n, _tv(t, "first_salvage_counts")),
        "pfs2_months": pfs2,
        "pfs2_event": pfs2_event,
        "os_pp_months": os_pp,
        "os_pp_event": os_pp_event,
        "os_months": ttp_months + os_pp,
        "os_event": os_pp_event,
    })
    truth = _moffitt_raw_inputs(rng, truth)
    others = _moffitt_not_progressed(rng, n, truth)
    return truth, _moffitt_therapies(truth, others), others


def _moffitt_not_progressed(rng: np.random.Generator, n: int, progressed: pd.DataFrame) -> pd.DataFrame:
    """Figure 1's other treated patients: those still progression-free at the data cut-off (145 of 251).

    Drawn after the 106 (whose draws are unchanged), with the same raw columns: demographics, FISH and blood
    counts at the Table 1 rates, less EMD/PMD, a day-90 response, infusion in the study window and follow-up to
    the cut-off (all ``assumed``, see the targets). Ids continue after the progressed patients'.
    """
    t = cal.MOFFITT_TARGETS
    treated = _tv(t, "treated_product_counts")
    scale = n / _tv(t, "n")
    # the treated totals of Figure 1 exactly (at the published n): whatever the progressed draw left
    drawn = progressed["product"].value_counts()
    counts = {k: max(int(round(treated[k] * scale)) - int(drawn.get(k, 0)), 0) for k in treated}
    m = sum(counts.values())
    base = _tv(t, "not_progressed_baseline")
    emd = rng.random(m) < base["emd"]
    pmd = rng.random(m) < base["pmd"]
    demo = _myeloma_demographics(rng, m, emd)
    product = rng.permutation(np.repeat(list(counts), list(counts.values())))
    lines = _by_group(rng, emd, _tv(t, "prior_lines_quartiles_by_emd"),
                      lambda r, k, q: _quartile_draw(r, k, q, _tv(t, "prior_lines_range")))
    start, end = (np.datetime64(d, "D") for d in _tv(t, "infusion_window"))
    infusion = start + rng.integers(0, int((end - start).astype(int)) + 1, size=m).astype("timedelta64[D]")
    cutoff = np.datetime64(_tv(t, "data_cutoff"), "D")
    u = rng.random(m)
    fish = {k: rng.random(m) < v / _tv(t, "n") for k, v in _tv(t, "fish_counts").items()}
    flags = {k: rng.random(m) < _tv(t, k) for k in ("anemia", "neutropenia", "thrombocytopenia", "renal_failure")}
    df = pd.DataFrame({
        "patient_id": [f"SIM-MM-{i:04d}" for i in range(len(progressed) + 1, len(progressed) + m + 1)],
        **{k: demo[k] for k in ("sex", "age_years", "race", "ecog", "heavy_chain", "involved_light_chain",
                                "non_secretory")},
        "disease": "MM", "product": product, "infusion_date": pd.DatetimeIndex(infusion),
        "prior_lines": np.round(lines.astype(float)).astype(np.int64),
        "prior_asct": rng.random(m) < _tv(t, "prior_asct"),
        "high_risk_cytogenetics": np.logical_or.reduce(list(fish.values())), **flags,
        "emd_baseline": emd, "pmd_baseline": pmd,
        "day90_orr": u < base["day90_orr"], "day90_cr": u < base["day90_cr"],
        "pfs_event": np.zeros(m, np.int64), "progression_date": pd.NaT, "refractory": False,
        "emd_progression": pd.array([None] * m, dtype="boolean"), "pmd_progression": pd.array([None] * m,
                                                                                            dtype="boolean"),
        "last_followup_date": pd.Timestamp(cutoff), "death_date": pd.NaT, **fish,
    })
    df["pfs_months"] = (df["last_followup_date"] - df["infusion_date"]).dt.days / DAYS_PER_MONTH
    for column, flag in (("hb_g_dl", "anemia"), ("anc_per_ul", "neutropenia"), ("platelets_per_ul", "thrombocytopenia"),
                         ("creatinine_mg_dl", "renal_failure")):
        (a_lo, a_hi), (n_lo, n_hi) = _tv(t, "cbc_ranges")[column]
        value = np.where(df[flag], rng.uniform(a_lo, a_hi, m), rng.uniform(n_lo, n_hi, m))
        df[column] = np.round(value, 1 if column in ("hb_g_dl", "creatinine_mg_dl") else -1)
    return _moffitt_more_fish(rng, df)


#: Columns of the Moffitt-like table that only the simulator knows (its answers): a centre's table has the raw
#: inputs instead (dates of death / follow-up, FISH results, blood counts, lab series, therapy lines), from which
#: ``carpet analyze`` derives these. Written to ``truth.csv``, never to ``patients.csv``.
MOFFITT_TRUTH_ONLY = (
    "day90_orr", "day90_cr", "pfs_months", "pfs_event", "progression_date", "refractory", "pattern_biochemical",
    "pattern_marrow", "pattern_bone", "pattern_emd", "pattern_pmd", "first_salvage_class", "pfs2_months",
    "pfs2_event", "os_pp_months", "os_pp_event", "os_months", "os_event", "high_risk_cytogenetics", "anemia",
    "neutropenia", "thrombocytopenia", "renal_failure", "salvage_regimen", "salvage_start_date",
    "salvage_progression_date")


def _moffitt_therapies(df: pd.DataFrame, others: pd.DataFrame) -> pd.DataFrame:
    """The therapies table: the CAR T line and the first line after progression (Table 3), per patient; the CAR T
    line of every other treated patient."""
    cols = ["patient_id", "prior_lines", "infusion_date", "product"]
    treated = pd.concat([df[cols], others[cols]], ignore_index=True)
    car_t = pd.DataFrame({"patient_id": treated["patient_id"], "line": treated["prior_lines"] + 1,
                          "start_date": treated["infusion_date"], "regimen": treated["product"]})
    after = df[df["salvage_start_date"].notna()]
    salvage = pd.DataFrame({"patient_id": after["patient_id"], "line": after["prior_lines"] + 2,
                            "start_date": after["salvage_start_date"], "regimen": after["salvage_regimen"],
                            "progression_date": after["salvage_progression_date"],
                            "clinical_trial": after["first_salvage_class"] == "clinical_trial"})
    lines = pd.concat([car_t, salvage], ignore_index=True)
    return lines.sort_values(["patient_id", "line"], kind="stable").reset_index(drop=True)


def _moffitt_raw_inputs(rng: np.random.Generator, df: pd.DataFrame) -> pd.DataFrame:
    """The raw columns behind the Moffitt-like answers, drawn after them (the answers' draws are unchanged).

    FISH results behind the high-risk flag, blood counts behind the Table 1 flags, dates of death / last
    follow-up and the first line after progression (regimen, start, progression on it). Times become whole
    days, as dates carry them; the answers are recomputed from those days so that the truth and what carpet
    derives from the dates agree to the day.
    """
    t = cal.MOFFITT_TARGETS
    n = len(df)
    df = df.copy()
    hr = df["high_risk_cytogenetics"].to_numpy(bool)
    fish = _tv(t, "fish_counts")
    n_hr = _tv(t, "high_risk_cytogenetics") * _tv(t, "n")
    drawn = {k: hr & (rng.random(n) < v / n_hr) for k, v in fish.items()}
    fallback = _categorical(rng, n, fish)  # a high-risk patient with none drawn gets one, as often as published
    none = hr & ~np.logical_or.reduce(list(drawn.values()))
    for k in fish:
        drawn[k] = drawn[k] | (none & (fallback == k))
    for k, v in drawn.items():
        df[k] = v
    for column, flag, below in (("hb_g_dl", "anemia", True), ("anc_per_ul", "neutropenia", True),
                                ("platelets_per_ul", "thrombocytopenia", True),
                                ("creatinine_mg_dl", "renal_failure", False)):
        (a_lo, a_hi), (n_lo, n_hi) = _tv(t, "cbc_ranges")[column]
        abnormal = df[flag].to_numpy(bool)
        value = np.where(abnormal, rng.uniform(a_lo, a_hi, n), rng.uniform(n_lo, n_hi, n))
        df[column] = np.round(value, 1 if column in ("hb_g_dl", "creatinine_mg_dl") else -1)

    start = int(_tv(t, "next_line_start_days"))
    progression = pd.DatetimeIndex(df["progression_date"])
    follow = (np.datetime64(_tv(t, "data_cutoff"), "D") - progression.to_numpy().astype("datetime64[D]")).astype(int)
    os_days = np.maximum(np.round(df["os_pp_months"].to_numpy() * DAYS_PER_MONTH), 1).astype(int)
    os_event = df["os_pp_event"].to_numpy(int)
    # a patient with a next line lives to start it (a death within days of progression moves past the start)
    has_line = follow > start
    os_days = np.where(has_line & (os_days <= start), start + 1, os_days)
    pfs2_days = np.minimum(np.round(df["pfs2_months"].to_numpy() * DAYS_PER_MONTH).astype(int), os_days)
    on_line = (df["pfs2_event"].to_numpy(int) == 1) & (pfs2_days < os_days) & has_line
    pfs2_days = np.where(on_line, np.maximum(pfs2_days, start + 1), pfs2_days)
    on_line &= pfs2_days < os_days
    pfs2_days = np.where((df["pfs2_event"].to_numpy(int) == 1) & ~on_line, os_days, pfs2_days)
    day = pd.to_timedelta(1, unit="D")
    df["death_date"] = pd.DatetimeIndex(np.where(os_event == 1, progression + os_days * day, pd.NaT))
    df["last_followup_date"] = pd.DatetimeIndex(np.where(os_event == 1, pd.NaT, progression + os_days * day))
    regimens = _tv(t, "salvage_regimens")
    df["salvage_regimen"] = [regimens[c][rng.integers(len(regimens[c]))] or np.nan  # NaN, as CSV reads it back
                             for c in df["first_salvage_class"]]
    df["salvage_start_date"] = pd.DatetimeIndex(np.where(has_line, progression + start * day, pd.NaT))
    df["salvage_progression_date"] = pd.DatetimeIndex(np.where(on_line, progression + pfs2_days * day, pd.NaT))
    df["os_pp_months"] = os_days / DAYS_PER_MONTH
    df["pfs2_months"] = pfs2_days / DAYS_PER_MONTH
    df["os_months"] = df["pfs_months"] + df["os_pp_months"]
    return _moffitt_more_fish(rng, df)


def _moffitt_more_fish(rng: np.random.Generator, df: pd.DataFrame) -> pd.DataFrame:
    """The FISH results behind Table 1's chromosome 1, t(11;14) and hyperdiploidy rows, by any baseline EMD.

    Raw columns a lab reports (``gain1q``, ``amp1q``, ``del1p32``, ``t11_14``, ``non_hyperdiploid``; empty = not
    tested); a plan derives the pooled rows from them. Drawn last, so every earlier draw is unchanged.
    """
    t = cal.MOFFITT_TARGETS
    n = len(df)
    emd = df["emd_baseline"].to_numpy(bool)
    tested = rng.random(n) < np.where(emd, *(_tv(t, "fish_extended_tested_by_emd")[k] for k in (True, False)))
    rates = _tv(t, "fish_extended_by_emd")
    drawn = {k: rng.random(n) < np.where(emd, rates[k][True], rates[k][False]) for k in rates}
    kind = _categorical(rng, n, _tv(t, "chromosome1_split"))
    chr1 = drawn["chromosome1"]
    raw = {"gain1q": chr1 & np.isin(kind, ["gain1q", "gain1q+del1p32"]), "amp1q": chr1 & (kind == "amp1q"),
           "del1p32": chr1 & np.isin(kind, ["del1p32", "gain1q+del1p32"]), "t11_14": drawn["t11_14"],
           "non_hyperdiploid": ~drawn["hyperdiploid"]}
    df = df.copy()
    for column, values in raw.items():
        df[column] = pd.array(np.where(tested, values, None), dtype="boolean")
    return df


# --------------------------------------------------------------------------------------------------
# CERTAINTY: myeloma PET before / after CAR T
# --------------------------------------------------------------------------------------------------
def _lognormal(rng, median, log_sd, n):
    return np.asarray(median, float) * np.exp(log_sd * rng.standard_normal(n))


def _simulate_certainty(rng: np.random.Generator, n: int) -> pd.DataFrame:
    t = cal.CERTAINTY_TARGETS
    n_pub = _tv(t, "n")
    emd = rng.random(n) < _tv(t, "emd_baseline")
    pmd = rng.random(n) < _tv(t, "pmd_baseline")
    demo = _myeloma_demographics(rng, n, emd)  # borrowed from Moffitt Table 1 (assumed, see targets)

    # which patients had each PET: the published counts as a fraction of the cohort
    has_pet0 = rng.random(n) < _tv(t, "baseline_pet_n") / n_pub
    has_pet30 = rng.random(n) < _tv(t, "day30_pet_n") / n_pub
    mtv = _lognormal(rng, np.where(emd, *(_tv(t, "mtv_median_ml_by_emd")[k] for k in (True, False))),
                     _tv(t, "mtv_log_sd"), n)
    suv_max = _lognormal(rng, np.where(emd, *(_tv(t, "suv_max_median_by_emd")[k] for k in (True, False))),
                         _tv(t, "suv_max_log_sd"), n)
    n_les = 1 + rng.poisson(np.where(emd, *(_tv(t, "n_lesions_mean_by_emd")[k] for k in (True, False))) - 1)
    diffuse = rng.random(n) < _tv(t, "diffuse_marrow_uptake")

    # metCR: the EMD rate is assumed, the other rate solved so the overall rate is the published one
    p_emd, p_all, p_m_emd = _tv(t, "emd_baseline"), _tv(t, "metcr_day30"), _tv(t, "metcr_day30_given_emd")
    p_m_other = (p_all - p_emd * p_m_emd) / (1 - p_emd)
    metcr = rng.random(n) < np.where(emd, p_m_emd, p_m_other)
    scr = rng.random(n) < _tv(t, "serological_cr_day30")

    medians = _tv(t, "pfs_median_months_by_emd")
    # at least one day: a progression is seen after the infusion, not on it
    pfs_raw = np.maximum(_exponential_months(rng.random(n), np.where(emd, medians[True], medians[False])),
                         1 / DAYS_PER_MONTH)
    pfs, pfs_event = _censor(pfs_raw, rng.uniform(*_tv(t, "follow_up_months"), size=n))

    def pet(values, have):  # missing where the patient had no such PET
        return pd.array(np.where(have, values, None), dtype=pd.array(values).dtype)

    truth = pd.DataFrame({
        "patient_id": _ids("MMPET", n),
        **{k: demo[k] for k in ("sex", "age_years", "heavy_chain", "involved_light_chain")},
        "disease": "MM",
        "product": _categorical(rng, n, _tv(t, "product_share")),
        "infusion_date": _dates(rng, n, _tv(t, "infusion_window")),
        "baseline_pet": has_pet0,
        "emd_baseline": pet(emd, has_pet0),
        "pmd_baseline": pet(pmd, has_pet0),
        "diffuse_marrow_uptake": pet(diffuse, has_pet0),
        "mtv_ml": np.where(has_pet0, mtv, np.nan),
        "suv_max": np.where(has_pet0, suv_max, np.nan),
        "n_lesions": pet(n_les.astype(np.int64), has_pet0),
        "day30_pet": has_pet30,
        "metcr_day30": pet(metcr, has_pet30),
        "serological_cr_day30": scr,
        "pfs_months": pfs,
        "pfs_event": pfs_event,
    })
    return _dated_endpoints(_certainty_expansion(rng, truth), os=False)


def _certainty_expansion(rng: np.random.Generator, df: pd.DataFrame) -> pd.DataFrame:
    """CAR T expansion in blood (peak cells/µL, AUC over days 0-28) and TCR diversity, independent of MTV.

    The CERTAINTY news item: a high MTV 'did not affect CAR T expansion or T cell receptor diversity', so both
    are drawn without reference to MTV (peak by product). Missing for patients not measured. Drawn last.
    """
    t = cal.CERTAINTY_TARGETS
    n = len(df)
    medians = _tv(t, "car_t_peak_median_per_ul_by_product")
    peak = _lognormal(rng, df["product"].map(medians).to_numpy(float), _tv(t, "car_t_peak_log_sd"), n)
    auc = peak * _lognormal(rng, _tv(t, "car_t_auc_days_median"), 0.3, n)
    measured = rng.random(n) < _tv(t, "expansion_measured")
    mean, sd = _tv(t, "tcr_shannon_mean_sd")
    tcr = mean + sd * rng.standard_normal(n)
    tcr_measured = rng.random(n) < _tv(t, "tcr_measured")
    df = df.copy()
    df["car_t_peak_per_ul"] = np.where(measured, np.round(peak, 1), np.nan)
    df["car_t_auc_0_28"] = np.where(measured, np.round(auc), np.nan)
    df["tcr_shannon"] = np.where(tcr_measured, np.round(tcr, 2), np.nan)
    return df


# --------------------------------------------------------------------------------------------------
# LBCL: baseline MTV before CAR T
# --------------------------------------------------------------------------------------------------
def lbcl_baseline_median_months(median_months: float, log_hr: float) -> float:
    """Exponential median at mean log-MTV that makes the *cohort* median equal ``median_months``.

    The hazard is ``h0 * exp(log_hr * z)`` with ``z`` standard normal (standardised log MTV); the
    cohort survival is the average over ``z`` (Gauss–Hermite quadrature).
    """
    x, w = np.polynomial.hermite_e.hermegauss(40)
    w = w / w.sum()
    scale = np.exp(log_hr * x)
    rate0 = brentq(lambda r: np.sum(w * np.exp(-r * scale * median_months)) - 0.5, 1e-6, 100.0)
    return float(np.log(2.0) / rate0)


def _simulate_lbcl(rng: np.random.Generator, n: int) -> pd.DataFrame:
    t = cal.LBCL_TARGETS
    z = rng.standard_normal(n)  # standardised log MTV
    mtv = _tv(t, "mtv_median_ml") * np.exp(_tv(t, "mtv_log_sd") * z)
    # every lesion found by SUV 4.0 has SUVmax >= 4
    suv_max = np.maximum(4.0, _lognormal(rng, _tv(t, "suv_max_median"), _tv(t, "suv_max_log_sd"), n))
    n_les = 1 + rng.poisson((_tv(t, "n_lesions_mean_at_median_mtv") - 1) * np.exp(_tv(t, "n_lesions_log_slope") * z))
    centre = rng.integers(0, _tv(t, "n_centres"), size=n)
    uln = np.asarray(_tv(t, "ldh_uln_u_l_by_centre"), float)[centre]
    # LDH and stage rise with tumour burden: standard-normal latents correlated with z, cut at the
    # normal quantiles that give the assumed shares
    r_ldh, r_stage = _tv(t, "ldh_mtv_correlation"), _tv(t, "stage_mtv_correlation")
    ldh_latent = r_ldh * z + np.sqrt(1 - r_ldh**2) * rng.standard_normal(n)
    ldh = np.round(uln * np.exp(_tv(t, "ldh_log_sd") * (ldh_latent - ndtri(1 - _tv(t, "ldh_elevated")))))
    stage_latent = r_stage * z + np.sqrt(1 - r_stage**2) * rng.standard_normal(n)
    stage_cum = np.cumsum(list(_tv(t, "stage_share").values()))[:-1]
    stage = 1 + np.searchsorted(ndtri(stage_cum), stage_latent)
    age = _quartile_draw(rng, n, _tv(t, "age_quartiles_years"), _tv(t, "age_range_years"))

    log_hr = _tv(t, "pfs_log_hr_per_sd_log_mtv")
    u = rng.random(n)
    scale = np.exp(-log_hr * z)  # median scales inversely with the hazard
    pfs_raw = _exponential_months(u, lbcl_baseline_median_months(_tv(t, "pfs_median_months"), log_hr) * scale)
    os_raw = _exponential_months(u, lbcl_baseline_median_months(_tv(t, "os_median_months"), log_hr) * scale)
    follow_up = rng.uniform(*_tv(t, "follow_up_months"), size=n)
    pfs, pfs_event = _censor(pfs_raw, follow_up)
    os_, os_event = _censor(os_raw, follow_up)
    truth = pd.DataFrame({
        "patient_id": _ids("LBCL", n),
        "centre": [f"C{c + 1}" for c in centre],
        "sex": np.where(rng.random(n) < _tv(t, "male"), "M", "F"),
        "age_years": np.round(age).astype(np.int64),
        "disease": "LBCL",
        "product": _categorical(rng, n, _tv(t, "product_share")),
        "infusion_date": _dates(rng, n, _tv(t, "infusion_window")),
        "mtv_method": _tv(t, "mtv_method"),
        "mtv_ml": mtv,
        "suv_max": suv_max,
        "n_lesions": n_les.astype(np.int64),
        "ldh_u_l": ldh.astype(np.int64),
        "ldh_uln_u_l": uln.astype(np.int64),
        "ecog": _categorical(rng, n, _tv(t, "ecog_share")).astype(np.int64),
        "ann_arbor_stage": stage.astype(np.int64),
        "n_extranodal_sites": rng.poisson(_tv(t, "extranodal_sites_mean"), size=n).astype(np.int64),
        "pfs_months": pfs,
        "pfs_event": pfs_event,
        "os_months": os_,
        "os_event": os_event,
    })
    return _dated_endpoints(_lbcl_hematotox_inputs(rng, truth, z), os=True)


def _lbcl_hematotox_inputs(rng: np.random.Generator, df: pd.DataFrame, z: np.ndarray) -> pd.DataFrame:
    """Platelets, ANC, Hb, CRP and ferritin before lymphodepletion (the CAR-HEMATOTOX inputs, spec §6.2).

    Lognormal, each log value correlated with the standardised log MTV ``z`` (assumed); they act on PFS only
    through that link. Drawn last, so the earlier draws are unchanged.
    """
    t = cal.LBCL_TARGETS
    df = df.copy()
    for column, (median, log_sd) in _tv(t, "hematotox_inputs").items():
        r = _tv(t, "hematotox_mtv_correlation")[column]
        latent = r * z + np.sqrt(1 - r**2) * rng.standard_normal(len(df))
        value = median * np.exp(log_sd * latent)
        df[column] = np.round(value, 1) if column in ("hb_g_dl", "crp_mg_dl") else np.round(value, -1)
    return df


# --------------------------------------------------------------------------------------------------
# Salvage after BCMA CAR T (Blood 2022)
# --------------------------------------------------------------------------------------------------
#: best-response categories drawn for a line that responded / did not (assumed shares)
_RESPONDER_CATEGORIES = {"sCR": 0.10, "CR": 0.15, "VGPR": 0.30, "PR": 0.45}
_NON_RESPONDER_CATEGORIES = {"MR": 0.10, "SD": 0.40, "PD": 0.50}
SALVAGE_REGIMENS = {"conventional_combination": ("KPd", "Dara-Pom-dex", "Isa-Kd", "DT-PACE", "Sel-Pom-dex",
                                                 "Cy-Bor-D", "Elo-Pom-dex"),
                    "bcma_bispecific": ("Teclistamab", "Elranatamab", "Tec-Dara"),
                    "gprc5d_bispecific": ("Talquetamab", "Talq"), "car_t": ("cilta-cel", "GPRC5D CAR T"),
                    "fcrh5_bispecific": ("Cevostamab",), "other_bcma": ("Belantamab mafodotin", "Belamaf"),
                    "clinical_trial": ("Investigational agent",)}
SALVAGE_TRUTH_ONLY = ("progression_date", "refractory", "day90_orr", "day90_cr", "os_relapse_months",
                      "os_relapse_event", "n_salvage_lines", "first_salvage_class", "first_salvage_responded",
                      "ever_tce")


def _simulate_salvage(rng: np.random.Generator, n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Patients who relapsed after BCMA CAR T and every line of therapy they received afterwards.

    Relapse from infusion by the (assumed) quartiles; OS from relapse exponential with the published
    median, administratively censored; lines follow one another (class mix and class ORRs assumed, see the
    targets) until death or the data cut-off, each with its best response and progression date.
    """
    t = cal.SALVAGE_TARGETS
    demo = _myeloma_demographics(rng, n, np.zeros(n, bool))  # borrowed from Moffitt Table 1 (assumed)
    heavy = np.where(demo["heavy_chain"] == "none", "light_chain_only", demo["heavy_chain"])  # secretory, all
    product = _categorical(rng, n, _tv(t, "product_share"))
    lo, hi = _tv(t, "ttp_range_months")
    ttp_days = np.ceil(_quartile_draw(rng, n, _tv(t, "ttp_quartiles_months"), (lo, hi)) * DAYS_PER_MONTH)
    start, end = (np.datetime64(d, "D") for d in _tv(t, "infusion_window"))
    cutoff = np.datetime64(_tv(t, "data_cutoff"), "D")
    last = np.minimum(end, cutoff - ttp_days.astype("timedelta64[D]") - 30)
    infusion = start + np.floor(rng.random(n) * ((last - start).astype(np.int64) + 1)).astype("timedelta64[D]")
    relapse = infusion + ttp_days.astype("timedelta64[D]")
    follow = (cutoff - relapse).astype(np.int64)
    os_days = np.maximum(np.round(_exponential_months(rng.random(n), _tv(t, "os_relapse_median_months"))
                                  * DAYS_PER_MONTH), 1).astype(np.int64)
    os_event = (os_days <= follow).astype(np.int64)
    os_days = np.minimum(os_days, follow)
    early = ttp_days <= DAY90
    u = rng.random(n)
    day90_orr = ~early & (u < _tv(t, "day90_orr"))
    day90_cr = ~early & (u < _tv(t, "day90_cr"))

    gap = int(_tv(t, "next_line_gap_days"))
    shares, orr = _tv(t, "salvage_class_share"), _tv(t, "salvage_class_orr")
    pfs_median = _tv(t, "line_pfs_median_months")
    ids = _ids("SALV", n)
    lines, first_class, first_resp, n_lines, ever_tce = [], [], [], [], []
    prior = 4 + rng.poisson(2.0, n)  # prior lines before CAR T (assumed; numbers the lines only)
    for i in range(n):
        day, k, mine = CONFIRMATION_DAYS + 1, 0, []
        while day < os_days[i]:
            cls = _categorical(rng, 1, shares)[0]
            responded = bool(rng.random() < orr[cls])
            best = _categorical(rng, 1, _RESPONDER_CATEGORIES if responded else _NON_RESPONDER_CATEGORIES)[0]
            on_line = max(int(round(_exponential_months(rng.random(), pfs_median[responded]) * DAYS_PER_MONTH)), 7)
            progressed = day + on_line < os_days[i]
            regimen = SALVAGE_REGIMENS[cls][rng.integers(len(SALVAGE_REGIMENS[cls]))]
            mine.append({"patient_id": ids[i], "line": int(prior[i]) + 2 + k,
                         "start_date": relapse[i] + np.timedelta64(day, "D"), "regimen": regimen,
                         "best_response": best, "clinical_trial": cls == "clinical_trial",
                         "progression_date": relapse[i] + np.timedelta64(day + on_line, "D") if progressed else pd.NaT,
                         "regimen_class": cls})
            k += 1
            day += on_line + gap
        lines += mine
        first_class.append(mine[0]["regimen_class"] if mine else "none")
        first_resp.append(mine[0]["best_response"] in _RESPONDER_CATEGORIES if mine else None)
        n_lines.append(len(mine))
        ever_tce.append(any(m["regimen_class"] in ("car_t", "bcma_bispecific", "gprc5d_bispecific",
                                                   "fcrh5_bispecific") for m in mine))
    day = pd.to_timedelta(1, unit="D")
    relapse_ts = pd.DatetimeIndex(relapse)
    patients = pd.DataFrame({
        "patient_id": ids,
        **{k: demo[k] for k in ("sex", "age_years", "involved_light_chain")},
        "heavy_chain": heavy,
        "non_secretory": False,
        "disease": "MM",
        "product": product,
        "infusion_date": pd.DatetimeIndex(infusion),
        "prior_lines": prior.astype(np.int64),
        "death_date": pd.DatetimeIndex(np.where(os_event == 1, relapse_ts + os_days * day, pd.NaT)),
        "last_followup_date": pd.DatetimeIndex(np.where(os_event == 1, pd.NaT, relapse_ts + os_days * day)),
        "progression_date": relapse_ts,
        "refractory": ttp_days <= REFRACTORY_DAYS,
        "day90_orr": day90_orr,
        "day90_cr": day90_cr,
        "os_relapse_months": os_days / DAYS_PER_MONTH,
        "os_relapse_event": os_event,
        "n_salvage_lines": np.asarray(n_lines, np.int64),
        "first_salvage_class": first_class,
        "first_salvage_responded": pd.array(first_resp, dtype="boolean"),
        "ever_tce": ever_tce,
    })
    car_t = pd.DataFrame({"patient_id": ids, "line": prior + 1, "start_date": pd.DatetimeIndex(infusion),
                          "regimen": product, "best_response": np.where(day90_cr, "CR", np.where(day90_orr, "PR", "SD")),
                          "clinical_trial": product == "other BCMA CAR T", "progression_date": relapse_ts})
    salvage = pd.DataFrame(lines).drop(columns=["regimen_class"])  # a centre records the regimen, not its class
    therapies = pd.concat([car_t, salvage], ignore_index=True).sort_values(["patient_id", "line"], kind="stable")
    return patients, therapies.reset_index(drop=True)


#: the simulator's answers of the CERTAINTY- and LBCL-like cohorts (raw: the dates they are derived from)
CERTAINTY_TRUTH_ONLY = ("pfs_months", "pfs_event")
LBCL_TRUTH_ONLY = ("pfs_months", "pfs_event", "os_months", "os_event")


def _dated_endpoints(df: pd.DataFrame, os: bool) -> pd.DataFrame:
    """Dates a centre records instead of endpoint columns: progression, death, last follow-up.

    Times become whole days (as dates carry them) and the answers are recomputed from those days. A progression
    is followed to its confirming visit 14 days later (CERTAINTY) or to death / the end of follow-up (LBCL).
    """
    df = df.copy()
    day = pd.to_timedelta(1, unit="D")
    infusion = pd.DatetimeIndex(df["infusion_date"])
    pfs_days = np.maximum(np.round(df["pfs_months"].to_numpy() * DAYS_PER_MONTH), 1).astype(int)
    progressed = df["pfs_event"].to_numpy(int) == 1
    df["progression_date"] = pd.DatetimeIndex(np.where(progressed, infusion + pfs_days * day, pd.NaT))
    df["pfs_months"] = pfs_days / DAYS_PER_MONTH
    if os:
        os_days = np.maximum(np.round(df["os_months"].to_numpy() * DAYS_PER_MONTH), pfs_days + progressed).astype(int)
        died = df["os_event"].to_numpy(int) == 1
        df["death_date"] = pd.DatetimeIndex(np.where(died, infusion + os_days * day, pd.NaT))
        df["last_followup_date"] = pd.DatetimeIndex(np.where(died, pd.NaT, infusion + os_days * day))
        df["os_months"] = os_days / DAYS_PER_MONTH
    else:
        follow = pfs_days + np.where(progressed, CONFIRMATION_DAYS, 0)
        df["last_followup_date"] = infusion + follow * day
    return df


def _moffitt_derived() -> dict[str, Any]:
    def named(medians):
        return {f"bl_emd={bl},pd_emd={pd_}": round(m, 4) for (bl, pd_), m in medians.items()}
    return {"pfs2_group_medians_months": named(cal.moffitt_group_medians("pfs2")),
            "os_pp_group_medians_months": named(cal.moffitt_group_medians("os_pp")),
            "pattern_probabilities": {k: round(v, 4) for k, v in moffitt_pattern_probabilities().items()}}


def _lbcl_derived() -> dict[str, Any]:
    t = cal.LBCL_TARGETS
    log_hr = _tv(t, "pfs_log_hr_per_sd_log_mtv")
    return {f"{k}_median_at_median_mtv_months": round(lbcl_baseline_median_months(_tv(t, f"{k}_median_months"),
                                                                                  log_hr), 4)
            for k in ("pfs", "os")}


STUDIES: dict[str, StudyInfo] = {
    "moffitt_post_cart": StudyInfo(
        "moffitt_post_cart", "MM", 106,
        "Post-progression outcomes after BCMA CAR T in myeloma, EMD and PMD (Front Oncol 2025)",
        cal.MOFFITT_TARGETS, _simulate_moffitt, _moffitt_derived, MOFFITT_TRUTH_ONLY),
    "certainty_pet": StudyInfo(
        "certainty_pet", "MM", 61,
        "PET/CT before and after BCMA CAR T in myeloma (CERTAINTY, HemaSphere 2025)",
        cal.CERTAINTY_TARGETS, _simulate_certainty, truth_only=CERTAINTY_TRUTH_ONLY),
    "lbcl_mtv": StudyInfo(
        "lbcl_mtv", "LBCL", 111,
        "Baseline MTV (SUV 4.0) before CAR T in large B-cell lymphoma (J Nucl Med, 6 centres)",
        cal.LBCL_TARGETS, _simulate_lbcl, _lbcl_derived, LBCL_TRUTH_ONLY),
    "salvage_post_bcma": StudyInfo(
        "salvage_post_bcma", "MM", 79,
        "Salvage treatment after BCMA CAR T in myeloma, every line after relapse (Blood 2022)",
        cal.SALVAGE_TARGETS, _simulate_salvage, truth_only=SALVAGE_TRUTH_ONLY),
}


# --------------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------------
#: pandas dtypes of the columns whose type a CSV cannot carry (read back by :func:`read_patients`)
_NULLABLE_BOOL = ("emd_progression", "pmd_progression", "pattern_emd", "pattern_pmd", "emd_baseline",
                  "pmd_baseline", "diffuse_marrow_uptake", "metcr_day30", "first_salvage_responded",
                  "gain1q", "amp1q", "del1p32", "t11_14", "non_hyperdiploid")
_DATE_COLUMNS = ("infusion_date", "progression_date", "death_date", "last_followup_date", "salvage_start_date",
                 "salvage_progression_date", "relapse_date")
_NULLABLE_INT = ("n_lesions",)
_NULLABLE_FLOAT = ("mtv_ml", "suv_max", "car_t_peak_per_ul", "car_t_auc_0_28", "tcr_shannon")
#: Days before the infusion a simulated baseline PET/CT is dated (inclusive; plans' baseline window: -60 to 0).
BASELINE_SCAN_DAYS = (3, 28)
#: An MTV phantom's spheres hold at most this volume each (mL; radius 49 mm): fewer, larger spheres fit the torso better.
MTV_SPHERE_MAX_ML = 500.0
#: SUV of an MTV phantom's spheres: the MTV at SUV >= 4 does not depend on it, and it stays below the bladder level
#: of carpet's physiology rules (8): a hot mid-line sphere in the pelvis of a phantom without a bladder is what
#: those rules rightly call the bladder.
MTV_PHANTOM_SUV = 6.0


@dataclass(frozen=True, eq=False)  # eq=False: DataFrames do not compare to a single bool
class SimulatedCohort:
    """A simulated cohort: one row per patient, the targets it was calibrated to, and how it was made.

    Attributes
    ----------
    study : str
        Study id, a key of ``STUDIES``.
    seed : int
        Seed of the numpy Generator that drew the cohort; the same (study, n, seed) gives the same table.
    patients : pandas.DataFrame
        One row per patient; ``patient_id`` like ``SIM-MM-0001``; column ``simulated`` is True.
    targets : dict
        Calibration targets, ``{name: {value, source, assumed, note}}``.
    provenance : dict
        carpet version, time, study, seed, n.
    """

    study: str
    seed: int
    patients: pd.DataFrame = field(repr=False)
    targets: dict[str, dict[str, Any]] = field(repr=False)
    provenance: dict[str, Any] = field(repr=False)
    #: lines of therapy (``carpet.cohort.schema.THERAPIES``), for the cohorts that simulate them
    therapies: pd.DataFrame | None = field(repr=False, default=None)
    #: treated patients outside the study population, with the simulator's answers (Moffitt: the patients still
    #: progression-free at the cut-off, Figure 1's 251 - 106); None for the other studies
    others: pd.DataFrame | None = field(repr=False, default=None)

    @property
    def treated(self) -> pd.DataFrame:
        """Every simulated treated patient: :attr:`patients` (the study population) and :attr:`others`."""
        if self.others is None:
            return self.patients
        return _normalise_dtypes(pd.concat([self.patients, self.others], ignore_index=True))

    @property
    def raw_patients(self) -> pd.DataFrame:
        """The patients table a centre would hold: every treated patient (:attr:`treated`) without the simulator's
        answers. The study population is found from these raw tables (Moffitt: the IMWG engine's progression)."""
        return self.treated.drop(columns=list(STUDIES[self.study].truth_only), errors="ignore")

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``patients.csv``, ``truth.csv``, ``README-simulated.txt`` and ``cohort.json`` into ``out_dir``.

        ``patients.csv`` holds what a centre's table would (:attr:`raw_patients`); ``truth.csv`` is the
        whole simulated table with the simulator's own answers (endpoints, flags) to check derivations
        against. The CSVs are plain UTF-8 with ISO dates and empty cells for missing values, so they open
        in Excel and R; :func:`read_patients` restores the column types. ``cohort.json`` holds the
        targets with their sources and the provenance.

        For myeloma cohorts ``labs.csv`` (:meth:`lab_series`) is written too, ``therapies.csv`` for
        cohorts that simulate lines of therapy, and ``imaging.csv`` (:meth:`imaging_table`) for cohorts with
        baseline PET reads.

        Returns
        -------
        dict
            ``{"patients": path, "truth": path, "readme": path, "cohort": path}`` (+ ``"labs"``, ``"therapies"``,
            ``"imaging"``).
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"patients": out / "patients.csv", "truth": out / "truth.csv", "readme": out / "README-simulated.txt",
                 "cohort": out / "cohort.json"}
        info = STUDIES[self.study]
        write_csv(self.raw_patients, paths["patients"], date_format="%Y-%m-%d")
        write_csv(self.treated, paths["truth"], date_format="%Y-%m-%d")
        if info.disease == "MM":
            paths["labs"] = out / "labs.csv"
            write_csv(self.lab_series(), paths["labs"], date_format="%Y-%m-%d")
        if self.therapies is not None:
            paths["therapies"] = out / "therapies.csv"
            write_csv(self.therapies, paths["therapies"], date_format="%Y-%m-%d")
        imaging = self.imaging_table()
        if len(imaging):
            paths["imaging"] = out / "imaging.csv"
            write_csv(imaging, paths["imaging"])
        paths["readme"].write_text(
            SIMULATED_NOTICE
            + f"\nStudy simulated: {self.study} - {info.description}\n"
            + f"Patients: {len(self.patients)}"
            + (f" in the study population, {len(self.treated)} treated in patients.csv" if self.others is not None
               else "") + f"; seed: {self.seed}; carpet {self.provenance['carpet_version']}\n"
            + "Calibration targets and their sources (published unless marked assumed): cohort.json\n"
            + "The simulator's own answers (endpoints, flags) beside the raw columns: truth.csv\n"
            + ("Simulated laboratory series (long format for `carpet imwg --assessments`): labs.csv\n"
               if "labs" in paths else "")
            + ("Lines of therapy (`carpet analyze --therapies`): therapies.csv\n" if "therapies" in paths else "")
            + ("Baseline PET reads as `carpet batch --studies` writes them (`carpet analyze --imaging`): imaging.csv\n"
               if "imaging" in paths else ""),
            encoding="utf-8")
        paths["cohort"].write_text(json.dumps(
            {"simulated": True, "study": self.study, "seed": self.seed, "n": len(self.patients),
             "n_treated": len(self.treated),
             "targets": self.targets, "provenance": self.provenance}, indent=2, default=str), encoding="utf-8")
        return paths

    def lab_series(self, patient_ids: list[str] | None = None) -> pd.DataFrame:
        """Simulated laboratory assessments in the long format of ``carpet imwg --assessments``.

        Columns ``patient_id, date, parameter, value, unit``; parameters ``serum_m_protein`` (g/dL),
        ``urine_m_protein`` (mg/24h, never measurable) for IgG/IgA/IgD disease, ``serum_ife`` and
        ``urine_ife`` (positive/negative), ``kappa_flc`` / ``lambda_flc`` (mg/dL) for
        light-chain-only disease, ``bm_plasma_cells`` (%) and ``new_lesion`` (1). The series is built so
        that the IMWG 2016 rules (spec/clinical-rules.md §3.4, §3.7) find what the patient row says:

        - baseline 7 days before infusion, then every 30 days;
        - response: the day-90 row (``day90_cr``, ``day90_orr``; CERTAINTY: ``serological_cr_day30``)
          sets the nadir — CR gives an unmeasurable M-protein with negative immunofixation (or a normal
          FLC ratio) and < 5% marrow plasma cells, a response a 50-95% fall, no response a 0-40% fall;
        - progression: on ``progression_date`` (CERTAINTY: infusion + PFS when ``pfs_event``) and 14 days
          later (the confirming pair), a rise >= 25% and >= 0.5 g/dL serum M-protein (> 10 mg/dL dFLC)
          from the nadir when the progression was biochemical, a ``new_lesion`` when it was by imaging
          (new bone disease, EMD or PMD), ``bm_plasma_cells`` >= 10% with marrow involvement
          (Moffitt: a marrow biopsy < 5% and ``new_bone_lesion`` 1/0 at every progression, as restaged);
          values are never higher before that date, and nothing is recorded after it (next therapy).

        Each patient's series is drawn from its own seed (cohort seed and row), so it does not depend
        on which patients are asked for.
        """
        if STUDIES[self.study].disease != "MM":
            raise InputError(f"laboratory series are simulated for myeloma cohorts only, not {self.study}",
                             where="study")
        rows = self.treated.to_dict("records")
        position = {row["patient_id"]: i for i, row in enumerate(rows)}
        records: list[tuple] = []
        for pid in (position if patient_ids is None else patient_ids):
            if pid not in position:
                self._row(pid)  # raises the InputError naming the valid ids
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, position[pid], 1]))
            records += _patient_labs(rows[position[pid]], rng)
        out = pd.DataFrame(records, columns=["patient_id", "date", "parameter", "value", "unit"])
        return out.sort_values(["patient_id", "date", "parameter"], kind="stable").reset_index(drop=True)

    def lesion_plan(self, patient_id: str, small: bool = True) -> list[dict[str, Any]]:
        """Lesions a phantom of this patient should carry: ``kind``, ``radius_mm``, ``suv``, ``site``.

        One intramedullary (bone) lesion stands for the marrow disease of every myeloma patient,
        plus an extramedullary lesion with baseline EMD and a paramedullary one with baseline PMD;
        LBCL lesions are extramedullary soft-tissue (nodal) lesions. With a known ``mtv_ml`` the
        spheres share that volume equally, their radii clipped to what the phantom can hold (at least
        4 mm; bone lesions at most 6 mm, paramedullary 8 mm, others 12 mm in the small phantom; 8, 10
        and 40 mm in the whole body). ``small`` limits the plan to 3 lesions, the whole body to
        ``n_lesions`` (at most 12). Every lesion gets the patient's ``suv_max``.
        """
        row = self._row(patient_id)
        max_lesions = 3 if small else 12
        if row["disease"] == "LBCL":
            kinds = ["extramedullary"] * int(min(max_lesions, _value(row, "n_lesions", 1)))
        else:
            extra = [k for k, col in (("extramedullary", "emd_baseline"), ("paramedullary", "pmd_baseline"))
                     if bool(_value(row, col, False))]
            n_total = int(min(max_lesions, max(_value(row, "n_lesions", 1 + len(extra)), 1 + len(extra))))
            kinds = extra + ["intramedullary"] * (n_total - len(extra))
        mtv = _value(row, "mtv_ml", None)
        if mtv is None:
            radius = np.full(len(kinds), 10.0)  # no PET volume known: a clearly visible default sphere
        else:
            radius = np.full(len(kinds), (3 * mtv * 1000 / (4 * np.pi * len(kinds))) ** (1 / 3))
        # a lesion inside or against a bone must fit the phantom's vertebrae and pelvis
        r_max = {"intramedullary": 6.0 if small else 8.0, "paramedullary": 8.0 if small else 10.0,
                 "extramedullary": 12.0 if small else 40.0}
        radius = [float(np.clip(r, MIN_LESION_RADIUS_MM, r_max[k])) for k, r in zip(kinds, radius)]
        suv = float(_value(row, "suv_max", 8.0))
        return [{"kind": k, "radius_mm": r, "suv": suv, "site": "soft_tissue" if row["disease"] == "LBCL" else None}
                for k, r in zip(kinds, radius)]

    def phantom_spec(self, patient_id: str, small: bool = True):
        """A :class:`carpet.synth.phantom.PhantomSpec` whose lesions reflect this patient.

        The phantom seed is derived from the cohort seed and the patient's row, so the same
        cohort always gives the same phantom. See :meth:`lesion_plan` for the lesions.
        """
        from carpet.synth.phantom import LesionSpec, PhantomSpec  # lazy: the phantom module is optional here

        row = self._row(patient_id)
        lesions = [LesionSpec(p["kind"], p["radius_mm"], p["suv"], site=p["site"])
                   for p in self.lesion_plan(patient_id, small=small)]
        seed = int(np.random.SeedSequence([self.seed, int(row.name)]).generate_state(1)[0])
        # diffuse marrow uptake (CERTAINTY, IMPeTUs) raises the marrow background, kept below SUV 4
        patient = {"sex": row["sex"], "lesions": tuple(lesions)}
        if bool(_value(row, "diffuse_marrow_uptake", False)):
            patient["marrow_suv"] = DIFFUSE_MARROW_SUV
        if small:
            return PhantomSpec.small(seed, **patient)
        return PhantomSpec.whole_body(seed, len(lesions), **patient)

    def baseline_scans(self) -> pd.DataFrame:
        """One baseline PET/CT per patient with a PET read (a known ``mtv_ml``): ``study_id``
        (``<patient_id>-BL``), ``patient_id`` and ``study_date``, :data:`BASELINE_SCAN_DAYS` before the
        infusion (drawn from the cohort seed): the ``--studies`` table of ``carpet batch``."""
        if "mtv_ml" not in self.patients:
            return pd.DataFrame(columns=["study_id", "patient_id", "study_date"])
        pet = self.patients.dropna(subset=["mtv_ml"])
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 13]))
        days = rng.integers(BASELINE_SCAN_DAYS[0], BASELINE_SCAN_DAYS[1] + 1, size=len(pet))
        dates = pd.to_datetime(pet["infusion_date"]) - pd.to_timedelta(days, unit="D")
        return pd.DataFrame({"study_id": pet["patient_id"] + "-BL", "patient_id": pet["patient_id"],
                             "study_date": dates.dt.strftime("%Y-%m-%d")}).reset_index(drop=True)

    def imaging_table(self) -> pd.DataFrame:
        """The simulated baseline PET reads as ``carpet batch --studies`` writes imaging.csv (SUV >= 4): one
        row per :meth:`baseline_scans` study with ``method``, ``n_lesions``, ``mtv_ml``, ``suv_max`` and the
        same under their per-method names (``mtv_ml_suv4`` ...). ``carpet demo`` measures its own instead."""
        from carpet.cohort.schema import method_column

        reads = self.patients.set_index("patient_id")
        table = self.baseline_scans().assign(status="done", method="suv4")
        for key in ("n_lesions", "mtv_ml", "suv_max"):
            if key in reads:
                table[key] = table[method_column(key, "suv4")] = table["patient_id"].map(reads[key]).to_numpy()
        counts = [c for c in ("n_lesions", method_column("n_lesions", "suv4")) if c in table]
        return table.astype(dict.fromkeys(counts, "Int64"))

    def mtv_phantom_spec(self, patient_id: str):
        """A coarse PET/CT torso phantom (6 mm voxels, 64×48×80, or ×150 for more than 2 spheres; no physiology,
        blur or noise) whose soft-tissue spheres hold this patient's MTV, for measuring MTV the way a centre
        would (``carpet batch``).

        The MTV is split into equal spheres of at most :data:`MTV_SPHERE_MAX_ML` each, at SUV
        :data:`MTV_PHANTOM_SUV`. Every other voxel is below SUV 4, so SUV >= 4 finds exactly the spheres' voxels:
        the measured MTV is the phantom's truth (``truth['summary']['mtv_ml']``), which differs from ``mtv_ml`` by
        the voxelisation of the spheres. Only the volume is the patient's: the spheres stand in soft tissue
        whatever the disease's sites, and their SUV is not the patient's SUVmax.
        """
        from carpet.synth.phantom import LesionSpec, PhantomSpec

        row = self._row(patient_id)
        mtv = _value(row, "mtv_ml", None)
        if mtv is None:
            raise InputError(f"patient {patient_id!r} has no simulated MTV (no baseline PET)", where="mtv_ml")
        n = int(np.ceil(mtv / MTV_SPHERE_MAX_ML))
        radius = float((3 * mtv / n * 1000 / (4 * np.pi)) ** (1 / 3))
        seed = int(np.random.SeedSequence([self.seed, int(row.name), 6]).generate_state(1)[0])
        length = 80 if n <= 2 else 150   # a longer torso (900 mm, still no head) holds the bulkiest disease
        return PhantomSpec(pet_shape=(64, 48, length), pet_spacing_mm=(6.0, 6.0, 6.0), seed=seed, sex=row["sex"],
                           lesions=tuple(LesionSpec("extramedullary", radius, MTV_PHANTOM_SUV, site="soft_tissue")
                                         for _ in range(n)))

    def _row(self, patient_id: str) -> pd.Series:
        rows = self.patients.loc[self.patients["patient_id"] == patient_id]
        if rows.empty:
            raise InputError(f"no simulated patient {patient_id!r} in cohort {self.study} (seed {self.seed})",
                             where="patient_id",
                             hint=f"ids run from {self.patients['patient_id'].iloc[0]} "
                                  f"to {self.patients['patient_id'].iloc[-1]}")
        return rows.iloc[0]


def _value(row, column: str, default):
    """Row (Series or dict) value, or ``default`` when the column is absent or the value missing."""
    if column not in row or pd.isna(row[column]):
        return default
    return row[column]


def _pd_reference(before: np.ndarray) -> float:
    """The value a progression must rise from, whichever IMWG nadir mode the reader uses.

    Values before progression never rise, so the lowest value is the last one, and the lowest
    *confirmed* value (confirmed by the next assessment) is the one before it (baseline when there is
    no earlier one). Rising enough from the larger of the two satisfies both nadir modes.
    """
    return float(before[-2] if len(before) >= 2 else before[-1])


def _progression_pair(reference: float, kind: str) -> list[float]:
    """Two rising values that each meet IMWG progression from ``reference`` (the confirming pair)."""
    return [round(progression_value(reference, kind, margin=0.1, step=step), 2) for step in (1, 2)]


def _patient_labs(row: dict, rng: np.random.Generator) -> list[tuple]:
    """One patient's simulated assessments as (patient_id, date, parameter, value, unit) tuples.

    See :meth:`SimulatedCohort.lab_series` for the model.
    """
    infusion = pd.Timestamp(row["infusion_date"])
    if "day90_cr" in row and pd.isna(row["progression_date"]):  # Moffitt: treated, not progressed by the cut-off
        pd_day, end_day = None, int((pd.Timestamp(row["last_followup_date"]) - infusion).days)
    elif "day90_cr" in row:  # Moffitt- and salvage-like: progressed (CERTAINTY: from pfs_months)
        pd_day = int((pd.Timestamp(row["progression_date"]) - infusion).days)
        end_day = pd_day + CONFIRMATION_DAYS
    else:
        end_day = int(round(row["pfs_months"] * DAYS_PER_MONTH))
        pd_day = end_day if row["pfs_event"] == 1 else None
        end_day += CONFIRMATION_DAYS if pd_day is not None else 0
    before = np.arange(ASSESSMENT_INTERVAL_DAYS, end_day + 1, ASSESSMENT_INTERVAL_DAYS)
    days = np.concatenate([[BASELINE_DAY], before[before < pd_day] if pd_day is not None else before])
    at_pd = np.array([], int) if pd_day is None else np.array([pd_day, pd_day + CONFIRMATION_DAYS])

    if "day90_cr" in row:
        response = "cr" if row["day90_cr"] else "response" if row["day90_orr"] else "none"
    elif pd_day is not None and pd_day <= REFRACTORY_DAYS:
        response = "none"
    else:  # CERTAINTY: serological CR at day 30 as drawn; the others are assumed responders
        response = "cr" if row["serological_cr_day30"] else "response"
    nadir_fraction = {"cr": 0.0, "response": rng.uniform(0.05, 0.5), "none": rng.uniform(0.6, 1.0)}[response]
    # fall to the nadir by day 60: half-way at day 30
    level = np.where(days <= 0, 1.0, np.where(days < 60, (1 + nadir_fraction) / 2, nadir_fraction))

    heavy = row.get("heavy_chain")
    non_secretory = bool(row.get("non_secretory", False)) or heavy == "none"
    by_labs = bool(row.get("pattern_biochemical", not non_secretory))
    # a progression that is not biochemical was seen on imaging (Moffitt: new bone disease, EMD or PMD)
    by_imaging = not by_labs or any(bool(_value(row, c, False)) for c in ("pattern_bone", "pattern_emd",
                                                                          "pattern_pmd", "emd_baseline"))
    records: list[tuple[int, str, Any, str]] = []
    all_days = np.concatenate([days, at_pd])

    def ife(values):  # serum and urine immunofixation: negative only once the M-protein / dFLC is 0 (CR)
        return [(d, f"{fluid}_ife", "negative" if v <= 0 else "positive", "")
                for fluid in ("serum", "urine") for d, v in zip(all_days, values)]

    if not non_secretory and heavy != "light_chain_only":
        m0 = 1.0 + rng.lognormal(np.log(1.5), 0.6)  # measurable: >= 1.0 g/dL
        m = np.round(m0 * level, 2)
        if len(at_pd):
            m = np.concatenate([m, _progression_pair(_pd_reference(m), "serum") if by_labs else [m[-1]] * 2])
        records += [(d, "serum_m_protein", v, "g/dL") for d, v in zip(all_days, m)]
        # a small, non-measurable urine M-protein (< 200 mg/24 h) that falls with the serum: VGPR and
        # CR need it (< 100 mg/24 h); it stays put at progression
        u0 = rng.uniform(20.0, 150.0)
        urine = np.round(u0 * np.concatenate([level, [level[-1]] * len(at_pd)]))
        records += [(d, "urine_m_protein", v, "mg/24h") for d, v in zip(all_days, urine)]
        records += ife(m)
    elif not non_secretory:
        involved = row["involved_light_chain"]
        other = "lambda" if involved == "kappa" else "kappa"
        uninvolved = np.round(rng.uniform(0.3, 1.0), 2)
        d0 = 10.0 + rng.lognormal(np.log(30.0), 0.7)  # measurable dFLC: >= 10 mg/dL
        dflc = np.round(d0 * level, 2)
        if len(at_pd):
            dflc = np.concatenate([dflc, _progression_pair(_pd_reference(dflc), "dflc") if by_labs else [dflc[-1]] * 2])
        records += [(d, f"{involved}_flc", np.round(uninvolved + v, 2), "mg/dL") for d, v in zip(all_days, dflc)]
        records += [(d, f"{other}_flc", uninvolved, "mg/dL") for d in all_days]
        records += ife(dflc)

    records.append((BASELINE_DAY, "bm_plasma_cells", float(np.round(rng.uniform(10, 60), 1)), "%"))
    if response == "cr" and (pd_day is None or pd_day > DAY90):
        records.append((DAY90, "bm_plasma_cells", float(np.round(rng.uniform(0, 4.5), 1)), "%"))
    if pd_day is not None and "pattern_marrow" in row:
        # Moffitt: "a restaging work up with imaging and bone marrow biopsy" at every suspected progression,
        # so marrow and new bone disease are known (involved or not) for every progression
        involved = bool(_value(row, "pattern_marrow", False))
        records.append((pd_day, "bm_plasma_cells",
                        float(np.round(rng.uniform(10, 50) if involved else rng.uniform(0, 4.5), 1)), "%"))
        records.append((pd_day, "new_bone_lesion", int(bool(_value(row, "pattern_bone", False))), ""))
    if pd_day is not None and by_imaging:
        records.append((pd_day, "new_lesion", 1, ""))

    pid = row["patient_id"]
    return [(pid, infusion + pd.Timedelta(days=int(d)), name, value, unit) for d, name, value, unit in records]


def simulate_cohort(study: str, n: int | None = None, seed: int = 0) -> SimulatedCohort:
    """Draw a simulated cohort calibrated to a published study.

    Parameters
    ----------
    study : str
        A key of ``STUDIES``: ``'moffitt_post_cart'``, ``'certainty_pet'`` or ``'lbcl_mtv'``.
    n : int, optional
        Number of patients; default the study's published size.
    seed : int
        Seed of the numpy Generator; the same (study, n, seed) always gives the same cohort.

    Returns
    -------
    SimulatedCohort
    """
    if study not in STUDIES:
        raise InputError(f"unknown study {study!r}; expected one of {', '.join(STUDIES)}", where="study")
    info = STUDIES[study]
    n = info.n if n is None else int(n)
    if n < 1:
        raise InputError(f"n must be a positive number of patients, got {n}", where="n")
    rng = np.random.default_rng(seed)
    drawn = info.simulate(rng, n)
    patients, therapies, others = (*drawn, None)[:3] if isinstance(drawn, tuple) else (drawn, None, None)
    patients.insert(1, "simulated", True)
    patients = _normalise_dtypes(patients)
    if others is not None:
        others.insert(1, "simulated", True)
        others = _normalise_dtypes(others)
    return SimulatedCohort(therapies=therapies, others=others,
        study=study, seed=seed, patients=patients,
        targets={k: v.as_dict() for k, v in info.targets.items()},
        provenance=provenance(method="carpet.synth.cohort.simulate_cohort", study=study, seed=seed, n=n,
                              simulated=True, calibration="carpet.synth.calibration",
                              derived_parameters=info.derived()),
    )


def read_patients(path: str | Path) -> pd.DataFrame:
    """Read a ``patients.csv`` written by :meth:`SimulatedCohort.write`, restoring column types.

    Dates become datetimes, and the yes/no and count columns that may be missing become pandas
    nullable booleans and integers.
    """
    return _normalise_dtypes(pd.read_csv(path))


def _normalise_dtypes(df: pd.DataFrame) -> pd.DataFrame:
    """One set of column types for freshly simulated and read-back tables."""
    df = df.copy()
    for col in df.columns:
        if col in _DATE_COLUMNS:
            df[col] = pd.to_datetime(df[col]).astype("datetime64[ns]")
        elif col in _NULLABLE_BOOL:
            df[col] = df[col].astype("boolean")
        elif col in _NULLABLE_INT:
            df[col] = df[col].astype("Int64")
        elif col in _NULLABLE_FLOAT:
            df[col] = df[col].astype("float64")
    return df
