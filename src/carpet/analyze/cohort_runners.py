"""Analyses of the raw clinical tables: progression patterns, the flowchart, rates with exact CIs, lines after CAR T.

Each runner takes the analysis table (``data``), its plan item (``a``), the endpoints, the report writer, the file
stem, the seed and the :class:`carpet.analyze.clinical.ClinicalTables` the table was derived from, and returns the
numbers written to ``results.json``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from carpet.analyze.runners import _two_level
from carpet.errors import InputError

#: Table 2 row labels of the Moffitt paper, in its order
PATTERN_LABELS = {"biochemical": "Biochemical recurrence", "marrow": "BM involvement", "new_bone": "New bone disease",
                  "emd_or_pmd": "EMD or PMD", "emd": "Any EMD", "pmd": "Any PMD",
                  "isolated_marrow": "Isolated BM involvement", "isolated_new_bone": "Isolated new bone disease",
                  "isolated_biochemical": "Isolated biochemical progression",
                  "isolated_emd_or_pmd": "Isolated EMD or PMD"}


def _need(tables, what: str, analysis: str) -> None:
    if tables is None or not tables.has(what):
        raise InputError(f"{analysis} needs the {what} table", where=analysis,
                         hint=f"--{what} TABLE.csv" if what != "progression" else "--assessments LABS.csv")


def _n_pct(n: int, known: int) -> str:
    return f"{n} ({100 * n / known:.0f}%)" if known else f"{n} (–)"


def _run_patterns(data, a, endpoints, writer, stem, seed, tables):
    """Table 2: median time to progression (IQR) and each pattern, n (%) of the patients in whom it is known."""
    from carpet.cohort.patterns import progression_patterns, pattern_summary

    _need(tables, "assessments", "patterns")
    prog = tables.progression.assign(
        progression_date=tables.progression["progression_date"].dt.strftime("%Y-%m-%d").fillna(""))
    prog = prog[prog["patient_id"].isin(data["patient_id"])]
    pats = progression_patterns(prog, tables.patients, tables.assessments, window_days=a.get("window_days", 30),
                                marrow_min_pct=a.get("marrow_min_pct", 5.0))
    summary = pattern_summary(pats).set_index("pattern").reindex(list(PATTERN_LABELS)).reset_index()
    ttp = tables.progression.set_index("patient_id")["days_to_progression"].reindex(pats["patient_id"])
    ttp_months = pd.to_numeric(ttp, errors="coerce").dropna() / (365.25 / 12)
    q1, med, q3 = (float(np.percentile(ttp_months, q)) for q in (25, 50, 75)) if len(ttp_months) else (np.nan,) * 3
    rows = [{"pattern": "time_to_progression_months", "label": "Median time to progression, mo (IQR)",
             "value": f"{med:.1f} ({q1:.1f}–{q3:.1f})", "n": len(ttp_months), "n_known": len(ttp_months),
             "percent": np.nan}]
    rows += [{"pattern": r["pattern"], "label": PATTERN_LABELS[r["pattern"]], "value": _n_pct(r["n"], r["n_known"]),
              "n": r["n"], "n_known": r["n_known"], "percent": r["percent"]} for r in summary.to_dict("records")]
    table = pd.DataFrame(rows)
    files = [writer.table(table, stem, f"Patterns of progression (N = {len(pats)}); percent of the patients in "
                                       "whom the pattern is known",
                          display=table[["label", "value", "n_known"]].rename(
                              columns={"label": "Progression pattern", "value": "n (%)", "n_known": "known in"}))]
    writer.text("Biochemical: IMWG progression triggered by serum/urine M-protein or dFLC; marrow: clonal plasma "
                f"cells >= {a.get('marrow_min_pct', 5.0):g}% within {a.get('window_days', 30)} days of progression "
                "(after infusion); new bone disease: new_bone_lesion on imaging; EMD/PMD: the patients table at "
                "progression. Isolated: that pattern alone, every other one known absent.")
    writer.csv(pats, f"{stem}_per_patient")
    return {"table": table.to_dict("records"), "ttp_median_months": med, "ttp_iqr_months": [q1, q3],
            "n_progressed": int(len(pats)), "files": files + [f"{stem}_per_patient.csv"],
            "provenance": tables.record}


def _run_flowchart(data, a, endpoints, writer, stem, seed, tables):
    """Figure 1: treated -> progressed -> refractory (<= 60 days) / relapsed, overall and by a column."""
    from carpet.report.flowchart import flowchart_figure

    _need(tables, "progression", "flowchart")
    prog = tables.progression.set_index("patient_id")
    ids = data["patient_id"]
    days = (prog["progression_date"] - tables.patients.set_index("patient_id")["infusion_date"]).dt.days
    progressed = prog["progression_date"].notna().reindex(ids).fillna(False).to_numpy(bool)
    window = a.get("refractory_days", 60)
    refractory = (days <= window).reindex(ids).fillna(False).to_numpy(bool) & progressed
    stages = {"treated": np.ones(len(ids), bool), "progressed": progressed, "refractory": refractory,
              "relapsed": progressed & ~refractory}
    by = a.get("by")
    groups = ["all"] + (sorted(data[by].dropna().astype(str).unique()) if by else [])
    rows = []
    for stage, mask in stages.items():
        row = {"stage": stage, "all": int(mask.sum())}
        for g in groups[1:]:
            row[g] = int((mask & (data[by].astype(str) == g).to_numpy()).sum())
        rows.append(row)
    table = pd.DataFrame(rows)
    named = writer.labels.label(by) if by else ""
    display = table.assign(stage=table["stage"].str.capitalize()).rename(
        columns={"stage": "Stage", "all": "All patients", **{g: _level_label(writer.labels, by, data, g) for g in groups[1:]}})
    files = [writer.table(table, stem, f"Flowchart: patients treated, progressed, refractory (progression within "
                                       f"{window} days of infusion) and relapsed" + (f", by {named}" if by else ""),
                          display=display)]
    files += writer.figure(flowchart_figure(table, refractory_days=window), stem,
                           "Patients treated, progressed, refractory and relapsed" + (f", by {named}" if by else ""))
    return {"counts": table.to_dict("records"), "refractory_days": window, "files": files}


def _level_label(labels, column: str, data: pd.DataFrame, text: str) -> str:
    """The label of the value of ``column`` whose text is ``text`` (groups made by ``astype(str)``)."""
    value = next((v for v in data[column].dropna().unique() if str(v) == text), text)
    return labels.level(column, value)


def _run_proportion(data, a, endpoints, writer, stem, seed, tables=None):
    """A rate with its exact (Clopper–Pearson) 95% CI, overall and per group."""
    from carpet.stats import proportion

    col = a["column"]
    by = a.get("by")
    frame = data.dropna(subset=[col] + ([by] if by else []))
    values = frame[col]
    if not (pd.api.types.is_bool_dtype(values) or set(values.astype(str).str.lower()) <= {"true", "false"}):
        raise InputError(f"proportion needs a true/false column; '{col}' holds {sorted(map(str, values.unique()))[:5]}",
                         where=f"{col}", hint="derive a true/false column first (cut:, responded:, labels:)")
    yes = values.astype(str).str.lower().eq("true").to_numpy()
    groups = [("All patients", np.ones(len(frame), bool))]
    if by:
        groups += [(str(g), (frame[by].astype(str) == str(g)).to_numpy()) for g in sorted(frame[by].astype(str).unique())]
    rows = []
    for g, mask in groups:
        if not mask.any():
            continue
        p = proportion(int(yes[mask].sum()), int(mask.sum()))
        rows.append({"group": g, "k": p.k, "n": p.n, "percent": 100 * p.estimate, "ci_lower": 100 * p.ci_exact[0],
                     "ci_upper": 100 * p.ci_exact[1]})
    table = pd.DataFrame(rows)
    label = a.get("label", writer.labels.label(col))
    display = table.assign(**{f"{label}, % (95% CI)": [f"{r['k']}/{r['n']} = {r['percent']:.0f}% "
                                                       f"({r['ci_lower']:.0f}–{r['ci_upper']:.0f})" for r in rows]})
    files = [writer.table(table, stem, f"{label}: rate with exact (Clopper–Pearson) 95% CI",
                          display=display[["group", f"{label}, % (95% CI)"]].rename(columns={"group": "Group"}))]
    n_missing = len(data) - len(frame)
    if n_missing:
        writer.note(f"{n_missing} patient(s) with {label} unknown were left out of this rate.")
    return {"column": col, "rows": rows, "n_missing": n_missing, "ci": "Clopper-Pearson (R binom.test)",
            "files": files}


def _class_rates(lines: pd.DataFrame) -> list[dict[str, Any]]:
    """Response (>= PR) per regimen class with exact 95% CIs, among lines with a known response."""
    from carpet.stats import proportion

    rows = []
    known = lines[lines["responded"].notna()]
    for cls, part in [("all classes", known)] + sorted(known.groupby("regimen_class"), key=lambda kv: str(kv[0])):
        if not len(part):
            continue
        p = proportion(int(part["responded"].astype(bool).sum()), len(part))
        rows.append({"regimen_class": cls, "responded": p.k, "n": p.n, "orr_percent": 100 * p.estimate,
                     "ci_lower": 100 * p.ci_exact[0], "ci_upper": 100 * p.ci_exact[1]})
    return rows


def _rates_display(rows: list[dict]) -> pd.DataFrame:
    from carpet.cohort.therapy import REGIMEN_CLASS_LABELS

    return pd.DataFrame([{"Regimen class": REGIMEN_CLASS_LABELS.get(r["regimen_class"], r["regimen_class"]),
                          "Lines": r["n"],
                          "ORR, % (95% CI)": f"{r['responded']}/{r['n']} = {r['orr_percent']:.0f}% "
                                             f"({r['ci_lower']:.0f}–{r['ci_upper']:.0f})"} for r in rows])


def _run_lines(data, a, endpoints, writer, stem, seed, tables):
    """Lines after CAR T: per patient (median, range), response to the first salvage and to every line by
    regimen class (exact CIs), PFS per line number (Kaplan–Meier)."""
    from carpet.analyze.runners import _km_block

    _need(tables, "therapies", "lines")
    after = a.get("after", "progression")
    lines = tables.lines[tables.lines["patient_id"].isin(data["patient_id"])].copy()
    if after == "progression" and "after_progression" in lines:
        lines = lines[lines["after_progression"].fillna(False).astype(bool)].copy()
    lines["salvage_line"] = lines.sort_values(["patient_id", "start_date"]).groupby("patient_id").cumcount() + 1
    ids = data["patient_id"]
    if after == "progression":
        prog = tables.progression.set_index("patient_id")["progression_date"]
        ids = ids[ids.map(prog).notna()]
    per_patient = lines.groupby("patient_id").size().reindex(ids, fill_value=0)
    summary = pd.DataFrame([{"patients": len(per_patient), "courses": int(per_patient.sum()),
                             "median_lines": float(per_patient.median()), "min_lines": int(per_patient.min()),
                             "max_lines": int(per_patient.max()), "q1": float(per_patient.quantile(0.25)),
                             "q3": float(per_patient.quantile(0.75))}])
    s = summary.iloc[0]
    files = [writer.table(summary, f"{stem}_per_patient",
                          f"Lines of therapy after {'progression' if after == 'progression' else 'CAR T'} per patient",
                          display=pd.DataFrame([{"Patients": int(s["patients"]), "Courses": int(s["courses"]),
                                                 "Lines per patient, median (range)":
                                                     f"{s['median_lines']:g} ({int(s['min_lines'])}–"
                                                     f"{int(s['max_lines'])})"}]))]
    first = lines[lines["salvage_line"] == 1]
    first_rows, all_rows = _class_rates(first), _class_rates(lines)
    files.append(writer.table(pd.DataFrame(first_rows), f"{stem}_first_response",
                              "Response (≥ PR) to the first salvage line, by regimen class; exact 95% CI",
                              display=_rates_display(first_rows)))
    files.append(writer.table(pd.DataFrame(all_rows), f"{stem}_all_response",
                              "Response (≥ PR) across all salvage lines, by regimen class; exact 95% CI",
                              display=_rates_display(all_rows)))
    pfs = _line_pfs(lines, tables)
    res: dict[str, Any] = {"per_patient": summary.iloc[0].to_dict(), "first_line_response": first_rows,
                           "all_lines_response": all_rows}
    if len(pfs):
        ep = {"time": "time_months", "event": "event", "unit": "months", "label": "PFS per line"}
        groups = pfs["line_group"]
        km = _km_block(writer, pfs, ep, groups, {"risk_times": a.get("risk_times", [0, 3, 6, 9, 12])},
                       f"{stem}_pfs", "PFS per salvage line (line start to progression on it or death)")
        res["pfs_per_line"] = km
        files += km["files"]
    ttnt = lines.dropna(subset=["ttnt_days", "ttnt_event"])
    if len(ttnt):
        frame = pd.DataFrame({"time_months": ttnt["ttnt_days"].to_numpy(float) / (365.25 / 12),
                              "event": ttnt["ttnt_event"].to_numpy(int),
                              "line_group": ttnt["salvage_line"].map(lambda k: f"line {k}" if k < 3 else "line 3+")})
        ep = {"time": "time_months", "event": "event", "unit": "months", "label": "TTNT per line"}
        km = _km_block(writer, frame, ep, frame["line_group"], {"risk_times": a.get("risk_times", [0, 3, 6, 9, 12])},
                       f"{stem}_ttnt", "Time to next treatment per salvage line (line start to next line or death)")
        res["ttnt_per_line"] = km
        files += km["files"]
    res["files"] = files
    return res


def _line_pfs(lines: pd.DataFrame, tables) -> pd.DataFrame:
    """PFS of each line: its start to progression on it or death, censored at the next line or last follow-up."""
    pt = tables.patients.set_index("patient_id")
    death = (pd.to_datetime(lines["patient_id"].map(pt["death_date"])) if "death_date" in pt
             else pd.Series(pd.NaT, index=lines.index))
    last = (pd.to_datetime(lines["patient_id"].map(pt["last_followup_date"])) if "last_followup_date" in pt
            else pd.Series(pd.NaT, index=lines.index))
    nxt = lines.sort_values(["patient_id", "start_date"]).groupby("patient_id")["start_date"].shift(-1)
    prog = lines["progression_date"] if "progression_date" in lines else pd.Series(pd.NaT, index=lines.index)
    event_date = pd.concat([prog, death.where(nxt.isna() | (death <= nxt))], axis=1).min(axis=1)
    censor = nxt.fillna(last)
    end = event_date.fillna(censor)
    out = pd.DataFrame({"patient_id": lines["patient_id"], "salvage_line": lines["salvage_line"],
                        "time_months": (end - lines["start_date"]).dt.days / (365.25 / 12),
                        "event": event_date.notna().astype(int)}).dropna(subset=["time_months"])
    out["line_group"] = out["salvage_line"].map(lambda k: f"line {k}" if k < 3 else "line 3+")
    return out


def _run_swimmer(data, a, endpoints, writer, stem, seed, tables):
    """Swimmer plot: one bar per patient from progression, each line of therapy a coloured segment."""
    from carpet.report.swimmer import swimmer_figure

    _need(tables, "therapies", "swimmer")
    _need(tables, "progression", "swimmer")
    prog = tables.progression.set_index("patient_id")["progression_date"]
    pt = tables.patients.set_index("patient_id")
    ids = [p for p in data["patient_id"] if pd.notna(prog.get(p))]
    month = 365.25 / 12
    rows, segments = [], []
    for pid in ids:
        t0 = prog[pid]
        death = pt["death_date"].get(pid) if "death_date" in pt else pd.NaT
        last = pt["last_followup_date"].get(pid) if "last_followup_date" in pt else pd.NaT
        end = death if pd.notna(death) else last
        if pd.isna(end):
            continue
        rows.append({"patient_id": pid, "end_months": (end - t0).days / month, "died": bool(pd.notna(death))})
        mine = tables.lines[(tables.lines["patient_id"] == pid) & (tables.lines["start_date"] >= t0)]
        mine = mine.sort_values("start_date")
        starts = list(mine["start_date"]) + [end]
        for (_, line), stop in zip(mine.iterrows(), starts[1:]):
            segments.append({"patient_id": pid, "start_months": (line["start_date"] - t0).days / month,
                             "stop_months": (stop - t0).days / month, "regimen_class": line["regimen_class"],
                             "progressed_months": ((line["progression_date"] - t0).days / month
                                                   if pd.notna(line.get("progression_date")) else np.nan)})
    bars, segs = pd.DataFrame(rows), pd.DataFrame(segments)
    if bars.empty:
        raise InputError("swimmer: no patient has both a progression and a date of death or last follow-up",
                         where="swimmer")
    fig = swimmer_figure(bars, segs, max_patients=a.get("max_patients", 40))
    files = writer.figure(fig, stem, "Swimmer plot from progression after CAR T: each bar a patient, each colour a "
                                     "regimen class; | progression on a line, × death.")
    writer.csv(segs, f"{stem}_segments")
    return {"n_patients": int(len(bars)), "n_lines": int(len(segs)), "files": files + [f"{stem}_segments.csv"]}


def _run_roc(data, a, endpoints, writer, stem, seed, tables=None):
    """AUC (DeLong 95% CI) of markers for an event by a horizon; paired DeLong test of the first two markers.

    The outcome is the endpoint's event at or before ``horizon`` (1), or follow-up beyond it without one (0);
    patients censored before the horizon are left out (their outcome is unknown), and the report says how many.
    """
    from carpet.report import format as fmt
    from carpet.stats import roc, roc_test

    ep = endpoints[a["endpoint"]]
    markers = [a["markers"]] if isinstance(a["markers"], str) else list(a["markers"])
    frame = data.dropna(subset=[ep["time"], ep["event"], *markers])
    t = pd.to_numeric(frame[ep["time"]]).to_numpy(float)
    e = pd.to_numeric(frame[ep["event"]]).to_numpy(int)
    horizon = float(a["horizon"])
    known = (e == 1) & (t <= horizon) | (t > horizon)
    y = ((e == 1) & (t <= horizon))[known].astype(int)
    rows, fits = [], {}
    for m in markers:
        x = pd.to_numeric(frame[m]).to_numpy(float)[known]
        fits[m] = r = roc(y, x, direction=a.get("direction", "<"))
        rows.append({"marker": m, "n": int(known.sum()), "events": int(y.sum()), "auc": r.auc,
                     "auc_lower": r.auc_ci[0], "auc_upper": r.auc_ci[1], "direction": r.direction})
    table = pd.DataFrame(rows)
    label = ep.get("label", a["endpoint"])
    files = [writer.table(table, stem, f"AUC (DeLong 95% CI) for {label} event by {horizon:g} "
                                       f"{ep.get('unit', 'months')}",
                          display=pd.DataFrame([{"Marker": writer.labels.name(r["marker"]), "n": r["n"],
                                                 "Events": r["events"],
                                                 "AUC (95% CI)": fmt.estimate_ci(r["auc"], r["auc_lower"], r["auc_upper"],
                                                                                 null=None)} for r in rows]))]
    res: dict[str, Any] = {"endpoint": ep, "horizon": horizon, "rows": rows,
                           "n_censored_before_horizon": int((~known).sum())}
    if (~known).any():
        writer.note(f"{int((~known).sum())} patient(s) censored before {horizon:g} {ep.get('unit', 'months')} "
                    "were left out of the AUC (outcome unknown).")
    if len(markers) >= 2:
        x1, x2 = (pd.to_numeric(frame[m]).to_numpy(float)[known] for m in markers[:2])
        test = roc_test(y, x1, x2, direction1=a.get("direction", "<"), direction2=a.get("direction", "<"))
        res["roc_test"] = {"markers": markers[:2], "difference": test.difference, "p_value": test.p_value}
        writer.text(f"Paired DeLong test, AUC {writer.labels.label(markers[0])} − {writer.labels.label(markers[1])} "
                    f"= {fmt.estimate(test.difference, min_decimals=3)}, {fmt.p_equals(test.p_value)}.")
    res["files"] = files
    return res


def _run_cox_table(data, a, endpoints, writer, stem, seed, tables=None):
    """Univariable and multivariable Cox models side by side (:func:`carpet.stats.cox_table`, R's coxph)."""
    from carpet.stats import cox_table

    ep = endpoints[a["endpoint"]]
    covs = [a["covariates"]] if isinstance(a["covariates"], str) else list(a["covariates"])
    strata = a.get("strata")
    frame = data.dropna(subset=[ep["time"], ep["event"], *covs])  # the same patients in every model
    ct = cox_table(frame, duration=ep["time"], event=ep["event"], covariates=covs,
                   strata=[strata] if isinstance(strata, str) else strata)
    display = _cox_table_display(ct.table, frame, writer.labels)
    files = [writer.table(ct.table, stem, f"Cox models of {ep.get('label', a['endpoint'])}: univariable and "
                                          f"multivariable (n = {len(frame)}, events = {int(frame[ep['event']].sum())})",
                          display=display)]
    if len(frame) < len(data):
        writer.note(f"{len(data) - len(frame)} patient(s) with a missing value were left out of every model.")
    for w in ct.warnings:
        writer.note(f"Cox model, {w}")
    return {"endpoint": ep, "table": ct.table.to_dict("records"), "n": int(len(frame)), "warnings": ct.warnings,
            "provenance": ct.provenance, "files": files}


def _cox_table_display(table: pd.DataFrame, data: pd.DataFrame, labels) -> pd.DataFrame:
    """The Cox table as a paper prints it: covariates and levels by their labels, the reference level named."""
    def level(term: str, text) -> str:
        values = data[term].dropna().unique() if term in data else []
        value = next((v for v in values if str(v) == str(text)), text)
        return labels.level(term, value)

    rows = []
    for r in table.to_dict("records"):
        term = str(r["term"])
        if r["level"] == "(reference)":
            shown = f"{level(term, r.get('reference_level'))} (reference)"
        elif r["level"]:
            shown = level(term, r["level"])
        elif term in data and _two_level(data[term]):  # a 0/1 or true/false column: the HR of 1 vs 0
            low, high = sorted(data[term].dropna().unique(), key=float)[:2]
            shown = f"{labels.level(term, high)} vs {labels.level(term, low)} (reference)"
        else:
            shown = f"per 1 {labels.unit(term)}" if labels.unit(term) else "per unit"
        rows.append({"Covariate": labels.label(term), "Level": shown, "Univariable HR (95% CI)": r["uni"],
                     "p": r["uni_p_text"], "Multivariable HR (95% CI)": r["multi"], "p (multivariable)": r["multi_p_text"]})
    return pd.DataFrame(rows)


def exposure_intervals(time: pd.Series, event: pd.Series, exposure_start: pd.Series) -> pd.DataFrame:
    """Counting-process rows of a time-dependent exposure: unexposed from 0 to its start, exposed after.

    ``time``/``event`` per patient (from the endpoint's origin), ``exposure_start`` the time the exposure began
    (NaN: never, or not before the end of follow-up). Returns ``patient_id, start, stop, event, exposed``; the event
    sits on the last row only.
    """
    rows = []
    for pid, t, e, s in zip(time.index, time.to_numpy(float), event.to_numpy(int), exposure_start.to_numpy(float)):
        if np.isnan(s) or s >= t:
            rows.append((pid, 0.0, t, e, 0))
            continue
        if s > 0:
            rows.append((pid, 0.0, s, 0, 0))
        rows.append((pid, max(s, 0.0), t, e, 1))
    return pd.DataFrame(rows, columns=["patient_id", "start", "stop", "event", "exposed"])


def _run_exposure_cox(data, a, endpoints, writer, stem, seed, tables):
    """Cox model with a time-dependent exposure (counting process): exposed from the start of the first line of
    the classes on, unexposed before; the survival a patient needs to reach that line is not credited to it."""
    from carpet.stats import cox

    _need(tables, "therapies", "exposure_cox")
    ep = endpoints[a["endpoint"]]
    frame = data.dropna(subset=[ep["time"], ep["event"]]).set_index("patient_id")
    classes = [a["classes"]] if isinstance(a["classes"], str) else list(a["classes"])
    lines = tables.lines
    hit = lines["t_cell_engaging"] if classes == ["t_cell_engaging"] else lines["regimen_class"].isin(classes)
    origin = (tables.progression.set_index("patient_id")["progression_date"] if a.get("from", "progression")
              == "progression" else tables.patients.set_index("patient_id")["infusion_date"])
    days = (lines["start_date"] - lines["patient_id"].map(origin)).dt.days
    first = days[hit & (days >= 0)].groupby(lines["patient_id"]).min() / (365.25 / 12)
    cp = exposure_intervals(pd.to_numeric(frame[ep["time"]]), pd.to_numeric(frame[ep["event"]]),
                            first.reindex(frame.index))
    fit = cox(cp, duration="stop", event="event", covariates=["exposed"], start="start")
    row = fit.summary.loc["exposed"]
    summary = pd.DataFrame([{"exposure": " / ".join(classes), "n_patients": len(frame),
                             "n_exposed": int(cp.groupby("patient_id")["exposed"].max().sum()),
                             "events": int(cp["event"].sum()), "hr": row["hr"], "hr_lower": row["hr_lower"],
                             "hr_upper": row["hr_upper"], "p": row["p"]}])
    from carpet.cohort.therapy import REGIMEN_CLASS_LABELS
    from carpet.report import format as fmt

    named = " / ".join({"t_cell_engaging": "T-cell engager", **REGIMEN_CLASS_LABELS}.get(c, c.replace("_", " "))
                       for c in classes)
    s = summary.iloc[0]
    display = pd.DataFrame([{"Exposure": named, "Patients": s["n_patients"], "Exposed": s["n_exposed"],
                             "Events": s["events"], "HR (95% CI)": fmt.estimate_ci(s["hr"], s["hr_lower"], s["hr_upper"]),
                             "p": fmt.p_value(s["p"])}])
    files = [writer.table(summary, stem, f"{ep.get('label', a['endpoint'])}: hazard ratio of a time-dependent "
                                         f"exposure to {named} (counting-process Cox)", display=display)]
    files.append(writer.csv(cp, f"{stem}_intervals"))
    for w in fit.warnings:
        writer.note(f"Cox model: {w}")
    return {"endpoint": ep, "summary": summary.to_dict("records")[0], "provenance": fit.provenance, "files": files}


COHORT_RUNNERS = {"patterns": _run_patterns, "flowchart": _run_flowchart, "proportion": _run_proportion,
                  "lines": _run_lines, "swimmer": _run_swimmer, "roc": _run_roc,
                  "cox_table": _run_cox_table, "exposure_cox": _run_exposure_cox}
#: analyses that read the raw clinical tables (their runners take them as a last argument)
TABLE_ANALYSES = frozenset({"patterns", "flowchart", "lines", "swimmer", "exposure_cox"})
__all__ = ["COHORT_RUNNERS", "TABLE_ANALYSES", "PATTERN_LABELS"]
