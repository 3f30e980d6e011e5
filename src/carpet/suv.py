"""Standardised uptake values from PET DICOM: the QIBA/IBSI vendor-neutral rules.

``SUV = activity concentration [Bq/mL] × normaliser [g, or cm² for BSA] / dose at the reference time [Bq]``.

Written here because no maintained Python library implements the whole rule set (vendor units, private
tags, reference-time order, decay correction NONE); it follows the IBSI SUV computation manual
(Vácha et al., ``../shared/reference/suv-dro/suv_manual.txt``) and is checked against its 17 digital
reference objects. Each conversion records which tags, which rule and which factor it used
(:class:`SUVResult`).

Rules, in the order applied
---------------------------
1. Values are stored × RescaleSlope, per slice (done by :func:`carpet.io.dicom.read_series`);
   PET RescaleIntercept ≠ 0 is refused.
2. Units: ``BQML`` as is; ``CNTS`` × Philips activity scale factor (7053,1009) to Bq/mL, or ×
   Philips SUV scale factor (7053,1000) directly to SUVbw; ``GML`` is already SUV of SUVType (0054,1006)
   (BW when empty) and ``CM2ML`` is SUVbsa — both are re-normalised without dose or time. Any other
   unit (PROPCNTS, PROPCPS, CPS, 1CM, ...) is refused.
3. Decay correction (0054,1102): ``ADMIN`` uses the dose as given; ``START`` decays the dose to the
   reference time; ``NONE`` decay-corrects each slice from its own acquisition time and frame duration
   to the injection time: ``factor × λT/(1−e^{−λT}) × e^{λ(t_acq−t_adm)}``.
4. Reference time for ``START``: SeriesDate/Time when not after the earliest acquisition date/time;
   else GE private PET scan datetime (0009,100D); else back-computed from the earliest slice's
   acquisition time, frame reference time (0054,1300) and actual frame duration (0018,1242),
   ``t_ref = t_acq + (1/λ)·ln(λT/(1−e^{−λT})) − Δt``; else the earliest acquisition date/time.
   (QIBA lists "earliest acquisition time" before back-computation; carpet swaps the last two
   because the earliest acquisition time is wrong for multi-bed or cropped series — the manual's own
   DRO_3_2 fails with it — and back-computation needs only standard tags.)
5. Injection time: RadiopharmaceuticalStartDateTime (0018,1078), else RadiopharmaceuticalStartTime
   (0018,1072) on the scan date (SeriesDate, else AcquisitionDate, else StudyDate), moved to the
   previous day when that would fall after the scan. An injection after the scan or more than 24 h
   before it is refused (a wrong date, never a silently wrong decay factor).
6. Dose (0018,1074) below 1e5 is taken as MBq (doses are ~1e2 MBq or ~1e8 Bq); weight (0010,1030)
   above 1000 as grams; height (0010,1020) above 3 as cm.
7. Half-life: RadionuclideHalfLife (0018,1075), else from the RadionuclideCodeSequence (0054,0300).

Normalisers (W kg, H cm): ``bw`` W; ``lbm`` Janmahasatian (default) or James (``LBMJAMES128``
coefficients); ``ibw`` Devine; ``bsa`` Du Bois, in cm². For sex ``O`` (other) the mean of the male
and female normaliser is used, as the IBSI manual suggests.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.valuerep import DT, TM

from carpet.errors import InputError
from carpet.provenance import provenance
from carpet.volume import Volume

NORMS = ("bw", "lbm", "bsa", "ibw")
LBM_FORMULAS = ("janma", "james")

#: Half-lives in seconds by radionuclide (DDEP/NUBASE recommended values), keyed by the SNOMED-RT
#: (SRT) and SNOMED CT codes of DICOM CID 4020 and by a normalised name ("f18").
_NUCLIDES = {
    "f18": 6586.2, "ga68": 4062.6, "c11": 1221.8, "n13": 597.9, "o15": 122.24,
    "zr89": 282276.0, "cu64": 45721.1, "rb82": 76.38, "i124": 360806.4, "y86": 53064.0,
}
_NUCLIDE_CODES = {
    "C-111A1": "f18", "77004003": "f18", "C-131A3": "ga68", "C-105A1": "c11", "C-107A1": "n13",
    "C-B1038": "o15", "C-178A8": "zr89", "C-127A1": "cu64", "C-159A2": "rb82", "C-114A5": "i124",
}

_FLAG = {"PatientWeight": "--weight-kg", "PatientSize": "--height-cm", "PatientSex": "--sex",
         "RadionuclideTotalDose": "--dose-mbq", "RadiopharmaceuticalStartTime": "--injection-time",
         "RadionuclideHalfLife": "--half-life-s"}
_TAG = {"PatientWeight": "0010,1030", "PatientSize": "0010,1020", "PatientSex": "0010,0040",
        "RadionuclideTotalDose": "0018,1074", "RadiopharmaceuticalStartTime": "0018,1072/0018,1078",
        "RadionuclideHalfLife": "0018,1075"}


@dataclass
class SUVResult:
    """How a PET series was converted to SUV (JSON-serialisable via :meth:`to_dict`).

    Attributes
    ----------
    norm : {'bw', 'lbm', 'bsa', 'ibw'}
    factor : float or None
        The one factor (SUV per stored-and-rescaled value) when every slice shares it.
    slice_factors : list of float
        Factor per slice, in the volume's k order (they differ for DecayCorrection NONE).
    formula : str
        The equation used, in words.
    units, decay_correction : str
        The series' Units (0054,1001) and DecayCorrection (0054,1102).
    reference_time, reference_time_rule : str or None
        ISO time the dose was decayed to and which rule chose it.
    injection_time, half_life_s, half_life_source, dose_bq, weight_kg, height_cm, sex, normaliser
        The inputs actually used (after unit fixes and overrides); ``normaliser`` in g (cm² for bsa).
    tags_used : dict
        DICOM attribute (tag) -> value read from the header.
    overrides : dict
        Values supplied by the caller instead of the header.
    notes : list of str
        Unit guesses and other decisions a reader should know about.
    """

    norm: str
    factor: float | None
    slice_factors: list[float]
    formula: str
    units: str
    decay_correction: str | None = None
    lbm_formula: str | None = None
    reference_time: str | None = None
    reference_time_rule: str | None = None
    injection_time: str | None = None
    half_life_s: float | None = None
    half_life_source: str | None = None
    dose_bq: float | None = None
    weight_kg: float | None = None
    height_cm: float | None = None
    sex: str | None = None
    normaliser: float | None = None
    tags_used: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, with carpet's provenance fields, for JSON output."""
        fields = asdict(self)
        if self.factor is not None:  # one factor says it all; keep the JSON short
            fields.pop("slice_factors")
        return provenance(method="suv", ruleset="IBSI-SUV-manual/QIBA-vendor-neutral", **fields)


