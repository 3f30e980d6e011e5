"""Table 1: patient characteristics overall and by group, with the test R users would run.

Layout follows the baseline-characteristics table of the myeloma progression study
(``shared/studies/moffitt-post-car-t-progression-emd-pmd.txt``): one block per variable, one row per
level, columns ``variable, level, Overall, <each group>, p, test, missing``; a first row ``n`` gives
the column sizes. A 0/1 or boolean variable shows one row (the "yes" level), like "Male, n (%)".

Tests (each the R call a statistician would write):

* categorical: Pearson chi-square, ``chisq.test(table)``, which applies Yates' continuity correction
  on 2×2 tables (R's default ``correct=TRUE``; scipy ``chi2_contingency(correction=True)`` does the
  same, only when df = 1). When any expected count is < 5, Fisher's exact test (``fisher.test``):
  scipy on 2×2 tables; on larger tables an exact enumeration written here (scipy ≥ 1.15 only offers a
  Monte Carlo / permutation r×c Fisher, which does not give R's number). Tables with too many
  possible cell arrangements (> ``max_tables``) fall back to a seeded Monte Carlo p-value, and
  the test name says so.
* continuous, ``mean (SD)``: Welch's t-test for 2 groups (``t.test``, R's default); Welch's one-way
  ANOVA for > 2 groups (``oneway.test``, R's default ``var.equal=FALSE``; statsmodels
  ``anova_oneway(use_var='unequal')``).
* continuous listed in ``nonnormal``, ``median (IQR)`` with R's default quantiles (type 7):
  Mann–Whitney for 2 groups as R's ``wilcox.test`` does it (exact when both groups have < 50 values
  and no ties, otherwise normal approximation with continuity correction); Kruskal–Wallis for > 2
  groups (``kruskal.test``).

Why not ``tableone`` (0.9.6, evaluated; it installs with the pinned pandas): for two groups it tests
non-normal variables with Kruskal–Wallis, not R's continuity-corrected Mann–Whitney; on r×c tables
with small expected counts it keeps the chi-square (with a warning) instead of Fisher's exact test;
it switches 2×2 tables to Fisher on small *observed* counts too; and it reports no p-value at all
when a level is empty in one group (the study's heavy-chain row, IgD 0 in one group, has one). Its
``htest`` hook would leave only the formatting to tableone, at the cost of a new dependency.

Percentages use the non-missing values of the variable in that column; ``missing`` counts the
missing values overall. Rows whose group (``by``) is missing count in *Overall* only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import gammaln

from carpet.errors import InputError
from carpet.provenance import provenance
from carpet.stats._input import require_columns
from carpet.report.format import mc_p_value
from carpet.io.tables import neutralise_formulas, write_csv

# R's fisher.test counts tables whose probability is within this relative error of the observed one.
_FISHER_REL_ERR = 1.0 + 1e-7
_MONTE_CARLO_B = 100_000


@dataclass(frozen=True)
class TableTest:
    """One Table 1 test: its name, statistic, degrees of freedom and p-value.

    ``df`` is the chi-square / Kruskal–Wallis df, the Welch t df, or the *denominator* df of Welch's
    ANOVA (numerator = groups − 1); NaN for Fisher and Mann–Whitney. ``statistic`` is chi-square,
    t, F, Kruskal–Wallis H, Mann–Whitney W (= U of the first group), the sample odds ratio (Fisher
    2×2) or the observed table's probability (Fisher r×c).
    """

    test: str
    statistic: float
    df: float
    p_value: float
    p_text: str = ""  # how to print p when it is a Monte Carlo value: "< 1/100,000 (Monte Carlo, B = 100,000)"
    n_resamples: int | None = None  # Monte Carlo draws behind ``p_value`` (None: not a Monte Carlo p)


@dataclass
class Table1:
    """Result of :func:`table1`.

    Attributes
    ----------
    table : DataFrame
        The printed layout: ``variable, level, Overall, <groups…>, p, test, missing``; ``p`` is a float
        on the first row of each variable (NaN elsewhere), cells are strings.
    tests : DataFrame
        One row per variable: ``variable, test, statistic, df, p_value`` (unrounded).
    numbers : list of dict
        The numbers behind each row of ``table``, unrounded: ``variable, level, p, missing`` and ``columns``,
        one dict per column: ``{column, n, of, percent}`` of a count cell, ``{column, n, mean, sd}`` or
        ``{column, n, median, q1, q3}`` of a continuous one, ``{column, n}`` on the first row.
    provenance : dict
        How the table was made (tests, grouping, carpet version).
    """

    table: pd.DataFrame
    tests: pd.DataFrame
    provenance: dict = field(default_factory=dict)
    numbers: list = field(default_factory=list)

    @property
    def summary(self) -> pd.DataFrame:
        """The table with p-values printed by carpet's one policy (:mod:`carpet.report.format`: ``< 0.001``,
        else two significant digits; a Monte Carlo p below ``1/B`` as ``< 1/B``)."""
        out = self.table.copy()
        resamples = dict(zip(self.tests["test"], self.tests["n_resamples"])) if "n_resamples" in self.tests else {}
        out["p"] = [mc_p_value(p, _int_or_none(resamples.get(t)), missing="") for p, t in zip(out["p"], out["test"])]
        return out

    def to_csv(self, path: str | Path) -> Path:
        """Write the formatted table as CSV (UTF-8) and return the path."""
        path = Path(path)
        write_csv(self.summary, path)
        return path

    def to_excel(self, path: str | Path) -> Path:
        """Write the formatted table to an XLSX sheet ``Table 1`` and provenance to ``provenance``."""
        path = Path(path)
        with pd.ExcelWriter(path, engine="openpyxl") as writer:
            neutralise_formulas(self.summary).to_excel(writer, sheet_name="Table 1", index=False)
            neutralise_formulas(pd.DataFrame(sorted((k, str(v)) for k, v in self.provenance.items()),
                                             columns=["field", "value"])).to_excel(writer, sheet_name="provenance", index=False)
        return path

    def to_html(self, path: str | Path | None = None) -> str:
        """HTML table (no index); written to ``path`` when given. Returns the HTML text."""
        html = self.summary.to_html(index=False, na_rep="", classes="table1", border=0)
        if path is not None:
            Path(path).write_text(html, encoding="utf-8")
        return html


def table1(df: pd.DataFrame, by: str, continuous: Sequence[str] = (), categorical: Sequence[str] = (),
           nonnormal: Sequence[str] = (), labels: Mapping[str, str] | None = None,
           order: Mapping[str, Sequence] | None = None, *, decimals: int = 1, pct_decimals: int = 0,
           max_tables: int = 2_000_000, seed: int = 0) -> Table1:
    """Summarise patient characteristics overall and by ``by``, with p-values.

    Parameters
    ----------
    df : DataFrame
        One row per patient.
    by : str
        Grouping column (e.g. baseline EMD status); 2 or more groups.
    continuous : sequence of str
        Numeric columns, shown as mean (SD) unless also in ``nonnormal``.
    categorical : sequence of str
        Columns shown as n (%) per level; 0/1 and boolean columns show the "1"/True row only.
    nonnormal : sequence of str
        Continuous columns shown as median (Q1–Q3) and tested by rank tests.
    labels : mapping, optional
        Display name per column (default: the column name).
    order : mapping, optional
        Level order per column, including ``by`` for the group columns (default: sorted levels).
    decimals : int
        Decimals of continuous summaries.
    pct_decimals : int
        Decimals of percentages (the study prints whole percents).
    max_tables : int
        Largest number of tables the exact r×c Fisher test enumerates before it falls back to a
        Monte Carlo p-value (seeded with ``seed``).

    Returns
    -------
    Table1
    """
    labels = dict(labels or {})
    order = dict(order or {})
    nonnormal = list(nonnormal)
    continuous = list(continuous) + [c for c in nonnormal if c not in continuous]
    require_columns(df, [by, *continuous, *categorical])

    groups = _levels(df[by], order.get(by))
    if len(groups) < 2:
        raise InputError(f"grouping column '{by}' has {len(groups)} group(s); Table 1 needs at least 2",
                         where=f"column '{by}'")
    columns = ["Overall", *[str(g) for g in groups]]
    in_group = df[by].notna()

    rows = [{"variable": "n", "level": "", "Overall": str(len(df)),
             **{str(g): str(int((df[by] == g).sum())) for g in groups},
             "p": np.nan, "test": "", "missing": ""}]
    numbers = [{"variable": "n", "level": "", "p": None, "missing": None,
                "columns": [{"column": "Overall", "n": len(df)},
                            *({"column": str(g), "n": int((df[by] == g).sum())} for g in groups)]}]
    tests = []
    for var in [*continuous, *categorical]:
        label = labels.get(var, var)
        n_missing = int(df[var].isna().sum())
        if var in continuous:
            x = pd.to_numeric(df[var], errors="coerce")
            if (x.isna() & df[var].notna()).any():
                bad = df.index[x.isna() & df[var].notna()][0]
                raise InputError(f"non-numeric value {df[var][bad]!r} in continuous column '{var}'",
                                 where=f"row {bad}, column '{var}'", hint="list it under categorical")
            robust = var in nonnormal
            cells = {"Overall": _continuous_cell(x, robust, decimals)}
            cells.update({str(g): _continuous_cell(x[df[by] == g], robust, decimals) for g in groups})
            result = _continuous_test([x[(df[by] == g)].dropna().to_numpy(float) for g in groups], robust)
            stat_name = "median (IQR)" if robust else "mean (SD)"
            rows.append({"variable": f"{label}, {stat_name}", "level": "", **cells, "p": result.p_value,
                         "test": result.test, "missing": str(n_missing)})
            numbers.append({"variable": var, "level": "", "p": result.p_value, "missing": n_missing,
                            "columns": [{"column": "Overall", **_continuous_numbers(x, robust)},
                                        *({"column": str(g), **_continuous_numbers(x[df[by] == g], robust)}
                                          for g in groups)]})
        else:
            levels = _levels(df[var], order.get(var))
            counts = pd.crosstab(df.loc[in_group, var], df.loc[in_group, by]).reindex(
                index=levels, columns=groups, fill_value=0)
            result = association_test(counts.to_numpy(), max_tables=max_tables, seed=seed)
            shown = [1] if _is_binary(df[var], levels) else levels  # the 1/True row, even when nobody has it
            for k, level in enumerate(shown):
                cells = {"Overall": _count_cell(df[var], level, pct_decimals)}
                cells.update({str(g): _count_cell(df.loc[df[by] == g, var], level, pct_decimals)
                              for g in groups})
                first = k == 0
                rows.append({"variable": f"{label}, n (%)" if first else "",
                             "level": "" if len(shown) == 1 else str(level), **cells,
                             "p": result.p_value if first else np.nan,
                             "test": result.test if first else "", "missing": str(n_missing) if first else ""})
                numbers.append({"variable": var, "level": str(level), "p": result.p_value if first else None,
                                "missing": n_missing if first else None,
                                "columns": [{"column": "Overall", **_count_numbers(df[var], level)},
                                            *({"column": str(g), **_count_numbers(df.loc[df[by] == g, var], level)}
                                              for g in groups)]})
        tests.append({"variable": var, **result.__dict__})

    table = pd.DataFrame(rows, columns=["variable", "level", *columns, "p", "test", "missing"])
    prov = provenance(method="table1", by=by, groups=[str(g) for g in groups],
                      categorical_test="chi-square (Yates on 2x2, R chisq.test default); Fisher exact "
                                       "when any expected count < 5",
                      normal_test="Welch t (2 groups) / Welch one-way ANOVA (> 2 groups)",
                      nonnormal_test="Mann-Whitney as R wilcox.test (2 groups) / Kruskal-Wallis",
                      quantiles="R type 7", group_missing_rows=int((~in_group).sum()))
    return Table1(table=table, tests=pd.DataFrame(tests), provenance=prov, numbers=numbers)


def _int_or_none(value) -> int | None:
    return None if value is None or value != value else int(value)


def _levels(series: pd.Series, given: Sequence | None) -> list:
    present = list(pd.unique(series.dropna()))
    if given is None:
        try:
            return sorted(present)
        except TypeError:
            return sorted(present, key=str)
    unknown = [v for v in present if v not in list(given)]
    if unknown:
        raise InputError(f"values {unknown} of column '{series.name}' are not in the given order {list(given)}",
                         where=f"column '{series.name}'", hint="add them to order=")
    return list(given)


def _is_binary(series: pd.Series, levels: list) -> bool:
    """A 0/1 or boolean variable, also when only one of its values occurs (e.g. nobody is "1")."""
    if not 1 <= len(levels) <= 2:
        return False
    return series.dtype == bool or set(levels) <= {0, 1, True, False}


def _count_cell(series: pd.Series, level, pct_decimals: int) -> str:
    valid = series.dropna()
    n = int((valid == level).sum())
    if len(valid) == 0:
        return "0"
    return f"{n} ({100.0 * n / len(valid):.{pct_decimals}f}%)"


def _count_numbers(series: pd.Series, level) -> dict:
    valid = series.dropna()
    n = int((valid == level).sum())
    return {"n": n, "of": int(len(valid)), "percent": 100.0 * n / len(valid) if len(valid) else None}


def _continuous_numbers(x: pd.Series, robust: bool) -> dict:
    v = x.dropna().to_numpy(float)
    if len(v) == 0:
        return {"n": 0}
    if robust:
        q1, med, q3 = np.quantile(v, [0.25, 0.5, 0.75])
        return {"n": int(len(v)), "median": float(med), "q1": float(q1), "q3": float(q3)}
    return {"n": int(len(v)), "mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else None}


def _continuous_cell(x: pd.Series, robust: bool, decimals: int) -> str:
    v = x.dropna().to_numpy(float)
    if len(v) == 0:
        return ""
    if robust:
        q1, med, q3 = np.quantile(v, [0.25, 0.5, 0.75])  # numpy 'linear' = R quantile type 7
        return f"{med:.{decimals}f} ({q1:.{decimals}f}–{q3:.{decimals}f})"
    sd = v.std(ddof=1) if len(v) > 1 else float("nan")
    return f"{v.mean():.{decimals}f} ({sd:.{decimals}f})"


def _continuous_test(samples: list[np.ndarray], robust: bool) -> TableTest:
    samples = [s for s in samples if len(s)]
    if len(samples) < 2 or (not robust and any(len(s) < 2 for s in samples)):
        return TableTest("not tested (too few values)", np.nan, np.nan, np.nan)
    if robust:
        if len(samples) == 2:
            return wilcox_test(*samples)
        res = stats.kruskal(*samples)
        return TableTest("Kruskal-Wallis", float(res.statistic), len(samples) - 1.0, float(res.pvalue))
    if len(samples) == 2:
        res = stats.ttest_ind(*samples, equal_var=False)
        return TableTest("Welch t-test", float(res.statistic), float(res.df), float(res.pvalue))
    from statsmodels.stats.oneway import anova_oneway

    res = anova_oneway(samples, use_var="unequal")
    return TableTest("Welch one-way ANOVA", float(res.statistic), float(res.df[1]), float(res.pvalue))


def wilcox_test(x: np.ndarray, y: np.ndarray) -> TableTest:
    """Two-sample Mann–Whitney test with R ``wilcox.test`` defaults; statistic W = U of ``x``.

    R uses the exact distribution when both samples have fewer than 50 values and there are no ties,
    otherwise the normal approximation with continuity correction (and tie-corrected variance).
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    pooled = np.concatenate([x, y])
    exact = len(x) < 50 and len(y) < 50 and len(np.unique(pooled)) == len(pooled)
    res = stats.mannwhitneyu(x, y, use_continuity=True, alternative="two-sided",
                             method="exact" if exact else "asymptotic")
    return TableTest("Mann-Whitney" + (" (exact)" if exact else ""), float(res.statistic), np.nan,
                      float(res.pvalue))


