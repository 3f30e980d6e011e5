"""The DICOM SEG carpet writes says what it holds (issue 11 item 6) and who it is not (issue 12 item 3).

Threshold methods: segment algorithm type AUTOMATIC, family Neighborhood Analysis (never Artificial
Intelligence), method and threshold in the segment and series descriptions. A reader's mask: MANUAL,
RTSTRUCT ROI names kept, ``--roi`` picks one ROI. A display colour per segment; BINARY segments (the
label-map class is unknown to dciodvfy); de-identified unless ``--keep-identity``.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pandas as pd
import pydicom
import pytest
from typer.testing import CliRunner

from _dicom_factory import write_series
from carpet.cli import app
from carpet.io import read_nifti, read_seg, read_series
from test_masks import _square, _write_rtstruct

BQML_PER_SUV = 370e6 * 2 ** (-3600 / 6586.2) / 70e3  # pet_header(): 370 MBq, 70 kg, 1 h uptake


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg")
    suv = np.ones((8, 8, 4))
    suv[1:3, 1:3, 0:2] = 6.0
    suv[5:7, 5:7, 2:4] = 8.0
    write_series(root / "pet", suv * BQML_PER_SUV, spacing=(2, 2, 3), origin=(0, 0, 0), for_uid="1.9")
    _write_rtstruct(root / "rs.dcm", {"GTV_Mass": [_square(1, 5, 1, 5, 0.0), _square(1, 5, 1, 5, 3.0)],
                                     "GTV_Edema": [_square(9, 13, 9, 13, 6.0)]})
    return root


def _run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0 and result.exception is None, result.output
    return result.output


def test_threshold_seg_is_automatic_described_coloured_and_deidentified(study, tmp_path):
    _run("quantify", study / "pet", "--out", tmp_path)
    seg = pydicom.dcmread(tmp_path / "lesions.seg.dcm")
    assert seg.SegmentationType == "BINARY"
    assert "suv4" in seg.SeriesDescription and "4" in seg.SeriesDescription
    segments = seg.SegmentSequence
    assert len(segments) == 2
    for s in segments:
        assert s.SegmentAlgorithmType == "AUTOMATIC"
        family = s.SegmentationAlgorithmIdentificationSequence[0].AlgorithmFamilyCodeSequence[0]
        assert family.CodeMeaning == "Neighborhood Analysis" != "Artificial Intelligence"
        assert "suv4" in s.SegmentDescription and "threshold 4" in s.SegmentDescription
    colours = {tuple(s.RecommendedDisplayCIELabValue) for s in segments}
    assert len(colours) == 2
    # who: the pseudonym, no identity; the UIDs that tie the SEG to its PET are kept
    pet = pydicom.dcmread(next((study / "pet").iterdir()))
    assert str(seg.PatientName).startswith("carpet-") and seg.PatientID == str(seg.PatientName)
    assert seg.PatientBirthDate == "" and seg.PatientIdentityRemoved == "YES"
    assert seg.StudyInstanceUID == pet.StudyInstanceUID
    assert b"Test^Phantom" not in (tmp_path / "lesions.seg.dcm").read_bytes()
    # what: the same voxels as lesions.nii.gz
    labels = read_nifti(tmp_path / "lesions.nii.gz")
    back = read_seg(tmp_path / "lesions.seg.dcm", read_series(study / "pet"))
    np.testing.assert_array_equal(back.array, labels.array)


def test_keep_identity_copies_the_patient(study, tmp_path):
    _run("quantify", study / "pet", "--keep-identity", "--out", tmp_path)
    seg = pydicom.dcmread(tmp_path / "lesions.seg.dcm")
    assert str(seg.PatientName) == "Test^Phantom" and seg.PatientID == "TEST01"
    assert "PatientIdentityRemoved" not in seg


def test_rtstruct_roi_names_kept_and_one_roi_chosen(study, tmp_path):
    text = _run("quantify", study / "pet", "--lesions", study / "rs.dcm", "--out", tmp_path / "all")
    assert "2 ROIs" in text and "--roi" in text
    table = pd.read_csv(tmp_path / "all" / "lesions.csv")
    assert table["roi"].tolist() == ["GTV_Mass", "GTV_Edema"]
    assert table["n_voxels"].tolist() == [8, 4]

    _run("quantify", study / "pet", "--lesions", study / "rs.dcm", "--roi", "GTV_Mass", "--out", tmp_path / "one")
    table = pd.read_csv(tmp_path / "one" / "lesions.csv")
    assert table["roi"].tolist() == ["GTV_Mass"] and table["n_voxels"].tolist() == [8]
    seg = pydicom.dcmread(tmp_path / "one" / "lesions.seg.dcm")
    (segment,) = seg.SegmentSequence
    assert segment.SegmentLabel == "GTV_Mass" and segment.SegmentAlgorithmType == "MANUAL"
    assert "SegmentationAlgorithmIdentificationSequence" not in segment
    assert "reader's mask" in seg.SeriesDescription


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools' dciodvfy not installed")
def test_dciodvfy_finds_no_error(study, tmp_path):
    _run("quantify", study / "pet", "--out", tmp_path)
    report = subprocess.run(["dciodvfy", str(tmp_path / "lesions.seg.dcm")], capture_output=True, text=True)
    text = report.stdout + report.stderr
    assert "Segmentation" in text  # it recognised the IOD
    assert [line for line in text.splitlines() if line.startswith("Error")] == []


def test_a_one_word_patient_name_is_not_echoed_in_warnings(tmp_path):
    """highdicom warns about a single-component PatientName and quotes it; carpet's log must not."""
    import warnings

    from carpet.io import write_seg
    from carpet.volume import Volume

    suv = np.ones((8, 8, 4))
    suv[1:3, 1:3, 0:2] = 6.0
    write_series(tmp_path / "pet", suv * BQML_PER_SUV, spacing=(2, 2, 3), origin=(0, 0, 0),
                 per_slice={"PatientName": ["ZZSECRETNAME"] * 4})
    pet = read_series(tmp_path / "pet")
    labels = Volume((np.asarray(pet.array) > 4).astype(np.uint8), pet.spacing, pet.origin, pet.direction)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_seg(labels, tmp_path / "pet", tmp_path / "l.seg.dcm", method="suv4", threshold=4.0,
                  pseudonym="carpet-x")
    assert not [w for w in caught if "ZZSECRETNAME" in str(w.message)]
    assert str(pydicom.dcmread(tmp_path / "l.seg.dcm").PatientName) == "carpet-x"
