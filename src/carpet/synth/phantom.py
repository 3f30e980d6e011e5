"""A digital whole-body PET/CT phantom with known truth.

The anatomy is defined analytically in world millimetres (LPS) — elliptic cylinders, ellipsoids,
capped cylinders and rounded boxes — and rasterised on the voxel centres of each grid, so a CT on
a finer grid agrees with the PET grid by construction (it is not resampled). Bones carry exact
signed distance functions (SDFs), which is what lets lesions be placed with a known relation to the
bone surface: fully inside the marrow (intramedullary), centred on the bone surface (paramedullary),
a chosen gap outside it (abutting), or at least 2 cm away from it (extramedullary).

No package we found builds such a phantom (XCAT is licensed; the geometric CT/MRI phantoms on PyPI
have no PET uptake, bone cortex/marrow or lesion-to-bone truth), so the geometry is written here;
blur and noise use :mod:`scipy.ndimage` and numpy's ``default_rng``, DICOM uses pydicom.

Ideal truth: a lesion voxel is a PET voxel whose centre lies within the lesion radius
(``|x - c|² <= r²``); its SUV is exactly the lesion's SUV. Without blur, noise or physiological
uptake every non-lesion voxel is below 4 SUV, so a global SUV ≥ 4 threshold finds exactly the lesions,
and lesions are kept two voxel diagonals apart so their 26-connected components never merge.

Physiology (``physiological_uptake=True``; :meth:`PhantomSpec.patient` for a patient-like scan): FDG
uptake in the brain (inside a skull), salivary glands and tonsils, myocardium, kidneys, renal pelves,
ureters, bladder and colon, each with its CT number, and one truth record per organ (``truth['physiology']``,
``Phantom.physiology_labels``) beside the lesions' (``class`` 'physiology' or 'disease', disjoint voxels).
Lesions can be placed a chosen gap from an organ (``LesionSpec.near``), and ``fov`` cuts the whole-body
patient to a thoracic or pelvic field of view (a slab of the same patient: the same voxels).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from carpet.errors import InputError
from carpet.provenance import provenance
from carpet.volume import Volume

LESION_KINDS = ("intramedullary", "paramedullary", "extramedullary", "abutting")
BONE_SITES = ("spine", "pelvis", "femur", "skull")  # femurs and skull only with a head or thighs
SOFT_SITES = ("liver", "lung", "soft_tissue")
_SITES_BY_KIND = {"intramedullary": BONE_SITES, "paramedullary": BONE_SITES,
                  "abutting": BONE_SITES, "extramedullary": SOFT_SITES}

# Tissue codes of the internal label map (shapes are painted in the order the anatomy lists them).
AIR, SOFT, LUNG, LIVER, BLOOD, KIDNEY, BLADDER, BRAIN, CORTEX, MARROW = range(10)
# Codes of the physiological phantom (``physiological_uptake=True``) only.
(BRAIN_WM, MYOCARDIUM, HEART_BLOOD, RENAL_PELVIS, URETER, PAROTID, SUBMANDIBULAR, TONSIL, BOWEL,
 GAS, FLUID) = range(10, 21)
TISSUE_NAMES = {AIR: "air", SOFT: "soft_tissue", LUNG: "lung", LIVER: "liver", BLOOD: "blood",
                KIDNEY: "kidney", BLADDER: "bladder", BRAIN: "brain", CORTEX: "cortex",
                MARROW: "marrow", BRAIN_WM: "brain_white_matter", MYOCARDIUM: "myocardium",
                HEART_BLOOD: "heart_blood", RENAL_PELVIS: "renal_pelvis", URETER: "ureter",
                PAROTID: "parotid", SUBMANDIBULAR: "submandibular", TONSIL: "tonsil", BOWEL: "bowel",
                GAS: "bowel_gas", FLUID: "bowel_fluid"}
#: Tissues with physiological uptake: lesions placed automatically keep clear of them.
HOT_TISSUES = (KIDNEY, BLADDER, BRAIN, BRAIN_WM, MYOCARDIUM, RENAL_PELVIS, URETER, PAROTID, SUBMANDIBULAR,
               TONSIL, BOWEL)
#: CT numbers (HU) of each tissue; lesions are lytic soft tissue (40 HU) wherever they are.
TISSUE_HU = {AIR: -1000, SOFT: 40, LUNG: -800, LIVER: 60, BLOOD: 40, KIDNEY: 35, BLADDER: 10,
             BRAIN: 35, CORTEX: 1000, MARROW: 250, BRAIN_WM: 28, MYOCARDIUM: 40, HEART_BLOOD: 40,
             RENAL_PELVIS: 8, URETER: 8, PAROTID: 15, SUBMANDIBULAR: 35, TONSIL: 45, BOWEL: 40,
             GAS: -950, FLUID: 10}
LESION_HU = 40
#: Physiology truth components: (organ, tissue codes, side) — side +1 is the patient's left (x > 0
#: in LPS), -1 the right, 0 both. Each becomes one label of ``Phantom.physiology_labels``.
PHYSIOLOGY_ORGANS = (("brain", (BRAIN, BRAIN_WM), 0), ("parotid_right", (PAROTID,), -1),
                     ("parotid_left", (PAROTID,), 1), ("submandibular_right", (SUBMANDIBULAR,), -1),
                     ("submandibular_left", (SUBMANDIBULAR,), 1), ("tonsils", (TONSIL,), 0),
                     ("myocardium", (MYOCARDIUM,), 0), ("kidney_right", (KIDNEY,), -1),
                     ("kidney_left", (KIDNEY,), 1), ("renal_pelvis_right", (RENAL_PELVIS,), -1),
                     ("renal_pelvis_left", (RENAL_PELVIS,), 1), ("ureter_right", (URETER,), -1),
                     ("ureter_left", (URETER,), 1), ("bladder", (BLADDER,), 0), ("bowel", (BOWEL,), 0))
#: Organs a lesion can be placed next to (``LesionSpec.near``).
NEAR_ORGANS = ("bladder", "myocardium", "kidney", "brain")
#: Myocardial uptake presets of :meth:`PhantomSpec.patient` (SUVbw): from suppressed to intense.
MYOCARDIUM_SUV = {"none": 1.5, "low": 3.0, "moderate": 6.0, "intense": 12.0}
#: Fields of view of a whole-body patient (see :func:`_fov_window`); "full" is the whole grid.
FOV_NAMES = ("full", "head_to_thigh", "head_to_pelvis", "head_to_thorax", "thorax", "pelvis")
NOISE_MODELS = ("multiplicative", "poisson")
#: What makes a phantom image look like a clinical FDG PET: physiology, a 6.5 mm PSF (FWHM) and
#: Poisson-like noise of 12 % relative SD at the liver.
PATIENT_IMAGE = {"physiological_uptake": True, "psf_fwhm_mm": 6.5, "noise_rel_sd": 0.12, "noise_model": "poisson"}
#: A field of view at least this long (mm) holds a whole-body patient (head to thighs).
_WHOLE_BODY_MM = 1000.0
#: Extramedullary lesions keep at least this distance (mm) from every bone surface.
EMD_MIN_BONE_DISTANCE_MM = 20.0
#: Reference VOI radii (mm): a 3 cm sphere in the liver, a 1 cm sphere in the descending aorta.
LIVER_VOI_RADIUS_MM = 15.0
AORTA_VOI_RADIUS_MM = 5.0


# ---------------------------------------------------------------------------------------------
# Specification
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LesionSpec:
    """One lesion of the phantom.

    Parameters
    ----------
    kind : {'intramedullary', 'paramedullary', 'extramedullary', 'abutting'}
        Geometry relative to bone. ``'abutting'`` is a soft-tissue lesion whose surface lies
        ``gap_mm`` outside the outer bone surface (no contact; the 'indeterminate' class).
    radius_mm : float
        Sphere radius in mm.
    suv : float
        Uptake (SUVbw) of every lesion voxel.
    centre_mm : tuple of 3 floats, optional
        LPS centre in mm; ``None`` places it automatically (deterministic from the seed).
    gap_mm : float
        Distance from lesion surface to bone surface for ``'abutting'`` lesions (mm).
    site : str, optional
        ``'spine'``, ``'pelvis'`` or ``'femur'`` (whole-body field of view only) for bone kinds;
        ``'liver'``, ``'lung'`` or ``'soft_tissue'`` for
        extramedullary lesions. ``None`` lets placement choose. ``'skull'`` needs a physiological
        whole-body phantom.
    near : {'bladder', 'myocardium', 'kidney', 'brain'}, optional
        Place the lesion next to this organ of a physiological phantom, ``organ_gap_mm`` from its
        surface: a soft-tissue node (extramedullary) beside the bladder, heart or a kidney, or a skull
        lesion (intramedullary or paramedullary) below the brain.
    organ_gap_mm : float
        Distance (mm) from the lesion's sphere to the ``near`` organ's surface. Exact: the organs
        are convex and the centre is a surface point plus (radius + gap) along the outward normal.
    """

    kind: str
    radius_mm: float
    suv: float
    centre_mm: tuple[float, float, float] | None = None
    gap_mm: float = 2.5
    site: str | None = None
    near: str | None = None
    organ_gap_mm: float = 4.0

    def __post_init__(self) -> None:
        if self.kind not in LESION_KINDS:
            raise InputError(f"lesion kind must be one of {LESION_KINDS}, got {self.kind!r}")
        if not self.radius_mm > 0 or not self.suv > 0:
            raise InputError(f"lesion radius_mm and suv must be positive, got {self.radius_mm}, {self.suv}")
        if self.site is not None and self.site not in _SITES_BY_KIND[self.kind]:
            raise InputError(f"site {self.site!r} is not possible for a {self.kind} lesion; "
                             f"expected one of {_SITES_BY_KIND[self.kind]}")
        if self.kind == "abutting" and not self.gap_mm > 0:
            raise InputError(f"an abutting lesion needs gap_mm > 0, got {self.gap_mm}")
        if self.centre_mm is not None:
            object.__setattr__(self, "centre_mm", tuple(float(c) for c in self.centre_mm))
        if self.near is not None:
            self._check_near()

    def _check_near(self) -> None:
        if self.near not in NEAR_ORGANS:
            raise InputError(f"near must be one of {NEAR_ORGANS}, got {self.near!r}")
        kinds, site = ((("intramedullary", "paramedullary"), "skull") if self.near == "brain"
                       else (("extramedullary",), "soft_tissue"))
        if self.kind not in kinds or self.site not in (None, site):
            raise InputError(f"a lesion near the {self.near} must be {' or '.join(kinds)} at site {site!r}, "
                             f"got {self.kind} at {self.site!r}")
        if self.centre_mm is not None:
            raise InputError("give a lesion either centre_mm or near, not both")
        if not self.organ_gap_mm > 0:
            raise InputError(f"organ_gap_mm must be positive, got {self.organ_gap_mm}")
        object.__setattr__(self, "site", site)


#: Radius ranges (mm) of the whole-body lesions. Paramedullary lesions are big enough that their
#: soft-tissue part exceeds 1 mL (the provisional v_min_out of spec/clinical-rules.md §4.3).
_DEFAULT_RADIUS_MM = {"intramedullary": (6.0, 8.0), "paramedullary": (10.0, 13.0),
                      "extramedullary": (7.0, 12.0), "abutting": (7.0, 10.0)}
#: Radii (mm) of the small phantom's lesions; kept as first released, since other modules' tests
#: are tuned on these phantoms (the paramedullary soft-tissue part is then about 1 mL).
_SMALL_RADIUS_MM = {"intramedullary": 6.0, "paramedullary": 8.0, "extramedullary": 7.0, "abutting": 7.0}


@dataclass(frozen=True)
class PhantomSpec:
    """Everything that defines a phantom; ``make_phantom(spec)`` is deterministic in it.

    The default grid is whole-body size (see :meth:`whole_body`, :meth:`small` for tests), without
    lesions. Grid sizes are in voxels (i, j, k), spacings in mm. Uptakes are SUVbw. ``ct_spacing_mm=None``
    puts the CT on the PET grid; otherwise the CT covers the same field of view on a finer grid
    (each PET extent must be a whole number of CT voxels). Diffuse marrow uptake: raise
    ``marrow_suv`` (keep it below 4 to keep the "only lesions ≥ 4 SUV" guarantee).
    ``psf_fwhm_mm`` blurs the PET with a Gaussian, then ``noise_rel_sd`` multiplies each voxel by
    ``1 + noise_rel_sd·N(0, 1)``. The patient and timing fields feed the DICOM SUV header.
    """

    pet_shape: tuple[int, int, int] = (200, 200, 400)
    pet_spacing_mm: tuple[float, float, float] = (4.0, 4.0, 4.0)
    ct_spacing_mm: tuple[float, float, float] | None = None
    lesions: tuple[LesionSpec, ...] = ()
    liver_suv: float = 2.0
    blood_pool_suv: float = 1.6
    marrow_suv: float = 1.2
    cortex_suv: float = 0.5
    soft_tissue_suv: float = 0.8
    lung_suv: float = 0.3
    physiological_uptake: bool = False
    brain_suv: float = 8.0
    bladder_suv: float = 15.0
    kidney_suv: float = 5.0
    cortex_mm: float = 8.0
    psf_fwhm_mm: float = 0.0
    noise_rel_sd: float = 0.0
    seed: int = 0
    weight_kg: float = 75.0
    height_cm: float = 175.0
    sex: str = "M"
    dose_mbq: float = 300.0
    uptake_min: float = 60.0
    study_date: str = "20240115"
    injection_time: str = "090000"
    myocardium_suv: float = 6.0
    renal_pelvis_suv: float = 12.0
    ureter_suv: float = 8.0
    salivary_suv: float = 3.0
    tonsil_suv: float = 4.5
    bowel_suv: float = 3.0
    fov: str = "full"
    noise_model: str = "multiplicative"

    def __post_init__(self) -> None:
        object.__setattr__(self, "pet_shape", tuple(int(n) for n in self.pet_shape))
        object.__setattr__(self, "pet_spacing_mm", tuple(float(s) for s in self.pet_spacing_mm))
        if self.ct_spacing_mm is not None:
            object.__setattr__(self, "ct_spacing_mm", tuple(float(s) for s in self.ct_spacing_mm))
        object.__setattr__(self, "lesions", tuple(
            lesion if isinstance(lesion, LesionSpec) else LesionSpec(**lesion) for lesion in self.lesions))
        if len(self.pet_shape) != 3 or min(self.pet_shape) < 16:
            raise InputError(f"pet_shape must be 3 sizes of at least 16 voxels, got {self.pet_shape}")
        positive = {"weight_kg": self.weight_kg, "height_cm": self.height_cm, "dose_mbq": self.dose_mbq,
                    "cortex_mm": self.cortex_mm,
                    **{f"pet_spacing_mm[{a}]": v for a, v in enumerate(self.pet_spacing_mm)},
                    **{f"ct_spacing_mm[{a}]": v for a, v in enumerate(self.ct_spacing_mm or ())}}
        for name, value in positive.items():
            if not value > 0:
                raise InputError(f"{name} must be positive, got {value}")
        if self.psf_fwhm_mm < 0 or self.noise_rel_sd < 0 or self.uptake_min < 0:
            raise InputError("psf_fwhm_mm, noise_rel_sd and uptake_min must not be negative, got "
                             f"{self.psf_fwhm_mm}, {self.noise_rel_sd}, {self.uptake_min}")
        try:
            datetime.strptime(self.study_date + self.injection_time, "%Y%m%d%H%M%S")
        except ValueError:
            raise InputError(f"study_date must be YYYYMMDD and injection_time HHMMSS, got "
                             f"{self.study_date!r}, {self.injection_time!r}") from None
        if self.sex not in ("M", "F"):
            raise InputError(f"sex must be 'M' or 'F', got {self.sex!r}")
        self._check_physiology()
        background = (self.liver_suv, self.blood_pool_suv, self.marrow_suv, self.cortex_suv,
                      self.soft_tissue_suv, self.lung_suv)
        if max(background) >= 4.0:
            raise InputError(f"background uptakes must stay below 4 SUV so that SUV ≥ 4 finds only "
                             f"the lesions, got max {max(background)}")

    def _check_physiology(self) -> None:
        if self.fov not in FOV_NAMES:
            raise InputError(f"fov must be one of {FOV_NAMES}, got {self.fov!r}")
        if self.fov != "full" and self.pet_shape[2] * self.pet_spacing_mm[2] < _WHOLE_BODY_MM:
            raise InputError(f"fov={self.fov!r} crops a whole-body patient: pet_shape[2] × pet_spacing_mm[2] "
                             f"must be at least {_WHOLE_BODY_MM:.0f} mm, got "
                             f"{self.pet_shape[2] * self.pet_spacing_mm[2]:.0f} mm")
        if self.noise_model not in NOISE_MODELS:
            raise InputError(f"noise_model must be one of {NOISE_MODELS}, got {self.noise_model!r}")
        uptakes = {"brain_suv": self.brain_suv, "bladder_suv": self.bladder_suv, "kidney_suv": self.kidney_suv,
                   "myocardium_suv": self.myocardium_suv, "renal_pelvis_suv": self.renal_pelvis_suv,
                   "ureter_suv": self.ureter_suv, "salivary_suv": self.salivary_suv,
                   "tonsil_suv": self.tonsil_suv, "bowel_suv": self.bowel_suv}
        for name, value in uptakes.items():
            if not value >= 0:
                raise InputError(f"{name} must not be negative, got {value}")
        near = [lesion.near for lesion in self.lesions if lesion.near]
        if (near or any(lesion.site == "skull" for lesion in self.lesions)) and not self.physiological_uptake:
            raise InputError("lesions near organs or in the skull need physiological_uptake=True")

    @classmethod
    def patient(cls, seed: int = 0, fov: str = "head_to_thigh", myocardium: str | float = "moderate",
                n_lesions: int = 6, organ_lesions: bool = True, **overrides: Any) -> "PhantomSpec":
        """A phantom that looks like a patient's FDG PET/CT: whole-body frame (200×200×400 at 4 mm),
        physiological uptake, 6.5 mm PSF, Poisson-like noise (12 % at the liver), cropped to ``fov``.

        Parameters
        ----------
        fov : str
            One of :data:`FOV_NAMES` (``'full'`` = ``'head_to_thigh'``).
        myocardium : {'none', 'low', 'moderate', 'intense'} or float
            Myocardial uptake (SUVbw; presets in :data:`MYOCARDIUM_SUV`).
        n_lesions : int
            Lesions of mixed kinds placed at random, clear of the physiology.
        organ_lesions : bool
            Add one lesion next to each organ in the field of view: a node beside the bladder, a
            mediastinal node beside the heart, a skull lesion below the brain, a node beside a
            kidney, and a liver lesion (:func:`organ_lesions_for`).
        """
        if isinstance(myocardium, str):
            if myocardium not in MYOCARDIUM_SUV:
                raise InputError(f"myocardium must be one of {tuple(MYOCARDIUM_SUV)} or an SUV, got {myocardium!r}")
            myocardium = MYOCARDIUM_SUV[myocardium]
        base = cls.whole_body(seed, n_lesions, **PATIENT_IMAGE, myocardium_suv=float(myocardium), fov=fov)
        lesions = base.lesions
        if organ_lesions:
            present = set(organs_in_fov(base))
            lesions = tuple(les for les in organ_lesions_for(seed) if _organ_of(les) in present) + lesions
        return cls(**{**{f: getattr(base, f) for f in base.__dataclass_fields__}, "lesions": lesions,
                      **overrides})

    def with_physiology(self, **overrides: Any) -> "PhantomSpec":
        """This spec with FDG physiology, a clinical PSF and Poisson-like noise (:data:`PATIENT_IMAGE`)."""
        return replace(self, **{**PATIENT_IMAGE, **overrides})

    @classmethod
    def small(cls, seed: int = 0, **overrides: Any) -> "PhantomSpec":
        """A torso of 64×64×80 voxels at 4 mm with two lesions of each kind (fast tests)."""
        rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
        lesions = tuple(LesionSpec(kind, _SMALL_RADIUS_MM[kind], float(np.round(rng.uniform(5, 12), 2)))
                        for kind in LESION_KINDS for _ in range(2))
        return cls(**{"pet_shape": (64, 64, 80), "lesions": lesions, "seed": seed, **overrides})

    @classmethod
    def whole_body(cls, seed: int = 0, n_lesions: int = 30, **overrides: Any) -> "PhantomSpec":
        """Head to thighs on 200×200×400 voxels at 4 mm, ``n_lesions`` lesions of mixed kinds.

        Pass ``ct_spacing_mm=(1.5625, 1.5625, 4.0)`` for a 512×512×400 CT.
        """
        rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
        kinds = rng.choice(LESION_KINDS, size=n_lesions, p=[0.4, 0.2, 0.3, 0.1])
        lesions = tuple(LesionSpec(str(kind), float(np.round(rng.uniform(*_DEFAULT_RADIUS_MM[kind]), 1)),
                                   float(np.round(rng.uniform(5.0, 20.0), 2)))
                        for kind in kinds)
        return cls(**{"pet_shape": (200, 200, 400), "lesions": lesions, "seed": seed, **overrides})

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))


# ---------------------------------------------------------------------------------------------
# Grids
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Grid:
    """An axis-aligned LPS grid: ``world = origin + spacing * index`` (identity direction)."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]

    def axes(self) -> list[np.ndarray]:
        return [self.origin[a] + self.spacing[a] * np.arange(self.shape[a]) for a in range(3)]

    def volume(self, array: np.ndarray, **meta: Any) -> Volume:
        return Volume(array, self.spacing, self.origin, np.eye(3), meta)

    def sphere_crop(self, centre: np.ndarray, radius: float) -> tuple[tuple[slice, ...], np.ndarray]:
        """Slices of the bounding box of a sphere and the mask of voxel centres inside it."""
        slices, coords = [], []
        for a in range(3):
            lo = max(0, math.floor((centre[a] - radius - self.origin[a]) / self.spacing[a]))
            hi = min(self.shape[a], math.ceil((centre[a] + radius - self.origin[a]) / self.spacing[a]) + 1)
            slices.append(slice(lo, max(lo, hi)))
            coords.append(self.origin[a] + self.spacing[a] * np.arange(lo, max(lo, hi)) - centre[a])
        d2 = coords[0][:, None, None] ** 2 + coords[1][None, :, None] ** 2 + coords[2][None, None, :] ** 2
        return tuple(slices), d2 <= radius * radius

    def contains_sphere(self, centre: np.ndarray, radius: float, margin_voxels: int = 1) -> bool:
        lo = np.asarray(self.origin) + margin_voxels * np.asarray(self.spacing)
        hi = np.asarray(self.origin) + (np.asarray(self.shape) - 1 - margin_voxels) * np.asarray(self.spacing)
        return bool(np.all(centre - radius >= lo) and np.all(centre + radius <= hi))


