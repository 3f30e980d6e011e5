"""``carpet quantify`` end to end: contract files and columns, methods, user masks, errors."""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from carpet.cli import app
from carpet.io import read_nifti, write_nifti
from carpet.quantify import quantify_study
from carpet.volume import Volume

LESION_CONTRACT = ["lesion_id", "volume_ml", "suv_max", "suv_mean", "suv_peak", "tlg",
                   "centroid_x_mm", "centroid_y_mm", "centroid_z_mm", "site"]
SUMMARY_CONTRACT = ["method", "n_lesions", "mtv_ml", "tlg", "suv_max", "dmax_mm", "n_bone",
                    "n_paramedullary", "n_extramedullary", "provenance"]
PET_SPACING = (4.0, 4.0, 4.0)
BALLS = [((40.0, 60.0, 50.0), 9.0, 6.0), ((110.0, 70.0, 90.0), 6.0, 8.5), ((70.0, 120.0, 40.0), 12.0, 4.5)]


def _ideal_study(shape=(40, 40, 36)):
    """Ideal phantom (no blur, no noise): balls of designed SUV in a background of 1.2."""
    idx = np.indices(shape).reshape(3, -1).T * np.array(PET_SPACING)
    suv = np.full(shape, 1.2, np.float32)
    truth = np.zeros(shape, np.int32)
    for n, (c, r, v) in enumerate(BALLS, start=1):
        inside = (((idx - c) ** 2).sum(axis=1) <= r * r).reshape(shape)
        suv[inside], truth[inside] = v, n
    origin = (-80.0, -60.0, -300.0)
    pet = Volume(suv, PET_SPACING, origin)
    ct_fine = Volume(np.full((80, 80, 72), 40, np.int16), (2.0, 2.0, 2.0), (origin[0] - 1, origin[1] - 1, origin[2] - 1))
    ct_same = Volume(np.full(shape, 40, np.int16), PET_SPACING, origin)
    return pet, truth, ct_same, ct_fine


@pytest.mark.parametrize("grid", ["same", "fine"])
def test_ideal_phantom_suv4_exact(grid):
    pet, truth, ct_same, ct_fine = _ideal_study()
    result = quantify_study(pet, ct=ct_same if grid == "same" else ct_fine, method="suv4")
    table = result.lesions
    assert len(table) == len(BALLS) == result.summary["n_lesions"]
    voxel_ml = np.prod(PET_SPACING) / 1000
    # match segmented lesions to the truth labels by their voxels
    for row in table.itertuples():
        t = np.unique(truth[result.labels.array == row.lesion_id])
        assert len(t) == 1
        n_true = int((truth == t[0]).sum())
        assert row.n_voxels == n_true and row.volume_ml == n_true * voxel_ml
        v = BALLS[t[0] - 1][2]
        assert row.suv_max == pytest.approx(v) and row.suv_mean == pytest.approx(v)
        assert row.tlg == pytest.approx(n_true * v * voxel_ml, rel=1e-9)
        assert row.site == "extramedullary"         # the CT (uniform 40 HU) holds no bone
    cents = np.array([pet.index_to_world(np.argwhere(truth == k).mean(axis=0)) for k in (1, 2, 3)])
    dmax = max(np.linalg.norm(cents[a] - cents[b]) for a in range(3) for b in range(a + 1, 3))
    assert result.summary["dmax_mm"] == pytest.approx(dmax, rel=1e-9)
    assert result.summary["mtv_ml"] == pytest.approx((truth > 0).sum() * voxel_ml)


@pytest.fixture
def study_files(tmp_path):
    pet, truth, _, ct_fine = _ideal_study()
    paths = {"pet": tmp_path / "pet.nii.gz", "ct": tmp_path / "ct.nii.gz", "mask": tmp_path / "mask.nii.gz",
             "exclude": tmp_path / "exclude.nii.gz"}
    write_nifti(pet, paths["pet"])
    write_nifti(ct_fine, paths["ct"])
    write_nifti(pet.with_array(truth.astype(np.uint8)), paths["mask"])
    write_nifti(pet.with_array((truth == 3).astype(np.uint8)), paths["exclude"])
    return paths, truth


def _run(*args):
    return CliRunner().invoke(app, ["quantify", *map(str, args)])


