"""Follow-up scans: the follow-up aligned to its baseline, and each lesion matched across the two.

Alignment (:func:`align_scans`): the follow-up CT is registered to the baseline CT with SimpleITK —
rigid (Euler, initialised on the images' centres of mass), then affine, which is kept only when it raises
the bone overlap measurably (by ``affine_min_gain``); without a CT on either side the two PETs are
registered instead. Both run on the images on the PET grid (about 4 mm; the CT is the one carpet quantify
already builds for the reference regions), with Mattes mutual information on a random 20 % of the voxels
over a three-level pyramid: whole-body studies register in seconds, not minutes. Deformable registration is
left out: on the rigid phantom pairs it cannot help, and on patients it would move lesions towards each other
(a deformable field can make a new lesion overlap an old one).

Quality: the Dice overlap of bone (CT ≥ ``bone_hu``) — or, PET to PET, of the body (SUV ≥ ``body_suv``) —
between the baseline and the aligned follow-up, counted where both fields of view hold data, before and
after. Below ``min_dice`` the alignment is refused with the reason and no lesion is matched.

Matching (:func:`match_lesions`), all on the baseline PET grid: the follow-up label map is carried onto it
through the transform (nearest neighbour), one joint count of (baseline label, follow-up label) over the
voxels gives every overlap (O(voxels), whatever the number of lesions). A follow-up lesion is ``matched``
to the baseline lesion it overlaps most; else to the nearest baseline lesion whose centroid lies within
``match_distance_mm`` of its own (after alignment); else it is ``new``. A baseline lesion nothing matches is
``resolved``, ``merged`` when a follow-up lesion matched to another one still overlaps it, and
``out_of_field`` when its centroid falls outside the follow-up's field of view (not seen, so not resolved).

Physiology seen differently on the two scans (``physiology_mismatch``): the physiology rules decide each scan
on its own, so one component can be excluded (say as bladder) on one scan and kept as a lesion — often
flagged ``review`` — on the other, because the rules compare it with the lesions of its own scan. An
unmatched lesion lying mostly (``physiology_overlap``) in the other scan's excluded uptake, carried through
the same transform, is then neither ``resolved`` (baseline) nor ``new`` (follow-up) but ``physiology_mismatch``,
flagged for the reader, and left out of the new/resolved counts and of the Lugano and metCR comparison with
the baseline (the evidence of the scan whose rule fired is taken over the scan whose rule did not) [C].

No library matches lesions across scans (LIFEx and 3D Slicer leave it to the reader), so the matching rule
is written here; registration, resampling and transforms are SimpleITK's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from carpet.errors import InputError
from carpet.io.tables import write_csv
from carpet.provenance import provenance
from carpet.volume import Volume

__all__ = ["AlignParams", "Alignment", "align_scans", "MatchParams", "ExcludedUptake", "LesionMatch",
           "match_lesions", "follow_up_reading", "binned", "alignment_references", "BaselineOutputs",
           "TrackedFollowUp", "track_followup", "read_study_outputs", "track_series"]


@dataclass(frozen=True)
class AlignParams:
    """Settings of :func:`align_scans` (all [C]: chosen on the phantom pairs, to be checked on patients).

    Attributes
    ----------
    bone_hu : float
        CT bone threshold (HU) of the quality figure.
    body_suv : float
        PET body threshold (SUV) of the quality figure when registering PET to PET.
    min_dice : float
        Below this bone Dice (body Dice for PET) the alignment is refused.
    min_dice_pet : float
        The same for PET-to-PET alignment (body overlap is high even when misaligned, so stricter).
    affine_min_gain : float
        The affine stage is kept only when it raises the Dice by at least this much.
    samples : int
        Voxels the metric samples at each pyramid level (random, fixed seed: the same inputs give the same
        transform); a fixed count, so a whole-body study costs what a small one does.
    iterations : int
        Optimiser iterations per pyramid level.
    """

    bone_hu: float = 200.0
    body_suv: float = 0.3
    min_dice: float = 0.5
    min_dice_pet: float = 0.8
    affine_min_gain: float = 0.01
    samples: int = 20000
    iterations: int = 100
    seed: int = 16


@dataclass
class Alignment:
    """Result of :func:`align_scans`.

    ``transform`` (SimpleITK) maps baseline points (LPS mm) to follow-up points; None when refused.
    ``quality`` holds the Dice before alignment, after the rigid stage and after the affine stage.
    """

    ok: bool
    modality: str
    transform: Any
    stage: str
    quality: dict[str, float | None]
    reason: str
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_base(self, points_mm: np.ndarray) -> np.ndarray:
        """Follow-up points (n, 3) → baseline points (n, 3)."""
        inv = self.transform.GetInverse()
        return np.array([inv.TransformPoint(tuple(map(float, p))) for p in np.atleast_2d(points_mm)]).reshape(-1, 3)

    def to_followup(self, points_mm: np.ndarray) -> np.ndarray:
        """Baseline points (n, 3) → follow-up points (n, 3)."""
        return np.array([self.transform.TransformPoint(tuple(map(float, p)))
                         for p in np.atleast_2d(points_mm)]).reshape(-1, 3)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record: modality, stage kept, quality, matrix/translation (baseline → follow-up)."""
        record = {"ok": self.ok, "modality": self.modality, "stage": self.stage, "quality": self.quality,
                  "reason": self.reason, "provenance": self.provenance}
        if self.transform is not None:
            matrix, translation, centre = _affine_parts(self.transform)
            # net motion of the patient: rotation angle of the matrix's nearest rotation, shift of the centre
            u, _, vt = np.linalg.svd(matrix)
            rot = u @ vt
            angle = float(np.degrees(np.arccos(np.clip((np.trace(rot) - 1) / 2, -1, 1))))
            record.update(matrix=np.round(matrix, 6).tolist(), translation_mm=np.round(translation, 3).tolist(),
                          centre_mm=np.round(centre, 3).tolist(), rotation_deg=round(angle, 3),
                          shift_mm=round(float(np.linalg.norm(matrix @ centre + translation - centre)), 3),
                          maps="baseline LPS mm -> follow-up LPS mm: x' = A (x - c) + c + t")
        return record


