"""The 17 IBSI SUV digital reference objects: SUVbw min/median/max 0.20/1.00/4.00 inside the mask.

Source: oncoray/suv_computation (Vácha et al., IBSI), ``../shared/reference/suv-dro`` (CC BY 4.0).
"""

from __future__ import annotations

import numpy as np
import pytest

from carpet.io.nifti import read_nifti
from carpet.suv import to_suv
from conftest import reference_path

DROS = ["DRO_0_0", "DRO_1_0", "DRO_2_0", "DRO_2_1", "DRO_2_2", "DRO_2_3", "DRO_2_4", "DRO_2_5",
        "DRO_3_0", "DRO_3_1", "DRO_3_2", "DRO_3_3", "DRO_3_4", "DRO_4_0", "DRO_4_1", "DRO_4_2",
        "DRO_5_0"]


@pytest.mark.parametrize("name", DROS)
def test_dro(name):
    root = reference_path("suv-dro", "DRO", name)
    suv, result = to_suv(root / "PT")
    mask = read_nifti(root / "mask" / "DRO_mask.nii.gz")
    assert suv.same_grid(mask), "carpet's DICOM geometry must match the DRO's own NIfTI mask"
    inside = suv.array[mask.array > 0]
    got = np.array([inside.min(), np.median(inside), inside.max()], dtype=np.float64)
    expected = np.array([0.20, 1.00, 4.00])
    if name == "DRO_2_3":
        # CM2ML values stored as truncated integers: the exact Du Bois BSA gives 0.189/0.985/3.977 (reference
        # README), so the minimum is 5 % low; median and max are within the 3 %
        np.testing.assert_allclose(got, [0.189, 0.985, 3.977], atol=5e-4)
        np.testing.assert_allclose(got[1:], expected[1:], rtol=0.03)
    else:
        np.testing.assert_array_equal(np.round(got, 2), expected)
    assert result.to_dict()["ruleset"]


def test_dro_rules_recorded():
    _, res = to_suv(reference_path("suv-dro", "DRO", "DRO_3_2", "PT"))
    assert "back-computed" in res.reference_time_rule
    _, res = to_suv(reference_path("suv-dro", "DRO", "DRO_4_2", "PT"))
    assert res.injection_time.startswith("2025-01-01T23:30")
