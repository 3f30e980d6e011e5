"""The ``Volume`` value: a 3-D array with its place in the patient.

Conventions (the same everywhere in carpet):

* ``array`` is indexed ``[i, j, k]``: ``i`` runs along the image rows' direction (DICOM column index),
  ``j`` down the columns (DICOM row index), ``k`` across slices. This is nibabel's order and the
  transpose of SimpleITK's ``GetArrayFromImage``.
* World coordinates are DICOM patient coordinates, **LPS**, in millimetres (what ITK and DICOM use;
  NIfTI's RAS is converted on reading and writing).
* ``world = origin + direction @ (spacing * [i, j, k])``: ``origin`` is the centre of voxel (0, 0, 0),
  the columns of ``direction`` are the unit vectors of the i, j, k axes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from carpet.errors import InputError


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3-D image on a regular grid in LPS world space.

    Parameters
    ----------
    array : ndarray, shape (ni, nj, nk)
        Voxel values (SUV, HU, labels, ...).
    spacing : tuple of 3 floats
        Voxel size along i, j, k in mm.
    origin : tuple of 3 floats
        LPS position (mm) of the centre of voxel (0, 0, 0).
    direction : ndarray, shape (3, 3)
        Columns are the LPS unit vectors of the i, j, k axes.
    meta : dict
        Free-form facts about the image (modality, units, source, SUV provenance).
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        arr = np.asarray(self.array)
        if arr.ndim != 3:
            raise InputError(f"a volume must be 3-D, got shape {arr.shape}")
        spacing = tuple(float(s) for s in self.spacing)
        if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
            raise InputError(f"voxel spacing must be three positive numbers (mm), got {self.spacing}")
        direction = np.asarray(self.direction, dtype=float).reshape(3, 3)
        if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-4):
            raise InputError("direction cosines are not orthonormal (sheared or tilted grid)")
        object.__setattr__(self, "array", arr)
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "origin", tuple(float(o) for o in self.origin))
        object.__setattr__(self, "direction", direction)

    # -- geometry -------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)  # type: ignore[return-value]

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in mL (1 mL = 1000 mm³)."""
        sx, sy, sz = self.spacing
        return sx * sy * sz / 1000.0

    @property
    def affine(self) -> np.ndarray:
        """4×4 matrix mapping homogeneous voxel indices to LPS mm."""
        aff = np.eye(4)
        aff[:3, :3] = self.direction * np.asarray(self.spacing)[None, :]
        aff[:3, 3] = self.origin
        return aff

    def index_to_world(self, ijk: np.ndarray) -> np.ndarray:
        """Voxel indices (..., 3), possibly fractional, to LPS mm (..., 3)."""
        ijk = np.asarray(ijk, dtype=float)
        return ijk @ (self.direction * np.asarray(self.spacing)[None, :]).T + np.asarray(self.origin)

    def world_to_index(self, xyz: np.ndarray) -> np.ndarray:
        """LPS mm (..., 3) to fractional voxel indices (..., 3)."""
        xyz = np.asarray(xyz, dtype=float) - np.asarray(self.origin)
        return (xyz @ self.direction) / np.asarray(self.spacing)

    def same_grid(self, other: "Volume", atol_mm: float = 1e-3) -> bool:
        """True when ``other`` has the same shape, spacing, origin and direction."""
        return (self.shape == other.shape
                and np.allclose(self.spacing, other.spacing, atol=atol_mm)
                and np.allclose(self.origin, other.origin, atol=atol_mm)
                and np.allclose(self.direction, other.direction, atol=1e-6))

    def with_array(self, array: np.ndarray, **meta: Any) -> "Volume":
        """A volume on the same grid holding ``array`` (meta updated with ``meta``)."""
        if np.shape(array) != self.shape:
            raise InputError(f"array shape {np.shape(array)} does not match the grid {self.shape}")
        return replace(self, array=np.asarray(array), meta={**self.meta, **meta})

    # -- SimpleITK bridge -----------------------------------------------------------------------
    def to_sitk(self):
        """A SimpleITK image with the same geometry.

        A volume read through SimpleITK (:meth:`from_sitk`) whose array is still the untouched view of the
        image hands back that image (a SimpleITK copy, which shares the pixels until either is written):
        a whole-body CT is then resampled without copying its 200 MB. Otherwise the pixels are copied.
        """
        import SimpleITK as sitk

        source = _source_image(self)
        if source is not None:
            return sitk.Image(source)
        arr = self.array
        if arr.dtype == bool:
            arr = arr.astype(np.uint8)
        img = sitk.GetImageFromArray(np.ascontiguousarray(arr.transpose(2, 1, 0)))
        img.SetSpacing(self.spacing)
        img.SetOrigin(self.origin)
        img.SetDirection(tuple(self.direction.flatten()))
        return img

    @classmethod
    def from_sitk(cls, img, **meta: Any) -> "Volume":
        """Build a volume from a SimpleITK image without copying its pixels.

        The array is a transposed view of the image's own buffer; the image is kept alive by the
        array (through :class:`_ImageBuffer`), so reading a whole-body study costs no extra copy.
        The array is read-only; use ``vol.array.copy()`` to modify values.
        """
        arr = np.asarray(_ImageBuffer(img)).transpose(2, 1, 0)
        return cls(arr, img.GetSpacing(), img.GetOrigin(),
                   np.asarray(img.GetDirection(), dtype=float).reshape(3, 3), dict(meta))


