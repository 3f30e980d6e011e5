"""The ``carpet quantify`` study pipeline: read → segment (or take the user's lesions) → measure → write.

Pure part: :func:`quantify_study` (Volumes in, :class:`QuantifyResult` out). I/O edges:
:func:`run_quantify` (paths in, files out) and :func:`write_outputs`. Lesion sites and other
per-lesion columns are added by :func:`add_lesion_columns`, study keys by :func:`add_summary_keys`
— the two places the anatomy/classification step plugs in.

Outputs (DESIGN.md contract): ``lesions.csv``, ``summary.json`` (with provenance: input hashes,
method, thresholds, carpet version), ``lesions.nii.gz`` (label map on the PET grid, label =
``lesion_id``), and for ``method='all'`` ``methods.csv`` (one row per method, study measures side
by side).
"""

from __future__ import annotations

import hashlib
import json
import math
import queue
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from carpet.anatomy import BoneParams, ct_tissue_on, liver_reference
from carpet.classify import classify_lesions
from carpet.errors import InputError
from carpet.io import read_image, read_mask, write_nifti, write_seg
from carpet.io.checks import check_overlap, check_pet
from carpet.io.outdir import writes_staged
from carpet.lesions import dmax_voxel_mm, gather_lesion_voxels, measure_lesions, study_measures
from carpet.overrides import apply_exclusions, apply_inclusions, apply_sites, overrides_for, read_overrides
from carpet.provenance import bytes_sha256, file_sha256, provenance
from carpet.scores.impetus import read_study
from carpet.segment import METHODS, SegmentParams, auto_exclude_brain, label_components, segment
from carpet.suv import bsa_dubois_m2
from carpet.tracking import (BaselineOutputs, ExcludedUptake, alignment_references, read_study_outputs,
                             track_followup)
from carpet.volume import Volume, resample_to
from carpet.io.tables import write_csv

SITES = ("bone", "paramedullary", "extramedullary", "indeterminate", "unknown")
STUDY_KEYS = ("n_lesions", "mtv_ml", "tlg", "suv_max", "suv_peak", "dmax_mm", "dmax_voxel_mm", "sdmax_per_m")


@dataclass
class QuantifyResult:
    """Everything ``carpet quantify`` reports for one study.

    Attributes
    ----------
    lesions : DataFrame
        One row a lesion (the chosen method, or the first of ``method='all'``).
    summary : dict
        Study measures, site counts and ``provenance``.
    labels : Volume
        Label map on the PET grid (int32; label = ``lesion_id``).
    methods : DataFrame or None
        For ``method='all'``: one row per method with the study measures.
    excluded : Volume or None
        Physiological uptake taken out of the (main method's) segmentation: label map on the PET grid,
        label = ``component_id`` of ``excluded_table`` (None when the exclusion was off).
    excluded_table : DataFrame or None
        One row per excluded component: ``component_id, organ, volume_ml, suv_max``, centroid, ``rule``,
        ``reason`` (:func:`carpet.anatomy.physiology.find_physiology`).
    """

    lesions: pd.DataFrame
    summary: dict
    labels: Volume
    methods: pd.DataFrame | None = None
    extra: dict = field(default_factory=dict)
    excluded: Volume | None = None
    excluded_table: pd.DataFrame | None = None


# ---------------------------------------------------------------------------------------------
# hooks for the anatomy step (sites, reference regions)
# ---------------------------------------------------------------------------------------------
def add_lesion_columns(table: pd.DataFrame, labels: Volume, ct: Volume | None,
                       connectivity: int = 26) -> pd.DataFrame:
    """Add per-lesion columns that need anatomy: ``site`` and its evidence (:func:`carpet.classify.classify_lesions`);
    without a CT every lesion's site is ``unknown``."""
    table = table.copy()
    if ct is None or table.empty:
        table["site"] = "unknown"
        return table
    sites = classify_lesions(labels, ct, connectivity=connectivity)
    merged = table.merge(sites, on="lesion_id", how="left")
    merged.attrs["site_provenance"] = sites.attrs.get("provenance")   # thresholds of the site rule
    return merged


def add_summary_keys(summary: dict, table: pd.DataFrame, ct: Volume | None) -> dict:
    """Add study keys derived from the lesion sites: ``n_bone``, ``n_paramedullary``,
    ``n_extramedullary`` (null when the sites are unknown; 0 with a CT and no lesion)."""
    known = ct is not None and "site" in table and (table.empty or (table["site"] != "unknown").any())
    for site in ("bone", "paramedullary", "extramedullary"):
        summary[f"n_{site}"] = int((table["site"] == site).sum()) if known else None
    return summary


