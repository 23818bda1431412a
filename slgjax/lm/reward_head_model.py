"""The reward head, a small network on frozen features, and its training loop.

The head maps a feature vector ``x`` (from :mod:`slgjax.lm.features`) to the
logit of the probability that the response is correct:

.. math::

    z = (x - \\mu) / s, \\qquad
    \\text{logit} = w^\\top z + b \\quad \\text{or} \\quad
    w^\\top \\mathrm{GELU}(W z + c) + b,

where ``mu`` and ``s`` are the per-feature mean and standard deviation of the
training features, stored in the head as non-trainable variables.
:func:`fit_reward_head` minimises the mean logistic loss with AdamW
(Loshchilov and Hutter 2019, arXiv:1711.05101). Files and scoring live in
:mod:`slgjax.lm.reward_head`, which re-exports these names.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from slgjax.lm.sampler import _TRACE_COUNTS

__all__ = ["FeatureStatistic", "FitHistory", "RewardHead", "fit_reward_head"]


class FeatureStatistic(nnx.Variable):
    """A per-feature statistic of the training features (mean or scale), not trained."""


class RewardHead(nnx.Module):
    """Standardize features, then a linear map or a one-hidden-layer GELU MLP to a logit.

    The output layer starts at zero, so an untrained head returns its bias for
    every input; the GELU is the exact (erf) form.

    Args:
      feature_dim: ``D``, the length of one feature vector.
      hidden: width of the hidden layer; 0 makes the head linear.
      rngs: random streams for the hidden layer's initial weights.

    Attributes:
      mean: float32[D] feature means, 0 until set by :func:`fit_reward_head`.
      scale: float32[D] feature standard deviations, 1 until set.
    """

    def __init__(self, feature_dim: int, *, hidden: int = 0, rngs: nnx.Rngs):
        if not isinstance(feature_dim, int | np.integer) or feature_dim < 1:
            raise ValueError(f"feature_dim must be a positive int, got {feature_dim!r}.")
        if not isinstance(hidden, int | np.integer) or hidden < 0:
            raise ValueError(f"hidden must be an int >= 0 (0 for a linear head), got {hidden!r}.")
        self.feature_dim = int(feature_dim)
        self.hidden = int(hidden)
        self.mean = FeatureStatistic(jnp.zeros(self.feature_dim, jnp.float32))
        self.scale = FeatureStatistic(jnp.ones(self.feature_dim, jnp.float32))

        zeros = nnx.initializers.zeros_init()
        if self.hidden == 0:
            self.hidden_layer = None
            self.output = nnx.Linear(self.feature_dim, 1, kernel_init=zeros, rngs=rngs)
        else:
            self.hidden_layer = nnx.Linear(self.feature_dim, self.hidden, rngs=rngs)
            self.output = nnx.Linear(self.hidden, 1, kernel_init=zeros, rngs=rngs)

    def __call__(self, features) -> jax.Array:
        """Return float32[...] logits of float[..., D] features.

        Raises:
          ValueError: if the last axis of ``features`` is not ``feature_dim``.
        """
        features = jnp.asarray(features, jnp.float32)
        if features.ndim == 0 or features.shape[-1] != self.feature_dim:
            raise ValueError(
                f"features of shape {features.shape} do not fit a head for feature_dim="
                f"{self.feature_dim}; pass features of the source the head was trained on."
            )
        x = (features - self.mean[...]) / self.scale[...]
        if self.hidden_layer is not None:
            x = jax.nn.gelu(self.hidden_layer(x), approximate=False)
        return self.output(x)[..., 0]


class FitHistory(NamedTuple):
    """Losses recorded by :func:`fit_reward_head` at each evaluation.

    Attributes:
      steps: int[E] optimizer steps done at each evaluation (every
        ``eval_every`` steps and after the last one).
      train_loss: float[E] mean logistic loss on the whole training set.
      validation_loss: float[E] mean logistic loss on the validation set, or
        None without validation.
      best_step: the step whose parameters the returned head holds: the
        lowest validation loss (the earliest on a tie), or the last step
        without validation.
    """

    steps: np.ndarray
    train_loss: np.ndarray
    validation_loss: np.ndarray | None
    best_step: int


def _check_features(features, name: str) -> np.ndarray:
    array = np.asarray(features)
    if array.ndim != 2 or not (
        np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
    ):
        raise ValueError(
            f"{name} must be a real array of shape [n, D]; got shape {array.shape} and dtype "
            f"{array.dtype}."
        )
    if array.shape[0] == 0:
        raise ValueError(f"{name} has no rows; pass at least one example.")
    array = array.astype(np.float32)
    bad = np.argwhere(~np.isfinite(array))
    if bad.size:
        row, column = (int(i) for i in bad[0])
        raise ValueError(
            f"{name}[{row}, {column}] is {array[row, column]} ({len(bad)} non-finite values in "
            "total); every feature must be finite. Drop those rows or recompute them."
        )
    return array


def _check_labels(labels, rows: int, name: str) -> np.ndarray:
    array = np.asarray(labels)
    if array.shape != (rows,):
        raise ValueError(
            f"{name} has shape {array.shape} but the features have {rows} rows; pass one label "
            "per row."
        )
    if not (array.dtype == bool or np.issubdtype(array.dtype, np.number)):
        raise ValueError(f"{name} must be bool or numeric 0/1 values, got dtype {array.dtype}.")
    values = array.astype(np.float64)
    outside = ~np.isin(values, (0.0, 1.0))
    if np.any(outside):
        index = int(np.argmax(outside))
        raise ValueError(
            f"{name}[{index}] is {array[index].item()!r}; labels must be 0 or 1 (the verifier's "
            "verdict). Threshold graded rewards before fitting."
        )
    return values.astype(np.float32)


def _standardization(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the float32 mean and scale of each feature.

    A feature whose standard deviation is at most ``1e-6 (1 + |mean|)`` is
    treated as constant and gets scale 1, so rounding noise is not blown up.
    """
    mean = features.mean(axis=0, dtype=np.float64)
    std = features.std(axis=0, dtype=np.float64)
    scale = np.where(std > 1e-6 * (1.0 + np.abs(mean)), std, 1.0)
    return mean.astype(np.float32), scale.astype(np.float32)


