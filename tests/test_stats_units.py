"""carpet.stats against independent truth: hand computation, brute force, lifelines/statsmodels, exact
permutation distributions; and its refusals of bad input."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd
import pytest

from carpet.errors import InputError
from carpet.stats import concordance_counts, cox, cutpoint, evaluate_cutoff, kaplan_meier, logrank


def _tied_data(n=120, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    group = rng.integers(0, 3, n)
    time = np.ceil(rng.exponential(10 * np.exp(-0.5 * x - 0.3 * group)))  # integer times: ties
    cens = np.ceil(rng.uniform(5, 30, n))
    return pd.DataFrame({"time": np.minimum(time, cens), "event": (time <= cens).astype(int), "x": x,
                         "z": np.round(rng.normal(size=n), 1), "group": group, "stratum": rng.integers(0, 2, n)})


def test_kaplan_meier_by_hand():
    km = kaplan_meier([1, 2, 2, 3, 4], [1, 1, 0, 1, 0])
    np.testing.assert_allclose(km.surv, [0.8, 0.6, 0.3, 0.3])
    # Greenwood: var(log S(3)) = 1/(5·4) + 1/(4·3) + 1/(2·1)
    np.testing.assert_allclose(km.se_log[2], np.sqrt(1 / 20 + 1 / 12 + 1 / 2))
    np.testing.assert_allclose(km.std_err[2], 0.3 * np.sqrt(1 / 20 + 1 / 12 + 1 / 2))
    assert km.median == 3.0
    assert list(km.n_risk) == [5, 4, 2, 1]


def test_median_not_reached_is_none():
    km = kaplan_meier([1, 2, 3, 4, 5], [1, 0, 0, 0, 0])
    assert km.median is None and km.median_ci[1] is None
    assert "median=NA" in str(km)


def test_risk_table_brute_force():
    d = _tied_data()
    km = kaplan_meier(d["time"], d["event"])
    times = [0, 3, 7.5, 10, 40]
    table = km.risk_table(times)
    for row, t in zip(table.itertuples(), times):
        assert row.n_risk == int((d["time"] >= t).sum())
        assert row.cum_events == int(((d["time"] <= t) & (d["event"] == 1)).sum())
        assert row.cum_censored == int(((d["time"] <= t) & (d["event"] == 0)).sum())
    previous = np.concatenate(([-np.inf], times[:-1]))
    in_interval = (d["time"].to_numpy()[:, None] > previous) & (d["time"].to_numpy()[:, None] <= times)
    np.testing.assert_array_equal(table["n_event"], (in_interval & (d["event"].to_numpy()[:, None] == 1)).sum(0))
    np.testing.assert_array_equal(table["n_censor"], (in_interval & (d["event"].to_numpy()[:, None] == 0)).sum(0))


def test_logrank_matches_lifelines():
    from lifelines.statistics import logrank_test, multivariate_logrank_test
    d = _tied_data()
    two = d[d["group"] < 2]
    ours = logrank(two["time"], two["event"], two["group"])
    a, b = two[two["group"] == 0], two[two["group"] == 1]
    theirs = logrank_test(a["time"], b["time"], a["event"], b["event"])
    assert ours.statistic == pytest.approx(theirs.test_statistic, rel=1e-10)
    ours3 = logrank(d["time"], d["event"], d["group"])
    theirs3 = multivariate_logrank_test(d["time"], d["group"], d["event"])
    assert ours3.statistic == pytest.approx(theirs3.test_statistic, rel=1e-10)
    assert ours3.df == 2


def test_cox_efron_matches_lifelines_and_breslow_matches_statsmodels():
    from lifelines import CoxPHFitter
    from statsmodels.duration.hazard_regression import PHReg
    d = _tied_data()
    ours = cox(d, covariates=["x", "z"], ties="efron")
    cph = CoxPHFitter().fit(d[["time", "event", "x", "z"]], "time", "event", fit_options={"precision": 1e-12})
    np.testing.assert_allclose(ours.params, cph.params_, atol=1e-7)
    np.testing.assert_allclose(ours.se, cph.standard_errors_, rtol=1e-6)
    assert ours.loglik[1] == pytest.approx(cph.log_likelihood_, abs=1e-8)
    assert ours.aic == pytest.approx(cph.AIC_partial_, abs=1e-7)
    assert ours.concordance == pytest.approx(cph.concordance_index_, abs=1e-12)
    bres = cox(d, covariates=["x", "z"], ties="breslow", strata="stratum")
    ph = PHReg(d["time"], d[["x", "z"]], status=d["event"], ties="breslow", strata=d["stratum"]).fit()
    np.testing.assert_allclose(bres.params, ph.params, atol=1e-6)
    np.testing.assert_allclose(bres.se, ph.bse, rtol=1e-5)


def test_concordance_brute_force():
    d = _tied_data(n=60, seed=3)
    risk = np.round(d["x"].to_numpy(), 1)
    t, e, s = d["time"].to_numpy(), d["event"].to_numpy(), d["stratum"].to_numpy()
    conc = disc = tied = 0
    for i, j in itertools.permutations(range(len(t)), 2):
        if s[i] != s[j] or not e[i]:
            continue
        if t[j] > t[i] or (t[j] == t[i] and not e[j]):
            conc += risk[i] > risk[j]
            disc += risk[i] < risk[j]
            tied += risk[i] == risk[j]
    counts = concordance_counts(t, e, risk, strata=s)
    assert (counts.concordant, counts.discordant, counts.tied_x) == (conc, disc, tied)
    assert counts.concordance == pytest.approx((conc + tied / 2) / (conc + disc + tied))


def test_cutpoint_permutation_p_matches_exact_permutation_distribution():
    time = np.array([2.0, 3, 3, 5, 8, 12])
    event = np.array([1, 1, 0, 1, 1, 1])
    x = np.array([6.0, 5, 4, 3, 2, 1])
    observed = cutpoint(time, event, x).statistic
    # exact: every permutation of the marker over subjects
    perms = [cutpoint(time, event, x[list(p)]).statistic for p in itertools.permutations(range(6))]
    exact = np.mean(np.array(perms) >= observed * (1 - 1e-12))
    mc = cutpoint(time, event, x, n_perm=20_000, seed=5)
    se = np.sqrt(exact * (1 - exact) / 20_000)
    assert abs(mc.p_value_perm - exact) < 4 * se + 1e-4
    assert mc.n_perm == 20_000 and mc.provenance["seed"] == 5


def test_cutpoint_groups_and_statistic_by_brute_force():
    d = _tied_data(n=80, seed=7)
    cp = cutpoint(d["time"], d["event"], d["z"])
    # the chosen split (low = z <= cut) leaves between floor(10%) and floor(90%) of subjects below
    low = (d["z"] <= cp.value).sum()
    assert int(np.floor(0.1 * len(d))) <= low <= int(np.floor(0.9 * len(d)))
    assert cp.statistic == pytest.approx(cp.statistics.max())
    assert cp.value in set(d["z"])
    assert "adjusted p" in str(cp)


def test_evaluate_cutoff_refuses_other_method_and_matches_cox():
    d = _tied_data()
    with pytest.raises(InputError, match="suv2.5"):
        evaluate_cutoff(d["time"], d["event"], d["x"], 0.0, marker_method="suv2.5", cutoff_method="pct41")
    with pytest.warns(UserWarning, match="not comparable"):
        evaluate_cutoff(d["time"], d["event"], d["x"], 0.0, marker_method="suv2.5", cutoff_method="pct41",
                        strict=False)
    with pytest.warns(UserWarning, match="methods were not both given"):
        evaluate_cutoff(d["time"], d["event"], d["x"], 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ev = evaluate_cutoff(d["time"], d["event"], d["x"], 0.0, marker_method="SUV4", cutoff_method="suv4")
    high = (d["x"] > 0).astype(int)
    assert (ev.n_high, ev.n_low) == (int(high.sum()), int((1 - high).sum()))
    ref = cox(d.assign(high=high), covariates=["high"]).summary.loc["high"]
    assert ev.hr == pytest.approx(ref["hr"])
    assert ev.logrank.statistic == pytest.approx(logrank(d["time"], d["event"], high).statistic)


@pytest.mark.parametrize("time, event, where", [
    ([1, 2, -1], [1, 0, 1], "row 2, column 'time'"),
    ([1, np.nan, 3], [1, 0, 1], "row 1, column 'time'"),
    ([1, 2, 3], [1, 2, 1], "row 1, column 'event'"),
])
def test_bad_input_names_row_and_column(time, event, where):
    with pytest.raises(InputError) as err:
        kaplan_meier(time, event)
    assert where in str(err.value)


def test_bad_options_and_shapes():
    with pytest.raises(InputError, match="conf_type"):
        kaplan_meier([1, 2], [1, 1], conf_type="logit")
    with pytest.raises(InputError, match="same length"):
        kaplan_meier([1, 2], [1])
    with pytest.raises(InputError, match="at least 2 groups"):
        logrank([1, 2, 3], [1, 1, 0], ["a", "a", "a"])
    with pytest.raises(InputError, match="strata has 2 values"):
        concordance_counts([1, 2, 3], [1, 0, 1], [1, 2, 3], strata=[1, 2])
    with pytest.raises(InputError, match="not found"):
        cox(pd.DataFrame({"time": [1, 2], "event": [1, 0]}), covariates=["mtv_ml"])
    with pytest.raises(InputError, match="ties"):
        cox(pd.DataFrame({"time": [1, 2], "event": [1, 0], "x": [0, 1]}), covariates=["x"], ties="exact")


def test_cox_drops_rows_with_missing_values_and_counts_them():
    d = _tied_data()
    d.loc[[3, 10], "z"] = np.nan
    fit = cox(d, covariates=["x", "z"])
    assert (fit.n, fit.n_dropped) == (len(d) - 2, 2)
    assert fit.params["x"] == pytest.approx(cox(d.dropna(), covariates=["x", "z"]).params["x"], abs=1e-12)


def test_cox_refuses_constant_and_warns_on_separating_covariates():
    d = pd.DataFrame({"time": [1, 2, 3, 4, 5, 6], "event": [1, 1, 0, 1, 1, 0], "x": [1] * 6, "y": [0, 1] * 3})
    with pytest.raises(InputError, match=r"\['x'\] take a single value"):
        cox(d, covariates=["x", "y"])
    # R runs out of its 20 iterations here and says so (values in test_stats_cox_r.py)
    separated = cox(d.assign(event=[1, 1, 1, 0, 0, 0], x=[1, 1, 1, 0, 0, 0]), covariates=["x"])
    assert separated.warnings == ("Ran out of iterations and did not converge",)


def test_logrank_group_without_expected_events_drops_out_like_survdiff():
    # group "c" only has subjects censored before the first event: expected = 0, so R reports df = 1
    time = [1, 2, 3, 4, 5, 6, 0.5, 0.5]
    event = [1, 1, 0, 1, 1, 0, 0, 0]
    group = ["a", "a", "a", "b", "b", "b", "c", "c"]
    lr = logrank(time, event, group)
    two = logrank(time[:6], event[:6], group[:6])
    assert lr.df == 1 and lr.expected[2] == 0
    assert lr.statistic == pytest.approx(two.statistic)
    assert lr.statistic == pytest.approx(2.469388, abs=1e-6)  # R 4.2.2 survdiff: Chisq 2.469388 on 1 df


def test_logrank_trend_follows_categorical_level_order():
    d = _tied_data()
    labels = np.array(["low", "mid", "high"])[d["group"]]
    ordered = pd.Categorical(labels, categories=["low", "mid", "high"])
    by_level = logrank(d["time"], d["event"], ordered, trend=True)
    by_code = logrank(d["time"], d["event"], d["group"], trend=True)
    assert by_level.groups == ["low", "mid", "high"]
    assert by_level.statistic == pytest.approx(by_code.statistic, rel=1e-12)
    # alphabetical order (high, low, mid) is a different trend
    assert logrank(d["time"], d["event"], labels, trend=True).statistic != pytest.approx(by_code.statistic)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kaplan_meier_and_log_log_band_match_lifelines(seed):
    # lifelines' only band is R's log-log ("exponential Greenwood"); its S(t) is the same product-limit
    from lifelines import KaplanMeierFitter
    d = _tied_data(n=90, seed=seed)
    ours = kaplan_meier(d["time"], d["event"], conf_type="log-log")
    theirs = KaplanMeierFitter().fit(d["time"], d["event"])
    times = np.unique(d["time"])
    np.testing.assert_allclose(ours.survival_at(times)["surv"], theirs.survival_function_at_times(times), rtol=1e-12)
    band = theirs.confidence_interval_.loc[times]
    inside = (ours.surv > 0) & (ours.surv < 1)
    np.testing.assert_allclose(ours.lower[inside], band.iloc[:, 0].to_numpy()[inside], rtol=1e-9)
    np.testing.assert_allclose(ours.upper[inside], band.iloc[:, 1].to_numpy()[inside], rtol=1e-9)
