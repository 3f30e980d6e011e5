"""Lesion site against bone (spec §4.3) on the digital phantom, whose lesion kinds are the truth.

The phantom places each lesion analytically relative to the bone surface (inside the marrow, centred on the
surface, 2.5 mm outside it, or ≥ 2 cm away); the CT shows lesions as lytic (soft-tissue HU), as in patients.
"""

from __future__ import annotations

import functools

import cc3d
import numpy as np
import pytest

from carpet.anatomy import bone_mask
from carpet.classify import SiteParams, classify_lesions, label_lesions, site_counts
from carpet.synth import PhantomSpec, make_phantom
from carpet.volume import Volume

EXPECTED = {"intramedullary": "bone", "paramedullary": "paramedullary", "extramedullary": "extramedullary",
            "abutting": "indeterminate"}


@functools.lru_cache(maxsize=None)
def _phantom(seed, ct_spacing, psf):
    return make_phantom(PhantomSpec.small(seed=seed, ct_spacing_mm=ct_spacing, psf_fwhm_mm=psf,
                                          noise_rel_sd=0.03 if psf else 0.0))


def _kinds(ph):
    return [les["kind"] for les in ph.truth["lesions"]]


def _segment(ph):
    """SUV >= 4, 26-connected, each component named by the truth lesion it overlaps most."""
    lab = cc3d.connected_components(ph.pet.array >= 4.0, connectivity=26)
    truth = np.asarray(ph.lesion_labels.array)
    kinds = _kinds(ph)
    names = {}
    for lid in range(1, int(lab.max()) + 1):
        t = truth[lab == lid]
        t = t[t > 0]
        names[lid] = kinds[np.bincount(t).argmax() - 1] if t.size else None
    return ph.pet.with_array(lab.astype(np.int32)), names


CASES = [(1, None, "ct"), (2, None, "pet"), (3, None, "ct"), (1, (2.0, 2.0, 2.0), "ct"),
         (2, (2.0, 2.0, 2.0), "pet")]


@pytest.mark.parametrize("seed, ct_spacing, grid", CASES)
def test_truth_lesions_get_their_site(seed, ct_spacing, grid):
    ph = _phantom(seed, ct_spacing, 0.0)
    # with contact_enters the truth sites; by default a lesion entering bone by contact only is indeterminate
    df = classify_lesions(ph.lesion_labels, ph.ct, params=SiteParams(grid=grid, contact_enters=True))
    assert list(df["site"]) == [EXPECTED[k] for k in _kinds(ph)]
    _check_contact_only(df, classify_lesions(ph.lesion_labels, ph.ct, params=SiteParams(grid=grid)), ph)
    # Independent truth: the phantom's bone fraction on the PET grid (analytic geometry). Outside the
    # paramedullary bites it is matched closely; a paramedullary lesion has destroyed the bone it occupies
    # (lytic on CT) and the envelope closing restores only the deeper part of the bite, so its fraction is
    # underestimated (0.11–0.28 for true 0.51–0.60 on seed 3; 0 for a lesion that ate the corner of an iliac
    # wing, which no closing restores: its bone contact decides) but never overestimated.
    truth_f = np.array([les["bone_fraction"] for les in ph.truth["lesions"]])
    f = df["bone_fraction"].to_numpy()
    para = np.array(_kinds(ph)) == "paramedullary"
    np.testing.assert_allclose(f[~para], truth_f[~para], atol=0.05)
    assert np.all(f[para] <= truth_f[para] + 0.1)
    assert np.all(df["bone_contact_fraction"].to_numpy()[para] >= 0.2)
    np.testing.assert_allclose(df["volume_in_bone_ml"] + df["volume_outside_bone_ml"],
                               [les["volume_ml"] for les in ph.truth["lesions"]], rtol=1e-9)
    abut = df["site"] == "indeterminate"
    d_contact, _ = SiteParams().resolved(ph.pet.spacing)
    assert (df.loc[abut, "distance_to_bone_mm"] <= d_contact).all()
    assert (df.loc[abut, "bone_fraction"] == 0).all() and (df.loc[abut, "depth_in_bone_mm"] == 0).all()
    assert (df.loc[df["site"] == "extramedullary", "distance_to_bone_mm"] > 10).all()


