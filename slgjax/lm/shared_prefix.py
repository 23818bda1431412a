"""Last-token forward passes over many sequences that share a prefix.

A scorer reads many responses to one question, and every input starts with
the same chat header and question. :class:`SharedPrefixForward` runs that
shared prefix once into a KV cache, copies the cache to every row, and runs
only the rows' own suffixes on top of it. For a 70-token prompt and 20-token
responses that is about a fifth of the work of full forward passes, with the
same result up to floating-point rounding: causal attention makes a token's
hidden state depend only on the tokens before it.

Shapes: R rows per call, P padded prefix length, S padded suffix length, H
hidden size.
"""

import functools
from collections.abc import Hashable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from slgjax.lm import llama
from slgjax.lm.sampler import _TRACE_COUNTS, _head_logits, bucket_length

__all__ = ["SharedPrefixForward", "common_prefix_length"]


def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Return the number of leading tokens that all ``sequences`` have in common."""
    first = sequences[0]
    length = min(len(sequence) for sequence in sequences)
    for sequence in sequences[1:]:
        limit = length
        length = 0
        while length < limit and sequence[length] == first[length]:
            length += 1
    return length


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _suffix_last_hidden(graphdef, state, prefix, prefix_length, suffix, suffix_valid, choices):
    """Hidden state (or choice log-odds) at the last valid token of each row.

    Args:
      prefix: int32[1, P], valid up to ``prefix_length`` (0 is allowed).
      suffix: int32[R, S] with ``suffix_valid`` bool[R, S] (right padding).
      choices: None, or int32[2] token ids; then the result is the log-odds
        ``z[choices[0]] - z[choices[1]]`` of the next token instead of the
        hidden state.
    """
    _TRACE_COUNTS["shared_prefix"] += 1
    model = nnx.merge(graphdef, state)
    rows, suffix_room = suffix.shape
    prefix_room = prefix.shape[1]

    cache = llama.init_cache(
        model.config,
        batch_size=1,
        max_length=prefix_room + suffix_room,
        dtype=getattr(model, "dtype", jnp.float32),
    )
    prefix_valid = jnp.arange(prefix_room)[None, :] < prefix_length
    _, cache = model.model(prefix, cache=cache, valid=prefix_valid)

    # Padded prefix slots past prefix_length are overwritten by the suffix,
    # because the cache length counts valid tokens only.
    cache = llama.KVCache(
        k=jnp.repeat(cache.k, rows, axis=1),
        v=jnp.repeat(cache.v, rows, axis=1),
        length=jnp.repeat(cache.length, rows, axis=0),
    )
    hidden, _ = model.model(suffix, cache=cache, valid=suffix_valid)
    last = jnp.sum(suffix_valid, axis=-1, dtype=jnp.int32) - 1
    pooled = jnp.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0]
    if choices is None:
        return pooled.astype(jnp.float32)
    logits = _head_logits(model, pooled)
    return logits[:, choices[0]] - logits[:, choices[1]]


class SharedPrefixForward:
    """Run a causal LM over groups of sequences, computing each group's shared prefix once.

    Sequences of one group (for example, the chats of every response to one
    question) usually share their first tokens. For each group the runner
    finds the longest prefix common to all its sequences (keeping at least one
    token of every sequence as its suffix), runs it once, and runs the
    suffixes in calls of ``batch_size`` rows on top of its cache. Prefix and
    suffix lengths are padded to power-of-two buckets, so a run compiles once
    per pair of buckets.

    Args:
      model: a :class:`~slgjax.lm.llama.LlamaForCausalLM`.
      batch_size: suffix rows per compiled call.
      min_bucket: smallest padded suffix length.
      pad_id: token id written into padding.
      max_length: longest accepted sequence in tokens.
      choices: None to return float32[n, H] last-token hidden states, or two
        token ids to return float32[n] next-token log-odds of the first
        against the second.
    """

    def __init__(
        self,
        model,
        *,
        batch_size: int,
        min_bucket: int,
        pad_id: int,
        max_length: int,
        choices: Sequence[int] | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size=}.")
        if min_bucket < 1:
            raise ValueError(f"min_bucket must be >= 1, got {min_bucket=}.")
        self.graphdef, self.state = nnx.split(model)
        self.batch_size = int(batch_size)
        self.min_bucket = int(min_bucket)
        self.pad_id = int(pad_id)
        self.max_length = int(max_length)
        self.choices = None if choices is None else np.asarray(choices, np.int32)
        self.row_shape = () if choices is not None else (int(model.config.hidden_size),)

    def __call__(
        self, sequences: Sequence[Sequence[int]], groups: Sequence[Hashable]
    ) -> np.ndarray:
        """Return one output row per sequence, in input order.

        Args:
          sequences: token-id lists, each 1 to ``max_length`` long.
          groups: one hashable key per sequence; sequences with equal keys
            share a prefix computation. Any grouping gives the same result.
        """
        if len(groups) != len(sequences):
            raise ValueError(
                f"got {len(sequences)} sequences but {len(groups)} group keys; pass one key per "
                "sequence."
            )
        for index, sequence in enumerate(sequences):
            if not sequence or len(sequence) > self.max_length:
                raise ValueError(
                    f"input {index} has {len(sequence)} tokens; accepted are 1 to "
                    f"max_length={self.max_length}. Shorten the response or raise max_length."
                )

        members: dict[Hashable, list[int]] = {}
        for index, group in enumerate(groups):
            members.setdefault(group, []).append(index)
        outputs = np.zeros((len(sequences), *self.row_shape), np.float32)
        for rows in members.values():
            self._run_group([sequences[row] for row in rows], np.asarray(rows), outputs)
        return outputs

    def _run_group(self, sequences, rows, outputs):
        shared = min(common_prefix_length(sequences), min(len(s) for s in sequences) - 1)
        prefix_room = bucket_length(max(shared, 1), min_bucket=self.min_bucket)
        prefix = np.full((1, prefix_room), self.pad_id, np.int32)
        prefix[0, :shared] = sequences[0][:shared]
        suffixes = [sequence[shared:] for sequence in sequences]

        # Sorting by length keeps long and short suffixes in separate calls.
        order = np.argsort([len(suffix) for suffix in suffixes], kind="stable")
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            longest = max(len(suffixes[i]) for i in chunk)
            suffix_room = bucket_length(longest, min_bucket=self.min_bucket)
            tokens = np.full((self.batch_size, suffix_room), self.pad_id, np.int32)
            lengths = np.ones(self.batch_size, np.int32)
            for slot, i in enumerate(chunk):
                tokens[slot, : len(suffixes[i])] = suffixes[i]
                lengths[slot] = len(suffixes[i])
            valid = np.arange(suffix_room)[None, :] < lengths[:, None]
            result = _suffix_last_hidden(
                self.graphdef,
                self.state,
                prefix,
                np.int32(shared),
                tokens,
                valid,
                self.choices,
            )
            outputs[rows[chunk]] = np.asarray(result)[: len(chunk)]
