"""Table 1 and transitions: counts, percentages and p-values against independent computations
(pandas crosstab + scipy written here, brute-force enumeration) and R values in ../shared/reference."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from carpet.errors import InputError
from carpet.report.format import mc_p_value, p_value
from carpet.stats.table1 import fisher_test, table1, wilcox_test
from carpet.stats.transitions import transitions


def _r_values(reference, dataset: str, prefix: str) -> dict:
    data = json.loads(reference("survival", "reference_values.json").read_text())
    return {r["what"][len(prefix):]: r["value"] for r in data["values"]
            if r["dataset"] == dataset and r["what"].startswith(prefix)}


def _cohort(n=106, seed=7) -> pd.DataFrame:
    """A simulated myeloma cohort shaped like the progression study's Table 1."""
    rng = np.random.default_rng(seed)
    emd = rng.random(n) < 0.33
    df = pd.DataFrame({
        "emd": np.where(emd, "Any EMD", "No EMD"),
        "age": np.round(rng.normal(65, 9, n)),
        "prior_lines": rng.poisson(6, n).astype(float),
        "male": (rng.random(n) < 0.56).astype(int),
        "race": rng.choice(["White", "African American", "Hispanic", "Other"], n, p=[.66, .14, .16, .04]),
        "ecog": rng.choice(["0-1", "2", ">=3"], n, p=[.89, .09, .02]),
        "heavy_chain": rng.choice(["IgG", "IgA", "IgD", "None"], n, p=[.57, .11, .01, .31]),
    })
    df.loc[rng.choice(n, 5, replace=False), "age"] = np.nan
    df.loc[rng.choice(n, 3, replace=False), "race"] = None
    return df


def _parse_count(cell: str) -> tuple[int, float]:
    n, pct = cell.split(" (")
    return int(n), float(pct.rstrip("%)"))


def test_table1_counts_percentages_and_p_match_independent_computation():
    df = _cohort()
    t = table1(df, "emd", continuous=["age"], categorical=["male", "race", "ecog"], nonnormal=["prior_lines"],
               labels={"male": "Male"}, order={"emd": ["Any EMD", "No EMD"]})
    tab = t.table
    assert list(tab.columns) == ["variable", "level", "Overall", "Any EMD", "No EMD", "p", "test", "missing"]
    assert tab.iloc[0][["Overall", "Any EMD", "No EMD"]].tolist() == [
        str(len(df)), str((df.emd == "Any EMD").sum()), str((df.emd == "No EMD").sum())]

    # categorical cells: crosstab counts and column percentages of non-missing values
    for var in ("race", "ecog"):
        ct = pd.crosstab(df[var], df["emd"])
        start = tab.index[tab["variable"] == f"{var}, n (%)"][0]
        block = tab.iloc[start:start + len(ct)]
        for _, row in block.iterrows():
            for g in ("Any EMD", "No EMD"):
                n, pct = _parse_count(row[g])
                assert n == ct.loc[row["level"], g]
                assert pct == pytest.approx(100 * n / ct[g].sum(), abs=0.5)
            n_all, _ = _parse_count(row["Overall"])
            assert n_all == ct.loc[row["level"]].sum()
        assert block.iloc[0]["missing"] == str(df[var].isna().sum())
        chi2, p, dof, expected = stats.chi2_contingency(ct.to_numpy())
        if expected.min() >= 5:
            assert block.iloc[0]["p"] == pytest.approx(p, rel=1e-10)
        else:
            assert block.iloc[0]["test"] == "Fisher exact"

    # a 0/1 variable is one row, the "1" level
    male = tab[tab["variable"] == "Male, n (%)"]
    assert len(male) == 1 and male.iloc[0]["level"] == ""
    assert _parse_count(male.iloc[0]["Any EMD"])[0] == int(df.male[df.emd == "Any EMD"].sum())

    # continuous: mean (SD) + Welch; median (IQR) + Mann-Whitney
    age = tab[tab["variable"] == "age, mean (SD)"].iloc[0]
    a = df.age[df.emd == "Any EMD"].dropna()
    b = df.age[df.emd == "No EMD"].dropna()
    assert age["Any EMD"] == f"{a.mean():.1f} ({a.std():.1f})"
    assert age["missing"] == "5"
    assert age["p"] == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-12)
    lines = tab[tab["variable"] == "prior_lines, median (IQR)"].iloc[0]
    x = df.prior_lines[df.emd == "No EMD"]
    assert lines["No EMD"] == f"{x.median():.1f} ({x.quantile(.25):.1f}–{x.quantile(.75):.1f})"
    # R's wilcox.test with ties: normal approximation with continuity correction, written out here
    xa, xb = df.prior_lines[df.emd == "Any EMD"], df.prior_lines[df.emd == "No EMD"]
    ranks = stats.rankdata(np.concatenate([xa, xb]))
    n1, n2 = len(xa), len(xb)
    w = ranks[:n1].sum() - n1 * (n1 + 1) / 2
    _, tie_counts = np.unique(ranks, return_counts=True)
    var = n1 * n2 / 12 * ((n1 + n2 + 1) - (tie_counts**3 - tie_counts).sum() / ((n1 + n2) * (n1 + n2 - 1)))
    z = (abs(w - n1 * n2 / 2) - 0.5) / math.sqrt(var)
    assert lines["p"] == pytest.approx(2 * stats.norm.sf(z), rel=1e-9)
    assert t.tests.set_index("variable").loc["prior_lines", "statistic"] == w


