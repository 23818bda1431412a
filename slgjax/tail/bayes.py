"""Bayesian generalized Pareto tails in NumPyro: distribution, models, inference, prediction.

The pieces live in one module per concept and are re-exported here:

- :mod:`slgjax.tail.bayes_dist`: :class:`GeneralizedPareto`, a NumPyro
  distribution whose support follows a sampled shape ``xi``, and
  :class:`GPDExceedances`, the masked exceedance vectors of K states;
- :mod:`slgjax.tail.bayes_models`: the independent and hierarchical models of
  the exceedances of the K states of one prompt;
- :mod:`slgjax.tail.bayes_nuts` and :mod:`slgjax.tail.bayes_laplace`: NUTS with
  chains vectorised across prompts, and the MAP plus Laplace fast path;
- :mod:`slgjax.tail.bayes_fit`: :func:`fit_bayes_gpd` and :class:`BayesGPDFit`;
- :mod:`slgjax.tail.bayes_predict`: posterior predictive best-of-N values.
"""

from slgjax.tail.bayes_dist import (
    GeneralizedPareto,
    GPDExceedances,
    gpd_exceedance_log_likelihood,
    gpd_upper_endpoint,
)
from slgjax.tail.bayes_fit import (
    BAYES_INFERENCE,
    BAYES_MODELS,
    MAX_R_HAT,
    MIN_ESS,
    BayesGPDFit,
    GPDPrior,
    fit_bayes_gpd,
)
from slgjax.tail.bayes_models import gpd_model_hierarchical, gpd_model_independent
from slgjax.tail.bayes_predict import (
    BAYES_STATISTICS,
    BayesTailValue,
    bayes_tail_draws,
    bayes_tail_posterior,
    bayes_tail_value,
)

__all__ = [
    "GeneralizedPareto",
    "GPDExceedances",
    "gpd_exceedance_log_likelihood",
    "gpd_upper_endpoint",
    "gpd_model_independent",
    "gpd_model_hierarchical",
    "GPDPrior",
    "BayesGPDFit",
    "fit_bayes_gpd",
    "BayesTailValue",
    "bayes_tail_draws",
    "bayes_tail_posterior",
    "bayes_tail_value",
    "BAYES_MODELS",
    "BAYES_INFERENCE",
    "BAYES_STATISTICS",
    "MAX_R_HAT",
    "MIN_ESS",
]
