"""Coarse lesion region for the tables studies print (Moffitt: skin/soft tissue, nodal regions, lung/pleura,
liver, other organs): ``head_neck``, ``thorax`` (``thorax_lung``, ``thorax_pleura``,
``thorax_mediastinum_hilum`` with a CT), ``abdomen``, ``pelvis``, ``extremities``, ``skin_subcutaneous``,
``unknown`` when a landmark the decision needs is missing. Rules ``REGION_RULES`` (version
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

RULES_VERSION = "REGION_2026.1"
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
    from scipy import ndimage

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
        z = np.asarray(pet.index_to_world(np.argwhere(lungs)))[:, 2]
        z_diaphragm = float(z.min())
    elif levels.get("heart_z_mm") is not None:
        z_diaphragm = levels["heart_z_mm"] - PARAMS["heart_to_diaphragm_mm"]
    z_inlet = None if levels.get("bladder_z_mm") is None else levels["bladder_z_mm"] + PARAMS["bladder_to_inlet_mm"]
    if lung_ok:
        in_lung = lungs[tuple(ijk.T)]
        # the lungs' outer boundary: lung voxels next to the body wall (not the mediastinum) lie where the
        # filled lung region meets the body's outer part; approximated by the distance to the lung surface
        # on the side away from the mid-line
        dist = ndimage.distance_transform_edt(~lungs, sampling=pet.spacing)[tuple(ijk.T)]
        x_mid = np.nanmedian(lm.trunk_x_mm[lm.has_body & ~lm.head])
        lung_x = [np.asarray(pet.index_to_world(np.argwhere(lungs)))[:, 0]]
        lateral = np.abs(xyz[:, 0] - x_mid) > 0.5 * np.abs(np.percentile(lung_x[0], 90) - x_mid)
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
            elif dist[i] <= PARAMS["pleura_mm"] and lateral[i]:
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
    return {"rules": "REGION_RULES", "version": RULES_VERSION, "thresholds": dict(PARAMS)}
