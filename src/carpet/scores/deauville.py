"""Deauville 5-point scale, quantitative proxy (spec ``clinical-rules.md`` §2.2–2.3).

The Deauville scale is visual; this is the operational proxy of spec §2.3 [C]: lesion uptake ``u`` (SUVmax by
default) against the mediastinal blood pool (``mbp``, SUVmean of the aorta cylinder) and the liver (SUVmean of
the 3-cm sphere)::

    new lesion, lymphoma related     → 5
    new lesion, not lymphoma related → 'X'
    u <= background                  → 1
    u <= mbp                         → 2     (if mbp >= liver, spec §2.2: u < liver → 2)
    u <= liver                       → 3     (so u == liver scores 3 either way)
    u >  marked_factor × liver_ref   → 5     (liver_ref = liver SUVmax, Barrington 2010, or SUVmean)
    otherwise                        → 4

Rulesets: ``LUGANO_Q2`` (``marked_factor`` 2, the default) and ``LUGANO_Q3`` (3). A missing or unusable
reference gives ``'NE'`` (not evaluable) — never a guessed score (spec §1.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from carpet.errors import InputError
from carpet.provenance import provenance

__all__ = ["DeauvilleParams", "deauville_score", "deauville_scores", "deauville_from_references",
           "study_deauville", "numeric_scores", "NOT_EVALUABLE"]

NOT_EVALUABLE = "NE"


@dataclass(frozen=True)
class DeauvilleParams:
    """Switches of the quantitative Deauville proxy (spec §2.3).

    Attributes
    ----------
    marked_factor : float
        "Markedly higher than liver" = uptake > ``marked_factor`` × ``marked_ref`` (2.0 → ``LUGANO_Q2``,
        3.0 → ``LUGANO_Q3``; spec range [2, 3]).
    marked_ref : {'liver_suv_max', 'liver_suv_mean'}
        Liver statistic the marked threshold multiplies (default liver SUVmax, per Barrington 2010).
    uptake : {'suv_max', 'suv_peak'}
        Lesion statistic compared (recorded; the caller passes the matching values).
    background : float
        Uptake at or below which the score is 1 ("no uptake above background"), SUV.
    """

    marked_factor: float = 2.0
    marked_ref: str = "liver_suv_max"
    uptake: str = "suv_max"
    background: float = 0.0

    def __post_init__(self) -> None:
        if not 2.0 <= self.marked_factor <= 3.0:
            raise InputError(f"marked_factor must lie in [2, 3] (spec §2.3), got {self.marked_factor}")
        if self.marked_ref not in ("liver_suv_max", "liver_suv_mean"):
            raise InputError(f"marked_ref must be 'liver_suv_max' or 'liver_suv_mean', got {self.marked_ref!r}")
        if self.uptake not in ("suv_max", "suv_peak"):
            raise InputError(f"uptake must be 'suv_max' or 'suv_peak', got {self.uptake!r}")

    @property
    def ruleset(self) -> str:
        return {2.0: "LUGANO_Q2", 3.0: "LUGANO_Q3"}.get(float(self.marked_factor),
                                                        f"LUGANO_Q{self.marked_factor:g}")

    def provenance(self, **fields: Any) -> dict[str, Any]:
        return provenance(ruleset=self.ruleset, marked_factor=self.marked_factor, marked_ref=self.marked_ref,
                          uptake=self.uptake, background=self.background, **fields)


def _valid(x) -> bool:
    return x is not None and np.isfinite(x)


def deauville_score(uptake: float, *, mbp: float | None, liver: float | None, liver_max: float | None = None,
                    is_new_lesion: bool = False, lymphoma_related: bool = True,
                    params: DeauvilleParams = DeauvilleParams()) -> int | str:
    """Deauville score of one uptake value.

    Parameters
    ----------
    uptake : float
        Lesion (or marrow) uptake, SUV.
    mbp : float or None
        Mediastinal blood-pool SUVmean; None/NaN when unusable.
    liver : float or None
        Liver SUVmean; None/NaN when unusable.
    liver_max : float, optional
        Liver SUVmax, needed when ``params.marked_ref == 'liver_suv_max'``.
    is_new_lesion, lymphoma_related : bool
        New lesions score 5 (lymphoma-related) or ``'X'``.

    Returns
    -------
    int 1–5, ``'X'`` or ``'NE'``
    """
    if is_new_lesion:
        return 5 if lymphoma_related else "X"
    marked_ref = liver_max if params.marked_ref == "liver_suv_max" else liver
    if not (_valid(uptake) and _valid(mbp) and _valid(liver) and _valid(marked_ref)):
        return NOT_EVALUABLE
    if uptake <= params.background:
        return 1
    # Lugano rule (spec §2.2): if MBP >= liver, compare with the liver: < liver → 2, = liver → 3.
    if uptake < liver if mbp >= liver else uptake <= mbp:
        return 2
    if uptake <= liver:
        return 3
    if uptake > params.marked_factor * marked_ref:
        return 5
    return 4


def deauville_scores(uptakes: Iterable[float], **kwargs: Any) -> list[int | str]:
    """:func:`deauville_score` for each value of ``uptakes`` (same references and switches)."""
    return [deauville_score(float(u), **kwargs) for u in uptakes]


def deauville_from_references(uptakes: Iterable[float], liver, blood_pool,
                              params: DeauvilleParams = DeauvilleParams()) -> list[int | str]:
    """Scores against :class:`carpet.anatomy.ReferenceRegion` objects; an unusable reference gives ``'NE'``.

    ``liver.mean`` is the liver reference, ``liver.max`` the marked-uptake reference when
    ``params.marked_ref == 'liver_suv_max'``, ``blood_pool.mean`` the mediastinal blood pool.
    """
    def ref(region, attr):
        return getattr(region, attr) if region is not None and region.usable else None

    return deauville_scores(uptakes, mbp=ref(blood_pool, "mean"), liver=ref(liver, "mean"),
                            liver_max=ref(liver, "max"), params=params)


def numeric_scores(scores: Iterable) -> tuple[list[int], bool]:
    """The numeric scores (``'X'`` dropped) and whether any is not evaluable (``'NE'``, None or NaN)."""
    out, ne = [], False
    for s in scores:
        if s is None or (isinstance(s, str) and s == NOT_EVALUABLE) or (isinstance(s, float) and np.isnan(s)):
            ne = True
        elif s != "X":
            out.append(int(s))
    return out, ne


def study_deauville(scores: Iterable[int | str]) -> int | str:
    """Study-level score: the highest numeric score; ``'NE'`` if any lesion is not evaluable (``'NE'``, None
    or NaN); 1 with no lesions.

    ``'X'`` (new uptake unrelated to lymphoma) does not raise the study score.
    """
    numeric, ne = numeric_scores(scores)
    if ne:
        return NOT_EVALUABLE
    return max(numeric, default=1)
