"""Llama-family language models in Flax NNX: configs, checkpoints, tokenizers."""

from slgjax.lm.checkpoint import assign_tensors, iter_safetensors, load_model, nnx_path_to_hf_name
from slgjax.lm.config import LlamaConfig
from slgjax.lm.embedded import default_policy_path
from slgjax.lm.features import FEATURE_SOURCES, PolicyFeatures, SentenceFeatures
from slgjax.lm.gguf_file import read_gguf
from slgjax.lm.llama import (
    KVCache,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    init_cache,
    rope_inverse_frequencies,
)
from slgjax.lm.mesh import LLAMA_PARAMETER_RULES, initialize_distributed, make_mesh, shard_model
from slgjax.lm.reward_head import (
    FitHistory,
    RewardHead,
    RewardHeadScorer,
    build_head_scorer,
    default_reward_head_path,
    fit_reward_head,
    load_reward_head,
    save_reward_head,
)
from slgjax.lm.sampler import FinishReason, Generation, Sampler
from slgjax.lm.sampling import SamplingConfig
from slgjax.lm.scorers import JudgeScorer, RewardModelScorer, Scorer, Verifier, VerifierScorer
from slgjax.lm.tokenizer import load_tokenizer

__all__ = [
    "FinishReason",
    "Generation",
    "JudgeScorer",
    "LLAMA_PARAMETER_RULES",
    "RewardModelScorer",
    "Sampler",
    "SamplingConfig",
    "Scorer",
    "Verifier",
    "VerifierScorer",
    "initialize_distributed",
    "make_mesh",
    "shard_model",
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
    "FEATURE_SOURCES",
    "PolicyFeatures",
    "SentenceFeatures",
    "FitHistory",
    "RewardHead",
    "RewardHeadScorer",
    "build_head_scorer",
    "default_reward_head_path",
    "fit_reward_head",
    "load_reward_head",
    "save_reward_head",
]
