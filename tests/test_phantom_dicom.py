"""DICOM written by carpet reads back (pydicom, SimpleITK) to the phantom's volumes, and the PET
SUV header reproduces the NIfTI SUV through the textbook SUVbw formula written here."""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np
import pydicom
import pytest

from carpet.io.nifti import read_nifti
from carpet.synth import PhantomSpec, make_phantom
from carpet.volume import Volume


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    ph = make_phantom(PhantomSpec.small(seed=5, ct_spacing_mm=(2.0, 2.0, 4.0), psf_fwhm_mm=6.0,
                                        noise_rel_sd=0.05, weight_kg=82.5, sex="F", dose_mbq=250.0,
                                        uptake_min=72.5))
    out = tmp_path_factory.mktemp("dicom")
    return ph, ph.write_dicom(out)


def read_series(folder):
    """All files of a folder (no force: a missing preamble or file meta fails), sorted along z."""
    datasets = [pydicom.dcmread(p) for p in sorted(folder.iterdir())]
    return sorted(datasets, key=lambda ds: float(ds.ImagePositionPatient[2]))


def dicom_datetime(date: str, time: str) -> datetime:
    return datetime.strptime(date + time.split(".")[0], "%Y%m%d%H%M%S")


def textbook_suv_factor(ds) -> float:
    """SUVbw per Bq/mL: weight [g] / (injected dose decayed from injection to series start)."""
    assert ds.Units == "BQML" and ds.DecayCorrection == "START"
    rp = ds.RadiopharmaceuticalInformationSequence[0]
    injected = datetime.strptime(rp.RadiopharmaceuticalStartDateTime.split(".")[0], "%Y%m%d%H%M%S")
    start = dicom_datetime(ds.SeriesDate, ds.SeriesTime)
    dt_s = (start - injected).total_seconds()
    decayed_bq = float(rp.RadionuclideTotalDose) * 0.5 ** (dt_s / float(rp.RadionuclideHalfLife))
    return float(ds.PatientWeight) * 1000.0 / decayed_bq


def test_pet_dicom_reproduces_the_nifti_suv_volume(written, tmp_path):
    ph, paths = written
    nifti = read_nifti(ph.write_nifti(tmp_path)["pet"])
    assert nifti.same_grid(ph.pet)
    series = read_series(paths["pet_dir"])
    assert len(series) == ph.pet.shape[2]
    factor = textbook_suv_factor(series[0])
    assert factor == pytest.approx(82.5e3 / (250e6 * math.exp(-math.log(2) * 72.5 * 60 / 6586.2)), rel=1e-12)
    for k, ds in enumerate(series):
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.128" and ds.Modality == "PT"
        assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
        assert textbook_suv_factor(ds) == factor
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        bqml = ds.pixel_array.astype(np.float64) * slope + intercept
        suv = bqml.T * factor
        expected = nifti.array[:, :, k].astype(np.float64)
        # int16 quantisation: half a stored step, plus float32 rounding of the phantom's values.
        tol = slope / 2 * factor + 1e-6 * np.abs(expected).max()
        assert np.abs(suv - expected).max() <= tol, k
        assert slope * factor < expected.max() / 30000 + 1e-12  # the full int16 range is used
        assert np.allclose([float(v) for v in ds.ImagePositionPatient], nifti.index_to_world([0, 0, k]))


def test_pet_header_has_every_suv_field(written):
    ph, paths = written
    ds = read_series(paths["pet_dir"])[0]
    assert (ds.PatientWeight, ds.PatientSize, ds.PatientSex) == (82.5, 1.75, "F")
    rp = ds.RadiopharmaceuticalInformationSequence[0]
    assert float(rp.RadionuclideHalfLife) == 6586.2
    assert float(rp.RadionuclideTotalDose) == 250e6
    assert rp.RadiopharmaceuticalStartTime.startswith("090000")
    assert rp.RadionuclideCodeSequence[0].CodeMeaning == "^18^Fluorine"
    assert ds.AcquisitionDate == ds.SeriesDate == "20240115"
    assert ds.SeriesTime.startswith("101230") and ds.AcquisitionTime.startswith("101230")
    assert [float(v) for v in ds.PixelSpacing] == [4.0, 4.0] and float(ds.SliceThickness) == 4.0
    assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert (ds.Rows, ds.Columns) == (ph.pet.shape[1], ph.pet.shape[0])
    # Pseudonymous patient, no birth date.
    assert str(ds.PatientName) == "SIM^0005" and ds.PatientBirthDate == ""


