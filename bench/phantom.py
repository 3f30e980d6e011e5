"""Benchmark of phantom generation: the physiological whole-body patient against the plain one.

Baseline, measured in the same run: ``PhantomSpec.whole_body`` (200×200×400 at 4 mm, 30 lesions), ideal
and with a 6.5 mm PSF and 12 % noise. Compared: ``PhantomSpec.patient`` (the same grid with physiology,
organ-adjacent lesions and Poisson-like noise correlated over the PSF), ideal and as a clinical image, and
a pelvic field of view. Ratios are against the baseline with the same blur and noise.

Run: ``PYTHONPATH=src /work/venv/bin/python bench/phantom.py [--repeat 3]``. Each case reports its best
wall and CPU time over the rounds (the machine is shared; CPU time is less sensitive to other users).
``--components`` instead prints what a global SUV ≥ 4 threshold (26-connected) finds on patient phantoms,
each component classified by the truth: physiology (touches the PSF-dilated organs), lesion, both, noise.
``--exclusion`` runs ``carpet quantify`` (SUV ≥ 4, default physiology exclusion) on patient phantoms of
several seeds, fields of view and myocardial uptakes and prints, against the truth, the MTV, the lesions
lost and the physiology left in.
"""

from __future__ import annotations

import argparse
import time


def components(seeds=(0, 1, 2), levels=("none", "intense")) -> None:
    import cc3d
    import numpy as np

    from carpet.synth import PhantomSpec, make_phantom

    for seed in seeds:
        for level in levels:
            ph = make_phantom(PhantomSpec.patient(seed=seed, myocardium=level))
            comp = cc3d.connected_components(ph.pet.array >= 4.0, connectivity=26)
            n, lesions = int(comp.max()), ph.lesion_labels.array > 0
            has_lesion = np.bincount(comp[lesions], minlength=n + 1)[1:] > 0
            has_organ = np.bincount(comp[ph.exclude.array], minlength=n + 1)[1:] > 0
            ml = np.bincount(comp.ravel(), minlength=n + 1)[1:] * ph.pet.voxel_volume_ml
            kinds = {"physiology": has_organ & ~has_lesion, "lesion": has_lesion & ~has_organ,
                     "merged": has_lesion & has_organ, "noise": ~has_lesion & ~has_organ}
            reached = len(set(ph.lesion_labels.array[lesions & (comp > 0)].tolist()))
            print(f"seed {seed} myocardium {level:8s} {n:3d} components: "
                  + ", ".join(f"{k} {int(m.sum())} ({ml[m].sum():.0f} mL)" for k, m in kinds.items())
                  + f"; lesions reached {reached}/{len(ph.truth['lesions'])}")


def exclusion() -> None:
    import tempfile

    import numpy as np

    from carpet.quantify import run_quantify
    from carpet.synth import PhantomSpec, make_phantom

    cases = [(0, "head_to_thigh", "moderate"), (1, "head_to_thigh", "intense"), (2, "head_to_thigh", "none"),
             (2, "pelvis", "moderate"), (3, "thorax", "intense"), (4, "head_to_pelvis", "moderate")]
    for seed, fov, level in cases:
        ph = make_phantom(PhantomSpec.patient(seed=seed, fov=fov, myocardium=level))
        with tempfile.TemporaryDirectory() as tmp:
            paths = ph.write_nifti(f"{tmp}/in")
            res = run_quantify(paths["pet"], ct_path=paths["ct"], out_dir=f"{tmp}/out", method="suv4")
        found, truth, organs = res.labels.array > 0, ph.lesion_labels.array, ph.physiology_labels.array
        kept = set(np.unique(truth[found & (truth > 0)]).tolist())
        left = {r["organ"]: round(float((found & (organs == r["label"])).sum() * ph.pet.voxel_volume_ml), 1)
                for r in ph.truth["physiology"]}
        lost = [f"{les['id']} ({les['near'] or les['site']})" for les in ph.truth["lesions"] if les["id"] not in kept]
        print(f"seed {seed} {fov} myocardium {level}: MTV {res.summary['mtv_ml']:.1f} mL, disease truth "
              f"{ph.truth['summary']['mtv_ml']:.1f} mL; lesions lost: {lost or 'none'}; physiology left in (mL): "
              f"{ {k: v for k, v in left.items() if v > 0.5} }")


def main() -> None:
    from carpet.synth import PhantomSpec, make_phantom

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--components", action="store_true")
    parser.add_argument("--exclusion", action="store_true")
    args = parser.parse_args()
    if args.components:
        return components()
    if args.exclusion:
        return exclusion()
    clinical = dict(psf_fwhm_mm=6.5, noise_rel_sd=0.12)
    ideal = dict(psf_fwhm_mm=0.0, noise_rel_sd=0.0)
    cases = {"whole_body ideal": PhantomSpec.whole_body(seed=0),
             "whole_body psf+noise": PhantomSpec.whole_body(seed=0, **clinical),
             "patient ideal": PhantomSpec.patient(seed=0, **ideal),
             "patient clinical": PhantomSpec.patient(seed=0),
             "patient pelvis fov": PhantomSpec.patient(seed=0, fov="pelvis")}
    baseline = {"whole_body ideal": "whole_body ideal", "whole_body psf+noise": "whole_body psf+noise",
                "patient ideal": "whole_body ideal", "patient clinical": "whole_body psf+noise",
                "patient pelvis fov": "whole_body psf+noise"}
    make_phantom(PhantomSpec.small())  # imports and caches outside the timings
    best: dict[str, tuple[float, float]] = {}
    for _ in range(args.repeat):
        for name, spec in cases.items():
            wall, cpu = time.perf_counter(), time.process_time()
            make_phantom(spec)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            prev = best.get(name, (float("inf"), float("inf")))
            best[name] = (min(prev[0], wall), min(prev[1], cpu))
    print(f"{'case':24s} {'wall s':>8s} {'cpu s':>8s} {'cpu ratio':>10s}  baseline")
    for name, (wall, cpu) in best.items():
        base = baseline[name]
        print(f"{name:24s} {wall:8.2f} {cpu:8.2f} {cpu / best[base][1]:10.2f}  {base}")


if __name__ == "__main__":
    main()
