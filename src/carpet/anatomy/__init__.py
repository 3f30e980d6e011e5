"""Anatomy from CT (and PET): bone, marrow, and the reference regions PET reading compares against.

* :func:`bone_mask` — CT bone as one solid object (cortex and medulla together), the input of lesion-site
  classification (spec ``clinical-rules.md`` §4.3).
* :func:`marrow_mask` — the bone interior without the cortex; :func:`marrow_reference` — diffuse marrow uptake
  in the spine (the IMPeTUs "BM" score, spec §1.2).
* :func:`liver_reference` (3-cm sphere in the right lobe) and :func:`blood_pool_reference` (1 cm × 2 cm cylinder
  in the descending thoracic aorta), PERCIST 1.0 (spec §5.2), placed automatically from CT + PET or given by
  coordinates or a mask.

No library offers these CT heuristics, so they are written here from scipy.ndimage primitives (Euclidean
distance transforms, hole filling, labelling); every step is O(voxels).

Automatic placement — the heuristics and how they fail
------------------------------------------------------
Both placements work on the PET grid (the region is drawn there anyway) with the CT resampled onto it and
Gaussian-smoothed (σ = 1 mm) against low-dose noise. The body is the largest connected region at or above
``-400 HU`` with its in-slice holes filled; the lungs are the air (``< -400 HU``) enclosed by it. Each search
reads only the box where its candidates can lie (the liver: right of the mid-line, from the lung's centroid
down to ``search_below_lung_mm`` below its base; the aorta: the columns between the lungs' centroids over the
thorax's slices; the marrow: the mid-line band) grown by the reach of its tests: the same decisions as over
the whole grid, at the cost of the box.

*Liver*: candidate centres are soft-tissue voxels (``liver_hu``, bone excluded) in the patient's right half
(LPS ``x`` below the body's mid-line), at least one sphere radius plus one voxel from any non-soft-tissue voxel
(the sphere fits in soft tissue), off lesions, at most ``search_below_lung_mm`` caudal to the lowest
lung voxel and not cranial to the lung's centroid (the brain is soft tissue too). CT alone cannot tell liver from muscle without contrast, so the PET decides: the centre is the
candidate with the highest mean SUV in a ball 2 cm wider than the VOI whose coefficient of variation is at most
``max_cov`` and whose mean is within ``plausible_suv`` (the liver is the hottest large homogeneous organ on the
right; the wider ball keeps the sphere ≥ 1 cm inside the organ's blurred edge). Without lung on the CT the
sphere is refused ("no liver in the field of view"): the lung base is what places the liver. Fails when the
field of view starts below the lungs (abdomen only: refused, give the centre), when the liver is smaller than the ball (resection, atrophy), when a homogeneous right-sided structure
is hotter than the liver (a large uniformly avid mass, a hot kidney within ``plausible_suv``), or with diffuse
liver involvement (then the liver is not a valid reference anyway, spec §1.5).

*Blood pool*: thorax slices are those holding both lungs. A column (fixed in-slice position) qualifies when,
in ≥ 80 % of thorax slices, the VOI's disk lies entirely in blood-like soft tissue (``blood_hu``, no lung, no
bone, no lesion), between the two lungs' centroids and posterior to the lungs' centroid (the descending
aorta runs in the posterior mediastinum). The column with the highest median disk SUV within
``plausible_suv`` is the aorta (mediastinal fat, oesophagus and muscle are colder than blood); along it the
``length_mm`` segment agreeing best with the column's median is used. Fails with a hot posterior mediastinal
mass or oesophagitis hotter than blood, when the aorta is narrower than the disk or displaced (aneurysm,
scoliosis), or when the thorax is not in the field of view (then ``usable=False`` with the reason).

Both regions are flagged ``usable=False`` (never silently used) when they hold too few voxels, when the mean SUV
is outside ``plausible_suv`` or when the coefficient of variation exceeds ``max_cov`` (a lesion or an organ
boundary inside the region). Without CT and without ``centre_mm``/``mask``, automatic placement is not
attempted: the region is returned unusable with that reason.
"""

from carpet.anatomy._morphology import (AIR_HU, _axial_axis, _ball_structure, _close_in_box, _close_mm,
                                        _dilate_mm, _erode_mm, _fill_holes_slicewise, _grown_box,
                                        _largest_component, _linear_onto, _mask_on_pet, _masked_mean,
                                        _masked_min, _occupied_box, _reach, _remove_near, _voxel_coords_mm)
from carpet.anatomy.bone import BoneParams, bone_mask, ct_bone, ct_bone_on, marrow_mask
from carpet.anatomy.landmarks import _CtOnPet, ct_tissue_on
from carpet.anatomy.references import (ReferenceRegion, blood_pool_reference, liver_reference,
                                       marrow_reference)

__all__ = ["bone_mask", "ct_bone", "ct_tissue_on", "marrow_mask", "marrow_reference", "liver_reference",
           "blood_pool_reference", "ReferenceRegion", "BoneParams"]
