"""Checkpoint loading: sharded safetensors, bfloat16 bits, error messages, GGUF round trips."""

import json
import shutil

import gguf
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy
import tokenizers
import torch
import transformers
from flax import nnx
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from slgjax.lm import load_model, load_tokenizer, nnx_path_to_hf_name
from slgjax.lm.gguf_file import unpermute_rows

VOCAB = 256
SHAPE = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
)
LLAMA3_ROPE = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 32,
}


def randomize(model: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if name.endswith("norm.weight"):
                parameter.copy_(1.0 + 0.2 * noise)
            else:
                parameter.copy_(0.15 * noise)


@nnx.jit
def forward(model, tokens):
    return model(tokens)[0]


TOKENS = np.random.default_rng(0).integers(0, VOCAB, (2, 16)).astype(np.int32)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    """A tiny untied Llama 3 checkpoint with llama3 RoPE scaling, in float32."""
    directory = tmp_path_factory.mktemp("llama")
    config = transformers.LlamaConfig(**SHAPE, rope_scaling=LLAMA3_ROPE, rope_theta=10000.0)
    model = transformers.LlamaForCausalLM(config).eval()
    randomize(model, seed=0)
    model.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    """A tiny Qwen2 checkpoint with tied embeddings and q/k/v biases."""
    directory = tmp_path_factory.mktemp("qwen")
    config = transformers.Qwen2Config(**SHAPE, tie_word_embeddings=True)
    model = transformers.Qwen2ForCausalLM(config).eval()
    randomize(model, seed=1)
    model.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def llama_logits(llama_dir):
    model, _ = load_model(llama_dir)
    return np.asarray(forward(model, TOKENS))


def copy_with_tensors(source, target, change):
    """Copy a checkpoint directory, passing its tensor dict through ``change``."""
    target.mkdir()
    shutil.copy(source / "config.json", target / "config.json")
    tensors = safetensors.numpy.load_file(source / "model.safetensors")
    change(tensors)
    safetensors.numpy.save_file(tensors, target / "model.safetensors")
    return target


# Safetensors.


def test_sharded_index_loads(tmp_path, llama_dir, llama_logits):
    model = transformers.LlamaForCausalLM.from_pretrained(llama_dir)
    model.save_pretrained(tmp_path, max_shard_size="100KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())

    sharded, _ = load_model(tmp_path)

    assert len(set(index["weight_map"].values())) > 1
    assert not (tmp_path / "model.safetensors").exists()
    np.testing.assert_array_equal(np.asarray(forward(sharded, TOKENS)), llama_logits)


def test_bfloat16_loads_bit_exact(tmp_path, llama_dir):
    torch_model = transformers.LlamaForCausalLM.from_pretrained(llama_dir)
    torch_model.to(torch.bfloat16).save_pretrained(tmp_path)
    expected = {
        name: tensor.view(torch.int16).numpy() for name, tensor in torch_model.state_dict().items()
    }

    model, _ = load_model(tmp_path)

    params = list(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    assert len(params) == len(expected)
    for path, variable in params:
        name, transpose = nnx_path_to_hf_name(path)
        value = np.asarray(variable[...])
        assert value.dtype == ml_dtypes.bfloat16, name
        bits = value.T.view(np.int16) if transpose else value.view(np.int16)
        np.testing.assert_array_equal(bits, expected[name], err_msg=name)


def test_bfloat16_cast_to_float32(tmp_path, llama_dir):
    torch_model = transformers.LlamaForCausalLM.from_pretrained(llama_dir)
    torch_model.to(torch.bfloat16).save_pretrained(tmp_path)

    model, _ = load_model(tmp_path, param_dtype=jnp.float32)

    kernel = np.asarray(model.lm_head.kernel[...])
    assert kernel.dtype == np.float32
    expected = torch_model.lm_head.weight.detach().float().numpy().T
    np.testing.assert_array_equal(kernel, expected)


def test_missing_tensor_error_names_it(tmp_path, llama_dir):
    directory = copy_with_tensors(
        llama_dir, tmp_path / "ckpt", lambda t: t.pop("model.layers.1.mlp.up_proj.weight")
    )

    with pytest.raises(ValueError) as error:
        load_model(directory)

    message = str(error.value)
    assert "1 missing tensors" in message
    assert "model.layers.1.mlp.up_proj.weight (128, 64)" in message


def test_unexpected_tensor_error_names_it(tmp_path, llama_dir):
    def add(tensors):
        tensors["model.layers.2.mlp.up_proj.weight"] = np.zeros((128, 64), np.float32)

    directory = copy_with_tensors(llama_dir, tmp_path / "ckpt", add)

    with pytest.raises(ValueError) as error:
        load_model(directory)

    message = str(error.value)
    assert "1 unexpected tensors" in message
    assert "model.layers.2.mlp.up_proj.weight (128, 64)" in message


def test_misshaped_tensor_error_gives_both_shapes(tmp_path, llama_dir):
    def reshape(tensors):
        tensors["model.layers.0.self_attn.k_proj.weight"] = np.zeros((64, 64), np.float32)

    directory = copy_with_tensors(llama_dir, tmp_path / "ckpt", reshape)

    with pytest.raises(ValueError) as error:
        load_model(directory)

    assert (
        "model.layers.0.self_attn.k_proj.weight: checkpoint shape (64, 64), expected (32, 64)"
        in str(error.value)
    )


def test_integer_tensor_rejected(tmp_path, llama_dir):
    def to_int(tensors):
        tensors["model.norm.weight"] = tensors["model.norm.weight"].astype(np.int32)

    directory = copy_with_tensors(llama_dir, tmp_path / "ckpt", to_int)

    with pytest.raises(ValueError, match=r"model\.norm\.weight: dtype int32"):
        load_model(directory)


def test_missing_config_json(tmp_path, llama_dir):
    shutil.copy(llama_dir / "model.safetensors", tmp_path / "model.safetensors")

    with pytest.raises(FileNotFoundError, match=r"No config\.json in"):
        load_model(tmp_path)


def test_missing_weights_file(tmp_path, llama_dir):
    shutil.copy(llama_dir / "config.json", tmp_path / "config.json")

    with pytest.raises(
        FileNotFoundError, match=r"No model\.safetensors or model\.safetensors\.index"
    ):
        load_model(tmp_path)


def test_missing_shard_named(tmp_path, llama_dir):
    model = transformers.LlamaForCausalLM.from_pretrained(llama_dir)
    model.save_pretrained(tmp_path, max_shard_size="100KB")
    shard = sorted(tmp_path.glob("model-*.safetensors"))[-1]
    shard.unlink()

    with pytest.raises(FileNotFoundError, match=f"lists the shard {shard.name}, which is missing"):
        load_model(tmp_path)


def test_wrong_head_names_score_weight(llama_dir):
    with pytest.raises(ValueError) as error:
        load_model(llama_dir, head="sequence_classification")

    message = str(error.value)
    assert "score.weight (1, 64)" in message
    assert "lm_head.weight (256, 64)" in message


def test_unknown_head_rejected(llama_dir):
    with pytest.raises(ValueError, match="head='reward'"):
        load_model(llama_dir, head="reward")


def test_classification_checkpoint_loads(tmp_path):
    config = transformers.LlamaConfig(**SHAPE, num_labels=2, pad_token_id=0)
    torch_model = transformers.LlamaForSequenceClassification(config).eval()
    randomize(torch_model, seed=2)
    torch_model.save_pretrained(tmp_path)

    model, loaded = load_model(tmp_path, head="sequence_classification")

    assert loaded.num_labels == 2
    np.testing.assert_array_equal(
        np.asarray(model.score.kernel[...]), torch_model.score.weight.detach().numpy().T
    )


# GGUF.


def permute_as_llama_cpp(weight, heads):
    """The row order llama.cpp's converter gives query and key weights of llama models."""
    head_dim = weight.shape[0] // heads
    return weight.reshape(heads, 2, head_dim // 2, -1).swapaxes(1, 2).reshape(weight.shape)


GGUF_BLOCK = {
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def gguf_name(hf_name):
    if hf_name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf_name == "model.norm.weight":
        return "output_norm.weight"
    if hf_name == "lm_head.weight":
        return "output.weight"
    _, _, layer, *module, kind = hf_name.split(".")
    return f"blk.{layer}.{GGUF_BLOCK['.'.join(module)]}.{kind}"


def write_gguf(path, checkpoint_dir, *, arch, qtype, rope_freqs=None):
    """Convert a tiny HF checkpoint to GGUF the way llama.cpp's converter lays it out."""
    config = json.loads((checkpoint_dir / "config.json").read_text())
    tensors = safetensors.numpy.load_file(checkpoint_dir / "model.safetensors")
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]

    writer = gguf.GGUFWriter(path, arch)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(config["rope_parameters"]["rope_theta"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_rope_dimension_count(config["hidden_size"] // heads)
    writer.add_eos_token_id(2)

    for name, array in tensors.items():
        if arch == "llama" and name.endswith("q_proj.weight"):
            array = permute_as_llama_cpp(array, heads)
        elif arch == "llama" and name.endswith("k_proj.weight"):
            array = permute_as_llama_cpp(array, kv_heads)
        # llama.cpp keeps vectors (norms, biases) in float32.
        if array.ndim == 2 and qtype != gguf.GGMLQuantizationType.F32:
            writer.add_tensor(gguf_name(name), gguf.quants.quantize(array, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(gguf_name(name), array.astype(np.float32))
    if rope_freqs is not None:
        writer.add_tensor("rope_freqs.weight", rope_freqs.astype(np.float32))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def llama3_rope_freqs():
    """llama.cpp stores llama3 scaling as one divisor per frequency: unscaled / scaled."""
    config = transformers.LlamaConfig(**SHAPE, rope_scaling=LLAMA3_ROPE, rope_theta=10000.0)
    scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](config)
    unscaled = 10000.0 ** (-np.arange(0, 16, 2) / 16)
    return unscaled / scaled.double().numpy()


def quantized_copy(source, target, qtype):
    """A safetensors checkpoint whose matrices went through quantize and dequantize."""

    def round_trip(tensors):
        for name, array in tensors.items():
            if array.ndim == 2:
                tensors[name] = gguf.quants.dequantize(gguf.quants.quantize(array, qtype), qtype)

    return copy_with_tensors(source, target, round_trip)


# Relative RMS logits error allowed against the float32 model. Q8_0 rounds each
# weight to 1/127 of its block's max (about 0.5% RMS), Q4_0 to 1/8 (about 8%);
# two random layers amplify that to the measured 0.027 and 0.38, and each bound
# is about twice the measured value.
QUANTIZATION_RMS_TOLERANCE = {
    gguf.GGMLQuantizationType.F32: 1e-6,
    gguf.GGMLQuantizationType.Q8_0: 0.06,
    gguf.GGMLQuantizationType.Q4_0: 0.8,
}


@pytest.mark.parametrize(
    "qtype",
    [gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.Q8_0, gguf.GGMLQuantizationType.Q4_0],
    ids=lambda q: q.name,
)
def test_gguf_llama_matches_safetensors(tmp_path, llama_dir, llama_logits, qtype):
    path = write_gguf(
        tmp_path / "tiny.gguf", llama_dir, arch="llama", qtype=qtype, rope_freqs=llama3_rope_freqs()
    )
    reference, _ = load_model(quantized_copy(llama_dir, tmp_path / "rounded", qtype))

    model, config = load_model(path)
    logits = np.asarray(forward(model, TOKENS))

    # Against the same rounded weights, the only error left is the loader's.
    difference = np.abs(logits - np.asarray(forward(reference, TOKENS))).max()
    to_float = np.abs(logits - llama_logits).max()
    relative_rms = np.sqrt(np.mean((logits - llama_logits) ** 2) / np.mean(llama_logits**2))
    print(
        f"GGUF llama {qtype.name}: max abs logits difference {difference:.2e} against the "
        f"rounded weights, {to_float:.2e} (relative RMS {relative_rms:.2e}) against float32"
    )
    assert config.rope_scaling_dict["rope_type"] == "freq_factors"
    assert not config.tie_word_embeddings
    assert difference <= 1e-4
    assert relative_rms <= QUANTIZATION_RMS_TOLERANCE[qtype]


def test_gguf_qwen2_tied_with_biases(tmp_path, qwen_dir):
    reference, _ = load_model(qwen_dir)
    path = write_gguf(
        tmp_path / "qwen.gguf", qwen_dir, arch="qwen2", qtype=gguf.GGMLQuantizationType.F32
    )

    model, config = load_model(path)
    difference = np.abs(forward(model, TOKENS) - forward(reference, TOKENS)).max()

    print(f"GGUF qwen2 F32: max abs logits difference {float(difference):.2e}")
    assert config.attention_bias
    assert config.tie_word_embeddings
    assert config.eos_token_ids == (2,)
    assert difference <= 1e-4


def test_unpermute_inverts_llama_cpp_order():
    weight = np.arange(8 * 16 * 3, dtype=np.float32).reshape(8 * 16, 3)

    restored = unpermute_rows(permute_as_llama_cpp(weight, 8), 8)

    np.testing.assert_array_equal(restored, weight)
    assert not np.array_equal(permute_as_llama_cpp(weight, 8), weight)


def test_gguf_unsupported_architecture(tmp_path):
    writer = gguf.GGUFWriter(tmp_path / "gemma.gguf", "gemma")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 32), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    with pytest.raises(ValueError) as error:
        load_model(tmp_path / "gemma.gguf")

    message = str(error.value)
    assert "'gemma'" in message
    assert "supported: llama, qwen2" in message


def test_gguf_unsupported_tensor_type(tmp_path):
    writer = gguf.GGUFWriter(tmp_path / "ints.gguf", "llama")
    writer.add_tensor("token_embd.weight", np.zeros((4, 32), np.int32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    with pytest.raises(ValueError) as error:
        load_model(tmp_path / "ints.gguf")

    message = str(error.value)
    assert "token_embd.weight uses I32, which is not supported" in message
    assert "Q4_0" in message


# Tokenizer.


def test_tokenizer_from_directory(tmp_path):
    backend = tokenizers.Tokenizer(
        tokenizers.models.WordLevel({"[UNK]": 0, "hello": 1, "world": 2}, unk_token="[UNK]")
    )
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    saved = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    saved.chat_template = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    saved.save_pretrained(tmp_path)

    tokenizer = load_tokenizer(tmp_path)

    assert tokenizer("hello world")["input_ids"] == [1, 2]
    assert tokenizer.chat_template == saved.chat_template


def test_tokenizer_path_errors(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"")

    with pytest.raises(FileNotFoundError, match="No tokenizer at"):
        load_tokenizer(tmp_path / "absent")
    with pytest.raises(ValueError, match="neither a directory nor a .gguf file"):
        load_tokenizer(tmp_path / "weights.bin")
