"""The analysis runners: one function per analysis type of a plan, calling :mod:`carpet.stats`."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from carpet.analyze.labels import Labels
from carpet.analyze.plan import ANALYSES, _by_list, _title
from carpet.analyze.writer import _Writer
from carpet.errors import InputError
from carpet.report import format as fmt


def _survival_frame(data: pd.DataFrame, ep: dict, columns: list[str]) -> pd.DataFrame:
    """Rows with time, event and ``columns`` all known (event as int)."""
    frame = data.dropna(subset=[ep["time"], ep["event"], *columns]).copy()
    frame[ep["time"]] = pd.to_numeric(frame[ep["time"]]).astype(float)
    frame[ep["event"]] = pd.to_numeric(frame[ep["event"]]).astype(int)
    return frame


def _groups(frame: pd.DataFrame, by: list[str], labels: Labels) -> pd.Series:
    """Each patient's group name from the ``by`` columns' level labels, as a categorical in display order
    (the order of the first column's levels, then the second's ...)."""
    if not by:
        return pd.Series(pd.Categorical(["All patients"] * len(frame)), index=frame.index)
    parts = [labels.relabel(frame[c]) for c in by]
    names = parts[0].astype(str)
    for part in parts[1:]:
        names = names.str.cat(part.astype(str), sep=" / ")
    order = [" / ".join(combo) for combo in _product([list(p.cat.categories) for p in parts])]
    present = [g for g in order if (names == g).any()]
    return pd.Series(pd.Categorical(names, categories=present, ordered=True), index=frame.index)


def _product(levels: list[list[str]]) -> list[tuple[str, ...]]:
    import itertools

    return list(itertools.product(*levels))


def _split_groups(x: np.ndarray, value: float, labels: Labels, marker: str, index) -> pd.Series:
    """``marker ≤ value`` / ``marker > value``, the value printed exactly as used (an optimised cut-point is
    first made :func:`carpet.report.format.split_value` by the caller)."""
    name, cut = labels.label(marker), fmt.cutpoint(value)
    unit = labels.unit(marker)
    unit = f" {unit}" if unit else ""
    low, high = f"{name} ≤ {cut}{unit}", f"{name} > {cut}{unit}"
    return pd.Series(pd.Categorical(np.where(x > value, high, low), categories=[low, high], ordered=True),
                     index=index)


def _risk_times(a: dict, t_max: float) -> list[float]:
    from carpet.report.km_plot import risk_times_to

    return [float(v) for v in risk_times_to(a.get("risk_times"), t_max)]


def _km_table(times: np.ndarray, events: np.ndarray, groups: pd.Series, risk_times: list[float]):
    """Per group: KM fit, n, events, median and CI, survival at ``risk_times`` (long format)."""
    from carpet.stats import kaplan_meier

    rows, per_group, fits = [], {}, {}
    order = list(groups.cat.categories) if isinstance(groups.dtype, pd.CategoricalDtype) else \
        sorted(groups.unique(), key=str)
    for g in [g for g in order if (groups == g).any()]:
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
    num = fmt.time_value  # NR: not reached

    rows = []
    for g, r in per_group.items():
        row = {"Group": g, "n": r["n"], "Events": r["events"],
               f"Median, {unit} (95% CI)": f"{num(r['median'])} ({num(r['median_lower'])}–{num(r['median_upper'])})"}
        for at in r["survival_at"]:
            # nobody at risk: S(t) is not estimated there (NA), whatever the curve's last value was
            row[f"S({at['time']:g})"] = (fmt.estimate_ci(at["surv"], at["lower"], at["upper"], null=None)
                                         if at["n_risk"] > 0 else fmt.NA)
        rows.append(row)
    return pd.DataFrame(rows)


def _km_block(writer: _Writer, frame: pd.DataFrame, ep: dict, groups: pd.Series, a: dict, stem: str,
              title: str, *, p_text: str | None = None, xlabel: str | None = None) -> dict:
    """KM table + figure + log-rank for a grouping of ``frame``; returns the numbers."""
    from carpet.report.km_plot import km_figure
    from carpet.stats import logrank

    t, e = frame[ep["time"]].to_numpy(float), frame[ep["event"]].to_numpy(int)
    risk_times = _risk_times(a, float(t.max()))
    table, per_group, fits = _km_table(t, e, groups, risk_times)
    res: dict[str, Any] = {"endpoint": ep, "groups": per_group, "risk_times": risk_times,
                           "provenance": next(iter(fits.values())).provenance}
    unit = ep.get("unit", "months")
    files = [writer.table(table, stem, f"Kaplan–Meier estimates, {title}; S(t) with 95% CI; NR: not reached; "
                          "NA: nobody at risk",
                          display=_km_display(per_group, risk_times, unit))]
    if len(per_group) >= 2:
        lr = logrank(t, e, groups.astype(str).to_numpy())
        res["logrank"] = {"statistic": lr.statistic, "df": lr.df, "p_value": lr.p_value, "provenance": lr.provenance}
        label = "log-rank test of the groups as split (not adjusted for the search)" if p_text else "Log-rank test"
        writer.text(f"{label[:1].upper() + label[1:]}: chi-square {fmt.fit_statistic(lr.statistic)} on {lr.df} df, "
                    f"{fmt.p_equals(lr.p_value)}.")
    plot_groups = {g: (t[(groups == g).to_numpy()], e[(groups == g).to_numpy()]) for g in per_group}
    fig, drawn = km_figure(plot_groups, risk_times=risk_times, title=title, show_ci=len(plot_groups) <= 2,
                           xlabel=xlabel or f"Time ({unit})", p_text=p_text)
    files += writer.figure(fig, stem, f"{title}. {drawn['caption']}")
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

    frame, names, order = writer.labels.table1_inputs(data, a["by"], _by_list(a.get("continuous")),
                                                      _by_list(a.get("categorical")), _by_list(a.get("nonnormal")))
    t1 = table1(frame, by=a["by"], continuous=_by_list(a.get("continuous")),
                categorical=_by_list(a.get("categorical")), nonnormal=_by_list(a.get("nonnormal")),
                labels={**names, **(a.get("labels") or {})}, order=order, seed=seed, **_exact_limit(a))
    # p as the policy prints it (Table1.summary), in the CSV too (unrounded p-values are in results.json "tests")
    shown = t1.summary
    files = [writer.table(shown, stem, f"Patient characteristics by {writer.labels.label(a['by'])}",
                          display=shown.rename(columns={"variable": "Characteristic", "level": "",
                                                        "test": "Test", "missing": "Missing"}))]
    return {"tests": t1.tests.to_dict("records"), "table": shown.to_dict("records"), "numbers": t1.numbers,
            "provenance": t1.provenance, "files": files}


def _run_km(data, a, endpoints, writer, stem, seed):
    ep, by = endpoints[a["endpoint"]], _by_list(a.get("by"))
    frame = _survival_frame(data, ep, by)
    res = _km_block(writer, frame, ep, _groups(frame, by, writer.labels), a, stem,
                    _title(a, endpoints, writer.labels))
    what = " / ".join(map(writer.labels.label, by)) or "value"
    res["n_excluded"] = _excluded_note(writer, data, frame, f"time, event or {what}")
    return res


def _run_cox(data, a, endpoints, writer, stem, seed):
    from carpet.stats import cox

    ep = endpoints[a["endpoint"]]
    covs, strata = _by_list(a["covariates"]), _by_list(a.get("strata"))
    coded, reference = _cox_coding(data, covs, writer.labels)
    fit = cox(coded, duration=ep["time"], event=ep["event"], covariates=covs, strata=strata or None,
              reference=reference or None)
    summary = fit.summary.rename_axis("term").reset_index()
    files = [writer.table(summary, stem, f"Cox model (n = {fit.n}, events = {fit.n_events})",
                          display=_cox_display(summary, data, covs, writer.labels, reference))]
    if fit.n_dropped:
        writer.note(f"{fit.n_dropped} patient(s) with a missing value were left out of the Cox model.")
    for w in fit.warnings:  # R's words, e.g. "Loglik converged before variable 2; coefficient may be infinite."
        writer.note(f"Cox model: {w}")
    tests = {name: {"statistic": t.statistic, "df": t.df, "p_value": t.p_value}
             for name, t in (("lr_test", fit.lr_test), ("wald_test", fit.wald_test), ("score_test", fit.score_test))}
    zph = fit.zph().reset_index()
    writer.text(f"Concordance {fit.concordance:.3f} (SE {fit.concordance_se:.3f}); likelihood-ratio test "
                f"{fmt.p_equals(fit.lr_test.p_value)}; proportional hazards (cox.zph, global) "
                f"{fmt.p_equals(zph['p'].iloc[-1])}.")
    return {"endpoint": ep, "summary": summary.to_dict("records"), "n": fit.n, "n_events": fit.n_events,
            "n_dropped": fit.n_dropped, "concordance": fit.concordance, "concordance_se": fit.concordance_se,
            **tests, "zph": zph.to_dict("records"), "warnings": list(fit.warnings), "provenance": fit.provenance,
            "files": files}


def _run_transitions(data, a, endpoints, writer, stem, seed):
    from carpet.report.sankey import sankey_figure
    from carpet.stats.transitions import transitions

    order = [str(v) for v in a["order"]]
    tr = transitions(data, a["before"], a["after"], order=order, seed=seed, **_exact_limit(a))
    before = a.get("before_title", writer.labels.label(a["before"]))
    after = a.get("after_title", writer.labels.label(a["after"]))
    shown = tr.table.copy()
    shown = shown.astype(object).apply(lambda row: [fmt.percent(n, row.sum()) for n in row], axis=1,
                                       result_type="broadcast")
    files = [writer.table(tr.table.reset_index(), stem, f"{before} (rows) → {after} (columns), patients",
                          display=shown.rename_axis(index=f"{before} \\ {after}", columns=None).reset_index()
                          .rename(columns=str))]
    writer.text(f"{tr.test.test}: {fmt.p_equals(tr.test.p_value, n_resamples=tr.test.n_resamples)} "
                "(patients with both states known).")
    fig = sankey_figure(tr.flows, order=list(tr.table.index), left_title=before, right_title=after)
    files += writer.figure(fig, stem, f"Transitions {before} → {after}: ribbons labelled with patients and row % "
                           f"(share of the {before.lower()} state).")
    return {"table": {str(k): {str(c): int(n) for c, n in row.items()} for k, row in tr.table.iterrows()},
            "rows": [{"state": str(k), "n": {str(c): int(n) for c, n in row.items()},
                      "percent": {str(c): 100.0 * n / row.sum() if row.sum() else None for c, n in row.items()}}
                     for k, row in tr.table.iterrows()],
            "totals": {"before": {str(k): int(n) for k, n in tr.table.sum(axis=1).items()},
                       "after": {str(c): int(n) for c, n in tr.table.sum(axis=0).items()}},
            "test": tr.test.__dict__, "provenance": tr.provenance, "files": files}


def _run_cutpoint(data, a, endpoints, writer, stem, seed):
    from carpet.stats import cutpoint

    ep = endpoints[a["endpoint"]]
    frame = _survival_frame(data, ep, [a["marker"]])
    x = pd.to_numeric(frame[a["marker"]]).to_numpy(float)
    cp = cutpoint(frame[ep["time"]], frame[ep["event"]], x, min_prop=a.get("min_prop", 0.1),
                  max_prop=a.get("max_prop", 0.9), n_perm=a.get("n_perm", 0), seed=seed)
    name = writer.labels.name(a["marker"])
    adjusted = _adjusted_p_text(cp)
    split_at = fmt.split_value(cp.value, x)  # the same groups as cp.value, a number a reader can apply
    writer.text(f"Maximally selected log-rank cut-point of {name}: {fmt.cutpoint(split_at)} "
                f"(standardised statistic {fmt.fit_statistic(cp.statistic)}, {cp.n_candidates} candidate cut-points, "
                f"n = {cp.n}); {adjusted}. An optimised cut-point is reported only with its search-adjusted p-value.")
    files = [writer.table(cp.summary, stem, f"Maximally selected log-rank cut-point of {name}",
                          display=_cutpoint_display(cp, split_at))]
    groups = _split_groups(x, split_at, writer.labels, a["marker"], frame.index)
    km = _km_block(writer, frame, ep, groups, a, f"{stem}_km", f"{ep.get('label', a['endpoint'])} by optimised "
                   f"cut-point of {writer.labels.label(a['marker'])}", p_text=adjusted)
    n_excl = _excluded_note(writer, data, frame, f"time, event or {writer.labels.label(a['marker'])}")
    km["logrank_naive"] = km.pop("logrank", None)  # the split's own log-rank p, not adjusted for the search
    return {"endpoint": ep, "cutpoint": cp.value, "split_value": split_at,
            "split_value_method": "shortest rounded number between the cut-point and the next observed value "
                                  "(same groups; carpet.report.format.split_value)",
            "statistic": cp.statistic, "p_value": cp.p_value,
            "p_value_lau94": cp.p_value_lau94, "p_value_perm": cp.p_value_perm, "n_perm": cp.n_perm,
            "n_candidates": cp.n_candidates, "n": cp.n, "n_excluded": n_excl, "seed": seed,
            "provenance": cp.provenance, "km": km, "files": files + km["files"]}


def _run_cutoff(data, a, endpoints, writer, stem, seed):
    from carpet.stats.cutpoint import evaluate_cutoff

    ep = endpoints[a["endpoint"]]
    frame = _survival_frame(data, ep, [a["marker"]])
    x = pd.to_numeric(frame[a["marker"]]).to_numpy(float)
    marker_method = _data_method(frame, a)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ev = evaluate_cutoff(frame[ep["time"]], frame[ep["event"]], x, float(a["value"]),
                             marker_method=marker_method, cutoff_method=a.get("cutoff_method"),
                             strict=a.get("strict", True))
    warned = [str(w.message) for w in caught]
    for message in warned:  # a published cut-off on a marker made another way must be loud, not silent
        writer.note(f"WARNING: {message}.")
    files = [writer.table(ev.summary, stem, f"Pre-specified cut-off {writer.labels.label(a['marker'])} > "
                          f"{fmt.cutpoint(a['value'])}", display=_stat_display(ev.summary))]
    groups = _split_groups(x, float(a["value"]), writer.labels, a["marker"], frame.index)
    km = _km_block(writer, frame, ep, groups, a, f"{stem}_km", _title(a, endpoints, writer.labels))
    return {"endpoint": ep, **ev.summary.iloc[0].to_dict(), "logrank_df": ev.logrank.df, "warnings": warned,
            "n_excluded": _excluded_note(writer, data, frame, f"time, event or {writer.labels.label(a['marker'])}"),
            "provenance": ev.provenance, "km": km, "files": files + km["files"]}


def _data_method(frame: pd.DataFrame, a: dict) -> str | None:
    """The segmentation method of the marker as the data record it (a per-method column's name, ``mtv_ml_pct41``;
    else ``method``, or ``method_<window>`` beside a ``<marker>_<window>`` column); the plan's ``marker_method``
    must agree with it."""
    from carpet.cohort.schema import method_of_column

    named = method_of_column(a["marker"])
    if named is not None:
        if a.get("marker_method") and a["marker_method"] != named:
            raise InputError(f"the plan says the marker was made with {a['marker_method']!r}, its column "
                             f"'{a['marker']}' holds {named!r} values", where="marker_method")
        return named
    column = next((c for c in frame if c.startswith("method_") and a["marker"].endswith(c[len("method"):])),
                  "method")
    if column not in frame:
        return a.get("marker_method")
    found = sorted({str(v) for v in frame[column].dropna()})
    if len(found) > 1:
        raise InputError(f"the marker '{a['marker']}' was made with several methods {found} (column '{column}'); "
                         "one cut-off cannot apply to all", where=f"column '{column}'")
    if found and a.get("marker_method") and a["marker_method"] != found[0]:
        raise InputError(f"the plan says the marker was made with {a['marker_method']!r}, the data's '{column}' "
                         f"column says {found[0]!r}", where="marker_method")
    return found[0] if found else a.get("marker_method")


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
    files = [writer.table(summary, stem, "Cox models compared on the same patients",
                          display=_models_display(summary, writer.labels)),
             writer.table(cmp.differences, f"{stem}_cindex_differences", "Bootstrap differences in C-index",
                          display=_stat_display(cmp.differences)),]
    if len(cmp.lr_tests):
        files.append(writer.table(cmp.lr_tests, f"{stem}_lr_tests", "Likelihood-ratio tests of nested models",
                                  display=_stat_display(cmp.lr_tests)))
    contrasts = _cindex_contrasts(frame, ep, models, cmp.fits)
    files.append(writer.table(contrasts, f"{stem}_cindex_contrasts",
                              "Pairwise differences in C-index, infinitesimal-jackknife covariance (R survival "
                              "concordance(fit1, fit2, ...) and its contrasts)", display=_contrasts_display(contrasts)))
    return {"endpoint": ep, "summary": summary.to_dict("records"), "differences": cmp.differences.to_dict("records"),
            "contrasts": contrasts.to_dict("records"), "lr_tests": cmp.lr_tests.to_dict("records"),
            "provenance": {**cmp.provenance, "contrasts": "C_a - C_b, variance V_aa + V_bb - 2 V_ab from the "
                           "subjects' infinitesimal-jackknife influences (R concordance), normal CI and z-test"},
            "files": files}


def _cindex_contrasts(frame: pd.DataFrame, ep: dict, models: dict, fits: dict) -> pd.DataFrame:
    """Every pair of models' C-index difference on the complete cases compare_models fitted them on."""
    from carpet.stats import concordance_contrasts

    used = list(dict.fromkeys(c for covs in models.values() for c in covs))
    data = frame[[ep["time"], ep["event"], *used]].dropna()
    _, contrasts = concordance_contrasts(data[ep["time"]].to_numpy(float), data[ep["event"]].to_numpy(int),
                                         {name: fit.linear_predictor for name, fit in fits.items()})
    return contrasts


