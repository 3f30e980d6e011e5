"""Fine–Gray proportional subdistribution-hazards regression, as R's ``cmprsk::crr`` (one censoring group, no
time-varying covariates): coefficients, the robust (sandwich) variance cmprsk reports, and its Newton iteration.

Written here because no Python dependency fits the Fine–Gray model (lifelines and statsmodels do not). The
score and information are those of cmprsk's ``crrfsv`` (a Cox partial likelihood where a subject who failed
from a competing cause stays in the risk set with weight G(t−)/G(tᵢ−), G the Kaplan–Meier estimate of the
censoring distribution); the variance is cmprsk's ``crrvv`` sandwich H⁻¹ (Σᵢ (ηᵢ + ψᵢ)(ηᵢ + ψᵢ)ᵀ) H⁻¹, with
ψᵢ the term for the estimated censoring distribution — all as n × (number of failures) numpy arrays
instead of cmprsk's nested loops. The iteration is crr's: Newton steps with backtracking, converged when
max |score|·max(|b|, 1) < max(|loglik|, 1)·1e-6, at most 10 iterations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from carpet.errors import InputError
from carpet.provenance import provenance
from carpet.stats._input import design_matrix, require_columns


class _FGData:
    """Time-sorted data with the censoring weights of every (failure row, subject) pair."""

    def __init__(self, t: np.ndarray, status: np.ndarray, X: np.ndarray):
        self.t, self.status, self.X = t, status, X
        n = t.size
        censored = status == 0
        # G(t−): Kaplan–Meier of the censoring times, left limit (R: summary(survfit, times = t·(1 − eps)))
        times = np.unique(t)
        at_risk = n - np.searchsorted(t, times, side="left")
        cens = np.bincount(np.searchsorted(times, t[censored]), minlength=times.size)
        g = np.cumprod(1 - cens / at_risk)
        g_left = np.concatenate(([1.0], g))[np.searchsorted(times, t, side="left")]
        self.g = g_left
        self.fail = np.flatnonzero(status == 1)
        tf = t[self.fail]
        # W[j, i]: weight of subject i in the risk set of failure row j
        later = t[None, :] >= tf[:, None]
        other = (status[None, :] == 2) & ~later
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = g_left[self.fail][:, None] / g_left[None, :]
        self.W = np.where(later, 1.0, np.where(other, ratio, 0.0))

    def terms(self, b: np.ndarray):
        """cmprsk's (minimised) −log partial likelihood, its gradient and Hessian, and the risk-set sums."""
        X, W, f = self.X, self.W, self.fail
        e = np.exp(X @ b)
        we = W * e[None, :]
        s0 = we.sum(axis=1)
        s1 = we @ X
        mean = s1 / s0[:, None]
        s2 = np.einsum("ji,ik,il->jkl", we, X, X)
        lik = -float((X[f] @ b).sum()) + float(np.log(s0).sum())
        score = -X[f].sum(axis=0) + mean.sum(axis=0)
        info = (s2 / s0[:, None, None]).sum(axis=0) - mean.T @ mean
        return lik, score, info, e, s0, mean


def _sandwich(d: _FGData, b: np.ndarray, info: np.ndarray) -> np.ndarray:
    """cmprsk ``crrvv``: H⁻¹ (Σᵢ (ηᵢ + ψᵢ)(ηᵢ + ψᵢ)ᵀ) H⁻¹."""
    X, W, f, t, status = d.X, d.W, d.fail, d.t, d.status
    n = t.size
    _, _, _, e, s0, mean = d.terms(b)
    # eta_i = dN_i (x_i − ē(t_i)) − e_i Σ_j W[j, i] (x_i − ē_j) / S0_j
    a = (W / s0[:, None]).sum(axis=0)                     # Σ_j W[j,i]/S0_j
    c = (W / s0[:, None]).T @ mean                        # Σ_j W[j,i] ē_j / S0_j
    eta = -e[:, None] * (X * a[:, None] - c)
    eta[f] += X[f] - mean
    # psi: censoring part; q(t) = Σ_{failures j, t_j >= t} G(t_j−) (B(t) − ē_j A(t)) / S0_j with
    # A(t) = Σ_{competing failures k, t_k < t} e_k / G(t_k−), B the same with e_k x_k
    times, first = np.unique(t, return_index=True)
    comp = status == 2
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_g = np.where(comp, e / d.g, 0.0)
    cum_a = np.concatenate(([0.0], np.cumsum(inv_g)))[first]          # strictly before each distinct time
    cum_b = np.vstack((np.zeros(X.shape[1]), np.cumsum(inv_g[:, None] * X, axis=0)))[first]
    gf = d.g[f] / s0
    tf = t[f]
    later = tf[None, :] >= times[:, None]                                # failures at or after each time
    cc = later @ gf
    dd = later @ (gf[:, None] * mean)
    q = cum_b * cc[:, None] - cum_a[:, None] * dd                       # per distinct time
    n_risk = n - first
    n_cens = np.bincount(np.searchsorted(times, t[status == 0]), minlength=times.size)
    ss2 = -np.cumsum(q * (n_cens / n_risk ** 2)[:, None], axis=0)
    block = np.searchsorted(times, t)
    psi = ss2[block] + np.where(status == 0, 1.0, 0.0)[:, None] * q[block] / n_risk[block][:, None]
    u = eta + psi
    h = np.linalg.inv(info)
    return h @ (u.T @ u) @ h


