"""Cox proportional-hazards regression that reproduces R's ``coxph`` (Efron or Breslow ties, strata,
counting-process ``Surv(start, stop, event)`` data for time-varying covariates).

Written here as a vectorised Newton–Raphson on the partial likelihood rather than wrapped: lifelines
fits Efron only (and converges loosely by default), statsmodels' PHReg loops over event times in
Python, and neither gives R's score test at beta = 0, its concordance or ``cox.zph`` in one fit.
The iteration is R's ``coxfit6`` step for step (start at 0, covariates scaled by their mean absolute
deviation, generalized Cholesky that zeroes aliased columns, stop when |1 − loglik_old/loglik| <= 1e-9,
step halving, at most 20 iterations), so a coefficient that runs to infinity stops where R's does and
gets R's warning. The likelihood, score and information are computed for all event times at once:
risk-set sums of [r, r·x, r·xxᵀ] from one reverse cumulative sum over the time-sorted rows (minus the
same over rows entering later, for counting-process data), and Efron's tied-death terms per tied
block with scalar weights, so an iteration is O(n p²) numpy work with no loop over event times.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
from scipy.stats import chi2, norm, rankdata

from carpet.errors import InputError
from carpet.provenance import provenance
from carpet.stats._input import design_matrix, require_columns, survival_arrays
from carpet.stats._results import TestResult
from carpet.stats.concordance import concordance_counts

# R's coxph.control(): eps, toler.chol, iter.max, toler.inf
_EPS, _TOLER_CHOL, _ITER_MAX, _TOLER_INF = 1e-9, np.finfo(float).eps ** 0.75, 20, np.sqrt(1e-9)


def _revcum(a: np.ndarray) -> np.ndarray:
    """Sums from each row to the end, with a zero row appended (so [i, j) sums are rc[i] − rc[j])."""
    out = np.zeros((a.shape[0] + 1,) + a.shape[1:])
    np.cumsum(a[::-1], axis=0, out=out[-2::-1])
    return out


class _CoxData:
    """Time-sorted design with the index structure of its event-time groups (built once per fit)."""

    def __init__(self, X: np.ndarray, time: np.ndarray, event: np.ndarray, strata: np.ndarray, efron: bool,
                 start: np.ndarray | None = None):
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
        self.group_start, self.death_group, d_counts = np.unique(grp_start, return_inverse=True,
                                                                  return_counts=True)
        self.group_end = self.stratum_end[self.group_start]
        # tied deaths of a group are adjacent rows: their sums are one reduceat
        self.death_first = np.concatenate(([0], np.cumsum(d_counts)[:-1]))
        # Efron: the l-th of d tied deaths sees the risk set minus l/d of the tied deaths
        rank_in_group = np.arange(ev.size) - self.death_first[self.death_group]
        self.frac = rank_in_group / d_counts[self.death_group] if efron else np.zeros(ev.size)
        self.efron = efron
        self.start = None
        if start is not None:
            # counting process: rows that enter at or after an event time (start >= t) are not at risk
            # there; with rows sorted by (stratum, start) they are a suffix of the stratum
            st = start[order]
            self.start = st
            self.start_order = np.lexsort((st, strata))
            ranks = np.unique(np.concatenate((st, self.time)), return_inverse=True)[1]
            k = ranks.max() + 2
            keys = strata * k + ranks[:n]
            self.start_pos = np.searchsorted(keys[self.start_order],
                                             strata[self.group_start] * k + ranks[n:][self.group_start], "left")

    def risk_sums(self, a: np.ndarray) -> np.ndarray:
        """Sum of ``a`` (rows in sorted order) over each event time's risk set."""
        rc = _revcum(a)
        s = rc[self.group_start] - rc[self.group_end]
        if self.start is not None:
            rc = _revcum(a[self.start_order])
            s -= rc[self.start_pos] - rc[self.group_end]
        return s

    def _moments(self, beta: np.ndarray):
        """eta; risk-set sums S and tied-death sums D of [r, r·x, r·xxᵀ (upper triangle)] per group; s0 and
        means per death."""
        n, p = self.X.shape
        iu, ju = np.triu_indices(p)
        eta = self.X @ beta
        eta = eta - eta.max()  # a common shift cancels between numerator and risk sets
        w = np.empty((n, 1 + p + iu.size))
        np.exp(eta, out=w[:, 0])
        np.multiply(w[:, :1], self.X, out=w[:, 1:1 + p])
        np.multiply(w[:, 1 + iu], self.X[:, ju], out=w[:, 1 + p:])
        S = self.risk_sums(w)
        D = np.add.reduceat(w[self.death_rows], self.death_first, axis=0) if self.efron else np.zeros_like(S)
        g, f = self.death_group, self.frac
        s0 = S[g, 0] - f * D[g, 0]
        a = (S[g, 1:1 + p] - f[:, None] * D[g, 1:1 + p]) / s0[:, None]
        return eta, S, D, s0, a

    @staticmethod
    def _full(upper: np.ndarray, p: int) -> np.ndarray:
        """Symmetric p×p matrices (last two axes) from their upper triangles (last axis, triu order)."""
        iu, ju = np.triu_indices(p)
        out = np.empty(upper.shape[:-1] + (p, p))
        out[..., iu, ju] = upper
        out[..., ju, iu] = upper
        return out

    def per_death(self, beta: np.ndarray):
        """Per death row: eta (shifted), Efron risk-set sum s0, weighted mean a and second moment m2."""
        p = self.X.shape[1]
        eta, S, D, s0, a = self._moments(beta)
        g, f = self.death_group, self.frac
        m2 = (S[g, 1 + p:] - f[:, None] * D[g, 1 + p:]) / s0[:, None]
        return eta, s0, a, self._full(m2, p)

    def terms(self, beta: np.ndarray):
        """Log partial likelihood, score vector and information matrix at ``beta``.

        Σ over deaths of m2 = Σ_groups [S2·Σ_l 1/s0_l − D2·Σ_l f_l/s0_l]: per-group weights, no per-death p×p.
        """
        p = self.X.shape[1]
        eta, S, D, s0, a = self._moments(beta)
        loglik = float(eta[self.death_rows].sum() - np.log(s0).sum())
        score = self.X[self.death_rows].sum(axis=0) - a.sum(axis=0)
        ng = S.shape[0]
        w1 = np.bincount(self.death_group, 1 / s0, minlength=ng)
        m2 = w1 @ S[:, 1 + p:]
        if self.efron:
            m2 -= np.bincount(self.death_group, self.frac / s0, minlength=ng) @ D[:, 1 + p:]
        return loglik, score, self._full(m2, p) - a.T @ a