def _run_landmark(data, a, endpoints, writer, stem, seed):
    from carpet.stats.landmark import landmark

    ep = endpoints[a["endpoint"]]
    frame = _survival_frame(data, ep, [a["by"]])
    lm = landmark(frame, ep["time"], ep["event"], landmark_time=float(a["time"]), group=a["by"])
    unit = ep.get("unit", "months")
    files = [writer.table(lm.at_risk, f"{stem}_at_risk",
                          f"Patients at risk at the landmark ({a['time']:g} "
                          f"{unit[:-1] if a['time'] == 1 and unit.endswith('s') else unit} after the start of "
                          f"{ep.get('label', a['endpoint'])})", display=_stat_display(lm.at_risk))]
    groups = _groups(lm.data, [a["by"]], writer.labels)
    shifted = {**ep, "time": "time_from_landmark"}
    km = _km_block(writer, lm.data, shifted, groups, a, stem, _title(a, endpoints, writer.labels),
                   xlabel=f"Time from the landmark ({unit})")
    return {"endpoint": ep, "landmark_time": float(a["time"]), "at_risk": lm.at_risk.to_dict("records"),
            "logrank": {"statistic": lm.logrank.statistic, "df": lm.logrank.df, "p_value": lm.logrank.p_value},
            "n_excluded": _excluded_note(writer, data, frame, f"time, event or {writer.labels.label(a['by'])}"),
            "provenance": lm.provenance, "km": km, "files": files + km["files"]}


