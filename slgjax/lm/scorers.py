"""Scorers that map (prompt, response) pairs to one reward each.

Every scorer follows the :class:`Scorer` protocol,
``score(prompts, responses) -> float32[n]``:

- :class:`RewardModelScorer`: an outcome reward model, a sequence classifier
  read at the last token of the chat [user prompt, assistant response];
- :class:`JudgeScorer`: an LM as judge, the log-odds
  ``log p("Yes") - log p("No")`` of the next token after a grading prompt;
- :class:`VerifierScorer`: a ground-truth check through a :class:`Verifier`.

:class:`~slgjax.lm.reward_head.RewardHeadScorer`, a trained head on frozen
features, follows the same protocol from its own module.

The model scorers run one jit-compiled forward pass per batch. Batches have a
fixed number of rows and lengths padded to power-of-two buckets, so a run
compiles once per bucket, not once per input. The judge runs the grading
prompt's part before the response once per prompt
(:class:`~slgjax.lm.shared_prefix.SharedPrefixForward`).
"""

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from slgjax.lm.sampler import _TRACE_COUNTS, bucket_length
from slgjax.lm.shared_prefix import SharedPrefixForward

__all__ = [
    "DEFAULT_JUDGE_TEMPLATE",
    "JudgeScorer",
    "RewardModelScorer",
    "Scorer",
    "Verifier",
    "VerifierScorer",
]

DEFAULT_JUDGE_TEMPLATE = (
    "Here is a question and a proposed answer.\n\n"
    "Question: {prompt}\n\n"
    "Proposed answer: {response}\n\n"
    "Is the proposed answer correct? Reply with Yes or No."
)


@runtime_checkable
class Scorer(Protocol):
    """Anything that scores responses to prompts, one float per pair."""

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """Return float32[n] scores of ``responses[i]`` as an answer to ``prompts[i]``."""
        ...


@runtime_checkable
class Verifier(Protocol):
    """A ground-truth check: a reward (often 0 or 1) for a response given the answer."""

    def __call__(self, question: str, response: str, answer: str) -> float: ...


def _check_pairs(prompts: Sequence[str], responses: Sequence[str]) -> None:
    if len(prompts) != len(responses):
        raise ValueError(
            f"got {len(prompts)} prompts but {len(responses)} responses; pass one prompt "
            "per response."
        )


def _chat_ids(tokenizer, messages, *, add_generation_prompt: bool) -> list[int]:
    text = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )
    return tokenizer(text, add_special_tokens=False)["input_ids"]


class _BatchedForward:
    """Run a jitted ``(tokens, valid) -> float32[rows, *row_shape]`` over fixed-shape batches.

    ``row_shape`` is the shape of one row's output: ``()`` for a score, ``(H,)``
    for a feature vector. It sets the shape of the empty result too.
    """

    def __init__(
        self,
        model,
        forward: Callable,
        *,
        batch_size: int,
        min_bucket: int,
        pad_id: int,
        max_length: int,
        row_shape: tuple[int, ...] = (),
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size=}.")
        if min_bucket < 1:
            raise ValueError(f"min_bucket must be >= 1, got {min_bucket=}.")
        self.graphdef, self.state = nnx.split(model)
        self.forward = forward
        self.batch_size = int(batch_size)
        self.min_bucket = int(min_bucket)
        self.pad_id = int(pad_id)
        self.max_length = int(max_length)
        self.row_shape = tuple(int(size) for size in row_shape)

    def __call__(self, sequences: list[list[int]]) -> np.ndarray:
        for index, sequence in enumerate(sequences):
            if not sequence or len(sequence) > self.max_length:
                raise ValueError(
                    f"input {index} has {len(sequence)} tokens; the scorer accepts 1 to "
                    f"max_length={self.max_length}. Shorten the response or raise max_length."
                )

        # Sorting by length keeps long and short inputs in separate batches.
        order = np.argsort([len(sequence) for sequence in sequences], kind="stable")
        outputs = np.zeros((len(sequences), *self.row_shape), np.float32)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            longest = max(len(sequences[row]) for row in rows)
            bucket = bucket_length(longest, min_bucket=self.min_bucket, max_bucket=self.max_length)
            tokens = np.full((self.batch_size, bucket), self.pad_id, np.int32)
            lengths = np.ones(self.batch_size, np.int32)
            for slot, row in enumerate(rows):
                tokens[slot, : len(sequences[row])] = sequences[row]
                lengths[slot] = len(sequences[row])
            valid = np.arange(bucket)[None, :] < lengths[:, None]
            batch_outputs = self.forward(self.graphdef, self.state, tokens, valid)
            outputs[rows] = np.asarray(batch_outputs)[: len(rows)]
        return outputs


@functools.partial(jax.jit, static_argnames=("graphdef", "label"))
def _classifier_scores(graphdef, state, tokens, valid, *, label: int):
    _TRACE_COUNTS["reward_model"] += 1
    model = nnx.merge(graphdef, state)
    return model(tokens, valid=valid)[:, label].astype(jnp.float32)


