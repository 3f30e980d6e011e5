"""No identity leaves the inputs: a PHI scan of every file a batch writes (issue 12, finding 3).

Synthetic DICOM studies (carpet.synth) are stamped with distinctive identity values in every slice;
every output file is then searched, byte by byte (DICOM tags and sequences, NIfTI headers and
extensions after decompression, CSV/JSON/logs, PDF text), for each of them. The same scan run on a
``--keep-identity`` SEG must find them, so the scan itself is shown able to fail.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from carpet.batch import run_batch
from carpet.quantify import run_quantify

IDENTITY = {
    "PatientName": "Zqxwvbert^Hortensiaqq",
    "PatientID": "MRN77301948",
    "PatientBirthDate": "19440229",
    "AccessionNumber": "ACC5517QX",
    "InstitutionName": "Saint Wobblington Infirmary",
    "ReferringPhysicianName": "Quimbyfoo^Drhelper",
    "StationName": "PETSTATIONZK9",
    "SeriesDescription": "WB FDG Hortensiaqq Zqxwvbert",
}
#: What a leak looks like in any output: each value and its parts, and the birth date as ISO.
NEEDLES = sorted({v for value in IDENTITY.values() for v in (value, *value.replace("^", " ").split())
                  if len(v) >= 6} | {"1944-02-29"})


def _stamp(folder: Path, **extra) -> None:
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        for k, v in {**IDENTITY, **extra}.items():
            setattr(ds, k, v)
        ds.save_as(f)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """Two studies: one good (PET and CT), one failing (two PET series in one folder), so that errors.csv
    and logs are written too."""
    from carpet.synth import PhantomSpec, make_phantom
    from carpet.synth.dicom import write_phantom_dicom

    root = tmp_path_factory.mktemp("phi") / "root"
    write_phantom_dicom(make_phantom(PhantomSpec.small(seed=0)), root / "A01")
    _stamp(root / "A01" / "pet")
    _stamp(root / "A01" / "ct")
    shutil.copytree(root / "A01" / "pet", root / "C03" / "pet")
    shutil.copytree(root / "A01" / "pet", root / "C03" / "pet2")
    _stamp(root / "C03" / "pet2", SeriesInstanceUID=generate_uid())
    return root


def leaks(folder: Path) -> dict[str, list[str]]:
    """Needle -> the output files (relative) that hold it."""
    found: dict[str, list[str]] = {}
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        if path.name.endswith(".gz"):
            data = gzip.decompress(data)
        if path.suffix == ".pdf" and shutil.which("pdftotext"):
            data += subprocess.run(["pdftotext", str(path), "-"], capture_output=True, check=True).stdout
        text = data.decode("latin-1").lower()
        for needle in NEEDLES:
            if needle.lower() in text:
                found.setdefault(needle, []).append(str(path.relative_to(folder)))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("salt", [None, "s3cret"], ids=["plain", "pseudonymize"])
def test_batch_outputs_hold_no_identity(root, tmp_path, salt):
    out = tmp_path / "out"
    result = run_batch(root, out, workers=1, salt=salt, progress=False)
    assert result.counts["done"] == 1 and result.counts["failed"] == 1
    assert list(out.rglob("lesions.seg.dcm")), "the scan must cover DICOM SEGs"
    assert (out / "errors.csv").read_text().count("\n") == 2
    assert leaks(out) == {}
    seg = pydicom.dcmread(next(out.rglob("lesions.seg.dcm")))
    assert seg.PatientIdentityRemoved == "YES"
    assert str(seg.PatientName) == seg.PatientID == seg.PatientID.strip() != ""


@pytest.mark.slow
def test_keep_identity_keeps_it_and_the_scan_sees_it(root, tmp_path):
    run_quantify(root / "A01" / "pet", out_dir=tmp_path / "keep", keep_identity=True)
    found = leaks(tmp_path / "keep")
    assert set(found) >= {"MRN77301948", "Zqxwvbert", "ACC5517QX", "19440229"}
    assert set(sum(found.values(), [])) == {"lesions.seg.dcm"}


@pytest.mark.slow
def test_batch_keep_identity_puts_it_in_the_seg_only(root, tmp_path):
    """carpet batch --keep-identity: the identity in each study's SEG (as quantify --keep-identity), in no
    other file (tables, summaries, NIfTI, logs, errors); refused with --pseudonymize."""
    from typer.testing import CliRunner

    from carpet.cli import app

    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["batch", str(root), "--out", str(out), "--workers", "1", "--no-progress",
                                   "--keep-identity"])
    assert res.exit_code == 0, res.output
    found = leaks(out)
    assert set(found) >= {"MRN77301948", "Zqxwvbert", "ACC5517QX", "19440229"}
    assert set(sum(found.values(), [])) == {"studies/A01/lesions.seg.dcm"}
    seg = pydicom.dcmread(out / "studies" / "A01" / "lesions.seg.dcm")
    assert seg.PatientID == "MRN77301948" and seg.get("PatientIdentityRemoved") != "YES"
    res = CliRunner().invoke(app, ["batch", str(root), "--out", str(tmp_path / "o2"), "--keep-identity",
                                   "--pseudonymize", "--salt", "x"])
    assert res.exit_code == 1 and "contradict" in res.output
