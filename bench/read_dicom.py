"""Benchmark: carpet's DICOM series reader vs SimpleITK's ImageSeriesReader (and dcm2niix if installed).

Writes a whole-body PET series (200×200×400, int16, per-slice RescaleSlope, full SUV header) and a CT
series (512×512×N) with pydicom into a temporary folder, then reads both, in the same run, with

* carpet: ``read_series`` (CT, HU) and ``to_suv`` (PET, SUVbw — reading plus the SUV conversion),
* SimpleITK: ``ImageSeriesReader.GetGDCMSeriesFileNames`` + ``Execute`` (no SUV),
* dcm2niix (uncompressed NIfTI output) when the binary is on PATH,

after one warm-up read (so the files are in the page cache for everyone), best of ``--repeat`` runs.

    PYTHONPATH=src /work/venv/bin/python bench/read_dicom.py [--ct-slices 400] [--repeat 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid


def write_series(folder: Path, shape: tuple[int, int, int], spacing: tuple[float, float, float],
                 modality: str, seed: int = 0) -> None:
    """A simple synthetic series: smooth body + hot spots (PET, Bq/mL) or HU body + bone (CT)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ni, nj, nk = shape
    i, j = np.meshgrid(np.arange(ni), np.arange(nj), indexing="ij")
    body = ((i - ni / 2) / (0.4 * ni)) ** 2 + ((j - nj / 2) / (0.3 * nj)) ** 2 < 1
    study, series, frame = "1.2.826.0.1.3680043.10.1", generate_uid(), "1.2.826.0.1.3680043.10.2"
    sop = "1.2.840.10008.5.1.4.1.1.128" if modality == "PT" else "1.2.840.10008.5.1.4.1.1.2"
    for k in range(nk):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"{modality}_{k:04d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = sop, meta.MediaStorageSOPInstanceUID, modality
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.PatientID, ds.PatientName, ds.InstanceNumber = "BENCH", "Bench^Phantom", k + 1
        ds.Rows, ds.Columns = nj, ni
        ds.PixelSpacing, ds.SliceThickness = [spacing[1], spacing[0]], spacing[2]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-(ni - 1) * spacing[0] / 2, -(nj - 1) * spacing[1] / 2,
                                   -k * spacing[2]]  # written head to feet, as scanners do
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        if modality == "PT":
            act = np.where(body, 5000.0, 0.0) + rng.gamma(4, 300, size=body.shape) * body
            if k % 50 == 25:
                act[ni // 3:ni // 3 + 6, nj // 2:nj // 2 + 6] = 40000.0
            slope = float(act.max()) / 32000
            stored = np.round(act / slope).astype(np.int16)
            ds.RescaleSlope, ds.RescaleIntercept = f"{slope:.8g}", "0"
            ds.Units, ds.DecayCorrection, ds.SeriesDate, ds.SeriesTime = "BQML", "START", "20250101", "110000"
            ds.AcquisitionDate, ds.AcquisitionTime = "20250101", "110000"
            ds.PatientWeight, ds.PatientSize, ds.PatientSex = "75", "1.78", "M"
            rp = Dataset()
            rp.RadionuclideTotalDose, rp.RadionuclideHalfLife = "300000000", "6586.2"
            rp.RadiopharmaceuticalStartDateTime = "20250101100000"
            ds.RadiopharmaceuticalInformationSequence = [rp]
        else:
            hu = np.where(body, 40, -1000) + (((i - ni / 2) ** 2 + (j - nj / 2) ** 2) < 400) * 700
            stored = (hu + 1024).astype(np.int16)
            ds.RescaleSlope, ds.RescaleIntercept = "1", "-1024"
        ds.PixelData = np.ascontiguousarray(stored.T).tobytes()
        ds.save_as(path, enforce_file_format=True)


def best_of(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ct-slices", type=int, default=400)
    parser.add_argument("--pet-slices", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=None, help="write the series here and keep them")
    args = parser.parse_args()

    import SimpleITK as sitk

    from carpet.io.dicom import read_series
    from carpet.suv import to_suv

    root = args.keep or Path(tempfile.mkdtemp(prefix="carpet-bench-"))
    pet_dir, ct_dir = root / "pet", root / "ct"
    t = time.perf_counter()
    if not pet_dir.exists():
        write_series(pet_dir, (200, 200, args.pet_slices), (4.0, 4.0, 2.0), "PT")
    if not ct_dir.exists():
        write_series(ct_dir, (512, 512, args.ct_slices), (0.98, 0.98, 2.0), "CT", seed=1)
    print(f"wrote PET 200x200x{args.pet_slices} and CT 512x512x{args.ct_slices} in "
          f"{time.perf_counter() - t:.1f} s under {root}")

    def sitk_read(folder: Path):
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
        return reader.Execute()

    rows = []
    for name, folder in (("PET", pet_dir), ("CT", ct_dir)):
        carpet_fn = (lambda f=folder: to_suv(f)[0]) if name == "PET" else (lambda f=folder: read_series(f))
        sitk_read(folder), carpet_fn()  # warm-up: page cache, imports
        t_carpet, vol = best_of(carpet_fn, args.repeat)
        t_sitk, img = best_of(lambda f=folder: sitk_read(f), args.repeat)
        ref = sitk.GetArrayFromImage(img).transpose(2, 1, 0)
        same = vol.shape == ref.shape and np.allclose(vol.origin, img.GetOrigin(), atol=1e-3)
        t_d2n = None
        if shutil.which("dcm2niix"):
            out = Path(tempfile.mkdtemp(prefix="d2n-"))
            t_d2n, _ = best_of(lambda f=folder, o=out: subprocess.run(
                ["dcm2niix", "-z", "n", "-b", "n", "-o", str(o), "-f", "x%s", str(f)],
                check=True, capture_output=True), args.repeat)
            shutil.rmtree(out)
        rows.append((name, t_carpet, t_sitk, t_d2n, same))

    print(f"{'series':6} {'carpet s':>9} {'SimpleITK s':>12} {'ratio':>6} {'dcm2niix s':>11} {'ratio':>6}  same grid")
    for name, tc, ts, td, same in rows:
        d2n = f"{td:11.3f} {tc / td:6.2f}" if td else f"{'n/a':>11} {'':>6}"
        print(f"{name:6} {tc:9.3f} {ts:12.3f} {tc / ts:6.2f} {d2n}  {same}")
    tc, ts = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"{'total':6} {tc:9.3f} {ts:12.3f} {tc / ts:6.2f}   (carpet PET time includes the SUV conversion)")
    if args.keep is None:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
