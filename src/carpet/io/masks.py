"""Lesion and exclusion masks in and out: NIfTI label maps, DICOM RTSTRUCT, DICOM SEG.

Every mask comes back as an integer label :class:`~carpet.volume.Volume` on the grid of a reference
image (normally the PET), so segmentation and measurement never have to think about grids.

* NIfTI: read with SimpleITK, resampled nearest-neighbour onto the reference when the grids differ.
* RTSTRUCT: carpet's own rasteriser (no maintained library does it on an arbitrary ``Volume`` grid).
  **Rule**: a voxel belongs to an ROI when its *centre* lies inside the ROI's closed planar contours on
  the contour plane nearest to the voxel's slice (within half a slice); contours on the same plane are
  combined by the even-odd rule, so an inner contour cuts a hole. Slices farther than half a slice from
  every contour plane are empty. Contours must be parallel to the reference slices.
* SEG: read and written with highdicom (LABELMAP segmentations referencing the source PET series).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from matplotlib.path import Path as PolygonPath

from carpet.errors import InputError
from carpet.io.checks import check_mask_kept
from carpet.io.dicom import SPACING_RTOL
from carpet.volume import Volume, resample_to

_RTSTRUCT_UID = "1.2.840.10008.5.1.4.1.1.481.3"
#: Segmentation Storage and Label Map Segmentation Storage (what highdicom.seg.SOP_CLASS_UIDS holds).
_SEG_UIDS = ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7")


# ------------------------------------------------------------------------------------------------
# dispatch
# ------------------------------------------------------------------------------------------------
def _dicom_object(path: Path) -> pydicom.Dataset | None:
    """The RTSTRUCT or SEG dataset at ``path`` (a file, or the only one in a folder), else None."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    found = []
    for f in files:
        try:  # headers only: the folder may also hold a whole image series
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except Exception:
            continue
        if str(ds.get("SOPClassUID", "")) in (_RTSTRUCT_UID, *_SEG_UIDS):
            found.append(f)
    if len(found) > 1:
        raise InputError(f"{len(found)} RTSTRUCT/SEG objects found ({', '.join(f.name for f in found)}); "
                         "point to one file", source=path)
    return pydicom.dcmread(found[0]) if found else None