def _pet_grid(spec: PhantomSpec) -> _Grid:
    """PET grid centred on world (0, 0, 0): the frame the patient is laid out in (before ``fov``)."""
    origin = tuple(-(n - 1) / 2.0 * s for n, s in zip(spec.pet_shape, spec.pet_spacing_mm))
    return _Grid(spec.pet_shape, spec.pet_spacing_mm, origin)


def _fov_window(anatomy: "_Anatomy", fov: str) -> tuple[float, float] | None:
    """z range (mm) of a named field of view of a whole-body patient; None for the whole grid.

    head_to_pelvis ends 4 cm below the pelvic floor (no thighs); head_to_thorax ends in the upper
    abdomen (liver dome, no kidneys); thorax runs from the upper abdomen to 3 cm above the lung
    apices; pelvis from 10 cm below the pelvic floor to the iliac crests (bladder, no liver or kidneys).
    """
    if fov in ("full", "head_to_thigh"):
        return None
    z = dict(anatomy.landmarks)
    return {"head_to_pelvis": (z["pelvic_floor"] - 40.0, np.inf),
            "head_to_thorax": (z["upper_abdomen"], np.inf),
            "thorax": (z["upper_abdomen"], z["lung_apex"] + 30.0),
            "pelvis": (z["pelvic_floor"] - 100.0, z["iliac_crest"])}[fov]


