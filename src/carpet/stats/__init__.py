"""Statistics that match R's survival, maxstat, pROC and cmprsk packages.

``kaplan_meier`` (survfit), ``logrank`` (survdiff), ``cox`` (coxph, cox.zph), ``concordance_index``
(concordance), ``cutpoint`` and ``evaluate_cutoff`` (maxstat.test with smethod="LogRank"), ``proportion``
(binom.test, prop.test), ``odds_ratio`` (fisher.test), ``logistic`` (glm binomial), ``roc`` and ``roc_test``
(pROC), ``cuminc`` and ``fine_gray`` (cmprsk cuminc, crr), ``rmst`` and ``followup`` (survfit rmean, reverse Kaplan–Meier), ``cox_table``
(univariable + multivariable Cox with cox.zph), ``mann_whitney`` and ``spearman`` (wilcox.test, cor.test).
"""

from carpet.stats._results import TestResult
from carpet.stats.concordance import concordance_contrasts, concordance_counts, concordance_index
from carpet.stats.cox import CoxResult, cox, cox_zph
from carpet.stats.cox_table import CoxTable, cox_table
from carpet.stats.cuminc import CumulativeIncidence, cuminc
from carpet.stats.cutpoint import CutoffEvaluation, CutpointResult, cutpoint, evaluate_cutoff
from carpet.stats.finegray import FineGrayResult, fine_gray
from carpet.stats.km import KaplanMeier, kaplan_meier
from carpet.stats.logistic import LogisticResult, logistic
from carpet.stats.logrank import LogRankResult, logrank
from carpet.stats.proportion import OddsRatio, Proportion, odds_ratio, proportion
from carpet.stats.rank_tests import MannWhitney, Spearman, mann_whitney, spearman
from carpet.stats.rmst import FollowUp, Rmst, followup, rmst
from carpet.stats.roc import Roc, RocTest, roc, roc_test

__all__ = ["TestResult", "kaplan_meier", "KaplanMeier", "logrank", "LogRankResult", "cox", "CoxResult", "cox_zph",
           "cutpoint", "CutpointResult", "evaluate_cutoff", "CutoffEvaluation",
           "concordance_index", "concordance_counts", "concordance_contrasts", "proportion", "Proportion",
           "odds_ratio", "OddsRatio",
           "logistic", "LogisticResult", "roc", "Roc", "roc_test", "RocTest", "cuminc", "CumulativeIncidence",
           "rmst", "Rmst", "followup", "FollowUp", "cox_table", "CoxTable", "fine_gray",
           "FineGrayResult", "mann_whitney", "MannWhitney", "spearman", "Spearman"]
