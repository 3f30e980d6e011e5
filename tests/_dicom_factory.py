"""Tiny synthetic DICOM series for tests (pydicom only, independent of carpet's reader).

``write_series`` writes one single-frame file per slice with a complete PET SUV header; keyword
arguments change or delete (value ``None``) header attributes so tests can break one thing at a time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

PET_SOP = "1.2.840.10008.5.1.4.1.1.128"
CT_SOP = "1.2.840.10008.5.1.4.1.1.2"


def pet_header(**changes) -> dict:
    """Header attributes of a standard FDG PET (BQML, START) that the SUV rules read."""
    base = dict(
        Modality="PT", Units="BQML", DecayCorrection="START", CorrectedImage=["ATTN", "DECY"],
        PatientWeight="70", PatientSize="1.75", PatientSex="F",
        SeriesDate="20250101", SeriesTime="110000", AcquisitionDate="20250101", AcquisitionTime="110000",
        ActualFrameDuration=300000, FrameReferenceTime="150000", Manufacturer="Synthetic",
        RadionuclideTotalDose="370000000", RadionuclideHalfLife="6586.2",
        RadiopharmaceuticalStartDateTime="20250101100000", RadiopharmaceuticalStartTime="100000",
    )
    base.update(changes)
    return base


_RP_KEYS = ("RadionuclideTotalDose", "RadionuclideHalfLife", "RadiopharmaceuticalStartDateTime",
            "RadiopharmaceuticalStartTime", "RadionuclideCodeSequence")


def write_series(folder: Path, values: np.ndarray, *, spacing=(2.0, 3.0, 4.0), origin=(-10.0, -20.0, 30.0),
                 row_cos=(1, 0, 0), col_cos=(0, 1, 0), positions=None, slopes=None, intercept=0.0,
                 header: dict | None = None, per_slice: dict | None = None, series_uid=None,
                 study_uid="1.2.3.4", for_uid="1.2.3.4.5", prefix="s") -> list[Path]:
    """Write ``values`` (array [i, j, k], carpet order) as a single-frame series; return the files.

    Stored pixel = round(values / slope) as int16, pixel row r / column c = values[c, r, k].
    ``positions`` overrides ImagePositionPatient per slice; ``per_slice`` maps an attribute to a list
    of per-slice values.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    header = pet_header() if header is None else header
    ni, nj, nk = values.shape
    row_cos, col_cos = np.asarray(row_cos, float), np.asarray(col_cos, float)
    normal = np.cross(row_cos, col_cos)
    series_uid = series_uid or generate_uid()
    slopes = np.ones(nk) if slopes is None else np.asarray(slopes, float)
    files = []
    for k in range(nk):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = PET_SOP if header.get("Modality") == "PT" else CT_SOP
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"{prefix}{k:03d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, for_uid
        ds.PatientID, ds.PatientName = "TEST01", "Test^Phantom"
        ds.PatientBirthDate, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "", "1", "", ""
        ds.StudyDate, ds.StudyTime, ds.SeriesNumber, ds.InstanceNumber = "20250101", "100000", 1, k + 1
        ds.Rows, ds.Columns = nj, ni
        ds.PixelSpacing = [spacing[1], spacing[0]]
        ds.SliceThickness = spacing[2]
        ds.ImageOrientationPatient = [*row_cos, *col_cos]
        pos = (np.asarray(origin) + k * spacing[2] * normal) if positions is None else positions[k]
        ds.ImagePositionPatient = [float(x) for x in pos]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = f"{slopes[k]:.10g}", f"{intercept:g}"
        rp = Dataset()
        for key, value in header.items():
            target = rp if key in _RP_KEYS else ds
            if value is not None:
                setattr(target, key, value)
        for key, vals in (per_slice or {}).items():
            setattr(rp if key in _RP_KEYS else ds, key, vals[k])
        ds.RadiopharmaceuticalInformationSequence = [rp]
        stored = np.round((values[:, :, k] - intercept) / slopes[k]).astype(np.int16)
        ds.PixelData = np.ascontiguousarray(stored.T).tobytes()
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def ramp(shape=(8, 6, 4)) -> np.ndarray:
    """Distinct values at every voxel, so any axis mix-up shows."""
    i, j, k = np.indices(shape)
    return (100 * i + 10 * j + k + 1).astype(float)


def read_header(path: Path) -> Dataset:
    return pydicom.dcmread(path, stop_before_pixels=True)