def _cholesky2(imat: np.ndarray, toler: float = _TOLER_CHOL):
    """R survival's ``cholesky2``: LDLᵀ with pivots below toler·max(diag) set to 0 (aliased columns).

    Returns the unit lower factor L, the diagonal D and the mask of singular columns.
    """
    m = imat.copy()
    p = m.shape[0]
    eps = float(np.max(np.diag(m))) if p else 0.0
    eps = toler if eps == 0 else eps * toler
    sing = np.zeros(p, dtype=bool)
    for i in range(p):
        pivot = m[i, i]
        if not np.isfinite(pivot) or pivot < eps:
            m[i, i] = 0.0
            sing[i] = True
            continue
        for j in range(i + 1, p):
            temp = m[j, i] / pivot
            m[j, i] = temp
            m[j, j] -= temp * temp * pivot
            m[j + 1:, j] -= temp * m[j + 1:, i]
    L = np.tril(m, -1) + np.eye(p)
    L[:, sing] = np.where(np.eye(p, dtype=bool)[:, sing], 1.0, 0.0)
    return L, np.diag(m).copy(), sing


def _chsolve(factor, u: np.ndarray) -> np.ndarray:
    """Solve I x = u with the generalized Cholesky factor (0 for singular columns), R's ``chsolve2``."""
    L, d, sing = factor
    y = np.linalg.solve(L, u)
    y = np.where(sing, 0.0, y / np.where(sing, 1.0, d))
    return np.linalg.solve(L.T, y)


