"""CT bone: the solid bone mask (cortex and medulla one object) and the marrow inside it (spec §4.3, §1.2)."""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import Any

import cc3d
import numpy as np
from scipy import ndimage

from carpet.anatomy._morphology import (AIR_HU, _axial_axis, _ball_structure, _close_mm, _erode_mm,
                                        _fill_holes_slicewise, _grown_box, _linear_onto, _occupied_box, _reach)
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


def _smooth_above(hu: np.ndarray, ct: Volume, params: BoneParams, slab: int = 16) -> np.ndarray:
    """``_denoise_ct(hu) >= hu_bone`` for ``hu``, a box of ``ct``'s array, smoothed only near raw voxels
    ≥ ``hu_bone``: slab by slab along the axial axis (with the kernel's reach of slices around), in each slab
    the box of those voxels grown by two kernel radii (:func:`_bone_box`'s argument: a smoothed voxel farther
    than one radius from them is below the threshold, and one within it sees only voxels of the box). The
    same mask, where the skeleton's slices are far narrower than its box (a whole body: 2-3 times less)."""
    sigma = [params.smooth_mm / s if params.smooth_mm > s / 3.0 else 0.0 for s in ct.spacing]   # _denoise_ct's
    if not any(sigma):
        return np.asarray(hu, dtype=np.float32) >= params.hu_bone
    reach = [int(4.0 * sd + 0.5) for sd in sigma]     # gaussian_filter's radius (truncate = 4)
    ax = _axial_axis(ct)
    out = np.zeros(hu.shape, bool)
    n = hu.shape[ax]
    for k0 in range(0, n, slab):
        k1 = min(n, k0 + slab)
        lo, hi = max(0, k0 - 2 * reach[ax]), min(n, k1 + 2 * reach[ax])
        read = [slice(None)] * 3
        read[ax] = slice(lo, hi)
        block = hu[tuple(read)]
        box = _occupied_box(block >= params.hu_bone, [2 * r for r in reach])
        if box is None:
            continue
        box = list(box)
        box[ax] = slice(0, hi - lo)
        smooth = ndimage.gaussian_filter(np.asarray(block[tuple(box)], dtype=np.float32), sigma=sigma,
                                         mode="nearest")
        rows = [slice(None)] * 3
        rows[ax] = slice(k0 - lo, k1 - lo)             # this slab's slices of the smoothed block
        box[ax] = slice(k0, k1)
        out[tuple(box)] = smooth[tuple(rows)] >= params.hu_bone
    return out


def _bone_box(hu: np.ndarray, spacing, params: BoneParams) -> tuple[slice, ...] | None:
    """The box holding every voxel the bone mask can contain, grown so that the mask computed in it is the
    mask of the whole grid; None when no voxel reaches ``hu_bone``.

    A Gaussian-weighted mean never exceeds the largest value under its kernel, so smoothed voxels at or above
    ``hu_bone`` lie within one kernel radius of a raw voxel at or above it; a second radius keeps their
    smoothed values exact, and the closing radius plus two voxels leave a ring of background around the bone,
    connected to the outside as the rest of the grid is (hole filling unchanged).

    The raw voxels' box comes from maximum projections (a line holds a voxel ≥ ``hu_bone`` when its maximum
    is): one projection along the slowest axis in memory, the last one in the footprint's box only — the
    same box as the threshold mask's, without a mask of the whole grid.
    """
    gauss = [int(4.0 * params.smooth_mm / sp + 0.5) if params.smooth_mm > 0 else 0 for sp in spacing]  # truncate=4
    grow = [2 * g + int(np.ceil(params.closing_mm / sp)) + 2 for g, sp in zip(gauss, spacing)]
    if hu.size == 0:
        return None
    peak = np.fmax.reduce if np.issubdtype(hu.dtype, np.floating) else np.maximum.reduce   # fmax: NaN is no bone
    slow = int(np.argmax(np.abs(hu.strides)))
    rest = [a for a in range(3) if a != slow]
    foot = peak(hu, axis=slow) >= params.hu_bone
    box2 = _occupied_box(foot[..., None], 0)
    if box2 is None:
        return None
    crop = [slice(None)] * 3
    for a, b in zip(rest, box2[:2]):
        crop[a] = b
    line = peak(hu[tuple(crop)], axis=tuple(rest)) >= params.hu_bone
    on = np.flatnonzero(line)
    crop[slow] = slice(int(on[0]), int(on[-1]) + 1)
    return tuple(slice(max(0, c.start - g), min(n, c.stop + g)) for c, g, n in zip(crop, grow, hu.shape))