def _crop_z(grid: _Grid, window: tuple[float, float] | None) -> _Grid:
    """The slices of ``grid`` whose centres lie in the z window (same world positions)."""
    if window is None:
        return grid
    z = grid.axes()[2]
    k = np.flatnonzero((z >= window[0]) & (z <= window[1]))
    origin = (grid.origin[0], grid.origin[1], float(z[k[0]]))
    return _Grid((grid.shape[0], grid.shape[1], int(k.size)), grid.spacing, origin)


def _ct_grid(spec: PhantomSpec, pet: _Grid) -> _Grid:
    """The CT grid: the PET field of view (voxel edges) cut into ``ct_spacing_mm`` voxels."""
    if spec.ct_spacing_mm is None:
        return pet
    shape, origin = [], []
    for a in range(3):
        extent = pet.shape[a] * pet.spacing[a]
        n = extent / spec.ct_spacing_mm[a]
        if abs(n - round(n)) > 1e-6:
            raise InputError(f"ct_spacing_mm[{a}] = {spec.ct_spacing_mm[a]} does not divide the PET field of "
                             f"view ({extent} mm) into whole voxels")
        shape.append(int(round(n)))
        origin.append(pet.origin[a] - pet.spacing[a] / 2 + spec.ct_spacing_mm[a] / 2)
    return _Grid(tuple(shape), spec.ct_spacing_mm, tuple(origin))


# ---------------------------------------------------------------------------------------------
# Analytic anatomy
# ---------------------------------------------------------------------------------------------
class _Shape:
    """A solid in world mm; ``box()`` bounds it, ``contains`` tests broadcastable coordinates."""

    def box(self) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    @property
    def z_range(self) -> tuple[float, float]:
        lo, hi = self.box()
        return float(lo[2]), float(hi[2])

    def contains(self, x, y, z):
        return self.sdf(x, y, z) <= 0.0


@dataclass(frozen=True)
class _Ellipsoid(_Shape):
    centre: tuple[float, float, float]
    semi: tuple[float, float, float]

    def box(self):
        return np.subtract(self.centre, self.semi), np.add(self.centre, self.semi)

    def contains(self, x, y, z):
        return (((x - self.centre[0]) / self.semi[0]) ** 2 + ((y - self.centre[1]) / self.semi[1]) ** 2
                + ((z - self.centre[2]) / self.semi[2]) ** 2) <= 1.0


@dataclass(frozen=True)
class _EllipticCylinderZ(_Shape):
    cx: float
    cy: float
    a: float
    b: float
    z0: float
    z1: float

    def box(self):
        return (np.array([self.cx - self.a, self.cy - self.b, self.z0]),
                np.array([self.cx + self.a, self.cy + self.b, self.z1]))

    def contains(self, x, y, z):
        in_ellipse = (((x - self.cx) / self.a) ** 2 + ((y - self.cy) / self.b) ** 2) <= 1.0
        return in_ellipse & (z >= self.z0) & (z <= self.z1)


@dataclass(frozen=True)
class _CappedCylinderZ(_Shape):
    """Circular cylinder along z with flat caps; exact signed distance (negative inside)."""

    cx: float
    cy: float
    radius: float
    z0: float
    z1: float

    def box(self):
        r = self.radius
        return np.array([self.cx - r, self.cy - r, self.z0]), np.array([self.cx + r, self.cy + r, self.z1])

    def sdf(self, x, y, z):
        d_r = np.hypot(x - self.cx, y - self.cy) - self.radius
        d_z = np.abs(z - (self.z0 + self.z1) / 2) - (self.z1 - self.z0) / 2
        return np.minimum(np.maximum(d_r, d_z), 0.0) + np.hypot(np.maximum(d_r, 0.0), np.maximum(d_z, 0.0))


@dataclass(frozen=True)
class _RoundBox(_Shape):
    """Axis-aligned box with rounded edges (radius ``rounding``); exact signed distance."""

    centre: tuple[float, float, float]
    half: tuple[float, float, float]
    rounding: float

    def box(self):
        return np.subtract(self.centre, self.half), np.add(self.centre, self.half)

    def sdf(self, x, y, z):
        q = [np.abs(p - c) - (h - self.rounding) for p, c, h in zip((x, y, z), self.centre, self.half)]
        outside = np.sqrt(sum(np.maximum(qa, 0.0) ** 2 for qa in q))
        inside = np.minimum(np.maximum(np.maximum(q[0], q[1]), q[2]), 0.0)
        return outside + inside - self.rounding


@dataclass(frozen=True)
class _SphereShell(_Shape):
    """The bone between two concentric spheres (a cranial vault); exact signed distance."""

    centre: tuple[float, float, float]
    r_in: float
    r_out: float

    def box(self):
        return np.subtract(self.centre, self.r_out), np.add(self.centre, self.r_out)

    def sdf(self, x, y, z):
        r = np.sqrt((x - self.centre[0]) ** 2 + (y - self.centre[1]) ** 2 + (z - self.centre[2]) ** 2)
        return np.abs(r - (self.r_in + self.r_out) / 2) - (self.r_out - self.r_in) / 2


