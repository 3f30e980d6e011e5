"""Risk scores: every cut-off at value - eps, value, value + eps; missing inputs; named cytogenetics rules."""

from __future__ import annotations

import pandas as pd
import pytest

from carpet.scores.risk import (aaipi, car_hematotox, high_risk_cytogenetics, ipi, iss, r2iss, riss,
                                score_patients)

EPS = 1e-6
LBCL0 = dict(age_years=50, ldh_u_l=200, ldh_uln_u_l=250, ecog=0, ann_arbor_stage=1, n_extranodal_sites=0)


def _ipi_points(**kw):
    return ipi(**{**LBCL0, **kw}).points


def test_ipi_cutoffs():
    assert [_ipi_points(age_years=a) for a in (60 - EPS, 60, 60 + EPS)] == [0, 0, 1]        # age > 60
    assert [_ipi_points(ldh_u_l=v) for v in (250 - EPS, 250, 250 + EPS)] == [0, 0, 1]       # LDH > ULN
    assert [_ipi_points(ecog=e) for e in (1, 2, 3)] == [0, 1, 1]                             # ECOG >= 2
    assert [_ipi_points(ann_arbor_stage=s) for s in (2, 3, 4)] == [0, 1, 1]                  # stage III-IV
    assert [_ipi_points(n_extranodal_sites=n) for n in (1, 2)] == [0, 1]                     # > 1 site


def test_ipi_groups():
    cases = [dict(), dict(age_years=70), dict(age_years=70, ecog=2), dict(age_years=70, ecog=2, ann_arbor_stage=3),
             dict(age_years=70, ecog=2, ann_arbor_stage=3, ldh_u_l=300),
             dict(age_years=70, ecog=2, ann_arbor_stage=3, ldh_u_l=300, n_extranodal_sites=2)]
    got = [(ipi(**{**LBCL0, **c}).points, ipi(**{**LBCL0, **c}).group) for c in cases]
    assert got == [(0, "low"), (1, "low"), (2, "low-intermediate"), (3, "high-intermediate"), (4, "high"),
                   (5, "high")]


def test_aaipi():
    base = dict(ldh_u_l=200, ldh_uln_u_l=250, ecog=0, ann_arbor_stage=1)
    assert [aaipi(**{**base, **c}).group for c in (dict(), dict(ecog=2), dict(ecog=2, ann_arbor_stage=3),
                                                    dict(ecog=2, ann_arbor_stage=3, ldh_u_l=251))] == \
        ["low", "low-intermediate", "high-intermediate", "high"]


def test_missing_inputs_never_count_as_normal():
    r = ipi(**{**LBCL0, "age_years": 70, "ecog": None})  # 1 or 2 points: low or low-intermediate
    assert r.points is None and r.group is None and "ecog" in r.reason and not r.evaluable
    r = ipi(**{**LBCL0, "ecog": None})  # 0 or 1 point: low either way
    assert r.points is None and r.group == "low" and "ecog" in r.reason
    # 4 known points: 4 or 5 is 'high' either way -> group reported, points unknown
    r = ipi(age_years=70, ldh_u_l=300, ldh_uln_u_l=250, ecog=None, ann_arbor_stage=4, n_extranodal_sites=3)
    assert r.points is None and r.group == "high" and "ecog" in r.reason
    r = ipi(**{**LBCL0, "ecog": 3, "ldh_uln_u_l": None})  # LDH without its lab's ULN cannot be judged
    assert r.group is None and "ldh_above_uln" in r.reason


HT0 = dict(platelets_per_ul=250_000, anc_per_ul=3_000, hb_g_dl=12.0, crp_mg_dl=0.5, ferritin_ng_ml=100)


def _ht(**kw):
    return car_hematotox(**{**HT0, **kw}).points


