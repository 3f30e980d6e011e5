"""The digital PET/CT phantom: its truth must be what its geometry says.

Independent checks: lesion voxel counts by integer lattice counting (not the crop code), bone
fractions and distances from the masks with a brute-force nearest-voxel search, the finer CT grid
compared sample-by-sample where its voxel centres coincide with the PET's.
"""

from __future__ import annotations

import json
import math

import cc3d
import numpy as np
import pytest
from scipy import ndimage

from carpet.errors import InputError
from carpet.io.nifti import read_nifti
from carpet.synth import LesionSpec, PhantomSpec, make_phantom


@pytest.fixture(scope="module")
def small():
    return make_phantom(PhantomSpec.small(seed=3))


def lattice_count(origin, spacing, shape, centre, radius):
    """Grid points origin + spacing·n (0 <= n < shape) with |x - c| <= r, counted column by column:
    for every (i, j) the k's form one interval, whose length is computed in closed form."""
    total = 0
    (ox, oy, oz), (sx, sy, sz), (nx, ny, nz) = origin, spacing, shape
    for i in range(nx):
        dx = ox + sx * i - centre[0]
        if dx * dx > radius * radius:
            continue
        for j in range(ny):
            dy = oy + sy * j - centre[1]
            rest = radius * radius - dx * dx - dy * dy
            if rest < 0:
                continue
            half = math.sqrt(rest)
            k_lo = max(0, math.ceil((centre[2] - half - oz) / sz))
            k_hi = min(nz - 1, math.floor((centre[2] + half - oz) / sz))
            # Guard the interval ends against rounding in the division, using the defining inequality.
            while k_lo <= k_hi and dx * dx + dy * dy + (oz + sz * k_lo - centre[2]) ** 2 > radius * radius:
                k_lo += 1
            while k_hi >= k_lo and dx * dx + dy * dy + (oz + sz * k_hi - centre[2]) ** 2 > radius * radius:
                k_hi -= 1
            total += max(0, k_hi - k_lo + 1)
    return total


def voxel_centres(volume, mask):
    idx = np.argwhere(mask)
    return np.asarray(volume.origin) + idx * np.asarray(volume.spacing)


def test_small_phantom_images_and_masks(small):
    spec = small.spec
    assert small.pet.shape == (64, 64, 80) and small.pet.spacing == (4.0, 4.0, 4.0)
    assert small.pet.array.dtype == np.float32 and small.pet.meta["units"] == "SUVbw"
    assert small.ct.array.dtype == np.int16 and small.ct.meta["units"] == "HU"
    assert small.lesion_labels.array.dtype == np.int32
    assert small.ct.same_grid(small.pet)
    kinds = [les["kind"] for les in small.truth["lesions"]]
    assert sorted(kinds) == sorted(["intramedullary", "paramedullary", "extramedullary", "abutting"] * 2)
    organs = small.organs
    assert {"body", "lungs", "liver", "aorta", "bone", "cortex", "marrow"} <= set(organs)
    for name in ("lungs", "liver", "aorta", "cortex", "marrow"):
        assert organs[name].array.sum() > 100, name
        assert not (organs[name].array & ~organs["body"].array).any(), name
    assert np.array_equal(organs["bone"].array, organs["cortex"].array | organs["marrow"].array)
    # Background uptakes are the spec's values where no lesion is.
    pet, free = small.pet.array, small.lesion_labels.array == 0
    for name, suv in (("liver", spec.liver_suv), ("aorta", spec.blood_pool_suv), ("marrow", spec.marrow_suv),
                      ("lungs", spec.lung_suv)):
        assert np.allclose(pet[organs[name].array & free], suv), name
    assert np.all(pet[~organs["body"].array] == 0)


def test_lesion_voxel_counts_equal_the_lattice_count(small):
    pet = small.pet
    labels = small.lesion_labels.array
    for les in small.truth["lesions"]:
        expected = lattice_count(pet.origin, pet.spacing, pet.shape, les["centre_mm"], les["radius_mm"])
        assert les["n_voxels"] == expected > 0, les
        assert int((labels == les["id"]).sum()) == expected
        assert les["volume_ml"] == pytest.approx(expected * 0.064)
        # Every labelled voxel centre is within the radius, and the sphere's volume is roughly right.
        d = np.linalg.norm(voxel_centres(pet, labels == les["id"]) - les["centre_mm"], axis=1)
        assert d.max() <= les["radius_mm"] + 1e-9
        assert les["volume_ml"] == pytest.approx(4 / 3 * math.pi * les["radius_mm"] ** 3 / 1000, rel=0.5)
        assert np.all(pet.array[labels == les["id"]] == np.float32(les["suv"]))


