"""A baseline and follow-up phantom of one patient, with the truth of every lesion match.

The follow-up is the same analytic patient (same seed, same anatomy) scanned again: persisting lesions
keep their centres and shrink (radius and SUV scaled), some baseline lesions resolve, new lesions
appear where there was none. The patient then lies differently in the scanner: the whole follow-up
(PET, CT, lesion labels) is moved rigidly — a rotation about the field-of-view centre and a shift —
and resampled with SimpleITK onto a field of view grown by ``pad_mm`` on every side, so that every
lesion stays in view. A baseline point ``p`` (LPS mm) is at ``R p + t`` in the follow-up.

Truth (``PhantomPair.truth``): for every follow-up lesion its baseline lesion id (None when new),
and the ids of the resolved baseline lesions, in the label ids of the phantoms' ``lesion_labels``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from carpet.errors import InputError
from carpet.synth.phantom import LesionSpec, Phantom, PhantomSpec, make_phantom
from carpet.volume import Volume

__all__ = ["PhantomPair", "make_phantom_pair", "move_phantom", "rotation_matrix"]


@dataclass(frozen=True, eq=False)
class PhantomPair:
    """Baseline and (moved) follow-up phantoms and the truth of each lesion match.

    Attributes
    ----------
    baseline, followup : Phantom
        ``followup.pet`` / ``.ct`` / ``.lesion_labels`` are the moved images on the padded grid.
    truth : dict
        ``matches``: {follow-up id: baseline id or None (new)}; ``resolved``: baseline ids;
        ``rotation_deg``, ``shift_mm``: the patient motion (baseline point p → R p + t).
    """

    baseline: Phantom
    followup: Phantom
    truth: dict[str, Any]


def rotation_matrix(rotation_deg) -> np.ndarray:
    """R = Rz · Ry · Rx for rotations (degrees) about the LPS x, y and z axes."""
    ax, ay, az = (math.radians(float(a)) for a in rotation_deg)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _padded(vol: Volume, pad_mm: float) -> Volume:
    """An empty volume on ``vol``'s grid grown by ``pad_mm`` (whole voxels) on every side."""
    pad = np.ceil(pad_mm / np.asarray(vol.spacing)).astype(int)
    shape = tuple(int(n + 2 * p) for n, p in zip(vol.shape, pad))
    origin = vol.index_to_world(-pad.astype(float))
    return Volume(np.zeros(shape, np.uint8), vol.spacing, tuple(origin), vol.direction)


def move_phantom(phantom: Phantom, rotation_deg=(0.0, 0.0, 0.0), shift_mm=(0.0, 0.0, 0.0),
                 pad_mm: float = 48.0) -> Phantom:
    """The phantom's patient rotated about the world origin and shifted (p → R p + t), resampled onto
    its grid grown by ``pad_mm``: PET linear, CT linear (air outside), labels nearest.

    The organ masks are not moved (they are dropped), the physiology labels are (nearest); the truth keeps the
    baseline-frame geometry.
    """
    import SimpleITK as sitk

    rot = rotation_matrix(rotation_deg)
    shift = np.asarray(shift_mm, dtype=float)
    if rot.shape != (3, 3) or shift.shape != (3,):
        raise InputError(f"rotation_deg and shift_mm take 3 numbers each, got {rotation_deg}, {shift_mm}")
    # Resampling maps output (follow-up) points q to input (unmoved) points p = R^T (q - t).
    inverse = sitk.AffineTransform(3)
    inverse.SetMatrix(tuple(rot.T.ravel()))
    inverse.SetTranslation(tuple(-(rot.T @ shift)))
    ref = _padded(phantom.pet, pad_mm).to_sitk()
    ref_ct = _padded(phantom.ct, pad_mm).to_sitk()

    def moved(vol: Volume, grid, interp, default, dtype) -> Volume:
        img = sitk.Resample(vol.to_sitk(), grid, inverse, interp, float(default))
        arr = sitk.GetArrayFromImage(img).transpose(2, 1, 0).astype(dtype)
        return Volume(arr, img.GetSpacing(), img.GetOrigin(), np.reshape(img.GetDirection(), (3, 3)),
                      dict(vol.meta))

    return replace(phantom,
                   pet=moved(phantom.pet, ref, sitk.sitkLinear, 0.0, np.float32),
                   ct=moved(phantom.ct, ref_ct, sitk.sitkLinear, -1000, np.int16),
                   lesion_labels=moved(phantom.lesion_labels, ref, sitk.sitkNearestNeighbor, 0, np.int32),
                   physiology_labels=None if phantom.physiology_labels is None else moved(
                       phantom.physiology_labels, ref, sitk.sitkNearestNeighbor, 0, np.int32),
                   organs={},
                   truth={**phantom.truth, "motion": {"rotation_deg": [float(a) for a in rotation_deg],
                                                      "shift_mm": shift.tolist(), "pad_mm": pad_mm}})


