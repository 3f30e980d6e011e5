"""PET and CT DICOM series: discovery, grouping, geometric checks, pixel decoding, PET/CT pairing.

pydicom parses each file's header once, up to the pixel data (``stop_before_pixels``), and the
parse position is kept; the pixels of natively encoded series (nearly all PET and CT exports) are
then read from that offset straight into one reused slice buffer and rescaled into the preallocated
volume, so no file is parsed twice and no per-slice bytes object is made. Compressed or deflated
series (rare) are parsed again in full and decoded by pydicom's ``pixel_array``. On a 400-slice whole-body PET the header parse is
~80 % of the read time (``bench/read_dicom.py``, cProfile). No library does the geometric checks
carpet wants to report (uniform spacing, tilt, duplicates, each error naming the file and tag), so
they are written here.

Geometry follows :mod:`carpet.volume`: ``array[i, j, k]`` with ``i`` along the DICOM row direction
(column index), ``j`` along the column direction (row index) and ``k`` along the slice normal
``row_cosine × column_cosine``, slices sorted by their position projected on that normal.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.tag import BaseTag

from carpet.errors import InputError
from carpet.volume import Volume, resample_to

#: Largest distance of a slice from its place on the uniform grid, as a fraction of the slice spacing.
SPACING_RTOL = 0.1
#: Largest in-plane offset (mm) between consecutive slices before the series counts as tilted.
TILT_TOL_MM = 0.05

# Native (unencapsulated, not deflated) pixel data: stored values are the file's bytes.
_UNCOMPRESSED = {pydicom.uid.ImplicitVRLittleEndian, pydicom.uid.ExplicitVRLittleEndian,
                 pydicom.uid.ExplicitVRBigEndian}
_IMAGE_MODALITIES = {"PT", "CT", "MR", "NM"}
_TRANSFER_SYNTAX = BaseTag(0x00020010)


@functools.cache
def _tag(keyword: str) -> BaseTag:
    """The tag of a keyword, looked up once: pydicom resolves keywords on every access, which cost
    more than parsing the files for the per-slice attributes of a 400-slice series (measured)."""
    return BaseTag(tag_for_keyword(keyword))


def _raw(ds: Dataset, keyword: str) -> Any:
    """An attribute's value as stored (bytes until pydicom has converted it), None when absent."""
    elem = ds.get_item(_tag(keyword))
    return None if elem is None else elem.value