def association_test(counts: np.ndarray, *, max_tables: int = 2_000_000, seed: int = 0) -> TableTest:
    """Chi-square test of a contingency table (Yates on 2×2), or Fisher's exact test when any expected
    count is < 5. Empty rows and columns are dropped first."""
    counts = counts[counts.sum(axis=1) > 0][:, counts.sum(axis=0) > 0]
    if counts.shape[0] < 2 or counts.shape[1] < 2:
        return TableTest("not tested (one level)", np.nan, np.nan, np.nan)
    chi2, p, dof, expected = stats.chi2_contingency(counts, correction=True)
    if expected.min() >= 5:
        name = "Chi-square (Yates)" if dof == 1 else "Chi-square"
        return TableTest(name, float(chi2), float(dof), float(p))
    return fisher_test(counts, max_tables=max_tables, seed=seed)


def fisher_test(counts, *, max_tables: int = 2_000_000, seed: int = 0) -> TableTest:
    """Fisher's exact test on an r×c table, two-sided as R's ``fisher.test``.

    2×2 tables use scipy (statistic = sample odds ratio; R reports the conditional MLE, see
    ``scipy.stats.contingency.odds_ratio``). Larger tables: the p-value is the total probability of
    all tables with the observed margins that are no more probable than the observed one (R's
    relative tolerance 1e-7), by exact enumeration — written here because scipy has no exact r×c
    Fisher. The statistic is then the observed table's probability.
    """
    t = np.asarray(counts, dtype=np.int64)
    t = t[t.sum(axis=1) > 0][:, t.sum(axis=0) > 0]
    if t.shape == (2, 2):
        res = stats.fisher_exact(t)
        return TableTest("Fisher exact", float(res.statistic), np.nan, float(res.pvalue))
    log_obs = _table_log_prob(t)
    p_value = _fisher_rxc_p(t, log_obs + np.log(_FISHER_REL_ERR), max_tables)
    if p_value is None:
        b = _MONTE_CARLO_B
        res = stats.fisher_exact(t, method=stats.MonteCarloMethod(n_resamples=b, rng=np.random.default_rng(seed)))
        exceed = int(round(res.pvalue * (b + 1))) - 1  # scipy's p is (1 + #{as extreme}) / (1 + B)
        # no draw as extreme: all that B draws show is p < 1/B, and that is what is printed
        p_mc, text = ((1 / b, f"< 1/{b:,} (Monte Carlo, B = {b:,})") if exceed == 0
                      else (float(res.pvalue), f"{res.pvalue:.3g} (Monte Carlo, B = {b:,})"))
        return TableTest(f"Fisher exact (Monte Carlo, B = {b:,}; > {max_tables:,} tables for the exact test)",
                         float(res.statistic), np.nan, p_mc, text, n_resamples=b)
    return TableTest("Fisher exact", float(np.exp(log_obs)), np.nan, min(1.0, p_value))