def _close_bone(mask: np.ndarray, radius_mm: float, spacing) -> np.ndarray:
    """:func:`_close_mm` (closing by the Euclidean ball, background beyond the array); when the ball's voxels
    fill its bounding box (the 3-mm closing on CT voxels of 1.5–2 mm in-plane and ≥ 4 mm apart: a 3×3 square)
    the dilation and erosion by a box are runs of shifted ORs and ANDs along each axis — the same mask as
    ``ndimage``'s binary morphology with the ball, several times faster. Written here: scipy has no separable
    binary morphology."""
    ball = _ball_structure(radius_mm, spacing) if radius_mm > 0 else None
    if ball is None or not ball.all():
        return _close_mm(mask, radius_mm, spacing)
    half = [(n - 1) // 2 for n in ball.shape]
    # the dilation reaches ``half`` beyond the array; uint8 views: bitwise ops are 4x faster than bool ones
    padded = np.pad(mask, [(h, h) for h in half]).view(np.uint8)
    for a, h in enumerate(half):                        # dilation: OR of the shifted masks along each axis
        src = padded.copy(order="K")
        for k in range(1, h + 1):
            np.bitwise_or(_shifted(padded, a, k), _shifted(src, a, -k), out=_shifted(padded, a, k))
            np.bitwise_or(_shifted(padded, a, -k), _shifted(src, a, k), out=_shifted(padded, a, -k))
    for a, h in enumerate(half):                        # erosion: AND (the padding's own values are wrong
        src = padded.copy(order="K")                    # where its ball leaves the array, but it is cut off)
        for k in range(1, h + 1):
            np.bitwise_and(_shifted(padded, a, k), _shifted(src, a, -k), out=_shifted(padded, a, k))
            np.bitwise_and(_shifted(padded, a, -k), _shifted(src, a, k), out=_shifted(padded, a, -k))
    return padded.view(bool)[tuple(slice(h, padded.shape[a] - h) for a, h in enumerate(half))]


def _shifted(arr: np.ndarray, axis: int, k: int) -> np.ndarray:
    """The view of ``arr`` that a shift by ``k`` voxels along ``axis`` pairs with :func:`_shifted` (-k):
    ``k > 0`` drops the first ``k`` planes, ``k < 0`` the last ``-k``."""
    sl = [slice(None)] * 3
    sl[axis] = slice(k, None) if k > 0 else slice(None, arr.shape[axis] + k)
    return arr[tuple(sl)]


def _skeleton_only(solid: np.ndarray, hu: np.ndarray, box, shape, voxel_ml: float,
                   params: BoneParams) -> np.ndarray:
    """``solid`` without the pieces that are not skeleton: a piece (26-connected) stays when it holds a raw
    voxel ≥ ``cortex_hu`` and either holds ≥ ``skeleton_min_ml`` or reaches the CT's field-of-view border."""
    lab, n = cc3d.connected_components(solid, connectivity=26, return_N=True)
    if n == 0:
        return solid
    sizes = np.bincount(lab[solid], minlength=n + 1)    # the pieces' voxels only (background's count unused)
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
    gone = np.flatnonzero(~keep[1:]) + 1
    if gone.size > 8:
        return keep[lab]
    out = solid.copy()                                  # a few pieces to drop (usually none): one pass each
    for piece in gone:
        out[lab == piece] = False
    return out


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
    built = _bone_in(ct, params, region)
    if built is not None:
        at, kept = built
        mask[at] = kept
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


def _bone_in(ct: Volume, params: BoneParams, region: tuple[slice, ...] | None):
    """(box, mask) of :func:`bone_mask` on the CT grid: the box (within ``region``) holding every voxel that can
    be bone and the mask there; None when no voxel reaches ``hu_bone``."""
    hu_all = np.asarray(ct.array)
    read = tuple(slice(0, n) for n in ct.shape)
    if region is not None:
        read = _grown_box(region, _read_reach(ct, params), ct.shape)
    hu = hu_all[read]
    box = _bone_box(hu, ct.spacing, params)
    if box is None:
        return None
    sub = hu[box]
    part = _smooth_above(sub, ct, params)
    part = cc3d.dust(part, threshold=int(np.ceil(params.min_component_ml / ct.voxel_volume_ml)), connectivity=26,
                     in_place=True)                     # speckles: components under the minimum volume
    part = _close_bone(part, params.closing_mm, ct.spacing)
    axis = _axial_axis(ct)
    pixel_mm2 = float(np.prod([s for a, s in enumerate(ct.spacing) if a != axis]))
    part = _fill_holes_slicewise(part, axis, params.max_hole_mm2 / pixel_mm2)
    solid = _skeleton_only(part, sub, box, hu.shape, ct.voxel_volume_ml, params)
    at = [slice(r.start + b.start, r.start + b.stop) for r, b in zip(read, box)]
    if region is not None:                              # only the box asked for: the margin is less exact
        at = [slice(max(a.start, g.start), max(max(a.start, g.start), min(a.stop, g.stop)))
              for a, g in zip(at, region)]
    first = [r.start + b.start for r, b in zip(read, box)]
    return tuple(at), solid[tuple(slice(a.start - f, a.stop - f) for a, f in zip(at, first))]


def _read_reach(ct: Volume, params: BoneParams) -> list[int]:
    """Voxels per axis of CT read around a region (:func:`bone_mask`): the margin, smoothing and closing."""
    return _reach(params.region_margin_mm + 4.0 * params.smooth_mm + 2 * params.closing_mm, ct.spacing)


def merge_boxes(boxes, grow=None, shape=None) -> list[tuple[slice, ...]]:
    """Boxes with every overlapping pair replaced by the box holding both, until none overlap (a voxel then
    lies in one box: it is built once). With ``grow`` (voxels per axis) and ``shape``, two boxes are also
    merged when their boxes grown by ``grow`` overlap and the grown merged box holds no more voxels than the
    two grown boxes: what the CT read around each (:func:`bone_mask`'s margin) costs no more merged."""
    out = [tuple(b) for b in boxes if b is not None]
    merged = True
    while merged:
        merged = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                a, b = out[i], out[j]
                join = _overlap(a, b)
                both = tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b))
                if not join and grow is not None:
                    ga, gb, gu = (_grown_box(x, grow, shape) for x in (a, b, both))
                    join = _overlap(ga, gb) and _size(gu) <= _size(ga) + _size(gb)
                if join:
                    out[i] = both
                    del out[j]
                    merged = True
                    break
            if merged:
                break
    return out