def _affine_parts(transform) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(matrix A, translation t, centre c) of a SimpleITK Euler/affine transform: x' = A (x − c) + c + t."""
    import SimpleITK as sitk

    tx = transform
    if tx.GetName() == "CompositeTransform":
        tx = sitk.CompositeTransform(tx).GetNthTransform(0)
    tx = sitk.AffineTransform(tx) if tx.GetName() == "AffineTransform" else sitk.Euler3DTransform(tx)
    return (np.asarray(tx.GetMatrix()).reshape(3, 3), np.asarray(tx.GetTranslation()),
            np.asarray(tx.GetCenter()))


def _prepared(vol: Volume, modality: str):
    """Float image for the metric: CT shifted so that air is 0 (the centre-of-mass start then finds the body),
    clipped at 2000 HU (metal); PET clipped at SUV 10 (a hot bladder should not steer the alignment)."""
    import SimpleITK as sitk

    arr = np.asarray(vol.array, dtype=np.float32)
    arr = np.clip(arr + 1000.0, 0.0, 3000.0) if modality == "CT" else np.clip(arr, 0.0, 10.0)
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr.transpose(2, 1, 0)))
    img.SetSpacing(vol.spacing)
    img.SetOrigin(vol.origin)
    img.SetDirection(tuple(vol.direction.ravel()))
    return img


def _dice(fixed, moving, transform, level: float) -> float | None:
    """Dice of ``image ≥ level`` between ``fixed`` and ``moving`` carried onto it, over voxels both fields of
    view cover (the prepared images' scale: CT + 1000, PET clipped)."""
    import SimpleITK as sitk

    warped = sitk.Resample(moving, fixed, transform, sitk.sitkLinear, -1.0)
    a = sitk.GetArrayViewFromImage(fixed)
    b = sitk.GetArrayViewFromImage(warped)
    inside = b >= 0.0
    fa, fb = (a >= level) & inside, b >= level
    total = int(fa.sum()) + int(fb.sum())
    return None if total == 0 else round(2.0 * int((fa & fb).sum()) / total, 4)


def _register(fixed, moving, initial, params: AlignParams, levels=(4, 2, 1)):
    import SimpleITK as sitk

    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    n_voxels = float(np.prod(fixed.GetSize()))
    # samples / shrink factor at the coarse levels (the percentage applies to the shrunk image): they only
    # need to bring the fine level near; on whole-body images this halves the time for ~1-2 mm less accuracy
    reg.SetMetricSamplingPercentagePerLevel([min(1.0, params.samples * f ** 2 / n_voxels) for f in levels],
                                            params.seed)
    # gradients at the sampled points only: no gradient image of the whole volume at every level
    reg.MetricUseFixedImageGradientFilterOff()
    reg.MetricUseMovingImageGradientFilterOff()
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-3,
                                                 numberOfIterations=params.iterations,
                                                 gradientMagnitudeTolerance=1e-6)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(list(levels))
    # no smoothing before shrinking: the images are block means already, and ITK's per-level Gaussian costs
    # more than all the iterations on a whole-body image
    reg.SetSmoothingSigmasPerLevel([0] * len(levels))
    reg.SetInitialTransform(initial, inPlace=False)
    return reg.Execute(fixed, moving), reg.GetMetricValue()


