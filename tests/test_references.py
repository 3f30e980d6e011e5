"""Reference regions, the mid-line band's bone and marrow, and the alignment images, computed only in the
boxes where they are measured.

Truth: the whole-grid definitions written out here over every voxel (the band's CT bone resampled by majority
onto the whole PET grid by the public ``bone_mask``/``marrow_mask``; the liver and blood-pool searches with
direct (not FFT) local sums over the whole grid; block means by numpy's sum) and the phantoms' designed organ
SUVs and organ masks.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from carpet.anatomy import BoneParams, blood_pool_reference, bone_mask, liver_reference, marrow_mask, \
    marrow_reference
from carpet.anatomy.landmarks import SPINE_BAND_MM, _CtOnPet, band_bone, band_region
from carpet.anatomy._morphology import _voxel_coords_mm
from carpet.anatomy.references import _auto_aorta_centre, _ball_kernel, _first_that_fits
from carpet.synth import PhantomSpec, make_phantom
from carpet.tracking import binned
from carpet.volume import Volume


def _flipped(vol: Volume, axis: int) -> Volume:
    """The same image with array axis ``axis`` reversed (its direction column negated)."""
    direction = vol.direction.copy()
    direction[:, axis] *= -1
    last = [0, 0, 0]
    last[axis] = vol.shape[axis] - 1
    return Volume(np.flip(np.asarray(vol.array), axis), vol.spacing, tuple(vol.index_to_world(last)), direction,
                  dict(vol.meta))


def _world(pet: Volume):
    """LPS x, y, z of every voxel of an identity-direction grid (as arrays broadcasting to the grid)."""
    assert np.array_equal(pet.direction, np.eye(3))
    return tuple((o + s * np.arange(n, dtype=float)).reshape([-1 if b == a else 1 for b in range(3)])
                 for a, (o, s, n) in enumerate(zip(pet.origin, pet.spacing, pet.shape)))


@pytest.fixture(scope="module")
def small():
    return make_phantom(PhantomSpec.small(seed=3, ct_spacing_mm=(1.6, 1.6, 2.0)))


@pytest.mark.parametrize("flip", ["none", "ct", "both"])
def test_band_bone_and_marrow_equal_the_whole_grid_majority(small, flip):
    pet, ct = small.pet, small.ct
    if flip in ("ct", "both"):
        ct = _flipped(ct, 0)
    if flip == "both":
        pet = _flipped(pet, 0)
    params = BoneParams()
    x_mid = 3.0                                         # off the phantom's own mid-line on purpose
    bone, marrow = band_bone(pet, ct, params, x_mid, SPINE_BAND_MM)
    region = band_region(ct, x_mid, SPINE_BAND_MM + 3.0 * max(pet.spacing))
    bone_ct = bone_mask(ct, params=params, region=region)
    want_bone = np.asarray(bone_mask(ct, params=params, region=region, reference=pet).array)
    want_marrow = np.asarray(marrow_mask(bone_ct, ct, cortex_mm=params.cortex_mm, reference=pet).array)
    assert want_bone.sum() > 500 and want_marrow.sum() > 100
    np.testing.assert_array_equal(bone, want_bone)
    np.testing.assert_array_equal(marrow, want_marrow)


def _correlate_whole(arr, kernel):
    """``ndimage.correlate(arr, kernel, mode="constant")`` for a symmetric kernel, by FFT over the whole grid
    (the direct sum over a 5-cm ball costs a minute on a whole-body grid)."""
    from scipy import fft

    shape = [a + k - 1 for a, k in zip(arr.shape, kernel.shape)]
    out = fft.irfftn(fft.rfftn(arr, shape) * fft.rfftn(kernel, shape), shape)
    return out[tuple(slice(k // 2, k // 2 + a) for a, k in zip(arr.shape, kernel.shape))]


def _liver_best(pet, ctp, lesions, diameter=30.0, liver_hu=(0.0, 120.0), below=150.0, plausible=(0.5, 4.0),
                max_cov=0.30):
    """The liver search's definition over the whole grid: (candidate mask, ball mean)."""
    x, _, z = _world(pet)
    soft = (ctp.hu >= liver_hu[0]) & (ctp.hu <= liver_hu[1]) & ctp.body & ~ctp.bone
    right = x < ctp.x_mid
    lung = ctp.lungs & right if (ctp.lungs & right).any() else ctp.lungs
    z_lung = np.broadcast_to(z, pet.shape)[lung]
    region = soft & right & (z >= z_lung.min() - below) & (z <= z_lung.mean())
    reach = diameter / 2.0 + max(pet.spacing)
    depth = ndimage.distance_transform_edt(np.pad(soft, 1), sampling=pet.spacing)[1:-1, 1:-1, 1:-1]
    cand = region & (depth >= reach)
    if lesions is not None and lesions.any():
        cand &= ndimage.distance_transform_edt(~lesions, sampling=pet.spacing) > reach
    p = np.asarray(pet.array, float)
    ball = _ball_kernel(pet.spacing, diameter + 20.0).astype(float)
    ball /= ball.sum()
    mean = _correlate_whole(p, ball)
    sd = np.sqrt(np.clip(_correlate_whole(p * p, ball) - mean ** 2, 0, None))
    ok = cand & (sd <= max_cov * mean) & (mean >= plausible[0]) & (mean <= plausible[1])
    return ok, mean


