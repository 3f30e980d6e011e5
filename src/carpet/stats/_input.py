"""Validation of survival input arrays and data-frame columns (one place for every ``carpet.stats`` entry point)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from carpet.errors import InputError


def survival_arrays(time, event, *, source: str = "survival data") -> tuple[np.ndarray, np.ndarray]:
    """Return ``time`` as float and ``event`` as bool arrays after checking them.

    Raises
    ------
    InputError
        When lengths differ, a time is missing, negative or infinite, or an event is not 0/1.
    """
    t_raw = np.asarray(time).ravel()
    t = pd.to_numeric(pd.Series(t_raw), errors="coerce").to_numpy(dtype=float)
    text = np.flatnonzero(np.isnan(t) & pd.notna(t_raw))  # 'abc', not a missing value
    if text.size:
        i = int(text[0])
        raise InputError(f"time must be a number, got '{t_raw[i]}' ({text.size} such value(s))", source=source,
                         where=f"row {i}, column 'time'")
    e_raw = np.asarray(event).ravel()
    if t.shape != e_raw.shape:
        raise InputError(f"time has {t.size} values but event has {e_raw.size}; they must be the same length",
                         source=source)
    if t.size == 0:
        raise InputError("no observations", source=source)
    bad = ~np.isfinite(t) | (t < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"time must be a finite number >= 0, got {t[i]!r}", source=source,
                         where=f"row {i}, column 'time'")
    e_num = pd.to_numeric(pd.Series(e_raw, dtype=object), errors="coerce").to_numpy(dtype=float)
    bad = ~np.isin(e_num, (0.0, 1.0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"event must be 0 (censored) or 1 (event), got '{e_raw[i]}' ({int(bad.sum())} such "
                         "value(s))", source=source,
                         where=f"row {i}, column 'event'")
    return t, e_num.astype(bool)


def require_columns(df: pd.DataFrame, columns: Sequence[str]) -> None:
    """Raise :class:`InputError` naming the columns of ``columns`` that ``df`` lacks."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(f"column(s) {missing} not found; available: {list(df.columns)}", where="columns")


def design_matrix(df: pd.DataFrame, covariates: Sequence[str],
                  reference: dict | None = None) -> tuple[pd.DataFrame, dict[str, list[int]]]:
    """Numeric design matrix (no intercept) and its columns per covariate (term).

    Categorical/text/bool columns become treatment dummies against a reference level, named like R
    (``column + level``): the first level (R's default), or ``reference[column]`` (R's ``relevel``).
    Levels no row uses are left out (R reports NA for them).
    """
    reference = reference or {}
    if not reference and all(pd.api.types.is_numeric_dtype(df[c]) and df[c].dtype != bool for c in covariates):
        # the common case, without a pandas concat
        return (pd.DataFrame(df[list(covariates)].to_numpy(dtype=float), columns=list(covariates)),
                {c: [k] for k, c in enumerate(covariates)})
    unknown = set(reference) - set(covariates)
    if unknown:
        raise InputError(f"reference levels given for {sorted(unknown)}, which are not covariates",
                         where="reference")
    parts = []
    for c in covariates:
        col = df[c]
        if isinstance(col.dtype, pd.CategoricalDtype) or col.dtype == object or col.dtype == bool:
            cat = col.astype("category") if not isinstance(col.dtype, pd.CategoricalDtype) else col
            cat = cat.cat.remove_unused_categories()  # e.g. a level only rows with a missing value had
            if c in reference:
                ref = reference[c]
                if ref not in list(cat.cat.categories):
                    raise InputError(f"reference level {ref!r} of {c!r} is not among its levels "
                                     f"{list(cat.cat.categories)}", where=f"column {c!r}")
                cat = cat.cat.reorder_categories([ref] + [v for v in cat.cat.categories if v != ref])
            parts.append(pd.get_dummies(cat, prefix=c, prefix_sep="", drop_first=True, dtype=float))
        elif c in reference:
            raise InputError(f"reference level given for numeric column {c!r}; make it categorical",
                             where=f"column {c!r}")
        else:
            parts.append(col.astype(float).to_frame(c))
    terms, start = {}, 0
    for c, part in zip(covariates, parts):
        terms[c] = list(range(start, start + part.shape[1]))
        start += part.shape[1]
    return pd.concat(parts, axis=1), terms
