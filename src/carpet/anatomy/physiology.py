"""Physiological FDG uptake: which segmented components are brain, myocardium, kidneys, renal pelves, ureters,
bladder, salivary glands, tonsils, larynx/pharynx or the injection site.

Ruleset :data:`RULES_VERSION`, from the PET alone, decided per connected component
of a segmentation (the components a threshold method gives) with shape and position tests against the body
landmarks of :func:`carpet.anatomy.landmarks.body_landmarks`. No library does this; written from
numpy/scipy.ndimage. Every threshold is a field of :class:`PhysiologyParams`, recorded in the provenance; the
rules and how they fail are written down in ``docs/physiology.md``.

Each rule runs when the landmarks it needs are in the field of view and says why not otherwise
(``Physiology.landmarks['not_looked_for']``): the brain needs a head (a narrow cranial end ≥
``brain_min_head_mm``); the heart and the bladder need a trunk (≥ ``heart_min_trunk_mm`` of slices ≥
``trunk_min_width_mm`` wide, neither head nor legs); the bladder needs the head or the legs to place the pelvis;
kidneys, renal pelves and ureters need the heart or the bladder (the renal level); the neck rules need the brain.

* **brain** — in the head, in its upper part: the largest component of at least ``brain_min_ml``; further head
  components are brain when they lie within ``brain_gap_mm`` of it and at least ``brain_skull_mm`` below the
  skin, or at least ``brain_depth_mm`` below the skin and not below its lowest slice. A small component near
  the skin of the head (a skull or scalp lesion) stays and is flagged for review.
* **myocardium** — in the trunk, within ``heart_below_neck_mm`` below the neck and ≥ ``heart_above_legs_mm``
  above the legs when they are in the field of view, at least ``heart_min_ml``, left of the mid-line or on it
  (``heart_dx``) and anterior (``heart_dy``), shaped like a shell (its in-slice holes fill ≥
  ``heart_shell_min`` × its volume). A component in the heart's place that is no shell is kept and flagged.
* **bladder** — in the trunk, ≥ ``bladder_below_neck_mm`` below the neck and ≤ ``bladder_above_legs_mm``
  above the legs (those in the field of view), ≥ 150 mm below the heart: on the mid-line (``bladder_dx``),
  not posterior (``bladder_dy``), ≥ ``bladder_min_ml``, SUVmax ≥ ``bladder_min_suv``; the one holding the
  most tracer (TLG), only when it holds ≥ ``bladder_contrast`` × the TLG of every other component outside
  the head, the heart and the kidneys' place, and is no shell (else kept and flagged).
* **kidney** — posterior (``kidney_dy``), lateral (``kidney_dx``), between heart and bladder: the largest
  candidate of each side (≥ ``kidney_min_ml``), only as a pair (levels within ``kidney_pair_mm``, distances
  from the mid-line within ``kidney_pair_dx``); then the candidates of that side within ``kidney_reach_mm``
  in-slice and ``kidney_half_length_mm`` along z that are parenchyma fragments (SUVmax ≤
  ``kidney_fragment_ratio`` × the threshold, not a ball of ≥ ``kidney_node_min_ml`` with axis ratio ≤
  ``kidney_node_max_axis_ratio``, not hotter than ``kidney_piece_max_ratio`` × the largest piece). The rest
  there is kept and flagged (a node, a kidney lesion, a renal pelvis).
* **renal pelvis** — a hot piece beside a kidney at its hilum (medial to the largest piece, within
  ``renal_pelvis_dy_mm`` of its depth and ``renal_pelvis_dz_mm`` of its level) with a ureter found on its side.
* **ureter** — below the kidneys and above the bladder's lowest slice, within ``ureter_dx``, ≤
  ``ureter_max_ml``: a tube (second-moment elongation ≥ ``ureter_min_elongation``, width ≤
  ``ureter_max_width_mm``, long axis within acos(``ureter_min_z_cos``) of z).
* **salivary gland, tonsil, larynx/pharynx** — head components ≥ ``neck_below_brain_mm`` below the brain, ≤
  ``neck_max_ml`` and SUVmax ≤ ``neck_max_suv``: a left-right mirror pair (positions within ``neck_pair_mm``,
  SUVmax within ``neck_pair_suv_ratio``) is salivary gland (≥ ``salivary_min_offset_mm`` off the mid-line) or
  tonsil; a single one within ``neck_midline_mm`` of the mid-line and in front of the neck's centre
  (``neck_midline_dy``) is larynx/pharynx; the rest (lateral, unpaired; larger; hotter) is kept and flagged.
* **injection site** — components in one arm only (≥ ``arm_out_mm`` outside the trunk piece, not in the legs),
  each ≤ ``injection_max_ml`` and together ≤ ``injection_max_total_ml``; in both arms or larger: kept, flagged.

A lesion is never removed only because it lies next to an organ: a lesion merged with an organ's component
is split off as a lesion and flagged for review when it is a maximum of its own outside the organ's body (it
rises by ≥ ``split_prominence`` × its peak above the saddle joining it to the body) — myocardium, bladder,
kidney, brain — or a bump on the bladder's edge (the bladder's urine is uniform, so a node pressed on it has
no maximum of its own but reaches farther than ``split_margin_mm`` from the bladder's core); see
:func:`_split_lesions`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy import ndimage

from carpet.anatomy._morphology import _fill_holes_slicewise
from carpet.anatomy.landmarks import BodyLandmarks, body_landmarks, leg_slices
from carpet.volume import Volume

RULES_VERSION = "PHYSIO_PET_2026.3"
ORGANS = ("brain", "myocardium", "kidney", "renal_pelvis", "bladder", "ureter", "salivary_gland", "tonsil",
          "larynx_pharynx", "injection_site")


@dataclass(frozen=True)
class PhysiologyParams:
    """Thresholds of the physiology rules (all provisional conventions [C]; see the module docstring).

    Positions are in half trunk widths (``dx``, patient left +) and half trunk depths (``dy``, posterior +)
    from the trunk's centre in the component's slice.
    """

    min_fov_mm: float = 300.0          # the lesion regions' minimum body length (carpet.anatomy.regions)
    brain_min_ml: float = 5.0
    brain_gap_mm: float = 15.0
    brain_depth_mm: float = 20.0
    brain_skull_mm: float = 12.0
    brain_upper_fraction: float = 0.4
    heart_min_ml: float = 10.0
    heart_dx: tuple[float, float] = (-0.2, 0.7)
    heart_dy: float = 0.1
    heart_shell_min: float = 1.1
    bladder_min_ml: float = 3.0
    bladder_min_suv: float = 8.0
    bladder_dx: float = 0.25
    bladder_dy: float = 0.3
    bladder_contrast: float = 2.0
    kidney_dx: tuple[float, float] = (0.1, 0.8)
    kidney_dy: float = -0.2
    kidney_main_dy: float = 0.0
    kidney_min_ml: float = 3.0
    kidney_pair_mm: float = 60.0
    kidney_pair_dx: float = 0.25
    kidney_reach_mm: float = 60.0
    kidney_half_length_mm: float = 80.0
    kidney_piece_max_ratio: float = 1.5
    kidney_fragment_ratio: float = 1.75
    kidney_node_min_ml: float = 1.0
    kidney_node_max_axis_ratio: float = 1.4
    brain_min_head_mm: float = 80.0
    trunk_min_width_mm: float = 220.0
    heart_min_trunk_mm: float = 100.0
    heart_below_neck_mm: float = 300.0
    heart_above_legs_mm: float = 350.0
    bladder_below_neck_mm: float = 400.0
    bladder_above_legs_mm: float = 250.0
    neck_below_brain_mm: float = 25.0
    neck_max_ml: float = 5.0
    neck_max_suv: float = 8.0
    neck_pair_mm: float = 10.0
    neck_pair_suv_ratio: float = 1.5
    neck_midline_mm: float = 25.0
    neck_midline_dy: float = 0.0
    salivary_min_offset_mm: float = 30.0
    arm_out_mm: float = 30.0
    injection_max_ml: float = 2.0
    injection_max_total_ml: float = 5.0
    ureter_min_elongation: float = 1.8
    ureter_max_width_mm: float = 12.0
    ureter_min_z_cos: float = 0.75
    ureter_max_ml: float = 5.0
    ureter_dx: float = 0.7
    renal_pelvis_dy_mm: float = 20.0
    renal_pelvis_dz_mm: float = 40.0
    core_fraction: float = 0.5
    bladder_core_fraction: float = 0.75
    split_margin_mm: float = 10.0
    split_min_ml: float = 0.5
    split_min_suv: float = 4.0
    split_prominence: float = 0.2
    split_edge_mm: float = 4.0
    split_tip_min_ml: float = 0.25
    split_wall_mm: float = 15.0
    split_max_peaks: int = 30
    kidney_core_fraction: float = 0.7

    def as_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass
class Physiology:
    """Result of :func:`find_physiology`.

    Attributes
    ----------
    labels : ndarray of int32
        The input label map without the excluded components, relabelled 1..n in the order of the input
        labels (split-off parts after them).
    excluded : ndarray of int32
        Label map of the excluded components (label = ``component_id`` of ``table``).
    table : DataFrame
        One row per excluded component: ``component_id, organ, volume_ml, suv_max, centroid_x_mm,
        centroid_y_mm, centroid_z_mm, rule, reason``.
    review : dict
        New lesion label → reason, for kept components the rules could not decide (flag for review).
    landmarks : dict
        What the rules found: True present, False absent, None not looked for (a body shorter than
        ``min_fov_mm`` along z cannot be placed: no rule runs).
    provenance : dict
    levels : dict
        LPS z (mm) of the heart's and the bladder's centroids when found (for :mod:`carpet.anatomy.regions`).
    """

    labels: np.ndarray
    excluded: np.ndarray
    table: pd.DataFrame
    review: dict[int, str] = field(default_factory=dict)
    landmarks: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    levels: dict = field(default_factory=dict)


TABLE_COLUMNS = ["component_id", "organ", "volume_ml", "suv_max", "centroid_x_mm", "centroid_y_mm",
                 "centroid_z_mm", "rule", "reason"]


def _component_features(pet: Volume, labels: np.ndarray, lm: BodyLandmarks) -> pd.DataFrame:
    """Per label: voxels, volume, SUV max/mean, centroid (LPS mm), box, position relative to the trunk."""
    suv = np.asarray(pet.array)
    # memory order of the label map: ravel is a view (the SUV is copied only if stored the other way)
    order = "F" if labels.flags.f_contiguous and not labels.flags.c_contiguous else "C"
    where = np.flatnonzero(labels.ravel(order=order) > 0)
    flat_lab = labels.ravel(order=order)[where]
    flat_suv = suv.ravel(order=order)[where]
    idx = np.stack(np.unravel_index(where, labels.shape, order=order), axis=1)
    n_lab = int(flat_lab.max()) if flat_lab.size else 0
    counts = np.bincount(flat_lab, minlength=n_lab + 1)
    ids = np.flatnonzero(counts[1:]) + 1
    if ids.size == 0:
        return pd.DataFrame(columns=["lesion_id"])
    suv_sum = np.bincount(flat_lab, flat_suv, minlength=n_lab + 1)
    suv_max = ndimage.maximum(flat_suv, flat_lab, ids)
    suv_min = ndimage.minimum(flat_suv, flat_lab, ids)
    cen = np.stack([np.bincount(flat_lab, idx[:, a], minlength=n_lab + 1)[ids] / counts[ids] for a in range(3)],
                   axis=1)
    world = pet.index_to_world(cen)
    lo = np.stack([ndimage.minimum(idx[:, a], flat_lab, ids) for a in range(3)], axis=1).astype(int)
    hi = np.stack([ndimage.maximum(idx[:, a], flat_lab, ids) for a in range(3)], axis=1).astype(int) + 1
    k = lm.slice_of(world[:, 2])
    half_w = lm.trunk_width_mm[k] / 2.0
    half_d = lm.trunk_depth_mm[k] / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        dx = (world[:, 0] - lm.trunk_x_mm[k]) / half_w
        dy = (world[:, 1] - lm.trunk_y_mm[k]) / half_d
    return pd.DataFrame({
        "lesion_id": ids, "n": counts[ids], "volume_ml": counts[ids] * pet.voxel_volume_ml,
        "suv_max": suv_max, "suv_min": suv_min, "suv_mean": suv_sum[ids] / counts[ids],
        "x": world[:, 0], "y": world[:, 1], "z": world[:, 2],
        "lo": list(lo), "hi": list(hi), "slice": k, "dx": dx, "dy": dy,
        "head": lm.head[k], "depth_mm": lm.depth_at(np.round(cen).astype(int)),
    })


def _box(row, shape, grow=0) -> tuple[slice, ...]:
    return tuple(slice(max(0, int(a) - grow), min(n, int(b) + grow)) for a, b, n in zip(row.lo, row.hi, shape))


def _shell_ratio(labels: np.ndarray, row) -> float:
    """Volume of the component with its in-slice holes filled (any of the three orientations, the largest)
    over its own volume: about 1 for a solid lesion, larger for a shell around a cold cavity (myocardium)."""
    box = _box(row, labels.shape, 1)
    m = labels[box] == row.lesion_id
    return max(float(_fill_holes_slicewise(m, a).sum()) for a in range(3)) / max(1, int(m.sum()))


def _gap_mm(labels: np.ndarray, a_row, b_row, spacing) -> float:
    """Smallest centre-to-centre distance (mm) between the voxels of two components (in their joint box)."""
    lo = np.minimum(a_row.lo, b_row.lo)
    hi = np.maximum(a_row.hi, b_row.hi)
    box = tuple(slice(int(l), int(h)) for l, h in zip(lo, hi))
    sub = labels[box]
    dist = ndimage.distance_transform_edt(sub != a_row.lesion_id, sampling=spacing)
    return float(dist[sub == b_row.lesion_id].min())


def find_physiology(pet: Volume, labels: np.ndarray, *, params: PhysiologyParams = PhysiologyParams(),
                    landmarks: BodyLandmarks | None = None) -> Physiology:
    """Find the components of ``labels`` that are physiological uptake and take them out.

    Parameters
    ----------
    pet : Volume
        PET in SUV.
    labels : ndarray of int
        Lesion components on the PET grid (0 background).
    params : PhysiologyParams
    landmarks : BodyLandmarks, optional
        From :func:`carpet.anatomy.landmarks.body_landmarks` (computed when not given).

    Returns
    -------
    Physiology
    """
    lm = landmarks if landmarks is not None else body_landmarks(pet)
    p = params
    feats = _component_features(pet, labels, lm)
    organ: dict[int, tuple[str, str, str]] = {}        # lesion_id -> (organ, rule, reason)
    review: dict[int, str] = {}
    z_body = lm.z_mm[lm.has_body]
    # length of the body along z: the coarse slices' centres span one slice less than the slices
    fov_mm = float(z_body.max() - z_body.min() + abs(np.diff(lm.z_mm[:2])).sum()) if z_body.size else 0.0
    place = _Placement.of(lm, p)
    # Each rule runs when the landmarks it needs are in the field of view, else says why not (``absent``).
    absent = place.absent(p)
    found = {o: False for o in ORGANS}
    heart_z = bladder_z = None
    if len(feats):
        feats = feats.set_index("lesion_id", drop=False)
        feats["legs"] = place.legs[feats["slice"].to_numpy()]
        feats["trunk"] = place.trunk[feats["slice"].to_numpy()]
        if "brain" not in absent:
            _brain(feats, labels, pet, lm, p, organ, review)
        if "myocardium" not in absent:
            heart_z = _heart(feats, labels, place, p, organ, review)
        if "bladder" not in absent:
            bladder_z = _bladder(feats, labels, place, p, organ, review, heart_z)
        if heart_z is None and bladder_z is None:
            absent["kidney"] = absent["ureter"] = absent["renal_pelvis"] = ("no renal level (neither the heart nor "
                                                                           "the bladder was found)")
        else:
            hot = _kidneys(feats, labels, pet.spacing, p, organ, review, heart_z, bladder_z,
                           float(feats.suv_min.min()))
            _ureters(feats, labels, pet, p, organ, review, heart_z, bladder_z)
            _renal_pelves(feats, lm, p, organ, review, hot)
        if "salivary_gland" not in absent and not any(v[0] == "brain" for v in organ.values()):
            absent["salivary_gland"] = "no brain found to measure the neck from"
        if "salivary_gland" in absent:
            absent["tonsil"] = absent["larynx_pharynx"] = absent["salivary_gland"]
        else:
            _neck(feats, pet, lm, p, organ, review)
        if "injection_site" not in absent:
            _injection_site(feats, lm, p, organ, review)
        found = {o: any(v[0] == o for v in organ.values()) for o in ORGANS}
    kept, excluded, table, lut, split_review = _apply(pet, labels, feats, organ, p)
    review = {**{int(lut[lid]): r for lid, r in review.items() if lut[lid]}, **split_review}
    marks = {"body": bool(lm.has_body.any()), "body_length_mm": round(fov_mm, 1), "head": lm.head_in_fov,
             **{o: None if o in absent else found[o] for o in ORGANS},
             "not_looked_for": {o: absent[o] for o in ORGANS if o in absent}}
    prov = {"ruleset": RULES_VERSION, "rules": "carpet physiological-uptake rules (docs/physiology.md)",
            "inputs": "PET only (body landmarks on a "
            f"{'x'.join(str(f) for f in lm.factor)}-voxel coarse grid)", "thresholds": p.as_dict()}
    levels = {"heart_z_mm": heart_z, "bladder_z_mm": bladder_z}
    return Physiology(kept, excluded, table, review, marks, prov, levels)


@dataclass(frozen=True)
class _Placement:
    """Where the trunk is along z, from what is in the field of view: the neck's base (the head's lowest
    slice) and the legs' top, each None when absent; trunk slices are neither head nor legs and at least
    ``trunk_min_width_mm`` wide (a crop around a thigh holds no trunk)."""

    legs: np.ndarray
    trunk: np.ndarray
    neck_base_z: float | None
    legs_top_z: float | None
    head_mm: float
    trunk_mm: float
    z_low: float
    z_high: float

    @classmethod
    def of(cls, lm: BodyLandmarks, p: "PhysiologyParams") -> "_Placement":
        legs = leg_slices(lm)
        dz = float(abs(np.diff(lm.z_mm[:2])).sum()) if lm.z_mm.size > 1 else 0.0
        with np.errstate(invalid="ignore"):
            trunk = lm.has_body & ~lm.head & ~legs & (lm.trunk_width_mm >= p.trunk_min_width_mm)
        head_z = lm.z_mm[lm.head]
        return cls(legs, trunk, float(head_z.min()) if head_z.size else None,
                   float(lm.z_mm[legs].max()) if legs.any() else None,
                   float(np.ptp(head_z)) + dz if head_z.size else 0.0,
                   float(np.ptp(lm.z_mm[trunk])) + dz if trunk.any() else 0.0,
                   float(np.min(lm.z_mm[lm.has_body], initial=np.inf)),
                   float(np.max(lm.z_mm[lm.has_body], initial=-np.inf)))

    def absent(self, p: "PhysiologyParams") -> dict:
        """Organ → why its rule cannot run on this field of view."""
        out = {}
        if self.head_mm < p.brain_min_head_mm:
            out["brain"] = (f"no head in the field of view (a narrow cranial end >= {p.brain_min_head_mm:g} mm; "
                            f"found {self.head_mm:.0f} mm)")
            out["salivary_gland"] = "no head in the field of view"
        if self.trunk_mm < p.heart_min_trunk_mm:
            out["myocardium"] = out["bladder"] = (f"no trunk in the field of view (>= {p.heart_min_trunk_mm:g} mm "
                                                  f"of slices >= {p.trunk_min_width_mm:g} mm wide between head "
                                                  f"and legs; found {self.trunk_mm:.0f} mm)")
            out["injection_site"] = "no trunk in the field of view to tell the arms from"
        elif self.neck_base_z is None and self.legs_top_z is None:
            out["bladder"] = "neither the head nor the legs in the field of view: the pelvis cannot be placed"
        elif self.legs_top_z is None and self.z_low > self.neck_base_z - p.bladder_below_neck_mm:
            out["bladder"] = (f"the field of view ends above the pelvis (less than {p.bladder_below_neck_mm:g} mm "
                              "below the neck)")
        if self.neck_base_z is None and self.legs_top_z is not None and "myocardium" not in out \
                and self.z_high < self.legs_top_z + p.heart_above_legs_mm:
            out["myocardium"] = (f"the field of view ends below the heart (less than {p.heart_above_legs_mm:g} mm "
                                 "above the legs)")
        return out

    def heart_ok(self, z: np.ndarray, p: "PhysiologyParams") -> np.ndarray:
        ok = np.ones(np.shape(z), bool)
        if self.neck_base_z is not None:
            ok &= (z <= self.neck_base_z) & (z >= self.neck_base_z - p.heart_below_neck_mm)
        if self.legs_top_z is not None:
            ok &= z >= self.legs_top_z + p.heart_above_legs_mm
        return ok

    def bladder_ok(self, z: np.ndarray, p: "PhysiologyParams") -> np.ndarray:
        ok = np.ones(np.shape(z), bool)
        if self.neck_base_z is not None:
            ok &= z <= self.neck_base_z - p.bladder_below_neck_mm
        if self.legs_top_z is not None:
            ok &= (z >= self.legs_top_z) & (z <= self.legs_top_z + p.bladder_above_legs_mm)
        return ok


def _brain(feats, labels, pet, lm, p, organ, review):
    # the head's own piece (not an arm raised beside it)
    head = feats[feats["head"].astype(bool) & (feats.dx.abs() <= 1.0)]
    if head.empty:
        return
    z_head = lm.z_mm[lm.head]
    z_cut = z_head.min() + p.brain_upper_fraction * (z_head.max() - z_head.min())
    big = head[(head.volume_ml >= p.brain_min_ml) & (head.z >= z_cut)]
    if big.empty:
        return
    main = big.loc[big.volume_ml.idxmax()]
    organ[int(main.lesion_id)] = ("brain", "brain_main", f"largest component in the upper head "
                                  f"({main.volume_ml:.1f} mL >= {p.brain_min_ml})")
    z_low = pet.index_to_world(np.asarray(main.lo, float))[2]
    z_low = min(z_low, pet.index_to_world(np.asarray(main.hi, float) - 1)[2])
    for lid, row in head.iterrows():
        if lid == main.lesion_id:
            continue
        gap = _gap_mm(labels, main, row, pet.spacing)
        if gap <= p.brain_gap_mm and row.depth_mm >= p.brain_skull_mm:
            organ[int(lid)] = ("brain", "brain_adjacent", f"{gap:.0f} mm from the main brain component")
        elif row.z >= z_low and row.depth_mm >= p.brain_depth_mm:
            organ[int(lid)] = ("brain", "brain_deep", f"in the head, {row.depth_mm:.0f} mm below the skin")
        elif row.z >= z_low:
            review[int(lid)] = "in the head near the skin beside the brain (skull/scalp lesion?)"


def _heart(feats, labels, place, p, organ, review):
    cand = feats[feats["trunk"] & ~feats.index.isin(list(organ)) & (feats.volume_ml >= p.heart_min_ml)
                 & (feats.dx >= p.heart_dx[0]) & (feats.dx <= p.heart_dx[1]) & (feats.dy <= p.heart_dy)]
    # the heart lies within heart_below_neck_mm below the neck and heart_above_legs_mm above the legs, when
    # they are in the field of view (a thorax-only field has neither: the shell test alone decides)
    cand = cand[place.heart_ok(cand.z.to_numpy(), p)]
    if cand.empty:
        return None
    for lid, row in cand.sort_values("volume_ml", ascending=False).iterrows():
        ratio = _shell_ratio(labels, row)
        if ratio >= p.heart_shell_min:
            organ[int(lid)] = ("myocardium", "heart_shell", f"left-anterior thorax, shell (filled/volume "
                               f"{ratio:.2f} >= {p.heart_shell_min})")
            return float(row.z)
        review[int(lid)] = f"in the heart's place but not shell-shaped (filled/volume {ratio:.2f})"
    return None


def _bladder(feats, labels, place, p, organ, review, heart_z):
    body = feats[~feats["head"].astype(bool) & ~feats.index.isin(list(organ))]
    cand = body[(body.volume_ml >= p.bladder_min_ml) & (body.suv_max >= p.bladder_min_suv) & body["trunk"]
                & (body.dx.abs() <= p.bladder_dx) & (body.dy <= p.bladder_dy)]
    # the pelvis: >= bladder_below_neck_mm below the neck, <= bladder_above_legs_mm above the legs
    cand = cand[place.bladder_ok(cand.z.to_numpy(), p)]
    if heart_z is not None:
        cand = cand[cand.z < heart_z - 150.0]
    if cand.empty:
        return None
    tlg = body.volume_ml * body.suv_mean
    row = cand.loc[tlg[cand.index].idxmax()]
    # A full bladder holds more tracer than anything else outside the head, the heart and the kidneys: it
    # stands out from every other component by ``bladder_contrast`` in TLG (a bulky mid-line mass holding
    # about as much as the bladder leaves both kept, flagged).
    kidney_place = ((body.dx.abs() >= p.kidney_dx[0]) & (body.dx.abs() <= p.kidney_dx[1])
                    & (body.dy >= p.kidney_main_dy) & (body.z > row.z + 50.0))
    others = body[~kidney_place & (body.index != row.lesion_id)]
    rival = float(tlg[others.index].max()) if len(others) else 0.0
    own = float(tlg[row.lesion_id])
    if _shell_ratio(labels, row) >= p.heart_shell_min:
        review[int(row.lesion_id)] = "mid-line like the bladder but a shell around a cold core (heart? necrosis?)"
        return None
    if own < p.bladder_contrast * rival:
        review[int(row.lesion_id)] = (f"mid-line in the caudal trunk like the bladder, but its TLG {own:.0f} is not "
                                      f"{p.bladder_contrast:g}x that of every other component ({rival:.0f})")
        return None
    organ[int(row.lesion_id)] = ("bladder", "bladder_midline_pelvis", f"mid-line component of the caudal trunk "
                                 f"holding the most tracer (SUVmax {row.suv_max:.1f} >= {p.bladder_min_suv}, "
                                 f"TLG {own:.0f} >= {p.bladder_contrast:g} x any other outside head, heart and "
                                 "kidneys)")
    return float(row.z)


def _kidneys(feats, labels, spacing, p, organ, review, heart_z, bladder_z, t_seg):
    """Returns {lesion_id: largest piece's row} of the hot pieces beside a kidney (kept for review here)."""
    hot = {}
    cand = feats[~feats["head"].astype(bool) & ~feats.index.isin(list(organ)) & (feats.dy >= p.kidney_dy)
                 & (feats.dx.abs() >= p.kidney_dx[0]) & (feats.dx.abs() <= p.kidney_dx[1])]
    if heart_z is not None:
        cand = cand[cand.z < heart_z - 50.0]
    if bladder_z is not None:
        cand = cand[cand.z > bladder_z + 50.0]
    big = cand[(cand.volume_ml >= p.kidney_min_ml) & (cand.dy >= p.kidney_main_dy)]
    mains = {side: big[sel].loc[big[sel].volume_ml.idxmax()] for side, sel in
             (("right", big.dx < 0), ("left", big.dx > 0)) if sel.any()}
    # Kidneys come in pairs: the largest candidates of both sides at about the same level and distance from
    # the mid-line. A lone candidate (a lesion, or a single kidney after nephrectomy) stays, for review.
    paired = (len(mains) == 2 and abs(mains["right"].z - mains["left"].z) <= p.kidney_pair_mm
              and abs(abs(mains["right"].dx) - abs(mains["left"].dx)) <= p.kidney_pair_dx)
    for side, main in mains.items():
        if not paired:
            review[int(main.lesion_id)] = f"posterior-lateral like a {side} kidney, but with no matching pair"
            continue
        part = cand[(cand.dx < 0) if side == "right" else (cand.dx > 0)]
        near = part[(np.hypot(part.x - main.x, part.y - main.y) <= p.kidney_reach_mm)
                    & ((part.z - main.z).abs() <= p.kidney_half_length_mm)]
        for lid, row in near.iterrows():
            fragment = row.suv_max <= p.kidney_fragment_ratio * t_seg
            if lid != main.lesion_id and not fragment:
                review[int(lid)] = (f"beside the {side} kidney, SUVmax {row.suv_max:.1f} above a parenchyma "
                                    f"fragment's ({p.kidney_fragment_ratio:g} x the threshold {t_seg:.1f}): "
                                    "a node, a kidney lesion or the renal pelvis")
                hot[int(lid)] = main
                continue
            if lid != main.lesion_id and row.volume_ml >= p.kidney_node_min_ml:
                # parenchyma breaks into curved plates (STS_001: axis ratios 1.6-3.9); a node is a ball
                w = np.sqrt(_moments(labels, row, spacing)[0])
                if w[2] <= p.kidney_node_max_axis_ratio * w[0]:
                    review[int(lid)] = (f"beside the {side} kidney, round like a node (axis ratio {w[2] / w[0]:.2f} "
                                        f"<= {p.kidney_node_max_axis_ratio:g}, {row.volume_ml:.1f} mL)")
                    continue
            if row.suv_max > p.kidney_piece_max_ratio * main.suv_max:
                review[int(lid)] = (f"beside the {side} kidney but hotter than its largest piece (SUVmax "
                                    f"{row.suv_max:.1f} > {p.kidney_piece_max_ratio:g} x {main.suv_max:.1f}): "
                                    "renal pelvis or a kidney lesion")
                hot[int(lid)] = main
                continue
            rule = "kidney_main" if lid == main.lesion_id else "kidney_piece"
            organ[int(lid)] = ("kidney", rule, f"{side} kidney: paired posterior-lateral components between heart "
                               "and bladder" + ("" if lid == main.lesion_id else
                                                f", {np.hypot(row.x - main.x, row.y - main.y):.0f} mm from its "
                                                "largest piece"))
    return hot


def _renal_pelves(feats, lm, p, organ, review, hot):
    """A hot piece beside a kidney (kept for review by :func:`_kidneys`) is the renal pelvis when it lies at the
    hilum — medial to the kidney's largest piece, at its depth (within ``renal_pelvis_dy_mm``) and level
    (within ``renal_pelvis_dz_mm``) — and a ureter was found on its side: urine, not a lesion."""
    ureter_sides = {np.sign(feats.loc[lid].dx) for lid, v in organ.items() if v[0] == "ureter"}
    for lid, main in hot.items():
        row = feats.loc[lid]
        k = int(row["slice"])
        hilum = (abs(row.x - lm.trunk_x_mm[k]) < abs(main.x - lm.trunk_x_mm[k])
                 and abs(row.y - main.y) <= p.renal_pelvis_dy_mm and abs(row.z - main.z) <= p.renal_pelvis_dz_mm)
        if hilum and np.sign(row.dx) in ureter_sides:
            review.pop(lid, None)
            organ[lid] = ("renal_pelvis", "hilum_with_ureter", f"hot piece medial to the kidney's largest piece "
                          f"(SUVmax {row.suv_max:.1f}), with a ureter found on the same side")


def _z_extent(pet, row) -> tuple[float, float]:
    """LPS z (mm) of the lowest and highest voxel centre of a component's box."""
    z = [pet.index_to_world(np.asarray(row.lo, float))[2], pet.index_to_world(np.asarray(row.hi, float) - 1)[2]]
    return min(z), max(z)


def _neck(feats, pet, lm, p, organ, review):
    """Salivary glands, tonsils, larynx/pharynx: small, moderately avid head components well below the brain,
    paired left-right (glands, tonsils) or on the mid-line in front of the neck's centre (larynx, pharynx,
    tongue base)."""
    brain = [feats.loc[lid] for lid, v in organ.items() if v[0] == "brain"]
    z_floor = min(_z_extent(pet, r)[0] for r in brain) - p.neck_below_brain_mm
    head = feats[feats["head"].astype(bool) & (feats.dx.abs() <= 1.0) & ~feats.index.isin(list(organ))]
    head = head[[_z_extent(pet, r)[1] <= z_floor for _, r in head.iterrows()]]
    if head.empty:
        return
    off = head.x - lm.trunk_x_mm[head["slice"].to_numpy()]
    small = (head.volume_ml <= p.neck_max_ml) & (head.suv_max <= p.neck_max_suv)
    for lid, row in head.iterrows():
        if not small[lid]:
            review[int(lid)] = (f"in the neck below the brain but larger or hotter than a gland "
                                f"({row.volume_ml:.1f} mL, SUVmax {row.suv_max:.1f}; limits {p.neck_max_ml:g} mL, "
                                f"{p.neck_max_suv:g})")
            continue
        o = off[lid]
        mates = head[small & (head.index != lid) & ((off + o).abs() <= p.neck_pair_mm)
                     & ((head.y - row.y).abs() <= p.neck_pair_mm) & ((head.z - row.z).abs() <= p.neck_pair_mm)
                     & (np.maximum(head.suv_max, row.suv_max) <= p.neck_pair_suv_ratio
                        * np.minimum(head.suv_max, row.suv_max))]
        if len(mates) and abs(o) >= p.neck_pair_mm / 2:
            name = "salivary_gland" if abs(o) >= p.salivary_min_offset_mm else "tonsil"
            organ[int(lid)] = (name, "neck_pair", f"paired with a mirror component across the mid-line "
                               f"({abs(o):.0f} mm off it, mirror within {p.neck_pair_mm:g} mm), "
                               f"{row.volume_ml:.2f} mL, "
                               f"SUVmax {row.suv_max:.1f} <= {p.neck_max_suv:g}")
        elif abs(o) <= p.neck_midline_mm and row.dy <= p.neck_midline_dy:
            organ[int(lid)] = ("larynx_pharynx", "neck_midline", f"{abs(o):.0f} mm from the mid-line (<= "
                               f"{p.neck_midline_mm:g}), in front of the neck's centre, {row.volume_ml:.2f} mL, "
                               f"SUVmax {row.suv_max:.1f} <= {p.neck_max_suv:g}")
        else:
            review[int(lid)] = (f"in the neck, {abs(o):.0f} mm off the mid-line with no mirror partner: a node or a "
                                "salivary gland")


def _injection_site(feats, lm, p, organ, review):
    """The injection site: small components in one arm (outside the trunk piece by >= ``arm_out_mm``, not in
    the legs), each <= ``injection_max_ml`` and together <= ``injection_max_total_ml`` (a focus and the trail
    along the vein). Components in both arms, or larger, are kept for review."""
    k = feats["slice"].to_numpy()
    out = (feats.x - lm.trunk_x_mm[k]).abs() - lm.trunk_width_mm[k] / 2.0
    arm = feats[(out >= p.arm_out_mm).to_numpy() & ~feats["legs"] & ~feats.index.isin(list(organ))]
    if arm.empty:
        return
    side = np.sign(arm.x - lm.trunk_x_mm[arm["slice"].to_numpy()])
    one_arm = side.nunique() == 1
    total = float(arm.volume_ml.sum())
    for lid, row in arm.iterrows():
        if one_arm and row.volume_ml <= p.injection_max_ml and total <= p.injection_max_total_ml:
            organ[int(lid)] = ("injection_site", "one_arm_small", f"in one arm, {out[lid]:.0f} mm outside the "
                               f"trunk, {row.volume_ml:.2f} mL (arm total {total:.2f} mL <= "
                               f"{p.injection_max_total_ml:g})")
        else:
            review[int(lid)] = ("in an arm; not the injection-site pattern (" + ("both arms" if not one_arm else
                                f"{row.volume_ml:.1f} mL, arm total {total:.1f} mL") + "): a lesion?")


def _moments(labels, row, spacing) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending, mm²) and eigenvectors (columns, array axes) of a component's voxel positions'
    covariance; ones and the identity for fewer than 3 voxels."""
    m = labels[_box(row, labels.shape)] == row.lesion_id
    pts = np.argwhere(m) * np.asarray(spacing, float)
    if len(pts) < 3:
        return np.ones(3), np.eye(3)
    w, v = np.linalg.eigh(np.cov(pts.T))
    return np.maximum(w, 1e-9), v


def _tube(labels, row, spacing, axis) -> tuple[float, float, float]:
    """(elongation, width mm, |cos| of the long axis with z) of a component from its voxels' second moments:
    elongation = sqrt(largest / second eigenvalue), width = 4 × sqrt(second eigenvalue) (a uniform disc's
    diameter)."""
    w, v = _moments(labels, row, spacing)
    return float(np.sqrt(w[2] / w[1])), float(4.0 * np.sqrt(w[1])), float(abs(v[axis, 2]))


def _ureters(feats, labels, pet, p, organ, review, heart_z, bladder_z):
    """Ureters: thin tubes running along z between the kidneys and the bladder (urine: any SUV)."""
    axis = int(np.argmax(np.abs(np.asarray(pet.direction)[2])))
    kid = [feats.loc[lid].z for lid, v in organ.items() if v[0] == "kidney"]
    top = max(kid) if kid else heart_z - 100.0 if heart_z is not None else np.inf
    low = (min(_z_extent(pet, feats.loc[lid])[0] for lid, v in organ.items() if v[0] == "bladder")
           if bladder_z is not None else -np.inf)
    cand = feats[~feats["head"].astype(bool) & ~feats["legs"] & ~feats.index.isin(list(organ))
                 & (feats.z <= top) & (feats.z >= low) & (feats.dx.abs() <= p.ureter_dx)
                 & (feats.volume_ml <= p.ureter_max_ml)]
    for lid, row in cand.iterrows():
        elong, width, zcos = _tube(labels, row, pet.spacing, axis)
        if elong >= p.ureter_min_elongation and width <= p.ureter_max_width_mm and zcos >= p.ureter_min_z_cos:
            organ[int(lid)] = ("ureter", "ureter_tube", f"a tube along z between kidneys and bladder (elongation "
                               f"{elong:.1f} >= {p.ureter_min_elongation:g}, width {width:.0f} mm <= "
                               f"{p.ureter_max_width_mm:g}, cos to z {zcos:.2f})")


def _saddle(m: np.ndarray, v: np.ndarray, seed: tuple, target: np.ndarray, peak: float) -> float:
    """Highest level t at which ``seed`` is connected to a voxel of ``target`` through ``m & (v >= t)``
    (bisection over the SUV values of ``m``); ``peak`` when they are connected at the seed's own level."""
    levels = np.unique(v[m])
    levels = levels[levels <= peak]
    structure = np.ones((3, 3, 3))

    def joined(t):
        lab, _ = ndimage.label(m & (v >= t), structure=structure)
        return bool(np.any(lab[target] == lab[seed]))

    lo, hi = 0, len(levels) - 1                  # joined(levels[0]) holds: the component is connected
    if joined(levels[hi]):
        return peak
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if joined(levels[mid]) else (lo, mid)
    return float(levels[lo])


