"""Benchmark of ``carpet quantify`` on a whole-body-sized synthetic study, against two baselines.

* **floor**: decode the same two ``.nii.gz`` files with the fastest reader at hand (measured here:
  SimpleITK, nibabel, plain gzip + numpy, ISA-L gzip + numpy, libdeflate gzip + numpy — carpet's own reader
  inflates with libdeflate, or ISA-L when the stream is not one member of the header's size) and
  make one numpy pass over each volume; the ratios are printed against the SimpleITK floor and the fastest;
* **peer**: the pipeline a competent user writes with SimpleITK: read both, resample the CT onto
  the PET grid, threshold SUV ≥ 4, ConnectedComponent (fully connected), relabel,
  LabelIntensityStatisticsImageFilter, Dmax between centroids, write the label map and a CSV;
* **carpet**: ``run_quantify`` from the files to all outputs (lesions.csv, summary.json,
  lesions.nii.gz) with SUVpeak, Dmax (centroids and voxels), provenance with input hashes.

Also a 1,000-lesion study on the same grid (per-lesion work must stay O(voxels): < 2× the 30-lesion
case). Study: ``carpet.synth`` whole-body phantom, PET 200×200×400 float32 at 4 mm, CT 512×512×400
int16 at 1.5625×1.5625×4 mm.

Run: ``PYTHONPATH=src /work/venv/bin/python bench/quantify.py [--repeat 5] [--workdir DIR]``;
``--gil`` prints what the GIL lets two threads do at once for each kind of work in the pipeline.
``--check-sites`` checks the ideal whole-body phantom's 30 sites (CT on the PET grid and on the
1.5625×1.5625×4 mm grid, sites on both comparison grids) and the automatic liver/blood pool (±2 %).
"anatomy 30" times the anatomy step alone (sites + liver, blood pool, marrow; PET and CT in memory).
The cases take turns in ``--repeat`` rounds and each reports its best wall time and its best CPU
time (all threads of the process): the machine is shared, and CPU time is far less sensitive to
other users' load than wall time.
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
def timed(fn):
    """(wall s, CPU s of the whole process, all threads) of one call."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def interleaved(cases: dict, repeat: int) -> dict:
    """Best wall and best CPU time of each case over ``repeat`` rounds, the cases taking turns
    in every round so that load from other users of the machine hits them alike."""
    walls = {k: [] for k in cases}
    cpus = {k: [] for k in cases}
    for _ in range(repeat):
        for name, fn in cases.items():
            w, c = timed(fn)
            walls[name].append(w)
            cpus[name].append(c)
    return {k: (min(walls[k]), min(cpus[k])) for k in cases}


def readers():
    import nibabel as nib
    import SimpleITK as sitk
    from isal import isal_zlib

    import carpet.io.nifti as nifti

    def sitk_read(p):
        img = sitk.ReadImage(str(p))
        return float(np.max(sitk.GetArrayViewFromImage(img)))  # the view dies with img: reduce here

    def nib_read(p):
        return float(np.max(np.asanyarray(nib.load(str(p)).dataobj)))

    def raw_read(inflate, load=lambda p: Path(p).read_bytes()):
        def read(p):  # raw NIfTI-1: 352-byte header, then the voxels
            raw = inflate(load(p))
            vox_offset = int(np.frombuffer(raw[108:112], np.float32)[0])
            dtype = {16: np.float32, 4: np.int16, 2: np.uint8, 512: np.uint16, 8: np.int32}[
                int(np.frombuffer(raw[70:72], np.int16)[0])]
            return float(np.max(np.frombuffer(raw, dtype, offset=vox_offset)))
        return read

    return {"SimpleITK": sitk_read, "nibabel": nib_read, "gzip+numpy": raw_read(gzip.decompress),
            "isal+numpy": raw_read(lambda raw: isal_zlib.decompress(raw, 31)),
            # carpet's own read and libdeflate call (into numpy buffers), the size from the trailer's ISIZE
            # (right for these one-member files of < 4 GiB); without carpet's header and geometry reads
            "libdeflate+numpy": raw_read(lambda raw: nifti._libdeflate(raw, int.from_bytes(raw[-4:], "little")),
                                         lambda p: nifti._read_file(Path(p)))}


def floor_cases(paths) -> dict:
    """Each reader + one numpy pass (max) over each volume, one file after the other; and both
    files decoded at once in two threads with SimpleITK."""
    from concurrent.futures import ThreadPoolExecutor

    cases = {f"floor {name}": (lambda r=read_and_pass: [r(paths[k]) for k in ("pet", "ct")])
             for name, read_and_pass in readers().items()}
    pool = ThreadPoolExecutor(2)
    sitk_read = readers()["SimpleITK"]
    cases["floor SimpleITK, 2 threads"] = lambda: list(pool.map(sitk_read, [paths["ct"], paths["pet"]]))
    return cases


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


