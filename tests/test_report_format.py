"""The number-formatting policy of carpet.report.format, case by case (values from the issue's examples)."""

import math

import pandas as pd
import pytest

from carpet.report import format as fmt


@pytest.mark.parametrize("p, text", [(0.0004, "< 0.001"), (0.000999, "< 0.001"), (0.001, "0.0010"),
                                     (0.00309, "0.0031"), (2.257e-10, "< 0.001"), (0.0499, "0.050"),
                                     (0.072, "0.072"), (0.0999, "0.10"), (0.83, "0.83"), (0.9999, "1.0"),
                                     (1.0, "1.0"), (float("nan"), "NA"), (None, "NA"), (pd.NA, "NA")])
def test_p_values_journal_style(p, text):
    assert fmt.p_value(p) == text


def test_p_in_text_is_never_equals_less_than():
    assert fmt.p_equals(0.0001) == "p < 0.001"
    assert fmt.p_equals(0.033) == "p = 0.033"
    assert "= <" not in fmt.p_equals(1e-12)


def test_monte_carlo_p_below_one_over_b():
    assert fmt.mc_p_value(0.0, 100_000) == "< 0.00001"
    assert fmt.mc_p_value(1e-5 / 2, 100_000) == "< 0.00001"
    assert fmt.mc_p_value(0.0, 1000) == "< 0.001"
    assert fmt.mc_p_value(0.012, 1000) == "0.012"


def test_per_unit_hazard_ratio_keeps_its_meaning():
    """1.0012 (0.99974–1.0026) must not print as 1 (1–1) nor 1.00 (1.00–1.00): its CI contains 1."""
    text = fmt.estimate_ci(1.0012, 0.99974, 1.0026)
    assert text == "1.0012 (0.9997–1.0026)"
    est, lo, hi = (float(v) for v in text.replace("(", " ").replace(")", " ").replace("–", " ").split())
    assert lo < 1 < hi
    assert fmt.estimate_ci(2.31, 1.2, 4.456) == "2.31 (1.20–4.46)"
    assert fmt.estimate_ci(0.5, None, 0.9) == "0.50 (NA–0.90)"


def test_fit_statistics_one_decimal_so_close_models_differ():
    assert [fmt.fit_statistic(v) for v in (1060.97, 1063.75, 1056.84, -528.44)] == \
        ["1061.0", "1063.8", "1056.8", "-528.4"]


@pytest.mark.parametrize("value", [122.5, 54.3, 321.98765432, 0.1234567, 7.0])
def test_cutpoint_prints_the_value_used_for_the_split(value):
    assert float(fmt.cutpoint(value)) == value


def test_missing_words_each_have_one_meaning():
    assert fmt.time_value(None) == "NR"  # a median not reached
    assert fmt.time_value(None, missing=fmt.NA) == "NA"
    assert fmt.estimate(math.nan) == "NA"
    assert fmt.percent(0, 0) == "0" and fmt.percent(None, 5) == "NA" and fmt.percent(35, 60) == "35 (58%)"
    assert fmt.number(12.0) == "12" and fmt.number(0.512) == "0.512" and fmt.number(54.31) == "54.3" and fmt.number(1234.56) == "1235"


def test_group_names_carry_the_cut_point_of_the_split():
    """An optimised cut-point becomes the shortest rounded number between it and the next observed value (the
    same groups), and that number is split on and printed; a pre-specified cut-off prints as given (54.3 stays
    54.3 even where no value lies between 54 and 54.3)."""
    import numpy as np

    from carpet.analyze.labels import Labels
    from carpet.analyze.runners import _split_groups

    x = np.array([10.0, 27.278634634401502, 28.1, 53.9, 60.0])
    lab = Labels({"mtv_ml": {"label": "MTV", "unit": "mL"}})
    split_at = fmt.split_value(27.278634634401502, x)
    assert split_at == 28.0
    groups = _split_groups(x, split_at, lab, "mtv_ml", range(5))
    assert list(groups.cat.categories) == ["MTV ≤ 28 mL", "MTV > 28 mL"]
    assert list(groups == "MTV > 28 mL") == list(x > 28) == list(x > 27.278634634401502)
    groups = _split_groups(x, 54.3, lab, "mtv_ml", range(5))
    assert list(groups.cat.categories) == ["MTV ≤ 54.3 mL", "MTV > 54.3 mL"]


@pytest.mark.parametrize("seed", range(40))
def test_split_value_is_short_and_keeps_every_patient_in_their_group(seed):
    """Against brute force: no number with fewer decimals lies in [cut, next value), and the split is the same."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = np.round(rng.lognormal(3, 1, 30), rng.integers(0, 7))
    if seed % 4 == 0:
        x[3] = np.nextafter(x[2], np.inf)  # neighbours one ulp apart: the exact value is the only choice
    cut = float(np.sort(x)[rng.integers(3, 27)])
    got = fmt.split_value(cut, x)
    assert np.array_equal(x > got, x > cut)
    decimals = len(fmt.cutpoint(got).partition(".")[2])
    nxt = x[x > cut].min() if (x > cut).any() else np.inf
    for d in range(decimals):  # nothing shorter would do
        grid = np.arange(np.ceil(cut * 10 ** d), np.ceil(nxt * 10 ** d)) / 10 ** d
        assert not any(np.array_equal(x > g, x > cut) for g in grid), (d, grid)


def test_model_comparison_c_index_ci_columns_are_named_and_printed_like_the_c_index():
    """compare_models' C-index CI columns (carpet.stats) reach the report named, with the C-index's decimals."""
    from carpet.analyze.runners import _stat_display

    row = pd.DataFrame([{"model": "IPI", "c_index": 0.5321, "c_index_se": 0.0312, "c_index_lower": 0.4709,
                         "c_index_upper": 0.5933}])
    shown = _stat_display(row)
    assert list(shown.columns) == ["Model", "C-index", "C-index SE", "C-index 95% CI lower", "C-index 95% CI upper"]
    assert shown.iloc[0].tolist() == ["IPI", "0.532", "0.031", "0.471", "0.593"]


def test_regimen_classes_print_as_words_in_tables_and_rate_displays():
    """carpet.cohort.therapy's class codes reach Table 1/Table 3 and the ORR-by-class tables as words."""
    from carpet.analyze.cohort_runners import _rates_display
    from carpet.analyze.labels import Labels
    from carpet.cohort.therapy import REGIMEN_CLASSES

    lab = Labels()
    shown = {lab.level("first_therapy_class", code) for code, _ in REGIMEN_CLASSES}
    assert len(shown) == len(REGIMEN_CLASSES) and not any("_" in s for s in shown)
    assert lab.level("first_salvage_class", "car_t") == "CAR T"
    assert lab.level("x", "unknown") == "unknown"                      # other values as they are
    rows = [{"regimen_class": "bcma_bispecific", "responded": 5, "n": 6, "orr_percent": 83.3, "ci_lower": 35.9,
             "ci_upper": 99.6}]
    assert _rates_display(rows)["Regimen class"].tolist() == ["BCMA bispecific"]
