"""Morphology and geometry helpers shared by the anatomy modules (Euclidean, honour anisotropic spacing).

Written here from scipy.ndimage / cc3d primitives; every step is O(voxels) or O(box).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cc3d  # connected components: faster than ndimage.label, same components
import numpy as np
from scipy import ndimage

from carpet.volume import Volume, resample_to

AIR_HU = -1024.0


def _dilate_mm(mask: np.ndarray, radius_mm: float, spacing) -> np.ndarray:
    """Dilation by a Euclidean ball of ``radius_mm`` (binary morphology for small balls, else the EDT)."""
    if radius_mm <= 0 or not mask.any():
        return mask.copy()
    ball = _ball_structure(radius_mm, spacing)
    if ball.size <= 125:
        return ndimage.binary_dilation(mask, ball)
    return ndimage.distance_transform_edt(~mask, sampling=spacing) <= radius_mm


def _erode_mm(mask: np.ndarray, radius_mm: float, spacing) -> np.ndarray:
    """Erosion by a Euclidean ball of ``radius_mm``; voxels outside the array count as background."""
    if radius_mm <= 0:
        return mask.copy()
    ball = _ball_structure(radius_mm, spacing)
    if ball.size <= 125:
        return ndimage.binary_erosion(mask, ball, border_value=0)
    padded = np.pad(mask, 1)
    inner = ndimage.distance_transform_edt(padded, sampling=spacing) > radius_mm
    return inner[1:-1, 1:-1, 1:-1]


def _ball_structure(radius_mm: float, spacing) -> np.ndarray:
    """Voxel offsets within ``radius_mm``: the structuring element equal to the EDT's ``<= r`` / ``> r`` tests."""
    half = [int(np.floor(radius_mm / sp)) for sp in spacing]
    ax = [sp * np.arange(-h, h + 1) for sp, h in zip(spacing, half)]
    return (ax[0][:, None, None] ** 2 + ax[1][None, :, None] ** 2 + ax[2][None, None, :] ** 2) <= radius_mm ** 2


def _close_mm(mask: np.ndarray, radius_mm: float, spacing) -> np.ndarray:
    """Closing by a Euclidean ball; padded so that structures at the array edge are not eaten.

    Small balls (up to 5×5×5 voxels) use binary morphology with the ball as structuring element, larger ones
    two distance transforms (cost independent of the radius).
    """
    if radius_mm <= 0:
        return mask.copy()
    # One radius (+1 voxel) per axis: the padded border is then farther than the radius from every voxel
    # of ``mask``'s grid, so it cannot erode them (with the in-slice closing's huge axial spacing, 1 voxel).
    pad = _reach(radius_mm, spacing)
    padded = np.pad(mask, [(p, p) for p in pad])
    ball = _ball_structure(radius_mm, spacing)
    if ball.size <= 125:
        closed = ndimage.binary_erosion(ndimage.binary_dilation(padded, ball), ball)
    else:
        closed = _erode_mm(_dilate_mm(padded, radius_mm, spacing), radius_mm, spacing)
    return closed[tuple(slice(p, -p) for p in pad)]


def _close_in_box(mask: np.ndarray, box: tuple[slice, ...], radius_mm: float, spacing) -> np.ndarray:
    """``_close_mm(mask, radius_mm, spacing)[box]`` computed in ``box`` grown by two radii only.

    Both give the closing of ``mask`` extended by background beyond the array: the dilation at a voxel of
    the box grown by one radius depends only on ``mask`` within one more radius, and the erosion at a voxel
    of the box only on the dilation within one radius. Cost follows the box, not ``mask``'s array.
    """
    if radius_mm <= 0:
        return mask[box].copy()
    half = [int(np.ceil(radius_mm / s)) for s in spacing]
    # region = box grown by 2 radii + 1 voxel (background where it leaves the array)
    grow = [2 * h + 1 for h in half]
    region = np.zeros([b.stop - b.start + 2 * g for b, g in zip(box, grow)], bool)
    src = tuple(slice(max(0, b.start - g), min(n, b.stop + g)) for b, g, n in zip(box, grow, mask.shape))
    dst = tuple(slice(s.start - (b.start - g), s.stop - (b.start - g)) for s, b, g in zip(src, box, grow))
    region[dst] = mask[src]
    dilated = _dilate_mm(region, radius_mm, spacing)
    mid = tuple(slice(g - h, n - g + h) for g, h, n in zip(grow, half, region.shape))   # box grown by 1 radius
    closed = _erode_mm(dilated[mid], radius_mm, spacing)
    return closed[tuple(slice(h, -h) for h in half)]


