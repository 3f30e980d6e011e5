"""The CT bone mask where a rule looks (a region of the CT grid) and the size limit of its hole filling.

Truth: analytic hand-built CTs (a skull-like spherical shell around a brain, a long bone with a marrow canal at
soft-tissue HU) and the whole-body phantoms' bone, brain and vertebrae.
"""

from __future__ import annotations

import numpy as np
import pytest

from carpet.anatomy import BoneParams, bone_mask, liver_reference
from carpet.synth import PhantomSpec, make_phantom
from carpet.volume import Volume

SPACING = (2.0, 2.0, 4.0)


def head_and_bone_ct():
    """Soft tissue (40 HU): a skull (900 HU shell, radius 66–74 mm) around a brain (35 HU), and below it a
    vertebra-like bone (900 HU cortex, radius 24 mm, 6 mm thick) whose marrow is at soft-tissue HU."""
    n = (110, 110, 80)
    origin = [-(k - 1) * s / 2 for k, s in zip(n, SPACING)]
    x, y, z = (o + s * np.arange(k) for o, s, k in zip(origin, SPACING, n))
    X, Y, Z = np.meshgrid(x, y, z, indexing="ij")
    hu = np.full(n, 40.0, np.float32)
    r_head = np.sqrt(X ** 2 + Y ** 2 + (Z - 70.0) ** 2)
    hu[r_head < 66.0] = 35.0
    hu[(r_head >= 66.0) & (r_head <= 74.0)] = 900.0
    r_bone = np.hypot(X - 60.0, Y + 60.0)
    hu[(r_bone <= 24.0) & (r_bone > 18.0) & (Z < -40.0)] = 900.0
    brain = r_head < 62.0                                  # 4 mm inside the shell: clear of the closing
    marrow = (r_bone < 18.0 - 2.0) & (Z < -40.0)
    return Volume(hu, SPACING, tuple(origin)), brain, marrow


def test_hole_filling_fills_marrow_not_the_cranial_vault():
    ct, brain, marrow = head_and_bone_ct()
    bone = np.asarray(bone_mask(ct).array)
    assert not bone[brain].any()                           # the vault is a ring in every slice, but no marrow
    assert bone[marrow].all()                              # the canal (open at the field's edge) is medulla
    # the finding this fixes: without the size limit every brain voxel was bone
    unlimited = np.asarray(bone_mask(ct, params=BoneParams(max_hole_mm2=np.inf)).array)
    assert unlimited[brain].all()
    # the limit is the widest slice's hole: just below it the brain is filled, just above it is not
    widest = np.pi * 66.0 ** 2
    assert np.asarray(bone_mask(ct, params=BoneParams(max_hole_mm2=1.05 * widest)).array)[brain].all()
    assert not np.asarray(bone_mask(ct, params=BoneParams(max_hole_mm2=0.9 * widest)).array)[brain].any()


@pytest.mark.slow
def test_patient_phantom_skull_and_vertebrae():
    ph = make_phantom(PhantomSpec.patient(seed=0, n_lesions=0, organ_lesions=False))
    bone = np.asarray(bone_mask(ph.ct).array)
    brain = np.asarray(ph.physiology_labels.array) == 1    # PHYSIOLOGY_ORGANS[0] is the brain
    assert brain.sum() > 10000 and not bone[brain].any()
    spine = np.asarray(ph.ct.array) >= 200.0            # vertebral cortex and marrow, skull and pelvis
    assert bone[spine].mean() > 0.99
    # The liver sphere stays in the liver: the brain, soft tissue now, is homogeneous and on the right too
    # (without the search's bound at the lung's centroid the sphere went into the brain).
    liver = liver_reference(ph.pet, ph.ct)
    assert liver.usable and abs(liver.mean / ph.truth["organ_suv"]["liver"] - 1.0) < 0.05
    truth = np.asarray(ph.truth["liver_voi"]["centre_mm"])
    assert np.linalg.norm(np.asarray(liver.centre_mm) - truth) < 100.0


