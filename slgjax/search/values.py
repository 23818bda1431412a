"""State values for selection: the predicted best-of-N value of each explored state.

A value function maps the estimation rewards of ``K`` states to one number per
state, the estimate ``V_hat_N(s)`` of ``V_N(s) = E[max of N rewards from s]`` or
a proxy of it. Search policies pick the state with the largest value, so every
function here returns ``-inf`` for a state with no valid reward and never NaN.

Built-in values, by name:

- ``"gaussian"``: Gaussian tail fitted by truncated-normal moments,
  ``mu + sigma E_N`` with the exact expected maximum ``E_N`` of N standard
  normals (Li, Qian, Mou 2026, arXiv:2602.01485).
- ``"gaussian_quantile"``: the same fit with ``Phi^-1(1 - 1/N)`` in place of
  ``E_N``, as in the authors' code.
- ``"gpd"``: generalized Pareto tail above a threshold, spliced with the
  empirical distribution below it (``slgjax.tail.gpd_fit`` and
  ``slgjax.tail.gpd_predict``).
- ``"bayes_mean"``, ``"bayes_upper"``, ``"bayes_thompson"``: Bayesian GPD with
  the Laplace approximation; the posterior mean of ``V_N``, its upper
  ``upper_level`` quantile, or one posterior draw (Thompson sampling). These
  need a ``key``.
- ``"empirical_max"``: the largest observed reward.
- ``"mean"``: the mean reward (an ablation that ignores the tail).

A callable ``value(rewards, mask, budget, key) -> float[..., K]`` is used as is;
it must be a pure JAX function and hashable, because it is a static argument
of the compiled decision step. :class:`QoMaxValue` is one such callable.
"""

import dataclasses
import importlib

import jax
import jax.numpy as jnp

from slgjax.tail.gaussian import fit_gaussian_tail, gaussian_tail_value

__all__ = ["QoMaxValue", "VALUE_NAMES", "state_values", "check_value"]

VALUE_NAMES = (
    "gaussian",
    "gaussian_quantile",
    "gpd",
    "bayes_mean",
    "bayes_upper",
    "bayes_thompson",
    "empirical_max",
    "mean",
)

_NEEDS_KEY = ("bayes_mean", "bayes_upper", "bayes_thompson")
_BAYES_STATISTIC = {"bayes_mean": "mean", "bayes_upper": "quantile", "bayes_thompson": "thompson"}


def check_value(value, key=None, *, key_required: bool = True):
    """Raise ``ValueError`` for an unknown value name, or a missing key where one is needed.

    Args:
      value: a name from :data:`VALUE_NAMES` or a callable.
      key: the key the value will receive.
      key_required: False skips the key check, for callers that always pass one.
    """
    if callable(value):
        return
    if value not in VALUE_NAMES:
        raise ValueError(
            f"value={value!r} is unknown; use one of {VALUE_NAMES} or a callable "
            "(rewards, mask, budget, key) -> float[..., K]."
        )
    if key_required and value in _NEEDS_KEY and key is None:
        raise ValueError(f"value={value!r} draws from a posterior and needs a key; pass key=...")


def _empirical_max(rewards, mask):
    return jnp.max(jnp.where(mask, rewards, -jnp.inf), axis=-1)


def _mean(rewards, mask):
    count = jnp.sum(mask, axis=-1)
    total = jnp.sum(jnp.where(mask, rewards, 0.0), axis=-1)
    return total / jnp.maximum(count, 1)


def _gpd_value(rewards, mask, budget, tail_fraction):
    try:
        from slgjax.tail.gpd_fit import fit_gpd
        from slgjax.tail.gpd_predict import gpd_tail_value
    except ImportError as error:
        raise ImportError(
            "value='gpd' needs slgjax.tail.gpd_fit and slgjax.tail.gpd_predict, which are "
            "not available in this installation."
        ) from error
    fit = fit_gpd(rewards, mask, tail_fraction=tail_fraction)
    return gpd_tail_value(fit, rewards, mask, budget)


_BAYES_MODULES = ("slgjax.tail.bayes", "slgjax.tail.bayes_fit", "slgjax.tail.bayes_predict")


def _bayes_functions():
    """Return ``(fit_bayes_gpd, bayes_tail_value)`` from the modules that define them."""
    found = {}
    for name in _BAYES_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        for function in ("fit_bayes_gpd", "bayes_tail_value"):
            if function not in found and hasattr(module, function):
                found[function] = getattr(module, function)
    missing = sorted({"fit_bayes_gpd", "bayes_tail_value"} - set(found))
    if missing:
        raise ImportError(
            f"the Bayesian values need fit_bayes_gpd and bayes_tail_value from one of "
            f"{_BAYES_MODULES}; missing: {missing}."
        )
    return found["fit_bayes_gpd"], found["bayes_tail_value"]


def _bayes_value(rewards, mask, budget, key, statistic, tail_fraction, upper_level):
    fit_bayes_gpd, bayes_tail_value = _bayes_functions()
    fit_key, draw_key = jax.random.split(key)
    fit = fit_bayes_gpd(fit_key, rewards, mask, inference="laplace", tail_fraction=tail_fraction)
    return bayes_tail_value(
        fit, rewards, mask, budget, statistic=statistic, q=upper_level, key=draw_key
    )


