"""Corpus of hostile inputs about *where carpet writes* and *how a batch behaves* (issue 12, findings
2, 5, 7 and 8; cases of ``../shared/reference/hostile-inputs.md`` by their id, plus new ones).

Every case asserts the exit code, that no traceback reached the user, and the words of the message;
cases that must succeed also check what they wrote. Read-only and full disks are real tmpfs mounts
(skipped where the tests may not mount, i.e. without root).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from carpet.cli import app
from carpet.synth.cohort import simulate_cohort
from carpet.synth.phantom import PhantomSpec, make_phantom

runner = CliRunner()

PLAN = """title: {title}
endpoints:
  pfs: {{time: pfs_months, event: pfs_event, unit: months, label: PFS}}
analyses:
  - {{type: {analysis}, by: centre}}
"""


def _squash(text: str) -> str:
    """Without any whitespace: rich wraps long messages at the terminal width."""
    return "".join(text.split())


def run(args, code: int = 1, words=(), env=None):
    """Invoke ``carpet`` in-process; check exit code, no traceback, and the words of the message."""
    res = runner.invoke(app, [str(a) for a in args], env=env)
    assert res.exit_code == code, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output and "internal error" not in res.output, res.output
    for w in words:
        assert _squash(w) in _squash(res.output), (w, res.output)
    return res


def tree(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (hidden ones too) with its content."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.name.endswith((".tmp", ".old")) or ".tmp-" in p.name]


# ---------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def w(tmp_path_factory):
    """The inputs every case uses: a NIfTI phantom, a DICOM phantom, lab and clinical tables, plans,
    a batch root of two good NIfTI studies."""
    base = tmp_path_factory.mktemp("hostile")
    ns = type("World", (), {})()
    ns.base = base
    nifti = make_phantom(PhantomSpec.small(seed=0)).write_nifti(base / "nifti")
    ns.pet, ns.ct = nifti["pet"], nifti["ct"]
    ns.dicom = base / "dicom"
    make_phantom(PhantomSpec.small(seed=3)).write_dicom(ns.dicom)
    ns.dicom_pet = ns.dicom / "pet"
    mm = simulate_cohort("moffitt_post_cart", n=12, seed=0).write(base / "mm")
    ns.patients, ns.labs = mm["patients"], mm["labs"]
    lbcl = simulate_cohort("lbcl_mtv", n=40, seed=0).write(base / "lbcl")
    ns.clinical = lbcl["truth"]  # time/event columns ready (patients.csv holds the raw dates)
    ns.plan = base / "plan.yaml"
    ns.plan.write_text(PLAN.format(title="Plain", analysis="km, endpoint: pfs"))
    ns.root = base / "root"
    for seed in (0, 1):
        paths = make_phantom(PhantomSpec.small(seed=seed)).write_nifti(ns.root / f"s{seed}")
        paths["lesions"].unlink()
    return ns


def command(w, name: str, out: Path) -> list:
    """A complete, valid command line of each command, writing to ``out``."""
    return {"quantify": ["quantify", w.pet, "--out", out],
            "suv": ["suv", w.dicom_pet, "--out", out],
            "imwg": ["imwg", "--patients", w.patients, "--assessments", w.labs, "--out", out],
            "analyze": ["analyze", "--clinical", w.clinical, "--plan", w.plan, "--out", out],
            "batch": ["batch", w.root, "--out", out, "--workers", "1", "--no-progress"],
            "demo": ["demo", "--small", "--out", out]}[name]


COMMANDS = ("quantify", "suv", "imwg", "analyze", "batch", "demo")


@contextmanager
def tmpfs(path: Path, options: str):
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (the full/read-only disk cases need root)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(folder: Path, leave: int = 0) -> Path:
    """Fill the file system of ``folder`` until ``leave`` bytes are free (page-rounded)."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


# ---------------------------------------------------------------------------------------------
# finding 8: --out that cannot be written, every command
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", COMMANDS)
def test_out_on_read_only_file_system(w, tmp_path, name):  # q_out_readonly, suv_out_readonly, ...
    with tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
        out = ro / ("suv.nii.gz" if name == "suv" else "out")
        run(command(w, name, out), 1, [str(out), "Read-only file system", "choose a writable --out"])


