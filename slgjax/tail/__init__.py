"""Reward-tail models: Gaussian tail, generalized Pareto peaks over threshold, Bayesian GPD.

Every fit takes rewards ``float[..., m]`` with an optional ``bool[..., m]``
mask, treats the leading axes as states, and returns a small pytree of
parameters with ``threshold``, ``num_exceedances`` and a ``status`` of
:class:`Status` flags.
"""

from slgjax.tail.bayes import (
    BayesGPDFit,
    GeneralizedPareto,
    bayes_tail_value,
    fit_bayes_gpd,
    gpd_model_hierarchical,
    gpd_model_independent,
)
from slgjax.tail.expected_max import expected_max, expected_max_std_normal
from slgjax.tail.gaussian import GaussianTailFit, fit_gaussian_tail, gaussian_tail_value
from slgjax.tail.gpd import (
    gpd_cdf,
    gpd_log_prob,
    gpd_log_survival,
    gpd_quantile,
    gpd_quantile_from_survival,
    gpd_sample,
)
from slgjax.tail.gpd_fit import GPD_METHODS, GPDFit, fit_gpd, fit_gpd_exceedances
from slgjax.tail.gpd_predict import gpd_tail_value
from slgjax.tail.status import Status, describe, has_flag
from slgjax.tail.threshold import Exceedances, select_exceedances

__all__ = [
    "BayesGPDFit",
    "Exceedances",
    "GPDFit",
    "GPD_METHODS",
    "GaussianTailFit",
    "GeneralizedPareto",
    "Status",
    "bayes_tail_value",
    "describe",
    "expected_max",
    "expected_max_std_normal",
    "fit_bayes_gpd",
    "fit_gaussian_tail",
    "fit_gpd",
    "fit_gpd_exceedances",
    "gaussian_tail_value",
    "gpd_cdf",
    "gpd_log_prob",
    "gpd_log_survival",
    "gpd_model_hierarchical",
    "gpd_model_independent",
    "gpd_quantile",
    "gpd_quantile_from_survival",
    "gpd_sample",
    "gpd_tail_value",
    "has_flag",
    "select_exceedances",
]