# ------------------------------------------------------------------------------------------------
# body-size formulas
# ------------------------------------------------------------------------------------------------
def lbm_janmahasatian_kg(weight_kg: float, height_cm: float, sex: str) -> float:
    """Lean body mass (kg), Janmahasatian et al. Clin Pharmacokinet 2005;44:1051.

    ``9270·W/(6680+216·BMI)`` (male), ``9270·W/(8780+244·BMI)`` (female), BMI = W/H[m]².
    """
    bmi = weight_kg / (height_cm / 100.0) ** 2
    return _by_sex(sex, 9270 * weight_kg / (6680 + 216 * bmi), 9270 * weight_kg / (8780 + 244 * bmi))


def lbm_james_kg(weight_kg: float, height_cm: float, sex: str) -> float:
    """Lean body mass (kg), James 1976 with DICOM ``LBMJAMES128`` coefficients.

    ``1.10·W − 128·(W/H)²`` (male), ``1.07·W − 148·(W/H)²`` (female), H in cm.
    """
    r2 = (weight_kg / height_cm) ** 2
    return _by_sex(sex, 1.10 * weight_kg - 128 * r2, 1.07 * weight_kg - 148 * r2)


def lbm_morgan_kg(weight_kg: float, height_cm: float, sex: str) -> float:
    """Lean body mass (kg) for DICOM SUVType ``LBM``: ``1.10·W − 120·(W/H)²`` (male), female as James."""
    r2 = (weight_kg / height_cm) ** 2
    return _by_sex(sex, 1.10 * weight_kg - 120 * r2, 1.07 * weight_kg - 148 * r2)


def ibw_kg(height_cm: float, sex: str) -> float:
    """Ideal body weight (kg), Devine: ``48.0 + 1.06·(H−152)`` (male), ``45.5 + 0.91·(H−152)`` (female)."""
    return _by_sex(sex, 48.0 + 1.06 * (height_cm - 152), 45.5 + 0.91 * (height_cm - 152))