def _axial_axis(vol: Volume) -> int:
    """The array axis closest to the patient's cranio-caudal (LPS z) direction."""
    return int(np.argmax(np.abs(vol.direction[2, :])))


def _fill_holes_slicewise(mask: np.ndarray, axis: int, max_area_px: float | None = None) -> np.ndarray:
    """Fill the 2-D holes of ``mask`` in every slice across ``axis``: in-slice (4-connected) background
    components that do not reach the slice's border.

    This also fills every 3-D hole (a 6-connected background component not reaching the array's border):
    each of its in-slice components is in-slice connected background that reaches no border either, so it is
    a 2-D hole. The converse makes the 2-D filling the stronger one: a medullary canal that leaves the field
    of view (a femur or the spine cut by the first and last slice) is no 3-D hole, but in each axial slice it
    is still a hole inside a cortical ring. One labelling pass instead of ``binary_fill_holes``' iterated
    dilation (much faster on CT).

    ``max_area_px``: fill only holes that belong to a small cavity. The 2-D holes stacked across slices
    (6-connected) form cavities; a cavity is filled only when none of its slices' holes exceeds
    ``max_area_px`` voxels. A marrow cavity is small in every slice; the cranial vault is a ring in every
    axial slice, and without the limit the whole brain would be filled, even its small top and bottom
    slices (they belong to the same cavity as the wide ones). Written here: no library fills holes by size.
    """
    # One 2-D labelling (cc3d, 4-connected) of all slices stacked side by side, each followed by a row of
    # mask that no background component crosses: 2-3 times faster than a 3-D ndimage.label with an
    # in-slice structure, same components.
    m = np.moveaxis(mask, axis, 0)
    nz, nx, ny = m.shape
    stacked = np.ones((nz, nx + 1, ny), bool)
    stacked[:, :nx] = m
    background, n = cc3d.connected_components(~stacked.reshape(nz * (nx + 1), ny), connectivity=4,
                                              return_N=True)
    background = background.reshape(nz, nx + 1, ny)[:, :nx]
    outside = np.zeros(n + 1, bool)
    for face in (background[:, 0, :], background[:, -1, :], background[:, :, 0], background[:, :, -1]):
        outside[face.ravel()] = True
    outside[0] = True                                   # label 0 is the mask itself
    holes = ~outside[background]
    if max_area_px is not None and holes.any():
        hole_ids = background[holes]
        area = np.bincount(hole_ids, minlength=n + 1)
        cavities, n_cav = cc3d.connected_components(holes, connectivity=6, return_N=True)
        cavity_of = np.zeros(n + 1, np.int64)           # a 2-D hole lies in one cavity (4- within 6-connected)
        cavity_of[hole_ids] = cavities[holes]
        widest = np.zeros(n_cav + 1, np.int64)
        ids = np.flatnonzero(area)
        np.maximum.at(widest, cavity_of[ids], area[ids])
        small = widest <= max_area_px
        small[0] = False
        holes &= small[cavities]
    holes = np.moveaxis(holes, 0, axis)
    return mask | holes


def _largest_component(mask: np.ndarray) -> np.ndarray:
    lab, n = cc3d.connected_components(mask, connectivity=6, return_N=True)
    if n == 0:
        return mask.copy()
    if n <= 4:    # a body and a few specks: a count per label is 2-4x cheaper than bincount's int64 copy
        sizes = np.array([0] + [np.count_nonzero(lab == k) for k in range(1, n + 1)])
    else:
        sizes = np.bincount(lab.ravel(order="K"))      # "K": no copy of an F-ordered label map
        sizes[0] = 0
    return lab == int(np.argmax(sizes))


