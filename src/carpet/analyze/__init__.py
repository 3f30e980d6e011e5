"""``carpet analyze``: an analysis plan (YAML) turned into tables, figures, an HTML and a PDF report.

A plan is written for clinicians: a title, the endpoints (time/event columns, or dates to derive them
from), optional derived columns (risk scores, EMD/PMD status, cut-offs, logs, labels) and a list of
analyses (``table1``, ``km``, ``cox``, ``transitions``, ``cutpoint``, ``cutoff``, ``compare_models``,
``landmark``). Every problem of a plan is reported at once, each naming its key path
(``analyses[2].endpoint``) and what was expected.

Plan reference (see ``carpet/plans/`` (installed with the package) for complete plans)::

    title: Post-CAR T progression outcomes        # required; subtitle: and seed: (default 0) optional
    endpoints:                                    # required: name -> time/event columns or dates
      pfs2: {time: pfs2_months, event: pfs2_event, unit: months, label: PFS from progression}
      pfs:  {start: infusion_date, event_date: [progression_date, death_date],
             censor_date: last_followup_date, unit: months}          # earliest event date counts
    assessments: {pfs: pfs_imwg}                  # with --assessments: PFS from IMWG progression
    imaging: {ids: {STUDY-1: P001}, select: first}  # with --imaging: study_id -> patient_id, which study
    derive:                                       # new columns, in order (later ones may use earlier)
      - {name: ipi, score: ipi}                   # ipi, aaipi, car_hematotox, iss, riss, r2iss
      - {name: ipi_group, score: ipi, output: group}
      - {name: status_baseline, emd_pmd: [emd_baseline, pmd_baseline]}   # None / EMD / PMD / EMD+PMD
      - {name: mtv_high, cut: {column: mtv_ml, above: 54.3}}             # or at_least:
      - {name: log_mtv, log: mtv_ml}
      - {name: emd, labels: {column: emd_baseline, values: {true: EMD, false: No EMD}}}
      - {name: emd_both, combine: [emd_baseline, emd_progression]}       # "a / b" group names
    analyses:                                     # each may also have title: and name: (file stem)
      - {type: table1, by: emd, continuous: [...], categorical: [...], nonnormal: [...], labels: {...}}
      - {type: km, endpoint: pfs2, by: emd, risk_times: [0, 6, 12, 18, 24]}   # by: may be a list
      - {type: cox, endpoint: pfs2, covariates: [emd_baseline, age_years], strata: [centre]}
      - {type: transitions, before: status_baseline, after: status_progression, order: [None, EMD, PMD, EMD+PMD]}
      - {type: cutpoint, endpoint: pfs, marker: mtv_ml, min_prop: 0.1, n_perm: 1000}
      - {type: cutoff, endpoint: pfs, marker: mtv_ml, value: 54.3, cutoff_method: suv4, marker_method: suv4}
      - {type: compare_models, endpoint: pfs, models: {IPI: [ipi], MTV: [log_mtv]}, horizon: 12, n_boot: 200}
      - {type: landmark, endpoint: pfs, time: 1.0, by: metcr_day30}

``table1`` and ``transitions`` accept ``max_tables`` (the exact Fisher test's enumeration limit, beyond
which a seeded Monte Carlo p-value is used).

The statistics are those of :mod:`carpet.stats`; this module only prepares the analysis table, calls
them, and writes what they return. Writes into the output folder:

- ``report.html`` (self-contained) and ``report.pdf``;
- one CSV per table (``table1.csv``, ``km_<endpoint>_<by>.csv``, ``cox_<endpoint>.csv``, ...);
- ``figures/<name>.png`` and ``figures/<name>.pdf`` per figure;
- ``results.json``: every number with its provenance (plan hash, input hashes, carpet version).

Identifier columns (names, birth dates, MRNs, ...) are dropped from the inputs before anything is
computed, unless ``include_identifiers=True``. When the data are simulated (a true ``simulated``
column), every output says SIMULATED.
"""

from carpet.analyze.derive import IDENTIFIER_COLUMNS
from carpet.analyze.plan import ANALYSES, describe_plan, load_plan, required_inputs, validate_plan
from carpet.analyze.run import AnalysisResult, AnalysisTable, analysis_table, run_analysis
from carpet.analyze.writer import SIMULATED_BANNER

__all__ = ["AnalysisResult", "AnalysisTable", "analysis_table", "load_plan", "validate_plan", "run_analysis",
           "IDENTIFIER_COLUMNS", "ANALYSES",
           "SIMULATED_BANNER", "required_inputs", "describe_plan"]