def _index(pet, centre_mm):
    return tuple(int(i) for i in np.round(pet.world_to_index(np.asarray(centre_mm))))


def _assert_a_best_liver_centre(pet, ct, lesions):
    ctp = _CtOnPet.build(pet, ct, BoneParams())
    ok, mean = _liver_best(pet, ctp, None if lesions is None else np.asarray(lesions.array) > 0)
    ref = liver_reference(pet, ct, lesions=lesions)
    assert ref.usable, ref.reason
    at = _index(pet, ref.centre_mm)
    assert ok[at], "the sphere's centre is no candidate of the whole-grid search"
    assert mean[at] >= mean[ok].max() - 1e-5          # a best one (the FFT's rounding breaks exact ties)
    return ref, at


@pytest.mark.parametrize("spec", [PhantomSpec.small(seed=0), PhantomSpec.small(seed=4, ct_spacing_mm=(1.6, 1.6, 2.0)),
                                  pytest.param(PhantomSpec.patient(seed=1, fov="thorax"), marks=pytest.mark.slow)],
                         ids=["small", "small_fine_ct", "thorax"])
def test_box_searches_find_a_best_centre_of_the_whole_grid(spec):
    ph = make_phantom(spec)
    pet, ct = ph.pet, ph.ct
    ref, at = _assert_a_best_liver_centre(pet, ct, ph.lesion_labels)
    # a lesion where the sphere was: the search moves off it, to a best centre of what is left
    fake = np.asarray(ph.lesion_labels.array).copy()
    fake[tuple(slice(i - 1, i + 2) for i in at)] = fake.max() + 1
    moved, _ = _assert_a_best_liver_centre(pet, ct, ph.lesion_labels.with_array(fake))
    assert np.linalg.norm(np.subtract(moved.centre_mm, ref.centre_mm)) > 15.0

    # blood pool: a best column of the whole-grid search, its centre in a thorax slice
    ctp = _CtOnPet.build(pet, ct, BoneParams())
    columns, col_pet, thorax = _aorta_columns(pet, ctp, np.asarray(ph.lesion_labels.array) > 0)
    blood = blood_pool_reference(pet, ct, lesions=ph.lesion_labels)
    assert blood.usable, blood.reason
    i, j, k = _index(pet, blood.centre_mm)
    assert columns[i, j] and thorax[k]
    assert col_pet[i, j] >= np.nanmax(np.where(columns, col_pet, np.nan)) - 1e-5


