"""Reference regions PET reading compares against: liver, mediastinal blood pool, spine marrow.

See :mod:`carpet.anatomy` for the placement heuristics and how they fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from carpet.anatomy._morphology import (_axial_axis, _ball_structure, _dilate_mm, _erode_mm, _grown_box,
                                        _mask_on_pet, _masked_mean, _masked_min, _occupied_box, _reach,
                                        _remove_near, _voxel_coords_mm)
from carpet.anatomy.bone import BoneParams
from carpet.anatomy.landmarks import SPINE_BAND_MM, _CtOnPet, band_bone
from carpet.provenance import provenance
from carpet.volume import Volume


@dataclass
class ReferenceRegion:
    """A reference region on the PET grid and its uptake statistics (SUV).

    Attributes
    ----------
    name : str
        ``'liver'``, ``'blood_pool'`` or ``'marrow'``.
    mean, sd, max, median : float
        SUV statistics over the region's voxels (sample SD, ``ddof=1``); NaN when empty.
    n_voxels : int
    mask : Volume or None
        Boolean mask on the PET grid.
    centre_mm : tuple or None
        LPS centre (mm) of the region (sphere/cylinder centre, or the mask's centroid).
    usable : bool
        False when the region could not be placed or its values are implausible; ``reason`` says why.
    reason : str
    provenance : dict
    """

    name: str
    mean: float = float("nan")
    sd: float = float("nan")
    max: float = float("nan")
    median: float = float("nan")
    n_voxels: int = 0
    mask: Volume | None = None
    centre_mm: tuple[float, float, float] | None = None
    usable: bool = False
    reason: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no mask)."""
        def num(x):
            return None if x is None or not np.isfinite(x) else round(float(x), 4)
        return {"name": self.name, "suv_mean": num(self.mean), "suv_sd": num(self.sd), "suv_max": num(self.max),
                "suv_median": num(self.median), "n_voxels": int(self.n_voxels),
                "centre_mm": None if self.centre_mm is None else [round(float(c), 2) for c in self.centre_mm],
                "usable": bool(self.usable), "reason": self.reason, "provenance": self.provenance}


def _region_stats(name: str, pet: Volume, mask: np.ndarray, centre_mm, prov: dict, *,
                  plausible_suv: tuple[float, float], max_cov: float, min_voxels: int,
                  reason: str = "", box: tuple[slice, ...] | None = None) -> ReferenceRegion:
    """Statistics of the PET in ``mask`` (a new array, kept as the region's mask; False outside ``box`` when
    given: the values are gathered there, in the same order as from the whole grid)."""
    box = box or _occupied_box(mask, 0) or tuple(slice(0, 0) for _ in range(3))
    vals = np.asarray(pet.array)[box][mask[box]].astype(float)
    region = ReferenceRegion(name=name, n_voxels=int(vals.size), mask=pet.with_array(mask),
                             centre_mm=None if centre_mm is None else tuple(float(c) for c in centre_mm),
                             provenance=prov)
    if vals.size:
        region.mean, region.max, region.median = float(vals.mean()), float(vals.max()), float(np.median(vals))
        region.sd = float(vals.std(ddof=1)) if vals.size > 1 else 0.0
    problems = [reason] if reason else []
    if vals.size < min_voxels:
        if not (reason and vals.size == 0):             # the placement's reason says it already
            problems.append(f"only {vals.size} voxels (< {min_voxels}); region outside the PET or too small")
    elif not (plausible_suv[0] <= region.mean <= plausible_suv[1]):
        problems.append(f"implausible SUVmean {region.mean:.2f} (expected {plausible_suv[0]}–{plausible_suv[1]})")
    elif region.mean > 0 and region.sd / region.mean > max_cov:
        problems.append(f"heterogeneous uptake (CoV {region.sd / region.mean:.2f} > {max_cov}); "
                        "lesion or organ boundary inside the region")
    region.usable = not problems
    region.reason = "; ".join(problems) if problems else "ok"
    return region

def _box_around(vol: Volume, centre_mm, radius_mm: float) -> tuple[slice, ...]:
    """Index box holding a ball of ``radius_mm`` around ``centre_mm`` (clipped to the grid)."""
    c = vol.world_to_index(np.asarray(centre_mm, float))
    r = radius_mm / np.asarray(vol.spacing)            # enough for any direction: the ball's index extent
    return tuple(slice(int(max(0, np.floor(ci - ri) - 1)), int(min(n, np.ceil(ci + ri) + 2)))
                 for ci, ri, n in zip(c, np.full(3, r.max()), vol.shape))


def _zeros_like_pet(pet: Volume) -> np.ndarray:
    """A False mask of the PET grid in the PET's memory order (cheap to combine with its other masks)."""
    return np.zeros(pet.shape, bool, order="F" if np.isfortran(pet.array) else "C")


def _sphere(pet: Volume, centre_mm, diameter_mm: float) -> tuple[np.ndarray, tuple[slice, ...]]:
    """The sphere's mask on the PET grid and the box holding it."""
    out = _zeros_like_pet(pet)
    box = _box_around(pet, centre_mm, diameter_mm / 2.0)
    x, y, z = _voxel_coords_mm(pet, box)
    c = np.asarray(centre_mm, float)
    out[box] = (x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 <= (diameter_mm / 2.0) ** 2
    return out, box


def _cylinder(pet: Volume, centre_mm, diameter_mm: float, length_mm: float) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Cylinder along the patient's z axis (LPS), centred at ``centre_mm``; its mask and the box holding it."""
    out = _zeros_like_pet(pet)
    box = _box_around(pet, centre_mm, float(np.hypot(diameter_mm / 2.0, length_mm / 2.0)))
    x, y, z = _voxel_coords_mm(pet, box)
    c = np.asarray(centre_mm, float)
    out[box] = (((x - c[0]) ** 2 + (y - c[1]) ** 2 <= (diameter_mm / 2.0) ** 2)
                & (np.abs(z - c[2]) <= length_mm / 2.0))
    return out, box

def _mask_centroid_mm(pet: Volume, mask: np.ndarray, box: tuple[slice, ...] | None = None):
    """Mean voxel centre (LPS mm) of ``mask`` (False outside ``box`` when given; the integer index sums are
    exact, so the box changes nothing)."""
    box = box or tuple(slice(0, n) for n in mask.shape)
    idx = np.argwhere(mask[box])
    return None if idx.size == 0 else tuple(pet.index_to_world((idx + [b.start for b in box]).mean(axis=0)))


def _coord_box(cond: np.ndarray, shape) -> tuple[slice, ...] | None:
    """Box of the voxels where ``cond`` holds, a condition on voxel coordinates broadcastable to ``shape``
    (:func:`_voxel_coords_mm`: on an axis-aligned grid a line or a plane, so this costs nothing)."""
    box = []
    for a, n in enumerate(shape):
        on = np.flatnonzero(cond.any(axis=tuple(b for b in range(3) if b != a))) if cond.shape[a] > 1 else \
            np.arange(n) if cond.any() else np.zeros(0, int)
        if on.size == 0:
            return None
        box.append(slice(int(on[0]), int(on[-1]) + 1))
    return tuple(box)


def _crop(coord: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
    """``box`` of a broadcastable coordinate array (:func:`_voxel_coords_mm`), still broadcastable to the box."""
    return coord[tuple(b if coord.shape[a] > 1 else slice(None) for a, b in enumerate(box))]


def _along(coord: np.ndarray, box: tuple[slice, ...]) -> tuple[slice, ...]:
    """``box`` without cropping the axes ``coord`` varies along: :func:`_masked_mean` of a mask that is False
    outside ``box``, computed there, then sums the same per-coordinate counts in the same order (same float)."""
    return tuple(slice(None) if coord.shape[a] > 1 else b for a, b in enumerate(box))


def _lesions_in(lesions: Volume | None, pet: Volume):
    """``box -> lesion mask of the PET grid in box`` (None without lesions): on the PET grid only the box is
    read; a mask on another grid is resampled (nearest) once."""
    if lesions is None:
        return None
    if lesions.same_grid(pet):
        arr = np.asarray(lesions.array)
        return lambda box: arr[box] > 0
    full = _mask_on_pet(lesions.with_array(np.asarray(lesions.array) > 0), pet)
    return lambda box: full[box]

def _ball_kernel(spacing, diameter_mm: float) -> np.ndarray:
    """Averaging kernel over a ball of ``diameter_mm`` (weights sum to 1)."""
    ball = _ball_structure(diameter_mm / 2.0, spacing).astype(np.float32)
    return ball / ball.sum()


def _fft_filter(arr: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Correlation with a symmetric kernel, zero outside the array, output the shape of ``arr`` (FFT).

    ``scipy.fft`` directly: ``scipy.signal.fftconvolve`` does the same but importing ``scipy.signal`` costs
    seconds.
    """
    from scipy import fft

    shape = [a + k - 1 for a, k in zip(arr.shape, kernel.shape)]
    shape = [fft.next_fast_len(n, real=True) for n in shape]
    out = fft.irfftn(fft.rfftn(arr, shape) * fft.rfftn(kernel, shape), shape)
    start = [(k - 1) // 2 for k in kernel.shape]
    return out[tuple(slice(s0, s0 + a) for s0, a in zip(start, arr.shape))]


def _local_mean_cov(pet: np.ndarray, spacing, diameter_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and coefficient of variation of the PET in a ball around every voxel (FFT convolution)."""
    k = _ball_kernel(spacing, diameter_mm)
    p = np.asarray(pet, np.float32)
    mean = _fft_filter(p, k)
    sq = _fft_filter(p * p, k)
    sd = np.sqrt(np.clip(sq - mean * mean, 0.0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = np.where(mean > 0, sd / mean, np.inf)
    return mean, cov


def _auto_liver_centre(pet: Volume, ctp: _CtOnPet, diameter_mm: float, liver_hu, search_below_lung_mm: float,
                       avoid, plausible_suv, max_cov):
    """The liver sphere's centre (LPS mm) and "", or None and the reason; ``avoid``: :func:`_lesions_in`.

    Every step works in the box of the slab where a centre may lie (right side, from the lung's centroid
    down to ``search_below_lung_mm`` below its base) grown by the widest reach of the steps (sphere depth,
    lesion margin, the ball of the local statistics): the same decisions as on the whole grid."""
    if not ctp.lungs.any():
        # The liver lies under the right lung's base: without the lung base nothing says the liver is in the
        # field of view (a pelvis or a thigh would offer muscle), so the sphere is refused, not guessed.
        return None, "no liver in the field of view (no lung base on the CT; the liver lies below it)"
    x, z = ctp.xyz[0], ctp.xyz[2]
    right = x < ctp.x_mid                           # patient right = smaller LPS x
    lung, z_lung = ctp.lungs, z
    rbox = _coord_box(right, pet.shape)
    if rbox is not None:
        span = _along(z, rbox)
        right_lung = ctp.lungs[span] & _crop(right, span)
        if right_lung.any():
            lung, z_lung = right_lung, _crop(z, span)
    z_lung_base = _masked_min(z_lung, lung)
    # ...and not above the lung's centroid: the liver's dome lies under the lung, while the brain (soft-tissue
    # HU, homogeneous, no longer bone since the cranial vault is not filled) would otherwise compete.
    where = right & (z >= z_lung_base - search_below_lung_mm) & (z <= _masked_mean(z_lung, lung))
    slab = _coord_box(where, pet.shape)
    none = "no soft tissue in the right upper abdomen can hold the sphere"
    if slab is None:
        return None, none
    margin_mm = max(diameter_mm / 2.0 + 2 * max(pet.spacing), (diameter_mm + 20.0) / 2.0) + max(pet.spacing)
    reach = _reach(margin_mm, pet.spacing)
    outer = _grown_box(slab, reach, pet.shape)      # holds every voxel the steps below read
    h = ctp.hu[outer]
    soft = (h >= liver_hu[0]) & (h <= liver_hu[1]) & ctp.body[outer] & ~ctp.bone[outer]
    region = soft & _crop(where, outer)
    box = _occupied_box(region, 0)
    if box is None:
        return None, none
    crop = _grown_box(box, reach, soft.shape)       # in ``outer``: the same as grown in the whole grid
    at = tuple(slice(o.start + c.start, o.start + c.stop) for o, c in zip(outer, crop))
    soft, region = soft[crop], region[crop]
    depth_mm = diameter_mm / 2.0 + max(pet.spacing)
    lesions = None if avoid is None else avoid(at)
    near = np.zeros(soft.shape, bool)               # within depth_mm of a lesion, in the lesions' box only
    around = None if lesions is None else _occupied_box(lesions, _reach(depth_mm, pet.spacing))
    if around is not None:
        near[around] = _dilate_mm(lesions[around], depth_mm, pet.spacing)
    # The liver is the right-sided soft tissue with the highest homogeneous uptake; a ball 2 cm wider than
    # the VOI keeps the centre at least 1 cm inside the organ's PET edge (blurred by the PSF).
    mean, cov = _local_mean_cov(np.asarray(pet.array)[at], pet.spacing, diameter_mm + 20.0)
    homogeneous = region & ~near & (cov <= max_cov) & (mean >= plausible_suv[0]) & (mean <= plausible_suv[1])
    # The hottest such voxel that also lies depth_mm deep in soft tissue: the hottest voxels are tried first
    # (usually the first one fits), each in its own small box.
    best = _first_that_fits(homogeneous, mean, soft, depth_mm, pet.spacing)
    if best is None:                                # none of the first ones fits: the whole crop at once
        # Zero outside the crop: a false "not soft" there is > margin away from any candidate, so the test
        # depth >= radius + voxel is unchanged (the array's own border is not soft, as before).
        depth = ndimage.distance_transform_edt(np.pad(soft, 1), sampling=pet.spacing)[1:-1, 1:-1, 1:-1]
        cand = region & (depth >= depth_mm) & ~near
        if not cand.any():
            return None, none
        ok = cand & homogeneous
        if not ok.any():
            return None, "no homogeneous soft-tissue region with plausible liver uptake on the patient's right"
        best = np.unravel_index(np.argmax(np.where(ok, mean, -np.inf)), mean.shape)
    best = [b + c.start for b, c in zip(best, at)]
    return tuple(pet.index_to_world(np.asarray(best, float))), ""


def _first_that_fits(candidates: np.ndarray, score: np.ndarray, soft: np.ndarray, depth_mm: float, spacing,
                     tries: int = 64):
    """The index of ``argmax(where(ok, score, -inf))`` with ``ok = candidates & (depth >= depth_mm)`` (depth:
    the distance transform of ``soft`` padded with one voxel of background), found by testing the candidates
    in the order of that argmax (highest score, then array order), each in the box holding every voxel
    within ``depth_mm`` of it: the same distances, so the same answer as the transform of the whole array.
    None when none of the first ``tries`` candidates fits."""
    flat = np.flatnonzero(candidates)
    values = score.ravel()[flat]
    if flat.size > tries:                           # only the first ones are sorted (ties at the cut kept)
        keep = values >= np.partition(values, flat.size - tries)[flat.size - tries]
        flat, values = flat[keep], values[keep]
    order = flat[np.argsort(-values, kind="stable")]
    half = _reach(depth_mm, spacing)
    for k in order[:tries]:
        v = np.unravel_index(k, candidates.shape)
        box = tuple(slice(max(0, c - h), min(n, c + h + 1)) for c, h, n in zip(v, half, candidates.shape))
        local = tuple(int(c - b.start) for c, b in zip(v, box))
        depth = ndimage.distance_transform_edt(np.pad(soft[box], 1), sampling=spacing)
        if depth[tuple(i + 1 for i in local)] >= depth_mm:
            return v
    return None


def _correlate_in_box(arr: np.ndarray, kernel: np.ndarray, box: tuple[slice, ...],
                      mode: str = "nearest") -> np.ndarray:
    """``ndimage.correlate(arr, kernel, mode=mode)[box]`` (float32) computed in ``box`` grown by the kernel's
    half-size only: inside the array the grown box holds every voxel the kernel reaches, and where it meets
    the array's border the extension ('nearest' or 'constant' zero) is the same as for the whole array."""
    half = [k // 2 for k in kernel.shape]
    grown = _grown_box(box, half, arr.shape)
    out = ndimage.correlate(np.asarray(arr[grown], np.float32), kernel, mode=mode)
    return out[tuple(slice(b.start - g.start, b.stop - g.start) for b, g in zip(box, grown))]


def _auto_aorta_centre(pet: Volume, ctp: _CtOnPet, diameter_mm: float, length_mm: float, blood_hu,
                       avoid, plausible_suv):
    """The blood-pool cylinder's centre (LPS mm) and "", or None and the reason; ``avoid``: :func:`_lesions_in`.

    Only the columns where the aorta may lie (between the lungs' centroids, behind their mean y) over the
    slices holding both lungs are filtered: the same decisions as on the whole grid."""
    axis = _axial_axis(pet)
    other = tuple(a for a in range(3) if a != axis)
    x, y = ctp.xyz[0], ctp.xyz[1]
    no_thorax = "no thorax in the field of view (both lungs are needed to find the descending aorta)"
    lbox = _occupied_box(ctp.lungs, 0)
    if lbox is None:
        return None, no_thorax
    lungs, xl = ctp.lungs[lbox], _crop(x, lbox)
    thorax = np.zeros(pet.shape[axis], bool)        # slices holding both lungs
    thorax[lbox[axis]] = (lungs & (xl > ctp.x_mid)).any(axis=other) & (lungs & (xl <= ctp.x_mid)).any(axis=other)
    if thorax.sum() < 2:
        return None, no_thorax
    # Posterior mediastinum between the lungs' centroids: the descending aorta's column.
    span = _along(x, lbox)
    xs = _crop(x, span)
    lx_r = _masked_mean(xs, ctp.lungs[span] & (xs <= ctp.x_mid))
    lx_l = _masked_mean(xs, ctp.lungs[span] & (xs > ctp.x_mid))
    y_lungs = _masked_mean(_crop(y, _along(y, lbox)), ctp.lungs[_along(y, lbox)])
    x0, y0 = (np.take(c, 0, axis=axis) for c in (x, y))
    columns = (x0 > lx_r) & (x0 < lx_l) & (y0 >= y_lungs)
    no_column = "no blood-pool column found in the posterior mediastinum"
    box = _coord_box(np.expand_dims(columns, axis), pet.shape)
    if box is None:
        return None, no_column
    rows = np.flatnonzero(thorax)
    box = tuple(slice(int(rows[0]), int(rows[-1]) + 1) if a == axis else b for a, b in enumerate(box))
    plane = tuple(b for a, b in enumerate(box) if a != axis)
    # Voxels whose in-slice disk of the VOI's diameter is all blood-like soft tissue (no lung, no bone), in
    # the box grown by the disk's half-size (zero beyond the array, as before).
    disk = _ball_kernel(pet.spacing, diameter_mm)
    disk = disk.take([disk.shape[axis] // 2], axis=axis)
    disk = disk / disk.sum()
    grown = _grown_box(box, [k // 2 for k in disk.shape], pet.shape)
    h = ctp.hu[grown]
    soft = (h >= blood_hu[0]) & (h <= blood_hu[1]) & ctp.body[grown] & ~ctp.bone[grown]
    if avoid is not None:
        soft &= ~avoid(grown)
    fits = _correlate_in_box(soft, disk, tuple(slice(b.start - g.start, b.stop - g.start)
                                               for b, g in zip(box, grown)), mode="constant") > 0.999
    in_box = thorax[box[axis]]
    fits_thorax = fits.compress(in_box, axis=axis)
    col_fits = fits_thorax.mean(axis=axis) >= 0.8
    # A column's median disk SUV over the thorax slices is NaN (the column is unusable) unless the disk fits
    # in every one of them, so the PET is disk-filtered only in the box of those columns.
    all_fit = fits_thorax.all(axis=axis)
    col_pet = np.full(all_fit.shape, np.nan, np.float32)
    pet_box, pet_disk = None, None
    if all_fit.any():
        pet_box = list(_occupied_box(np.expand_dims(all_fit, axis), 0))
        pet_box = tuple(box[a] if a == axis else slice(b.start + p.start, b.stop + p.start)
                        for a, (b, p) in enumerate(zip(pet_box, box)))
        pet_disk = _correlate_in_box(np.asarray(pet.array), disk, pet_box)
        in_thorax = np.moveaxis(pet_disk.compress(in_box, axis=axis), axis, -1)
        fit = all_fit[tuple(slice(p.start - b.start, p.stop - b.start) for p, b in
                            zip((p for a, p in enumerate(pet_box) if a != axis), plane))]
        sub = col_pet[tuple(slice(p.start - b.start, p.stop - b.start) for p, b in
                            zip((p for a, p in enumerate(pet_box) if a != axis), plane))]
        sub[fit] = np.median(in_thorax[fit], axis=-1)
    col_ok = col_fits & columns[plane]
    with np.errstate(invalid="ignore"):
        col_ok &= (col_pet >= plausible_suv[0]) & (col_pet <= plausible_suv[1])
    if not col_ok.any():
        return None, no_column
    # The blood pool is the hottest such column (mediastinal fat, oesophagus and muscle are colder).
    col = np.unravel_index(np.argmax(np.where(col_ok, col_pet, -np.inf)), col_ok.shape)
    at = [0, 0, 0]                                  # the column in the box's in-slice axes
    for a, c in zip(other, col):
        at[a] = c
    line = tuple(slice(None) if a == axis else at[a] for a in range(3))
    on_line = np.zeros(pet.shape[axis], bool)
    on_line[box[axis]] = fits[line]
    ks = np.flatnonzero(thorax & on_line)
    values = np.zeros(pet.shape[axis], np.float32)
    values[box[axis]] = pet_disk[tuple(slice(None) if a == axis else at[a] + plane_start - p.start
                                       for a, plane_start, p in zip(range(3), (b.start for b in box), pet_box))]
    half = max(1, int(round(length_mm / 2.0 / pet.spacing[axis])))
    # Along the column pick the segment agreeing best with the column's median (avoids lesions, edges).
    cost = [np.max(np.abs(values[max(0, k - half):k + half + 1] - col_pet[col])) if
            np.all(np.isin(np.arange(k - half, k + half + 1), ks)) else np.inf for k in ks]
    k = ks[int(np.argmin(cost))] if np.isfinite(np.min(cost)) else ks[len(ks) // 2]
    idx = [b.start + at[a] for a, b in enumerate(box)]
    idx[axis] = k
    return tuple(pet.index_to_world(np.asarray(idx, float))), ""


def _reference(name: str, pet: Volume, ct: Volume | None, centre_mm, mask: Volume | None, shape_fn,
               auto_fn, prov: dict, plausible_suv, max_cov, min_fraction: float, n_expected: float) -> ReferenceRegion:
    reason, box = "", None
    if mask is not None:
        m = _mask_on_pet(mask, pet)
        centre = _mask_centroid_mm(pet, m)
        prov["placement"] = "mask"
        n_expected = max(1.0, float(m.sum()))
    else:
        if centre_mm is not None:
            centre = tuple(float(c) for c in centre_mm)
            prov["placement"] = "coordinates"
        elif ct is not None:
            centre, reason = auto_fn()
            prov["placement"] = "automatic"
        else:
            centre, reason = None, "no CT: automatic placement needs CT; give centre_mm or a mask"
            prov["placement"] = "none"
        m, box = shape_fn(centre) if centre is not None else (np.zeros(pet.shape, bool), None)
    return _region_stats(name, pet, m, centre, prov, plausible_suv=plausible_suv, max_cov=max_cov,
                         min_voxels=max(2, int(min_fraction * n_expected)), reason=reason, box=box)


def liver_reference(pet: Volume, ct: Volume | None = None, centre_mm=None, diameter_mm: float = 30.0, *,
                    mask: Volume | None = None, lesions: Volume | None = None,
                    liver_hu: tuple[float, float] = (0.0, 120.0), search_below_lung_mm: float = 150.0,
                    plausible_suv: tuple[float, float] = (0.5, 4.0), max_cov: float = 0.30,
                    bone_params: BoneParams = BoneParams()) -> ReferenceRegion:
    """Liver reference: a ``diameter_mm`` sphere in the right lobe (PERCIST, spec §5.2).

    Parameters
    ----------
    pet : Volume
        PET in SUV; the region is drawn on its grid.
    ct : Volume, optional
        CT in HU (any grid) for automatic placement (see the module docstring for the heuristic).
    centre_mm : sequence of 3 floats, optional
        LPS centre of the sphere; overrides automatic placement.
    diameter_mm : float
        Sphere diameter (mm), 30 per PERCIST.
    mask : Volume, optional
        A liver VOI to use as is (any grid; nearest-neighbour resampled to the PET); overrides the rest.
    lesions : Volume, optional
        Lesion mask/labels on the PET grid; automatic placement keeps the sphere off them.
    liver_hu, search_below_lung_mm, plausible_suv, max_cov : see the module docstring.

    Returns
    -------
    ReferenceRegion
    """
    prov = provenance(method="PERCIST_liver_sphere", diameter_mm=diameter_mm, liver_hu=list(liver_hu),
                      plausible_suv=list(plausible_suv), max_cov=max_cov)
    avoid = _lesions_in(lesions, pet)

    def auto():
        ctp = _CtOnPet.build(pet, ct, bone_params)
        return _auto_liver_centre(pet, ctp, diameter_mm, liver_hu, search_below_lung_mm, avoid, plausible_suv,
                                  max_cov)

    n_expected = np.pi / 6.0 * diameter_mm ** 3 / (pet.voxel_volume_ml * 1000.0)
    return _reference("liver", pet, ct, centre_mm, mask, lambda c: _sphere(pet, c, diameter_mm), auto, prov,
                      plausible_suv, max_cov, 0.5, n_expected)


def blood_pool_reference(pet: Volume, ct: Volume | None = None, centre_mm=None, diameter_mm: float = 10.0,
                         length_mm: float = 20.0, *, mask: Volume | None = None, lesions: Volume | None = None,
                         blood_hu: tuple[float, float] = (-20.0, 120.0),
                         plausible_suv: tuple[float, float] = (0.5, 4.0), max_cov: float = 0.30,
                         bone_params: BoneParams = BoneParams()) -> ReferenceRegion:
    """Mediastinal blood pool: a ``diameter_mm`` × ``length_mm`` cylinder in the descending aorta (spec §5.2).

    Parameters are as for :func:`liver_reference`; the cylinder's axis is the patient's z axis.
    """
    prov = provenance(method="PERCIST_blood_pool_cylinder", diameter_mm=diameter_mm, length_mm=length_mm,
                      blood_hu=list(blood_hu), plausible_suv=list(plausible_suv), max_cov=max_cov)
    avoid = _lesions_in(lesions, pet)

    def auto():
        ctp = _CtOnPet.build(pet, ct, bone_params)
        return _auto_aorta_centre(pet, ctp, diameter_mm, length_mm, blood_hu, avoid, plausible_suv)

    n_expected = np.pi * (diameter_mm / 2) ** 2 * length_mm / (pet.voxel_volume_ml * 1000.0)
    return _reference("blood_pool", pet, ct, centre_mm, mask,
                      lambda c: _cylinder(pet, c, diameter_mm, length_mm), auto, prov,
                      plausible_suv, max_cov, 0.5, n_expected)


#: Vertebral-body test of the spine marrow (provisional conventions [C]): trunk slices are at least
#: ``trunk_min_width_mm`` wide (a thigh is narrower); the marrow is trabecular (``min_hu``, not the canal's
#: CSF) and posterior to the body's centre; the column spans ``min_length_mm`` of slices whose marrow lies
#: within ``column_mm`` (in-slice) of the column's median position.
VERTEBRA = {"trunk_min_width_mm": 200.0, "min_hu": 100.0, "min_length_mm": 60.0, "column_mm": 15.0}


def _vertebral_bodies(pet: Volume, ctp: _CtOnPet, marrow: np.ndarray, box: tuple[slice, ...]):
    """The part of ``marrow`` (the mid-line band's, in ``box`` of the PET grid) in vertebral bodies: (mask,
    its box, "") or (None, None, the reason).

    Written here (no library locates vertebrae on CT without a trained model): the ilium, the femur or a
    sternum can lie in the mid-line band of a cropped field of view; the spine is the column of trabecular
    marrow behind the trunk's centre, continuous along z. Fails (refuses) when the field of view holds less
    than ``min_length_mm`` of spine, and takes the sacrum for spine (it is: fused vertebral bodies).
    """
    axis = _axial_axis(pet)
    ax_x = int(np.argmax(np.abs(pet.direction[0, :])))
    ax_y = int(np.argmax(np.abs(pet.direction[1, :])))
    other = tuple(a for a in range(3) if a != axis)
    none = "no vertebral bodies in the field of view (no trabecular marrow behind the trunk's centre on the mid-line)"
    inner = _occupied_box(marrow, 0)
    if inner is None:
        return None, None, none
    marrow = marrow[inner]
    box = tuple(slice(b.start + i.start, b.start + i.stop) for b, i in zip(box, inner))
    # the body's width and mean y, slice by slice, in the marrow's slices only
    rows_only = tuple(b if a == axis else slice(None) for a, b in enumerate(box))
    body = ctp.body[rows_only]
    occ = body.any(axis=ax_y)                            # (x, slice) in array order of the two axes
    occ = occ if ax_x < axis else occ.T
    first = np.where(occ.any(axis=0), np.argmax(occ, axis=0), 0)
    last = np.where(occ.any(axis=0), occ.shape[0] - 1 - np.argmax(occ[::-1], axis=0), -1)
    width = (last - first + 1) * pet.spacing[ax_x]
    # the body's mean y per slice from its counts per (y, slice): y does not vary along the x axis
    counts = body.sum(axis=ax_x, dtype=np.int64)                 # 2-D: the y axis and the slices, in order
    y_plane = np.broadcast_to(_crop(ctp.xyz[1], rows_only), body.shape).take(0, axis=ax_x)
    y_dim = 0 if ax_y < axis else 1
    with np.errstate(invalid="ignore", divide="ignore"):
        y_centre = (y_plane * counts).sum(axis=y_dim) / counts.sum(axis=y_dim)
    trunk = width >= VERTEBRA["trunk_min_width_mm"]
    shape = [1, 1, 1]
    shape[axis] = -1
    y = np.broadcast_to(_crop(ctp.xyz[1], box), marrow.shape)
    sub = (marrow & (ctp.hu[box] >= VERTEBRA["min_hu"]) & trunk.reshape(shape)
           & (y >= np.nan_to_num(y_centre, nan=np.inf).reshape(shape)))
    n = sub.sum(axis=other)
    if not n.any():
        return None, None, none
    x = np.broadcast_to(_crop(ctp.xyz[0], box), marrow.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        x_slice = np.where(sub, x, 0).sum(axis=other) / n
    rows = n > 0
    x_col = float(np.median(x_slice[rows]))
    rows &= np.abs(x_slice - x_col) <= VERTEBRA["column_mm"]
    if rows.sum() * pet.spacing[axis] < VERTEBRA["min_length_mm"]:
        return None, None, (f"no vertebral bodies in the field of view (a spine column shorter "
                            f"than {VERTEBRA['min_length_mm']:g} mm)")
    return sub & rows.reshape(shape), box, ""


def _remove_lesions(region: np.ndarray, box: tuple[slice, ...] | None, lesions_in, margin_mm: float,
                    spacing) -> tuple[slice, ...] | None:
    """:func:`_remove_near` (in place) with the lesions read only near ``region`` (False outside ``box``;
    None: anywhere); returns the box that holds ``region`` now (None: empty)."""
    inner = _occupied_box(region[box] if box else region, 0)
    if inner is None:
        return None
    at = inner if box is None else tuple(slice(b.start + i.start, b.start + i.stop) for b, i in zip(box, inner))
    if lesions_in is not None:
        near = _grown_box(at, _reach(margin_mm, spacing), region.shape)
        _remove_near(region[near], lesions_in(near), margin_mm, spacing)
    return at


def marrow_reference(pet: Volume, ct: Volume | None = None, *, marrow: Volume | None = None,
                     lesions: Volume | None = None, spine_halfwidth_mm: float = 35.0,
                     lesion_margin_mm: float = 10.0, edge_margin_mm: float | None = None,
                     bone_params: BoneParams = BoneParams(),
                     plausible_suv: tuple[float, float] = (0.1, 15.0), max_cov: float = 1.0) -> ReferenceRegion:
    """Diffuse marrow uptake in the spine (IMPeTUs "BM"), lesions excluded.

    The spine is the marrow within ``spine_halfwidth_mm`` of the body's left-right mid-line that passes the
    vertebral-body test of :func:`_vertebral_bodies` (vertebrae and sacrum; refused with the reason when the
    field of view holds none), kept ``edge_margin_mm`` (default 1.5 PET voxels) inside the cortex against partial
    volume; focal lesions dilated by ``lesion_margin_mm`` are removed so the statistics describe the
    background marrow. Give ``marrow`` (a spine/pelvis marrow mask, e.g. from a skeleton segmentation) to
    override. Report ``median`` or ``mean`` as the diffuse marrow uptake.
    """
    if edge_margin_mm is None:
        edge_margin_mm = 1.5 * max(pet.spacing)
    prov = provenance(method="spine_marrow", spine_halfwidth_mm=spine_halfwidth_mm, edge_margin_mm=edge_margin_mm,
                      lesion_margin_mm=lesion_margin_mm, cortex_mm=bone_params.cortex_mm)
    box = None                                          # where m may be True (None: anywhere)
    if marrow is not None:
        m = _mask_on_pet(marrow, pet)
        prov["placement"] = "mask"
        reason = ""
    elif ct is not None:
        ctp = _CtOnPet.build(pet, ct, bone_params)
        marrow = ctp.marrow
        if spine_halfwidth_mm > SPINE_BAND_MM:          # wider than the band built for every reader
            marrow = band_bone(pet, ct, bone_params, ctp.x_mid, spine_halfwidth_mm)[1]
        band = np.abs(ctp.xyz[0] - ctp.x_mid) <= spine_halfwidth_mm
        at = _coord_box(band, pet.shape) or (slice(0, 0),) * 3    # (an empty box: the band misses the grid)
        spine, at, reason = _vertebral_bodies(pet, ctp, marrow[at] & _crop(band, at), at)
        m = _zeros_like_pet(pet)
        if spine is not None:
            box = _occupied_box(spine, 0)
            box = tuple(slice(a.start + b.start, a.start + b.stop) for a, b in zip(at, box))
            # The erosion reaches edge_margin_mm: work in the spine's box grown by that.
            crop = _grown_box(box, _reach(edge_margin_mm, pet.spacing), pet.shape)
            whole = _zeros_like_pet(pet)
            whole[at] = spine
            # 1.5 PET voxels off the cortex: partial volume with the (cold) compact bone under the PSF.
            m[crop] = _erode_mm(marrow[crop], edge_margin_mm, pet.spacing) & whole[crop]
            box = crop
        prov["placement"] = "automatic"
        prov["vertebral_bodies"] = dict(VERTEBRA)
        reason = reason or ("" if box is not None and m[box].any() else "no marrow found in the vertebral bodies")
    else:
        m = np.zeros(pet.shape, bool)
        prov["placement"] = "none"
        reason = "no CT: marrow needs CT or a marrow mask"
    box = _remove_lesions(m, box, _lesions_in(lesions, pet), lesion_margin_mm, pet.spacing)
    return _region_stats("marrow", pet, m, _mask_centroid_mm(pet, m, box), prov, plausible_suv=plausible_suv,
                         max_cov=max_cov, min_voxels=10, reason=reason, box=box)
