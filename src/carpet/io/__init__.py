"""Reading and writing images and masks. Nothing outside ``carpet.io`` opens image files."""

from carpet.io.nifti import read_nifti, write_nifti

__all__ = ["read_nifti", "write_nifti"]
