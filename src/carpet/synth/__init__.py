"""Synthetic data with known truth: digital PET/CT phantoms (and, later, simulated cohorts)."""

from carpet.synth.phantom import LesionSpec, Phantom, PhantomSpec, make_phantom

__all__ = ["LesionSpec", "Phantom", "PhantomSpec", "make_phantom"]
