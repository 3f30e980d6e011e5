"""Tables wider than the page: split into column groups that each repeat the key column.

A table is never set below a readable size to make it fit (the PDF's floor is 7 pt): when its columns, each
at its narrowest (the longest word of the column), do not fit the width, the columns after the key columns
(:func:`key_columns`) are dealt into consecutive groups, each printed as its own table with the key columns
first — as journals
print a wide survival table in two parts. Used by the PDF (widths in points) and the HTML report (pixels).
"""

from __future__ import annotations

import re
from collections.abc import Sequence


def column_groups(widths: Sequence[float], available: float, key: int = 1,
                  natural: Sequence[float] | None = None) -> list[list[int]]:
    """Column indices of each part of a table whose columns need ``widths`` (any unit) in ``available``.

    Parameters
    ----------
    widths : sequence of float
        The narrowest width each column can take (its longest word, with padding).
    available : float
        The width of the page or text area, in the unit of ``widths``.
    key : int
        How many leading columns (the row labels) start every part.
    natural : sequence of float, optional
        The width each column takes unwrapped. When the table fits in as few parts at these widths (or
        one more), the parts are cut by them, so that no cell has to wrap.

    Returns
    -------
    list of list of int
        One list per part, in order, each beginning with ``range(key)``; a single part holding every column
        when they fit. The columns are dealt so that the parts are about equally wide. A column wider than
        what the key columns leave still gets a part of its own.

    Examples
    --------
    >>> column_groups([50, 40, 40, 40], 200)
    [[0, 1, 2, 3]]
    >>> column_groups([50, 40, 40, 40, 40], 150)
    [[0, 1, 2], [0, 3, 4]]
    """
    widths = [float(w) for w in widths]
    if sum(widths) <= available or len(widths) <= key:
        return [list(range(len(widths)))]
    key = max(0, min(key, len(widths) - 1))
    parts = _balanced(widths, available, key)
    if natural is not None:
        unwrapped = _balanced([float(w) for w in natural], available, key)
        if len(unwrapped) <= len(parts) + 1:
            parts = unwrapped
    return [list(range(key)) + part for part in parts]


def _balanced(widths: list[float], available: float, key: int) -> list[list[int]]:
    """The columns after ``key`` in the fewest contiguous parts that fit, each part about equally wide."""
    room = available - sum(widths[:key])
    rest = list(range(key, len(widths)))

    def pack(limit: float) -> list[list[int]]:
        parts: list[list[int]] = [[]]
        used = 0.0
        for c in rest:
            if parts[-1] and used + widths[c] > limit:
                parts.append([])
                used = 0.0
            parts[-1].append(c)
            used += widths[c]
        return parts

    fewest = len(pack(room))
    low, high = max(widths[c] for c in rest), max(room, max(widths[c] for c in rest))
    for _ in range(40):  # the narrowest limit that still needs no more parts: balanced parts
        mid = (low + high) / 2
        low, high = (mid, high) if len(pack(mid)) > fewest else (low, mid)
    return pack(high)


def key_columns(header: Sequence) -> int:
    """How many leading columns label the rows: the first, and the unnamed ones right after it (Table 1's
    level column: "Product, n (%)" | "ide-cel")."""
    names = [str(h).strip() for h in header]
    k = 1
    while k < len(names) - 1 and not names[k]:
        k += 1
    return k


def part_label(k: int, n: int, columns: Sequence) -> str:
    """How a part's caption names it: ``"part 1 of 2: n to S(6)"`` (its first and last column after the key
    columns), or ``"part 1 of 2"`` when those columns have no names."""
    names = [str(c).strip() for c in list(columns)[key_columns(columns):]]
    if names and names[0] and names[-1]:
        return f"part {k} of {n}: {names[0]} to {names[-1]}" if len(names) > 1 else f"part {k} of {n}: {names[0]}"
    return f"part {k} of {n}"


def part_caption(caption: str, k: int, n: int, columns: Sequence) -> str:
    """``caption`` of part ``k`` of ``n``: the part's label goes before a closing ``(file.csv)``, so the
    caption still ends with the file the table comes from."""
    label = part_label(k, n, columns)
    m = re.fullmatch(r"(.*?)\s*(\([\w.-]+\.csv\))", caption, re.S)
    return f"{m.group(1)} — {label} {m.group(2)}" if m else f"{caption} — {label}"
