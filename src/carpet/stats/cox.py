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
from scipy.stats import chi2, norm, rankdata

from carpet.errors import InputError
from carpet.provenance import provenance
from carpet.stats._input import design_matrix, require_columns, survival_arrays
from carpet.stats._results import TestResult
from carpet.stats.concordance import concordance_counts
from carpet.stats.km import kaplan_meier


class _CoxData:
    """Time-sorted design with the index structure of its event-time groups (built once per fit)."""

    def __init__(self, X: np.ndarray, time: np.ndarray, event: np.ndarray, strata: np.ndarray, efron: bool):
        order = np.lexsort((-event, time, strata))  # by stratum, then time (events first within a tie)
        self.X = X[order]
        self.time = time[order]
        self.event = event[order]
        self.strata = strata = strata[order]
        self.order = order
        n = self.time.size
        # end (exclusive) of each row's stratum: risk-set sums are revcum[i] - revcum[end]
        new_stratum = np.flatnonzero(np.diff(strata)) + 1
        bounds = np.concatenate((new_stratum, [n]))
        self.stratum_end = bounds[np.searchsorted(bounds, np.arange(n), side="right")]
        # one group per (stratum, event time); first row of that time (risk set starts there)
        ev = np.flatnonzero(self.event)
        key_change = np.ones(n, dtype=bool)
        key_change[1:] = (self.time[1:] != self.time[:-1]) | (strata[1:] != strata[:-1])
        first_of_time = np.maximum.accumulate(np.where(key_change, np.arange(n), 0))
        self.death_rows = ev
        grp_start = first_of_time[ev]
        _, self.death_group, d_counts = np.unique(grp_start, return_inverse=True, return_counts=True)
        self.group_start = np.unique(grp_start)
        self.group_end = self.stratum_end[self.group_start]
        # Efron: the l-th of d tied deaths sees the risk set minus l/d of the tied deaths
        rank_in_group = np.arange(ev.size) - np.searchsorted(self.death_group, self.death_group, side="left")
        self.frac = rank_in_group / d_counts[self.death_group] if efron else np.zeros(ev.size)

    def _risk_sum(self, a: np.ndarray) -> np.ndarray:
        """Sum of ``a`` over each event time's risk set (rows at or after it, same stratum)."""
        rc = np.concatenate((np.cumsum(a[::-1], axis=0)[::-1], np.zeros((1,) + a.shape[1:])))
        return rc[self.group_start] - rc[self.group_end]

    def _death_sum(self, a: np.ndarray) -> np.ndarray:
        """Sum of ``a`` over the deaths tied at each event time."""
        out = np.zeros((self.group_start.size,) + a.shape[1:])
        np.add.at(out, self.death_group, a[self.death_rows])
        return out

    def per_death(self, beta: np.ndarray):
        """Per death row: eta (shifted), Efron risk-set sum s0, weighted mean a and second moment.

        With Efron ties the l-th of d tied deaths uses the risk set minus l/d of the tied deaths'
        weights; Breslow uses the whole risk set (frac = 0).
        """
        eta = self.X @ beta
        eta = eta - eta.max()  # a common shift cancels between numerator and risk sets
        r = np.exp(eta)
        rx = r[:, None] * self.X
        g, f = self.death_group, self.frac[:, None]
        s0 = self._risk_sum(r)[g] - self.frac * self._death_sum(r)[g]
        a = (self._risk_sum(rx)[g] - f * self._death_sum(rx)[g]) / s0[:, None]
        rxx = rx[:, :, None] * self.X[:, None, :]
        m2 = (self._risk_sum(rxx)[g] - f[:, :, None] * self._death_sum(rxx)[g]) / s0[:, None, None]
        return eta, s0, a, m2

    def terms(self, beta: np.ndarray):
        """Log partial likelihood, score vector and information matrix at ``beta``."""
        eta, s0, a, m2 = self.per_death(beta)
        loglik = float(eta[self.death_rows].sum() - np.log(s0).sum())
        score = self.X[self.death_rows].sum(axis=0) - a.sum(axis=0)
        return loglik, score, m2.sum(axis=0) - a.T @ a


