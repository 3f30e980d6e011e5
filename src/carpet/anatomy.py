"""Anatomy from CT (and PET): bone, marrow, and the reference regions PET reading compares against.

* :func:`bone_mask` — CT bone as one solid object (cortex and medulla together), the input of lesion-site
  classification (spec ``clinical-rules.md`` §4.3).
* :func:`marrow_mask` — the bone interior without the cortex; :func:`marrow_reference` — diffuse marrow uptake
  in the spine (the IMPeTUs "BM" score, spec §1.2).
* :func:`liver_reference` (3-cm sphere in the right lobe) and :func:`blood_pool_reference` (1 cm × 2 cm cylinder
  in the descending thoracic aorta), PERCIST 1.0 (spec §5.2), placed automatically from CT + PET or given by
  coordinates or a mask.

No library offers these CT heuristics, so they are written here from scipy.ndimage primitives (Euclidean
distance transforms, hole filling, labelling); every step is O(voxels).

Automatic placement — the heuristics and how they fail
------------------------------------------------------
Both placements work on the PET grid (the region is drawn there anyway) with the CT resampled onto it and
Gaussian-smoothed (σ = 1 mm) against low-dose noise. The body is the largest connected region at or above
``-400 HU`` with its in-slice holes filled; the lungs are the air (``< -400 HU``) enclosed by it.

*Liver*: candidate centres are soft-tissue voxels (``liver_hu``, bone excluded) in the patient's right half
(LPS ``x`` below the body's mid-line), at least one sphere radius plus one voxel from any non-soft-tissue voxel
(the sphere fits in soft tissue), off lesions, and at most ``search_below_lung_mm`` caudal to the lowest
lung voxel. CT alone cannot tell liver from muscle without contrast, so the PET decides: the centre is the
candidate with the highest mean SUV in a ball 2 cm wider than the VOI whose coefficient of variation is at most
``max_cov`` and whose mean is within ``plausible_suv`` (the liver is the hottest large homogeneous organ on the
right; the wider ball keeps the sphere ≥ 1 cm inside the organ's blurred edge). Fails when the liver is not in
the field of view or is smaller than the ball (resection, atrophy), when a homogeneous right-sided structure
is hotter than the liver (a large uniformly avid mass, a hot kidney within ``plausible_suv``), or with diffuse
liver involvement (then the liver is not a valid reference anyway, spec §1.5).

*Blood pool*: thorax slices are those holding both lungs. A column (fixed in-slice position) qualifies when,
in ≥ 80 % of thorax slices, the VOI's disk lies entirely in blood-like soft tissue (``blood_hu``, no lung, no
bone, no lesion), between the two lungs' centroids and posterior to the lungs' centroid (the descending
aorta runs in the posterior mediastinum). The column with the highest median disk SUV within
``plausible_suv`` is the aorta (mediastinal fat, oesophagus and muscle are colder than blood); along it the
``length_mm`` segment agreeing best with the column's median is used. Fails with a hot posterior mediastinal
mass or oesophagitis hotter than blood, when the aorta is narrower than the disk or displaced (aneurysm,
scoliosis), or when the thorax is not in the field of view (then ``usable=False`` with the reason).

Both regions are flagged ``usable=False`` (never silently used) when they hold too few voxels, when the mean SUV
is outside ``plausible_suv`` or when the coefficient of variation exceeds ``max_cov`` (a lesion or an organ
boundary inside the region). Without CT and without ``centre_mm``/``mask``, automatic placement is not
attempted: the region is returned unusable with that reason.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from typing import Any

import cc3d  # connected components: faster than ndimage.label, same components
import numpy as np
from scipy import ndimage

from carpet.provenance import provenance
from carpet.volume import Volume, resample_to

__all__ = ["bone_mask", "ct_bone", "ct_tissue_on", "marrow_mask", "marrow_reference", "liver_reference",
           "blood_pool_reference", "ReferenceRegion", "BoneParams"]

AIR_HU = -1024.0


# ------------------------------------------------------------------------------------------------
# small morphology helpers (Euclidean, honour anisotropic spacing)
# ------------------------------------------------------------------------------------------------
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


def _fill_holes_slicewise(mask: np.ndarray, axis: int) -> np.ndarray:
    """Fill the 2-D holes of ``mask`` in every slice across ``axis``: in-slice (4-connected) background
    components that do not reach the slice's border.

    This also fills every 3-D hole (a 6-connected background component not reaching the array's border):
    each of its in-slice components is in-slice connected background that reaches no border either, so it is
    a 2-D hole. The converse makes the 2-D filling the stronger one: a medullary canal that leaves the field
    of view (a femur or the spine cut by the first and last slice) is no 3-D hole, but in each axial slice it
    is still a hole inside a cortical ring. One labelling pass instead of ``binary_fill_holes``' iterated
    dilation (much faster on CT).
    """
    structure = np.zeros((3, 3, 3), bool)
    sl = [slice(None)] * 3
    sl[axis] = 1
    structure[tuple(sl)] = ndimage.generate_binary_structure(2, 1)
    background, n = ndimage.label(~mask, structure=structure)
    outside = np.zeros(n + 1, bool)
    for a in (a for a in range(3) if a != axis):
        outside[np.unique(background.take(0, axis=a))] = True
        outside[np.unique(background.take(-1, axis=a))] = True
    outside[0] = True                                   # label 0 is the mask itself
    return mask | ~outside[background]


def _largest_component(mask: np.ndarray) -> np.ndarray:
    lab, n = cc3d.connected_components(mask, connectivity=6, return_N=True)
    if n == 0:
        return mask.copy()
    sizes = np.bincount(lab.ravel(order="K"))          # "K": no copy of an F-ordered label map
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def _remove_small(mask: np.ndarray, min_voxels: int) -> np.ndarray:
    if min_voxels <= 1:
        return mask
    lab, n = cc3d.connected_components(mask, connectivity=26, return_N=True)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel(order="K"))
    keep = sizes >= min_voxels
    keep[0] = False
    return keep[lab]


# ------------------------------------------------------------------------------------------------
# bone and marrow
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BoneParams:
    """Parameters of the CT bone mask (spec §4.3; all provisional conventions [C]).

    Attributes
    ----------
    hu_bone : float
        HU threshold for bone (``>=``), default 150 HU (spec §4.3).
    closing_mm : float
        Radius (mm) of the Euclidean closing that bridges thin or noisy cortex before hole filling.
    smooth_mm : float
        Gaussian sigma (mm) applied to the CT first, against low-dose noise; 0 disables it. A Gaussian rather
        than a median filter: a 3×3×3 median erases a cortex one voxel thin, while a Gaussian of σ = 1 mm keeps
        most of a 2-mm cortex's contrast. It is small on purpose: smoothing moves the threshold surface
        outwards by about σ. Axes whose spacing exceeds 3σ are not smoothed (see :func:`_denoise_ct`).
    min_component_ml : float
        Bone components smaller than this (mL) are removed as noise speckles.
    cortex_mm : float
        Cortical thickness removed from the solid bone to get the marrow (:func:`marrow_mask`).
    """

    hu_bone: float = 150.0
    closing_mm: float = 3.0
    smooth_mm: float = 1.0
    min_component_ml: float = 0.05
    cortex_mm: float = 2.0

    def as_dict(self) -> dict[str, Any]:
        return dict(hu_bone=self.hu_bone, closing_mm=self.closing_mm, smooth_mm=self.smooth_mm,
                    min_component_ml=self.min_component_ml, cortex_mm=self.cortex_mm)


def _denoise_ct(ct: Volume, smooth_mm: float) -> np.ndarray:
    """The CT as float32, Gaussian-smoothed with σ = ``smooth_mm`` along the axes where that can matter.

    Along an axis whose spacing exceeds 3σ the Gaussian gives the neighbouring voxels a weight below
    exp(-4.5) ≈ 1 % of the centre's: it cannot average noise there, so that axis is not filtered (on a 4-mm
    PET grid, σ = 1 mm would cost a pass over the volume for nothing).
    """
    arr = np.asarray(ct.array, dtype=np.float32)
    sigma = [smooth_mm / s if smooth_mm > s / 3.0 else 0.0 for s in ct.spacing]
    if any(sigma):
        arr = ndimage.gaussian_filter(arr, sigma=sigma, mode="nearest")
    return arr


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
    Three axis projections: cheaper than ``ndimage.find_objects`` on a large grid."""
    span = [np.flatnonzero(mask.any(axis=tuple(b for b in range(3) if b != a))) for a in range(3)]
    if span[0].size == 0:
        return None
    grow = np.broadcast_to(grow, (3,))
    return tuple(slice(max(0, int(i[0] - g)), min(n, int(i[-1] + 1 + g))) for i, g, n in zip(span, grow, mask.shape))