def _reach(margin_mm: float, spacing) -> list[int]:
    """Voxels per axis holding every voxel within ``margin_mm`` of a box, plus one."""
    return [int(np.ceil(margin_mm / s)) + 1 for s in spacing]


def _grown_box(box, reach, shape) -> tuple[slice, ...]:
    """``box`` grown by ``reach`` voxels per axis, clipped to ``shape``."""
    return tuple(slice(max(0, b.start - r), min(n, b.stop + r)) for b, r, n in zip(box, reach, shape))


def _remove_near(region: np.ndarray, lesions: np.ndarray, margin_mm: float, spacing) -> None:
    """Clear, in place, the voxels of ``region`` within ``margin_mm`` of a lesion voxel.

    Only ``region``'s box grown by the margin can hold a lesion voxel that matters, so the dilation runs
    there (the whole-grid dilation of every lesion would cost a second on a whole-body PET)."""
    box = _occupied_box(region, _reach(margin_mm, spacing))
    if box is not None and lesions[box].any():
        region[box] &= ~_dilate_mm(lesions[box], margin_mm, spacing)


def _occupied_box(mask: np.ndarray, grow) -> tuple[slice, ...] | None:
    """Bounding box of the True voxels grown by ``grow`` voxels per axis (clipped); None when empty.
    Projections, cheaper than ``ndimage.find_objects`` on a large grid: one pass over ``mask`` onto the plane
    of the two axes other than the slowest in memory gives their spans; the slowest axis's span comes from
    the mask in that box only."""
    slow = int(np.argmax(np.abs(mask.strides)))
    plane = mask.any(axis=slow)
    others = [a for a in range(3) if a != slow]
    span = {}
    for i, a in enumerate(others):
        idx = np.flatnonzero(plane.any(axis=1 - i))
        if idx.size == 0:
            return None
        span[a] = (int(idx[0]), int(idx[-1]) + 1)
    idx = np.flatnonzero(mask[tuple(slice(*span[a]) if a in span else slice(None) for a in range(3))]
                         .any(axis=tuple(others)))
    span[slow] = (int(idx[0]), int(idx[-1]) + 1)
    grow = np.broadcast_to(grow, (3,))
    return tuple(slice(max(0, span[a][0] - int(g)), min(n, span[a][1] + int(g)))
                 for a, g, n in zip(range(3), grow, mask.shape))


def _voxel_coords_mm(vol: Volume, box: tuple[slice, ...] | None = None) -> tuple[np.ndarray, ...]:
    """LPS coordinates (x, y, z) of the voxel centres (of ``box``) as float32 arrays that broadcast to the
    grid's shape: each has length 1 along the array axes it does not vary with. On an axis-aligned grid (the
    usual case) each coordinate is one line, so comparing it with a number costs nothing and combining it
    with a whole-grid mask costs one pass."""
    box = box or tuple(slice(0, n) for n in vol.shape)
    idx = [np.arange(b.start, b.stop, dtype=np.float32) * np.float32(sp) for b, sp in zip(box, vol.spacing)]
    out = []
    for row in range(3):
        c = np.full((1, 1, 1), np.float32(vol.origin[row]))
        for a in range(3):
            if vol.direction[row, a] != 0.0:
                c = c + np.float32(vol.direction[row, a]) * idx[a].reshape([-1 if b == a else 1 for b in range(3)])
        out.append(c)
    return tuple(out)


def _masked_mean(coord: np.ndarray, mask: np.ndarray) -> float:
    """Mean of a broadcastable coordinate (:func:`_voxel_coords_mm`) over the voxels of ``mask``: the mask is
    counted along the axes the coordinate does not vary with, so no whole-grid coordinate array is made."""
    flat = tuple(a for a in range(3) if coord.shape[a] == 1 and mask.shape[a] > 1)
    counts = mask.sum(axis=flat, keepdims=True, dtype=np.int64)
    return float((coord.astype(np.float64) * counts).sum() / counts.sum())


