"""Read llama.cpp GGUF files: metadata into a LlamaConfig, tensors into HF names.

Uses the ``gguf`` package (``gguf.GGUFReader``, ``gguf.quants.dequantize``).
Tensors are dequantized to float32 one at a time and renamed to the Hugging Face
names that :func:`slgjax.lm.checkpoint.assign_tensors` expects.

llama.cpp's converter reorders the rows of the query and key projections of
``llama`` models, because llama.cpp rotates adjacent pairs ``(2i, 2i+1)`` while
Hugging Face checkpoints rotate ``(i, i + D/2)``. :func:`unpermute_rows` undoes
that reordering. ``qwen2`` files keep the Hugging Face order.
"""

import pathlib
import re
from collections.abc import Iterator
from typing import Any

import gguf
import numpy as np

from slgjax.lm.config import SUPPORTED_MODEL_TYPES, LlamaConfig

__all__ = [
    "SUPPORTED_TENSOR_TYPES",
    "read_gguf",
    "read_gguf_metadata",
    "gguf_name_to_hf",
    "unpermute_rows",
]

_Q = gguf.GGMLQuantizationType
SUPPORTED_TENSOR_TYPES = (
    _Q.F32,
    _Q.F16,
    _Q.BF16,
    _Q.Q4_0,
    _Q.Q4_1,
    _Q.Q5_0,
    _Q.Q5_1,
    _Q.Q8_0,
    _Q.Q2_K,
    _Q.Q3_K,
    _Q.Q4_K,
    _Q.Q5_K,
    _Q.Q6_K,
)

_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_BLOCK_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_BLOCK_PATTERN = re.compile(r"blk\.(\d+)\.(\w+)\.(weight|bias)")
# Tokenizer arrays with one entry per token or merge; the model does not need them.
_LARGE_FIELDS = frozenset(
    f"tokenizer.ggml.{key}" for key in ("tokens", "token_type", "scores", "merges")
)


def read_gguf_metadata(reader: gguf.GGUFReader) -> dict[str, Any]:
    """Return the key/value metadata of a GGUF file as Python values.

    The per-token tokenizer arrays are left out; :func:`slgjax.lm.tokenizer.load_tokenizer`
    reads them through transformers.
    """
    return {
        key: field.contents() for key, field in reader.fields.items() if key not in _LARGE_FIELDS
    }


def gguf_name_to_hf(name: str) -> str:
    """Map a GGUF tensor name (``blk.3.attn_q.weight``) to the Hugging Face name.

    Raises:
        ValueError: the name is not part of a llama or qwen2 model.
    """
    if name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[name]
    match = _BLOCK_PATTERN.fullmatch(name)
    if match and match.group(2) in _BLOCK_NAMES:
        layer, part, kind = match.groups()
        return f"model.layers.{layer}.{_BLOCK_NAMES[part]}.{kind}"
    raise ValueError(
        f"GGUF tensor {name!r} has no counterpart in a Llama-family model; known names: "
        f"{', '.join(_GLOBAL_NAMES)}, rope_freqs.weight and blk.N.{{{', '.join(_BLOCK_NAMES)}}}."
    )


def unpermute_rows(weight: np.ndarray, num_heads: int) -> np.ndarray:
    """Undo llama.cpp's row order of a query or key projection ``[heads * D, in]``.

    Within each head, llama.cpp stores row ``i`` of the first half and row ``i``
    of the second half next to each other, as rows ``2i`` and ``2i + 1``. This
    function moves them back to rows ``i`` and ``i + D/2``.
    """
    rows = weight.shape[0]
    head_dim = rows // num_heads
    if head_dim * num_heads != rows or head_dim % 2:
        raise ValueError(f"Cannot split {rows} rows into {num_heads} heads of even size.")
    split = weight.reshape(num_heads, head_dim // 2, 2, *weight.shape[1:])
    return split.swapaxes(1, 2).reshape(weight.shape)


def _dequantize(tensor) -> np.ndarray:
    """Return a tensor of the file as float32 in NumPy (row-major) shape."""
    shape = tuple(int(size) for size in reversed(tensor.shape))
    values = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    return np.asarray(values, np.float32).reshape(shape)


def read_gguf(path) -> tuple[LlamaConfig, Iterator[tuple[str, np.ndarray]]]:
    """Open a GGUF file: its config and a lazy stream of float32 tensors.

    Args:
        path: the ``.gguf`` file.

    Returns:
        ``(config, tensors)``: ``tensors`` yields ``(hf_name, float32 array)`` in
        the Hugging Face layout (``[out, in]`` for projections), dequantizing one
        tensor at a time.

    Raises:
        ValueError: the architecture or a tensor type is not supported, or a
            tensor name is unknown.
    """
    path = pathlib.Path(path)
    reader = gguf.GGUFReader(path)
    metadata = read_gguf_metadata(reader)
    arch = metadata.get("general.architecture")
    if arch not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"GGUF architecture {arch!r} in {path.name} is not supported; supported: "
            f"{', '.join(SUPPORTED_MODEL_TYPES)}."
        )

    tensors = {tensor.name: tensor for tensor in reader.tensors}
    for tensor in reader.tensors:
        if tensor.tensor_type not in SUPPORTED_TENSOR_TYPES:
            raise ValueError(
                f"GGUF tensor {tensor.name} uses {tensor.tensor_type.name}, which is not "
                f"supported; supported: {', '.join(t.name for t in SUPPORTED_TENSOR_TYPES)}."
            )
        if tensor.name != "rope_freqs.weight":
            gguf_name_to_hf(tensor.name)
    if "token_embd.weight" not in tensors:
        raise ValueError(f"{path.name} has no token_embd.weight tensor.")

    freq_factors = None
    if "rope_freqs.weight" in tensors:
        freq_factors = _dequantize(tensors["rope_freqs.weight"]).reshape(-1)
    config = LlamaConfig.from_gguf_metadata(
        metadata,
        vocab_size=int(tensors["token_embd.weight"].shape[1]),
        tie_word_embeddings="output.weight" not in tensors,
        rope_freq_factors=freq_factors,
    )
    return config, _iter_tensors(reader, config, arch)


def _iter_tensors(reader, config: LlamaConfig, arch: str):
    for tensor in reader.tensors:
        if tensor.name == "rope_freqs.weight":
            continue
        name = gguf_name_to_hf(tensor.name)
        values = _dequantize(tensor)
        if arch == "llama" and name.endswith("q_proj.weight"):
            values = unpermute_rows(values, config.num_heads)
        elif arch == "llama" and name.endswith("k_proj.weight"):
            values = unpermute_rows(values, config.num_kv_heads)
        yield name, values
