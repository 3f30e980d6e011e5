"""read_nifti decodes plain NIfTI-1 files itself (libdeflate or ISA-L gzip, numpy view): the volume must be
exactly what SimpleITK reads — every voxel, dtype, memory layout, spacing, origin, direction — and anything
unusual must go through SimpleITK as before."""

from __future__ import annotations

import gzip
import hashlib

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from conftest import reference_path

import carpet.io.nifti as nifti
from carpet.errors import InputError
from carpet.io import read_image, read_nifti, write_nifti
from carpet.volume import Volume

DIRECTION = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


@pytest.fixture
def fast_only(monkeypatch):
    """Make the SimpleITK reader unavailable: a read that passes decoded the file itself."""
    def refuse(path, meta):
        raise AssertionError(f"{path} went through SimpleITK")
    monkeypatch.setattr(nifti, "_read_sitk", refuse)


@pytest.fixture
def sitk_count(monkeypatch):
    """Count the reads that fall back to SimpleITK."""
    calls = []
    real = nifti._read_sitk
    monkeypatch.setattr(nifti, "_read_sitk", lambda path, meta: calls.append(path) or real(path, meta))
    return calls


def assert_same_as_sitk(vol: Volume, path) -> None:
    img = sitk.ReadImage(str(path))
    if img.GetDimension() == 4:
        img = img[:, :, :, 0]
    ref = Volume.from_sitk(img)
    assert vol.array.dtype == ref.array.dtype
    assert vol.array.shape == ref.array.shape and vol.array.strides == ref.array.strides  # same layout
    assert np.array_equal(vol.array, ref.array)
    assert vol.spacing == ref.spacing and vol.origin == ref.origin            # exactly, not approximately
    assert np.array_equal(vol.direction, ref.direction)
    assert not vol.array.flags.writeable                                      # read-only, as from SimpleITK
    back = vol.to_sitk()                                                      # and back to SimpleITK intact
    assert np.array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(img))
    assert back.GetOrigin() == img.GetOrigin() and back.GetDirection() == img.GetDirection()


def _phantom(dtype, shape=(13, 11, 7), seed=0) -> Volume:
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    arr = (rng.integers(max(info.min, -30000), min(info.max, 30000), shape, endpoint=True) if info else
           rng.normal(2.0, 3.0, shape)).astype(dtype)
    return Volume(arr, (0.8, 1.1, 2.5), (10.0, -4.0, 3.0), DIRECTION)


@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.uint8, np.uint16, np.float64, np.int32, np.int8])
@pytest.mark.parametrize("name", ["v.nii.gz", "v.nii"])
def test_write_nifti_files_are_read_as_simpleitk_reads_them(tmp_path, fast_only, dtype, name):
    vol = _phantom(dtype)
    path = write_nifti(vol, tmp_path / name)
    back = read_nifti(path, units="HU")
    assert_same_as_sitk(back, path)
    assert np.array_equal(back.array, vol.array) and back.meta == {"source": str(path), "units": "HU"}


def test_label_map_uint16(tmp_path, fast_only):
    labels = np.zeros((20, 30, 10), np.uint16)
    labels[2:5, 3:9, 1:4], labels[10:12, 20:25, 5:9] = 1, 1000
    path = write_nifti(Volume(labels, (4.0, 4.0, 3.27), (-200.0, 150.0, -90.0)), tmp_path / "labels.nii.gz")
    assert_same_as_sitk(read_nifti(path), path)


def _nib_file(tmp_path, name, arr, qform, sform, *, qcode=1, scode=2, header=None):
    img = nib.Nifti1Image(arr, sform, header=header)
    img.set_qform(qform, code=qcode)
    img.set_sform(sform, code=scode)
    path = tmp_path / name
    nib.save(img, path)
    return path


def test_qform_different_from_the_sform_gives_simpleitk_geometry(tmp_path, fast_only):
    arr = np.random.default_rng(1).random((9, 8, 7)).astype(np.float32)
    rot = np.array([[np.cos(0.3), -np.sin(0.3), 0], [np.sin(0.3), np.cos(0.3), 0], [0, 0, 1]])
    qform = np.eye(4)
    qform[:3, :3], qform[:3, 3] = rot @ np.diag([2.0, 2.0, 3.0]), (5.0, -7.0, 11.0)
    sform = np.diag([-2.0, 2.0, 3.0, 1.0])
    sform[:3, 3] = (100.0, -50.0, 20.0)
    origins = set()
    for qcode, scode in ((1, 0), (0, 2), (1, 2), (1, 1), (2, 4)):  # qform only, sform only, both
        path = _nib_file(tmp_path, f"q{qcode}s{scode}.nii.gz", arr, qform, sform, qcode=qcode, scode=scode)
        vol = read_nifti(path)
        assert_same_as_sitk(vol, path)
        origins.add(vol.origin)
    assert len(origins) > 1  # the two forms really differ, and SimpleITK's choice between them is kept


