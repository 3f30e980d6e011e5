"""CT facts on the PET grid that locate things: body outline, lungs, bone, marrow, the body's mid-line."""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field

import cc3d
import numpy as np

from carpet.anatomy._morphology import (AIR_HU, _axial_axis, _fill_holes_slicewise, _grown_box,
                                        _largest_component, _linear_onto, _masked_mean, _occupied_box,
                                        _voxel_coords_mm)
from carpet.anatomy.bone import BoneParams, _denoise_ct, _majority_onto, ct_bone, marrow_mask
from carpet.volume import Volume


@functools.lru_cache(maxsize=1)
def ct_tissue_on(pet: Volume, ct: Volume, smooth_mm: float):
    """(HU, body, lungs) on the PET grid: the CT linearly resampled and denoised, the body (largest region
    ≥ -400 HU, in-slice holes filled) and the lungs (air ≥ 50 mL inside it, at the level of the largest such
    region: see :func:`_lungs_of`).

    The body and lungs are found in boxes, not on the whole grid (same masks, at the cost of the boxes: the
    body fills a tenth of a whole-body PET's field of view). The largest tissue component is labelled in the
    box of the tissue, which holds every component whole. The holes are filled in the box of that component:
    in-slice background on the box's border is background on the grid's border or touches, just outside the
    box, background that reaches the grid's border (what lies around a box in a slice does), so it is no hole
    either way. The air inside the body is labelled in its own box.

    Cached for the last (pet, ct, smooth_mm), like :func:`ct_bone` (``smooth_mm`` is required so that every
    caller hits the same cache key); it needs no bone mask, so
    :func:`carpet.quantify.quantify_study` builds it in a second thread while the bone mask and the lesion
    sites are computed.
    """
    hu = _denoise_ct(_linear_onto(ct, pet, AIR_HU), smooth_mm)
    # One threshold for body and air, so that the partial-volume rim of the skin is not taken for lung.
    tissue = hu >= -400.0
    body, lungs = np.zeros_like(tissue), np.zeros_like(tissue)   # the HU's layout (F order)
    outer = _occupied_box(tissue, 0)
    if outer is None:
        return hu, body, lungs
    inner = tissue[outer]
    largest = _largest_component(inner)
    box = _occupied_box(largest, 0)
    axial = _axial_axis(pet)
    at = tuple(slice(o.start + b.start, o.start + b.stop) for o, b in zip(outer, box))
    body[at] = filled = _fill_holes_slicewise(largest[box], axial)
    air = filled & ~inner[box]
    pocket = _occupied_box(air, 0)                    # the air's own box (every air region whole)
    if pocket is not None:
        at = tuple(slice(a.start + p.start, a.start + p.stop) for a, p in zip(at, pocket))
        lungs[at] = _lungs_of(air[pocket], axial, int(np.ceil(50.0 / pet.voxel_volume_ml)))
    return hu, body, lungs


def _lungs_of(air: np.ndarray, axial: int, min_voxels: int) -> np.ndarray:
    """The lungs among the air regions inside the body: regions of at least ``min_voxels`` (not bowel-sized
    speckle) whose axial extent overlaps that of the largest one (a lung). Colon or small-bowel gas of 50 mL
    or more is common below the diaphragm and lies wholly below the lungs; taking it for lung would put the
    diaphragm (the lungs' lowest slice) in the abdomen or pelvis. A stomach bubble under the left dome
    overlaps the lung bases and is kept: it moves the lung base by at most the fundus' height.

    One labelling (26-connected) gives both rules: removing the small regions leaves the others' components
    unchanged, and the sizes and axial extents come from one pass over the labels (cc3d's statistics)."""
    lab, n = cc3d.connected_components(air, connectivity=26, return_N=True)
    if n == 0:
        return air.copy()
    stats = cc3d.statistics(lab, no_slice_conversion=True)
    sizes = np.asarray(stats["voxel_counts"], np.int64)
    sizes[0] = 0
    keep = sizes >= max(min_voxels, 1)
    if keep.sum() > 1:
        ends = np.asarray(stats["bounding_boxes"])[:, 2 * axial:2 * axial + 2]   # first, last slice (inclusive)
        first, last = ends[int(np.argmax(sizes))]
        keep &= (ends[:, 0] <= last) & (first <= ends[:, 1])
    keep[0] = False
    return keep[lab]


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
        xyz = _voxel_coords_mm(pet)
        x_mid = _masked_mean(xyz[0], body) if body.any() else 0.0
        bone, marrow = band_bone(pet, ct, params, x_mid, SPINE_BAND_MM)
        return cls(hu=hu, body=body, lungs=lungs, bone=bone, marrow=marrow, xyz=xyz, x_mid=x_mid)