def test_lesion_kinds_are_what_their_geometry_says(small):
    labels, organs = small.lesion_labels.array, small.organs
    bone_pts = voxel_centres(small.pet, organs["bone"].array)
    for les in small.truth["lesions"]:
        mask = labels == les["id"]
        fraction = organs["bone"].array[mask].mean()
        assert les["bone_fraction"] == pytest.approx(fraction)
        # Brute force: distance from each lesion voxel centre to the nearest bone voxel centre.
        pts = voxel_centres(small.pet, mask)
        d_bone = np.sqrt(((pts[:, None, :] - bone_pts[None, :, :]) ** 2).sum(-1)).min()
        # The analytic surface-to-surface distance bounds the voxel-centre distance from below.
        diagonal = np.linalg.norm(small.pet.spacing)
        assert les["bone_distance_mm"] - 1e-9 <= d_bone <= les["bone_distance_mm"] + 2 * diagonal
        if les["kind"] == "intramedullary":
            assert fraction == 1.0 and organs["marrow"].array[mask].all()
            assert les["site"] in ("spine", "pelvis")
        elif les["kind"] == "paramedullary":
            assert 0.3 <= fraction <= 0.7
        elif les["kind"] == "extramedullary":
            assert fraction == 0.0 and d_bone >= les["bone_distance_mm"] >= 20.0
            assert les["site"] in ("liver", "lung", "soft_tissue")
        else:  # abutting: no contact, the chosen gap
            assert fraction == 0.0 and les["bone_distance_mm"] == pytest.approx(les["gap_mm"])
        if les["kind"] in ("intramedullary", "paramedullary"):
            assert les["bone_distance_mm"] == 0.0


def test_abutting_gap_is_exact_on_a_fine_ct_grid():
    spec = PhantomSpec.small(seed=1, lesions=[LesionSpec("abutting", 7.0, 6.0, gap_mm=3.0, site="spine")],
                             ct_spacing_mm=(1.0, 1.0, 1.0))
    ph = make_phantom(spec)
    les = ph.truth["lesions"][0]
    bone = ph.ct.array >= 150
    c = np.asarray(les["centre_mm"])
    near = np.zeros_like(bone)
    lo = np.floor((c - 20 - np.asarray(ph.ct.origin)) / 1.0).astype(int)
    sl = tuple(slice(max(0, a), a + 41) for a in lo)
    near[sl] = True
    pts = voxel_centres(ph.ct, bone & near)
    gap = np.linalg.norm(pts - c, axis=1).min() - les["radius_mm"]
    assert les["gap_mm"] <= gap + 1e-9 <= les["gap_mm"] + math.sqrt(3)


def test_global_suv4_threshold_finds_exactly_the_lesions(small):
    components = cc3d.connected_components(small.pet.array >= 4.0, connectivity=26)
    assert components.max() == len(small.truth["lesions"])
    labels = small.lesion_labels.array
    for les in small.truth["lesions"]:
        ids = np.unique(components[labels == les["id"]])
        assert len(ids) == 1 and ids[0] > 0
        assert np.array_equal(components == ids[0], labels == les["id"])


def test_reference_vois_lie_in_their_organs_away_from_lesions(small):
    labels = small.lesion_labels.array
    for key, organ in (("liver_voi", "liver"), ("aorta_voi", "aorta")):
        voi = small.truth[key]
        idx = np.argwhere(np.ones(small.pet.shape, bool))
        d = np.linalg.norm(np.asarray(small.pet.origin) + idx * 4.0 - voi["centre_mm"], axis=1)
        inside = (d <= voi["radius_mm"]).reshape(small.pet.shape)
        assert inside.sum() > 0
        assert small.organs[organ].array[inside].all(), key
        grown = ndimage.binary_dilation(inside, iterations=2)
        assert not (labels[grown] > 0).any(), key


