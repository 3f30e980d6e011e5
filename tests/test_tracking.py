"""Follow-up reads: alignment, lesion matching and the follow-up fields, against phantom pairs whose every
match is known (carpet.synth.pair)."""

import json
import re

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
    # titled by a pseudonym (the PET's hash), never by the input's file or folder name (it may hold a name)
    pet_hash = summary["provenance"]["inputs"]["pet"]["sha256"]
    assert re.search(rf"<title>Review — carpet-{pet_hash[:16]}</title>", page), page[:300]
    assert "fu_pet" not in page.split("Provenance")[0]
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


def _ball_scan(balls, shape=(40, 40, 40)):
    """Label map of balls (centre mm, radius mm) on a 4 mm grid, label k for the k-th ball."""
    grid = np.indices(shape).reshape(3, -1).T * 4.0
    lab = np.zeros(shape, np.int32)
    for k, (c, r) in enumerate(balls, start=1):
        lab[(((grid - c) ** 2).sum(axis=1) <= r ** 2).reshape(shape)] = k
    return Volume(lab, (4.0, 4.0, 4.0))


def _lesion_rows(balls, suv_max, ds, review):
    return pd.DataFrame([{"lesion_id": k, "centroid_x_mm": c[0], "centroid_y_mm": c[1], "centroid_z_mm": c[2],
                          "suv_max": s, "suv_peak": s - 1, "volume_ml": 1.0, "deauville": d, "review": rv,
                          "review_reason": "split off the bladder" if rv else ""}
                         for k, ((c, _), s, d, rv) in enumerate(zip(balls, suv_max, ds, review), start=1)])


def test_physiology_excluded_on_one_scan_and_kept_on_the_other_is_neither_resolved_nor_new():
    """A hot bladder kept (flagged) at baseline and excluded at follow-up, a kidney excluded at baseline and
    kept at follow-up: the reading must equal the one where the physiology rules had removed both on both
    scans (the truth), and the two components are reported as physiology_mismatch."""
    from carpet.tracking import ExcludedUptake, follow_up_reading

    identity = Alignment(True, "CT", sitk.Transform(3, sitk.sitkIdentity), "rigid", {}, "test")
    tumour, bladder, kidney = ((40.0, 40.0, 40.0), 8.0), ((100.0, 100.0, 60.0), 16.0), ((60.0, 120.0, 120.0), 12.0)
    base_labels, fu_labels = _ball_scan([tumour, bladder]), _ball_scan([tumour, kidney])
    base_t = _lesion_rows([tumour, bladder], [9.0, 17.0], [5, 5], [False, True])
    fu_t = _lesion_rows([tumour, kidney], [8.0, 6.0], [3, 5], [False, False])
    base_ex = ExcludedUptake(_ball_scan([kidney]), pd.DataFrame({"component_id": [1], "organ": ["kidney"]}))
    fu_ex = ExcludedUptake(_ball_scan([bladder]), pd.DataFrame({"component_id": [1], "organ": ["bladder"]}))
    base_s = {"n_lesions": 2, "suv_max": 17.0}
    fu_s = {"n_lesions": 2, "suv_max": 8.0, "deauville": {"study": 5}, "marrow": {"deauville": 2}, "impetus": {}}

    m = match_lesions(base_labels, base_t, fu_labels, fu_t, identity, base_excluded=base_ex, fu_excluded=fu_ex)
    assert m.baseline["status"].tolist() == ["matched", "physiology_mismatch"]
    assert m.followup["change"].tolist() == ["matched", "physiology_mismatch"]
    assert "bladder at follow-up" in m.baseline["physiology_note"][1]
    assert "kidney at baseline" in m.followup["physiology_note"][1]
    assert (m.n_new, m.n_resolved, m.n_physiology_mismatch) == (0, 0, 2)
    got = follow_up_reading(base_s, fu_s, m)

    # truth: the same two scans with the physiology taken out of both (what perfect rules would give)
    truth_m = match_lesions(_ball_scan([tumour]), base_t[:1], _ball_scan([tumour]), fu_t[:1], identity)
    truth = follow_up_reading({"n_lesions": 1, "suv_max": 9.0}, {**fu_s, "n_lesions": 1, "deauville": {"study": 3}},
                              truth_m)
    assert (got["n_new_lesions"], got["n_resolved_lesions"]) == (truth["n_new_lesions"], truth["n_resolved_lesions"])
    for key in ("category", "delta_suv_max_pct", "followup_ds"):
        assert got["response"][key] == truth["response"][key], key
    assert got["response"]["category"] == "CMR"
    for rule, result in truth["follow_up"]["metabolic_response"].items():
        if rule != "default_rule":
            assert got["follow_up"]["metabolic_response"][rule]["met_cr"] == result["met_cr"], rule
    assert got["follow_up"]["metabolic_response"]["ZAMAGNI2021"]["met_cr"] is True
    assert got["n_physiology_mismatch"] == 2 and "check them" in got["response"]["physiology_mismatch"]

    # a real lesion next to (not in) the other scan's organ stays resolved / new; without the excluded
    # uptake the old reading comes back
    m2 = match_lesions(base_labels, base_t, fu_labels, fu_t, identity)
    assert m2.baseline["status"].tolist() == ["matched", "resolved"] and m2.followup["change"].tolist()[1] == "new"
    near = _ball_scan([((100.0, 100.0, 100.0), 16.0)])   # the "bladder" 40 mm away, touching no lesion
    m3 = match_lesions(base_labels, base_t, fu_labels, fu_t, identity, fu_excluded=ExcludedUptake(near))
    assert m3.baseline["status"].tolist() == ["matched", "resolved"]