def _str(value: Any) -> str:
    """Text of a raw or converted string value (CS, UI, ...), padding removed."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return "" if value is None else str(value).strip(" \x00")


@dataclass
class SeriesInfo:
    """One DICOM series found in a folder (header facts only, no pixels)."""

    series_uid: str
    modality: str
    files: list[Path] = field(repr=False)
    study_uid: str = ""
    frame_of_reference_uid: str = ""
    description: str = ""

    def __str__(self) -> str:
        # No SeriesDescription: free text from headers can name the patient or the site, and this
        # text reaches error messages, errors.csv and logs.
        return f"{self.modality} series {self.series_uid} ({len(self.files)} files, in {self.files[0].parent})"


#: Per-slice factors from the sorted slice headers (e.g. the SUV factors of :mod:`carpet.suv`).
SliceScale = Callable[[list[Dataset]], Sequence[float]]


@dataclass
class _Series:
    """A read series: the volume plus the sorted per-slice headers the SUV rules need."""

    volume: Volume
    headers: list[Dataset] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------
# discovery
# ------------------------------------------------------------------------------------------------
def _candidate_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError("no such file or folder", source=path)
    return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))


def _read_file(path: Path, *, pixels: bool = False) -> tuple[Dataset, int] | None:
    """Parse one file (up to its pixel data unless ``pixels``) and return the dataset and the file
    offset where parsing stopped (the pixel data element); ``None`` when the file is not DICOM at all,
    InputError when it is broken."""
    try:
        with open(path, "rb") as fh:
            ds = pydicom.dcmread(fh, stop_before_pixels=not pixels)
            return ds, fh.tell()
    except InvalidDicomError:
        return None  # README, thumbnails, DICOMDIR-less junk: not part of any series
    except Exception as exc:  # pydicom raises many types on truncated/corrupt files
        raise InputError(f"cannot parse the DICOM file ({type(exc).__name__}: {exc}); "
                         "the file is probably truncated or corrupt", source=path) from None


#: Suffixes of DICOM files; a file with one of these that is not DICOM is a broken slice, not junk.
_DICOM_SUFFIXES = {".dcm", ".dicom", ".ima"}


def _parse_files(files: Sequence[Path]) -> dict[Path, tuple[Dataset, int]]:
    """Parse every file's header; files that are not DICOM are skipped, except those that look like
    a broken member of a series beside them: skipping those would silently drop a slice (a missing
    first or last slice moves the origin without any spacing error)."""
    parsed, skipped = {}, []
    for p in files:
        r = _read_file(p)
        if r is None:
            skipped.append(p)
        else:
            parsed[p] = r
    folders = {}
    for p in parsed:
        folders.setdefault(p.parent, set()).add(_suffix_class(p))
    for p in skipped:
        siblings = folders.get(p.parent)
        if siblings is None:
            continue  # no DICOM beside it: an unrelated file
        size = p.stat().st_size
        if size == 0 or _suffix_class(p) in _DICOM_SUFFIXES or (
                _suffix_class(p) in siblings and _looks_binary(p)):
            what = "is empty (0 bytes)" if size == 0 else f"is not a readable DICOM file ({size} bytes)"
            raise InputError(f"{what} although it sits among the DICOM files of a series: a truncated "
                             "or failed copy; reading on without it would drop a slice and shift the "
                             "volume", source=p, hint="copy the series again, or remove the file if it "
                                                      "does not belong to the series")
    return parsed


def _suffix_class(path: Path) -> str:
    """The file's suffix, '' for none or a numeric one (GE and Siemens name files by UID)."""
    suffix = path.suffix.lower()
    return "" if not suffix or suffix[1:].isdigit() else suffix


def _looks_binary(path: Path) -> bool:
    """A file starting with NUL bytes (the DICOM preamble) rather than text."""
    with open(path, "rb") as fh:
        head = fh.read(128)
    return b"\x00" in head


def _group(datasets: Iterable[tuple[Path, Dataset]]) -> dict[str, list[tuple[Path, Dataset]]]:
    groups: dict[str, list[tuple[Path, Dataset]]] = {}
    for path, ds in datasets:
        uid = _str(_raw(ds, "SeriesInstanceUID"))
        if not uid:
            raise InputError("missing SeriesInstanceUID (0020,000E)", source=path)
        groups.setdefault(uid, []).append((path, ds))
    return groups


def _info(uid: str, members: list[tuple[Path, Dataset]]) -> SeriesInfo:
    ds = members[0][1]
    return SeriesInfo(series_uid=uid, modality=str(ds.get("Modality", "")),
                      files=[p for p, _ in members], study_uid=str(ds.get("StudyInstanceUID", "")),
                      frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "")),
                      description=str(ds.get("SeriesDescription", "")))


def find_series(folder: str | Path) -> list[SeriesInfo]:
    """List the DICOM series below ``folder`` (headers only, pixel data not read).

    Files that are not DICOM are ignored; files that look like DICOM but cannot be parsed raise.

    Returns
    -------
    list of SeriesInfo
        One entry per SeriesInstanceUID, sorted by modality then UID.
    """
    folder = Path(folder)
    found = [(p, r[0]) for p, r in _parse_files(_candidate_files(folder)).items()]
    if not found:
        raise InputError("no DICOM files found", source=folder)
    infos = [_info(uid, m) for uid, m in _group(found).items()]
    return sorted(infos, key=lambda s: (s.modality, s.series_uid))


# ------------------------------------------------------------------------------------------------
# pixels and geometry
# ------------------------------------------------------------------------------------------------
_PIXEL_FORMAT = (("Rows", "0028,0010"), ("Columns", "0028,0011"), ("SamplesPerPixel", "0028,0002"),
                 ("BitsAllocated", "0028,0100"), ("BitsStored", "0028,0101"),
                 ("PixelRepresentation", "0028,0103"), ("NumberOfFrames", "0028,0008"))


