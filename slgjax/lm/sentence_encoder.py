"""Sentence embeddings from a BERT encoder, as sentence-transformers computes them.

:class:`SentenceEncoder` reproduces a sentence-transformers pipeline (Reimers and
Gurevych, 2019, arXiv:1908.10084): tokenize with truncation, run the encoder,
pool the token states of each text, and optionally L2-normalise.

Shapes: B rows, T tokens, H hidden size.
"""

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from slgjax.lm.bert import BertModel

__all__ = [
    "POOLING_MODES",
    "pooling_mode_from_config",
    "pool_tokens",
    "l2_normalize",
    "SentenceEncoder",
]

# Keys of a legacy sentence-transformers 1_Pooling/config.json and the mode each one sets.
_LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
POOLING_MODES = ("mean", "cls", "max", "mean_sqrt_len_tokens")
_MIN_BUCKET = 8


def pooling_mode_from_config(raw: Mapping) -> str:
    """Read the pooling mode of a sentence-transformers ``1_Pooling/config.json``.

    Accepts the legacy form (one ``pooling_mode_*`` boolean per mode) and the
    newer ``"pooling_mode": "mean"`` form.

    Raises:
        ValueError: no mode, several modes (sentence-transformers concatenates
            them), or a mode outside :data:`POOLING_MODES` is requested.
    """
    if "pooling_mode" in raw:
        requested = raw["pooling_mode"]
        modes = [requested] if isinstance(requested, str) else list(requested)
    else:
        modes = [mode for key, mode in _LEGACY_POOLING_KEYS.items() if raw.get(key)]

    if len(modes) != 1:
        raise ValueError(
            f"The pooling config requests the modes {modes}; exactly one mode is "
            f"supported, one of {', '.join(POOLING_MODES)}."
        )
    if modes[0] not in POOLING_MODES:
        raise ValueError(
            f"pooling mode {modes[0]!r} is not implemented; implemented: "
            f"{', '.join(POOLING_MODES)}."
        )
    return modes[0]


def pool_tokens(hidden: jax.Array, valid: jax.Array, *, mode: str) -> jax.Array:
    """Pool the token states of each row into one vector.

    With ``n`` the number of valid tokens of a row:
    ``mean = sum_t h_t / max(n, 1e-9)``, ``mean_sqrt_len_tokens = sum_t h_t /
    sqrt(max(n, 1e-9))``, ``max`` the elementwise maximum over valid tokens and
    ``cls`` the state of the first valid token, as sentence-transformers' Pooling
    module computes them.

    Args:
        hidden: ``[B, T, H]`` token states.
        valid: ``bool[B, T]``.
        mode: one of :data:`POOLING_MODES`.

    Returns:
        ``float32[B, H]``. A row without valid tokens gets zeros from the mean
        modes, the float32 minimum from ``max`` and position 0 from ``cls``.
    """
    if mode not in POOLING_MODES:
        raise ValueError(f"mode={mode!r} is not implemented; implemented: {POOLING_MODES}.")
    hidden = hidden.astype(jnp.float32)
    valid = valid.astype(bool)

    if mode == "cls":
        first = jnp.argmax(valid, axis=1)
        return jnp.take_along_axis(hidden, first[:, None, None], axis=1)[:, 0]
    if mode == "max":
        masked = jnp.where(valid[..., None], hidden, jnp.finfo(jnp.float32).min)
        return masked.max(axis=1)

    weights = valid.astype(jnp.float32)[..., None]
    total = (hidden * weights).sum(axis=1)
    count = jnp.maximum(weights.sum(axis=1), 1e-9)
    if mode == "mean_sqrt_len_tokens":
        return total / jnp.sqrt(count)
    return total / count


def l2_normalize(x: jax.Array, *, eps: float = 1e-12) -> jax.Array:
    """Return ``x / max(||x||_2, eps)`` along the last axis (``torch.nn.functional.normalize``)."""
    norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True))
    return x / jnp.maximum(norm, eps)


def _bucket(size: int, *, floor: int, cap: int) -> int:
    """Return the smallest power of two >= ``size`` and >= ``floor``, capped at ``cap``."""
    bucket = max(floor, 1 << max(size - 1, 0).bit_length())
    return min(bucket, cap)


