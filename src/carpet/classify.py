"""Lesion site against bone: ``bone`` / ``paramedullary`` / ``extramedullary`` / ``indeterminate`` / ``unknown``.

Implements the computable rule of spec ``clinical-rules.md`` §4.3 (a proposal [C]; no published automated
classifier exists, spec §4.2) with every threshold a named parameter of :class:`SiteParams`. The spec's classes
map to the contract's ``site``: intramedullary_FL → ``bone``, paraskeletal → ``paramedullary``, emd_true →
``extramedullary``, indeterminate_abutting → ``indeterminate``; no CT → ``unknown``.

Per lesion ``l`` and solid bone mask ``B`` (:func:`carpet.anatomy.bone_mask`)::

    f_in   = |l ∩ B| / |l|                    bone_fraction
    d_min  = min over l of distance to B      distance_to_bone_mm (0 when l overlaps B; a lower bound of
                                              the gap: centre distance minus one voxel diagonal)
    depth  = max over l of depth inside B     depth_in_bone_mm (distance from the bone surface inwards)
    touch  = share of l within one PET voxel of B
    enters = depth > d_enter (or, with the switch contact_enters, touch >= contact_fraction_min)
                                              the lesion really reaches into bone
    bone            if enters and (f_in >= f_med or V_out < v_min_out)
    paramedullary   if enters and V_out >= v_min_out
    indeterminate   if not enters and d_min <= d_contact
    extramedullary  if not enters and d_min >  d_contact

Deviations from the letter of §4.3 (documented, deliberate):

* §4.3 tests ``V_in > 0``. A PET-grid lesion resampled to a finer CT grid is blocky; a voxel whose centre lies
  outside bone still reaches half a voxel into it, so a lesion lying 2–3 mm from the cortex would show a small
  ``V_in > 0`` and be called paramedullary. ``enters`` therefore asks that the lesion reach deeper into bone
  than ``d_enter`` (default half the largest PET voxel spacing). For the same reason a small lesion that only
  touches bone is ``indeterminate``, not ``bone`` as a literal reading of "V_out < v_min_out" would make it.
* Lytic lesions destroy the bone they occupy: on CT a paramedullary lesion's intraosseous part is a soft-tissue
  bite open to the outside, which hole filling cannot restore. ``B`` is therefore the solid bone plus the
  lesion voxels that a per-bone closing of radius ``envelope_mm`` fills (:class:`SiteParams`).
* ``v_min_out`` defaults to 0.5 mL (spec: 1.0 mL), see :class:`SiteParams`.

The CT bone is built only in each lesion's neighbourhood (its box grown by the farthest reach a rule needs:
the envelope closing, the contact distance; :func:`site_regions`), as a set of boxes (:func:`ct_bone`), and
everything after it runs in per-lesion bounding boxes: the lesion labels are resampled to the CT grid box by
box, and distances outside and inside bone come from windowed look-ups around the lesion's voxels
(:func:`_nearest_sq`: scipy's Euclidean distance transform's values, bit for bit, without its feature
transform) — exact up to the window; beyond it a k-d tree of the bone surface (distance) or windows grown
until they bound the lesion's depth (depth) give the same values as whole-grid transforms, the bone they read
beyond the neighbourhoods built when they need it (:class:`_Bone`). The envelope closings are evaluated at
the lesion voxels they could fill only (:func:`_closed_at`). Every value is the whole CT's; the cost follows
the lesions' neighbourhoods, never lesions × volume or bones × volume.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cc3d
import numpy as np
import pandas as pd
from scipy import ndimage

from carpet.anatomy import (BoneParams, _axial_axis, _ball_structure, _close_in_box, _grown_box, _occupied_box,
                            _reach, ct_bone, ct_bone_on)
from carpet.anatomy.bone import _intersect, ct_bone_extent
from carpet.errors import InputError
from carpet.provenance import provenance
from carpet.volume import Volume, resample_to

__all__ = ["classify_lesions", "SiteParams", "SITES", "label_lesions", "site_counts"]

SITES = ("bone", "paramedullary", "extramedullary", "indeterminate", "unknown")


#: Default contact tolerance in PET voxels (see ``SiteParams.d_contact_mm``).
CONTACT_VOXELS = 1.5


@dataclass(frozen=True)
class SiteParams:
    """Thresholds of the lesion-site rule (spec §4.3; all provisional [C]).

    Attributes
    ----------
    f_med : float
        Bone fraction at or above which a lesion entering bone is ``bone`` (spec default 0.90).
    v_min_out_ml : float
        Volume outside bone (mL) from which a lesion entering bone is ``paramedullary``. The spec proposes
        1.0 mL for real lesions; the default 0.5 mL lets the phantoms' small paramedullary lesions (radius
        ≥ 7 mm, about half outside bone: ≥ 0.7 mL) count while an intramedullary lesion's blocky PET-voxel
        rim spilling over the cortex (< 0.3 mL for radii ≤ 10 mm) does not.
    d_contact_mm : float or None
        Contact tolerance (mm): a lesion not entering bone and at most this far from it is ``indeterminate``.
        None → max(2 mm, 1.5 PET voxels). The spec proposes max(2 mm, one voxel); on PET blurred by a 6 mm
        PSF, thresholding shrinks a small lesion lying 2.5 mm off the cortex so that it measures 4.5–5.1 mm
        from bone (phantom seeds 1–4, both CT grids), which one 4 mm voxel would call extramedullary. Half a
        voxel more keeps such lesions for human review; true EMD in the phantoms lies ≥ 20 mm from bone.
    d_enter_mm : float or None
        Depth (mm) a lesion must reach inside bone to count as entering it. None → half the largest PET voxel
        spacing (how far a voxel centred outside bone reaches into it across a face).
    envelope_mm : float
        Radius (mm) of the closing that restores a bone's outline where a lytic lesion has destroyed it
        (a paramedullary lesion eats a bite out of the cortex: on CT the bite is soft tissue, open to the
        outside, so hole filling cannot close it). Each connected bone is closed separately and only lesion
        voxels are added back, so gaps between bones are never bridged. A bite of radius ``a`` is restored
        below a depth of about ``R - sqrt(R² - a²)`` (3 mm for a = 10 mm, R = 20 mm); concavities of one
        bone narrower than 2R (e.g. a vertebra's canal, notches of the pelvis) also count as bone for a
        lesion lying in them, which needs human review (spec §4.3 edge cases).
    contact_fraction_min : float
        With ``contact_enters``, a lesion with at least this share of its voxels within one PET voxel (centre to centre) of bone also
        counts as entering bone. Where a lesion has eaten a convex corner or edge of a bone no closing can
        restore the bite; the bone then still wraps a large part of the lesion. On the phantoms (8 seeds,
        both CT grids) paramedullary lesions have shares 0.23–0.87, lesions 2.5 mm off the cortex 0–0.17.
    contact_enters : bool
        Named switch [D] (default off): let the contact share alone make a lesion enter bone. Off, a lesion
        that reaches no deeper than ``d_enter_mm`` into bone is ``indeterminate`` (review) however much of it
        touches bone: the bladder beside the pubis (cropped STS_001 CT: 27 % of its voxels within one PET voxel
        of bone, 1.3 % in bone) cannot be told from a lytic lesion that ate the corner of a bone (phantom seed
        2: bone fraction 0, contact 0.2–0.9) by these measures, and spec §4.3 routes abutting lesions to review.
    grid : {'ct', 'pet'}
        Where to compare lesion and bone. ``'ct'`` (spec §4.3): the lesion map is resampled (nearest) to the CT
        grid and the bone mask stays at CT resolution. ``'pet'``: the bone mask is resampled (majority) to the
        PET grid. ``'ct'`` keeps thin cortex that 4-mm PET voxels lose; both give the true sites of the phantoms'
        truth lesions, but not always the same sites for thresholded blurred lesions (an abutting lesion on a
        2-mm CT reads paramedullary on the PET grid). With the per-lesion boxes ``'ct'`` costs seconds on a
        512×512×400 CT, so it stays the default (spec §4.3).
    bone : BoneParams
        CT bone-mask parameters.
    """

    f_med: float = 0.90
    v_min_out_ml: float = 0.5
    d_contact_mm: float | None = None
    d_enter_mm: float | None = None
    envelope_mm: float = 20.0
    contact_fraction_min: float = 0.2
    contact_enters: bool = False
    grid: str = "ct"
    bone: BoneParams = field(default_factory=BoneParams)

    def resolved(self, pet_spacing) -> tuple[float, float]:
        """(d_contact_mm, d_enter_mm) with the PET-voxel defaults filled in."""
        sp = np.asarray(pet_spacing, float)
        d_contact = (self.d_contact_mm if self.d_contact_mm is not None
                     else max(2.0, CONTACT_VOXELS * float(sp.max())))
        d_enter = self.d_enter_mm if self.d_enter_mm is not None else 0.5 * float(sp.max())
        return d_contact, d_enter


def label_lesions(labels: Volume, connectivity: int = 26) -> Volume:
    """Integer lesion labels: a boolean mask is split into connected components (cc3d), labels pass through."""
    lab = _integer_labels(labels, connectivity)
    if np.asarray(lab.array).min() < 0:
        raise InputError(NEGATIVE_LABELS)
    return lab


NEGATIVE_LABELS = "lesion label map has negative labels; expected 0 = background, 1..n = lesions"


def _integer_labels(labels: Volume, connectivity: int = 26) -> Volume:
    """:func:`label_lesions` without the check for negative labels (:func:`_label_extents` makes it)."""
    arr = np.asarray(labels.array)
    if arr.dtype == bool:
        if connectivity not in (6, 18, 26):
            raise InputError(f"connectivity must be 6, 18 or 26, got {connectivity}", hint="--connectivity")
        return labels.with_array(cc3d.connected_components(arr, connectivity=connectivity).astype(np.int32))
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise InputError("lesion label map must hold integer labels (0 = background)")
        arr = arr.astype(np.int32)
    return labels.with_array(arr)


def _per_label(values: np.ndarray, labels: np.ndarray, ids: np.ndarray, fn) -> np.ndarray:
    """``fn`` (ndimage.sum/minimum/maximum) per label, on the lesion voxels only (cheap when lesions are small)."""
    if ids.size == 0:
        return np.zeros(0)
    inside = labels > 0
    return np.asarray(fn(values[inside], labels=labels[inside], index=ids), dtype=float)


def _label_extents(arr: np.ndarray) -> tuple[np.ndarray, list[tuple[slice, ...] | None]]:
    """Voxel count per label (index = label, labels ≥ 0; the background's, index 0, left at 0) and the bounding
    boxes of labels 1..max (None for an absent label), as ``np.bincount`` and ``ndimage.find_objects`` give them.

    Read from the labelled voxels only, found by one pass over the map in memory order (no copy of a
    Fortran-ordered map; :func:`_nonzero`); the rest costs the lesions' voxels, not the volume. Negative
    labels raise :class:`InputError`.
    """
    order = "F" if arr.flags.f_contiguous and not arr.flags.c_contiguous else "C"
    flat = arr.ravel(order=order)                       # a view when the map is contiguous
    where = _nonzero(flat)
    values = flat[where]
    if values.size and values.min() < 0:
        raise InputError(NEGATIVE_LABELS)
    counts = np.bincount(values, minlength=1)
    boxes: list[tuple[slice, ...] | None] = [None] * (counts.size - 1)
    if where.size == 0:
        return counts, boxes
    by_label = np.argsort(values, kind="stable")        # each label's voxels in one run
    coords = [c[by_label] for c in np.unravel_index(where, arr.shape, order=order)]
    present = np.flatnonzero(counts[1:]) + 1
    starts = np.cumsum(counts[present]) - counts[present]
    lo = [np.minimum.reduceat(c, starts) for c in coords]
    hi = [np.maximum.reduceat(c, starts) + 1 for c in coords]
    for k, lid in enumerate(present):
        boxes[lid - 1] = tuple(slice(int(lo[a][k]), int(hi[a][k])) for a in range(3))
    return counts, boxes


def _nonzero(flat: np.ndarray, chunk: int = 1 << 15) -> np.ndarray:
    """``np.flatnonzero(flat)`` (a 1-D integer or boolean array), comparing only the chunks that hold a nonzero
    value, found by one OR-reduction over the bits: a label map is mostly background."""
    cut = flat.size - flat.size % chunk
    hit = np.zeros(0, bool)
    if cut:
        bits = flat[:cut].view(f"u{flat.dtype.itemsize}").reshape(-1, chunk)
        hit = np.bitwise_or.reduce(bits, axis=1) != 0
    hit = np.append(hit, cut < flat.size)               # the tail: compared as it is
    edges = np.flatnonzero(np.diff(np.concatenate(([False], hit, [False])).astype(np.int8)))
    out = [np.flatnonzero(flat[a * chunk:min(b * chunk, flat.size)] != 0) + a * chunk
           for a, b in zip(edges[::2], edges[1::2])]
    return np.concatenate(out) if out else np.zeros(0, np.intp)


class _GridLabels:
    """Lesion labels as seen on the comparison grid, produced box by box.

    On the lesions' own grid the boxes are slices of the label array. On another grid sharing the lesions'
    direction (CT and PET of one scanner) each requested box is resampled by nearest neighbour on the fly —
    index mapping per axis, the rule of SimpleITK's nearest-neighbour interpolator (round half up, voxels
    whose centre falls outside the lesion grid are 0) — so the label map is never built over the whole
    (fine) grid. Other directions fall back to resampling the whole map.
    """

    def __init__(self, lab: Volume, grid: Volume | None = None, boxes=None):
        """``boxes``: the lesions' boxes on their own grid (:func:`_label_extents`) when already known."""
        self.lab = np.asarray(lab.array)
        pet_boxes = _label_extents(self.lab)[1] if boxes is None else boxes
        self.shape = self.lab.shape if grid is None else grid.shape
        self.scale = None
        if grid is None:
            self.boxes = pet_boxes
        elif np.allclose(grid.direction, lab.direction, atol=1e-6):
            # grid index i -> lesion-grid continuous index offset + scale * i, axis by axis
            self.offset = np.asarray(lab.world_to_index(grid.origin), float)
            self.scale = np.asarray(grid.spacing, float) / np.asarray(lab.spacing, float)
            self.boxes = [None if b is None else self._grid_box(b) for b in pet_boxes]
        else:
            self.lab = np.asarray(resample_to(lab, grid, interpolation="nearest", default_value=0).array)
            self.boxes = _label_extents(self.lab)[1]

    def _grid_box(self, pet_box) -> tuple[slice, ...] | None:
        box = []
        for b, o, r, n in zip(pet_box, self.offset, self.scale, self.shape):
            lo = max(0, int(np.floor((b.start - 0.5 - o) / r)) - 1)
            hi = min(n, int(np.ceil((b.stop - 0.5 - o) / r)) + 1)
            if hi <= lo:
                return None                             # the lesion lies outside the grid
            box.append(slice(lo, hi))
        return tuple(box)

    def crop(self, box) -> np.ndarray:
        if self.scale is None:
            return self.lab[box]
        idx, ok = [], []
        for b, o, r, n in zip(box, self.offset, self.scale, self.lab.shape):
            i = np.floor(o + r * np.arange(b.start, b.stop) + 0.5).astype(np.int64)
            ok.append((i >= 0) & (i < n))
            idx.append(np.clip(i, 0, n - 1))
        out = self.lab[np.ix_(*idx)]
        if all(k.all() for k in ok):                    # the usual case: the box lies within the lesion grid
            return out
        return np.where(ok[0][:, None, None] & ok[1][None, :, None] & ok[2][None, None, :], out, 0)

    def mask(self, box, lid: int) -> np.ndarray:
        """Lesion ``lid``'s voxels in ``box`` of the grid (boolean, the shape of ``box``).

        Only the part of ``box`` within the lesion's own box is resampled: no voxel outside it belongs to the
        lesion (the boxes are conservative), so the cost follows the lesion, not the margin around it.
        """
        out = np.zeros([b.stop - b.start for b in box], bool)
        own = self.boxes[lid - 1]
        common = tuple(slice(max(b.start, o.start), min(b.stop, o.stop)) for b, o in zip(box, own))
        if all(c.stop > c.start for c in common):
            out[tuple(slice(c.start - b.start, c.stop - b.start) for c, b in zip(common, box))] = \
                self.crop(common) == lid
        return out


def _as_grid_labels(labels) -> _GridLabels:
    if isinstance(labels, _GridLabels):
        return labels
    return _GridLabels(Volume(np.asarray(labels), (1.0, 1.0, 1.0)))


def _centres_inside(lab: Volume, ct: Volume) -> np.ndarray:
    """Boolean map on the lesion grid: lesion voxels whose centre lies within the CT's field of view (its
    voxels' extent, as nearest-neighbour resampling sees it). Only lesion voxels are tested."""
    out = np.zeros(lab.shape, bool)
    idx = np.argwhere(np.asarray(lab.array) > 0)
    if idx.size:
        ct_idx = ct.world_to_index(lab.index_to_world(idx))
        inside = np.all((ct_idx >= -0.5) & (ct_idx < np.asarray(ct.shape) - 0.5), axis=1)
        out[tuple(idx[inside].T)] = True
    return out


def _restore_envelope(bone: np.ndarray, labels, radius_mm: float, spacing, axial_axis: int,
                      in_place: bool = False, where: list | None = None) -> np.ndarray:
    """Add to ``bone`` the lesion voxels that a closing of radius ``radius_mm`` of one bone would fill.

    Each connected bone is closed on its own, so the gap between two neighbouring bones (spine and iliac wing,
    two vertebrae) is never bridged: only the bite a lesion took out of one bone is restored. A 3-D ball
    cannot fill a notch at a convex edge (a lesion eating the corner of a vertebral body), which in each
    axial slice is still a bite into the bone's outline: the in-slice (2-D) closing is added for those.
    Every lesion is restored against the unrestored ``bone`` (:func:`_restored_voxels`).

    A lesion with no bone within ``radius_mm`` is skipped after one look at ``bone`` in its box grown by
    ``ceil(radius_mm / spacing)`` voxels per axis: a bone voxel outside that box is more than ``radius_mm``
    from every voxel of the lesion's box, and a closing (3-D or in-slice: its disc lies in the ball) is
    contained in the dilation by the same ball, so it cannot reach the lesion. The cost follows the
    lesions near bone, not lesions × volume. Returns ``bone`` itself when nothing is restored or with
    ``in_place``, else a copy; ``where`` (a list) receives the boxes holding the restored voxels.
    """
    labels = _as_grid_labels(labels)
    half = [int(np.ceil(radius_mm / s)) for s in spacing]
    found = []
    for lid, box in enumerate(labels.boxes, start=1):
        if box is None or not bone[_grown_box(box, half, bone.shape)].any():
            continue
        restored = _restored_voxels(bone, labels, lid, box, radius_mm, spacing, axial_axis)
        if restored is not None:
            found.append(restored)
    if not found:
        return bone
    out = bone if in_place else bone.copy()             # else the caller's mask (the cached CT bone) stays
    for box, added in found:
        out[box] |= added
    if where is not None:
        where += [box for box, _ in found]
    return out


def _restored_voxels(bone: np.ndarray, labels: _GridLabels, lid: int, box, radius_mm: float, spacing,
                     axial_axis: int) -> tuple[tuple[slice, ...], np.ndarray] | None:
    """(box, mask) of lesion ``lid``'s non-bone voxels that the closing of one bone near it fills; None if none.

    Only lesion voxels within one radius of bone can be filled (a closing lies in the dilation): a lesion
    with none costs one windowed distance look-up in its box. Otherwise the bones are the connected parts of
    ``bone`` in the lesion's box grown by the closing's reach (2 radii), and only a part with a voxel within
    one radius of those voxels can fill them: its closings (3-D ball, then the in-slice disc for the voxels
    the ball left) are evaluated at those voxels only (:func:`_closed_at`).
    """
    in_slice = tuple(1e9 if a == axial_axis else s for a, s in enumerate(spacing))   # no reach across slices
    near = labels.mask(box, lid) & ~bone[box]           # only these voxels can be added ...
    near = _within(bone, near, radius_mm, spacing, at=box)  # ... those within one radius of bone
    if not near.any():
        return None
    grown = _grown_box(box, _reach(2 * radius_mm, spacing), bone.shape)
    crop = bone[grown]
    todo = np.zeros(crop.shape, bool)
    todo[tuple(slice(b.start - g.start, b.stop - g.start) for b, g in zip(box, grown))] = near
    parts = cc3d.connected_components(crop, connectivity=26)   # ndimage.label's parts, 5x faster
    relevant = np.unique(parts[_occupied_box(todo, _window(radius_mm, spacing))])
    added = np.zeros_like(todo)
    for part in relevant[relevant > 0]:
        one = parts == part
        new = _closed_at(one, todo, radius_mm, spacing)
        left = todo & ~new
        if left.any():
            new |= _closed_at(one, left, radius_mm, in_slice)
        added |= new
        todo &= ~new
        if not todo.any():
            break
    where = _occupied_box(added, 0)
    if where is None:
        return None
    return tuple(slice(g.start + b.start, g.start + b.stop) for g, b in zip(grown, where)), added[where]


def _window(radius_mm: float, spacing) -> tuple[int, ...]:
    """Per axis the largest voxel offset ``d`` whose length ``fl(d * s)`` is at most ``radius_mm``.

    An offset beyond it is farther than ``radius_mm`` in scipy's EDT arithmetic too: the EDT's distance
    ``sqrt(fl(fl(x0² + x1²) + x2²))`` with ``x = fl(d * s)`` is at least each ``x`` (sums of non-negative
    terms only grow, and ``sqrt(fl(x²)) = x`` in binary floating point), so a search over these offsets finds
    every voxel at most ``radius_mm`` away, ties included.
    """
    out = []
    for s in spacing:
        d = int(np.floor(radius_mm / s)) + 1
        while d > 0 and d * float(s) > radius_mm:
            d -= 1
        out.append(d)
    return tuple(out)


def _around(arr: np.ndarray, box, window, fill: bool) -> np.ndarray:
    """``arr`` over ``box`` grown by ``window`` voxels per axis (C order), ``fill`` beyond ``arr``'s bounds."""
    want = [(b.start - w, b.stop + w) for b, w in zip(box, window)]
    src = tuple(slice(max(lo, 0), min(hi, n)) for (lo, hi), n in zip(want, arr.shape))
    pad = [(s.start - lo, hi - s.stop) for s, (lo, hi) in zip(src, want)]
    if not any(p for pair in pad for p in pair):
        return np.ascontiguousarray(arr[src])
    return np.pad(arr[src], pad, constant_values=fill)


def _squares(window: int, s: float) -> np.ndarray:
    """``fl(fl(d * s)²)`` for d = 0..window: one axis's term of the EDT's squared distance."""
    return (np.arange(window + 1, dtype=np.float64) * float(s)) ** 2


def _nearest_sq(feat: np.ndarray, window, spacing) -> np.ndarray:
    """Squared distance (mm²) from each voxel of ``feat``'s array shrunk by ``window`` voxels per axis to the
    nearest True voxel of ``feat`` at most ``window`` voxels away along each axis; inf where there is none.

    The value is scipy's ``distance_transform_edt`` before its square root, in its arithmetic: the minimum
    over the features of ``fl(fl(x0² + x1²) + x2²)``, ``x = fl(d * s)``. Computed axis by axis — the
    nearest feature along axis 0 (exact integer offset), then min-plus with each offset's square along axes
    1 and 2 — which gives that minimum exactly, since rounded addition is monotone. Cost: the shrunken
    array times the window, no feature transform; written here (scipy has no windowed EDT).
    """
    w0, w1, w2 = window
    m0, m1, m2 = feat.shape
    o0, o1, o2 = m0 - 2 * w0, m1 - 2 * w1, m2 - 2 * w2
    if w0 == 0:
        a = np.where(feat, 0.0, np.inf)
    else:
        small = m0 < 1 << 13                            # int16 offsets: half the memory traffic
        rows = np.arange(m0, dtype=np.int16 if small else np.int32).reshape(-1, 1, 1)
        big = rows.dtype.type(1 << 14 if small else 1 << 28)
        prev = np.where(feat[:w0 + o0], rows[:w0 + o0], -big)
        np.maximum.accumulate(prev, axis=0, out=prev)
        nxt = np.minimum.accumulate(np.where(feat[w0:], rows[w0:], big)[::-1], axis=0)[::-1]
        at = rows[w0:w0 + o0]
        d = np.minimum(at - prev[w0:], nxt[:o0] - at)
        np.minimum(d, w0 + 1, out=d)
        a = np.append(_squares(w0, spacing[0]), np.inf)[d]
    for axis, w in ((1, w1), (2, w2)):
        n = (o1, o2)[axis - 1]
        cut = [slice(None)] * 3
        cut[axis] = slice(w, w + n)
        out = a[tuple(cut)].copy()
        if w:
            sq = _squares(w, spacing[axis])
            tmp = np.empty_like(out)
            for k in range(1, w + 1):                   # min(fl(x + c), fl(y + c)) = fl(min(x, y) + c)
                cut[axis] = slice(w - k, w - k + n)
                below = a[tuple(cut)]
                cut[axis] = slice(w + k, w + k + n)
                np.minimum(below, a[tuple(cut)], out=tmp)
                np.add(tmp, sq[k], out=tmp)
                np.minimum(out, tmp, out=out)
        a = out
    return a


def _within(mask: np.ndarray, want: np.ndarray, radius_mm: float, spacing, at=None) -> np.ndarray:
    """The voxels of ``want`` (``mask`` over the box ``at``; default: all of it) within ``radius_mm`` of a
    True voxel of ``mask`` — where ``distance_transform_edt(~mask, sampling=spacing) <= radius_mm`` —
    computed around ``want``'s voxels."""
    out = np.zeros_like(want)
    box = _occupied_box(want, 0)
    if box is None:
        return out
    start = [0] * 3 if at is None else [a.start for a in at]
    w = _window(radius_mm, spacing)
    feat = _around(mask, tuple(slice(b.start + s, b.stop + s) for b, s in zip(box, start)), w, False)
    out[box] = want[box] & (np.sqrt(_nearest_sq(feat, w, spacing)) <= radius_mm)
    return out


def _closed_at(mask: np.ndarray, want: np.ndarray, radius_mm: float, spacing) -> np.ndarray:
    """The voxels of ``want`` (``mask``'s shape) that the closing of ``mask`` by the ball of ``radius_mm``
    fills: ``_close_mm(mask, radius_mm, spacing) & want``, background beyond ``mask``'s array.

    Evaluated at ``want``'s voxels only: the dilation (EDT ≤ r) in their box grown by one window, then the
    erosion (distance to the dilation's outside > r) in their box, both by :func:`_nearest_sq` — the same
    decisions as the distance transforms of :func:`_close_mm` (a voxel's ball lies within one window).
    Balls small enough for ``_close_mm``'s binary morphology go through it.
    """
    if radius_mm <= 0 or _ball_structure(radius_mm, spacing).size <= 125:
        box = _occupied_box(want, 0)
        out = np.zeros_like(want)
        if box is not None:
            out[box] = _close_in_box(mask, box, radius_mm, spacing) & want[box]
        return out
    want = _within(mask, want, radius_mm, spacing)      # a closing lies in the dilation
    box = _occupied_box(want, 0)
    if box is None:
        return want
    w = _window(radius_mm, spacing)
    grown = tuple(slice(b.start - k, b.stop + k) for b, k in zip(box, w))     # may leave the array
    dilated = np.sqrt(_nearest_sq(_around(mask, grown, w, False), w, spacing)) <= radius_mm
    want[box] &= np.sqrt(_nearest_sq(~dilated, w, spacing)) > radius_mm
    return want


class _Bone:
    """The bone mask the rule reads: one given whole (the caller's, or the PET-grid one), or the CT bone built
    by :func:`ct_bone` only in the boxes asked so far — then :meth:`ensure` builds more where a measure reads
    beyond them, so that every value read is the whole CT's (bone_mask's region contract)."""

    def __init__(self, array: np.ndarray, *, ct: Volume | None = None, params: BoneParams | None = None,
                 boxes: list | None = None, bone_box=None, private: bool = False):
        self.array, self.ct, self.params = array, ct, params
        self.boxes = boxes                              # None: the whole grid is known
        self.private = private                          # the array is this object's: restore in place
        self._box = bone_box if boxes is not None else ...

    @classmethod
    def built(cls, ct: Volume, params: BoneParams, regions: list) -> _Bone:
        vol = ct_bone(ct, params, regions, all_built=True)   # a fresh array: all the bone built so far
        return cls(np.asarray(vol.array), ct=ct, params=params, boxes=list(vol.meta["bone_boxes"]),
                   bone_box=vol.meta["bone_box"], private=True)

    def occupied(self) -> tuple[slice, ...] | None:
        """A box holding every True voxel (None: there is none)."""
        if self._box is ...:
            self._box = _occupied_box(self.array, 0)
        return self._box

    def add_box(self, box) -> None:
        """Note that True voxels were added in ``box``."""
        old = self.occupied()
        self._box = box if old is None else tuple(slice(min(a.start, b.start), max(a.stop, b.stop))
                                                  for a, b in zip(old, box))

    def ensure(self, boxes) -> bool:
        """Build the bone in the parts of ``boxes`` not built yet (one :func:`ct_bone` call: overlapping boxes
        merged); True when some was built."""
        if self.boxes is None:
            return False
        todo = [b for b in boxes if not _covered(b, self.boxes)]
        if todo:                                        # no bone outside the extent: nothing to build there
            extent = ct_bone_extent(self.ct, self.params)
            todo = [c for c in (_intersect(b, extent) for b in todo if extent is not None)
                    if c is not None and not _covered(c, self.boxes)]
        if not todo:
            return False
        more = ct_bone(self.ct, self.params, todo)
        for box in more.meta["bone_boxes"]:
            self.array[box] |= np.asarray(more.array)[box]
        self.boxes += more.meta["bone_boxes"]
        if more.meta["bone_box"] is not None:
            self.add_box(more.meta["bone_box"])
        return True


def _indices(mask: np.ndarray) -> np.ndarray:
    """``np.argwhere(mask)`` (n × 3, C order), from the flat indices: several times faster on a large mask."""
    flat = np.flatnonzero(mask)
    return np.stack(np.unravel_index(flat, mask.shape), axis=1) if flat.size else np.zeros((0, mask.ndim), np.intp)


def _covered(box, boxes) -> bool:
    """Whether the union of ``boxes`` holds every voxel of ``box``: the cells between all boxes' faces
    within ``box``, each inside one box or none."""
    if any(all(o.start <= i.start and i.stop <= o.stop for o, i in zip(b, box)) for b in boxes):
        return True
    cuts = []
    for a, i in enumerate(box):
        inner = {v for b in boxes for v in (b[a].start, b[a].stop) if i.start < v < i.stop}
        cuts.append(np.array(sorted(inner | {i.start, i.stop})))
    cell = np.zeros([len(c) - 1 for c in cuts], bool)
    for b in boxes:
        at = tuple(slice(int(np.searchsorted(c, max(s.start, c[0]))), int(np.searchsorted(c, min(s.stop, c[-1]))))
                   for s, c in zip(b, cuts))
        cell[at] = True
    return bool(cell.all())


class _FarBone:
    """Exact distances to bone for lesions with no bone near enough in their box; the tree is built on demand.

    The nearest bone voxel of an outside point is always on the bone's 6-connected boundary (from an interior
    voxel one step towards the point is closer), so a k-d tree of the boundary voxels' centres gives the same
    value as the Euclidean distance transform of the whole grid. Where the bone is built box by box
    (:class:`_Bone`), the bone within the distance found of the lesion is built too and the distance looked up
    again, until no unbuilt voxel can be nearer.
    """

    def __init__(self, bone: _Bone, spacing):
        self.bone, self.spacing = bone, np.asarray(spacing, float)
        self._tree = None

    def _build(self) -> None:
        from scipy.spatial import cKDTree

        self._tree = False
        occupied = self.bone.occupied()
        if occupied is None:                            # no bone at all
            return
        box = _grown_box(occupied, [1, 1, 1], self.bone.array.shape)   # one voxel of non-bone around
        b = self.bone.array[box].view(np.uint8)         # uint8: bitwise ops 4x faster than on bool
        inner = b.copy(order="K")
        for a in range(3):                              # interior: all six neighbours are bone (edges count)
            lo = [slice(None)] * 3
            hi = [slice(None)] * 3
            lo[a], hi[a] = slice(1, None), slice(None, -1)
            np.bitwise_and(inner[tuple(hi)], b[tuple(lo)], out=inner[tuple(hi)])
            np.bitwise_and(inner[tuple(lo)], b[tuple(hi)], out=inner[tuple(lo)])
        start = [sl.start for sl in box]
        self._tree = cKDTree((_indices(b > inner) + start) * self.spacing, leafsize=64, balanced_tree=False,
                             compact_nodes=False)       # built 2-3x faster; few look-ups follow

    def nearest(self, lesions: list) -> list[float]:
        """Distance (mm) from each lesion, (its box, its voxels as n × 3 indices), to the nearest bone voxel
        centre."""
        shape = self.bone.array.shape
        while True:
            if self._tree is None:
                self._build()
            found = self._nearest([idx for _, idx in lesions])
            need = [_grown_box(box, _reach(d, self.spacing), shape) if np.isfinite(d)
                    else tuple(slice(0, n) for n in shape) for (box, _), d in zip(lesions, found)]
            if not self.bone.ensure(need):
                return found
            self._tree = None

    def _nearest(self, voxels: list) -> list[float]:
        """Minimum distance (mm) from each set of voxels (n × 3 indices) to the tree's bone voxel centres.

        A far lookup visits much of the tree, so each set costs one, from its centre ``c``: the bone is at
        least ``d(c)`` from ``c``, and the set's voxel ``v`` nearest to ``c`` is at most ``d(c) + |v - c|``
        from bone, so the bone point nearest to the set lies within ``d(c) + |v - c| + r`` of ``c`` (``r``: the
        set's radius about ``c``). The tree gives those candidates at once; the set's voxels nearest to them
        (compared by brute force) are then looked up in the tree, so the values are the tree's own. A set with
        many candidates is looked up voxel by voxel, the search bounded. Same values as unbounded lookups."""
        from scipy.spatial.distance import cdist

        if self._tree is False:
            return [np.inf] * len(voxels)
        points = [v * self.spacing for v in voxels]
        centres = np.array([p.mean(axis=0) for p in points])
        d_centre = self._tree.query(centres)[0]
        out = []
        for p, c, dc in zip(points, centres, d_centre):
            off = np.sqrt(((p - c) ** 2).sum(axis=1))
            bound = (dc + off.min()) * (1.0 + 1e-9) + 1e-9          # ≥ the set's distance
            near = self._tree.query_ball_point(c, bound + off.max())
            if len(p) > 1 and len(near) * len(p) <= 1_000_000:
                gap = cdist(p, self._tree.data[near], "sqeuclidean").min(axis=1)
                p = p[gap <= gap.min() * (1.0 + 1e-9) + 1e-9]
            out.append(float(self._tree.query(p, distance_upper_bound=bound)[0].min()))
        return out


def _max_depth(bone: _Bone, idx: np.ndarray, spacing, margin_mm: float) -> float:
    """Largest depth in bone (mm) over the bone voxels ``idx`` (n × 3 indices), equal to the whole grid's
    distance transform of the bone padded by non-bone beyond the array.

    Each pass looks for non-bone (or the array's border) within ``margin_mm`` of the voxels' box only
    (:func:`_nearest_sq`, one window): a value ≤ the margin is exact, a value > margin (inf: none found)
    means the true depth is > margin too, so a maximum ≤ margin is the true maximum. Otherwise the maximum
    bounds the true one from above: the next pass searches that far (at most twice the margin, so that bone
    with nothing to bound it still ends), exact, usually on the second pass; a window reaching one voxel past
    the array's border on every side from every voxel of the box is exact too, so the loop ends there at the
    latest. Cost: boxes up to about twice the lesion's depth, never the volume. Bone beyond what is built is
    built first (:meth:`_Bone.ensure`).
    """
    lo, hi = idx.min(axis=0), idx.max(axis=0) + 1
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    shape = bone.array.shape
    # offsets up to `whole` reach the array's border (and one voxel past it) from every voxel of the box
    whole = [max(b.stop, n - b.start) for b, n in zip(box, shape)]
    while True:
        w = [min(k, m) for k, m in zip(_window(margin_mm, spacing), whole)]
        bone.ensure([_grown_box(box, w, shape)])
        # the nearest voxel beyond the array is one just past its border: all of them count as non-bone
        sq = _nearest_sq(~_around(bone.array, box, w, False), w, spacing)
        depth = float(np.sqrt(sq[tuple((idx - lo).T)].max()))
        if depth <= margin_mm or w == whole:
            return depth
        margin_mm = min(depth, 2.0 * margin_mm)


def _lesion_bone_measures(bone: _Bone | np.ndarray, labels, ids: np.ndarray, spacing, margin_mm: float,
                          touch_mm: float) -> dict[str, np.ndarray]:
    """Per lesion: grid voxel count, voxels in bone, minimum centre distance to bone, maximum depth in bone
    and the share of voxels within ``touch_mm`` (centre to centre) of bone.

    Each lesion is measured in its bounding box grown by ``max(margin_mm, touch_mm)`` (inside the lesion's
    rule region, :func:`_rule_regions`, so built): a distance outside bone up to that margin is exact there,
    because the nearest bone voxel lies in the box, and a larger one is larger in the box too (the box's bone
    is part of the grid's). So when the box holds bone within the margin of the lesion its minimum and the
    voxels within ``touch_mm`` are exact; otherwise every voxel is farther than ``touch_mm`` from bone and
    the minimum comes from :class:`_FarBone`, for all such lesions at once. Depths come from
    :func:`_max_depth` (exact, its own growing box). Values equal the whole-grid distance transforms' at a
    cost following the lesions' neighbourhoods.
    """
    spacing = np.asarray(spacing, float)
    margin_mm = max(margin_mm, touch_mm)
    reach = _reach(margin_mm, spacing)
    window = _window(margin_mm, spacing)
    labels = _as_grid_labels(labels)
    bone = bone if isinstance(bone, _Bone) else _Bone(bone)
    shape = bone.array.shape
    out = {k: np.full(ids.size, np.nan) for k in ("n", "n_in", "d_centre", "depth", "touch")}
    far = []                                            # (row, lesion box, boundary voxels)
    for i, lid in enumerate(ids):
        box = labels.boxes[lid - 1] if lid - 1 < len(labels.boxes) else None
        if box is None:
            out["n"][i] = 0
            continue
        grown = _grown_box(box, reach, shape)
        lesion = labels.mask(grown, lid)
        n = int(lesion.sum())
        if n == 0:                                      # no voxel of the lesion on this grid
            out["n"][i] = 0
            continue
        b = bone.array[grown]
        start = [g.start for g in grown]
        inside = lesion & b
        out["n"][i], out["n_in"][i] = n, int(inside.sum())
        if out["n_in"][i] == n:                         # all in bone: every distance is 0
            out["d_centre"][i], out["touch"][i] = 0.0, 1.0
            out["depth"][i] = _max_depth(bone, _indices(inside) + start, spacing, margin_mm)
            continue
        # distance to bone within the margin (_nearest_sq: exact up to it, > margin beyond)
        dist = None
        if b.any():
            own = _occupied_box(lesion, 0)
            dist = np.sqrt(_nearest_sq(_around(b, own, window, False), window, spacing))[lesion[own]]
        if dist is None or dist.min() > margin_mm:     # no bone within the margin: exact far distance below
            far.append((i, box, _indices(lesion) + start))
            out["touch"][i] = 0.0
            out["depth"][i] = 0.0
            continue
        out["d_centre"][i] = dist.min()
        out["touch"][i] = np.count_nonzero(dist <= touch_mm) / n
        out["depth"][i] = _max_depth(bone, _indices(inside) + start, spacing, margin_mm) if out["n_in"][i] else 0.0
    if far:
        out["d_centre"][[i for i, _, _ in far]] = _FarBone(bone, spacing).nearest([(b, idx) for _, b, idx in far])
    return out


def site_regions(labels: Volume, ct: Volume, params: SiteParams = SiteParams()) -> list[tuple[slice, ...]]:
    """The boxes of ``ct``'s grid where :func:`classify_lesions` (``grid='ct'``) looks at bone for the lesions
    of ``labels`` (a label map on its own grid), one per lesion: to build that bone once with other regions'
    (``ct_bone``)."""
    lab = _integer_labels(labels)
    boxes = _GridLabels(lab, ct, _label_extents(np.asarray(lab.array))[1]).boxes
    return _rule_regions(boxes, params, params.resolved(lab.spacing)[0], lab.spacing, ct)


def _rule_regions(boxes, params: SiteParams, d_contact: float, pet_spacing, ct: Volume) -> list[tuple[slice, ...]]:
    """The boxes of the CT grid where the site rule looks at bone: each lesion's box grown by the widest reach
    a rule needs — the envelope closing's two radii, or four contact margins (d_contact + one voxel diagonal,
    at least one PET voxel: the depth search doubles its box from one margin, so depths up to twice it are
    read there); one per lesion on the grid, in label order.

    Bone elsewhere matters only to a lesion with no bone within the contact margin (its distance) or one
    deeper in bone than the reach (its depth): :class:`_Bone` builds it then (spec §4.3, "where the rule
    needs the CT")."""
    contact = max(d_contact + float(np.linalg.norm(ct.spacing)), float(max(pet_spacing)))
    reach = _reach(max(2.0 * params.envelope_mm, 4.0 * contact), ct.spacing)
    return [_grown_box(b, reach, ct.shape) for b in boxes if b is not None]


def classify_lesions(labels: Volume, ct: Volume | None, connectivity: int = 26,
                     params: SiteParams = SiteParams(), *, bone: Volume | None = None) -> pd.DataFrame:
    """Classify every lesion as bone / paramedullary / extramedullary / indeterminate (spec §4.3).

    Parameters
    ----------
    labels : Volume
        Lesion label map on the PET grid (0 background, ``lesion_id`` ≥ 1), or a boolean mask (then split
        into ``connectivity``-connected components).
    ct : Volume or None
        CT in HU on any grid. None → every lesion ``unknown`` with NaN measures.
    connectivity : {6, 18, 26}
        Used only when ``labels`` is boolean.
    params : SiteParams
    bone : Volume, optional
        A precomputed :func:`carpet.anatomy.bone_mask` on the CT grid (``grid='ct'``) or the PET grid
        (``grid='pet'``), to avoid building it twice; by default built from ``ct`` with ``params.bone``.

    Returns
    -------
    pandas.DataFrame
        One row per ``lesion_id``: ``site``, ``bone_fraction``, ``volume_in_bone_ml``, ``volume_outside_bone_ml``,
        ``distance_to_bone_mm``, ``depth_in_bone_mm``, ``bone_contact_fraction``. Volumes are on the PET grid (``bone_fraction`` ×
        lesion volume), so they add up to the lesion's ``volume_ml``. ``df.attrs['provenance']`` records the
        parameters. A lesion (partly) outside the CT field of view is ``unknown``.
    """
    lab = _integer_labels(labels, connectivity)
    lab_arr = np.asarray(lab.array)
    counts, boxes = _label_extents(lab_arr)          # raises on negative labels
    ids = np.flatnonzero(counts[1:]) + 1
    d_contact, d_enter = params.resolved(lab.spacing)
    prov = provenance(method="site_rule_spec_4_3", f_med=params.f_med, v_min_out_ml=params.v_min_out_ml,
                      d_contact_mm=d_contact, d_enter_mm=d_enter, envelope_mm=params.envelope_mm,
                      contact_fraction_min=params.contact_fraction_min,
                      contact_enters=params.contact_enters,
                      grid=params.grid,
                      bone=params.bone.as_dict(), ct=ct is not None)
    n_pet = counts[ids].astype(float)
    volume_ml = n_pet * lab.voxel_volume_ml
    cols = ["site", "bone_fraction", "volume_in_bone_ml", "volume_outside_bone_ml", "distance_to_bone_mm",
            "depth_in_bone_mm", "bone_contact_fraction"]
    nan = np.full(ids.size, np.nan)
    if ct is None or ids.size == 0:
        df = pd.DataFrame({"lesion_id": ids.astype(int), "site": "unknown", "bone_fraction": nan,
                           "volume_in_bone_ml": nan, "volume_outside_bone_ml": nan, "distance_to_bone_mm": nan,
                           "depth_in_bone_mm": nan, "bone_contact_fraction": nan}, columns=["lesion_id", *cols])
        df.attrs["provenance"] = prov
        return df

    if params.grid == "ct":
        grid_labels = _GridLabels(lab, ct, boxes)
        if bone is None:
            bone = _Bone.built(ct, params.bone, _rule_regions(grid_labels.boxes, params, d_contact, lab.spacing, ct))
        else:
            bone = _Bone(np.asarray(bone.array, bool))
        spacing = ct.spacing
        # A lesion voxel with no CT under it disappears in the resampling: compare counts below.
        fov_ok = None
    elif params.grid == "pet":
        grid_labels = _GridLabels(lab, boxes=boxes)
        bone = _Bone(np.asarray((bone if bone is not None else ct_bone_on(lab, ct, params.bone)).array, bool))
        spacing = lab.spacing
        fov_ok = _centres_inside(lab, ct)
    else:
        raise InputError(f"SiteParams.grid must be 'ct' or 'pet', got {params.grid!r}")

    if bone.array.shape != grid_labels.shape:
        raise InputError(f"the bone mask (shape {bone.array.shape}) is not on the {params.grid.upper()} grid "
                         f"(shape {grid_labels.shape})")
    if params.envelope_mm > 0 and bone.occupied() is not None:
        restored: list = []
        bone.array = _restore_envelope(bone.array, grid_labels, params.envelope_mm, spacing,
                                       _axial_axis(ct if params.grid == "ct" else lab), bone.private, restored)
        for where in restored:
            bone.add_box(where)
    # Distances per lesion in its own neighbourhood (exact, see _lesion_bone_measures). Two voxels (boxes)
    # whose centres are D apart are at least D - one voxel diagonal apart: report that lower bound of the gap,
    # which errs towards contact (indeterminate) rather than a false "no contact" (EMD).
    diagonal = float(np.linalg.norm(spacing))
    touch_mm = float(max(lab.spacing))
    # Margin: distances deciding the site (up to d_contact + diagonal) come from the box alone; the measures are
    # exact for any margin (_lesion_bone_measures).
    m = _lesion_bone_measures(bone, grid_labels, ids, spacing, d_contact + diagonal, touch_mm)
    n_grid = m["n"]
    with np.errstate(invalid="ignore", divide="ignore"):
        f_in = m["n_in"] / n_grid
    d_min = np.maximum(m["d_centre"] - diagonal, 0.0)
    touch = m["touch"]
    depth = m["depth"]
    if fov_ok is None:
        # On the CT grid a lesion voxel of volume v_pet covers v_pet / v_ct CT voxels; fewer means it left the CT.
        expected = n_pet * lab.voxel_volume_ml / ct.voxel_volume_ml
        in_fov = n_grid >= 0.5 * expected
    else:
        in_fov = _per_label(fov_ok.astype(float), lab_arr, ids, ndimage.minimum) > 0

    v_in = f_in * volume_ml
    v_out = volume_ml - v_in
    # Contact alone does not make a lesion enter bone (spec §4.3): the bladder pressed on the pubis touches it
    # with a quarter of its voxels. Without the switch such a lesion is indeterminate (routed to review).
    enters = (depth > d_enter) | ((touch >= params.contact_fraction_min) & params.contact_enters)
    site = np.where(enters,
                    np.where((f_in >= params.f_med) | (v_out < params.v_min_out_ml), "bone", "paramedullary"),
                    np.where(d_min <= d_contact, "indeterminate", "extramedullary")).astype(object)
    site[~in_fov] = "unknown"
    d_min = np.where(np.isfinite(d_min), d_min, np.nan)
    df = pd.DataFrame({"lesion_id": ids.astype(int), "site": site, "bone_fraction": f_in,
                       "volume_in_bone_ml": v_in, "volume_outside_bone_ml": v_out,
                       "distance_to_bone_mm": d_min, "depth_in_bone_mm": depth, "bone_contact_fraction": touch})
    for c in cols[1:]:
        df.loc[~in_fov, c] = np.nan
    df.attrs["provenance"] = prov
    return df


def site_counts(sites) -> dict[str, int]:
    """``n_bone``, ``n_paramedullary``, ``n_extramedullary``, ``n_indeterminate``, ``n_unknown`` for summary.json."""
    s = pd.Series(list(sites), dtype=object)
    return {f"n_{k}": int((s == k).sum()) for k in SITES}