def test_ct_on_a_finer_grid_covers_the_same_field_of_view_and_anatomy():
    third = 4.0 / 3.0
    ph = make_phantom(PhantomSpec.small(seed=3, ct_spacing_mm=(third, third, 4.0)))
    pet, ct = ph.pet, ph.ct
    assert ct.shape == (192, 192, 80)
    fov = lambda v: (np.asarray(v.origin) - np.asarray(v.spacing) / 2,  # noqa: E731
                     np.asarray(v.origin) + (np.asarray(v.shape) - 0.5) * np.asarray(v.spacing))
    for a, b in zip(fov(pet), fov(ct)):
        assert np.allclose(a, b, atol=1e-9)
    # Every third CT voxel centre (offset 1) is a PET voxel centre: tissue must agree there.
    sub = ct.array[1::3, 1::3, :]
    assert np.allclose(ct.index_to_world([1, 1, 0]), pet.origin)
    lesion = ph.lesion_labels.array > 0
    expected_bone = ph.organs["bone"].array & ~lesion
    assert np.array_equal(sub >= 150, expected_bone)
    assert np.array_equal(sub == -800, ph.organs["lungs"].array & ~lesion)
    assert np.array_equal(sub > -1000, ph.organs["body"].array)
    # Lytic lesions and cortical breach: every lesion voxel is 40 HU, also where it crosses the cortex.
    assert np.all(sub[lesion] == 40)


def test_same_seed_same_phantom_other_seed_other_lesions():
    a, b = make_phantom(PhantomSpec.small(seed=7)), make_phantom(PhantomSpec.small(seed=7))
    c = make_phantom(PhantomSpec.small(seed=8))
    assert np.array_equal(a.pet.array, b.pet.array) and np.array_equal(a.ct.array, b.ct.array)
    assert a.truth["lesions"] == b.truth["lesions"]
    centres = lambda ph: [les["centre_mm"] for les in ph.truth["lesions"]]  # noqa: E731
    assert centres(a) != centres(c)


def test_blur_conserves_activity_and_noise_keeps_truth(small):
    blurred = make_phantom(PhantomSpec.small(seed=3, psf_fwhm_mm=8.0))
    assert blurred.truth["lesions"] == small.truth["lesions"]
    assert blurred.pet.array.sum() == pytest.approx(small.pet.array.sum(), rel=1e-3)
    labels = small.lesion_labels.array
    for les in small.truth["lesions"]:
        assert blurred.pet.array[labels == les["id"]].max() < les["suv"]
    noisy = make_phantom(PhantomSpec.small(seed=3, noise_rel_sd=0.1))
    assert noisy.truth["lesions"] == small.truth["lesions"]
    assert np.array_equal(noisy.lesion_labels.array, labels)
    liver = small.organs["liver"].array & (labels == 0)
    values = noisy.pet.array[liver]
    assert not np.allclose(values, small.spec.liver_suv)
    assert values.mean() == pytest.approx(small.spec.liver_suv, rel=0.02)
    assert values.std() / values.mean() == pytest.approx(0.1, rel=0.15)


def test_physiological_uptake_is_hot_and_excluded(tmp_path):
    ph = make_phantom(PhantomSpec.small(seed=2, physiological_uptake=True, psf_fwhm_mm=6.0))
    for name in ("bladder", "kidneys"):
        assert ph.organs[name].array.sum() > 20
    exclude = ph.exclude.array
    raw = make_phantom(PhantomSpec.small(seed=2, physiological_uptake=True))
    assert (raw.pet.array[ph.organs["bladder"].array] > 4).all()
    # Outside the exclusion mask, SUV >= 4 finds exactly the lesions of the ideal image.
    components = cc3d.connected_components((raw.pet.array >= 4) & ~exclude, connectivity=26)
    assert components.max() == len(raw.truth["lesions"])
    assert not (exclude & (raw.lesion_labels.array > 0)).any()
    written = read_nifti(ph.write_nifti(tmp_path)["exclude"])
    assert written.same_grid(ph.pet) and np.array_equal(written.array > 0, exclude)


