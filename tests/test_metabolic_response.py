"""metCR (three rules) and Lugano 2014 with ΔSUVmax: boundaries at value−ε, value, value+ε."""

import pytest

from carpet.errors import InputError
from carpet.scores.metabolic_response import (delta_suv_max_pct, lugano_response,
                                              metabolic_complete_response)

EPS = 1e-9


@pytest.mark.parametrize("bm, lesions, expected", [
    (3, [3, 3], True), (3, [2, 4], False), (4, [1], False), (2, [], True), (3, [5, "X"], False),
    (1, ["X"], True),
])
def test_zamagni_ds3_boundary(bm, lesions, expected):
    r = metabolic_complete_response(bm, lesions)
    assert r.rule == "ZAMAGNI2021" and r.met_cr is expected
    assert r.provenance["metcr_rule"] == "ZAMAGNI2021"


@pytest.mark.parametrize("bm, lesions, mrd, expected", [
    (2, [2], True, True), (2, [3], True, False), (3, [1], True, False), (2, [2], False, False),
    (2, [2], None, None),
])
def test_imwg_imaging_is_stricter(bm, lesions, mrd, expected):
    r = metabolic_complete_response(bm, lesions, rule="IMWG2016_IMAGING", mrd_negative=mrd)
    assert r.met_cr is expected


def test_rules_disagree_on_ds3():
    # DS 3 everywhere: CMR by Zamagni and Lugano-style, not by the strict IMWG imaging reading.
    assert metabolic_complete_response(3, [3]).met_cr is True
    assert metabolic_complete_response(3, [3], rule="LUGANO_STYLE").met_cr is True
    assert metabolic_complete_response(3, [3], rule="IMWG2016_IMAGING", mrd_negative=True).met_cr is False


def test_lugano_style_new_lesion_and_not_evaluable():
    assert metabolic_complete_response(1, [1], rule="LUGANO_STYLE", new_lesions=True).met_cr is False
    r = metabolic_complete_response("NE", [2])
    assert r.met_cr is None and "not evaluable" in r.reason
    assert metabolic_complete_response(None, [2], include_marrow=False).met_cr is True
    with pytest.raises(InputError):
        metabolic_complete_response(2, [2], rule="PERCIST")


def test_delta_suv_max():
    assert delta_suv_max_pct(10.0, 4.0) == pytest.approx(-60.0)
    assert delta_suv_max_pct(8.0, 10.0) == pytest.approx(25.0)
    with pytest.raises(InputError):
        delta_suv_max_pct(0.0, 1.0)


@pytest.mark.parametrize("followup, expected", [
    (7.0 - EPS, "PMR"), (7.0, "PMR"), (7.0 + 1e-6, "NMR"),        # −30 %: decrease ≥ 30 % is PMR
    (13.0 - 1e-6, "NMR"), (13.0, "NMR"), (13.0 + 1e-6, "PMD"),    # +30 %: increase > 30 % is PMD
])
def test_lugano_delta_boundaries(followup, expected):
    r = lugano_response(10.0, followup, [4])
    assert r.category == expected
    assert r.delta_suv_max_pct == pytest.approx(100 * (followup - 10.0) / 10.0)


@pytest.mark.parametrize("scores, new, expected", [
    ([3, 2], False, "CMR"), ([4], False, "NMR"), ([1], True, "PMD"), (["NE"], False, "NE"),
])
def test_lugano_categories(scores, new, expected):
    assert lugano_response(10.0, 9.5, scores, new_lesions=new).category == expected


def test_lugano_threshold_is_a_parameter():
    assert lugano_response(10.0, 8.0, [5]).category == "NMR"
    assert lugano_response(10.0, 8.0, [5], significant_change_pct=20.0).category == "PMR"
    d = lugano_response(10.0, 8.0, [5]).to_dict()
    assert d["provenance"]["ruleset"] == "LUGANO2014" and d["delta_suv_max_pct"] == pytest.approx(-20.0)


def test_marrow_score_nan_or_numpy_and_new_lesion_with_unevaluable_score():
    import numpy as np

    # a marrow score read from a table arrives as NaN (missing) or a numpy integer
    assert metabolic_complete_response(float("nan"), [2]).met_cr is None
    assert metabolic_complete_response(np.int64(4), [2]).met_cr is False
    assert metabolic_complete_response(np.int64(3), [2]).met_cr is True
    # LUGANO_STYLE: a new lesion rules out CMR even when another score is not evaluable
    r = metabolic_complete_response("NE", [2], rule="LUGANO_STYLE", new_lesions=True)
    assert r.met_cr is False and "new lesion" in r.reason


def test_lugano_without_baseline_value():
    r = lugano_response(None, 6.0, [5])
    assert r.category == "NE" and r.delta_suv_max_pct is None and r.to_dict()["baseline_suv_max"] is None
    assert lugano_response(None, None, [3]).category == "CMR"