def _chinv(factor) -> np.ndarray:
    """Generalized inverse with zero rows/columns for singular columns, R's ``chinv2``."""
    L, d, sing = factor
    linv = np.linalg.inv(L)
    inv = linv.T @ (np.where(sing, 0.0, 1 / np.where(sing, 1.0, d))[:, None] * linv)
    inv[sing, :] = 0.0
    inv[:, sing] = 0.0
    return inv


@dataclass(frozen=True)
class _Fit:
    beta: np.ndarray
    loglik: float
    loglik0: float
    score: np.ndarray        # U at beta
    var: np.ndarray          # generalized inverse of the information at beta
    sctest: float
    iterations: int
    converged: bool
    singular: np.ndarray


def _newton(data: _CoxData, p: int, max_iter: int = _ITER_MAX, eps: float = _EPS) -> _Fit:
    """R's ``coxfit6`` iteration (see the module docstring); no error on divergence, R's flags instead."""
    beta = np.zeros(p)
    ll0, u0, info0 = data.terms(beta)
    f0 = _cholesky2(info0)
    step = _chsolve(f0, u0)
    sctest = float(u0 @ step)
    best, new, halving = ll0, beta + step, 0
    for it in range(1, max_iter + 1):
        ll, u, info = data.terms(new)
        fac = _cholesky2(info)
        finite = np.isfinite(ll) and np.all(np.isfinite(u)) and np.all(np.isfinite(info))
        if finite and abs(1 - best / ll) <= eps:
            return _Fit(new, ll, ll0, u, _chinv(fac), sctest, it, True, fac[2])
        if not finite or ll < best:
            halving += 1
            new = (new + halving * beta) / (halving + 1)
        else:
            halving = 0
            best = ll
            beta, new = new, new + _chsolve(fac, u)
    ll, u, info = data.terms(beta)  # ran out of iterations: the last good step
    fac = _cholesky2(info)
    return _Fit(beta, ll, ll0, u, _chinv(fac), sctest, max_iter + 1, False, fac[2])  # R counts one more


