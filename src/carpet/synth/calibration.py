"""Calibration targets of the simulated cohorts: the published figures, each with its source.

Every number the cohort simulator (:mod:`carpet.synth.cohort`) is calibrated to is written here once,
as a :class:`Target` carrying the file and the table or sentence it comes from. Numbers the studies do
not print but a simulation needs are marked ``assumed=True`` with the reason; nothing else in carpet
should treat them as published.

Sources (``../shared/studies/``):

- ``moffitt-post-car-t-progression-emd-pmd.txt`` — Front Oncol 2025, 106 myeloma patients who
  progressed after commercial ide-cel / cilta-cel (abbreviated *Moffitt* below).
- ``certainty-myeloma-pet-car-t-news.txt`` — CERTAINTY consortium news on Born et al., HemaSphere 2025,
  61 patients; the abstract figures quoted in ``spec/clinical-rules.md`` §1.3 (line "Born P, Fandrei D").
- ``lbcl-mtv-car-t-article.txt`` — news on the J Nucl Med multicentre LBCL MTV study (111 patients);
  its segmentation (fixed SUV 4.0) is in ``spec/clinical-rules.md`` §5.5.

This module also holds the one calibration step that is not a plain copy of a number: the per-group
exponential medians of the Moffitt post-progression survival model (:func:`moffitt_group_medians`),
fitted to the seven published medians per endpoint. No library fits a mixture of exponentials to
published KM medians, so it is written here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cache
from typing import Any

import numpy as np
from scipy.optimize import brentq, least_squares

MOFFITT = "moffitt-post-car-t-progression-emd-pmd.txt"
MOFFITT_ABSTRACT = "moffitt-post-car-t-progression-abstract.txt"
CERTAINTY = "certainty-myeloma-pet-car-t-news.txt"
CERTAINTY_SPEC = "spec/clinical-rules.md §1.3 (Born 2025 abstract, as quoted there)"
LBCL = "lbcl-mtv-car-t-article.txt"
LBCL_SPEC = "spec/clinical-rules.md §5.5 (Voltin et al. J Nucl Med, table row)"


@dataclass(frozen=True)
class Target:
    """One calibration target.

    Parameters
    ----------
    value : Any
        The figure (a proportion, a median in months, counts, quantiles ...).
    source : str
        File (below ``../shared/``) and the table or sentence the figure comes from.
    assumed : bool
        True when the study does not print this figure and the value is a modelling assumption.
    note : str
        Why the value was assumed, or how a published figure was turned into a model input.
    """

    value: Any
    source: str
    assumed: bool = False
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pub(value, source, note=""):
    return Target(value, source, False, note)


def _assumed(value, note):
    return Target(value, "assumed", True, note)


# --------------------------------------------------------------------------------------------------
# Moffitt: post-CAR T progression, EMD / PMD (106 patients, all progressed)
# --------------------------------------------------------------------------------------------------
MOFFITT_TARGETS: dict[str, Target] = {
    "n": _pub(106, f"{MOFFITT}, Results: 'Of them, 106 patients (ide-cel n=92, cilta-cel n=14)'"),
    "product_counts": _pub({"ide-cel": 92, "cilta-cel": 14}, f"{MOFFITT}, Results / Figure 1"),
    # Figure 1's top box: everyone treated, of whom the 106 above progressed
    "treated_product_counts": _pub(
        {"ide-cel": 176, "cilta-cel": 75},
        f"{MOFFITT}, Results: 'A total of 251 patients ... either ide-cel (n=176) or cilta-cel (n=75)' (Figure 1)",
        note="the 145 who had not progressed at the cut-off are simulated as raw rows only (patients, labs, the "
             "CAR T line), so a plan finds the 106 itself; scaled with n when another cohort size is drawn"),
    "not_progressed_baseline": _assumed(
        {"emd": 0.15, "pmd": 0.10, "day90_orr": 0.95, "day90_cr": 0.75},
        "the paper describes only the 106 who progressed; patients still progression-free at the cut-off are "
        "assumed to have less EMD/PMD and to have responded; their demographics, FISH and blood counts are drawn "
        "as for the progressed (Table 1 rates)"),
    "not_progressed_follow_up": _assumed("alive at the cut-off",
                                         "no death without progression is simulated; followed to the cut-off"),
    "refractory_counts_by_product": _pub(
        {"ide-cel": 13, "cilta-cel": 1},
        f"{MOFFITT}, Results: '14 patients (ide-cel n=13 and cilta-cel n=1) had refractory disease, "
        "defined as progression within 60 days'"),
    "infusion_window": _pub(("2021-05-01", "2023-12-31"),
                            f"{MOFFITT}, Methods: 'between May 1, 2021, and December 31, 2023'"),
    "data_cutoff": _assumed("2024-12-31", "data cut-off not printed; paper received Jul 2025"),
    # Sankey (Figure 2) baseline categories: none / EMD only / PMD only / both.
    "baseline_status_counts": _pub(
        {"none": 60, "emd_only": 28, "pmd_only": 11, "both": 7},
        f"{MOFFITT}, 'EMD and PMD' paragraph (Figure 2 text): 60 negative, 7 both, 28 EMD only, 11 PMD only"),
    "emd_baseline": _pub(35 / 106, f"{MOFFITT}, Table 1 'Any EMD (n=35)'; abstract 'Baseline EMD ... 33%'"),
    "pmd_baseline": _pub(18 / 106, f"{MOFFITT}, 'EMD and PMD': '18 patients (17%) with any PMD'"),
    # Transition counts, baseline category -> category at progression (Figure 2 text).
    "transition_counts": _pub(
        {"none": {"none": 35, "emd_only": 18, "pmd_only": 3, "both": 2, "unknown": 2},
         "both": {"none": 3, "emd_only": 4, "pmd_only": 0, "both": 0, "unknown": 0},
         "emd_only": {"none": 7, "emd_only": 17, "pmd_only": 0, "both": 1, "unknown": 3},
         "pmd_only": {"none": 3, "emd_only": 3, "pmd_only": 4, "both": 0, "unknown": 1}},
        f"{MOFFITT}, 'EMD and PMD' paragraph (Figure 2)",
        note="PMD-only row prints 4+3+3 = 10 of 11 patients; the 11th is taken as unknown status"),
    "emd_progression": _pub(0.45, f"{MOFFITT}, Table 2 'Any EMD 45 (45%)'; issue text 'EMD at progression 45%'",
                            note="proportion among patients with known status (100 of 106)"),
    "pmd_progression": _pub(0.09, f"{MOFFITT}, Table 2 'Any PMD 9 (9%)'",
                            note="the Figure 2 counts give 10/100; the simulator follows Figure 2"),
    # Table 2 percentages have varying denominators (patients with the data); used as cohort-wide rates
    "pattern_biochemical": _pub(0.82, f"{MOFFITT}, Table 2 'Biochemical recurrence 83 (82%)'"),
    "pattern_marrow": _pub(0.59, f"{MOFFITT}, Table 2 'BM involvement 51 (59%)'"),
    "pattern_bone": _pub(0.50, f"{MOFFITT}, Table 2 'New bone disease 47 (50%)'"),
    "pattern_emd_or_pmd": _pub(0.51, f"{MOFFITT}, Table 2 'EMD or PMD 51 (51%)'"),
    "isolated_biochemical": _pub(0.06, f"{MOFFITT}, Table 2 'Isolated biochemical progression 6 (6%)'"),
    "isolated_marrow": _pub(0.0, f"{MOFFITT}, Table 2 'Isolated BM involvement 0 (0%)'"),
    "isolated_bone": _pub(0.02, f"{MOFFITT}, Table 2 'Isolated new bone disease 2 (2%)'"),
    "isolated_emd_or_pmd": _pub(0.05, f"{MOFFITT}, Table 2 'Isolated EMD or PMD 5 (5%)'"),
    "ttp_quartiles_months": _pub((3.2, 7.7, 11.5),
                                 f"{MOFFITT}, Table 2 'Median time to progression mo (IQR) 7.7 (3.2-11.5)'"),
    "ttp_range_months": _assumed((0.5, 24.0), "shortest/longest time to progression not printed"),
    "age_quartiles_by_emd": _pub({True: (58, 63, 69), False: (58, 68, 74)},
                                 f"{MOFFITT}, Table 1 'Median age in years (IQR)' by Any EMD / No EMD"),
    "age_range_years": _assumed((35, 88), "age range not printed"),
    "male_by_emd": _pub({True: 20 / 35, False: 39 / 71}, f"{MOFFITT}, Table 1 'Male, n (%)'"),
    "race_counts_by_emd": _pub(
        {True: {"White": 21, "African American": 6, "Hispanic": 6, "Other": 2},
         False: {"White": 49, "African American": 9, "Hispanic": 11, "Other": 2}},
        f"{MOFFITT}, Table 1 'Race, n (%)'"),
    "ecog_counts_by_emd": _pub({True: {"0-1": 30, "2": 4, "3": 1}, False: {"0-1": 64, "2": 6, "3": 1}},
                               f"{MOFFITT}, Table 1 'ECOG PS' (0-1 / 2 / >=3)"),
    "ecog0_share_of_0_1": _assumed(0.4, "Table 1 pools ECOG 0 and 1"),
    "heavy_chain_counts_by_emd": _pub(
        {True: {"IgG": 24, "IgA": 1, "IgD": 1, "none": 9}, False: {"IgG": 36, "IgA": 11, "IgD": 0, "none": 24}},
        f"{MOFFITT}, Table 1 'Heavy chain monoclonal component'"),
    "light_chain_counts": _pub({"kappa": 71, "lambda": 31, "none": 4},
                               f"{MOFFITT}, Table 1 'Light chain monoclonal component'",
                               note="'none' = the 4 non-/oligosecretory patients (Table 1), drawn among "
                                    "those without a heavy chain; they still get a kappa/lambda clone "
                                    "(marrow immunohistochemistry) for the IMWG patients table"),
    "prior_lines_quartiles_by_emd": _pub({True: (4, 5, 7), False: (5, 6, 7)},
                                         f"{MOFFITT}, Table 1 'Median number of prior lines of therapy (IQR)'"),
    "prior_lines_range": _assumed((3, 14), "range of prior lines not printed"),
    "prior_asct": _pub(79 / 106, f"{MOFFITT}, Table 1 'Prior Auto-SCT 79 (75%)'",
                       note="the text says 84 (79%); Table 1 is used"),
    "high_risk_cytogenetics": _pub(40 / 106, f"{MOFFITT}, Table 1 'High risk cytogenetic 40 (38%)'"),
    "anemia": _pub(58 / 106, f"{MOFFITT}, Table 1 'Anemia 58 (55%)'"),
    "neutropenia": _pub(11 / 106, f"{MOFFITT}, Table 1 'Neutropenia 11 (10%)'"),
    "thrombocytopenia": _pub(37 / 106, f"{MOFFITT}, Table 1 'Thrombocytopenia 37 (35%)'"),
    "renal_failure": _pub(4 / 106, f"{MOFFITT}, Table 1 'Renal failure 4 (4%)'"),
    "day90_orr_by_emd": _pub({True: 0.47, False: 0.72},
                             f"{MOFFITT}, Results: 'lower response in patients with EMD ... (47% vs 72%, p=0.01)'"),
    "day90_cr_by_emd": _pub({True: 0.40, False: 0.55}, f"{MOFFITT}, Table 1 'sCR/CR 14 (40%) / 39 (55%)'"),
    "first_salvage_counts": _pub(
        {"bcma_bispecific": 29, "gprc5d_bispecific": 8, "conventional_combination": 46, "clinical_trial": 2,
         "other_bcma": 4, "hospice": 7, "unknown": 10},
        f"{MOFFITT}, Table 3 'First line therapies after disease progression' (all patients)"),
    # Post-progression medians (months), by any EMD at baseline (BL) and at progression (PD).
    "pfs2_median_months": _pub(
        {"all": 5.8, "bl_emd": 3.6, "bl_no_emd": 7.0, "pd_emd": 4.7, "pd_no_emd": 8.5,
         "bl_emd_pd_emd": 4.0, "bl_no_emd_pd_no_emd": 8.6},
        f"{MOFFITT}, Survival data (Figure 3A, 3C, 3F) and Figure 5A text"),
    "os_pp_median_months": _pub(
        {"all": 12.5, "bl_emd": 4.8, "bl_no_emd": 21.0, "pd_emd": 7.4, "pd_no_emd": 21.1,
         "bl_emd_pd_emd": 4.9, "bl_no_emd_pd_no_emd": 21.0},
        f"{MOFFITT}, Survival data (Figure 4A, 4C, 4F), Figure 5B text; abstract 'OS (4.8 vs. 21.0 months)'"),
    "pfs2_os_coupling": _assumed("comonotone", "PFS2 and OS share one uniform draw so PFS2 <= OS"),
    # raw inputs behind the Table 1 flags (a centre's table holds the FISH results and blood counts)
    "fish_counts": _pub({"del17p": 31, "t4_14": 13, "t14_16": 6},
                        f"{MOFFITT}, Table 1 'del(17p)/monosomy17 31, t(4,14) 13, t(14,16) 6'",
                        note="drawn among the high-risk patients only (at least one each), so R-ISS high risk "
                             "from the raw FISH columns is the drawn high-risk flag"),
    # Table 1 rows beyond the high-risk FISH: published n (%) by any EMD; the percentages give the tested counts
    "fish_extended_by_emd": _pub(
        {"chromosome1": {True: 15 / 32, False: 44 / 69}, "t11_14": {True: 7 / 32, False: 10 / 70},
         "hyperdiploid": {True: 8 / 32, False: 20 / 69}},
        f"{MOFFITT}, Table 1 'Chromosome 1 abnormalities 59 (58%): 15 (47%) / 44 (64%)', "
        "'t(11,14) 17 (17%): 7 (22%) / 10 (14%)', 'Hyperdiploidy 28 (28%): 8 (25%) / 20 (29%)'",
        note="rates among the tested; the denominators (about 32 of 35 with EMD, 69-70 of 71 without) follow from "
             "the printed n and percent"),
    "fish_extended_tested_by_emd": _pub(
        {True: 32 / 35, False: 69 / 71}, f"{MOFFITT}, Table 1 (n / percent of the three rows above)",
        note="patients without these FISH results have them missing (empty), not negative"),
    "chromosome1_split": _assumed(
        {"gain1q": 0.60, "amp1q": 0.20, "del1p32": 0.10, "gain1q+del1p32": 0.10},
        "Table 1 pools 'chromosome 1 abnormalities'; the raw FISH results behind it (1q gain = 3 copies, 1q "
        "amplification >= 4 copies, del(1p32)) are split by these assumed shares"),
    "cbc_ranges": _assumed({"hb_g_dl": ((7.0, 9.9), (10.0, 14.5)), "anc_per_ul": ((300, 990), (1000, 5000)),
                            "platelets_per_ul": ((20000, 99000), (100000, 320000)),
                            "creatinine_mg_dl": ((2.1, 4.0), (0.6, 1.9))},
                           "values not printed; drawn uniform inside (abnormal, normal) ranges so the Table 1 "
                           "flags (Hb < 10, ANC < 1000, platelets < 100 x 10^9/L, creatinine > 2) come back"),
    "next_line_start_days": _assumed(15, "first salvage starts the day after the confirming assessment "
                                         "(progression + 14 days), so IMWG keeps the confirmation"),
    "salvage_regimens": _assumed(
        {"bcma_bispecific": ("Teclistamab", "Elranatamab", "Tec-Dara"), "gprc5d_bispecific": ("Talquetamab",),
         "conventional_combination": ("KPd", "Dara-Pom-dex", "Isa-Kd", "DT-PACE", "Sel-Pom-dex", "Cy-Bor-D"),
         "clinical_trial": ("Investigational agent",), "other_bcma": ("Belantamab mafodotin",),
         "hospice": ("Hospice",), "unknown": (None,)},
        "Table 3 gives classes only; regimens as clinicians write them stand for each class"),
}

# --------------------------------------------------------------------------------------------------
# CERTAINTY: PET/CT before and after BCMA CAR T in myeloma (61 patients)
# --------------------------------------------------------------------------------------------------
CERTAINTY_TARGETS: dict[str, Target] = {
    "n": _pub(61, f"{CERTAINTY}: 'This study analysed 61 RRMM patients treated with cilta-cel or ide-cel'"),
    "baseline_pet_n": _pub(53, f"{CERTAINTY_SPEC}: 'PET before infusion n=53'"),
    "day30_pet_n": _pub(43, f"{CERTAINTY_SPEC}: 'day-30 PET n=43'"),
    "metcr_day30": _pub(0.37, f"{CERTAINTY}: 'only 37% of patients achieved metabolic complete remission'",
                        note="taken among patients with a day-30 PET"),
    "mtv_cutoff_ml": _pub(54.3, f"{CERTAINTY}: 'A high MTV (>54.3 mL) was linked to early relapse'",
                          note="segmentation method not retrieved; the abstract finds MTV not independent "
                               "of EMD, so MTV acts on PFS only through its link with EMD here"),
    "pfs_median_months_by_emd": _pub({True: 3.0, False: 15.0},
                                     f"{CERTAINTY_SPEC}: 'Bone-independent EMD -> shorter PFS (median 3 vs 15 mo)'"),
    "product_share": _assumed({"ide-cel": 0.5, "cilta-cel": 0.5}, "product split not printed"),
    "emd_baseline": _assumed(0.25, "share of bone-independent EMD not printed"),
    "pmd_baseline": _assumed(0.20, "paramedullary share not printed"),
    "diffuse_marrow_uptake": _assumed(0.40, "IMPeTUs diffuse BM uptake share not printed"),
    "mtv_median_ml_by_emd": _assumed({True: 90.0, False: 30.0},
                                     "MTV distribution not printed; chosen so that ~1/3 exceed 54.3 mL"),
    "mtv_log_sd": _assumed(1.1, "spread of log MTV"),
    "suv_max_median_by_emd": _assumed({True: 10.0, False: 6.0}, "SUVmax distribution not printed"),
    "suv_max_log_sd": _assumed(0.35, "spread of log SUVmax"),
    "n_lesions_mean_by_emd": _assumed({True: 6.0, False: 4.0}, "lesion counts not printed (1 + Poisson)"),
    "metcr_day30_given_emd": _assumed(0.15, "metCR among EMD patients not printed; the non-EMD rate is "
                                            "solved so the overall rate is the published 37%"),
    "serological_cr_day30": _assumed(0.35, "serological CR share at day 30 not printed"),
    "demographics": _assumed("moffitt", "age, sex and monoclonal protein drawn as in the Moffitt Table 1, "
                                        "by EMD status"),
    "infusion_window": _assumed(("2021-04-01", "2023-12-31"), "treatment window not printed"),
    "follow_up_months": _assumed((6.0, 30.0), "administrative follow-up from infusion, uniform"),
    # CAR T expansion and TCR diversity (the news item: no effect of MTV on either)
    "expansion_independent_of_mtv": _pub(
        True, f"{CERTAINTY}: 'A high MTV (>54.3 mL) was linked to early relapse, but did not affect CAR T "
              "expansion or T cell receptor diversity'",
        note="expansion and TCR diversity are drawn independently of MTV (and of EMD)"),
    "expansion_measured": _assumed(0.80, "share of patients with CAR T kinetics in blood not printed"),
    "car_t_peak_median_per_ul_by_product": _assumed({"ide-cel": 150.0, "cilta-cel": 600.0},
                                                    "peak CAR T cells/µL not printed; cilta-cel expands more"),
    "car_t_peak_log_sd": _assumed(1.0, "spread of log peak CAR T cells/µL"),
    "car_t_auc_days_median": _assumed(9.0, "AUC over days 0-28 (cells/µL x days) = peak x a lognormal number "
                                           "of days (median 9, log sd 0.3): the width of the expansion peak"),
    "tcr_measured": _assumed(0.60, "share with TCR repertoire sequencing not printed"),
    "tcr_shannon_mean_sd": _assumed((7.5, 1.2), "Shannon diversity (nats) of the T-cell receptor repertoire, "
                                                "normal; not printed"),
}

# --------------------------------------------------------------------------------------------------
# LBCL: baseline MTV before CAR T in large B-cell lymphoma (111 patients, 6 centres)
# --------------------------------------------------------------------------------------------------
LBCL_TARGETS: dict[str, Target] = {
    "n": _pub(111, f"{LBCL}: 'a real-world cohort of 111 patients'"),
    "n_centres": _pub(6, f"{LBCL}: 'researchers from six major European academic centers'"),
    "mtv_method": _pub("suv4", f"{LBCL_SPEC}: 'fixed SUV 4.0, semi-automatic'"),
    "mtv_concordance": _pub(0.59, f"{LBCL_SPEC}: 'AUC 0.68, Harrell C 0.59'",
                            note="guides the assumed MTV effect size below; not enforced exactly"),
    "product_share": _assumed({"axi-cel": 0.55, "tisa-cel": 0.35, "liso-cel": 0.10}, "product split not printed"),
    "mtv_median_ml": _assumed(80.0, "MTV distribution not printed"),
    "mtv_log_sd": _assumed(1.3, "spread of log MTV"),
    "suv_max_median": _assumed(18.0, "SUVmax distribution not printed"),
    "suv_max_log_sd": _assumed(0.4, "spread of log SUVmax (floored at 4, the segmentation threshold)"),
    "n_lesions_mean_at_median_mtv": _assumed(4.3, "lesion counts not printed (1 + Poisson)"),
    "n_lesions_log_slope": _assumed(0.5, "lesion count rises with MTV: log-mean slope per SD of log MTV"),
    "ldh_log_sd": _assumed(0.35, "spread of log(LDH / ULN)"),
    "ldh_mtv_correlation": _assumed(0.6, "LDH rises with tumour burden"),
    "stage_mtv_correlation": _assumed(0.5, "stage rises with tumour burden"),
    "pfs_log_hr_per_sd_log_mtv": _assumed(0.35, "MTV effect on PFS; gives Harrell C near the published 0.59"),
    "pfs_median_months": _assumed(6.0, "PFS median not printed (real-world CAR T LBCL range 3-9 months)"),
    "os_median_months": _assumed(18.0, "OS median not printed"),
    "age_quartiles_years": _assumed((54, 62, 69), "age not printed"),
    "age_range_years": _assumed((20, 85), "age range not printed"),
    "male": _assumed(0.62, "sex ratio not printed"),
    "ldh_uln_u_l_by_centre": _assumed((250, 248, 247, 225, 250, 234), "local LDH upper limits not printed"),
    "ldh_elevated": _assumed(0.60, "share with LDH > ULN not printed"),
    "ecog_share": _assumed({0: 0.40, 1: 0.45, 2: 0.12, 3: 0.03}, "ECOG not printed"),
    "stage_share": _assumed({1: 0.10, 2: 0.18, 3: 0.22, 4: 0.50}, "Ann Arbor stage not printed"),
    "extranodal_sites_mean": _assumed(1.0, "extranodal sites not printed (Poisson)"),
    "infusion_window": _assumed(("2019-01-01", "2023-06-30"), "treatment window not printed"),
    "follow_up_months": _assumed((12.0, 48.0), "administrative follow-up from infusion, uniform"),
    # raw inputs of CAR-HEMATOTOX before lymphodepletion (spec §6.2), for the comparison with the newer scores
    "other_scores": _pub("MTV vs IPI and 4 MTV-based risk scores",
                         f"{LBCL_SPEC}; {LBCL}: 'metabolic tumor volume outperforms other modern risk scores that "
                         "were designed to supplement the International Prognostic Index'",
                         note="the four scores are not named in the text available [N]; carpet compares the "
                              "scores it has (IPI, aaIPI, CAR-HEMATOTOX)"),
    "hematotox_inputs": _assumed(
        {"platelets_per_ul": (160_000, 0.5), "anc_per_ul": (2_500, 0.6), "hb_g_dl": (10.5, 0.15),
         "crp_mg_dl": (1.5, 1.1), "ferritin_ng_ml": (700, 0.9)},
        "blood counts and inflammation markers before lymphodepletion not printed: lognormal (median, log sd)"),
    "hematotox_mtv_correlation": _assumed(
        {"crp_mg_dl": 0.4, "ferritin_ng_ml": 0.3, "platelets_per_ul": -0.2, "hb_g_dl": -0.2, "anc_per_ul": 0.0},
        "correlation of each log value with log MTV (inflammation and marrow strain rise with tumour burden)"),
}

# --------------------------------------------------------------------------------------------------
# Salvage after BCMA CAR T (Van Oekelen et al., Blood 2022; 79 patients, 237 courses)
# --------------------------------------------------------------------------------------------------
SALVAGE = "salvage-after-bcma-car-t-news.txt"
_TCE_NOTE = "class ORRs not in the news text; T-cell engagers best, as it says; chosen so the first salvage ORR is 43%"
SALVAGE_TARGETS: dict[str, Target] = {
    "n": _pub(79, f"{SALVAGE}: 'information on 79 patients with multiple myeloma whose disease progressed'"),
    "courses": _pub(237, f"{SALVAGE}: 'a total of 237 courses of various post-CAR T salvage treatments'",
                    note="about 3 lines per patient; reached by the line durations below"),
    "first_salvage_orr": _pub(0.43, f"{SALVAGE}: 'Just under half (43%) of patients responded to their first "
                                    "salvage treatment'"),
    "os_relapse_median_months": _pub(18.0, f"{SALVAGE}: 'Overall survival from the point of relapse ... was "
                                           "about 18 months'"),
    "product_share": _assumed({"ide-cel": 0.45, "cilta-cel": 0.25, "other BCMA CAR T": 0.30},
                              "products not in the news text (2017-2021 trials and early commercial use)"),
    "infusion_window": _assumed(("2017-01-01", "2021-06-30"), "treatment window not in the news text"),
    "data_cutoff": _assumed("2022-04-30", "data cut-off not printed; paper published Nov 2022"),
    "ttp_quartiles_months": _assumed((3.0, 7.0, 13.0), "time from infusion to relapse not in the news text"),
    "ttp_range_months": _assumed((1.0, 36.0), "time from infusion to relapse not in the news text"),
    "day90_orr": _assumed(0.85, "response to the CAR T itself (day 90) among patients not progressed by then"),
    "day90_cr": _assumed(0.45, "CR to the CAR T itself (day 90) among patients not progressed by then"),
    "salvage_class_share": _assumed(
        {"conventional_combination": 0.45, "bcma_bispecific": 0.12, "gprc5d_bispecific": 0.08, "car_t": 0.08,
         "fcrh5_bispecific": 0.05, "other_bcma": 0.07, "clinical_trial": 0.15},
        "class mix of each salvage line not in the news text"),
    "salvage_class_orr": _assumed(
        {"conventional_combination": 0.33, "bcma_bispecific": 0.60, "gprc5d_bispecific": 0.70, "car_t": 0.80,
         "fcrh5_bispecific": 0.55, "other_bcma": 0.25, "clinical_trial": 0.35}, _TCE_NOTE),
    "line_pfs_median_months": _assumed({True: 9.0, False: 2.7},
                                       "time on a line to progression, responders / non-responders; with the "
                                       "next line 14 days after, about 3 lines per patient before death"),
    "next_line_gap_days": _assumed(14, "a new line starts 14 days after progression (restaging)"),
    "tce_os_effect": _assumed(1.0, "no effect of T-cell engagers on OS is simulated (hazard ratio 1): any OS "
                                   "difference by TCE exposure in the simulated cohort is immortal-time bias or "
                                   "chance, which the landmark analysis is there to avoid"),
}

TARGETS: dict[str, dict[str, Target]] = {
    "moffitt_post_cart": MOFFITT_TARGETS,
    "certainty_pet": CERTAINTY_TARGETS,
    "lbcl_mtv": LBCL_TARGETS,
    "salvage_post_bcma": SALVAGE_TARGETS,
}


# --------------------------------------------------------------------------------------------------
# Moffitt post-progression survival: per-group exponential medians fitted to the published medians
# --------------------------------------------------------------------------------------------------
#: survival groups: (any EMD at baseline, any EMD at progression); unknown progression status is
#: grouped with "no EMD at progression" (an assumption; the paper leaves these 6 patients out of 3F/4F).
GROUPS = ((True, True), (True, False), (False, True), (False, False))
#: medians the fit weighs more: all patients and by baseline EMD (the abstract's headline figures)
HEADLINE_MEDIANS = ("all", "bl_emd", "bl_no_emd")
HEADLINE_WEIGHT = 2.0


def moffitt_group_weights() -> dict[tuple[bool, bool], dict[str, float]]:
    """Probability of each (baseline EMD, progression EMD) group, from the Figure 2 transitions.

    Returns, per group, ``weight`` (share of all patients) and ``known`` (share with a known
    progression status), both implied by ``transition_counts``.
    """
    counts = MOFFITT_TARGETS["transition_counts"].value
    n = sum(sum(row.values()) for row in counts.values())
    out = {g: {"weight": 0.0, "known": 0.0} for g in GROUPS}
    for base, row in counts.items():
        bl = base in ("emd_only", "both")
        for prog, k in row.items():
            pd_ = prog in ("emd_only", "both")
            out[(bl, pd_)]["weight"] += k / n
            if prog != "unknown":
                out[(bl, pd_)]["known"] += k / n
    return out


def mixture_median(weights, medians) -> float:
    """Median of a mixture of exponential distributions (weights need not sum to one)."""
    w = np.asarray(weights, float) / np.sum(weights)
    rate = np.log(2.0) / np.asarray(medians, float)
    return brentq(lambda t: np.sum(w * np.exp(-rate * t)) - 0.5, 1e-9, 1e4)


def _subsets(weights):
    """Weights of each published subgroup, in the order of the ``*_median_months`` keys."""
    w = {g: weights[g]["weight"] for g in GROUPS}
    k = {g: weights[g]["known"] for g in GROUPS}
    z = dict.fromkeys(GROUPS, 0.0)
    return {
        "all": w,
        "bl_emd": {**z, (True, True): w[(True, True)], (True, False): w[(True, False)]},
        "bl_no_emd": {**z, (False, True): w[(False, True)], (False, False): w[(False, False)]},
        "pd_emd": {**z, (True, True): k[(True, True)], (False, True): k[(False, True)]},
        "pd_no_emd": {**z, (True, False): k[(True, False)], (False, False): k[(False, False)]},
        "bl_emd_pd_emd": {**z, (True, True): k[(True, True)]},
        "bl_no_emd_pd_no_emd": {**z, (False, False): k[(False, False)]},
    }


def model_medians(group_medians: dict[tuple[bool, bool], float]) -> dict[str, float]:
    """Subgroup medians implied by per-group exponential medians (same keys as the targets)."""
    subsets = _subsets(moffitt_group_weights())
    return {key: mixture_median([sw[g] for g in GROUPS if sw[g] > 0], [group_medians[g] for g in GROUPS if sw[g] > 0])
            for key, sw in subsets.items()}


@cache
def moffitt_group_medians(endpoint: str) -> dict[tuple[bool, bool], float]:
    """Exponential median (months) per (baseline EMD, progression EMD) group for ``endpoint``.

    Weighted least squares on log medians: the four group medians are chosen so that the seven
    published subgroup medians (overall, by baseline EMD, by progression EMD, and the two extreme
    groups of Figure 5) are matched as closely as a four-parameter model allows. The overall and
    baseline-EMD medians (the abstract's headline figures) weigh twice as much as the others.

    Parameters
    ----------
    endpoint : {'pfs2', 'os_pp'}
    """
    target = MOFFITT_TARGETS[f"{endpoint}_median_months"].value
    keys = list(target)
    log_target = np.log([target[k] for k in keys])
    weight = np.array([HEADLINE_WEIGHT if k in HEADLINE_MEDIANS else 1.0 for k in keys])

    def residual(log_m):
        med = model_medians(dict(zip(GROUPS, np.exp(log_m))))
        return weight * (np.log([med[k] for k in keys]) - log_target)

    start = np.log([target["bl_emd_pd_emd"], target["bl_emd"], target["pd_emd"], target["bl_no_emd_pd_no_emd"]])
    fit = least_squares(residual, start, bounds=(np.log(0.5), np.log(200.0)))
    return dict(zip(GROUPS, (float(m) for m in np.exp(fit.x))))
