"""BERT encoder and sentence embeddings against transformers and sentence-transformers."""

import importlib.util
import json
import re

import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy
import tokenizers
import torch
import transformers
from flax import nnx

from slgjax.lm import bert_checkpoint
from slgjax.lm.bert import BertConfig
from slgjax.lm.bert_checkpoint import (
    INSTALL_COMMAND,
    bert_tensor_name,
    default_sentence_encoder_path,
    load_bert_model,
    load_sentence_encoder,
)
from slgjax.lm.sentence_encoder import SentenceEncoder, pool_tokens, pooling_mode_from_config

TINY = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=64,
    type_vocab_size=2,
)
LONG_TEXT = " ".join(f"word{i} is followed by another clause," for i in range(120))
TEXTS = [
    "The cat sat on the mat.",
    "",
    LONG_TEXT,
    "Déjà vu: naïve café owners serve crème brûlée in 東京.",
    "Short.",
    "A medium-length sentence about reward models, best-of-N sampling and tails.",
    "x " * 40,
]


def minilm_path():
    try:
        return default_sentence_encoder_path()
    except FileNotFoundError as error:
        pytest.skip(f"all-MiniLM-L6-v2 is not installed ({error})")


@pytest.fixture(scope="module")
def encoder():
    return load_sentence_encoder(minilm_path())


