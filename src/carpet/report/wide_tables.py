"""Tables wider than the page: split into column groups that each repeat the key column.

A table is never set below a readable size to make it fit (the PDF's floor is 7 pt): when its columns, each
at its narrowest (the longest word of the column), do not fit the width, the columns after the key column
are dealt into consecutive groups, each printed as its own table with the key column first — as journals
print a wide survival table in two parts. Used by the PDF (widths in points) and the HTML report (pixels).
"""

from __future__ import annotations

from collections.abc import Sequence


def column_groups(widths: Sequence[float], available: float, key: int = 1) -> list[list[int]]:
    """Column indices of each part of a table whose columns need ``widths`` (any unit) in ``available``.

    Parameters
    ----------
    widths : sequence of float
        The narrowest width each column can take (its longest word, with padding).
    available : float
        The width of the page or text area, in the unit of ``widths``.
    key : int
        How many leading columns (the row labels) start every part.

    Returns
    -------
    list of list of int
        One list per part, in order, each beginning with ``range(key)``; a single part holding every column
        when they fit. A column wider than what the key columns leave still gets a part of its own.

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
    head, room = list(range(key)), available - sum(widths[:key])
    groups: list[list[int]] = []
    current: list[int] = []
    used = 0.0
    for c in range(key, len(widths)):
        if current and used + widths[c] > room:
            groups.append(current)
            current, used = [], 0.0
        current.append(c)
        used += widths[c]
    groups.append(current)
    # even parts read better than a full part and a stub: deal the columns out evenly over as many parts
    n_parts = len(groups)
    rest = list(range(key, len(widths)))
    even = [rest[round(k * len(rest) / n_parts):round((k + 1) * len(rest) / n_parts)] for k in range(n_parts)]
    if all(sum(widths[c] for c in part) <= room for part in even):
        groups = even
    return [head + part for part in groups]


def part_label(k: int, n: int, columns: Sequence) -> str:
    """How a part's caption names it: ``"part 1 of 2: n to S(6)"`` (its first and last column after the key
    column), or ``"part 1 of 2"`` when those columns have no names."""
    names = [str(c).strip() for c in list(columns)[1:]]
    if names and names[0] and names[-1]:
        return f"part {k} of {n}: {names[0]} to {names[-1]}" if len(names) > 1 else f"part {k} of {n}: {names[0]}"
    return f"part {k} of {n}"
