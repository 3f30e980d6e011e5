"""Benchmark of ``carpet batch``: scaling with workers, overhead over a plain loop, resume cost.

``--whole-body`` (the unit the scaling goal is stated in): ``--studies`` (default 8) whole-body
PET/CT phantoms (``PhantomSpec.patient``: physiology, PSF and noise, 6 to 34 lesions; PET 200×200×400
at 4 mm, CT 512×512×400 int16 at 1.5625×1.5625×4 mm with ±20 HU noise so that its gzip stream decodes
like a clinical one), generated once and cached in ``--cache`` (outside the repository). Each round
runs the batch three times, each in a fresh ``python`` process (start-up, imports and worker
processes included, as ``carpet batch`` pays them) on a fresh ``OUT``, each configuration first in
turn: 1 worker, 2 workers, and 1 worker confined to 1 core (``sched_setaffinity``). For each run it
prints the wall time, the CPU seconds of the batch process and of its workers, each study's CPU
seconds, which process ran which studies, the peak RSS of a study's process, and the
load: load average and the CPU seconds *other* processes used during the run (``/proc/stat``).

Reading it: a study decodes its CT and builds its CT tissue map in threads beside the main one, so
one worker already keeps ``CPU/wall`` > 1 cores busy and 2 workers can be at most ``cores / (CPU/wall
of one worker)`` times faster than 1 (the ceiling printed); "over 1 worker on 1 core" is the scaling
of the batch itself from one core to two. A 2-worker run can end no earlier than the busier worker's
study CPU (its floor, printed). Wall-time ratios mean something only when the others' CPU is near 0;
CPU seconds per study hold under load (+x % with 2 workers = what they cost each other: memory
bandwidth, caches). ``--profile`` also times the stages of one study in a fresh worker process
(start-up, reads, segmentation and measures, anatomy, writing, the batch's bookkeeping).

Without ``--whole-body``: the earlier small-study comparison (``carpet.synth`` small phantoms, PET
``--shape`` at 4 mm with the CT on the PET grid): a plain ``run_quantify`` loop, ``run_batch`` with 1
and 2 workers in this process, and a rerun where every study is skipped.

Run: ``PYTHONPATH=src /work/venv/bin/python bench/batch.py --whole-body [--studies 8] [--repeat 3]
[--profile] [--cache DIR]``; ``bench/batch.py [--studies 12] [--shape 128,128,160] [--repeat 2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CT_SPACING = (1.5625, 1.5625, 4.0)
#: Bump when the studies change: a cache of another version is regenerated.
CACHE_VERSION = "wb-patient-1"
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "carpet-bench" / "batch"


# ---------------------------------------------------------------------------------------------
# whole-body studies
# ---------------------------------------------------------------------------------------------
def whole_body_root(cache: Path, n: int) -> Path:
    """``cache/<version>/`` holding ``wb000 … wb<n-1>`` (pet.nii.gz, ct.nii.gz), made once."""
    import numpy as np

    from carpet.io import write_nifti
    from carpet.synth import PhantomSpec, make_phantom

    root = cache / CACHE_VERSION
    for seed in range(n):
        folder = root / f"wb{seed:03d}"
        if (folder / "ct.nii.gz").exists() and (folder / "pet.nii.gz").exists():
            continue
        print(f"  generating whole-body study {seed + 1}/{n} in {root} (once)", file=sys.stderr)
        ph = make_phantom(PhantomSpec.patient(seed=seed, n_lesions=6 + 4 * seed, ct_spacing_mm=CT_SPACING))
        tmp = root / f".wb{seed:03d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        write_nifti(ph.pet, tmp / "pet.nii.gz")
        noise = np.random.default_rng(seed).integers(-20, 21, ph.ct.shape, dtype=np.int16)
        write_nifti(ph.ct.with_array(ph.ct.array + noise), tmp / "ct.nii.gz")
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    return root


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


#: One batch in a fresh interpreter: what ``carpet batch`` pays, measured from inside. argv: ROOT OUT
#: WORKERS CORES (0 = every core the bench may use; else the batch is confined to that many).
_DRIVER = """
import json, os, resource, sys, time
cores = int(sys.argv[4])
if cores:
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:cores])
t0, c0 = time.perf_counter(), time.process_time()
from carpet.batch import run_batch
r = run_batch(sys.argv[1], sys.argv[2], workers=int(sys.argv[3]), progress=False)
wall = time.perf_counter() - t0
kids = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"wall": wall, "cpu_self": time.process_time() - c0,
                  "cpu_workers": kids.ru_utime + kids.ru_stime, "maxrss_worker_mb": kids.ru_maxrss / 1024,
                  "maxrss_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "counts": r.counts, "studies": r.outcomes.to_dict("records")}, default=str))
