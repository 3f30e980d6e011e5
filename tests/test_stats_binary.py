"""Proportions, odds ratios, logistic regression, ROC/DeLong and the C-index CI against R (``fixtures/r/binary.R``
wrote ``binary_cohort.csv`` and ``binary_r.json``): a cohort with ties and missing values, and the edges (k = 0,
k = n, one trial, a zero cell, separation, a perfect / constant marker, a single case)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _r_reference import close
from carpet.errors import InputError
from carpet.stats import logistic, odds_ratio, proportion, roc, roc_test
from carpet.stats.models import compare_models

FIXTURES = Path(__file__).parent / "fixtures" / "r"
R = json.loads((FIXTURES / "binary_r.json").read_text())
REL = 1e-6


@pytest.fixture(scope="module")
def cohort():
    d = pd.read_csv(FIXTURES / "binary_cohort.csv")
    d["log_mtv"] = np.log(d["mtv"])
    d["stage"] = pd.Categorical(d["stage"], categories=["I", "II", "III"])
    return d


@pytest.mark.parametrize("k, n", [(7, 23), (0, 10), (10, 10), (1, 1), (41, 157)])
def test_proportion_matches_binom_test_and_prop_test(k, n):
    p = proportion(k, n)
    assert p.estimate == k / n
    close(p.ci_exact, R[f"prop/{k}_{n}/exact"], rel=REL, abs_=1e-15)
    close(p.ci_wilson, R[f"prop/{k}_{n}/wilson"], rel=REL, abs_=1e-15)
    close(p.p_value, R[f"prop/{k}_{n}/p"], rel=REL)


def test_proportion_level_and_null_value():
    p = proportion(7, 23, conf_level=0.9, p0=0.2)
    close(p.ci_exact, R["prop/7_23_p0.2_90/exact"], rel=REL)
    close(p.p_value, R["prop/7_23_p0.2_90/p"], rel=REL)
    with pytest.raises(InputError, match="0 <= k <= n"):
        proportion(5, 4)
    with pytest.raises(InputError, match="whole number"):
        proportion(2.5, 4)


@pytest.mark.parametrize("cells", [(12, 5, 7, 15), (0, 5, 7, 15)])
def test_odds_ratio_woolf_and_fisher(cells):
    o = odds_ratio(np.reshape(cells, (2, 2)))
    key = "or/" + "_".join(map(str, cells))
    close([o.estimate, *o.ci], R[f"{key}/woolf"], rel=REL)          # a zero cell: OR 0, CI (0, NaN) as in R
    estimate, lower, upper, p = R[f"{key}/fisher"]
    close([o.conditional, o.p_value], [estimate, p], rel=REL)
    # documented exception: fisher.test solves the bounds by uniroot at its default tolerance (~1e-4);
    # the same equations solved tightly in binary.R agree with scipy to 1e-6
    close(o.conditional_ci, R[f"{key}/fisher_ci_tight"], rel=REL)
    close(o.conditional_ci, [lower, upper], rel=2e-3)


def test_logistic_matches_glm_on_cohort_with_missing_values(cohort):
    fit = logistic(cohort, "y", ["log_mtv", "suv", "age", "stage"])
    s = fit.summary
    assert list(s.index) == R["logit/terms"]
    assert [fit.n, fit.n_dropped] == R["logit/n"]
    for col, key in [("coef", "coef"), ("se", "se"), ("z", "z"), ("p", "p")]:
        close(s[col], R[f"logit/{key}"], rel=REL)
    wald = np.reshape(R["logit/wald_ci"], (2, -1)).T
    close(np.log(s["or_lower"]), wald[:, 0], rel=REL)
    close(np.log(s["or_upper"]), wald[:, 1], rel=REL)
    lr = fit.lr_test
    close([lr.statistic, lr.df, lr.p_value], R["logit/lr"], rel=REL)
    close([fit.loglik, fit.aic], [R["logit/loglik"], R["logit/aic"]], rel=REL)
    assert fit.warnings == []


@pytest.mark.slow
def test_logistic_profile_ci_is_the_exact_root_r_approximates(cohort):
    pc = logistic(cohort, "y", ["log_mtv", "suv", "age", "stage"]).profile_ci
    exact = np.reshape(R["logit/profile_ci_exact"], (2, -1)).T   # R: uniroot on glm.fit refits with offset
    close(pc[["lower", "upper"]].to_numpy().ravel(), exact.ravel(), rel=REL)
    # documented exception: MASS's confint(glm) interpolates a spline through profile points
    mass = np.reshape(R["logit/profile_ci_mass"], (2, -1)).T
    close(pc[["lower", "upper"]].to_numpy().ravel(), mass.ravel(), rel=5e-3)


def test_logistic_one_covariate_and_separation(cohort):
    one = logistic(cohort, "y", ["age"])
    close(one.params, R["logit1/coef"], rel=REL)
    close(one.se, R["logit1/se"], rel=REL)
    sep = logistic(pd.DataFrame({"x": np.arange(1, 9), "y": [0, 0, 0, 0, 1, 1, 1, 1]}), "y", ["x"])
    # glm.fit's 25 iterations reproduced: the same (meaningless, diverging) numbers and R's warning
    assert sep.iterations == R["logit_sep/iter"]
    close(sep.params, R["logit_sep/coef"], rel=REL)
    close(sep.se, R["logit_sep/se"], rel=REL)
    assert sep.warnings == [R["logit_sep/warnings"]]
    assert sep.provenance["warnings"] == sep.warnings
    assert sep.profile_ci[["lower", "upper"]].isna().all().all()


def test_logistic_refuses_what_glm_cannot_estimate():
    with pytest.raises(InputError, match="rank deficient"):
        logistic(pd.DataFrame({"x": [1.0, 1.0, 1.0], "y": [0, 1, 1]}), "y", ["x"])
    with pytest.raises(InputError, match="outcome must be 0 or 1"):
        logistic(pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 2, 1]}), "y", ["x"])
    with pytest.raises(InputError, match="not found"):
        logistic(pd.DataFrame({"x": [1.0]}), "y", ["x"])


@pytest.mark.parametrize("marker", ["mtv", "suv"])
def test_roc_matches_proc(cohort, marker):
    r = roc(cohort["y"], cohort[marker])
    assert r.direction == R[f"roc/{marker}/direction"]
    assert [r.n_cases, r.n_controls] == R[f"roc/{marker}/n"]
    close(r.auc, R[f"roc/{marker}/auc"], rel=REL)
    close(r.auc_se ** 2, R[f"roc/{marker}/var"], rel=REL)
    close(r.auc_ci, R[f"roc/{marker}/ci"], rel=REL)
    # pROC lists the curve from +inf down for direction ">"; JSON has null for the infinite ends
    thr = np.array([np.nan if v is None else v for v in R[f"roc/{marker}/thresholds"]])
    ours = r.curve.sort_values("threshold", ascending=(r.direction == "<")).reset_index(drop=True)
    close(ours["threshold"].where(np.isfinite(ours["threshold"])), thr, rel=REL)
    close(ours["sensitivity"], R[f"roc/{marker}/sensitivities"], rel=REL)
    close(ours["specificity"], R[f"roc/{marker}/specificities"], rel=REL)
    best = r.youden
    assert len(best) == 1
    close(best.loc[0, ["threshold", "specificity", "sensitivity"]].to_numpy(float), R[f"roc/{marker}/youden"], rel=REL)


def test_roc_test_paired_delong(cohort):
    t = roc_test(cohort["y"], cohort["mtv"], cohort["suv"])
    close([t.statistic, t.p_value, t.auc1, t.auc2], R["roc_test/mtv_suv"], rel=REL)
    assert t.n == 150


def test_roc_edges():
    r = roc([0, 0, 0, 1, 1], [1, 2, 3, 4, 5])
    close([r.auc, *r.auc_ci], R["roc_perfect"], rel=REL)
    r = roc([0, 0, 1, 1, 1], [2, 2, 2, 2, 2])
    close([r.auc, *r.auc_ci], R["roc_constant"], rel=REL)
    r = roc([0, 0, 0, 1], [1, 3, 2, 2.5])
    close(r.auc, R["roc_one_case/auc"], rel=REL)
    close(r.auc_ci, R["roc_one_case/ci"])  # one case: DeLong's variance is undefined (NA in R)
    r = roc([0, 0, 0, 1, 1, 1], [6, 5, 4, 3, 4, 1])
    assert r.direction == R["roc_reversed/direction"]
    close([r.auc, *r.auc_ci], R["roc_reversed"], rel=REL)
    with pytest.raises(InputError, match="cases .1. and controls"):
        roc([1, 1, np.nan], [1, 2, 3])


def test_c_index_ci_in_model_comparison():
    sim = pd.read_csv(FIXTURES / "models_lbcl_sim.csv")
    models = {"IPI": ["ipi"], "MTV": ["log_mtv"], "IPI+MTV": ["ipi", "log_mtv"],
              "IPI+MTV+LDH": ["ipi", "log_mtv", "ldh_high"]}
    s = compare_models(sim, "time_months", "event", models, n_boot=0).summary.set_index("model")
    for name in models:
        c, se = R[f"cindex/{name}"]
        close([s.loc[name, "c_index"], s.loc[name, "c_index_se"]], [c, se], rel=REL)
        close([s.loc[name, "c_index_lower"], s.loc[name, "c_index_upper"]], [c - 1.959963984540054 * se,
                                                                               c + 1.959963984540054 * se], rel=1e-12)
