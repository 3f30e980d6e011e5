"""CT bone/marrow masks and reference regions.

Bone masks are checked against analytic geometry (hand-built CT arrays and the phantom's organ masks);
reference regions against the phantom's organ masks and designed organ SUVs.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from carpet.anatomy import (BoneParams, blood_pool_reference, bone_mask, liver_reference, marrow_mask,
                            marrow_reference)
from carpet.classify import classify_lesions
from carpet.scores.deauville import deauville_from_references, study_deauville
from carpet.scores.impetus import impetus_record
from carpet.scores.metabolic_response import lugano_response, metabolic_complete_response
from carpet.synth import LesionSpec, PhantomSpec, make_phantom
from carpet.volume import Volume


# ---------------------------------------------------------------------------------------------
# bone mask on hand-built CT: a long bone (tube) crossing the whole field of view
# ---------------------------------------------------------------------------------------------
R_OUT, CORTEX = 20.0, 3.0


def tube_ct(spacing, noise_hu=0.0, seed=0, supersample=3):
    """Soft tissue (40 HU) with a tube of cortex (900 HU) around a marrow canal at soft-tissue HU (lytic
    or fatty marrow: only hole filling can make it bone), open at both ends; partial volume by supersampling."""
    n = [int(round(f / s)) for f, s in zip((120.0, 120.0, 60.0), spacing)]
    origin = [-(ni - 1) * s / 2 for ni, s in zip(n, spacing)]
    off = (np.arange(supersample) + 0.5) / supersample - 0.5
    hu = np.zeros(n, np.float32)
    x = origin[0] + spacing[0] * np.arange(n[0])
    y = origin[1] + spacing[1] * np.arange(n[1])
    for dx in off:
        for dy in off:
            r = np.hypot(x[:, None] + dx * spacing[0], y[None, :] + dy * spacing[1])
            hu += np.where((r <= R_OUT) & (r > R_OUT - CORTEX), 900.0, 40.0).astype(np.float32)[:, :, None]
    hu /= supersample ** 2
    if noise_hu:
        hu += np.random.default_rng(seed).normal(0.0, noise_hu, hu.shape).astype(np.float32)
    return Volume(hu, spacing, origin)


def analytic_disk(vol, radius):
    x = vol.origin[0] + vol.spacing[0] * np.arange(vol.shape[0])
    y = vol.origin[1] + vol.spacing[1] * np.arange(vol.shape[1])
    disk = np.hypot(x[:, None], y[None, :]) <= radius
    return np.broadcast_to(disk[:, :, None], vol.shape)


def dice(a, b):
    return 2 * np.sum(a & b) / (a.sum() + b.sum())


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 2.0), (2.0, 2.0, 2.0), (4.0, 4.0, 4.0)])
def test_bone_mask_fills_open_medullary_canal(spacing):
    ct = tube_ct(spacing)
    bone = bone_mask(ct).array
    truth = analytic_disk(ct, R_OUT)
    assert bone.dtype == bool
    assert dice(bone, truth) > 0.93
    # The canal (soft-tissue HU, open at both ends of the field of view) is bone, in every slice.
    assert bone[analytic_disk(ct, R_OUT - CORTEX - max(spacing))].all()
    assert not bone[~analytic_disk(ct, R_OUT + 1.5 * max(spacing))].any()


def test_bone_mask_robust_to_low_dose_noise():
    clean = bone_mask(tube_ct((1.0, 1.0, 2.0))).array
    noisy = bone_mask(tube_ct((1.0, 1.0, 2.0), noise_hu=60.0, seed=4)).array
    assert dice(clean, noisy) > 0.97
    far = ~analytic_disk(tube_ct((1.0, 1.0, 2.0)), R_OUT + 4.0)
    assert noisy[far].sum() == 0                  # no speckles of noise called bone
    # Without smoothing and speckle removal the same noise does leak (the parameters matter).
    raw = bone_mask(tube_ct((1.0, 1.0, 2.0), noise_hu=60.0, seed=4),
                    params=BoneParams(smooth_mm=0.0, min_component_ml=0.0)).array
    assert raw[far].sum() > 0


def test_bone_mask_on_another_grid():
    ct = tube_ct((1.0, 1.0, 2.0))
    pet = Volume(np.zeros((30, 30, 15), np.float32), (4.0, 4.0, 4.0), (-58.0, -58.0, -28.0))
    bone = bone_mask(ct, reference=pet)
    assert bone.same_grid(pet) and bone.array.dtype == bool
    assert dice(bone.array, analytic_disk(pet, R_OUT)) > 0.9


def test_marrow_excludes_cortex():
    ct = tube_ct((1.0, 1.0, 2.0))
    bone = bone_mask(ct)
    marrow = marrow_mask(bone, cortex_mm=CORTEX).array
    assert marrow.any()
    # Within 1.5 CT voxels of the analytic inner cortex surface (the 150-HU threshold on partial-volume
    # voxels puts the bone surface ~1 mm outside the true one); the z ends are eroded too.
    assert not marrow[~analytic_disk(ct, R_OUT - CORTEX + 1.5)].any()
    assert (marrow | ~analytic_disk(ct, R_OUT - CORTEX - 2.0))[:, :, 2:-2].all()
    # With the CT, compact bone (>= 600 HU) is removed even when the erosion is thinner than the cortex.
    thin = marrow_mask(bone, ct, cortex_mm=0.5).array
    assert not thin[ct.array >= 600].any()
    assert (thin | ~analytic_disk(ct, R_OUT - CORTEX - 1.0))[:, :, 1:-1].all()


# ---------------------------------------------------------------------------------------------
# the phantom
# ---------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def phantom(ct_spacing=None, psf=0.0, marrow_suv=1.2, lesions=None, seed=1):
    kw = {} if lesions is None else {"lesions": lesions}
    return make_phantom(PhantomSpec.small(seed=seed, ct_spacing_mm=ct_spacing, psf_fwhm_mm=psf,
                                          noise_rel_sd=0.03 if psf else 0.0, marrow_suv=marrow_suv, **kw))


@pytest.mark.parametrize("ct_spacing", [None, (2.0, 2.0, 2.0)])
def test_phantom_bone_and_marrow_masks(ct_spacing):
    ph = phantom(ct_spacing)
    bone_ct = bone_mask(ph.ct)
    bone = bone_mask(ph.ct, reference=ph.pet)
    truth = ph.organs["bone"].array
    lytic = ph.lesion_labels.array > 0                        # lesions destroy bone on CT
    assert dice(bone.array & ~lytic, truth & ~lytic) > 0.93
    marrow = marrow_mask(bone_ct, ph.ct, reference=ph.pet).array
    true_marrow = ph.organs["marrow"].array
    # Inside the true marrow (exactly on the CT's own grid; a finer CT resampled by majority differs from the
    # phantom's voxel-centre truth in a rim of partial-volume voxels).
    assert np.mean(true_marrow[marrow]) > (0.98 if ct_spacing is None else 0.85)
    assert np.mean(marrow[true_marrow & ~lytic]) > 0.7


@pytest.mark.parametrize("ct_spacing, psf", [(None, 0.0), (None, 6.0), ((2.0, 2.0, 2.0), 6.0)])
def test_automatic_reference_regions_on_phantom(ct_spacing, psf):
    ph = phantom(ct_spacing, psf)
    suv = ph.truth["organ_suv"]
    liver = liver_reference(ph.pet, ph.ct, lesions=ph.lesion_labels)
    assert liver.usable, liver.reason
    assert ph.organs["liver"].array[liver.mask.array].all()
    assert liver.mean == pytest.approx(suv["liver"], rel=0.02)
    assert liver.n_voxels >= 0.8 * (np.pi / 6 * 30.0 ** 3) / 64.0
    blood = blood_pool_reference(ph.pet, ph.ct, lesions=ph.lesion_labels)
    assert blood.usable, blood.reason
    assert ph.organs["aorta"].array[blood.mask.array].all()
    assert blood.mean == pytest.approx(suv["blood"], rel=0.02)
    marrow = marrow_reference(ph.pet, ph.ct, lesions=ph.lesion_labels)
    assert marrow.usable and ph.organs["marrow"].array[marrow.mask.array].all()
    assert marrow.median == pytest.approx(suv["marrow"], rel=0.02)
    assert liver.provenance["placement"] == "automatic" and "carpet_version" in liver.provenance


def test_reference_overrides_and_flags():
    ph = phantom()
    truth_centre = ph.truth["liver_voi"]["centre_mm"]
    liver = liver_reference(ph.pet, centre_mm=truth_centre)                  # coordinates, no CT needed
    assert liver.usable and liver.provenance["placement"] == "coordinates"
    assert liver.mean == pytest.approx(ph.truth["organ_suv"]["liver"], rel=1e-6)
    by_mask = liver_reference(ph.pet, mask=ph.organs["liver"])
    assert by_mask.n_voxels == ph.organs["liver"].array.sum() and by_mask.usable
    none = blood_pool_reference(ph.pet)
    assert not none.usable and "no CT" in none.reason and np.isnan(none.mean)
    in_lung = liver_reference(ph.pet, centre_mm=[-57.6, -3.9, 110.0])        # right lung: implausible SUV
    assert not in_lung.usable and "implausible" in in_lung.reason
    hot = ph.pet.array.copy()
    c = np.round(ph.pet.world_to_index(truth_centre)).astype(int)
    hot[c[0] - 1:c[0] + 2, c[1] - 1:c[1] + 2, c[2] - 1:c[2] + 2] = 8.0        # a lesion inside the sphere
    flagged = liver_reference(ph.pet.with_array(hot), centre_mm=truth_centre)
    assert not flagged.usable and "heterogeneous" in flagged.reason
    d = flagged.to_dict()
    assert d["usable"] is False and "mask" not in d


# ---------------------------------------------------------------------------------------------
# designed uptakes → designed scores; a shrunken follow-up → expected ΔSUVmax and Lugano category
# ---------------------------------------------------------------------------------------------
def _read(ph, lesions_df=None):
    liver = liver_reference(ph.pet, ph.ct, lesions=ph.lesion_labels)
    blood = blood_pool_reference(ph.pet, ph.ct, lesions=ph.lesion_labels)
    marrow = marrow_reference(ph.pet, ph.ct, lesions=ph.lesion_labels)
    ids = np.arange(1, len(ph.truth["lesions"]) + 1)
    suv_max = ndimage.maximum(ph.pet.array, ph.lesion_labels.array, ids)
    sites = classify_lesions(ph.lesion_labels, ph.ct)
    df = pd.DataFrame({"site": sites["site"], "suv_max": suv_max,
                       "deauville": deauville_from_references(suv_max, liver, blood)})
    bm_ds = deauville_from_references([marrow.median], liver, blood)[0]
    return df, bm_ds


LIVER, BLOOD = 2.0, 1.6          # PhantomSpec defaults; liver SUVmax = 2.0 without noise → DS5 above 4.0


def test_designed_uptake_gives_designed_scores():
    lesions = (LesionSpec("intramedullary", 6.0, 3.0),          # liver < 3.0 <= 2 × liver  → DS 4
               LesionSpec("intramedullary", 6.0, 6.0),          # > 2 × liver SUVmax         → DS 5
               LesionSpec("paramedullary", 8.0, 1.8),           # blood < 1.8 <= liver       → DS 3
               LesionSpec("extramedullary", 7.0, 1.5))          # <= blood pool              → DS 2
    ph = phantom(marrow_suv=2.4, lesions=lesions)                 # diffuse marrow above liver → BM 4
    df, bm_ds = _read(ph)
    assert list(df["deauville"]) == [4, 5, 3, 2]
    assert bm_ds == 4 and study_deauville(df["deauville"]) == 5
    rec = impetus_record(df, bm_ds)
    assert (rec.fl_count, rec.fl_count_cat, rec.fl_target_ds) == (3, 1, 5)
    assert rec.paramedullary and rec.paramedullary_ds == 3 and rec.emd and rec.emd_ds == 2
    assert rec.report_string.startswith("BM4 F1(?)DS5 L? P EMD(?)DS2")
    assert metabolic_complete_response(bm_ds, df["deauville"]).met_cr is False


def test_designed_complete_response_by_rule():
    lesions = (LesionSpec("intramedullary", 6.0, 1.9),          # DS 3
               LesionSpec("extramedullary", 7.0, 1.2))          # DS 2
    ph = phantom(marrow_suv=1.4, lesions=lesions)                 # BM 2
    df, bm_ds = _read(ph)
    assert list(df["deauville"]) == [3, 2] and bm_ds == 2
    assert metabolic_complete_response(bm_ds, df["deauville"]).met_cr is True            # ZAMAGNI2021
    assert metabolic_complete_response(bm_ds, df["deauville"], rule="IMWG2016_IMAGING",
                                       mrd_negative=True).met_cr is False                 # DS 3 > 2
    assert metabolic_complete_response(bm_ds, df["deauville"], rule="LUGANO_STYLE").met_cr is True


def test_shrunken_follow_up_gives_expected_delta_and_lugano():
    base_spec = (LesionSpec("intramedullary", 6.0, 10.0), LesionSpec("extramedullary", 9.0, 8.0))
    base = phantom(lesions=base_spec)
    centres = [tuple(les["centre_mm"]) for les in base.truth["lesions"]]
    follow = phantom(lesions=(LesionSpec("intramedullary", 4.0, 5.0, centre_mm=centres[0]),
                              LesionSpec("extramedullary", 5.0, 3.0, centre_mm=centres[1])))
    df0, _ = _read(base)
    df1, bm1 = _read(follow)
    assert df0["suv_max"].max() == pytest.approx(10.0) and df1["suv_max"].max() == pytest.approx(5.0)
    r = lugano_response(df0["suv_max"].max(), df1["suv_max"].max(), list(df1["deauville"]) + [bm1])
    assert r.delta_suv_max_pct == pytest.approx(-50.0)
    assert r.followup_ds == 5 and r.category == "PMR"
    cured = phantom(lesions=(LesionSpec("intramedullary", 4.0, 1.9, centre_mm=centres[0]),))
    df2, bm2 = _read(cured)
    r2 = lugano_response(df0["suv_max"].max(), df2["suv_max"].max(), list(df2["deauville"]) + [bm2])
    assert r2.category == "CMR" and r2.delta_suv_max_pct == pytest.approx(-81.0)


# ---------------------------------------------------------------------------------------------
# carpet quantify: sites, distances and Deauville per lesion; references, IMPeTUs and response in the summary
# ---------------------------------------------------------------------------------------------
def test_quantify_cli_reads_anatomy_and_baseline_response(tmp_path):
    import json

    from typer.testing import CliRunner

    from carpet.cli import app

    base = phantom(lesions=(LesionSpec("intramedullary", 6.0, 10.0), LesionSpec("paramedullary", 8.0, 6.0),
                            LesionSpec("extramedullary", 9.0, 8.0)))
    centres = [tuple(les["centre_mm"]) for les in base.truth["lesions"]]
    follow = phantom(lesions=(LesionSpec("intramedullary", 5.0, 5.0, centre_mm=centres[0]),
                              LesionSpec("extramedullary", 6.0, 4.5, centre_mm=centres[2])))
    runner = CliRunner()
    outs = {}
    for name, ph, extra in (("base", base, []), ("follow", follow, ["--baseline", tmp_path / "base_out"])):
        paths = ph.write_nifti(tmp_path / name)
        outs[name] = tmp_path / f"{name}_out"
        res = runner.invoke(app, ["quantify", str(paths["pet"]), "--ct", str(paths["ct"]), "--out",
                                  str(outs[name]), *map(str, extra)])
        assert res.exit_code == 0, res.output
    table = pd.read_csv(outs["base"] / "lesions.csv").sort_values("centroid_z_mm")
    truth = sorted(base.truth["lesions"], key=lambda les: les["centre_mm"][2])
    expected = {"intramedullary": "bone", "paramedullary": "paramedullary", "extramedullary": "extramedullary"}
    assert list(table["site"]) == [expected[les["kind"]] for les in truth]
    assert {"bone_fraction", "distance_to_bone_mm", "volume_in_bone_ml", "deauville"} <= set(table.columns)
    assert list(table["deauville"]) == [5] * 3                       # SUV 6–10 > 2 × liver SUVmax 2.0
    s = json.loads((outs["base"] / "summary.json").read_text())
    assert (s["n_bone"], s["n_paramedullary"], s["n_extramedullary"]) == (1, 1, 1)
    assert s["site_rule"]["method"] == "site_rule_spec_4_3" and s["site_rule"]["d_contact_mm"] == 6.0  # 1.5 PET voxels of 4 mm
    assert s["reference_regions"]["liver"]["usable"] and s["reference_regions"]["blood_pool"]["usable"]
    assert s["reference_regions"]["liver"]["suv_mean"] == pytest.approx(LIVER, rel=0.02)
    assert s["marrow"]["deauville"] == 2                             # marrow 1.2 <= blood pool 1.6
    assert s["impetus"]["report_string"].startswith("BM2 F1(?)DS5 L? P EMD(?)DS5")
    assert s["metabolic_response"]["ZAMAGNI2021"]["met_cr"] is False
    f = json.loads((outs["follow"] / "summary.json").read_text())
    assert f["response"]["delta_suv_max_pct"] == pytest.approx(-50.0)
    assert f["response"]["category"] == "PMR"                        # DS 5 (5.0 > 4.0), SUVmax halved


def test_close_in_box_equals_whole_array_closing():
    """The closing computed in a box grown by two radii equals the whole-array closing on that box, for
    anisotropic spacings, the in-slice spacing (1e9 mm across slices), radii of both code paths (ball
    morphology and distance transforms) and boxes touching the array's edges."""
    from carpet.anatomy import _close_in_box, _close_mm

    rng = np.random.default_rng(7)
    n_filled = 0
    for _ in range(120):
        shape = tuple(int(n) for n in rng.integers(3, 24, 3))
        mask = rng.random(shape) < rng.uniform(0.05, 0.6)
        spacing = tuple(float(s) for s in rng.choice([0.8, 1.5625, 4.0, 1e9], 3))
        radius = float(rng.choice([0.0, 2.5, 6.0, 20.0]))
        lo = [int(rng.integers(0, n)) for n in shape]
        box = tuple(slice(a, int(rng.integers(a + 1, n + 1))) for a, n in zip(lo, shape))
        whole = _close_mm(mask, radius, spacing)[box]
        assert np.array_equal(_close_in_box(mask, box, radius, spacing), whole)
        n_filled += int((whole & ~mask[box]).sum())
    assert n_filled > 0                                 # the closings did fill gaps