def bsa_dubois_m2(weight_kg: float, height_cm: float) -> float:
    """Body surface area (m²), Du Bois & Du Bois 1916: ``0.007184·W^0.425·H^0.725``."""
    return 0.007184 * weight_kg ** 0.425 * height_cm ** 0.725


def _by_sex(sex: str, male: float, female: float) -> float:
    # IBSI manual: no consensus for "other"; the mean of the two is "a reasonable and simple solution".
    return {"M": male, "F": female}.get(sex, (male + female) / 2.0)


def normaliser(norm: str, weight_kg: float, height_cm: float | None, sex: str | None,
               lbm_formula: str = "janma") -> tuple[float, str]:
    """Mass (g) or area (cm², for ``bsa``) that multiplies activity/dose, and its formula name."""
    if norm == "bw":
        return weight_kg * 1000.0, "body weight"
    if norm == "bsa":
        return bsa_dubois_m2(weight_kg, height_cm) * 1e4, "BSA Du Bois (cm²)"
    if norm == "ibw":
        return ibw_kg(height_cm, sex) * 1000.0, "IBW Devine"
    if norm == "lbm":
        fn = {"janma": lbm_janmahasatian_kg, "james": lbm_james_kg}[lbm_formula]
        lbm = fn(weight_kg, height_cm, sex)
        if lbm <= 0:  # James's quadratic turns over in obesity (spec §5.1)
            raise InputError(f"the {lbm_formula} LBM formula gives {lbm:.1f} kg for {weight_kg} kg, "
                             f"{height_cm} cm", where="--lbm-formula", hint="use --lbm-formula janma")
        return lbm * 1000.0, f"LBM {lbm_formula}"
    raise InputError(f"unknown SUV normalisation {norm!r}; expected one of {NORMS}", where="--norm")


# ------------------------------------------------------------------------------------------------
# header access
# ------------------------------------------------------------------------------------------------
def _radiopharm(ds: Dataset) -> Dataset:
    seq = ds.get("RadiopharmaceuticalInformationSequence")
    return seq[0] if seq else Dataset()


def _missing(keyword: str, what: str) -> InputError:
    return InputError(f"{what} is missing or empty; SUV cannot be computed without it",
                      where=f"{keyword} ({_TAG[keyword]})", hint=f"supply it with {_FLAG[keyword]}")


def _unreadable(value: Any) -> InputError:
    return InputError(f"cannot read the DICOM date/time {value!r} (expected YYYYMMDD, HHMMSS[.FFFFFF] "
                      "or YYYYMMDDHHMMSS)", where="date/time attributes of the SUV header",
                      hint="fix the header or give --injection-time")


def _dt(date: Any, time: Any) -> datetime | None:
    if not time:
        return None
    try:
        t = TM(str(time).strip())
        d = DT(str(date).strip() + "000000") if date else DT("19000101000000")
        return datetime(d.year, d.month, d.day, t.hour, t.minute, t.second, t.microsecond)
    except (ValueError, TypeError):
        raise _unreadable(f"{date} {time}") from None


