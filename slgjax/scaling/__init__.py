"""Best-of-N scaling curves: empirical ground truth, tail-model predictions, scorer selection."""

from slgjax.scaling.empirical import empirical_best_of_n, pass_at_k
from slgjax.scaling.predict import MODELS, BestOfNPrediction, predict_best_of_n
from slgjax.scaling.selection import selection_at_n

__all__ = [
    "BestOfNPrediction",
    "MODELS",
    "empirical_best_of_n",
    "pass_at_k",
    "predict_best_of_n",
    "selection_at_n",
]
