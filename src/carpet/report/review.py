"""The review page of one study: every automatic call carpet made, shown so that a reader can check it.

One self-contained HTML file (:class:`carpet.report.html.Report`, figures embedded): the MIP with the
lesions outlined by site (:func:`carpet.report.mip.mip_figure`) and the excluded uptake (physiology masks
and the reader's exclusions) in its own colour; then per lesion its axial and coronal PET and CT slices
through the hottest voxel, its measures and the evidence for its site (fraction in bone, distance to bone,
depth, contact); for a follow-up, the matched baseline lesion's slices beside it. The page ends with the
overrides CSV lines a reader would write, and the study's provenance.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from carpet.report.html import Report
from carpet.report.mip import EXCLUDED_COLOUR, SITE_COLOURS, mip_figure
from carpet.report.style import figure_png_bytes, journal_style
from carpet.volume import Volume

__all__ = ["StudyView", "review_report", "site_reason", "EXCLUDED_COLOUR"]

CT_WINDOW_HU = (-450.0, 1050.0)   # a bone-and-soft-tissue window: the site calls turn on the cortex
HALF_WIDTH_MM = 60.0


@dataclass
class StudyView:
    """What the page draws of one study: PET (SUV), the CT on the PET grid (HU, optional), the label map and
    the lesion table."""

    pet: Volume
    ct_hu: np.ndarray | None
    labels: Volume
    lesions: pd.DataFrame
    name: str = ""


def site_reason(row) -> str:
    """One line saying why the lesion has its site (the classify evidence), or that the reader set it."""
    get = row.get if hasattr(row, "get") else (lambda k, d=None: getattr(row, k, d))
    site = get("site", "unknown")
    if get("site_by") == "reader":
        return f"{site}: set by the reader (override)"
    if site == "unknown":
        return "unknown: no CT"
    parts = []
    for key, label, fmt in (("bone_fraction", "in bone", "{:.0%}"), ("distance_to_bone_mm", "distance to bone",
                                                                      "{:.1f} mm"),
                            ("depth_in_bone_mm", "depth in bone", "{:.1f} mm"),
                            ("bone_contact_fraction", "surface touching bone", "{:.0%}"),
                            ("volume_outside_bone_ml", "outside bone", "{:.2f} mL")):
        value = get(key)
        if value is not None and np.isfinite(value):
            parts.append(f"{label} {fmt.format(value)}")
    return f"{site}: " + ", ".join(parts)


def _hottest_voxel(view: StudyView, lesion_id: int) -> tuple[int, int, int]:
    mask = np.asarray(view.labels.array) == lesion_id
    suv = np.where(mask, np.asarray(view.pet.array), -np.inf)
    return tuple(int(i) for i in np.unravel_index(np.argmax(suv), suv.shape))


def _window(n: int, centre: int, half: int) -> slice:
    return slice(max(0, centre - half), min(n, centre + half + 1))


def _lesion_panels(fig_axes, view: StudyView, lesion_id: int, site: str, suv_window: float, title: str) -> None:
    """PET axial, CT axial, PET coronal, CT coronal through the lesion's hottest voxel, lesion outlined."""
    i, j, k = _hottest_voxel(view, lesion_id)
    sx, sy, sz = view.pet.spacing
    hi, hj, hk = (int(HALF_WIDTH_MM / s) for s in (sx, sy, sz))
    si, sj, sk = _window(view.pet.shape[0], i, hi), _window(view.pet.shape[1], j, hj), _window(view.pet.shape[2], k, hk)
    pet, lab = np.asarray(view.pet.array), np.asarray(view.labels.array) == lesion_id
    cuts = {"axial": (np.s_[si, sj, k], sy / sx, "upper"), "coronal": (np.s_[si, j, sk], sz / sx, "lower")}
    colour = SITE_COLOURS.get(site, "red")
    for n, (plane, (cut, aspect, origin)) in enumerate(cuts.items()):
        for m, (image, cmap, lo, hi_) in enumerate(((pet, "gray_r", 0.0, suv_window),
                                                    (view.ct_hu, "gray", *CT_WINDOW_HU))):
            ax = fig_axes[2 * n + m]
            ax.axis("off")
            if image is None:
                ax.text(0.5, 0.5, "no CT", ha="center", va="center", transform=ax.transAxes, fontsize=7)
                continue
            ax.imshow(np.asarray(image[cut], dtype=np.float32).T, cmap=cmap, vmin=lo, vmax=hi_, origin=origin,
                      aspect=aspect, interpolation="nearest")
            outline = lab[cut].T.astype(float)
            if outline.any():
                ax.contour(outline, levels=[0.5], colors=colour, linewidths=0.9)  # pixel centres as imshow
            ax.set_title(f"{'PET' if m == 0 else 'CT'} {plane}", fontsize=7)
    fig_axes[0].text(-0.08, 0.5, title, rotation=90, va="center", ha="right", transform=fig_axes[0].transAxes,
                     fontsize=7)


