"""CT tissue on the PET grid (:func:`carpet.anatomy.landmarks.ct_tissue_on`): body and lungs against an
analytic phantom's known volumes and levels, and against the whole-grid definition written with scipy.ndimage
(the function works in boxes; these tests pin that the boxes change nothing)."""

import numpy as np
import pytest
from scipy import ndimage

from carpet.anatomy.landmarks import _lungs_of, ct_tissue_on
from carpet.volume import Volume

PET_MM = 4.0
CT_INPLANE_MM = 1.6
#: FOV (LPS mm, edges): x -120..120, y -100..100, z -140..140
FOV = ((-120.0, 120.0), (-100.0, 100.0), (-140.0, 140.0))
BODY = {"a": 100.0, "b": 70.0, "z": (-120.0, 120.0)}                 # elliptic cylinder, 40 HU
LUNGS = [((-45.0, -5.0, 60.0), (30.0, 40.0, 50.0)), ((45.0, -5.0, 60.0), (30.0, 40.0, 50.0))]  # -850 HU
STOMACH = ((0.0, 30.0, 0.0), 24.0)   # air, 57.9 mL, reaches the lung bases' level (z 10..24): kept
BOWEL = ((0.0, 0.0, -60.0), 25.0)    # air, 65.4 mL, wholly below the lungs: not lung
BUBBLE = ((40.0, 20.0, -20.0), 10.0)  # air, 4.2 mL: below 50 mL, not lung
TABLE = {"y": (86.0, 96.0), "x": (-110.0, 110.0)}  # 200 HU, its own component under the body


def _grid(spacing):
    return [np.arange(lo + s / 2.0, hi, s) for (lo, hi), s in zip(FOV, spacing)]