def _split_lesions(m: np.ndarray, v: np.ndarray, spacing, name: str, suv_max: float, voxel_ml: float,
                   p: PhysiologyParams) -> list[np.ndarray]:
    """Lesions inside an organ's component (voxel masks of the component's box); see the module docstring.

    *Own maxima*: the organ's body is the myocardium's wall (within ``split_wall_mm`` of its cold cavity),
    the bladder's bright core (≥ ``bladder_core_fraction`` × its SUVmax), or the solid ellipsoid of the
    component's second moments for the brain (whole: the cortex has maxima of its own) and the kidney (shrunk
    to ``kidney_core_fraction`` of its axes, which keeps the renal pelvis and leaves a merged node's inner half
    outside, so a saddle lies below its peak); a regional maximum outside it (≥ ``split_min_suv``, at most
    ``split_max_peaks``, highest first) whose peak rises above the saddle joining it to the body by ≥
    ``split_prominence`` × the peak is a lesion's; each voxel goes to the body or the maximum it climbs to
    (marker watershed), and the maxima's regions of ≥ ``split_min_ml`` are lesions. *Bumps* (the bladder,
    whose urine is uniform): a node pressed against it can be a shoulder on its blurred edge, with no maximum
    of its own; the parts of the component farther than ``split_margin_mm`` from the core (≥
    ``core_fraction`` × SUVmax) holding ≥ ``split_tip_min_ml``, grown back towards the core by
    ``split_margin_mm - split_edge_mm``, are lesions. The organ's own blurred edge reaches about one PSF FWHM
    beyond its core, so it leaves no such part.
    """
    if name == "myocardium":
        filled = np.zeros(m.shape, bool)
        for axis in range(3):
            filled |= _fill_holes_slicewise(m, axis)
        cavity = filled & ~m
        if not cavity.any():
            return []
        body = m & (ndimage.distance_transform_edt(~cavity, sampling=spacing) <= p.split_wall_mm)
        return _own_maxima(m, v, body, voxel_ml, p)
    if name in ("kidney", "brain"):
        # the organ's own body: inside the solid ellipsoid of the component's second moments (a uniform
        # ellipsoid's surface lies at Mahalanobis distance sqrt(5)); the renal pelvis and the cortex lie within,
        # a node beside a kidney or a skull lesion pressed on the brain outside
        pts = np.argwhere(m) * np.asarray(spacing, float)
        if len(pts) < 10:
            return []
        cov_inv = np.linalg.pinv(np.cov(pts.T))
        d = pts - pts.mean(axis=0)
        # the kidney's core is its ellipsoid shrunk to kidney_core_fraction: the node's inner half would lie
        # in the whole ellipsoid (no saddle below it); the brain's cortex needs the whole one
        frac = p.kidney_core_fraction if name == "kidney" else 1.0
        inside = np.einsum("ij,jk,ik->i", d, cov_inv, d) <= 5.0 * frac ** 2
        body = np.zeros(m.shape, bool)
        body[tuple(np.argwhere(m)[inside].T)] = True
        return _own_maxima(m, v, body, voxel_ml, p)
    if name != "bladder":
        return []
    out = _own_maxima(m, v, m & (v >= p.bladder_core_fraction * suv_max), voxel_ml, p)
    return out + _bumps(m, v, m & (v >= p.core_fraction * suv_max), out, spacing, voxel_ml, p)


