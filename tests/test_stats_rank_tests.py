"""Rank tests against R (tests/fixtures/r/rank_tests.R wrote rank_tests_r.json): wilcox.test and cor.test(method =
"spearman", exact = FALSE) on a simulated CERTAINTY-like cohort (missing values, ties) and a large sample, and the
plan's association analysis (MTV vs CAR T expansion) giving the same numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from carpet.errors import InputError
from carpet.stats import mann_whitney, spearman

FIXTURES = Path(__file__).parent / "fixtures" / "r"
R = json.loads((FIXTURES / "rank_tests_r.json").read_text())
COLUMNS = ("car_t_peak_per_ul", "car_t_auc_0_28", "tcr_shannon", "tcr_rounded")


@pytest.fixture(scope="module")
def cohort():
    return pd.read_csv(FIXTURES / "rank_tests_cohort.csv")


@pytest.mark.parametrize("column", COLUMNS)
def test_wilcoxon_and_spearman_equal_r(cohort, column):
    d = cohort.dropna(subset=["mtv_ml", column])
    high = d["mtv_ml"] > 54.3
    mw = mann_whitney(d.loc[~high, column], d.loc[high, column])
    assert mw.statistic == R[f"{column}/w"]
    assert mw.p_value == pytest.approx(R[f"{column}/p_w"], rel=1e-9)
    assert ("exact" in mw.method) == ("exact" in R[f"{column}/method"])
    rho = spearman(cohort["mtv_ml"], cohort[column])  # pairs with a missing value dropped, as R's complete cases
    assert rho.n == R[f"{column}/n"]
    assert rho.rho == pytest.approx(R[f"{column}/rho"], rel=1e-12)
    assert rho.p_value == pytest.approx(R[f"{column}/p_rho"], rel=1e-9)
    assert rho.ci == pytest.approx(R[f"{column}/ci"], rel=1e-9)


def test_wilcoxon_leaves_the_exact_test_at_50_per_group():
    big = pd.read_csv(FIXTURES / "rank_tests_large.csv")
    mw = mann_whitney(big.loc[big["g"] == "a", "x"], big.loc[big["g"] == "b", "x"])
    assert mw.statistic == R["large/w"] and "continuity" in mw.method
    assert mw.p_value == pytest.approx(R["large/p_w"], rel=1e-9)


def test_rank_tests_refuse_what_they_cannot_compute():
    with pytest.raises(InputError, match="both groups"):
        mann_whitney([1.0, 2.0], [np.nan])
    with pytest.raises(InputError, match="at least 4"):
        spearman([1, 2, 3], [3, 2, 1])
    with pytest.raises(InputError, match="constant"):
        spearman([1, 1, 1, 1, 1], [1, 2, 3, 4, 5])


def test_certainty_plan_association_equals_the_direct_calls(tmp_path):
    """The CERTAINTY plan's MTV vs expansion table: the same Wilcoxon and Spearman numbers as the functions (which
    equal R above), on the raw simulated table and its imaging.csv (the baseline scan's MTV); and MTV does not
    drive expansion (the news item's sentence)."""
    import yaml

    from carpet.analyze import run_analysis
    from carpet.synth.cohort import simulate_cohort

    plan = yaml.safe_load((Path(__file__).resolve().parents[1] / "src/carpet/plans/certainty_mtv.yaml").read_text())
    plan["analyses"] = [a for a in plan["analyses"] if a["type"] == "association"]
    c = simulate_cohort("certainty_pet", seed=2025)
    rows = run_analysis(c.raw_patients, plan, tmp_path, imaging=c.imaging_table()).results["mtv_vs_expansion"]["rows"]
    assert [r["outcome"] for r in rows] == ["car_t_peak_per_ul", "car_t_auc_0_28", "tcr_shannon"]
    p = c.patients
    for r in rows:
        d = p.dropna(subset=["mtv_ml", r["outcome"]])
        high = d["mtv_ml"] > 54.3
        mw = mann_whitney(d.loc[~high, r["outcome"]], d.loc[high, r["outcome"]])
        rho = spearman(d["mtv_ml"], d[r["outcome"]])
        assert (r["n_low"], r["n_high"], r["w"], r["p_wilcoxon"]) == (mw.n_x, mw.n_y, mw.statistic, mw.p_value)
        assert (r["rho"], r["rho_lower"], r["rho_upper"], r["p_spearman"]) == (rho.rho, *rho.ci, rho.p_value)
    # simulated without any MTV effect: over 40 cohorts the rank correlation averages about zero
    rhos = [spearman(q["mtv_ml"], q["car_t_auc_0_28"]).rho
            for q in (simulate_cohort("certainty_pet", seed=s).patients for s in range(40))]
    assert abs(np.mean(rhos)) < 3 * np.std(rhos) / np.sqrt(len(rhos))