def _pixel_format(members: Sequence[tuple[Path, Dataset]]) -> tuple[int, int, np.dtype | None, str]:
    """Rows, columns, the numpy dtype for the fast path (None: let pydicom decode) and the transfer
    syntax, checked once.

    Every slice must share the format (compared on the undecoded bytes); the fast path (stored bytes
    used as they are) needs a native transfer syntax and every allocated bit to be a pixel bit
    (otherwise pydicom masks and sign-extends).
    """
    for kw, tag in _PIXEL_FORMAT:
        _check_same(members, kw, tag)
    path, ds = members[0]
    if int(ds.get("NumberOfFrames", 1) or 1) != 1:
        raise InputError("multi-frame (enhanced) images are not supported; export the series as "
                         "single-frame slices", source=path, where="NumberOfFrames (0028,0008)")
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise InputError("expected a grey-scale image", source=path, where="SamplesPerPixel (0028,0002)")
    syntaxes = {_transfer_syntax(m) for _, m in members}
    bits = int(ds.BitsAllocated)
    if len(syntaxes) != 1 or not syntaxes <= _UNCOMPRESSED or bits not in (8, 16, 32) \
            or int(ds.get("BitsStored", bits)) != bits:
        return int(ds.Rows), int(ds.Columns), None, ""
    dtype = np.dtype(f"{'i' if int(ds.get('PixelRepresentation', 0)) == 1 else 'u'}{bits // 8}")
    if syntaxes == {pydicom.uid.ExplicitVRBigEndian}:
        dtype = dtype.newbyteorder(">")
    return int(ds.Rows), int(ds.Columns), dtype, syntaxes.pop()


def _transfer_syntax(ds: Dataset) -> pydicom.uid.UID:
    meta = getattr(ds, "file_meta", None)
    elem = meta.get_item(_TRANSFER_SYNTAX) if meta is not None else None
    syntax = _str(elem.value) if elem is not None else ""
    return pydicom.uid.UID(syntax) if syntax else pydicom.uid.ImplicitVRLittleEndian


def _pixels(ds: Dataset, path: Path, rows: int, cols: int, dtype: np.dtype | None) -> np.ndarray:
    """Stored values of one single-frame slice as a (rows, columns) array, before rescaling."""
    raw = _raw(ds, "PixelData")  # the bytes, without pydicom's element conversion
    if raw is None:
        raise InputError("the file holds no pixel data (truncated?)", source=path,
                         where="PixelData (7FE0,0010)")
    if dtype is not None:
        _check_length(len(raw), rows, cols, dtype, path)
        return np.frombuffer(raw, dtype=dtype, count=rows * cols).reshape(rows, cols)
    try:
        return np.asarray(ds.pixel_array).reshape(rows, cols)
    except Exception as exc:
        raise InputError(f"cannot decode the pixel data ({exc})", source=path,
                         where="PixelData (7FE0,0010)") from None


def _check_length(n_bytes: int, rows: int, cols: int, dtype: np.dtype, path: Path) -> None:
    need = rows * cols * dtype.itemsize
    if n_bytes < need:
        raise InputError(f"pixel data holds {n_bytes} bytes, {need} expected for "
                         f"{rows}×{cols}×{dtype.itemsize * 8} bit: the file is truncated",
                         source=path, where="PixelData (7FE0,0010)")


