"""carpet.stats at the edges (a curve down to S = 0, one subject, no events, unused factor levels, ties at a
fixed cut-off, cox.zph's other time transforms, the exact/approximate Mann–Whitney boundary) against R's answers
in ``fixtures/r/edge_cases_r.json`` (made by ``edge_cases.R``), and the refusals where R has no answer either."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _r_reference import close
from carpet.errors import InputError
from carpet.stats import cox, cutpoint, evaluate_cutoff, kaplan_meier, logrank

FIXTURES = Path(__file__).parent / "fixtures" / "r"
R = json.loads((FIXTURES / "edge_cases_r.json").read_text())


@pytest.mark.filterwarnings("error")  # S = 0 gave "invalid value in multiply" (0 * inf) before
@pytest.mark.parametrize("conf_type", ["log", "log-log", "plain"])
def test_kaplan_meier_down_to_zero(conf_type):
    km = kaplan_meier([1, 2, 3], [1, 1, 1], conf_type=conf_type)
    key = f"km_to_zero/{conf_type}"
    at = km.survival_at(R["km_to_zero/times"])
    for col in ("surv", "std_err", "lower", "upper", "n_risk"):
        close(at[col], R[f"{key}/{col}"], rel=1e-9)
    q = km.quantile(0.5)
    close([q.estimate, q.lower, q.upper], R[f"{key}/median"])
    assert np.isnan(km.table["std_err"].iloc[-1])


@pytest.mark.filterwarnings("error")
def test_kaplan_meier_one_subject_and_all_censored():
    one = kaplan_meier([5], [1])
    at = one.survival_at([0, 5, 6])
    close(at["surv"], R["km_one/surv"])
    close(at["std_err"], R["km_one/std_err"])
    close(at["n_risk"], R["km_one/n_risk"])
    close([one.median, *one.median_ci], R["km_one/median"])
    censored = kaplan_meier([1, 2, 3], [0, 0, 0])
    close([censored.median, *censored.median_ci], R["km_censored/median"])
    close(censored.survival_at([2]).iloc[0][["surv", "std_err", "lower", "upper", "n_risk"]].to_numpy(float),
          R["km_censored/at2"])


def test_quantile_ci_on_a_non_monotone_band_matches_r():
    km = kaplan_meier([13, 2, 2, 10, 3, 12, 1, 14, 4, 5, 6, 1, 8, 6, 12, 9],
                      [1, 1, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1])
    assert km.upper[-2] > km.upper[-3]  # the band rises again at t = 13
    qs = [km.quantile(p) for p in (0.25, 0.5, 0.75)]
    for part in ("quantile", "lower", "upper"):
        close([q.estimate if part == "quantile" else getattr(q, part) for q in qs], R[f"km_nonmonotone/{part}"])


def test_cox_leaves_out_factor_levels_no_row_has():
    d = pd.DataFrame({"time": np.arange(1, 7), "event": [1, 1, 0, 1, 0, 1],
                      "g": pd.Categorical(list("abbaba"), categories=["a", "b", "c"])})
    fit = cox(d, covariates=["g"])
    assert list(fit.summary.index) == ["gb"]  # R: gc is NA
    close(fit.summary.loc["gb", "coef"], R["cox_unused_level/coef_gb"], abs_=1e-5)
    close(fit.summary.loc["gb", "se"], R["cox_unused_level/se_gb"], rel=1e-4)
    # the same when the unused level is the first one: the reference becomes the first level in use
    shifted = d.assign(g=pd.Categorical(d["g"].map({"a": "b", "b": "c"}), categories=["a", "b", "c"]))
    assert list(cox(shifted, covariates=["g"]).summary.index) == ["gc"]


def test_no_events_is_refused_with_its_reason():
    d = pd.DataFrame({"time": np.arange(1.0, 21), "event": 0, "x": np.arange(20.0)})
    with pytest.raises(InputError, match="no events among the 20 rows"):
        cox(d, covariates=["x"])
    with pytest.raises(InputError, match="no events among the 20 subjects"):
        cutpoint(d["time"], d["event"], d["x"])
    with pytest.raises(InputError, match="no events"):
        evaluate_cutoff(d["time"], d["event"], d["x"], 10, marker_method="a", cutoff_method="a")


def test_logrank_without_events_has_no_p_value():
    # R: "Chisq= 0 on -1 degrees of freedom, p= NA"; carpet reports chisq 0 on 0 df and p NaN, not p = 1
    lr = logrank([1, 2, 3, 4], [0, 0, 0, 0], [1, 1, 2, 2])
    assert (lr.statistic, lr.df) == (0.0, 0) and np.isnan(lr.p_value)
    import matplotlib.pyplot as plt

    from carpet.report.km_plot import km_figure

    fig, _ = km_figure({"a": ([1, 2], [0, 0]), "b": ([3, 4], [0, 0])})
    assert "log-rank p = NA" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    plt.close(fig)


def test_logrank_without_a_comparison_is_refused():
    # each stratum holds one group: R's survdiff stops on a singular variance as well
    with pytest.raises(InputError, match="cannot be compared"):
        logrank([1, 2, 3, 4], [1, 1, 1, 1], ["a", "a", "b", "b"], strata=[1, 1, 2, 2])


def test_fixed_cutoff_with_ties_at_the_cutoff_matches_r():
    tc = pd.read_csv(FIXTURES / "tied_cohort.csv")
    assert (tc["mtv"] == 54).sum() == R["cutoff54/n_at_cutoff"] > 0  # subjects exactly at the cut-off are "low"
    ev = evaluate_cutoff(tc["time"], tc["event"], tc["mtv"], 54, marker_method="suv4", cutoff_method="suv4")
    assert ev.n_high == R["cutoff54/n_high"] and ev.n_low == len(tc) - R["cutoff54/n_high"]
    close(ev.logrank.statistic, R["cutoff54/logrank_chisq"], rel=1e-6)
    close(ev.hr, R["cutoff54/hr"], rel=1e-5)
    close([ev.hr_lower, ev.hr_upper], R["cutoff54/hr_ci"], rel=1e-4)
    close(ev.concordance, R["cutoff54/concordance"], abs_=1e-6)
    ev90 = evaluate_cutoff(tc["time"], tc["event"], tc["mtv"], 54, marker_method="suv4", cutoff_method="suv4",
                           conf_level=0.90)
    close([ev90.hr_lower, ev90.hr_upper], R["cutoff54/hr_ci90"], rel=1e-4)


@pytest.mark.parametrize("sizes, exact", [("12_15", True), ("49_30", True), ("50_30", False), ("ties_10_12", False)])
def test_mann_whitney_exact_below_50_per_group_like_r(sizes, exact):
    from carpet.stats.table1 import wilcox_test

    key = f"wilcox/{sizes}"
    res = wilcox_test(np.array(R[f"{key}/x"]), np.array(R[f"{key}/y"]))
    assert res.test == ("Mann-Whitney (exact)" if exact else "Mann-Whitney")
    assert res.statistic == R[f"{key}/W"]
    close(res.p_value, R[f"{key}/p"], rel=1e-6)


@pytest.mark.parametrize("transform", ["identity", "log"])
def test_cox_zph_other_time_transforms_match_r(transform):
    tc = pd.read_csv(FIXTURES / "tied_cohort.csv")
    fit = cox(tc, covariates=["group", "mtv", "age"])
    close(fit.zph(transform=transform)["chisq"], R[f"zph/{transform}/chisq"], abs_=1e-4)


def test_permutation_p_value_counts_the_data_itself():
    # Phipson & Smyth (2010): p = (1 + #{M* >= M}) / (1 + n_perm), never 0. Here no permutation of 40
    # subjects reaches the perfect separation, so p is exactly 1 / (1 + n_perm).
    time = np.r_[np.arange(1.0, 21), np.arange(101.0, 121)]
    cp = cutpoint(time, np.ones(40), -time, n_perm=19, seed=1)
    assert cp.p_value_perm == 1 / 20