@dataclass(frozen=True)
class CoxResult:
    """A fitted Cox model (create with :func:`cox`). Attributes are those of R's ``coxph`` fit.

    Attributes
    ----------
    params : Series
        Coefficients (log hazard ratios) per design column; NaN for a column aliased with others (R's NA).
    variance : DataFrame
        Inverse information at the estimate (NaN rows/columns for aliased columns).
    loglik : tuple
        (null, fitted) log partial likelihood, as R's ``fit$loglik``.
    n, n_events, n_dropped : int
        Rows used, events among them, and rows dropped for a missing value (R's na.omit).
    ties : str
    terms : dict
        Design columns (positions) of each covariate, e.g. 3 dummies for a 4-level factor.
    warnings : tuple of str
        R's warnings word for word, e.g. ``Loglik converged before variable 2; coefficient may be
        infinite.`` (the other coefficients are still estimates) or ``Ran out of iterations and did not
        converge``; also in :attr:`provenance`.
    """

    params: pd.Series
    variance: pd.DataFrame
    loglik: tuple[float, float]
    n: int
    n_events: int
    n_dropped: int
    ties: str
    conf_level: float
    iterations: int
    terms: dict
    _data: _CoxData
    _strata_names: list | None
    _sctest: float
    warnings: tuple = field(default=())
    infinite: tuple = field(default=())
    counting_process: bool = False

    @property
    def se(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self.variance.to_numpy())), index=self.params.index)

    @cached_property
    def summary(self) -> pd.DataFrame:
        """Per covariate: coef, hr, se, z, p (Wald), hr_lower, hr_upper (``summary(coxph)``), and
        ``infinite`` (True where R warns that the coefficient may be infinite)."""
        b, se = self.params, self.se
        z = b / se
        q = norm.ppf(1 - (1 - self.conf_level) / 2)
        with np.errstate(over="ignore"):  # a diverging coefficient's interval is (0, inf), as R prints it
            return pd.DataFrame({"coef": b, "hr": np.exp(b), "se": se, "z": z, "p": 2 * norm.sf(np.abs(z)),
                                 "hr_lower": np.exp(b - q * se), "hr_upper": np.exp(b + q * se),
                                 "infinite": [name in self.infinite for name in b.index]})

    @property
    def _estimated(self) -> np.ndarray:
        return self.params.notna().to_numpy()

    @property
    def df(self) -> int:
        """Number of estimated (non-aliased) coefficients."""
        return int(self._estimated.sum())

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
        """Wald test b' V⁻¹ b over the estimated coefficients (R's unrounded ``fit$wald.test``)."""
        k = self._estimated
        b = self.params.to_numpy()[k]
        stat = float(b @ np.linalg.solve(self.variance.to_numpy()[np.ix_(k, k)], b))
        return TestResult(stat, self.df, float(chi2.sf(stat, self.df)))

    @property
    def score_test(self) -> TestResult:
        """Score (log-rank) test at beta = 0: U(0)' I(0)⁻ U(0) (generalized inverse, as R)."""
        return TestResult(self._sctest, self.df, float(chi2.sf(self._sctest, self.df)))

    @property
    def linear_predictor(self) -> np.ndarray:
        """x'b per used row (in the input row order), centred as in R (covariate means subtracted)."""
        X = self._data.X
        lp = np.empty(X.shape[0])
        lp[self._data.order] = X @ self.params.fillna(0.0).to_numpy()
        return lp

    @cached_property
    def _concordance(self):
        d = self._data
        if self.counting_process:
            raise InputError("the concordance of a counting-process (start, stop] Cox model is not implemented "
                             "in carpet", where="start", hint="R: concordance(fit)")
        return concordance_counts(d.time, d.event, d.X @ self.params.fillna(0.0).to_numpy(), strata=d.strata)

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
                          strata=self._strata_names, iterations=self.iterations, warnings=list(self.warnings),
                          counting_process=self.counting_process)


