"""Benchmark of ``carpet quantify`` on a whole-body-sized synthetic study, against two baselines.

* **floor**: decode the same two ``.nii.gz`` files with the fastest reader at hand (measured here:
  SimpleITK, nibabel, plain gzip + numpy) and make one numpy pass over each volume;
* **peer**: the pipeline a competent user writes with SimpleITK: read both, resample the CT onto
  the PET grid, threshold SUV ≥ 4, ConnectedComponent (fully connected), relabel,
  LabelIntensityStatisticsImageFilter, Dmax between centroids, write the label map and a CSV;
* **carpet**: ``run_quantify`` from the files to all outputs (lesions.csv, summary.json,
  lesions.nii.gz) with SUVpeak, Dmax (centroids and voxels), provenance with input hashes.

Also a 1,000-lesion study on the same grid (per-lesion work must stay O(voxels): < 2× the 30-lesion
case). Study: PET 200×200×400 float32 at 4 mm, CT 512×512×400 int16 at 1.5625×1.5625×4 mm, from
``carpet.synth`` when it is available, else from the generator below.

Run: ``PYTHONPATH=src /work/venv/bin/python bench/quantify.py [--repeat 3] [--workdir DIR]``.
Each timing is the best of ``--repeat`` runs (the machine is shared).
"""

from __future__ import annotations

import argparse
import gzip
import tempfile
import time
from pathlib import Path

import numpy as np

PET_SHAPE = (200, 200, 400)
PET_SPACING = (4.0, 4.0, 4.0)
CT_SHAPE = (512, 512, 400)
CT_SPACING = (1.5625, 1.5625, 4.0)


def make_study(folder: Path, n_lesions: int, seed: int = 0) -> dict[str, Path]:
    """Whole-body-like PET (SUV) and CT (HU) as .nii.gz: body ellipse, liver, bone, noise, lesions."""
    import SimpleITK as sitk

    folder.mkdir(parents=True, exist_ok=True)
    paths = {"pet": folder / f"pet_{n_lesions}.nii.gz", "ct": folder / "ct.nii.gz"}
    if all(p.exists() for p in paths.values()):
        return paths
    rng = np.random.default_rng(seed)
    i, j = np.ogrid[:PET_SHAPE[0], :PET_SHAPE[1]]
    body2d = ((i - 100) / 80.0) ** 2 + ((j - 100) / 55.0) ** 2 <= 1
    pet = np.zeros(PET_SHAPE, np.float32)
    pet[body2d, 20:380] = 1.0
    pet[60:100, 70:110, 200:240] = 2.2                               # liver
    pet += (rng.normal(0, 0.15, PET_SHAPE) * (pet > 0)).astype(np.float32)
    idx = np.argwhere(body2d)
    radii_mm = rng.uniform(4, 22, n_lesions) if n_lesions <= 100 else rng.uniform(4, 8, n_lesions)
    for r_mm in radii_mm:
        ci, cj = idx[rng.integers(len(idx))]
        ck = rng.integers(30, 370)
        r = int(np.ceil(r_mm / 4.0))
        sl = (slice(max(ci - r, 0), ci + r + 1), slice(max(cj - r, 0), cj + r + 1), slice(ck - r, ck + r + 1))
        g = np.ogrid[sl]
        ball = ((g[0] - ci) ** 2 + (g[1] - cj) ** 2 + (g[2] - ck) ** 2) * 16.0 <= r_mm ** 2
        pet[sl][ball] = rng.uniform(4.5, 15.0)
    _write(pet, PET_SPACING, paths["pet"])
    if not paths["ct"].exists():
        ii, jj = np.ogrid[:CT_SHAPE[0], :CT_SHAPE[1]]
        body = ((ii - 256) / 205.0) ** 2 + ((jj - 256) / 140.0) ** 2 <= 1
        spine = ((ii - 256) / 18.0) ** 2 + ((jj - 330) / 18.0) ** 2 <= 1
        slab = np.where(body, 40, -1000).astype(np.int16)
        slab[spine] = 700
        ct = np.repeat(slab[:, :, None], CT_SHAPE[2], axis=2)
        ct += rng.integers(-20, 21, CT_SHAPE, dtype=np.int16) * body[:, :, None]
        _write(ct, CT_SPACING, paths["ct"])
    return paths


def _write(arr, spacing, path):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(arr.transpose(2, 1, 0)))
    img.SetSpacing(spacing)
    img.SetOrigin((-400.0, -400.0, -1600.0))
    sitk.WriteImage(img, str(path), useCompression=True)


