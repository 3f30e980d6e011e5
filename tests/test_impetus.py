"""IMPeTUs record (spec §1.2): count categories at their bounds, FL/P/EMD logic, the report string."""

import pandas as pd
import pytest

from carpet.scores.impetus import count_category, impetus_record


@pytest.mark.parametrize("n, cat", [(0, 0), (1, 1), (3, 1), (4, 2), (10, 2), (11, 3), (50, 3), (None, None)])
def test_count_category_bounds(n, cat):
    assert count_category(n) == cat


def test_record_counts_paramedullary_as_focal_and_p():
    lesions = pd.DataFrame({
        "site": ["bone", "bone", "paramedullary", "extramedullary", "indeterminate"],
        "deauville": [4, 5, 4, 4, 3],
        "skeletal_site": ["Sp", "S", "E", None, None],
        "emd_subtype": [None, None, None, "N", None],
    })
    rec = impetus_record(lesions, bm_ds=3, lytic_count=5, fracture_sites=["Sp"])
    assert rec.fl_count == 3 and rec.fl_count_cat == 1
    assert rec.fl_sites == {"S", "Sp", "E"} and rec.fl_target_ds == 5
    assert rec.paramedullary and rec.paramedullary_ds == 4
    assert rec.emd and rec.emd_subtypes == {"N"} and rec.emd_ds == 4
    assert rec.n_indeterminate == 1
    assert rec.report_string == "BM3 F1(S,Sp,E)DS5 L2 Fr(Sp) P EMD(N)DS4"
    d = rec.to_dict()
    assert d["ruleset"] == "IMPETUS2016" and d["fl_sites"] == ["E", "S", "Sp"]


def test_record_without_lesions_and_unknowns():
    rec = impetus_record(pd.DataFrame({"site": [], "deauville": []}), bm_ds=2)
    assert rec.report_string == "BM2 F0 L?"
    assert not rec.paramedullary and not rec.emd and rec.fracture is None
    rec = impetus_record(pd.DataFrame({"site": ["bone"] * 4 + ["unknown"], "deauville": [3, 4, 4, 4, 5]}),
                         bm_ds=None)
    assert rec.fl_count_cat == 2 and rec.fl_sites is None
    assert rec.report_string.startswith("BM? F2(?)DS4")
    assert any("unknown site" in w for w in rec.warnings)


def test_reactive_marrow_warning():
    none = pd.DataFrame({"site": [], "deauville": []})
    assert impetus_record(none, bm_ds=4, days_from_infusion=30).warnings
    assert not impetus_record(none, bm_ds=4, days_from_infusion=31).warnings
    assert not impetus_record(none, bm_ds=3, days_from_infusion=30).warnings


def test_bad_inputs_are_input_errors_and_numpy_marrow_score_warns():
    import numpy as np

    from carpet.errors import InputError

    with pytest.raises(InputError, match="negative"):
        count_category(-1)
    with pytest.raises(InputError, match="skeletal site"):
        impetus_record(pd.DataFrame({"site": [], "deauville": []}), bm_ds=2, fracture_sites=["rib"])
    none = pd.DataFrame({"site": [], "deauville": []})
    assert impetus_record(none, bm_ds=np.int64(4), days_from_infusion=30).warnings