#: Half-width (mm) of the mid-line band where the CT bone and marrow are built for the reference regions: the
#: spine marrow (:func:`carpet.anatomy.marrow_reference`'s default band) and the bone the liver and blood-pool
#: placements keep out of soft tissue. Elsewhere those placements rely on their HU windows (≤ 120 HU: no
#: cortex), which is all a landmark needs (spec §4.3, "where the rule needs the CT").
SPINE_BAND_MM = 35.0


def band_region(ct: Volume, x_mid: float, halfwidth_mm: float) -> tuple[slice, ...] | None:
    """The box of ``ct``'s grid holding every voxel within ``halfwidth_mm`` of the plane LPS x = ``x_mid``
    (axis-aligned grids; None when the band misses the grid)."""
    ax = int(np.argmax(np.abs(ct.direction[0, :])))
    ends = []
    for x in (x_mid - halfwidth_mm, x_mid + halfwidth_mm):
        point = np.asarray(ct.origin, float).copy()
        point[0] = x
        ends.append(ct.world_to_index(point)[ax])
    region = [slice(0, n) for n in ct.shape]
    region[ax] = slice(max(0, int(np.floor(min(ends)))), min(ct.shape[ax], int(np.ceil(max(ends))) + 1))
    return None if region[ax].stop <= region[ax].start else tuple(region)


def band_bone(pet: Volume, ct: Volume, params: BoneParams, x_mid: float, halfwidth_mm: float):
    """(bone, marrow) on the PET grid (boolean arrays) from the CT bone built only in the band of the CT grid
    within ``halfwidth_mm`` (plus three PET voxels) of the LPS x = ``x_mid`` mid-line (:func:`ct_bone` with a
    region): the vertebrae, the sacrum and the sternum, not the arms, ribs' ends or femurs.

    The marrow (:func:`marrow_mask`) and both majority resamplings work in the band's box only (its bone is
    False outside it), and the PET voxels are computed only in the box the band's bone can reach: the same
    masks as :func:`marrow_mask` and :func:`bone_mask` give with ``reference=pet`` on the whole grids."""
    order = "F" if np.isfortran(pet.array) else "C"    # the PET's memory order: cheap to combine with its masks
    bone, marrow = np.zeros(pet.shape, bool, order=order), np.zeros(pet.shape, bool, order=order)
    region = band_region(ct, x_mid, halfwidth_mm + 3.0 * max(pet.spacing))  # + the erosion and resampling
    if region is None:
        return bone, marrow
    solid = np.asarray(ct_bone(ct, params, region).array)     # False outside the band
    tight = _occupied_box(solid[region], 0)
    if tight is None:
        return bone, marrow
    # the band's bone with two voxels of (False) background around it: the resampled boxes grow by two
    # (_majority_onto), the erosion reaches one
    read = _grown_box([slice(r.start + t.start, r.start + t.stop) for r, t in zip(region, tight)], (2, 2, 2),
                      ct.shape)
    start = [r.start for r in read]
    band = Volume(solid[read], ct.spacing, ct.index_to_world(start), ct.direction)
    inner = marrow_mask(band, band.with_array(np.asarray(ct.array)[read]), cortex_mm=params.cortex_mm).array
    for mask, out in ((band.array, bone), (np.asarray(inner, bool), marrow)):
        _majority_onto(mask, start, ct, pet, out)
    return bone, marrow


# ------------------------------------------------------------------------------------------------
# landmarks from the PET alone (body outline, trunk, head), on a coarse grid
# ------------------------------------------------------------------------------------------------
#: Coarse voxel size (mm) of the PET landmarks: locating things needs no finer grid (spec §4.3).
COARSE_MM = 8.0


