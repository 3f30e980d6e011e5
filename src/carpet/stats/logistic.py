"""Logistic regression as R's ``glm(y ~ ..., family = binomial)``: coefficients, odds ratios, Wald and profile
CIs, likelihood-ratio test, and R's warnings.

The fit follows ``glm.fit`` step for step (start at mu = (y + 1/2)/2, IRLS, stop when |dev − dev_old| /
(|dev| + 0.1) < 1e-8, at most 25 iterations; standard errors from the working weights of the last
iteration). Written here rather than with statsmodels' GLM because statsmodels stops on an absolute
deviance change and takes its covariance at the final estimate: both differ from R by ~1e-5 relative, and
under separation (no finite estimate) the numbers depend entirely on where the iterations stop. The
profile-likelihood interval is the exact root of the profile deviance (MASS's ``confint`` interpolates a
spline through a few profile points instead, see :attr:`LogisticResult.profile_ci`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize, stats

from carpet.errors import InputError
from carpet.provenance import provenance
from carpet.stats._input import design_matrix, require_columns
from carpet.stats._results import TestResult

_EPS = np.finfo(float).eps
_THRESH = 30.0


def _linkinv(eta: np.ndarray) -> np.ndarray:
    """R's logit inverse link (C ``logit_linkinv``): eta beyond ±30 maps to eps / 1/eps before x/(1+x)."""
    t = np.where(eta < -_THRESH, _EPS, np.where(eta > _THRESH, 1 / _EPS, np.exp(np.clip(eta, -_THRESH, _THRESH))))
    return t / (1 + t)


def _mu_eta(eta: np.ndarray) -> np.ndarray:
    e = np.exp(np.clip(eta, -_THRESH, _THRESH))
    return np.where(np.abs(eta) > _THRESH, _EPS, e / (1 + e) ** 2)


def _deviance(y: np.ndarray, mu: np.ndarray) -> float:
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(y > 0, y * np.log(y / mu), 0.0) + np.where(y < 1, (1 - y) * np.log((1 - y) / (1 - mu)), 0.0)
    return float(2 * r.sum())


def _irls(X: np.ndarray, y: np.ndarray, offset: np.ndarray | None = None, epsilon: float = 1e-8,
          maxit: int = 25):
    """glm.fit for the binomial family: (coef, deviance, unscaled covariance, iterations, converged, mu)."""
    off = np.zeros(y.size) if offset is None else offset
    mu = (y + 0.5) / 2
    eta = np.log(mu / (1 - mu))
    dev_old = _deviance(y, mu)
    coef = np.zeros(X.shape[1])
    converged, it = False, 0
    for it in range(1, maxit + 1):
        mu_eta = _mu_eta(eta)
        var = mu * (1 - mu)
        z = eta - off + (y - mu) / mu_eta
        w = np.sqrt(mu_eta ** 2 / var)
        q, r = np.linalg.qr(X * w[:, None])
        coef = np.linalg.solve(r, q.T @ (z * w)) if X.shape[1] else coef
        eta = X @ coef + off
        mu = _linkinv(eta)
        dev = _deviance(y, mu)
        if abs(dev - dev_old) / (abs(dev) + 0.1) < epsilon:
            converged = True
            break
        dev_old = dev
    r_inv = np.linalg.inv(r) if X.shape[1] else r
    return coef, dev, r_inv @ r_inv.T, it, converged, mu


