"""Progression patterns (Moffitt Table 2) and EMD/PMD transitions (Figure 2)."""

from __future__ import annotations

import pandas as pd

from carpet.cohort.patterns import emd_pmd_status, emd_pmd_transitions, pattern_summary, progression_patterns
from carpet.cohort.schema import read_assessments, read_patients


def test_patterns_and_isolated():
    progression = pd.DataFrame({
        "patient_id": ["A", "B", "C", "D", "E"],
        "progression_date": ["2024-05-01", "2024-05-01", "2024-05-01", "2024-05-01", ""],
        "progression_trigger": ["serum_m_protein", "new_lesion", "dflc+new_lesion", "urine_m_protein", ""]})
    patients = read_patients(pd.DataFrame({
        "patient_id": ["A", "B", "C", "D", "E"], "infusion_date": ["2024-01-01"] * 5,
        "emd_progression": ["false", "true", "false", None, "true"],
        "pmd_progression": ["false", "false", "true", None, "false"],
        "new_bone_progression": ["false", "false", "true", "false", None]}), name="p")
    labs = read_assessments(pd.DataFrame({
        "patient_id": ["A", "B", "C", "D"], "date": ["2024-05-10", "2024-04-20", "2024-07-01", "2024-05-01"],
        "parameter": ["bm_plasma_cells"] * 4, "value": ["4.9", "5", "60", "20"], "unit": ["%"] * 4}), name="l")
    pat = progression_patterns(progression, patients, labs).set_index("patient_id")
    assert list(pat.index) == ["A", "B", "C", "D"]                      # E did not progress
    assert list(pat["biochemical"]) == [True, False, True, True]
    # marrow >= 5 % within 30 days: A 4.9 no; B 5 yes; C's marrow is 61 days away -> unknown; D yes
    assert list(pat["marrow"]) == [False, True, None, True]
    assert list(pat["emd_or_pmd"]) == [False, True, True, None]
    assert list(pat["isolated_biochemical"]) == [True, False, False, False]
    assert pat.loc["B", "isolated_emd_or_pmd"] is False                 # B also has marrow involvement
    summary = pattern_summary(pat.reset_index()).set_index("pattern")
    assert (summary.loc["biochemical", "n"], summary.loc["biochemical", "n_known"]) == (3, 4)
    assert summary.loc["marrow", "percent"] == 100 * 2 / 3


def test_emd_pmd_status_and_transitions():
    assert [emd_pmd_status(True, True), emd_pmd_status(True, False), emd_pmd_status(False, True),
            emd_pmd_status(False, False), emd_pmd_status(None, False), emd_pmd_status(True, None)] == \
        ["emd_and_pmd", "emd_only", "pmd_only", "negative", "unknown", "unknown"]
    patients = pd.DataFrame({
        "emd_baseline": [False, False, True, True, False], "pmd_baseline": [False, False, False, True, True],
        "emd_progression": [False, True, True, True, None], "pmd_progression": [False, False, False, False, None]})
    t = emd_pmd_transitions(patients)
    assert t.loc["negative", "negative"] == 1 and t.loc["negative", "emd_only"] == 1
    assert t.loc["emd_only", "emd_only"] == 1 and t.loc["emd_and_pmd", "emd_only"] == 1
    assert t.loc["pmd_only", "unknown"] == 1 and int(t.to_numpy().sum()) == 5
    assert list(t.index) == list(t.columns) == ["negative", "emd_only", "pmd_only", "emd_and_pmd", "unknown"]


def test_marrow_window_is_inclusive():
    progression = pd.DataFrame({"patient_id": ["A", "B"], "progression_date": ["2024-05-01"] * 2,
                                "progression_trigger": ["serum_m_protein"] * 2})
    labs = read_assessments(pd.DataFrame({
        "patient_id": ["A", "B"], "date": ["2024-05-31", "2024-06-01"],  # 30 and 31 days after progression
        "parameter": ["bm_plasma_cells"] * 2, "value": ["40", "40"], "unit": ["%"] * 2}), name="l")
    pat = progression_patterns(progression, None, labs, window_days=30).set_index("patient_id")
    assert pat.loc["A", "marrow"] is True and pat.loc["B", "marrow"] is None


