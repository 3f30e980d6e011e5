"""Benchmark of ``carpet quantify`` on a whole-body-sized synthetic study, against two baselines.

* **floor**: decode the same two ``.nii.gz`` files with the fastest reader at hand (measured here:
  SimpleITK, nibabel, plain gzip + numpy) and make one numpy pass over each volume;
* **peer**: the pipeline a competent user writes with SimpleITK: read both, resample the CT onto
  the PET grid, threshold SUV ≥ 4, ConnectedComponent (fully connected), relabel,
  LabelIntensityStatisticsImageFilter, Dmax between centroids, write the label map and a CSV;
* **carpet**: ``run_quantify`` from the files to all outputs (lesions.csv, summary.json,
  lesions.nii.gz) with SUVpeak, Dmax (centroids and voxels), provenance with input hashes.

Also a 1,000-lesion study on the same grid (per-lesion work must stay O(voxels): < 2× the 30-lesion
case). Study: ``carpet.synth`` whole-body phantom, PET 200×200×400 float32 at 4 mm, CT 512×512×400
int16 at 1.5625×1.5625×4 mm.

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
    """The whole-body study as .nii.gz, from ``carpet.synth`` (cached in ``folder``).

    The 30-lesion PET is blurred (FWHM 6 mm) with 10 % noise, and the CT gets ±20 HU of uniform
    noise, so that the gzip streams are as hard to decode as clinical ones (the ideal phantom
    compresses 100-fold). The 1,000-lesion PET uses small (4.5 mm) extramedullary lesions so that
    they fit, with noise but no blur so that every lesion stays above SUV 4; it is paired with the
    CT file of the 30-lesion study (same anatomy and grid), because the phantom paints CT lesion
    labels as uint8 (≤ 255 lesions on a separate CT grid).
    """
    from carpet.io import write_nifti
    from carpet.synth import LesionSpec, PhantomSpec, make_phantom

    folder.mkdir(parents=True, exist_ok=True)
    paths = {"pet": folder / f"pet_{n_lesions}.nii.gz", "ct": folder / "ct.nii.gz"}
    if all(p.exists() for p in paths.values()):
        return paths
    if n_lesions <= 100:
        spec = PhantomSpec.whole_body(seed=seed, n_lesions=n_lesions, ct_spacing_mm=CT_SPACING,
                                      psf_fwhm_mm=6.0, noise_rel_sd=0.1)
    else:
        rng = np.random.default_rng(seed)
        lesions = tuple(LesionSpec("extramedullary", 4.5, float(np.round(rng.uniform(5, 20), 2)))
                        for _ in range(n_lesions))
        spec = PhantomSpec.whole_body(seed=seed, lesions=lesions, noise_rel_sd=0.1)
    ph = make_phantom(spec)
    assert ph.pet.shape == PET_SHAPE
    write_nifti(ph.pet, paths["pet"])
    if n_lesions <= 100:
        assert ph.ct.shape == CT_SHAPE
        noise = np.random.default_rng(seed).integers(-20, 21, CT_SHAPE, dtype=np.int16)
        write_nifti(ph.ct.with_array(ph.ct.array + noise), paths["ct"])
    return paths


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
    # GetCenterOfGravity is SUV-weighted (carpet's centroid is geometric): Dmax differs slightly.
    dmax = float(pdist(np.array(cents)).max()) if len(cents) > 1 else 0.0
    out.mkdir(parents=True, exist_ok=True)
    (out / "lesions.csv").write_text("lesion_id,volume_ml,suv_max,suv_mean,tlg\n" + "\n".join(rows))
    sitk.WriteImage(sitk.Cast(cc, sitk.sitkUInt16), str(out / "lesions.nii.gz"), useCompression=True)
    _ = ct_on_pet
    mtv = sum(stats.GetNumberOfPixels(lab) for lab in stats.GetLabels()) * voxel_ml
    return len(rows), dmax, mtv


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
    many = make_study(args.workdir, 1000, seed=1)  # after the 30-lesion study: reuses its CT
    print(f"study files ready in {time.perf_counter() - t:.1f} s: "
          f"PET {study['pet'].stat().st_size / 1e6:.1f} MB, CT {study['ct'].stat().st_size / 1e6:.1f} MB (gz)")

    t_floor, per_reader = floor(study, args.repeat)
    print("floor readers (s): " + ", ".join(f"{k} {v:.2f}" for k, v in per_reader.items()))
    t_peer = best(lambda: peer(study, args.workdir / "peer"), args.repeat)
    n_peer, dmax_peer, mtv_peer = peer(study, args.workdir / "peer")
    t_carpet = best(lambda: carpet_run(study, args.workdir / "carpet"), args.repeat)
    res = carpet_run(study, args.workdir / "carpet")
    t_many = best(lambda: carpet_run(many, args.workdir / "carpet1000"), args.repeat)
    res_many = carpet_run(many, args.workdir / "carpet1000")
    s = res.summary
    # per-lesion work alone (volumes in memory): segmentation + measures + totals
    import warnings

    from carpet.io import read_nifti
    from carpet.quantify import quantify_study
    warnings.simplefilter("ignore")
    pets = {n: read_nifti(p["pet"]) for n, p in ((30, study), (1000, many))}
    t_mem = {n: best(lambda: quantify_study(v, method="suv4"), args.repeat) for n, v in pets.items()}
    # same lesions as the peer: count and total volume agree exactly
    assert s["n_lesions"] == n_peer and abs(s["mtv_ml"] - mtv_peer) < 1e-9, (s["n_lesions"], n_peer)
    print(f"carpet  30-lesion study: {t_carpet:.2f} s  ({s['n_lesions']} lesions, stages "
          + ", ".join(f"{k} {v:.2f}" for k, v in res.extra["timing_s"].items()) + "; last run)")
    print(f"carpet 1000-lesion study: {t_many:.2f} s  ({res_many.summary['n_lesions']} lesions, stages "
          + ", ".join(f"{k} {v:.2f}" for k, v in res_many.extra["timing_s"].items()) + "; last run)")
    print(f"floor (fastest reader + one pass): {t_floor:.2f} s")
    print(f"peer  (SimpleITK pipeline):        {t_peer:.2f} s  ({n_peer} lesions, MTV {mtv_peer:.2f} mL, "
          f"Dmax {dmax_peer:.1f} mm SUV-weighted centres; carpet {s['dmax_mm']:.1f} mm geometric)")
    print(f"ratio carpet/floor = {t_carpet / t_floor:.2f}  (goal <= 1.3)")
    print(f"ratio carpet/peer  = {t_carpet / t_peer:.2f}  (goal <= 1.0)")
    print(f"ratio 1000/30 lesions = {t_many / t_carpet:.2f}  (goal < 2; files to outputs)")
    print(f"in memory (segment + measure + totals): 30 lesions {t_mem[30]:.3f} s, 1000 lesions "
          f"{t_mem[1000]:.3f} s, ratio {t_mem[1000] / t_mem[30]:.2f}")


if __name__ == "__main__":
    main()
