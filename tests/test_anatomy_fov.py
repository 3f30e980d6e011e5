"""Anatomy that knows what is in the field of view: skeleton-only bone, references refused with the reason
when their organ is absent, and the cropped TCIA STS PET/CTs (pelvis or thigh only) end to end."""

from __future__ import annotations

import numpy as np
import pytest

from carpet.anatomy import BoneParams, bone_mask
from carpet.volume import Volume


def _ct_with_spots():
    """2 mm grid of soft tissue (40 HU) with a long bone (cortex 1000 HU around marrow 250 HU), an isolated
    calcified spot (300 HU, 0.5 mL), a clip (2000 HU, 0.06 mL) and a small bone cut by the field of view."""
    shape, sp = (60, 60, 60), (2.0, 2.0, 2.0)
    i, j, k = np.ogrid[:shape[0], :shape[1], :shape[2]]
    ct = np.full(shape, 40, np.int16)
    r = np.hypot(i - 20, j - 20)
    ct[(r <= 8) & (k >= 5) & (k < 55)] = 1000
    ct[(r <= 6) & (k >= 7) & (k < 53)] = 250
    spot = (i - 45) ** 2 + (j - 45) ** 2 + (k - 30) ** 2 <= 2.5 ** 2                # ≈ 0.52 mL, 300 HU
    ct[spot] = 300
    clip = (i >= 44) & (i < 46) & (j >= 20) & (j < 22) & (k >= 10) & (k < 14)     # 16 voxels: 0.128 mL
    ct[clip] = 2000
    edge = (i >= 50) & (j >= 50) & (k < 2)                                          # 0.8 mL bone at the border
    ct[edge] = 1000
    return Volume(ct, sp), spot, clip, edge


def test_bone_mask_keeps_the_skeleton_and_drops_isolated_spots():
    ct, spot, clip, edge = _ct_with_spots()
    bone = np.asarray(bone_mask(ct).array)
    assert not bone[spot].any() and not bone[clip].any()
    assert bone[edge].all()                                  # small, but the field of view cuts it
    assert bone[20, 20, 30]                                  # the long bone, marrow included
    kept = bone_mask(ct, params=BoneParams(skeleton_min_ml=0.0, cortex_hu=0.0)).array
    assert np.asarray(kept)[spot].all() and np.asarray(kept)[clip].all()          # the filter, switched off
    # edges: the clip (2000 HU) goes by size, the spot (max 300 HU) by its missing compact bone
    vox_ml = 0.008
    clip_ml = np.asarray(bone_mask(ct, params=BoneParams(cortex_hu=0.0, skeleton_min_ml=0.0)).array)
    assert clip_ml[clip].all()
    assert np.asarray(bone_mask(ct, params=BoneParams(cortex_hu=300.0, skeleton_min_ml=0.0)).array)[spot].any()
    assert not np.asarray(bone_mask(ct, params=BoneParams(cortex_hu=300.01, skeleton_min_ml=0.0)).array)[spot].any()
    n_clip = int(np.asarray(bone_mask(ct, params=BoneParams(cortex_hu=0.0, skeleton_min_ml=0.0)).array)[
        40:50, 15:27, 6:18].sum())
    assert bone_mask(ct, params=BoneParams(skeleton_min_ml=n_clip * vox_ml)).array[44, 20, 11]
    assert not bone_mask(ct, params=BoneParams(skeleton_min_ml=n_clip * vox_ml + 1e-6)).array[44, 20, 11]


@pytest.mark.slow
@pytest.mark.parametrize("case", ["STS_001", "STS_003"])
def test_cropped_sts_ct_refuses_absent_references_and_sites(case):
    from conftest import reference_path

    from carpet.io import read_image
    from carpet.quantify import quantify_study

    root = reference_path("sts-pet", "dicom", case)
    pet, ct = read_image(root / "PET" / "image"), read_image(root / "CT" / "image")
    res = quantify_study(pet, ct=ct)
    refs = res.summary["reference_regions"]
    assert not refs["liver"]["usable"] and refs["liver"]["reason"].startswith("no liver in the field of view")
    assert not refs["blood_pool"]["usable"] and refs["blood_pool"]["reason"].startswith("no thorax")
    marrow = res.summary["marrow"]
    assert not marrow["usable"] and "no vertebral bodies" in marrow["reason"]
    assert res.summary["marrow"]["deauville"] == "NE"
    assert (res.lesions["deauville"] == "NE").all()          # no reference: no score, never a fallback
    t = res.lesions
    assert "paramedullary" not in set(t["site"])
    if case == "STS_003":                                     # the sarcoma and its intratumoural hyperdense spot
        big = t.loc[t.volume_ml.idxmax()]
        assert big.volume_ml > 60 and big.site != "paramedullary" and big.bone_fraction == 0
    else:                                                     # the bladder beside the pubis
        hot = t.loc[t.suv_max.idxmax()]
        assert hot.suv_max > 20 and hot.bone_contact_fraction > 0.2 and hot.site == "indeterminate"
    # percist needs the liver: refused with the reason, not run on a guess
    from carpet.errors import InputError

    with pytest.raises(InputError, match="no liver in the field of view"):
        quantify_study(pet, ct=ct, method="percist")


def _limb(width_mm: float):
    """A limb-like cylinder (soft tissue 40 HU in air) of diameter ``width_mm``, 200 mm long, on a 4 mm grid,
    holding a long bone (cortex 1000 HU, marrow 250 HU) 8 mm behind its centre: a column of trabecular marrow
    behind the body's centre on its mid-line, like a spine, in a body too narrow to be a trunk."""
    sp = (4.0, 4.0, 4.0)
    shape = (int(width_mm / 4) + 10, int(width_mm / 4) + 10, 50)
    x, y, z = np.ogrid[:shape[0], :shape[1], :shape[2]]
    cx, cy = (shape[0] - 1) / 2, (shape[1] - 1) / 2
    origin = (-cx * 4.0, -cy * 4.0, 0.0)
    ct = np.full(shape, -1000, np.int16)
    ct[np.broadcast_to(np.hypot(x - cx, y - cy) * 4.0 <= width_mm / 2, shape)] = 40
    r = np.broadcast_to(np.hypot(x - cx, y - cy - 2.0) * 4.0, shape)
    ct[(r <= 16.0) & (z >= 2) & (z < 48)] = 1000
    ct[(r <= 11.0) & (z >= 3) & (z < 47)] = 250
    pet = np.where(ct > -500, 1.0, 0.0).astype(np.float32)
    pet[(r <= 11.0) & (z >= 3) & (z < 47)] = 2.0
    return Volume(pet, sp, origin), Volume(ct, sp, origin)


def test_spine_marrow_needs_a_trunk_wide_slice(monkeypatch):
    """The vertebral-body test's trunk width (VERTEBRA['trunk_min_width_mm'], 200 mm): a 160 mm limb with a
    central long bone is refused; the same limb passes once the width limit is below it."""
    from carpet.anatomy import references
    from carpet.anatomy.references import marrow_reference

    pet, ct = _limb(160.0)
    ref = marrow_reference(pet, ct)
    assert not ref.usable and "no vertebral bodies" in ref.reason
    references._CtOnPet._build.cache_clear()
    monkeypatch.setitem(references.VERTEBRA, "trunk_min_width_mm", 150.0)
    assert marrow_reference(pet, ct).usable
    monkeypatch.setitem(references.VERTEBRA, "trunk_min_width_mm", 180.0)
    assert not marrow_reference(pet, ct).usable