def _read_pixels_at(path: Path, offset: int, syntax: str, out: np.ndarray) -> np.ndarray:
    """Read one slice's stored values from the file straight into ``out`` (rows × columns, stored dtype).

    ``offset`` is where the header parse stopped: the pixel data element, whose header is 8 bytes
    (tag, 4-byte length) in implicit VR and 12 in explicit VR (tag, OB/OW, 2 reserved, 4-byte length).
    It is read here rather than by pydicom so that the values land in one reused buffer instead of a
    new bytes object per slice, and so that no file is parsed twice.
    """
    implicit = syntax == pydicom.uid.ImplicitVRLittleEndian
    endian = ">" if syntax == pydicom.uid.ExplicitVRBigEndian else "<"
    with open(path, "rb") as fh:
        fh.seek(offset)
        size = 8 if implicit else 12
        head = fh.read(size)
        if len(head) < size or struct.unpack_from(endian + "HH", head) != (0x7FE0, 0x0010):
            raise InputError("the file holds no pixel data (truncated?)", source=path,
                             where="PixelData (7FE0,0010)")
        (length,) = struct.unpack_from(endian + "L", head, size - 4)
        rows, cols = out.shape
        _check_length(length, rows, cols, out.dtype, path)
        _check_length(fh.readinto(out), rows, cols, out.dtype, path)
    return out


def _numbers(ds: Dataset, keyword: str) -> list[float] | None:
    """Numeric (DS/IS/FD) values of an attribute, parsed from the raw bytes when still raw.

    pydicom's DS conversion (validation, DSfloat objects) cost a third of the read time of a 400-slice
    series; the geometry and rescale attributes are read directly from the undecoded element.
    """
    elem = ds.get_item(_tag(keyword))
    if elem is None:
        return None
    value = elem.value
    if isinstance(value, bytes):
        text = value.decode("ascii", "replace").strip(" \x00")
        if not text:
            return []
        try:
            return [float(v) for v in text.split("\\")]
        except ValueError:
            value = ds[keyword].value  # let pydicom decode odd encodings (binary FD, ...)
    if value is None or value == "":
        return []
    return [float(v) for v in value] if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) \
        else [float(value)]


def _float_list(ds: Dataset, keyword: str, tag: str, n: int, path: Path) -> np.ndarray:
    value = _numbers(ds, keyword)
    if value is None or len(value) != n:
        raise InputError(f"missing or malformed (expected {n} numbers, got {value!r})",
                         source=path, where=f"{keyword} ({tag})")
    return np.asarray(value)


def _number(ds: Dataset, keyword: str, default: float) -> float:
    value = _numbers(ds, keyword)
    return value[0] if value else default


def _check_same(members: Sequence[tuple[Path, Dataset]], keyword: str, tag: str) -> None:
    first_path, first = members[0]
    ref = _raw(first, keyword)  # compare undecoded bytes: decoding 400 slices costs more than reading them
    for path, ds in members[1:]:
        if _raw(ds, keyword) != ref and ds.get(keyword) != first.get(keyword):
            ref = first.get(keyword)
            raise InputError(f"differs within the series ({ds.get(keyword)!r} here, {ref!r} in "
                             f"{first_path.name}): mixed series cannot form one volume",
                             source=path, where=f"{keyword} ({tag})")


