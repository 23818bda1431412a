"""Flax NNX decoder of the Llama family (Llama 2/3, SmolLM2, Qwen2/2.5).

Pre-norm decoder blocks with RMSNorm (Zhang and Sennrich, 2019,
arXiv:1910.07467), rotary position embeddings (Su et al., 2021,
arXiv:2104.09864) in the "rotate half" layout of Hugging Face checkpoints,
grouped-query attention (Ainslie et al., 2023, arXiv:2305.13245) and a SwiGLU
MLP (Shazeer, 2020, arXiv:2002.05202). Parameter names follow the Hugging Face
module names, so ``model.layers[3].self_attn.q_proj.kernel`` is the transpose
of ``model.layers.3.self_attn.q_proj.weight``.

Shapes: B rows, T new tokens, S cache capacity, L layers, H query heads,
H_kv key/value heads, D head size, V vocabulary.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from slgjax.lm.config import LlamaConfig

__all__ = [
    "KVCache",
    "init_cache",
    "rope_inverse_frequencies",
    "RMSNorm",
    "LlamaAttention",
    "LlamaMLP",
    "LlamaDecoderLayer",
    "LlamaModel",
    "LlamaForCausalLM",
    "LlamaForSequenceClassification",
]


class KVCache(NamedTuple):
    """Keys and values of every layer for the tokens seen so far.

    Attributes:
        k: keys after RoPE, ``[L, B, S, H_kv, D]``.
        v: values, ``[L, B, S, H_kv, D]``.
        length: ``int32[B]``, the number of leading slots of each row that hold
            valid tokens; the next token of row b goes to slot ``length[b]``.
    """

    k: jax.Array
    v: jax.Array
    length: jax.Array


def init_cache(config: LlamaConfig, *, batch_size: int, max_length: int, dtype) -> KVCache:
    """Allocate an empty cache of ``max_length`` slots per row, filled with zeros."""
    if batch_size < 1 or max_length < 1:
        raise ValueError(
            f"batch_size={batch_size} and max_length={max_length} must both be positive."
        )
    shape = (config.num_layers, batch_size, max_length, config.num_kv_heads, config.head_dim)
    return KVCache(
        k=jnp.zeros(shape, dtype),
        v=jnp.zeros(shape, dtype),
        length=jnp.zeros((batch_size,), jnp.int32),
    )


def rope_inverse_frequencies(config: LlamaConfig) -> np.ndarray:
    """Return the D/2 RoPE inverse frequencies of ``config``, scaling included.

    Unscaled: ``inv_freq_i = rope_theta ** (-2 i / D)``. Linear scaling divides
    every frequency by ``factor``. Llama 3.1 scaling divides the frequencies whose
    wavelength ``2 pi / inv_freq`` exceeds ``original / low_freq_factor`` by
    ``factor``, keeps those below ``original / high_freq_factor``, and in between
    mixes the two with weight ``s = (original / wavelength - low) / (high - low)``:
    ``inv_freq * ((1 - s) / factor + s)``. The ``freq_factors`` form divides each
    frequency by its own stored factor.
    """
    exponents = np.arange(0, config.head_dim, 2, dtype=np.float32) / np.float32(config.head_dim)
    inv_freq = 1.0 / np.power(np.float32(config.rope_theta), exponents)
    scaling = config.rope_scaling_dict
    rope_type = scaling.get("rope_type")

    if rope_type == "linear":
        inv_freq = inv_freq / np.float32(scaling["factor"])
    elif rope_type == "freq_factors":
        inv_freq = inv_freq / np.asarray(scaling["factors"], np.float32)
    elif rope_type == "llama3":
        factor = scaling["factor"]
        original = scaling["original_max_position_embeddings"]
        low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
        wavelength = 2 * np.pi / inv_freq
        smooth = (original / wavelength - low) / (high - low)
        mixed = (1 - smooth) * inv_freq / factor + smooth * inv_freq
        scaled = np.where(wavelength > original / low, inv_freq / factor, mixed)
        inv_freq = np.where(wavelength < original / high, inv_freq, scaled)

    return inv_freq.astype(np.float32)


def _rope_tables(config: LlamaConfig, positions: jax.Array, dtype) -> tuple[jax.Array, jax.Array]:
    """Cosine and sine tables ``[B, T, 1, D]`` for integer ``positions [B, T]``."""
    inv_freq = jnp.asarray(rope_inverse_frequencies(config))
    angles = positions.astype(jnp.float32)[..., None] * inv_freq
    angles = jnp.concatenate([angles, angles], axis=-1)[:, :, None, :]
    return jnp.cos(angles).astype(dtype), jnp.sin(angles).astype(dtype)


def _apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotate ``x [B, T, heads, D]``; pairs are (i, i + D/2), as in HF checkpoints."""
    first, second = jnp.split(x, 2, axis=-1)
    rotated = jnp.concatenate([-second, first], axis=-1)
    return x * cos + rotated * sin