def _run_association(data, a, endpoints, writer, stem, seed):
    """A marker against outcomes measured once per patient (e.g. MTV and CAR T expansion): per outcome, the
    Wilcoxon rank-sum test between ``marker <= value`` and ``> value`` and Spearman's rho with its 95% CI."""
    from carpet.stats import mann_whitney, spearman

    marker, labels = a["marker"], writer.labels
    x = pd.to_numeric(data[marker], errors="coerce")
    rows = []
    for col in _by_list(a["outcomes"]):
        y = pd.to_numeric(data[col], errors="coerce")
        both = x.notna() & y.notna()
        if both.sum() < 4:
            raise InputError(f"'{col}' and '{marker}' are both known for {int(both.sum())} patient(s); "
                             "a rank correlation needs at least 4", where=col)
        row = {"outcome": col, "n": int(both.sum())}
        if "value" in a:
            high = x[both] > a["value"]
            mw = mann_whitney(y[both][~high], y[both][high])
            row.update(n_low=mw.n_x, n_high=mw.n_y, median_low=mw.median_x, q1_low=mw.iqr_x[0], q3_low=mw.iqr_x[1],
                       median_high=mw.median_y, q1_high=mw.iqr_y[0], q3_high=mw.iqr_y[1], w=mw.statistic,
                       p_wilcoxon=mw.p_value, wilcoxon_method=mw.method)
        rho = spearman(x[both], y[both])
        row.update(rho=rho.rho, rho_lower=rho.ci[0], rho_upper=rho.ci[1], p_spearman=rho.p_value)
        rows.append(row)
    table = pd.DataFrame(rows)
    name = labels.label(marker)
    display = pd.DataFrame({"Outcome": [labels.label(c) for c in table["outcome"]], "n": table["n"]})
    if "value" in a:
        cut = fmt.cutpoint(a["value"])
        for side, sign in (("low", "≤"), ("high", ">")):
            display[f"{name} {sign} {cut}: median (IQR)"] = [
                f"{fmt.estimate(r[f'median_{side}'])} ({fmt.estimate(r[f'q1_{side}'])}–"
                f"{fmt.estimate(r[f'q3_{side}'])}), n = {r[f'n_{side}']}" for r in rows]
        display["Wilcoxon p"] = [fmt.p_value(p) for p in table["p_wilcoxon"]]
    display["Spearman rho (95% CI)"] = [fmt.estimate_ci(r["rho"], r["rho_lower"], r["rho_upper"]) for r in rows]
    display["Spearman p"] = [fmt.p_value(p) for p in table["p_spearman"]]
    files = [writer.table(table, stem, f"{name} and {', '.join(labels.label(c) for c in table['outcome'])}",
                          display=display)]
    writer.text("Wilcoxon rank-sum test (R wilcox.test: exact below 50 per group without ties, else normal "
                "approximation with continuity correction); Spearman's rho with p from the t approximation (R "
                "cor.test exact = FALSE) and a Fisher-z 95% CI (variance 1.06/(n - 3)).")
    prov = {**rho.provenance, "wilcoxon": mw.provenance if "value" in a else None}
    return {"marker": marker, "value": a.get("value"), "rows": rows, "files": files, "provenance": prov}


