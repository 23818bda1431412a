"""Best-of-N scaling curves: empirical ground truth and tail-model predictions."""

from slgjax.scaling.empirical import empirical_best_of_n, pass_at_k
from slgjax.scaling.predict import MODELS, BestOfNPrediction, predict_best_of_n

__all__ = ["BestOfNPrediction", "MODELS", "empirical_best_of_n", "pass_at_k", "predict_best_of_n"]