def _optimizer(learning_rate, weight_decay):
    # Only matrices decay; biases stay free, the usual AdamW practice.
    return optax.adamw(
        learning_rate,
        weight_decay=weight_decay,
        mask=lambda params: jax.tree.map(lambda array: array.ndim >= 2, params),
    )


@functools.partial(jax.jit, static_argnames=("graphdef", "num_steps", "batch_size", "eval_every"))
def _train(
    graphdef,
    params,
    stats,
    features,
    labels,
    validation,
    key,
    learning_rate,
    weight_decay,
    *,
    num_steps: int,
    batch_size: int,
    eval_every: int,
):
    """Run ``num_steps`` AdamW steps in one ``lax.scan``, keeping the best parameters."""
    _TRACE_COUNTS["fit_reward_head"] += 1
    optimizer = _optimizer(learning_rate, weight_decay)
    rows = features.shape[0]

    def mean_loss(params, x, y):
        logits = nnx.merge(graphdef, params, stats)(x)
        return optax.sigmoid_binary_cross_entropy(logits, y).mean()

    def evaluate(params):
        train = mean_loss(params, features, labels)
        held_out = train if validation is None else mean_loss(params, *validation)
        return train, held_out

    def skip(params):
        return jnp.float32(jnp.nan), jnp.float32(jnp.nan)

    def step(carry, index):
        params, opt_state, best_params, best_loss, best_step = carry
        batch = jax.random.permutation(jax.random.fold_in(key, index), rows)[:batch_size]
        gradients = jax.grad(mean_loss)(params, features[batch], labels[batch])
        updates, opt_state = optimizer.update(gradients, opt_state, params)
        params = optax.apply_updates(params, updates)

        done = index + 1
        due = (done % eval_every == 0) | (done == num_steps)
        train, held_out = jax.lax.cond(due, evaluate, skip, params)

        # Without validation the last evaluation always wins, which keeps the final step.
        improved = due & ((held_out < best_loss) | (validation is None))
        best_params = jax.tree.map(
            lambda new, old: jnp.where(improved, new, old), params, best_params
        )
        best_loss = jnp.where(improved, held_out, best_loss)
        best_step = jnp.where(improved, done, best_step)
        return (params, opt_state, best_params, best_loss, best_step), (due, train, held_out)

    carry = (params, optimizer.init(params), params, jnp.float32(jnp.inf), jnp.int32(0))
    carry, (due, train, held_out) = jax.lax.scan(step, carry, jnp.arange(num_steps))
    _, _, best_params, _, best_step = carry
    return best_params, best_step, due, train, held_out


def _check_positive(**values) -> None:
    for name, value in values.items():
        if not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {name}={value!r}.")


