"""Threshold segmentation of PET lesions: every published MTV method → an int32 label map.

Methods (``spec/clinical-rules.md`` §5.3), by the names the CLI uses:

========== =====================================================================================
``suv4``    SUV ≥ 4.0 (global)
``suv2.5``  SUV ≥ 2.5 (global)
``pct41``   per lesion: SUV ≥ 0.41 × the lesion's SUVmax, connected to that maximum, inside the
            lesion's VOI (see :func:`per_lesion_threshold`)
``a50p``    per lesion: SUV ≥ 0.5 · (SUVpeak − bg) + bg, bg = local background (see below)
``percist`` SUV ≥ 1.5 × liver mean + 2 × liver SD (``percist_variant='liver_mean'``: SUV ≥ liver mean)
``liver3sd`` SUV ≥ liver mean + 3 × liver SD
``mv2/mv3`` voxels chosen by ≥ 2 / ≥ 3 of {pct41, a50p, suv2.5, suv4} (input set configurable)
========== =====================================================================================

Per-lesion methods (pct41, a50p) need lesions separated first. Their **seeds** are the connected
components of SUV ≥ ``seed_suv`` (default **4.0**, the PETRA detection threshold) or, when the user
gives a lesion mask, its lesions. Not 2.5: on the noisy whole-body phantom (liver SUV 2, 10 %
noise) SUV ≥ 2.5 seeds 166 components for 30 lesions, and 41 % of a noise peak of 2.6 grows into
the background around it (pct41 MTV 683 mL against 93 mL for suv4); lesions with SUVmax < 4 need
a user mask or a lower ``seed_suv``. The **VOI** of a seed is the seed dilated by ``voi_margin_mm``
(default **10 mm**, about 1.7 × the FWHM of a clinical PET, which covers the blur tail where the
41 % / 50 % contour lies).
Where VOIs of two lesions overlap, a voxel goes to the lesion with the higher SUVmax (lesions are
processed hottest first and never overwrite each other). For a50p the background ``bg`` is the
median SUV of the shell between ``voi_margin_mm`` and ``voi_margin_mm + bg_shell_mm`` (default
10 mm) around the seed, excluding every seed voxel; the median keeps a neighbouring lesion from
raising it. SUVpeak is IBSI's global peak (1 cm³ sphere) of the seed.

Exclusion masks (physiological uptake) remove voxels before labelling; opt-in
:func:`auto_exclude_brain` adds the brain by a conservative rule. Lesions are connected
components (cc3d; 26-connected by default) of at least ``min_volume_ml``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import cc3d
import numpy as np
from scipy import ndimage

from carpet.errors import InputError
from carpet.lesions import local_sphere_means, sphere_kernel

METHODS = ("suv4", "suv2.5", "pct41", "a50p", "percist", "liver3sd", "mv2", "mv3")
FIXED_THRESHOLDS = {"suv4": 4.0, "suv2.5": 2.5}
LIVER_METHODS = ("percist", "liver3sd")
MV_INPUTS = ("pct41", "a50p", "suv2.5", "suv4")
CONNECTIVITIES = (6, 18, 26)


@dataclass(frozen=True)
class SegmentParams:
    """Every setting a method uses (recorded in the provenance of the result).

    Attributes
    ----------
    connectivity : {6, 18, 26}
    min_volume_ml : float
        Components smaller than this are dropped (0: none).
    seed_suv : float
        Detection threshold giving the seeds of per-lesion methods (SUV).
    voi_margin_mm, bg_shell_mm : float
        VOI margin around a seed; width of the a50p background shell (mm).
    pct_fraction, a50p_fraction : float
        0.41 for pct41; 0.5 for a50p.
    percist_variant : {'1.5mean+2sd', 'liver_mean'}
    liver_mean, liver_sd : float or None
        Liver reference (SUV) for percist / liver3sd.
    mv_inputs : tuple of method names
        Inputs of the majority votes.
    """

    connectivity: int = 26
    min_volume_ml: float = 0.0
    seed_suv: float = 4.0
    voi_margin_mm: float = 10.0
    bg_shell_mm: float = 10.0
    pct_fraction: float = 0.41
    a50p_fraction: float = 0.5
    percist_variant: str = "1.5mean+2sd"
    liver_mean: float | None = None
    liver_sd: float | None = None
    mv_inputs: tuple = field(default=MV_INPUTS)

    def __post_init__(self):
        if self.connectivity not in CONNECTIVITIES:
            raise InputError(f"connectivity must be 6, 18 or 26, got {self.connectivity}",
                             hint="--connectivity 6|18|26")
        if not self.min_volume_ml >= 0 or self.min_volume_ml == float("inf"):  # NaN fails every comparison
            raise InputError(f"minimum lesion volume must be a number ≥ 0 mL, got {self.min_volume_ml}",
                             hint="--min-volume-ml")
        if not 0 < self.seed_suv < float("inf"):
            raise InputError(f"the seed threshold must be a positive SUV, got {self.seed_suv}",
                             hint="--seed-suv")
        if self.percist_variant not in ("1.5mean+2sd", "liver_mean"):
            raise InputError(f"unknown PERCIST variant {self.percist_variant!r}; "
                             "expected '1.5mean+2sd' or 'liver_mean'")
        bad = [m for m in self.mv_inputs if m not in METHODS or m.startswith("mv")]
        if bad or len(self.mv_inputs) < 3:
            raise InputError(f"majority-vote inputs must be ≥ 3 of {METHODS[:6]}, got {self.mv_inputs}")


# ---------------------------------------------------------------------------------------------
# building blocks
# ---------------------------------------------------------------------------------------------
def label_components(mask: np.ndarray, spacing, *, connectivity: int = 26,
                     min_volume_ml: float = 0.0) -> np.ndarray:
    """Connected components of a boolean mask as int32 labels 1..n (cc3d), small ones dropped.

    Labels are numbered in cc3d's scan order (the array's memory order), so the same mask
    always gives the same labels.
    """
    # cc3d reads C- or F-ordered masks as they are: no copy of the volume.
    labels = cc3d.connected_components(np.asarray(mask, dtype=bool), connectivity=connectivity,
                                       out_dtype=np.uint32)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    if min_volume_ml > 0 and labels.any():
        counts = np.bincount(labels.ravel())
        keep = counts * voxel_ml >= min_volume_ml
        keep[0] = False
        lut = np.zeros(len(counts), dtype=np.int32)
        lut[keep] = np.arange(1, keep.sum() + 1, dtype=np.int32)
        return lut[labels]
    return labels.view(np.int32)  # same bits: fewer than 2**31 components fit any volume here


def _threshold_label(suv, threshold, spacing, params, exclude, min_volume_ml=None):
    """Components of SUV ≥ ``threshold`` outside ``exclude`` (``params.min_volume_ml`` unless given)."""
    mask = suv >= threshold
    if exclude is not None:
        mask &= ~exclude
    return label_components(mask, spacing, connectivity=params.connectivity,
                            min_volume_ml=params.min_volume_ml if min_volume_ml is None else min_volume_ml)


def liver_threshold(method: str, liver_mean: float | None, liver_sd: float | None,
                    percist_variant: str = "1.5mean+2sd") -> float:
    """The SUV threshold of a liver-referenced method.

    ``percist``: 1.5 × mean + 2 × SD (or the liver mean itself with ``percist_variant='liver_mean'``);
    ``liver3sd``: mean + 3 × SD.
    """
    if liver_mean is None or (liver_sd is None and not (method == "percist"
                                                        and percist_variant == "liver_mean")):
        raise InputError(f"method {method!r} needs a liver reference (mean and SD of the liver SUV)",
                         hint="give --liver-voi x,y,z[,diameter_mm] or a CT for the automatic liver VOI")
    if method == "percist":
        return liver_mean if percist_variant == "liver_mean" else 1.5 * liver_mean + 2.0 * liver_sd
    if method == "liver3sd":
        return liver_mean + 3.0 * liver_sd
    raise InputError(f"{method!r} is not a liver-referenced method")


def seeds_from_threshold(suv: np.ndarray, spacing, params: SegmentParams,
                         exclude: np.ndarray | None = None) -> np.ndarray:
    """Seed lesions for per-lesion methods: components of SUV ≥ ``params.seed_suv``.

    No minimum volume here: a small seed may grow into a lesion above it (the minimum applies
    to the final lesions).
    """
    return _threshold_label(suv, params.seed_suv, spacing, params, exclude, min_volume_ml=0.0)


@dataclass
class _Seed:
    label: int
    box: tuple            # crop: the seed's bounding box + VOI margin (+ shell), clipped
    seed: np.ndarray      # bool, the seed inside the crop
    dist_mm: np.ndarray   # distance (mm) of every crop voxel to the seed


def _seed_crops(seeds: np.ndarray, spacing, reach_mm: float):
    """Each seed with its crop and distance map; O(Σ crop sizes), not O(image × seeds)."""
    reach = [int(np.ceil(reach_mm / s)) for s in spacing]
    for lab, sl in enumerate(ndimage.find_objects(seeds), start=1):
        if sl is None:
            continue
        box = tuple(slice(max(s.start - r, 0), min(s.stop + r, n))
                    for s, r, n in zip(sl, reach, seeds.shape))
        seed = seeds[box] == lab
        dist = ndimage.distance_transform_edt(~seed, sampling=spacing)
        yield _Seed(lab, box, seed, dist)


def per_lesion_threshold(suv: np.ndarray, seeds: np.ndarray, spacing, method: str,
                         params: SegmentParams, exclude: np.ndarray | None = None) -> np.ndarray:
    """pct41 or a50p: a threshold per seed lesion, grown inside the seed's VOI.

    For each seed (hottest first): threshold ``t`` = ``pct_fraction`` × seed SUVmax (pct41) or
    ``a50p_fraction`` · (SUVpeak − bg) + bg (a50p); the lesion is the voxels of the VOI with
    SUV ≥ t connected to the seed's maximum voxel. Voxels already given to a hotter lesion and
    excluded voxels are not taken. Lesions are then relabelled as connected components
    (``min_volume_ml`` applied), so touching lesions merge exactly as for global thresholds.

    Returns
    -------
    ndarray of int32
    """
    if method not in ("pct41", "a50p"):
        raise InputError(f"{method!r} is not a per-lesion method")
    seeds = np.asarray(seeds)
    reach = params.voi_margin_mm + (params.bg_shell_mm if method == "a50p" else 0.0)
    out = np.zeros(suv.shape, dtype=bool)
    kernel = sphere_kernel(spacing) if method == "a50p" else None
    struct = ndimage.generate_binary_structure(3, {6: 1, 18: 2, 26: 3}[params.connectivity])
    crops = list(_seed_crops(seeds, spacing, reach))
    seed_max = [suv[c.box][c.seed].max() for c in crops]
    for c in (crops[i] for i in np.argsort(seed_max, kind="stable")[::-1]):
        values = suv[c.box]
        if method == "pct41":
            thr = params.pct_fraction * values[c.seed].max()
        else:
            # SUVpeak: the seed's global peak; bg: median of the shell beyond the VOI.
            peak = local_sphere_means(suv, c.box, kernel)[c.seed].max()
            shell = ((c.dist_mm > params.voi_margin_mm)
                     & (c.dist_mm <= params.voi_margin_mm + params.bg_shell_mm)
                     & (seeds[c.box] == 0))
            if exclude is not None:
                shell &= ~exclude[c.box]
            bg = float(np.median(values[shell])) if shell.any() else 0.0
            thr = params.a50p_fraction * (peak - bg) + bg
        cand = (values >= thr) & (c.dist_mm <= params.voi_margin_mm) & ~out[c.box]
        if exclude is not None:
            cand &= ~exclude[c.box]
        flat_seed = np.flatnonzero(c.seed)
        top = np.unravel_index(flat_seed[np.argmax(values.ravel()[flat_seed])], values.shape)
        if not cand[top]:
            continue  # the maximum itself was taken by a hotter lesion or is excluded
        comp, _ = ndimage.label(cand, structure=struct)
        out[c.box] |= comp == comp[top]
    return label_components(out, spacing, connectivity=params.connectivity,
                            min_volume_ml=params.min_volume_ml)


# ---------------------------------------------------------------------------------------------
# automatic exclusion (opt-in)
# ---------------------------------------------------------------------------------------------
BRAIN_MIN_ML = 500.0
BRAIN_TOP_MM = 300.0


def auto_exclude_brain(suv: np.ndarray, spacing, z_mm: np.ndarray, *, threshold_suv: float = 4.0,
                       min_volume_ml: float = BRAIN_MIN_ML,
                       top_mm: float = BRAIN_TOP_MM) -> tuple[np.ndarray, dict]:
    """The brain, found by a conservative rule, as a mask to exclude (opt-in: ``--auto-exclude``).

    The brain is the largest 26-connected component of SUV ≥ ``threshold_suv`` that holds at
    least ``min_volume_ml`` (default 500 mL) and lies entirely within the ``top_mm`` (default
    30 cm) most superior millimetres of the field of view. A component below 500 mL is never
    removed, so no lesion-sized component is taken for the brain; a brain with low uptake is then
    left in, which shows in the lesion table rather than silently removing a lesion. Bladder,
    kidneys and heart are not attempted: their size overlaps lesions; give them with ``--exclude``.

    Parameters
    ----------
    suv : ndarray
    spacing : 3 floats (mm)
    z_mm : ndarray, shape of ``suv`` broadcastable
        LPS z (superior +) of the voxel centres.

    Returns
    -------
    (mask, record) : bool mask (all False when no brain was found) and what was removed.
    """
    labels = label_components(suv >= threshold_suv, spacing)
    counts = np.bincount(labels.ravel(order="K"))
    voxel_ml = float(np.prod(spacing)) / 1000.0
    z = np.broadcast_to(z_mm, suv.shape)
    z_top = float(z.max())
    record = {"rule": f"largest SUV >= {threshold_suv} component >= {min_volume_ml} mL within the top "
                      f"{top_mm} mm of the field of view", "removed": None}
    for lab in np.argsort(counts[1:])[::-1] + 1:
        if counts[lab] * voxel_ml < min_volume_ml:
            break
        sl = ndimage.find_objects((labels == lab).astype(np.uint8))[0]
        zs = z[sl][labels[sl] == lab]
        if zs.min() >= z_top - top_mm:
            record["removed"] = {"region": "brain", "volume_ml": float(counts[lab] * voxel_ml)}
            return labels == lab, record
    return np.zeros(suv.shape, dtype=bool), record


# ---------------------------------------------------------------------------------------------
# the methods
# ---------------------------------------------------------------------------------------------
@dataclass
class Segmentation:
    """Label maps of one or more methods on one grid, with how they were made."""

    labels: dict[str, np.ndarray]
    thresholds: dict[str, object]
    params: SegmentParams
    skipped: dict[str, str] = field(default_factory=dict)


def segment(suv: np.ndarray, spacing, methods=("suv4",), *, params: SegmentParams | None = None,
            exclude: np.ndarray | None = None, seeds: np.ndarray | None = None,
            skip_unavailable: bool = False) -> Segmentation:
    """Segment lesions with one or several methods, sharing work between them.

    Parameters
    ----------
    suv : ndarray, shape (ni, nj, nk)
        PET in SUV.
    spacing : sequence of 3 floats
        Voxel size (mm).
    methods : sequence of str or 'all'
        Method names from :data:`METHODS`.
    params : SegmentParams
        Thresholds and options (defaults: see the module docstring).
    exclude : ndarray of bool, optional
        Voxels never counted as lesion (physiological uptake).
    seeds : ndarray of int, optional
        Seed lesions for pct41/a50p (e.g. the user's lesion mask); default: components of
        SUV ≥ ``params.seed_suv``.
    skip_unavailable : bool
        With True, liver methods without a liver reference are skipped (reason in ``skipped``)
        instead of raising.

    Returns
    -------
    Segmentation
        ``labels[method]`` is an int32 label map, 0 = background, lesions 1..n.
    """
    params = params or SegmentParams()
    methods = list(METHODS) if methods == "all" or list(methods) == ["all"] else list(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise InputError(f"unknown method {unknown[0]!r}; expected one of {', '.join(METHODS)} or all",
                         hint="--method")
    suv = np.asarray(suv)
    if exclude is not None:
        exclude = np.asarray(exclude, dtype=bool)
        if exclude.shape != suv.shape:
            raise InputError(f"exclusion mask shape {exclude.shape} does not match the PET {suv.shape}")
    if params.min_volume_ml == 0:
        warnings.warn("no minimum lesion volume: single-voxel components count as lesions "
                      "(set min_volume_ml / --min-volume-ml)", stacklevel=2)
    # mv needs its inputs: compute them once, in dependency order.
    needed = list(dict.fromkeys(
        [m for m in methods if not m.startswith("mv")]
        + ([i for i in params.mv_inputs] if any(m.startswith("mv") for m in methods) else [])
        + [m for m in methods if m.startswith("mv")]))
    labels, thresholds, skipped = {}, {}, {}
    if any(m in ("pct41", "a50p") for m in needed) and seeds is None:
        seeds = seeds_from_threshold(suv, spacing, params, exclude)
    for m in needed:
        if m in FIXED_THRESHOLDS:
            thresholds[m] = FIXED_THRESHOLDS[m]
            labels[m] = _threshold_label(suv, FIXED_THRESHOLDS[m], spacing, params, exclude)
        elif m in LIVER_METHODS:
            try:
                thr = liver_threshold(m, params.liver_mean, params.liver_sd, params.percist_variant)
            except InputError as exc:
                if not skip_unavailable:
                    raise
                skipped[m] = exc.message
                continue
            thresholds[m] = thr
            labels[m] = _threshold_label(suv, thr, spacing, params, exclude)
        elif m in ("pct41", "a50p"):
            thresholds[m] = ("per lesion: " + (f"{params.pct_fraction} x SUVmax" if m == "pct41" else
                             f"{params.a50p_fraction} x (SUVpeak - bg) + bg"))
            labels[m] = per_lesion_threshold(suv, seeds, spacing, m, params, exclude)
        else:  # mv2 / mv3
            k = int(m[2])
            missing = [i for i in params.mv_inputs if i not in labels]
            if missing:
                if not skip_unavailable:
                    raise InputError(f"{m} needs {missing}, which could not be computed")
                skipped[m] = f"inputs unavailable: {missing}"
                continue
            votes = np.zeros(suv.shape, dtype=np.uint8)
            for i in params.mv_inputs:
                votes += labels[i] > 0
            thresholds[m] = f">= {k} of {list(params.mv_inputs)}"
            labels[m] = label_components(votes >= k, spacing, connectivity=params.connectivity,
                                         min_volume_ml=params.min_volume_ml)
    return Segmentation({m: labels[m] for m in methods if m in labels},
                        {m: thresholds[m] for m in methods if m in thresholds}, params, skipped)
