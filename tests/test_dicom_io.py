"""DICOM series reading: geometry against SimpleITK, PET/CT pairing, and one test per bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from _dicom_factory import pet_header, ramp, write_series
from carpet.errors import InputError
from carpet.io import read_image
from carpet.io.dicom import find_series, read_pet_ct, read_series
from carpet.volume import Volume


def _sitk_read(folder) -> Volume:
    """Independent reader: SimpleITK/GDCM on the same files."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return Volume.from_sitk(reader.Execute())


@pytest.mark.parametrize("row_cos,col_cos", [((1, 0, 0), (0, 1, 0)),       # axial, feet-first order
                                             ((0, 1, 0), (0, 0, -1)),      # sagittal
                                             ((1, 0, 0), (0, 0, -1))])     # coronal
def test_geometry_and_values_match_simpleitk(tmp_path, row_cos, col_cos):
    values = ramp()
    files = write_series(tmp_path, values, row_cos=row_cos, col_cos=col_cos, slopes=[1, 2, 1, 0.5])
    # shuffle file names so sorting must come from positions, not names
    for n, f in enumerate(reversed(files)):
        f.rename(tmp_path / f"x{n}.dcm")
    vol = read_series(tmp_path)
    ref = _sitk_read(tmp_path)
    assert vol.shape == ref.shape == values.shape
    np.testing.assert_allclose(vol.spacing, ref.spacing)
    np.testing.assert_allclose(vol.origin, ref.origin, atol=1e-6)
    np.testing.assert_allclose(vol.direction, ref.direction, atol=1e-6)
    np.testing.assert_allclose(vol.array, ref.array, rtol=1e-6)
    np.testing.assert_allclose(vol.array, values)  # slope applied slice by slice
    assert vol.meta["modality"] == "PT" and vol.meta["units"] == "BQML"
    assert "PatientName" not in str(vol.meta)


def test_slices_sorted_by_normal_not_by_instance(tmp_path):
    values = ramp()
    pos = [(0, 0, 40.0 - 4 * k) for k in range(4)]  # written head to feet
    write_series(tmp_path, values, positions=pos, spacing=(2, 3, 4))
    vol = read_series(tmp_path)
    assert vol.origin[2] == pytest.approx(28.0)
    np.testing.assert_allclose(vol.array, values[:, :, ::-1])


def test_ct_stays_integer_hu(tmp_path):
    hu = ramp() - 1024
    write_series(tmp_path, hu, header={"Modality": "CT"}, intercept=-1024)
    vol = read_series(tmp_path)
    assert vol.array.dtype == np.int16 and vol.meta["units"] == "HU"
    np.testing.assert_array_equal(vol.array, hu)


def test_pet_ct_pairing_and_resampling(tmp_path):
    write_series(tmp_path / "pet", np.full((8, 6, 4), 1000.0), for_uid="9.9")
    write_series(tmp_path / "ct", ramp((16, 12, 8)), spacing=(1, 1.5, 2), header={"Modality": "CT"},
                 for_uid="9.9")
    write_series(tmp_path / "other_ct", ramp(), header={"Modality": "CT"}, for_uid="7.7", study_uid="7")
    assert {s.modality for s in find_series(tmp_path)} == {"PT", "CT"}
    pet, ct = read_pet_ct(tmp_path)
    assert ct.same_grid(pet) and pet.meta["units"] == "SUVbw"


def test_several_pet_series_named_in_error(tmp_path):
    write_series(tmp_path / "a", ramp(), prefix="a")
    write_series(tmp_path / "b", ramp(), prefix="b")
    with pytest.raises(InputError, match="found 2.*PT series.*PT series"):
        read_series(tmp_path)
    with pytest.raises(InputError, match="expected one PET series, found 2"):
        read_pet_ct(tmp_path)


def test_read_image_nifti_and_dicom(tmp_path):
    from carpet.io import write_nifti

    write_series(tmp_path / "pet", np.full((8, 6, 4), 1000.0))
    pet = read_image(tmp_path / "pet")
    assert pet.meta["units"] == "SUVbw" and pet.meta["suv"]["norm"] == "bw"
    write_nifti(pet, tmp_path / "pet.nii.gz")
    again = read_image(tmp_path / "pet.nii.gz")
    assert again.meta["units"] == "SUVbw" and again.meta["units_assumed"]
    np.testing.assert_allclose(again.array, pet.array, rtol=1e-6)
    with pytest.raises(InputError, match="BQML.*cannot be converted"):
        read_image(tmp_path / "pet.nii.gz", units="BQML")