def _overlap(a, b) -> bool:
    return all(x.start < y.stop and y.start < x.stop for x, y in zip(a, b))


def _size(box) -> int:
    return int(np.prod([b.stop - b.start for b in box]))


class _BuiltBone:
    """The bone of one (CT, parameters) built so far: a CT-grid mask (False where nothing was built; pages
    never written cost no memory) and the boxes built, each with the tight box of its bone. A box overlapping
    one built before writes the overlap again: the same values wherever both meet :func:`bone_mask`'s region
    contract (the whole CT's mask)."""

    def __init__(self, ct: Volume, params: BoneParams):
        self.ct, self.params = ct, params
        self.array = np.zeros(ct.shape, bool)
        self.boxes: list = []
        self.tight: list = []
        self._extent = ...

    def extent(self) -> tuple[slice, ...] | None:
        """The box of the grid holding every voxel the whole CT's mask can hold (:func:`_bone_box`)."""
        if self._extent is ...:
            self._extent = _bone_box(np.asarray(self.ct.array), self.ct.spacing, self.params)
        return self._extent

    def covers(self, box) -> bool:
        return any(_contains(b, box, self.ct.shape) for b in self.boxes)

    def build(self, boxes) -> None:
        """Build the boxes not inside one already built, overlapping (or cheaper merged) ones merged."""
        todo = [b for b in boxes if not self.covers(b)]
        for box in merge_boxes(todo, _read_reach(self.ct, self.params), self.ct.shape):
            if self.covers(box):
                continue
            built = _bone_in(self.ct, self.params, box)
            tight = None
            if built is not None:
                at, kept = built
                self.array[at] = kept
                t = _occupied_box(kept, 0)
                tight = None if t is None else tuple(slice(a.start + s.start, a.start + s.stop)
                                                     for a, s in zip(at, t))
            self.boxes.append(box)
            self.tight.append(tight)


