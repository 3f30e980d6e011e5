import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from carpet.cli import app

runner = CliRunner()


def test_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("quantify", "suv", "imwg", "analyze", "batch", "demo"):
        assert command in result.output


def test_bad_input_is_one_clear_message_with_exit_1(tmp_path):
    result = runner.invoke(app, ["quantify", str(tmp_path / "missing.nii.gz"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "missing.nii.gz" in result.output and "not found" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    """``carpet demo --small`` run once for the tests of this module."""
    out = tmp_path_factory.mktemp("demo")
    result = runner.invoke(app, ["demo", "--out", str(out), "--small", "--seed", "7"])
    return out, result


def test_small_demo_writes_report_and_tables(small_demo):
    tmp_path, result = small_demo
    assert result.exit_code == 0, result.output
    html = (tmp_path / "index.html").read_text()
    assert "SIMULATED" in html and html.count("data:image/png;base64,") + html.count("data:image/svg+xml,") >= 3
    imaging = pd.read_csv(tmp_path / "imaging.csv")
    # the phantom's truth and the measured MTV agree wherever every lesion is above SUV 4
    assert len(imaging) >= 3
    detectable = imaging[imaging["truth_suv_min"] >= 4.0]
    assert len(detectable) >= 1
    assert (detectable["mtv_ml"] - detectable["truth_mtv_ml"]).abs().max() < 1e-9
    assert (detectable["n_lesions"] == detectable["truth_n_lesions"]).all()
    for name in ("moffitt_post_cart", "certainty_pet", "lbcl_mtv"):
        assert (tmp_path / "cohorts" / name / "patients.csv").is_file()
    # IMWG progression recovered from the simulated labs (every Moffitt-like patient progressed by design)
    progression = pd.read_csv(tmp_path / "imwg" / "progression.csv")
    patients = pd.read_csv(tmp_path / "cohorts" / "moffitt_post_cart" / "truth.csv")
    merged = patients.merge(progression, on="patient_id", suffixes=("_sim", "_imwg"))
    assert len(merged) == len(patients)
    assert (merged["progression_date_sim"].fillna("") == merged["progression_date_imwg"].fillna("")).all()
    assert merged["progression_date_sim"].notna().sum() == 106  # Figure 1: 106 of the 251 treated progressed
    assert "for 251 of 251 patients; 106 progressed" in html
    # the packaged plans ran: every analysis wrote its report and results
    for name in ("moffitt_post_cart", "certainty_pet", "lbcl_mtv"):
        results = json.loads((tmp_path / "analysis" / name / "results.json").read_text())
        assert results["simulated"] is True
        assert (tmp_path / "analysis" / name / "report.pdf").read_bytes().startswith(b"%PDF")
    # the MTV plans read the imaging.csv carpet batch measured on the demo's phantoms (one per PET patient),
    # whose MTV is the phantoms' truth, not the simulator's imaging.csv
    from carpet.provenance import file_sha256

    for name in ("certainty_pet", "lbcl_mtv"):
        measured = tmp_path / "measured" / name / "batch" / "imaging.csv"
        inputs = json.loads((tmp_path / "analysis" / name / "results.json").read_text())["provenance"]["inputs"]
        assert inputs["imaging"]["sha256"] == file_sha256(measured), name
        table = pd.read_csv(measured)
        truth = [json.loads((tmp_path / "measured" / name / "scans" / sid / "truth.json").read_text())["summary"]
                 ["mtv_ml"] for sid in table["study_id"]]
        assert (table["mtv_ml_suv4"] - truth).abs().max() < 1e-9 and (table["status"] == "done").all()
        simulated = pd.read_csv(tmp_path / "cohorts" / name / "imaging.csv")
        assert set(simulated["study_id"]) == set(table["study_id"])
        assert not table.set_index("study_id")["mtv_ml_suv4"].equals(simulated.set_index("study_id")["mtv_ml_suv4"])
    # every checklist line of each plan's header names an output this run wrote
    from carpet.demo import DEMO_PLANS as pairs

    plans = Path(__file__).resolve().parents[1] / "src" / "carpet" / "plans"
    for study, plan in pairs:
        written = {p.relative_to(tmp_path / "analysis" / study).as_posix()
                   for p in (tmp_path / "analysis" / study).rglob("*") if p.is_file()}
        for target in checklist_targets(plans / plan):
            assert any(w == target or w.startswith(target + ".") or w.startswith(target + "_") for w in written), \
                (plan, target)


def checklist_targets(plan_path) -> list[str]:
    """The output named after each '->' of a plan's header checklist (first word, without a .csv/.png suffix);
    '-' lines (not produced) name none."""
    import re

    header = "\n".join(line[1:] for line in plan_path.read_text().splitlines() if line.startswith("#"))
    checklist = header.split("Checklist", 1)[1].split("\n", 1)[1]  # after the line that explains the arrows
    targets = [m.group(1).rstrip(".") for m in re.finditer(r"->\s*([\w/.*]+)", checklist)]
    return [re.sub(r"\.(csv|png)$", "", t) for t in targets if "*" not in t]


def test_version_and_exit_codes_of_friendly_errors():
    import pytest
    import typer

    from carpet import __version__
    from carpet.cli import _friendly_errors
    from carpet.errors import InputError, NotYetAvailable

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"carpet {__version__}"

    def raising(exc):
        @_friendly_errors
        def command():
            raise exc
        return command

    with pytest.raises(typer.Exit) as not_yet:
        raising(NotYetAvailable("carpet frobnicate lands with issue 99"))()
    assert not_yet.value.exit_code == 2
    with pytest.raises(typer.Exit) as bad:
        raising(InputError("expected SUV", source="x.nii"))()
    assert bad.value.exit_code == 1
    # a bug in carpet is not hidden as 'bad input': its own exit code, the traceback saved to a file
    with pytest.raises(typer.Exit) as bug:
        raising(ZeroDivisionError("synthetic"))()
    assert bug.value.exit_code == 3


# ---------------------------------------------------------------------------------------------------------------
# what a reader sees: every page of the demo laid out by a browser and paged as PDF, measured
# ---------------------------------------------------------------------------------------------------------------
def _reports(out):
    return [out / "index.html", *sorted((out / "analysis").glob("*/report.html"))]


@pytest.mark.slow  # five pages laid out by Chromium: ~2 s each
def test_demo_pages_in_a_browser_have_no_cut_text_broken_words_or_overlaps(small_demo):
    import os

    from _rendered import CHROMIUM, layout_problems

    if CHROMIUM is None:
        msg = "chromium not installed (needed to lay the reports out)"
        pytest.fail(msg) if os.environ.get("CI", "").lower() == "true" else pytest.skip(msg)
    out, _ = small_demo
    pages = _reports(out)
    assert len(pages) == 5
    for page in pages:
        found = layout_problems(page, width=1280)
        assert found["n_words"] > 300, page  # the script measured the page
        problems = {k: found[k] for k in ("overflow", "broken_words", "overlaps", "broken_images") if found[k]}
        assert problems == {}, f"{page.relative_to(out)}: {problems}"


def test_every_km_axis_of_every_plan_reaches_the_end_of_follow_up(small_demo):
    out, _ = small_demo
    analyses = sorted((out / "analysis").glob("*/results.json"))
    assert len(analyses) == 4
    n_km = 0
    for path in analyses:
        checks = json.loads(path.read_text())["figure_checks"]
        assert len(checks) == len(list((path.parent / "figures").glob("*.png")))
        assert {s: c["x_axis_short_of_data"] for s, c in checks.items() if c["x_axis_short_of_data"]} == {}, path
        km_stems = [s for s in checks if s.startswith(("km_", "landmark_", "cutpoint_", "cutoff_", "lines_"))]
        assert all(checks[s]["survival_axes"] == 1 for s in km_stems), path  # the check saw their curves
        n_km += len(km_stems)
    assert n_km >= 20


def test_no_text_in_any_report_pdf_is_smaller_than_the_floor_or_in_the_margin(small_demo):
    import shutil

    from _rendered import pdf_word_sizes

    from carpet.report.pdf import MIN_FONT_PT

    if shutil.which("pdftotext") is None:
        pytest.skip("poppler-utils (pdftotext) not installed")
    out, _ = small_demo
    pdfs = sorted((out / "analysis").glob("*/report.pdf"))
    assert len(pdfs) == 4
    for pdf in pdfs:
        words = pdf_word_sizes(pdf)
        assert len(words) > 500, pdf
        small = [(p, w, round(s, 2)) for p, w, s, _, _ in words if s < MIN_FONT_PT - 0.05]
        assert small == [], f"{pdf.parent.name}: {small[:10]}"
        # nothing runs into the margins (0.5 in = 36 pt; A4 is 595 pt wide)
        outside = [(p, w, round(x0), round(x1)) for p, w, _, x0, x1 in words if x0 < 35 or x1 > 595.44 - 35]
        assert outside == [], f"{pdf.parent.name}: {outside[:10]}"