def test_user_placed_lesion_counts_and_site():
    ph0 = make_phantom(PhantomSpec.small(seed=0, lesions=[]))
    liver_pts = voxel_centres(ph0.pet, ndimage.binary_erosion(ph0.organs["liver"].array, iterations=4))
    centre = tuple(liver_pts[len(liver_pts) // 2] + 0.3)
    lesions = [LesionSpec("extramedullary", 8.0, 9.0, centre_mm=centre),
               LesionSpec("intramedullary", 6.0, 7.0)]
    ph = make_phantom(PhantomSpec.small(seed=0, lesions=lesions))
    les = ph.truth["lesions"][0]
    assert les["site"] == "liver" and les["centre_mm"] == pytest.approx(centre)
    assert les["n_voxels"] == lattice_count(ph.pet.origin, ph.pet.spacing, ph.pet.shape, centre, 8.0)
    gap = np.linalg.norm(np.subtract(ph.truth["lesions"][1]["centre_mm"], centre)) - 14.0
    assert gap >= 2 * np.linalg.norm(ph.pet.spacing)


def test_write_nifti_round_trip(small, tmp_path):
    paths = small.write_nifti(tmp_path)
    pet, ct, labels = read_nifti(paths["pet"]), read_nifti(paths["ct"]), read_nifti(paths["lesions"])
    assert pet.same_grid(small.pet) and ct.same_grid(small.ct)
    assert np.array_equal(pet.array, small.pet.array)
    assert np.array_equal(ct.array, small.ct.array)
    assert np.array_equal(labels.array, small.lesion_labels.array)
    truth = json.loads(paths["truth"].read_text())
    assert truth["lesions"] == small.truth["lesions"]
    assert truth["provenance"]["carpet_version"]
    assert "exclude" not in paths


def test_bad_specs_are_input_errors():
    with pytest.raises(InputError, match="kind"):
        LesionSpec("cortical", 5.0, 6.0)
    with pytest.raises(InputError, match="site"):
        LesionSpec("intramedullary", 5.0, 6.0, site="liver")
    with pytest.raises(InputError, match="ct_spacing_mm"):
        make_phantom(PhantomSpec.small(ct_spacing_mm=(3.0, 3.0, 3.0)))
    with pytest.raises(InputError, match="below 4"):
        PhantomSpec.small(liver_suv=4.5)
    with pytest.raises(InputError, match="could not place"):
        make_phantom(PhantomSpec.small(lesions=[LesionSpec("intramedullary", 30.0, 6.0)]))


def test_whole_body_default_size_and_lesions():
    ph = make_phantom(PhantomSpec.whole_body(seed=0))
    assert ph.pet.shape == (200, 200, 400)
    assert len(ph.truth["lesions"]) == 30
    assert np.unique(ph.lesion_labels.array).size == 31
    components = cc3d.connected_components(ph.pet.array >= 4.0, connectivity=26)
    assert components.max() == 30
    labels, bone = ph.lesion_labels.array, ph.organs["bone"].array
    fraction = {les["id"]: bone[labels == les["id"]].mean() for les in ph.truth["lesions"]}
    for les in ph.truth["lesions"]:
        assert les["bone_fraction"] == pytest.approx(fraction[les["id"]])
        low, high = {"intramedullary": (1, 1), "paramedullary": (0.3, 0.7)}.get(les["kind"], (0, 0))
        assert low <= fraction[les["id"]] <= high, les
    assert "femur" in {les["site"] for les in ph.truth["lesions"]}
    # Whole-body paramedullary lesions have > 1 mL outside bone, so the provisional rule of
    # spec/clinical-rules.md §4.3 (V_out >= 1 mL) can call them paraskeletal.
    para = [les for les in ph.truth["lesions"] if les["kind"] == "paramedullary"]
    assert para and all((1 - les["bone_fraction"]) * les["volume_ml"] > 1.0 for les in para)


def test_truth_centroids_and_patient_totals(small):
    records = small.truth["lesions"]
    labels = small.lesion_labels.array
    centroids = []
    for les in records:
        pts = voxel_centres(small.pet, labels == les["id"])
        assert les["centroid_mm"] == pytest.approx(pts.mean(axis=0).tolist())
        assert les["tlg"] == pytest.approx(small.pet.array[labels == les["id"]].sum() * 0.064, rel=1e-6)
        centroids.append(pts.mean(axis=0))
    dmax = max(math.dist(a, b) for a in centroids for b in centroids)
    summary = small.truth["summary"]
    assert summary["dmax_mm"] == pytest.approx(dmax)
    assert summary["n_lesions"] == 8 and summary["n_paramedullary"] == 2
    assert summary["mtv_ml"] == pytest.approx((labels > 0).sum() * 0.064)
    assert summary["suv_max"] == pytest.approx(small.pet.array.max())


def test_bad_patient_and_placement_inputs_are_input_errors():
    with pytest.raises(InputError, match="weight_kg"):
        PhantomSpec.small(weight_kg=0)
    with pytest.raises(InputError, match="injection_time"):
        PhantomSpec.small(injection_time="9:00")
    with pytest.raises(InputError, match="no femur"):
        make_phantom(PhantomSpec.small(lesions=[LesionSpec("intramedullary", 6.0, 6.0, site="femur")]))
    with pytest.raises(InputError, match="field of view"):
        outside = LesionSpec("extramedullary", 8.0, 6.0, centre_mm=(0, 0, 1000))
        make_phantom(PhantomSpec.small(lesions=[outside]))



def test_more_than_255_lesions_all_reach_a_separate_ct_grid():
    """Regression: CT lesion labels were once uint8, so lesion 256 wrapped to 0 (background HU)
    on a CT grid finer than the PET. 300 user-placed 2 mm lesions on PET voxel centres: each holds
    exactly that PET voxel, and the 2×2×2 CT voxels around it (centres ±1 mm, |d| = √3 mm) are lytic."""
    centres = [(-122.0 + 8 * i, -122.0 + 8 * j, -150.0 + 8 * k)
               for k in range(3) for j in range(10) for i in range(10)]
    lesions = [LesionSpec("extramedullary", 2.0, 6.0, centre_mm=c, site="soft_tissue") for c in centres]
    # PET centres at -126 + 4n and -158 + 4n (64×64×80 at 4 mm); CT at 2 mm.
    ph = make_phantom(PhantomSpec.small(seed=0, lesions=lesions, ct_spacing_mm=(2.0, 2.0, 2.0)))
    bare = make_phantom(PhantomSpec.small(seed=0, lesions=[], ct_spacing_mm=(2.0, 2.0, 2.0)))
    assert len(lesions) > 255
    labels = ph.lesion_labels.array
    assert np.array_equal(np.bincount(labels.ravel(), minlength=301)[1:], np.ones(300, int))
    offsets = np.array([[dx, dy, dz] for dx in (-1, 1) for dy in (-1, 1) for dz in (-1, 1)], float)
    changed = 0
    for n, c in enumerate(centres, start=1):
        assert labels[tuple(np.rint(ph.pet.world_to_index(c)).astype(int))] == n
        idx = np.rint(ph.ct.world_to_index(np.asarray(c) + offsets)).astype(int)
        assert (ph.ct.array[tuple(idx.T)] == 40).all(), n
        changed += n > 255 and (bare.ct.array[tuple(idx.T)] != 40).any()
    assert changed > 0  # some lesion past 255 sits where the background is not 40 HU


def test_voxel_centres_on_the_sphere_surface_are_inside():
    """The truth rule is |x - c|² <= r² (closed ball). A lesion of radius 2 voxels centred on a voxel
    centre has voxels exactly on its surface: integer points with a² + b² + c² <= 4 number
    1 + 6 + 12 + 8 + 6 = 33 (27 with a strict inequality)."""
    lesion = LesionSpec("extramedullary", 8.0, 6.0, centre_mm=(-110.0, -110.0, 2.0), site="soft_tissue")
    ph = make_phantom(PhantomSpec.small(seed=0, lesions=[lesion]))  # centres at -126 + 4n, -158 + 4n
    assert ph.truth["lesions"][0]["n_voxels"] == 33
    assert int((ph.lesion_labels.array == 1).sum()) == 33
    assert int((ph.pet.array == 6.0).sum()) == 33


def test_a_lesion_holding_no_voxel_centre_keeps_the_truth_valid_json(tmp_path):
    """A 1 mm sphere midway between 4 mm voxel centres holds none: n_voxels 0, centroid null (not NaN,
    which strict JSON readers reject), and Dmax is between the lesions that can be seen."""
    lesions = [LesionSpec("extramedullary", 1.0, 6.0, centre_mm=(-120.0, -120.0, 0.0), site="soft_tissue"),
               LesionSpec("extramedullary", 4.0, 6.0, centre_mm=(-110.0, -110.0, 2.0), site="soft_tissue"),
               LesionSpec("extramedullary", 4.0, 6.0, centre_mm=(-110.0, -110.0, 42.0), site="soft_tissue")]
    ph = make_phantom(PhantomSpec.small(seed=0, lesions=lesions))
    first = ph.truth["lesions"][0]
    assert first["n_voxels"] == 0 and first["centroid_mm"] is None
    text = ph.write_nifti(tmp_path)["truth"].read_text()
    truth = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert truth["summary"]["dmax_mm"] == pytest.approx(40.0)