# ---------------------------------------------------------------------------------------------
def best(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def readers():
    import nibabel as nib
    import SimpleITK as sitk

    def sitk_read(p):
        img = sitk.ReadImage(str(p))
        return float(np.max(sitk.GetArrayViewFromImage(img)))  # the view dies with img: reduce here

    def nib_read(p):
        return float(np.max(np.asanyarray(nib.load(str(p)).dataobj)))

    def gzip_read(p):  # raw NIfTI-1: 352-byte header, then the voxels
        raw = gzip.decompress(Path(p).read_bytes())
        vox_offset = int(np.frombuffer(raw[108:112], np.float32)[0])
        dtype = {16: np.float32, 4: np.int16, 2: np.uint8, 512: np.uint16, 8: np.int32}[
            int(np.frombuffer(raw[70:72], np.int16)[0])]
        return float(np.max(np.frombuffer(raw, dtype, offset=vox_offset)))

    return {"SimpleITK": sitk_read, "nibabel": nib_read, "gzip+numpy": gzip_read}


def floor(paths, repeat):
    """Fastest reader at hand + one numpy pass (max) over each volume."""
    results = {}
    for name, read_and_pass in readers().items():
        results[name] = best(lambda: [read_and_pass(paths[k]) for k in ("pet", "ct")], repeat)
    return min(results.values()), results


def peer(paths, out: Path):
    """The SimpleITK pipeline a competent user writes (see module docstring)."""
    import SimpleITK as sitk
    from scipy.spatial.distance import pdist

    pet = sitk.ReadImage(str(paths["pet"]), sitk.sitkFloat32)
    ct = sitk.ReadImage(str(paths["ct"]))
    ct_on_pet = sitk.Resample(ct, pet, sitk.Transform(), sitk.sitkLinear, -1024.0)
    mask = sitk.BinaryThreshold(pet, 4.0, 1e30, 1, 0)
    cc = sitk.RelabelComponent(sitk.ConnectedComponent(mask, True))
    stats = sitk.LabelIntensityStatisticsImageFilter()
    stats.Execute(cc, pet)
    voxel_ml = np.prod(pet.GetSpacing()) / 1000
    rows, cents = [], []
    for lab in stats.GetLabels():
        n = stats.GetNumberOfPixels(lab)
        mean = stats.GetMean(lab)
        cents.append(stats.GetCenterOfGravity(lab))
        rows.append(f"{lab},{n * voxel_ml},{stats.GetMaximum(lab)},{mean},{mean * n * voxel_ml}")
    dmax = float(pdist(np.array(cents)).max()) if len(cents) > 1 else 0.0
    out.mkdir(parents=True, exist_ok=True)
    (out / "lesions.csv").write_text("lesion_id,volume_ml,suv_max,suv_mean,tlg\n" + "\n".join(rows))
    sitk.WriteImage(sitk.Cast(cc, sitk.sitkUInt16), str(out / "lesions.nii.gz"), useCompression=True)
    _ = ct_on_pet
    return len(rows), dmax


def carpet_run(paths, out: Path):
    from carpet.quantify import run_quantify

    return run_quantify(paths["pet"], ct_path=paths["ct"], out_dir=out, method="suv4")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "carpet-bench-quantify")
    args = ap.parse_args()
    import carpet.quantify  # noqa: F401  (imports are not part of the timed work)
    t = time.perf_counter()
    study = make_study(args.workdir, 30)
    many = make_study(args.workdir, 1000, seed=1)
    print(f"study files ready in {time.perf_counter() - t:.1f} s: "
          f"PET {study['pet'].stat().st_size / 1e6:.1f} MB, CT {study['ct'].stat().st_size / 1e6:.1f} MB (gz)")

    t_floor, per_reader = floor(study, args.repeat)
    print("floor readers (s): " + ", ".join(f"{k} {v:.2f}" for k, v in per_reader.items()))
    t_peer = best(lambda: peer(study, args.workdir / "peer"), args.repeat)
    n_peer, dmax_peer = peer(study, args.workdir / "peer")
    t_carpet = best(lambda: carpet_run(study, args.workdir / "carpet"), args.repeat)
    res = carpet_run(study, args.workdir / "carpet")
    t_many = best(lambda: carpet_run(many, args.workdir / "carpet1000"), args.repeat)
    res_many = carpet_run(many, args.workdir / "carpet1000")
    s = res.summary
    assert s["n_lesions"] == n_peer and abs(s["dmax_mm"] - dmax_peer) < 1e-3, (s["n_lesions"], n_peer)
    print(f"carpet  30-lesion study: {t_carpet:.2f} s  ({s['n_lesions']} lesions, stages "
          + ", ".join(f"{k} {v:.2f}" for k, v in res.extra["timing_s"].items()) + "; last run)")
    print(f"carpet 1000-lesion study: {t_many:.2f} s  ({res_many.summary['n_lesions']} lesions, stages "
          + ", ".join(f"{k} {v:.2f}" for k, v in res_many.extra["timing_s"].items()) + "; last run)")
    print(f"floor (fastest reader + one pass): {t_floor:.2f} s")
    print(f"peer  (SimpleITK pipeline):        {t_peer:.2f} s  ({n_peer} lesions, Dmax {dmax_peer:.1f} mm)")
    print(f"ratio carpet/floor = {t_carpet / t_floor:.2f}  (goal <= 1.3)")
    print(f"ratio carpet/peer  = {t_carpet / t_peer:.2f}  (goal <= 1.0)")
    print(f"ratio 1000/30 lesions = {t_many / t_carpet:.2f}  (goal < 2)")


if __name__ == "__main__":
    main()