@dataclass(frozen=True)
class LogisticResult:
    """A fitted logistic regression (create with :func:`logistic`).

    Attributes
    ----------
    params : Series
        Coefficients (log odds ratios), ``(Intercept)`` first, then design columns named like R.
    variance : DataFrame
        Covariance of the coefficients (R ``vcov``).
    deviance, null_deviance : float
    n, n_dropped : int
        Rows used and rows dropped for a missing value (R's na.omit).
    iterations : int
    warnings : list of str
        R's warnings, word for word (``glm.fit: fitted probabilities numerically 0 or 1 occurred``,
        ``glm.fit: algorithm did not converge``): their coefficients are not finite estimates.
    """

    params: pd.Series
    variance: pd.DataFrame
    deviance: float
    null_deviance: float
    n: int
    n_dropped: int
    iterations: int
    conf_level: float
    terms: dict
    warnings: list = field(default_factory=list)
    _X: np.ndarray | None = None
    _y: np.ndarray | None = None

    @property
    def se(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self.variance.to_numpy())), index=self.params.index)

    @property
    def summary(self) -> pd.DataFrame:
        """Per coefficient: coef, se, z, p (Wald), odds_ratio, or_lower, or_upper (Wald), as ``summary(glm)``
        and ``exp(confint.default(fit))``."""
        b, se = self.params, self.se
        z = b / se
        q = stats.norm.ppf(1 - (1 - self.conf_level) / 2)
        return pd.DataFrame({"coef": b, "se": se, "z": z, "p": 2 * stats.norm.sf(np.abs(z)), "odds_ratio": np.exp(b),
                             "or_lower": np.exp(b - q * se), "or_upper": np.exp(b + q * se)})

    @property
    def loglik(self) -> float:
        return -self.deviance / 2  # 0/1 outcomes: the saturated log-likelihood is 0

    @property
    def aic(self) -> float:
        return self.deviance + 2 * self.params.size

    @property
    def lr_test(self) -> TestResult:
        """Likelihood-ratio test against the intercept-only model (null − residual deviance)."""
        stat = self.null_deviance - self.deviance
        dof = self.params.size - 1
        return TestResult(float(stat), dof, float(stats.chi2.sf(stat, dof)))

    @property
    def profile_ci(self) -> pd.DataFrame:
        """Profile-likelihood interval per coefficient: the exact roots of deviance(b_j) − deviance =
        χ²₁(level). Columns lower, upper (log odds) and or_lower, or_upper.

        R's ``confint(glm)`` (MASS) interpolates a spline through profile points and so differs from these
        roots in about the fourth significant digit; ``NaN`` where the profile never reaches the cut-off
        (e.g. under separation, where R returns NA too).
        """
        crit = stats.chi2.ppf(self.conf_level, 1)
        X, y = self._X, self._y
        rows = []
        for j, name in enumerate(self.params.index):
            others = np.delete(X, j, axis=1)

            def excess(b, j=j, others=others):
                return _irls(others, y, offset=b * X[:, j], epsilon=1e-14, maxit=100)[1] - self.deviance - crit

            est, se = self.params.iloc[j], self.se.iloc[j]
            bounds = []
            for sign in (-1, 1):
                far = est + sign * 6 * se
                ok = np.isfinite(far) and not self.warnings and excess(far) > 0
                bounds.append(optimize.brentq(excess, *sorted((est, far)), xtol=1e-13, rtol=1e-14) if ok
                              else np.nan)
            rows.append(bounds)
        ci = pd.DataFrame(rows, index=self.params.index, columns=["lower", "upper"])
        return ci.assign(or_lower=np.exp(ci["lower"]), or_upper=np.exp(ci["upper"]))

    @property
    def provenance(self) -> dict:
        return provenance(method="logistic regression (R glm, family = binomial, IRLS as glm.fit)",
                          conf_level=self.conf_level, n=self.n, n_dropped=self.n_dropped,
                          iterations=self.iterations, warnings=list(self.warnings))


def logistic(df: pd.DataFrame, outcome: str = "y", covariates: list[str] | None = None, *,
             conf_level: float = 0.95, reference: dict | None = None) -> LogisticResult:
    """Fit ``glm(outcome ~ covariates, family = binomial)``.

    Parameters
    ----------
    df : DataFrame
        One row per subject; rows missing any used column are dropped (R's na.omit).
    outcome : str
        0/1 column (1 = event, e.g. response).
    covariates : list of str
        Numeric columns enter as they are; categorical/text/bool columns as treatment dummies against
        the first level or ``reference[column]``.
    conf_level : float

    Returns
    -------
    LogisticResult
    """
    if isinstance(covariates, str):
        covariates = [covariates]
    covariates = list(covariates or [])
    require_columns(df, [outcome, *covariates])
    frame = df[[outcome, *covariates]].dropna()
    if frame.empty:
        raise InputError(f"no complete rows in columns {[outcome, *covariates]}", where="rows")
    y = pd.to_numeric(frame[outcome], errors="coerce").to_numpy(float)
    bad = ~np.isin(y, (0.0, 1.0))
    if bad.any():
        raise InputError(f"outcome must be 0 or 1, got {frame[outcome].to_numpy()[bad][0]!r}",
                         where=f"column {outcome!r}")
    if covariates:
        design, terms = design_matrix(frame, covariates, reference)
    else:
        design, terms = pd.DataFrame(index=frame.index), {}
    X = np.column_stack((np.ones(len(frame)), design.to_numpy(float)))
    names = ["(Intercept)", *design.columns]
    if np.linalg.matrix_rank(X) < X.shape[1]:
        raise InputError(f"the design {names} is rank deficient on the {len(frame)} rows used (a covariate is "
                         "constant or collinear with others)", where="covariates")
    coef, dev, cov, it, converged, mu = _irls(X, y)
    warnings = []
    if not converged:
        warnings.append("glm.fit: algorithm did not converge")
    if np.any(mu > 1 - 10 * _EPS) or np.any(mu < 10 * _EPS):
        warnings.append("glm.fit: fitted probabilities numerically 0 or 1 occurred")
    null_dev = _deviance(y, np.full(y.size, y.mean()))
    shifted = {k: [c + 1 for c in v] for k, v in terms.items()}
    return LogisticResult(pd.Series(coef, index=names), pd.DataFrame(cov, index=names, columns=names), dev,
                          null_dev, int(y.size), int(len(df) - len(frame)), it, conf_level, shifted, warnings,
                          X, y)