def test_car_hematotox_cutoffs():
    assert [_ht(platelets_per_ul=v) for v in (175_000 - EPS, 175_000, 175_000 + EPS)] == [1, 1, 0]
    assert [_ht(platelets_per_ul=v) for v in (75_000 - EPS, 75_000, 75_000 + EPS)] == [2, 1, 1]
    assert [_ht(anc_per_ul=v) for v in (1_200 - EPS, 1_200, 1_200 + EPS)] == [1, 0, 0]
    assert [_ht(hb_g_dl=v) for v in (9.0 - EPS, 9.0, 9.0 + EPS)] == [1, 0, 0]
    assert [_ht(crp_mg_dl=v) for v in (3.0 - EPS, 3.0, 3.0 + EPS)] == [0, 0, 1]
    assert [_ht(ferritin_ng_ml=v) for v in (650 - EPS, 650, 650 + EPS)] == [0, 1, 1]
    assert [_ht(ferritin_ng_ml=v) for v in (2_000 - EPS, 2_000, 2_000 + EPS)] == [1, 1, 2]


def test_car_hematotox_groups_and_range():
    assert car_hematotox(**{**HT0, "anc_per_ul": 1_000}).group == "low"                   # 1 point
    assert car_hematotox(**{**HT0, "platelets_per_ul": 50_000}).group == "high"           # 2 points
    worst = car_hematotox(50_000, 500, 8.0, 5.0, 3_000)
    assert (worst.points, worst.group) == (7, "high")
    assert car_hematotox(**{**HT0, "ferritin_ng_ml": None}).group is None                   # 0..2 -> low or high
    assert car_hematotox(**{**HT0, "platelets_per_ul": 50_000, "crp_mg_dl": None}).group == "high"


def test_iss_cutoffs():
    assert [iss(3.5 - EPS, 3.5).group, iss(3.5, 3.5).group, iss(3.5 + EPS, 3.5).group] == ["I", "II", "II"]
    assert [iss(2.0, 3.5 - EPS).group, iss(2.0, 3.5).group, iss(2.0, 3.5 + EPS).group] == ["II", "I", "I"]
    assert [iss(5.5 - EPS, 4).group, iss(5.5, 4).group, iss(5.5 + EPS, 4).group] == ["II", "III", "III"]
    assert iss(6.0, None).group == "III" and iss(2.0, None).group is None and iss(None, 4.0).group is None


def test_riss():
    fish_std = dict(del17p=False, t4_14=False, t14_16=False)
    assert riss(2.0, 4.0, 200, 250, **fish_std).group == "I"
    assert riss(2.0, 4.0, 251, 250, **fish_std).group == "II"
    assert riss(2.0, 4.0, 250, 250, **fish_std).group == "I"          # LDH = ULN is normal
    assert riss(6.0, 4.0, 200, 250, **fish_std).group == "II"
    assert riss(6.0, 4.0, 200, 250, **{**fish_std, "t14_16": True}).group == "III"
    assert riss(4.0, 4.0, None, None, None, None, None).group == "II"   # ISS II is R-ISS II whatever the rest
    assert riss(6.0, 4.0, 300, 250, None, None, None).group == "III"    # high LDH suffices
    r = riss(2.0, 4.0, 200, 250, None, False, False)
    assert r.group is None and "FISH" in r.reason


def test_r2iss_points_and_groups():
    def r(b2m=2.0, alb=4.0, ldh=200, del17p=False, t4_14=False, gain1q=False):
        return r2iss(b2m, alb, ldh, 250, del17p, t4_14, gain1q)
    assert (r().points, r().group) == (0, "I")
    assert (r(gain1q=True).points, r(gain1q=True).group) == (0.5, "II")
    assert (r(b2m=4.0).points, r(b2m=4.0).group) == (1, "II")
    assert (r(b2m=6.0).points, r(b2m=6.0).group) == (1.5, "III")
    assert r(b2m=6.0, gain1q=True, t4_14=False, ldh=300).points == 3.0 and r(b2m=6.0, gain1q=True, ldh=300).group == "IV"
    assert r(b2m=4.0, gain1q=True, ldh=300).points == 2.5 and r(b2m=4.0, gain1q=True, ldh=300).group == "III"
    assert r(b2m=6.0, del17p=True, t4_14=True, ldh=300, gain1q=True).points == 5.0
    assert r2iss(2.0, 4.0, 200, 250, None, False, False).group is None          # missing FISH -> NE
    assert r2iss(6.0, 4.0, 300, 250, True, True, None).group == "IV"            # 4.5 or 5: IV either way