def test_empty_tables_give_empty_results():
    import numpy as np
    patients = read_patients(pd.DataFrame({"patient_id": ["A"], "infusion_date": ["2024-01-01"]}), name="p")
    labs = read_assessments(pd.DataFrame(columns=["patient_id", "date", "parameter", "value", "unit"]), name="l")
    assert labs["patient_id"].dtype == object
    progression = pd.DataFrame({"patient_id": ["A"], "progression_date": ["2024-05-01"],
                                "progression_trigger": ["serum_m_protein"]})
    pat = progression_patterns(progression, patients, labs)
    assert pat.loc[0, "marrow"] is None and bool(pat.loc[0, "biochemical"])
    assert emd_pmd_status(np.float32("nan"), False) == "unknown"


def test_marrow_before_the_infusion_is_not_marrow_at_progression():
    """A refractory progression 20 days after infusion must not count the pre-infusion biopsy."""
    progression = pd.DataFrame({"patient_id": ["A"], "progression_date": ["2024-01-21"],
                                "progression_trigger": ["serum_m_protein"]})
    patients = read_patients(pd.DataFrame({"patient_id": ["A"], "infusion_date": ["2024-01-01"]}), name="p")
    labs = read_assessments(pd.DataFrame({
        "patient_id": ["A", "A"], "date": ["2023-12-25", "2024-01-01"], "parameter": ["bm_plasma_cells"] * 2,
        "value": ["40", "30"], "unit": ["%"] * 2}), name="l")
    assert progression_patterns(progression, patients, labs).loc[0, "marrow"] is None
    assert progression_patterns(progression, None, labs).loc[0, "marrow"] == True  # noqa: E712 (no infusion date)


def test_patterns_from_the_imwg_engine_equal_the_simulated_truth():
    """Table 2 from raw tables: IMWG on the simulated labs, then patterns, against the simulator's own flags."""
    from carpet.scores.imwg import assess_cohort
    from carpet.synth.cohort import simulate_cohort

    c = simulate_cohort("moffitt_post_cart", seed=7)
    labs = c.lab_series(list(c.patients["patient_id"]))  # the 106 who progressed (not the other treated)
    pt = read_patients(c.patients.drop(columns=[k for k in c.patients if k.startswith("pattern_")]), name="p")
    pat = progression_patterns(assess_cohort(c.patients, labs).progression, pt,
                               read_assessments(labs, patients=pt)).set_index("patient_id")
    truth = c.patients.set_index("patient_id")
    assert len(pat) == len(truth)
    for mine, theirs in (("biochemical", "pattern_biochemical"), ("marrow", "pattern_marrow"),
                         ("new_bone", "pattern_bone")):
        assert pat[mine].tolist() == truth[theirs].astype(bool).tolist(), mine
    known = truth["pattern_emd"].notna()
    e = (truth["pattern_emd"].fillna(False) | truth["pattern_pmd"].fillna(False)).astype(bool)
    assert pat.loc[known, "emd_or_pmd"].tolist() == e[known].tolist()
    assert pat.loc[~known, "emd_or_pmd"].map(lambda v: v is None or v is True).all()
    # isolated patterns: exactly the patients whose only finding is that one (Table 2 lower rows)
    flags = pd.DataFrame({"b": truth["pattern_biochemical"].astype(bool), "m": truth["pattern_marrow"].astype(bool),
                          "n": truth["pattern_bone"].astype(bool), "e": e})
    only = flags.sum(axis=1) == 1
    for mine, col in (("isolated_biochemical", "b"), ("isolated_new_bone", "n"), ("isolated_emd_or_pmd", "e")):
        expected = only & flags[col] & known
        assert (pat[mine] == True).reindex(truth.index).tolist() == expected.tolist(), mine  # noqa: E712
    assert (pat["isolated_marrow"] == True).sum() == 0  # noqa: E712  (the simulator never isolates marrow)
    assert summary_percent(pat, "marrow") == 100 * truth["pattern_marrow"].mean()


def summary_percent(pat, pattern):
    return pattern_summary(pat.reset_index()).set_index("pattern").loc[pattern, "percent"]
