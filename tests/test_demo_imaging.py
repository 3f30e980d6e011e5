"""``carpet demo``'s imaging analyses read the MTV ``carpet batch`` measured on the demo's phantoms, not the
simulator's ``mtv_ml`` (issue 13): the CERTAINTY plan's Cox model of log MTV equals a direct fit on the
batch's imaging.csv, and a phantom made bigger changes the measured MTV and with it the analysis."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import yaml

from carpet import demo
from carpet.analyze import run_analysis
from carpet.report.html import Report
from carpet.stats import cox
from carpet.synth.cohort import SimulatedCohort, simulate_cohort

PLAN = demo.Path(demo.__file__).parent / "plans" / "certainty_mtv.yaml"


def _cox_plan() -> dict:
    """The packaged CERTAINTY plan (its imaging window and MTV derivation) with one Cox model of log MTV."""
    plan = yaml.safe_load(PLAN.read_text())
    plan["analyses"] = [{"type": "cox", "endpoint": "pfs", "covariates": ["log_mtv"]}]
    return plan


def _direct_hr(cohort, mtv: pd.Series) -> float:
    """Cox HR of log MTV on the simulator's PFS answers, MTV given per patient."""
    data = cohort.patients.assign(log_mtv=np.log(cohort.patients["patient_id"].map(mtv))).dropna(subset=["log_mtv"])
    return float(cox(data, duration="pfs_months", event="pfs_event", covariates=["log_mtv"]).summary.loc["log_mtv",
                                                                                                        "hr"])


def _measured(path) -> pd.Series:
    table = pd.read_csv(path)
    return table.set_index("patient_id")["mtv_ml_suv4"]


@pytest.mark.slow
def test_demo_analysis_reads_the_mtv_batch_measured(tmp_path, monkeypatch):
    cohort = simulate_cohort("certainty_pet", n=14, seed=5)
    monkeypatch.setattr(demo, "MEASURED_IMAGING", ("certainty_pet",))
    state = {"out": tmp_path / "demo", "cohorts": {"certainty_pet": cohort}, "report": Report("test")}
    demo._measured_imaging(state)
    imaging = state["imaging"]["certainty_pet"]
    measured = _measured(imaging)
    simulated = cohort.patients.set_index("patient_id")["mtv_ml"].dropna()
    assert sorted(measured.index) == sorted(simulated.index)
    assert (measured != simulated[measured.index]).any()   # voxelised spheres: not the simulator's numbers
    assert ((measured - simulated[measured.index]) / simulated[measured.index]).abs().max() < 0.2   # but close

    result = run_analysis(cohort.raw_patients, _cox_plan(), tmp_path / "a1", imaging=imaging)
    hr = result.results["cox_pfs"]["summary"][0]["hr"]
    assert hr == pytest.approx(_direct_hr(cohort, measured), rel=1e-9)
    assert hr != pytest.approx(_direct_hr(cohort, simulated), rel=1e-6)

    # perturb one phantom: its spheres twice the volume; the batch re-measures it, the analysis follows
    target = measured.index[0]
    original = SimulatedCohort.mtv_phantom_spec

    def bigger(self, patient_id):
        spec = original(self, patient_id)
        if patient_id != target:
            return spec
        return replace(spec, lesions=tuple(replace(les, radius_mm=les.radius_mm * 2 ** (1 / 3)) for les in spec.lesions))

    monkeypatch.setattr(SimulatedCohort, "mtv_phantom_spec", bigger)
    demo._measured_imaging(state)
    again = _measured(state["imaging"]["certainty_pet"])
    assert again[target] == pytest.approx(2 * measured[target], rel=0.2)
    assert again.drop(target).equals(measured.drop(target))
    result = run_analysis(cohort.raw_patients, _cox_plan(), tmp_path / "a2", imaging=state["imaging"]["certainty_pet"])
    hr2 = result.results["cox_pfs"]["summary"][0]["hr"]
    assert hr2 != pytest.approx(hr, rel=1e-6)
    assert hr2 == pytest.approx(_direct_hr(cohort, again), rel=1e-9)