def make_phantom_pair(spec: PhantomSpec | None = None, *, rotation_deg=(0.0, 0.0, 0.0),
                      shift_mm=(0.0, 0.0, 0.0), n_resolved: int = 2, new_lesions=None,
                      shrink_radius: float = 0.85, shrink_suv: float = 0.7, pad_mm: float = 48.0,
                      seed: int = 0) -> PhantomPair:
    """Build a baseline phantom and its follow-up (see the module docstring).

    Parameters
    ----------
    spec : PhantomSpec, optional
        The baseline (default :meth:`PhantomSpec.small` with ``seed``).
    rotation_deg, shift_mm : 3 floats
        Patient motion at follow-up (degrees about x, y, z; mm).
    n_resolved : int
        Baseline lesions that resolve (the last ones of a seeded shuffle).
    new_lesions : sequence of LesionSpec, optional
        Lesions appearing at follow-up (placed automatically, clear of every baseline lesion);
        default one intramedullary (spine) and one extramedullary.
    shrink_radius, shrink_suv : float
        Scale of the persisting lesions' radius and SUV (SUV kept ≥ 4.5 so SUV ≥ 4 still finds them).
    """
    spec = spec or PhantomSpec.small(seed=seed)
    new_lesions = tuple(new_lesions if new_lesions is not None else
                        (LesionSpec("intramedullary", 6.0, 7.0, site="spine"),
                         LesionSpec("extramedullary", 7.0, 8.0)))
    n_base = len(spec.lesions)
    if not 0 <= n_resolved <= n_base:
        raise InputError(f"n_resolved must be between 0 and {n_base}, got {n_resolved}")
    # One placement of baseline and new lesions together, so that new ones keep clear of every
    # baseline lesion (resolved ones included); then each scan is built with fixed centres.
    both = make_phantom(replace(spec, lesions=spec.lesions + new_lesions))
    centres = [tuple(r["centre_mm"]) for r in both.truth["lesions"]]
    fixed = [replace(lesion, centre_mm=c, site=r["site"])
             for lesion, c, r in zip(spec.lesions + new_lesions, centres, both.truth["lesions"])]
    baseline = make_phantom(replace(spec, lesions=tuple(fixed[:n_base])))
    order = np.random.default_rng(np.random.SeedSequence([spec.seed, 16])).permutation(n_base)
    resolved = {int(i) for i in order[n_base - n_resolved:]}
    persisting = [i for i in range(n_base) if i not in resolved]
    fu_lesions = [replace(fixed[i], radius_mm=fixed[i].radius_mm * shrink_radius,
                          suv=max(4.5, fixed[i].suv * shrink_suv)) for i in persisting] + fixed[n_base:]
    followup = make_phantom(replace(spec, lesions=tuple(fu_lesions)))
    matches = {k + 1: i + 1 for k, i in enumerate(persisting)}
    matches.update({len(persisting) + k + 1: None for k in range(len(new_lesions))})
    moved = move_phantom(followup, rotation_deg, shift_mm, pad_mm)
    truth = {"matches": matches, "resolved": sorted(i + 1 for i in resolved),
             "rotation_deg": [float(a) for a in rotation_deg], "shift_mm": [float(s) for s in shift_mm],
             "note": "baseline point p is at R p + t in the follow-up (R = Rz Ry Rx about the world origin)"}
    return PhantomPair(baseline, moved, truth)