def add_anatomy_reading(summary: dict, table: pd.DataFrame, pet: Volume, ct: Volume | None,
                        labels: Volume, liver_centre_mm=None, baseline: dict | None = None,
                        references: dict | None = None) -> pd.DataFrame:
    """Reference regions, marrow, per-lesion Deauville, IMPeTUs record and metCR (carpet.scores.impetus),
    and with a baseline ``summary.json`` the Lugano response; returns the table with ``deauville``.
    ``references``: the liver, blood-pool and marrow regions when already read (see
    :func:`carpet.scores.impetus.read_study`)."""
    reading = read_study(pet, ct, labels, table, liver_centre_mm=liver_centre_mm, references=references)
    summary.update(reading.to_summary())
    if table.attrs.get("site_provenance"):
        summary["site_rule"] = table.attrs["site_provenance"]
    if baseline is not None:
        from carpet.scores.metabolic_response import response_to_baseline

        summary["response"] = response_to_baseline(baseline, summary).to_dict()
    return reading.lesions


def read_baseline(baseline_dir) -> dict:
    """The ``summary.json`` of an earlier ``carpet quantify`` run (for ``--baseline DIR``)."""
    path = Path(baseline_dir)
    path = path / "summary.json" if path.is_dir() else path
    if not path.is_file():
        raise InputError("baseline summary.json not found", source=path,
                         hint="--baseline takes the --out folder of the baseline's carpet quantify run")
    try:
        summary = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc.msg})", source=path, where=f"line {exc.lineno}") from None
    if not isinstance(summary, dict):
        raise InputError(f"expected a JSON object (a carpet quantify summary), found a "
                         f"{type(summary).__name__}", source=path, hint="--baseline")
    return summary


def read_baseline_outputs(baseline_dir) -> BaselineOutputs:
    """The baseline's ``carpet quantify`` folder for ``--baseline DIR`` (:func:`carpet.tracking.read_study_outputs`)."""
    summary = read_baseline(baseline_dir)
    folder = Path(baseline_dir)
    return read_study_outputs(folder if folder.is_dir() else folder.parent, summary)


def liver_reference_from_voi(pet: Volume, ct: Volume | None, centre_mm=None,
                             diameter_mm: float = 30.0):
    """Liver mean and SD (SUV) via :func:`carpet.anatomy.liver_reference`; an unusable region is refused."""
    if centre_mm is None and ct is None:
        raise InputError("needs a liver reference: give --liver-voi x,y,z[,diameter_mm] "
                         "(LPS mm) or a CT (--ct) for the automatic liver VOI")
    region = liver_reference(pet, ct=ct, centre_mm=centre_mm, diameter_mm=diameter_mm)
    if not getattr(region, "usable", True):
        raise InputError(f"the liver reference is not usable: {getattr(region, 'reason', '')}",
                         hint="place it with --liver-voi x,y,z[,diameter_mm] (LPS mm)")
    return region


# ---------------------------------------------------------------------------------------------
# the pure pipeline
# ---------------------------------------------------------------------------------------------
def user_lesions(mask: Volume, pet: Volume, connectivity: int = 26) -> np.ndarray:
    """Lesion labels from a user mask on the PET grid.

    A mask with several labels keeps them (relabelled 1..n in label order); a binary mask is
    split into connected components.
    """
    if not mask.same_grid(pet):
        mask = resample_to(mask, pet, interpolation="nearest")
    arr = np.asarray(mask.array)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise InputError("lesion mask must hold integer labels", source=mask.meta.get("source"))
    arr = arr.astype(np.int64)
    if arr.min() < 0:
        raise InputError("lesion mask has negative labels", source=mask.meta.get("source"))
    values = np.unique(arr)
    values = values[values > 0]
    if len(values) <= 1:
        return label_components(arr > 0, pet.spacing, connectivity=connectivity)
    lut = np.zeros(int(values.max()) + 1, dtype=np.int32)
    lut[values] = np.arange(1, len(values) + 1, dtype=np.int32)
    return lut[arr]


