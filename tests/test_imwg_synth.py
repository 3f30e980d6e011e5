"""The IMWG engine recovers every progression date and best response of a simulated cohort built to them."""

from __future__ import annotations

import pandas as pd
import pytest

from carpet.scores.imwg import IMWGParams, assess_cohort
from carpet.synth.labs import simulate_myeloma_labs


@pytest.fixture(scope="module")
def cohort():
    return simulate_myeloma_labs(200, seed=7)


def test_simulation_is_deterministic_and_covers_the_cases(cohort):
    again = simulate_myeloma_labs(200, seed=7)
    for a, b in zip(cohort, again):
        pd.testing.assert_frame_equal(a, b)
    truth = cohort[3]
    assert set(truth["best_response"]) >= {"sCR", "CR", "VGPR", "PR", "MR", "SD", "PD"}
    assert set(truth["disease_type"]) == {"serum", "urine", "flc"}
    assert truth["refractory"].any() and (truth["progression_date"] == "").any()
    assert {"g/L", "mg/L"} <= set(cohort[1]["unit"])  # unit conversion is exercised


@pytest.mark.parametrize("nadir_mode", ["confirmed", "any"])
def test_engine_recovers_truth(cohort, nadir_mode):
    patients, labs, lines, truth = cohort
    result = assess_cohort(patients, labs, lines, IMWGParams(nadir_mode=nadir_mode))
    got = truth.merge(result.progression, on="patient_id", suffixes=("_true", ""))
    assert len(got) == len(truth) == 200
    for col in ("best_response", "progression_date", "refractory"):
        wrong = got[got[f"{col}_true"] != got[col]]
        assert wrong.empty, wrong[["patient_id", "scenario", f"{col}_true", col]].to_string()
