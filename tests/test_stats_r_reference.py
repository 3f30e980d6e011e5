"""carpet.stats against R (survival 3.5-3, maxstat 0.7-25): every applicable record of
``../shared/reference/survival/reference_values.json``, with the issue's tolerances."""

from __future__ import annotations

import re
from functools import lru_cache

import pytest

from _r_reference import (COX_FULL, COX_LABELS, COX_RE, KM_LABELS, KM_RE, LOGRANK_LABELS, LR_RE, MAXSTAT_LABELS,
                          MAXSTAT_RE, assert_close,
                          dataset, group_index, load_records, record_id, select, subset)
from carpet.stats import concordance_counts, cox, cutpoint, kaplan_meier, logrank
from conftest import reference_path

RECORDS = load_records()
KM_RECORDS = select(KM_RE, RECORDS)
LR_RECORDS = select(LR_RE, RECORDS)
COX_RECORDS = select(COX_RE, RECORDS)
KM_REL = "rel 1e-6"  # the issue: KM estimates, CIs, medians, numbers at risk to 1e-6 relative


@pytest.fixture(autouse=True)
def _need_reference():
    reference_path("survival", "reference_values.json")


@lru_cache(maxsize=None)
def _km(name: str, label: str, group: str, conf_type: str):
    df = subset(dataset(name), KM_LABELS[label], group)
    return kaplan_meier(df["time"], df["event"], conf_type=conf_type)


def _km_value(rec):
    m = KM_RE.match(rec["what"])
    label, group, q = m["label"], m["group"], m["q"]
    ct = re.search(r"conf\.type=([\w-]+)", q)
    km = _km(rec["dataset"], label, group, ct.group(1) if ct else "log")
    if q == "n":
        return km.n
    if q == "events":
        return km.events
    if q == "median":
        return km.median
    if q.startswith("median 95% CI"):
        lo, hi = km.median_ci
        return lo if "lower" in q else hi
    t = float(re.search(r"(?:S\(|t=)([\d.]+)", q).group(1))
    row = km.survival_at([t]).iloc[0]
    if q.startswith("n.risk"):
        return int(row["n_risk"])
    if q.startswith("std.err"):
        return row["std_err"]
    if "CI lower" in q:
        return row["lower"]
    if "CI upper" in q:
        return row["upper"]
    assert re.fullmatch(r"S\([\d.]+\)", q), q
    return row["surv"]


@pytest.mark.parametrize("rec", KM_RECORDS, ids=record_id)
def test_kaplan_meier_matches_r(rec):
    value = _km_value(rec)
    assert_close(None if value is None else float(value), rec, KM_REL)


@lru_cache(maxsize=None)
def _logrank(name: str, label: str, rho: int):
    group_col, strata_col = LOGRANK_LABELS[label]
    df = dataset(name)
    return logrank(df["time"], df["event"], df[group_col], strata=None if strata_col is None else df[strata_col],
                   rho=rho)


@pytest.mark.parametrize("rec", LR_RECORDS, ids=record_id)
def test_logrank_matches_r(rec):
    m = LR_RE.match(rec["what"])
    lr = _logrank(rec["dataset"], m["label"], 0 if m["kind"] == "log-rank" else 1)
    q = m["q"]
    if q in ("chisq", "df", "p"):
        value = {"chisq": lr.statistic, "df": lr.df, "p": lr.p_value}[q]
    else:
        i = group_index(lr.groups, m["group"])
        value = (lr.observed if q == "observed" else lr.expected)[i]
    assert_close(float(value), rec)


@lru_cache(maxsize=None)
def _cox(name: str, label: str, ties: str):
    covariates = COX_FULL[name] if label == "full" else COX_LABELS[label]
    return cox(dataset(name), duration="time", event="event", covariates=covariates, ties=ties)


COX_FIT_VALUES = {
    "n used": lambda f: f.n, "events used": lambda f: f.n_events,
    "log partial likelihood (fitted)": lambda f: f.loglik[1], "log partial likelihood (null)": lambda f: f.loglik[0],
    "likelihood ratio test": lambda f: f.lr_test.statistic, "LR test df": lambda f: f.lr_test.df,
    "LR test p": lambda f: f.lr_test.p_value, "Wald test": lambda f: f.wald_test.statistic,
    "Wald test p": lambda f: f.wald_test.p_value, "score (log-rank) test": lambda f: f.score_test.statistic,
    "score test p": lambda f: f.score_test.p_value,
    "concordance (Harrell C, as printed by summary.coxph)": lambda f: f.concordance,
    "concordance se": lambda f: f.concordance_se,
    "cox.zph GLOBAL chisq (km transform)": lambda f: f.zph().loc["GLOBAL", "chisq"],
    "cox.zph GLOBAL p (km transform)": lambda f: f.zph().loc["GLOBAL", "p"],
}
COX_COEF_COLUMNS = {"coef": "coef", "HR": "hr", "se(coef)": "se", "z": "z", "p (Wald)": "p",
                    "HR 95% CI lower": "hr_lower", "HR 95% CI upper": "hr_upper"}