@pytest.mark.parametrize("name", COMMANDS)
def test_out_on_full_disk(w, tmp_path, name):  # b_out_diskfull and the other commands
    with tmpfs(tmp_path / "full", "size=256k") as full:
        fill(full)
        out = full / ("suv.nii.gz" if name == "suv" else "out")
        run(command(w, name, out), 1, [str(out), "No space left on device", "free some space"])
        assert leftovers(full) == []


@pytest.mark.parametrize("name", [c for c in COMMANDS if c != "suv"])
def test_out_is_an_existing_file(w, tmp_path, name):  # q_out_is_file, b_out_is_file, ...
    out = tmp_path / "out"
    out.write_text("my notes")
    run(command(w, name, out), 1, [str(out), "a file stands where the output folder should be"])
    assert out.read_text() == "my notes"


def test_out_is_the_current_folder(w, tmp_path, monkeypatch):
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    run(["imwg", "--patients", w.patients, "--assessments", w.labs, "--out", "."], 1,
        ["is the current folder or holds it", "choose a sub-folder for --out"])
    assert (tmp_path / "work").is_dir()


def test_suv_out_is_a_folder(w, tmp_path):  # suv_out_is_dir
    out = tmp_path / "suv.nii.gz"
    out.mkdir()
    run(command(w, "suv", out), 1, [str(out), "a folder stands where the output file should be"])


@pytest.mark.parametrize("name", ["quantify", "imwg", "analyze", "batch"])
def test_out_holding_files_carpet_did_not_write_is_refused(w, tmp_path, name):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.docx").write_text("years of work")
    run(command(w, name, out), 1, ["holds files carpet did not write", "choose a new or empty --out"])
    assert tree(out) == {"thesis.docx": b"years of work"}


@pytest.mark.parametrize("name", ["quantify", "suv", "batch"])
def test_two_runs_cannot_share_an_out(w, tmp_path, name):
    from carpet.io.outdir import locked_output

    out = tmp_path / ("suv.nii.gz" if name == "suv" else "out")
    with locked_output(out):  # another run holds it
        run(command(w, name, out), 1, ["another carpet run", f"(process {os.getpid()})",
                                       "wait for it to finish or choose another --out"])
    assert not out.exists()


def test_quantify_full_disk_midway_keeps_the_earlier_outputs(w, tmp_path):  # q_out_diskfull
    with tmpfs(tmp_path / "disk", "size=1m") as disk:
        out = disk / "out"
        run(command(w, "quantify", out), 0)
        before = tree(out)
        fill(disk, leave=6 * 4096)  # the lock and a file or two fit, not all outputs
        run(["quantify", w.pet, "--ct", w.ct, "--method", "all", "--out", out], 1,
            [str(out), "No space left on device"])
        assert tree(out) == before and leftovers(disk) == []


def test_suv_half_written_outputs_never_replace_the_old(w, tmp_path, monkeypatch):
    out = tmp_path / "suv.nii.gz"
    run(command(w, "suv", out), 0, ["SUVbw written to"])
    before = tree(tmp_path)
    import carpet.io.nifti

    def fail(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(args[1]))

    monkeypatch.setattr(carpet.io.nifti, "write_nifti", fail)
    run(command(w, "suv", out), 1, [f"{out}: No space left on device"])  # the final name, not the temp one
    assert tree(tmp_path) == before


def _suv_pair(out: Path) -> tuple[bytes, bytes]:
    return out.read_bytes(), out.with_name("suv.json").read_bytes()


def test_suv_second_rename_failing_keeps_the_earlier_pair(w, tmp_path, monkeypatch):
    """The NIfTI is in place, then replacing the .json fails: the earlier NIfTI comes back too."""
    out = tmp_path / "suv.nii.gz"
    run(command(w, "suv", out), 0)
    before = tree(tmp_path)
    real, failed = os.replace, []

    def fail_on_json(src, dst):
        if str(dst).endswith("suv.json") and not failed:   # once: putting the old one back works
            failed.append(dst)
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(src))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", fail_on_json)
    run(command(w, "suv", out) + ["--weight-kg", "55"], 1, ["suv.json"])   # another SUV: the files would differ
    monkeypatch.setattr(os, "replace", real)
    assert tree(tmp_path) == before and leftovers(tmp_path) == []


