"""Follow-up reads: alignment, lesion matching and the follow-up fields, against phantom pairs whose every
match is known (carpet.synth.pair)."""

import json

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from carpet.cli import app
from carpet.io import write_nifti
from carpet.quantify import quantify_study
from carpet.synth.pair import make_phantom_pair, rotation_matrix
from carpet.tracking import (Alignment, BaselineOutputs, align_scans, binned, match_lesions, track_followup)
from carpet.volume import Volume


def _truth_ids(carpet_labels: np.ndarray, truth_labels: np.ndarray) -> dict[int, int]:
    """carpet lesion id → phantom lesion id, by the truth label under the carpet lesion's voxels."""
    out = {}
    for lid in np.unique(carpet_labels[carpet_labels > 0]):
        under = truth_labels[carpet_labels == lid]
        ids, counts = np.unique(under[under > 0], return_counts=True)
        out[int(lid)] = int(ids[np.argmax(counts)])
    return out


def _read_pair(pair):
    base = quantify_study(pair.baseline.pet, ct=pair.baseline.ct, method="suv4")
    fu = quantify_study(pair.followup.pet, ct=pair.followup.ct, method="suv4")
    outputs = BaselineOutputs(base.summary, base.lesions, base.labels, base.extra["align_refs"])
    tracked = track_followup(outputs, fu.lesions, fu.labels, fu.summary, fu.extra["align_refs"])
    return base, fu, tracked


MOTIONS = [((0, 0, 0), (0, 0, 0)), ((0, 0, 10), (30, 0, 0)), ((10, 0, 0), (0, -20, 25)),
           ((-6, 8, -5), (-30, 30, -30))]


@pytest.mark.parametrize("rotation, shift", MOTIONS)
def test_every_lesion_matched_new_or_resolved_as_designed(rotation, shift):
    pair = make_phantom_pair(rotation_deg=rotation, shift_mm=shift)
    base, fu, tracked = _read_pair(pair)
    assert tracked.alignment.ok, tracked.alignment.reason
    # the transform carries the baseline lesion centres where the phantom put them (within 2 mm)
    centres = np.array([r["centre_mm"] for r in pair.baseline.truth["lesions"]])
    expected = centres @ rotation_matrix(rotation).T + np.asarray(shift, float)
    assert np.abs(tracked.alignment.to_followup(centres) - expected).max() < 2.0
    base_ids = _truth_ids(base.labels.array, pair.baseline.lesion_labels.array)
    fu_ids = _truth_ids(fu.labels.array, pair.followup.lesion_labels.array)
    assert sorted(base_ids.values()) == list(range(1, len(pair.baseline.truth["lesions"]) + 1))
    assert sorted(fu_ids.values()) == sorted(pair.truth["matches"])
    for row in tracked.lesions.itertuples():
        truth = pair.truth["matches"][fu_ids[row.lesion_id]]
        if truth is None:
            assert row.change == "new" and pd.isna(row.baseline_lesion_id)
        else:
            assert row.change == "matched" and base_ids[int(row.baseline_lesion_id)] == truth
            assert row.match_by == "overlap"     # the shrunk lesion still overlaps its aligned baseline
    status = {base_ids[int(r.baseline_lesion_id)]: r.status for r in tracked.baseline_lesions.itertuples()}
    assert sorted(k for k, v in status.items() if v == "resolved") == pair.truth["resolved"]
    assert all(v in ("matched", "resolved") for v in status.values())
    s = tracked.summary
    assert s["n_new_lesions"] == 2 and s["n_resolved_lesions"] == 2
    assert s["tracking"]["alignment"]["quality"]["dice_after"] > s["tracking"]["alignment"]["quality"][
        "dice_before"] or rotation == (0, 0, 0)


def test_follow_up_fields_with_and_without_new_lesions():
    pair = make_phantom_pair(rotation_deg=(0, 0, 5), shift_mm=(10, 0, 0))
    _, fu, tracked = _read_pair(pair)
    s = tracked.summary
    # the pair's new lesions: one in the spine (a focal bone lesion), one extramedullary
    assert s["response"]["category"] == "PMD" and s["response"]["reason"] == "new lesion(s)"
    assert s["follow_up"]["new_bone_lesion"] is True
    assert s["follow_up"]["impetus"]["new_fl_count"] == 1 and s["follow_up"]["impetus"]["new_emd"] is True
    assert s["follow_up"]["new_lesions_by_site"] == {"bone": 1, "extramedullary": 1}
    assert s["follow_up"]["metabolic_response"]["LUGANO_STYLE"]["reason"] == "new lesion(s)"
    # matched lesions carry the change from baseline: the phantom shrank every persisting lesion
    matched = tracked.lesions[tracked.lesions["change"] == "matched"]
    assert (matched["delta_volume_ml"] < 0).all() and (matched["delta_suv_max"] < 0).all()

    quiet = make_phantom_pair(rotation_deg=(0, 0, -5), shift_mm=(0, 10, 0), n_resolved=0, new_lesions=(),
                              shrink_suv=0.5)
    base, fu, tracked = _read_pair(quiet)
    s = tracked.summary
    assert s["n_new_lesions"] == 0 and s["n_resolved_lesions"] == 0
    drop = 100 * (fu.summary["suv_max"] - base.summary["suv_max"]) / base.summary["suv_max"]
    assert drop <= -30
    assert s["response"]["category"] == "PMR"          # DS 4-5 remains, SUVmax down by >= 30 %
    assert s["follow_up"]["new_bone_lesion"] is False
    assert s["follow_up"]["metabolic_response"]["LUGANO_STYLE"]["reason"].startswith("highest DS")


