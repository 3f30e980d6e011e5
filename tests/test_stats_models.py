"""Model comparison and landmark analysis against R (fixtures made by tests/fixtures/r/models_r_reference.R,
and ../shared/reference/survival) and against brute-force computations written here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lifelines import KaplanMeierFitter

from carpet.errors import InputError
from carpet.stats.landmark import landmark
from carpet.stats.models import compare_models, td_auc

FIXTURES = Path(__file__).parent / "fixtures" / "r"
MODELS = {"IPI": ["ipi"], "MTV": ["log_mtv"], "IPI+MTV": ["ipi", "log_mtv"],
          "IPI+MTV+LDH": ["ipi", "log_mtv", "ldh_high"]}


@pytest.fixture(scope="module")
def sim():
    return pd.read_csv(FIXTURES / "models_lbcl_sim.csv")


@pytest.fixture(scope="module")
def r_ref():
    ref = pd.read_csv(FIXTURES / "models_r_reference.csv")
    return dict(zip(ref["what"], ref["value"]))


@pytest.fixture(scope="module")
def comparison(sim):
    return compare_models(sim, "time_months", "event", MODELS, n_boot=100, seed=11, horizon=12)


def test_fit_statistics_match_r(comparison, r_ref):
    s = comparison.summary.set_index("model")
    for name in MODELS:
        assert s.loc[name, "loglik"] == pytest.approx(r_ref[f"{name}: loglik"], abs=1e-5)
        assert s.loc[name, "aic"] == pytest.approx(r_ref[f"{name}: AIC"], abs=1e-5)
        assert s.loc[name, "c_index"] == pytest.approx(r_ref[f"{name}: concordance"], abs=1e-6)
    lr = comparison.lr_tests.set_index(["smaller", "larger"])
    for a, b in [("IPI", "IPI+MTV"), ("MTV", "IPI+MTV"), ("IPI+MTV", "IPI+MTV+LDH")]:
        assert lr.loc[(a, b), "statistic"] == pytest.approx(r_ref[f"LR {a} vs {b}: chisq"], abs=1e-4)
        assert lr.loc[(a, b), "df"] == r_ref[f"LR {a} vs {b}: df"]
        assert lr.loc[(a, b), "p_value"] == pytest.approx(r_ref[f"LR {a} vs {b}: p"], rel=1e-4)
    # IPI and MTV are not nested: no LR test between them
    assert ("IPI", "MTV") not in lr.index and ("MTV", "IPI") not in lr.index


def test_td_auc_matches_r_riskregression(sim, comparison, r_ref):
    s = comparison.summary.set_index("model")
    for name in MODELS:
        assert s.loc[name, "td_auc"] == pytest.approx(r_ref[f"{name}: td AUC at 12"], abs=1e-6)
        lp = comparison.fits[name].linear_predictor
        assert td_auc(sim.time_months, sim.event, lp, 6) == pytest.approx(r_ref[f"{name}: td AUC at 6"], abs=1e-6)


def test_td_auc_matches_brute_force_with_lifelines_censoring_km(sim):
    t, e = sim.time_months.to_numpy(), sim.event.to_numpy()
    risk = np.round(sim.log_mtv.to_numpy(), 1)  # rounded: ties in the marker count 1/2
    horizon = 9.0
    # reverse KM with events before censorings at tied times: move event times a hair earlier
    cens = KaplanMeierFitter().fit(np.where(e == 1, t - 1e-7, t), 1 - e)
    w_control = 1.0 / cens.survival_function_at_times(horizon).iloc[0]
    num = den = 0.0
    for i in range(len(t)):
        if not (t[i] <= horizon and e[i] == 1):
            continue
        w_i = 1.0 / cens.survival_function_at_times(t[i] - 1e-9).iloc[0]
        for j in range(len(t)):
            if t[j] > horizon:
                num += w_i * w_control * (1.0 if risk[i] > risk[j] else 0.5 if risk[i] == risk[j] else 0.0)
                den += w_i * w_control
    assert td_auc(t, e, risk, horizon) == pytest.approx(num / den, rel=1e-12)


def test_c_index_and_loglik_match_shared_r_reference(reference):
    data = json.loads(reference("survival", "reference_values.json").read_text())
    r = {(v["dataset"], v["what"]): v["value"] for v in data["values"]}
    whas = pd.read_csv(reference("survival", "data", "whas500.csv"))
    covs = ["age", "gender", "bmi", "chf", "hr", "sysbp"]
    res = compare_models(whas, "time", "status", {"age": ["age"], "full": covs}, n_boot=0)
    full = res.summary.set_index("model").loc["full"]
    key = "Cox age+gender+bmi+chf+hr+sysbp (efron): "
    assert full["c_index"] == pytest.approx(r[("whas500", key + "concordance (Harrell C, as printed by summary.coxph)")],
                                            abs=1e-6)
    assert full["loglik"] == pytest.approx(r[("whas500", key + "log partial likelihood (fitted)")], abs=1e-5)
    assert res.differences["n_boot"].tolist() == [0] and np.isnan(res.differences["lower"].iloc[0])


def test_bootstrap_difference(comparison, sim):
    d = comparison.differences.set_index(["model_a", "model_b"])
    s = comparison.summary.set_index("model")
    row = d.loc[("IPI", "IPI+MTV")]
    assert row["c_diff"] == pytest.approx(s.loc["IPI", "c_index"] - s.loc["IPI+MTV", "c_index"], abs=1e-15)
    assert row["lower"] < row["c_diff"] < row["upper"] and row["n_boot"] == 100
    assert len(d) == 6  # every pair once
    again = compare_models(sim, "time_months", "event", MODELS, n_boot=100, seed=11)
    assert again.differences["lower"].tolist() == comparison.differences["lower"].tolist()  # seeded
    refit = compare_models(sim, "time_months", "event", {"IPI": ["ipi"], "MTV": ["log_mtv"]}, n_boot=20,
                           seed=1, refit=True).differences.iloc[0]
    assert refit["n_boot"] == 20 and refit["lower"] < refit["upper"]


def test_bootstrap_interval_recomputed_with_lifelines_concordance(sim):
    # the same resamples (row indices rng.integers(0, n, n) per resample, seeded), each C by lifelines
    from lifelines.utils import concordance_index

    models = {"IPI": ["ipi"], "IPI+MTV": ["ipi", "log_mtv"]}
    res = compare_models(sim, "time_months", "event", models, n_boot=40, seed=4)
    t, e = sim.time_months.to_numpy(), sim.event.to_numpy()
    rng = np.random.default_rng(4)
    diffs = []
    for _ in range(40):
        idx = rng.integers(0, len(t), len(t))
        c = [concordance_index(t[idx], -res.fits[m].linear_predictor[idx], e[idx]) for m in models]
        diffs.append(c[0] - c[1])
    row = res.differences.iloc[0]
    assert [row["lower"], row["upper"]] == pytest.approx(np.quantile(diffs, [0.025, 0.975]), abs=1e-12)
    assert row["se"] == pytest.approx(np.std(diffs, ddof=1), abs=1e-12)


def test_compare_models_uses_common_complete_cases_and_rejects_bad_input(sim):
    df = sim.copy()
    df.loc[:9, "ldh_high"] = np.nan
    res = compare_models(df, "time_months", "event", {"IPI": ["ipi"], "IPI+LDH": ["ipi", "ldh_high"]}, n_boot=0)
    assert (res.summary["n"] == len(df) - 10).all() and res.provenance["n_dropped"] == 10
    with pytest.raises(InputError, match="at least two"):
        compare_models(sim, "time_months", "event", {"IPI": ["ipi"]})
    with pytest.raises(InputError, match="not found"):
        compare_models(sim, "time_months", "event", {"a": ["ipi"], "b": ["nope"]})
    df["constant"] = 1.0
    with pytest.raises(InputError, match="constant"):
        compare_models(df, "time_months", "event", {"a": ["ipi"], "b": ["ipi", "constant"]}, n_boot=0)
    df["arm"] = "x"
    with pytest.raises(InputError, match="not numeric"):
        compare_models(df, "time_months", "event", {"a": ["ipi"], "b": ["arm"]})


def test_landmark_matches_r(sim, r_ref):
    df = sim.assign(high_ipi=(sim.ipi >= 3).astype(int))
    lm = landmark(df, "time_months", "event", 3, "high_ipi")
    assert len(lm.data) == r_ref["landmark 3: n at risk"]
    assert lm.at_risk.set_index("group").loc[1, "n_at_risk"] == r_ref["landmark 3: n at risk high_ipi=1"]
    assert lm.at_risk["n_at_risk"].sum() + lm.at_risk["excluded"].sum() == len(df)
    assert (lm.data["time_from_landmark"] > 0).all()
    assert lm.logrank.statistic == pytest.approx(r_ref["landmark 3: log-rank chisq"], rel=1e-6)
    assert lm.logrank.p_value == pytest.approx(r_ref["landmark 3: log-rank p"], rel=1e-4)
    s = lm.survival_at([6]).set_index("group")
    for g in (0, 1):
        assert s.loc[g, "surv"] == pytest.approx(r_ref[f"landmark 3: S(6 after landmark) high_ipi={g}"], rel=1e-6)
        assert s.loc[g, "n_risk"] == r_ref[f"landmark 3: n.risk(6 after landmark) high_ipi={g}"]
    fig, fig_stats = lm.figure(title="PFS from month 3")
    assert fig_stats["logrank"]["statistic"] == pytest.approx(r_ref["landmark 3: log-rank chisq"], rel=1e-6)
    assert fig_stats["groups"]["high_ipi=1"]["n"] == r_ref["landmark 3: n at risk high_ipi=1"]


def test_landmark_excludes_patients_not_at_risk():
    # day-30 metCR: patient 3 dies on day 30 and patient 4 is censored on day 12 -> excluded
    df = pd.DataFrame({"days": [100, 45, 30, 12, 200, 31], "event": [1, 1, 1, 0, 0, 1],
                       "metcr": ["yes", "no", "no", "yes", "yes", "no"]})
    lm = landmark(df, "days", "event", 30, "metcr")
    assert sorted(lm.data["time_from_landmark"]) == [1, 15, 70, 170]
    assert lm.at_risk.set_index("group")["excluded"].to_dict() == {"no": 1, "yes": 1}
    with pytest.raises(InputError, match="fewer than two groups"):
        landmark(df, "days", "event", 120, "metcr")