def fit_reward_head(
    features,
    labels,
    *,
    key,
    hidden: int = 0,
    learning_rate: float = 1e-3,
    weight_decay: float = 1e-2,
    num_steps: int = 2000,
    batch_size: int = 256,
    validation=None,
    eval_every: int = 50,
) -> tuple[RewardHead, FitHistory]:
    """Fit a :class:`RewardHead` to 0/1 labels by logistic regression on frozen features.

    The features are standardized with the training mean and standard
    deviation, the output bias starts at the logit of the training base rate,
    and AdamW minimises the mean logistic loss
    ``-[y log sigmoid(f(x)) + (1 - y) log sigmoid(-f(x))]`` over minibatches
    of ``batch_size`` rows drawn without replacement (a fresh permutation per
    step, ``fold_in(key, step)``). Weight decay applies to the weight matrices
    only. The whole run is one jit-compiled ``lax.scan``. It traces again for
    a new feature shape, validation shape, ``hidden``, ``num_steps``,
    ``batch_size`` or ``eval_every``, but not for a new learning rate or decay.

    Args:
      features: float[n, D] training features.
      labels: int, float or bool [n] labels, each 0 or 1, both classes present.
      key: PRNG key for the hidden layer's initial weights and the minibatches;
        the result is a deterministic function of it.
      hidden: hidden-layer width; 0 fits a linear head.
      learning_rate: AdamW step size.
      weight_decay: AdamW decoupled weight decay.
      num_steps: optimizer steps.
      batch_size: rows per step, capped at ``n``.
      validation: optional ``(features [n_val, D], labels [n_val])``; the head
        with the lowest validation loss over the evaluations is returned.
      eval_every: steps between evaluations of the losses.

    Returns:
      ``(head, history)``: the fitted head and a :class:`FitHistory`.

    Raises:
      ValueError: for features that are not a finite [n, D] array, labels of
        the wrong length or outside {0, 1}, a single-class training set, a
        validation set whose shapes do not match, or a non-positive setting.
    """
    features = _check_features(features, "features")
    labels = _check_labels(labels, features.shape[0], "labels")
    positives = int(labels.sum())
    if positives in (0, labels.size):
        raise ValueError(
            f"all {labels.size} training labels are {int(labels[0])}; "
            "a reward head needs both correct (1) and incorrect (0) examples."
        )
    if validation is not None:
        if not isinstance(validation, tuple | list) or len(validation) != 2:
            raise ValueError("validation must be a pair (features, labels), or None.")
        val_features = _check_features(validation[0], "validation features")
        if val_features.shape[1] != features.shape[1]:
            raise ValueError(
                f"validation features have {val_features.shape[1]} columns but the training "
                f"features have {features.shape[1]}; compute both with the same source."
            )
        val_labels = _check_labels(validation[1], val_features.shape[0], "validation labels")
        validation = (jnp.asarray(val_features), jnp.asarray(val_labels))
    if not isinstance(hidden, int | np.integer) or hidden < 0:
        raise ValueError(f"hidden must be an int >= 0 (0 for a linear head), got {hidden!r}.")
    _check_positive(num_steps=num_steps, batch_size=batch_size, eval_every=eval_every)
    if not learning_rate > 0 or not weight_decay >= 0:
        raise ValueError(
            f"need learning_rate > 0 and weight_decay >= 0; got {learning_rate=}, {weight_decay=}."
        )

    init_key, batch_key = jax.random.split(key)
    head = RewardHead(features.shape[1], hidden=hidden, rngs=nnx.Rngs(init_key))
    mean, scale = _standardization(features)
    head.mean[...] = jnp.asarray(mean)
    head.scale[...] = jnp.asarray(scale)
    base_rate = positives / labels.size
    head.output.bias[...] = jnp.full((1,), np.log(base_rate / (1.0 - base_rate)), jnp.float32)

    graphdef, params, stats = nnx.split(head, nnx.Param, FeatureStatistic)
    best_params, best_step, due, train, held_out = _train(
        graphdef,
        params,
        stats,
        jnp.asarray(features),
        jnp.asarray(labels),
        validation,
        batch_key,
        jnp.float32(learning_rate),
        jnp.float32(weight_decay),
        num_steps=int(num_steps),
        batch_size=int(min(batch_size, features.shape[0])),
        eval_every=int(eval_every),
    )

    due = np.asarray(due)
    history = FitHistory(
        steps=np.flatnonzero(due) + 1,
        train_loss=np.asarray(train)[due],
        validation_loss=None if validation is None else np.asarray(held_out)[due],
        best_step=int(best_step),
    )
    return nnx.merge(graphdef, best_params, stats), history