def cox(df: pd.DataFrame, duration: str = "time", event: str = "event", covariates: list[str] | None = None,
        ties: str = "efron", strata: str | list[str] | None = None, conf_level: float = 0.95,
        reference: dict | None = None, start: str | None = None) -> CoxResult:
    """Fit a Cox model, as R's ``coxph(Surv(duration, event) ~ covariates + strata(strata), ties=ties)``.

    Parameters
    ----------
    df : DataFrame
        One row per subject (or, with ``start``, per subject and interval). Rows with a missing value in
        any used column are dropped (R's na.omit).
    duration, event : str
        Column names of follow-up time (>= 0) and event indicator (1/0); with ``start``, the end of each
        interval and whether it ends with the event.
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
    start : str, optional
        Column with the start of each interval: counting-process data ``Surv(start, duration, event)``,
        e.g. one row before and one after a time-varying exposure begins. A row is at risk at event
        times t with start < t <= duration.

    Returns
    -------
    CoxResult
        A coefficient that diverges (a group without events, a covariate that separates events) is
        returned where R's iteration stops, flagged in ``summary["infinite"]`` and ``warnings``, as R does.
    """
    if ties not in ("efron", "breslow"):
        raise InputError(f"ties must be 'efron' or 'breslow', got {ties!r}", where="ties")
    if isinstance(covariates, str):
        covariates = [covariates]
    if not covariates:
        raise InputError("a Cox model needs at least one covariate", where="covariates")
    strata_cols = [] if strata is None else ([strata] if isinstance(strata, str) else list(strata))
    used = [*([start] if start else []), duration, event, *covariates, *strata_cols]
    require_columns(df, used)
    frame = df[used].dropna()
    t, e = survival_arrays(frame[duration], frame[event], source=f"columns {duration!r}/{event!r}")
    t0 = None
    if start:
        t0 = pd.to_numeric(frame[start], errors="coerce").to_numpy(float)
        bad = ~(t0 < t)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(f"each interval needs start < stop, got start {frame[start].iloc[i]!r} and stop "
                             f"{t[i]!r}", where=f"row {frame.index[i]}, columns {start!r}/{duration!r}")
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
    # R scales each covariate by 1/mean|x - mean| (not 0/1 columns) before iterating: it changes no
    # estimate but sets which pivots the generalized Cholesky treats as zero
    raw = design.to_numpy(dtype=float)
    zero_one = np.all(np.isin(raw, (-1.0, 0.0, 1.0)), axis=0)
    scale = np.where(zero_one, 1.0, 1 / np.mean(np.abs(X), axis=0))
    s_codes = (pd.MultiIndex.from_frame(frame[strata_cols]).factorize()[0] if strata_cols
               else np.zeros(t.size, dtype=int))
    data = _CoxData(X * scale, t, e.astype(float), s_codes, efron=(ties == "efron"), start=t0)
    fit = _newton(data, X.shape[1])
    data.X = X[data.order]  # back to the covariates' own units (linear predictor, zph)
    names = list(design.columns)
    beta = fit.beta * scale
    var = fit.var * np.outer(scale, scale)
    beta[fit.singular] = np.nan
    var[fit.singular, :] = np.nan
    var[:, fit.singular] = np.nan
    warns, infinite = [], []
    if not fit.converged:
        warns.append("Ran out of iterations and did not converge")
    else:
        u = fit.score / scale
        infs = np.abs(u @ np.nan_to_num(var))
        flag = ~np.isfinite(u) | ((infs > _EPS) & (infs > _TOLER_INF * np.abs(np.nan_to_num(beta))))
        if flag.any():
            infinite = [names[k] for k in np.flatnonzero(flag)]
            warns.append("Loglik converged before variable " + ",".join(str(k + 1) for k in np.flatnonzero(flag))
                         + "; coefficient may be infinite.")
    return CoxResult(params=pd.Series(beta, index=names), variance=pd.DataFrame(var, index=names, columns=names),
                     loglik=(fit.loglik0, fit.loglik), n=int(t.size), n_events=int(e.sum()),
                     n_dropped=int(len(df) - len(frame)), ties=ties, conf_level=conf_level,
                     iterations=fit.iterations, terms=terms, _data=data, _strata_names=strata_cols or None,
                     _sctest=fit.sctest, warnings=tuple(warns), infinite=tuple(infinite),
                     counting_process=bool(start))


def _transformed_times(time: np.ndarray, event: np.ndarray, transform: str,
                       start: np.ndarray | None = None) -> np.ndarray:
    """cox.zph's time transform g(t) per row (``km``: 1 − S(t−) of the pooled product-limit curve, with
    rows at risk from ``start`` to ``time`` for counting-process data, as R's survfitKM on the Surv object)."""
    if transform == "km":
        ev_times, d = np.unique(time[event.astype(bool)], return_counts=True)
        n_risk = time.size - np.searchsorted(np.sort(time), ev_times, side="left")
        if start is not None:
            n_risk -= start.size - np.searchsorted(np.sort(start), ev_times, side="left")
        surv = np.cumprod(1 - d / n_risk)
        surv_before = np.concatenate(([1.0], surv))
        return 1 - surv_before[np.searchsorted(ev_times, time, side="left")]
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
    ttimes = _transformed_times(d.time, d.event, transform, d.start)
    gtime = ttimes - ttimes[d.event.astype(bool)].mean()
    _, _, a, m2 = d.per_death(fit.params.fillna(0.0).to_numpy())
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
