"""Survival statistics that match R's survival and maxstat packages.

``kaplan_meier`` (survfit), ``logrank`` (survdiff), ``cox`` (coxph, cox.zph), ``concordance_index``
(concordance), ``cutpoint`` and ``evaluate_cutoff`` (maxstat.test with smethod="LogRank").
"""

from carpet.stats._results import TestResult
from carpet.stats.concordance import concordance_counts, concordance_index
from carpet.stats.cox import CoxResult, cox, cox_zph
from carpet.stats.cutpoint import CutoffEvaluation, CutpointResult, cutpoint, evaluate_cutoff
from carpet.stats.km import KaplanMeier, kaplan_meier
from carpet.stats.logrank import LogRankResult, logrank

__all__ = ["TestResult", "kaplan_meier", "KaplanMeier", "logrank", "LogRankResult", "cox", "CoxResult", "cox_zph",
           "cutpoint", "CutpointResult", "evaluate_cutoff", "CutoffEvaluation",
           "concordance_index", "concordance_counts"]
