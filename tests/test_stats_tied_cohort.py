"""carpet.stats against R on a simulated cohort with many tied times and marker values.

``fixtures/r/tied_cohort.R`` made the data (``tied_cohort.csv``) and R's answers
(``tied_cohort_r.json``); this test only reads them. Tolerances are the issue's.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from _r_reference import close
from carpet.stats import concordance_counts, cox, cutpoint, kaplan_meier, logrank

FIXTURES = Path(__file__).parent / "fixtures" / "r"
R = json.loads((FIXTURES / "tied_cohort_r.json").read_text())
COHORT = pd.read_csv(FIXTURES / "tied_cohort.csv")
COHORT["group"] = pd.Categorical(COHORT["group"], categories=["A", "B", "C"])


def test_many_ties_in_time():
    # the point of this fixture: far fewer distinct times than subjects
    assert COHORT["time"].nunique() < len(COHORT) / 5


@pytest.mark.parametrize("conf_type", ["log", "log-log", "plain"])
@pytest.mark.parametrize("subset", ["all", "B"])
def test_kaplan_meier(conf_type, subset):
    d = COHORT if subset == "all" else COHORT[COHORT["group"] == "B"]
    km = kaplan_meier(d["time"], d["event"], conf_type=conf_type)
    key = f"km/{subset}/{conf_type}"
    quantiles = [km.quantile(p) for p in (0.25, 0.5, 0.75)]
    close([q.estimate for q in quantiles], R[f"{key}/quantile"], rel=1e-6)
    close([q.lower for q in quantiles], R[f"{key}/quantile_lower"], rel=1e-6)
    close([q.upper for q in quantiles], R[f"{key}/quantile_upper"], rel=1e-6)
    at = km.survival_at(R["km/times"])
    for col, r_name in [("surv", "surv"), ("std_err", "std_err"), ("lower", "lower"), ("upper", "upper"),
                        ("n_risk", "n_risk")]:
        close(at[col], R[f"{key}/{r_name}"], rel=1e-6, abs_=1e-12)


def test_median_plateau_midpoint_rules():
    plateau = kaplan_meier([1, 2, 3, 4, 5, 6], [1, 1, 1, 0, 1, 0])
    assert plateau.median == R["plateau/median"] == 4.0  # S = 0.5 exactly on [3, 5): midpoint
    assert plateau.quantile(0.25).estimate == R["plateau/quantile_0.25"]
    to_end = kaplan_meier([1, 2, 3, 4], [1, 1, 0, 0])
    assert to_end.median == R["plateau_end/median"] == 3.0  # plateau to last follow-up: (2 + 4) / 2


@pytest.mark.parametrize("rho", [0, 1, 0.5])
def test_logrank_rho(rho):
    lr = logrank(COHORT["time"], COHORT["event"], COHORT["group"], rho=rho)
    close(lr.statistic, R[f"logrank/rho={rho:g}/chisq"], rel=1e-6)
    close(lr.observed, R[f"logrank/rho={rho:g}/observed"], rel=1e-6)
    close(lr.expected, R[f"logrank/rho={rho:g}/expected"], rel=1e-6)
    assert lr.df == 2


def test_logrank_stratified_and_trend():
    lr = logrank(COHORT["time"], COHORT["event"], COHORT["group"], strata=COHORT["site"])
    close(lr.statistic, R["logrank/strata/chisq"], rel=1e-6)
    close(lr.expected, R["logrank/strata/expected"], rel=1e-6)
    trend = logrank(COHORT["time"], COHORT["event"], COHORT["group"], trend=True)
    close(trend.statistic, R["logrank/trend/chisq"], rel=1e-6)
    assert trend.df == 1


@pytest.mark.parametrize("ties", ["efron", "breslow"])
@pytest.mark.parametrize("strata", ["none", "site"])
def test_cox(ties, strata):
    fit = cox(COHORT, duration="time", event="event", covariates=["group", "mtv", "age"], ties=ties,
              strata=None if strata == "none" else strata)
    key = f"cox/{ties}/{strata}"
    assert list(fit.summary.index) == R[f"{key}/names"]
    close(fit.summary["coef"], R[f"{key}/coef"], abs_=1e-5)
    close(fit.summary["se"], R[f"{key}/se"], rel=1e-4)
    close(fit.loglik, R[f"{key}/loglik"], abs_=1e-5)
    close(fit.lr_test.statistic, R[f"{key}/lr"], abs_=1e-4)
    close(fit.wald_test.statistic, R[f"{key}/wald"], abs_=1e-4)
    close(fit.score_test.statistic, R[f"{key}/score"], abs_=1e-4)
    close(fit.concordance, R[f"{key}/concordance"], abs_=1e-6)
    close(fit.concordance_se, R[f"{key}/concordance_se"], abs_=1e-4)
    zph = fit.zph()
    assert list(zph.index) == R[f"{key}/zph_terms"]
    close(zph["chisq"], R[f"{key}/zph_chisq"], abs_=1e-4)
    close(zph["df"], R[f"{key}/zph_df"])
    close(zph["p"], R[f"{key}/zph_p"], rel=1e-4)
    close(fit.zph(transform="rank")["chisq"], R[f"{key}/zph_rank_chisq"], abs_=1e-4)


def test_raw_marker_concordance():
    counts = concordance_counts(COHORT["time"], COHORT["event"], COHORT["mtv"])
    conc, disc, tied_x, tied_y, tied_xy = R["concordance/mtv/count"]
    assert (counts.concordant, counts.discordant, counts.tied_x, counts.tied_y, counts.tied_xy) == (
        conc, disc, tied_x, tied_y, tied_xy)
    close(counts.concordance, R["concordance/mtv/C"], abs_=1e-6)
    close(counts.std_err, R["concordance/mtv/se"], abs_=1e-4)


def test_cutpoint_with_tied_marker():
    cp = cutpoint(COHORT["time"], COHORT["event"], COHORT["mtv"])
    assert cp.value == R["maxstat/mtv/cut"]
    assert cp.n_candidates == R["maxstat/mtv/n_cuts"]
    close(cp.statistic, R["maxstat/mtv/M"], abs_=1e-5)
    close(cp.statistics, R["maxstat/mtv/stats"], abs_=1e-5)
    close(cp.p_value, R["maxstat/mtv/p_lau92"], rel=1e-4)
    close(cp.p_value_lau94, R["maxstat/mtv/p_lau94"], rel=1e-4)
    narrow = cutpoint(COHORT["time"], COHORT["event"], COHORT["mtv"], min_prop=0.25, max_prop=0.75)
    assert narrow.value == R["maxstat/mtv_25_75/cut"]
    close(narrow.statistic, R["maxstat/mtv_25_75/M"], abs_=1e-5)
    close(narrow.p_value, R["maxstat/mtv_25_75/p_lau92"], rel=1e-4)


def test_kaplan_meier_other_confidence_level():
    km = kaplan_meier(COHORT["time"], COHORT["event"], conf_level=0.90)
    at = km.survival_at(R["km/times"])
    close(at["lower"], R["km/all/log90/lower"], rel=1e-6)
    close(at["upper"], R["km/all/log90/upper"], rel=1e-6)
    close(km.median_ci, R["km/all/log90/median_ci"], rel=1e-6)


def test_km_figure_prints_r_numbers_at_risk_median_and_logrank():
    import matplotlib.pyplot as plt

    from carpet.report.km_plot import km_figure

    groups = {g: (sub["time"], sub["event"]) for g, sub in COHORT.groupby("group", observed=True)}
    fig, stats = km_figure(groups, risk_times=R["km/times"])
    risk_row_b = [t for t in fig.axes[1].texts if t.get_position()[1] == 1]  # rows top-down: A (y=2), B, C
    assert [t.get_position()[0] for t in risk_row_b] == R["km/times"]
    close([int(t.get_text()) for t in risk_row_b], R["km/B/log/n_risk"])
    b = stats["groups"]["B"]
    close([b["median"], *b["median_ci"]],
          [R[f"km/B/log/quantile{part}"][1] for part in ("", "_lower", "_upper")], rel=1e-6)
    close(stats["logrank"]["statistic"], R["logrank/rho=0/chisq"], rel=1e-6)
    plt.close(fig)
