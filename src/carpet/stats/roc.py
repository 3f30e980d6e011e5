"""ROC curve, AUC with DeLong's confidence interval, the paired DeLong test and the Youden cut-off, as R's pROC.

``roc`` = ``pROC::roc(y, score)`` (direction chosen as pROC does: ``"<"`` when the controls' median score is
at most the cases' median) with ``ci.auc(method = "delong")``; ``roc_test`` = ``roc.test(roc1, roc2, method =
"delong", paired = TRUE)``; :attr:`Roc.youden` = ``coords(roc, "best", best.method = "youden")``.

Written here: scikit-learn (not a dependency) gives the curve and AUC but neither the DeLong variance nor the
test, and statsmodels has no ROC. DeLong's structural components are computed with mid-ranks (Sun & Xu 2014),
O(n log n).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from carpet.errors import InputError
from carpet.provenance import provenance


def _pairs(y, score, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Outcome (bool) and score arrays with rows missing either value dropped (pROC's ``na.rm``)."""
    yv = pd.to_numeric(pd.Series(np.asarray(y, dtype=object).ravel()), errors="coerce").to_numpy(float)
    sv = pd.to_numeric(pd.Series(np.asarray(score, dtype=object).ravel()), errors="coerce").to_numpy(float)
    if yv.size != sv.size:
        raise InputError(f"{names[0]} has {yv.size} values but {names[1]} has {sv.size}", where=names[1])
    keep = ~np.isnan(yv) & ~np.isnan(sv)
    yv, sv = yv[keep], sv[keep]
    bad = ~np.isin(yv, (0.0, 1.0))
    if bad.any():
        raise InputError(f"{names[0]} must be 0 (control) or 1 (case), got {yv[bad][0]!r}", where=names[0])
    if np.isinf(sv).any():
        raise InputError(f"{names[1]} has infinite values", where=names[1])
    if yv.sum() == 0 or yv.sum() == yv.size:
        raise InputError(f"ROC analysis needs cases (1) and controls (0); {names[0]} has "
                         f"{int(yv.sum())} cases and {int(yv.size - yv.sum())} controls among complete rows",
                         where=names[0])
    return yv.astype(bool), sv