def _bone_box(hu: np.ndarray, spacing, params: BoneParams) -> tuple[slice, ...] | None:
    """The box holding every voxel the bone mask can contain, grown so that the mask computed in it is the
    mask of the whole grid; None when no voxel reaches ``hu_bone``.

    A Gaussian-weighted mean never exceeds the largest value under its kernel, so smoothed voxels at or above
    ``hu_bone`` lie within one kernel radius of a raw voxel at or above it; a second radius keeps their
    smoothed values exact, and the closing radius plus two voxels leave a ring of background around the bone,
    connected to the outside as the rest of the grid is (hole filling unchanged).
    """
    gauss = [int(4.0 * params.smooth_mm / sp + 0.5) if params.smooth_mm > 0 else 0 for sp in spacing]  # truncate=4
    return _occupied_box(hu >= params.hu_bone,
                         [2 * g + int(np.ceil(params.closing_mm / sp)) + 2 for g, sp in zip(gauss, spacing)])


def bone_mask(ct: Volume, *, reference: Volume | None = None, params: BoneParams = BoneParams()) -> Volume:
    """Solid CT bone mask: HU threshold, closing, hole filling (cortex and medulla one object).

    Parameters
    ----------
    ct : Volume
        CT in HU, any grid.
    reference : Volume, optional
        Grid to return the mask on (e.g. the PET). The mask is always built on the CT's own grid (full
        resolution) and then resampled: linear interpolation of the 0/1 mask, kept where ≥ 0.5 (the voxel is
        mostly bone). Reference voxels outside the CT are not bone.
    params : BoneParams
        Thresholds; see :class:`BoneParams`.

    Returns
    -------
    Volume
        Boolean mask (``meta['provenance']`` records the parameters).
    """
    mask = np.zeros(ct.shape, bool)
    box = _bone_box(np.asarray(ct.array), ct.spacing, params)
    if box is not None:
        arr = _denoise_ct(Volume(np.asarray(ct.array)[box], ct.spacing, ct.origin, ct.direction), params.smooth_mm)
        part = arr >= params.hu_bone
        part = _remove_small(part, int(np.ceil(params.min_component_ml / ct.voxel_volume_ml)))
        part = _close_mm(part, params.closing_mm, ct.spacing)
        mask[box] = _fill_holes_slicewise(part, _axial_axis(ct))
    prov = provenance(method="ct_bone_mask", **params.as_dict(),
                      grid="ct" if reference is None or ct.same_grid(reference) else "reference")
    return _mask_volume(mask, ct, reference, prov)


