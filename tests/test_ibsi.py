"""IBSI 1 digital phantom: the reference values of the intensity peaks and basic statistics.

Expected values are read from the IBSI reference table in ``../shared/reference/ibsi-phantom``
(values rounded to 3 significant digits there, hence the tolerances).
"""

import csv

import numpy as np
import pytest

from carpet.io import read_nifti
from carpet.lesions import measure_lesions
from conftest import reference_path


@pytest.fixture(scope="module")
def ibsi_reference() -> dict[str, float]:
    path = reference_path("ibsi-phantom", "ibsi1_digital_phantom_reference_values.csv")
    with open(path, newline="", encoding="utf-8") as fh:
        return {row["feature"]: float(row["value"]) for row in csv.DictReader(fh)
                if row["value"].replace(".", "", 1).replace("-", "", 1).isdigit()}


@pytest.fixture(scope="module")
def ibsi_lesion():
    pet = read_nifti(reference_path("ibsi-phantom", "nifti", "image", "phantom.nii.gz"))
    mask = read_nifti(reference_path("ibsi-phantom", "nifti", "mask", "mask.nii.gz"))
    table = measure_lesions(pet, (mask.array > 0).astype(np.int32))
    assert len(table) == 1
    return table.iloc[0]


def test_ibsi_local_and_global_peak(ibsi_lesion, ibsi_reference):
    assert ibsi_reference["local intensity peak"] == 2.6
    assert ibsi_lesion["suv_peak_local"] == pytest.approx(ibsi_reference["local intensity peak"], abs=0.005)
    assert ibsi_lesion["suv_peak"] == pytest.approx(ibsi_reference["global intensity peak"], abs=0.005)


def test_ibsi_volume_mean_max_variance(ibsi_lesion, ibsi_reference):
    assert ibsi_lesion["volume_ml"] * 1000 == pytest.approx(ibsi_reference["volume (voxel counting)"], abs=1e-9)
    assert ibsi_lesion["suv_mean"] == pytest.approx(ibsi_reference["mean"], abs=0.005)
    assert ibsi_lesion["suv_max"] == ibsi_reference["maximum"]
    assert ibsi_lesion["suv_sd"] ** 2 == pytest.approx(ibsi_reference["variance"], abs=0.005)
