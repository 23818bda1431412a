"""Llama-family decoder: logits parity with transformers (PyTorch), KV cache, config parsing.

Oracle: transformers' PyTorch ``LlamaForCausalLM``, ``Qwen2ForCausalLM`` and
``LlamaForSequenceClassification`` on tiny random checkpoints written to a
temporary directory. Float32 logits must agree to 1e-4 in max abs difference.
"""

import json

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from slgjax.lm import (
    LlamaConfig,
    init_cache,
    load_model,
    rope_inverse_frequencies,
)

PARITY_ATOL = 1e-4
VOCAB = 256
SHAPE = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
)
LLAMA3_ROPE = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    # With head_dim 16 and theta 10000 the wavelengths are 6.3, 19.9, 62.8, ...,
    # so a context of 32 puts one frequency in each llama3 band.
    "original_max_position_embeddings": 32,
}

CASES = {
    "llama3_rope_gqa_untied": (
        transformers.LlamaConfig,
        transformers.LlamaForCausalLM,
        dict(num_key_value_heads=2, rope_scaling=LLAMA3_ROPE, rope_theta=10000.0),
    ),
    "llama_tied_mha": (
        transformers.LlamaConfig,
        transformers.LlamaForCausalLM,
        dict(num_key_value_heads=4, tie_word_embeddings=True, rope_theta=100000.0),
    ),
    "llama_biases_linear_rope": (
        transformers.LlamaConfig,
        transformers.LlamaForCausalLM,
        dict(
            num_key_value_heads=1,
            attention_bias=True,
            mlp_bias=True,
            rope_scaling={"rope_type": "linear", "factor": 2.0},
        ),
    ),
    "qwen2_tied_gqa": (
        transformers.Qwen2Config,
        transformers.Qwen2ForCausalLM,
        dict(num_key_value_heads=2, tie_word_embeddings=True, rope_theta=1000000.0),
    ),
    "qwen2_untied": (
        transformers.Qwen2Config,
        transformers.Qwen2ForCausalLM,
        dict(num_key_value_heads=1, tie_word_embeddings=False),
    ),
}


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Draw weights large enough that logits are of order one and errors show."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if name.endswith("norm.weight"):
                parameter.copy_(1.0 + 0.2 * noise)
            else:
                parameter.copy_(0.15 * noise)


def save_tiny(directory, config_class, model_class, overrides, seed):
    config = config_class(**SHAPE, **overrides)
    model = model_class(config).eval()
    randomize(model, seed)
    model.save_pretrained(directory)
    return model


@nnx.jit
def forward(model, tokens, valid):
    """Logits of a full forward pass; one compilation per model structure."""
    return model(tokens, valid=valid)[0]