@pytest.mark.parametrize("rec", COX_RECORDS, ids=record_id)
def test_cox_matches_r(rec):
    m = COX_RE.match(rec["what"])
    fit = _cox(rec["dataset"], m["label"], m["ties"])
    if m["var"]:
        value = fit.summary.loc[m["var"], COX_COEF_COLUMNS[m["q"]]]
    else:
        value = COX_FIT_VALUES[m["q"]](fit)
    assert_close(float(value), rec)


RAW_C = {"Harrell C of raw age as risk marker": "concordance", "Harrell C of raw age: concordant pairs": "concordant",
         "Harrell C of raw age: discordant pairs": "discordant", "Harrell C of raw age: tied.x pairs": "tied_x",
         "Harrell C of raw age: tied.y pairs": "tied_y",
         "Harrell C of raw age: tied.xy pairs": "tied_xy"}


@pytest.mark.parametrize("rec", [r for r in RECORDS if r["what"] in RAW_C], ids=record_id)
def test_raw_marker_concordance_matches_r(rec):
    df = dataset("lung")
    counts = concordance_counts(df["time"], df["event"], df["age"])  # higher age = higher risk (R: reverse=TRUE)
    assert_close(float(getattr(counts, RAW_C[rec["what"]])), rec)


@lru_cache(maxsize=None)
def _cutpoint(name: str, label: str, n_perm: int = 0):
    df = dataset(name)
    return cutpoint(df["time"], df["event"], df[MAXSTAT_LABELS[label]], n_perm=n_perm, seed=29)


MAXSTAT_VALUES = {
    "estimated cutpoint": (lambda c: c.value, "abs 0"),  # the issue: cut-point exact
    "statistic M (max |standardized log-rank score statistic|)": (lambda c: c.statistic, "abs 1e-5"),
    "number of candidate cutpoints": (lambda c: c.n_candidates, "abs 0"),
    "p-value (pmethod=Lau92)": (lambda c: c.p_value, None),  # record: rel 1e-4, stricter than the issue
    "p-value (pmethod=Lau94)": (lambda c: c.p_value_lau94, None),
}


@pytest.mark.parametrize("rec", [r for r in RECORDS if (m := MAXSTAT_RE.match(r["what"]))
                                 and m["q"] in MAXSTAT_VALUES], ids=record_id)
def test_cutpoint_matches_maxstat(rec):
    m = MAXSTAT_RE.match(rec["what"])
    getter, tolerance = MAXSTAT_VALUES[m["q"]]
    assert_close(float(getter(_cutpoint(rec["dataset"], m["label"]))), rec, tolerance)


@pytest.mark.parametrize("rec", [r for r in RECORDS if (m := MAXSTAT_RE.match(r["what"]))
                                 and m["q"] == "p-value (pmethod=condMC)"], ids=record_id)
def test_cutpoint_permutation_p_agrees_with_maxstat_condmc(rec):
    # both are Monte-Carlo with 10,000 permutations (different generators): the record's abs 0.02
    m = MAXSTAT_RE.match(rec["what"])
    assert_close(_cutpoint(rec["dataset"], m["label"], n_perm=10_000).p_value_perm, rec)


RISK_RE = re.compile(r"^survminer risk table by sex \[sex=(?P<sex>\d)\] t=(?P<t>\d+): (?P<q>[\w.]+)$")
RISK_COLUMNS = {"n.risk": "n_risk", "cum.n.event": "cum_events", "cum.n.censor": "cum_censored"}


@pytest.mark.parametrize("rec", select(RISK_RE, RECORDS), ids=record_id)
def test_risk_table_matches_survminer(rec):
    m = RISK_RE.match(rec["what"])
    table = _km("lung", "by sex", f"sex={m['sex']}", "log").risk_table([float(m["t"])])
    assert_close(float(table[RISK_COLUMNS[m["q"]]].iloc[0]), rec)


@pytest.mark.parametrize("rec", [r for r in RECORDS if r["what"].startswith("survminer surv_pvalue")], ids=record_id)
def test_logrank_p_matches_survminer(rec):
    assert_close(_logrank("lung", "by sex (2-group)", 0).p_value, rec)


@pytest.mark.parametrize("rec", [r for r in RECORDS if r["what"].startswith("survminer surv_cutpoint karno")],
                         ids=record_id)
def test_cutpoint_matches_survminer_surv_cutpoint(rec):
    cut, statistic = rec["value"]
    cp = _cutpoint("veteran", "karno")
    assert cp.value == cut
    assert abs(cp.statistic - statistic) <= 1e-6