@functools.lru_cache(maxsize=1)
def ct_bone(ct: Volume, params: BoneParams = BoneParams()) -> Volume:
    """:func:`bone_mask` on the CT's own grid, cached for the last CT (volumes hash by identity), so that the
    lesion sites, the marrow and the reference regions of one study build it once. Do not modify the CT's
    array in place between calls."""
    return bone_mask(ct, params=params)


@functools.lru_cache(maxsize=1)
def ct_bone_on(reference: Volume, ct: Volume, params: BoneParams = BoneParams()) -> Volume:
    """:func:`ct_bone` resampled (majority) onto ``reference``'s grid, cached for the last (grid, CT) pair so
    that lesion sites and the reference regions of one study share it."""
    bone = ct_bone(ct, params)
    return _mask_volume(bone.array, bone, reference, bone.meta.get("provenance", {}))


def _mask_volume(mask: np.ndarray, grid: Volume, reference: Volume | None, prov: dict) -> Volume:
    """``mask`` (on ``grid``) as a boolean Volume on ``reference``'s grid: a voxel is in when the linearly
    resampled 0/1 mask is ≥ 0.5 there (mostly inside); voxels outside ``grid`` are out."""
    if reference is not None and not grid.same_grid(reference):
        # Only the mask's box (grown by two voxels of background) is resampled: outside it the linear
        # interpolation of the whole grid is 0 as well, which is the default value.
        box = _occupied_box(mask, 2)
        if box is None:
            grid, mask = reference, np.zeros(reference.shape, bool)
        else:
            part = Volume(mask[box].astype(np.float32), grid.spacing,
                          grid.index_to_world([b.start for b in box]), grid.direction)
            frac = _linear_onto(part, reference, 0.0)
            grid, mask = reference, np.asarray(frac.array) >= 0.5
    return Volume(mask, grid.spacing, grid.origin, grid.direction, {"provenance": prov, "modality": "mask"})


