"""Provenance records: how every number a user sees was made.

A provenance record is a plain, JSON-serialisable ``dict`` that travels with results
(``summary.json``, CSV side-cars, report footers). It always carries the carpet version and
the time of the run; callers add the method, thresholds, ruleset ids and input hashes.
"""

from __future__ import annotations

import hashlib
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from carpet import __version__
from carpet.errors import InputError


def file_sha256(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """SHA-256 of a file, or of every file below a folder (sorted by relative path)."""
    path = Path(path)
    if not path.exists():
        raise InputError("file not found (cannot hash it for provenance)", source=path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            digest.update(f.relative_to(path).as_posix().encode())  # same hash on every OS
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(chunk_bytes), b""):
                digest.update(chunk)
    return digest.hexdigest()


def bytes_sha256(data: bytes) -> str:
    """SHA-256 of bytes already in memory (a file's, as its reader read them): the same digest as
    :func:`file_sha256` of that file, without reading it again. hashlib releases the GIL while it hashes."""
    return hashlib.sha256(data).hexdigest()


def provenance(**fields: Any) -> dict[str, Any]:
    """Return a provenance record: carpet version, UTC time, Python version and ``fields``.

    Examples
    --------
    >>> rec = provenance(method="suv4", threshold_suv=4.0)
    >>> rec["method"], rec["carpet_version"] == __version__
    ('suv4', True)
    """
    record: dict[str, Any] = {
        "carpet_version": __version__,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
    }
    record.update(fields)
    return record