def same_as_sitk(path: Path, vol) -> None:
    """carpet's reader gives what SimpleITK reads: every voxel, dtype, spacing, origin, direction."""
    import SimpleITK as sitk

    img = sitk.ReadImage(str(path))
    same = (np.array_equal(sitk.GetArrayViewFromImage(img).T, vol.array)
            and sitk.GetArrayViewFromImage(img).dtype == vol.array.dtype and img.GetSpacing() == vol.spacing
            and img.GetOrigin() == vol.origin and img.GetDirection() == tuple(vol.direction.flatten()))
    assert same, f"read_nifti({path.name}) differs from SimpleITK.ReadImage"
    print(f"read_nifti({path.name}) = SimpleITK.ReadImage: every voxel, dtype and the geometry")


def carpet_run(paths, out: Path):
    from carpet.quantify import run_quantify

    return run_quantify(paths["pet"], ct_path=paths["ct"], out_dir=out, method="suv4")


def anatomy_only(pet, ct):
    """The anatomy step alone on in-memory volumes: lesion sites (CT grid, the default) and the liver,
    blood-pool and marrow references. Fresh volume objects each call, so that no cache from an earlier
    round is hit."""
    from carpet.anatomy import blood_pool_reference, liver_reference, marrow_reference
    from carpet.classify import classify_lesions
    from carpet.segment import segment

    pet, ct = pet.with_array(pet.array), ct.with_array(ct.array)
    labels = pet.with_array(segment(np.asarray(pet.array), pet.spacing, ["suv4"]).labels["suv4"].astype(np.int32))
    sites = classify_lesions(labels, ct)
    refs = [f(pet, ct, lesions=labels) for f in (liver_reference, blood_pool_reference, marrow_reference)]
    return sites, refs


def step_times(paths) -> dict[str, float]:
    """CPU seconds of each step of the pipeline, run one after the other in this thread on the study's
    files (run_quantify runs some of them at once in two threads): where the time goes."""
    import carpet.io.nifti as nifti
    from carpet.anatomy import blood_pool_reference, liver_reference, marrow_reference
    from carpet.anatomy.bone import BoneParams
    from carpet.anatomy.landmarks import _CtOnPet, body_landmarks, ct_tissue_on
    from carpet.anatomy.physiology import find_physiology
    from carpet.classify import classify_lesions
    from carpet.io import read_image
    from carpet.lesions import measure_lesions
    from carpet.provenance import bytes_sha256
    from carpet.quantify import _bone_once
    from carpet.segment import segment
    from carpet.tracking import alignment_references

    out = {}

    def step(name, fn):
        c = time.process_time()
        r = fn()
        out[name] = time.process_time() - c
        return r

    raw = {"pet": [], "ct": []}  # the files' bytes as the readers read them
    pet = step("read PET (libdeflate, finite check)", lambda: read_image(paths["pet"], on_bytes=raw["pet"].append))
    step("  of which the finite check", lambda: nifti._check_finite(pet.array, paths["pet"]))
    ct = step("read CT (libdeflate)", lambda: read_image(paths["ct"], on_bytes=raw["ct"].append))
    step("sha256 of both files (bytes as read)", lambda: [bytes_sha256(raw[k][0]) for k in ("pet", "ct")])
    seg = step("segment (SUV >= 4)", lambda: segment(np.asarray(pet.array), pet.spacing, ["suv4"]))
    lm = step("PET landmarks", lambda: body_landmarks(pet))
    found = step("physiology", lambda: find_physiology(pet, seg.labels["suv4"], landmarks=lm))
    labels = pet.with_array(np.asarray(found.labels, np.int32))
    step("measures", lambda: measure_lesions(pet, found.labels))
    step("CT bone (lesions' region + mid-line band)", lambda: _bone_once(pet, ct, labels, lm))
    step("sites", lambda: classify_lesions(labels, ct))
    step("CT on PET grid (HU, body, lungs)", lambda: ct_tissue_on(pet, ct, BoneParams().smooth_mm))
    step("band bone and marrow on PET grid", lambda: _CtOnPet.build(pet, ct, BoneParams()))
    for name, fn in (("liver", liver_reference), ("blood pool", blood_pool_reference), ("marrow", marrow_reference)):
        step(f"{name} reference", lambda fn=fn: fn(pet, ct, lesions=labels))
    step("alignment images (binning)", lambda: alignment_references(pet, ct_tissue_on(pet, ct, 1.0)[0]))
    return out