def read_mask(path: str | Path, reference: Volume, *, roi: str | None = None,
              what: str = "mask") -> Volume:
    """Read a lesion or exclusion mask onto the grid of ``reference``.

    Parameters
    ----------
    path : str or Path
        NIfTI label map (``.nii``/``.nii.gz``), RTSTRUCT file or folder, or DICOM SEG file.
    reference : Volume
        The grid to return the labels on (the PET).
    roi : str, optional
        For an RTSTRUCT: the one ROI to read (default: every ROI, one label each).
    what : str
        What the mask is, for messages ('lesion mask', 'exclusion mask').

    Returns
    -------
    Volume
        int32 labels (0 = background). For RTSTRUCT and SEG, ``meta['labels']`` maps each label value to
        the ROI/segment name.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("mask file not found", source=path)
    if path.name.endswith((".nii", ".nii.gz")):
        from carpet.io.nifti import read_nifti

        if roi is not None:
            raise InputError("--roi selects an ROI of an RTSTRUCT; this is a NIfTI label map", source=path)
        vol = read_nifti(path)
        arr = vol.array
        if not np.issubdtype(arr.dtype, np.integer):
            if not np.all(arr == np.round(arr)):
                raise InputError("mask holds non-integer values; expected a label map (0 = background)",
                                 source=path)
        if arr.size and arr.max() > np.iinfo(np.int32).max:
            raise InputError(f"label value {arr.max():.0f} is larger than {np.iinfo(np.int32).max}; "
                             "expected a label map (0 = background, 1..n)", source=path)
        before_ml = np.count_nonzero(arr) * vol.voxel_volume_ml
        vol = resample_to(vol.with_array(arr.astype(np.int32)), reference, interpolation="nearest")
        arr = np.asarray(vol.array, dtype=np.int32)
        check_mask_kept(before_ml, np.count_nonzero(arr) * reference.voxel_volume_ml, path, what)
        return vol.with_array(arr, source=str(path))
    ds = _dicom_object(path)
    if ds is None:
        raise InputError("not a NIfTI label map, RTSTRUCT or DICOM SEG", source=path)
    if str(ds.SOPClassUID) in _SEG_UIDS:
        if roi is not None:
            raise InputError("--roi selects an ROI of an RTSTRUCT; this is a DICOM SEG", source=path)
        return read_seg(path if path.is_file() else Path(ds.filename), reference)
    rois = _rtstruct_rois(ds, Path(ds.filename), reference, roi)
    if roi is None and len(rois) > 1:
        warnings.warn(f"{ds.filename}: the RTSTRUCT holds {len(rois)} ROIs ({', '.join(rois)}); each "
                      "is measured as a lesion of its own; --roi NAME measures one", stacklevel=2)
    labels = np.zeros(reference.shape, dtype=np.int32)
    names = {}
    for n, (name, mask) in enumerate(rois.items(), start=1):
        labels[mask.array & (labels == 0)] = n  # earlier ROIs win where ROIs overlap
        names[n] = name
        if not mask.array.any():
            raise InputError(f"ROI '{name}' has no voxel in the PET's field of view (its contours lie "
                             "outside it, or on no PET slice)", source=ds.filename,
                             where="ContourData (3006,0050)")
    return reference.with_array(labels, labels=names, source=str(ds.filename), units="label")



# ------------------------------------------------------------------------------------------------
# RTSTRUCT
# ------------------------------------------------------------------------------------------------
def read_rtstruct(path: str | Path, reference: Volume,
                  roi: str | Sequence[str] | None = None) -> dict[str, Volume]:
    """Rasterise the ROIs of an RTSTRUCT onto ``reference`` (voxel-centre-in-polygon, module docstring).

    Parameters
    ----------
    path : file or folder holding one RTSTRUCT
    reference : Volume
        Grid to rasterise on; its slices must be parallel to the contours.
    roi : str or list of str, optional
        ROI names to return (default: all with contours).

    Returns
    -------
    dict
        ROI name -> bool Volume on the reference grid.

    Raises
    ------
    InputError
        An ROI name not in the file (the message lists the names), a different FrameOfReferenceUID, or
        contours not parallel to the reference slices.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("RTSTRUCT file not found", source=path)
    ds = _dicom_object(path) if path.is_dir() else pydicom.dcmread(path)
    return _rtstruct_rois(ds, path, reference, roi)


def _rtstruct_rois(ds: pydicom.Dataset | None, path: Path, reference: Volume,
                   roi: str | Sequence[str] | None) -> dict[str, Volume]:
    if ds is None or str(ds.get("SOPClassUID", "")) != _RTSTRUCT_UID:
        raise InputError("not a DICOM RTSTRUCT", source=path, where="SOPClassUID (0008,0016)")
    ref_for = (reference.meta.get("dicom") or {}).get("FrameOfReferenceUID")
    names = {int(r.ROINumber): str(r.ROIName) for r in ds.get("StructureSetROISequence", [])}
    for r in ds.get("StructureSetROISequence", []):
        f = str(r.get("ReferencedFrameOfReferenceUID", ""))
        if ref_for and f and f != ref_for:
            raise InputError(f"ROI '{r.ROIName}' is in frame of reference {f}, the image in {ref_for}",
                             source=path, where="ReferencedFrameOfReferenceUID (3006,0024)")
    wanted = None if roi is None else ([roi] if isinstance(roi, str) else list(roi))
    if wanted is not None:
        unknown = [w for w in wanted if w not in names.values()]
        if unknown:
            raise InputError(f"ROI {unknown} not found; the file has {sorted(names.values())}",
                             source=path, where="StructureSetROISequence (3006,0020)")
    out: dict[str, Volume] = {}
    for item in ds.get("ROIContourSequence", []):
        name = names.get(int(item.ReferencedROINumber), f"ROI {item.ReferencedROINumber}")
        if wanted is not None and name not in wanted:
            continue
        contours = [np.asarray(c.ContourData, dtype=float).reshape(-1, 3)
                    for c in item.get("ContourSequence", [])
                    if str(c.get("ContourGeometricType", "CLOSED_PLANAR")) == "CLOSED_PLANAR"]
        mask = _rasterise(contours, reference, path, name)
        out[name] = reference.with_array(mask, units="mask", roi=name, source=str(path))
    return out


