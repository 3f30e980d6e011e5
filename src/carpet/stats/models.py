"""Comparing survival models, e.g. MTV against IPI (the LBCL CAR T study) or a score against its parts.

For each named model (a list of covariates) a Cox model (Efron ties) is fitted on the same complete
cases, and the comparison reports:

* Harrell's C of the fitted linear predictor — R ``coxph(...)$concordance`` (survival ≥ 3: ties in
  the predictor count 1/2, tied event times are not comparable), by :func:`carpet.stats.concordance_counts`,
  with R's infinitesimal-jackknife standard error (``sqrt(fit$concordance["std"]^2)``) and the normal
  interval C ± z·se (clipped to [0, 1]).
* log partial likelihood and AIC = −2 loglik + 2k — R ``AIC(coxph)``.
* likelihood-ratio test for every nested pair (one model's covariates a subset of the other's) —
  R ``anova(fit_small, fit_big)``. Fits by :func:`carpet.stats.cox` (R ``coxph``).
* time-dependent AUC at ``horizon``: cumulative cases (event by the horizon) vs dynamic controls
  (event-free after it), inverse-probability-of-censoring weighted with a marginal Kaplan–Meier
  censoring distribution (Uno 2007; Blanche 2013) — R ``riskRegression::Score(..., metrics="auc",
  cens.model="km")``. Written here (neither carpet.stats nor lifelines has it; scikit-survival is
  not a dependency).
* bootstrap CI of the C-index difference for every pair (percentile; resampling patients; no R
  counterpart is checked — the number depends on the random draws). By default the linear
  predictors of the full-data fits are kept fixed, which measures the sampling variability of C
  for the models as fitted; ``refit=True`` refits both models in every resample (slower; includes
  the variability of the fit).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from carpet.errors import InputError
from carpet.provenance import provenance
from carpet.stats._input import require_columns
from carpet.stats.concordance import concordance_counts, concordance_index
from carpet.stats.cox import cox


@dataclass(frozen=True)
class CoxFit:
    """What model comparison needs from one Cox fit."""

    covariates: tuple[str, ...]
    loglik: float
    linear_predictor: np.ndarray
    coef: pd.Series


@dataclass
class ModelComparison:
    """Result of :func:`compare_models`.

    Attributes
    ----------
    summary : DataFrame
        One row per model: ``model, covariates, n, events, k, loglik, aic, c_index, c_index_se,
        c_index_lower, c_index_upper`` and
        ``td_auc`` (at ``horizon``; NaN when no horizon).
    differences : DataFrame
        One row per pair: ``model_a, model_b, c_diff`` (a − b), ``lower, upper`` (bootstrap percentile
        CI), ``se`` (bootstrap SD), ``n_boot``.
    lr_tests : DataFrame
        One row per nested pair: ``smaller, larger, statistic, df, p_value``.
    fits : dict
        :class:`CoxFit` per model.
    provenance : dict
    """

    summary: pd.DataFrame
    differences: pd.DataFrame
    lr_tests: pd.DataFrame
    fits: dict
    provenance: dict = field(default_factory=dict)


def compare_models(df: pd.DataFrame, duration: str, event: str, models: Mapping[str, Sequence[str]], *,
                   n_boot: int = 1000, seed: int = 0, horizon: float | None = None, alpha: float = 0.05,
                   refit: bool = False) -> ModelComparison:
    """Compare Cox models on the same patients: C-index, AIC, LR tests, time-dependent AUC, bootstrap ΔC.

    Parameters
    ----------
    df : DataFrame
        One row per patient.
    duration, event : str
        Follow-up time (any unit; ``horizon`` in the same unit) and event indicator (1 = event).
    models : mapping name -> list of covariate columns
        At least two models, each with at least one numeric covariate (code categories as 0/1 columns).
    n_boot : int
        Bootstrap resamples for the C-index differences (0 skips them).
    seed : int
        Seed of the bootstrap.
    horizon : float, optional
        Time at which the cumulative/dynamic AUC is computed.
    alpha : float
        1 − confidence level of the C-index and bootstrap intervals.
    refit : bool
        Refit the models in every bootstrap resample (see module docstring).

    Returns
    -------
    ModelComparison
    """
    if len(models) < 2:
        raise InputError(f"compare_models needs at least two models, got {list(models)}", where="models")
    used = list(dict.fromkeys(c for covs in models.values() for c in covs))
    for name, covs in models.items():
        if not covs:
            raise InputError(f"model '{name}' has no covariates", where="models")
    require_columns(df, [duration, event, *used])
    # One set of complete cases for all models: AIC and LR tests are only comparable on the same rows.
    data = df[[duration, event, *used]].dropna().reset_index(drop=True)
    for c in used:
        if not pd.api.types.is_numeric_dtype(data[c]):
            raise InputError(f"covariate '{c}' is not numeric", where=f"column '{c}'",
                             hint="code categories as 0/1 indicator columns")
        if data[c].nunique() < 2:
            raise InputError(f"covariate '{c}' is constant on the {len(data)} complete cases", where=f"column '{c}'")
    time = data[duration].to_numpy(float)
    status = data[event].to_numpy(int)

    fits = {name: _fit_cox(data, duration, event, list(covs)) for name, covs in models.items()}
    rows = []
    z = stats.norm.ppf(1 - alpha / 2)
    for name, fit in fits.items():
        k = len(fit.covariates)
        cc = concordance_counts(time, status, fit.linear_predictor)
        rows.append({"model": name, "covariates": " + ".join(fit.covariates), "n": len(data),
                     "events": int(status.sum()), "k": k, "loglik": fit.loglik,
                     "aic": -2.0 * fit.loglik + 2.0 * k,
                     "c_index": cc.concordance, "c_index_se": cc.std_err,
                     "c_index_lower": max(0.0, cc.concordance - z * cc.std_err),
                     "c_index_upper": min(1.0, cc.concordance + z * cc.std_err),
                     "td_auc": np.nan if horizon is None else td_auc(time, status, fit.linear_predictor, horizon)})
    summary = pd.DataFrame(rows)

    lr_rows = []
    for a, b in itertools.permutations(fits, 2):
        small, large = fits[a], fits[b]
        if set(small.covariates) < set(large.covariates):
            stat = 2.0 * (large.loglik - small.loglik)
            dof = len(large.covariates) - len(small.covariates)
            lr_rows.append({"smaller": a, "larger": b, "statistic": stat, "df": dof,
                            "p_value": float(stats.chi2.sf(stat, dof))})
    lr_tests = pd.DataFrame(lr_rows, columns=["smaller", "larger", "statistic", "df", "p_value"])

    differences = _bootstrap_differences(data, duration, event, fits, n_boot=n_boot, seed=seed, alpha=alpha,
                                         refit=refit)
    prov = provenance(method="compare_models", model="Cox proportional hazards (Efron ties, carpet.stats.cox)",
                      c_index="Harrell (R survival concordance), infinitesimal-jackknife SE, normal CI",
                      horizon=horizon,
                      td_auc="cumulative/dynamic, IPCW with marginal KM censoring (Uno/Blanche)",
                      bootstrap={"n_boot": n_boot, "seed": seed, "refit": refit, "ci": "percentile",
                                 "level": 1 - alpha}, n_complete=len(data), n_dropped=len(df) - len(data))
    return ModelComparison(summary=summary, differences=differences, lr_tests=lr_tests, fits=fits, provenance=prov)


def _fit_cox(data: pd.DataFrame, duration: str, event: str, covariates: list[str]) -> CoxFit:
    fit = cox(data, duration=duration, event=event, covariates=covariates, ties="efron")
    return CoxFit(tuple(covariates), float(fit.loglik[1]), fit.linear_predictor, fit.params.copy())


def _censoring_survival(time: np.ndarray, event: np.ndarray):
    """Kaplan–Meier of the censoring distribution: returns ``G(t)`` (or its left limit ``G(t-)``).

    Censorings are the "events". At a time with both an event and a censoring the event comes first,
    so patients with an event at ``u`` are no longer at risk of censoring at ``u``: the risk set is
    ``#{T > u} + #{censored at u}`` (the convention of R's prodlim/riskRegression reverse KM).
    """
    times = np.unique(time)
    later = len(time) - np.searchsorted(np.sort(time), times, side="right")
    censored = np.bincount(np.searchsorted(times, time[event == 0]), minlength=len(times))
    at_risk = later + censored
    surv = np.cumprod(1.0 - np.divide(censored, at_risk, out=np.zeros(len(times)), where=at_risk > 0))

    def g(t, left: bool = False) -> np.ndarray:
        idx = np.searchsorted(times, np.asarray(t, float), side="left" if left else "right") - 1
        return np.where(idx >= 0, surv[np.maximum(idx, 0)], 1.0)

    return g


def td_auc(time, event, risk, horizon: float) -> float:
    """Cumulative/dynamic time-dependent AUC at ``horizon`` with KM-based IPCW.

    Cases: event at or before ``horizon``, weight 1/G(T_i−); controls: still event-free after
    ``horizon`` (T_j > horizon), weight 1/G(horizon). AUC = weighted share of case–control pairs with
    the case's risk higher (ties count 1/2). Equals R ``riskRegression::Score(metrics="auc",
    cens.model="km")`` and ``timeROC(weighting="marginal")``.
    """
    time, event, risk = np.asarray(time, float), np.asarray(event, int), np.asarray(risk, float)
    g = _censoring_survival(time, event)
    cases = (time <= horizon) & (event == 1)
    controls = time > horizon
    if not cases.any() or not controls.any():
        return float("nan")
    w_case = 1.0 / g(time[cases], left=True)
    r_case, r_ctrl = risk[cases], np.sort(risk[controls])
    # for each case: #controls with lower risk + 1/2 #ties, by binary search (O(n log n))
    below = np.searchsorted(r_ctrl, r_case, side="left")
    ties = np.searchsorted(r_ctrl, r_case, side="right") - below
    # controls share one weight 1/G(horizon), which cancels between numerator and denominator
    return float(np.sum(w_case * (below + 0.5 * ties)) / (w_case.sum() * len(r_ctrl)))


def _bootstrap_differences(data, duration, event, fits, *, n_boot, seed, alpha, refit) -> pd.DataFrame:
    names = list(fits)
    pairs = list(itertools.combinations(names, 2))
    time = data[duration].to_numpy(float)
    status = data[event].to_numpy(int)
    full_c = {name: concordance_index(time, status, fit.linear_predictor) for name, fit in fits.items()}
    draws = np.full((max(n_boot, 0), len(names)), np.nan)
    rng = np.random.default_rng(seed)
    for b in range(n_boot):
        idx = rng.integers(0, len(data), len(data))
        if status[idx].sum() == 0:
            continue
        for m, name in enumerate(names):
            if refit:
                sample = data.iloc[idx].reset_index(drop=True)
                lp = _fit_cox(sample, duration, event, list(fits[name].covariates)).linear_predictor
            else:
                lp = fits[name].linear_predictor[idx]
            draws[b, m] = concordance_index(time[idx], status[idx], lp)
    rows = []
    for a, b in pairs:
        diff = draws[:, names.index(a)] - draws[:, names.index(b)]
        diff = diff[np.isfinite(diff)]
        lower, upper = (np.quantile(diff, [alpha / 2, 1 - alpha / 2]) if len(diff) else (np.nan, np.nan))
        rows.append({"model_a": a, "model_b": b, "c_diff": full_c[a] - full_c[b], "lower": float(lower),
                     "upper": float(upper), "se": float(diff.std(ddof=1)) if len(diff) > 1 else np.nan,
                     "n_boot": len(diff)})
    return pd.DataFrame(rows, columns=["model_a", "model_b", "c_diff", "lower", "upper", "se", "n_boot"])
