"""Plausibility checks of inputs that parse but cannot be what the user meant.

Each check refuses (:class:`~carpet.errors.InputError`) when no trustworthy number can come out, and
warns (``warnings.warn``, which ``carpet quantify`` prints and records in ``summary.json``) when the
number can be right but deserves a look. Every message names the file and the problem.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np

from carpet.errors import InputError
from carpet.volume import Volume

#: Above this SUV a PET is probably not in SUV at all (Bq/mL given as SUV): FDG bladders reach 60-100.
SUV_IMPLAUSIBLE = 1000.0
#: Voxels below this SUV are not reconstruction noise around 0 but a sign error or a wrong rescale.
SUV_NEGATIVE_TOL = -1.0


def check_pet(pet: Volume) -> None:
    """Refuse a 'PET' that is another modality or holds no positive value; warn about negative or
    implausibly high SUVs.

    Parameters
    ----------
    pet : Volume
        The image read as PET (``meta['modality']``, ``meta['units']``, ``meta['source']``).
    """
    source = pet.meta.get("source")
    modality, units = pet.meta.get("modality"), pet.meta.get("units")
    if modality not in (None, "PT") or units == "HU":
        raise InputError(f"this is a {modality or units} image (Modality {modality!r}, units {units!r}), "
                         "not a PET: its values are not SUVs", source=source,
                         where="Modality (0008,0060)" if modality else None,
                         hint="give the PET series as PET and the CT with --ct")
    arr = np.asarray(pet.array)
    if arr.size == 0:
        raise InputError("the PET holds no voxels", source=source)
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= 0 < -lo:
        raise InputError(f"every voxel is ≤ 0 (min {lo:.3g}): not a PET in SUV (sign flipped, or a "
                         "negative RescaleSlope?)", source=source)
    if lo < SUV_NEGATIVE_TOL:
        n = int(np.count_nonzero(arr < SUV_NEGATIVE_TOL))
        warnings.warn(f"{source}: {n} voxel(s) below SUV {SUV_NEGATIVE_TOL:g} (min {lo:.3g}); PET "
                      "activity is not negative: check the reconstruction or the rescale", stacklevel=2)
    if hi > SUV_IMPLAUSIBLE:
        warnings.warn(f"{source}: SUVmax {hi:.3g} is above {SUV_IMPLAUSIBLE:g}, implausible for FDG: "
                      "is the image in Bq/mL rather than SUV?", stacklevel=2)


def _corners_mm(vol: Volume) -> np.ndarray:
    """World coordinates (LPS mm) of the 8 outer corners of the voxel grid."""
    n = np.asarray(vol.shape, dtype=float)
    corners = np.array(list(itertools.product(*[(-0.5, m - 0.5) for m in n])))
    return vol.index_to_world(corners)


def overlap_fraction(image: Volume, reference: Volume) -> float:
    """Fraction of ``reference``'s field of view (bounding box, LPS mm) that ``image`` covers."""
    a, b = _corners_mm(image), _corners_mm(reference)
    lo = np.maximum(a.min(0), b.min(0))
    hi = np.minimum(a.max(0), b.max(0))
    inter = np.prod(np.clip(hi - lo, 0, None))
    return float(inter / np.prod(b.max(0) - b.min(0)))


def check_overlap(image: Volume, reference: Volume, what: str) -> None:
    """Refuse an image (CT, mask) whose field of view does not meet the PET's at all."""
    if overlap_fraction(image, reference) <= 0:
        lo, hi = _corners_mm(image).min(0), _corners_mm(image).max(0)
        rlo, rhi = _corners_mm(reference).min(0), _corners_mm(reference).max(0)
        raise InputError(f"the {what} does not overlap the PET: it spans {_box(lo, hi)}, the PET "
                         f"{_box(rlo, rhi)} (LPS mm); a different patient position or frame of "
                         "reference?", source=image.meta.get("source"))


def check_mask_kept(before_ml: float, after_ml: float, source, what: str) -> None:
    """Refuse a mask none of whose voxels lands in the PET; warn when a tenth or more is lost
    (volumes, not voxel counts, as the mask may be on another grid)."""
    if before_ml > 0 and after_ml == 0:
        raise InputError(f"none of the {what}'s voxels ({before_ml:.3g} mL) lies in the PET's field of "
                         "view", source=source,
                         hint="is it the mask of this study, in the PET's frame of reference?")
    if before_ml > 0 and after_ml < 0.9 * before_ml:
        warnings.warn(f"{source}: part of the {what} lies outside the PET's field of view "
                      f"({before_ml:.3g} mL on its own grid, {after_ml:.3g} mL on the PET grid)",
                      stacklevel=2)


def _box(lo, hi) -> str:
    return " × ".join(f"[{a:.0f}, {b:.0f}]" for a, b in zip(lo, hi))
