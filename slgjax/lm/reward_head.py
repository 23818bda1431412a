"""Reward-head files and the scorer that serves a trained head.

A head (:class:`RewardHead`, fitted by :func:`fit_reward_head`, both defined
in :mod:`slgjax.lm.reward_head_model` and re-exported here) returns the logit
that a verifier accepts a response, from frozen features of
:mod:`slgjax.lm.features`. :func:`save_reward_head` and
:func:`load_reward_head` store it with its metadata in a safetensors file,
:class:`RewardHeadScorer` serves the logit as a reward, and
:func:`build_head_scorer` rebuilds the features a head file was trained on.
"""

import functools
import importlib.resources
import pathlib
from collections.abc import Mapping, Sequence

import jax
import numpy as np
from flax import nnx

from slgjax.lm.checkpoint import assign_tensors, nnx_path_to_hf_name
from slgjax.lm.features import FEATURE_SOURCES, PolicyFeatures, SentenceFeatures
from slgjax.lm.reward_head_model import FeatureStatistic, FitHistory, RewardHead, fit_reward_head
from slgjax.lm.scorers import _check_pairs

__all__ = [
    "DEFAULT_HEAD_FILE",
    "FeatureStatistic",
    "FitHistory",
    "METADATA_KEYS",
    "REGENERATE_COMMAND",
    "RewardHead",
    "RewardHeadScorer",
    "build_head_scorer",
    "default_reward_head_path",
    "fit_reward_head",
    "load_reward_head",
    "save_reward_head",
]

DEFAULT_HEAD_FILE = "reward_head.safetensors"
REGENERATE_COMMAND = "python experiments/train_reward_head.py"
# Metadata every head file carries; feature_dim and hidden come from the head itself.
METADATA_KEYS = ("feature_source", "feature_dim", "hidden", "template", "policy")
_FORMAT = "slgjax-reward-head"
_FORMAT_VERSION = "1"


def default_reward_head_path() -> pathlib.Path:
    """Return the path of the head shipped in the package, ``slgjax/data/reward_head.safetensors``.

    The file may be missing; :func:`load_reward_head` then raises an error that
    names the command which regenerates it.
    """
    return pathlib.Path(str(importlib.resources.files("slgjax") / "data" / DEFAULT_HEAD_FILE))


def _complete_metadata(head: RewardHead, metadata: Mapping[str, str]) -> dict[str, str]:
    """Add feature_dim, hidden and the format tag; check the caller's keys and values."""
    bad = {key: value for key, value in metadata.items() if not isinstance(value, str)}
    if bad or not all(isinstance(key, str) for key in metadata):
        raise ValueError(
            f"metadata must map str to str (safetensors stores only strings); got {bad}."
        )
    completed = dict(metadata)
    for key, value in (("feature_dim", head.feature_dim), ("hidden", head.hidden)):
        if key in completed and completed[key] != str(value):
            raise ValueError(
                f"metadata[{key!r}]={completed[key]!r} disagrees with the head's {key}={value}; "
                "leave it out and the head's value is stored."
            )
        completed[key] = str(value)

    missing = [key for key in METADATA_KEYS if key not in completed]
    if missing:
        raise ValueError(
            f"metadata lacks {missing}; a head file stores {list(METADATA_KEYS)} so the "
            "scorer can rebuild its features."
        )
    if completed["feature_source"] not in FEATURE_SOURCES:
        raise ValueError(
            f"metadata['feature_source']={completed['feature_source']!r} is unknown; use one "
            f"of {FEATURE_SOURCES}."
        )
    completed.update(format=_FORMAT, format_version=_FORMAT_VERSION)
    return completed


def save_reward_head(path, head: RewardHead, metadata: Mapping[str, str]) -> None:
    """Write ``head`` and its metadata to a safetensors file, atomically.

    Tensors are named as in a PyTorch state dict (``output.weight`` of shape
    ``[1, D]``, ``mean``, ``scale``). Missing parent folders are created, and
    the file is written to a temporary file in the same folder, which then
    replaces ``path``.

    Args:
      path: the file to write.
      head: the trained head.
      metadata: str values for at least feature_source (one of
        :data:`~slgjax.lm.features.FEATURE_SOURCES`), template and policy; the
        head's feature_dim and hidden are added.

    Raises:
      ValueError: for a missing metadata key, a non-str value or an unknown
        feature source.
    """
    import safetensors.numpy

    from slgjax.io import write_atomic

    completed = _complete_metadata(head, metadata)
    tensors = {}
    for variable_path, variable in nnx.to_flat_state(nnx.state(head)):
        name, transpose = nnx_path_to_hf_name(variable_path)
        array = np.asarray(variable.get_value())
        tensors[name] = np.ascontiguousarray(array.T if transpose else array)

    data = safetensors.numpy.save(tensors, metadata=completed)
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda stream: stream.write(data), binary=True)


def _parse_int(metadata: Mapping[str, str], key: str, path) -> int:
    try:
        return int(metadata[key])
    except ValueError:
        raise ValueError(f"{path}: metadata {key}={metadata[key]!r} is not an integer.") from None


