"""Cumulative incidence with Gray's test, RMST and median follow-up against R (``fixtures/r/competing.R`` wrote
``competing_cohort.csv`` and ``competing_r.json``): whole-month ties, missing groups, a group without one cause,
a group of one censored patient, one subject, everybody censored, tau beyond follow-up, a curve down to 0."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _r_reference import close
from carpet.errors import InputError
from carpet.stats import cuminc, fine_gray, followup, rmst

FIXTURES = Path(__file__).parent / "fixtures" / "r"
R = json.loads((FIXTURES / "competing_r.json").read_text())
REL = 1e-6


@pytest.fixture(scope="module")
def cohort():
    return pd.read_csv(FIXTURES / "competing_cohort.csv")


def test_cuminc_and_gray_test_match_cmprsk(cohort):
    res = cuminc(cohort["time"], cohort["status"], cohort["product"])
    assert res.n_dropped == 4
    at = res.at(R["cuminc/times"])
    est, var = [], []
    for row in R["cuminc/rows"]:
        group, cause = row.split(" ")
        sel = at[(at["group"] == group) & (at["cause"] == int(cause))]
        assert list(sel["time"]) == R["cuminc/times"]
        est += list(sel["estimate"])
        var += list(sel["variance"])
    close(est, R["cuminc/est"], rel=REL, abs_=1e-15)
    close(var, R["cuminc/var"], rel=REL, abs_=1e-15)
    g = res.gray_test
    assert list(g["cause"]) == [1, 2] and (g["df"] == 3).all()
    close(g["statistic"], R["cuminc/gray"], rel=REL)
    close(g["p_value"], R["cuminc/gray_p"], rel=REL)
    at12 = at[at["time"] == 12].set_index(["group", "cause"])
    order = [(r.split(" ")[0], int(r.split(" ")[1])) for r in R["cuminc/rows"]]
    bounds = np.sort(at12.loc[order, ["lower", "upper"]].to_numpy(), axis=1)
    ref = np.sort(np.reshape(np.array(R["cuminc/ci12"], dtype=float), (2, -1)).T, axis=1)  # None -> NaN
    close(bounds.ravel(), ref.ravel(), rel=REL)


def test_cuminc_without_groups_with_strata_and_rho(cohort):
    res = cuminc(cohort["time"], cohort["status"])
    assert res.gray_test is None
    at = res.at(R["cuminc/times"])
    close(at["estimate"], R["cuminc1/est"], rel=REL, abs_=1e-15)
    close(at["variance"], R["cuminc1/var"], rel=REL, abs_=1e-15)
    dd = cohort[cohort["product"].isin(["A", "B"])]
    site = np.where(dd["id"] % 2 == 0, "x", "y")
    close(cuminc(dd["time"], dd["status"], dd["product"], strata=site).gray_test["statistic"],
          R["cuminc_strata/gray"], rel=REL)
    close(cuminc(dd["time"], dd["status"], dd["product"], rho=1).gray_test["statistic"], R["cuminc_rho1/gray"],
          rel=REL)


def test_cuminc_edges():
    one = cuminc([5], [1]).at([4, 5])
    close(list(one["estimate"]) + list(one["variance"]), R["cuminc_one"])
    # cmprsk fails with "NAs in foreign function call" when nobody has an event; carpet says why
    assert "NAs" in R["cuminc_censored/error"]
    with pytest.raises(InputError, match="no events"):
        cuminc([1, 2, 3], [0, 0, 0])


@pytest.mark.parametrize("tau", [24, 40])
def test_rmst_matches_survfit_rmean(cohort, tau):
    d = cohort.assign(event=(cohort["status"] > 0).astype(int))
    two = d[d["product"].isin(["A", "B"])]
    res = rmst(two["time"], two["event"], tau, group=two["product"])
    close(res.table["rmst"], R[f"rmst/{tau}/rmean"], rel=REL)
    close(res.table["se"], R[f"rmst/{tau}/se"], rel=REL)
    diff = res.difference.iloc[0]
    close(diff[["difference", "se", "lower", "upper", "p_value"]].to_numpy(float), R[f"rmst/{tau}/diff"], rel=REL)
    whole = rmst(d["time"], d["event"], tau).table.iloc[0]
    close([whole["rmst"], whole["se"]], R[f"rmst/{tau}/all"], rel=REL)


def test_rmst_edges():
    r = rmst([1, 2, 3], [0, 0, 0], 2.5).table.iloc[0]
    close([r["rmst"], r["se"]], R["rmst_censored"], rel=REL)
    r = rmst([5], [1], 8).table.iloc[0]
    close([r["rmst"], r["se"]], R["rmst_one"], rel=REL)
    r = rmst([1, 2, 2, 4], [1, 1, 0, 1], 6).table.iloc[0]
    close([r["rmst"], r["se"]], R["rmst_zero"], rel=REL)
    with pytest.raises(InputError, match="tau"):
        rmst([1, 2], [1, 0], 0)


def test_followup_reverse_km(cohort):
    f = followup(cohort["time"], (cohort["status"] > 0).astype(int))
    close([f.median, *f.median_ci], R["followup"], rel=REL)


@pytest.mark.parametrize("failcode", [1, 2])
def test_fine_gray_matches_crr(cohort, failcode):
    fg = cohort[cohort["product"].notna() & (cohort["product"] != "D")].copy()
    fg["score"] = ((fg["id"] * 37) % 101) / 10
    fg["productB"] = (fg["product"] == "B").astype(int)
    fg["productC"] = (fg["product"] == "C").astype(int)
    fit = fine_gray(fg, "time", "status", ["productB", "productC", "score"], failcode=failcode)
    close(fit.params, R[f"crr/{failcode}/coef"], rel=REL)
    close(fit.se, R[f"crr/{failcode}/se"], rel=REL)   # cmprsk's robust (sandwich) variance
    close(fit.loglik, R[f"crr/{failcode}/loglik"], rel=REL)
    # failcode 2: product C has no non-relapse deaths, its coefficient runs off and crr stops unconverged
    assert fit.converged == bool(R[f"crr/{failcode}/converged"])
    assert fit.warnings == ([] if fit.converged else ["crr: did not converge"])
    # a categorical column gives the same fit as its dummies
    same = fine_gray(fg, "time", "status", ["product", "score"], failcode=failcode)
    close(same.params, fit.params, rel=1e-12)
    one = fine_gray(fg, "time", "status", ["score"])
    close([one.params.iloc[0], one.se.iloc[0]], [R["crr1cov/coef"], R["crr1cov/se"]], rel=REL)