@dataclass(frozen=True)
class _Capsule(_Shape):
    """All points within ``radius`` of the segment p0–p1 (a piece of ureter or bowel)."""

    p0: tuple[float, float, float]
    p1: tuple[float, float, float]
    radius: float

    def box(self):
        return (np.minimum(self.p0, self.p1) - self.radius, np.maximum(self.p0, self.p1) + self.radius)

    def sdf(self, x, y, z):
        d = np.subtract(self.p1, self.p0)
        rel = [x - self.p0[0], y - self.p0[1], z - self.p0[2]]
        t = np.clip((rel[0] * d[0] + rel[1] * d[1] + rel[2] * d[2]) / float(d @ d), 0.0, 1.0)
        return np.sqrt(sum((r - t * da) ** 2 for r, da in zip(rel, d))) - self.radius


@dataclass(frozen=True)
class _SlabY(_Shape):
    """The part of ``shape`` with ``y_lo <= y < y_hi`` (gas above, fluid below a level, supine)."""

    shape: Any
    y_lo: float
    y_hi: float

    def box(self):
        lo, hi = self.shape.box()
        return (np.array([lo[0], max(lo[1], self.y_lo), lo[2]]), np.array([hi[0], min(hi[1], self.y_hi), hi[2]]))

    def contains(self, x, y, z):
        return self.shape.contains(x, y, z) & (y >= self.y_lo) & (y < self.y_hi)


def _chain(points: list[tuple[float, float, float]], radius: float) -> list[_Capsule]:
    """Capsules along a polyline (a tube of constant radius)."""
    return [_Capsule(tuple(map(float, a)), tuple(map(float, b)), radius) for a, b in zip(points[:-1], points[1:])]


@dataclass(frozen=True)
class _Anatomy:
    """The analytic patient: soft-tissue shapes painted in order, then bones (cortex, marrow)."""

    shapes: tuple[tuple[int, Any], ...]           # (tissue code, shape), painted in this order
    bones: tuple[tuple[str, Any], ...]            # (site, shape with .sdf)
    cortex_mm: float
    liver_voi_mm: tuple[float, float, float]
    aorta_voi_mm: tuple[float, float, float]
    #: convex organ surfaces lesions can be placed next to: (organ in NEAR_ORGANS, _Ellipsoid)
    near: tuple[tuple[str, Any], ...] = ()
    #: z (mm) of the landmarks that bound the named fields of view (whole-body patients only)
    landmarks: tuple[tuple[str, float], ...] = ()

    def tissue_at(self, x, y, z) -> np.ndarray:
        """Tissue code at points: ``x``, ``y``, ``z`` are broadcastable coordinate arrays (mm).

        For a grid pass open axes, shapes (n, 1, 1), (1, m, 1), (1, 1, l), each ascending: every
        shape is then evaluated only inside its bounding box, which keeps whole-body grids fast.
        """
        shape = np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z))
        out = np.full(shape, AIR, dtype=np.uint8)
        coords = (np.asarray(x), np.asarray(y), np.asarray(z))
        for code, shp in self.shapes:
            region = _box_region(coords, shape, *shp.box())
            if region is not None:
                sl, c = region
                out[sl][shp.contains(*c)] = code
        for _, bone in self.bones:
            region = _box_region(coords, shape, *bone.box())
            if region is not None:
                sl, c = region
                d = np.broadcast_to(bone.sdf(*c), out[sl].shape)
                out[sl][d <= 0.0] = CORTEX
                out[sl][d <= -self.cortex_mm] = MARROW
        return out

    def bone_sdf(self, points: np.ndarray, site: str | None = None) -> np.ndarray:
        """Signed distance (mm) of points (n, 3) to the union of bones (exact outside bone)."""
        pts = np.atleast_2d(points)
        return np.min([b.sdf(pts[:, 0], pts[:, 1], pts[:, 2]) for s, b in self.bones
                       if site is None or s == site], axis=0)


def _box_region(coords: tuple[np.ndarray, ...], shape: tuple[int, ...], lo: np.ndarray, hi: np.ndarray):
    """Where a bounding box [lo, hi] meets the points: ``(slices into the output, coordinates there)``,
    or None when it misses them. Open grid axes are cut to the box; other point sets are kept whole."""
    open_axes = len(shape) == 3 and all(c.ndim == 3 and c.shape[a] == c.size for a, c in enumerate(coords))
    if not open_axes:
        if any(c.size and (c.max() < l or c.min() > h) for c, l, h in zip(coords, lo, hi)):
            return None
        return (Ellipsis,), tuple(np.broadcast_arrays(*coords))
    slices, cut = [], []
    for a, (c, l, h) in enumerate(zip(coords, lo, hi)):
        axis = c.ravel()
        i0, i1 = np.searchsorted(axis, l, side="left"), np.searchsorted(axis, h, side="right")
        if i0 >= i1:
            return None
        slices.append(slice(i0, i1))
        index = [slice(None)] * 3
        index[a] = slice(i0, i1)
        cut.append(c[tuple(index)])
    return tuple(slices), tuple(cut)


def _build_anatomy(pet: _Grid, spec: PhantomSpec) -> _Anatomy:
    """Lay the organs out in the PET field of view.

    A field of view shorter than 1 m holds a torso (pelvis at the bottom, lungs at the top);
    a longer one adds a head above and thighs below. Transverse sizes follow the field of view
    up to an adult torso (semi-axes 170 × 115 mm); bones keep absolute sizes so that the marrow
    always has room for lesions inside an 8 mm cortex. With ``physiological_uptake`` the patient
    also gets a mediastinum, heart, kidneys with renal pelves and ureters, bladder and colon
    (:func:`_trunk_physiology`) and, in a whole-body field of view, a brain in a skull, salivary
    glands and tonsils (:func:`_head_physiology`).
    """
    fov_lo = np.asarray(pet.origin) - np.asarray(pet.spacing) / 2
    fov_hi = fov_lo + np.asarray(pet.shape) * np.asarray(pet.spacing)
    A = min(170.0, 0.45 * (fov_hi[0] - fov_lo[0]))
    B = min(0.68 * A, 0.45 * (fov_hi[1] - fov_lo[1]))
    whole_body = fov_hi[2] - fov_lo[2] >= _WHOLE_BODY_MM
    physiology = spec.physiological_uptake
    if whole_body:
        head_c = fov_hi[2] - 140.0
        t_top = head_c - 160.0
        t_bot = t_top - 650.0
    else:
        t_bot, t_top = fov_lo[2], fov_hi[2]
    L = t_top - t_bot

    def zt(t: float) -> float:
        return t_bot + t * L

    shapes: list[tuple[int, Any]] = [(SOFT, _EllipticCylinderZ(0.0, 0.0, A, B, t_bot, t_top))]
    if whole_body:
        # the physiological head is a little larger: it must hold a brain in a skull
        head = (82.0, 100.0, 115.0) if physiology else (75.0, 95.0, 110.0)
        neck = (55.0, 50.0) if physiology else (0.35 * B, 0.35 * B)
        shapes += [(SOFT, _EllipticCylinderZ(0.0, 0.0, *neck, t_top - 5.0, head_c)),
                   (SOFT, _Ellipsoid((0.0, 0.0, head_c), head))]
        for side in (-1, 1):
            shapes.append((SOFT, _EllipticCylinderZ(side * 0.45 * A, 0.0, 0.4 * A, 0.6 * B,
                                                    fov_lo[2] + 10.0, t_bot + 5.0)))
    lungs = [_Ellipsoid((side * 0.5 * A, -0.05 * B, zt(0.82)), (0.3 * A, 0.6 * B, 0.2 * L))
             for side in (-1, 1)]
    liver = _Ellipsoid((-0.42 * A, -0.1 * B, zt(0.53)), (0.45 * A, 0.6 * B, 0.14 * L))
    aorta = _EllipticCylinderZ(0.28 * A, 0.3 * B, 13.0, 13.0, zt(0.2), zt(0.98))
    shapes += [(LUNG, lung) for lung in lungs]
    if physiology:  # lungs apart, with soft tissue between them
        shapes.append((SOFT, _EllipticCylinderZ(0.0, -0.1 * B, 0.28 * A, 0.75 * B, zt(0.62), t_top)))
    shapes.append((LIVER, liver))

    # Spine: big vertebral bodies (48 mm wide, 40 mm tall, 6 mm discs) from the pelvis to the top
    # of the torso, so that an 8 mm cortex leaves room for lesions in the marrow.
    bones: list[tuple[str, Any]] = []
    spine_y, v_radius, v_half, pitch = 0.55 * B, 24.0, 20.0, 46.0
    z = zt(0.02) + v_half
    while z + v_half <= zt(0.99):
        bones.append(("spine", _CappedCylinderZ(0.0, spine_y, v_radius, z - v_half, z + v_half)))
        z += pitch
    # Pelvis: two iliac wings as thick rounded boxes.
    wing_half = (max(0.14 * A, 22.0), 22.0, max(0.1 * L, 25.0))
    for side in (-1, 1):
        bones.append(("pelvis", _RoundBox((side * 0.5 * A, 0.1 * B, zt(0.14)), wing_half, 4.0)))
    if whole_body:  # femoral shafts in the thighs, thick enough for marrow lesions
        for side in (-1, 1):
            shaft = _CappedCylinderZ(side * 0.45 * A, 0.0, 18.0, fov_lo[2] + 60.0, t_bot - 10.0)
            bones.append(("femur", shaft))

    near: list[tuple[str, Any]] = []
    landmarks: list[tuple[str, float]] = []
    if physiology:
        heart, trunk, near = _trunk_physiology(A, B, L, zt, aorta, 0.5 * A - wing_half[0])
        shapes += heart + [(BLOOD, aorta)] + trunk
        if whole_body:
            head_shapes, skull, brain = _head_physiology(head_c)
            shapes += head_shapes
            bones += skull
            near.append(("brain", brain))
    else:
        shapes.append((BLOOD, aorta))
    if whole_body:
        landmarks = [("vertex", head_c + 115.0), ("skull_base", head_c - 90.0), ("lung_apex", zt(1.02)),
                     ("heart_base", zt(0.8)), ("diaphragm", zt(0.62)), ("upper_abdomen", zt(0.56)),
                     ("iliac_crest", zt(0.3)), ("pelvic_floor", t_bot), ("thigh", fov_lo[2])]

    liver_voi = (liver.centre[0] - 0.35 * liver.semi[0], liver.centre[1], liver.centre[2])
    aorta_voi = (aorta.cx, aorta.cy, zt(0.78))
    return _Anatomy(tuple(shapes), tuple(bones), spec.cortex_mm, liver_voi, aorta_voi, tuple(near),
                    tuple(landmarks))


