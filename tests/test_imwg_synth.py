"""The IMWG engine recovers every progression date and best response of a simulated cohort built to them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from carpet.scores.imwg import IMWGParams, assess_cohort
from carpet.synth.labs import progression_value, simulate_myeloma_labs


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


@pytest.mark.parametrize("kind, reference", [("serum", 0.3), ("serum", 1.0), ("serum", 4.9), ("serum", 7.0),
                                             ("urine", 150.0), ("urine", 3000.0), ("dflc", 2.0), ("dflc", 80.0)])
def test_progression_value_is_pd_from_every_lower_nadir(kind, reference):
    # brute force over nadirs 0..reference with the rules of spec §3.4 written out again
    value = progression_value(reference, kind, margin=1e-3)
    for nadir in np.linspace(0.0, reference, 101):
        rise = value - nadir
        if kind == "serum":
            ok = rise >= 1.0 if nadir >= 5 else (rise >= 0.25 * nadir and rise >= 0.5)
        elif kind == "urine":
            ok = rise >= 0.25 * nadir and rise >= 200
        else:
            ok = rise >= 0.25 * nadir and rise > 10
        assert ok, (kind, reference, nadir, value)
    # and just enough: without the margin the rise from the reference itself sits on the threshold
    smallest = max(0.25 * reference, {"serum": 0.5, "urine": 200, "dflc": 10}[kind])
    assert progression_value(reference, kind, margin=0.0) - reference == pytest.approx(smallest, rel=1e-12)
