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
