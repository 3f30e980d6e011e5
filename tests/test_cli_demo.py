import json

import pandas as pd
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


def test_small_demo_writes_report_and_tables(tmp_path):
    result = runner.invoke(app, ["demo", "--out", str(tmp_path), "--small", "--seed", "7"])
    assert result.exit_code == 0, result.output
    html = (tmp_path / "index.html").read_text()
    assert "SIMULATED" in html and html.count("data:image/png;base64,") >= 3
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
    assert (merged["progression_date_sim"] == merged["progression_date_imwg"]).all()
    assert "for 106 of 106 patients" in html
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
