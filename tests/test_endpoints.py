"""Endpoint event tables: PFS, OS, PFS2, OS from progression, with their censoring rules."""

from __future__ import annotations

import pandas as pd
import pytest

from carpet.cohort.endpoints import DAYS_PER_MONTH, os_from_progression, overall_survival, pfs, pfs2
from carpet.cohort.schema import read_patients, read_therapies
from carpet.errors import InputError


def _patients(**override):
    data = {"patient_id": ["A", "B", "C", "D"],
            "infusion_date": ["2024-01-01"] * 4,
            "death_date": ["2024-07-19", None, "2024-03-01", None],
            "last_followup_date": [None, "2024-12-31", None, None]}
    data.update(override)
    return read_patients(pd.DataFrame(data), name="patients")


PROG = pd.DataFrame({"patient_id": ["A", "B", "C", "D"],
                     "progression_date": ["2024-04-10", "2024-06-01", "", ""]})


def _row(table, pid):
    return table.set_index("patient_id").loc[pid]


def test_pfs_and_os_from_infusion():
    t = pfs(_patients(), PROG)
    # A: progression day 100; B: progression day 152; C: death day 60; D: nothing known -> NaN, never 0
    assert (_row(t, "A")["time_days"], _row(t, "A")["event"], _row(t, "A")["end_reason"]) == (100, 1.0, "progression")
    assert (_row(t, "B")["time_days"], _row(t, "B")["event"]) == (152, 1.0)
    assert (_row(t, "C")["time_days"], _row(t, "C")["end_reason"]) == (60, "death")
    assert pd.isna(_row(t, "D")["time_days"]) and pd.isna(_row(t, "D")["event"])
    assert _row(t, "D")["end_reason"] == "no_follow_up"
    assert _row(t, "A")["time_months"] == pytest.approx(100 / 30.4375)
    o = overall_survival(_patients())
    assert (_row(o, "A")["time_days"], _row(o, "A")["event"]) == (200, 1.0)
    assert (_row(o, "B")["time_days"], _row(o, "B")["event"], _row(o, "B")["end_reason"]) == \
        (365, 0.0, "censored_last_followup")
    assert DAYS_PER_MONTH == 30.4375


def test_pfs2_and_os_from_progression():
    lines = read_therapies(pd.DataFrame({
        "patient_id": ["A", "A", "B"], "line": [2, 3, 2],
        "start_date": ["2024-04-20", "2024-06-01", "2024-06-10"],
        "progression_date": ["2024-05-25", None, None]}), name="therapies")
    t = pfs2(_patients(), PROG, lines)
    assert list(t["patient_id"]) == ["A", "B"]  # only patients who progressed after CAR T
    assert (_row(t, "A")["time_days"], _row(t, "A")["end_reason"]) == (45, "progression_on_next_line")
    assert (_row(t, "B")["time_days"], _row(t, "B")["event"]) == (213, 0.0)   # censored 2024-12-31
    lines_no_prog = lines.assign(progression_date=pd.NaT)
    t = pfs2(_patients(), PROG, lines_no_prog)
    assert (_row(t, "A")["time_days"], _row(t, "A")["end_reason"]) == (100, "death")
    t = pfs2(_patients(), PROG, lines_no_prog, death_is_event=False)
    assert _row(t, "A")["end_reason"] == "no_follow_up" and pd.isna(_row(t, "A")["event"])
    o = os_from_progression(_patients(), PROG)
    assert (_row(o, "A")["time_days"], _row(o, "A")["event"]) == (100, 1.0)
    assert (_row(o, "B")["time_days"], _row(o, "B")["event"]) == (213, 0.0)


def test_end_before_start_is_an_error():
    prog = PROG.assign(progression_date=["2024-04-10", "2024-06-01", "2024-04-01", ""])  # C died 2024-03-01
    with pytest.raises(InputError, match="C"):
        os_from_progression(_patients(), prog)


def test_progression_and_death_on_the_same_day_is_progression():
    prog = PROG.assign(progression_date=["2024-07-19", "2024-06-01", "", ""])  # A dies the same day
    assert _row(pfs(_patients(), prog), "A")["end_reason"] == "progression"


def test_pfs2_line_started_on_the_progression_day():
    lines = read_therapies(pd.DataFrame({"patient_id": ["A"], "line": [2], "start_date": ["2024-04-10"],
                                         "progression_date": ["2024-05-10"]}), name="therapies")
    t = pfs2(_patients(), PROG, lines)
    assert (_row(t, "A")["time_days"], _row(t, "A")["end_reason"]) == (30, "progression_on_next_line")


def test_pfs2_without_line_progression_column_is_an_error():
    lines = read_therapies(pd.DataFrame({"patient_id": ["A"], "line": [2], "start_date": ["2024-04-20"]}),
                           name="therapies")
    with pytest.raises(InputError, match="progression_date"):
        pfs2(_patients(), PROG, lines)
