"""``carpet batch`` killed at several moments, then rerun: the results are those of a clean run.

The batch runs as a real process (``python -m carpet.cli batch``, 2 worker processes) over three
small NIfTI phantoms; it is SIGKILLed when a chosen moment is seen on disk (the run has started,
the first study is being written, one study is done, two are, all are). Its workers must end with it
(no orphans). The rerun (in this process, 1 worker) must give the clean run's ``imaging.csv``,
``lesions.csv`` and ``errors.csv``, the same per-study files, and leave no temporary file. Also here:
SIGTERM ends the workers with the batch; a worker killed from outside costs nothing (its study is
rerun); a task that kills its own worker costs only itself.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from carpet.batch import run_batch
from carpet.synth.phantom import PhantomSpec, make_phantom
from carpet.workers import run_in_workers

STUDIES = ("s0", "s1", "s2")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("kill") / "root"
    for i, sid in enumerate(STUDIES):
        make_phantom(PhantomSpec.small(seed=i)).write_nifti(base / sid)["lesions"].unlink()
    (base / "bad").mkdir()  # one study that fails on its input, in every run
    (base / "bad" / "pet.nii.gz").write_bytes(b"not a NIfTI")
    return base


@pytest.fixture(scope="module")
def clean(root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clean") / "out"
    run_batch(root, out, workers=1, progress=False)
    return out


def _results(out: Path) -> dict:
    """What a user reads: the three tables and each study's files (provenance times left out)."""
    import json

    found = {name: pd.read_csv(out / name) for name in ("imaging.csv", "lesions.csv", "errors.csv")}
    for study in sorted((out / "studies").iterdir()):
        summary = _without_provenance(json.loads((study / "summary.json").read_text()))
        found[study.name] = (summary, (study / "lesions.csv").read_text(),
                             sorted(p.name for p in study.iterdir()))
    return found


def _without_provenance(value):
    """The summary without its provenance records and their times (when they were made)."""
    if isinstance(value, dict):
        return {k: _without_provenance(v) for k, v in value.items() if k not in ("provenance", "created_utc")}
    if isinstance(value, list):
        return [_without_provenance(v) for v in value]
    return value


def _differences(a: dict, b: dict) -> list[str]:
    """Keys whose values differ (empty: the same results)."""
    if a.keys() != b.keys():
        return [f"keys {sorted(a.keys() ^ b.keys())}"]
    diff = []
    for k in a:
        if isinstance(a[k], pd.DataFrame):
            try:
                pd.testing.assert_frame_equal(a[k], b[k])
            except AssertionError as exc:
                diff.append(f"{k}: {exc}")
        elif a[k] != b[k]:
            diff.append(k)
    return diff


def _start(root: Path, out: Path, workers: int = 2) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, "-m", "carpet.cli", "batch", str(root), "--out", str(out),
                             "--workers", str(workers), "--no-progress"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(proc: subprocess.Popen, ready, timeout: float = 300) -> bool:
    """Poll until ``ready()``; False when the process ended first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if ready():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.005)
    raise AssertionError("the moment never came")


def _n_done(out: Path) -> int:
    return len(list((out / "studies").glob("*/done.json"))) if (out / "studies").is_dir() else 0


MOMENTS = {
    "started": lambda out: (out / ".carpet-output").exists(),
    "first study being written": lambda out: (out / "studies").is_dir() and any(
        p.name.endswith(".tmp") for p in (out / "studies").iterdir()),
    "one study done": lambda out: _n_done(out) >= 1,
    "two studies done": lambda out: _n_done(out) >= 2,
    "all studies done": lambda out: _n_done(out) >= 3,
}


def _gone(pids: list[int], timeout: float = 10) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_sigkill_at_each_moment_then_rerun_gives_the_clean_results(root, clean, tmp_path):
    reference = _results(clean)
    identical, killed = 0, 0
    for i, (moment, ready) in enumerate(MOMENTS.items()):
        out = tmp_path / f"out{i}"
        if moment == "started":  # a rerun killed early into an OUT with earlier results
            shutil.copytree(clean, out)
            shutil.rmtree(out / "studies" / "s1")
        proc = _start(root, out)
        hit = _wait_for(proc, lambda: ready(out))
        children = [c.pid for c in psutil.Process(proc.pid).children()] if hit else []
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed += hit
        assert _gone(children), f"{moment}: workers outlived the killed batch"
        rerun = run_batch(root, out, workers=1, progress=False)
        assert rerun.counts["failed"] == 1 and rerun.counts["total"] == 4, moment
        assert not [p for p in out.rglob("*") if p.name.endswith((".tmp", ".old"))], moment
        diff = _differences(_results(out), reference)
        identical += not diff
        assert not diff, (moment, diff)
    assert killed >= 4  # (the last moment may come just as the run ends)
    print(f"\nkill test: {len(MOMENTS)} moments, {killed} killed there, {identical} reruns identical")


def test_sigterm_ends_the_workers_with_the_batch(root, tmp_path):
    out = tmp_path / "out"
    proc = _start(root, out)
    assert _wait_for(proc, lambda: len(psutil.Process(proc.pid).children()) >= 2)
    children = [c.pid for c in psutil.Process(proc.pid).children()]
    proc.send_signal(signal.SIGTERM)
    out_text, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and b"interrupted" in err and b"Traceback" not in err, (out_text, err)
    assert _gone(children, timeout=5)
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def _square_or_die(n: int) -> int:
    if n == 3:
        os.kill(os.getpid(), signal.SIGKILL)  # this task kills its own worker
    time.sleep(0.05)
    return n * n


def test_a_task_that_kills_its_worker_costs_only_itself():
    got = list(run_in_workers(_square_or_die, range(8), 2, lambda task, exc: ("lost", task)))
    assert sorted(g for g in got if isinstance(g, int)) == [n * n for n in range(8) if n != 3]
    assert [g for g in got if not isinstance(g, int)] == [("lost", 3)]


def test_a_worker_killed_from_outside_costs_nothing(root, clean, tmp_path):
    import threading

    out = tmp_path / "out"
    me = psutil.Process()
    killed = []

    def kill_one_worker():
        end = time.monotonic() + 300
        while time.monotonic() < end:
            if (out / "studies").is_dir() and any(p.name.endswith(".tmp") for p in (out / "studies").iterdir()):
                workers = [c for c in me.children() if "resource_tracker" not in " ".join(c.cmdline())]
                if workers:
                    workers[0].kill()
                    killed.append(workers[0].pid)
                    return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_one_worker)
    killer.start()
    result = run_batch(root, out, workers=2, progress=False)
    killer.join()
    assert killed, "no worker was killed: the test proved nothing"
    c = result.counts  # (a study that was finished just as its pool broke is found done: skipped)
    assert (c["total"], c["done"] + c["skipped"], c["failed"]) == (4, 3, 1)
    assert _differences(_results(out), _results(clean)) == []
