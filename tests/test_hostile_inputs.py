"""The corpus of broken and hostile inputs (issue 12; cases of ../shared/reference/hostile-inputs.md).

Each case runs the CLI in-process (typer's CliRunner) and asserts the exit code, that no Python
traceback reached the user, and the words of the message (or, for inputs carpet accepts, the warning
and the outputs). Inputs are tiny synthetic series made here (tests/_dicom_factory), so the whole
corpus runs in seconds. Case ids are those of hostile-inputs.md where the case comes from there.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from _dicom_factory import pet_header, write_series
from carpet.cli import app
from carpet.io import write_nifti
from carpet.volume import Volume

SHAPE, SPACING, ORIGIN = (20, 20, 12), (4.0, 4.0, 4.0), (-40.0, -40.0, -24.0)
#: Bq/mL of SUV 1 for pet_header() (370 MBq, 70 kg, 1 h uptake at F-18's half-life).
BQML_PER_SUV = 370e6 * 2 ** (-3600 / 6586.2) / 70e3


def _suv() -> np.ndarray:
    suv = np.ones(SHAPE)
    suv[8:11, 8:11, 5:8] = 6.0  # one 27-voxel lesion (1.728 mL)
    return suv


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """Good inputs every case starts from: DICOM PET and CT, NIfTI PET, masks."""
    root = tmp_path_factory.mktemp("hostile")
    write_series(root / "pet", _suv() * BQML_PER_SUV, spacing=SPACING, origin=ORIGIN)
    write_series(root / "ct", np.zeros(SHAPE), spacing=SPACING, origin=ORIGIN,
                 header={"Modality": "CT"}, series_uid="1.2.3.4.9")
    pet = Volume(_suv().astype(np.float32), SPACING, ORIGIN)
    write_nifti(pet, root / "pet.nii.gz")
    write_nifti(pet.with_array((_suv() > 4).astype(np.uint8)), root / "mask.nii.gz")
    return root


def _copy(base: Path, tmp: Path, name: str) -> Path:
    target = tmp / name
    (shutil.copytree if (base / name).is_dir() else shutil.copy)(base / name, target)
    return target


def _nifti(tmp: Path, name: str, array, spacing=SPACING, origin=ORIGIN) -> Path:
    return write_nifti(Volume(np.asarray(array), spacing, origin), tmp / name)


def _truncate(path: Path, n_bytes: int) -> None:
    """Keep the first ``n_bytes`` (negative: drop that many from the end)."""
    data = path.read_bytes()
    path.write_bytes(data[:n_bytes] if n_bytes >= 0 else data[:len(data) + n_bytes])


# --- builders: (base, tmp) -> argv ---------------------------------------------------------------
def dcm_slice(which: int, n_bytes: int, cmd: str):
    def build(base, tmp):
        pet = _copy(base, tmp, "pet")
        _truncate(sorted(pet.iterdir())[which], n_bytes)
        return [cmd, str(pet), "--out", str(tmp / ("o.nii.gz" if cmd == "suv" else "o"))]
    return build


def dcm_header(cmd: str, **changes):
    def build(base, tmp):
        write_series(tmp / "pet", _suv() * BQML_PER_SUV, spacing=SPACING, origin=ORIGIN,
                     header=pet_header(**changes), **({"slopes": [-1.0] * SHAPE[2]} if cmd == "neg" else {}))
        return ["quantify" if cmd == "neg" else cmd, str(tmp / "pet"), "--out",
                str(tmp / ("o.nii.gz" if cmd == "suv" else "o"))]
    return build


def ct_as_pet(cmd: str):
    def build(base, tmp):
        return [cmd, str(base / "ct"), "--out", str(tmp / ("o.nii.gz" if cmd == "suv" else "o"))]
    return build


def nifti_pet(change):
    def build(base, tmp):
        suv = _suv()
        change(suv)
        return ["quantify", str(_nifti(tmp, "pet.nii.gz", suv.astype(np.float32))), "--out", str(tmp / "o")]
    return build


def _set(index, value):
    def change(a):
        a[index] = value
    return change


def nii_trunc(base, tmp):
    pet = _nifti(tmp, "pet.nii.gz", np.random.default_rng(0).random(SHAPE).astype(np.float32) * 8)
    _truncate(pet, pet.stat().st_size // 2)
    return ["quantify", str(pet), "--out", str(tmp / "o")]


def nii_zero_spacing(base, tmp):
    pet = _nifti(tmp, "pet.nii", _suv().astype(np.float32))
    data = bytearray(pet.read_bytes())
    data[84:88] = np.float32(0).tobytes()  # pixdim[2] (header offset 76 + 2 × 4): nibabel would "fix" it
    pet.write_bytes(bytes(data))
    return ["quantify", str(pet), "--out", str(tmp / "o")]


def with_mask(flag: str, array=None, origin=ORIGIN):
    def build(base, tmp):
        mask = (_suv() > 4).astype(np.float32) if array is None else array
        path = _nifti(tmp, "mask.nii.gz", mask, origin=origin)
        return ["quantify", str(base / "pet.nii.gz"), flag, str(path), "--out", str(tmp / "o")]
    return build


def mask_nan(base, tmp):
    mask = (_suv() > 4).astype(np.float32)
    mask[0, 0, 0] = np.nan
    return with_mask("--lesions", mask)(base, tmp)


def mask_big_labels(base, tmp):
    return with_mask("--lesions", (_suv() > 4).astype(np.uint32) * 3_000_000_000)(base, tmp)


def ct_far(kind: str):
    def build(base, tmp):
        if kind == "dicom":
            write_series(tmp / "ct", np.zeros(SHAPE), spacing=SPACING, origin=(ORIGIN[0], ORIGIN[1], 5000.0),
                         header={"Modality": "CT"})
            ct = tmp / "ct"
        else:
            ct = _nifti(tmp, "ct.nii.gz", np.zeros(SHAPE, np.int16), origin=(ORIGIN[0], ORIGIN[1], 5000.0))
        return ["quantify", str(base / "pet"), "--ct", str(ct), "--out", str(tmp / "o")]
    return build


def options(cmd: str, *extra: str):
    def build(base, tmp):
        src = base / ("pet" if cmd == "suv" else "pet.nii.gz")
        return [cmd, str(src), *extra, "--out", str(tmp / ("o.nii.gz" if cmd == "suv" else "o"))]
    return build


def baseline_list(base, tmp):
    (tmp / "summary.json").write_text("[1, 2]")
    return ["quantify", str(base / "pet.nii.gz"), "--baseline", str(tmp / "summary.json"), "--out", str(tmp / "o")]


def no_lesion(extra: tuple, scale: float = 1.0):
    def build(base, tmp):
        if scale != 1.0:
            write_series(tmp / "pet", np.minimum(_suv(), 3.0) * BQML_PER_SUV, spacing=SPACING, origin=ORIGIN)
            pet = tmp / "pet"
        else:
            pet = base / "pet"
        return ["quantify", str(pet), *extra, "--out", str(tmp / "o")]
    return build


def _imwg_tables(tmp: Path, pid: str = "P1", second_value: float | None = None):
    pd.DataFrame({"patient_id": [pid], "infusion_date": ["2024-01-10"],
                  "involved_light_chain": ["kappa"]}).to_csv(tmp / "patients.csv", index=False)
    rows = [(pid, "2024-01-01", "serum_m_protein", 2.0, "g/dL"), (pid, "2024-02-01", "serum_m_protein", 1.0, "g/dL"),
            (pid, "2024-03-01", "serum_m_protein", 0.5, "g/dL")]
    if second_value is not None:
        rows.append((pid, "2024-03-01", "serum_m_protein", second_value, "g/dL"))
    pd.DataFrame(rows, columns=["patient_id", "date", "parameter", "value", "unit"]).to_csv(
        tmp / "labs.csv", index=False)
    return ["imwg", "--patients", str(tmp / "patients.csv"), "--assessments", str(tmp / "labs.csv"),
            "--out", str(tmp / "o")]


def imwg_spoiled(how: str):
    def build(base, tmp):
        argv = _imwg_tables(tmp)
        patients = tmp / "patients.csv"
        if how == "semicolon":
            patients.write_text(patients.read_text().replace(",", ";"))
        elif how == "header_only":
            patients.write_text(patients.read_text().splitlines()[0] + "\n")
        else:  # a folder where the file should be
            patients.unlink()
            patients.mkdir()
        return argv
    return build


def imwg_dup_numeric(base, tmp):
    return _imwg_tables(tmp, second_value=0.7)


def imwg_evil(base, tmp):
    return _imwg_tables(tmp, pid="=HYPERLINK(\"http://x\",\"y\")")


def analyze_case(change, analyses=None, endpoints=None, title="t"):
    """A small clinical table (tests/test_analyze) with one column spoiled, and a KM plan on it."""
    def build(base, tmp):
        import yaml
        from test_analyze import _small_cohort

        df = _small_cohort().assign(t=np.linspace(1, 24, 24), e=[1, 0] * 12)
        df = df.astype({"t": object, "e": object})
        change(df)
        df.to_csv(tmp / "patients.csv", index=False, date_format="%Y-%m-%d")
        plan = {"title": title, "endpoints": endpoints or {"pfs": {"time": "t", "event": "e"}},
                "analyses": analyses or [{"type": "km", "endpoint": "pfs", "by": "arm"}]}
        (tmp / "plan.yaml").write_text(yaml.safe_dump(plan))
        return ["analyze", "--clinical", str(tmp / "patients.csv"), "--plan", str(tmp / "plan.yaml"),
                "--out", str(tmp / "o")]
    return build


def _spoil(column, rows, value):
    def change(df):
        df.loc[rows, column] = value
    return change


def batch_case(spoil: str):
    """ROOT with a good NIfTI study S1 and, per ``spoil``, broken or odd studies."""
    def build(base, tmp):
        root = tmp / "root"
        (root / "S1").mkdir(parents=True)
        shutil.copy(base / "pet.nii.gz", root / "S1" / "pet.nii.gz")
        if spoil == "corrupt":
            nii_trunc(base, tmp)
            (root / "S2").mkdir()
            shutil.move(tmp / "pet.nii.gz", root / "S2" / "pet.nii.gz")
            (root / "S3").mkdir()
            nan = _suv().astype(np.float32)
            nan[0, 0, 0] = np.nan
            _nifti(root / "S3", "pet.nii.gz", nan)
        elif spoil == "healthy":
            write_series(root / "S2" / "pet", np.minimum(_suv(), 3.0) * BQML_PER_SUV, spacing=SPACING, origin=ORIGIN)
        else:
            (root / "=HYPERLINK(x)").mkdir()
            shutil.copy(base / "pet.nii.gz", root / "=HYPERLINK(x)" / "pet.nii.gz")
        return ["batch", str(root), "--workers", "1", "--no-progress", "--out", str(tmp / "o")]
    return build


def corrupt_studies_failed(tmp: Path) -> None:
    errors = pd.read_csv(tmp / "o" / "errors.csv").set_index("study_id")["message"]
    assert sorted(errors.index) == ["S2", "S3"]
    assert "truncated" in errors["S2"] and "NaN" in errors["S3"]


def healthy_study_done(tmp: Path) -> None:
    imaging = pd.read_csv(tmp / "o" / "imaging.csv").set_index("study_id")
    assert imaging.loc["S2", "status"] == "done" and imaging.loc["S2", "mtv_ml"] == 0


# --- checks of outputs, for cases that exit 0 ----------------------------------------------------
def no_lesion_outputs(tmp: Path) -> None:
    out = tmp / "o"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_lesions"] == 0 and summary["mtv_ml"] == 0
    assert pd.read_csv(out / "lesions.csv").empty
    assert (out / "lesions.nii.gz").is_file()
    assert not (out / "lesions.seg.dcm").exists()
    assert "no lesion" in summary["provenance"]["dicom_seg"]


def one_lesion(tmp: Path) -> None:
    summary = json.loads((tmp / "o" / "summary.json").read_text())
    assert summary["n_lesions"] == 1 and summary["mtv_ml"] == pytest.approx(27 * 0.064)


def no_formula_cells(tmp: Path) -> None:
    for csv in (tmp / "o").glob("*.csv"):
        cells = pd.read_csv(csv, dtype=str, keep_default_na=False, header=None, comment="#").to_numpy().ravel()
        assert not [c for c in cells if c[:1] in ("=", "+", "@")], csv
        assert any(c.startswith("'=HYPERLINK") for c in cells) or "=HYPERLINK" not in csv.read_text(), csv


def reports_written(tmp: Path) -> None:
    assert (tmp / "o" / "report.pdf").is_file() and (tmp / "o" / "report.html").is_file()


# id, builder, exit code, words (regex, searched in stdout + stderr), check of the outputs
CASES = [
    ("dcm_trunc_head", dcm_slice(5, 100, "suv"), 1, r"s005\.dcm.*not a readable DICOM file", None),
    ("dcm_trunc_head_last", dcm_slice(-1, 100, "suv"), 1, r"s011\.dcm.*not a readable DICOM file", None),
    ("dcm_zero_last", dcm_slice(-1, 0, "suv"), 1, r"s011\.dcm.*empty \(0 bytes\)", None),
    ("dcm_zero_first", dcm_slice(0, 0, "quantify"), 1, r"s000\.dcm.*empty \(0 bytes\)", None),
    ("dcm_trunc_mid", dcm_slice(5, -100, "suv"), 1, r"s005\.dcm.*truncated", None),
    ("dcm_slope_neg", dcm_header("neg"), 1, r"RescaleSlope.*must be positive", None),
    ("dcm_modality_mr", dcm_header("suv", Modality="MR"), 1, r"one PT series, found 0.*MR series", None),
    ("dcm_ct_as_pet", ct_as_pet("suv"), 1, r"one PT series, found 0.*CT series", None),
    ("dcm_ct_as_pet_q", ct_as_pet("quantify"), 1, r"CT image.*not a PET", None),
    ("ct_far_dicom", ct_far("dicom"), 1, r"CT does not overlap the PET", None),
    ("ct_far_nifti", ct_far("nifti"), 1, r"ct\.nii\.gz.*CT does not overlap the PET", None),
    ("q_pet_file_dcm", lambda b, t: ["quantify", str(sorted((b / "pet").iterdir())[0]), "--out", str(t / "o")],
     1, r"single file.*give the folder", None),
    ("nii_nan", nifti_pet(_set((0, 0, 0), np.nan)), 1, r"pet\.nii\.gz.*1 NaN", None),
    ("nii_inf", nifti_pet(_set((1, 1, 1), np.inf)), 1, r"pet\.nii\.gz.*1 infinite", None),
    ("nii_neginf", nifti_pet(_set((1, 1, 1), -np.inf)), 1, r"pet\.nii\.gz.*1 infinite", None),
    ("nii_negative_all", nifti_pet(lambda a: a.__imul__(-1)), 1, r"every voxel is ≤ 0", None),
    ("nii_negative_block", nifti_pet(_set((slice(0, 3), slice(0, 3), slice(0, 3)), -50.0)), 0,
     r"warning.*27 voxel\(s\) below SUV -1", one_lesion),
    ("nii_huge", nifti_pet(_set((9, 9, 6), 1e30)), 0, r"warning.*implausible", None),
    ("nii_trunc", nii_trunc, 1, r"pet\.nii\.gz.*truncated", None),
    ("nii_zero_spacing", nii_zero_spacing, 1, r"pixdim.*positive", None),
    ("mask_nan", mask_nan, 1, r"mask\.nii\.gz.*NaN", None),
    ("mask_far", with_mask("--lesions", origin=(0.0, 0.0, 10000.0)), 1, r"mask\.nii\.gz.*none of the lesion "
                                                                        r"mask's voxels", None),
    ("mask_big_labels", mask_big_labels, 1, r"label value 3000000000 is larger", None),
    ("exclude_far", with_mask("--exclude", origin=(0.0, 0.0, 10000.0)), 1, r"none of the exclusion mask's", None),
    ("opt_minvol_nan", options("quantify", "--min-volume-ml", "nan"), 1, r"--min-volume-ml", None),
    ("opt_seed_neg", options("quantify", "--method", "pct41", "--seed-suv", "-1"), 1, r"--seed-suv", None),
    ("opt_weight_neg", options("quantify", "--weight-kg", "-70", "--height-cm", "170"), 1,
     r"--weight-kg.*positive", None),
    ("suv_dose_neg", options("suv", "--dose-mbq", "-300"), 1, r"--dose-mbq.*positive", None),
    ("suv_halflife_zero", options("suv", "--half-life-s", "0"), 1, r"--half-life-s.*positive", None),
    ("suv_weight_neg", options("suv", "--weight-kg", "-70"), 1, r"--weight-kg.*positive", None),
    ("baseline_wrongjson", baseline_list, 1, r"summary\.json.*JSON object.*list", None),
    ("dcm_no_lesions", no_lesion(("--min-volume-ml", "1000")), 0, r"0 lesions, MTV 0\.00", no_lesion_outputs),
    ("dcm_healthy", no_lesion((), scale=0.5), 0, r"0 lesions, MTV 0\.00", no_lesion_outputs),
    ("imwg_dup_numeric", imwg_dup_numeric, 0, r"labs\.csv: rows \d, \d: serum_m_protein .*different values", None),
    ("imwg_evil_csv", imwg_evil, 0, r"1 patients", no_formula_cells),
    ("imwg_semicolon", imwg_spoiled("semicolon"), 1, r"patients\.csv.*separated by semicolons", None),
    ("imwg_header_only", imwg_spoiled("header_only"), 1, r"patients\.csv.*header row but no patient rows", None),
    ("imwg_dir_as_file", imwg_spoiled("dir"), 1, r"patients\.csv: is a folder", None),
    ("an_plan_dir", lambda b, t: ["analyze", "--clinical", str(_imwg_tables(t) and t / "patients.csv"), "--plan",
                                  str(t), "--out", str(t / "o")], 1, r"is a folder; expected a YAML plan", None),
    ("an_mathtext_title2", analyze_case(_spoil("arm", slice(0, 11), "$x^{2$"), title="Gain of $x^{2$ in MTV"),
     0, r"1 analyses", reports_written),
    ("an_neg_dates", analyze_case(lambda df: None, [{"type": "km", "endpoint": "os", "by": "arm"}],
                                  {"os": {"start": "infusion_date", "event_date": "nosuch_date",
                                          "censor_date": "last_followup_date"}}),
     1, r"endpoints\.os: date column\(s\) \['nosuch_date'\] not in the data",
     None),
    ("b_corrupt", batch_case("corrupt"), 0, r"3 studies: 1 done, 0 skipped, 2 failed", corrupt_studies_failed),
    ("b_healthy", batch_case("healthy"), 0, r"2 studies: 2 done", healthy_study_done),
    ("b_formula_ids", batch_case("formula"), 0, r"2 studies: 2 done", no_formula_cells),
    ("an_eventyes", analyze_case(_spoil("e", [2, 5, 7], "yes")), 1,
     r"column 'e' holds 3 value\(s\) that are not numbers: P002 \('yes'\)", None),
    ("an_timetext", analyze_case(_spoil("t", [1, 4, 9], "abc")), 1,
     r"column 't' holds 3 value\(s\) that are not numbers: P001 \('abc'\)", None),
    ("an_evil2", analyze_case(_spoil("arm", slice(0, 11), '=HYPERLINK("http://x","y")'),
                              [{"type": "table1", "by": "arm", "continuous": ["age_years"]}]),
     0, r"1 analyses", no_formula_cells),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_hostile_input(case, base, tmp_path):
    _, build, code, words, check = case
    result = CliRunner().invoke(app, build(base, tmp_path))
    text = result.output
    assert "Traceback" not in text
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == code, text
    assert re.search(words, " ".join(text.split()), flags=re.S), text
    if check is not None:
        check(tmp_path)
