"""How the physiology rules do on the patient phantoms of ``carpet.synth`` (truth: which voxel is which organ,
which lesion), and what they cost.

Run: ``PYTHONPATH=src python bench/physiology.py [--seeds 0 1 2] [--fovs head_to_thigh pelvis]
[--myocardium low intense]``. Prints one row per phantom: organs excluded (mL), physiology left in the
lesions (mL, by organ), lesions lost (centre voxel not in a kept lesion), MTV against the oracle MTV (SUV >= 4
outside the phantom's ideal exclusion mask, ``Phantom.exclude``) and against the truth lesions' SUV >= 4
volume, and the lesions flagged for review.

``--cpu [--repeat 3] [--workdir DIR]``: CPU seconds (best of ``--repeat``, the process's own CPU time) of
``quantify_study`` on the PET with the exclusion on (defaults) and off (``keep_physiological=True``), and of
the rules alone (``find_physiology`` given the landmarks) and the landmarks alone, on three studies: the
whole-body study of ``bench/quantify.py`` (30 lesions, no physiology), a patient phantom (physiology) and the
real whole-body scan STS_001 (``../shared/reference``). Ratios are measured in the same run.
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from pathlib import Path

import numpy as np


def evaluate(seed: int, fov: str, myocardium: str) -> dict:
    from carpet.quantify import quantify_study
    from carpet.synth import PhantomSpec, make_phantom

    ph = make_phantom(PhantomSpec.patient(seed=seed, fov=fov, myocardium=myocardium))
    pet = ph.pet
    suv = np.asarray(pet.array)
    t0 = time.process_time()
    res = quantify_study(pet)
    cpu = time.process_time() - t0
    kept = np.asarray(res.labels.array) > 0
    lesions = np.asarray(ph.lesion_labels.array)
    physio = np.asarray(ph.physiology_labels.array)
    vml = pet.voxel_volume_ml
    hot = suv >= 4.0
    names = {r["label"]: r["organ"] for r in ph.truth["physiology"]}
    left = {}
    for lab, organ in names.items():
        v = np.count_nonzero(kept & (physio == lab)) * vml
        if v > 0:
            left[organ] = round(v, 2)
    lost = []
    for rec in ph.truth["lesions"]:
        idx = tuple(np.round(pet.world_to_index(np.asarray(rec["centre_mm"]))).astype(int))
        if not kept[idx]:
            lost.append((rec["id"], rec.get("near") or rec["site"], round(float(suv[idx]), 1)))
    truth_mtv = np.count_nonzero(hot & (lesions > 0)) * vml
    oracle = np.count_nonzero(hot & ~np.asarray(ph.exclude.array)) * vml
    table = res.excluded_table
    return {"seed": seed, "fov": fov, "myocardium": myocardium,
            "excluded_ml": {} if table is None else table.groupby("organ").volume_ml.sum().round(1).to_dict(),
            "physiology_left_ml": left, "lesions": len(ph.truth["lesions"]), "lost": lost,
            "mtv_ml": round(res.summary["mtv_ml"], 2), "oracle_mtv_ml": round(oracle, 2),
            "truth_mtv_ml": round(truth_mtv, 2), "n_review": int(res.lesions["review"].sum()),
            "cpu_s": round(cpu, 2)}


def _best_cpu(fn, repeat: int) -> float:
    best = np.inf
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def cpu_cost(repeat: int, workdir: Path) -> None:
    from carpet.anatomy.landmarks import body_landmarks
    from carpet.anatomy.physiology import find_physiology
    from carpet.io import read_image
    from carpet.quantify import quantify_study
    from carpet.segment import label_components
    from carpet.synth import PhantomSpec, make_phantom

    spec = importlib.util.spec_from_file_location("bench_quantify", Path(__file__).with_name("quantify.py"))
    bq = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bq)
    studies = {"bench whole body (30 lesions)": read_image(bq.make_study(workdir, 30)["pet"]),
               "patient phantom seed 0": make_phantom(PhantomSpec.patient(seed=0)).pet}
    sts = Path(__file__).resolve().parents[2] / "shared/reference/sts-pet/STS_001_raw/FDG_PET/image"
    if sts.exists():
        studies["STS_001 whole body"] = read_image(sts)
    print("| study | voxels | quantify off (s) | quantify on (s) | on/off | landmarks (s) | rules (s) |")
    print("|---|---|---|---|---|---|---|")
    for name, pet in studies.items():
        labels = label_components(np.asarray(pet.array) >= 4.0, pet.spacing)
        lm = body_landmarks(pet)
        off = on = rules = marks = np.inf
        for _ in range(repeat):            # the cases take turns, so that load changes hit them alike
            off = min(off, _best_cpu(lambda: quantify_study(pet, keep_physiological=True), 1))
            on = min(on, _best_cpu(lambda: quantify_study(pet), 1))
            marks = min(marks, _best_cpu(lambda: body_landmarks(pet), 1))
            rules = min(rules, _best_cpu(lambda: find_physiology(pet, labels, landmarks=lm), 1))
        print(f"| {name} | {np.asarray(pet.array).size:,} | {off:.2f} | {on:.2f} | {on / off:.2f} | {marks:.2f} | "
              f"{rules:.2f} |", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--fovs", nargs="+", default=["head_to_thigh", "head_to_pelvis", "head_to_thorax", "thorax",
                                                  "pelvis"])
    ap.add_argument("--myocardium", nargs="+", default=["moderate"])
    ap.add_argument("--cpu", action="store_true", help="CPU cost of the rules instead of the phantom table")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "carpet-bench-quantify",
                    help="where bench/quantify.py caches its study")
    a = ap.parse_args()
    if a.cpu:
        cpu_cost(a.repeat, a.workdir)
        return
    for seed in a.seeds:
        for fov in a.fovs:
            for myo in a.myocardium:
                print(evaluate(seed, fov, myo), flush=True)


if __name__ == "__main__":
    main()
