"""Reader overrides: sites and exclusions applied on the next run, recorded in provenance."""

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from carpet.cli import app
from carpet.errors import InputError
from carpet.overrides import read_overrides
from carpet.synth.phantom import PhantomSpec, make_phantom


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ovr")
    paths = make_phantom(PhantomSpec.small(seed=3)).write_nifti(folder / "in")
    runner = CliRunner()
    r = runner.invoke(app, ["quantify", str(paths["pet"]), "--ct", str(paths["ct"]), "--out", str(folder / "plain")])
    assert r.exit_code == 0, r.output
    return folder, paths


def test_override_changes_site_and_mtv_as_stated(study):
    folder, paths = study
    plain = pd.read_csv(folder / "plain" / "lesions.csv")
    before = json.loads((folder / "plain" / "summary.json").read_text())
    emd = plain[plain["site"] == "extramedullary"].iloc[0]
    gone = plain[plain["site"] == "bone"].iloc[0]
    (folder / "ovr.csv").write_text("study_id,lesion_id,action,site,reason\n"
                                    f"s1,{emd.lesion_id},site,bone,lytic on CT\n"
                                    f"s1,{gone.lesion_id},exclude,,ureter\n"
                                    "s2,1,exclude,,other study\n")
    r = CliRunner().invoke(app, ["quantify", str(paths["pet"]), "--ct", str(paths["ct"]), "--overrides",
                                 str(folder / "ovr.csv"), "--study-id", "s1", "--out", str(folder / "read")])
    assert r.exit_code == 0, r.output
    after = pd.read_csv(folder / "read" / "lesions.csv")
    summary = json.loads((folder / "read" / "summary.json").read_text())
    row = after[after["lesion_id"] == emd.lesion_id].iloc[0]
    assert row.site == "bone" and row.site_by == "reader"
    assert gone.lesion_id not in set(after["lesion_id"])          # the others keep their ids
    assert set(after["lesion_id"]) == set(plain["lesion_id"]) - {gone.lesion_id}
    assert summary["mtv_ml"] == pytest.approx(before["mtv_ml"] - gone.volume_ml)
    assert summary["n_lesions"] == before["n_lesions"] - 1
    assert summary["n_extramedullary"] == before["n_extramedullary"] - 1
    assert summary["n_bone"] == before["n_bone"]                  # one bone lesion out, one in
    applied = summary["provenance"]["overrides"]["applied"]
    assert {"lesion_id": int(gone.lesion_id), "action": "exclude", "reason": "ureter",
            "volume_ml_removed": pytest.approx(gone.volume_ml)} in applied
    assert {"lesion_id": int(emd.lesion_id), "action": "site", "site": "bone", "carpet_site": "extramedullary",
            "reason": "lytic on CT"} in applied
    assert len(summary["provenance"]["overrides"]["sha256"]) == 64


@pytest.mark.parametrize("text, message", [
    ("study_id,lesion_id,action\ns1,2,delete\n", "line 2, column 'action'"),
    ("study_id,lesion_id,action,site\ns1,2,site,lung\n", "line 2, column 'site'"),
    ("study_id,lesion_id,action\ns1,x,exclude\n", "line 2, column 'lesion_id'"),
    ("study_id,lesion\ns1,2\n", "missing column"),
    ("study_id,lesion_id,action,site\ns1,2,exclude,\ns1,2,site,bone\n", "more than one change"),
])
def test_bad_override_rows_are_named(tmp_path, text, message):
    (tmp_path / "o.csv").write_text(text)
    with pytest.raises(InputError, match=message):
        read_overrides(tmp_path / "o.csv")


def test_unknown_lesion_and_ambiguous_study_refused(study, tmp_path):
    folder, paths = study
    (tmp_path / "o.csv").write_text("study_id,lesion_id,action\ns1,99,exclude\ns2,1,exclude\n")
    runner = CliRunner()
    r = runner.invoke(app, ["quantify", str(paths["pet"]), "--overrides", str(tmp_path / "o.csv"),
                            "--out", str(tmp_path / "x")])
    assert r.exit_code == 1 and "several studies" in r.output
    r = runner.invoke(app, ["quantify", str(paths["pet"]), "--overrides", str(tmp_path / "o.csv"),
                            "--study-id", "s1", "--out", str(tmp_path / "x")])
    said = " ".join(r.output.split())
    assert r.exit_code == 1 and "has no lesion 99 (its lesions: 1, 2," in said and "line 2" in said


def test_review_page_draws_reader_exclusions_and_site_evidence(study):
    from carpet.report.review import EXCLUDED_COLOUR, site_reason

    folder, _ = study
    page = (folder / "read").joinpath("review.html")
    assert not page.exists()
    row = {"site": "bone", "bone_fraction": 0.5, "distance_to_bone_mm": 0.0, "depth_in_bone_mm": 5.0,
           "bone_contact_fraction": 0.8, "volume_outside_bone_ml": 1.25}
    assert site_reason(row) == ("bone: in bone 50%, distance to bone 0.0 mm, depth in bone 5.0 mm, "
                                "surface touching bone 80%, outside bone 1.25 mL")
    assert site_reason({**row, "site_by": "reader"}) == "bone: set by the reader (override)"
    assert EXCLUDED_COLOUR not in ("#0072B2", "#E69F00", "#D55E00", "#CC79A7", "#009E73")


