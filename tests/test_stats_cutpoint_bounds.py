"""cutpoint without bounds (min_prop=0, max_prop=1) as maxstat treats it (``fixtures/r/cutpoint_bounds.R``): the
same candidate cuts (maxstat drops the last one), the same statistic, Lau94 p, and Lau92 p = Inf as R prints."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from _r_reference import close
from carpet.stats import cutpoint

FIXTURES = Path(__file__).parent / "fixtures" / "r"
R = json.loads((FIXTURES / "cutpoint_bounds_r.json").read_text())


def test_cutpoint_without_bounds_matches_maxstat():
    d = pd.read_csv(FIXTURES / "tied_cohort.csv")
    cp = cutpoint(d["time"], d["event"], d["mtv"], min_prop=0, max_prop=1)
    close(cp.cuts, R["full/cuts"], rel=0)
    close(cp.statistics, R["full/stats"], rel=1e-9)
    close([cp.statistic, cp.value], [R["full/statistic"], R["full/estimate"]], rel=1e-9)
    close(cp.p_value_lau94, R["full/Lau94/p"], rel=1e-6)
    assert R["full/p_lau92_is_inf"] and math.isinf(cp.p_value)
