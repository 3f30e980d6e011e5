"""The physiological phantom (``PhantomSpec.patient``): its physiology truth must be what its geometry says.

Independent checks: organ voxel counts by evaluating the organ's defining inequality on every grid
point (not the rasteriser's bounding-box path), gaps between lesions and organs from the analytic
centre (sphere: closed form; ellipsoid: a dense surface sampling) and from voxel centres, field-of-view
crops compared slice by slice with the whole-body phantom they are cut from.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import cKDTree

from carpet.errors import InputError
from carpet.io.nifti import read_nifti
from carpet.synth import LesionSpec, PhantomSpec, make_phantom
from carpet.synth.phantom import (MYOCARDIUM_SUV, PHYSIOLOGY_ORGANS, _build_anatomy, _pet_grid,
                                  organ_lesions_for)

# 400 × 400 × 1600 mm at 5 mm: the whole-body patient, 2 M voxels (fast); ideal image unless stated.
COARSE = dict(pet_shape=(80, 80, 320), pet_spacing_mm=(5.0, 5.0, 5.0), psf_fwhm_mm=0.0, noise_rel_sd=0.0)
VOXEL_ML = 0.125


@pytest.fixture(scope="module")
def patient():
    return make_phantom(PhantomSpec.patient(seed=1, **COARSE))


def grid_points(ph):
    return np.meshgrid(*[o + s * np.arange(n) for o, s, n in zip(ph.pet.origin, ph.pet.spacing, ph.pet.shape)],
                       indexing="ij")


def ellipsoid_count(ph, centre, semi):
    x, y, z = grid_points(ph)
    return int((((x - centre[0]) / semi[0]) ** 2 + ((y - centre[1]) / semi[1]) ** 2
                + ((z - centre[2]) / semi[2]) ** 2 <= 1.0).sum())


def near_shapes(spec):
    """The convex organ surfaces of the layout, by name (the parameters, not the rasteriser)."""
    anatomy = _build_anatomy(_pet_grid(spec), spec)
    return anatomy, {name: [shp for n, shp in anatomy.near if n == name] for name, _ in anatomy.near}


def record(ph, organ):
    return next(r for r in ph.truth["physiology"] if r["organ"] == organ)


def test_organ_volumes_are_exact_voxel_counts(patient):
    labels = patient.physiology_labels.array
    records = patient.truth["physiology"]
    assert {r["organ"] for r in records} == {name for name, _, _ in PHYSIOLOGY_ORGANS}
    for r in records:
        n = int((labels == r["label"]).sum())
        assert r["class"] == "physiology" and r["n_voxels"] == n > 0
        assert r["volume_ml"] == pytest.approx(n * VOXEL_ML)
        values = patient.pet.array[labels == r["label"]]
        assert r["suv_max"] == pytest.approx(values.max()) and r["suv_mean"] == pytest.approx(values.mean())
        assert r["hot_volume_ml"] == pytest.approx((values >= 4).sum() * VOXEL_ML)
    _, shapes = near_shapes(patient.spec)
    brain, bladder, lv = shapes["brain"][0], shapes["bladder"][0], shapes["myocardium"][0]
    # the brain is a 64 mm sphere inside the skull (66 mm), grey rim, white core and deep nuclei alike
    assert record(patient, "brain")["n_voxels"] == ellipsoid_count(patient, brain.centre, (64.0,) * 3)
    assert record(patient, "bladder")["n_voxels"] == ellipsoid_count(patient, bladder.centre, bladder.semi)
    # the myocardium is the left ventricle's shell: outer ellipsoid less the 23 × 20 × 30 mm cavity
    assert record(patient, "myocardium")["n_voxels"] == (ellipsoid_count(patient, lv.centre, lv.semi)
                                                         - ellipsoid_count(patient, lv.centre, (23.0, 20.0, 30.0)))
    assert record(patient, "kidney_left")["n_voxels"] == record(patient, "kidney_right")["n_voxels"]
    for r in records:  # paired organs: the patient's left is +x in LPS
        side = {"left": 1, "right": -1}.get(r["organ"].rsplit("_", 1)[-1])
        assert side is None or np.sign(r["centroid_mm"][0]) == side, r["organ"]
    summary = patient.truth["physiology_summary"]
    assert summary["n_components"] == len(records)
    assert summary["volume_ml"] == pytest.approx((labels > 0).sum() * VOXEL_ML)


def test_physiology_and_disease_are_disjoint_and_labelled(patient):
    lesions, physiology = patient.lesion_labels.array, patient.physiology_labels.array
    assert not ((lesions > 0) & (physiology > 0)).any()
    assert all(les["class"] == "disease" for les in patient.truth["lesions"])
    # with no physiology nor blur nor noise below, SUV >= 4 outside the hot organs is exactly the lesions
    hot_organs = [r["label"] for r in patient.truth["physiology"] if r["hot"]]
    assert np.array_equal((patient.pet.array >= 4) & ~np.isin(physiology, hot_organs), lesions > 0)
    exclude = patient.exclude.array
    assert (exclude[physiology > 0]).all() and not exclude[lesions > 0].any()


def test_lesions_sit_next_to_their_organ_at_the_designed_gap(patient):
    """Analytic gap: sphere surface to organ surface. Voxel gap: nearest lesion voxel centre to the
    organ's voxel centres, at least the designed gap and at most one voxel diagonal more (plus the
    lesion's own sampling); every other organ with uptake is no closer."""
    _, shapes = near_shapes(patient.spec)
    near = [les for les in patient.truth["lesions"] if les["near"]]
    assert [les["near"] for les in near] == ["bladder", "myocardium", "kidney", "brain"]
    pts = np.argwhere(patient.physiology_labels.array > 0)
    world = np.asarray(patient.pet.origin) + pts * np.asarray(patient.pet.spacing)
    organ_of_voxel = np.array([PHYSIOLOGY_ORGANS[lab - 1][0] for lab in patient.physiology_labels.array[tuple(pts.T)]])
    diagonal = float(np.linalg.norm(patient.pet.spacing))
    for les in near:
        c, r, gap = np.asarray(les["centre_mm"]), les["radius_mm"], les["organ_gap_mm"]
        organ = min(shapes[les["near"]], key=lambda s: np.linalg.norm(c - np.asarray(s.centre)))
        u = np.random.default_rng(0).standard_normal((400_000, 3))
        surface = np.asarray(organ.centre) + np.asarray(organ.semi) * (u / np.linalg.norm(u, axis=1)[:, None])
        assert np.linalg.norm(surface - c, axis=1).min() - r == pytest.approx(gap, abs=0.05), les
        lesion_pts = np.argwhere(patient.lesion_labels.array == les["id"])
        lesion_world = np.asarray(patient.pet.origin) + lesion_pts * np.asarray(patient.pet.spacing)
        named = np.isin(organ_of_voxel, [n for n, _, _ in PHYSIOLOGY_ORGANS
                                         if n.startswith(les["near"]) or (les["near"] == "brain" and n == "brain")])
        d_named = cKDTree(world[named]).query(lesion_world)[0].min()
        assert gap <= d_named <= gap + 2 * diagonal, les
        d_other = cKDTree(world[~named]).query(lesion_world)[0].min()
        assert d_other >= gap, les
    brain_lesion = near[-1]
    assert brain_lesion["site"] == "skull" and brain_lesion["kind"] == "intramedullary"
    assert brain_lesion["bone_fraction"] == 1.0
    assert brain_lesion["centre_mm"][2] < record(patient, "brain")["centroid_mm"][2] - 64  # below the brain
    # the sphere brain gives the gap in closed form
    brain_centre = np.asarray(near_shapes(patient.spec)[1]["brain"][0].centre)
    assert (np.linalg.norm(np.asarray(brain_lesion["centre_mm"]) - brain_centre) - 64.0
            - brain_lesion["radius_mm"]) == pytest.approx(12.0)