def test_linear_onto_equals_resample_of_a_float_copy():
    """The CT handed to SimpleITK in its own type (int16) and resampled to float32 gives exactly the values of
    resample_to on a float32 copy (SimpleITK interpolates in double either way), outside the CT -1024."""
    from carpet.anatomy import _linear_onto
    from carpet.volume import Volume, resample_to

    rng = np.random.default_rng(3)
    ct = Volume(rng.integers(-1024, 2000, (31, 27, 13)).astype(np.int16), (1.3, 1.1, 2.5), (-3.0, 2.0, 1.0))
    grid = Volume(np.zeros((12, 11, 9), np.float32), (4.0, 4.0, 4.0), (-5.2, 0.7, -3.1))
    got = _linear_onto(ct, grid, -1024.0).array
    want = resample_to(ct.with_array(ct.array.astype(np.float32)), grid, interpolation="linear",
                       default_value=-1024.0).array
    assert got.dtype == np.float32 and got.shape == grid.shape
    assert np.array_equal(got, want)
    assert (got == -1024.0).any() and (np.mod(got, 1.0) != 0).any()   # both outside and interpolated voxels


def test_broadcast_coordinates_give_the_whole_grid_means_and_minima():
    """Line-shaped voxel coordinates (axis-aligned and rotated grids) against the whole-grid coordinates from
    ``index_to_world``: values, masked means and minima."""
    from carpet.anatomy import _masked_mean, _masked_min, _voxel_coords_mm

    rng = np.random.default_rng(5)
    c, s = np.cos(0.3), np.sin(0.3)
    for direction in (np.diag([-1.0, 1.0, 1.0]), np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])):
        vol = Volume(np.zeros((7, 8, 9), np.float32), (2.0, 3.0, 4.0), (10.0, -20.0, 30.0), direction)
        mask = rng.random(vol.shape) < 0.2
        world = vol.index_to_world(np.indices(vol.shape).reshape(3, -1).T).reshape(*vol.shape, 3)
        for row, coord in enumerate(_voxel_coords_mm(vol)):
            full = np.broadcast_to(coord, vol.shape)
            assert np.allclose(full, world[..., row], atol=1e-4)
            assert _masked_mean(coord, mask) == pytest.approx(world[..., row][mask].mean(), abs=1e-4)
            assert _masked_min(coord, mask) == pytest.approx(world[..., row][mask].min(), abs=1e-4)


