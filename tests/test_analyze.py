"""carpet analyze: example plans on simulated cohorts, numbers against direct carpet.stats calls, plan errors,
CLI end to end, PDF structure, identifiers never reaching outputs, SIMULATED everywhere."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from carpet.analyze import run_analysis, validate_plan
from carpet.cli import app
from carpet.errors import InputError
from carpet.stats import cox, cutpoint, kaplan_meier, logrank
from carpet.stats.cutpoint import evaluate_cutoff
from carpet.stats.landmark import landmark
from carpet.stats.models import compare_models
from carpet.stats.table1 import table1
from carpet.stats.transitions import transitions
from carpet.synth.cohort import simulate_cohort

from carpet.report.format import cutpoint as fmt_cut

PLANS = Path(__file__).resolve().parents[1] / "src" / "carpet" / "plans"
DAYS_PER_MONTH = 365.25 / 12


def example_plan(name: str, **overrides) -> dict:
    """An example plan with lighter resampling (n_perm, n_boot) so the tests stay fast."""
    plan = yaml.safe_load((PLANS / f"{name}.yaml").read_text())
    for a in plan["analyses"]:
        for key, value in overrides.items():
            if key in a:
                a[key] = value
    return plan


def read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, comment="#", dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def moffitt(tmp_path_factory):
    """The packaged plan run on the RAW tables (patients without the simulator's answers, labs, therapies);
    the tests compare its numbers with carpet.stats run on the simulator's own answers (cohort.patients)."""
    cohort = simulate_cohort("moffitt_post_cart", n=40, seed=11)
    out = tmp_path_factory.mktemp("moffitt")
    assert "pfs2_months" not in cohort.raw_patients and "high_risk_cytogenetics" not in cohort.raw_patients
    plan = example_plan("moffitt_post_progression")
    # every analysis type of the plan, and the curves tested below (the demo test runs the whole plan)
    plan["analyses"] = [a for a in plan["analyses"] if a["type"] != "km" or (a["endpoint"], a.get("by")) in (
        ("pfs2", "baseline_emd"), ("os_pp", ["baseline_emd", "progression_emd"]))]
    result = run_analysis(cohort.raw_patients, plan, out, assessments=cohort.lab_series(),
                          therapies=cohort.therapies)
    return cohort.patients, result, out


@pytest.fixture(scope="module")
def lbcl(tmp_path_factory):
    cohort = simulate_cohort("lbcl_mtv", n=60, seed=12)
    out = tmp_path_factory.mktemp("lbcl")
    plan = example_plan("lbcl_mtv_vs_ipi", n_boot=20)
    # the MTV comes from the imaging table (baseline window), as carpet batch writes it
    return cohort.patients, run_analysis(cohort.patients, plan, out, imaging=cohort.imaging_table(), xlsx=True), out


def results_json(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


# ----------------------------------------------------------------------------------------------------------------
# example plans: numbers equal direct calls of carpet.stats on the same data
# ----------------------------------------------------------------------------------------------------------------
def test_moffitt_km_and_logrank_equal_direct_calls(moffitt):
    patients, _, out = moffitt
    res = results_json(out)["analyses"]["km_pfs2_baseline_emd"]
    emd = patients["emd_baseline"].astype(bool).to_numpy()
    t, e = patients["pfs2_months"].to_numpy(float), patients["pfs2_event"].to_numpy(int)
    for flag, label in ((True, "EMD at baseline"), (False, "No EMD at baseline")):
        km = kaplan_meier(t[emd == flag], e[emd == flag])
        got = res["groups"][label]
        assert got["n"] == int((emd == flag).sum())
        assert got["median"] == pytest.approx(km.median)
        assert [got["median_lower"], got["median_upper"]] == pytest.approx(list(km.median_ci))
        at12 = km.survival_at([12.0]).iloc[0]
        row12 = next(r for r in got["survival_at"] if r["time"] == 12.0)
        assert row12["surv"] == pytest.approx(at12["surv"]) and row12["n_risk"] == at12["n_risk"]
    lr = logrank(t, e, emd)
    assert res["logrank"]["statistic"] == pytest.approx(lr.statistic)
    assert res["logrank"]["p_value"] == pytest.approx(lr.p_value)
    # the CSV holds the same numbers, one row per group and risk time
    csv = pd.read_csv(out / "km_pfs2_baseline_emd.csv", comment="#")
    assert len(csv) == 2 * 5 and set(csv["time"]) == {0, 6, 12, 18, 24}


def test_moffitt_flowchart_counts_every_treated_patient_and_analyses_the_progressed(moffitt):
    """Figure 1 from the raw tables (every treated patient), the other analyses on the plan's population only."""
    patients, _, out = moffitt
    doc = results_json(out)
    raw = simulate_cohort("moffitt_post_cart", n=40, seed=11).raw_patients  # the fixture's tables
    counts = {r["stage"]: r for r in doc["analyses"]["flowchart"]["counts"]}
    refractory = int(patients["refractory"].sum())
    assert [counts[s]["all"] for s in ("treated", "progressed", "refractory", "relapsed")] == [
        len(raw), len(patients), refractory, len(patients) - refractory]
    assert len(raw) > len(patients) and doc["n_in_tables"] == len(raw) and doc["n_patients"] == len(patients)
    for product in ("ide-cel", "cilta-cel"):
        assert counts["treated"][product] == int((raw["product"] == product).sum())
        assert counts["progressed"][product] == int((patients["product"] == product).sum())
    assert doc["analyses"]["km_pfs2_baseline_emd"]["n_excluded"] == 0  # 40 analysed, none of the others


def test_moffitt_four_group_curves_and_cox(moffitt):
    patients, _, out = moffitt
    res = results_json(out)["analyses"]
    four = res["km_os_pp_baseline_emd_progression_emd"]
    known = patients.dropna(subset=["emd_baseline", "emd_progression"])
    sizes = known.groupby(["emd_baseline", "emd_progression"]).size()
    assert sorted(g["n"] for g in four["groups"].values()) == sorted(sizes.tolist())
    assert four["n_excluded"] == len(patients) - len(known)
    fit = cox(patients, duration="os_pp_months", event="os_pp_event", covariates=["emd_progression", "age_years"])
    got = {r["term"]: r for r in res["cox_os_pp"]["summary"]}
    for term, row in fit.summary.iterrows():
        assert got[term]["hr"] == pytest.approx(row["hr"]) and got[term]["p"] == pytest.approx(row["p"])
    assert res["cox_os_pp"]["concordance"] == pytest.approx(fit.concordance)


def test_moffitt_table1_csv_equals_table1(moffitt):
    patients, _, out = moffitt
    data = patients.copy()  # the simulator's answers, which the plan derived from the raw tables
    data["baseline_emd"] = np.where(data["emd_baseline"].astype(bool), "EMD at baseline", "No EMD at baseline")
    data["high_risk_cytogenetics"] = np.where(data["high_risk_cytogenetics"], "high", "standard")
    # Table 1's pooled FISH rows, from the raw FISH results (tested together: all missing or all known)
    fish = data[["gain1q", "amp1q", "del1p32"]]
    data["chromosome1_abnormality"] = pd.array([None if pd.isna(g) else bool(g or a or d)
                                                for g, a, d in fish.itertuples(index=False)], dtype="boolean")
    data["hyperdiploidy"] = data["non_hyperdiploid"].map({False: "hyperdiploid", True: "not_hyperdiploid"})
    # the paper's groupings: ECOG 0-1 / 2 / >= 3, heavy chain None = no heavy chain, light chain None = non-secretory
    data["ecog_group"] = data["ecog"].map(lambda e: "0-1" if e <= 1 else "2" if e == 2 else ">= 3")
    data["heavy_chain_component"] = data["heavy_chain"].replace({"light_chain_only": "None", "none": "None"})
    data["light_chain_component"] = np.where(data["non_secretory"], "None",
                                             data["involved_light_chain"].str.capitalize())
    plan = example_plan("moffitt_post_progression")
    plan_item = plan["analyses"][1]
    # IMWG needs a confirmed CR (two assessments and a marrow); the simulator's day-90 CR is the lab pattern, so
    # CR is the one row where the engine may say less (VGPR; see test_cohort_sim): compared without it
    categorical = [c for c in plan_item["categorical"] if c != "day90_cr"]
    # the plan's variable labels and level orders, then the same table1 call
    from carpet.analyze.labels import Labels

    cont = ["age_years", "prior_lines"]
    frame, names, order = Labels(plan["variables"]).table1_inputs(data, "baseline_emd", cont, categorical, cont)
    from carpet.report.format import p_value

    expected = table1(frame, by="baseline_emd", continuous=cont, nonnormal=cont, categorical=categorical,
                      labels=names, order=order, seed=2025).table
    expected["p"] = [p_value(p, missing="") for p in expected["p"]]  # the journal-style p of the policy
    got = read_csv(out / "table1.csv")
    assert (got.pop("simulated") == "TRUE").all()  # simulated data: a column, not a comment line
    day90_cr = Labels(plan["variables"]).label("day90_cr")
    got = got[~got["variable"].str.startswith(day90_cr)].reset_index(drop=True)
    want = expected.astype(object).where(expected.notna(), "").astype(str)
    assert list(got.columns[2:4]) == ["Overall", "No EMD at baseline"] and "Male, n (%)" in set(got["variable"])
    assert list(got.columns) == list(want.columns)
    assert got.to_numpy().tolist() == want.to_numpy().tolist()


def test_moffitt_report_names_columns_by_their_labels(moffitt):
    """Notes and the transitions table of the report (runners) speak the plan's labels, not column names."""
    _, _, out = moffitt
    page = (out / "report.html").read_text()
    assert "<th>status_progression</th>" not in page          # the columns' axis name was an extra header row
    assert "<th>Baseline \\ Progression</th>" in page                # the corner cell names both axes
    notes = re.findall(r"missing time, event or ([^.]*) were left out", page)
    notes += re.findall(r"patient\(s\) with ([^.]*) unknown were left out of this rate", page)
    assert notes and all("_" not in n for n in notes), notes


def test_proportion_heading_and_note_use_the_column_label(tmp_path):
    from carpet.analyze.cohort_runners import _run_proportion
    from carpet.analyze.writer import _Writer

    writer = _Writer(tmp_path, "t", "", simulated=False)
    data = pd.DataFrame({"day90_orr": [True, False, True, None]})
    _run_proportion(data, {"type": "proportion", "column": "day90_orr"}, {}, writer, "rate", 1)
    text = " ".join(b.get("html", b.get("caption", "")) for sec in writer.html.sections for b in sec.blocks)
    assert "1 patient(s) with Day 90 ORR unknown were left out" in text and "day90_orr" not in text


def test_moffitt_transitions_count_patients(moffitt):
    patients, _, out = moffitt
    res = results_json(out)["analyses"]["transitions_status_baseline_status_progression"]

    def status(e, p):  # written independently of carpet.cohort.patterns
        if pd.isna(e) or pd.isna(p):
            return "Unknown"
        return {(False, False): "None", (True, False): "EMD", (False, True): "PMD", (True, True): "EMD+PMD"}[
            (bool(e), bool(p))]

    pairs = pd.Series([(status(a, b), status(c, d)) for a, b, c, d in zip(
        patients["emd_baseline"], patients["pmd_baseline"], patients["emd_progression"],
        patients["pmd_progression"])]).value_counts()
    for (before, after), n in pairs.items():
        assert res["table"][before][after] == n
    assert sum(sum(r.values()) for r in res["table"].values()) == len(patients)
    known = patients.assign(b=[status(a, b) for a, b in zip(patients["emd_baseline"], patients["pmd_baseline"])],
                            a=[status(a, b) for a, b in zip(patients["emd_progression"], patients["pmd_progression"])])
    known = known.replace("Unknown", None)
    tr = transitions(known, "b", "a", order=["None", "EMD", "PMD", "EMD+PMD"], seed=2025)
    assert res["test"]["p_value"] == pytest.approx(tr.test.p_value)


def test_lbcl_ipi_from_raw_columns_and_model_comparison(lbcl):
    patients, result, out = lbcl
    # IPI by hand: one point each for age > 60, LDH > ULN, ECOG >= 2, stage III-IV, > 1 extranodal site
    ipi = ((patients["age_years"] > 60).astype(int) + (patients["ldh_u_l"] > patients["ldh_uln_u_l"]).astype(int)
           + (patients["ecog"] >= 2).astype(int) + (patients["ann_arbor_stage"] >= 3).astype(int)
           + (patients["n_extranodal_sites"] > 1).astype(int))
    data = patients.assign(ipi=ipi.astype(float), log_mtv=np.log(patients["mtv_ml"]))
    direct = compare_models(data, "pfs_months", "pfs_event", {"IPI": ["ipi"], "MTV": ["log_mtv"],
                            "IPI + MTV": ["ipi", "log_mtv"]}, n_boot=20, seed=2025, horizon=12)
    got = {r["model"]: r for r in result.results["compare_models_pfs"]["summary"]}
    for row in direct.summary.itertuples():
        assert got[row.model]["c_index"] == pytest.approx(row.c_index)
        assert got[row.model]["aic"] == pytest.approx(row.aic)
        assert got[row.model]["td_auc"] == pytest.approx(row.td_auc)
    lr = {(r["smaller"], r["larger"]): r["p_value"] for r in result.results["compare_models_pfs"]["lr_tests"]}
    for r in direct.lr_tests.itertuples():
        assert lr[(r.smaller, r.larger)] == pytest.approx(r.p_value)
    fit = cox(data, duration="pfs_months", event="pfs_event", covariates=["ipi", "log_mtv"])
    csv = pd.read_csv(out / "cox_pfs.csv", comment="#").set_index("term")
    assert csv.loc["log_mtv", "hr"] == pytest.approx(fit.summary.loc["log_mtv", "hr"])
    assert (out / "compare_models_pfs_cindex_differences.csv").is_file()


def test_certainty_plan_via_cli_end_to_end(tmp_path):
    """The CERTAINTY example through `carpet analyze` (typer CliRunner): every file, the numbers, the PDF."""
    cohort = simulate_cohort("certainty_pet", seed=13)
    paths = cohort.write(tmp_path / "cohort")
    plan = example_plan("certainty_mtv", n_perm=99)
    plan_path = tmp_path / "plan.yaml"
    plan_path.write_text(yaml.safe_dump(plan))
    out = tmp_path / "out"
    run = CliRunner().invoke(app, ["analyze", "--clinical", str(paths["patients"]), "--imaging", str(paths["imaging"]),
                                   "--plan", str(plan_path), "--out", str(out)])
    assert run.exit_code == 0, run.output
    expected = {"report.html", "report.pdf", "results.json", "cutpoint_pfs_mtv_ml.csv", "cutpoint_pfs_mtv_ml_km.csv",
                "cutoff_pfs_mtv_ml.csv", "cutoff_pfs_mtv_ml_km.csv", "landmark_pfs_day30_response.csv",
                "landmark_pfs_day30_response_at_risk.csv"}
    assert expected <= {p.name for p in out.iterdir()}
    figures = {p.name for p in (out / "figures").iterdir()}
    for stem in ("cutpoint_pfs_mtv_ml_km", "cutoff_pfs_mtv_ml_km", "landmark_pfs_day30_response"):
        assert {f"{stem}.png", f"{stem}.pdf"} <= figures
        assert (out / "figures" / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    doc = json.loads((out / "results.json").read_text())
    res = doc["analyses"]
    p = cohort.patients.dropna(subset=["mtv_ml"])
    t, e, x = p["pfs_months"].to_numpy(float), p["pfs_event"].to_numpy(int), p["mtv_ml"].to_numpy(float)
    cp = cutpoint(t, e, x, min_prop=0.1, n_perm=99, seed=2025)
    assert res["cutpoint_pfs_mtv_ml"]["cutpoint"] == pytest.approx(cp.value)
    assert res["cutpoint_pfs_mtv_ml"]["p_value"] == pytest.approx(cp.p_value)
    assert res["cutpoint_pfs_mtv_ml"]["p_value_perm"] == pytest.approx(cp.p_value_perm)
    # the groups are split at the recorded split_value, printed as it is, with the same patients as the cut-point
    at = res["cutpoint_pfs_mtv_ml"]["split_value"]
    assert np.array_equal(x > at, x > cp.value) and len(repr(at)) <= len(repr(cp.value))
    high = [g for g in res["cutpoint_pfs_mtv_ml"]["km"]["groups"] if ">" in g]
    assert high == [f"MTV > {fmt_cut(at)} mL"] and res["cutpoint_pfs_mtv_ml"]["km"]["groups"][high[0]]["n"] == \
        int((x > at).sum())
    with pytest.warns(UserWarning):
        ev = evaluate_cutoff(t, e, x, 54.3, marker_method="suv4")
    assert res["cutoff_pfs_mtv_ml"]["hr_high_vs_low"] == pytest.approx(ev.hr)
    assert res["cutoff_pfs_mtv_ml"]["logrank_p"] == pytest.approx(ev.logrank.p_value)
    assert res["cutoff_pfs_mtv_ml"]["warnings"], "an unconfirmed cut-off method must be reported, not hidden"
    # the uni/multivariable Cox table on the complete cases, against carpet.stats.cox on the simulated answers
    cc = cohort.patients.dropna(subset=["mtv_ml", "emd_baseline", "diffuse_marrow_uptake"]).assign(
        log_mtv=lambda d: np.log(d["mtv_ml"]))
    rows = {r["term"]: r for r in res["cox_table_pfs"]["table"]}
    for covs, key in ((["log_mtv"], "uni_hr"), (["emd_baseline", "log_mtv", "diffuse_marrow_uptake"], "multi_hr")):
        fit = cox(cc, duration="pfs_months", event="pfs_event", covariates=covs)
        assert rows["log_mtv"][key] == pytest.approx(fit.summary.loc["log_mtv", "hr"])
    d30 = cohort.patients.dropna(subset=["metcr_day30"])
    lm = landmark(d30, "pfs_months", "pfs_event", landmark_time=1.0, group="metcr_day30")
    assert res["landmark_pfs_day30_response"]["logrank"]["p_value"] == pytest.approx(lm.logrank.p_value)
    assert sorted(r["n_at_risk"] for r in res["landmark_pfs_day30_response"]["at_risk"]) == sorted(
        lm.at_risk["n_at_risk"].tolist())

    # every number of every table has its source in results.json; no raw column name in a label
    from _report_checks import raw_labels, unexplained_figure_numbers, unexplained_numbers

    problems = unexplained_numbers(doc, out / "report.html")[0] + unexplained_figure_numbers(doc)[0]
    assert problems == [] and raw_labels(out) == [], problems

    # provenance: plan and input hashes, carpet version
    prov = doc["provenance"]
    assert re.fullmatch(r"[0-9a-f]{64}", prov["plan"]["sha256"])
    assert re.fullmatch(r"[0-9a-f]{64}", prov["inputs"]["clinical"]["sha256"])
    assert prov["carpet_version"] and res["cutpoint_pfs_mtv_ml"]["provenance"]["carpet_version"]

    # the PDF: header, trailer, one page object per page (at least title + 3 figures)
    pdf = (out / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    n_pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf))
    assert n_pages >= 3  # a page carries at most one figure (the figure is the page canvas)
    assert re.search(rb"/Count\s+%d\b" % n_pages, pdf)
    assert b"SIMULATED" in pdf  # document metadata (Subject)

    # SIMULATED in every output
    assert doc["simulated"] is True and "SIMULATED" in doc["notice"]
    for csv in out.glob("*.csv"):
        table = pd.read_csv(csv)  # no comment line: a header row, then data; the last column says simulated
        assert table.columns[-1] == "simulated" and table["simulated"].eq(True).all(), csv.name
    assert "SIMULATED" in (out / "report.html").read_text(encoding="utf-8")


# ----------------------------------------------------------------------------------------------------------------
# derived endpoints, imaging, assessments
# ----------------------------------------------------------------------------------------------------------------
def _small_cohort(n=24, seed=3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2022-01-01") + pd.to_timedelta(rng.integers(0, 300, n), unit="D")
    days = rng.integers(20, 700, n)
    progressed = rng.random(n) < 0.6
    return pd.DataFrame({
        "patient_id": [f"P{i:03d}" for i in range(n)], "infusion_date": start,
        "progression_date": [s + pd.Timedelta(days=int(d)) if p else pd.NaT
                             for s, d, p in zip(start, days, progressed)],
        "last_followup_date": start + pd.to_timedelta(days + 30, unit="D"),
        "arm": np.where(np.arange(n) % 2 == 0, "A", "B"), "age_years": rng.integers(40, 80, n)})


def test_date_endpoint_and_imaging_merge_via_study_ids(tmp_path):
    patients = _small_cohort()
    imaging = pd.DataFrame({"study_id": [f"S{i}" for i in range(len(patients))],
                            "study_date": patients["infusion_date"] - pd.Timedelta(days=5),
                            "mtv_ml": np.linspace(5, 200, len(patients))})
    plan = {"title": "Dates", "endpoints": {"pfs": {"start": "infusion_date", "event_date": "progression_date",
                                                    "censor_date": "last_followup_date", "unit": "months"}},
            "imaging": {"ids": {f"S{i}": pid for i, pid in enumerate(patients["patient_id"])}},
            "derive": [{"name": "mtv_high", "cut": {"column": "mtv_ml", "above": 100}}],
            "analyses": [{"type": "km", "endpoint": "pfs", "by": "arm", "risk_times": [0, 6, 12]},
                         {"type": "cox", "endpoint": "pfs", "covariates": ["mtv_ml"]}]}
    result = run_analysis(patients, plan, tmp_path, imaging=imaging)
    end = patients["progression_date"].fillna(patients["last_followup_date"])
    months = (end - patients["infusion_date"]).dt.days / DAYS_PER_MONTH
    event = patients["progression_date"].notna().astype(int)
    a = (patients["arm"] == "A").to_numpy()
    km = kaplan_meier(months[a], event[a])
    assert result.results["km_pfs_arm"]["groups"]["A"]["median"] == pytest.approx(km.median)
    fit = cox(pd.DataFrame({"t": months, "e": event, "mtv_ml": imaging["mtv_ml"]}), "t", "e", ["mtv_ml"])
    assert result.results["cox_pfs"]["summary"][0]["coef"] == pytest.approx(fit.params["mtv_ml"])


def test_assessments_run_imwg_and_give_pfs(tmp_path):
    cohort = simulate_cohort("moffitt_post_cart", n=30, seed=5)
    paths = cohort.write(tmp_path / "cohort")
    from carpet.cohort.schema import read_patients
    from carpet.scores.imwg import assess_cohort

    plan = {"title": "IMWG", "assessments": {"pfs": "pfs_imwg"},
            "endpoints": {"os": {"derive": "os"}},
            "analyses": [{"type": "km", "endpoint": "pfs_imwg"}]}
    result = run_analysis(read_patients(paths["patients"]), plan, tmp_path / "out", assessments=paths["labs"])
    imwg = assess_cohort(paths["patients"], paths["labs"])
    progressed = imwg.progression["progression_date"].replace("", None).notna()
    # every patient of this cohort progressed (before any death): one PFS event each
    assert result.results["km_pfs_imwg"]["groups"]["All patients"]["events"] == int(progressed.sum())
    assert "imwg" in results_json(tmp_path / "out")["provenance"]


# ----------------------------------------------------------------------------------------------------------------
# bad plans
# ----------------------------------------------------------------------------------------------------------------
GOOD = {"title": "t", "endpoints": {"pfs": {"time": "t", "event": "e"}},
        "analyses": [{"type": "km", "endpoint": "pfs", "by": "arm"}]}


def test_bad_plan_lists_every_problem_with_its_key_path(tmp_path):
    plan = {"title": "t", "endpoints": {"pfs": {"time": "t", "event": "e"}, "os": {"start": "d0"}},
            "analyses": [{"type": "kaplan"}, {"type": "km", "endpoint": "pfs3"},
                         {"type": "cutpoint", "endpoint": "pfs", "marker": "x", "min_prop": "ten"},
                         {"type": "cox", "endpoint": "pfs", "covariates": ["x"], "colour": "red"}],
            "derive": [{"name": "z", "score": "unknown_score"}], "extra": 1}
    problems = validate_plan(plan)
    text = "\n".join(problems)
    for path in ("analyses[0].type", "analyses[1].endpoint", "analyses[2].min_prop", "analyses[3].colour",
                 "endpoints.os", "derive[0].score", "extra"):
        assert path in text, path
    assert "kaplan" in text and "pfs3" in text and "'ten'" in text
    df = pd.DataFrame({"patient_id": ["a", "b"], "t": [1.0, 2.0], "e": [1, 0], "x": [1.0, 2.0]})
    with pytest.raises(InputError) as err:
        run_analysis(df, plan, tmp_path)
    assert f"{len(problems)} problem(s)" in str(err.value) and "analyses[2].min_prop" in str(err.value)
    assert validate_plan(GOOD) == []


def test_missing_column_and_wrong_type_name_the_key(tmp_path):
    df = _small_cohort().assign(t=1.0, e=1)
    plan = {**GOOD, "analyses": [{"type": "km", "endpoint": "pfs", "by": "stage"},
                                 {"type": "table1", "by": "arm", "continuous": 5}]}
    with pytest.raises(InputError, match=r"analyses\[1\]\.continuous: expected a column name"):
        run_analysis(df, plan, tmp_path)
    plan["analyses"] = plan["analyses"][:1]
    with pytest.raises(InputError, match=r"analyses\[0\]\.by: column 'stage' not in the data"):
        run_analysis(df, plan, tmp_path)
    # a risk score whose inputs are absent is an error naming the derivation and the missing inputs
    scored = {**GOOD, "derive": [{"name": "ipi", "score": "IPI"}],
              "analyses": [{"type": "cox", "endpoint": "pfs", "covariates": ["ipi"]}]}
    with pytest.raises(InputError, match=r"derive\[0\]: 'ipi' has no value.*missing ldh_above_uln"):
        run_analysis(df, scored, tmp_path)
    # data that cannot support an analysis: the error still names the analysis in the plan
    plan["analyses"] = [{"type": "landmark", "endpoint": "pfs", "time": 5.0, "by": "arm"}]
    with pytest.raises(InputError, match=r"analyses\[0\] \(landmark\).*fewer than two groups"):
        run_analysis(df.assign(t=1.0), plan, tmp_path)
    assert not (tmp_path / "report.html").exists()


def test_bad_plan_via_cli_exits_1_with_message(tmp_path):
    df = _small_cohort().drop(columns=["progression_date", "last_followup_date"])
    df.to_csv(tmp_path / "patients.csv", index=False, date_format="%Y-%m-%d")
    (tmp_path / "plan.yaml").write_text("title: t\nendpoints: {pfs: {time: t, event: e}}\nanalyses:\n"
                                        "  - {type: forest, endpoint: pfs}\n")
    run = CliRunner().invoke(app, ["analyze", "--clinical", str(tmp_path / "patients.csv"), "--plan",
                                   str(tmp_path / "plan.yaml"), "--out", str(tmp_path / "out")])
    assert run.exit_code == 1
    assert "analyses[0].type" in run.output and "forest" in run.output


# ----------------------------------------------------------------------------------------------------------------
# identifiers
# ----------------------------------------------------------------------------------------------------------------
def test_identifier_columns_never_reach_outputs(tmp_path):
    df = _small_cohort(n=20).assign(t=np.linspace(1, 20, 20), e=[1, 0] * 10)
    df["name"] = [f"Zebedee Quux{i}" for i in range(len(df))]
    df["birth_date"] = "1901-02-03"
    df["mrn"] = [f"MRN77{i:04d}" for i in range(len(df))]
    plan = {**GOOD, "analyses": [{"type": "table1", "by": "arm", "continuous": ["age_years"]},
                                 {"type": "km", "endpoint": "pfs", "by": "arm"}]}
    result = run_analysis(df, plan, tmp_path / "out")
    assert any("mrn" in n and "dropped" in n for n in result.notes)
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file() and path.suffix in (".csv", ".json", ".html"):
            text = path.read_text(encoding="utf-8")
            assert "Zebedee" not in text and "MRN77" not in text and "1901-02-03" not in text, path.name
    bad = {**GOOD, "analyses": [{"type": "km", "endpoint": "pfs", "by": "mrn"}]}
    with pytest.raises(InputError, match="include-identifiers"):
        run_analysis(df, bad, tmp_path / "out2")


def test_cli_with_imaging_table_and_identifiers_kept_on_request(tmp_path):
    patients = _small_cohort(n=20).assign(t=np.linspace(1, 20, 20), e=[1, 0, 1, 1] * 5,
                                          mrn=[f"MRN55{i:03d}" for i in range(20)])
    patients.to_csv(tmp_path / "patients.csv", index=False, date_format="%Y-%m-%d")
    mtv = np.random.default_rng(8).uniform(3.0, 250.0, 20).round(2)
    # the imaging file knows studies only; the plan maps them to patients (one study left unmapped)
    pd.DataFrame({"study_id": [f"ST{i}" for i in range(20)] + ["ST-other"], "study_date": "2021-12-20",
                  "method": "suv4", "mtv_ml": [*mtv, 1.0]}).to_csv(tmp_path / "imaging.csv", index=False)
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump({
        "title": "MTV", "endpoints": {"pfs": {"time": "t", "event": "e"}},
        "imaging": {"ids": {f"ST{i}": pid for i, pid in enumerate(patients["patient_id"])}},
        "analyses": [{"type": "cox", "endpoint": "pfs", "covariates": ["mtv_ml"]}]}))
    args = ["analyze", "--clinical", str(tmp_path / "patients.csv"), "--imaging", str(tmp_path / "imaging.csv"),
            "--plan", str(tmp_path / "plan.yaml"), "--out", str(tmp_path / "out")]
    run = CliRunner().invoke(app, args + ["--include-identifiers"])
    assert run.exit_code == 0, run.output
    doc = results_json(tmp_path / "out")
    fit = cox(pd.DataFrame({"t": patients["t"], "e": patients["e"], "mtv_ml": mtv}), "t", "e", ["mtv_ml"])
    assert doc["analyses"]["cox_pfs"]["summary"][0]["hr"] == pytest.approx(fit.summary.loc["mtv_ml", "hr"])
    assert doc["provenance"]["identifiers_included"] is True
    assert re.fullmatch(r"[0-9a-f]{64}", doc["provenance"]["inputs"]["imaging"]["sha256"])
    assert doc["simulated"] is False and not (tmp_path / "out" / "cox_pfs.csv").read_text().startswith("#")
    assert not any("dropped" in n for n in doc["notes"])
    assert any("1 imaging row(s)" in n for n in doc["notes"])


def test_pdf_report_splits_long_tables_across_pages(tmp_path):
    import matplotlib.pyplot as plt

    from carpet.report.pdf import ROWS_PER_PAGE, PdfReport

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    rows = 3 * ROWS_PER_PAGE  # three pages of table, then the figure on a page of its own
    report = PdfReport("Pages", banner="SIMULATED").table(pd.DataFrame({"x": np.arange(rows)}), "long")
    path = report.figure(fig, "a line").write(tmp_path / "r.pdf")
    plt.close(fig)
    pdf = path.read_bytes()
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    assert len(re.findall(rb"/Type\s*/Page[^s]", pdf)) == 4


# ----------------------------------------------------------------------------------------------------------------
# reports a journal takes: files that open everywhere, one page size, numbers as results.json holds them
# ----------------------------------------------------------------------------------------------------------------
R_READ_CSV = """
args <- commandArgs(trailingOnly = TRUE)
for (f in args) {
  d <- read.csv(f, check.names = FALSE, stringsAsFactors = FALSE)
  cat(basename(f), nrow(d), paste(names(d), collapse = "\t"), class(d$simulated), sep = "|")
  cat("\n")
}
"""


@pytest.mark.parametrize("study", ["moffitt", "lbcl"])
def test_every_analysis_csv_reads_in_r_and_pandas_with_its_columns(study, request, tmp_path):
    import csv
    import shutil
    import subprocess

    _, _, out = request.getfixturevalue(study)
    files = sorted(out.glob("*.csv"))
    header = {f.name: next(csv.reader(f.open(encoding="utf-8"))) for f in files}
    for f in files:
        table = pd.read_csv(f)  # no comment= needed
        assert list(table.columns) == header[f.name] and len(table.columns) > 1, f.name
        assert table.columns[-1] == "simulated" and table["simulated"].all(), f.name
    if shutil.which("Rscript") is None:
        pytest.skip("Rscript is not installed: R's read.csv check not run (CI installs r-base)")
    script = tmp_path / "read.R"
    script.write_text(R_READ_CSV)
    run = subprocess.run(["Rscript", str(script), *map(str, files)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    got = {line.split("|")[0]: line.split("|") for line in run.stdout.splitlines()}
    for f in files:
        rows = len(pd.read_csv(f))
        assert got[f.name][1] == str(rows) and got[f.name][2].split("\t") == header[f.name], f.name
        assert got[f.name][3] == "logical", f.name  # TRUE, not Python's True, which R keeps as text


def test_xlsx_has_a_readme_and_one_formatted_sheet_per_table(lbcl):
    """tables.xlsx: README first (provenance, what each sheet is), then a sheet per table as the report shows
    it: labelled headers in bold and frozen, numbers stored as numbers in the report's decimals, intervals as
    text, columns as wide as their text, names ≤ 31 characters and unique."""
    import html as html_lib

    from openpyxl import load_workbook

    _, result, out = lbcl
    wb = load_workbook(out / "tables.xlsx")
    csvs = sorted(f.stem for f in out.glob("*.csv"))
    names = wb.sheetnames
    assert names[0] == "README" and len(names) == len(csvs) + 1 == len({n.lower() for n in names})
    assert all(len(n) <= 31 for n in names) and sorted(n[:31] for n in csvs) == sorted(names[1:])
    readme = "\n".join(str(v) for row in wb["README"].iter_rows(values_only=True) for v in row if v is not None)
    assert "carpet_version" in readme and "TRUE" in readme and "sha256" in readme
    assert all(f"{stem}.csv" in readme for stem in csvs)
    report = html_lib.unescape(re.sub(r"</?span[^>]*>", "", (out / "report.html").read_text()))
    km = wb["km_pfs_ipi_group"]
    header = [c.value for c in km[1]]
    assert header[:4] == ["Group", "n", "Events", "Median, months (95% CI)"]  # the report's labels
    assert all(c.font.bold for c in km[1]) and km.freeze_panes == "A2"
    groups = result.results["km_pfs_ipi_group"]["groups"]
    for row in km.iter_rows(min_row=2):
        g = groups[row[0].value]
        assert (row[1].value, row[2].value) == (g["n"], g["events"])  # numbers, not text
        assert isinstance(row[3].value, str) and f"<td>{row[3].value}</td>" in report  # as printed
    assert km.column_dimensions["D"].width >= len("Median, months (95% CI)")
    p_cells = [r[3] for r in wb["cox_pfs"].iter_rows(min_row=2) if r[3].value is not None]
    assert p_cells and all(isinstance(c.value, float) for c in p_cells)
    for c in p_cells:  # the same decimals as the report shows
        assert f"<td>{c.value:.{len(c.number_format.split('.')[1])}f}</td>" in report


def _media_boxes(pdf: bytes) -> list[tuple[float, ...]]:
    return [tuple(float(v) for v in m.split()) for m in re.findall(rb"/MediaBox\s*\[([^\]]*)\]", pdf)]


@pytest.mark.parametrize("study", ["moffitt", "lbcl"])
def test_no_figure_legend_covers_data(study, request):
    """Every figure of the run was checked as drawn (legend boxes against lines, bands, markers, patches)."""
    _, _, out = request.getfixturevalue(study)
    checks = results_json(out)["figure_checks"]
    assert len(checks) == len(list((out / "figures").glob("*.png"))) >= 1
    assert {stem: c["legend_covers_data"] for stem, c in checks.items() if c["legend_covers_data"]} == {}


@pytest.mark.parametrize("study", ["moffitt", "lbcl"])
def test_pdf_pages_all_a4_and_figures_vector(study, request):
    _, _, out = request.getfixturevalue(study)
    pdf = (out / "report.pdf").read_bytes()
    boxes = _media_boxes(pdf)
    assert len(boxes) == len(re.findall(rb"/Type\s*/Page[^s]", pdf)) >= 2
    assert set(boxes) == {(0.0, 0.0, 595.44, 841.68)}  # A4, every page
    assert b"/Subtype /Image" not in pdf  # KM curves and Sankey ribbons drawn as vectors, not pasted PNGs


def test_pdf_letter_pages_and_table_cells_never_overflow(tmp_path):
    from carpet.report.pdf import CELL_PAD_PT, PdfReport, layout_table, text_width_pt

    wide = pd.DataFrame({f"column number {k} with a long header": [f"value {k} " * (k + 1), "NR (2.1–NR)"]
                         for k in range(9)})
    layout = layout_table(list(wide.columns), wide.to_numpy().tolist(), 523.0)
    assert sum(layout.widths) <= 523.0 + 1e-6
    for r, row in enumerate(layout.lines):
        for width, lines in zip(layout.widths, row):
            assert all(text_width_pt(ln, layout.font_size, bold=r == 0) <= width - 2 * CELL_PAD_PT + 1e-6
                       for ln in lines)
    assert " ".join(layout.lines[1][8]).split() == wide.iloc[0, 8].split()  # wrapped, nothing cut
    path = PdfReport("Letter", page_size="Letter").table(wide, "wide").write(tmp_path / "letter.pdf")
    assert set(_media_boxes(path.read_bytes())) == {(0.0, 0.0, 612.0, 792.0)}


@pytest.mark.parametrize("study", ["moffitt", "lbcl"])
def test_every_number_of_every_html_table_is_a_results_json_number(study, request):
    """Table 1 cells, S(t), medians, HRs, C-index and CIs, rates, AUCs, transitions ... (tests/_report_checks.py)."""
    from _report_checks import raw_labels, unexplained_figure_numbers, unexplained_numbers

    _, _, out = request.getfixturevalue(study)
    problems, found = unexplained_numbers(results_json(out), out / "report.html")
    assert problems == [] and found >= 100, "\n".join(problems)
    problems, found = unexplained_figure_numbers(results_json(out))  # legends, numbers at risk, flow counts
    assert problems == [] and found >= 20, "\n".join(problems)
    hits = raw_labels(out)  # and no heading, header, group or figure text shows a raw column name
    assert hits == [], "\n".join(hits)


def test_html_numbers_are_results_json_numbers(moffitt, lbcl):
    """Each KM row (n, events, median and CI), each log-rank p, each Cox HR and each AIC shown in the HTML is
    results.json's number printed by the formatting policy."""
    import html as html_lib

    from carpet.report import format as fmt

    for _, _, out in (moffitt, lbcl):
        doc = results_json(out)
        text = html_lib.unescape(re.sub(r'</?span[^>]*>', "", (out / "report.html").read_text()))  # no-wrap spans
        cells = re.findall(r"<td>(.*?)</td>", text)
        checked = 0
        for res in doc["analyses"].values():
            for name, g in res.get("groups", {}).items():
                median = f"{fmt.time_value(g['median'])} ({fmt.time_value(g['median_lower'])}–" \
                         f"{fmt.time_value(g['median_upper'])})"
                start = text.index(f"({res['files'][0]})")  # this analysis' table: after its caption
                row = re.compile(rf"<td>{re.escape(name)}</td>\s*<td>(\d+)</td>\s*<td>(\d+)</td>\s*<td>(.*?)</td>"
                                 ).search(text, start)
                assert row and row.groups() == (str(g["n"]), str(g["events"]), median), name
                checked += 1
            if "logrank" in res:
                assert fmt.p_equals(res["logrank"]["p_value"]) + "." in text
            for term in res.get("summary", []) if res["type"] == "cox" else []:
                assert fmt.estimate_ci(term["hr"], term["hr_lower"], term["hr_upper"]) in cells
            for model in res.get("summary", []) if res["type"] == "compare_models" else []:
                assert fmt.fit_statistic(model["aic"]) in cells
        assert checked >= 2
        assert "= <" not in text and "<NA>" not in text


# ----------------------------------------------------------------------------------------------------------------
# the plan language: 0/1 codes, raw-table needs, --describe
# ----------------------------------------------------------------------------------------------------------------
def test_zero_one_codes_are_read_as_false_true_and_other_codes_refused(tmp_path):
    df = pd.DataFrame({"patient_id": list("abcdef"), "t": [1.0, 2, 3, 4, 5, 6], "e": [1, 0, 1, 1, 0, 1],
                       "emd": [1, 0, 1, 0, 0, 1], "hb_g_dl": [9.9, 10.0, 12, 8, 11, 10.1]})
    plan = {"title": "t", "endpoints": {"pfs": {"time": "t", "event": "e"}},
            "derive": [{"name": "emd_group", "labels": {"column": "emd", "values": {True: "EMD", False: "No EMD"}}},
                       {"name": "anemia", "cut": {"column": "hb_g_dl", "below": 10}}],
            "analyses": [{"type": "km", "endpoint": "pfs", "by": "emd_group"},
                         {"type": "proportion", "column": "anemia"}]}
    res = run_analysis(df, plan, tmp_path / "ok").results
    assert {g: r["n"] for g, r in res["km_pfs_emd_group"]["groups"].items()} == {"EMD": 3, "No EMD": 3}
    assert res["proportion_anemia"]["rows"][0]["k"] == 2          # 9.9 and 8 are below 10; 10.0 is not
    bad = df.assign(emd=[1, 0, 2, 0, 0, 1])                      # 2 is no code of a yes/no column
    with pytest.raises(InputError, match=r"holds \['0', '1', '2'\], which the labels do not name"):
        run_analysis(bad, plan, tmp_path / "bad")


def test_any_of_is_true_when_one_is_true_false_when_all_are_false_else_unknown():
    from carpet.analyze.derive import _derive

    df = pd.DataFrame({"gain1q": pd.array([True, False, None, None, False], dtype="boolean"),
                       "del1p32": pd.array([None, False, True, None, None], dtype="boolean")})
    out, rec = _derive(df, {"name": "chr1", "any_of": ["gain1q", "del1p32"]}, "derive[0]")
    assert out["chr1"].tolist() == [True, False, True, pd.NA, pd.NA] and rec["any_of"] == ["gain1q", "del1p32"]
    assert validate_plan({"title": "t", "endpoints": {"p": {"time": "t", "event": "e"}},
                          "derive": [{"name": "x", "any_of": "gain1q"}],
                          "analyses": [{"type": "km", "endpoint": "p"}]}) == ["derive[0].any_of: expected a list "
                                                                              "of columns"]


def test_population_restricts_every_analysis_but_the_flowchart(tmp_path):
    df = pd.DataFrame({"patient_id": list("abcdef"), "t": [1.0, 2, 3, 4, 5, 6], "e": [1, 0, 1, 1, 0, 1],
                       "progressed": [1, 1, 0, 1, None, 1], "grp": list("xyxyxy")})
    plan = {"title": "t", "endpoints": {"pfs": {"time": "t", "event": "e"}}, "population": "progressed",
            "analyses": [{"type": "km", "endpoint": "pfs", "by": "grp"}]}
    res = run_analysis(df, plan, tmp_path / "ok")
    assert {g: r["n"] for g, r in res.results["km_pfs_grp"]["groups"].items()} == {"x": 1, "y": 3}
    assert "the 4 of 6 patients with progressed true" in " ".join(res.notes)
    with pytest.raises(InputError, match=r"population: column 'progressed' holds \['2'\]"):
        run_analysis(df.assign(progressed=[1, 2, 0, 1, 0, 1]), plan, tmp_path / "bad")
    with pytest.raises(InputError, match="population: column 'nope' not in the data"):
        run_analysis(df, {**plan, "population": "nope"}, tmp_path / "none")
    assert validate_plan({**plan, "population": 3}) == [
        "population: expected the name of a true/false column (e.g. a derived 'progressed')"]


def test_raw_table_derivations_say_which_table_is_missing(tmp_path):
    df = pd.DataFrame({"patient_id": ["a", "b"], "infusion_date": pd.to_datetime(["2024-01-01"] * 2)})
    plan = {"title": "t", "endpoints": {"pfs2": {"derive": "pfs2"}},
            "derive": [{"name": "first", "first_line_after": "progression"}],
            "analyses": [{"type": "km", "endpoint": "pfs2"}]}
    with pytest.raises(InputError) as err:
        run_analysis(df, plan, tmp_path)
    assert "endpoints.pfs2.derive: pfs2 needs progression dates" in str(err.value)
    assert "derive[0].first_line_after: needs the therapies table" in str(err.value)
    assert validate_plan({**plan, "endpoints": {"x": {"derive": "pfs3"}}})[0].startswith("endpoints.x.derive")


def test_describe_lists_the_raw_inputs_of_a_plan():
    from carpet.analyze import describe_plan, required_inputs

    need = required_inputs(example_plan("moffitt_post_progression"))
    by_table = need.groupby("table")["column"].apply(set)
    assert {"infusion_date", "death_date", "last_followup_date", "involved_light_chain", "hb_g_dl", "del17p",
            "emd_baseline"} <= by_table["patients"]
    assert "pfs2_months" not in by_table["patients"] and "anemia" not in by_table["patients"]  # derived, not input
    assert {"assessments", "therapies"} <= set(by_table.index)
    run = CliRunner().invoke(app, ["analyze", "--plan", str(PLANS / "salvage_after_bcma.yaml"), "--describe"])
    assert run.exit_code == 0 and "therapies table (--therapies)" in run.output and "regimen" in run.output
    assert "assessments table" in describe_plan(PLANS / "moffitt_post_progression.yaml")
    # a column the cohort schema does not document is described by the plan's own variables label
    text = describe_plan(PLANS / "certainty_mtv.yaml")
    lines = text.splitlines()
    assert any(line.split()[:3] == ["metcr_day30", "true/false", "(0/1"] for line in lines)
    # a windowed imaging column is asked of the imaging table, with the window that picks its scan
    imaging = text.split("imaging table (--imaging):")[1]
    assert "mtv_ml_suv4  metabolic tumour volume (mL), suv4 (number), of the last scan -60 to 0 days" in imaging
    assert "study_date" in imaging and "emd_baseline" not in imaging
    assert all(len(line.split()) > 2 for line in lines if line.startswith("  "))   # no column without a text


def test_imaging_windows_pick_scans_by_days_from_infusion_and_cutoff_method_is_checked(tmp_path):
    patients = pd.DataFrame({"patient_id": ["a", "b", "c", "d"], "infusion_date": pd.to_datetime(["2024-03-01"] * 4),
                             "t": [12.0, 3.0, 8.0, 20.0], "e": [1, 1, 1, 0]})
    scans = pd.DataFrame({
        "study_id": ["a0", "a1", "a2", "b0", "b30", "c-90", "c0", "d0"], "patient_id": list("aaabbccd"),
        "study_date": pd.to_datetime(["2024-01-10", "2024-02-20", "2024-03-20", "2024-02-25", "2024-04-10",
                                      "2023-12-01", "2024-03-01", "2024-02-28"]),
        "method": ["suv4"] * 8, "mtv_ml": [1.0, 2.0, 3.0, 40.0, 4.0, 900.0, 60.0, 80.0]})
    plan = {"title": "t", "endpoints": {"pfs": {"time": "t", "event": "e"}}, "imaging": {"windows": "default"},
            "analyses": [{"type": "cutoff", "endpoint": "pfs", "marker": "mtv_ml_baseline", "value": 50,
                          "cutoff_method": "suv4"}]}
    run_analysis(patients, plan, tmp_path / "ok", imaging=scans)
    doc = results_json(tmp_path / "ok")
    # baseline = last scan 60 days before to the infusion day: a -> 2.0 (Jan 10 is 51 days before, Feb 20 is 10),
    # b -> 40, c -> 60 (the December scan is 91 days before), d -> 80; day30 = first scan 14-45 days after
    assert any("'baseline'" in n and "4 of 4" in n for n in doc["notes"])
    assert any("'day30'" in n and "2 of 4" in n for n in doc["notes"])
    cut = doc["analyses"]["cutoff_pfs_mtv_ml_baseline"]
    assert (cut["n_low"], cut["n_high"]) == (2, 2) and not cut["warnings"]  # 2.0, 40 | 60, 80; methods agree
    # the data say pct41: a suv4 cut-off must not run silently on it
    with pytest.raises(InputError, match="derived with method 'suv4' but the marker was made with 'pct41'"):
        run_analysis(patients, plan, tmp_path / "bad", imaging=scans.assign(method="pct41"))
    with pytest.raises(InputError, match="the plan says the marker was made with 'suv4'"):
        bad = {**plan, "analyses": [{**plan["analyses"][0], "marker_method": "suv4"}]}
        run_analysis(patients, bad, tmp_path / "bad2", imaging=scans.assign(method="pct41"))


def test_cox_with_a_diverging_coefficient_still_reports_with_rs_warning(tmp_path):
    # one covariate whose group B has no events: R warns "Loglik converged before variable 1; coefficient may
    # be infinite." and reports; carpet used to raise "information matrix is singular" and write nothing
    df = _small_cohort().assign(t=np.arange(1.0, 25.0))
    df["e"] = np.where(df["arm"] == "B", 0, 1)
    plan = {**GOOD, "analyses": [{"type": "cox", "endpoint": "pfs", "covariates": ["arm"]}]}
    run_analysis(df, plan, tmp_path)
    res = results_json(tmp_path)["analyses"]["cox_pfs"]
    assert res["warnings"] == ["Loglik converged before variable 1; coefficient may be infinite."]
    assert res["summary"][0]["infinite"] is True
    assert [r["term"] for r in res["zph"]] == ["arm", "GLOBAL"]
    assert "coefficient may be infinite" in (tmp_path / "report.html").read_text()


def test_flowchart_counts_from_progression_dates(tmp_path):
    """Refractory = progression within 60 days of infusion (inclusive), relapsed later, by product; a figure."""
    df = pd.DataFrame({"patient_id": list("abcde"), "infusion_date": pd.to_datetime(["2024-01-01"] * 5),
                       "product": ["ide-cel", "ide-cel", "cilta-cel", "cilta-cel", "ide-cel"],
                       "progression_date": pd.to_datetime(["2024-03-01", "2024-03-02", "2024-06-01", None,
                                                           "2024-01-20"])})  # day 60, day 61, later, none, day 19
    plan = {"title": "t", "endpoints": {"pfs": {"derive": "pfs"}}, "analyses": [{"type": "flowchart", "by": "product"}]}
    res = run_analysis(df.assign(last_followup_date=pd.Timestamp("2024-12-31")), plan, tmp_path).results["flowchart"]
    counts = {r["stage"]: (r["all"], r["ide-cel"], r["cilta-cel"]) for r in res["counts"]}
    assert counts == {"treated": (5, 3, 2), "progressed": (4, 3, 1), "refractory": (2, 2, 0), "relapsed": (2, 1, 1)}
    assert (tmp_path / "figures" / "flowchart.png").is_file()


def test_cutoff_on_a_per_method_column_takes_its_method_from_the_name(tmp_path):
    """imaging.csv's main ``method`` is suv4, but ``mtv_ml_pct41`` is a pct41 MTV: a suv4 cut-off on it must be refused
    (reading the ``method`` column would have let it run), and on ``mtv_ml_suv4`` it runs without a method warning."""
    patients = pd.DataFrame({"patient_id": list("abcd"), "infusion_date": pd.to_datetime(["2024-03-01"] * 4),
                             "t": [12.0, 3.0, 8.0, 20.0], "e": [1, 1, 1, 0]})
    scans = pd.DataFrame({"study_id": list("ABCD"), "patient_id": list("abcd"),
                          "study_date": pd.to_datetime(["2024-02-20"] * 4), "method": ["suv4"] * 4,
                          "mtv_ml_suv4": [10.0, 30.0, 70.0, 90.0], "mtv_ml_pct41": [12.0, 33.0, 75.0, 99.0]})

    def plan(marker, **extra):
        return {"title": "t", "endpoints": {"pfs": {"time": "t", "event": "e"}},
                "imaging": {"windows": {"baseline": {"from_days": -60, "to_days": 0, "pick": "last"}}},
                "analyses": [{"type": "cutoff", "endpoint": "pfs", "marker": marker, "value": 50,
                              "cutoff_method": "suv4", **extra}]}

    run_analysis(patients, plan("mtv_ml_suv4_baseline"), tmp_path / "ok", imaging=scans)
    cut = results_json(tmp_path / "ok")["analyses"]["cutoff_pfs_mtv_ml_suv4_baseline"]
    assert (cut["n_low"], cut["n_high"]) == (2, 2) and not cut["warnings"]
    with pytest.raises(InputError, match="derived with method 'suv4' but the marker was made with 'pct41'"):
        run_analysis(patients, plan("mtv_ml_pct41_baseline"), tmp_path / "bad", imaging=scans)
    with pytest.raises(InputError, match="its column 'mtv_ml_pct41_baseline' holds 'pct41' values"):
        run_analysis(patients, plan("mtv_ml_pct41_baseline", marker_method="suv4"), tmp_path / "bad2", imaging=scans)


@pytest.mark.parametrize("codes", [(0, 1), (False, True)])
def test_cox_reference_of_a_two_level_covariate_is_the_one_the_row_names(tmp_path, codes):
    """``reference: 1`` on a 0/1 (or true/false) covariate: the HR is 0 vs 1, as the row says — the inverse of
    the HR per unit of the raw column (R: coxph(Surv(t, e) ~ I(1 - x)) gives 1/HR, CI limits swapped)."""
    rng = np.random.default_rng(5)
    n = 60
    x = rng.random(n) < 0.5
    t = rng.exponential(np.where(x, 6.0, 14.0))
    df = pd.DataFrame({"patient_id": [f"p{i}" for i in range(n)], "t": t, "e": (rng.random(n) < 0.8).astype(int),
                       "emd": np.where(x, codes[1], codes[0])})
    raw = cox(df, duration="t", event="e", covariates=["emd"]).summary.iloc[0]  # HR of 1 vs 0
    plan = {"title": "t", "endpoints": {"pfs": {"time": "t", "event": "e"}},
            "variables": {"emd": {"label": "EMD", "levels": {codes[0]: "No EMD", codes[1]: "EMD"},
                                  "reference": codes[1]}},
            "analyses": [{"type": "cox", "endpoint": "pfs", "covariates": ["emd"]}]}
    run_analysis(df, plan, tmp_path)
    row = results_json(tmp_path)["analyses"]["cox_pfs"]["summary"][0]
    assert row["hr"] == pytest.approx(1 / raw["hr"], rel=1e-6)
    assert (row["hr_lower"], row["hr_upper"]) == pytest.approx((1 / raw["hr_upper"], 1 / raw["hr_lower"]), rel=1e-6)
    html = (tmp_path / "report.html").read_text()
    assert "<td>No EMD vs EMD (reference)</td>" in html
    # without the plan's reference the HR is 1 vs 0 and the row says so
    plan["variables"]["emd"].pop("reference")
    run_analysis(df, plan, tmp_path / "default")
    assert results_json(tmp_path / "default")["analyses"]["cox_pfs"]["summary"][0]["hr"] == pytest.approx(raw["hr"])
    assert "<td>EMD vs No EMD (reference)</td>" in (tmp_path / "default" / "report.html").read_text()


def test_cutoff_heading_states_the_cut_off_with_its_unit():
    from carpet.analyze.labels import Labels
    from carpet.analyze.plan import _default_title

    item = {"type": "cutoff", "endpoint": "pfs", "marker": "mtv_ml_suv4_baseline", "value": 54.3}
    labels = Labels({"mtv_ml_suv4_baseline": {"label": "MTV", "unit": "mL"}})
    assert _default_title(item, {"pfs": {"label": "PFS from infusion"}}, labels) == "PFS from infusion by MTV > 54.3 mL"
    unitless = Labels({"score": {"label": "Score"}})
    assert _default_title({**item, "marker": "score", "value": 3}, {"pfs": {"label": "PFS"}}, unitless) == \
        "PFS by Score > 3"
