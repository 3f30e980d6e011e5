"""Pairwise C-index contrasts against R (tests/fixtures/r/concordance_contrasts.R wrote concordance_contrasts_r.json):
vcov(concordance(fit1, ..., fit5)) and the contrasts C_a - C_b of MTV, IPI, aaIPI, CAR-HEMATOTOX and IPI + MTV Cox
models on a simulated LBCL cohort, for PFS and OS; and the LBCL plan's contrasts table giving the same numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from carpet.errors import InputError
from carpet.stats import concordance_contrasts
from carpet.stats.models import compare_models

FIXTURES = Path(__file__).parent / "fixtures" / "r"
R = json.loads((FIXTURES / "concordance_contrasts_r.json").read_text())
MODELS = {"MTV": ["log_mtv"], "IPI": ["ipi"], "aaIPI": ["aaipi"], "CAR-HEMATOTOX": ["hematotox"],
          "IPI + MTV": ["ipi", "log_mtv"]}


@pytest.mark.parametrize("endpoint,time,event", [("pfs", "time", "status"), ("os", "os_time", "os_status")])
def test_contrasts_equal_r(endpoint, time, event):
    d = pd.read_csv(FIXTURES / "concordance_contrasts_lbcl.csv")
    fits = compare_models(d, time, event, MODELS, n_boot=0).fits
    estimates, contrasts = concordance_contrasts(d[time], d[event], {k: f.linear_predictor for k, f in fits.items()})
    want = R[endpoint]
    assert list(estimates["model"]) == R["models"]
    assert estimates["c_index"].to_numpy() == pytest.approx(want["c_index"], rel=1e-12)
    assert estimates["se"].to_numpy() == pytest.approx(np.sqrt(np.diag(want["vcov"])), rel=1e-9)
    assert len(contrasts) == len(want["contrasts"]) == 10
    for got, r in zip(contrasts.to_dict("records"), want["contrasts"]):
        assert (got["model_a"], got["model_b"]) == (r["a"], r["b"])
        for key, rkey in (("difference", "difference"), ("se", "se"), ("lower", "lower"), ("upper", "upper"),
                          ("p_value", "p")):
            assert got[key] == pytest.approx(r[rkey], rel=1e-7, abs=1e-12), (got["model_a"], got["model_b"], key)


def test_contrasts_need_two_scores_and_a_difference_of_one_score_with_itself_is_zero():
    with pytest.raises(InputError, match="at least two"):
        concordance_contrasts([1, 2, 3], [1, 1, 0], {"a": [1, 2, 3]})
    _, c = concordance_contrasts([1, 2, 3, 4, 5], [1, 1, 0, 1, 0], {"a": [5, 3, 4, 1, 2], "b": [5, 3, 4, 1, 2]})
    assert c.loc[0, "difference"] == 0 and c.loc[0, "se"] == 0 and np.isnan(c.loc[0, "p_value"])


def test_lbcl_plan_compares_mtv_with_the_other_scores_from_raw_inputs(tmp_path):
    """The packaged LBCL plan derives IPI, aaIPI and CAR-HEMATOTOX from the raw simulated columns and writes the
    contrasts; they equal concordance_contrasts on the fixture built from the same cohort (seed 2025)."""
    import yaml

    from carpet.analyze import run_analysis
    from carpet.synth.cohort import simulate_cohort

    plan = yaml.safe_load((Path(__file__).resolve().parents[1] / "src/carpet/plans/lbcl_mtv_vs_ipi.yaml").read_text())
    plan["analyses"] = [dict(a, n_boot=0) for a in plan["analyses"] if a["type"] == "compare_models"]
    cohort = simulate_cohort("lbcl_mtv", seed=2025)
    raw = cohort.raw_patients
    assert not {"pfs_months", "ipi", "car_hematotox"} & set(raw.columns)
    res = run_analysis(raw, plan, tmp_path, imaging=cohort.imaging_table()).results
    for endpoint in ("pfs", "os"):
        got = pd.DataFrame(res[f"compare_models_{endpoint}"]["contrasts"])
        want = pd.DataFrame(R[endpoint]["contrasts"])
        assert got["difference"].to_numpy() == pytest.approx(want["difference"].to_numpy(), abs=1e-9)
        assert got["p_value"].to_numpy() == pytest.approx(want["p"].to_numpy(), rel=1e-6)
    assert (tmp_path / "compare_models_pfs_cindex_contrasts.csv").is_file()