def test_header_extension_moves_the_voxels(tmp_path, fast_only):
    """vox_offset > 352 (a header extension): the voxels start where the header says."""
    arr = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    img = nib.Nifti1Image(arr, np.diag([1.5, 1.5, 2.0, 1.0]))
    img.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"x" * 1000))
    path = tmp_path / "ext.nii.gz"
    nib.save(img, path)
    with gzip.open(path) as fh:
        assert nib.Nifti1Header.from_fileobj(fh).get_data_offset() > 352
    vol = read_nifti(path)
    assert_same_as_sitk(vol, path)
    assert np.array_equal(vol.array, arr)


def test_unusual_files_go_through_simpleitk(tmp_path, sitk_count):
    """Scaled values, 4-D, byte-swapped voxels, a non-gzip '.nii.gz': SimpleITK reads them, as before."""
    arr = np.random.default_rng(2).integers(0, 1000, (6, 7, 8)).astype(np.int16)
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    scaled = nib.Nifti1Image(arr, aff)
    scaled.header.set_slope_inter(0.5, 10.0)
    nib.save(scaled, tmp_path / "scaled.nii.gz")
    scaled_float = nib.Nifti1Image(arr.astype(np.float32), aff)
    scaled_float.header.set_slope_inter(2.0, 1.0)  # ITK keeps float32 but scales the values
    nib.save(scaled_float, tmp_path / "scaled_float.nii")
    nib.save(nib.Nifti1Image(arr[..., None], aff), tmp_path / "frame.nii.gz")
    swapped = nib.Nifti1Image(arr.astype(">i2"), aff, header=nib.Nifti1Header(endianness=">"))
    nib.save(swapped, tmp_path / "swapped.nii")
    (tmp_path / "plain.nii.gz").write_bytes(gzip.decompress((write_nifti(
        Volume(arr, (1.0, 1.0, 1.0)), tmp_path / "p.nii.gz")).read_bytes()))
    for name in ("scaled.nii.gz", "scaled_float.nii", "frame.nii.gz", "swapped.nii", "plain.nii.gz"):
        vol = read_nifti(tmp_path / name)
        assert sitk_count[-1] == tmp_path / name, name
        assert_same_as_sitk(vol, tmp_path / name)
    assert read_nifti(tmp_path / "scaled.nii.gz").array.dtype == np.float32  # ITK applied the scaling
    assert np.array_equal(read_nifti(tmp_path / "scaled_float.nii").array, arr * 2.0 + 1.0)
    assert np.array_equal(read_nifti(tmp_path / "swapped.nii").array, arr)


def test_identity_scaling_is_decoded_here(tmp_path, fast_only):
    """A slope of 1 or 0 (NIfTI: no scaling) with no intercept: the file's own values, decoded here."""
    arr = np.random.default_rng(4).integers(-1000, 1000, (6, 7, 8)).astype(np.int16)
    raw = bytearray(write_nifti(Volume(arr, (2.0, 2.0, 2.0)), tmp_path / "v.nii").read_bytes())
    for slope, inter in ((1.0, 0.0), (0.0, 0.0), (np.nan, np.nan), (1.0, np.nan)):
        raw[112:120] = np.array([slope, inter], np.float32).tobytes()  # scl_slope, scl_inter
        path = tmp_path / f"s{slope}_{inter}.nii.gz"
        path.write_bytes(gzip.compress(bytes(raw)))
        vol = read_nifti(path)
        assert_same_as_sitk(vol, path)
        assert np.array_equal(vol.array, arr)


def test_reference_files(fast_only):
    for parts in (("sts-pet", "nifti", "STS_001", "PET_image.nii.gz"), ("sts-pet", "nifti", "STS_001", "PET_mask.nii.gz"),
                  ("ibsi-phantom", "nifti", "image", "phantom.nii.gz")):
        path = reference_path(*parts)
        assert_same_as_sitk(read_nifti(path), path)


