"""Harrell's concordance index as R's ``survival::concordance`` counts it, with R's standard error.

Written here so that the counts (not only the ratio) are available per stratum, as R sums them over
strata for a stratified Cox model, together with the infinitesimal-jackknife standard error. Pair
counts use dyadic range counting with numpy (O(n log² n), no Python loop over subjects).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from carpet.errors import InputError
from carpet.stats._input import survival_arrays


def _prefix_counts(pt_pos, pt_rank, queries) -> list[np.ndarray]:
    """For each query set (q_pos, q_rank, side): #{points with pt_pos < q_pos and pt_rank < q_rank}
    (side="left"), or pt_rank <= q_rank (side="right").

    [0, q_pos) is the union of dyadic blocks [b·2^l, (b+1)·2^l) over the set bits l of q_pos, with
    b = (q_pos >> l) − 1; within a block the ranks are counted by binary search in sorted keys. The
    points are sorted once per level for all query sets.
    """
    outs = [np.zeros(q_pos.size, dtype=np.int64) for q_pos, _, _ in queries]
    if pt_pos.size == 0 or all(q[0].size == 0 for q in queries):
        return outs
    span = int(max(pt_rank.max(), *(q[1].max() for q in queries if q[1].size))) + 2
    top = max(int(q[0].max()) for q in queries if q[0].size)
    for level in range(top.bit_length()):
        block = pt_pos >> level
        keys = np.sort(block * span + pt_rank)
        # where each block starts in the sorted keys (points in lower blocks)
        starts = np.concatenate(([0], np.cumsum(np.bincount(block, minlength=(top >> level) + 1))))
        for out, (q_pos, q_rank, side) in zip(outs, queries):
            has = ((q_pos >> level) & 1).astype(bool)
            if not has.any():
                continue
            b = (q_pos[has] >> level) - 1
            out[has] += np.searchsorted(keys, b * span + q_rank[has], side=side) - starts[b]
    return outs


@dataclass(frozen=True)
class ConcordanceCounts:
    """Pair counts of a concordance computation and Harrell's C = (concordant + tied_x/2) / comparable."""

    concordant: float
    discordant: float
    tied_x: float
    tied_y: float
    tied_xy: float
    std_err: float = float("nan")

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
    t_j = t_i with j censored. Pairs of events at the same time are not comparable (counted in
    ``tied_y``, or ``tied_xy`` when also tied in risk); comparable pairs tied in ``risk`` count 1/2
    (``tied_x``). ``std_err`` is the infinitesimal-jackknife standard error, as R reports it.
    """
    return _concordance(time, event, risk, strata)[0]


def _concordance(time, event, risk, strata=None) -> tuple[ConcordanceCounts, np.ndarray]:
    """The counts and each subject's infinitesimal-jackknife influence on C (input order)."""
    t, e = survival_arrays(time, event)
    x = np.asarray(risk, dtype=float).ravel()
    if x.shape != t.shape or not np.isfinite(x).all():
        raise InputError(f"risk needs one finite value per subject ({t.size}); got {x.size} values, "
                         f"{int(np.sum(~np.isfinite(x)))} missing or infinite", where="risk")
    if strata is not None and np.size(strata) != t.size:
        raise InputError(f"strata has {np.size(strata)} values but time has {t.size}", where="strata")
    strata_codes = (np.zeros(t.size, dtype=np.int64) if strata is None
                    else np.unique(np.asarray(strata), return_inverse=True)[1].ravel())
    order = np.lexsort((~e, t, strata_codes))  # stratum, time, events before censorings
    t, e, s = t[order], e[order], strata_codes[order]
    r = (rankdata(x[order], method="dense") - 1).astype(np.int64)
    n = t.size
    pos = np.arange(n, dtype=np.int64)
    new = np.ones(n, dtype=bool)
    new[1:] = (s[1:] != s[:-1])
    stratum_end = np.concatenate((np.flatnonzero(new)[1:], [n]))[np.cumsum(new) - 1]
    new_run = new.copy()
    new_run[1:] |= (t[1:] != t[:-1]) | (e[1:] != e[:-1])
    run_end = np.concatenate((np.flatnonzero(new_run)[1:], [n]))[np.cumsum(new_run) - 1]
    ev = np.flatnonzero(e)
    # event i is compared with the rows after its run of tied events, up to the end of its stratum
    p_i, end_i, r_i = run_end[ev], stratum_end[ev], r[ev]

    end_l, p_l, end_r, p_r = _prefix_counts(pos, r, [(end_i, r_i, "left"), (p_i, r_i, "left"),
                                                     (end_i, r_i, "right"), (p_i, r_i, "right")])
    lower, lower_eq = end_l - p_l, end_r - p_r
    comparable = end_i - p_i
    tied = lower_eq - lower
    conc, tie_x = float(lower.sum()), float(tied.sum())
    disc = float((comparable - lower_eq).sum())

    # the same pairs seen from the later member j: events i with p_i <= j < end_i
    later = [(pos + 1, np.full(n, r.max() + 1, dtype=np.int64), "left"), (pos + 1, r, "right"), (pos + 1, r, "left")]
    from_p, from_end = _prefix_counts(p_i, r_i, later), _prefix_counts(end_i, r_i, later)
    total_j, le_j, lt_j = (a - b for a, b in zip(from_p, from_end))
    higher_j, tied_j = total_j - le_j, le_j - lt_j
    # per-subject sums over its pairs (score 1, 1/2, 0 and number of comparable pairs) for the IJ error
    score_i = higher_j + 0.5 * tied_j
    comparable_i = total_j.astype(float)
    score_i[ev] += lower + 0.5 * tied
    comparable_i[ev] += comparable

    # events tied in time (not comparable): tied_y, or tied_xy when also tied in risk
    def tied_pairs(*keys):
        _, counts = np.unique(np.stack(keys), axis=1, return_counts=True)
        return float(np.sum(counts * (counts - 1) / 2))

    same_time = tied_pairs(s[ev], t[ev])
    tie_xy = tied_pairs(s[ev], t[ev], r_i)
    total = conc + disc + tie_x
    c = (conc + 0.5 * tie_x) / total if total else float("nan")
    # infinitesimal jackknife: dC/dw_k = (dN_k - C dD_k) / D, var = sum_k (dC/dw_k)^2
    influence = np.full(n, np.nan)
    if total:
        influence[order] = (score_i - c * comparable_i) / total
    se = float(np.sqrt(np.sum(influence**2))) if total else float("nan")
    return ConcordanceCounts(conc, disc, tie_x, same_time - tie_xy, tie_xy, se), influence


