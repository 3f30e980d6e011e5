"""carpet's Cox model where it used to differ from R, and its reporting features, against ``fixtures/r/cox_edges.R``
(``cox_edges_r.json``, ``tve_cohort.csv``): coefficients that run to infinity, an aliased covariate, a chosen
reference level, counting-process data with a time-varying exposure, cox.zph and the uni/multivariable table."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _r_reference import close
from carpet.errors import InputError
from carpet.stats import cox
from carpet.stats.cox_table import cox_table

FIXTURES = Path(__file__).parent / "fixtures" / "r"
R = json.loads((FIXTURES / "cox_edges_r.json").read_text())
REL = 1e-6


@pytest.fixture(scope="module")
def tied():
    d = pd.read_csv(FIXTURES / "tied_cohort.csv")
    d["group"] = pd.Categorical(d["group"], categories=["A", "B", "C"])
    return d


def r_warnings(key):
    w = R[f"{key}/warnings"]
    w = [w] if isinstance(w, str) else w
    return tuple(re.sub(r"\s+;", ";", re.sub(r"\s+", " ", m)).strip() for m in w)  # R's paste() adds spaces


def check_fit(fit, key, rel=REL, finite_only=False):
    assert list(fit.params.index) == (R[f"{key}/names"] if isinstance(R[f"{key}/names"], list)
                                      else [R[f"{key}/names"]])
    coef, se = np.array(R[f"{key}/coef"], dtype=float, ndmin=1), np.array(R[f"{key}/se"], dtype=float, ndmin=1)
    keep = ~np.array([name in fit.infinite for name in fit.params.index]) if finite_only else slice(None)
    close(fit.params.to_numpy()[keep], coef[keep], rel=rel)
    close(np.where(fit.params.isna(), 0.0, fit.se)[keep], se[keep], rel=rel)
    close(fit.loglik, R[f"{key}/loglik"], rel=rel)
    close(fit.score_test.statistic, R[f"{key}/score"], rel=rel)
    assert fit.iterations == R[f"{key}/iter"]
    assert fit.warnings == r_warnings(key)


@pytest.mark.parametrize("key, covariates", [("noevents_multi", ["group", "mtv", "age"]), ("noevents_one", ["group"]),
                                             ("noevents_binary", ["is_c"])])
def test_group_without_events_warns_like_r_and_keeps_the_other_coefficients(tied, key, covariates):
    d = tied.assign(event=np.where(tied["group"] == "C", 0, tied["event"]), is_c=(tied["group"] == "C").astype(int))
    fit = cox(d, covariates=covariates)
    # R's iterations are followed step for step, so even the diverging coefficient is R's number
    check_fit(fit, key)
    assert fit.summary["infinite"].sum() == 1
    assert fit.provenance["warnings"] == list(fit.warnings)


def test_separating_covariate_runs_out_of_iterations_like_r():
    d = pd.DataFrame({"time": [1, 2, 3, 4, 5, 6], "event": [1, 1, 1, 0, 0, 0], "x": [1, 1, 1, 0, 0, 0]})
    check_fit(cox(d, covariates=["x"]), "separated")


def test_aliased_covariate_is_na_like_r(tied):
    fit = cox(tied.assign(mtv2=2 * tied["mtv"]), covariates=["mtv", "mtv2", "age"])
    check_fit(fit, "aliased")
    assert np.isnan(fit.params["mtv2"]) and fit.df == 2


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_reference_level(tied, ties):
    check_fit(cox(tied, covariates=["group", "mtv"], ties=ties, reference={"group": "B"}), f"relevel_{ties}")
    with pytest.raises(InputError, match="reference level 'Z'"):
        cox(tied, covariates=["group"], reference={"group": "Z"})


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_counting_process_time_varying_exposure(ties):
    tv = pd.read_csv(FIXTURES / "tve_cohort.csv")
    fit = cox(tv, duration="stop", event="event", covariates=["tce", "age"], ties=ties, start="start")
    check_fit(fit, f"tve_{ties}")
    assert [len(tv), fit.n] == R["tve/n"]
    close(fit.zph()["chisq"], R[f"tve_{ties}/zph_chisq"], rel=REL)
    close(fit.zph(transform="rank")["chisq"], R[f"tve_{ties}/zph_rank_chisq"], rel=REL)
    with pytest.raises(InputError, match="start < stop"):
        cox(tv.assign(start=tv["stop"]), duration="stop", covariates=["tce"], start="start")


def test_all_censored_is_refused_where_r_returns_na(tied):
    assert R["all_censored/coef"] is None
    with pytest.raises(InputError, match="no events"):
        cox(tied.assign(event=0), covariates=["mtv"])


def test_univariable_and_multivariable_table(tied):
    tab = cox_table(tied, covariates=["group", "mtv", "age", "site"])
    uni_coef = np.concatenate([np.atleast_1d(R[f"uni/{v}/coef"]) for v in ("group", "mtv", "age", "site")])
    uni_se = np.concatenate([np.atleast_1d(R[f"uni/{v}/se"]) for v in ("group", "mtv", "age", "site")])
    rows = tab.table[tab.table["level"] != "(reference)"]
    close(np.log(rows["uni_hr"]), uni_coef, rel=REL)
    close(rows["uni_se"], uni_se, rel=REL)
    close(np.log(rows["multi_hr"]), R["multi/coef"], rel=REL)
    close(rows["multi_se"], R["multi/se"], rel=REL)
    # cox.zph of every model: per-variable p of each univariable fit (GLOBAL dropped) and the multivariable chisq
    for v in ("group", "mtv", "age", "site"):
        close(tab.zph_univariable[v].loc[v, "p"], np.atleast_1d(R[f"uni/{v}/zph"])[0], rel=REL)
    close(tab.zph_multivariable["chisq"], R["multi/zph"], rel=REL)
    # one layout: "HR (95% CI)" text and a formatted p for both columns, reference rows marked
    ref = tab.table[tab.table["level"] == "(reference)"]
    assert list(ref["term"]) == ["group", "site"] and (ref["uni"] == "1 (reference)").all()
    # the cells follow carpet's one number policy (carpet.report.format.estimate_ci), p likewise
    from carpet.report.format import estimate_ci, p_value

    assert list(rows["uni"]) == [estimate_ci(*r) for r in rows[["uni_hr", "uni_lower", "uni_upper"]].to_numpy()]
    assert list(rows["uni_p_text"]) == [p_value(p) for p in rows["uni_p"]]
    assert rows["uni"].str.fullmatch(r"\d+\.\d\d+ \(\d+\.\d\d+–\d+\.\d\d+\)").all()


def test_forest_plot_draws_every_level(tied):
    from carpet.report.forest import forest_figure

    tab = cox_table(tied, covariates=["group", "mtv", "age", "site"])
    fig = forest_figure(tab.table)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()][0] == "group (reference A)"
    assert len(ax.get_yticklabels()) == len(tab.table)
    squares = ax.lines[0].get_xdata()
    close(squares, tab.table["multi_hr"].dropna(), rel=1e-12)  # references (no HR) are not drawn
