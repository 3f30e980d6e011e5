"""Masks: RTSTRUCT rasterisation (voxel centre in polygon), DICOM SEG round trip, NIfTI label maps."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from _dicom_factory import write_series
from carpet.errors import InputError
from carpet.io import read_mask, read_rtstruct, read_seg, read_series, write_nifti, write_seg
from carpet.volume import Volume

RTSTRUCT = "1.2.840.10008.5.1.4.1.1.481.3"


def _grid() -> Volume:
    """8×8×4 voxels of 2×2×3 mm at the origin, with a frame of reference."""
    return Volume(np.zeros((8, 8, 4)), (2.0, 2.0, 3.0), meta={"dicom": {"FrameOfReferenceUID": "1.9"}})


def _square(x0, x1, y0, y1, z):
    return [x0, y0, z, x1, y0, z, x1, y1, z, x0, y1, z]


def _write_rtstruct(path, rois: dict[str, list[list[float]]], for_uid="1.9"):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = RTSTRUCT, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = RTSTRUCT, meta.MediaStorageSOPInstanceUID, "RTSTRUCT"
    ds.SeriesInstanceUID, ds.StudyInstanceUID = generate_uid(), "1.2.3.4"
    ds.StructureSetROISequence, ds.ROIContourSequence = [], []
    for n, (name, contours) in enumerate(rois.items(), start=1):
        roi = Dataset()
        roi.ROINumber, roi.ROIName, roi.ReferencedFrameOfReferenceUID = n, name, for_uid
        ds.StructureSetROISequence.append(roi)
        item = Dataset()
        item.ReferencedROINumber, item.ContourSequence = n, []
        for pts in contours:
            c = Dataset()
            c.ContourGeometricType, c.NumberOfContourPoints = "CLOSED_PLANAR", len(pts) // 3
            c.ContourData = [float(p) for p in pts]
            item.ContourSequence.append(c)
        ds.ROIContourSequence.append(item)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_rtstruct_voxel_centres_and_holes(tmp_path):
    grid = _grid()
    # outer square x,y 1..13 mm covers centres i,j = 1..6 (centres at 2·i mm); the hole 5..9 mm cuts 3..4
    f = _write_rtstruct(tmp_path / "rs.dcm", {
        "ring": [_square(1, 13, 1, 13, 3.0), _square(5, 9, 5, 9, 3.0)],
        "near_plane": [_square(1, 5, 1, 5, 6.0 + 1.4)],     # 1.4 mm off slice 2 (3 mm slices): slice 2
        "between": [_square(1, 5, 1, 5, 6.0 + 1.6)]})       # 1.6 mm off slice 2: nearest is slice 3
    rois = read_rtstruct(f, grid)
    expected = np.zeros(grid.shape, bool)
    for i in range(8):
        for j in range(8):
            x, y = 2.0 * i, 2.0 * j
            expected[i, j, 1] = (1 < x < 13 and 1 < y < 13) and not (5 < x < 9 and 5 < y < 9)
    np.testing.assert_array_equal(rois["ring"].array, expected)
    assert rois["ring"].array.sum() == 36 - 4
    assert rois["near_plane"].array[:, :, 2].sum() == 4 and rois["near_plane"].array.sum() == 4
    assert rois["between"].array[:, :, 3].sum() == 4 and rois["between"].array.sum() == 4


def test_rtstruct_to_label_map_and_errors(tmp_path):
    grid = _grid()
    f = _write_rtstruct(tmp_path / "rs.dcm", {"a": [_square(1, 5, 1, 5, 0.0)],
                                             "b": [_square(7, 11, 7, 11, 0.0)]})
    labels = read_mask(tmp_path, grid)
    assert labels.meta["labels"] == {1: "a", 2: "b"}
    assert np.bincount(labels.array.ravel()).tolist() == [256 - 8, 4, 4]
    with pytest.raises(InputError, match=r"ROI \['c'\] not found; the file has \['a', 'b'\]"):
        read_rtstruct(f, grid, roi="c")
    g = _write_rtstruct(tmp_path / "other.dcm", {"a": [_square(1, 5, 1, 5, 0.0)]}, for_uid="7.7")
    with pytest.raises(InputError, match="frame of reference 7.7"):
        read_rtstruct(g, grid)
    h = _write_rtstruct(tmp_path / "oblique.dcm", {"a": [[1, 1, 0, 5, 1, 3, 5, 5, 6]]})
    with pytest.raises(InputError, match="not parallel"):
        read_rtstruct(h, grid)


def test_seg_round_trip_read_back_with_highdicom(tmp_path):
    import highdicom as hd

    files = write_series(tmp_path / "pet", np.full((8, 6, 4), 1000.0), spacing=(2, 2, 3))
    pet = read_series(tmp_path / "pet")
    labels = np.zeros(pet.shape, np.int32)
    labels[1:3, 1:4, 0:2] = 1
    labels[5:7, 2:5, 2:4] = 2
    labels[4, 0, 3] = 2
    out = write_seg(pet.with_array(labels), tmp_path / "pet", tmp_path / "seg.dcm")

    # highdicom's own reading, frame by frame, mapped to the source slices by SOP Instance UID
    seg = hd.seg.segread(out)
    assert seg.SegmentationType == "BINARY"  # dciodvfy does not know the label-map class
    k_of_uid = {pydicom.dcmread(f).SOPInstanceUID: k for k, f in enumerate(files)}  # files in z order
    frames = seg.pixel_array
    got = np.zeros_like(labels)
    for n, fg in enumerate(seg.PerFrameFunctionalGroupsSequence):
        uid = fg.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        segment = int(fg.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        got[:, :, k_of_uid[uid]][frames[n].T > 0] = segment
    np.testing.assert_array_equal(got, labels)
    named = {int(s.SegmentNumber): s.SegmentLabel for s in seg.SegmentSequence}
    assert named == {1: "lesion 1", 2: "lesion 2"}
    # and carpet's reader gives the same map on the PET grid
    back = read_seg(out, pet)
    np.testing.assert_array_equal(back.array, labels)
    np.testing.assert_array_equal(read_mask(out, pet).array, labels)


def test_seg_refuses_other_grid(tmp_path):
    write_series(tmp_path / "pet", np.full((8, 6, 4), 1000.0))
    wrong = Volume(np.zeros((8, 6, 3), np.int32), (2, 3, 4))
    with pytest.raises(InputError, match="not on the grid"):
        write_seg(wrong, tmp_path / "pet", tmp_path / "seg.dcm")


def test_nifti_mask_resampled_nearest(tmp_path):
    ref = Volume(np.zeros((8, 8, 4)), (2.0, 2.0, 3.0))
    fine = np.zeros((16, 16, 4), np.int16)
    fine[4:8, 4:8, 1] = 3  # 1-mm voxels: x 4..7 mm -> 2-mm voxel centres 4, 6 mm (i = 2, 3)
    write_nifti(Volume(fine, (1.0, 1.0, 3.0)), tmp_path / "m.nii.gz")
    got = read_mask(tmp_path / "m.nii.gz", ref)
    assert got.same_grid(ref) and got.array.dtype == np.int32
    expected = np.zeros(ref.shape, np.int32)
    expected[2:4, 2:4, 1] = 3
    np.testing.assert_array_equal(got.array, expected)
    write_nifti(Volume(np.full((8, 8, 4), 0.5), (2.0, 2.0, 3.0)), tmp_path / "p.nii.gz")
    with pytest.raises(InputError, match="non-integer"):
        read_mask(tmp_path / "p.nii.gz", ref)
