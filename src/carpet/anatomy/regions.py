"""Coarse lesion region for the tables studies print (Moffitt: skin/soft tissue, nodal regions, lung/pleura,
liver, other organs): ``head_neck``, ``thorax`` (``thorax_lung``, ``thorax_pleura``,
``thorax_mediastinum_hilum`` with a CT), ``abdomen``, ``pelvis``, ``extremities``, ``skin_subcutaneous``,
``unknown`` when a landmark the decision needs is missing. Rules (version
:data:`RULES_VERSION`); no library does this, written from the landmarks of :mod:`carpet.anatomy.landmarks`.

Order of the tests, per lesion centroid:

1. no body landmarks (or a body shorter than the physiology rules' ``min_fov_mm``) → ``unknown``;
2. lateral to the trunk's in-slice piece (``|dx| > 1``: an arm) or in the legs → ``extremities``; the legs are
   the caudal slices where the body's depth on the mid-line falls below ``leg_depth_ratio`` of the trunk's
   (thighs touching at the groin) or the trunk piece leaves the mid-line (the legs apart);
3. within ``skin_mm`` of the body surface → ``skin_subcutaneous``;
4. in the head (the narrow cranial end) → ``head_neck``;
5. the trunk's levels: the diaphragm is the CT's lung base, else ``heart_to_diaphragm_mm`` below the
   myocardium's centroid (PET); the pelvic inlet is ``bladder_to_inlet_mm`` above the bladder's centroid.
   Above the diaphragm → ``thorax`` (with CT lungs: inside a lung → ``thorax_lung``, within
   ``pleura_mm`` of a lung's outer boundary → ``thorax_pleura``, else ``thorax_mediastinum_hilum``); below
   the pelvic inlet → ``pelvis``; between → ``abdomen``; a level needed but not found → ``unknown``.

Liver and spleen sub-regions need organ masks (a segmentation model's); they are not guessed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from carpet.anatomy.landmarks import BodyLandmarks, leg_slices
from carpet.volume import Volume

RULES_VERSION = "REGION_2026.2"
REGIONS = ("head_neck", "thorax", "thorax_lung", "thorax_pleura", "thorax_mediastinum_hilum", "abdomen",
           "pelvis", "extremities", "skin_subcutaneous", "unknown")
PARAMS = {"skin_mm": 12.0, "leg_depth_ratio": 0.88, "heart_to_diaphragm_mm": 60.0, "bladder_to_inlet_mm": 100.0,
          "pleura_mm": 8.0}


def lesion_regions(pet: Volume, table: pd.DataFrame, lm: BodyLandmarks, levels: dict | None = None,
                   lungs: np.ndarray | None = None, usable: bool = True) -> pd.Series:
    """Region of every lesion of ``table`` (``centroid_x_mm``, ``centroid_y_mm``, ``centroid_z_mm``).

    Parameters
    ----------
    pet : Volume
        The PET (its grid places the centroids).
    table : DataFrame
    lm : BodyLandmarks
    levels : dict, optional
        ``heart_z_mm`` / ``bladder_z_mm`` from :class:`carpet.anatomy.physiology.Physiology`.
    lungs : ndarray of bool, optional
        CT lungs on the PET grid (:func:`carpet.anatomy.landmarks.ct_tissue_on`).
    usable : bool
        False when the landmarks cannot place the body (a short field of view): every region ``unknown``.
    """
    n = len(table)
    if n == 0:
        return pd.Series([], dtype=object)
    if not usable or not lm.has_body.any():
        return pd.Series(["unknown"] * n, index=table.index, dtype=object)
    levels = levels or {}
    xyz = table[["centroid_x_mm", "centroid_y_mm", "centroid_z_mm"]].to_numpy(float)
    ijk = np.round(pet.world_to_index(xyz)).astype(int)
    ijk = np.clip(ijk, 0, np.asarray(pet.shape) - 1)
    k = lm.slice_of(xyz[:, 2])
    with np.errstate(invalid="ignore", divide="ignore"):
        dx = (xyz[:, 0] - lm.trunk_x_mm[k]) / (lm.trunk_width_mm[k] / 2.0)
    depth = lm.depth_at(ijk)
    legs = leg_slices(lm, PARAMS["leg_depth_ratio"])[k]
    z_diaphragm = None
    lung_ok = lungs is not None and lungs.any()
    if lung_ok:
        # the lungs' extent from their projections on the array axes (no whole-grid coordinate arrays)
        ext = []
        for a in range(3):
            occupied = np.flatnonzero(lungs.any(axis=tuple(b for b in range(3) if b != a)))
            ext.append((occupied[0], occupied[-1]))
        corners = pet.index_to_world(np.array([[ext[0][i], ext[1][j], ext[2][k]] for i in (0, 1)
                                               for j in (0, 1) for k in (0, 1)], float))
        z_diaphragm = float(corners[:, 2].min())
        x_lo, x_hi = float(corners[:, 0].min()), float(corners[:, 0].max())
    elif levels.get("heart_z_mm") is not None:
        z_diaphragm = levels["heart_z_mm"] - PARAMS["heart_to_diaphragm_mm"]
    z_inlet = None if levels.get("bladder_z_mm") is None else levels["bladder_z_mm"] + PARAMS["bladder_to_inlet_mm"]
    if lung_ok:
        in_lung = lungs[tuple(ijk.T)]
        # pleura: outside the lung, within pleura_mm of lung voxels, in the lateral half of the lungs' span
        # (the mediastinum lies between them); the distance is looked for in a box around the centroid only
        reach = [int(np.ceil(PARAMS["pleura_mm"] / s)) + 1 for s in pet.spacing]
        near = np.zeros(n, bool)
        for i, c in enumerate(ijk):
            box = tuple(slice(max(0, ci - r), ci + r + 1) for ci, r in zip(c, reach))
            pts = np.argwhere(lungs[box]) + [b.start for b in box]
            near[i] = pts.size > 0 and np.min(np.linalg.norm((pts - c) * pet.spacing, axis=1)) <= PARAMS["pleura_mm"]
        half = (x_hi - x_lo) / 4.0
        lateral = (xyz[:, 0] < x_lo + half) | (xyz[:, 0] > x_hi - half)
    out = []
    for i in range(n):
        if np.isnan(dx[i]):
            out.append("unknown")
        elif abs(dx[i]) > 1.0 or legs[i]:
            out.append("extremities")
        elif depth[i] <= PARAMS["skin_mm"]:
            out.append("skin_subcutaneous")
        elif lm.head[k[i]]:
            out.append("head_neck")
        elif z_diaphragm is not None and xyz[i, 2] >= z_diaphragm:
            if not lung_ok:
                out.append("thorax")
            elif in_lung[i]:
                out.append("thorax_lung")
            elif near[i] and lateral[i]:
                out.append("thorax_pleura")
            else:
                out.append("thorax_mediastinum_hilum")
        elif z_inlet is not None and xyz[i, 2] < z_inlet:
            out.append("pelvis" if z_diaphragm is not None or levels.get("bladder_z_mm") is not None else "unknown")
        elif z_diaphragm is not None and z_inlet is not None:
            out.append("abdomen")
        else:
            out.append("unknown")
    return pd.Series(out, index=table.index, dtype=object)


def provenance_dict() -> dict:
    return {"rules": "carpet lesion-region rules (docs/physiology.md)", "version": RULES_VERSION,
            "thresholds": dict(PARAMS)}