def _adjusted_p_text(cp) -> str:
    """The search-adjusted p of an optimised cut-point with its method (and the permutation p when run)."""
    text = f"maxstat-adjusted {fmt.p_equals(cp.p_value)} (Lau 1992)"
    if cp.n_perm and cp.p_value_perm is not None:
        text += f"; permutation {fmt.p_equals(cp.p_value_perm, n_resamples=cp.n_perm)} ({cp.n_perm} permutations)"
    return text


_STAT_NAMES = {"coef": "log HR", "hr": "HR", "se": "SE", "z": "z", "p": "p", "hr_lower": "HR 95% CI lower",
               "hr_upper": "HR 95% CI upper", "p_lau92": "p (Lau 1992)", "p_lau94": "p (Lau 1994)",
               "p_perm": "p (permutation)", "n_candidates": "Candidate cut-points", "cutpoint": "Cut-point",
               "statistic": "Statistic", "loglik": "Log-likelihood", "aic": "AIC", "c_index": "C-index",
               "td_auc": "Time-dependent AUC", "k": "Parameters", "events": "Events", "model": "Model",
               "covariates": "Covariates", "df": "df", "p_value": "p", "difference": "Difference",
               "lower": "95% CI lower", "upper": "95% CI upper", "cutoff": "Cut-off", "n_low": "n (low)",
               "n_high": "n (high)", "events_low": "Events (low)", "events_high": "Events (high)",
               "hr_high_vs_low": "HR high vs low", "logrank_chisq": "Log-rank chi-square",
               "logrank_p": "Log-rank p", "concordance": "C-index", "group": "Group", "n_at_risk": "At risk",
               "excluded": "Excluded (event or censored before the landmark)", "model_a": "Model A",
               "model_b": "Model B", "c_a": "C-index A", "c_b": "C-index B",
               "c_diff": "C-index difference (A − B)", "n_boot": "Bootstrap samples",
               "smaller": "Smaller model", "larger": "Larger model", "c_lower": "95% CI lower",
               "c_upper": "95% CI upper", "c_index_se": "C-index SE", "c_index_lower": "C-index 95% CI lower",
               "c_index_upper": "C-index 95% CI upper"}


