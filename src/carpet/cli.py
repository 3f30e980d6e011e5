"""The ``carpet`` command. Thin: parse arguments, call the library, print.

Every command is also a Python function in the library; this module holds no computation.
Errors carpet raises for bad input (:class:`carpet.errors.CarpetError`) and errors of the
operating system (a full disk, a read-only ``--out``) are printed as one clear message with exit
code 1; commands not available yet exit with code 2; anything else is a bug in carpet: one line
saying so and where the traceback was saved, exit code 3. Every command writes through
:mod:`carpet.io.outdir` (staged beside ``--out``, moved into place, locked against a second run).
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from carpet import __version__
from carpet.errors import CarpetError, NotYetAvailable

app = typer.Typer(
    name="carpet",
    help=("PET/CT and outcome research in CAR T-cell therapy: SUV, lesion segmentation, MTV/TLG/Dmax, "
          "lesion sites, IMWG response, survival statistics and reports. Offline; every number carries "
          "its provenance. Start with `carpet demo` (no input needed); `carpet COMMAND --help` gives each "
          "command's inputs, outputs and defaults. Exit codes: 0 done, 1 bad input (one message naming "
          "the file, tag or column, or why --out cannot be written), 2 not available yet, 3 a bug in "
          "carpet (the message says where its traceback was saved), 130 interrupted."),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)


def _friendly_errors(fn):
    """Turn carpet's own errors into a message and an exit code instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NotYetAvailable as exc:
            err.print(f"[bold yellow]not available yet:[/] {exc}")
            raise typer.Exit(2)
        except CarpetError as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(1)
        except OSError as exc:  # the machine, not carpet: full disk, read-only or missing place
            from carpet.io.outdir import describe_os_error

            err.print(f"[bold red]error:[/] {describe_os_error(exc)}", highlight=False)
            raise typer.Exit(1)
        except KeyboardInterrupt:
            err.print("[bold yellow]interrupted:[/] nothing half-written was left in --out; a rerun "
                      "redoes (batch: resumes) the work")
            raise typer.Exit(130)
        except Exception as exc:  # noqa: BLE001 - a bug: one line and a saved traceback, not a wall of text
            err.print(f"[bold red]internal error:[/] {type(exc).__name__}: {_first_line(exc)}. This is a bug "
                      f"in carpet; {_save_traceback()}", highlight=False)
            raise typer.Exit(3)

    return wrapper


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else "(no message)"


def _save_traceback() -> str:
    """Write the current traceback to a log file (CARPET_LOG_DIR or the temp folder); say where."""
    folder = os.environ.get("CARPET_LOG_DIR") or tempfile.gettempdir()
    path = os.path.join(folder, f"carpet-error-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log")
    try:
        with open(path, "w") as fh:
            fh.write(f"carpet {__version__}\n{' '.join(sys.argv)}\n\n{traceback.format_exc()}")
    except OSError:
        return "its traceback could not be saved (set CARPET_LOG_DIR to a writable folder)"
    return f"please report it with the traceback saved in {path}"


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"carpet {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version_callback,
                                       is_eager=True, help="Print the carpet version and exit.")) -> None:
    pass


