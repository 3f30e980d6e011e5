"""Therapy lines after CAR T: classes by drug name, T-cell-engaging flag, response, time to next treatment."""

from __future__ import annotations

import pandas as pd
import pytest

from carpet.cohort.schema import read_patients, read_therapies
from carpet.cohort.therapy import classify_regimen, first_line_summary, lines_after_car_t


@pytest.mark.parametrize("regimen, trial, expected", [
    ("Teclistamab", False, "bcma_bispecific"),
    ("teclistamab + daratumumab", False, "bcma_bispecific"),   # bispecific wins over the partner drug
    ("Talquetamab", False, "gprc5d_bispecific"),
    ("cevostamab", False, "fcrh5_bispecific"),
    ("cilta-cel", False, "car_t"),
    ("belantamab mafodotin", False, "other_bcma"),
    ("KPd", False, "conventional_combination"),
    ("carfilzomib, pomalidomide, dexamethasone", False, "conventional_combination"),
    ("Hospice", False, "hospice"),
    ("XYZ-123", True, "clinical_trial"),
    ("talquetamab", True, "gprc5d_bispecific"),                # mechanism kept; trial flag is its own column
    ("XYZ-123", False, "unclassified"),
    (None, False, "unknown"),
    ("", False, "unknown"),
    ("Kd-Pace", False, "conventional_combination"),
    # short forms as clinicians write them (Van Oekelen et al., Blood 2022 tables; Moffitt Table 3)
    ("Dara-Pom-dex", False, "conventional_combination"),
    ("Tec-Dara", False, "bcma_bispecific"),
    ("Talq", False, "gprc5d_bispecific"),
    ("Elra", False, "bcma_bispecific"),
    ("Carvykti", False, "car_t"),
    ("Isa-Pd", False, "conventional_combination"),
    ("Cy-Bor-D", False, "conventional_combination"),
    ("Sel-Pom-dex", False, "conventional_combination"),
    ("Belamaf", False, "other_bcma"),
    ("Cevo", False, "fcrh5_bispecific"),
    ("Tecvayli + Talvey", False, "bcma_bispecific"),
    ("dexter", False, "unclassified"),                       # whole words only: 'dex' is not in 'dexter'
])
def test_classify_regimen(regimen, trial, expected):
    assert classify_regimen(regimen, trial) == expected


def _tables():
    patients = read_patients(pd.DataFrame({
        "patient_id": ["A", "B"], "infusion_date": ["2024-01-10", "2024-02-01"],
        "death_date": ["2024-12-01", None], "last_followup_date": [None, "2025-01-31"]}), name="patients")
    therapies = read_therapies(pd.DataFrame({
        "patient_id": ["A", "A", "A", "A", "B"], "line": [6, 7, 8, 9, 5],
        "start_date": ["2024-01-10", "2024-05-01", "2024-08-01", "2024-10-01", "2024-02-01"],
        "regimen": ["ide-cel", "teclistamab", "KPd", None, "cilta-cel"],
        "regimen_class": [None, None, None, "hospice", None],
        "best_response": [None, "VGPR", "SD", None, None]}), name="therapies")
    return patients, therapies


def test_lines_after_car_t():
    patients, therapies = _tables()
    prog = pd.DataFrame({"patient_id": ["A", "B"], "progression_date": ["2024-04-20", ""]})
    lines = lines_after_car_t(therapies, patients, prog)
    assert list(lines["patient_id"]) == ["A", "A", "A"]          # the CAR T lines themselves are not after infusion
    assert list(lines["salvage_line"]) == [1, 2, 3]
    assert list(lines["regimen_class"]) == ["bcma_bispecific", "conventional_combination", "hospice"]
    assert list(lines["t_cell_engaging"]) == [True, False, False]
    assert list(lines["responded"]) == [True, False, None]
    # TTNT: 2024-05-01 -> 2024-08-01 = 92 d; 2024-08-01 -> 2024-10-01 = 61 d; last line -> death 2024-12-01 = 61 d
    assert list(lines["ttnt_days"]) == [92, 61, 61] and list(lines["ttnt_event"]) == [1.0, 1.0, 1.0]
    assert lines["after_progression"].all()


def test_first_line_summary():
    patients, therapies = _tables()
    extra = read_therapies(pd.DataFrame({"patient_id": ["B", "B"], "line": [6, 7],
                                         "start_date": ["2024-06-01", "2024-09-01"],
                                         "regimen": ["talquetamab", "KPd"], "best_response": ["PR", None]}))
    lines = lines_after_car_t(pd.concat([therapies, extra], ignore_index=True), patients)
    summary = first_line_summary(lines).set_index("regimen_class")
    assert summary.loc["bcma_bispecific", "n"] == 1 and summary.loc["gprc5d_bispecific", "n"] == 1
    assert summary.loc["bcma_bispecific", "percent"] == 50.0
    assert summary.loc["gprc5d_bispecific", "response_rate_percent"] == 100.0
    # B's last line has no death and follow-up 2025-01-31: censored at 152 days
    b_last = lines[(lines.patient_id == "B") & (lines.salvage_line == 2)].iloc[0]
    assert (b_last["ttnt_days"], b_last["ttnt_event"]) == (152, 0.0)


def test_no_lines_after_car_t():
    patients, _ = _tables()
    empty = read_therapies(pd.DataFrame(columns=["patient_id", "line", "start_date"]), name="therapies")
    lines = lines_after_car_t(empty, patients, pd.DataFrame({"patient_id": ["A"], "progression_date": [""]}))
    assert len(lines) == 0 and {"salvage_line", "regimen_class", "ttnt_days"} <= set(lines.columns)
    assert len(first_line_summary(lines)) == 0
