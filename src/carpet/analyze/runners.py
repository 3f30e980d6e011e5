"""The analysis runners: one function per analysis type of a plan, calling :mod:`carpet.stats`."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from carpet.analyze.plan import ANALYSES, _by_list, _title
from carpet.analyze.writer import _Writer

def _survival_frame(data: pd.DataFrame, ep: dict, columns: list[str]) -> pd.DataFrame:
    """Rows with time, event and ``columns`` all known (event as int)."""
    frame = data.dropna(subset=[ep["time"], ep["event"], *columns]).copy()
    frame[ep["time"]] = pd.to_numeric(frame[ep["time"]]).astype(float)
    frame[ep["event"]] = pd.to_numeric(frame[ep["event"]]).astype(int)
    return frame


def _group_label(column: str, value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return column if value else f"no {column}"
    return str(value)


def _groups(frame: pd.DataFrame, by: list[str]) -> pd.Series:
    if not by:
        return pd.Series("All patients", index=frame.index)
    parts = [frame[c].map(lambda v, c=c: _group_label(c, v)) for c in by]
    return parts[0].str.cat(parts[1:], sep=" / ") if len(parts) > 1 else parts[0]


def _risk_times(a: dict, t_max: float) -> list[float]:
    if "risk_times" in a:
        return [float(v) for v in a["risk_times"]]
    step = max(float(np.ceil(t_max / 5)), 1.0)
    return [float(v) for v in np.arange(0.0, t_max + 1e-9, step)]


def _km_table(times: np.ndarray, events: np.ndarray, groups: pd.Series, risk_times: list[float]):
    """Per group: KM fit, n, events, median and CI, survival at ``risk_times`` (long format)."""
    from carpet.stats import kaplan_meier

    rows, per_group, fits = [], {}, {}
    for g in sorted(groups.unique(), key=str):
        mask = (groups == g).to_numpy()
        km = kaplan_meier(times[mask], events[mask])
        lo, hi = km.median_ci
        at = km.survival_at(risk_times)
        per_group[g] = {"n": km.n, "events": km.events, "median": km.median, "median_lower": lo, "median_upper": hi,
                        "survival_at": at.to_dict("records")}
        fits[g] = km
        rows += [{"group": g, "n": km.n, "events": km.events, "median": km.median, "median_lower": lo,
                  "median_upper": hi, **r} for r in at.to_dict("records")]
    return pd.DataFrame(rows), per_group, fits


def _km_display(per_group: dict, risk_times: list[float], unit: str) -> pd.DataFrame:
    """One row per group for the reports: n, events, median (95% CI), survival (95% CI) at each time."""
    def num(v):
        return "NR" if v is None or v != v else f"{v:.1f}"

    rows = []
    for g, r in per_group.items():
        row = {"group": g, "n": r["n"], "events": r["events"],
               f"median {unit} (95% CI)": f"{num(r['median'])} ({num(r['median_lower'])}–{num(r['median_upper'])})"}
        for at in r["survival_at"]:
            row[f"S({at['time']:g})"] = (f"{at['surv']:.2f} ({at['lower']:.2f}–{at['upper']:.2f})"
                                         if at["n_risk"] > 0 else f"{at['surv']:.2f}")
        rows.append(row)
    return pd.DataFrame(rows)


def _km_block(writer: _Writer, frame: pd.DataFrame, ep: dict, groups: pd.Series, a: dict, stem: str,
              title: str) -> dict:
    """KM table + figure + log-rank for a grouping of ``frame``; returns the numbers."""
    from carpet.report.km_plot import km_figure
    from carpet.stats import logrank

    t, e = frame[ep["time"]].to_numpy(float), frame[ep["event"]].to_numpy(int)
    risk_times = _risk_times(a, float(t.max()))
    table, per_group, fits = _km_table(t, e, groups, risk_times)
    res: dict[str, Any] = {"endpoint": ep, "groups": per_group, "risk_times": risk_times,
                           "provenance": next(iter(fits.values())).provenance}
    files = [writer.table(table, stem, f"Kaplan–Meier estimates, {title}",
                          display=_km_display(per_group, risk_times, ep.get("unit", "months")))]
    if groups.nunique() >= 2:
        lr = logrank(t, e, groups.to_numpy())
        res["logrank"] = {"statistic": lr.statistic, "df": lr.df, "p_value": lr.p_value, "provenance": lr.provenance}
        writer.text(f"Log-rank test: chi-square {lr.statistic:.3f} on {lr.df} df, p = {lr.p_value:.4g}.")
    plot_groups = {g: (t[(groups == g).to_numpy()], e[(groups == g).to_numpy()]) for g in per_group}
    longest = max(len(str(g)) for g in plot_groups)
    fig, _ = km_figure(plot_groups, risk_times=risk_times, title=title, show_ci=len(plot_groups) <= 2,
                       xlabel=ep.get("unit", "months").capitalize(),
                       figsize=(4.6 + max(0, longest - 18) * 0.09, 3.9))  # room for long group names
    files += writer.figure(fig, stem, f"{title}; Kaplan–Meier with 95% CI and number at risk.")
    res["files"] = files
    return res


def _excluded_note(writer: _Writer, data: pd.DataFrame, frame: pd.DataFrame, what: str) -> int:
    n = len(data) - len(frame)
    if n:
        writer.note(f"{n} patient(s) with a missing {what} were left out of this analysis.")
    return n


def _exact_limit(a: dict) -> dict:
    """``max_tables`` of the exact r×c Fisher test when the plan caps it (beyond it: seeded Monte Carlo p)."""
    return {"max_tables": a["max_tables"]} if "max_tables" in a else {}


def _run_table1(data, a, endpoints, writer, stem, seed):
    from carpet.stats.table1 import table1

    t1 = table1(data, by=a["by"], continuous=_by_list(a.get("continuous")),
                categorical=_by_list(a.get("categorical")), nonnormal=_by_list(a.get("nonnormal")),
                labels=a.get("labels"), seed=seed, **_exact_limit(a))
    files = [writer.table(t1.summary, stem, f"Table 1 by {a['by']}")]
    return {"tests": t1.tests.to_dict("records"), "table": t1.summary.to_dict("records"),
            "provenance": t1.provenance, "files": files}


def _run_km(data, a, endpoints, writer, stem, seed):
    ep, by = endpoints[a["endpoint"]], _by_list(a.get("by"))
    frame = _survival_frame(data, ep, by)
    res = _km_block(writer, frame, ep, _groups(frame, by), a, stem, _title(a, endpoints))
    res["n_excluded"] = _excluded_note(writer, data, frame, f"time, event or {' / '.join(by) or 'value'}")
    return res


def _run_cox(data, a, endpoints, writer, stem, seed):
    from carpet.stats import cox

    ep = endpoints[a["endpoint"]]
    covs, strata = _by_list(a["covariates"]), _by_list(a.get("strata"))
    fit = cox(data, duration=ep["time"], event=ep["event"], covariates=covs, strata=strata or None)
    summary = fit.summary.rename_axis("term").reset_index()
    files = [writer.table(summary, stem, f"Cox model (n = {fit.n}, events = {fit.n_events})")]
    if fit.n_dropped:
        writer.note(f"{fit.n_dropped} patient(s) with a missing value were left out of the Cox model.")
    tests = {name: {"statistic": t.statistic, "df": t.df, "p_value": t.p_value}
             for name, t in (("lr_test", fit.lr_test), ("wald_test", fit.wald_test), ("score_test", fit.score_test))}
    writer.text(f"Concordance {fit.concordance:.3f}; likelihood-ratio test p = {fit.lr_test.p_value:.4g}.")
    return {"endpoint": ep, "summary": summary.to_dict("records"), "n": fit.n, "n_events": fit.n_events,
            "n_dropped": fit.n_dropped, "concordance": fit.concordance, **tests, "provenance": fit.provenance,
            "files": files}


def _run_transitions(data, a, endpoints, writer, stem, seed):
    from carpet.report.sankey import sankey_figure
    from carpet.stats.transitions import transitions

    order = [str(v) for v in a["order"]]
    tr = transitions(data, a["before"], a["after"], order=order, seed=seed, **_exact_limit(a))
    files = [writer.table(tr.table.reset_index(), stem,
                          f"{a['before']} (rows) → {a['after']} (columns), patients")]
    writer.text(f"{tr.test.test}: p = {tr.test.p_value:.4g} (patients with both states known).")
    fig = sankey_figure(tr.flows, order=list(tr.table.index), left_title=a.get("before_title", a["before"]),
                        right_title=a.get("after_title", a["after"]))
    files += writer.figure(fig, stem, f"Transitions {a['before']} → {a['after']}.")
    return {"table": {str(k): {str(c): int(n) for c, n in row.items()} for k, row in tr.table.iterrows()},
            "test": tr.test.__dict__, "provenance": tr.provenance, "files": files}


def _run_cutpoint(data, a, endpoints, writer, stem, seed):
    from carpet.stats import cutpoint

    ep = endpoints[a["endpoint"]]
    frame = _survival_frame(data, ep, [a["marker"]])
    x = pd.to_numeric(frame[a["marker"]]).to_numpy(float)
    cp = cutpoint(frame[ep["time"]], frame[ep["event"]], x, min_prop=a.get("min_prop", 0.1),
                  max_prop=a.get("max_prop", 0.9), n_perm=a.get("n_perm", 0), seed=seed)
    writer.text(str(cp) + ". An optimised cut-point is reported only with its search-adjusted p-value.")
    files = [writer.table(cp.summary, stem, f"Maximally selected log-rank cut-point of {a['marker']}")]
    groups = pd.Series(np.where(x > cp.value, f"{a['marker']} > {cp.value:g}", f"{a['marker']} ≤ {cp.value:g}"),
                       index=frame.index)
    km = _km_block(writer, frame, ep, groups, a, f"{stem}_km", f"{ep.get('label', a['endpoint'])} by optimised "
                   f"cut-point of {a['marker']}")
    n_excl = _excluded_note(writer, data, frame, f"time, event or {a['marker']}")
    return {"endpoint": ep, "cutpoint": cp.value, "statistic": cp.statistic, "p_value": cp.p_value,
            "p_value_lau94": cp.p_value_lau94, "p_value_perm": cp.p_value_perm, "n_perm": cp.n_perm,
            "n_candidates": cp.n_candidates, "n": cp.n, "n_excluded": n_excl, "seed": seed,
            "provenance": cp.provenance, "km": km, "files": files + km["files"]}


def _run_cutoff(data, a, endpoints, writer, stem, seed):
    from carpet.stats.cutpoint import evaluate_cutoff

    ep = endpoints[a["endpoint"]]
    frame = _survival_frame(data, ep, [a["marker"]])
    x = pd.to_numeric(frame[a["marker"]]).to_numpy(float)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ev = evaluate_cutoff(frame[ep["time"]], frame[ep["event"]], x, float(a["value"]),
                             marker_method=a.get("marker_method"), cutoff_method=a.get("cutoff_method"),
                             strict=a.get("strict", True))
    warned = [str(w.message) for w in caught]
    for message in warned:  # a published cut-off on a marker made another way must be loud, not silent
        writer.note(f"WARNING: {message}.")
    files = [writer.table(ev.summary, stem, f"Pre-specified cut-off {a['marker']} > {a['value']:g}")]
    groups = pd.Series(np.where(x > a["value"], f"{a['marker']} > {a['value']:g}",
                                f"{a['marker']} ≤ {a['value']:g}"), index=frame.index)
    km = _km_block(writer, frame, ep, groups, a, f"{stem}_km", _title(a, endpoints))
    return {"endpoint": ep, **ev.summary.iloc[0].to_dict(), "logrank_df": ev.logrank.df, "warnings": warned,
            "n_excluded": _excluded_note(writer, data, frame, f"time, event or {a['marker']}"),
            "provenance": ev.provenance, "km": km, "files": files + km["files"]}


def _run_compare_models(data, a, endpoints, writer, stem, seed):
    from carpet.stats.models import compare_models

    ep = endpoints[a["endpoint"]]
    models = {str(k): _by_list(v) for k, v in a["models"].items()}
    frame = data.copy()
    for c in {c for covs in models.values() for c in covs}:
        if pd.api.types.is_bool_dtype(frame[c]):  # 0/1 coding, as compare_models asks for numeric covariates
            frame[c] = frame[c].astype("Float64").astype(float)
    frame[ep["event"]] = pd.to_numeric(frame[ep["event"]])
    cmp = compare_models(frame, ep["time"], ep["event"], models, n_boot=a.get("n_boot", 200), seed=seed,
                         horizon=a.get("horizon"))
    summary = cmp.summary.assign(covariates=cmp.summary["covariates"].map(
        lambda v: ", ".join(v) if isinstance(v, (list, tuple)) else v))
    files = [writer.table(summary, stem, "Cox models compared on the same patients"),
             writer.table(cmp.differences, f"{stem}_cindex_differences", "Bootstrap differences in C-index")]
    if len(cmp.lr_tests):
        files.append(writer.table(cmp.lr_tests, f"{stem}_lr_tests", "Likelihood-ratio tests of nested models"))
    return {"endpoint": ep, "summary": summary.to_dict("records"), "differences": cmp.differences.to_dict("records"),
            "lr_tests": cmp.lr_tests.to_dict("records"), "provenance": cmp.provenance, "files": files}


def _run_landmark(data, a, endpoints, writer, stem, seed):
    from carpet.stats.landmark import landmark

    ep = endpoints[a["endpoint"]]
    frame = _survival_frame(data, ep, [a["by"]])
    lm = landmark(frame, ep["time"], ep["event"], landmark_time=float(a["time"]), group=a["by"])
    files = [writer.table(lm.at_risk, f"{stem}_at_risk", f"Patients at risk at the landmark ({a['time']:g})")]
    groups = lm.data[a["by"]].map(lambda v: _group_label(a["by"], v))
    shifted = {**ep, "time": "time_from_landmark"}
    km = _km_block(writer, lm.data, shifted, groups, a, stem, _title(a, endpoints))
    return {"endpoint": ep, "landmark_time": float(a["time"]), "at_risk": lm.at_risk.to_dict("records"),
            "logrank": {"statistic": lm.logrank.statistic, "df": lm.logrank.df, "p_value": lm.logrank.p_value},
            "n_excluded": _excluded_note(writer, data, frame, f"time, event or {a['by']}"),
            "provenance": lm.provenance, "km": km, "files": files + km["files"]}


_RUNNERS = {"table1": _run_table1, "km": _run_km, "cox": _run_cox, "transitions": _run_transitions,
            "cutpoint": _run_cutpoint, "cutoff": _run_cutoff, "compare_models": _run_compare_models,
            "landmark": _run_landmark}
assert set(_RUNNERS) == set(ANALYSES)