# ---------------------------------------------------------------------------------------------
# carpet quantify
# ---------------------------------------------------------------------------------------------
@app.command()
@_friendly_errors
def quantify(
    pet: Path = typer.Argument(..., help="PET: a DICOM series folder or a NIfTI file (NIfTI is taken as SUVbw)."),
    ct: Optional[Path] = typer.Option(None, "--ct", help="CT (DICOM folder or NIfTI), any grid; enables lesion sites."),
    lesions: Optional[Path] = typer.Option(None, "--lesions", help="Lesion mask to measure instead of thresholding."),
    exclude: Optional[Path] = typer.Option(None, "--exclude", help="Mask of physiological uptake to remove."),
    method: Optional[str] = typer.Option(
        None, "--method", help="suv4 (default), suv2.5, pct41, a50p, percist, liver3sd, mv2, mv3, or all. "
                               "With --lesions: none (measure the mask) or pct41/a50p (seeded by it)."),
    connectivity: int = typer.Option(26, "--connectivity", help="Lesion connectivity: 6, 18 or 26."),
    min_volume_ml: float = typer.Option(0.0, "--min-volume-ml", help="Drop lesions smaller than this (mL)."),
    seed_suv: float = typer.Option(4.0, "--seed-suv", help="Detection threshold seeding pct41/a50p lesions (SUV)."),
    liver_voi: Optional[str] = typer.Option(None, "--liver-voi",
                                            help="Liver VOI centre x,y,z[,diameter_mm] (LPS mm) for percist/liver3sd."),
    height_cm: Optional[float] = typer.Option(None, "--height-cm", help="Patient height (cm), for SDmax."),
    weight_kg: Optional[float] = typer.Option(None, "--weight-kg", help="Patient weight (kg), for SDmax."),
    auto_exclude: bool = typer.Option(
        False, "--auto-exclude",
        help="Deprecated (the physiology rules already exclude the brain). Removes the brain by the older rule "
             "(one component ≥ 500 mL in the top 30 cm of the PET), also from a --lesions mask and with "
             "--keep-physiological, which the physiology rules leave alone."),
    keep_physiological: bool = typer.Option(
        False, "--keep-physiological",
        help="Turn the physiology rules off. By default (threshold methods, not a --lesions mask) rules on the "
             "PET (ruleset PHYSIO_PET, docs/physiology.md) take brain, myocardium, kidneys and bladder out of "
             "the lesions and list each excluded component in excluded.csv / excluded.nii.gz; components they "
             "cannot decide stay, flagged in lesions.csv's review column. Other uptake: --exclude MASK."),
    baseline: Optional[Path] = typer.Option(None, "--baseline",
                                            help="OUT folder of this patient's baseline quantify run: "
                                                 "adds the Lugano response (delta SUVmax)."),
    roi: Optional[str] = typer.Option(None, "--roi", help="With an RTSTRUCT as --lesions: measure this ROI only "
                                                          "(default: every ROI, each a lesion)."),
    keep_identity: bool = typer.Option(False, "--keep-identity",
                                       help="Copy the patient's name, ID, birth date etc. into lesions.seg.dcm "
                                            "(default: a pseudonym, PS3.15 Basic Profile)."),
    overrides: Optional[Path] = typer.Option(
        None, "--overrides", help="Reader overrides CSV (study_id, lesion_id, action site|exclude|include, site, "
                                  "reason): applied to this study and recorded in provenance."),
    study_id: Optional[str] = typer.Option(None, "--study-id",
                                           help="This study's id in the overrides file (needed when it "
                                                "holds several studies)."),
    review: bool = typer.Option(False, "--review", help="Also write OUT/review.html: MIP, every lesion's PET/CT "
                                                        "slices, measures and site evidence (baseline beside)."),
    out: Path = typer.Option(Path("carpet-quantify"), "--out", help="Output folder."),
) -> None:
    """Segment and measure lesions: writes lesions.csv, summary.json and lesions.nii.gz in OUT.

    A DICOM PET also gets lesions.seg.dcm (DICOM SEG, one segment a lesion), de-identified unless
    --keep-identity; with no lesion there is no SEG and summary.json says why.

    With --baseline, the follow-up is aligned to the baseline (CT, else PET) and each lesion matched:
    lesions.csv gains baseline_lesion_id and change (matched/new), summary.json n_new_lesions and
    n_resolved_lesions, and baseline_lesions.csv says which baseline lesions resolved. A component the
    physiology rules excluded on one scan and kept on the other is physiology_mismatch: neither new
    nor resolved, flagged for review.
    """
    from carpet.quantify import run_quantify
    from carpet.segment import SegmentParams

    if auto_exclude:
        err.print("[yellow]warning:[/] --auto-exclude is deprecated: the physiology rules (on unless "
                  "--keep-physiological) exclude the brain with the other organs; it still removes a brain of "
                  ">= 500 mL from a --lesions mask or with --keep-physiological", highlight=False)
    # run_quantify stages, locks and moves OUT into place itself (carpet.io.outdir.writes_staged)
    result = run_quantify(pet, out_dir=out, ct_path=ct, lesions_path=lesions, exclude_path=exclude,
                          method=method, liver_voi=liver_voi, height_cm=height_cm, weight_kg=weight_kg,
                          auto_exclude=auto_exclude, baseline_dir=baseline, roi=roi,
                          keep_identity=keep_identity, overrides_path=overrides, study_id=study_id,
                          keep_physiological=keep_physiological, review=review,
                          params=SegmentParams(connectivity=connectivity, min_volume_ml=min_volume_ml,
                                               seed_suv=seed_suv))
    s = result.summary
    for note in s["provenance"].get("warnings", []):
        err.print(f"[yellow]warning:[/] {note}", highlight=False)
    typer.echo(f"{s['method']}: {s['n_lesions']} lesions, MTV {s['mtv_ml']:.2f} mL, TLG {s['tlg']:.1f}, "
               f"Dmax {s['dmax_mm']:.1f} mm -> {out}")
    ex = s.get("excluded", {})
    if ex.get("n_components"):
        organs = ", ".join(f"{o} {v['volume_ml']:.1f} mL" for o, v in ex["by_organ"].items())
        typer.echo(f"excluded as physiological uptake: {organs} (excluded.csv; --keep-physiological keeps them)")


