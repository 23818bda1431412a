"""Flax NNX BERT encoder: token ids to last hidden states.

BERT (Devlin et al., 2018, arXiv:1810.04805): word, position and token-type
embeddings summed and layer-normalised, then post-LN blocks
``x = LN(x + attn(x))``, ``x = LN(x + W2 gelu(W1 x))``. Parameter names follow
transformers' ``BertModel``, so ``encoder.layer[3].attention.self.query.kernel``
is the transpose of ``encoder.layer.3.attention.self.query.weight``. The model
is inference-only: there is no dropout.

Shapes: B rows, T tokens, H hidden size.
"""

import dataclasses
import json
import pathlib
from collections.abc import Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from slgjax.lm.config import check_positive_int

__all__ = ["BertConfig", "BertModel", "LayerNorm"]


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Shape and numerics of a BERT encoder.

    Attributes:
        vocab_size: V, rows of the word embedding.
        hidden_size: H, width of the residual stream.
        intermediate_size: width of the feed-forward hidden layer.
        num_layers: L, encoder blocks.
        num_heads: attention heads; ``hidden_size`` must be a multiple of it.
        max_position_embeddings: rows of the absolute position embedding, so the
            maximum input length in tokens.
        type_vocab_size: rows of the token-type (segment) embedding.
        layer_norm_eps: epsilon inside the LayerNorm square root.
        pad_token_id: padding id, or None.
    """

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float
    pad_token_id: int | None = None

    def __post_init__(self):
        for name in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_layers",
            "num_heads",
            "max_position_embeddings",
            "type_vocab_size",
        ):
            check_positive_int(self, name)
        if self.hidden_size % self.num_heads != 0:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not a multiple of num_heads={self.num_heads}."
            )
        if not self.layer_norm_eps > 0:
            raise ValueError(f"layer_norm_eps must be positive, got {self.layer_norm_eps!r}.")

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.hidden_size // self.num_heads

    @classmethod
    def from_hf_config(cls, path_or_dict) -> "BertConfig":
        """Build a config from a Hugging Face ``config.json`` of a BERT model.

        Args:
            path_or_dict: a model directory, the path of a ``config.json``, or the
                parsed dict.

        Raises:
            FileNotFoundError: the directory has no ``config.json``.
            ValueError: the model type, activation or position embedding type is
                not supported.
        """
        if isinstance(path_or_dict, Mapping):
            raw = dict(path_or_dict)
        else:
            path = pathlib.Path(path_or_dict)
            config_file = path / "config.json" if path.is_dir() else path
            if not config_file.is_file():
                raise FileNotFoundError(
                    f"No config.json in {path}: a Hugging Face model directory needs its "
                    "config.json beside model.safetensors."
                )
            raw = json.loads(config_file.read_text())

        model_type = raw.get("model_type")
        if model_type != "bert":
            raise ValueError(f"model_type={model_type!r} is not supported; only 'bert' is.")
        # transformers' "gelu" is the exact erf form; the tanh forms would shift
        # every embedding by about 1e-4.
        activation = raw.get("hidden_act", "gelu")
        if activation != "gelu":
            raise ValueError(
                f"hidden_act={activation!r} is not supported; only 'gelu' (the erf form) is."
            )
        position_type = raw.get("position_embedding_type", "absolute")
        if position_type != "absolute":
            raise ValueError(
                f"position_embedding_type={position_type!r} is not supported; only 'absolute' is."
            )

        return cls(
            vocab_size=raw["vocab_size"],
            hidden_size=raw["hidden_size"],
            intermediate_size=raw["intermediate_size"],
            num_layers=raw["num_hidden_layers"],
            num_heads=raw["num_attention_heads"],
            max_position_embeddings=raw.get("max_position_embeddings", 512),
            type_vocab_size=raw.get("type_vocab_size", 2),
            layer_norm_eps=float(raw.get("layer_norm_eps", 1e-12)),
            pad_token_id=raw.get("pad_token_id"),
        )


class LayerNorm(nnx.Module):
    """``weight * (x - mean) / sqrt(var + eps) + bias`` over the last axis.

    Statistics are computed in float32. The parameters are named ``weight`` and
    ``bias`` as in PyTorch checkpoints (``nnx.LayerNorm`` names them ``scale``
    and ``bias``).
    """

    def __init__(self, size: int, *, eps: float, dtype, param_dtype):
        self.weight = nnx.Param(jnp.ones((size,), param_dtype))
        self.bias = nnx.Param(jnp.zeros((size,), param_dtype))
        self.eps = eps
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        variance = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
        normed = (x32 - mean) * jax.lax.rsqrt(variance + self.eps)
        out = normed * self.weight[...].astype(jnp.float32) + self.bias[...].astype(jnp.float32)
        return out.astype(self.dtype)


def _linear(in_size, out_size, *, dtype, param_dtype, rngs):
    return nnx.Linear(in_size, out_size, dtype=dtype, param_dtype=param_dtype, rngs=rngs)


def _embed(rows, size, *, dtype, param_dtype, rngs):
    return nnx.Embed(rows, size, dtype=dtype, param_dtype=param_dtype, rngs=rngs)


class BertEmbeddings(nnx.Module):
    """Sum of word, absolute position and token-type embeddings, then LayerNorm."""

    def __init__(self, config: BertConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        hidden = config.hidden_size
        self.word_embeddings = _embed(config.vocab_size, hidden, **kw)
        self.position_embeddings = _embed(config.max_position_embeddings, hidden, **kw)
        self.token_type_embeddings = _embed(config.type_vocab_size, hidden, **kw)
        self.LayerNorm = LayerNorm(
            hidden, eps=config.layer_norm_eps, dtype=dtype, param_dtype=param_dtype
        )

    def __call__(self, tokens, token_types):
        positions = jnp.arange(tokens.shape[1])
        x = self.word_embeddings(tokens) + self.position_embeddings(positions)[None]
        return self.LayerNorm(x + self.token_type_embeddings(token_types))


class BertSelfAttention(nnx.Module):
    """Query, key and value projections and scaled dot-product attention."""

    def __init__(self, config: BertConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.query = _linear(config.hidden_size, config.hidden_size, **kw)
        self.key = _linear(config.hidden_size, config.hidden_size, **kw)
        self.value = _linear(config.hidden_size, config.hidden_size, **kw)
        self.config = config
        self.dtype = dtype

    def __call__(self, x, mask):
        batch, steps, _ = x.shape
        heads, head_dim = self.config.num_heads, self.config.head_dim
        q = self.query(x).reshape(batch, steps, heads, head_dim)
        k = self.key(x).reshape(batch, steps, heads, head_dim)
        v = self.value(x).reshape(batch, steps, heads, head_dim)

        scores = jnp.einsum("bthd,bshd->bhts", q, k, preferred_element_type=jnp.float32)
        scores = scores * (head_dim**-0.5)
        scores = jnp.where(mask[:, None, None, :], scores, jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(scores, axis=-1).astype(self.dtype)
        out = jnp.einsum("bhts,bshd->bthd", probs, v)
        return out.reshape(batch, steps, heads * head_dim)


class BertSelfOutput(nnx.Module):
    """Output projection of attention, residual connection, LayerNorm."""

    def __init__(self, config: BertConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        self.dense = _linear(
            config.hidden_size, config.hidden_size, dtype=dtype, param_dtype=param_dtype, rngs=rngs
        )
        self.LayerNorm = LayerNorm(
            config.hidden_size, eps=config.layer_norm_eps, dtype=dtype, param_dtype=param_dtype
        )

    def __call__(self, attended, residual):
        return self.LayerNorm(self.dense(attended) + residual)


class BertAttention(nnx.Module):
    """Self-attention block: ``LN(x + dense(attn(x)))``."""

    def __init__(self, config: BertConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        # "self" mirrors the checkpoint name attention.self.query.
        self.self = BertSelfAttention(config, **kw)
        self.output = BertSelfOutput(config, **kw)

    def __call__(self, x, mask):
        return self.output(self.self(x, mask), x)


class BertIntermediate(nnx.Module):
    """First feed-forward layer with the exact GELU, ``x Phi(x)``."""

    def __init__(self, config: BertConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        self.dense = _linear(
            config.hidden_size,
            config.intermediate_size,
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )

    def __call__(self, x):
        return jax.nn.gelu(self.dense(x), approximate=False)


class BertOutput(nnx.Module):
    """Second feed-forward layer, residual connection, LayerNorm."""

    def __init__(self, config: BertConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        self.dense = _linear(
            config.intermediate_size,
            config.hidden_size,
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        self.LayerNorm = LayerNorm(
            config.hidden_size, eps=config.layer_norm_eps, dtype=dtype, param_dtype=param_dtype
        )

    def __call__(self, hidden, residual):
        return self.LayerNorm(self.dense(hidden) + residual)


class BertLayer(nnx.Module):
    """One post-LN encoder block: attention block, then feed-forward block."""

    def __init__(self, config: BertConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.attention = BertAttention(config, **kw)
        self.intermediate = BertIntermediate(config, **kw)
        self.output = BertOutput(config, **kw)

    def __call__(self, x, mask):
        x = self.attention(x, mask)
        return self.output(self.intermediate(x), x)


class BertEncoder(nnx.Module):
    """The stack of L encoder blocks."""

    def __init__(self, config: BertConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        self.layer = nnx.List(
            [
                BertLayer(config, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
                for _ in range(config.num_layers)
            ]
        )

    def __call__(self, x, mask):
        for layer in self.layer:
            x = layer(x, mask)
        return x


class BertModel(nnx.Module):
    """BERT encoder without the pooler: token ids to last hidden states.

    Args:
        config: the architecture.
        dtype: compute dtype. Attention scores, softmax and LayerNorm statistics
            are always float32. On recent NVIDIA GPUs JAX runs float32 matmuls in
            TF32 by default; wrap calls in ``jax.default_matmul_precision("float32")``
            for full float32.
        param_dtype: storage dtype of the parameters.
        rngs: random streams for the initial parameters.
    """

    def __init__(
        self, config: BertConfig, *, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs
    ):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.embeddings = BertEmbeddings(config, **kw)
        self.encoder = BertEncoder(config, **kw)
        self.config = config

    def __call__(self, tokens, *, valid=None, token_types=None):
        """Encode ``tokens``.

        Args:
            tokens: ``int[B, T]`` token ids, ``T <= max_position_embeddings``.
            valid: ``bool[B, T]``, False at padding; padded keys are masked out.
                Positions are ``0..T-1`` whatever the mask, as in transformers
                without explicit ``position_ids``, so pad on the right. Default
                all True.
            token_types: ``int[B, T]`` segment ids; default all 0.

        Returns:
            Last hidden states ``[B, T, H]`` in the compute dtype. Rows at padded
            positions are computed but carry no meaning.
        """
        if tokens.ndim != 2:
            raise ValueError(f"tokens must have shape [B, T], got shape {tokens.shape}.")
        if tokens.shape[1] > self.config.max_position_embeddings:
            raise ValueError(
                f"{tokens.shape[1]} tokens exceed max_position_embeddings="
                f"{self.config.max_position_embeddings}; truncate the input."
            )
        for name, array in (("valid", valid), ("token_types", token_types)):
            if array is not None and array.shape != tokens.shape:
                raise ValueError(
                    f"{name} has shape {array.shape} but tokens have shape {tokens.shape}."
                )
        if valid is None:
            valid = jnp.ones(tokens.shape, bool)
        valid = valid.astype(bool)
        if token_types is None:
            token_types = jnp.zeros(tokens.shape, jnp.int32)

        # Padded ids may be anything; id 0 keeps their embeddings finite.
        tokens = jnp.where(valid, tokens, 0)
        token_types = jnp.where(valid, token_types, 0)
        x = self.embeddings(tokens, token_types)
        return self.encoder(x, valid)