def _ball_labels(centres, radius=8.0, shape=(40, 40, 40)):
    grid = np.indices(shape).reshape(3, -1).T * 4.0
    lab = np.zeros(shape, np.int32)
    for k, c in enumerate(centres, start=1):
        lab[(((grid - c) ** 2).sum(axis=1) <= radius ** 2).reshape(shape)] = k
    vol = Volume(lab, (4.0, 4.0, 4.0))
    rows = [{"lesion_id": k, "centroid_x_mm": c[0], "centroid_y_mm": c[1], "centroid_z_mm": c[2],
             "suv_max": 10.0, "suv_peak": 8.0, "volume_ml": 2.0} for k, c in enumerate(centres, start=1)]
    return vol, pd.DataFrame(rows)


def test_matching_rule_overlap_then_distance_new_and_out_of_field():
    identity = Alignment(True, "CT", sitk.Transform(3, sitk.sitkIdentity), "rigid", {}, "test")
    base, base_t = _ball_labels([(40, 40, 40), (100, 40, 40), (40, 100, 40), (150, 150, 150)])
    # follow-up: 1 overlaps baseline 1; 2 is 19 mm from baseline 2 (no overlap: matched by distance);
    # 3 is 21 mm from baseline 3 (new); baseline 4 falls outside the follow-up's smaller field of view
    fu, fu_t = _ball_labels([(44, 40, 40), (100, 59, 40), (40, 100, 61)], shape=(30, 30, 30))
    m = match_lesions(base, base_t, fu, fu_t, identity)
    assert m.followup["change"].tolist() == ["matched", "matched", "new"]
    assert m.followup["match_by"].tolist() == ["overlap", "distance", ""]
    assert m.followup["baseline_lesion_id"].tolist()[:2] == [1, 2]
    assert m.followup["match_distance_mm"].tolist()[1] == pytest.approx(19.0)
    assert m.baseline["status"].tolist() == ["matched", "matched", "resolved", "out_of_field"]
    assert (m.n_new, m.n_resolved) == (1, 1)


def test_alignment_refused_with_reason_and_no_matching():
    pair = make_phantom_pair()
    base_ct = binned(pair.baseline.ct)
    # a "follow-up" with no bone at all: nothing to align the skeleton with
    other = base_ct.with_array(np.where(np.asarray(base_ct.array) > 100, 40.0, base_ct.array))
    a = align_scans(base_ct, other, modality="CT")
    assert not a.ok and ("Dice" in a.reason or "failed" in a.reason), a.reason
    outputs = BaselineOutputs({}, pd.DataFrame(), None, {"CT": base_ct})
    table = pd.DataFrame({"lesion_id": [1]})
    tracked = track_followup(outputs, table, None, {}, {"CT": other})
    assert tracked.summary["n_new_lesions"] is None and tracked.summary["tracking"]["status"] == "refused"
    assert tracked.lesions["change"].tolist() == [""] and tracked.lesions["baseline_lesion_id"].isna().all()


