"""Univariable and multivariable Cox models in one table, as papers print them: HR (95% CI) and p per
covariate level, a ``1 (reference)`` row per categorical covariate, and ``cox.zph`` of every model.

Each univariable model uses the rows complete for its own covariate (R's ``coxph(Surv(t, e) ~ x)`` with its
na.omit); the multivariable model uses the rows complete for all of them. Fits by :func:`carpet.stats.cox`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from carpet.provenance import provenance
from carpet.stats._input import design_matrix
from carpet.report.format import estimate_ci, p_value
from carpet.stats.cox import CoxResult, cox


@dataclass
class CoxTable:
    """Result of :func:`cox_table`.

    Attributes
    ----------
    table : DataFrame
        One row per design column plus a reference row per categorical covariate: ``term, level,
        uni_hr, uni_lower, uni_upper, uni_se, uni_p, multi_hr, multi_lower, multi_upper, multi_se, multi_p``
        and the printed cells ``uni``/``multi`` ("HR (lower–upper)") and ``uni_p_text``/``multi_p_text``.
    univariable : dict of CoxResult per covariate; multivariable : CoxResult
    zph_univariable : dict of DataFrames; zph_multivariable : DataFrame (R ``cox.zph``)
    warnings : list of str
        Each model's warnings, prefixed by the model ("univariable group: Loglik converged ...").
    """

    table: pd.DataFrame
    univariable: dict
    multivariable: CoxResult
    zph_univariable: dict
    zph_multivariable: pd.DataFrame
    warnings: list = field(default_factory=list)
    provenance: dict = field(default_factory=dict)


def _cell(hr, lower, upper, infinite: bool) -> str:
    if not np.isfinite(hr):
        return "NA"
    text = estimate_ci(hr, lower, upper)  # carpet's one number policy (carpet.report.format)
    return text + " (may be infinite)" if infinite else text


def _rows(fit: CoxResult, prefix: str) -> pd.DataFrame:
    s = fit.summary
    return pd.DataFrame({f"{prefix}_hr": s["hr"], f"{prefix}_lower": s["hr_lower"], f"{prefix}_upper": s["hr_upper"],
                         f"{prefix}_se": s["se"], f"{prefix}_p": s["p"],
                         prefix: [_cell(*r) for r in s[["hr", "hr_lower", "hr_upper", "infinite"]].to_numpy()],
                         f"{prefix}_p_text": [p_value(p) for p in s["p"]]})


def cox_table(df: pd.DataFrame, duration: str = "time", event: str = "event", covariates: list[str] | None = None,
              *, ties: str = "efron", strata=None, reference: dict | None = None,
              conf_level: float = 0.95) -> CoxTable:
    """Fit one Cox model per covariate and one with all of them; tabulate them side by side.

    Parameters are those of :func:`carpet.stats.cox`.

    Returns
    -------
    CoxTable
    """
    covariates = [covariates] if isinstance(covariates, str) else list(covariates or [])
    reference = reference or {}
    kw = dict(duration=duration, event=event, ties=ties, strata=strata, conf_level=conf_level)
    uni = {c: cox(df, covariates=[c], reference={c: reference[c]} if c in reference else None, **kw)
           for c in covariates}
    multi = cox(df, covariates=covariates, reference=reference, **kw)
    rows = []
    complete = df[covariates].dropna()
    design, terms = design_matrix(complete, covariates, reference)
    for c in covariates:
        u = _rows(uni[c], "uni")
        m = _rows(multi, "multi").iloc[multi.terms[c]]
        names = [design.columns[k] for k in terms[c]]
        block = pd.concat([u.loc[names], m.loc[names]], axis=1)
        is_factor = names != [c]
        block.insert(0, "level", [n[len(c):] for n in names] if is_factor else "")
        block.insert(0, "term", c)
        if is_factor:
            levels = pd.Series(complete[c]).astype("category").cat.remove_unused_categories().cat.categories
            ref_level = reference.get(c, levels[0])
            ref = {"term": c, "level": "(reference)", "uni": "1 (reference)", "multi": "1 (reference)",
                   "uni_p_text": "", "multi_p_text": "", "reference_level": str(ref_level)}
            block = pd.concat([pd.DataFrame([ref]), block], ignore_index=True)
        rows.append(block)
    table = pd.concat(rows, ignore_index=True)
    zph_uni = {c: fit.zph() for c, fit in uni.items()}
    warns = [f"univariable {c}: {w}" for c, fit in uni.items() for w in fit.warnings]
    warns += [f"multivariable: {w}" for w in multi.warnings]
    prov = provenance(method="Cox univariable and multivariable table", ties=ties, conf_level=conf_level,
                      reference=reference or None, n_multivariable=multi.n,
                      n_univariable={c: fit.n for c, fit in uni.items()}, zph="R cox.zph, transform km",
                      warnings=warns)
    return CoxTable(table, uni, multi, zph_uni, multi.zph(), warns, prov)