def _trunk_physiology(A: float, B: float, L: float, zt, aorta: _EllipticCylinderZ, wing_inner_x: float):
    """Heart (painted before the aorta), then kidneys, renal pelves, ureters, bladder and colon.

    Sizes are absolute (adult), positions follow the torso (``A``, ``B`` its semi-axes, ``zt`` its
    height fraction). The kidneys sit lateral to the aorta, the ureters run medial to the iliac
    wings (``wing_inner_x``) into the back of the bladder, the colon frames the abdomen in front.
    Returns ``(heart shapes, trunk shapes, near-organ surfaces)``.
    """
    lv = _Ellipsoid((35.0, -0.25 * B, zt(0.7)), (35.0, 32.0, 42.0))
    heart = [(HEART_BLOOD, _Ellipsoid((-12.0, -0.45 * B, zt(0.7)), (30.0, 0.2 * B, 38.0))),  # right heart
             (MYOCARDIUM, lv), (HEART_BLOOD, _Ellipsoid(lv.centre, (23.0, 20.0, 30.0)))]  # LV cavity
    kidney_x, kidney_z = aorta.cx + aorta.a + 29.0, zt(0.4)
    kidney_semi = (25.0, 20.0, min(45.0, 0.12 * L))
    bladder = _Ellipsoid((0.0, -0.35 * B, zt(0.1)), (35.0, 25.0, 25.0))
    trunk, near = [], [("bladder", bladder), ("myocardium", lv)]
    for side in (-1, 1):
        kidney = _Ellipsoid((side * kidney_x, 0.4 * B, kidney_z), kidney_semi)
        pelvis_c = (side * (kidney_x - 12.0), 0.4 * B - 4.0, kidney_z)
        ureter = [pelvis_c, (side * (wing_inner_x - 8.0), 0.05 * B, zt(0.26)),
                  (side * (wing_inner_x - 10.0), 0.0, zt(0.16)), (side * 18.0, -0.25 * B, zt(0.1) + 4.0)]
        trunk += [(KIDNEY, kidney), (RENAL_PELVIS, _Ellipsoid(pelvis_c, (9.0, 8.0, 16.0)))]
        trunk += [(URETER, c) for c in _chain(ureter, 3.5)]
        near.append(("kidney", kidney))
    trunk.append((BLADDER, bladder))
    # Colon: caecum up the right side, across below the liver, down the left side; 4 mm wall,
    # gas in front (anterior: y below the centre line) and fluid behind, as in a supine patient.
    r, y = min(22.0, 0.22 * B), -0.4 * B
    colon = [(-0.55 * A, y, zt(0.22)), (-0.55 * A, y, zt(0.36)), (0.55 * A, y, zt(0.36)),
             (0.55 * A, y, zt(0.2))]
    trunk += [(BOWEL, c) for c in _chain(colon, r)]
    lumen = _chain(colon, r - 4.0)
    trunk += [(GAS, _SlabY(c, -np.inf, y)) for c in lumen] + [(FLUID, _SlabY(c, y, np.inf)) for c in lumen]
    return heart, trunk, near


def _head_physiology(head_c: float):
    """Brain (grey-matter rim and deep nuclei hot, white matter cooler) in a skull, salivary glands
    and tonsils. The skull is bone ('skull' site): an 8 mm vault around the brain and a thick skull
    base below it, where marrow lesions fit. Returns ``(shapes, skull bones, brain surface)``.
    """
    centre = (0.0, 0.0, head_c + 10.0)
    brain = _Ellipsoid(centre, (64.0, 64.0, 64.0))
    shapes = [(BRAIN, brain), (BRAIN_WM, _Ellipsoid(centre, (58.0, 58.0, 58.0)))]
    shapes += [(BRAIN, _Ellipsoid((side * 14.0, 4.0, head_c + 8.0), (9.0, 14.0, 10.0))) for side in (-1, 1)]
    for side in (-1, 1):
        shapes += [(PAROTID, _Ellipsoid((side * 48.0, 5.0, head_c - 75.0), (12.0, 18.0, 20.0))),
                   (SUBMANDIBULAR, _Ellipsoid((side * 30.0, -32.0, head_c - 102.0), (10.0, 12.0, 9.0))),
                   (TONSIL, _Ellipsoid((side * 12.0, 0.0, head_c - 102.0), (6.0, 6.0, 8.0)))]
    skull = [("skull", _SphereShell(centre, 66.0, 74.0)),
             ("skull", _RoundBox((0.0, 0.0, head_c - 74.0), (26.0, 26.0, 18.0), 4.0))]
    return shapes, skull, brain


# ---------------------------------------------------------------------------------------------
# Lesion placement
# ---------------------------------------------------------------------------------------------
def _fibonacci_sphere(n: int) -> np.ndarray:
    """``n`` nearly uniform unit vectors (golden-angle spiral)."""
    k = np.arange(n) + 0.5
    polar = np.arccos(1 - 2 * k / n)
    azim = np.pi * (1 + 5 ** 0.5) * k
    return np.stack([np.cos(azim) * np.sin(polar), np.sin(azim) * np.sin(polar), np.cos(polar)], axis=1)


_DIRS = _fibonacci_sphere(200)


def _ball_points(centre: np.ndarray, radius: float) -> np.ndarray:
    """Sample points filling a ball: its centre and three concentric shells."""
    shells = [centre + f * radius * _DIRS for f in (1 / 3, 2 / 3, 1.0)]
    return np.vstack([centre[None, :]] + shells)


