"""Architecture configuration of Llama-family decoders (Llama 2/3, SmolLM2, Qwen2/2.5).

A :class:`LlamaConfig` is built from a Hugging Face ``config.json`` or from the
metadata of a llama.cpp GGUF file. It is a frozen, hashable dataclass, so it can
be a static argument of ``jax.jit``.
"""

import dataclasses
import json
import pathlib
from collections.abc import Mapping
from typing import Any

__all__ = ["LlamaConfig", "SUPPORTED_MODEL_TYPES", "SUPPORTED_ROPE_TYPES"]

SUPPORTED_MODEL_TYPES = ("llama", "qwen2")

# "llama3": the frequency-dependent scaling of Llama 3.1 (Meta, 2024).
# "linear": position interpolation, every inverse frequency divided by `factor`
#   (Chen et al., 2023, arXiv:2306.15595).
# "freq_factors": one divisor per inverse frequency, as llama.cpp stores llama3
#   scaling in the `rope_freqs` tensor of a GGUF file.
SUPPORTED_ROPE_TYPES = ("llama3", "linear", "freq_factors")

_ROPE_KEYS = {
    "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
    "linear": ("factor",),
    "freq_factors": ("factors",),
}

# Defaults of transformers' LlamaConfig and Qwen2Config for keys a config.json may omit.
_HF_DEFAULTS = {
    "llama": {"max_position_embeddings": 2048, "bos_token_id": 1, "eos_token_id": 2},
    "qwen2": {"max_position_embeddings": 32768, "bos_token_id": None, "eos_token_id": None},
}


