"""Errors carpet raises for bad input.

Every error a user can meet says *where* (file, DICOM tag, table row/column) and *what was expected*.
The CLI prints the message and exits non-zero; it never shows a traceback for a ``CarpetError``.
"""

from __future__ import annotations

from pathlib import Path


class CarpetError(Exception):
    """Base class of all errors carpet reports to its users."""


class InputError(CarpetError, ValueError):
    """Input data that carpet cannot turn into a trustworthy number.

    Parameters
    ----------
    message : str
        What is wrong and what was expected.
    source : str or Path, optional
        The file (or table) the problem is in.
    where : str, optional
        The place inside the source: a DICOM tag such as ``PatientWeight (0010,1030)``,
        or ``row 12, column 'date'``.
    hint : str, optional
        How to fix it, e.g. the command-line flag that supplies a missing value.
    """

    def __init__(self, message: str, *, source: str | Path | None = None,
                 where: str | None = None, hint: str | None = None):
        self.message = message
        self.source = None if source is None else str(source)
        self.where = where
        self.hint = hint
        super().__init__(self._format())

    def _format(self) -> str:
        parts = []
        if self.source:
            parts.append(self.source)
        if self.where:
            parts.append(self.where)
        text = (": ".join(parts) + ": " if parts else "") + self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class OutputError(CarpetError):
    """carpet cannot write where it was told to (``--out`` is a file, locked, read-only, full…).

    The message starts with the path; nothing already written there is lost.
    """

    def __init__(self, message: str, *, path: str | Path, hint: str | None = None):
        self.path = str(path)
        super().__init__(f"{path}: {message}" + (f" ({hint})" if hint else ""))


class NotYetAvailable(CarpetError):
    """A command or option whose implementation has not landed yet."""