def _stat_cell(column: str, value):
    """One statistics cell by the formatting policy: p-values, fit statistics, estimates, counts."""
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, (bool, np.bool_)):
        return fmt.cell(value)
    if column in ("p", "p_value") or column.startswith("p_"):
        return fmt.p_value(value)
    if column in ("loglik", "aic", "bic", "statistic", "chisq", "z", "logrank_chisq"):
        return fmt.fit_statistic(value)
    if column in ("n", "k", "events", "df", "n_candidates", "n_boot", "n_at_risk", "excluded") or \
            column.startswith(("n_", "events_")):
        return fmt.count(value)
    if column in ("cutpoint", "cutoff"):
        return fmt.cutpoint(value)
    return fmt.estimate(value, min_decimals=3 if column.startswith(("c_index", "td_auc", "c_a", "c_b")) else 2)


def _stat_display(df: pd.DataFrame) -> pd.DataFrame:
    """A statistics table for the reports: every cell by the policy, columns by their names."""
    out = pd.DataFrame({c: [_stat_cell(str(c), v) for v in df[c]] for c in df.columns})
    return out.rename(columns=lambda c: _STAT_NAMES.get(str(c), str(c)))


def _cutpoint_display(cp, split_at: float) -> pd.DataFrame:
    shown = _stat_display(cp.summary)
    shown["Cut-point"] = fmt.cutpoint(split_at)
    if "p_perm" in cp.summary and cp.n_perm:
        shown["p (permutation)"] = [fmt.mc_p_value(v, cp.n_perm) for v in cp.summary["p_perm"]]
    return shown


