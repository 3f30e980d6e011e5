"""IMWG 2016 engine: threshold boundaries (value - eps, value, value + eps), worked patients, the CLI contract.

Expected categories are worked out by hand from spec §3 for each constructed series.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from carpet.cli import app
from carpet.errors import InputError
from carpet.scores.imwg import IMWGParams, assess_cohort, assess_patient, refractory_to

INF = pd.Timestamp("2024-01-10")
EPS = 1e-6


def _day(day: int) -> str:
    return (INF + pd.Timedelta(days=day)).date().isoformat()


def run(visits, chain="kappa", next_therapy_day=None, **params):
    """visits: [(day after infusion, {parameter: value in internal units})]."""
    rows = [{"date": INF + pd.Timedelta(days=day), "parameter": k, "value": float(v)}
            for day, vals in visits for k, v in vals.items()]
    nxt = None if next_therapy_day is None else INF + pd.Timedelta(days=next_therapy_day)
    return assess_patient("P", INF, pd.DataFrame(rows), chain, nxt, IMWGParams(**params))


def response(result, day):
    return result.responses.set_index("date").loc[_day(day), "response"]


def prog(result):
    return result.progression.iloc[0]


# ------------------------------------------------------------------------------------------------------------
# progression thresholds
# ------------------------------------------------------------------------------------------------------------
def _serum_series(nadir, test, baseline=None):
    baseline = baseline if baseline is not None else max(nadir * 1.5, 1.5)
    return [(-5, {"serum_m_protein": baseline}), (30, {"serum_m_protein": nadir}),
            (60, {"serum_m_protein": nadir}), (90, {"serum_m_protein": test}), (120, {"serum_m_protein": 20})]


@pytest.mark.parametrize("nadir, threshold", [
    (3.0, 3.75),   # 25 % of 3.0 = 0.75 > 0.5: the relative rule binds
    (1.0, 1.5),    # 25 % of 1.0 = 0.25 < 0.5: the absolute 0.5 g/dL binds
    (5.0, 6.0),    # nadir >= 5 g/dL: a rise of 1 g/dL suffices (25 % would need 6.25)
])
def test_serum_pd_boundary(nadir, threshold):
    assert response(run(_serum_series(nadir, threshold - EPS)), 90) != "PD"
    assert response(run(_serum_series(nadir, threshold)), 90) == "PD"
    assert response(run(_serum_series(nadir, threshold + EPS)), 90) == "PD"


def test_serum_high_nadir_rule_starts_at_5():
    # just below a 5 g/dL nadir the 25 % rule applies: a 1 g/dL rise is only ~20 %
    assert response(run(_serum_series(5.0 - EPS, 6.0 - EPS, baseline=8)), 90) != "PD"
    assert response(run(_serum_series(5.0, 6.0, baseline=8)), 90) == "PD"


def test_serum_pd_strict_switch():
    assert response(run(_serum_series(1.0, 1.5), serum_pd_abs_inclusive=False), 90) != "PD"
    assert response(run(_serum_series(1.0, 1.5 + EPS), serum_pd_abs_inclusive=False), 90) == "PD"


def _urine_series(nadir, test):
    return [(-5, {"urine_m_protein": 2000}), (30, {"urine_m_protein": nadir}), (60, {"urine_m_protein": nadir}),
            (90, {"urine_m_protein": test}), (120, {"urine_m_protein": 9000})]


@pytest.mark.parametrize("nadir, threshold", [(400.0, 600.0), (1000.0, 1250.0)])
def test_urine_pd_boundary(nadir, threshold):
    assert response(run(_urine_series(nadir, threshold - EPS)), 90) != "PD"
    assert response(run(_urine_series(nadir, threshold)), 90) == "PD"
    assert response(run(_urine_series(nadir, threshold + EPS)), 90) == "PD"


def _flc_series(dflc_nadir, dflc_test, uninvolved=1.0):
    v = lambda d: {"kappa_flc": uninvolved + d, "lambda_flc": uninvolved}  # noqa: E731
    return [(-5, v(200.0)), (30, v(dflc_nadir)), (60, v(dflc_nadir)), (90, v(dflc_test)), (120, v(500.0))]


@pytest.mark.parametrize("nadir, threshold, at_threshold", [
    (20.0, 30.0, "SD"),   # absolute rise must be > 10 mg/dL (strict): exactly 10 is not PD
    (60.0, 75.0, "PD"),   # 25 % of 60 = 15 > 10: the relative rule (>=) binds
])
def test_dflc_pd_boundary(nadir, threshold, at_threshold):
    assert response(run(_flc_series(nadir, threshold - EPS)), 90) != "PD"
    assert (response(run(_flc_series(nadir, threshold)), 90) == "PD") == (at_threshold == "PD")
    assert response(run(_flc_series(nadir, threshold + EPS)), 90) == "PD"


def test_dflc_pd_not_used_when_serum_measurable():
    visits = _flc_series(20.0, 60.0)
    for _, vals in visits:
        vals["serum_m_protein"] = 2.0
    assert response(run(visits), 90) != "PD"


def _marrow_series(test):
    return [(-5, {"bm_plasma_cells": 40}), (30, {"bm_plasma_cells": 20}), (60, {"bm_plasma_cells": 20}),
            (90, {"bm_plasma_cells": test})]


def test_marrow_pd_boundary_and_no_confirmation_needed():
    assert response(run(_marrow_series(30 - EPS)), 90) != "PD"
    r = run(_marrow_series(30))
    assert response(r, 90) == "PD"
    assert prog(r)["progression_date"] == _day(90)  # last assessment, yet confirmed: marrow needs no repeat
    assert prog(r)["measurable_disease"] == "marrow"
    assert response(run(_marrow_series(30 + EPS)), 90) == "PD"


# ------------------------------------------------------------------------------------------------------------
# response thresholds
# ------------------------------------------------------------------------------------------------------------
def _serum_response(value):
    return response(run([(-5, {"serum_m_protein": 2.0, "urine_m_protein": 0}),
                         (30, {"serum_m_protein": value, "urine_m_protein": 0, "serum_ife": 1})]), 30)


@pytest.mark.parametrize("value, at, above", [(0.2, "VGPR", "PR"), (1.0, "PR", "MR"), (1.5, "MR", "SD")])
def test_serum_response_boundaries(value, at, above):
    # reductions from 2.0 g/dL: 90 % -> 0.2, 50 % -> 1.0, 25 % -> 1.5 (all "at least")
    assert _serum_response(value - EPS) == at
    assert _serum_response(value) == at
    assert _serum_response(value + EPS) == above


def _urine_response(value):
    return response(run([(-5, {"urine_m_protein": 1000}), (30, {"urine_m_protein": value})]), 30)


def test_urine_response_boundaries():
    assert [_urine_response(100 - EPS), _urine_response(100), _urine_response(100 + EPS)] == ["VGPR", "PR", "PR"]
    assert [_urine_response(200 - EPS), _urine_response(200), _urine_response(200 + EPS)] == ["PR", "MR", "MR"]
    assert [_urine_response(500 - EPS), _urine_response(500), _urine_response(500 + EPS)] == ["MR", "MR", "SD"]


def _flc_response(dflc):
    v = lambda d: {"kappa_flc": 1.0 + d, "lambda_flc": 1.0}  # noqa: E731
    return response(run([(-5, v(50.0)), (30, v(dflc))]), 30)


def test_flc_response_boundaries():
    # FLC-only disease: VGPR needs > 90 % dFLC decrease (strict), PR >= 50 %
    assert [_flc_response(5 - EPS), _flc_response(5), _flc_response(5 + EPS)] == ["VGPR", "PR", "PR"]
    assert [_flc_response(25 - EPS), _flc_response(25), _flc_response(25 + EPS)] == ["PR", "PR", "SD"]


def _cr_series(bmpc):
    return [(-5, {"serum_m_protein": 2.0, "urine_m_protein": 50, "bm_plasma_cells": 40}),
            (30, {"serum_m_protein": 0, "urine_m_protein": 0, "serum_ife": 0, "urine_ife": 0,
                  "bm_plasma_cells": bmpc, "kappa_flc": 1.0, "lambda_flc": 2.0})]


def test_cr_marrow_boundary():
    assert response(run(_cr_series(5 - EPS)), 30) == "CR"  # ratio 0.5 is normal but clonality unknown -> CR
    assert response(run(_cr_series(5)), 30) == "VGPR"
    assert response(run(_cr_series(5 + EPS)), 30) == "VGPR"


def test_marrow_pr_needs_baseline_30():
    def r(base):
        return response(run([(-5, {"bm_plasma_cells": base}), (30, {"bm_plasma_cells": base / 2})]), 30)
    assert [r(30 - EPS), r(30), r(30 + EPS)] == ["SD", "PR", "PR"]


def test_measurable_disease_boundaries():
    def kind(serum=None, urine=None, inv=None, **params):
        vals = {k: v for k, v in (("serum_m_protein", serum), ("urine_m_protein", urine)) if v is not None}
        if inv is not None:
            vals.update(kappa_flc=inv, lambda_flc=0.5)  # ratio >= 20: abnormal
        return prog(run([(-5, vals), (30, vals)], **params))["measurable_disease"]
    assert [kind(serum=1.0 - EPS), kind(serum=1.0), kind(serum=1.0 + EPS)] == ["none", "serum", "serum"]
    assert kind(serum=0.5, serum_measurable_min=0.5) == "serum"
    assert [kind(urine=200 - EPS), kind(urine=200), kind(urine=200 + EPS)] == ["none", "urine", "urine"]
    assert [kind(inv=10 - EPS), kind(inv=10), kind(inv=10 + EPS)] == ["none", "flc", "flc"]


def test_flc_ratio_range_inclusive_and_lab_specific():
    def kind(kappa, **params):
        return prog(run([(-5, {"kappa_flc": kappa, "lambda_flc": 10.0})], **params))["measurable_disease"]
    assert [kind(16.5 - EPS * 10), kind(16.5), kind(16.5 + EPS * 10)] == ["none", "none", "flc"]
    assert kind(20.0, flc_normal_range=(0.37, 3.1)) == "none"


# ------------------------------------------------------------------------------------------------------------
# refractory
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("day, refractory", [(59, True), (60, True), (61, False)])
def test_refractory_day_60_inclusive(day, refractory):
    r = run([(-5, {"serum_m_protein": 3.0}), (20, {"serum_m_protein": 2.9}), (day, {"new_lesion": 1})])
    assert prog(r)["progression_date"] == _day(day)
    assert bool(prog(r)["refractory"]) is refractory


def test_refractory_to_function():
    assert refractory_to("2024-01-01", "2024-03-01", window_days=60) is True    # day 60
    assert refractory_to("2024-01-01", "2024-03-02", window_days=60) is False   # day 61
    assert refractory_to("2024-01-01", None, best_response="SD") is True        # never reached MR
    assert refractory_to("2024-01-01", None, best_response="PR") is False


# ------------------------------------------------------------------------------------------------------------
# worked patients
# ------------------------------------------------------------------------------------------------------------
def test_serum_patient_pr_then_confirmed_pd():
    r = run([(-5, {"serum_m_protein": 3.0, "urine_m_protein": 40}),
             (30, {"serum_m_protein": 1.2, "urine_m_protein": 30}), (60, {"serum_m_protein": 1.1, "urine_m_protein": 30}),
             (90, {"serum_m_protein": 1.8, "urine_m_protein": 30}), (120, {"serum_m_protein": 2.4, "urine_m_protein": 30})])
    assert list(r.responses["response"]) == ["PR", "PR", "PD", "PD"]
    assert list(r.responses["confirmed"]) == [True, False, True, True]
    p = prog(r)
    assert (p["best_response"], p["progression_date"], bool(p["progression_confirmed"]), bool(p["refractory"])) == \
        ("PR", _day(90), True, False)
    assert p["progression_trigger"] == "serum_m_protein" and p["measurable_disease"] == "serum"


def test_urine_only_light_chain_patient():
    r = run([(-5, {"urine_m_protein": 1500, "serum_m_protein": 0}), (30, {"urine_m_protein": 150}),
             (60, {"urine_m_protein": 120}), (90, {"urine_m_protein": 60}), (120, {"urine_m_protein": 70}),
             (150, {"urine_m_protein": 300}), (180, {"urine_m_protein": 400})])
    assert list(r.responses["response"]) == ["PR", "PR", "VGPR", "VGPR", "PD", "PD"]
    # nadir 60 (confirmed by 70): 300 is +240 mg (>= 200) and +400 % (>= 25 %)
    assert (prog(r)["best_response"], prog(r)["progression_date"]) == ("VGPR", _day(150))
    assert prog(r)["measurable_disease"] == "urine"


def test_flc_only_patient_cr_needs_normal_ratio():
    v = lambda inv, unv: {"lambda_flc": inv, "kappa_flc": unv}  # noqa: E731
    neg = {"serum_ife": 0, "urine_ife": 0}
    r = run([(-5, {**v(60, 1.0), "bm_plasma_cells": 30}),
             (30, {**v(3.0, 1.0), **neg, "bm_plasma_cells": 1}),          # dFLC 2 (-97 %), ratio 0.33 normal
             (60, {**v(3.0, 1.0), **neg}),
             (90, {**v(5.0, 1.0), **neg}),                                 # -93 %, ratio 0.2 abnormal: VGPR
             (120, {**v(30.0, 1.0)}), (150, {**v(40.0, 1.0)})], chain="lambda")
    assert list(r.responses["response"]) == ["CR", "CR", "VGPR", "PD", "PD"]
    assert prog(r)["best_response"] == "CR" and prog(r)["progression_trigger"] == "dflc"
    # without the ratio requirement for CR (a CAR T study convention) day 90 is CR too
    r2 = run([(-5, {**v(60, 1.0), "bm_plasma_cells": 30}), (30, {**v(3.0, 1.0), **neg, "bm_plasma_cells": 1}),
              (90, {**v(5.0, 1.0), **neg})], chain="lambda", flc_ratio_for_cr=False)
    assert list(r2.responses["response"]) == ["CR", "CR"]


def test_scr_needs_normal_ratio_and_negative_clonality():
    base = (-5, {"serum_m_protein": 2.0, "urine_m_protein": 10, "bm_plasma_cells": 40})
    cr = {"serum_m_protein": 0, "urine_m_protein": 0, "serum_ife": 0, "urine_ife": 0, "kappa_flc": 1.2,
          "lambda_flc": 1.0}
    r = run([base, (30, {**cr, "bm_plasma_cells": 2, "bm_clonality": 0}), (60, cr)])
    assert list(r.responses["response"]) == ["sCR", "sCR"] and prog(r)["best_response"] == "sCR"
    r = run([base, (30, {**cr, "bm_plasma_cells": 2, "bm_clonality": 1}), (60, cr)])
    assert list(r.responses["response"]) == ["CR", "CR"]
    r = run([base, (30, cr), (60, cr)])  # no marrow: CR not evaluable, downgraded to VGPR
    assert list(r.responses["response"]) == ["VGPR", "VGPR"]
    assert r.responses["reason"].iloc[0] == "cr_not_evaluable_no_marrow"


def test_unconfirmed_pd_at_last_visit():
    r = run([(-5, {"serum_m_protein": 3.0}), (30, {"serum_m_protein": 1.2}), (60, {"serum_m_protein": 1.2}),
             (90, {"serum_m_protein": 2.5})])
    p = prog(r)
    assert response(r, 90) == "PD" and not r.responses["confirmed"].iloc[-1]
    assert p["progression_date"] == "" and not p["progression_confirmed"] and not p["refractory"]
    assert p["unconfirmed_pd_date"] == _day(90) and p["best_response"] == "PR"


def test_transient_rise_is_not_progression():
    r = run([(-5, {"serum_m_protein": 3.0}), (30, {"serum_m_protein": 1.2}), (60, {"serum_m_protein": 1.2}),
             (90, {"serum_m_protein": 2.5}), (120, {"serum_m_protein": 1.2}), (150, {"serum_m_protein": 1.3})])
    assert list(r.responses["response"]) == ["PR", "PR", "PD", "PR", "PR"]
    assert prog(r)["progression_date"] == "" and prog(r)["unconfirmed_pd_date"] == ""


def test_pd_after_new_therapy_is_ignored():
    visits = [(-5, {"serum_m_protein": 3.0}), (30, {"serum_m_protein": 1.2}), (60, {"serum_m_protein": 1.2}),
              (90, {"serum_m_protein": 2.5}), (120, {"serum_m_protein": 3.5})]
    assert prog(run(visits))["progression_date"] == _day(90)
    r = run(visits, next_therapy_day=90)  # values on or after the next line's start are excluded
    assert prog(r)["progression_date"] == "" and list(r.responses["date"]) == [_day(30), _day(60)]
    assert prog(r)["n_excluded_after_new_therapy"] == 2


def test_relapse_from_cr_and_pd_from_nadir_zero():
    cr = {"serum_m_protein": 0, "urine_m_protein": 0, "serum_ife": 0, "urine_ife": 0}
    r = run([(-5, {"serum_m_protein": 2.0, "urine_m_protein": 0}), (30, {**cr, "bm_plasma_cells": 1}), (60, cr),
             (90, {"serum_m_protein": 0, "urine_m_protein": 0, "serum_ife": 1, "urine_ife": 0}),  # IFE back
             (120, {"serum_m_protein": 0.5 - EPS, "urine_m_protein": 0, "serum_ife": 1}),
             (150, {"serum_m_protein": 0.5, "urine_m_protein": 0, "serum_ife": 1}),
             (180, {"serum_m_protein": 0.8, "urine_m_protein": 0, "serum_ife": 1})])
    p = prog(r)
    # relapse from CR (IFE reappears) is not PD; PD needs >= 0.5 g/dL from the nadir of 0 (absolute rule only)
    assert p["relapse_from_cr_date"] == _day(90)
    assert list(r.responses["response"]) == ["CR", "CR", "VGPR", "PR", "PD", "PD"]
    assert (p["best_response"], p["progression_date"]) == ("CR", _day(150))


def test_nadir_mode_switch():
    visits = [(-5, {"serum_m_protein": 3.0}), (30, {"serum_m_protein": 1.0}), (60, {"serum_m_protein": 0.2}),
              (90, {"serum_m_protein": 0.8}), (120, {"serum_m_protein": 0.85}), (150, {"serum_m_protein": 0.9})]
    # 'any': nadir 0.2 (single value), 0.8 is +0.6 -> PD confirmed by 0.85; 'confirmed': nadir 1.0 -> no PD
    assert prog(run(visits, nadir_mode="any"))["progression_date"] == _day(90)
    assert prog(run(visits, nadir_mode="confirmed"))["progression_date"] == ""
    with pytest.raises(InputError):
        IMWGParams(nadir_mode="lowest")


def test_missing_measurable_parameter_is_not_evaluable():
    r = run([(-5, {"serum_m_protein": 2.0}), (30, {"urine_m_protein": 50}), (60, {"serum_m_protein": 0.8}),
             (90, {"serum_m_protein": 0.8})])
    assert list(r.responses["response"]) == ["NE", "PR", "PR"]
    assert r.responses["reason"].iloc[0] == "missing_serum_m_protein"
    assert prog(r)["best_response"] == "PR"
    # an NE visit neither confirms nor breaks a pair: PR, NE, PR is a confirmed PR; PD, NE, PD a confirmed PD
    r = run([(-5, {"serum_m_protein": 2.0}), (30, {"serum_m_protein": 0.8}), (45, {"serum_ife": 1}),
             (60, {"serum_m_protein": 0.8}), (90, {"serum_m_protein": 1.5}), (100, {"serum_ife": 1}),
             (120, {"serum_m_protein": 1.6})])
    assert list(r.responses["response"]) == ["PR", "NE", "PR", "PD", "PD", "PD"]
    assert bool(r.responses["confirmed"].iloc[0]) and prog(r)["best_response"] == "PR"
    assert prog(r)["progression_date"] == _day(90)


def test_missing_critical_data_downgrades():
    # serum -95 % is VGPR only with urine < 100 mg/24 h; urine not measured -> PR, with the reason
    r = run([(-5, {"serum_m_protein": 2.0, "urine_m_protein": 50}), (30, {"serum_m_protein": 0.1}),
             (60, {"serum_m_protein": 0.1, "urine_m_protein": 50, "serum_ife": 1})])
    assert list(r.responses["response"]) == ["PR", "VGPR"]
    assert r.responses["reason"].iloc[0] == "downgraded_missing_urine_m_protein"
    # negative serum IFE but no urine IFE: CR not evaluable -> VGPR
    r = run([(-5, {"serum_m_protein": 2.0, "urine_m_protein": 50}),
             (30, {"serum_m_protein": 0, "urine_m_protein": 0, "serum_ife": 0, "bm_plasma_cells": 1})])
    assert (response(r, 30), r.responses["reason"].iloc[0]) == ("VGPR", "cr_not_evaluable_ife_missing")


def _spd_series(spd_test, serum=0.4):
    # serum -80 % (PR level); plasmacytoma SPD 20 cm2 at baseline, nadir 8 cm2
    return [(-5, {"serum_m_protein": 2.0, "urine_m_protein": 0, "plasmacytoma_spd": 20}),
            (30, {"serum_m_protein": serum, "urine_m_protein": 0}),
            (60, {"serum_m_protein": serum, "urine_m_protein": 0, "plasmacytoma_spd": 8}),
            (90, {"serum_m_protein": serum, "urine_m_protein": 0, "plasmacytoma_spd": spd_test})]


def test_plasmacytoma_pd_boundary_and_no_confirmation():
    # >= 50 % above the SPD nadir of 8 cm2 -> 12 cm2; imaging PD needs no confirmation
    assert response(run(_spd_series(12 - EPS)), 90) != "PD"
    r = run(_spd_series(12))
    assert response(r, 90) == "PD" and prog(r)["progression_date"] == _day(90)
    assert prog(r)["progression_trigger"] == "plasmacytoma_spd"
    assert response(run(_spd_series(12 + EPS)), 90) == "PD"


def test_plasmacytoma_caps_the_response():
    r = run(_spd_series(8))
    # day 30: no imaging yet -> PR downgraded to MR; day 60/90: SPD -60 % keeps PR
    assert list(r.responses["response"]) == ["MR", "PR", "PR"]
    assert "downgraded_missing_plasmacytoma_spd" in r.responses["reason"].iloc[0]
    # PR needs >= 50 % SPD reduction: 10 cm2 (-50 %) keeps PR, 10 + eps caps at MR ('gt50': > 50 % for MR fails)
    def at90(spd, **kw):
        visits = _spd_series(spd)
        visits[2][1]["plasmacytoma_spd"] = spd
        return response(run(visits, **kw), 90)
    assert [at90(10 - EPS), at90(10), at90(10 + EPS)] == ["PR", "PR", "SD"]
    assert [at90(15 - EPS, mr_plasmacytoma="ge25"), at90(15, mr_plasmacytoma="ge25"),
            at90(15 + EPS, mr_plasmacytoma="ge25")] == ["MR", "MR", "SD"]


def test_first_response_and_duration():
    r = run([(-5, {"serum_m_protein": 3.0}), (30, {"serum_m_protein": 2.0}), (60, {"serum_m_protein": 1.2}),
             (90, {"serum_m_protein": 1.1}), (120, {"serum_m_protein": 1.8}), (150, {"serum_m_protein": 2.4})])
    p = prog(r)
    assert (p["first_response_date"], p["progression_date"], p["duration_of_response_days"]) == \
        (_day(60), _day(120), 60)


def test_death_confirms_pd_switch():
    visits = [(-5, {"serum_m_protein": 3.0}), (30, {"serum_m_protein": 1.2}), (60, {"serum_m_protein": 1.2}),
              (90, {"serum_m_protein": 2.5})]
    rows = [{"date": INF + pd.Timedelta(days=d), "parameter": k, "value": v} for d, vals in visits
            for k, v in vals.items()]
    death = INF + pd.Timedelta(days=100)
    off = assess_patient("P", INF, pd.DataFrame(rows), "kappa", None, IMWGParams(), death_date=death)
    on = assess_patient("P", INF, pd.DataFrame(rows), "kappa", None, IMWGParams(death_confirms_pd=True), death)
    assert prog(off)["progression_date"] == "" and prog(on)["progression_date"] == _day(90)


def test_same_day_duplicates_take_the_worst():
    r = run([(-5, {"serum_m_protein": 3.0}), (30, {"serum_m_protein": 1.2}),
             (30, {"serum_m_protein": 2.0}), (60, {"serum_m_protein": 2.0})])
    assert list(r.responses["response"]) == ["MR", "MR"]


def test_baseline_window():
    visits = [(-40, {"serum_m_protein": 3.0}), (30, {"serum_m_protein": 1.0})]
    assert prog(run(visits))["measurable_disease"] == "none"
    assert prog(run(visits, baseline_window_days=40))["measurable_disease"] == "serum"


# ------------------------------------------------------------------------------------------------------------
# cohort API and CLI contract
# ------------------------------------------------------------------------------------------------------------
def _tables():
    patients = pd.DataFrame({"patient_id": ["A", "B"], "infusion_date": ["2024-01-10", "2024-02-01"],
                             "involved_light_chain": ["kappa", "lambda"]})
    rows = []
    for pid, start, series in (("A", "2024-01-05", [30, 12, 11, 18, 24]), ("B", "2024-01-25", [20, 19, 19, 18])):
        for k, g_l in enumerate(series):
            date = (pd.Timestamp(start) + pd.Timedelta(days=30 * k)).date().isoformat()
            rows.append(dict(patient_id=pid, date=date, parameter="serum_m_protein", value=g_l, unit="g/L"))
    lines = pd.DataFrame({"patient_id": ["A", "B", "B"], "line": [1, 1, 2],
                          "start_date": ["2024-01-10", "2024-02-01", "2024-04-20"]})
    return patients, pd.DataFrame(rows), lines


def test_assess_cohort_dataframes():
    patients, labs, lines = _tables()
    r = assess_cohort(patients, labs, lines)
    p = r.progression.set_index("patient_id")
    assert p.loc["A", "progression_date"] == "2024-04-04" and p.loc["A", "best_response"] == "PR"
    assert p.loc["B", "best_response"] == "SD" and p.loc["B", "next_therapy_date"] == "2024-04-20"
    assert len(r.responses[r.responses.patient_id == "B"]) == 2  # 2024-04-24 is after the next line: excluded


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_cli_imwg_contract(tmp_path, fmt):
    patients, labs, lines = _tables()
    paths = {}
    for name, frame in (("patients", patients), ("labs", labs), ("lines", lines)):
        paths[name] = tmp_path / f"{name}.{fmt}"
        frame.to_csv(paths[name], index=False) if fmt == "csv" else frame.to_excel(paths[name], index=False)
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["imwg", "--patients", str(paths["patients"]), "--assessments",
                                   str(paths["labs"]), "--therapies", str(paths["lines"]), "--out", str(out)])
    assert res.exit_code == 0, res.output
    responses = pd.read_csv(out / "responses.csv", keep_default_na=False)
    progression = pd.read_csv(out / "progression.csv", keep_default_na=False)
    assert list(responses.columns[:4]) == ["patient_id", "date", "response", "confirmed"]
    assert list(progression.columns[:5]) == ["patient_id", "best_response", "progression_date",
                                             "progression_confirmed", "refractory"]
    assert progression.set_index("patient_id").loc["A", "progression_date"] == "2024-04-04"
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["ruleset"] == "IMWG2016" and prov["parameters"]["refractory_window_days"] == 60
    assert prov["carpet_version"] and len(prov["inputs"]["patients"]["sha256"]) == 64


def test_cli_imwg_switches(tmp_path):
    patients, labs, _ = _tables()
    patients.to_csv(tmp_path / "p.csv", index=False)
    labs.to_csv(tmp_path / "l.csv", index=False)
    args = ["imwg", "--patients", str(tmp_path / "p.csv"), "--assessments", str(tmp_path / "l.csv")]
    res = CliRunner().invoke(app, args + ["--out", str(tmp_path / "o"), "--nadir-mode", "any",
                                          "--serum-measurable-min", "0.5"])
    assert res.exit_code == 0, res.output
    prov = json.loads((tmp_path / "o" / "provenance.json").read_text())
    assert prov["parameters"]["nadir_mode"] == "any" and prov["parameters"]["serum_measurable_min"] == 0.5
    res = CliRunner().invoke(app, args + ["--out", str(tmp_path / "o2"), "--nadir-mode", "lowest"])
    assert res.exit_code == 1 and "nadir_mode" in res.output


def test_cli_imwg_bad_table_exits_1(tmp_path):
    (tmp_path / "p.csv").write_text("patient_id,infusion_date,involved_light_chain\nA,2024-01-10,kappa\n")
    (tmp_path / "l.csv").write_text("patient_id,date,parameter,value,unit\nA,2024-01-05,serum_m_protein,3,g/ml\n"
                                    "Z,2024-01-05,serum_m_protein,3,g/dL\n")
    res = CliRunner().invoke(app, ["imwg", "--patients", str(tmp_path / "p.csv"), "--assessments",
                                   str(tmp_path / "l.csv"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1
    assert "row 2" in res.output and "g/ml" in res.output
    assert "row 3" in res.output and "unknown patient" in res.output


# ------------------------------------------------------------------------------------------------------------
# boundaries found unguarded by mutation (review)
# ------------------------------------------------------------------------------------------------------------
def test_non_measurable_urine_caps_serum_response_below_200():
    # serum disease with -60 % (PR level): the non-measurable urine must be < 200 mg/24 h for PR [spec §3.3]
    def at30(urine):
        return response(run([(-5, {"serum_m_protein": 2.0, "urine_m_protein": 150}),
                             (30, {"serum_m_protein": 0.8, "urine_m_protein": urine})]), 30)
    assert [at30(200 - EPS), at30(200), at30(200 + EPS)] == ["PR", "SD", "SD"]


def test_relapse_from_cr_marrow_boundary():
    cr = {"serum_m_protein": 0, "urine_m_protein": 0, "serum_ife": 0, "urine_ife": 0}

    def relapse(bmpc):
        r = run([(-5, {"serum_m_protein": 2.0, "urine_m_protein": 0}), (30, {**cr, "bm_plasma_cells": 1}),
                 (60, cr), (90, {**cr, "bm_plasma_cells": bmpc})])
        return prog(r)["relapse_from_cr_date"]
    # relapse from CR: >= 5 % marrow plasma cells (IMWG 2006 footnote) with M-protein and IFE still negative
    assert [relapse(5 - EPS), relapse(5), relapse(5 + EPS)] == ["", _day(90), _day(90)]


def test_baseline_on_the_infusion_day_counts():
    visits = [(0, {"serum_m_protein": 3.0}), (30, {"serum_m_protein": 1.0}), (60, {"serum_m_protein": 1.0})]
    r = run(visits)
    assert prog(r)["measurable_disease"] == "serum" and list(r.responses["response"]) == ["PR", "PR"]


def test_better_next_category_confirms():
    # PR confirmed by a following VGPR ("the same or a better category"); the VGPR itself is confirmed by the next
    r = run([(-5, {"serum_m_protein": 3.0, "urine_m_protein": 50}),
             (30, {"serum_m_protein": 1.2, "urine_m_protein": 50}),
             (60, {"serum_m_protein": 0.2, "urine_m_protein": 50}),
             (90, {"serum_m_protein": 0.2, "urine_m_protein": 50})])
    assert list(r.responses["response"]) == ["PR", "VGPR", "VGPR"]
    assert list(r.responses["confirmed"]) == [True, True, False]
    assert prog(r)["best_response"] == "VGPR"


def test_flc_ratio_lower_limit_inclusive():
    # lambda disease, lambda 10 mg/dL: kappa/lambda 0.26 is normal (not measurable FLC disease), below it abnormal
    def kind(kappa):
        return prog(run([(-5, {"kappa_flc": kappa, "lambda_flc": 10.0})], chain="lambda"))["measurable_disease"]
    assert [kind(2.6 - EPS * 10), kind(2.6), kind(2.6 + EPS * 10)] == ["flc", "none", "none"]


def test_patient_without_assessments_is_not_evaluable():
    r = assess_patient("P", "2024-01-10", pd.DataFrame({"date": [], "parameter": [], "value": []}), "kappa")
    assert (prog(r)["best_response"], prog(r)["progression_date"], len(r.responses)) == ("NE", "", 0)