def _bumps(m, v, core, taken_parts, spacing, voxel_ml, p) -> list[np.ndarray]:
    """Parts of the component ``m`` farther than ``split_margin_mm`` from the organ's ``core`` holding >=
    ``split_tip_min_ml``, grown back towards the core down to ``split_edge_mm`` from it (see
    :func:`_split_lesions`)."""
    taken = np.zeros(m.shape, bool)
    for part in taken_parts:
        taken |= part
    core = core & ~taken
    dist = ndimage.distance_transform_edt(~core, sampling=spacing)
    far, n = ndimage.label(m & ~taken & (dist > p.split_margin_mm), structure=np.ones((3, 3, 3)))
    out = []
    for k in range(1, n + 1):
        tip = far == k
        if tip.sum() * voxel_ml < p.split_tip_min_ml:
            continue
        # the bump: its tip grown back towards the core, down to split_edge_mm from it
        grow = p.split_margin_mm - p.split_edge_mm
        part = (m & ~taken & (dist > p.split_edge_mm)
                & (ndimage.distance_transform_edt(~tip, sampling=spacing) <= grow))
        if part.sum() * voxel_ml >= p.split_min_ml and v[part].max() >= p.split_min_suv:
            out.append(part)
    return out


def _own_maxima(m: np.ndarray, v: np.ndarray, body: np.ndarray, voxel_ml: float, p) -> list[np.ndarray]:
    """Regions of the component ``m`` around maxima outside the organ's ``body`` that stand on their own
    (see :func:`_split_lesions`)."""
    if not body.any():
        return []
    peaks = m & ~body & (v == ndimage.maximum_filter(np.where(m, v, -np.inf), size=3)) & (v >= p.split_min_suv)
    seeds = np.argwhere(peaks)
    order = np.argsort(v[tuple(seeds.T)])[::-1][:p.split_max_peaks]
    markers = np.zeros(m.shape, np.uint32)
    markers[body] = 1
    n = 1
    for i in order:
        seed = tuple(seeds[i])
        if markers[seed]:
            continue
        peak = float(v[seed])
        saddle = _saddle(m, v, seed, body, peak)
        if peak - saddle < p.split_prominence * peak:
            continue
        lab, _ = ndimage.label(m & (v > saddle), structure=np.ones((3, 3, 3)))
        if np.any(markers[lab == lab[seed]] > 1):      # the same node, seen from another of its maxima
            continue
        n += 1
        markers[seed] = n
    if n == 1:
        return []
    import SimpleITK as sitk

    relief = np.where(m, -v, np.float32(1e6)).astype(np.float32)
    ws = sitk.GetArrayFromImage(sitk.MorphologicalWatershedFromMarkers(
        sitk.GetImageFromArray(relief), sitk.GetImageFromArray(markers), markWatershedLine=False,
        fullyConnected=True))
    ws = np.where(m, ws, 0)
    return [ws == k for k in range(2, n + 1) if np.count_nonzero(ws == k) * voxel_ml >= p.split_min_ml]


