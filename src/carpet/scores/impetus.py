"""IMPeTUs record of one PET/CT (spec ``clinical-rules.md`` §1.2, ruleset ``IMPETUS2016``).

Fields (spec §1.2; count categories [R], unverified against Nanni 2016 Table 1):

* ``bm_ds`` — Deauville score of the diffuse marrow uptake;
* ``fl_count`` / ``fl_count_cat`` — focal bone lesions (sites ``bone`` and ``paramedullary``; a paramedullary
  lesion starts in bone and is counted as a focal lesion **and** sets P, spec §1.5), category
  0 = none, 1 = 1–3, 2 = 4–10, 3 = > 10;
* ``fl_sites`` ⊆ {S, Sp, E} (skull, spine, extraspinal) when the lesions carry a ``skeletal_site``;
* ``fl_target_ds`` — Deauville score of the hottest focal lesion;
* ``lytic_count_cat``, ``fracture``/``fracture_sites`` — from the reader (CT reading is not automated);
* ``paramedullary`` (+ ``paramedullary_ds``), ``emd`` (+ ``emd_subtypes`` ⊆ {N, NN}, ``emd_ds``).

``indeterminate`` lesions (touching bone, not entering it) are neither FL nor EMD: they are counted in
``n_indeterminate`` and listed for review. The report string ([C], spec §1.2) reads e.g.
``BM3 F2(S,Sp,E)DS5 L2 Fr(Sp) P EMD(N)DS4``; unknown items are written with ``?``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from numbers import Integral
from typing import Any, Iterable

import pandas as pd

from carpet.errors import InputError
from carpet.provenance import provenance
from carpet.scores.deauville import NOT_EVALUABLE

__all__ = ["ImpetusRecord", "impetus_record", "count_category", "RULESET", "StudyReading", "read_study"]

RULESET = "IMPETUS2016"
SITE_CODES = ("S", "Sp", "E")
_SITE_ORDER = {c: i for i, c in enumerate(SITE_CODES)}
_EMD_ORDER = {"N": 0, "NN": 1}


def count_category(n: int | None) -> int | None:
    """IMPeTUs count category: 0 → 0, 1–3 → 1, 4–10 → 2, > 10 → 3 (spec §1.2, inclusive lower bounds)."""
    if n is None:
        return None
    if n < 0:
        raise InputError(f"a lesion count cannot be negative, got {n}", where="lytic_count")
    if n == 0:
        return 0
    if n <= 3:
        return 1
    if n <= 10:
        return 2
    return 3


def _max_ds(values: Iterable) -> int | str | None:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and pd.isna(v))]
    if not vals:
        return None
    if any(v == NOT_EVALUABLE for v in vals):
        return NOT_EVALUABLE
    numeric = [int(v) for v in vals if v != "X"]
    return max(numeric) if numeric else None


@dataclass
class ImpetusRecord:
    """One IMPeTUs record (spec §1.2); see the module docstring for the fields."""

    bm_ds: int | str | None
    fl_count: int
    fl_count_cat: int
    fl_sites: frozenset[str] | None
    fl_target_ds: int | str | None
    lytic_count_cat: int | None
    fracture: bool | None
    fracture_sites: frozenset[str] | None
    paramedullary: bool
    paramedullary_ds: int | str | None
    emd: bool
    emd_subtypes: frozenset[str] | None
    emd_ds: int | str | None
    n_indeterminate: int = 0
    warnings: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def report_string(self) -> str:
        """Compact report, e.g. ``BM3 F2(S,Sp,E)DS5 L2 Fr(Sp) P EMD(N)DS4`` ([C] notation)."""
        def ds(v):
            return "?" if v is None else str(v)

        def sites(s, order):
            return "?" if s is None else ",".join(sorted(s, key=order.get))

        parts = [f"BM{ds(self.bm_ds)}"]
        fl = f"F{self.fl_count_cat}"
        if self.fl_count:
            fl += f"({sites(self.fl_sites, _SITE_ORDER)})DS{ds(self.fl_target_ds)}"
        parts.append(fl)
        parts.append(f"L{'?' if self.lytic_count_cat is None else self.lytic_count_cat}")
        if self.fracture:
            parts.append(f"Fr({sites(self.fracture_sites, _SITE_ORDER)})")
        if self.paramedullary:
            parts.append("P")
        if self.emd:
            parts.append(f"EMD({sites(self.emd_subtypes, _EMD_ORDER)})DS{ds(self.emd_ds)}")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record including ``report_string``."""
        def s(x):
            return None if x is None else sorted(x)
        return {"ruleset": RULESET, "bm_ds": self.bm_ds, "fl_count": self.fl_count,
                "fl_count_cat": self.fl_count_cat, "fl_sites": s(self.fl_sites), "fl_target_ds": self.fl_target_ds,
                "lytic_count_cat": self.lytic_count_cat, "fracture": self.fracture,
                "fracture_sites": s(self.fracture_sites), "paramedullary": self.paramedullary,
                "paramedullary_ds": self.paramedullary_ds, "emd": self.emd, "emd_subtypes": s(self.emd_subtypes),
                "emd_ds": self.emd_ds, "n_indeterminate": self.n_indeterminate,
                "report_string": self.report_string, "warnings": list(self.warnings),
                "provenance": self.provenance}


