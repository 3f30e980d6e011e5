"""How the physiology rules do on the patient phantoms of ``carpet.synth`` (truth: which voxel is which organ,
which lesion): per seed, field of view and myocardial uptake, the SUV >= 4 components are classified by the
truth and checked against what ``quantify_study`` (PET only, defaults) excluded and kept.

Run: ``PYTHONPATH=src python bench/physiology.py [--seeds 0 1 2] [--fovs head_to_thigh pelvis]
[--myocardium low intense]``. Prints one row per phantom: organs found, physiology voxels left in the
lesions (mL), lesions lost (centre voxel not in a kept lesion), MTV against the truth lesions' SUV >= 4
volume, and the flagged lesions.
"""

from __future__ import annotations

import argparse
import time

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
    return {"seed": seed, "fov": fov, "myocardium": myocardium,
            "organs": sorted(res.excluded_table.organ.unique()) if res.excluded_table is not None else [],
            "physiology_left_ml": left, "lesions": len(ph.truth["lesions"]), "lost": lost,
            "mtv_ml": round(res.summary["mtv_ml"], 2), "truth_mtv_ml": round(truth_mtv, 2),
            "n_review": int(res.lesions["review"].sum()), "cpu_s": round(cpu, 2)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--fovs", nargs="+", default=["head_to_thigh", "head_to_pelvis", "thorax", "pelvis"])
    ap.add_argument("--myocardium", nargs="+", default=["moderate"])
    a = ap.parse_args()
    for seed in a.seeds:
        for fov in a.fovs:
            for myo in a.myocardium:
                print(evaluate(seed, fov, myo), flush=True)


if __name__ == "__main__":
    main()
