"""CT bone: the solid bone mask (cortex and medulla one object) and the marrow inside it (spec §4.3, §1.2)."""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from carpet.anatomy._morphology import (AIR_HU, _axial_axis, _close_mm, _erode_mm, _fill_holes_slicewise,
                                        _grown_box, _linear_onto, _occupied_box, _reach, _remove_small)
from carpet.provenance import provenance
from carpet.volume import Volume


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
    skeleton_min_ml : float
        Solid bone pieces smaller than this (mL) that do not reach the CT's field-of-view border are not
        skeleton: isolated hyperdense spots (calcifications, contrast, clips; spec §4.3). Bones cut by the
        field of view may be small and are kept.
    cortex_hu : float
        A bone piece must hold a voxel (raw CT) at or above this HU — compact bone; a calcified spot inside a
        tumour (28–418 HU on STS_003) has none.
    cortex_mm : float
        Cortical thickness removed from the solid bone to get the marrow (:func:`marrow_mask`).
    max_hole_mm2 : float
        Largest in-slice hole (mm²) filled as medulla: a cavity whose widest axial section exceeds it is not
        bone (the cranial vault, the thoracic or pelvic cavity when bone rings them). Marrow cavities of the
        trunk's bones are below it (vertebral body ≈ 1,500–2,000 mm², sacrum and femoral head below
        4,000 mm²); an adult cranial cavity is 10,000–18,000 mm² at its widest.
    region_margin_mm : float
        With a ``region`` (:func:`bone_mask`), the CT is read this far around it (plus the smoothing and
        closing reach): marrow cavities, speckles and bone pieces reaching into the region are judged whole
        when they lie within this margin of it.
    """

    hu_bone: float = 150.0
    closing_mm: float = 3.0
    smooth_mm: float = 1.0
    min_component_ml: float = 0.05
    cortex_mm: float = 2.0
    skeleton_min_ml: float = 2.0
    cortex_hu: float = 500.0
    max_hole_mm2: float = 5000.0
    region_margin_mm: float = 60.0

    def as_dict(self) -> dict[str, Any]:
        return dict(hu_bone=self.hu_bone, closing_mm=self.closing_mm, smooth_mm=self.smooth_mm,
                    min_component_ml=self.min_component_ml, cortex_mm=self.cortex_mm,
                    skeleton_min_ml=self.skeleton_min_ml, cortex_hu=self.cortex_hu,
                    max_hole_mm2=self.max_hole_mm2, region_margin_mm=self.region_margin_mm)


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


def _skeleton_only(solid: np.ndarray, hu: np.ndarray, box, shape, voxel_ml: float,
                   params: BoneParams) -> np.ndarray:
    """``solid`` without the pieces that are not skeleton: a piece (26-connected) stays when it holds a raw
    voxel ≥ ``cortex_hu`` and either holds ≥ ``skeleton_min_ml`` or reaches the CT's field-of-view border."""
    import cc3d

    lab, n = cc3d.connected_components(solid, connectivity=26, return_N=True)
    if n == 0:
        return solid
    sizes = np.bincount(lab.ravel(order="K"), minlength=n + 1)
    compact = np.zeros(n + 1, bool)
    compact[lab[np.asarray(hu) >= params.cortex_hu]] = True
    border = np.zeros(n + 1, bool)
    for a, (b, size) in enumerate(zip(box, shape)):
        if b.start == 0:
            border[np.unique(lab.take(0, axis=a))] = True
        if b.stop == size:
            border[np.unique(lab.take(-1, axis=a))] = True
    keep = compact & ((sizes * voxel_ml >= params.skeleton_min_ml) | border)
    keep[0] = False
    return keep[lab]