def _table_log_prob(t: np.ndarray) -> float:
    rows, cols = t.sum(axis=1), t.sum(axis=0)
    return float(gammaln(rows + 1).sum() + gammaln(cols + 1).sum() - gammaln(t.sum() + 1) - gammaln(t + 1).sum())


def _compositions(caps: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Every way to split a column total ``c`` into cells 0 <= x_i <= caps_i, for each row of ``caps``.

    Returns (index of the caps row, cells x) — filled cell by cell with numpy, no Python loop over splits.
    """
    m, r = caps.shape
    idx, left = np.arange(m), np.full(m, c, dtype=np.int64)
    cells = np.zeros((m, 0), dtype=np.int64)
    for i in range(r - 1):
        below = caps[idx, i + 1:].sum(axis=1)
        lo = np.maximum(0, left - below)
        hi = np.minimum(caps[idx, i], left)
        width = hi - lo + 1
        rep = np.repeat(np.arange(idx.size), width)
        x = lo[rep] + np.arange(rep.size) - np.repeat(np.cumsum(width) - width, width)
        idx, left, cells = idx[rep], left[rep] - x, np.column_stack((cells[rep], x))
    return idx, np.column_stack((cells, left))


def _fisher_rxc_p(t: np.ndarray, log_threshold: float, max_tables: int) -> float | None:
    """Total null probability of the tables with the margins of ``t`` whose log-probability is
    ``<= log_threshold`` — the two-sided r×c Fisher p-value, by the network algorithm of Mehta & Patel
    (1983) that R's FEXACT implements.

    Written here because scipy has no exact r×c Fisher test (``scipy.stats.fisher_exact`` is 2×2, or
    Monte Carlo / permutation for r×c). A node of the network is the multiset of row sums left after
    the first j columns (rows are exchangeable for the columns to come, so sorted sums name a node).
    1. Forward, without probabilities: the nodes of every stage and the edges between them (one edge
       per split of column j, weighted by −Σ log x!).
    2. Backward: for every node the exact longest and shortest path to the end (the most and least
       probable completion).
    3. Forward over the first half of the columns with the probability of the path so far (paths with
       equal probability into one node merged, with a multiplicity): a path is settled as soon as its
       longest completion stays below the threshold (all completions count; their total has the closed
       form N!/(Π R! Π c!)) or its shortest completion is above it (none counts).
    4. Backward over the second half: the value of every completion of each middle node (merged where
       equal), then the two halves meet: per node, a cumulative sum over the sorted completions answers
       each open path at once, so the product of the two halves is never formed.
    Returns ``None`` once a stage would hold more than ``max_tables`` edges or paths.
    """
    if t.shape[0] > t.shape[1]:
        t = t.T  # fewer rows → fewer splits per column
    rows, cols = np.sort(t.sum(axis=1)), np.sort(t.sum(axis=0))[::-1]
    const = gammaln(rows + 1).sum() + gammaln(cols + 1).sum() - gammaln(rows.sum() + 1)
    threshold = log_threshold - const
    nodes, edges = [rows[None, :]], []
    for c in cols[:-1]:
        parent, cells = _compositions(nodes[-1], int(c))
        if parent.size > max_tables:
            return None
        child, inverse = _unique_rows(np.sort(nodes[-1][parent] - cells, axis=1))
        order = np.argsort(parent, kind="stable")  # edges grouped by parent for the expansion below
        edges.append((parent[order], inverse[order], -gammaln(cells[order] + 1).sum(axis=1)))
        nodes.append(child)
    longest = shortest = -gammaln(nodes[-1] + 1).sum(axis=1)  # the last column is the remaining sums
    bounds = [(longest, shortest)]
    for parent, child, w in reversed(edges):
        n_par = int(parent.max()) + 1
        hi, lo = np.full(n_par, -np.inf), np.full(n_par, np.inf)
        np.maximum.at(hi, parent, w + longest[child])
        np.minimum.at(lo, parent, w + shortest[child])
        longest, shortest = hi, lo
        bounds.append((longest, shortest))
    bounds = bounds[::-1]
    middle = (len(edges) + 1) // 2
    node, past, weight = np.zeros(1, dtype=np.int64), np.zeros(1), np.ones(1)
    p_value = 0.0
    for j, (parent, child, w) in enumerate(edges[:middle]):
        longest, shortest = bounds[j]
        all_in = past + longest[node] <= threshold
        if all_in.any():
            rem = nodes[j][node[all_in]]
            future = cols[j:]
            log_all = gammaln(future.sum() + 1) - gammaln(rem + 1).sum(axis=1) - gammaln(future + 1).sum()
            p_value += float(np.dot(weight[all_in], np.exp(const + past[all_in] + log_all)))
        open_ = ~all_in & (past + shortest[node] <= threshold)
        node, past, weight = node[open_], past[open_], weight[open_]
        expanded = _follow(node, past, weight, parent, child, w, max_tables)
        if expanded is None:
            return None
        node, past, weight = expanded
    # the second half backwards: every completion's value from each middle node, merged where equal
    last = nodes[-1]
    f_node, f_val, f_mult = np.arange(len(last)), -gammaln(last + 1).sum(axis=1), np.ones(len(last))
    for parent, child, w in reversed(edges[middle:]):
        expanded = _follow(f_node, f_val, f_mult, child, parent, w, max_tables)
        if expanded is None:
            return None
        f_node, f_val, f_mult = expanded
    return p_value + _join(node, past, weight, f_node, f_val, f_mult, threshold, const)


def _follow(node, value, weight, src, dst, w, max_tables):
    """Extend (node, value, weight) paths along the edges src → dst (weights w); merge equal (node, value)."""
    order = np.argsort(src, kind="stable")
    src_sorted = src[order]
    start = np.searchsorted(src_sorted, node, side="left")
    count = np.searchsorted(src_sorted, node, side="right") - start
    total = int(count.sum())
    if total > max_tables:
        return None
    rep = np.repeat(np.arange(node.size), count)
    e = order[np.repeat(start, count) + np.arange(total) - np.repeat(np.cumsum(count) - count, count)]
    key, inverse = _unique_rows(np.column_stack((dst[e], np.round(value[rep] + w[e], 9))))
    return key[:, 0].astype(np.int64), key[:, 1], np.bincount(inverse, weights=weight[rep])


def _join(node, past, weight, f_node, f_val, f_mult, threshold, const) -> float:
    """Σ over (path so far, completion) pairs meeting at the same node with past + future <= threshold of
    weight · multiplicity · exp(const + past + future): per node, cumulative sums over the sorted futures."""
    if node.size == 0 or f_node.size == 0:
        return 0.0
    limit = threshold - past
    ranks = np.unique(np.concatenate((f_val, limit)), return_inverse=True)[1]  # exact order of floats
    k = int(ranks.max()) + 2
    keys = f_node * k + ranks[:f_val.size]
    order = np.argsort(keys, kind="stable")
    n_nodes = int(max(node.max(), f_node.max())) + 1
    shift = np.full(n_nodes, -np.inf)
    np.maximum.at(shift, f_node, f_val)
    cum = np.concatenate(([0.0], np.cumsum((f_mult * np.exp(f_val - shift[f_node]))[order])))
    sorted_keys = keys[order]
    lo = np.searchsorted(sorted_keys, node * k, side="left")
    hi = np.searchsorted(sorted_keys, node * k + ranks[f_val.size:], side="right")
    has = np.isfinite(shift[node])
    total = (cum[hi] - cum[lo])[has]
    return float(np.dot(weight[has] * total, np.exp(const + past[has] + shift[node[has]])))


def _unique_rows(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(a, axis=0, return_inverse=True)`` by a column-wise lexsort: ~15x faster on millions of
    rows, because np.unique(axis=0) sorts the rows as opaque byte strings."""
    order = np.lexsort(a.T[::-1])
    s = a[order]
    new = np.ones(len(s), dtype=bool)
    new[1:] = np.any(s[1:] != s[:-1], axis=1)
    inverse = np.empty(len(s), dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    return s[new], inverse