class RMSNorm(nnx.Module):
    """Root-mean-square normalisation: ``weight * x / sqrt(mean(x^2) + eps)``.

    The statistic is computed in float32 and the normalised value is cast back to
    the compute dtype before the weight multiplies it, as transformers does.
    """

    def __init__(self, size: int, *, eps: float, dtype, param_dtype):
        self.weight = nnx.Param(jnp.ones((size,), param_dtype))
        self.eps = eps
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        variance = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
        normed = (x32 * jax.lax.rsqrt(variance + self.eps)).astype(self.dtype)
        return self.weight[...].astype(self.dtype) * normed


def _linear(in_size, out_size, *, bias, dtype, param_dtype, rngs):
    return nnx.Linear(
        in_size, out_size, use_bias=bias, dtype=dtype, param_dtype=param_dtype, rngs=rngs
    )


class LlamaAttention(nnx.Module):
    """Causal grouped-query self-attention with RoPE and an optional KV cache."""

    def __init__(self, config: LlamaConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        hidden, heads, kv_heads, head_dim = (
            config.hidden_size,
            config.num_heads,
            config.num_kv_heads,
            config.head_dim,
        )
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.q_proj = _linear(hidden, heads * head_dim, bias=config.attention_bias, **kw)
        self.k_proj = _linear(hidden, kv_heads * head_dim, bias=config.attention_bias, **kw)
        self.v_proj = _linear(hidden, kv_heads * head_dim, bias=config.attention_bias, **kw)
        self.o_proj = _linear(heads * head_dim, hidden, bias=config.attention_out_bias, **kw)
        self.config = config
        self.dtype = dtype

    def __call__(self, x, *, cos, sin, mask, kv=None, layer=None, slots=None):
        """Attend from ``x [B, T, hidden]``.

        Args:
            x: input of the block.
            cos, sin: RoPE tables ``[B, T, 1, D]``.
            mask: ``bool[B, T, S']``, True where a query may see a key; S' is T
                without a cache and S with one.
            kv: None, or the cache arrays ``(k, v)`` of all layers.
            layer: index of this layer in ``kv``.
            slots: ``int32[B, T]``, the cache slot of each new token.

        Returns:
            The output ``[B, T, hidden]`` and ``kv`` with this layer's keys and
            values written (None without a cache).
        """
        config = self.config
        batch, steps, _ = x.shape
        heads, kv_heads, head_dim = config.num_heads, config.num_kv_heads, config.head_dim

        q = self.q_proj(x).reshape(batch, steps, heads, head_dim)
        k = self.k_proj(x).reshape(batch, steps, kv_heads, head_dim)
        v = self.v_proj(x).reshape(batch, steps, kv_heads, head_dim)
        q = _apply_rope(q, cos, sin)
        k = _apply_rope(k, cos, sin)

        if kv is not None:
            cache_k, cache_v = kv
            rows = jnp.arange(batch)[:, None]
            # mode="drop" discards writes past the capacity instead of clamping
            # them onto the last slot, so earlier slots are never overwritten.
            cache_k = cache_k.at[layer, rows, slots].set(k.astype(cache_k.dtype), mode="drop")
            cache_v = cache_v.at[layer, rows, slots].set(v.astype(cache_v.dtype), mode="drop")
            k = cache_k[layer].astype(self.dtype)
            v = cache_v[layer].astype(self.dtype)
            kv = (cache_k, cache_v)

        q = q.reshape(batch, steps, kv_heads, config.num_groups, head_dim)
        scores = jnp.einsum("btkgd,bskd->bkgts", q, k, preferred_element_type=jnp.float32)
        scores = scores * (head_dim**-0.5)
        scores = jnp.where(mask[:, None, None, :, :], scores, jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(scores, axis=-1).astype(self.dtype)
        out = jnp.einsum("bkgts,bskd->btkgd", probs, v)
        out = out.reshape(batch, steps, heads * head_dim)
        return self.o_proj(out), kv


class LlamaMLP(nnx.Module):
    """SwiGLU feed-forward block: ``down(silu(gate(x)) * up(x))``."""

    def __init__(self, config: LlamaConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(bias=config.mlp_bias, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.gate_proj = _linear(config.hidden_size, config.intermediate_size, **kw)
        self.up_proj = _linear(config.hidden_size, config.intermediate_size, **kw)
        self.down_proj = _linear(config.intermediate_size, config.hidden_size, **kw)

    def __call__(self, x):
        return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nnx.Module):
    """Pre-norm block: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``."""

    def __init__(self, config: LlamaConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype)
        self.input_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps, **kw)
        self.self_attn = LlamaAttention(config, rngs=rngs, **kw)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps, **kw)
        self.mlp = LlamaMLP(config, rngs=rngs, **kw)

    def __call__(self, x, *, cos, sin, mask, kv=None, layer=None, slots=None):
        attended, kv = self.self_attn(
            self.input_layernorm(x), cos=cos, sin=sin, mask=mask, kv=kv, layer=layer, slots=slots
        )
        x = x + attended
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x, kv


def _check_inputs(tokens, valid, cache):
    if tokens.ndim != 2:
        raise ValueError(f"tokens must have shape [B, T], got shape {tokens.shape}.")
    if not jnp.issubdtype(tokens.dtype, jnp.integer):
        raise ValueError(f"tokens must be integer ids, got dtype {tokens.dtype}.")
    if valid is not None and valid.shape != tokens.shape:
        raise ValueError(
            f"valid has shape {valid.shape} but tokens have shape {tokens.shape}; "
            "pass one bool per token."
        )
    if cache is not None and cache.length.shape != tokens.shape[:1]:
        raise ValueError(
            f"the cache holds {cache.length.shape[0]} rows but tokens have "
            f"{tokens.shape[0]}; allocate it with init_cache(batch_size={tokens.shape[0]})."
        )


class LlamaModel(nnx.Module):
    """Token embedding, decoder blocks and the final RMSNorm."""

    def __init__(self, config: LlamaConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        self.embed_tokens = nnx.Embed(
            config.vocab_size, config.hidden_size, dtype=dtype, param_dtype=param_dtype, rngs=rngs
        )
        self.layers = nnx.List(
            [
                LlamaDecoderLayer(config, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
                for _ in range(config.num_layers)
            ]
        )
        self.norm = RMSNorm(
            config.hidden_size, eps=config.rms_norm_eps, dtype=dtype, param_dtype=param_dtype
        )
        self.config = config
        self.dtype = dtype

    def __call__(self, tokens, *, cache: KVCache | None = None, valid=None):
        """Return the final hidden states ``[B, T, hidden]`` and the updated cache.

        See :meth:`LlamaForCausalLM.__call__` for the meaning of the arguments.
        """
        _check_inputs(tokens, valid, cache)
        batch, steps = tokens.shape
        if valid is None:
            valid = jnp.ones((batch, steps), bool)
        valid = valid.astype(bool)

        offsets = jnp.arange(steps, dtype=jnp.int32)
        if cache is None:
            positions = jnp.broadcast_to(offsets, (batch, steps))
            key_slots = offsets
            mask = (key_slots[None, None, :] <= positions[:, :, None]) & valid[:, None, :]
            kv = None
        else:
            positions = cache.length[:, None] + offsets
            key_slots = jnp.arange(cache.k.shape[2], dtype=jnp.int32)
            mask = key_slots[None, None, :] <= positions[:, :, None]
            kv = (cache.k, cache.v)

        # Padded ids may be anything (-1 included); id 0 keeps their keys and
        # values finite, so a zero attention weight times a value stays zero.
        tokens = jnp.where(valid, tokens, 0)
        cos, sin = _rope_tables(self.config, positions, self.dtype)
        x = self.embed_tokens(tokens)
        for index, layer in enumerate(self.layers):
            x, kv = layer(x, cos=cos, sin=sin, mask=mask, kv=kv, layer=index, slots=positions)
        x = self.norm(x)

        if cache is None:
            return x, None
        length = cache.length + valid.sum(axis=-1, dtype=jnp.int32)
        return x, KVCache(k=kv[0], v=kv[1], length=length)


class LlamaForCausalLM(nnx.Module):
    """Decoder with a language-model head (tied to the embedding when configured).

    Args:
        config: the architecture.
        dtype: compute dtype (float32 or bfloat16). Attention scores, softmax,
            RMSNorm statistics and the logits are always float32. On recent
            NVIDIA GPUs JAX runs float32 matmuls in TF32 by default; wrap calls in
            ``jax.default_matmul_precision("float32")`` for full float32.
        param_dtype: storage dtype of the parameters.
        rngs: random streams for the initial parameters.
    """

    def __init__(
        self, config: LlamaConfig, *, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs
    ):
        self.config = config
        self.dtype = dtype
        self.model = LlamaModel(config, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        if config.tie_word_embeddings:
            self.lm_head = None
        else:
            self.lm_head = nnx.Linear(
                config.hidden_size,
                config.vocab_size,
                use_bias=False,
                dtype=dtype,
                param_dtype=param_dtype,
                preferred_element_type=jnp.float32,
                rngs=rngs,
            )

    def __call__(self, tokens, *, cache: KVCache | None = None, valid=None, return_hidden=False):
        """Compute next-token logits.

        Args:
            tokens: ``int32[B, T]`` token ids.
            cache: None for a plain forward pass over positions ``0..T-1``. With a
                cache, token t of row b sits at position and slot
                ``cache.length[b] + t`` and attends every slot up to its own; the
                caller keeps ``cache.length + T <= S`` (writes past S are dropped).
            valid: ``bool[B, T]``, a prefix mask (right padding only); default all
                True. Padded keys are masked; the outputs at padded positions are
                meaningless. Ids outside ``[0, V)`` at valid positions give NaN
                embeddings (``jnp.take`` fill mode).
            return_hidden: also return the final-norm hidden states.

        Returns:
            ``(logits float32[B, T, V], cache)``, the cache being None without an
            input cache and otherwise the input cache with this call's keys and
            values written and ``length += valid.sum(-1)``. With ``return_hidden``
            a third element, the hidden states ``[B, T, hidden]`` in ``dtype``.
        """
        hidden, cache = self.model(tokens, cache=cache, valid=valid)
        if self.lm_head is None:
            embedding = self.model.embed_tokens.embedding[...].astype(self.dtype)
            logits = jnp.einsum(
                "bth,vh->btv", hidden, embedding, preferred_element_type=jnp.float32
            )
        else:
            logits = self.lm_head(hidden)
        logits = logits.astype(jnp.float32)
        if return_hidden:
            return logits, cache, hidden
        return logits, cache


class LlamaForSequenceClassification(nnx.Module):
    """Decoder with a linear score head ``[hidden, num_labels]`` without bias.

    This is the layout of transformers' ``LlamaForSequenceClassification``, which
    reward models such as Skywork-Reward use. The score of a sequence is the
    head's output at its last valid token.
    """

    def __init__(
        self, config: LlamaConfig, *, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs
    ):
        self.config = config
        self.model = LlamaModel(config, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.score = nnx.Linear(
            config.hidden_size,
            config.num_labels,
            use_bias=False,
            dtype=dtype,
            param_dtype=param_dtype,
            preferred_element_type=jnp.float32,
            rngs=rngs,
        )

    def __call__(self, tokens, *, valid=None):
        """Score each row at its last valid token.

        Args:
            tokens: ``int32[B, T]``.
            valid: ``bool[B, T]`` prefix mask (right padding); default all True.

        Returns:
            ``float32[B, num_labels]``. A row without valid tokens gets the score
            of position 0.
        """
        hidden, _ = self.model(tokens, valid=valid)
        if valid is None:
            last = jnp.full((tokens.shape[0],), tokens.shape[1] - 1)
        else:
            last = jnp.maximum(valid.astype(jnp.int32).sum(axis=-1) - 1, 0)
        pooled = jnp.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0]
        return self.score(pooled).astype(jnp.float32)
