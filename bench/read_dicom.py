"""Benchmark: carpet's DICOM series reader vs SimpleITK's ImageSeriesReader (and dcm2niix if installed).

Writes carpet's whole-body phantom (``carpet.synth``: PET 200×200×400 at 4 mm, int16 with per-slice
RescaleSlope and a full SUV header; CT 512×512×400) as DICOM into a temporary folder, then reads both,
in the same run, with

* carpet: ``read_series`` (CT, HU) and ``to_suv`` (PET, SUVbw — reading plus the SUV conversion),
* SimpleITK: ``ImageSeriesReader.GetGDCMSeriesFileNames`` + ``Execute`` (no SUV),
* dcm2niix (uncompressed NIfTI output) when the binary is on PATH,

after one warm-up read each (files in the page cache for everyone); the readers take turns, best of
``--repeat`` rounds.

    PYTHONPATH=src /work/venv/bin/python bench/read_dicom.py [--repeat 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np


def timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def interleaved(fns: dict, repeat: int) -> tuple[dict, dict]:
    """Run the readers in turn ``repeat`` times (the machine is shared: load drifts between runs);
    return each one's best time and its last output."""
    best, outs = {k: float("inf") for k in fns}, {}
    for _ in range(repeat):
        for key, fn in fns.items():
            dt, outs[key] = timed(fn)
            best[key] = min(best[key], dt)
    return best, outs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=None, help="write the series here and keep them")
    args = parser.parse_args()

    import SimpleITK as sitk

    from carpet.io.dicom import read_series
    from carpet.suv import to_suv

    from carpet.synth import PhantomSpec, make_phantom

    root = args.keep or Path(tempfile.mkdtemp(prefix="carpet-bench-"))
    pet_dir, ct_dir = root / "pet", root / "ct"
    t = time.perf_counter()
    if not (pet_dir.exists() and ct_dir.exists()):
        ph = make_phantom(PhantomSpec.whole_body(seed=1, ct_spacing_mm=(1.5625, 1.5625, 4.0)))
        ph.write_dicom(root)
        print(f"wrote phantom PET {ph.pet.shape} and CT {ph.ct.shape} in {time.perf_counter() - t:.1f} s "
              f"under {root}")

    def sitk_read(folder: Path):
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
        return reader.Execute()

    rows = []
    for name, folder in (("PET", pet_dir), ("CT", ct_dir)):
        fns = {"carpet": (lambda f=folder: to_suv(f)[0]) if name == "PET" else (lambda f=folder: read_series(f)),
               "sitk": lambda f=folder: sitk_read(f)}
        out = Path(tempfile.mkdtemp(prefix="d2n-"))
        if shutil.which("dcm2niix"):
            fns["dcm2niix"] = lambda f=folder, o=out: subprocess.run(
                ["dcm2niix", "-z", "n", "-b", "n", "-o", str(o), "-f", "x%s", str(f)],
                check=True, capture_output=True)
        for fn in fns.values():  # warm-up: page cache, imports
            fn()
        best, outs = interleaved(fns, args.repeat)
        shutil.rmtree(out)
        vol, img = outs["carpet"], outs["sitk"]
        ref = sitk.GetArrayFromImage(img).transpose(2, 1, 0)
        same = vol.shape == ref.shape and np.allclose(vol.origin, img.GetOrigin(), atol=1e-3)
        if name == "CT":  # HU must agree voxel for voxel (PET differs by the SUV factor)
            same = same and np.array_equal(vol.array, ref)
        t_carpet, t_sitk, t_d2n = best["carpet"], best["sitk"], best.get("dcm2niix")
        rows.append((name, t_carpet, t_sitk, t_d2n, same))

    print(f"{'series':6} {'carpet s':>9} {'SimpleITK s':>12} {'ratio':>6} {'dcm2niix s':>11} {'ratio':>6}  same grid (CT: and values)")
    for name, tc, ts, td, same in rows:
        d2n = f"{td:11.3f} {tc / td:6.2f}" if td else f"{'n/a':>11} {'':>6}"
        print(f"{name:6} {tc:9.3f} {ts:12.3f} {tc / ts:6.2f} {d2n}  {same}")
    tc, ts = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"{'total':6} {tc:9.3f} {ts:12.3f} {tc / ts:6.2f}   (carpet PET time includes the SUV conversion)")
    if args.keep is None:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