def impetus_record(lesions: pd.DataFrame, bm_ds: int | str | None, *, lytic_count: int | None = None,
                   fracture_sites: Iterable[str] | None = None, days_from_infusion: float | None = None,
                   gcsf_within_days: float | None = None) -> ImpetusRecord:
    """Build the IMPeTUs record from per-lesion sites and Deauville scores.

    Parameters
    ----------
    lesions : DataFrame
        One row a lesion with ``site`` (contract values) and ``deauville``; optional ``skeletal_site``
        (S/Sp/E) for focal lesions and ``emd_subtype`` (N/NN) for extramedullary ones. Lesions with site
        ``unknown`` make the FL/EMD split unknowable: they are not counted and a warning says so.
    bm_ds : int, 'NE' or None
        Deauville score of the diffuse marrow uptake.
    lytic_count : int, optional
        Number of osteolytic lesions on CT (reader); None → unknown.
    fracture_sites : iterable of {'S', 'Sp', 'E'}, optional
        Sites with fractures (reader); empty → no fracture; None → unknown.
    days_from_infusion, gcsf_within_days : float, optional
        Recorded; a scan at day ≤ 30 with ``bm_ds`` ≥ 4 and no focal lesion is flagged (reactive marrow after
        CAR T / G-CSF, spec §1.5).
    """
    site = lesions["site"].astype(str) if len(lesions) else pd.Series([], dtype=str)
    ds = lesions["deauville"] if "deauville" in lesions else pd.Series([None] * len(lesions), dtype=object)
    is_fl = site.isin(["bone", "paramedullary"]).to_numpy()
    is_p = (site == "paramedullary").to_numpy()
    is_emd = (site == "extramedullary").to_numpy()
    warnings = []
    n_unknown = int((site == "unknown").sum())
    if n_unknown:
        warnings.append(f"{n_unknown} lesion(s) with unknown site (no CT) are not counted as FL or EMD")
    n_fl = int(is_fl.sum())
    fl_sites = None
    if "skeletal_site" in lesions:
        vals = lesions.loc[is_fl, "skeletal_site"]
        fl_sites = None if vals.isna().any() else frozenset(str(v) for v in vals)
    elif n_fl == 0:
        fl_sites = frozenset()
    emd_sub = None
    if "emd_subtype" in lesions:
        vals = lesions.loc[is_emd, "emd_subtype"]
        emd_sub = None if vals.isna().any() else frozenset(str(v) for v in vals)
    frac = None if fracture_sites is None else frozenset(fracture_sites)
    bad = [s for s in (fl_sites or frozenset()) | (frac or frozenset()) if s not in SITE_CODES]
    if bad:
        raise InputError(f"skeletal site codes must be among {SITE_CODES}, got {sorted(bad)}",
                         where="skeletal_site / fracture_sites")
    fl_target = _max_ds(ds[is_fl])
    if days_from_infusion is not None and days_from_infusion <= 30 and isinstance(bm_ds, Integral) and bm_ds >= 4 \
            and n_fl == 0:
        warnings.append(f"day {days_from_infusion:g} scan with diffuse marrow DS {bm_ds} and no focal lesion: "
                        "possible reactive marrow after CAR T / G-CSF / CRS (spec §1.5)")
    return ImpetusRecord(
        bm_ds=bm_ds, fl_count=n_fl, fl_count_cat=count_category(n_fl), fl_sites=fl_sites, fl_target_ds=fl_target,
        lytic_count_cat=count_category(lytic_count), fracture=None if frac is None else bool(frac),
        fracture_sites=frac, paramedullary=bool(is_p.any()), paramedullary_ds=_max_ds(ds[is_p]),
        emd=bool(is_emd.any()), emd_subtypes=emd_sub if is_emd.any() else frozenset(), emd_ds=_max_ds(ds[is_emd]),
        n_indeterminate=int((site == "indeterminate").sum()), warnings=warnings,
        provenance=provenance(ruleset=RULESET, fl_sites_from="bone+paramedullary",
                              days_from_infusion=days_from_infusion, gcsf_within_days=gcsf_within_days))


