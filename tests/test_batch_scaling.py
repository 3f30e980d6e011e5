"""``carpet batch`` on several workers: start-up paid once, the cores split, the largest study first.

* a module the batch imports before forking its workers is in every worker without being imported
  there, and the modules the batch preloads bring every package a NIfTI study imports;
* each worker's ITK thread pool gets its share of the cores (``cores // workers``), not every core;
* parallel runs hand out the studies largest first (by input bytes); each outcome records its CPU
  seconds and the worker process that ran it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import carpet.batch as batch
from carpet.batch import StudyTask, run_batch
from carpet.synth.phantom import PhantomSpec, make_phantom
from carpet.workers import run_in_workers, usable_cores


def _probe(module: str) -> tuple[bool, int, int]:
    """In a worker: was ``module`` already there, ITK's thread count, the worker's pid."""
    already = module in sys.modules
    import SimpleITK as sitk

    return already, sitk.ProcessObject.GetGlobalDefaultNumberOfThreads(), os.getpid()


def test_workers_inherit_the_preloaded_modules_and_share_the_cores(tmp_path, monkeypatch):
    name = f"carpet_preload_probe_{os.getpid()}"
    (tmp_path / f"{name}.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert name not in sys.modules
    import SimpleITK as sitk

    sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()  # ITK set up here: a worker must change it, not inherit it
    got = list(run_in_workers(_probe, [name] * 4, 2, lambda task, exc: exc, preload=[name]))
    assert name in sys.modules  # imported here, once, before the workers were forked
    assert [g[0] for g in got] == [True] * 4
    assert os.getpid() not in {g[2] for g in got}
    if usable_cores() >= 2:  # on one core every share is one thread, as ITK's default would be
        assert {g[1] for g in got} == {usable_cores() // 2}
    # a module that is not there costs nothing but its saving
    assert len(list(run_in_workers(_probe, [name], 2, lambda task, exc: exc, preload=["no_such_module_x"]))) == 1


_IMPORTS_OF_A_STUDY = """
import importlib, json, sys
import carpet.batch as b
for m in b._WORKER_MODULES:
    importlib.import_module(m)
before = set(sys.modules)
r = b.run_study(b.StudyTask(sys.argv[1], sys.argv[2]))
tops = {m.split(".")[0] for m in before}
print(json.dumps({"status": r["status"], "message": r["message"],
                  "new": sorted({m.split(".")[0] for m in set(sys.modules) - before} - tops)}))
"""


@pytest.mark.slow
def test_the_preloaded_modules_cover_what_a_study_imports(tmp_path):
    study = tmp_path / "root" / "s0"
    make_phantom(PhantomSpec.small(seed=0)).write_nifti(study)["lesions"].unlink()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", _IMPORTS_OF_A_STUDY, str(study), str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found["status"] == "done", found["message"]
    assert found["new"] == []  # a worker imports no package that the batch did not import before forking


def _sized_root(root: Path) -> dict[str, int]:
    """Studies whose inputs weigh 300, 5000 (nested), 1200 and 0 (empty folder) bytes, and a file study."""
    sizes = {"a": 300, "b": 5000, "c": 1200}
    for sid, n in sizes.items():
        folder = root / sid / ("deep" if sid == "b" else "")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "pet.nii.gz").write_bytes(b"x" * n)
    (root / "empty").mkdir()
    (root / "solo.nii.gz").write_bytes(b"x" * 2000)
    return {**sizes, "empty": 0, "solo": 2000}


def test_parallel_runs_hand_out_the_largest_study_first(tmp_path, monkeypatch):
    root = tmp_path / "root"
    sizes = _sized_root(root)
    expected = sorted(sizes, key=lambda s: -sizes[s])  # b, solo, c, a, empty
    tasks = [StudyTask(str(p), str(tmp_path / "o")) for p in sorted(root.iterdir())]
    assert [batch.study_id_of(t.source) for t in batch._largest_first(tasks)] == expected

    seen = []

    def recording(fn, tasks, workers, lost, preload=()):
        seen.append([batch.study_id_of(t.source) for t in tasks])
        yield from map(fn, tasks)

    monkeypatch.setattr(batch, "run_in_workers", recording)
    result = run_batch(root, tmp_path / "out", workers=2, progress=False)
    assert seen == [expected]
    assert result.counts["failed"] == 5  # not NIfTI: each fails alone, the run completes
    assert list(result.outcomes.study_id) == sorted(sizes)  # the tables keep the id order


@pytest.mark.slow
def test_outcomes_record_cpu_seconds_and_the_worker(tmp_path, monkeypatch):
    root = tmp_path / "root"
    for seed in (0, 1):
        make_phantom(PhantomSpec.small(seed=seed)).write_nifti(root / f"s{seed}")["lesions"].unlink()
    result = run_batch(root, tmp_path / "out", workers=2, progress=False)
    assert result.counts["done"] == 2
    outcomes = result.outcomes
    assert (outcomes.cpu_seconds > 0).all() and (outcomes.seconds > 0).all()
    assert os.getpid() not in set(outcomes.worker)
    original = batch._run_study

    def waiting(task):  # a study that waits 0.3 s: wall, not CPU
        time.sleep(0.3)
        return original(task)

    monkeypatch.setattr(batch, "_run_study", waiting)
    alone = run_batch(root, tmp_path / "out", workers=1, progress=False)  # both skipped, after the wait
    assert set(alone.outcomes.worker) == {os.getpid()}  # one worker: in this process
    assert (alone.outcomes.seconds >= 0.3).all() and (alone.outcomes.cpu_seconds < 0.25).all()


def test_dask_runs_the_largest_study_first(tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    root = tmp_path / "root"
    sizes = _sized_root(root)
    log = tmp_path / "started.txt"  # the task travels pickled: a list here would not see its appends

    def recording(task):
        with open(log, "a") as fh:
            fh.write(batch.study_id_of(task.source) + "\n")
        return run_study(task)

    run_study = batch.run_study
    monkeypatch.setattr(batch, "run_study", recording)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        result = run_batch(root, tmp_path / "out", scheduler=cluster.scheduler_address, progress=False)
    assert result.counts["total"] == 5
    assert log.read_text().split() == sorted(sizes, key=lambda s: -sizes[s])

