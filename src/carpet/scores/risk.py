"""Comparator clinical risk scores (spec ``clinical-rules.md`` §6).

IPI and aaIPI (LBCL), CAR-HEMATOTOX, ISS, R-ISS, R2-ISS, and the named high-risk cytogenetics rules of §6.4.
Small rule tables, written here because no maintained Python package implements them.

Missing inputs never count as normal: a score whose missing inputs could change its group is ``not evaluable``
with the reason; when the group is the same whatever the missing inputs are (e.g. ISS III from beta-2
microglobulin >= 5.5 mg/L alone), the group is reported, the points stay ``None`` and the reason names what is
missing. Thresholds use the inequality the source wrote; [R]/[C] values are named parameters.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from carpet.provenance import provenance

__all__ = ["ScoreResult", "HematotoxRule", "ipi", "aaipi", "car_hematotox", "iss", "riss", "r2iss",
           "high_risk_cytogenetics", "CYTOGENETIC_RULES", "score_patients"]


@dataclass(frozen=True)
class ScoreResult:
    """One score for one patient.

    ``points`` is None unless every input is known; ``group`` is None when the missing inputs could change it.
    """

    score: str
    points: float | None
    group: str | None
    reason: str = ""
    components: dict[str, Any] = field(default_factory=dict)

    @property
    def evaluable(self) -> bool:
        return self.group is not None


def _missing(x) -> bool:
    """None, pd.NA, NaT or a NaN of any float type (numpy float32 NaN too, which is no Python float)."""
    return x is None or (np.ndim(x) == 0 and bool(pd.isna(x)))


def _additive(score: str, items: dict[str, tuple[Any, Callable[[Any], float], tuple[float, ...]]],
              grouping: Callable[[float], str]) -> ScoreResult:
    """Sum item points; unknown items range over their possible points, and the group is reported only when the
    whole range falls in one group."""
    lo = hi = 0.0
    comps, missing = {}, []
    for name, (value, rule, possible) in items.items():
        if _missing(value):
            missing.append(name)
            lo, hi = lo + min(possible), hi + max(possible)
            comps[name] = None
        else:
            pts = rule(value)
            lo, hi = lo + pts, hi + pts
            comps[name] = pts
    groups = {grouping(lo + k * 0.5) for k in range(int(round((hi - lo) / 0.5)) + 1)}
    group = groups.pop() if len(groups) == 1 else None
    reason = f"missing {', '.join(missing)}" if missing else ""
    if missing and group is None:
        reason = "not evaluable: " + reason
    return ScoreResult(score, lo if not missing else None, group, reason, comps)


# ----------------------------------------------------------------------------------------------------------------
# LBCL: IPI and aaIPI (Shipp 1993 [R])
# ----------------------------------------------------------------------------------------------------------------
def _ldh_high(ldh_u_l, ldh_uln_u_l):
    return None if _missing(ldh_u_l) or _missing(ldh_uln_u_l) else ldh_u_l > ldh_uln_u_l


def ipi(age_years, ldh_u_l, ldh_uln_u_l, ecog, ann_arbor_stage, n_extranodal_sites) -> ScoreResult:
    """International Prognostic Index: 1 point each for age > 60, LDH > ULN, ECOG >= 2, stage III-IV, > 1
    extranodal site. Groups 0-1 low, 2 low-intermediate, 3 high-intermediate, 4-5 high."""
    one = (0.0, 1.0)
    items = {
        "age_over_60": (age_years, lambda a: float(a > 60), one),
        "ldh_above_uln": (_ldh_high(ldh_u_l, ldh_uln_u_l), float, one),
        "ecog_2_or_more": (ecog, lambda e: float(e >= 2), one),
        "stage_3_4": (ann_arbor_stage, lambda s: float(s >= 3), one),
        "extranodal_over_1": (n_extranodal_sites, lambda n: float(n > 1), one),
    }
    return _additive("IPI", items, lambda p: ["low", "low", "low-intermediate", "high-intermediate",
                                              "high", "high"][int(p)])


def aaipi(ldh_u_l, ldh_uln_u_l, ecog, ann_arbor_stage) -> ScoreResult:
    """Age-adjusted IPI: LDH > ULN, ECOG >= 2, stage III-IV. Groups 0 low, 1 low-int, 2 high-int, 3 high.
    Applied at the CAR T time point regardless of age in some studies [D]; the caller decides."""
    one = (0.0, 1.0)
    items = {
        "ldh_above_uln": (_ldh_high(ldh_u_l, ldh_uln_u_l), float, one),
        "ecog_2_or_more": (ecog, lambda e: float(e >= 2), one),
        "stage_3_4": (ann_arbor_stage, lambda s: float(s >= 3), one),
    }
    return _additive("aaIPI", items, lambda p: ["low", "low-intermediate", "high-intermediate", "high"][int(p)])


# ----------------------------------------------------------------------------------------------------------------
# CAR-HEMATOTOX (Rejeski 2021; point table [R], boundary handling [C])
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HematotoxRule:
    """Cut-offs of CAR-HEMATOTOX. The table is [R] (not re-read); values exactly at a cut-off follow spec §6.2 [C]:
    platelets 175,000 and 75,000 score 1; ANC 1,200 scores 0; Hb 9.0 scores 0; CRP 3.0 scores 0; ferritin 650 and
    2,000 score 1."""

    platelets_high_per_ul: float = 175_000
    platelets_low_per_ul: float = 75_000
    anc_per_ul: float = 1_200
    hb_g_dl: float = 9.0
    crp_mg_dl: float = 3.0
    ferritin_low_ng_ml: float = 650
    ferritin_high_ng_ml: float = 2_000
    high_min_points: float = 2


def car_hematotox(platelets_per_ul, anc_per_ul, hb_g_dl, crp_mg_dl, ferritin_ng_ml,
                  rule: HematotoxRule = HematotoxRule()) -> ScoreResult:
    """CAR-HEMATOTOX before lymphodepletion: 0-7 points; low 0-1, high >= 2."""
    r = rule
    items = {
        "platelets": (platelets_per_ul, lambda x: 0.0 if x > r.platelets_high_per_ul else
                      (1.0 if x >= r.platelets_low_per_ul else 2.0), (0.0, 1.0, 2.0)),
        "anc": (anc_per_ul, lambda x: 0.0 if x >= r.anc_per_ul else 1.0, (0.0, 1.0)),
        "hb": (hb_g_dl, lambda x: 0.0 if x >= r.hb_g_dl else 1.0, (0.0, 1.0)),
        "crp": (crp_mg_dl, lambda x: 0.0 if x <= r.crp_mg_dl else 1.0, (0.0, 1.0)),
        "ferritin": (ferritin_ng_ml, lambda x: 0.0 if x < r.ferritin_low_ng_ml else
                     (1.0 if x <= r.ferritin_high_ng_ml else 2.0), (0.0, 1.0, 2.0)),
    }
    return _additive("CAR-HEMATOTOX", items, lambda p: "high" if p >= r.high_min_points else "low")


# ----------------------------------------------------------------------------------------------------------------
# myeloma staging
# ----------------------------------------------------------------------------------------------------------------
def _any(values) -> bool | None:
    """Three-valued OR: True if any is True, False if all are known False, else None."""
    vals = [None if _missing(v) else bool(v) for v in values]
    if any(v is True for v in vals):
        return True
    return False if all(v is False for v in vals) else None


def _all(values) -> bool | None:
    vals = [None if _missing(v) else bool(v) for v in values]
    if any(v is False for v in vals):
        return False
    return True if all(v is True for v in vals) else None


def _gain1q_plus(gain1q, amp1q) -> bool | None:
    """1q+ (gain = 3 copies or amplification >= 4): a 1q probe without gain implies no amplification either."""
    if _any([gain1q, amp1q]) is True:
        return True
    if not _missing(gain1q) and not gain1q:
        return False
    return None if _missing(amp1q) or amp1q else False if not _missing(gain1q) else None


def iss(b2m_mg_l, albumin_g_dl) -> ScoreResult:
    """ISS (Greipp 2005): I beta2M < 3.5 mg/L and albumin >= 3.5 g/dL; III beta2M >= 5.5 mg/L; II otherwise."""
    comps = {"b2m_mg_l": b2m_mg_l, "albumin_g_dl": albumin_g_dl}
    if _missing(b2m_mg_l):
        return ScoreResult("ISS", None, None, "not evaluable: missing b2m_mg_l", comps)
    if b2m_mg_l >= 5.5:
        return ScoreResult("ISS", 3, "III", "", comps)
    if b2m_mg_l >= 3.5:
        return ScoreResult("ISS", 2, "II", "", comps)
    if _missing(albumin_g_dl):
        return ScoreResult("ISS", None, None, "not evaluable: missing albumin_g_dl (I or II)", comps)
    return ScoreResult("ISS", 1, "I", "", comps) if albumin_g_dl >= 3.5 else ScoreResult("ISS", 2, "II", "", comps)


_ROMAN = {1: "I", 2: "II", 3: "III"}


def riss(b2m_mg_l, albumin_g_dl, ldh_u_l, ldh_uln_u_l, del17p, t4_14, t14_16) -> ScoreResult:
    """R-ISS (Palumbo 2015): I = ISS I, standard-risk CA and LDH <= ULN; III = ISS III and (high-risk CA or
    LDH > ULN); II otherwise. High-risk CA = del(17p), t(4;14) or t(14;16)."""
    stage = iss(b2m_mg_l, albumin_g_dl)
    ca_high = _any([del17p, t4_14, t14_16])
    ldh_high = _ldh_high(ldh_u_l, ldh_uln_u_l)
    comps = {"iss": stage.group, "high_risk_ca": ca_high, "ldh_above_uln": ldh_high}
    bad = _any([ca_high, ldh_high])
    if stage.group is None:
        return ScoreResult("R-ISS", None, None, "not evaluable: " + stage.reason.split(": ", 1)[-1], comps)
    if stage.group == "II" or (stage.group == "I" and bad is True) or (stage.group == "III" and bad is False):
        group = "II"
    elif stage.group == "I" and bad is False:
        group = "I"
    elif stage.group == "III" and bad is True:
        group = "III"
    else:
        missing = [n for n, v in (("FISH", ca_high), ("LDH/ULN", ldh_high)) if v is None]
        return ScoreResult("R-ISS", None, None, f"not evaluable: missing {', '.join(missing)}", comps)
    return ScoreResult("R-ISS", {"I": 1, "II": 2, "III": 3}[group], group, "", comps)


def r2iss(b2m_mg_l, albumin_g_dl, ldh_u_l, ldh_uln_u_l, del17p, t4_14, gain1q=None, amp1q=None) -> ScoreResult:
    """R2-ISS (D'Agostino 2022): ISS II 1, ISS III 1.5, del(17p) 1, LDH > ULN 1, t(4;14) 1, 1q+ 0.5.
    Groups [R]: I 0; II 0.5-1; III 1.5-2.5; IV 3-5. t(14;16) is not scored."""
    stage = iss(b2m_mg_l, albumin_g_dl)
    iss_points = {"I": 0.0, "II": 1.0, "III": 1.5}
    if stage.group is None:
        # b2m < 3.5 with unknown albumin: I or II
        iss_value, iss_possible = (None, (0.0, 1.0)) if not _missing(b2m_mg_l) else (None, (0.0, 1.0, 1.5))
    else:
        iss_value, iss_possible = stage.group, ()
    gain = _gain1q_plus(gain1q, amp1q)
    items = {
        "iss": (iss_value, lambda g: iss_points[g], iss_possible),
        "del17p": (del17p, lambda v: 1.0 * bool(v), (0.0, 1.0)),
        "ldh_above_uln": (_ldh_high(ldh_u_l, ldh_uln_u_l), lambda v: 1.0 * bool(v), (0.0, 1.0)),
        "t4_14": (t4_14, lambda v: 1.0 * bool(v), (0.0, 1.0)),
        "1q_gain_or_amp": (gain, lambda v: 0.5 * bool(v), (0.0, 0.5)),
    }

    def grouping(p):
        return "I" if p == 0 else "II" if p <= 1 else "III" if p <= 2.5 else "IV"

    return _additive("R2-ISS", items, grouping)


# ----------------------------------------------------------------------------------------------------------------
# high-risk cytogenetics: named rules of §6.4 [D]
# ----------------------------------------------------------------------------------------------------------------
def _rule_riss2015(f):
    return _any([f.get("del17p"), f.get("t4_14"), f.get("t14_16")])


def _rule_sonneveld(f):
    return _any([f.get(k) for k in ("t4_14", "t14_16", "t14_20", "del17p", "non_hyperdiploid")]
                + [_gain1q_plus(f.get("gain1q"), f.get("amp1q"))])


def _rule_msmart(f):
    return _any([f.get(k) for k in ("t14_16", "t14_20", "del17p", "tp53_mutation", "high_risk_gep")])


def _rule_cart_realworld(f):
    return _any([f.get(k) for k in ("del17p", "t4_14", "t14_16", "t14_20")]
                + [_gain1q_plus(f.get("gain1q"), f.get("amp1q"))])


def _rule_ims2025(f, del17p_min_pct: float = 20.0, normal_creatinine_max_mg_dl: float = 1.2):
    """IMS/IMWG 2025 consensus genomic staging high risk [V items; creatinine cut-off R]."""
    del17p = f.get("del17p")
    pct = f.get("del17p_pct")
    if _missing(del17p) or not del17p:
        del17p_hr = del17p if _missing(del17p) else False
    else:
        del17p_hr = None if _missing(pct) else pct >= del17p_min_pct
    item1 = _any([del17p_hr, f.get("tp53_mutation")])
    plus1q = _gain1q_plus(f.get("gain1q"), f.get("amp1q"))
    chr1 = _any([plus1q, f.get("del1p32")])
    item2 = _all([_any([f.get("t4_14"), f.get("t14_16"), f.get("t14_20")]), chr1])
    item3 = _any([_all([f.get("del1p32"), plus1q]), f.get("del1p32_biallelic")])
    b2m, creat = f.get("b2m_mg_l"), f.get("creatinine_mg_dl")
    b2m_high = None if _missing(b2m) else b2m >= 5.5
    renal_ok = None if _missing(creat) else creat < normal_creatinine_max_mg_dl
    item4 = _all([b2m_high, renal_ok])
    return _any([item1, item2, item3, item4])


def _rule_chng(f):
    """Chng 2014: high = ISS II/III and (t(4;14) or del(17p)); low = ISS I/II, none of t(4;14), del(17p), 1q21
    gain and age < 55; standard otherwise. Returns 'high', 'low', 'standard' or None."""
    stage = iss(f.get("b2m_mg_l"), f.get("albumin_g_dl")).group
    adverse = _any([f.get("t4_14"), f.get("del17p")])
    iss23 = None if stage is None else stage in ("II", "III")
    if _all([iss23, adverse]):
        return "high"
    age = f.get("age_years")
    young = None if _missing(age) else age < 55
    iss12 = None if stage is None else stage in ("I", "II")
    any_abnormal = _any([adverse, _gain1q_plus(f.get("gain1q"), f.get("amp1q"))])
    high = _all([iss23, adverse])
    low = _all([iss12, None if any_abnormal is None else not any_abnormal, young])
    if high is True:
        return "high"
    if low is True:
        return "low"
    return "standard" if high is False and low is False else None


#: Rule id -> function of a mapping of FISH results (bool or None) and labs; True/False/None (or a group name).
CYTOGENETIC_RULES: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "RISS2015": _rule_riss2015,
    "IMWG2016_SONNEVELD": _rule_sonneveld,
    "IMWG2014_CHNG": _rule_chng,
    "IMS_IMWG2025": _rule_ims2025,
    "CART_TRIALS": _rule_riss2015,          # KarMMa / CARTITUDE-1 used the R-ISS abnormalities [R]
    "CART_REALWORLD": _rule_cart_realworld,  # + t(14;20) and 1q gain/amp, as many real-world series [R]
    "MSMART": _rule_msmart,
}


def high_risk_cytogenetics(rule: str, **findings) -> ScoreResult:
    """Apply one named high-risk cytogenetics rule (spec §6.4) to FISH findings (``del17p=True`` ...).

    Group is ``high`` / ``standard`` (``IMWG2014_CHNG``: ``high`` / ``standard`` / ``low``); None with the reason
    when untested abnormalities could change it.
    """
    if rule not in CYTOGENETIC_RULES:
        raise ValueError(f"unknown cytogenetics rule {rule!r}; expected one of {', '.join(CYTOGENETIC_RULES)}")
    out = CYTOGENETIC_RULES[rule](findings)
    group = {True: "high", False: "standard"}.get(out, out) if not isinstance(out, str) else out
    reason = "" if group is not None else "not evaluable: untested abnormalities could change the result"
    return ScoreResult(rule, None, group, reason, dict(findings))


# ----------------------------------------------------------------------------------------------------------------
# cohort table
# ----------------------------------------------------------------------------------------------------------------
_FISH = ("del17p", "t4_14", "t14_16", "t14_20", "gain1q", "amp1q", "del1p32", "del1p32_biallelic", "tp53_mutation",
         "non_hyperdiploid", "high_risk_gep", "del17p_pct")


#: patients-table columns each score reads (``carpet analyze --describe``)
SCORE_INPUTS: dict[str, tuple[str, ...]] = {
    "IPI": ("age_years", "ldh_u_l", "ldh_uln_u_l", "ecog", "ann_arbor_stage", "n_extranodal_sites"),
    "aaIPI": ("ldh_u_l", "ldh_uln_u_l", "ecog", "ann_arbor_stage"),
    "CAR-HEMATOTOX": ("platelets_per_ul", "anc_per_ul", "hb_g_dl", "crp_mg_dl", "ferritin_ng_ml"),
    "ISS": ("b2m_mg_l", "albumin_g_dl"),
    "R-ISS": ("b2m_mg_l", "albumin_g_dl", "ldh_u_l", "ldh_uln_u_l", "del17p", "t4_14", "t14_16"),
    "R2-ISS": ("b2m_mg_l", "albumin_g_dl", "ldh_u_l", "ldh_uln_u_l", "del17p", "t4_14", "gain1q", "amp1q"),
}


def score_patients(patients: pd.DataFrame, scores=("IPI", "aaIPI", "CAR-HEMATOTOX", "ISS", "R-ISS", "R2-ISS"),
                   cytogenetic_rules=tuple(CYTOGENETIC_RULES),
                   hematotox_rule: HematotoxRule = HematotoxRule()) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Every requested score for every row of a validated patients table (:data:`carpet.cohort.schema.PATIENTS`).

    Returns a frame with ``patient_id`` and, per score, ``<name>`` (points), ``<name>_group``,
    ``<name>_reason``; plus the provenance record (rules, cut-offs, carpet version).
    """
    def g(row, name):
        v = row.get(name)
        return None if _missing(v) else v

    fns = {
        "IPI": lambda r: ipi(g(r, "age_years"), g(r, "ldh_u_l"), g(r, "ldh_uln_u_l"), g(r, "ecog"),
                             g(r, "ann_arbor_stage"), g(r, "n_extranodal_sites")),
        "aaIPI": lambda r: aaipi(g(r, "ldh_u_l"), g(r, "ldh_uln_u_l"), g(r, "ecog"), g(r, "ann_arbor_stage")),
        "CAR-HEMATOTOX": lambda r: car_hematotox(g(r, "platelets_per_ul"), g(r, "anc_per_ul"), g(r, "hb_g_dl"),
                                                 g(r, "crp_mg_dl"), g(r, "ferritin_ng_ml"), hematotox_rule),
        "ISS": lambda r: iss(g(r, "b2m_mg_l"), g(r, "albumin_g_dl")),
        "R-ISS": lambda r: riss(g(r, "b2m_mg_l"), g(r, "albumin_g_dl"), g(r, "ldh_u_l"), g(r, "ldh_uln_u_l"),
                                g(r, "del17p"), g(r, "t4_14"), g(r, "t14_16")),
        "R2-ISS": lambda r: r2iss(g(r, "b2m_mg_l"), g(r, "albumin_g_dl"), g(r, "ldh_u_l"), g(r, "ldh_uln_u_l"),
                                  g(r, "del17p"), g(r, "t4_14"), g(r, "gain1q"), g(r, "amp1q")),
    }
    rows = []
    for rec in patients.to_dict("records"):
        out: dict[str, Any] = {"patient_id": rec["patient_id"]}
        results = [fns[s](rec) for s in scores]
        findings = {k: g(rec, k) for k in (*_FISH, "b2m_mg_l", "albumin_g_dl", "creatinine_mg_dl", "age_years")}
        results += [high_risk_cytogenetics(rule, **findings) for rule in cytogenetic_rules]
        for res in results:
            key = res.score.lower().replace("-", "_")
            if res.score not in CYTOGENETIC_RULES:
                out[key] = res.points
            out[f"{key}_group"] = res.group
            out[f"{key}_reason"] = res.reason
        rows.append(out)
    prov = provenance(scores=list(scores), cytogenetic_rules=list(cytogenetic_rules),
                      hematotox_cutoffs=asdict(hematotox_rule), source="spec/clinical-rules.md §6")
    return pd.DataFrame(rows), prov