def marrow_mask(bone: Volume, ct: Volume | None = None, *, cortex_mm: float = BoneParams.cortex_mm,
                hu_cortex: float = 600.0, reference: Volume | None = None) -> Volume:
    """Bone interior without the cortex.

    The solid bone mask eroded by ``cortex_mm`` (distance from the bone surface > ``cortex_mm``); with ``ct``,
    voxels at or above ``hu_cortex`` (compact bone; trabecular marrow is roughly 100–400 HU) are removed too,
    which handles cortices thicker than ``cortex_mm``. Erosion keeps the marrow away from PET spill-in from the
    surrounding soft tissue, and does not depend on CT noise where the cortex is thin.

    Parameters
    ----------
    bone : Volume
        Solid bone mask from :func:`bone_mask`.
    ct : Volume, optional
        CT in HU (resampled to the mask's grid if needed).
    cortex_mm : float
        Cortical thickness to remove (mm).
    hu_cortex : float
        HU from which a voxel is compact (cortical) bone.
    reference : Volume, optional
        Grid to return the mask on (e.g. the PET); computed on ``bone``'s grid (give the CT-grid bone mask)
        and resampled by majority, as in :func:`bone_mask`.
    """
    solid = np.asarray(bone.array, bool)
    inner = np.zeros(solid.shape, bool)
    box = _occupied_box(solid, 1)                       # one voxel of background around: erosion unchanged
    if box is not None:
        inner[box] = _erode_mm(solid[box], cortex_mm, bone.spacing)
        if ct is not None:                              # marrow lies in the box: compare HU there only
            hu = ct.array if ct.same_grid(bone) else _linear_onto(ct, bone, AIR_HU).array
            inner[box] &= np.asarray(hu)[box] < hu_cortex
    prov = provenance(method="marrow_erosion", cortex_mm=cortex_mm, hu_cortex=None if ct is None else hu_cortex)
    return _mask_volume(inner, bone, reference, prov)


# ------------------------------------------------------------------------------------------------
# reference regions
# ------------------------------------------------------------------------------------------------
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
        problems.append(f"only {vals.size} voxels (< {min_voxels}); region outside the PET or too small")
    elif not (plausible_suv[0] <= region.mean <= plausible_suv[1]):
        problems.append(f"implausible SUVmean {region.mean:.2f} (expected {plausible_suv[0]}–{plausible_suv[1]})")
    elif region.mean > 0 and region.sd / region.mean > max_cov:
        problems.append(f"heterogeneous uptake (CoV {region.sd / region.mean:.2f} > {max_cov}); "
                        "lesion or organ boundary inside the region")
    region.usable = not problems
    region.reason = "; ".join(problems) if problems else "ok"
    return region


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