def quantify_study(pet: Volume, *, ct: Volume | None = None, lesions: Volume | None = None,
                   exclude: Volume | None = None, method: str | None = None,
                   params: SegmentParams | None = None, liver_voi=None,
                   bsa_m2: float | None = None, inputs: dict | None = None,
                   auto_exclude: bool = False, baseline: dict | None = None,
                   overrides: pd.DataFrame | None = None,
                   keep_physiological: bool = False) -> QuantifyResult:
    """Segment (or take the user's lesions), measure, and summarise one study.

    Parameters
    ----------
    pet : Volume
        PET in SUV.
    ct : Volume or Future of a Volume, optional
        CT in HU on any grid; used for lesion sites and the automatic liver VOI. A
        ``concurrent.futures.Future`` is waited for only where the CT is needed, so the CT can be
        decoded while the PET is segmented and measured (as :func:`run_quantify` does).
    lesions : Volume, optional
        User lesion mask (labels, or a binary mask split into connected components). Without
        ``method`` its lesions are measured as given; with ``method`` 'pct41' or 'a50p' they are
        the seeds of the per-lesion threshold.
    exclude : Volume, optional
        Mask of physiological uptake removed before labelling.
    method : str, optional
        One of :data:`carpet.segment.METHODS` or ``'all'``; default ``'suv4'`` (or the user mask
        as given when ``lesions`` is given).
    params : SegmentParams
        Connectivity, minimum volume, seed/VOI settings, liver reference.
    liver_voi : tuple or str, optional
        (x, y, z) or (x, y, z, diameter_mm), LPS mm: the liver VOI for percist / liver3sd.
    bsa_m2 : float, optional
        Body surface area for SDmax.
    baseline : dict, optional
        The baseline study's ``summary.json``: adds the Lugano response (ΔSUVmax) to the summary.
    inputs : dict, optional
        Provenance of the input files (name → {path, sha256}).
    auto_exclude : bool
        Deprecated (superseded by the physiology rules, which exclude the brain by default): also exclude
        the brain found by :func:`carpet.segment.auto_exclude_brain` (a component ≥ 500 mL in the top 30 cm),
        still useful with ``keep_physiological`` or a user's ``lesions`` mask, which the rules never filter.
    overrides : DataFrame, optional
        This study's reader overrides (:func:`carpet.overrides.read_overrides`): lesions excluded before
        measuring, sites set after classifying; each applied change is in ``provenance.overrides``.
    keep_physiological : bool
        Keep the components the physiology rules take for brain, myocardium, kidneys and bladder
        (:func:`carpet.anatomy.physiology.find_physiology`); by default they are excluded from threshold
        segmentations and listed in ``excluded_table``. A user's lesion mask is never filtered.
    """
    params = params or SegmentParams()
    if method is not None and method != "all" and method not in METHODS:
        raise InputError(f"unknown method {method!r}; expected one of {', '.join(METHODS)} or all",
                         hint="--method")
    if lesions is not None and method not in (None, "pct41", "a50p"):
        raise InputError(f"--lesions with --method {method}: a lesion mask is measured as given, or "
                         "seeds the per-lesion methods pct41 and a50p", hint="leave out --method")
    excl = None
    if exclude is not None:
        ex = exclude if exclude.same_grid(pet) else resample_to(exclude, pet, interpolation="nearest")
        excl = np.asarray(ex.array) > 0
    suv = np.asarray(pet.array)
    auto_record = None
    if auto_exclude:
        grids = np.ogrid[tuple(slice(0, n) for n in pet.shape)]
        z_mm = pet.origin[2] + sum(pet.direction[2, a] * pet.spacing[a] * g for a, g in enumerate(grids))
        brain, auto_record = auto_exclude_brain(suv, pet.spacing, z_mm)
        excl = brain if excl is None else excl | brain
    user = None if lesions is None else user_lesions(lesions, pet, params.connectivity)
    liver_info, notes = None, []
    if user is not None and method is None:
        if excl is not None:
            user = np.where(excl, 0, user).astype(np.int32)
        methods = ["user_mask"]
        seg_labels, thresholds, skipped = {"user_mask": user}, {"user_mask": None}, {}
    else:
        method = method or "suv4"
        methods = list(METHODS) if method == "all" else [method]
        if any(m in ("percist", "liver3sd") for m in methods) and params.liver_mean is None:
            try:
                centre, diam = _parse_liver_voi(liver_voi)
                ct = _resolve(ct, pet)
                region = liver_reference_from_voi(pet, ct, centre, diam)
                params = _with_liver(params, region.mean, region.sd)
                liver_info = {"mean": float(region.mean), "sd": float(region.sd),
                              "n_voxels": int(region.n_voxels), "provenance": region.provenance}
            except InputError as exc:
                if method != "all":
                    raise
                notes.append(f"percist and liver3sd skipped: {exc}")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            seg = segment(suv, pet.spacing, methods, params=params, exclude=excl, seeds=user,
                          skip_unavailable=(method == "all"))
        notes += sorted({str(w.message) for w in caught})
        seg_labels, thresholds, skipped = seg.labels, seg.thresholds, seg.skipped
    from carpet.anatomy.landmarks import body_landmarks

    landmarks = body_landmarks(pet)
    physiology = {}
    if not keep_physiological and user is None:
        seg_labels, physiology = _exclude_physiology(pet, seg_labels, landmarks)

    applied = []
    if overrides is not None and len(overrides) and methods[0] in seg_labels:
        # the reader's inclusions and exclusions change the label map before anything is measured
        found = physiology.get(methods[0])
        kept, back, applied = apply_inclusions(seg_labels[methods[0]], None if found is None else found.excluded,
                                               overrides, pet.voxel_volume_ml)
        if applied:
            ids = [r["component_id"] for r in applied]
            physiology[methods[0]] = replace(found, labels=kept, excluded=back,
                                             table=found.table[~found.table["component_id"].isin(ids)])
        kept, excluded_rows = apply_exclusions(kept, overrides, pet.voxel_volume_ml)
        if excluded_rows:
            applied += excluded_rows
            gone = (kept == 0) & (seg_labels[methods[0]] > 0)   # drawn as excluded on the review page
            excl = gone if excl is None else excl | gone
        seg_labels = {**seg_labels, methods[0]: kept}
    rows, tables = [], {}
    for m in methods:
        if m not in seg_labels:
            rows.append({"method": m, **{k: None for k in STUDY_KEYS}, "skipped": skipped.get(m)})
            continue
        voxels = gather_lesion_voxels(suv, seg_labels[m])  # one pass, shared by both measures
        table = measure_lesions(pet, seg_labels[m], voxels=voxels)
        tables[m] = table
        dmax_voxel = dmax_voxel_mm(pet, seg_labels[m], voxels=voxels)
        rows.append({"method": m, **study_measures(table, dmax_voxel=dmax_voxel, bsa_m2=bsa_m2),
                     "skipped": None})

    main = methods[0]
    labels_vol = pet.with_array(np.asarray(seg_labels[main], dtype=np.int32), modality="SEG", units="label")
    align_refs = alignment_references(pet, None)      # the PET's, while the CT may still be decoding
    ct = _resolve(ct, pet)
    liver_centre = _parse_liver_voi(liver_voi)[0]
    with ThreadPoolExecutor(max_workers=1) as pool:
        # Two threads share the CT work. The other thread builds the CT facts on the PET grid (HU, body, lungs,
        # the mid-line band's bone and marrow: cached) while this one builds the bone and the lesion sites;
        # then both take the reference regions and the CT alignment image from one queue, each as it comes
        # free (they need the CT facts, not the sites). Errors of the other thread surface here.
        tasks = _ct_tasks(pet, ct, labels_vol, liver_centre) if ct is not None else queue.SimpleQueue()
        done: dict = {}
        other = pool.submit(_tissue_then, pet, ct, tasks, done) if ct is not None else None
        if ct is not None:
            _bone_once(pet, ct, labels_vol, landmarks)
        table = add_lesion_columns(tables[main], labels_vol, ct, params.connectivity)
        table = _add_review(table, physiology.get(main))
        if overrides is not None and len(overrides):
            table, changed = apply_sites(table, overrides)
            applied += changed
        _drain(tasks, done)
        if other is not None:
            other.result()
    if "align_ct" in done:
        align_refs["CT"] = done["align_ct"]
    references = {k: done[k] for k in ("liver", "blood_pool", "marrow")} if ct is not None else None
    ct_hu = None if ct is None else ct_tissue_on(pet, ct, BoneParams().smooth_mm)[0]   # cached
    table = _add_region(table, pet, ct, physiology.get(main), landmarks)
    study = next(r for r in rows if r["method"] == main)
    summary = {"method": main,
               **{k: study[k] for k in STUDY_KEYS}}
    summary = add_summary_keys(summary, table, ct)
    from carpet.anatomy.regions import REGIONS, provenance_dict

    summary["n_by_region"] = {r: int((table["region"] == r).sum()) for r in REGIONS if (table["region"] == r).any()}
    summary["region_rule"] = provenance_dict()
    excluded_vol, excluded_table = _physiology_summary(summary, pet, physiology.get(main), keep_physiological,
                                                       user is not None)
    table = add_anatomy_reading(summary, table, pet, ct, labels_vol, liver_centre, baseline, references)
    summary["provenance"] = provenance(
        inputs=inputs or {},
        method=main, thresholds_suv=thresholds.get(main),
        segmentation={"connectivity": params.connectivity, "min_volume_ml": params.min_volume_ml,
                      "seed_suv": params.seed_suv, "voi_margin_mm": params.voi_margin_mm,
                      "bg_shell_mm": params.bg_shell_mm, "percist_variant": params.percist_variant,
                      "mv_inputs": list(params.mv_inputs),
                      "exclusion_mask": exclude is not None, "auto_exclude": auto_record,
                      "lesions_from": ("user mask" if main == "user_mask" else
                                       "threshold seeded by the user mask" if user is not None else
                                       "threshold")},
        measures={"volume": "n_voxels x voxel volume on the PET grid",
                  "suv_peak": "IBSI global intensity peak, 1 cm3 sphere (r 6.2035 mm), voxel centres",
                  "suv_peak_local": "IBSI local intensity peak (sphere on the max voxel)",
                  "centroid": "unweighted mean of voxel centres, LPS mm",
                  "dmax_mm": "largest Euclidean distance between lesion centroids",
                  "dmax_voxel_mm": "largest Euclidean distance between lesion voxel centres",
                  "sdmax_per_m": "dmax (m) / BSA (m2)" if bsa_m2 else "not computed (no BSA)"},
        bsa_m2=bsa_m2, liver_reference=liver_info, warnings=notes,
        site_classification="carpet.classify" if ct is not None else "not available (no CT)",
        overrides=None if overrides is None else {"file": overrides.attrs.get("source"),
                                                  "sha256": overrides.attrs.get("sha256"), "applied": applied},
    )
    methods_table = None
    if method == "all":
        methods_table = pd.DataFrame(rows).astype({"n_lesions": "Int64"})  # skipped methods: empty
        summary["methods"] = {r["method"]: {k: r[k] for k in STUDY_KEYS} for r in rows}
        summary["provenance"]["thresholds_suv"] = thresholds
        summary["provenance"]["skipped"] = skipped
    return QuantifyResult(table, summary, labels_vol, methods_table,
                          extra={"labels": seg_labels, "tables": tables,
                                 "align_refs": align_refs, "ct_on_pet": ct_hu, "excluded": excl},
                          excluded=excluded_vol, excluded_table=excluded_table)