def test_cli_writes_contract_files(study_files, tmp_path):
    paths, truth = study_files
    out = tmp_path / "out"
    res = _run(paths["pet"], "--ct", paths["ct"], "--out", out)
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "lesions.csv")
    assert set(LESION_CONTRACT) <= set(table.columns) and len(table) == 3
    summary = json.loads((out / "summary.json").read_text())
    assert set(SUMMARY_CONTRACT) <= set(summary)
    assert summary["method"] == "suv4" and summary["n_lesions"] == 3
    prov = summary["provenance"]
    assert prov["carpet_version"] and prov["thresholds_suv"] == 4.0
    assert len(prov["inputs"]["pet"]["sha256"]) == 64 and "ct" in prov["inputs"]
    labels = read_nifti(out / "lesions.nii.gz")
    assert labels.array.shape == truth.shape
    counts = np.bincount(labels.array.ravel().astype(int))[1:]
    assert list(counts) == list(table["n_voxels"])
    assert not (out / "methods.csv").exists()


def test_cli_method_all_writes_methods_table(study_files, tmp_path):
    paths, _ = study_files
    out = tmp_path / "all"
    res = _run(paths["pet"], "--method", "all", "--out", out, "--height-cm", 170, "--weight-kg", 70)
    assert res.exit_code == 0, res.output
    methods = pd.read_csv(out / "methods.csv")
    assert list(methods["method"]) == ["suv4", "suv2.5", "pct41", "a50p", "percist", "liver3sd", "mv2", "mv3"]
    # ideal phantom, background 1.2, balls of SUV ≥ 4.5: every method that ran finds the 3 balls
    ok = methods[methods["skipped"].isna()]
    assert (ok["n_lesions"] == 3).all()
    assert methods.loc[methods["method"] == "percist", "skipped"].str.contains("liver").all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sdmax_per_m"] == pytest.approx(summary["dmax_mm"] / 1000 / 1.8097, rel=1e-3)


def test_cli_user_mask_and_exclusion(study_files, tmp_path):
    paths, truth = study_files
    out = tmp_path / "mask"
    res = _run(paths["pet"], "--lesions", paths["mask"], "--exclude", paths["exclude"], "--out", out)
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "lesions.csv")
    assert sorted(table["n_voxels"]) == sorted(int((truth == k).sum()) for k in (1, 2))
    assert json.loads((out / "summary.json").read_text())["method"] == "user_mask"


def test_cli_min_volume_and_connectivity(study_files, tmp_path):
    paths, truth = study_files
    smallest_ml = min((truth == k).sum() for k in (1, 2, 3)) * 0.064
    res = _run(paths["pet"], "--min-volume-ml", smallest_ml + 0.01, "--connectivity", 6, "--out", tmp_path / "m")
    assert res.exit_code == 0, res.output
    assert len(pd.read_csv(tmp_path / "m" / "lesions.csv")) == 2
    # balls of SUV 6, 8.5, 4.5: seeding pct41 at 5 leaves the 4.5 ball out
    res = _run(paths["pet"], "--method", "pct41", "--seed-suv", 5, "--out", tmp_path / "s")
    assert res.exit_code == 0, res.output
    assert len(pd.read_csv(tmp_path / "s" / "lesions.csv")) == 2
    assert json.loads((tmp_path / "s" / "summary.json").read_text())["provenance"]["segmentation"]["seed_suv"] == 5


@pytest.mark.parametrize("args,message", [
    (["--method", "percist"], "liver"),
    (["--method", "suv3"], "unknown method"),
    (["--connectivity", "8"], "connectivity"),
    (["--liver-voi", "1,2", "--method", "liver3sd"], "liver"),
])
def test_cli_errors_are_clear(study_files, tmp_path, args, message):
    paths, _ = study_files
    res = _run(paths["pet"], *args, "--out", tmp_path / "e")
    assert res.exit_code in (1, 2)
    assert message in res.output.lower()


def test_cli_missing_input(tmp_path):
    res = _run(tmp_path / "nope.nii.gz", "--out", tmp_path / "o")
    assert res.exit_code == 1 and "not found" in res.output


# ---------------------------------------------------------------------------------------------
# carpet's digital phantom (carpet.synth): ideal truth
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=[None, (2.0, 2.0, 2.0)], ids=["ct-on-pet-grid", "ct-finer"])
def phantom(request):
    from carpet.synth import PhantomSpec, make_phantom

    return make_phantom(PhantomSpec.small(seed=0, ct_spacing_mm=request.param, psf_fwhm_mm=0,
                                          noise_rel_sd=0))