def test_physiology_overlap_fraction_decides_for_an_unflagged_lesion():
    from carpet.tracking import ExcludedUptake

    identity = Alignment(True, "CT", sitk.Transform(3, sitk.sitkIdentity), "rigid", {}, "test")
    lesion = ((80.0, 80.0, 80.0), 8.0)
    base_t = _lesion_rows([lesion], [6.0], [5], [False])
    empty = _ball_scan([])
    # the follow-up's organ covers part of the (unflagged) lesion: under half -> resolved, over half -> mismatch
    for organ_centre, expected in (((80.0, 80.0, 92.0), "resolved"), ((80.0, 80.0, 84.0), "physiology_mismatch")):
        ex = ExcludedUptake(_ball_scan([(organ_centre, 12.0)]))
        m = match_lesions(_ball_scan([lesion]), base_t, empty, base_t[:0], identity, fu_excluded=ex)
        assert m.baseline["status"].tolist() == [expected], organ_centre
        flagged = match_lesions(_ball_scan([lesion]), base_t.assign(review=True), empty, base_t[:0], identity,
                                fu_excluded=ex)
        assert flagged.baseline["status"].tolist() == ["physiology_mismatch"]
    # a follow-up lesion inside the baseline's excluded kidney is a mismatch even with a baseline lesion 16 mm
    # away: lying in the organ beats the distance match (the baseline lesion resolved)
    kidney = ((80.0, 80.0, 80.0), 12.0)
    near = ((80.0, 80.0, 96.0), 3.0)
    m = match_lesions(_ball_scan([near]), base_t, _ball_scan([((80.0, 80.0, 80.0), 6.0)]), base_t, identity,
                      base_excluded=ExcludedUptake(_ball_scan([kidney])))
    assert m.followup["change"].tolist() == ["physiology_mismatch"] and m.followup["baseline_lesion_id"].isna().all()
    assert m.baseline["status"].tolist() == ["resolved"]


def _physiological_read(seed, folder=None, **kw):
    from carpet.synth.phantom import PhantomSpec
    from carpet.tracking import ExcludedUptake

    pair = make_phantom_pair(PhantomSpec.small(seed=seed).with_physiology(), rotation_deg=(0, 3, 0),
                             shift_mm=(0, 0, 20), shrink_radius=0.95, shrink_suv=1.0, **kw)
    if folder is not None:   # through the files: the baseline folder's excluded.nii.gz / .csv, run_quantify's glue
        from carpet.quantify import run_quantify

        paths = {name: (write_nifti(ph.pet, folder / f"{name}_pet.nii.gz"),
                        write_nifti(ph.ct, folder / f"{name}_ct.nii.gz"))
                 for name, ph in (("base", pair.baseline), ("fu", pair.followup))}
        base = run_quantify(paths["base"][0], ct_path=paths["base"][1], out_dir=folder / "b")
        fu = run_quantify(paths["fu"][0], ct_path=paths["fu"][1], out_dir=folder / "f", baseline_dir=folder / "b")
        return pair, base, fu, fu.extra["tracked"]
    base = quantify_study(pair.baseline.pet, ct=pair.baseline.ct, method="suv4")
    fu = quantify_study(pair.followup.pet, ct=pair.followup.ct, method="suv4")
    outputs = BaselineOutputs(base.summary, base.lesions, base.labels, base.extra["align_refs"],
                              excluded=ExcludedUptake(base.excluded, base.excluded_table))
    tracked = track_followup(outputs, fu.lesions, fu.labels, fu.summary, fu.extra["align_refs"],
                             excluded=ExcludedUptake(fu.excluded, fu.excluded_table))
    return pair, base, fu, tracked