def align_scans(baseline: Volume, followup: Volume, *, modality: str = "CT",
                params: AlignParams = AlignParams()) -> Alignment:
    """Register the follow-up image to the baseline image (rigid, then affine when it helps).

    Parameters
    ----------
    baseline, followup : Volume
        CT in HU (``modality='CT'``) or PET in SUV (``modality='PT'``), each on any grid; the PET grid is the
        intended one (fast, and what the lesions live on).
    modality : {'CT', 'PT'}
    params : AlignParams

    Returns
    -------
    Alignment
        ``transform`` maps baseline points to follow-up points; ``ok`` False (with ``reason``) when the
        overlap after alignment stays below the threshold or the optimiser fails.
    """
    import SimpleITK as sitk

    if modality not in ("CT", "PT"):
        raise InputError(f"alignment modality must be 'CT' or 'PT', got {modality!r}")
    fixed, moving = _prepared(baseline, modality), _prepared(followup, modality)
    level = params.bone_hu + 1000.0 if modality == "CT" else params.body_suv
    min_dice = params.min_dice if modality == "CT" else params.min_dice_pet
    what = f"bone (CT >= {params.bone_hu:g} HU)" if modality == "CT" else f"body (SUV >= {params.body_suv:g})"
    prov = provenance(method="SimpleITK ImageRegistrationMethod, Mattes MI (32 bins), regular-step gradient "
                             "descent, rigid on a pyramid shrink 4/2/1, then affine at full resolution", modality=modality,
                      quality=f"Dice of {what} where both fields of view hold data",
                      params={k: getattr(params, k) for k in params.__dataclass_fields__})
    quality: dict[str, float | None] = {"dice_before": _dice(fixed, moving, sitk.Transform(3, sitk.sitkIdentity),
                                                             level)}
    try:
        start = sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler3DTransform(),
                                                  sitk.CenteredTransformInitializerFilter.MOMENTS)
        rigid, _ = _register(fixed, moving, start, params)
        quality["dice_rigid"] = _dice(fixed, moving, rigid, level)
        affine_start = sitk.AffineTransform(3)
        euler = sitk.Euler3DTransform(sitk.CompositeTransform(rigid).GetNthTransform(0)
                                      if rigid.GetName() == "CompositeTransform" else rigid)
        affine_start.SetMatrix(euler.GetMatrix())
        affine_start.SetTranslation(euler.GetTranslation())
        affine_start.SetCenter(euler.GetCenter())
        affine, _ = _register(fixed, moving, affine_start, params, levels=(1,))
        quality["dice_affine"] = _dice(fixed, moving, affine, level)
    except RuntimeError as exc:  # SimpleITK: e.g. too few samples inside both images
        return Alignment(False, modality, None, "none", quality, f"registration failed: {exc}".splitlines()[0],
                         prov)
    gain = (quality["dice_affine"] or 0.0) - (quality["dice_rigid"] or 0.0)
    transform, stage = (affine, "affine") if gain >= params.affine_min_gain else (rigid, "rigid")
    quality["dice_after"] = quality[f"dice_{stage}"]
    quality["measure"] = what
    after = quality["dice_after"]
    if after is None or after < min_dice:
        return Alignment(False, modality, None, stage, quality,
                         f"{what} Dice after alignment {after} < {min_dice:g}: the scans could not be "
                         "aligned (different body region, or not the same patient?)", prov)
    return Alignment(True, modality, transform, stage, quality, f"{stage}; {what} Dice {after}", prov)


# ---------------------------------------------------------------------------------------------
# lesion matching
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MatchParams:
    """Settings of :func:`match_lesions`.

    Attributes
    ----------
    match_distance_mm : float
        A follow-up lesion overlapping no baseline lesion is matched to the nearest baseline centroid
        within this distance (after alignment) [C].
    physiology_overlap : float
        An unmatched lesion with at least this fraction of its voxels (on the baseline grid, after alignment)
        in the other scan's excluded physiological uptake is a ``physiology_mismatch`` [C]; one that the rules
        flagged ``review`` on its own scan (e.g. split off the bladder's edge) is one on any overlap: the rules
        doubted it already, and the part left out of the other scan's organ is often just under the threshold
        there (a thin ureter seen with other partial-volume losses).
    """

    match_distance_mm: float = 20.0
    physiology_overlap: float = 0.5


@dataclass
class ExcludedUptake:
    """Physiological uptake the rules took out of one scan: ``labels`` on its PET grid (label =
    ``component_id``, as ``excluded.nii.gz``) and ``table`` (``excluded.csv``: ``component_id``, ``organ``…;
    optional, names the organ)."""

    labels: Volume
    table: pd.DataFrame | None = None

    def organ(self, component_id) -> str:
        t = self.table
        if component_id is None or t is None or "organ" not in t or "component_id" not in t:
            return "physiology"
        hit = t.loc[t["component_id"] == component_id, "organ"]
        return str(hit.iloc[0]) if len(hit) else "physiology"


@dataclass
class LesionMatch:
    """Result of :func:`match_lesions`.

    ``followup``: the follow-up lesion table with ``baseline_lesion_id`` (empty when new), ``change``
    (``matched``/``new``/``physiology_mismatch``), ``match_by``, ``match_overlap_ml``, ``match_distance_mm``
    and the changes ``delta_suv_max``, ``delta_suv_max_pct``, ``delta_suv_peak``, ``delta_volume_ml`` (follow-up − baseline).
    ``baseline``: one row per baseline lesion with ``status`` ∈ matched / merged / resolved / out_of_field /
    physiology_mismatch and ``followup_lesion_ids``. A ``physiology_mismatch`` lesion (either table) has
    ``physiology_note``: what the other scan excluded it as.
    """

    followup: pd.DataFrame
    baseline: pd.DataFrame
    n_new: int
    n_resolved: int
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def n_physiology_mismatch(self) -> int:
        return int((self.followup["change"] == "physiology_mismatch").sum()
                   + (self.baseline["status"] == "physiology_mismatch").sum())


def _centroids(table: pd.DataFrame) -> np.ndarray:
    return table[["centroid_x_mm", "centroid_y_mm", "centroid_z_mm"]].to_numpy(dtype=float).reshape(-1, 3)


def _in_field(points: np.ndarray, grid: Volume) -> np.ndarray:
    idx = grid.world_to_index(points)
    return np.all((idx >= -0.5) & (idx <= np.asarray(grid.shape) - 0.5), axis=1)