def test_batch_applies_each_studys_overrides_and_reruns_only_when_they_change(study, tmp_path):
    from carpet.batch import run_batch

    folder, paths = study
    plain = pd.read_csv(folder / "plain" / "lesions.csv")
    for sid in ("s1", "s2"):
        (tmp_path / "root" / sid).mkdir(parents=True)
        for role in ("pet", "ct"):
            (tmp_path / "root" / sid / f"{role}.nii.gz").symlink_to(paths[role])
    gone = plain.iloc[0]
    ovr = tmp_path / "ovr.csv"
    ovr.write_text(f"study_id,lesion_id,action,site,reason\ns1,{gone.lesion_id},exclude,,bowel\n")
    first = run_batch(tmp_path / "root", tmp_path / "out", overrides=ovr, progress=False)
    imaging = pd.read_csv(first.paths["imaging"]).set_index("study_id")
    assert imaging.at["s1", "mtv_ml"] == pytest.approx(imaging.at["s2", "mtv_ml"] - gone.volume_ml)
    again = run_batch(tmp_path / "root", tmp_path / "out", overrides=ovr, progress=False)
    assert again.counts["skipped"] == 2
    ovr.write_text(f"study_id,lesion_id,action,site,reason\ns1,{gone.lesion_id},site,bone,lytic\n")
    third = run_batch(tmp_path / "root", tmp_path / "out", overrides=ovr, progress=False)
    assert third.outcomes.set_index("study_id")["status"].to_dict() == {"s1": "done", "s2": "skipped"}
    summary = json.loads((tmp_path / "out" / "studies" / "s1" / "summary.json").read_text())
    assert summary["provenance"]["overrides"]["applied"][0]["site"] == "bone"


def test_include_brings_back_an_excluded_component_as_the_next_lesion():
    from carpet.overrides import overrides_for
    from carpet.quantify import quantify_study
    from carpet.synth.phantom import PhantomSpec, make_phantom

    ph = make_phantom(PhantomSpec.small(seed=2, physiological_uptake=True))
    plain = quantify_study(ph.pet, ct=ph.ct, method="suv4")
    comp = plain.excluded_table.iloc[0]
    # the review page lists every excluded component with the component_id an include override names
    from carpet.report.review import StudyView, review_report

    view = StudyView(ph.pet, None, plain.labels, plain.lesions, "s")
    page = review_report(view, plain.summary, excluded=plain.excluded.array > 0, study_id="s")
    listed = [b["html"] for sec in page.sections if sec.title.startswith("Excluded as physiological")
              for b in sec.blocks if b["kind"] == "table"]
    assert len(listed) == 1 and all(f"<td>{o}</td>" in listed[0] for o in plain.excluded_table["organ"])
    assert listed[0].count("<tr>") == len(plain.excluded_table)   # body rows (the header row has a style)
    # the study table names its measures for a reader, with units, not by their summary.json keys
    study = [b["html"] for b in page.sections[0].blocks if b["kind"] == "table"][0]
    for label in ("Lesions", "MTV (mL)", "TLG (mL·SUV)", "SUVmax"):
        assert f"<td>{label}</td>" in study
    assert not any(key in study for key in ("n_lesions", "mtv_ml", "suv_max", "dmax_mm", "n_bone"))
    overrides = [b["html"] for b in page.sections[-1].blocks if b["kind"] == "table"][0]
    assert "<td>include</td>" in overrides and f"<td>{int(comp.component_id)}</td>" in overrides
    rows = pd.DataFrame({"study_id": ["s"], "lesion_id": [int(comp.component_id)], "action": ["include"],
                         "site": [""], "reason": ["not myocardium"], "line": [2]})
    read = quantify_study(ph.pet, ct=ph.ct, method="suv4", overrides=overrides_for(rows, None))
    s = read.summary
    new_id = plain.summary["n_lesions"] + 1
    assert s["n_lesions"] == new_id and new_id in set(read.lesions["lesion_id"])
    assert s["mtv_ml"] == pytest.approx(plain.summary["mtv_ml"] + comp.volume_ml)
    assert s["excluded"]["n_components"] == plain.summary["excluded"]["n_components"] - 1
    assert s["provenance"]["overrides"]["applied"] == [
        {"component_id": int(comp.component_id), "action": "include", "lesion_id": new_id,
         "reason": "not myocardium", "volume_ml_added": pytest.approx(comp.volume_ml)}]
    bad = rows.assign(lesion_id=[9])
    with pytest.raises(InputError, match="no excluded component 9"):
        quantify_study(ph.pet, ct=ph.ct, method="suv4", overrides=overrides_for(bad, None))