_BONE_LOCK = threading.Lock()
_BONE_CACHE: list = []                                  # _BuiltBone of the last CT (one per params), newest last


def ct_bone(ct: Volume, params: BoneParams = BoneParams(), region=None, *, all_built: bool = False) -> Volume:
    """:func:`bone_mask` on the CT's own grid, only in ``region`` when given (one box of the CT grid or a list
    of boxes: spec §4.3, "where the rule needs the CT"), cached for the last CT (volumes hash by identity).

    Boxes are built once: a box inside one already built is cut from it, and the boxes of one call are built
    as a set — overlapping ones merged, so that no voxel is built twice, but never into the box holding all of
    them (:func:`merge_boxes`). :func:`carpet.quantify.quantify_study` asks first for every lesion's
    neighbourhood and the mid-line band, which the lesion sites and the reference regions then cut. Threads
    asking at once wait for one build. Do not modify the CT's array in place between calls.

    Returns
    -------
    Volume
        The mask in the boxes asked for (overlapping ones merged: ``meta['bone_boxes']``), False elsewhere,
        so that results do not depend on what was asked before; ``meta['bone_box']`` is a box holding all
        its bone (None: none). With no region: the whole CT's mask (shared with the cache: do not modify).
        With ``all_built``, a copy holding every box built so far for this CT (``meta['bone_boxes']``), for
        a caller whose results do not depend on it (:class:`carpet.classify._Bone` builds what it reads).
    """
    asked, built, tight = _build(ct, params, region)
    if all_built:
        with _BONE_LOCK:
            asked, tight = list(built.boxes), [t for t in built.tight if t is not None]
            array = np.zeros(ct.shape, bool)
            for t in tight:                             # no bone outside the tight boxes
                array[t] = built.array[t]
    elif region is None:
        array = built.array
    else:
        array = np.zeros(ct.shape, bool)
        for box in asked:
            array[box] = built.array[box]
        tight = [t for t in (_intersect(t, a) for t in tight for a in asked) if t is not None]
    bone_box = None if not tight else tuple(slice(min(t[a].start for t in tight), max(t[a].stop for t in tight))
                                            for a in range(3))
    prov = provenance(method="ct_bone_mask", **params.as_dict(), grid="ct",
                      region=None if region is None and not all_built else
                      [[[int(b.start), int(b.stop)] for b in box] for box in asked])
    return Volume(array, ct.spacing, ct.origin, ct.direction, {"provenance": prov, "modality": "mask",
                                                               "bone_box": bone_box, "bone_boxes": asked})


