"""Cohort table reading: typed columns, unit conversion, one error listing every problem, fuzzing."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carpet.cohort.schema import (ASSESSMENTS, PATIENTS, describe,
                                  read_assessments, read_imaging, read_patients, read_table, read_therapies)
from carpet.errors import InputError


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def _problems(exc_info):
    return [(p.row, p.column) for p in exc_info.value.problems]


PATIENTS_OK = "patient_id,infusion_date,involved_light_chain\nP1,2024-01-10,kappa\nP2,2024-02-01,lambda\n"


def test_patients_read_types(tmp_path):
    table = read_patients(_write(tmp_path, "p.csv", PATIENTS_OK))
    assert list(table["patient_id"]) == ["P1", "P2"]
    assert table["infusion_date"].iloc[1] == pd.Timestamp("2024-02-01")
    assert list(table["source_row"]) == [2, 3]


@pytest.mark.parametrize("kind, text, row, column, needle", [
    ("unknown unit", "patient_id,date,parameter,value,unit\nP1,2024-01-01,serum_m_protein,2,g/ml\n",
     2, "unit", "g/ml"),
    ("unparseable date", "patient_id,date,parameter,value,unit\nP1,2024-01-01,hb,9,g/dL\nP1,01/02/2024,hb,9,g/dL\n",
     3, "date", "01/02/2024"),
    ("negative value", "patient_id,date,parameter,value,unit\nP1,2024-01-01,kappa_flc,-4,mg/L\n",
     2, "value", "-4"),
    ("not a number", "patient_id,date,parameter,value,unit\nP1,2024-01-01,kappa_flc,4 mg,mg/L\n",
     2, "value", "4 mg"),
    ("unknown parameter", "patient_id,date,parameter,value,unit\nP1,2024-01-01,igx,4,g/L\n",
     2, "parameter", "igx"),
])
def test_assessment_errors_name_file_row_column(tmp_path, kind, text, row, column, needle):
    path = _write(tmp_path, "labs.csv", text)
    with pytest.raises(InputError) as exc:
        read_assessments(path)
    msg = str(exc.value)
    assert str(path) in msg and f"row {row}" in msg and f"column '{column}'" in msg and needle in msg, kind
    assert _problems(exc) == [(row, column)]


def test_missing_required_column(tmp_path):
    path = _write(tmp_path, "labs.csv", "patient_id,date,value,unit\nP1,2024-01-01,2,g/dL\n")
    with pytest.raises(InputError) as exc:
        read_assessments(path)
    assert "row 1" in str(exc.value) and "column 'parameter'" in str(exc.value) and str(path) in str(exc.value)


def test_duplicate_id_and_event_before_infusion_reported_together(tmp_path):
    path = _write(tmp_path, "p.csv", "patient_id,infusion_date,death_date,sex\n"
                                     "P1,2024-01-10,2023-12-31,M\nP1,2024-02-01,,X\nP3,2024-02-30,,F\n")
    with pytest.raises(InputError) as exc:
        read_patients(path)
    assert sorted(_problems(exc)) == sorted([(2, "death_date"), (3, "patient_id"), (3, "sex"),
                                             (4, "infusion_date")])
    msg = str(exc.value)
    assert msg.startswith(str(path)) and "4 problem(s)" in msg
    assert "row 2, column 'death_date': value '2023-12-31'" in msg and "on or after infusion_date" in msg
    assert "row 3, column 'patient_id': value 'P1'" in msg
    assert "also in row(s) 2" in msg


def test_missing_value_in_required_column(tmp_path):
    path = _write(tmp_path, "p.csv", "patient_id,infusion_date\nP1,\n")
    with pytest.raises(InputError) as exc:
        read_patients(path)
    assert _problems(exc) == [(2, "infusion_date")]


def test_require_makes_column_required(tmp_path):
    path = _write(tmp_path, "p.csv", "patient_id,infusion_date\nP1,2024-01-01\n")
    read_patients(path)
    with pytest.raises(InputError, match="involved_light_chain"):
        read_patients(path, require=("involved_light_chain",))


def test_unit_conversion_to_internal_units(tmp_path):
    # expected values computed by hand from spec §0.2 (1 g/dL = 10 g/L; 1 mg/dL = 10 mg/L; 1 G/L = 1000/uL)
    text = ("patient_id,date,parameter,value,unit\n"
            "P1,2024-01-01,serum_m_protein,25,g/L\n"
            "P1,2024-01-01,serum_m_protein,2.5,G/DL\n"
            "P1,2024-01-01,kappa_flc,123,mg/L\n"
            "P1,2024-01-01,urine_m_protein,0.4,g/24h\n"
            "P1,2024-01-01,platelets,150,G/L\n"
            "P1,2024-01-01,anc,1.2,x10^9/L\n"
            "P1,2024-01-01,crp,30,mg/L\n"
            "P1,2024-01-01,serum_ife,Positive,\n"
            "P1,2024-01-01,urine_ife,negative,\n"
            "P1,2024-01-01,bm_plasma_cells,12,%\n")
    table = read_assessments(_write(tmp_path, "labs.csv", text))
    assert table["value"].tolist() == pytest.approx([2.5, 2.5, 12.3, 400.0, 150000.0, 1200.0, 3.0, 1.0, 0.0, 12.0])
    assert table["unit"].tolist() == ["g/dL", "g/dL", "mg/dL", "mg/24h", "/uL", "/uL", "mg/dL", "", "", "%"]


def test_patients_unit_aliases(tmp_path):
    text = "patient_id,infusion_date,platelets_g_l,hb_g_l,creatinine_umol_l\nP1,2024-01-10,150,90,88.42\n"
    table = read_patients(_write(tmp_path, "p.csv", text))
    assert (table["platelets_per_ul"].iloc[0], table["hb_g_dl"].iloc[0]) == pytest.approx((150_000, 9.0))
    assert table["creatinine_mg_dl"].iloc[0] == pytest.approx(1.0)
    bad = "patient_id,infusion_date,platelets_g_l,platelets_per_ul,hb_g_l\nP1,2024-01-10,150,150000,-3\n"
    with pytest.raises(InputError) as exc:
        read_patients(_write(tmp_path, "bad.csv", bad))
    assert _problems(exc) == [(1, "platelets_g_l"), (2, "hb_g_l")]
    neg = "patient_id,infusion_date,hb_g_l\nP1,2024-01-10,-3\nP2,2024-01-10,x\n"
    with pytest.raises(InputError) as exc:
        read_patients(_write(tmp_path, "neg.csv", neg))
    assert _problems(exc) == [(2, "hb_g_l"), (3, "hb_g_l")]


def test_all_problems_of_a_file_in_one_error(tmp_path):
    text = ("patient_id,date,parameter,value,unit\n"
            "P1,2024-13-01,serum_m_protein,2,g/dL\n"
            "P1,2024-01-01,serum_m_protein,2,furlongs\n"
            ",2024-01-01,serum_m_protein,2,g/dL\n")
    with pytest.raises(InputError) as exc:
        read_assessments(_write(tmp_path, "labs.csv", text))
    assert _problems(exc) == [(2, "date"), (3, "unit"), (4, "patient_id")]


def test_xlsx_with_excel_dates(tmp_path):
    frame = pd.DataFrame({"patient_id": ["P1", "P2"],
                          "infusion_date": [dt.datetime(2024, 1, 10), dt.datetime(2024, 3, 5)],
                          "involved_light_chain": ["kappa", "lambda"], "age_years": [61, 70.5]})
    path = tmp_path / "p.xlsx"
    frame.to_excel(path, index=False)
    table = read_patients(path)
    assert list(table["infusion_date"]) == [pd.Timestamp("2024-01-10"), pd.Timestamp("2024-03-05")]
    assert list(table["age_years"]) == [61.0, 70.5]


@pytest.mark.parametrize("value", ["0001-01-01", dt.date(1, 1, 1), dt.datetime(9999, 1, 1), 2958465, True,
                                   float("inf"), "2024-01-01T00:00", pd.Timestamp("2024-01-01", tz="UTC")])
def test_dates_out_of_range_or_odd_types(value):
    raw = pd.DataFrame({"patient_id": ["P1"], "infusion_date": [value]})
    with pytest.raises(InputError) as exc:
        read_table(raw, PATIENTS, "sheet")
    assert _problems(exc) == [(2, "infusion_date")]


def test_excel_serial_date_and_time_of_day():
    raw = pd.DataFrame({"patient_id": ["P1", "P2"], "infusion_date": [45301, dt.datetime(2024, 1, 2, 13, 5)]})
    with pytest.raises(InputError) as exc:
        read_table(raw, PATIENTS, "sheet")
    assert _problems(exc) == [(3, "infusion_date")]
    ok = read_table(raw.iloc[:1], PATIENTS, "sheet")
    # Excel serial 45301 is 2024-01-10 (Excel's day 1 is 1900-01-01, with its 1900 leap-day bug)
    assert ok["infusion_date"].iloc[0] == pd.Timestamp("2024-01-10")


def test_unknown_patient(tmp_path):
    patients = read_patients(_write(tmp_path, "p.csv", PATIENTS_OK))
    path = _write(tmp_path, "t.csv", "patient_id,line,start_date\nP1,2,2024-05-01\nP9,2,2024-05-01\n"
                                     "P2,x,2024-01-01\n")
    with pytest.raises(InputError) as exc:
        read_therapies(path)
    assert _problems(exc) == [(4, "line")]  # ids are checked only against a patients table
    with pytest.raises(InputError) as exc:
        read_therapies(path, patients=patients)
    # the unknown id is reported together with the file's other problems
    assert _problems(exc) == [(3, "patient_id"), (4, "line")] and str(path) in str(exc.value)


def test_imaging_table_from_quantify_outputs(tmp_path):
    path = _write(tmp_path, "imaging.csv", "patient_id,study_date,method,mtv_ml,suv_max,n_lesions\n"
                                           "P1,2024-01-05,suv4,54.3,12.5,3\nP1,2024-01-05,suv4,10,3,1.5\n")
    with pytest.raises(InputError) as exc:
        read_imaging(path)
    assert sorted(_problems(exc)) == [(3, "n_lesions"), (3, "patient_id, study_date")]
    ok = read_imaging(_write(tmp_path, "ok.csv", "patient_id,study_date,mtv_ml\nP1,2024-01-05,54.3\n"))
    assert ok["mtv_ml"].iloc[0] == 54.3


def test_describe_schema():
    table = describe(PATIENTS)
    row = table.set_index("column").loc["death_date"]
    assert (row["kind"], bool(row["required"]), row["not_before"]) == ("date", False, "infusion_date")
    assert set(table["column"]) >= {"patient_id", "infusion_date", "emd_baseline", "del17p", "ldh_uln_u_l"}


def test_unreadable_and_unsupported_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_patients(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="unsupported"):
        read_patients(_write(tmp_path, "p.json", "{}"))
    with pytest.raises(InputError, match="empty"):
        read_patients(_write(tmp_path, "p.csv", ""))
    bad = tmp_path / "p.xlsx"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(InputError, match="cannot read"):
        read_patients(bad)


# ------------------------------------------------------------------------------------------------------------
# fuzzing: any table either parses or raises InputError, nothing else
# ------------------------------------------------------------------------------------------------------------
_cells = st.one_of(st.none(), st.text(max_size=12), st.integers(-10**6, 10**9), st.floats(allow_nan=True),
                   st.booleans(), st.dates(), st.datetimes(), st.sampled_from(
                       ["2024-01-01", "serum_m_protein", "kappa_flc", "g/dL", "mg/L", "positive", "1", "-1",
                        "2024-02-30", "kappa", "", "nan", "inf", "1e400", "0001-01-01", "9999-12-31"]))
_headers = st.lists(st.sampled_from(["patient_id", "date", "parameter", "value", "unit", "infusion_date",
                                     "death_date", "involved_light_chain", "sex", "ecog", "hb_g_l", "hb_g_dl", "x", ""]),
                    min_size=1, max_size=7)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(headers=_headers, data=st.data())
def test_fuzz_reader_raises_only_input_error(headers, data):
    n_rows = data.draw(st.integers(0, 5))
    rows = [[data.draw(_cells) for _ in headers] for _ in range(n_rows)]
    raw = pd.DataFrame(rows, columns=headers) if rows else pd.DataFrame(columns=headers)
    for reader in (lambda f: read_assessments(f, name="fuzz"), lambda f: read_table(f, PATIENTS, "fuzz"),
                   lambda f: read_table(f, ASSESSMENTS, "fuzz")):
        try:
            reader(raw)
        except InputError:
            pass


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(alphabet=st.sampled_from(list('abc,\n"-0123456789.:; \t')), max_size=200))
def test_fuzz_csv_bytes(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "labs.csv"
    path.write_text(text)
    try:
        read_assessments(path)
    except InputError:
        pass