def test_suv_killed_between_its_two_renames_is_repaired_to_the_earlier_pair(w, tmp_path):
    """SIGKILL right after the new NIfTI replaced the old one (its .json still the old run's): the next
    run, even one that fails, puts the earlier pair back before anything else."""
    import sys

    out = tmp_path / "suv.nii.gz"
    run(command(w, "suv", out), 0)
    before = _suv_pair(out)
    script = ("import os, signal, sys\n"
              "real = os.replace\n"
              "def replace(src, dst):\n"
              "    real(src, dst)\n"
              "    if str(dst).endswith('.nii.gz'):\n"
              "        os.kill(os.getpid(), signal.SIGKILL)\n"
              "os.replace = replace\n"
              "from carpet.cli import app\n"
              "app(sys.argv[1:], prog_name='carpet')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", script, "suv", str(w.dicom_pet), "--out", str(out),
                           "--weight-kg", "55"], env=env, capture_output=True)
    assert done.returncode == -9, done.stderr.decode()
    assert out.read_bytes() != before[0] and out.with_name("suv.json").read_bytes() == before[1]  # mixed now
    run(["suv", w.dicom_pet, "--out", out, "--dose-mbq", "-1"], 1, ["dose"])   # a failing next run repairs first
    assert _suv_pair(out) == before and leftovers(tmp_path) == [] and not list(tmp_path.glob(".*.old-*"))


def test_python_api_writes_like_the_command(w, tmp_path, monkeypatch):
    """run_quantify (the function carpet quantify wraps): nothing stale, nothing half-written, no
    foreign folder replaced, and the returned paths name the final folder."""
    import carpet.quantify
    from carpet.errors import OutputError

    out = tmp_path / "q"
    carpet.quantify.run_quantify(w.pet, out_dir=out, method="all")
    assert (out / "methods.csv").is_file() and (out / ".carpet-output").is_file()
    result = carpet.quantify.run_quantify(w.pet, out_dir=out)
    assert not (out / "methods.csv").exists()
    assert all(Path(p).parent == out.absolute() and Path(p).is_file() for p in result.extra["files"].values())
    before = tree(out)
    real = carpet.quantify.write_outputs

    def full(result, out_dir):
        real(result, out_dir)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(out_dir) / "lesions.nii.gz"))

    monkeypatch.setattr(carpet.quantify, "write_outputs", full)
    with pytest.raises(OSError, match="No space") as caught:
        carpet.quantify.run_quantify(w.pet, out_dir=out, method="suv2.5")
    assert caught.value.filename == str(out.absolute() / "lesions.nii.gz")   # the final name
    assert tree(out) == before and leftovers(tmp_path) == []
    monkeypatch.setattr(carpet.quantify, "write_outputs", real)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's")
    with pytest.raises(OutputError, match="did not write"):
        carpet.quantify.run_quantify(w.pet, out_dir=mine)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


# ---------------------------------------------------------------------------------------------
# finding 5: nothing stale, nothing mixed
# ---------------------------------------------------------------------------------------------
def test_q_stale_files_of_an_earlier_run_are_gone(w, tmp_path):  # q_stale
    out = tmp_path / "q"
    run(["quantify", w.dicom_pet, "--method", "all", "--out", out], 0)
    assert (out / "methods.csv").is_file()
    run(command(w, "quantify", out), 0)
    names = {p.name for p in out.iterdir()}
    assert "methods.csv" not in names and "lesions.seg.dcm" not in names
    assert {".carpet-output", "lesions.csv", "lesions.nii.gz", "summary.json"} <= names
    summary = json.loads((out / "summary.json").read_text())
    assert summary["provenance"]["inputs"]["pet"]["path"] == str(w.pet)


def test_an_stale_files_of_another_plan_are_gone(w, tmp_path):  # an_stale
    out = tmp_path / "an"
    table1 = tmp_path / "table1.yaml"
    table1.write_text(PLAN.format(title="Table 1", analysis="table1, continuous: [age_years]"))
    run(["analyze", "--clinical", w.clinical, "--plan", table1, "--out", out], 0)
    assert (out / "table1.csv").is_file()
    run(command(w, "analyze", out), 0)  # another plan: KM only
    assert not (out / "table1.csv").exists() and (out / "report.html").is_file()