@pytest.mark.parametrize("seed", range(4))
def test_other_organs_are_no_closer_than_the_named_one(seed):
    """With a 12 mm gap a node beside the bladder or a kidney can reach for a ureter; placement
    must then choose another spot (the ureters are too thin for sample points to see)."""
    lesions = [LesionSpec("extramedullary", 6.0, 8.0, near=near, organ_gap_mm=12.0)
               for near in ("bladder", "kidney", "bladder", "kidney")]
    ph = make_phantom(PhantomSpec.patient(seed=seed, n_lesions=0, organ_lesions=False, lesions=lesions, **COARSE))
    labels = ph.physiology_labels.array
    pts = np.argwhere(labels > 0)
    world = np.asarray(ph.pet.origin) + pts * 5.0
    names = np.array([PHYSIOLOGY_ORGANS[lab - 1][0] for lab in labels[tuple(pts.T)]])
    for les in ph.truth["lesions"]:
        lesion_world = np.asarray(ph.pet.origin) + np.argwhere(ph.lesion_labels.array == les["id"]) * 5.0
        others = ~np.char.startswith(names, les["near"])
        assert cKDTree(world[others]).query(lesion_world)[0].min() >= 12.0, les


def test_a_lesion_drawn_into_an_organ_is_disease_there():
    """A user-placed lesion inside the bladder: its voxels are disease, not bladder, in the truth."""
    bladder = near_shapes(PhantomSpec.patient(**COARSE))[1]["bladder"][0]
    lesion = LesionSpec("extramedullary", 10.0, 9.0, centre_mm=bladder.centre, site="soft_tissue")
    ph = make_phantom(PhantomSpec.patient(seed=0, n_lesions=0, organ_lesions=False, lesions=[lesion], **COARSE))
    n_lesion = ph.truth["lesions"][0]["n_voxels"]
    assert n_lesion > 0 and not ((ph.physiology_labels.array > 0) & (ph.lesion_labels.array > 0)).any()
    assert record(ph, "bladder")["n_voxels"] == ellipsoid_count(ph, bladder.centre, bladder.semi) - n_lesion