def test_phantom_suv4_matches_truth(phantom):
    ph = phantom
    truth = {r["id"]: r for r in ph.truth["lesions"]}
    result = quantify_study(ph.pet, ct=ph.ct, method="suv4")
    table, seg = result.lesions, result.labels.array
    assert len(table) == len(truth) == result.summary["n_lesions"]
    voxel_ml = ph.pet.voxel_volume_ml
    true_labels = np.asarray(ph.lesion_labels.array)
    centroids = []
    for row in table.itertuples():
        tid = np.unique(true_labels[seg == row.lesion_id])
        assert len(tid) == 1 and tid[0] > 0                       # one truth lesion, no background
        rec = truth[int(tid[0])]
        assert row.n_voxels == rec["n_voxels"] == (true_labels == tid[0]).sum()
        assert row.volume_ml == rec["n_voxels"] * voxel_ml
        assert row.suv_max == pytest.approx(rec["suv"], abs=1e-5)
        assert row.suv_mean == pytest.approx(rec["suv"], abs=1e-5)
        assert row.tlg == pytest.approx(rec["n_voxels"] * voxel_ml * rec["suv"], rel=1e-6)
        centroids.append(ph.pet.index_to_world(np.argwhere(true_labels == tid[0]).mean(axis=0)))
    c = np.array(centroids)
    dmax = max(np.linalg.norm(a - b) for a in c for b in c)
    assert result.summary["dmax_mm"] == pytest.approx(dmax, rel=1e-9)
    all_vox = ph.pet.index_to_world(np.argwhere(true_labels > 0))
    far = max(np.linalg.norm(all_vox - p, axis=1).max() for p in all_vox)
    assert result.summary["dmax_voxel_mm"] == pytest.approx(far, rel=1e-9)


def test_cli_on_phantom_nifti(phantom, tmp_path):
    paths = phantom.write_nifti(tmp_path / "ph")
    out = tmp_path / "out"
    res = _run(paths["pet"], "--ct", paths["ct"], "--out", out)
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "lesions.csv")
    assert set(LESION_CONTRACT) <= set(table.columns)
    assert len(table) == len(phantom.truth["lesions"])
    summary = json.loads((out / "summary.json").read_text())
    assert set(SUMMARY_CONTRACT) <= set(summary)
    labels = read_nifti(out / "lesions.nii.gz")
    assert labels.same_grid(phantom.pet)


def test_user_mask_seeds_pct41_and_rejects_global_methods():
    pet, truth, _, _ = _ideal_study()
    only_two = pet.with_array((truth == 2).astype(np.uint8))
    result = quantify_study(pet, lesions=only_two, method="pct41")
    # ideal ball of SUV 8.5 on background 1.2: 0.41 × 8.5 > 1.2, so pct41 returns the ball exactly
    assert len(result.lesions) == 1 and result.lesions["n_voxels"].iloc[0] == (truth == 2).sum()
    assert result.summary["provenance"]["segmentation"]["lesions_from"] == "threshold seeded by the user mask"
    from carpet.errors import InputError
    with pytest.raises(InputError, match="pct41 and a50p"):
        quantify_study(pet, lesions=only_two, method="suv4")


def test_min_volume_warning_is_recorded_and_printed(study_files, tmp_path):
    paths, _ = study_files
    res = _run(paths["pet"], "--out", tmp_path / "w")
    assert "no minimum lesion volume" in res.output
    summary = json.loads((tmp_path / "w" / "summary.json").read_text())
    assert any("minimum lesion volume" in w for w in summary["provenance"]["warnings"])


