"""Maximum-intensity projection of a PET study with its lesions outlined by site — the picture a
nuclear-medicine reader checks first."""

from __future__ import annotations

import numpy as np

from carpet.report.style import journal_style
from carpet.volume import Volume

SITE_COLOURS = {"bone": "#0072B2", "paramedullary": "#E69F00", "extramedullary": "#D55E00",
                "indeterminate": "#CC79A7", "unknown": "#009E73"}


def mip_figure(pet: Volume, labels: Volume | None = None, sites: dict[int, str] | None = None, *,
               suv_window: float = 6.0, title: str = ""):
    """Coronal and sagittal MIPs (inverted grey, SUV 0–``suv_window``) with lesion contours coloured by site.

    The projections are drawn with the true aspect ratio of the voxel spacing, head at the top
    (LPS: +z is superior).
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
                                 gridspec_kw={"width_ratios": widths})
        for ax, (name, axis, s_in_plane) in zip(axes, views):
            ax.imshow(arr.max(axis=axis).T, cmap="gray_r", vmin=0, vmax=suv_window, origin="lower",
                      aspect=sz / s_in_plane, interpolation="nearest")
            for lesion_id, site in (sites or {}).items():
                if lesion_id in boxes:
                    mask = _projected_mask(labels.array, boxes[lesion_id], lesion_id, axis)
                    ax.contour(mask.T.astype(float), levels=[0.5], colors=SITE_COLOURS.get(site, "red"),
                               linewidths=0.8)
            ax.set_title(name, fontsize=8)
            ax.axis("off")
        if sites:
            present = sorted(set(sites.values()))
            # a site outside SITE_COLOURS is drawn (and listed) in red, as its contour is
            fig.legend([plt.Line2D([], [], color=SITE_COLOURS.get(s, "red"), lw=1.5) for s in present], present,
                       loc="lower center", ncol=len(present), fontsize=7)
        if title:
            fig.suptitle(title, fontsize=9, fontweight="bold")
    return fig


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