def test_random_lesions_keep_clear_of_physiology_and_its_blur():
    ph = make_phantom(PhantomSpec.patient(seed=2, n_lesions=8, **{**COARSE, "psf_fwhm_mm": 6.5}))
    phys = np.argwhere(ph.physiology_labels.array > 0) * np.asarray(ph.pet.spacing) + np.asarray(ph.pet.origin)
    tree = cKDTree(phys)
    clearance = 2 * np.linalg.norm(ph.pet.spacing)
    random = ph.truth["lesions"][len(organ_lesions_for(2)):]
    assert len(random) == 8 and not any(les["near"] for les in random)
    for les in random:
        assert tree.query(les["centre_mm"])[0] > les["radius_mm"] + clearance + 6.5
    # the oracle exclusion covers the organs' blur but never a lesion, even one 3-6 mm from an organ
    exclude, lesions = ph.exclude.array, ph.lesion_labels.array
    assert exclude[ph.physiology_labels.array > 0].all() and not exclude[lesions > 0].any()
    assert exclude.sum() > (ph.physiology_labels.array > 0).sum()


@pytest.mark.parametrize("fov, present, absent", [
    ("pelvis", {"bladder", "bowel"}, {"liver", "kidneys", "heart", "lungs", "brain"}),
    ("thorax", {"lungs", "heart", "liver"}, {"bladder", "brain", "kidneys", "skull"}),
    ("head_to_thorax", {"brain", "skull", "salivary", "heart", "lungs"}, {"kidneys", "bladder"}),
    ("head_to_pelvis", {"brain", "heart", "liver", "kidneys", "bladder"}, set()),
])
def test_fields_of_view_are_slabs_of_one_patient(fov, present, absent):
    whole = make_phantom(PhantomSpec.patient(seed=4, organ_lesions=False, n_lesions=0, **COARSE))
    crop = make_phantom(PhantomSpec.patient(seed=4, fov=fov, organ_lesions=False, n_lesions=0, **COARSE))
    k0 = int(round((crop.pet.origin[2] - whole.pet.origin[2]) / 5.0))
    k1 = k0 + crop.pet.shape[2]
    assert crop.pet.origin[:2] == whole.pet.origin[:2] and 0 < crop.pet.shape[2] < whole.pet.shape[2]
    assert np.array_equal(crop.pet.array, whole.pet.array[:, :, k0:k1])
    assert np.array_equal(crop.ct.array, whole.ct.array[:, :, k0:k1])
    assert np.array_equal(crop.physiology_labels.array, whole.physiology_labels.array[:, :, k0:k1])
    record_fov = crop.truth["fov"]
    assert record_fov["name"] == fov
    assert present <= set(record_fov["organs_present"]) and not absent & set(record_fov["organs_present"])
    assert absent <= set(record_fov["organs_absent"])
    for name in record_fov["organs_present"]:
        assert crop.organs[name].array.any()
    lo, hi = record_fov["z_range_mm"]
    assert hi - lo == pytest.approx(crop.pet.shape[2] * 5.0)
    # organ records: the organs cut by the crop have fewer voxels than in the whole patient
    whole_n = {r["organ"]: r["n_voxels"] for r in whole.truth["physiology"]}
    for r in crop.truth["physiology"]:
        assert 0 < r["n_voxels"] <= whole_n[r["organ"]]
    if fov == "head_to_pelvis":
        assert "femur" in record_fov["bone_sites_present"]  # upper femurs, 4 cm of thigh
        assert crop.pet.shape[2] * 5.0 < 1600 - 500


