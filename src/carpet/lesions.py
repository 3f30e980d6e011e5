"""Per-lesion measures and study totals: volume, SUVmax/mean/sd/peak, TLG, centroid, Dmax, SDmax.

All lesions are measured together in O(voxels): one pass picks the lesion voxels out of the
volume (:func:`gather_lesion_voxels`); counts, sums, centroids, bounding boxes and maxima are
``np.bincount`` / ``ufunc.reduceat`` over those voxels only; SUVpeak is a convolution of each
lesion's bounding box (plus the sphere radius) with a spherical kernel (scipy.ndimage, or FFT for
large kernels); Dmax uses the convex hull (Qhull). No step touches the whole image once per lesion.

Definitions follow IBSI 1 (intensity peak) and ``spec/clinical-rules.md`` §5.4 (MTV, TLG, Dmax).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage, signal
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import pdist

from carpet.errors import InputError
from carpet.volume import Volume

#: Radius (mm) of a sphere of 1 cm³: (3 / (4 π) · 1000)^(1/3); IBSI 1 intensity peak.
PEAK_RADIUS_MM = 6.2035

#: Columns of the lesion table, in order.
LESION_COLUMNS = [
    "lesion_id", "n_voxels", "volume_ml", "suv_max", "suv_mean", "suv_sd", "suv_peak",
    "suv_peak_local", "tlg", "centroid_x_mm", "centroid_y_mm", "centroid_z_mm",
    "bbox_i0", "bbox_i1", "bbox_j0", "bbox_j1", "bbox_k0", "bbox_k1",
]


def sphere_kernel(spacing, radius_mm: float = PEAK_RADIUS_MM) -> np.ndarray:
    """Boolean kernel of the voxels whose centres lie within ``radius_mm`` of the centre voxel.

    Parameters
    ----------
    spacing : sequence of 3 floats
        Voxel size (mm) along i, j, k.
    radius_mm : float
        Sphere radius in mm (default: the 1 cm³ sphere of IBSI's intensity peak).
    """
    half = [int(math.floor(radius_mm / s)) for s in spacing]
    grids = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    dist2 = sum((g * s) ** 2 for g, s in zip(grids, spacing))
    # A tiny tolerance keeps voxels whose centre lies exactly on the sphere (rounding of r).
    return dist2 <= radius_mm ** 2 * (1 + 1e-9)


def local_sphere_means(image: np.ndarray, box: tuple[slice, ...], kernel: np.ndarray) -> np.ndarray:
    """Mean of ``image`` over the kernel sphere centred on every voxel of ``box``.

    Sphere voxels come from the whole image (inside or outside any lesion); voxels beyond the
    image border do not exist and are left out of the mean (IBSI 1). Only ``box`` plus the kernel
    half-width is read, so the cost is that of the box, not of the image.

    Returns
    -------
    ndarray, shape of ``box``
        Sphere means, float64.
    """
    half = [k // 2 for k in kernel.shape]
    lo = [b.start - h for b, h in zip(box, half)]
    hi = [b.stop + h for b, h in zip(box, half)]
    src = tuple(slice(max(a, 0), min(b, n)) for a, b, n in zip(lo, hi, image.shape))
    inner = tuple(slice(b.start - s.start, b.stop - s.start) for b, s in zip(box, src))
    k = kernel.astype(np.float64)
    # Zero padding beyond the crop = beyond the image (the crop holds all the box's spheres need).
    sums = _convolve_same(image[src].astype(np.float64), k)[inner]
    if all(a >= 0 for a in lo) and all(b <= n for b, n in zip(hi, image.shape)):
        return sums / k.sum()  # the sphere never leaves the image here
    counts = _convolve_same(np.ones(tuple(s.stop - s.start for s in src)), k)[inner]
    return sums / np.rint(counts)


def _convolve_same(values: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Zero-padded 'same' convolution with a symmetric kernel: direct if small, else FFT."""
    if kernel.size <= 343:  # up to 7×7×7 (r 6.2 mm at ≥ 2 mm voxels): direct is cheaper
        return ndimage.correlate(values, kernel, mode="constant")
    return signal.fftconvolve(values, kernel, mode="same")


@dataclass(frozen=True)
class LesionVoxels:
    """The lesion voxels of a label map, gathered in one pass over the volume.

    Everything per lesion (counts, sums, centroids, boxes, maxima) and the voxel Dmax is then
    computed over these voxels only. Flat indices follow the label map's memory order (``'F'`` for
    carpet's transposed SimpleITK arrays), so no copy of the volume is made.
    """

    flat: np.ndarray      # flat indices (memory order), sorted by label, then by position
    order: str            # 'C' or 'F'
    ijk: tuple            # voxel indices (three arrays), same order as ``flat``
    label: np.ndarray     # label of each voxel
    suv: np.ndarray       # SUV of each voxel (float64)
    starts: np.ndarray    # first position of each label 1..n (== next start when empty)
    n: int                # highest label


def gather_lesion_voxels(suv: np.ndarray, labels: np.ndarray) -> LesionVoxels:
    """Collect the lesion voxels of ``labels`` (and their SUVs) in one pass, O(voxels)."""
    labels = np.asarray(labels)
    order = "F" if labels.flags.f_contiguous and not labels.flags.c_contiguous else "C"
    lab_flat = labels.ravel(order=order)  # a view when the order matches the memory
    flat = np.flatnonzero(lab_flat != 0)  # bool nonzero is ~10× faster than on int32
    lab = lab_flat[flat]
    if len(lab) and lab.min() < 0:
        raise InputError("label map has negative labels")
    sort = np.argsort(lab, kind="stable")  # stable: positions stay increasing inside a label
    flat, lab = flat[sort], lab[sort]
    n = int(lab[-1]) if len(lab) else 0
    ijk = np.unravel_index(flat, labels.shape, order=order)
    starts = np.searchsorted(lab, np.arange(1, n + 1))
    return LesionVoxels(flat, order, ijk, lab, np.asarray(suv)[ijk].astype(np.float64), starts, n)


def measure_lesions(pet: Volume, labels: np.ndarray, *, peak: bool = True,
                    peak_radius_mm: float = PEAK_RADIUS_MM,
                    voxels: LesionVoxels | None = None) -> pd.DataFrame:
    """Measure every lesion of a label map on the PET grid.

    Parameters
    ----------
    pet : Volume
        PET in SUV.
    labels : ndarray of int, shape of ``pet``
        Label map, 0 = background, lesions numbered 1..n (gaps allowed: empty labels are dropped).
    peak : bool
        Compute ``suv_peak`` and ``suv_peak_local`` (IBSI global and local intensity peak).
    peak_radius_mm : float
        Sphere radius for the peaks (default 6.2035 mm, 1 cm³).
    voxels : LesionVoxels, optional
        The gathered lesion voxels, when the caller has them (see :func:`gather_lesion_voxels`).

    Returns
    -------
    DataFrame
        One row per lesion with :data:`LESION_COLUMNS`: ``volume_ml`` = n_voxels × voxel volume
        (mL), SUV statistics (g/mL; ``suv_sd`` is the population SD), ``tlg`` = Σ SUV × voxel
        volume (mL·SUV), the unweighted centroid of the voxel centres in LPS mm, and the bounding
        box as half-open voxel index ranges.
    """
    labels = np.asarray(labels)
    if labels.shape != pet.shape:
        raise InputError(f"label map shape {labels.shape} does not match the PET grid {pet.shape}")
    suv = np.asarray(pet.array)
    vox = voxels if voxels is not None else gather_lesion_voxels(suv, labels)
    n = vox.n
    if n == 0:
        return pd.DataFrame(columns=LESION_COLUMNS)
    counts = np.bincount(vox.label, minlength=n + 1)[1:]
    present = np.flatnonzero(counts) + 1
    starts = vox.starts[present - 1]
    sums = np.bincount(vox.label, weights=vox.suv, minlength=n + 1)
    mean_by_label = np.zeros(n + 1)
    mean_by_label[present] = sums[present] / counts[present - 1]
    # two-pass variance (no cancellation): Σ (x − mean)² per label
    sq_dev = np.bincount(vox.label, weights=(vox.suv - mean_by_label[vox.label]) ** 2, minlength=n + 1)
    cnt = counts[present - 1]
    mean = mean_by_label[present]
    sd = np.sqrt(sq_dev[present] / cnt)
    vmax = np.maximum.reduceat(vox.suv, starts)
    centroid_ijk = np.column_stack(
        [np.bincount(vox.label, weights=a, minlength=n + 1)[1:][present - 1] / cnt for a in vox.ijk])
    centroid_mm = pet.index_to_world(centroid_ijk)
    bbox = np.column_stack([f.reduceat(a, starts) for a in vox.ijk
                            for f in (np.minimum, np.maximum)]).astype(np.int64)  # inclusive

    table = pd.DataFrame({
        "lesion_id": present,
        "n_voxels": cnt,
        "volume_ml": cnt * pet.voxel_volume_ml,
        "suv_max": vmax,
        "suv_mean": mean,
        "suv_sd": sd,
        "suv_peak": np.nan,
        "suv_peak_local": np.nan,
        "tlg": sums[present] * pet.voxel_volume_ml,
        "centroid_x_mm": centroid_mm[:, 0],
        "centroid_y_mm": centroid_mm[:, 1],
        "centroid_z_mm": centroid_mm[:, 2],
        "bbox_i0": bbox[:, 0], "bbox_i1": bbox[:, 1] + 1,
        "bbox_j0": bbox[:, 2], "bbox_j1": bbox[:, 3] + 1,
        "bbox_k0": bbox[:, 4], "bbox_k1": bbox[:, 5] + 1,
    })
    if peak:
        boxes = [tuple(slice(b[2 * a], b[2 * a + 1] + 1) for a in range(3)) for b in bbox]
        table["suv_peak"], table["suv_peak_local"] = suv_peaks(
            suv, labels, pet.spacing, present, boxes, vmax, radius_mm=peak_radius_mm)
    return table[LESION_COLUMNS]


def suv_peaks(suv: np.ndarray, labels: np.ndarray, spacing, lesion_ids=None, boxes=None,
              lesion_max=None, radius_mm: float = PEAK_RADIUS_MM) -> tuple[np.ndarray, np.ndarray]:
    """IBSI 1 global and local intensity peaks of lesions.

    Global peak: the highest mean over spheres of ``radius_mm`` centred on any lesion voxel.
    Local peak: the mean over the sphere centred on the lesion's maximum voxel; when several
    voxels share the maximum, the highest of their sphere means. Sphere voxels are taken from the
    whole image (IBSI), and a voxel is in the sphere when its centre is within ``radius_mm``.

    Parameters
    ----------
    suv : ndarray
        Image (SUV).
    labels : ndarray of int
        Label map on the same grid.
    spacing : sequence of 3 floats
        Voxel size in mm.
    lesion_ids, boxes, lesion_max : optional
        The labels to compute, their bounding boxes (tuples of slices) and maxima, when the
        caller has them already (as :func:`measure_lesions` does); found otherwise.

    Returns
    -------
    (global_peak, local_peak) : two float64 arrays, one value per lesion id
    """
    if lesion_ids is None:
        found = ndimage.find_objects(labels)
        lesion_ids = [n + 1 for n, sl in enumerate(found) if sl is not None]
        boxes = [found[n - 1] for n in lesion_ids]
    kernel = sphere_kernel(spacing, radius_mm)
    glob = np.empty(len(lesion_ids))
    loc = np.empty(len(lesion_ids))
    for n, (lab, box) in enumerate(zip(lesion_ids, boxes)):
        inside = labels[box] == lab
        means = local_sphere_means(suv, box, kernel)[inside]
        values = suv[box][inside]
        top = values.max() if lesion_max is None else lesion_max[n]
        glob[n] = means.max()
        loc[n] = means[values == top].max()
    return glob, loc


# ---------------------------------------------------------------------------------------------
# Dmax
# ---------------------------------------------------------------------------------------------
_METRICS = {"euclidean": "euclidean", "manhattan": "cityblock", "chebyshev": "chebyshev"}


def max_pairwise_distance(points_mm: np.ndarray, metric: str = "euclidean") -> float:
    """Largest distance between any two points (0 for fewer than two).

    The farthest pair of a point set lies among the vertices of its convex hull for any norm
    (a norm is convex), so only hull vertices are compared: O(n log n), not O(n²).

    Parameters
    ----------
    points_mm : ndarray, shape (n, 3)
    metric : {'euclidean', 'manhattan', 'chebyshev'}
    """
    if metric not in _METRICS:
        raise InputError(f"unknown distance metric {metric!r}; expected one of {sorted(_METRICS)}")
    pts = np.unique(np.asarray(points_mm, dtype=np.float64).reshape(-1, 3), axis=0)
    if len(pts) < 2:
        return 0.0
    if len(pts) > 8:
        pts = pts[_extreme_points(pts)]
    return float(pdist(pts, _METRICS[metric]).max())


def _extreme_points(pts: np.ndarray) -> np.ndarray:
    """Indices of the convex hull's vertices, also for coplanar or collinear points.

    Qhull needs full-dimensional input, so the points are expressed in their own affine hull
    (SVD): a 2-D hull for coplanar points (one slice of lesions), the two ends for collinear ones.
    An injective affine map keeps the same points extreme.
    """
    centred = pts - pts.mean(axis=0)
    _, sv, vt = np.linalg.svd(centred, full_matrices=False)
    rank = int((sv > sv[0] * 1e-9).sum())
    coords = centred @ vt[:rank].T
    if rank == 1:
        return np.array([coords[:, 0].argmin(), coords[:, 0].argmax()])
    try:
        return ConvexHull(coords).vertices
    except QhullError:  # nearly degenerate beyond the rank test: all points (exact, slower)
        return np.arange(len(pts))


def lesion_voxel_extremes(voxels: LesionVoxels, shape) -> np.ndarray:
    """Voxel indices (m, 3) that can be extreme points of the set of all lesion voxel centres.

    Along each grid line of the fastest axis in memory, only the first and last lesion voxel can
    be a vertex of the convex hull (any voxel between them lies on their segment), which cuts the
    candidates from all lesion voxels to at most two per line. Written here because no library
    offers this pre-filter; the hull itself is scipy's (Qhull).
    """
    flat = np.sort(voxels.flat)  # all lesions together, memory order
    if len(flat) == 0:
        return np.empty((0, 3))
    line = flat // (shape[0] if voxels.order == "F" else shape[2])
    first = np.r_[True, line[1:] != line[:-1]]
    last = np.r_[line[1:] != line[:-1], True]
    return np.column_stack(np.unravel_index(flat[first | last], shape, order=voxels.order))


def dmax_voxel_mm(pet: Volume, labels: np.ndarray, metric: str = "euclidean",
                  voxels: LesionVoxels | None = None) -> float:
    """Largest distance (mm) between the centres of any two lesion voxels (all lesions)."""
    voxels = voxels if voxels is not None else gather_lesion_voxels(pet.array, labels)
    return max_pairwise_distance(pet.index_to_world(lesion_voxel_extremes(voxels, labels.shape)), metric)


def study_measures(table: pd.DataFrame, *, dmax_voxel: float | None = None,
                   bsa_m2: float | None = None, metric: str = "euclidean") -> dict:
    """Study totals from a lesion table.

    Returns
    -------
    dict
        ``n_lesions``, ``mtv_ml`` (Σ volumes), ``tlg`` (Σ TLG, mL·SUV), ``suv_max`` (hottest
        lesion voxel; None without lesions), ``suv_peak`` (the highest lesion SUVpeak, PERCIST's hottest
        lesion; None without lesions or peaks), ``dmax_mm`` (largest distance between lesion
        centroids, 0 for fewer than two lesions), ``dmax_voxel_mm`` (as given), ``sdmax_per_m``
        (Dmax in m / BSA in m²; None without BSA).
    """
    if bsa_m2 is not None and not (np.isfinite(bsa_m2) and bsa_m2 > 0):
        raise InputError(f"body surface area must be a positive number of m², got {bsa_m2}",
                         hint="--height-cm and --weight-kg")
    centroids = table[["centroid_x_mm", "centroid_y_mm", "centroid_z_mm"]].to_numpy(float)
    dmax = max_pairwise_distance(centroids, metric) if len(table) > 1 else 0.0
    return {
        "n_lesions": int(len(table)),
        "mtv_ml": float(table["volume_ml"].sum()),
        "tlg": float(table["tlg"].sum()),
        "suv_max": float(table["suv_max"].max()) if len(table) else None,
        "suv_peak": float(table["suv_peak"].max()) if "suv_peak" in table and table["suv_peak"].notna().any()
        else None,
        "dmax_mm": dmax,
        "dmax_voxel_mm": None if dmax_voxel is None else float(dmax_voxel),
        "sdmax_per_m": None if bsa_m2 is None else dmax / 1000.0 / bsa_m2,
    }