def test_table1_median_iqr_uses_r_type7_quantiles():
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"grp": np.repeat(["a", "b"], [13, 18]), "mtv_ml": rng.lognormal(3, 1, 31)})
    row = table1(df, "grp", nonnormal=["mtv_ml"], decimals=3).table.iloc[1]

    def type7(v, p):  # R quantile(type = 7): x[h] + (h - floor h)(x[h+1] - x[h]), h = (n - 1)p, 0-based
        v = np.sort(v)
        h = (len(v) - 1) * p
        lo = int(np.floor(h))
        return v[lo] + (h - lo) * (v[min(lo + 1, len(v) - 1)] - v[lo])

    for g in ("a", "b"):
        v = df.mtv_ml[df.grp == g].to_numpy()
        assert row[g] == f"{type7(v, .5):.3f} ({type7(v, .25):.3f}–{type7(v, .75):.3f})"


def test_table1_rows_without_a_group_count_in_overall_only():
    df = _cohort()
    df.loc[[0, 5, 9], "emd"] = None
    t = table1(df, "emd", categorical=["race"], nonnormal=["prior_lines"])
    known = df.dropna(subset=["emd"])
    ref = table1(known, "emd", categorical=["race"], nonnormal=["prior_lines"])
    pd.testing.assert_frame_equal(t.tests, ref.tests)  # the tests see the rows with a group only
    assert t.table.loc[0, "Overall"] == str(len(df)) and t.provenance["group_missing_rows"] == 3
    white = t.table[t.table["level"] == "White"].iloc[0]
    assert _parse_count(white["Overall"])[0] == int((df.race == "White").sum())


def test_table1_binary_variable_shows_its_yes_row_even_when_nobody_has_it():
    df = pd.DataFrame({"g": ["a", "b"] * 5, "male": [0] * 10, "flag": [False] * 10, "smoker": [0, 1] * 5})
    tab = table1(df, "g", categorical=["male", "flag", "smoker"], labels={"male": "Male"}).table.set_index("variable")
    assert tab.loc["Male, n (%)", ["Overall", "a", "b"]].tolist() == ["0 (0%)"] * 3  # was "10 (100%)": the zeros
    assert tab.loc["flag, n (%)", "Overall"] == "0 (0%)"
    assert tab.loc["smoker, n (%)", ["a", "b"]].tolist() == ["0 (0%)", "5 (100%)"]


def test_table1_outputs(tmp_path):
    t = table1(_cohort(), "emd", continuous=["age"], categorical=["race"])
    assert t.to_csv(tmp_path / "t1.csv").exists()
    back = pd.read_csv(tmp_path / "t1.csv", keep_default_na=False)
    assert back["Overall"].tolist() == t.table["Overall"].tolist()
    t.to_excel(tmp_path / "t1.xlsx")
    assert pd.read_excel(tmp_path / "t1.xlsx", sheet_name="Table 1").shape == t.table.shape
    html = t.to_html(tmp_path / "t1.html")
    assert "<table" in html and "race, n (%)" in html and (tmp_path / "t1.html").read_text() == html
    assert t.provenance["method"] == "table1" and "carpet_version" in str(t.provenance)