def _bone_once(pet: Volume, ct: Volume, labels: Volume, landmarks) -> None:
    """Build the CT bone once for every region that will ask for it (:func:`carpet.anatomy.bone.ct_bone`
    cuts their boxes from it): each lesion's neighbourhood of the site rule and the mid-line band of the
    marrow and reference regions, as a set of boxes (overlapping ones merged), not the box holding them all.
    The band is placed on the PET's trunk centre line with 50 mm to spare, since the CT's body is not found
    yet; a band that misses it is built on its own (same values, more time)."""
    from carpet.anatomy.bone import build_ct_bone
    from carpet.anatomy.landmarks import SPINE_BAND_MM, band_region
    from carpet.classify import site_regions

    boxes = site_regions(labels, ct)
    if landmarks.has_body.any():
        x_mid = float(np.nanmedian(landmarks.trunk_x_mm[landmarks.has_body]))
        boxes.append(band_region(ct, x_mid, SPINE_BAND_MM + 3.0 * max(pet.spacing) + 50.0))
    boxes = [b for b in boxes if b is not None]
    if boxes:
        build_ct_bone(ct, BoneParams(), boxes)


def _ct_tasks(pet: Volume, ct: Volume, labels: Volume, liver_centre_mm) -> queue.SimpleQueue:
    """The CT work that needs the CT facts on the PET grid but not the lesion sites, longest first: the liver,
    blood-pool and marrow reference regions and the CT alignment image (binned HU)."""
    from carpet.anatomy import blood_pool_reference, marrow_reference
    from carpet.tracking import binned

    tasks = queue.SimpleQueue()
    for name, fn in (
            ("liver", lambda: liver_reference(pet, ct, centre_mm=liver_centre_mm, lesions=labels)),
            ("blood_pool", lambda: blood_pool_reference(pet, ct, lesions=labels)),
            ("marrow", lambda: marrow_reference(pet, ct, lesions=labels)),
            ("align_ct", lambda: binned(pet.with_array(ct_tissue_on(pet, ct, BoneParams().smooth_mm)[0],
                                                       modality="CT", units="HU")))):
        tasks.put((name, fn))
    return tasks


