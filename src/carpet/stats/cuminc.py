"""Cumulative incidence of competing events (Aalen–Johansen) with its variance, and Gray's test, as R's
``cmprsk::cuminc`` and ``cmprsk::timepoints`` — e.g. relapse vs non-relapse mortality after CAR T.

Written here because no Python dependency has Gray's test or cmprsk's variance (lifelines'
AalenJohansenFitter gives the estimate with a delta-method variance, not cmprsk's). The estimate and
variance follow cmprsk's ``cinc`` and the test its ``crstm`` (Gray 1988, rho = 0 by default), line for
line over the distinct times. The confidence interval is the log(−log) one that tidycmprsk and most
papers print: est^exp(±z·sqrt(var)/(est·log est)); cmprsk prints none.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from carpet.errors import InputError
from carpet.provenance import provenance


def _cinc(y: np.ndarray, failed: np.ndarray, cause: np.ndarray):
    """cmprsk ``cinc`` on time-sorted data: step corners (time, estimate, variance)."""
    n = y.size
    x, f, v = [0.0], [0.0], [0.0]
    fk, v1, v2, v3 = 1.0, 0.0, 0.0, 0.0
    times, first = np.unique(y, return_index=True)
    last = np.concatenate((first[1:], [n]))
    for t, lo, hi in zip(times, first, last):
        rs = n - lo
        nd1 = int(cause[lo:hi].sum())
        nd2 = int(failed[lo:hi].sum()) - nd1
        nd = nd1 + nd2
        if nd == 0:
            continue
        fkn = fk * (rs - nd) / rs
        if nd1 > 0:
            f += [f[-1], f[-1] + fk * nd1 / rs]
        if nd2 > 0 and fkn > 0:
            t5 = 1 - (nd2 - 1) / (rs - 1) if nd2 > 1 else 1.0
            t6 = fk * fk * t5 * nd2 / (rs * rs)
            t3, t4 = 1 / fkn, f[-1] / fkn
            v1, v2, v3 = v1 + t4 * t4 * t6, v2 + t3 * t4 * t6, v3 + t3 * t3 * t6
        if nd1 > 0:
            t5 = 1 - (nd1 - 1) / (rs - 1) if nd1 > 1 else 1.0
            t6 = fk * fk * t5 * nd1 / (rs * rs)
            t3 = 1 / fkn if fkn > 0 else 0.0
            t4 = 1 + t3 * f[-1]
            v1, v2, v3 = v1 + t4 * t4 * t6, v2 + t3 * t4 * t6, v3 + t3 * t3 * t6
            t2 = f[-1]
            x += [t, t]
            v += [v[-1], v1 + t2 * t2 * v3 - 2 * t2 * v2]
        fk = fkn
    x.append(float(y[-1]))
    f.append(f[-1])
    v.append(v[-1])
    return np.array(x, float), np.array(f), np.array(v)


def _crst(y, m, ig, ng: int, rho: float):
    """cmprsk ``crst`` for one stratum (time-sorted; m: 0 censored, 1 cause of interest, 2 other; ig 0..ng-1):
    scores of the first ng−1 groups and their covariance."""
    n = y.size
    rs = np.bincount(ig, minlength=ng).astype(float)
    ng1 = ng - 1
    s = np.zeros(ng1)
    v = np.zeros((ng1, ng1))
    f1m, f1 = np.zeros(ng), np.zeros(ng)
    skmm, skm = np.ones(ng), np.ones(ng)
    v3, v2, c = np.zeros(ng), np.zeros((ng1, ng)), np.zeros((ng, ng))
    fm = 0.0
    times, first = np.unique(y, return_index=True)
    last = np.concatenate((first[1:], [n]))
    for lo, hi in zip(first, last):
        d = np.zeros((3, ng))
        np.add.at(d, (m[lo:hi], ig[lo:hi]), 1)
        nd1, nd2 = d[1].sum(), d[2].sum()
        if nd1 > 0 or nd2 > 0:
            live = rs > 0
            safe_rs = np.where(live, rs, 1.0)
            skm = np.where(live, skmm * (rs - d[1] - d[2]) / safe_rs, skm)
            f1 = np.where(live, f1m + skmm * d[1] / safe_rs, f1)
            tr = float(np.sum(np.where(live, rs / skmm, 0.0)))
            tq = float(np.sum(np.where(live, rs * (1 - f1m) / skmm, 0.0)))
            f = fm + nd1 / tr
            fb = (1 - fm) ** rho
            t1 = np.where(live, rs / skmm, 0.0)
            a = -fb * np.outer(t1, t1) / tr
            np.fill_diagonal(a, fb * t1 * (1 - t1 / tr))
            a[~live, :] = 0.0
            a[:, ~live] = 0.0
            c += a * nd1 / (tr * (1 - fm))
            s += np.where(live[:ng1], fb * (d[1, :ng1] - nd1 * rs[:ng1] * (1 - f1m[:ng1]) / (skmm[:ng1] * tq)), 0.0)
            if nd1 > 0:
                for k in np.flatnonzero(live):
                    t4 = 1 - (1 - f) / skm[k] if skm[k] > 0 else 1.0
                    t5 = 1 - (nd1 - 1) / (tr * skmm[k] - 1) if nd1 > 1 else 1.0
                    t3 = t5 * skmm[k] * nd1 / (tr * rs[k])
                    v3[k] += t4 * t4 * t3
                    t1k = a[:ng1, k] - t4 * c[:ng1, k]
                    v2[:, k] += t1k * t4 * t3
                    v += np.outer(t1k, t1k) * t3
            if nd2 > 0:
                for k in np.flatnonzero((skm > 0) & (d[2] > 0)):
                    t4 = (1 - f) / skm[k]
                    t5 = 1 - (d[2, k] - 1) / (rs[k] - 1) if d[2, k] > 1 else 1.0
                    t3 = t5 * skmm[k] ** 2 * d[2, k] / rs[k] ** 2
                    v3[k] += t4 * t4 * t3
                    t1k = t4 * c[:ng1, k]
                    v2[:, k] -= t1k * t4 * t3
                    v += np.outer(t1k, t1k) * t3
            fm = f
        if hi >= n:
            break
        rs -= np.bincount(ig[lo:hi], minlength=ng)
        f1m, skmm = f1.copy(), skm.copy()
    cc = c[:ng1, :]
    v += (cc * v3) @ cc.T + cc @ v2.T + v2 @ cc.T
    return s, v


@dataclass
class CumulativeIncidence:
    """Result of :func:`cuminc`.

    Attributes
    ----------
    curves : dict (group, cause) -> DataFrame time, estimate, variance
        cmprsk's step corners (each jump time twice: before and after the jump).
    gray_test : DataFrame or None
        cause, statistic, p_value, df — Gray's test across groups (None for one group).
    groups, causes : lists in cmprsk's order (sorted).
    n, n_dropped : rows used and rows dropped for a missing value.
    """

    curves: dict
    gray_test: pd.DataFrame | None
    groups: list
    causes: list
    n: int
    n_dropped: int
    rho: float
    conf_level: float = 0.95
    provenance: dict = field(default_factory=dict)

    def at(self, times) -> pd.DataFrame:
        """Estimates at ``times`` (as ``cmprsk::timepoints``): cause, group, time, estimate, variance, lower,
        upper; NaN after a group's last follow-up time."""
        ts = np.sort(np.unique(np.asarray(times, dtype=float)))
        z = stats.norm.ppf(1 - (1 - self.conf_level) / 2)
        rows = []
        for (group, cause), curve in self.curves.items():
            x, f, v = (curve[c].to_numpy() for c in ("time", "estimate", "variance"))
            # tpoi: the corner after the last one <= t (right-continuous); NA beyond the last time
            k = np.searchsorted(x[:-1], ts, side="right")
            ok = (ts <= x[-1]) & (k > 0)
            idx = np.minimum(k, x.size - 1)
            est, var = np.where(ok, f[idx], np.nan), np.where(ok, v[idx], np.nan)
            with np.errstate(divide="ignore", invalid="ignore"):
                w = np.exp(z * np.sqrt(var) / (est * np.log(est)))
                lower, upper = est ** (1 / w), est ** w
            for t, e, vv, lo, hi in zip(ts, est, var, lower, upper):
                rows.append({"cause": cause, "group": group, "time": t, "estimate": e, "variance": vv,
                             "lower": lo if 0 < e < 1 else np.nan, "upper": hi if 0 < e < 1 else np.nan})
        return pd.DataFrame(rows)