def _apply(pet: Volume, labels: np.ndarray, feats, organ, p):
    """Split lesions off organ components, remove the organs, relabel.

    Returns (kept labels, excluded labels, table, lut old → new label, review of the split-off parts)."""
    excluded = np.zeros(labels.shape, np.int32)
    if not organ:                                       # nothing to take out: the labels as they are
        n = int(feats.lesion_id.max()) if len(feats) else 0
        return labels, excluded, pd.DataFrame([], columns=TABLE_COLUMNS), np.arange(n + 1), {}
    spacing = np.asarray(pet.spacing)
    suv = np.asarray(pet.array)
    rows, extra, review = [], [], {}
    for cid, (lid, (name, rule, reason)) in enumerate(sorted(organ.items()), start=1):
        f = feats.loc[lid]
        box = _box(f, labels.shape)
        m = labels[box] == lid
        v = suv[box]
        keep_parts = _split_lesions(m, v, spacing, name, float(f.suv_max), pet.voxel_volume_ml, p)
        organ_mask = m.copy()
        for part in keep_parts:
            organ_mask &= ~part
            how = "a bump on its edge" if name == "bladder" else "a maximum of its own"
            extra.append((box, part, f"split off the {name} ({how}); "
                                     "check it is a lesion"))
        sub = excluded[box]
        sub[organ_mask] = cid
        vals = v[organ_mask]
        idx = np.argwhere(organ_mask) + [b.start for b in box]
        cen = pet.index_to_world(idx.mean(axis=0))
        rows.append({"component_id": cid, "organ": name, "volume_ml": organ_mask.sum() * pet.voxel_volume_ml,
                     "suv_max": float(vals.max()), "centroid_x_mm": cen[0], "centroid_y_mm": cen[1],
                     "centroid_z_mm": cen[2], "rule": rule, "reason": reason})
    drop = np.zeros(int(labels.max()) + 1 if labels.size else 1, bool)
    drop[list(organ)] = True
    lut = np.zeros(drop.size, np.int32)
    present = np.zeros(drop.size, bool)
    present[np.asarray(feats.lesion_id, int) if len(feats) else []] = True
    keep = present & ~drop
    lut[keep] = np.arange(1, keep.sum() + 1, dtype=np.int32)
    kept = lut[labels]
    nxt = int(keep.sum())
    for box, part, why in extra:
        nxt += 1
        kept[box][part] = nxt
        review[nxt] = why
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    return kept, excluded, table, lut, review
