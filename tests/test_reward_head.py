"""Reward-head features, training, files and scorer, on tiny models and synthetic features."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy
import tokenizers
from flax import nnx
from lm_tiny import tiny_causal_lm, tiny_tokenizer
from tokenizers import models, pre_tokenizers, processors

from slgjax.lm import reward_head
from slgjax.lm.bert import BertConfig, BertModel
from slgjax.lm.features import PolicyFeatures, SentenceFeatures
from slgjax.lm.reward_head import (
    REGENERATE_COMMAND,
    RewardHead,
    RewardHeadScorer,
    build_head_scorer,
    default_reward_head_path,
    fit_reward_head,
    load_reward_head,
    save_reward_head,
)
from slgjax.lm.sampler import trace_count
from slgjax.lm.scorers import Scorer
from slgjax.metrics import auroc

QUESTIONS = ["What is 2 + 3?", "Name a colour.", "Say hi", "Hi", "Count to three."]
RESPONSES = ["5", "Blue, like the sky at noon.", "hi", "yo", "one two three"]
TEMPLATE = "Q: {question}\nA:"
METADATA = {"feature_source": "policy", "template": TEMPLATE, "policy": "tiny"}
WORDS = ["what", "is", "2", "3", "+", "?", "name", "a", "colour", ".", "say", "hi", "blue"]


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def policy():
    return tiny_causal_lm(seed=3)


@nnx.jit
def _hidden(model, tokens):
    """Unpadded reference pass, compiled because op-by-op calls are slower."""
    return model(tokens, return_hidden=True)[2]


def separable_data(seed, rows, *, dim=8):
    """Features on different scales whose labels follow a noisy linear rule."""
    rng = np.random.default_rng(seed)
    scales = np.geomspace(0.01, 100.0, dim)
    features = rng.normal(size=(rows, dim)) * scales + rng.normal(size=dim) * 10
    direction = np.linspace(-1.0, 1.0, dim) / scales
    margin = (features - features.mean(0)) @ direction
    labels = (margin + rng.normal(size=rows) * 0.1 > 0).astype(np.int32)
    return features.astype(np.float32), labels


@pytest.fixture(scope="module")
def linear_fit():
    features, labels = separable_data(0, 600)
    validation = separable_data(1, 300)
    head, history = fit_reward_head(
        features,
        labels,
        key=jax.random.key(0),
        num_steps=300,
        batch_size=128,
        learning_rate=3e-2,
        validation=validation,
    )
    return features, head, history


def test_fit_separates_held_out_data(linear_fit):
    _, head, history = linear_fit
    test_features, test_labels = separable_data(2, 500)
    score = float(auroc(head(test_features), test_labels))
    print(f"held-out AUROC of the linear head: {score:.4f}")

    assert score > 0.95
    np.testing.assert_array_equal(history.steps, np.arange(50, 301, 50))
    assert history.best_step in history.steps
    assert history.validation_loss.shape == history.train_loss.shape == (6,)
    assert np.all(np.isfinite(history.validation_loss))
    assert history.train_loss[-1] < np.log(2.0)


def test_fit_stores_standardization(linear_fit):
    features, head, _ = linear_fit
    np.testing.assert_allclose(head.mean[...], features.mean(0), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(head.scale[...], features.std(0), rtol=1e-5)


def test_constant_feature_gets_unit_scale():
    features, labels = separable_data(3, 64, dim=3)
    features[:, 1] = 7.0
    head, _ = fit_reward_head(features, labels, key=jax.random.key(1), num_steps=20)

    assert float(head.scale[...][1]) == 1.0
    assert np.all(np.isfinite(np.asarray(head(features))))


def test_fit_is_deterministic_for_a_key():
    features, labels = separable_data(4, 200)
    options = dict(hidden=4, num_steps=60, batch_size=32, eval_every=20)
    first, _ = fit_reward_head(features, labels, key=jax.random.key(7), **options)
    again, _ = fit_reward_head(features, labels, key=jax.random.key(7), **options)
    other, _ = fit_reward_head(features, labels, key=jax.random.key(8), **options)

    leaves = jax.tree.leaves(nnx.state(first))
    for left, right in zip(leaves, jax.tree.leaves(nnx.state(again)), strict=True):
        np.testing.assert_array_equal(left, right)
    kernel = first.hidden_layer.kernel[...]
    assert not np.array_equal(kernel, other.hidden_layer.kernel[...])


def test_fit_keeps_lowest_validation_loss():
    features, labels = separable_data(5, 200)
    # Flipped validation labels: the loss grows as the head learns the training rule.
    flipped = separable_data(6, 100)
    validation = (flipped[0], 1 - flipped[1])
    head, history = fit_reward_head(
        features,
        labels,
        key=jax.random.key(2),
        num_steps=100,
        eval_every=10,
        learning_rate=3e-2,
        validation=validation,
    )
    best = int(np.argmin(history.validation_loss))
    logits = np.asarray(head(validation[0]), np.float64)
    loss = np.mean(np.logaddexp(0.0, logits) - validation[1] * logits)

    assert history.best_step == history.steps[best] < history.steps[-1]
    np.testing.assert_allclose(loss, history.validation_loss[best], rtol=1e-4)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(labels=np.zeros(5)), r"labels has shape \(5,\) but the features have 10 rows"),
        (dict(labels=np.full(10, 2)), r"labels\[0\] is 2; labels must be 0 or 1"),
        (dict(labels=np.ones(10)), "all 10 training labels are 1"),
        (dict(features=np.full((10, 3), np.nan)), r"features\[0, 0\] is nan"),
        (dict(features=np.ones(10)), r"shape \[n, D\]; got shape \(10,\)"),
        (dict(validation=(np.ones((4, 2)), np.ones(4))), "validation features have 2 columns"),
        (dict(validation=(np.ones((4, 3)), np.ones(3))), "validation labels has shape"),
        (dict(num_steps=0), "num_steps must be a positive int"),
        (dict(hidden=-1), "hidden must be an int >= 0"),
        (dict(learning_rate=0.0), "need learning_rate > 0"),
    ],
)
def test_fit_rejects_bad_inputs(change, message):
    arguments = dict(features=np.ones((10, 3)), labels=np.arange(10) % 2, key=jax.random.key(0))
    arguments.update(change)
    with pytest.raises(ValueError, match=message):
        fit_reward_head(**arguments)


def random_head(feature_dim, *, hidden=0, seed=0):
    """A head with non-trivial statistics and output weights, without training."""
    head = RewardHead(feature_dim, hidden=hidden, rngs=nnx.Rngs(seed))
    rng = np.random.default_rng(seed)
    head.mean[...] = jnp.asarray(rng.normal(size=feature_dim), jnp.float32)
    head.scale[...] = jnp.asarray(rng.uniform(0.5, 2.0, size=feature_dim), jnp.float32)
    shape = head.output.kernel[...].shape
    head.output.kernel[...] = jnp.asarray(rng.normal(size=shape), jnp.float32)
    head.output.bias[...] = jnp.asarray([0.3], jnp.float32)
    return head


@pytest.mark.parametrize("hidden", [0, 5])
def test_save_load_round_trip_is_exact(tmp_path, hidden):
    head = random_head(6, hidden=hidden)
    path = tmp_path / "head.safetensors"
    save_reward_head(path, head, {**METADATA, "system": "Be brief."})
    loaded, metadata = load_reward_head(path)

    assert os.listdir(tmp_path) == ["head.safetensors"]
    assert metadata["feature_dim"] == "6"
    assert metadata["hidden"] == str(hidden)
    assert metadata["template"] == TEMPLATE
    assert metadata["system"] == "Be brief."
    saved = nnx.to_flat_state(nnx.state(head))
    restored = dict(nnx.to_flat_state(nnx.state(loaded)))
    assert {path for path, _ in saved} == set(restored)
    for variable_path, variable in saved:
        assert type(restored[variable_path]) is type(variable)
        np.testing.assert_array_equal(restored[variable_path][...], variable[...])
    features = np.random.default_rng(1).normal(size=(4, 6))
    np.testing.assert_array_equal(loaded(features), head(features))


def test_save_rejects_bad_metadata(tmp_path):
    head = random_head(6)
    path = tmp_path / "head.safetensors"
    with pytest.raises(ValueError, match=r"lacks \['policy'\]"):
        save_reward_head(path, head, {"feature_source": "policy", "template": TEMPLATE})
    with pytest.raises(ValueError, match="disagrees with the head's feature_dim=6"):
        save_reward_head(path, head, {**METADATA, "feature_dim": "7"})
    with pytest.raises(ValueError, match="feature_source'\\]='bert' is unknown"):
        save_reward_head(path, head, {**METADATA, "feature_source": "bert"})
    with pytest.raises(ValueError, match="must map str to str"):
        save_reward_head(path, head, {**METADATA, "policy": 3})
    assert not path.exists()


def test_missing_head_file_names_the_command(tmp_path, monkeypatch):
    missing = tmp_path / "absent.safetensors"
    with pytest.raises(FileNotFoundError, match=REGENERATE_COMMAND):
        load_reward_head(missing)

    assert default_reward_head_path().parts[-2:] == ("data", "reward_head.safetensors")
    assert default_reward_head_path().parent.parent.name == "slgjax"
    monkeypatch.setattr(reward_head, "default_reward_head_path", lambda: missing)
    with pytest.raises(FileNotFoundError, match=r"python experiments/train_reward_head\.py"):
        load_reward_head()


def test_other_safetensors_file_is_rejected(tmp_path):
    path = tmp_path / "weights.safetensors"
    safetensors.numpy.save_file({"mean": np.zeros(3, np.float32)}, path)
    with pytest.raises(ValueError, match="is not a reward-head file"):
        load_reward_head(path)


def test_head_rejects_wrong_feature_width():
    with pytest.raises(ValueError, match=r"shape \(2, 5\) do not fit a head for feature_dim=6"):
        random_head(6)(np.ones((2, 5)))


def test_policy_features_match_forward_at_last_token(tokenizer, policy):
    features = PolicyFeatures(policy, tokenizer, template=TEMPLATE, batch_size=2, min_bucket=16)
    before = trace_count("shared_prefix")
    actual = features(QUESTIONS, RESPONSES)

    assert features.source == "policy"
    assert features.feature_dim == 32
    assert actual.shape == (5, 32)
    assert actual.dtype == np.float32
    for index, (question, response) in enumerate(zip(QUESTIONS, RESPONSES, strict=True)):
        ids = features.encode(question, response)
        text = tokenizer.decode(ids)
        assert text.startswith(f"<|im_start|>user\nQ: {question}\nA:<|im_end|>")
        assert text.endswith(f"<|im_start|>assistant\n{response}<|im_end|>\n")
        expected = _hidden(policy, jnp.asarray([ids]))[0, -1]
        np.testing.assert_allclose(actual[index], expected, rtol=1e-5, atol=1e-5)

    # A repeat in another order compiles nothing new.
    traces = trace_count("shared_prefix") - before
    assert traces >= 1
    features(QUESTIONS[::-1], RESPONSES[::-1])
    assert trace_count("shared_prefix") - before == traces


def test_policy_features_ignore_batch_and_order(tokenizer, policy):
    features = PolicyFeatures(policy, tokenizer, template=TEMPLATE, batch_size=2)
    reference = features(QUESTIONS, RESPONSES)
    order = [3, 0, 4, 2, 1]
    wide = PolicyFeatures(policy, tokenizer, template=TEMPLATE, batch_size=3, min_bucket=64)
    shuffled = wide([QUESTIONS[i] for i in order], [RESPONSES[i] for i in order])

    np.testing.assert_allclose(shuffled, reference[order], rtol=1e-5, atol=1e-5)
    assert features([], []).shape == (0, 32)


def test_policy_features_use_system_message(tokenizer, policy):
    features = PolicyFeatures(policy, tokenizer, system="Be brief.")
    text = tokenizer.decode(features.encode("Hi", "yo"))
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi")
    with pytest.raises(ValueError, match="template must contain"):
        PolicyFeatures(policy, tokenizer, template="no field")
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        features(["a", "b"], ["c"])


def tiny_sentence_encoder():
    """A random two-layer BERT with a word-level tokenizer that adds [CLS] and [SEP]."""
    from slgjax.lm.sentence_encoder import SentenceEncoder

    vocab = {token: index for index, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]"])}
    vocab.update({word: len(vocab) + index for index, word in enumerate(WORDS)})
    backend = tokenizers.Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        intermediate_size=24,
        num_layers=2,
        num_heads=2,
        max_position_embeddings=32,
        type_vocab_size=2,
        layer_norm_eps=1e-12,
    )
    model = BertModel(config, rngs=nnx.Rngs(0))
    return SentenceEncoder(model, backend, max_length=32, lowercase=True)


@pytest.fixture(scope="module")
def sentence_encoder():
    return tiny_sentence_encoder()


def test_sentence_features_concatenate_products(sentence_encoder):
    features = SentenceFeatures(sentence_encoder, batch_size=4)
    questions = [QUESTIONS[0], QUESTIONS[0], QUESTIONS[1]]
    responses = [RESPONSES[0], RESPONSES[2], RESPONSES[1]]
    actual = features(questions, responses)

    assert features.source == "minilm"
    assert features.feature_dim == 48
    assert actual.shape == (3, 48)
    for row in range(3):
        q = sentence_encoder.encode([questions[row]])[0]
        r = sentence_encoder.encode([responses[row]])[0]
        np.testing.assert_allclose(actual[row], np.concatenate([q, r, q * r]), atol=1e-6)
    assert features([], []).shape == (0, 48)


def test_scorer_returns_head_logits(tokenizer, policy):
    features = PolicyFeatures(policy, tokenizer, template=TEMPLATE, batch_size=4)
    head = random_head(32, hidden=3)
    scorer = RewardHeadScorer(features, head, metadata=METADATA)
    scores = scorer.score(QUESTIONS, RESPONSES)

    assert isinstance(scorer, Scorer)
    assert scores.shape == (5,)
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores, head(features(QUESTIONS, RESPONSES)), atol=1e-5)
    assert scorer.score([], []).shape == (0,)


def test_scorer_rejects_feature_size_mismatch(tokenizer, policy):
    features = PolicyFeatures(policy, tokenizer)
    message = r"features have 32 dimensions \(source 'policy'\) but the head expects 10"
    with pytest.raises(ValueError, match=message):
        RewardHeadScorer(features, random_head(10))
    with pytest.raises(ValueError, match="use the policy or encoder the head was trained on"):
        RewardHeadScorer(features, random_head(10))
    metadata = {**METADATA, "feature_source": "minilm"}
    with pytest.raises(ValueError, match="trained on 'minilm' features but these are 'policy'"):
        RewardHeadScorer(features, random_head(32), metadata=metadata)


def test_build_head_scorer_uses_stored_template(tmp_path, tokenizer, policy):
    head = random_head(32)
    path = tmp_path / "policy_head.safetensors"
    save_reward_head(path, head, {**METADATA, "system": "Be brief."})
    scorer = build_head_scorer(policy, tokenizer, path, batch_size=4)

    assert scorer.features.template == TEMPLATE
    assert scorer.features.system == "Be brief."
    expected = PolicyFeatures(policy, tokenizer, template=TEMPLATE, system="Be brief.")
    np.testing.assert_allclose(
        scorer.score(QUESTIONS[:2], RESPONSES[:2]),
        head(expected(QUESTIONS[:2], RESPONSES[:2])),
        atol=1e-5,
    )

    narrow = tmp_path / "narrow.safetensors"
    save_reward_head(narrow, random_head(8), METADATA)
    with pytest.raises(ValueError, match="features have 32 dimensions"):
        build_head_scorer(policy, tokenizer, narrow)


def test_build_head_scorer_loads_sentence_encoder(
    tmp_path, tokenizer, policy, sentence_encoder, monkeypatch
):
    from slgjax.lm import bert_checkpoint

    monkeypatch.setattr(bert_checkpoint, "load_sentence_encoder", lambda: sentence_encoder)
    path = tmp_path / "minilm_head.safetensors"
    save_reward_head(path, random_head(48), {**METADATA, "feature_source": "minilm"})
    scorer = build_head_scorer(policy, tokenizer, path)

    assert isinstance(scorer.features, SentenceFeatures)
    assert scorer.score(QUESTIONS[:2], RESPONSES[:2]).shape == (2,)
