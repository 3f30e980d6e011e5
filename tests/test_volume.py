import numpy as np
import pytest

from carpet.errors import InputError
from carpet.io import read_nifti, write_nifti
from carpet.volume import Volume, resample_to


def test_index_world_round_trip_with_rotation():
    c, s = np.cos(0.3), np.sin(0.3)
    direction = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    vol = Volume(np.zeros((4, 5, 6)), (2.0, 3.0, 4.0), (10.0, -5.0, 7.0), direction)
    ijk = np.array([[1, 2, 3], [0, 0, 0], [3.5, 4, 5]])
    xyz = vol.index_to_world(ijk)
    assert np.allclose(xyz[1], [10, -5, 7])
    # one step along i moves 2 mm along the first direction column
    assert np.allclose(vol.index_to_world([1, 0, 0]) - xyz[1], 2.0 * direction[:, 0])
    assert np.allclose(vol.world_to_index(xyz), ijk)
    assert vol.voxel_volume_ml == pytest.approx(0.024)


def test_nifti_round_trip_keeps_values_and_geometry(tmp_path):
    rng = np.random.default_rng(0)
    vol = Volume(rng.random((7, 6, 5)).astype(np.float32), (1.5, 2.0, 3.0), (-100.0, 20.0, 5.0))
    path = write_nifti(vol, tmp_path / "x.nii.gz")
    back = read_nifti(path)
    assert back.same_grid(vol)
    assert np.array_equal(back.array, vol.array)


def test_resample_nearest_onto_coarser_grid_keeps_block_labels():
    fine = np.zeros((8, 8, 8), np.uint8)
    fine[:4] = 1  # left half labelled
    vol = Volume(fine, (1.0, 1.0, 1.0), (0.5, 0.5, 0.5))
    coarse = Volume(np.zeros((4, 4, 4)), (2.0, 2.0, 2.0), (1.0, 1.0, 1.0))
    out = resample_to(vol, coarse, interpolation="nearest")
    assert out.same_grid(coarse)
    assert out.array[:2].min() == 1 and out.array[2:].max() == 0


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(InputError, match="3-D"):
        Volume(np.zeros((2, 2)), (1, 1, 1))
    with pytest.raises(InputError, match="spacing"):
        Volume(np.zeros((2, 2, 2)), (1, 0, 1))
    with pytest.raises(InputError, match="missing.nii.gz: file not found"):
        read_nifti(tmp_path / "missing.nii.gz")
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not an image")
    with pytest.raises(InputError, match="bad.nii.gz"):
        read_nifti(bad)


def test_from_sitk_shares_the_image_buffer_and_keeps_it_alive():
    import gc

    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.arange(24, dtype=np.float32).reshape(2, 3, 4))  # (z, y, x)
    vol = Volume.from_sitk(img)
    del img
    gc.collect()
    _ = [np.ones(10_000) for _ in range(200)]  # churn the allocator; a dangling view would show garbage
    assert vol.shape == (4, 3, 2)
    assert vol.array[3, 2, 1] == 23.0 and vol.array[1, 0, 0] == 1.0
    assert not vol.array.flags.owndata


def test_nifti_is_ras_on_disk_as_nibabel_reads_it(tmp_path):
    """Independent of SimpleITK: nibabel must see the same voxels in the same [i, j, k] order and
    the LPS affine flipped to RAS (x and y negated), also for a rotated grid."""
    import nibabel as nib

    c, s = np.cos(0.4), np.sin(0.4)
    direction = np.array([[c, 0, s], [0, 1.0, 0], [-s, 0, c]])
    vol = Volume(np.arange(60, dtype=np.int16).reshape(3, 4, 5), (1.5, 2.0, 3.0), (-100.0, 20.0, 5.0), direction)
    path = write_nifti(vol, tmp_path / "r.nii.gz")
    img = nib.load(path)
    assert np.array_equal(np.asarray(img.dataobj), vol.array)
    assert np.allclose(img.affine, np.diag([-1.0, -1.0, 1.0, 1.0]) @ vol.affine, atol=1e-5)
    back = read_nifti(path)
    assert np.allclose(back.direction, direction, atol=1e-6) and back.same_grid(vol)