def gil_table() -> None:
    """What the GIL allows: each operation twice one after the other, then twice at once in two threads
    (speed-up = sequential wall / threaded wall: 2.0 = runs on both cores, 1.0 = serialised)."""
    import os
    import zlib
    from concurrent.futures import ThreadPoolExecutor

    import cc3d
    import SimpleITK as sitk
    from scipy import ndimage

    rng = np.random.default_rng(0)
    a = rng.random((160, 160, 160)).astype(np.float32)
    m = a > 0.5
    raw = rng.integers(-20, 21, 8_000_000).astype(np.int16).tobytes()
    z = zlib.compress(raw, 1)
    img = sitk.GetImageFromArray(a)
    ref = sitk.GetImageFromArray(a[::2, ::2, ::2].copy())
    ref.SetSpacing((2.0, 2.0, 2.0))
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    ops = {"numpy threshold + and + sum": lambda: ((a > 0.3) & (a < 0.7)).sum(),
           "numpy boolean gather": lambda: a[m].sum(),
           "ndimage distance_transform_edt": lambda: ndimage.distance_transform_edt(m[:60]),
           "ndimage binary_dilation": lambda: ndimage.binary_dilation(m),
           "ndimage gaussian_filter": lambda: ndimage.gaussian_filter(a, 1.0),
           "ndimage label": lambda: ndimage.label(m),
           "cc3d connected_components": lambda: cc3d.connected_components(m, connectivity=26),
           "zlib decompress": lambda: zlib.decompress(z),
           "zlib compress level 1": lambda: zlib.compress(raw, 1),
           "SimpleITK Resample (1 ITK thread)": lambda: sitk.Resample(img, ref)}
    pool = ThreadPoolExecutor(2)
    print(f"GIL: 2 runs one after the other vs 2 threads at once (best of 3; load {os.getloadavg()[0]:.1f})")
    try:
        for name, fn in ops.items():
            fn()
            seq = par = 1e9
            for _ in range(3):
                t = time.perf_counter()
                fn(), fn()
                seq = min(seq, time.perf_counter() - t)
                t = time.perf_counter()
                list(pool.map(lambda _: fn(), range(2)))
                par = min(par, time.perf_counter() - t)
            print(f"  {name:36s} {seq:6.3f} s  {par:6.3f} s  speed-up {seq / par:4.2f}")
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)


