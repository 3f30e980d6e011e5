"""Benchmark of a follow-up read: a baseline + follow-up pair read with ``--baseline`` against two single reads.

* **single**: ``run_quantify`` on the baseline, then on the follow-up, each alone;
* **pair**: the baseline, then the follow-up with ``baseline_dir`` (alignment on the binned CTs + matching);
* **align only**: :func:`carpet.tracking.align_scans` on the stored alignment images (the registration cost).

Studies: a :func:`carpet.synth.pair.make_phantom_pair` of ``PhantomSpec.whole_body`` (``--lesions`` lesions,
PET 200×200×400 at 4 mm, CT on the PET grid) or, with ``--small``, of ``PhantomSpec.small``; the follow-up is
rotated 5° and shifted 20 mm. Each timing is the best of ``--repeat`` runs (the machine is shared).

Run: ``PYTHONPATH=src /work/venv/bin/python bench/tracking.py [--small] [--lesions 12] [--repeat 2]``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from carpet.io import write_nifti
from carpet.quantify import read_baseline_outputs, run_quantify
from carpet.synth.pair import make_phantom_pair
from carpet.synth.phantom import PhantomSpec
from carpet.tracking import align_scans


def best(fn, repeat: int) -> tuple[float, float]:
    """(wall, CPU of this process's threads) seconds, each the best of ``repeat`` runs: on a shared machine the
    CPU time is the fairer figure."""
    wall, cpu = float("inf"), float("inf")
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--lesions", type=int, default=12)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    spec = PhantomSpec.small() if args.small else PhantomSpec.whole_body(n_lesions=args.lesions)
    t0 = time.perf_counter()
    pair = make_phantom_pair(spec, rotation_deg=(0, 0, 5), shift_mm=(20, 0, 0))
    print(f"phantom pair made in {time.perf_counter() - t0:.1f} s; PET {pair.baseline.pet.shape}, "
          f"follow-up {pair.followup.pet.shape}")
    tmp = Path(tempfile.mkdtemp())
    try:
        files = {}
        for name, ph in (("base", pair.baseline), ("fu", pair.followup)):
            files[name] = (write_nifti(ph.pet, tmp / f"{name}_pet.nii.gz"), write_nifti(ph.ct, tmp / f"{name}_ct.nii.gz"))

        def read(name, out, **kw):
            return run_quantify(files[name][0], ct_path=files[name][1], out_dir=tmp / out, method="suv4", **kw)

        base = best(lambda: read("base", "b"), args.repeat)
        single_fu = best(lambda: read("fu", "f1"), args.repeat)
        result = None

        def followup():
            nonlocal result
            result = read("fu", "f2", baseline_dir=tmp / "b")

        pair_fu = best(followup, args.repeat)
        outputs = read_baseline_outputs(tmp / "b")
        fu_refs = read_baseline_outputs(tmp / "f1").references
        align = best(lambda: align_scans(outputs.references["CT"], fu_refs["CT"]), args.repeat)
        s = result.summary
        print("                         wall s   CPU s")
        for name, (w, c) in (("baseline read", base), ("follow-up single read", single_fu),
                             ("follow-up with tracking", pair_fu), ("alignment alone", align)):
            print(f"{name:24s} {w:7.2f} {c:7.2f}")
        print(f"tracking stage of the follow-up read (wall): {result.extra['timing_s']['tracking']:.2f} s; alignment on "
              f"{outputs.references['CT'].shape} binned voxels")
        for k, label in ((0, "wall"), (1, "CPU")):
            ratio = (base[k] + pair_fu[k]) / (base[k] + single_fu[k])
            print(f"pair / two single reads ({label}): {ratio:.3f}")
        print(f"n_new {s['n_new_lesions']} (truth {sum(v is None for v in pair.truth['matches'].values())}), "
              f"n_resolved {s['n_resolved_lesions']} (truth {len(pair.truth['resolved'])}), "
              f"alignment {s['tracking']['reason']}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
