"""Deauville proxy (spec §2.3): every threshold at value−ε, value, value+ε, and the switches."""

import pytest

from carpet.errors import InputError
from carpet.scores.deauville import DeauvilleParams, deauville_score, deauville_scores, study_deauville

EPS = 1e-6
MBP, LIVER, LIVER_MAX = 1.6, 2.0, 2.6


def ds(u, **kw):
    kw.setdefault("mbp", MBP)
    kw.setdefault("liver", LIVER)
    kw.setdefault("liver_max", LIVER_MAX)
    return deauville_score(u, **kw)


@pytest.mark.parametrize("u, expected", [
    (MBP - EPS, 2), (MBP, 2), (MBP + EPS, 3),                 # "<= mediastinum" → 2
    (LIVER - EPS, 3), (LIVER, 3), (LIVER + EPS, 4),           # "<= liver" → 3
    (2 * LIVER_MAX - EPS, 4), (2 * LIVER_MAX, 4), (2 * LIVER_MAX + EPS, 5),   # "> 2 × liver SUVmax" → 5
])
def test_default_boundaries(u, expected):
    assert ds(u) == expected


@pytest.mark.parametrize("u, expected", [(0.5 - EPS, 1), (0.5, 1), (0.5 + EPS, 2)])
def test_background_boundary(u, expected):
    assert ds(u, params=DeauvilleParams(background=0.5)) == expected


@pytest.mark.parametrize("u, expected", [(3 * LIVER_MAX - EPS, 4), (3 * LIVER_MAX, 4), (3 * LIVER_MAX + EPS, 5)])
def test_q3_switch(u, expected):
    p = DeauvilleParams(marked_factor=3.0)
    assert p.ruleset == "LUGANO_Q3"
    assert ds(u, params=p) == expected


@pytest.mark.parametrize("u, expected", [(2 * LIVER - EPS, 4), (2 * LIVER, 4), (2 * LIVER + EPS, 5)])
def test_marked_reference_liver_mean(u, expected):
    assert ds(u, params=DeauvilleParams(marked_ref="liver_suv_mean")) == expected


@pytest.mark.parametrize("u, expected", [(1.5 - EPS, 2), (1.5, 3), (1.5 + EPS, 4)])
def test_mbp_above_liver_compares_with_liver(u, expected):
    # Lugano (spec §2.2): if MBP >= liver, uptake < liver → 2, uptake = liver → 3.
    assert ds(u, mbp=1.8, liver=1.5) == expected


def test_new_lesions_and_not_evaluable():
    assert ds(0.1, is_new_lesion=True) == 5
    assert ds(0.1, is_new_lesion=True, lymphoma_related=False) == "X"
    assert ds(3.0, liver=None) == "NE"
    assert ds(3.0, mbp=float("nan")) == "NE"
    assert ds(3.0, liver_max=None) == "NE"                    # needed by the default marked_ref
    assert ds(3.0, liver_max=None, params=DeauvilleParams(marked_ref="liver_suv_mean")) == 4


def test_vectorised_and_study_level():
    assert deauville_scores([1.0, 1.8, 2.4, 9.0], mbp=MBP, liver=LIVER, liver_max=LIVER_MAX) == [2, 3, 4, 5]
    assert study_deauville([2, 4, "X"]) == 4
    assert study_deauville(["X"]) == 1
    assert study_deauville([]) == 1
    assert study_deauville([3, "NE"]) == "NE"


def test_params_validated():
    with pytest.raises(InputError):
        DeauvilleParams(marked_factor=1.5)
    with pytest.raises(InputError):
        DeauvilleParams(marked_ref="liver_peak")
    prov = DeauvilleParams().provenance()
    assert prov["ruleset"] == "LUGANO_Q2" and prov["marked_factor"] == 2.0 and "carpet_version" in prov


@pytest.mark.parametrize("mbp, u, expected", [
    (2.0, 2.0, 3), (2.0, 2.0 - EPS, 2),            # MBP == liver: the liver rule applies (= liver → 3)
    (2.0 - EPS, 2.0 - EPS, 2), (2.0 - EPS, 2.0 - EPS / 2, 3),   # MBP just below liver: the ordinary rule
])
def test_mbp_equal_to_liver_boundary(mbp, u, expected):
    assert ds(u, mbp=mbp, liver=2.0) == expected


def test_study_score_treats_missing_as_not_evaluable():
    assert study_deauville([3, None]) == "NE" and study_deauville([2, float("nan")]) == "NE"
