"""`carpet quantify`'s physiology options say what they do, and the physiology provenance names its ruleset."""

import json

from typer.testing import CliRunner

from carpet.anatomy.physiology import RULES_VERSION
from carpet.cli import app
from carpet.quantify import quantify_study
from carpet.synth.phantom import PhantomSpec, make_phantom


def _option_help(text: str, option: str, next_option: str) -> str:
    """The help of ``option`` in `--help` (up to ``next_option``; rich boxes and line wraps removed)."""
    flat = " ".join(text.replace("│", " ").split())
    start = flat.index(option + " ")
    return flat[start:flat.index(next_option + " ", start)]


def test_help_tells_auto_exclude_from_keep_physiological():
    res = CliRunner().invoke(app, ["quantify", "--help"], terminal_width=200)
    assert res.exit_code == 0
    auto = _option_help(res.output, "--auto-exclude", "--keep-physiological")
    keep = _option_help(res.output, "--keep-physiological", "--baseline")
    assert "Deprecated" in auto and "already exclude the brain" in auto
    assert "Turn the physiology rules off" in keep and "review" in keep


def test_auto_exclude_warns_and_physiology_provenance_names_the_ruleset(tmp_path):
    phantom = make_phantom(PhantomSpec.small(seed=0).with_physiology())
    result = quantify_study(phantom.pet, method="suv4")
    prov = result.summary["excluded"]["provenance"]
    assert prov["ruleset"] == RULES_VERSION and "physiology.md" in prov["rules"]
    assert "PHYSIO_RULES" not in json.dumps(result.summary, default=str)
    paths = phantom.write_nifti(tmp_path / "in")
    res = CliRunner().invoke(app, ["quantify", str(paths["pet"]), "--auto-exclude", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert "--auto-exclude is deprecated" in " ".join(res.output.split())