def test_table1_three_groups_uses_welch_anova_and_kruskal():
    df = _cohort()
    df["grp"] = np.resize(["a", "b", "c"], len(df))
    t = table1(df, "grp", continuous=["age"], nonnormal=["prior_lines"]).tests.set_index("variable")
    samples = [df.prior_lines[df.grp == g] for g in "abc"]
    assert t.loc["prior_lines", "p_value"] == pytest.approx(stats.kruskal(*samples).pvalue, rel=1e-12)
    # Welch's ANOVA (R oneway.test default), written out from its textbook formula
    groups = [df.age[df.grp == g].dropna().to_numpy() for g in "abc"]
    w = np.array([len(g) / g.var(ddof=1) for g in groups])
    m = np.array([g.mean() for g in groups])
    k = len(groups)
    grand = (w * m).sum() / w.sum()
    lam = ((1 - w / w.sum()) ** 2 / np.array([len(g) - 1 for g in groups])).sum()
    f = ((w * (m - grand) ** 2).sum() / (k - 1)) / (1 + 2 * (k - 2) / (k**2 - 1) * lam)
    df2 = (k**2 - 1) / (3 * lam)
    assert t.loc["age", "statistic"] == pytest.approx(f, rel=1e-10)
    assert t.loc["age", "p_value"] == pytest.approx(stats.f.sf(f, k - 1, df2), rel=1e-9)


def test_table1_rejects_bad_input():
    df = _cohort()
    with pytest.raises(InputError, match="not found"):
        table1(df, "emd", continuous=["nope"])
    with pytest.raises(InputError, match="not in the given order"):
        table1(df, "emd", categorical=["race"], order={"race": ["White"]})
    df["word"] = "x"
    with pytest.raises(InputError, match="non-numeric"):
        table1(df, "emd", continuous=["word"])
    with pytest.raises(InputError, match="at least 2"):
        table1(df[df.emd == "No EMD"], "emd", continuous=["age"])


def test_tests_match_r_on_lung(reference):
    r = _r_values(reference, "lung", "Table1 ")
    lung = pd.read_csv(reference("survival", "data", "lung.csv"))
    lung["ecog_ge2"] = (lung["ph.ecog"] >= 2).astype(float).where(lung["ph.ecog"].notna())
    t = table1(lung, "sex", continuous=["age"], categorical=["ecog_ge2", "ph.ecog"],
               nonnormal=["wt.loss"]).tests.set_index("variable")
    assert t.loc["ecog_ge2", "test"] == "Chi-square (Yates)"
    assert t.loc["ecog_ge2", "statistic"] == pytest.approx(r["2x2 sex x (ph.ecog>=2): chisq with Yates"], abs=1e-6)
    assert t.loc["ecog_ge2", "p_value"] == pytest.approx(r["2x2 sex x (ph.ecog>=2): p with Yates"], rel=1e-4)
    # one ECOG-3 patient → expected count < 5 → Fisher r×c, exact like R
    assert t.loc["ph.ecog", "test"] == "Fisher exact"
    assert t.loc["ph.ecog", "p_value"] == pytest.approx(r["2x4 sex x ph.ecog: Fisher exact p (r x c)"], rel=1e-6)
    assert t.loc["age", "statistic"] == pytest.approx(r["age by sex: Welch t"], abs=1e-6)
    assert t.loc["age", "df"] == pytest.approx(r["age by sex: Welch df"], abs=1e-4)
    assert t.loc["age", "p_value"] == pytest.approx(r["age by sex: Welch p"], rel=1e-4)
    assert t.loc["wt.loss", "statistic"] == r["wt.loss by sex: Mann-Whitney W"]
    assert t.loc["wt.loss", "p_value"] == pytest.approx(r["wt.loss by sex: Mann-Whitney p"], rel=1e-4)
    w = wilcox_test(lung.age[lung.sex == 1], lung.age[lung.sex == 2])
    assert (w.statistic, w.p_value) == (r["age by sex: Mann-Whitney W"],
                                        pytest.approx(r["age by sex: Mann-Whitney p"], rel=1e-4))
    known = lung.dropna(subset=["ph.ecog"])
    table = pd.crosstab(known.sex, known["ph.ecog"] >= 2).to_numpy()
    assert fisher_test(table).p_value == pytest.approx(r["2x2 sex x (ph.ecog>=2): Fisher p (two-sided)"], rel=1e-4)