def check_positive_int(config, name: str) -> None:
    """Raise a ValueError unless the field ``name`` of ``config`` is an int of at least one."""
    value = getattr(config, name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{type(config).__name__}.{name} must be a positive int, got {value!r}.")


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    """Shape and numerics of a Llama-family decoder.

    Attributes:
        vocab_size: V, rows of the token embedding.
        hidden_size: width of the residual stream.
        intermediate_size: width of the SwiGLU hidden layer.
        num_layers: L, decoder blocks.
        num_heads: query heads.
        num_kv_heads: key/value heads; ``num_heads`` must be a multiple of it
            (grouped-query attention, Ainslie et al., 2023, arXiv:2305.13245).
        head_dim: D, width of one head (even, because RoPE rotates pairs).
        rope_theta: RoPE base; inverse frequencies are ``rope_theta ** (-2i / D)``.
        rope_scaling: None, or sorted ``(key, value)`` pairs with a ``"rope_type"``
            entry from :data:`SUPPORTED_ROPE_TYPES` (a tuple, so the config stays
            hashable). See :attr:`rope_scaling_dict`.
        rms_norm_eps: epsilon inside the RMSNorm square root.
        tie_word_embeddings: the output head reuses the token embedding.
        attention_bias: the q, k and v projections have a bias (Qwen2).
        max_position_embeddings: context length the model was trained for.
        bos_token_id: beginning-of-sequence id, or None.
        eos_token_ids: every id that ends generation (possibly empty).
        pad_token_id: padding id, or None.
        num_labels: outputs of the sequence-classification head.
        attention_out_bias: the output projection of attention has a bias (a
            Llama config with ``attention_bias: true``; never Qwen2).
        mlp_bias: the SwiGLU projections have biases (Llama ``mlp_bias``).
    """

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rope_theta: float
    rope_scaling: tuple | None
    rms_norm_eps: float
    tie_word_embeddings: bool
    attention_bias: bool
    max_position_embeddings: int
    bos_token_id: int | None
    eos_token_ids: tuple[int, ...]
    pad_token_id: int | None
    num_labels: int = 1
    attention_out_bias: bool = False
    mlp_bias: bool = False

    def __post_init__(self):
        for name in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_layers",
            "num_heads",
            "num_kv_heads",
            "head_dim",
            "num_labels",
        ):
            check_positive_int(self, name)

        if self.num_heads % self.num_kv_heads != 0:
            raise ValueError(
                f"num_heads={self.num_heads} is not a multiple of num_kv_heads="
                f"{self.num_kv_heads}; grouped-query attention needs an integer group size."
            )
        if self.head_dim % 2 != 0:
            raise ValueError(f"head_dim={self.head_dim} must be even for RoPE.")
        if not self.rope_theta > 0:
            raise ValueError(f"rope_theta must be positive, got {self.rope_theta!r}.")
        if not isinstance(self.eos_token_ids, tuple):
            raise ValueError(f"eos_token_ids must be a tuple, got {self.eos_token_ids!r}.")

        if self.rope_scaling is not None:
            scaling = self.rope_scaling_dict
            rope_type = scaling.get("rope_type")
            if rope_type not in SUPPORTED_ROPE_TYPES:
                raise ValueError(
                    f"rope_type={rope_type!r} is not supported; supported: "
                    f"{', '.join(SUPPORTED_ROPE_TYPES)} (or no scaling)."
                )
            missing = [key for key in _ROPE_KEYS[rope_type] if key not in scaling]
            if missing:
                raise ValueError(f"{rope_type} rope scaling is missing the keys {missing}.")
            if rope_type == "freq_factors" and len(scaling["factors"]) != self.head_dim // 2:
                raise ValueError(
                    f"freq_factors has {len(scaling['factors'])} entries, expected "
                    f"head_dim / 2 = {self.head_dim // 2}."
                )

    @property
    def rope_scaling_dict(self) -> dict[str, Any]:
        """The RoPE scaling parameters as a dict (empty without scaling)."""
        return dict(self.rope_scaling or ())

    @property
    def num_groups(self) -> int:
        """Query heads per key/value head."""
        return self.num_heads // self.num_kv_heads

    @classmethod
    def from_hf_config(cls, path_or_dict) -> "LlamaConfig":
        """Build a config from a Hugging Face ``config.json``.

        Reads the keys of transformers' ``LlamaConfig`` and ``Qwen2Config``, both in
        the 4.x form (``rope_theta``, ``rope_scaling``) and the 5.x form
        (``rope_parameters``). A Qwen2 config has no ``attention_bias`` key: its q,
        k and v projections always carry a bias. When ``path_or_dict`` is a
        directory with a ``generation_config.json``, its ``eos_token_id`` entries
        are added to ``eos_token_ids``, as ``generate`` in transformers uses them.

        Args:
            path_or_dict: a model directory, the path of a ``config.json``, or the
                parsed dict.

        Raises:
            FileNotFoundError: the directory has no ``config.json``.
            ValueError: the model type, activation, RoPE scaling or attention
                pattern is not supported.
        """
        generation = {}
        if isinstance(path_or_dict, Mapping):
            raw = dict(path_or_dict)
        else:
            path = pathlib.Path(path_or_dict)
            if path.is_dir():
                config_file = path / "config.json"
                generation_file = path / "generation_config.json"
                if generation_file.is_file():
                    generation = json.loads(generation_file.read_text())
            else:
                config_file = path
            if not config_file.is_file():
                raise FileNotFoundError(
                    f"No config.json in {path}: a Hugging Face model directory needs its "
                    "config.json beside the safetensors files."
                )
            raw = json.loads(config_file.read_text())

        model_type = raw.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(
                f"model_type={model_type!r} is not supported; supported: "
                f"{', '.join(SUPPORTED_MODEL_TYPES)}."
            )
        activation = raw.get("hidden_act", "silu")
        if activation != "silu":
            raise ValueError(f"hidden_act={activation!r} is not supported; only 'silu' is.")
        _check_full_attention(raw)

        defaults = _HF_DEFAULTS[model_type]
        num_heads = raw["num_attention_heads"]
        head_dim = raw.get("head_dim") or raw["hidden_size"] // num_heads
        rope_theta, rope_scaling = _hf_rope(raw)

        if model_type == "qwen2":
            attention_bias, attention_out_bias = True, False
        else:
            attention_bias = attention_out_bias = bool(raw.get("attention_bias", False))

        # transformers leaves id2label out of config.json when it has its default
        # of two labels.
        if raw.get("id2label"):
            num_labels = len(raw["id2label"])
        elif raw.get("num_labels"):
            num_labels = raw["num_labels"]
        elif any(a.endswith("ForSequenceClassification") for a in raw.get("architectures") or ()):
            num_labels = 2
        else:
            num_labels = 1

        eos = _as_id_tuple(raw.get("eos_token_id", defaults["eos_token_id"]))
        eos += tuple(i for i in _as_id_tuple(generation.get("eos_token_id")) if i not in eos)

        return cls(
            vocab_size=raw["vocab_size"],
            hidden_size=raw["hidden_size"],
            intermediate_size=raw["intermediate_size"],
            num_layers=raw["num_hidden_layers"],
            num_heads=num_heads,
            num_kv_heads=raw.get("num_key_value_heads") or num_heads,
            head_dim=head_dim,
            rope_theta=float(rope_theta),
            rope_scaling=rope_scaling,
            rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
            tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
            attention_bias=attention_bias,
            max_position_embeddings=raw.get(
                "max_position_embeddings", defaults["max_position_embeddings"]
            ),
            bos_token_id=raw.get("bos_token_id", defaults["bos_token_id"]),
            eos_token_ids=eos,
            pad_token_id=raw.get("pad_token_id"),
            num_labels=num_labels,
            attention_out_bias=attention_out_bias,
            mlp_bias=bool(raw.get("mlp_bias", False)),
        )

    @classmethod
    def from_gguf_metadata(
        cls,
        metadata: Mapping[str, Any],
        *,
        vocab_size: int,
        tie_word_embeddings: bool,
        rope_freq_factors=None,
    ) -> "LlamaConfig":
        """Build a config from the key/value metadata of a llama.cpp GGUF file.

        Three facts come from the tensors rather than the metadata, so the caller
        passes them. They are the vocabulary size (rows of ``token_embd``), whether
        the file lacks an ``output`` tensor (tied embeddings), and the ``rope_freqs``
        tensor that llama.cpp's converter writes for llama3 RoPE scaling.

        Args:
            metadata: GGUF keys (``general.architecture``, ``llama.block_count``,
                ...) mapped to Python values.
            vocab_size: V.
            tie_word_embeddings: True when the file has no ``output.weight``.
            rope_freq_factors: the values of ``rope_freqs.weight``, or None.

        Raises:
            ValueError: the architecture or RoPE scaling is not supported, or a
                required key is missing.
        """
        arch = metadata.get("general.architecture")
        if arch not in SUPPORTED_MODEL_TYPES:
            raise ValueError(
                f"GGUF architecture {arch!r} is not supported; supported: "
                f"{', '.join(SUPPORTED_MODEL_TYPES)}."
            )

        def get(key, default=KeyError):
            full_key = f"{arch}.{key}"
            if full_key in metadata:
                return metadata[full_key]
            if default is KeyError:
                raise ValueError(f"GGUF metadata has no {full_key!r}, which a {arch} model needs.")
            return default

        hidden_size = int(get("embedding_length"))
        num_heads = int(get("attention.head_count"))
        head_dim = int(get("attention.key_length", hidden_size // num_heads))
        value_dim = int(get("attention.value_length", head_dim))
        rope_dim = int(get("rope.dimension_count", head_dim))
        if value_dim != head_dim or rope_dim != head_dim:
            raise ValueError(
                f"GGUF head sizes key={head_dim}, value={value_dim}, rope={rope_dim} differ; "
                "only models that rotate the whole head with equal key and value sizes "
                "are supported."
            )

        scaling_type = get("rope.scaling.type", "none")
        if rope_freq_factors is not None:
            factors = tuple(float(f) for f in rope_freq_factors)
            rope_scaling = _sorted_pairs({"rope_type": "freq_factors", "factors": factors})
        elif scaling_type == "linear":
            factor = float(get("rope.scaling.factor"))
            rope_scaling = _sorted_pairs({"rope_type": "linear", "factor": factor})
        elif scaling_type == "none":
            rope_scaling = None
        else:
            raise ValueError(
                f"GGUF rope.scaling.type={scaling_type!r} is not supported; supported: "
                "'none', 'linear', or llama3 scaling stored as a rope_freqs tensor."
            )

        eos = ()
        for key in ("eos_token_id", "eot_token_id", "eom_token_id"):
            token_id = metadata.get(f"tokenizer.ggml.{key}")
            if token_id is not None and int(token_id) not in eos:
                eos += (int(token_id),)
        bos = metadata.get("tokenizer.ggml.bos_token_id")
        pad = metadata.get("tokenizer.ggml.padding_token_id")

        return cls(
            vocab_size=int(vocab_size),
            hidden_size=hidden_size,
            intermediate_size=int(get("feed_forward_length")),
            num_layers=int(get("block_count")),
            num_heads=num_heads,
            num_kv_heads=int(get("attention.head_count_kv", num_heads)),
            head_dim=head_dim,
            rope_theta=float(get("rope.freq_base", 10000.0)),
            rope_scaling=rope_scaling,
            rms_norm_eps=float(get("attention.layer_norm_rms_epsilon")),
            tie_word_embeddings=bool(tie_word_embeddings),
            attention_bias=arch == "qwen2",
            max_position_embeddings=int(get("context_length")),
            bos_token_id=None if bos is None else int(bos),
            eos_token_ids=eos,
            pad_token_id=None if pad is None else int(pad),
        )


def _as_id_tuple(value) -> tuple[int, ...]:
    if value is None:
        return ()
    if isinstance(value, int):
        return (value,)
    return tuple(int(v) for v in value)


def _sorted_pairs(scaling: Mapping[str, Any]) -> tuple:
    return tuple(sorted(scaling.items()))


def _hf_rope(raw: Mapping[str, Any]) -> tuple[float, tuple | None]:
    """Read the RoPE base and scaling from the 4.x or the 5.x form of a config."""
    parameters = raw.get("rope_parameters")
    if parameters:
        scaling = dict(parameters)
        theta = scaling.pop("rope_theta", raw.get("rope_theta", 10000.0))
    else:
        scaling = dict(raw.get("rope_scaling") or {})
        theta = raw.get("rope_theta", 10000.0)

    # transformers 4.x configs name the type "type"; later ones "rope_type".
    rope_type = scaling.pop("rope_type", None) or scaling.pop("type", None)
    if rope_type in (None, "default"):
        return theta, None
    if rope_type not in ("llama3", "linear"):
        raise ValueError(
            f"rope_type={rope_type!r} is not supported; supported: 'default', 'llama3', 'linear'."
        )

    kept = {key: scaling[key] for key in _ROPE_KEYS[rope_type] if key in scaling}
    kept = {key: float(value) for key, value in kept.items()}
    if "original_max_position_embeddings" in kept:
        kept["original_max_position_embeddings"] = int(kept["original_max_position_embeddings"])
    kept["rope_type"] = rope_type
    return theta, _sorted_pairs(kept)


def _check_full_attention(raw: Mapping[str, Any]) -> None:
    """Reject sliding-window attention, which this decoder does not implement."""
    if raw.get("use_sliding_window"):
        raise ValueError(
            "use_sliding_window=true is not supported; only full causal attention is implemented."
        )
    layer_types = raw.get("layer_types") or ()
    other = sorted(set(layer_types) - {"full_attention"})
    if other:
        raise ValueError(
            f"layer_types {other} are not supported; only 'full_attention' is implemented."
        )