# ---- bad input: one test each, the message must name the problem ------------------------------
def test_non_uniform_spacing(tmp_path):
    pos = [(0, 0, z) for z in (0.0, 4.0, 8.0, 16.0)]  # a missing slice
    write_series(tmp_path, ramp(), positions=pos)
    with pytest.raises(InputError, match=r"non-uniform slice spacing.*ImagePositionPatient|"
                                         r"ImagePositionPatient.*non-uniform slice spacing"):
        read_series(tmp_path)


def test_jittered_spacing_is_accepted(tmp_path):
    pos = [(0, 0, z) for z in (0.0, 4.05, 7.96, 12.0)]  # scanners jitter by hundredths of a mm
    write_series(tmp_path, ramp(), positions=pos)
    assert read_series(tmp_path).spacing[2] == pytest.approx(4.0)


def test_gantry_tilt(tmp_path):
    pos = [(0, 0.7 * k, 4.0 * k) for k in range(4)]  # slices shifted in-plane: tilted gantry
    write_series(tmp_path, ramp(), positions=pos, header=pet_header(GantryDetectorTilt="10"))
    with pytest.raises(InputError, match="gantry tilt"):
        read_series(tmp_path)


def test_duplicate_positions(tmp_path):
    pos = [(0, 0, z) for z in (0.0, 4.0, 4.0, 8.0)]
    write_series(tmp_path, ramp(), positions=pos)
    with pytest.raises(InputError, match="share the position.*duplicate"):
        read_series(tmp_path)


def test_mixed_modalities(tmp_path):
    files = write_series(tmp_path, ramp(), series_uid="1.2.3.99")
    write_series(tmp_path / "ct", ramp()[:, :, :1], header={"Modality": "CT"}, series_uid="1.2.3.99",
                 positions=[(0, 0, 100.0)], prefix="c")
    assert files
    with pytest.raises(InputError, match="mixed modalities.*Modality \\(0008,0060\\)|Modality \\(0008,0060\\).*mixed"):
        read_series(tmp_path)


def test_inconsistent_orientation(tmp_path):
    write_series(tmp_path, ramp()[:, :, :2], series_uid="1.5", prefix="a")
    write_series(tmp_path, ramp()[:, :, :2], series_uid="1.5", prefix="b", row_cos=(0, 1, 0),
                 col_cos=(1, 0, 0), origin=(0, 0, 100))
    with pytest.raises(InputError, match="ImageOrientationPatient.*orientation"):
        read_series(tmp_path)


def test_pet_rescale_intercept(tmp_path):
    write_series(tmp_path, ramp(), intercept=5.0)
    with pytest.raises(InputError, match=r"RescaleIntercept \(0028,1052\).*must be 0"):
        read_series(tmp_path)


def test_truncated_file(tmp_path):
    files = write_series(tmp_path, ramp())
    data = files[2].read_bytes()
    files[2].write_bytes(data[:-40])  # cut into the pixel data
    with pytest.raises(InputError, match=f"{files[2].name}.*(truncated|corrupt)"):
        read_series(tmp_path)


def test_non_dicom_files_are_ignored(tmp_path):
    write_series(tmp_path, ramp())
    (tmp_path / "README.txt").write_text("not dicom")
    assert read_series(tmp_path).shape == (8, 6, 4)


def test_empty_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="no DICOM files"):
        read_series(tmp_path)
    shutil.rmtree(tmp_path)
    with pytest.raises(InputError, match="no such file"):
        read_series(tmp_path)


# ---- round trip through carpet.synth's DICOM writer ---------------------------------------------
@pytest.fixture(scope="module")
def phantom_dicom(tmp_path_factory):
    from carpet.synth import PhantomSpec, make_phantom

    ph = make_phantom(PhantomSpec.small(seed=3, weight_kg=64.0, sex="M", dose_mbq=310.0, uptake_min=65.0))
    return ph, ph.write_dicom(tmp_path_factory.mktemp("phantom"))


def test_suv_from_carpet_dicom_equals_phantom_suv(phantom_dicom):
    from carpet.suv import to_suv

    ph, paths = phantom_dicom
    suv, result = to_suv(paths["pet_dir"])
    assert suv.same_grid(ph.pet)
    truth = ph.pet.array.astype(np.float64)
    # int16 storage with a per-slice slope spanning the slice's range: error ≤ half a step
    step = np.abs(truth).max(axis=(0, 1)) / 32000
    err = np.abs(suv.array - truth).max(axis=(0, 1))
    assert np.all(err <= step / 2 + 1e-5), (err / np.maximum(step, 1e-12)).max()
    assert result.weight_kg == 64.0 and result.dose_bq == pytest.approx(310e6)
    assert "SeriesTime" in result.reference_time_rule


