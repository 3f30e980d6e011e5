"""Provenance records and input hashes; the error message format every command prints."""

import hashlib

import pytest

from carpet import __version__
from carpet.errors import InputError
from carpet.provenance import file_sha256, provenance


def test_file_and_folder_hashes_match_hashlib(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "b.dcm").write_bytes(b"second")
    (tmp_path / "d" / "sub" / "a.dcm").write_bytes(b"first")
    assert file_sha256(tmp_path / "d" / "b.dcm") == hashlib.sha256(b"second").hexdigest()
    # a folder: relative path then content of each file, in sorted path order ('b.dcm' < 'sub/a.dcm')
    expected = hashlib.sha256(b"b.dcm" + b"second" + b"sub/a.dcm" + b"first").hexdigest()
    assert file_sha256(tmp_path / "d") == expected
    (tmp_path / "d" / "sub" / "a.dcm").write_bytes(b"changed")
    assert file_sha256(tmp_path / "d") != expected
    with pytest.raises(InputError, match="missing.nii.gz: file not found"):
        file_sha256(tmp_path / "missing.nii.gz")


def test_provenance_carries_version_time_and_fields():
    rec = provenance(method="suv4", threshold_suv=4.0)
    assert rec["carpet_version"] == __version__ and rec["created_utc"].endswith("+00:00")
    assert rec["method"] == "suv4" and rec["threshold_suv"] == 4.0


def test_input_error_names_file_place_and_fix():
    err = InputError("expected a number of kg", source="pet/1.dcm", where="PatientWeight (0010,1030)",
                     hint="pass --weight-kg")
    assert str(err) == "pet/1.dcm: PatientWeight (0010,1030): expected a number of kg (pass --weight-kg)"
    assert str(InputError("bad")) == "bad" and isinstance(err, ValueError)