@dataclass
class FineGrayResult:
    """A Fine–Gray fit (create with :func:`fine_gray`).

    Attributes
    ----------
    params : Series (log subdistribution hazard ratios); variance : DataFrame (cmprsk's robust variance)
    loglik : float (log pseudo-likelihood, R ``fit$loglik``); converged : bool; iterations : int
    n, n_dropped, n_events, n_competing : int
    """

    params: pd.Series
    variance: pd.DataFrame
    loglik: float
    converged: bool
    iterations: int
    n: int
    n_dropped: int
    n_events: int
    n_competing: int
    failcode: object
    conf_level: float
    warnings: list = field(default_factory=list)

    @property
    def se(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self.variance.to_numpy())), index=self.params.index)

    @property
    def summary(self) -> pd.DataFrame:
        """Per covariate: coef, shr (subdistribution HR), se (robust), z, p, shr_lower, shr_upper
        (``summary(crr)``)."""
        b, se = self.params, self.se
        z = b / se
        q = stats.norm.ppf(1 - (1 - self.conf_level) / 2)
        return pd.DataFrame({"coef": b, "shr": np.exp(b), "se": se, "z": z, "p": 2 * stats.norm.sf(np.abs(z)),
                             "shr_lower": np.exp(b - q * se), "shr_upper": np.exp(b + q * se)})

    @property
    def provenance(self) -> dict:
        return provenance(method="Fine-Gray subdistribution hazards (R cmprsk::crr)", failcode=self.failcode,
                          variance="robust sandwich (cmprsk crrvv)", converged=self.converged,
                          iterations=self.iterations, warnings=list(self.warnings))


def fine_gray(df: pd.DataFrame, duration: str = "time", status: str = "status", covariates: list[str] | None = None,
              *, failcode=1, cencode=0, conf_level: float = 0.95, reference: dict | None = None,
              max_iter: int = 10, gtol: float = 1e-6) -> FineGrayResult:
    """Fit ``crr(ftime, fstatus, cov1, failcode = failcode, cencode = cencode)``.

    Parameters
    ----------
    df : DataFrame
        One row per patient; rows missing any used column are dropped (R's na.omit).
    duration : str
        Follow-up time column.
    status : str
        ``cencode`` for censored, ``failcode`` for the event of interest (e.g. relapse), anything else a
        competing event (e.g. non-relapse death).
    covariates : list of str
        Numeric columns as they are; categorical ones as treatment dummies (``reference`` as in :func:`cox`).

    Returns
    -------
    FineGrayResult
    """
    covariates = [covariates] if isinstance(covariates, str) else list(covariates or [])
    if not covariates:
        raise InputError("a Fine-Gray model needs at least one covariate", where="covariates")
    require_columns(df, [duration, status, *covariates])
    frame = df[[duration, status, *covariates]].dropna()
    t = pd.to_numeric(frame[duration], errors="coerce").to_numpy(float)
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise InputError("follow-up time must be a finite number >= 0", where=f"column {duration!r}")
    raw = frame[status].to_numpy()
    code = np.where(raw == failcode, 1, np.where(raw == cencode, 0, 2))
    if not np.any(code == 1):
        raise InputError(f"no events with status {failcode!r} among the {len(frame)} rows used",
                         where=f"column {status!r}")
    design, _ = design_matrix(frame, covariates, reference)
    order = np.argsort(t, kind="stable")
    data = _FGData(t[order], code[order], design.to_numpy(float)[order])
    p = design.shape[1]
    b = np.zeros(p)
    converged, it = False, 0
    for it in range(max_iter + 1):
        lik, score, info, *_ = data.terms(b)
        if np.max(np.abs(score) * np.maximum(np.abs(b), 1)) < max(abs(lik), 1) * gtol:
            converged = True
            break
        if it == max_iter:
            break
        step = -np.linalg.solve(info, score)
        for _ in range(21):
            new = b + step
            lik_new = data.terms(new)[0]
            if np.isfinite(lik_new) and lik_new <= lik + 1e-4 * float(step @ score):
                break
            step = step * 0.5
        else:
            break
        b = new
    lik, score, info, *_ = data.terms(b)
    var = _sandwich(data, b, info)
    names = list(design.columns)
    warns = [] if converged else ["crr: did not converge"]
    return FineGrayResult(pd.Series(b, index=names), pd.DataFrame(var, index=names, columns=names), -lik, converged,
                          it, int(len(frame)), int(len(df) - len(frame)), int(np.sum(code == 1)),
                          int(np.sum(code == 2)), failcode, conf_level, warns)