def _mask_on_pet(mask: Volume, pet: Volume) -> np.ndarray:
    """A writable boolean copy of ``mask`` on the PET grid (nearest neighbour when resampled)."""
    if mask.same_grid(pet):
        return np.array(mask.array, dtype=bool)
    return np.asarray(resample_to(mask.with_array(np.asarray(mask.array, np.uint8)), pet,
                                  interpolation="nearest").array, bool)


def _linear_onto(moving: Volume, grid: Volume, default_value: float) -> Volume:
    """``moving`` linearly resampled onto ``grid`` as float32 (``default_value`` outside ``moving``).

    The values equal ``resample_to(moving.with_array(float32 copy), grid, interpolation="linear")``:
    SimpleITK's linear interpolator works in double whatever the input type and casts to the output type, so
    ``moving`` is handed over in its own type (an int16 CT: no float copy of it), the output grid is given by
    its geometry (no copy of ``grid``'s voxels) and the result is viewed, not copied.
    """
    import SimpleITK as sitk

    if moving.same_grid(grid):
        return moving.with_array(np.asarray(moving.array, np.float32))
    f = sitk.ResampleImageFilter()
    f.SetSize([int(n) for n in grid.shape])
    f.SetOutputSpacing([float(s) for s in grid.spacing])
    f.SetOutputOrigin([float(o) for o in grid.origin])
    f.SetOutputDirection([float(d) for d in np.asarray(grid.direction).flatten()])
    f.SetInterpolator(sitk.sitkLinear)
    f.SetDefaultPixelValue(float(default_value))
    f.SetOutputPixelType(sitk.sitkFloat32)
    return Volume.from_sitk(f.Execute(moving.to_sitk()), **moving.meta)


def _mask_centroid_mm(pet: Volume, mask: np.ndarray):
    idx = np.argwhere(mask)
    return None if idx.size == 0 else tuple(pet.index_to_world(idx.mean(axis=0)))


@functools.lru_cache(maxsize=1)
def ct_tissue_on(pet: Volume, ct: Volume, smooth_mm: float):
    """(HU, body, lungs) on the PET grid: the CT linearly resampled and denoised, the body (largest region
    ≥ -400 HU, in-slice holes filled) and the lungs (air ≥ 50 mL inside it).

    Cached for the last (pet, ct, smooth_mm), like :func:`ct_bone` (``smooth_mm`` is required so that every
    caller hits the same cache key); it needs no bone mask, so
    :func:`carpet.quantify.quantify_study` builds it in a second thread while the bone mask and the lesion
    sites are computed.
    """
    hu = _denoise_ct(_linear_onto(ct, pet, AIR_HU), smooth_mm)
    # One threshold for body and air, so that the partial-volume rim of the skin is not taken for lung.
    tissue = hu >= -400.0
    body = _fill_holes_slicewise(_largest_component(tissue), _axial_axis(pet))
    air = body & ~tissue
    # Air inside the body contour that is not bowel-sized speckle: lungs are large.
    lungs = _remove_small(air, int(np.ceil(50.0 / pet.voxel_volume_ml)))
    return hu, body, lungs


_BUILD_LOCK = threading.Lock()


