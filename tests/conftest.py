"""Shared test fixtures.

Reference data from outside carpet lives in ``../shared/reference`` (never copied into the repo).
Tests that need it skip with a reason when it is absent, except under CI (``CI=true``), where it
is always present and its absence is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("CARPET_REFERENCE", ROOT.parent / "shared" / "reference"))


def reference_path(*parts: str) -> Path:
    """Path below ``../shared/reference``; skip (or fail under CI) when it is missing."""
    path = REFERENCE.joinpath(*parts)
    if not path.exists():
        msg = f"reference data not found: {path} (set CARPET_REFERENCE or check out ../shared)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture
def reference():
    """The ``reference_path`` function, as a fixture."""
    return reference_path
