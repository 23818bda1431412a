"""Llama-family language models in Flax NNX: configs, checkpoints, tokenizers."""

from slgjax.lm.checkpoint import assign_tensors, iter_safetensors, load_model, nnx_path_to_hf_name
from slgjax.lm.config import LlamaConfig
from slgjax.lm.embedded import default_policy_path
from slgjax.lm.gguf_file import read_gguf
from slgjax.lm.llama import (
    KVCache,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    init_cache,
    rope_inverse_frequencies,
)
from slgjax.lm.tokenizer import load_tokenizer

__all__ = [
    "LlamaConfig",
    "KVCache",
    "init_cache",
    "rope_inverse_frequencies",
    "LlamaForCausalLM",
    "LlamaForSequenceClassification",
    "load_model",
    "iter_safetensors",
    "nnx_path_to_hf_name",
    "assign_tensors",
    "read_gguf",
    "load_tokenizer",
    "default_policy_path",
]