# ---------------------------------------------------------------------------------------------
# carpet suv
# ---------------------------------------------------------------------------------------------
@app.command()
@_friendly_errors
def suv(
    dicom_dir: Path = typer.Argument(..., help="Folder holding one PET DICOM series."),
    out: Path = typer.Option(..., "--out", help="Output NIfTI file for the SUV volume."),
    json_out: bool = typer.Option(False, "--json", help="Print the SUV factor and its provenance as JSON."),
    norm: str = typer.Option("bw", "--norm", help="bw, lbm, bsa or ibw."),
    lbm_formula: str = typer.Option("janma", "--lbm-formula", help="janma (Janmahasatian) or james."),
    weight_kg: Optional[float] = typer.Option(None, "--weight-kg", help="Patient weight (kg), overrides (0010,1030)."),
    height_cm: Optional[float] = typer.Option(None, "--height-cm", help="Patient height (cm), overrides (0010,1020)."),
    sex: Optional[str] = typer.Option(None, "--sex", help="M, F or O, overrides (0010,0040)."),
    dose_mbq: Optional[float] = typer.Option(None, "--dose-mbq", help="Injected dose (MBq), overrides (0018,1074)."),
    injection_time: Optional[str] = typer.Option(None, "--injection-time",
                                                 help="HH:MM[:SS] or ISO date-time, overrides (0018,1072/1078)."),
    half_life_s: Optional[float] = typer.Option(None, "--half-life-s", help="Half-life (s), overrides (0018,1075)."),
) -> None:
    """Convert a PET DICOM series to SUV (QIBA vendor-neutral rules) and write it as NIfTI.

    The conversion record (factor, rule, tags used, overrides) is also written next to OUT as .json.
    """
    import json

    from carpet.io.nifti import write_nifti
    from carpet.io.outdir import staged_files
    from carpet.suv import to_suv

    side = out.with_name(out.name.removesuffix(".gz").removesuffix(".nii") + ".json")
    with staged_files(out, side) as (stage_out, stage_side):
        volume, result = to_suv(dicom_dir, norm, lbm_formula=lbm_formula, weight_kg=weight_kg,
                                height_cm=height_cm, sex=sex, dose_mbq=dose_mbq,
                                injection_time=injection_time, half_life_s=half_life_s)
        write_nifti(volume, stage_out)
        record = json.dumps(result.to_dict(), indent=2, default=str)
        stage_side.write_text(record)
    if json_out:
        typer.echo(record)
    else:
        factor = f"{result.factor:.6g}" if result.factor is not None else "per slice"
        typer.echo(f"SUV{norm} written to {out} (factor {factor}; {result.formula}; "
                   f"reference time: {result.reference_time_rule or 'not needed'}); record in {side}")


# ---------------------------------------------------------------------------------------------
# carpet imwg
# ---------------------------------------------------------------------------------------------
@app.command()
@_friendly_errors
def imwg(
    patients: Path = typer.Option(..., "--patients", help="PATIENTS table (CSV/XLSX)."),
    assessments: Path = typer.Option(..., "--assessments", help="Lab assessments, long format (CSV/XLSX)."),
    therapies: Optional[Path] = typer.Option(None, "--therapies", help="Therapy lines (CSV/XLSX)."),
    out: Path = typer.Option(..., "--out", help="Output folder."),
    nadir_mode: str = typer.Option("confirmed", "--nadir-mode",
                                   help="PD nadir: 'confirmed' (IMWG 2016) or 'any' (2006/2011 wording)."),
    serum_measurable_min: float = typer.Option(1.0, "--serum-measurable-min",
                                               help="Measurable serum M-protein, g/dL (trials: 0.5)."),
) -> None:
    """IMWG 2016 response and progression from lab time series: responses.csv, progression.csv."""
    from carpet.io.outdir import staged_dir
    from carpet.scores.imwg import IMWGParams, assess_cohort

    params = IMWGParams(nadir_mode=nadir_mode, serum_measurable_min=serum_measurable_min)
    with staged_dir(out, "imwg") as stage:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = assess_cohort(patients, assessments, therapies, params)
        for w in caught:
            err.print(f"[yellow]warning:[/] {w.message}", highlight=False)
        paths = {k: out / p.relative_to(stage) for k, p in result.write(stage).items()}
    n_prog = int(result.progression["progression_confirmed"].sum())
    typer.echo(f"{len(result.progression)} patients, {n_prog} with confirmed progression (IMWG2016)")
    for path in paths.values():
        typer.echo(str(path))


