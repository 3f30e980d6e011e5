"""The 51 soft-tissue-sarcoma PETs (TCIA STS, via IBSI/MIRP) measured with their GTV masks.

Voxel counts are checked against the masks counted independently (np.count_nonzero on the mask
read by nibabel, a different reader); STS_001 against the published consistency values.
"""

import nibabel as nib
import numpy as np
import pytest

from carpet.io import read_nifti
from carpet.quantify import quantify_study
from conftest import reference_path


def _cases():
    root = reference_path("sts-pet", "nifti")
    return sorted(p for p in root.iterdir() if (p / "PET_mask.nii.gz").exists())


def test_all_51_masks_reproduce_voxel_counts():
    cases = _cases()
    assert len(cases) == 51
    for case in cases:
        pet = read_nifti(case / "PET_image.nii.gz")
        mask = read_nifti(case / "PET_mask.nii.gz")
        result = quantify_study(pet, lesions=mask)
        n_mask = int(np.count_nonzero(np.asanyarray(nib.load(case / "PET_mask.nii.gz").dataobj)))
        assert int(result.lesions["n_voxels"].sum()) == n_mask, case.name
        assert result.summary["mtv_ml"] == pytest.approx(n_mask * pet.voxel_volume_ml, rel=1e-12)
        inside = np.asarray(pet.array)[np.asarray(mask.array) > 0]
        assert result.summary["suv_max"] == pytest.approx(float(inside.max()), rel=1e-7), case.name


def test_sts_001_published_values():
    case = reference_path("sts-pet", "nifti", "STS_001")
    result = quantify_study(read_nifti(case / "PET_image.nii.gz"), lesions=read_nifti(case / "PET_mask.nii.gz"))
    s = result.summary
    assert s["n_lesions"] == 1 and int(result.lesions["n_voxels"].iloc[0]) == 5095
    assert s["mtv_ml"] == pytest.approx(366.08, abs=0.005)
    assert s["suv_max"] == pytest.approx(7.911, abs=0.0005)
    assert result.lesions["suv_mean"].iloc[0] == pytest.approx(2.555, abs=0.0005)
    assert s["tlg"] == pytest.approx(935.4, abs=0.05)
