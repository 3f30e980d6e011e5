"""Where the wall time of one ``carpet quantify`` goes, thread by thread: each step's start and end (s from the
start of the run) and the CPU its own thread spent, on bench/quantify.py's whole-body study (made by it first).

Run: ``PYTHONPATH=src /work/venv/bin/python bench/quantify_timeline.py [--runs 3] [--workdir DIR]``. The last run
is printed (the earlier ones warm the caches). A step's thread CPU below its wall time means it waited: for a free
core, for the GIL, or for work of another thread (the CT decode, the CT facts' lock). Steps are wrapped by name
in ``carpet.quantify``'s namespace, so a renamed step drops out of the table (named on stderr), never errors.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

STEPS = [("carpet.quantify", n) for n in (
    "read_image", "file_sha256", "check_pet", "quantify_study", "segment", "_exclude_physiology", "measure_lesions",
    "alignment_references", "_bone_once", "_tissue_then", "add_lesion_columns", "_drain", "_add_region",
    "add_anatomy_reading", "write_outputs")] + [("carpet.anatomy.landmarks", "ct_tissue_on")]


def instrument(events: list, t0: list) -> None:
    """Wrap each step so that its (thread, name, start, end, thread CPU) is appended to ``events``."""
    for mod_name, name in STEPS:
        mod = importlib.import_module(mod_name)
        fn = getattr(mod, name, None)
        if fn is None:
            print(f"no step {mod_name}.{name}", file=sys.stderr)
            continue

        @functools.wraps(fn)
        def timed(*a, _fn=fn, _name=f"{mod_name.rsplit('.', 1)[-1]}.{name}", **k):
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                return _fn(*a, **k)
            finally:
                events.append((threading.current_thread().name, _name, start - t0[0],
                               time.perf_counter() - t0[0], time.thread_time() - cpu))
        setattr(mod, name, timed)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "carpet-bench-quantify")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from quantify import make_study

    import carpet.quantify as q
    warnings.simplefilter("ignore")
    study = make_study(args.workdir, 30)
    events, t0 = [], [0.0]
    instrument(events, t0)
    for _ in range(args.runs):
        events.clear()
        t0[0], cpu = time.perf_counter(), time.process_time()
        q.run_quantify(study["pet"], ct_path=study["ct"], out_dir=args.workdir / "timeline", method="suv4")
        wall, cpu = time.perf_counter() - t0[0], time.process_time() - cpu
    print(f"run_quantify: {wall:.2f} s wall, {cpu:.2f} s CPU (all threads)")
    for thread, name, start, end, thread_cpu in sorted(events, key=lambda e: e[2]):
        print(f"  {thread[-12:]:12s} {name:34s} {start:6.3f} -> {end:6.3f}  ({end - start:5.3f} s wall, "
              f"{thread_cpu:5.3f} s thread CPU)")


if __name__ == "__main__":
    main()
