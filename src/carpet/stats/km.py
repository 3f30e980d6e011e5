"""Kaplan–Meier survival estimates that reproduce R's ``survfit`` / ``summary.survfit`` / ``quantile.survfit``.

Written here rather than wrapped from lifelines because lifelines differs from R in exactly the places
clinical papers print: its only CI transform is log-log (R's default is ``log``), and its median ignores
R's plateau-midpoint rule and reports ``inf`` where R reports ``NA``. Everything is vectorised numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.stats import norm

from carpet.errors import InputError
from carpet.provenance import provenance
from carpet.stats._input import survival_arrays
from carpet.stats._results import na

CONF_TYPES = ("log", "log-log", "plain")
# R's quantile.survfit tolerance: sqrt(.Machine$double.eps)
_R_TOL = float(np.sqrt(np.finfo(float).eps))


class Quantile(NamedTuple):
    """A survival-time quantile with its confidence limits; ``None`` where not reached (R prints NA)."""

    estimate: float | None
    lower: float | None
    upper: float | None


def confidence_band(surv, se_log, conf_type: str = "log", conf_level: float = 0.95):
    """Pointwise confidence limits of a survival curve, as R's ``survfit_confint``.

    Parameters
    ----------
    surv : array
        Survival probabilities S(t).
    se_log : array
        Standard error of log S(t) (Greenwood for Kaplan–Meier).
    conf_type : {"log", "log-log", "plain"}
        ``log``: S·exp(±z·se) (R's default); ``log-log``: exp(-exp(log(-log S) ± z·se/log S));
        ``plain``: S ± z·se·S, clipped to [0, 1].
    conf_level : float
        Two-sided level, 0.95 by default.

    Returns
    -------
    lower, upper : arrays, NaN where R gives NA (S = 0; S = 0 or 1 for log-log, unless se = 0).
    """
    if conf_type not in CONF_TYPES:
        raise InputError(f"conf_type must be one of {CONF_TYPES}, got {conf_type!r}", where="conf_type")
    if not 0 < conf_level < 1:
        raise InputError(f"conf_level must be between 0 and 1, got {conf_level!r}", where="conf_level")
    p = np.asarray(surv, dtype=float)
    se = np.asarray(se_log, dtype=float)
    z = norm.ppf(1 - (1 - conf_level) / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        if conf_type == "plain":
            half = se * p * z
            lower, upper = np.maximum(p - half, 0.0), np.minimum(p + half, 1.0)
        elif conf_type == "log":
            xx = np.where(p == 0, np.nan, p)
            lower, upper = np.exp(np.log(xx) - z * se), np.minimum(np.exp(np.log(xx) + z * se), 1.0)
        else:
            xx = np.where((p == 0) | (p == 1), np.nan, p)
            half = z * se / np.log(xx)
            loglog = np.log(-np.log(xx))
            lower, upper = np.exp(-np.exp(loglog - half)), np.exp(-np.exp(loglog + half))
    # R's survfit: a point with zero standard error (before the first event) has the CI [S, S]
    exact = se == 0
    return np.where(exact, p, lower), np.where(exact, p, upper)


def _std_err(surv: np.ndarray, se_log: np.ndarray) -> np.ndarray:
    """Greenwood SE on the survival scale, S·se(log S); NaN where se(log S) is infinite (S = 0), as R's 0·Inf."""
    out = np.full(np.shape(surv), np.nan)
    return np.multiply(surv, se_log, out=out, where=np.isfinite(se_log))


def _findq(x: np.ndarray, y: np.ndarray, p: float, xmax: float) -> float | None:
    """R's ``findq`` (inside ``quantile.survfit``): first x where the step curve y reaches p.

    ``y`` is 1 - S (non-decreasing, NaN = NA). When y equals p on a plateau (within sqrt(eps)),
    the answer is the midpoint of the plateau, and if the plateau runs to the end of follow-up,
    the midpoint of its start and the last time ``xmax``.
    """
    ok = ~np.isnan(y)
    if not ok.any() or np.nanmax(y) < p:
        return None
    # duplicated(y) in R: keep the first occurrence of each value (NaN is one value too)
    _, first = np.unique(np.where(ok, y, np.inf), return_index=True)
    keep = np.zeros(y.size, dtype=bool)
    keep[first] = True
    x, y = x[keep], y[keep]

    def first_at_least(target: float) -> int | None:
        # approx(y ± tol, 1:n, p, "constant", f=1) sorts the knots: the knot with the smallest
        # y >= target (the band need not be monotone), NA when there is none
        cand = np.flatnonzero(~np.isnan(y) & (y >= target))
        return None if cand.size == 0 else int(cand[np.argmin(y[cand])])

    if p == 0:
        return float(x[0])
    i1 = first_at_least(p - _R_TOL)
    i2 = first_at_least(p + _R_TOL)
    if not np.isnan(y[-1]) and abs(p - y[-1]) < _R_TOL and i1 is not None:
        return float((x[i1] + xmax) / 2)
    if i1 is None or i2 is None:
        return None
    return float((x[i1] + x[i2]) / 2)


@dataclass(frozen=True)
class KaplanMeier:
    """A fitted Kaplan–Meier curve (create with :func:`kaplan_meier`).

    Attributes
    ----------
    time : array
        Distinct observed times (events and censorings), ascending, in the input's unit.
    n_risk, n_event, n_censor : arrays
        Number at risk just before each time, events and censorings at it.
    surv : array
        S(t), right-continuous.
    se_log : array
        Greenwood standard error of log S(t) (R's ``fit$std.err``).
    conf_type, conf_level : str, float
    n : int
    """

    time: np.ndarray
    n_risk: np.ndarray
    n_event: np.ndarray
    n_censor: np.ndarray
    surv: np.ndarray
    se_log: np.ndarray
    conf_type: str
    conf_level: float
    n: int

    @cached_property
    def _band(self) -> tuple[np.ndarray, np.ndarray]:
        return confidence_band(self.surv, self.se_log, self.conf_type, self.conf_level)

    @property
    def lower(self) -> np.ndarray:
        return self._band[0]

    @property
    def upper(self) -> np.ndarray:
        return self._band[1]

    @property
    def std_err(self) -> np.ndarray:
        """Greenwood standard error of S(t) on the survival scale (R's ``summary(fit)$std.err``)."""
        return _std_err(self.surv, self.se_log)

    @property
    def events(self) -> int:
        return int(self.n_event.sum())

    @cached_property
    def table(self) -> pd.DataFrame:
        """The whole curve, one row per distinct time (like ``summary(fit, censored=TRUE)``)."""
        return pd.DataFrame({"time": self.time, "n_risk": self.n_risk, "n_event": self.n_event,
                             "n_censor": self.n_censor, "surv": self.surv, "std_err": self.std_err,
                             "lower": self.lower, "upper": self.upper})

    def quantile(self, p: float) -> Quantile:
        """Time by which a fraction ``p`` has had the event (``p=0.5`` is the median), with CI.

        Uses R's ``quantile.survfit`` rule: the first time 1 - S reaches ``p``; the midpoint of a
        plateau lying exactly at ``p``; the CI limits are where the pointwise CI band reaches ``p``.
        ``None`` when the curve (or band) never gets there.
        """
        if not 0 <= p <= 1:
            raise InputError(f"quantile probability must be in [0, 1], got {p!r}", where="p")
        x = np.concatenate(([0.0], self.time))
        xmax = float(self.time[-1])

        def q(curve: np.ndarray) -> float | None:
            return _findq(x, np.concatenate(([0.0], 1 - curve)), p, xmax)

        # R: lower CI of the quantile comes from the lower band, upper CI from the upper band
        return Quantile(q(self.surv), q(self.lower), q(self.upper))

    @property
    def median(self) -> float | None:
        """Median survival time (R's rule); ``None`` when not reached."""
        return self.quantile(0.5).estimate

    @property
    def median_ci(self) -> tuple[float | None, float | None]:
        """(lower, upper) confidence limits of the median; ``None`` where not reached (R: NA)."""
        qq = self.quantile(0.5)
        return qq.lower, qq.upper

    def _index_at(self, times) -> tuple[np.ndarray, np.ndarray]:
        t = np.asarray(times, dtype=float).ravel()
        if np.isnan(t).any():
            raise InputError("times must not be missing", where="times")
        # last curve time <= t (-1: before the first time, where S = 1)
        return t, np.searchsorted(self.time, t, side="right") - 1

    def survival_at(self, times) -> pd.DataFrame:
        """S(t), its Greenwood SE and CI, and the number at risk at given times.

        Matches ``summary(fit, times=times, extend=TRUE)``: the curve's value at the last time
        <= t, and ``n_risk`` = number of subjects with time >= t (0 beyond follow-up).

        Returns
        -------
        DataFrame with columns time, surv, std_err, lower, upper, n_risk.
        """
        t, idx = self._index_at(times)
        before = idx < 0
        j = np.where(before, 0, idx)
        surv = np.where(before, 1.0, self.surv[j])
        se_log = np.where(before, 0.0, self.se_log[j])
        lower, upper = confidence_band(surv, se_log, self.conf_type, self.conf_level)
        return pd.DataFrame({"time": t, "surv": surv, "std_err": _std_err(surv, se_log), "lower": lower,
                             "upper": upper, "n_risk": self._n_at_risk(t)})

    def _n_at_risk(self, t: np.ndarray) -> np.ndarray:
        # subjects still under observation at t: those whose time is >= t
        k = np.searchsorted(self.time, t, side="left")
        after = np.concatenate((np.cumsum((self.n_event + self.n_censor)[::-1])[::-1], [0]))
        return after[k].astype(int)

    def risk_table(self, times) -> pd.DataFrame:
        """Number-at-risk table (as printed under KM plots) at given times.

        Returns
        -------
        DataFrame with columns time, n_risk (subjects with time >= t), n_event and n_censor
        (events / censorings after the previous time and up to t, as ``summary(fit, times)``),
        cum_events and cum_censored (at or before t, as survminer's risk table).
        """
        t, idx = self._index_at(times)
        if np.any(np.diff(t) < 0):
            raise InputError("risk-table times must be in increasing order", where="times")
        cum_e = np.concatenate(([0], np.cumsum(self.n_event)))[idx + 1].astype(int)
        cum_c = np.concatenate(([0], np.cumsum(self.n_censor)))[idx + 1].astype(int)
        return pd.DataFrame({"time": t, "n_risk": self._n_at_risk(t), "n_event": np.diff(cum_e, prepend=0),
                             "n_censor": np.diff(cum_c, prepend=0), "cum_events": cum_e, "cum_censored": cum_c})

    @property
    def summary(self) -> pd.DataFrame:
        """One row like R's ``print(survfit)``: n, events, median and its CI (None = NA)."""
        lo, hi = self.median_ci
        return pd.DataFrame([{"n": self.n, "events": self.events, "median": self.median,
                              f"{self.conf_level:g}LCL": lo, f"{self.conf_level:g}UCL": hi}])

    @property
    def provenance(self) -> dict:
        return provenance(method="Kaplan-Meier", variance="Greenwood", conf_type=self.conf_type,
                          conf_level=self.conf_level, quantile_rule="R quantile.survfit (plateau midpoint)")

    def __str__(self) -> str:
        lo, hi = self.median_ci
        return (f"Kaplan-Meier: n={self.n}, events={self.events}, median={na(self.median)} "
                f"({self.conf_level:.0%} CI {na(lo)}-{na(hi)}, conf_type={self.conf_type})")


def kaplan_meier(time, event, conf_type: str = "log", conf_level: float = 0.95) -> KaplanMeier:
    """Kaplan–Meier estimate with Greenwood variance, as R's ``survfit(Surv(time, event) ~ 1)``.

    Parameters
    ----------
    time : array-like
        Follow-up times (>= 0), any unit (the results use the same unit).
    event : array-like of 0/1
        1 = event observed, 0 = censored.
    conf_type : {"log", "log-log", "plain"}
        CI transform; ``"log"`` is R's default.
    conf_level : float
        Confidence level of the pointwise band and the quantile CIs.

    Returns
    -------
    KaplanMeier
    """
    t, e = survival_arrays(time, event)
    confidence_band(np.ones(1), np.zeros(1), conf_type, conf_level)  # validate options early
    uniq, inv = np.unique(t, return_inverse=True)
    n_event = np.bincount(inv, weights=e, minlength=uniq.size)
    n_all = np.bincount(inv, minlength=uniq.size)
    n_risk = np.cumsum(n_all[::-1])[::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        surv = np.cumprod(1.0 - n_event / n_risk)
        # Greenwood: var(log S) = sum d / (n (n - d)); infinite once everybody at risk has died (R: Inf)
        green = np.where(n_event > 0, n_event / (n_risk * (n_risk - n_event)), 0.0)
    se_log = np.sqrt(np.cumsum(green))
    return KaplanMeier(time=uniq, n_risk=n_risk.astype(int), n_event=n_event.astype(int),
                       n_censor=(n_all - n_event).astype(int), surv=surv, se_log=se_log,
                       conf_type=conf_type, conf_level=conf_level, n=int(t.size))