def _rasterise(contours: list[np.ndarray], reference: Volume, path: Path, name: str) -> np.ndarray:
    ni, nj, nk = reference.shape
    mask = np.zeros(reference.shape, dtype=bool)
    planes: dict[int, list[tuple[float, np.ndarray]]] = {}
    for pts in contours:
        if len(pts) < 3:
            continue
        ijk = reference.world_to_index(pts)
        kc = float(ijk[:, 2].mean())
        if np.ptp(ijk[:, 2]) > 0.1:
            raise InputError(f"a contour of ROI '{name}' is not parallel to the image slices "
                             f"(spans {np.ptp(ijk[:, 2]):.2f} slices)", source=path,
                             where="ContourData (3006,0050)")
        k = int(np.floor(kc + 0.5))
        if 0 <= k < nk:
            planes.setdefault(k, []).append((kc, ijk[:, :2]))
    for k, items in planes.items():
        # Keep only the contour plane nearest the slice centre (several CT planes may map to one slice).
        best = min(abs(kc - k) for kc, _ in items)
        polys = [p for kc, p in items if abs(abs(kc - k) - best) < 1e-3]
        lo = np.floor(np.min([p.min(0) for p in polys], axis=0)).astype(int)
        hi = np.ceil(np.max([p.max(0) for p in polys], axis=0)).astype(int)
        lo = np.maximum(lo, 0)
        hi = np.minimum(hi, [ni - 1, nj - 1])
        if np.any(hi < lo):
            continue
        ii, jj = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1), indexing="ij")
        centres = np.column_stack([ii.ravel(), jj.ravel()])
        inside = np.zeros(len(centres), dtype=bool)
        for p in polys:
            inside ^= PolygonPath(p).contains_points(centres)  # even-odd: inner contours are holes
        mask[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, k] = inside.reshape(ii.shape)
    return mask


# ------------------------------------------------------------------------------------------------
# DICOM SEG
# ------------------------------------------------------------------------------------------------
def read_seg(path: str | Path, reference: Volume | None = None) -> Volume:
    """Read a DICOM SEG (highdicom) into a label Volume, on ``reference``'s grid when given.

    Overlapping segments are not supported (a voxel gets one label: the segment number).
    """
    import highdicom as hd

    path = Path(path)
    try:
        seg = hd.seg.segread(path)
    except Exception as exc:
        raise InputError(f"not a readable DICOM SEG ({exc})", source=path) from None
    try:
        # Scanner slice positions jitter by a few hundredths of a mm; accept what the reader accepts.
        # BINARY SEGs omit the empty frames of each segment: slices with no frame are background.
        hvol = seg.get_volume(combine_segments=True, relabel=False, rtol=SPACING_RTOL,
                              allow_missing_positions=True)
    except Exception as exc:
        raise InputError(f"the segmentation does not form a regular 3-D volume ({exc})",
                         source=path) from None
    vol = Volume.from_sitk(hvol.to_simpleitk())
    names = {int(s.SegmentNumber): str(s.SegmentLabel) for s in seg.SegmentSequence}
    vol = vol.with_array(np.asarray(vol.array, dtype=np.int32))
    if reference is not None:
        vol = resample_to(vol, reference, interpolation="nearest")
    return vol.with_array(np.asarray(vol.array, dtype=np.int32), labels=names, source=str(path),
                          units="label")


#: Display colours of the segments (matplotlib's tab10, cycled), so viewers show each lesion apart.
_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf")