def _in_other_physiology(labels: np.ndarray, n: int, excluded: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """For labels 0..n: the fraction of each label's voxels inside ``excluded`` (> 0) and the excluded
    component it overlaps most (0: none). One pass over the overlapping voxels."""
    frac, comp = np.zeros(n + 1), np.zeros(n + 1, dtype=np.int64)
    if excluded is None or n == 0:
        return frac, comp
    size = np.bincount(labels[labels > 0].astype(np.int64), minlength=n + 1)[:n + 1]
    both = (labels > 0) & (excluded > 0)
    pairs, counts = np.unique(np.stack([labels[both].astype(np.int64), excluded[both].astype(np.int64)]),
                              axis=1, return_counts=True)
    inside = np.bincount(pairs[0], weights=counts, minlength=n + 1)[:n + 1] if counts.size else np.zeros(n + 1)
    frac = np.divide(inside, size, out=np.zeros(n + 1), where=size > 0)
    order = np.argsort(counts, kind="stable")              # the largest overlap written last wins
    comp[pairs[0][order]] = pairs[1][order]
    return frac, comp


def match_lesions(base_labels: Volume, base_table: pd.DataFrame, fu_labels: Volume, fu_table: pd.DataFrame,
                  alignment: Alignment, params: MatchParams = MatchParams(), *,
                  base_excluded: ExcludedUptake | None = None,
                  fu_excluded: ExcludedUptake | None = None) -> LesionMatch:
    """Match each follow-up lesion to a baseline lesion, or call it new (see the module docstring).

    Parameters
    ----------
    base_labels, fu_labels : Volume
        Label maps (label = ``lesion_id``) of the baseline and the follow-up, each on its PET grid.
    base_table, fu_table : DataFrame
        Their ``lesions.csv`` tables (``lesion_id``, centroids in LPS mm, ``suv_max``, ``suv_peak``,
        ``volume_ml``).
    alignment : Alignment
        From :func:`align_scans` (must be ``ok``).
    base_excluded, fu_excluded : ExcludedUptake, optional
        Each scan's excluded physiological uptake: an unmatched lesion lying in the other scan's is a
        ``physiology_mismatch`` (module docstring), not resolved / new.
    """
    import SimpleITK as sitk

    if not alignment.ok:
        raise InputError(f"lesions cannot be matched: {alignment.reason}")

    def carried(vol: Volume) -> np.ndarray:    # follow-up labels on the baseline grid
        out = sitk.Resample(vol.to_sitk(), base_labels.to_sitk(), alignment.transform, sitk.sitkNearestNeighbor,
                            0, sitk.sitkInt32)
        return sitk.GetArrayFromImage(out).transpose(2, 1, 0)   # a copy: the image dies here

    fu_on_base = carried(fu_labels)
    base = np.asarray(base_labels.array)
    nb = int(base_table["lesion_id"].max()) if len(base_table) else 0
    nf = int(fu_table["lesion_id"].max()) if len(fu_table) else 0
    base_in_fu_phys = _in_other_physiology(base, nb, None if fu_excluded is None else carried(fu_excluded.labels))
    fu_in_base_phys = _in_other_physiology(fu_on_base, nf, None if base_excluded is None
                                           else np.asarray(base_excluded.labels.array))
    both = (base > 0) & (fu_on_base > 0)
    joint = np.bincount(base[both].astype(np.int64) * (nf + 1) + fu_on_base[both],
                        minlength=(nb + 1) * (nf + 1)).reshape(nb + 1, nf + 1)
    base_c = _centroids(base_table)
    fu_c_on_base = alignment.to_base(_centroids(fu_table)) if len(fu_table) else np.zeros((0, 3))
    base_ids = base_table["lesion_id"].to_numpy(int)
    voxel_ml = base_labels.voxel_volume_ml

    def flagged(table: pd.DataFrame) -> set[int]:
        return set(table.loc[table["review"].astype(bool), "lesion_id"].astype(int)) if "review" in table else set()

    base_review, fu_review = flagged(base_table), flagged(fu_table)

    def physiology_note(in_other, k: int, other: ExcludedUptake | None, scan: str, review: set[int]) -> str:
        frac, comp = in_other[0][k], int(in_other[1][k])
        if other is None or frac == 0 or (frac < params.physiology_overlap and k not in review):
            return ""
        return (f"excluded as {other.organ(comp)} at {scan} (component {comp}, {100 * frac:.0f}% of the lesion): "
                "check whether it is a lesion")

    rows = []
    for k, fid in enumerate(fu_table["lesion_id"].to_numpy(int)):
        overlaps = joint[:, fid]
        dist = np.linalg.norm(base_c - fu_c_on_base[k], axis=1) if len(base_c) else np.zeros(0)
        # overlap with a baseline lesion first; lying in the baseline's excluded uptake beats a distance match
        note = "" if overlaps.max() > 0 else physiology_note(fu_in_base_phys, fid, base_excluded, "baseline",
                                                             fu_review)
        if overlaps.max() > 0:
            bid, by = int(np.argmax(overlaps)), "overlap"
        elif not note and len(dist) and dist.min() <= params.match_distance_mm:
            bid, by = int(base_ids[np.argmin(dist)]), "distance"
        else:
            bid, by = None, ""
        d = float(dist[np.flatnonzero(base_ids == bid)[0]]) if bid is not None else (
            float(dist.min()) if len(dist) else np.nan)
        change = "matched" if bid is not None else "physiology_mismatch" if note else "new"
        rows.append({"baseline_lesion_id": bid, "change": change, "match_by": by,
                     "match_overlap_ml": float(overlaps[bid] * voxel_ml) if bid is not None else 0.0,
                     "match_distance_mm": round(d, 2), "physiology_note": note})
    match = pd.DataFrame(rows, columns=["baseline_lesion_id", "change", "match_by", "match_overlap_ml",
                                        "match_distance_mm", "physiology_note"])
    match["baseline_lesion_id"] = match["baseline_lesion_id"].astype("Int64")
    followup = pd.concat([fu_table.reset_index(drop=True), match], axis=1)
    ref = base_table.set_index("lesion_id")
    for col in ("suv_max", "suv_peak", "volume_ml"):
        before = followup["baseline_lesion_id"].map(ref[col]) if col in ref else np.nan
        followup[f"delta_{col}"] = followup[col] - before.astype(float)
        if col == "suv_max":
            followup["delta_suv_max_pct"] = 100.0 * followup["delta_suv_max"] / before.astype(float)

    matched = followup.groupby("baseline_lesion_id")["lesion_id"].apply(lambda s: ";".join(map(str, s)))
    in_view = _in_field(alignment.to_followup(base_c), fu_labels) if len(base_c) else np.zeros(0, bool)
    status, notes = [], []
    for k, bid in enumerate(base_ids):
        note = ""
        if bid in matched.index:
            status.append("matched")
        elif joint[bid, 1:].any():
            status.append("merged")
        elif note := physiology_note(base_in_fu_phys, bid, fu_excluded, "follow-up", base_review):
            status.append("physiology_mismatch")
        elif not in_view[k]:
            status.append("out_of_field")
        else:
            status.append("resolved")
        notes.append(note)
    baseline = pd.DataFrame({"baseline_lesion_id": base_ids, "status": status,
                             "followup_lesion_ids": [matched.get(b, "") for b in base_ids],
                             "physiology_note": notes})
    keep = [c for c in ("volume_ml", "suv_max", "suv_peak", "site") if c in base_table]
    baseline = baseline.join(base_table.set_index("lesion_id")[keep], on="baseline_lesion_id")
    prov = provenance(method="overlap after alignment, then centroid distance",
                      match_distance_mm=params.match_distance_mm,
                      overlap="follow-up labels carried onto the baseline PET grid (nearest neighbour)",
                      delta="follow-up minus baseline; delta_suv_max_pct relative to baseline",
                      physiology_mismatch=(f"an unmatched lesion with >= {params.physiology_overlap:g} of its "
                                           "voxels (any, when flagged review on its own scan) in the other "
                                           "scan's excluded physiological uptake; not counted "
                                           "as new or resolved, left out of the response comparison"
                                           if base_excluded is not None or fu_excluded is not None else
                                           "not checked (no excluded uptake given)"))
    return LesionMatch(followup, baseline, int((followup["change"] == "new").sum()),
                       int((baseline["status"] == "resolved").sum()), prov)


# ---------------------------------------------------------------------------------------------
# the follow-up reading (Lugano with carpet's new lesions, IMPeTUs at follow-up, metCR with the baseline)
# ---------------------------------------------------------------------------------------------
FOCAL_SITES = ("bone", "paramedullary")


def follow_up_reading(baseline_summary: dict, followup_summary: dict, match: LesionMatch,
                      significant_change_pct: float = 30.0) -> dict[str, Any]:
    """Study keys of a follow-up read against its baseline.

    * ``n_new_lesions``, ``n_resolved_lesions`` (contract), ``n_matched_lesions``, ``n_out_of_field_lesions``;
    * ``response``: Lugano 2014 with the new lesions carpet found (PMD when any, spec §2.4);
    * ``follow_up``: new lesions by site, ``new_bone_lesion`` (a new focal bone or paramedullary lesion, the
      Moffitt "new bone lesion" pattern), the IMPeTUs record at follow-up with its new focal lesions and new
      EMD, and metCR by the three rules with the baseline's lesions: ``LUGANO_STYLE`` scores the previously
      involved sites (follow-up lesions matched to a baseline lesion, and the marrow) and fails on a new
      lesion; ``ZAMAGNI2021`` and ``IMWG2016_IMAGING`` score every lesion, a new one as DS 5 (Deauville 5
      "and/or new lesions", spec §2.2).

    ``physiology_mismatch`` lesions (either scan) are counted in ``n_physiology_mismatch`` only, and left out of
    the Lugano SUVmax and Deauville comparison and of metCR with the baseline (:func:`_without_mismatches`).
    """
    from carpet.scores.metabolic_response import METCR_RULES, metabolic_complete_response, response_to_baseline

    fu = match.followup
    if "physiology_mismatch" in set(fu["change"]) | set(match.baseline["status"]):
        baseline_summary, followup_summary = _without_mismatches(baseline_summary, followup_summary, match)
        fu = fu[fu["change"] != "physiology_mismatch"]
    new = fu[fu["change"] == "new"]
    sites = new["site"].astype(str) if "site" in new else pd.Series([], dtype=str)
    by_site = {str(k): int(v) for k, v in sites.value_counts().items()}
    bm_ds = followup_summary.get("marrow", {}).get("deauville")
    ds = fu["deauville"] if "deauville" in fu else pd.Series([None] * len(fu))
    scored_new = ds.where(fu["change"] != "new", 5)
    involved = ds[fu["change"] == "matched"]
    met_cr = {}
    for rule in METCR_RULES:
        lesions = involved if rule == "LUGANO_STYLE" else scored_new
        met_cr[rule] = metabolic_complete_response(bm_ds, lesions, rule=rule, new_lesions=match.n_new > 0).to_dict()
    met_cr["default_rule"] = METCR_RULES[0]
    impetus = dict(followup_summary.get("impetus") or {})
    impetus.update(new_fl_count=int(sites.isin(FOCAL_SITES).sum()),
                   new_paramedullary=bool((sites == "paramedullary").any()),
                   new_emd=bool((sites == "extramedullary").any()))
    lugano = response_to_baseline(baseline_summary, followup_summary, new_lesions=match.n_new > 0,
                                  significant_change_pct=significant_change_pct)
    status = match.baseline["status"]
    response = lugano.to_dict()
    if match.n_physiology_mismatch:
        response["physiology_mismatch"] = (f"{match.n_physiology_mismatch} lesion(s) excluded as physiology on one "
                                           "scan and kept on the other were left out of this comparison: check them")
    return {"n_new_lesions": match.n_new, "n_resolved_lesions": match.n_resolved,
            "n_matched_lesions": int((fu["change"] == "matched").sum()),
            "n_out_of_field_lesions": int((status == "out_of_field").sum()),
            "n_physiology_mismatch": match.n_physiology_mismatch,
            "response": response,
            "follow_up": {"new_lesions_by_site": by_site,
                          "new_bone_lesion": bool(sites.isin(FOCAL_SITES).any()),
                          "impetus": impetus, "metabolic_response": met_cr,
                          "baseline_lesions": status.value_counts().to_dict()}}


def _without_mismatches(baseline_summary: dict, followup_summary: dict, match: LesionMatch) -> tuple[dict, dict]:
    """Copies of the two summaries whose study SUVmax (and the follow-up's study Deauville score) leave out
    the ``physiology_mismatch`` lesions: a bladder kept at baseline and excluded at follow-up must not read as
    a fall of the hottest lesion's SUVmax."""
    from carpet.scores.deauville import study_deauville

    def disease(summary: dict, table: pd.DataFrame, keep: pd.Series) -> dict:
        kept = table[keep.to_numpy()]
        out = {**summary, "n_lesions": int(len(kept)),
               "suv_max": float(kept["suv_max"].max()) if len(kept) else None}
        if "deauville" in table:
            out["deauville"] = {**(summary.get("deauville") or {}), "study": study_deauville(kept["deauville"])}
        return out

    base = match.baseline
    return (disease(baseline_summary, base, base["status"] != "physiology_mismatch"),
            disease(followup_summary, match.followup, match.followup["change"] != "physiology_mismatch"))


# ---------------------------------------------------------------------------------------------
# what a baseline output folder keeps for later follow-ups
# ---------------------------------------------------------------------------------------------
#: Voxel size (mm) the alignment images are binned to (at least; whole PET voxels per bin).
ALIGN_VOXEL_MM = 6.0


def binned(vol: Volume, voxel_mm: float = ALIGN_VOXEL_MM) -> Volume:
    """Block mean of ``vol`` over whole voxels so that each bin is at least ``voxel_mm`` wide (rounded);
    the partial blocks at the far edges are dropped. The bin centre is the mean of its voxel centres."""
    factors = [max(1, int(round(voxel_mm / s))) for s in vol.spacing]
    arr = np.asarray(vol.array, dtype=np.float32)
    n = [arr.shape[a] // f for a, f in enumerate(factors)]
    if min(n) < 1:
        raise InputError(f"image of shape {arr.shape} is too small to bin to {voxel_mm} mm")
    out = arr[:n[0] * factors[0], :n[1] * factors[1], :n[2] * factors[2]]
    flip = out.strides[0] < out.strides[-1]            # work in memory order (a sliced F array): no copy
    out, order = (out.T, [2, 1, 0]) if flip else (out, [0, 1, 2])
    for a, k in enumerate(order):  # one axis at a time: a 6-D mean over strided axes is 5× slower
        if factors[k] > 1:
            out = _block_sums(out, a, factors[k])
    out = (out.T if flip else out) * np.float32(1.0 / np.prod(factors))
    origin = vol.index_to_world((np.asarray(factors) - 1) / 2.0)
    spacing = tuple(s * f for s, f in zip(vol.spacing, factors))
    return Volume(out, spacing, tuple(origin), vol.direction, {**vol.meta, "binned_from_mm": list(vol.spacing)})


def _block_sums(arr: np.ndarray, axis: int, factor: int) -> np.ndarray:
    """Sums of ``factor`` consecutive slices of ``arr`` along ``axis`` (its length a multiple of ``factor``).

    Below 8 terms numpy's sum adds them one after the other, so adding the strided slices in order gives the
    same float32 values as ``reshape(..., n, factor, ...).sum()`` at a quarter of the cost (no reduction
    machinery over a short axis); longer blocks go through numpy's (pairwise) sum."""
    if factor >= 8:
        n = arr.shape[axis] // factor
        return arr.reshape(*arr.shape[:axis], n, factor, *arr.shape[axis + 1:]).sum(axis=axis + 1)
    part = lambda i: arr[(slice(None),) * axis + (slice(i, None, factor),)]  # noqa: E731
    out = part(0) + part(1)
    for i in range(2, factor):
        out += part(i)
    return out


def alignment_references(pet: Volume, ct_hu_on_pet: np.ndarray | None) -> dict[str, Volume]:
    """The images a later follow-up is aligned with, binned (:func:`binned`): ``'PT'`` the PET (SUV) and,
    with a CT, ``'CT'`` the CT on the PET grid (HU). ``carpet quantify`` writes them as ``align_pt.nii.gz``
    and ``align_ct.nii.gz``."""
    refs = {"PT": binned(pet)}
    if ct_hu_on_pet is not None:
        refs["CT"] = binned(pet.with_array(ct_hu_on_pet, modality="CT", units="HU"))
    return refs


@dataclass
class BaselineOutputs:
    """What a follow-up read needs from its baseline's ``carpet quantify`` folder: ``summary.json``,
    ``lesions.csv``, ``lesions.nii.gz``, the alignment images (modality → Volume) and, when the physiology
    rules ran, its excluded uptake (``excluded.nii.gz`` and ``excluded.csv``)."""

    summary: dict
    lesions: pd.DataFrame
    labels: Volume | None
    references: dict[str, Volume]
    missing: list[str] = field(default_factory=list)
    excluded: ExcludedUptake | None = None


@dataclass
class TrackedFollowUp:
    """A follow-up read against its baseline: the lesion table with the contract columns, the study keys,
    the baseline lesions' status table and the alignment (None when not attempted)."""

    lesions: pd.DataFrame
    summary: dict[str, Any]
    baseline_lesions: pd.DataFrame | None
    alignment: Alignment | None


def track_followup(baseline: BaselineOutputs, lesions: pd.DataFrame, labels: Volume, summary: dict,
                   references: dict[str, Volume], *, align_params: AlignParams = AlignParams(),
                   match_params: MatchParams = MatchParams(),
                   excluded: ExcludedUptake | None = None) -> TrackedFollowUp:
    """Align the follow-up to its baseline (CT when both have one, else PET), match the lesions and read
    the follow-up (:func:`follow_up_reading`). When the baseline folder lacks what matching needs or the
    alignment is refused, the contract columns stay empty, ``n_new_lesions`` and ``n_resolved_lesions`` are
    null and ``tracking.reason`` says why. ``excluded``: the follow-up's excluded physiological uptake (with
    the baseline's, ``baseline.excluded``, it tells a ``physiology_mismatch`` from a new or resolved lesion);
    a follow-up lesion found to be one is flagged ``review`` with the reason."""
    modality = "CT" if "CT" in references and "CT" in baseline.references else "PT"
    alignment, reason = None, None
    if baseline.missing:
        reason = f"the baseline folder lacks {', '.join(baseline.missing)} (made by an older carpet?)"
    elif modality not in baseline.references:
        reason = "the baseline folder holds no alignment image"
    else:
        alignment = align_scans(baseline.references[modality], references[modality], modality=modality,
                                params=align_params)
        reason = None if alignment.ok else alignment.reason
    record = {"alignment": None if alignment is None else alignment.to_dict(),
              "baseline_study": baseline.summary.get("study_id")}
    if reason is not None:
        table = lesions.copy()
        table["baseline_lesion_id"] = pd.array([pd.NA] * len(table), dtype="Int64")
        table["change"] = ""
        return TrackedFollowUp(table, {"n_new_lesions": None, "n_resolved_lesions": None,
                                       "tracking": {**record, "status": "refused", "reason": reason}},
                               None, alignment)
    match = match_lesions(baseline.labels, baseline.lesions, labels, lesions, alignment, match_params,
                          base_excluded=baseline.excluded, fu_excluded=excluded)
    keys = follow_up_reading(baseline.summary, summary, match)
    keys["tracking"] = {**record, "status": "done", "reason": alignment.reason, "matching": match.provenance}
    table = match.followup
    flag = table["change"] == "physiology_mismatch"
    if flag.any():   # the reader is asked, like for any component the rules left undecided
        prior = table["review_reason"].fillna("").astype(str) if "review_reason" in table else ""
        table["review"] = (table["review"].astype(bool) if "review" in table else False) | flag
        table["review_reason"] = prior
        table.loc[flag, "review_reason"] = (table.loc[flag, "review_reason"] + "; "
                                            + table.loc[flag, "physiology_note"]).str.strip("; ")
    return TrackedFollowUp(table, keys, match.baseline, alignment)


def read_study_outputs(folder, summary: dict | None = None) -> BaselineOutputs:
    """``summary.json``, ``lesions.csv``, ``lesions.nii.gz`` and the alignment images of a ``carpet quantify``
    folder; a missing label map or table is listed in ``missing`` (the follow-up is then read without lesion
    matching, and says why), not an error."""
    from carpet.io import read_nifti

    folder = Path(folder)
    if summary is None:
        try:
            summary = json.loads((folder / "summary.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read summary.json ({exc})", source=folder) from None
    missing = [name for name in ("lesions.csv", "lesions.nii.gz") if not (folder / name).is_file()]
    lesions = pd.DataFrame()
    if "lesions.csv" not in missing:
        lesions = pd.read_csv(folder / "lesions.csv")
        need = {"lesion_id", "centroid_x_mm", "centroid_y_mm", "centroid_z_mm", "suv_max", "volume_ml"}
        if need - set(lesions.columns):
            raise InputError(f"missing columns {sorted(need - set(lesions.columns))}", source=folder / "lesions.csv",
                             hint="a baseline is the --out folder of a carpet quantify run")
    labels = None if "lesions.nii.gz" in missing else read_nifti(folder / "lesions.nii.gz")
    refs = {m: read_nifti(folder / f"align_{m.lower()}.nii.gz") for m in ("CT", "PT")
            if (folder / f"align_{m.lower()}.nii.gz").is_file()}
    excluded = None
    if (folder / "excluded.nii.gz").is_file():
        table = pd.read_csv(folder / "excluded.csv") if (folder / "excluded.csv").is_file() else None
        excluded = ExcludedUptake(read_nifti(folder / "excluded.nii.gz"), table)
    elif (folder / "excluded.csv").is_file() and labels is not None:
        table = pd.read_csv(folder / "excluded.csv")
        if table.empty:  # the rules ran and excluded nothing: quantify then writes no label map
            excluded = ExcludedUptake(labels.with_array(np.zeros(labels.shape, np.uint8)), table)
    return BaselineOutputs(summary, lesions, labels, refs, missing, excluded)


_TRACK_MEASURES = ["volume_ml", "suv_max", "suv_peak", "site"]


def track_series(scans: pd.DataFrame, read, *, align_params: AlignParams = AlignParams(),
                 match_params: MatchParams = MatchParams()) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict]]:
    """Lesion tracks across every patient's scans: each scan matched to the patient's previous one.

    Parameters
    ----------
    scans : DataFrame
        ``patient_id``, ``study_id``, ``study_date`` (ISO dates sort as text), one row a done study.
    read : callable
        ``read(study_id)`` → :class:`BaselineOutputs` of that study's quantify folder.

    Returns
    -------
    tracks : DataFrame
        One row per lesion per scan: ``patient_id, track_id, study_id, study_date, lesion_id, change``
        (``first`` at a patient's first scan, ``matched``, ``new``, ``resolved`` — a row at the scan where a
        baseline lesion is no longer seen —, ``physiology_mismatch`` (:func:`match_lesions`), or ``unaligned``
        when the pair could not be aligned and a new track starts), the previous scan's ``previous_lesion_id``
        and the lesion measures. A track id is ``<patient>:T<n>``; a lesion that splits keeps its track on both parts.
    pairs : DataFrame
        One row per consecutive pair: alignment modality, stage, Dice before/after, status, reason, and the
        new / resolved / matched counts.
    readings : dict
        Follow-up study id → its reading against the previous scan (:func:`track_followup`'s study keys:
        ``n_new_lesions``, ``response``, ``follow_up`` ...) and ``baseline_study_id``.
    """
    track_rows, pair_rows, readings = [], [], {}
    for patient, group in scans.sort_values(["patient_id", "study_date", "study_id"]).groupby("patient_id", sort=False):
        counter = iter(range(1, 1 << 30))
        previous, prev_tracks, prev_row = None, {}, None
        for row in group.itertuples(index=False):
            current = read(row.study_id)
            base = {"patient_id": patient, "study_id": row.study_id, "study_date": row.study_date}
            tracks = {}
            if previous is None or previous.labels is None or current.labels is None:
                change = {int(i): ("first" if previous is None else "unaligned", None)
                          for i in current.lesions.get("lesion_id", [])}
                status = None
            else:
                tracked = track_followup(previous, current.lesions, current.labels, current.summary,
                                         current.references, align_params=align_params, match_params=match_params,
                                         excluded=current.excluded)
                info = tracked.summary["tracking"]
                readings[row.study_id] = {**tracked.summary, "baseline_study_id": prev_row.study_id}
                quality = (info.get("alignment") or {}).get("quality") or {}
                pair_rows.append({"patient_id": patient, "baseline_study": prev_row.study_id,
                                  "followup_study": row.study_id, "status": info["status"], "reason": info["reason"],
                                  "modality": tracked.alignment.modality if tracked.alignment else None,
                                  "stage": tracked.alignment.stage if tracked.alignment else None,
                                  "dice_before": quality.get("dice_before"), "dice_after": quality.get("dice_after"),
                                  "n_new_lesions": tracked.summary["n_new_lesions"],
                                  "n_resolved_lesions": tracked.summary["n_resolved_lesions"],
                                  "n_matched_lesions": tracked.summary.get("n_matched_lesions"),
                                  "n_physiology_mismatch": tracked.summary.get("n_physiology_mismatch")})
                change = {}
                for r in tracked.lesions.itertuples(index=False):
                    bid = None if pd.isna(r.baseline_lesion_id) or r.change == "" else int(r.baseline_lesion_id)
                    change[int(r.lesion_id)] = ((r.change or "unaligned"), bid)
                status = tracked.baseline_lesions
            measures = current.lesions.set_index("lesion_id") if len(current.lesions) else pd.DataFrame()
            for lid, (what, bid) in change.items():
                tracks[lid] = prev_tracks[bid] if bid is not None else f"{patient}:T{next(counter)}"
                track_rows.append({**base, "track_id": tracks[lid], "lesion_id": lid, "change": what,
                                   "previous_lesion_id": bid,
                                   **{m: measures.at[lid, m] for m in _TRACK_MEASURES if m in measures}})
            if status is not None:
                gone = status[status["status"].isin(["resolved", "physiology_mismatch"])]
                for r in gone.itertuples(index=False):
                    track_rows.append({**base, "track_id": prev_tracks[int(r.baseline_lesion_id)], "lesion_id": None,
                                       "change": r.status, "previous_lesion_id": int(r.baseline_lesion_id)})
            previous, prev_tracks, prev_row = current, tracks, row
    columns = ["patient_id", "track_id", "study_id", "study_date", "lesion_id", "change", "previous_lesion_id",
               *_TRACK_MEASURES]
    tracks = pd.DataFrame(track_rows, columns=columns)
    for col in ("lesion_id", "previous_lesion_id"):
        tracks[col] = tracks[col].astype("Int64")
    return tracks, pd.DataFrame(pair_rows), readings


def write_series(out, studies: pd.DataFrame, outcomes: pd.DataFrame) -> tuple[dict[str, Path], dict[str, dict]]:
    """``tracks.csv`` and ``pairs.csv`` of a batch (:func:`track_series` over its done studies, paired by
    the ``--studies`` table's patient_id and study_date); returns their paths and the follow-ups' readings."""
    out = Path(out)
    done = set(outcomes.loc[outcomes["status"] != "failed", "study_id"])
    scans = studies[studies["study_id"].isin(done)]
    tracks, pairs, readings = track_series(scans, lambda sid: read_study_outputs(out / "studies" / sid))
    paths = {"tracks": out / "tracks.csv", "pairs": out / "pairs.csv"}
    write_csv(tracks, paths["tracks"])
    write_csv(pairs, paths["pairs"])
    return paths, readings