def check_whole_body_sites() -> bool:
    """The ideal whole-body phantom (30 lesions) with CT on the PET grid and on a 1.5625×1.5625×4 mm grid:
    every truth lesion gets its true site on both comparison grids, and the automatic liver and blood-pool
    references are within 2 % of the phantom's organ SUV. Prints the times; True when all hold."""
    from carpet.anatomy import blood_pool_reference, liver_reference
    from carpet.classify import SiteParams, classify_lesions
    from carpet.synth import PhantomSpec, make_phantom

    expected = {"intramedullary": "bone", "paramedullary": "paramedullary", "extramedullary": "extramedullary",
                "abutting": "indeterminate"}
    ok = True
    for ct_spacing in (None, CT_SPACING):
        ph = make_phantom(PhantomSpec.whole_body(seed=0, n_lesions=30, ct_spacing_mm=ct_spacing))
        truth = [expected[les["kind"]] for les in ph.truth["lesions"]]
        for grid in ("ct", "pet"):
            w = time.perf_counter()
            sites = list(classify_lesions(ph.lesion_labels, ph.ct, params=SiteParams(grid=grid))["site"])
            n_ok = sum(a == b for a, b in zip(sites, truth))
            ok &= n_ok == len(truth)
            print(f"  CT {ct_spacing or 'on PET grid'}, sites on the {grid.upper()} grid: {n_ok}/{len(truth)} "
                  f"correct in {time.perf_counter() - w:.2f} s")
        for name, fn in (("liver", liver_reference), ("blood", blood_pool_reference)):
            ref = fn(ph.pet, ph.ct, lesions=ph.lesion_labels)
            err = ref.mean / ph.truth["organ_suv"][name] - 1.0
            ok &= ref.usable and abs(err) <= 0.02
            print(f"  {name}: SUV mean {ref.mean:.4f} (truth {ph.truth['organ_suv'][name]}, {100 * err:+.2f} %)")
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "carpet-bench-quantify")
    ap.add_argument("--check-sites", action="store_true",
                    help="only check the whole-body phantom's sites and reference regions (both CT grids)")
    ap.add_argument("--gil", action="store_true", help="only print what the GIL allows for the pipeline's kinds "
                                                       "of work (one thread vs two)")
    args = ap.parse_args()
    if args.check_sites:
        raise SystemExit(0 if check_whole_body_sites() else 1)
    if args.gil:
        gil_table()
        return
    import carpet.quantify  # noqa: F401  (imports are not part of the timed work)
    t = time.perf_counter()
    study = make_study(args.workdir, 30)
    many = make_study(args.workdir, 1000, seed=1)  # after the 30-lesion study: reuses its CT
    print(f"study files ready in {time.perf_counter() - t:.1f} s: "
          f"PET {study['pet'].stat().st_size / 1e6:.1f} MB, CT {study['ct'].stat().st_size / 1e6:.1f} MB (gz)")

    import warnings

    from carpet.io import read_nifti
    from carpet.quantify import quantify_study
    warnings.simplefilter("ignore")
    pets = {n: read_nifti(p["pet"]) for n, p in ((30, study), (1000, many))}
    ct = read_nifti(study["ct"])
    same_as_sitk(study["pet"], pets[30])
    same_as_sitk(study["ct"], ct)
    cases = {**floor_cases(study),
             "peer": lambda: peer(study, args.workdir / "peer"),
             "carpet 30": lambda: carpet_run(study, args.workdir / "carpet"),
             "carpet 1000": lambda: carpet_run(many, args.workdir / "carpet1000"),
             # per-lesion work alone (PET in memory): segmentation + measures + totals
             "in-memory 30": lambda: quantify_study(pets[30], method="suv4"),
             "in-memory 1000": lambda: quantify_study(pets[1000], method="suv4"),
             # the anatomy step alone (sites + liver, blood pool, marrow), PET and CT in memory
             "anatomy 30": lambda: anatomy_only(pets[30], ct)}
    t = interleaved(cases, args.repeat)

    # carpet finds the same lesions as the peer: count and total volume agree exactly
    n_peer, dmax_peer, mtv_peer = peer(study, args.workdir / "peer")
    s = carpet_run(study, args.workdir / "carpet").summary
    n_many = carpet_run(many, args.workdir / "carpet1000").summary["n_lesions"]
    assert s["n_lesions"] == n_peer and abs(s["mtv_ml"] - mtv_peer) < 1e-9, (s["n_lesions"], n_peer)

    floors = {k: v for k, v in t.items() if k.startswith("floor") and "threads" not in k}
    floor_name = min(floors, key=lambda k: floors[k][0])
    print(f"best of {args.repeat} interleaved rounds; wall s (CPU s, all threads); load average now "
          f"{__import__('os').getloadavg()[0]:.1f} on {__import__('os').cpu_count()} cores")
    for k, (w, c) in t.items():
        print(f"  {k:28s} {w:6.2f} s  ({c:.2f} s CPU)")
    print(f"lesions: carpet {s['n_lesions']} = peer {n_peer} (MTV {mtv_peer:.2f} mL); 1000-lesion study: {n_many}; "
          f"Dmax carpet {s['dmax_mm']:.1f} mm (geometric centroids), peer {dmax_peer:.1f} mm (SUV-weighted)")
    sites, refs = anatomy_only(pets[30], ct)
    print("sites (carpet 30): " + ", ".join(f"{k} {s[f'n_{k}']}" for k in ("bone", "paramedullary", "extramedullary"))
          + f"; all sites: {sites['site'].value_counts().to_dict()}; references (SUV mean): "
          + ", ".join(f"{r.name} {r.mean:.3f}{'' if r.usable else ' (unusable)'}" for r in refs))
    steps = step_times(study)
    print("CPU s per step (30 lesions, one after the other in one thread; sum "
          f"{sum(v for k, v in steps.items() if not k.startswith(' ')):.2f} s):")
    for k, v in steps.items():
        print(f"  {k:40s} {v:6.3f} s")
    w = {k: v[0] for k, v in t.items()}
    c = {k: v[1] for k, v in t.items()}
    for name in dict.fromkeys(("floor SimpleITK", floor_name)):
        print(f"ratio carpet/{name}{' (the fastest floor)' if name == floor_name else ''} = "
              f"{w['carpet 30'] / w[name]:.2f} wall, {c['carpet 30'] / c[name]:.2f} CPU   (goal <= 1.3)")
    print(f"ratio carpet/floor (SimpleITK, 2 threads) = {w['carpet 30'] / w['floor SimpleITK, 2 threads']:.2f} wall")
    print(f"ratio carpet/peer  = {w['carpet 30'] / w['peer']:.2f} wall, {c['carpet 30'] / c['peer']:.2f} CPU   (goal <= 1.0)")
    print(f"cores busy (CPU / wall, best runs): carpet 30 {c['carpet 30'] / w['carpet 30']:.2f}, "
          f"peer {c['peer'] / w['peer']:.2f}")
    print(f"ratio 1000/30 lesions = {w['carpet 1000'] / w['carpet 30']:.2f} wall (files to outputs; goal < 2), "
          f"in memory {w['in-memory 1000'] / w['in-memory 30']:.2f}")

if __name__ == "__main__":
    main()