def write_seg(labels: Volume, source_pet_dir: str | Path, path: str | Path, *,
              names: dict[int, str] | None = None, method: str | None = None,
              threshold: object = None, pseudonym: str | None = None, labelmap: bool = False) -> Path | None:
    """Write a label map as a DICOM SEG referencing the PET series it was drawn on.

    Parameters
    ----------
    labels : Volume
        Integer labels on the grid of the source PET series (0 = background, 1..n lesions).
    source_pet_dir : folder of the source PET series
    path : output file
    names : dict, optional
        Label -> segment label text (default ``lesion <n>``; RTSTRUCT ROI names are passed here).
    method : str, optional
        How the labels were made: a threshold method of :data:`carpet.segment.METHODS` (segment
        algorithm type AUTOMATIC) or ``None``/``'user_mask'`` for a reader's mask passed through (MANUAL).
    threshold : optional
        The method's threshold (SUV, or its text), written into the segment and series descriptions.
    pseudonym : str, optional
        De-identify (:mod:`carpet.io.deidentify`) with this pseudonym; ``None`` keeps the identity
        copied from the PET (``--keep-identity``).
    labelmap : bool
        Write the Label Map Segmentation SOP class (one frame per slice) instead of BINARY segments.
        Off by default: dciodvfy (dicom3tools) does not know the label-map class.

    Returns
    -------
    Path or None
        None when the label map holds no lesion: a SEG must hold at least one segment, and an empty
        segment would claim a finding that does not exist.

    Raises
    ------
    InputError
        ``labels`` is not on the PET grid, or holds negative values.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from carpet import __version__
    from carpet.io.deidentify import deidentify
    from carpet.io.dicom import _load

    arr = np.asarray(labels.array)
    if arr.size and arr.min() < 0:
        raise InputError("label maps must not hold negative values", source=path)
    series = _load(source_pet_dir)
    if not labels.same_grid(series.volume):
        raise InputError("the label map is not on the grid of the source PET series; resample it first",
                         source=source_pet_dir)
    values = [int(v) for v in np.unique(arr) if v > 0]
    if not values:
        return None
    # SEG segment numbers must run 1..n; renumber and keep the original value in the segment label.
    lut = np.zeros(int(arr.max()) + 1, dtype=np.uint16)
    lut[values] = np.arange(1, len(values) + 1)
    frames = lut[arr].transpose(2, 1, 0)  # (slice, row, column), in the sorted source order
    names = names or {}
    manual = method in (None, "user_mask")
    how = "reader's mask" if manual else f"{method}" + ("" if threshold is None else
                                                         f", SUV threshold {_threshold_text(threshold)}")
    algorithm = None if manual else hd.AlgorithmIdentificationSequence(
        # CID 7162 has no 'thresholding'; carpet's methods threshold voxels and join neighbours into
        # connected components: Neighborhood Analysis. Never 'Artificial Intelligence'.
        name=f"carpet {method}", version=__version__, family=codes.DCM.NeighborhoodAnalysis,
        parameters={"method": str(method), "threshold_suv": _threshold_text(threshold)})
    descriptions = []
    for n, v in enumerate(values, start=1):
        d = hd.seg.SegmentDescription(
            segment_number=n, segment_label=names.get(v, f"lesion {v}")[:64],
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Lesion,
            algorithm_type=(hd.seg.SegmentAlgorithmTypeValues.MANUAL if manual
                            else hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC),
            algorithm_identification=algorithm,
            display_color=hd.color.CIELabColor.from_string(_COLOURS[(n - 1) % len(_COLOURS)]))
        d.SegmentDescription = f"lesion {v}: {how}"[:64]
        descriptions.append(d)
    with warnings.catch_warnings():
        # highdicom checks the PatientName it copies and warns with the name in the text: that would put
        # the patient's name in carpet's log even when the SEG is about to carry a pseudonym.
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name",
                                category=UserWarning)
        seg = _segmentation(hd, series, frames, labelmap, descriptions, how)
    seg.ContentCreatorName = ""  # Type 2 (dcmqi warns when absent); no person made it, or it is not said
    if pseudonym is not None:
        deidentify(seg, pseudonym, series.headers[0])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(path)
    return path


def _segmentation(hd, series, frames, labelmap: bool, descriptions, how: str):
    """The highdicom Segmentation of ``frames`` (segment numbers) over the PET series ``series``."""
    from carpet import __version__

    return hd.seg.Segmentation(
        source_images=series.headers, pixel_array=frames,  # segment numbers: highdicom splits BINARY
        segmentation_type=(hd.seg.SegmentationTypeValues.LABELMAP if labelmap
                           else hd.seg.SegmentationTypeValues.BINARY),
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=900,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="carpet",
        manufacturer_model_name="carpet", software_versions=__version__, device_serial_number="0",
        series_description=f"carpet lesions: {how}"[:64], omit_empty_frames=not labelmap)


def _threshold_text(threshold: object) -> str:
    return f"{threshold:.4g}" if isinstance(threshold, (int, float)) else str(threshold or "")