@pytest.mark.parametrize("seed, files", [(2, False), (3, True)])
def test_physiological_pair_counts_new_and_resolved_as_the_truth(seed, files, tmp_path):
    """Phantom pair with brain, heart, kidneys, ureters, bladder: ureter pieces split off the bladder (kept,
    flagged) at baseline are part of the excluded bladder at follow-up; they used to be 'resolved'."""
    pair, base, fu, tracked = _physiological_read(seed, tmp_path if files else None)
    carpet, truth_labels = np.asarray(base.labels.array), np.asarray(pair.baseline.lesion_labels.array)
    base_ids = {}      # carpet lesion -> phantom lesion under it (None: physiology kept as a lesion)
    for lid in np.unique(carpet[carpet > 0]):
        under = truth_labels[carpet == lid]
        base_ids[int(lid)] = int(np.bincount(under[under > 0]).argmax()) if (under > 0).any() else None
    status = tracked.baseline_lesions.set_index("baseline_lesion_id")["status"]
    resolved = sorted(base_ids[i] for i in status.index[status == "resolved"])
    assert resolved == pair.truth["resolved"]
    s = tracked.summary
    assert (s["n_new_lesions"], s["n_resolved_lesions"]) == (2, 2)
    assert s["response"]["category"] == "PMD" and s["response"]["reason"] == "new lesion(s)"
    # which scan keeps what the other excludes depends on the rules of the day (ureter pieces kept at baseline;
    # organs missed on the moved follow-up before its cut ends stopped reading as head or legs); the mismatch
    # rule itself is tested on made-up scans above
    mismatched = status.index[status == "physiology_mismatch"]
    fu_mismatched = tracked.lesions[tracked.lesions["change"] == "physiology_mismatch"]
    assert s["n_physiology_mismatch"] == len(mismatched) + len(fu_mismatched)
    assert all(base_ids[i] is None for i in mismatched)      # never a real baseline lesion
    assert fu_mismatched["review"].all()
    notes = pd.concat([tracked.baseline_lesions.loc[status.to_numpy() == "physiology_mismatch", "physiology_note"],
                       fu_mismatched["physiology_note"]])
    assert set(notes.str.split(" ").str[2]) <= {"bladder", "kidney", "myocardium", "brain"}
    if files:
        written = json.loads((tmp_path / "f" / "summary.json").read_text())
        assert (written["n_new_lesions"], written["n_resolved_lesions"]) == (2, 2)
        table = pd.read_csv(tmp_path / "f" / "baseline_lesions.csv")
        assert (table["status"] == "physiology_mismatch").sum() == len(mismatched)


@pytest.mark.slow
def test_physiological_pair_without_new_lesions_is_not_progression():
    """Truth: no new lesion, 2 resolved, the others unchanged in SUV -> Lugano NMR, no 'new lesion' metCR
    failure. Physiology one scan keeps and the other excludes used to read as new lesions (PMD); since the
    moved follow-up's cut ends no longer read as head or legs, both scans exclude the same organs."""
    pair, base, fu, tracked = _physiological_read(3, new_lesions=())
    s = tracked.summary
    assert (s["n_new_lesions"], s["n_resolved_lesions"]) == (0, 2)
    assert s["response"]["category"] == "NMR" and abs(s["response"]["delta_suv_max_pct"]) < 30
    assert s["follow_up"]["metabolic_response"]["LUGANO_STYLE"]["reason"] != "new lesion(s)"