@dataclass
class _Placer:
    """Rejection sampling of lesion centres that satisfy the geometry of their kind."""

    anatomy: _Anatomy
    grid: _Grid
    spec: PhantomSpec
    rng: np.random.Generator
    placed: list[tuple[np.ndarray, float]] = field(default_factory=list)

    @property
    def clearance_mm(self) -> float:
        """Two voxel diagonals: spheres this far apart never share a 26-neighbourhood."""
        return 2.0 * float(np.linalg.norm(self.grid.spacing))

    def _tissues(self, pts: np.ndarray) -> np.ndarray:
        return self.anatomy.tissue_at(pts[:, 0], pts[:, 1], pts[:, 2])

    def _is_free(self, c: np.ndarray, r: float, near: bool = False) -> bool:
        """In the field of view, apart from other lesions, the reference VOIs and (unless placed
        ``near`` an organ on purpose) hot organs and their blur."""
        gap = self.clearance_mm
        if not self.grid.contains_sphere(c, r):
            return False
        if any(np.linalg.norm(c - c2) < r + r2 + gap for c2, r2 in self.placed):
            return False
        for voi, voi_r in ((self.anatomy.liver_voi_mm, LIVER_VOI_RADIUS_MM),
                           (self.anatomy.aorta_voi_mm, AORTA_VOI_RADIUS_MM)):
            if np.linalg.norm(c - np.asarray(voi)) < r + voi_r + gap:
                return False
        if (self.spec.physiological_uptake and not near
                and self._touches_physiology(c, r + gap + self.spec.psf_fwhm_mm)):
            return False
        return True

    def _touches_physiology(self, c: np.ndarray, radius: float) -> bool:
        """Whether a PET voxel centre within ``radius`` of ``c`` is an organ with physiological uptake
        (voxel centres, not sample points: a 7 mm ureter would slip between sample shells)."""
        sl, inside = self.grid.sphere_crop(c, radius)
        axes = [ax[s] for ax, s in zip(self.grid.axes(), sl)]
        tissue = self.anatomy.tissue_at(axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :])
        return bool(np.isin(tissue[inside], HOT_TISSUES).any())

    def _in_fov(self, shape: Any) -> bool:
        lo, hi = shape.z_range
        z = self.grid.axes()[2]
        return hi >= z[0] and lo <= z[-1]

    def _near_candidate(self, lesion: LesionSpec) -> np.ndarray | None:
        """A centre ``organ_gap_mm`` outside the surface of the organ ``lesion.near``.

        The organs are ellipsoids (convex): from a surface point ``s`` with outward unit normal ``n``,
        the nearest organ point of ``s + d·n`` is ``s``, so the sphere of radius r centred at
        ``s + (r + gap)·n`` lies exactly ``gap`` from the organ. Skull lesions go below the brain.
        """
        r, gap = lesion.radius_mm, lesion.organ_gap_mm
        organs = [shp for name, shp in self.anatomy.near if name == lesion.near and self._in_fov(shp)]
        organ = organs[self.rng.integers(len(organs))]
        u = self.rng.standard_normal(3)
        u /= np.linalg.norm(u)
        if lesion.near == "brain" and u[2] > -0.5:
            return None
        semi = np.asarray(organ.semi)
        normal = u / semi
        normal /= np.linalg.norm(normal)
        c = np.asarray(organ.centre) + semi * u + (r + gap) * normal
        if lesion.kind == "extramedullary":
            if self.anatomy.bone_sdf(c)[0] < r + EMD_MIN_BONE_DISTANCE_MM:
                return None
            if not np.all(self._tissues(_ball_points(c, r)) == SOFT):
                return None
        elif lesion.kind == "intramedullary":
            if self.anatomy.bone_sdf(c, lesion.site)[0] > -(self.anatomy.cortex_mm + r):
                return None
        elif not ((self._tissues(_ball_points(c, r)) != AIR).all() and 0.3 <= self._bone_fraction(c, r) <= 0.7):
            return None
        # the named organ lies exactly gap away; every other organ with uptake at least as far
        return None if self._touches_physiology(c, r + gap - 1e-6) else c

    def _bone_fraction(self, c: np.ndarray, r: float) -> float:
        """Fraction of the lesion's PET voxels whose centres are in bone."""
        sl, inside = self.grid.sphere_crop(c, r)
        axes = [ax[s] for ax, s in zip(self.grid.axes(), sl)]
        tissue = self.anatomy.tissue_at(axes[0][:, None, None], axes[1][None, :, None],
                                        axes[2][None, None, :])
        n = int(inside.sum())
        return float(((tissue == CORTEX) | (tissue == MARROW))[inside].sum() / n) if n else 0.0

    def _surface_point(self, bone: Any) -> tuple[np.ndarray, np.ndarray] | None:
        """A random point on a bone's surface and the outward normal there (Newton projection)."""
        lo, hi = bone.box()
        p = self.rng.uniform(lo - 20.0, hi + 20.0)
        h = 1e-4
        for _ in range(6):
            d = float(bone.sdf(*p))
            grad = np.array([(bone.sdf(*(p + h * e)) - bone.sdf(*(p - h * e))) / (2 * h) for e in np.eye(3)])
            norm = np.linalg.norm(grad)
            if norm < 1e-9:
                return None
            grad /= norm
            p = p - d * grad
        if abs(float(bone.sdf(*p))) > 1e-6:
            return None
        return p, grad

    def _candidate(self, lesion: LesionSpec, site: str) -> np.ndarray | None:
        r = lesion.radius_mm
        if lesion.kind == "extramedullary":
            code = {"liver": LIVER, "lung": LUNG, "soft_tissue": SOFT}[site]
            shapes = [shp for t, shp in self.anatomy.shapes if t == code and self._in_fov(shp)]
            shape = shapes[self.rng.integers(len(shapes))] if len(shapes) > 1 else shapes[0]
            c = self.rng.uniform(*shape.box())
            if self.anatomy.bone_sdf(c)[0] < r + EMD_MIN_BONE_DISTANCE_MM:
                return None
            if not np.all(self._tissues(_ball_points(c, r)) == code):
                return None
            return c
        bones = [b for s, b in self.anatomy.bones if s == site and self._in_fov(b)]
        bone = bones[self.rng.integers(len(bones))]
        if lesion.kind == "intramedullary":
            lo, hi = bone.box()
            c = self.rng.uniform(lo, hi)
            return c if bone.sdf(*c) <= -(self.anatomy.cortex_mm + r) else None
        surf = self._surface_point(bone)
        if surf is None:
            return None
        s, n = surf
        if lesion.kind == "paramedullary":
            # A little inside the surface: on convex bone a sphere centred on the surface is < 50 % in bone.
            c = s - 0.15 * r * n
            body = self._tissues(_ball_points(c, r)) != AIR
            return c if body.all() and 0.3 <= self._bone_fraction(c, r) <= 0.7 else None
        c = s + (r + lesion.gap_mm) * n  # abutting: the nearest bone surface must be exactly gap_mm away
        if abs(self.anatomy.bone_sdf(c)[0] - (r + lesion.gap_mm)) > 1e-6:
            return None
        return c if (self._tissues(_ball_points(c, r)) != AIR).all() else None

    def place(self, lesion: LesionSpec, max_tries: int = 4000) -> tuple[np.ndarray, str]:
        soft = {"liver": LIVER, "lung": LUNG, "soft_tissue": SOFT}
        available = ({s for s, b in self.anatomy.bones if self._in_fov(b)}
                     | {s for s in SOFT_SITES if any(t == soft[s] and self._in_fov(shp)
                                                     for t, shp in self.anatomy.shapes)})
        sites = [s for s in ([lesion.site] if lesion.site else _SITES_BY_KIND[lesion.kind]) if s in available]
        if not sites:
            raise InputError(f"there is no {lesion.site} in this field of view; choose another site")
        if lesion.near and not any(n == lesion.near and self._in_fov(shp) for n, shp in self.anatomy.near):
            raise InputError(f"there is no {lesion.near} in this field of view to place a lesion next to")
        for _ in range(max_tries):
            site = sites[self.rng.integers(len(sites))]
            c = self._near_candidate(lesion) if lesion.near else self._candidate(lesion, site)
            if c is not None and self._is_free(c, lesion.radius_mm, near=bool(lesion.near)):
                self.placed.append((c, lesion.radius_mm))
                return c, site
        raise InputError(f"could not place a {lesion.kind} lesion of radius {lesion.radius_mm} mm "
                         f"(sites {sites}) in {max_tries} tries; use fewer or smaller lesions or a larger "
                         f"grid")


def _site_of(anatomy: _Anatomy, centre: np.ndarray) -> str:
    """Site name of a user-placed lesion: nearest bone site when near bone, else its tissue."""
    d = {s: anatomy.bone_sdf(centre, s)[0] for s in {site for site, _ in anatomy.bones}}
    nearest = min(d, key=d.get)
    if d[nearest] < EMD_MIN_BONE_DISTANCE_MM:
        return nearest
    tissue = int(anatomy.tissue_at(*centre))
    return {LIVER: "liver", LUNG: "lung"}.get(tissue, "soft_tissue")


def organ_lesions_for(seed: int = 0) -> tuple[LesionSpec, ...]:
    """One lesion next to each organ a physiology-exclusion rule must not swallow (deterministic
    in ``seed``): a node beside the bladder, a mediastinal node beside the heart, a node beside a
    kidney, a skull-base marrow lesion below the brain and a liver lesion. SUV 6–12, so that each
    is found at SUV ≥ 4 after a 6.5 mm PSF; gaps 3–6 mm (less than the PSF FWHM: blur joins them)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 3]))

    def suv() -> float:
        return float(np.round(rng.uniform(6.0, 12.0), 2))

    def gap() -> float:
        return float(np.round(rng.uniform(3.0, 6.0), 1))

    return (LesionSpec("extramedullary", 9.0, suv(), near="bladder", organ_gap_mm=gap()),
            LesionSpec("extramedullary", 9.0, suv(), near="myocardium", organ_gap_mm=gap()),
            LesionSpec("extramedullary", 9.0, suv(), near="kidney", organ_gap_mm=gap()),
            LesionSpec("intramedullary", 6.0, suv(), near="brain", organ_gap_mm=12.0),
            LesionSpec("extramedullary", 10.0, suv(), site="liver"))


def _organ_of(lesion: LesionSpec) -> str | None:
    return lesion.near or (lesion.site if lesion.site == "liver" else None)


def organs_in_fov(spec: PhantomSpec) -> list[str]:
    """Organs (``NEAR_ORGANS`` and the liver) that a phantom of ``spec`` holds in its field of view,
    from the analytic layout (nothing is rasterised)."""
    body = _pet_grid(spec)
    anatomy = _build_anatomy(body, spec)
    z = _crop_z(body, _fov_window(anatomy, spec.fov)).axes()[2]
    shapes = list(anatomy.near) + [("liver", shp) for t, shp in anatomy.shapes if t == LIVER]
    return sorted({name for name, shp in shapes if shp.z_range[1] >= z[0] and shp.z_range[0] <= z[-1]})


# ---------------------------------------------------------------------------------------------
# The phantom
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Phantom:
    """A made phantom: images, truth masks and the truth record.

    Attributes
    ----------
    pet : Volume
        float32 SUVbw on the PET grid.
    ct : Volume
        int16 HU on the CT grid.
    lesion_labels : Volume
        int32 on the PET grid; lesion ``id`` (1..n) where the voxel centre is inside the sphere.
    organs : dict of str to Volume
        bool masks on the PET grid: body, lungs, liver, aorta, bone (cortex + marrow), cortex,
        marrow and, when physiological uptake is on, brain, skull, salivary, tonsils, heart,
        myocardium, kidneys, renal_pelves, ureters, bladder and bowel (wall and lumen).
    truth : dict
        JSON-serialisable: grids, spec, organ SUVs, reference VOIs and one record per lesion
        (``class`` 'disease'); with physiological uptake also ``physiology`` (one record per organ,
        ``class`` 'physiology', its ``label`` in ``physiology_labels``), ``physiology_summary`` and
        ``fov`` (the organs and bone sites in the field of view).
    spec : PhantomSpec
    physiology_labels : Volume or None
        int32 on the PET grid: the ``label`` of the physiology record each voxel belongs to (0 for
        none); disjoint from ``lesion_labels``. None without physiological uptake.
    """

    pet: Volume
    ct: Volume
    lesion_labels: Volume
    organs: dict[str, Volume]
    truth: dict[str, Any]
    spec: PhantomSpec
    physiology_labels: Volume | None = None

    @property
    def exclude(self) -> Volume | None:
        """The ideal physiological-uptake exclusion mask on the PET grid: every physiology voxel,
        dilated by the PSF FWHM to cover its blur, less the lesion voxels (None without physiology)."""
        if self.physiology_labels is None:
            return None
        mask = self.physiology_labels.array > 0
        margin = self.spec.psf_fwhm_mm
        if margin > 0:
            from scipy import ndimage

            # Cover the blurred spill-over: dilate by the FWHM (an ellipsoidal ball in voxels).
            rad = [max(1, math.ceil(margin / s)) for s in self.pet.spacing]
            g = np.ogrid[tuple(slice(-r, r + 1) for r in rad)]
            ball = sum((gi / ri) ** 2 for gi, ri in zip(g, rad)) <= 1.0
            mask = ndimage.binary_dilation(mask, structure=ball)
        return self.pet.with_array(mask & (self.lesion_labels.array == 0), units="mask", modality="SEG")

    def write_nifti(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``pet.nii.gz`` (SUV), ``ct.nii.gz`` (HU), ``lesions.nii.gz``, ``truth.json`` and,
        with physiological uptake, ``exclude.nii.gz`` and ``physiology.nii.gz`` (organ labels).
        Returns their paths."""
        from carpet.io.nifti import write_nifti

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"pet": write_nifti(self.pet, out / "pet.nii.gz"),
                 "ct": write_nifti(self.ct, out / "ct.nii.gz"),
                 "lesions": write_nifti(self.lesion_labels, out / "lesions.nii.gz")}
        exclude = self.exclude
        if exclude is not None:
            paths["exclude"] = write_nifti(exclude, out / "exclude.nii.gz", dtype=np.uint8)
            paths["physiology"] = write_nifti(self.physiology_labels, out / "physiology.nii.gz")
        paths["truth"] = out / "truth.json"
        paths["truth"].write_text(json.dumps(self.truth, indent=2))
        return paths

    def write_dicom(self, out_dir: str | Path) -> dict[str, Path]:
        """Write the PET (Bq/mL, full SUV header) and CT (HU) as DICOM series; see
        :func:`carpet.synth.dicom.write_phantom_dicom`."""
        from carpet.synth.dicom import write_phantom_dicom

        return write_phantom_dicom(self, out_dir)


