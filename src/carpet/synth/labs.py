"""Simulated myeloma patients with laboratory series built from known best responses and progression dates.

SIMULATED DATA. Each patient gets a disease type (serum M-protein, urine-only light chain, FLC-only), a target best
response and a scenario (progression by labs or imaging, refractory progression near day 60, a transient rise,
an unconfirmed rise at the last visit, no progression, a rise after a new line of therapy), some with an extra
visit where only immunofixation was drawn (not evaluable). Values are drawn inside
bands kept clear of every IMWG threshold, so the true best response and progression date follow from the
construction itself, not from running the engine; :func:`simulate_myeloma_labs` returns them as ``truth``.
Units vary between patients (g/dL or g/L, mg/dL or mg/L) to exercise unit conversion.

:meth:`carpet.synth.cohort.SimulatedCohort.lab_series` is the other lab simulator: it follows the patients of a
calibrated cohort (their drawn progression dates and day-90 responses) instead of drawing its own edge-case
scenarios, so neither can stand in for the other; both build progression with :func:`progression_value`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["simulate_myeloma_labs", "progression_value", "PD_ABSOLUTE_RISE"]

_START = pd.Timestamp("2022-01-03")
#: Plateau reduction bands from baseline, inside the IMWG category limits with margin for +-3 % noise and rounding.
_SERUM_BANDS = {"SD": (0.0, 0.15), "MR": (0.30, 0.45), "PR": (0.55, 0.85), "VGPR": (0.92, 0.98)}
_FLC_BANDS = {"SD": (0.0, 0.30), "PR": (0.55, 0.85), "VGPR": (0.93, 0.98)}
#: Urine-only disease: SD and MR by reduction (MR keeps >= 240 mg/24 h); PR and VGPR by absolute level.
_URINE_BANDS = {"SD": (0.0, 0.30), "MR": (0.55, 0.80)}
_URINE_LEVELS = {"PR": (120.0, 180.0), "VGPR": (20.0, 90.0)}
_NOISE = 0.03
#: IMWG 2016 progression (spec §3.4): a rise >= 25 % from the nadir and at least these absolute rises (dFLC: more
#: than 10 mg/dL). Written out here, not imported from :mod:`carpet.scores.imwg`, so that the simulated truth stays
#: independent of the engine it tests.
PD_RELATIVE_RISE = 0.25
PD_ABSOLUTE_RISE = {"serum": 0.5, "urine": 200.0, "dflc": 10.0}  # g/dL, mg/24 h, mg/dL


def progression_value(reference: float, kind: str, margin: float, step: float = 1.0) -> float:
    """A value that meets IMWG progression from every nadir at or below ``reference``.

    ``reference + step × (max(25 % of reference, absolute rise) + margin)``: since the rise from a lower nadir is
    larger still, the value is progression whichever nadir rule (lowest value or lowest confirmed value) a reader
    applies. ``margin`` (> 0) keeps it clear of the threshold after rounding and makes the strict dFLC rule hold;
    ``step`` > 1 gives later, higher values. The serum rule ">= 1 g/dL from a nadir >= 5 g/dL" needs no case of its
    own: from such a nadir 25 % is already >= 1.25 g/dL.

    Parameters
    ----------
    reference : float
        The highest value the nadir can be (internal units: serum g/dL, urine mg/24 h, dFLC mg/dL).
    kind : {'serum', 'urine', 'dflc'}
    margin : float
        Added to the smallest progression rise, same unit.
    step : float
        Multiplier of the rise.
    """
    return reference + step * (max(PD_RELATIVE_RISE * reference, PD_ABSOLUTE_RISE[kind]) + margin)


def _iso(ts: pd.Timestamp) -> str:
    return ts.date().isoformat()


def simulate_myeloma_labs(n: int = 200, seed: int = 0):
    """Simulate ``n`` myeloma patients after CAR T with lab series of known IMWG outcome.

    Parameters
    ----------
    n : int
        Number of patients.
    seed : int
        Seed of the numpy Generator; the same seed gives the same tables.

    Returns
    -------
    patients, assessments, therapies, truth : DataFrame
        ``patients`` (patient_id, infusion_date, involved_light_chain, disease, simulated), ``assessments`` in the
        long format of ``carpet imwg`` (values as text, mixed units), ``therapies`` (CAR T as line 1 and the next
        line where there is one) and ``truth`` (patient_id, disease_type, scenario, best_response,
        progression_date ('' when none), refractory).
    """
    rng = np.random.default_rng(seed)
    pts, labs, lines, truth = [], [], [], []
    for i in range(n):
        pid = f"SIM-LAB-{i + 1:04d}"
        infusion = _START + pd.Timedelta(days=int(rng.integers(0, 700)))
        chain = "kappa" if rng.random() < 0.67 else "lambda"
        dtype = rng.choice(["serum", "urine", "flc"], p=[0.6, 0.15, 0.25])
        scenario = rng.choice(["progression", "imaging_progression", "refractory", "transient_rise",
                               "unconfirmed_last", "no_progression", "new_therapy"],
                              p=[0.40, 0.07, 0.12, 0.08, 0.08, 0.15, 0.10])
        choices = ["sCR", "CR", "VGPR", "PR", "SD"] + (["MR"] if dtype != "flc" else [])
        target = "SD" if scenario == "refractory" else str(rng.choice(choices))
        p = _Patient(rng, pid, infusion, chain, str(dtype), target)

        # visit days after infusion
        if scenario == "refractory":
            pd_day = int(rng.integers(50, 71))  # both sides of the 60-day limit
            days = [int(rng.integers(20, 31)), pd_day, pd_day + int(rng.integers(10, 20))]
            kinds = ["plateau", "pd", "pd"]
        else:
            n_plateau = int(rng.integers(2, 6))
            days, d = [], int(rng.integers(26, 33))
            for _ in range(n_plateau + 4):
                days.append(d)
                d += int(rng.integers(25, 36))
            kinds = ["plateau"] * n_plateau
            if scenario in ("progression", "imaging_progression"):
                kinds += ["pd", "pd", "pd"]
            elif scenario == "transient_rise":
                kinds += ["spike", "plateau", "plateau", "pd", "pd"]
            elif scenario == "unconfirmed_last":
                kinds += ["plateau", "pd"]
            elif scenario in ("no_progression", "new_therapy"):
                kinds += ["plateau", "plateau"]
            while len(days) < len(kinds):
                days.append(days[-1] + int(rng.integers(25, 36)))
            days = days[:len(kinds)]
            if scenario == "new_therapy":  # a new line, then values that would be PD: all ignored
                start = infusion + pd.Timedelta(days=days[-1] + int(rng.integers(1, 10)))
                lines.append(dict(patient_id=pid, line=2, start_date=_iso(start), regimen="teclistamab"))
                days += [days[-1] + 20, days[-1] + 40]
                kinds += ["pd", "pd"]
        imaging = scenario == "imaging_progression"
        prog_day = None
        rows = p.baseline()
        level = 0
        for day, kind in zip(days, kinds):
            date = infusion + pd.Timedelta(days=day)
            if kind == "plateau":
                rows += p.plateau(date, marrow=(day == days[0]))
            elif kind == "spike":
                rows += p.rise(date, 0)
            else:
                rows += p.plateau(date) + [p.row(date, "new_lesion", "1", "")] if imaging else p.rise(date, level)
                level += 1
                if prog_day is None:
                    prog_day = day
        progressed = scenario in ("progression", "imaging_progression", "refractory", "transient_rise")
        prog_date = infusion + pd.Timedelta(days=prog_day) if progressed else None
        n_plateau_before = kinds.index("pd") if "pd" in kinds else len(kinds)
        best = target if n_plateau_before >= 2 else ("PD" if progressed else "NE")
        truth.append(dict(patient_id=pid, disease_type=str(dtype), scenario=str(scenario), best_response=best,
                          progression_date=_iso(prog_date) if prog_date is not None else "",
                          refractory=bool(progressed and prog_day <= 60)))
        pts.append(dict(patient_id=pid, infusion_date=_iso(infusion), involved_light_chain=chain, disease="MM",
                        product="ide-cel" if rng.random() < 0.7 else "cilta-cel", simulated=True))
        lines.append(dict(patient_id=pid, line=1, start_date=_iso(infusion), regimen=pts[-1]["product"]))
        if progressed:
            start = prog_date + pd.Timedelta(days=days[-1] - prog_day + int(rng.integers(3, 20)))
            lines.append(dict(patient_id=pid, line=2, start_date=_iso(start), regimen="KPd"))
        if rng.random() < 0.3:  # an immunofixation-only visit (not evaluable): must neither confirm nor break a pair
            extra = infusion + pd.Timedelta(days=days[int(rng.integers(0, len(days)))] + 3)
            rows.append(p.row(extra, "serum_ife", "negative" if p.cr else "positive", ""))
        labs += rows
    therapies = pd.DataFrame(lines).sort_values(["patient_id", "line"], ignore_index=True)
    return pd.DataFrame(pts), pd.DataFrame(labs), therapies, pd.DataFrame(truth)


class _Patient:
    """Lab generator of one simulated patient (values in internal units; written in the patient's units)."""

    def __init__(self, rng, pid, infusion, chain, dtype, target):
        self.rng, self.pid, self.infusion, self.chain, self.dtype, self.target = rng, pid, infusion, chain, dtype, target
        self.serum_g_l = rng.random() < 0.3   # writes serum M-protein in g/L
        self.flc_mg_l = rng.random() < 0.4    # writes FLC in mg/L
        self.cr = target in ("CR", "sCR")
        self.uninv = float(rng.uniform(0.5, 1.5))
        if dtype == "serum":
            self.s0, self.u0, self.d0 = float(rng.uniform(1.5, 6.0)), float(rng.uniform(0, 80)), 5.0
        elif dtype == "urine":
            self.s0, self.u0, self.d0 = 0.0, float(rng.uniform(1200, 3000)), 5.0
        else:
            self.s0, self.u0, self.d0 = 0.0, 0.0, float(rng.uniform(20, 200))
        bands = {"serum": _SERUM_BANDS, "urine": _URINE_BANDS, "flc": _FLC_BANDS}[dtype]
        band = None if self.cr else bands.get(target)
        self.r = float(rng.uniform(*band)) if band else None
        self.plateau_max = {"serum": 0.0, "urine": 0.0, "dflc": 0.0}

    def row(self, date, parameter, value, unit):
        return dict(patient_id=self.pid, date=_iso(date), parameter=parameter, value=value, unit=unit)

    def _noise(self):
        return 1.0 + float(self.rng.uniform(-_NOISE, _NOISE))

    def _labs(self, date, s, u, d, ife_s, ife_u, ratio_normal=False):
        kappa_lambda = ("kappa_flc", "lambda_flc") if self.chain == "kappa" else ("lambda_flc", "kappa_flc")
        inv = self.uninv * 1.1 if ratio_normal else self.uninv + d
        out = [self.row(date, "serum_m_protein", *((f"{s * 10:.1f}", "g/L") if self.serum_g_l else (f"{s:.2f}", "g/dL"))),
               self.row(date, "urine_m_protein", f"{u:.0f}", "mg/24h"),
               self.row(date, "serum_ife", "positive" if ife_s else "negative", ""),
               self.row(date, "urine_ife", "positive" if ife_u else "negative", "")]
        for name, val in ((kappa_lambda[0], inv), (kappa_lambda[1], self.uninv)):
            out.append(self.row(date, name, *((f"{val * 10:.2f}", "mg/L") if self.flc_mg_l else (f"{val:.3f}", "mg/dL"))))
        return out

    def baseline(self):
        date = self.infusion - pd.Timedelta(days=int(self.rng.integers(1, 15)))
        rows = self._labs(date, self.s0, self.u0, self.d0, True, self.dtype == "urine")
        rows.append(self.row(date, "bm_plasma_cells", f"{self.rng.uniform(10, 60):.0f}", "%"))
        return rows

    def plateau(self, date, marrow=False):
        if self.cr:
            s, u, d = 0.0, 0.0, 0.0
        elif self.dtype == "serum":
            s, u, d = self.s0 * (1 - self.r) * self._noise(), self.u0 * self._noise(), self.d0
        elif self.dtype == "urine":
            s, d = 0.0, self.d0
            level = _URINE_LEVELS.get(self.target)
            u = self.rng.uniform(*level) if level else self.u0 * (1 - self.r) * self._noise()
        else:
            s, u, d = 0.0, 0.0, self.d0 * (1 - self.r) * self._noise()
        self.plateau_max = {"serum": max(self.plateau_max["serum"], s), "urine": max(self.plateau_max["urine"], u),
                            "dflc": max(self.plateau_max["dflc"], d)}
        rows = self._labs(date, s, u, d, not self.cr, not self.cr and self.dtype == "urine",
                          ratio_normal=self.cr)
        if marrow:
            bm = self.rng.uniform(0, 4) if self.cr else self.rng.uniform(5, 30)
            rows.append(self.row(date, "bm_plasma_cells", f"{bm:.1f}", "%"))
            rows.append(self.row(date, "bm_clonality", "negative" if self.target == "sCR" else "positive", ""))
        return rows

    def rise(self, date, level):
        """Values clearly meeting PD against any possible nadir; higher at each level."""
        step = 1 + level
        # the nadir is at most the baseline and at most the plateau maximum in either nadir mode, so rising
        # clearly above the larger of the two is PD whichever nadir the engine uses
        m = {"serum": max(self.plateau_max["serum"], self.s0), "urine": max(self.plateau_max["urine"], self.u0),
             "dflc": max(self.plateau_max["dflc"], self.d0)}
        s, u, d = m["serum"], m["urine"], (m["dflc"] if self.dtype == "flc" else self.d0)
        if self.dtype == "serum":
            s = progression_value(m["serum"], "serum", self.rng.uniform(0.3, 1.0) + 0.5, step)
        elif self.dtype == "urine":
            u = progression_value(m["urine"], "urine", self.rng.uniform(100, 400), step)
        else:
            d = progression_value(m["dflc"], "dflc", self.rng.uniform(5, 20), step)
        return self._labs(date, s, u, d, True, self.dtype == "urine")
