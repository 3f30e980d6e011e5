"""Labels and order as data: how each column, its unit and its levels are named in tables, figures and headings.

A plan may give a ``variables`` mapping; everything else falls back to defaults that read well::

    variables:
      age_years: {label: Age, unit: years}                   # "Age (years)"
      mtv_ml: {label: MTV, unit: mL}
      sex: {label: Sex, levels: {M: Male, F: Female}, show: M}   # binary: one row "Male, n (%)"
      ipi_group: {label: IPI risk group, order: [low, low-intermediate, high-intermediate, high],
                  levels: {low: Low, low-intermediate: Low-intermediate, ...}}
      emd_progression: {label: EMD at progression, reference: false}   # Cox: HR of true vs false

Rules
-----
- label: given, else the column name with underscores as spaces, known abbreviations in capitals (MTV, EMD,
  IPI, ECOG, ...), mixed-case terms as the literature writes them (metCR, SUVmax), digits set apart from
  the word they are glued to (``day30`` → "day 30") and a trailing unit suffix (``_ml``, ``_years``, ``_months``, ``_mm``) read as the unit:
  ``age_years`` → "Age (years)", ``baseline_emd`` → "Baseline EMD".
- levels: given labels, else the value as text; a true/false column's levels are "<label>" and
  "No <label>" (e.g. "EMD at baseline" / "No EMD at baseline"), never "True"/"False".
- order: ``order`` when given (values not listed follow in order of first appearance), else the order of
  ``levels`` as written in the plan, else: false before true, numbers ascending, text alphabetically.
- binary: a two-level variable shows one row, the level ``show`` (default: true, or the second level of
  ``order``), named by that level's label when the plan gives ``levels`` ("Male, n (%)"), by the variable's
  label for a true/false column ("Refractory, n (%)"), else "<label>: <level>" ("Product: ide-cel, n (%)").
- reference (Cox, comparisons): ``reference`` when given, else the first level of the order (false for
  a true/false column); it is stated beside every estimate.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from carpet.cohort.therapy import REGIMEN_CLASS_LABELS

__all__ = ["Labels", "variables_problems"]

#: written in capitals wherever they appear as a word of a column name
ABBREVIATIONS = {"mtv", "tlg", "suv", "emd", "pmd", "ipi", "aaipi", "ldh", "ecog", "hr", "or", "ci", "pfs", "pfs2",
                 "os", "os_pp", "iss", "riss", "r2iss", "crp", "flc", "imwg", "pet", "ct", "cr", "pr", "vgpr",
                 "car", "dmax", "uln", "auc", "aic", "bic", "id", "bcma", "cns", "tce", "orr"}
#: words printed in the mixed case the literature uses (never as an upper-cased code like "METCR")
MIXED_CASE = {"metcr": "metCR", "impetus": "IMPeTUs", "suvmax": "SUVmax", "suvpeak": "SUVpeak", "suvmean": "SUVmean",
              "dmax": "Dmax", "riss": "R-ISS", "r2iss": "R2-ISS", "aaipi": "aaIPI"}
UNIT_SUFFIXES = {"ml": "mL", "years": "years", "months": "months", "days": "days", "mm": "mm", "cm": "cm",
                 "kg": "kg", "pct": "%", "percent": "%", "u_l": "U/L", "mg_l": "mg/L", "g_dl": "g/dL"}
_KEYS = {"label", "unit", "levels", "order", "show", "reference"}


def _word(word: str) -> str:
    """One word of a column name as a label shows it: "metcr" → "metCR", "mtv" → "MTV", "day30" → "day 30"."""
    lower = word.lower()
    if lower in MIXED_CASE:
        return MIXED_CASE[lower]
    if lower in ABBREVIATIONS:
        return word.upper()
    glued = re.fullmatch(r"([A-Za-z]+)(\d+)", word)  # a code's digits read apart: day30 -> day 30
    return f"{glued.group(1)} {glued.group(2)}" if glued and lower not in ABBREVIATIONS else word


def _key(value) -> str:
    """Match plan keys to data values: true/false, 1 and 1.0, text case-insensitively."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip().lower()