def test_recorded_paths_name_the_final_folder_not_the_stage(tmp_path):
    """The demo records paths of inputs it wrote itself: they must name where the files end up."""
    from carpet.io.outdir import staged_dir

    out = tmp_path / "out"
    with staged_dir(out, "demo") as stage:
        (stage / "input.nii.gz").write_bytes(b"x")
        (stage / "summary.json").write_text(json.dumps({"path": str(stage / "input.nii.gz")}))
    assert json.loads((out / "summary.json").read_text())["path"] == str(out / "input.nii.gz")


def test_a_run_killed_between_its_two_renames_is_repaired(tmp_path, monkeypatch):
    from carpet.io.outdir import staged_dir

    out = tmp_path / "out"
    with staged_dir(out, "quantify") as stage:
        (stage / "old.csv").write_text("earlier run")
    real = Path.rename

    def die_after_first(self, target):  # the old folder is moved aside, then the process dies
        if self.name.endswith(".tmp"):
            raise KeyboardInterrupt
        return real(self, target)

    monkeypatch.setattr(Path, "rename", die_after_first)
    with pytest.raises(KeyboardInterrupt):
        with staged_dir(out, "quantify") as stage:
            (stage / "new.csv").write_text("this run")
    monkeypatch.setattr(Path, "rename", real)
    assert not out.exists()  # as a SIGKILL at that moment would leave it
    with pytest.raises(RuntimeError):
        with staged_dir(out, "quantify"):  # the next run puts the earlier output back first
            assert (out / "old.csv").read_text() == "earlier run"
            raise RuntimeError("this run fails too")
    assert sorted(p.name for p in out.iterdir()) == [".carpet-output", "old.csv"]
    assert leftovers(tmp_path) == []


def test_q_killed_rerun_leaves_the_earlier_outputs_whole(w, tmp_path):
    """A quantify rerun SIGKILLed while writing its outputs: the earlier outputs, unmixed."""
    import signal
    import sys
    import time

    out = tmp_path / "q"
    run(command(w, "quantify", out), 0)
    before = tree(out)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "carpet.cli", "quantify", str(w.pet), "--ct", str(w.ct),
                             "--method", "all", "--out", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + 300
    while not any((p / "summary.json").exists() for p in tmp_path.glob(".q.*.tmp")):
        assert proc.poll() is None and time.monotonic() < end, "the rerun ended before it wrote"
        time.sleep(0.002)
    proc.kill()
    proc.wait()
    assert tree(out) == before
    run(command(w, "quantify", out), 0)  # the next run clears the killed run's stage
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# finding 8: ordinary mistakes in the inputs
# ---------------------------------------------------------------------------------------------
def test_opt_weight_neg(w, tmp_path):
    run(["quantify", w.pet, "--weight-kg", "-70", "--height-cm", "170", "--out", tmp_path / "o"], 1,
        ["--weight-kg", "must be a positive number, got -70"])
    assert not (tmp_path / "o").exists()


def test_suv_halflife_zero(w, tmp_path):
    run(["suv", w.dicom_pet, "--half-life-s", "0", "--out", tmp_path / "s.nii.gz"], 1,
        ["--half-life-s", "must be a positive number, got 0"])
    assert not (tmp_path / "s.nii.gz").exists()


def test_baseline_wrongjson(w, tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "summary.json").write_text("[1, 2, 3]")
    run(["quantify", w.pet, "--baseline", base, "--out", tmp_path / "o"], 1,
        ["summary.json", "expected a JSON object", "found a list"])


def _clinical_with(w, tmp_path, column, rows, value) -> Path:
    table = pd.read_csv(w.clinical, dtype=str)
    table.loc[rows, column] = value
    path = tmp_path / f"clinical_{column}.csv"
    table.to_csv(path, index=False)
    return path


