"""Raw GE Discovery ST PET (TCIA Soft-tissue-Sarcoma STS_001, via oncoray/mirp): SUVmax in GTV_Mass.

Expected (``../shared/reference/README.md``): SUVbw max 7.91 ± 0.02 with SUV factor 2.42903e-4 (SeriesTime
rule); the GTV holds 5,095 voxels in the reference NIfTI mask made from the same RTSTRUCT.
"""

from __future__ import annotations

import pytest

from carpet.io.masks import read_mask, read_rtstruct
from carpet.io.nifti import read_nifti
from carpet.suv import to_suv
from conftest import reference_path


@pytest.fixture(scope="module")
def sts():
    root = reference_path("sts-pet", "STS_001_raw", "FDG_PET")
    suv, result = to_suv(root / "image")
    return root, suv, result


def test_suv_factor_and_rule(sts):
    _, suv, result = sts
    assert result.factor == pytest.approx(2.42903e-4, rel=1e-5)
    assert "SeriesTime" in result.reference_time_rule
    assert suv.meta["dicom"]["n_rescale_slopes"] == 267  # a different slope on every slice


def test_suvmax_in_gtv_from_rtstruct(sts):
    root, suv, _ = sts
    gtv = read_rtstruct(root / "mask", suv, roi="GTV_Mass")["GTV_Mass"]
    values = suv.array[gtv.array]
    assert values.max() == pytest.approx(7.91, abs=0.02)
    assert 0.15 <= values.min() <= 0.20
    assert gtv.array.sum() == 5095


def test_rtstruct_matches_reference_nifti_mask(sts):
    """carpet's rasteriser vs the IBSI/MIRP NIfTI mask made from the same RTSTRUCT outside carpet."""
    root, suv, _ = sts
    labels = read_mask(root / "mask", suv)
    names = labels.meta["labels"]
    assert sorted(names.values()) == ["GTV_Edema", "GTV_Mass"]
    mass_label = next(k for k, v in names.items() if v == "GTV_Mass")
    ref_dir = reference_path("sts-pet", "nifti", "STS_001")
    ref_mask = read_mask(ref_dir / "PET_mask.nii.gz", suv)  # a crop, resampled onto the full PET grid
    a, b = labels.array == mass_label, ref_mask.array > 0
    dice = 2 * (a & b).sum() / (a.sum() + b.sum())
    assert dice > 0.99
    ref_pet = read_nifti(ref_dir / "PET_image.nii.gz")
    assert float(ref_pet.array[read_nifti(ref_dir / "PET_mask.nii.gz").array > 0].max()) == \
        pytest.approx(float(suv.array[a].max()), abs=1e-3)


def test_cropped_pet_ct_study_pairs_and_agrees():
    """The IBSI-cropped STS_001 study (PET already in SUV, Units GML; CT; an RTSTRUCT on each)."""
    from carpet.io.dicom import read_pet_ct

    root = reference_path("sts-pet", "dicom", "STS_001")
    pet, ct = read_pet_ct(root)
    assert pet.meta["suv"]["units"] == "GML" and ct.same_grid(pet)
    on_pet = read_mask(root / "PET" / "mask", pet)
    assert on_pet.meta["labels"] == {1: "GTV_Mass_PET"} and (on_pet.array == 1).sum() == 5095
    assert float(pet.array[on_pet.array == 1].max()) == pytest.approx(7.91, abs=0.02)
    # the CT-drawn contour, rasterised onto the PET grid, covers nearly the same voxels
    on_ct = read_mask(root / "CT" / "mask", pet).array == 1
    dice = 2 * (on_ct & (on_pet.array == 1)).sum() / (on_ct.sum() + (on_pet.array == 1).sum())
    assert dice > 0.97
