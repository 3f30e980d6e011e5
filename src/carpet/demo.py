"""``carpet demo``: the whole of carpet on simulated data, in one command.

It simulates the four published cohorts carpet is built to reproduce, builds PET/CT phantoms for
some of their patients, quantifies them as ``carpet quantify`` would, measures the baseline MTV of every
PET patient of the cohorts whose analyses use it with ``carpet batch``, derives IMWG progression from
simulated lab series, runs the papers' analyses from carpet's packaged plans, and writes everything — CSV
tables, figures and one self-contained ``index.html`` — into the output folder. Every file says it
is simulated.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from carpet import __version__
from carpet.provenance import provenance
from carpet.report.html import Report
from carpet.io.tables import write_csv

SIMULATED = "SIMULATED DATA — made by carpet.synth for demonstration; not patients."


def run_demo(out_dir: str | Path, *, seed: int = 2025, small: bool = False,
             console: Console | None = None) -> Path:
    """Run the demo and return the path of ``index.html``.

    Parameters
    ----------
    out_dir : path
        Output folder (created; existing demo files are overwritten).
    seed : int
        Seed for every simulation (same seed, same outputs).
    small : bool
        Fewer and smaller phantoms in section 2 (the MTV measurement of section 3 is the same).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    console = console or Console(stderr=True)
    report = Report("carpet demo: PET/CT and outcomes after CAR T-cell therapy",
                    subtitle=f"{SIMULATED} Seed {seed}; carpet {__version__}.")
    report.note(SIMULATED)
    steps = [("Simulating cohorts", _cohorts), ("Quantifying phantom PET/CT studies", _imaging),
             ("Measuring baseline MTV (carpet batch)", _measured_imaging),
             ("IMWG progression", _imwg), ("Published analyses", _analyses)]
    state: dict = {"out": out, "seed": seed, "small": small, "report": report}
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        task = progress.add_task("carpet demo", total=len(steps))
        for description, step in steps:
            progress.update(task, description=description)
            step(state)
            progress.advance(task)
    report.provenance = provenance(command="carpet demo", seed=seed, small=small, simulated=True)
    return report.write(out / "index.html")


# ---------------------------------------------------------------------------------------------
# steps (each adds one section to the report and writes its files)
# ---------------------------------------------------------------------------------------------
def _cohorts(state: dict) -> None:
    from carpet.synth.cohort import STUDIES, simulate_cohort

    report, out = state["report"], state["out"]
    cohorts, rows, files = {}, [], []
    for study in STUDIES:
        cohort = simulate_cohort(study, seed=state["seed"])
        cohorts[study] = cohort
        paths = cohort.write(out / "cohorts" / study)
        files += [(str(p.relative_to(out)), f"{study}: {name}") for name, p in paths.items()]
        rows.append({"study": study, "patients": len(cohort.patients),
                     "description": STUDIES[study].description})
    state["cohorts"] = cohorts
    report.section("1. Simulated cohorts")
    report.text("Four cohorts calibrated to the published studies carpet reproduces (targets and their "
                "sources in each cohort.json). Where a cohort has raw tables (patients.csv without the simulator's "
                "answers, labs.csv, therapies.csv), its plan derives every endpoint from them; truth.csv holds the "
                "simulator's own answers to check against.")
    report.table(pd.DataFrame(rows), caption="Cohorts")
    report.files(files)