def build_ct_bone(ct: Volume, params: BoneParams = BoneParams(), region=None) -> None:
    """Build (and cache) what :func:`ct_bone` with these arguments would return, without returning it: for a
    caller that only prepares the boxes other steps will ask for."""
    _build(ct, params, region)


def ct_bone_extent(ct: Volume, params: BoneParams = BoneParams()) -> tuple[slice, ...] | None:
    """A box of the CT grid outside which no voxel is bone (the mask of any region, or of the whole CT, is
    False there): the raw voxels ≥ ``hu_bone`` grown by the smoothing and closing reach (:func:`_bone_box`);
    None when the CT has none. Cached with :func:`ct_bone`'s boxes."""
    built = _build(ct, params, [])[1]
    with _BONE_LOCK:
        return built.extent()


def _build(ct: Volume, params: BoneParams, region):
    """(the boxes asked, overlapping ones merged; the cache entry; the tight bone boxes built so far)."""
    whole = tuple(slice(0, n) for n in ct.shape)
    one = isinstance(region, tuple) and len(region) > 0 and isinstance(region[0], slice)
    asked = [whole] if region is None else merge_boxes([region] if one else region)
    with _BONE_LOCK:
        for built in _BONE_CACHE:
            if built.ct is ct and built.params == params:
                break
        else:
            built = _BuiltBone(ct, params)
            _BONE_CACHE[:] = [e for e in _BONE_CACHE if e.ct is ct][-2:] + [built]
        built.build(asked)
        return asked, built, [t for t in built.tight if t is not None]


def _intersect(a, b):
    """The common box of ``a`` and ``b``, None when they do not overlap."""
    return tuple(slice(max(x.start, y.start), min(x.stop, y.stop)) for x, y in zip(a, b)) if _overlap(a, b) else None


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
        out = np.zeros(reference.shape, bool)
        _majority_onto(mask, (0, 0, 0), grid, reference, out)
        grid, mask = reference, out
    return Volume(mask, grid.spacing, grid.origin, grid.direction, {"provenance": prov, "modality": "mask"})


def _majority_onto(mask: np.ndarray, start, grid: Volume, reference: Volume, out: np.ndarray) -> None:
    """Set in ``out`` (``reference``'s grid) the voxels where ``mask`` (a box of ``grid`` from index ``start``,
    or the whole grid with ``start`` 0) linearly resampled is >= 0.5: mostly inside. Only the mask's box grown
    by two voxels of background is resampled (same origin arithmetic: index_to_world of whole-grid indices),
    onto the box of ``reference`` holding every voxel centre that falls inside it: elsewhere the linear
    interpolation of the whole grids is 0 as well, the default value. ``out`` keeps its other voxels."""
    box = _occupied_box(mask, 2)
    if box is None:
        return
    first = [s + b.start for s, b in zip(start, box)]
    part = Volume(mask[box].astype(np.float32), grid.spacing, grid.index_to_world(first), grid.direction)
    # the corners of the part's extent (continuous indices -0.5 and n - 0.5) in reference indices
    corners = np.array([[(-0.5, n - 0.5)[c] for c, n in zip(k, part.shape)] for k in np.ndindex(2, 2, 2)])
    idx = reference.world_to_index(part.index_to_world(corners))
    lo, hi = np.floor(idx.min(axis=0)) - 1, np.ceil(idx.max(axis=0)) + 2
    at = tuple(slice(int(max(0, a)), int(min(n, b))) for a, b, n in zip(lo, hi, reference.shape))
    if any(s.stop <= s.start for s in at):
        return
    grid = Volume(np.broadcast_to(np.zeros((), np.uint8), tuple(s.stop - s.start for s in at)),
                  reference.spacing, reference.index_to_world([s.start for s in at]), reference.direction)
    out[at] = np.asarray(_linear_onto(part, grid, 0.0).array) >= 0.5


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