@pytest.mark.parametrize("ct_spacing", [None, (2.0, 2.0, 2.0)])
@pytest.mark.parametrize("psf", [0.0, 6.0])
def test_segmented_lesions_get_their_site(ct_spacing, psf):
    """Lesions found by SUV >= 4 on the (blurred, noisy) PET: bone, paramedullary, EMD and the lesions
    2.5 mm off the cortex (indeterminate) all get their site, blurred or not."""
    for seed in (1, 2, 3) if ct_spacing is None else (1, 2):
        ph = _phantom(seed, ct_spacing, psf)
        labels, names = _segment(ph)
        df = classify_lesions(labels, ph.ct, params=SiteParams(contact_enters=True))
        for lid, site in zip(df["lesion_id"], df["site"]):
            kind = names[lid]
            assert site == EXPECTED[kind], (seed, lid, kind, site)
        _check_contact_only(df, classify_lesions(labels, ph.ct), ph)


def _check_contact_only(legacy, default, ph):
    """Without ``contact_enters`` only paramedullary lesions reaching no deeper than d_enter into bone
    change, and they become indeterminate (spec §4.3: contact alone is not entering bone)."""
    _, d_enter = SiteParams().resolved(ph.pet.spacing)
    changed = legacy["site"] != default["site"]
    assert (legacy.loc[changed, "site"] == "paramedullary").all()
    assert (default.loc[changed, "site"] == "indeterminate").all()
    assert (default.loc[changed, "depth_in_bone_mm"] <= d_enter).all()
    para = default["site"] == "paramedullary"
    assert (default.loc[para, "depth_in_bone_mm"] > d_enter).all()


def test_no_ct_is_unknown_not_a_guess():
    ph = _phantom(1, None, 0.0)
    df = classify_lesions(ph.lesion_labels, None)
    assert (df["site"] == "unknown").all() and len(df) == len(ph.truth["lesions"])
    assert df[["bone_fraction", "distance_to_bone_mm", "volume_in_bone_ml"]].isna().all().all()
    assert site_counts(df["site"])["n_unknown"] == len(df)


def test_thresholds_use_the_written_inequalities():
    """Each named threshold at measured value −ε / value / +ε flips the site where the rule says."""
    ph = _phantom(1, None, 0.0)
    bone = bone_mask(ph.ct)
    base = classify_lesions(ph.lesion_labels, ph.ct, bone=bone)
    para = base[base["site"] == "paramedullary"].iloc[0]
    lid = para["lesion_id"]

    def site(**kw):
        df = classify_lesions(ph.lesion_labels, ph.ct, params=SiteParams(**kw), bone=bone)
        return df.loc[df["lesion_id"] == lid, "site"].item()

    f, v_out = para["bone_fraction"], para["volume_outside_bone_ml"]
    assert site(f_med=f - 1e-9) == "bone" and site(f_med=f) == "bone"          # f_in >= f_med
    assert site(f_med=f + 1e-9) == "paramedullary"
    assert site(v_min_out_ml=v_out - 1e-9) == "paramedullary"                  # V_out >= v_min_out
    assert site(v_min_out_ml=v_out) == "paramedullary"
    assert site(v_min_out_ml=v_out + 1e-9) == "bone"
    depth = para["depth_in_bone_mm"]
    no_contact = dict(contact_fraction_min=1.01)                                 # depth alone decides
    assert site(d_enter_mm=depth - 1e-9, **no_contact) == "paramedullary"     # depth > d_enter
    assert site(d_enter_mm=depth, **no_contact) == "indeterminate"

    abut = base[base["site"] == "indeterminate"].iloc[0]
    lid = abut["lesion_id"]
    d = abut["distance_to_bone_mm"]
    assert site(d_contact_mm=d) == "indeterminate"                              # d_min <= d_contact
    assert site(d_contact_mm=d + 1e-9) == "indeterminate"
    assert site(d_contact_mm=d - 1e-9) == "extramedullary"
    lid = para["lesion_id"]
    t = para["bone_contact_fraction"]
    no_depth = dict(d_enter_mm=1e9, contact_enters=True)                         # contact alone decides
    assert site(contact_fraction_min=t - 1e-9, **no_depth) == "paramedullary"   # touch >= contact_fraction_min
    assert site(contact_fraction_min=t, **no_depth) == "paramedullary"
    assert site(contact_fraction_min=t + 1e-9, **no_depth) == "indeterminate"
    assert site(contact_fraction_min=0.0, d_enter_mm=1e9) == "indeterminate"     # the switch off: never