def _datetime(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", "ignore")
    try:
        dt = DT(str(value).strip().rstrip("\x00 "))
        return datetime(dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second, dt.microsecond)
    except (ValueError, TypeError):
        raise _unreadable(value) from None


def _text(ds: Dataset, keyword: str) -> str | None:
    """An attribute's text from the undecoded element (pydicom's DA/TM/DT decoding is slow per slice)."""
    if keyword not in ds:
        return None
    value = ds.get_item(keyword).value
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return (str(value).strip(" \x00") if value is not None else "") or None


def _day(ds: Dataset) -> str | None:
    """The scan date: SeriesDate, else AcquisitionDate, else StudyDate (never a made-up day)."""
    return _text(ds, "SeriesDate") or _text(ds, "AcquisitionDate") or _text(ds, "StudyDate")


def _series_datetime(ds: Dataset) -> datetime | None:
    day = _day(ds)
    return _dt(day, _text(ds, "SeriesTime")) if day else None


def _acq_datetime(ds: Dataset) -> datetime | None:
    if dt := _text(ds, "AcquisitionDateTime"):
        return _cached_datetime(dt)
    day = _text(ds, "AcquisitionDate") or _day(ds)
    return _cached_dt(day, _text(ds, "AcquisitionTime")) if day else None


# Hundreds of slices share a handful of acquisition times: parse each distinct text once.
_cached_dt = functools.lru_cache(maxsize=1024)(lambda date, time: _dt(date, time))
_cached_datetime = functools.lru_cache(maxsize=1024)(lambda value: _datetime(value))


_GE_PET = (0x0009, "GEMS_PETD_01")
_PHILIPS_PET = (0x7053, "Philips PET Private Group")


def _private_value(ds: Dataset, block: tuple[int, str], offset: int) -> str | None:
    """A private attribute's text, found through its private creator (the usual ``xx10`` block when
    the creator is missing, as in de-identified files and the IBSI DROs)."""
    group, creator = block
    try:
        elem = ds.private_block(group, creator)[offset]
    except KeyError:
        # No such creator: use the usual block only if no other creator claims it.
        elem = None if (group, 0x0010) in ds else ds.get((group, 0x1000 + offset))
    if elem is None or elem.value in (None, b"", ""):
        return None
    value = elem.value.decode("ascii", "ignore") if isinstance(elem.value, bytes) else elem.value
    return str(value).strip(" \x00") or None


def _ge_scan_datetime(ds: Dataset) -> datetime | None:
    value = _private_value(ds, _GE_PET, 0x0D)
    return _datetime(value) if value else None


def _private_float(ds: Dataset, block: tuple[int, str], offset: int, name: str) -> float | None:
    value = _private_value(ds, block, offset)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise InputError(f"{name} {value!r} is not a number",
                         where=f"({block[0]:04X},{0x1000 + offset:04X})") from None


def _t_ave_s(lam: float, duration_s: float) -> float:
    """Average count-rate time within a frame, (1/λ)·ln(λT/(1−e^{−λT})) (IBSI manual)."""
    lt = lam * duration_s
    return math.log(lt / -math.expm1(-lt)) / lam


def _parse_time_override(value: str | datetime, scan: datetime | None) -> datetime:
    """``--injection-time``: an ISO date-time as given, or a time of day before the scan."""
    if isinstance(value, datetime):
        return value
    text = str(value).strip()
    for fmt in ("%H:%M:%S", "%H:%M", "%H%M%S", "%H%M"):
        try:
            clock = datetime.strptime(text, fmt).time()
        except ValueError:
            continue
        if scan is None:
            raise InputError("the header has no scan date to place a time of day on; give "
                             "--injection-time as an ISO date-time", where="--injection-time")
        t = datetime.combine(scan.date(), clock)
        return t - timedelta(days=1) if t > scan else t  # injected before midnight
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    raise InputError(f"cannot read injection time {value!r}; expected HH:MM[:SS] or an ISO date-time",
                     where="--injection-time")


# ------------------------------------------------------------------------------------------------
# the factor
# ------------------------------------------------------------------------------------------------
def suv_factor(headers: Dataset | Sequence[Dataset], norm: str = "bw", *, lbm_formula: str = "janma",
               weight_kg: float | None = None, height_cm: float | None = None, sex: str | None = None,
               dose_mbq: float | None = None, injection_time: str | datetime | None = None,
               half_life_s: float | None = None) -> SUVResult:
    """SUV factor(s) for a PET series: SUV = (stored value × RescaleSlope) × factor.

    Parameters
    ----------
    headers : Dataset or sequence of Dataset
        The series' slice headers, in the volume's k order (as from :func:`carpet.io.dicom.read_series`);
        one dataset stands for all slices.
    norm : {'bw', 'lbm', 'bsa', 'ibw'}
        Normalisation. ``bsa`` gives SUV in cm²/mL, the others g/mL.
    lbm_formula : {'janma', 'james'}
        LBM formula for ``norm='lbm'`` (Janmahasatian recommended, Tahari et al. JNM 2014).
    weight_kg, height_cm, sex, dose_mbq, injection_time, half_life_s : optional
        Overrides for the header values (``injection_time`` as ``HH:MM[:SS]`` on the series date, or an
        ISO date-time). Each is recorded in :attr:`SUVResult.overrides`.

    Raises
    ------
    InputError
        A value needed for this conversion is missing (message names the tag and the flag), or the
        units / decay correction cannot be converted to SUV.
    """
    if norm not in NORMS:
        raise InputError(f"unknown SUV normalisation {norm!r}; expected one of {', '.join(NORMS)}",
                         where="--norm")
    if lbm_formula not in LBM_FORMULAS:
        raise InputError(f"unknown LBM formula {lbm_formula!r}; expected janma or james",
                         where="--lbm-formula")
    for flag, value in (("--weight-kg", weight_kg), ("--height-cm", height_cm), ("--dose-mbq", dose_mbq),
                        ("--half-life-s", half_life_s)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise InputError(f"must be a positive number, got {value}", where=flag)
    slices = [headers] if isinstance(headers, Dataset) else list(headers)
    ds = slices[0]
    rp = _radiopharm(ds)
    overrides = {k: v for k, v in dict(weight_kg=weight_kg, height_cm=height_cm, sex=sex,
                                       dose_mbq=dose_mbq, injection_time=injection_time,
                                       half_life_s=half_life_s).items() if v is not None}
    if isinstance(overrides.get("injection_time"), datetime):
        overrides["injection_time"] = overrides["injection_time"].isoformat()
    tags: dict[str, Any] = {}
    notes: list[str] = []
    units = str(ds.get("Units", "")).strip().upper()
    tags["Units (0054,1001)"] = units
    modality = str(ds.get("Modality", ""))
    if modality != "PT":
        raise InputError(f"SUV needs a PET series, this one has modality {modality!r}",
                         where="Modality (0008,0060)")

    suv_type = str(ds.get("SUVType", "") or "").strip().upper() or None
    weight_kg, height_cm, sex = _body(ds, norm, units, suv_type, weight_kg, height_cm, sex,
                                      tags, notes)
    norm_value, norm_name = normaliser(norm, weight_kg, height_cm, sex, lbm_formula)

    common = dict(norm=norm, units=units, lbm_formula=lbm_formula if norm == "lbm" else None,
                  weight_kg=weight_kg, height_cm=height_cm, sex=sex, normaliser=norm_value,
                  tags_used=tags, overrides=overrides, notes=notes)
    n = len(slices)

    # -- already normalised images: re-normalise, no dose or time needed -----------------------
    if units in ("GML", "CM2ML"):
        stored = "BSA" if units == "CM2ML" else (suv_type or "BW")
        tags["SUVType (0054,1006)"] = suv_type
        stored_norm = _stored_normaliser(stored, weight_kg, height_cm, sex)
        f = norm_value / stored_norm
        return SUVResult(factor=f, slice_factors=[f] * n,
                         formula=f"SUV{norm} = stored SUV ({stored}, Units {units}) × {norm_name} / "
                                 f"{stored} normaliser", **common)
    if units == "CNTS":
        suv_sf = _private_float(ds, _PHILIPS_PET, 0x00, "Philips SUV scale factor")
        act_sf = _private_float(ds, _PHILIPS_PET, 0x09, "Philips activity concentration scale factor")
        tags["Philips SUV scale factor (7053,1000)"] = suv_sf
        tags["Philips activity concentration scale factor (7053,1009)"] = act_sf
        if suv_sf:
            f = suv_sf * norm_value / (weight_kg * 1000.0)
            return SUVResult(factor=f, slice_factors=[f] * n,
                             formula=f"SUV{norm} = counts × Philips SUV scale factor (SUVbw) × "
                                     f"{norm_name} / body weight", **common)
        if not act_sf:
            raise InputError("Units CNTS without a Philips SUV scale factor (7053,1000) or activity "
                             "concentration scale factor (7053,1009): counts cannot be converted to "
                             "activity", where="Units (0054,1001)")
        activity_scale = act_sf
    elif units == "BQML":
        activity_scale = 1.0
    else:
        raise InputError(f"Units {units or '(empty)'!r} cannot be converted to SUV (expected BQML, "
                         "CNTS with Philips scale factors, GML or CM2ML)", where="Units (0054,1001)")

    # -- activity images: dose, times, decay -------------------------------------------------
    if dose_mbq is not None:
        dose_bq = float(dose_mbq) * 1e6
    else:
        dose_bq = _header_number(rp, "RadionuclideTotalDose", "the injected dose", tags)
        if dose_bq < 1e5:
            notes.append(f"RadionuclideTotalDose {dose_bq} < 1e5 taken as MBq")
            dose_bq *= 1e6
    half_life_s, hl_source = _half_life(rp, half_life_s, tags)
    lam = math.log(2) / half_life_s
    decay = str(ds.get("DecayCorrection", "") or "").strip().upper()
    tags["DecayCorrection (0054,1102)"] = decay
    common.update(decay_correction=decay, half_life_s=half_life_s, half_life_source=hl_source,
                  dose_bq=dose_bq)
    base = activity_scale * norm_value / dose_bq
    if decay == "ADMIN":
        t_adm = _injection(ds, rp, injection_time, _scan_start(slices), tags, required=False)
        return SUVResult(factor=base, slice_factors=[base] * n,
                         formula=f"SUV{norm} = activity × {norm_name} / dose (images decay-corrected "
                                 "to administration)",
                         injection_time=t_adm.isoformat() if t_adm else None, **common)
    if decay == "START":
        t_ref, rule = _reference_time(slices, lam, tags)
        t_adm = _injection(ds, rp, injection_time, t_ref, tags)
        _check_uptake(t_adm, t_ref, rule)
        f = base * math.exp(lam * (t_ref - t_adm).total_seconds())
        return SUVResult(factor=f, slice_factors=[f] * n,
                         formula=f"SUV{norm} = activity × {norm_name} / (dose × exp(−λ·(t_ref − t_inj)))",
                         reference_time=t_ref.isoformat(), reference_time_rule=rule,
                         injection_time=t_adm.isoformat(), **common)
    if decay == "NONE":
        t_adm = _injection(ds, rp, injection_time, _scan_start(slices), tags)
        factors = []
        for k, s in enumerate(slices):
            t_acq = _acq_datetime(s)
            dur = s.get("ActualFrameDuration")
            if t_acq is None or not dur:
                raise InputError(f"DecayCorrection NONE needs every slice's acquisition time and frame "
                                 f"duration; slice {k} lacks them",
                                 where="AcquisitionTime (0008,0032) / ActualFrameDuration (0018,1242)")
            _check_uptake(t_adm, t_acq, f"AcquisitionTime of slice {k}")
            lt = lam * float(dur) / 1000.0
            factors.append(base * lt / -math.expm1(-lt)
                           * math.exp(lam * (t_acq - t_adm).total_seconds()))
        uniform = factors[0] if np.allclose(factors, factors[0], rtol=1e-12) else None
        return SUVResult(factor=uniform, slice_factors=factors,
                         formula=f"SUV{norm} = activity × {norm_name} / dose × λT/(1−e^(−λT)) × "
                                 "exp(λ·(t_acq − t_inj)), per slice (images not decay-corrected)",
                         injection_time=t_adm.isoformat(), **common)
    raise InputError(f"DecayCorrection {decay or '(empty)'!r} is not one of START, ADMIN, NONE",
                     where="DecayCorrection (0054,1102)")


def _header_number(ds: Dataset, keyword: str, what: str, tags: dict) -> float:
    """A positive number from the header, or an error naming the tag and the flag that supplies it."""
    value = None
    try:
        value = ds.get(keyword)  # pydicom itself raises on a malformed DS
        number = float(value)
        tags[f"{keyword} ({_TAG[keyword]})"] = number
    except (TypeError, ValueError):
        raise _missing(keyword, what) if value in (None, "") else InputError(
            f"{what} {value!r} is not a number", where=f"{keyword} ({_TAG[keyword]})",
            hint=f"supply it with {_FLAG[keyword]}") from None
    if not number > 0:
        raise _missing(keyword, what)
    return number


def _body(ds: Dataset, norm: str, units: str, suv_type: str | None, weight_kg: float | None,
          height_cm: float | None, sex: str | None, tags: dict, notes: list) -> tuple:
    """Weight (kg), height (cm) and sex from the overrides or the header, with unit fixes noted."""
    if weight_kg is None:
        weight_kg = _header_number(ds, "PatientWeight", "the patient's weight", tags)
        if weight_kg > 1000:
            notes.append(f"PatientWeight {weight_kg} > 1000 taken as grams")
            weight_kg /= 1000.0
    need_size = norm != "bw" or units == "CM2ML" or (units == "GML" and suv_type not in (None, "BW"))
    if not need_size:
        return weight_kg, height_cm, sex
    if height_cm is None:
        size = _header_number(ds, "PatientSize", "the patient's height", tags)
        height_cm = size if size > 3 else size * 100.0
        if size > 3:
            notes.append(f"PatientSize {size} > 3 taken as cm")
    from_header = sex is None
    if from_header:
        sex = str(ds.get("PatientSex", "") or "")
        tags["PatientSex (0010,0040)"] = sex
    sex = str(sex).strip().upper()
    needs_sex = norm in ("lbm", "ibw") or (units == "GML" and suv_type not in (None, "BW", "BSA"))
    if sex not in ("M", "F", "O") and needs_sex:
        if not from_header:
            raise InputError(f"sex must be M, F or O, got {sex!r}", where="--sex")
        raise _missing("PatientSex", "the patient's sex (M, F or O)")
    if sex == "O":
        notes.append("sex 'O': mean of the male and female normalisers (IBSI manual)")
    return weight_kg, height_cm, sex


def _stored_normaliser(suv_type: str, weight_kg: float, height_cm: float | None, sex: str | None) -> float:
    """Normaliser (g, or cm² for BSA) that a GML/CM2ML image was made with (DICOM SUVType)."""
    if suv_type == "BW":
        return weight_kg * 1000.0
    if suv_type == "BSA":
        return bsa_dubois_m2(weight_kg, height_cm) * 1e4
    formulas = {"LBM": lbm_morgan_kg, "LBMJAMES128": lbm_james_kg, "LBMJANMA": lbm_janmahasatian_kg}
    if suv_type in formulas:
        return formulas[suv_type](weight_kg, height_cm, sex) * 1000.0
    if suv_type == "IBW":
        return ibw_kg(height_cm, sex) * 1000.0
    raise InputError(f"SUVType {suv_type!r} is not a DICOM SUV type (BW, BSA, LBM, LBMJAMES128, "
                     "LBMJANMA, IBW)", where="SUVType (0054,1006)")


def _half_life(rp: Dataset, override: float | None, tags: dict) -> tuple[float, str]:
    if override is not None:
        return float(override), "override --half-life-s"
    hl = rp.get("RadionuclideHalfLife")
    tags["RadionuclideHalfLife (0018,1075)"] = None if hl in (None, "") else float(hl)
    if hl not in (None, "") and float(hl) > 0:
        return float(hl), "RadionuclideHalfLife (0018,1075)"
    for item in rp.get("RadionuclideCodeSequence") or []:
        code = str(item.get("CodeValue", "")).strip()
        meaning = "".join(ch for ch in str(item.get("CodeMeaning", "")).lower() if ch.isalnum())
        key = _NUCLIDE_CODES.get(code)
        if key is None:  # CodeMeaning like "^18^Fluorine": digits + element name
            names = {"fluorine": "f", "gallium": "ga", "carbon": "c", "nitrogen": "n", "oxygen": "o",
                     "zirconium": "zr", "copper": "cu", "rubidium": "rb", "iodine": "i", "yttrium": "y"}
            digits = "".join(ch for ch in meaning if ch.isdigit())
            element = next((v for k, v in names.items() if k in meaning), None)
            key = f"{element}{digits}" if element and digits else None
        if key in _NUCLIDES:
            tags["RadionuclideCodeSequence (0054,0300)"] = f"{code} {item.get('CodeMeaning', '')}"
            return _NUCLIDES[key], f"RadionuclideCodeSequence (0054,0300) {key}"
    raise _missing("RadionuclideHalfLife", "the radionuclide half-life (and no known radionuclide code)")


#: Longest injection-to-scan interval accepted (a day: beyond that a date is surely wrong).
MAX_UPTAKE = timedelta(hours=24)


def _check_uptake(t_adm: datetime, t_ref: datetime, rule: str) -> None:
    """Refuse an injection after the scan or more than a day before it: a wrong date, not biology."""
    delta = t_ref - t_adm
    if delta < timedelta(0) or delta > MAX_UPTAKE:
        raise InputError(f"implausible uptake time {delta.total_seconds() / 3600:.2f} h between the "
                         f"injection ({t_adm.isoformat()}) and the scan ({t_ref.isoformat()}, {rule}); "
                         "expected 0-24 h", where="RadiopharmaceuticalStartDateTime (0018,1078) / "
                         "SeriesDate (0008,0021)", hint="check the dates, or give --injection-time")


def _scan_start(slices: Sequence[Dataset]) -> datetime | None:
    times = [t for s in slices if (t := _acq_datetime(s)) is not None]
    series = _series_datetime(slices[0])
    return min(times) if times else series


def _reference_time(slices: Sequence[Dataset], lam: float, tags: dict) -> tuple[datetime, str]:
    ds = slices[0]
    series = _series_datetime(ds)
    acq = [(t, s) for s in slices if (t := _acq_datetime(s)) is not None]
    earliest, first = min(acq, key=lambda x: x[0]) if acq else (None, None)
    tags["SeriesDate/SeriesTime (0008,0021/0031)"] = series.isoformat() if series else None
    tags["earliest AcquisitionDateTime (0008,0022/0032)"] = earliest.isoformat() if earliest else None
    if series is not None and (earliest is None or series <= earliest):
        return series, "SeriesDate/SeriesTime, not after the earliest acquisition time (QIBA 1)"
    ge = _ge_scan_datetime(ds)
    if ge is not None:
        tags["GE PET scan datetime (0009,100D)"] = ge.isoformat()
        return ge, "GE private PET scan datetime (0009,100D) (QIBA 2)"
    if first is not None and first.get("FrameReferenceTime") and first.get("ActualFrameDuration"):
        dt_ref = float(first.FrameReferenceTime) / 1000.0
        dur = float(first.ActualFrameDuration) / 1000.0
        tags["FrameReferenceTime (0054,1300)"] = dt_ref * 1000.0
        tags["ActualFrameDuration (0018,1242)"] = dur * 1000.0
        t_ref = earliest + timedelta(seconds=_t_ave_s(lam, dur) - dt_ref)
        return t_ref, ("back-computed from the earliest AcquisitionTime, FrameReferenceTime and "
                       "ActualFrameDuration (QIBA 4, preferred over 3)")
    if earliest is not None:
        return earliest, "earliest AcquisitionDate/AcquisitionTime (QIBA 3)"
    raise InputError("no usable reference time: SeriesTime and AcquisitionTime are both missing",
                     where="SeriesTime (0008,0031) / AcquisitionTime (0008,0032)")


def _injection(ds: Dataset, rp: Dataset, override: str | datetime | None, scan: datetime | None,
               tags: dict, required: bool = True) -> datetime | None:
    if override is not None:
        return _parse_time_override(override, scan)
    if rp.get("RadiopharmaceuticalStartDateTime"):
        tags["RadiopharmaceuticalStartDateTime (0018,1078)"] = str(rp.RadiopharmaceuticalStartDateTime)
        return _datetime(rp.RadiopharmaceuticalStartDateTime)
    if rp.get("RadiopharmaceuticalStartTime"):
        tags["RadiopharmaceuticalStartTime (0018,1072)"] = str(rp.RadiopharmaceuticalStartTime)
        if scan is None or _day(ds) is None:
            raise InputError("RadiopharmaceuticalStartTime has no date and the header has no scan date",
                             where="SeriesDate/AcquisitionDate (0008,0021/0022)",
                             hint="give --injection-time as an ISO date-time")
        t = _dt(_day(ds), rp.RadiopharmaceuticalStartTime)
        if scan is not None and t > scan:  # injected before midnight, scanned after
            t -= timedelta(days=1)
        return t
    if not required:
        return None
    raise _missing("RadiopharmaceuticalStartTime", "the injection (radiopharmaceutical start) time")


# ------------------------------------------------------------------------------------------------
# whole series
# ------------------------------------------------------------------------------------------------
def to_suv(source: str | Path | Sequence[Any], norm: str = "bw", **options: Any) -> tuple[Volume, SUVResult]:
    """Read a PET DICOM series and convert it to SUV.

    Parameters
    ----------
    source : folder, list of files, or sequence of pydicom Datasets
        One PET series.
    norm : {'bw', 'lbm', 'bsa', 'ibw'}
    **options
        ``lbm_formula`` and the overrides of :func:`suv_factor`.

    Returns
    -------
    (Volume, SUVResult)
        float32 SUV volume (``meta['units'] = 'SUV<norm>'``, ``meta['suv']`` = the result as a dict)
        and the conversion record.
    """
    from carpet.io.dicom import _load

    results: list[SUVResult] = []

    def slice_factors(headers: list[Dataset]) -> list[float]:
        results.append(suv_factor(headers, norm, **options))
        return results[0].slice_factors

    # The reader folds the factors into each slice's RescaleSlope: SUV in the same pass that decodes
    # the pixels, instead of a second pass and a second volume-sized array.
    series = _load(source, modality="PT", scale=slice_factors)
    return _suv_volume(series.volume, series.volume.array, norm, results[0]), results[0]


def series_to_suv(series: Any, norm: str = "bw", **options: Any) -> tuple[Volume, SUVResult]:
    """SUV volume and record from an already read series (``carpet.io.dicom`` internal ``_Series``)."""
    result = suv_factor(series.headers, norm, **options)
    factors = np.asarray(result.slice_factors, dtype=np.float32)
    # Multiply in the slice-major layout the reader filled (k first): 5x faster than broadcasting
    # over the [i, j, k] view, which makes numpy write a C-ordered result through strides.
    arr = (series.volume.array.transpose(2, 1, 0) * factors[:, None, None]).transpose(2, 1, 0)
    return _suv_volume(series.volume, arr, norm, result), result


def _suv_volume(volume: Volume, array: np.ndarray, norm: str, result: SUVResult) -> Volume:
    return volume.with_array(array, units=f"SUV{norm}", suv=result.to_dict())