def test_an_negtime_and_event2_name_the_csv_row(w, tmp_path):  # an_negtime, an_event2 (were 'row 0' of the plan)
    table = pd.read_csv(w.clinical)
    table.loc[0, "pfs_months"] = None     # a missing time is left out: positions among analysed rows shift
    table.loc[5, "pfs_months"] = -1.5     # CSV row 7 (the header is row 1)
    table.loc[9, "pfs_event"] = 2         # CSV row 11
    bad = tmp_path / "bad.csv"
    table.to_csv(bad, index=False)
    run(["analyze", "--clinical", bad, "--plan", w.plan, "--out", tmp_path / "o"], 1,
        [f"{bad}: row 7, column 'pfs_months'", "time must be a finite number >= 0", "-1.5"])
    table.loc[5, "pfs_months"] = 3.0
    table.to_csv(bad, index=False)
    run(["analyze", "--clinical", bad, "--plan", w.plan, "--out", tmp_path / "o"], 1,
        [f"{bad}: row 11, column 'pfs_event'", "event must be 0 (censored) or 1 (event)", "'2"])
    assert not (tmp_path / "o").exists()


def test_an_eventyes(w, tmp_path):
    clinical = _clinical_with(w, tmp_path, "pfs_event", [2, 5, 7], "yes")
    run(["analyze", "--clinical", clinical, "--plan", w.plan, "--out", tmp_path / "o"], 1,
        ["column 'pfs_event' holds 3 value(s) that are not numbers", "('yes')", "expected 0 or 1"])
    assert not (tmp_path / "o").exists()  # no table1.csv or km csv left behind


def test_an_timetext(w, tmp_path):
    clinical = _clinical_with(w, tmp_path, "pfs_months", [2, 5, 7], "abc")
    run(["analyze", "--clinical", clinical, "--plan", w.plan, "--out", tmp_path / "o"], 1,
        ["column 'pfs_months' holds 3 value(s) that are not numbers", "('abc')", "expected a number of months"])


def test_an_date_endpoint_missing_columns(w, tmp_path):  # an_neg_dates (KeyError 'time')
    plan = tmp_path / "dates.yaml"
    plan.write_text("title: Dates\nendpoints:\n  pfs: {start: infusion_date, censor_date: last_contact, "
                    "event_date: relapse_date, unit: months, label: PFS}\nanalyses:\n"
                    "  - {type: km, endpoint: pfs, by: centre}\n")
    run(["analyze", "--clinical", w.clinical, "--plan", plan, "--out", tmp_path / "o"], 1,
        ["endpoints.pfs: date column(s) ['last_contact', 'relapse_date'] not in the data"])


def test_dollar_signs_are_text_not_mathtext(w, tmp_path):  # an_mathtext_title2, an_evil_values
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN.format(title="'Gain of $x^{2$ in MTV'", analysis="km, endpoint: pfs"))
    clinical = _clinical_with(w, tmp_path, "centre", list(range(10)), "$y_{1$")
    out = tmp_path / "o"
    run(["analyze", "--clinical", clinical, "--plan", plan, "--out", out], 0)
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF")
    html = (out / "report.html").read_text()
    assert "$x^{2$" in html and "$y_{1$" in html


def test_b_studies_missing(w, tmp_path):
    run(["batch", w.root, "--out", tmp_path / "o", "--studies", tmp_path / "nope.csv"], 1,
        ["nope.csv", "study table not found", "--studies takes a CSV file"])


def test_b_studies_evil(w, tmp_path):  # b_studies_evil: dd/mm/yyyy would order a patient's scans wrongly
    studies = tmp_path / "studies.csv"
    ids = sorted(p.name for p in w.root.iterdir())
    studies.write_text("study_id,patient_id,study_date\n" + "".join(
        f"{sid},=HYPERLINK(\"x\"),{'01/02/2024' if k == 0 else '2024-03-01'}\n" for k, sid in enumerate(ids)))
    run(["batch", w.root, "--out", tmp_path / "o", "--studies", studies], 1,
        ["study_date must be an ISO date YYYY-MM-DD", f"row 2 ({ids[0]}: '01/02/2024')", "column study_date"])
    assert not (tmp_path / "o").exists()


def test_b_mapping_inside_out(w, tmp_path):  # b_mapping_inside_out: the key must not travel with the outputs
    out = tmp_path / "o"
    run(["batch", w.root, "--out", out, "--pseudonymize", "--salt", "pepper", "--mapping", out / "map.csv"], 1,
        ["map.csv", "pseudonym mapping would be written inside --out", "--mapping a path outside --out"])
    assert not out.exists()