def test_cli_on_phantom_dicom_writes_seg(tmp_path):
    from carpet.io import read_seg
    from carpet.suv import bsa_dubois_m2
    from carpet.synth import PhantomSpec, make_phantom

    ph = make_phantom(PhantomSpec.small(seed=0))
    paths = ph.write_dicom(tmp_path / "dicom")
    out = tmp_path / "out"
    res = _run(paths["pet_dir"], "--ct", paths["ct_dir"], "--out", out,
               "--height-cm", ph.spec.height_cm, "--weight-kg", ph.spec.weight_kg)
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "lesions.csv")
    assert len(table) == len(ph.truth["lesions"])
    assert sorted(table["n_voxels"]) == sorted(r["n_voxels"] for r in ph.truth["lesions"])
    summary = json.loads((out / "summary.json").read_text())
    bsa = bsa_dubois_m2(ph.spec.weight_kg, ph.spec.height_cm)
    assert summary["provenance"]["bsa_source"] == "options"
    assert summary["provenance"]["pet_units"] == "SUVbw" and not summary["provenance"]["pet_units_assumed"]
    assert summary["sdmax_per_m"] == pytest.approx(summary["dmax_mm"] / 1000 / bsa, rel=1e-6)
    seg = read_seg(out / "lesions.seg.dcm")
    nifti = read_nifti(out / "lesions.nii.gz")
    assert (np.asarray(seg.array) > 0).sum() == (np.asarray(nifti.array) > 0).sum() == table["n_voxels"].sum()


def test_study_without_lesions(tmp_path):
    pet = Volume(np.full((10, 10, 10), 1.0, np.float32), (4.0, 4.0, 4.0))
    write_nifti(pet, tmp_path / "flat.nii.gz")
    res = _run(tmp_path / "flat.nii.gz", "--method", "all", "--out", tmp_path / "o")
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["n_lesions"] == 0 and summary["mtv_ml"] == 0 and summary["dmax_mm"] == 0
    assert summary["suv_max"] is None
    table = pd.read_csv(tmp_path / "o" / "lesions.csv")
    assert len(table) == 0 and set(LESION_CONTRACT) <= set(table.columns)


def test_study_without_lesions_with_ct_counts_zero_sites():
    """A complete response read with a CT has 0 bone / paramedullary / extramedullary lesions, not unknown
    counts (imaging.csv then carries 0, which the EMD analyses read); without a CT the counts stay null."""
    from carpet.quantify import quantify_study

    pet = Volume(np.full((10, 10, 10), 1.0, np.float32), (4.0, 4.0, 4.0))
    ct = Volume(np.full((10, 10, 10), 40.0, np.float32), (4.0, 4.0, 4.0))
    with_ct = quantify_study(pet, ct=ct, method="suv4").summary
    assert with_ct["n_lesions"] == 0
    assert [with_ct[f"n_{s}"] for s in ("bone", "paramedullary", "extramedullary")] == [0, 0, 0]
    without = quantify_study(pet, method="suv4").summary
    assert [without[f"n_{s}"] for s in ("bone", "paramedullary", "extramedullary")] == [None, None, None]


def test_liver_methods_use_the_reference_region(monkeypatch):
    """percist/liver3sd through the pipeline, with a stand-in for carpet.anatomy.liver_reference."""
    from types import SimpleNamespace

    import carpet.quantify as q
    from carpet.errors import InputError

    calls = []

    def fake_reference(pet, ct=None, centre_mm=None, diameter_mm=30.0, usable=True):
        calls.append((centre_mm, diameter_mm))
        return SimpleNamespace(mean=1.6, sd=0.25, n_voxels=400, provenance={"fake": True}, usable=usable,
                               reason="" if usable else "implausible liver SUV")

    monkeypatch.setattr(q, "liver_reference", fake_reference)
    a = np.full((12, 5, 5), 1.0, np.float32)
    a[2, 2, 2], a[6, 2, 2], a[10, 2, 2] = 2.9 - 1e-4, 2.9, 3.35   # percist 2.9, liver3sd 2.35
    pet = Volume(a, (4.0, 4.0, 4.0))
    res = quantify_study(pet, method="percist", liver_voi="10,20,30,25")
    assert calls[-1] == ((10.0, 20.0, 30.0), 25.0)
    assert res.summary["n_lesions"] == 2 and res.summary["provenance"]["thresholds_suv"] == pytest.approx(2.9)
    assert res.summary["provenance"]["liver_reference"]["mean"] == 1.6
    res = quantify_study(pet, method="liver3sd", liver_voi="10,20,30")
    assert res.summary["n_lesions"] == 3 and calls[-1][1] == 30.0
    monkeypatch.setattr(q, "liver_reference", lambda *a, **k: fake_reference(*a, **k, usable=False))
    with pytest.raises(InputError, match="not usable"):
        quantify_study(pet, method="percist", liver_voi="10,20,30")
