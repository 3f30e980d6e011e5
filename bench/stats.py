"""Benchmark carpet.stats against R's survival and against lifelines on the same data in the same run.

Run:  PYTHONPATH=src /work/venv/bin/python bench/stats.py [--n 10000] [--n-cut 1000] [--perm 10000]

1. Kaplan–Meier (median and its CI), log-rank (3 groups) and Cox (Efron ties, 5 covariates) on n subjects,
   timed per step:
   - carpet: kaplan_meier, logrank, cox (the fit; its concordance is timed separately, as carpet computes it
     only when asked).
   - R (when Rscript is on PATH): survfit + quantile, survdiff, coxph (whose fit always includes the
     concordance). The data go to R as a CSV; R times each step with system.time() around `--reps`
     repetitions after a warm-up, so R's start-up and the CSV reading are excluded.
   - lifelines: KaplanMeierFitter, multivariate_logrank_test, CoxPHFitter(fit_options={'precision': 1e-12},
     the setting that reproduces R's coefficients) and its concordance_index_.
   Ratios carpet/R and carpet/lifelines (goal <= 1.0) are printed side by side; the coefficients of the three
   are checked to agree first.
2. Optimal cut-point with a permutation p-value on n_cut subjects. lifelines has no maxstat; its
   equivalent is a log-rank test per candidate cut and permutation. That is timed on a few permutations
   and scaled linearly to the same number of permutations (printed as such).
Times are the best of ``--repeat`` runs (seconds).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

COVARIATES = ["x", "age", "group", "z1", "z2"]

R_SCRIPT = r"""
suppressMessages(library(survival))
args <- commandArgs(TRUE)
d <- read.csv(args[1]); reps <- as.integer(args[2]); rounds <- as.integer(args[3])
steps <- list(
  km = function() { f <- survfit(Surv(time, event) ~ 1, data = d); quantile(f, 0.5) },
  logrank = function() survdiff(Surv(time, event) ~ group, data = d),
  cox = function() coxph(Surv(time, event) ~ x + age + group + z1 + z2, data = d, ties = "efron"))
out <- list()
for (k in names(steps)) {
  invisible(steps[[k]]())  # warm-up
  best <- Inf
  for (r in seq_len(rounds)) best <- min(best, system.time(for (i in seq_len(reps)) steps[[k]]())[["elapsed"]] / reps)
  out[[k]] <- best
}
fit <- coxph(Surv(time, event) ~ x + age + group + z1 + z2, data = d, ties = "efron")
cat(sprintf('{"km": %.6f, "logrank": %.6f, "cox": %.6f, "coef": [%s], "concordance": %.15g, "chisq": %.15g}\n',
            out$km, out$logrank, out$cox, paste(sprintf("%.15g", coef(fit)), collapse = ","),
            fit$concordance[["concordance"]], survdiff(Surv(time, event) ~ group, data = d)$chisq))
