"""``carpet batch``: discovery, per-study failures, resume, aggregates, Dask path, CLI.

Truth is the phantom's own record (``truth.json``: voxel counts of the ideal spheres) and each
study's ``summary.json``; resume is checked by marker modification times and the run counts.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from carpet.batch import (IMAGING_COLUMNS, BatchOptions, StudyTask, aggregate, discover_studies, pseudonym,
                          resolve_inputs, run_batch, run_study)
from carpet.cli import app
from carpet.cohort.schema import read_imaging
from carpet.errors import InputError
from carpet.synth.phantom import PhantomSpec, make_phantom

SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """s0..s2: NIfTI folders (pet, ct; no lesion mask, so suv4 thresholds); d0: DICOM PET+CT
    (seed 3); solo: a PET NIfTI in ROOT (seed 0's); bad: a corrupt PET."""
    base = tmp_path_factory.mktemp("batch") / "root"
    for seed in SEEDS:
        paths = make_phantom(PhantomSpec.small(seed=seed)).write_nifti(base / f"s{seed}")
        paths["lesions"].unlink()  # keep the truth, measure by threshold
    make_phantom(PhantomSpec.small(seed=3)).write_dicom(base / "d0" / "export")
    shutil.copy(base / "s0" / "pet.nii.gz", base / "solo.nii.gz")
    (base / "bad").mkdir()
    (base / "bad" / "pet.nii.gz").write_bytes(b"\x1f\x8b not really gzip" * 50)
    return base


def _truth(root: Path, study: str) -> dict:
    return json.loads((root / study / "truth.json").read_text())["summary"]


@pytest.fixture(scope="module")
def first_run(root, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    result = run_batch(root, out, workers=2, progress=False)
    return out, result


def test_discovery_layouts(root, tmp_path):
    sources = [Path(s).name for s in discover_studies(root)]
    assert sources == ["bad", "d0", "s0", "s1", "s2", "solo.nii.gz"]
    s0 = resolve_inputs(root / "s0")
    assert Path(s0.pet).name == "pet.nii.gz" and Path(s0.ct).name == "ct.nii.gz" and s0.lesions is None
    d0 = resolve_inputs(root / "d0")
    assert (Path(d0.pet).name, Path(d0.ct).name) == ("pet", "ct") and d0.error is None
    solo = resolve_inputs(root / "solo.nii.gz")
    assert solo.study_id == "solo" and solo.ct is None
    # ambiguity is an error of that study, not a guess
    amb = tmp_path / "amb"
    amb.mkdir()
    for name in ("pet_a.nii.gz", "PET_b.nii.gz"):
        shutil.copy(root / "s0" / "pet.nii.gz", amb / name)
    err = resolve_inputs(amb).error
    assert "several pet files" in err and "pet_a.nii.gz" in err and "PET_b.nii.gz" in err
    mixed = tmp_path / "mixed"
    shutil.copytree(root / "d0" / "export" / "pet", mixed / "pet")
    shutil.copytree(root / "d0" / "export" / "pet", mixed / "pet2")  # same series twice → 1 PET, 2 folders
    assert "several folders" in resolve_inputs(mixed).error
    both = tmp_path / "both"
    shutil.copytree(root / "d0", both)
    shutil.copy(root / "s0" / "pet.nii.gz", both / "pet.nii.gz")
    assert "expected NIfTI or DICOM, not both" in resolve_inputs(both).error
    (both / "pet.nii.gz").unlink()
    shutil.copy(root / "s0" / "ct.nii.gz", both / "ct.nii.gz")
    assert "expected one CT" in resolve_inputs(both).error
    shutil.rmtree(both / "export" / "ct")  # a DICOM PET with a NIfTI CT is fine
    mixed_ok = resolve_inputs(both)
    assert mixed_ok.error is None and Path(mixed_ok.ct).name == "ct.nii.gz"
    none = tmp_path / "none"
    none.mkdir()
    (none / "notes.txt").write_text("x")
    assert "no DICOM files found" in resolve_inputs(none).error


def test_first_run_outputs_match_summaries_and_truth(root, first_run):
    out, result = first_run
    assert result.counts == {"total": 6, "done": 5, "skipped": 0, "failed": 1}
    imaging = pd.read_csv(out / "imaging.csv")
    assert list(imaging.study_id) == ["bad", "d0", "s0", "s1", "s2", "solo"]
    assert list(read_imaging(out / "imaging.csv")["study_id"]) == list(imaging.study_id)  # no --studies needed
    done = imaging[imaging.status == "done"].set_index("study_id")
    for sid, row in done.iterrows():
        summary = json.loads((out / "studies" / sid / "summary.json").read_text())
        for key in ("n_lesions", "mtv_ml", "tlg", "suv_max", "dmax_mm"):
            assert row[key] == pytest.approx(summary[key], rel=1e-12), (sid, key)
        assert row["method"] == summary["method"] == "suv4"
        assert row["carpet_version"] == summary["provenance"]["carpet_version"]
        marker = json.loads((out / "studies" / sid / "done.json").read_text())
        assert marker["inputs"] == {k: v["sha256"] for k, v in summary["provenance"]["inputs"].items()}
    # ideal phantoms: suv4 finds exactly the truth spheres
    for sid, truth_dir in [("s0", "s0"), ("s1", "s1"), ("s2", "s2"), ("solo", "s0")]:
        truth = _truth(root, truth_dir)
        assert done.loc[sid, "n_lesions"] == truth["n_lesions"]
        assert done.loc[sid, "mtv_ml"] == pytest.approx(truth["mtv_ml"], rel=1e-9)
        assert done.loc[sid, "tlg"] == pytest.approx(truth["tlg"], rel=1e-5)
    # the DICOM study holds seed 3's phantom
    truth3 = make_phantom(PhantomSpec.small(seed=3)).truth["summary"]
    assert done.loc["d0", "mtv_ml"] == pytest.approx(truth3["mtv_ml"], rel=1e-9)
    # lesions.csv: every lesion of every done study, with its study id
    lesions = pd.read_csv(out / "lesions.csv")
    per_study = lesions.groupby("study_id")["volume_ml"].sum()
    assert sorted(per_study.index) == sorted(done.index)
    np.testing.assert_allclose(per_study[done.index], done["mtv_ml"], rtol=1e-9)
    # the broken study is recorded, with a traceback log, and nothing half-written
    errors = pd.read_csv(out / "errors.csv")
    assert list(errors.study_id) == ["bad"] and errors.stage[0] == "quantify"
    assert "pet.nii.gz" in errors.message[0]
    assert "Traceback" in (out / "logs" / "bad.log").read_text()
    assert not (out / "studies" / "bad").exists()
    assert not [p for p in (out / "studies").iterdir() if p.name.startswith(".")]
    assert pd.isna(imaging.set_index("study_id").loc["bad", "mtv_ml"])
    record = json.loads((out / "batch.json").read_text())
    assert record["counts"] == result.counts and record["carpet_version"]


def test_rerun_skips_then_recomputes_only_the_changed_study(root, first_run, tmp_path):
    out0, _ = first_run
    out = tmp_path / "out"
    shutil.copytree(out0, out)
    markers = {p.parent.name: p.stat().st_mtime_ns for p in (out / "studies").glob("*/done.json")}
    again = run_batch(root, out, workers=1, progress=False)
    assert again.counts == {"total": 6, "done": 0, "skipped": 5, "failed": 1}
    assert {p.parent.name: p.stat().st_mtime_ns for p in (out / "studies").glob("*/done.json")} == markers
    # touching a file (same content) is not a change: hashed, found equal, still skipped
    pet1 = root / "s1" / "pet.nii.gz"
    os.utime(pet1, ns=(pet1.stat().st_atime_ns, pet1.stat().st_mtime_ns + 10**9))
    touched = run_batch(root, out, workers=1, progress=False)
    assert touched.counts["skipped"] == 5
    # another method: every done study is recomputed; back to suv4 likewise
    other = run_batch(root, out, workers=1, progress=False, options=BatchOptions(method="suv2.5"))
    assert other.counts == {"total": 6, "done": 5, "skipped": 0, "failed": 1}
    assert set(pd.read_csv(out / "imaging.csv").method.dropna()) == {"suv2.5"}
    run_batch(root, out, workers=1, progress=False)
    # change one input: only that study is recomputed, the others' markers stay untouched
    work = tmp_path / "root"
    shutil.copytree(root, work)
    run_batch(work, out, workers=1, progress=False, force=True)
    before = {p.parent.name: p.stat().st_mtime_ns for p in (out / "studies").glob("*/done.json")}
    ph = make_phantom(PhantomSpec.small(seed=7))
    ph.write_nifti(work / "s2")
    (work / "s2" / "lesions.nii.gz").unlink()
    changed = run_batch(work, out, workers=1, progress=False)
    assert changed.counts == {"total": 6, "done": 1, "skipped": 4, "failed": 1}
    after = {p.parent.name: p.stat().st_mtime_ns for p in (out / "studies").glob("*/done.json")}
    assert {k for k in before if before[k] != after[k]} == {"s2"}
    row = pd.read_csv(out / "imaging.csv").set_index("study_id").loc["s2"]
    assert row["mtv_ml"] == pytest.approx(ph.truth["summary"]["mtv_ml"], rel=1e-9)
    # the failed study is not retried unless asked
    assert changed.outcomes.set_index("study_id").loc["bad", "seconds"] < 0.5
    log = out / "logs" / "bad.log"
    stamp = log.stat().st_mtime_ns
    run_batch(work, out, workers=1, progress=False)
    assert log.stat().st_mtime_ns == stamp
    run_batch(work, out, workers=1, progress=False, retry_failed=True)
    assert log.stat().st_mtime_ns != stamp
    # an interrupted study (folder without marker) is redone
    (out / "studies" / "s0" / "done.json").unlink()
    redo = run_batch(work, out, workers=1, progress=False)
    assert redo.outcomes.set_index("study_id").loc["s0", "status"] == "done"
    assert redo.counts["done"] == 1
    # a killed run's temp folder is cleared; a done study whose input breaks loses its old outputs
    (out / "studies" / ".s1.999.tmp").mkdir()
    (work / "s1" / "pet.nii.gz").write_bytes(b"broken")
    broke = run_batch(work, out, workers=1, progress=False)
    assert broke.counts == {"total": 6, "done": 0, "skipped": 4, "failed": 2}
    assert not (out / "studies" / "s1").exists() and not (out / "studies" / ".s1.999.tmp").exists()
    assert "s1" not in set(pd.read_csv(out / "lesions.csv").study_id)
    assert sorted(pd.read_csv(out / "errors.csv").study_id) == ["bad", "s1"]


def test_lost_worker_fails_its_study_only():
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    from carpet.batch import _result

    lost = Future()
    lost.set_exception(BrokenProcessPool("a child process terminated abruptly"))
    outcome = _result(lost, StudyTask("/data/root/s9", "/out"))
    assert (outcome["study_id"], outcome["status"], outcome["stage"]) == ("s9", "failed", "worker")
    assert "BrokenProcessPool" in outcome["message"]


def test_unexpected_exception_is_recorded_with_type(root, tmp_path, monkeypatch):
    import carpet.quantify

    def boom(pet, *, out_dir, **kwargs):  # dies half-way through writing its outputs
        Path(out_dir).mkdir(parents=True)
        (Path(out_dir) / "lesions.csv").write_text("lesion_id\n1\n")
        raise ZeroDivisionError("synthetic")

    monkeypatch.setattr(carpet.quantify, "run_quantify", boom)
    outcome = run_study(StudyTask(str(root / "s1"), str(tmp_path)))
    assert outcome["status"] == "failed"
    assert outcome["message"] == "ZeroDivisionError: synthetic"
    assert "ZeroDivisionError" in (tmp_path / "logs" / "s1.log").read_text()
    assert list((tmp_path / "studies").iterdir()) == []  # no half-written folder, hidden or not


def test_pseudonymize_and_studies_table(root, tmp_path):
    studies = tmp_path / "studies.csv"
    pd.DataFrame({"study_id": ["bad", "d0", "s0", "s1", "s2", "solo"],
                  "patient_id": ["MRN9001", "MRN9002", "MRN9003", "MRN9004", "MRN9005", "MRN9006"],
                  "study_date": ["2024-01-0%d" % i for i in range(1, 7)]}).to_csv(studies, index=False)
    out = tmp_path / "out"
    result = run_batch(root, out, workers=1, progress=False, salt="pepper",
                       mapping_path=tmp_path / "map.csv", studies_table=studies)
    mapping = pd.read_csv(tmp_path / "map.csv").set_index("study_id")["pseudonym"]
    assert mapping["s1"] == pseudonym("s1", "pepper") != pseudonym("s1", "salt")
    assert sorted(p.name for p in (out / "studies").iterdir()) == sorted(mapping.drop("bad"))
    # the original ids and the root path appear in no output file
    for path in out.rglob("*"):
        if path.is_file() and path.suffix in (".csv", ".json", ".log"):
            text = path.read_text()
            assert str(root) not in text, path
            for sid in ("s0", "s1", "s2", "d0", "solo"):
                assert f"/{sid}/" not in text and f'"{sid}"' not in text, (path, sid)
            assert "MRN900" not in text, path  # patient ids (often MRNs) are pseudonymised too
    imaging = read_imaging(out / "imaging.csv")  # the cohort schema reads the batch table
    assert {"study_id", "patient_id", "study_date"} <= set(imaging.columns)
    assert set(imaging["patient_id"]) == {"P" + pseudonym(f"MRN900{i}", "pepper")[1:] for i in range(1, 7)}
    assert result.counts["done"] == 5


def test_dask_scheduler(root, first_run, tmp_path):
    distributed = pytest.importorskip("distributed")
    out = tmp_path / "out"
    with distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        result = run_batch(root, out, scheduler=cluster.scheduler_address, progress=False)
    assert result.counts == {"total": 6, "done": 5, "skipped": 0, "failed": 1}
    local = pd.read_csv(first_run[0] / "imaging.csv")
    dask = pd.read_csv(out / "imaging.csv")
    pd.testing.assert_frame_equal(local, dask)


def test_cli(root, tmp_path):
    runner = CliRunner()
    out = tmp_path / "out"
    res = runner.invoke(app, ["batch", str(root), "--out", str(out), "--workers", "1", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "6 studies: 5 done, 0 skipped, 1 failed" in res.output
    res = runner.invoke(app, ["batch", str(root), "--out", str(out), "--workers", "1", "--no-progress"])
    assert "0 done, 5 skipped, 1 failed" in res.output
    res = runner.invoke(app, ["batch", str(root), "--out", str(out), "--pseudonymize", "--no-progress"],
                        env={"CARPET_SALT": ""})
    assert res.exit_code == 1 and "salt" in res.output
    res = runner.invoke(app, ["batch", str(root), "--out", str(out), "--method", "suv9"])
    assert res.exit_code == 1 and "unknown method 'suv9'" in res.output
    twice = tmp_path / "twice.csv"
    twice.write_text("study_id,patient_id,study_date\ns0,P1,2024-01-01\ns0,P1,2024-02-01\n")
    fresh = tmp_path / "fresh"
    res = runner.invoke(app, ["batch", str(root), "--out", str(fresh), "--studies", str(twice), "--no-progress"])
    assert res.exit_code == 1 and "listed more than once: s0" in " ".join(res.output.split())
    assert not (fresh / "studies").exists()  # checked before any study ran
    res = runner.invoke(app, ["batch", str(tmp_path / "nowhere"), "--out", str(out)])
    assert res.exit_code == 1 and "folder of studies" in res.output


def test_kill_between_renames_leaves_nothing_that_looks_done(root, first_run, tmp_path, monkeypatch):
    out = tmp_path / "out"
    shutil.copytree(first_run[0], out)
    real_rename = Path.rename

    def rename_then_die(self, target):  # the old outputs moved aside, then the process is killed
        if self.name.endswith(".tmp"):
            raise KeyboardInterrupt
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_study(StudyTask(str(root / "s1"), str(out), force=True))
    monkeypatch.setattr(Path, "rename", real_rename)
    assert not (out / "studies" / "s1").exists()  # neither old nor new outputs under the study id
    rerun = run_batch(root, out, workers=1, progress=False)
    assert rerun.counts == {"total": 6, "done": 1, "skipped": 4, "failed": 1}
    assert sorted(p.name for p in (out / "studies").iterdir()) == ["d0", "s0", "s1", "s2", "solo"]


def _expected_readings(summary: dict) -> dict:
    """The study readings as read straight from summary.json (the truth for imaging.csv's new columns)."""
    imp, metcr, bm_ds = summary["impetus"], summary["metabolic_response"], summary["marrow"]["deauville"]
    expect = {"deauville_ds": summary["deauville"]["study"], "marrow_ds": summary["marrow"]["deauville"],
              "marrow_suv_median": summary["marrow"]["suv_median"] if summary["marrow"]["usable"] else None,
              "diffuse_marrow": bm_ds >= 4 if isinstance(bm_ds, int) else None,  # NE: no reading
              "impetus_report": imp["report_string"],
              "metcr_zamagni2021": metcr["ZAMAGNI2021"]["met_cr"],
              "metcr_imwg2016_imaging": metcr["IMWG2016_IMAGING"]["met_cr"],
              "metcr_lugano_style": metcr["LUGANO_STYLE"]["met_cr"]}
    for field in ("bm_ds", "fl_count", "fl_count_cat", "fl_target_ds", "lytic_count_cat", "fracture",
                  "paramedullary", "paramedullary_ds", "emd", "emd_ds", "n_indeterminate"):
        expect[f"impetus_{field}"] = imp[field]
    if "response" in summary:
        fmet = summary["follow_up"]["metabolic_response"]
        expect.update(n_new_lesions=summary["n_new_lesions"], n_resolved_lesions=summary["n_resolved_lesions"],
                      delta_suv_max_pct=summary["response"]["delta_suv_max_pct"],
                      baseline_suv_max=summary["response"]["baseline_suv_max"],
                      lugano_category=summary["response"]["category"],
                      metcr_zamagni2021_vs_baseline=fmet["ZAMAGNI2021"]["met_cr"],
                      metcr_imwg2016_imaging_vs_baseline=fmet["IMWG2016_IMAGING"]["met_cr"],
                      metcr_lugano_style_vs_baseline=fmet["LUGANO_STYLE"]["met_cr"])
    return expect


def _same_cell(cell, value) -> bool:
    if value is None:
        return pd.isna(cell)
    if isinstance(value, bool):
        return bool(cell) is value and not isinstance(cell, str)
    if isinstance(value, (int, float)):
        return float(cell) == pytest.approx(float(value), rel=1e-12)
    if isinstance(cell, float) and pd.isna(cell):
        return False
    return cell == value


def test_imaging_csv_exports_study_readings(root, first_run, tmp_path):
    """imaging.csv carries Deauville, marrow, IMPeTUs and the metCR rules of every study, and for a follow-up
    read against a baseline the Lugano category, delta SUVmax and lesion changes; each equals summary.json."""
    out, _ = first_run
    # a follow-up: s1 read against the batch's own s0 as baseline, then aggregated with s0
    follow = tmp_path / "out"
    shutil.copytree(out / "studies" / "s0", follow / "studies" / "s0")
    res = CliRunner().invoke(app, ["quantify", str(root / "s1" / "pet.nii.gz"), "--ct", str(root / "s1" / "ct.nii.gz"),
                                   "--baseline", str(out / "studies" / "s0"), "--out", str(follow / "studies" / "f1")])
    assert res.exit_code == 0, res.output
    # make the follow-up's metCR against the baseline differ from its scan-alone metCR (here both are
    # False), so that the test tells the two blocks apart
    path = follow / "studies" / "f1" / "summary.json"
    edited = json.loads(path.read_text())
    edited["follow_up"]["metabolic_response"]["ZAMAGNI2021"]["met_cr"] = True
    path.write_text(json.dumps(edited))
    outcomes = pd.DataFrame({"study_id": ["s0", "f1"], "status": ["done", "done"], "stage": [None] * 2,
                             "message": [None] * 2})
    aggregate(follow, outcomes)
    for folder in (out, follow):
        imaging = pd.read_csv(folder / "imaging.csv").set_index("study_id")
        assert list(imaging.columns[:len(IMAGING_COLUMNS) - 1]) == list(IMAGING_COLUMNS[1:])  # old ones first
        assert imaging.columns[-1] == "carpet_version"
        for sid, row in imaging[imaging.status == "done"].iterrows():
            summary = json.loads((folder / "studies" / sid / "summary.json").read_text())
            expect = _expected_readings(summary)
            for col, value in expect.items():
                assert _same_cell(row[col], value), (sid, col, row[col], value)
            if "response" not in summary:
                assert row[["lugano_category", "delta_suv_max_pct", "n_new_lesions"]].isna().all(), sid
    fu = pd.read_csv(follow / "imaging.csv").set_index("study_id").loc["f1"]
    assert fu["lugano_category"] in ("CMR", "PMR", "NMR", "PMD") and fu["n_new_lesions"] >= 0
    # the phantoms' foci are hotter than the liver, so Zamagni's DS <= 3 refuses metCR; solo (PET only, no
    # liver reference) has no reading, an empty cell
    metcr = pd.read_csv(out / "imaging.csv").set_index("study_id")["metcr_zamagni2021"]
    assert metcr[["d0", "s0", "s1", "s2"]].tolist() == [False] * 4 and pd.isna(metcr[["bad", "solo"]]).all()


def test_imaging_csv_measures_per_segmentation_method(root, tmp_path):
    """--method all: MTV, TLG, SUVmax, SUVpeak and the lesion count of every method, each under its own name,
    with the method's threshold; the ideal phantom's spheres are what SUV >= 4 and SUV >= 2.5 find."""
    one = tmp_path / "root"
    shutil.copytree(root / "s0", one / "s0")
    result = run_batch(one, tmp_path / "out", options=BatchOptions(method="all"), progress=False)
    imaging = pd.read_csv(result.paths["imaging"]).set_index("study_id")
    row = imaging.loc["s0"]
    summary = json.loads((tmp_path / "out" / "studies" / "s0" / "summary.json").read_text())
    truth = _truth(root, "s0")
    for method in ("suv4", "suv2.5"):   # every non-lesion voxel of the ideal phantom is below 2.5 SUV
        name = method.replace(".", "_")
        assert row[f"mtv_ml_{name}"] == pytest.approx(truth["mtv_ml"], rel=1e-9), method
        assert row[f"tlg_{name}"] == pytest.approx(truth["tlg"], rel=1e-6), method
        assert row[f"n_lesions_{name}"] == truth["n_lesions"] and row[f"suv_max_{name}"] == pytest.approx(
            max(les["suv"] for les in json.loads((root / "s0" / "truth.json").read_text())["lesions"]))
    assert (row["threshold_suv4"], row["threshold_suv2_5"]) == (4.0, 2.5)
    assert str(row["threshold_pct41"]).startswith("per lesion")
    # SUVpeak of the main method (suv4) = the highest SUVpeak of its lesions.csv, a separate file
    lesions = pd.read_csv(tmp_path / "out" / "studies" / "s0" / "lesions.csv")
    assert row["suv_peak_suv4"] == pytest.approx(lesions["suv_peak"].max(), rel=1e-12)
    # every other method as quantify's own per-method record (methods block of summary.json)
    for method, measures in summary["methods"].items():
        name = method.replace(".", "_")
        for key in ("n_lesions", "mtv_ml", "tlg", "suv_max", "suv_peak"):
            cell, value = row[f"{key}_{name}"], measures[key]
            assert (pd.isna(cell) if value is None else cell == pytest.approx(value, rel=1e-12)), (method, key)
    assert len(summary["methods"]) == 8 and not any(c.startswith("mtv_ml_user") for c in imaging)
    # the cohort schema declares and reads every column (numbers as numbers, flags as flags)
    read = read_imaging(result.paths["imaging"]).set_index("study_id")
    assert read.at["s0", "mtv_ml_suv2_5"] == pytest.approx(truth["mtv_ml"], rel=1e-9)
    assert read.at["s0", "n_lesions_suv4"] == truth["n_lesions"] and read.at["s0", "deauville_ds"] == "5"


@pytest.mark.parametrize("column, value, expected", [
    ("mtv_ml_pct41", "-2", "expected a non-negative number"), ("n_lesions_suv4", "2.5", "expected a whole number"),
    ("deauville_ds", "7", "expected one of 1, 2, 3, 4, 5, X, NE"), ("metcr_zamagni2021", "maybe", "expected true/false"),
    ("lugano_category", "CR", "expected one of CMR, PMR, NMR, PMD, NE"),
    ("delta_suv_max_pct", "-120", "expected a value >= -100"), ("impetus_fl_count_cat", "4", "expected a value <= 3")])
def test_imaging_schema_refuses_bad_readings_naming_row_and_column(column, value, expected):
    table = pd.DataFrame({"study_id": ["s0", "s1"], "status": ["done", "done"], column: ["1", value]})
    with pytest.raises(InputError) as err:
        read_imaging(table, name="imaging.csv")
    assert f"row 3, column '{column}': value '{value}': {expected}" in str(err.value)


def test_schema_knows_every_segmentation_method():
    from carpet.cohort.schema import SEGMENTATION_METHODS
    from carpet.segment import METHODS

    assert SEGMENTATION_METHODS == METHODS   # written out in the schema to keep scipy out of its import
