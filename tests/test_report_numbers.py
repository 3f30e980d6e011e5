"""Every number a report shows comes from results.json, and no label shows a raw column name or code
(the checks: tests/_report_checks.py). The moffitt and lbcl plans are checked in test_analyze.py on its
fixtures, certainty in its CLI test; the salvage plan runs here, and the checks are shown to fail."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from _report_checks import _raw_hits, raw_labels, unexplained_figure_numbers, unexplained_numbers
from carpet.analyze import run_analysis
from carpet.synth.cohort import simulate_cohort

PLANS = Path(__file__).resolve().parents[1] / "src" / "carpet" / "plans"


@pytest.fixture(scope="module")
def salvage(tmp_path_factory):
    """The packaged salvage plan, whole, on a smaller simulated cohort."""
    plan = yaml.safe_load((PLANS / "salvage_after_bcma.yaml").read_text())
    cohort = simulate_cohort("salvage_post_bcma", n=45, seed=7)
    folder = tmp_path_factory.mktemp("salvage")
    run_analysis(cohort.raw_patients, plan, folder, assessments=cohort.lab_series(), therapies=cohort.therapies)
    return folder


@pytest.mark.slow
def test_salvage_report_numbers_are_results_json_numbers_and_labels_are_words(salvage):
    doc = json.loads((salvage / "results.json").read_text())
    problems, found = unexplained_numbers(doc, salvage / "report.html")
    assert problems == [], "\n".join(problems)
    assert found >= 100
    problems, found = unexplained_figure_numbers(doc)
    assert problems == [] and found >= 50, "\n".join(problems)
    hits = raw_labels(salvage)
    assert hits == [], "\n".join(hits)


def test_the_number_check_fails_on_a_number_results_json_does_not_hold(salvage):
    """The check can fail: one survival estimate changed in the page, or its source removed from results.json."""
    doc = json.loads((salvage / "results.json").read_text())
    html = (salvage / "report.html").read_text()
    cell = re.search(r"<td>0\.\d\d (?=(<span[^>]*>)?\(0\.\d\d–0\.\d\d\))", html)  # an S(t) (95% CI) cell
    bad = salvage / "tampered.html"
    bad.write_text(html[:cell.start()] + "<td>0.4321 " + html[cell.end():])
    problems, _ = unexplained_numbers(doc, bad)
    assert len(problems) == 1 and "no source for ['0.4321']" in problems[0]
    for res in doc["analyses"].values():
        res.pop("groups", None)
        (res.get("km") or {}).pop("groups", None)
    problems, _ = unexplained_numbers(doc, salvage / "report.html")
    assert any("km_os_relapse.csv" in p for p in problems)
    assert any("figure km_os_relapse " in p for p in unexplained_figure_numbers(doc)[0])  # its numbers at risk


def test_the_label_check_finds_raw_names_and_codes():
    columns = {"metcr_day30", "mtv_ml", "stage", "ipi_group", "sex"}
    assert _raw_hits("Rate of METCR day30", columns) == ["metcr_day30 (day30)", "metcr_day30 (metcr)"]
    assert _raw_hits("AUC of mtv_ml", columns) == ["identifier mtv_ml"]
    assert _raw_hits("HR 95% CI: hr_lower", columns) == ["identifier hr_lower"]
    assert _raw_hits("stage", columns) == ["stage"] and _raw_hits("Stage", columns) == []
    assert _raw_hits("IPI risk group", columns) == [] and _raw_hits("Sex", columns) == []
    assert _raw_hits("Rate of metCR day 30", columns) == []