def _geometry(members: list[tuple[Path, Dataset]]) -> tuple[list[int], tuple[float, float, float],
                                                           np.ndarray, np.ndarray]:
    """Sort slices along their normal and check the grid; return order, spacing, origin, direction."""
    path0, ds0 = members[0]
    iops = np.array([_float_list(ds, "ImageOrientationPatient", "0020,0037", 6, p) for p, ds in members])
    iop = iops[0]
    differs = np.flatnonzero(~np.isclose(iops, iop, rtol=1e-5, atol=1e-4).all(axis=1))
    if differs.size:
        raise InputError(f"slice orientation differs from {path0.name}: inconsistent orientation "
                         "within one series", source=members[differs[0]][0],
                         where="ImageOrientationPatient (0020,0037)")
    row_cos, col_cos = iop[:3], iop[3:]
    normal = np.cross(row_cos, col_cos)
    positions = np.array([_float_list(ds, "ImagePositionPatient", "0020,0032", 3, p)
                          for p, ds in members])
    proj = positions @ normal
    order = np.argsort(proj, kind="stable")
    proj, positions = proj[order], positions[order]
    names = [members[i][0] for i in order]
    ps = _float_list(ds0, "PixelSpacing", "0028,0030", 2, path0)
    _check_same(members, "PixelSpacing", "0028,0030")
    if len(members) == 1:
        dz = float(ds0.get("SpacingBetweenSlices") or ds0.get("SliceThickness") or 1.0)
    else:
        steps = np.diff(proj)
        dup = np.flatnonzero(steps < 1e-3)
        if dup.size:
            a, b = names[dup[0]], names[dup[0] + 1]
            raise InputError(f"two slices share the position {proj[dup[0]]:.3f} mm along the slice "
                             f"normal ({a.name} and {b.name}): duplicate files, or several time frames "
                             "or series mixed in one folder", source=b.parent,
                             where="ImagePositionPatient (0020,0032)")
        # Mean spacing keeps the first and last slice exact; scanners jitter positions by a few
        # hundredths of a mm (GE Discovery ST: 3.19-3.29 mm steps around 3.27), so each slice only has
        # to lie within SPACING_RTOL of a voxel from its place on the uniform grid.
        dz = float((proj[-1] - proj[0]) / (len(proj) - 1))
        off = np.abs(proj - (proj[0] + dz * np.arange(len(proj))))
        if off.max() > SPACING_RTOL * dz:
            s = int(np.argmax(np.abs(steps - dz)))
            raise InputError(f"non-uniform slice spacing: {steps[s]:.3f} mm between {names[s].name} "
                             f"and {names[s + 1].name}, {dz:.3f} mm on average; a slice lies "
                             f"{off.max():.3f} mm off the uniform grid (missing slice?)",
                             source=names[s].parent, where="ImagePositionPatient (0020,0032)")
        # Displacement between slices must be along the normal; an in-plane part means a tilted gantry
        # (or sheared grid) that a Volume cannot represent without resampling.
        d = positions[-1] - positions[0]
        inplane = np.linalg.norm(d - (d @ normal) * normal) / (len(members) - 1)
        if inplane > TILT_TOL_MM:
            tilt = ds0.get("GantryDetectorTilt", "?")
            raise InputError(f"slices are offset in-plane by {inplane:.3f} mm per slice (gantry tilt "
                             f"{tilt}°): tilted acquisitions are not supported; reconstruct without "
                             "tilt or resample first", source=path0.parent,
                             where="ImagePositionPatient (0020,0032) / GantryDetectorTilt (0018,1120)")
    spacing = (float(ps[1]), float(ps[0]), dz)
    direction = np.column_stack([row_cos, col_cos, normal])
    return [int(i) for i in order], spacing, positions[0], direction