def test_region_equals_whole_mask_inside_and_nothing_outside():
    ph = make_phantom(PhantomSpec.whole_body(seed=0, n_lesions=30, ct_spacing_mm=(1.5625, 1.5625, 4.0)))
    whole = np.asarray(bone_mask(ph.ct).array)
    for region in ((slice(150, 350), slice(200, 330), slice(100, 200)),    # spine and its marrow
                   (slice(200, 320), slice(0, 512), slice(0, 400)),         # the mid-line band
                   (slice(300, 512), slice(100, 400), slice(0, 60))):       # a femur cut by the box
        part = np.asarray(bone_mask(ph.ct, region=region).array)
        assert np.array_equal(part[region], whole[region])
        assert part.sum() == part[region].sum()
        assert whole[region].any()


@pytest.mark.slow
def test_sites_from_the_rule_region_equal_the_whole_ct_bone():
    """classify_lesions builds the bone only in the lesions' neighbourhoods of the CT grid: every site and
    measure is the one the whole CT's bone mask gives (whole-body phantom, 1.5625 × 1.5625 × 4 mm CT)."""
    from carpet.anatomy.bone import merge_boxes
    from carpet.classify import SiteParams, _GridLabels, _label_extents, _rule_regions, classify_lesions

    ph = make_phantom(PhantomSpec.whole_body(seed=2, n_lesions=30, ct_spacing_mm=(1.5625, 1.5625, 4.0)))
    region_sites = classify_lesions(ph.lesion_labels, ph.ct)
    whole_sites = classify_lesions(ph.lesion_labels, ph.ct, bone=bone_mask(ph.ct))
    assert region_sites.equals(whole_sites)
    boxes = _GridLabels(ph.lesion_labels, ph.ct, _label_extents(np.asarray(ph.lesion_labels.array))[1]).boxes
    regions = merge_boxes(_rule_regions(boxes, SiteParams(), 6.0, ph.pet.spacing, ph.ct))
    assert sum(np.prod([b.stop - b.start for b in r]) for r in regions) < 0.5 * np.prod(ph.ct.shape)


def spine_ct():
    """A hand-built CT (2 × 2 × 4 mm, soft tissue 40 HU): a vertebra-like ring bone along z (900 HU cortex
    radius 18–24 mm around x = -40, y = 0; marrow at soft-tissue HU: filled only if the whole ring is read), a
    long bone (radius 10 mm, along x at y = 40, z = 0) leaving the field of view at x's far edge, and an
    isolated calcification (900 HU ball of radius 5 mm, 0.5 mL: not skeleton)."""
    n = (120, 100, 120)
    origin = [-(k - 1) * s / 2 for k, s in zip(n[:2], SPACING)] + [-78.0]
    x, y, z = (o + s * np.arange(k) for o, s, k in zip(origin, SPACING, n))
    X, Y, Z = np.meshgrid(x, y, z, indexing="ij")
    hu = np.full(n, 40.0, np.float32)
    ring = np.hypot(X + 40.0, Y)
    hu[(ring >= 18.0) & (ring <= 24.0)] = 900.0
    hu[(np.hypot(Y - 40.0, Z) <= 10.0) & (X > 60.0)] = 900.0
    hu[np.sqrt((X - 10.0) ** 2 + (Y + 71.0) ** 2 + (Z - 30.0) ** 2) <= 5.0] = 900.0
    return Volume(hu, SPACING, tuple(origin))


def spine_lesions(ct: Volume) -> Volume:
    """Lesion labels on the CT's grid: 1 and 2 beside the ring, their neighbourhoods overlapping (and cutting
    through the ring and the calcification), 3 at the array's edge beside the long bone, 4 far from all bone
    (its distance needs the ring's bone beyond its neighbourhood: ``_Bone.ensure``)."""
    lab = np.zeros(ct.shape, np.int32)
    lab[56:61, 46:52, 29:33] = 1                          # 9–19 mm outside the ring's cortex
    lab[58:62, 40:45, 33:36] = 2                          # next to lesion 1
    lab[112:120, 76:80, 18:22] = 3                        # 3–9 mm from the long bone, at the array's x edge
    lab[98:101, 8:11, 110:113] = 4                        # far from bone (117 mm from the ring)
    return ct.with_array(lab)


def _regions(lab: Volume, ct: Volume):
    from carpet.classify import site_regions

    return site_regions(lab, ct)


