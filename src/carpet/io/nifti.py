"""NIfTI in and out. LPS geometry as SimpleITK gives it (it converts NIfTI's RAS to carpet's LPS).

Reading: a plain NIfTI-1 file (3-D scalar, native byte order, no scaling) is decoded here — the file's bytes
read once, gzip inflated by libdeflate (from the ``deflate`` wheel) when the stream is one member holding
exactly the bytes the header announces, else by ISA-L (``isal``; both several times faster than zlib, both
release the GIL), the voxels a view of the inflated bytes — and its geometry is SimpleITK's own, from a
header-only read, so that it is exactly what ``SimpleITK.ReadImage`` would give. Anything else (scaled values,
4-D, vector or byte-swapped voxels, NIfTI-2, a damaged or truncated file) is read by SimpleITK as before, with
the same checks and messages.
"""

from __future__ import annotations

import functools
import gzip
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from carpet.errors import InputError
from carpet.volume import Volume

#: NIfTI-1 datatype codes decoded here, with the SimpleITK pixel type ITK reads them as.
_PLAIN_TYPES = {2: ("u1", "sitkUInt8"), 256: ("i1", "sitkInt8"), 4: ("<i2", "sitkInt16"), 512: ("<u2", "sitkUInt16"),
                8: ("<i4", "sitkInt32"), 768: ("<u4", "sitkUInt32"), 1024: ("<i8", "sitkInt64"),
                1280: ("<u8", "sitkUInt64"), 16: ("<f4", "sitkFloat32"), 64: ("<f8", "sitkFloat64")}
_HEADER_BYTES = 348


