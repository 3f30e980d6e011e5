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
                  reason: str = "") -> ReferenceRegion:
    vals = np.asarray(pet.array)[mask].astype(float)
    region = ReferenceRegion(name=name, n_voxels=int(vals.size), mask=pet.with_array(mask.copy()),
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


def _sphere(pet: Volume, centre_mm, diameter_mm: float) -> np.ndarray:
    out = np.zeros(pet.shape, bool)
    box = _box_around(pet, centre_mm, diameter_mm / 2.0)
    x, y, z = _voxel_coords_mm(pet, box)
    c = np.asarray(centre_mm, float)
    out[box] = (x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 <= (diameter_mm / 2.0) ** 2
    return out


def _cylinder(pet: Volume, centre_mm, diameter_mm: float, length_mm: float) -> np.ndarray:
    """Cylinder along the patient's z axis (LPS), centred at ``centre_mm``."""
    out = np.zeros(pet.shape, bool)
    box = _box_around(pet, centre_mm, float(np.hypot(diameter_mm / 2.0, length_mm / 2.0)))
    x, y, z = _voxel_coords_mm(pet, box)
    c = np.asarray(centre_mm, float)
    out[box] = (((x - c[0]) ** 2 + (y - c[1]) ** 2 <= (diameter_mm / 2.0) ** 2)
                & (np.abs(z - c[2]) <= length_mm / 2.0))
    return out

def _mask_centroid_mm(pet: Volume, mask: np.ndarray):
    idx = np.argwhere(mask)
    return None if idx.size == 0 else tuple(pet.index_to_world(idx.mean(axis=0)))

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
                       avoid: np.ndarray | None, plausible_suv, max_cov):
    # Where a centre may lie at all (right side, not far below the lungs, soft tissue): every later step runs
    # in that region's box grown by the widest reach of the steps (sphere depth, lesion margin, the ball of the
    # local statistics), which gives the same decisions as the whole grid at a fraction of the cost.
    soft = (ctp.hu >= liver_hu[0]) & (ctp.hu <= liver_hu[1]) & ctp.body & ~ctp.bone
    region = soft & (ctp.xyz[0] < ctp.x_mid)        # patient right = smaller LPS x
    if not ctp.lungs.any():
        # The liver lies under the right lung's base: without the lung base nothing says the liver is in the
        # field of view (a pelvis or a thigh would offer muscle), so the sphere is refused, not guessed.
        return None, "no liver in the field of view (no lung base on the CT; the liver lies below it)"
    right_lung = ctp.lungs & (ctp.xyz[0] < ctp.x_mid)
    lung = right_lung if right_lung.any() else ctp.lungs
    z_lung_base = _masked_min(ctp.xyz[2], lung)
    # ...and not above the lung's centroid: the liver's dome lies under the lung, while the brain (soft-tissue
    # HU, homogeneous, no longer bone since the cranial vault is not filled) would otherwise compete.
    region &= (ctp.xyz[2] >= z_lung_base - search_below_lung_mm) & (ctp.xyz[2] <= _masked_mean(ctp.xyz[2], lung))
    box = _occupied_box(region, 0)                  # as find_objects, from three projections (5x cheaper)
    if box is None:
        return None, "no soft tissue in the right upper abdomen can hold the sphere"
    margin_mm = max(diameter_mm / 2.0 + 2 * max(pet.spacing), (diameter_mm + 20.0) / 2.0) + max(pet.spacing)
    reach = _reach(margin_mm, pet.spacing)
    crop = _grown_box(box, reach, pet.shape)
    # Zero outside the crop: a false "not soft" there is > margin away from any candidate, so the test
    # depth >= radius + voxel is unchanged (the array's own border is not soft, as before).
    depth = ndimage.distance_transform_edt(np.pad(soft[crop], 1), sampling=pet.spacing)[1:-1, 1:-1, 1:-1]
    cand = region[crop] & (depth >= diameter_mm / 2.0 + max(pet.spacing))
    if avoid is not None and avoid[crop].any():
        cand &= ~_dilate_mm(avoid[crop], diameter_mm / 2.0 + max(pet.spacing), pet.spacing)
    if not cand.any():
        return None, "no soft tissue in the right upper abdomen can hold the sphere"
    # The liver is the right-sided soft tissue with the highest homogeneous uptake; a ball 2 cm wider than
    # the VOI keeps the centre at least 1 cm inside the organ's PET edge (blurred by the PSF).
    mean, cov = _local_mean_cov(np.asarray(pet.array)[crop], pet.spacing, diameter_mm + 20.0)
    ok = cand & (cov <= max_cov) & (mean >= plausible_suv[0]) & (mean <= plausible_suv[1])
    if not ok.any():
        return None, "no homogeneous soft-tissue region with plausible liver uptake on the patient's right"
    best = np.unravel_index(np.argmax(np.where(ok, mean, -np.inf)), mean.shape)
    best = [b + c.start for b, c in zip(best, crop)]
    return tuple(pet.index_to_world(np.asarray(best, float))), ""


def _correlate_in_box(arr: np.ndarray, kernel: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
    """``ndimage.correlate(arr, kernel, mode="nearest")[box]`` (float32) computed in ``box`` grown by the
    kernel's half-size only: inside the array the grown box holds every voxel the kernel reaches, and where it
    meets the array's border the 'nearest' extension is the same as for the whole array."""
    half = [k // 2 for k in kernel.shape]
    grown = _grown_box(box, half, arr.shape)
    out = ndimage.correlate(np.asarray(arr[grown], np.float32), kernel, mode="nearest")
    return out[tuple(slice(b.start - g.start, b.stop - g.start) for b, g in zip(box, grown))]


def _auto_aorta_centre(pet: Volume, ctp: _CtOnPet, diameter_mm: float, length_mm: float, blood_hu,
                       avoid: np.ndarray | None, plausible_suv):
    axis = _axial_axis(pet)
    left = ctp.lungs & (ctp.xyz[0] > ctp.x_mid)
    right = ctp.lungs & (ctp.xyz[0] <= ctp.x_mid)
    other = tuple(a for a in range(3) if a != axis)
    thorax = left.any(axis=other) & right.any(axis=other)           # slices holding both lungs
    if thorax.sum() < 2:
        return None, "no thorax in the field of view (both lungs are needed to find the descending aorta)"
    # Voxels whose in-slice disk of the VOI's diameter is all blood-like soft tissue (no lung, no bone).
    soft = (ctp.hu >= blood_hu[0]) & (ctp.hu <= blood_hu[1]) & ctp.body & ~ctp.bone
    if avoid is not None:
        soft &= ~avoid
    disk = _ball_kernel(pet.spacing, diameter_mm)
    disk = disk.take([disk.shape[axis] // 2], axis=axis)
    disk = disk / disk.sum()
    # The disk lies in one slice: only the thorax's slices are used below, so only they are filtered.
    slab, rows = [slice(None)] * 3, np.flatnonzero(thorax)
    slab[axis] = slice(int(rows[0]), int(rows[-1]) + 1)
    slab = tuple(slab)
    fits = np.zeros(soft.shape, bool)
    fits[slab] = ndimage.correlate(soft[slab].astype(np.float32), disk, mode="constant") > 0.999
    sel = [slice(None)] * 3
    sel[axis] = thorax
    fits_thorax = fits[tuple(sel)]
    col_fits = fits_thorax.mean(axis=axis) >= 0.8
    # A column's median disk SUV over the thorax slices is NaN (the column is unusable) unless the disk fits
    # in every one of them, so the PET is disk-filtered only in the box of those columns.
    all_fit = fits_thorax.all(axis=axis)
    col_pet = np.full(all_fit.shape, np.nan, np.float32)
    pet_disk = np.zeros(soft.shape, np.float32)
    if all_fit.any():
        box = list(_occupied_box(np.expand_dims(all_fit, axis), 0))
        box[axis] = slab[axis]
        pet_disk[tuple(box)] = _correlate_in_box(np.asarray(pet.array), disk, tuple(box))
        in_thorax = np.moveaxis(pet_disk[tuple(sel)], axis, -1)
        col_pet[all_fit] = np.median(in_thorax[all_fit], axis=-1)
    # Posterior mediastinum between the lungs' centroids: the descending aorta's column.
    lx_r, lx_l = _masked_mean(ctp.xyz[0], right), _masked_mean(ctp.xyz[0], left)
    y_lungs = _masked_mean(ctp.xyz[1], ctp.lungs)
    x0, y0 = (np.take(c, 0, axis=axis) for c in ctp.xyz[:2])
    col_ok = col_fits & (x0 > lx_r) & (x0 < lx_l) & (y0 >= y_lungs)
    with np.errstate(invalid="ignore"):
        col_ok &= (col_pet >= plausible_suv[0]) & (col_pet <= plausible_suv[1])
    if not col_ok.any():
        return None, "no blood-pool column found in the posterior mediastinum"
    # The blood pool is the hottest such column (mediastinal fat, oesophagus and muscle are colder).
    col = np.unravel_index(np.argmax(np.where(col_ok, col_pet, -np.inf)), col_ok.shape)
    line = [slice(None)] * 3
    for a, c in zip(other, col):
        line[a] = c
    ks = np.flatnonzero(thorax & fits[tuple(line)])
    values = pet_disk[tuple(line)]
    half = max(1, int(round(length_mm / 2.0 / pet.spacing[axis])))
    # Along the column pick the segment agreeing best with the column's median (avoids lesions, edges).
    cost = [np.max(np.abs(values[max(0, k - half):k + half + 1] - col_pet[col])) if
            np.all(np.isin(np.arange(k - half, k + half + 1), ks)) else np.inf for k in ks]
    k = ks[int(np.argmin(cost))] if np.isfinite(np.min(cost)) else ks[len(ks) // 2]
    idx = [0, 0, 0]
    for a, c in zip(other, col):
        idx[a] = c
    idx[axis] = k
    return tuple(pet.index_to_world(np.asarray(idx, float))), ""


def _reference(name: str, pet: Volume, ct: Volume | None, centre_mm, mask: Volume | None, shape_fn,
               auto_fn, prov: dict, plausible_suv, max_cov, min_fraction: float, n_expected: float) -> ReferenceRegion:
    reason = ""
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
        m = shape_fn(centre) if centre is not None else np.zeros(pet.shape, bool)
    return _region_stats(name, pet, m, centre, prov, plausible_suv=plausible_suv, max_cov=max_cov,
                         min_voxels=max(2, int(min_fraction * n_expected)), reason=reason)


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
    avoid = None if lesions is None else _mask_on_pet(lesions.with_array(np.asarray(lesions.array) > 0), pet)

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
    avoid = None if lesions is None else _mask_on_pet(lesions.with_array(np.asarray(lesions.array) > 0), pet)

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


def _vertebral_bodies(pet: Volume, ctp: _CtOnPet, marrow: np.ndarray) -> tuple[np.ndarray, str]:
    """The part of ``marrow`` (mid-line band) in vertebral bodies, or an empty mask and the reason.

    Written here (no library locates vertebrae on CT without a trained model): the ilium, the femur or a
    sternum can lie in the mid-line band of a cropped field of view; the spine is the column of trabecular
    marrow behind the trunk's centre, continuous along z. Fails (refuses) when the field of view holds less
    than ``min_length_mm`` of spine, and takes the sacrum for spine (it is: fused vertebral bodies).
    """
    axis = _axial_axis(pet)
    ax_x = int(np.argmax(np.abs(pet.direction[0, :])))
    ax_y = int(np.argmax(np.abs(pet.direction[1, :])))
    body = ctp.body
    occ = body.any(axis=ax_y)                            # (x, slice) in array order of the two axes
    occ = occ if ax_x < axis else occ.T
    first = np.where(occ.any(axis=0), np.argmax(occ, axis=0), 0)
    last = np.where(occ.any(axis=0), occ.shape[0] - 1 - np.argmax(occ[::-1], axis=0), -1)
    width = (last - first + 1) * pet.spacing[ax_x]
    other = tuple(a for a in range(3) if a != axis)
    none = "no vertebral bodies in the field of view (no trabecular marrow behind the trunk's centre on the mid-line)"
    box = _occupied_box(marrow, 0)
    if box is None:
        return np.zeros(pet.shape, bool), none
    # the body's mean y per slice from its counts per (y, slice): y does not vary along the x axis
    counts = body.sum(axis=ax_x, dtype=np.int64)                 # 2-D: the y axis and the slices, in order
    y_plane = np.broadcast_to(ctp.xyz[1], pet.shape).take(0, axis=ax_x)
    y_dim = 0 if ax_y < axis else 1
    with np.errstate(invalid="ignore", divide="ignore"):
        y_centre = (y_plane * counts).sum(axis=y_dim) / counts.sum(axis=y_dim)
    trunk = width >= VERTEBRA["trunk_min_width_mm"]
    shape = [1, 1, 1]
    shape[axis] = -1
    rows_of = lambda a: a.reshape(shape)[tuple(b if i == axis else slice(None) for i, b in enumerate(box))]  # noqa: E731
    y = np.broadcast_to(ctp.xyz[1], pet.shape)[box]
    sub = (marrow[box] & (ctp.hu[box] >= VERTEBRA["min_hu"]) & rows_of(trunk)
           & (y >= rows_of(np.nan_to_num(y_centre, nan=np.inf))))
    n = sub.sum(axis=other)
    if not n.any():
        return np.zeros(pet.shape, bool), none
    x = np.broadcast_to(ctp.xyz[0], pet.shape)[box]
    with np.errstate(invalid="ignore", divide="ignore"):
        x_slice = np.where(sub, x, 0).sum(axis=other) / n
    rows = n > 0
    x_col = float(np.median(x_slice[rows]))
    rows &= np.abs(x_slice - x_col) <= VERTEBRA["column_mm"]
    if rows.sum() * pet.spacing[axis] < VERTEBRA["min_length_mm"]:
        return np.zeros(pet.shape, bool), (f"no vertebral bodies in the field of view (a spine column shorter "
                                           f"than {VERTEBRA['min_length_mm']:g} mm)")
    out = np.zeros(pet.shape, bool)
    out[box] = sub & rows.reshape(shape)
    return out, ""


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
    if marrow is not None:
        m = _mask_on_pet(marrow, pet)
        prov["placement"] = "mask"
        reason = ""
    elif ct is not None:
        ctp = _CtOnPet.build(pet, ct, bone_params)
        marrow = ctp.marrow
        if spine_halfwidth_mm > SPINE_BAND_MM:          # wider than the band built for every reader
            marrow = band_bone(pet, ct, bone_params, ctp.x_mid, spine_halfwidth_mm)[1]
        band = np.broadcast_to(np.abs(ctp.xyz[0] - ctp.x_mid) <= spine_halfwidth_mm, pet.shape)
        spine, reason = _vertebral_bodies(pet, ctp, marrow & band)
        m = np.zeros(pet.shape, bool)
        box = _occupied_box(spine, 0)
        if box is not None:
            # The erosion reaches edge_margin_mm: work in the band's box grown by that.
            crop = _grown_box(box, _reach(edge_margin_mm, pet.spacing), pet.shape)
            # 1.5 PET voxels off the cortex: partial volume with the (cold) compact bone under the PSF.
            m[crop] = _erode_mm(marrow[crop], edge_margin_mm, pet.spacing) & spine[crop]
        prov["placement"] = "automatic"
        prov["vertebral_bodies"] = dict(VERTEBRA)
        reason = reason or ("" if m.any() else "no marrow found in the vertebral bodies")
    else:
        m = np.zeros(pet.shape, bool)
        prov["placement"] = "none"
        reason = "no CT: marrow needs CT or a marrow mask"
    if lesions is not None:
        _remove_near(m, _mask_on_pet(lesions.with_array(np.asarray(lesions.array) > 0), pet), lesion_margin_mm,
                     pet.spacing)
    return _region_stats("marrow", pet, m, _mask_centroid_mm(pet, m), prov, plausible_suv=plausible_suv,
                         max_cov=max_cov, min_voxels=10, reason=reason)