@pytest.fixture(scope="module")
def reference_model():
    path = minilm_path()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(str(path), device="cpu")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A tiny random transformers BertModel with non-trivial LayerNorm parameters."""
    directory = tmp_path_factory.mktemp("bert")
    torch.manual_seed(0)
    model = transformers.BertModel(transformers.BertConfig(**TINY)).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "LayerNorm" in name:
                noise = torch.randn(parameter.shape, generator=generator)
                parameter.copy_(noise * 0.2 + (1.0 if name.endswith("weight") else 0.0))
    model.save_pretrained(directory)
    return directory, model


def test_sentence_embeddings_match_sentence_transformers(encoder, reference_model):
    expected = reference_model.encode(TEXTS, convert_to_numpy=True, batch_size=4)
    actual = encoder.encode(TEXTS, batch_size=4)
    difference = np.abs(actual - expected).max()
    print(f"max abs difference to sentence-transformers: {difference:.3g}")

    assert actual.shape == (len(TEXTS), 384)
    assert actual.dtype == np.float32
    assert difference <= 1e-5
    np.testing.assert_allclose(np.linalg.norm(actual, axis=1), 1.0, atol=1e-6)


def test_truncation_matches_sentence_transformers(encoder, reference_model):
    features = reference_model.preprocess([LONG_TEXT])
    expected_ids = features["input_ids"][0][features["attention_mask"][0].bool()].tolist()
    ids = encoder.tokenize([LONG_TEXT])[0]

    assert len(ids) == encoder.max_length == 256
    assert ids == expected_ids


def test_encode_order_and_batches_agree(encoder):
    single = np.concatenate([encoder.encode([text]) for text in TEXTS[:4]])
    batched = encoder.encode(TEXTS[:4], batch_size=3)
    np.testing.assert_allclose(batched, single, atol=1e-6)


def test_encode_reuses_length_buckets(encoder):
    first, second = ["one two three", "four five six seven"], ["a b", "a b c"]
    longest = [max(len(ids) for ids in encoder.tokenize(texts)) for texts in (first, second)]
    assert longest == [6, 5]

    encoder.encode(first, batch_size=2)
    traces = encoder.trace_count
    encoder.encode(second, batch_size=2)
    assert encoder.trace_count == traces


def test_encode_rejects_bad_inputs(encoder):
    assert encoder.encode([]).shape == (0, 384)
    with pytest.raises(ValueError, match=r"pass \[text\]"):
        encoder.encode("one text")
    with pytest.raises(ValueError, match="batch_size"):
        encoder.encode(["a"], batch_size=0)


def test_tiny_bert_matches_transformers(tiny_dir):
    directory, reference = tiny_dir
    model, config = load_bert_model(directory)
    assert config.num_layers == TINY["num_hidden_layers"]

    rng = np.random.default_rng(0)
    tokens = rng.integers(1, TINY["vocab_size"], (3, 12))
    token_types = rng.integers(0, 2, (3, 12))
    lengths = np.array([12, 7, 1])
    valid = np.arange(12)[None] < lengths[:, None]
    with torch.no_grad():
        expected = reference(
            input_ids=torch.tensor(tokens),
            attention_mask=torch.tensor(valid.astype(np.int64)),
            token_type_ids=torch.tensor(token_types),
        ).last_hidden_state.numpy()
    actual = np.asarray(
        nnx.jit(lambda m, t, v, s: m(t, valid=v, token_types=s))(
            model, jnp.asarray(tokens), jnp.asarray(valid), jnp.asarray(token_types)
        )
    )
    difference = np.abs(actual - expected)[valid].max()
    print(f"max abs difference to transformers BertModel: {difference:.3g}")
    assert difference <= 1e-5


def test_misshaped_tensor_is_named(tiny_dir, tmp_path):
    directory, _ = tiny_dir
    tensors = safetensors.numpy.load_file(directory / "model.safetensors")
    name = "encoder.layer.1.intermediate.dense.weight"
    tensors[name] = np.zeros((36, 32), np.float32)
    safetensors.numpy.save_file(tensors, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text((directory / "config.json").read_text())

    message = re.escape(f"{name}: checkpoint shape (36, 32), expected (37, 32)")
    with pytest.raises(ValueError, match=message):
        load_bert_model(tmp_path)


def test_tensor_names_are_mapped():
    assert bert_tensor_name("bert.encoder.layer.0.output.LayerNorm.gamma") == (
        "encoder.layer.0.output.LayerNorm.weight"
    )
    assert bert_tensor_name("embeddings.LayerNorm.beta") == "embeddings.LayerNorm.bias"
    assert bert_tensor_name("pooler.dense.weight") is None
    assert bert_tensor_name("embeddings.position_ids") is None


def test_unsupported_configs_are_rejected():
    raw = {**TINY, "model_type": "bert", "hidden_act": "gelu_new"}
    with pytest.raises(ValueError, match="hidden_act='gelu_new'"):
        BertConfig.from_hf_config(raw)
    with pytest.raises(ValueError, match="'lasttoken' is not implemented"):
        pooling_mode_from_config({"pooling_mode_lasttoken": True})
    with pytest.raises(ValueError, match="exactly one mode"):
        pooling_mode_from_config({"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": True})
    assert pooling_mode_from_config({"pooling_mode": "max"}) == "max"


def test_unsupported_module_is_rejected(tmp_path):
    modules = [
        {"idx": index, "path": path, "type": f"sentence_transformers.models.{kind}"}
        for index, (path, kind) in enumerate(
            [("", "Transformer"), ("1_Pooling", "Pooling"), ("2_Dense", "Dense")]
        )
    ]
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ValueError, match="models.Dense"):
        load_sentence_encoder(tmp_path)


@pytest.mark.parametrize("mode", ["mean", "mean_sqrt_len_tokens", "max", "cls"])
def test_pool_tokens_matches_numpy(mode):
    rng = np.random.default_rng(2)
    hidden = rng.normal(size=(3, 5, 4)).astype(np.float32)
    lengths = [5, 2, 1]
    valid = np.arange(5)[None] < np.array(lengths)[:, None]
    expected = []
    for row, length in enumerate(lengths):
        states = hidden[row, :length]
        expected.append(
            {
                "mean": states.mean(0),
                "mean_sqrt_len_tokens": states.sum(0) / np.sqrt(length),
                "max": states.max(0),
                "cls": states[0],
            }[mode]
        )
    actual = pool_tokens(jnp.asarray(hidden), jnp.asarray(valid), mode=mode)
    np.testing.assert_allclose(np.asarray(actual), np.stack(expected), rtol=1e-6, atol=1e-6)


def test_encoder_leaves_tokenizer_unchanged(tiny_dir):
    directory, _ = tiny_dir
    model, _ = load_bert_model(directory)
    tokenizer = tokenizers.Tokenizer.from_file(str(minilm_path() / "tokenizer.json"))
    before = tokenizer.truncation
    encoder = SentenceEncoder(model, tokenizer, max_length=16)

    assert tokenizer.truncation == before
    assert len(encoder.tokenize([LONG_TEXT])[0]) == 16


def test_missing_package_names_install_command(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name == bert_checkpoint._PACKAGE else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(FileNotFoundError, match=re.escape(INSTALL_COMMAND)):
        load_sentence_encoder()


def test_model_rejects_too_long_input(tiny_dir):
    directory, _ = tiny_dir
    model, _ = load_bert_model(directory)
    with pytest.raises(ValueError, match="max_position_embeddings=64"):
        model(jnp.zeros((1, 65), jnp.int32))