def state_values(
    rewards,
    mask=None,
    *,
    value="gaussian",
    budget,
    key=None,
    tail_fraction: float = 0.2,
    upper_level: float = 0.9,
):
    """Compute the value ``V_hat_N`` of each state from its estimation rewards.

    Args:
      rewards: float[..., K, m] estimation rewards; non-finite entries count as
        missing.
      mask: optional bool[..., K, m]; False marks a missing sample.
      value: a name from :data:`VALUE_NAMES` or a callable
        ``(rewards, mask, budget, key) -> float[..., K]``.
      budget: the horizon ``N`` at which the value is predicted, a scalar
        (traced under jit) or an array that broadcasts against ``[...]``.
      key: PRNG key, required by the Bayesian values.
      tail_fraction: share of each state's samples kept in the tail by the
        Gaussian and GPD fits.
      upper_level: posterior quantile used by ``"bayes_upper"``.

    Returns:
      float[..., K]; ``-inf`` for a state with no valid reward and wherever the
      value function returned NaN.
    """
    check_value(value, key)
    rewards = jnp.asarray(rewards)
    if not jnp.issubdtype(rewards.dtype, jnp.floating):
        rewards = rewards.astype(jnp.result_type(float))
    valid = jnp.isfinite(rewards)
    if mask is not None:
        valid = valid & jnp.asarray(mask, bool)
    # Zero the missing entries so that no estimator receives a NaN, even unmasked.
    rewards = jnp.where(valid, rewards, 0.0)
    budget = jnp.asarray(budget, rewards.dtype)

    if callable(value):
        values = value(rewards, valid, budget, key)
    elif value in ("gaussian", "gaussian_quantile"):
        fit = fit_gaussian_tail(rewards, valid, tail_fraction=tail_fraction)
        method = "expected_max" if value == "gaussian" else "quantile"
        values = gaussian_tail_value(fit, budget, method=method)
    elif value == "gpd":
        values = _gpd_value(rewards, valid, budget, tail_fraction)
    elif value in _BAYES_STATISTIC:
        statistic = _BAYES_STATISTIC[value]
        values = _bayes_value(rewards, valid, budget, key, statistic, tail_fraction, upper_level)
    elif value == "empirical_max":
        values = _empirical_max(rewards, valid)
    else:
        values = _mean(rewards, valid)

    values = jnp.asarray(values)
    empty = ~jnp.any(valid, axis=-1)
    return jnp.where(empty | jnp.isnan(values), -jnp.inf, values)


@dataclasses.dataclass(frozen=True)
class QoMaxValue:
    """Quantile of Maxima (QoMax), the statistic of the QoMax-ETC extreme bandit.

    The valid rewards of a state, in the order drawn, are cut into
    ``num_batches`` batches of ``floor(n / num_batches)`` rewards each (``n``
    valid rewards; the remainder is left out). The value is the ``quantile``
    level of the batch maxima (linear interpolation between order statistics).
    A state with fewer valid rewards than batches uses the batches it can
    fill; one with none gets ``-inf``. The budget is ignored.

    Reference: D. Baudry, Y. Russac, E. Kaufmann, "Efficient Algorithms for
    Extreme Bandits", AISTATS 2022, arXiv:2203.10883.

    Attributes:
      num_batches: number of batches ``b >= 1``.
      quantile: level in [0, 1] of the quantile taken over the batch maxima;
        0.5 (the median) by default.
    """

    num_batches: int = 4
    quantile: float = 0.5

    def __post_init__(self):
        if isinstance(self.num_batches, bool) or int(self.num_batches) != self.num_batches:
            raise ValueError(f"num_batches={self.num_batches!r} must be an integer >= 1.")
        if self.num_batches < 1:
            raise ValueError(f"num_batches={self.num_batches} must be an integer >= 1.")
        if not 0.0 <= float(self.quantile) <= 1.0:
            raise ValueError(f"quantile={self.quantile} must lie in [0, 1].")

    def __call__(self, rewards, mask, budget, key):
        del budget, key
        num_batches = self.num_batches

        # Position of each valid reward among the valid ones of its state.
        position = jnp.cumsum(mask, axis=-1) - 1
        count = jnp.sum(mask, axis=-1, keepdims=True)
        filled = jnp.clip(count, 0, num_batches)
        batch_size = jnp.maximum(count // jnp.maximum(filled, 1), 1)
        batch = jnp.where(mask, position // batch_size, num_batches)
        in_batch = mask & (batch < filled)

        one_hot = batch[..., None] == jnp.arange(num_batches)
        members = in_batch[..., None] & one_hot
        maxima = jnp.max(jnp.where(members, rewards[..., None], -jnp.inf), axis=-2)

        # Quantile over the filled batches only: the empty ones sort first as -inf.
        ordered = jnp.sort(maxima, axis=-1)
        num_filled = filled[..., 0]
        start = num_batches - num_filled
        level = self.quantile * jnp.maximum(num_filled - 1, 0)
        low = jnp.floor(level).astype(jnp.int32)
        high = jnp.minimum(low + 1, jnp.maximum(num_filled - 1, 0))
        weight = level - low
        last = num_batches - 1
        low_index = jnp.minimum(start + low, last)[..., None]
        high_index = jnp.minimum(start + high, last)[..., None]
        low_value = jnp.take_along_axis(ordered, low_index, axis=-1)[..., 0]
        high_value = jnp.take_along_axis(ordered, high_index, axis=-1)[..., 0]
        values = low_value + weight * (high_value - low_value)
        return jnp.where(num_filled > 0, jnp.where(weight > 0, values, low_value), -jnp.inf)