# ---------------------------------------------------------------------------------------------
# carpet analyze
# ---------------------------------------------------------------------------------------------
@app.command()
@_friendly_errors
def analyze(
    clinical: Optional[Path] = typer.Option(None, "--clinical", help="PATIENTS table (CSV/XLSX); required unless "
                                                                      "--describe."),
    assessments: Optional[Path] = typer.Option(None, "--assessments", help="Lab assessments (CSV/XLSX)."),
    imaging: Optional[Path] = typer.Option(None, "--imaging", help="Imaging results table (from quantify/batch)."),
    plan: Path = typer.Option(..., "--plan", help="Analysis plan (YAML)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder; required unless --describe."),
    therapies: Optional[Path] = typer.Option(None, "--therapies", help="Lines of therapy (CSV/XLSX): regimen, "
                                                                       "start, best response, progression."),
    include_identifiers: bool = typer.Option(False, "--include-identifiers",
                                             help="Keep name/birth date/MRN columns (dropped by default)."),
    xlsx: bool = typer.Option(False, "--xlsx", help="Also write tables.xlsx: one sheet per table."),
    page_size: str = typer.Option("A4", "--page-size", help="PDF page size: A4 or Letter."),
    describe: bool = typer.Option(False, "--describe", help="List the input tables and columns the plan needs, and "
                                                            "what each must hold; run nothing."),
) -> None:
    """Run an analysis plan: Table 1, survival curves, tests, cut-points, transitions; HTML and PDF reports.

    The plan language is documented in docs/plans.md.
    """
    from carpet.analyze import run_analysis
    from carpet.cohort.schema import read_patients
    from carpet.io.outdir import staged_dir
    from carpet.errors import InputError

    if describe:
        from carpet.analyze import describe_plan

        typer.echo(describe_plan(plan))
        return
    if clinical is None or out is None:
        raise InputError("carpet analyze needs --clinical PATIENTS.csv and --out DIR (or --describe)")

    with staged_dir(out, "analyze") as stage:
        result = run_analysis(read_patients(clinical), plan, stage, imaging=imaging, assessments=assessments,
                              therapies=therapies,
                              include_identifiers=include_identifiers, xlsx=xlsx, page_size=page_size,
                              input_files={"clinical": clinical, "imaging": imaging, "assessments": assessments,
                                           "therapies": therapies})
    for note in result.notes:
        err.print(f"[yellow]note:[/] {note}", highlight=False)
    typer.echo(f"{len(result.results)} analyses{' (SIMULATED data)' if result.simulated else ''}: "
               f"{out / 'report.html'}")