def _imaging(state: dict) -> None:
    from carpet.quantify import run_quantify
    from carpet.report.mip import informative_index, mip_figure
    from carpet.synth.phantom import make_phantom

    report, out, small = state["report"], state["out"], state["small"]
    cohort = state["cohorts"]["certainty_pet"]
    pet_patients = cohort.patients.dropna(subset=["mtv_ml"])
    chosen = pet_patients.sort_values("mtv_ml")["patient_id"].iloc[:: max(1, len(pet_patients) // (3 if small else 6))]
    rows, mips = [], []
    for pid in chosen:
        spec = cohort.phantom_spec(pid, small=small)
        # the full demo's phantoms look like FDG scans: physiology, PSF and noise (issue 11)
        phantom = make_phantom(spec if small else spec.with_physiology())
        study_dir = out / "studies" / pid
        paths = phantom.write_nifti(study_dir / "input")
        result = run_quantify(paths["pet"], ct_path=paths["ct"], out_dir=study_dir / "quantify", method="suv4",
                              staged=False)   # the demo's whole output is staged
        truth = phantom.truth["lesions"]
        s = result.summary
        rows.append({"patient_id": pid, "n_lesions": s["n_lesions"], "truth_n_lesions": len(truth),
                     "truth_suv_min": min(les["suv"] for les in truth), "mtv_ml": s["mtv_ml"],
                     "truth_mtv_ml": sum(les["volume_ml"] for les in truth),
                     "truth_physiology_ml": phantom.truth.get("physiology_summary", {}).get("hot_volume_ml", 0.0),
                     "tlg": s["tlg"], "suv_max": s["suv_max"],
                     "dmax_mm": s["dmax_mm"], "n_bone": s.get("n_bone"),
                     "n_paramedullary": s.get("n_paramedullary"),
                     "n_extramedullary": s.get("n_extramedullary")})
        mips.append((phantom.pet, result.labels, dict(zip(result.lesions["lesion_id"], result.lesions["site"])),
                     result.excluded, pid, {"n_sites": result.lesions["site"].nunique(), "n_lesions": s["n_lesions"],
                                            "mtv_ml": s["mtv_ml"]}))
    counts = ("n_lesions", "truth_n_lesions", "n_bone", "n_paramedullary", "n_extramedullary")
    table = pd.DataFrame(rows).astype({c: "Int64" for c in counts})  # whole numbers even beside a missing value
    write_csv(table, out / "imaging.csv")
    report.section("2. PET/CT phantoms quantified (SUV ≥ 4.0, 26-connected)")
    report.text("Digital PET/CT phantoms built for CERTAINTY-like patients (lesions reflecting each patient's "
                "MTV, bone, paramedullary and extramedullary disease), written as NIfTI and measured with "
                "`carpet quantify`. Columns marked (truth) are the phantom's design (exact voxel counts); a lesion "
                "whose designed SUV is below 4.0 is, correctly, not found by the SUV ≥ 4.0 method."
                 + ("" if small else " These phantoms also carry FDG physiology (brain, myocardium, kidneys, "
                    "ureters, bladder, bowel, salivary glands), a 6.5 mm PSF and Poisson-like noise. `carpet "
                    "quantify` excludes the physiology its rules recognise (excluded.csv of each study); the "
                    "physiology (truth) column is the phantom's physiology at SUV ≥ 4, so the gap between the "
                    "measured and the true MTV is physiology the rules left in, plus blurred lesion edges."))
    report.table(table.rename(columns=_IMAGING_NAMES), caption="Study measures (imaging.csv; truth: the phantom's "
                 "design)", float_format="{:.2f}")
    pet, labels, sites, excluded, pid, _ = mips[informative_index([m[-1] for m in mips])]  # most sites, lesions, MTV
    report.figure(mip_figure(pet, labels, sites, title=f"{pid} (simulated)", excluded=excluded),
                  f"Maximum-intensity projections of {pid}, the study with the most lesion sites among those "
                  "quantified; lesion outlines coloured by site"
                  + ("; dashed: uptake carpet excluded as physiological (excluded.csv)" if excluded is not None
                     else "")
                  + "; grey scale SUV 0–6 g/mL.")
    report.files([("imaging.csv", "one row per study: the measures in the table above")]
                 + [(f"studies/{pid}/", f"{pid}: input/ (PET, CT, lesion masks as NIfTI, truth.json) and quantify/ "
                     "(lesions.csv, summary.json, lesions.nii.gz)") for pid in chosen])


#: imaging.csv columns as the report heads them
_IMAGING_NAMES = {"patient_id": "Study", "n_lesions": "Lesions", "truth_n_lesions": "Lesions (truth)",
                  "truth_suv_min": "Lowest lesion SUV (truth)", "mtv_ml": "MTV (mL)", "truth_mtv_ml": "MTV (mL, truth)",
                  "truth_physiology_ml": "Physiology above SUV 4 (mL, truth)",
                  "tlg": "TLG (mL·SUV)", "suv_max": "SUVmax", "dmax_mm": "Dmax (mm)", "n_bone": "Bone",
                  "n_paramedullary": "Paramedullary", "n_extramedullary": "Extramedullary"}


#: Cohorts whose plans take the baseline MTV from an imaging table: the demo measures it with ``carpet batch``.
MEASURED_IMAGING = ("certainty_pet", "lbcl_mtv")


def _measured_imaging(state: dict) -> None:
    """Baseline PET/CT phantoms of every PET patient of the cohorts whose plans use MTV, quantified by ``carpet
    batch`` (2 workers, ``--studies``); the plans merge the batch's imaging.csv by scan date (section 5)."""
    from carpet.batch import BatchOptions, run_batch
    from carpet.io import write_nifti
    from carpet.synth.phantom import make_phantom

    report, out = state["report"], state["out"]
    rows, files, state["imaging"] = [], [], {}
    for study in MEASURED_IMAGING:
        cohort, base = state["cohorts"][study], out / "measured" / study
        scans = cohort.baseline_scans()
        truth = {}
        for scan in scans.itertuples(index=False):
            phantom = make_phantom(cohort.mtv_phantom_spec(scan.patient_id))
            folder = base / "scans" / scan.study_id
            write_nifti(phantom.pet, folder / "pet.nii.gz")   # no lesion mask: batch segments at SUV >= 4
            write_nifti(phantom.ct, folder / "ct.nii.gz")
            (folder / "truth.json").write_text(json.dumps(phantom.truth, indent=2))   # batch ignores it
            truth[scan.study_id] = phantom.truth["summary"]["mtv_ml"]
        write_csv(scans, base / "studies.csv")
        result = run_batch(base / "scans", base / "batch", workers=2, options=BatchOptions(method="suv4"),
                           studies_table=base / "studies.csv", progress=False)
        state["imaging"][study] = result.paths["imaging"]
        measured = pd.read_csv(result.paths["imaging"]).set_index("study_id")["mtv_ml_suv4"]
        simulated = scans.set_index("study_id")["patient_id"].map(cohort.patients.set_index("patient_id")["mtv_ml"])
        rows.append({"cohort": study, "baseline scans": len(scans), "measured": int(measured.notna().sum()),
                     "median MTV (mL), measured": measured.median(), "median MTV (mL), simulated": simulated.median(),
                     "largest |measured − phantom truth| (mL)": (measured - pd.Series(truth)).abs().max(),
                     "largest |measured − simulated| / simulated": ((measured - simulated).abs() / simulated).max()})
        files += [(f"measured/{study}/batch/imaging.csv", f"{study}: the measured imaging.csv the plan reads"),
                  (f"measured/{study}/studies.csv", f"{study}: study_id, patient_id, study_date (--studies)")]
    report.section("3. Baseline MTV measured on phantoms (`carpet batch`)")
    report.text("The MTV the CERTAINTY and LBCL analyses use is measured here, not taken from the simulator: each "
                "patient with a baseline PET gets a PET/CT phantom (6 mm voxels, no physiology or noise) whose "
                "soft-tissue spheres hold the patient's simulated MTV, dated 3–28 days before the infusion; "
                "`carpet batch --workers 2 --method suv4 --studies studies.csv` measures them all, and the plans "
                "merge its imaging.csv by scan date (baseline: the last scan in the 60 days before infusion, "
                "column `mtv_ml_suv4_baseline`). SUV ≥ 4 finds exactly the spheres' voxels, so the measured MTV "
                "equals the phantom's truth; it differs from the simulated MTV by the voxelisation of the spheres. "
                "Only the volume is the patient's: the spheres stand in soft tissue whatever the disease's sites.")
    report.table(pd.DataFrame(rows), caption="Measured vs simulated baseline MTV", float_format="{:.2f}")
    report.files(files)


def _imwg(state: dict) -> None:
    """IMWG 2016 progression derived from the Moffitt-like cohort's simulated lab series."""
    from carpet.scores.imwg import assess_cohort

    report, out = state["report"], state["out"]
    cohort = state["cohorts"]["moffitt_post_cart"]
    labs = out / "cohorts" / "moffitt_post_cart" / "labs.csv"
    result = assess_cohort(cohort.raw_patients, labs)  # every treated patient (Figure 1), progressed or not
    files = result.write(out / "imwg")
    derived = pd.to_datetime(result.progression.set_index("patient_id")["progression_date"].replace("", None))
    simulated = pd.to_datetime(cohort.treated.set_index("patient_id")["progression_date"])
    derived = derived.reindex(simulated.index)
    agree = ((derived == simulated) | (derived.isna() & simulated.isna())).sum()
    report.section("4. IMWG 2016 progression from lab series (Moffitt-like cohort)")
    report.text(f"`carpet imwg` derived response and progression for {len(simulated)} patients from "
                f"{len(pd.read_csv(labs))} simulated lab values; the derived progression date equals the "
                f"simulated one (or both have none) for {agree} of {len(simulated)} patients; "
                f"{int(simulated.notna().sum())} progressed.")
    contract = ["patient_id", "best_response", "progression_date", "progression_confirmed", "refractory"]
    report.table(result.progression[contract].head(8), caption="progression.csv (first rows; contract columns)")
    report.files([(str(Path(p).relative_to(out)), name) for name, p in files.items()])


#: (cohort, packaged analysis plan) pairs the demo runs with ``carpet analyze``
DEMO_PLANS = [("moffitt_post_cart", "moffitt_post_progression.yaml"),
              ("certainty_pet", "certainty_mtv.yaml"),
              ("lbcl_mtv", "lbcl_mtv_vs_ipi.yaml"),
              ("salvage_post_bcma", "salvage_after_bcma.yaml")]


def _analyses(state: dict) -> None:
    """The published studies' analyses, run from carpet's packaged plans (``carpet analyze``)."""
    from carpet.analyze import run_analysis
    from carpet.synth.cohort import STUDIES

    report, out = state["report"], state["out"]
    plans = Path(__file__).parent / "plans"
    report.section("5. The published analyses, reproduced on the simulated cohorts (`carpet analyze`)")
    report.text("Each plan below is a YAML file shipped in carpet/plans/; each run wrote a self-contained HTML "
                "report, a PDF, one CSV per table, figures (PNG and PDF) and results.json with provenance.")
    links = []
    for study, plan in DEMO_PLANS:
        cohort = state["cohorts"][study]
        # the tables go in as a centre's would: patients without the simulator's answers, labs, therapies
        raw = {"assessments": cohort.lab_series() if STUDIES[study].disease == "MM" else None,
               "therapies": cohort.therapies}
        # the cohorts with PET: the imaging.csv carpet batch measured above, not the simulator's reads
        result = run_analysis(cohort.raw_patients, plans / plan, out / "analysis" / study,
                              imaging=state["imaging"].get(study), **raw)
        links += [(f"analysis/{study}/report.html", f"{study}: {plan} (HTML)"),
                  (f"analysis/{study}/report.pdf", f"{study}: {plan} (PDF)")]
        headline = next((f for f in result.files if f.startswith("figures/") and f.endswith(".png")), None)
        if headline:
            report.image(result.files[headline].read_bytes(), f"{study}: {headline} (from {plan})")
        if study == "moffitt_post_cart":
            report.table(_published_vs_simulated(result.results, state["cohorts"][study].targets),
                         caption="Median months, published (Front Oncol 2025) vs this simulated cohort [95% CI]",
                         float_format="{:.1f}")
            report.note("One simulated cohort of the published size scatters around the published medians: the "
                        "simulator hits them on average over many seeds (tests/test_cohort_sim.py), not in every draw.")
    report.files(links)


#: (analysis key, group label in the plan, calibration target key) for the published-vs-simulated table
_MOFFITT_MEDIANS = [("pfs2", "baseline_emd", "EMD at baseline", "bl_emd"),
                    ("pfs2", "baseline_emd", "No EMD at baseline", "bl_no_emd"),
                    ("pfs2", "progression_emd", "EMD at progression", "pd_emd"),
                    ("pfs2", "progression_emd", "No EMD at progression", "pd_no_emd"),
                    ("os_pp", "baseline_emd", "EMD at baseline", "bl_emd"),
                    ("os_pp", "baseline_emd", "No EMD at baseline", "bl_no_emd"),
                    ("os_pp", "progression_emd", "EMD at progression", "pd_emd"),
                    ("os_pp", "progression_emd", "No EMD at progression", "pd_no_emd")]


def _published_vs_simulated(analyses: dict, targets: dict) -> pd.DataFrame:
    rows = []
    for endpoint, by, group, key in _MOFFITT_MEDIANS:
        km = analyses[f"km_{endpoint}_{by}"]["groups"][group]
        published = targets["pfs2_median_months" if endpoint == "pfs2" else "os_pp_median_months"]["value"][key]
        rows.append({"endpoint": "PFS2" if endpoint == "pfs2" else "OS from progression", "group": group,
                     "published": published, "simulated": km["median"],
                     "95% CI": f"{_months(km['median_lower'])}–{_months(km['median_upper'])}"})
    return pd.DataFrame(rows)


def _months(value) -> str:
    return "NA" if value is None or value != value else f"{value:.1f}"