def _aorta_columns(pet, ctp, lesions, diameter=10.0, blood_hu=(-20.0, 120.0), plausible=(0.5, 4.0)):
    """The blood-pool search's definition over the whole grid (axial axis 2): the qualifying columns, their
    median disk SUV over the thorax's slices and the thorax's slices."""
    x, y, _ = _world(pet)
    left, right = ctp.lungs & (x > ctp.x_mid), ctp.lungs & (x <= ctp.x_mid)
    thorax = left.any(axis=(0, 1)) & right.any(axis=(0, 1))
    soft = (ctp.hu >= blood_hu[0]) & (ctp.hu <= blood_hu[1]) & ctp.body & ~ctp.bone & ~lesions
    ball = _ball_kernel(pet.spacing, diameter)
    disk = ball[:, :, [ball.shape[2] // 2]].astype(float)
    disk /= disk.sum()
    fits = (ndimage.correlate(soft.astype(float), disk, mode="constant") > 0.999)[:, :, thorax]
    pet_disk = ndimage.correlate(np.asarray(pet.array, float), disk, mode="nearest")[:, :, thorax]
    col_pet = np.where(fits.all(axis=2), np.median(pet_disk, axis=2), np.nan)
    xs, ys = np.broadcast_to(x, pet.shape), np.broadcast_to(y, pet.shape)
    with np.errstate(invalid="ignore"):
        columns = ((x[:, :, 0] > xs[right].mean()) & (x[:, :, 0] < xs[left].mean())
                   & (y[:, :, 0] >= ys[ctp.lungs].mean()) & (fits.mean(axis=2) >= 0.8)
                   & (col_pet >= plausible[0]) & (col_pet <= plausible[1]))
    return columns, col_pet, thorax


def test_aorta_on_the_edge_of_the_searched_columns():
    """Hand-built thorax: two lungs, soft tissue around, and the hottest blood column on the first row of the
    columns searched (behind the lungs' centroid): its disk reaches into the row in front, outside those
    columns, which must count as the soft tissue it is."""
    shape, spacing = (48, 48, 24), (4.0, 4.0, 4.0)
    pet = Volume(np.ones(shape, np.float32), spacing)
    hu = np.full(shape, 40.0, np.float32)
    lungs = np.zeros(shape, bool)
    lungs[4:18, 10:30, 2:22] = lungs[30:44, 10:30, 2:22] = True     # centroid row 19.5: columns from row 20
    hu[lungs] = -800.0
    suv = np.asarray(pet.array)
    suv[lungs] = 0.3
    suv[23:26, 19:22, :] = 2.0                      # hottest column (24, 20): on the searched columns' edge
    suv[23:26, 25:28, :] = 1.8                      # a colder one inside them
    body = np.ones(shape, bool)
    xyz = _voxel_coords_mm(pet)
    ctp = _CtOnPet(hu=hu, body=body, lungs=lungs, bone=np.zeros(shape, bool), marrow=np.zeros(shape, bool),
                   xyz=xyz, x_mid=float(np.broadcast_to(xyz[0], shape).mean()))
    columns, col_pet, _ = _aorta_columns(pet, ctp, np.zeros(shape, bool))
    assert np.nanargmax(np.where(columns, col_pet, np.nan)) == np.ravel_multi_index((24, 20), shape[:2])
    centre, reason = _auto_aorta_centre(pet, ctp, 10.0, 20.0, (-20.0, 120.0), None, (0.5, 4.0))
    assert reason == "" and _index(pet, centre)[:2] == (24, 20)


@pytest.mark.parametrize("depth_mm", [6.0, 9.0])
@pytest.mark.parametrize("seed", range(6))
def test_first_that_fits_is_the_whole_arrays_best(seed, depth_mm):
    rng = np.random.default_rng(seed)
    shape, spacing = (30, 26, 22), (4.0, 3.0, 5.0)
    soft = ndimage.binary_opening(rng.random(shape) > 0.08 + 0.02 * seed, iterations=1)
    candidates = soft & (rng.random(shape) > 0.3)
    score = np.round(rng.random(shape) * 2).astype(np.float32) / 2   # three values: array order breaks ties
    depth = ndimage.distance_transform_edt(np.pad(soft, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]
    ok = candidates & (depth >= depth_mm)
    found = _first_that_fits(candidates, score, soft, depth_mm, spacing, tries=candidates.size)
    if not ok.any():
        assert found is None
        return
    assert found == np.unravel_index(np.argmax(np.where(ok, score, -np.inf)), shape)
    first = _first_that_fits(candidates, score, soft, depth_mm, spacing, tries=3)
    assert first is None or first == found


@pytest.mark.slow
def test_automatic_references_give_the_organs_designed_suv():
    ph = make_phantom(PhantomSpec.whole_body(seed=2, ct_spacing_mm=(1.5625, 1.5625, 4.0)))
    suv = ph.truth["organ_suv"]
    liver = liver_reference(ph.pet, ph.ct, lesions=ph.lesion_labels)
    blood = blood_pool_reference(ph.pet, ph.ct, lesions=ph.lesion_labels)
    marrow = marrow_reference(ph.pet, ph.ct, lesions=ph.lesion_labels)
    for ref, organ, truth in ((liver, "liver", "liver"), (blood, "aorta", "blood"), (marrow, "marrow", "marrow")):
        assert ref.usable, ref.reason
        assert np.asarray(ph.organs[organ].array)[np.asarray(ref.mask.array)].mean() > 0.97, organ
        value = ref.median if organ == "marrow" else ref.mean
        assert value == pytest.approx(suv[truth], rel=0.02), organ


@pytest.mark.parametrize("halfwidth", [35.0, 50.0])
def test_spine_marrow_lies_in_the_mid_line_band(small, halfwidth):
    ref = marrow_reference(small.pet, small.ct, lesions=small.lesion_labels, spine_halfwidth_mm=halfwidth)
    assert ref.usable, ref.reason
    ctp = _CtOnPet.build(small.pet, small.ct, BoneParams())
    x, _, _ = _world(small.pet)
    mask = np.asarray(ref.mask.array)
    assert np.abs(np.broadcast_to(x, mask.shape)[mask] - ctp.x_mid).max() <= halfwidth
    assert np.asarray(small.organs["marrow"].array)[mask].all()
    assert ref.median == pytest.approx(small.truth["organ_suv"]["marrow"], rel=0.02)
    lesions = np.asarray(small.lesion_labels.array) > 0
    assert ndimage.distance_transform_edt(~lesions, sampling=small.pet.spacing)[mask].min() > 10.0


@pytest.mark.parametrize("spacing", [(4.0, 4.0, 4.0), (2.0, 3.0, 1.5), (1.0, 4.0, 0.7), (0.6, 2.0, 1.2)])
@pytest.mark.parametrize("order", ["C", "F"])
def test_binned_is_the_block_sum_numpy_gives(spacing, order):
    rng = np.random.default_rng(0)
    arr = (rng.random((37, 41, 29)) * 10.0 ** rng.uniform(-3, 3, (37, 41, 29))).astype(np.float32)
    arr = np.asfortranarray(arr) if order == "F" else arr
    out = binned(Volume(arr, spacing, (1.0, 2.0, 3.0)))
    f = [max(1, int(round(6.0 / s))) for s in spacing]
    n = [a // k for a, k in zip(arr.shape, f)]
    blocks = arr[:n[0] * f[0], :n[1] * f[1], :n[2] * f[2]].reshape(n[0], f[0], n[1], f[1], n[2], f[2])
    # numpy's sum, one axis at a time in memory order (last axis first for an F-ordered array): the same
    # float32 rounding, bit for bit
    axes = [5, 3, 1] if order == "F" else [1, 3, 5]
    want = blocks
    for a in axes:
        want = want.sum(axis=a, keepdims=True)
    want = want.reshape(n) * np.float32(1.0 / np.prod(f))
    np.testing.assert_array_equal(np.asarray(out.array), want)
    np.testing.assert_allclose(np.asarray(out.array), blocks.astype(float).mean(axis=(1, 3, 5)), rtol=1e-5)
    assert out.spacing == tuple(s * k for s, k in zip(spacing, f))