def _lesion_records(lesions: list[tuple[LesionSpec, np.ndarray, str]], labels: Volume,
                    bone: np.ndarray, anatomy: _Anatomy) -> list[dict[str, Any]]:
    """Per-lesion truth from the ideal label map (voxel counts, bone fraction, voxel centroid) and
    from the analytic geometry (``bone_distance_mm``: sphere surface to bone surface, 0 when they
    touch or overlap).

    ``tlg`` is that of the ideal image (every lesion voxel at the lesion's SUV), in mL·SUV.
    """
    from scipy import ndimage

    n_labels = len(lesions) + 1
    counts = np.bincount(labels.array.ravel(), minlength=n_labels)
    in_bone = np.bincount(labels.array[bone].ravel(), minlength=n_labels)
    boxes = ndimage.find_objects(labels.array, max_label=n_labels - 1)
    voxel_ml = labels.voxel_volume_ml
    records = []
    for lid, (lesion, centre, site) in enumerate(lesions, start=1):
        n = int(counts[lid])
        centroid = None  # a sphere smaller than the voxel pitch can hold no voxel centre (JSON null)
        if n:  # voxel centroid, from the lesion's bounding box only
            box = boxes[lid - 1]
            idx = np.argwhere(labels.array[box] == lid) + [s.start for s in box]
            centroid = [float(c) for c in labels.index_to_world(idx.mean(axis=0))]
        records.append({"id": lid, "class": "disease", "kind": lesion.kind, "site": site,
                        "near": lesion.near, "organ_gap_mm": lesion.organ_gap_mm if lesion.near else None,
                        "centre_mm": [float(c) for c in centre], "radius_mm": lesion.radius_mm,
                        "suv": lesion.suv, "gap_mm": lesion.gap_mm if lesion.kind == "abutting" else None,
                        "n_voxels": n, "volume_ml": n * voxel_ml, "tlg": n * voxel_ml * lesion.suv,
                        "centroid_mm": centroid,
                        "bone_fraction": float(in_bone[lid] / n) if n else 0.0,
                        "bone_distance_mm": max(0.0, float(anatomy.bone_sdf(centre)[0]) - lesion.radius_mm)})
    return records