def load_reward_head(path=None) -> tuple[RewardHead, dict[str, str]]:
    """Read a head written by :func:`save_reward_head`.

    Args:
      path: a ``.safetensors`` head file; None reads the packaged head
        (:func:`default_reward_head_path`).

    Returns:
      ``(head, metadata)``; the parameters equal the saved ones bit for bit.

    Raises:
      FileNotFoundError: the file does not exist; the message gives the
        command that regenerates the packaged head.
      ValueError: the file is not a reward-head file, or a tensor is missing
        or mis-shaped (the message names it).
    """
    from safetensors import safe_open

    path = default_reward_head_path() if path is None else pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"No reward head at {path}. Regenerate it with `{REGENERATE_COMMAND}`, or pass "
            "the path of a head file written by save_reward_head."
        )

    with safe_open(path, framework="numpy") as handle:
        metadata = dict(handle.metadata() or {})
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    if metadata.get("format") != _FORMAT:
        raise ValueError(
            f"{path} is not a reward-head file (its metadata has format="
            f"{metadata.get('format')!r}, expected {_FORMAT!r}); write heads with "
            "save_reward_head."
        )
    missing = [key for key in METADATA_KEYS if key not in metadata]
    if missing:
        raise ValueError(f"{path}: the metadata lacks {missing}; regenerate the head file.")

    feature_dim = _parse_int(metadata, "feature_dim", path)
    hidden = _parse_int(metadata, "hidden", path)
    abstract = nnx.eval_shape(lambda: RewardHead(feature_dim, hidden=hidden, rngs=nnx.Rngs(0)))
    try:
        head = assign_tensors(abstract, tensors.items())
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error
    return head, metadata


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _head_logits(graphdef, state, features):
    return nnx.merge(graphdef, state)(features)


class RewardHeadScorer:
    """Score (prompt, response) pairs with a trained head on frozen features.

    Follows the :class:`~slgjax.lm.scorers.Scorer` protocol; the score is the
    head's logit, so ``sigmoid(score)`` estimates the probability that the
    verifier accepts the response. Prompts are the bare question texts.

    Args:
      features: a :class:`~slgjax.lm.features.PolicyFeatures` or
        :class:`~slgjax.lm.features.SentenceFeatures` (anything with
        ``source``, ``feature_dim`` and ``__call__(questions, responses)``).
      head: the trained :class:`RewardHead`.
      metadata: the head file's metadata; when given, its feature_source must
        equal ``features.source``.

    Raises:
      ValueError: if the feature size or the feature source differs from the
        head's.
    """

    def __init__(self, features, head: RewardHead, *, metadata: Mapping[str, str] | None = None):
        if features.feature_dim != head.feature_dim:
            raise ValueError(
                f"the features have {features.feature_dim} dimensions (source "
                f"{features.source!r}) but the head expects {head.feature_dim}; use the policy "
                "or encoder the head was trained on, or retrain the head on these features."
            )
        if metadata is not None and metadata.get("feature_source") != features.source:
            raise ValueError(
                f"the head was trained on {metadata.get('feature_source')!r} features but these "
                f"are {features.source!r} features (both {head.feature_dim} dimensions); build "
                "the features the head was trained on, or retrain the head."
            )
        self.features = features
        self.head = head
        self.metadata = dict(metadata or {})
        self._graphdef, self._state = nnx.split(head)

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """Return float32[n] logits of the head."""
        _check_pairs(prompts, responses)
        if not len(prompts):
            return np.zeros(0, np.float32)
        features = self.features(prompts, responses)

        # Rows padded to a power of two: one trace per bucket, not per call size.
        rows = len(prompts)
        padded = np.zeros((max(8, 1 << (rows - 1).bit_length()), features.shape[1]), np.float32)
        padded[:rows] = features
        logits = _head_logits(self._graphdef, self._state, padded)
        return np.asarray(logits[:rows], np.float32)


def build_head_scorer(policy, tokenizer, path=None, *, batch_size: int = 16) -> RewardHeadScorer:
    """Load a head file and build its features and scorer.

    A head on ``"policy"`` features reads the given policy's hidden states,
    with the template and optional system message stored in the head's
    metadata. A head on ``"minilm"`` features loads the packaged
    all-MiniLM-L6-v2 encoder.

    Args:
      policy: the loaded policy (:class:`~slgjax.lm.llama.LlamaForCausalLM`).
      tokenizer: its tokenizer.
      path: the head file; None reads the packaged head.
      batch_size: rows per forward pass of the feature model.

    Raises:
      FileNotFoundError: the head file or the sentence encoder is missing.
      ValueError: the file is not a head file, its feature source is unknown,
        or the policy's hidden size differs from the head's feature size.
    """
    head, metadata = load_reward_head(path)
    source = metadata["feature_source"]
    if source == "policy":
        features = PolicyFeatures(
            policy,
            tokenizer,
            template=metadata["template"],
            system=metadata.get("system"),
            batch_size=batch_size,
        )
    elif source == "minilm":
        from slgjax.lm.bert_checkpoint import load_sentence_encoder

        features = SentenceFeatures(load_sentence_encoder(), batch_size=batch_size)
    else:
        raise ValueError(
            f"the head's feature_source={source!r} is unknown; use one of {FEATURE_SOURCES}."
        )
    return RewardHeadScorer(features, head, metadata=metadata)