def test_neighbourhood_bone_equals_whole_ct_bone():
    """ct_bone built only in the lesions' neighbourhoods (a set of boxes, overlapping ones merged) equals the
    whole CT's bone mask inside every neighbourhood and is False outside them: the ring's marrow (read whole
    through the margin), the calcification (not skeleton, though the neighbourhood cuts it) and the long bone
    cut by the field of view (kept) as the whole CT has them."""
    from carpet.anatomy import ct_bone

    ct = spine_ct()
    whole = np.asarray(bone_mask(ct).array)
    regions = _regions(spine_lesions(ct), ct)
    assert len(regions) == 4
    part = ct_bone(ct.with_array(ct.array), BoneParams(), regions)
    arr = np.asarray(part.array)
    boxes = part.meta["bone_boxes"]
    assert len(boxes) == 3                                # lesions 1 and 2 share one box
    inside = np.zeros(ct.shape, bool)
    for box in boxes:
        inside[box] = True
    for region in regions:
        assert inside[region].all()
        np.testing.assert_array_equal(arr[region], whole[region])
    assert not arr[~inside].any()
    # what the neighbourhoods hold: marrow of the ring, the long bone at the edge, no calcification
    ring_marrow = (slice(34, 46), slice(45, 55), slice(18, 38))
    assert whole[ring_marrow].all() and arr[ring_marrow].all()
    assert whole[115:120, 66:72, 18:22].all()
    calc = (slice(62, 68), slice(11, 18), slice(26, 29))
    assert inside[calc].any() and not inside[calc].all() and (np.asarray(ct.array)[calc] > 500).any()
    assert not arr[calc].any()


def test_sites_from_neighbourhoods_equal_whole_ct_sites():
    """Sites and every measure from the bone built in the lesions' neighbourhoods (and beyond them only where
    a far lesion's distance needs it) equal those from the whole CT's mask, on the CT grid."""
    from carpet.classify import classify_lesions

    ct = spine_ct()
    lab = spine_lesions(ct)
    whole = classify_lesions(lab, ct, bone=bone_mask(ct))
    local = classify_lesions(lab, ct.with_array(ct.array))
    assert local.equals(whole), (local, whole)
    assert 100.0 < whole.loc[3, "distance_to_bone_mm"] < 120.0   # lesion 4: the ring, beyond its neighbourhood


def test_depth_beyond_the_neighbourhood():
    """A lesion at the centre of a bone thicker than twice the neighbourhood's reach: its depth (65 mm) needs
    bone beyond its neighbourhood, built on demand (``_Bone.ensure``), and equals the whole CT's."""
    from carpet.classify import classify_lesions

    hu = np.full((100, 100, 50), 40.0, np.float32)
    hu[17:83, 17:83, 8:42] = 900.0                        # a 132 × 132 × 136 mm block of bone
    ct = Volume(hu, SPACING)
    lab = np.zeros(ct.shape, np.int32)
    lab[48:52, 48:52, 24:26] = 1
    whole = classify_lesions(ct.with_array(lab), ct, bone=bone_mask(ct))
    local = classify_lesions(ct.with_array(lab), ct.with_array(ct.array))
    assert local.equals(whole)
    assert whole.loc[0, "depth_in_bone_mm"] > 60.0


@pytest.mark.parametrize("spacing", [(1.5625, 1.5625, 4.0), (2.0, 2.0, 2.0), (1.0, 1.0, 1.0), (4.0, 4.0, 4.0)])
def test_smoothing_near_bone_and_box_closing_equal_whole_box(spacing):
    """The bone's smoothing run slab by slab near raw bone voxels and the closing as shifted ORs/ANDs give the
    masks of the whole box's Gaussian and of ndimage's binary morphology (noisy soft tissue close to the
    threshold, sparse bone voxels, several spacings)."""
    from carpet.anatomy import _close_mm
    from carpet.anatomy.bone import _close_bone, _denoise_ct, _smooth_above

    rng = np.random.default_rng(1)
    hu = rng.uniform(60.0, 149.0, (50, 44, 40)).astype(np.float32)
    hu[rng.random(hu.shape) < 0.002] = 400.0
    hu[10:14, 30:33, 5:30] = 700.0
    ct = Volume(hu, spacing)
    params = BoneParams()
    expect = np.asarray(_denoise_ct(ct, params.smooth_mm)) >= params.hu_bone
    np.testing.assert_array_equal(_smooth_above(hu, ct, params, slab=7), expect)
    assert 0 < expect.sum() < expect.size
    for radius in (3.0, 5.0):
        mask = rng.random(hu.shape) < 0.3
        np.testing.assert_array_equal(_close_bone(mask, radius, spacing), _close_mm(mask, radius, spacing))