def _masked_min(coord: np.ndarray, mask: np.ndarray) -> float:
    """Minimum of a broadcastable coordinate over the voxels of ``mask`` (as :func:`_masked_mean`)."""
    flat = tuple(a for a in range(3) if coord.shape[a] == 1 and mask.shape[a] > 1)
    seen = mask.any(axis=flat, keepdims=True)
    return float(np.broadcast_to(coord, seen.shape)[seen].min())


def _mask_on_pet(mask: Volume, pet: Volume) -> np.ndarray:
    """A writable boolean copy of ``mask`` on the PET grid (nearest neighbour when resampled)."""
    if mask.same_grid(pet):
        return np.array(mask.array, dtype=bool)
    return np.asarray(resample_to(mask.with_array(np.asarray(mask.array, np.uint8)), pet,
                                  interpolation="nearest").array, bool)


def _linear_onto(moving: Volume, grid: Volume, default_value: float) -> Volume:
    """``moving`` linearly resampled onto ``grid`` as float32 (``default_value`` outside ``moving``).

    The values equal ``resample_to(moving.with_array(float32 copy), grid, interpolation="linear")`` (to the
    last bit of a value ~0, see :func:`_separable_linear`): SimpleITK's linear interpolator works in double
    whatever the input type and casts to the output type.
    When both grids share their axes (the same direction, a signed permutation: PET and CT of one scanner)
    the interpolation is separable and :func:`_separable_linear` does it in numpy; otherwise SimpleITK,
    handed ``moving`` in its own type (an int16 CT: no float copy of it) and ``grid`` by its geometry.
    """
    import SimpleITK as sitk

    if moving.same_grid(grid):
        return moving.with_array(np.asarray(moving.array, np.float32))
    direction = np.asarray(grid.direction, float)
    if (np.array_equal(direction, np.asarray(moving.direction, float)) and np.isin(direction, (-1.0, 0.0, 1.0)).all()
            and (np.abs(direction).sum(axis=0) == 1).all()):
        return Volume(_separable_linear(moving, grid, default_value), grid.spacing, grid.origin, grid.direction,
                      dict(moving.meta))
    f = sitk.ResampleImageFilter()
    f.SetSize([int(n) for n in grid.shape])
    f.SetOutputSpacing([float(s) for s in grid.spacing])
    f.SetOutputOrigin([float(o) for o in grid.origin])
    f.SetOutputDirection([float(d) for d in direction.flatten()])
    f.SetInterpolator(sitk.sitkLinear)
    f.SetDefaultPixelValue(float(default_value))
    f.SetOutputPixelType(sitk.sitkFloat32)
    return Volume.from_sitk(f.Execute(moving.to_sitk()), **moving.meta)


def _linear_taps(moving: Volume, grid: Volume, axis: int):
    """ITK's linear interpolation along one array axis of two grids with the same axes: for every index of
    ``grid`` the base and next index in ``moving``, the weight of the next one, and whether the point lies
    in ``moving`` (its continuous index in [-0.5, n - 0.5), ITK's buffer test). In the half voxel beyond the
    first or last voxel centre ITK takes the edge voxel (a non-positive distance, or a next index past the
    end, means no interpolation along that axis): the same as clamping both indices and the weight."""
    d = np.asarray(grid.direction, float)[:, axis]
    offset = float(d @ (np.asarray(grid.origin, float) - np.asarray(moving.origin, float)))
    n = moving.shape[axis]
    ci = (offset + grid.spacing[axis] * np.arange(grid.shape[axis])) / moving.spacing[axis]
    base = np.clip(np.floor(ci), 0, n - 1).astype(np.intp)
    return base, np.minimum(base + 1, n - 1), np.clip(ci - base, 0.0, None), (ci >= -0.5) & (ci < n - 0.5)