def _drain(tasks: queue.SimpleQueue, done: dict) -> None:
    """Run queued ``(name, fn)`` tasks until the queue is empty, each result into ``done[name]``."""
    while True:
        try:
            name, fn = tasks.get_nowait()
        except queue.Empty:
            return
        done[name] = fn()


def _tissue_then(pet: Volume, ct: Volume, tasks: queue.SimpleQueue, done: dict) -> None:
    """The CT facts on the PET grid shared by the reference regions (:class:`carpet.anatomy.landmarks._CtOnPet`,
    cached), then queued tasks."""
    from carpet.anatomy.landmarks import _CtOnPet

    _CtOnPet.build(pet, ct, BoneParams())
    _drain(tasks, done)


def _exclude_physiology(pet: Volume, seg_labels: dict, landmarks) -> tuple[dict, dict]:
    """Each method's label map without its physiological components (one set of landmarks)."""
    from carpet.anatomy.physiology import find_physiology

    found = {m: find_physiology(pet, lab, landmarks=landmarks) for m, lab in seg_labels.items()}
    return {m: f.labels for m, f in found.items()}, found


def _add_region(table: pd.DataFrame, pet: Volume, ct: Volume | None, physiology, landmarks) -> pd.DataFrame:
    """``region`` (:func:`carpet.anatomy.regions.lesion_regions`), from the PET landmarks, the organs the
    physiology rules found and, with a CT, its lungs."""
    from carpet.anatomy.physiology import PhysiologyParams
    from carpet.anatomy.regions import lesion_regions

    table = table.copy()
    lungs = None if ct is None else ct_tissue_on(pet, ct, BoneParams().smooth_mm)[2]
    length = float(np.ptp(landmarks.z_mm[landmarks.has_body])) if landmarks.has_body.any() else 0.0
    table["region"] = lesion_regions(pet, table, landmarks, None if physiology is None else physiology.levels,
                                     lungs, usable=length + 8.0 >= PhysiologyParams().min_fov_mm)
    return table


def _add_review(table: pd.DataFrame, physiology) -> pd.DataFrame:
    """``review`` (bool) and ``review_reason``: lesions the physiology rules could not decide."""
    table = table.copy()
    reasons = {} if physiology is None else physiology.review
    table["review"] = table["lesion_id"].map(lambda i: int(i) in reasons).astype(bool)
    table["review_reason"] = table["lesion_id"].map(lambda i: reasons.get(int(i), ""))
    return table