"""

#: The runs of a round: label, workers, cores (0 = all).
CONFIGS = (("1 worker", 1, 0), ("2 workers", 2, 0), ("1 worker, 1 core", 1, 1))


def run_one(root: Path, out: Path, workers: int, cores: int) -> dict:
    """One batch in a fresh process; wall from outside, CPU from inside, the others' CPU from /proc."""
    shutil.rmtree(out, ignore_errors=True)
    busy0, total0 = _cpu_ticks()
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _DRIVER, str(root), str(out), str(workers), str(cores)],
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    busy1, total1 = _cpu_ticks()
    if proc.returncode:
        raise SystemExit(f"batch --workers {workers} failed:\n{proc.stderr[-3000:]}")
    rec = json.loads(proc.stdout.strip().splitlines()[-1])
    if rec["counts"]["done"] != rec["counts"]["total"]:
        raise SystemExit(f"batch --workers {workers}: not every study done: {rec['counts']}")
    hz = os.sysconf("SC_CLK_TCK")
    rec.update(wall_outside=wall, load=(load0 + os.getloadavg()[0]) / 2,
               cpu=rec["cpu_self"] + rec["cpu_workers"],
               cpu_others=max(0.0, (busy1 - busy0) / hz - rec["cpu_self"] - rec["cpu_workers"]),
               machine_busy=(busy1 - busy0) / max(1, total1 - total0))
    shutil.rmtree(out, ignore_errors=True)
    return rec


def _lpt_makespan(times: list[float], workers: int) -> float:
    """Wall time of ``times`` on ``workers`` when each next-largest job goes to the least busy worker."""
    load = [0.0] * workers
    for t in sorted(times, reverse=True):
        load[load.index(min(load))] += t
    return max(load)


def _describe(label: str, rec: dict) -> str:
    per = sorted(rec["studies"], key=lambda s: s["study_id"])
    by_worker: dict = {}
    for s in per:
        by_worker.setdefault(s["worker"], []).append(s["study_id"][-2:])
    rss = rec["maxrss_worker_mb"] if len(by_worker) > 1 or rec["cpu_workers"] > 0 else rec["maxrss_self_mb"]
    return "\n".join([
        f"    {label:17s} wall {rec['wall_outside']:6.2f} s | CPU {rec['cpu']:6.2f} s (batch process "
        f"{rec['cpu_self']:.2f}, workers {rec['cpu_workers']:.2f}) | CPU/wall {rec['cpu'] / rec['wall_outside']:.2f} "
        f"| load {rec['load']:.2f}, others' CPU {rec['cpu_others']:.1f} s, machine busy {100 * rec['machine_busy']:.0f} %",
        f"      per study (wb00..): CPU s {' '.join('%.2f' % s['cpu_seconds'] for s in per)}; "
        f"wall s {' '.join('%.2f' % s['seconds'] for s in per)}",
        f"      studies per process: {'; '.join(' '.join(v) for v in by_worker.values())}; "
        f"peak RSS of a study's process {rss:.0f} MB"])


