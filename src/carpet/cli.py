"""The ``carpet`` command. Thin: parse arguments, call the library, print.

Every command is also a Python function in the library; this module holds no computation.
Errors carpet raises for bad input (:class:`carpet.errors.CarpetError`) are printed as one
clear message with exit code 1; commands not available yet exit with code 2.
"""

from __future__ import annotations

import functools
import sys
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
          "its provenance."),
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

    return wrapper


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
    method: str = typer.Option("suv4", "--method", help="suv4, suv2.5, pct41, a50p, percist, liver3sd, mv2, mv3."),
    out: Path = typer.Option(Path("carpet-quantify"), "--out", help="Output folder."),
) -> None:
    """Segment and measure lesions: writes lesions.csv, summary.json and lesions.nii.gz in OUT."""
    raise NotYetAvailable("'carpet quantify' lands with the segmentation issue (#4).")


# ---------------------------------------------------------------------------------------------
# carpet suv
# ---------------------------------------------------------------------------------------------
@app.command()
@_friendly_errors
def suv(
    dicom_dir: Path = typer.Argument(..., help="Folder holding one PET DICOM series."),
    out: Path = typer.Option(..., "--out", help="Output NIfTI file for the SUV volume."),
    json_out: bool = typer.Option(False, "--json", help="Print the SUV factor and its provenance as JSON."),
) -> None:
    """Convert a PET DICOM series to SUV (QIBA vendor-neutral rules) and write it as NIfTI."""
    raise NotYetAvailable("'carpet suv' lands with the SUV issue (#3).")


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
    from carpet.scores.imwg import IMWGParams, assess_cohort

    params = IMWGParams(nadir_mode=nadir_mode, serum_measurable_min=serum_measurable_min)
    result = assess_cohort(patients, assessments, therapies, params)
    paths = result.write(out)
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
    clinical: Path = typer.Option(..., "--clinical", help="PATIENTS table (CSV/XLSX)."),
    assessments: Optional[Path] = typer.Option(None, "--assessments", help="Lab assessments (CSV/XLSX)."),
    imaging: Optional[Path] = typer.Option(None, "--imaging", help="Imaging results table (from quantify/batch)."),
    plan: Path = typer.Option(..., "--plan", help="Analysis plan (YAML)."),
    out: Path = typer.Option(..., "--out", help="Output folder."),
) -> None:
    """Run an analysis plan: survival curves, tests, Table 1, transitions, and an HTML report."""
    raise NotYetAvailable("'carpet analyze' lands with the statistics and report issues.")


# ---------------------------------------------------------------------------------------------
# carpet batch
# ---------------------------------------------------------------------------------------------
@app.command()
@_friendly_errors
def batch(
    root: Path = typer.Argument(..., help="Folder with one sub-folder (or PET file) per study."),
    out: Path = typer.Option(..., "--out", help="Output folder; one sub-folder per study plus imaging.csv."),
    workers: int = typer.Option(2, "--workers", help="Local worker processes."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Dask scheduler address (runs on that cluster)."),
) -> None:
    """Quantify many studies: resumable, with progress, locally or on a Dask cluster."""
    raise NotYetAvailable("'carpet batch' lands with the batch issue.")


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
    """Run carpet end to end on simulated data and write an HTML report in OUT."""
    from carpet.demo import run_demo

    index = run_demo(out, seed=seed, small=small, console=err)
    typer.echo(str(index))


def main() -> None:  # pragma: no cover - the console-script entry point
    app(prog_name="carpet")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