def test_bone_cache_serves_the_band_and_the_sites():
    """One ct_bone call for the lesions' neighbourhoods and a band: asking later for the band, a narrower band
    inside it or one lesion's neighbourhood builds nothing (the reference regions and the sites cut it from
    the cache); a box beyond what was built is built, once."""
    import carpet.anatomy.bone as bone_mod
    from carpet.anatomy import ct_bone

    ct = spine_ct()
    regions = _regions(spine_lesions(ct), ct)
    band = (slice(10, 40), slice(0, 100), slice(0, 40))
    bone_mod.build_ct_bone(ct, BoneParams(), regions + [band])
    calls = []
    real = bone_mod._bone_in
    bone_mod._bone_in = lambda *a: calls.append(a[2]) or real(*a)
    try:
        for box in (band, (slice(15, 35), slice(0, 100), slice(0, 40)), regions[2]):
            ct_bone(ct, BoneParams(), box)
        assert calls == []
        other = ct.with_array(ct.array)                    # a new CT: only lesion 4's neighbourhood built
        bone_mod.build_ct_bone(other, BoneParams(), [regions[3]])
        ct_bone(other, BoneParams(), regions[3])
        assert len(calls) == 1
        ct_bone(other, BoneParams(), regions[2])          # not inside what was built: built now
        assert len(calls) == 2 and calls[-1] == regions[2]
    finally:
        bone_mod._bone_in = real


@pytest.mark.slow
def test_quantify_bone_once_serves_the_band():
    """quantify's _bone_once builds the lesions' neighbourhoods and the mid-line band as a set of boxes: the
    band the reference regions then ask for (from the CT's body, :func:`band_bone`) is cut from it, not built
    again, and is the whole CT's bone there."""
    import carpet.anatomy.bone as bone_mod
    from carpet.anatomy.landmarks import SPINE_BAND_MM, _CtOnPet, band_region, body_landmarks
    from carpet.quantify import _bone_once

    ph = make_phantom(PhantomSpec.whole_body(seed=1, n_lesions=30, ct_spacing_mm=(1.5625, 1.5625, 4.0)))
    pet, ct = ph.pet.with_array(ph.pet.array), ph.ct.with_array(ph.ct.array)
    _bone_once(pet, ct, ph.lesion_labels, body_landmarks(pet))
    real = bone_mod._bone_in

    def refuse(*a):
        raise AssertionError(f"bone built again in {a[2]}")

    bone_mod._bone_in = refuse
    try:
        ctp = _CtOnPet.build(pet, ct, BoneParams())
    finally:
        bone_mod._bone_in = real
    region = band_region(ct, ctp.x_mid, SPINE_BAND_MM + 3.0 * max(pet.spacing))
    from carpet.anatomy import ct_bone

    np.testing.assert_array_equal(np.asarray(ct_bone(ct, BoneParams(), region).array)[region],
                                  np.asarray(bone_mask(ph.ct).array)[region])


def test_smoothing_box_reaches_two_kernel_radii():
    """A voxel beside bone whose smoothed HU lands just below the threshold because of air three kernel
    voxels beyond it: smoothing a box reaching only one kernel radius past the bone replaces that air by the
    box's edge (soft tissue) and puts the voxel above the threshold; the slab smoothing reaches two."""
    from carpet.anatomy.bone import _denoise_ct, _smooth_above

    spacing = (1.5625, 1.5625, 4.0)
    hu = np.full((24, 21, 3), 100.0, np.float32)
    hu[14, :, :] = -1000.0                                # air, 4 voxels from the bone voxel along x

    def smoothed(peak):
        h = hu.copy()
        h[10, 10, 1] = peak
        return h, float(np.asarray(_denoise_ct(Volume(h, spacing), 1.0))[11, 10, 1])

    lo, hi = 150.0, 2000.0                                # the voxel beside the peak: just below 150 HU
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if smoothed(mid)[1] < 150.0 - 0.002 else (lo, mid)
    h, value = smoothed(lo)
    assert 150.0 - 0.01 < value < 150.0
    ct = Volume(h, spacing)
    np.testing.assert_array_equal(_smooth_above(h, ct, BoneParams()),
                                  np.asarray(_denoise_ct(ct, 1.0)) >= 150.0)
    assert not _smooth_above(h, ct, BoneParams())[11, 10, 1]
