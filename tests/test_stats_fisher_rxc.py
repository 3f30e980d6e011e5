"""carpet's exact r×c Fisher test (network algorithm) against R's fisher.test (``fixtures/r/fisher_rxc.R``),
including the 4×4 EMD/PMD transitions table of the demo's Moffitt cohort, built here the way the demo builds it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from carpet.stats.table1 import fisher_test

FIXTURES = Path(__file__).parent / "fixtures" / "r"
R = json.loads((FIXTURES / "fisher_rxc_r.json").read_text())


def table(name):
    return np.reshape(R[f"{name}/table"], R[f"{name}/dim"]).astype(int)


@pytest.mark.parametrize("name", ["published", "wide3x6"])
def test_fisher_rxc_matches_r(name):
    res = fisher_test(table(name))
    assert res.test == "Fisher exact" and res.p_text == ""
    assert res.p_value == pytest.approx(R[f"{name}/p"], rel=1e-6)


@pytest.mark.slow
def test_a_harder_4x4_table_is_exact_too():
    # the forward-only enumeration gave up on this one (> 2,000,000 partial tables) and fell back to Monte Carlo
    res = fisher_test(table("balanced106"))
    assert res.test == "Fisher exact"
    assert res.p_value == pytest.approx(R["balanced106/p"], rel=1e-6)


def test_demo_moffitt_transitions_get_the_exact_p():
    import pandas as pd

    from carpet.cohort.patterns import emd_pmd_status
    from carpet.stats.transitions import transitions
    from carpet.synth.cohort import simulate_cohort

    p = simulate_cohort("moffitt_post_cart", seed=2025).patients
    labels = {"negative": "None", "emd_only": "EMD", "pmd_only": "PMD", "emd_and_pmd": "EMD+PMD", "unknown": None}
    d = pd.DataFrame({"before": [labels[emd_pmd_status(e, m)] for e, m in zip(p.emd_baseline, p.pmd_baseline)],
                      "after": [labels[emd_pmd_status(e, m)] for e, m in zip(p.emd_progression, p.pmd_progression)]})
    order = ["None", "EMD", "PMD", "EMD+PMD"]
    tr = transitions(d, "before", "after", order=order)
    assert len(d) == 106
    np.testing.assert_array_equal(tr.table.loc[order, order].to_numpy(), table("demo_moffitt"))
    assert tr.test.test == "Fisher exact"
    assert tr.test.p_value == pytest.approx(R["demo_moffitt/p"], rel=1e-6)
