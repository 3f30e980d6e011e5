"""Maximum-intensity projection of a PET study with its lesions outlined by site — the picture a
nuclear-medicine reader checks first: an SUV colour scale, orientation letters (radiological convention:
the patient's right on the viewer's left), and, when given, the regions excluded as physiological uptake
drawn in their own colour."""

from __future__ import annotations

import numpy as np

from carpet.report.style import journal_style
from carpet.volume import Volume

SITE_COLOURS = {"bone": "#0072B2", "paramedullary": "#E69F00", "extramedullary": "#D55E00",
                "indeterminate": "#CC79A7", "unknown": "#009E73"}
EXCLUDED_COLOUR = "#56B4E9"
EXCLUDED_LABEL = "excluded (physiological)"
# letters at (left, right, top, bottom) of each view; LPS voxel axes: +i left, +j posterior, +k superior
ORIENTATION = {"coronal": ("R", "L", "S", "I"), "sagittal": ("A", "P", "S", "I")}


def informative_index(studies) -> int:
    """Index of the study a reader learns most from: most lesion sites, then most lesions, then largest MTV.

    ``studies`` is a sequence of mappings with ``n_sites`` (distinct sites), ``n_lesions`` and ``mtv_ml``.
    """
    key = [(s.get("n_sites", 0) or 0, s.get("n_lesions", 0) or 0, s.get("mtv_ml", 0) or 0) for s in studies]
    return max(range(len(key)), key=key.__getitem__)


def mip_figure(pet: Volume, labels: Volume | None = None, sites: dict[int, str] | None = None, *,
               suv_window: float = 6.0, title: str = "", excluded: Volume | None = None):
    """Coronal and sagittal MIPs (inverted grey, SUV 0–``suv_window``) with lesion contours coloured by site.

    The projections are drawn with the true aspect ratio of the voxel spacing, head at the top
    (LPS: +z is superior), the patient's right on the viewer's left (coronal) and anterior on the left
    (sagittal), each edge lettered. A colour bar gives the SUV scale (g/mL).

    Parameters
    ----------
    excluded : Volume, optional
        Label map (or mask) of regions excluded from the lesions, e.g. physiological uptake; any
        non-zero voxel is outlined in :data:`EXCLUDED_COLOUR` (dashed) and listed in the legend.
    """
    import matplotlib.pyplot as plt

    arr = np.asarray(pet.array, dtype=np.float32)
    sx, sy, sz = pet.spacing
    # (name, projected axis, in-plane spacing along the kept horizontal axis)
    views = [("coronal", 1, sx), ("sagittal", 0, sy)]
    boxes = _lesion_boxes(labels) if labels is not None else {}
    with journal_style():
        # size the figure to the projections so there is no empty band around them
        ni, nj, nk = arr.shape
        widths = [ni * sx, nj * sy]
        height_in = 4.6
        width_in = height_in * sum(widths) / (nk * sz) + 0.4
        fig, axes = plt.subplots(1, 2, figsize=(max(width_in, 3.0), height_in + 0.5),
                                 gridspec_kw={"width_ratios": widths, "wspace": 0.3})
        excluded_arr = None if excluded is None else np.asarray(excluded.array) != 0
        for ax, (name, axis, s_in_plane) in zip(axes, views):
            image = ax.imshow(arr.max(axis=axis).T, cmap="gray_r", vmin=0, vmax=suv_window, origin="lower",
                              aspect=sz / s_in_plane, interpolation="nearest")
            if excluded_arr is not None and excluded_arr.any():
                ax.contour(excluded_arr.any(axis=axis).T.astype(float), levels=[0.5], colors=EXCLUDED_COLOUR,
                           linewidths=0.8, linestyles="dashed")
            _orientation_letters(ax, ORIENTATION[name])
            for lesion_id, site in (sites or {}).items():
                if lesion_id in boxes:
                    mask = _projected_mask(labels.array, boxes[lesion_id], lesion_id, axis)
                    ax.contour(mask.T.astype(float), levels=[0.5], colors=SITE_COLOURS.get(site, "red"),
                               linewidths=0.8)
            ax.set_title(name, fontsize=8, pad=12)  # room for the S letter
            ax.axis("off")
        present = sorted(set((sites or {}).values()))
        # a site outside SITE_COLOURS is drawn (and listed) in red, as its contour is
        handles = [plt.Line2D([], [], color=SITE_COLOURS.get(s, "red"), lw=1.5) for s in present]
        if excluded_arr is not None and excluded_arr.any():
            handles.append(plt.Line2D([], [], color=EXCLUDED_COLOUR, lw=1.2, ls="--"))
            present.append(EXCLUDED_LABEL)
        bar = fig.colorbar(image, ax=list(axes), fraction=0.04, pad=0.04, shrink=0.6)
        bar.set_label("SUV (g/mL)", fontsize=7)
        bar.ax.tick_params(labelsize=7)
        # the images keep their true aspect, so they fill less than their axes' boxes: the title and the
        # legend go next to what is drawn (panel titles and letters included), not to the figure's edges
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        drawn = [ax.get_tightbbox(renderer) for ax in axes]
        top, bottom = (max(b.y1 for b in drawn) / fig.bbox.height, min(b.y0 for b in drawn) / fig.bbox.height)
        if present:
            fig.legend(handles, present, loc="upper center", ncol=min(len(present), 3), fontsize=7,
                       bbox_to_anchor=(0.5, bottom - 0.005))
        if title:
            fig.suptitle(title, fontsize=9, fontweight="bold", y=top + 0.01, va="bottom")
    return fig


def _orientation_letters(ax, letters) -> None:
    """Letters just outside the left, right, top and bottom edges of an image axes (never over the image)."""
    left, right, top, bottom = letters
    style = {"transform": ax.transAxes, "fontsize": 8, "fontweight": "bold", "color": "#444444", "clip_on": False}
    ax.text(-0.02, 0.5, left, ha="right", va="center", **style)
    ax.text(1.02, 0.5, right, ha="left", va="center", **style)
    ax.text(0.5, 1.01, top, ha="center", va="bottom", **style)
    ax.text(0.5, -0.01, bottom, ha="center", va="top", **style)


def _lesion_boxes(labels: Volume) -> dict[int, tuple[slice, slice, slice]]:
    """Bounding boxes of every label in one pass (so drawing is O(voxels), not O(voxels × lesions))."""
    from scipy import ndimage

    return {k + 1: box for k, box in enumerate(ndimage.find_objects(np.asarray(labels.array, dtype=np.int32)))
            if box is not None}


def _projected_mask(lab: np.ndarray, box, lesion_id: int, axis: int) -> np.ndarray:
    """Projection of one lesion along ``axis``, placed on the full 2-D canvas."""
    keep = [d for d in range(3) if d != axis]
    canvas = np.zeros([lab.shape[d] for d in keep], dtype=bool)
    canvas[box[keep[0]], box[keep[1]]] = (lab[box] == lesion_id).any(axis=axis)
    return canvas
