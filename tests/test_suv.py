"""SUV rules on tiny synthetic series: every value compared with a hand-written expected SUV."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset

from _dicom_factory import pet_header, write_series
from carpet.errors import InputError
from carpet.suv import (bsa_dubois_m2, ibw_kg, lbm_james_kg, lbm_janmahasatian_kg, suv_factor,
                        to_suv)

F18 = 6586.2
BQML = 1000.0  # every voxel of the test series holds 1000 Bq/mL


def _suv(tmp_path, header=None, values=None, **kw):
    values = np.full((4, 4, 3), BQML) if values is None else values
    write_series(tmp_path, values, header=header or pet_header(), **{
        k: v for k, v in kw.items() if k in ("per_slice", "slopes")})
    opts = {k: v for k, v in kw.items() if k not in ("per_slice", "slopes")}
    return to_suv(tmp_path, **opts)


def _expected_bw(weight_kg=70, dose_bq=370e6, minutes=60, half_life=F18, value=BQML):
    # written with powers of two, not exp(λt), to stay independent of the code under test
    return value * weight_kg * 1000 / (dose_bq * 2 ** (-minutes * 60 / half_life))


# ---- body-size formulas: published worked values -------------------------------------------------
def test_body_size_formulas():
    # Janmahasatian 2005 by hand: W 70 kg, H 175 cm, BMI 22.857; male 9270·70/(6680+216·22.857) = 55.857
    assert lbm_janmahasatian_kg(70, 175, "M") == pytest.approx(55.857, abs=1e-3)
    assert lbm_janmahasatian_kg(70, 175, "F") == pytest.approx(648900 / (8780 + 244 * 22.857), abs=1e-3)
    assert lbm_james_kg(70, 175, "M") == pytest.approx(77 - 128 * 0.16, abs=1e-9)
    assert lbm_james_kg(70, 175, "F") == pytest.approx(74.9 - 148 * 0.16, abs=1e-9)
    assert ibw_kg(175, "M") == pytest.approx(72.38) and ibw_kg(175, "F") == pytest.approx(66.43)
    assert ibw_kg(175, "O") == pytest.approx((72.38 + 66.43) / 2)
    assert bsa_dubois_m2(70, 175) == pytest.approx(1.8481, abs=1e-4)  # Du Bois table value ≈ 1.85


# ---- activity units, decay, times ---------------------------------------------------------------
def test_bqml_start(tmp_path):
    vol, res = _suv(tmp_path)
    assert vol.array == pytest.approx(_expected_bw(), rel=1e-6)
    assert "QIBA 1" in res.reference_time_rule and res.decay_correction == "START"
    assert res.tags_used["PatientWeight (0010,1030)"] == 70.0


def test_norms_lbm_bsa_ibw(tmp_path):
    bw = _expected_bw()
    for norm, scale in (("lbm", lbm_janmahasatian_kg(70, 175, "F") / 70),
                        ("ibw", 66.43 / 70), ("bsa", 1.8481e4 / 70e3)):
        vol, res = _suv(tmp_path / norm, norm=norm)
        assert vol.array == pytest.approx(bw * scale, rel=1e-4), norm
        assert vol.meta["units"] == f"SUV{norm}"
    vol, res = _suv(tmp_path / "james", norm="lbm", lbm_formula="james")
    assert vol.array == pytest.approx(bw * (74.9 - 148 * 0.16) / 70, rel=1e-6)


def test_decay_admin_uses_dose_as_is(tmp_path):
    vol, _ = _suv(tmp_path, pet_header(DecayCorrection="ADMIN"))
    assert vol.array == pytest.approx(BQML * 70e3 / 370e6, rel=1e-6)


def test_decay_none_per_slice(tmp_path):
    # slices acquired 60, 65, 70 min after injection, 5-min frames, not decay corrected
    acq = ["110000", "110500", "111000"]
    vol, res = _suv(tmp_path, pet_header(DecayCorrection="NONE"), per_slice={"AcquisitionTime": acq})
    lam_t = np.log(2) / F18 * 300
    for k, minutes in enumerate((60, 65, 70)):
        expected = BQML * 70e3 / 370e6 * lam_t / (1 - 2 ** (-300 / F18)) * 2 ** (minutes * 60 / F18)
        assert vol.array[0, 0, k] == pytest.approx(expected, rel=1e-6)
    assert res.factor is None and len(res.slice_factors) == 3


def test_series_time_after_acquisition_back_computes(tmp_path):
    # SeriesTime rewritten by post-processing (11:30); frame starts 11:00 with Δt = T/2 = 150 s
    header = pet_header(SeriesTime="113000", AcquisitionTime="110000", FrameReferenceTime="150000")
    vol, res = _suv(tmp_path, header)
    lam = np.log(2) / F18
    t_ave = np.log(lam * 300 / (1 - np.exp(-lam * 300))) / lam  # just below 150 s
    assert vol.array == pytest.approx(_expected_bw(minutes=60 + (t_ave - 150) / 60), rel=1e-7)
    assert "back-computed" in res.reference_time_rule


def test_ge_private_scan_datetime(tmp_path):
    write_series(tmp_path, np.full((4, 4, 2), BQML),
                 header=pet_header(SeriesTime="113000", AcquisitionTime="110500"))
    from _dicom_factory import read_header
    headers = [read_header(p) for p in sorted(tmp_path.glob("*.dcm"))]
    for h in headers:
        h.add_new((0x0009, 0x0010), "LO", "GEMS_PETD_01")
        h.add_new((0x0009, 0x100D), "DT", "20250101110000")
    res = suv_factor(headers)
    assert res.factor * BQML == pytest.approx(_expected_bw(), rel=1e-9)
    assert "0009,100D" in res.reference_time_rule


def test_earliest_acquisition_when_nothing_else(tmp_path):
    header = pet_header(SeriesTime="113000", FrameReferenceTime=None, ActualFrameDuration=None)
    _, res = _suv(tmp_path, header, per_slice={"AcquisitionTime": ["110100", "110000", "110200"]})
    assert res.factor * BQML == pytest.approx(_expected_bw(), rel=1e-9)
    assert "QIBA 3" in res.reference_time_rule


def test_injection_before_midnight(tmp_path):
    header = pet_header(SeriesDate="20250102", SeriesTime="003000", AcquisitionDate="20250102",
                        AcquisitionTime="003000", RadiopharmaceuticalStartDateTime=None,
                        RadiopharmaceuticalStartTime="233000")
    _, res = _suv(tmp_path, header)
    assert res.factor * BQML == pytest.approx(_expected_bw(), rel=1e-9)
    assert res.injection_time == "2025-01-01T23:30:00"


def test_dose_in_mbq_and_weight_in_grams(tmp_path):
    _, res = _suv(tmp_path, pet_header(RadionuclideTotalDose="370", PatientWeight="70000"))
    assert res.factor * BQML == pytest.approx(_expected_bw(), rel=1e-9)
    assert any("MBq" in n for n in res.notes) and any("grams" in n for n in res.notes)


def test_half_life_from_radionuclide_code(tmp_path):
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "C-131A3", "SRT", "^68^Gallium"
    header = pet_header(RadionuclideHalfLife=None, RadionuclideCodeSequence=[code])
    _, res = _suv(tmp_path, header)
    assert res.half_life_s == pytest.approx(67.71 * 60, rel=1e-3)
    assert res.factor * BQML == pytest.approx(_expected_bw(half_life=res.half_life_s), rel=1e-9)


def test_philips_counts(tmp_path):
    write_series(tmp_path, np.full((4, 4, 2), 2000.0), header=pet_header(Units="CNTS"))
    from _dicom_factory import read_header
    headers = [read_header(p) for p in sorted(tmp_path.glob("*.dcm"))]
    for h in headers:
        h.add_new((0x7053, 0x0010), "LO", "Philips PET Private Group")
        h.add_new((0x7053, 0x1009), "DS", "0.5")  # counts -> Bq/mL
    assert suv_factor(headers).factor * 2000 == pytest.approx(_expected_bw(), rel=1e-9)
    for h in headers:
        h.add_new((0x7053, 0x1000), "DS", "0.002")  # counts -> SUVbw directly, preferred
    assert suv_factor(headers).factor == pytest.approx(0.002)


def test_gml_renormalised_without_dose(tmp_path):
    header = pet_header(Units="GML", SUVType="IBW", PatientSex="M", RadionuclideTotalDose=None)
    write_series(tmp_path, np.full((4, 4, 2), 2.0), header=header, slopes=[0.01, 0.01])
    vol, res = to_suv(tmp_path)
    assert vol.array == pytest.approx(2.0 * 70 / 72.38, rel=1e-6)


def test_overrides_replace_header_and_are_recorded(tmp_path):
    header = pet_header(PatientWeight=None, RadionuclideTotalDose=None,
                        RadiopharmaceuticalStartDateTime=None, RadiopharmaceuticalStartTime=None,
                        RadionuclideHalfLife=None)
    vol, res = _suv(tmp_path, header, weight_kg=80, dose_mbq=370, injection_time="10:00",
                    half_life_s=F18)
    assert vol.array == pytest.approx(_expected_bw(weight_kg=80), rel=1e-6)
    assert res.overrides == {"weight_kg": 80, "dose_mbq": 370, "injection_time": "10:00",
                             "half_life_s": F18}
    assert res.to_dict()["carpet_version"]


# ---- bad input: missing values name the tag and the flag ---------------------------------------
@pytest.mark.parametrize("missing,tag,flag", [
    ({"PatientWeight": None}, "PatientWeight (0010,1030)", "--weight-kg"),
    ({"PatientWeight": "0"}, "PatientWeight (0010,1030)", "--weight-kg"),
    ({"RadionuclideTotalDose": None}, "RadionuclideTotalDose (0018,1074)", "--dose-mbq"),
    ({"RadiopharmaceuticalStartDateTime": None, "RadiopharmaceuticalStartTime": None},
     "RadiopharmaceuticalStartTime (0018,1072/0018,1078)", "--injection-time"),
    ({"RadionuclideHalfLife": None}, "RadionuclideHalfLife (0018,1075)", "--half-life-s"),
])
def test_missing_suv_tag(tmp_path, missing, tag, flag):
    with pytest.raises(InputError) as info:
        _suv(tmp_path, pet_header(**missing))
    assert tag in str(info.value) and flag in str(info.value)


def test_missing_height_for_lbm(tmp_path):
    with pytest.raises(InputError, match=r"PatientSize \(0010,1020\).*--height-cm"):
        _suv(tmp_path, pet_header(PatientSize=None), norm="lbm")


@pytest.mark.parametrize("units", ["PROPCNTS", "1CM", "CPS"])
def test_unconvertible_units(tmp_path, units):
    with pytest.raises(InputError, match=rf"Units \(0054,1001\).*{units}.*cannot be converted"):
        _suv(tmp_path, pet_header(Units=units))


def test_counts_without_scale_factor(tmp_path):
    with pytest.raises(InputError, match="CNTS without a Philips"):
        _suv(tmp_path, pet_header(Units="CNTS"))


def test_unknown_decay_correction(tmp_path):
    with pytest.raises(InputError, match=r"DecayCorrection \(0054,1102\)"):
        _suv(tmp_path, pet_header(DecayCorrection="WHATEVER"))


def test_ct_is_not_pet(tmp_path):
    write_series(tmp_path, np.zeros((4, 4, 2)), header={"Modality": "CT"})
    with pytest.raises(InputError, match="expected exactly one PT series"):
        to_suv(tmp_path)


# ---- the command -----------------------------------------------------------------------------------
def test_cli_suv(tmp_path):
    import json

    from typer.testing import CliRunner

    from carpet.cli import app
    from carpet.io import read_nifti

    write_series(tmp_path / "pet", np.full((4, 4, 3), BQML))
    out = tmp_path / "out" / "suv.nii.gz"
    res = CliRunner().invoke(app, ["suv", str(tmp_path / "pet"), "--out", str(out), "--json",
                                   "--weight-kg", "80"])
    assert res.exit_code == 0, res.output
    record = json.loads(res.output)
    assert record["overrides"] == {"weight_kg": 80.0} and record["carpet_version"]
    assert json.loads((tmp_path / "out" / "suv.json").read_text())["factor"] == record["factor"]
    assert read_nifti(out).array == pytest.approx(_expected_bw(weight_kg=80), rel=1e-6)

    write_series(tmp_path / "bad", np.full((4, 4, 3), BQML), header=pet_header(PatientWeight=None))
    res = CliRunner().invoke(app, ["suv", str(tmp_path / "bad"), "--out", str(out)])
    assert res.exit_code == 1
    assert "PatientWeight (0010,1030)" in res.output and "--weight-kg" in res.output


def test_injection_time_override_before_midnight(tmp_path):
    header = pet_header(SeriesDate="20250102", SeriesTime="003000", AcquisitionDate="20250102",
                        AcquisitionTime="003000")
    _, res = _suv(tmp_path, header, injection_time="23:30")
    assert res.injection_time == "2025-01-01T23:30:00"
    assert res.factor * BQML == pytest.approx(_expected_bw(), rel=1e-9)


def test_sex_needed_for_lbm(tmp_path):
    with pytest.raises(InputError, match=r"PatientSex \(0010,0040\).*--sex"):
        _suv(tmp_path / "a", pet_header(PatientSex=None), norm="lbm")
    with pytest.raises(InputError, match="--sex: sex must be M, F or O, got 'X'"):
        _suv(tmp_path / "b", norm="ibw", sex="x")
    vol, _ = _suv(tmp_path / "c", pet_header(PatientSex=None), norm="bsa")  # BSA needs no sex
    assert vol.array == pytest.approx(_expected_bw() * 1.8481e4 / 70e3, rel=1e-4)


def test_unreadable_time(tmp_path):
    with pytest.warns(UserWarning, match="Invalid value for VR DT"):  # pydicom, while writing it
        write_series(tmp_path, np.full((4, 4, 2), BQML),
                     header=pet_header(RadiopharmaceuticalStartDateTime="yesterday 10h"))
    with pytest.raises(InputError, match="cannot read the DICOM date/time.*--injection-time"):
        to_suv(tmp_path)


@pytest.mark.parametrize("start", ["20241231100000", "20250101113000"])
def test_implausible_uptake_time(tmp_path, start):
    # injected a day before the scan (wrong date) or after the scan
    with pytest.raises(InputError, match="implausible uptake time.*expected 0-24 h"):
        _suv(tmp_path, pet_header(RadiopharmaceuticalStartDateTime=start))


def test_series_date_missing_uses_acquisition_date(tmp_path):
    _, res = _suv(tmp_path, pet_header(SeriesDate=None, RadiopharmaceuticalStartDateTime=None))
    assert res.factor * BQML == pytest.approx(_expected_bw(), rel=1e-9)


def test_james_lbm_refused_when_not_positive():
    from carpet.suv import normaliser

    # 1.10·W − 128·(W/H)² ≤ 0 once W ≥ 1.10·H²/128: for H = 150 cm, W ≥ 193.4 kg
    with pytest.raises(InputError, match="james LBM formula gives .*--lbm-formula janma"):
        normaliser("lbm", 200.0, 150.0, "M", "james")
    assert normaliser("lbm", 200.0, 150.0, "M", "janma")[0] > 0


def test_weight_not_a_number(tmp_path):
    from _dicom_factory import read_header

    (path,) = write_series(tmp_path, np.full((4, 4, 1), BQML))
    header = read_header(path)
    del header.PatientWeight
    header.add_new(0x00101030, "LO", "seventy")  # as some exports write it
    with pytest.raises(InputError, match=r"PatientWeight \(0010,1030\).*'seventy' is not a number.*--weight-kg"):
        suv_factor(header)


@pytest.mark.parametrize("private,uses_ge", [
    # GE's scan datetime in another block (0009,11xx), found by its creator; the 10xx block is not GE's
    ({(0x0009, 0x0010): ("LO", "SOMEONE_ELSE"), (0x0009, 0x100D): ("DT", "20250101090000"),
      (0x0009, 0x0011): ("LO", "GEMS_PETD_01"), (0x0009, 0x110D): ("DT", "20250101110000")}, True),
    # another vendor's block at the usual place is not read as GE's
    ({(0x0009, 0x0010): ("LO", "SOMEONE_ELSE"), (0x0009, 0x100D): ("DT", "20250101090000")}, False),
])
def test_private_tags_found_through_their_creator(tmp_path, private, uses_ge):
    from _dicom_factory import read_header

    write_series(tmp_path, np.full((4, 4, 2), BQML),
                 header=pet_header(SeriesTime="113000", AcquisitionTime="110000",
                                   FrameReferenceTime=None, ActualFrameDuration=None))
    headers = [read_header(p) for p in sorted(tmp_path.glob("*.dcm"))]
    for h in headers:
        for tag, (vr, value) in private.items():
            h.add_new(tag, vr, value)
    res = suv_factor(headers)
    assert ("0009,100D" in res.reference_time_rule) == uses_ge
    assert res.factor * BQML == pytest.approx(_expected_bw(), rel=1e-9)  # 11:00 either way
