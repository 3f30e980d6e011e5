"""Benchmark of ``carpet batch``: its overhead over a plain loop, scaling with workers, resume cost,
and (``--whole-body``) the peak memory of one whole-body study, which backs the ``--workers`` advice.

* **loop**: ``run_quantify`` on every study in one process (what a user scripts by hand);
* **batch w1 / w2**: ``run_batch`` with 1 (in-process) and 2 worker processes, fresh output;
* **rerun w1**: the same batch again — every study skipped by its marker (stat listing only).

Studies: ``carpet.synth`` phantoms (8 lesions), PET ``--shape`` at 4 mm with CT on the PET grid
(NIfTI). The 2-worker run includes starting the worker processes (about 2 s of imports each).

Run: ``PYTHONPATH=src /work/venv/bin/python bench/batch.py [--studies 12] [--shape 128,128,160]
[--repeat 2] [--whole-body]``. Each timing is the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from carpet.batch import run_batch
from carpet.quantify import run_quantify
from carpet.synth.phantom import PhantomSpec, make_phantom


def make_root(root: Path, n: int, shape: tuple[int, int, int]) -> None:
    for seed in range(n):
        spec = PhantomSpec.small(seed=seed, pet_shape=shape)
        paths = make_phantom(spec).write_nifti(root / f"study{seed:03d}")
        paths["lesions"].unlink()


def timed(fn, repeat: int) -> float:
    """Best of ``repeat`` runs of ``fn(i)`` (the machine is shared)."""
    best = float("inf")
    for i in range(repeat):
        t0 = time.perf_counter()
        fn(i)
        best = min(best, time.perf_counter() - t0)
    return best


def whole_body_peak_mb(work: Path) -> float:
    """Peak RSS (MB) of a child process running a one-study batch on a whole-body phantom."""
    root = work / "wb"
    spec = PhantomSpec.whole_body(seed=1, ct_spacing_mm=(1.5625, 1.5625, 4.0))
    make_phantom(spec).write_nifti(root / "wb0")
    (root / "wb0" / "lesions.nii.gz").unlink()
    code = ("import resource, sys; from carpet.batch import run_batch; "
            f"r = run_batch({str(root)!r}, {str(work / 'wb-out')!r}, workers=1, progress=False); "
            "assert r.counts['done'] == 1, r.outcomes; "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--studies", type=int, default=12)
    ap.add_argument("--shape", default="128,128,160", help="PET grid i,j,k (4 mm voxels)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--whole-body", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root = work / "root"
        shape = tuple(int(v) for v in args.shape.split(","))
        make_root(root, args.studies, shape)
        studies = sorted(root.iterdir())
        run_quantify(studies[0] / "pet.nii.gz", out_dir=work / "warm-up")  # imports, caches
        r = args.repeat
        loop = timed(lambda i: [run_quantify(s / "pet.nii.gz", ct_path=s / "ct.nii.gz",
                                             out_dir=work / f"loop{i}" / s.name) for s in studies], r)
        w1 = timed(lambda i: run_batch(root, work / f"w1-{i}", workers=1, progress=False), r)
        w2 = timed(lambda i: run_batch(root, work / f"w2-{i}", workers=2, progress=False), r)
        rerun = timed(lambda i: run_batch(root, work / "w1-0", workers=1, progress=False), r)
        n = len(studies)
        print(f"{n} studies (PET {'x'.join(map(str, shape))} + CT on the PET grid, NIfTI)")
        print(f"  loop run_quantify : {loop:6.2f} s  ({loop / n * 1000:6.1f} ms/study)")
        print(f"  batch --workers 1 : {w1:6.2f} s  ({w1 / n * 1000:6.1f} ms/study, overhead "
              f"{(w1 - loop) / n * 1000:+.1f} ms/study)")
        print(f"  batch --workers 2 : {w2:6.2f} s  (speed-up {w1 / w2:.2f}x over 1 worker)")
        print(f"  rerun (all skip)  : {rerun:6.2f} s  ({rerun / n * 1000:6.1f} ms/study)")
        if args.whole_body:
            print(f"  whole-body study (PET 200x200x400, CT 512x512x400), peak RSS of the batch "
                  f"process: {whole_body_peak_mb(work):.0f} MB")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
