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