# ---------------------------------------------------------------------------------------------
# carpet batch
# ---------------------------------------------------------------------------------------------
@app.command()
@_friendly_errors
def batch(
    root: Path = typer.Argument(..., help="Folder with one sub-folder (or PET NIfTI file) per study; the "
                                          "study id is that folder/file name (choose pseudonymous names)."),
    out: Path = typer.Option(..., "--out", help="Output folder; one sub-folder per study plus imaging.csv."),
    workers: int = typer.Option(2, "--workers", help="Local worker processes (1 = in this process). A whole-body "
                                                     "study needs 1-2 GB: on 24 GB / 2 cores use 2."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Dask scheduler address (runs on that cluster)."),
    method: Optional[str] = typer.Option(None, "--method", help="Segmentation method, as for carpet quantify "
                                                                "(default suv4; a study's lesions mask is measured as given)."),
    connectivity: int = typer.Option(26, "--connectivity", help="Lesion connectivity: 6, 18 or 26."),
    min_volume_ml: float = typer.Option(0.0, "--min-volume-ml", help="Drop lesions smaller than this (mL)."),
    force: bool = typer.Option(False, "--force", help="Recompute every study, even those already done."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Retry studies that failed with unchanged inputs."),
    studies: Optional[Path] = typer.Option(None, "--studies", help="CSV study_id,patient_id,study_date: adds "
                                                                   "patient_id and study_date to imaging.csv."),
    pseudonymize: bool = typer.Option(False, "--pseudonymize", help="Replace study ids (and the --studies table's patient ids) by a salted hash in all outputs."),
    salt: Optional[str] = typer.Option(None, "--salt", envvar="CARPET_SALT",
                                       help="Secret salt of --pseudonymize (or env CARPET_SALT)."),
    mapping: Optional[Path] = typer.Option(None, "--mapping", help="With --pseudonymize: write study_id,pseudonym "
                                                                   "here (keep it away from the results)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar on stderr."),
    overrides: Optional[Path] = typer.Option(None, "--overrides", help="Reader overrides CSV (study_id as in OUT, "
                                                                       "lesion_id, action, site, reason)."),
    keep_identity: bool = typer.Option(False, "--keep-identity",
                                       help="Copy the patient's name, ID, birth date etc. into each lesions.seg.dcm "
                                            "(default: the study id as pseudonym, PS3.15 Basic Profile); nowhere "
                                            "else. Not with --pseudonymize."),
) -> None:
    """Quantify many studies: resumable, with progress, locally or on a Dask cluster.

    \b
    Layout: ROOT/<study_id>.nii.gz (PET alone), or ROOT/<study_id>/ holding pet*.nii[.gz]
    [ct*.nii[.gz]] [lesions*.nii[.gz]] [exclude*.nii[.gz]], or one PET DICOM series (and its CT)
    anywhere below, each series in its own folder. Two candidates for a role are an error.
    Writes OUT/studies/<study_id>/ (quantify outputs + done.json), imaging.csv, lesions.csv,
    errors.csv, logs/ and batch.json. Rerunning skips studies whose inputs and options are
    unchanged. No DICOM patient tag is read into the outputs. With --studies, each patient's
    scans are paired by date: tracks.csv (patient, lesion track, scan date, measures) and pairs.csv.
    """
    from carpet.batch import BatchOptions, run_batch
    from carpet.errors import InputError

    if pseudonymize and not salt:
        raise InputError("--pseudonymize needs a secret salt", hint="--salt TEXT or CARPET_SALT")
    result = run_batch(root, out, workers=workers, scheduler=scheduler,
                       options=BatchOptions(method=method, connectivity=connectivity, min_volume_ml=min_volume_ml,
                                            keep_identity=keep_identity),
                       force=force, retry_failed=retry_failed, salt=salt if pseudonymize else None,
                       mapping_path=mapping, studies_table=studies, progress=progress, overrides=overrides)
    c = result.counts
    typer.echo(f"{c['total']} studies: {c['done']} done, {c['skipped']} skipped, {c['failed']} failed "
               f"in {result.seconds:.1f} s -> {out}")
    if c["failed"]:
        typer.echo(f"failures: {result.paths['errors']}")


# ---------------------------------------------------------------------------------------------
# carpet demo
# ---------------------------------------------------------------------------------------------
@app.command()
@_friendly_errors
def demo(
    out: Path = typer.Option(Path("demo-out"), "--out", help="Output folder for everything the demo makes."),
    seed: int = typer.Option(2025, "--seed", help="Random seed (the demo is deterministic for a seed)."),
    small: bool = typer.Option(False, "--small", help="Small phantoms and cohort (seconds instead of a minute)."),
) -> None:
    """Run carpet end to end on simulated data and write an HTML report in OUT.

    Needs no input: it simulates the four published cohorts, builds and quantifies PET/CT phantoms
    of some patients, derives IMWG progression from simulated labs and runs the packaged analysis
    plans. Writes OUT/index.html (the report; its path is printed), imaging.csv, cohorts/<study>/,
    studies/<study_id>/, imwg/ and analysis/<plan>/. Everything is labelled as simulated.
    """
    from carpet.demo import run_demo
    from carpet.io.outdir import staged_dir

    with staged_dir(out, "demo") as stage:
        index = run_demo(stage, seed=seed, small=small, console=err)
    typer.echo(str(out / index.relative_to(stage)))


def main() -> None:  # pragma: no cover - the console-script entry point
    app(prog_name="carpet")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