@dataclass(frozen=True)
class BodyLandmarks:
    """Where the body is, slice by slice, from the PET alone.

    Attributes
    ----------
    z_mm : ndarray
        LPS z (mm, superior +) of the coarse axial slices, in array order.
    has_body : ndarray of bool
        Slices holding body.
    trunk_x_mm, trunk_y_mm : ndarray
        Centroid of the largest in-slice body piece (the trunk, or the head above the shoulders; NaN without
        body).
    trunk_width_mm, trunk_depth_mm : ndarray
        Its left-right and antero-posterior extent (mm).
    head : ndarray of bool
        Slices of the head (and neck): the run of slices from the body's cranial end down to where the
        trunk widens past ``head_width_ratio`` of its widest slice; all False when the cranial end is not
        narrow (a field of view that starts at the thorax).
    soft_suv : float
        Median SUV of the body (soft-tissue background).
    body : ndarray of bool
        The body on the coarse grid (in-slice holes filled).
    factor : tuple of 3 int
        Coarse voxel = ``factor`` PET voxels per axis.
    axis : int
        The array axis of the slices.
    midline_depth_mm : ndarray
        Antero-posterior thickness of the body on the mid-line (the trunk's median centre x) per slice:
        thighs touching at the groin are thinner there than the pelvis.
    """

    z_mm: np.ndarray
    has_body: np.ndarray
    trunk_x_mm: np.ndarray
    trunk_y_mm: np.ndarray
    trunk_width_mm: np.ndarray
    trunk_depth_mm: np.ndarray
    head: np.ndarray
    soft_suv: float
    body: np.ndarray
    factor: tuple[int, int, int]
    axis: int
    midline_depth_mm: np.ndarray
    coarse_spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    cache: dict = field(default_factory=dict, compare=False, repr=False)

    def slice_of(self, z_mm) -> np.ndarray:
        """Index of the coarse slice nearest to each LPS ``z_mm``."""
        z = np.atleast_1d(np.asarray(z_mm, float))
        return np.abs(z[:, None] - self.z_mm[None, :]).argmin(axis=1)

    def depth_at(self, ijk: np.ndarray) -> np.ndarray:
        """Depth below the body surface (mm) at PET voxel indices ``ijk`` (n × 3): the distance from the
        coarse voxel to the nearest coarse voxel outside the body (beyond the first and last slice the body
        goes on: the field of view cuts it), as the Euclidean distance transform gives it — from a k-d tree
        of the outside voxels next to the body, built on the first call (only a few points are asked for)."""
        idx = np.minimum(np.asarray(ijk) // np.asarray(self.factor), np.asarray(self.body.shape) - 1)
        if idx.size == 0:
            return np.zeros(0)
        tree = self._outside_tree()
        inside = self.body[tuple(idx.T)]
        cs = np.asarray(self.coarse_spacing)
        d = tree.query(idx * cs)[0] if tree is not None else np.full(len(idx), np.inf)
        return np.where(inside, d, 0.0)

    def _outside_tree(self):
        if "tree" not in self.cache:
            from scipy import ndimage
            from scipy.spatial import cKDTree

            padded = np.pad(self.body, 1)
            ends = [slice(1, -1)] * 3
            for end, src in ((0, 1), (-1, -2)):
                ends[self.axis] = end
                inner = list(ends)
                inner[self.axis] = src
                padded[tuple(ends)] = padded[tuple(inner)]
            # outside voxels with a body neighbour (the nearest outside voxel of a body voxel is one of them)
            edge = ~padded & ndimage.binary_dilation(padded, ndimage.generate_binary_structure(3, 1))
            pts = (np.argwhere(edge) - 1) * np.asarray(self.coarse_spacing)
            self.cache["tree"] = cKDTree(pts) if len(pts) else None
        return self.cache["tree"]

    @property
    def head_in_fov(self) -> bool:
        return bool(self.head.any())


def body_landmarks(pet: Volume, *, body_fraction: float = 0.3, head_width_ratio: float = 0.7,
                   head_min_mm: float = 40.0) -> BodyLandmarks:
    """Body outline, trunk centre line and head from the PET (SUV), on a grid of about ``COARSE_MM`` (every
    n-th voxel).

    The body is the largest connected region at or above ``body_fraction`` × the median SUV of the voxels
    above 5 % of the 99th percentile (the tissue background), with its in-slice holes filled. In each axial
    slice its largest in-slice piece is the trunk (arms raised beside the head or lying beside the trunk are
    separate pieces when the PSF leaves a gap; when they touch the trunk they widen it). No library locates
    these; written from scipy.ndimage/cc3d, O(voxels of the coarse grid).

    A narrow cranial run shorter than ``head_min_mm`` is no head: it is the end of a trunk the field of view
    cut, caught part-way by a coarse slice when the patient lies a few degrees tilted and the image was padded
    or moved (a neck alone is longer).

    Fails (and says so through ``has_body``/``head``) on a PET with no body background (a phantom in air
    with only hot spheres), and takes the head for absent when the arms, raised, merge with it.
    """
    from scipy import ndimage

    axis = _axial_axis(pet)
    factor = tuple(int(max(1, round(COARSE_MM / s))) for s in pet.spacing)
    # every factor-th voxel: the outline needs no averaging at a body threshold of 0.3 × the tissue
    # background
    coarse = np.ascontiguousarray(np.asarray(pet.array)[::factor[0], ::factor[1], ::factor[2]])
    cs = np.asarray(pet.spacing) * np.asarray(factor)
    positive = coarse[coarse > 0]
    floor = 0.05 * float(np.percentile(positive, 99)) if positive.size else 0.0
    tissue = coarse[coarse > floor]
    level = float(np.median(tissue)) if tissue.size else 0.0
    body = _largest_component(coarse >= body_fraction * level) if level > 0 else np.zeros(coarse.shape, bool)
    body = _fill_holes_slicewise(body, axis)
    soft = float(np.median(coarse[body])) if body.any() else 0.0
    # in-slice pieces: label with no connection across slices
    structure = np.zeros((3, 3, 3), bool)
    sl = [slice(None)] * 3
    sl[axis] = 1
    structure[tuple(sl)] = ndimage.generate_binary_structure(2, 2)
    pieces, n = ndimage.label(body, structure=structure)
    nz = coarse.shape[axis]
    grid = Volume(np.zeros((1, 1, 1), np.uint8), tuple(cs), pet.origin, pet.direction)
    x, y, z = _voxel_coords_mm(grid, tuple(slice(0, s) for s in coarse.shape))
    z_line = np.broadcast_to(z, coarse.shape).mean(axis=tuple(a for a in range(3) if a != axis))
    out = {k: np.full(nz, np.nan) for k in ("x", "y", "w", "d")}
    if n:
        flat = pieces.ravel()
        area = np.bincount(flat, minlength=n + 1).astype(float)
        sx = np.bincount(flat, np.broadcast_to(x, coarse.shape).ravel(), minlength=n + 1)
        sy = np.bincount(flat, np.broadcast_to(y, coarse.shape).ravel(), minlength=n + 1)
        slice_of_piece = np.zeros(n + 1, int)
        boxes = ndimage.find_objects(pieces)
        for lab, box in enumerate(boxes, start=1):
            slice_of_piece[lab] = box[axis].start
        area[0] = 0
        best = np.zeros(nz, int)
        for lab in np.argsort(area)[::-1]:             # largest first: first piece seen in a slice wins
            if lab and best[slice_of_piece[lab]] == 0:
                best[slice_of_piece[lab]] = lab
        for k in np.flatnonzero(best):
            lab = best[k]
            box = boxes[lab - 1]
            out["x"][k], out["y"][k] = sx[lab] / area[lab], sy[lab] / area[lab]
            ext = [(b.stop - b.start) * s for b, s in zip(box, cs)]
            # extents along the LPS x and y axes (grids are axis-aligned up to a permutation/flip)
            rows = np.abs(pet.direction)
            out["w"][k] = float(np.dot(rows[0], ext))
            out["d"][k] = float(np.dot(rows[1], ext))
    has_body = np.isfinite(out["x"])
    head = np.zeros(nz, bool)
    if has_body.any():
        order = np.argsort(z_line)[::-1]               # cranial first
        order = order[has_body[order]]
        widest = np.nanmax(out["w"])
        run = []
        for k in order:
            if out["w"][k] > head_width_ratio * widest:
                break
            run.append(k)
        # a narrow cranial end below which the body widens, longer than a tilted cut's partial slices
        if run and len(run) < len(order) and len(run) * cs[axis] >= head_min_mm:
            head[run] = True
    midline = np.zeros(nz)
    if has_body.any():
        # the body's thickness along the array axis closest to LPS y, in the columns at the mid-line
        ax_x = int(np.argmax(np.abs(pet.direction[0])))
        ax_y = int(np.argmax(np.abs(pet.direction[1])))
        x_line = np.moveaxis(np.broadcast_to(x, coarse.shape), (ax_x, ax_y, axis), (0, 1, 2))[:, 0, 0]
        cols = np.flatnonzero(np.abs(x_line - np.nanmedian(out["x"])) <= cs[ax_x])
        if cols.size:
            thick = np.moveaxis(body, (ax_x, ax_y, axis), (0, 1, 2))[cols].sum(axis=1).mean(axis=0)
            midline = thick * cs[ax_y]
    return BodyLandmarks(z_line, has_body, out["x"], out["y"], out["w"], out["d"], head, soft, body,
                         factor, axis, midline, tuple(float(c) for c in cs))


def leg_slices(lm: BodyLandmarks, depth_ratio: float = 0.88, min_mm: float = 40.0) -> np.ndarray:
    """Coarse slices of the legs: from the caudal end up, while the body's mid-line depth stays below
    ``depth_ratio`` of the trunk's median (or the largest piece lies off the mid-line); none when that run is
    shorter than ``min_mm`` (the partial slices of a tilted trunk's cut end, like ``head_min_mm``)."""
    rows = np.flatnonzero(lm.has_body & ~lm.head)
    legs = np.zeros(lm.z_mm.shape, bool)
    if rows.size < 3:
        return legs
    x_mid = float(np.nanmedian(lm.trunk_x_mm[rows]))
    depth = lm.midline_depth_mm
    ref = float(np.median(depth[rows]))
    order = rows[np.argsort(lm.z_mm[rows])]             # caudal first
    off = np.abs(lm.trunk_x_mm - x_mid) > 0.25 * np.nanmedian(lm.trunk_width_mm[rows])
    for k in order:
        if depth[k] < depth_ratio * ref or off[k]:
            legs[k] = True
        else:
            break
    if legs.sum() * lm.coarse_spacing[lm.axis] < min_mm:
        legs[:] = False
    return legs