def bone_mask(ct: Volume, *, reference: Volume | None = None, params: BoneParams = BoneParams(),
              region: tuple[slice, ...] | None = None) -> Volume:
    """Solid CT bone mask: HU threshold, closing, hole filling of marrow-sized cavities (cortex and medulla one
    object), skeleton pieces only (no isolated hyperdense spots, :class:`BoneParams`).

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
    region : tuple of 3 slices, optional
        A box of the CT grid: the mask is built only there (False outside), from the CT within
        ``params.region_margin_mm`` of it, whose faces count as the field of view's edge (spec §4.3, "where
        the rule needs the CT"). Inside the box it equals the whole CT's mask wherever every marrow cavity,
        speckle and bone piece reaching into the box lies within the margin of it or reaches no farther than
        the whole CT's mask would keep; otherwise a piece leaving the read CT is kept as if cut by the field
        of view, and a cavity leaving it is not filled.

    Returns
    -------
    Volume
        Boolean mask (``meta['provenance']`` records the parameters).
    """
    mask = np.zeros(ct.shape, bool)
    written = None                                      # the box holding every bone voxel of the mask
    hu_all = np.asarray(ct.array)
    read = tuple(slice(0, n) for n in ct.shape)
    if region is not None:
        read = _grown_box(region, _reach(params.region_margin_mm + 4.0 * params.smooth_mm + 2 * params.closing_mm,
                                         ct.spacing), ct.shape)
    hu = hu_all[read]
    box = _bone_box(hu, ct.spacing, params)
    if box is not None:
        sub = hu[box]
        arr = _denoise_ct(Volume(sub, ct.spacing, ct.origin, ct.direction), params.smooth_mm)
        part = arr >= params.hu_bone
        part = _remove_small(part, int(np.ceil(params.min_component_ml / ct.voxel_volume_ml)))
        part = _close_mm(part, params.closing_mm, ct.spacing)
        axis = _axial_axis(ct)
        pixel_mm2 = float(np.prod([s for a, s in enumerate(ct.spacing) if a != axis]))
        part = _fill_holes_slicewise(part, axis, params.max_hole_mm2 / pixel_mm2)
        solid = _skeleton_only(part, sub, box, hu.shape, ct.voxel_volume_ml, params)
        at = [slice(r.start + b.start, r.start + b.stop) for r, b in zip(read, box)]
        if region is not None:                          # only the box asked for: the margin is less exact
            at = [slice(max(a.start, g.start), max(max(a.start, g.start), min(a.stop, g.stop)))
                  for a, g in zip(at, region)]
        first = [r.start + b.start for r, b in zip(read, box)]
        kept = solid[tuple(slice(a.start - f, a.stop - f) for a, f in zip(at, first))]
        mask[tuple(at)] = kept
        tight = _occupied_box(kept, 0)                  # of the small array: cheap
        written = None if tight is None else tuple(slice(a.start + t.start, a.start + t.stop)
                                                   for a, t in zip(at, tight))
    prov = provenance(method="ct_bone_mask", **params.as_dict(),
                      grid="ct" if reference is None or ct.same_grid(reference) else "reference",
                      region=None if region is None else [[int(b.start), int(b.stop)] for b in region])
    out = _mask_volume(mask, ct, reference, prov)
    if out.same_grid(ct):
        out.meta["bone_box"] = written
    return out


_BONE_LOCK = threading.Lock()
_BONE_CACHE: list = []                                  # (ct, params, region or None, mask Volume), newest last


def ct_bone(ct: Volume, params: BoneParams = BoneParams(), region: tuple[slice, ...] | None = None) -> Volume:
    """:func:`bone_mask` on the CT's own grid (in ``region`` only, when given), cached for the last CT (volumes
    hash by identity): a region inside one already built is cut from it, so that the lesion sites, the marrow
    and the reference regions of one study build the bone once (:func:`carpet.quantify.quantify_study` asks
    first for the box holding all of them). Threads asking at once wait for one build. Do not modify the
    CT's array in place between calls."""
    with _BONE_LOCK:
        for c, p, built, mask in reversed(_BONE_CACHE):
            if c is ct and p == params and _contains(built, region, ct.shape):
                break
        else:
            mask = bone_mask(ct, params=params, region=region)
            _BONE_CACHE[:] = [e for e in _BONE_CACHE if e[0] is ct][-2:] + [(ct, params, region, mask)]
            built = region
    bone_box = mask.meta.get("bone_box")
    if region is None or built == region or bone_box is None or _contains(region, bone_box, ct.shape):
        return mask                                     # nothing outside the region asked for
    part = np.zeros(ct.shape, bool)                     # the region asked for, not more: results do not
    part[region] = np.asarray(mask.array)[region]       # depend on what was asked before
    return mask.with_array(part)


def _contains(outer, inner, shape) -> bool:
    """Whether box ``outer`` (None: the whole grid) holds box ``inner`` (None: the whole grid)."""
    outer = outer or tuple(slice(0, n) for n in shape)
    inner = inner or tuple(slice(0, n) for n in shape)
    return all(o.start <= i.start and i.stop <= o.stop for o, i in zip(outer, inner))


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