def test_boolean_mask_split_by_connectivity_and_fov():
    arr = np.zeros((12, 12, 12), bool)
    arr[2:4, 2:4, 2:4] = True
    arr[4:6, 4:6, 4:6] = True                     # touches the first block at a corner only
    mask = Volume(arr, (4.0, 4.0, 4.0))
    assert label_lesions(mask, 26).array.max() == 1
    assert label_lesions(mask, 6).array.max() == 2
    ct = Volume(np.full((6, 12, 12), 40.0, np.float32), (4.0, 4.0, 4.0))        # covers i < 6 only
    arr2 = np.zeros((12, 12, 12), np.int32)
    arr2[1:3, 5:7, 5:7] = 1
    arr2[8:10, 5:7, 5:7] = 2                      # outside the CT's field of view
    df = classify_lesions(Volume(arr2, (4.0, 4.0, 4.0)), ct)
    assert list(df["site"]) == ["extramedullary", "unknown"]
    df = classify_lesions(Volume(arr2, (4.0, 4.0, 4.0)), ct, params=SiteParams(grid="pet"))
    assert list(df["site"]) == ["extramedullary", "unknown"]


def _assert_measures_equal_whole_grid(bone, labels, spacing, margin_mm, touch_mm=4.0):
    """``_lesion_bone_measures`` against brute force: two Euclidean distance transforms of the whole grid
    (depth: the array's border counts as non-bone), read per lesion voxel by voxel."""
    from scipy import ndimage

    from carpet.classify import _lesion_bone_measures

    ids = np.unique(labels[labels > 0])
    m = _lesion_bone_measures(bone, labels, ids, spacing, margin_mm, touch_mm=touch_mm)
    outside = ndimage.distance_transform_edt(~bone, sampling=spacing)
    depth = ndimage.distance_transform_edt(np.pad(bone, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]
    for i, lid in enumerate(ids):
        sel = labels == lid
        assert m["n"][i] == sel.sum() and m["n_in"][i] == (sel & bone).sum()
        assert m["d_centre"][i] == pytest.approx(outside[sel].min(), abs=1e-9)
        assert m["depth"][i] == pytest.approx(depth[sel].max(), abs=1e-9)
        assert m["touch"][i] == pytest.approx((outside[sel] <= touch_mm).mean(), abs=1e-12)


@pytest.mark.parametrize("margin_mm", [1.0, 3.0, 40.0])
def test_crop_measures_equal_whole_grid_distance_transforms(margin_mm):
    """Per-lesion crop measures against brute force. The small margins force the k-d tree (far bone) and the
    growing depth boxes, including boxes that are all bone; lesions touch the array border, sit deep in a
    thick bone, near it, and far from it."""
    spacing = (1.5, 2.0, 3.0)
    bone = np.zeros((40, 36, 24), bool)
    bone[5:30, 4:30, 2:20] = True                 # a thick block (depths up to ~25 mm)
    bone[33:40, 30:36, 0:5] = True                # a small one at the array's corner (border is not bone)
    labels = np.zeros(bone.shape, np.int32)
    labels[14:20, 14:20, 9:13] = 1                # deep inside the block
    labels[28:33, 10:14, 8:12] = 2                # straddling the block's surface
    labels[0:2, 34:36, 22:24] = 3                 # far from bone, at the array's corner
    labels[36:40, 25:29, 0:3] = 4                 # next to the corner bone, touching the border
    labels[17, 17, 11] = 5                        # one voxel at the block's centre
    _assert_measures_equal_whole_grid(bone, labels, spacing, margin_mm)


def test_far_distance_of_an_elongated_lesion():
    """A rod-shaped lesion far from bone: the bone nearest its centre (beside its middle) is not the bone
    nearest the rod (beyond one end), so the far look-up must search around the whole rod, not its centre."""
    spacing = (2.0, 2.0, 4.0)
    bone = np.zeros((60, 40, 10), bool)
    bone[55:58, 18:21, 4:6] = True                # 8 mm beyond the rod's end
    bone[28:31, 35:38, 4:6] = True                # 30 mm beside the rod's middle (nearest its centre)
    labels = np.zeros(bone.shape, np.int32)
    labels[10:50, 18:21, 4:6] = 1                 # a rod 80 mm long
    _assert_measures_equal_whole_grid(bone, labels, spacing, margin_mm=1.0)


@pytest.mark.parametrize("margin_mm", [1.0, 6.0])
def test_depth_bounded_by_the_array_border_only(margin_mm):
    """Bone filling the whole array but for a small pocket: the deepest lesion's nearest non-bone is the
    array's border, which the growing depth boxes reach only when they cover the whole array."""
    spacing = (2.0, 1.0, 3.0)
    bone = np.ones((30, 40, 16), bool)
    bone[2:4, 2:5, 2:4] = False                   # a pocket near one corner
    labels = np.zeros(bone.shape, np.int32)
    labels[14:17, 18:22, 7:9] = 1                 # at the centre: depth set by the border
    labels[4:6, 5:8, 4:6] = 2                     # next to the pocket
    labels[2:4, 2:5, 2:4] = 3                     # the pocket itself (outside bone)
    _assert_measures_equal_whole_grid(bone, labels, spacing, margin_mm)


@pytest.mark.parametrize("layout", ["C", "F", "view", "empty"])
def test_label_extents_equal_bincount_and_find_objects(layout):
    """Counts and boxes read from the labelled voxels equal ``np.bincount`` (background aside) and
    ``ndimage.find_objects``, whatever the map's memory order; absent labels have no box."""
    from scipy import ndimage

    from carpet.classify import _label_extents

    rng = np.random.default_rng(0)
    arr = np.where(rng.random((23, 17, 11)) < 0.02, rng.integers(1, 40, (23, 17, 11)), 0).astype(np.int32)
    arr[arr == 7] = 0                             # a label missing in the middle
    arr = {"C": arr, "F": np.asfortranarray(arr), "view": arr[2:, ::2, 1:].transpose(2, 0, 1),
           "empty": np.zeros((4, 5, 6), np.int32)}[layout]
    counts, boxes = _label_extents(arr)
    expected = np.bincount(arr.ravel())
    expected[0] = 0
    np.testing.assert_array_equal(counts, expected)
    assert boxes == ndimage.find_objects(arr)


def test_grid_labels_mask_equals_whole_map_resampling():
    """Lesion masks read box by box on a finer, shifted grid equal SimpleITK's nearest-neighbour resampling of
    the whole label map (lesions partly outside the fine grid included)."""
    from carpet.classify import _GridLabels
    from carpet.volume import resample_to

    lab = np.zeros((20, 18, 12), np.int32)
    lab[3:6, 4:7, 2:5] = 1
    lab[10:14, 0:3, 6:9] = 2                      # leaves the fine grid on one side
    lab[16:20, 12:18, 9:12] = 3
    pet = Volume(lab, (4.0, 4.0, 4.0), origin=(0.0, 0.0, 0.0))
    ct = Volume(np.zeros((45, 40, 20), np.int16), (1.5625, 1.5625, 2.0), origin=(3.1, 5.3, 1.0))
    whole = np.asarray(resample_to(pet, ct, interpolation="nearest", default_value=0).array)
    grid = _GridLabels(pet, ct)
    everything = tuple(slice(0, n) for n in ct.shape)
    for lid in (1, 2, 3):
        np.testing.assert_array_equal(grid.mask(everything, lid), whole == lid)
        box = grid.boxes[lid - 1]
        np.testing.assert_array_equal(grid.mask(box, lid), (whole == lid)[box])


def test_envelope_restoration_equals_whole_grid_closings():
    """Restored lesion voxels against brute force: each connected bone closed on the whole grid (3-D ball and
    in-slice disc), only lesion voxels added. A bite and an edge notch are restored, the gap between two
    bones is not bridged, a lesion far from bone gets nothing, and a lesion exactly one radius from the walls
    of a channel is filled (a skip test short by one voxel would miss it)."""
    from carpet.anatomy import _close_mm
    from carpet.classify import _restore_envelope

    spacing, radius = (1.0, 1.25, 2.0), 5.0
    bone = np.zeros((44, 42, 20), bool)
    bone[5:20, 5:25, 5:15] = True                 # bone A
    bone[28:36, 5:25, 5:15] = True                # bone B, 8 mm from A (< 2 radii)
    bone[2, 27:42, 2:18] = bone[12, 27:42, 2:18] = bone[2:13, 27, 2:18] = True   # a channel, walls 10 mm apart
    labels = np.zeros(bone.shape, np.int32)
    labels[15:20, 10:16, 7:12] = 1                # a bite into A's face
    labels[21:27, 12:16, 8:11] = 2                # the gap between A and B
    labels[9:14, 5:7, 5:7] = 3                    # a notch at an edge of A across the axial axis
    labels[0:3, 0:3, 17:20] = 4                   # far from bone
    labels[7, 33, 10] = 5                         # in the channel, one radius from both walls
    bone[labels > 0] = False                      # lytic
    out = _restore_envelope(bone, labels, radius, spacing, axial_axis=2)
    expect = bone.copy()
    parts = cc3d.connected_components(bone, connectivity=26)
    for part in range(1, int(parts.max()) + 1):
        one = parts == part
        expect |= (_close_mm(one, radius, spacing) | _close_mm(one, radius, (1.0, 1.25, 1e9))) & (labels > 0)
    np.testing.assert_array_equal(out, expect)
    added = [int((out & ~bone)[labels == lid].sum()) for lid in range(1, 6)]
    assert added[0] > 0 and added[2] > 0 and added[4] == 1 and added[1] == added[3] == 0
    far_only = (labels == 4).astype(np.int32)
    assert _restore_envelope(bone, far_only, radius, spacing, axial_axis=2) is bone    # nothing added: no copy


# Anisotropic spacings, dyadic (exact arithmetic) and not (rounded squares and sums), and one in-slice grid.
EDT_SPACINGS = [(1.5625, 1.5625, 4.0), (0.976562, 0.976562, 3.27), (2.0, 1.17, 0.7), (0.859375, 1.3, 2.5)]


def _blobs(rng, shape, fraction, sigma=1.5):
    """Random smooth blobs (a thresholded smoothed noise field) holding about ``fraction`` of the voxels."""
    from scipy import ndimage

    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return field > np.quantile(field, 1.0 - fraction)


def _tie_radii(edt, lo, hi):
    """Radii in [lo, hi] that are distances the EDT itself reports: voxels lie exactly at the radius."""
    values = np.unique(edt[(edt >= lo) & (edt <= hi)])
    return [float(values[0]), float(values[len(values) // 2]), float(values[-1])]


@pytest.mark.parametrize("spacing", EDT_SPACINGS)
def test_windowed_distances_equal_scipy_edt(spacing):
    """``_nearest_sq`` is scipy's ``distance_transform_edt`` before its square root, bit for bit: with a window
    holding the whole array every value; with a window of radius r (exact-tie radii: distances the EDT
    reports), every value ≤ r, and every other value > r."""
    from scipy import ndimage

    from carpet.classify import _nearest_sq, _window

    rng = np.random.default_rng(17)
    for density in (0.002, 0.03, 0.3):
        feat = rng.random((19, 23, 13)) < density
        feat[3, 4, 5] = True
        edt = ndimage.distance_transform_edt(~feat, sampling=spacing)
        whole = feat.shape
        got = np.sqrt(_nearest_sq(np.pad(feat, [(n, n) for n in whole]), whole, spacing))
        np.testing.assert_array_equal(got, edt)
        for radius in _tie_radii(edt, 2.0, 9.0) + [3.0 * spacing[2], 4.0 * spacing[0]]:
            w = _window(radius, spacing)
            got = np.sqrt(_nearest_sq(np.pad(feat, [(k, k) for k in w]), w, spacing))
            near = edt <= radius
            np.testing.assert_array_equal(got[near], edt[near])
            assert (got[~near] > radius).all()


@pytest.mark.parametrize("spacing", EDT_SPACINGS + [(1.5625, 1.5625, 1e9)])
def test_closing_at_voxels_equals_whole_grid_closing(spacing):
    """``_closed_at`` (the closing evaluated at the wanted voxels only) equals ``_close_mm``'s closing of the
    whole array (distance transforms; background beyond the array), at exact-tie radii — distances between
    voxel centres, so that voxels lie exactly on the ball's surface — and for a ball small enough for binary
    morphology; wanted voxels everywhere, the array's faces included."""
    from scipy import ndimage

    from carpet.anatomy import _close_mm
    from carpet.classify import _closed_at

    rng = np.random.default_rng(4)
    mask = _blobs(rng, (34, 30, 16), 0.25)
    want = rng.random(mask.shape) < 0.4
    in_plane = tuple(s for s in spacing if s < 1e6)
    probe = np.zeros((15, 15, 9), bool)
    probe[7, 7, 4] = True
    offsets = ndimage.distance_transform_edt(~probe, sampling=spacing)   # every offset's distance, as EDT has it
    for radius in _tie_radii(offsets, 4.0, 8.0) + [1.05 * min(in_plane)]:
        expect = _close_mm(mask, radius, spacing) & want
        np.testing.assert_array_equal(_closed_at(mask, want, radius, spacing), expect)
    assert (_close_mm(mask, 6.0, spacing) & want & ~mask).any()   # the closing does add voxels here


@pytest.mark.parametrize("spacing", EDT_SPACINGS)
def test_measures_equal_whole_grid_on_random_bone(spacing):
    """Distances (up to the margin; farther ones come from the k-d tree), contact shares and depths of random
    lesions in random bone equal the whole grid's distance transforms exactly (==), with margins at exact ties
    (distances the EDT reports) and lesions deeper in bone than twice the margin (the depth search must grow
    its window, bounded by the first pass's maximum)."""
    from scipy import ndimage

    from carpet.classify import _lesion_bone_measures

    rng = np.random.default_rng(9)
    bone = _blobs(rng, (40, 36, 22), 0.45, sigma=2.5)
    labels = cc3d.connected_components(_blobs(rng, bone.shape, 0.08), connectivity=26).astype(np.int32)
    ids = np.unique(labels[labels > 0])
    outside = ndimage.distance_transform_edt(~bone, sampling=spacing)
    depth = ndimage.distance_transform_edt(np.pad(bone, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]
    deepest = [depth[labels == lid].max() for lid in ids]
    for margin in _tie_radii(depth[bone], 0.8, 2.0):
        assert max(deepest) > 2 * margin                 # some depths need a grown window
        m = _lesion_bone_measures(bone, labels, ids, spacing, margin, touch_mm=margin)
        for i, lid in enumerate(ids):
            sel = labels == lid
            gap = outside[sel].min()                     # beyond the margin: the k-d tree's rounding
            assert m["d_centre"][i] == gap if gap <= margin else m["d_centre"][i] == pytest.approx(gap, rel=1e-12)
            assert m["depth"][i] == deepest[i]
            assert m["touch"][i] == np.count_nonzero(outside[sel] <= margin) / sel.sum()


@pytest.mark.parametrize("spacing", [(2.0, 1.0, 3.0), (0.976562, 0.976562, 3.27)])
def test_depth_in_bone_filling_the_array(spacing):
    """Bone everywhere: the only non-bone is beyond the array's border, which the depth search reaches only
    when its window spans the array from every voxel of the lesion's box — one voxel at the centre of an
    odd-sized array (the border as far on both sides) and a lesion as wide as the array."""
    bone = np.ones((21, 25, 11), bool)
    labels = np.zeros(bone.shape, np.int32)
    labels[10, 12, 5] = 1
    labels[:, 3:5, 2:4] = 2
    _assert_measures_equal_whole_grid(bone, labels, spacing, margin_mm=1.0)


def test_nonzero_by_chunks_and_negative_labels():
    """``_nonzero`` (only chunks with a nonzero value compared) equals ``np.flatnonzero`` across chunk edges and
    the tail, for every integer width and booleans; a negative label anywhere is an error of the sites, with
    or without a CT (it is found with the labelled voxels, not by a scan of its own)."""
    from carpet.classify import _nonzero
    from carpet.errors import InputError

    rng = np.random.default_rng(3)
    for n in (0, 7, 1 << 15, (1 << 15) + 1, 5 * (1 << 15) + 123):
        for dtype in (bool, np.uint8, np.int16, np.int32, np.int64):
            arr = (rng.random(n) < 0.0005).astype(dtype)
            if n > 2:
                arr[[0, n - 1]] = 1                     # the first and the last voxel
            np.testing.assert_array_equal(_nonzero(arr), np.flatnonzero(arr))
    arr = np.zeros((40, 40, 41), np.int32)
    arr[5, 5, 5] = 1
    arr[35, 30, 38] = -1                                # a chunk holding no positive label
    ct = Volume(np.zeros(arr.shape, np.int16), (4.0, 4.0, 4.0))
    for c in (ct, None):
        with pytest.raises(InputError, match="negative labels"):
            classify_lesions(Volume(arr, (4.0, 4.0, 4.0)), c)