def _summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Patient totals of the ideal image, named as in ``summary.json`` of ``carpet quantify``."""
    from scipy.spatial.distance import pdist

    # Dmax between lesions that hold voxels, as a measurement of the ideal image would see them
    centroids = np.array([r["centroid_mm"] for r in records if r["n_voxels"]]).reshape(-1, 3)
    kinds = [r["kind"] for r in records]
    return {"n_lesions": len(records),
            "mtv_ml": float(sum(r["volume_ml"] for r in records)),
            "tlg": float(sum(r["tlg"] for r in records)),
            "suv_max": float(max((r["suv"] for r in records), default=0.0)),
            "dmax_mm": float(pdist(centroids).max()) if len(centroids) > 1 else 0.0,
            **{f"n_{kind}": kinds.count(kind) for kind in LESION_KINDS}}


def _rasterise_tissue(anatomy: _Anatomy, grid: _Grid, slab: int = 16) -> np.ndarray:
    """Tissue codes at every voxel centre, a slab of slices at a time (bounded memory)."""
    x, y, z = grid.axes()
    out = np.empty(grid.shape, dtype=np.uint8)
    for k0 in range(0, grid.shape[2], slab):
        zs = z[k0:k0 + slab]
        out[:, :, k0:k0 + slab] = anatomy.tissue_at(x[:, None, None], y[None, :, None], zs[None, None, :])
    return out


def _paint_lesions(target: np.ndarray, grid: _Grid, lesions: list[tuple[LesionSpec, np.ndarray, str]],
                   values: Any) -> np.ndarray:
    """Set ``target`` to ``values[n]`` inside lesion sphere ``n`` (0-based), one bounding-box crop
    per lesion; returns ``target``."""
    for n, (lesion, centre, _) in enumerate(lesions):
        sl, inside = grid.sphere_crop(centre, lesion.radius_mm)
        target[sl][inside] = values[n]
    return target


def _place_lesions(spec: PhantomSpec, anatomy: _Anatomy, grid: _Grid,
                   rng: np.random.Generator) -> list[tuple[LesionSpec, np.ndarray, str]]:
    """(lesion, centre_mm, site) for every lesion of the spec, in its order.

    User-placed lesions go first, so that automatic placement keeps clear of them.
    """
    placer = _Placer(anatomy, grid, spec, rng)
    placed: dict[int, tuple[np.ndarray, str]] = {}
    for idx, lesion in enumerate(spec.lesions):
        if lesion.centre_mm is not None:
            c = np.asarray(lesion.centre_mm, dtype=float)
            if not grid.contains_sphere(c, lesion.radius_mm, margin_voxels=0):
                raise InputError(f"lesion {idx + 1} (centre {lesion.centre_mm} mm, radius {lesion.radius_mm} "
                                 f"mm) does not fit in the PET field of view")
            placer.placed.append((c, lesion.radius_mm))
            placed[idx] = (c, lesion.site or _site_of(anatomy, c))
    for idx, lesion in enumerate(spec.lesions):
        if lesion.centre_mm is None:
            placed[idx] = placer.place(lesion)
    return [(lesion, *placed[idx]) for idx, lesion in enumerate(spec.lesions)]


def _grid_record(grid: _Grid) -> dict[str, Any]:
    return {"shape": list(grid.shape), "spacing_mm": list(grid.spacing), "origin_mm": list(grid.origin),
            "direction": np.eye(3).ravel().tolist()}


def make_phantom(spec: PhantomSpec) -> Phantom:
    """Build the phantom described by ``spec`` (deterministic in it).

    Returns
    -------
    Phantom
        PET (SUVbw), CT (HU), lesion label map, organ masks and the truth record; with
        ``physiological_uptake`` also the physiology label map.
    """
    body_grid = _pet_grid(spec)
    anatomy = _build_anatomy(body_grid, spec)
    pet_grid = _crop_z(body_grid, _fov_window(anatomy, spec.fov))
    ct_grid = _ct_grid(spec, pet_grid)
    place_seq, noise_seq = np.random.SeedSequence(spec.seed).spawn(2)
    lesions = _place_lesions(spec, anatomy, pet_grid, np.random.default_rng(place_seq))

    tissue = _rasterise_tissue(anatomy, pet_grid)
    labels = _paint_lesions(np.zeros(pet_grid.shape, np.int32), pet_grid, lesions,
                            range(1, len(lesions) + 1))

    suv_of = _tissue_suv(spec)
    lut = np.array([suv_of[c] for c in range(len(TISSUE_NAMES))], dtype=np.float32)
    suv = _paint_lesions(lut[tissue], pet_grid, lesions, [lesion.suv for lesion, _, _ in lesions])
    suv = _blur_and_noise(suv, pet_grid.spacing, spec, np.random.default_rng(noise_seq))

    ct_tissue = tissue if ct_grid is pet_grid else _rasterise_tissue(anatomy, ct_grid)
    hu_lut = np.array([TISSUE_HU[c] for c in range(len(TISSUE_NAMES))], dtype=np.int16)
    # Lesions are lytic (40 HU) wherever they are: where they cross the cortex it is destroyed.
    hu = _paint_lesions(hu_lut[ct_tissue], ct_grid, lesions, [LESION_HU] * len(lesions))

    organs = {"body": tissue != AIR, "lungs": tissue == LUNG, "liver": tissue == LIVER,
              "aorta": tissue == BLOOD, "bone": (tissue == CORTEX) | (tissue == MARROW),
              "cortex": tissue == CORTEX, "marrow": tissue == MARROW}
    physiology = None
    if spec.physiological_uptake:
        organs.update(_physiology_organs(tissue, organs["bone"], pet_grid, anatomy))
        physiology = _physiology_labels(tissue, pet_grid, labels)

    records = _lesion_records(lesions, pet_grid.volume(labels), organs["bone"], anatomy)
    truth = {
        "grid": _grid_record(pet_grid),
        "ct_grid": _grid_record(ct_grid),
        "spec": spec.to_dict(),
        "organ_suv": {TISSUE_NAMES[c]: float(v) for c, v in suv_of.items()
                      if spec.physiological_uptake or (c < BRAIN_WM and c not in HOT_TISSUES)},
        "tissue_hu": {TISSUE_NAMES[c]: int(v) for c, v in TISSUE_HU.items()
                      if spec.physiological_uptake or c < BRAIN_WM},
        "liver_voi": {"centre_mm": list(anatomy.liver_voi_mm), "radius_mm": LIVER_VOI_RADIUS_MM},
        "aorta_voi": {"centre_mm": list(anatomy.aorta_voi_mm), "radius_mm": AORTA_VOI_RADIUS_MM},
        "notes": "lesion SUV, TLG and totals describe the image before PSF blur and noise",
        "lesions": records,
        "summary": _summary(records),
        "provenance": provenance(method="carpet.synth.phantom", seed=spec.seed,
                                 lesion_rule="voxel centre within radius (|x-c|^2 <= r^2)"),
    }
    if physiology is not None:
        organ_records = _physiology_records(physiology, tissue, pet_grid, suv_of)
        truth["fov"] = _fov_record(spec.fov, pet_grid, organs, anatomy)
        truth["physiology"] = organ_records
        truth["physiology_summary"] = {
            "n_components": len(organ_records),
            "volume_ml": float(sum(r["volume_ml"] for r in organ_records)),
            "hot_volume_ml": float(sum(r["hot_volume_ml"] for r in organ_records)),
            "notes": "ideal image (before PSF blur and noise); hot = SUV >= 4"}
    return Phantom(
        pet=pet_grid.volume(suv.astype(np.float32), modality="PT", units="SUVbw"),
        ct=ct_grid.volume(hu, modality="CT", units="HU"),
        lesion_labels=pet_grid.volume(labels, modality="SEG", units="label"),
        organs={name: pet_grid.volume(mask, modality="SEG", units="mask", organ=name)
                for name, mask in organs.items()},
        truth=truth, spec=spec,
        physiology_labels=None if physiology is None else pet_grid.volume(physiology, modality="SEG",
                                                                          units="label"))


def _tissue_suv(spec: PhantomSpec) -> dict[int, float]:
    """SUVbw of each tissue code in the ideal image."""
    return {AIR: 0.0, SOFT: spec.soft_tissue_suv, LUNG: spec.lung_suv, LIVER: spec.liver_suv,
            BLOOD: spec.blood_pool_suv, KIDNEY: spec.kidney_suv, BLADDER: spec.bladder_suv,
            BRAIN: spec.brain_suv, CORTEX: spec.cortex_suv, MARROW: spec.marrow_suv,
            BRAIN_WM: 0.35 * spec.brain_suv, MYOCARDIUM: spec.myocardium_suv, HEART_BLOOD: spec.blood_pool_suv,
            RENAL_PELVIS: spec.renal_pelvis_suv, URETER: spec.ureter_suv, PAROTID: spec.salivary_suv,
            SUBMANDIBULAR: spec.salivary_suv, TONSIL: spec.tonsil_suv, BOWEL: spec.bowel_suv, GAS: 0.0,
            FLUID: spec.soft_tissue_suv}


def _physiology_labels(tissue: np.ndarray, grid: _Grid, lesion_labels: np.ndarray) -> np.ndarray:
    """Label ``n`` (1-based, the row of :data:`PHYSIOLOGY_ORGANS`) on every voxel of organ n; 0 elsewhere
    and on lesion voxels (a user-placed lesion may overlap an organ: the truth then calls it disease)."""
    lut = np.zeros((len(TISSUE_NAMES), 2), dtype=np.int32)  # [code, patient's left?]
    for label, (_, codes, side) in enumerate(PHYSIOLOGY_ORGANS, start=1):
        for code in codes:
            lut[code, [0, 1] if side == 0 else [int(side > 0)]] = label
    left = (grid.axes()[0] > 0).astype(np.intp)[:, None, None]
    out = lut[tissue, left]
    out[lesion_labels > 0] = 0
    return out


def _physiology_records(physiology: np.ndarray, tissue: np.ndarray, grid: _Grid,
                        suv_of: dict[int, float]) -> list[dict[str, Any]]:
    """One truth record per organ with voxels in the field of view: exact voxel counts of the ideal
    image, its SUVmax and mean, the volume at SUV >= 4 (what a global SUV 4 threshold would add)."""
    n_codes, n_labels = len(TISSUE_NAMES), len(PHYSIOLOGY_ORGANS) + 1
    idx = np.nonzero(physiology)
    lab_of = physiology[idx].astype(np.int64)
    # voxels per (label, tissue code), and index sums for the centroids, over organ voxels only
    counts = np.bincount(lab_of * n_codes + tissue[idx], minlength=n_labels * n_codes).reshape(n_labels, n_codes)
    index_sums = np.stack([np.bincount(lab_of, weights=i, minlength=n_labels) for i in idx], axis=1)
    present = [lab for lab in range(1, n_labels) if counts[lab].sum()]
    centroids = [index_sums[lab] / counts[lab].sum() for lab in present]
    voxel_ml = float(np.prod(grid.spacing)) / 1000.0
    suv = np.array([suv_of[c] for c in range(n_codes)])
    records = []
    for lab, centroid in zip(present, centroids):
        organ, codes, _ = PHYSIOLOGY_ORGANS[lab - 1]
        n = int(counts[lab].sum())
        codes_in = [c for c in codes if counts[lab, c]]
        hot = int(counts[lab][suv >= 4.0].sum())
        records.append({"label": lab, "organ": organ, "class": "physiology",
                        "tissues": [TISSUE_NAMES[c] for c in codes_in],
                        "n_voxels": n, "volume_ml": n * voxel_ml,
                        "suv_max": float(max(suv[c] for c in codes_in)),
                        "suv_mean": float(counts[lab] @ suv / n),
                        "hot_volume_ml": hot * voxel_ml, "hot": bool(hot),
                        "hu": int(TISSUE_HU[codes_in[0]]),
                        "centroid_mm": [float(o + sp * c) for o, sp, c in zip(grid.origin, grid.spacing, centroid)]})
    return records


def _physiology_organs(tissue: np.ndarray, bone: np.ndarray, grid: _Grid, anatomy: _Anatomy) -> dict[str, np.ndarray]:
    """Organ masks of the physiological phantom (landmarks for reference regions and sites)."""
    def any_of(*codes: int) -> np.ndarray:
        return np.isin(tissue, codes)

    masks = {"brain": any_of(BRAIN, BRAIN_WM), "bladder": tissue == BLADDER, "kidneys": tissue == KIDNEY,
             "renal_pelves": tissue == RENAL_PELVIS, "ureters": tissue == URETER,
             "myocardium": tissue == MYOCARDIUM, "heart": any_of(MYOCARDIUM, HEART_BLOOD),
             "salivary": any_of(PAROTID, SUBMANDIBULAR), "tonsils": tissue == TONSIL,
             "bowel": any_of(BOWEL, GAS, FLUID)}
    landmarks = dict(anatomy.landmarks)
    if "skull_base" in landmarks:  # no bone but the skull lies above the skull base
        masks["skull"] = bone & (grid.axes()[2] >= landmarks["skull_base"] - 1.0)[None, None, :]
    return masks


#: Organ masks whose presence ``truth['fov']`` reports (landmarks of a field of view).
_FOV_ORGANS = ("brain", "skull", "salivary", "lungs", "heart", "liver", "kidneys", "bladder", "bowel")


def _fov_record(fov: str, grid: _Grid, organs: dict[str, np.ndarray], anatomy: _Anatomy) -> dict[str, Any]:
    z = grid.axes()[2]
    present = [n for n in _FOV_ORGANS if n in organs and organs[n].any()]
    sites = sorted({s for s, b in anatomy.bones if b.z_range[1] >= z[0] and b.z_range[0] <= z[-1]})
    return {"name": fov, "z_range_mm": [float(z[0] - grid.spacing[2] / 2), float(z[-1] + grid.spacing[2] / 2)],
            "organs_present": present, "organs_absent": [n for n in _FOV_ORGANS if n not in present],
            "bone_sites_present": sites}


def _blur_and_noise(suv: np.ndarray, spacing: tuple[float, float, float], spec: PhantomSpec,
                    rng: np.random.Generator) -> np.ndarray:
    """Gaussian PSF (FWHM in mm → sigma in voxels per axis), then noise.

    ``'multiplicative'``: each voxel times ``1 + noise_rel_sd·N(0, 1)``. ``'poisson'``: Poisson-like,
    ``SUV + sd·n`` with the variance proportional to the SUV (as for counts), scaled so that
    the relative SD is ``noise_rel_sd`` at the liver's SUV: hot organs are relatively quieter, cold
    tissue noisier. ``n`` is unit-variance noise correlated over the PSF, as reconstructed PET noise
    is (white noise smoothed by the PSF, then rescaled): blobs, not salt and pepper. (The normal
    approximation of Poisson counts: numpy's Poisson sampler is several times slower on a whole-body grid.)
    """
    sigma = [spec.psf_fwhm_mm / (2.0 * math.sqrt(2.0 * math.log(2.0))) / s for s in spacing]
    if spec.psf_fwhm_mm > 0:
        from scipy import ndimage

        # 'reflect' keeps the activity that reaches the field-of-view edge inside it.
        suv = ndimage.gaussian_filter(suv.astype(np.float64), sigma, mode="reflect")
    if spec.noise_rel_sd > 0 and spec.noise_model == "poisson":
        sd = np.sqrt(np.clip(suv, 0.0, None) * spec.liver_suv) * spec.noise_rel_sd
        suv = np.clip(suv + sd * _correlated_noise(suv.shape, sigma, rng), 0.0, None)
    elif spec.noise_rel_sd > 0:
        suv = suv * (1.0 + spec.noise_rel_sd * rng.standard_normal(suv.shape))
        suv = np.clip(suv, 0.0, None)
    return suv.astype(np.float32)


def _correlated_noise(shape: tuple[int, ...], sigma: list[float], rng: np.random.Generator) -> np.ndarray:
    """Unit-variance Gaussian noise smoothed by a Gaussian of ``sigma`` voxels (float32). The variance
    of smoothed white noise is the sum of the squared kernel weights: measured on an impulse, divided out."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    if max(sigma) <= 0:
        return noise
    from scipy import ndimage

    impulse = np.zeros([2 * math.ceil(4 * s) + 1 for s in sigma], dtype=np.float64)
    impulse[tuple(n // 2 for n in impulse.shape)] = 1.0
    gain = math.sqrt(float((ndimage.gaussian_filter(impulse, sigma, mode="constant") ** 2).sum()))
    return ndimage.gaussian_filter(noise, sigma, mode="reflect") / np.float32(gain)