# ---------------------------------------------------------------------------------------------
# one study, read end to end (the `carpet quantify` step)
# ---------------------------------------------------------------------------------------------
@dataclass
class StudyReading:
    """Reference regions, per-lesion Deauville, marrow score and IMPeTUs record of one PET/CT.

    ``lesions`` is the input table with a ``deauville`` column added; :meth:`to_summary` gives the
    ``summary.json`` keys (``reference_regions``, ``marrow``, ``deauville``, ``impetus``, ``metabolic_response``).
    """

    lesions: pd.DataFrame
    liver: Any
    blood_pool: Any
    marrow: Any
    bm_ds: int | str
    study_ds: int | str
    impetus: ImpetusRecord
    met_cr: dict[str, Any]
    deauville_provenance: dict[str, Any]

    def to_summary(self) -> dict[str, Any]:
        return {"reference_regions": {"liver": self.liver.to_dict(), "blood_pool": self.blood_pool.to_dict()},
                "marrow": {**self.marrow.to_dict(), "deauville": self.bm_ds},
                "deauville": {"study": self.study_ds, "provenance": self.deauville_provenance},
                "impetus": self.impetus.to_dict(),
                "metabolic_response": self.met_cr}


def read_study(pet, ct, labels, lesions: pd.DataFrame, *, liver_centre_mm=None, deauville_params=None,
               days_from_infusion: float | None = None, references: dict | None = None) -> StudyReading:
    """Read one study: automatic (or given) liver and blood-pool references, spine marrow, per-lesion
    Deauville (lesion SUVmax), diffuse-marrow Deauville (marrow SUV median), the IMPeTUs record and metCR by
    each rule.

    Parameters
    ----------
    pet : Volume
        PET in SUV.
    ct : Volume or None
        CT in HU (any grid); without it the references are unusable unless ``liver_centre_mm`` is given, and
        every score is ``'NE'``.
    labels : Volume
        Lesion label map on the PET grid (label = ``lesion_id``).
    lesions : DataFrame
        One row a lesion with ``lesion_id``, ``suv_max`` and ``site``.
    liver_centre_mm : sequence of 3 floats, optional
        Liver VOI centre (LPS mm) overriding the automatic placement.
    deauville_params : DeauvilleParams, optional
    references : dict, optional
        The ``'liver'``, ``'blood_pool'`` and ``'marrow'`` reference regions when the caller has already read
        them (with the same ``liver_centre_mm``): :func:`carpet.quantify.quantify_study` reads them while the
        lesion sites are classified.
    """
    from carpet.anatomy import blood_pool_reference, liver_reference, marrow_reference
    from carpet.scores.deauville import DeauvilleParams, deauville_from_references, study_deauville
    from carpet.scores.metabolic_response import METCR_RULES, metabolic_complete_response

    params = deauville_params or DeauvilleParams()
    if references is not None:
        liver, blood, marrow = (references[k] for k in ("liver", "blood_pool", "marrow"))
    else:
        with ThreadPoolExecutor(max_workers=1) as pool:
            # The three regions are independent and their heavy steps release the GIL: two at a time.
            blood = pool.submit(blood_pool_reference, pet, ct, lesions=labels)
            liver = liver_reference(pet, ct, centre_mm=liver_centre_mm, lesions=labels)
            marrow = marrow_reference(pet, ct, lesions=labels)
            blood = blood.result()
    table = lesions.copy()
    table["deauville"] = deauville_from_references(table["suv_max"], liver, blood, params)
    bm_ds = (deauville_from_references([marrow.median], liver, blood, params)[0] if marrow.usable
             else NOT_EVALUABLE)
    record = impetus_record(table, bm_ds, days_from_infusion=days_from_infusion)
    met_cr = {rule: metabolic_complete_response(bm_ds, table["deauville"], rule=rule).to_dict()
              for rule in METCR_RULES}
    met_cr["default_rule"] = METCR_RULES[0]
    return StudyReading(table, liver, blood, marrow, bm_ds, study_deauville(table["deauville"]), record, met_cr,
                        params.provenance(marrow_uptake="median SUV of the spine marrow",
                                          lesion_uptake="lesion SUVmax"))