def whole_body(args) -> None:
    root = whole_body_root(Path(args.cache), args.studies)
    studies = sorted(p for p in root.iterdir() if not p.name.startswith("."))[:args.studies]
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(prefix="carpet-bench-") as tmp:
        sub = Path(tmp) / "root"
        sub.mkdir()
        for s in studies:  # the first --studies studies of the cache
            (sub / s.name).symlink_to(s, target_is_directory=True)
        print(f"{len(studies)} whole-body PET/CT studies (PET 200x200x400 at 4 mm, CT 512x512x400 int16, .nii.gz; "
              f"{root}); {cores} cores; load average {' '.join('%.2f' % v for v in os.getloadavg())}")
        if args.profile:
            profile(studies[0], Path(tmp) / "profile")
        rounds = []
        for i in range(args.repeat):
            order = CONFIGS[i % len(CONFIGS):] + CONFIGS[:i % len(CONFIGS)]  # each first in turn
            recs = {label: run_one(sub, Path(tmp) / "out", k, c) for label, k, c in order}
            rounds.append(recs)
            w1, w2, one = recs["1 worker"], recs["2 workers"], recs["1 worker, 1 core"]
            print(f"  round {i + 1}: 2 workers over 1: {w1['wall_outside'] / w2['wall_outside']:.2f}x; over 1 worker on "
                  f"1 core: {one['wall_outside'] / w2['wall_outside']:.2f}x")
            for label, _, _ in order:
                print(_describe(label, recs[label]))
        print("summary (wall-time ratios mean something only when the others' CPU is near 0)")
        for i, r in enumerate(rounds):
            w1, w2, one = r["1 worker"], r["2 workers"], r["1 worker, 1 core"]
            used1 = w1["cpu"] / w1["wall_outside"]
            study = {k: sum(s["cpu_seconds"] for s in r[k]["studies"]) for k in r}
            floor = _lpt_makespan([s["cpu_seconds"] for s in w2["studies"]], 2)
            print(f"  round {i + 1}: 2 workers over 1 {w1['wall_outside'] / w2['wall_outside']:.2f}x, over 1 worker on "
                  f"1 core {one['wall_outside'] / w2['wall_outside']:.2f}x; others' CPU during the runs "
                  f"{w1['cpu_others']:.0f} / {w2['cpu_others']:.0f} / {one['cpu_others']:.0f} s")
            print(f"    one worker keeps {used1:.2f} of {cores} cores busy (its study threads): {cores / used1:.2f}x "
                  f"is the most 2 workers could gain at equal CPU per study")
            print(f"    study CPU: 1 worker {study['1 worker']:.1f} s, 2 workers {study['2 workers']:.1f} s, 1 core "
                  f"{study['1 worker, 1 core']:.1f} s (2 workers vs 1: "
                  f"{100 * (study['2 workers'] / study['1 worker'] - 1):+.0f} %)")
            print(f"    2-worker wall {w2['wall_outside']:.1f} s = floor {floor:.1f} s (the busier worker's study CPU) + "
                  f"{w2['wall_outside'] - floor:.1f} s (start-up and tables in the batch process: {w2['cpu_self']:.1f} s "
                  f"CPU; the rest waiting: other processes, the two workers sharing memory)")
            print(f"    ceiling over 1 worker with this CPU per study: {w1['wall_outside'] / floor:.2f}x "
                  f"(1-worker wall / 2-worker floor)")
        ratio = sorted(r["1 worker"]["wall_outside"] / r["2 workers"]["wall_outside"] for r in rounds)
        print(f"  speed-up of 2 workers over 1, median of {len(rounds)} rounds: {ratio[len(ratio) // 2]:.2f}x "
              f"(all: {', '.join('%.2f' % v for v in ratio)})")


# ---------------------------------------------------------------------------------------------
# where one study's time goes in a worker
# ---------------------------------------------------------------------------------------------
_PROFILE = """
import json, sys, threading, time
from collections import defaultdict
t0, c0 = time.perf_counter(), time.process_time()
import carpet.batch as batch
import carpet.quantify as q
import carpet.classify, carpet.anatomy, carpet.scores.impetus, carpet.tracking  # noqa: F401
startup = (time.perf_counter() - t0, time.process_time() - c0)
stages = defaultdict(lambda: [0.0, 0.0, 0])

def timed(module, name, stage):
    fn = getattr(module, name, None)
    if fn is None:  # renamed since: that stage is not timed
        print(f"profile: {module.__name__}.{name} not found", file=sys.stderr)
        return
    def wrapper(*a, **k):
        w, c = time.perf_counter(), time.thread_time()
        try:
            return fn(*a, **k)
        finally:
            s = stages[(stage, threading.current_thread() is threading.main_thread())]
            s[0] += time.perf_counter() - w; s[1] += time.thread_time() - c; s[2] += 1
    setattr(module, name, wrapper)

timed(q, "read_image", "read (PET; CT in a thread)")
timed(q, "read_mask", "read (PET; CT in a thread)")
timed(q, "file_sha256", "hash inputs")
timed(q, "segment", "segment + measure")
timed(q, "gather_lesion_voxels", "segment + measure")
timed(q, "measure_lesions", "segment + measure")
timed(q, "dmax_voxel_mm", "segment + measure")
import carpet.anatomy.landmarks as lm
timed(lm, "body_landmarks", "landmarks + physiology")
timed(q, "_exclude_physiology", "landmarks + physiology")
timed(q, "ct_tissue_on", "anatomy: CT tissue on the PET grid")
timed(q, "add_lesion_columns", "anatomy: lesion sites")
timed(q, "_add_region", "anatomy: regions")
timed(q, "add_anatomy_reading", "anatomy: references, Deauville, IMPeTUs")
timed(q, "alignment_references", "follow-up alignment references")
timed(q, "write_outputs", "write outputs")
timed(batch, "_output_hashes", "batch: output hashes")
timed(batch, "_listing", "batch: input listing")
out = {"startup": startup, "studies": []}
for i in range(2):
    stages.clear()
    w, c, m = time.perf_counter(), time.process_time(), time.thread_time()
    r = batch.run_study(batch.StudyTask(sys.argv[1], sys.argv[2] + str(i), force=True))
    assert r["status"] == "done", r
    out["studies"].append({"wall": time.perf_counter() - w, "cpu": time.process_time() - c,
                           "main": time.thread_time() - m,
                           "stages": [[k[0], k[1], *v] for k, v in stages.items()]})
print(json.dumps(out))
"""


