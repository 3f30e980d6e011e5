"""pct41 on blurred spheres follows the analytic threshold model in ``reference/nema-threshold``.

Spheres are rasterised with 5×5×5 sub-voxel supersampling (partial-volume fractions), set on a
uniform background, blurred with a Gaussian PSF (FWHM 6 mm, scipy.ndimage.gaussian_filter), and
segmented with ``pct41``. The recovered volume / true volume is compared with the model's
``V_p41`` (computed without voxelisation); tolerance 4 % of the true volume (worst seen: 2.3 %) for spheres ≥ 17 mm,
which covers the 2 mm voxelisation of the sphere and of the 41 % contour.
"""

import csv

import numpy as np
import pytest
from scipy import ndimage

from carpet.segment import SegmentParams, segment
from conftest import reference_path

pytestmark = pytest.mark.filterwarnings("ignore:no minimum lesion volume")
VOXEL_MM = 2.0
FWHM_MM = 6.0
TOLERANCE = 0.04


def _blurred_sphere(diameter_mm, ratio, voxel_mm=VOXEL_MM, fwhm_mm=FWHM_MM, sub=5):
    r = diameter_mm / 2
    n = int(np.ceil((diameter_mm + 8 * fwhm_mm) / voxel_mm)) | 1
    centre = (n - 1) / 2 * voxel_mm + 0.37  # off the voxel lattice on purpose
    offs = (np.arange(sub) + 0.5) / sub - 0.5
    ax = np.arange(n) * voxel_mm
    # partial-volume fraction per voxel: count the sub-voxel sample points inside the sphere
    frac = np.zeros((n, n, n))
    for dx in offs:
        x2 = (ax[:, None, None] + dx * voxel_mm - centre) ** 2
        for dy in offs:
            y2 = (ax[None, :, None] + dy * voxel_mm - centre) ** 2
            for dz in offs:
                z2 = (ax[None, None, :] + dz * voxel_mm - centre) ** 2
                frac += (x2 + y2 + z2) <= r * r
    frac /= sub ** 3
    image = 1.0 + (ratio - 1.0) * frac
    sigma = fwhm_mm / (2 * np.sqrt(2 * np.log(2))) / voxel_mm
    return ndimage.gaussian_filter(image, sigma, mode="nearest").astype(np.float32)


def _model_rows():
    path = reference_path("nema-threshold", "sphere_threshold_model.csv")
    with open(path, newline="") as fh:
        return [r for r in csv.DictReader(fh)
                if float(r["fwhm_mm"]) == FWHM_MM and float(r["diameter_mm"]) >= 17]


def test_pct41_volumes_follow_threshold_model():
    rows = _model_rows()
    assert len(rows) == 8
    # background 1, spheres 4 or 8: blurred maxima of 4:1 spheres are just below 4, so seed at 2.5
    params = SegmentParams(min_volume_ml=0.0, seed_suv=2.5)
    errors = []
    for r in rows:
        d, ratio = float(r["diameter_mm"]), float(r["sphere_to_bkg"])
        image = _blurred_sphere(d, ratio)
        labels = segment(image, (VOXEL_MM,) * 3, ["pct41"], params=params).labels["pct41"]
        assert labels.max() == 1
        v_true_ml = np.pi * d ** 3 / 6 / 1000
        rel = (labels > 0).sum() * VOXEL_MM ** 3 / 1000 / v_true_ml
        errors.append(rel - float(r["V_p41"]))
    print("pct41 volume ratio - model:", np.round(errors, 4))
    assert max(abs(e) for e in errors) <= TOLERANCE, errors


def test_pct41_trend_small_spheres_oversegmented():
    vols = {}
    for d in (17, 37):
        image = _blurred_sphere(d, 4.0)
        lab = segment(image, (VOXEL_MM,) * 3, ["pct41"], params=SegmentParams(seed_suv=2.5)).labels["pct41"]
        vols[d] = (lab > 0).sum() * VOXEL_MM ** 3 / (np.pi * d ** 3 / 6)
    assert vols[17] > vols[37] > 1.0
