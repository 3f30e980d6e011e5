"""Reading and writing images and masks. Nothing outside ``carpet.io`` opens image files."""

from __future__ import annotations

from pathlib import Path

from carpet.errors import InputError
from carpet.io.dicom import _load, find_series, read_pet_ct, read_series
from carpet.io.masks import read_mask, read_rtstruct, read_seg, write_seg
from carpet.io.nifti import read_nifti, write_nifti
from carpet.volume import Volume

__all__ = ["read_image", "read_nifti", "write_nifti", "read_series", "find_series", "read_pet_ct",
           "read_mask", "read_rtstruct", "read_seg", "write_seg"]

#: Units a NIfTI may declare (CT: HU); anything else cannot be turned into SUV without the DICOM header.
NIFTI_UNITS = ("SUVbw", "SUVlbm", "SUVbsa", "SUVibw", "HU")


def read_image(path: str | Path, *, units: str | None = None, on_bytes=None, **suv_options) -> Volume:
    """Read a PET or CT image from a NIfTI file or a DICOM series folder.

    Parameters
    ----------
    path : NIfTI file or DICOM folder
    units : str, optional
        For NIfTI only: what the voxels hold (one of ``NIFTI_UNITS``). A NIfTI without ``units`` is
        taken to be PET in SUVbw (the contract of ``carpet quantify``), recorded as
        ``meta['units_assumed'] = True``.
    on_bytes : callable, optional
        For NIfTI only: called once with the file's bytes as read (to hash them without a second read; see
        :func:`~carpet.io.nifti.read_nifti`). Not called for a DICOM folder.
    **suv_options
        For DICOM PET: ``norm``, ``lbm_formula`` and the overrides of :func:`carpet.suv.suv_factor`.

    Returns
    -------
    Volume
        PET in SUV (``meta['suv']`` holds the conversion record for DICOM) or CT in HU.
    """
    from carpet.suv import series_to_suv

    path = Path(path)
    if path.is_file() and path.name.endswith((".nii", ".nii.gz")):
        if units is not None and units not in NIFTI_UNITS:
            raise InputError(f"NIfTI voxels in {units!r} cannot be converted to SUV without the DICOM "
                             f"header; give a NIfTI in one of {NIFTI_UNITS} or the DICOM series",
                             source=path)
        return read_nifti(path, on_bytes=on_bytes, units=units or "SUVbw", units_assumed=units is None)
    if path.is_file():
        raise InputError("a single file that is not NIfTI: a DICOM image is a folder of slices, one "
                         "file each", source=path, hint="give the folder of the series")
    series = _load(path)  # one image series, or an error listing what the folder holds
    if series.volume.meta["modality"] == "PT":
        return series_to_suv(series, **suv_options)[0]
    return series.volume