def _physiology_summary(summary: dict, pet: Volume, physiology, keep: bool, user_mask: bool):
    """The ``excluded`` and ``landmarks`` blocks of summary.json; returns (label map Volume, table)."""
    if physiology is None:
        why = ("--keep-physiological" if keep else "lesions from the user's mask are not filtered" if user_mask
               else "not run")
        summary["excluded"] = {"physiology": "off", "reason": why, "n_components": 0, "volume_ml": 0.0,
                               "components": []}
        return None, None
    t = physiology.table
    summary["excluded"] = {
        "physiology": "on", "n_components": int(len(t)), "volume_ml": float(t["volume_ml"].sum()),
        "by_organ": {o: {"n_components": int(len(g)), "volume_ml": float(g["volume_ml"].sum()),
                         "suv_max": float(g["suv_max"].max())} for o, g in t.groupby("organ")},
        "components": t.to_dict(orient="records"), "provenance": physiology.provenance}
    summary.setdefault("landmarks", {}).update(physiology.landmarks)
    vol = pet.with_array(physiology.excluded, modality="SEG", units="label")
    return vol, t


def _resolve(ct, pet: Volume):
    """The CT Volume (waiting for it when it is still being read in a thread), checked to overlap the PET."""
    ct = ct.result() if isinstance(ct, Future) else ct
    if ct is not None:
        check_overlap(ct, pet, "CT")
    return ct


def _with_liver(params: SegmentParams, mean: float, sd: float) -> SegmentParams:
    return replace(params, liver_mean=float(mean), liver_sd=float(sd))


def _parse_liver_voi(text):
    """'x,y,z[,d]' (LPS mm) → ((x, y, z), d); None → (None, 30.0)."""
    if text is None:
        return None, 30.0
    if isinstance(text, str):
        try:
            vals = [float(v) for v in text.split(",")]
        except ValueError:
            vals = []
    else:
        vals = [float(v) for v in text]
    if len(vals) not in (3, 4) or not all(math.isfinite(v) for v in vals):
        raise InputError(f"liver VOI must be x,y,z[,diameter_mm] in LPS mm, got {text!r}",
                         hint="--liver-voi -60,40,-120,30")
    return tuple(vals[:3]), (vals[3] if len(vals) == 4 else 30.0)