@dataclass
class _CtOnPet:
    """CT facts on the PET grid (HU, body, lungs, bone, marrow, voxel coordinates as from
    :func:`_voxel_coords_mm`, the body's mean LPS x) shared by the readers."""

    hu: np.ndarray
    body: np.ndarray
    lungs: np.ndarray
    bone: np.ndarray
    marrow: np.ndarray
    xyz: tuple[np.ndarray, np.ndarray, np.ndarray]
    x_mid: float

    @classmethod
    def build(cls, pet: Volume, ct: Volume, params: BoneParams) -> "_CtOnPet":
        """Cached for the last (pet, ct, params): the liver, blood-pool and marrow readers of one study share
        it, also when they run in threads (a second caller waits for the first instead of building it again).
        Volumes hash by identity: a new volume (``with_array``) is a new key; do not modify a CT's array
        in place between calls."""
        with _BUILD_LOCK:
            return cls._build(pet, ct, params)

    @classmethod
    @functools.lru_cache(maxsize=1)
    def _build(cls, pet: Volume, ct: Volume, params: BoneParams) -> "_CtOnPet":
        hu, body, lungs = ct_tissue_on(pet, ct, params.smooth_mm)
        bone_ct = ct_bone(ct, params)
        bone = np.asarray(ct_bone_on(pet, ct, params).array, bool)
        marrow = np.asarray(marrow_mask(bone_ct, ct, cortex_mm=params.cortex_mm, reference=pet).array, bool)
        xyz = _voxel_coords_mm(pet)
        x_mid = _masked_mean(xyz[0], body) if body.any() else 0.0
        return cls(hu=hu, body=body, lungs=lungs, bone=bone, marrow=marrow, xyz=xyz, x_mid=x_mid)


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
    if ctp.lungs.any():
        right_lung = ctp.lungs & (ctp.xyz[0] < ctp.x_mid)
        z_lung_base = _masked_min(ctp.xyz[2], right_lung if right_lung.any() else ctp.lungs)
        region &= ctp.xyz[2] >= z_lung_base - search_below_lung_mm
    box = ndimage.find_objects(region.astype(np.uint8))
    if not box:
        return None, "no soft tissue in the right upper abdomen can hold the sphere"
    margin_mm = max(diameter_mm / 2.0 + 2 * max(pet.spacing), (diameter_mm + 20.0) / 2.0) + max(pet.spacing)
    reach = _reach(margin_mm, pet.spacing)
    crop = _grown_box(box[0], reach, pet.shape)
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
        return None, "both lungs are needed to find the mediastinum; thorax not in the field of view?"
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


def marrow_reference(pet: Volume, ct: Volume | None = None, *, marrow: Volume | None = None,
                     lesions: Volume | None = None, spine_halfwidth_mm: float = 35.0,
                     lesion_margin_mm: float = 10.0, edge_margin_mm: float | None = None,
                     bone_params: BoneParams = BoneParams(),
                     plausible_suv: tuple[float, float] = (0.1, 15.0), max_cov: float = 1.0) -> ReferenceRegion:
    """Diffuse marrow uptake in the spine (IMPeTUs "BM"), lesions excluded.

    The spine is approximated by the marrow within ``spine_halfwidth_mm`` of the body's left-right mid-line
    (vertebrae and sacrum), kept ``edge_margin_mm`` (default 1.5 PET voxels) inside the cortex against partial
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
        band = np.broadcast_to(np.abs(ctp.xyz[0] - ctp.x_mid) <= spine_halfwidth_mm, pet.shape)
        m = np.zeros(pet.shape, bool)
        box = _occupied_box(ctp.marrow & band, 0)
        if box is not None:
            # The erosion reaches edge_margin_mm: work in the band's box grown by that.
            crop = _grown_box(box, _reach(edge_margin_mm, pet.spacing), pet.shape)
            # 1.5 PET voxels off the cortex: partial volume with the (cold) compact bone under the PSF.
            m[crop] = _erode_mm(ctp.marrow[crop], edge_margin_mm, pet.spacing) & band[crop]
        prov["placement"] = "automatic"
        reason = "" if m.any() else "no marrow found near the mid-line"
    else:
        m = np.zeros(pet.shape, bool)
        prov["placement"] = "none"
        reason = "no CT: marrow needs CT or a marrow mask"
    if lesions is not None:
        _remove_near(m, _mask_on_pet(lesions.with_array(np.asarray(lesions.array) > 0), pet), lesion_margin_mm,
                     pet.spacing)
    return _region_stats("marrow", pet, m, _mask_centroid_mm(pet, m), prov, plausible_suv=plausible_suv,
                         max_cov=max_cov, min_voxels=10, reason=reason)