def test_cytogenetic_rules_differ_where_the_sources_differ():
    t14_20 = dict(del17p=False, t4_14=False, t14_16=False, t14_20=True, gain1q=False, amp1q=False,
                  non_hyperdiploid=False, tp53_mutation=False, high_risk_gep=False, del1p32=False,
                  del1p32_biallelic=False)
    groups = {rule: high_risk_cytogenetics(rule, **t14_20).group
              for rule in ("RISS2015", "IMWG2016_SONNEVELD", "CART_TRIALS", "CART_REALWORLD", "MSMART")}
    assert groups == {"RISS2015": "standard", "IMWG2016_SONNEVELD": "high", "CART_TRIALS": "standard",
                      "CART_REALWORLD": "high", "MSMART": "high"}
    assert high_risk_cytogenetics("RISS2015", del17p=None, t4_14=True, t14_16=None).group == "high"
    assert high_risk_cytogenetics("RISS2015", del17p=None, t4_14=False, t14_16=False).group is None
    with pytest.raises(ValueError):
        high_risk_cytogenetics("NOPE")


def test_ims_imwg2025():
    clean = dict(del17p=False, tp53_mutation=False, t4_14=False, t14_16=False, t14_20=False, gain1q=False,
                 amp1q=False, del1p32=False, del1p32_biallelic=False, b2m_mg_l=3.0, creatinine_mg_dl=1.0)

    def g(**kw):
        return high_risk_cytogenetics("IMS_IMWG2025", **{**clean, **kw}).group
    assert g() == "standard"
    assert [g(del17p=True, del17p_pct=20 - EPS), g(del17p=True, del17p_pct=20)] == ["standard", "high"]
    assert g(del17p=True) is None                                       # clonal fraction unknown
    assert [g(t4_14=True), g(t4_14=True, gain1q=True)] == ["standard", "high"]   # translocation needs 1q+/1p-
    assert [g(del1p32=True), g(del1p32=True, amp1q=True), g(del1p32_biallelic=True)] == ["standard", "high", "high"]
    assert [g(b2m_mg_l=5.5 - EPS), g(b2m_mg_l=5.5), g(b2m_mg_l=5.5, creatinine_mg_dl=1.2)] == \
        ["standard", "high", "standard"]


def test_chng_2014():
    def g(b2m, **kw):
        f = dict(b2m_mg_l=b2m, albumin_g_dl=4.0, t4_14=False, del17p=False, gain1q=False, amp1q=False, age_years=50)
        return high_risk_cytogenetics("IMWG2014_CHNG", **{**f, **kw}).group
    assert g(4.0, t4_14=True) == "high" and g(2.0, t4_14=True) == "standard"
    assert g(2.0) == "low" and g(2.0, age_years=55) == "standard" and g(2.0, gain1q=True) == "standard"
    assert g(6.0) == "standard" and g(2.0, age_years=None) is None