def _separable_linear(moving: Volume, grid: Volume, default_value: float) -> np.ndarray:
    """Trilinear resampling of ``moving`` onto ``grid`` when their array axes coincide (same direction
    matrix): one axis at a time, in ITK's order (axis 0, then 1, then 2) and arithmetic (``a + (b - a) * w``
    in double, cast to float32), slice by slice along axis 2 so that the intermediates stay in cache; only
    in the box of ``grid`` that lies in ``moving``, ``default_value`` elsewhere. Read-only, like the
    SimpleITK result it replaces.

    Equals SimpleITK's values but for ITK's rounding of the continuous index (it multiplies by an inverted
    matrix and blends each scan line's end points, so an index that is an integer here may be one ±1e-16
    there): the double results then differ by ~1e-16 of the step between neighbours, which the float32
    cast removes unless the value is ~0 (0 here, ±1e-15 there). No voxel differs on the bench study or the
    test phantoms. Written here: numpy has no resampler; SimpleITK's (~14 ns a voxel) costs 1.2-1.5x the
    CPU of this one on a 512x512x400 CT, scipy.ndimage's (2^3 taps a voxel) 2-4x."""
    taps = [_linear_taps(moving, grid, a) for a in range(3)]
    runs = [np.flatnonzero(t[3]) for t in taps]
    out = np.empty(grid.shape[::-1], np.float32)                              # (axis 2, 1, 0): C order
    if not all(r.size == n for r, n in zip(runs, grid.shape)):
        out.fill(default_value)
    if all(r.size > 0 for r in runs):
        _interpolate_into(out, moving, taps, [slice(int(r[0]), int(r[-1]) + 1) for r in runs])  # a box
    out.flags.writeable = False
    return out.T


def _interpolate_into(out: np.ndarray, moving: Volume, taps, box: list[slice]) -> None:
    """The interpolation of :func:`_separable_linear` in ``box`` (the part of the grid inside ``moving``)
    of ``out`` (array axes reversed)."""
    (x0, x1, wx), (y0, y1, wy), (z0, z1, wz) = [tuple(v[b] for v in t[:3]) for t, b in zip(taps, box)]
    src = np.asarray(moving.array).T                                           # (axis 2, 1, 0)
    rows = np.unique(np.concatenate([y0, y1]))          # axis 1's rows read (1.56 to 4 mm: 4 of 5)
    y0, y1 = np.searchsorted(rows, y0), np.searchsorted(rows, y1)
    wy = wy[:, None]

    def plane(k: int) -> np.ndarray:
        s = np.take(src[k], rows, axis=0)
        a, b = np.take(s, x0, axis=1), np.take(s, x1, axis=1)   # np.take: 1.5x faster than s[:, x0]
        v = np.subtract(b, a, dtype=np.float64)
        v *= wx
        v += a                                                   # along axis 0
        a, b = np.take(v, y0, axis=0), np.take(v, y1, axis=0)
        b -= a
        b *= wy
        b += a                                                   # along axis 1
        return b

    def slices(part: range) -> None:
        planes: dict[int, np.ndarray] = {}              # the last slice's planes: the next one often reuses one
        for i in part:
            k0, k1, w = int(z0[i]), int(z1[i]), float(wz[i])
            need = (k0, k1) if w > 0.0 and k1 != k0 else (k0,)
            planes = {k: planes[k] if k in planes else plane(k) for k in need}
            v = planes[k0]
            if len(need) == 2:
                v = v + (planes[k1] - v) * w                     # along axis 2
            out[box[2].start + i, box[1], box[0]] = v

    # numpy releases the GIL in take and arithmetic: two threads take half the slices each (as SimpleITK
    # would run two), so the wall time halves when a core is free.
    n = len(z0)
    if n * len(y0) * len(x0) < 1_000_000:
        slices(range(n))
    else:
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(slices, (range(0, n // 2), range(n // 2, n))))


def _mask_centroid_mm(pet: Volume, mask: np.ndarray):
    idx = np.argwhere(mask)
    return None if idx.size == 0 else tuple(pet.index_to_world(idx.mean(axis=0)))