def test_resample_linear_interpolates_between_voxel_centres():
    """A ramp along i (value = i) sampled half a voxel further on reads i + 0.5; outside is the default."""
    ramp = np.broadcast_to(np.arange(6, dtype=np.float32)[:, None, None], (6, 3, 3)).copy()
    vol = Volume(ramp, (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    shifted = Volume(np.zeros((6, 3, 3)), (2.0, 2.0, 2.0), (1.0, 0.0, 0.0))
    out = resample_to(vol, shifted, interpolation="linear", default_value=-7.0)
    assert np.allclose(out.array[:5, 1, 1], np.arange(5) + 0.5)
    assert out.array[5, 1, 1] == -7.0  # centre at x = 11 mm lies beyond the last voxel centre (10 mm)


def test_resample_unknown_interpolation_is_an_input_error():
    vol = Volume(np.zeros((2, 2, 2)), (1, 1, 1))
    other = Volume(np.zeros((3, 3, 3)), (1, 1, 1))
    with pytest.raises(InputError, match="interpolation.*'cubic'"):
        resample_to(vol, other, interpolation="cubic")


def test_to_sitk_hands_back_the_source_image_only_while_array_and_geometry_are_its_own(tmp_path):
    import SimpleITK as sitk

    rng = np.random.default_rng(3)
    direction = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    original = Volume(rng.integers(-1000, 1000, (5, 6, 7)).astype(np.int16), (0.8, 1.1, 2.5),
                      (10.0, -4.0, 3.0), direction)
    write_nifti(original, tmp_path / "ct.nii.gz")
    vol = Volume.from_sitk(sitk.ReadImage(str(tmp_path / "ct.nii.gz")))  # (read_nifti decodes into numpy)
    cases = {"as read": vol, "same array, other spacing": Volume(vol.array, (1.0, 1.0, 1.0), vol.origin,
                                                                   vol.direction),
             "flipped view": vol.with_array(vol.array[::-1]), "copy": vol.with_array(vol.array.copy())}
    from carpet.volume import _source_image

    assert _source_image(vol) is not None                # the read volume is handed over without a copy
    for name, v in cases.items():
        assert (_source_image(v) is not None) == (name == "as read"), name
        img = v.to_sitk()
        assert np.array_equal(sitk.GetArrayFromImage(img).transpose(2, 1, 0), v.array), name
        assert img.GetSpacing() == pytest.approx(v.spacing) and img.GetOrigin() == pytest.approx(v.origin), name
        assert np.allclose(np.reshape(img.GetDirection(), (3, 3)), v.direction), name
        img.SetSpacing((9.0, 9.0, 9.0))                  # the caller's image is its own
        assert v.spacing != (9.0, 9.0, 9.0), name
    assert np.array_equal(vol.array, original.array)


def test_write_nifti_at_a_gzip_level_writes_the_same_image(tmp_path):
    """compresslevel=1 (the alignment images) gives the same NIfTI bytes, compressed by zlib."""
    import gzip

    from carpet.io.nifti import read_nifti, write_nifti

    rng = np.random.default_rng(0)
    vol = Volume(rng.normal(0, 100, (20, 18, 16)).astype(np.float32), (2.0, 2.5, 3.0), origin=(1.0, -2.0, 3.0))
    plain = write_nifti(vol, tmp_path / "a.nii", dtype=np.int16)
    fast = write_nifti(vol, tmp_path / "b.nii.gz", dtype=np.int16, compresslevel=1)
    assert gzip.decompress(fast.read_bytes()) == plain.read_bytes()
    back = read_nifti(fast)
    assert np.array_equal(np.asarray(back.array), vol.array.astype(np.int16))
    assert np.allclose(back.spacing, vol.spacing) and np.allclose(back.origin, vol.origin)