def _lesion_figure(rows: list[tuple[StudyView, int, str, str]], suv_window: float):
    import matplotlib.pyplot as plt

    with journal_style():
        fig, axes = plt.subplots(len(rows), 4, figsize=(7.2, 1.9 * len(rows)), squeeze=False)
        for axs, (view, lesion_id, site, title) in zip(axes, rows):
            _lesion_panels(axs, view, lesion_id, site, suv_window, title)
        fig.tight_layout()
    return fig


def _mip_with_exclusions(view: StudyView, excluded: np.ndarray | None, title: str, suv_window: float):
    """:func:`carpet.report.mip.mip_figure` of the study, with the excluded uptake outlined on both projections."""
    sites = {int(r.lesion_id): str(r.site) for r in view.lesions.itertuples()} if len(view.lesions) else {}
    mask = None if excluded is None else view.pet.with_array(np.asarray(excluded) != 0)
    return mip_figure(view.pet, view.labels, sites, suv_window=suv_window, title=title, excluded=mask)


_MEASURES = ["lesion_id", "site", "volume_ml", "suv_max", "suv_peak", "suv_mean", "tlg", "deauville"]
_CHANGE = ["baseline_lesion_id", "change", "delta_suv_max_pct", "delta_suv_peak", "delta_volume_ml"]
#: reader labels with units for the summary.json / lesions.csv keys the page shows (the files keep the keys)
MEASURE_LABELS = {
    "n_lesions": "Lesions", "mtv_ml": "MTV (mL)", "tlg": "TLG (mL·SUV)", "suv_max": "SUVmax", "dmax_mm": "Dmax (mm)",
    "n_bone": "Bone lesions", "n_paramedullary": "Paramedullary lesions", "n_extramedullary": "Extramedullary lesions",
    "n_new_lesions": "New lesions", "n_resolved_lesions": "Resolved lesions", "impetus": "IMPeTUs",
    "response": "Lugano response", "alignment": "Alignment to baseline",
    "lesion_id": "Lesion", "site": "Site", "volume_ml": "Volume (mL)", "suv_peak": "SUVpeak", "suv_mean": "SUVmean",
    "deauville": "Deauville", "baseline_lesion_id": "Baseline lesion", "change": "Change",
    "delta_suv_max_pct": "ΔSUVmax (%)", "delta_suv_peak": "ΔSUVpeak", "delta_volume_ml": "ΔVolume (mL)",
}