class RewardModelScorer:
    """Outcome reward model: a sequence classifier on the chat of prompt and response.

    The input is the tokenizer's chat template applied to
    ``[{"role": "user", "content": prompt}, {"role": "assistant", "content":
    response}]``, and the reward is the classifier output at its last token
    (the Skywork-Reward convention; Liu et al. 2024, arXiv:2410.18451).

    Args:
      model: a :class:`~slgjax.lm.llama.LlamaForSequenceClassification`.
      tokenizer: the reward model's tokenizer, with a chat template.
      batch_size: rows per compiled forward pass.
      min_bucket: smallest padded length.
      max_length: longest accepted input in tokens; defaults to the model's
        ``max_position_embeddings``.
      label: which output of the head to return (0 for a one-output head).
    """

    def __init__(
        self,
        model,
        tokenizer,
        *,
        batch_size: int = 8,
        min_bucket: int = 16,
        max_length: int | None = None,
        label: int = 0,
    ):
        config = model.config
        if not 0 <= label < config.num_labels:
            raise ValueError(f"label={label} is outside the head's {config.num_labels} outputs.")
        self.tokenizer = tokenizer
        self._run = _BatchedForward(
            model,
            functools.partial(_classifier_scores, label=int(label)),
            batch_size=batch_size,
            min_bucket=min_bucket,
            pad_id=config.pad_token_id or 0,
            max_length=max_length or config.max_position_embeddings,
        )

    def encode(self, prompt: str, response: str) -> list[int]:
        """Token ids of the two-turn chat that the reward model reads."""
        messages = [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": response},
        ]
        return _chat_ids(self.tokenizer, messages, add_generation_prompt=False)

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """Return float32[n] rewards, the head's output at the last token of each chat."""
        _check_pairs(prompts, responses)
        encoded = [self.encode(p, r) for p, r in zip(prompts, responses, strict=True)]
        return self._run(encoded)


class JudgeScorer:
    """LM as judge: log-odds of a "Yes" against a "No" answer to a grading prompt.

    The grading prompt is ``template.format(prompt=..., response=...)``, sent as
    a user turn through the chat template with the assistant header appended.
    The score is ``z_yes - z_no``, the difference of the next-token logits, which
    equals ``log p(yes) - log p(no)`` under the model (Zheng et al. 2023,
    "Judging LLM-as-a-judge", arXiv:2306.05685, for the judge setting).

    Args:
      model: a :class:`~slgjax.lm.llama.LlamaForCausalLM` (the policy or another
        checkpoint).
      tokenizer: its tokenizer, with a chat template.
      template: grading prompt with ``{prompt}`` and ``{response}`` fields.
      yes: text of the positive answer; must be a single token.
      no: text of the negative answer; must be a single token.
      batch_size, min_bucket, max_length: as for :class:`RewardModelScorer`.

    Raises:
      ValueError: if ``yes`` or ``no`` is not exactly one token, or the template
        lacks a field.
    """

    def __init__(
        self,
        model,
        tokenizer,
        *,
        template: str = DEFAULT_JUDGE_TEMPLATE,
        yes: str = "Yes",
        no: str = "No",
        batch_size: int = 8,
        min_bucket: int = 16,
        max_length: int | None = None,
    ):
        for field in ("{prompt}", "{response}"):
            if field not in template:
                raise ValueError(f"template must contain {field}, got {template=}.")
        self.template = template
        self.tokenizer = tokenizer
        self.choice_ids = np.asarray([self._single_token(yes), self._single_token(no)], np.int32)
        config = model.config
        self._run = SharedPrefixForward(
            model,
            choices=self.choice_ids,
            batch_size=batch_size,
            min_bucket=min_bucket,
            pad_id=config.pad_token_id or 0,
            max_length=max_length or config.max_position_embeddings,
        )

    def _single_token(self, text: str) -> int:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(
                f"the judge's answer word {text!r} encodes to {len(ids)} tokens {ids}; choose an "
                "answer word that is a single token."
            )
        return int(ids[0])

    def encode(self, prompt: str, response: str) -> list[int]:
        """Token ids of the grading chat, ending with the assistant header."""
        content = self.template.format(prompt=prompt, response=response)
        messages = [{"role": "user", "content": content}]
        return _chat_ids(self.tokenizer, messages, add_generation_prompt=True)

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """Return float32[n] log-odds ``log p(yes) - log p(no)`` of the judge."""
        _check_pairs(prompts, responses)
        encoded = [self.encode(p, r) for p, r in zip(prompts, responses, strict=True)]
        return self._run(encoded, prompts)


class VerifierScorer:
    """Score responses with a ground-truth :class:`Verifier` and known answers.

    Args:
      verifier: callable ``(question, response, answer) -> float``.
      answers: the reference answer of each prompt, keyed by the prompt text.
    """

    def __init__(self, verifier: Verifier, answers: Mapping[str, str]):
        if not callable(verifier):
            raise ValueError(f"verifier must be callable, got {type(verifier).__name__}.")
        self.verifier = verifier
        self.answers = dict(answers)

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """Return float32[n] verifier rewards."""
        _check_pairs(prompts, responses)
        scores = np.zeros(len(prompts), np.float32)
        for index, (prompt, response) in enumerate(zip(prompts, responses, strict=True)):
            if prompt not in self.answers:
                raise ValueError(
                    f"no reference answer for prompt {index} ({prompt[:60]!r}); add it to answers."
                )
            scores[index] = float(self.verifier(prompt, response, self.answers[prompt]))
        return scores
