"""slgjax: reward-tail estimation, best-of-N prediction and scaling-law guided search in JAX.

Subpackages: :mod:`slgjax.tail` (tail models), :mod:`slgjax.scaling`
(predicted and empirical best-of-N curves), :mod:`slgjax.search` (allocation
algorithms and the decision step), :mod:`slgjax.envs` (simulated, replay and
live environments), :mod:`slgjax.lm` (Flax NNX models, sampler, scorers) and
:mod:`slgjax.tasks` (datasets and grading). The statistical core is
re-exported here; the model and task layers are imported from their
subpackages because they load heavier dependencies.
"""

from slgjax.scaling import BestOfNPrediction, empirical_best_of_n, pass_at_k, predict_best_of_n
from slgjax.search import ALGORITHMS, run_search, select_state, state_values
from slgjax.tail import (
    GaussianTailFit,
    GPDFit,
    Status,
    expected_max_std_normal,
    fit_bayes_gpd,
    fit_gaussian_tail,
    fit_gpd,
    gaussian_tail_value,
    gpd_tail_value,
)

__version__ = "0.1.0"

__all__ = [
    "ALGORITHMS",
    "BestOfNPrediction",
    "GPDFit",
    "GaussianTailFit",
    "Status",
    "empirical_best_of_n",
    "expected_max_std_normal",
    "fit_bayes_gpd",
    "fit_gaussian_tail",
    "fit_gpd",
    "gaussian_tail_value",
    "gpd_tail_value",
    "pass_at_k",
    "predict_best_of_n",
    "run_search",
    "select_state",
    "state_values",
]