def review_report(view: StudyView, summary: dict, *, excluded: np.ndarray | None = None,
                  baseline: StudyView | None = None, baseline_status: pd.DataFrame | None = None,
                  study_id: str = "study", suv_window: float = 6.0) -> Report:
    """Build the review page (a :class:`Report`; ``.write(path)`` writes the HTML).

    Parameters
    ----------
    view : StudyView
        The study read.
    summary : dict
        Its ``summary.json``.
    excluded : bool array on the PET grid, optional
        Uptake removed before labelling (exclusion masks, automatic brain, the reader's exclusions).
    baseline : StudyView, optional
        For a follow-up: the baseline, whose matched lesion is drawn beside each follow-up lesion.
    baseline_status : DataFrame, optional
        ``baseline_lesions.csv`` of the follow-up read (which baseline lesions resolved).
    """
    report = Report(f"Review — {study_id}",
                    f"{summary.get('method')}: {summary.get('n_lesions')} lesions, MTV {summary.get('mtv_ml', 0):.2f} mL, "
                    f"SUVmax {summary.get('suv_max') or 0:.2f}")
    report.section("Whole body")
    report.figure(_mip_with_exclusions(view, excluded, study_id, suv_window),
                  f"Maximum-intensity projections (SUV 0–{suv_window:g}); lesions outlined by site, excluded uptake "
                  "dashed light blue.")
    keys = {k: summary.get(k) for k in ("n_lesions", "mtv_ml", "tlg", "suv_max", "dmax_mm", "n_bone",
                                         "n_paramedullary", "n_extramedullary", "n_new_lesions",
                                         "n_resolved_lesions") if k in summary}
    if "impetus" in summary:
        keys["impetus"] = summary["impetus"].get("report_string")
    if "response" in summary:
        keys["response"] = f"{summary['response'].get('category')} ({summary['response'].get('reason')})"
    tracking = summary.get("tracking")
    if tracking:
        quality = (tracking.get("alignment") or {}).get("quality") or {}
        keys["alignment"] = f"{tracking.get('status')}: {tracking.get('reason')} " \
                            f"(before {quality.get('dice_before')})"
    shown = [f"{v:.4g}" if isinstance(v, float) else "NA" if v is None else str(v) for v in keys.values()]
    report.table(pd.DataFrame({"Measure": [MEASURE_LABELS.get(k, k) for k in keys], "Value": shown}), "Study")

    table = view.lesions
    report.section(f"Lesions ({len(table)})")
    if table.empty:
        report.text("No lesion.")
    base_ids = set(baseline.lesions["lesion_id"]) if baseline is not None and len(baseline.lesions) else set()
    for row in table.to_dict("records"):
        lid = int(row["lesion_id"])
        rows = [(view, lid, str(row.get("site")), f"lesion {lid}")]
        bid = row.get("baseline_lesion_id")
        if baseline is not None and bid is not None and not pd.isna(bid) and int(bid) in base_ids:
            base_site = baseline.lesions.set_index("lesion_id").loc[int(bid), "site"]
            rows.append((baseline, int(bid), str(base_site), f"baseline lesion {int(bid)}"))
        # 110 dpi: a whole-body study's page stays a few MB
        report.image(figure_png_bytes(_lesion_figure(rows, suv_window), dpi=110), f"Lesion {lid}: {site_reason(row)}")
        cols = [c for c in _MEASURES + _CHANGE if c in row]
        report.table(pd.DataFrame([{MEASURE_LABELS.get(c, c): row[c] for c in cols}]))
    if baseline_status is not None and len(baseline_status):
        report.section("Baseline lesions")
        report.table(baseline_status, "Status of every baseline lesion (resolved: nothing matches it at follow-up)")
    physiology = pd.DataFrame((summary.get("excluded") or {}).get("components") or [])
    if len(physiology):  # the physiology rules' calls, with the component_id an 'include' override names
        report.section(f"Excluded as physiological uptake ({len(physiology)})")
        cols = [c for c in ("component_id", "organ", "volume_ml", "suv_max", "rule", "reason") if c in physiology]
        report.table(physiology[cols], "Outlined in blue on the MIP; also in excluded.csv")
    report.section("Reader overrides")
    report.text("To change a call, add a line to the overrides CSV and rerun with --overrides FILE "
                "(quantify also needs --study-id when the file holds several studies):")
    example = pd.DataFrame([{"study_id": study_id, "lesion_id": int(table["lesion_id"].iloc[0]), "action": "site",
                             "site": "bone", "reason": "why"},
                            {"study_id": study_id, "lesion_id": int(table["lesion_id"].iloc[0]), "action": "exclude",
                             "site": "", "reason": "physiological"}]) if len(table) else pd.DataFrame()
    if len(physiology) and "component_id" in physiology:
        example = pd.concat([example, pd.DataFrame([{"study_id": study_id, "action": "include", "site": "",
                                                     "lesion_id": int(physiology["component_id"].iloc[0]),
                                                     "reason": "not physiology (component_id)"}])])
    if len(example):
        report.table(example, "e.g.")
    report.provenance = summary.get("provenance", {})
    return report


def write_review(path, view: StudyView, summary: dict, **kwargs) -> Path:
    """Build and write the review page; returns its path."""
    return review_report(view, summary, **kwargs).write(path)