def test_ct_dicom_reads_back_exactly(written):
    ph, paths = written
    series = read_series(paths["ct_dir"])
    assert len(series) == ph.ct.shape[2]
    hu = np.stack([ds.pixel_array.astype(np.int32).T * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
                   for ds in series], axis=-1)
    assert np.array_equal(hu, ph.ct.array)
    ds = series[0]
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2" and ds.Modality == "CT"
    assert [float(v) for v in ds.PixelSpacing] == [2.0, 2.0]
    for k, ds in enumerate(series):
        assert np.allclose([float(v) for v in ds.ImagePositionPatient], ph.ct.index_to_world([0, 0, k]))


def test_series_share_study_and_frame_of_reference(written):
    _, paths = written
    pet, ct = read_series(paths["pet_dir"]), read_series(paths["ct_dir"])
    assert {ds.StudyInstanceUID for ds in pet + ct} == {pet[0].StudyInstanceUID}
    assert {ds.FrameOfReferenceUID for ds in pet + ct} == {pet[0].FrameOfReferenceUID}
    assert len({ds.SeriesInstanceUID for ds in pet}) == 1
    assert pet[0].SeriesInstanceUID != ct[0].SeriesInstanceUID
    instance_uids = [ds.SOPInstanceUID for ds in pet + ct]
    assert len(set(instance_uids)) == len(instance_uids)
    assert all(uid.is_valid for uid in instance_uids)


def test_simpleitk_reads_the_same_volumes(written):
    import SimpleITK as sitk

    ph, paths = written
    for folder, ref in ((paths["ct_dir"], ph.ct), (paths["pet_dir"], ph.pet)):
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
        vol = Volume.from_sitk(reader.Execute())
        assert vol.same_grid(ref)
        if ref is ph.ct:
            assert np.array_equal(vol.array, ref.array)
        else:
            factor = textbook_suv_factor(read_series(folder)[0])
            assert np.abs(vol.array * factor - ref.array).max() < 1e-3 * ref.array.max()


def test_uids_are_deterministic_per_seed(tmp_path):
    spec = PhantomSpec.small(seed=9, pet_shape=(40, 40, 80))
    a = make_phantom(spec).write_dicom(tmp_path / "a")
    b = make_phantom(spec).write_dicom(tmp_path / "b")
    first = lambda p: pydicom.dcmread(sorted(p.iterdir())[0])  # noqa: E731
    assert first(a["pet_dir"]).SOPInstanceUID == first(b["pet_dir"]).SOPInstanceUID
    assert first(a["ct_dir"]).StudyInstanceUID == first(b["ct_dir"]).StudyInstanceUID


def test_pet_bed_timing_is_consistent_with_the_series_start(written):
    """Per-bed AcquisitionTime after SeriesTime; FrameReferenceTime is the decay-weighted mid-frame
    time (here found numerically) and DecayFactor the decay over it, so that QIBA's back-computation
    from the earliest acquisition returns the series start."""
    _, paths = written
    series = read_series(paths["pet_dir"])
    start = dicom_datetime(series[0].SeriesDate, series[0].SeriesTime)
    half_life = float(series[0].RadiopharmaceuticalInformationSequence[0].RadionuclideHalfLife)
    lam = math.log(2) / half_life
    acquired = [dicom_datetime(ds.AcquisitionDate, ds.AcquisitionTime) for ds in series]
    assert min(acquired) == start and max(acquired) > start
    assert acquired == sorted(acquired)  # beds from the feet up
    duration_s = float(series[0].ActualFrameDuration) / 1000
    t = np.linspace(0, duration_s, 200001)
    t_mean = -math.log(np.exp(-lam * t).mean()) / lam
    for ds, acq in zip(series, acquired):
        ref_s = float(ds.FrameReferenceTime) / 1000
        assert (acq - start).total_seconds() + t_mean == pytest.approx(ref_s, abs=1e-3)
        assert float(ds.DecayFactor) == pytest.approx(math.exp(lam * ref_s), rel=1e-7)