def test_dask_nosched(w, tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run(["batch", w.root, "--out", tmp_path / "o", "--scheduler", f"tcp://127.0.0.1:{port}"], 1,
        [f"tcp://127.0.0.1:{port}", "cannot reach the Dask scheduler", "Connection refused"])
    assert not (tmp_path / "o").exists()


def test_dask_badaddr(w, tmp_path):
    run(["batch", w.root, "--out", tmp_path / "o", "--scheduler", "not-an-address"], 1,
        ["not-an-address", "not a Dask scheduler address", "--scheduler tcp://HOST:PORT"])


def test_unexpected_error_is_one_line_and_a_saved_traceback(w, tmp_path, monkeypatch):
    import carpet.quantify

    def bug(*args, **kwargs):
        raise ZeroDivisionError("synthetic bug")

    monkeypatch.setattr(carpet.quantify, "run_quantify", bug)
    res = runner.invoke(app, ["quantify", str(w.pet), "--out", str(tmp_path / "o")],
                        env={"CARPET_LOG_DIR": str(tmp_path)})
    assert res.exit_code == 3 and "Traceback" not in res.output
    assert "internal error: ZeroDivisionError: synthetic bug" in " ".join(res.output.split())
    logs = list(tmp_path.glob("carpet-error-*.log"))
    assert len(logs) == 1 and str(logs[0]) in _squash(res.output)
    assert "Traceback" in logs[0].read_text() and "synthetic bug" in logs[0].read_text()
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------------------
# findings 2 and 7: batches that fail, are tampered with, or share a folder with their inputs
# ---------------------------------------------------------------------------------------------
def _all_failed_checks(out: Path) -> None:
    for name in ("errors.csv", "imaging.csv", "batch.json", "lesions.csv"):
        assert (out / name).is_file(), name
    imaging = pd.read_csv(out / "imaging.csv")
    assert list(imaging.status) == ["failed"] and "carpet_version" in imaging


def test_b_mixed_only_study_fails(w, tmp_path):  # b_mixed: NIfTI PET beside a DICOM PET
    root = tmp_path / "root"
    shutil.copytree(w.dicom, root / "x1")
    shutil.copy(w.pet, root / "x1" / "pet.nii.gz")
    out = tmp_path / "out"
    for extra in ([], [], ["--retry-failed"]):  # the failure marker does not make reruns crash
        run(["batch", root, "--out", out, "--workers", "1", "--no-progress", *extra], 0,
            ["1 studies: 0 done, 0 skipped, 1 failed", "failures:"])
        _all_failed_checks(out)
    errors = pd.read_csv(out / "errors.csv")
    assert "expected NIfTI or DICOM, not both" in errors.message[0]


def test_b_dicom_mixed_series_in_one_folder(w, tmp_path):  # b_dicom_mixed
    folder = tmp_path / "root" / "x2" / "all"
    folder.mkdir(parents=True)
    for series in ("pet", "ct"):
        for f in (w.dicom / series).iterdir():
            shutil.copy(f, folder / f"{series}_{f.name}")
    out = tmp_path / "out"
    run(["batch", tmp_path / "root", "--out", out, "--workers", "1", "--no-progress"], 0,
        ["1 studies: 0 done, 0 skipped, 1 failed"])
    _all_failed_checks(out)
    assert "share a folder" in pd.read_csv(out / "errors.csv").message[0]


@pytest.fixture(scope="module")
def batch_out(w, tmp_path_factory):
    out = tmp_path_factory.mktemp("batch") / "out"
    run(command(w, "batch", out), 0, ["2 studies: 2 done"])
    return out


def test_b_out_inside_root(w, tmp_path, batch_out):
    root = tmp_path / "root"
    shutil.copytree(w.root, root)
    shutil.copytree(batch_out, root / "out")  # an OUT inside ROOT, from an earlier run
    for _ in range(2):
        run(["batch", root, "--out", root / "out", "--workers", "1", "--no-progress"], 0,
            ["2 studies:", "0 failed"])
    assert list(pd.read_csv(root / "out" / "imaging.csv").study_id) == ["s0", "s1"]
    run(["batch", root, "--out", root / "s0" / "results"], 1, ["inside the study folder 's0'"])


def test_b_tamper_missing_and_edited_summary(w, tmp_path, batch_out):  # b_tamper_missing, b_tamper_edited
    out = tmp_path / "out"
    shutil.copytree(batch_out, out)
    truth = pd.read_csv(out / "imaging.csv").set_index("study_id")
    (out / "studies" / "s0" / "summary.json").unlink()
    edited = json.loads((out / "studies" / "s1" / "summary.json").read_text())
    edited["mtv_ml"] = 999.0
    (out / "studies" / "s1" / "summary.json").write_text(json.dumps(edited))
    run(command(w, "batch", out), 0, ["2 studies: 2 done, 0 skipped, 0 failed"])  # both recomputed
    again = pd.read_csv(out / "imaging.csv").set_index("study_id")
    pd.testing.assert_frame_equal(again, truth)
    assert json.loads((out / "studies" / "s1" / "summary.json").read_text())["mtv_ml"] != 999.0


def test_b_enospc_is_transient_and_retried(w, tmp_path, batch_out, monkeypatch):  # b_enospc_sticky
    import carpet.quantify

    out = tmp_path / "out"
    real = carpet.quantify.run_quantify

    def full(pet, *, out_dir, **kwargs):
        Path(out_dir).mkdir(parents=True)
        (Path(out_dir) / "lesions.csv").write_text("lesion_id\n")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(out_dir) / "lesions.nii.gz"))

    monkeypatch.setattr(carpet.quantify, "run_quantify", full)
    run(command(w, "batch", out), 0, ["2 studies: 0 done, 0 skipped, 2 failed"])
    errors = pd.read_csv(out / "errors.csv")
    assert all("No space left on device" in m and "the next run retries it" in m and "\n" not in m
               for m in errors.message)
    assert not list((out / "logs").glob("*.failed.json")) and leftovers(out) == []
    monkeypatch.setattr(carpet.quantify, "run_quantify", real)  # space freed
    run(command(w, "batch", out), 0, ["2 studies: 2 done, 0 skipped, 0 failed"])  # no --retry-failed
    pd.testing.assert_frame_equal(pd.read_csv(out / "imaging.csv"), pd.read_csv(batch_out / "imaging.csv"))