def _models_display(summary: pd.DataFrame, labels: Labels) -> pd.DataFrame:
    out = summary.copy()
    out["covariates"] = [", ".join(labels.label(c.strip()) for c in str(v).replace(" + ", ", ").split(","))
                         for v in out["covariates"]]
    return _stat_display(out)


def _contrasts_display(contrasts: pd.DataFrame) -> pd.DataFrame:
    """C-index contrasts as a paper prints them: the two models, their C-indices, the difference (95% CI), p."""
    return pd.DataFrame({
        "Models": [f"{r.model_a} vs {r.model_b}" for r in contrasts.itertuples()],
        "C-index": [f"{fmt.estimate(r.c_a)} vs {fmt.estimate(r.c_b)}" for r in contrasts.itertuples()],
        "Difference (95% CI)": [fmt.estimate_ci(r.difference, r.lower, r.upper) for r in contrasts.itertuples()],
        "p": [fmt.p_value(r.p_value) for r in contrasts.itertuples()]})


def _two_level(values: pd.Series) -> bool:
    """A true/false or 0/1 covariate (the Cox model's HR then compares its two levels)."""
    known = values.dropna()
    return pd.api.types.is_bool_dtype(values) or (known.isin([0, 1, True, False]).all() and known.nunique() == 2)