class SentenceEncoder:
    """Embed texts with a BERT encoder, token pooling and optional L2 normalisation.

    Inputs are padded to power-of-two buckets in both rows and tokens (from 8
    tokens up to ``max_length``), so the jit-compiled embedding function is traced
    once per ``(rows, tokens)`` bucket rather than once per text length.

    Args:
        model: the encoder.
        tokenizer: a ``tokenizers.Tokenizer`` whose post-processor adds the
            special tokens (``[CLS] ... [SEP]`` for BERT). A copy is configured
            to truncate and not to pad; the caller's object is left unchanged.
        max_length: maximum input length in tokens, special tokens included.
            Longer texts are truncated at the end, as in sentence-transformers.
        pooling: one of :data:`POOLING_MODES`.
        normalize: L2-normalise the pooled vectors.
        lowercase: lowercase texts before tokenizing (sentence-transformers'
            ``do_lower_case``).
    """

    def __init__(
        self,
        model: BertModel,
        tokenizer,
        *,
        max_length: int,
        pooling: str = "mean",
        normalize: bool = True,
        lowercase: bool = False,
    ):
        if pooling not in POOLING_MODES:
            raise ValueError(
                f"pooling={pooling!r} is not implemented; implemented: {POOLING_MODES}."
            )
        limit = model.config.max_position_embeddings
        if not 2 < max_length <= limit:
            raise ValueError(
                f"max_length={max_length} must be in [3, max_position_embeddings={limit}]."
            )

        self.model = model
        self.max_length = max_length
        self.pooling = pooling
        self.normalize = normalize
        self.lowercase = lowercase
        self.trace_count = 0

        self._tokenizer = type(tokenizer).from_str(tokenizer.to_str())
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=max_length)

        # The parameters are captured here; later changes to `model` are not seen.
        graphdef, self._state = nnx.split(model)

        def embed(state, tokens, valid, token_types):
            # Runs once per trace, so the count is the number of compiled shapes.
            self.trace_count += 1
            encoder = nnx.merge(graphdef, state)
            hidden = encoder(tokens, valid=valid, token_types=token_types)
            pooled = pool_tokens(hidden, valid, mode=pooling)
            return l2_normalize(pooled) if normalize else pooled

        self._embed = jax.jit(embed)

    @property
    def embedding_dim(self) -> int:
        """Length of one embedding."""
        return self.model.config.hidden_size

    def embed(self, tokens, valid, token_types=None) -> jax.Array:
        """Embed already tokenized, right-padded rows (jit-compiled per shape).

        Args:
            tokens: ``int32[B, T]``.
            valid: ``bool[B, T]``.
            token_types: ``int32[B, T]``; default all 0.

        Returns:
            ``float32[B, H]``.
        """
        tokens = jnp.asarray(tokens, jnp.int32)
        if token_types is None:
            token_types = jnp.zeros(tokens.shape, jnp.int32)
        return self._embed(self._state, tokens, jnp.asarray(valid, bool), token_types)

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, special tokens added and truncated to ``max_length``."""
        return [encoding.ids for encoding in self._encode_batch(_check_texts(texts))]

    def _encode_batch(self, texts: list[str]):
        if self.lowercase:
            texts = [text.lower() for text in texts]
        return self._tokenizer.encode_batch(texts)

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Embed ``texts``.

        Texts are sorted by token count, so each batch pads to a short bucket,
        and the embeddings are returned in the input order.

        Args:
            texts: the texts (a list, not a single string).
            batch_size: texts per forward pass.

        Returns:
            ``float32[n, H]``, one row per text.
        """
        texts = _check_texts(texts)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
        encodings = self._encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids), reverse=True)
        out = np.zeros((len(texts), self.embedding_dim), np.float32)

        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            longest = max(len(encodings[i].ids) for i in rows)
            width = _bucket(longest, floor=_MIN_BUCKET, cap=self.max_length)
            height = _bucket(len(rows), floor=1, cap=batch_size)
            tokens = np.zeros((height, width), np.int32)
            types = np.zeros((height, width), np.int32)
            valid = np.zeros((height, width), bool)
            for row, index in enumerate(rows):
                encoding = encodings[index]
                length = len(encoding.ids)
                tokens[row, :length] = encoding.ids
                types[row, :length] = encoding.type_ids
                valid[row, :length] = True

            embedded = self.embed(tokens, valid, types)
            out[rows] = np.asarray(embedded[: len(rows)])
        return out


def _check_texts(texts) -> list[str]:
    if isinstance(texts, str):
        raise ValueError("texts must be a list of strings, got one str; pass [text] instead.")
    texts = list(texts)
    bad = [type(text).__name__ for text in texts if not isinstance(text, str)]
    if bad:
        raise ValueError(f"texts must all be str, got {len(bad)} of type(s) {sorted(set(bad))}.")
    return texts