def test_score_patients_table():
    patients = pd.DataFrame([
        dict(patient_id="L1", **LBCL0, platelets_per_ul=50_000, anc_per_ul=1_000, hb_g_dl=8, crp_mg_dl=4,
             ferritin_ng_ml=700),
        dict(patient_id="M1", b2m_mg_l=6.0, albumin_g_dl=3.0, ldh_u_l=300, ldh_uln_u_l=250, del17p=True, t4_14=False,
             t14_16=False, gain1q=True),
    ])
    table, prov = score_patients(patients)
    t = table.set_index("patient_id")
    assert t.loc["L1", "ipi"] == 0 and t.loc["L1", "car_hematotox"] == 6 and t.loc["L1", "car_hematotox_group"] == "high"
    assert t.loc["L1", "iss_group"] is None and "b2m" in t.loc["L1", "iss_reason"]
    assert (t.loc["M1", "iss_group"], t.loc["M1", "r_iss_group"], t.loc["M1", "r2_iss"]) == ("III", "III", 4.0)
    assert t.loc["M1", "riss2015_group"] == "high" and t.loc["M1", "ipi_group"] is None
    assert prov["hematotox_cutoffs"]["anc_per_ul"] == 1200 and "carpet_version" in prov


def test_r2iss_boundaries_through_its_inputs():
    # every group edge (0|0.5, 1|1.5, 2.5|3) and every numeric input cut-off at value - eps, value, value + eps
    def pts(b2m=2.0, alb=4.0, ldh=200.0, **fish):
        r = r2iss(b2m, alb, ldh, 250, fish.get("del17p", False), fish.get("t4_14", False), fish.get("gain1q", False))
        return r.points, r.group
    assert [pts(b2m=v) for v in (3.5 - EPS, 3.5, 3.5 + EPS)] == [(0, "I"), (1, "II"), (1, "II")]
    assert [pts(b2m=v) for v in (5.5 - EPS, 5.5, 5.5 + EPS)] == [(1, "II"), (1.5, "III"), (1.5, "III")]
    assert [pts(alb=v) for v in (3.5 - EPS, 3.5, 3.5 + EPS)] == [(1, "II"), (0, "I"), (0, "I")]
    assert [pts(ldh=v) for v in (250 - EPS, 250, 250 + EPS)] == [(0, "I"), (0, "I"), (1, "II")]
    assert pts(b2m=6.0, del17p=True) == (2.5, "III") and pts(b2m=6.0, del17p=True, gain1q=True) == (3.0, "IV")
    assert pts(b2m=4.0, del17p=True) == (2.0, "III")


def test_r2iss_missing_1q_is_not_evaluable_when_it_matters():
    r = r2iss(4.0, 4.0, 200, 250, False, False, None)       # 1 or 1.5 points: II or III
    assert r.group is None and "1q" in r.reason
    r = r2iss(2.0, 4.0, 200, 250, False, False, None)       # 0 or 0.5: I or II
    assert r.group is None
    r = r2iss(4.0, 4.0, 300, 250, False, False, None)       # 2 or 2.5: III either way
    assert (r.points, r.group) == (None, "III")


def test_riss_ldh_boundary():
    fish_std = dict(del17p=False, t4_14=False, t14_16=False)
    assert [riss(2.0, 4.0, v, 250, **fish_std).group for v in (250 - EPS, 250, 250 + EPS)] == ["I", "I", "II"]
    assert [riss(6.0, 4.0, v, 250, **fish_std).group for v in (250 - EPS, 250, 250 + EPS)] == ["II", "II", "III"]


def test_car_hematotox_group_edge():
    # 1 point (ANC just below 1,200) is low; 2 points (plus Hb just below 9.0) is high
    assert car_hematotox(**{**HT0, "anc_per_ul": 1_200 - EPS}).group == "low"
    assert car_hematotox(**{**HT0, "anc_per_ul": 1_200 - EPS, "hb_g_dl": 9.0 - EPS}).group == "high"
    assert car_hematotox(**{**HT0, "anc_per_ul": 1_200 - EPS, "hb_g_dl": 9.0}).group == "low"


def test_numpy_float32_nan_is_missing_not_a_low_value():
    import numpy as np
    r = car_hematotox(**{**HT0, "platelets_per_ul": np.float32("nan")})
    assert r.points is None and "platelets" in r.reason       # was 2 points: NaN failed both comparisons
    assert iss(np.float32("nan"), 4.0).group is None