def test_patient_organ_lesions_follow_the_field_of_view():
    pelvis = PhantomSpec.patient(seed=0, fov="pelvis", **COARSE)
    assert [les.near for les in pelvis.lesions if les.near] == ["bladder"]
    assert len(pelvis.lesions) == 1 + 6  # no liver lesion: the liver is not in a pelvic field of view
    thorax = PhantomSpec.patient(seed=0, fov="thorax", **COARSE)
    assert [les.near for les in thorax.lesions if les.near] == ["myocardium"]
    assert organ_lesions_for(3) == organ_lesions_for(3) != organ_lesions_for(4)
    with pytest.raises(InputError, match="no kidney in this field of view"):
        make_phantom(PhantomSpec.patient(seed=0, fov="thorax", organ_lesions=False, n_lesions=0,
                                         lesions=[LesionSpec("extramedullary", 8.0, 8.0, near="kidney")],
                                         **COARSE))


@pytest.mark.parametrize("level", ["none", "intense"])
def test_myocardium_from_none_to_intense(level):
    ph = make_phantom(PhantomSpec.patient(seed=0, myocardium=level, organ_lesions=False, n_lesions=0, **COARSE))
    myo = record(ph, "myocardium")
    assert myo["suv_max"] == MYOCARDIUM_SUV[level] and myo["hot"] is (MYOCARDIUM_SUV[level] >= 4)
    assert np.all(ph.pet.array[ph.organs["myocardium"].array] == np.float32(MYOCARDIUM_SUV[level]))