def test_ct_from_carpet_dicom_equals_phantom_ct(phantom_dicom):
    ph, paths = phantom_dicom
    ct = read_series(paths["ct_dir"])
    assert ct.same_grid(ph.ct) and ct.meta["units"] == "HU"
    np.testing.assert_array_equal(ct.array, ph.ct.array)
    pet, ct_on_pet = read_pet_ct(paths["pet_dir"].parent)
    assert ct_on_pet.same_grid(ph.pet) and pet.meta["units"] == "SUVbw"


def test_datasets_passed_in_are_not_modified(tmp_path):
    import pydicom

    files = write_series(tmp_path, ramp())
    datasets = [pydicom.dcmread(f) for f in files]
    vol = read_series(datasets)
    np.testing.assert_allclose(vol.array, ramp())
    assert all("PixelData" in ds for ds in datasets)


def test_compressed_series_decoded_by_pydicom(tmp_path):
    import pydicom
    from pydicom.uid import RLELossless

    values = ramp()
    for f in write_series(tmp_path, values, slopes=[1, 2, 1, 0.5]):
        ds = pydicom.dcmread(f)
        ds.compress(RLELossless)
        ds.save_as(f)
    assert pydicom.dcmread(f).file_meta.TransferSyntaxUID == RLELossless
    np.testing.assert_allclose(read_series(tmp_path).array, values)


def test_multiframe_refused(tmp_path):
    write_series(tmp_path, ramp(), header=pet_header(NumberOfFrames="2"))
    with pytest.raises(InputError, match=r"NumberOfFrames \(0028,0008\).*multi-frame"):
        read_series(tmp_path)


def test_ambiguous_ct_pairing(tmp_path):
    write_series(tmp_path / "pet", np.full((8, 6, 4), 1000.0), for_uid="9.9")
    for name in ("ct1", "ct2"):
        write_series(tmp_path / name, ramp(), header={"Modality": "CT"}, for_uid="9.9", prefix=name)
    with pytest.raises(InputError, match="several CT series match the PET.*--ct"):
        read_pet_ct(tmp_path)


@pytest.mark.parametrize("syntax", ["ImplicitVRLittleEndian", "ExplicitVRBigEndian",
                                    "DeflatedExplicitVRLittleEndian"])
def test_other_native_syntaxes_read_like_simpleitk(tmp_path, syntax):
    """Pixels are read from the file at the offset where the header parse stopped: the element
    header differs per syntax (8 bytes implicit, 12 explicit, big-endian values; deflated files go
    through pydicom). Checked against the written values and against SimpleITK/GDCM."""
    import pydicom
    from pydicom import uid

    values = ramp()
    for f in write_series(tmp_path, values, slopes=[1, 2, 1, 0.5]):
        ds = pydicom.dcmread(f)
        if syntax == "ExplicitVRBigEndian":  # pydicom writes the OW bytes as given: swap them here
            ds.PixelData = ds.pixel_array.astype(">i2").tobytes()
        ds.file_meta.TransferSyntaxUID = getattr(uid, syntax)
        if syntax == "ExplicitVRBigEndian":
            pydicom.dcmwrite(f, ds, implicit_vr=False, little_endian=False, force_encoding=True)
        else:
            ds.save_as(f, enforce_file_format=True)
    assert pydicom.dcmread(f).file_meta.TransferSyntaxUID == getattr(uid, syntax)
    vol = read_series(tmp_path)
    np.testing.assert_allclose(vol.array, values)
    if syntax != "DeflatedExplicitVRLittleEndian":  # GDCM's deflate support varies by build
        np.testing.assert_allclose(vol.array, _sitk_read(tmp_path).array, rtol=1e-6)


def test_file_ending_before_pixel_data(tmp_path):
    import pydicom

    files = write_series(tmp_path, ramp())
    with open(files[1], "rb") as fh:  # cut the file where the pixel data element starts
        pydicom.dcmread(fh, stop_before_pixels=True)
        end = fh.tell()
    files[1].write_bytes(files[1].read_bytes()[:end + 6])
    with pytest.raises(InputError, match=f"{files[1].name}.*no pixel data"):
        read_series(tmp_path)


def test_suv_in_the_decoding_pass_equals_suv_after_reading(tmp_path):
    """to_suv folds the factors into the rescale; read then convert must give the same SUV."""
    from carpet.io.dicom import _load
    from carpet.suv import series_to_suv, to_suv

    write_series(tmp_path, ramp(), slopes=[1, 2, 1, 0.5])
    fused, result = to_suv(tmp_path)
    separate, again = series_to_suv(_load(tmp_path))
    assert fused.array.dtype == np.float32 and fused.meta["units"] == "SUVbw"
    assert result.slice_factors == again.slice_factors
    np.testing.assert_allclose(fused.array, separate.array, rtol=1e-6)
    np.testing.assert_allclose(fused.array, read_series(tmp_path).array * result.factor, rtol=1e-6)
