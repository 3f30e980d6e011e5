"""CT facts on the PET grid that locate things: body outline, lungs, bone, marrow, the body's mid-line."""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass

import numpy as np

from carpet.anatomy._morphology import (AIR_HU, _axial_axis, _fill_holes_slicewise, _largest_component,
                                        _linear_onto, _masked_mean, _remove_small, _voxel_coords_mm)
from carpet.anatomy.bone import BoneParams, _denoise_ct, ct_bone, ct_bone_on, marrow_mask
from carpet.volume import Volume


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
