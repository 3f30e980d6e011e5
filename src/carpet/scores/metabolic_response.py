"""Metabolic response: metCR in myeloma (three rules) and Lugano 2014 categories with ΔSUVmax.

metCR (spec ``clinical-rules.md`` §1.3; sources disagree [D], so all three are implemented and recorded):

* ``ZAMAGNI2021`` (default): CMR when the marrow score and every focal-lesion score, EMD included, are ≤ 3
  (uptake ≤ liver); any DS ≥ 4 is positive.
* ``IMWG2016_IMAGING``: MRD-negative **and** every area of increased uptake below the mediastinal blood pool,
  i.e. DS ≤ 2 (the "disappeared" and "< surrounding tissue" clauses are not computable from scores; the DS ≤ 2
  clause is the strict reading of spec §1.3). The marrow is included (``include_marrow``). Without an MRD
  result the response is not evaluable.
* ``LUGANO_STYLE``: DS 1–3 at all (previously involved) sites and no new lesions.

Lugano 2014 (spec §2.4): CMR when every score is ≤ 3 and there is no new lesion; otherwise, with DS 4–5, the
change of the study SUVmax from baseline decides PMR (decrease), NMR (no significant change) or PMD
(increase, or new lesions). Lugano does not define "significant" [R]; the default threshold is 30 % (the
PERCIST convention, [C]): a decrease of at least ``significant_change_pct`` is PMR, an increase of more than
``significant_change_pct`` is PMD.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from carpet.errors import InputError
from carpet.provenance import provenance
from carpet.scores.deauville import NOT_EVALUABLE, numeric_scores

__all__ = ["METCR_RULES", "MetabolicResponse", "metabolic_complete_response", "LuganoResponse",
           "lugano_response", "delta_suv_max_pct", "response_to_baseline"]

METCR_RULES = ("ZAMAGNI2021", "IMWG2016_IMAGING", "LUGANO_STYLE")


@dataclass
class MetabolicResponse:
    """metCR result: ``met_cr`` True/False, or None when not evaluable (``reason`` says why)."""

    met_cr: bool | None
    rule: str
    reason: str
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"met_cr": self.met_cr, "rule": self.rule, "reason": self.reason, "provenance": self.provenance}


def metabolic_complete_response(bm_ds: int | str | None, lesion_ds: Iterable, *, rule: str = "ZAMAGNI2021",
                                mrd_negative: bool | None = None, new_lesions: bool = False,
                                include_marrow: bool = True) -> MetabolicResponse:
    """Metabolic complete response of a myeloma PET/CT by ``rule`` (see the module docstring).

    Parameters
    ----------
    bm_ds : int, 'NE' or None
        Deauville score of the diffuse marrow uptake.
    lesion_ds : iterable
        Deauville scores of every focal and extramedullary lesion (for ``LUGANO_STYLE``: of the previously
        involved sites).
    rule : {'ZAMAGNI2021', 'IMWG2016_IMAGING', 'LUGANO_STYLE'}
    mrd_negative : bool, optional
        Marrow MRD status (``IMWG2016_IMAGING`` only).
    new_lesions : bool
        New lesions since baseline (``LUGANO_STYLE``; a new lesion also scores DS 5 for the others).
    include_marrow : bool
        Whether the marrow score takes part (all rules; default True).
    """
    if rule not in METCR_RULES:
        raise InputError(f"metCR rule must be one of {METCR_RULES}, got {rule!r}")
    # the marrow score goes through the same filter as the lesions' (None / NaN / 'NE' → not evaluable)
    scores, ne = numeric_scores(list(lesion_ds) + ([bm_ds] if include_marrow else []))
    prov = provenance(metcr_rule=rule, include_marrow=include_marrow)
    if rule == "LUGANO_STYLE" and new_lesions:  # decided whatever the other scores are
        return MetabolicResponse(False, rule, "new lesion(s)", prov)
    if ne:
        return MetabolicResponse(None, rule, "a score is not evaluable (missing or unusable reference)", prov)
    limit = 2 if rule == "IMWG2016_IMAGING" else 3
    worst = max(scores, default=1)
    imaging_ok = worst <= limit
    if rule == "IMWG2016_IMAGING":
        if mrd_negative is None:
            return MetabolicResponse(None, rule, f"imaging {'meets' if imaging_ok else 'fails'} DS <= 2; "
                                     "MRD status needed", prov)
        if not mrd_negative:
            return MetabolicResponse(False, rule, "MRD positive", prov)
    reason = f"highest DS {worst} {'<=' if imaging_ok else '>'} {limit}"
    return MetabolicResponse(bool(imaging_ok), rule, reason, prov)


def delta_suv_max_pct(baseline_suv_max: float, followup_suv_max: float) -> float:
    """Relative change of SUVmax from baseline, in percent: 100 × (follow-up − baseline) / baseline."""
    if not (np.isfinite(baseline_suv_max) and baseline_suv_max > 0):
        raise InputError(f"baseline SUVmax must be a positive number, got {baseline_suv_max}")
    return 100.0 * (float(followup_suv_max) - float(baseline_suv_max)) / float(baseline_suv_max)


@dataclass
class LuganoResponse:
    """Lugano 2014 PET category (``CMR``, ``PMR``, ``NMR``, ``PMD`` or ``NE``) with ΔSUVmax."""

    category: str
    delta_suv_max_pct: float | None
    baseline_suv_max: float | None
    followup_suv_max: float | None
    followup_ds: int | str | None
    reason: str
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        def num(x):
            return None if x is None or not np.isfinite(x) else round(float(x), 4)
        return {"category": self.category, "delta_suv_max_pct": num(self.delta_suv_max_pct),
                "baseline_suv_max": num(self.baseline_suv_max), "followup_suv_max": num(self.followup_suv_max),
                "followup_ds": self.followup_ds, "reason": self.reason, "provenance": self.provenance}


def lugano_response(baseline_suv_max: float, followup_suv_max: float, followup_ds: Iterable, *,
                    new_lesions: bool = False, significant_change_pct: float = 30.0) -> LuganoResponse:
    """Lugano 2014 PET-CT response of a follow-up study against its baseline (spec §2.4).

    Parameters
    ----------
    baseline_suv_max, followup_suv_max : float
        Study SUVmax (hottest lesion) at baseline and follow-up; follow-up 0 when no lesion remains.
    followup_ds : iterable
        Deauville scores at follow-up (lesions and marrow as the protocol counts them).
    new_lesions : bool
        New FDG-avid foci consistent with disease → PMD.
    significant_change_pct : float
        ΔSUVmax (%) that counts as a significant change [C] (default 30, PERCIST).
    """
    scores, ne = numeric_scores(followup_ds)
    worst = max(scores, default=1)
    prov = provenance(ruleset="LUGANO2014", significant_change_pct=significant_change_pct,
                      delta="(followup - baseline) / baseline of the study SUVmax")
    delta = None
    # None (no measurement) counts as missing, like NaN
    baseline_suv_max = np.nan if baseline_suv_max is None else float(baseline_suv_max)
    followup_suv_max = np.nan if followup_suv_max is None else float(followup_suv_max)
    if np.isfinite(baseline_suv_max) and baseline_suv_max > 0 and np.isfinite(followup_suv_max):
        delta = delta_suv_max_pct(baseline_suv_max, followup_suv_max)

    def result(cat, reason):
        return LuganoResponse(cat, delta, baseline_suv_max, followup_suv_max, NOT_EVALUABLE if ne else worst,
                              reason, prov)

    if new_lesions:
        return result("PMD", "new lesion(s)")
    if ne:
        return result("NE", "a follow-up score is not evaluable")
    if worst <= 3:
        return result("CMR", f"highest DS {worst} <= 3, no new lesion")
    if delta is None:
        return result("NE", "DS 4-5 but no baseline SUVmax to compare with")
    if delta <= -significant_change_pct:
        return result("PMR", f"DS {worst}, SUVmax {delta:+.1f}% (decrease >= {significant_change_pct:g}%)")
    if delta > significant_change_pct:
        return result("PMD", f"DS {worst}, SUVmax {delta:+.1f}% (increase > {significant_change_pct:g}%)")
    return result("NMR", f"DS {worst}, SUVmax {delta:+.1f}% (no significant change)")


def response_to_baseline(baseline_summary: dict[str, Any], followup_summary: dict[str, Any], *,
                         new_lesions: bool = False, significant_change_pct: float = 30.0) -> LuganoResponse:
    """Lugano 2014 response of a follow-up ``summary.json`` against the baseline's (same patient).

    Uses the study ``suv_max`` of both and the follow-up's Deauville scores (study score and marrow score).
    New lesions cannot be told from persisting ones without registering the two studies: pass
    ``new_lesions`` from the reader.
    """
    def suv(summary):
        value = summary.get("suv_max")
        if value is None:
            return 0.0 if summary.get("n_lesions") == 0 else float("nan")
        return float(value)

    scores = [followup_summary.get("deauville", {}).get("study", NOT_EVALUABLE),
              followup_summary.get("marrow", {}).get("deauville", NOT_EVALUABLE)]
    return lugano_response(suv(baseline_summary), suv(followup_summary), scores,
                           new_lesions=new_lesions, significant_change_pct=significant_change_pct)
