"""Load Hugging Face safetensors checkpoints and GGUF files into NNX models.

Loading is a chain of small steps, each usable on its own:

1. read tensors: :func:`iter_safetensors` (single file or sharded index) or
   :func:`slgjax.lm.gguf_file.read_gguf`, both yielding ``(hf_name, array)``;
2. map names: :func:`nnx_path_to_hf_name` gives the checkpoint name of every
   parameter of an abstract model;
3. check and assign: :func:`assign_tensors` compares shape and dtype per
   parameter, casts to the parameter dtype and builds the concrete model.

The model is first built with ``nnx.eval_shape``, so no random initial weights
are ever allocated.
"""

import json
import pathlib
from collections.abc import Iterable, Iterator

import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import nnx
from safetensors import safe_open

from slgjax.lm import gguf_file
from slgjax.lm.config import LlamaConfig
from slgjax.lm.llama import LlamaForCausalLM, LlamaForSequenceClassification

__all__ = [
    "HEADS",
    "load_model",
    "iter_safetensors",
    "nnx_path_to_hf_name",
    "assign_tensors",
]

HEADS = {
    "causal_lm": LlamaForCausalLM,
    "sequence_classification": LlamaForSequenceClassification,
}

_SINGLE_FILE = "model.safetensors"
_INDEX_FILE = "model.safetensors.index.json"
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16))
_SAFETENSORS_DTYPES = {"F32": jnp.float32, "F16": jnp.float16, "BF16": jnp.bfloat16}
# How many names of each kind of mismatch an error message lists.
_MAX_LISTED = 8


def load_model(path, *, dtype=jnp.float32, param_dtype=None, head="causal_lm"):
    """Load a Llama-family model from a safetensors directory or a GGUF file.

    Args:
        path: a Hugging Face model directory (``config.json`` plus
            ``model.safetensors`` or ``model.safetensors.index.json`` and its
            shards), or a ``.gguf`` file from llama.cpp.
        dtype: compute dtype of the model.
        param_dtype: storage dtype of the parameters. None keeps the dtype of the
            checkpoint (bfloat16 stays bfloat16, bit for bit); GGUF tensors are
            dequantized to float32.
        head: ``"causal_lm"`` or ``"sequence_classification"`` (a checkpoint of
            transformers' ``LlamaForSequenceClassification``, with ``score.weight``).

    Returns:
        ``(model, config)``.

    Raises:
        FileNotFoundError: the path, its ``config.json`` or a weight file is missing.
        ValueError: a tensor is missing, unexpected, mis-shaped or not floating
            point, or the architecture or head is not supported.
    """
    if head not in HEADS:
        raise ValueError(f"head={head!r} is not supported; supported: {', '.join(HEADS)}.")
    path = pathlib.Path(path)

    if path.is_file() and path.suffix == ".gguf":
        config, tensors = gguf_file.read_gguf(path)
        source_dtype = jnp.float32
    elif path.is_dir():
        config = LlamaConfig.from_hf_config(path)
        source_dtype = _safetensors_dtype(path)
        tensors = iter_safetensors(path)
    elif path.exists():
        raise ValueError(
            f"{path} is neither a model directory nor a .gguf file; pass the directory "
            "that contains config.json, or a .gguf file."
        )
    else:
        raise FileNotFoundError(f"No model at {path}.")

    if param_dtype is None:
        param_dtype = source_dtype
    model_class = HEADS[head]
    abstract = nnx.eval_shape(
        lambda: model_class(config, dtype=dtype, param_dtype=param_dtype, rngs=nnx.Rngs(0))
    )
    model = assign_tensors(abstract, tensors)
    return model, config


def _weight_files(directory: pathlib.Path) -> dict[str, list[str] | None]:
    """Map each weight file of ``directory`` to the tensor names the index lists for it.

    A single ``model.safetensors`` maps to None (all of its tensors).
    """
    index_path = directory / _INDEX_FILE
    if index_path.is_file():
        weight_map = json.loads(index_path.read_text())["weight_map"]
        files: dict[str, list[str] | None] = {}
        for name, file_name in weight_map.items():
            files.setdefault(file_name, []).append(name)
        for file_name in files:
            if not (directory / file_name).is_file():
                raise FileNotFoundError(
                    f"{_INDEX_FILE} in {directory} lists the shard {file_name}, which is missing."
                )
        return files

    if (directory / _SINGLE_FILE).is_file():
        return {_SINGLE_FILE: None}

    pickles = sorted(p.name for p in directory.iterdir() if p.suffix in (".bin", ".pth"))
    hint = ""
    if pickles:
        hint = f" It holds {pickles}, which are PyTorch pickles; convert them to safetensors."
    raise FileNotFoundError(f"No {_SINGLE_FILE} or {_INDEX_FILE} in {directory}.{hint}")


def _safetensors_dtype(directory: pathlib.Path):
    """The dtype of the first tensor of the checkpoint, read from its header."""
    files = _weight_files(directory)
    file_name = next(iter(files))
    with safe_open(directory / file_name, framework="numpy") as handle:
        names = files[file_name] or list(handle.keys())
        if not names:
            raise ValueError(f"{directory / file_name} contains no tensors.")
        code = handle.get_slice(names[0]).get_dtype()
    if code not in _SAFETENSORS_DTYPES:
        raise ValueError(
            f"Tensor {names[0]} is stored as {code}; supported: {', '.join(_SAFETENSORS_DTYPES)}."
        )
    return _SAFETENSORS_DTYPES[code]