def test_ct_is_the_same_anatomy(patient):
    ct, organs = patient.ct.array, patient.organs
    assert (ct[organs["brain"].array] >= 28).all() and (ct[organs["brain"].array] <= 35).all()
    skull = organs["skull"].array & (patient.lesion_labels.array == 0)
    assert skull.sum() > 500 and set(np.unique(ct[skull])) == {250, 1000}
    # the vault: every voxel centre 66-74 mm from the brain's centre, above it, is cortical bone
    x, y, z = grid_points(patient)
    centre = near_shapes(patient.spec)[1]["brain"][0].centre
    d = np.sqrt((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2)
    vault = (d >= 66.0) & (d <= 74.0) & (z > centre[2])
    assert vault.sum() > 500 and (ct[vault] == 1000).all() and organs["skull"].array[vault].all()
    assert (ct[organs["bladder"].array] == 10).all() and (ct[organs["myocardium"].array] == 40).all()
    bowel = organs["bowel"].array
    assert {-950, 10, 40} <= set(np.unique(ct[bowel]))
    # gas lies in front of fluid (supine): mean y (LPS, + is posterior) of gas below that of fluid
    y = np.asarray(patient.pet.origin[1]) + 5.0 * np.argwhere(bowel)[:, 1]
    hu = ct[bowel]
    assert y[hu == -950].mean() < y[hu == 10].mean()


def test_poisson_like_noise_is_relative_to_the_liver():
    spec = PhantomSpec.patient(seed=0, organ_lesions=False, n_lesions=0, **{**COARSE, "noise_rel_sd": 0.12})
    ph = make_phantom(spec)
    for organ, suv in (("liver", 2.0), ("bladder", 15.0)):
        values = ph.pet.array[ndimage.binary_erosion(ph.organs[organ].array)]
        assert values.mean() == pytest.approx(suv, rel=0.02)
        # variance proportional to the mean: relative SD 12 % at the liver, 12 % · √(2/15) in the bladder
        assert values.std() / values.mean() == pytest.approx(0.12 * np.sqrt(2.0 / suv), rel=0.1)
    # through a PSF the noise is correlated over it, at the same per-voxel SD
    blurred = make_phantom(PhantomSpec.patient(seed=0, organ_lesions=False, n_lesions=0,
                                               **{**COARSE, "noise_rel_sd": 0.12, "psf_fwhm_mm": 10.0}))
    ideal = make_phantom(PhantomSpec.patient(seed=0, organ_lesions=False, n_lesions=0,
                                             **{**COARSE, "psf_fwhm_mm": 10.0}))
    core = ndimage.binary_erosion(blurred.organs["liver"].array, iterations=3)
    residual = np.where(core, blurred.pet.array - ideal.pet.array, np.nan)
    assert np.nanstd(residual) / 2.0 == pytest.approx(0.12, rel=0.1)
    pairs = np.isfinite(residual[1:]) & np.isfinite(residual[:-1])
    assert np.corrcoef(residual[1:][pairs], residual[:-1][pairs])[0, 1] > 0.3
    assert abs(np.corrcoef(values[1:], values[:-1])[0, 1]) < 0.1  # white without a PSF


def test_files_and_json(patient, tmp_path):
    paths = patient.write_nifti(tmp_path)
    labels = read_nifti(paths["physiology"])
    assert labels.same_grid(patient.pet) and np.array_equal(labels.array, patient.physiology_labels.array)
    truth = json.loads(paths["truth"].read_text())
    assert truth["physiology"] == patient.truth["physiology"] and truth["fov"]["name"] == "head_to_thigh"


def test_default_phantoms_have_no_physiology_truth():
    ph = make_phantom(PhantomSpec.small(seed=0))
    assert ph.physiology_labels is None and ph.exclude is None
    assert "physiology" not in ph.truth and "fov" not in ph.truth


def test_bad_physiology_specs_are_input_errors():
    with pytest.raises(InputError, match="near must be one of"):
        LesionSpec("extramedullary", 8.0, 8.0, near="liver")
    with pytest.raises(InputError, match="near the brain must be intramedullary or paramedullary"):
        LesionSpec("extramedullary", 8.0, 8.0, near="brain")
    with pytest.raises(InputError, match="organ_gap_mm"):
        LesionSpec("extramedullary", 8.0, 8.0, near="bladder", organ_gap_mm=0)
    with pytest.raises(InputError, match="physiological_uptake=True"):
        PhantomSpec.small(lesions=[LesionSpec("extramedullary", 8.0, 8.0, near="bladder")])
    with pytest.raises(InputError, match="crops a whole-body patient"):
        PhantomSpec.small(fov="pelvis")
    with pytest.raises(InputError, match="fov must be one of"):
        PhantomSpec.patient(fov="legs")
    with pytest.raises(InputError, match="myocardium must be one of"):
        PhantomSpec.patient(myocardium="hot")
    with pytest.raises(InputError, match="noise_model"):
        PhantomSpec.small(noise_model="rician")


def test_a_cropped_field_of_view_writes_dicom_on_its_own_grid(tmp_path):
    from carpet.io.dicom import read_series

    ph = make_phantom(PhantomSpec.patient(seed=0, fov="pelvis", n_lesions=1, **COARSE))
    paths = ph.write_dicom(tmp_path)
    assert read_series(paths["pet_dir"]).same_grid(ph.pet) and read_series(paths["ct_dir"]).same_grid(ph.ct)
