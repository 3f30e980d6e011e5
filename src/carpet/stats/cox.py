"""Cox proportional-hazards regression that reproduces R's ``coxph`` (Efron or Breslow ties, strata).

Written here as a vectorised Newton–Raphson on the partial likelihood rather than wrapped: lifelines
fits Efron only (and converges loosely by default), statsmodels' PHReg loops over event times in
Python, and neither gives R's score test at beta = 0, its concordance or ``cox.zph`` in one fit.
The likelihood, score and information are computed for all event times at once from reverse
cumulative sums over the time-sorted data, so a fit is O(n p^2) per iteration.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from scipy.stats import chi2, norm

from carpet.errors import InputError
from carpet.provenance import provenance
from carpet.stats._input import survival_arrays
from carpet.stats._results import TestResult
from carpet.stats.concordance import concordance_counts


class _CoxData:
    """Time-sorted design with the index structure of its event-time groups (built once per fit)."""

    def __init__(self, X: np.ndarray, time: np.ndarray, event: np.ndarray, strata: np.ndarray, efron: bool):
        order = np.lexsort((-event, time, strata))  # by stratum, then time (events first within a tie)
        self.X = X[order]
        self.time = time[order]
        self.event = event[order]
        self.strata = strata[order]
        self.order = order
        n = self.time.size
        # end (exclusive) of each row's stratum: risk-set sums are revcum[i] - revcum[end]
        new_stratum = np.flatnonzero(np.diff(self.strata)) + 1
        bounds = np.concatenate((new_stratum, [n]))
        self.stratum_end = bounds[np.searchsorted(bounds, np.arange(n), side="right")]
        # one group per (stratum, event time); first row of that time (risk set starts there)
        ev = np.flatnonzero(self.event)
        key_change = np.ones(n, dtype=bool)
        key_change[1:] = (self.time[1:] != self.time[:-1]) | (self.strata[1:] != self.strata[:-1])
        first_of_time = np.maximum.accumulate(np.where(key_change, np.arange(n), 0))
        self.death_rows = ev
        grp_start = first_of_time[ev]
        _, self.death_group, d_counts = np.unique(grp_start, return_inverse=True, return_counts=True)
        self.group_start = np.unique(grp_start)
        self.group_end = self.stratum_end[self.group_start]
        self.d = d_counts.astype(float)
        # Efron: the l-th of d tied deaths sees the risk set minus l/d of the tied deaths
        rank_in_group = np.arange(ev.size) - np.searchsorted(self.death_group, self.death_group, side="left")
        self.frac = rank_in_group / self.d[self.death_group] if efron else np.zeros(ev.size)

    def terms(self, beta: np.ndarray, second: bool = True):
        """Log partial likelihood, score vector and information matrix at ``beta``."""
        X = self.X
        eta = X @ beta
        r = np.exp(eta - eta.max())  # a common shift cancels between numerator and risk sets
        p = X.shape[1]
        n_groups = self.group_start.size

        def risk_sum(a: np.ndarray) -> np.ndarray:
            rc = np.concatenate((np.cumsum(a[::-1], axis=0)[::-1], np.zeros((1,) + a.shape[1:])))
            return rc[self.group_start] - rc[self.group_end]

        def death_sum(a: np.ndarray) -> np.ndarray:
            out = np.zeros((n_groups,) + a.shape[1:])
            np.add.at(out, self.death_group, a[self.death_rows])
            return out

        rx = r[:, None] * X
        g, f = self.death_group, self.frac[:, None]
        s0 = risk_sum(r)[g] - self.frac * death_sum(r)[g]
        s1 = risk_sum(rx)[g] - f * death_sum(rx)[g]
        loglik = float((eta - eta.max())[self.death_rows].sum() - np.log(s0).sum())
        a = s1 / s0[:, None]
        score = X[self.death_rows].sum(axis=0) - a.sum(axis=0)
        if not second:
            return loglik, score, None
        rxx = rx[:, :, None] * X[:, None, :]
        s2 = risk_sum(rxx)[g] - f[:, :, None] * death_sum(rxx)[g]
        info = (s2 / s0[:, None, None]).sum(axis=0) - a.T @ a
        return loglik, score, info.reshape(p, p)


def _newton(data: _CoxData, p: int, max_iter: int = 50, tol: float = 1e-12):
    """Newton–Raphson with step halving (as R's coxph); converges to |Δloglik| < tol·|loglik|."""
    beta = np.zeros(p)
    ll, u, info = data.terms(beta)
    null = (ll, u, info)
    for it in range(1, max_iter + 1):
        step = np.linalg.solve(info, u)
        new = beta + step
        ll_new, u_new, info_new = data.terms(new)
        halvings = 0
        while (not np.isfinite(ll_new) or ll_new < ll - 1e-12 * abs(ll)) and halvings < 30:
            new = (beta + new) / 2
            ll_new, u_new, info_new = data.terms(new)
            halvings += 1
        done = abs(ll_new - ll) <= tol * abs(ll_new) and np.max(np.abs(new - beta)) < 1e-8
        beta, ll, u, info = new, ll_new, u_new, info_new
        if done:
            return beta, ll, u, info, null, it
    raise InputError(f"Cox model did not converge in {max_iter} iterations (coefficients may be infinite: "
                     "check for a covariate that separates events perfectly)", where="covariates")


def _design(df: pd.DataFrame, covariates: list[str]) -> pd.DataFrame:
    """Numeric design matrix; categorical columns become treatment dummies named like R (``xlevel``)."""
    parts = []
    for c in covariates:
        col = df[c]
        if isinstance(col.dtype, pd.CategoricalDtype) or col.dtype == object or col.dtype == bool:
            cat = col.astype("category") if not isinstance(col.dtype, pd.CategoricalDtype) else col
            dummies = pd.get_dummies(cat, prefix=c, prefix_sep="", drop_first=True, dtype=float)
            parts.append(dummies)
        else:
            parts.append(col.astype(float).to_frame(c))
    return pd.concat(parts, axis=1)


@dataclass(frozen=True)
class CoxResult:
    """A fitted Cox model (create with :func:`cox`). Attributes are those of R's ``coxph`` fit.

    Attributes
    ----------
    params : Series
        Coefficients (log hazard ratios) per design column.
    variance : DataFrame
        Inverse information at the estimate.
    loglik : tuple
        (null, fitted) log partial likelihood, as R's ``fit$loglik``.
    n, n_events : int
        Rows used (after dropping missing values) and events among them.
    ties : str
    """

    params: pd.Series
    variance: pd.DataFrame
    loglik: tuple[float, float]
    score_u0: np.ndarray
    info0: np.ndarray
    n: int
    n_events: int
    ties: str
    conf_level: float
    iterations: int
    _data: _CoxData
    _strata_names: list | None

    @property
    def se(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self.variance.to_numpy())), index=self.params.index)

    @cached_property
    def summary(self) -> pd.DataFrame:
        """Per covariate: coef, hr, se, z, p (Wald), hr_lower, hr_upper (``summary(coxph)``)."""
        b, se = self.params, self.se
        z = b / se
        q = norm.ppf(1 - (1 - self.conf_level) / 2)
        return pd.DataFrame({"coef": b, "hr": np.exp(b), "se": se, "z": z, "p": 2 * norm.sf(np.abs(z)),
                             "hr_lower": np.exp(b - q * se), "hr_upper": np.exp(b + q * se)})

    @property
    def df(self) -> int:
        return int(self.params.size)

    @property
    def lr_test(self) -> TestResult:
        """Likelihood-ratio test against the null model: 2 (loglik − loglik₀)."""
        stat = 2 * (self.loglik[1] - self.loglik[0])
        return TestResult(float(stat), self.df, float(chi2.sf(stat, self.df)))

    @property
    def wald_test(self) -> TestResult:
        """Wald test b' V⁻¹ b (R's unrounded ``fit$wald.test``)."""
        b = self.params.to_numpy()
        stat = float(b @ np.linalg.solve(self.variance.to_numpy(), b))
        return TestResult(stat, self.df, float(chi2.sf(stat, self.df)))

    @property
    def score_test(self) -> TestResult:
        """Score (log-rank) test at beta = 0: U(0)' I(0)⁻¹ U(0)."""
        stat = float(self.score_u0 @ np.linalg.solve(self.info0, self.score_u0))
        return TestResult(stat, self.df, float(chi2.sf(stat, self.df)))

    @property
    def linear_predictor(self) -> np.ndarray:
        """x'b per used row (in the input row order), centred as in R (covariate means subtracted)."""
        X = self._data.X
        lp = np.empty(X.shape[0])
        lp[self._data.order] = X @ self.params.to_numpy()
        return lp

    @cached_property
    def _concordance(self):
        d = self._data
        return concordance_counts(d.time, d.event, d.X @ self.params.to_numpy(), strata=d.strata)

    @property
    def concordance(self) -> float:
        """Harrell's C of the linear predictor as ``summary(coxph)`` reports it (ties in risk count 1/2;
        pairs with tied event times are not comparable; computed within strata)."""
        return self._concordance.concordance

    def zph(self, transform: str = "km") -> pd.DataFrame:
        """Proportional-hazards test like R's ``cox.zph`` (see :func:`carpet.stats.cox.cox_zph`)."""
        return cox_zph(self, transform=transform)

    @property
    def provenance(self) -> dict:
        return provenance(method="Cox proportional hazards", ties=self.ties, reference="R survival::coxph",
                          strata=self._strata_names, iterations=self.iterations)