def read_nifti(path: str | Path, *, on_bytes: Callable[[memoryview], Any] | None = None, **meta: Any) -> Volume:
    """Read a NIfTI file (``.nii`` or ``.nii.gz``) into a :class:`~carpet.volume.Volume`.

    The array is read-only (a view of the decoded file), indexed ``[i, j, k]`` as everywhere in carpet.

    Parameters
    ----------
    on_bytes : callable, optional
        Called once with the file's bytes as read (a read-only buffer), before decoding (e.g. to hash them
        without reading the file a second time).

    Raises
    ------
    InputError
        If the file is missing, unreadable, truncated, not 3-D, has a voxel size of 0 or NaN/infinite voxels.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", source=path)
    try:
        raw = _read_file(path)
    except OSError:  # SimpleITK's reader says what is wrong
        raw = None
    if raw is not None and on_bytes is not None:
        on_bytes(raw)
    fast = None if raw is None else _read_plain(path, raw, meta)
    return fast if fast is not None else _read_sitk(path, meta)


def _read_file(path: Path) -> memoryview:
    """The file's bytes, read once into a numpy buffer (which numpy asks the kernel to back with huge pages:
    a 91-MB CT is read in half the time ``Path.read_bytes`` takes, whose 4-KB pages each fault once)."""
    with open(path, "rb", buffering=0) as fh:
        buf = np.empty(os.fstat(fh.fileno()).st_size, np.uint8)
        view, got = memoryview(buf), 0
        while got < len(buf) and (n := fh.readinto(view[got:])):  # one read() returns at most ~2 GiB
            got += n
    return view[:got].toreadonly()


def _read_plain(path: Path, raw: memoryview, meta: dict) -> Volume | None:
    """The volume decoded from ``raw`` (the file's bytes) when the file is a plain NIfTI-1 image that
    SimpleITK reads as the bytes stand; None for anything else, or a truncated or damaged file (then
    :func:`_read_sitk` reads it, or says what is wrong)."""
    import nibabel as nib

    gz = path.name.endswith(".gz")
    head = _gunzip(raw[:1 << 16], _HEADER_BYTES) if gz else raw[:_HEADER_BYTES]
    if head is None or len(head) < _HEADER_BYTES or head[344:348] != b"n+1\0" \
            or int.from_bytes(head[:4], "little") != _HEADER_BYTES:
        return None  # not NIfTI-1 in one file, NIfTI-2, or big-endian
    header = nib.Nifti1Header.from_fileobj(io.BytesIO(head), check=False)
    plain = _PLAIN_TYPES.get(int(header["datatype"]))
    dim, offset = header["dim"], float(header["vox_offset"])
    slope, inter = float(header["scl_slope"]), float(header["scl_inter"])
    if (plain is None or int(dim[0]) != 3 or min(dim[1:4]) < 1 or offset < 352 or offset != int(offset)
            or (np.isfinite(slope) and slope not in (0.0, 1.0)) or (np.isfinite(inter) and inter != 0.0)):
        return None  # ITK scales (a slope of 0 or NaN means none), or not 3-D scalar voxels
    _check_voxel_size(header, path)
    shape, dtype = tuple(int(n) for n in dim[1:4]), np.dtype(plain[0])
    end = int(offset) + int(np.prod(shape)) * dtype.itemsize
    data = _inflate(raw, end) if gz else raw
    if data is None or len(data) < end:
        return None
    geometry = _sitk_geometry(path, shape, plain[1])
    if geometry is None:
        return None
    # NIfTI stores i fastest: the (k, j, i) C-order array transposed, the layout Volume.from_sitk gives
    array = np.frombuffer(data, dtype, count=int(np.prod(shape)), offset=int(offset))
    array = array.reshape(shape[::-1]).transpose(2, 1, 0)
    array.flags.writeable = False  # as from SimpleITK (libdeflate's buffer is writable)
    if dtype.kind == "f":
        _check_finite(array, path)
    return Volume(array, *geometry, dict(source=str(path), **meta))


def _inflate(raw: memoryview, size: int) -> np.ndarray | bytes | None:
    """The whole gzip stream ``raw`` inflated, which should hold ``size`` bytes (header and voxels); None when
    it is damaged or ends early.

    libdeflate (0.35 CPU-s for the bench's 210-MB CT, ISA-L 0.5) inflates only the first member of a stream,
    into a buffer sized beforehand, so it is used only when that is provably the whole answer: the stream's
    last 4 bytes (the trailer's ISIZE) announce ``size`` — the size the NIfTI header announces —, libdeflate
    checks the member's own CRC-32 and ISIZE against what it inflated and refuses a member that does not fit
    in ``size`` bytes, and the result must be exactly ``size`` bytes. Anything else (several members, bytes
    after the last one, a damaged stream) is inflated by :func:`_gunzip`."""
    if int.from_bytes(raw[-4:], "little") == size % 2**32:
        data = _libdeflate(raw, size)
        if data is not None and len(data) == size:
            return data
    return _gunzip(raw, None)


def _libdeflate(raw: memoryview, size: int) -> np.ndarray | None:
    """The first member of the gzip stream ``raw`` inflated by libdeflate into a new numpy buffer of ``size``
    bytes (huge pages, see :func:`_read_file`: 0.04 s less than the ``deflate`` wrapper's own bytearray for a
    210-MB CT), or only as many bytes as the member holds; None when libdeflate refuses the stream (damaged,
    CRC-32 or ISIZE not matching, or more than ``size`` bytes) or is not at hand."""
    import ctypes

    api = _libdeflate_api()
    if api is None:
        return None
    alloc, free, gzip_decompress = api
    src, out, got = np.frombuffer(raw, np.uint8), np.empty(size, np.uint8), ctypes.c_size_t()
    decompressor = alloc()
    if not decompressor:
        return None
    try:  # ctypes releases the GIL for the call
        result = gzip_decompress(decompressor, src.ctypes.data, src.size, out.ctypes.data, size, ctypes.byref(got))
    finally:
        free(decompressor)
    return out[:got.value] if result == 0 else None  # 0: LIBDEFLATE_SUCCESS


@functools.cache
def _libdeflate_api():
    """libdeflate's C functions (alloc, free, gzip_decompress) from the extension of the ``deflate`` wheel,
    which links libdeflate in and exports its API (checked on the 0.9.0 manylinux wheels, x86_64 and
    aarch64); None where it does not (then ISA-L inflates everything). The wrapper's Python function cannot
    inflate into a buffer of ours."""
    import ctypes

    from deflate import _deflate

    try:
        lib = ctypes.CDLL(_deflate.__file__)
        alloc, free = lib.libdeflate_alloc_decompressor, lib.libdeflate_free_decompressor
        gzip_decompress = lib.libdeflate_gzip_decompress
    except (OSError, AttributeError):
        return None
    alloc.argtypes, alloc.restype = [], ctypes.c_void_p
    free.argtypes, free.restype = [ctypes.c_void_p], None
    gzip_decompress.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t,
                                ctypes.POINTER(ctypes.c_size_t)]
    gzip_decompress.restype = ctypes.c_int
    return alloc, free, gzip_decompress


def _gunzip(raw: memoryview | bytes, max_bytes: int | None) -> bytes | None:
    """Inflate every member of the gzip stream ``raw`` (ISA-L), or only its first ``max_bytes``; None when
    the stream is damaged or ends early. What follows the last member, when it is not another gzip member,
    is ignored, as zlib's ``gzread`` (SimpleITK's reader) ignores it."""
    from isal import isal_zlib

    parts = []
    try:
        if max_bytes is not None:
            return isal_zlib.decompressobj(31).decompress(raw, max_bytes)
        while True:
            inflate = isal_zlib.decompressobj(31)
            parts.append(inflate.decompress(raw))
            if not inflate.eof:
                return None
            raw = inflate.unused_data
            if raw[:2] != b"\x1f\x8b":
                return parts[0] if len(parts) == 1 else b"".join(parts)
    except isal_zlib.error:
        return None


def _sitk_geometry(path: Path, shape: tuple, pixel: str):
    """(spacing, origin, direction) exactly as ``SimpleITK.ReadImage`` gives them, from SimpleITK's
    header-only read of the file (its qform/sform rules, not ours); None when SimpleITK would read other
    voxels than the file's (another size, pixel type or dimension) or cannot read the header."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetImageIO("NiftiImageIO")
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    if (reader.GetDimension() != 3 or reader.GetNumberOfComponents() != 1 or tuple(reader.GetSize()) != shape
            or reader.GetPixelID() != getattr(sitk, pixel)):
        return None
    return reader.GetSpacing(), reader.GetOrigin(), np.asarray(reader.GetDirection(), dtype=float).reshape(3, 3)


def _read_sitk(path: Path, meta: dict) -> Volume:
    """Read through SimpleITK, after the checks SimpleITK does not make (see :func:`_check_header`)."""
    import SimpleITK as sitk

    header = _check_header(path)
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
        raise InputError(f"not a readable NIfTI image ({first})", source=path) from None
    if img.GetDimension() == 4 and img.GetSize()[3] == 1:
        img = img[:, :, :, 0]
    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"expected a 3-D scalar image, got {img.GetDimension()}-D with "
                         f"{img.GetNumberOfComponentsPerPixel()} component(s)", source=path)
    if header is not None and header.get_data_dtype().kind in "fc":
        # SimpleITK's NIfTI reader turns NaN and ±Inf into 0 without a word: check what nibabel reads
        import nibabel as nib

        _check_finite(np.asanyarray(nib.load(path).dataobj), path)
    return Volume.from_sitk(img, source=str(path), **meta)


def _check_header(path: Path):
    """The NIfTI header (nibabel, data not read) after the checks SimpleITK does not make: a voxel
    size (pixdim) of 0, which ITK silently reads as 1 mm, and a truncated file, which ITK reads as a
    partial volume. None when nibabel cannot parse the header (SimpleITK then reports the problem)."""
    import nibabel as nib

    opener = gzip.open if path.name.endswith(".gz") else open
    try:  # check=False: nibabel's own check would turn a pixdim of 0 into 1 before we see it
        with opener(path, "rb") as fh:
            header = nib.Nifti1Header.from_fileobj(fh, check=False)
    except Exception:  # not NIfTI at all: SimpleITK's message names what it found
        return None
    shape = header.get_data_shape()
    _check_voxel_size(header, path)
    expected = int(header.get_data_offset()) + int(np.prod(shape)) * header.get_data_dtype().itemsize
    if path.name.endswith(".gz"):
        _check_gzip_complete(path, expected)
    elif path.stat().st_size < expected:
        raise InputError(f"the file holds {path.stat().st_size} bytes, {expected} expected for "
                         f"{'×'.join(map(str, shape))} voxels: the file is truncated", source=path)
    return header


def _check_voxel_size(header, path: Path) -> None:
    """Refuse a voxel size (pixdim) of 0, negative or not a number: ITK silently reads a 0 as 1 mm."""
    ndim = min(len(header.get_data_shape()), 3)
    zooms = [float(z) for z in header["pixdim"][1:ndim + 1]]
    if not all(np.isfinite(z) and z > 0 for z in zooms):
        raise InputError(f"voxel size {zooms} mm: every spacing must be a positive number (a 0 is "
                         "read as 1 mm by most tools, which silently changes every volume)",
                         source=path, where="pixdim[1..3]")


def _check_gzip_complete(path: Path, expected: int) -> None:
    """Refuse a truncated .nii.gz. The gzip trailer's ISIZE (uncompressed size mod 2**32, RFC 1952)
    is compared with the size the header announces; only when they differ is the whole stream
    decompressed to tell a truncated file from a legitimate multi-member gzip."""
    import zlib

    with open(path, "rb") as fh:
        fh.seek(-4, 2)
        isize = int.from_bytes(fh.read(4), "little")
    if isize == expected % 2**32:
        return
    total = 0
    try:
        with gzip.open(path, "rb") as fh:
            while chunk := fh.read(1 << 22):
                total += len(chunk)
    except (EOFError, OSError, zlib.error) as exc:
        raise InputError(f"the compressed data ends early ({exc}): the file is truncated or damaged "
                         f"({expected} bytes expected)", source=path) from None
    if total < expected:
        raise InputError(f"the file holds {total} bytes of image data and header, {expected} expected: "
                         "the file is truncated", source=path)


def _check_finite(data: np.ndarray, path: Path) -> None:
    """Refuse NaN and ±Inf voxels (``data`` indexed [i, j, k]), which SimpleITK's NIfTI reader turns into 0
    without a word."""
    bad = ~np.isfinite(data)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        n_nan = int(np.isnan(data).sum())
        raise InputError(f"{n_nan} NaN and {int(bad.sum()) - n_nan} infinite voxel value(s) (first at "
                         f"voxel {first}); every voxel must be a finite number (fill the gaps, or "
                         "set them to 0 yourself if that is what they mean)", source=path)


def write_nifti(volume: Volume, path: str | Path, dtype: Any | None = None,
                compresslevel: int | None = None) -> Path:
    """Write ``volume`` as NIfTI (gzip-compressed when the name ends in ``.gz``).

    ``compresslevel`` (1–9, ``.gz`` only): compress with zlib at that level instead of SimpleITK's own (which
    ignores the level and takes 0.2 s for a noisy 4-MB CT; level 1 takes a sixth of that and releases the GIL).
    The NIfTI bytes are the same: SimpleITK writes them uncompressed, zlib compresses them.
    """
    path = Path(path)
    if compresslevel is not None and path.suffix == ".gz":
        return _write_nifti_gz(volume, path, dtype, compresslevel)
    import SimpleITK as sitk

    path.parent.mkdir(parents=True, exist_ok=True)
    vol = volume if dtype is None else volume.with_array(volume.array.astype(dtype))
    if vol.array.dtype == bool:
        vol = vol.with_array(vol.array.astype(np.uint8))
    try:
        sitk.WriteImage(vol.to_sitk(), str(path), useCompression=path.suffix == ".gz")
    except RuntimeError as exc:  # ITK says only "could not write": find out why, as an OSError
        raise _write_error(path, vol.array.nbytes, exc) from None
    return path


def _write_nifti_gz(volume: Volume, path: Path, dtype, compresslevel: int) -> Path:
    import gzip
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".nii", dir=path.parent)
    os.close(fd)
    try:
        write_nifti(volume, tmp, dtype=dtype)
        raw = Path(tmp).read_bytes()
    finally:
        Path(tmp).unlink(missing_ok=True)
    path.write_bytes(gzip.compress(raw, compresslevel=compresslevel, mtime=0))
    return path


def _write_error(path: Path, nbytes: int, exc: RuntimeError) -> OSError:
    import errno
    import os
    import shutil

    folder = path.parent
    if os.statvfs(folder).f_flag & os.ST_RDONLY:
        code = errno.EROFS
    elif shutil.disk_usage(folder).free < nbytes + 1_000_000:
        code = errno.ENOSPC
    elif not os.access(folder, os.W_OK):
        code = errno.EACCES
    else:
        last = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown ITK error"
        return OSError(errno.EIO, f"could not write the NIfTI file ({last})", str(path))
    return OSError(code, os.strerror(code), str(path))
