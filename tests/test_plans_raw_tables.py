"""Every packaged plan runs on the raw tables alone: patients.csv, labs.csv, therapies.csv and imaging.csv as written,
truth.csv deleted, read as `carpet analyze` reads them. Every column each analysis reads (endpoint times and
events, groups, covariates, markers, outcomes) is the same as when the simulator's convenience columns (its
answers: pfs2_months, refractory, high_risk_cytogenetics, ...) are in the patients table too — so no plan uses
them — and each plan's raw tables hold none of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from carpet.analyze import analysis_table, load_plan
from carpet.analyze.plan import _analysis_columns
from carpet.cohort.schema import read_patients
from carpet.synth.cohort import STUDIES, simulate_cohort

PLANS = Path(__file__).resolve().parents[1] / "src" / "carpet" / "plans"
CASES = [("moffitt_post_cart", "moffitt_post_progression", 40), ("certainty_pet", "certainty_mtv", None),
         ("lbcl_mtv", "lbcl_mtv_vs_ipi", None), ("salvage_post_bcma", "salvage_after_bcma", 40)]


def _columns(plan: dict, endpoints: dict) -> list[str]:
    cols = [c for a in plan["analyses"] for _, c in _analysis_columns(a, endpoints)]
    cols += [ep[k] for ep in endpoints.values() for k in ("time", "event")]
    return sorted(set(cols))


@pytest.mark.slow
@pytest.mark.parametrize("study,plan_name,n", CASES)
def test_plan_reads_only_raw_tables(tmp_path, study, plan_name, n):
    c = simulate_cohort(study, n=n, seed=5)
    paths = c.write(tmp_path)
    paths["truth"].unlink()
    assert not set(STUDIES[study].truth_only) & set(pd.read_csv(paths["patients"]).columns)
    plan, _, _ = load_plan(PLANS / f"{plan_name}.yaml")
    raw = analysis_table(read_patients(paths["patients"]), plan, imaging=paths.get("imaging"),
                         assessments=paths.get("labs"), therapies=paths.get("therapies"))
    labs = c.lab_series() if "labs" in paths else None
    imaging = c.imaging_table() if "imaging" in paths else None
    full = analysis_table(c.treated, plan, imaging=imaging, assessments=labs,  # + the simulator's answers
                          therapies=c.therapies)
    assert set(STUDIES[study].truth_only) <= set(c.treated.columns)
    assert list(raw.data["patient_id"]) == list(full.data["patient_id"])
    columns = _columns(plan, raw.endpoints)
    assert columns and set(columns) <= set(raw.data.columns)
    for col in columns:
        a, b = raw.data[col], full.data[col]
        if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b) and not (
                pd.api.types.is_bool_dtype(a) or pd.api.types.is_bool_dtype(b)):
            assert np.allclose(a.astype(float), b.astype(float), equal_nan=True, rtol=0, atol=1e-9), col
        else:
            norm = lambda s: s.astype(object).where(s.notna(), None).map(  # noqa: E731
                lambda v: v if v is None or isinstance(v, str) else bool(v) if isinstance(v, (bool, np.bool_))
                else float(v)).tolist()
            assert norm(a) == norm(b), col
    if study == "moffitt_post_cart":  # the population the plan found from the raw tables is the 40 who progressed
        assert len(raw.everyone) == len(c.raw_patients) > len(raw.data) == len(c.patients)
        truth = c.patients.set_index("patient_id")
        got = raw.data.set_index("patient_id")
        assert np.allclose(got["pfs2_months"], truth["pfs2_months"])
        assert (got["pfs2_event"] == truth["pfs2_event"]).all()
        assert np.allclose(got["os_pp_months"], truth["os_pp_months"])
        assert (got["high_risk_cytogenetics"].eq("high") == truth["high_risk_cytogenetics"]).all()