# ---------------------------------------------------------------------------------------------
# I/O edges
# ---------------------------------------------------------------------------------------------
@writes_staged("quantify")
def run_quantify(pet_path, *, out_dir, ct_path=None, lesions_path=None, exclude_path=None,
                 method: str | None = None, params: SegmentParams | None = None, liver_voi=None,
                 height_cm: float | None = None, weight_kg: float | None = None,
                 auto_exclude: bool = False, baseline_dir=None, roi: str | None = None,
                 pseudonym: str | None = None, keep_identity: bool = False, overrides_path=None,
                 study_id: str | None = None, keep_physiological: bool = False,
                 review: bool = False) -> QuantifyResult:
    """Read the inputs, quantify, write the outputs in ``out_dir``; returns the result.

    ``roi`` picks one ROI of an RTSTRUCT ``lesions_path``. A DICOM SEG written for a DICOM PET carries
    ``pseudonym`` (default: ``carpet-`` + a hash of the StudyInstanceUID, which the SEG keeps anyway)
    instead of the patient's identity, unless ``keep_identity``. Warnings of the input checks are
    recorded in the summary. ``overrides_path``: a reader overrides CSV (:mod:`carpet.overrides`) whose
    rows for ``study_id`` are applied (without ``study_id`` the file must hold one study). ``review``: also
    write ``review.html`` (:mod:`carpet.report.review`). The timing of each stage is kept in
    ``result.extra['timing_s']``. ``out_dir`` is written as ``carpet quantify --out`` writes it
    (:func:`carpet.io.outdir.writes_staged`: locked, staged, moved into place when complete, only a folder
    carpet wrote is replaced); ``staged=False`` writes straight into it (for a caller that stages it).
    """
    t0 = time.perf_counter()
    baseline = None if baseline_dir is None else read_baseline_outputs(baseline_dir)
    overrides = None
    if overrides_path is not None:
        overrides = overrides_for(read_overrides(overrides_path), study_id)
        overrides.attrs.update(source=str(overrides_path), sha256=file_sha256(overrides_path))
    paths = {"pet": pet_path, "ct": ct_path, "lesions": lesions_path, "exclude": exclude_path}
    paths = {k: Path(v) for k, v in paths.items() if v is not None}
    for k, p in paths.items():
        if not p.exists():
            raise InputError(f"{k} input not found", source=p)
    # In two threads beside the main one: decode the CT, which is needed only after the PET is
    # segmented and measured, and hash the input files (hashlib releases the GIL): a NIfTI image from the
    # bytes its reader read, a folder (DICOM) and the masks from disk.
    with ThreadPoolExecutor(max_workers=2) as pool:
        hashes = {}
        on_bytes = {k: (lambda raw, k=k: hashes.setdefault(k, pool.submit(bytes_sha256, raw))) for k in paths}
        ct = pool.submit(read_image, paths["ct"], on_bytes=on_bytes["ct"]) if "ct" in paths else None  # first
        hashes.update({k: pool.submit(file_sha256, p) for k, p in paths.items()
                       if k not in ("pet", "ct") or p.is_dir()})
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pet = read_image(paths["pet"], on_bytes=on_bytes["pet"])
            check_pet(pet)
            masks = {k: read_mask(paths[k], reference=pet, roi=roi if k == "lesions" else None,
                                  what=f"{'lesion' if k == 'lesions' else 'exclusion'} mask")
                     for k in ("lesions", "exclude") if k in paths}
        t_read = time.perf_counter()
        bsa, bsa_source = _bsa(pet, height_cm, weight_kg)
        result = quantify_study(pet, ct=ct, lesions=masks.get("lesions"), exclude=masks.get("exclude"),
                                method=method, params=params, liver_voi=liver_voi, bsa_m2=bsa,
                                auto_exclude=auto_exclude, baseline=baseline and baseline.summary,
                                overrides=overrides, keep_physiological=keep_physiological)
        roi_names = _roi_names(result, masks.get("lesions"))
        prov = result.summary["provenance"]
        prov["warnings"] = [str(w.message) for w in caught] + list(prov.get("warnings") or [])
        prov["inputs"] = {k: {"path": str(p), "sha256": (hashes.get(k) or pool.submit(file_sha256, p)).result()}
                          for k, p in paths.items()}
        prov["pet_units"] = pet.meta.get("units")
        prov["pet_units_assumed"] = bool(pet.meta.get("units_assumed", False))
        prov["bsa_source"] = bsa_source
    t_quant = time.perf_counter()
    if baseline is not None:
        tracked = track_followup(baseline, result.lesions, result.labels, result.summary,
                                 result.extra["align_refs"], excluded=None if result.excluded is None
                                 else ExcludedUptake(result.excluded, result.excluded_table))
        result.lesions = tracked.lesions
        result.summary.update(tracked.summary)
        result.summary["tracking"]["baseline_dir"] = str(baseline_dir)
        result.extra["tracked"] = tracked
    t_track = time.perf_counter()
    dicom_pet = paths["pet"].is_dir()
    if dicom_pet:  # the label map as DICOM SEG too; the reason when there is none
        prov["dicom_seg"] = ("lesions.seg.dcm" if int(result.labels.array.max(initial=0)) > 0 else
                             "not written: no lesion (a DICOM SEG holds at least one segment)")
    files = write_outputs(result, out_dir)
    if dicom_pet:
        if not keep_identity and pseudonym is None:
            uid = str((pet.meta.get("dicom") or {}).get("StudyInstanceUID", paths["pet"]))
            pseudonym = "carpet-" + hashlib.sha256(uid.encode()).hexdigest()[:16]
        seg = write_seg(result.labels, paths["pet"], Path(out_dir) / "lesions.seg.dcm",
                        names=roi_names,
                        method=result.summary["method"], threshold=prov.get("thresholds_suv"),
                        pseudonym=None if keep_identity else pseudonym)
        if seg is not None:
            files["seg"] = seg
    if review:
        files["review"] = _write_review(result, pet, baseline, Path(out_dir) / "review.html",
                                        _review_name(study_id, pseudonym, prov))
    result.extra["files"] = files
    t_write = time.perf_counter()
    result.extra["timing_s"] = {"read_pet": t_read - t0, "quantify_and_ct": t_quant - t_read,
                                "tracking": t_track - t_quant, "write": t_write - t_track}
    return result


def _roi_names(result: QuantifyResult, mask: Volume | None) -> dict[int, str] | None:
    """Lesion label -> the name of the RTSTRUCT ROI / SEG segment it lies in (a ``roi`` column is
    added to the lesion table); None when the lesions do not come from a named mask."""
    names = None if mask is None else mask.meta.get("labels")
    if not names:
        return None
    lesions, rois = np.asarray(result.labels.array), np.asarray(mask.array)
    inside = lesions > 0
    pairs = np.unique(np.stack([lesions[inside], rois[inside]]), axis=1)
    found: dict[int, list[str]] = {}
    for lesion, roi in pairs.T:
        if roi > 0:
            found.setdefault(int(lesion), []).append(names.get(int(roi), f"ROI {roi}"))
    by_lesion = {k: " + ".join(v) for k, v in found.items()}
    if "lesion_id" in result.lesions:
        result.lesions.insert(1, "roi", result.lesions["lesion_id"].map(by_lesion))
    return {k: (v if list(by_lesion.values()).count(v) == 1 else f"{v} ({k})") for k, v in by_lesion.items()}


def _review_name(study_id: str | None, pseudonym: str | None, prov: dict) -> str:
    """The review page's name for the study: ``--study-id``, else the pseudonym, else ``carpet-`` + the start of
    the PET's SHA-256 — never the input file's or folder's name, which often holds the patient's name."""
    return study_id or pseudonym or "carpet-" + prov["inputs"]["pet"]["sha256"][:16]