def cuminc(time, status, group=None, *, strata=None, rho: float = 0.0, cencode=0,
           conf_level: float = 0.95) -> CumulativeIncidence:
    """Cumulative incidence functions per group and cause, and Gray's test, as ``cmprsk::cuminc``.

    Parameters
    ----------
    time : array-like
        Follow-up time (>= 0, any unit).
    status : array-like
        ``cencode`` (default 0) for censored, otherwise the cause (e.g. 1 relapse, 2 non-relapse death).
    group : array-like, optional
        Groups to compare (Gray's test, ng − 1 degrees of freedom).
    strata : array-like, optional
        Strata of the test.
    rho : float
        Power of the weight function of the test (0: Gray's default).
    conf_level : float
        Level of the log(−log) intervals of :meth:`CumulativeIncidence.at`.

    Returns
    -------
    CumulativeIncidence
    """
    t = pd.to_numeric(pd.Series(np.asarray(time, dtype=object).ravel()), errors="coerce")
    n_all = t.size
    d = pd.DataFrame({"time": t.to_numpy(float), "status": np.asarray(status, dtype=object).ravel(),
                      "group": np.asarray(group, dtype=object).ravel() if group is not None else 1,
                      "strata": np.asarray(strata, dtype=object).ravel() if strata is not None else 1})
    d = d.dropna()
    if d.empty:
        raise InputError("no complete rows (time, status, group)", where="time")
    if (d["time"] < 0).any() or not np.isfinite(d["time"]).all():
        raise InputError("time must be a finite number >= 0", where="time")
    d = d.sort_values("time", kind="mergesort").reset_index(drop=True)
    y = d["time"].to_numpy(float)
    failed = (d["status"] != cencode).to_numpy()
    causes = sorted(pd.unique(d.loc[failed, "status"]))
    if not causes:
        raise InputError(f"no events among the {len(d)} complete rows (every status is the censoring code "
                         f"{cencode!r}); there is no cumulative incidence to estimate", where="status")
    groups = sorted(pd.unique(d["group"]))
    g_codes = np.searchsorted(np.array(groups, dtype=object), d["group"].to_numpy(dtype=object))
    s_codes = pd.factorize(d["strata"], sort=True)[0]
    curves, tests = {}, []
    for cause in causes:
        is_cause = (d["status"] == cause).to_numpy()
        for gi, g in enumerate(groups):
            sel = g_codes == gi
            x, f, v = _cinc(y[sel], failed[sel], is_cause[sel])
            curves[(g, cause)] = pd.DataFrame({"time": x, "estimate": f, "variance": v})
        if len(groups) > 1:
            m = np.where(is_cause, 1, np.where(failed, 2, 0))
            score, var = np.zeros(len(groups) - 1), np.zeros((len(groups) - 1,) * 2)
            for k in range(s_codes.max() + 1):
                sk = s_codes == k
                sc, vc = _crst(y[sk], m[sk], g_codes[sk], len(groups), rho)
                score, var = score + sc, var + vc
            if np.linalg.matrix_rank(var) == var.shape[0]:
                stat = float(score @ np.linalg.solve(var, score))
            else:
                stat = -1.0  # cmprsk's mark of a singular variance
            dof = len(groups) - 1
            tests.append({"cause": cause, "statistic": stat, "p_value": float(stats.chi2.sf(stat, dof))
                          if stat >= 0 else np.nan, "df": dof})
    gray = pd.DataFrame(tests) if tests else None
    prov = provenance(method="cumulative incidence (Aalen-Johansen) with Gray's test (R cmprsk::cuminc)",
                      rho=rho, ci="log(-log)", conf_level=conf_level, n=len(d), n_dropped=n_all - len(d))
    return CumulativeIncidence(curves, gray, groups, causes, len(d), n_all - len(d), rho, conf_level, prov)