def test_b_out_diskfull_then_freed(w, tmp_path, batch_out):  # b_out_diskfull, real ENOSPC mid-study
    with tmpfs(tmp_path / "disk", "size=2m") as disk:
        out = disk / "out"
        filler = fill(disk, leave=3 * 4096)
        res = runner.invoke(app, [str(a) for a in command(w, "batch", out)])
        assert res.exit_code in (0, 1) and "Traceback" not in res.output and res.exit_code != 3
        assert "No space left on device" in " ".join(res.output.split()) or \
            "No space left on device" in (out / "errors.csv").read_text()
        assert leftovers(disk) == []
        filler.unlink()
        run(command(w, "batch", out), 0, ["2 studies:", "0 failed"])
        assert leftovers(disk) == []
        pd.testing.assert_frame_equal(pd.read_csv(out / "imaging.csv"), pd.read_csv(batch_out / "imaging.csv"))


def test_dask_relpath_tasks_carry_absolute_paths(w, tmp_path, monkeypatch):  # dask_relpath
    import carpet.batch

    seen = []

    def spy(tasks, workers, scheduler, show):
        seen.extend(tasks)
        return [carpet.batch.run_study(t) for t in tasks]

    monkeypatch.setattr(carpet.batch, "_execute", spy)
    monkeypatch.setattr(carpet.batch, "_check_scheduler", lambda address: None)
    shutil.copytree(w.root, tmp_path / "root")
    monkeypatch.chdir(tmp_path)
    carpet.batch.run_batch("root", "out", scheduler="tcp://elsewhere:8786", progress=False)
    assert seen and all(Path(t.source).is_absolute() and Path(t.out).is_absolute() for t in seen)
    assert all(Path(t.out) == tmp_path / "out" for t in seen)


def test_studies_of_another_root_are_removed(w, tmp_path, batch_out):
    out = tmp_path / "out"
    shutil.copytree(batch_out, out)
    root = tmp_path / "root"
    shutil.copytree(w.root / "s1", root / "s1")
    run(["batch", root, "--out", out, "--workers", "1", "--no-progress"], 0, ["1 studies: 0 done, 1 skipped"])
    assert sorted(p.name for p in (out / "studies").iterdir()) == ["s1"]
