"""Harrell's concordance index as R's ``survival::concordance`` counts it.

Written here so that the counts (not only the ratio) are available per stratum, as R sums them over
strata for a stratified Cox model. Pairs are compared in blocks of rows with numpy (memory bounded,
O(n^2) comparisons, fast enough for cohorts of tens of thousands).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from carpet.stats._input import survival_arrays

_BLOCK = 512


@dataclass(frozen=True)
class ConcordanceCounts:
    """Pair counts of a concordance computation and Harrell's C = (concordant + tied_x/2) / comparable."""

    concordant: float
    discordant: float
    tied_x: float
    tied_y: float

    @property
    def concordance(self) -> float:
        total = self.concordant + self.discordant + self.tied_x
        return (self.concordant + 0.5 * self.tied_x) / total if total else float("nan")


def concordance_counts(time, event, risk, strata=None) -> ConcordanceCounts:
    """Count concordant/discordant pairs of a risk score against survival.

    Parameters
    ----------
    time, event : array-like
        Follow-up time and event indicator.
    risk : array-like
        Risk score, higher = earlier event expected (a Cox linear predictor; for a marker where
        high means *longer* survival pass its negative, like R's ``reverse``).
    strata : array-like, optional
        Pairs are formed within strata only.

    Notes
    -----
    A pair (i, j) is comparable when i has an event and j is known to outlive it: t_j > t_i, or
    t_j = t_i with j censored. Pairs with tied event times are not comparable (counted in
    ``tied_y``); pairs tied in ``risk`` count 1/2 (``tied_x``).
    """
    t, e = survival_arrays(time, event)
    x = np.asarray(risk, dtype=float).ravel()
    s = np.zeros(t.size, dtype=int) if strata is None else np.unique(np.asarray(strata), return_inverse=True)[1]
    conc = disc = tie_x = tie_y = 0.0
    for code in np.unique(s):
        sel = s == code
        ts, es, xs = t[sel], e[sel], x[sel]
        ev = np.flatnonzero(es)
        for start in range(0, ev.size, _BLOCK):
            i = ev[start:start + _BLOCK]
            ti, xi = ts[i][:, None], xs[i][:, None]
            later = (ts[None, :] > ti) | ((ts[None, :] == ti) & ~es[None, :])
            conc += np.count_nonzero(later & (xs[None, :] < xi))
            disc += np.count_nonzero(later & (xs[None, :] > xi))
            tie_x += np.count_nonzero(later & (xs[None, :] == xi))
            # event pairs at the same time, each unordered pair once
            same = (ts[None, :] == ti) & es[None, :]
            tie_y += (np.count_nonzero(same) - i.size) / 2
    return ConcordanceCounts(float(conc), float(disc), float(tie_x), float(tie_y))


def concordance_index(time, event, risk, strata=None) -> float:
    """Harrell's C of ``risk`` (higher = worse), as ``concordance(..., reverse=TRUE)$concordance`` in R."""
    return concordance_counts(time, event, risk, strata).concordance