def padded_batch(seed, lengths, steps, low=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(low, VOCAB, (len(lengths), steps))
    valid = np.arange(steps)[None, :] < np.asarray(lengths)[:, None]
    return tokens.astype(np.int32), valid


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Each case: (torch model, slgjax model, config, directory), built once per module."""
    built = {}
    for seed, (name, (config_class, model_class, overrides)) in enumerate(CASES.items()):
        directory = tmp_path_factory.mktemp(name)
        torch_model = save_tiny(directory, config_class, model_class, overrides, seed)
        model, config = load_model(directory)
        built[name] = (torch_model, model, config, directory)
    return built


@pytest.mark.parametrize("case", list(CASES))
def test_logits_match_transformers(checkpoints, case):
    torch_model, model, _, _ = checkpoints[case]
    tokens, valid = padded_batch(seed=1, lengths=[24, 17, 5], steps=24)

    with torch.no_grad():
        reference = torch_model(
            torch.from_numpy(tokens).long(), attention_mask=torch.from_numpy(valid).long()
        ).logits.numpy()
    logits = np.asarray(forward(model, jnp.asarray(tokens), jnp.asarray(valid)))

    assert logits.dtype == np.float32
    assert logits.shape == (3, 24, VOCAB)
    # Only valid positions are defined; padded ones differ by design.
    difference = np.abs(logits - reference)[valid].max()
    print(
        f"{case}: max abs logits difference {difference:.2e}, logit scale "
        f"{np.abs(reference[valid]).max():.2f}"
    )
    assert difference <= PARITY_ATOL
    assert np.abs(reference[valid]).max() > 1.0


@pytest.mark.parametrize("rope_scaling", [LLAMA3_ROPE, {"rope_type": "linear", "factor": 4.0}])
def test_rope_frequencies_match_transformers(rope_scaling):
    hf_config = transformers.LlamaConfig(**SHAPE, rope_scaling=rope_scaling, rope_theta=10000.0)
    expected, _ = ROPE_INIT_FUNCTIONS[rope_scaling["rope_type"]](hf_config)
    config = LlamaConfig.from_hf_config(hf_config.to_dict())

    frequencies = rope_inverse_frequencies(config)
    unscaled = 10000.0 ** (-np.arange(0, 16, 2) / 16)

    np.testing.assert_allclose(frequencies, expected.numpy(), rtol=1e-6)
    assert not np.allclose(frequencies, unscaled)


def test_classification_matches_transformers(tmp_path):
    hf_config = transformers.LlamaConfig(
        **SHAPE, num_key_value_heads=2, num_labels=3, pad_token_id=0, rope_theta=10000.0
    )
    torch_model = transformers.LlamaForSequenceClassification(hf_config).eval()
    randomize(torch_model, seed=7)
    torch_model.save_pretrained(tmp_path)
    # Valid ids avoid the pad id 0, because transformers finds the last token by it.
    tokens, valid = padded_batch(seed=3, lengths=[12, 7, 1], steps=12, low=1)
    tokens = np.where(valid, tokens, 0)

    with torch.no_grad():
        reference = torch_model(
            torch.from_numpy(tokens).long(), attention_mask=torch.from_numpy(valid).long()
        ).logits.numpy()
    model, config = load_model(tmp_path, head="sequence_classification")
    scores = np.asarray(nnx.jit(lambda m, t, v: m(t, valid=v))(model, tokens, valid))

    assert config.num_labels == 3
    assert scores.shape == (3, 3)
    difference = np.abs(scores - reference).max()
    print(f"classification: max abs score difference {difference:.2e}")
    assert difference <= PARITY_ATOL


def test_cached_decoding_matches_full_forward(checkpoints):
    _, model, config, _ = checkpoints["llama3_rope_gqa_untied"]
    prompt, prompt_valid = padded_batch(seed=4, lengths=[6, 3, 1], steps=6)
    # Same shape as the prompt, so the prefill compiles once for both.
    chunk, chunk_valid = padded_batch(seed=5, lengths=[1, 3, 2], steps=6)
    decoded = np.random.default_rng(6).integers(0, VOCAB, (3, 4)).astype(np.int32)
    step_fn = nnx.jit(lambda m, tokens, cache, valid: m(tokens, cache=cache, valid=valid))
    call = lambda tokens, cache, valid: step_fn(model, tokens, cache, valid)

    # Prefill, a second padded chunk whose padded slots must be overwritten,
    # then one token per step.
    cache = init_cache(config, batch_size=3, max_length=16, dtype=jnp.float32)
    logits_prompt, cache = call(prompt, cache, prompt_valid)
    logits_chunk, cache = call(chunk, cache, chunk_valid)
    step_logits = []
    for step in range(decoded.shape[1]):
        logits, cache = call(decoded[:, step : step + 1], cache, np.ones((3, 1), bool))
        step_logits.append(np.asarray(logits[:, 0]))

    rows = []
    for b in range(3):
        row = [prompt[b, prompt_valid[b]], chunk[b, chunk_valid[b]], decoded[b]]
        rows.append(np.concatenate(row))
    lengths = np.array([len(row) for row in rows])
    full_tokens = np.zeros((3, lengths.max()), np.int32)
    for b, row in enumerate(rows):
        full_tokens[b, : len(row)] = row
    full_valid = np.arange(lengths.max())[None, :] < lengths[:, None]
    full_logits = np.asarray(forward(model, full_tokens, full_valid))

    np.testing.assert_array_equal(np.asarray(cache.length), lengths)
    for b in range(3):
        n_prompt, n_chunk = prompt_valid[b].sum(), chunk_valid[b].sum()
        np.testing.assert_allclose(
            np.asarray(logits_prompt)[b, :n_prompt], full_logits[b, :n_prompt], atol=1e-5
        )
        np.testing.assert_allclose(
            np.asarray(logits_chunk)[b, :n_chunk],
            full_logits[b, n_prompt : n_prompt + n_chunk],
            atol=1e-5,
        )
        for step, logits in enumerate(step_logits):
            position = n_prompt + n_chunk + step
            np.testing.assert_allclose(logits[b], full_logits[b, position], atol=1e-5)


def test_bfloat16_compute_close_to_float32(checkpoints):
    _, model, _, directory = checkpoints["qwen2_tied_gqa"]
    tokens, valid = padded_batch(seed=8, lengths=[10, 4], steps=10)
    bf16_model, _ = load_model(directory, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)

    reference = forward(model, tokens, valid)
    logits = forward(bf16_model, tokens, valid)

    assert bf16_model.model.norm.weight[...].dtype == jnp.bfloat16
    assert logits.dtype == jnp.float32
    # bfloat16 keeps 8 significant bits, so a few percent of the logit scale.
    scale = float(jnp.abs(reference).max())
    assert float(jnp.abs(logits - reference)[valid].max()) < 0.1 * scale


def test_return_hidden_and_tied_head(checkpoints):
    _, model, _, _ = checkpoints["llama_tied_mha"]
    tokens, valid = padded_batch(seed=9, lengths=[5, 2], steps=5)

    logits, cache, hidden = nnx.jit(lambda m, t, v: m(t, valid=v, return_hidden=True))(
        model, tokens, valid
    )
    embedding = model.model.embed_tokens.embedding[...]

    assert cache is None
    assert hidden.shape == (2, 5, 64)
    np.testing.assert_allclose(logits, hidden @ embedding.T, atol=1e-5)


def test_rows_without_valid_tokens_stay_finite(checkpoints):
    _, model, _, _ = checkpoints["qwen2_untied"]
    # The parity test's shape [3, 24], so the compiled forward pass is reused.
    tokens, valid = padded_batch(seed=10, lengths=[24, 0, 3], steps=24)
    tokens[1] = -1

    logits = forward(model, tokens, valid)

    assert bool(jnp.isfinite(logits).all())


def test_shape_errors_name_the_shapes(checkpoints):
    _, model, config, _ = checkpoints["qwen2_untied"]
    cache = init_cache(config, batch_size=2, max_length=8, dtype=jnp.float32)

    with pytest.raises(ValueError, match=r"\[B, T\]"):
        model(jnp.zeros((4,), jnp.int32))
    with pytest.raises(ValueError, match=r"valid has shape \(1, 2\)"):
        model(jnp.zeros((1, 3), jnp.int32), valid=jnp.ones((1, 2), bool))
    with pytest.raises(ValueError, match="init_cache"):
        model(jnp.zeros((3, 1), jnp.int32), cache=cache)


# Config parsing.

LLAMA2_CONFIG = {
    "model_type": "llama",
    "vocab_size": 32000,
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "rms_norm_eps": 1e-5,
    "rope_scaling": None,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "hidden_act": "silu",
}


def test_config_llama2_defaults():
    config = LlamaConfig.from_hf_config(LLAMA2_CONFIG)

    assert config.num_kv_heads == 32
    assert config.head_dim == 128
    assert config.rope_theta == 10000.0
    assert config.rope_scaling is None
    assert config.tie_word_embeddings is False
    assert config.attention_bias is False
    assert config.eos_token_ids == (2,)
    assert config.pad_token_id is None
    assert config.max_position_embeddings == 2048


def test_config_llama3_v4_form_and_generation_eos(tmp_path):
    raw = dict(
        LLAMA2_CONFIG,
        num_key_value_heads=8,
        rope_theta=500000.0,
        eos_token_id=[128001, 128008],
        rope_scaling={
            "type": "llama3",
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
    )
    (tmp_path / "config.json").write_text(json.dumps(raw))
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [128001, 128009]}))

    config = LlamaConfig.from_hf_config(tmp_path)

    assert config.rope_theta == 500000.0
    assert config.rope_scaling_dict["rope_type"] == "llama3"
    assert config.rope_scaling_dict["original_max_position_embeddings"] == 8192
    assert config.eos_token_ids == (128001, 128008, 128009)
    assert hash(config) == hash(LlamaConfig.from_hf_config(tmp_path))


def test_config_qwen2_has_qkv_bias_only():
    raw = dict(LLAMA2_CONFIG, model_type="qwen2", head_dim=None, num_key_value_heads=4)

    config = LlamaConfig.from_hf_config(raw)

    assert config.attention_bias is True
    assert config.attention_out_bias is False
    assert config.num_kv_heads == 4


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model_type": "gemma"}, "model_type='gemma' is not supported; supported: llama, qwen2"),
        ({"hidden_act": "gelu"}, "hidden_act='gelu'"),
        ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "rope_type='yarn'"),
        ({"use_sliding_window": True}, "use_sliding_window"),
        ({"num_key_value_heads": 5}, "num_heads=32 is not a multiple of num_kv_heads=5"),
    ],
)
def test_config_rejects_unsupported(change, message):
    with pytest.raises(ValueError) as error:
        LlamaConfig.from_hf_config(dict(LLAMA2_CONFIG, **change))

    assert message in str(error.value)