def profile(study: Path, out: Path) -> None:
    """Start-up and the stages of one study (twice: the second shows what a warm worker pays)."""
    proc = subprocess.run([sys.executable, "-c", _PROFILE, str(study), str(out)], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"profile failed:\n{proc.stderr[-3000:]}")
    rec = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"  profile of one study in a fresh worker process (load {os.getloadavg()[0]:.2f}):")
    print(f"    start-up (imports of carpet.batch, quantify, anatomy, scores, tracking): "
          f"{rec['startup'][0]:.2f} s wall, {rec['startup'][1]:.2f} s CPU (paid once per worker)")
    for i, s in enumerate(rec["studies"]):
        print(f"    study, {'first' if i == 0 else 'second'} in the worker: {s['wall']:.2f} s wall, "
              f"{s['cpu']:.2f} s CPU (all threads), {s['main']:.2f} s CPU in the main thread (wall >= that): "
              f"one worker keeps at most {s['cpu'] / s['main']:.2f} cores busy, so the ceiling of 2 workers "
              f"over 1 on 2 cores is at least {2 * s['main'] / s['cpu']:.2f}x")
        for stage, main, wall, cpu, calls in s["stages"]:
            print(f"      {stage:42s} {'main' if main else 'thread':6s} {wall:6.2f} s wall "
                  f"{cpu:6.2f} s CPU ({calls} call{'s' if calls > 1 else ''})")


# ---------------------------------------------------------------------------------------------
# small studies (the earlier comparison)
# ---------------------------------------------------------------------------------------------
def make_root(root: Path, n: int, shape: tuple[int, int, int]) -> None:
    from carpet.synth.phantom import PhantomSpec, make_phantom

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


def small(args) -> None:
    from carpet.batch import run_batch
    from carpet.quantify import run_quantify

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
        print(f"{n} studies (PET {'x'.join(map(str, shape))} + CT on the PET grid, NIfTI); load {os.getloadavg()[0]:.2f}")
        print(f"  loop run_quantify : {loop:6.2f} s  ({loop / n * 1000:6.1f} ms/study)")
        print(f"  batch --workers 1 : {w1:6.2f} s  ({w1 / n * 1000:6.1f} ms/study, overhead "
              f"{(w1 - loop) / n * 1000:+.1f} ms/study)")
        print(f"  batch --workers 2 : {w2:6.2f} s  (speed-up {w1 / w2:.2f}x over 1 worker)")
        print(f"  rerun (all skip)  : {rerun:6.2f} s  ({rerun / n * 1000:6.1f} ms/study)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--whole-body", action="store_true", help="whole-body PET/CT studies, fresh processes")
    ap.add_argument("--studies", type=int, default=None, help="number of studies (8 whole-body, 12 small)")
    ap.add_argument("--shape", default="128,128,160", help="small studies: PET grid i,j,k (4 mm voxels)")
    ap.add_argument("--repeat", type=int, default=None, help="rounds (3 whole-body; small: best of 2)")
    ap.add_argument("--profile", action="store_true", help="whole-body: also time one study's stages")
    ap.add_argument("--cache", default=str(DEFAULT_CACHE), help="where the whole-body studies are kept")
    args = ap.parse_args()
    if args.whole_body:
        args.studies, args.repeat = args.studies or 8, args.repeat or 3
        whole_body(args)
    else:
        args.studies, args.repeat = args.studies or 12, args.repeat or 2
        small(args)


if __name__ == "__main__":
    main()