def test_multi_member_gzip_is_read_whole_and_a_cut_one_is_truncated(tmp_path, fast_only, monkeypatch):
    vol = _phantom(np.float32, (30, 20, 10))
    raw = gzip.decompress(write_nifti(vol, tmp_path / "one.nii.gz").read_bytes())
    cut = len(raw) // 3
    (tmp_path / "two.nii.gz").write_bytes(gzip.compress(raw[:cut]) + gzip.compress(raw[cut:]) + b"\0" * 8)
    back = read_nifti(tmp_path / "two.nii.gz")
    assert np.array_equal(back.array, vol.array)
    assert_same_as_sitk(back, tmp_path / "two.nii.gz")
    monkeypatch.undo()  # the truncated files are explained by the SimpleITK path's checks
    (tmp_path / "short.nii.gz").write_bytes(gzip.compress(raw[:cut]) + gzip.compress(raw[cut:-400]))
    (tmp_path / "cut.nii.gz").write_bytes((tmp_path / "two.nii.gz").read_bytes()[:-2000])
    for name in ("short.nii.gz", "cut.nii.gz"):
        with pytest.raises(InputError, match="truncated"):
            read_nifti(tmp_path / name)


@pytest.fixture
def inflaters(monkeypatch):
    """Record which decoder inflated each whole .nii.gz: libdeflate's answers (the length of what it
    inflated, or None when it refused the stream) and ISA-L's whole-stream reads (the fallback)."""
    seen = {"libdeflate": [], "isal": []}
    real_libdeflate, real_isal = nifti._libdeflate, nifti._gunzip

    def libdeflate(raw, size):
        out = real_libdeflate(raw, size)
        seen["libdeflate"].append(None if out is None else len(out))
        return out

    def isal(raw, max_bytes):
        if max_bytes is None:
            seen["isal"].append(len(raw))
        return real_isal(raw, max_bytes)

    monkeypatch.setattr(nifti, "_libdeflate", libdeflate)
    monkeypatch.setattr(nifti, "_gunzip", isal)
    return seen


def _members(raw: bytes, layout: str) -> bytes:
    """``raw`` (a NIfTI file's bytes) as a gzip stream of the given layout."""
    cut = len(raw) // 3
    size = len(raw).to_bytes(4, "little")
    return {"one member": gzip.compress(raw),
            "two members": gzip.compress(raw[:cut]) + gzip.compress(raw[cut:]),
            "two members, zeros after": gzip.compress(raw[:cut]) + gzip.compress(raw[cut:]) + b"\0" * 8,
            "one member, zeros after": gzip.compress(raw) + b"\0" * 8,
            "one member, garbage ending in its size": gzip.compress(raw) + b"garbage" + size,
            "two members, garbage ending in the size": gzip.compress(raw[:cut]) + gzip.compress(raw[cut:])
            + b"garbage" + size}[layout]


