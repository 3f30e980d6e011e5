"""Benchmark of phantom generation: the physiological whole-body patient against the plain one.

Baseline, measured in the same run: ``PhantomSpec.whole_body`` (200×200×400 at 4 mm, 30 lesions), ideal
and with a 6.5 mm PSF and 12 % noise. Compared: ``PhantomSpec.patient`` (the same grid with physiology,
organ-adjacent lesions and Poisson-like noise correlated over the PSF), ideal and as a clinical image, and
a pelvic field of view. Ratios are against the baseline with the same blur and noise.

Run: ``PYTHONPATH=src /work/venv/bin/python bench/phantom.py [--repeat 3]``. Each case reports its best
wall and CPU time over the rounds (the machine is shared; CPU time is less sensitive to other users).
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    from carpet.synth import PhantomSpec, make_phantom

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
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