def test_bowel_gas_below_the_lungs_is_not_lung():
    """Colon gas (≥ 50 mL, wholly below the lungs) used to be 'lung' and put the diaphragm in the pelvis, so
    abdominal lesions were called thorax; a stomach bubble at the lung bases is kept (it overlaps their level)."""
    from carpet.anatomy.landmarks import _lungs_of

    air = np.zeros((40, 40, 60), bool)          # axis 2 is axial
    air[5:15, 10:30, 35:58] = True               # right lung
    air[25:35, 10:30, 35:58] = True              # left lung
    air[15:22, 15:25, 5:15] = True               # colon gas, below the lungs (700 voxels)
    air[26:30, 31:35, 31:37] = True              # stomach bubble reaching the left lung's base level, apart
    air[2, 2, 2] = True                          # speckle
    lungs = _lungs_of(air, axial=2, min_voxels=50)
    assert lungs[10, 20, 40] and lungs[30, 20, 40] and lungs[27, 32, 31]
    assert not lungs[18, 20, 10].any() and not lungs[2, 2, 2]
    assert lungs.sum() == air.sum() - 7 * 10 * 10 - 1
    # the largest region alone is the lung when nothing else is large
    only = np.zeros_like(air)
    only[5:15, 10:30, 35:58] = True
    assert (_lungs_of(only, axial=2, min_voxels=50) == only).all()