def _phantom_ct(spacing, stomach=True):
    x, y, z = np.meshgrid(*_grid(spacing), indexing="ij")
    hu = np.full(x.shape, -1000.0)
    body = (x / BODY["a"]) ** 2 + (y / BODY["b"]) ** 2 <= 1.0
    body &= (z > BODY["z"][0]) & (z < BODY["z"][1])
    hu[body] = 40.0
    hu[(y > TABLE["y"][0]) & (y < TABLE["y"][1]) & (np.abs(x) < TABLE["x"][1])] = 200.0
    for (c, r) in LUNGS:
        hu[((x - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((z - c[2]) / r[2]) ** 2 <= 1.0] = -850.0
    for (c, r) in ([STOMACH] if stomach else []) + [BOWEL, BUBBLE]:
        hu[(x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 <= r * r] = -1000.0
    origin = tuple(g[0] for g in _grid(spacing))
    return Volume(np.asfortranarray(hu.astype(np.int16)), tuple(spacing), origin, np.eye(3), {"modality": "CT"})


def _pet():
    spacing = (PET_MM,) * 3
    shape = tuple(len(g) for g in _grid(spacing))
    origin = tuple(g[0] for g in _grid(spacing))
    return Volume(np.ones(shape, np.float32), spacing, origin, np.eye(3), {"modality": "PT"})


def _ball_ml(r):
    return 4.0 / 3.0 * np.pi * r ** 3 / 1000.0


@pytest.mark.parametrize("stomach", [True, False])
def test_body_and_lungs_on_an_analytic_phantom(stomach):
    """Volumes within a voxel layer of the truth, the table not body, bowel gas and a bubble not lung, the
    stomach bubble at the lung bases' level lung (the documented rule), the lungs' lowest slice (the
    diaphragm for the lesion regions) within one slice of the true one.

    Tolerances: the body's in-slice outline is an ellipse drawn twice on square grids (CT 1.6 mm, PET 4 mm)
    and cut at the -400 HU midpoint, so its area is off by at most a fraction of the 4-mm rim (≤ 2 %); its
    z ends lie on voxel boundaries. A 250-mL ellipsoid has ~10,000 mm² of surface: a quarter of a 4-mm voxel
    layer is ~4 %, the tolerance for each air region."""
    ct = _phantom_ct((CT_INPLANE_MM, CT_INPLANE_MM, PET_MM), stomach)
    pet = _pet()
    ct_tissue_on.cache_clear()
    hu, body, lungs = ct_tissue_on(pet, ct, 1.0)
    assert hu.shape == body.shape == lungs.shape == pet.shape
    ml = pet.voxel_volume_ml
    x, y, z = np.meshgrid(*_grid(pet.spacing), indexing="ij")

    body_ml = np.pi * BODY["a"] * BODY["b"] * (BODY["z"][1] - BODY["z"][0]) / 1000.0
    assert body.sum() * ml == pytest.approx(body_ml, rel=0.02)
    assert not body[(y > TABLE["y"][0]) & (y < TABLE["y"][1])].any()           # the table is apart

    labels, n = ndimage.label(lungs, np.ones((3, 3, 3)))
    assert n == (3 if stomach else 2)

    def region_ml(centre):
        k = labels[tuple(int(np.argmin(np.abs(g - c))) for g, c in zip(_grid(pet.spacing), centre))]
        assert k > 0, f"no lung region at {centre}"
        return (labels == k).sum() * ml

    for c, r in LUNGS:
        assert region_ml(c) == pytest.approx(4.0 / 3.0 * np.pi * np.prod(r) / 1000.0, rel=0.04)
    if stomach:
        assert region_ml(STOMACH[0]) == pytest.approx(_ball_ml(STOMACH[1]), rel=0.06)   # smaller: 6 %
    for c, r in (BOWEL, BUBBLE):
        near = (x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 <= (r + PET_MM) ** 2
        assert not lungs[near].any()
    # the diaphragm of the lesion regions: the lungs' lowest slice
    lowest = z[lungs].min()
    truth = (STOMACH[0][2] - STOMACH[1]) if stomach else min(c[2] - r[2] for c, r in LUNGS)
    assert abs(lowest - truth) <= PET_MM


def _whole_grid_reference(hu, axial, min_voxels):
    """The definition on the whole grid, written with scipy.ndimage only (no boxes, no cc3d)."""
    tissue = hu >= -400.0
    lab, n = ndimage.label(tissue)                                  # 6-connected
    if n == 0:
        return tissue.copy(), tissue.copy()
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    body = lab == np.argmax(sizes)
    for k in range(body.shape[axial]):
        sl = [slice(None)] * 3
        sl[axial] = k
        body[tuple(sl)] = ndimage.binary_fill_holes(body[tuple(sl)])  # 4-connected background, in-slice
    air = body & ~tissue
    lab, n = ndimage.label(air, np.ones((3, 3, 3)))
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    sizes[0] = 0
    big = sizes >= min_voxels
    big[0] = False
    if big.sum() <= 1:
        return body, big[lab]
    boxes = ndimage.find_objects(lab)
    lung = boxes[int(np.argmax(sizes)) - 1][axial]
    keep = big.copy()
    for k, box in enumerate(boxes, start=1):
        keep[k] &= box[axial].start < lung.stop and lung.start < box[axial].stop
    return body, keep[lab]


@pytest.mark.parametrize("seed", range(6))
def test_boxes_give_the_whole_grid_masks(seed):
    """Random bodies that touch the grid's faces (the boxes then meet the border), with tissue speckle and
    a second tissue piece outside, air pockets of every size inside, holes open to the border in some
    slices: the body and lungs equal the whole-grid definition voxel for voxel."""
    rng = np.random.default_rng(seed)
    shape = (40, 36, 50)
    field = ndimage.gaussian_filter(rng.normal(size=shape), 2.5)
    field /= field.std()
    hu = np.full(shape, -1000.0)
    lo, hi = rng.integers(0, 6, 3), np.array(shape) - rng.integers(0, 6, 3)
    inside = tuple(slice(a, b) for a, b in zip(lo, hi))
    hu[inside] = np.where(field[inside] > -0.6, 40.0, -900.0)      # body with air pockets of all sizes
    hu[rng.random(shape) < 0.01] = 100.0                             # speckle, also outside
    hu[:3, :3, :] = 300.0                                            # a separate rod along z
    if seed % 2:
        hu = hu.transpose(2, 0, 1)                                   # axial axis first
    pet = Volume(np.asfortranarray(np.zeros(hu.shape, np.float32)), (8.0, 8.0, 8.0), (0.0, 0.0, 0.0),
                 np.eye(3)[:, [2, 0, 1]] if seed % 2 else np.eye(3), {})
    ct = pet.with_array(np.asfortranarray(hu.astype(np.int16)), modality="CT")
    axial = 0 if seed % 2 else 2
    ct_tissue_on.cache_clear()
    _, body, lungs = ct_tissue_on(pet, ct, 1.0)
    want_body, want_lungs = _whole_grid_reference(hu, axial, int(np.ceil(50.0 / pet.voxel_volume_ml)))
    assert np.array_equal(body, want_body)
    assert np.array_equal(lungs, want_lungs)
    assert want_lungs.any()          # each case keeps 1-4 of its 3-6 large air regions: both rules act


def test_lung_level_overlap_is_inclusive():
    """A region whose axial extent shares one slice with the largest region's is kept; one starting the
    slice after the largest ends is not (extents are inclusive on both ends)."""
    air = np.zeros((30, 30, 40), bool)
    air[2:12, 2:12, 20:35] = True            # largest: slices 20..34
    air[15:25, 15:25, 10:21] = True          # slices 10..20: shares slice 20, kept
    air[15:25, 2:12, 35:39] = True           # slices 35..38: starts after 34, dropped
    air[2:10, 20:28, 0:5] = True             # slices 0..4: below, dropped
    lungs = _lungs_of(air, axial=2, min_voxels=50)
    assert lungs[5, 5, 25] and lungs[20, 20, 12]
    assert not lungs[20, 5, 36] and not lungs[5, 24, 2]


_DIRECTIONS = {"identity": np.eye(3), "flipped": np.diag([-1.0, 1.0, -1.0]),
               "permuted": np.array([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])}


@pytest.mark.parametrize("direction", sorted(_DIRECTIONS))
@pytest.mark.parametrize("case", ["inside", "overlapping", "z_interpolated", "mask_box", "disjoint"])
def test_separable_linear_equals_simpleitk(direction, case):
    """The numpy resampling of grids sharing their axes gives SimpleITK's linear interpolation bit for bit
    (int16 CT and float32 mask, points inside, in the half voxel past the edge voxels' centres, outside),
    with the output box, the clamping at the edges and the order of the axes all taking part."""
    from carpet.anatomy._morphology import _linear_onto, _separable_linear
    from carpet.volume import resample_to

    rng = np.random.default_rng(len(case) + 7 * len(direction))
    d = _DIRECTIONS[direction]
    if case == "mask_box":
        moving = Volume((rng.random((9, 7, 5)) > 0.4).astype(np.float32), (1.5, 1.7, 2.5), (3.1, -2.2, 4.4), d)
    else:
        moving = Volume(rng.integers(-1024, 2000, (41, 37, 23)).astype(np.int16), (1.3, 1.1, 2.0),
                        (-3.0, 2.0, 1.0), d)
    spacing = (4.0, 3.5, {"z_interpolated": 2.7}.get(case, 2.0))
    origin = {"inside": (1.0, 3.0, 3.0), "overlapping": (-9.2, -4.3, -3.1), "z_interpolated": (0.3, 2.9, -1.7),
              "mask_box": (-10.0, -10.0, -10.0), "disjoint": (500.0, 0.0, 0.0)}[case]
    origin = tuple(np.asarray(moving.origin) + d @ (np.asarray(origin) - np.asarray(moving.origin)))
    grid = Volume(np.zeros((12, 10, 20), np.float32), spacing, origin, d)
    want = resample_to(moving.with_array(moving.array.astype(np.float32)), grid, interpolation="linear",
                       default_value=-1024.0).array
    got = _separable_linear(moving, grid, -1024.0)
    assert got.dtype == np.float32 and got.shape == grid.shape
    assert np.array_equal(got, want)
    assert np.array_equal(_linear_onto(moving, grid, -1024.0).array, want)
    inside = want != -1024.0
    assert inside.any() == (case != "disjoint") and (inside.all() == (case == "inside"))


@pytest.mark.parametrize("order", ["C", "F"])
def test_occupied_box_equals_find_objects(order):
    """The box from projections is ndimage.find_objects' box of the mask, grown and clipped; None when empty."""
    from carpet.anatomy._morphology import _occupied_box

    rng = np.random.default_rng(5)
    for shape in [(17, 1, 9), (12, 15, 8), (1, 1, 1)]:
        mask = np.zeros(shape, bool, order=order)
        assert _occupied_box(mask, 1) is None
        for _ in range(5):
            mask[...] = False
            k = rng.integers(1, 4)
            mask[tuple(rng.integers(0, shape, (k, 3)).T)] = True
            want = ndimage.find_objects(mask.astype(np.uint8))[0]
            assert _occupied_box(mask, 0) == want
            grow = rng.integers(0, 3, 3)
            assert _occupied_box(mask, grow) == tuple(
                slice(max(0, w.start - g), min(n, w.stop + g)) for w, g, n in zip(want, grow, shape))


def test_separable_linear_where_voxel_centres_coincide():
    """Where output and input voxel centres coincide along an axis whose spacing has no exact inverse, ITK's
    continuous index is off the integer by ~1e-16 and its value by as much of the neighbour step: the
    stated tolerance (1e-12 of the values' range), equal elsewhere."""
    from carpet.anatomy._morphology import _separable_linear
    from carpet.volume import resample_to

    rng = np.random.default_rng(1)
    m = Volume((rng.random((20, 18, 9)) > 0.5).astype(np.float32), (1.5, 1.5, 3.0), (0.0, 0.0, 0.0))
    g = Volume(np.zeros((9, 8, 7), np.float32), (4.0, 4.0, 4.0), (-2.0, 1.0, 0.5))   # x: 6 mm = 4 voxels
    got = _separable_linear(m, g, 0.0)
    want = resample_to(m, g, default_value=0.0).array
    assert np.abs(got - want).max() <= 1e-12
    assert np.array_equal(got[np.abs(want) > 1e-12], want[np.abs(want) > 1e-12])
    assert not got.flags.writeable
