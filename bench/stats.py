"""Benchmark carpet.stats against lifelines on the same data in the same run.

Run:  PYTHONPATH=src /work/venv/bin/python bench/stats.py [--n 10000] [--n-cut 1000] [--perm 10000]

1. Kaplan–Meier + log-rank (3 groups) + Cox (Efron, 3 covariates, with concordance) on n subjects.
   lifelines: KaplanMeierFitter, multivariate_logrank_test, CoxPHFitter(fit_options={'precision': 1e-12},
   the setting that reproduces R's coefficients) and its concordance_index_.
2. Optimal cut-point with a permutation p-value on n_cut subjects. lifelines has no maxstat; its
   equivalent is a log-rank test per candidate cut and permutation. That is timed on a few permutations
   and scaled linearly to the same number of permutations (printed as such).
Times are the best of ``--repeat`` runs (seconds); ratio = carpet / lifelines (goal <= 1.0).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd


def cohort(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    age = rng.normal(60, 10, n)
    group = rng.integers(0, 3, n)
    t_event = rng.exponential(24 * np.exp(-0.5 * x - 0.02 * (age - 60) - 0.3 * group))
    t_cens = rng.uniform(6, 60, n)
    return pd.DataFrame({"time": np.round(np.minimum(t_event, t_cens), 1),  # 0.1-month resolution: ties
                         "event": (t_event <= t_cens).astype(int), "x": x, "age": age, "group": group,
                         "mtv_ml": np.round(np.exp(rng.normal(3.5, 1, n)), 1)})


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def carpet_survival(d: pd.DataFrame):
    from carpet.stats import cox, kaplan_meier, logrank
    km = kaplan_meier(d["time"], d["event"])
    _ = km.median, km.median_ci
    lr = logrank(d["time"], d["event"], d["group"])
    fit = cox(d, covariates=["x", "age", "group"])
    return km.median, lr.statistic, fit.params.to_numpy(), fit.concordance


def lifelines_survival(d: pd.DataFrame):
    from lifelines import CoxPHFitter, KaplanMeierFitter
    from lifelines.statistics import multivariate_logrank_test
    km = KaplanMeierFitter().fit(d["time"], d["event"])
    _ = km.median_survival_time_, km.confidence_interval_
    lr = multivariate_logrank_test(d["time"], d["group"], d["event"])
    cph = CoxPHFitter().fit(d[["time", "event", "x", "age", "group"]], "time", "event",
                            fit_options={"precision": 1e-12})
    return km.median_survival_time_, lr.test_statistic, cph.params_.to_numpy(), cph.concordance_index_


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
    args = ap.parse_args()

    d = cohort(args.n)
    ours, theirs = carpet_survival(d), lifelines_survival(d)  # warm-up (imports) and agreement check
    assert np.allclose(ours[2], theirs[2], atol=1e-6), (ours[2], theirs[2])
    assert abs(ours[1] - theirs[1]) < 1e-8 * theirs[1] and abs(ours[3] - theirs[3]) < 1e-12
    t_ours = best_of(lambda: carpet_survival(d), args.repeat)
    t_theirs = best_of(lambda: lifelines_survival(d), args.repeat)
    print(f"KM + log-rank + Cox (n={args.n:,}, {int(d['event'].sum()):,} events, "
          f"{d['time'].nunique():,} distinct times):")
    print(f"  carpet {t_ours:.3f} s   lifelines {t_theirs:.3f} s   ratio {t_ours / t_theirs:.2f}")

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
