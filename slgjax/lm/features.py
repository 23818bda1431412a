"""Frozen features of (question, response) pairs for a trained reward head.

Two sources, each a callable ``(questions, responses) -> float32[n, D]``:

- :class:`PolicyFeatures`: the policy's final hidden state (after the final
  RMSNorm) at the last token of the chat [user: the formatted question,
  assistant: the response], so ``D`` is the policy's hidden size ``H``;
- :class:`SentenceFeatures`: sentence embeddings ``q`` of the question and
  ``r`` of the response, concatenated as ``[q, r, q * r]``, so ``D = 3 H``
  for an encoder of width ``H``.

Questions are the bare question texts: :class:`PolicyFeatures` applies the
user-message template itself.
"""

from collections.abc import Sequence

import numpy as np

from slgjax.lm.scorers import _chat_ids, _check_pairs
from slgjax.lm.sentence_encoder import SentenceEncoder
from slgjax.lm.shared_prefix import SharedPrefixForward
from slgjax.tasks.prompts import DEFAULT_TEMPLATE, format_question

__all__ = ["FEATURE_SOURCES", "PolicyFeatures", "SentenceFeatures"]

# Values of the ``source`` attribute, stored with a trained head.
FEATURE_SOURCES = ("policy", "minilm")


class PolicyFeatures:
    """The policy's last-token hidden state on the chat of question and response.

    The input is the tokenizer's chat template applied to an optional system
    turn, the user turn ``format_question(question, template=template)`` and
    the assistant turn ``response``, without a generation prompt. The feature
    vector is the output of the final RMSNorm at the last token of that chat,
    the position where a sequence-classification reward model reads its score
    (Liu et al. 2024, Skywork-Reward, arXiv:2410.18451).

    The chats of one question share their first tokens, which run once per
    question (:class:`~slgjax.lm.shared_prefix.SharedPrefixForward`); the rest
    of each chat runs in calls of ``batch_size`` rows padded to power-of-two
    length buckets (at least ``min_bucket``). Results do not depend on the
    call a pair lands in.

    Args:
      model: a :class:`~slgjax.lm.llama.LlamaForCausalLM`.
      tokenizer: its tokenizer, with a chat template.
      template: the user message, with a ``{question}`` field.
      system: optional system message.
      batch_size: rows per compiled forward pass.
      min_bucket: smallest padded length.
      max_length: longest accepted chat in tokens; defaults to the model's
        ``max_position_embeddings``.

    Attributes:
      source: ``"policy"``.
      feature_dim: ``H``, the policy's hidden size.
    """

    source = "policy"

    def __init__(
        self,
        model,
        tokenizer,
        *,
        template: str = DEFAULT_TEMPLATE,
        system: str | None = None,
        batch_size: int = 16,
        min_bucket: int = 16,
        max_length: int | None = None,
    ):
        if "{question}" not in template:
            raise ValueError(f"template must contain '{{question}}'; got {template!r}.")
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                f"tokenizer {type(tokenizer).__name__} has no chat_template; load one that "
                "ships a template or set tokenizer.chat_template."
            )
        config = model.config
        self.tokenizer = tokenizer
        self.template = template
        self.system = system
        self.feature_dim = int(config.hidden_size)
        self._run = SharedPrefixForward(
            model,
            batch_size=batch_size,
            min_bucket=min_bucket,
            pad_id=config.pad_token_id or 0,
            max_length=max_length or config.max_position_embeddings,
        )

    def encode(self, question: str, response: str) -> list[int]:
        """Token ids of the chat whose last token gives the features."""
        messages = [
            {"role": "user", "content": format_question(question, template=self.template)},
            {"role": "assistant", "content": response},
        ]
        if self.system is not None:
            messages = [{"role": "system", "content": self.system}, *messages]
        return _chat_ids(self.tokenizer, messages, add_generation_prompt=False)

    def __call__(self, questions: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """Return float32[n, H] hidden states, one row per (question, response) pair."""
        _check_pairs(questions, responses)
        encoded = [self.encode(q, r) for q, r in zip(questions, responses, strict=True)]
        return self._run(encoded, questions)


class SentenceFeatures:
    """Sentence embeddings of question and response, combined as ``[q, r, q * r]``.

    ``q`` and ``r`` come from :meth:`SentenceEncoder.encode`. The product term
    lets a linear head score how well the response matches the question. These
    are the pair features of InferSent (Conneau et al. 2017, arXiv:1705.02364)
    without the absolute difference. Each distinct text is embedded once.

    Args:
      encoder: a :class:`~slgjax.lm.sentence_encoder.SentenceEncoder`, for
        example all-MiniLM-L6-v2 from
        :func:`~slgjax.lm.bert_checkpoint.load_sentence_encoder`.
      batch_size: texts per forward pass of the encoder.

    Attributes:
      source: ``"minilm"``.
      feature_dim: ``3 H`` for an encoder of width ``H``.
    """

    source = "minilm"

    def __init__(self, encoder: SentenceEncoder, *, batch_size: int = 64):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
        self.encoder = encoder
        self.batch_size = batch_size
        self.feature_dim = 3 * int(encoder.embedding_dim)

    def __call__(self, questions: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """Return float32[n, 3 H] features ``[q, r, q * r]``, one row per pair."""
        _check_pairs(questions, responses)
        texts = sorted(set(questions) | set(responses))
        embeddings = self.encoder.encode(texts, batch_size=self.batch_size)
        row = {text: index for index, text in enumerate(texts)}

        question_rows = embeddings[[row[q] for q in questions]]
        response_rows = embeddings[[row[r] for r in responses]]
        features = np.concatenate(
            [question_rows, response_rows, question_rows * response_rows], axis=1
        )
        return features.astype(np.float32).reshape(len(questions), self.feature_dim)