def iter_safetensors(directory) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(name, array)`` for every tensor of a safetensors checkpoint.

    Reads ``model.safetensors`` or, when present, every shard listed in
    ``model.safetensors.index.json``, one tensor at a time, so host memory grows by
    one tensor beyond what the caller keeps. bfloat16 tensors come back as
    ``ml_dtypes.bfloat16`` arrays with their bits unchanged.

    Raises:
        FileNotFoundError: no weight file, or a shard named by the index is missing.
        ValueError: a shard lacks a tensor that the index assigns to it.
    """
    directory = pathlib.Path(directory)
    for file_name, names in _weight_files(directory).items():
        with safe_open(directory / file_name, framework="numpy") as handle:
            present = set(handle.keys())
            if names is None:
                names = sorted(present)
            for name in names:
                if name not in present:
                    raise ValueError(
                        f"{_INDEX_FILE} puts tensor {name} in {file_name}, but that shard "
                        "does not contain it."
                    )
                yield name, handle.get_tensor(name)


def nnx_path_to_hf_name(path: tuple) -> tuple[str, bool]:
    """Return the Hugging Face tensor name of an NNX parameter path.

    ``('model', 'layers', 3, 'mlp', 'up_proj', 'kernel')`` maps to
    ``'model.layers.3.mlp.up_proj.weight'``. The boolean is True for linear
    kernels, which NNX stores as ``[in, out]`` and PyTorch as ``[out, in]``.
    """
    *prefix, leaf = (str(part) for part in path)
    if leaf == "kernel":
        return ".".join([*prefix, "weight"]), True
    if leaf in ("embedding", "weight"):
        return ".".join([*prefix, "weight"]), False
    return ".".join([*prefix, leaf]), False


def _is_ignored(name: str, tied: bool) -> bool:
    # Older Llama checkpoints store the RoPE table as a buffer. Tied checkpoints
    # sometimes store the shared matrix a second time as lm_head.weight, which
    # transformers ignores when it ties the weights.
    return name.endswith("rotary_emb.inv_freq") or (tied and name == "lm_head.weight")


def assign_tensors(abstract_model: nnx.Module, tensors: Iterable[tuple[str, np.ndarray]]):
    """Fill an abstract model (from ``nnx.eval_shape``) with checkpoint tensors.

    Every parameter must receive exactly one tensor of the right shape (in the
    checkpoint's ``[out, in]`` layout for linear kernels) and a floating-point
    dtype. Tensors are cast to the parameter dtype; an equal dtype keeps the
    bits unchanged.

    Raises:
        ValueError: listing every missing, unexpected, mis-shaped or non-float
            tensor, each with its name and, for shapes, the checkpoint shape and
            the expected shape.
    """
    graphdef, state = nnx.split(abstract_model)
    flat = list(nnx.to_flat_state(state))
    expected = {}
    for index, (path, variable) in enumerate(flat):
        name, transpose = nnx_path_to_hf_name(path)
        expected[name] = (index, transpose, variable.get_value())

    config = getattr(abstract_model, "config", None)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    values: dict[int, object] = {}
    unexpected, misshaped, wrong_dtype = [], [], []

    for name, array in tensors:
        if name not in expected:
            if not _is_ignored(name, tied):
                unexpected.append(f"{name} {tuple(array.shape)}")
            continue
        index, transpose, target = expected[name]
        checkpoint_shape = tuple(target.shape[::-1] if transpose else target.shape)
        if tuple(array.shape) != checkpoint_shape:
            values[index] = None
            misshaped.append(
                f"{name}: checkpoint shape {tuple(array.shape)}, expected {checkpoint_shape}"
            )
            continue
        if np.dtype(array.dtype) not in _FLOAT_DTYPES:
            values[index] = None
            wrong_dtype.append(f"{name}: dtype {array.dtype}")
            continue
        if transpose:
            array = array.T
        values[index] = jnp.asarray(np.asarray(array).astype(target.dtype, copy=False))

    missing = [
        f"{name} {tuple(target.shape[::-1] if transpose else target.shape)}"
        for name, (index, transpose, target) in expected.items()
        if index not in values
    ]
    problems = [
        ("missing tensors (name, expected shape)", missing),
        ("unexpected tensors (name, shape)", unexpected),
        ("mis-shaped tensors", misshaped),
        ("tensors that are not float32, float16 or bfloat16", wrong_dtype),
    ]
    lines = []
    for title, items in problems:
        if items:
            listed = "; ".join(items[:_MAX_LISTED])
            more = f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
            lines.append(f"{len(items)} {title}: {listed}{more}.")
    if lines:
        raise ValueError("The checkpoint does not match the model config. " + " ".join(lines))

    filled = [
        (path, variable.replace(values[index])) for index, (path, variable) in enumerate(flat)
    ]
    return nnx.merge(graphdef, nnx.from_flat_state(filled))