def test_tests_match_r_on_gbsg2(reference):
    r = _r_values(reference, "gbsg2", "Table1 ")
    g = pd.read_csv(reference("survival", "data", "gbsg2.csv"))
    t = table1(g, "horTh", continuous=["tsize"], categorical=["tgrade", "menostat"],
               nonnormal=["pnodes"]).tests.set_index("variable")
    assert t.loc["tgrade", "statistic"] == pytest.approx(r["horTh x tgrade (2x3): chisq"], abs=1e-6)
    assert t.loc["tgrade", "p_value"] == pytest.approx(r["horTh x tgrade (2x3): p"], rel=1e-4)
    assert t.loc["menostat", "statistic"] == pytest.approx(r["horTh x menostat (2x2): chisq Yates"], abs=1e-6)
    assert t.loc["menostat", "p_value"] == pytest.approx(r["horTh x menostat (2x2): p Yates"], rel=1e-4)
    assert t.loc["tsize", "statistic"] == pytest.approx(r["tsize by horTh: Welch t"], abs=1e-6)
    assert t.loc["pnodes", "statistic"] == r["pnodes by horTh: Mann-Whitney W"]
    assert t.loc["pnodes", "p_value"] == pytest.approx(r["pnodes by horTh: Mann-Whitney p"], rel=1e-4)


def _brute_force_fisher(table: np.ndarray) -> float:
    """Enumerate every r×c table with the same margins via itertools (independent of the code)."""
    rows, cols = table.sum(1), table.sum(0)
    n = table.sum()

    def prob(t):
        return math.exp(sum(math.lgamma(v + 1) for v in (*rows, *cols)) - math.lgamma(n + 1)
                        - sum(math.lgamma(v + 1) for v in t.ravel()))

    p_obs, total = prob(table), 0.0
    r, c = table.shape
    ranges = [range(min(rows[i], cols[j]) + 1) for i in range(r - 1) for j in range(c - 1)]
    for free in itertools.product(*ranges):
        t = np.zeros((r, c), int)
        t[:-1, :-1] = np.reshape(free, (r - 1, c - 1))
        t[:-1, -1] = rows[:-1] - t[:-1, :-1].sum(1)
        t[-1, :] = cols - t[:-1, :].sum(0)
        if (t < 0).any() or t[-1].sum() != rows[-1]:
            continue
        pt = prob(t)
        if pt <= p_obs * (1 + 1e-7):
            total += pt
    return total


@pytest.mark.parametrize("table", [[[3, 1, 4], [0, 5, 2]], [[2, 0, 1], [1, 3, 0], [0, 2, 4]],
                                   [[4, 1], [0, 3], [2, 2], [1, 0]], [[5, 2, 1], [1, 6, 3], [2, 1, 7]]])
def test_fisher_rxc_matches_brute_force(table):
    table = np.array(table)
    res = fisher_test(table)
    assert res.test == "Fisher exact"
    assert res.p_value == pytest.approx(_brute_force_fisher(table), rel=1e-8)


def test_fisher_falls_back_to_monte_carlo_and_says_so():
    table = np.array([[35, 18, 3, 2], [7, 17, 0, 1], [3, 3, 4, 0], [3, 4, 0, 0]])
    res = fisher_test(table, max_tables=1000, seed=1)
    assert "Monte Carlo, B = 100,000" in res.test and 0 <= res.p_value <= 1
    assert res.p_text.endswith("(Monte Carlo, B = 100,000)")
    # a table no draw matches: the p-value is only bounded, and printed as such
    extreme = np.array([[30, 0, 0, 0], [0, 20, 0, 0], [0, 0, 15, 0], [0, 0, 0, 12]])
    res = fisher_test(extreme, max_tables=10, seed=1)
    assert res.p_text == "< 1/100,000 (Monte Carlo, B = 100,000)" and res.p_value == 1e-5