class _ImageBuffer:
    """Expose a SimpleITK image's pixel buffer to numpy and keep the image alive while it is used.

    ``SimpleITK.GetArrayViewFromImage`` returns a view that dangles once the image is freed; an array
    made from this object has it as its ``base``, and this object holds the image.
    """

    def __init__(self, image) -> None:
        import SimpleITK as sitk

        self._image = image
        self.__array_interface__ = sitk.GetArrayViewFromImage(image).__array_interface__


def _source_image(vol: Volume):
    """The SimpleITK image ``vol``'s array is the whole, untransformed view of (see :meth:`Volume.from_sitk`),
    when its geometry is also the image's; else None."""
    arr = vol.array
    buffer = getattr(getattr(arr, "base", None), "base", None)
    if not isinstance(buffer, _ImageBuffer):
        return None
    img = buffer._image
    view = np.asarray(buffer).transpose(2, 1, 0)
    same_view = (arr.shape == view.shape and arr.strides == view.strides and arr.dtype == view.dtype
                 and arr.__array_interface__["data"][0] == view.__array_interface__["data"][0])
    same_geometry = (tuple(img.GetSpacing()) == vol.spacing and tuple(img.GetOrigin()) == vol.origin
                     and tuple(img.GetDirection()) == tuple(vol.direction.flatten()))
    return img if same_view and same_geometry else None


def resample_to(moving: Volume, reference: Volume, *, interpolation: str = "linear",
                default_value: float = 0.0) -> Volume:
    """Resample ``moving`` onto the grid of ``reference`` (SimpleITK, identity transform).

    Parameters
    ----------
    interpolation : {'linear', 'nearest', 'label'}
        ``'nearest'`` for masks and label maps, ``'label'`` for label maps where partial
        volumes should be decided by majority (SimpleITK's label-Gaussian), ``'linear'`` for images.
    default_value : float
        Value for reference voxels outside ``moving`` (use -1024 for CT in HU).
    """
    import SimpleITK as sitk

    modes = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor, "label": sitk.sitkLabelGaussian}
    if interpolation not in modes:
        raise InputError(f"interpolation must be one of {sorted(modes)}, got {interpolation!r}")
    if moving.same_grid(reference):
        return moving
    interp = modes[interpolation]
    out = sitk.Resample(moving.to_sitk(), reference.to_sitk(), sitk.Transform(), interp,
                        float(default_value))
    arr = sitk.GetArrayFromImage(out).transpose(2, 1, 0)
    return Volume(arr, reference.spacing, reference.origin, reference.direction, dict(moving.meta))