def _components(cases: np.ndarray, controls: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC = P(case > control) + P(tie)/2 and DeLong's placement values V10 (per case), V01 (per control)."""
    m, n = cases.size, controls.size
    both = stats.rankdata(np.concatenate((cases, controls)))
    rank_x, rank_y = stats.rankdata(cases), stats.rankdata(controls)
    v10 = (both[:m] - rank_x) / n          # share of controls below each case (ties 1/2)
    v01 = 1 - (both[m:] - rank_y) / m      # share of cases above each control (ties 1/2)
    return float(v10.mean()), v10, v01


def _direction(cases: np.ndarray, controls: np.ndarray) -> str:
    return "<" if np.median(controls) <= np.median(cases) else ">"


@dataclass(frozen=True)
class Roc:
    """A ROC analysis (create with :func:`roc`).

    Attributes
    ----------
    auc, auc_se, auc_ci : AUC, DeLong standard error and interval (clipped to [0, 1] as pROC does).
    direction : ``"<"`` (higher score = case) or ``">"``.
    curve : DataFrame with threshold, sensitivity, specificity (pROC's thresholds: -inf, mid-points between
        successive distinct scores, +inf).
    n_cases, n_controls, n_dropped : complete rows used and rows dropped for a missing value.
    """

    auc: float
    auc_se: float
    auc_ci: tuple[float, float]
    direction: str
    curve: pd.DataFrame
    n_cases: int
    n_controls: int
    n_dropped: int
    conf_level: float

    @property
    def youden(self) -> pd.DataFrame:
        """Threshold(s) maximising sensitivity + specificity − 1 (all ties, as pROC ``coords(.., "best")``)."""
        j = self.curve["sensitivity"] + self.curve["specificity"]
        best = self.curve[np.isclose(j, j.max(), rtol=0, atol=1e-12)]
        return best.assign(youden=best["sensitivity"] + best["specificity"] - 1).reset_index(drop=True)

    @property
    def provenance(self) -> dict:
        return provenance(method="ROC", auc="Mann-Whitney (ties 1/2)", ci="DeLong (R pROC ci.auc)",
                          direction=self.direction, conf_level=self.conf_level, n_dropped=self.n_dropped)


def roc(y, score, *, direction: str = "auto", conf_level: float = 0.95) -> Roc:
    """ROC curve and AUC of ``score`` for the binary outcome ``y``, with DeLong's CI.

    Parameters
    ----------
    y : array-like of 0/1
        Outcome (1 = case). Rows where ``y`` or ``score`` is missing are dropped.
    score : array-like
        Marker (e.g. MTV in mL).
    direction : {"auto", "<", ">"}
        ``"<"``: higher scores indicate cases; ``"auto"`` chooses by the medians (pROC's rule, so the AUC
        is >= 0.5 in most data).
    conf_level : float

    Returns
    -------
    Roc
    """
    n_all = np.size(y)
    yv, sv = _pairs(y, score, ("y", "score"))
    cases, controls = sv[yv], sv[~yv]
    if direction == "auto":
        direction = _direction(cases, controls)
    if direction not in ("<", ">"):
        raise InputError(f"direction must be 'auto', '<' or '>', got {direction!r}", where="direction")
    sign = 1.0 if direction == "<" else -1.0
    auc, v10, v01 = _components(sign * cases, sign * controls)
    var = float(np.var(v10, ddof=1) / cases.size + np.var(v01, ddof=1) / controls.size) \
        if cases.size > 1 and controls.size > 1 else float("nan")
    se = float(np.sqrt(var))
    z = stats.norm.ppf(1 - (1 - conf_level) / 2)
    ci = tuple(float(v) for v in np.clip([auc - z * se, auc + z * se], 0.0, 1.0))  # NaN stays NaN
    levels = np.unique(sv)
    thresholds = np.concatenate(([-np.inf], (levels[1:] + levels[:-1]) / 2, [np.inf])) if levels.size > 1 \
        else np.array([-np.inf, np.inf])
    # "<": positive when score > threshold; ">": positive when score < threshold
    cs, ct = np.sort(cases), np.sort(controls)
    above_case = cases.size - np.searchsorted(cs, thresholds, side="right")
    above_ctrl = controls.size - np.searchsorted(ct, thresholds, side="right")
    if direction == "<":
        sens, spec = above_case / cases.size, 1 - above_ctrl / controls.size
    else:
        sens, spec = 1 - above_case / cases.size, above_ctrl / controls.size
    curve = pd.DataFrame({"threshold": thresholds, "sensitivity": sens, "specificity": spec})
    return Roc(auc, se, ci, direction, curve, int(cases.size), int(controls.size), int(n_all - sv.size), conf_level)


@dataclass(frozen=True)
class RocTest:
    """Paired DeLong test of two correlated AUCs: ``auc1 − auc2``, its standard error, z and two-sided p."""

    auc1: float
    auc2: float
    difference: float
    se: float
    statistic: float
    p_value: float
    n: int

    @property
    def provenance(self) -> dict:
        return provenance(method="DeLong test of two paired ROC curves (R pROC roc.test, method='delong')",
                          n=self.n)


def roc_test(y, score1, score2, *, direction1: str = "auto", direction2: str = "auto") -> RocTest:
    """DeLong's test of two correlated AUCs measured on the same subjects.

    Each curve's direction is chosen on its own (as pROC's ``roc`` does before ``roc.test``); only rows
    with ``y`` and both scores present are used.
    """
    s1 = pd.to_numeric(pd.Series(np.asarray(score1, dtype=object).ravel()), errors="coerce").to_numpy(float)
    s2 = pd.to_numeric(pd.Series(np.asarray(score2, dtype=object).ravel()), errors="coerce").to_numpy(float)
    if s1.size != s2.size:
        raise InputError(f"score1 has {s1.size} values but score2 has {s2.size}", where="score2")
    keep = ~np.isnan(s1) & ~np.isnan(s2)
    y_arr = np.asarray(y, dtype=object).ravel()
    if y_arr.size != s1.size:
        raise InputError(f"y has {y_arr.size} values but the scores have {s1.size}", where="y")
    yv, s1 = _pairs(y_arr[keep], s1[keep], ("y", "score1"))
    _, s2 = _pairs(y_arr[keep], s2[keep], ("y", "score2"))
    comps = []
    for s, d in ((s1, direction1), (s2, direction2)):
        cases, controls = s[yv], s[~yv]
        d = _direction(cases, controls) if d == "auto" else d
        sign = 1.0 if d == "<" else -1.0
        comps.append(_components(sign * cases, sign * controls))
    (a1, x1, y1), (a2, x2, y2) = comps
    m, n = x1.size, y1.size
    s10, s01 = np.cov(np.vstack((x1, x2))), np.cov(np.vstack((y1, y2)))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    se = float(np.sqrt(var))
    z = (a1 - a2) / se if se > 0 else float("nan")
    return RocTest(a1, a2, a1 - a2, se, float(z), float(2 * stats.norm.sf(abs(z))), int(m + n))