def test_table1_summary_prints_p_by_the_report_policy():
    """One p policy (carpet.report.format): Table1.summary uses it, a Monte Carlo p below 1/B prints "< 1/B"."""
    import carpet.stats._results as results

    assert not hasattr(results, "format_p")  # the second implementation is gone
    df = pd.DataFrame({"g": ["a"] * 6 + ["b"] * 6, "x": [1.0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
                       "c": list("xyzxyz") + list("zzzzzy")})
    t1 = table1(df, by="g", continuous=["x"], categorical=["c"])
    assert list(t1.summary["p"].iloc[1:3]) == [p_value(p) for p in t1.table["p"].iloc[1:3]]
    assert t1.tests["n_resamples"].isna().all()
    extreme = np.array([[30, 0, 0, 0], [0, 20, 0, 0], [0, 0, 15, 0], [0, 0, 0, 12]])
    res = fisher_test(extreme, max_tables=10, seed=1)
    assert res.n_resamples == 100_000 and mc_p_value(res.p_value, res.n_resamples) == "< 0.00001"


STUDY_ORDER = ["EMD and PMD negative", "EMD only", "PMD only", "EMD and PMD positive"]
# Figure 2 of the progression study (counts from its text); None = unknown status at progression
STUDY_FLOWS = [("EMD and PMD negative", "EMD and PMD negative", 35), ("EMD and PMD negative", "EMD only", 18),
               ("EMD and PMD negative", "PMD only", 3), ("EMD and PMD negative", "EMD and PMD positive", 2),
               ("EMD and PMD negative", None, 2), ("EMD and PMD positive", "EMD only", 4),
               ("EMD and PMD positive", "EMD and PMD negative", 3), ("EMD only", "EMD only", 17),
               ("EMD only", "EMD and PMD positive", 1), ("EMD only", "EMD and PMD negative", 7),
               ("EMD only", None, 3), ("PMD only", "PMD only", 4), ("PMD only", "EMD only", 3),
               ("PMD only", "EMD and PMD negative", 3), ("PMD only", None, 1)]  # 11th PMD-only patient


def _study_transitions_df() -> pd.DataFrame:
    rows = [(a, b) for a, b, n in STUDY_FLOWS for _ in range(n)]
    return pd.DataFrame(rows, columns=["baseline", "progression"]).sample(frac=1, random_state=3)


def test_transitions_table_flows_and_test():
    df = _study_transitions_df()
    tr = transitions(df, "baseline", "progression", order=STUDY_ORDER)
    assert list(tr.table.index) == STUDY_ORDER + ["Unknown"]
    assert list(tr.table.columns) == STUDY_ORDER + ["Unknown"]
    assert tr.table.to_numpy().sum() == 106
    for a, b, n in STUDY_FLOWS:
        assert tr.table.loc[a, b if b else "Unknown"] == n
    assert tr.table.loc["EMD and PMD negative"].sum() == 60  # as the study reports
    assert tr.row_percent.loc["EMD only", "EMD only"] == pytest.approx(100 * 17 / 28)
    expect = {(a, b or "Unknown"): n for a, b, n in STUDY_FLOWS}
    assert dict(zip(zip(tr.flows.source, tr.flows.target), tr.flows.n)) == expect
    # flows follow the fixed order, not the data order
    ranks = [(STUDY_ORDER + ["Unknown"]).index(s) for s in tr.flows.source]
    assert ranks == sorted(ranks)
    # expected counts < 5 → exact 4×4 Fisher on the known states, as R fisher.test (table1_r_reference.R)
    r = dict(pd.read_csv(Path(__file__).parent / "fixtures" / "r" / "table1_r_reference.csv")[["what", "value"]]
             .itertuples(index=False))
    assert tr.test.test == "Fisher exact"
    assert tr.test.p_value == pytest.approx(r["study transitions 4x4: Fisher p"], rel=1e-6)
    assert tr.provenance["n"] == 106


def test_transitions_binary_matches_independent_fisher():
    df = pd.DataFrame({"bl": list("++++++---------------"), "pd": list("+++++-++--------+---+")})
    tr = transitions(df, "bl", "pd", order=["+", "-"])
    ct = pd.crosstab(df.bl, df.pd).loc[["+", "-"], ["+", "-"]]
    assert tr.table.to_numpy().tolist() == ct.to_numpy().tolist()
    assert tr.test.p_value == pytest.approx(stats.fisher_exact(ct.to_numpy()).pvalue, rel=1e-12)
    with pytest.raises(InputError, match="not in order"):
        transitions(df, "bl", "pd", order=["+"])


def test_sankey_figure_draws_one_ribbon_per_flow(tmp_path):
    from carpet.report.sankey import sankey_figure

    tr = transitions(_study_transitions_df(), "baseline", "progression", order=STUDY_ORDER, max_tables=1000)
    fig = sankey_figure(tr.flows, list(tr.table.index))
    ax = fig.axes[0]
    from matplotlib.patches import PathPatch, Rectangle

    assert sum(isinstance(p, PathPatch) for p in ax.patches) == len(tr.flows)
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    # left bars: baseline totals; right bars: progression totals (heights = patient counts)
    heights = sorted(round(b.get_height()) for b in bars)
    expected = sorted([*tr.table.sum(axis=1)[lambda s: s > 0], *tr.table.sum(axis=0)[lambda s: s > 0]])
    assert heights == expected
    fig.savefig(tmp_path / "sankey.png")
    assert (tmp_path / "sankey.png").stat().st_size > 5000


def test_sankey_ribbons_do_not_cross_at_their_nodes():
    from matplotlib.patches import PathPatch, Rectangle

    from carpet.report.sankey import sankey_figure

    tr = transitions(_study_transitions_df(), "baseline", "progression", order=STUDY_ORDER, max_tables=1000)
    fig = sankey_figure(tr.flows.sample(frac=1, random_state=1), list(tr.table.index))  # flows in any order
    ax = fig.axes[0]
    right_x = max(p.get_x() for p in ax.patches if isinstance(p, Rectangle))
    right_bars = [(p.get_y(), p.get_y() + p.get_height()) for p in ax.patches
                  if isinstance(p, Rectangle) and p.get_x() == right_x]
    ribbons = []  # (source colour, target bar, top at the left, top at the right)
    for p in ax.patches:
        if isinstance(p, PathPatch):
            v = p.get_path().vertices  # [0] left top, [3] right top, [4] right bottom
            target = next(k for k, (lo, hi) in enumerate(right_bars) if lo - 1e-9 <= v[4, 1] and v[3, 1] <= hi + 1e-9)
            ribbons.append((p.get_facecolor(), target, v[0, 1], v[3, 1]))
    assert len(ribbons) == len(tr.flows)
    for a, b in itertools.combinations(ribbons, 2):
        if a[0] == b[0] or a[1] == b[1]:  # same source or same target: the same order on both sides
            assert (a[2] > b[2]) == (a[3] > b[3])


def test_table1_matches_r_fixture_on_simulated_cohort():
    """R values from tests/fixtures/r/table1_r_reference.R on the cohort of ``_cohort()``."""
    fixtures = Path(__file__).parent / "fixtures" / "r"
    r = dict(pd.read_csv(fixtures / "table1_r_reference.csv")[["what", "value"]].itertuples(index=False))
    # "None" is a heavy-chain level here, not a missing value (as in R's read.csv(na.strings=c("", "NA")))
    df = pd.read_csv(fixtures / "table1_cohort_sim.csv", keep_default_na=False, na_values=[""])
    expected = _cohort()
    expected["race"] = expected["race"].astype(object).where(expected["race"].notna(), np.nan)
    pd.testing.assert_frame_equal(df.drop(columns="grp"), expected, check_dtype=False)
    three = table1(df, "grp", continuous=["age"], categorical=["race", "ecog"],
                   nonnormal=["prior_lines"]).tests.set_index("variable")
    assert three.loc["age", "statistic"] == pytest.approx(r["age by grp: Welch ANOVA F"], rel=1e-9)
    assert three.loc["age", "p_value"] == pytest.approx(r["age by grp: Welch ANOVA p"], rel=1e-6)
    assert three.loc["prior_lines", "statistic"] == pytest.approx(r["prior_lines by grp: Kruskal-Wallis chisq"],
                                                                  rel=1e-9)
    assert three.loc["prior_lines", "p_value"] == pytest.approx(r["prior_lines by grp: Kruskal-Wallis p"], rel=1e-6)
    for var in ("race", "ecog"):
        assert three.loc[var, "test"] == "Fisher exact"
        assert three.loc[var, "p_value"] == pytest.approx(r[f"{var} by grp: Fisher p"], rel=1e-6)
    two = table1(df, "emd", categorical=["heavy_chain"], nonnormal=["prior_lines"]).tests.set_index("variable")
    assert two.loc["heavy_chain", "p_value"] == pytest.approx(r["heavy_chain by emd: Fisher p"], rel=1e-6)
    assert two.loc["prior_lines", "statistic"] == r["prior_lines by emd: Mann-Whitney W"]
    assert two.loc["prior_lines", "p_value"] == pytest.approx(r["prior_lines by emd: Mann-Whitney p"], rel=1e-6)
