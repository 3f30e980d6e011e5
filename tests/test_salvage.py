"""The salvage study (Blood 2022) from raw tables: the simulated cohort, the derivations against the simulator's
own answers, and the plan's analyses (lines, responses with exact CIs, landmark without immortal time)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.stats import binomtest

from carpet.analyze import run_analysis
from carpet.analyze.clinical import load_clinical, responded
from carpet.analyze.cohort_runners import exposure_intervals
from carpet.cohort.therapy import T_CELL_ENGAGING, classify_regimen
from carpet.stats import kaplan_meier
from carpet.stats.landmark import landmark
from carpet.synth.cohort import simulate_cohort

PLANS = Path(__file__).resolve().parents[1] / "src" / "carpet" / "plans"


@pytest.fixture(scope="module")
def cohort():
    return simulate_cohort("salvage_post_bcma", seed=4)


@pytest.fixture(scope="module")
def tables(cohort):
    return load_clinical(cohort.raw_patients, cohort.lab_series(), cohort.therapies)


def test_cohort_is_shaped_like_the_paper():
    """Pooled over seeds: 79 patients, about 237 courses, first salvage ORR 43%, OS from relapse ~18 months."""
    courses, orr, medians = [], [], []
    for seed in range(12):
        p = simulate_cohort("salvage_post_bcma", seed=seed).patients
        assert len(p) == 79
        courses.append(p["n_salvage_lines"].sum())
        orr.append(p["first_salvage_responded"].mean())
        medians.append(kaplan_meier(p["os_relapse_months"], p["os_relapse_event"]).median)
    assert 200 < np.mean(courses) < 270
    assert abs(np.mean(orr) - 0.43) < 0.05
    assert 14 < np.median(medians) < 23


def test_raw_tables_hold_no_answers(cohort):
    raw = cohort.raw_patients
    for column in ("progression_date", "os_relapse_months", "first_salvage_class", "ever_tce", "refractory"):
        assert column not in raw
    assert "regimen_class" not in cohort.therapies  # a centre writes the regimen; carpet classes it
    assert set(cohort.therapies["regimen"].map(classify_regimen)) <= {
        "car_t", "bcma_bispecific", "gprc5d_bispecific", "fcrh5_bispecific", "other_bcma", "clinical_trial",
        "conventional_combination"}


def test_derivations_equal_the_simulated_truth(cohort, tables):
    truth = cohort.patients.set_index("patient_id")
    prog = tables.progression.set_index("patient_id")["progression_date"].reindex(truth.index)
    assert (prog == truth["progression_date"]).all()  # IMWG engine on the labs finds every relapse date
    os_ = tables.endpoint("os_from_progression").set_index("patient_id").reindex(truth.index)
    assert np.allclose(os_["time_months"], truth["os_relapse_months"]) and (os_["event"] == truth["os_relapse_event"]).all()
    lines = tables.lines[tables.lines["after_progression"]]
    assert (lines.groupby("patient_id").size().reindex(truth.index, fill_value=0) == truth["n_salvage_lines"]).all()
    first = tables.first_line_after("progression").reindex(truth.index)
    has = truth["n_salvage_lines"] > 0
    assert (first[has] == truth.loc[has, "first_salvage_class"]).all()
    got = responded(tables.first_line_after("progression", "response").reindex(truth.index))
    assert (got[has].astype(bool) == truth.loc[has, "first_salvage_responded"].astype(bool)).all()
    ever = tables.exposed_by(["t_cell_engaging"], 1200).reindex(truth.index)
    assert (ever.astype(bool) == truth["ever_tce"]).all()


def test_exposure_at_the_landmark_counts_only_lines_started_by_then(tables):
    lines = tables.lines
    prog = tables.progression.set_index("patient_id")["progression_date"]
    days = (lines["start_date"] - lines["patient_id"].map(prog)).dt.days
    by_hand = set(lines.loc[lines["regimen_class"].isin(T_CELL_ENGAGING) & (days >= 0)
                            & (days <= 3 * 365.25 / 12), "patient_id"])
    got = tables.exposed_by(["t_cell_engaging"], 3)
    assert set(got[got.astype(bool)].index) == by_hand


@pytest.mark.slow
def test_plan_lines_responses_and_landmark(cohort, tmp_path):
    plan = yaml.safe_load((PLANS / "salvage_after_bcma.yaml").read_text())
    plan["analyses"] = [a for a in plan["analyses"] if a["type"] in ("lines", "landmark", "proportion")]
    result = run_analysis(cohort.raw_patients, plan, tmp_path, assessments=cohort.lab_series(),
                          therapies=cohort.therapies)
    truth = cohort.patients
    lines = result.results["lines"]
    assert lines["per_patient"]["courses"] == truth["n_salvage_lines"].sum()
    assert lines["per_patient"]["median_lines"] == truth["n_salvage_lines"].median()
    overall = lines["first_line_response"][0]
    k, n = int(truth["first_salvage_responded"].sum()), int(truth["first_salvage_responded"].notna().sum())
    ci = binomtest(k, n).proportion_ci(method="exact")  # R binom.test's Clopper-Pearson interval
    assert (overall["responded"], overall["n"]) == (k, n)
    assert overall["ci_lower"] == pytest.approx(100 * ci.low) and overall["ci_upper"] == pytest.approx(100 * ci.high)
    # the landmark compares only patients alive at 3 months, by exposure fixed at 3 months, from 3 months on;
    # exposure recomputed here from the therapies as written (regimen names) and the simulated relapse dates
    th = cohort.therapies.assign(cls=cohort.therapies["regimen"].map(classify_regimen))
    days = (th["start_date"] - th["patient_id"].map(truth.set_index("patient_id")["progression_date"])).dt.days
    exposed = set(th.loc[th["cls"].isin(T_CELL_ENGAGING) & (days >= 0) & (days <= 3 * 365.25 / 12), "patient_id"])
    frame = truth.assign(tce=truth["patient_id"].isin(exposed))
    direct = landmark(frame, "os_relapse_months", "os_relapse_event", landmark_time=3.0, group="tce")
    lm = result.results["landmark_os_relapse_tce_3m"]
    assert lm["logrank"]["statistic"] == pytest.approx(direct.logrank.statistic)
    assert sum(r["n_at_risk"] for r in lm["at_risk"]) == int((truth["os_relapse_months"] > 3).sum())


def test_exposure_intervals_split_at_the_exposure_start():
    t = pd.Series([10.0, 4.0, 6.0, 5.0], index=["a", "b", "c", "d"])
    e = pd.Series([1, 0, 1, 1], index=t.index)
    s = pd.Series([3.0, np.nan, 7.0, 0.0], index=t.index)  # c: exposure after its end of follow-up; d: at 0
    rows = exposure_intervals(t, e, s)
    assert rows.values.tolist() == [["a", 0.0, 3.0, 0, 0], ["a", 3.0, 10.0, 1, 1], ["b", 0.0, 4.0, 0, 0],
                                    ["c", 0.0, 6.0, 1, 0], ["d", 0.0, 5.0, 1, 1]]


def test_time_dependent_tce_exposure_equals_a_hand_built_counting_process_fit(cohort, tables, tmp_path):
    from carpet.stats import cox

    plan = {"title": "t", "endpoints": {"os_relapse": {"derive": "os_from_progression"}},
            "analyses": [{"type": "exposure_cox", "endpoint": "os_relapse", "classes": "t_cell_engaging"}]}
    res = run_analysis(cohort.raw_patients, plan, tmp_path, assessments=cohort.lab_series(),
                       therapies=cohort.therapies).results["exposure_cox_os_relapse"]["summary"]
    truth = cohort.patients.set_index("patient_id")
    th = cohort.therapies.assign(cls=cohort.therapies["regimen"].map(classify_regimen))
    th = th[th["cls"].isin(T_CELL_ENGAGING)]
    days = (th["start_date"] - th["patient_id"].map(truth["progression_date"])).dt.days
    first = (days[days >= 0].groupby(th["patient_id"]).min() / (365.25 / 12)).reindex(truth.index)
    rows = []  # built here from the simulated answers, not with carpet's exposure_intervals
    for pid, r in truth.iterrows():
        s, t, e = first[pid], r["os_relapse_months"], r["os_relapse_event"]
        rows += ([(0.0, s, 0, 0), (s, t, e, 1)] if s == s and 0 < s < t else
                 [(0.0, t, e, 1 if s == 0 else 0)])
    cp = pd.DataFrame(rows, columns=["start", "stop", "event", "exposed"])
    fit = cox(cp, duration="stop", event="event", covariates=["exposed"], start="start")
    assert res["hr"] == pytest.approx(fit.summary.loc["exposed", "hr"])
    assert res["n_exposed"] == int(first.lt(truth["os_relapse_months"]).sum())


def test_response_at_a_landmark_includes_that_day_and_progression_before_it_is_pd():
    from carpet.analyze.clinical import ClinicalTables

    patients = pd.DataFrame({"patient_id": ["a", "b"], "infusion_date": pd.to_datetime(["2024-01-01"] * 2)})
    responses = pd.DataFrame({"patient_id": ["a", "a", "a", "b"], "response": ["PR", "VGPR", "CR", "PR"],
                              "confirmed": [True, True, True, True],
                              "date": ["2024-01-31", "2024-03-01", "2024-03-31", "2024-01-31"]})  # a: CR on day 90
    progression = pd.DataFrame({"patient_id": ["a", "b"],
                                "progression_date": pd.to_datetime([None, "2024-03-20"])})   # b: PD on day 79
    tables = ClinicalTables(patients, progression=progression, responses=responses)
    assert tables.response_at(90).to_dict() == {"a": "CR", "b": "PD"}
    assert tables.response_at(89).to_dict() == {"a": "VGPR", "b": "PD"}
    assert tables.response_at(78).to_dict() == {"a": "VGPR", "b": "PR"}