def _build(members: list[tuple[Path, Dataset]], source: Path,
           pixel_offsets: dict[Path, int] | None = None, scale: SliceScale | None = None) -> _Series:
    """Turn one series' datasets into a Volume (rescaled values) plus sorted headers.

    With ``pixel_offsets`` (files carpet parsed up to their pixel data) the pixels are read from the
    files at those offsets; without, they come from the datasets' PixelData (datasets a caller
    passed in, never modified). ``scale`` maps the sorted headers to one factor per slice that
    multiplies the rescaled values (float32 output).
    """
    modalities = {_str(_raw(ds, "Modality")) for _, ds in members}
    if len(modalities) > 1:
        raise InputError(f"mixed modalities {sorted(modalities)} in one series", source=source,
                         where="Modality (0008,0060)")
    modality = modalities.pop()
    if modality not in _IMAGE_MODALITIES:
        raise InputError(f"modality {modality!r} is not an image series (expected PT or CT)",
                         source=members[0][0], where="Modality (0008,0060)")
    rows, cols, dtype, syntax = _pixel_format(members)
    order, spacing, origin, direction = _geometry(members)
    members = [members[i] for i in order]
    slopes = np.array([_number(ds, "RescaleSlope", 1.0) for _, ds in members])
    inters = np.array([_number(ds, "RescaleIntercept", 0.0) for _, ds in members])
    if modality == "PT" and np.any(inters != 0):
        k = int(np.flatnonzero(inters != 0)[0])
        raise InputError(f"RescaleIntercept is {inters[k]} but must be 0 for PET (QIBA/IBSI SUV "
                         "manual): the activity values cannot be trusted", source=members[k][0],
                         where="RescaleIntercept (0028,1052)")
    if modality == "PT" and np.any(slopes <= 0):
        k = int(np.flatnonzero(slopes <= 0)[0])
        raise InputError(f"RescaleSlope is {slopes[k]} but must be positive for PET: activity is not "
                         "negative", source=members[k][0], where="RescaleSlope (0028,1053)")
    n_slopes = int(np.unique(slopes).size)
    if scale is not None:
        # Folded into the rescale so that the conversion (SUV) costs no second pass over the voxels.
        factors = np.asarray(scale([ds for _, ds in members]), dtype=float)
        slopes, inters = slopes * factors, inters * factors
    integral = scale is None and bool(np.all(slopes == 1) and np.all(inters == np.round(inters)))
    # Fill a contiguous (k, row, column) buffer and expose it as the [i, j, k] view (as
    # Volume.from_sitk does): writing px.T into [:, :, k] would stride through memory (3x slower).
    # CT with unit slope stays integer HU (int16 when it fits), everything else is float32.
    buf = np.empty((len(members), rows, cols), dtype=np.int16 if integral else np.float32)
    scratch = np.empty((rows, cols), dtype) if dtype is not None else None
    for k, (path, ds) in enumerate(members):
        if pixel_offsets is None:
            px = _pixels(ds, path, rows, cols, dtype)
        elif dtype is not None:
            px = _read_pixels_at(path, pixel_offsets[path], syntax, scratch)
        else:  # compressed or deflated (rare for PET/CT): pydicom parses the whole file to decode it
            px = _pixels(_read_file(path, pixels=True)[0], path, rows, cols, None)
        if integral:
            inter = int(inters[k])
            if buf.dtype == np.int16 and not (-32768 <= int(px.min()) + inter
                                              and int(px.max()) + inter <= 32767):
                buf = buf.astype(np.int32)
            # The sum fits the output (checked above), so adding in the output's own type is exact
            # even where the intermediate wraps; a wider scalar would widen the whole slice (3x slower).
            info = np.iinfo(buf.dtype)
            same = px.dtype == buf.dtype and info.min <= inter <= info.max
            np.add(px, buf.dtype.type(inter) if same else np.int64(inter), out=buf[k], casting="unsafe")
        else:
            np.multiply(px, np.float32(slopes[k]), out=buf[k])
            if inters[k]:
                buf[k] += np.float32(inters[k])
    arr = buf.transpose(2, 1, 0)
    ds0 = members[0][1]
    facts = {kw: _plain(ds0.get(kw)) for kw in (
        "Manufacturer", "ManufacturerModelName", "SeriesDescription", "StudyInstanceUID",
        "FrameOfReferenceUID", "Units", "DecayCorrection", "SeriesDate", "SeriesTime")
        if ds0.get(kw) is not None}
    facts.update(n_slices=len(members), n_rescale_slopes=n_slopes)
    meta = {"modality": modality, "series_uid": str(ds0.SeriesInstanceUID), "source": str(source),
            "units": "HU" if modality == "CT" else str(ds0.get("Units", "")), "dicom": facts}
    vol = Volume(arr, spacing, tuple(origin), direction, meta)
    return _Series(vol, [ds for _, ds in members])


def _plain(value: Any) -> Any:
    return value if isinstance(value, (int, float)) else str(value)