@pytest.mark.slow
def test_cli_followup_contract_files(tmp_path):
    pair = make_phantom_pair(rotation_deg=(0, 3, 0), shift_mm=(0, 0, 20))
    paths = {}
    for name, ph in (("base", pair.baseline), ("fu", pair.followup)):
        paths[name] = (write_nifti(ph.pet, tmp_path / f"{name}_pet.nii.gz"),
                       write_nifti(ph.ct, tmp_path / f"{name}_ct.nii.gz"))
    runner = CliRunner()
    r = runner.invoke(app, ["quantify", str(paths["base"][0]), "--ct", str(paths["base"][1]),
                            "--out", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "b" / "align_ct.nii.gz").is_file() and (tmp_path / "b" / "align_pt.nii.gz").is_file()
    r = runner.invoke(app, ["quantify", str(paths["fu"][0]), "--ct", str(paths["fu"][1]),
                            "--baseline", str(tmp_path / "b"), "--out", str(tmp_path / "f"), "--review"])
    assert r.exit_code == 0, r.output
    table = pd.read_csv(tmp_path / "f" / "lesions.csv")
    assert {"baseline_lesion_id", "change"} <= set(table.columns)
    assert set(table["change"]) == {"matched", "new"}
    assert table.loc[table["change"] == "new", "baseline_lesion_id"].isna().all()
    summary = json.loads((tmp_path / "f" / "summary.json").read_text())
    assert summary["n_new_lesions"] == 2 and summary["n_resolved_lesions"] == 2
    assert (tmp_path / "f" / "baseline_lesions.csv").is_file()
    tx = sitk.ReadTransform(str(tmp_path / "f" / "alignment.tfm"))
    assert np.allclose(tx.TransformPoint((0.0, 0.0, 0.0)), (0.0, 0.0, 20.0), atol=2.0)
    # the review page: the MIP, then one figure per lesion, a matched lesion drawn beside its baseline lesion
    page = (tmp_path / "f" / "review.html").read_text()
    assert page.count("<img") == 1 + len(table)
    for row in table.itertuples():
        assert f"Lesion {row.lesion_id}: {row.site}" in page
    assert "Status of every baseline lesion" in page and "resolved" in page
    assert "http" not in page.split("<body>")[1].split("Provenance")[0]   # nothing fetched


@pytest.mark.slow
def test_batch_pairs_each_patients_scans_by_date_and_writes_tracks(tmp_path):
    from carpet.batch import run_batch

    changing = make_phantom_pair(rotation_deg=(0, 0, 6), shift_mm=(15, 0, -10))
    stable = make_phantom_pair(rotation_deg=(4, 0, 0), shift_mm=(0, 20, 0), n_resolved=0, new_lesions=())
    root = tmp_path / "root"
    scans = {"a_first": changing.baseline, "a_later": changing.followup, "b_zlast": stable.baseline,
             "b_early": stable.followup}   # names sort against the dates: the table decides
    for sid, ph in scans.items():
        write_nifti(ph.pet, root / sid / "pet.nii.gz")
        write_nifti(ph.ct, root / sid / "ct.nii.gz")
    (tmp_path / "studies.csv").write_text("study_id,patient_id,study_date\na_first,P1,2024-01-10\n"
                                          "a_later,P1,2024-02-12\nb_zlast,P2,2024-03-01\nb_early,P2,2024-06-01\n")
    result = run_batch(root, tmp_path / "out", studies_table=tmp_path / "studies.csv", progress=False)
    assert result.counts["done"] == 4
    tracks = pd.read_csv(result.paths["tracks"])
    pairs = pd.read_csv(result.paths["pairs"])
    assert pairs[["patient_id", "baseline_study", "followup_study"]].values.tolist() == [
        ["P1", "a_first", "a_later"], ["P2", "b_zlast", "b_early"]]
    assert (pairs["status"] == "done").all()
    assert pairs["n_new_lesions"].tolist() == [2, 0] and pairs["n_resolved_lesions"].tolist() == [2, 0]
    p1 = tracks[tracks["patient_id"] == "P1"]
    first = p1[p1["study_id"] == "a_first"]
    later = p1[p1["study_id"] == "a_later"]
    assert set(first["change"]) == {"first"} and len(first) == 8
    assert later["change"].value_counts().to_dict() == {"matched": 6, "new": 2, "resolved": 2}
    # a matched lesion continues the track of the baseline lesion it matched; new ones start tracks
    by_lesion = first.set_index("lesion_id")["track_id"]
    for r in later[later["change"] == "matched"].itertuples():
        assert r.track_id == by_lesion[r.previous_lesion_id]
    assert set(later.loc[later["change"] == "new", "track_id"]).isdisjoint(set(first["track_id"]))
    assert tracks.loc[tracks["patient_id"] == "P2", "change"].value_counts().to_dict() == {"first": 8,
                                                                                         "matched": 8}
    # imaging.csv: each later scan read against the patient's earlier one by the same pairing (issue 13):
    # the follow-up columns hold the pair's reading, the first scans' stay empty
    imaging = pd.read_csv(result.paths["imaging"]).set_index("study_id")
    summaries = {sid: json.loads((tmp_path / "out" / "studies" / sid / "summary.json").read_text()) for sid in scans}
    follow_cols = ["baseline_study_id", "n_new_lesions", "n_resolved_lesions", "baseline_suv_max",
                   "delta_suv_max_pct", "lugano_category", "metcr_zamagni2021_vs_baseline"]
    assert imaging.loc[["a_first", "b_zlast"], follow_cols].isna().all().all()
    assert imaging.loc[["a_later", "b_early"], "baseline_study_id"].tolist() == ["a_first", "b_zlast"]
    assert imaging.loc[["a_later", "b_early"], "n_new_lesions"].tolist() == [2, 0]       # the pairs' design
    assert imaging.loc[["a_later", "b_early"], "n_resolved_lesions"].tolist() == [2, 0]
    for later, first in (("a_later", "a_first"), ("b_early", "b_zlast")):
        base, fu = summaries[first]["suv_max"], summaries[later]["suv_max"]
        assert imaging.at[later, "baseline_suv_max"] == pytest.approx(base, abs=1e-4)   # rounded to 4 places
        assert imaging.at[later, "delta_suv_max_pct"] == pytest.approx(100 * (fu - base) / base, abs=1e-4)
    # new lesions: progression by Lugano 2014 and no metabolic CR against the baseline (spec §2.4)
    assert imaging.at["a_later", "lugano_category"] == "PMD"
    vs_baseline = imaging.loc["a_later", [c for c in imaging if c.endswith("_vs_baseline")]]
    assert vs_baseline.notna().any() and not vs_baseline.eq(True).any()
