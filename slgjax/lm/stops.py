"""Token-level automaton that detects stop strings inside generated text.

A stop string such as ``"\\n\\n"`` may arrive as one token, as two tokens, or
inside a longer token such as ``".\\n\\n"``, so matching token ids is not
enough. This module builds an Aho-Corasick automaton over the bytes of the
stop strings (Aho and Corasick 1975, "Efficient string matching", CACM 18(6))
and then folds each token's bytes into it. The result is two tables indexed by
``(state, token)``: the next state, and the label of any match completed while
reading that token. Inside the decode loop one gather per step then tracks
every rollout's matches exactly, with no text on the device.
"""

import json
import re
from collections import deque
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["MatchLabel", "StopAutomaton", "build_stop_automaton", "token_bytes"]


class MatchLabel:
    """Labels of a match; a larger label wins when one token completes several."""

    NONE = 0
    STEP = 1
    STOP = 2


class StopAutomaton(NamedTuple):
    """Transition and match tables over ``Q`` automaton states and ``V`` tokens.

    Attributes:
      transitions: int32[Q, V], the state after reading token ``v`` in state ``q``.
      labels: int8[Q, V], the largest :class:`MatchLabel` of the matches that
        end inside token ``v`` when it is read in state ``q``.
    """

    transitions: np.ndarray
    labels: np.ndarray


def _bytes_to_unicode() -> dict[int, str]:
    # The reversible byte-to-character map of byte-level BPE (GPT-2): printable
    # bytes map to themselves and the rest to code points from 256 upwards.
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    mapping = {byte: chr(byte) for byte in printable}
    offset = 0
    for byte in range(256):
        if byte not in mapping:
            mapping[byte] = chr(256 + offset)
            offset += 1
    return mapping


_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def _decoder_types(tokenizer) -> set[str]:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return set()
    decoder = json.loads(backend.to_str()).get("decoder") or {}
    types = {decoder.get("type")}
    for inner in decoder.get("decoders") or ():
        types.add(inner.get("type"))
    return types


def token_bytes(tokenizer, *, vocab_size: int | None = None) -> list[bytes]:
    """Return the UTF-8 bytes that each token id adds to the decoded text.

    Byte-level BPE tokens (GPT-2, Llama 3, SmolLM2, Qwen2) are mapped back to
    their bytes; SentencePiece tokens have ``"▁"`` read as a space and
    ``<0xNN>`` read as one byte. Special tokens and ids past the tokenizer's
    vocabulary map to ``b""`` because decoding skips them.

    Args:
      tokenizer: a transformers fast tokenizer.
      vocab_size: length of the returned list; defaults to ``len(tokenizer)``.
        Pass the model's vocabulary size when its embedding is padded.
    """
    size = len(tokenizer) if vocab_size is None else vocab_size
    known = min(size, len(tokenizer))
    pieces = tokenizer.convert_ids_to_tokens(list(range(known)))
    special = set(tokenizer.all_special_ids)
    byte_level = "ByteLevel" in _decoder_types(tokenizer)
    byte_of_char = {char: byte for byte, char in _bytes_to_unicode().items()}

    result = []
    for token_id, piece in enumerate(pieces):
        if token_id in special or piece is None:
            result.append(b"")
        elif byte_level and all(char in byte_of_char for char in piece):
            result.append(bytes(byte_of_char[char] for char in piece))
        elif (match := _BYTE_FALLBACK.match(piece)) is not None:
            result.append(bytes([int(match.group(1), 16)]))
        else:
            result.append(piece.replace("▁", " ").encode("utf-8"))
    result.extend(b"" for _ in range(size - known))
    return result


def _build_byte_automaton(patterns: Sequence[tuple[bytes, int]]):
    """Return ``(delta int32[Q, 256], output int8[Q])`` of an Aho-Corasick automaton."""
    children: list[dict[int, int]] = [{}]
    output = [MatchLabel.NONE]
    for pattern, label in patterns:
        node = 0
        for byte in pattern:
            if byte not in children[node]:
                children.append({})
                output.append(MatchLabel.NONE)
                children[node][byte] = len(children) - 1
            node = children[node][byte]
        output[node] = max(output[node], label)

    num_states = len(children)
    delta = np.zeros((num_states, 256), np.int32)
    fail = [0] * num_states
    queue = deque()
    for byte, child in children[0].items():
        delta[0, byte] = child
        queue.append(child)

    # Breadth-first order guarantees that a node's failure target, which is
    # shallower, already has its full row of transitions.
    while queue:
        node = queue.popleft()
        output[node] = max(output[node], output[fail[node]])
        delta[node] = delta[fail[node]]
        for byte, child in children[node].items():
            fail[child] = delta[fail[node], byte]
            delta[node, byte] = child
            queue.append(child)
    return delta, np.asarray(output, np.int8)


def build_stop_automaton(
    tokens: Sequence[bytes],
    *,
    stop_strings: Sequence[str] = (),
    step_strings: Sequence[str] = (),
) -> StopAutomaton:
    """Fold the token texts into an automaton that finds the given strings.

    Args:
      tokens: the bytes of every token id, as :func:`token_bytes` returns.
      stop_strings: strings labelled :attr:`MatchLabel.STOP`.
      step_strings: strings labelled :attr:`MatchLabel.STEP`.

    Returns:
      A :class:`StopAutomaton` whose state 0 is the start state (nothing
      matched yet). With no strings it has one state and no matches.

    Raises:
      ValueError: if a string is empty.
    """
    patterns = []
    for label, strings in ((MatchLabel.STOP, stop_strings), (MatchLabel.STEP, step_strings)):
        for string in strings:
            if not string:
                raise ValueError(f"stop and step strings must be non-empty, got {string!r}.")
            patterns.append((string.encode("utf-8"), label))
    delta, output = _build_byte_automaton(patterns)
    num_states = delta.shape[0]

    lengths = np.asarray([len(token) for token in tokens], np.int64)
    max_length = int(lengths.max(initial=0))
    padded = np.zeros((len(tokens), max(max_length, 1)), np.uint8)
    for token_id, token in enumerate(tokens):
        padded[token_id, : len(token)] = np.frombuffer(token, np.uint8)

    # Read every token from every state at once, one byte position at a time.
    start = np.arange(num_states, dtype=np.int32)[:, None]
    states = np.broadcast_to(start, (num_states, len(tokens)))
    labels = np.zeros((num_states, len(tokens)), np.int8)
    for position in range(max_length):
        active = position < lengths
        moved = delta[states, padded[None, :, position]]
        states = np.where(active[None, :], moved, states)
        labels = np.where(active[None, :], np.maximum(labels, output[states]), labels)
    return StopAutomaton(np.ascontiguousarray(states, np.int32), labels)