def concordance_index(time, event, risk, strata=None) -> float:
    """Harrell's C of ``risk`` (higher = worse), as ``concordance(..., reverse=TRUE)$concordance`` in R."""
    return concordance_counts(time, event, risk, strata).concordance


def concordance_contrasts(time, event, risks, conf_level: float = 0.95):
    """Harrell's C of several risk scores on the same subjects, their joint covariance and every pairwise difference,
    as R ``concordance(fit1, fit2, ...)`` and the contrasts of its coefficients.

    The covariance is the cross-product of the subjects' infinitesimal-jackknife influences (R's ``vcov`` of the
    concordance object); a difference C_a − C_b has the variance V_aa + V_bb − 2 V_ab, a normal CI and a two-sided
    z-test p, as the contrasts of R's concordance vignette.

    Parameters
    ----------
    time, event : array-like
        Follow-up time and event indicator (1 = event), one per subject.
    risks : mapping name -> array-like
        At least two risk scores (higher = earlier event expected, e.g. Cox linear predictors).
    conf_level : float
        Level of the intervals.

    Returns
    -------
    tuple of (DataFrame, DataFrame)
        ``estimates``: ``model, c_index, se``; ``contrasts``: one row per pair ``model_a, model_b, c_a, c_b,
        difference`` (a − b), ``se, lower, upper, z, p_value``.
    """
    import pandas as pd
    from scipy import stats

    if len(risks) < 2:
        raise InputError(f"concordance contrasts need at least two risk scores, got {list(risks)}", where="risks")
    fits = {name: _concordance(time, event, r) for name, r in risks.items()}
    names = list(fits)
    c = np.array([fits[k][0].concordance for k in names])
    infl = np.column_stack([fits[k][1] for k in names])
    vcov = infl.T @ infl
    z = stats.norm.ppf(0.5 + conf_level / 2)
    rows = []
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            d = c[i] - c[j]
            se = float(np.sqrt(max(vcov[i, i] + vcov[j, j] - 2 * vcov[i, j], 0.0)))
            zstat = d / se if se > 0 else float("nan")
            rows.append({"model_a": names[i], "model_b": names[j], "c_a": c[i], "c_b": c[j], "difference": d,
                         "se": se, "lower": d - z * se, "upper": d + z * se, "z": zstat,
                         "p_value": float(2 * stats.norm.sf(abs(zstat))) if se > 0 else float("nan")})
    estimates = pd.DataFrame({"model": names, "c_index": c, "se": np.sqrt(np.diag(vcov))})
    return estimates, pd.DataFrame(rows)
