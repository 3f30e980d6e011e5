"""Before/after check for speed work on the anatomy: dump every site, reference value and lesion measure
carpet gives on a fixed set of studies, then compare two dumps.

    PYTHONPATH=src python tools/anatomy_snapshot.py dump before.pkl [--only PREFIX] [--real]
    PYTHONPATH=src python tools/anatomy_snapshot.py diff before.pkl after.pkl

Studies: the whole-body phantom (seeds 0-3, CT on the PET grid and on a 1.5625x1.5625x4 mm grid), the
patient phantom (seed 1: full, thorax-only and pelvis-only fields of view; seed 2 with a 2x2x4 mm CT) and,
with ``--real``, the real whole-body scan ../shared/reference/sts-pet/STS_001_raw (PET only, no CT; files to outputs).
Per study: lesion sites on both comparison grids, liver / blood-pool / marrow references, and
``quantify_study``'s lesion table and summary (provenance left out). ``diff`` prints IDENTICAL or each
difference (floats compared at 1e-9).
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

STS = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference" / "sts-pet" / "STS_001_raw"


def _cases():
    from carpet.synth import PhantomSpec

    for seed in (0, 1, 2, 3):
        for sp in (None, (1.5625, 1.5625, 4.0)):
            yield f"wb{seed}_{'pet' if sp is None else 'ct'}", PhantomSpec.whole_body(seed=seed, n_lesions=30,
                                                                                        ct_spacing_mm=sp)
    for fov in ("full", "thorax", "pelvis"):
        yield f"patient_{fov}", PhantomSpec.patient(seed=1, fov=fov)
    yield "patient_ct", PhantomSpec.patient(seed=2, ct_spacing_mm=(2.0, 2.0, 4.0))


def dump(path: Path, only: str | None, real: bool) -> None:
    from carpet.anatomy import blood_pool_reference, liver_reference, marrow_reference
    from carpet.classify import SiteParams, classify_lesions
    from carpet.quantify import quantify_study, run_quantify
    from carpet.synth import make_phantom

    warnings.simplefilter("ignore")
    out = {}
    for name, spec in _cases():
        if only and not name.startswith(only):
            continue
        t = time.time()
        ph = make_phantom(spec)
        rec = {f"sites_{g}": classify_lesions(ph.lesion_labels, ph.ct, params=SiteParams(grid=g)) for g in ("ct", "pet")}
        for f in (liver_reference, blood_pool_reference, marrow_reference):
            r = f(ph.pet, ph.ct, lesions=ph.lesion_labels)
            rec[r.name] = (r.mean, r.sd, r.n_voxels, r.centre_mm, r.usable, r.reason)
        q = quantify_study(ph.pet, ct=ph.ct)
        rec["q_lesions"] = q.lesions
        rec["q_summary"] = {k: v for k, v in q.summary.items() if k != "provenance"}
        out[name] = rec
        print(name, f"{time.time() - t:.1f} s", flush=True)
    if real and STS.exists():
        with tempfile.TemporaryDirectory() as tmp:
            r = run_quantify(STS / "FDG_PET" / "image", out_dir=Path(tmp) / "o")  # no CT: PET-only rules
            out["sts001"] = {"q_lesions": r.lesions, "q_summary": {k: v for k, v in r.summary.items()
                                                                 if k != "provenance"}}
        print("sts001 done", flush=True)
    path.write_bytes(pickle.dumps(out))


def _strip(d):
    if isinstance(d, dict):
        return {k: _strip(v) for k, v in d.items() if k not in ("provenance", "site_rule", "generated",
                                                                "carpet_version", "timing_s")}
    if isinstance(d, list):
        return [_strip(v) for v in d]
    return d


def _frame_diff(key, x: pd.DataFrame, y: pd.DataFrame) -> list[str]:
    msgs = []
    if list(x.columns) != list(y.columns):
        msgs.append(f"{key}: columns differ {set(x.columns) ^ set(y.columns)}")
    if len(x) != len(y):
        return msgs + [f"{key}: {len(x)} rows -> {len(y)} rows"]
    for c in [c for c in x.columns if c in y.columns]:
        xa, ya = x[c].to_numpy(), y[c].to_numpy()
        if xa.dtype.kind in "fiub" and ya.dtype.kind in "fiub":
            bad = ~np.isclose(xa.astype(float), ya.astype(float), rtol=1e-9, atol=1e-9, equal_nan=True)
        else:
            bad = np.array([str(p) != str(q) for p, q in zip(xa, ya)], bool)
        if bad.any():
            msgs.append(f"{key}.{c}: {int(bad.sum())} rows differ, e.g. {list(zip(xa[bad][:3], ya[bad][:3]))}")
    return msgs


def diff(a_path: Path, b_path: Path) -> int:
    a, b = (pickle.loads(Path(p).read_bytes()) for p in (a_path, b_path))
    n_diff = 0
    for name in [n for n in a if n in b]:
        msgs = []
        for k, x in a[name].items():
            y = b[name].get(k)
            if isinstance(x, pd.DataFrame):
                msgs += _frame_diff(k, x, y)
            elif k == "q_summary":
                da, db = _strip(x), _strip(y)
                for kk in sorted(set(da) | set(db)):
                    if json.dumps(da.get(kk), sort_keys=True, default=str) != json.dumps(db.get(kk), sort_keys=True,
                                                                                            default=str):
                        msgs.append(f"summary.{kk}: {str(da.get(kk))[:160]} -> {str(db.get(kk))[:160]}")
            elif str(x) != str(y):
                msgs.append(f"{k}: {x} -> {y}")
        n_diff += bool(msgs)
        print(name, "IDENTICAL" if not msgs else "DIFFERS")
        for m in msgs:
            print("   ", m)
    return 1 if n_diff else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump")
    d.add_argument("out", type=Path)
    d.add_argument("--only")
    d.add_argument("--real", action="store_true")
    c = sub.add_parser("diff")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    args = ap.parse_args()
    if args.cmd == "dump":
        dump(args.out, args.only, args.real)
    else:
        sys.exit(diff(args.a, args.b))


if __name__ == "__main__":
    main()