def _newton(data: _CoxData, p: int, max_iter: int = 50, tol: float = 1e-12):
    """Newton–Raphson with step halving (as R's coxph); converges to |Δloglik| < tol·|loglik|."""
    beta = np.zeros(p)
    ll, u, info = data.terms(beta)
    null = (ll, u, info)
    for it in range(1, max_iter + 1):
        try:
            step = np.linalg.solve(info, u)
        except np.linalg.LinAlgError:
            raise InputError("Cox model information matrix is singular: a covariate is collinear with others, "
                             "or a coefficient diverges (a covariate separates events perfectly)",
                             where="covariates") from None
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
    n, n_events, n_dropped : int
        Rows used, events among them, and rows dropped for a missing value (R's na.omit).
    ties : str
    terms : dict
        Design columns (positions) of each covariate, e.g. 3 dummies for a 4-level factor.
    """

    params: pd.Series
    variance: pd.DataFrame
    loglik: tuple[float, float]
    score_u0: np.ndarray
    info0: np.ndarray
    n: int
    n_events: int
    n_dropped: int
    ties: str
    conf_level: float
    iterations: int
    terms: dict
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
    def aic(self) -> float:
        """Akaike information criterion −2·loglik + 2·df (R's ``AIC(fit)``)."""
        return -2 * self.loglik[1] + 2 * self.df

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

    @property
    def concordance_se(self) -> float:
        """Infinitesimal-jackknife standard error of :attr:`concordance` (R's ``se(C)``)."""
        return self._concordance.std_err

    def zph(self, transform: str = "km") -> pd.DataFrame:
        """Proportional-hazards test like R's ``cox.zph`` (see :func:`carpet.stats.cox.cox_zph`)."""
        return cox_zph(self, transform=transform)

    @property
    def provenance(self) -> dict:
        return provenance(method="Cox proportional hazards", ties=self.ties, reference="R survival::coxph",
                          strata=self._strata_names, iterations=self.iterations)


def cox(df: pd.DataFrame, duration: str = "time", event: str = "event", covariates: list[str] | None = None,
        ties: str = "efron", strata: str | list[str] | None = None, conf_level: float = 0.95,
        reference: dict | None = None) -> CoxResult:
    """Fit a Cox model, as R's ``coxph(Surv(duration, event) ~ covariates + strata(strata), ties=ties)``.

    Parameters
    ----------
    df : DataFrame
        One row per subject. Rows with a missing value in any used column are dropped (R's na.omit).
    duration, event : str
        Column names of follow-up time (>= 0) and event indicator (1/0).
    covariates : list of str
        Covariate columns; numeric columns enter as they are, categorical/text/bool columns as
        treatment dummies against their first level (named ``column + level`` like R); levels that
        no used row has are left out.
    ties : {"efron", "breslow"}
    strata : str or list of str, optional
        Columns defining strata with separate baseline hazards.
    conf_level : float
        Level of the hazard-ratio confidence intervals.
    reference : dict, optional
        Reference level per categorical covariate, e.g. ``{"stage": "II"}`` (R's ``relevel``); default the
        first level.

    Returns
    -------
    CoxResult
    """
    if ties not in ("efron", "breslow"):
        raise InputError(f"ties must be 'efron' or 'breslow', got {ties!r}", where="ties")
    if isinstance(covariates, str):
        covariates = [covariates]
    if not covariates:
        raise InputError("a Cox model needs at least one covariate", where="covariates")
    strata_cols = [] if strata is None else ([strata] if isinstance(strata, str) else list(strata))
    used = [duration, event, *covariates, *strata_cols]
    require_columns(df, used)
    frame = df[used].dropna()
    t, e = survival_arrays(frame[duration], frame[event], source=f"columns {duration!r}/{event!r}")
    if not e.any():
        raise InputError(f"no events among the {t.size} rows used; a Cox model needs at least one",
                         where=f"column {event!r}")
    design, terms = design_matrix(frame, covariates, reference)
    X = design.to_numpy(dtype=float)
    X = X - X.mean(axis=0)  # R centres covariates; coefficients are unchanged, exp() stays finite
    constant = [name for name, col in zip(design.columns, X.T) if not np.any(col)]
    if constant:
        raise InputError(f"covariate(s) {constant} take a single value in the {len(X)} rows used; "
                         "a Cox model cannot estimate their effect", where="covariates")
    s_codes = (pd.MultiIndex.from_frame(frame[strata_cols]).factorize()[0] if strata_cols
               else np.zeros(t.size, dtype=int))
    data = _CoxData(X, t, e.astype(float), s_codes, efron=(ties == "efron"))
    beta, ll, _, info, (ll0, u0, info0), iters = _newton(data, X.shape[1])
    names = list(design.columns)
    var = pd.DataFrame(np.linalg.inv(info), index=names, columns=names)
    return CoxResult(params=pd.Series(beta, index=names), variance=var, loglik=(ll0, ll), score_u0=u0,
                     info0=info0, n=int(t.size), n_events=int(e.sum()), n_dropped=int(len(df) - len(frame)), ties=ties, conf_level=conf_level,
                     iterations=iters, terms=terms, _data=data, _strata_names=strata_cols or None)


def _transformed_times(time: np.ndarray, event: np.ndarray, transform: str) -> np.ndarray:
    """cox.zph's time transform g(t) per subject (``km``: 1 - S(t-) of the pooled KM curve)."""
    if transform == "km":
        km = kaplan_meier(time, event)
        surv_before = np.concatenate(([1.0], km.surv[:-1]))
        return 1 - surv_before[np.searchsorted(km.time, time)]
    if transform == "identity":
        return time.astype(float)
    if transform == "log":
        return np.log(time)
    if transform == "rank":
        return rankdata(time)
    raise InputError(f"transform must be 'km', 'rank', 'identity' or 'log', got {transform!r}", where="transform")


def cox_zph(fit: CoxResult, transform: str = "km") -> pd.DataFrame:
    """Test of proportional hazards per term and globally, as R's ``cox.zph`` (survival >= 3.0).

    Score test, at the fitted coefficients, of adding covariate × g(t) for every covariate, where
    g is the transformed time centred on its mean over events (survival 3's method; not the older
    Grambsch–Therneau approximation that lifelines implements). Written here because no Python
    library implements it.

    Returns
    -------
    DataFrame indexed by term and ``GLOBAL`` with columns chisq, df, p.
    """
    d = fit._data
    ttimes = _transformed_times(d.time, d.event, transform)
    gtime = ttimes - ttimes[d.event.astype(bool)].mean()
    _, _, a, m2 = d.per_death(fit.params.to_numpy())
    g = gtime[d.death_rows]
    v = m2 - a[:, :, None] * a[:, None, :]  # per-death information contribution
    p = a.shape[1]
    imat = np.empty((2 * p, 2 * p))
    imat[:p, :p] = v.sum(axis=0)
    imat[:p, p:] = imat[p:, :p] = np.einsum("i,ijk->jk", g, v)
    imat[p:, p:] = np.einsum("i,ijk->jk", g * g, v)
    u_gamma = (g[:, None] * (d.X[d.death_rows] - a)).sum(axis=0)
    rows = []
    for name, cols in [*fit.terms.items(), ("GLOBAL", list(range(p)))]:
        kk = list(range(p)) + [p + c for c in cols]
        u = np.concatenate((np.zeros(p), u_gamma[cols]))
        stat = float(u @ np.linalg.solve(imat[np.ix_(kk, kk)], u))
        rows.append({"term": name, "chisq": stat, "df": len(cols), "p": float(chi2.sf(stat, len(cols)))})
    return pd.DataFrame(rows).set_index("term")
