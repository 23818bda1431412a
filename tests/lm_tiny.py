"""Tiny random models and a byte-level tokenizer for the sampler and scorer tests."""

from flax import nnx
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from slgjax.lm.config import LlamaConfig
from slgjax.lm.llama import LlamaForCausalLM, LlamaForSequenceClassification

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Merged tokens make a blank line arrive either as one token or inside a longer
# one, and "Yes" and "No" single tokens for the judge.
MERGES = [("Ċ", "Ċ"), (".", "ĊĊ"), ("a", "b"), ("Y", "e"), ("Ye", "s"), ("N", "o")]


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE over the 256 bytes, a few merges, and chat special tokens."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {char: index for index, char in enumerate(alphabet)}
    for left, right in MERGES:
        vocab[left + right] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=MERGES))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<pad>"
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_config(*, vocab_size: int = 272, num_labels: int = 1, **overrides) -> LlamaConfig:
    """A two-layer config; the vocabulary is padded past the tokenizer's 265 ids."""
    fields = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        head_dim=8,
        rope_theta=10000.0,
        rope_scaling=None,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        attention_bias=False,
        max_position_embeddings=256,
        bos_token_id=None,
        eos_token_ids=(262,),
        pad_token_id=263,
        num_labels=num_labels,
    )
    fields.update(overrides)
    return LlamaConfig(**fields)


def tiny_causal_lm(seed: int = 0, **overrides) -> LlamaForCausalLM:
    return LlamaForCausalLM(tiny_config(**overrides), rngs=nnx.Rngs(seed))


def tiny_reward_model(seed: int = 0, **overrides) -> LlamaForSequenceClassification:
    return LlamaForSequenceClassification(tiny_config(**overrides), rngs=nnx.Rngs(seed))