@pytest.mark.parametrize("layout, inflater", [
    ("one member", "libdeflate"),
    ("two members", "isal"),                      # the last member's size is not the whole: libdeflate not tried
    ("two members, zeros after", "isal"),
    ("one member, zeros after", "isal"),          # the stream's last 4 bytes are not its size
    ("one member, garbage ending in its size", "libdeflate"),  # libdeflate reads the member's own trailer
    ("two members, garbage ending in the size", "isal"),  # libdeflate tried: a third of the size announced
])
def test_libdeflate_only_when_its_answer_is_the_whole_file(tmp_path, fast_only, inflaters, layout, inflater):
    """libdeflate inflates the first gzip member only: any other layout is inflated by ISA-L, and every
    layout gives SimpleITK's voxels."""
    vol = _phantom(np.float32, (30, 20, 10))
    raw = gzip.decompress(write_nifti(vol, tmp_path / "v.nii.gz").read_bytes())
    path = tmp_path / "layout.nii.gz"
    path.write_bytes(_members(raw, layout))
    back = read_nifti(path)
    assert np.array_equal(back.array, vol.array)
    assert_same_as_sitk(back, path)
    if inflater == "libdeflate":
        assert inflaters == {"libdeflate": [len(raw)], "isal": []}
    else:
        assert inflaters["isal"] == [path.stat().st_size]
        assert inflaters["libdeflate"] == ([len(raw) // 3] if "garbage" in layout else [])


def test_without_libdeflate_isal_inflates(tmp_path, fast_only, inflaters, monkeypatch):
    """Where the deflate wheel does not export libdeflate's C API, ISA-L inflates every file, the same voxels."""
    vol = _phantom(np.int16, (30, 20, 10))
    path = write_nifti(vol, tmp_path / "v.nii.gz")
    monkeypatch.setattr(nifti, "_libdeflate_api", lambda: None)
    back = read_nifti(path)
    assert np.array_equal(back.array, vol.array)
    assert_same_as_sitk(back, path)
    assert inflaters == {"libdeflate": [None], "isal": [path.stat().st_size]}


def test_a_damaged_stream_never_gives_voxels(tmp_path, inflaters):
    """A stream that inflates but whose CRC-32 does not match (a flipped voxel byte in a stored block, or a
    flipped trailer): libdeflate refuses it, ISA-L too, and SimpleITK's path says the file is unreadable."""
    arr = np.arange(30 * 20 * 10, dtype=np.int16).reshape(30, 20, 10)
    raw = gzip.decompress(write_nifti(Volume(arr, (1.0, 1.0, 1.0)), tmp_path / "v.nii.gz").read_bytes())
    stored = bytearray(gzip.compress(raw, compresslevel=0))  # the voxel bytes stand as they are in the stream
    at = stored.index(raw[5000:5016])
    stored[at] ^= 0xFF
    trailer = bytearray(gzip.compress(raw))
    trailer[-8] ^= 0x01
    for name, data in (("flipped_voxel.nii.gz", stored), ("flipped_crc.nii.gz", trailer)):
        (tmp_path / name).write_bytes(bytes(data))
        with pytest.raises(InputError, match=name):
            read_nifti(tmp_path / name)
    assert inflaters["libdeflate"] == [None, None]
    assert len(inflaters["isal"]) == 2


def test_nan_and_inf_are_refused_with_the_first_voxel(tmp_path):
    arr = np.ones((5, 6, 7), np.float32)
    arr[3, 1, 2], arr[4, 0, 0], arr[1, 5, 6] = np.nan, np.inf, -np.inf
    path = write_nifti(Volume(arr, (1.0, 1.0, 1.0)), tmp_path / "bad.nii.gz")
    with pytest.raises(InputError, match=r"1 NaN and 2 infinite voxel value\(s\) \(first at voxel \(1, 5, 6\)\)"):
        read_nifti(path)


def test_zero_voxel_size_is_refused(tmp_path):
    path = write_nifti(_phantom(np.float32), tmp_path / "v.nii")
    data = bytearray(path.read_bytes())
    data[80:84] = np.float32(0).tobytes()  # pixdim[1]
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"pixdim.*positive|positive.*pixdim|every spacing must be a positive"):
        read_nifti(path)


def test_the_bytes_handed_over_are_the_file(tmp_path):
    path = write_nifti(_phantom(np.float32), tmp_path / "v.nii.gz")
    seen = []
    read_image(path, on_bytes=seen.append)
    assert len(seen) == 1 and hashlib.sha256(seen[0]).hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest()


def test_quantify_hashes_the_inputs_it_read(tmp_path):
    """provenance.inputs[*].sha256: the files' digests, from the bytes the readers read."""
    from carpet.quantify import run_quantify

    rng = np.random.default_rng(0)
    pet = rng.random((20, 20, 20)).astype(np.float32)
    pet[8:12, 8:12, 8:12] = 10.0
    grid = dict(spacing=(4.0, 4.0, 4.0), origin=(-40.0, -40.0, -40.0))
    paths = {"pet": write_nifti(Volume(pet, **grid), tmp_path / "pet.nii.gz"),
             "ct": write_nifti(Volume(np.zeros((20, 20, 20), np.int16), **grid), tmp_path / "ct.nii"),
             "lesions": write_nifti(Volume((pet > 5).astype(np.uint8), **grid), tmp_path / "mask.nii.gz")}
    result = run_quantify(paths["pet"], ct_path=paths["ct"], lesions_path=paths["lesions"], out_dir=tmp_path / "o")
    inputs = result.summary["provenance"]["inputs"]
    for k, p in paths.items():
        assert inputs[k]["sha256"] == hashlib.sha256(p.read_bytes()).hexdigest(), k