def cox(df: pd.DataFrame, duration: str = "time", event: str = "event", covariates: list[str] | None = None,
        ties: str = "efron", strata: str | list[str] | None = None, conf_level: float = 0.95) -> CoxResult:
    """Fit a Cox model, as R's ``coxph(Surv(duration, event) ~ covariates + strata(strata), ties=ties)``.

    Parameters
    ----------
    df : DataFrame
        One row per subject. Rows with a missing value in any used column are dropped (R's na.omit).
    duration, event : str
        Column names of follow-up time (>= 0) and event indicator (1/0).
    covariates : list of str
        Covariate columns; numeric columns enter as they are, categorical/text/bool columns as
        treatment dummies against their first level (named ``column + level`` like R).
    ties : {"efron", "breslow"}
    strata : str or list of str, optional
        Columns defining strata with separate baseline hazards.
    conf_level : float
        Level of the hazard-ratio confidence intervals.

    Returns
    -------
    CoxResult
    """
    if ties not in ("efron", "breslow"):
        raise InputError(f"ties must be 'efron' or 'breslow', got {ties!r}", where="ties")
    if not covariates:
        raise InputError("a Cox model needs at least one covariate", where="covariates")
    strata_cols = [] if strata is None else ([strata] if isinstance(strata, str) else list(strata))
    used = [duration, event, *covariates, *strata_cols]
    missing = [c for c in used if c not in df.columns]
    if missing:
        raise InputError(f"column(s) {missing} not found; available: {list(df.columns)}", where="columns")
    frame = df[used].dropna()
    t, e = survival_arrays(frame[duration], frame[event], source=f"columns {duration!r}/{event!r}")
    design = _design(frame, covariates)
    X = design.to_numpy(dtype=float)
    X = X - X.mean(axis=0)  # R centres covariates; coefficients are unchanged, exp() stays finite
    s_codes = (pd.MultiIndex.from_frame(frame[strata_cols]).factorize()[0] if strata_cols
               else np.zeros(t.size, dtype=int))
    data = _CoxData(X, t, e.astype(float), s_codes, efron=(ties == "efron"))
    beta, ll, _, info, (ll0, u0, info0), iters = _newton(data, X.shape[1])
    names = list(design.columns)
    var = pd.DataFrame(np.linalg.inv(info), index=names, columns=names)
    return CoxResult(params=pd.Series(beta, index=names), variance=var, loglik=(ll0, ll), score_u0=u0,
                     info0=info0, n=int(t.size), n_events=int(e.sum()), ties=ties, conf_level=conf_level,
                     iterations=iters, _data=data, _strata_names=strata_cols or None)


def cox_zph(fit: CoxResult, transform: str = "km") -> pd.DataFrame:
    """Placeholder replaced below once implemented."""
    raise NotImplementedError
