"""DICOM series of a phantom: PET in Bq/mL with a complete SUV header, CT in HU.

The PET is written the way scanners write it: one file per slice, ``Units = BQML``,
``DecayCorrection = START`` (activity decay-corrected to the series start), int16 pixels with a
per-slice ``RescaleSlope``. The activity concentration is

    C [Bq/mL] = SUV × A_inj · exp(−ln 2 · Δt / T½) / W [g],

Δt being the time from injection (``RadiopharmaceuticalStartDateTime``) to the series start
(``SeriesDate``/``SeriesTime``), so that the textbook SUVbw formula applied to the header gives back
the phantom's SUV up to the int16 quantisation. The PET is acquired in 20 cm beds of 3 min: each
slice carries its bed's ``AcquisitionTime``, ``FrameReferenceTime`` and ``DecayFactor`` (the first
bed starts at ``SeriesTime``). The CT is uint16 with ``RescaleIntercept = -1024``.
Both series share the study and the frame of reference. Patient identity is a pseudonym
(``SIM^<seed>``); there is no real PHI.

Written with pydicom, tag by tag (highdicom builds SEG, SR and enhanced multi-frame objects, not
the classic single-frame PET and CT images scanners send).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from carpet import __version__

if TYPE_CHECKING:  # pragma: no cover
    from carpet.synth.phantom import Phantom, PhantomSpec
    from carpet.volume import Volume

#: F-18 half-life in seconds (the value scanners write in RadionuclideHalfLife).
F18_HALF_LIFE_S = 6586.2
F18_POSITRON_FRACTION = 0.9673
#: Whole-body PET is acquired in beds (here 20 cm, 3 min each, from the feet up, no overlap).
BED_LENGTH_MM = 200.0
BED_DURATION_S = 180.0
PET_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.128"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def injection_datetime(spec: "PhantomSpec") -> datetime:
    """Injection time (``study_date`` + ``injection_time``)."""
    return datetime.strptime(spec.study_date + spec.injection_time, "%Y%m%d%H%M%S")


def series_datetime(spec: "PhantomSpec") -> datetime:
    """Start of the PET acquisition: injection + ``uptake_min``."""
    return injection_datetime(spec) + timedelta(minutes=spec.uptake_min)


def bqml_per_suv(spec: "PhantomSpec") -> float:
    """Activity concentration (Bq/mL) of 1 SUVbw: decayed dose / body weight in grams."""
    dt_s = (series_datetime(spec) - injection_datetime(spec)).total_seconds()
    dose_bq = spec.dose_mbq * 1e6 * math.exp(-math.log(2) * dt_s / F18_HALF_LIFE_S)
    return dose_bq / (spec.weight_kg * 1000.0)


def write_phantom_dicom(phantom: "Phantom", out_dir: str | Path) -> dict[str, Path]:
    """Write ``out_dir/pet`` and ``out_dir/ct``, one DICOM file per slice.

    Returns
    -------
    dict
        ``{'pet_dir': Path, 'ct_dir': Path}``.
    """
    spec = phantom.spec
    out = Path(out_dir)
    uid = _UidMaker(spec.seed)
    study = {"StudyInstanceUID": uid("study"), "FrameOfReferenceUID": uid("frame")}
    pet_dir = _write_series(phantom.pet.with_array(phantom.pet.array * bqml_per_suv(spec)), out / "pet",
                            _pet_series_tags(spec), spec, study, uid, modality="PT")
    ct_dir = _write_series(phantom.ct, out / "ct", _ct_series_tags(), spec, study, uid, modality="CT")
    return {"pet_dir": pet_dir, "ct_dir": ct_dir}


class _UidMaker:
    """Deterministic UIDs from the seed (pydicom's root; entropy = seed + name)."""

    def __init__(self, seed: int):
        self.seed = seed

    def __call__(self, *name: Any) -> str:
        from pydicom.uid import generate_uid

        return generate_uid(entropy_srcs=["carpet.synth", str(self.seed), *map(str, name)])


def _da(t: datetime) -> str:
    return t.strftime("%Y%m%d")


def _tm(t: datetime) -> str:
    return t.strftime("%H%M%S.%f")


def _code(value: str, meaning: str):
    """A SNOMED CT code item."""
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "SCT", meaning
    return item


def _pet_series_tags(spec: "PhantomSpec") -> dict[str, Any]:
    from pydicom.dataset import Dataset

    inj, start = injection_datetime(spec), series_datetime(spec)
    rp = Dataset()
    rp.Radiopharmaceutical = "Fluorodeoxyglucose"
    rp.RadiopharmaceuticalStartTime = _tm(inj)
    rp.RadiopharmaceuticalStartDateTime = inj.strftime("%Y%m%d%H%M%S.%f")
    rp.RadionuclideTotalDose = f"{spec.dose_mbq * 1e6:.1f}"
    rp.RadionuclideHalfLife = f"{F18_HALF_LIFE_S}"
    rp.RadionuclidePositronFraction = f"{F18_POSITRON_FRACTION}"
    rp.RadionuclideCodeSequence = [_code("77004003", "^18^Fluorine")]
    rp.RadiopharmaceuticalCodeSequence = [_code("35321007", "Fluorodeoxyglucose F^18^")]
    supine = _code("40199007", "supine")
    recumbent = _code("102538003", "recumbent")
    recumbent.PatientOrientationModifierCodeSequence = [supine]
    return {
        "SOPClassUID": PET_IMAGE_STORAGE,
        "ImageType": ["ORIGINAL", "PRIMARY"],
        "SeriesDescription": "PET WB (carpet phantom)",
        "Units": "BQML",
        "CountsSource": "EMISSION",
        "SeriesType": ["WHOLE BODY", "IMAGE"],
        "CorrectedImage": ["NORM", "DTIM", "ATTN", "SCAT", "DECY", "RAN"],
        "DecayCorrection": "START",
        "ReconstructionMethod": "OSEM",
        "RandomsCorrectionMethod": "DLYD",
        "AttenuationCorrectionMethod": "CT",
        "ScatterCorrectionMethod": "MODEL",
        "ActualFrameDuration": int(BED_DURATION_S * 1000),
        "SeriesDate": _da(start), "SeriesTime": _tm(start),
        "PixelRepresentation": 1,
        "RescaleIntercept": "0",
        "RadiopharmaceuticalInformationSequence": [rp],
        "CollimatorType": "NONE",
        "PatientOrientationCodeSequence": [recumbent],
        "PatientGantryRelationshipCodeSequence": [_code("102541007", "feet-first")],
    }


def _ct_series_tags() -> dict[str, Any]:
    return {
        "SOPClassUID": CT_IMAGE_STORAGE,
        "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
        "SeriesDescription": "CT low dose (carpet phantom)",
        "KVP": "120",
        "AcquisitionNumber": 1,
        "PatientPosition": "FFS",  # PET says this with its orientation code sequences instead
        "ConvolutionKernel": "B30f",
        "PixelRepresentation": 0,
        "RescaleIntercept": "-1024",
        "RescaleSlope": "1",
        "RescaleType": "HU",
    }


def _write_series(volume: "Volume", folder: Path, series_tags: dict[str, Any], spec: "PhantomSpec",
                  study: dict[str, str], uid: _UidMaker, modality: str) -> Path:
    """One file per slice k of ``volume`` (PET values in Bq/mL; CT in HU)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

    folder.mkdir(parents=True, exist_ok=True)
    start = series_datetime(spec)
    series_uid = uid(modality, "series")
    ni, nj, nk = volume.shape
    row_dir, col_dir = volume.direction[:, 0], volume.direction[:, 1]
    for k in range(nk):
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SOPInstanceUID = uid(modality, "instance", k)
        # Patient and study: pseudonymous, with the SUV fields a scanner writes.
        ds.PatientName = f"SIM^{spec.seed:04d}"
        ds.PatientID = f"SIM{spec.seed:04d}"
        ds.PatientBirthDate = ""
        ds.PatientSex = spec.sex
        ds.PatientWeight = f"{spec.weight_kg:g}"
        ds.PatientSize = f"{spec.height_cm / 100.0:g}"
        ds.StudyInstanceUID = study["StudyInstanceUID"]
        ds.StudyDate, ds.StudyTime = _da(start), _tm(start)
        ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "", ""
        ds.Modality = modality
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = 2 if modality == "PT" else 1
        ds.SeriesDate, ds.SeriesTime = _da(start), _tm(start)
        ds.AcquisitionDate, ds.AcquisitionTime = _da(start), _tm(start)
        if modality == "PT":
            _set_bed_timing(ds, k, volume.spacing[2], start)
        ds.ContentDate, ds.ContentTime = _da(start), _tm(start)
        ds.Manufacturer = "carpet"
        ds.ManufacturerModelName = "synth phantom"
        ds.SoftwareVersions = __version__
        ds.FrameOfReferenceUID = study["FrameOfReferenceUID"]
        ds.PositionReferenceIndicator = ""
        ds.BodyPartExamined = "WHOLEBODY"
        # Geometry: rows run along j, columns along i.
        position = volume.index_to_world([0, 0, k])
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*row_dir, *col_dir)]
        ds.PixelSpacing = [f"{volume.spacing[1]:g}", f"{volume.spacing[0]:g}"]
        ds.SliceThickness = f"{volume.spacing[2]:g}"
        ds.SliceLocation = f"{position[2]:.6f}"
        ds.InstanceNumber = k + 1
        if modality == "PT":
            ds.ImageIndex, ds.NumberOfSlices = k + 1, nk
        for key, value in series_tags.items():
            setattr(ds, key, value)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = nj, ni
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        plane = np.asarray(volume.array[:, :, k], dtype=np.float64).T
        if modality == "PT":
            stored, slope = _quantise_int16(plane)
            ds.RescaleSlope = f"{slope:.10g}"
        else:
            stored = (np.rint(plane) + 1024).astype(np.uint16)
        ds.PixelData = np.ascontiguousarray(stored).astype(stored.dtype.newbyteorder("<")).tobytes()

        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.file_meta = meta
        ds.save_as(folder / f"{modality}{k + 1:04d}.dcm", enforce_file_format=True)
    return folder


def _set_bed_timing(ds: Any, k: int, slice_mm: float, start: datetime) -> None:
    """Per-bed AcquisitionTime, FrameReferenceTime and DecayFactor, as scanners write them.

    Bed ``b`` starts ``b × BED_DURATION_S`` after the series start. Its reference time is the
    decay-weighted mean time of the frame, ``t_ave = ln(λT / (1 − e^(−λT))) / λ`` after the bed
    start, and ``DecayFactor = exp(λ · FrameReferenceTime)`` is the factor that brought the bed's
    activity back to the series start (DecayCorrection START). The pixel values do not depend on
    the bed: the phantom is an activity distribution at the series start.
    """
    lam = math.log(2) / F18_HALF_LIFE_S
    bed = int(k * slice_mm // BED_LENGTH_MM)
    t_ave_s = math.log(lam * BED_DURATION_S / (1 - math.exp(-lam * BED_DURATION_S))) / lam
    ref_s = bed * BED_DURATION_S + t_ave_s
    acquired = start + timedelta(seconds=bed * BED_DURATION_S)
    ds.AcquisitionDate, ds.AcquisitionTime = _da(acquired), _tm(acquired)
    ds.FrameReferenceTime = f"{ref_s * 1000:.3f}"
    ds.DecayFactor = f"{math.exp(lam * ref_s):.8f}"


def _quantise_int16(plane: np.ndarray) -> tuple[np.ndarray, float]:
    """int16 pixels and the slope that maps them back: the slice maximum uses the full range.

    The value recovered is ``stored × slope``, within ``slope / 2`` of the input.
    """
    peak = float(np.abs(plane).max())
    slope = peak / 32767.0 if peak > 0 else 1.0
    # Round the slope to what the DS string keeps, so the file's slope is the one quantised with.
    slope = float(f"{slope:.10g}")
    return np.clip(np.rint(plane / slope), -32768, 32767).astype(np.int16), slope