def _cox_coding(data: pd.DataFrame, covariates: list[str], labels: Labels) -> tuple[pd.DataFrame, dict]:
    """Covariates coded so that each HR compares with the reference level the report names.

    A two-level covariate becomes 1 for its non-reference level and 0 for the reference (the plan's
    ``reference``, else the first level): a 0/1 column with ``reference: 1`` gives the HR of 0 vs 1, as its
    row says. A text covariate whose plan gives ``reference`` passes it to :func:`carpet.stats.cox`.
    """
    frame, reference = data.copy(), {}
    for c in covariates:
        values = data[c]
        if _two_level(values):
            ref = labels.reference(c, values)
            frame[c] = [np.nan if fmt.is_missing(v) else float(float(v) != float(ref)) for v in values]
        elif not pd.api.types.is_numeric_dtype(values) and "reference" in labels.spec.get(c, {}):
            reference[c] = labels.reference(c, values)
    return frame, reference


def _cox_display(summary: pd.DataFrame, data: pd.DataFrame, covariates: list[str], labels: Labels,
                 reference: dict | None = None) -> pd.DataFrame:
    """Cox terms as a paper prints them: "Term", "HR (95% CI)", "p", with the comparison each HR makes
    (coded by :func:`_cox_coding`: the reference level is the one named)."""
    rows = []
    for r in summary.to_dict("records"):
        term = str(r["term"])
        column = next((c for c in sorted(covariates, key=len, reverse=True) if term.startswith(c)), term)
        values = data[column] if column in data else pd.Series(dtype=float)
        if column in data and _two_level(values):
            ref = labels.reference(column, values)
            other = next(v for v in labels.order(column, values) if v != ref)
            compared = f"{labels.level(column, other)} vs {labels.level(column, ref)} (reference)"
        elif term != column:
            ref = (reference or {}).get(column)
            if ref is None:  # R's default: the first level in sorted order
                ref = sorted(values.dropna().astype(str).unique())[0] if column in data else None
            compared = (f"{labels.level(column, term[len(column):])} vs {labels.level(column, ref)} (reference)"
                        if ref is not None else f"{term[len(column):].strip(':_= ')} vs reference")
        else:
            unit = labels.unit(column)
            compared = f"per 1 {unit}" if unit else "per unit"
        rows.append({"Term": labels.label(column), "Comparison": compared,
                     "HR (95% CI)": fmt.estimate_ci(r["hr"], r["hr_lower"], r["hr_upper"]), "p": fmt.p_value(r["p"])})
    return pd.DataFrame(rows)


_RUNNERS = {"table1": _run_table1, "km": _run_km, "cox": _run_cox, "transitions": _run_transitions,
            "cutpoint": _run_cutpoint, "cutoff": _run_cutoff, "compare_models": _run_compare_models,
            "landmark": _run_landmark, "association": _run_association}
assert set(_RUNNERS) <= set(ANALYSES)