def _missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def variables_problems(spec: Any) -> list[str]:
    """Structural problems of a plan's ``variables`` mapping (each with its key path)."""
    if spec is None:
        return []
    if not isinstance(spec, dict):
        return ["variables: expected a mapping of column name to {label, unit, levels, order, show, reference}"]
    out = []
    for col, v in spec.items():
        where = f"variables.{col}"
        if isinstance(v, str):
            continue  # shorthand: the label alone
        if not isinstance(v, dict):
            out.append(f"{where}: expected a label (text) or a mapping with keys {sorted(_KEYS)}")
            continue
        out += [f"{where}.{k}: unknown key (expected one of {sorted(_KEYS)})" for k in v if k not in _KEYS]
        for k in ("label", "unit"):
            if k in v and not isinstance(v[k], str):
                out.append(f"{where}.{k}: expected text")
        if "levels" in v and not isinstance(v["levels"], dict):
            out.append(f"{where}.levels: expected a mapping value -> label, e.g. {{M: Male, F: Female}}")
        if "order" in v and not isinstance(v["order"], list):
            out.append(f"{where}.order: expected a list of values, e.g. [low, intermediate, high]")
    return out


class Labels:
    """Display names of columns and their levels, from a plan's ``variables`` mapping and the defaults.

    Examples
    --------
    >>> lab = Labels({"sex": {"label": "Sex", "levels": {"M": "Male", "F": "Female"}, "show": "M"}})
    >>> lab.name("age_years"), lab.name("baseline_emd"), lab.level("sex", "M"), lab.level("emd", True)
    ('Age (years)', 'Baseline EMD', 'Male', 'EMD')
    """

    def __init__(self, variables: Mapping[str, Any] | None = None):
        self.spec: dict[str, dict] = {}
        for col, v in (variables or {}).items():
            self.spec[str(col)] = {"label": v} if isinstance(v, str) else dict(v)

    # ---- names ------------------------------------------------------------------------------------------------
    def label(self, column: str) -> str:
        """The variable's name without its unit ("Age")."""
        spec = self.spec.get(column, {})
        if "label" in spec:
            return spec["label"]
        words = column.split("_")
        if len(words) > 1 and self._suffix_unit(column):
            words = words[:-2] if column.endswith(("_u_l", "_mg_l", "_g_dl")) else words[:-1]
        text = " ".join(_word(w) for w in words)
        return text if words and words[0].lower() in MIXED_CASE else text[:1].upper() + text[1:]

    def unit(self, column: str) -> str:
        spec = self.spec.get(column, {})
        return spec["unit"] if "unit" in spec else ("" if "label" in spec else self._suffix_unit(column))

    @staticmethod
    def _suffix_unit(column: str) -> str:
        for suffix, unit in UNIT_SUFFIXES.items():
            if column.endswith("_" + suffix) and len(column) > len(suffix) + 1:
                return unit
        return ""

    def name(self, column: str) -> str:
        """Label with unit, as a heading or axis shows it: "Age (years)", "MTV (mL)"."""
        unit = self.unit(column)
        return f"{self.label(column)} ({unit})" if unit else self.label(column)

    # ---- levels -----------------------------------------------------------------------------------------------
    def level(self, column: str, value) -> str:
        """Display label of one value of ``column``."""
        if _missing(value):
            return "NA"
        levels = {_key(k): str(v) for k, v in (self.spec.get(column, {}).get("levels") or {}).items()}
        if _key(value) in levels:
            return levels[_key(value)]
        if isinstance(value, (bool, np.bool_)):
            name = self.label(column)
            return name if value else f"No {name[:1].lower() + name[1:] if not name[:2].isupper() else name}"
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            return str(int(value))
        return REGIMEN_CLASS_LABELS.get(str(value), str(value))  # carpet's own codes read as words

    def order(self, column: str, values: Iterable) -> list:
        """``values`` (distinct, missing dropped) in display order; see the module rules."""
        seen = list(dict.fromkeys(v for v in values if not _missing(v)))
        spec = self.spec.get(column, {})
        given = spec.get("order") or list((spec.get("levels") or {}).keys())
        if given:
            rank = {_key(k): i for i, k in enumerate(given)}
            return sorted(seen, key=lambda v: (rank.get(_key(v), len(rank)), seen.index(v)))
        if all(isinstance(v, (bool, np.bool_)) for v in seen):
            return sorted(seen)
        try:
            return sorted(seen)  # numbers ascending, text alphabetically (as R's factor levels)
        except TypeError:
            return sorted(seen, key=str)

    def reference(self, column: str, values: Iterable) -> Any:
        """The reference level of ``column`` (first of :meth:`order` unless the plan says ``reference``)."""
        ordered = self.order(column, values)
        spec = self.spec.get(column, {})
        if "reference" in spec:
            match = [v for v in ordered if _key(v) == _key(spec["reference"])]
            if match:
                return match[0]
        return ordered[0] if ordered else None

    def shown_level(self, column: str, values: Iterable):
        """For a two-level variable: the one level a table shows as its row (``show``, else the second)."""
        ordered = self.order(column, values)
        spec = self.spec.get(column, {})
        if "show" in spec:
            match = [v for v in ordered if _key(v) == _key(spec["show"])]
            if match:
                return match[0]
        return ordered[-1] if ordered else None

    def relabel(self, series: pd.Series) -> pd.Series:
        """A column's values as their labels, an ordered categorical in display order (missing kept)."""
        column = str(series.name)
        ordered = self.order(column, series)
        labels = list(dict.fromkeys(self.level(column, v) for v in ordered))
        text = series.map(lambda v: None if _missing(v) else self.level(column, v))
        return pd.Series(pd.Categorical(text, categories=labels, ordered=True), index=series.index, name=column)

    def is_binary(self, column: str, values: Iterable) -> bool:
        return len(self.order(column, values)) == 2



    def table1_inputs(self, data: pd.DataFrame, by: str, continuous: list[str], categorical: list[str],
                      nonnormal: list[str]) -> tuple[pd.DataFrame, dict[str, str], dict[str, list]]:
        """The frame, ``labels`` and ``order`` to give :func:`carpet.stats.table1.table1`.

        Groups and multi-level variables become their level labels in display order; a two-level
        variable becomes true/false for its shown level and is named by that level ("Male, n (%)").
        """
        frame = data.copy()
        order: dict[str, list] = {}
        names = {c: self.name(c) for c in [*continuous, *nonnormal]}
        group = self.relabel(frame[by])
        frame[by] = group.astype(object).where(group.notna(), None)
        order[by] = [g for g in group.cat.categories if (group == g).any()]
        for c in categorical:
            values = frame[c]
            if self.is_binary(c, values):
                shown = self.shown_level(c, values)
                frame[c] = pd.Series([None if _missing(v) else _key(v) == _key(shown) for v in values],
                                     index=frame.index, dtype="boolean")
                if "levels" in self.spec.get(c, {}):
                    names[c] = self.level(c, shown)  # "Male"
                elif isinstance(shown, (bool, np.bool_)):
                    names[c] = self.label(c)  # "Refractory"
                else:
                    names[c] = f"{self.label(c)}: {self.level(c, shown)}"  # "Product: ide-cel"
            else:
                labelled = self.relabel(values)
                frame[c] = labelled.astype(object).where(labelled.notna(), None)
                order[c] = [v for v in labelled.cat.categories if (labelled == v).any()]
                names[c] = self.label(c)
        return frame, names, order