def _write_review(result: QuantifyResult, pet: Volume, baseline, path: Path, study_id: str) -> Path:
    """The review page; for a follow-up the baseline's images are read again from the paths its
    provenance records (the page says so when they are gone)."""
    from carpet.report.review import StudyView, review_report

    view = StudyView(pet, result.extra.get("ct_on_pet"), result.labels, result.lesions, study_id)
    base_view, status = None, None
    tracked = result.extra.get("tracked")
    if baseline is not None and tracked is not None and tracked.baseline_lesions is not None:
        status = tracked.baseline_lesions
        inputs = baseline.summary.get("provenance", {}).get("inputs", {})
        pet_path = Path(inputs.get("pet", {}).get("path", ""))
        if pet_path.exists() and inputs.get("pet", {}).get("path"):
            base_pet = read_image(pet_path)
            ct_path = inputs.get("ct", {}).get("path")
            base_ct = None
            if ct_path and Path(ct_path).exists():
                base_ct = np.asarray(resample_to(read_image(ct_path), base_pet, default_value=-1000.0).array)
            labels = baseline.labels if baseline.labels.same_grid(base_pet) else resample_to(
                baseline.labels, base_pet, interpolation="nearest")
            base_view = StudyView(base_pet, base_ct, labels, baseline.lesions, "baseline")
    excluded = result.extra.get("excluded")  # the user's --exclude mask, with the physiology rules' components
    if result.excluded is not None:
        physiology = np.asarray(result.excluded.array) > 0
        excluded = physiology if excluded is None else excluded | physiology
    report = review_report(view, result.summary, excluded=excluded, baseline=base_view,
                           baseline_status=status, study_id=study_id)
    if baseline is not None and base_view is None:
        report.section("Baseline images").note("The baseline's PET named in its provenance is not on this machine: "
                                               "baseline slices are not shown.")
    return report.write(path)


def _bsa(pet: Volume, height_cm, weight_kg):
    """BSA (m², Du Bois) from the options, else from the PET's DICOM header; None when unknown."""
    header = pet.meta.get("suv") or {}
    for flag, value in (("--height-cm", height_cm), ("--weight-kg", weight_kg)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise InputError(f"must be a positive number, got {value}", where=flag)
    if height_cm and weight_kg:
        return bsa_dubois_m2(weight_kg, height_cm), "options"
    if header.get("height_cm") and header.get("weight_kg"):
        return bsa_dubois_m2(header["weight_kg"], header["height_cm"]), "PET DICOM header"
    return None, None


def write_outputs(result: QuantifyResult, out_dir) -> dict[str, Path]:
    """Write ``lesions.csv``, ``summary.json``, ``lesions.nii.gz`` (and ``methods.csv``; with the
    physiology exclusion on, ``excluded.csv`` and ``excluded.nii.gz``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"lesions": out / "lesions.csv", "summary": out / "summary.json",
             "labels": out / "lesions.nii.gz"}
    n = int(result.labels.array.max()) if result.labels.array.size else 0
    # the smallest integer type that holds the labels: less to compress
    dtype = np.uint8 if n < 256 else np.uint16 if n < 65536 else np.int32
    with ThreadPoolExecutor(max_workers=2) as pool:   # the images are compressed in threads (zlib frees the GIL)
        images = [pool.submit(write_nifti, result.labels, files["labels"], dtype=dtype)]
        for modality, ref in result.extra.get("align_refs", {}).items():  # for a later follow-up's alignment
            name = f"align_{modality.lower()}"
            files[name] = out / f"{name}.nii.gz"
            images.append(pool.submit(write_nifti, ref, files[name], compresslevel=1,
                                      dtype=np.int16 if modality == "CT" else np.float32))
        write_csv(result.lesions, files["lesions"])
        files["summary"].write_text(json.dumps(result.summary, indent=2, default=_json_default))
        for image in images:
            image.result()
    tracked = result.extra.get("tracked")
    if tracked is not None and tracked.baseline_lesions is not None:
        files["baseline_lesions"] = out / "baseline_lesions.csv"
        write_csv(tracked.baseline_lesions, files["baseline_lesions"])
        import SimpleITK as sitk

        files["alignment"] = out / "alignment.tfm"   # baseline LPS mm -> follow-up LPS mm (ITK/Slicer)
        sitk.WriteTransform(tracked.alignment.transform, str(files["alignment"]))
    if result.excluded is not None:
        files["excluded"] = out / "excluded.csv"
        write_csv(result.excluded_table, files["excluded"])
        n_ex = len(result.excluded_table) if result.excluded_table is not None else 0
        if n_ex:  # an all-zero label map says nothing excluded.csv does not (and costs a whole-grid write)
            files["excluded_labels"] = out / "excluded.nii.gz"
            write_nifti(result.excluded, files["excluded_labels"],
                        dtype=np.uint8 if n_ex < 256 else np.uint16 if n_ex < 65536 else np.int32)
    if result.methods is not None:
        files["methods"] = out / "methods.csv"
        write_csv(result.methods, files["methods"])
    return files


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (Path,)):
        return str(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj)}")