# ------------------------------------------------------------------------------------------------
# public readers
# ------------------------------------------------------------------------------------------------
def _load(path: str | Path | Sequence[Dataset], series_uid: str | None = None,
          modality: str | None = None, scale: SliceScale | None = None) -> _Series:
    """Read one series (pixels and sorted headers) from a folder, a file list or datasets; ``scale``
    as in :func:`_build`."""
    own = isinstance(path, (str, Path)) or (len(path) and isinstance(path[0], (str, Path)))
    if own:
        files = _candidate_files(Path(path)) if isinstance(path, (str, Path)) else [Path(p) for p in path]
        source = Path(path) if isinstance(path, (str, Path)) else files[0].parent
        parsed = _parse_files(files)
        if not parsed:
            raise InputError("no DICOM files found", source=source)
        found = [(p, ds) for p, (ds, _) in parsed.items()]
        offsets = {p: offset for p, (_, offset) in parsed.items()}
    else:
        found = [(Path(getattr(ds, "filename", None) or f"dataset {n}"), ds) for n, ds in enumerate(path)]
        source = found[0][0].parent if found else Path(".")
        offsets = None
    groups = _group(found)
    if series_uid is not None:
        if series_uid not in groups:
            raise InputError(f"series {series_uid} not found; found {sorted(groups)}", source=source)
        groups = {series_uid: groups[series_uid]}
    listing = "; ".join(str(_info(u, m)) for u, m in groups.items()) or "none"
    if modality is not None:
        groups = {u: m for u, m in groups.items() if str(m[0][1].get("Modality", "")) == modality}
    images = {u: m for u, m in groups.items()
              if str(m[0][1].get("Modality", "")) in _IMAGE_MODALITIES}
    if len(images) != 1:
        raise InputError(f"expected exactly one {modality or 'image'} series, found {len(images)} "
                         f"(series found: {listing})", source=source,
                         hint="point to the folder of a single series, or pass series_uid=")
    (members,) = images.values()
    return _build(members, source, offsets, scale)


def read_series(path: str | Path | Sequence[str | Path] | Sequence[Dataset], *, series_uid: str | None = None) -> Volume:
    """Read one PET or CT DICOM series into a :class:`~carpet.volume.Volume`.

    Parameters
    ----------
    path : folder, file, list of files, or sequence of pydicom Datasets
        Everything below a folder is scanned; non-DICOM files are ignored.
    series_uid : str, optional
        Which series to read when the folder holds several.

    Returns
    -------
    Volume
        CT in HU (int16 when the rescale is integral), PET as float32 stored values × RescaleSlope
        (slice by slice) in the series' ``Units`` — *not* SUV (see :func:`carpet.suv.to_suv`).
        ``meta`` holds ``modality``, ``series_uid``, ``source``, ``units`` and ``dicom`` (header facts,
        no patient identifiers).

    Raises
    ------
    InputError
        Several series and no ``series_uid``; inconsistent orientation, pixel spacing or size; non-uniform
        slice spacing; duplicate slice positions; gantry tilt; mixed modalities; PET RescaleIntercept ≠ 0;
        truncated or undecodable files. Each names the file and tag.
    """
    return _load(path, series_uid).volume


def read_pet_ct(folder: str | Path, *, resample_ct: bool = True) -> tuple[Volume, Volume | None]:
    """Read the PET (in SUVbw) and, if present, the matching CT of one study folder.

    PET and CT are paired by FrameOfReferenceUID, else by StudyInstanceUID. With ``resample_ct`` the
    CT is resampled onto the PET grid (linear, -1024 HU outside the CT field of view).

    Raises
    ------
    InputError
        No PET series, or several PET/CT series that cannot be paired unambiguously (the message
        lists the series found).
    """
    from carpet.suv import to_suv

    folder = Path(folder)
    series = find_series(folder)
    pets = [s for s in series if s.modality == "PT"]
    cts = [s for s in series if s.modality == "CT"]
    listing = "; ".join(str(s) for s in series)
    if len(pets) != 1:
        raise InputError(f"expected one PET series, found {len(pets)} (series: {listing})", source=folder,
                         hint="point to a folder holding one PET series and its CT")
    pet_info = pets[0]
    pet, _ = to_suv(pet_info.files)
    match = ([c for c in cts if c.frame_of_reference_uid
              and c.frame_of_reference_uid == pet_info.frame_of_reference_uid]
             or [c for c in cts if c.study_uid and c.study_uid == pet_info.study_uid])
    if not match:
        if cts:
            raise InputError(f"no CT shares the PET's FrameOfReferenceUID or StudyInstanceUID "
                             f"(series: {listing})", source=folder)
        return pet, None
    if len(match) > 1:
        raise InputError(f"several CT series match the PET (series: {listing})", source=folder,
                         hint="put the CT to use in its own folder and pass it with --ct")
    ct = read_series(match[0].files)
    if resample_ct:
        ct = resample_to(ct, pet, interpolation="linear", default_value=-1024)
    return pet, ct