"""


def cohort(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    age = rng.normal(60, 10, n)
    group = rng.integers(0, 3, n)
    z1, z2 = rng.normal(size=n), rng.integers(0, 2, n)
    t_event = rng.exponential(24 * np.exp(-0.5 * x - 0.02 * (age - 60) - 0.3 * group - 0.2 * z1 + 0.3 * z2))
    t_cens = rng.uniform(6, 60, n)
    return pd.DataFrame({"time": np.round(np.minimum(t_event, t_cens), 1),  # 0.1-month resolution: ties
                         "event": (t_event <= t_cens).astype(int), "x": x, "age": age, "group": group,
                         "z1": z1, "z2": z2, "mtv_ml": np.round(np.exp(rng.normal(3.5, 1, n)), 1)})


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def carpet_steps(d: pd.DataFrame) -> dict:
    from carpet.stats import cox, kaplan_meier, logrank

    def km():
        k = kaplan_meier(d["time"], d["event"])
        return k.median, k.median_ci

    return {"km": km, "logrank": lambda: logrank(d["time"], d["event"], d["group"]).statistic,
            "cox": lambda: cox(d, covariates=COVARIATES),
            "cox concordance": lambda: cox(d, covariates=COVARIATES).concordance}


def lifelines_steps(d: pd.DataFrame) -> dict:
    from lifelines import CoxPHFitter, KaplanMeierFitter
    from lifelines.statistics import multivariate_logrank_test

    def km():
        k = KaplanMeierFitter().fit(d["time"], d["event"])
        return k.median_survival_time_, k.confidence_interval_

    def fit():
        return CoxPHFitter().fit(d[["time", "event", *COVARIATES]], "time", "event",
                                 fit_options={"precision": 1e-12})

    return {"km": km, "logrank": lambda: multivariate_logrank_test(d["time"], d["group"], d["event"]).test_statistic,
            "cox": fit, "cox concordance": lambda: fit().concordance_index_}


def r_times(d: pd.DataFrame, reps: int, rounds: int) -> dict | None:
    """Per-step times of R's survival on ``d`` (None when Rscript is not installed)."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        csv, script = Path(tmp) / "cohort.csv", Path(tmp) / "bench.R"
        d.to_csv(csv, index=False, float_format="%.17g")
        script.write_text(R_SCRIPT)
        out = subprocess.run([rscript, str(script), str(csv), str(reps), str(rounds)], check=True,
                             capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def carpet_cutpoint(d: pd.DataFrame, n_perm: int):
    from carpet.stats import cutpoint
    return cutpoint(d["time"], d["event"], d["mtv_ml"], n_perm=n_perm, seed=1)


def lifelines_cutpoint(d: pd.DataFrame, n_perm: int, min_prop: float = 0.1) -> float:
    """maxstat the lifelines way: log-rank at every candidate cut, for the data and each permutation."""
    from lifelines.statistics import logrank_test
    t, e, x = d["time"].to_numpy(), d["event"].to_numpy(), d["mtv_ml"].to_numpy()
    n = len(t)
    xs = np.sort(x)
    cuts = np.unique(xs[int(np.floor(n * min_prop)) - 1:int(np.floor(n * (1 - min_prop)))])
    rng = np.random.default_rng(1)

    def max_stat(xv):
        best = 0.0
        for c in cuts:
            low = xv <= c
            r = logrank_test(t[low], t[~low], e[low], e[~low])
            best = max(best, r.test_statistic)
        return best

    observed = max_stat(x)
    exceed = sum(max_stat(rng.permutation(x)) >= observed for _ in range(n_perm))
    return (1 + exceed) / (1 + n_perm)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--n-cut", type=int, default=1_000)
    ap.add_argument("--perm", type=int, default=10_000)
    ap.add_argument("--lifelines-perm", type=int, default=2, help="permutations actually run for lifelines")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--r-reps", type=int, default=5, help="repetitions per R timing (R's timer has 1 ms steps)")
    args = ap.parse_args()

    d = cohort(args.n)
    ours, theirs = carpet_steps(d), lifelines_steps(d)
    fit, cph = ours["cox"](), theirs["cox"]()  # warm-up (imports) and agreement check
    assert np.allclose(fit.params.to_numpy(), cph.params_.to_numpy(), atol=1e-6)
    assert abs(fit.concordance - cph.concordance_index_) < 1e-12
    r = r_times(d, args.r_reps, args.repeat)
    if r is not None:
        assert np.allclose(fit.params.to_numpy(), r["coef"], rtol=1e-6), (fit.params.to_numpy(), r["coef"])
        assert abs(fit.concordance - r["concordance"]) < 1e-9
        assert abs(ours["logrank"]() - r["chisq"]) < 1e-8 * r["chisq"]
    print(f"KM + log-rank + Cox (n={args.n:,}, {int(d['event'].sum()):,} events, "
          f"{d['time'].nunique():,} distinct times; Cox: Efron, {len(COVARIATES)} covariates):")
    print(f"  {'step':<22}{'carpet s':>10}{'R s':>10}{'lifelines s':>13}{'carpet/R':>10}{'carpet/lifelines':>18}")
    totals = {"carpet": 0.0, "R": 0.0, "lifelines": 0.0}
    for step in ("km", "logrank", "cox", "cox concordance"):
        t_c, t_l = best_of(ours[step], args.repeat), best_of(theirs[step], args.repeat)
        # R's coxph always computes the concordance: its "cox" time is compared with both carpet rows
        t_r = None if r is None else r["cox" if step.startswith("cox") else step]
        if step != "cox concordance":
            totals["carpet"] += t_c
            totals["lifelines"] += t_l
            totals["R"] += t_r or 0.0
        print(f"  {step:<22}{t_c:>10.4f}{'' if t_r is None else f'{t_r:.4f}':>10}{t_l:>13.4f}"
              f"{'' if t_r is None else f'{t_c / t_r:.2f}':>10}{t_c / t_l:>18.2f}")
    c, rr, ll = totals["carpet"], totals["R"], totals["lifelines"]
    print(f"  {'KM + log-rank + Cox':<22}{c:>10.4f}{rr if r else '':>10.4}{ll:>13.4f}"
          f"{f'{c / rr:.2f}' if r else '':>10}{c / ll:>18.2f}")
    if r is None:
        print("  (Rscript not found: R not timed)")

    dc = cohort(args.n_cut, seed=1)
    carpet_cutpoint(dc, 10)
    t_ours = best_of(lambda: carpet_cutpoint(dc, args.perm), args.repeat)
    start = time.perf_counter()
    lifelines_cutpoint(dc, args.lifelines_perm)
    per_perm = (time.perf_counter() - start) / (args.lifelines_perm + 1)
    t_theirs = per_perm * (args.perm + 1)
    cp = carpet_cutpoint(dc, args.perm)
    print(f"Cut-point, {args.perm:,} permutations (n={args.n_cut:,}, {cp.n_candidates} candidate cuts): "
          f"cut {cp.value:g}, M {cp.statistic:.3f}, p Lau92 {cp.p_value:.3g}, p perm {cp.p_value_perm:.3g}")
    print(f"  carpet {t_ours:.3f} s   lifelines {t_theirs:.1f} s (scaled from {args.lifelines_perm} "
          f"permutations, {per_perm:.2f} s each)   ratio {t_ours / t_theirs:.1e}")


if __name__ == "__main__":
    main()
